//! The silo link: calls between silos over one long-lived gRPC
//! bidirectional stream per caller and callee (tonic + prost).
//!
//! The caller's side ([`Link`]) numbers the request envelopes it sends and
//! matches reply envelopes to waiting calls by that number (never by a
//! call id, which may come from a peer); one sweeper task per link fails
//! calls whose deadline passes (no timer per call). The callee's side
//! ([`LinkService`]) queues each request on its grain with
//! `Silo::queue_encoded` as it arrives (no task per call: the stream's
//! task waits for the replies) and streams the replies back. Both
//! directions batch: whatever is queued when the stream is polled goes out
//! as one frame, so under load many calls share a write. Frames have a
//! size limit; a malformed or oversized frame ends that stream with a
//! logged error and fails its pending calls, and the silo goes on serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use actor_core::{
    CallId, EncodedCall, GrainId, RequestContext, Silo, SpanId, TraceContext, TraceId,
};
use dashmap::DashMap;
use std::future::Future;
use std::pin::Pin;

use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use tokio::sync::{Notify, mpsc, oneshot};
// Tokio's clock, not the standard one: a simulator (turmoil) controls it.
use tokio::time::Instant;
use tonic::{Request, Response, Status, Streaming};

use crate::error::{Error, Result};
use crate::transport::{Connector, LinkListener};

#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
mod pb {
    tonic::include_proto!("grains.link.v1");
}

use pb::silo_link_client::SiloLinkClient;
use pb::silo_link_server::{SiloLink, SiloLinkServer};
use pb::{Batch, ChainFrame, ContextEntry, Envelope, Kind};

/// Default limit of one frame (a batch of envelopes), both ways.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;
/// How many envelopes one frame carries at most.
const MAX_BATCH: usize = 512;
/// Queue of envelopes waiting for the stream, per link direction.
const QUEUE: usize = 8192;

/// The callee's side of the link, served by a silo's gRPC server.
#[derive(Clone)]
pub struct LinkService {
    silo: Silo,
    max_frame: usize,
    generation: i64,
    serving: Arc<AtomicBool>,
    applied: Arc<std::sync::atomic::AtomicI64>,
    gateways: Option<Arc<dyn Fn() -> Vec<String> + Send + Sync>>,
    admission: Option<Admission>,
}

/// Whether a grain is hosted on this silo (see [`LinkService::with_admission`]).
type Admission = Arc<dyn Fn(&GrainId) -> bool + Send + Sync>;

/// gRPC metadata key a caller sets on a stream whose calls it addressed by
/// the grain directory (see [`Link::connect_directed`]).
const DIRECTED: &str = "grains-directed";

impl std::fmt::Debug for LinkService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkService")
            .field("silo", &self.silo.name())
            .field("max_frame", &self.max_frame)
            .finish()
    }
}

impl LinkService {
    /// Serves calls into `silo`; frames above `max_frame` bytes close the
    /// stream that sent them.
    pub fn new(silo: Silo, max_frame: usize) -> Self {
        LinkService {
            silo,
            max_frame,
            generation: 0,
            serving: Arc::new(AtomicBool::new(true)),
            applied: Arc::new(std::sync::atomic::AtomicI64::new(0)),
            gateways: None,
            admission: None,
        }
    }

    /// Answers probes with `generation`, and only while `serving` is set:
    /// a silo that reads itself dead (or is told to stop) clears it and
    /// stops answering calls and probes at once.
    pub fn with_liveness(mut self, generation: i64, serving: Arc<AtomicBool>) -> Self {
        self.generation = generation;
        self.serving = serving;
        self
    }

    /// Answers clients' gateway requests with `list()` (the active silos).
    pub fn with_gateways(mut self, list: impl Fn() -> Vec<String> + Send + Sync + 'static) -> Self {
        self.gateways = Some(Arc::new(list));
        self
    }

    /// Reports `applied` (the membership view version this silo has
    /// applied) in probe replies, for the fencing of grain moves.
    pub fn with_applied_view(mut self, applied: Arc<std::sync::atomic::AtomicI64>) -> Self {
        self.applied = applied;
        self
    }

    /// Answers calls on directed streams (opened with
    /// [`Link::connect_directed`]) for grains `hosted` says are not here
    /// with `actor_core::Error::NotHere` instead of running them, so a
    /// caller with a stale directory cache drops the entry and retries.
    /// One-way calls are routed on instead (nobody would see the error).
    pub fn with_admission(
        mut self,
        hosted: impl Fn(&GrainId) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.admission = Some(Arc::new(hosted));
        self
    }

    /// The tonic service to add to a `tonic::transport::Server`.
    pub fn into_server(self) -> SiloLinkServer<Self> {
        let max = self.max_frame;
        SiloLinkServer::new(self)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }
}

/// Serves `silo`'s link on `listener` until the returned task is aborted.
pub fn serve(
    silo: Silo,
    listener: tokio::net::TcpListener,
    max_frame: usize,
) -> tokio::task::JoinHandle<()> {
    serve_service(LinkService::new(silo, max_frame), listener)
}

/// Serves a configured [`LinkService`] on `listener` until the returned
/// task is aborted, under the default
/// [`ConnectionLimits`](crate::ConnectionLimits) (for others, [`serve_on`]
/// a [`LinkListener::tcp`] given [`with_limits`](LinkListener::with_limits)).
pub fn serve_service(
    service: LinkService,
    listener: tokio::net::TcpListener,
) -> tokio::task::JoinHandle<()> {
    // The endpoint only names the listener in logs.
    let endpoint = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    serve_on(service, LinkListener::tcp_at(listener, endpoint))
}

