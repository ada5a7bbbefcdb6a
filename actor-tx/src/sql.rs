//! Transactional storage in SQLite and PostgreSQL (sqlx, runtime queries).
//!
//! Two tables, `{prefix}_state (state_id PK, etag, payload)` and
//! `{prefix}_outcome (tx_id PK, outcome, decided_at)`. A commit-record
//! write is one database transaction: the outcome insert (`ON CONFLICT DO
//! NOTHING`, its row count says who won) and the state's compare-and-set
//! update, both or neither.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::error::Error;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::storage::Outcome;

/// The default table prefix: tables `tx_state` and `tx_outcome`.
pub const DEFAULT_TX_TABLE_PREFIX: &str = "tx";

#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn check_prefix(prefix: &str) -> crate::Result<()> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 40
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !prefix.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::Storage {
            provider: "sql".into(),
            cause: format!(
                "table prefix `{prefix}` must be 1-40 ASCII letters, digits or `_`, not starting with a digit"
            ),
        })
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn parse_outcome(provider: &str, s: &str) -> crate::Result<Outcome> {
    Outcome::parse(s).ok_or_else(|| Error::Storage {
        provider: provider.to_owned(),
        cause: format!("unknown outcome `{s}` in the outcome table"),
    })
}

/// Implements `TransactionalStorage` for a sqlx pool type; the two
/// backends differ only in their placeholders and blob type.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! sql_storage {
    ($name:ident, $pool:ty, $p:expr) => {
        impl $crate::storage::TransactionalStorage for $name {
            fn describe(&self) -> String {
                self.url.to_string()
            }

            fn load<'a>(
                &'a self,
                state: &'a str,
            ) -> $crate::storage::BoxFuture<'a, $crate::Result<Option<$crate::storage::StoredRow>>>
            {
                Box::pin(async move {
                    use sqlx::Row;
                    let row = sqlx::query(&self.sql.load)
                        .bind(state)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| self.err(e))?;
                    Ok(row.map(|r| $crate::storage::StoredRow {
                        etag: r.get::<String, _>(0),
                        payload: r.get::<Vec<u8>, _>(1),
                    }))
                })
            }

            fn store<'a>(
                &'a self,
                state: &'a str,
                expected: Option<&'a str>,
                payload: &'a [u8],
                commit: Option<$crate::id::TxId>,
            ) -> $crate::storage::BoxFuture<
                'a,
                $crate::Result<std::result::Result<String, $crate::storage::Refused>>,
            > {
                Box::pin(
                    self.batcher
                        .store(self, state, expected, payload, commit, || {
                            self.url.to_string()
                        }),
                )
            }

            fn decide(
                &self,
                tx: $crate::id::TxId,
                outcome: $crate::storage::Outcome,
            ) -> $crate::storage::BoxFuture<'_, $crate::Result<$crate::storage::Outcome>> {
                Box::pin(async move {
                    use sqlx::Row;
                    sqlx::query(&self.sql.decide)
                        .bind(tx.to_string())
                        .bind(outcome.as_str())
                        .bind($crate::id::now_millis())
                        .execute(&self.pool)
                        .await
                        .map_err(|e| self.err(e))?;
                    let row = sqlx::query(&self.sql.outcome)
                        .bind(tx.to_string())
                        .fetch_one(&self.pool)
                        .await
                        .map_err(|e| self.err(e))?;
                    super::parse_outcome(&self.url, &row.get::<String, _>(0))
                })
            }

            fn outcome(
                &self,
                tx: $crate::id::TxId,
            ) -> $crate::storage::BoxFuture<'_, $crate::Result<Option<$crate::storage::Outcome>>>
            {
                Box::pin(async move {
                    use sqlx::Row;
                    let row = sqlx::query(&self.sql.outcome)
                        .bind(tx.to_string())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| self.err(e))?;
                    row.map(|r| super::parse_outcome(&self.url, &r.get::<String, _>(0)))
                        .transpose()
                })
            }

            fn forget(
                &self,
                tx: $crate::id::TxId,
            ) -> $crate::storage::BoxFuture<'_, $crate::Result<()>> {
                Box::pin(self.batcher.forget(self, tx, || self.url.to_string()))
            }
        }

        impl $name {
            fn err(&self, e: sqlx::Error) -> $crate::Error {
                $crate::Error::Storage {
                    provider: self.url.to_string(),
                    cause: e.to_string(),
                }
            }

            /// The DDL this provider runs on open, to run by hand instead.
            pub fn schema(prefix: &str) -> Vec<String> {
                Statements::new(prefix, $p).schema
            }
        }
    };
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
struct Statements {
    schema: Vec<String>,
    load: String,
    insert: String,
    update: String,
    decide: String,
    outcome: String,
    forget: String,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl Statements {
    /// `postgres`: `$n` placeholders and `BYTEA`; else `?` and `BLOB`.
    fn new(prefix: &str, postgres: bool) -> Statements {
        let ph = |n: usize| {
            if postgres {
                format!("${n}")
            } else {
                "?".to_owned()
            }
        };
        let blob = if postgres { "BYTEA" } else { "BLOB" };
        let (s, o) = (format!("{prefix}_state"), format!("{prefix}_outcome"));
        Statements {
            schema: vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {s} (state_id TEXT PRIMARY KEY, etag TEXT NOT NULL, payload {blob} NOT NULL)"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {o} (tx_id TEXT PRIMARY KEY, outcome TEXT NOT NULL, decided_at BIGINT NOT NULL)"
                ),
            ],
            load: format!("SELECT etag, payload FROM {s} WHERE state_id = {}", ph(1)),
            insert: format!(
                "INSERT INTO {s} (state_id, etag, payload) VALUES ({}, {}, {}) ON CONFLICT (state_id) DO NOTHING",
                ph(1),
                ph(2),
                ph(3)
            ),
            update: format!(
                "UPDATE {s} SET etag = {}, payload = {} WHERE state_id = {} AND etag = {}",
                ph(1),
                ph(2),
                ph(3),
                ph(4)
            ),
            decide: format!(
                "INSERT INTO {o} (tx_id, outcome, decided_at) VALUES ({}, {}, {}) ON CONFLICT (tx_id) DO NOTHING",
                ph(1),
                ph(2),
                ph(3)
            ),
            outcome: format!("SELECT outcome FROM {o} WHERE tx_id = {}", ph(1)),
            forget: format!("DELETE FROM {o} WHERE tx_id = {}", ph(1)),
        }
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::str::FromStr;
    use std::sync::Arc;
    use std::time::Duration;

    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
    };

    use super::{DEFAULT_TX_TABLE_PREFIX, Statements, check_prefix, parse_outcome};
    use crate::batch::{Batch, BatchExec, Batcher};
    use crate::id::now_millis;
    use crate::storage::{BoxFuture, Outcome, Refused};

    /// Transactional state in a SQLite file (WAL, `synchronous = FULL`: an
    /// acknowledged prepare or commit record survives a crash). Clones
    /// share one connection; several processes may share the file.
    ///
    /// ```no_run
    /// # async fn f() -> actor_tx::Result<()> {
    /// let storage = actor_tx::SqliteTxStorage::open("bank.db").await?;
    /// # let _ = storage; Ok(()) }
    /// ```
    #[derive(Clone)]
    pub struct SqliteTxStorage {
        pool: SqlitePool,
        url: Arc<str>,
        sql: Arc<Statements>,
        batcher: Arc<Batcher>,
    }

    impl std::fmt::Debug for SqliteTxStorage {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SqliteTxStorage")
                .field("url", &self.url)
                .finish()
        }
    }

    impl SqliteTxStorage {
        /// Opens (creating if missing) the database file at `path`, with
        /// the default table prefix.
        pub async fn open(path: impl AsRef<std::path::Path>) -> crate::Result<Self> {
            Self::open_with_prefix(path, DEFAULT_TX_TABLE_PREFIX).await
        }

        /// Opens the file at `path` with tables `{prefix}_state` and
        /// `{prefix}_outcome`.
        pub async fn open_with_prefix(
            path: impl AsRef<std::path::Path>,
            prefix: &str,
        ) -> crate::Result<Self> {
            check_prefix(prefix)?;
            let url = format!("sqlite:{}", path.as_ref().display());
            let fail = |e: sqlx::Error| crate::Error::Storage {
                provider: url.clone(),
                cause: e.to_string(),
            };
            let options = SqliteConnectOptions::from_str(&url)
                .map_err(fail)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10));
            // One connection: SQLite has one writer anyway, and a single
            // connection never meets its own lock.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .map_err(fail)?;
            let sql = Statements::new(prefix, false);
            for ddl in &sql.schema {
                sqlx::query(ddl).execute(&pool).await.map_err(fail)?;
            }
            Ok(SqliteTxStorage {
                pool,
                url: url.into(),
                sql: Arc::new(sql),
                // One connection: one batch at a time.
                batcher: Batcher::new(1),
            })
        }

        /// One batch in one SQLite transaction, request by request (the
        /// statements are in-process calls; the commit is the cost).
        async fn run_batch(&self, batch: &Batch) -> crate::Result<Vec<Result<String, Refused>>> {
            use sqlx::Row;
            let err = |e| self.err(e);
            let mut db = self.pool.begin().await.map_err(err)?;
            let mut out = Vec::with_capacity(batch.stores.len());
            for req in &batch.stores {
                if let Some(tx) = req.commit {
                    let won = sqlx::query(&self.sql.decide)
                        .bind(tx.to_string())
                        .bind(Outcome::Committed.as_str())
                        .bind(now_millis())
                        .execute(&mut *db)
                        .await
                        .map_err(err)?
                        .rows_affected();
                    if won == 0 {
                        let row = sqlx::query(&self.sql.outcome)
                            .bind(tx.to_string())
                            .fetch_one(&mut *db)
                            .await
                            .map_err(err)?;
                        let o = parse_outcome(&self.url, &row.get::<String, _>(0))?;
                        out.push(Err(Refused::Decided(o)));
                        continue;
                    }
                }
                let written = match &req.expected {
                    None => {
                        sqlx::query(&self.sql.insert)
                            .bind(&req.state)
                            .bind(&req.etag)
                            .bind(&req.payload)
                            .execute(&mut *db)
                            .await
                    }
                    Some(old) => {
                        sqlx::query(&self.sql.update)
                            .bind(&req.etag)
                            .bind(&req.payload)
                            .bind(&req.state)
                            .bind(old)
                            .execute(&mut *db)
                            .await
                    }
                }
                .map_err(err)?
                .rows_affected();
                if written == 0 {
                    // Stale: this request's commit record goes with it.
                    if let Some(tx) = req.commit {
                        sqlx::query(&self.sql.forget)
                            .bind(tx.to_string())
                            .execute(&mut *db)
                            .await
                            .map_err(err)?;
                    }
                    out.push(Err(Refused::Stale));
                } else {
                    out.push(Ok(req.etag.clone()));
                }
            }
            for f in &batch.forgets {
                sqlx::query(&self.sql.forget)
                    .bind(f.tx.to_string())
                    .execute(&mut *db)
                    .await
                    .map_err(err)?;
            }
            db.commit().await.map_err(err)?;
            Ok(out)
        }
    }

    impl BatchExec for SqliteTxStorage {
        fn run(&self, batch: Batch) -> BoxFuture<'_, ()> {
            Box::pin(async move {
                let results = self.run_batch(&batch).await;
                batch.answer(results);
            })
        }
    }

    sql_storage!(SqliteTxStorage, SqlitePool, false);
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::sync::Arc;
    use std::time::Duration;

    use sqlx::postgres::{PgPool, PgPoolOptions};

    use std::collections::{HashMap, HashSet};

    use super::{DEFAULT_TX_TABLE_PREFIX, Statements, check_prefix, parse_outcome};
    use crate::batch::{Batch, BatchExec, Batcher};
    use crate::id::now_millis;
    use crate::storage::{BoxFuture, Refused};

    /// A batch's connection: in a transaction, or not (one statement).
    enum Db {
        Tx(sqlx::Transaction<'static, sqlx::Postgres>),
        Plain(sqlx::pool::PoolConnection<sqlx::Postgres>),
    }

    impl Db {
        fn conn(&mut self) -> &mut sqlx::PgConnection {
            match self {
                Db::Tx(t) => t,
                Db::Plain(c) => c,
            }
        }
    }

    /// How many batches run at once (each on its own pooled connection).
    const PG_BATCHES_IN_FLIGHT: usize = 4;

    /// A batch's statements: each covers every request of its kind in the
    /// batch (arrays bound as parameters), so a batch costs the same few
    /// round trips however many transactions it carries.
    struct BatchSql {
        commit: String,
        outcomes: String,
        update: String,
        insert: String,
        forget: String,
    }

    impl BatchSql {
        fn new(prefix: &str) -> BatchSql {
            let (s, o) = (format!("{prefix}_state"), format!("{prefix}_outcome"));
            BatchSql {
                commit: format!(
                    "INSERT INTO {o} (tx_id, outcome, decided_at) SELECT t, 'committed', $2 FROM unnest($1::text[]) AS t \
                     ON CONFLICT (tx_id) DO NOTHING RETURNING tx_id"
                ),
                outcomes: format!("SELECT tx_id, outcome FROM {o} WHERE tx_id = ANY($1)"),
                update: format!(
                    "UPDATE {s} AS s SET etag = v.etag, payload = v.payload \
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) AS v(id, old, etag, payload) \
                     WHERE s.state_id = v.id AND s.etag = v.old RETURNING s.state_id"
                ),
                insert: format!(
                    "INSERT INTO {s} (state_id, etag, payload) SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) \
                     ON CONFLICT (state_id) DO NOTHING RETURNING state_id"
                ),
                forget: format!("DELETE FROM {o} WHERE tx_id = ANY($1)"),
            }
        }
    }

    /// Transactional state in PostgreSQL. Clones share one pool.
    ///
    /// ```no_run
    /// # async fn f() -> actor_tx::Result<()> {
    /// let storage = actor_tx::PostgresTxStorage::connect("postgres://postgres@127.0.0.1/test").await?;
    /// # let _ = storage; Ok(()) }
    /// ```
    #[derive(Clone)]
    pub struct PostgresTxStorage {
        pool: PgPool,
        url: Arc<str>,
        sql: Arc<Statements>,
        batch_sql: Arc<BatchSql>,
        batcher: Arc<Batcher>,
    }

    impl std::fmt::Debug for PostgresTxStorage {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("PostgresTxStorage")
                .field("url", &self.url)
                .finish()
        }
    }

    impl PostgresTxStorage {
        /// Connects to `url` with the default table prefix, creating the
        /// tables if missing.
        pub async fn connect(url: &str) -> crate::Result<Self> {
            Self::connect_with_prefix(url, DEFAULT_TX_TABLE_PREFIX).await
        }

        /// Connects with tables `{prefix}_state` and `{prefix}_outcome`.
        pub async fn connect_with_prefix(url: &str, prefix: &str) -> crate::Result<Self> {
            check_prefix(prefix)?;
            // Never show a password in errors.
            let shown: Arc<str> = match url.split_once('@') {
                Some((_, host)) => format!("postgres://…@{host}").into(),
                None => url.into(),
            };
            let fail = |e: sqlx::Error| crate::Error::Storage {
                provider: shown.to_string(),
                cause: e.to_string(),
            };
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await
                .map_err(fail)?;
            let sql = Statements::new(prefix, true);
            // Silos starting together must not race on CREATE TABLE.
            let mut conn = pool.acquire().await.map_err(fail)?;
            sqlx::query("SELECT pg_advisory_lock(7411)")
                .execute(&mut *conn)
                .await
                .map_err(fail)?;
            let mut created = Ok(());
            for ddl in &sql.schema {
                if let Err(e) = sqlx::query(ddl).execute(&mut *conn).await {
                    created = Err(fail(e));
                    break;
                }
            }
            sqlx::query("SELECT pg_advisory_unlock(7411)")
                .execute(&mut *conn)
                .await
                .map_err(fail)?;
            created?;
            Ok(PostgresTxStorage {
                pool,
                url: shown,
                sql: Arc::new(sql),
                batch_sql: Arc::new(BatchSql::new(prefix)),
                batcher: Batcher::new(PG_BATCHES_IN_FLIGHT),
            })
        }

        /// One batch in one PostgreSQL transaction: the commit records
        /// (first writer wins), then the compare-and-sets of the states
        /// whose commit record went in (or that carry none), then the
        /// deletions (forgotten outcomes, and the commit records of stale
        /// writes, which must not stay).
        async fn run_batch(&self, batch: &Batch) -> crate::Result<Vec<Result<String, Refused>>> {
            use sqlx::Row;
            let err = |e| self.err(e);
            let sql = &self.batch_sql;
            let stores = &batch.stores;
            let mut out: Vec<Option<Result<String, Refused>>> = vec![None; stores.len()];
            // A batch of one statement and no commit record (prepare
            // records and confirmations only, or deletions only) needs no
            // BEGIN and COMMIT: the statement is atomic by itself.
            let kinds = [
                stores.iter().any(|r| r.expected.is_some()),
                stores.iter().any(|r| r.expected.is_none()),
                !batch.forgets.is_empty(),
            ];
            let single = stores.iter().all(|r| r.commit.is_none())
                && kinds.iter().filter(|k| **k).count() == 1;
            let mut db = if single {
                Db::Plain(self.pool.acquire().await.map_err(err)?)
            } else {
                Db::Tx(self.pool.begin().await.map_err(err)?)
            };

            let commits: Vec<String> = stores
                .iter()
                .filter_map(|r| r.commit.map(|t| t.to_string()))
                .collect();
            let mut won = HashSet::new();
            if !commits.is_empty() {
                for row in sqlx::query(&sql.commit)
                    .bind(&commits)
                    .bind(now_millis())
                    .fetch_all(db.conn())
                    .await
                    .map_err(err)?
                {
                    won.insert(row.get::<String, _>(0));
                }
                let lost: Vec<String> = commits
                    .iter()
                    .filter(|t| !won.contains(*t))
                    .cloned()
                    .collect();
                if !lost.is_empty() {
                    let mut held = HashMap::new();
                    for row in sqlx::query(&sql.outcomes)
                        .bind(&lost)
                        .fetch_all(db.conn())
                        .await
                        .map_err(err)?
                    {
                        held.insert(row.get::<String, _>(0), row.get::<String, _>(1));
                    }
                    for (i, r) in stores.iter().enumerate() {
                        let Some(tx) = r.commit.map(|t| t.to_string()) else {
                            continue;
                        };
                        if won.contains(&tx) {
                            continue;
                        }
                        let o = held.get(&tx).map(String::as_str).unwrap_or("(none)");
                        out[i] = Some(Err(Refused::Decided(parse_outcome(&self.url, o)?)));
                    }
                }
            }

            let mut written = HashSet::new();
            let pending = |want_row: bool| {
                stores
                    .iter()
                    .enumerate()
                    .filter(|(i, r)| out[*i].is_none() && r.expected.is_some() == want_row)
                    .map(|(_, r)| r)
                    .collect::<Vec<_>>()
            };
            let updates = pending(true);
            if !updates.is_empty() {
                let ids: Vec<&str> = updates.iter().map(|r| r.state.as_str()).collect();
                let olds: Vec<&str> = updates
                    .iter()
                    .map(|r| r.expected.as_deref().unwrap_or_default())
                    .collect();
                let etags: Vec<&str> = updates.iter().map(|r| r.etag.as_str()).collect();
                let payloads: Vec<&[u8]> = updates.iter().map(|r| r.payload.as_slice()).collect();
                for row in sqlx::query(&sql.update)
                    .bind(&ids)
                    .bind(&olds)
                    .bind(&etags)
                    .bind(&payloads)
                    .fetch_all(db.conn())
                    .await
                    .map_err(err)?
                {
                    written.insert(row.get::<String, _>(0));
                }
            }
            let inserts = pending(false);
            if !inserts.is_empty() {
                let ids: Vec<&str> = inserts.iter().map(|r| r.state.as_str()).collect();
                let etags: Vec<&str> = inserts.iter().map(|r| r.etag.as_str()).collect();
                let payloads: Vec<&[u8]> = inserts.iter().map(|r| r.payload.as_slice()).collect();
                for row in sqlx::query(&sql.insert)
                    .bind(&ids)
                    .bind(&etags)
                    .bind(&payloads)
                    .fetch_all(db.conn())
                    .await
                    .map_err(err)?
                {
                    written.insert(row.get::<String, _>(0));
                }
            }

            let mut forget: Vec<String> = batch.forgets.iter().map(|f| f.tx.to_string()).collect();
            for (i, r) in stores.iter().enumerate() {
                if out[i].is_some() {
                    continue;
                }
                if written.contains(&r.state) {
                    out[i] = Some(Ok(r.etag.clone()));
                } else {
                    out[i] = Some(Err(Refused::Stale));
                    forget.extend(r.commit.map(|t| t.to_string()));
                }
            }
            if !forget.is_empty() {
                sqlx::query(&sql.forget)
                    .bind(&forget)
                    .execute(db.conn())
                    .await
                    .map_err(err)?;
            }
            if let Db::Tx(t) = db {
                t.commit().await.map_err(err)?;
            }
            Ok(out
                .into_iter()
                .map(|r| r.expect("every request answered"))
                .collect())
        }
    }

    impl BatchExec for PostgresTxStorage {
        fn run(&self, batch: Batch) -> BoxFuture<'_, ()> {
            Box::pin(async move {
                let results = self.run_batch(&batch).await;
                batch.answer(results);
            })
        }
    }

    sql_storage!(PostgresTxStorage, PgPool, true);
}

#[cfg(feature = "postgres")]
pub use postgres::PostgresTxStorage;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteTxStorage;
