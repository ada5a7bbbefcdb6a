// Over 800 lines on purpose: one test story (the bank's grains, its
// workload under the nemesis and its oracles, with the oracles' own
// failing histories) that reads top to bottom.
//! A bank on actor-tx under deterministic simulation (issue 15): accounts
//! whose balance is transactional state, concurrent transfers and audits
//! from two simulated clients while the nemesis crashes, restarts,
//! isolates and partitions silos and holds their messages. The
//! transactional storage is `MemoryTxStorage` served by a host of its
//! own (`txdb`) over simulated TCP, so it survives silo crashes as a
//! database would, and a silo can be cut off from it.
//!
//! Oracles, besides the strict single-activation oracle: the bank's total
//! is constant (every committed audit, and the final balances); every
//! committed transfer is applied on both of its accounts, no aborted one
//! on either, an in-doubt one on both or neither; every balance is its
//! start plus the transfers it applied; no lock stays held; and the
//! serializability checker is clean over every recorded attempt.
//!
//! `SIM_SEEDS` sets how many seeds run (default 3, for CI), `SIM_SEED`
//! the first (default 1); a failing seed is printed with the line that
//! replays it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actor_core::prelude::*;
use actor_testkit::serializability::{TransactionHistory, TxRecord};
use actor_testkit::sim::{self, SimActivations, SimClient, Simulation, WorkloadResult};
use actor_tx::{
    MemoryTxStorage, Outcome, Refused, SiloBuilderTransactionsExt, StoredRow, TransactionOptions,
    TransactionalState, TransactionalStorage, TransactionsConfig, TxId, abort,
    run_transaction_with,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// What CI affords: a few seeds (each run is a few CPU-seconds).
const CI_SEEDS: u64 = 3;
const ACCOUNTS: usize = 6;
const START: i64 = 100;
const TOTAL: i64 = START * ACCOUNTS as i64;

// ---- The grain ----

/// An account's transactional state: the balance, the transaction that
/// wrote it last (the version the serializability checker follows) and
/// every transfer applied to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Balance {
    amount: i64,
    version: Option<String>,
    applied: Vec<(String, i64)>,
}

impl Default for Balance {
    fn default() -> Self {
        Balance {
            amount: START,
            version: None,
            applied: Vec::new(),
        }
    }
}

/// What one access saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Observed {
    account: String,
    read: Option<String>,
    wrote: bool,
    balance: i64,
}

struct Account {
    balance: TransactionalState<Balance>,
    key: String,
    activations: SimActivations,
}

impl Grain for Account {
    const TYPE_NAME: &'static str = "account";
    fn options() -> GrainOptions {
        GrainOptions::new().reentrant()
    }
    async fn on_activate(&mut self, ctx: &GrainContext<Self>) -> Result<(), actor_core::BoxError> {
        self.activations.activated(ctx);
        Ok(())
    }
    async fn on_deactivate(
        &mut self,
        ctx: &GrainContext<Self>,
        why: actor_core::DeactivationReason,
    ) {
        self.activations.deactivated(ctx, why);
    }
}

#[grain_methods]
impl Account {
    /// Adds `amount` (negative: takes it); an overdraw aborts.
    #[transaction(join)]
    async fn change(&self, amount: i64) -> actor_tx::Result<Observed> {
        let tx = actor_tx::current_transaction().map(|t| t.to_string());
        let (read, balance) = self
            .balance
            .perform_update(|b| {
                let read = b.version.clone();
                b.amount += amount;
                b.version = tx.clone();
                b.applied.push((tx.clone().unwrap_or_default(), amount));
                (read, b.amount)
            })
            .await?;
        if balance < 0 {
            return Err(abort(format!("{} would be overdrawn", self.key)));
        }
        Ok(Observed {
            account: self.key.clone(),
            read,
            wrote: true,
            balance,
        })
    }

