//! Course exercise 07 (EventsOutOfProcessByMessageBroker) as grains: jobs
//! are published on a stream backed by a durable RabbitMQ queue, pulled
//! with prefetch 1 and acked only after the consumer grain's turn ends.
//! The silo whose worker is processing job 3 dies before the ack; the
//! broker delivers job 3 again to the next silo.

use std::sync::Arc;
use std::time::Duration;

use actor_core::prelude::*;
use actor_streams::{
    Ack, DEFAULT_RABBITMQ_URL, Delivery, DeliveryPolicy, RabbitStreams, SiloBuilderStreamsExt,
    StreamId, StreamItem, Streams,
};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The stream namespace of jobs.
pub const JOBS: &str = "jobs";

/// A job to process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Its number.
    pub n: u32,
}

impl StreamItem for Job {
    const NAME: &'static str = "stream:job";
}

/// One processing of a job: which job, on which silo, which attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    /// The job.
    pub job: u32,
    /// The silo whose worker processed it.
    pub silo: String,
    /// 1 for the first delivery, 2 for a redelivery.
    pub attempt: u32,
}

/// What a silo's workers share: the log of processed jobs, and the job
/// whose processing "crashes" this silo (it hangs until the silo is
/// killed, never acking).
#[derive(Default)]
pub struct Plant {
    log: Mutex<Vec<Processed>>,
    crash_on: Option<u32>,
    crashing: tokio::sync::Notify,
}

/// The consumer grain: implicit subscriber of [`JOBS`].
#[derive(Default)]
pub struct Worker;

impl Grain for Worker {
    const TYPE_NAME: &'static str = "worker";
}

impl Handler<Delivery<Job>> for Worker {
    async fn handle(&mut self, d: Delivery<Job>, ctx: &GrainContext<Self>) -> Ack {
        let silo = ctx.silo();
        let plant = silo.extension::<Arc<Plant>>().cloned().unwrap_or_default();
        if plant.crash_on == Some(d.item.n) {
            println!(
                "{}: processing job {} ... and the silo dies before the ack",
                silo.name(),
                d.item.n
            );
            plant.crashing.notify_one();
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        println!(
            "{}: job {} done (attempt {}), acked after this turn",
            silo.name(),
            d.item.n,
            d.attempt
        );
        plant.log.lock().push(Processed {
            job: d.item.n,
            silo: silo.name().to_owned(),
            attempt: d.attempt,
        });
        Ok(())
    }
}

impl GrainMethods for Worker {
    fn register(m: &mut Methods<Self>) {
        m.add::<Delivery<Job>, _>();
    }
}

/// The provider of the exercise: one durable queue (`<prefix>.0`),
/// prefetch 1.
pub fn provider(url: &str, prefix: &str) -> RabbitStreams {
    RabbitStreams::new(url)
        .queue_prefix(prefix)
        .partitions(1)
        .prefetch(1)
}

/// A silo named `name` with workers, pulling the queue; `crash_on` makes
/// it hang on that job.
pub async fn worker_silo(
    name: &str,
    provider: RabbitStreams,
    crash_on: Option<u32>,
) -> actor_core::Result<(Silo, Arc<Plant>)> {
    let plant = Arc::new(Plant {
        crash_on,
        ..Plant::default()
    });
    let silo = Silo::builder()
        .name(name)
        .grain::<Worker>()
        .extension(plant.clone())
        .with_streams(
            Streams::builder()
                .provider("rabbit", provider)
                .implicit::<Worker, Job>(JOBS)
                .delivery(DeliveryPolicy::default().retry_backoff(Duration::from_millis(50))),
        )
        .start()
        .await?;
    Ok((silo, plant))
}

/// What the scenario saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Jobs waiting in the durable queue after the publish, before any
    /// worker ran.
    pub queued_before_workers: u32,
    /// Every processing, in order, across both silos.
    pub processed: Vec<Processed>,
}

/// Publishes jobs 1..=`jobs` to a fresh durable queue, runs worker silo
/// `a` until it dies on job 3, then worker silo `b`, and deletes the queue.
pub async fn play(url: &str, jobs: u32) -> Result<Outcome, Box<dyn std::error::Error>> {
    let prefix = format!(
        "example-rabbitmq-{}",
        &uuid::Uuid::new_v4().to_string()[..8]
    );
    let queue = format!("{prefix}.0");
    let admin = Connection::connect(url, ConnectionProperties::default()).await?;
    let result = scenario(url, &prefix, &queue, &admin, jobs).await;
    let ch = admin.create_channel().await?;
    for q in [queue.clone(), format!("{prefix}.dead")] {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = admin.close(200, "done".into()).await;
    result
}

async fn scenario(
    url: &str,
    prefix: &str,
    queue: &str,
    admin: &Connection,
    jobs: u32,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    // The producer: a silo that only publishes.
    let producer = Silo::builder()
        .name("producer")
        .with_streams(
            Streams::builder()
                .provider("rabbit", provider(url, prefix))
                .pulling(false),
        )
        .start()
        .await?;
    let stream = Streams::provider(&producer, "rabbit")?.producer::<Job>(StreamId::new(JOBS, 1));
    for n in 1..=jobs {
        stream.publish(&Job { n }).await?; // Ok = confirmed by the broker
    }
    let ch = admin.create_channel().await?;
    let waiting = |q: String| {
        let ch = ch.clone();
        async move {
            let passive = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::durable()
            };
            ch.queue_declare(q.as_str().into(), passive, FieldTable::default())
                .await
                .map(|q| q.message_count())
        }
    };
    let queued_before_workers = waiting(queue.to_owned()).await?;
    println!("{queued_before_workers} jobs wait in the durable queue {queue}");

    let (a, plant_a) = worker_silo("silo-a", provider(url, prefix), Some(3)).await?;
    tokio::time::timeout(Duration::from_secs(30), plant_a.crashing.notified()).await?;
    a.halt();
    println!("silo-a killed; job 3 was never acked");

    let (b, plant_b) = worker_silo("silo-b", provider(url, prefix), None).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while plant_b.log.lock().iter().filter(|p| p.job >= 3).count() < (jobs - 2) as usize
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut processed = plant_a.log.lock().clone();
    processed.extend(plant_b.log.lock().iter().cloned());
    b.shutdown().await;
    producer.shutdown().await;
    Ok(Outcome {
        queued_before_workers,
        processed,
    })
}

/// The broker of the project's machines.
pub fn default_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| DEFAULT_RABBITMQ_URL.to_owned())
}
