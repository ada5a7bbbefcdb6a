//! # actor-persistence: grain state that outlives activations
//!
//! Grains keep state across deactivation and silo restarts by storing it
//! through a [`StorageProvider`]: one record per (grain type, grain id,
//! state name), each write a compare-and-set on the record's [`ETag`], so
//! that a stale copy can never silently overwrite newer state. Providers:
//!
//! | provider | where | use it for |
//! |---|---|---|
//! | [`MemoryStorage`] | process memory | tests, examples, simulations |
//! | [`SqliteStorage`] | a SQLite file (sqlx) | the embedded default; several local processes may share the file |
//! | [`PostgresStorage`] | PostgreSQL (sqlx) | real deployments |
//! | [`RedisStorage`] | Redis (Lua compare-and-set) | shared, fast storage |
//!
//! The SQL providers can group-commit: updates that grains issue at the same
//! time go to the database in one transaction, each with its own ETag
//! check, and each is acknowledged only after that transaction commits (the
//! durability of a single-row write). On by default for SQLite, where it
//! turns N fsyncs into one; off by default for PostgreSQL, whose server
//! already joins concurrent commits (see the builders' `group_commit` and
//! BENCHMARKS.md's storage figures).
//!
//! On top of them: [`PersistentState<T>`] (Orleans' `IPersistentState<T>`:
//! a typed, named state in a grain, with `read` / `write` / `clear` and an
//! ETag), and [`Journal<S>`] for event-sourced grains (Orleans'
//! `JournaledGrain`: raise events, confirm them with a compare-and-set on
//! the stream version, rebuild by replay from the latest snapshot).
//!
//! And durable reminders ([`ReminderService`] over a [`ReminderTable`] in
//! memory, SQLite or PostgreSQL): named timers of a grain that survive
//! deactivation, silo restart and silo death, delivered as
//! [`ReminderTick`] messages by the silo that owns the grain.
//!
//! ## A tour
//!
//! Register providers on the silo by name (one of them the default), and
//! load each state in the grain's async factory, so it is there before
//! `on_activate` and the first call:
//!
//! ```
//! use actor_core::prelude::*;
//! use actor_persistence::{MemoryStorage, PersistentState, SiloBuilderStorageExt};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Count { value: u64 }
//!
//! struct Counter { count: PersistentState<Count> }
//!
//! impl Grain for Counter {
//!     const TYPE_NAME: &'static str = "counter";
//! }
//!
//! #[grain_methods]
//! impl Counter {
//!     /// Adds one and stores it before answering.
//!     pub async fn increment(&mut self, ctx: &GrainContext<Self>) -> Result<u64, actor_persistence::Error> {
//!         self.count.value += 1;
//!         // On a conflict or an outage: the error goes to the caller and
//!         // the activation is dropped, so the next call reloads.
//!         self.count.write_or_reset(ctx).await?;
//!         Ok(self.count.value)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let storage = MemoryStorage::new();
//! let silo = Silo::builder()
//!     .with_default_storage(storage.clone())
//!     .grain_with_async(|ctx| async move {
//!         Ok(Counter { count: PersistentState::load(&ctx, "count").await? })
//!     })
//!     .start()
//!     .await?;
//!
//! let counter = silo.get_grain::<Counter>("visits");
//! assert_eq!(counter.increment().await??, 1);
//! assert_eq!(counter.increment().await??, 2);
//!
//! // Deactivate everything: the next call loads the stored count.
//! silo.deactivate_all(std::time::Duration::from_secs(5)).await;
//! assert_eq!(counter.increment().await??, 3);
//! silo.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Swap `MemoryStorage::new()` for `SqliteStorage::open("grains.db").await?`,
//! `PostgresStorage::connect("postgres://...").await?` or
//! `RedisStorage::connect("redis://...").await?`; nothing else changes.
//! Register more providers with `.with_storage("archive", provider)` and
//! load from one with [`PersistentState::load_from`]. A grain may hold
//! several states, each under its own name.
//!
//! ## Conflicts, outages and resets
//!
//! A provider refuses a write whose expected ETag is not the stored one
//! ([`Error::Conflict`], naming both ETags); of concurrent writers with the
//! same ETag exactly one wins. Within one silo a grain has one activation,
//! so conflicts mean a second writer: another silo's activation of the same
//! grain, a tool, or a state loaded twice.
//!
//! An unreachable service fails with [`Error::Unavailable`], naming the
//! provider's address. A write that fails that way may or may not have been
//! applied, so the in-memory value is not trusted any more either.
//!
//! Either way the grain must not report success, and its state is unknown:
//! return the error to the caller and drop the activation so that the next
//! call loads the state again. [`PersistentState::write_or_reset`] and
//! [`Journal::confirm_or_reset`] do both (they call
//! `GrainContext::deactivate_on_idle` on error). Until it is reloaded, a
//! stale copy keeps failing every write: nothing is overwritten by mistake.
//!
//! ## State is JSON
//!
//! [`PersistentState`] and [`Journal`] store values with `serde_json`, not
//! with the wire codec (bincode). Stored state outlives the code that wrote
//! it, so its format must be:
//!
//! - **explicit and stable**: field names are in the data; adding a field
//!   with `#[serde(default)]`, or removing one, reads old records fine,
//!   where a positional binary format would misread them;
//! - **readable**: `SELECT convert_from(payload, 'UTF8') FROM grain_state`,
//!   `sqlite3 grains.db "SELECT CAST(payload AS TEXT) FROM grain_state"` or
//!   `redis-cli HGET <key> data` show the state as text;
//! - **migratable by users**: a change of shape can be done in place with
//!   the database's JSON functions or a small script, without this crate.
//!
//! The cost is size and speed, which matter less for state written once
//! per change than for messages. Providers themselves store bytes: a custom
//! provider or tool may store anything, but `PersistentState` reads JSON.
//!
//! ## Schema and key layout
//!
//! The SQL providers create their tables on open (`CREATE TABLE IF NOT
//! EXISTS`; Postgres under an advisory lock so that silos starting together
//! do not race); [`SqliteStorage::schema`] and [`PostgresStorage::schema`]
//! give the DDL to run by hand instead. With the default prefix `grain`:
//!
//! ```text
//! grain_state     (grain_type, grain_id, state_name) PRIMARY KEY,
//!                 etag TEXT, payload BLOB/BYTEA, updated_at
//! grain_events    (grain_type, grain_id, stream_name, version) PRIMARY KEY,
//!                 payload BLOB/BYTEA, created_at
//! grain_snapshots (grain_type, grain_id, stream_name) PRIMARY KEY,
//!                 version, payload BLOB/BYTEA, created_at
//! ```
//!
//! `grain_id` is the id's stable storage form, `GrainId::storage_key`:
//! `type/<kind>:key` (such as `counter/i:42` for the integer key 42 and
//! `counter/s:42` for the string key "42"), so keys of different kinds
//! never share a record. A write is one conditional statement (`UPDATE ... WHERE
//! etag = ?` or `INSERT ... ON CONFLICT DO NOTHING`) whose row count says
//! whether the compare-and-set held. A journal append is one transaction
//! whose first insert carries the version check (`INSERT ... SELECT ...
//! WHERE max(version) = expected`); the primary key makes one of two racing
//! appends fail. Redis keeps a hash per record at `grains:{grain
//! type}/{state name}/{grain key}`, and a list per journal (see
//! [`RedisStorage`]); Lua scripts do the compare-and-set.
//!
//! ETags are random UUIDs minted on every write. They never repeat, so an
//! old ETag cannot match a record that was cleared and created again.
//!
//! ## Event-sourced grains
//!
//! Implement [`JournaledState`] (a state, its event type and `apply`), hold
//! a [`Journal`] in the grain, [`raise`](Journal::raise) events and
//! [`confirm`](Journal::confirm) them. Events append to an [`EventStore`]
//! only if the stream is still at the version the journal read
//! ([`Error::VersionConflict`] otherwise). All four providers are event
//! stores too; register one with `with_default_event_store(store)` or
//! `with_event_store(name, store)`. With
//! [`snapshot_every(n)`](Journal::snapshot_every) a snapshot of the state
//! is stored every `n` events, and loading replays the latest snapshot plus
//! the events after it.
//!
//! ## Feature flags
//!
//! - `sqlite` (default): [`SqliteStorage`], and [`SqlReminders`] on `sqlite://` URLs.
//! - `postgres`: [`PostgresStorage`], and [`SqlReminders`] on `postgres://` URLs.
//! - `redis`: [`RedisStorage`].
//!
//! [`MemoryStorage`] and [`MemoryReminders`] are always there; a reminder
//! URL whose feature is off is refused with [`Error::Config`] naming it.

