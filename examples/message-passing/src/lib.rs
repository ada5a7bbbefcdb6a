//! # Message passing: a producer grain calls a consumer grain
//!
//! The course's first exercise (*MessagePassing*) has a producer call a
//! consumer's method in a loop. The call blocks: the producer cannot send
//! item `n + 1` before the consumer has finished item `n` and answered.
//! Objects talk only through method calls, and a call is a message with a
//! reply.
//!
//! Here both sides are grains. The [`Producer`] holds a typed reference
//! (`GrainRef<Consumer>`) and calls [`Consume`] in a loop with
//! [`ask`](actor_core::GrainRef::ask), awaiting every [`Ack`] before the
//! next send. Nothing is shared between the two grains but messages.
//!
//! The lockstep is visible from both ends:
//!
//! - each [`Consume`] carries the sequence number of the last reply the
//!   producer had received ([`Consume::last_ack`]); the consumer compares it
//!   with the last item it finished and records the result in its
//!   [`Delivery`] log;
//! - the producer checks that each [`Ack`] names the item just sent and
//!   that the consumer's count went up by exactly one, and it times each
//!   round trip, which can never be shorter than the consumer's work.
//!
//! [`build_silo`] and [`run_scenario`] are shared by `main.rs` and the
//! tests.

use std::time::{Duration, Instant};

use actor_core::prelude::*;
use serde::{Deserialize, Serialize};

/// How long the consumer works on each item unless told otherwise.
pub const DEFAULT_WORK: Duration = Duration::from_millis(20);

/// One item for the consumer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Consume {
    /// The item's position in the producer's loop, from 0.
    pub seq: u64,
    /// The item itself.
    pub payload: String,
    /// The sequence number of the last [`Ack`] the producer had received
    /// when it sent this item (`None` for the first item).
    pub last_ack: Option<u64>,
}

/// The consumer's reply to [`Consume`], sent once the item is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The item that was processed.
    pub seq: u64,
    /// How many items the consumer has processed so far, this one included.
    pub processed: u64,
}

impl Message for Consume {
    type Reply = Ack;
    const NAME: &'static str = "consume";
}

/// What the consumer recorded about one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The item's sequence number.
    pub seq: u64,
    /// The item's payload.
    pub payload: String,
    /// Whether the producer had the reply to the consumer's previous item
    /// when it sent this one: the caller waited for the previous call.
    pub caller_had_previous_reply: bool,
}

/// Asks the consumer for its log of processed items.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Deliveries;

impl Message for Deliveries {
    type Reply = Vec<Delivery>;
    const NAME: &'static str = "deliveries";
}

/// The consumer grain: processes one item per turn (taking `work` time)
/// and logs what it received.
#[derive(Debug)]
pub struct Consumer {
    work: Duration,
    log: Vec<Delivery>,
}

impl Consumer {
    /// A consumer that spends `work` on each item.
    pub fn new(work: Duration) -> Self {
        Consumer {
            work,
            log: Vec::new(),
        }
    }
}

impl Grain for Consumer {
    const TYPE_NAME: &'static str = "consumer";
}

impl GrainMethods for Consumer {
    fn register(m: &mut Methods<Self>) {
        m.add::<Consume, _>().add::<Deliveries, _>();
    }
}

impl Handler<Consume> for Consumer {
    async fn handle(&mut self, msg: Consume, _ctx: &GrainContext<Self>) -> Ack {
        let previous = self.log.last().map(|d| d.seq);
        tokio::time::sleep(self.work).await;
        self.log.push(Delivery {
            seq: msg.seq,
            payload: msg.payload,
            caller_had_previous_reply: msg.last_ack == previous,
        });
        Ack {
            seq: msg.seq,
            processed: self.log.len() as u64,
        }
    }
}

// Reading the log does not change it, so it may run beside other readers.
impl SharedHandler<Deliveries> for Consumer {
    const INTERLEAVE: Interleave = Interleave::ReadOnly;
    async fn handle(&self, _: Deliveries, _ctx: &GrainContext<Self>) -> Vec<Delivery> {
        self.log.clone()
    }
}

/// Tells the producer to send `count` items to the consumer with key
/// `consumer`, one call at a time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Produce {
    /// The consumer grain's key.
    pub consumer: String,
    /// How many items to send.
    pub count: u64,
}

/// One round trip as the producer saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundTrip {
    /// The consumer's reply.
    pub ack: Ack,
    /// Time from sending the item to receiving its reply.
    pub elapsed: Duration,
}

impl Message for Produce {
    /// The round trips in order, or what went wrong (a runtime error, or
    /// a reply that broke the lockstep).
    type Reply = Result<Vec<RoundTrip>, String>;
    const NAME: &'static str = "produce";
    fn is_error(reply: &Self::Reply) -> bool {
        reply.is_err()
    }
}

/// The producer grain: calls the consumer by reference in a loop.
#[derive(Debug, Default)]
pub struct Producer;

impl Grain for Producer {
    const TYPE_NAME: &'static str = "producer";
}

impl GrainMethods for Producer {
    fn register(m: &mut Methods<Self>) {
        m.add::<Produce, _>();
    }
}

impl Handler<Produce> for Producer {
    async fn handle(
        &mut self,
        msg: Produce,
        ctx: &GrainContext<Self>,
    ) -> Result<Vec<RoundTrip>, String> {
        let consumer = ctx.get_grain::<Consumer>(msg.consumer.as_str());
        let mut trips: Vec<RoundTrip> = Vec::with_capacity(msg.count as usize);
        for seq in 0..msg.count {
            let item = Consume {
                seq,
                payload: format!("item-{seq}"),
                last_ack: trips.last().map(|t| t.ack.seq),
            };
            let sent = Instant::now();
            // The loop does not go on until the consumer has answered.
            let ack = consumer.ask(item).await.map_err(|e| e.to_string())?;
            let elapsed = sent.elapsed();
            if ack.seq != seq {
                return Err(format!(
                    "sent item {seq}, got the reply for item {}",
                    ack.seq
                ));
            }
            if let Some(prev) = trips.last()
                && ack.processed != prev.ack.processed + 1
            {
                return Err(format!(
                    "the consumer's count went from {} to {} over one call",
                    prev.ack.processed, ack.processed
                ));
            }
            trips.push(RoundTrip { ack, elapsed });
        }
        Ok(trips)
    }
}

/// Starts a silo with the [`Producer`] and a [`Consumer`] that spends
/// `work` on each item.
pub async fn build_silo(work: Duration) -> actor_core::Result<Silo> {
    Silo::builder()
        .name("message-passing")
        .grain::<Producer>()
        .grain_with::<Consumer>(move |_| Consumer::new(work))
        .start()
        .await
}

/// What a run of the scenario produced.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The producer's round trips, in the order it made them.
    pub round_trips: Vec<RoundTrip>,
    /// The consumer's log, in the order it processed the items.
    pub deliveries: Vec<Delivery>,
}

/// Has the producer grain `producer` send `items` items to the consumer
/// grain `consumer`, then reads the consumer's log.
pub async fn run_scenario(
    silo: &Silo,
    producer: &str,
    consumer: &str,
    items: u64,
) -> anyhow::Result<Summary> {
    let round_trips = silo
        .get_grain::<Producer>(producer)
        .ask(Produce {
            consumer: consumer.to_owned(),
            count: items,
        })
        .await?
        .map_err(anyhow::Error::msg)?;
    let deliveries = silo.get_grain::<Consumer>(consumer).ask(Deliveries).await?;
    Ok(Summary {
        round_trips,
        deliveries,
    })
}