/// Serves a configured [`LinkService`] on any transport's
/// [`LinkListener`] until the returned task is aborted, under the
/// listener's [`ConnectionLimits`](crate::ConnectionLimits).
pub fn serve_on(service: LinkService, listener: LinkListener) -> tokio::task::JoinHandle<()> {
    let incoming = listener.into_incoming();
    let service = service.into_server();
    tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(crate::transport::KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(crate::transport::KEEPALIVE_TIMEOUT))
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(error = %e, "silo link server stopped");
        }
    })
}

#[tonic::async_trait]
impl SiloLink for LinkService {
    type OpenStream = ReplyStream;

    async fn open(
        &self,
        request: Request<Streaming<Batch>>,
    ) -> std::result::Result<Response<Self::OpenStream>, Status> {
        if !self.serving.load(Ordering::SeqCst) {
            return Err(Status::unavailable("this silo has stopped serving"));
        }
        let admission = self
            .admission
            .clone()
            .filter(|_| request.metadata().contains_key(DIRECTED));
        let mut inbound = request.into_inner();
        let serving = self.serving.clone();
        let (tx, rx) = mpsc::channel::<Envelope>(QUEUE);
        let (end_tx, end_rx) = oneshot::channel::<Status>();
        let silo = self.silo.clone();
        tokio::spawn(async move {
            // Why the requests stopped, when it was an error: the reply
            // stream ends with it.
            let mut failed = None;
            // The calls this stream's task waits on, each already queued
            // on its grain (no task per call: the activation's queue
            // orders and runs them; this only forwards their replies).
            let mut running = FuturesUnordered::new();
            loop {
                let next = tokio::select! {
                    // Replies first: they free memory and callers.
                    biased;
                    Some((call_id, reply)) = running.next(), if !running.is_empty() => {
                        forward_reply(call_id, false, reply, &tx);
                        continue;
                    }
                    next = inbound.next() => next,
                };
                match next.transpose() {
                    Ok(Some(batch)) => {
                        if !serving.load(Ordering::SeqCst) {
                            // Declared dead (or leaving): run nothing more.
                            // Say so per call, definitively: a call told
                            // "not here" provably did not run, so its
                            // caller may route it again elsewhere.
                            for env in batch.envelopes {
                                refuse_request(&silo, env, &tx);
                            }
                            break;
                        }
                        for env in batch.envelopes {
                            let number = env.call_id;
                            if let Some(call) = handle_request(&silo, env, &tx, admission.as_ref())
                            {
                                start_call(&silo, number, call, &mut running, &tx);
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        // Malformed, oversized or cut: this stream ends,
                        // the silo serves on. A bad frame is worth a
                        // warning; a peer that went away is not.
                        if bad_frame(&status) {
                            tracing::warn!(error = %status, "closing a silo link stream after a bad frame");
                        } else {
                            tracing::debug!(error = %status, "a silo link stream ended");
                        }
                        failed = Some(status);
                        break;
                    }
                }
            }
            // The calls already running still answer (the caller may still
            // be reading).
            while let Some((call_id, reply)) = running.next().await {
                forward_reply(call_id, false, reply, &tx);
            }
            // Before `tx` goes: the reply stream, once it has sent every
            // reply, finds the error here.
            if let Some(status) = failed {
                let _ = end_tx.send(status);
            }
        });
        Ok(Response::new(ReplyStream {
            replies: BatchStream::new(rx),
            failed: Some(end_rx),
        }))
    }

    async fn ping(
        &self,
        _request: Request<pb::PingRequest>,
    ) -> std::result::Result<Response<pb::PingReply>, Status> {
        if !self.serving.load(Ordering::SeqCst) {
            return Err(Status::unavailable("this silo has stopped serving"));
        }
        Ok(Response::new(pb::PingReply {
            generation: self.generation,
            applied_version: self.applied.load(Ordering::SeqCst),
        }))
    }

    async fn gateways(
        &self,
        _request: Request<pb::GatewaysRequest>,
    ) -> std::result::Result<Response<pb::GatewaysReply>, Status> {
        if !self.serving.load(Ordering::SeqCst) {
            return Err(Status::unavailable("this silo has stopped serving"));
        }
        let endpoints = self.gateways.as_ref().map(|f| f()).unwrap_or_default();
        Ok(Response::new(pb::GatewaysReply { endpoints }))
    }
}

/// Asks the silo at `endpoint`, reached through `connector`, for the
/// cluster's gateways.
pub(crate) async fn fetch_gateways_via(
    connector: &Arc<dyn Connector>,
    endpoint: &str,
    timeout: Duration,
) -> Result<Vec<String>> {
    let unavailable = |reason: String| Error::SiloUnavailable {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let channel = crate::transport::channel(connector, endpoint, timeout, Some(timeout)).await?;
    let reply = SiloLinkClient::new(channel)
        .gateways(Request::new(pb::GatewaysRequest {}))
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    Ok(reply.into_inner().endpoints)
}

/// Sends liveness probes to silos, keeping one connection per silo.
pub(crate) struct Prober {
    clients: DashMap<String, SiloLinkClient<tonic::transport::Channel>>,
    connector: Arc<dyn Connector>,
}

impl Default for Prober {
    fn default() -> Self {
        Prober::with_connector(crate::transport::tcp())
    }
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("peers", &self.clients.len())
            .finish()
    }
}

impl Prober {
    /// A prober that reaches silos through `connector`.
    pub(crate) fn with_connector(connector: Arc<dyn Connector>) -> Self {
        Prober {
            clients: DashMap::new(),
            connector,
        }
    }

    /// Probes the silo at `endpoint`; its generation and applied view
    /// version if it answered within `timeout`, else why not.
    pub(crate) async fn probe(
        &self,
        endpoint: &str,
        from: &str,
        timeout: Duration,
    ) -> std::result::Result<(i64, i64), String> {
        let mut client = match self.clients.get(endpoint) {
            Some(c) => c.clone(),
            None => {
                let channel = crate::transport::lazy_channel(&self.connector, endpoint, timeout)
                    .map_err(|e| e.to_string())?;
                let c = SiloLinkClient::new(channel);
                self.clients.insert(endpoint.to_owned(), c.clone());
                c
            }
        };
        let request = pb::PingRequest {
            from: from.to_owned(),
        };
        let result = match tokio::time::timeout(timeout, client.ping(Request::new(request))).await {
            Ok(Ok(reply)) => {
                let r = reply.into_inner();
                return Ok((r.generation, r.applied_version));
            }
            Ok(Err(status)) => Err(status.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        // The next probe opens a fresh connection: this one may lead to a
        // stopped incarnation whose connection still answers "unavailable"
        // while a new one serves on the same endpoint (the simulator found
        // a restarted silo never acknowledged this way).
        self.clients.remove(endpoint);
        result
    }

    /// Forgets the connection to `endpoint` (after it was declared dead).
    pub(crate) fn forget(&self, endpoint: &str) {
        self.clients.remove(endpoint);
    }
}

/// Whether a stream error means the peer sent something unacceptable (an
/// undecodable or oversized frame), rather than that the connection went
/// away.
fn bad_frame(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Internal
            | tonic::Code::ResourceExhausted
            | tonic::Code::InvalidArgument
            | tonic::Code::OutOfRange
    )
}

/// Answers a request this silo will not run with `NotHere`.
fn refuse_request(silo: &Silo, env: Envelope, replies: &mpsc::Sender<Envelope>) {
    if env.kind() != Kind::Request {
        return;
    }
    let error = match actor_core::codec::decode::<GrainId>(&env.target) {
        Ok(grain) => actor_core::Error::NotHere {
            grain,
            silo: silo.name().to_owned(),
        },
        Err(e) => e,
    };
    let _ = replies.try_send(error_envelope(env.call_id, &error));
}

fn handle_request(
    silo: &Silo,
    env: Envelope,
    replies: &mpsc::Sender<Envelope>,
    admission: Option<&Admission>,
) -> Option<EncodedCall> {
    let call_id = env.call_id;
    let one_way = env.kind() == Kind::OneWay;
    let call = match decode_request(env, Some(silo)) {
        Ok(call) => call,
        Err(e) => {
            tracing::warn!(error = %e, "dropping an undecodable call envelope");
            if !one_way {
                let _ = replies.try_send(error_envelope(call_id, &e));
            }
            return None;
        }
    };
    if let Some(hosted) = admission
        && !one_way
        && !silo.is_active(&call.target)
        && !hosted(&call.target)
    {
        let e = actor_core::Error::NotHere {
            grain: call.target,
            silo: silo.name().to_owned(),
        };
        let _ = replies.try_send(error_envelope(call_id, &e));
        return None;
    }
    Some(call)
}

/// A call this silo runs for a link, waiting for its grain's reply.
struct Running {
    call_id: u64,
    reply: actor_core::EncodedReply,
}

impl Future for Running {
    type Output = (u64, actor_core::Result<Vec<u8>>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let call_id = self.call_id;
        Pin::new(&mut self.reply).poll(cx).map(|r| (call_id, r))
    }
}

/// Queues `call` (the caller's request `number` on this stream) on its
/// grain now (so calls are queued in the order they arrived) and adds the
/// wait for its reply to `running`; a call that fails at once is answered
/// at once, a one-way call needs no answer.
fn start_call(
    silo: &Silo,
    number: u64,
    call: EncodedCall,
    running: &mut FuturesUnordered<Running>,
    replies: &mpsc::Sender<Envelope>,
) {
    let (call_id, one_way) = (number, call.one_way);
    match silo.queue_encoded(call) {
        Ok(reply) if !one_way => running.push(Running { call_id, reply }),
        Ok(_) => {}
        Err(e) => forward_reply(call_id, one_way, Err(e), replies),
    }
}

/// Sends a finished call's reply (none for a one-way call) to its caller.
fn forward_reply(
    call_id: u64,
    one_way: bool,
    outcome: actor_core::Result<Vec<u8>>,
    replies: &mpsc::Sender<Envelope>,
) {
    if one_way {
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "one-way call failed");
        }
        return;
    }
    let env = match outcome {
        Ok(payload) => Envelope {
            call_id,
            kind: Kind::Reply as i32,
            payload,
            ..Default::default()
        },
        Err(e) => error_envelope(call_id, &e),
    };
    match replies.try_send(env) {
        Ok(()) => {}
        // The caller may be gone; its pending call then fails there.
        Err(mpsc::error::TrySendError::Closed(_)) => {}
        // The caller reads slowly: wait for room without holding up the
        // other calls of this stream.
        Err(mpsc::error::TrySendError::Full(env)) => {
            let replies = replies.clone();
            tokio::spawn(async move {
                let _ = replies.send(env).await;
            });
        }
    }
}

fn error_envelope(call_id: u64, e: &actor_core::Error) -> Envelope {
    Envelope {
        call_id,
        kind: Kind::Error as i32,
        payload: actor_core::codec::encode(e).unwrap_or_default(),
        ..Default::default()
    }
}

/// `silo`: the silo the call is for; grain ids decoded through it reuse
/// its registered type names instead of allocating them.
fn decode_request(env: Envelope, silo: Option<&Silo>) -> actor_core::Result<EncodedCall> {
    let grain = |bytes: &[u8]| -> actor_core::Result<GrainId> {
        match silo {
            Some(silo) => silo.decode(bytes),
            None => actor_core::codec::decode(bytes),
        }
    };
    let kind = env.kind();
    if kind != Kind::Request && kind != Kind::OneWay {
        return Err(actor_core::Error::Serialization(format!(
            "expected a request envelope, got {kind:?}"
        )));
    }
    let target = grain(&env.target)?;
    let trace = trace_from_envelope(&env);
    let sender = env.sender;
    let mut call = EncodedCall::new(
        target,
        env.method,
        env.payload,
        Duration::from_micros(env.timeout_micros),
    );
    // `call.call_id` stays the fresh one `EncodedCall::new` made: the
    // envelope's number only pairs the reply with this request.
    call.one_way = kind == Kind::OneWay;
    call.chain = env
        .chain
        .into_iter()
        .map(|f| {
            Ok((
                grain(&f.grain)?,
                CallId::from_parts(f.call_origin, f.call_id),
            ))
        })
        .collect::<actor_core::Result<_>>()?;
    let mut context = RequestContext::new();
    for e in env.context {
        context.insert(e.key, e.value);
    }
    call.context = context;
    call.trace = trace;
    if !sender.is_empty() {
        call.sender = Some(grain(&sender)?);
    }
    Ok(call)
}

/// The caller's trace context of a request envelope; zero ids (invalid in
/// W3C) mean none.
fn trace_from_envelope(env: &Envelope) -> Option<TraceContext> {
    let trace_id = u128::from(env.trace_id_high) << 64 | u128::from(env.trace_id_low);
    (trace_id != 0 && env.parent_span_id != 0).then_some(TraceContext {
        trace_id: TraceId(trace_id),
        span_id: SpanId(env.parent_span_id),
        flags: env.trace_flags as u8,
    })
}

/// The request envelope of `call`, carrying `payload` (the call's, moved
/// or copied by the caller).
fn encode_request(call: &EncodedCall, payload: Vec<u8>) -> actor_core::Result<Envelope> {
    Ok(Envelope {
        // Numbered by the link when it is sent (see `Link::start`).
        call_id: 0,
        kind: if call.one_way {
            Kind::OneWay
        } else {
            Kind::Request
        } as i32,
        target: actor_core::codec::encode(&call.target)?,
        method: call.method.clone(),
        timeout_micros: u64::try_from(call.timeout.as_micros()).unwrap_or(u64::MAX),
        chain: call
            .chain
            .iter()
            .map(|(g, c)| {
                Ok(ChainFrame {
                    grain: actor_core::codec::encode(g)?,
                    call_id: c.seq(),
                    call_origin: c.origin(),
                })
            })
            .collect::<actor_core::Result<_>>()?,
        context: call
            .context
            .iter()
            .map(|(k, v)| ContextEntry {
                key: k.to_owned(),
                value: v.to_owned(),
            })
            .collect(),
        payload,
        trace_id_high: call.trace.map_or(0, |t| (t.trace_id.0 >> 64) as u64),
        trace_id_low: call.trace.map_or(0, |t| t.trace_id.0 as u64),
        parent_span_id: call.trace.map_or(0, |t| t.span_id.0),
        trace_flags: call.trace.map_or(0, |t| u32::from(t.flags)),
        sender: match &call.sender {
            Some(g) => actor_core::codec::encode(g)?,
            None => Vec::new(),
        },
    })
}

/// A stream of batches: each poll takes everything queued (up to a bound)
/// and sends it as one frame.
pub(crate) struct BatchStream {
    rx: mpsc::Receiver<Envelope>,
}

impl BatchStream {
    fn new(rx: mpsc::Receiver<Envelope>) -> Self {
        BatchStream { rx }
    }
}

impl std::fmt::Debug for BatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchStream").finish_non_exhaustive()
    }
}

