//! The turn runner: the drain that owns a grain while its activation has
//! work (activation, turns in order, shared turns side by side,
//! deactivation, dropping after a panic), and the ways a drain starts:
//! spawned on a task of its own, or run inline on a caller's thread
//! ([`run_now`], the one inline-run function; [`run_inline`] and
//! [`inline_drain`] are its doors for a typed and a serialized caller).

use std::future::poll_fn;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Poll, Waker};

use futures::stream::{FuturesUnordered, StreamExt};
use futures::{FutureExt, future::BoxFuture};
use tokio::time::{Duration, Instant};
use tracing::Instrument;

use super::{Activation, Home, Req, Status, Step};
use crate::context::{CallScope, LocalCallId, RequestContext, SCOPE, TurnInfo};
use crate::error::Error;
use crate::filter::CallInfo;
use crate::grain::Grain;
use crate::grain_context::GrainContext;
use crate::id::GrainId;
use crate::invoke::{OnEnd, TurnEnd, panic_message};
use crate::registry::{ActivationContext, Factory};
use crate::silo::Silo;

mod layered;

/// Spawns the drain task of an activation that `enqueue` or
/// `try_deactivate` found idle.
pub(crate) fn spawn<G: Grain>(act: Arc<Activation<G>>, silo: Silo) {
    tokio::spawn(drain(act, silo, None));
}

/// The drain of an activation that a queued call found idle, for the
/// caller to run on its own thread ([`run_now`]).
pub(crate) type InlineDrain = futures::future::BoxFuture<'static, ()>;

/// How many inline runs may nest on one thread (a turn run inline that
/// calls an idle grain runs that one inline too): beyond this, a drain
/// task is spawned, so that a long call chain does not grow the stack.
const MAX_INLINE_DEPTH: usize = 8;

thread_local! {
    static INLINE_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Starts the drain of an activation that `enqueue` found idle, for a
/// caller that waits for its call's reply: the caller's own task runs the
/// activation (its activation if it is new, then the caller's turn) as
/// far as it gets without waiting. A turn that completes then costs no
/// task, no wake-up and no hop to another worker. If the activation has
/// to wait (a handler awaiting I/O, say) or has more work queued after the
/// caller's turn, the rest continues on a task of its own, as a drain task
/// always does; turns still run one at a time, in order.
///
/// The turn runs inside its own call scope, as on its own task; what
/// differs is only which task polls it (tokio task-locals of the caller
/// other than the runtime's are visible to it).
///
/// `sent`: when the caller read the clock for its call (the activation
/// takes it as the time its turn starts).
pub(crate) fn run_inline<G: Grain>(act: Arc<Activation<G>>, silo: Silo, sent: Instant) {
    run_now(inline_drain(act, silo, sent));
}

/// The drain of an activation that `enqueue` found idle, boxed, for a
/// caller that queued a call and runs it with [`run_now`].
pub(crate) fn inline_drain<G: Grain>(
    act: Arc<Activation<G>>,
    silo: Silo,
    sent: Instant,
) -> InlineDrain {
    built_in_box(|| drain(act, silo, Some(sent)))
}

/// Boxes the future `make` returns, allocating the box first: the future
/// is then built in place in its box instead of on the stack and copied
/// into it (the drain future is close to 1 KB, and only its arguments are
/// set before its first poll).
#[inline(always)]
fn built_in_box<F: std::future::Future<Output = ()> + Send + 'static>(
    make: impl FnOnce() -> F,
) -> InlineDrain {
    let slot = Box::<F>::new_uninit();
    let built: Box<F> = Box::write(slot, make());
    Box::into_pin(built)
}

