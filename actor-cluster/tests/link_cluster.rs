//! Silos joined by gRPC links on loopback: the same typed references reach
//! the one activation of each grain wherever it lives, and deadlines,
//! request context and deadlock detection cross the wire.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use actor_cluster::{
    BoxedIo, Connector, DEFAULT_MAX_FRAME, Link, LinkListener, LinkOptions, LinkService,
    StaticRouter,
};
use actor_core::prelude::*;
use actor_core::{EncodedCall, Error};
use futures::future::BoxFuture;
use tokio::net::TcpListener;

/// Each hop's silo name and the "user" it saw, or the error that stopped it.
pub type Trail = Result<Vec<(String, Option<String>)>, Error>;

/// A grain that counts, hops, naps and echoes.
#[derive(Default)]
pub struct Node {
    hits: u64,
}

impl Grain for Node {
    const TYPE_NAME: &'static str = "node";
}

#[grain_methods]
impl Node {
    /// Counts a hit.
    pub async fn hit(&mut self) -> u64 {
        self.hits += 1;
        self.hits
    }

    /// Visits `path` in order; each hop reports its silo and the "user" it sees.
    pub async fn hop(&mut self, path: Vec<i64>, ctx: &GrainContext<Self>) -> Trail {
        let mut seen = vec![(ctx.silo().name().to_owned(), RequestContext::get("user"))];
        if let Some((next, rest)) = path.split_first() {
            seen.extend(ctx.get_grain::<Node>(*next).hop(rest.to_vec()).await??);
        }
        Ok(seen)
    }

