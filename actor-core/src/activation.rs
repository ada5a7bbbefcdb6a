//! One activation of a grain: its mailbox, its turn scheduler and its
//! lifecycle (activate, run turns, deactivate, drop after a panic).
//!
//! An idle activation is a small struct in the silo's table: no task, no
//! channel. The first message to an idle activation spawns a drain task that
//! owns the grain while it runs turns and exits when the mailbox is empty.
//! All scheduling decisions are taken under the activation's one mutex, so a
//! sender sees a consistent picture of what runs (which is what deadlock
//! detection needs).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};
use std::task::{Poll, Waker};

use futures::stream::{FuturesUnordered, StreamExt};
use futures::{FutureExt, future::BoxFuture};
use parking_lot::Mutex;
use smallvec::SmallVec;
use tokio::task::AbortHandle;
use tokio::time::{Duration, Instant};
use tracing::Instrument;

use crate::context::{CallScope, GrainContext, LocalCallId, SCOPE, TurnInfo};
use crate::error::Error;
use crate::filter::CallInfo;
use crate::grain::{DeactivationReason, Grain};
use crate::id::GrainId;
use crate::invoke::{Access, Invoke, OnEnd, TurnEnd, panic_message};
use crate::message::Interleave;
use crate::registry::{ActivationContext, Factory, TypeEntry};
use crate::silo::Silo;

pub(crate) type Req<G> = Box<dyn Invoke<G>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Created in the table, not yet activated.
    Fresh,
    Active,
    /// Deactivated, failed or dropped: accepts nothing; senders re-resolve.
    Dead,
}

#[derive(Clone, Copy)]
struct Running {
    call: LocalCallId,
    access: Access,
    /// A timer tick (does not count as activity for idle collection).
    timer: bool,
}

/// FIFO with the first element inline, so that an activation called one
/// message at a time never allocates a queue buffer.
struct Mailbox<T> {
    head: Option<T>,
    rest: VecDeque<T>,
}

impl<T> Mailbox<T> {
    const fn new() -> Self {
        Mailbox {
            head: None,
            rest: VecDeque::new(),
        }
    }
    fn push(&mut self, t: T) {
        if self.head.is_none() && self.rest.is_empty() {
            self.head = Some(t);
        } else {
            self.rest.push_back(t);
        }
    }
    fn front(&self) -> Option<&T> {
        self.head.as_ref().or_else(|| self.rest.front())
    }
    fn pop(&mut self) -> Option<T> {
        self.head.take().or_else(|| self.rest.pop_front())
    }
    fn len(&self) -> usize {
        self.head.is_some() as usize + self.rest.len()
    }
    fn is_empty(&self) -> bool {
        self.head.is_none() && self.rest.is_empty()
    }
    fn release(&mut self) {
        if self.rest.is_empty() && self.rest.capacity() > 0 {
            self.rest = VecDeque::new();
        }
    }
}

struct Inner<G: Grain> {
    status: Status,
    /// A drain task exists and owns the grain.
    scheduled: bool,
    grain: Option<G>,
    queue: Mailbox<Req<G>>,
    /// Calls admitted ahead of the queue: always-interleave methods and
    /// callbacks on a chain already inside this activation.
    urgent: VecDeque<Req<G>>,
    running: SmallVec<[Running; 1]>,

    last_active: Instant,

    deactivate: Option<DeactivationReason>,
    /// What few activations use, boxed to keep idle ones small.
    extra: Option<Box<Extra>>,
}

#[derive(Default)]
struct Extra {
    /// Wakes the drain task while it interleaves shared turns.
    waker: Option<Waker>,
    keep_alive_until: Option<Instant>,
    timers: Vec<AbortHandle>,
}

impl<G: Grain> Inner<G> {
    fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }
    fn take_waker(&mut self) -> Option<Waker> {
        self.extra.as_mut().and_then(|e| e.waker.take())
    }
    fn keep_alive_until(&self) -> Option<Instant> {
        self.extra.as_ref().and_then(|e| e.keep_alive_until)
    }
}

