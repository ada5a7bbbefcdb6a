//! Running a transaction: the scope its calls see, its commit from the
//! caller's side (the root), and retries.
//!
//! The root keeps the list of participants (every transactional state the
//! transaction touched, here or in the grains it called: replies carry
//! them back, as Orleans' do). At the end it picks the first writer as the
//! transaction's manager and asks it to commit; a read-only transaction
//! just checks and releases its read locks. The scope is a tokio
//! task-local tied to the turn that opened it, so a callee's turn that
//! happens to run on the caller's task never mistakes the caller's
//! transaction for its own.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actor_core::{CallId, Grain, GrainContext, GrainKey, GrainRef, Silo};
use parking_lot::Mutex;

use crate::error::{AbortReason, Error, Result};
use crate::id::{Access, Priority, TxId, TxInfo};
use crate::resource::{CommitReply, TxResource, TxResourceRef};

/// Where a transaction can run from: anything that makes grain
/// references (a [`ClusterClient`](actor_cluster::ClusterClient), a
/// [`Silo`], a [`ClusterSilo`](actor_cluster::ClusterSilo), a grain's
/// [`GrainContext`]).
pub trait TransactionClient {
    /// A reference to grain `key` of type `G`.
    fn grain_ref<G: Grain>(&self, key: GrainKey) -> GrainRef<G>;
}

impl TransactionClient for Silo {
    fn grain_ref<G: Grain>(&self, key: GrainKey) -> GrainRef<G> {
        self.get_grain(key)
    }
}

impl TransactionClient for actor_cluster::ClusterClient {
    fn grain_ref<G: Grain>(&self, key: GrainKey) -> GrainRef<G> {
        self.get_grain(key)
    }
}

impl TransactionClient for actor_cluster::ClusterSilo {
    fn grain_ref<G: Grain>(&self, key: GrainKey) -> GrainRef<G> {
        self.silo().get_grain(key)
    }
}

impl<H: Grain> TransactionClient for GrainContext<H> {
    fn grain_ref<G: Grain>(&self, key: GrainKey) -> GrainRef<G> {
        self.get_grain(key)
    }
}

impl<C: TransactionClient + ?Sized> TransactionClient for Arc<C> {
    fn grain_ref<G: Grain>(&self, key: GrainKey) -> GrainRef<G> {
        (**self).grain_ref(key)
    }
}

impl<C: TransactionClient + ?Sized> TransactionClient for &C {
    fn grain_ref<G: Grain>(&self, key: GrainKey) -> GrainRef<G> {
        (**self).grain_ref(key)
    }
}

pub(crate) fn resource(
    client: &(impl TransactionClient + ?Sized),
    key: &str,
) -> GrainRef<TxResource> {
    client.grain_ref::<TxResource>(GrainKey::from(key))
}

/// Options of one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionOptions {
    /// How long the transaction may take, commit included (default 10 s).
    /// Past it, its unprepared locks may be broken by the transactions
    /// waiting for them.
    pub timeout: Duration,
    /// How long one lock request may wait (default 5 s).
    pub lock_timeout: Duration,
    /// The transaction's age for wait-die (default: its start time). Give
    /// a retry the priority of the first attempt to keep its age.
    pub priority: Option<Priority>,
}

impl Default for TransactionOptions {
    fn default() -> Self {
        TransactionOptions {
            timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(5),
            priority: None,
        }
    }
}

impl TransactionOptions {
    /// These options with `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// These options with a fixed `priority` (age).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// These options with `lock_timeout`.
    pub fn lock_timeout(mut self, lock_timeout: Duration) -> Self {
        self.lock_timeout = lock_timeout;
        self
    }
}

/// The transaction a turn (or the root) runs in.
pub(crate) struct TxScope {
    pub(crate) info: TxInfo,
    turn: Option<CallId>,
    participants: Mutex<Vec<(String, Access)>>,
    poisoned: Mutex<Option<AbortReason>>,
}

tokio::task_local! {
    static TX: Arc<TxScope>;
}

impl TxScope {
    pub(crate) fn new(info: TxInfo) -> Arc<TxScope> {
        Arc::new(TxScope {
            info,
            turn: actor_core::__private::current_call_id(),
            participants: Mutex::new(Vec::new()),
            poisoned: Mutex::new(None),
        })
    }

    /// Runs `fut` in this scope.
    pub(crate) async fn run<F: Future>(self: &Arc<Self>, fut: F) -> F::Output {
        TX.scope(self.clone(), fut).await
    }

