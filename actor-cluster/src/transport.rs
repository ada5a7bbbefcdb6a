//! The transport seam: how a silo link reaches another silo and how a silo
//! serves its link. The link's gRPC code is the same over every transport;
//! only the byte streams under it change.
//!
//! The default is TCP ([`TcpConnector`], and a `TcpListener` turned into a
//! [`LinkListener`]). Tests plug in other byte streams (in-memory duplex
//! pipes, a network simulator's TCP, streams that a fault injector can cut)
//! by implementing [`Connector`] and building a [`LinkListener`] from a
//! stream of accepted connections.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{Error, Result};

/// A byte stream a silo link can run over.
pub trait LinkIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> LinkIo for T {}

/// A boxed [`LinkIo`].
pub type BoxedIo = Box<dyn LinkIo>;

/// Opens byte streams to silo endpoints (`host:port`): the client half of
/// a transport.
pub trait Connector: Send + Sync + 'static {
    /// Connects to the silo serving at `endpoint`.
    fn connect(&self, endpoint: &str) -> BoxFuture<'static, io::Result<BoxedIo>>;
}

/// The default connector: TCP with `TCP_NODELAY`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    fn connect(&self, endpoint: &str) -> BoxFuture<'static, io::Result<BoxedIo>> {
        let endpoint = endpoint.to_owned();
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(&endpoint).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxedIo)
        })
    }
}

/// Limits on the connections a silo serves, so that a flood of
/// connections, or peers that open sockets and say nothing, cannot take
/// the file descriptors and the CPU that its links need.
///
/// - At most [`max_per_address`](Self::max_per_address) connections from
///   one peer IP address are open at once (TCP listeners only: other
///   transports have no peer address); a further one is accepted and
///   closed at once.
/// - A new connection must send the HTTP/2 connection preface and the
///   header of its first frame (33 bytes) within
///   [`handshake_timeout`](Self::handshake_timeout), or it is closed.
/// - A connection that sends no byte at all for
///   [`idle_timeout`](Self::idle_timeout) is closed. Links and probers
///   are not idle in this sense while their peer lives: the server pings
///   every connection (HTTP/2 keepalive, every second) and the peer's
///   answers are bytes, so a link that carries no calls stays open.
///
/// A silo also backs off when accepting fails (out of file descriptors,
/// say): it retries after 5 ms, doubling up to 1 s, instead of retrying
/// at once, and logs a warning when failures start and at most every 30 s
/// after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections one peer IP address may hold (IPv4-mapped IPv6
    /// addresses count as their IPv4 address). `usize::MAX`: no cap.
    pub max_per_address: usize,
    /// How long a new connection has to send its first 33 bytes.
    pub handshake_timeout: Duration,
    /// How long an open connection may send nothing before it is closed
    /// (closed between this and 1.25 times this after its last byte).
    /// Keep it well above the 1 s keepalive interval: a live peer that
    /// has nothing to send answers the silo's pings once a second.
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    /// The default [`max_per_address`](Self::max_per_address): room for
    /// many silos and clients on one host (each silo holds a handful of
    /// connections to each peer), far from the 1024 file descriptors a
    /// process commonly gets.
    pub const DEFAULT_MAX_PER_ADDRESS: usize = 256;
    /// The default [`handshake_timeout`](Self::handshake_timeout).
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default [`idle_timeout`](Self::idle_timeout).
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_per_address: Self::DEFAULT_MAX_PER_ADDRESS,
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// The server half of a transport: the endpoint other silos reach this
/// silo at, and the connections they open to it.
pub struct LinkListener {
    endpoint: String,
    source: Source,
    limits: ConnectionLimits,
    tls: Option<crate::tls::TlsAcceptor>,
}

