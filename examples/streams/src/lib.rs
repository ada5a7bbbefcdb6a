//! Course exercise 16 (MicrosoftOrleansStreams) as grains: a producer
//! grain's timer pushes ints to the stream `("numbers", key)` on the memory
//! provider; the `Consumer` grain type is the implicit subscriber of the
//! namespace, so the consumer with the stream's key is activated by the
//! first item and receives every one, in order.

use std::time::Duration;

use actor_core::TimerHandle;
use actor_core::prelude::*;
use actor_streams::{
    Ack, Delivery, MemoryStreams, SiloBuilderStreamsExt, StreamId, StreamProducer, Streams,
};
use serde::{Deserialize, Serialize};

/// The stream namespace the producer pushes to and the consumer is
/// declared for.
pub const NAMESPACE: &str = "numbers";
/// The provider's name on the silo.
pub const PROVIDER: &str = "sms";

/// Pushes `1..=count` to its stream, one per timer tick.
#[derive(Default)]
pub struct Producer {
    next: i64,
    count: i64,
    stream: Option<StreamProducer<i64>>,
    timer: Option<TimerHandle>,
}

impl Grain for Producer {
    const TYPE_NAME: &'static str = "producer";
}

/// A timer tick of the producer.
#[derive(Serialize, Deserialize)]
pub struct Tick;

impl Message for Tick {
    type Reply = ();
    const NAME: &'static str = "tick";
}

impl Handler<Tick> for Producer {
    async fn handle(&mut self, _: Tick, _ctx: &GrainContext<Self>) {
        if self.next >= self.count {
            if let Some(t) = self.timer.take() {
                t.cancel();
            }
            return;
        }
        self.next += 1;
        if let Some(stream) = &self.stream {
            // Memory provider: the item is queued for the stream's grain.
            if let Err(e) = stream.publish(&self.next).await {
                eprintln!("producer: publish of {} failed: {e}", self.next);
            }
        }
    }
}

#[grain_methods(also_handles(Tick))]
impl Producer {
    /// Starts pushing `count` ints, one every `every`, to the stream with
    /// this producer's key.
    pub async fn start(&mut self, count: i64, every_ms: u64, ctx: &GrainContext<Self>) -> bool {
        let Ok(provider) = Streams::provider(ctx.silo(), PROVIDER) else {
            return false;
        };
        self.stream = Some(provider.producer(StreamId::new(NAMESPACE, ctx.key().clone())));
        self.count = count;
        let every = Duration::from_millis(every_ms);
        self.timer = Some(ctx.register_timer(every, every, || Tick));
        true
    }

    /// How many ints it pushed.
    pub async fn pushed(&self) -> i64 {
        self.next
    }
}

/// The implicit subscriber of [`NAMESPACE`]: it keeps what it receives.
#[derive(Default)]
pub struct Consumer {
    received: Vec<i64>,
}

impl Grain for Consumer {
    const TYPE_NAME: &'static str = "consumer";

    async fn on_activate(&mut self, ctx: &GrainContext<Self>) -> Result<(), actor_core::BoxError> {
        println!("consumer {} activated by the stream", ctx.key());
        Ok(())
    }
}

impl Handler<Delivery<i64>> for Consumer {
    async fn handle(&mut self, d: Delivery<i64>, _ctx: &GrainContext<Self>) -> Ack {
        println!(
            "consumer {} got {} (token {})",
            d.stream.key, d.item, d.token
        );
        self.received.push(d.item);
        Ok(())
    }
}

#[grain_methods(also_handles(Delivery<i64>))]
impl Consumer {
    /// What it received, in order.
    pub async fn received(&self) -> Vec<i64> {
        self.received.clone()
    }
}

/// The silo of the exercise: both grain types, the memory provider, and
/// the consumer declared for the namespace.
pub async fn silo() -> actor_core::Result<Silo> {
    Silo::builder()
        .grain::<Producer>()
        .grain::<Consumer>()
        .with_streams(
            Streams::builder()
                .provider(PROVIDER, MemoryStreams::new())
                .implicit::<Consumer, i64>(NAMESPACE),
        )
        .start()
        .await
}

/// What the scenario saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Activations on the silo before the first tick (none: nothing called
    /// the consumer).
    pub activations_before: usize,
    /// What the consumer received.
    pub received: Vec<i64>,
}

/// Starts producer `key` pushing `count` ints and waits until the consumer
/// has them all (or 10 s pass).
pub async fn play(silo: &Silo, key: i64, count: i64) -> actor_core::Result<Outcome> {
    let activations_before = silo.activation_count();
    let producer = silo.get_grain::<Producer>(key);
    producer.start(count, 20).await?;
    let consumer = silo.get_grain::<Consumer>(key);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Only read the consumer once the producer is done, so that this
        // call is never what activates it.
        if producer.pushed().await? >= count || tokio::time::Instant::now() > deadline {
            let received = consumer.received().await?;
            if received.len() as i64 >= count || tokio::time::Instant::now() > deadline {
                return Ok(Outcome {
                    activations_before,
                    received,
                });
            }
        }
    }
}