/// Runs an inline drain on this thread as far as it gets without waiting,
/// for a caller that does not await the reply itself (a transport that
/// queued a remote call and collects its reply later); the rest continues
/// on a task of its own. The same as [`run_inline`] otherwise: the turn
/// runs inside its own call scope, turns stay one at a time and in order.
///
/// Polled with a no-op waker: a drain that returns `Pending` is spawned
/// at once, and its task's first poll registers the task's own waker.
pub(crate) fn run_now(mut run: InlineDrain) {
    let depth = INLINE_DEPTH.with(|d| d.get());
    if depth < MAX_INLINE_DEPTH {
        INLINE_DEPTH.with(|d| d.set(depth + 1));
        let ready = run
            .as_mut()
            .poll(&mut std::task::Context::from_waker(Waker::noop()))
            .is_ready();
        INLINE_DEPTH.with(|d| d.set(depth));
        if ready {
            return;
        }
    }
    tokio::spawn(run);
}

/// The loop that owns a grain while its activation has work: activates
/// it if needed, runs turns in order, deactivates it on request, and ends
/// when the mailbox is empty. `inline`: started by `run_inline` on a
/// caller's task (with the caller's clock reading), which it leaves (by
/// returning `Pending` once) as soon as it would do more than the caller's
/// own turn.
async fn drain<G: Grain>(act: Arc<Activation<G>>, silo: Silo, inline: Option<Instant>) {
    let mut now = inline;
    let mut inline = inline.is_some();
    let ctx = GrainContext {
        activation: act,
        silo,
    };
    let act = &ctx.activation;
    let mut grain = {
        let mut inner = act.inner.lock();
        match inner.status {
            Status::Active => inner.grain.take(),
            Status::Fresh => None,
            Status::Dead => return,
        }
    };
    if grain.is_none() {
        match Box::pin(activate(&ctx)).await {
            Ok(g) => {
                act.inner.lock().status = Status::Active;
                grain = Some(g);
            }
            Err(reason) => {
                let err = Error::ActivationFailed {
                    grain: act.id.clone(),
                    reason,
                };
                tracing::warn!(grain = %act.id, error = %err, "activation failed");
                act.entry.metrics.activation_failed();
                let queued = act.bury();
                unregister(act, &ctx.silo);
                for r in queued {
                    act.entry.metrics.method(r.header().method).record_error();
                    r.fail(err.clone());
                }
                return;
            }
        }
    }
    // After a turn, the task yields once before giving the grain back: a
    // caller that sends its next call right after its reply (the common
    // sequential case) then finds the task still there, which saves a task
    // spawn per call. An idle activation still holds no task.
    let mut linger = false;
    let mut done = None;
    // Whether the caller's turn (the first one) has run.
    let mut ran = false;
    let plain = ctx.silo.plain_turns();
    loop {
        let step = act.next_step(&mut grain, linger, done.take(), now.take());
        linger = false;
        let more = match step {
            Step::Idle => false,
            Step::Exclusive(..) => ran,
            _ => true,
        };
        if inline && more {
            // More than the caller's own exclusive turn: hand over to a
            // task of our own (the caller spawns this future when it sees
            // `Pending`).
            inline = false;
            yield_once().await;
        }
        match step {
            Step::Idle => return,
            Step::Linger => {
                yield_once().await;
                now = None;
                continue;
            }
            Step::Exclusive(req, started) => {
                let g = grain.as_mut().expect("the drain task owns the grain");
                let call = req.header().call_id;
                let end = run_turn(&ctx, req, GrainAccess::Exclusive(g), started, plain).await;
                now = end.as_ref().and_then(|e| e.ended);
                // A drain run inline does not linger: its caller is about
                // to go on, and its next call finds the activation idle
                // and runs inline again.
                linger = !inline;
                ran = true;
                if let Some(msg) = end.and_then(|e| e.panic) {
                    act.turn_done(call);
                    return drop_after_panic(&ctx, grain, msg);
                }
                done = Some(call);
            }
            Step::Shared(first, started) => {
                let g = grain.as_ref().expect("the drain task owns the grain");
                if let Some(msg) = Box::pin(interleave(&ctx, g, first, started)).await {
                    return drop_after_panic(&ctx, grain, msg);
                }
                linger = true;
            }
            Step::Deactivate(reason) => {
                let g = grain.as_mut().expect("the drain task owns the grain");
                let ended =
                    Box::pin(AssertUnwindSafe(g.on_deactivate(&ctx, reason)).catch_unwind()).await;
                if let Err(p) = ended {
                    tracing::error!(grain = %act.id, panic = %panic_message(&*p), "on_deactivate panicked");
                }
                drop(grain);
                act.entry.metrics.deactivated();
                let queued = act.bury();
                unregister(act, &ctx.silo);
                // Calls that arrived meanwhile go to a fresh activation.
                redeliver(&ctx.silo, &act.id, queued);
                return;
            }
        }
    }
}

