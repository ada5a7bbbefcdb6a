//! The limit holds across two fronts on two silos: a bounded load
//! generator sees exactly `LIMIT` requests pass and every later one get
//! 429 with `Retry-After`, until the window (on a hand-moved clock) ends
//! and the count starts again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actor_cluster::{ClusterConfig, ClusterSilo, InMemoryMembership, MembershipTable};
use actor_core::Silo;
use example_rate_limit::{Clock, LIMIT, RateLimiter, app, burst, limiters_of, serve};
use tokio::net::TcpListener;

const LIMIT_N: usize = LIMIT as usize;

struct Fronts {
    silos: Vec<ClusterSilo>,
    addrs: Vec<SocketAddr>,
    now: Arc<AtomicU64>,
}

async fn fronts() -> Fronts {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let now = Arc::new(AtomicU64::new(1_000_000));
    let mut silos = Vec::new();
    let mut addrs = Vec::new();
    for name in ["a", "b"] {
        let silo = ClusterSilo::start(
            Silo::builder().name(name).grain::<RateLimiter>(),
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            table.clone(),
            ClusterConfig::fast(),
        )
        .await
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        serve(
            app(limiters_of(silo.silo().clone()), Clock::manual(now.clone())),
            listener,
        );
        silos.push(silo);
    }
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while silos.iter().any(|s| s.active_members().len() < 2) {
        assert!(
            std::time::Instant::now() < until,
            "the silos never saw each other"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Fronts { silos, addrs, now }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_holds_across_fronts_and_the_window_resets() {
    let f = fronts().await;
    let http = reqwest::Client::new();

    // 150 requests spread over both fronts: the first 100 pass, every
    // one after gets 429 with the whole window left to wait.
    let first = burst(&http, &f.addrs, "alice", 150).await.unwrap();
    assert!(
        first.statuses[..LIMIT_N].iter().all(|s| *s == 200),
        "{:?}",
        first.statuses
    );
    assert!(
        first.statuses[LIMIT_N..].iter().all(|s| *s == 429),
        "{:?}",
        first.statuses
    );
    assert_eq!(first.retry_after, vec![5; 50]);
    // The limiter of alice lives on one silo; both fronts counted there.
    let on: Vec<_> = f
        .silos
        .iter()
        .filter(|s| {
            s.location_of(&actor_core::GrainId::new("rate-limit.client", "alice"))
                == Some(s.address().endpoint.clone())
        })
        .collect();
    assert_eq!(on.len(), 1, "one activation for alice");

    // Another client has its own window.
    let bob = burst(&http, &f.addrs, "bob", 10).await.unwrap();
    assert_eq!(bob.count(200), 10);

    // 3.2 s on: still limited, 2 s to go (rounded up).
    f.now.fetch_add(3_200, Ordering::SeqCst);
    let later = burst(&http, &f.addrs, "alice", 3).await.unwrap();
    assert_eq!(later.statuses, vec![429; 3]);
    assert_eq!(later.retry_after, vec![2; 3]);

    // The window's end: a new window, counted from zero.
    f.now.fetch_add(1_800, Ordering::SeqCst);
    let next = burst(&http, &f.addrs, "alice", LIMIT_N + 5).await.unwrap();
    assert!(
        next.statuses[..LIMIT_N].iter().all(|s| *s == 200),
        "{:?}",
        next.statuses
    );
    assert_eq!(next.count(429), 5, "{:?}", next.statuses);
    assert_eq!(next.retry_after, vec![5; 5]);

    for s in f.silos {
        s.leave().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_pass_the_limit() {
    let f = fronts().await;
    let http = reqwest::Client::new();
    // 150 requests at once, over both fronts: the grain takes them one
    // turn at a time, so exactly 100 pass.
    let tasks: Vec<_> = (0..150)
        .map(|i| {
            let http = http.clone();
            let front = f.addrs[i % 2];
            tokio::spawn(async move {
                http.get(format!("http://{front}/work"))
                    .header("x-client-id", "carol")
                    .timeout(Duration::from_secs(20))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, limited), (LIMIT_N, 50));

    // A client id that is too long is a bad request, not a new counter.
    let status = http
        .get(format!("http://{}/work", f.addrs[0]))
        .header("x-client-id", "x".repeat(200))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 400);
}
