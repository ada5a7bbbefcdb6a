//! Group commit for the SQL providers: the state writes (prepare records,
//! commit records with the manager's state, confirmations) and outcome
//! deletions of every participant on a silo queue here and go to the
//! database in one transaction per batch, so many transactions share
//! one commit (one fsync) instead of paying one each.
//!
//! Invariants: a request's effects are all in one database transaction
//! or none are; each request is answered after its batch's commit (or its
//! failure). A batch holds at most one write per state (a participant
//! never has two in flight; a second one, from a stale activation, waits
//! for the next batch), so a compare-and-set never races another in the
//! same batch. Workers are spawned tasks, so a caller that goes away does
//! not cancel the batch of the others.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::id::TxId;
use crate::storage::{BoxFuture, Refused};

/// One state write, as [`TransactionalStorage::store`](crate::TransactionalStorage::store) takes it.
pub(crate) struct StoreReq {
    pub(crate) state: String,
    pub(crate) expected: Option<String>,
    pub(crate) etag: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) commit: Option<TxId>,
    reply: oneshot::Sender<Result<std::result::Result<String, Refused>>>,
}

/// One outcome record to delete.
pub(crate) struct ForgetReq {
    pub(crate) tx: TxId,
    reply: oneshot::Sender<Result<()>>,
}

/// What one batch does, and how each request ended.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) stores: Vec<StoreReq>,
    pub(crate) forgets: Vec<ForgetReq>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.stores.is_empty() && self.forgets.is_empty()
    }

    /// Answers every request: `results[i]` for `stores[i]`, `Ok` for the
    /// deletions; or the one error for all (nothing or everything of the
    /// batch may have been written: the commit's answer was lost).
    pub(crate) fn answer(
        self,
        results: std::result::Result<Vec<std::result::Result<String, Refused>>, Error>,
    ) {
        match results {
            Ok(results) => {
                for (req, r) in self.stores.into_iter().zip(results) {
                    let _ = req.reply.send(Ok(r));
                }
                for f in self.forgets {
                    let _ = f.reply.send(Ok(()));
                }
            }
            Err(e) => {
                for req in self.stores {
                    let _ = req.reply.send(Err(e.clone()));
                }
                for f in self.forgets {
                    let _ = f.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// A backend that runs a whole batch in one database transaction.
pub(crate) trait BatchExec: Clone + Send + Sync + 'static {
    /// Runs `batch`: for each store, in order, the commit record (if any,
    /// first-writer-wins) and the state's compare-and-set, both or
    /// neither; then the deletions; answers through [`Batch::answer`].
    fn run(&self, batch: Batch) -> BoxFuture<'_, ()>;
}

#[derive(Default)]
struct Queue {
    batch: Batch,
    in_flight: usize,
}

/// The queue of one storage, shared by its clones.
pub(crate) struct Batcher {
    queue: Mutex<Queue>,
    max_in_flight: usize,
}

impl Batcher {
    /// A batcher running at most `max_in_flight` batches at once (one per
    /// database connection it may use).
    pub(crate) fn new(max_in_flight: usize) -> Arc<Batcher> {
        Arc::new(Batcher {
            queue: Mutex::new(Queue::default()),
            max_in_flight: max_in_flight.max(1),
        })
    }

    /// Queues a state write and waits for its batch.
    pub(crate) async fn store<E: BatchExec>(
        self: &Arc<Self>,
        exec: &E,
        state: &str,
        expected: Option<&str>,
        payload: &[u8],
        commit: Option<TxId>,
        describe: impl FnOnce() -> String,
    ) -> Result<std::result::Result<String, Refused>> {
        let (reply, rx) = oneshot::channel();
        let req = StoreReq {
            state: state.to_owned(),
            expected: expected.map(str::to_owned),
            etag: crate::storage::new_etag(),
            payload: payload.to_vec(),
            commit,
            reply,
        };
        self.push(exec, |b| b.stores.push(req));
        rx.await.unwrap_or_else(|_| Err(abandoned(describe())))
    }

    /// Queues an outcome deletion and waits for its batch.
    pub(crate) async fn forget<E: BatchExec>(
        self: &Arc<Self>,
        exec: &E,
        tx: TxId,
        describe: impl FnOnce() -> String,
    ) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.push(exec, |b| b.forgets.push(ForgetReq { tx, reply }));
        rx.await.unwrap_or_else(|_| Err(abandoned(describe())))
    }

    fn push<E: BatchExec>(self: &Arc<Self>, exec: &E, add: impl FnOnce(&mut Batch)) {
        let start = {
            let mut q = self.queue.lock();
            add(&mut q.batch);
            let start = q.in_flight < self.max_in_flight;
            if start {
                q.in_flight += 1;
            }
            start
        };
        if start {
            let (me, exec) = (self.clone(), exec.clone());
            tokio::spawn(async move { me.work(exec).await });
        }
    }

    /// A worker: runs what is queued, batch after batch, until nothing is.
    async fn work<E: BatchExec>(self: Arc<Self>, exec: E) {
        loop {
            let batch = {
                let mut q = self.queue.lock();
                if q.batch.is_empty() {
                    q.in_flight -= 1;
                    return;
                }
                let mut all = std::mem::take(&mut q.batch);
                // One write per state per batch; the rest wait for the next.
                let mut seen = HashSet::new();
                let (now, later): (Vec<_>, Vec<_>) = all
                    .stores
                    .drain(..)
                    .partition(|r| seen.insert(r.state.clone()));
                all.stores = now;
                q.batch.stores = later;
                all
            };
            exec.run(batch).await;
        }
    }
}

fn abandoned(provider: String) -> Error {
    Error::Storage {
        provider,
        cause: "the storage's batch was abandoned (the runtime is shutting down)".into(),
    }
}
