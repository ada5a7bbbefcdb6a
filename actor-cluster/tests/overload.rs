//! A silo under a call storm: past its bound on calls in flight it
//! answers `Overloaded` at once instead of queueing (so its memory stays
//! bounded), keeps answering probes (no false death), gives every unit of
//! the bound back whatever became of the call (reply, timeout, error,
//! caller gone), and serves again once the storm is over.
//!
//! The tests of this file take turns (`serial`): they read the process's
//! resident memory, which tests running beside them would move.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actor_cluster::{
    ClusterClient, ClusterConfig, ClusterSilo, DEFAULT_MAX_CALLS_IN_FLIGHT, DEFAULT_MAX_FRAME,
    InMemoryMembership, Link, LinkListener, LinkOptions, LinkService, MembershipTable, SiloStatus,
    StaticRouter,
};
use actor_core::{
    EncodedCall, Error, Grain, GrainContext, GrainId, GrainMethods, Handler, Message, Methods, Silo,
};
use common::bounded;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A grain whose `Hold` turns wait until its gate opens: a slow grain
/// whose slowness the test controls.
struct Slow {
    gate: watch::Receiver<bool>,
    told: Arc<AtomicUsize>,
}

impl Grain for Slow {
    const TYPE_NAME: &'static str = "slow";
}

/// Waits for the gate; answers the size of what it carried.
#[derive(Serialize, Deserialize)]
struct Hold(Vec<u8>);

impl Message for Hold {
    type Reply = u64;
    const NAME: &'static str = "hold";
}

impl Handler<Hold> for Slow {
    async fn handle(&mut self, Hold(bytes): Hold, _: &GrainContext<Self>) -> u64 {
        let _ = self.gate.wait_for(|open| *open).await;
        bytes.len() as u64
    }
}

/// Panics (the call fails, the silo lives on).
#[derive(Serialize, Deserialize)]
struct Boom;

impl Message for Boom {
    type Reply = ();
    const NAME: &'static str = "boom";
}

impl Handler<Boom> for Slow {
    async fn handle(&mut self, _: Boom, _: &GrainContext<Self>) {
        panic!("boom");
    }
}

/// A one-way message: counts that it ran.
#[derive(Serialize, Deserialize)]
struct Note;

impl Message for Note {
    type Reply = ();
    const NAME: &'static str = "note";
}

impl Handler<Note> for Slow {
    async fn handle(&mut self, _: Note, _: &GrainContext<Self>) {
        self.told.fetch_add(1, Ordering::SeqCst);
    }
}

impl GrainMethods for Slow {
    fn register(m: &mut Methods<Self>) {
        m.add::<Hold, _>().add::<Boom, _>().add::<Note, _>();
    }
}

/// The gate of every `Slow` grain of a silo, and the count of its notes.
struct Gate {
    open: watch::Sender<bool>,
    told: Arc<AtomicUsize>,
}

impl Gate {
    fn new() -> Self {
        Gate {
            open: watch::Sender::new(false),
            told: Arc::default(),
        }
    }

    fn builder(&self, name: &str) -> actor_core::SiloBuilder {
        let (gate, told) = (self.open.subscribe(), self.told.clone());
        Silo::builder()
            .name(name)
            .grain_with::<Slow>(move |_| Slow {
                gate: gate.clone(),
                told: told.clone(),
            })
    }

    fn set(&self, open: bool) {
        self.open.send_replace(open);
    }
}

/// One test of this file at a time (see the module docs); a test that
/// fails releases it too (a tokio mutex is not poisoned).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The process's resident memory in bytes (Linux: /proc/self/statm).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages in statm");
    pages * 4096
}

