//! Liveness probes: one connection per probed silo, answered with the
//! silo's generation and the membership view it has applied.
//!
//! A probe tells a dead silo from a slow one, and a slow prober from
//! both: a connection that merely did not answer in time is kept (a
//! fresh one would cost the next probe a handshake on a peer that is
//! slow already); the time this process itself could not run (its
//! runtime's workers held by long turns, its threads starved of CPU) is
//! added to the probe's timeout, as measured by a ticking task on the
//! same runtime; and an answer that comes after its probe gave up still
//! counts as an answer for the next probe of that silo.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::Request;

use super::pb::{self, silo_link_client::SiloLinkClient};
use crate::transport::Connector;

/// How many probe timeouts a probe waits at most, however long this
/// process was stalled meanwhile.
const MAX_STRETCH: u32 = 3;
/// How many probe timeouts an answer is awaited (and a late one kept for
/// the next probe).
const LATE_BOUND: u32 = 5;

/// One probed silo: the connection, and an answer that came after the
/// probe that asked for it had given up (with when it came).
#[derive(Clone)]
struct Peer {
    client: SiloLinkClient<tonic::transport::Channel>,
    late: Arc<Mutex<Option<(Instant, Answer)>>>,
}

/// A probe's answer: the silo's generation and applied view version.
type Answer = (i64, i64);

/// Sends liveness probes to silos, keeping one connection per silo.
pub(crate) struct Prober {
    peers: Arc<DashMap<String, Peer>>,
    connector: Arc<dyn Connector>,
    stalls: Arc<StallClock>,
    monitor: Mutex<Option<JoinHandle<()>>>,
}

impl Default for Prober {
    fn default() -> Self {
        Prober::with_connector(crate::transport::tcp())
    }
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("peers", &self.peers.len())
            .finish()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        if let Some(t) = self.monitor.lock().take() {
            t.abort();
        }
    }
}

impl Prober {
    /// A prober that reaches silos through `connector`.
    pub(crate) fn with_connector(connector: Arc<dyn Connector>) -> Self {
        Prober {
            peers: Arc::new(DashMap::new()),
            connector,
            stalls: Arc::new(StallClock::default()),
            monitor: Mutex::new(None),
        }
    }

    /// Probes the silo at `endpoint`; its generation and applied view
    /// version if it answered within `timeout` (plus the time this
    /// process was stalled meanwhile, up to `MAX_STRETCH` timeouts) or
    /// had answered an earlier probe after that one gave up, else why
    /// not.
    pub(crate) async fn probe(
        &self,
        endpoint: &str,
        from: &str,
        timeout: Duration,
    ) -> std::result::Result<Answer, String> {
        self.start_monitor(timeout);
        let bound = timeout * LATE_BOUND;
        let peer = match self.peers.get(endpoint) {
            Some(p) => p.clone(),
            None => {
                let channel = crate::transport::lazy_channel(&self.connector, endpoint, bound)
                    .map_err(|e| e.to_string())?;
                let p = Peer {
                    client: SiloLinkClient::new(channel),
                    late: Arc::new(Mutex::new(None)),
                };
                self.peers.insert(endpoint.to_owned(), p.clone());
                p
            }
        };
        let started = Instant::now();
        let stalled_before = self.stalls.stalled();
        let (tx, mut rx) = oneshot::channel();
        {
            let mut client = peer.client.clone();
            let late = peer.late.clone();
            let peers = self.peers.clone();
            let (endpoint, request) = (
                endpoint.to_owned(),
                pb::PingRequest {
                    from: from.to_owned(),
                },
            );
            // Its own task, so that an answer still arrives (and counts)
            // after this probe stopped waiting for it.
            tokio::spawn(async move {
                let outcome =
                    match tokio::time::timeout(bound, client.ping(Request::new(request))).await {
                        Ok(Ok(reply)) => {
                            let r = reply.into_inner();
                            Ok((r.generation, r.applied_version))
                        }
                        // The channel's own request timeout: slow, not broken.
                        Ok(Err(status)) if is_timeout(&status) => Err(None),
                        Ok(Err(status)) => {
                            // The next probe opens a fresh connection: this
                            // one may lead to a stopped incarnation whose
                            // connection still answers "unavailable" while a
                            // new one serves on the same endpoint (the
                            // simulator found a restarted silo never
                            // acknowledged this way).
                            peers.remove(&endpoint);
                            Err(Some(status.to_string()))
                        }
                        Err(_) => Err(None),
                    };
                if let Err(Ok(answer)) = tx.send(outcome) {
                    *late.lock() = Some((Instant::now(), answer));
                }
            });
        }
        // No answer yet is not a broken connection: it is kept (a fresh
        // one would cost the next probe a TCP and HTTP/2 handshake on a
        // peer that is slow already, and make it likelier to miss too; a
        // loaded but live silo was declared dead that way). A connection
        // that went dead is closed by its HTTP/2 keepalive and the channel
        // reconnects by itself.
        let mut deadline = started + timeout;
        let outcome = loop {
            tokio::select! {
                biased;
                got = &mut rx => break got.unwrap_or(Err(None)),
                () = tokio::time::sleep_until(deadline) => {
                    // Time this process could not run does not count
                    // against the peer: its answer may be waiting here.
                    let stalled = self.stalls.stalled().saturating_sub(stalled_before);
                    let stretched =
                        (started + timeout + stalled).min(started + timeout * MAX_STRETCH);
                    if stretched <= Instant::now() {
                        break Err(None);
                    }
                    deadline = stretched;
                }
            }
        };
        // Dropped: an answer from now on goes to `late`.
        drop(rx);
        match outcome {
            Ok(answer) => {
                *peer.late.lock() = None;
                Ok(answer)
            }
            Err(why) => {
                // An earlier probe of this silo was answered after it gave
                // up: the silo is slow, not gone.
                if let Some((at, answer)) = peer.late.lock().take()
                    && at.elapsed() <= bound
                {
                    return Ok(answer);
                }
                Err(why.unwrap_or_else(|| format!("no answer within {timeout:?}")))
            }
        }
    }

