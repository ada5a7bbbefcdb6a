//! Explicit subscriptions on every subscription store (memory, SQLite,
//! PostgreSQL): subscribe, resume after deactivation without a duplicate,
//! unsubscribe, and dead letters of a subscription whose consumer keeps
//! failing.

use std::sync::Arc;
use std::time::Duration;

use actor_core::prelude::*;
use actor_streams::{
    Ack, Delivery, DeliveryPolicy, MemoryStreams, MemorySubscriptions, SiloBuilderStreamsExt,
    SqlSubscriptions, StreamId, Streams, Subscription, SubscriptionId, SubscriptionStore,
};

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Default)]
struct Listener {
    got: Vec<String>,
}

impl Grain for Listener {
    const TYPE_NAME: &'static str = "listener";
}

impl Handler<Delivery<String>> for Listener {
    async fn handle(&mut self, d: Delivery<String>, _ctx: &GrainContext<Self>) -> Ack {
        if d.item == "poison" {
            return Err("cannot digest poison".into());
        }
        assert!(
            d.subscription.is_some(),
            "explicit deliveries name their subscription"
        );
        self.got.push(d.item);
        Ok(())
    }
}

#[grain_methods(also_handles(Delivery<String>))]
impl Listener {
    /// Subscribes to `room`; answers the subscription's id.
    async fn join(&mut self, room: String, ctx: &GrainContext<Self>) -> Result<String, String> {
        let mem = Streams::provider(ctx.silo(), "mem").map_err(|e| e.to_string())?;
        let handle = mem
            .subscribe::<Listener, String>(&ctx.this(), StreamId::new("chat", room))
            .await
            .map_err(|e| e.to_string())?;
        Ok(handle.id().0.clone())
    }

    /// The ids of the subscriptions it holds (what a reactivation resumes).
    async fn resume(&mut self, ctx: &GrainContext<Self>) -> Result<Vec<String>, String> {
        let mem = Streams::provider(ctx.silo(), "mem").map_err(|e| e.to_string())?;
        let handles = mem
            .subscriptions::<Listener, String>(&ctx.this())
            .await
            .map_err(|e| e.to_string())?;
        Ok(handles.iter().map(|h| h.id().0.clone()).collect())
    }

    /// Unsubscribes from `room`.
    async fn leave(&mut self, room: String, ctx: &GrainContext<Self>) -> Result<bool, String> {
        let mem = Streams::provider(ctx.silo(), "mem").map_err(|e| e.to_string())?;
        let handles = mem
            .subscriptions::<Listener, String>(&ctx.this())
            .await
            .map_err(|e| e.to_string())?;
        for h in handles {
            if h.stream().key.as_str() == Some(room.as_str()) {
                return h.unsubscribe().await.map_err(|e| e.to_string());
            }
        }
        Ok(false)
    }

    #[read_only]
    async fn got(&self) -> Vec<String> {
        self.got.clone()
    }
}

async fn silo(store: Arc<dyn SubscriptionStore>) -> Silo {
    Silo::builder()
        .grain::<Listener>()
        .with_streams(
            Streams::builder()
                .provider("mem", MemoryStreams::new())
                .subscription_store_arc(store)
                .delivery(
                    DeliveryPolicy::default()
                        .max_attempts(2)
                        .retry_backoff(Duration::from_millis(1)),
                ),
        )
        .start()
        .await
        .unwrap()
}