/// The highest resident memory seen while it runs, sampled every 5 ms by a
/// thread of its own (so a busy runtime cannot make it miss the peak).
struct PeakRss {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakRss {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss()));
        let thread = std::thread::spawn({
            let (stop, peak) = (stop.clone(), peak.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        PeakRss {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.peak.load(Ordering::Relaxed).max(rss())
    }
}

const MB: u64 = 1024 * 1024;

/// The clients' own runtime (two threads), as if they ran in processes of
/// their own: thousands of callers' tasks on the silos' runtime would
/// queue in front of the silos' own tasks (their HTTP/2 keepalive
/// answers, their probes) and stall them, which is not what a silo
/// serving remote clients sees. The memory is still this process's.
struct Clients(Option<tokio::runtime::Runtime>);

impl Clients {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("clients")
            .enable_all()
            .build()
            .unwrap();
        Clients(Some(rt))
    }

    fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.as_ref().unwrap().spawn(f)
    }

    /// A client of the cluster at `gateway`, living on this runtime.
    async fn connect(&self, gateway: String) -> Arc<ClusterClient> {
        let client = self.spawn(async move {
            ClusterClient::connect(vec![gateway], Duration::from_secs(5)).await
        });
        Arc::new(client.await.unwrap().unwrap())
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        // Not dropped in place: this may be inside the silos' runtime.
        self.0.take().unwrap().shutdown_background();
    }
}

fn hold_call(key: u64, payload: usize, timeout: Duration) -> EncodedCall {
    let bytes = actor_core::__private::codec::encode(&Hold(vec![7; payload])).unwrap();
    EncodedCall::new(
        GrainId::new(Slow::TYPE_NAME, key as i64),
        Hold::NAME,
        bytes,
        timeout,
    )
}

fn decode_u64(reply: actor_core::Result<Vec<u8>>) -> actor_core::Result<u64> {
    reply.map(|bytes| actor_core::__private::codec::decode(&bytes).unwrap())
}

async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A plain silo hosting `Slow` grains, serving its link under `limit`;
/// the service (to read its count) and a link to it.
async fn linked_silo(gate: &Gate, limit: usize) -> (Silo, LinkService, Arc<Link>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap().to_string();
    let router = StaticRouter::new(at.clone(), vec![at.clone()]);
    let silo = gate
        .builder("bounded")
        .router(router.clone())
        .start()
        .await
        .unwrap();
    router.attach(&silo);
    let service = LinkService::new(silo.clone(), DEFAULT_MAX_FRAME).with_max_calls_in_flight(limit);
    service.clone().serve(LinkListener::tcp(listener).unwrap());
    let link = Link::connect(&at, LinkOptions::default()).await.unwrap();
    (silo, service, Arc::new(link))
}

