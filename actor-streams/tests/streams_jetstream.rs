//! The NATS JetStream provider on the project's server (127.0.0.1:4222):
//! durable publish, implicit activation, per-stream order, redelivery when
//! an ack does not come within ack_wait, rewind from a token, poison
//! messages to the dead-letter subject, and a server that is not there.
//! With CI=true a missing server fails these tests.

use std::time::Duration;

use actor_core::prelude::*;
use actor_streams::{
    Ack, DEFAULT_NATS_URL, Delivery, DeliveryPolicy, Error, MemoryStreams, NatsStreams,
    SequenceToken, SiloBuilderStreamsExt, StreamId, Streams,
};
use async_nats::jetstream;
use futures::StreamExt;

fn require_service() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

struct Server {
    js: jetstream::Context,
    client: async_nats::Client,
    provider: NatsStreams,
}

impl Server {
    /// A provider on a JetStream stream of its own (deleted at the end),
    /// or `None` (skip) when the server is missing outside CI.
    async fn new(partitions: u32, prefetch: usize, ack_wait: Duration) -> Option<Server> {
        let client = match async_nats::connect(DEFAULT_NATS_URL).await {
            Ok(c) => c,
            Err(e) if !require_service() => {
                eprintln!("skipping: NATS at 127.0.0.1:4222 unavailable: {e}");
                return None;
            }
            Err(e) => panic!("NATS at 127.0.0.1:4222 is required with CI=true: {e}"),
        };
        let name = format!("t{}", uuid::Uuid::new_v4().simple());
        let provider = NatsStreams::new(DEFAULT_NATS_URL)
            .stream_name(&name)
            .partitions(partitions)
            .prefetch(prefetch)
            .ack_wait(ack_wait)
            .max_item_bytes(4096);
        Some(Server {
            js: jetstream::new(client.clone()),
            client,
            provider,
        })
    }

    async fn messages(&self) -> u64 {
        let mut s = self
            .js
            .get_stream(self.provider.jetstream_name())
            .await
            .unwrap();
        s.info().await.unwrap().state.messages
    }

    async fn delete(self) {
        let name = self.provider.jetstream_name().to_owned();
        let _ = self.js.delete_stream(&name).await;
        let _ = self.js.delete_stream(format!("{name}_DEAD")).await;
    }
}

#[derive(Default)]
struct Tally {
    got: Vec<i64>,
    tokens: Vec<SequenceToken>,
    attempts: Vec<u32>,
}

impl Grain for Tally {
    const TYPE_NAME: &'static str = "tally";
}

impl Handler<Delivery<i64>> for Tally {
    async fn handle(&mut self, d: Delivery<i64>, _ctx: &GrainContext<Self>) -> Ack {
        self.got.push(d.item);
        self.tokens.push(d.token);
        self.attempts.push(d.attempt);
        Ok(())
    }
}

#[grain_methods(also_handles(Delivery<i64>))]
impl Tally {
    #[read_only]
    async fn got(&self) -> Vec<i64> {
        self.got.clone()
    }

    #[read_only]
    async fn tokens(&self) -> Vec<SequenceToken> {
        self.tokens.clone()
    }

    #[read_only]
    async fn attempts(&self) -> Vec<u32> {
        self.attempts.clone()
    }

    /// Subscribes explicitly to ("numbers", key) from `token` on.
    async fn follow_from(
        &mut self,
        provider: String,
        key: i64,
        token: SequenceToken,
        ctx: &GrainContext<Self>,
    ) -> Result<String, String> {
        let p = Streams::provider(ctx.silo(), &provider).map_err(|e| e.to_string())?;
        let h = p
            .subscribe_from::<Tally, i64>(&ctx.this(), StreamId::new("numbers", key), token)
            .await
            .map_err(|e| e.to_string())?;
        Ok(h.id().to_string())
    }
}

async fn silo(s: &Server, pulling: bool) -> Silo {
    Silo::builder()
        .grain::<Tally>()
        .with_streams(
            Streams::builder()
                .provider("nats", s.provider.clone())
                .provider("mem", MemoryStreams::new())
                .implicit::<Tally, i64>("numbers")
                .pulling(pulling)
                .delivery(DeliveryPolicy::default().retry_backoff(Duration::from_millis(10))),
        )
        .start()
        .await
        .unwrap()
}

