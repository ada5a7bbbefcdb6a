// Over 800 lines on purpose: the lifecycle's tests share one grain (`Life`)
// and one journal; split by topic when it grows further.
//! Activation lifecycle: activation failures, panics, idle collection,
//! deactivation on request, keep-alive, timeouts, timers, filters,
//! stateless workers, serialized dispatch, independent silos, shutdown.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actor_core::__private::codec;
use actor_core::prelude::*;
use actor_core::{
    CallInfo, DeactivationReason, EncodedCall, Error, IncomingCallFilter, OutgoingCall,
    OutgoingCallFilter,
};
use common::{Probe, Work, probe, work};
use serde::{Deserialize, Serialize};

/// Counts activations and deactivations in a journal shared with the test.
#[derive(Default, Clone)]
struct Journal {
    events: Arc<Mutex<Vec<String>>>,
    attempts: Arc<AtomicUsize>,
}
impl Journal {
    fn push(&self, e: String) {
        self.events.lock().unwrap().push(e);
    }
    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
    fn count(&self, prefix: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| e.starts_with(prefix))
            .count()
    }
}

struct Life {
    journal: Journal,
    value: u64,
}
impl Grain for Life {
    const TYPE_NAME: &'static str = "life";
    async fn on_activate(&mut self, ctx: &GrainContext<Self>) -> Result<(), actor_core::BoxError> {
        self.journal.attempts.fetch_add(1, Ordering::SeqCst);
        if ctx.key().as_str() == Some("bad") {
            tokio::time::sleep(Duration::from_millis(50)).await;
            return Err("the database said no".into());
        }
        self.journal.push(format!("activate {}", ctx.id()));
        Ok(())
    }
    async fn on_deactivate(&mut self, ctx: &GrainContext<Self>, reason: DeactivationReason) {
        self.journal
            .push(format!("deactivate {} {reason:?}", ctx.id()));
    }
}

impl GrainMethods for Life {
    fn register(m: &mut Methods<Self>) {
        m.add::<Add, _>().add::<Boom, _>();
    }
}

#[derive(Serialize, Deserialize)]
struct Add(u64);
impl Message for Add {
    type Reply = u64;
    const NAME: &'static str = "add";
}
impl Handler<Add> for Life {
    async fn handle(&mut self, Add(n): Add, _: &GrainContext<Self>) -> u64 {
        self.value += n;
        self.value
    }
}

#[derive(Serialize, Deserialize)]
struct Boom;
impl Message for Boom {
    type Reply = ();
    const NAME: &'static str = "boom";
}
impl Handler<Boom> for Life {
    async fn handle(&mut self, _: Boom, _: &GrainContext<Self>) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        panic!("kaboom");
    }
}

