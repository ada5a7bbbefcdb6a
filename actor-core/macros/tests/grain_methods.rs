//! `#[grain_methods]` at run time: every kind of grain method called through
//! the generated `{Type}Ref` trait, and serialized calls dispatched by name.

use std::time::Duration;

use actor_core::__private::codec;
use actor_core::prelude::*;
use actor_core::{EncodedCall, Error};

use counter::{Counter, CounterAdd, CounterGet, CounterRef, CounterSwap};

/// The grain under test lives in its own module, as it would in a user's
/// crate, so the generated names are reached through paths and imports.
pub mod counter {
    use std::sync::atomic::{AtomicU64, Ordering};

    use actor_core::prelude::*;
    use actor_core_macros::grain_methods;
    use tokio::sync::{Barrier, Notify};

    /// A counter with a few kinds of grain methods.
    pub struct Counter {
        value: u64,
        /// Read by shared turns, so behind an atomic.
        reads: AtomicU64,
        /// Two `meet` calls pass it only if they run at the same time.
        barrier: Barrier,
        released: Notify,
        resets: u64,
    }

    impl Default for Counter {
        fn default() -> Self {
            Counter {
                value: 0,
                reads: AtomicU64::new(0),
                barrier: Barrier::new(2),
                released: Notify::new(),
                resets: 0,
            }
        }
    }

    impl Grain for Counter {
        const TYPE_NAME: &'static str = "counter";
    }

    #[grain_methods]
    impl Counter {
        /// Adds `n` and returns the total.
        pub async fn add(&mut self, n: u64) -> u64 {
            self.value += n;
            self.value
        }

        /// Adds `a * b`, with a mutable binding and two fields.
        pub async fn add_product(&mut self, mut a: u64, b: u64) -> u64 {
            a *= b;
            self.value += a;
            self.value
        }

        /// The total.
        #[read_only]
        pub async fn get(&self) -> u64 {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.value
        }

        /// Waits until a second `meet` arrives: two of them only finish if
        /// they interleave.
        #[read_only]
        pub async fn meet(&self) -> u64 {
            self.barrier.wait().await;
            self.value
        }

        /// Waits for `release`, holding a shared (non-interleaving) turn.
        pub async fn hold(&self) {
            self.released.notified().await;
        }

        /// Admitted even while `hold` runs.
        #[always_interleave]
        pub async fn release(&self) {
            self.released.notify_waiters();
        }

        /// Sets the total back to zero and says who it is.
        pub async fn reset(&mut self, ctx: &GrainContext<Self>) -> String {
            self.value = 0;
            self.resets += 1;
            ctx.id().to_string()
        }

        /// The context need not come last, and need not be named.
        pub async fn key_and(&self, _: &GrainContext<Self>, suffix: String) -> String {
            format!("{}{suffix}", self.resets)
        }

        /// Adds one; the caller does not wait.
        #[one_way]
        pub async fn bump(&mut self) {
            self.value += 1;
        }

        /// Adds `n`, one-way, from a shared turn.
        #[one_way]
        pub async fn count_reads(&self, n: u64) {
            self.reads.fetch_add(n, Ordering::Relaxed);
        }

        /// How many reads were counted.
        #[read_only]
        pub async fn reads(&self) -> u64 {
            self.reads.load(Ordering::Relaxed)
        }

        /// `Self` in a signature means the grain type, also in the message.
        pub async fn swap(&mut self, other: Option<Wrapper<Self>>) -> Result<u64, String> {
            match other {
                Some(Wrapper(v, _)) => Ok(std::mem::replace(&mut self.value, v)),
                None => Err("nothing to swap".to_owned()),
            }
        }

        /// Returns `()` but is asked, not told.
        pub async fn clear(&mut self) -> () {
            self.value = 0;
        }

        /// Compiled out, and so is everything generated for it.
        #[cfg(any())]
        pub async fn gone(&self) -> u64 {
            0
        }

        /// Not async: an ordinary method.
        pub fn double(&self) -> u64 {
            self.value * 2
        }
    }

