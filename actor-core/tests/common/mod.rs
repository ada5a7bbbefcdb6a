// Shared grains for the integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actor_core::prelude::*;
use serde::{Deserialize, Serialize};

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
