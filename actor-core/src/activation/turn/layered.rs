//! The turn of a silo with call layers: the layers run, in order, around
//! the handler, inside the turn's scope and span, and the handler's reply
//! waits for them (see `crate::layer`). The path without layers never
//! reaches this file.

use std::panic::AssertUnwindSafe;

use futures::{FutureExt, future::BoxFuture};
use tokio::time::Instant;
use tracing::Instrument;

use super::{GrainAccess, TurnEnding, prepare_turn};
use crate::activation::Req;
use crate::context::{RequestContext, SCOPE};
use crate::error::Error;
use crate::filter::CallInfo;
use crate::grain::Grain;
use crate::grain_context::GrainContext;
use crate::invoke::{OnEnd, TurnEnd, panic_message};
use crate::layer::{Next, TurnOutcome};

#[cold]
#[inline(never)]
pub(super) fn layered_turn<'a, G: Grain>(
    ctx: &'a GrainContext<G>,
    req: Req<G>,
    grain: GrainAccess<'a, G>,
    started: Instant,
) -> BoxFuture<'a, Option<TurnEnd>> {
    Box::pin(run_layered_turn(ctx, req, grain, started))
}

/// A turn on a silo with layers: the layers run, in order, around the
/// handler, inside the turn's scope and span (see `crate::layer`).
async fn run_layered_turn<'a, G: Grain>(
    ctx: &'a GrainContext<G>,
    req: Req<G>,
    grain: GrainAccess<'a, G>,
    started: Instant,
) -> Option<TurnEnd> {
    let (req, scope, span, ending) = prepare_turn(ctx, req, started, true, false)?;
    let seen = ending.seen.as_deref().expect("prepared for layers");
    let observer = Layered {
        ending: &ending,
        held: parking_lot::Mutex::new(None),
        failed: std::sync::atomic::AtomicBool::new(false),
    };
    let mut pending = Pending {
        req: Some(req),
        grain: Some(grain),
        ctx,
        on_end: &observer,
        end: None,
        failed: &observer.failed,
    };
    let outcome = {
        let pending = &mut pending;
        // Inside the turn's scope: the layers see the request context the
        // call brought (and may call grains with it).
        let chain = async move {
            let context = RequestContext::current();
            let info = CallInfo {
                grain: &ctx.activation.id,
                method: ending.method,
                context: &context,
                sender: seen.sender.as_ref(),
                trace: seen.trace,
                parent_span: seen.parent_span,
            };
            AssertUnwindSafe(Next::new(ctx.silo.layers(), &info, &ctx.silo, pending).run())
                .catch_unwind()
                .await
        };
        let chain = SCOPE.scope(scope, chain);
        match span {
            None => chain.await,
            Some(span) => chain.instrument(span).await,
        }
    };
    let Pending { req, end, .. } = pending;
    let method = ending.method;
    let grain = &ctx.activation.id;
    match (end, req) {
        (Some(mut end), _) => {
            // The reply waited for the layers: it goes now, or the error a
            // layer returned after the turn goes instead.
            let instead = match outcome {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e),
                Err(p) => {
                    let message = format!("in a call layer: {}", panic_message(&*p));
                    tracing::error!(grain = %grain, method, panic = %message, "a call layer panicked after the turn");
                    Some(Error::Panicked {
                        grain: grain.clone(),
                        method: method.to_owned(),
                        message,
                    })
                }
            };
            if let Some(reply) = observer.held.lock().take() {
                reply(instead);
            }
            ending.finish(&mut end, started, ctx);
            Some(end)
        }
        (None, Some(req)) => {
            // Refused (or dropped on the floor) before the turn started.
            let error = match outcome {
                Ok(Err(e)) => e,
                Ok(Ok(_)) => Error::Rejected {
                    grain: grain.clone(),
                    method: method.to_owned(),
                    reason: "a call layer returned without running the call".to_owned(),
                },
                Err(p) => Error::Panicked {
                    grain: grain.clone(),
                    method: method.to_owned(),
                    message: format!("in a call layer: {}", panic_message(&*p)),
                },
            };
            ending.metrics.record_error();
            req.fail(error);
            None
        }
        (None, None) => {
            // A layer started the turn and dropped it unfinished (a
            // timeout around `next.run()`, say): the reply channel went
            // with it, so its caller sees the call fail.
            tracing::warn!(grain = %grain, method, "a call layer abandoned a turn it had started");
            Some(TurnEnd {
                panic: None,
                ended: None,
            })
        }
    }
}

/// What a layered turn tells its observer: the ending as always, and the
/// reply held until the layers have run.
struct Layered<'a, 'e> {
    ending: &'e TurnEnding<'a>,
    held: parking_lot::Mutex<Option<crate::invoke::HeldReply>>,
    /// Whether the handler's reply was an error.
    failed: std::sync::atomic::AtomicBool,
}

impl crate::invoke::TurnObserver for Layered<'_, '_> {
    fn ended(&self, error: bool) -> bool {
        if error {
            self.failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.ending.record(error);
        true
    }
    fn hold(&self, reply: crate::invoke::HeldReply) {
        *self.held.lock() = Some(reply);
    }
}

/// The turn at the bottom of a layered stack.
struct Pending<'a, 'e, G: Grain> {
    req: Option<Req<G>>,
    grain: Option<GrainAccess<'a, G>>,
    ctx: &'a GrainContext<G>,
    on_end: &'e dyn crate::invoke::TurnObserver,
    end: Option<TurnEnd>,
    failed: &'e std::sync::atomic::AtomicBool,
}

impl<G: Grain> crate::layer::PendingTurn for Pending<'_, '_, G> {
    fn start(&mut self) -> Option<crate::invoke::TurnFuture<'_>> {
        let req = self.req.take()?;
        let on_end: OnEnd<'_> = self.on_end;
        Some(match self.grain.take()? {
            GrainAccess::Exclusive(g) => req.run_exclusive(g, self.ctx, on_end),
            GrainAccess::Shared(g) => req.run_shared(g, self.ctx, on_end),
        })
    }

    fn finish(&mut self, end: TurnEnd) -> TurnOutcome {
        let ok = end.panic.is_none() && !self.failed.load(std::sync::atomic::Ordering::Relaxed);
        self.end = Some(end);
        TurnOutcome { ok }
    }
}
