//! Grain state in a SQLite file: the embedded default. Several silo
//! processes on one machine may share the file.
//!
//! Each write is one conditional statement (an `UPDATE ... WHERE etag = ?`
//! or an `INSERT ... ON CONFLICT DO NOTHING`), atomic under SQLite's write
//! lock; the affected-row count tells whether the compare-and-set held.
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
use crate::sql::{check_table_name, classify};

const PROVIDER: &str = "sqlite";

/// The default table-name prefix: tables `grain_state`, `grain_events` and
/// `grain_snapshots`.
pub const DEFAULT_TABLE_PREFIX: &str = "grain";

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

    async fn current_etag(&self, key: &StateKey) -> Result<Option<ETag>> {
        let row = sqlx::query(&self.sql.etag)
            .bind(key.grain_type())
            .bind(key.grain_id())
            .bind(key.name())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| ETag::from(r.get::<String, _>(0))))
    }

    async fn read_row(&self, key: &StateKey) -> Result<Option<StoredState>> {
        let row = sqlx::query(&self.sql.read)
            .bind(key.grain_type())
            .bind(key.grain_id())
            .bind(key.name())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| StoredState {
            data: r.get(0),
            etag: ETag::from(r.get::<String, _>(1)),
        }))
    }

    async fn write_row(
        &self,
        key: &StateKey,
        data: &[u8],
        expected: Option<&ETag>,
    ) -> Result<ETag> {
        let etag = ETag::generate();
        let query = match expected {
            None => sqlx::query(&self.sql.insert),
            Some(_) => sqlx::query(&self.sql.update),
        };
        let mut query = query
            .bind(key.grain_type())
            .bind(key.grain_id())
            .bind(key.name())
            .bind(etag.as_str())
            .bind(data);
        if let Some(expected) = expected {
            query = query.bind(expected.as_str());
        }
        let done = query.execute(&self.pool).await.map_err(|e| self.err(e))?;
        if done.rows_affected() == 1 {
            Ok(etag)
        } else {
            Err(Error::Conflict {
                key: key.to_string(),
                expected: expected.cloned(),
                actual: self.current_etag(key).await?,
            })
        }
    }

    async fn clear_row(&self, key: &StateKey, expected: Option<&ETag>) -> Result<()> {
        let Some(expected) = expected else {
            return match self.current_etag(key).await? {
                None => Ok(()),
                actual => Err(Error::Conflict {
                    key: key.to_string(),
                    expected: None,
                    actual,
                }),
            };
        };
        let done = sqlx::query(&self.sql.delete)
            .bind(key.grain_type())
            .bind(key.grain_id())
            .bind(key.name())
            .bind(expected.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(Error::Conflict {
                key: key.to_string(),
                expected: Some(expected.clone()),
                actual: self.current_etag(key).await?,
            })
        }
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

impl StorageProvider for SqliteStorage {
    fn describe(&self) -> String {
        self.url.to_string()
    }

    fn read<'a>(&'a self, key: &'a StateKey) -> BoxFuture<'a, Result<Option<StoredState>>> {
        Box::pin(self.read_row(key))
    }

    fn write<'a>(
        &'a self,
        key: &'a StateKey,
        data: &'a [u8],
        expected: Option<&'a ETag>,
    ) -> BoxFuture<'a, Result<ETag>> {
        Box::pin(self.write_row(key, data, expected))
    }

    fn clear<'a>(
        &'a self,
        key: &'a StateKey,
        expected: Option<&'a ETag>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.clear_row(key, expected))
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl SqliteStorage {
    async fn stream_version(&self, stream: &StateKey) -> Result<u64> {
        let v: i64 = sqlx::query_scalar(&self.sql.events_version)
            .bind(stream.grain_type())
            .bind(stream.grain_id())
            .bind(stream.name())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(v.max(0) as u64)
    }

    async fn conflict(&self, stream: &StateKey, expected: u64) -> Error {
        match self.stream_version(stream).await {
            Ok(actual) => Error::VersionConflict {
                stream: stream.to_string(),
                expected,
                actual,
            },
            Err(e) => e,
        }
    }

    async fn append_events(
        &self,
        stream: &StateKey,
        expected: u64,
        events: &[Vec<u8>],
    ) -> Result<u64> {
        let Some((first, rest)) = events.split_first() else {
            let actual = self.stream_version(stream).await?;
            return if actual == expected {
                Ok(actual)
            } else {
                Err(Error::VersionConflict {
                    stream: stream.to_string(),
                    expected,
                    actual,
                })
            };
        };
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.err(e))?;
        // The first row carries the version check; the primary key
        // (stream, version) makes one of two racing appends fail.
        let first = sqlx::query(&self.sql.events_append_first)
            .bind(stream.grain_type())
            .bind(stream.grain_id())
            .bind(stream.name())
            .bind(to_i64(expected + 1))
            .bind(first.as_slice())
            .bind(to_i64(expected))
            .execute(&mut *tx)
            .await;
        match first {
            Ok(done) if done.rows_affected() == 1 => {}
            Ok(_) => {
                drop(tx);
                return Err(self.conflict(stream, expected).await);
            }
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                drop(tx);
                return Err(self.conflict(stream, expected).await);
            }
            Err(e) => return Err(self.err(e)),
        }
        for (i, event) in rest.iter().enumerate() {
            sqlx::query(&self.sql.events_insert)
                .bind(stream.grain_type())
                .bind(stream.grain_id())
                .bind(stream.name())
                .bind(to_i64(expected + 2 + i as u64))
                .bind(event.as_slice())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(expected + events.len() as u64)
    }

    async fn events_after(&self, stream: &StateKey, after: u64) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(&self.sql.events_read)
            .bind(stream.grain_type())
            .bind(stream.grain_id())
            .bind(stream.name())
            .bind(to_i64(after))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(|r| StoredEvent {
                version: r.get::<i64, _>(0).max(0) as u64,
                data: r.get(1),
            })
            .collect())
    }

    async fn snapshot(&self, stream: &StateKey) -> Result<Option<Snapshot>> {
        let row = sqlx::query(&self.sql.snapshot_read)
            .bind(stream.grain_type())
            .bind(stream.grain_id())
            .bind(stream.name())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| Snapshot {
            version: r.get::<i64, _>(0).max(0) as u64,
            data: r.get(1),
        }))
    }

    async fn store_snapshot(&self, stream: &StateKey, snapshot: &Snapshot) -> Result<()> {
        sqlx::query(&self.sql.snapshot_write)
            .bind(stream.grain_type())
            .bind(stream.grain_id())
            .bind(stream.name())
            .bind(to_i64(snapshot.version))
            .bind(snapshot.data.as_slice())
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

impl EventStore for SqliteStorage {
    fn describe(&self) -> String {
        self.url.to_string()
    }

    fn read_events<'a>(
        &'a self,
        stream: &'a StateKey,
        after: u64,
    ) -> BoxFuture<'a, Result<Vec<StoredEvent>>> {
        Box::pin(self.events_after(stream, after))
    }

    fn version<'a>(&'a self, stream: &'a StateKey) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.stream_version(stream))
    }

    fn append<'a>(
        &'a self,
        stream: &'a StateKey,
        expected: u64,
        events: &'a [Vec<u8>],
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.append_events(stream, expected, events))
    }

    fn read_snapshot<'a>(
        &'a self,
        stream: &'a StateKey,
    ) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        Box::pin(self.snapshot(stream))
    }

    fn write_snapshot<'a>(
        &'a self,
        stream: &'a StateKey,
        snapshot: &'a Snapshot,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.store_snapshot(stream, snapshot))
    }
}
