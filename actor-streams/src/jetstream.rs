//! The NATS JetStream provider (async-nats): one JetStream stream holds
//! every partition's subject, each partition is read by a durable pull
//! consumer, items are acked after the consumer's turn and delivered again
//! when an ack does not come within `ack_wait`. JetStream keeps items
//! after they are acked (limits retention), so a subscription can start
//! from a token's offset (its stream sequence).
//!
//! Subjects: `<subject>.p.<partition>` in the JetStream stream `<name>`,
//! and `<subject>.dead` in `<name>_DEAD` for messages that are not items.
//! The durable consumer of partition `p` is `<name>-p<p>`, with
//! `max_ack_pending = prefetch`: the server never has more than that many
//! unacked items of a partition out.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actor_core::Silo;
use async_nats::jetstream::{self, consumer::pull, stream as js_stream};
use futures::StreamExt;

use crate::agent::{PartitionReader, PartitionSource, Received};
use crate::error::{Error, Result};
use crate::id::StreamId;
use crate::item::RawItem;
use crate::provider::{BoxFuture, StreamProvider};

/// The project machines' NATS server.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// The JetStream provider: at-least-once, ordered per stream, durable once
/// `publish` returns `Ok`, and able to rewind (see `docs/streams.md`).
/// Clones share the connection.
#[derive(Clone)]
pub struct NatsStreams {
    config: Arc<NatsConfig>,
    context: Arc<tokio::sync::Mutex<Option<jetstream::Context>>>,
}

#[derive(Debug, Clone)]
struct NatsConfig {
    url: String,
    name: String,
    subject: String,
    partitions: u32,
    prefetch: usize,
    ack_wait: Duration,
    max_age: Duration,
    max_item_bytes: usize,
    timeout: Duration,
}

impl std::fmt::Debug for NatsStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStreams")
            .field("url", &self.config.url)
            .field("stream", &self.config.name)
            .field("partitions", &self.config.partitions)
            .finish_non_exhaustive()
    }
}

impl Default for NatsStreams {
    fn default() -> Self {
        NatsStreams::new(DEFAULT_NATS_URL)
    }
}

impl NatsStreams {
    /// A provider on the server at `url` with the defaults: JetStream
    /// stream `GRAINS` on subjects `grains.p.*`, 8 partitions, prefetch
    /// 16, `ack_wait` 30 s, items kept 24 h and up to 512 KiB each, 5 s
    /// for the server to answer. Nothing is connected until first use.
    pub fn new(url: impl Into<String>) -> Self {
        NatsStreams {
            config: Arc::new(NatsConfig {
                url: url.into(),
                name: "GRAINS".into(),
                subject: "grains".into(),
                partitions: 8,
                prefetch: 16,
                ack_wait: Duration::from_secs(30),
                max_age: Duration::from_secs(24 * 3600),
                max_item_bytes: 512 * 1024,
                timeout: Duration::from_secs(5),
            }),
            context: Arc::default(),
        }
    }

    fn with(mut self, f: impl FnOnce(&mut NatsConfig)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// The JetStream stream's name and the subjects' prefix (`name`
    /// upper-cased is the stream, lower-cased the subject prefix).
    pub fn stream_name(self, name: &str) -> Self {
        let (upper, lower) = (name.to_uppercase(), name.to_lowercase());
        self.with(|c| {
            c.name = upper;
            c.subject = lower;
        })
    }

    /// How many partitions carry the streams (every silo must agree).
    pub fn partitions(self, n: u32) -> Self {
        self.with(|c| c.partitions = n.max(1))
    }

    /// Items an agent holds unacked at once (`max_ack_pending` of each
    /// partition's consumer).
    pub fn prefetch(self, n: usize) -> Self {
        self.with(|c| c.prefetch = n.max(1))
    }

    /// How long the server waits for an ack before delivering an item
    /// again (set when the consumers are first created).
    pub fn ack_wait(self, wait: Duration) -> Self {
        self.with(|c| c.ack_wait = wait)
    }

    /// How long items are kept (the window a subscription can rewind over).
    pub fn max_age(self, age: Duration) -> Self {
        self.with(|c| c.max_age = age)
    }

    /// The largest encoded item a publish takes.
    pub fn max_item_bytes(self, bytes: usize) -> Self {
        self.with(|c| c.max_item_bytes = bytes)
    }

    /// How long the server has to answer before a call fails with
    /// `Unavailable`.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.with(|c| c.timeout = timeout)
    }

    /// The subject of `partition`.
    pub fn subject_of(&self, partition: u32) -> String {
        format!("{}.p.{partition}", self.config.subject)
    }