impl Stream for BatchStream {
    type Item = Batch;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        let first = match self.rx.poll_recv(cx) {
            Poll::Ready(Some(env)) => env,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        let mut envelopes = vec![first];
        while envelopes.len() < MAX_BATCH {
            match self.rx.try_recv() {
                Ok(env) => envelopes.push(env),
                Err(_) => break,
            }
        }
        Poll::Ready(Some(Batch { envelopes }))
    }
}

/// The callee's side of a link stream: batches of replies, then, if the
/// caller's requests ended in an error (a frame too large or malformed,
/// say), that error, so that the stream ends with its status rather than
/// OK.
pub struct ReplyStream {
    replies: BatchStream,
    failed: Option<oneshot::Receiver<Status>>,
}

impl std::fmt::Debug for ReplyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyStream").finish_non_exhaustive()
    }
}

impl Stream for ReplyStream {
    type Item = std::result::Result<Batch, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        match std::pin::Pin::new(&mut self.replies).poll_next(cx) {
            Poll::Ready(Some(batch)) => Poll::Ready(Some(Ok(batch))),
            // Every sender is gone, so the stream's task has set the
            // error already, if there was one.
            Poll::Ready(None) => Poll::Ready(
                self.failed
                    .take()
                    .and_then(|mut failed| failed.try_recv().ok())
                    .map(Err),
            ),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// What a waiting call learns: its reply (or error), or that its
/// deadline passed first.
enum Outcome {
    Done(actor_core::Result<Vec<u8>>),
    Expired,
}

/// A call waiting for its reply, with its deadline (see [`Shared::micros`]).
struct Waiter {
    tx: oneshot::Sender<Outcome>,
    deadline: u64,
}

/// The state of one link that its handle, its reply reader and its
/// deadline sweeper share.
///
/// Deadlines cost no timer per call: each waiting call records its deadline
/// in `pending`, and one sweeper task per link sleeps until the earliest
/// deadline (`armed`), then fails the calls whose deadline has passed with
/// a timeout and sleeps again until the next one. A call whose deadline is
/// earlier than the armed one wakes the sweeper (`wake`) to re-arm.
struct Shared {
    endpoint: String,
    /// The calls waiting for a reply, by the number this link gave their
    /// request (see `Link::start`): only what was sent on this stream.
    pending: DashMap<u64, Waiter, foldhash::fast::RandomState>,
    /// The number of the next request sent on this link.
    numbers: AtomicU64,
    alive: AtomicBool,
    /// The deadline the sweeper sleeps until, `u64::MAX` for none.
    armed: AtomicU64,
    wake: Notify,
    /// Time zero of the deadlines (tokio's clock: a simulator drives it).
    epoch: Instant,
}

impl Shared {
    /// `at` as microseconds since the link's epoch.
    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    /// The deadline of a call sent now with `timeout` left.
    fn deadline(&self, timeout: Duration) -> u64 {
        self.micros(Instant::now())
            .saturating_add(u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX))
            .min(u64::MAX - 1)
    }

    /// Makes sure the sweeper wakes by `deadline` (a waiter with it is
    /// already in `pending`).
    fn arm(&self, deadline: u64) {
        // The common case (every call has the same timeout, so a new
        // deadline is later than the armed one) is one load.
        if deadline < self.armed.load(Ordering::Relaxed)
            && deadline < self.armed.fetch_min(deadline, Ordering::SeqCst)
        {
            self.wake.notify_one();
        }
    }

    /// Fails the calls whose deadline has passed and re-arms for the
    /// earliest remaining one.
    fn expire(&self) {
        // Disarm first: a call registered during the scan below that the
        // scan misses then arms again itself.
        self.armed.store(u64::MAX, Ordering::SeqCst);
        let now = self.micros(Instant::now());
        let mut next = u64::MAX;
        let mut expired = Vec::new();
        for w in self.pending.iter() {
            if w.deadline <= now {
                expired.push(*w.key());
            } else {
                next = next.min(w.deadline);
            }
        }
        // In call order, not hash order: runs replay under a simulator.
        expired.sort_unstable();
        for id in expired {
            if let Some((_, w)) = self.pending.remove(&id) {
                let _ = w.tx.send(Outcome::Expired);
            }
        }
        self.armed.fetch_min(next, Ordering::SeqCst);
    }

    /// Takes the link out of use and fails every waiting call with `error`,
    /// in call order.
    fn fail_all(&self, error: impl Fn() -> actor_core::Error) {
        self.alive.store(false, Ordering::SeqCst);
        let mut ids: Vec<u64> = self.pending.iter().map(|e| *e.key()).collect();
        // In call order, not hash order: runs replay under a simulator.
        ids.sort_unstable();
        for id in ids {
            if let Some((_, w)) = self.pending.remove(&id) {
                let _ = w.tx.send(Outcome::Done(Err(error())));
            }
        }
        // The sweeper ends.
        self.wake.notify_one();
    }

    /// Hands a reply envelope to its waiting call. A reply can only
    /// complete a request this link sent and still waits for: its number
    /// was made here. Anything else the peer sends (a number never sent
    /// or already answered, an envelope that is not a reply) completes
    /// nothing.
    fn complete(&self, env: Envelope) {
        let reply = match env.kind() {
            Kind::Reply => Ok(env.payload),
            Kind::Error => {
                Err(actor_core::codec::decode::<actor_core::Error>(&env.payload)
                    .unwrap_or_else(|e| e))
            }
            other => {
                tracing::warn!(endpoint = %self.endpoint, kind = ?other, "ignoring a non-reply envelope on a link's reply stream");
                return;
            }
        };
        let Some((_, w)) = self.pending.remove(&env.call_id) else {
            // The caller gave up (timeout) before the reply came, or the
            // peer answered a request it was never sent.
            return;
        };
        let _ = w.tx.send(Outcome::Done(reply));
    }
}

/// Fails the link's calls at their deadlines until the link is down.
async fn sweep(shared: Arc<Shared>) {
    loop {
        if !shared.alive.load(Ordering::SeqCst) {
            return;
        }
        let armed = shared.armed.load(Ordering::SeqCst);
        if armed == u64::MAX {
            shared.wake.notified().await;
            continue;
        }
        let at = shared.epoch + Duration::from_micros(armed);
        tokio::select! {
            // In a fixed order: runs replay under a simulator.
            biased;
            () = tokio::time::sleep_until(at) => shared.expire(),
            // Re-armed earlier (or the link went down): look again.
            () = shared.wake.notified() => {}
        }
    }
}

/// The caller's side of the link to one remote silo.
pub struct Link {
    shared: Arc<Shared>,
    out: mpsc::Sender<Envelope>,
}

impl Drop for Link {
    fn drop(&mut self) {
        // Nobody can send on it any more; the sweeper need not outlive the
        // calls already waiting (the reader fails them when the stream
        // closes), but it must not linger if the peer keeps it open.
        if self.shared.pending.is_empty() {
            self.shared.alive.store(false, Ordering::SeqCst);
            self.shared.wake.notify_one();
        }
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("endpoint", &self.shared.endpoint)
            .field("pending", &self.shared.pending.len())
            .field("alive", &self.is_alive())
            .finish()
    }
}

/// A call was never sent: the link was down (see [`Link::try_call_ref`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotSent;

impl Link {
    /// Opens the stream to the silo at `endpoint` (`host:port`).
    pub async fn connect(endpoint: &str, max_frame: usize, timeout: Duration) -> Result<Link> {
        Link::open(
            &crate::transport::tcp(),
            endpoint,
            max_frame,
            timeout,
            false,
        )
        .await
    }