/// Where an activation is registered, for removal when it dies.
pub(crate) enum Home<G: Grain> {
    Table,
    Pool(Weak<crate::worker::WorkerPool<G>>),
}

pub(crate) struct Activation<G: Grain> {
    pub(crate) id: GrainId,
    pub(crate) entry: Arc<TypeEntry<G>>,
    home: Home<G>,
    inner: Mutex<Inner<G>>,
}

/// What a sender must do after enqueueing.
pub(crate) enum Enqueued {
    /// A drain task is running and will see the call.
    Queued,
    /// The activation was idle: spawn its drain task.
    Spawn,
}

impl<G: Grain> Activation<G> {
    pub(crate) fn new(id: GrainId, entry: Arc<TypeEntry<G>>, home: Home<G>) -> Self {
        Activation {
            id,
            entry,
            home,
            inner: Mutex::new(Inner {
                status: Status::Fresh,
                scheduled: false,
                grain: None,
                queue: Mailbox::new(),
                urgent: VecDeque::new(),
                running: SmallVec::new(),
                last_active: Instant::now(),
                deactivate: None,
                extra: None,
            }),
        }
    }

    /// Queues a call. Gives the call back if the activation is dead (the
    /// sender then resolves the grain again).
    pub(crate) fn enqueue(&self, req: Req<G>) -> Result<Enqueued, Req<G>> {
        let mut inner = self.inner.lock();
        if inner.status == Status::Dead {
            return Err(req);
        }
        let access = req.access();
        let mut urgent = matches!(access, Access::Shared(Interleave::Always));
        if let Some(chain) = &req.header().chain
            && let Some(cycle) =
                chain.cycle_through(&self.id, |c| inner.running.iter().any(|r| c.is(r.call)))
        {
            // The call comes back on a chain whose turn here waits on it:
            // queueing it would wait forever.
            if admissible(access, &inner.running, &self.entry.options, true) {
                urgent = true;
            } else {
                drop(inner);
                let method = req.header().method.to_owned();
                self.entry
                    .metrics
                    .method(req.header().method)
                    .record_error();
                req.fail(Error::Deadlock { cycle, method });
                return Ok(Enqueued::Queued);
            }
        }
        if urgent {
            inner.urgent.push_back(req);
        } else {
            inner.queue.push(req);
        }
        self.entry.metrics.queued(1);
        if !inner.scheduled {
            inner.scheduled = true;
            Ok(Enqueued::Spawn)
        } else {
            let waker = inner.take_waker();
            drop(inner);
            if let Some(w) = waker {
                w.wake();
            }
            Ok(Enqueued::Queued)
        }
    }

    pub(crate) fn request_deactivation(&self) {
        let mut inner = self.inner.lock();
        inner
            .deactivate
            .get_or_insert(DeactivationReason::Requested);
    }

    pub(crate) fn keep_alive_for(&self, period: Duration) {
        let until = Instant::now() + period;
        let mut inner = self.inner.lock();
        if inner.keep_alive_until().is_none_or(|t| t < until) {
            inner.extra().keep_alive_until = Some(until);
        }
    }

    pub(crate) fn add_timer(&self, handle: AbortHandle) -> bool {
        let mut inner = self.inner.lock();
        if inner.status == Status::Dead {
            return false;
        }
        let timers = &mut inner.extra().timers;
        timers.retain(|t| !t.is_finished());
        timers.push(handle);
        true
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.inner.lock().status == Status::Dead
    }

    /// Whether a turn running here waits on `chain` (a call on that chain
    /// would deadlock here).
    pub(crate) fn waits_on(&self, chain: Option<&Arc<crate::context::ChainFrame>>) -> bool {
        let Some(chain) = chain else { return false };
        let inner = self.inner.lock();
        chain
            .cycle_through(&self.id, |c| inner.running.iter().any(|r| c.is(r.call)))
            .is_some()
    }

