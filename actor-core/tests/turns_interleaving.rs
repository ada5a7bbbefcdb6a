//! Turns: one at a time on a non-reentrant grain, whatever the call mix;
//! interleaving only where a grain or method opts in.

mod common;

use std::sync::Arc;
use std::time::Duration;

use actor_core::prelude::*;
use common::{Probe, Work, probe, work};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

struct Plain {
    probe: Arc<Probe>,
    log: Vec<u32>,
}
impl Grain for Plain {
    const TYPE_NAME: &'static str = "plain";
}
impl GrainMethods for Plain {
    fn register(m: &mut Methods<Self>) {
        m.add::<Work, _>()
            .add::<SharedWork, _>()
            .add::<ReadWork, _>()
            .add::<Log, _>()
            .add::<GetLog, _>()
            .add::<Ping, _>();
    }
}
impl Handler<Work> for Plain {
    async fn handle(&mut self, w: Work, _: &GrainContext<Self>) {
        work(&self.probe, w.micros).await;
    }
}

#[derive(Serialize, Deserialize)]
struct SharedWork(u64);
impl Message for SharedWork {
    type Reply = ();
    const NAME: &'static str = "shared_work";
}
impl SharedHandler<SharedWork> for Plain {
    async fn handle(&self, w: SharedWork, _: &GrainContext<Self>) {
        work(&self.probe, w.0).await;
    }
}

#[derive(Serialize, Deserialize)]
struct ReadWork(u64);
impl Message for ReadWork {
    type Reply = ();
    const NAME: &'static str = "read_work";
}
impl SharedHandler<ReadWork> for Plain {
    const INTERLEAVE: Interleave = Interleave::ReadOnly;
    async fn handle(&self, w: ReadWork, _: &GrainContext<Self>) {
        work(&self.probe, w.0).await;
    }
}

#[derive(Serialize, Deserialize)]
struct Log(u32);
impl Message for Log {
    type Reply = ();
    const NAME: &'static str = "log";
}
impl Handler<Log> for Plain {
    async fn handle(&mut self, Log(n): Log, _: &GrainContext<Self>) {
        self.log.push(n);
    }
}
#[derive(Serialize, Deserialize)]
struct GetLog;
impl Message for GetLog {
    type Reply = Vec<u32>;
    const NAME: &'static str = "get_log";
}
impl Handler<GetLog> for Plain {
    async fn handle(&mut self, _: GetLog, _: &GrainContext<Self>) -> Vec<u32> {
        self.log.clone()
    }
}

async fn silo_with(probe: Arc<Probe>, opts: GrainOptions) -> Silo {
    Silo::builder()
        .grain_with(move |_| Plain {
            probe: probe.clone(),
            log: Vec::new(),
        })
        .grain_options::<Plain>(opts)
        .start()
        .await
        .unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    Exclusive(u64),
    Shared(u64),
    TellExclusive(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..300).prop_map(Op::Exclusive),
        (0u64..300).prop_map(Op::Shared),
        (0u64..300).prop_map(Op::TellExclusive),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever mix of exclusive, shared (non-interleaving) and one-way
    /// calls arrives concurrently from many callers, turns never overlap.
    #[test]
    fn concurrent_callers_never_see_interleaved_turns(callers in proptest::collection::vec(proptest::collection::vec(op(), 1..8), 1..12)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let max = rt.block_on(async move {
            let p = probe();
            let silo = silo_with(p.clone(), GrainOptions::new()).await;
            let g = silo.get_grain::<Plain>("one");
            let mut tasks = Vec::new();
            for ops in callers {
                let g = g.clone();
                tasks.push(tokio::spawn(async move {
                    for o in ops {
                        match o {
                            Op::Exclusive(us) => g.ask(Work { micros: us }).await.unwrap(),
                            Op::Shared(us) => g.ask(SharedWork(us)).await.unwrap(),
                            Op::TellExclusive(us) => g.tell(Work { micros: us }).unwrap(),
                        }
                    }
                }));
            }
            for t in tasks { t.await.unwrap(); }
            // Drain what was told: an ask queues behind it.
            g.ask(Work { micros: 0 }).await.unwrap();
            silo.shutdown().await;
            p.max()
        });
        prop_assert_eq!(max, 1);
    }
}