    /// Opens the stream to the silo at `endpoint` through `connector`.
    pub async fn connect_via(
        connector: &Arc<dyn Connector>,
        endpoint: &str,
        max_frame: usize,
        timeout: Duration,
    ) -> Result<Link> {
        Link::open(connector, endpoint, max_frame, timeout, false).await
    }

    /// Opens a stream whose calls the callee admits only for grains it
    /// hosts (see [`LinkService::with_admission`]): for calls a silo
    /// addressed through the grain directory.
    pub async fn connect_directed(
        endpoint: &str,
        max_frame: usize,
        timeout: Duration,
    ) -> Result<Link> {
        Link::open(&crate::transport::tcp(), endpoint, max_frame, timeout, true).await
    }

    /// [`connect_directed`](Link::connect_directed) through `connector`.
    pub async fn connect_directed_via(
        connector: &Arc<dyn Connector>,
        endpoint: &str,
        max_frame: usize,
        timeout: Duration,
    ) -> Result<Link> {
        Link::open(connector, endpoint, max_frame, timeout, true).await
    }

    async fn open(
        connector: &Arc<dyn Connector>,
        endpoint: &str,
        max_frame: usize,
        timeout: Duration,
        directed: bool,
    ) -> Result<Link> {
        let unavailable = |reason: String| Error::SiloUnavailable {
            endpoint: endpoint.to_owned(),
            reason,
        };
        let channel = crate::transport::channel(connector, endpoint, timeout, None).await?;
        let mut client = SiloLinkClient::new(channel)
            .max_decoding_message_size(max_frame)
            .max_encoding_message_size(max_frame);
        let (out, rx) = mpsc::channel(QUEUE);
        let mut request = Request::new(BatchStream::new(rx));
        if directed {
            request
                .metadata_mut()
                .insert(DIRECTED, tonic::metadata::MetadataValue::from_static("1"));
        }
        let mut replies = client
            .open(request)
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .into_inner();
        let shared = Arc::new(Shared {
            endpoint: endpoint.to_owned(),
            pending: DashMap::default(),
            numbers: AtomicU64::new(1),
            alive: AtomicBool::new(true),
            armed: AtomicU64::new(u64::MAX),
            wake: Notify::new(),
            epoch: Instant::now(),
        });
        let reader = shared.clone();
        tokio::spawn(async move {
            let reason = loop {
                match replies.message().await {
                    Ok(Some(batch)) => {
                        for env in batch.envelopes {
                            reader.complete(env);
                        }
                    }
                    Ok(None) => break "the remote silo closed the link".to_owned(),
                    Err(status) => break status.to_string(),
                }
            };
            tracing::warn!(endpoint = %reader.endpoint, %reason, "silo link lost");
            // Everything in flight on this link fails now, not at its
            // deadline.
            reader.fail_all(|| actor_core::Error::SiloUnavailable {
                silo: reader.endpoint.clone(),
            });
        });
        tokio::spawn(sweep(shared.clone()));
        Ok(Link { shared, out })
    }

