// Over 800 lines on purpose: one scenario, its second process and its
// subjects (ours, TLS, raw unary and stream) read together; the rio-rs
// peer is in remote/rio.rs, the 3-process cluster in remote/cluster.rs.
//! Remote scenarios: a grain call from one silo to a grain on another silo
//! in a second process, over actor-cluster's link on loopback, beside raw
//! tonic doing the same exchange (same payload, a small reply) as one
//! unary call per request and as one multiplexed bidirectional stream.
//!
//! rio-rs 0.7.2 is measured beside them as a peer: its server in the same
//! second process, its clients in this one (see [`rio`]).
//!
//! The second process is this same binary started with
//! [`PEER_FLAG`]: it hosts the callee silo (the grain `echo`), the raw
//! tonic echo server and the rio-rs server, prints their addresses and
//! lives until its stdin closes. Both sides run on two-worker tokio
//! runtimes.
//!
//! The peer also serves its silo's link on a second port with mutual TLS
//! (actor-cluster's `TlsConfig`, rustls on ring; certificates from a CA
//! this process makes at start and hands the peer in its environment):
//! the `remote/tls_*` scenarios measure actor-core over that port beside
//! actor-core over plain TCP, in the same run.
//!
//! The `remote/cluster3_*` scenarios ([`cluster`]) start two more peer
//! processes: a 3-silo cluster, before and after one is killed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::pin::Pin;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actor_cluster::{
    DEFAULT_MAX_FRAME, LinkListener, LinkService, StaticRouter, TcpConnector, TlsConfig,
};
use actor_core::GrainId;
use actor_core::prelude::*;
use cpu_time::ProcessTime;
use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status, Streaming};

use super::runner::{self, Entry, Plan, Targets};
use crate::Config;
use crate::report::{Better, Rule, Scenario};
use crate::subjects::{Role, two_workers as runtime};
use crate::workloads::Sample;

mod cluster;
mod rio;

mod proto {
    #![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
    tonic::include_proto!("benchfloor");
}

use proto::Msg;
use proto::echo_client::EchoClient;
use proto::echo_server::{Echo, EchoServer};

/// The flag that turns this binary into the remote peer process.
pub(crate) const PEER_FLAG: &str = "--remote-peer";

/// Bytes of every request's payload (the reply is a `u64`).
const PAYLOAD: usize = 64;

/// Untimed calls before every sample.
const WARM_UP: u64 = 500;

/// The environment variables that carry the peer's TLS material (the CA
/// certificate, its certificate and its key, PEM): made for one run, and
/// thrown away with it.
const TLS_ENV: [&str; 3] = ["BENCH_TLS_CA", "BENCH_TLS_CERT", "BENCH_TLS_KEY"];

/// The name both sides' certificates carry and check.
const TLS_NAME: &str = "bench.peer";

/// A CA made for this run and two certificates it signed (the peer's and
/// the caller's), as PEM: `(ca, [(cert, key); 2])`.
fn make_certificates() -> Result<(String, [(String, String); 2]), String> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let err = |e: rcgen::Error| format!("making the bench's TLS certificates: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).map_err(err)?.pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = || -> Result<(String, String), String> {
        let key = KeyPair::generate().map_err(err)?;
        let params = CertificateParams::new(vec![TLS_NAME.to_owned()]).map_err(err)?;
        let cert = params.signed_by(&key, &issuer).map_err(err)?.pem();
        Ok((cert, key.serialize_pem()))
    };
    Ok((ca_pem, [leaf()?, leaf()?]))
}

fn tls_config(ca: &str, cert: &str, key: &str) -> Result<TlsConfig, String> {
    TlsConfig::from_pem(ca.as_bytes(), cert.as_bytes(), key.as_bytes())
        .map(|t| t.with_server_name(TLS_NAME))
        .map_err(|e| format!("the bench's TLS configuration: {e}"))
}

// ---------------------------------------------------------------- peer side

/// The callee grain: answers the payload's length.
#[derive(Default)]
struct EchoGrain;

