// Over 800 lines on purpose: the participant's lock table, its prepare
// record and the manager's side of two-phase commit change together.
//! The participant of one transactional state: a system grain (one per
//! state, cluster-wide single activation) that holds the state's lock
//! table, its committed value, and its prepare record, and that runs the
//! two-phase commit when a transaction picks it as its manager.
//!
//! It is reentrant and all its methods always interleave, so a lock
//! request that waits never holds up a prepare, a commit or an abort (the
//! user grain's own turn, which asked for the lock, is what waits).
//! Invariants: at most one writer, never beside readers of another
//! transaction; a prepared writer is never broken, only resolved through
//! the outcome table; every change that must be durable bumps `dirty`, and
//! `persist` writes the latest snapshot, so one storage write covers the
//! changes of every transaction that queued behind it (group commit).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

// The runtime's clock (simulated under turmoil), not the OS's.
use tokio::time::Instant;

use actor_core::prelude::*;
use actor_core::{ActivationContext, TimerHandle};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::error::{AbortReason, Error};
use crate::id::{Access, Priority, TxId, TxInfo, now_millis};
use crate::runtime::{Step, TxRuntime};
use crate::storage::{Outcome, Refused};
use crate::transaction::abort_all;

/// What the storage row of a state holds (as JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StateRecord {
    /// The committed value (JSON text), `None` for the default value.
    committed: Option<String>,
    /// The transaction that wrote it.
    committed_by: Option<TxId>,
    /// A prepared write waiting for its outcome.
    prepared: Option<PrepareRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PrepareRecord {
    tx: TxInfo,
    value: Option<String>,
    manager: String,
}

struct Holder {
    info: TxInfo,
    /// The transaction's tentative value (a writer's).
    value: Option<String>,
    /// The manager's key, once prepared.
    prepared: Option<String>,
}

#[derive(Default)]
struct Inner {
    etag: Option<String>,
    committed: Option<String>,
    committed_by: Option<TxId>,
    writer: Option<Holder>,
    readers: HashMap<TxId, TxInfo>,
    /// Transactions refused here from now on (broken, aborted), newest last.
    broken: HashMap<TxId, AbortReason>,
    broken_order: VecDeque<TxId>,
    /// Transactions this resource is committing as manager.
    committing: HashSet<TxId>,
    dirty: u64,
    durable: u64,
    sweeper: Option<TimerHandle>,
}

const BROKEN_KEPT: usize = 4096;

/// How long past a committed transaction's deadline its outcome record
/// outlives the confirmations. A root whose commit answer was lost asks
/// the manager for the outcome until about deadline + 20 s (the commit
/// call's 5 s of grace, 10 s of asking, 5 s per ask); a record forgotten
/// before that would let the ask find none and decide "aborted" for a
/// transaction every participant applied (found by the bank simulation,
/// actor-testkit/tests/simulation_bank.rs).
const OUTCOME_KEPT: Duration = Duration::from_secs(30);

/// How long a confirmed participant waits before writing its row, so that
/// the prepare record of the next transaction on the state (which a
/// client running transfers back to back sends within milliseconds)
/// carries the confirmation in the same write.
const CONFIRM_LINGER: Duration = Duration::from_millis(5);

impl Inner {
    fn break_tx(&mut self, tx: TxId, reason: AbortReason) {
        if self.writer.as_ref().is_some_and(|w| w.info.id == tx) {
            let w = self.writer.take().expect("checked");
            if w.prepared.is_some() {
                self.dirty += 1;
            }
        }
        self.readers.remove(&tx);
        if self.broken.insert(tx, reason).is_none() {
            self.broken_order.push_back(tx);
            if self.broken_order.len() > BROKEN_KEPT
                && let Some(old) = self.broken_order.pop_front()
            {
                self.broken.remove(&old);
            }
        }
    }