    /// Whether the stream is still up.
    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst) && !self.out.is_closed()
    }

    /// Fails every call in flight on this link with "silo unavailable" now
    /// and takes the link out of use: for a silo declared dead whose
    /// connection is still open (hung), so callers need not wait for
    /// their deadlines.
    pub fn fail_pending(&self) {
        let silo = format!("{} (declared dead)", self.shared.endpoint);
        self.shared
            .fail_all(|| actor_core::Error::SiloUnavailable { silo: silo.clone() });
    }

    /// The remote endpoint.
    pub fn endpoint(&self) -> &str {
        &self.shared.endpoint
    }

    fn unavailable(&self) -> actor_core::Error {
        actor_core::Error::SiloUnavailable {
            silo: self.shared.endpoint.clone(),
        }
    }

    /// Sends a call and waits for its encoded reply (an empty reply for a
    /// one-way call, once it is queued on the stream).
    pub async fn call(&self, call: EncodedCall) -> actor_core::Result<Vec<u8>> {
        match self.try_call(call).await {
            Ok(outcome) => outcome,
            Err(_unsent) => Err(self.unavailable()),
        }
    }

    /// [`call`](Link::call) on a shared link, as a future that owns what
    /// it needs (for routers, which return `'static` futures).
    ///
    /// The call is encoded, registered and queued on the stream before
    /// this returns; the future only waits for the reply, and is small
    /// (it carries no envelope), so moving it around costs little.
    pub fn call_owned(self: Arc<Self>, mut call: EncodedCall) -> CallReply {
        let state = if self.is_alive() {
            // The payload moves into the envelope.
            let payload = std::mem::take(&mut call.payload);
            match encode_request(&call, payload) {
                Err(e) => ReplyState::Done(Some(Err(e))),
                Ok(env) => {
                    let (one_way, timeout) = (call.one_way, call.timeout);
                    self.start(env, one_way, timeout, || (call.target, call.method))
                }
            }
        } else {
            ReplyState::Unsent(Some(Vec::new()))
        };
        CallReply(Flight {
            shared: self.shared.clone(),
            state,
        })
    }

    /// Like [`call`](Link::call), but a call that was never sent (the link
    /// was already down) comes back as `Err(call)`, so the caller knows it
    /// did not run and may send it elsewhere.
    pub async fn try_call(
        &self,
        mut call: EncodedCall,
    ) -> std::result::Result<actor_core::Result<Vec<u8>>, EncodedCall> {
        if !self.is_alive() {
            return Err(call);
        }
        // The payload moves into the envelope (and back if it is not sent).
        let payload = std::mem::take(&mut call.payload);
        let env = match encode_request(&call, payload) {
            Ok(env) => env,
            Err(e) => return Ok(Err(e)),
        };
        let names = || (call.target.clone(), call.method.clone());
        let state = self.start(env, call.one_way, call.timeout, names);
        let flight = Flight {
            shared: self.shared.clone(),
            state,
        };
        match flight.await {
            Ok(outcome) => Ok(outcome),
            Err(payload) => {
                call.payload = payload;
                Err(call)
            }
        }
    }

    /// Like [`try_call`](Link::try_call), but borrows the call (its
    /// payload is copied into the envelope) and gives it `timeout` to
    /// live: for callers that may send the same call elsewhere after a
    /// "not here".
    pub async fn try_call_ref(
        &self,
        call: &EncodedCall,
        timeout: Duration,
    ) -> std::result::Result<actor_core::Result<Vec<u8>>, NotSent> {
        if !self.is_alive() {
            return Err(NotSent);
        }
        let mut env = match encode_request(call, call.payload.clone()) {
            Ok(env) => env,
            Err(e) => return Ok(Err(e)),
        };
        env.timeout_micros = u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX);
        let names = || (call.target.clone(), call.method.clone());
        let state = self.start(env, call.one_way, timeout, names);
        let flight = Flight {
            shared: self.shared.clone(),
            state,
        };
        flight.await.map_err(|_| NotSent)
    }

    /// Registers a request envelope (unless one-way; `names` gives what
    /// its timeout error names) and queues it on the stream, or starts
    /// waiting for room if the queue is full.
    fn start(
        &self,
        mut env: Envelope,
        one_way: bool,
        timeout: Duration,
        names: impl FnOnce() -> (GrainId, String),
    ) -> ReplyState {
        // The link numbers its requests itself: the call's own id may come
        // from a peer (a gateway forwards its clients' calls), and ids of
        // different callers can be equal.
        let call_id = self.shared.numbers.fetch_add(1, Ordering::Relaxed);
        env.call_id = call_id;
        let wait = if one_way {
            None
        } else {
            let (tx, rx) = oneshot::channel();
            let deadline = self.shared.deadline(timeout);
            self.shared.pending.insert(call_id, Waiter { tx, deadline });
            if !self.is_alive() {
                // Failed (`fail_pending`) between the caller's check and
                // the insert: nothing was sent.
                self.shared.pending.remove(&call_id);
                return ReplyState::Unsent(Some(env.payload));
            }
            self.shared.arm(deadline);
            let (target, method) = names();
            Some(Wait {
                rx,
                target,
                method,
                timeout,
            })
        };
        match self.out.try_send(env) {
            Ok(()) => match wait {
                Some(wait) => ReplyState::Waiting(wait),
                None => ReplyState::Done(Some(Ok(Vec::new()))),
            },
            Err(mpsc::error::TrySendError::Closed(env)) => {
                self.shared.pending.remove(&call_id);
                ReplyState::Unsent(Some(env.payload))
            }
            Err(mpsc::error::TrySendError::Full(env)) => {
                // Rare: the wait for room is boxed, so a call's future
                // does not carry its state.
                let out = self.out.clone();
                let send = Box::pin(async move { out.send(env).await.map_err(|e| e.0.payload) });
                ReplyState::Sending {
                    send,
                    call_id,
                    wait,
                }
            }
        }
    }
}