/// Every unit of the bound comes back: after replies, after shedding,
/// after calls that timed out at the caller, failed (unknown type,
/// unknown method, a panic) or whose caller went away. The count is read
/// the moment the last reply arrives: a unit is given back before its
/// reply goes out, never later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_of_calls_in_flight_returns_to_zero() {
    let _serial = SERIAL.lock().await;
    let gate = Gate::new();
    const LIMIT: usize = 100;
    let (_silo, service, link) = linked_silo(&gate, LIMIT).await;
    let long = Duration::from_secs(30);
    bounded(Duration::from_secs(60), async {
        // Replies and shedding: 300 calls at a held grain, 100 admitted.
        let calls: Vec<_> = (0..300)
            .map(|i| tokio::spawn(link.clone().call_owned(hold_call(i % 10, 8, long))))
            .collect();
        eventually("the calls past the bound are refused", long, || {
            calls.iter().filter(|c| c.is_finished()).count() == 300 - LIMIT
        })
        .await;
        assert_eq!(service.calls_in_flight(), LIMIT);
        gate.set(true);
        let (mut ok, mut shed) = (0, 0);
        for c in calls {
            match decode_u64(c.await.unwrap()) {
                Ok(8) => ok += 1,
                Err(Error::Overloaded { limit, .. }) => {
                    assert_eq!(limit, LIMIT);
                    shed += 1;
                }
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        assert_eq!((ok, shed), (100, 200));
        assert_eq!(service.calls_in_flight(), 0, "after replies");

        // Timeouts: the caller gives up, the silo still owes the turns
        // (the units stay taken) until the grain gets to them.
        gate.set(false);
        let short = Duration::from_millis(200);
        let calls: Vec<_> = (0..50)
            .map(|_| tokio::spawn(link.clone().call_owned(hold_call(1, 8, short))))
            .collect();
        for c in calls {
            let outcome = c.await.unwrap();
            assert!(matches!(outcome, Err(Error::Timeout { .. })), "{outcome:?}");
        }
        eventually("the silo holds the timed-out calls", long, || {
            service.calls_in_flight() == 50
        })
        .await;
        gate.set(true);
        eventually("units of timed-out calls are back", long, || {
            service.calls_in_flight() == 0
        })
        .await;

        // Errors: unknown grain type, unknown method, a panicking turn.
        let unknown_type = EncodedCall::new(GrainId::new("nope", 1), "x", Vec::new(), long);
        let unknown_method =
            EncodedCall::new(GrainId::new(Slow::TYPE_NAME, 1), "x", Vec::new(), long);
        let panics = EncodedCall::new(
            GrainId::new(Slow::TYPE_NAME, 2),
            Boom::NAME,
            actor_core::__private::codec::encode(&Boom).unwrap(),
            long,
        );
        for call in [unknown_type, unknown_method, panics] {
            assert!(link.clone().call_owned(call).await.is_err());
        }
        assert_eq!(service.calls_in_flight(), 0, "after errors");

        // The caller goes away with calls in flight: the silo still runs
        // them and gives their units back.
        gate.set(false);
        let gone = Link::connect(link.endpoint(), LinkOptions::default())
            .await
            .unwrap();
        let gone = Arc::new(gone);
        let calls: Vec<_> = (0..40)
            .map(|i| tokio::spawn(gone.clone().call_owned(hold_call(i, 8, long))))
            .collect();
        eventually("the calls arrived", long, || {
            service.calls_in_flight() == 40
        })
        .await;
        for c in &calls {
            c.abort();
        }
        drop(gone);
        gate.set(true);
        eventually("units of abandoned calls are back", long, || {
            service.calls_in_flight() == 0
        })
        .await;
    })
    .await;
}

/// At the bound, one-way messages are dropped (nobody waits for their
/// reply, so they take no unit, but they would fill the queues all the
/// same); below it they are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_calls_are_dropped_only_at_the_bound() {
    let _serial = SERIAL.lock().await;
    let gate = Gate::new();
    const LIMIT: usize = 20;
    let (_silo, service, link) = linked_silo(&gate, LIMIT).await;
    let long = Duration::from_secs(30);
    let note = |key: u64| {
        let mut call = EncodedCall::new(
            GrainId::new(Slow::TYPE_NAME, key as i64),
            Note::NAME,
            actor_core::__private::codec::encode(&Note).unwrap(),
            long,
        );
        call.one_way = true;
        call
    };
    bounded(Duration::from_secs(60), async {
        let held: Vec<_> = (0..LIMIT as u64)
            .map(|i| tokio::spawn(link.clone().call_owned(hold_call(i, 8, long))))
            .collect();
        eventually("the bound is full", long, || {
            service.calls_in_flight() == LIMIT
        })
        .await;
        // To grains of their own (not queued behind a held turn).
        for key in 1000..1010 {
            link.clone().call_owned(note(key)).await.unwrap();
        }
        // Sent after the notes on the same stream: once it is answered,
        // the notes have been read (and dropped).
        let probe = link.clone().call_owned(hold_call(2000, 8, long)).await;
        assert!(matches!(probe, Err(Error::Overloaded { .. })), "{probe:?}");
        gate.set(true);
        for h in held {
            assert_eq!(decode_u64(h.await.unwrap()).unwrap(), 8);
        }
        for key in 1000..1010 {
            link.clone().call_owned(note(key)).await.unwrap();
        }
        eventually("the notes below the bound ran", long, || {
            gate.told.load(Ordering::SeqCst) == 10
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            gate.told.load(Ordering::SeqCst),
            10,
            "no note at the bound ran"
        );
    })
    .await;
}

/// Two cluster silos with the default timings and a bound of `limit`,
/// hosting `Slow` grains behind `gate`, once both see each other.
async fn cluster(
    gate: &Gate,
    limit: usize,
) -> (Arc<dyn MembershipTable>, ClusterSilo, ClusterSilo) {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let mut config = ClusterConfig::default();
    config.max_calls_in_flight = limit;
    let mut silos = Vec::new();
    for name in ["a", "b"] {
        silos.push(
            ClusterSilo::start(
                gate.builder(name),
                TcpListener::bind("127.0.0.1:0").await.unwrap(),
                table.clone(),
                config.clone(),
            )
            .await
            .unwrap(),
        );
    }
    let (b, a) = (silos.pop().unwrap(), silos.pop().unwrap());
    eventually("both silos see each other", Duration::from_secs(30), || {
        a.active_members().len() == 2 && b.active_members().len() == 2
    })
    .await;
    (table, a, b)
}

/// No silo was declared dead or even suspected.
async fn assert_no_suspicion(table: &Arc<dyn MembershipTable>) {
    let snap = table.read_all().await.unwrap();
    for (entry, _) in &snap.entries {
        assert_eq!(entry.status, SiloStatus::Active, "{entry:?}");
        assert!(entry.suspicions.is_empty(), "suspected: {entry:?}");
    }
}

/// A storm from an external client against two silos with a bound of
/// 200: 3,000 callers that retry at once (after 10 ms) whenever they are
/// refused, for longer than a failure detection takes, at grains that do
/// not answer until the storm is over. Refusals come while the grains are
/// still held (so they are prompt, not timeouts), every call ends with a
/// reply or a clear error, nobody is suspected, and once the grains answer
/// every caller succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_is_shed_without_false_deaths_and_then_served() {
    let _serial = SERIAL.lock().await;
    let gate = Gate::new();
    const LIMIT: usize = 200;
    const CALLERS: usize = 3_000;
    let (table, a, b) = cluster(&gate, LIMIT).await;
    let clients = Clients::new();
    let client = clients.connect(a.address().endpoint.clone()).await;
    let refused = Arc::new(AtomicU64::new(0));
    let refused_while_held = Arc::new(AtomicU64::new(0));
    let holding = Arc::new(AtomicBool::new(true));
    bounded(Duration::from_secs(120), async {
        let before = rss();
        let peak = PeakRss::start();
        let callers: Vec<_> = (0..CALLERS as u64)
            .map(|i| {
                let client = client.clone();
                let (refused, refused_while_held, holding) =
                    (refused.clone(), refused_while_held.clone(), holding.clone());
                clients.spawn(async move {
                    let grain = client.get_grain::<Slow>((i % 100) as i64);
                    loop {
                        match grain.ask(Hold(vec![1; 16])).await {
                            Ok(n) => return n,
                            Err(Error::Overloaded { .. }) => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                if holding.load(Ordering::SeqCst) {
                                    refused_while_held.fetch_add(1, Ordering::Relaxed);
                                }
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            Err(e) => panic!("caller {i}: {e}"),
                        }
                    }
                })
            })
            .collect();
        // Longer than the default detection (3 missed probes of 1 s).
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (a_members, b_members) = (a.active_members().len(), b.active_members().len());
        holding.store(false, Ordering::SeqCst);
        gate.set(true);
        for c in callers {
            assert_eq!(c.await.unwrap(), 16);
        }
        let peak = peak.finish();
        let after = rss();
        let (refused, while_held) = (
            refused.load(Ordering::Relaxed),
            refused_while_held.load(Ordering::Relaxed),
        );
        println!(
            "storm of {CALLERS} callers, bound {LIMIT} per silo: {refused} refusals ({while_held} while the grains were held); RSS {} MB before, {} MB at peak, {} MB after",
            before / MB,
            peak / MB,
            after / MB
        );
        assert_eq!((a_members, b_members), (2, 2), "a silo was lost in the storm");
        // At most 2 x 200 calls were admitted; every other caller was
        // refused at least once while nothing was answered.
        assert!(
            while_held >= (CALLERS - 2 * LIMIT) as u64,
            "only {while_held} prompt refusals"
        );
        assert_no_suspicion(&table).await;
        // And calls are served again as usual.
        let g = client.get_grain::<Slow>(7);
        let again = clients.spawn(async move { g.ask(Hold(vec![0; 3])).await });
        assert_eq!(again.await.unwrap().unwrap(), 3);
    })
    .await;
}