    fn record(&self) -> StateRecord {
        StateRecord {
            committed: self.committed.clone(),
            committed_by: self.committed_by,
            prepared: self.writer.as_ref().and_then(|w| {
                w.prepared.as_ref().map(|m| PrepareRecord {
                    tx: w.info.clone(),
                    value: w.value.clone(),
                    manager: m.clone(),
                })
            }),
        }
    }

    fn holds(&self) -> bool {
        self.writer.is_some() || !self.readers.is_empty()
    }
}

/// The participant grain of one transactional state (see the module docs).
pub struct TxResource {
    key: String,
    rt: Arc<TxRuntime>,
    inner: Mutex<Inner>,
    changed: Notify,
    writing: tokio::sync::Mutex<()>,
}

/// The grain type name of the participants.
pub(crate) const RESOURCE_TYPE: &str = "actor-tx.state";

impl Grain for TxResource {
    const TYPE_NAME: &'static str = RESOURCE_TYPE;

    fn options() -> GrainOptions {
        GrainOptions::new().reentrant()
    }

    /// A prepare record loaded from storage is resolved by the sweep even
    /// if no transaction asks for the lock.
    async fn on_activate(&mut self, ctx: &GrainContext<Self>) -> Result<(), actor_core::BoxError> {
        if self.inner.lock().writer.is_some() {
            self.ensure_sweeper(ctx);
        }
        Ok(())
    }
}

/// How [`TxResource::commit_as_manager`] ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CommitReply {
    Committed,
    Aborted(AbortReason),
    InDoubt(String),
}

/// A participant's lock table, for tests and tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockStatus {
    /// The committed value, as JSON (`None`: the default).
    pub committed: Option<String>,
    /// The writer holding the lock, and whether it is prepared.
    pub writer: Option<(TxId, bool)>,
    /// How many readers hold it.
    pub readers: usize,
}

impl LockStatus {
    /// Whether no transaction holds the lock.
    pub fn is_free(&self) -> bool {
        self.writer.is_none() && self.readers == 0
    }
}

/// Sweeps expired locks (a timer tick).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Sweep;

impl Message for Sweep {
    type Reply = ();
    const NAME: &'static str = "sweep";
}

impl SharedHandler<Sweep> for TxResource {
    const INTERLEAVE: Interleave = Interleave::Always;
    async fn handle(&self, _: Sweep, _ctx: &GrainContext<Self>) {
        self.sweep().await;
    }
}

