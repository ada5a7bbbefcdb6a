//! Grain state in a SQLite file: the embedded default. Several silo
//! processes on one machine may share the file.
//!
//! Each write is one conditional statement (an `UPDATE ... WHERE etag = ?`
//! or an `INSERT ... ON CONFLICT DO NOTHING`), atomic under SQLite's write
//! lock; the affected-row count tells whether the compare-and-set held.
//! Updates issued at the same time are group-committed: one write
//! transaction holds them all, so they share one commit (see
//! `group_commit.rs`); each keeps its own ETag check.
//! The file runs in WAL mode with `synchronous = FULL`: an acknowledged
//! write survives a crash of the process or of the machine.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row};

use crate::error::{Error, Result};
use crate::etag::ETag;
use crate::event_store::{EventStore, Snapshot, StoredEvent};
use crate::provider::{BoxFuture, StateKey, StorageProvider, StoredState};
use crate::sql::{DEFAULT_TABLE_PREFIX, check_table_name, classify};

const PROVIDER: &str = "sqlite";

/// Grain state (and journals, see [`EventStore`](crate::EventStore)) in a
/// SQLite database file, through sqlx. Cheap to clone: clones share one
/// connection pool.
///
/// ```no_run
/// # async fn f() -> actor_persistence::Result<()> {
/// use actor_persistence::SqliteStorage;
/// let storage = SqliteStorage::open("grains.db").await?;   // created if missing
/// # Ok(()) }
/// ```
///
/// The tables are created on open if missing (see [`SqliteStorage::schema`]
/// for the DDL, to run it yourself). The file runs in WAL mode with
/// `synchronous = FULL`: an acknowledged write survives a crash of the
/// process or of the machine. Several processes may open the same file;
/// SQLite runs one writer at a time.
#[derive(Clone)]
pub struct SqliteStorage {
    pub(crate) pool: SqlitePool,
    pub(crate) url: Arc<str>,
    pub(crate) sql: Arc<Statements>,
    /// Updates waiting to be committed together.
    pub(crate) batch: crate::group_commit::Shared,
}

pub(crate) struct Statements {
    pub(crate) prefix: String,
    read: String,
    etag: String,
    insert: String,
    update: String,
    delete: String,
    pub(crate) events_append_first: String,
    pub(crate) events_insert: String,
    pub(crate) events_read: String,
    pub(crate) events_version: String,
    pub(crate) snapshot_read: String,
    pub(crate) snapshot_write: String,
}

impl Statements {
    fn new(prefix: &str) -> Self {
        let s = format!("{prefix}_state");
        let e = format!("{prefix}_events");
        let n = format!("{prefix}_snapshots");
        let pk = "grain_type = ?1 AND grain_id = ?2 AND state_name = ?3";
        let spk = "grain_type = ?1 AND grain_id = ?2 AND stream_name = ?3";
        Statements {
            prefix: prefix.to_owned(),
            read: format!("SELECT payload, etag FROM {s} WHERE {pk}"),
            etag: format!("SELECT etag FROM {s} WHERE {pk}"),
            insert: format!(
                "INSERT INTO {s} (grain_type, grain_id, state_name, etag, payload, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) \
                 ON CONFLICT (grain_type, grain_id, state_name) DO NOTHING"
            ),
            update: format!(
                "UPDATE {s} SET etag = ?4, payload = ?5, \
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE {pk} AND etag = ?6"
            ),
            delete: format!("DELETE FROM {s} WHERE {pk} AND etag = ?4"),
            // The first event of an append carries the version check: it
            // is inserted only if the log is at the expected version.
            events_append_first: format!(
                "INSERT INTO {e} (grain_type, grain_id, stream_name, version, payload, created_at) \
                 SELECT ?1, ?2, ?3, ?4, ?5, strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                 WHERE (SELECT COALESCE(MAX(version), 0) FROM {e} WHERE {spk}) = ?6"
            ),
            events_insert: format!(
                "INSERT INTO {e} (grain_type, grain_id, stream_name, version, payload, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
            ),
            events_read: format!(
                "SELECT version, payload FROM {e} WHERE {spk} AND version > ?4 ORDER BY version"
            ),
            events_version: format!("SELECT COALESCE(MAX(version), 0) FROM {e} WHERE {spk}"),
            snapshot_read: format!("SELECT version, payload FROM {n} WHERE {spk}"),
            snapshot_write: format!(
                "INSERT INTO {n} (grain_type, grain_id, stream_name, version, payload, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) \
                 ON CONFLICT (grain_type, grain_id, stream_name) DO UPDATE SET \
                 version = excluded.version, payload = excluded.payload, created_at = excluded.created_at \
                 WHERE excluded.version > {n}.version"
            ),
        }
    }
}

/// Configures a [`SqliteStorage`]; start from [`SqliteStorage::builder`].
#[derive(Debug, Clone)]
pub struct SqliteStorageBuilder {
    target: String,
    prefix: String,
    busy_timeout: Duration,
    max_connections: u32,
    group_commit: bool,
}

impl SqliteStorageBuilder {
    /// Tables `{prefix}_state`, `{prefix}_events` and `{prefix}_snapshots`
    /// (default prefix `grain`).
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a statement waits for another connection's write lock
    /// before failing as unavailable (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Connections in the pool (default 4; SQLite runs one writer at a
    /// time whatever the pool size).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Whether updates issued at the same time are committed together, in
    /// one write transaction, each with its own ETag check (default: yes:
    /// SQLite runs one write transaction at a time, and each commit is an
    /// fsync of the WAL, so a batch of N updates costs one fsync instead of
    /// N). Off, each update is its own statement and transaction. The
    /// durability is the same either way: a write is acknowledged after
    /// its commit.
    pub fn group_commit(mut self, on: bool) -> Self {
        self.group_commit = on;
        self
    }

