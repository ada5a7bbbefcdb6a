//! Failure detection under load: three silos with the test timings
//! (`ClusterConfig::fast`: probes every 100 ms, 300 ms to answer, 3 misses,
//! 2 votes) in a process whose CPU is saturated (more spinning threads
//! than cores), whose runtime runs long synchronous grain turns and a
//! storm of calls, for a bounded time: slow, not dead, so no silo may
//! ever be declared dead or dropped from a view.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actor_cluster::{ClusterConfig, ClusterSilo, InMemoryMembership, MembershipTable, SiloStatus};
use actor_core::prelude::*;
use tokio::net::TcpListener;

/// A grain whose turns either return at once or keep their worker
/// thread busy for a while (a synchronous computation in a handler).
#[derive(Default)]
pub struct Busy {
    n: u64,
}

impl Grain for Busy {
    const TYPE_NAME: &'static str = "busy";
}

#[grain_methods]
impl Busy {
    /// Counts.
    pub async fn hit(&mut self) -> u64 {
        self.n += 1;
        self.n
    }

    /// Spins on its worker thread for `millis` without yielding.
    pub async fn spin(&mut self, millis: u64) -> u64 {
        let until = Instant::now() + Duration::from_millis(millis);
        let mut x = self.n;
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        self.n = x;
        x
    }
}

async fn start(name: &str, table: &Arc<dyn MembershipTable>) -> ClusterSilo {
    ClusterSilo::start(
        Silo::builder().name(name).grain::<Busy>(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        table.clone(),
        ClusterConfig::fast(),
    )
    .await
    .unwrap()
}

async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

static FIRST_ERROR: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Counts a failed call, and keeps the first error for the report.
fn note(failed: &AtomicU64, e: &actor_core::Error) -> u64 {
    FIRST_ERROR
        .lock()
        .unwrap()
        .get_or_insert_with(|| e.to_string());
    failed.fetch_add(1, Ordering::Relaxed)
}

/// Spinning OS threads, more than cores, until `stop`.
fn hog_cpu(stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (0..cores * 2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loaded_cluster_declares_no_silo_dead() {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let silos = Arc::new(vec![
        start("a", &table).await,
        start("b", &table).await,
        start("c", &table).await,
    ]);
    eventually("all see three", Duration::from_secs(10), || {
        silos.iter().all(|s| s.active_members().len() == 3)
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let hogs = hog_cpu(&stop);
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    // Long synchronous turns: two callers, so that at times both workers
    // of the runtime (which every silo of this process shares) are held.
    for caller in 0..2usize {
        let (silos, stop, ok, failed) = (silos.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let from = silos[(caller + i) % 3].silo();
                let key = (caller * 1000 + i % 7) as i64;
                match from.get_grain::<Busy>(key).spin(250).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => note(&failed, &e),
                };
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }));
    }
    // A storm of short calls across the silos.
    for caller in 0..200usize {
        let (silos, stop, ok, failed) = (silos.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let mut i = caller;
            while !stop.load(Ordering::Relaxed) {
                i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let from = silos[i % 3].silo();
                let key = 10_000 + (i / 3 % 2000) as i64;
                match from.get_grain::<Busy>(key).hit().await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => note(&failed, &e),
                };
            }
        }));
    }

    // Watch the table and every view for the whole run.
    let started = Instant::now();
    let mut deaths = Vec::new();
    let mut dropped = Vec::new();
    while started.elapsed() < Duration::from_secs(25) {
        let snap = table.read_all().await.unwrap();
        for (e, _) in snap.entries.iter() {
            if e.status == SiloStatus::Dead && !deaths.iter().any(|(s, _)| *s == e.name) {
                deaths.push((e.name.clone(), started.elapsed()));
            }
        }
        for s in silos.iter() {
            let n = s.active_members().len();
            if n != 3 && dropped.len() < 20 {
                dropped.push((s.silo().name().to_owned(), n, started.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
    for t in load {
        t.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "calls: {ok} ok, {failed} failed (first: {:?}); deaths {deaths:?}; views {dropped:?}",
        FIRST_ERROR.lock().unwrap()
    );
    assert!(ok > 1000, "the load ran: {ok} calls answered");
    assert!(deaths.is_empty(), "declared dead under load: {deaths:?}");
    assert!(
        dropped.is_empty(),
        "dropped from a view under load: {dropped:?}"
    );
    assert!(silos.iter().all(|s| s.is_serving()));
}