impl Grain for EchoGrain {
    const TYPE_NAME: &'static str = "echo";
}

#[grain_methods]
impl EchoGrain {
    /// The payload's length.
    async fn echo(&mut self, payload: Vec<u8>) -> u64 {
        payload.len() as u64
    }
}

/// The raw tonic echo: the same answer, no runtime.
struct FloorEcho;

type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

fn reply_to(m: &Msg) -> Msg {
    Msg {
        id: m.id,
        payload: (m.payload.len() as u64).to_le_bytes().to_vec(),
    }
}

/// The `u64` a floor reply carries.
fn decode(reply: &Msg) -> u64 {
    let bytes: [u8; 8] = reply.payload.as_slice().try_into().unwrap_or_default();
    u64::from_le_bytes(bytes)
}

#[tonic::async_trait]
impl Echo for FloorEcho {
    async fn unary(&self, request: Request<Msg>) -> Result<Response<Msg>, Status> {
        Ok(Response::new(reply_to(request.get_ref())))
    }

    type StreamStream = MsgStream;

    async fn stream(
        &self,
        request: Request<Streaming<Msg>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let replies = request.into_inner().map(|m| m.map(|m| reply_to(&m)));
        Ok(Response::new(Box::pin(replies)))
    }
}

/// Runs the peer process: the callee silo, the raw echo server and the
/// rio-rs server, until stdin closes. Prints `READY <link address> <floor
/// address> <rio-rs address> <TLS link address>` (`-` for a rio-rs server
/// that did not start, or no TLS link: their scenarios then report them
/// as skipped).
pub(crate) fn serve_peer() -> Result<(), String> {
    runtime().block_on(async {
        let link = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let floor = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let link_at = link.local_addr().map_err(|e| e.to_string())?.to_string();
        let floor_at = floor.local_addr().map_err(|e| e.to_string())?.to_string();
        // The peer owns every grain it is asked for.
        let router = StaticRouter::new(link_at.clone(), vec![link_at.clone()]);
        let silo = Silo::builder()
            .name("bench-peer")
            .grain::<EchoGrain>()
            .router(router.clone())
            .start()
            .await
            .map_err(|e| e.to_string())?;
        router.attach(&silo);
        let link = LinkListener::tcp(link).map_err(|e| e.to_string())?;
        let _link = LinkService::new(silo.clone(), DEFAULT_MAX_FRAME).serve(link);
        // The same silo's link again, on a port that requires mutual TLS.
        let mut tls_at = "-".to_owned();
        let mut _tls_link = None;
        if let [Ok(ca), Ok(cert), Ok(key)] = TLS_ENV.map(std::env::var) {
            let tls = tls_config(&ca, &cert, &key)?;
            let port = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| e.to_string())?;
            tls_at = port.local_addr().map_err(|e| e.to_string())?.to_string();
            let port = LinkListener::tcp(port)
                .and_then(|l| l.with_tls(&tls))
                .map_err(|e| e.to_string())?;
            _tls_link = Some(LinkService::new(silo.clone(), DEFAULT_MAX_FRAME).serve(port));
        }
        let incoming = tonic::transport::server::TcpIncoming::from(floor).with_nodelay(Some(true));
        let _floor = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(EchoServer::new(FloorEcho))
                .serve_with_incoming(incoming),
        );
        let rio_at = rio::serve().await.unwrap_or_else(|e| {
            eprintln!("remote peer: no rio-rs server: {e}");
            "-".to_owned()
        });
        println!("READY {link_at} {floor_at} {rio_at} {tls_at}");
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        // Until the parent closes our stdin (or dies).
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                line.clear();
            }
        })
        .await;
        silo.shutdown().await;
        Ok(())
    })
}

/// The running peer process; it exits when this is dropped.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    link: String,
    floor: String,
    /// The rio-rs server's address, if it started.
    rio: Option<String>,
    /// The peer's TLS link address and the caller's TLS configuration.
    tls: Option<(String, TlsConfig)>,
}

