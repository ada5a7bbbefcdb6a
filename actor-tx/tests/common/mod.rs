//! Grains and helpers shared by the integration tests: a bank of
//! accounts whose balance is transactional state, and a recorder of what
//! each transaction read and wrote (for the serializability checker).

#![allow(dead_code, unreachable_pub)]

use actor_core::prelude::*;
use actor_tx::{TransactionalState, abort};
use serde::{Deserialize, Serialize};

/// An account's transactional state: the balance and the transaction that
/// wrote it last (the version the serializability checker follows).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub amount: i64,
    pub version: Option<String>,
}

/// What one access saw: the version read, and the version it replaced
/// with its own write (if it wrote).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub account: String,
    pub read: Option<String>,
    pub wrote: bool,
    pub balance: i64,
}

pub struct Account {
    balance: TransactionalState<Balance>,
    /// A second named state, to show several per grain.
    audit: TransactionalState<Vec<i64>>,
    key: String,
}

impl Grain for Account {
    const TYPE_NAME: &'static str = "account";

    // Its methods take `&self` (transactional state needs no more): a
    // method waiting for a lock never holds up the grain's other calls.
    fn options() -> GrainOptions {
        GrainOptions::new().reentrant()
    }
}

impl Account {
    pub fn register(b: actor_core::SiloBuilder) -> actor_core::SiloBuilder {
        b.grain_with_async(|ctx| async move {
            Ok(Account {
                balance: TransactionalState::load(&ctx, "balance").await?,
                audit: TransactionalState::load(&ctx, "audit").await?,
                key: ctx.id().key.to_string(),
            })
        })
    }
}

fn version() -> Option<String> {
    actor_tx::current_transaction().map(|t| t.to_string())
}

#[grain_methods]
impl Account {
    /// Adds `amount` (negative: takes it); an overdraw aborts the
    /// transaction.
    #[transaction(join)]
    pub async fn change(&self, amount: i64) -> actor_tx::Result<Observed> {
        let v = version();
        let (read, balance) = self
            .balance
            .perform_update(|b| {
                let read = b.version.clone();
                b.amount += amount;
                b.version = v;
                (read, b.amount)
            })
            .await?;
        if balance < 0 {
            return Err(abort(format!("{} would be overdrawn", self.key)));
        }
        self.audit.perform_update(|a| a.push(amount)).await?;
        Ok(Observed {
            account: self.key.clone(),
            read,
            wrote: true,
            balance,
        })
    }

    /// The balance, read inside the caller's transaction.
    #[transaction(join)]
    pub async fn balance(&self) -> actor_tx::Result<Observed> {
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

    /// Deposits in a transaction of its own.
    #[transaction(create)]
    pub async fn deposit_alone(&self, amount: i64) -> actor_tx::Result<i64> {
        self.balance
            .perform_update(|b| {
                b.amount += amount;
                b.amount
            })
            .await
    }

    /// Reads in the caller's transaction if there is one, else in its own.
    #[transaction(create_or_join)]
    pub async fn read_or_create(&self) -> actor_tx::Result<i64> {
        self.balance.perform_read(|b| b.amount).await
    }

    /// Whether it runs in a transaction (`supported`: the caller's flows in).
    #[transaction(supported)]
    pub async fn supported(&self) -> Option<String> {
        actor_tx::current_transaction().map(|t| t.to_string())
    }

    /// Whether it runs in a transaction (`suppress`: never).
    #[transaction(suppress)]
    pub async fn suppressed(&self) -> Option<String> {
        actor_tx::current_transaction().map(|t| t.to_string())
    }

    /// Tries to read the balance with the transaction suppressed.
    #[transaction(suppress)]
    pub async fn suppressed_read(&self) -> actor_tx::Result<i64> {
        self.balance.perform_read(|b| b.amount).await
    }

    /// Must not run inside a transaction.
    #[transaction(not_allowed)]
    pub async fn outside_only(&self) -> u32 {
        7
    }

    /// The audit trail (a second state of the same grain).
    #[transaction(create_or_join)]
    pub async fn audit(&self) -> actor_tx::Result<Vec<i64>> {
        self.audit.perform_read(|a| a.clone()).await
    }

    /// A plain method: touching transactional state here is refused.
    pub async fn plain_read(&self) -> actor_tx::Result<i64> {
        self.balance.perform_read(|b| b.amount).await
    }
}

/// Whether a test that needs a service must fail rather than skip.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A small deterministic random number generator (xorshift), so that a
/// failing run can be replayed from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Records an attempt in `history` from what its calls observed.
pub fn record(
    history: &actor_testkit::serializability::TransactionHistory,
    tx: &str,
    committed: bool,
    seen: &[Observed],
) {
    let mut rec = actor_testkit::serializability::TxRecord::new(tx, committed);
    for o in seen {
        let key = format!("account/{}", o.account);
        rec = rec.read(key.clone(), o.read.as_deref());
        if o.wrote {
            rec = rec.write(key, o.read.as_deref());
        }
    }
    history.record(rec);
}

/// A client of its own for `cluster` (the cluster's own client borrows the
/// cluster, which a test that kills silos needs mutably).
pub async fn own_client(
    cluster: &actor_testkit::TestCluster,
    silos: usize,
) -> std::sync::Arc<actor_cluster::ClusterClient> {
    let gateways = (0..silos)
        .map(|i| cluster.silo(i).address().endpoint.clone())
        .collect();
    let client = actor_cluster::ClusterClient::connect_via(
        cluster.network().connector("tx-client"),
        gateways,
        std::time::Duration::from_millis(500),
    )
    .await
    .unwrap();
    std::sync::Arc::new(client)
}
