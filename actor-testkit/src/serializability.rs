//! A serializability checker over recorded transaction histories, in the
//! manner of Adya's direct serialization graph (and of Orleans'
//! transaction test kit): each committed transaction is a node; an edge
//! goes from T1 to T2 when T2 read what T1 wrote (wr), overwrote what T1
//! wrote (ww), or overwrote what T1 read (rw, an anti-dependency). The
//! history is serializable iff no committed transaction read a version no
//! committed transaction wrote (dirty read, G1a) and the graph has no
//! cycle (G1c, G2: write skew, lost update).
//!
//! Versions are named by the transaction that wrote them (`None` is a
//! key's initial version); each write names the version it replaced, which
//! gives each key its version order.

use std::collections::HashMap;
use std::fmt;

use parking_lot::Mutex;

/// What one transaction did, as a test recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRecord {
    /// The transaction's id; it is also the name of every version it
    /// wrote.
    pub id: String,
    /// Whether it committed (aborted transactions must leave no trace).
    pub committed: bool,
    /// `(key, version read)`: the version is the id of the transaction
    /// that wrote it, `None` for the initial value.
    pub reads: Vec<(String, Option<String>)>,
    /// `(key, version replaced)`: a write creates version `id` of `key`.
    pub writes: Vec<(String, Option<String>)>,
}

impl TxRecord {
    /// A record of transaction `id`, with nothing read or written yet.
    pub fn new(id: impl Into<String>, committed: bool) -> Self {
        TxRecord {
            id: id.into(),
            committed,
            reads: Vec::new(),
            writes: Vec::new(),
        }
    }

    /// Adds a read of `version` of `key`.
    pub fn read(mut self, key: impl Into<String>, version: Option<&str>) -> Self {
        self.reads.push((key.into(), version.map(str::to_owned)));
        self
    }

    /// Adds a write of `key` that replaced `replaced`.
    pub fn write(mut self, key: impl Into<String>, replaced: Option<&str>) -> Self {
        self.writes.push((key.into(), replaced.map(str::to_owned)));
        self
    }
}

/// The kind of a dependency edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dependency {
    /// The second read what the first wrote.
    WriteRead,
    /// The second overwrote what the first wrote.
    WriteWrite,
    /// The second overwrote what the first read (anti-dependency).
    ReadWrite,
}

/// Why a history is not serializable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SerializabilityViolation {
    /// A committed transaction read a version that no committed
    /// transaction wrote (written by an aborted one, or never).
    DirtyRead {
        /// The reader.
        reader: String,
        /// The key.
        key: String,
        /// The version read.
        version: String,
    },
    /// Two committed transactions both replaced the same version of a key:
    /// one of the two updates is lost.
    LostUpdate {
        /// The key.
        key: String,
        /// The version both replaced (`None`: the initial one).
        version: Option<String>,
        /// The two writers.
        writers: (String, String),
    },
    /// A cycle of dependencies among committed transactions, as
    /// `(from, kind, to)` edges in order.
    Cycle(Vec<(String, Dependency, String)>),
}

