//! Oracles: recorders that grains and workloads feed while a test runs,
//! and checkers that say afterwards whether the history broke a
//! guarantee. Events are ordered by when they were recorded (one lock), so
//! no clock is needed and they work unchanged under simulation.
//!
//! - [`ActivationOracle`]: no grain is live on two silos at once (except,
//!   when not strict, while the older silo is already declared dead).
//! - [`CallHistory`]: every acknowledged call was observed by its grain
//!   exactly once; no call ran twice, ran on the wrong grain, or ran
//!   although the caller was told it failed.
//! - [`WriteHistory`]: no acknowledged write to persisted state is missing
//!   from a later read, and reads hold nothing that was never written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

/// One event the single-activation oracle saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivationEvent {
    /// `grain` was activated on `silo` (`on_activate` ran).
    Activated {
        /// The grain (its `GrainId` as text).
        grain: String,
        /// The silo's name.
        silo: String,
    },
    /// `grain` was deactivated on `silo` (`on_deactivate` ran).
    Deactivated {
        /// The grain.
        grain: String,
        /// The silo's name.
        silo: String,
    },
    /// The cluster declared `silo` dead (in the membership table).
    DeclaredDead {
        /// The silo's name.
        silo: String,
    },
    /// `silo` crashed: its activations are gone without `on_deactivate`.
    Crashed {
        /// The silo's name.
        silo: String,
    },
    /// A silo named `silo` (re)started.
    Started {
        /// The silo's name.
        silo: String,
    },
}

impl fmt::Display for ActivationEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivationEvent::Activated { grain, silo } => write!(f, "{grain} activated on {silo}"),
            ActivationEvent::Deactivated { grain, silo } => {
                write!(f, "{grain} deactivated on {silo}")
            }
            ActivationEvent::DeclaredDead { silo } => write!(f, "{silo} declared dead"),
            ActivationEvent::Crashed { silo } => write!(f, "{silo} crashed"),
            ActivationEvent::Started { silo } => write!(f, "{silo} started"),
        }
    }
}

/// A grain live on two silos at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateActivation {
    /// The grain.
    pub grain: String,
    /// The silos it was live on (the new one last).
    pub silos: Vec<String>,
    /// The position of the offending activation in the event log.
    pub at: usize,
}

impl fmt::Display for DuplicateActivation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} live on {} silos at once: {:?} (event #{})",
            self.grain,
            self.silos.len(),
            self.silos,
            self.at
        )
    }
}

impl std::error::Error for DuplicateActivation {}

/// The single-activation oracle. Grains call
/// [`activated`](ActivationOracle::activated) in `on_activate` and
/// [`deactivated`](ActivationOracle::deactivated) in `on_deactivate`; the
/// test cluster reports crashes, restarts and declared deaths. Cloning
/// shares the record.
#[derive(Clone, Default)]
pub struct ActivationOracle {
    events: Arc<Mutex<Vec<ActivationEvent>>>,
    /// How many times each silo has started (its incarnation); locked
    /// before `events` where both are.
    starts: Arc<Mutex<HashMap<String, usize>>>,
    strict: bool,
}

impl fmt::Debug for ActivationOracle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActivationOracle")
            .field("events", &self.events.lock().len())
            .field("strict", &self.strict)
            .finish()
    }
}

impl ActivationOracle {
    /// An oracle that tolerates an overlap while the older silo is already
    /// declared dead (Orleans' guarantee).
    pub fn new() -> Self {
        Self::default()
    }

    /// An oracle that tolerates no overlap at all: what this runtime's
    /// fenced single activation promises.
    pub fn strict() -> Self {
        ActivationOracle {
            strict: true,
            ..Self::default()
        }
    }

    fn push(&self, e: ActivationEvent) {
        self.events.lock().push(e);
    }

    /// `grain` was activated on `silo`.
    pub fn activated(&self, grain: impl fmt::Display, silo: &str) {
        self.push(ActivationEvent::Activated {
            grain: grain.to_string(),
            silo: silo.to_owned(),
        });
    }

    /// `grain` was deactivated on `silo`.
    pub fn deactivated(&self, grain: impl fmt::Display, silo: &str) {
        self.push(ActivationEvent::Deactivated {
            grain: grain.to_string(),
            silo: silo.to_owned(),
        });
    }