    /// How much work is queued or running (for stateless worker placement).
    pub(crate) fn load(&self) -> usize {
        let inner = self.inner.lock();
        inner.queue.len() + inner.urgent.len() + inner.running.len()
    }

    /// Starts deactivation if the activation is idle and old enough (or
    /// `force` is given). Returns `true` if a drain task must be spawned.
    pub(crate) fn try_deactivate(
        &self,
        now: Instant,
        age: Duration,
        force: Option<DeactivationReason>,
    ) -> bool {
        let mut inner = self.inner.lock();
        if inner.status == Status::Dead {
            return false;
        }
        if let Some(reason) = force {
            inner.deactivate = Some(reason);
            if inner.scheduled {
                // The running drain task sees the request after its turn.
                if let Some(w) = inner.take_waker() {
                    w.wake();
                }
                return false;
            }
            inner.scheduled = true;
            return true;
        }
        if inner.scheduled
            || self.entry.options.keep_alive
            || !inner.queue.is_empty()
            || inner.keep_alive_until().is_some_and(|t| t > now)
            || now.saturating_duration_since(inner.last_active) < age
        {
            return false;
        }
        inner.deactivate = Some(DeactivationReason::Idle);
        inner.scheduled = true;
        true
    }

    /// The next thing the drain task does. On `Idle` the grain has been
    /// put back and the task must exit; on `Linger` the mailbox is empty
    /// but the task keeps the grain for one more look.
    ///
    /// `done` is the exclusive turn that just ended (taken off the running
    /// set under the same lock).
    ///
    /// `now`: a clock reading taken just before (the end of the previous
    /// turn, say); without one the clock is read once a call is found.
    fn next_step(
        &self,
        grain: &mut Option<G>,
        linger: bool,
        done: Option<LocalCallId>,
        now: Option<Instant>,
    ) -> Step<G> {
        let mut inner = self.inner.lock();
        let mut now = now;
        if let Some(call) = done
            && let Some(at) = inner.running.iter().position(|r| r.call == call)
        {
            let ended = inner.running.swap_remove(at);
            if !ended.timer {
                // Idle age counts from the end of the last turn: a turn
                // longer than the idle age must not leave its activation
                // collectable the moment it ends.
                let at = *now.get_or_insert_with(Instant::now);
                inner.last_active = inner.last_active.max(at);
            }
        }
        loop {
            if inner.running.is_empty() {
                if let Some(reason) = inner.deactivate {
                    return Step::Deactivate(reason);
                }
            }
            let req = match inner.urgent.pop_front().or_else(|| inner.queue.pop()) {
                Some(r) => r,
                None if linger => return Step::Linger,
                None => {
                    inner.grain = grain.take();
                    inner.scheduled = false;
                    inner.queue.release();
                    if inner.urgent.capacity() > 0 {
                        inner.urgent = VecDeque::new();
                    }
                    return Step::Idle;
                }
            };
            self.entry.metrics.queued(-1);
            let now = *now.get_or_insert_with(Instant::now);
            if req.header().deadline <= now {
                // Its caller has given up: do not run stale work.
                let h = req.header();
                let err = Error::Timeout {
                    grain: self.id.clone(),
                    method: h.method.to_owned(),
                    timeout: h.timeout,
                };
                self.entry.metrics.method(h.method).record_error();
                req.fail(err);
                continue;
            }
            if !req.header().timer {
                inner.last_active = now;
            }
            let access = req.access();
            inner.running.push(Running {
                call: req.header().call_id,
                access,
                timer: req.header().timer,
            });
            return match access {
                Access::Exclusive => Step::Exclusive(req, now),
                Access::Shared(_) => Step::Shared(req, now),
            };
        }
    }

