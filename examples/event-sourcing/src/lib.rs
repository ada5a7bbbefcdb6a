//! # Course exercise 24: an event-sourced grain
//!
//! **The original** (EventSourcing) keeps an aggregate's history as events
//! appended to a store instead of overwriting its state. The state is
//! whatever replaying the events gives. A snapshot saves the state every few
//! events, so that reloading reads the snapshot and only the events after
//! it, then goes on appending.
//!
//! **The grain version** is an [`AccountGrain`] whose state is a
//! [`Journal<Account>`]: commands ([`deposit`](AccountGrain::deposit),
//! [`withdraw`](AccountGrain::withdraw)) check the current state, raise an
//! [`AccountEvent`] and confirm it. Confirming appends to the event store
//! with a compare-and-set on the stream version. A snapshot is stored every
//! [`SNAPSHOT_EVERY`] events. When the grain is activated again (after
//! deactivation or a silo restart), the journal loads the latest snapshot
//! and replays the events after it. [`play`] runs the scenario and reports
//! how the state was rebuilt.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actor_core::BoxError;
use actor_core::prelude::*;
use actor_persistence::{
    EventStore, Journal, JournaledState, PostgresStorage, RedisStorage, SiloBuilderStorageExt,
    SqliteStorage,
};
use serde::{Deserialize, Serialize};

/// The account's state: a fold of its events.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// The balance.
    pub balance: i64,
    /// How many deposits were made.
    pub deposits: u32,
    /// How many withdrawals were made.
    pub withdrawals: u32,
}

/// What happened to an account; stored as JSON such as
/// `{"type":"Deposited","amount":100}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AccountEvent {
    /// Money came in.
    Deposited {
        /// How much.
        amount: i64,
    },
    /// Money went out.
    Withdrawn {
        /// How much.
        amount: i64,
    },
}

impl JournaledState for Account {
    type Event = AccountEvent;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited { amount } => {
                self.balance += amount;
                self.deposits += 1;
            }
            AccountEvent::Withdrawn { amount } => {
                self.balance -= amount;
                self.withdrawals += 1;
            }
        }
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountError {
    /// Amounts must be above zero.
    InvalidAmount(i64),
    /// The withdrawal is larger than the balance; no event was raised.
    InsufficientFunds {
        /// The balance.
        balance: i64,
        /// The amount asked for.
        requested: i64,
    },
    /// The event could not be stored (conflict or outage); the activation
    /// was reset and the next call replays from storage.
    Storage(actor_persistence::Error),
}

/// A snapshot of the account is stored every this many events.
pub const SNAPSHOT_EVERY: u64 = 5;

/// The journal's name within the grain.
pub const JOURNAL_NAME: &str = "account";

/// The account grain (type name `account`).
pub struct AccountGrain {
    journal: Journal<Account>,
}

impl Grain for AccountGrain {
    const TYPE_NAME: &'static str = "account";
}

/// What a grain reports about its journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalInfo {
    /// The state.
    pub account: Account,
    /// Confirmed events.
    pub version: u64,
    /// The latest snapshot's version (0: none).
    pub snapshot_version: u64,
    /// The snapshot the activation was rebuilt from, if any.
    pub rebuilt_from_snapshot: Option<u64>,
    /// The events replayed on activation (after that snapshot).
    pub events_replayed: u64,
}

#[grain_methods]
impl AccountGrain {
    /// Deposits `amount`; answers the new balance.
    pub async fn deposit(
        &mut self,
        amount: i64,
        ctx: &GrainContext<Self>,
    ) -> Result<i64, AccountError> {
        if amount <= 0 {
            return Err(AccountError::InvalidAmount(amount));
        }
        self.record(AccountEvent::Deposited { amount }, ctx).await
    }

    /// Withdraws `amount` if the balance covers it; answers the new
    /// balance.
    pub async fn withdraw(
        &mut self,
        amount: i64,
        ctx: &GrainContext<Self>,
    ) -> Result<i64, AccountError> {
        if amount <= 0 {
            return Err(AccountError::InvalidAmount(amount));
        }
        let balance = self.journal.state().balance;
        if amount > balance {
            return Err(AccountError::InsufficientFunds {
                balance,
                requested: amount,
            });
        }
        self.record(AccountEvent::Withdrawn { amount }, ctx).await
    }

    /// The state and how the journal got it.
    #[read_only]
    pub async fn info(&self) -> JournalInfo {
        let recovery = self.journal.recovery();
        JournalInfo {
            account: self.journal.state().clone(),
            version: self.journal.version(),
            snapshot_version: self.journal.snapshot_version(),
            rebuilt_from_snapshot: recovery.snapshot,
            events_replayed: recovery.events_replayed,
        }
    }

    /// Every stored event, in order.
    #[read_only]
    pub async fn history(&self) -> Result<Vec<(u64, AccountEvent)>, actor_persistence::Error> {
        self.journal.history().await
    }
}

impl AccountGrain {
    async fn record(
        &mut self,
        event: AccountEvent,
        ctx: &GrainContext<Self>,
    ) -> Result<i64, AccountError> {
        self.journal.raise(event);
        self.journal
            .confirm_or_reset(ctx)
            .await
            .map_err(AccountError::Storage)?;
        Ok(self.journal.state().balance)
    }
}

