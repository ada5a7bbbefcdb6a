//! What a turn can see besides its grain: call ids, the request context, and the
//! ambient call scope (a tokio task-local) that outgoing calls read to carry
//! the call chain and the request context onward.
//!
//! Each turn runs inside its own scope, also when several shared turns
//! interleave on one task, so values never leak between requests; a turn's
//! changes to its request context reach the calls it makes, never its caller.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::id::GrainId;
use crate::trace::TraceContext;

/// Identifies one call (one request and its turn) across a cluster and its
/// clients.
///
/// An id is the pair of its process's *origin*, a random 64-bit number
/// drawn once per process, and a sequence number counted in that process.
/// Every process counts from the same start, so the origin is what keeps
/// two processes' ids apart: two processes share an origin with chance
/// 2^-64 per pair. A silo runs every call it receives under an id of its
/// own (see [`Silo::queue_encoded`](crate::Silo::queue_encoded)), never one
/// a peer chose, and no reply is routed by a call id (links number their
/// requests themselves); ids from peers are only compared in the call
/// chains of deadlock detection (see `docs/runtime-semantics.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CallId {
    origin: u64,
    seq: u64,
}

impl CallId {
    /// The id with these parts, as a transport decodes it.
    pub const fn from_parts(origin: u64, seq: u64) -> CallId {
        CallId { origin, seq }
    }

    /// The origin of the process that made the id.
    pub const fn origin(self) -> u64 {
        self.origin
    }

    /// The id's sequence number within its origin.
    pub const fn seq(self) -> u64 {
        self.seq
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.origin, self.seq)
    }
}

/// This process's origin: random, drawn once (from the OS's randomness,
/// through a v4 UUID), never zero.
fn process_origin() -> u64 {
    static ORIGIN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(|| {
        let (hi, lo) = uuid::Uuid::new_v4().as_u64_pair();
        (hi ^ lo).max(1)
    })
}

/// The origin of the ids made on this thread: the process's, unless a
/// simulator fixed it (see [`restart_call_ids_on_this_thread`]).
fn local_origin() -> u64 {
    match SIMULATED_ORIGIN.with(std::cell::Cell::get) {
        Some(origin) => origin,
        None => process_origin(),
    }
}

