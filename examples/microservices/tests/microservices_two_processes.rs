//! Two silos in two processes, one cluster: grains placed on the other
//! process answer from it, called with the same typed references as local
//! grains.

use std::path::Path;
use std::time::Duration;

use actor_core::GrainId;
use example_microservices::{
    ChildSilo, INITIAL_STOCK, OrderGrain, OrderGrainRef, Origin, StockGrain, StockGrainRef,
    keys_owned_by, play, start_silo, wait_for_members,
};

const EXE: &str = env!("CARGO_BIN_EXE_example-microservices");
const BOUND: Duration = Duration::from_secs(60);

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("test timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grains_on_the_other_process_answer_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("membership.db");
    let a = start_silo("a", &table, actor_cluster::ClusterConfig::fast())
        .await
        .unwrap();
    let b = ChildSilo::spawn(
        Path::new(EXE),
        "b",
        &table,
        true,
        2,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    bounded(wait_for_members(&a, 2, Duration::from_secs(30)))
        .await
        .unwrap();
    let me = std::process::id();
    assert_ne!(b.pid, me);
    let a_origin = Origin {
        silo: "a".into(),
        pid: me,
    };
    let b_origin = Origin {
        silo: "b".into(),
        pid: b.pid,
    };
    // Where the cluster placed a grain decides which process answers it.
    let expected = |id: GrainId| {
        if a.owner_of(&id) == a.address().endpoint {
            a_origin.clone()
        } else {
            assert_eq!(a.owner_of(&id), b.endpoint);
            b_origin.clone()
        }
    };

    let exchanges = bounded(play(&a, &b.endpoint)).await.unwrap();
    assert_eq!(exchanges.len(), 7);
    for ex in &exchanges {
        let placed = &ex.placed;
        assert_eq!(
            placed.by,
            expected(GrainId::new("order", ex.order.as_str())),
            "{ex}"
        );
        assert_eq!(
            placed.stock.by,
            expected(GrainId::new("stock", ex.product.as_str())),
            "{ex}"
        );
    }
    // An order in this process got its answer from a stock grain in the
    // child, and an order in the child from a stock grain here.
    assert!(
        exchanges
            .iter()
            .any(|ex| ex.placed.by == a_origin && ex.placed.stock.by == b_origin)
    );
    assert!(
        exchanges
            .iter()
            .any(|ex| ex.placed.by == b_origin && ex.placed.stock.by == a_origin)
    );
    // The contended product has one activation, in the child, whoever
    // calls it: its count goes down across orders from both processes.
    let contended: Vec<_> = exchanges[4..]
        .iter()
        .map(|ex| (ex.placed.stock.granted, ex.placed.stock.left))
        .collect();
    assert_eq!(contended, [(true, 3), (true, 0), (false, 0)]);
    assert!(
        exchanges[4..]
            .iter()
            .all(|ex| ex.placed.stock.by == b_origin)
    );

    // A direct call from this process to a grain on the child.
    let on_b = keys_owned_by::<StockGrain>(&a, &b.endpoint, "direct", 1).remove(0);
    let r = bounded(a.silo().get_grain::<StockGrain>(on_b.as_str()).reserve(1))
        .await
        .unwrap();
    assert_eq!(r.by, b_origin);
    assert_eq!(r.left, INITIAL_STOCK - 1);
    assert_eq!(a.silo().activation_count(), 4, "2 orders, 2 stocks here");

    // The child leaves cleanly; its grains come back in this process.
    let (status, said) = bounded(b.stop(Duration::from_secs(20))).await.unwrap();
    assert!(status.success(), "{status}");
    assert!(
        said.iter().any(|l| l.contains("left the cluster")),
        "{said:?}"
    );
    bounded(wait_for_members(&a, 1, Duration::from_secs(30)))
        .await
        .unwrap();
    let r = bounded(a.silo().get_grain::<StockGrain>(on_b.as_str()).reserve(1))
        .await
        .unwrap();
    assert_eq!(r.by, a_origin);
    assert_eq!(r.left, INITIAL_STOCK - 1, "a fresh activation here");
    let placed = bounded(
        a.silo()
            .get_grain::<OrderGrain>("after")
            .place(on_b.clone(), 1),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!((placed.by.pid, placed.stock.by.pid), (me, me));
    a.leave().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_plays_the_scenario_and_exits_0() {
    // Exactly what `cargo run -p example-microservices` does.
    let output = bounded(
        tokio::process::Command::new(EXE)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}\n{stdout}", output.status);
    // 7 exchanges of two calls each; 9 of them cross (see `play`).
    assert!(
        stdout.contains("9 of 14 calls crossed between the processes"),
        "{stdout}"
    );
    assert!(stdout.contains("left the cluster"), "{stdout}");
    assert!(
        stdout.contains("child exited with exit status: 0"),
        "{stdout}"
    );
    // Every line of the scenario names a grain on silo b in the child.
    let child_pid = stdout
        .lines()
        .find_map(|l| l.strip_prefix("silo b: pid "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the child's pid is printed");
    assert_ne!(child_pid, std::process::id().to_string());
    assert!(stdout.contains(&format!("on silo b (pid {child_pid})")));
}