/// Lets every other ready task run once, then resumes. Unlike
/// `tokio::task::yield_now`, it does not wait for the I/O driver to be
/// polled (a syscall), which would cost more than the spawn it saves.
fn yield_once() -> impl std::future::Future<Output = ()> {
    let mut yielded = false;
    poll_fn(move |cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}

async fn activate<G: Grain>(ctx: &GrainContext<G>) -> Result<G, String> {
    let act = &ctx.activation;
    let mut g = match &act.entry.factory {
        Factory::Sync(f) => match std::panic::catch_unwind(AssertUnwindSafe(|| f(&act.id))) {
            Ok(g) => g,
            Err(p) => {
                return Err(format!(
                    "the grain factory panicked: {}",
                    panic_message(&*p)
                ));
            }
        },
        Factory::Async(f) => {
            let built = AssertUnwindSafe(f(ActivationContext {
                id: act.id.clone(),
                silo: ctx.silo.clone(),
            }))
            .catch_unwind()
            .await;
            match built {
                Ok(Ok(g)) => g,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(p) => {
                    return Err(format!(
                        "the grain factory panicked: {}",
                        panic_message(&*p)
                    ));
                }
            }
        }
    };
    let span = tracing::info_span!("grain_activate", grain.type = %act.id.grain_type, grain.key = %act.id.key);
    let turn = TurnInfo::new(act.id.clone(), LocalCallId::next(), None, None, None);
    let scope = CallScope {
        context: Default::default(),
        turn: Some(turn),
    };
    let res = SCOPE
        .scope(scope, AssertUnwindSafe(g.on_activate(ctx)).catch_unwind())
        .instrument(span)
        .await;
    match res {
        Ok(Ok(())) => {
            act.entry.metrics.activated();
            Ok(g)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(p) => Err(format!("on_activate panicked: {}", panic_message(&*p))),
    }
}

/// How a turn borrows the grain.
enum GrainAccess<'a, G> {
    Exclusive(&'a mut G),
    Shared(&'a G),
}

/// Runs one turn: filters, span, request context scope, metrics (and the
/// silo's layers, if it has any: see `run_layered_turn`).
/// Returns `None` if a filter or layer refused the call.
///
/// Only what the turn's end needs lives across its await (the rest is
/// built by `prepare_turn`): this future is part of every drain, which a
/// caller boxes for each call it runs inline, so its size is copied and
/// allocated per call.
async fn run_turn<'a, G: Grain>(
    ctx: &'a GrainContext<G>,
    req: Req<G>,
    grain: GrainAccess<'a, G>,
    started: Instant,
    plain: bool,
) -> Option<TurnEnd> {
    if !plain && !ctx.silo.layers().is_empty() {
        // Boxed, and made out of line: the drain future keeps only a
        // pointer for this branch, and this function stays small enough
        // to be inlined into the drain on the path without layers.
        return layered::layered_turn(ctx, req, grain, started).await;
    }
    let (req, scope, span, ending) = prepare_turn(ctx, req, started, false, plain)?;
    let on_end: OnEnd<'_> = &ending;
    let turn = match grain {
        GrainAccess::Exclusive(g) => req.run_exclusive(g, ctx, on_end),
        GrainAccess::Shared(g) => req.run_shared(g, ctx, on_end),
    };
    let turn = SCOPE.scope(scope, turn);
    let mut end = match span {
        None => turn.await,
        // Traced turns are the slow path anyway: box them rather than
        // make every drain future bigger by the span.
        Some(span) => Box::pin(turn.instrument(span)).await,
    };
    ending.finish(&mut end, started, ctx);
    Some(end)
}

/// What a turn does when its handler has its outcome: metrics, the
/// filters' `on_response`, and the time it ended.
struct TurnEnding<'a> {
    grain: &'a GrainId,
    method: &'static str,
    metrics: &'a crate::metrics::MethodMetrics,
    filters: &'a [Arc<dyn crate::filter::IncomingCallFilter>],
    seen: Option<Box<Seen>>,
    started: Instant,
    /// Set once the outcome is known (`u64::MAX` until then).
    elapsed_ns: std::sync::atomic::AtomicU64,
}

impl crate::invoke::TurnObserver for TurnEnding<'_> {
    /// Records the turn (see `record`); the reply goes at once.
    fn ended(&self, error: bool) -> bool {
        let elapsed = self.started.elapsed();
        self.elapsed_ns.store(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX - 1),
            std::sync::atomic::Ordering::Relaxed,
        );
        self.metrics.record(elapsed, error);
        if let Some(seen) = &self.seen {
            static EMPTY: RequestContext = RequestContext::new();
            let info = CallInfo {
                grain: self.grain,
                method: self.method,
                context: &EMPTY,
                sender: seen.sender.as_ref(),
                trace: seen.trace,
                parent_span: seen.parent_span,
            };
            for f in self.filters {
                f.on_response(&info, elapsed, !error);
            }
        }
        false
    }
}

