//! Durable reminders: timers that outlive activations, silo restarts and
//! silo deaths, stored in a [`ReminderTable`].
//!
//! A grain registers a reminder by name with a due time and a period; the
//! [`ReminderService`] of the silo that owns the grain (every silo on its
//! own, or the grain's owner in a cluster) delivers a [`ReminderTick`]
//! message to the grain when it is due, activating the grain if needed.
//! The next due time is written back after each tick.
//!
//! Delivery is at least once per due time in a quiet cluster, but ticks
//! may be **missed** (the owner died between two polls and the next owner
//! skips the ticks whose time has passed, firing once) or **repeated**
//! (two silos briefly both own the grain during a membership change, or a
//! silo dies after delivering a tick and before writing the next due
//! time). Make reminder handlers idempotent, as with Orleans reminders.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actor_core::{EncodedCall, GrainId, Message, Silo};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use sqlx::any::{AnyPoolOptions, AnyRow};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use sqlx::{AnyPool, Row};

use crate::error::{Error, Result};
use crate::provider::BoxFuture;

/// The message a reminder delivers. A grain with reminders handles it
/// (`impl Handler<ReminderTick>`) and lists it in its `GrainMethods`
/// (`#[grain_methods(also_handles(ReminderTick))]`, or
/// `m.add::<ReminderTick, _>()` in a hand-written one), since ticks arrive
/// serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderTick {
    /// The reminder's name.
    pub name: String,
    /// When it was due, in milliseconds since the Unix epoch.
    pub due_millis: i64,
}

impl Message for ReminderTick {
    type Reply = ();
    const NAME: &'static str = "reminder_tick";
}

/// One stored reminder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reminder {
    /// The grain it wakes.
    pub grain: GrainId,
    /// Its name within the grain.
    pub name: String,
    /// The next due time, in milliseconds since the Unix epoch.
    pub due_millis: i64,
    /// Milliseconds between ticks; 0 fires once.
    pub period_millis: i64,
}

/// Storage of reminders.
pub trait ReminderTable: Send + Sync + 'static {
    /// Creates or replaces the reminder `(grain, name)`.
    fn upsert(&self, reminder: Reminder) -> BoxFuture<'_, Result<()>>;
    /// Deletes a reminder; `Ok(false)` if there was none.
    fn remove<'a>(&'a self, grain: &'a GrainId, name: &'a str) -> BoxFuture<'a, Result<bool>>;
    /// Every reminder due at or before `until_millis`.
    fn due(&self, until_millis: i64) -> BoxFuture<'_, Result<Vec<Reminder>>>;
    /// The reminders of one grain.
    fn of_grain<'a>(&'a self, grain: &'a GrainId) -> BoxFuture<'a, Result<Vec<Reminder>>>;
}

/// Reminders in memory (tests; clones share the table).
#[derive(Debug, Clone, Default)]
pub struct MemoryReminders {
    rows: Arc<Mutex<BTreeMap<(String, String), Reminder>>>,
}

impl MemoryReminders {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ReminderTable for MemoryReminders {
    fn upsert(&self, reminder: Reminder) -> BoxFuture<'_, Result<()>> {
        let key = (reminder.grain.storage_key(), reminder.name.clone());
        self.rows.lock().insert(key, reminder);
        Box::pin(async { Ok(()) })
    }
    fn remove<'a>(&'a self, grain: &'a GrainId, name: &'a str) -> BoxFuture<'a, Result<bool>> {
        let gone = self
            .rows
            .lock()
            .remove(&(grain.storage_key(), name.to_owned()))
            .is_some();
        Box::pin(async move { Ok(gone) })
    }
    fn due(&self, until_millis: i64) -> BoxFuture<'_, Result<Vec<Reminder>>> {
        let due = self
            .rows
            .lock()
            .values()
            .filter(|r| r.due_millis <= until_millis)
            .cloned()
            .collect();
        Box::pin(async move { Ok(due) })
    }
    fn of_grain<'a>(&'a self, grain: &'a GrainId) -> BoxFuture<'a, Result<Vec<Reminder>>> {
        let key = grain.storage_key();
        let rows = self
            .rows
            .lock()
            .iter()
            .filter(|((g, _), _)| *g == key)
            .map(|(_, r)| r.clone())
            .collect();
        Box::pin(async move { Ok(rows) })
    }
}

/// Reminders in SQLite or PostgreSQL (sqlx), in the table
/// `grain_reminders (grain_key TEXT, name TEXT, grain BYTES-as-TEXT,
/// due_ms BIGINT, period_ms BIGINT, PRIMARY KEY (grain_key, name))`,
/// created if missing. Built with the `sqlite` or `postgres` feature; each
/// backend needs its own.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Debug, Clone)]
pub struct SqlReminders {
    pool: AnyPool,
    url: String,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
const REMINDERS_DDL: &str = "CREATE TABLE IF NOT EXISTS grain_reminders (
    grain_key TEXT NOT NULL,
    name TEXT NOT NULL,
    grain TEXT NOT NULL,
    due_ms BIGINT NOT NULL,
    period_ms BIGINT NOT NULL,
    PRIMARY KEY (grain_key, name))";

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use actor_core::__private::sql_url;

