//! The RabbitMQ provider (lapin): durable queues, one per partition,
//! publisher confirms, manual acks after the consumer's turn, a prefetch
//! bound, and a dead-letter queue for messages that are not items.
//!
//! A stream's items all go to the queue of its partition
//! (`StreamId::partition`), `<prefix>.<partition>`, declared durable and
//! with `x-single-active-consumer`: besides the cluster's single
//! activation of each partition's agent, the broker itself hands a queue
//! to one consumer at a time. Items are persistent messages; a publish
//! returns `Ok` only once the broker has confirmed every item of it. Each
//! agent has its own connection, so when its silo dies or stops, the
//! broker requeues what it had not acked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actor_core::Silo;
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use crate::agent::{PartitionReader, PartitionSource, Received};
use crate::error::{Error, Result};
use crate::id::StreamId;
use crate::item::RawItem;
use crate::provider::{BoxFuture, StreamProvider};

/// The project machines' RabbitMQ.
pub const DEFAULT_RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The RabbitMQ provider: at-least-once, ordered per stream, durable once
/// `publish` returns `Ok` (see `docs/streams.md`). Clones share the
/// publishing connection.
#[derive(Clone)]
pub struct RabbitStreams {
    config: Arc<RabbitConfig>,
    publisher: Arc<tokio::sync::Mutex<Option<Publisher>>>,
}

#[derive(Debug, Clone)]
struct RabbitConfig {
    url: String,
    prefix: String,
    partitions: u32,
    prefetch: u16,
    max_item_bytes: usize,
    timeout: Duration,
}

struct Publisher {
    conn: Arc<Connection>,
    channel: Channel,
}

impl std::fmt::Debug for RabbitStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitStreams")
            .field("url", &redact(&self.config.url))
            .field("prefix", &self.config.prefix)
            .field("partitions", &self.config.partitions)
            .field("prefetch", &self.config.prefetch)
            .finish_non_exhaustive()
    }
}

fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://{host}"),
        _ => url.to_owned(),
    }
}

impl RabbitStreams {
    /// A provider on the broker at `url` (`amqp://user:pass@host:port/vhost`)
    /// with the defaults: queues `streams.0` .. `streams.7`, prefetch 16,
    /// items up to 512 KiB, 5 s for the broker to answer. Nothing is
    /// connected until the first publish or pull.
    pub fn new(url: impl Into<String>) -> Self {
        RabbitStreams {
            config: Arc::new(RabbitConfig {
                url: url.into(),
                prefix: "streams".into(),
                partitions: 8,
                prefetch: 16,
                max_item_bytes: 512 * 1024,
                timeout: Duration::from_secs(5),
            }),
            publisher: Arc::default(),
        }
    }

    fn with(mut self, f: impl FnOnce(&mut RabbitConfig)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// The queue names' prefix (`<prefix>.<partition>`, and
    /// `<prefix>.dead` for dead letters). Providers with different prefixes
    /// share a broker without seeing each other's items.
    pub fn queue_prefix(self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.with(|c| c.prefix = prefix)
    }

    /// How many partitions (queues) carry the streams. Every silo must
    /// agree on it, and so must every run on the same queues.
    pub fn partitions(self, n: u32) -> Self {
        self.with(|c| c.partitions = n.max(1))
    }

    /// Items an agent holds unacked at once (the broker's prefetch): the
    /// bound of items in flight per partition. The broker holds the rest.
    pub fn prefetch(self, n: u16) -> Self {
        self.with(|c| c.prefetch = n.max(1))
    }

    /// The largest encoded item a publish takes.
    pub fn max_item_bytes(self, bytes: usize) -> Self {
        self.with(|c| c.max_item_bytes = bytes)
    }

    /// How long the broker has to answer a connect, a publish's confirms
    /// or a declaration before the call fails with `Unavailable`.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.with(|c| c.timeout = timeout)
    }

    /// The queue of `partition`.
    pub fn queue_of(&self, partition: u32) -> String {
        format!("{}.{partition}", self.config.prefix)
    }