    /// The balance, inside the caller's transaction.
    #[transaction(join)]
    async fn balance(&self) -> actor_tx::Result<Observed> {
        let (read, balance) = self
            .balance
            .perform_read(|b| (b.version.clone(), b.amount))
            .await?;
        Ok(Observed {
            account: self.key.clone(),
            read,
            wrote: false,
            balance,
        })
    }

    /// The whole state, inside the caller's transaction.
    #[transaction(join)]
    async fn state(&self) -> actor_tx::Result<Balance> {
        self.balance.perform_read(|b| b.clone()).await
    }
}

fn account(i: usize) -> String {
    format!("acct-{i}")
}

// ---- The transactional storage, on host `txdb` ----

#[derive(Serialize, Deserialize)]
enum TxRequest {
    Load(String),
    Store {
        state: String,
        expected: Option<String>,
        payload: Vec<u8>,
        commit: Option<TxId>,
    },
    Decide(TxId, Outcome),
    Outcome(TxId),
    Forget(TxId),
}

#[derive(Serialize, Deserialize)]
enum TxReply {
    Row(Option<(String, Vec<u8>)>),
    Stored(Option<String>, Option<Outcome>),
    Decided(Outcome),
    Outcome(Option<Outcome>),
    Forgotten,
    Failed(String),
}

/// The database: the run's `MemoryTxStorage` behind simulated TCP.
async fn serve_txdb(bank: Bank, request: TxRequest) -> TxReply {
    let s = &bank.store;
    let reply = match request {
        TxRequest::Load(state) => s
            .load(&state)
            .await
            .map(|r| TxReply::Row(r.map(|r| (r.etag, r.payload)))),
        TxRequest::Store {
            state,
            expected,
            payload,
            commit,
        } => s
            .store(&state, expected.as_deref(), &payload, commit)
            .await
            .map(|r| match r {
                Ok(etag) => TxReply::Stored(Some(etag), None),
                Err(Refused::Stale) => TxReply::Stored(None, None),
                Err(Refused::Decided(o)) => TxReply::Stored(None, Some(o)),
            }),
        TxRequest::Decide(tx, o) => s.decide(tx, o).await.map(TxReply::Decided),
        TxRequest::Outcome(tx) => s.outcome(tx).await.map(TxReply::Outcome),
        TxRequest::Forget(tx) => s.forget(tx).await.map(|()| TxReply::Forgotten),
    };
    reply.unwrap_or_else(|e| TxReply::Failed(e.to_string()))
}

/// A silo's view of `txdb`: a request whose answer is lost is a storage
/// failure (it may or may not have been applied, as with a database).
struct RemoteTxStorage;

impl RemoteTxStorage {
    async fn call(&self, request: TxRequest) -> actor_tx::Result<TxReply> {
        let failed = |cause: String| actor_tx::Error::Storage {
            provider: "sim://txdb".into(),
            cause,
        };
        match sim::request::<_, TxReply>("txdb", &request, Duration::from_millis(500)).await {
            Ok(TxReply::Failed(e)) => Err(failed(e)),
            Ok(reply) => Ok(reply),
            Err(e) => Err(failed(e.to_string())),
        }
    }
}

fn unexpected() -> actor_tx::Error {
    actor_tx::Error::Storage {
        provider: "sim://txdb".into(),
        cause: "unexpected reply".into(),
    }
}

impl TransactionalStorage for RemoteTxStorage {
    fn describe(&self) -> String {
        "sim://txdb".into()
    }