impl<'a> TurnEnding<'a> {
    /// Completes `end` when the turn is over: the time it ended, and the
    /// log line of a panic.
    #[inline(always)]
    fn finish<G: Grain>(&self, end: &mut TurnEnd, started: Instant, ctx: &GrainContext<G>) {
        let ns = self.elapsed_ns.load(std::sync::atomic::Ordering::Relaxed);
        if ns != u64::MAX {
            end.ended = started.checked_add(Duration::from_nanos(ns));
        }
        if let Some(p) = &end.panic {
            let method = self.method;
            if p == crate::invoke::CUT_OFF {
                tracing::warn!(grain = %ctx.activation.id, method, "{p}; dropping the activation");
            } else {
                tracing::error!(grain = %ctx.activation.id, method, panic = %p, "grain handler panicked; dropping the activation");
            }
        }
    }

    /// The turn has its outcome: the method's metrics, the filters'
    /// `on_response`, and the time it ended.
    fn record(&self, error: bool) {
        crate::invoke::TurnObserver::ended(self, error);
    }
}

/// Fails a call whose turn would start past the silo's own lease: another
/// silo may run this grain by now. The call did not run; its caller looks
/// the grain up again.
#[cold]
#[inline(never)]
fn fenced_out<G: Grain>(ctx: &GrainContext<G>, req: Req<G>) {
    let act = &ctx.activation;
    act.entry.metrics.method(req.header().method).record_error();
    req.fail(Error::NotHere {
        grain: act.id.clone(),
        silo: ctx.silo.name().to_owned(),
    });
}