    /// The dead-letter queue.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.config.prefix)
    }

    fn unavailable(&self, reason: impl std::fmt::Display) -> Error {
        Error::Unavailable {
            provider: "rabbitmq".into(),
            url: redact(&self.config.url),
            reason: reason.to_string(),
        }
    }

    async fn timed<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = lapin::Result<T>>,
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

    async fn connect(&self) -> Result<Connection> {
        self.timed(
            "connect",
            Connection::connect(
                &self.config.url,
                ConnectionProperties::default().with_connection_name("actor-streams".into()),
            ),
        )
        .await
    }

    async fn declare(&self, channel: &Channel, queue: &str) -> Result<lapin::Queue> {
        let mut args = FieldTable::default();
        if queue != self.dead_letter_queue() {
            args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        }
        self.timed(
            "queue.declare",
            channel.queue_declare(queue.into(), QueueDeclareOptions::durable(), args),
        )
        .await
    }

    /// The publishing channel (confirms on), connected on first use and
    /// again after a failure.
    async fn channel(&self) -> Result<Channel> {
        let mut slot = self.publisher.lock().await;
        if let Some(p) = slot.as_ref()
            && p.channel.status().connected()
        {
            return Ok(p.channel.clone());
        }
        let conn = self.connect().await?;
        let channel = self.timed("channel.open", conn.create_channel()).await?;
        self.timed(
            "confirm.select",
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        for p in 0..self.config.partitions {
            self.declare(&channel, &self.queue_of(p)).await?;
        }
        self.declare(&channel, &self.dead_letter_queue()).await?;
        *slot = Some(Publisher {
            conn: Arc::new(conn),
            channel: channel.clone(),
        });
        Ok(channel)
    }

    async fn drop_publisher(&self) {
        if let Some(p) = self.publisher.lock().await.take() {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                p.conn.close(200, "reconnecting".into()),
            )
            .await;
        }
    }

    async fn publish_items(&self, items: Vec<RawItem>) -> Result<()> {
        let channel = self.channel().await?;
        let result = self.publish_on(&channel, items).await;
        if matches!(result, Err(Error::Unavailable { .. })) {
            self.drop_publisher().await;
        }
        result
    }

    async fn publish_on(&self, channel: &Channel, items: Vec<RawItem>) -> Result<()> {
        let Some(first) = items.first() else {
            return Ok(());
        };
        let queue = self.queue_of(first.stream.partition(self.config.partitions));
        let mut confirms = Vec::with_capacity(items.len());
        for item in &items {
            let body = actor_core::__private::codec::encode(item)?;
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/x-grains-stream-item".into());
            let confirm = self
                .timed(
                    "basic.publish",
                    channel.basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        &body,
                        props,
                    ),
                )
                .await?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            let c = self.timed("publisher confirm", confirm).await?;
            if !c.is_ack() {
                return Err(Error::Broker {
                    provider: "rabbitmq".into(),
                    reason: format!("the broker refused an item for {queue} (nack)"),
                });
            }
        }
        Ok(())
    }
}

impl Default for RabbitStreams {
    fn default() -> Self {
        RabbitStreams::new(DEFAULT_RABBITMQ_URL)
    }
}

impl StreamProvider for RabbitStreams {
    fn kind(&self) -> &'static str {
        "rabbitmq"
    }

    fn max_item_bytes(&self) -> usize {
        self.config.max_item_bytes
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

impl PartitionSource for RabbitStreams {
    fn count(&self) -> u32 {
        self.config.partitions
    }

    fn prefetch(&self) -> usize {
        usize::from(self.config.prefetch)
    }

    fn open(&self, partition: u32) -> BoxFuture<'_, Result<Box<dyn PartitionReader>>> {
        Box::pin(async move {
            let conn = Arc::new(self.connect().await?);
            let opened = async {
                let channel = self.timed("channel.open", conn.create_channel()).await?;
                self.timed(
                    "basic.qos",
                    channel.basic_qos(self.config.prefetch, BasicQosOptions::default()),
                )
                .await?;
                self.timed(
                    "confirm.select",
                    channel.confirm_select(ConfirmSelectOptions::default()),
                )
                .await?;
                let queue = self.queue_of(partition);
                let declared = self.declare(&channel, &queue).await?;
                self.declare(&channel, &self.dead_letter_queue()).await?;
                let consumer = self
                    .timed(
                        "basic.consume",
                        channel.basic_consume(
                            queue.as_str().into(),
                            format!("agent-{partition}-{}", uuid::Uuid::new_v4()).into(),
                            BasicConsumeOptions::default(),
                            FieldTable::default(),
                        ),
                    )
                    .await?;
                Ok::<_, Error>(RabbitReader {
                    provider: self.clone(),
                    conn: conn.clone(),
                    channel,
                    consumer,
                    queue,
                    lag: Some(u64::from(declared.message_count())),
                    lag_read: Instant::now(),
                })
            };
            match opened.await {
                Ok(r) => Ok(Box::new(r) as Box<dyn PartitionReader>),
                Err(e) => {
                    close_later(conn);
                    Err(e)
                }
            }
        })
    }
}