    /// Forgets the connection to `endpoint` (after it was declared dead).
    pub(crate) fn forget(&self, endpoint: &str) {
        self.peers.remove(endpoint);
    }

    /// Starts measuring this runtime's stalls, with ticks of a twentieth
    /// of `timeout` (5 to 50 ms), unless it runs already.
    fn start_monitor(&self, timeout: Duration) {
        let mut monitor = self.monitor.lock();
        if monitor.is_none() {
            let tick = (timeout / 20).clamp(Duration::from_millis(5), Duration::from_millis(50));
            *monitor = Some(tokio::spawn(self.stalls.clone().run(tick)));
        }
    }
}

/// How long this process's runtime could not run a task when it was
/// due: a task ticks on it and adds up how late each tick ran.
#[derive(Debug, Default)]
struct StallClock {
    /// Microseconds late, in total, since the clock started.
    late_micros: AtomicU64,
    /// When the last tick ran, in microseconds since `origin`.
    last_tick_micros: AtomicU64,
    /// The length of a tick, in microseconds (0 before it starts).
    tick_micros: AtomicU64,
    origin: std::sync::OnceLock<Instant>,
}

impl StallClock {
    /// Late by less than this is the timer's own granularity, not a stall.
    const SLACK: Duration = Duration::from_millis(2);

    async fn run(self: Arc<Self>, tick: Duration) {
        let origin = *self.origin.get_or_init(Instant::now);
        self.tick_micros
            .store(micros(tick), std::sync::atomic::Ordering::Relaxed);
        let mut due = Instant::now() + tick;
        loop {
            tokio::time::sleep_until(due).await;
            let now = Instant::now();
            let late = now
                .saturating_duration_since(due)
                .saturating_sub(Self::SLACK);
            self.late_micros.fetch_add(micros(late), Ordering::Relaxed);
            self.last_tick_micros
                .store(micros(now - origin), Ordering::Relaxed);
            due = now + tick;
        }
    }

