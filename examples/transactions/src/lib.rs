//! The bank of course exercise 17: accounts as grains with transactional
//! balances, a two-silo cluster to host them, and the scenario that
//! `main` plays (and the test checks).

use std::sync::Arc;
use std::time::Duration;

use actor_cluster::{
    ClusterClient, ClusterConfig, ClusterSilo, InMemoryMembership, MembershipTable,
};
use actor_core::SiloBuilder;
use actor_core::prelude::*;
use actor_tx::{
    AbortReason, RetryPolicy, SiloBuilderTransactionsExt, StepHook, TransactionOptions,
    TransactionalState, TransactionalStorage, TransactionsConfig, abort, retry_transaction,
    run_transaction,
};
use serde::{Deserialize, Serialize};

/// An account's balance, the transactional state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Balance {
    /// The amount.
    pub amount: i64,
    /// The transaction that wrote it last (the version a history checker
    /// follows); `None` before the first write.
    #[serde(default)]
    pub version: Option<String>,
}

/// What one [`Account::change`] saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The version it read (and replaced, if it wrote).
    pub read: Option<String>,
    /// The balance after it.
    pub balance: i64,
}

/// An account grain.
pub struct Account {
    balance: TransactionalState<Balance>,
}

impl Grain for Account {
    const TYPE_NAME: &'static str = "bank-account";

    // Its methods take `&self` (transactional state needs no more), so a
    // transfer waiting for a lock here never holds up the account's other
    // calls.
    fn options() -> GrainOptions {
        GrainOptions::new().reentrant()
    }
}

#[grain_methods]
impl Account {
    /// Takes `amount` out in the caller's transaction; an overdraw aborts
    /// the whole transaction.
    #[transaction(join)]
    pub async fn withdraw(&self, amount: i64) -> actor_tx::Result<i64> {
        let left = self
            .balance
            .perform_update(|b| {
                b.amount -= amount;
                b.amount
            })
            .await?;
        if left < 0 {
            return Err(abort(format!(
                "overdraw: {amount} is more than the balance"
            )));
        }
        Ok(left)
    }

    /// Puts `amount` in, in the caller's transaction.
    #[transaction(join)]
    pub async fn deposit(&self, amount: i64) -> actor_tx::Result<i64> {
        self.balance
            .perform_update(|b| {
                b.amount += amount;
                b.amount
            })
            .await
    }

    /// Adds `amount` (negative: takes it) in the caller's transaction,
    /// stamping the balance with the transaction's id; an overdraw aborts
    /// it. Answers the version replaced, for a history checker.
    #[transaction(join)]
    pub async fn change(&self, amount: i64) -> actor_tx::Result<Change> {
        let me = actor_tx::current_transaction().map(|t| t.to_string());
        let (read, balance) = self
            .balance
            .perform_update(|b| {
                b.amount += amount;
                (std::mem::replace(&mut b.version, me), b.amount)
            })
            .await?;
        if balance < 0 {
            return Err(abort(format!("overdraw: {balance} after {amount}")));
        }
        Ok(Change { read, balance })
    }

    /// The balance and its version, in the caller's transaction.
    #[transaction(join)]
    pub async fn observe(&self) -> actor_tx::Result<Change> {
        self.balance
            .perform_read(|b| Change {
                read: b.version.clone(),
                balance: b.amount,
            })
            .await
    }

    /// The balance, inside the caller's transaction or a new one.
    #[transaction(create_or_join)]
    pub async fn balance(&self) -> actor_tx::Result<i64> {
        self.balance.perform_read(|b| b.amount).await
    }
}

/// Registers the account grain and transactions over `storage`.
pub fn configure(builder: SiloBuilder, storage: Arc<dyn TransactionalStorage>) -> SiloBuilder {
    configure_with(builder, TransactionsConfig::new(storage))
}

/// [`configure`] with transaction options (a step hook, say).
pub fn configure_with(builder: SiloBuilder, config: TransactionsConfig) -> SiloBuilder {
    builder
        .with_transactions_config(config)
        .grain_with_async(|ctx| async move {
            Ok(Account {
                balance: TransactionalState::load(&ctx, "balance").await?,
            })
        })
}