enum Source {
    Tcp(tokio::net::TcpListener),
    Stream(BoxStream<'static, io::Result<BoxedIo>>),
}

impl std::fmt::Debug for LinkListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkListener")
            .field("endpoint", &self.endpoint)
            .field("limits", &self.limits)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl LinkListener {
    /// A listener reachable at `endpoint` that serves the connections
    /// `incoming` yields. Its errors are accept errors: the server backs
    /// off on them (see [`ConnectionLimits`]).
    pub fn new(
        endpoint: impl Into<String>,
        incoming: impl futures::Stream<Item = io::Result<BoxedIo>> + Send + 'static,
    ) -> Self {
        LinkListener {
            endpoint: endpoint.into(),
            source: Source::Stream(Box::pin(incoming)),
            limits: ConnectionLimits::default(),
            tls: None,
        }
    }

    /// Serves on a bound TCP listener (its local address is the endpoint).
    pub fn tcp(listener: tokio::net::TcpListener) -> Result<Self> {
        let endpoint = listener
            .local_addr()
            .map_err(|e| Error::Config(format!("listener has no address: {e}")))?
            .to_string();
        Ok(LinkListener::tcp_at(listener, endpoint))
    }

    /// [`tcp`](LinkListener::tcp) with the endpoint given.
    pub(crate) fn tcp_at(listener: tokio::net::TcpListener, endpoint: String) -> Self {
        LinkListener {
            endpoint,
            source: Source::Tcp(listener),
            limits: ConnectionLimits::default(),
            tls: None,
        }
    }

    /// Serves its connections under `limits` instead of the defaults. (A
    /// [`ClusterSilo`](crate::ClusterSilo) serves under its
    /// [`ClusterConfig::connections`](crate::ClusterConfig::connections)
    /// instead.)
    pub fn with_limits(mut self, limits: ConnectionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Requires a mutual TLS handshake of every connection (see
    /// [`TlsConfig`](crate::TlsConfig)): within the
    /// [`handshake_timeout`](ConnectionLimits::handshake_timeout), before
    /// the silo reads any of its bytes. (A
    /// [`ClusterSilo`](crate::ClusterSilo) with
    /// [`ClusterConfig::tls`](crate::ClusterConfig::tls) set does this
    /// itself.)
    pub fn with_tls(mut self, tls: &crate::TlsConfig) -> Result<Self> {
        self.tls = Some(tls.acceptor()?);
        Ok(self)
    }

    /// The limits its connections are served under.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// The endpoint other silos connect to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The accepted connections, each under the listener's limits. Never
    /// yields an error: accept errors are retried here, with a backoff
    /// for those that are not about one connection (tonic's server would
    /// retry them at once, in a hot loop while the process is out of
    /// file descriptors).
    pub(crate) fn into_incoming(
        self,
    ) -> impl futures::Stream<Item = io::Result<ServedIo>> + Send + 'static {
        let limits = self.limits;
        let accepted: BoxStream<'static, io::Result<Accepted>> = match self.source {
            Source::Tcp(listener) => Box::pin(tcp_accepts(listener, limits.max_per_address)),
            Source::Stream(incoming) => Box::pin(futures::StreamExt::map(incoming, |r| {
                r.map(|io| (io, None))
            })),
        };
        let accepted = match self.tls {
            Some(tls) => tls.handshakes(accepted, limits.handshake_timeout),
            None => accepted,
        };
        futures::stream::unfold(
            (accepted, Backoff::default()),
            move |(mut accepted, mut backoff)| async move {
                loop {
                    match futures::StreamExt::next(&mut accepted).await? {
                        Ok((io, slot)) => {
                            backoff.recovered();
                            let served = ServedIo::new(io, slot, &limits);
                            return Some((Ok(served), (accepted, backoff)));
                        }
                        Err(e) if about_one_connection(&e) => {
                            tracing::debug!(error = %e, "a connection failed before it was accepted");
                        }
                        Err(e) => tokio::time::sleep(backoff.failed(&e)).await,
                    }
                }
            },
        )
    }
}

/// An accepted connection and the slot it holds in its address's count.
type Accepted = (BoxedIo, Option<PeerSlot>);

/// Accept errors that concern only the connection being accepted (it was
/// reset or aborted before `accept` returned it): the next accept may
/// well succeed at once.
fn about_one_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// The first wait after a failed accept.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// The longest wait between accepts that fail.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How often failing accepts are logged at most (with their count).
const BACKOFF_LOG_EVERY: Duration = Duration::from_secs(30);

/// The accept loop's backoff over a run of failing accepts, and its
/// logging: a warning when failures start and at most every
/// [`BACKOFF_LOG_EVERY`] after (runs that end and start again at the
/// edge of the descriptor limit count as one), and a note when a run
/// that was warned about ends.
#[derive(Default)]
struct Backoff {
    /// Failures in a row, so far.
    run: u64,
    /// Whether this run was warned about.
    run_logged: bool,
    next: Duration,
    since: Option<tokio::time::Instant>,
    /// Failures not logged yet, and when the last warning was.
    unlogged: u64,
    logged: Option<tokio::time::Instant>,
}

impl Backoff {
    /// Counts a failed accept; returns how long to wait before the next.
    fn failed(&mut self, e: &io::Error) -> Duration {
        let now = tokio::time::Instant::now();
        if self.run == 0 {
            self.next = FIRST_BACKOFF;
            self.since = Some(now);
        }
        self.run += 1;
        self.unlogged += 1;
        if self.logged.is_none_or(|at| now - at >= BACKOFF_LOG_EVERY) {
            tracing::warn!(
                error = %e,
                failures = self.unlogged,
                "accepting connections fails; retrying with a backoff of up to {MAX_BACKOFF:?}"
            );
            self.logged = Some(now);
            self.unlogged = 0;
            self.run_logged = true;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        wait
    }

    /// An accept succeeded: the run of failures, if any, is over.
    fn recovered(&mut self) {
        if self.run == 0 {
            return;
        }
        if self.run_logged {
            tracing::info!(
                failures = self.run,
                after = ?self.since.map(|s| s.elapsed()).unwrap_or_default(),
                "accepting connections again"
            );
        }
        self.run = 0;
        self.run_logged = false;
        self.since = None;
    }
}

/// The open connections of each peer address, shared by the accept loop
/// and the connections' slots.
type PeerCounts = Arc<parking_lot::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

/// One open connection's place in its address's count; given back when
/// the connection is dropped.
pub(crate) struct PeerSlot {
    counts: PeerCounts,
    address: std::net::IpAddr,
}

impl PeerSlot {
    /// A slot for `address`, unless it holds `cap` already.
    fn take(counts: &PeerCounts, address: std::net::IpAddr, cap: usize) -> Option<PeerSlot> {
        let mut map = counts.lock();
        let open = map.entry(address).or_insert(0);
        if *open >= cap {
            return None;
        }
        *open += 1;
        Some(PeerSlot {
            counts: counts.clone(),
            address,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock();
        if let Some(open) = map.get_mut(&self.address) {
            *open -= 1;
            if *open == 0 {
                map.remove(&self.address);
            }
        }
    }
}

/// How often refused connections are logged (with their count).
const REFUSALS_LOG_EVERY: Duration = Duration::from_secs(10);

/// The accept loop of a TCP listener: accepts, closes at once the
/// connections of addresses that hold their cap, and yields the others
/// (with `TCP_NODELAY`) and their slots. Errors are `accept`'s, for the
/// caller's backoff.
fn tcp_accepts(
    listener: tokio::net::TcpListener,
    cap: usize,
) -> impl futures::Stream<Item = io::Result<Accepted>> + Send + 'static {
    struct State {
        listener: tokio::net::TcpListener,
        counts: PeerCounts,
        refused: u64,
        logged: Option<tokio::time::Instant>,
    }
    let state = State {
        listener,
        counts: PeerCounts::default(),
        refused: 0,
        logged: None,
    };
    futures::stream::unfold(state, move |mut state| async move {
        loop {
            let (stream, peer) = match state.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => return Some((Err(e), state)),
            };
            let address = peer.ip().to_canonical();
            let Some(slot) = PeerSlot::take(&state.counts, address, cap) else {
                drop(stream);
                state.refused += 1;
                let now = tokio::time::Instant::now();
                if state.logged.is_none_or(|at| now - at >= REFUSALS_LOG_EVERY) {
                    tracing::warn!(
                        %address,
                        cap,
                        refused = state.refused,
                        "closing new connections from an address that holds its cap of open connections"
                    );
                    state.logged = Some(now);
                    state.refused = 0;
                }
                continue;
            };
            let _ = stream.set_nodelay(true);
            return Some((Ok((Box::new(stream) as BoxedIo, Some(slot))), state));
        }
    })
}

/// The first bytes of every HTTP/2 connection: the 24-byte client preface
/// and a 9-byte frame header (of the client's SETTINGS frame).
const HANDSHAKE_BYTES: usize = 24 + 9;
/// Idle checks per idle timeout: a connection is closed after this many
/// checks in a row found no byte read.
const IDLE_CHECKS: u8 = 4;

/// An accepted connection as tonic's server wants it, closed when it
/// does not complete its handshake or falls silent (see
/// [`ConnectionLimits`]).
///
/// Reads pass through; a read that returns bytes only notes that it did.
/// The watch timer is polled only when a read is pending, and moved at
/// most once per idle check.
pub(crate) struct ServedIo {
    io: BoxedIo,
    /// The handshake deadline, then the next idle check.
    watch: Pin<Box<tokio::time::Sleep>>,
    /// Handshake bytes still to come; 0 once the handshake is done.
    handshake_left: usize,
    handshake_timeout: Duration,
    /// Whether a byte was read since the last idle check.
    read: bool,
    /// Idle checks in a row that found nothing read.
    silent: u8,
    check_every: Duration,
    idle_timeout: Duration,
    _slot: Option<PeerSlot>,
}

impl ServedIo {
    fn new(io: BoxedIo, slot: Option<PeerSlot>, limits: &ConnectionLimits) -> Self {
        ServedIo {
            io,
            watch: Box::pin(tokio::time::sleep(limits.handshake_timeout)),
            handshake_left: HANDSHAKE_BYTES,
            handshake_timeout: limits.handshake_timeout,
            read: false,
            silent: 0,
            check_every: (limits.idle_timeout / u32::from(IDLE_CHECKS))
                .max(Duration::from_millis(1)),
            idle_timeout: limits.idle_timeout,
            _slot: slot,
        }
    }

