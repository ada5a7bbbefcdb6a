//! Grain state in PostgreSQL: the provider for real deployments.
//!
//! Each write is one conditional statement (an `UPDATE ... WHERE etag = $n`
//! or an `INSERT ... ON CONFLICT DO NOTHING`); PostgreSQL's row locks make
//! it atomic, and the affected-row count tells whether the compare-and-set
//! held. With [`group_commit`](PostgresStorageBuilder::group_commit) on,
//! updates issued at the same time go as one statement over arrays in one
//! transaction, each with its own ETag check (see `group_commit.rs`). The DDL runs under a transaction-scoped advisory lock, so that
//! several silos starting at once do not race on `CREATE TABLE`.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Row};

use crate::error::{Error, Result};
use crate::etag::ETag;
use crate::event_store::{EventStore, Snapshot, StoredEvent};
use crate::provider::{BoxFuture, StateKey, StorageProvider, StoredState};
use crate::sql::{DEFAULT_TABLE_PREFIX, check_table_name, classify, redact};

const PROVIDER: &str = "postgres";

/// Grain state (and journals, see [`EventStore`](crate::EventStore)) in a
/// PostgreSQL database, through sqlx. Cheap to clone: clones share one
/// connection pool.
///
/// ```no_run
/// # async fn f() -> actor_persistence::Result<()> {
/// use actor_persistence::PostgresStorage;
/// let storage = PostgresStorage::connect("postgres://postgres@127.0.0.1:5432/test").await?;
/// # Ok(()) }
/// ```
///
/// The tables are created on connect if missing (see
/// [`PostgresStorage::schema`] for the DDL, to run it yourself).
#[derive(Clone)]
pub struct PostgresStorage {
    pub(crate) pool: PgPool,
    pub(crate) url: Arc<str>,
    pub(crate) sql: Arc<Statements>,
    operation_timeout: Duration,
    /// Updates waiting to be committed together.
    pub(crate) batch: crate::group_commit::Shared,
}

pub(crate) struct Statements {
    pub(crate) prefix: String,
    read: String,
    etag: String,
    insert: String,
    update: String,
    update_batch: String,
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
        let pk = "grain_type = $1 AND grain_id = $2 AND state_name = $3";
        let spk = "grain_type = $1 AND grain_id = $2 AND stream_name = $3";
        Statements {
            prefix: prefix.to_owned(),
            read: format!("SELECT payload, etag FROM {s} WHERE {pk}"),
            etag: format!("SELECT etag FROM {s} WHERE {pk}"),
            insert: format!(
                "INSERT INTO {s} (grain_type, grain_id, state_name, etag, payload) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (grain_type, grain_id, state_name) DO NOTHING"
            ),
            update: format!(
                "UPDATE {s} SET etag = $4, payload = $5, updated_at = now() \
                 WHERE {pk} AND etag = $6"
            ),
            // One statement for a whole batch (each column bound as one
            // array): one round trip and one commit for all of them; the
            // ordinals of the rows whose ETag held come back.
            update_batch: format!(
                "UPDATE {s} AS t SET etag = v.etag, payload = v.payload, updated_at = now() \
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[]) \
                 WITH ORDINALITY AS v(grain_type, grain_id, state_name, etag, payload, expected, i) \
                 WHERE t.grain_type = v.grain_type AND t.grain_id = v.grain_id \
                 AND t.state_name = v.state_name AND t.etag = v.expected \
                 RETURNING v.i"
            ),
            delete: format!("DELETE FROM {s} WHERE {pk} AND etag = $4"),
            events_append_first: format!(
                "INSERT INTO {e} (grain_type, grain_id, stream_name, version, payload) \
                 SELECT $1, $2, $3, $4, $5 \
                 WHERE (SELECT COALESCE(MAX(version), 0) FROM {e} WHERE {spk}) = $6"
            ),
            events_insert: format!(
                "INSERT INTO {e} (grain_type, grain_id, stream_name, version, payload) \
                 VALUES ($1, $2, $3, $4, $5)"
            ),
            events_read: format!(
                "SELECT version, payload FROM {e} WHERE {spk} AND version > $4 ORDER BY version"
            ),
            events_version: format!("SELECT COALESCE(MAX(version), 0) FROM {e} WHERE {spk}"),
            snapshot_read: format!("SELECT version, payload FROM {n} WHERE {spk}"),
            snapshot_write: format!(
                "INSERT INTO {n} (grain_type, grain_id, stream_name, version, payload) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (grain_type, grain_id, stream_name) DO UPDATE SET \
                 version = excluded.version, payload = excluded.payload, created_at = now() \
                 WHERE excluded.version > {n}.version"
            ),
        }
    }
}

