//! The callee's side of the link: [`LinkService`] queues each request on
//! its grain as it arrives (no task per call: the stream's task waits for
//! the replies) and streams the replies back in batches.
//!
//! Every request holds one unit of the silo's bound on calls in flight
//! ([`CallBound`]) from its arrival until its reply is handed to the reply
//! stream; a request past the bound is answered `Overloaded` at once, so
//! a call storm costs the silo bounded memory. Probes and directory
//! traffic are other RPCs and never count.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;

use actor_core::{EncodedCall, GrainId, Silo};
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status, Streaming};

#[cfg(doc)]
use super::LinkOptions;
use super::batch_stream::BatchStream;
use super::envelope::{decode_request, error_envelope};
use super::log_limit::LogLimit;
use super::pb::silo_link_server::{SiloLink, SiloLinkServer};
use super::pb::{self, Batch, Envelope, Kind};
use super::{DIRECTED, QUEUE};
use crate::transport::LinkListener;

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
    warnings: Arc<Warnings>,
    bound: Arc<CallBound>,
}

/// The warnings peers can cause, each at most once per
/// [`LOG_EVERY`](super::log_limit::LOG_EVERY) with a count: a member that
/// sends garbage on purpose cannot flood the logs.
#[derive(Debug, Default)]
struct Warnings {
    undecodable: LogLimit,
    bad_frames: LogLimit,
    shed: LogLimit,
}

impl Warnings {
    fn note_shed(&self, limit: usize) {
        if let Some(count) = self.shed.note() {
            tracing::warn!(
                limit,
                calls = count,
                "overloaded: shedding calls (at most one line every 10 s; `calls` counts them since the last)"
            );
        }
    }
}

/// The default bound on the calls a silo has in flight from its links
/// (see [`LinkService::with_max_calls_in_flight`]).
pub const DEFAULT_MAX_CALLS_IN_FLIGHT: usize = 20_000;

/// A silo's bound on the calls in flight from its links: requests
/// accepted whose reply has not been handed to the reply stream yet,
/// over every stream of the service. One atomic add when a call arrives
/// and one subtraction when its reply goes out; nothing waits for room.
#[derive(Debug)]
struct CallBound {
    in_flight: AtomicUsize,
    limit: usize,
}

impl CallBound {
    fn new(limit: usize) -> Self {
        CallBound {
            in_flight: AtomicUsize::new(0),
            limit,
        }
    }

    /// Takes one unit, or says no (taking nothing) at the bound.
    fn admit(&self) -> bool {
        // Relaxed: a count, ordering nothing else.
        if self.in_flight.fetch_add(1, Ordering::Relaxed) < self.limit {
            true
        } else {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            false
        }
    }

    /// Whether the bound is reached (for one-way calls, which take no
    /// unit: nobody waits for their reply).
    fn is_full(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) >= self.limit
    }

    fn release(&self, units: usize) {
        self.in_flight.fetch_sub(units, Ordering::Relaxed);
    }
}

/// One unit of a [`CallBound`], given back when dropped: for a reply that
/// waits for room outside the stream's task.
struct Permit(Arc<CallBound>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.release(1);
    }
}

/// The calls one stream's task waits on, each holding a unit of the
/// bound; if the task ends early (a panic), the units still go back.
struct Admitted {
    running: FuturesUnordered<Running>,
    bound: Arc<CallBound>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.bound.release(self.running.len());
    }
}