/// The reply of a call sent with [`Link::call_owned`].
pub struct CallReply(Flight);

impl std::fmt::Debug for CallReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallReply")
            .field("endpoint", &self.0.shared.endpoint)
            .finish_non_exhaustive()
    }
}

impl Future for CallReply {
    type Output = actor_core::Result<Vec<u8>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let flight = &mut self.0;
        Pin::new(&mut *flight).poll(cx).map(|r| {
            r.unwrap_or_else(|_unsent| {
                Err(actor_core::Error::SiloUnavailable {
                    silo: flight.shared.endpoint.clone(),
                })
            })
        })
    }
}

/// A call on its way: its reply, or `Err(payload)` if it was never sent
/// (the link was down, or closed before there was room for it).
struct Flight {
    shared: Arc<Shared>,
    state: ReplyState,
}

enum ReplyState {
    /// Known already (taken when polled to completion).
    Done(Option<actor_core::Result<Vec<u8>>>),
    /// Not sent (taken when polled to completion).
    Unsent(Option<Vec<u8>>),
    /// Sent; waiting for the reply or the deadline.
    Waiting(Wait),
    /// Waiting for room on the stream (rare). The call is registered
    /// already, so its deadline or the link's failure ends it meanwhile.
    Sending {
        send: Pin<Box<dyn Future<Output = std::result::Result<(), Vec<u8>>> + Send>>,
        call_id: u64,
        wait: Option<Wait>,
    },
}

