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

/// `GET path` over plain HTTP/1.0 (the dashboard's JSON API).
fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_demo_traffic() {
    let silo = demo::build_silo_with_dashboard(
        dashboard::DashboardConfig::default()
            .bind("127.0.0.1:0".parse().unwrap())
            .refresh(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let addr = dashboard::Dashboard::of(&silo).unwrap().local_addr();
    demo::run_round(&silo, 0).await.unwrap();
    let started = std::time::Instant::now();
    loop {
        let (status, body) =
            tokio::task::spawn_blocking(move || http_get(addr, "/api/grain-types/demo.account"))
                .await
                .unwrap();
        if status == 200 {
            let t: serde_json::Value = serde_json::from_str(&body).unwrap();
            if t["calls_total"] == 20 {
                assert!(t["errors_total"].as_u64().unwrap() > 0, "{t}");
                assert_eq!(t["activations"], 5);
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the dashboard never showed the 20 transfers: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    silo.shutdown().await;
}
