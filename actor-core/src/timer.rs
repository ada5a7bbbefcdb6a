//! Grain timers: periodic messages to one activation, delivered as turns.
//!
//! The timer task waits for each tick's turn to finish before it sleeps for
//! the next period, so ticks never overlap. It holds only a weak reference
//! to the activation and is aborted when the activation ends.

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tokio::time::{Duration, Instant, sleep};

use crate::activation::{self, Activation, Enqueued};
use crate::context::LocalCallId;
use crate::envelope::CallHeader;
use crate::invoke::{Call, ReplyTo};
use crate::message::{Accepts, Message};
use crate::silo::Silo;

/// Controls a grain timer. Dropping the handle does not stop the timer;
/// [`cancel`](TimerHandle::cancel) does, and so does the end of the
/// activation.
#[derive(Debug, Clone)]
pub struct TimerHandle {
    abort: AbortHandle,
}

impl TimerHandle {
    /// Stops the timer. A tick already queued or running completes.
    pub fn cancel(&self) {
        self.abort.abort();
    }

    /// Whether the timer has stopped (cancelled, one-shot done, or its
    /// activation ended).
    pub fn is_finished(&self) -> bool {
        self.abort.is_finished()
    }
}

pub(crate) fn start<G, M, K>(
    act: &Arc<Activation<G>>,
    silo: &Silo,
    due: Duration,
    period: Duration,
    make: impl Fn() -> M + Send + Sync + 'static,
) -> TimerHandle
where
    G: Accepts<M, K>,
    M: Message<Reply = ()>,
    K: 'static,
{
    let weak = Arc::downgrade(act);
    let silo = silo.clone();
    let task = tokio::spawn(async move {
        sleep(due).await;
        loop {
            let Some(act) = weak.upgrade() else { return };
            let (tx, rx) = oneshot::channel();
            let header = CallHeader {
                call_id: LocalCallId::next(),
                method: M::NAME,
                deadline: Instant::now() + crate::silo::ONE_WAY_LIFETIME,
                timeout: Duration::MAX,
                chain: None,
                context: Default::default(),
                sender: None,
                span: None,
                timer: true,
                // Each tick starts a trace of its own.
                trace: None,
            };
            let req = G::invocation(|| Call {
                header,
                msg: make(),
                reply: ReplyTo::Local(tx),
            });
            match act.enqueue(req) {
                Err(_) => return,
                Ok(Enqueued::Spawn) => activation::spawn(act, silo.clone()),
                Ok(Enqueued::Queued) => drop(act),
            }
            // Wait for the tick's turn before counting the next period.
            let _ = rx.await;
            if period.is_zero() {
                return;
            }
            sleep(period).await;
        }
    });
    let abort = task.abort_handle();
    if !act.add_timer(abort.clone()) {
        abort.abort();
    }
    TimerHandle { abort }
}
