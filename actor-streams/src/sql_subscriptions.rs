//! Explicit subscriptions and dead letters in SQLite or PostgreSQL
//! (sqlx, runtime queries only), one row each.
//!
//! Each row keeps its indexed parts as columns and the whole value as JSON
//! (`row`), readable with the database's own tools:
//!
//! ```text
//! stream_subscriptions (id TEXT PRIMARY KEY, provider TEXT, stream_key TEXT,
//!                       consumer_key TEXT, row TEXT)
//! stream_dead_letters  (id TEXT PRIMARY KEY, at_ms BIGINT, provider TEXT,
//!                       stream_key TEXT, consumer_key TEXT, row TEXT)
//! ```

use std::time::Duration;

use actor_core::GrainId;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

use crate::error::{Error, Result};
use crate::id::StreamId;
use crate::provider::BoxFuture;
use crate::subscription::{DeadLetter, Subscription, SubscriptionId, SubscriptionStore};

const DDL: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS stream_subscriptions (
        id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        stream_key TEXT NOT NULL,
        consumer_key TEXT NOT NULL,
        row TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS stream_subscriptions_by_stream
        ON stream_subscriptions (provider, stream_key)",
    "CREATE INDEX IF NOT EXISTS stream_subscriptions_by_consumer
        ON stream_subscriptions (consumer_key)",
    "CREATE TABLE IF NOT EXISTS stream_dead_letters (
        id TEXT PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        provider TEXT NOT NULL,
        stream_key TEXT NOT NULL,
        consumer_key TEXT NOT NULL,
        row TEXT NOT NULL)",
];

/// Subscriptions and dead letters in SQLite (`sqlite://file.db`, feature
/// `sqlite`) or PostgreSQL (`postgres://...`, feature `postgres`); tables
/// created if missing. Clones share the pool.
#[derive(Debug, Clone)]
pub struct SqlSubscriptions {
    pool: AnyPool,
    url: String,
    kind: &'static str,
}

impl SqlSubscriptions {
    /// Connects to `url` and creates the tables if missing. A URL whose
    /// backend this build lacks fails with [`Error::Config`] naming the
    /// feature; an unreachable database with [`Error::Store`].
    pub async fn connect(url: &str) -> Result<Self> {
        use actor_core::__private::sql_url;
        let shown = actor_core::redact_url(url);
        sql_url::check(
            url,
            &shown,
            &sql_url::backends(cfg!(feature = "sqlite"), cfg!(feature = "postgres")),
            "subscription store",
            "actor-streams",
        )
        .map_err(Error::Config)?;
        let kind = match url.split_once(':').map_or("", |(s, _)| s) {
            _ if sql_url::is_sqlite(url) => "sqlite",
            s if s.eq_ignore_ascii_case("postgres") || s.eq_ignore_ascii_case("postgresql") => {
                "postgres"
            }
            other => {
                return Err(Error::Config(format!(
                    "subscription store at {shown}: unknown scheme `{other}`; use sqlite:// or postgres://"
                )));
            }
        };
        sqlx::any::install_default_drivers();
        let full = sql_url::creating_sqlite_file(url);
        let store_err = |e: sqlx::Error| Error::Store {
            store: format!("{kind} at {shown}"),
            reason: e.to_string(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&full)
            .await
            .map_err(store_err)?;
        for ddl in DDL {
            // Silos starting together may race on CREATE: once more is enough.
            if sqlx::query(ddl).execute(&pool).await.is_err() {
                sqlx::query(ddl).execute(&pool).await.map_err(store_err)?;
            }
        }
        Ok(SqlSubscriptions {
            pool,
            url: shown,
            kind,
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Store {
            store: format!("{} at {}", self.kind, self.url),
            reason: e.to_string(),
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, rows: &[sqlx::any::AnyRow]) -> Result<Vec<T>> {
        rows.iter()
            .map(|r| {
                let json: String = r.try_get(0).map_err(|e| self.err(e))?;
                serde_json::from_str(&json).map_err(|e| self.err(format!("corrupt row: {e}")))
            })
            .collect()
    }
}

impl SubscriptionStore for SqlSubscriptions {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn get_or_insert(&self, sub: Subscription) -> BoxFuture<'_, Result<(Subscription, bool)>> {
        Box::pin(async move {
            let json = serde_json::to_string(&sub).map_err(|e| self.err(e))?;
            let done = sqlx::query(
                "INSERT INTO stream_subscriptions (id, provider, stream_key, consumer_key, row)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&sub.id.0)
            .bind(&sub.provider)
            .bind(sub.stream.storage_key())
            .bind(sub.consumer.storage_key())
            .bind(json)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
            if done.rows_affected() > 0 {
                return Ok((sub, true));
            }
            let rows = sqlx::query("SELECT row FROM stream_subscriptions WHERE id = $1")
                .bind(&sub.id.0)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
            let existing = self.decode::<Subscription>(&rows)?.pop();
            // Deleted between the two statements: it is ours to insert.
            match existing {
                Some(old) => Ok((old, false)),
                None => self.get_or_insert(sub).await,
            }
        })
    }

    fn remove<'a>(&'a self, id: &'a SubscriptionId) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM stream_subscriptions WHERE id = $1")
                .bind(&id.0)
                .execute(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn of_stream<'a>(
        &'a self,
        provider: &'a str,
        stream: &'a StreamId,
    ) -> BoxFuture<'a, Result<Vec<Subscription>>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT row FROM stream_subscriptions WHERE provider = $1 AND stream_key = $2 ORDER BY id",
            )
            .bind(provider)
            .bind(stream.storage_key())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
            self.decode(&rows)
        })
    }

    fn of_consumer<'a>(
        &'a self,
        consumer: &'a GrainId,
    ) -> BoxFuture<'a, Result<Vec<Subscription>>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT row FROM stream_subscriptions WHERE consumer_key = $1 ORDER BY id",
            )
            .bind(consumer.storage_key())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
            self.decode(&rows)
        })
    }

    fn add_dead_letter(&self, letter: DeadLetter) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let json = serde_json::to_string(&letter).map_err(|e| self.err(e))?;
            sqlx::query(
                "INSERT INTO stream_dead_letters (id, at_ms, provider, stream_key, consumer_key, row)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(letter.at_millis)
            .bind(&letter.provider)
            .bind(letter.stream.storage_key())
            .bind(letter.consumer.storage_key())
            .bind(json)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    fn dead_letters(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT row FROM stream_dead_letters ORDER BY at_ms, id")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
            self.decode(&rows)
        })
    }
}