impl fmt::Display for SerializabilityViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SerializabilityViolation::DirtyRead {
                reader,
                key,
                version,
            } => write!(
                f,
                "dirty read: {reader} read version {version} of {key}, which no committed transaction wrote"
            ),
            SerializabilityViolation::LostUpdate {
                key,
                version,
                writers,
            } => write!(
                f,
                "lost update: {} and {} both replaced version {} of {key}",
                writers.0,
                writers.1,
                version.as_deref().unwrap_or("<initial>")
            ),
            SerializabilityViolation::Cycle(edges) => {
                write!(f, "dependency cycle:")?;
                for (a, d, b) in edges {
                    write!(f, " {a} -{d:?}-> {b};")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for SerializabilityViolation {}

/// A history of transactions, recorded concurrently by a test (share it
/// in an `Arc`), then [`check`](Self::check)ed.
#[derive(Debug, Default)]
pub struct TransactionHistory {
    txs: Mutex<Vec<TxRecord>>,
}

impl TransactionHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one transaction.
    pub fn record(&self, tx: TxRecord) {
        self.txs.lock().push(tx);
    }

    /// How many transactions were recorded, and how many of them committed.
    pub fn counts(&self) -> (usize, usize) {
        let txs = self.txs.lock();
        (txs.len(), txs.iter().filter(|t| t.committed).count())
    }

    /// Whether the committed transactions are serializable.
    pub fn check(&self) -> Result<(), SerializabilityViolation> {
        check(&self.txs.lock())
    }
}

/// Checks `txs` (see the module docs).
pub fn check(txs: &[TxRecord]) -> Result<(), SerializabilityViolation> {
    let committed: Vec<&TxRecord> = txs.iter().filter(|t| t.committed).collect();
    let index: HashMap<&str, usize> = committed
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();

    // Version order: which committed write replaced each version.
    let mut successor: HashMap<(&str, Option<&str>), usize> = HashMap::new();
    let mut wrote: HashMap<(&str, &str), ()> = HashMap::new();
    for (i, t) in committed.iter().enumerate() {
        for (key, replaced) in &t.writes {
            wrote.insert((key.as_str(), t.id.as_str()), ());
            if let Some(&other) = successor.get(&(key.as_str(), replaced.as_deref()))
                && other != i
            {
                return Err(SerializabilityViolation::LostUpdate {
                    key: key.clone(),
                    version: replaced.clone(),
                    writers: (committed[other].id.clone(), t.id.clone()),
                });
            }
            successor.insert((key.as_str(), replaced.as_deref()), i);
        }
    }

    let mut edges: Vec<Vec<(usize, Dependency)>> = vec![Vec::new(); committed.len()];
    for (i, t) in committed.iter().enumerate() {
        for (_, replaced) in &t.writes {
            if let Some(w) = replaced.as_deref().and_then(|v| index.get(v))
                && *w != i
            {
                edges[*w].push((i, Dependency::WriteWrite));
            }
        }
        for (key, version) in &t.reads {
            if let Some(v) = version.as_deref() {
                if v == t.id {
                    continue; // its own write
                }
                match index.get(v) {
                    Some(&w) if wrote.contains_key(&(key.as_str(), v)) => {
                        edges[w].push((i, Dependency::WriteRead));
                    }
                    _ => {
                        return Err(SerializabilityViolation::DirtyRead {
                            reader: t.id.clone(),
                            key: key.clone(),
                            version: v.to_owned(),
                        });
                    }
                }
            }
            if let Some(&u) = successor.get(&(key.as_str(), version.as_deref()))
                && u != i
            {
                edges[i].push((u, Dependency::ReadWrite));
            }
        }
    }

    // Depth-first search for a back edge.
    #[derive(Clone, Copy, PartialEq)]
    enum Color {
        White,
        Grey,
        Black,
    }
    let mut color = vec![Color::White; committed.len()];
    for start in 0..committed.len() {
        if color[start] != Color::White {
            continue;
        }
        // (node, next edge to look at), and the edge kinds taken.
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        let mut kinds: Vec<Dependency> = Vec::new();
        color[start] = Color::Grey;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&(to, kind)) = edges[node].get(*next) {
                *next += 1;
                match color[to] {
                    Color::White => {
                        color[to] = Color::Grey;
                        stack.push((to, 0));
                        kinds.push(kind);
                    }
                    Color::Grey => {
                        let from = stack
                            .iter()
                            .position(|(n, _)| *n == to)
                            .expect("grey is on the stack");
                        let mut cycle = Vec::new();
                        for j in from..stack.len() {
                            let a = stack[j].0;
                            let (b, k) = if j + 1 < stack.len() {
                                (stack[j + 1].0, kinds[j])
                            } else {
                                (to, kind)
                            };
                            cycle.push((committed[a].id.clone(), k, committed[b].id.clone()));
                        }
                        return Err(SerializabilityViolation::Cycle(cycle));
                    }
                    Color::Black => {}
                }
            } else {
                color[node] = Color::Black;
                stack.pop();
                kinds.pop();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_serial_history_is_clean() {
        let h = TransactionHistory::new();
        h.record(TxRecord::new("t1", true).read("x", None).write("x", None));
        h.record(
            TxRecord::new("t2", true)
                .read("x", Some("t1"))
                .write("x", Some("t1")),
        );
        h.record(
            TxRecord::new("t3", true)
                .read("x", Some("t2"))
                .read("y", None),
        );
        h.record(
            TxRecord::new("t4", false)
                .read("x", Some("t2"))
                .write("x", Some("t2")),
        );
        assert_eq!(h.check(), Ok(()));
        assert_eq!(h.counts(), (4, 3));
    }

    #[test]
    fn write_skew_is_a_cycle() {
        // Both read x and y initially; t1 writes x, t2 writes y.
        let txs = [
            TxRecord::new("t1", true)
                .read("x", None)
                .read("y", None)
                .write("x", None),
            TxRecord::new("t2", true)
                .read("x", None)
                .read("y", None)
                .write("y", None),
        ];
        match check(&txs) {
            Err(SerializabilityViolation::Cycle(edges)) => {
                assert_eq!(edges.len(), 2, "{edges:?}");
                assert!(edges.iter().all(|(_, d, _)| *d == Dependency::ReadWrite));
            }
            other => panic!("expected a cycle, got {other:?}"),
        }
    }

    #[test]
    fn lost_update_is_caught_both_ways() {
        // Both replaced the initial version: a fork in x's versions.
        let fork = [
            TxRecord::new("t1", true).read("x", None).write("x", None),
            TxRecord::new("t2", true).read("x", None).write("x", None),
        ];
        assert!(matches!(
            check(&fork),
            Err(SerializabilityViolation::LostUpdate { .. })
        ));
        // Storage chained the blind overwrite (t2 replaced t1's version),
        // yet t2 had read the initial one: rw t2 -> t1, ww t1 -> t2.
        let chained = [
            TxRecord::new("t1", true).read("x", None).write("x", None),
            TxRecord::new("t2", true)
                .read("x", None)
                .write("x", Some("t1")),
        ];
        let e = check(&chained).unwrap_err();
        assert!(matches!(e, SerializabilityViolation::Cycle(_)), "{e}");
    }

    #[test]
    fn dirty_read_is_caught() {
        let txs = [
            TxRecord::new("t1", false).write("x", None),
            TxRecord::new("t2", true).read("x", Some("t1")),
        ];
        let e = check(&txs).unwrap_err();
        assert!(
            matches!(e, SerializabilityViolation::DirtyRead { ref reader, .. } if reader == "t2"),
            "{e}"
        );
        assert!(e.to_string().contains("dirty read"), "{e}");
    }

    #[test]
    fn aborted_transactions_are_ignored() {
        let txs = [
            TxRecord::new("t1", false).read("x", None).write("x", None),
            TxRecord::new("t2", true).read("x", None).write("x", None),
        ];
        assert_eq!(check(&txs), Ok(()));
    }

    proptest! {
        /// Any serial execution of random read/write transactions is
        /// clean, and reversing one committed transaction's read to a
        /// version it could not have seen (a stale read followed by a
        /// write) is caught.
        #[test]
        fn serial_executions_are_serializable(
            plan in proptest::collection::vec(
                proptest::collection::vec((0u8..4, any::<bool>()), 1..4), 1..12),
        ) {
            let mut store: HashMap<String, Option<String>> = HashMap::new();
            let mut txs = Vec::new();
            for (n, ops) in plan.iter().enumerate() {
                let id = format!("t{n}");
                let mut rec = TxRecord::new(id.clone(), true);
                let mut mine: HashMap<String, ()> = HashMap::new();
                for (k, write) in ops {
                    let key = format!("k{k}");
                    let current = store.get(&key).cloned().flatten();
                    if mine.contains_key(&key) {
                        continue; // one access per key and transaction
                    }
                    mine.insert(key.clone(), ());
                    rec = rec.read(key.clone(), current.as_deref());
                    if *write {
                        rec = rec.write(key.clone(), current.as_deref());
                        store.insert(key, Some(id.clone()));
                    }
                }
                txs.push(rec);
            }
            prop_assert_eq!(check(&txs), Ok(()));
        }
    }
}
