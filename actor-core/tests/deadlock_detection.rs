//! A call that comes back to a grain whose turn waits on it fails at once
//! with an error naming the cycle, instead of hanging until the deadline.

use std::time::{Duration, Instant};

use actor_core::prelude::*;
use actor_core::{Error, GrainOptions};
use serde::{Deserialize, Serialize};

/// Calls the next grain of a ring, which calls the next, ... until a hop
/// count is reached. Exclusive turns.
#[derive(Default)]
struct Ring;
impl Grain for Ring {
    const TYPE_NAME: &'static str = "ring";
}

impl GrainMethods for Ring {
    fn register(m: &mut Methods<Self>) {
        m.add::<Hop, _>();
    }
}

#[derive(Serialize, Deserialize)]
struct Hop {
    /// Keys still to visit, in order.
    path: Vec<i64>,
}
impl Message for Hop {
    type Reply = Result<u32, Error>;
    const NAME: &'static str = "hop";
}
impl Handler<Hop> for Ring {
    async fn handle(&mut self, mut hop: Hop, ctx: &GrainContext<Self>) -> Result<u32, Error> {
        if hop.path.is_empty() {
            return Ok(0);
        }
        let next = hop.path.remove(0);
        let depth = ctx.get_grain::<Ring>(next).ask(hop).await??;
        Ok(depth + 1)
    }
}

/// The same with shared turns, on a type with call-chain reentrancy.
#[derive(Default)]
struct SharedRing;
impl Grain for SharedRing {
    const TYPE_NAME: &'static str = "shared-ring";
    fn options() -> GrainOptions {
        GrainOptions::new().call_chain_reentrancy()
    }
}
impl GrainMethods for SharedRing {
    fn register(m: &mut Methods<Self>) {
        m.add::<Hop, _>();
    }
}
impl SharedHandler<Hop> for SharedRing {
    async fn handle(&self, mut hop: Hop, ctx: &GrainContext<Self>) -> Result<u32, Error> {
        if hop.path.is_empty() {
            return Ok(0);
        }
        let next = hop.path.remove(0);
        let depth = ctx.get_grain::<SharedRing>(next).ask(hop).await??;
        Ok(depth + 1)
    }
}

async fn silo() -> Silo {
    Silo::builder()
        .grain::<Ring>()
        .grain::<SharedRing>()
        .grain_options::<Ring>(GrainOptions::new())
        .start()
        .await
        .unwrap()
}

