//! A call's envelope: the header every call carries (local or not), and
//! the serialized form a call takes between silos ([`EncodedCall`], with
//! its [`EncodedReply`]). A header becomes an encoded call in one place,
//! [`CallHeader::into_encoded`].

use std::sync::Arc;

use tokio::time::{Duration, Instant};

use crate::context::{CallId, ChainFrame, LocalCallId, RequestContext};
use crate::error::{Error, Result};
use crate::id::GrainId;
use crate::trace::TraceContext;

/// The envelope header of a call: everything but the payload. It carries
/// what a remote hop needs too (id, deadline, chain, request context), and
/// the caller's span so the turn's span is its child.
#[doc(hidden)]
pub struct CallHeader {
    pub(crate) call_id: LocalCallId,
    pub(crate) method: &'static str,
    pub(crate) deadline: Instant,
    pub(crate) timeout: Duration,
    pub(crate) chain: Option<Arc<ChainFrame>>,
    pub(crate) context: RequestContext,
    pub(crate) sender: Option<GrainId>,
    /// The caller's `tracing` span; `None` when no tracing dispatcher
    /// exists (nothing to parent).
    pub(crate) span: Option<tracing::Span>,
    pub(crate) timer: bool,
    /// The caller's span (W3C trace context), the parent of this call's
    /// turn; `None` starts a new trace.
    pub(crate) trace: Option<TraceContext>,
}

/// A serialized call arriving from another silo or an external client, as
/// a transport hands it to [`Silo::invoke_encoded`](crate::Silo::invoke_encoded).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EncodedCall {
    /// The target grain.
    pub target: GrainId,
    /// The method (message) name.
    pub method: String,
    /// The call's id where it was made. Informational only: a silo that
    /// receives the call runs it under an id of its own, and transports
    /// match replies by numbers of their own.
    pub call_id: CallId,
    /// Time left until the call's deadline.
    pub timeout: Duration,
    /// The request context.
    pub context: RequestContext,
    /// The call chain, oldest frame first (for deadlock detection).
    pub chain: Vec<(GrainId, CallId)>,
    /// Whether the caller waits for a reply.
    pub one_way: bool,
    /// The bincode-encoded message.
    pub payload: Vec<u8>,
    /// The caller's span (W3C trace context): the called turn becomes its
    /// child. `None` starts a new trace, unless the request context holds
    /// a valid [`TRACEPARENT`](crate::TRACEPARENT) entry, which is then
    /// the parent (an external caller's).
    pub trace: Option<TraceContext>,
    /// The calling grain, when a grain made the call (also for one-way
    /// calls, which carry no chain).
    pub sender: Option<GrainId>,
}

/// The encoded reply of a call queued with
/// [`Silo::queue_encoded`](crate::Silo::queue_encoded): a
/// small future (no timer) that resolves when the grain has answered (an
/// empty reply at once for a one-way call), or with
/// [`Error::SiloStopped`] if the activation went away without answering.
#[derive(Debug)]
pub struct EncodedReply(pub(crate) Option<tokio::sync::oneshot::Receiver<Result<Vec<u8>>>>);

impl std::future::Future for EncodedReply {
    type Output = Result<Vec<u8>>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match &mut self.0 {
            None => std::task::Poll::Ready(Ok(Vec::new())),
            Some(rx) => std::pin::Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(Error::SiloStopped))),
        }
    }
}

impl EncodedCall {
    /// A call with a fresh id, no chain and an empty context.
    pub fn new(
        target: GrainId,
        method: impl Into<String>,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Self {
        EncodedCall {
            target,
            method: method.into(),
            call_id: CallId::next(),
            timeout,
            context: RequestContext::new(),
            chain: Vec::new(),
            one_way: false,
            payload,
            trace: None,
            sender: None,
        }
    }
}

impl CallHeader {
    /// The envelope of this call to `target` on another silo, with its
    /// encoded message: what a typed reference sends through its router
    /// and what a queued call forwards when its grain has moved.
    #[inline]
    pub(crate) fn into_encoded(
        self,
        target: GrainId,
        payload: Vec<u8>,
        one_way: bool,
    ) -> EncodedCall {
        let mut call = EncodedCall::new(
            target,
            self.method,
            payload,
            self.deadline.saturating_duration_since(Instant::now()),
        );
        call.call_id = self.call_id.full();
        call.context = self.context;
        call.chain = self.chain.map(|c| c.to_vec()).unwrap_or_default();
        call.one_way = one_way;
        call.trace = self.trace;
        call.sender = self.sender;
        call
    }
}