impl TxResource {
    /// Builds the participant of state `key` and loads its row; a prepare
    /// record found there is an in-doubt transaction whose lock is held
    /// until its outcome is known.
    pub(crate) async fn activate(
        ctx: ActivationContext,
    ) -> Result<TxResource, actor_core::BoxError> {
        let rt = TxRuntime::of(ctx.silo())?;
        let key = match &ctx.id().key {
            GrainKey::Str(s) => s.to_string(),
            other => other.to_string(),
        };
        let mut inner = Inner::default();
        if let Some(row) = rt.storage.load(&key).await? {
            let record: StateRecord = serde_json::from_slice(&row.payload)?;
            inner.etag = Some(row.etag);
            inner.committed = record.committed;
            inner.committed_by = record.committed_by;
            if let Some(p) = record.prepared {
                tracing::info!(state = %key, tx = %p.tx.id, "found a prepared transaction; resolving it");
                inner.writer = Some(Holder {
                    info: p.tx,
                    value: p.value,
                    prepared: Some(p.manager),
                });
            }
        }
        Ok(TxResource {
            key,
            rt,
            inner: Mutex::new(inner),
            changed: Notify::new(),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    fn ensure_sweeper(&self, ctx: &GrainContext<Self>) {
        let mut g = self.inner.lock();
        if g.sweeper.as_ref().is_none_or(|t| t.is_finished()) {
            let every = self.rt.sweep_every;
            g.sweeper = Some(ctx.register_timer(every, every, || Sweep));
        }
    }

    fn state_name(&self) -> String {
        self.key.clone()
    }

    /// Writes the latest snapshot unless a write that started after
    /// `target` was reached already covered it.
    async fn persist(&self, target: u64) -> Result<(), Error> {
        let _w = self.writing.lock().await;
        let (record, etag, upto) = {
            let g = self.inner.lock();
            if g.durable >= target {
                return Ok(());
            }
            (g.record(), g.etag.clone(), g.dirty)
        };
        let payload = serde_json::to_vec(&record).map_err(|e| Error::Codec {
            state: self.key.clone(),
            action: "encoded".into(),
            cause: e.to_string(),
        })?;
        match self
            .rt
            .storage
            .store(&self.key, etag.as_deref(), &payload, None)
            .await?
        {
            Ok(new) => {
                let mut g = self.inner.lock();
                g.etag = Some(new);
                g.durable = g.durable.max(upto);
                Ok(())
            }
            Err(_) => Err(Error::Conflict {
                state: self.key.clone(),
            }),
        }
    }

    /// Takes (or upgrades to) the lock of `tx` and answers the value the
    /// transaction sees: its own tentative write, or the committed value.
    pub(crate) async fn lock(
        &self,
        tx: TxInfo,
        write: bool,
        ctx: &GrainContext<Self>,
    ) -> Result<Option<String>, AbortReason> {
        let started = Instant::now();
        let lock_deadline = started + Duration::from_millis(tx.lock_timeout_ms);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut resolve = None;
            let wait_until;
            {
                let mut g = self.inner.lock();
                if let Some(r) = g.broken.get(&tx.id) {
                    return Err(r.clone());
                }
                if tx.expired() {
                    g.break_tx(tx.id, AbortReason::Timeout);
                    self.changed.notify_waiters();
                    return Err(AbortReason::Timeout);
                }
                let mine = g.writer.as_ref().is_some_and(|w| w.info.id == tx.id);
                let mut holders: Vec<(Priority, TxId, i64, bool)> = Vec::new();
                if let Some(w) = &g.writer
                    && !mine
                {
                    holders.push((
                        w.info.priority,
                        w.info.id,
                        w.info.deadline_ms,
                        w.prepared.is_some(),
                    ));
                }
                if write && !mine {
                    for (id, info) in &g.readers {
                        if *id != tx.id {
                            holders.push((info.priority, *id, info.deadline_ms, false));
                        }
                    }
                }
                if holders.is_empty() {
                    let value = if mine {
                        g.writer.as_ref().and_then(|w| w.value.clone())
                    } else if write {
                        g.readers.remove(&tx.id);
                        let value = g.committed.clone();
                        g.writer = Some(Holder {
                            info: tx.clone(),
                            value: value.clone(),
                            prepared: None,
                        });
                        value
                    } else {
                        g.readers.insert(tx.id, tx.clone());
                        g.committed.clone()
                    };
                    drop(g);
                    self.rt.metrics.lock_waited(started.elapsed());
                    self.ensure_sweeper(ctx);
                    return Ok(value);
                }
                // A holder past its deadline gives way (an unprepared one
                // is broken; a prepared one is resolved below).
                let now = now_millis();
                let mut broke = false;
                for (_, id, deadline, prepared) in &holders {
                    if *deadline < now {
                        if *prepared {
                            resolve = Some(*id);
                        } else {
                            g.break_tx(*id, AbortReason::Timeout);
                            broke = true;
                        }
                    }
                }
                if broke {
                    self.changed.notify_waiters();
                    continue;
                }
                if resolve.is_none() {
                    // Wait-die: only an older transaction waits, except
                    // for a prepared holder, which waits for no lock (only
                    // for its outcome), so waiting for it closes no cycle.
                    if holders
                        .iter()
                        .any(|(p, _, _, prepared)| !prepared && !tx.priority.is_older_than(*p))
                    {
                        return Err(AbortReason::LockConflict {
                            state: self.state_name(),
                        });
                    }
                    if Instant::now() >= lock_deadline {
                        return Err(AbortReason::LockTimeout {
                            state: self.state_name(),
                        });
                    }
                }
                let first_expiry = holders.iter().map(|h| h.2).min().unwrap_or(i64::MAX);
                let until_expiry = Duration::from_millis((first_expiry - now).max(0) as u64 + 1);
                wait_until = lock_deadline
                    .min(Instant::now() + until_expiry)
                    .min(Instant::now() + tx.remaining() + Duration::from_millis(1));
            }
            if let Some(id) = resolve {
                self.resolve_prepared(id).await;
                continue;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(wait_until) => {}
            }
        }
    }

    /// Stores the tentative value of `tx`, which must hold the write lock.
    pub(crate) fn write(&self, tx: TxId, value: Option<String>) -> Result<(), AbortReason> {
        let mut g = self.inner.lock();
        if let Some(r) = g.broken.get(&tx) {
            return Err(r.clone());
        }
        match &mut g.writer {
            Some(w) if w.info.id == tx && w.prepared.is_none() => {
                w.value = value;
                Ok(())
            }
            _ => Err(self.lock_lost()),
        }
    }

    fn lock_lost(&self) -> AbortReason {
        AbortReason::ParticipantFailed {
            participant: self.key.clone(),
            cause:
                "the transaction's lock is gone (the state was reactivated, or the lock expired)"
                    .into(),
        }
    }

    /// Phase one at a participant: a writer makes its prepare record
    /// durable; a reader checks its lock and releases it.
    pub(crate) async fn prepare_local(&self, tx: TxId, manager: String) -> Result<(), AbortReason> {
        let target = {
            let mut g = self.inner.lock();
            if let Some(r) = g.broken.get(&tx) {
                return Err(r.clone());
            }
            if g.readers.remove(&tx).is_some() {
                drop(g);
                self.changed.notify_waiters();
                return Ok(());
            }
            let expired = g
                .writer
                .as_ref()
                .is_some_and(|w| w.info.id == tx && w.info.expired());
            if expired {
                g.break_tx(tx, AbortReason::Timeout);
                drop(g);
                self.changed.notify_waiters();
                return Err(AbortReason::Timeout);
            }
            match &mut g.writer {
                Some(w) if w.info.id == tx => {
                    w.prepared = Some(manager);
                }
                _ => return Err(self.lock_lost()),
            }
            g.dirty += 1;
            g.dirty
        };
        if let Err(e) = self.persist(target).await {
            let mut g = self.inner.lock();
            g.break_tx(
                tx,
                AbortReason::ParticipantFailed {
                    participant: self.key.clone(),
                    cause: e.to_string(),
                },
            );
            drop(g);
            self.changed.notify_waiters();
            return Err(AbortReason::ParticipantFailed {
                participant: self.key.clone(),
                cause: e.to_string(),
            });
        }
        Ok(())
    }

    /// Applies `outcome` of `tx` if it holds the write lock here.
    async fn apply(&self, tx: TxId, outcome: Outcome) -> Result<(), Error> {
        self.apply_then_persist(tx, outcome, Duration::ZERO).await
    }

    /// [`apply`](Self::apply), writing the row after `linger`: the lock is
    /// released at once, and a write of the next transaction on this state
    /// that starts meanwhile (its prepare record, say) carries this change
    /// too, so the later write finds it durable already and costs nothing.
    async fn apply_then_persist(
        &self,
        tx: TxId,
        outcome: Outcome,
        linger: Duration,
    ) -> Result<(), Error> {
        let target = {
            let mut g = self.inner.lock();
            let holds = g.writer.as_ref().is_some_and(|w| w.info.id == tx);
            if !holds {
                g.readers.remove(&tx);
                if outcome == Outcome::Aborted {
                    g.break_tx(tx, AbortReason::User("aborted".into()));
                }
                drop(g);
                self.changed.notify_waiters();
                return Ok(());
            }
            let w = g.writer.take().expect("checked");
            let was_prepared = w.prepared.is_some();
            if outcome == Outcome::Committed {
                g.committed = w.value;
                g.committed_by = Some(tx);
            } else {
                g.break_tx(tx, AbortReason::User("aborted".into()));
            }
            if outcome == Outcome::Committed || was_prepared {
                g.dirty += 1;
            }
            g.dirty
        };
        self.changed.notify_waiters();
        if !linger.is_zero() && self.inner.lock().durable < target {
            tokio::time::sleep(linger).await;
        }
        self.persist(target).await
    }

    /// Phase two at a participant: the manager's commit confirmation.
    pub(crate) async fn confirm_local(&self, tx: TxId) -> Result<(), String> {
        let prepared = {
            let g = self.inner.lock();
            g.writer
                .as_ref()
                .is_some_and(|w| w.info.id == tx && w.prepared.is_some())
        };
        if !prepared {
            return Ok(()); // applied already (or resolved through the outcome table)
        }
        // Until the row is written, its prepare record and the outcome
        // record (kept until this answers) say the same: no hurry.
        self.apply_then_persist(tx, Outcome::Committed, CONFIRM_LINGER)
            .await
            .map_err(|e| e.to_string())
    }

    /// The transaction aborted: drop its lock and refuse it from now on.
    pub(crate) async fn abort_local(&self, tx: TxId, reason: AbortReason) {
        let prepared = {
            let mut g = self.inner.lock();
            let prepared = g
                .writer
                .as_ref()
                .is_some_and(|w| w.info.id == tx && w.prepared.is_some());
            g.break_tx(tx, reason);
            if prepared { Some(g.dirty) } else { None }
        };
        self.changed.notify_waiters();
        if let Some(target) = prepared
            && let Err(e) = self.persist(target).await
        {
            tracing::warn!(state = %self.key, %tx, error = %e, "clearing an aborted prepare record failed; recovery will read the outcome");
        }
    }

    /// A prepared transaction past its deadline: read its outcome, or
    /// decide it aborted if nobody decided yet (first writer wins, so a
    /// late commit record cannot follow).
    async fn resolve_prepared(&self, tx: TxId) {
        let outcome = match self.rt.storage.outcome(tx).await {
            Ok(Some(o)) => Ok(o),
            Ok(None) => self.rt.storage.decide(tx, Outcome::Aborted).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(o) => {
                tracing::info!(state = %self.key, %tx, outcome = o.as_str(), "resolved an in-doubt transaction");
                if let Err(e) = self.apply(tx, o).await {
                    tracing::warn!(state = %self.key, %tx, error = %e, "applying a resolved outcome failed");
                }
            }
            Err(e) => {
                tracing::warn!(state = %self.key, %tx, error = %e, "cannot read the outcome table; retrying");
                tokio::time::sleep(self.rt.sweep_every).await;
            }
        }
    }

    /// The timer's work: break expired unprepared locks, resolve expired
    /// prepared ones, stop the timer when nothing is held.
    async fn sweep(&self) {
        let now = now_millis();
        let mut resolve = None;
        {
            let mut g = self.inner.lock();
            let expired: Vec<TxId> = g
                .readers
                .values()
                .filter(|i| i.deadline_ms < now)
                .map(|i| i.id)
                .collect();
            for id in expired {
                g.break_tx(id, AbortReason::Timeout);
            }
            if let Some(w) = &g.writer
                && w.info.deadline_ms < now
            {
                if w.prepared.is_some() {
                    resolve = Some(w.info.id);
                } else {
                    let id = w.info.id;
                    g.break_tx(id, AbortReason::Timeout);
                }
            }
            if !g.holds()
                && let Some(t) = g.sweeper.take()
            {
                t.cancel();
            }
        }
        self.changed.notify_waiters();
        if let Some(id) = resolve {
            self.resolve_prepared(id).await;
        } else {
            // A prepared record loaded at activation, not yet expired, may
            // already be decided: ask once per tick.
            let prepared = {
                let g = self.inner.lock();
                g.writer
                    .as_ref()
                    .filter(|w| w.prepared.is_some())
                    .map(|w| w.info.id)
            };
            if let Some(id) = prepared
                && let Ok(Some(o)) = self.rt.storage.outcome(id).await
                && let Err(e) = self.apply(id, o).await
            {
                tracing::warn!(state = %self.key, error = %e, "applying an outcome failed");
            }
        }
    }

    /// Runs the commit as the transaction's manager: prepare the others,
    /// write this state together with the commit record, answer, then
    /// confirm to the others.
    pub(crate) async fn commit_as_manager(
        &self,
        tx: TxInfo,
        others: Vec<(String, Access)>,
        ctx: &GrainContext<Self>,
    ) -> CommitReply {
        let held = {
            let mut g = self.inner.lock();
            if let Some(r) = g.broken.get(&tx.id) {
                return CommitReply::Aborted(r.clone());
            }
            let held = g.writer.as_ref().is_some_and(|w| w.info.id == tx.id);
            if held {
                g.committing.insert(tx.id);
            }
            held
        };
        if !held {
            let reason = self.lock_lost();
            self.abort_everywhere(&tx, &others, reason.clone(), ctx)
                .await;
            return CommitReply::Aborted(reason);
        }
        let reply = self.run_commit(&tx, &others, ctx).await;
        self.rt.metrics.commit_reply(&reply);
        self.inner.lock().committing.remove(&tx.id);
        self.changed.notify_waiters();
        reply
    }

    async fn run_commit(
        &self,
        tx: &TxInfo,
        others: &[(String, Access)],
        ctx: &GrainContext<Self>,
    ) -> CommitReply {
        self.rt.step(Step::BeforePrepare, tx.id).await;
        let prepares = others.iter().map(|(key, _)| {
            let r = ctx.get_grain::<TxResource>(key.as_str());
            let manager = self.key.clone();
            let key = key.clone();
            async move {
                match r.prepare(tx.id, manager).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(reason)) => Err(reason),
                    Err(e) => Err(AbortReason::ParticipantFailed {
                        participant: key,
                        cause: e.to_string(),
                    }),
                }
            }
        });
        let results = futures::future::join_all(prepares).await;
        self.rt.step(Step::AfterPrepare, tx.id).await;
        let failed = results
            .into_iter()
            .find_map(Result::err)
            .or_else(|| tx.expired().then_some(AbortReason::Timeout));
        if let Some(reason) = failed {
            self.abort_everywhere(tx, others, reason.clone(), ctx).await;
            return CommitReply::Aborted(reason);
        }

        // The commit record and this state's new value, in one write.
        let written = {
            let _w = self.writing.lock().await;
            let snapshot = {
                let g = self.inner.lock();
                let mut record = g.record();
                let value = g
                    .writer
                    .as_ref()
                    .filter(|w| w.info.id == tx.id)
                    .map(|w| w.value.clone());
                value.map(|v| {
                    record.committed = v;
                    record.committed_by = Some(tx.id);
                    record.prepared = None;
                    (record, g.etag.clone(), g.dirty)
                })
            };
            let Some((record, etag, upto)) = snapshot else {
                let reason = self.lock_lost();
                self.abort_everywhere(tx, others, reason.clone(), ctx).await;
                return CommitReply::Aborted(reason);
            };
            let payload = serde_json::to_vec(&record).expect("a state record encodes as JSON");
            let stored = self
                .rt
                .storage
                .store(&self.key, etag.as_deref(), &payload, Some(tx.id))
                .await;
            if let Ok(Ok(new)) = &stored {
                let mut g = self.inner.lock();
                g.etag = Some(new.clone());
                g.durable = g.durable.max(upto);
                let w = g.writer.take().expect("held during the commit");
                g.committed = w.value;
                g.committed_by = Some(tx.id);
            }
            stored
        };
        match written {
            Ok(Ok(_)) => {}
            Ok(Err(Refused::Decided(Outcome::Committed))) => {}
            Ok(Err(Refused::Decided(Outcome::Aborted))) => {
                // A participant gave up waiting and decided first.
                self.abort_everywhere(tx, others, AbortReason::Timeout, ctx)
                    .await;
                return CommitReply::Aborted(AbortReason::Timeout);
            }
            Ok(Err(Refused::Stale)) => {
                let reason = AbortReason::ParticipantFailed {
                    participant: self.key.clone(),
                    cause:
                        "storage holds a newer version of this state (a second activation wrote)"
                            .into(),
                };
                ctx.deactivate_on_idle();
                self.abort_everywhere(tx, others, reason.clone(), ctx).await;
                return CommitReply::Aborted(reason);
            }
            Err(e) => {
                // The write may or may not have happened: only the outcome
                // table can say.
                ctx.deactivate_on_idle();
                return match self.rt.storage.outcome(tx.id).await {
                    Ok(Some(Outcome::Committed)) => {
                        self.confirm_later(tx, others, ctx);
                        CommitReply::Committed
                    }
                    Ok(Some(Outcome::Aborted)) => {
                        self.abort_everywhere(tx, others, AbortReason::Timeout, ctx)
                            .await;
                        CommitReply::Aborted(AbortReason::Timeout)
                    }
                    _ => CommitReply::InDoubt(e.to_string()),
                };
            }
        }
        self.changed.notify_waiters();
        self.rt.step(Step::AfterCommitRecord, tx.id).await;
        self.confirm_later(tx, others, ctx);
        CommitReply::Committed
    }