    /// `silo` was declared dead.
    pub fn declared_dead(&self, silo: &str) {
        self.push(ActivationEvent::DeclaredDead {
            silo: silo.to_owned(),
        });
    }

    /// `silo` crashed (its grains vanished without deactivating).
    pub fn crashed(&self, silo: &str) {
        self.push(ActivationEvent::Crashed {
            silo: silo.to_owned(),
        });
    }

    /// A silo named `silo` started (again).
    pub fn started(&self, silo: &str) {
        let mut starts = self.starts.lock();
        *starts.entry(silo.to_owned()).or_insert(0) += 1;
        self.push(ActivationEvent::Started {
            silo: silo.to_owned(),
        });
    }

    /// How many times `silo` has started so far: the incarnation an
    /// activation made now belongs to, for [`dropped`](Self::dropped).
    pub fn incarnation(&self, silo: &str) -> usize {
        self.starts.lock().get(silo).copied().unwrap_or(0)
    }

    /// `grain`'s activation on `silo`, made in `incarnation`, was dropped
    /// without deactivating (its handler panicked, or its turn was cut off
    /// at the silo's lease end): it is no longer live, as after
    /// [`deactivated`](Self::deactivated). Ignored if that incarnation
    /// has ended (the silo crashed or restarted since), which already
    /// ended its activations.
    pub fn dropped(&self, grain: impl fmt::Display, silo: &str, incarnation: usize) {
        let starts = self.starts.lock();
        if starts.get(silo).copied().unwrap_or(0) == incarnation {
            self.push(ActivationEvent::Deactivated {
                grain: grain.to_string(),
                silo: silo.to_owned(),
            });
        }
    }

    /// Everything recorded so far, in order.
    pub fn events(&self) -> Vec<ActivationEvent> {
        self.events.lock().clone()
    }

    /// How many activations each silo made.
    pub fn activations_per_silo(&self) -> BTreeMap<String, usize> {
        let mut per = BTreeMap::new();
        for e in self.events.lock().iter() {
            if let ActivationEvent::Activated { silo, .. } = e {
                *per.entry(silo.clone()).or_insert(0) += 1;
            }
        }
        per
    }

    /// Every duplicate activation in the record (empty: the guarantee held).
    pub fn violations(&self) -> Vec<DuplicateActivation> {
        let events = self.events.lock().clone();
        let mut live: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut dead: HashSet<&str> = HashSet::new();
        let mut found = Vec::new();
        for (at, e) in events.iter().enumerate() {
            match e {
                ActivationEvent::Activated { grain, silo } => {
                    let here = live.entry(grain).or_default();
                    here.push(silo);
                    let overlapping = here
                        .iter()
                        .filter(|s| self.strict || !dead.contains(**s) || **s == silo)
                        .count();
                    if overlapping > 1 {
                        found.push(DuplicateActivation {
                            grain: grain.clone(),
                            silos: here.iter().map(|s| (*s).to_owned()).collect(),
                            at,
                        });
                    }
                }
                ActivationEvent::Deactivated { grain, silo } => {
                    if let Some(here) = live.get_mut(grain.as_str())
                        && let Some(i) = here.iter().position(|s| s == silo)
                    {
                        here.remove(i);
                    }
                }
                ActivationEvent::DeclaredDead { silo } => {
                    dead.insert(silo);
                }
                ActivationEvent::Crashed { silo } => {
                    for here in live.values_mut() {
                        here.retain(|s| s != silo);
                    }
                }
                ActivationEvent::Started { silo } => {
                    dead.remove(silo.as_str());
                }
            }
        }
        found
    }

    /// `Ok` if no grain was ever live twice, else the first duplicate.
    pub fn check(&self) -> Result<(), DuplicateActivation> {
        match self.violations().into_iter().next() {
            None => Ok(()),
            Some(v) => Err(v),
        }
    }
}

/// How a call ended, as its caller saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// Acknowledged: the grain ran it.
    Ok,
    /// Definitely not run (refused before it was sent, or the grain said
    /// it did nothing).
    Failed,
    /// May or may not have run (timeout, link lost after sending).
    Unknown,
}