    /// The dead-letter subject.
    pub fn dead_letter_subject(&self) -> String {
        format!("{}.dead", self.config.subject)
    }

    /// The JetStream stream's name.
    pub fn jetstream_name(&self) -> &str {
        &self.config.name
    }

    fn unavailable(&self, reason: impl std::fmt::Display) -> Error {
        Error::Unavailable {
            provider: "jetstream".into(),
            url: self.config.url.clone(),
            reason: reason.to_string(),
        }
    }

    async fn timed<T, E: std::fmt::Display>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = std::result::Result<T, E>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.config.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.unavailable(format!("{what}: {e}"))),
            Err(_) => Err(self.unavailable(format!(
                "{what}: no answer within {:?}",
                self.config.timeout
            ))),
        }
    }

    /// The JetStream context, connected and the streams declared on first
    /// use.
    async fn js(&self) -> Result<jetstream::Context> {
        let mut slot = self.context.lock().await;
        if let Some(js) = slot.as_ref() {
            return Ok(js.clone());
        }
        let client = self
            .timed(
                "connect",
                async_nats::ConnectOptions::new()
                    .connection_timeout(self.config.timeout)
                    .connect(self.config.url.as_str()),
            )
            .await?;
        let mut js = jetstream::new(client);
        js.set_timeout(self.config.timeout);
        self.timed(
            "stream create",
            js.get_or_create_stream(js_stream::Config {
                name: self.config.name.clone(),
                subjects: vec![format!("{}.p.*", self.config.subject)],
                storage: js_stream::StorageType::File,
                max_age: self.config.max_age,
                ..Default::default()
            }),
        )
        .await?;
        self.timed(
            "stream create",
            js.get_or_create_stream(js_stream::Config {
                name: format!("{}_DEAD", self.config.name),
                subjects: vec![self.dead_letter_subject()],
                storage: js_stream::StorageType::File,
                ..Default::default()
            }),
        )
        .await?;
        *slot = Some(js.clone());
        Ok(js)
    }

    async fn publish_items(&self, items: Vec<RawItem>) -> Result<()> {
        let result = self.publish_on(items).await;
        if matches!(result, Err(Error::Unavailable { .. })) {
            // A new connection for the next publish: the old one may hold
            // items it could not send, which must not go out behind later
            // ones from this connection.
            *self.context.lock().await = None;
        }
        result
    }

    async fn publish_on(&self, items: Vec<RawItem>) -> Result<()> {
        let Some(first) = items.first() else {
            return Ok(());
        };
        let js = self.js().await?;
        let subject = self.subject_of(first.stream.partition(self.config.partitions));
        let mut acks = Vec::with_capacity(items.len());
        for item in &items {
            let body = actor_core::__private::codec::encode(item)?;
            acks.push(
                self.timed("publish", js.publish(subject.clone(), body.into()))
                    .await?,
            );
        }
        for ack in acks {
            self.timed("publish ack", ack.into_future()).await?;
        }
        Ok(())
    }

    async fn consumer(&self, partition: u32) -> Result<jetstream::consumer::PullConsumer> {
        let js = self.js().await?;
        let stream = self
            .timed("stream", js.get_stream(&self.config.name))
            .await?;
        let durable = format!("{}-p{partition}", self.config.name);
        self.timed(
            "consumer create",
            stream.get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: self.subject_of(partition),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: self.config.ack_wait,
                    max_ack_pending: self.config.prefetch as i64,
                    ..Default::default()
                },
            ),
        )
        .await
    }
}

impl StreamProvider for NatsStreams {
    fn kind(&self) -> &'static str {
        "jetstream"
    }

    fn max_item_bytes(&self) -> usize {
        self.config.max_item_bytes
    }

    fn can_rewind(&self) -> bool {
        true
    }

    fn publish<'a>(
        &'a self,
        _silo: &'a Silo,
        _name: &'a str,
        items: Vec<RawItem>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.publish_items(items))
    }

    fn subscriptions_changed(&self, silo: &Silo, name: &str, stream: &StreamId) {
        crate::agent::reload(silo, name, self.config.partitions, stream);
    }

    fn partitions(&self) -> Option<Arc<dyn PartitionSource>> {
        Some(Arc::new(self.clone()))
    }
}

fn decode(msg: &jetstream::Message) -> (u64, bool, std::result::Result<RawItem, String>) {
    let (seq, delivered) = match msg.info() {
        Ok(i) => (i.stream_sequence, i.delivered),
        Err(_) => (0, 1),
    };
    let item = actor_core::__private::codec::decode::<RawItem>(&msg.message.payload)
        .map(|mut item| {
            item.token = item.token.at_offset(seq);
            item
        })
        .map_err(|e| format!("not a stream item: {e}"));
    (seq, delivered > 1, item)
}