fn close_later(conn: Arc<Connection>) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), conn.close(200, "bye".into())).await;
        });
    }
}

struct RabbitReader {
    provider: RabbitStreams,
    conn: Arc<Connection>,
    channel: Channel,
    consumer: lapin::Consumer,
    queue: String,
    lag: Option<u64>,
    lag_read: Instant,
}

impl Drop for RabbitReader {
    fn drop(&mut self) {
        // Closing the connection requeues every unacked item.
        close_later(self.conn.clone());
    }
}

fn received(d: lapin::message::Delivery) -> Received {
    let item = actor_core::__private::codec::decode::<RawItem>(&d.data)
        .map_err(|e| format!("not a stream item: {e}"));
    Received {
        tag: d.delivery_tag,
        redelivered: d.redelivered,
        item,
        body: d.data,
    }
}

impl PartitionReader for RabbitReader {
    fn next(&mut self, max: usize, wait: Duration) -> BoxFuture<'_, Result<Vec<Received>>> {
        Box::pin(async move {
            let mut out = Vec::new();
            match tokio::time::timeout(wait, self.consumer.next()).await {
                Err(_) => {}
                Ok(None) => return Err(self.provider.unavailable("the consumer was cancelled")),
                Ok(Some(Err(e))) => return Err(self.provider.unavailable(e)),
                Ok(Some(Ok(d))) => out.push(received(d)),
            }
            while out.len() < max {
                match self.consumer.next().now_or_never() {
                    Some(Some(Ok(d))) => out.push(received(d)),
                    Some(Some(Err(e))) => return Err(self.provider.unavailable(e)),
                    _ => break,
                }
            }
            if self.lag_read.elapsed() > Duration::from_secs(1) {
                self.lag_read = Instant::now();
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::durable()
                };
                let q = tokio::time::timeout(
                    Duration::from_millis(500),
                    self.channel.queue_declare(
                        self.queue.as_str().into(),
                        passive,
                        FieldTable::default(),
                    ),
                )
                .await;
                if let Ok(Ok(q)) = q {
                    self.lag = Some(u64::from(q.message_count()));
                }
            }
            Ok(out)
        })
    }

    fn ack(&mut self, tag: u64) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.provider
                .timed(
                    "basic.ack",
                    self.channel.basic_ack(tag, BasicAckOptions::default()),
                )
                .await
        })
    }

    fn dead_letter<'a>(
        &'a mut self,
        received: &'a Received,
        error: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut headers = FieldTable::default();
            headers.insert("x-stream-error".into(), AMQPValue::LongString(error.into()));
            headers.insert(
                "x-stream-queue".into(),
                AMQPValue::LongString(self.queue.as_str().into()),
            );
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(headers);
            let dead = self.provider.dead_letter_queue();
            let confirm = self
                .provider
                .timed(
                    "basic.publish",
                    self.channel.basic_publish(
                        "".into(),
                        dead.as_str().into(),
                        BasicPublishOptions::default(),
                        &received.body,
                        props,
                    ),
                )
                .await?;
            let c = self.provider.timed("publisher confirm", confirm).await?;
            if !c.is_ack() {
                return Err(Error::Broker {
                    provider: "rabbitmq".into(),
                    reason: format!("the broker refused a dead letter for {dead}"),
                });
            }
            self.ack(received.tag).await
        })
    }

    fn lag(&self) -> Option<u64> {
        self.lag
    }
}