fn ids(ty: &'static str, keys: &[i64]) -> Vec<GrainId> {
    keys.iter().map(|k| GrainId::new(ty, *k)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_b_a_fails_fast_naming_the_cycle() {
    let silo = silo().await;
    assert_eq!(silo.call_timeout(), Duration::from_secs(30));
    let started = Instant::now();
    let err = silo
        .get_grain::<Ring>(1)
        .ask(Hop { path: vec![2, 1] })
        .await
        .unwrap()
        .unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(500), "took {took:?}");
    match &err {
        Error::Deadlock { cycle, method } => {
            assert_eq!(cycle, &ids("ring", &[1, 2, 1]));
            assert_eq!(method, "hop");
        }
        other => panic!("expected a deadlock, got {other:?}"),
    }
    assert!(
        err.to_string().contains("ring/1 -> ring/2 -> ring/1"),
        "{err}"
    );
    // The grains still serve.
    assert_eq!(
        silo.get_grain::<Ring>(1)
            .ask(Hop { path: vec![2, 3] })
            .await
            .unwrap(),
        Ok(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_of_three_fails_fast_naming_it() {
    let silo = silo().await;
    let started = Instant::now();
    let err = silo
        .get_grain::<Ring>(1)
        .ask(Hop {
            path: vec![2, 3, 1],
        })
        .await
        .unwrap()
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(500));
    let Error::Deadlock { cycle, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(cycle, &ids("ring", &[1, 2, 3, 1]));
    assert!(
        err.to_string()
            .contains("ring/1 -> ring/2 -> ring/3 -> ring/1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grain_calling_itself_is_a_cycle_of_one() {
    let silo = silo().await;
    let err = silo
        .get_grain::<Ring>(5)
        .ask(Hop { path: vec![5] })
        .await
        .unwrap()
        .unwrap_err();
    let Error::Deadlock { cycle, .. } = err else {
        panic!()
    };
    assert_eq!(cycle, ids("ring", &[5, 5]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_call_chain_reentrancy_the_cycle_completes() {
    let silo = silo().await;
    let r = silo.get_grain::<SharedRing>(1);
    assert_eq!(r.ask(Hop { path: vec![2, 1] }).await.unwrap(), Ok(2));
    assert_eq!(
        r.ask(Hop {
            path: vec![2, 3, 1, 2, 3]
        })
        .await
        .unwrap(),
        Ok(5)
    );
    assert_eq!(
        r.ask(Hop {
            path: vec![1, 1, 1]
        })
        .await
        .unwrap(),
        Ok(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_opt_in_shared_turns_deadlock_too() {
    let silo = Silo::builder()
        .grain::<SharedRing>()
        .grain_options::<SharedRing>(GrainOptions::new())
        .start()
        .await
        .unwrap();
    let err = silo
        .get_grain::<SharedRing>(1)
        .ask(Hop { path: vec![2, 1] })
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::Deadlock { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrelated_caller_waits_instead_of_failing() {
    // Grain 1 is busy on a chain through 2 and 3; an outside call to 1 is
    // not on that chain and simply queues.
    #[derive(Default)]
    struct Slow;
    impl Grain for Slow {
        const TYPE_NAME: &'static str = "slow";
    }
    impl GrainMethods for Slow {
        fn register(m: &mut Methods<Self>) {
            m.add::<Nap, _>();
        }
    }
    #[derive(Serialize, Deserialize)]
    struct Nap(u64);
    impl Message for Nap {
        type Reply = ();
        const NAME: &'static str = "nap";
    }
    impl Handler<Nap> for Slow {
        async fn handle(&mut self, Nap(ms): Nap, _: &GrainContext<Self>) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
    let silo = Silo::builder().grain::<Slow>().start().await.unwrap();
    let g = silo.get_grain::<Slow>(1);
    let first = tokio::spawn({
        let g = g.clone();
        async move { g.ask(Nap(200)).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    g.ask(Nap(0)).await.unwrap();
    first.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_call_back_is_not_a_deadlock() {
    #[derive(Default)]
    struct Teller {
        got: Vec<u32>,
    }
    impl Grain for Teller {
        const TYPE_NAME: &'static str = "teller";
    }
    impl GrainMethods for Teller {
        fn register(m: &mut Methods<Self>) {
            m.add::<Bounce, _>().add::<Note, _>().add::<Got, _>();
        }
    }
    #[derive(Serialize, Deserialize)]
    struct Bounce(i64);
    impl Message for Bounce {
        type Reply = ();
        const NAME: &'static str = "bounce";
    }
    #[derive(Serialize, Deserialize)]
    struct Note(u32);
    impl Message for Note {
        type Reply = ();
        const NAME: &'static str = "note";
    }
    #[derive(Serialize, Deserialize)]
    struct Got;
    impl Message for Got {
        type Reply = Vec<u32>;
        const NAME: &'static str = "got";
    }
    impl Handler<Bounce> for Teller {
        async fn handle(&mut self, Bounce(back): Bounce, ctx: &GrainContext<Self>) {
            if back >= 0 {
                // Ask the other grain, which tells us back one-way.
                ctx.get_grain::<Teller>(99)
                    .ask(Bounce(-1 - back))
                    .await
                    .unwrap();
            } else {
                ctx.get_grain::<Teller>(-1 - back).tell(Note(7)).unwrap();
            }
        }
    }
    impl Handler<Note> for Teller {
        async fn handle(&mut self, Note(n): Note, _: &GrainContext<Self>) {
            self.got.push(n);
        }
    }
    impl Handler<Got> for Teller {
        async fn handle(&mut self, _: Got, _: &GrainContext<Self>) -> Vec<u32> {
            self.got.clone()
        }
    }
    let silo = Silo::builder().grain::<Teller>().start().await.unwrap();
    let t = silo.get_grain::<Teller>(1);
    t.ask(Bounce(1)).await.unwrap();
    assert_eq!(t.ask(Got).await.unwrap(), vec![7]);
}

/// A stateless worker (bound 1) whose turn waits on a chain that comes
/// back to it: detected like any other cycle. With room to grow, the pool
/// serves the callback from another worker instead.
mod stateless {
    use super::*;

    struct W;
    impl Grain for W {
        const TYPE_NAME: &'static str = "w";
    }
    impl GrainMethods for W {
        fn register(m: &mut Methods<Self>) {
            m.add::<Go, _>();
        }
    }
    #[derive(Default)]
    struct B;
    impl Grain for B {
        const TYPE_NAME: &'static str = "b";
    }
    impl GrainMethods for B {
        fn register(m: &mut Methods<Self>) {
            m.add::<Go, _>();
        }
    }
    #[derive(Serialize, Deserialize)]
    struct Go(bool);
    impl Message for Go {
        type Reply = Result<u32, Error>;
        const NAME: &'static str = "go";
    }
    impl Handler<Go> for W {
        async fn handle(&mut self, Go(first): Go, ctx: &GrainContext<Self>) -> Result<u32, Error> {
            if first {
                ctx.get_grain::<B>(1).ask(Go(true)).await?
            } else {
                Ok(7)
            }
        }
    }
    impl Handler<Go> for B {
        async fn handle(&mut self, _: Go, ctx: &GrainContext<Self>) -> Result<u32, Error> {
            ctx.get_grain::<W>(1).ask(Go(false)).await?
        }
    }

    async fn silo(max: usize) -> Silo {
        Silo::builder()
            .grain_with(|_| W)
            .grain_options::<W>(GrainOptions::new().stateless_worker(max))
            .grain::<B>()
            .start()
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_pool_waiting_on_the_chain_fails_fast() {
        let silo = silo(1).await;
        let started = Instant::now();
        let err = silo
            .get_grain::<W>(1)
            .ask(Go(true))
            .await
            .unwrap()
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(500));
        let Error::Deadlock { cycle, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(
            cycle,
            vec![
                GrainId::new("w", 1),
                GrainId::new("b", 1),
                GrainId::new("w", 1)
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pool_with_room_serves_the_callback_elsewhere() {
        let silo = silo(2).await;
        assert_eq!(silo.get_grain::<W>(1).ask(Go(true)).await.unwrap(), Ok(7));
    }
}