impl Flight {
    /// The outcome of a registered call, from what its waiter received.
    fn outcome(
        &self,
        mut wait: Wait,
        got: std::result::Result<Outcome, oneshot::error::RecvError>,
    ) -> actor_core::Result<Vec<u8>> {
        match got {
            Ok(Outcome::Done(reply)) => reply,
            Ok(Outcome::Expired) => Err(actor_core::Error::Timeout {
                grain: wait.target,
                method: std::mem::take(&mut wait.method),
                timeout: wait.timeout,
            }),
            Err(_) => Err(actor_core::Error::SiloUnavailable {
                silo: self.shared.endpoint.clone(),
            }),
        }
    }
}

impl Future for Flight {
    type Output = std::result::Result<actor_core::Result<Vec<u8>>, Vec<u8>>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            let next = match &mut this.state {
                ReplyState::Done(outcome) => {
                    let outcome = outcome.take().expect("a call polled after it was done");
                    return Poll::Ready(Ok(outcome));
                }
                ReplyState::Unsent(payload) => {
                    let payload = payload.take().expect("a call polled after it was done");
                    return Poll::Ready(Err(payload));
                }
                ReplyState::Waiting(wait) => {
                    let Poll::Ready(got) = Pin::new(&mut wait.rx).poll(cx) else {
                        return Poll::Pending;
                    };
                    match std::mem::replace(&mut this.state, ReplyState::Done(None)) {
                        ReplyState::Waiting(wait) => {
                            ReplyState::Done(Some(this.outcome(wait, got)))
                        }
                        other => other,
                    }
                }
                ReplyState::Sending {
                    send,
                    call_id,
                    wait,
                } => {
                    // Ended before it was sent (its deadline, the link's
                    // failure): it is dropped unsent.
                    let ended = match wait {
                        Some(w) => match Pin::new(&mut w.rx).poll(cx) {
                            Poll::Ready(got) => Some(got),
                            Poll::Pending => None,
                        },
                        None => None,
                    };
                    match (ended, wait.take()) {
                        (Some(got), Some(w)) => ReplyState::Done(Some(this.outcome(w, got))),
                        (_, wait) => match send.as_mut().poll(cx) {
                            Poll::Pending => {
                                if let ReplyState::Sending { wait: slot, .. } = &mut this.state {
                                    *slot = wait;
                                }
                                return Poll::Pending;
                            }
                            Poll::Ready(Ok(())) => match wait {
                                Some(wait) => ReplyState::Waiting(wait),
                                None => ReplyState::Done(Some(Ok(Vec::new()))),
                            },
                            Poll::Ready(Err(payload)) => {
                                this.shared.pending.remove(call_id);
                                ReplyState::Unsent(Some(payload))
                            }
                        },
                    }
                }
            };
            this.state = next;
        }
    }
}

