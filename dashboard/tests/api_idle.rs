//! The dashboard's port under 500 connections at once that say nothing:
//! each is closed after the idle timeout, the API serves meanwhile and
//! after, and a page's event stream, on which only the server writes,
//! stays open past the timeout.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use actor_core::prelude::*;
use common::*;
use dashboard::{Dashboard, DashboardConfig, SiloBuilderDashboardExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const IDLE: Duration = Duration::from_secs(2);

async fn silo() -> (Silo, SocketAddr) {
    let silo = Silo::builder()
        .name("idle")
        .grain::<Probe>()
        .with_dashboard(
            DashboardConfig::default()
                .bind("127.0.0.1:0".parse().unwrap())
                .refresh(Duration::from_millis(100))
                .idle_timeout(IDLE),
        )
        .start()
        .await
        .expect("silo with dashboard starts");
    let addr = Dashboard::of(&silo).unwrap().local_addr();
    (silo, addr)
}

/// Whether the server closes `stream` within `within`.
async fn closed_within(mut stream: TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut sink = [0u8; 512];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_event_streams_are_not() {
    let (silo, addr) = silo().await;
    eventually("first snapshot", Duration::from_secs(10), || async {
        (get(addr, "/api/snapshot").await.status == 200).then_some(())
    })
    .await;

    // A page's event stream: only the server writes on it. Read all
    // along, as a page does, until told to stop: whether the server
    // closed it, and the snapshots seen.
    let mut events = TcpStream::connect(addr).await.unwrap();
    events
        .write_all(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            tokio::select! {
                _ = &mut stopped => return (false, seen),
                n = events.read(&mut buf) => match n {
                    Ok(0) | Err(_) => return (true, seen),
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                },
            }
        }
    });
    let started = Instant::now();

    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // The API serves meanwhile.
    assert_eq!(get(addr, "/api").await.status, 200);
    let closing: Vec<_> = idle
        .into_iter()
        .map(|s| tokio::spawn(closed_within(s, IDLE * 15)))
        .collect();
    let mut open = 0;
    for c in closing {
        if !c.await.unwrap() {
            open += 1;
        }
    }
    assert_eq!(open, 0, "every idle connection is closed");

    // The event stream outlived the idle timeout and kept delivering.
    tokio::time::sleep_until(started + IDLE * 2).await;
    stop.send(()).unwrap();
    let (closed, seen) = reader.await.unwrap();
    let seen = String::from_utf8_lossy(&seen);
    assert!(!closed, "the event stream is not closed as idle");
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(
        seen.matches("data:").count() >= 5,
        "snapshots kept coming for {:?}: {} seen",
        started.elapsed(),
        seen.matches("data:").count()
    );
    assert_eq!(get(addr, "/api").await.status, 200, "and serves after");
    silo.shutdown().await;
}
