//! The demo's rounds do what they print.

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_drive_every_grain_type() {
    let silo = demo::build_silo().await.unwrap();
    let first = demo::run_round(&silo, 0).await.unwrap();
    let second = demo::run_round(&silo, 1).await.unwrap();
    assert!(second.home_visits > first.home_visits);
    assert!(first.refused > 0, "some transfers overdraw");
    assert_eq!(first.greeting, "Hello, grains! (asked by demo-user)");
    let err = first.deadlock.expect("the ping/pong cycle is a deadlock");
    assert!(
        err.to_string()
            .contains("demo.ping/1 -> demo.ping/2 -> demo.ping/1"),
        "{err}"
    );
    assert!(first.deadlock_after < Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(350)).await;
    let samples = demo::run_round(&silo, 2).await.unwrap().samples;
    assert!(samples >= 3, "the sensor's timer samples: {samples}");
    let m = silo.metrics();
    let transfer = m
        .grain_type("demo.account")
        .unwrap()
        .method("transfer")
        .unwrap();
    assert_eq!(transfer.calls, 60);
    assert!(transfer.errors > 0);
    assert_eq!(m.grain_type("demo.page").unwrap().activations, 4);
    silo.shutdown().await;
}
