//! The membership table in SQL, through sqlx: SQLite (a file, the embedded
//! default, shareable by several local processes) and PostgreSQL, each
//! built with the crate feature of its name (`sqlite`, `postgres`); a URL
//! whose driver this build lacks is refused before anything connects.
//!
//! Schema (created if missing; one table pair serves many clusters):
//!
//! ```sql
//! CREATE TABLE membership_version (
//!     cluster_id TEXT PRIMARY KEY,
//!     version    BIGINT NOT NULL);
//! CREATE TABLE membership (
//!     cluster_id  TEXT   NOT NULL,
//!     endpoint    TEXT   NOT NULL,
//!     generation  BIGINT NOT NULL,
//!     name        TEXT   NOT NULL,
//!     status      TEXT   NOT NULL,  -- joining | active | shutting_down | dead
//!     start_ms    BIGINT NOT NULL,
//!     alive_ms    BIGINT NOT NULL,
//!     suspicions  TEXT   NOT NULL,  -- JSON: [{"by":{..},"at_millis":..}]
//!     gateway     TEXT,
//!     etag        BIGINT NOT NULL,
//!     PRIMARY KEY (cluster_id, endpoint, generation));
//! ```
//!
//! A heartbeat only moves `alive_ms` forward and never on a dead row; an
//! update keeps the larger `alive_ms` (the lease rules of
//! `membership.rs`).
//!
//! Each insert or update is one transaction that first moves the version
//! row from the expected version to the next (`UPDATE .. WHERE version =
//! $expected`): the database's row lock makes exactly one of concurrent
//! writers succeed.

use futures::future::BoxFuture;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::error::{Error, Result};
use crate::membership::{
    MembershipEntry, MembershipSnapshot, MembershipTable, RowEtag, SiloAddress, TableVersion,
    status_from_str, status_to_str,
};

const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS membership_version (
        cluster_id TEXT PRIMARY KEY,
        version BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS membership (
        cluster_id TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        generation BIGINT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        start_ms BIGINT NOT NULL,
        alive_ms BIGINT NOT NULL,
        suspicions TEXT NOT NULL,
        gateway TEXT,
        etag BIGINT NOT NULL,
        PRIMARY KEY (cluster_id, endpoint, generation))",
];

use actor_core::__private::sql_url;

/// The SQL backends of this build, by URL scheme.
const BACKENDS: [sql_url::Backend; 3] =
    sql_url::backends(cfg!(feature = "sqlite"), cfg!(feature = "postgres"));

/// Refuses a URL whose backend is known but not built, naming the feature
/// that builds it. Other schemes go on to sqlx, which reports them.
fn check_backend(url: &str, shown: &str) -> Result<()> {
    check_backend_in(url, shown, &BACKENDS)
}

fn check_backend_in(url: &str, shown: &str, backends: &[sql_url::Backend]) -> Result<()> {
    sql_url::check(url, shown, backends, "membership table", "actor-cluster").map_err(Error::Config)
}

/// The membership table of one cluster in SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlMembership {
    pool: AnyPool,
    cluster_id: String,
    url: String,
}

impl SqlMembership {
    /// Connects to `url` (`sqlite://path/to/file.db` or
    /// `postgres://user@host:port/db`), creates the tables if missing and
    /// registers `cluster_id`. Fails with [`Error::TableUnavailable`] if the
    /// database cannot be reached within `connect_timeout`, and with
    /// [`Error::Config`] if this build lacks the URL's backend (the crate
    /// features `sqlite`, on by default, and `postgres`).
    pub async fn connect(
        url: &str,
        cluster_id: impl Into<String>,
        connect_timeout: std::time::Duration,
    ) -> Result<Self> {
        let shown = redact(url);
        check_backend(url, &shown)?;
        sqlx::any::install_default_drivers();
        // Create the file on first use.
        let url = sql_url::creating_sqlite_file(url);
        let unavailable = |source| Error::TableUnavailable {
            url: shown.clone(),
            source,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(connect_timeout)
            .connect(&url)
            .await
            .map_err(unavailable)?;
        if sql_url::is_sqlite(&url) {
            // WAL lets readers in other processes go on while one writes.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await
                .map_err(unavailable)?;
        }
        for ddl in SCHEMA {
            sqlx::query(ddl).execute(&pool).await.map_err(unavailable)?;
        }
        let cluster_id = cluster_id.into();
        sqlx::query(
            "INSERT INTO membership_version (cluster_id, version) VALUES ($1, 0)
             ON CONFLICT (cluster_id) DO NOTHING",
        )
        .bind(&cluster_id)
        .execute(&pool)
        .await
        .map_err(unavailable)?;
        Ok(SqlMembership {
            pool,
            cluster_id,
            url: shown,
        })
    }

    /// The cluster this table serves.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    fn unavailable(&self, source: sqlx::Error) -> Error {
        Error::TableUnavailable {
            url: self.url.clone(),
            source,
        }
    }