    /// The total stall so far, including the one going on now (the tick
    /// that is overdue).
    fn stalled(&self) -> Duration {
        let Some(origin) = self.origin.get() else {
            return Duration::ZERO;
        };
        let tick = self.tick_micros.load(Ordering::Relaxed);
        let last = self.last_tick_micros.load(Ordering::Relaxed);
        let now = micros(origin.elapsed());
        let overdue = now
            .saturating_sub(last)
            .saturating_sub(tick + micros(Self::SLACK));
        Duration::from_micros(self.late_micros.load(Ordering::Relaxed) + overdue)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Whether `status` is the channel giving up on a request that took too
/// long (not an answer from the peer).
fn is_timeout(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use futures::future::BoxFuture;
    use tokio::sync::Notify;
    use tonic::{Response, Status, Streaming};

    use super::super::batch_stream::BatchStream;
    use super::super::pb::Batch;
    use super::super::pb::silo_link_server::{SiloLink, SiloLinkServer};
    use super::*;
    use crate::transport::BoxedIo;

    /// What the test server does with its n-th ping.
    #[derive(Clone)]
    enum Script {
        At(Duration),
        Unavailable,
        After(Arc<Notify>),
        Never,
    }

    #[derive(Clone)]
    struct Scripted {
        script: Arc<Vec<Script>>,
        pings: Arc<AtomicUsize>,
    }

    #[tonic::async_trait]
    impl SiloLink for Scripted {
        type OpenStream =
            futures::stream::Map<BatchStream, fn(Batch) -> std::result::Result<Batch, Status>>;

        async fn open(
            &self,
            _: tonic::Request<Streaming<Batch>>,
        ) -> std::result::Result<Response<Self::OpenStream>, Status> {
            Err(Status::unimplemented("probes only"))
        }

        async fn ping(
            &self,
            _: tonic::Request<pb::PingRequest>,
        ) -> std::result::Result<Response<pb::PingReply>, Status> {
            let n = self.pings.fetch_add(1, Ordering::SeqCst);
            match self
                .script
                .get(n)
                .cloned()
                .unwrap_or(Script::At(Duration::ZERO))
            {
                Script::At(d) => tokio::time::sleep(d).await,
                Script::Unavailable => return Err(Status::unavailable("stopped serving")),
                Script::After(go) => go.notified().await,
                Script::Never => std::future::pending().await,
            }
            Ok(Response::new(pb::PingReply {
                generation: 7,
                applied_version: n as i64,
            }))
        }

        async fn gateways(
            &self,
            _: tonic::Request<pb::GatewaysRequest>,
        ) -> std::result::Result<Response<pb::GatewaysReply>, Status> {
            Err(Status::unimplemented("probes only"))
        }
    }

    /// TCP, counting the connections it opens.
    struct Counting(Arc<AtomicUsize>);

    impl Connector for Counting {
        fn connect(&self, endpoint: &str) -> BoxFuture<'static, std::io::Result<BoxedIo>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            crate::transport::TcpConnector.connect(endpoint)
        }
    }

    /// A server answering pings by `script`, and a prober counting its
    /// connections to it.
    async fn serve(script: Vec<Script>) -> (String, Prober, Arc<AtomicUsize>, JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        let service = Scripted {
            script: Arc::new(script),
            pings: Arc::new(AtomicUsize::new(0)),
        };
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(SiloLinkServer::new(service))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        let connects = Arc::new(AtomicUsize::new(0));
        let prober = Prober::with_connector(Arc::new(Counting(connects.clone())));
        (endpoint, prober, connects, server)
    }

    const T: Duration = Duration::from_millis(100);

    /// A probe that was not answered in time leaves its connection in
    /// place: the next probe does not pay a new handshake.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_probe_not_answered_in_time_keeps_its_connection() {
        let (endpoint, prober, connects, server) = serve(vec![Script::Never]).await;
        assert!(prober.probe(&endpoint, "t", T).await.is_err());
        assert_eq!(prober.probe(&endpoint, "t", T).await, Ok((7, 1)));
        assert_eq!(connects.load(Ordering::SeqCst), 1, "one connection");
        server.abort();
    }

    /// An "unavailable" answer (a stopped incarnation's connection) makes
    /// the next probe connect afresh.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unavailable_answer_makes_the_next_probe_reconnect() {
        let (endpoint, prober, connects, server) = serve(vec![Script::Unavailable]).await;
        assert!(prober.probe(&endpoint, "t", T).await.is_err());
        assert_eq!(prober.probe(&endpoint, "t", T).await, Ok((7, 1)));
        assert_eq!(connects.load(Ordering::SeqCst), 2, "a fresh connection");
        server.abort();
    }

    /// An answer that comes after its probe gave up counts for the next
    /// probe of that silo, even if that one is not answered: the silo is
    /// slow, not gone. Once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_late_answer_counts_for_the_next_probe() {
        let go = Arc::new(Notify::new());
        let (endpoint, prober, _, server) = serve(vec![
            Script::After(go.clone()),
            Script::Never,
            Script::Never,
        ])
        .await;
        assert!(prober.probe(&endpoint, "t", T).await.is_err());
        go.notify_one();
        let peer = prober.peers.get(&endpoint).unwrap().clone();
        let until = Instant::now() + T * 2;
        while peer.late.lock().is_none() {
            assert!(Instant::now() < until, "the late answer never came");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(prober.probe(&endpoint, "t", T).await, Ok((7, 0)));
        assert!(prober.probe(&endpoint, "t", T).await.is_err());
        server.abort();
    }

    /// Time this process could not run does not count against the peer:
    /// with the runtime's only thread blocked past the timeout, a probe
    /// whose answer was due within it is answered.
    #[tokio::test(flavor = "current_thread")]
    async fn a_stalled_prober_waits_out_its_own_stall() {
        let (endpoint, prober, _, server) = serve(vec![Script::Never]).await;
        // Connected, and the stall clock ticking.
        assert!(prober.probe(&endpoint, "t", T).await.is_err());
        let (endpoint2, prober2) = (endpoint.clone(), Arc::new(prober));
        let p = prober2.clone();
        let probe = tokio::spawn(async move { p.probe(&endpoint2, "t", T).await });
        tokio::task::yield_now().await;
        // Every task of this runtime (the server's too) waits for this.
        std::thread::sleep(T * 2);
        assert_eq!(probe.await.unwrap(), Ok((7, 1)));
        server.abort();
    }
}