/// The SQL backends of this build, by URL scheme.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
const BACKENDS: [sql_url::Backend; 3] =
    sql_url::backends(cfg!(feature = "sqlite"), cfg!(feature = "postgres"));

/// Refuses a URL whose backend is known but not built, naming the feature
/// that builds it; other schemes go on to sqlx, which reports them.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn check_backend(url: &str, shown: &str, backends: &[sql_url::Backend]) -> Result<()> {
    sql_url::check(url, shown, backends, "reminder table", "actor-persistence")
        .map_err(Error::Config)
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl SqlReminders {
    /// Connects to `url` (`sqlite://file.db` or `postgres://...`) and
    /// creates the table if missing. A URL whose backend this build lacks
    /// (features `sqlite`, `postgres`) fails with [`Error::Config`].
    pub async fn connect(url: &str) -> Result<Self> {
        let shown = url.split('@').next_back().unwrap_or(url).to_owned();
        check_backend(url, &shown, &BACKENDS)?;
        sqlx::any::install_default_drivers();
        let full = sql_url::creating_sqlite_file(url);
        let unavailable = |e: sqlx::Error| Error::Unavailable {
            provider: "reminders".into(),
            url: shown.clone(),
            reason: e.to_string(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&full)
            .await
            .map_err(unavailable)?;
        sqlx::query(REMINDERS_DDL)
            .execute(&pool)
            .await
            .map_err(unavailable)?;
        Ok(SqlReminders { pool, url: shown })
    }

    fn unavailable(&self, e: sqlx::Error) -> Error {
        Error::Unavailable {
            provider: "reminders".into(),
            url: self.url.clone(),
            reason: e.to_string(),
        }
    }

    fn row(&self, r: &AnyRow) -> Result<Reminder> {
        let grain: String = r.try_get(0).map_err(|e| self.unavailable(e))?;
        Ok(Reminder {
            grain: serde_json::from_str(&grain)
                .map_err(|e| Error::Config(format!("corrupt reminder row for {grain}: {e}")))?,
            name: r.try_get(1).map_err(|e| self.unavailable(e))?,
            due_millis: r.try_get(2).map_err(|e| self.unavailable(e))?,
            period_millis: r.try_get(3).map_err(|e| self.unavailable(e))?,
        })
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl ReminderTable for SqlReminders {
    fn upsert(&self, reminder: Reminder) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let grain = serde_json::to_string(&reminder.grain).expect("plain data");
            sqlx::query(
                "INSERT INTO grain_reminders (grain_key, name, grain, due_ms, period_ms)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (grain_key, name) DO UPDATE SET due_ms = $6, period_ms = $7",
            )
            .bind(reminder.grain.storage_key())
            .bind(&reminder.name)
            .bind(grain)
            .bind(reminder.due_millis)
            .bind(reminder.period_millis)
            .bind(reminder.due_millis)
            .bind(reminder.period_millis)
            .execute(&self.pool)
            .await
            .map_err(|e| self.unavailable(e))?;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, grain: &'a GrainId, name: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let done =
                sqlx::query("DELETE FROM grain_reminders WHERE grain_key = $1 AND name = $2")
                    .bind(grain.storage_key())
                    .bind(name)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.unavailable(e))?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn due(&self, until_millis: i64) -> BoxFuture<'_, Result<Vec<Reminder>>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT grain, name, due_ms, period_ms FROM grain_reminders WHERE due_ms <= $1",
            )
            .bind(until_millis)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.unavailable(e))?;
            rows.iter().map(|r| self.row(r)).collect()
        })
    }

    fn of_grain<'a>(&'a self, grain: &'a GrainId) -> BoxFuture<'a, Result<Vec<Reminder>>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT grain, name, due_ms, period_ms FROM grain_reminders WHERE grain_key = $1",
            )
            .bind(grain.storage_key())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.unavailable(e))?;
            rows.iter().map(|r| self.row(r)).collect()
        })
    }
}

/// Decides which silo fires a grain's reminders (in a cluster: the
/// grain's owner). Returns `true` on exactly one live silo per grain in a
/// quiet cluster.
pub type Ownership = Arc<dyn Fn(&GrainId) -> bool + Send + Sync>;

/// A silo's reminder service: polls the table and delivers due ticks of the
/// grains this silo owns. Also the handle grains use (through the silo
/// extension, see [`SiloBuilderRemindersExt`]) to register reminders.
#[derive(Clone)]
pub struct ReminderService {
    table: Arc<dyn ReminderTable>,
}

impl std::fmt::Debug for ReminderService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReminderService").finish_non_exhaustive()
    }
}

use actor_core::__private::now_millis;

impl ReminderService {
    /// A service over `table`.
    pub fn new(table: Arc<dyn ReminderTable>) -> Self {
        ReminderService { table }
    }