/// The synchronous part of a turn's start: runs the incoming filters
/// (failing the call if one rejects it), makes the turn's span and its
/// call scope.
#[allow(clippy::type_complexity)]
#[inline(always)]
fn prepare_turn<'a, G: Grain>(
    ctx: &'a GrainContext<G>,
    mut req: Req<G>,
    started: Instant,
    layered: bool,
    plain: bool,
) -> Option<(Req<G>, CallScope, Option<tracing::Span>, TurnEnding<'a>)> {
    let act = &ctx.activation;
    let silo = &ctx.silo;
    if !plain
        && let Some(fence) = silo.turn_fence()
        && !fence.allows(started)
    {
        fenced_out(ctx, req);
        return None;
    }
    let h = req.header_mut();
    let method = h.method;
    let context = std::mem::take(&mut h.context);
    let chain = h.chain.take();
    let sender = h.sender.take();
    let call_id = h.call_id;
    let parent = h.span.take();
    let parent_trace = h.trace;
    let parent_span = parent_trace.map(|p| p.span_id);
    let metrics = act.entry.metrics.method(method);
    let filters: &[Arc<dyn crate::filter::IncomingCallFilter>] =
        if plain { &[] } else { silo.incoming_filters() };
    // The turn's own trace context, made now only if filters or a span
    // read it (otherwise on first use, if ever: see `TurnInfo::trace`).
    let eager = (layered || !filters.is_empty() || parent.is_some())
        .then(|| crate::trace::child_of(parent_trace));
    if let Some(trace) = eager
        && !filters.is_empty()
    {
        let info = CallInfo {
            grain: &act.id,
            method,
            context: &context,
            sender: sender.as_ref(),
            trace,
            parent_span,
        };
        for f in filters {
            if let Err(reason) = f.on_request(&info) {
                metrics.record_error();
                req.fail(Error::Rejected {
                    grain: act.id.clone(),
                    method: method.to_owned(),
                    reason,
                });
                return None;
            }
        }
    }
    // Without any tracing dispatcher (not even a scoped one) the caller
    // captured no span and there is none to make: skip the macro, which
    // would still build a disabled span and log through it.
    let span = parent
        .as_ref()
        .zip(eager)
        .map(|(p, trace)| turn_span(&act.id, method, p, sender.as_ref(), trace, parent_span));
    // What the filters see again when the turn ends (and the layers see
    // around it), boxed: most silos have neither.
    let seen = match eager {
        Some(trace) if layered || !filters.is_empty() => Some(Box::new(Seen {
            sender,
            trace,
            parent_span,
        })),
        _ => None,
    };
    let scope = CallScope {
        context: std::cell::RefCell::new(context),
        turn: Some(TurnInfo::new(
            act.id.clone(),
            call_id,
            chain,
            parent_trace,
            eager,
        )),
    };
    let ending = TurnEnding {
        grain: &act.id,
        method,
        metrics,
        filters,
        seen,
        started,
        elapsed_ns: std::sync::atomic::AtomicU64::new(u64::MAX),
    };
    Some((req, scope, span, ending))
}

/// The call as incoming filters saw it, for their `on_response`.
struct Seen {
    sender: Option<GrainId>,
    trace: crate::trace::TraceContext,
    parent_span: Option<crate::trace::SpanId>,
}

/// The `grain_call` span of a turn, a child of the caller's span.
fn turn_span(
    grain: &GrainId,
    method: &'static str,
    parent: &tracing::Span,
    sender: Option<&GrainId>,
    trace: crate::trace::TraceContext,
    parent_span: Option<crate::trace::SpanId>,
) -> tracing::Span {
    let span = tracing::info_span!(
        parent: parent,
        "grain_call",
        grain.type = %grain.grain_type,
        grain.key = %grain.key,
        method,
        caller = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        parent_id = tracing::field::Empty,
    );
    if !span.is_disabled() {
        if let Some(caller) = sender {
            span.record("caller", tracing::field::display(caller));
        }
        span.record("trace_id", tracing::field::display(trace.trace_id));
        span.record("span_id", tracing::field::display(trace.span_id));
        if let Some(parent) = parent_span {
            span.record("parent_id", tracing::field::display(parent));
        }
    }
    span
}

