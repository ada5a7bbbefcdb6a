//! One activation of a grain: its mailbox, its turn scheduler and its
//! lifecycle (activate, run turns, deactivate, drop after a panic).
//!
//! An idle activation is a small struct in the silo's table: no task, no
//! channel. The first message to an idle activation spawns a drain task that
//! owns the grain while it runs turns and exits when the mailbox is empty.
//! All scheduling decisions are taken under the activation's one mutex, so a
//! sender sees a consistent picture of what runs (which is what deadlock
//! detection needs).
//!
//! This file holds that scheduling state (mailbox, running turns, what runs
//! next); the drain that runs the turns is in `activation/turn.rs`.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::task::Waker;

use parking_lot::Mutex;
use smallvec::SmallVec;
use tokio::task::AbortHandle;
use tokio::time::{Duration, Instant};

use crate::context::LocalCallId;
use crate::error::Error;
use crate::grain::{DeactivationReason, Grain};
use crate::id::GrainId;
use crate::invoke::{Access, Invoke};
use crate::message::Interleave;
use crate::registry::TypeEntry;

mod turn;

pub(crate) use turn::{InlineDrain, inline_drain, run_inline, run_now, spawn};

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