thread_local! {
    // This thread's block of call ids: (next, end).
    static NEXT_CALL_ID: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
    static SIMULATED_ORIGIN: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Restarts this thread's call ids at a fixed value, for a simulator that
/// runs a whole cluster on one thread and must replay it exactly (a random
/// origin would change from run to run). The ids get an origin of their
/// own (zero, which no process draws) and a range the process-wide blocks
/// never reach, so they stay unique unless two simulations on different
/// threads call each other.
pub fn restart_call_ids_on_this_thread() {
    const SIMULATED: u64 = 1 << 62;
    SIMULATED_ORIGIN.with(|o| o.set(Some(0)));
    NEXT_CALL_ID.with(|n| n.set((SIMULATED, SIMULATED + (1 << 40))));
}

/// A call id made in this process, as turns and call headers hold it: the
/// sequence number alone, the origin implied (half the bytes to move on
/// the local call path). [`full`](LocalCallId::full) gives the [`CallId`]
/// that leaves the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct LocalCallId(u64);

impl LocalCallId {
    /// A fresh id, unique in the cluster once given its origin.
    pub(crate) fn next() -> LocalCallId {
        use std::sync::atomic::{AtomicU64, Ordering};
        // Each thread takes blocks of 2^20 ids from a global counter: no
        // shared atomic on the call path.
        static BLOCKS: AtomicU64 = AtomicU64::new(1);
        NEXT_CALL_ID.with(|n| {
            let (mut next, mut end) = n.get();
            if next == end {
                next = BLOCKS.fetch_add(1, Ordering::Relaxed) << 20;
                end = next + (1 << 20);
            }
            n.set((next + 1, end));
            LocalCallId(next)
        })
    }

    /// The id with this process's origin.
    pub(crate) fn full(self) -> CallId {
        CallId {
            origin: local_origin(),
            seq: self.0,
        }
    }
}

impl CallId {
    /// A fresh id, unique in the cluster (see [`CallId`]).
    pub(crate) fn next() -> CallId {
        LocalCallId::next().full()
    }

    /// Whether this is `local`, an id made in this process.
    pub(crate) fn is(self, local: LocalCallId) -> bool {
        self.seq == local.0 && self.origin == local_origin()
    }
}

/// One frame of a call chain: the grain whose turn (`call`) is waiting on
/// the calls it made. Frames link to the frame of the turn's own caller.
#[derive(Debug)]
pub(crate) struct ChainFrame {
    pub(crate) grain: GrainId,
    pub(crate) call: CallId,
    pub(crate) parent: Option<Arc<ChainFrame>>,
}

impl ChainFrame {
    /// If `running` (the turns in `grain`'s activation) holds a turn of
    /// this chain, the cycle from that grain down to the newest frame.
    pub(crate) fn cycle_through(
        self: &Arc<Self>,
        grain: &GrainId,
        running: impl Fn(CallId) -> bool,
    ) -> Option<Vec<GrainId>> {
        let mut path = Vec::new();
        let mut frame = Some(self);
        while let Some(f) = frame {
            path.push(f.grain.clone());
            if &f.grain == grain && running(f.call) {
                path.reverse();
                path.push(grain.clone());
                return Some(path);
            }
            frame = f.parent.as_ref();
        }
        None
    }

    /// The frames from the oldest to the newest, as `(grain, call)` pairs:
    /// the form an [`EncodedCall`](crate::EncodedCall) carries.
    pub(crate) fn to_vec(self: &Arc<Self>) -> Vec<(GrainId, CallId)> {
        let mut v = Vec::new();
        let mut frame = Some(self);
        while let Some(f) = frame {
            v.push((f.grain.clone(), f.call));
            frame = f.parent.as_ref();
        }
        v.reverse();
        v
    }
}

/// Key/value pairs that travel with a call: set by the caller, visible in
/// the grain's turn, copied onto every call the turn makes (local or remote),
/// never flowing back to the caller. Cheap to clone (copy on write).
///
/// Inside a turn or a [`RequestContext::scope`], the *current* context is
/// read with [`RequestContext::get`] and changed with [`RequestContext::set`].
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestContext {
    entries: Option<Arc<Vec<(String, String)>>>,
}

impl RequestContext {
    /// An empty context.
    pub const fn new() -> Self {
        RequestContext { entries: None }
    }

    /// This context with `key` set to `value`.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(key, value);
        self
    }

    /// Sets `key` to `value` in this context value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        let entries = Arc::make_mut(self.entries.get_or_insert_with(Default::default));
        match entries.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => entries.push((key, value)),
        }
    }

    /// Removes `key` from this context value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let entries = Arc::make_mut(self.entries.as_mut()?);
        let at = entries.iter().position(|(k, _)| k == key)?;
        Some(entries.remove(at).1)
    }

    /// The value of `key` in this context value.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.entries
            .as_ref()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The pairs, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .flat_map(|e| e.iter())
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.entries.as_ref().is_none_or(|e| e.is_empty())
    }

    /// The current context: the running turn's, or the enclosing
    /// [`scope`](RequestContext::scope)'s; empty elsewhere.
    pub fn current() -> RequestContext {
        SCOPE
            .try_with(|s| s.context.borrow().clone())
            .unwrap_or_default()
    }

    /// The value of `key` in the current context.
    pub fn get(key: &str) -> Option<String> {
        SCOPE
            .try_with(|s| s.context.borrow().value(key).map(str::to_owned))
            .ok()
            .flatten()
    }

    /// Sets `key` in the current context, for the calls made after this
    /// point by the same turn or scope. Returns `false` (and does nothing)
    /// outside a turn or scope.
    pub fn set(key: impl Into<String>, value: impl Into<String>) -> bool {
        let (key, value) = (key.into(), value.into());
        SCOPE
            .try_with(|s| s.context.borrow_mut().insert(key, value))
            .is_ok()
    }

    /// Runs `fut` with this context as the current one: every call it makes
    /// carries these pairs. Inside a turn, the turn's call chain is kept.
    ///
    /// The scope is task-local: work handed to `tokio::spawn` inside it
    /// does not inherit it (wrap that work in its own `scope`).
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        let turn = SCOPE.try_with(|s| s.turn.clone()).ok().flatten();
        let scope = CallScope {
            context: RefCell::new(self),
            turn,
        };
        SCOPE.scope(scope, fut).await
    }
}

impl fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The running turn, as outgoing calls see it. Held inline in the turn's
/// scope: no allocation per turn unless the turn makes a call.
#[derive(Clone)]
pub(crate) struct TurnInfo {
    grain: GrainId,
    call: LocalCallId,
    parent: Option<Arc<ChainFrame>>,
    // The turn's own span, the parent of the calls it makes: made on first
    // use (most turns of a busy grain make no call and are not traced).
    // Until then its span id is zero (never a valid id) and it holds the
    // parent's trace id and flags (a zero trace id: no parent).
    trace: std::cell::Cell<TraceContext>,
    // Built on the first outgoing call of the turn only.
    frame: std::sync::OnceLock<Arc<ChainFrame>>,
}