    async fn read(&self) -> Result<MembershipSnapshot> {
        // One transaction so the version and the rows agree.
        let mut tx = self.pool.begin().await.map_err(|e| self.unavailable(e))?;
        let version: i64 =
            sqlx::query("SELECT version FROM membership_version WHERE cluster_id = $1")
                .bind(&self.cluster_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| self.unavailable(e))?
                .try_get(0)
                .map_err(|e| self.unavailable(e))?;
        let rows = sqlx::query(
            "SELECT endpoint, generation, name, status, start_ms, alive_ms, suspicions,
                    gateway, etag
             FROM membership WHERE cluster_id = $1 ORDER BY endpoint, generation",
        )
        .bind(&self.cluster_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.unavailable(e))?;
        tx.commit().await.map_err(|e| self.unavailable(e))?;
        let entries = rows
            .iter()
            .map(|r| self.entry_from(r))
            .collect::<Result<Vec<_>>>()?;
        Ok(MembershipSnapshot {
            version: TableVersion(version),
            entries,
        })
    }

    fn entry_from(&self, r: &AnyRow) -> Result<(MembershipEntry, RowEtag)> {
        let get = |e: sqlx::Error| self.unavailable(e);
        let columns = Columns {
            endpoint: r.try_get(0).map_err(get)?,
            generation: r.try_get(1).map_err(get)?,
            name: r.try_get(2).map_err(get)?,
            status: r.try_get(3).map_err(get)?,
            start_millis: r.try_get(4).map_err(get)?,
            i_am_alive_millis: r.try_get(5).map_err(get)?,
            suspicions: r.try_get(6).map_err(get)?,
            gateway: r.try_get(7).map_err(get)?,
        };
        Ok((columns.entry()?, RowEtag(r.try_get(8).map_err(get)?)))
    }

    /// Moves the version row from `expected` to the next inside `tx`.
    async fn bump(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        expected: TableVersion,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE membership_version SET version = version + 1
             WHERE cluster_id = $1 AND version = $2",
        )
        .bind(&self.cluster_id)
        .bind(expected.0)
        .execute(&mut **tx)
        .await
        .map_err(|e| self.unavailable(e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_row(&self, entry: MembershipEntry, expected: TableVersion) -> Result<bool> {
        let suspicions = serde_json::to_string(&entry.suspicions).expect("plain data");
        let mut tx = self.pool.begin().await.map_err(|e| self.unavailable(e))?;
        if !self.bump(&mut tx, expected).await? {
            return Ok(false);
        }
        let inserted = sqlx::query(
            "INSERT INTO membership (cluster_id, endpoint, generation, name, status, start_ms,
                                     alive_ms, suspicions, gateway, etag)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1)
             ON CONFLICT (cluster_id, endpoint, generation) DO NOTHING",
        )
        .bind(&self.cluster_id)
        .bind(&entry.silo.endpoint)
        .bind(entry.silo.generation)
        .bind(&entry.name)
        .bind(status_to_str(entry.status))
        .bind(entry.start_millis)
        .bind(entry.i_am_alive_millis)
        .bind(suspicions)
        .bind(entry.gateway.clone())
        .execute(&mut *tx)
        .await
        .map_err(|e| self.unavailable(e))?;
        if inserted.rows_affected() != 1 {
            // The row exists: leave the version where it was.
            return Ok(false);
        }
        tx.commit().await.map_err(|e| self.unavailable(e))?;
        Ok(true)
    }

