//! Group commit for the SQL providers' state writes: the ETag-checked
//! updates that grains issue at the same time go to the database together,
//! in one transaction, so that they share one commit (one WAL flush, one
//! fsync) instead of paying one each.
//!
//! A write joins the queue and waits for its own outcome; a write that
//! finds fewer writer tasks running than the provider allows starts one,
//! which takes what is queued (up to [`MAX_BATCH`] writes, at most one per
//! row), runs it as one transaction, answers every write of it, and goes on
//! while writes are queued. SQLite allows one writer (it runs one write
//! transaction at a time anyway); PostgreSQL a few, so that one batch's
//! round trip overlaps the next batch's and the server's own group commit
//! joins their flushes. A write is acknowledged only after the transaction that holds it
//! has committed: the durability of a write is that of a single-row write.
//! Each write keeps its own compare-and-set: a stale ETag fails that write
//! alone (`Conflict`), the others of its batch commit. A batch that fails as
//! a whole (the database went away) fails each of its writes with the
//! error, as a single write would have failed; such a write may or may not
//! have been applied, as the providers' docs already say of a write cut off
//! by a timeout.
//!
//! The writer is a task of its own, not the first caller: a caller that
//! stops waiting (its call timed out) does not strand the writes queued
//! behind it.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::etag::ETag;
use crate::provider::StateKey;

/// Writes in one batch at most (PostgreSQL binds each column as one array,
/// so the statement stays one round trip at any size).
pub(crate) const MAX_BATCH: usize = 256;

/// An update waiting for its batch.
pub(crate) struct PendingWrite {
    pub(crate) key: StateKey,
    pub(crate) data: Vec<u8>,
    /// The ETag the row must still have.
    pub(crate) expected: ETag,
    /// The ETag the row gets.
    pub(crate) etag: ETag,
    reply: oneshot::Sender<Result<bool>>,
}

impl PendingWrite {
    /// Tells the writer its outcome: `Ok(true)` applied, `Ok(false)` the
    /// row's ETag did not match (or the row is gone).
    pub(crate) fn answer(self, outcome: Result<bool>) {
        let _ = self.reply.send(outcome);
    }
}

/// The queue of one provider's pending updates (shared by its clones).
pub(crate) struct GroupCommit {
    queue: Mutex<Queue>,
    /// Writer tasks that may run at once.
    max_writers: usize,
    /// Off: every update is written alone, by its caller.
    pub(crate) on: bool,
}

#[derive(Default)]
struct Queue {
    pending: Vec<PendingWrite>,
    /// Writer tasks running (each goes on until it finds the queue empty).
    writers: usize,
}

/// What [`GroupCommit::submit`] gives a write: its outcome to await, and
/// whether the caller must start the writer task.
pub(crate) struct Submitted {
    pub(crate) outcome: oneshot::Receiver<Result<bool>>,
    pub(crate) start_writer: bool,
}

impl GroupCommit {
    /// A queue whose batches run on up to `max_writers` tasks at once
    /// (`on` false: no batching, each update is written alone).
    pub(crate) fn new(on: bool, max_writers: usize) -> Shared {
        Arc::new(GroupCommit {
            queue: Mutex::default(),
            max_writers: max_writers.max(1),
            on,
        })
    }

    /// Queues an update of `key` from `expected` to `etag`.
    pub(crate) fn submit(
        &self,
        key: &StateKey,
        data: &[u8],
        expected: &ETag,
        etag: ETag,
    ) -> Submitted {
        let (reply, outcome) = oneshot::channel();
        let write = PendingWrite {
            key: key.clone(),
            data: data.to_vec(),
            expected: expected.clone(),
            etag,
            reply,
        };
        let mut q = self.queue.lock();
        q.pending.push(write);
        let start_writer = q.writers < self.max_writers;
        if start_writer {
            q.writers += 1;
        }
        Submitted {
            outcome,
            start_writer,
        }
    }

    /// The next batch for the writer: at most [`MAX_BATCH`] writes and at
    /// most one per row (a second write of a row waits for the next batch,
    /// so that one statement never sets a row twice). Empty when nothing is
    /// queued, in which case the writer must end (the next write starts a
    /// new one).
    pub(crate) fn next_batch(&self) -> Vec<PendingWrite> {
        let mut q = self.queue.lock();
        if q.pending.is_empty() {
            q.writers -= 1;
            return Vec::new();
        }
        let all = std::mem::take(&mut q.pending);
        let mut rows: HashSet<&StateKey> = HashSet::with_capacity(all.len().min(MAX_BATCH));
        let mut take = Vec::with_capacity(all.len().min(MAX_BATCH));
        let mut later = Vec::new();
        // Decide first (borrowing), then move.
        for (i, w) in all.iter().enumerate() {
            if take.len() < MAX_BATCH && rows.insert(&w.key) {
                take.push(i);
            }
        }
        drop(rows);
        let mut batch = Vec::with_capacity(take.len());
        let mut next = take.into_iter().peekable();
        for (i, w) in all.into_iter().enumerate() {
            if next.peek() == Some(&i) {
                next.next();
                batch.push(w);
            } else {
                later.push(w);
            }
        }
        q.pending = later;
        batch
    }
}