    /// Admits every queued call that may interleave with the running
    /// shared turns. Registers `waker` when nothing more can start.
    fn admit_shared(&self, out: &mut Vec<(Req<G>, Instant)>, waker: &Waker) {
        let mut inner = self.inner.lock();
        if inner.deactivate.is_some() {
            return;
        }
        let now = Instant::now();
        loop {
            let from_urgent = inner.urgent.front().is_some();
            let front = match inner.urgent.front().or_else(|| inner.queue.front()) {
                Some(f) => f,
                None => break,
            };
            let expired = front.header().deadline <= now;
            // Exclusive calls wait for the interleaving loop to end: they
            // need `&mut` to the grain, which the shared turns borrow.
            let shared = matches!(front.access(), Access::Shared(_));
            if !expired
                && !(shared
                    && (from_urgent
                        || admissible(front.access(), &inner.running, &self.entry.options, false)))
            {
                break;
            }
            let req = if from_urgent {
                inner.urgent.pop_front()
            } else {
                inner.queue.pop()
            }
            .expect("front exists");
            self.entry.metrics.queued(-1);
            if expired {
                let h = req.header();
                let err = Error::Timeout {
                    grain: self.id.clone(),
                    method: h.method.to_owned(),
                    timeout: h.timeout,
                };
                req.fail(err);
                continue;
            }
            if !req.header().timer {
                inner.last_active = now;
            }
            inner.running.push(Running {
                call: req.header().call_id,
                access: req.access(),
                timer: req.header().timer,
            });
            out.push((req, now));
        }
        let slot = &mut inner.extra().waker;
        match slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    fn turn_done(&self, call: LocalCallId) {
        let mut inner = self.inner.lock();
        if let Some(at) = inner.running.iter().position(|r| r.call == call) {
            let ended = inner.running.swap_remove(at);
            if !ended.timer {
                inner.last_active = inner.last_active.max(Instant::now());
            }
        }
    }

    /// Marks the activation dead and takes what was queued.
    fn bury(&self) -> Vec<Req<G>> {
        let mut inner = self.inner.lock();
        inner.status = Status::Dead;
        inner.scheduled = false;
        inner.grain = None;
        if let Some(extra) = inner.extra.take() {
            for t in extra.timers {
                t.abort();
            }
        }
        let mut out = Vec::with_capacity(inner.urgent.len() + inner.queue.len());
        while let Some(r) = inner.urgent.pop_front().or_else(|| inner.queue.pop()) {
            out.push(r);
        }
        self.entry.metrics.queued(-(out.len() as i64));
        out
    }
}

/// Whether a shared or exclusive call may start next to `running`.
fn admissible(
    access: Access,
    running: &[Running],
    opts: &crate::grain::GrainOptions,
    chain_callback: bool,
) -> bool {
    match access {
        // `&mut self` excludes every other borrow, always-interleave ones too.
        Access::Exclusive => running.is_empty(),
        Access::Shared(il) => {
            if running.iter().any(|r| r.access == Access::Exclusive) {
                return false;
            }
            // Always-interleave turns block nobody.
            let mut others = running
                .iter()
                .filter(|r| r.access != Access::Shared(Interleave::Always))
                .peekable();
            if others.peek().is_none() {
                return true;
            }
            opts.reentrant
                || il == Interleave::Always
                || (chain_callback && opts.call_chain_reentrancy)
                || (il == Interleave::ReadOnly
                    && others.all(|r| r.access == Access::Shared(Interleave::ReadOnly)))
        }
    }
}

enum Step<G: Grain> {
    Idle,
    Linger,
    /// A turn to run, with the time it was taken off the queue.
    Exclusive(Req<G>, Instant),
    Shared(Req<G>, Instant),
    Deactivate(DeactivationReason),
}

/// Spawns the drain task of an activation that `enqueue` or
/// `try_deactivate` found idle.
pub(crate) fn spawn<G: Grain>(act: Arc<Activation<G>>, silo: Silo) {
    tokio::spawn(drain(act, silo, None));
}

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
) -> crate::registry::InlineDrain {
    Box::pin(drain(act, silo, Some(sent)))
}

