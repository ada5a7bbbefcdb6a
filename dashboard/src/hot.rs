//! Per-grain call counts for the "hottest grains" view: an incoming call
//! filter counts calls per grain over one refresh window; the collector
//! closes the window each refresh and ranks grains over the last
//! `WINDOWS` of them (so bursty traffic does not flicker in and out).
//! Bounded: at most `MAX_TRACKED` distinct grains are counted per window.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actor_core::{CallInfo, GrainId, IncomingCallFilter};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

const MAX_TRACKED: usize = 10_000;
/// How many closed windows the ranking covers.
const WINDOWS: usize = 5;
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
    /// Calls over the last few refresh intervals.
    pub calls: u64,
    /// Calls per second over the last few refresh intervals.
    pub calls_per_sec: f64,
}

#[derive(Default)]
pub(crate) struct HotGrains {
    window: Mutex<HashMap<GrainId, u64>>,
    /// The last closed windows with their lengths, newest last.
    closed: Mutex<VecDeque<(Duration, HashMap<GrainId, u64>)>>,
    /// The top of the last ranking (what peers are told).
    top: Mutex<Vec<HotGrain>>,
}

impl HotGrains {
    /// Closes the window and ranks grains over the last few: the top
    /// grains, busiest first.
    pub(crate) fn roll(&self, silo: &str, elapsed: Duration) -> Vec<HotGrain> {
        let window = std::mem::take(&mut *self.window.lock());
        let mut closed = self.closed.lock();
        closed.push_back((elapsed, window));
        while closed.len() > WINDOWS {
            closed.pop_front();
        }
        let secs = closed
            .iter()
            .map(|(d, _)| d.as_secs_f64())
            .sum::<f64>()
            .max(1e-3);
        let mut sums: HashMap<&GrainId, u64> = HashMap::new();
        for (_, w) in closed.iter() {
            for (id, n) in w {
                *sums.entry(id).or_default() += n;
            }
        }
        let mut all: Vec<(&GrainId, u64)> = sums.into_iter().collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
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
        drop(closed);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn count(hot: &HotGrains, key: &str, n: u64) {
        *hot.window.lock().entry(GrainId::new("t", key)).or_default() += n;
    }

    #[test]
    fn ranking_covers_the_last_windows_only() {
        let hot = HotGrains::default();
        let sec = Duration::from_secs(1);
        count(&hot, "a", 10);
        count(&hot, "b", 3);
        let top = hot.roll("s", sec);
        assert_eq!(top[0].grain, "t/a");
        assert_eq!(top[0].calls, 10);
        // b keeps getting calls; a's burst ages out after WINDOWS rolls.
        for _ in 0..WINDOWS {
            count(&hot, "b", 3);
            hot.roll("s", sec);
        }
        let top = hot.top();
        assert_eq!(top[0].grain, "t/b");
        assert_eq!(top[0].calls, 3 * WINDOWS as u64);
        assert!((top[0].calls_per_sec - 3.0).abs() < 1e-9);
        assert!(top.iter().all(|g| g.grain != "t/a"), "{top:?}");
    }

    #[test]
    fn the_ranking_is_bounded() {
        let hot = HotGrains::default();
        for i in 0..(TOP + 10) {
            count(&hot, &format!("k{i}"), i as u64 + 1);
        }
        let top = hot.roll("s", Duration::from_secs(1));
        assert_eq!(top.len(), TOP);
        assert!(top.windows(2).all(|w| w[0].calls >= w[1].calls));
    }
}
