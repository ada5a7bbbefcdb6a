//! Location transparency through the `Router` seam: two silos in one
//! process joined by an in-memory router (a stand-in for the cluster's
//! transport). The same typed references reach grains on either silo, and
//! deadlines, call chains (deadlock detection) and request context cross
//! the hop in the serialized envelope.

mod common;

use std::time::{Duration, Instant};

use actor_core::Error;
use actor_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Default)]
struct Node {
    hits: u64,
}
impl Grain for Node {
    const TYPE_NAME: &'static str = "node";
}

impl GrainMethods for Node {
    fn register(m: &mut Methods<Self>) {
        m.add::<Hop, _>().add::<Hit, _>().add::<Nap, _>();
    }
}

/// Visits `path` in order; each hop returns (silo name, context value).
#[derive(Serialize, Deserialize)]
struct Hop {
    path: Vec<i64>,
}
impl Message for Hop {
    type Reply = Result<Vec<(String, Option<String>)>, Error>;
    const NAME: &'static str = "hop";
}
impl Handler<Hop> for Node {
    async fn handle(&mut self, mut hop: Hop, ctx: &GrainContext<Self>) -> <Hop as Message>::Reply {
        let mut seen = vec![(ctx.silo().name().to_owned(), RequestContext::get("user"))];
        if !hop.path.is_empty() {
            let next = hop.path.remove(0);
            seen.extend(ctx.get_grain::<Node>(next).ask(hop).await??);
        }
        Ok(seen)
    }
}

#[derive(Serialize, Deserialize)]
struct Hit;
impl Message for Hit {
    type Reply = u64;
    const NAME: &'static str = "hit";
}
impl Handler<Hit> for Node {
    async fn handle(&mut self, _: Hit, _: &GrainContext<Self>) -> u64 {
        self.hits += 1;
        self.hits
    }
}

#[derive(Serialize, Deserialize)]
struct Nap(u64);
impl Message for Nap {
    type Reply = ();
    const NAME: &'static str = "nap";
}
impl Handler<Nap> for Node {
    async fn handle(&mut self, Nap(ms): Nap, _: &GrainContext<Self>) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

async fn pair() -> [Silo; 2] {
    common::two_silos(|me| Silo::builder().name(format!("silo{me}")).grain::<Node>()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_reference_reaches_the_one_activation_wherever_it_lives() {
    let silos = pair().await;
    let mut tasks = Vec::new();
    for silo in &silos {
        for key in 0..50i64 {
            let g = silo.get_grain::<Node>(key);
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    g.ask(Hit).await.unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    for key in 0..50i64 {
        let id = GrainId::new("node", key);
        let at = common::home(&id);
        assert!(silos[at].is_active(&id), "{id} lives on silo {at}");
        assert!(
            !silos[1 - at].is_active(&id),
            "{id} has a single activation"
        );
        // 20 hits from both silos, counted by the one activation.
        assert_eq!(
            silos[1 - at].get_grain::<Node>(key).ask(Hit).await.unwrap(),
            21
        );
    }
    assert_eq!(
        silos[0].activation_count() + silos[1].activation_count(),
        50
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_context_crosses_silos_and_nested_hops() {
    let silos = pair().await;
    let seen = RequestContext::new()
        .with("user", "ada")
        .scope(silos[0].get_grain::<Node>(2).ask(Hop {
            path: vec![3, 4, 5],
        }))
        .await
        .unwrap()
        .unwrap();
    let expected: Vec<_> = ["silo0", "silo1", "silo0", "silo1"]
        .iter()
        .map(|s| (s.to_string(), Some("ada".to_string())))
        .collect();
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_across_silos_fails_fast_naming_it() {
    let silos = pair().await;
    let started = Instant::now();
    let err = silos[1]
        .get_grain::<Node>(2)
        .ask(Hop { path: vec![3, 2] })
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let Error::Deadlock { cycle, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        cycle,
        &vec![
            GrainId::new("node", 2),
            GrainId::new("node", 3),
            GrainId::new("node", 2)
        ]
    );
    assert!(err.to_string().contains("node/2 -> node/3 -> node/2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_and_one_way_calls_cross_silos() {
    let silos = pair().await;
    let far = silos[0].get_grain::<Node>(1);
    let started = Instant::now();
    let err = far
        .with_timeout(Duration::from_millis(50))
        .ask(Nap(2_000))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(500));
    // One-way calls reach the far silo, in order with later asks.
    let far2 = silos[0].get_grain::<Node>(3);
    far2.tell(Hit).unwrap();
    far2.tell(Hit).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(far2.ask(Hit).await.unwrap(), 3);
}