impl TurnInfo {
    pub(crate) fn new(
        grain: GrainId,
        call: LocalCallId,
        parent: Option<Arc<ChainFrame>>,
        parent_trace: Option<TraceContext>,
        trace: Option<TraceContext>,
    ) -> Self {
        TurnInfo {
            grain,
            call,
            parent,
            trace: std::cell::Cell::new(trace.unwrap_or(TraceContext {
                trace_id: parent_trace.map_or(crate::trace::TraceId(0), |p| p.trace_id),
                span_id: crate::trace::SpanId(0),
                flags: parent_trace.map_or(0, |p| p.flags),
            })),
            frame: std::sync::OnceLock::new(),
        }
    }

    pub(crate) fn frame(&self) -> Arc<ChainFrame> {
        self.frame
            .get_or_init(|| {
                Arc::new(ChainFrame {
                    grain: self.grain.clone(),
                    call: self.call.full(),
                    parent: self.parent.clone(),
                })
            })
            .clone()
    }

    pub(crate) fn grain(&self) -> &GrainId {
        &self.grain
    }

    pub(crate) fn trace(&self) -> TraceContext {
        let t = self.trace.get();
        if t.span_id.0 != 0 {
            return t;
        }
        let made = if t.trace_id.0 == 0 {
            TraceContext::new_root()
        } else {
            t.child()
        };
        self.trace.set(made);
        made
    }
}

/// The call id of the turn running in this task's call scope, if any: for
/// tests that check what a peer can do with the ids it sees in call chains.
pub fn current_call_id() -> Option<CallId> {
    SCOPE
        .try_with(|s| s.turn.as_ref().map(|t| t.call.full()))
        .ok()
        .flatten()
}

pub(crate) struct CallScope {
    pub(crate) context: RefCell<RequestContext>,
    pub(crate) turn: Option<TurnInfo>,
}

tokio::task_local! {
    pub(crate) static SCOPE: CallScope;
}

/// What an outgoing call takes from the ambient scope.
pub(crate) struct Ambient {
    pub(crate) context: RequestContext,
    pub(crate) chain: Option<Arc<ChainFrame>>,
    pub(crate) sender: Option<GrainId>,
    /// The running turn's span, the parent of the call (outside a turn,
    /// the caller reads `traceparent` from the request context).
    pub(crate) trace: Option<TraceContext>,
}

/// What an outgoing call takes from the ambient scope.
pub(crate) fn ambient(one_way: bool) -> Ambient {
    SCOPE
        .try_with(|s| {
            let context = s.context.borrow().clone();
            match &s.turn {
                // A one-way call does not wait, so it does not extend the
                // chain: its target may call back without deadlocking.
                Some(t) => Ambient {
                    context,
                    chain: if one_way { None } else { Some(t.frame()) },
                    sender: Some(t.grain().clone()),
                    trace: Some(t.trace()),
                },
                None => Ambient {
                    context,
                    chain: None,
                    sender: None,
                    trace: None,
                },
            }
        })
        .unwrap_or_else(|_| Ambient {
            context: RequestContext::new(),
            chain: None,
            sender: None,
            trace: None,
        })
}

impl TraceContext {
    /// The context of the running turn (or `None` outside one): what a
    /// call made now carries as its parent. Put it into logs to find the
    /// trace, or hand it to another tracing system.
    pub fn current() -> Option<TraceContext> {
        SCOPE
            .try_with(|s| s.turn.as_ref().map(|t| t.trace()))
            .ok()
            .flatten()
    }

    /// Runs `fut` so that the calls it makes are children of `self`
    /// instead of the running turn's span: for a turn that makes a call on
    /// behalf of someone else (a stream's deliverer hands each consumer
    /// the producer's context, so that the consumer's turn continues the
    /// publish's trace). The turn's call chain, sender and request context
    /// are kept. Outside a turn, `self` is the parent as an external
    /// [`TRACEPARENT`](crate::TRACEPARENT) would be.
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        let (context, turn) = SCOPE
            .try_with(|s| (s.context.borrow().clone(), s.turn.clone()))
            .unwrap_or_else(|_| (RequestContext::new(), None));
        let scope = match turn {
            Some(turn) => {
                turn.trace.set(self);
                CallScope {
                    context: RefCell::new(context),
                    turn: Some(turn),
                }
            }
            None => CallScope {
                context: RefCell::new(context.with(crate::trace::TRACEPARENT, self.to_string())),
                turn: None,
            },
        };
        SCOPE.scope(scope, fut).await
    }
}

/// The parent of a call made now, outside any turn: the external caller's
/// `traceparent` in `context`, if it is well-formed. A malformed value is
/// logged and ignored (the call then starts a new trace).
pub(crate) fn external_parent(context: &RequestContext) -> Option<TraceContext> {
    let raw = context.value(crate::trace::TRACEPARENT)?;
    match raw.parse() {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            tracing::debug!(traceparent = raw, error = %e, "ignoring a malformed traceparent");
            None
        }
    }
}
