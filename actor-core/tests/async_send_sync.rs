//! Public types and call futures are `Send + Sync` where users need them
//! to be (spawned tasks, axum handlers, shared state).

use actor_core::prelude::*;
use actor_core::{Error, GrainType, MetricsSnapshot, SiloBuilder};

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>(_: &T) {}

#[derive(Default)]
struct G;
impl Grain for G {
    const TYPE_NAME: &'static str = "g";
}
impl GrainMethods for G {
    fn register(m: &mut Methods<Self>) {
        m.add::<M, _>();
    }
}
#[derive(serde::Serialize, serde::Deserialize)]
struct M;
impl Message for M {
    type Reply = ();
    const NAME: &'static str = "m";
}
impl Handler<M> for G {
    async fn handle(&mut self, _: M, _: &GrainContext<Self>) {}
}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<Silo>();
    send_sync::<SiloBuilder>();
    send_sync::<GrainRef<G>>();
    send_sync::<GrainId>();
    send_sync::<GrainKey>();
    send_sync::<GrainType>();
    send_sync::<Error>();
    send_sync::<RequestContext>();
    send_sync::<MetricsSnapshot>();
    send_sync::<GrainContext<G>>();
}

#[tokio::test]
async fn call_futures_are_send() {
    let silo = Silo::builder().grain::<G>().start().await.unwrap();
    let r = silo.get_grain::<G>(1);
    let f = r.ask(M);
    send(&f);
    f.await.unwrap();
    let s = silo.shutdown();
    send(&s);
    s.await;
}
