//! Strong single activation: the testkit's strict oracle records every
//! activation and deactivation with its silo, in order; no grain may ever
//! be live on two silos at once, while a silo joins under load or is cut
//! off from the others and from the table.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actor_cluster::{ClusterConfig, ClusterSilo, InMemoryMembership, MembershipTable, SiloStatus};
use actor_core::prelude::*;
use common::Cuttable;
use common::oracle::{Oracle, Tracked, TrackedRef};
use tokio::net::TcpListener;

async fn start(
    name: &str,
    table: &InMemoryMembership,
    oracle: &Oracle,
) -> (ClusterSilo, Arc<AtomicBool>) {
    let view = Cuttable::new(table.clone());
    let cut = view.cut.clone();
    let o = oracle.clone();
    let silo = ClusterSilo::start(
        Silo::builder().name(name).grain_with(move |_| Tracked {
            oracle: o.clone(),
            n: 0,
        }),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        Arc::new(view),
        ClusterConfig::fast(),
    )
    .await
    .unwrap();
    (silo, cut)
}

async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Calls grains 0..keys from `silos` in a loop until `stop`; counts
/// successes and failures.
fn load(
    silos: Vec<Silo>,
    keys: i64,
    stop: Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<()>, Arc<AtomicU64>, Arc<AtomicU64>) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let (o, f) = (ok.clone(), failed.clone());
    let task = tokio::spawn(async move {
        let mut i = 0i64;
        while !stop.load(Ordering::SeqCst) {
            let mut batch = Vec::new();
            for s in &silos {
                for _ in 0..8 {
                    let g = s
                        .get_grain::<Tracked>(i % keys)
                        .with_timeout(Duration::from_secs(10));
                    i += 7;
                    batch.push(tokio::spawn(async move { g.touch().await }));
                }
            }
            for b in batch {
                match b.await.unwrap() {
                    Ok(_) => o.fetch_add(1, Ordering::SeqCst),
                    Err(_) => f.fetch_add(1, Ordering::SeqCst),
                };
            }
        }
    });
    (task, ok, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silo_joining_under_load_never_duplicates_a_grain() {
    let table = InMemoryMembership::new();
    let oracle = Oracle::default();
    let (a, _) = start("a", &table, &oracle).await;
    let (b, _) = start("b", &table, &oracle).await;
    eventually("a and b see each other", Duration::from_secs(10), || {
        a.active_members().len() == 2 && b.active_members().len() == 2
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let (task, ok, failed) = load(vec![a.silo().clone(), b.silo().clone()], 120, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (c, _) = start("c", &table, &oracle).await;
    // The joiner calls at once, before the others know it.
    let (task_c, ok_c, failed_c) = load(vec![c.silo().clone()], 120, stop.clone());
    eventually("all see three", Duration::from_secs(10), || {
        [&a, &b, &c].iter().all(|s| s.active_members().len() == 3)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    task.await.unwrap();
    task_c.await.unwrap();
    assert_eq!(failed_c.load(Ordering::SeqCst), 0);
    assert!(ok_c.load(Ordering::SeqCst) > 0);
    // Every grain reachable from c too. Activations stay where they were
    // placed (the directory keeps them), and new grains are placed on the
    // joiner too.
    for k in 0..120 {
        c.silo().get_grain::<Tracked>(k).touch().await.unwrap();
    }
    for k in 1000..1060 {
        a.silo().get_grain::<Tracked>(k).touch().await.unwrap();
    }
    let per_silo = oracle.check();
    assert!(
        per_silo.get("c").copied().unwrap_or(0) > 5,
        "new grains are placed on the joiner: {per_silo:?}"
    );
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "no call failed while c joined"
    );
    assert!(ok.load(Ordering::SeqCst) > 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silo_cut_off_from_everyone_stops_before_its_grains_move() {
    let table = InMemoryMembership::new();
    let oracle = Oracle::default();
    let (a, _) = start("a", &table, &oracle).await;
    let (b, _) = start("b", &table, &oracle).await;
    let (c, c_cut) = start("c", &table, &oracle).await;
    eventually("all see three", Duration::from_secs(10), || {
        [&a, &b, &c].iter().all(|s| s.active_members().len() == 3)
    })
    .await;
    // Activate grains everywhere, c included.
    for k in 0..60 {
        a.silo().get_grain::<Tracked>(k).touch().await.unwrap();
    }
    let on_c = c.silo().activation_count();
    assert!(on_c > 0);

    // Cut c off: no table, no answers to the others. c itself runs on.
    let stop = Arc::new(AtomicBool::new(false));
    let (task, ok, _failed) = load(vec![a.silo().clone(), b.silo().clone()], 60, stop.clone());
    c_cut.store(true, Ordering::SeqCst);
    c.set_answering(false);
    eventually("a and b drop c", Duration::from_secs(10), || {
        a.active_members().len() == 2 && b.active_members().len() == 2
    })
    .await;
    eventually("c lets its grains go", Duration::from_secs(10), || {
        c.silo().activation_count() == 0
    })
    .await;
    // The survivors serve every grain again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    task.await.unwrap();
    for k in 0..60 {
        a.silo().get_grain::<Tracked>(k).touch().await.unwrap();
    }
    assert!(ok.load(Ordering::SeqCst) > 0);
    let snap = table.read_all().await.unwrap();
    assert_eq!(snap.entry(c.address()).unwrap().0.status, SiloStatus::Dead);
    let per_silo = oracle.check();
    assert!(
        per_silo.get("a").copied().unwrap_or(0) + per_silo.get("b").copied().unwrap_or(0) >= 60
    );
}

/// A silo's start hooks run before it has joined the cluster: a call made
/// from one (a plug-in's task that calls its grains at once, as a stream
/// provider's keeper calls its partition agents) must not activate a grain
/// on the joining silo while the members run it. Before the fence was up
/// ahead of the silo's start, such a call registered the grain in the
/// joiner's one-member directory partition, and the joiner ran it beside
/// the member that did (for the grains it went on to own, it won their
/// registration: the member's claim lost and it deactivated its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_from_a_joining_silos_start_hook_never_duplicates_a_grain() {
    use common::oracle::TrackedTouch;
    let table = InMemoryMembership::new();
    let oracle = Oracle::default();
    let (a, _) = start("a", &table, &oracle).await;
    let (b, _) = start("b", &table, &oracle).await;
    eventually("a and b see each other", Duration::from_secs(10), || {
        a.active_members().len() == 2 && b.active_members().len() == 2
    })
    .await;
    for k in 0..60 {
        a.silo().get_grain::<Tracked>(k).touch().await.unwrap();
    }
    let o = oracle.clone();
    let c = ClusterSilo::start(
        Silo::builder()
            .name("c")
            .grain_with(move |_| Tracked {
                oracle: o.clone(),
                n: 0,
            })
            .on_start(|silo| {
                for k in 0..60 {
                    // Refused or routed on: either way it must not run here.
                    let _ = silo.get_grain::<Tracked>(k).tell(TrackedTouch {});
                }
                Ok(())
            }),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        Arc::new(table.clone()),
        ClusterConfig::fast(),
    )
    .await
    .unwrap();
    eventually("all see three", Duration::from_secs(10), || {
        [&a, &b, &c].iter().all(|s| s.active_members().len() == 3)
    })
    .await;
    // Time for the claims of the view change (and for a duplicate, if
    // there were one, to be found and deactivated: the oracle keeps it).
    tokio::time::sleep(Duration::from_secs(1)).await;
    for k in 0..60 {
        c.silo().get_grain::<Tracked>(k).touch().await.unwrap();
    }
    let per_silo = oracle.check();
    assert_eq!(
        per_silo.get("c"),
        None,
        "the grains stay where they were: {per_silo:?}"
    );
}
