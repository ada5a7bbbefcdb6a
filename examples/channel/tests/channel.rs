//! One-way jobs queue in the slow consumer's mailbox: the HTTP answers come
//! back before the work is done, the backlog shows in the stats, and every
//! job is eventually processed, in order.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use example_channel::{
    AppConfig, CONSUMER_KEY, JobAccepted, Progress, SlowConsumer, Stats, SubmitJob, build_silo,
    router, run_scenario,
};
use http_body_util::BodyExt;
use tower::ServiceExt;

const LIMIT: Duration = Duration::from_secs(10);

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, String) {
    let res = tokio::time::timeout(LIMIT, app.clone().oneshot(req))
        .await
        .expect("request timed out")
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn post_job(app: &Router, i: u64) -> (StatusCode, String) {
    let body = serde_json::to_string(&SubmitJob {
        payload: format!("job-{i}"),
    })
    .unwrap();
    let req = Request::post("/jobs")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    call(app, req).await
}

async fn stats(app: &Router) -> Stats {
    let (status, body) = call(app, Request::get("/stats").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `GET /stats` until `done` holds, for at most `LIMIT`.
async fn wait_for(app: &Router, done: impl Fn(&Stats) -> bool) -> Stats {
    let until = Instant::now() + LIMIT;
    loop {
        let s = stats(app).await;
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < until, "gave up waiting; last stats {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn posts_return_before_the_work_and_all_jobs_are_processed() {
    const JOBS: u64 = 10;
    let work = Duration::from_millis(150);
    let silo = build_silo(work).await.unwrap();
    let app = router(&silo, AppConfig::default());

    let started = Instant::now();
    let mut accepted = Vec::new();
    for i in 0..JOBS {
        let (status, body) = post_job(&app, i).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        accepted.push(serde_json::from_str::<JobAccepted>(&body).unwrap());
    }
    let posting_took = started.elapsed();
    let right_after = stats(&app).await;

    // The answers did not wait for the consumer: all ten came back in less
    // time than it needs for the jobs, and most jobs are still queued.
    assert!(
        posting_took < work * JOBS as u32,
        "posting took {posting_took:?}"
    );
    assert_eq!(right_after.accepted, JOBS);
    assert!(right_after.processed < JOBS, "{right_after:?}");
    assert!(right_after.mailbox_depth > 0, "{right_after:?}");
    // The endpoint saw the backlog grow as it queued.
    assert!(
        accepted.iter().map(|a| a.mailbox_depth).max().unwrap() > 1,
        "{accepted:?}"
    );
    let metrics = silo.metrics();
    let depth = metrics.grain_type("slow-consumer").unwrap().mailbox_depth;
    assert!(depth > 0);

    // Eventually every job is processed and the mailbox is empty...
    let drained = wait_for(&app, |s| s.processed == JOBS).await;
    assert_eq!(drained.mailbox_depth, 0);
    assert_eq!(
        silo.metrics()
            .grain_type("slow-consumer")
            .unwrap()
            .mailbox_depth,
        0
    );
    // ...one after the other, in the order they were queued.
    let progress = silo
        .get_grain::<SlowConsumer>(CONSUMER_KEY)
        .ask(Progress)
        .await
        .unwrap();
    let ids: Vec<u64> = accepted.iter().map(|a| a.job_id).collect();
    assert_eq!(progress.processed_ids, ids);
    assert!(
        started.elapsed() >= work * JOBS as u32,
        "jobs ran side by side"
    );
    silo.shutdown().await;
}

#[tokio::test]
async fn stats_are_answered_while_a_job_runs() {
    // The progress query interleaves with the running job and jumps the
    // queue: it does not wait for a one-second job, let alone the backlog.
    let work = Duration::from_secs(1);
    let silo = build_silo(work).await.unwrap();
    let app = router(&silo, AppConfig::default());
    for i in 0..3 {
        assert_eq!(post_job(&app, i).await.0, StatusCode::ACCEPTED);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let asked = Instant::now();
    let s = stats(&app).await;
    assert!(
        asked.elapsed() < work / 2,
        "GET /stats took {:?}",
        asked.elapsed()
    );
    assert_eq!((s.accepted, s.processed, s.mailbox_depth), (3, 0, 2));
    silo.shutdown().await;
}

#[tokio::test]
async fn a_full_backlog_pushes_back_with_503() {
    let work = Duration::from_millis(100);
    let silo = build_silo(work).await.unwrap();
    let config = AppConfig {
        max_backlog: Some(3),
    };
    let app = router(&silo, config);
    let mut codes = Vec::new();
    for i in 0..8 {
        let (status, _) = post_job(&app, i).await;
        codes.push(status);
    }
    // The first job is taken at once, three more fill the mailbox, the
    // rest are refused while the first is still running.
    let ok = codes.iter().filter(|c| **c == StatusCode::ACCEPTED).count() as u64;
    let refused = codes
        .iter()
        .filter(|c| **c == StatusCode::SERVICE_UNAVAILABLE)
        .count() as u64;
    assert_eq!(ok + refused, 8, "{codes:?}");
    assert!(refused > 0, "{codes:?}");
    assert!(ok >= 3, "{codes:?}");

    let drained = wait_for(&app, |s| s.processed == ok).await;
    assert_eq!(
        (drained.accepted, drained.rejected, drained.mailbox_depth),
        (ok, refused, 0)
    );
    // Once drained, jobs are accepted again.
    assert_eq!(post_job(&app, 99).await.0, StatusCode::ACCEPTED);
    silo.shutdown().await;
}

#[tokio::test]
async fn the_scenario_runs_over_real_http_on_loopback() {
    let work = Duration::from_millis(50);
    let silo = build_silo(work).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server =
        tokio::spawn(axum::serve(listener, router(&silo, AppConfig::default())).into_future());
    let s = run_scenario(addr, 8, Duration::from_millis(20), LIMIT)
        .await
        .unwrap();
    assert_eq!(s.accepted.len(), 8);
    assert!(
        s.right_after.processed < 8 && s.right_after.mailbox_depth > 0,
        "{:?}",
        s.right_after
    );
    assert_eq!((s.drained.processed, s.drained.mailbox_depth), (8, 0));
    assert!(s.drained_after >= work * 8);
    server.abort();
    silo.shutdown().await;
}
