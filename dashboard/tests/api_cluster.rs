//! In a three-silo cluster, one silo's dashboard reports every silo's
//! figures (gathered over the SiloStats RPC): the calls driven through
//! all three, activations per silo, and a killed silo turning dead.

mod common;

use std::sync::Arc;
use std::time::Duration;

use actor_cluster::{ClusterConfig, ClusterSilo, InMemoryMembership, MembershipTable};
use actor_core::prelude::*;
use common::*;
use dashboard::{Dashboard, DashboardConfig, SiloBuilderDashboardExt};
use tokio::net::TcpListener;

async fn member(name: &str, table: &Arc<dyn MembershipTable>, with_dashboard: bool) -> ClusterSilo {
    let mut builder = Silo::builder().name(name).grain::<Probe>();
    if with_dashboard {
        builder = builder.with_dashboard(
            DashboardConfig::default()
                .bind("127.0.0.1:0".parse().unwrap())
                .refresh(Duration::from_millis(100)),
        );
    }
    ClusterSilo::start(
        builder,
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        table.clone(),
        ClusterConfig::fast(),
    )
    .await
    .expect("member starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_figures_come_from_every_silo() {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let a = member("silo-a", &table, true).await;
    let b = member("silo-b", &table, false).await;
    let c = member("silo-c", &table, true).await;
    let addr = Dashboard::of(a.silo()).unwrap().local_addr();
    eventually(
        "every silo sees three members",
        Duration::from_secs(20),
        || async {
            [&a, &b, &c]
                .iter()
                .all(|s| s.active_members().len() == 3)
                .then_some(())
        },
    )
    .await;

    // 40 grains, called from all three silos: 3 hits each, 1 failure on
    // every fourth grain.
    let silos = [a.silo(), b.silo(), c.silo()];
    let mut hits = 0u64;
    let mut fails = 0u64;
    for key in 0..40i64 {
        for s in silos {
            s.get_grain::<Probe>(key).ask(Hit).await.unwrap();
            hits += 1;
        }
        if key % 4 == 0 {
            assert!(
                silos[1]
                    .get_grain::<Probe>(key)
                    .ask(Fail)
                    .await
                    .unwrap()
                    .is_err()
            );
            fails += 1;
        }
    }
    let live: u64 = silos.iter().map(|s| s.activation_count() as u64).sum();
    assert_eq!(live, 40, "one activation per grain over the cluster");

    let snap = eventually(
        "the dashboard sums every silo",
        Duration::from_secs(20),
        || async {
            let s = get(addr, "/api/snapshot").await.json();
            let t = s["grain_types"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["grain_type"] == "test.probe")
                .cloned()?;
            (t["calls_total"] == hits + fails && s["silos"].as_array().unwrap().len() == 3)
                .then_some(s)
        },
    )
    .await;
    assert_eq!(snap["clustered"], true);
    assert_eq!(snap["overview"]["silos_active"], 3);
    assert_eq!(snap["overview"]["errors_total"], fails);
    assert_eq!(snap["overview"]["activations"], 40);
    let t = snap["grain_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["grain_type"] == "test.probe")
        .unwrap();
    assert_eq!(t["errors_total"], fails);
    assert_eq!(t["activations"], 40);
    for (name, s) in [("silo-a", &a), ("silo-b", &b), ("silo-c", &c)] {
        assert_eq!(
            t["activations_by_silo"][name],
            s.silo().activation_count() as u64,
            "{name} in {t}"
        );
        let v = snap["silos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap();
        assert_eq!(v["status"], "active");
        assert_eq!(v["reachable"], true);
        assert_eq!(v["endpoint"], s.address().endpoint.as_str());
        assert!(v["cpus"].as_u64().unwrap() >= 1);
    }
    // The membership history shows the three joins.
    let joins = snap["membership_history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "joined")
        .count();
    assert_eq!(joins, 3);

    // Hot grains come from silos running the dashboard (a and c), whose
    // figures a's dashboard gets from c over the RPC.
    eventually(
        "hot grains from a peer's dashboard",
        Duration::from_secs(20),
        || async {
            for key in 0..40i64 {
                c.silo().get_grain::<Probe>(key).ask(Hit).await.unwrap();
            }
            let s = get(addr, "/api/hot").await.json();
            s["hottest_grains"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["silo"] == "silo-c")
                .then_some(())
        },
    )
    .await;

    // Kill c: the dashboard reports it dead, from the table, within the
    // detection time (fast config: about half a second; bounded here).
    c.kill();
    let killed = std::time::Instant::now();
    eventually("silo-c reported dead", Duration::from_secs(15), || async {
        let s = get(addr, "/api/silos/silo-c").await.json();
        (s["status"] == "dead").then_some(())
    })
    .await;
    eprintln!("silo-c shown dead {:?} after the kill", killed.elapsed());
    let history = get(addr, "/api/membership").await.json();
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["silo"] == "silo-c" && e["event"] == "dead"),
        "{history}"
    );
    let ov = get(addr, "/api/overview").await.json();
    assert_eq!(ov["overview"]["silos_dead"], 1);
    assert_eq!(ov["overview"]["silos_active"], 2);
    a.leave().await.unwrap();
    b.leave().await.unwrap();
}