    /// A serde type that mentions the grain type (as `Self` above).
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Wrapper<T>(pub u64, #[serde(skip)] pub std::marker::PhantomData<T>);
}

async fn silo() -> Silo {
    Silo::builder()
        .grain::<Counter>()
        .call_timeout(Duration::from_secs(5))
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_method_through_the_typed_reference() {
    let silo = silo().await;
    let c: GrainRef<Counter> = silo.get_grain::<Counter>("k");

    // Exclusive asks.
    let total: u64 = c.add(2).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(c.add_product(3, 4).await.unwrap(), 14);

    // One-way calls return at once; one caller's messages run in order.
    c.bump().unwrap();
    c.count_reads(10).unwrap();
    assert_eq!(c.get().await.unwrap(), 15);
    assert_eq!(c.reads().await.unwrap(), 11);

    // Methods taking the grain context.
    assert_eq!(c.reset().await.unwrap(), "counter/k");
    assert_eq!(c.key_and("x".to_owned()).await.unwrap(), "1x");
    assert_eq!(c.get().await.unwrap(), 0);

    // `Self` in a signature, grain errors inside the reply, `-> ()` asked.
    c.add(7).await.unwrap();
    let other = counter::Wrapper(40, std::marker::PhantomData);
    assert_eq!(c.swap(Some(other)).await.unwrap(), Ok(7));
    assert_eq!(
        c.swap(None).await.unwrap(),
        Err("nothing to swap".to_owned())
    );
    let (): () = c.clear().await.unwrap();
    assert_eq!(c.get().await.unwrap(), 0);

    // Grain-ref futures are Send: they can be spawned.
    let spawned = tokio::spawn({
        let c = c.clone();
        async move { c.add(1).await }
    });
    assert_eq!(spawned.await.unwrap().unwrap(), 1);

    // Metrics see the method names.
    let m = silo.metrics();
    let methods: Vec<_> = m.grain_type("counter").unwrap().methods.clone();
    for name in ["add", "add_product", "get", "reset", "bump", "swap"] {
        assert!(methods.iter().any(|s| s.method == name), "{name}");
    }
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_methods_interleave() {
    let silo = silo().await;
    let c = silo
        .get_grain::<Counter>("meet")
        .with_timeout(Duration::from_secs(2));
    c.add(5).await.unwrap();
    // Each `meet` waits for the other at a barrier: they only both return
    // if the silo runs them at the same time.
    let (a, b) = tokio::join!(c.meet(), c.meet());
    assert_eq!((a.unwrap(), b.unwrap()), (5, 5));
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_interleave_runs_beside_a_shared_turn() {
    let silo = silo().await;
    let c = silo
        .get_grain::<Counter>("hold")
        .with_timeout(Duration::from_secs(2));
    let held = tokio::spawn({
        let c = c.clone();
        async move { c.hold().await }
    });
    // `hold` is a shared turn that does not interleave; `release` gets in
    // beside it anyway, and lets it finish. Retry until `hold` is running
    // (a release before it starts would be lost).
    while !held.is_finished() {
        c.release().await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    held.await.unwrap().unwrap();
    silo.shutdown().await;
}

#[test]
fn interleaving_comes_from_the_attributes() {
    fn interleave<M: Message>() -> Interleave
    where
        Counter: SharedHandler<M>,
    {
        <Counter as SharedHandler<M>>::INTERLEAVE
    }
    assert_eq!(interleave::<CounterGet>(), Interleave::ReadOnly);
    assert_eq!(interleave::<counter::CounterRelease>(), Interleave::Always);
    assert_eq!(interleave::<counter::CounterHold>(), Interleave::Never);
    assert_eq!(<CounterAdd as Message>::NAME, "add");
    assert_eq!(<counter::CounterAddProduct as Message>::NAME, "add_product");
    assert_eq!(Counter::default().double(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serialized_calls_dispatch_by_name() {
    let silo = silo().await;
    let call = |method: &str, payload: Vec<u8>| {
        EncodedCall::new(
            GrainId::new("counter", "k"),
            method,
            payload,
            Duration::from_secs(5),
        )
    };

    let reply = silo
        .invoke_encoded(call("add", codec::encode(&CounterAdd { n: 2 }).unwrap()))
        .await
        .unwrap();
    assert_eq!(codec::decode::<u64>(&reply).unwrap(), 2);

    // A shared (read-only) method and a method without fields.
    let reply = silo
        .invoke_encoded(call("get", codec::encode(&CounterGet {}).unwrap()))
        .await
        .unwrap();
    assert_eq!(codec::decode::<u64>(&reply).unwrap(), 2);

    // A message whose field mentions `Self`.
    let swap = CounterSwap {
        other: Some(counter::Wrapper(9, std::marker::PhantomData)),
    };
    let reply = silo
        .invoke_encoded(call("swap", codec::encode(&swap).unwrap()))
        .await
        .unwrap();
    assert_eq!(codec::decode::<Result<u64, String>>(&reply).unwrap(), Ok(2));

    // The typed reference and the serialized calls reach the same grain.
    let c = silo.get_grain::<Counter>("k");
    assert_eq!(c.get().await.unwrap(), 9);

    // Names nobody registered are refused, not guessed.
    let err = silo
        .invoke_encoded(call("gone", codec::encode(&()).unwrap()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownMethod { .. }), "{err}");
    silo.shutdown().await;
}

#[test]
fn messages_are_plain_serde_types() {
    let bytes = codec::encode(&CounterAdd { n: 42 }).unwrap();
    let back: CounterAdd = codec::decode(&bytes).unwrap();
    assert_eq!(back.n, 42);
}