impl Peer {
    fn start(exe: &Path) -> Result<Peer, String> {
        let (ca, [(peer_cert, peer_key), (cert, key)]) = make_certificates()?;
        let caller_tls = tls_config(&ca, &cert, &key)?;
        let mut child = Command::new(exe)
            .arg(PEER_FLAG)
            .env(TLS_ENV[0], &ca)
            .env(TLS_ENV[1], &peer_cert)
            .env(TLS_ENV[2], &peer_key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the peer process {}: {e}", exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("the peer has no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("the peer did not report its addresses: {e}"))?;
        let mut words = line.split_whitespace();
        match (
            words.next(),
            words.next(),
            words.next(),
            words.next(),
            words.next(),
        ) {
            (Some("READY"), Some(link), Some(floor), rio, tls) => Ok(Peer {
                link: link.to_owned(),
                floor: floor.to_owned(),
                rio: rio.filter(|r| *r != "-").map(str::to_owned),
                tls: tls
                    .filter(|t| *t != "-")
                    .map(|t| (t.to_owned(), caller_tls)),
                child,
                stdin,
            }),
            _ => {
                let _ = child.kill();
                Err(format!("the peer said `{}`, not READY", line.trim()))
            }
        }
    }
}

impl Peer {
    /// Kills the process at once (SIGKILL: no shutdown, as a crash), and
    /// reaps it.
    fn kill(mut self) -> Result<(), String> {
        self.child
            .kill()
            .and_then(|()| self.child.wait().map(drop))
            .map_err(|e| format!("killing a peer process: {e}"))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // Give it a moment to shut its silo down, then make sure.
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// -------------------------------------------------------------- caller side

/// A caller of the remote echo: one call `(caller, key, payload)` from
/// caller number `caller` onto grain (or stream id) `key`, answering the
/// payload's length. Boxed so that every subject pays the same; rio-rs
/// needs the caller to pick its client, the others ignore it.
type CallFuture = Pin<Box<dyn std::future::Future<Output = Result<u64, String>> + Send>>;
type Call = Arc<dyn Fn(u64, u64, Vec<u8>) -> CallFuture + Send + Sync>;

/// Calls onto `keys` grains owned by the peers (the first `keys` ids from
/// `first` on that the router gives to one of them), through a local silo
/// whose router knows every silo (so it calls each grain's owner
/// directly); over the peer's mutual TLS port when `tls` is set (one peer
/// only).
async fn ours(
    peers: &[Arc<Peer>],
    first: i64,
    keys: u64,
    tls: bool,
) -> Result<(Call, Silo, tokio::task::JoinHandle<()>), String> {
    let me = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let me_at = me.local_addr().expect("address").to_string();
    let (peers_at, connector) = if tls {
        let [peer] = peers else {
            return Err("TLS is measured against one peer".to_owned());
        };
        let (at, config) = peer
            .tls
            .as_ref()
            .ok_or("the peer process has no TLS link (its reason is on its stderr)")?;
        let connector = config
            .connector(Arc::new(TcpConnector))
            .map_err(|e| e.to_string())?;
        (vec![at.clone()], Some(connector))
    } else {
        (peers.iter().map(|p| p.link.clone()).collect(), None)
    };
    let mut members = peers_at;
    members.push(me_at.clone());
    let router = StaticRouter::new(me_at.clone(), members);
    if let Some(c) = connector {
        router.use_connector(c);
    }
    let silo = Silo::builder()
        .name("bench-caller")
        .grain::<EchoGrain>()
        .router(router.clone())
        .start()
        .await
        .expect("silo starts");
    router.attach(&silo);
    let me = LinkListener::tcp(me).expect("the link listener has an address");
    let server = LinkService::new(silo.clone(), DEFAULT_MAX_FRAME).serve(me);
    // The i-th key a peer owns, for i in 0..keys.
    let remote: Arc<Vec<i64>> = Arc::new(
        (first..)
            .filter(|k| !router.owns(&GrainId::new("echo", *k)))
            .take(keys as usize)
            .collect(),
    );
    let s = silo.clone();
    let call: Call = Arc::new(move |_caller, key, payload| {
        let g = s.get_grain::<EchoGrain>(remote[key as usize % remote.len()]);
        Box::pin(async move {
            g.echo(payload)
                .await
                .map_err(|e| format!("remote grain call: {e:?}"))
        })
    });
    Ok((call, silo, server))
}

async fn unary(peer: &Peer) -> Call {
    let client = EchoClient::connect(format!("http://{}", peer.floor))
        .await
        .expect("the floor's tonic server answers");
    Arc::new(move |_caller, key, payload| {
        let mut client = client.clone();
        Box::pin(async move {
            let reply = client
                .unary(Msg { id: key, payload })
                .await
                .map_err(|e| format!("unary call: {e}"))?
                .into_inner();
            Ok(decode(&reply))
        })
    })
}

/// The bidi floor's calls waiting for their reply, by id.
type Pending = std::sync::Mutex<HashMap<u64, oneshot::Sender<Msg>>>;

async fn stream(peer: &Peer) -> Call {
    let mut client = EchoClient::connect(format!("http://{}", peer.floor))
        .await
        .expect("the floor's tonic server answers");
    let (tx, rx) = mpsc::unbounded_channel::<Msg>();
    let requests =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut replies = client
        .stream(requests)
        .await
        .expect("the stream opens")
        .into_inner();
    let pending: Arc<Pending> = Arc::new(Pending::new(HashMap::new()));
    let table = pending.clone();
    tokio::spawn(async move {
        while let Ok(Some(reply)) = replies.message().await {
            let waiter = table.lock().expect("not poisoned").remove(&reply.id);
            if let Some(waiter) = waiter {
                let _ = waiter.send(reply);
            }
        }
    });
    let next = Arc::new(AtomicU64::new(0));
    Arc::new(move |_caller, _key, payload| {
        let id = next.fetch_add(1, Ordering::Relaxed);
        let (done, reply) = oneshot::channel();
        pending.lock().expect("not poisoned").insert(id, done);
        let sent = tx.send(Msg { id, payload });
        Box::pin(async move {
            sent.map_err(|_| "the stream is closed".to_owned())?;
            let reply = reply.await.map_err(|_| "no reply".to_owned())?;
            Ok(decode(&reply))
        })
    })
}

/// The bidi floor over one stream per peer process, call `key` on the
/// stream of peer `key % peers` (one peer: exactly [`stream`]).
async fn streams(peers: &[Arc<Peer>]) -> Call {
    if let [peer] = peers {
        return stream(peer).await;
    }
    let mut each = Vec::with_capacity(peers.len());
    for p in peers {
        each.push(stream(p).await);
    }
    Arc::new(move |caller, key, payload| each[key as usize % each.len()](caller, key, payload))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Ours,
    /// actor-core over the peer's mutual TLS port.
    OursTls,
    Unary,
    Stream,
    Rio,
}

impl Subject {
    fn name(self) -> &'static str {
        match self {
            Subject::Ours => "actor-core",
            Subject::OursTls => "actor-core, mutual TLS",
            Subject::Unary => "tonic unary",
            Subject::Stream => "tonic bidi stream",
            Subject::Rio => rio::NAME,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    /// One caller, calls in sequence; the figure is this percentile of the
    /// per-call latency (µs).
    Latency { calls: u64, percentile: f64 },
    /// `in_flight` callers, each in sequence onto its own key; calls/s.
    Throughput { in_flight: u64, calls: u64 },
    /// As `Throughput`; the figure is this percentile of the per-call
    /// latency under that load (µs).
    LoadedLatency {
        in_flight: u64,
        calls: u64,
        percentile: f64,
    },
    /// `creators` callers make `count` first calls between them, each to a
    /// grain not active on the peer yet (which the call activates);
    /// activations/s.
    Activation { creators: u64, count: u64 },
}

/// Where the next activation sample's fresh grain ids start (shifted left
/// 32 bits): no sample calls a grain that an earlier one activated.
static FRESH: AtomicU64 = AtomicU64::new(1);

/// Checks one answer: the payload's length.
fn answered(len: u64) -> Result<(), String> {
    if len == PAYLOAD as u64 {
        Ok(())
    } else {
        Err(format!("answered {len}, not {PAYLOAD}"))
    }
}

/// One sample of `shape` against `subject` on the `peers` (actor-core and
/// the stream floor spread their calls over them all; unary and rio-rs
/// call the first).
fn sample(peers: &[Arc<Peer>], subject: Subject, shape: Shape) -> Result<Sample, String> {
    let rt = runtime();
    let peer = peers.first().ok_or("no peer process")?;
    rt.block_on(async {
        // Callers, distinct keys, and where their ids start.
        let (callers, keys, first) = match shape {
            Shape::Latency { .. } => (1, 1, 0),
            Shape::Throughput { in_flight, .. } | Shape::LoadedLatency { in_flight, .. } => {
                (in_flight, in_flight, 0)
            }
            Shape::Activation { creators, count } => (
                creators,
                creators + count,
                FRESH.fetch_add(1, Ordering::Relaxed) << 32,
            ),
        };
        let mut silo = None;
        let call = match subject {
            Subject::Ours | Subject::OursTls => {
                let tls = subject == Subject::OursTls;
                let (call, s, server) = ours(peers, first as i64, keys, tls).await?;
                silo = Some((s, server));
                call
            }
            Subject::Unary => unary(peer).await,
            Subject::Stream => streams(peers).await,
            Subject::Rio => {
                let at = peer
                    .rio
                    .as_deref()
                    .ok_or("the peer process has no rio-rs server (its reason is on its stderr)")?;
                rio::callers(at, callers, first).await?
            }
        };
        let out = measure(&call, callers, keys, shape).await;
        if let Some((silo, server)) = silo {
            server.abort();
            silo.shutdown().await;
        }
        out
    })
}

/// Warms `call` up, then takes one sample of `shape` with it.
async fn measure(call: &Call, callers: u64, keys: u64, shape: Shape) -> Result<Sample, String> {
    let payload = vec![7u8; PAYLOAD];
    // Warm up every caller (a rio-rs client opens its connection) and, but
    // for activation samples, every key (activates the grains on the
    // peer); activation samples warm up on their first `callers` keys and
    // measure the others.
    let warm = match shape {
        Shape::Activation { .. } => callers,
        _ => keys,
    };
    for i in 0..warm.max(WARM_UP) {
        let key = i % warm;
        answered(call(key % callers, key, payload.clone()).await?)?;
    }
    match shape {
        Shape::Latency { calls, percentile } => {
            let c = call.clone();
            let p = payload.clone();
            tokio::spawn(async move {
                let mut took = Vec::with_capacity(calls as usize);
                let cpu = ProcessTime::now();
                for _ in 0..calls {
                    let t = Instant::now();
                    std::hint::black_box(c(0, 0, p.clone()).await?);
                    took.push(t.elapsed().as_nanos() as f64 / 1_000.0);
                }
                let cpu = cpu.elapsed().as_nanos() as f64 / calls as f64;
                took.sort_by(f64::total_cmp);
                let at = ((took.len() - 1) as f64 * percentile).round() as usize;
                Ok(Sample {
                    value: took[at],
                    cpu_ns_per_op: Some(cpu),
                })
            })
            .await
            .map_err(|e| format!("the caller task: {e}"))?
        }
        Shape::Throughput { in_flight, calls } => {
            let per_caller = (calls / in_flight).max(1);
            let done = per_caller * in_flight;
            run_callers(call, &payload, in_flight, done, None, |caller| {
                (0..per_caller).map(move |_| caller)
            })
            .await
        }
        Shape::LoadedLatency {
            in_flight,
            calls,
            percentile,
        } => {
            let per_caller = (calls / in_flight).max(1);
            let done = per_caller * in_flight;
            run_callers(
                call,
                &payload,
                in_flight,
                done,
                Some(percentile),
                |caller| (0..per_caller).map(move |_| caller),
            )
            .await
        }
        Shape::Activation { creators, count } => {
            let per = (count / creators).max(1);
            let made = per * creators;
            // Creator c's i-th call is the first to key creators + c * per + i.
            run_callers(call, &payload, creators, made, None, move |c| {
                (0..per).map(move |i| creators + c * per + i)
            })
            .await
        }
    }
}

/// Runs `callers` tasks, caller `c` calling in sequence the keys
/// `keys(c)` yields (`ops` calls in all): operations per second, or with
/// `percentile` that percentile of the calls' latencies (µs; each call
/// timed on its own).
async fn run_callers<K, I>(
    call: &Call,
    payload: &[u8],
    callers: u64,
    ops: u64,
    percentile: Option<f64>,
    keys: K,
) -> Result<Sample, String>
where
    K: Fn(u64) -> I,
    I: Iterator<Item = u64> + Send + 'static,
{
    let start = Instant::now();
    let cpu = ProcessTime::now();
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let c = call.clone();
            let p = payload.to_vec();
            let keys = keys(caller);
            tokio::spawn(async move {
                let mut took = Vec::new();
                for key in keys {
                    if percentile.is_some() {
                        let t = Instant::now();
                        std::hint::black_box(c(caller, key, p.clone()).await?);
                        took.push(t.elapsed().as_nanos() as f64 / 1_000.0);
                    } else {
                        std::hint::black_box(c(caller, key, p.clone()).await?);
                    }
                }
                Ok::<Vec<f64>, String>(took)
            })
        })
        .collect();
    let mut failed = None;
    let mut took = Vec::new();
    for t in tasks {
        match t
            .await
            .map_err(|e| format!("a caller task: {e}"))
            .and_then(|r| r)
        {
            Ok(mine) => took.extend(mine),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    let wall = start.elapsed();
    let cpu_ns_per_op = Some(cpu.elapsed().as_nanos() as f64 / ops as f64);
    let value = match percentile {
        None => ops as f64 / wall.as_secs_f64(),
        Some(p) => {
            took.sort_by(f64::total_cmp);
            took[((took.len() - 1) as f64 * p).round() as usize]
        }
    };
    Ok(Sample {
        value,
        cpu_ns_per_op,
    })
}

fn entries(peer: &Arc<Peer>, shape: Shape) -> Vec<Entry> {
    let peers: Arc<[Arc<Peer>]> = Arc::from([peer.clone()]);
    [Subject::Ours, Subject::Stream, Subject::Unary, Subject::Rio]
        .into_iter()
        .map(|subject| {
            let peers = peers.clone();
            let role = match subject {
                Subject::Ours => Role::Ours,
                Subject::Stream => Role::Floor,
                Subject::OursTls | Subject::Unary | Subject::Rio => Role::Peer,
            };
            let note = match subject {
                Subject::Unary => Some("raw tonic, one unary call per request (a second floor)"),
                Subject::Rio => Some(rio::NOTE),
                _ => None,
            };
            Entry::from_fn(subject.name(), role, note, move || {
                let s = sample(&peers, subject, shape);
                // actor-core is what every scenario is about: no figure
                // without it.
                if subject == Subject::Ours {
                    return Ok(s.unwrap_or_else(|e| panic!("actor-core: {e}")));
                }
                s
            })
        })
        .collect()
}

/// The entries of a `remote/tls_*` scenario: actor-core over the peer's
/// mutual TLS port (the scenario's subject) and over its plain TCP port
/// (the comparison), sampled in turn in the same run.
fn tls_entries(peer: &Arc<Peer>, shape: Shape) -> Vec<Entry> {
    let tls: Arc<[Arc<Peer>]> = Arc::from([peer.clone()]);
    let plain = tls.clone();
    vec![
        Entry::from_fn(Subject::OursTls.name(), Role::Ours, None, move || {
            Ok(sample(&tls, Subject::OursTls, shape)
                .unwrap_or_else(|e| panic!("actor-core over TLS: {e}")))
        }),
        Entry::from_fn(
            "actor-core, plain TCP",
            Role::Peer,
            Some("the same silos, the same calls, over the peer's plain TCP port"),
            move || sample(&plain, Subject::Ours, shape),
        ),
    ]
}

/// Caller tasks of the activation scenario (as in the local one).
const CREATORS: u64 = 64;

/// One remote workload once against one subject, for profilers:
/// `remote/ask_latency` (the p50 of `count` sequential calls),
/// `remote/ask_throughput_{N}_in_flight` (`count` calls) or
/// `remote/activation_rate` (`count` first calls from 64 callers), with
/// subject `actor-core`, `actor-core-tls`, `stream`, `unary` or `rio-rs`.
pub(crate) fn profile(
    workload: &str,
    subject: &str,
    count: u64,
    exe: &Path,
) -> Result<Sample, String> {
    let subject = match subject {
        "actor-core" => Subject::Ours,
        "actor-core-tls" => Subject::OursTls,
        "stream" => Subject::Stream,
        "unary" => Subject::Unary,
        "rio-rs" => Subject::Rio,
        other => {
            return Err(format!(
                "unknown remote subject `{other}` (actor-core, actor-core-tls, stream, unary, rio-rs)"
            ));
        }
    };
    let shape = if workload == "remote/ask_latency" {
        Shape::Latency {
            calls: count,
            percentile: 0.5,
        }
    } else if workload == "remote/activation_rate" {
        Shape::Activation {
            creators: CREATORS,
            count,
        }
    } else {
        let in_flight = workload
            .strip_prefix("remote/ask_throughput_")
            .and_then(|w| w.strip_suffix("_in_flight"))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("unknown workload `{workload}`"))?;
        Shape::Throughput {
            in_flight,
            calls: count,
        }
    };
    let peer = Arc::new(Peer::start(exe)?);
    sample(&[peer], subject, shape)
}

/// Runs the remote scenarios whose name contains `config.only`, with the
/// peer process started from `config.peer_exe`.
pub(crate) fn run(config: &Config) -> Result<Vec<Scenario>, String> {
    let wanted = |name: &str| config.only.as_deref().is_none_or(|o| name.contains(o));
    let names = [
        "remote/ask_latency_p50",
        "remote/ask_latency_p99",
        "remote/ask_throughput_64_in_flight",
        "remote/ask_throughput_1000_in_flight",
        "remote/activation_rate",
        "remote/tls_ask_latency_p50",
        "remote/tls_ask_throughput_64_in_flight",
    ];
    if !names.iter().any(|n| wanted(n)) && !cluster::names().iter().any(|(n, ..)| wanted(n)) {
        return Ok(Vec::new());
    }
    let exe = config
        .peer_exe
        .as_deref()
        .ok_or("no peer executable configured (Config::peer_exe)")?;
    let peer = Arc::new(Peer::start(exe)?);
    let mut out = Vec::new();
    let floor_name = "floor: tonic bidi stream";
    for (percentile, label) in [(0.5, "p50"), (0.99, "p99")] {
        let name = format!("remote/ask_latency_{label}");
        if !wanted(&name) {
            continue;
        }
        let plan = Plan {
            name,
            description: format!(
                "{label} of the latency of {} sequential asks from a silo to a grain on a \
                 silo in a second process, over loopback, {PAYLOAD}-byte payload, u64 reply; \
                 floor: the same exchange with one call in flight on one raw tonic \
                 bidirectional stream; also raw tonic unary, and {} (one client calling a \
                 service object on its server in the second process).",
                config.remote_calls,
                rio::NAME
            ),
            unit: "µs/call",
            better: Better::Lower,
            runs: config.runs,
            targets: Targets {
                floor: Some((Rule::AtMost, 1.3)),
                ..Targets::default()
            },
            floor_name,
        };
        let shape = Shape::Latency {
            calls: config.remote_calls,
            percentile,
        };
        out.push(runner::run(plan, entries(&peer, shape), "remote"));
    }
    for in_flight in [64, 1000] {
        let name = format!("remote/ask_throughput_{in_flight}_in_flight");
        if !wanted(&name) {
            continue;
        }
        let calls = config.remote_calls * 4;
        let plan = Plan {
            name,
            description: format!(
                "{in_flight} caller tasks on one silo, each asking its own grain on a silo \
                 in a second process in sequence, {calls} calls in all, {PAYLOAD}-byte \
                 payload; floor: {in_flight} callers multiplexed on one raw tonic \
                 bidirectional stream; also raw tonic unary (HTTP/2-multiplexed), and {} \
                 with {in_flight} clients, so {in_flight} TCP connections (its client \
                 carries one call at a time), each asking its own service object.",
                rio::NAME
            ),
            unit: "calls/s",
            better: Better::Higher,
            runs: config.runs,
            targets: Targets {
                floor: Some((Rule::AtLeast, 0.6)),
                ..Targets::default()
            },
            floor_name,
        };
        let shape = Shape::Throughput { in_flight, calls };
        out.push(runner::run(plan, entries(&peer, shape), "remote"));
    }
    let name = "remote/activation_rate";
    if wanted(name) {
        let count = config.remote_calls;
        let plan = Plan {
            name: name.to_owned(),
            description: format!(
                "{CREATORS} caller tasks on one silo make {count} first calls between them, \
                 each to a grain not yet active on a silo in a second process (the call \
                 activates it there), {PAYLOAD}-byte payload; {}: {CREATORS} clients making \
                 first calls to new service-object ids on its server in the second process; \
                 floor: the same calls from {CREATORS} callers on one raw tonic bidirectional \
                 stream (nothing to activate); also raw tonic unary.",
                rio::NAME
            ),
            unit: "activations/s",
            better: Better::Higher,
            runs: config.runs,
            targets: Targets::default(),
            floor_name,
        };
        let shape = Shape::Activation {
            creators: CREATORS,
            count,
        };
        out.push(runner::run(plan, entries(&peer, shape), "remote"));
    }
    let name = "remote/tls_ask_latency_p50";
    if wanted(name) {
        let plan = Plan {
            name: name.to_owned(),
            description: format!(
                "p50 of the latency of {} sequential asks as in remote/ask_latency_p50, over \
                 the peer's mutual TLS port (rustls on ring, TLS 1.3, both sides presenting a \
                 certificate of a CA made for the run); against the same calls over its plain \
                 TCP port, sampled in turn in the same run.",
                config.remote_calls
            ),
            unit: "µs/call",
            better: Better::Lower,
            runs: config.runs,
            targets: Targets::default(),
            floor_name,
        };
        let shape = Shape::Latency {
            calls: config.remote_calls,
            percentile: 0.5,
        };
        out.push(runner::run(plan, tls_entries(&peer, shape), "remote"));
    }
    let name = "remote/tls_ask_throughput_64_in_flight";
    if wanted(name) {
        let calls = config.remote_calls * 4;
        let plan = Plan {
            name: name.to_owned(),
            description: format!(
                "64 caller tasks asking their own grains on the peer as in \
                 remote/ask_throughput_64_in_flight ({calls} calls), over the peer's mutual \
                 TLS port (rustls on ring, TLS 1.3); against the same calls over its plain TCP \
                 port, sampled in turn in the same run. Target (issue 16): TLS keeps at least \
                 0.85x the plain throughput."
            ),
            unit: "calls/s",
            better: Better::Higher,
            runs: config.runs,
            targets: Targets {
                peers: Some((Rule::AtLeast, 0.85)),
                ..Targets::default()
            },
            floor_name,
        };
        let shape = Shape::Throughput {
            in_flight: 64,
            calls,
        };
        out.push(runner::run(plan, tls_entries(&peer, shape), "remote"));
    }
    out.extend(cluster::run(config, exe, &peer, &wanted)?);
    Ok(out)
}