    async fn update_row(
        &self,
        entry: MembershipEntry,
        etag: RowEtag,
        expected: TableVersion,
    ) -> Result<bool> {
        let suspicions = serde_json::to_string(&entry.suspicions).expect("plain data");
        let mut tx = self.pool.begin().await.map_err(|e| self.unavailable(e))?;
        if !self.bump(&mut tx, expected).await? {
            return Ok(false);
        }
        let updated = sqlx::query(
            "UPDATE membership SET name = $1, status = $2, start_ms = $3,
                                   alive_ms = CASE WHEN alive_ms > $4 THEN alive_ms ELSE $4 END,
                                   suspicions = $5, gateway = $6, etag = etag + 1
             WHERE cluster_id = $7 AND endpoint = $8 AND generation = $9 AND etag = $10",
        )
        .bind(&entry.name)
        .bind(status_to_str(entry.status))
        .bind(entry.start_millis)
        .bind(entry.i_am_alive_millis)
        .bind(suspicions)
        .bind(entry.gateway.clone())
        .bind(&self.cluster_id)
        .bind(&entry.silo.endpoint)
        .bind(entry.silo.generation)
        .bind(etag.0)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.unavailable(e))?;
        if updated.rows_affected() != 1 {
            return Ok(false);
        }
        tx.commit().await.map_err(|e| self.unavailable(e))?;
        Ok(true)
    }
}

impl MembershipTable for SqlMembership {
    fn read_all(&self) -> BoxFuture<'_, Result<MembershipSnapshot>> {
        Box::pin(self.read())
    }

    fn insert(
        &self,
        entry: MembershipEntry,
        expected: TableVersion,
    ) -> BoxFuture<'_, Result<bool>> {
        Box::pin(self.insert_row(entry, expected))
    }

    fn update(
        &self,
        entry: MembershipEntry,
        etag: RowEtag,
        expected: TableVersion,
    ) -> BoxFuture<'_, Result<bool>> {
        Box::pin(self.update_row(entry, etag, expected))
    }

    fn update_i_am_alive(&self, silo: &SiloAddress, at_millis: i64) -> BoxFuture<'_, Result<bool>> {
        let silo = silo.clone();
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE membership
                 SET alive_ms = CASE WHEN alive_ms >= $1 THEN alive_ms + 1 ELSE $1 END
                 WHERE cluster_id = $2 AND endpoint = $3 AND generation = $4
                   AND status <> 'dead'",
            )
            .bind(at_millis)
            .bind(&self.cluster_id)
            .bind(&silo.endpoint)
            .bind(silo.generation)
            .execute(&self.pool)
            .await
            .map_err(|e| self.unavailable(e))?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn cleanup_defunct(&self, before_millis: i64) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let done = sqlx::query(
                "DELETE FROM membership
                 WHERE cluster_id = $1 AND status = 'dead' AND alive_ms < $2",
            )
            .bind(&self.cluster_id)
            .bind(before_millis)
            .execute(&self.pool)
            .await
            .map_err(|e| self.unavailable(e))?;
            Ok(done.rows_affected())
        })
    }
}

// The URL without its password, for error messages: the workspace's
// one helper.
use actor_core::redact_url as redact;

/// The longest text column of a row a silo accepts: whoever can write the
/// table can write anything into it, and every silo reads every row every
/// few seconds.
const MAX_COLUMN: usize = 1024 * 1024;

/// The columns of one membership row, as read.
struct Columns {
    endpoint: String,
    generation: i64,
    name: String,
    status: String,
    start_millis: i64,
    i_am_alive_millis: i64,
    suspicions: String,
    gateway: Option<String>,
}