    /// Confirms the commit to the writers (readers released at prepare),
    /// then forgets the outcome record once all of them applied it and the
    /// root can no longer ask for it ([`OUTCOME_KEPT`] past the deadline).
    fn confirm_later(&self, tx: &TxInfo, others: &[(String, Access)], ctx: &GrainContext<Self>) {
        let keep = tx.remaining() + OUTCOME_KEPT;
        let tx = tx.id;
        let writers: Vec<GrainRef<TxResource>> = others
            .iter()
            .filter(|(_, a)| *a == Access::Write)
            .map(|(k, _)| ctx.get_grain::<TxResource>(k.as_str()))
            .collect();
        let rt = self.rt.clone();
        tokio::spawn(async move {
            let mut all = true;
            for (i, w) in writers.iter().enumerate() {
                if i == 1 {
                    rt.step(Step::DuringConfirmation, tx).await;
                }
                let mut ok = false;
                for attempt in 0..5u32 {
                    match w.confirm(tx).await {
                        Ok(Ok(())) => {
                            ok = true;
                            break;
                        }
                        Ok(Err(e)) => tracing::debug!(%tx, error = %e, "confirmation failed"),
                        Err(e) => tracing::debug!(%tx, error = %e, "confirmation call failed"),
                    }
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
                all &= ok;
            }
            if writers.len() == 1 {
                rt.step(Step::DuringConfirmation, tx).await;
            }
            if !all {
                return;
            }
            tokio::time::sleep(keep).await;
            if let Err(e) = rt.storage.forget(tx).await {
                tracing::debug!(%tx, error = %e, "forgetting an outcome record failed");
            }
        });
    }

    async fn abort_everywhere(
        &self,
        tx: &TxInfo,
        others: &[(String, Access)],
        reason: AbortReason,
        ctx: &GrainContext<Self>,
    ) {
        // Decided first, so a participant that missed the message finds it.
        if let Err(e) = self.rt.storage.decide(tx.id, Outcome::Aborted).await {
            tracing::debug!(tx = %tx.id, error = %e, "recording an abort failed; participants will decide at the deadline");
        }
        self.abort_local(tx.id, reason.clone()).await;
        abort_all(
            ctx.silo(),
            tx.id,
            others.iter().map(|(k, _)| k.clone()),
            reason,
            false,
        )
        .await;
    }

    /// The outcome of `tx`, for a caller whose commit call failed: waits
    /// for a commit running here, else reads the outcome table, deciding
    /// "aborted" once the deadline has passed with nothing recorded.
    pub(crate) async fn resolve(&self, tx: TxInfo) -> CommitReply {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.inner.lock().committing.contains(&tx.id) {
                break;
            }
            notified.await;
        }
        loop {
            match self.rt.storage.outcome(tx.id).await {
                Ok(Some(Outcome::Committed)) => return CommitReply::Committed,
                Ok(Some(Outcome::Aborted)) => return CommitReply::Aborted(AbortReason::Timeout),
                Ok(None) if tx.expired() => {
                    return match self.rt.storage.decide(tx.id, Outcome::Aborted).await {
                        Ok(Outcome::Committed) => CommitReply::Committed,
                        Ok(Outcome::Aborted) => CommitReply::Aborted(AbortReason::Timeout),
                        Err(e) => CommitReply::InDoubt(e.to_string()),
                    };
                }
                Ok(None) => tokio::time::sleep(tx.remaining() + Duration::from_millis(1)).await,
                Err(e) => return CommitReply::InDoubt(e.to_string()),
            }
        }
    }