/// Starts `n` silos of one cluster on loopback TCP (an in-memory
/// membership table: they share this process), all on `storage`.
pub async fn start_cluster(
    n: usize,
    storage: Arc<dyn TransactionalStorage>,
) -> anyhow::Result<Vec<ClusterSilo>> {
    let table = Arc::new(InMemoryMembership::new());
    let mut silos = Vec::new();
    for i in 0..n {
        let builder = configure(Silo::builder().name(format!("bank-{i}")), storage.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        silos.push(
            ClusterSilo::start(builder, listener, table.clone(), ClusterConfig::fast()).await?,
        );
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while silos.iter().any(|s| s.active_members().len() != n) {
        anyhow::ensure!(
            tokio::time::Instant::now() < until,
            "the silos do not see each other"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(silos)
}

/// Starts silo `name` of the cluster in `table` on loopback TCP, with
/// transactions over `storage` (shared by every silo, in whatever process)
/// and `hook` at each step of the commits it manages; for the silo
/// processes of `example-transactions --silo`.
pub async fn start_member(
    name: &str,
    table: Arc<dyn MembershipTable>,
    storage: Arc<dyn TransactionalStorage>,
    hook: Option<StepHook>,
) -> anyhow::Result<ClusterSilo> {
    let mut config = TransactionsConfig::new(storage).sweep_every(Duration::from_millis(50));
    if let Some(hook) = hook {
        config = config.on_step(hook);
    }
    let builder = configure_with(Silo::builder().name(name), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(ClusterSilo::start(builder, listener, table, ClusterConfig::fast()).await?)
}

/// What to play.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Accounts.
    pub accounts: usize,
    /// The starting balance of each.
    pub start: i64,
    /// Concurrent clients.
    pub clients: usize,
    /// Transfers per client.
    pub transfers: usize,
    /// Account names start with it (so runs on one database do not meet).
    pub prefix: String,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            accounts: 8,
            start: 100,
            clients: 4,
            transfers: 25,
            prefix: format!("acct-{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Transfers committed.
    pub committed: usize,
    /// Transfers aborted as overdraws (both sides unchanged).
    pub overdraws: usize,
    /// Transfers aborted for another reason after every retry, by reason.
    pub aborted: Vec<(String, usize)>,
    /// Transfers in doubt.
    pub in_doubt: usize,
    /// The total before.
    pub initial_total: i64,
    /// The total after.
    pub final_total: i64,
    /// The deliberate overdraw left both accounts as they were.
    pub overdraw_left_both_unchanged: bool,
}

fn account(client: &ClusterClient, prefix: &str, i: usize) -> GrainRef<Account> {
    client.get_grain::<Account>(format!("{prefix}-{i}").as_str())
}

async fn total(client: &ClusterClient, s: &Scenario) -> anyhow::Result<(i64, Vec<i64>)> {
    let balances = retry_transaction(
        client,
        &TransactionOptions::default(),
        &RetryPolicy::default(),
        || async {
            let mut all = Vec::new();
            for i in 0..s.accounts {
                all.push(account(client, &s.prefix, i).balance().await??);
            }
            Ok(all)
        },
    )
    .await?;
    Ok((balances.iter().sum(), balances))
}

/// Plays the scenario on `silos`: funds the accounts, runs the clients'
/// random transfers concurrently, forces one overdraw, and reads the total.
pub async fn play(silos: &[ClusterSilo], s: &Scenario) -> anyhow::Result<Report> {
    let gateways: Vec<String> = silos.iter().map(|m| m.address().endpoint.clone()).collect();
    let mut clients = Vec::new();
    for _ in 0..s.clients {
        clients.push(Arc::new(
            ClusterClient::connect(gateways.clone(), Duration::from_secs(1)).await?,
        ));
    }
    let first = clients[0].clone();
    // Fund every account in one transaction.
    run_transaction(&*first, || async {
        for i in 0..s.accounts {
            account(&first, &s.prefix, i).deposit(s.start).await??;
        }
        Ok(())
    })
    .await?;
    let mut report = Report {
        initial_total: total(&first, s).await?.0,
        ..Report::default()
    };

    // The clients' random transfers, all at once.
    let mut tasks = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        let (client, s) = (client.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            let mut seed = 0x2545_f491_4f6c_dd1d_u64 ^ (c as u64 + 1);
            let mut next = move |n: u64| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed % n
            };
            let mut outcomes = Vec::new();
            for _ in 0..s.transfers {
                let from = next(s.accounts as u64) as usize;
                let to = (from + 1 + next(s.accounts as u64 - 1) as usize) % s.accounts;
                let amount = 1 + next(s.start as u64) as i64;
                let (a, b) = (
                    account(&client, &s.prefix, from),
                    account(&client, &s.prefix, to),
                );
                let policy = RetryPolicy {
                    attempts: 30,
                    ..RetryPolicy::default()
                };
                let r =
                    retry_transaction(&*client, &TransactionOptions::default(), &policy, || {
                        let (a, b) = (a.clone(), b.clone());
                        async move {
                            a.withdraw(amount).await??;
                            b.deposit(amount).await??;
                            Ok(())
                        }
                    })
                    .await;
                outcomes.push(r);
            }
            outcomes
        }));
    }
    let mut aborted: std::collections::BTreeMap<String, usize> = Default::default();
    for t in tasks {
        for r in t.await? {
            match r {
                Ok(()) => report.committed += 1,
                Err(e) if e.is_in_doubt() => report.in_doubt += 1,
                Err(e) => match e.abort_reason() {
                    Some(AbortReason::User(_)) => report.overdraws += 1,
                    Some(r) => *aborted.entry(r.label().to_owned()).or_default() += 1,
                    None => *aborted.entry(e.to_string()).or_default() += 1,
                },
            }
        }
    }
    report.aborted = aborted.into_iter().collect();

    // A deliberate overdraw: deposit first, then a withdrawal too large.
    let (_, before) = total(&first, s).await?;
    let (a, b) = (account(&first, &s.prefix, 0), account(&first, &s.prefix, 1));
    let too_much = before[0] + 1;
    let r = run_transaction(&*first, || async {
        b.deposit(too_much).await??;
        a.withdraw(too_much).await??;
        Ok(())
    })
    .await;
    let (final_total, after) = total(&first, s).await?;
    report.overdraw_left_both_unchanged = matches!(
        r.as_ref().map_err(|e| e.abort_reason()),
        Err(Some(AbortReason::User(_)))
    ) && after[..2] == before[..2];
    report.final_total = final_total;
    Ok(report)
}
