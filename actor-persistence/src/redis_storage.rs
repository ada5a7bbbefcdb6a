//! Grain state in Redis: one hash per record, fields `etag` and `data`.
//!
//! Writes and clears are Lua scripts, which Redis runs atomically: the
//! script compares the stored ETag with the expected one and writes only if
//! they match, so of concurrent writers exactly one wins. Durability is
//! Redis' own (RDB/AOF settings): an acknowledged write is as safe as the
//! server's persistence configuration makes it.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::{Error, Result};
use crate::etag::ETag;
use crate::event_store::{EventStore, Snapshot, StoredEvent};
use crate::provider::{BoxFuture, StateKey, StorageProvider, StoredState};
use crate::sql::redact;

const PROVIDER: &str = "redis";

/// The default key prefix.
pub const DEFAULT_KEY_PREFIX: &str = "grains:";

// `false` is what redis.call returns for a missing value; the empty string
// stands for "no record" on the wire (generated ETags are never empty).
const WRITE: &str = r"
local actual = redis.call('HGET', KEYS[1], 'etag')
if not actual then actual = '' end
if actual ~= ARGV[1] then return {0, actual} end
redis.call('HSET', KEYS[1], 'etag', ARGV[2], 'data', ARGV[3])
return {1, ARGV[2]}
";

// ARGV[1]: the expected version; ARGV[2..]: the events.
const APPEND: &str = r"
local actual = redis.call('LLEN', KEYS[1])
if actual ~= tonumber(ARGV[1]) then return {0, actual} end
for i = 2, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
return {1, actual + #ARGV - 1}
";

const SNAPSHOT: &str = r"
local stored = redis.call('HGET', KEYS[1], 'version')
if stored and tonumber(stored) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'data', ARGV[2])
return 1
";

const CLEAR: &str = r"
local actual = redis.call('HGET', KEYS[1], 'etag')
if not actual then actual = '' end
if actual ~= ARGV[1] then return {0, actual} end
redis.call('DEL', KEYS[1])
return {1, ''}
";

/// Grain state in Redis. Cheap to clone: clones share one multiplexed,
/// self-reconnecting connection.
///
/// ```no_run
/// # async fn f() -> actor_persistence::Result<()> {
/// use actor_persistence::RedisStorage;
/// let storage = RedisStorage::connect("redis://127.0.0.1:6379").await?;
/// # Ok(()) }
/// ```
///
/// # Key layout
///
/// Each record is a hash at `{prefix}{grain type}/{state name}/{grain key}`
/// with the fields `etag` and `data` (the state, UTF-8 JSON when written by
/// `PersistentState`). The prefix defaults to `grains:`; in the type and the
/// state name, `%`, `/` and `#` are written `%25`, `%2F` and `%23`, so that
/// a key names one record only. Example: `grains:counter/count/i:42` is
/// state `count` of grain `counter/42` (integer key); read it with
/// `HGETALL`.
///
/// As an [`EventStore`], journal `name` of a grain keeps its events in a
/// list at `{prefix}{grain type}/{name}#events/{grain key}` (event `n` at
/// index `n - 1`; the version is the list's length) and its latest snapshot
/// in a hash at `{prefix}{grain type}/{name}#snapshot/{grain key}` (fields
/// `version` and `data`). Appends and snapshot writes are Lua scripts.
#[derive(Clone)]
pub struct RedisStorage {
    conn: ConnectionManager,
    url: Arc<str>,
    prefix: Arc<str>,
    write: Arc<redis::Script>,
    clear: Arc<redis::Script>,
    append: Arc<redis::Script>,
    snapshot: Arc<redis::Script>,
    response_timeout: Duration,
}