/// Runs shared turns side by side on this task, admitting compatible calls
/// as they arrive, until none is left running. Returns a panic message if
/// one of them panicked (no more calls are admitted after that).
async fn interleave<G: Grain>(
    ctx: &GrainContext<G>,
    grain: &G,
    first: Req<G>,
    started: Instant,
) -> Option<String> {
    let act = &ctx.activation;
    let plain = ctx.silo.plain_turns();
    let mut set: FuturesUnordered<BoxFuture<'_, Option<TurnEnd>>> = FuturesUnordered::new();
    let start = |req: Req<G>, started: Instant| -> BoxFuture<'_, Option<TurnEnd>> {
        let call = req.header().call_id;
        Box::pin(async move {
            let end = run_turn(ctx, req, GrainAccess::Shared(grain), started, plain).await;
            act.turn_done(call);
            end
        })
    };
    set.push(start(first, started));
    let mut panic: Option<String> = None;
    let mut admitted = Vec::new();
    poll_fn(|cx| {
        loop {
            if panic.is_none() {
                act.admit_shared(&mut admitted, cx.waker());
                for (req, started) in admitted.drain(..) {
                    set.push(start(req, started));
                }
            }
            match set.poll_next_unpin(cx) {
                Poll::Ready(Some(end)) => {
                    if let Some(p) = end.and_then(|e| e.panic) {
                        panic.get_or_insert(p);
                    }
                }
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await;
    act.inner.lock().take_waker();
    panic
}

fn drop_after_panic<G: Grain>(ctx: &GrainContext<G>, grain: Option<G>, _msg: String) {
    let act = &ctx.activation;
    // The grain's state may be half-updated: drop it without on_deactivate.
    drop(grain);
    act.entry.metrics.deactivated();
    let queued = act.bury();
    unregister(act, &ctx.silo);
    redeliver(&ctx.silo, &act.id, queued);
}

/// Sends what an ended activation had queued to the grain's next
/// activation, except timer ticks: a timer ends with its activation and
/// never activates its grain again.
fn redeliver<G: Grain>(silo: &Silo, id: &GrainId, queued: Vec<Req<G>>) {
    for r in queued {
        if r.header().timer {
            r.fail(Error::SiloStopped);
        } else {
            silo.redeliver(id, r);
        }
    }
}

fn unregister<G: Grain>(act: &Arc<Activation<G>>, silo: &Silo) {
    match &act.home {
        Home::Table => silo.remove_activation(&act.id, act),
        Home::Pool(pool) => {
            if let Some(pool) = pool.upgrade() {
                pool.remove(act);
                if pool.is_empty() {
                    silo.remove_pool(&act.id, &pool);
                }
            }
        }
    }
}

#[cfg(test)]
mod size {
    use super::*;
    use crate::registry::TypeEntry;

    struct Empty;
    impl Grain for Empty {
        const TYPE_NAME: &'static str = "empty";
    }
    impl crate::GrainMethods for Empty {
        fn register(_: &mut crate::Methods<Self>) {}
    }

    /// The drain future is boxed for every call a caller runs inline:
    /// its size is copied each time, and above 1,024 bytes glibc's
    /// per-thread cache (blocks up to 1,032 bytes) no longer serves the
    /// box (a slower allocation and free per call).
    #[tokio::test]
    async fn the_drain_future_stays_small() {
        let silo = Silo::builder().start().await.unwrap();
        let entry = Arc::new(TypeEntry::<Empty>::new(
            crate::grain::GrainOptions::new(),
            Factory::Sync(Arc::new(|_| Empty)),
        ));
        let act = Arc::new(Activation::new(
            GrainId::new("empty", 1),
            entry,
            Home::Table,
        ));
        let size = std::mem::size_of_val(&drain(act, silo, None));
        eprintln!("drain future: {size} bytes");
        assert!(size <= 1024, "the drain future is {size} bytes");
    }

    /// An idle activation's footprint is part of the runtime's promise
    /// (well under 512 bytes with its table entry); keep an eye on it.
    #[test]
    fn an_activation_stays_small() {
        let size = std::mem::size_of::<Activation<Empty>>();
        assert!(size <= 256, "Activation is {size} bytes");
        eprintln!("Activation<Empty>: {size} bytes");
    }
}