    /// Opens (creating if needed) the database file and its tables.
    pub async fn open(self) -> Result<SqliteStorage> {
        check_table_name(&format!("{}_snapshots", self.prefix))?;
        let url = if self.target.starts_with("sqlite:") {
            self.target.clone()
        } else {
            format!("sqlite:{}", self.target)
        };
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(|e| Error::Config(format!("invalid SQLite location `{url}`: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(self.busy_timeout);
        // One connection first, so that a bad path fails with SQLite's own
        // reason instead of a pool timeout.
        let mut probe = options
            .connect()
            .await
            .map_err(|e| classify(PROVIDER, &url, e))?;
        let sql = Statements::new(&self.prefix);
        for ddl in SqliteStorage::schema(&self.prefix) {
            sqlx::query(&ddl)
                .execute(&mut probe)
                .await
                .map_err(|e| classify(PROVIDER, &url, e))?;
        }
        let _ = probe.close().await;
        let pool = SqlitePoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.busy_timeout + Duration::from_secs(5))
            .connect_lazy_with(options);
        Ok(SqliteStorage {
            pool,
            url: url.into(),
            sql: Arc::new(sql),
            // Group commit with one writer: SQLite runs one write transaction at a time.
            batch: crate::group_commit::GroupCommit::new(self.group_commit, 1),
        })
    }
}

impl SqliteStorage {
    /// Opens the database file at `path` (created if missing) with the
    /// default tables.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder(path.as_ref().to_string_lossy()).open().await
    }

    /// Configures storage in the file at `location`: a path, or a sqlx
    /// SQLite URL (`sqlite:/path/to/file.db?mode=rwc`).
    pub fn builder(location: impl Into<String>) -> SqliteStorageBuilder {
        SqliteStorageBuilder {
            target: location.into(),
            prefix: DEFAULT_TABLE_PREFIX.to_owned(),
            busy_timeout: Duration::from_secs(5),
            max_connections: 4,
            group_commit: true,
        }
    }

    /// The DDL the provider runs on open, for tables prefixed `prefix`
    /// (idempotent: `CREATE ... IF NOT EXISTS`).
    ///
    /// - `{prefix}_state`: one row per grain state; `payload` holds the
    ///   state (UTF-8 JSON when written by `PersistentState`), `etag` the
    ///   compare-and-set token.
    /// - `{prefix}_events`: one row per journal event, `version` counting
    ///   from 1 per stream.
    /// - `{prefix}_snapshots`: the latest snapshot of each journal.
    pub fn schema(prefix: &str) -> Vec<String> {
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {prefix}_state (
    grain_type TEXT NOT NULL,
    grain_id   TEXT NOT NULL,
    state_name TEXT NOT NULL,
    etag       TEXT NOT NULL,
    payload    BLOB NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (grain_type, grain_id, state_name)
)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {prefix}_events (
    grain_type  TEXT    NOT NULL,
    grain_id    TEXT    NOT NULL,
    stream_name TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    payload     BLOB    NOT NULL,
    created_at  TEXT    NOT NULL,
    PRIMARY KEY (grain_type, grain_id, stream_name, version)
)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {prefix}_snapshots (
    grain_type  TEXT    NOT NULL,
    grain_id    TEXT    NOT NULL,
    stream_name TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    payload     BLOB    NOT NULL,
    created_at  TEXT    NOT NULL,
    PRIMARY KEY (grain_type, grain_id, stream_name)
)"
            ),
        ]
    }

    /// The connection pool, to run your own queries on the same file.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The name of the state table (`{prefix}_state`).
    pub fn state_table(&self) -> String {
        format!("{}_state", self.sql.prefix)
    }

    pub(crate) fn err(&self, e: sqlx::Error) -> Error {
        classify(PROVIDER, &self.url, e)
    }

    /// A write transaction: `BEGIN IMMEDIATE` takes SQLite's write lock
    /// up front, so two racing appends queue instead of deadlocking.
    async fn begin(&self) -> Result<sqlx::Transaction<'_, sqlx::Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.err(e))
    }

    /// A batch of group-committed updates in one write transaction (one
    /// commit, one fsync): whether each one's ETag held.
    async fn update_batch(&self, batch: &[crate::group_commit::PendingWrite]) -> Result<Vec<bool>> {
        let mut tx = self.begin().await?;
        let mut applied = Vec::with_capacity(batch.len());
        for w in batch {
            let done = sqlx::query(&self.sql.update)
                .bind(w.key.grain_type())
                .bind(w.key.grain_id())
                .bind(w.key.name())
                .bind(w.etag.as_str())
                .bind(w.data.as_slice())
                .bind(w.expected.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
            applied.push(done.rows_affected() == 1);
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(applied)
    }

    /// SQLite needs no bound of its own: the busy timeout already bounds
    /// every statement's wait for the file's lock.
    fn bounded<F>(&self, op: F) -> F {
        op
    }
}

impl std::fmt::Debug for SqliteStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStorage")
            .field("url", &self.url)
            .field("table_prefix", &self.sql.prefix)
            .finish_non_exhaustive()
    }
}

crate::sql_provider::sql_provider!(SqliteStorage);