// These docs name every provider; a build without some of them has
// nothing to link to (a build with all of them checks every link).
#![cfg_attr(
    not(all(feature = "sqlite", feature = "postgres", feature = "redis")),
    allow(rustdoc::broken_intra_doc_links)
)]

mod error;
mod etag;
mod event_store;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod group_commit;
mod journal;
mod memory_storage;
mod persistent_state;
#[cfg(feature = "postgres")]
mod postgres_storage;
mod provider;
#[cfg(feature = "redis")]
mod redis_storage;
mod reminders;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
mod sql;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql_provider;
#[cfg(feature = "sqlite")]
mod sqlite_storage;
mod storage_registry;

pub use error::{Error, Result};
pub use etag::ETag;
pub use event_store::{EventStore, Snapshot, StoredEvent};
pub use journal::{Journal, JournaledState, Recovery};
pub use memory_storage::MemoryStorage;
pub use persistent_state::PersistentState;
#[cfg(feature = "postgres")]
pub use postgres_storage::{PostgresStorage, PostgresStorageBuilder};
pub use provider::{BoxFuture, StateKey, StorageProvider, StoredState};
#[cfg(feature = "redis")]
pub use redis_storage::{DEFAULT_KEY_PREFIX, RedisStorage, RedisStorageBuilder};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use reminders::SqlReminders;
pub use reminders::{
    MemoryReminders, Ownership, Reminder, ReminderService, ReminderTable, ReminderTick,
    SiloBuilderRemindersExt,
};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::DEFAULT_TABLE_PREFIX;
#[cfg(feature = "sqlite")]
pub use sqlite_storage::{SqliteStorage, SqliteStorageBuilder};
pub use storage_registry::{
    DEFAULT_STORAGE, SiloBuilderStorageExt, SiloStorageExt, StateContext, StorageRegistry,
};

/// The names a grain author needs, in one `use`.
pub mod prelude {
    pub use crate::{
        Journal, JournaledState, PersistentState, SiloBuilderStorageExt, SiloStorageExt,
    };
}