/// Something wrong in a call history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryViolation {
    /// An acknowledged call was never observed by its grain (lost).
    Lost {
        /// The call.
        op: u64,
        /// Its grain.
        grain: String,
    },
    /// A call was observed more than once (ran twice).
    Duplicated {
        /// The call.
        op: u64,
        /// How often it was observed.
        times: usize,
    },
    /// A call reported failed was observed anyway.
    FailedButRan {
        /// The call.
        op: u64,
    },
    /// A call was observed by a grain it was not sent to.
    WrongGrain {
        /// The call.
        op: u64,
        /// The grain it was sent to.
        sent_to: String,
        /// The grain that observed it.
        seen_by: String,
    },
    /// A grain observed a call nobody made.
    Phantom {
        /// The call id it observed.
        op: u64,
    },
}

impl fmt::Display for HistoryViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryViolation::Lost { op, grain } => {
                write!(f, "call #{op} to {grain} was acknowledged but never ran")
            }
            HistoryViolation::Duplicated { op, times } => write!(f, "call #{op} ran {times} times"),
            HistoryViolation::FailedButRan { op } => {
                write!(f, "call #{op} was reported failed but ran")
            }
            HistoryViolation::WrongGrain {
                op,
                sent_to,
                seen_by,
            } => write!(f, "call #{op} to {sent_to} ran on {seen_by}"),
            HistoryViolation::Phantom { op } => write!(f, "call #{op} ran but was never made"),
        }
    }
}

#[derive(Default)]
struct CallState {
    next: u64,
    invoked: BTreeMap<u64, (String, Option<CallOutcome>)>,
    observed: BTreeMap<u64, Vec<String>>,
}

/// The per-grain call history checker. A caller takes an op id with
/// [`invoke`](CallHistory::invoke), sends it in the call, and reports
/// the outcome with [`complete`](CallHistory::complete); the grain reports
/// each op it runs with [`observe`](CallHistory::observe). Cloning shares
/// the history.
#[derive(Clone, Default)]
pub struct CallHistory {
    state: Arc<Mutex<CallState>>,
}

impl fmt::Debug for CallHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.lock();
        f.debug_struct("CallHistory")
            .field("invoked", &s.invoked.len())
            .field("observed", &s.observed.len())
            .finish()
    }
}

impl CallHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a call to `grain` about to be made; its op id.
    pub fn invoke(&self, grain: impl fmt::Display) -> u64 {
        let mut s = self.state.lock();
        s.next += 1;
        let op = s.next;
        s.invoked.insert(op, (grain.to_string(), None));
        op
    }

    /// Records how call `op` ended for its caller.
    pub fn complete(&self, op: u64, outcome: CallOutcome) {
        if let Some(entry) = self.state.lock().invoked.get_mut(&op) {
            entry.1 = Some(outcome);
        }
    }

    /// Records a result as its outcome: `Ok` acknowledged, any error
    /// unknown (the call may have run before the error).
    pub fn complete_with<T, E>(&self, op: u64, result: &Result<T, E>) {
        let outcome = if result.is_ok() {
            CallOutcome::Ok
        } else {
            CallOutcome::Unknown
        };
        self.complete(op, outcome);
    }

    /// Grain `grain` ran call `op`.
    pub fn observe(&self, grain: impl fmt::Display, op: u64) {
        self.state
            .lock()
            .observed
            .entry(op)
            .or_default()
            .push(grain.to_string());
    }

    /// (acknowledged, failed, unknown or unfinished) call counts.
    pub fn counts(&self) -> (usize, usize, usize) {
        let s = self.state.lock();
        let mut c = (0, 0, 0);
        for (_, outcome) in s.invoked.values() {
            match outcome {
                Some(CallOutcome::Ok) => c.0 += 1,
                Some(CallOutcome::Failed) => c.1 += 1,
                _ => c.2 += 1,
            }
        }
        c
    }

    /// Every violation in the history (empty: it is correct).
    pub fn violations(&self) -> Vec<HistoryViolation> {
        let s = self.state.lock();
        let mut found = Vec::new();
        for (op, seen) in &s.observed {
            let Some((grain, outcome)) = s.invoked.get(op) else {
                found.push(HistoryViolation::Phantom { op: *op });
                continue;
            };
            if seen.len() > 1 {
                found.push(HistoryViolation::Duplicated {
                    op: *op,
                    times: seen.len(),
                });
            }
            if let Some(other) = seen.iter().find(|g| *g != grain) {
                found.push(HistoryViolation::WrongGrain {
                    op: *op,
                    sent_to: grain.clone(),
                    seen_by: other.clone(),
                });
            }
            if *outcome == Some(CallOutcome::Failed) {
                found.push(HistoryViolation::FailedButRan { op: *op });
            }
        }
        for (op, (grain, outcome)) in &s.invoked {
            if *outcome == Some(CallOutcome::Ok) && !s.observed.contains_key(op) {
                found.push(HistoryViolation::Lost {
                    op: *op,
                    grain: grain.clone(),
                });
            }
        }
        found
    }

    /// `Ok` if the history is correct, else its violations.
    pub fn check(&self) -> Result<(), Vec<HistoryViolation>> {
        let v = self.violations();
        if v.is_empty() { Ok(()) } else { Err(v) }
    }
}