    fn schedule_check(&mut self) {
        let now = tokio::time::Instant::now();
        // A timeout too large to add is as good as none: a year.
        let at = now
            .checked_add(self.check_every)
            .unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        self.watch.as_mut().reset(at);
    }

    /// Counts `n` bytes read.
    fn note_read(&mut self, n: usize) {
        self.read = true;
        if self.handshake_left > 0 {
            self.handshake_left = self.handshake_left.saturating_sub(n);
            if self.handshake_left == 0 {
                self.schedule_check();
            }
        }
    }

    /// While a read is pending: the error that closes the connection, once
    /// its handshake or idle time is up.
    fn poll_watch(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.watch.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if self.handshake_left > 0 {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no HTTP/2 handshake within {:?}: closing the connection",
                        self.handshake_timeout
                    ),
                ));
            }
            if std::mem::take(&mut self.read) {
                self.silent = 0;
            } else {
                self.silent += 1;
                if self.silent >= IDLE_CHECKS {
                    return Poll::Ready(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "nothing read for {:?}: closing the idle connection",
                            self.idle_timeout
                        ),
                    ));
                }
            }
            self.schedule_check();
        }
    }
}

impl tonic::transport::server::Connected for ServedIo {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for ServedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut *this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    this.note_read(n);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_watch(cx).map(Err),
        }
    }
}