    /// The lock table and committed value.
    pub(crate) fn status(&self) -> LockStatus {
        let g = self.inner.lock();
        LockStatus {
            committed: g.committed.clone(),
            writer: g.writer.as_ref().map(|w| (w.info.id, w.prepared.is_some())),
            readers: g.readers.len(),
        }
    }
}

#[grain_methods(also_handles(Sweep))]
impl TxResource {
    /// Takes the read or write lock; answers the value seen.
    #[always_interleave]
    pub(crate) async fn access(
        &self,
        tx: TxInfo,
        write: bool,
        ctx: &GrainContext<Self>,
    ) -> Result<Option<String>, AbortReason> {
        self.lock(tx, write, ctx).await
    }

    /// Stores a tentative value.
    #[always_interleave]
    pub(crate) async fn set_value(
        &self,
        tx: TxId,
        value: Option<String>,
    ) -> Result<(), AbortReason> {
        self.write(tx, value)
    }

    /// Phase one.
    #[always_interleave]
    pub(crate) async fn prepare(&self, tx: TxId, manager: String) -> Result<(), AbortReason> {
        self.prepare_local(tx, manager).await
    }

    /// Phase two.
    #[always_interleave]
    pub(crate) async fn confirm(&self, tx: TxId) -> Result<(), String> {
        self.confirm_local(tx).await
    }