/// Something wrong with persisted state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteViolation {
    /// A write acknowledged before a read began is missing from it.
    Lost {
        /// The record.
        key: String,
        /// The missing value.
        value: u64,
    },
    /// A read holds a value never written (or written only after the
    /// read began and never acknowledged or attempted before it).
    Phantom {
        /// The record.
        key: String,
        /// The value.
        value: u64,
    },
    /// A read holds one value twice (a write applied twice).
    Duplicated {
        /// The record.
        key: String,
        /// The value.
        value: u64,
    },
}

impl fmt::Display for WriteViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteViolation::Lost { key, value } => {
                write!(f, "{key}: acknowledged write {value} was lost")
            }
            WriteViolation::Phantom { key, value } => {
                write!(f, "{key}: read {value}, which was never written")
            }
            WriteViolation::Duplicated { key, value } => {
                write!(f, "{key}: write {value} applied twice")
            }
        }
    }
}

#[derive(Default)]
struct KeyWrites {
    /// value -> acknowledged?
    attempted: BTreeMap<u64, bool>,
}

/// A pending read: which writes were acknowledged when it began.
#[derive(Debug, Clone)]
pub struct ReadStart {
    key: String,
    acked: Vec<u64>,
}

/// The lost-write checker for persisted state kept as a set of appended
/// values (each write adds one unique value). Writers report each attempt
/// and acknowledgement; readers bracket each read with
/// [`read_started`](WriteHistory::read_started) and
/// [`read_finished`](WriteHistory::read_finished). Cloning shares it.
#[derive(Clone, Default)]
pub struct WriteHistory {
    keys: Arc<Mutex<BTreeMap<String, KeyWrites>>>,
    found: Arc<Mutex<Vec<WriteViolation>>>,
}

impl fmt::Debug for WriteHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteHistory")
            .field("keys", &self.keys.lock().len())
            .field("violations", &self.found.lock().len())
            .finish()
    }
}