/// Whether a grain is hosted on this silo (see [`LinkService::with_admission`]).
type Admission = Arc<dyn Fn(&GrainId) -> bool + Send + Sync>;

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
            warnings: Arc::default(),
            bound: Arc::new(CallBound::new(DEFAULT_MAX_CALLS_IN_FLIGHT)),
        }
    }

    /// Accepts at most `limit` calls in flight over all of this service's
    /// streams (requests whose reply has not been sent yet; default
    /// [`DEFAULT_MAX_CALLS_IN_FLIGHT`]); a request past it is answered at
    /// once with `actor_core::Error::Overloaded` and does not run. One-way
    /// calls take no place, but are dropped (with a logged count) while
    /// the bound is reached. Probes and gateway lists are never refused.
    pub fn with_max_calls_in_flight(mut self, limit: usize) -> Self {
        self.bound = Arc::new(CallBound::new(limit));
        self
    }

    /// The calls in flight now (see
    /// [`with_max_calls_in_flight`](LinkService::with_max_calls_in_flight)).
    pub fn calls_in_flight(&self) -> usize {
        self.bound.in_flight.load(Ordering::Relaxed)
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
    /// [`LinkOptions::directed`] set) for grains `hosted` says are not here
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

    /// Serves this link on `listener` until the returned task is aborted,
    /// under the listener's [`ConnectionLimits`](crate::ConnectionLimits):
    /// a TCP port ([`LinkListener::tcp`]) or any other transport's.
    pub fn serve(self, listener: LinkListener) -> tokio::task::JoinHandle<()> {
        let incoming = listener.into_incoming();
        let service = self.into_server();
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
        let warnings = self.warnings.clone();
        let bound = self.bound.clone();
        tokio::spawn(async move {
            // Why the requests stopped, when it was an error: the reply
            // stream ends with it.
            let mut failed = None;
            // The calls this stream's task waits on, each already queued
            // on its grain (no task per call: the activation's queue
            // orders and runs them; this only forwards their replies).
            let mut admitted = Admitted {
                running: FuturesUnordered::new(),
                bound: bound.clone(),
            };
            loop {
                let running = &mut admitted.running;
                let next = tokio::select! {
                    // Replies first: they free memory and callers.
                    biased;
                    Some((call_id, reply)) = running.next(), if !running.is_empty() => {
                        forward_reply(call_id, false, reply, &tx, &bound);
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
                            let one_way = env.kind() == Kind::OneWay;
                            if one_way && bound.is_full() {
                                warnings.note_shed(bound.limit);
                                continue;
                            }
                            if !one_way && !bound.admit() {
                                warnings.note_shed(bound.limit);
                                let e = actor_core::Error::Overloaded {
                                    silo: silo.name().to_owned(),
                                    limit: bound.limit,
                                };
                                answer(error_envelope(number, &e), &tx).await;
                                continue;
                            }
                            match handle_request(&silo, env, admission.as_ref(), &warnings) {
                                Ok(call) => {
                                    start_call(
                                        &silo,
                                        number,
                                        call,
                                        &mut admitted.running,
                                        &tx,
                                        &bound,
                                    );
                                }
                                Err(refusal) => {
                                    if !one_way {
                                        bound.release(1);
                                    }
                                    if let Some(env) = refusal {
                                        answer(*env, &tx).await;
                                    }
                                }
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        // Malformed, oversized or cut: this stream ends,
                        // the silo serves on. A bad frame is worth a
                        // warning; a peer that went away is not.
                        if bad_frame(&status) {
                            if let Some(count) = warnings.bad_frames.note() {
                                tracing::warn!(error = %status, streams = count, "closed silo link streams after a bad frame (at most one line every 10 s; `streams` counts them since the last)");
                            }
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
            while let Some((call_id, reply)) = admitted.running.next().await {
                forward_reply(call_id, false, reply, &tx, &bound);
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
    let error = match actor_core::__private::codec::decode::<GrainId>(&env.target) {
        Ok(grain) => actor_core::Error::NotHere {
            grain,
            silo: silo.name().to_owned(),
        },
        Err(e) => e,
    };
    let _ = replies.try_send(error_envelope(env.call_id, &error));
}

/// Sends an answer the stream's task made itself (a refusal), waiting
/// for room if the reply queue is full: a caller that does not read its
/// replies then stops being read, rather than making the silo buffer
/// refusals for it.
async fn answer(env: Envelope, replies: &mpsc::Sender<Envelope>) {
    if let Err(mpsc::error::TrySendError::Full(env)) = replies.try_send(env) {
        let _ = replies.send(env).await;
    }
}

/// The call `env` asks for, or why it will not run: the answer to send
/// (none for a one-way call; boxed, as refusals are rare).
fn handle_request(
    silo: &Silo,
    env: Envelope,
    admission: Option<&Admission>,
    warnings: &Warnings,
) -> std::result::Result<EncodedCall, Option<Box<Envelope>>> {
    let call_id = env.call_id;
    let one_way = env.kind() == Kind::OneWay;
    let call = match decode_request(env, Some(silo)) {
        Ok(call) => call,
        Err(e) => {
            if let Some(count) = warnings.undecodable.note() {
                tracing::warn!(error = %e, envelopes = count, "dropped undecodable call envelopes (at most one line every 10 s; `envelopes` counts them since the last)");
            }
            return Err((!one_way).then(|| Box::new(error_envelope(call_id, &e))));
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
        return Err(Some(Box::new(error_envelope(call_id, &e))));
    }
    Ok(call)
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

/// Queues `call` (the caller's request `number` on this stream, holding
/// a unit of `bound` unless one-way) on its grain now (so calls are
/// queued in the order they arrived) and adds the wait for its reply to
/// `running`; a call that fails at once is answered at once, a one-way
/// call needs no answer.
fn start_call(
    silo: &Silo,
    number: u64,
    call: EncodedCall,
    running: &mut FuturesUnordered<Running>,
    replies: &mpsc::Sender<Envelope>,
    bound: &Arc<CallBound>,
) {
    let (call_id, one_way) = (number, call.one_way);
    match silo.queue_encoded(call) {
        Ok(reply) if !one_way => running.push(Running { call_id, reply }),
        Ok(_) => {}
        Err(e) => forward_reply(call_id, one_way, Err(e), replies, bound),
    }
}

/// Sends a finished call's reply (none for a one-way call) to its caller,
/// and gives its unit of `bound` back once the reply is on the stream.
fn forward_reply(
    call_id: u64,
    one_way: bool,
    outcome: actor_core::Result<Vec<u8>>,
    replies: &mpsc::Sender<Envelope>,
    bound: &Arc<CallBound>,
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
        Ok(()) => bound.release(1),
        // The caller may be gone; its pending call then fails there.
        Err(mpsc::error::TrySendError::Closed(_)) => bound.release(1),
        // The caller reads slowly: wait for room without holding up the
        // other calls of this stream. The reply keeps its unit until it
        // is sent, so these waits are bounded too.
        Err(mpsc::error::TrySendError::Full(env)) => {
            let replies = replies.clone();
            let permit = Permit(bound.clone());
            tokio::spawn(async move {
                let _ = replies.send(env).await;
                drop(permit);
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A reply that finds its caller's queue full keeps its unit of the
    /// bound until it is on the stream, then gives it back; so do replies
    /// sent at once and replies to a caller that is gone.
    #[tokio::test]
    async fn a_reply_waiting_for_room_holds_its_unit_until_sent() {
        let bound = Arc::new(CallBound::new(3));
        let (tx, mut rx) = mpsc::channel::<Envelope>(1);
        for _ in 0..3 {
            assert!(bound.admit());
        }
        assert!(!bound.admit(), "past the bound");
        assert_eq!(bound.in_flight.load(Ordering::Relaxed), 3);
        forward_reply(1, false, Ok(vec![1]), &tx, &bound);
        assert_eq!(bound.in_flight.load(Ordering::Relaxed), 2, "sent at once");
        forward_reply(2, false, Ok(vec![2]), &tx, &bound);
        tokio::task::yield_now().await;
        assert_eq!(
            bound.in_flight.load(Ordering::Relaxed),
            2,
            "waiting for room"
        );
        assert_eq!(rx.recv().await.unwrap().call_id, 1);
        assert_eq!(rx.recv().await.unwrap().call_id, 2);
        for _ in 0..100 {
            if bound.in_flight.load(Ordering::Relaxed) == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            bound.in_flight.load(Ordering::Relaxed),
            1,
            "sent after waiting"
        );
        drop(rx);
        forward_reply(3, false, Ok(vec![3]), &tx, &bound);
        assert_eq!(bound.in_flight.load(Ordering::Relaxed), 0, "caller gone");
        assert!(bound.admit(), "room again");
    }
}