    /// Adds a participant (a write supersedes a read).
    pub(crate) fn join(&self, key: &str, access: Access) {
        let mut p = self.participants.lock();
        match p.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = slot.1.max(access),
            None => p.push((key.to_owned(), access)),
        }
    }

    pub(crate) fn merge(&self, joined: Vec<(String, Access)>) {
        for (k, a) in joined {
            self.join(&k, a);
        }
    }

    /// Marks the transaction abort-only (the first reason stays).
    pub(crate) fn poison(&self, reason: AbortReason) {
        self.poisoned.lock().get_or_insert(reason);
    }

    pub(crate) fn participants(&self) -> Vec<(String, Access)> {
        self.participants.lock().clone()
    }

    pub(crate) fn poisoned(&self) -> Option<AbortReason> {
        self.poisoned.lock().clone()
    }
}

/// The scope of the running turn (or root), if it runs in a transaction.
pub(crate) fn current() -> Option<Arc<TxScope>> {
    TX.try_with(Arc::clone)
        .ok()
        .filter(|s| s.turn == actor_core::__private::current_call_id())
}

/// The id of the transaction the running code is part of, if any.
pub fn current_transaction() -> Option<TxId> {
    current().map(|s| s.info.id)
}

/// Aborts the current transaction from inside it (a grain method, or the
/// transaction's closure): it can no longer commit. Returns the error to
/// hand back, so that a method reads `return Err(actor_tx::abort("insufficient funds"))`.
pub fn abort(reason: impl std::fmt::Display) -> Error {
    let reason = AbortReason::User(reason.to_string());
    match current() {
        Some(s) => {
            s.poison(reason.clone());
            Error::Aborted {
                tx: s.info.id,
                reason,
            }
        }
        None => Error::Aborted {
            tx: TxId::NIL,
            reason,
        },
    }
}

/// Runs `body` as one serializable transaction and commits it; see the
/// crate docs. `Ok` means committed everywhere. An error from `body`
/// aborts it (a user abort, not retryable, unless the error is itself a
/// retryable abort from a call). The closure's calls to
/// `#[transaction(..)]` grain methods and its [`TransactionalState`](crate::TransactionalState)
/// accesses join the transaction.
///
/// ```
/// # use actor_tx::*;
/// # async fn f(silo: &actor_core::Silo) -> actor_tx::Result<()> {
/// let answer = run_transaction(silo, || async { Ok(42) }).await?;
/// assert_eq!(answer, 42);
/// # Ok(()) }
/// ```
pub async fn run_transaction<C, T, F, Fut>(client: &C, body: F) -> Result<T>
where
    C: TransactionClient + ?Sized,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    run_transaction_with(client, &TransactionOptions::default(), body).await
}

/// [`run_transaction`] with options.
pub async fn run_transaction_with<C, T, F, Fut>(
    client: &C,
    options: &TransactionOptions,
    body: F,
) -> Result<T>
where
    C: TransactionClient + ?Sized,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let priority = options.priority.unwrap_or_else(Priority::now);
    attempt(client, options, priority, body()).await
}

/// How [`retry_transaction`] retries: at most `attempts` runs, with
/// exponential backoff from `first_backoff` up to `max_backoff`, jittered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Runs in all (at least 1).
    pub attempts: u32,
    /// The wait before the second run.
    pub first_backoff: Duration,
    /// The longest wait between runs.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 10,
            first_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(200),
        }
    }
}

/// Runs the transaction `body` makes, again after each retryable abort
/// ([`Error::is_retryable`]), up to the policy's attempts. Every run keeps
/// the age of the first, so under wait-die it grows old enough to win its
/// conflicts. An in-doubt outcome is never retried (it may have
/// committed).
pub async fn retry_transaction<C, T, F, Fut>(
    client: &C,
    options: &TransactionOptions,
    policy: &RetryPolicy,
    mut body: F,
) -> Result<T>
where
    C: TransactionClient + ?Sized,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let priority = options.priority.unwrap_or_else(Priority::now);
    let mut backoff = policy.first_backoff;
    let mut run = 1;
    loop {
        match attempt(client, options, priority, body()).await {
            Err(e) if e.is_retryable() && run < policy.attempts.max(1) => {
                run += 1;
                let jitter = crate::id::random_u128() as u64 % (backoff.as_micros() as u64 + 1);
                tokio::time::sleep(backoff / 2 + Duration::from_micros(jitter / 2)).await;
                backoff = (backoff * 2).min(policy.max_backoff);
            }
            other => return other,
        }
    }
}

pub(crate) async fn attempt<C, T, Fut>(
    client: &C,
    options: &TransactionOptions,
    priority: Priority,
    body: Fut,
) -> Result<T>
where
    C: TransactionClient + ?Sized,
    Fut: Future<Output = Result<T>>,
{
    let info = TxInfo::new(priority, options.timeout, options.lock_timeout);
    let scope = TxScope::new(info);
    let out = scope.run(body).await;
    finish(client, &scope, out).await
}