/// Configures a [`PostgresStorage`]; start from
/// [`PostgresStorage::builder`].
#[derive(Debug, Clone)]
pub struct PostgresStorageBuilder {
    url: String,
    prefix: String,
    connect_timeout: Duration,
    operation_timeout: Duration,
    max_connections: u32,
    group_commit: bool,
}

impl PostgresStorageBuilder {
    /// Tables `{prefix}_state`, `{prefix}_events` and `{prefix}_snapshots`
    /// (default prefix `grain`).
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long to wait for a connection before failing as unavailable
    /// (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one operation (read, write, clear, append, ...) may take,
    /// waiting for a connection included, before it fails as unavailable
    /// (default 10 s). A write cut off this way may or may not have been
    /// applied.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Connections in the pool (default 10).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Whether updates issued at the same time are committed together, in
    /// one statement and transaction, each with its own ETag check
    /// (default: no). Off, each update is its own statement and
    /// transaction on a connection of the pool; PostgreSQL's own group
    /// commit already joins the WAL flushes of concurrent commits, and in
    /// the storage benchmark (16 writers, BENCHMARKS.md) writes alone were
    /// faster. On, batches form only when more updates wait than the pool
    /// has connections (one writer per connection). The durability is the
    /// same either way: a write is acknowledged after its commit.
    pub fn group_commit(mut self, on: bool) -> Self {
        self.group_commit = on;
        self
    }

    /// Connects and creates the tables if missing.
    pub async fn connect(self) -> Result<PostgresStorage> {
        check_table_name(&format!("{}_snapshots", self.prefix))?;
        let shown = redact(&self.url);
        let options: PgConnectOptions = self
            .url
            .parse()
            .map_err(|e| Error::Config(format!("invalid PostgreSQL URL `{shown}`: {e}")))?;
        // One connection first, so that a refused or unknown server fails
        // at once with the driver's reason instead of a pool timeout.
        let mut conn = tokio::time::timeout(self.connect_timeout, options.connect())
            .await
            .map_err(|_| Error::Unavailable {
                provider: PROVIDER.into(),
                url: shown.clone(),
                reason: format!("no connection within {:?}", self.connect_timeout),
            })?
            .map_err(|e| classify(PROVIDER, &shown, e))?;
        let mut tx = conn
            .begin()
            .await
            .map_err(|e| classify(PROVIDER, &shown, e))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("actor-persistence schema {}", self.prefix))
            .execute(&mut *tx)
            .await
            .map_err(|e| classify(PROVIDER, &shown, e))?;
        for ddl in PostgresStorage::schema(&self.prefix) {
            sqlx::query(&ddl)
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(PROVIDER, &shown, e))?;
        }
        tx.commit()
            .await
            .map_err(|e| classify(PROVIDER, &shown, e))?;
        let _ = conn.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.connect_timeout)
            .connect_lazy_with(options);
        Ok(PostgresStorage {
            pool,
            url: shown.into(),
            sql: Arc::new(Statements::new(&self.prefix)),
            operation_timeout: self.operation_timeout,
            // Group commit with as many writers as connections: a write
            // that finds a connection free goes at once (PostgreSQL's own
            // WAL flush already joins concurrent commits), and batches form
            // only when more updates are waiting than there are
            // connections, which is when one statement for many saves the
            // round trips and the server's per-statement work.
            batch: crate::group_commit::GroupCommit::new(
                self.group_commit,
                self.max_connections as usize,
            ),
        })
    }
}