impl WriteHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// A write of `value` to `key` is about to be sent.
    pub fn write_started(&self, key: impl fmt::Display, value: u64) {
        self.keys
            .lock()
            .entry(key.to_string())
            .or_default()
            .attempted
            .insert(value, false);
    }

    /// The write of `value` to `key` was acknowledged.
    pub fn write_acked(&self, key: impl fmt::Display, value: u64) {
        self.keys
            .lock()
            .entry(key.to_string())
            .or_default()
            .attempted
            .insert(value, true);
    }

    /// A read of `key` is about to be sent.
    pub fn read_started(&self, key: impl fmt::Display) -> ReadStart {
        let key = key.to_string();
        let acked = self
            .keys
            .lock()
            .get(&key)
            .map(|k| {
                k.attempted
                    .iter()
                    .filter(|(_, a)| **a)
                    .map(|(v, _)| *v)
                    .collect()
            })
            .unwrap_or_default();
        ReadStart { key, acked }
    }

    /// The read begun at `start` returned `values`; records what is wrong
    /// with it.
    pub fn read_finished(&self, start: ReadStart, values: &[u64]) {
        let attempted: HashSet<u64> = self
            .keys
            .lock()
            .get(&start.key)
            .map(|k| k.attempted.keys().copied().collect())
            .unwrap_or_default();
        let mut seen = HashSet::new();
        let mut found = self.found.lock();
        for v in values {
            if !seen.insert(*v) {
                found.push(WriteViolation::Duplicated {
                    key: start.key.clone(),
                    value: *v,
                });
            }
            if !attempted.contains(v) {
                found.push(WriteViolation::Phantom {
                    key: start.key.clone(),
                    value: *v,
                });
            }
        }
        for v in &start.acked {
            if !seen.contains(v) {
                found.push(WriteViolation::Lost {
                    key: start.key.clone(),
                    value: *v,
                });
            }
        }
    }

    /// Every violation found by the reads so far.
    pub fn violations(&self) -> Vec<WriteViolation> {
        self.found.lock().clone()
    }

    /// `Ok` if no read found a lost, phantom or duplicated write.
    pub fn check(&self) -> Result<(), Vec<WriteViolation>> {
        let v = self.violations();
        if v.is_empty() { Ok(()) } else { Err(v) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Grains that move between silos one at a time (deactivated, or
        /// their silo crashed, before the next activation) never trip the
        /// strict oracle; one extra activation on another live silo always
        /// does.
        #[test]
        fn the_oracle_flags_exactly_the_overlaps(
            moves in proptest::collection::vec((0u8..4, 0u8..3, any::<bool>()), 1..60),
            dup_grain in 0u8..4, dup_silo in 0u8..3,
        ) {
            let o = ActivationOracle::strict();
            let mut live: HashMap<u8, u8> = HashMap::new();
            for (grain, silo, crash) in moves {
                if let Some(old) = live.remove(&grain) {
                    if crash {
                        o.crashed(&format!("s{old}"));
                        live.retain(|_, s| *s != old);
                        o.started(&format!("s{old}"));
                    } else {
                        o.deactivated(format!("g{grain}"), &format!("s{old}"));
                    }
                }
                o.activated(format!("g{grain}"), &format!("s{silo}"));
                live.insert(grain, silo);
            }
            prop_assert_eq!(o.check(), Ok(()));
            let other = live.get(&dup_grain).copied();
            o.activated(format!("g{dup_grain}"), &format!("s{dup_silo}"));
            // A second activation while one is live anywhere (even on the
            // same silo) is a violation; otherwise it is a plain activation.
            prop_assert_eq!(o.check().is_err(), other.is_some());
        }

        /// Calls observed exactly once pass whatever their outcome; one
        /// more observation of any call is always caught.
        #[test]
        fn the_history_flags_every_second_run(
            outcomes in proptest::collection::vec(0u8..3, 1..40), twice in any::<prop::sample::Index>(),
        ) {
            let h = CallHistory::new();
            let mut ops = Vec::new();
            for (i, outcome) in outcomes.iter().enumerate() {
                let op = h.invoke(format!("g{}", i % 3));
                let outcome = match outcome {
                    0 => CallOutcome::Ok,
                    1 => CallOutcome::Unknown,
                    _ => CallOutcome::Failed,
                };
                if outcome != CallOutcome::Failed {
                    h.observe(format!("g{}", i % 3), op);
                    ops.push((op, i % 3));
                }
                h.complete(op, outcome);
            }
            prop_assert_eq!(h.check(), Ok(()));
            if !ops.is_empty() {
                let (op, g) = ops[twice.index(ops.len())];
                h.observe(format!("g{g}"), op);
                prop_assert!(h.check().is_err());
            }
        }
    }

    #[test]
    fn the_activation_oracle_catches_an_overlap() {
        let o = ActivationOracle::new();
        o.activated("g/1", "a");
        o.activated("g/1", "b");
        let v = o.check().unwrap_err();
        assert_eq!(v.silos, ["a", "b"]);
        assert_eq!(v.at, 1);
    }

    #[test]
    fn the_activation_oracle_accepts_moves_and_crashes() {
        let o = ActivationOracle::strict();
        o.activated("g/1", "a");
        o.deactivated("g/1", "a");
        o.activated("g/1", "b");
        o.crashed("b");
        o.activated("g/1", "c");
        assert_eq!(o.check(), Ok(()));
        assert_eq!(o.activations_per_silo()["c"], 1);
    }

    #[test]
    fn a_dropped_activation_ends_unless_its_incarnation_did() {
        let o = ActivationOracle::strict();
        o.started("a");
        let first = o.incarnation("a");
        o.activated("g/1", "a");
        o.dropped("g/1", "a", first);
        o.activated("g/1", "b");
        assert_eq!(o.check(), Ok(()), "a dropped activation is not live");
        // A drop reported late, after "a" restarted and activated the
        // grain again, does not end the new activation.
        o.deactivated("g/1", "b");
        o.activated("g/1", "a");
        o.crashed("a");
        o.started("a");
        o.activated("g/1", "a");
        o.dropped("g/1", "a", first);
        o.activated("g/1", "c");
        assert!(o.check().is_err(), "the stale drop hid a live activation");
    }

    #[test]
    fn a_dead_silo_may_overlap_unless_strict() {
        for strict in [false, true] {
            let o = if strict {
                ActivationOracle::strict()
            } else {
                ActivationOracle::new()
            };
            o.activated("g/1", "a");
            o.declared_dead("a");
            o.activated("g/1", "b");
            assert_eq!(o.check().is_err(), strict);
            // A restarted "a" is alive again: a new overlap counts.
            o.started("a");
            o.activated("g/2", "a");
            o.activated("g/2", "b");
            assert!(o.check().is_err());
        }
    }

    #[test]
    fn the_call_history_catches_lost_duplicated_and_phantom_calls() {
        let h = CallHistory::new();
        let ok = h.invoke("g/1");
        h.observe("g/1", ok);
        h.complete(ok, CallOutcome::Ok);
        let unknown = h.invoke("g/1");
        h.complete(unknown, CallOutcome::Unknown);
        assert_eq!(h.check(), Ok(()), "an unknown call may not have run");

        let lost = h.invoke("g/2");
        h.complete(lost, CallOutcome::Ok);
        let twice = h.invoke("g/2");
        h.observe("g/2", twice);
        h.observe("g/2", twice);
        h.complete(twice, CallOutcome::Unknown);
        let failed = h.invoke("g/3");
        h.observe("g/3", failed);
        h.complete(failed, CallOutcome::Failed);
        let wrong = h.invoke("g/3");
        h.observe("g/4", wrong);
        h.observe("g/5", 999);
        let v = h.check().unwrap_err();
        assert!(v.contains(&HistoryViolation::Lost {
            op: lost,
            grain: "g/2".into()
        }));
        assert!(v.contains(&HistoryViolation::Duplicated {
            op: twice,
            times: 2
        }));
        assert!(v.contains(&HistoryViolation::FailedButRan { op: failed }));
        assert!(v.contains(&HistoryViolation::WrongGrain {
            op: wrong,
            sent_to: "g/3".into(),
            seen_by: "g/4".into()
        }));
        assert!(v.contains(&HistoryViolation::Phantom { op: 999 }));
        assert_eq!(v.len(), 5, "{v:?}");
        assert_eq!(h.counts(), (2, 1, 3));
    }

    #[test]
    fn the_write_history_catches_lost_phantom_and_duplicated_writes() {
        let w = WriteHistory::new();
        w.write_started("k", 1);
        w.write_acked("k", 1);
        w.write_started("k", 2); // unknown outcome
        let r = w.read_started("k");
        w.read_finished(r, &[1]);
        let r = w.read_started("k");
        w.read_finished(r, &[1, 2]);
        assert_eq!(w.check(), Ok(()));

        w.write_started("k", 3);
        w.write_acked("k", 3);
        let r = w.read_started("k");
        w.read_finished(r, &[1, 2, 2, 7]);
        let v = w.check().unwrap_err();
        assert_eq!(
            v,
            [
                WriteViolation::Duplicated {
                    key: "k".into(),
                    value: 2
                },
                WriteViolation::Phantom {
                    key: "k".into(),
                    value: 7
                },
                WriteViolation::Lost {
                    key: "k".into(),
                    value: 3
                },
            ]
        );
    }
}