async fn finish<C: TransactionClient + ?Sized, T>(
    client: &C,
    scope: &TxScope,
    out: Result<T>,
) -> Result<T> {
    let tx = scope.info.id;
    let participants = scope.participants();
    let aborted = |reason: AbortReason| Error::Aborted { tx, reason };
    let reason = match (&out, scope.poisoned()) {
        (_, Some(p)) => Some(p),
        (Err(e), None) => Some(reason_of(e)),
        (Ok(_), None) => None,
    };
    if let Some(reason) = reason {
        abort_all(
            client,
            tx,
            participants.iter().map(|(k, _)| k.clone()),
            reason.clone(),
            true,
        )
        .await;
        return match out {
            // Misuse is reported as itself.
            Err(e @ (Error::NotInTransaction { .. } | Error::NotAllowed { .. })) => Err(e),
            _ => Err(aborted(reason)),
        };
    }
    let value = out.expect("no abort reason: the body succeeded");
    let Some(manager) = participants.iter().position(|(_, a)| *a == Access::Write) else {
        // Read-only: every read lock must still be held; release them.
        let releases = participants.iter().map(|(k, _)| {
            let r = resource(client, k);
            async move {
                match r.release_read(tx).await {
                    Ok(r) => r,
                    Err(e) => Err(AbortReason::ParticipantFailed {
                        participant: k.clone(),
                        cause: e.to_string(),
                    }),
                }
            }
        });
        let results = futures::future::join_all(releases).await;
        if let Some(reason) = results.into_iter().find_map(Result::err) {
            abort_all(
                client,
                tx,
                participants.iter().map(|(k, _)| k.clone()),
                reason.clone(),
                true,
            )
            .await;
            return Err(aborted(reason));
        }
        return Ok(value);
    };
    let mut others = participants.clone();
    let (manager, _) = others.remove(manager);
    let info = scope.info.clone();
    let r = resource(client, &manager).with_timeout(info.remaining() + Duration::from_secs(5));
    let cause = match r.commit(info.clone(), others).await {
        Ok(CommitReply::Committed) => return Ok(value),
        Ok(CommitReply::Aborted(reason)) => return Err(aborted(reason)),
        Ok(CommitReply::InDoubt(cause)) => cause,
        Err(e) => e.to_string(),
    };
    // The answer was lost: ask the manager (reactivated if its silo died)
    // for the outcome, for as long as it may take to be decided.
    tracing::debug!(%tx, %cause, "commit answer lost; resolving the outcome");
    let until = tokio::time::Instant::now() + info.remaining() + Duration::from_secs(10);
    let mut last = cause;
    while tokio::time::Instant::now() < until {
        let r = resource(client, &manager).with_timeout(info.remaining() + Duration::from_secs(5));
        match r.outcome_of(info.clone()).await {
            Ok(CommitReply::Committed) => return Ok(value),
            Ok(CommitReply::Aborted(reason)) => return Err(aborted(reason)),
            Ok(CommitReply::InDoubt(c)) => last = c,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::InDoubt { tx, cause: last })
}

/// The abort reason an error of the transaction's body stands for.
fn reason_of(e: &Error) -> AbortReason {
    match e {
        Error::Aborted { reason, .. } => reason.clone(),
        Error::Call(cause) => AbortReason::ParticipantFailed {
            participant: "a grain call".into(),
            cause: cause.clone(),
        },
        Error::Storage { provider, cause } => AbortReason::ParticipantFailed {
            participant: provider.clone(),
            cause: cause.clone(),
        },
        Error::Conflict { state } => AbortReason::ParticipantFailed {
            participant: state.clone(),
            cause: e.to_string(),
        },
        Error::InDoubt { .. } => AbortReason::ParticipantFailed {
            participant: "a nested transaction".into(),
            cause: e.to_string(),
        },
        other => AbortReason::User(other.to_string()),
    }
}

/// Tells every participant in `keys` that `tx` aborted. With `count`, the
/// first of them counts the abort in its silo's metrics (the root may be
/// a client, which has none; a manager counts its own aborts).
pub(crate) async fn abort_all<C: TransactionClient + ?Sized>(
    client: &C,
    tx: TxId,
    keys: impl Iterator<Item = String>,
    reason: AbortReason,
    count: bool,
) {
    let calls = keys.enumerate().map(|(i, k)| {
        let r = resource(client, &k);
        let reason = reason.clone();
        async move {
            if let Err(e) = r.abort(tx, reason, count && i == 0).await {
                tracing::debug!(%tx, error = %e, "abort message lost; the lock expires at the deadline");
            }
        }
    });
    futures::future::join_all(calls).await;
}