/// Held by a writer task while it runs. A writer that ends without
/// finding the queue empty (it panicked, or its runtime dropped it) is
/// abandoned: the queue stops counting it as running, so that the next
/// write starts a new writer, and if no writer is left, the writes queued
/// fail at once (their senders drop: [`writer_gone`]) instead of waiting.
pub(crate) struct Writing<'a> {
    queue: &'a GroupCommit,
    /// Set when the writer found the queue empty (`next_batch` then
    /// stopped counting it itself).
    pub(crate) done: bool,
}

impl<'a> Writing<'a> {
    pub(crate) fn new(queue: &'a GroupCommit) -> Self {
        Writing { queue, done: false }
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let orphans = {
            let mut q = self.queue.queue.lock();
            q.writers -= 1;
            if q.writers == 0 {
                std::mem::take(&mut q.pending)
            } else {
                Vec::new()
            }
        };
        drop(orphans);
    }
}

/// Answers every write of a batch with the batch's outcome: `applied[i]`
/// for write `i`, or the batch's error for each.
pub(crate) fn answer_all(batch: Vec<PendingWrite>, outcome: Result<Vec<bool>>) {
    match outcome {
        Ok(applied) => {
            for (w, ok) in batch.into_iter().zip(applied) {
                w.answer(Ok(ok));
            }
        }
        Err(e) => {
            for w in batch {
                w.answer(Err(e.clone()));
            }
        }
    }
}

/// The error of a write whose writer task went away before answering (the
/// runtime is shutting down).
pub(crate) fn writer_gone(provider: &str, url: &str) -> Error {
    Error::Unavailable {
        provider: provider.into(),
        url: url.into(),
        reason: "the group-commit writer stopped before the write was answered \
                 (the runtime is shutting down); the write may or may not have been applied"
            .into(),
    }
}

/// Writes queued in one `GroupCommit`, shared by a provider's clones.
pub(crate) type Shared = Arc<GroupCommit>;

#[cfg(test)]
mod tests {
    use super::*;
    use actor_core::GrainId;

    fn key(n: u64) -> StateKey {
        StateKey::new(&GrainId::new("g", n as i64), "state")
    }

    fn submit(g: &GroupCommit, n: u64) -> Submitted {
        g.submit(&key(n), b"x", &ETag::generate(), ETag::generate())
    }

    #[test]
    fn the_first_write_starts_the_writer_and_an_empty_queue_ends_it() {
        let g = GroupCommit::new(true, 1);
        assert!(submit(&g, 1).start_writer);
        assert!(!submit(&g, 2).start_writer, "a writer is running");
        assert_eq!(g.next_batch().len(), 2);
        assert!(g.next_batch().is_empty());
        assert!(submit(&g, 3).start_writer, "the writer ended: a new one");
    }

    #[test]
    fn writers_start_up_to_their_bound_and_an_abandoned_one_is_replaced() {
        let g = GroupCommit::new(true, 2);
        assert!(submit(&g, 1).start_writer);
        assert!(submit(&g, 2).start_writer, "a second writer is allowed");
        assert!(!submit(&g, 3).start_writer, "not a third");
        // One writer is abandoned mid-batch: the other still runs, so the
        // queue is kept for it.
        let batch = g.next_batch();
        drop(Writing::new(&g));
        assert_eq!(g.queue.lock().writers, 1);
        assert!(g.queue.lock().pending.is_empty());
        drop(batch);
        let waiting = submit(&g, 4);
        assert!(waiting.start_writer, "one writer left: one more may start");
        // Both gone without emptying the queue: the queued write fails at
        // once instead of waiting for a writer.
        drop(Writing::new(&g));
        drop(Writing::new(&g));
        assert_eq!(g.queue.lock().writers, 0);
        assert!(
            waiting.outcome.blocking_recv().is_err(),
            "the write is told"
        );
    }

    #[test]
    fn a_batch_holds_one_write_per_row_and_at_most_max_batch() {
        let g = GroupCommit::new(true, 1);
        let _a = submit(&g, 1);
        let _b = submit(&g, 1);
        let _c = submit(&g, 2);
        let first = g.next_batch();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].key, key(1));
        assert_eq!(first[1].key, key(2));
        let second = g.next_batch();
        assert_eq!(second.len(), 1, "the second write of row 1 waits");
        assert_eq!(second[0].key, key(1));
        let many: Vec<_> = (0..(MAX_BATCH as u64 + 10))
            .map(|n| submit(&g, 100 + n))
            .collect();
        assert_eq!(g.next_batch().len(), MAX_BATCH);
        assert_eq!(g.next_batch().len(), 10);
        assert!(g.next_batch().is_empty());
        drop(many);
    }

    #[tokio::test]
    async fn every_write_gets_its_own_outcome_or_the_batch_error() {
        let g = GroupCommit::new(true, 1);
        let a = submit(&g, 1);
        let b = submit(&g, 2);
        answer_all(g.next_batch(), Ok(vec![true, false]));
        assert!(a.outcome.await.unwrap().unwrap());
        assert!(!b.outcome.await.unwrap().unwrap());
        let c = submit(&g, 3);
        answer_all(g.next_batch(), Err(Error::Config("down".into())));
        assert!(c.outcome.await.unwrap().is_err());
    }
}
