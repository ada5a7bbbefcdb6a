//! The transactional storage contract, and its in-memory provider.
//!
//! A provider keeps two things: one row per transactional state (an
//! opaque payload, compare-and-set on an ETag, so that a stale activation
//! can never overwrite a newer one), and one *outcome* per decided
//! transaction. The outcome is first-writer-wins: the manager's commit
//! record and a participant's "give up, abort" race through the same
//! insert-if-absent, so exactly one of them decides, whatever dies when.
//! The manager's commit record is written in the same atomic step as the
//! manager's own state.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::id::TxId;

/// A boxed, sendable future, as the object-safe methods of
/// [`TransactionalStorage`] return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a transaction ended, as its outcome record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// Committed: every participant applies its writes.
    Committed,
    /// Aborted: no participant applies any.
    Aborted,
}

impl Outcome {
    /// `committed` or `aborted`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::Aborted => "aborted",
        }
    }

    /// The outcome stored as `s`.
    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "committed" => Some(Outcome::Committed),
            "aborted" => Some(Outcome::Aborted),
            _ => None,
        }
    }
}

/// One stored state row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    /// Its ETag (changes on every write).
    pub etag: String,
    /// The payload (the crate stores its state record as JSON).
    pub payload: Vec<u8>,
}

/// Why [`TransactionalStorage::store`] refused a write. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The row's ETag is not the expected one.
    Stale,
    /// The commit record could not be written: the transaction already
    /// has this outcome.
    Decided(Outcome),
}

/// Storage for transactional state and transaction outcomes. All silos of
/// a cluster must use one (shared) store: participants read the
/// manager's outcome records from it.
pub trait TransactionalStorage: Send + Sync + 'static {
    /// The provider and its address, for errors and logs.
    fn describe(&self) -> String;

    /// The row of `state`, if any.
    fn load<'a>(&'a self, state: &'a str) -> BoxFuture<'a, Result<Option<StoredRow>>>;

    /// Writes the row of `state` if its ETag is `expected` (`None`: no row
    /// yet), and, if `commit` is given, records that transaction as
    /// committed in the same atomic step (refused if it already has an
    /// outcome). Returns the new ETag.
    fn store<'a>(
        &'a self,
        state: &'a str,
        expected: Option<&'a str>,
        payload: &'a [u8],
        commit: Option<TxId>,
    ) -> BoxFuture<'a, Result<std::result::Result<String, Refused>>>;

    /// Records `outcome` for `tx` unless it already has one; returns the
    /// outcome that holds (the first one written).
    fn decide(&self, tx: TxId, outcome: Outcome) -> BoxFuture<'_, Result<Outcome>>;

    /// The recorded outcome of `tx`, if decided.
    fn outcome(&self, tx: TxId) -> BoxFuture<'_, Result<Option<Outcome>>>;

    /// Deletes the outcome record of `tx`, once every participant has
    /// applied it durably.
    fn forget(&self, tx: TxId) -> BoxFuture<'_, Result<()>>;
}

pub(crate) fn new_etag() -> String {
    format!("{:032x}", crate::id::random_u128())
}

#[derive(Default)]
struct Tables {
    rows: HashMap<String, StoredRow>,
    outcomes: HashMap<TxId, Outcome>,
}

/// Transactional storage in process memory, shared by its clones: for
/// tests, examples and simulations (every silo of an in-process cluster
/// holds a clone). Lost with the process.
#[derive(Clone, Default)]
pub struct MemoryTxStorage {
    tables: Arc<Mutex<Tables>>,
}

impl std::fmt::Debug for MemoryTxStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.tables.lock();
        f.debug_struct("MemoryTxStorage")
            .field("rows", &t.rows.len())
            .field("outcomes", &t.outcomes.len())
            .finish()
    }
}

impl MemoryTxStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many outcome records are kept (decided transactions not yet
    /// forgotten).
    pub fn outcome_count(&self) -> usize {
        self.tables.lock().outcomes.len()
    }
}

impl TransactionalStorage for MemoryTxStorage {
    fn describe(&self) -> String {
        "memory".to_owned()
    }

    fn load<'a>(&'a self, state: &'a str) -> BoxFuture<'a, Result<Option<StoredRow>>> {
        let row = self.tables.lock().rows.get(state).cloned();
        Box::pin(async move { Ok(row) })
    }

    fn store<'a>(
        &'a self,
        state: &'a str,
        expected: Option<&'a str>,
        payload: &'a [u8],
        commit: Option<TxId>,
    ) -> BoxFuture<'a, Result<std::result::Result<String, Refused>>> {
        let mut t = self.tables.lock();
        let current = t.rows.get(state).map(|r| r.etag.as_str());
        let result = if current != expected {
            Err(Refused::Stale)
        } else if let Some(o) = commit.and_then(|tx| t.outcomes.get(&tx)) {
            Err(Refused::Decided(*o))
        } else {
            if let Some(tx) = commit {
                t.outcomes.insert(tx, Outcome::Committed);
            }
            let etag = new_etag();
            t.rows.insert(
                state.to_owned(),
                StoredRow {
                    etag: etag.clone(),
                    payload: payload.to_vec(),
                },
            );
            Ok(etag)
        };
        Box::pin(async move { Ok(result) })
    }

    fn decide(&self, tx: TxId, outcome: Outcome) -> BoxFuture<'_, Result<Outcome>> {
        let o = *self.tables.lock().outcomes.entry(tx).or_insert(outcome);
        Box::pin(async move { Ok(o) })
    }

    fn outcome(&self, tx: TxId) -> BoxFuture<'_, Result<Option<Outcome>>> {
        let o = self.tables.lock().outcomes.get(&tx).copied();
        Box::pin(async move { Ok(o) })
    }

    fn forget(&self, tx: TxId) -> BoxFuture<'_, Result<()>> {
        self.tables.lock().outcomes.remove(&tx);
        Box::pin(async move { Ok(()) })
    }
}

impl<S: TransactionalStorage + ?Sized> TransactionalStorage for Arc<S> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn load<'a>(&'a self, state: &'a str) -> BoxFuture<'a, Result<Option<StoredRow>>> {
        (**self).load(state)
    }
    fn store<'a>(
        &'a self,
        state: &'a str,
        expected: Option<&'a str>,
        payload: &'a [u8],
        commit: Option<TxId>,
    ) -> BoxFuture<'a, Result<std::result::Result<String, Refused>>> {
        (**self).store(state, expected, payload, commit)
    }
    fn decide(&self, tx: TxId, outcome: Outcome) -> BoxFuture<'_, Result<Outcome>> {
        (**self).decide(tx, outcome)
    }
    fn outcome(&self, tx: TxId) -> BoxFuture<'_, Result<Option<Outcome>>> {
        (**self).outcome(tx)
    }
    fn forget(&self, tx: TxId) -> BoxFuture<'_, Result<()>> {
        (**self).forget(tx)
    }
}