/// Where the events are stored.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A SQLite file (the embedded default).
    Sqlite {
        /// The database file; created if missing.
        path: PathBuf,
    },
    /// PostgreSQL.
    Postgres {
        /// `postgres://user@host:port/db`.
        url: String,
        /// Tables `{prefix}_events`, `{prefix}_snapshots` (`grain` by
        /// default).
        table_prefix: String,
    },
    /// Redis.
    Redis {
        /// `redis://host:port`.
        url: String,
        /// Prefix of every key (`grains:` by default).
        key_prefix: String,
    },
}

/// The PostgreSQL of the project's machines.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The Redis of the project's machines.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

impl Backend {
    /// The default: `example-event-sourcing.db` in the system's temp
    /// directory.
    pub fn default_sqlite() -> Backend {
        Backend::Sqlite {
            path: std::env::temp_dir().join("example-event-sourcing.db"),
        }
    }

    /// Opens a new event store (a new connection pool) on this storage.
    pub async fn open(&self) -> Result<Arc<dyn EventStore>, actor_persistence::Error> {
        Ok(match self {
            Backend::Sqlite { path } => Arc::new(SqliteStorage::open(path).await?),
            Backend::Postgres { url, table_prefix } => Arc::new(
                PostgresStorage::builder(url)
                    .table_prefix(table_prefix)
                    .connect()
                    .await?,
            ),
            Backend::Redis { url, key_prefix } => Arc::new(
                RedisStorage::builder(url)
                    .key_prefix(key_prefix)
                    .connect()
                    .await?,
            ),
        })
    }
}

/// A silo with the account grain on `store` (its default event store).
pub async fn build_silo(store: Arc<dyn EventStore>) -> actor_core::Result<Silo> {
    Silo::builder()
        .name("event-sourcing")
        .with_default_event_store(store)
        .grain_with_async(|ctx| async move {
            Ok(AccountGrain {
                journal: Journal::load(&ctx, JOURNAL_NAME)
                    .await?
                    .snapshot_every(SNAPSHOT_EVERY),
            })
        })
        .start()
        .await
}

/// What the scenario saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The journal as first loaded.
    pub at_start: JournalInfo,
    /// The live journal after the commands.
    pub live: JournalInfo,
    /// A fresh activation after deactivation, rebuilt from storage.
    pub rebuilt: JournalInfo,
    /// After a silo restart and one more deposit.
    pub after_restart: JournalInfo,
    /// The stored history at the end.
    pub history: Vec<(u64, AccountEvent)>,
}

/// The commands of the scenario: `(deposit?, amount)`. One withdrawal is
/// refused (insufficient funds) and raises no event.
pub const COMMANDS: [(bool, i64); 7] = [
    (true, 100),
    (true, 50),
    (false, 30),
    (true, 20),
    (false, 500),
    (true, 10),
    (false, 40),
];

/// Plays the scenario on `backend` with the account `key`; `say` receives
/// a line per step.
pub async fn play(
    backend: &Backend,
    key: &str,
    mut say: impl FnMut(String),
) -> Result<Outcome, BoxError> {
    let silo = build_silo(backend.open().await?).await?;
    let account = silo.get_grain::<AccountGrain>(key);
    let at_start = account.info().await?;
    say(format!(
        "account/{key}: activated at version {} (balance {})",
        at_start.version, at_start.account.balance
    ));
    for (deposit, amount) in COMMANDS {
        let (verb, outcome) = if deposit {
            ("deposit", account.deposit(amount).await?)
        } else {
            ("withdraw", account.withdraw(amount).await?)
        };
        match outcome {
            Ok(balance) => say(format!("{verb} {amount}: event stored, balance {balance}")),
            Err(AccountError::Storage(e)) => return Err(e.into()),
            Err(refused) => say(format!("{verb} {amount}: refused, no event ({refused:?})")),
        }
    }
    let live = account.info().await?;
    say(format!(
        "live state at version {}: {:?}; latest snapshot at version {}",
        live.version, live.account, live.snapshot_version
    ));

    if !silo.deactivate_all(Duration::from_secs(10)).await {
        return Err("deactivation did not finish".into());
    }
    let rebuilt = account.info().await?;
    say(format!(
        "deactivated; the new activation rebuilt {:?} from {} + {} event(s)",
        rebuilt.account,
        rebuilt
            .rebuilt_from_snapshot
            .map_or("no snapshot".to_owned(), |v| format!(
                "the snapshot at version {v}"
            )),
        rebuilt.events_replayed
    ));
    silo.shutdown().await;

    let silo = build_silo(backend.open().await?).await?;
    let account = silo.get_grain::<AccountGrain>(key);
    account
        .deposit(5)
        .await?
        .map_err(|e| format!("deposit after restart: {e:?}"))?;
    let after_restart = account.info().await?;
    say(format!(
        "new silo: deposit 5 appended as version {}, balance {}",
        after_restart.version, after_restart.account.balance
    ));
    let history = account.history().await??;
    say(format!(
        "stored history: {} events, the last {:?}",
        history.len(),
        history.last().map(|(_, e)| e)
    ));
    silo.shutdown().await;
    Ok(Outcome {
        at_start,
        live,
        rebuilt,
        after_restart,
        history,
    })
}