/// A sent call waiting for its reply, with what its timeout error names.
struct Wait {
    rx: oneshot::Receiver<Outcome>,
    target: GrainId,
    method: String,
    timeout: Duration,
}

#[cfg(test)]
mod peer_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_undecodable_or_oversized_frames_count_as_bad() {
        assert!(bad_frame(&Status::internal(
            "failed to decode Protobuf message"
        )));
        assert!(bad_frame(&Status::resource_exhausted("message too large")));
        assert!(!bad_frame(&Status::unknown(
            "h2 protocol error: broken pipe"
        )));
        assert!(!bad_frame(&Status::cancelled("stream no longer needed")));
        assert!(!bad_frame(&Status::unavailable("connection reset")));
    }

    proptest! {
        /// Requests survive the trip through the protobuf envelope.
        #[test]
        fn request_envelopes_round_trip(
            key in ".*", method in "[a-z_]{1,12}", micros in 0u64..10_000_000_000,
            ctx in proptest::collection::vec(("[a-z]{1,5}", ".*"), 0..4),
            chain in proptest::collection::vec((any::<i64>(), any::<u64>(), any::<u64>()), 0..4),
            payload in proptest::collection::vec(any::<u8>(), 0..64), one_way in any::<bool>(),
            sender in proptest::option::of(any::<i64>()),
        ) {
            let mut call = EncodedCall::new(GrainId::new("t", key), method, payload, Duration::from_micros(micros));
            call.one_way = one_way;
            call.sender = sender.map(|k| GrainId::new("s", k));
            call.chain = chain.iter().map(|(k, o, c)| (GrainId::new("c", *k), CallId::from_parts(*o, *c))).collect();
            let mut context = RequestContext::new();
            for (k, v) in &ctx { context.insert(k.clone(), v.clone()); }
            call.context = context;
            let env = encode_request(&call, call.payload.clone()).unwrap();
            let bytes = prost::Message::encode_to_vec(&env);
            let back = decode_request(<Envelope as prost::Message>::decode(&bytes[..]).unwrap(), None).unwrap();
            prop_assert_eq!(back.target, call.target);
            prop_assert_eq!(back.method, call.method);
            prop_assert_eq!(back.timeout, call.timeout);
            prop_assert_eq!(back.chain, call.chain);
            prop_assert_eq!(back.context, call.context);
            prop_assert_eq!(back.payload, call.payload);
            prop_assert_eq!(back.one_way, call.one_way);
            prop_assert_eq!(back.sender, call.sender);
            // The callee runs the call under an id of its own.
            prop_assert_ne!(back.call_id, call.call_id);
        }

        /// The caller's trace context crosses the link unchanged; zero ids
        /// (which W3C forbids) arrive as "no parent".
        #[test]
        fn trace_context_round_trips(trace: u128, span: u64, flags: u8, present: bool) {
            let mut call = EncodedCall::new(GrainId::new("t", 1), "m", Vec::new(), Duration::from_secs(1));
            call.trace = present.then_some(TraceContext { trace_id: TraceId(trace), span_id: SpanId(span), flags });
            let env = encode_request(&call, call.payload.clone()).unwrap();
            let bytes = prost::Message::encode_to_vec(&env);
            let back = decode_request(<Envelope as prost::Message>::decode(&bytes[..]).unwrap(), None).unwrap();
            let valid = present && trace != 0 && span != 0;
            prop_assert_eq!(back.trace, if valid { call.trace } else { None });
        }

        /// Garbage is a clear error, never a panic.
        #[test]
        fn garbage_envelopes_are_errors(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(env) = <Envelope as prost::Message>::decode(&bytes[..]) {
                let _ = decode_request(env, None);
            }
        }
    }
}
