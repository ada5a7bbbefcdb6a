//! Shared helpers of the integration tests: one fixture per provider, each
//! with its own tables, key prefix or file, so that tests run concurrently
//! without seeing each other; services at their standard local addresses.
//!
//! Without `CI=true` a test whose service is missing prints a note and
//! passes; with `CI=true` it fails.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use actor_persistence::{
    EventStore, MemoryStorage, PostgresStorage, RedisStorage, SqliteStorage, StorageProvider,
};
use tempfile::TempDir;

pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The PostgreSQL to test against: `TEST_POSTGRES_URL`, or the standard
/// local address.
pub fn postgres_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| POSTGRES_URL.into())
}

/// The Redis to test against: `TEST_REDIS_URL`, or the standard local
/// address.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| REDIS_URL.into())
}

/// Bounds every test: a hung service fails the test instead of hanging it.
pub const TEST_BOUND: Duration = Duration::from_secs(60);

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Handles a missing service: fail under CI, skip (with a note) otherwise.
pub fn missing(service: &str, error: &dyn std::fmt::Display) {
    if in_ci() {
        panic!("{service} is required when CI=true: {error}");
    }
    eprintln!("note: skipping, {service} is not available: {error}");
}

/// A provider (and event store) under test, with what it takes to remove
/// its data afterwards.
pub struct Fixture {
    pub name: &'static str,
    pub storage: Arc<dyn StorageProvider>,
    pub events: Option<Arc<dyn EventStore>>,
    pub sqlite: Option<SqliteStorage>,
    pub postgres: Option<PostgresStorage>,
    pub redis: Option<RedisStorage>,
    _dir: Option<TempDir>,
}

impl Fixture {
    pub fn memory() -> Fixture {
        let m = MemoryStorage::new();
        Fixture {
            name: "memory",
            storage: Arc::new(m.clone()),
            events: Some(Arc::new(m)),
            sqlite: None,
            postgres: None,
            redis: None,
            _dir: None,
        }
    }

    pub async fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let s = SqliteStorage::open(dir.path().join("grains.db"))
            .await
            .expect("SQLite opens a file in a temporary directory");
        Fixture {
            name: "sqlite",
            storage: Arc::new(s.clone()),
            events: Some(Arc::new(s.clone())),
            sqlite: Some(s),
            postgres: None,
            redis: None,
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> Option<Fixture> {
        let prefix = unique("t");
        match PostgresStorage::builder(postgres_url())
            .table_prefix(prefix)
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
        {
            Ok(p) => Some(Fixture {
                name: "postgres",
                storage: Arc::new(p.clone()),
                events: Some(Arc::new(p.clone())),
                sqlite: None,
                postgres: Some(p),
                redis: None,
                _dir: None,
            }),
            Err(e) => {
                missing("PostgreSQL", &e);
                None
            }
        }
    }

    pub async fn redis() -> Option<Fixture> {
        match RedisStorage::builder(redis_url())
            .key_prefix(format!("{}:", unique("test")))
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
        {
            Ok(r) => Some(Fixture {
                name: "redis",
                storage: Arc::new(r.clone()),
                events: Some(Arc::new(r.clone())),
                sqlite: None,
                postgres: None,
                redis: Some(r),
                _dir: None,
            }),
            Err(e) => {
                missing("Redis", &e);
                None
            }
        }
    }

    /// Removes what the test stored (tables, keys; the SQLite file goes
    /// with its temporary directory).
    pub async fn cleanup(self) {
        if let Some(p) = &self.postgres {
            let prefix = p.state_table();
            let prefix = prefix.trim_end_matches("_state");
            for t in ["state", "events", "snapshots"] {
                let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {prefix}_{t}"))
                    .execute(p.pool())
                    .await;
            }
        }
        if let Some(r) = &self.redis {
            let mut conn = r.connection();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", r.key_prefix()))
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> =
                    redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
            }
        }
    }
}

/// A TCP proxy in front of a service, that a test can cut (every
/// connection dropped, new ones refused), freeze (connections stay open but
/// nothing gets through, as with a silent network) and restore, to play
/// outages.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    target: String,
    tasks: parking_lot::Mutex<Vec<tokio::task::AbortHandle>>,
    frozen: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(target: &str) -> Arc<Proxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Arc::new(Proxy {
            addr: listener.local_addr().unwrap(),
            target: target.to_owned(),
            tasks: Default::default(),
            frozen: tokio::sync::watch::channel(false).0,
        });
        proxy.serve(listener);
        proxy
    }

    fn serve(self: &Arc<Self>, listener: tokio::net::TcpListener) {
        let me = self.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = me.target.clone();
                let mut frozen = me.frozen.subscribe();
                let conn = tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    if !*frozen.borrow_and_update() {
                        // Biased, the freeze first: once `freeze` has
                        // returned, the next poll of this task must not
                        // pass a byte (an unbiased select could copy a
                        // request sent after the freeze before it sees it).
                        tokio::select! {
                            biased;
                            _ = frozen.wait_for(|f| *f) => {}
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                        }
                    }
                    // Frozen: hold both ends open, pass nothing, until cut.
                    std::future::pending::<()>().await;
                });
                me.tasks.lock().push(conn.abort_handle());
            }
        });
        self.tasks.lock().push(accept.abort_handle());
    }

    /// Drops every connection and stops listening.
    pub fn cut(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }

    /// Keeps connections open but lets nothing through.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Listens again on the same port (after a cut), passing traffic.
    pub async fn restore(self: &Arc<Self>) {
        self.frozen.send_replace(false);
        // An aborted accept task drops its listener on its next poll: retry
        // the bind briefly.
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        self.serve(listener);
    }
}
