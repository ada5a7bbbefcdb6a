//! Transaction identities and what travels with a transaction's calls.
//!
//! A transaction's *priority* is its start time (wall-clock microseconds)
//! with a random tie-break: smaller is older. Retries keep the priority
//! of the first attempt, so a transaction that keeps losing conflicts
//! grows old and then wins them (wait-die never starves anyone).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A transaction's id: random, unique across the cluster.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TxId(pub uuid::Uuid);

impl TxId {
    /// The nil id, for errors made outside any transaction.
    pub const NIL: TxId = TxId(uuid::Uuid::nil());

    /// A fresh random id.
    pub fn new() -> TxId {
        TxId(uuid::Builder::from_random_bytes(random_u128().to_le_bytes()).into_uuid())
    }
}

impl Default for TxId {
    fn default() -> Self {
        TxId::new()
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.simple(), f)
    }
}

impl fmt::Debug for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tx:{}", self.0.simple())
    }
}

/// Age order of transactions: the smaller is older.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Priority {
    /// Start time, microseconds since the Unix epoch.
    pub micros: u64,
    /// Random tie-break.
    pub tie: u64,
}

impl Priority {
    /// A priority for a transaction starting now.
    pub fn now() -> Priority {
        let r = random_u128();
        let (hi, lo) = ((r >> 64) as u64, r as u64);
        Priority {
            micros: now_millis().saturating_mul(1000) as u64 + (hi % 1000),
            tie: lo,
        }
    }

    /// Whether `self` is older than `other`.
    pub fn is_older_than(self, other: Priority) -> bool {
        self < other
    }
}

/// What a transaction's calls carry: its id, its age, and its deadlines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxInfo {
    /// The id.
    pub id: TxId,
    /// Its age, for wait-die.
    pub priority: Priority,
    /// When the transaction must have committed, in milliseconds since the
    /// Unix epoch; past it, its unprepared locks may be broken.
    pub deadline_ms: i64,
    /// How long one lock request may wait, in milliseconds.
    pub lock_timeout_ms: u64,
}

impl TxInfo {
    /// A new transaction starting now.
    pub fn new(priority: Priority, timeout: Duration, lock_timeout: Duration) -> TxInfo {
        TxInfo {
            id: TxId::new(),
            priority,
            deadline_ms: now_millis() + timeout.as_millis() as i64,
            lock_timeout_ms: lock_timeout.as_millis() as u64,
        }
    }

    /// Whether its deadline has passed.
    pub fn expired(&self) -> bool {
        now_millis() > self.deadline_ms
    }

    /// The time left until the deadline (zero if past).
    pub fn remaining(&self) -> Duration {
        Duration::from_millis((self.deadline_ms - now_millis()).max(0) as u64)
    }

    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).expect("TxInfo encodes as JSON")
    }

    pub(crate) fn decode(s: &str) -> Option<TxInfo> {
        serde_json::from_str(s).ok()
    }
}

/// Wall-clock milliseconds since the Unix epoch (the workspace's one clock
/// helper, in actor-core), or the simulated clock on a thread that runs a
/// deterministic simulation ([`__private::simulate_on_this_thread`](crate::__private::simulate_on_this_thread)).
pub fn now_millis() -> i64 {
    SIMULATED
        .with_borrow(|s| s.as_ref().and_then(|s| (s.clock)()))
        .unwrap_or_else(actor_core::__private::now_millis)
}

/// 128 random bits: from the OS, or from the simulation's seeded
/// generator on a thread that runs one (so that ids, ages and ETags
/// replay with the seed).
pub(crate) fn random_u128() -> u128 {
    SIMULATED
        .with_borrow_mut(|s| {
            s.as_mut().map(|s| {
                let mut next = || {
                    // splitmix64
                    s.rng = s.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    let mut z = s.rng;
                    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                    z ^ (z >> 31)
                };
                (u128::from(next()) << 64) | u128::from(next())
            })
        })
        .unwrap_or_else(|| uuid::Uuid::new_v4().as_u128())
}

/// What a simulation thread reads instead of the wall clock and the OS.
pub(crate) struct Simulated {
    pub(crate) clock: fn() -> Option<i64>,
    pub(crate) rng: u64,
}

thread_local! {
    pub(crate) static SIMULATED: std::cell::RefCell<Option<Simulated>> =
        const { std::cell::RefCell::new(None) };
}

/// How a transaction used one transactional state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Access {
    /// Read only (a read lock).
    Read,
    /// Written (a write lock).
    Write,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_is_smaller_and_info_round_trips() {
        let a = Priority { micros: 1, tie: 9 };
        let b = Priority { micros: 2, tie: 0 };
        assert!(a.is_older_than(b) && !b.is_older_than(a));
        let info = TxInfo::new(
            Priority::now(),
            Duration::from_secs(5),
            Duration::from_secs(1),
        );
        assert_eq!(TxInfo::decode(&info.encode()), Some(info.clone()));
        assert!(!info.expired());
        assert_eq!(TxInfo::decode("not json"), None);
    }
}
