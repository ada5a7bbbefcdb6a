//! The calls a link waits on and their deadlines, shared by the link's
//! handle, its reply reader and its sweeper task: one sweeper per link
//! fails calls whose deadline passes (no timer per call).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::{Notify, oneshot};
// Tokio's clock, not the standard one: a simulator (turmoil) controls it.
use tokio::time::Instant;

use super::pb::{Envelope, Kind};

/// What a waiting call learns: its reply (or error), or that its
/// deadline passed first.
pub(super) enum Outcome {
    Done(actor_core::Result<Vec<u8>>),
    Expired,
}

/// A call waiting for its reply, with its deadline (see [`Shared::micros`]).
pub(super) struct Waiter {
    pub(super) tx: oneshot::Sender<Outcome>,
    pub(super) deadline: u64,
}

/// The state of one link that its handle, its reply reader and its
/// deadline sweeper share.
///
/// Deadlines cost no timer per call: each waiting call records its deadline
/// in `pending`, and one sweeper task per link sleeps until the earliest
/// deadline (`armed`), then fails the calls whose deadline has passed with
/// a timeout and sleeps again until the next one. A call whose deadline is
/// earlier than the armed one wakes the sweeper (`wake`) to re-arm.
pub(super) struct Shared {
    pub(super) endpoint: String,
    /// The calls waiting for a reply, by the number this link gave their
    /// request (see `Link::start`): only what was sent on this stream.
    pub(super) pending: DashMap<u64, Waiter, foldhash::fast::RandomState>,
    /// The number of the next request sent on this link.
    pub(super) numbers: AtomicU64,
    pub(super) alive: AtomicBool,
    /// The deadline the sweeper sleeps until, `u64::MAX` for none.
    pub(super) armed: AtomicU64,
    pub(super) wake: Notify,
    /// Time zero of the deadlines (tokio's clock: a simulator drives it).
    pub(super) epoch: Instant,
    /// Envelopes the peer should not have sent on the reply stream, logged
    /// at most once per period.
    pub(super) strays: super::log_limit::LogLimit,
}

impl Shared {
    /// `at` as microseconds since the link's epoch.
    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    /// The deadline of a call sent now with `timeout` left.
    pub(super) fn deadline(&self, timeout: Duration) -> u64 {
        self.micros(Instant::now())
            .saturating_add(u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX))
            .min(u64::MAX - 1)
    }

    /// Makes sure the sweeper wakes by `deadline` (a waiter with it is
    /// already in `pending`).
    pub(super) fn arm(&self, deadline: u64) {
        // The common case (every call has the same timeout, so a new
        // deadline is later than the armed one) is one load.
        if deadline < self.armed.load(Ordering::Relaxed)
            && deadline < self.armed.fetch_min(deadline, Ordering::SeqCst)
        {
            self.wake.notify_one();
        }
    }

    /// Fails the calls whose deadline has passed and re-arms for the
    /// earliest remaining one.
    fn expire(&self) {
        // Disarm first: a call registered during the scan below that the
        // scan misses then arms again itself.
        self.armed.store(u64::MAX, Ordering::SeqCst);
        let now = self.micros(Instant::now());
        let mut next = u64::MAX;
        let mut expired = Vec::new();
        for w in self.pending.iter() {
            if w.deadline <= now {
                expired.push(*w.key());
            } else {
                next = next.min(w.deadline);
            }
        }
        // In call order, not hash order: runs replay under a simulator.
        expired.sort_unstable();
        for id in expired {
            if let Some((_, w)) = self.pending.remove(&id) {
                let _ = w.tx.send(Outcome::Expired);
            }
        }
        self.armed.fetch_min(next, Ordering::SeqCst);
    }

    /// Takes the link out of use and fails every waiting call with `error`,
    /// in call order.
    pub(super) fn fail_all(&self, error: impl Fn() -> actor_core::Error) {
        self.alive.store(false, Ordering::SeqCst);
        let mut ids: Vec<u64> = self.pending.iter().map(|e| *e.key()).collect();
        // In call order, not hash order: runs replay under a simulator.
        ids.sort_unstable();
        for id in ids {
            if let Some((_, w)) = self.pending.remove(&id) {
                let _ = w.tx.send(Outcome::Done(Err(error())));
            }
        }
        // The sweeper ends.
        self.wake.notify_one();
    }

    /// Hands a reply envelope to its waiting call. A reply can only
    /// complete a request this link sent and still waits for: its number
    /// was made here. Anything else the peer sends (a number never sent
    /// or already answered, an envelope that is not a reply) completes
    /// nothing.
    pub(super) fn complete(&self, env: Envelope) {
        let reply = match env.kind() {
            Kind::Reply => Ok(env.payload),
            Kind::Error => Err(actor_core::__private::codec::decode::<actor_core::Error>(
                &env.payload,
            )
            .unwrap_or_else(|e| e)),
            other => {
                if let Some(count) = self.strays.note() {
                    tracing::warn!(endpoint = %self.endpoint, kind = ?other, envelopes = count, "ignored non-reply envelopes on a link's reply stream (at most one line every 10 s; `envelopes` counts them since the last)");
                }
                return;
            }
        };
        let Some((_, w)) = self.pending.remove(&env.call_id) else {
            // The caller gave up (timeout) before the reply came, or the
            // peer answered a request it was never sent.
            return;
        };
        let _ = w.tx.send(Outcome::Done(reply));
    }
}

/// Fails the link's calls at their deadlines until the link is down.
pub(super) async fn sweep(shared: Arc<Shared>) {
    loop {
        if !shared.alive.load(Ordering::SeqCst) {
            return;
        }
        let armed = shared.armed.load(Ordering::SeqCst);
        if armed == u64::MAX {
            shared.wake.notified().await;
            continue;
        }
        let at = shared.epoch + Duration::from_micros(armed);
        tokio::select! {
            // In a fixed order: runs replay under a simulator.
            biased;
            () = tokio::time::sleep_until(at) => shared.expire(),
            // Re-armed earlier (or the link went down): look again.
            () = shared.wake.notified() => {}
        }
    }
}
