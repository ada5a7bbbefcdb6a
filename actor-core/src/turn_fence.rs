//! A deadline after which a silo runs no more turns, until it is moved on:
//! how a cluster silo fences itself by its own lease clock.

use std::sync::atomic::{AtomicU64, Ordering};

// Tokio's clock, not the standard one: a simulator (turmoil) controls it.
use tokio::time::Instant;

/// Turns may start only before a deadline, which its owner moves forward
/// (a cluster silo: each time it renews its membership lease). A turn
/// whose start is past the deadline does not run: its caller gets
/// [`Error::NotHere`](crate::Error::NotHere) (the call did not run; a
/// cluster router looks the grain up again). This is what keeps a silo
/// that was paused (a stalled VM, SIGSTOP) past its lease from running
/// the calls queued in its mailboxes and links when it resumes, before
/// its membership agent has read that it was declared dead: by then
/// another silo may run the same grains.
///
/// A turn that started in time but is still waiting (on a call, a timer,
/// storage) when the deadline passes is cut off there: its future is
/// dropped where it waited, its caller gets
/// [`Error::SiloUnavailable`](crate::Error::SiloUnavailable) (the turn
/// may have done part of its work), and its activation is dropped without
/// `on_deactivate`, as after a panic (its state may be half-updated). A
/// deadline moved forward while a turn waits (the lease renewed) lets it
/// go on. A turn busy in synchronous code cannot be cut off before it
/// next waits; a storage provider that checks the fence before each write
/// (actor-persistence's state does) refuses that turn's writes.
///
/// A fresh fence has no deadline (turns run) until
/// [`close_after`](TurnFence::close_after) is first called. Give it to a
/// silo with [`SiloBuilder::turn_fence`](crate::SiloBuilder::turn_fence).
#[derive(Debug)]
pub struct TurnFence {
    base: Instant,
    /// Nanoseconds after `base` from which turns are refused; `u64::MAX`:
    /// never.
    until: AtomicU64,
}

impl Default for TurnFence {
    fn default() -> Self {
        TurnFence::new()
    }
}

impl TurnFence {
    /// A fence without a deadline.
    pub fn new() -> Self {
        TurnFence {
            base: Instant::now(),
            until: AtomicU64::new(u64::MAX),
        }
    }

    /// Refuses turns that start at or after `deadline` (moving it either
    /// way: the owner decides).
    pub fn close_after(&self, deadline: Instant) {
        let nanos = deadline.saturating_duration_since(self.base).as_nanos();
        self.until.store(
            u64::try_from(nanos).unwrap_or(u64::MAX - 1),
            Ordering::Release,
        );
    }

    /// The deadline, if one was set: turns starting at or after it are
    /// refused, and turns still running then are cut off.
    pub fn deadline(&self) -> Option<Instant> {
        match self.until.load(Ordering::Acquire) {
            u64::MAX => None,
            nanos => Some(self.base + std::time::Duration::from_nanos(nanos)),
        }
    }

    /// Whether a turn starting at `at` may run.
    #[inline]
    pub fn allows(&self, at: Instant) -> bool {
        let until = self.until.load(Ordering::Acquire);
        until == u64::MAX || (at.saturating_duration_since(self.base).as_nanos() as u64) < until
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_fence_allows_turns_before_its_deadline_only() {
        let f = TurnFence::new();
        let now = Instant::now();
        assert!(f.allows(now + Duration::from_secs(3600)), "no deadline yet");
        f.close_after(now + Duration::from_secs(5));
        assert!(f.allows(now));
        assert!(f.allows(now + Duration::from_millis(4_999)));
        assert!(!f.allows(now + Duration::from_secs(5)));
        assert!(!f.allows(now + Duration::from_secs(60)));
        f.close_after(now + Duration::from_secs(120));
        assert!(f.allows(now + Duration::from_secs(60)), "moved on");
        f.close_after(now);
        assert!(!f.allows(now), "and back");
    }
}