    fn load<'a>(
        &'a self,
        state: &'a str,
    ) -> actor_tx::BoxFuture<'a, actor_tx::Result<Option<StoredRow>>> {
        Box::pin(async move {
            match self.call(TxRequest::Load(state.to_owned())).await? {
                TxReply::Row(r) => Ok(r.map(|(etag, payload)| StoredRow { etag, payload })),
                _ => Err(unexpected()),
            }
        })
    }

    fn store<'a>(
        &'a self,
        state: &'a str,
        expected: Option<&'a str>,
        payload: &'a [u8],
        commit: Option<TxId>,
    ) -> actor_tx::BoxFuture<'a, actor_tx::Result<Result<String, Refused>>> {
        Box::pin(async move {
            let request = TxRequest::Store {
                state: state.to_owned(),
                expected: expected.map(str::to_owned),
                payload: payload.to_vec(),
                commit,
            };
            match self.call(request).await? {
                TxReply::Stored(Some(etag), _) => Ok(Ok(etag)),
                TxReply::Stored(None, Some(o)) => Ok(Err(Refused::Decided(o))),
                TxReply::Stored(None, None) => Ok(Err(Refused::Stale)),
                _ => Err(unexpected()),
            }
        })
    }

    fn decide(
        &self,
        tx: TxId,
        outcome: Outcome,
    ) -> actor_tx::BoxFuture<'_, actor_tx::Result<Outcome>> {
        Box::pin(async move {
            match self.call(TxRequest::Decide(tx, outcome)).await? {
                TxReply::Decided(o) => Ok(o),
                _ => Err(unexpected()),
            }
        })
    }

    fn outcome(&self, tx: TxId) -> actor_tx::BoxFuture<'_, actor_tx::Result<Option<Outcome>>> {
        Box::pin(async move {
            match self.call(TxRequest::Outcome(tx)).await? {
                TxReply::Outcome(o) => Ok(o),
                _ => Err(unexpected()),
            }
        })
    }

    fn forget(&self, tx: TxId) -> actor_tx::BoxFuture<'_, actor_tx::Result<()>> {
        Box::pin(async move {
            match self.call(TxRequest::Forget(tx)).await? {
                TxReply::Forgotten => Ok(()),
                _ => Err(unexpected()),
            }
        })
    }
}

// ---- The run's state: the database and what the clients saw ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Committed,
    Aborted,
    /// In doubt, or failed in a way that does not say.
    Unknown,
}

#[derive(Debug, Clone)]
struct Attempt {
    tx: String,
    seen: Seen,
    /// The transfer's accounts and amount (`None`: an audit).
    transfer: Option<(String, String, i64)>,
    observed: Vec<Observed>,
}

#[derive(Clone, Default)]
struct Bank {
    store: MemoryTxStorage,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    /// The sums committed audits saw.
    audits: Arc<Mutex<Vec<i64>>>,
    /// Every account's state, read once the nemesis healed.
    finals: Arc<Mutex<BTreeMap<String, Balance>>>,
}

fn options() -> TransactionOptions {
    TransactionOptions::default()
        .timeout(Duration::from_secs(2))
        .lock_timeout(Duration::from_millis(800))
}

fn seen(result: &actor_tx::Result<impl Sized>) -> Seen {
    match result {
        Ok(_) => Seen::Committed,
        Err(e) if e.is_aborted() => Seen::Aborted,
        Err(_) => Seen::Unknown,
    }
}

/// One transfer attempt, recorded.
async fn transfer(sim: &SimClient<Bank>, from: usize, to: usize, amount: i64) -> Seen {
    let client = sim.client().clone();
    let (a, b) = (
        client.get_grain::<Account>(account(from).as_str()),
        client.get_grain::<Account>(account(to).as_str()),
    );
    let record = Arc::new(Mutex::new((String::new(), Vec::<Observed>::new())));
    let r = record.clone();
    let result = run_transaction_with(&client, &options(), || async move {
        r.lock().0 = actor_tx::current_transaction().unwrap().to_string();
        let out = a.change(-amount).await??;
        r.lock().1.push(out);
        let into = b.change(amount).await??;
        r.lock().1.push(into);
        Ok(())
    })
    .await;
    let (tx, observed) = record.lock().clone();
    let outcome = seen(&result);
    sim.trace(format!(
        "transfer {amount} {from}->{to} {tx}: {}",
        match &result {
            Ok(()) => "committed".to_owned(),
            Err(e) => e.to_string(),
        }
    ));
    sim.state().attempts.lock().push(Attempt {
        tx,
        seen: outcome,
        transfer: Some((account(from), account(to), amount)),
        observed,
    });
    outcome
}

