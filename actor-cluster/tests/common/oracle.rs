//! The single-activation oracle: records every activation and
//! deactivation with silo and time, and a grain it watches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actor_core::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    Up,
    Down,
}

/// One activation or deactivation: grain, silo, what, when.
pub type Record = (GrainId, String, Event, Instant);

/// The oracle's record, shared by every silo of a test.
#[derive(Default, Clone)]
pub struct Oracle(pub Arc<Mutex<Vec<Record>>>);

impl Oracle {
    pub fn record(&self, id: &GrainId, silo: &str, e: Event) {
        self.0
            .lock()
            .unwrap()
            .push((id.clone(), silo.to_owned(), e, Instant::now()));
    }

    /// Panics if a grain was ever live on two silos at once; returns the
    /// activations per silo.
    pub fn check(&self) -> HashMap<String, usize> {
        let mut events = self.0.lock().unwrap().clone();
        events.sort_by_key(|e| e.3);
        let mut live: HashMap<GrainId, Vec<String>> = HashMap::new();
        let mut per_silo = HashMap::new();
        for (id, silo, e, at) in events {
            let here = live.entry(id.clone()).or_default();
            match e {
                Event::Up => {
                    here.push(silo.clone());
                    *per_silo.entry(silo).or_insert(0) += 1;
                    assert!(here.len() <= 1, "{id} live on {here:?} at {at:?}");
                }
                Event::Down => {
                    let at = here.iter().position(|s| *s == silo).expect("down after up");
                    here.remove(at);
                }
            }
        }
        per_silo
    }

    /// Records that every grain live on `silo` ended at `at` (the silo was
    /// killed: its activations ended without `on_deactivate`).
    pub fn killed(&self, silo: &str, at: Instant) {
        let live = self.live();
        let mut records = self.0.lock().unwrap();
        for (id, silos) in live {
            if silos.iter().any(|s| s == silo) {
                records.push((id, silo.to_owned(), Event::Down, at));
            }
        }
    }

    /// How many times each grain was activated.
    pub fn activations(&self) -> HashMap<GrainId, usize> {
        let mut n = HashMap::new();
        for (id, _, e, _) in self.0.lock().unwrap().iter() {
            if *e == Event::Up {
                *n.entry(id.clone()).or_insert(0) += 1;
            }
        }
        n
    }

    /// The silos each grain is live on now.
    pub fn live(&self) -> HashMap<GrainId, Vec<String>> {
        let mut events = self.0.lock().unwrap().clone();
        events.sort_by_key(|e| e.3);
        let mut live: HashMap<GrainId, Vec<String>> = HashMap::new();
        for (id, silo, e, _) in events {
            let here = live.entry(id).or_default();
            match e {
                Event::Up => here.push(silo),
                Event::Down => here.retain(|s| *s != silo),
            }
        }
        live.retain(|_, v| !v.is_empty());
        live
    }
}

/// A grain the oracle watches.
pub struct Tracked {
    pub oracle: Oracle,
    pub n: u64,
}

impl Grain for Tracked {
    const TYPE_NAME: &'static str = "tracked";
    async fn on_activate(&mut self, ctx: &GrainContext<Self>) -> Result<(), actor_core::BoxError> {
        self.oracle.record(ctx.id(), ctx.silo().name(), Event::Up);
        Ok(())
    }
    async fn on_deactivate(&mut self, ctx: &GrainContext<Self>, _: actor_core::DeactivationReason) {
        self.oracle.record(ctx.id(), ctx.silo().name(), Event::Down);
    }
}

#[grain_methods]
impl Tracked {
    /// Counts a call; answers the count.
    pub async fn touch(&mut self) -> u64 {
        self.n += 1;
        self.n
    }

    /// Counts a call; answers the count and the silo that runs the grain.
    pub async fn visit(&mut self, ctx: &GrainContext<Self>) -> (u64, String) {
        self.n += 1;
        (self.n, ctx.silo().name().to_owned())
    }

    /// Sleeps `ms`, then answers the silo.
    pub async fn nap(&mut self, ms: u64, ctx: &GrainContext<Self>) -> String {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ctx.silo().name().to_owned()
    }
}