impl PostgresStorage {
    /// Connects to `url` (`postgres://user@host:port/db`) with the default
    /// tables, creating them if missing.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder(url).connect().await
    }

    /// Configures storage in the database at `url`.
    pub fn builder(url: impl Into<String>) -> PostgresStorageBuilder {
        PostgresStorageBuilder {
            url: url.into(),
            prefix: DEFAULT_TABLE_PREFIX.to_owned(),
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(10),
            max_connections: 10,
            group_commit: false,
        }
    }

    /// The DDL the provider runs on connect, for tables prefixed `prefix`
    /// (idempotent: `CREATE ... IF NOT EXISTS`).
    ///
    /// - `{prefix}_state`: one row per grain state; `payload` holds the
    ///   state (UTF-8 JSON when written by `PersistentState`: read it with
    ///   `convert_from(payload, 'UTF8')::jsonb`), `etag` the
    ///   compare-and-set token.
    /// - `{prefix}_events`: one row per journal event, `version` counting
    ///   from 1 per stream.
    /// - `{prefix}_snapshots`: the latest snapshot of each journal.
    pub fn schema(prefix: &str) -> Vec<String> {
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {prefix}_state (
    grain_type TEXT        NOT NULL,
    grain_id   TEXT        NOT NULL,
    state_name TEXT        NOT NULL,
    etag       TEXT        NOT NULL,
    payload    BYTEA       NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (grain_type, grain_id, state_name)
)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {prefix}_events (
    grain_type  TEXT        NOT NULL,
    grain_id    TEXT        NOT NULL,
    stream_name TEXT        NOT NULL,
    version     BIGINT      NOT NULL,
    payload     BYTEA       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (grain_type, grain_id, stream_name, version)
)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {prefix}_snapshots (
    grain_type  TEXT        NOT NULL,
    grain_id    TEXT        NOT NULL,
    stream_name TEXT        NOT NULL,
    version     BIGINT      NOT NULL,
    payload     BYTEA       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (grain_type, grain_id, stream_name)
)"
            ),
        ]
    }

    /// The connection pool, to run your own queries on the same database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The name of the state table (`{prefix}_state`).
    pub fn state_table(&self) -> String {
        format!("{}_state", self.sql.prefix)
    }

    pub(crate) fn err(&self, e: sqlx::Error) -> Error {
        classify(PROVIDER, &self.url, e)
    }

    /// Bounds an operation: a server that stops answering (without closing
    /// the connection) is an outage, not a hang.
    async fn bounded<T>(&self, op: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.operation_timeout, op).await {
            Ok(r) => r,
            Err(_) => Err(Error::Unavailable {
                provider: PROVIDER.into(),
                url: self.url.to_string(),
                reason: format!("no answer within {:?}", self.operation_timeout),
            }),
        }
    }

    /// A batch of group-committed updates as one statement (one round
    /// trip, one commit): whether each one's ETag held.
    async fn update_batch(&self, batch: &[crate::group_commit::PendingWrite]) -> Result<Vec<bool>> {
        if let [w] = batch {
            // A batch of one: the plain statement, planned for one row.
            let done = sqlx::query(&self.sql.update)
                .bind(w.key.grain_type())
                .bind(w.key.grain_id())
                .bind(w.key.name())
                .bind(w.etag.as_str())
                .bind(w.data.as_slice())
                .bind(w.expected.as_str())
                .execute(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
            return Ok(vec![done.rows_affected() == 1]);
        }
        let types: Vec<&str> = batch.iter().map(|w| w.key.grain_type()).collect();
        let ids: Vec<&str> = batch.iter().map(|w| w.key.grain_id()).collect();
        let names: Vec<&str> = batch.iter().map(|w| w.key.name()).collect();
        let etags: Vec<&str> = batch.iter().map(|w| w.etag.as_str()).collect();
        let payloads: Vec<&[u8]> = batch.iter().map(|w| w.data.as_slice()).collect();
        let expected: Vec<&str> = batch.iter().map(|w| w.expected.as_str()).collect();
        let held: Vec<i64> = sqlx::query_scalar(&self.sql.update_batch)
            .bind(types)
            .bind(ids)
            .bind(names)
            .bind(etags)
            .bind(payloads)
            .bind(expected)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let mut applied = vec![false; batch.len()];
        for i in held {
            // Ordinals count from 1.
            if let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| applied.get_mut(i)) {
                *slot = true;
            }
        }
        Ok(applied)
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'_, sqlx::Postgres>> {
        self.pool.begin().await.map_err(|e| self.err(e))
    }
}

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStorage")
            .field("url", &self.url)
            .field("table_prefix", &self.sql.prefix)
            .finish_non_exhaustive()
    }
}

crate::sql_provider::sql_provider!(PostgresStorage);