impl PartitionSource for NatsStreams {
    fn count(&self) -> u32 {
        self.config.partitions
    }

    fn prefetch(&self) -> usize {
        self.config.prefetch
    }

    fn open(&self, partition: u32) -> BoxFuture<'_, Result<Box<dyn PartitionReader>>> {
        Box::pin(async move {
            let consumer = self.consumer(partition).await?;
            Ok(Box::new(NatsReader {
                provider: self.clone(),
                consumer,
                held: HashMap::new(),
                lag: None,
                lag_read: Instant::now() - Duration::from_secs(10),
            }) as Box<dyn PartitionReader>)
        })
    }

    fn replay<'a>(
        &'a self,
        stream: &'a StreamId,
        offset: u64,
    ) -> BoxFuture<'a, Result<Vec<RawItem>>> {
        Box::pin(async move {
            let js = self.js().await?;
            let mut s = self
                .timed("stream", js.get_stream(&self.config.name))
                .await?;
            let last = self
                .timed("stream info", s.info())
                .await?
                .state
                .last_sequence;
            if offset > last {
                return Ok(Vec::new());
            }
            let partition = stream.partition(self.config.partitions);
            let consumer = self
                .timed(
                    "replay consumer",
                    s.create_consumer(pull::OrderedConfig {
                        filter_subject: self.subject_of(partition),
                        deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                            start_sequence: offset,
                        },
                        ..Default::default()
                    }),
                )
                .await?;
            let mut messages = self.timed("replay", consumer.messages()).await?;
            let mut out = Vec::new();
            loop {
                let next = tokio::time::timeout(self.config.timeout, messages.next()).await;
                let Ok(Some(Ok(msg))) = next else { break };
                let (seq, _, item) = decode(&msg);
                if let Ok(item) = item
                    && &item.stream == stream
                {
                    out.push(item);
                }
                if seq >= last {
                    break;
                }
            }
            Ok(out)
        })
    }
}

struct NatsReader {
    provider: NatsStreams,
    consumer: jetstream::consumer::PullConsumer,
    /// Received and not yet acked, by stream sequence.
    held: HashMap<u64, jetstream::Message>,
    lag: Option<u64>,
    lag_read: Instant,
}

impl Drop for NatsReader {
    fn drop(&mut self) {
        // Give what was not acked back at once, rather than after ack_wait
        // (a process that dies cannot: the server redelivers after ack_wait).
        let held: Vec<_> = self.held.drain().map(|(_, m)| m).collect();
        if held.is_empty() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for m in held {
                    let _ = m.ack_with(jetstream::AckKind::Nak(None)).await;
                }
            });
        }
    }
}

impl PartitionReader for NatsReader {
    fn next(&mut self, max: usize, wait: Duration) -> BoxFuture<'_, Result<Vec<Received>>> {
        Box::pin(async move {
            let mut batch = self
                .provider
                .timed(
                    "fetch",
                    self.consumer
                        .fetch()
                        .max_messages(max)
                        .expires(wait.max(Duration::from_millis(10)))
                        .messages(),
                )
                .await?;
            let mut out = Vec::new();
            let deadline = tokio::time::Instant::now() + wait + self.provider.config.timeout;
            while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, batch.next()).await {
                let msg = msg.map_err(|e| self.provider.unavailable(format!("fetch: {e}")))?;
                let (seq, redelivered, item) = decode(&msg);
                out.push(Received {
                    tag: seq,
                    redelivered,
                    item,
                    body: msg.message.payload.to_vec(),
                });
                self.held.insert(seq, msg);
            }
            if self.lag_read.elapsed() > Duration::from_secs(1) {
                self.lag_read = Instant::now();
                if let Ok(Ok(info)) =
                    tokio::time::timeout(Duration::from_millis(500), self.consumer.info()).await
                {
                    self.lag = Some(info.num_pending);
                }
            }
            Ok(out)
        })
    }

    fn ack(&mut self, tag: u64) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let Some(msg) = self.held.remove(&tag) else {
                return Ok(());
            };
            self.provider.timed("ack", msg.ack()).await
        })
    }

    fn dead_letter<'a>(
        &'a mut self,
        received: &'a Received,
        error: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let js = self.provider.js().await?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Stream-Error", error);
            let ack = self
                .provider
                .timed(
                    "publish",
                    js.publish_with_headers(
                        self.provider.dead_letter_subject(),
                        headers,
                        received.body.clone().into(),
                    ),
                )
                .await?;
            self.provider
                .timed("publish ack", ack.into_future())
                .await?;
            self.ack(received.tag).await
        })
    }

    fn lag(&self) -> Option<u64> {
        self.lag
    }
}