async fn run_concurrently<F, Fut>(silo: &Silo, n: usize, call: F)
where
    F: Fn(GrainRef<Plain>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let g = silo.get_grain::<Plain>("x");
    let futs: Vec<_> = (0..n).map(|_| tokio::spawn(call(g.clone()))).collect();
    for f in futs {
        f.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_turns_interleave_with_each_other_but_not_with_exclusive() {
    let p = probe();
    let silo = silo_with(p.clone(), GrainOptions::new()).await;
    run_concurrently(&silo, 8, |g| async move {
        g.ask(ReadWork(20_000)).await.unwrap()
    })
    .await;
    assert!(
        p.max() > 1,
        "read-only turns should interleave, max was {}",
        p.max()
    );

    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_turns_of_a_non_reentrant_type_do_not_interleave() {
    let p = probe();
    let silo = silo_with(p.clone(), GrainOptions::new()).await;
    run_concurrently(&silo, 8, |g| async move {
        g.ask(SharedWork(5_000)).await.unwrap()
    })
    .await;
    assert_eq!(p.max(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reentrant_types_interleave_shared_turns() {
    let p = probe();
    let silo = silo_with(p.clone(), GrainOptions::new().reentrant()).await;
    run_concurrently(&silo, 8, |g| async move {
        g.ask(SharedWork(20_000)).await.unwrap()
    })
    .await;
    assert!(
        p.max() > 1,
        "reentrant grain should interleave, max was {}",
        p.max()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_turns_exclude_interleaving_ones() {
    // Exclusive turns on a reentrant type still run alone: count overlap
    // seen by exclusive turns only.
    struct Mixed {
        exclusive: Arc<Probe>,
        all: Arc<Probe>,
    }
    impl Grain for Mixed {
        const TYPE_NAME: &'static str = "mixed";
        fn options() -> GrainOptions {
            GrainOptions::new().reentrant()
        }
    }
    impl GrainMethods for Mixed {
        fn register(m: &mut Methods<Self>) {
            m.add::<Work, _>().add::<SharedWork, _>();
        }
    }
    impl Handler<Work> for Mixed {
        async fn handle(&mut self, w: Work, _: &GrainContext<Self>) {
            // Entering `all` while another turn is inside would show as > 1
            // in `exclusive`'s view below.
            self.exclusive.enter();
            let others = self.all.running.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(
                others, 0,
                "an exclusive turn started while {others} shared turns ran"
            );
            tokio::time::sleep(Duration::from_micros(w.micros)).await;
            self.exclusive.exit();
        }
    }
    impl SharedHandler<SharedWork> for Mixed {
        async fn handle(&self, w: SharedWork, _: &GrainContext<Self>) {
            assert_eq!(
                self.exclusive
                    .running
                    .load(std::sync::atomic::Ordering::SeqCst),
                0
            );
            work(&self.all, w.0).await;
        }
    }
    let (e, a) = (probe(), probe());
    let (e2, a2) = (e.clone(), a.clone());
    let silo = Silo::builder()
        .grain_with(move |_| Mixed {
            exclusive: e2.clone(),
            all: a2.clone(),
        })
        .start()
        .await
        .unwrap();
    let g = silo.get_grain::<Mixed>(1);
    let mut tasks = Vec::new();
    for i in 0..30 {
        let g = g.clone();
        tasks.push(tokio::spawn(async move {
            if i % 4 == 0 {
                g.ask(Work { micros: 2_000 }).await
            } else {
                g.ask(SharedWork(2_000)).await
            }
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("no turn panicked on overlap");
    }
    assert_eq!(e.max(), 1);
    assert!(a.max() > 1, "shared turns should have interleaved");
}

#[derive(Serialize, Deserialize)]
struct Ping(u64);
impl Message for Ping {
    type Reply = ();
    const NAME: &'static str = "ping";
}
impl SharedHandler<Ping> for Plain {
    const INTERLEAVE: Interleave = Interleave::Always;
    async fn handle(&self, _: Ping, _: &GrainContext<Self>) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_interleave_methods_run_during_a_long_shared_turn() {
    let p = probe();
    let silo = silo_with(p.clone(), GrainOptions::new()).await;
    let g = silo.get_grain::<Plain>(1);
    let long = tokio::spawn({
        let g = g.clone();
        async move { g.ask(SharedWork(2_000_000)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Queued behind the long turn, a plain call waits...
    let queued = tokio::spawn({
        let g = g.clone();
        async move { g.ask(SharedWork(0)).await }
    });
    // ...but the always-interleave ping answers at once.
    tokio::time::timeout(Duration::from_millis(500), g.ask(Ping(1)))
        .await
        .expect("always-interleave call must not wait for the running turn")
        .unwrap();
    assert!(!queued.is_finished());
    long.await.unwrap().unwrap();
    queued.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_one_caller_run_in_order() {
    let silo = silo_with(probe(), GrainOptions::new()).await;
    let g = silo.get_grain::<Plain>("order");
    for i in 0..500 {
        if i % 7 == 0 {
            g.ask(Log(i)).await.unwrap();
        } else {
            g.tell(Log(i)).unwrap();
        }
    }
    let log = g.ask(GetLog).await.unwrap();
    assert_eq!(log, (0..500).collect::<Vec<_>>());
}
