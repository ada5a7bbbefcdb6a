//! Smoke test: ask, tell, many grains, metrics, shutdown.

use actor_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Default)]
struct Counter {
    value: u64,
}
impl Grain for Counter {
    const TYPE_NAME: &'static str = "counter";
}
impl GrainMethods for Counter {
    fn register(m: &mut Methods<Self>) {
        m.add::<Add, _>();
    }
}
#[derive(Serialize, Deserialize)]
struct Add(u64);
impl Message for Add {
    type Reply = u64;
    const NAME: &'static str = "add";
}
impl Handler<Add> for Counter {
    async fn handle(&mut self, Add(n): Add, _: &GrainContext<Self>) -> u64 {
        self.value += n;
        self.value
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_tell_and_many_grains() {
    let silo = Silo::builder().grain::<Counter>().start().await.unwrap();
    let c = silo.get_grain::<Counter>(1);
    assert_eq!(c.ask(Add(2)).await.unwrap(), 2);
    c.tell(Add(3)).unwrap();
    assert_eq!(c.ask(Add(0)).await.unwrap(), 5);
    let mut tasks = Vec::new();
    for k in 0..100i64 {
        let g = silo.get_grain::<Counter>(k + 10);
        tasks.push(tokio::spawn(async move {
            for _ in 0..100 {
                g.ask(Add(1)).await.unwrap();
            }
            g.ask(Add(0)).await.unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 100);
    }
    assert_eq!(silo.activation_count(), 101);
    let m = silo.metrics();
    assert_eq!(m.grain_type("counter").unwrap().activations, 101);
    silo.shutdown().await;
    assert_eq!(silo.activation_count(), 0);
    assert!(matches!(
        c.ask(Add(1)).await,
        Err(actor_core::Error::SiloStopped)
    ));
}