impl AsyncWrite for ServedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }
}

/// How often an idle link pings its peer, and how long it waits for the
/// answer before it drops the connection. Without pings, a connection
/// whose bytes were lost (a partition that healed, a peer that vanished
/// without a reset) looks alive forever and every call on it times out;
/// the simulator found this.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// See [`KEEPALIVE_INTERVAL`].
pub(crate) const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

fn endpoint_for(endpoint: &str, timeout: Duration) -> Result<Endpoint> {
    Ok(Endpoint::from_shared(format!("http://{endpoint}"))
        .map_err(|e| Error::Config(format!("bad silo endpoint `{endpoint}`: {e}")))?
        .connect_timeout(timeout)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true))
}

fn service(
    connector: Arc<dyn Connector>,
    endpoint: String,
) -> impl tower::Service<
    Uri,
    Response = hyper_util::rt::TokioIo<BoxedIo>,
    Error = io::Error,
    Future = BoxFuture<'static, io::Result<hyper_util::rt::TokioIo<BoxedIo>>>,
> + Send
+ Clone
+ 'static {
    tower::service_fn(move |_: Uri| {
        let connect = connector.connect(&endpoint);
        Box::pin(async move { connect.await.map(hyper_util::rt::TokioIo::new) })
            as BoxFuture<'static, _>
    })
}

/// A gRPC channel to `endpoint` over `connector`, connected now.
pub(crate) async fn channel(
    connector: &Arc<dyn Connector>,
    endpoint: &str,
    timeout: Duration,
    request_timeout: Option<Duration>,
) -> Result<Channel> {
    let mut e = endpoint_for(endpoint, timeout)?;
    if let Some(t) = request_timeout {
        e = e.timeout(t);
    }
    e.connect_with_connector(service(connector.clone(), endpoint.to_owned()))
        .await
        .map_err(|err| Error::SiloUnavailable {
            endpoint: endpoint.to_owned(),
            reason: err.to_string(),
        })
}

/// A gRPC channel to `endpoint` over `connector` that connects on first
/// use (and reconnects after a failure).
pub(crate) fn lazy_channel(
    connector: &Arc<dyn Connector>,
    endpoint: &str,
    timeout: Duration,
) -> Result<Channel> {
    Ok(endpoint_for(endpoint, timeout)?
        .timeout(timeout)
        .connect_with_connector_lazy(service(connector.clone(), endpoint.to_owned())))
}

/// The TCP connector, shared.
pub(crate) fn tcp() -> Arc<dyn Connector> {
    Arc::new(TcpConnector)
}
