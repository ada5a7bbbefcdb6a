//! The driver: external clients appending unique operation ids to K
//! ledger grains, remembering which appends were acknowledged (the lost
//! write oracle's input), where each grain last answered from, and how
//! every call ended, per phase of the run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use actor_cluster::ClusterClient;
use actor_silo::{Ledger, LedgerRef};
use parking_lot::Mutex;
use serde::Serialize;

use crate::rng::Rng;

/// How the calls of one phase ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PhaseCalls {
    /// The phase (`warm-up`, `kill s1`, ...).
    pub phase: String,
    /// Acknowledged appends.
    pub succeeded: u64,
    /// Calls that failed with an error (silo unavailable, storage, ...).
    pub failed: u64,
    /// Calls with no answer within the driver's timeout.
    pub timed_out: u64,
    /// The first few distinct error messages.
    pub errors: Vec<String>,
}

/// How one call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged, by this silo.
    Ok(String),
    /// An error.
    Failed(String),
    /// No answer in time.
    TimedOut,
}

/// The shared state of the driver's workers.
pub struct Driver {
    clients: Vec<ClusterClient>,
    grains: usize,
    timeout: Duration,
    next_op: AtomicU64,
    warm_cursor: AtomicUsize,
    acked: Vec<Mutex<Vec<u64>>>,
    last_silo: Vec<Mutex<String>>,
    phases: Mutex<Vec<PhaseCalls>>,
    stop: AtomicBool,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("grains", &self.grains)
            .finish_non_exhaustive()
    }
}

/// The key of grain `i`.
pub fn grain_key(i: usize) -> String {
    format!("g{i}")
}

impl Driver {
    /// A driver over `clients` and `grains` ledgers, each call given
    /// `timeout`.
    pub fn new(clients: Vec<ClusterClient>, grains: usize, timeout: Duration) -> Arc<Driver> {
        Arc::new(Driver {
            clients,
            grains,
            timeout,
            next_op: AtomicU64::new(1),
            warm_cursor: AtomicUsize::new(0),
            acked: (0..grains).map(|_| Mutex::new(Vec::new())).collect(),
            last_silo: (0..grains).map(|_| Mutex::new(String::new())).collect(),
            phases: Mutex::new(vec![PhaseCalls {
                phase: "warm-up".into(),
                ..Default::default()
            }]),
            stop: AtomicBool::new(false),
        })
    }

    /// Starts a new phase: calls started from now on count in it.
    pub fn phase(&self, name: impl Into<String>) {
        self.phases.lock().push(PhaseCalls {
            phase: name.into(),
            ..Default::default()
        });
    }

    /// One append to grain `i` through client `c`: records the outcome in
    /// the current phase and, if acknowledged, the op.
    pub async fn call(&self, i: usize, c: usize) -> Outcome {
        let op = self.next_op.fetch_add(1, Ordering::Relaxed);
        let phase = self.phases.lock().len() - 1;
        let client = &self.clients[c % self.clients.len()];
        let ledger = client.get_grain::<Ledger>(grain_key(i));
        let outcome = match tokio::time::timeout(self.timeout, ledger.append(op)).await {
            Ok(Ok(Ok(appended))) => {
                self.acked[i].lock().push(op);
                *self.last_silo[i].lock() = appended.silo.clone();
                Outcome::Ok(appended.silo)
            }
            Ok(Ok(Err(e))) => Outcome::Failed(e),
            Ok(Err(e)) => Outcome::Failed(e.to_string()),
            Err(_) => Outcome::TimedOut,
        };
        let mut phases = self.phases.lock();
        let p = &mut phases[phase];
        match &outcome {
            Outcome::Ok(_) => p.succeeded += 1,
            Outcome::Failed(e) => {
                p.failed += 1;
                if p.errors.len() < 5 && !p.errors.contains(e) {
                    p.errors.push(e.clone());
                }
            }
            Outcome::TimedOut => p.timed_out += 1,
        }
        outcome
    }

    /// Runs `workers` workers until [`stop`](Driver::stop): first every
    /// grain once (so that all K are active), then grains drawn from
    /// `seed`.
    pub fn spawn_workers(
        self: &Arc<Self>,
        workers: usize,
        seed: u64,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..workers)
            .map(|w| {
                let d = self.clone();
                tokio::spawn(async move {
                    let mut rng = Rng::new(seed.wrapping_add(w as u64 * 7919));
                    while !d.stop.load(Ordering::Relaxed) {
                        let warm = d.warm_cursor.fetch_add(1, Ordering::Relaxed);
                        let i = if warm < d.grains {
                            warm
                        } else {
                            rng.below(d.grains as u64) as usize
                        };
                        if let Outcome::Failed(_) | Outcome::TimedOut = d.call(i, w).await {
                            // Do not spin on a failing cluster.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                })
            })
            .collect()
    }

    /// Whether every grain has been called once.
    pub fn warmed_up(&self) -> bool {
        self.warm_cursor.load(Ordering::Relaxed) >= self.grains
            && self.acked.iter().all(|a| !a.lock().is_empty())
    }

    /// Stops the workers after their current call.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Up to `n` grains whose last acknowledged append came from `silo`.
    pub fn grains_on(&self, silo: &str, n: usize) -> Vec<usize> {
        (0..self.grains)
            .filter(|&i| *self.last_silo[i].lock() == silo)
            .take(n)
            .collect()
    }

    /// Calls grain `i` until an append is acknowledged (or `give_up`
    /// passes); returns when, in Unix milliseconds. A new attempt starts
    /// every 250 ms while earlier ones are still waiting (a call to a
    /// stopped silo waits for its timeout), so the time is that of the
    /// first answer the cluster could give, not of the driver's timeouts.
    pub async fn until_answered(self: &Arc<Self>, i: usize, give_up: Duration) -> Option<i64> {
        let deadline = tokio::time::Instant::now() + give_up;
        let mut attempts = tokio::task::JoinSet::new();
        let mut c = i;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tick.tick(), if attempts.len() < 40 => {
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    let d = self.clone();
                    c += 1;
                    let client = c;
                    attempts.spawn(async move { d.call(i, client).await });
                }
                Some(done) = attempts.join_next() => {
                    if let Ok(Outcome::Ok(_)) = done {
                        attempts.abort_all();
                        return Some(actor_cluster::__private::now_millis());
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline && attempts.is_empty() {
                break;
            }
        }
        None
    }

    /// The acknowledged ops of every grain.
    pub fn acked(&self) -> BTreeMap<String, Vec<u64>> {
        (0..self.grains)
            .map(|i| (grain_key(i), self.acked[i].lock().clone()))
            .collect()
    }

    /// The calls of every phase so far.
    pub fn phases(&self) -> Vec<PhaseCalls> {
        self.phases.lock().clone()
    }
}
