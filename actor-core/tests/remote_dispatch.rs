//! Every grain a silo takes answers serialized calls as it answers local
//! ones: `SiloBuilder::grain` requires `GrainMethods`, which
//! `#[grain_methods]` implements. A grain written as the workspace used to
//! write them, with an `impl Grain` that lists nothing, used to work
//! locally and fail with `UnknownMethod` from another silo; here it is
//! called from another silo. (That a grain without `GrainMethods` no longer
//! compiles is `actor-core-macros`' `tests/ui/unlisted_messages.rs`.)

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actor_core::prelude::*;
use actor_core::{EncodedCall, Error, Router};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// A grain with `#[grain_methods]` and an `impl Grain` that names nothing
/// else: no `register` anywhere.
#[derive(Default)]
struct Counter {
    value: u64,
}

impl Grain for Counter {
    const TYPE_NAME: &'static str = "counter";
}

#[grain_methods(also_handles(Tick))]
impl Counter {
    async fn add(&mut self, n: u64) -> u64 {
        self.value += n;
        self.value
    }

    #[read_only]
    async fn get(&self) -> u64 {
        self.value
    }
}

/// A message defined apart from the block (as a reminder's tick is), with
/// its handler written by hand.
#[derive(Serialize, Deserialize)]
struct Tick;
impl Message for Tick {
    type Reply = u64;
    const NAME: &'static str = "tick";
}
impl Handler<Tick> for Counter {
    async fn handle(&mut self, _: Tick, _: &GrainContext<Self>) -> u64 {
        self.value += 100;
        self.value
    }
}

/// A grain written entirely by hand lists its messages itself.
#[derive(Default)]
struct Echo;
impl Grain for Echo {
    const TYPE_NAME: &'static str = "echo";
}
#[derive(Serialize, Deserialize)]
struct Say(String);
impl Message for Say {
    type Reply = String;
    const NAME: &'static str = "say";
}
impl Handler<Say> for Echo {
    async fn handle(&mut self, Say(s): Say, _: &GrainContext<Self>) -> String {
        s
    }
}
impl GrainMethods for Echo {
    fn register(m: &mut Methods<Self>) {
        m.add::<Say, _>();
    }
}

/// Sends every call to the other silo, serialized.
struct Elsewhere(Arc<OnceLock<Silo>>);

impl Router for Elsewhere {
    fn is_local(&self, _: &GrainId) -> bool {
        false
    }
    fn invoke(&self, call: EncodedCall) -> BoxFuture<'static, actor_core::Result<Vec<u8>>> {
        let there = self.0.get().expect("the far silo started").clone();
        Box::pin(async move { there.invoke_encoded(call).await })
    }
}

/// A silo whose every call runs on a second silo, and that second silo.
async fn near_and_far() -> (Silo, Silo) {
    let cell = Arc::new(OnceLock::new());
    let near = Silo::builder()
        .name("near")
        .grain::<Counter>()
        .grain::<Echo>()
        .router(Arc::new(Elsewhere(cell.clone())))
        .call_timeout(Duration::from_secs(5))
        .start()
        .await
        .unwrap();
    let far = Silo::builder()
        .name("far")
        .grain::<Counter>()
        .grain::<Echo>()
        .start()
        .await
        .unwrap();
    cell.set(far.clone()).ok().unwrap();
    (near, far)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grain_methods_are_reached_from_another_silo_without_a_register_line() {
    let (near, far) = near_and_far().await;
    let c = near.get_grain::<Counter>("c");
    assert_eq!(c.add(2).await.unwrap(), 2);
    assert_eq!(c.get().await.unwrap(), 2);
    // The hand-written handler named in `also_handles`.
    assert_eq!(c.ask(Tick).await.unwrap(), 102);
    // All of it ran on the far silo, in one activation.
    let id = GrainId::new("counter", "c");
    assert!(far.is_active(&id) && !near.is_active(&id));
    assert_eq!(far.get_grain::<Counter>("c").get().await.unwrap(), 102);
    near.shutdown().await;
    far.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_written_messages_are_reached_from_another_silo() {
    let (near, far) = near_and_far().await;
    let echo = near.get_grain::<Echo>("e");
    assert_eq!(echo.ask(Say("hi".into())).await.unwrap(), "hi");
    assert!(far.is_active(&GrainId::new("echo", "e")));
    near.shutdown().await;
    far.shutdown().await;
}

#[tokio::test]
async fn an_unlisted_name_is_refused_with_what_to_do() {
    let (near, far) = near_and_far().await;
    let call = EncodedCall::new(
        GrainId::new("counter", "c"),
        "reset",
        Vec::new(),
        Duration::from_secs(5),
    );
    let err = far.invoke_encoded(call).await.unwrap_err();
    assert!(
        matches!(&err, Error::UnknownMethod { type_name, method } if type_name == "counter" && method == "reset"),
        "{err}"
    );
    assert!(err.to_string().contains("GrainMethods"), "{err}");
    near.shutdown().await;
    far.shutdown().await;
}