    /// The service attached to `silo` (see [`SiloBuilderRemindersExt`]).
    pub fn of(silo: &Silo) -> Result<&ReminderService> {
        silo.extension::<ReminderService>().ok_or_else(|| {
            Error::Config(
                "no reminder service on this silo; add one with SiloBuilder::with_reminders".into(),
            )
        })
    }

    /// Registers (or updates) reminder `name` of `grain`: first due after
    /// `due`, then every `period` (zero: once).
    pub async fn register(
        &self,
        grain: &GrainId,
        name: &str,
        due: Duration,
        period: Duration,
    ) -> Result<()> {
        self.table
            .upsert(Reminder {
                grain: grain.clone(),
                name: name.to_owned(),
                due_millis: now_millis() + due.as_millis() as i64,
                period_millis: period.as_millis() as i64,
            })
            .await
    }

    /// Cancels reminder `name` of `grain`; `Ok(false)` if there was none.
    pub async fn cancel(&self, grain: &GrainId, name: &str) -> Result<bool> {
        self.table.remove(grain, name).await
    }

    /// The reminders of `grain`.
    pub async fn list(&self, grain: &GrainId) -> Result<Vec<Reminder>> {
        self.table.of_grain(grain).await
    }

    /// Every stored reminder, of every grain (for tools such as the
    /// dashboard; the whole table is read).
    pub async fn all(&self) -> Result<Vec<Reminder>> {
        self.table.due(i64::MAX).await
    }

    /// Starts delivering due ticks on `silo` for the grains `owns` accepts,
    /// polling every `poll`. Stops when the returned task is aborted or the
    /// silo stops.
    pub fn start(
        &self,
        silo: Silo,
        owns: Ownership,
        poll: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let table = self.table.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(poll);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if silo.is_stopping() {
                    return;
                }
                let now = now_millis();
                let due = match table.due(now).await {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the reminder table");
                        continue;
                    }
                };
                for r in due.into_iter().filter(|r| owns(&r.grain)) {
                    fire(&silo, &*table, r, now).await;
                }
            }
        })
    }
}

async fn fire(silo: &Silo, table: &dyn ReminderTable, r: Reminder, now: i64) {
    let tick = ReminderTick {
        name: r.name.clone(),
        due_millis: r.due_millis,
    };
    let payload = match actor_core::__private::codec::encode(&tick) {
        Ok(p) => p,
        Err(e) => return tracing::error!(error = %e, "cannot encode a reminder tick"),
    };
    // Write the next due time first: a silo that dies now misses this tick
    // rather than firing it forever.
    let next = if r.period_millis > 0 {
        // Skip the ticks that were missed while nobody owned the grain.
        let behind = (now - r.due_millis) / r.period_millis + 1;
        table
            .upsert(Reminder {
                due_millis: r.due_millis + behind * r.period_millis,
                ..r.clone()
            })
            .await
    } else {
        table.remove(&r.grain, &r.name).await.map(|_| ())
    };
    if let Err(e) = next {
        return tracing::warn!(error = %e, grain = %r.grain, "cannot reschedule a reminder; not firing it");
    }
    let mut call = EncodedCall::new(
        r.grain.clone(),
        ReminderTick::NAME,
        payload,
        Duration::from_secs(30),
    );
    call.one_way = true;
    let silo = silo.clone();
    tokio::spawn(async move {
        if let Err(e) = silo.invoke_encoded(call).await {
            tracing::warn!(error = %e, grain = %r.grain, reminder = %r.name, "reminder tick failed");
        }
    });
}

/// Adds reminders to a silo builder.
pub trait SiloBuilderRemindersExt {
    /// Stores reminders in `table`; grains reach the service with
    /// [`ReminderService::of`]`(ctx.silo())`. Start delivery with
    /// [`ReminderService::start`] once the silo runs.
    fn with_reminders(self, table: Arc<dyn ReminderTable>) -> Self;
}

impl SiloBuilderRemindersExt for actor_core::SiloBuilder {
    fn with_reminders(self, table: Arc<dyn ReminderTable>) -> Self {
        self.extension(ReminderService::new(table))
    }
}

#[cfg(all(test, any(feature = "sqlite", feature = "postgres")))]
mod tests {
    use super::{Error, check_backend, sql_url};

    /// This crate's wording of the shared check (`sql_url::check` has the
    /// cases): the table, the crate and its feature.
    #[test]
    fn a_url_whose_backend_is_not_built_names_the_feature() {
        let sqlite_only = sql_url::backends(true, false);
        let err = check_backend("postgres://h/db", "postgres://h/db", &sqlite_only).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("reminder table at postgres://h/db"), "{msg}");
        assert!(
            msg.contains("actor-persistence = { features = [\"postgres\"] }"),
            "{msg}"
        );
        let postgres_only = sql_url::backends(false, true);
        assert!(check_backend("sqlite://r.db", "sqlite://r.db", &postgres_only).is_err());
        assert!(check_backend("postgres://h/db", "postgres://h/db", &postgres_only).is_ok());
    }
}