/// A fresh client's storm of first calls opens one connection to its
/// gateway, not one per call: the gateway refuses connections past
/// `ConnectionLimits::max_per_address` (256) from one host, and such calls
/// failed with "no gateway answered".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_clients_storm_of_first_calls_shares_one_connection() {
    let _serial = SERIAL.lock().await;
    let gate = Gate::new();
    gate.set(true);
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let silo = ClusterSilo::start(
        gate.builder("only"),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        table,
        ClusterConfig::default(),
    )
    .await
    .unwrap();
    let client = ClusterClient::connect(
        vec![silo.address().endpoint.clone()],
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    bounded(Duration::from_secs(60), async {
        let calls: Vec<_> = (0..1_000)
            .map(|i| {
                let grain = client.get_grain::<Slow>(i % 20);
                tokio::spawn(async move { grain.ask(Hold(vec![0; 4])).await })
            })
            .collect();
        for c in calls {
            assert_eq!(c.await.unwrap().unwrap(), 4);
        }
    })
    .await;
}

/// Memory stays bounded: 6,000 calls of 16 KB each (94 MB in all) sent
/// by a client through a silo's gateway, at grains that do not answer,
/// against a bound of 200. The client's link frees each payload once it
/// is written, so what stays is what the silos keep: shed, the process
/// grew by 19 MB at its peak here (30 MB in a release build, which sends
/// faster and so has more frames on the way at once); with the bound out
/// of the way (1,000,000) the same storm was buffered and grew it by
/// 239 MB. The ceiling, 64 MB, is below the 94 MB that buffering would
/// have to hold at the very least.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_large_calls_costs_bounded_memory() {
    let _serial = SERIAL.lock().await;
    let gate = Gate::new();
    const LIMIT: usize = 200;
    const CALLS: u64 = 6_000;
    const PAYLOAD: usize = 16 * 1024;
    let (table, a, _b) = cluster(&gate, LIMIT).await;
    let link = Arc::new(
        Link::connect(&a.address().endpoint, LinkOptions::default())
            .await
            .unwrap(),
    );
    let long = Duration::from_secs(60);
    bounded(Duration::from_secs(120), async {
        let before = rss();
        let peak = PeakRss::start();
        let mut calls = Vec::new();
        for wave in 0..CALLS / 100 {
            // Waves, so that the client's own queue never holds much.
            for i in 0..100 {
                let key = (wave * 100 + i) % 50;
                calls.push(tokio::spawn(link.clone().call_owned(hold_call(key, PAYLOAD, long))));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // One gateway, so at most its 200 are admitted (the calls it
        // forwards to the other silo among them); the others are refused
        // while the grains are still held.
        eventually("the calls past the bound are refused", long, || {
            calls.iter().filter(|c| c.is_finished()).count() as u64 >= CALLS - LIMIT as u64
        })
        .await;
        let at_peak = peak.finish();
        gate.set(true);
        let (mut ok, mut shed) = (0, 0);
        for c in calls {
            match decode_u64(c.await.unwrap()) {
                Ok(n) => {
                    assert_eq!(n, PAYLOAD as u64);
                    ok += 1;
                }
                Err(Error::Overloaded { .. }) => shed += 1,
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        let after = rss();
        println!(
            "{CALLS} calls of {PAYLOAD} bytes, bound {LIMIT}: {ok} answered, {shed} shed; RSS {} MB before, {} MB at peak, {} MB after",
            before / MB,
            at_peak / MB,
            after / MB
        );
        assert_eq!(ok + shed, CALLS);
        assert!(shed >= CALLS - 2 * LIMIT as u64, "only {shed} shed");
        let grown = at_peak.saturating_sub(before);
        assert!(
            grown < 64 * MB,
            "the storm grew the process by {} MB: buffered rather than shed",
            grown / MB
        );
        assert_no_suspicion(&table).await;
    })
    .await;
}

/// The issue's storm: 50,000 calls in flight at once from clients against
/// two silos with the default bound (20,000 each), at grains that do not
/// answer until every refusal is in. Prints what was shed and the
/// process's memory (clients and silos together) before, at its peak and
/// after. Run with `cargo test -p actor-cluster --release --test overload
/// -- --ignored --nocapture` (about 10 s). Two release runs here: 27,311 and
/// 29,045 answered, 22,689 and 20,955 shed, refusals all in about 0.6 s
/// after the storm began, 267-273 MB at the peak (38 and 8 MB before).
/// A debug build is too slow for this size on 2 cores: a silo's runtime,
/// busy with the admitted calls, renewed its lease too late and let its
/// grains go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the issue's full-size storm; run by hand, in a release build"]
async fn the_issue_storm_of_50_000_calls() {
    let _serial = SERIAL.lock().await;
    let gate = Gate::new();
    const CALLS: u64 = 50_000;
    const CLIENTS: u64 = 4;
    let (table, a, b) = cluster(&gate, DEFAULT_MAX_CALLS_IN_FLIGHT).await;
    let runtime = Clients::new();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let gateway = [&a, &b][i as usize % 2].address().endpoint.clone();
        clients.push(runtime.connect(gateway).await);
    }
    bounded(Duration::from_secs(600), async {
        let before = rss();
        let peak = PeakRss::start();
        let started = Instant::now();
        let answered = Arc::new(AtomicU64::new(0));
        let calls: Vec<_> = (0..CALLS)
            .map(|i| {
                let grain = clients[(i % CLIENTS) as usize].get_grain::<Slow>((i % 1000) as i64);
                let answered = answered.clone();
                runtime.spawn(async move {
                    let outcome = grain.ask(Hold(vec![1; 64])).await;
                    answered.fetch_add(1, Ordering::Relaxed);
                    outcome
                })
            })
            .collect();
        // Everything past the bounds is refused while nothing is answered.
        let admitted_at_most = 2 * DEFAULT_MAX_CALLS_IN_FLIGHT as u64;
        eventually("the refusals are in", Duration::from_secs(300), || {
            answered.load(Ordering::Relaxed) >= CALLS.saturating_sub(admitted_at_most)
        })
        .await;
        // Let the calls that were admitted sit, in flight, past a failure
        // detection's time.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let refused_by = started.elapsed();
        let held_peak = rss();
        gate.set(true);
        let (mut ok, mut shed) = (0u64, 0u64);
        for c in calls {
            match c.await.unwrap() {
                Ok(64) => ok += 1,
                Err(Error::Overloaded { .. }) => shed += 1,
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        let peak = peak.finish();
        let after = rss();
        println!(
            "{CALLS} calls from {CLIENTS} clients, bound {DEFAULT_MAX_CALLS_IN_FLIGHT} per silo: {ok} answered, {shed} shed (refusals in after {refused_by:?}, all done after {:?}); RSS {} MB before, {} MB with the admitted calls held, {} MB at peak, {} MB after",
            started.elapsed(),
            before / MB,
            held_peak / MB,
            peak / MB,
            after / MB
        );
        assert_eq!(ok + shed, CALLS);
        assert!(shed > 0);
        assert_eq!(a.active_members().len(), 2);
        assert_no_suspicion(&table).await;
    })
    .await;
}