/// Runs an inline drain on this thread as far as it gets without waiting,
/// for a caller that does not await the reply itself (a transport that
/// queued a remote call and collects its reply later); the rest continues
/// on a task of its own. The same as [`run_inline`] otherwise: the turn
/// runs inside its own call scope, turns stay one at a time and in order.
///
/// Polled with a no-op waker: a drain that returns `Pending` is spawned
/// at once, and its task's first poll registers the task's own waker.
pub(crate) fn run_now(mut run: crate::registry::InlineDrain) {
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
                let end = run_turn(&ctx, req, GrainAccess::Exclusive(g), started).await;
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

/// Runs one turn: filters, span, request context scope, metrics.
/// Returns `None` if a filter rejected the call.
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
) -> Option<TurnEnd> {
    let (req, scope, span, ending) = prepare_turn(ctx, req, started)?;
    let on_end = |error: bool| ending.record(error);
    let on_end: OnEnd<'_> = &on_end;
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
    let ns = ending.elapsed_ns.into_inner();
    if ns != u64::MAX {
        end.ended = started.checked_add(Duration::from_nanos(ns));
    }
    if let Some(p) = &end.panic {
        let method = ending.method;
        tracing::error!(grain = %ctx.activation.id, method, panic = %p, "grain handler panicked; dropping the activation");
    }
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

impl TurnEnding<'_> {
    fn record(&self, error: bool) {
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
    }
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
) -> Option<(Req<G>, CallScope, Option<tracing::Span>, TurnEnding<'a>)> {
    let act = &ctx.activation;
    let silo = &ctx.silo;
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
    let filters = silo.incoming_filters();
    // The turn's own trace context, made now only if filters or a span
    // read it (otherwise on first use, if ever: see `TurnInfo::trace`).
    let eager =
        (!filters.is_empty() || parent.is_some()).then(|| crate::trace::child_of(parent_trace));
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
    // What the filters see again when the turn ends, boxed: most silos
    // have no filters.
    let seen = match eager {
        Some(trace) if !filters.is_empty() => Some(Box::new(Seen {
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

use crate::context::RequestContext;

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
    let mut set: FuturesUnordered<BoxFuture<'_, Option<TurnEnd>>> = FuturesUnordered::new();
    let start = |req: Req<G>, started: Instant| -> BoxFuture<'_, Option<TurnEnd>> {
        let call = req.header().call_id;
        Box::pin(async move {
            let end = run_turn(ctx, req, GrainAccess::Shared(grain), started).await;
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
mod tests {
    use super::*;
    use crate::grain::GrainOptions;

    fn r(access: Access) -> Running {
        Running {
            call: LocalCallId::next(),
            access,
            timer: false,
        }
    }

    #[test]
    fn admission_rules() {
        let plain = GrainOptions::new();
        let ro = Access::Shared(Interleave::ReadOnly);
        let never = Access::Shared(Interleave::Never);
        let always = Access::Shared(Interleave::Always);
        assert!(admissible(Access::Exclusive, &[], &plain, false));
        assert!(!admissible(Access::Exclusive, &[r(always)], &plain, false));
        assert!(!admissible(never, &[r(never)], &plain, false));
        assert!(admissible(
            never,
            &[r(never)],
            &GrainOptions::new().reentrant(),
            false
        ));
        assert!(admissible(ro, &[r(ro)], &plain, false));
        assert!(!admissible(ro, &[r(never)], &plain, false));
        assert!(admissible(always, &[r(never)], &plain, false));
        assert!(admissible(never, &[r(always)], &plain, false));
        assert!(!admissible(always, &[r(Access::Exclusive)], &plain, false));
        assert!(!admissible(never, &[r(never)], &plain, true));
        assert!(admissible(
            never,
            &[r(never)],
            &GrainOptions::new().call_chain_reentrancy(),
            true
        ));
        assert!(!admissible(
            never,
            &[r(Access::Exclusive)],
            &GrainOptions::new().call_chain_reentrancy().reentrant(),
            true
        ));
    }
}

#[cfg(test)]
mod size {
    use super::*;

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