/// Configures a [`RedisStorage`]; start from [`RedisStorage::builder`].
#[derive(Debug, Clone)]
pub struct RedisStorageBuilder {
    url: String,
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl RedisStorageBuilder {
    /// Prefix of every key (default `grains:`), to share one Redis
    /// database between applications or test runs.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long to wait for a connection (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for an answer before failing as unavailable
    /// (default 10 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Connects.
    pub async fn connect(self) -> Result<RedisStorage> {
        let shown = redact(&self.url);
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| Error::Config(format!("invalid Redis URL `{shown}`: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(self.response_timeout)
            .set_number_of_retries(1)
            .set_max_delay(1_000);
        let conn = tokio::time::timeout(
            self.connect_timeout * 2,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| Error::Unavailable {
            provider: PROVIDER.into(),
            url: shown.clone(),
            reason: format!("no connection within {:?}", self.connect_timeout),
        })?
        .map_err(|e| classify(&shown, e))?;
        Ok(RedisStorage {
            conn,
            url: shown.into(),
            prefix: self.prefix.into(),
            write: Arc::new(redis::Script::new(WRITE)),
            clear: Arc::new(redis::Script::new(CLEAR)),
            append: Arc::new(redis::Script::new(APPEND)),
            snapshot: Arc::new(redis::Script::new(SNAPSHOT)),
            response_timeout: self.response_timeout,
        })
    }
}

fn classify(url: &str, e: redis::RedisError) -> Error {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        Error::Unavailable {
            provider: PROVIDER.into(),
            url: url.to_owned(),
            reason: e.to_string(),
        }
    } else {
        Error::Backend {
            provider: PROVIDER.into(),
            reason: e.to_string(),
        }
    }
}

fn escape(part: &str, out: &mut String) {
    for c in part.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
}

impl RedisStorage {
    /// Connects to `url` (`redis://host:port/db`) with the default key
    /// prefix.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder(url).connect().await
    }

    /// Configures storage in the Redis server at `url`.
    pub fn builder(url: impl Into<String>) -> RedisStorageBuilder {
        RedisStorageBuilder {
            url: url.into(),
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
        }
    }

    /// The Redis key holding `key`'s record (see the key layout above).
    pub fn redis_key(&self, key: &StateKey) -> String {
        self.key_with(key, "")
    }

    /// The Redis keys of journal `stream`'s event list and snapshot hash.
    pub fn journal_keys(&self, stream: &StateKey) -> (String, String) {
        (
            self.key_with(stream, "#events"),
            self.key_with(stream, "#snapshot"),
        )
    }

    fn key_with(&self, key: &StateKey, marker: &str) -> String {
        let mut out = String::with_capacity(self.prefix.len() + key.grain_id().len() + 24);
        out.push_str(&self.prefix);
        escape(key.grain_type(), &mut out);
        out.push('/');
        escape(key.name(), &mut out);
        out.push_str(marker);
        out.push('/');
        out.push_str(key.grain_key());
        out
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// A handle on the connection, to run your own commands.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    fn err(&self, e: redis::RedisError) -> Error {
        classify(&self.url, e)
    }

    async fn bounded<T>(&self, fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        // The connection manager has its own response timeout; this one
        // also bounds a call that waits for a reconnection.
        match tokio::time::timeout(self.response_timeout + Duration::from_secs(1), fut).await {
            Ok(r) => r.map_err(|e| self.err(e)),
            Err(_) => Err(Error::Unavailable {
                provider: PROVIDER.into(),
                url: self.url.to_string(),
                reason: format!("no answer within {:?}", self.response_timeout),
            }),
        }
    }

    async fn read_record(&self, key: &StateKey) -> Result<Option<StoredState>> {
        let mut conn = self.conn.clone();
        let (etag, data): (Option<String>, Option<Vec<u8>>) = self
            .bounded(
                redis::cmd("HMGET")
                    .arg(self.redis_key(key))
                    .arg("etag")
                    .arg("data")
                    .query_async(&mut conn),
            )
            .await?;
        Ok(match (etag, data) {
            (Some(etag), Some(data)) => Some(StoredState {
                data,
                etag: ETag::from(etag),
            }),
            _ => None,
        })
    }

    async fn cas(
        &self,
        script: &redis::Script,
        key: &StateKey,
        expected: Option<&ETag>,
        new_etag: &str,
        data: &[u8],
    ) -> Result<()> {
        let mut conn = self.conn.clone();
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.redis_key(key))
            .arg(expected.map(ETag::as_str).unwrap_or(""))
            .arg(new_etag)
            .arg(data);
        let (ok, actual): (i64, String) = self.bounded(invocation.invoke_async(&mut conn)).await?;
        if ok == 1 {
            Ok(())
        } else {
            Err(Error::Conflict {
                key: key.to_string(),
                expected: expected.cloned(),
                actual: (!actual.is_empty()).then(|| ETag::from(actual)),
            })
        }
    }
}