async fn wait_for(grain: &GrainRef<Listener>, n: usize) -> Vec<String> {
    for _ in 0..1000 {
        let got = grain.got().await.unwrap();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {n} items");
}

/// The whole life of a subscription, on `store`.
async fn subscribe_resume_unsubscribe(store: Arc<dyn SubscriptionStore>) {
    let run = uuid::Uuid::new_v4().to_string();
    let room = format!("room-{run}");
    let silo = silo(store.clone()).await;
    let mem = Streams::provider(&silo, "mem").unwrap();
    let me = silo.get_grain::<Listener>(format!("ann-{run}"));
    let id = me.join(room.clone()).await.unwrap().unwrap();
    let chat = mem.producer::<String>(StreamId::new("chat", room.clone()));
    chat.publish(&"hello".to_owned()).await.unwrap();
    assert_eq!(wait_for(&me, 1).await, ["hello"]);

    // Subscribing again (as a grain would in every on_activate) gives the
    // same subscription back: one row, one delivery per item.
    assert_eq!(me.join(room.clone()).await.unwrap().unwrap(), id);
    assert_eq!(store.of_consumer(me.id()).await.unwrap().len(), 1);

    // Deactivated, the subscription stays: the next item activates the
    // listener, which resumes the same handle.
    silo.deactivate_all(Duration::from_secs(5)).await;
    assert_eq!(silo.activation_count(), 0);
    chat.publish(&"again".to_owned()).await.unwrap();
    assert_eq!(wait_for(&me, 1).await, ["again"]);
    assert_eq!(me.resume().await.unwrap().unwrap(), vec![id.clone()]);
    assert_eq!(me.join(room.clone()).await.unwrap().unwrap(), id);
    chat.publish(&"once".to_owned()).await.unwrap();
    assert_eq!(wait_for(&me, 2).await, ["again", "once"]);

    // Unsubscribed: no more items.
    assert!(me.leave(room.clone()).await.unwrap().unwrap());
    assert!(!me.leave(room.clone()).await.unwrap().unwrap());
    chat.publish(&"gone".to_owned()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(me.got().await.unwrap(), ["again", "once"]);
    assert!(store.of_consumer(me.id()).await.unwrap().is_empty());

    // A subscription whose consumer keeps failing: the item is kept in
    // dead letters with the subscription and the error, and later items
    // still arrive.
    me.join(room.clone()).await.unwrap().unwrap();
    chat.publish_batch(&["poison".to_owned(), "after".to_owned()])
        .await
        .unwrap();
    assert_eq!(wait_for(&me, 3).await, ["again", "once", "after"]);
    // The poison is retried after the rest of its batch: wait for its
    // dead letter.
    let mut dead = Vec::new();
    for _ in 0..500 {
        dead = store
            .dead_letters()
            .await
            .unwrap()
            .into_iter()
            .filter(|d| d.stream == StreamId::new("chat", room.clone()))
            .collect();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].subscription, Some(SubscriptionId(id.clone())));
    assert_eq!(dead[0].attempts, 2);
    assert!(
        dead[0].error.contains("cannot digest poison"),
        "{}",
        dead[0].error
    );
    assert_eq!(silo.decode::<String>(&dead[0].payload).unwrap(), "poison");
    silo.shutdown().await;

    // A new silo on the same store: the subscription is still there.
    let silo = self::silo(store.clone()).await;
    let me = silo.get_grain::<Listener>(format!("ann-{run}"));
    Streams::provider(&silo, "mem")
        .unwrap()
        .producer::<String>(StreamId::new("chat", room.clone()))
        .publish(&"new silo".to_owned())
        .await
        .unwrap();
    assert_eq!(wait_for(&me, 1).await, ["new silo"]);
    silo.shutdown().await;
}

/// The store contract, directly.
async fn store_contract(store: Arc<dyn SubscriptionStore>) {
    let run = uuid::Uuid::new_v4().to_string();
    let stream = StreamId::new("contract", run.clone());
    let consumer = GrainId::new("listener", format!("c-{run}"));
    let sub = Subscription {
        id: SubscriptionId::of("mem", &stream, &consumer),
        provider: "mem".into(),
        stream: stream.clone(),
        consumer: consumer.clone(),
        method: "stream:string".into(),
        created_millis: 1,
    };
    let (first, created) = store.get_or_insert(sub.clone()).await.unwrap();
    assert!(created);
    assert_eq!(first, sub);
    let again = Subscription {
        created_millis: 2,
        ..sub.clone()
    };
    let (second, created) = store.get_or_insert(again).await.unwrap();
    assert!(!created, "a second subscribe finds the first row");
    assert_eq!(second.created_millis, 1);
    assert_eq!(
        store.of_stream("mem", &stream).await.unwrap(),
        vec![sub.clone()]
    );
    assert!(store.of_stream("other", &stream).await.unwrap().is_empty());
    assert_eq!(
        store.of_consumer(&consumer).await.unwrap(),
        vec![sub.clone()]
    );
    assert!(store.remove(&sub.id).await.unwrap());
    assert!(!store.remove(&sub.id).await.unwrap());
    assert!(store.of_stream("mem", &stream).await.unwrap().is_empty());
}

fn require_service() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

async fn postgres() -> Option<Arc<dyn SubscriptionStore>> {
    match SqlSubscriptions::connect(PG_URL).await {
        Ok(s) => Some(Arc::new(s)),
        Err(e) if !require_service() => {
            eprintln!("skipping: PostgreSQL at {PG_URL} unavailable: {e}");
            None
        }
        Err(e) => panic!("PostgreSQL at {PG_URL} is required with CI=true: {e}"),
    }
}

async fn sqlite() -> (tempfile::TempDir, Arc<dyn SubscriptionStore>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("subs.db").display());
    (
        dir,
        Arc::new(SqlSubscriptions::connect(&url).await.unwrap()),
    )
}

#[tokio::test]
async fn memory_store_subscribe_resume_unsubscribe() {
    let store: Arc<dyn SubscriptionStore> = Arc::new(MemorySubscriptions::new());
    store_contract(store.clone()).await;
    subscribe_resume_unsubscribe(store).await;
}

#[tokio::test]
async fn sqlite_store_subscribe_resume_unsubscribe() {
    let (_dir, store) = sqlite().await;
    store_contract(store.clone()).await;
    subscribe_resume_unsubscribe(store).await;
}

#[tokio::test]
async fn postgres_store_subscribe_resume_unsubscribe() {
    let Some(store) = postgres().await else {
        return;
    };
    store_contract(store.clone()).await;
    subscribe_resume_unsubscribe(store).await;
}

#[tokio::test]
async fn a_url_without_its_driver_or_scheme_is_a_clear_error() {
    let err = SqlSubscriptions::connect("mysql://h/db").await.unwrap_err();
    assert!(err.to_string().contains("unknown scheme `mysql`"), "{err}");
    let err = SqlSubscriptions::connect("postgres://nobody@127.0.0.1:1/none")
        .await
        .unwrap_err();
    assert!(
        matches!(err, actor_streams::Error::Store { .. }),
        "an unreachable database is a store error: {err}"
    );
}
