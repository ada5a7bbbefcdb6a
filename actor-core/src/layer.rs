//! Call layers: async middleware around every turn a silo runs, in the
//! manner of tower's layers and axum's `from_fn` middleware.
//!
//! A layer sees the call before its turn, may await anything (a token
//! check against a service, a rate limiter kept in a grain), may refuse
//! the call with an error (the caller gets it and the turn never runs),
//! and otherwise runs the rest of the stack with [`Next::run`], after
//! which it sees whether the turn succeeded. Layers are ordered: the
//! first added is the outermost.
//!
//! The stack a call passes through on the silo that runs it:
//!
//! 1. the built-in deadline check: a call whose deadline passed while it
//!    queued is dropped with a timeout, before anything below runs;
//! 2. the built-in scope: the turn's tracing span (a child of the
//!    caller's), its request context and call chain, and the method's
//!    metrics clock, which starts here (so the layers' own time counts in
//!    the method's latency);
//! 3. the synchronous [`IncomingCallFilter`](crate::IncomingCallFilter)s,
//!    in the order added;
//! 4. the [`CallLayer`]s, in the order added;
//! 5. the handler, with its panic guard. Its reply waits for the layers:
//!    it reaches the caller once the outermost layer has returned, or, if
//!    a layer returns an error after `next.run()` (a commit that failed,
//!    say), that error reaches the caller instead. A handler's panic is
//!    answered at once (the turn is over and the activation dropped).
//!
//! A silo without layers skips step 4 entirely: no box, no allocation and
//! no dynamic call per turn. Each layer costs one boxed future per call.
//! Retries and deadlines of calls to other silos stay with the routers
//! (actor-cluster), which retry only what provably did not run.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::error::Error;
use crate::filter::CallInfo;
use crate::invoke::TurnFuture;
use crate::silo::Silo;

/// Async middleware around the turn of every call entering a grain on
/// this silo (added with [`SiloBuilder::layer`](crate::SiloBuilder::layer)).
///
/// ```
/// use actor_core::{CallInfo, CallLayer, Error, Next, TurnOutcome};
///
/// /// Refuses every call that does not carry `role=admin`.
/// struct AdminsOnly;
///
/// impl CallLayer for AdminsOnly {
///     async fn call(&self, call: &CallInfo<'_>, next: Next<'_>) -> Result<TurnOutcome, Error> {
///         if call.context.value("role") != Some("admin") {
///             return Err(call.reject("this grain serves role=admin only"));
///         }
///         next.run().await
///     }
/// }
/// ```
pub trait CallLayer: Send + Sync + 'static {
    /// Runs around the call's turn: return an error to refuse it (its
    /// caller gets that error; use [`CallInfo::reject`] for a refusal),
    /// or `next.run().await` to run the rest of the stack.
    ///
    /// The turn's reply is held until the outermost layer returns: an
    /// error a layer returns *after* `next.run()` replaces it (the turn
    /// has run; its effects on the grain stay).
    fn call<'a>(
        &'a self,
        call: &'a CallInfo<'a>,
        next: Next<'a>,
    ) -> impl Future<Output = Result<TurnOutcome, Error>> + Send + 'a;
}

/// How a turn ended, as the layers around it see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TurnOutcome {
    /// Whether the turn succeeded: its handler neither panicked nor
    /// returned a reply its message type classes as an error
    /// ([`Message::is_error`](crate::Message::is_error), as the silo's
    /// error metrics count it).
    pub ok: bool,
}

/// The rest of the stack below a layer: the layers after it, then the
/// turn. Run it at most once, with [`run`](Next::run).
pub struct Next<'a> {
    layers: &'a [Arc<dyn ErasedLayer>],
    call: &'a CallInfo<'a>,
    silo: &'a Silo,
    turn: &'a mut (dyn PendingTurn + Send + 'a),
}

impl<'a> Next<'a> {
    pub(crate) fn new(
        layers: &'a [Arc<dyn ErasedLayer>],
        call: &'a CallInfo<'a>,
        silo: &'a Silo,
        turn: &'a mut (dyn PendingTurn + Send + 'a),
    ) -> Self {
        Next {
            layers,
            call,
            silo,
            turn,
        }
    }

    /// The silo running the call, for a layer that calls grains (a policy
    /// grain, a rate limit kept in a grain) before letting it in. The
    /// layer runs inside the turn's scope: such calls carry the turn's
    /// request context and call chain, like calls from the handler.
    pub fn silo(&self) -> &'a Silo {
        self.silo
    }

    /// Runs the layers below this one and then the turn; returns how the
    /// turn ended, or the error with which a layer below refused it.
    pub async fn run(self) -> Result<TurnOutcome, Error> {
        let Next {
            layers,
            call,
            silo,
            turn,
        } = self;
        match layers.split_first() {
            Some((first, rest)) => {
                first
                    .call_erased(call, Next::new(rest, call, silo, turn))
                    .await
            }
            None => {
                let end = match turn.start() {
                    Some(fut) => fut.await,
                    // Unreachable through the API (a `Next` runs once).
                    None => return Err(call.reject("the turn was already run")),
                };
                Ok(turn.finish(end))
            }
        }
    }
}

impl std::fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Next")
            .field("layers_below", &self.layers.len())
            .finish_non_exhaustive()
    }
}

impl CallInfo<'_> {
    /// The error that refuses this call with `reason`
    /// ([`Error::Rejected`]), for a layer to return.
    pub fn reject(&self, reason: impl Into<String>) -> Error {
        Error::Rejected {
            grain: self.grain.clone(),
            method: self.method.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A layer behind a pointer: [`CallLayer`] with its future boxed.
pub(crate) trait ErasedLayer: Send + Sync + 'static {
    fn call_erased<'a>(
        &'a self,
        call: &'a CallInfo<'a>,
        next: Next<'a>,
    ) -> BoxFuture<'a, Result<TurnOutcome, Error>>;
}

impl<L: CallLayer> ErasedLayer for L {
    fn call_erased<'a>(
        &'a self,
        call: &'a CallInfo<'a>,
        next: Next<'a>,
    ) -> BoxFuture<'a, Result<TurnOutcome, Error>> {
        Box::pin(self.call(call, next))
    }
}

/// The turn at the bottom of the stack, not yet started: the turn runner
/// implements it over the queued call and the grain.
pub(crate) trait PendingTurn {
    /// The turn's future; `None` once taken.
    fn start(&mut self) -> Option<TurnFuture<'_>>;
    /// Keeps the turn's end for the runner; says how it went.
    fn finish(&mut self, end: crate::invoke::TurnEnd) -> TurnOutcome;
}