impl std::fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStorage")
            .field("url", &self.url)
            .field("key_prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl StorageProvider for RedisStorage {
    fn describe(&self) -> String {
        self.url.to_string()
    }

    fn read<'a>(&'a self, key: &'a StateKey) -> BoxFuture<'a, Result<Option<StoredState>>> {
        Box::pin(self.read_record(key))
    }

    fn write<'a>(
        &'a self,
        key: &'a StateKey,
        data: &'a [u8],
        expected: Option<&'a ETag>,
    ) -> BoxFuture<'a, Result<ETag>> {
        Box::pin(async move {
            let etag = ETag::generate();
            self.cas(&self.write, key, expected, etag.as_str(), data)
                .await?;
            Ok(etag)
        })
    }

    fn clear<'a>(
        &'a self,
        key: &'a StateKey,
        expected: Option<&'a ETag>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.cas(&self.clear, key, expected, "", &[]))
    }
}

impl RedisStorage {
    async fn events_after(&self, stream: &StateKey, after: u64) -> Result<Vec<StoredEvent>> {
        let mut conn = self.conn.clone();
        let start = isize::try_from(after).unwrap_or(isize::MAX);
        let data: Vec<Vec<u8>> = self
            .bounded(
                redis::cmd("LRANGE")
                    .arg(self.journal_keys(stream).0)
                    .arg(start)
                    .arg(-1)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(data
            .into_iter()
            .zip(after + 1..)
            .map(|(data, version)| StoredEvent { version, data })
            .collect())
    }

    async fn stream_version(&self, stream: &StateKey) -> Result<u64> {
        let mut conn = self.conn.clone();
        self.bounded(
            redis::cmd("LLEN")
                .arg(self.journal_keys(stream).0)
                .query_async(&mut conn),
        )
        .await
    }

    async fn append_events(
        &self,
        stream: &StateKey,
        expected: u64,
        events: &[Vec<u8>],
    ) -> Result<u64> {
        let mut conn = self.conn.clone();
        let mut invocation = self.append.prepare_invoke();
        invocation.key(self.journal_keys(stream).0).arg(expected);
        for e in events {
            invocation.arg(e.as_slice());
        }
        let (ok, version): (i64, u64) = self.bounded(invocation.invoke_async(&mut conn)).await?;
        if ok == 1 {
            Ok(version)
        } else {
            Err(Error::VersionConflict {
                stream: stream.to_string(),
                expected,
                actual: version,
            })
        }
    }

    async fn snapshot_of(&self, stream: &StateKey) -> Result<Option<Snapshot>> {
        let mut conn = self.conn.clone();
        let (version, data): (Option<u64>, Option<Vec<u8>>) = self
            .bounded(
                redis::cmd("HMGET")
                    .arg(self.journal_keys(stream).1)
                    .arg("version")
                    .arg("data")
                    .query_async(&mut conn),
            )
            .await?;
        Ok(version
            .zip(data)
            .map(|(version, data)| Snapshot { version, data }))
    }

    async fn store_snapshot(&self, stream: &StateKey, snapshot: &Snapshot) -> Result<()> {
        let mut conn = self.conn.clone();
        let mut invocation = self.snapshot.prepare_invoke();
        invocation
            .key(self.journal_keys(stream).1)
            .arg(snapshot.version)
            .arg(snapshot.data.as_slice());
        let _kept: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(())
    }
}

impl EventStore for RedisStorage {
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
        Box::pin(self.snapshot_of(stream))
    }

    fn write_snapshot<'a>(
        &'a self,
        stream: &'a StateKey,
        snapshot: &'a Snapshot,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.store_snapshot(stream, snapshot))
    }
}
