// Shared grains for the integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actor_core::prelude::*;
use actor_core::{EncodedCall, Router, SiloBuilder};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// Two silos in one process joined by an in-memory router (a stand-in for
/// the cluster's transport): grains with even integer keys live on silo
/// 0, odd ones on silo 1. `build(i)` makes silo `i`'s builder.
pub async fn two_silos(build: impl Fn(usize) -> SiloBuilder) -> [Silo; 2] {
    let cell = Arc::new(std::sync::OnceLock::new());
    let mut silos = Vec::new();
    for me in 0..2 {
        let silo = build(me)
            .router(Arc::new(Pair {
                me,
                silos: cell.clone(),
            }))
            .start()
            .await
            .unwrap();
        silos.push(silo);
    }
    let silos: [Silo; 2] = silos.try_into().unwrap();
    cell.set(silos.clone()).ok().unwrap();
    silos
}

/// The silo a grain lives on in [`two_silos`].
pub fn home(id: &GrainId) -> usize {
    id.key.as_int().unwrap_or(0).rem_euclid(2) as usize
}

struct Pair {
    me: usize,
    silos: Arc<std::sync::OnceLock<[Silo; 2]>>,
}

impl Router for Pair {
    fn is_local(&self, id: &GrainId) -> bool {
        home(id) == self.me
    }
    fn invoke(&self, call: EncodedCall) -> BoxFuture<'static, actor_core::Result<Vec<u8>>> {
        let target = self.silos.get().expect("both silos started")[home(&call.target)].clone();
        Box::pin(async move { target.invoke_encoded(call).await })
    }
}

/// Records the maximum number of turns seen running at once.
#[derive(Default)]
pub struct Probe {
    pub running: AtomicUsize,
    pub max_running: AtomicUsize,
}

impl Probe {
    pub fn enter(&self) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
    }
    pub fn exit(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
    pub fn max(&self) -> usize {
        self.max_running.load(Ordering::SeqCst)
    }
}

#[derive(Serialize, Deserialize)]
pub struct Work {
    pub micros: u64,
}
impl Message for Work {
    type Reply = ();
    const NAME: &'static str = "work";
}

pub async fn work(probe: &Probe, micros: u64) {
    probe.enter();
    tokio::time::sleep(Duration::from_micros(micros)).await;
    tokio::task::yield_now().await;
    probe.exit();
}

pub fn probe() -> Arc<Probe> {
    Arc::new(Probe::default())
}