    /// Sleeps.
    pub async fn nap(&mut self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// Echoes a payload.
    pub async fn echo(&mut self, bytes: Vec<u8>) -> usize {
        bytes.len()
    }

    /// Tells grain `to` to note a visit, without waiting for it.
    pub async fn poke(&mut self, to: i64, ctx: &GrainContext<Self>) -> Result<(), Error> {
        Ok(ctx.get_grain::<Node>(to).note()?)
    }

    /// Counts a visit (one-way).
    #[one_way]
    pub async fn note(&mut self) {
        self.hits += 1;
    }
}

struct Member {
    silo: Silo,
    router: Arc<StaticRouter>,
    endpoint: String,
    _server: tokio::task::JoinHandle<()>,
}

async fn cluster(n: usize, max_frame: usize) -> Vec<Member> {
    let mut listeners = Vec::new();
    for _ in 0..n {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let endpoints: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let mut members = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let router = StaticRouter::new(endpoints[i].clone(), endpoints.clone());
        let silo = Silo::builder()
            .name(format!("silo{i}"))
            .grain::<Node>()
            .router(router.clone())
            .start()
            .await
            .unwrap();
        router.attach(&silo);
        let server =
            LinkService::new(silo.clone(), max_frame).serve(LinkListener::tcp(listener).unwrap());
        members.push(Member {
            silo,
            router,
            endpoint: endpoints[i].clone(),
            _server: server,
        });
    }
    members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grain_has_one_activation_across_three_silos() {
    let members = cluster(3, DEFAULT_MAX_FRAME).await;
    let mut calls = Vec::new();
    for m in &members {
        for key in 0..300i64 {
            let g = m.silo.get_grain::<Node>(key);
            calls.push(tokio::spawn(async move { g.hit().await }));
        }
    }
    for c in calls {
        c.await.unwrap().unwrap();
    }
    let mut total = 0;
    for key in 0..300i64 {
        let id = GrainId::new("node", key);
        let hosts: Vec<_> = members
            .iter()
            .filter(|m| m.silo.is_active(&id))
            .map(|m| m.endpoint.clone())
            .collect();
        assert_eq!(hosts.len(), 1, "{id} is active on {hosts:?}");
        assert_eq!(hosts[0], members[0].router.owner(&id));
        // Three hits, one from each silo, counted by the one activation.
        assert_eq!(
            members[key as usize % 3]
                .silo
                .get_grain::<Node>(key)
                .hit()
                .await
                .unwrap(),
            4
        );
        total += 1;
    }
    assert_eq!(total, 300);
    let active: usize = members.iter().map(|m| m.silo.activation_count()).sum();
    assert_eq!(active, 300);
    assert!(
        members.iter().all(|m| m.silo.activation_count() > 50),
        "grains spread over all silos"
    );
}

/// Keys whose owners alternate between silo `a` and silo `b`.
fn alternating(members: &[Member], a: usize, b: usize, len: usize) -> Vec<i64> {
    let mut keys = Vec::new();
    let mut want = a;
    for k in 0..10_000i64 {
        if keys.len() == len {
            break;
        }
        if members[0].router.owner(&GrainId::new("node", k)) == members[want].endpoint {
            keys.push(k);
            want = if want == a { b } else { a };
        }
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_context_and_nested_calls_cross_the_wire() {
    let members = cluster(2, DEFAULT_MAX_FRAME).await;
    let keys = alternating(&members, 0, 1, 4);
    let seen = RequestContext::new()
        .with("user", "ada")
        .scope(
            members[1]
                .silo
                .get_grain::<Node>(keys[0])
                .hop(keys[1..].to_vec()),
        )
        .await
        .unwrap()
        .unwrap();
    let silos: Vec<_> = seen.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(silos, ["silo0", "silo1", "silo0", "silo1"]);
    assert!(seen.iter().all(|(_, u)| u.as_deref() == Some("ada")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_across_silos_fails_fast_naming_it() {
    let members = cluster(2, DEFAULT_MAX_FRAME).await;
    let keys = alternating(&members, 0, 1, 2);
    let (a, b) = (keys[0], keys[1]);
    let started = Instant::now();
    let err = members[0]
        .silo
        .get_grain::<Node>(a)
        .hop(vec![b, a])
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let Error::Deadlock { cycle, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        cycle,
        &vec![
            GrainId::new("node", a),
            GrainId::new("node", b),
            GrainId::new("node", a)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_cross_the_wire() {
    let members = cluster(2, DEFAULT_MAX_FRAME).await;
    let far = alternating(&members, 1, 0, 1)[0];
    let g = members[0].silo.get_grain::<Node>(far);
    let started = Instant::now();
    let err = g
        .with_timeout(Duration::from_millis(100))
        .nap(3_000)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// An encoded `nap` call onto grain `key` with `timeout`.
fn nap_call(key: i64, ms: u64, timeout: Duration) -> EncodedCall {
    let payload = actor_core::__private::codec::encode(&NodeNap { ms }).unwrap();
    EncodedCall::new(GrainId::new("node", key), "nap", payload, timeout)
}

/// A TCP transport whose reads can be held back: while frozen, the caller
/// sends but hears nothing, so only its own deadlines end its calls.
#[derive(Clone, Default)]
struct Freezer {
    frozen: Arc<AtomicBool>,
    writes_frozen: Arc<AtomicBool>,
    waiting: Arc<std::sync::Mutex<Vec<Waker>>>,
}

impl Freezer {
    fn set(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
        self.wake(frozen);
    }

    /// Holds back (or lets go) what the caller writes.
    fn set_writes(&self, frozen: bool) {
        self.writes_frozen.store(frozen, Ordering::SeqCst);
        self.wake(frozen);
    }

    fn wake(&self, frozen: bool) {
        if !frozen {
            for w in self.waiting.lock().unwrap().drain(..) {
                w.wake();
            }
        }
    }
}

impl Freezer {
    /// Whether `flag` holds this direction back now; if so, `cx` is woken
    /// when the freezer lets go.
    fn holds(&self, flag: &std::sync::atomic::AtomicBool, cx: &Context<'_>) -> bool {
        let held = flag.load(Ordering::SeqCst);
        if held {
            self.waiting.lock().unwrap().push(cx.waker().clone());
        }
        held
    }
}

struct FreezableIo {
    inner: tokio::net::TcpStream,
    freezer: Freezer,
}

impl tokio::io::AsyncRead for FreezableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.freezer.holds(&self.freezer.frozen, cx) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for FreezableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.freezer.holds(&self.freezer.writes_frozen, cx) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connector for Freezer {
    fn connect(&self, endpoint: &str) -> BoxFuture<'static, std::io::Result<BoxedIo>> {
        let (endpoint, freezer) = (endpoint.to_owned(), self.clone());
        Box::pin(async move {
            let inner = tokio::net::TcpStream::connect(&endpoint).await?;
            inner.set_nodelay(true)?;
            Ok(Box::new(FreezableIo { inner, freezer }) as BoxedIo)
        })
    }
}

/// A link to `to` over a connection whose reads and writes the test can
/// hold back.
async fn frozen_link(to: &Member) -> (Freezer, Arc<Link>) {
    let freezer = Freezer::default();
    let connector: Arc<dyn Connector> = Arc::new(freezer.clone());
    let options = LinkOptions {
        connector,
        ..LinkOptions::default()
    };
    let link = Link::connect(&to.endpoint, options).await.unwrap();
    (freezer, Arc::new(link))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_fails_each_call_at_its_own_deadline() {
    let members = cluster(2, DEFAULT_MAX_FRAME).await;
    let far: Vec<i64> = alternating(&members, 1, 0, 7)
        .into_iter()
        .step_by(2)
        .collect();
    let (freezer, link) = frozen_link(&members[1]).await;
    let hit = |key: i64, timeout: Duration| {
        let payload = actor_core::__private::codec::encode(&NodeHit {}).unwrap();
        EncodedCall::new(GrainId::new("node", key), "hit", payload, timeout)
    };
    // The link works; then the caller stops hearing the callee.
    let reply = link
        .call(hit(far[3], Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(
        actor_core::__private::codec::decode::<u64>(&reply).unwrap(),
        1
    );
    freezer.set(true);
    let started = Instant::now();
    // A call with a long deadline first, then shorter ones: each shorter
    // deadline must re-arm the link's deadline sweep, or these would wait
    // as long as the first.
    let long = tokio::spawn(link.clone().call_owned(nap_call(
        far[0],
        60_000,
        Duration::from_secs(30),
    )));
    let timed = |key, timeout_ms| {
        let reply = link
            .clone()
            .call_owned(hit(key, Duration::from_millis(timeout_ms)));
        tokio::spawn(async move {
            let outcome = reply.await;
            (outcome, started.elapsed())
        })
    };
    let slow = timed(far[1], 600);
    let fast = timed(far[2], 200);
    let (fast, fast_at) = fast.await.unwrap();
    let (slow, slow_at) = slow.await.unwrap();
    for (outcome, key, timeout) in [(&fast, far[2], 200), (&slow, far[1], 600)] {
        match outcome {
            Err(Error::Timeout {
                grain,
                method,
                timeout: t,
            }) => {
                assert_eq!(grain, &GrainId::new("node", key));
                assert_eq!(method, "hit");
                assert_eq!(*t, Duration::from_millis(timeout));
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
    assert!(
        fast_at >= Duration::from_millis(200) && fast_at < Duration::from_millis(550),
        "{fast_at:?}"
    );
    assert!(
        slow_at >= Duration::from_millis(600) && slow_at < Duration::from_millis(1_500),
        "{slow_at:?}"
    );
    // The callee ran them; their late replies are dropped, and the link
    // serves on.
    freezer.set(false);
    let reply = link
        .call(hit(far[2], Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(
        actor_core::__private::codec::decode::<u64>(&reply).unwrap(),
        2
    );
    assert!(!long.is_finished());
    // A link declared dead fails what is still waiting at once.
    link.fail_pending();
    let err = tokio::time::timeout(Duration::from_secs(2), long)
        .await
        .expect("failed at once, not at its deadline")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::SiloUnavailable { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_waiting_for_room_on_a_full_link_still_end_at_their_deadline_or_its_failure() {
    let members = cluster(2, DEFAULT_MAX_FRAME).await;
    let far = alternating(&members, 1, 0, 1)[0];
    let hit = |timeout: Duration| {
        let payload = actor_core::__private::codec::encode(&NodeHit {}).unwrap();
        EncodedCall::new(GrainId::new("node", far), "hit", payload, timeout)
    };
    // More calls than the stream's queue and HTTP/2's buffers hold while
    // nothing can be written: the last ones wait for room.
    const CALLS: usize = 60_000;
    for declared_dead in [false, true] {
        let (freezer, link) = frozen_link(&members[1]).await;
        freezer.set_writes(true);
        let timeout = if declared_dead {
            Duration::from_secs(30)
        } else {
            Duration::from_millis(300)
        };
        let replies: Vec<_> = (0..CALLS)
            .map(|_| link.clone().call_owned(hit(timeout)))
            .collect();
        if declared_dead {
            tokio::time::sleep(Duration::from_millis(300)).await;
            link.fail_pending();
        }
        // Each ends by its deadline or the declaration, not when the
        // transport's keep-alive gives up on the connection (that would be
        // a plain "silo unavailable").
        for reply in futures::future::join_all(replies).await {
            match reply.unwrap_err() {
                Error::SiloUnavailable { silo } if declared_dead => {
                    assert!(silo.contains("declared dead"), "{silo}");
                }
                Error::Timeout { .. } if !declared_dead => {}
                other => panic!("{other:?}"),
            }
        }
        freezer.set_writes(false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_a_link_run_in_the_order_they_were_sent() {
    let members = cluster(2, DEFAULT_MAX_FRAME).await;
    let far = alternating(&members, 1, 0, 1)[0];
    let link = Arc::new(
        Link::connect(&members[1].endpoint, LinkOptions::default())
            .await
            .unwrap(),
    );
    let hit = actor_core::__private::codec::encode(&NodeHit {}).unwrap();
    // Each call is queued on the stream when it is made: 500 in flight at
    // once onto one grain, which numbers them in the order it runs them.
    let replies: Vec<_> = (0..500)
        .map(|_| {
            link.clone().call_owned(EncodedCall::new(
                GrainId::new("node", far),
                "hit",
                hit.clone(),
                Duration::from_secs(10),
            ))
        })
        .collect();
    let replies = futures::future::join_all(replies).await;
    for (i, reply) in replies.into_iter().enumerate() {
        let n: u64 = actor_core::__private::codec::decode(&reply.unwrap()).unwrap();
        assert_eq!(n, i as u64 + 1, "call {i} ran out of order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_frames_close_the_stream_not_the_silo() {
    let members = cluster(2, 64 * 1024).await;
    let far = alternating(&members, 1, 0, 1)[0];
    let target = &members[1];

    // A frame above the callee's limit ends that stream; the call fails
    // at once instead of waiting for its deadline.
    let link = Link::connect(&target.endpoint, LinkOptions::default())
        .await
        .unwrap();
    let big = actor_core::__private::codec::encode(&NodeEcho {
        bytes: vec![7; 256 * 1024],
    })
    .unwrap();
    let started = Instant::now();
    let err = link
        .call(EncodedCall::new(
            GrainId::new("node", far),
            "echo",
            big,
            Duration::from_secs(10),
        ))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, Error::SiloUnavailable { .. }), "{err:?}");
    assert!(!link.is_alive());

    // Bytes that are not HTTP/2 at all: the connection is dropped.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(&target.endpoint)
        .await
        .unwrap();
    raw.write_all(&[0xde, 0xad, 0xbe, 0xef].repeat(1024))
        .await
        .unwrap();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut sink)).await;
    assert!(
        read.is_ok(),
        "the silo closes a connection that speaks garbage"
    );

    // A garbage payload inside a good frame is a clear error for that call.
    let link = Link::connect(&target.endpoint, LinkOptions::default())
        .await
        .unwrap();
    let err = link
        .call(EncodedCall::new(
            GrainId::new("node", far),
            "echo",
            vec![0xff; 9],
            Duration::from_secs(5),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Serialization(_)), "{err:?}");

    // And the silo still serves, through its router and a fresh link.
    let g = members[0].silo.get_grain::<Node>(far);
    assert_eq!(g.echo(vec![1; 1000]).await.unwrap(), 1000);
    assert_eq!(g.hit().await.unwrap(), 1);
}

/// A silo serving on a fresh local port, in a static cluster with one
/// other member at `other`: its endpoint, router, silo and server.
async fn beside(other: &str) -> (String, Arc<StaticRouter>, Silo, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = listener.local_addr().unwrap().to_string();
    let router = StaticRouter::new(me.clone(), vec![me.clone(), other.to_owned()]);
    let silo = Silo::builder()
        .grain::<Node>()
        .router(router.clone())
        .start()
        .await
        .unwrap();
    router.attach(&silo);
    let server = LinkService::new(silo.clone(), DEFAULT_MAX_FRAME)
        .serve(LinkListener::tcp(listener).unwrap());
    (me, router, silo, server)
}

/// A `node` key whose grain `member` owns.
fn owned_by(router: &StaticRouter, member: &str) -> i64 {
    (0..1000i64)
        .find(|k| router.owner(&GrainId::new("node", *k)) == member)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_a_silo_that_is_not_there_fail_fast() {
    // A member list naming an endpoint nobody listens on.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let (me, router, silo, _server) = beside(&dead).await;
    let key = owned_by(&router, &dead);
    let started = Instant::now();
    let err = silo.get_grain::<Node>(key).hit().await.unwrap_err();
    assert!(matches!(err, Error::SiloUnavailable { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Grains this silo owns still work.
    let mine = owned_by(&router, &me);
    assert_eq!(silo.get_grain::<Node>(mine).hit().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_silo_that_never_answers_ends_at_its_deadline() {
    // An endpoint that accepts connections and then says nothing: the
    // link's connection attempt hangs (up to the router's 2 s connect
    // timeout), and the call, with no timer of its reference's own (the
    // static router bounds its calls), must still end at its deadline.
    let mute = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = mute.local_addr().unwrap().to_string();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = mute.accept().await {
            open.push(s);
        }
    });
    let (_, router, silo, _server) = beside(&dead).await;
    let key = owned_by(&router, &dead);
    let started = Instant::now();
    let err = silo
        .get_grain::<Node>(key)
        .with_timeout(Duration::from_millis(300))
        .hit()
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, Error::Timeout { .. } | Error::SiloUnavailable { .. }),
        "{err:?}"
    );
    assert!(took < Duration::from_millis(1_500), "{took:?}");
    held.abort();
}

/// Records the caller of every `note` call a silo runs.
#[derive(Clone, Default)]
struct Senders(Arc<std::sync::Mutex<Vec<Option<GrainId>>>>);

impl actor_core::IncomingCallFilter for Senders {
    fn on_request(&self, call: &actor_core::CallInfo<'_>) -> Result<(), String> {
        if call.method.ends_with("note") {
            self.0.lock().unwrap().push(call.sender.cloned());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_call_names_its_sender_across_silos() {
    let listeners = [
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    ];
    let endpoints: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let senders = Senders::default();
    let mut silos = Vec::new();
    let mut routers = Vec::new();
    let mut servers = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let router = StaticRouter::new(endpoints[i].clone(), endpoints.clone());
        let silo = Silo::builder()
            .name(format!("silo{i}"))
            .grain::<Node>()
            .incoming_filter(senders.clone())
            .router(router.clone())
            .start()
            .await
            .unwrap();
        router.attach(&silo);
        servers.push(
            LinkService::new(silo.clone(), DEFAULT_MAX_FRAME)
                .serve(LinkListener::tcp(listener).unwrap()),
        );
        silos.push(silo);
        routers.push(router);
    }
    // A poker on silo 0 and its target on silo 1.
    let owned_by = |silo: usize| {
        (0i64..)
            .find(|k| routers[0].owner(&GrainId::new("node", *k)) == endpoints[silo])
            .unwrap()
    };
    let (poker, target) = (owned_by(0), owned_by(1));
    silos[0]
        .get_grain::<Node>(poker)
        .poke(target)
        .await
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while senders.0.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the one-way call never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        *senders.0.lock().unwrap(),
        [Some(GrainId::new("node", poker))],
        "a one-way call carries no chain, so only the envelope names its sender"
    );
    assert!(silos[1].is_active(&GrainId::new("node", target)));
    servers.iter().for_each(|s| s.abort());
}