/// Every balance in one read-only transaction, recorded; the sum if it
/// committed.
async fn audit(sim: &SimClient<Bank>) -> Option<i64> {
    let client = sim.client().clone();
    let record = Arc::new(Mutex::new((String::new(), Vec::<Observed>::new())));
    let r = record.clone();
    let c = client.clone();
    let result = run_transaction_with(&client, &options(), || async move {
        r.lock().0 = actor_tx::current_transaction().unwrap().to_string();
        let mut sum = 0;
        for i in 0..ACCOUNTS {
            let o = c
                .get_grain::<Account>(account(i).as_str())
                .balance()
                .await??;
            sum += o.balance;
            r.lock().1.push(o);
        }
        Ok(sum)
    })
    .await;
    let (tx, observed) = record.lock().clone();
    sim.trace(format!("audit {tx}: {result:?}"));
    sim.state().attempts.lock().push(Attempt {
        tx,
        seen: seen(&result),
        transfer: None,
        observed,
    });
    let sum = result.ok()?;
    sim.state().audits.lock().push(sum);
    Some(sum)
}

async fn workload(sim: SimClient<Bank>) -> WorkloadResult {
    let sim = Arc::new(sim);
    let mut callers = Vec::new();
    for c in 0..2u64 {
        let sim = sim.clone();
        let mut rng = sim.rng(c);
        callers.push(tokio::task::spawn_local(async move {
            while sim.during_chaos() {
                let from = rng.below(ACCOUNTS as u64) as usize;
                let to = (from + 1 + rng.below(ACCOUNTS as u64 - 1) as usize) % ACCOUNTS;
                let amount = 1 + rng.below(80) as i64;
                transfer(&sim, from, to, amount).await;
                tokio::time::sleep(Duration::from_millis(5 + rng.below(40))).await;
            }
        }));
    }
    if sim.index() == 0 {
        let sim = sim.clone();
        callers.push(tokio::task::spawn_local(async move {
            while sim.during_chaos() {
                audit(&sim).await;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }));
    }
    for c in callers {
        c.await?;
    }
    sim.after_chaos().await;
    if sim.index() != 0 {
        return Ok(());
    }
    // Healed and settled: every account answers, and its lock is free
    // (in-doubt transactions resolved, dead ones' locks released).
    let client = sim.client().clone();
    let mut finals = None;
    for _ in 0..40 {
        let c = client.clone();
        let read = run_transaction_with(&client, &options(), || async move {
            let mut all = BTreeMap::new();
            for i in 0..ACCOUNTS {
                let s = c
                    .get_grain::<Account>(account(i).as_str())
                    .state()
                    .await??;
                all.insert(account(i), s);
            }
            Ok(all)
        })
        .await;
        match read {
            Ok(all) => {
                finals = Some(all);
                break;
            }
            Err(e) => {
                sim.trace(format!("final read: {e}"));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    let finals = finals.ok_or("the accounts cannot be read after healing")?;
    *sim.state().finals.lock() = finals;
    for i in 0..ACCOUNTS {
        let id = GrainId::new("account", account(i).as_str());
        let mut free = false;
        for _ in 0..40 {
            match actor_tx::lock_status(&*client, &id, "balance").await {
                Ok(s) if s.is_free() => {
                    free = true;
                    break;
                }
                other => sim.trace(format!("lock of {id}: {other:?}")),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if !free {
            return Err(format!("the lock of {id} stays held after healing").into());
        }
    }
    Ok(())
}

// ---- The oracles ----

/// Whether `tx` is applied on `account` (by amount), per the final state.
fn applied(finals: &BTreeMap<String, Balance>, account: &str, tx: &str) -> Option<i64> {
    finals
        .get(account)?
        .applied
        .iter()
        .find(|(t, _)| t == tx)
        .map(|(_, a)| *a)
}

fn totals_hold(bank: &Bank) -> Result<(), String> {
    if let Some(bad) = bank.audits.lock().iter().find(|s| **s != TOTAL) {
        return Err(format!("a committed audit summed {bad}, not {TOTAL}"));
    }
    let finals = bank.finals.lock();
    if finals.len() != ACCOUNTS {
        return Err(format!("{} of {ACCOUNTS} accounts read back", finals.len()));
    }
    let sum: i64 = finals.values().map(|b| b.amount).sum();
    if sum != TOTAL {
        return Err(format!("the final balances sum to {sum}, not {TOTAL}"));
    }
    Ok(())
}

fn transfers_reflected(bank: &Bank) -> Result<(), String> {
    let finals = bank.finals.lock();
    let attempts = bank.attempts.lock();
    let mut known = BTreeMap::new();
    for a in attempts.iter() {
        let Some((from, to, amount)) = &a.transfer else {
            continue;
        };
        known.insert(a.tx.clone(), a.seen);
        let (out, into) = (applied(&finals, from, &a.tx), applied(&finals, to, &a.tx));
        let both = out == Some(-amount) && into == Some(*amount);
        let neither = out.is_none() && into.is_none();
        match a.seen {
            Seen::Committed if !both => {
                return Err(format!(
                    "committed {} is not applied on both sides: {out:?} {into:?}",
                    a.tx
                ));
            }
            Seen::Aborted if !neither => {
                return Err(format!("aborted {} is applied: {out:?} {into:?}", a.tx));
            }
            Seen::Unknown if !both && !neither => {
                return Err(format!(
                    "in-doubt {} is applied on one side only: {out:?} {into:?}",
                    a.tx
                ));
            }
            _ => {}
        }
    }
    for (name, b) in finals.iter() {
        let sum: i64 = b.applied.iter().map(|(_, a)| a).sum();
        if b.amount != START + sum {
            return Err(format!(
                "{name} holds {}, but its applied transfers make {}",
                b.amount,
                START + sum
            ));
        }
        if let Some((tx, _)) = b.applied.iter().find(|(t, _)| !known.contains_key(t)) {
            return Err(format!("{name} applied {tx}, which no client ran"));
        }
    }
    Ok(())
}

fn serializable(bank: &Bank) -> Result<(), String> {
    let finals = bank.finals.lock();
    let history = TransactionHistory::new();
    for a in bank.attempts.lock().iter() {
        let committed = match (a.seen, &a.transfer) {
            (Seen::Committed, _) => true,
            (Seen::Unknown, Some((from, _, _))) => applied(&finals, from, &a.tx).is_some(),
            _ => false,
        };
        let mut rec = TxRecord::new(a.tx.clone(), committed);
        for o in &a.observed {
            let key = format!("account/{}", o.account);
            rec = rec.read(key.clone(), o.read.as_deref());
            if o.wrote {
                rec = rec.write(key, o.read.as_deref());
            }
        }
        history.record(rec);
    }
    history.check().map_err(|v| v.to_string())
}

/// The silos' call timeout: an account's turn makes at most a few calls
/// to its state's participant. A turn still waiting on them when its
/// silo's lease (1 s, `ClusterConfig::fast`) runs out is cut off there,
/// before the others activate the grain (1.25 leases after its last
/// heartbeat); `a_turn_waiting_past_its_silos_lease_is_cut_off` runs the
/// bank with 2 s, where turns do outlive the lease.
const CALL_TIMEOUT: Duration = Duration::from_millis(400);

fn bank() -> Simulation<Bank> {
    bank_with(CALL_TIMEOUT)
}

fn bank_with(call_timeout: Duration) -> Simulation<Bank> {
    Simulation::with_state(|_| Bank::default())
        .call_timeout(call_timeout)
        // actor-tx keeps its own clock and ids: the simulator's, from the seed.
        .setup(|seed| actor_tx::__private::simulate_on_this_thread(Some((sim::clock_millis, seed))))
        .clients(2)
        .service("txdb", serve_txdb)
        .silo(|silo, builder| {
            let activations = silo.activations();
            builder
                .with_transactions_config(
                    TransactionsConfig::new(RemoteTxStorage)
                        .sweep_every(Duration::from_millis(200)),
                )
                .grain_with_async(move |ctx| {
                    let activations = activations.clone();
                    async move {
                        Ok(Account {
                            balance: TransactionalState::load(&ctx, "balance").await?,
                            key: ctx.id().key.to_string(),
                            activations,
                        })
                    }
                })
        })
        .workload(workload)
        .invariant("the bank's total is constant", totals_hold)
        .invariant("every committed transfer is reflected", transfers_reflected)
        .invariant("serializable", serializable)
        .build()
}

#[test]
fn transfers_keep_the_bank_under_crashes_and_partitions() {
    let reports = bank().check(sim::seeds_from_env(CI_SEEDS));
    // The runs did something: transfers committed, and the nemesis acted.
    let faults: usize = reports.iter().map(|r| r.faults).sum();
    let committed = reports
        .iter()
        .flat_map(|r| &r.trace)
        .filter(|l| l.contains(": committed"))
        .count();
    let transfers = reports
        .iter()
        .flat_map(|r| &r.trace)
        .filter(|l| l.contains(" transfer "))
        .count();
    let in_doubt = reports
        .iter()
        .flat_map(|r| &r.trace)
        .filter(|l| l.contains(" transfer ") && l.contains(" is in doubt"))
        .count();
    eprintln!(
        "{} seeds: {transfers} transfers tried, {committed} committed, {in_doubt} in doubt, {faults} faults",
        reports.len()
    );
    assert!(faults >= reports.len(), "{faults} faults");
    assert!(
        committed >= 20 * reports.len(),
        "only {committed} transfers committed"
    );
}

#[test]
fn the_bank_oracles_catch_lost_torn_phantom_and_dirty_transfers() {
    // Histories made by hand, each broken in one way: an oracle that
    // passes them all would make the simulation above prove nothing.
    let transfer = |tx: &str, seen: Seen, amount: i64, read: Option<&str>| Attempt {
        tx: tx.into(),
        seen,
        transfer: Some((account(0), account(1), amount)),
        observed: vec![
            Observed {
                account: account(0),
                read: read.map(str::to_owned),
                wrote: true,
                balance: START - amount,
            },
            Observed {
                account: account(1),
                read: None,
                wrote: true,
                balance: START + amount,
            },
        ],
    };
    let bank = |attempts: Vec<Attempt>, applied: &[(&str, i64)]| {
        let b = Bank::default();
        *b.attempts.lock() = attempts;
        let mut finals = BTreeMap::new();
        for i in 0..ACCOUNTS {
            finals.insert(account(i), Balance::default());
        }
        for (tx, amount) in applied {
            for (i, sign) in [(0, -1), (1, 1)] {
                let f = finals.get_mut(&account(i)).unwrap();
                f.amount += sign * amount;
                f.applied.push(((*tx).to_owned(), sign * amount));
                f.version = Some((*tx).to_owned());
            }
        }
        *b.finals.lock() = finals;
        b
    };

    let fine = bank(vec![transfer("t1", Seen::Committed, 5, None)], &[("t1", 5)]);
    assert_eq!(totals_hold(&fine), Ok(()));
    assert_eq!(transfers_reflected(&fine), Ok(()));
    assert_eq!(serializable(&fine), Ok(()));

    // A committed transfer applied nowhere.
    let lost = bank(vec![transfer("t1", Seen::Committed, 5, None)], &[]);
    assert!(
        transfers_reflected(&lost)
            .unwrap_err()
            .contains("not applied")
    );
    // An aborted one applied (what the simulation found).
    let aborted = bank(vec![transfer("t1", Seen::Aborted, 5, None)], &[("t1", 5)]);
    assert!(
        transfers_reflected(&aborted)
            .unwrap_err()
            .contains("aborted t1 is applied")
    );
    // An in-doubt one applied on one side only.
    let torn = bank(vec![transfer("t1", Seen::Unknown, 5, None)], &[("t1", 5)]);
    torn.finals
        .lock()
        .get_mut(&account(1))
        .unwrap()
        .applied
        .clear();
    assert!(
        transfers_reflected(&torn)
            .unwrap_err()
            .contains("one side only")
    );
    // A transfer no client ran.
    let phantom = bank(vec![], &[("t9", 5)]);
    assert!(
        transfers_reflected(&phantom)
            .unwrap_err()
            .contains("no client ran")
    );
    // Money made: a balance and the total off.
    let minted = bank(vec![transfer("t1", Seen::Committed, 5, None)], &[("t1", 5)]);
    minted.finals.lock().get_mut(&account(2)).unwrap().amount += 1;
    assert!(totals_hold(&minted).unwrap_err().contains("sum to 601"));
    assert!(
        transfers_reflected(&minted)
            .unwrap_err()
            .contains("acct-2 holds 101")
    );
    minted.finals.lock().get_mut(&account(2)).unwrap().amount -= 1;
    minted.audits.lock().push(TOTAL + 3);
    assert!(
        totals_hold(&minted)
            .unwrap_err()
            .contains("audit summed 603")
    );
    // A committed transfer that read an aborted one's write.
    let dirty = bank(
        vec![
            transfer("t1", Seen::Aborted, 5, None),
            transfer("t2", Seen::Committed, 7, Some("t1")),
        ],
        &[("t2", 7)],
    );
    assert!(serializable(&dirty).unwrap_err().contains("dirty read"));
}

/// Issue 17 item 6: a turn still waiting when its silo's lease runs out
/// is cut off there (`actor_core::TurnFence`), before the others may
/// activate the grain. Here an account's turn waits up to 2 s for its
/// participant from a silo the nemesis isolated (seed 31: before the
/// cut-off, `acct-1` stayed up on the dead `silo-0` until its turn ended
/// at 8.0 s, while it was up on `silo-2` from 7.25 s). The runtime has
/// changed since and seeds replay differently: with the cut-off disabled,
/// seed 109 was the one of `SIM_SEEDS=40 SIM_SEED=100` that failed
/// (`acct-5` live on `silo-0` and `silo-2`); run such a sweep again with
/// `SIM_SEEDS` set when the runtime changes.
#[test]
fn a_turn_waiting_past_its_silos_lease_is_cut_off() {
    let seeds: Vec<u64> = match std::env::var_os("SIM_SEEDS") {
        Some(_) => sim::seeds_from_env(1).collect(),
        None => vec![109],
    };
    let mut failed = Vec::new();
    for seed in seeds {
        let report = bank_with(Duration::from_secs(2)).run(seed);
        if !report.duplicates.is_empty() {
            println!("{}", report.failure());
            failed.push(seed);
        }
    }
    assert!(failed.is_empty(), "duplicates with seeds {failed:?}");
}

#[test]
fn a_seed_of_the_bank_replays_the_same_run() {
    // The trace names every transaction by its id and outcome: equal
    // traces mean actor-tx drew its ids, ages and deadlines from the seed
    // and the simulated clock, not from the OS.
    let seed = sim::seeds_from_env(1).start;
    let first = sim::trace_in_a_fresh_process("print_the_trace_of_a_seed", seed);
    let again = sim::trace_in_a_fresh_process("print_the_trace_of_a_seed", seed);
    assert!(
        first.iter().filter(|l| l.contains(": committed")).count() > 20,
        "{} events",
        first.len()
    );
    sim::assert_same_trace(seed, &first, &again);
}

/// Prints the trace of seed `SIM_SEED` (`--ignored --nocapture`): what to
/// read when a seed fails. `RUST_LOG=actor_tx=info` adds actor-tx's logs.
#[test]
#[ignore]
fn print_the_trace_of_a_seed() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let seed = sim::seeds_from_env(1).start;
    let r = bank().run(seed);
    sim::print_trace(&r);
}
