//! Call filters: interceptors that see every call entering a grain
//! (incoming) or leaving a caller (outgoing), for logging, authorization,
//! metrics or adding request context. They are synchronous and run on the
//! call path, so keep them cheap.

use std::time::Duration;

use crate::context::RequestContext;
use crate::id::GrainId;
use crate::trace::{SpanId, TraceContext};

/// What a filter sees of a call.
#[derive(Debug)]
#[non_exhaustive]
pub struct CallInfo<'a> {
    /// The called grain.
    pub grain: &'a GrainId,
    /// The method (message) name.
    pub method: &'static str,
    /// The request context the call carries (empty in `on_response`).
    pub context: &'a RequestContext,
    /// The calling grain, when a grain made the call.
    pub sender: Option<&'a GrainId>,
    /// The turn's own W3C trace context (trace id, its span id, flags).
    pub trace: TraceContext,
    /// The span of the caller (the parent of this turn's span), possibly
    /// on another silo or outside the cluster; `None` when the call
    /// started its trace.
    pub parent_span: Option<SpanId>,
}

/// Runs in the called grain's activation, around each turn.
pub trait IncomingCallFilter: Send + Sync + 'static {
    /// Before the turn. An `Err(reason)` rejects the call: the caller gets
    /// [`Error::Rejected`](crate::Error::Rejected) and the turn does not run.
    fn on_request(&self, call: &CallInfo<'_>) -> Result<(), String> {
        let _ = call;
        Ok(())
    }

    /// After the turn, with its duration and whether it succeeded.
    fn on_response(&self, call: &CallInfo<'_>, elapsed: Duration, ok: bool) {
        let _ = (call, elapsed, ok);
    }
}

/// A call about to leave the caller: filters may read and change its
/// request context, or refuse it.
#[derive(Debug)]
#[non_exhaustive]
pub struct OutgoingCall<'a> {
    /// The target grain.
    pub grain: &'a GrainId,
    /// The method (message) name.
    pub method: &'static str,
    /// The request context the call will carry.
    pub context: &'a mut RequestContext,
    /// Whether the call is one-way.
    pub one_way: bool,
}

/// Runs on the caller's side before a call is sent.
pub trait OutgoingCallFilter: Send + Sync + 'static {
    /// An `Err(reason)` fails the call with
    /// [`Error::Rejected`](crate::Error::Rejected) before it is sent.
    fn on_call(&self, call: &mut OutgoingCall<'_>) -> Result<(), String>;
}
