//! # Course exercise 15: a counter whose state outlives its activation
//!
//! **The original** (MicrosoftOrleansPersistence) declares a counter grain
//! with `[PersistentState("counter", "redis")] IPersistentState<CounterState>`,
//! calls `WriteStateAsync()` after each increment, and calls
//! `DeactivateOnIdle()`: the next call activates the grain afresh, Orleans
//! loads the state from Redis before `OnActivateAsync`, and the count goes
//! on where it stopped. The lesson: a grain's memory is a cache; what
//! survives is what was written to storage.
//!
//! **The grain version** is the same [`Counter`]: its count is a
//! [`PersistentState<CounterState>`] named `counter`, loaded in the
//! grain's async factory (before `on_activate`) from the silo's default
//! storage provider, and written before each increment is acknowledged.
//! [`Backend`] picks the provider: a SQLite file (the default), PostgreSQL
//! or Redis. [`play`] runs the scenario: increment, deactivate every grain
//! (`Silo::deactivate_all`), increment again (the count was reloaded), shut
//! the silo down, start a new silo on the same storage, increment again.
//!
//! Writes are compare-and-set on an ETag: an activation whose copy is
//! stale (someone else wrote since it loaded) gets a conflict error instead
//! of overwriting, and is reset so that its next call reloads.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actor_core::BoxError;
use actor_core::prelude::*;
use actor_persistence::{
    Error, PersistentState, PostgresStorage, RedisStorage, SiloBuilderStorageExt, SqliteStorage,
    StateKey, StorageProvider,
};
use serde::{Deserialize, Serialize};

/// The stored state: what `PersistentState` writes as JSON
/// (`{"value":3}`).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct CounterState {
    /// The count.
    pub value: u64,
}

/// The counter grain (type name `counter`).
pub struct Counter {
    state: PersistentState<CounterState>,
}

impl Grain for Counter {
    const TYPE_NAME: &'static str = "counter";
}

/// The name of the counter's state (Orleans' `[PersistentState("counter")]`).
pub const STATE_NAME: &str = "counter";

#[grain_methods]
impl Counter {
    /// Adds one, stores it, and answers the new count. A failed write
    /// (conflict or outage) is returned as the error and resets the
    /// activation: the count is never reported if it was not stored.
    pub async fn increment(&mut self, ctx: &GrainContext<Self>) -> Result<u64, Error> {
        self.state.value += 1;
        self.state.write_or_reset(ctx).await?;
        Ok(self.state.value)
    }

    /// The count as loaded or last written.
    #[read_only]
    pub async fn get(&self) -> u64 {
        self.state.value
    }

    /// Whether storage held a record when the state was loaded or written.
    #[read_only]
    pub async fn record_exists(&self) -> bool {
        self.state.record_exists()
    }

    /// Deactivates after this call, like Orleans' `DeactivateOnIdle()`.
    pub async fn deactivate(&mut self, ctx: &GrainContext<Self>) {
        ctx.deactivate_on_idle();
    }
}

/// Where the counter is stored.
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
        /// Tables `{prefix}_state`, ... (`grain` by default).
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
    /// The default: `example-persistence.db` in the system's temp directory.
    pub fn default_sqlite() -> Backend {
        Backend::Sqlite {
            path: std::env::temp_dir().join("example-persistence.db"),
        }
    }

    /// PostgreSQL at `url` with the default tables.
    pub fn postgres(url: impl Into<String>) -> Backend {
        Backend::Postgres {
            url: url.into(),
            table_prefix: actor_persistence::DEFAULT_TABLE_PREFIX.into(),
        }
    }

    /// Redis at `url` with the default key prefix.
    pub fn redis(url: impl Into<String>) -> Backend {
        Backend::Redis {
            url: url.into(),
            key_prefix: actor_persistence::DEFAULT_KEY_PREFIX.into(),
        }
    }

    /// Opens a new provider (a new connection pool) on this storage.
    pub async fn open(&self) -> Result<Arc<dyn StorageProvider>, Error> {
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

/// A silo with the counter grain on `storage` (its default provider).
pub async fn build_silo(storage: Arc<dyn StorageProvider>) -> actor_core::Result<Silo> {
    Silo::builder()
        .name("persistence")
        .with_default_storage(storage)
        .grain_with_async(|ctx| async move {
            Ok(Counter {
                state: PersistentState::load(&ctx, STATE_NAME).await?,
            })
        })
        .start()
        .await
}

/// What the scenario saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The count found in storage when the scenario began.
    pub at_start: u64,
    /// After the first increments.
    pub before_deactivation: u64,
    /// After deactivating every grain and incrementing once more.
    pub after_deactivation: u64,
    /// After a silo restart on the same storage and one more increment.
    pub after_restart: u64,
    /// The record as stored at the end (the JSON text) and its ETag.
    pub stored: (String, String),
}

/// Increments the counter `key` by this many before deactivating.
pub const FIRST_INCREMENTS: u64 = 3;

/// Plays the scenario on `backend` with the counter `key`; `say` receives
/// a line per step.
pub async fn play(
    backend: &Backend,
    key: &str,
    mut say: impl FnMut(String),
) -> Result<Outcome, BoxError> {
    let silo = build_silo(backend.open().await?).await?;
    let counter = silo.get_grain::<Counter>(key);
    let at_start = counter.get().await?;
    let existed = counter.record_exists().await?;
    say(format!(
        "counter/{key}: activated, loaded {at_start} from storage ({})",
        if existed {
            "record found"
        } else {
            "no record yet"
        }
    ));
    let mut value = at_start;
    for _ in 0..FIRST_INCREMENTS {
        value = counter.increment().await??;
    }
    say(format!(
        "incremented {FIRST_INCREMENTS} times, each written before it was acknowledged: {value}"
    ));

    let all_gone = silo.deactivate_all(Duration::from_secs(10)).await;
    say(format!(
        "deactivated every grain ({} activations left)",
        silo.activation_count()
    ));
    if !all_gone {
        return Err("deactivation did not finish".into());
    }
    let after_deactivation = counter.increment().await??;
    say(format!(
        "incremented a fresh activation, which loaded {value} first: {after_deactivation}"
    ));
    silo.shutdown().await;
    say("shut the silo down".into());

    let silo = build_silo(backend.open().await?).await?;
    let counter = silo.get_grain::<Counter>(key);
    let after_restart = counter.increment().await??;
    say(format!(
        "new silo on the same storage: incremented to {after_restart}"
    ));

    let storage = backend.open().await?;
    let record = storage
        .read(&StateKey::new(counter.id(), STATE_NAME))
        .await?
        .ok_or("the counter has no stored record")?;
    let stored = (
        String::from_utf8_lossy(&record.data).into_owned(),
        record.etag.to_string(),
    );
    say(format!("stored record: {} (ETag {})", stored.0, stored.1));
    silo.shutdown().await;
    Ok(Outcome {
        at_start,
        before_deactivation: value,
        after_deactivation,
        after_restart,
        stored,
    })
}