impl Columns {
    /// The row's entry; a status, suspicion list or text the runtime did
    /// not write is `Error::CorruptRow`, never a panic.
    fn entry(self) -> Result<MembershipEntry> {
        let silo = SiloAddress::new(self.endpoint, self.generation);
        // Errors show at most the first 128 characters of what was there.
        let shown: String = silo.to_string().chars().take(128).collect();
        let corrupt = |reason: String| Error::CorruptRow {
            silo: shown.clone(),
            reason,
        };
        for (column, text) in [
            ("endpoint", silo.endpoint.as_str()),
            ("name", &self.name),
            ("suspicions", &self.suspicions),
            ("gateway", self.gateway.as_deref().unwrap_or_default()),
        ] {
            if text.len() > MAX_COLUMN {
                return Err(corrupt(format!(
                    "its {column} is {} bytes long (at most {MAX_COLUMN})",
                    text.len()
                )));
            }
        }
        Ok(MembershipEntry {
            name: self.name,
            status: status_from_str(&self.status).ok_or_else(|| {
                let status: String = self.status.chars().take(64).collect();
                corrupt(format!("unknown status `{status}`"))
            })?,
            start_millis: self.start_millis,
            i_am_alive_millis: self.i_am_alive_millis,
            suspicions: serde_json::from_str(&self.suspicions)
                .map_err(|e| corrupt(format!("suspicions: {e}")))?,
            gateway: self.gateway,
            silo,
        })
    }
}

#[cfg(test)]
mod row_tests {
    use super::*;
    use proptest::prelude::*;

    fn columns(status: String, suspicions: String, name: String) -> Columns {
        Columns {
            endpoint: "127.0.0.1:1".into(),
            generation: 1,
            name,
            status,
            start_millis: 0,
            i_am_alive_millis: 0,
            suspicions,
            gateway: None,
        }
    }

    #[test]
    fn rows_the_runtime_did_not_write_are_corrupt_rows() {
        let ok = columns("active".into(), "[]".into(), "s".into())
            .entry()
            .unwrap();
        assert_eq!(ok.status, crate::SiloStatus::Active);
        for bad in [
            columns("zombie".into(), "[]".into(), "s".into()),
            columns("active".into(), "{".into(), "s".into()),
            columns("active".into(), "[".repeat(10_000), "s".into()),
            columns("active".into(), "[]".into(), "n".repeat(MAX_COLUMN + 1)),
        ] {
            let err = bad.entry().unwrap_err();
            assert!(matches!(err, Error::CorruptRow { .. }), "{err}");
            assert!(err.to_string().len() < 1024, "a short message: {err}");
        }
    }

    proptest! {
        /// Arbitrary text in a row's columns, and mutations of a valid
        /// suspicion list: an entry or a corrupt-row error, never a panic;
        /// and the suspicions of an entry that decodes count without
        /// overflow whatever their stamps.
        #[test]
        fn arbitrary_rows_never_panic(
            status in prop_oneof![Just("active".to_owned()), ".{0,16}"],
            suspicions in ".{0,256}",
            name in ".{0,64}",
            stamp in any::<i64>(),
            mutations in crate::link::fuzz::mutations(),
        ) {
            let _ = columns(status.clone(), suspicions, name.clone()).entry();
            let valid = format!(r#"[{{"by":{{"endpoint":"127.0.0.1:2","generation":3}},"at_millis":{stamp}}}]"#);
            let mutated = String::from_utf8_lossy(&crate::link::fuzz::apply(valid.as_bytes(), &mutations)).into_owned();
            for text in [valid, mutated] {
                if let Ok(entry) = columns(status.clone(), text, name.clone()).entry() {
                    let _ = entry.fresh_suspicions(i64::MAX, std::time::Duration::MAX);
                    let _ = entry.fresh_suspicions(i64::MIN, std::time::Duration::ZERO);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Error, check_backend_in, sql_url};

    /// This crate's wording of the shared check (`sql_url::check` has the
    /// cases): the table, the crate and its feature.
    #[test]
    fn a_url_whose_backend_is_not_built_names_the_feature() {
        let sqlite_only = sql_url::backends(true, false);
        let url = "postgres://u@h/db";
        let err = check_backend_in(url, url, &sqlite_only).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("membership table at postgres://u@h/db"),
            "{msg}"
        );
        assert!(
            msg.contains("actor-cluster = { features = [\"postgres\"] }"),
            "{msg}"
        );
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            super::redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
    }
}