    /// Abort; `count`: this participant counts it in its silo's metrics.
    #[always_interleave]
    pub(crate) async fn abort(&self, tx: TxId, reason: AbortReason, count: bool) {
        if count {
            self.rt.metrics.aborted(&reason);
        }
        self.abort_local(tx, reason).await
    }

    /// Releases a read lock of a read-only transaction's commit; fails if
    /// it is no longer held.
    #[always_interleave]
    pub(crate) async fn release_read(&self, tx: TxId) -> Result<(), AbortReason> {
        let mut g = self.inner.lock();
        if let Some(r) = g.broken.get(&tx) {
            return Err(r.clone());
        }
        if g.readers.remove(&tx).is_none() {
            drop(g);
            return Err(self.lock_lost());
        }
        drop(g);
        self.changed.notify_waiters();
        Ok(())
    }

    /// Commits as the manager.
    #[always_interleave]
    pub(crate) async fn commit(
        &self,
        tx: TxInfo,
        others: Vec<(String, Access)>,
        ctx: &GrainContext<Self>,
    ) -> CommitReply {
        self.commit_as_manager(tx, others, ctx).await
    }

    /// Resolves an outcome for a caller that lost the commit's answer.
    #[always_interleave]
    pub(crate) async fn outcome_of(&self, tx: TxInfo) -> CommitReply {
        self.resolve(tx).await
    }

    /// The lock table.
    #[always_interleave]
    pub(crate) async fn inspect(&self) -> LockStatus {
        self.status()
    }
}
