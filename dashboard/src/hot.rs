//! Per-grain call counts for the "hottest grains" view: an incoming call
//! filter counts calls per grain over one refresh window; the collector
//! takes the window, keeps the top grains, and starts a new one. Bounded:
//! at most `MAX_TRACKED` distinct grains are counted per window.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actor_core::{CallInfo, GrainId, IncomingCallFilter};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

const MAX_TRACKED: usize = 10_000;
/// How many grains each silo reports as hottest.
pub(crate) const TOP: usize = 20;

/// One of the busiest grains of a silo in the last window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HotGrain {
    /// The grain, `type/key`.
    pub grain: String,
    /// Its type.
    pub grain_type: String,
    /// The silo it runs on.
    pub silo: String,
    /// Calls in the last window.
    pub calls: u64,
    /// Calls per second over the last window.
    pub calls_per_sec: f64,
}

#[derive(Default)]
pub(crate) struct HotGrains {
    window: Mutex<HashMap<GrainId, u64>>,
    /// The top of the last closed window (what peers are told).
    top: Mutex<Vec<HotGrain>>,
}

impl HotGrains {
    /// Closes the window: its top grains, busiest first.
    pub(crate) fn roll(&self, silo: &str, elapsed: Duration) -> Vec<HotGrain> {
        let window = std::mem::take(&mut *self.window.lock());
        let secs = elapsed.as_secs_f64().max(1e-3);
        let mut all: Vec<(GrainId, u64)> = window.into_iter().collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(TOP);
        let top: Vec<HotGrain> = all
            .into_iter()
            .map(|(id, calls)| HotGrain {
                grain: id.to_string(),
                grain_type: id.grain_type.to_string(),
                silo: silo.to_owned(),
                calls,
                calls_per_sec: calls as f64 / secs,
            })
            .collect();
        *self.top.lock() = top.clone();
        top
    }

    pub(crate) fn top(&self) -> Vec<HotGrain> {
        self.top.lock().clone()
    }
}

/// The filter half: counts every call entering a grain.
pub(crate) struct HotFilter(pub(crate) Arc<HotGrains>);

impl IncomingCallFilter for HotFilter {
    fn on_response(&self, call: &CallInfo<'_>, _elapsed: Duration, _ok: bool) {
        let mut w = self.0.window.lock();
        if let Some(n) = w.get_mut(call.grain) {
            *n += 1;
        } else if w.len() < MAX_TRACKED {
            w.insert(call.grain.clone(), 1);
        }
    }
}