#[derive(Serialize, Deserialize)]
struct Nap(u64);
impl Message for Nap {
    type Reply = ();
    const NAME: &'static str = "nap";
}
impl Handler<Nap> for Life {
    async fn handle(&mut self, Nap(ms): Nap, _: &GrainContext<Self>) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

#[derive(Serialize, Deserialize)]
struct Leave;
impl Message for Leave {
    type Reply = ();
    const NAME: &'static str = "leave";
}
impl Handler<Leave> for Life {
    async fn handle(&mut self, _: Leave, ctx: &GrainContext<Self>) {
        ctx.deactivate_on_idle();
    }
}

#[derive(Serialize, Deserialize)]
struct Stay(u64);
impl Message for Stay {
    type Reply = ();
    const NAME: &'static str = "stay";
}
impl Handler<Stay> for Life {
    async fn handle(&mut self, Stay(ms): Stay, ctx: &GrainContext<Self>) {
        ctx.delay_deactivation(Duration::from_millis(ms));
    }
}

fn builder(journal: &Journal) -> actor_core::SiloBuilder {
    let j = journal.clone();
    Silo::builder().grain_with(move |_| Life {
        journal: j.clone(),
        value: 0,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_activation_fails_every_queued_caller_and_leaves_no_zombie() {
    let journal = Journal::default();
    let silo = builder(&journal).start().await.unwrap();
    let bad = silo.get_grain::<Life>("bad");
    let calls: Vec<_> = (0..10)
        .map(|i| {
            let bad = bad.clone();
            tokio::spawn(async move { bad.ask(Add(i)).await })
        })
        .collect();
    for c in calls {
        match c.await.unwrap() {
            Err(Error::ActivationFailed { grain, reason }) => {
                assert_eq!(grain, *bad.id());
                assert!(reason.contains("the database said no"), "{reason}");
            }
            other => panic!("expected ActivationFailed, got {other:?}"),
        }
    }
    assert!(!silo.is_active(bad.id()), "no zombie activation");
    assert_eq!(silo.activation_count(), 0);
    let attempts = journal.attempts.load(Ordering::SeqCst);
    assert!(attempts >= 1);
    // The next call tries again.
    assert!(bad.ask(Add(1)).await.is_err());
    assert_eq!(journal.attempts.load(Ordering::SeqCst), attempts + 1);
    let m = silo.metrics();
    assert!(m.grain_type("life").unwrap().activation_failures >= 2);
    // Other grains are fine.
    assert_eq!(silo.get_grain::<Life>("good").ask(Add(2)).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_factory_is_a_failed_activation() {
    #[derive(Serialize, Deserialize)]
    struct Hi;
    impl Message for Hi {
        type Reply = ();
        const NAME: &'static str = "hi";
    }
    struct Fragile;
    impl Grain for Fragile {
        const TYPE_NAME: &'static str = "fragile";
    }
    impl GrainMethods for Fragile {
        fn register(m: &mut Methods<Self>) {
            m.add::<Hi, _>();
        }
    }
    impl Handler<Hi> for Fragile {
        async fn handle(&mut self, _: Hi, _: &GrainContext<Self>) {}
    }
    let silo = Silo::builder()
        .grain_with::<Fragile>(|id| {
            assert!(id.key.as_int() != Some(0), "no grain zero");
            Fragile
        })
        .start()
        .await
        .unwrap();
    let err = silo.get_grain::<Fragile>(0).ask(Hi).await.unwrap_err();
    assert!(
        matches!(&err, Error::ActivationFailed { reason, .. } if reason.contains("no grain zero")),
        "{err}"
    );
    silo.get_grain::<Fragile>(1).ask(Hi).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_drops_only_that_activation_and_queued_calls_survive() {
    let journal = Journal::default();
    let silo = builder(&journal).start().await.unwrap();
    let g = silo.get_grain::<Life>("p");
    let other = silo.get_grain::<Life>("other");
    assert_eq!(g.ask(Add(5)).await.unwrap(), 5);
    assert_eq!(other.ask(Add(1)).await.unwrap(), 1);
    let boom = tokio::spawn({
        let g = g.clone();
        async move { g.ask(Boom).await }
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Queued behind the panicking turn: must be served by a fresh activation.
    let queued = tokio::spawn({
        let g = g.clone();
        async move { g.ask(Add(1)).await }
    });
    match boom.await.unwrap() {
        Err(Error::Panicked {
            message, method, ..
        }) => {
            assert_eq!(message, "kaboom");
            assert_eq!(method, "boom");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    // The fresh activation starts from zero: the old state was dropped.
    assert_eq!(queued.await.unwrap().unwrap(), 1);
    assert_eq!(journal.count("activate life/p"), 2);
    // No on_deactivate for the panicked activation.
    assert_eq!(journal.count("deactivate life/p"), 0);
    assert_eq!(other.ask(Add(1)).await.unwrap(), 2);
    let stats = silo.metrics();
    let boom_stats = stats
        .grain_type("life")
        .unwrap()
        .method("boom")
        .unwrap()
        .clone();
    assert_eq!((boom_stats.calls, boom_stats.errors), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_activations_are_collected_and_come_back_on_the_next_call() {
    let journal = Journal::default();
    let silo = builder(&journal)
        .idle_timeout(Duration::from_millis(100))
        .collection_interval(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    let g = silo.get_grain::<Life>(1);
    assert_eq!(g.ask(Add(3)).await.unwrap(), 3);
    assert!(silo.is_active(g.id()));
    // A clone made now holds the activation its original reached.
    let old = g.clone();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!silo.is_active(g.id()), "collected after its idle age");
    assert_eq!(journal.count("deactivate life/1 Idle"), 1);
    assert_eq!(g.ask(Add(1)).await.unwrap(), 1, "a fresh activation");
    assert_eq!(journal.count("activate life/1"), 2);
    // References that reached the collected activation (and a new one)
    // all reach the fresh one: the grain is still one activation.
    assert_eq!(old.ask(Add(2)).await.unwrap(), 3);
    old.tell(Add(4)).unwrap();
    assert_eq!(silo.get_grain::<Life>(1).ask(Add(0)).await.unwrap(), 7);
    assert_eq!(journal.count("activate life/1"), 2);
    let m = silo.metrics();
    let t = m.grain_type("life").unwrap();
    assert_eq!(
        (t.activations, t.activated_total, t.deactivated_total),
        (1, 2, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_activation_is_not_collected() {
    let journal = Journal::default();
    let silo = builder(&journal)
        .idle_timeout(Duration::from_millis(100))
        .collection_interval(Duration::from_millis(10))
        .start()
        .await
        .unwrap();
    let g = silo.get_grain::<Life>(1);
    for _ in 0..30 {
        g.ask(Add(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A turn longer than the idle age does not get it collected either.
    g.ask(Nap(250)).await.unwrap();
    assert_eq!(g.ask(Add(0)).await.unwrap(), 30);
    assert_eq!(journal.count("activate"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_age_per_type_keep_alive_and_delay_deactivation() {
    let journal = Journal::default();
    let silo = builder(&journal)
        .idle_timeout(Duration::from_secs(3600))
        .grain_options::<Life>(GrainOptions::new().idle_timeout(Duration::from_millis(50)))
        .collection_interval(Duration::from_millis(10))
        .start()
        .await
        .unwrap();
    let short = silo.get_grain::<Life>("short");
    let delayed = silo.get_grain::<Life>("delayed");
    short.ask(Add(1)).await.unwrap();
    delayed.ask(Stay(600)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(!silo.is_active(short.id()), "type override applies");
    assert!(silo.is_active(delayed.id()), "delay_deactivation holds it");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!silo.is_active(delayed.id()));

    let journal = Journal::default();
    let silo = builder(&journal)
        .idle_timeout(Duration::from_millis(30))
        .grain_options::<Life>(GrainOptions::new().keep_alive())
        .collection_interval(Duration::from_millis(10))
        .start()
        .await
        .unwrap();
    let kept = silo.get_grain::<Life>("kept");
    kept.ask(Add(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        silo.is_active(kept.id()),
        "keep-alive type is never collected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivate_on_idle_ends_the_activation_after_the_turn() {
    let journal = Journal::default();
    let silo = builder(&journal).start().await.unwrap();
    let g = silo.get_grain::<Life>(7);
    g.ask(Add(4)).await.unwrap();
    g.ask(Leave).await.unwrap();
    for _ in 0..100 {
        if !silo.is_active(g.id()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!silo.is_active(g.id()));
    assert_eq!(journal.count("deactivate life/7 Requested"), 1);
    assert_eq!(g.ask(Add(1)).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_their_deadline_return_a_timeout() {
    let journal = Journal::default();
    let silo = builder(&journal)
        .call_timeout(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let g = silo.get_grain::<Life>(1);
    let started = std::time::Instant::now();
    let err = g
        .with_timeout(Duration::from_millis(50))
        .ask(Nap(1_000))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(500));
    match err {
        Error::Timeout {
            grain,
            method,
            timeout,
        } => {
            assert_eq!(grain, *g.id());
            assert_eq!(method, "nap");
            assert_eq!(timeout, Duration::from_millis(50));
        }
        other => panic!("{other:?}"),
    }
    // The silo default applies without an override; the call queued behind
    // the long turn times out as well.
    let err = g.ask(Add(1)).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { timeout, .. } if timeout == Duration::from_millis(300)));
    // Once the turn ends, the grain serves again; the expired call never ran.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(g.ask(Add(1)).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_calls_are_never_dropped_for_waiting_long() {
    let journal = Journal::default();
    let silo = builder(&journal)
        .call_timeout(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let g = silo.get_grain::<Life>(1);
    g.tell(Nap(120)).unwrap();
    for _ in 0..3 {
        g.tell(Add(1)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        g.with_timeout(Duration::from_secs(5))
            .ask(Add(0))
            .await
            .unwrap(),
        3
    );
    let m = silo.metrics();
    assert_eq!(
        m.grain_type("life").unwrap().method("add").unwrap().errors,
        0
    );
}

struct Ticker {
    probe: Arc<Probe>,
    ticks: Arc<AtomicUsize>,
    timer: Option<actor_core::TimerHandle>,
}
impl Grain for Ticker {
    const TYPE_NAME: &'static str = "ticker";
}
impl GrainMethods for Ticker {
    fn register(m: &mut Methods<Self>) {
        m.add::<Tick, _>().add::<Start, _>().add::<Stop, _>();
    }
}
#[derive(Serialize, Deserialize)]
struct Tick;
impl Message for Tick {
    type Reply = ();
    const NAME: &'static str = "tick";
}
impl Handler<Tick> for Ticker {
    async fn handle(&mut self, _: Tick, _: &GrainContext<Self>) {
        self.ticks.fetch_add(1, Ordering::SeqCst);
        // Longer than the period: the next tick must wait for this one.
        work(&self.probe, 30_000).await;
    }
}
#[derive(Serialize, Deserialize)]
struct Start;
impl Message for Start {
    type Reply = ();
    const NAME: &'static str = "start";
}
impl Handler<Start> for Ticker {
    async fn handle(&mut self, _: Start, ctx: &GrainContext<Self>) {
        self.timer = Some(ctx.register_timer(Duration::ZERO, Duration::from_millis(5), || Tick));
    }
}
#[derive(Serialize, Deserialize)]
struct Stop;
impl Message for Stop {
    type Reply = ();
    const NAME: &'static str = "stop";
}
impl Handler<Stop> for Ticker {
    async fn handle(&mut self, _: Stop, _: &GrainContext<Self>) {
        if let Some(t) = self.timer.take() {
            t.cancel();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_ticks_are_turns_that_never_overlap_and_end_with_the_activation() {
    let p = probe();
    let ticks = Arc::new(AtomicUsize::new(0));
    let (p2, t2) = (p.clone(), ticks.clone());
    let silo = Silo::builder()
        .grain_with(move |_| Ticker {
            probe: p2.clone(),
            ticks: t2.clone(),
            timer: None,
        })
        .start()
        .await
        .unwrap();
    let g = silo.get_grain::<Ticker>(1);
    g.ask(Start).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = ticks.load(Ordering::SeqCst);
    assert!(n >= 3, "ticks: {n}");
    // 30 ms turns + 5 ms period: at most ~9 in 300 ms if they never overlap.
    assert!(n <= 10, "ticks overlapped or ignored the turn time: {n}");
    assert_eq!(p.max(), 1);
    g.ask(Stop).await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let stopped_at = ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        ticks.load(Ordering::SeqCst),
        stopped_at,
        "cancelled timer keeps ticking"
    );

    // A timer ends with its activation.
    g.ask(Start).await.unwrap();
    assert!(silo.deactivate_all(Duration::from_secs(5)).await);
    let at = ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ticks.load(Ordering::SeqCst), at);
    assert!(
        !silo.is_active(g.id()),
        "a timer does not reactivate its grain"
    );
}

struct Auth;
impl IncomingCallFilter for Auth {
    fn on_request(&self, call: &CallInfo<'_>) -> Result<(), String> {
        if call.method == "boom" && call.context.value("role") != Some("admin") {
            return Err("boom needs role=admin".into());
        }
        Ok(())
    }
}
struct Count(Arc<AtomicUsize>);
impl IncomingCallFilter for Count {
    fn on_response(&self, _: &CallInfo<'_>, _: Duration, ok: bool) {
        if ok {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}
struct Stamp;
impl OutgoingCallFilter for Stamp {
    fn on_call(&self, call: &mut OutgoingCall<'_>) -> Result<(), String> {
        if call.method == "nap" {
            return Err("no naps".into());
        }
        call.context.insert("stamped", "yes");
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_filters_see_reject_and_stamp_calls() {
    let journal = Journal::default();
    let ok = Arc::new(AtomicUsize::new(0));
    let silo = builder(&journal)
        .incoming_filter(Auth)
        .incoming_filter(Count(ok.clone()))
        .outgoing_filter(Stamp)
        .start()
        .await
        .unwrap();
    let g = silo.get_grain::<Life>(1);
    let err = g.ask(Boom).await.unwrap_err();
    assert!(
        matches!(&err, Error::Rejected { reason, .. } if reason == "boom needs role=admin"),
        "{err}"
    );
    let err = g.ask(Nap(1)).await.unwrap_err();
    assert!(matches!(&err, Error::Rejected { reason, .. } if reason == "no naps"));
    g.ask(Add(1)).await.unwrap();
    g.ask(Add(1)).await.unwrap();
    assert_eq!(ok.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_workers_scale_up_to_their_bound_and_shrink_when_idle() {
    struct Worker(Arc<Probe>);
    impl Grain for Worker {
        const TYPE_NAME: &'static str = "worker";
        fn options() -> GrainOptions {
            GrainOptions::new()
                .stateless_worker(3)
                .idle_timeout(Duration::from_millis(50))
        }
    }
    impl GrainMethods for Worker {
        fn register(m: &mut Methods<Self>) {
            m.add::<Work, _>();
        }
    }
    impl Handler<Work> for Worker {
        async fn handle(&mut self, w: Work, _: &GrainContext<Self>) {
            work(&self.0, w.micros).await;
        }
    }
    let p = probe();
    let p2 = p.clone();
    let silo = Silo::builder()
        .grain_with(move |_| Worker(p2.clone()))
        .collection_interval(Duration::from_millis(10))
        .start()
        .await
        .unwrap();
    let w = silo.get_grain::<Worker>(0);
    let calls: Vec<_> = (0..24)
        .map(|_| {
            let w = w.clone();
            tokio::spawn(async move { w.ask(Work { micros: 20_000 }).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(silo.activation_count(), 3);
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(p.max(), 3, "three workers ran side by side, never more");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(silo.activation_count(), 0, "idle workers are removed");
    w.ask(Work { micros: 0 }).await.unwrap();
    assert_eq!(silo.activation_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serialized_calls_dispatch_by_name_and_fail_clearly() {
    let journal = Journal::default();
    let silo = builder(&journal).start().await.unwrap();
    let id = GrainId::new("life", "wire");
    let call = |method: &str, payload: Vec<u8>| {
        EncodedCall::new(id.clone(), method, payload, Duration::from_secs(5))
    };
    let reply = silo
        .invoke_encoded(call("add", codec::encode(&Add(41)).unwrap()))
        .await
        .unwrap();
    assert_eq!(codec::decode::<u64>(&reply).unwrap(), 41);
    // The same grain through a typed reference.
    assert_eq!(
        silo.get_grain::<Life>("wire").ask(Add(1)).await.unwrap(),
        42
    );

    let err = silo
        .invoke_encoded(call("nap", codec::encode(&Nap(1)).unwrap()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UnknownMethod { .. }),
        "nap is not registered: {err}"
    );
    let err = silo
        .invoke_encoded(call("add", vec![0xff; 3]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Serialization(_)), "{err}");
    let mut unknown = call("add", codec::encode(&Add(1)).unwrap());
    unknown.target = GrainId::new("nope", 1);
    let err = silo.invoke_encoded(unknown).await.unwrap_err();
    assert!(matches!(err, Error::UnknownGrainType { .. }));
    // A panic travels back as an error too.
    let err = silo
        .invoke_encoded(call("boom", codec::encode(&Boom).unwrap()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Panicked { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_silos_in_one_process_are_independent() {
    let (j1, j2) = (Journal::default(), Journal::default());
    let a = builder(&j1).name("a").start().await.unwrap();
    let b = builder(&j2).name("b").start().await.unwrap();
    assert_eq!(a.get_grain::<Life>(1).ask(Add(10)).await.unwrap(), 10);
    assert_eq!(b.get_grain::<Life>(1).ask(Add(1)).await.unwrap(), 1);
    assert_eq!(a.get_grain::<Life>(1).ask(Add(0)).await.unwrap(), 10);
    assert_eq!((a.activation_count(), b.activation_count()), (1, 1));
    assert_eq!(a.metrics().total_calls(), 2);
    assert_eq!(b.metrics().total_calls(), 1);
    a.shutdown().await;
    assert_eq!(j1.count("deactivate life/1 Shutdown"), 1);
    assert!(matches!(
        a.get_grain::<Life>(1).ask(Add(1)).await,
        Err(Error::SiloStopped)
    ));
    assert_eq!(b.get_grain::<Life>(1).ask(Add(1)).await.unwrap(), 2);
    assert_eq!(j2.count("deactivate"), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn unknown_types_and_bad_configuration_are_clear_errors() {
    let silo = Silo::builder().start().await.unwrap();
    let err = silo.get_grain::<Life>(1).ask(Add(1)).await.unwrap_err();
    assert_eq!(
        err,
        Error::UnknownGrainType {
            type_name: "life".into()
        }
    );
    assert!(err.to_string().contains("SiloBuilder::grain"));
    let j = Journal::default();
    let err = builder(&j)
        .grain_with(|_| Life {
            journal: Journal::default(),
            value: 0,
        })
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    let err = Silo::builder()
        .call_timeout(Duration::ZERO)
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)));
    let err = Silo::builder()
        .grain_options::<Life>(GrainOptions::new())
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)));
}

/// A stand-in for a plug-in's service, attached to the silo as an extension.
#[derive(Default)]
struct Store {
    values: std::collections::HashMap<String, u64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_factories_load_from_silo_extensions_before_activation() {
    let journal = Journal::default();
    let j = journal.clone();
    let mut builder =
        Silo::builder().grain_with_async(move |ctx: actor_core::ActivationContext| {
            let journal = j.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let key = ctx.id().key.to_string();
                if key == "broken" {
                    return Err("storage is unreachable".into());
                }
                let store = ctx.silo().extension::<Store>().ok_or("no store")?;
                let value = store.values.get(&key).copied().unwrap_or(0);
                Ok(Life { journal, value })
            }
        });
    builder
        .extension_mut::<Store>()
        .values
        .insert("saved".into(), 40);
    builder
        .extension_mut::<Store>()
        .values
        .insert("other".into(), 1);
    let silo = builder.start().await.unwrap();
    assert_eq!(silo.extension::<Store>().unwrap().values.len(), 2);
    assert_eq!(
        silo.get_grain::<Life>("saved").ask(Add(2)).await.unwrap(),
        42
    );
    assert_eq!(
        silo.get_grain::<Life>("fresh").ask(Add(2)).await.unwrap(),
        2
    );
    // on_activate ran after the factory.
    assert_eq!(journal.count("activate life/saved"), 1);
    let err = silo
        .get_grain::<Life>("broken")
        .ask(Add(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ActivationFailed { reason, .. } if reason == "storage is unreachable"),
        "{err}"
    );
    assert!(!silo.is_active(&GrainId::new("life", "broken")));
    assert!(silo.extension::<String>().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_silo_fails_every_call_at_once_like_a_crashed_one() {
    let journal = Journal::default();
    let silo = builder(&journal).start().await.unwrap();
    let g = silo.get_grain::<Life>(1);
    g.ask(Add(1)).await.unwrap();
    let slow = tokio::spawn({
        let g = g.clone();
        async move { g.ask(Nap(200)).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    silo.halt();
    assert!(matches!(g.ask(Add(1)).await, Err(Error::SiloStopped)));
    let unsent = g.tell(Add(7)).unwrap_err();
    assert_eq!(unsent.error(), &Error::SiloStopped);
    assert_eq!(unsent.into_message().0, 7, "the message comes back");
    assert_eq!(silo.activation_count(), 0);
    // The turn already running finishes; nothing ran on_deactivate.
    slow.await.unwrap().unwrap();
    assert_eq!(journal.count("deactivate"), 0);
}

/// Every way a one-way message can fail to be delivered hands the message
/// back with the reason, so that nothing a sender meant to send is lost
/// silently: a filter refusing it, a grain type the silo does not host
/// (the table's own path, past the header), a silo that has stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undelivered_tell_hands_the_message_back() {
    struct Unhosted;
    impl Grain for Unhosted {
        const TYPE_NAME: &'static str = "unhosted";
    }
    impl GrainMethods for Unhosted {
        fn register(m: &mut Methods<Self>) {
            m.add::<Add, _>();
        }
    }
    impl Handler<Add> for Unhosted {
        async fn handle(&mut self, Add(n): Add, _: &GrainContext<Self>) -> u64 {
            n
        }
    }
    struct NoNaps;
    impl OutgoingCallFilter for NoNaps {
        fn on_call(&self, call: &mut OutgoingCall<'_>) -> Result<(), String> {
            if call.method == "nap" {
                return Err("no naps".into());
            }
            Ok(())
        }
    }
    let journal = Journal::default();
    let silo = builder(&journal)
        .outgoing_filter(NoNaps)
        .start()
        .await
        .unwrap();

    let refused = silo.get_grain::<Life>(1).tell(Nap(42)).unwrap_err();
    assert!(
        matches!(refused.error(), Error::Rejected { reason, .. } if reason == "no naps"),
        "{refused}"
    );
    assert_eq!(refused.message().0, 42);

    let unhosted = silo.get_grain::<Unhosted>(1).tell(Add(5)).unwrap_err();
    assert!(
        matches!(unhosted.error(), Error::UnknownGrainType { type_name } if type_name == "unhosted"),
        "{unhosted}"
    );
    let (error, Add(n)) = unhosted.into_parts();
    assert_eq!(n, 5);
    // `?` into the crate's error keeps the reason.
    let as_error: Error = silo
        .get_grain::<Unhosted>(2)
        .tell(Add(1))
        .unwrap_err()
        .into();
    assert_eq!(as_error, error);

    silo.get_grain::<Life>(1).tell(Add(1)).unwrap();
    silo.shutdown().await;
    let stopped = silo.get_grain::<Life>(1).tell(Add(9)).unwrap_err();
    assert_eq!(stopped.error(), &Error::SiloStopped);
    assert_eq!(stopped.into_message().0, 9);
}