async fn wait_for(t: &GrainRef<Tally>, n: usize, secs: u64) -> Vec<i64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let got = t.got().await.unwrap();
        if got.len() >= n || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_publish_is_kept_and_the_first_item_activates_the_consumer() {
    let Some(s) = Server::new(4, 8, Duration::from_secs(30)).await else {
        return;
    };
    let publisher = silo(&s, false).await;
    let nats = Streams::provider(&publisher, "nats").unwrap();
    let producers: Vec<_> = (0..3)
        .map(|k| nats.producer::<i64>(StreamId::new("numbers", k)))
        .collect();
    for n in 0..40 {
        for p in &producers {
            p.publish(&n).await.unwrap();
        }
    }
    producers[1]
        .publish_batch(&(40..80).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(s.messages().await, 160);
    let silo = silo(&s, true).await;
    for k in 0..3 {
        let n = if k == 1 { 80 } else { 40 };
        let t = silo.get_grain::<Tally>(k);
        assert_eq!(
            wait_for(&t, n, 20).await,
            (0..n as i64).collect::<Vec<_>>(),
            "stream {k}"
        );
        let tokens = t.tokens().await.unwrap();
        assert!(
            tokens.iter().all(|t| t.offset.is_some()),
            "JetStream gives offsets"
        );
        assert!(tokens.windows(2).all(|w| w[0].offset < w[1].offset));
    }
    publisher.shutdown().await;
    silo.shutdown().await;
    s.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_whose_ack_does_not_come_within_ack_wait_is_delivered_again() {
    let Some(s) = Server::new(1, 4, Duration::from_secs(1)).await else {
        return;
    };
    let publisher = silo(&s, false).await;
    Streams::provider(&publisher, "nats")
        .unwrap()
        .producer::<i64>(StreamId::new("numbers", 5))
        .publish_batch(&[1, 2])
        .await
        .unwrap();
    // A puller that dies without acking (as a killed process would): it
    // takes both items from the partition's durable consumer and vanishes.
    let stream = s.js.get_stream(s.provider.jetstream_name()).await.unwrap();
    let durable = format!("{}-p0", s.provider.jetstream_name());
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &durable,
            jetstream::consumer::pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: s.provider.subject_of(0),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(1),
                max_ack_pending: 4,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(2)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let mut taken = 0;
    while let Some(m) = batch.next().await {
        m.unwrap();
        taken += 1;
    }
    assert_eq!(taken, 2);
    let started = std::time::Instant::now();
    let silo = silo(&s, true).await;
    let t = silo.get_grain::<Tally>(5);
    assert_eq!(wait_for(&t, 2, 20).await, [1, 2]);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "after ack_wait"
    );
    assert_eq!(
        t.attempts().await.unwrap(),
        [2, 2],
        "both were redeliveries"
    );
    publisher.shutdown().await;
    silo.shutdown().await;
    s.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_can_start_from_a_token_and_others_refuse_with_a_clear_error() {
    let Some(s) = Server::new(2, 8, Duration::from_secs(30)).await else {
        return;
    };
    let silo = silo(&s, true).await;
    let p = Streams::provider(&silo, "nats")
        .unwrap()
        .producer::<i64>(StreamId::new("numbers", 1));
    p.publish_batch(&[1, 2, 3, 4, 5]).await.unwrap();
    let implicit = silo.get_grain::<Tally>(1);
    assert_eq!(wait_for(&implicit, 5, 20).await, [1, 2, 3, 4, 5]);
    let from = implicit.tokens().await.unwrap()[1];
    // Another grain subscribes to the same stream from item 2's token: it
    // gets 2..=5 replayed, then what comes next.
    let late = silo.get_grain::<Tally>(100);
    late.follow_from("nats".into(), 1, from)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(wait_for(&late, 4, 20).await, [2, 3, 4, 5]);
    p.publish(&6).await.unwrap();
    assert_eq!(wait_for(&implicit, 6, 20).await, [1, 2, 3, 4, 5, 6]);
    assert_eq!(wait_for(&late, 5, 20).await, [2, 3, 4, 5, 6]);

    // The memory provider keeps no history.
    let err = late
        .follow_from("mem".into(), 1, from)
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.contains("cannot rewind"), "{err}");
    silo.shutdown().await;
    s.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_is_not_an_item_goes_to_the_dead_letter_subject() {
    let Some(s) = Server::new(1, 4, Duration::from_secs(30)).await else {
        return;
    };
    let silo = silo(&s, true).await;
    let p = Streams::provider(&silo, "nats")
        .unwrap()
        .producer::<i64>(StreamId::new("numbers", 3));
    p.publish(&1).await.unwrap();
    s.js.publish(
        s.provider.subject_of(0),
        b"\xff\xfe not bincode".to_vec().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    p.publish(&2).await.unwrap();
    let t = silo.get_grain::<Tally>(3);
    assert_eq!(wait_for(&t, 2, 20).await, [1, 2]);
    let dead = format!("{}_DEAD", s.provider.jetstream_name());
    let mut found = None;
    for _ in 0..50 {
        let mut st = s.js.get_stream(&dead).await.unwrap();
        if st.info().await.unwrap().state.messages == 1 {
            found = Some(st.get_raw_message(1).await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let msg = found.expect("one dead letter");
    assert_eq!(msg.payload.as_ref(), b"\xff\xfe not bincode");
    let error = msg
        .headers
        .get("Stream-Error")
        .map(|v| v.to_string())
        .unwrap_or_default();
    assert!(error.contains("not a stream item"), "{error}");
    drop(s.client.clone());
    silo.shutdown().await;
    s.delete().await;
}

#[tokio::test]
async fn oversized_items_and_a_missing_server_are_refused_at_publish() {
    let Some(s) = Server::new(1, 4, Duration::from_secs(30)).await else {
        return;
    };
    let silo = Silo::builder()
        .with_streams(
            Streams::builder()
                .provider("nats", s.provider.clone())
                .provider(
                    "nowhere",
                    NatsStreams::new("nats://127.0.0.1:1").timeout(Duration::from_secs(2)),
                )
                .pulling(false),
        )
        .start()
        .await
        .unwrap();
    let big = Streams::provider(&silo, "nats")
        .unwrap()
        .producer::<String>(StreamId::new("numbers", 1))
        .publish(&"x".repeat(5000))
        .await
        .unwrap_err();
    assert!(matches!(big, Error::TooLarge { limit: 4096, .. }), "{big}");
    let down = Streams::provider(&silo, "nowhere")
        .unwrap()
        .producer::<i64>(StreamId::new("numbers", 1))
        .publish(&1)
        .await
        .unwrap_err();
    assert!(matches!(down, Error::Unavailable { .. }), "{down}");
    silo.shutdown().await;
    s.delete().await;
}
