//! The membership table: which silos exist, in which state, and who
//! suspects whom. The shared source of truth of a cluster (Orleans'
//! membership protocol).
//!
//! Every change that matters (join, status change, suspicion vote) is a
//! compare-and-set on the table version and on the row's etag, so of two
//! concurrent writers exactly one wins and the loser re-reads. Heartbeats
//! (`update_i_am_alive`) touch only their own row and do not bump the
//! version. A table that cannot be reached gives an error, never a false
//! success.
//!
//! A silo's membership lease rests on two rules every implementation
//! keeps: a heartbeat is refused once the silo is declared dead (so a dead
//! silo can renew nothing), and a row's heartbeat stamp only grows (a
//! heartbeat always moves it forward; an update never moves it back), so
//! that a reader who sees a stamp for the first time knows every
//! heartbeat before it has committed (see `cluster.rs`).

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// A silo's identity in the table: its endpoint and generation. A silo
/// that restarts on the same endpoint gets a new generation, so a dead
/// incarnation is never confused with a live one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SiloAddress {
    /// `host:port` of the silo-to-silo endpoint.
    pub endpoint: String,
    /// Distinguishes incarnations on one endpoint; larger is newer.
    pub generation: i64,
}

impl SiloAddress {
    /// An address with an explicit generation.
    pub fn new(endpoint: impl Into<String>, generation: i64) -> Self {
        SiloAddress {
            endpoint: endpoint.into(),
            generation,
        }
    }

    /// An address whose generation is the current time in milliseconds
    /// (what a starting silo uses).
    pub fn starting_now(endpoint: impl Into<String>) -> Self {
        SiloAddress::new(endpoint, now_millis())
    }
}

impl fmt::Display for SiloAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.endpoint, self.generation)
    }
}

/// Where a silo is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SiloStatus {
    /// Registered, not yet serving.
    Joining,
    /// Serving.
    Active,
    /// Leaving gracefully.
    ShuttingDown,
    /// Declared dead (by itself or by enough votes); never comes back.
    Dead,
}

impl SiloStatus {
    fn as_str(self) -> &'static str {
        match self {
            SiloStatus::Joining => "joining",
            SiloStatus::Active => "active",
            SiloStatus::ShuttingDown => "shutting_down",
            SiloStatus::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "joining" => SiloStatus::Joining,
            "active" => SiloStatus::Active,
            "shutting_down" => SiloStatus::ShuttingDown,
            "dead" => SiloStatus::Dead,
            _ => return None,
        })
    }
}

/// One vote that a silo is not answering probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspicion {
    /// The silo that voted.
    pub by: SiloAddress,
    /// When, in milliseconds since the Unix epoch.
    pub at_millis: i64,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipEntry {
    /// The silo.
    pub silo: SiloAddress,
    /// A human name (for logs and the dashboard).
    pub name: String,
    /// Its state.
    pub status: SiloStatus,
    /// When it started, in milliseconds since the Unix epoch.
    pub start_millis: i64,
    /// Its last heartbeat, in milliseconds since the Unix epoch.
    pub i_am_alive_millis: i64,
    /// Votes that it is unresponsive.
    pub suspicions: Vec<Suspicion>,
    /// The endpoint external clients connect to, if it serves them.
    pub gateway: Option<String>,
}

impl MembershipEntry {
    /// A joining entry for `silo`, started and alive now.
    pub fn joining(silo: SiloAddress, name: impl Into<String>) -> Self {
        let now = now_millis();
        MembershipEntry {
            silo,
            name: name.into(),
            status: SiloStatus::Joining,
            start_millis: now,
            i_am_alive_millis: now,
            suspicions: Vec::new(),
            gateway: None,
        }
    }

    /// The votes cast within `window` before `now_millis`.
    pub fn fresh_suspicions(&self, now_millis: i64, window: Duration) -> usize {
        // Stamps come from the table, which anyone with its credentials
        // can write: no arithmetic on them may overflow.
        let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        self.suspicions
            .iter()
            .filter(|s| now_millis.saturating_sub(s.at_millis) <= window)
            .count()
    }
}

/// The version of the whole table; every successful insert or update
/// bumps it by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableVersion(pub i64);

/// The version of one row, for compare-and-set on updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RowEtag(pub i64);

/// A consistent read of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipSnapshot {
    /// The table version this read saw.
    pub version: TableVersion,
    /// Every row, with its etag, sorted by silo address.
    pub entries: Vec<(MembershipEntry, RowEtag)>,
}

impl MembershipSnapshot {
    /// The row of `silo`, if any.
    pub fn entry(&self, silo: &SiloAddress) -> Option<&(MembershipEntry, RowEtag)> {
        self.entries.iter().find(|(e, _)| &e.silo == silo)
    }

    /// The silos with the given status.
    pub fn with_status(&self, status: SiloStatus) -> impl Iterator<Item = &MembershipEntry> {
        self.entries
            .iter()
            .map(|(e, _)| e)
            .filter(move |e| e.status == status)
    }
}

/// Storage of the membership table, one per cluster id.
///
/// Implementations: [`InMemoryMembership`](crate::InMemoryMembership)
/// (tests, simulation), [`SqlMembership`](crate::SqlMembership) on SQLite
/// (a file several local processes can share) and PostgreSQL.
pub trait MembershipTable: Send + Sync + 'static {
    /// Reads every row and the table version in one consistent read.
    fn read_all(&self) -> BoxFuture<'_, Result<MembershipSnapshot>>;

    /// Inserts a row if the table is still at `expected` and the silo has
    /// no row yet. `Ok(false)` when another writer got there first.
    fn insert(&self, entry: MembershipEntry, expected: TableVersion)
    -> BoxFuture<'_, Result<bool>>;

    /// Replaces a row if it is still at `etag` and the table at
    /// `expected`. `Ok(false)` when either moved on (re-read and retry).
    /// The row's heartbeat stamp keeps the larger of the stored and the
    /// given one: heartbeats do not move the etag, so a writer may hold
    /// an older stamp than the row has by now.
    fn update(
        &self,
        entry: MembershipEntry,
        etag: RowEtag,
        expected: TableVersion,
    ) -> BoxFuture<'_, Result<bool>>;

    /// Records a heartbeat of `silo` (no version change): its stamp
    /// becomes `at_millis`, or one more than the stored stamp if that is
    /// not smaller, so that every heartbeat moves it forward. `Ok(false)`
    /// if the silo has no row or is declared dead: a dead silo renews
    /// nothing (its membership lease rests on this).
    fn update_i_am_alive(&self, silo: &SiloAddress, at_millis: i64) -> BoxFuture<'_, Result<bool>>;

    /// Deletes dead rows whose last heartbeat is older than `before_millis`.
    /// Returns how many went.
    fn cleanup_defunct(&self, before_millis: i64) -> BoxFuture<'_, Result<u64>>;
}

/// Milliseconds since the Unix epoch (actor-core's one helper).
pub use actor_core::__private::now_millis;

pub(crate) fn status_to_str(s: SiloStatus) -> &'static str {
    s.as_str()
}

pub(crate) fn status_from_str(s: &str) -> Option<SiloStatus> {
    SiloStatus::parse(s)
}
