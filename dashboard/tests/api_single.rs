//! The JSON API of a single silo's dashboard reports exactly the calls a
//! test drives, refuses requests without credentials, and answers bad
//! requests with clear JSON errors.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use actor_core::prelude::*;
use common::*;
use dashboard::{Dashboard, DashboardConfig, SiloBuilderDashboardExt};

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn silo_with(config: DashboardConfig) -> (Silo, SocketAddr) {
    let silo = Silo::builder()
        .name("solo")
        .grain::<Probe>()
        .with_dashboard(config.bind(local()).refresh(Duration::from_millis(100)))
        .start()
        .await
        .expect("silo with dashboard starts");
    let addr = Dashboard::of(&silo).unwrap().local_addr();
    (silo, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_figures_equal_the_calls_driven() {
    let (silo, addr) = silo_with(DashboardConfig::default()).await;
    for key in 0..5i64 {
        let g = silo.get_grain::<Probe>(key);
        for _ in 0..=key {
            g.ask(Hit).await.unwrap();
        }
    }
    // 15 hits over 5 grains, the busiest (key 4) with 5.
    let busiest = silo.get_grain::<Probe>(4i64);
    for _ in 0..3 {
        assert!(busiest.ask(Fail).await.unwrap().is_err());
    }
    busiest.ask(Slow).await.unwrap();

    let t = eventually(
        "the probe type reports every call",
        Duration::from_secs(10),
        || async {
            let r = get(addr, "/api/grain-types/test.probe").await;
            assert_eq!(r.status, 200, "{}", r.body);
            let t = r.json();
            (t["calls_total"] == 19).then_some(t)
        },
    )
    .await;
    assert_eq!(t["errors_total"], 3);
    assert_eq!(t["activations"], 5);
    assert_eq!(t["activations_by_silo"]["solo"], 5);
    let method = |name: &str| {
        t["methods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["method"] == name)
            .unwrap_or_else(|| panic!("method {name} in {t}"))
            .clone()
    };
    assert_eq!(method("hit")["calls_total"], 15);
    assert_eq!(method("hit")["errors_total"], 0);
    assert_eq!(method("fail")["calls_total"], 3);
    assert_eq!(method("fail")["errors_total"], 3);
    assert_eq!(method("slow")["calls_total"], 1);
    let slow_avg = method("slow")["avg_latency_ms"].as_f64().unwrap();
    assert!((20.0..2000.0).contains(&slow_avg), "slow avg {slow_avg} ms");

    let ov = get(addr, "/api/overview").await.json();
    assert_eq!(ov["overview"]["calls_total"], 19);
    assert_eq!(ov["overview"]["errors_total"], 3);
    assert_eq!(ov["overview"]["activations"], 5);
    assert_eq!(ov["overview"]["silos_active"], 1);
    assert_eq!(ov["clustered"], false);
    assert!(!ov["history"].as_array().unwrap().is_empty());

    let silos = get(addr, "/api/silos").await.json();
    assert_eq!(silos.as_array().unwrap().len(), 1);
    assert_eq!(silos[0]["name"], "solo");
    assert_eq!(silos[0]["status"], "active");
    assert_eq!(silos[0]["activations_by_type"]["test.probe"], 5);
    assert!(silos[0]["rss_bytes"].as_u64().unwrap_or(0) > 0 || !cfg!(target_os = "linux"));
    assert_eq!(get(addr, "/api/silos/solo").await.json()["name"], "solo");

    // The slowest method is `slow`.
    let hot = get(addr, "/api/hot?limit=3").await.json();
    assert_eq!(hot["slowest_methods"][0]["method"], "slow", "{hot}");
    assert!(hot["slowest_methods"].as_array().unwrap().len() <= 3);

    // Calls/s: a burst on one grain shows as a rate and as the hottest.
    let rate = eventually(
        "a burst shows as calls/s and a hot grain",
        Duration::from_secs(10),
        || async {
            let g = silo.get_grain::<Probe>("burst");
            for _ in 0..50 {
                g.ask(Hit).await.unwrap();
            }
            let snap = get(addr, "/api/snapshot").await.json();
            let cps = snap["overview"]["calls_per_sec"].as_f64().unwrap();
            let top = snap["hottest_grains"][0]["grain"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            (cps > 0.0 && top == "test.probe/burst").then_some(cps)
        },
    )
    .await;
    assert!(rate > 0.0);
    silo.shutdown().await;
    // The server stops with its silo.
    eventually(
        "the dashboard stops with the silo",
        Duration::from_secs(10),
        || async {
            request(addr, "GET", "/api/overview", &[], None)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let (silo, addr) = silo_with(DashboardConfig::default()).await;
    eventually("first snapshot", Duration::from_secs(10), || async {
        (get(addr, "/api/snapshot").await.status == 200).then_some(())
    })
    .await;
    let r = get(addr, "/api/hot?limit=abc").await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("`limit` must be a whole number"),
        "{}",
        r.body
    );
    let r = get(addr, "/api/hot?limit=0").await;
    assert_eq!(r.status, 400);
    let r = get(addr, "/api/hot?top=3").await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("unknown query parameter `top`"),
        "{}",
        r.body
    );
    let r = get(addr, "/api/nope").await;
    assert_eq!(r.status, 404);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("GET /api lists them")
    );
    let r = get(addr, "/api/grain-types/no.such").await;
    assert_eq!(r.status, 404);
    assert!(
        r.body.contains("no grain type `no.such`") && r.body.contains("test.probe"),
        "{}",
        r.body
    );
    let r = get(addr, "/api/silos/ghost").await;
    assert_eq!(r.status, 404);
    let r = request(addr, "POST", "/api/snapshot", &[], Some("{}".into()))
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    assert!(r.json()["error"].as_str().unwrap().contains("read-only"));
    let r = get(addr, "/nothing-here").await;
    assert_eq!(r.status, 404);
    // The index lists the endpoints; the page and its assets are served.
    assert!(get(addr, "/api").await.body.contains("/api/grain-types"));
    let page = get(addr, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("uPlot.iife.min.js"));
    assert_eq!(get(addr, "/vendor/uPlot.iife.min.js").await.status, 200);
    assert!(
        get(addr, "/vendor/uPlot.LICENSE")
            .await
            .body
            .contains("MIT")
    );
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_when_configured() {
    let (silo, addr) = silo_with(DashboardConfig::default().token("s3cret-token")).await;
    for path in [
        "/",
        "/api/snapshot",
        "/api/events",
        "/vendor/uPlot.iife.min.js",
    ] {
        let r = get(addr, path).await;
        assert_eq!(r.status, 401, "{path} without token");
        assert!(r.json()["error"].as_str().unwrap().contains("access token"));
        assert!(r.headers.contains_key("www-authenticate"));
    }
    let wrong = request(
        addr,
        "GET",
        "/api",
        &[("authorization", "Bearer nope")],
        None,
    )
    .await
    .unwrap();
    assert_eq!(wrong.status, 401);
    let wrong = get(addr, "/api?token=s3cret").await;
    assert_eq!(wrong.status, 401, "a prefix of the token is not the token");
    let ok = request(
        addr,
        "GET",
        "/api",
        &[("authorization", "Bearer s3cret-token")],
        None,
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200);
    let page = get(addr, "/?token=s3cret-token").await;
    assert_eq!(page.status, 200);
    // The page's assets and event stream then ride on a cookie.
    let cookie = page.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let asset = request(
        addr,
        "GET",
        "/vendor/uPlot.iife.min.js",
        &[("cookie", pair)],
        None,
    )
    .await
    .unwrap();
    assert_eq!(asset.status, 200);
    let forged = request(
        addr,
        "GET",
        "/api",
        &[("cookie", "grains_dashboard_token=6e6f7065")],
        None,
    )
    .await
    .unwrap();
    assert_eq!(forged.status, 401);
    assert!(
        Dashboard::of(&silo)
            .unwrap()
            .url()
            .ends_with("/?token=s3cret-token")
    );
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_is_required_when_configured() {
    let (silo, addr) = silo_with(DashboardConfig::default().basic_auth("ops", "pw")).await;
    let r = get(addr, "/api").await;
    assert_eq!(r.status, 401);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    // "ops:wrong" and "ops:pw" in base64.
    let bad = request(
        addr,
        "GET",
        "/api",
        &[("authorization", "Basic b3BzOndyb25n")],
        None,
    )
    .await
    .unwrap();
    assert_eq!(bad.status, 401);
    let good = request(
        addr,
        "GET",
        "/api",
        &[("authorization", "Basic b3BzOnB3")],
        None,
    )
    .await
    .unwrap();
    assert_eq!(good.status, 200);
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_or_unservable_configurations_fail_the_start() {
    let err = Silo::builder()
        .grain::<Probe>()
        .with_dashboard(DashboardConfig::default().bind("0.0.0.0:0".parse().unwrap()))
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("without access control"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = Silo::builder()
        .grain::<Probe>()
        .with_dashboard(DashboardConfig::default().bind(taken.local_addr().unwrap()))
        .start()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot serve the dashboard"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_are_listed_when_the_silo_has_them() {
    use actor_persistence::{MemoryReminders, ReminderService, SiloBuilderRemindersExt};
    use std::sync::Arc;

    let silo = Silo::builder()
        .name("with-reminders")
        .grain::<Probe>()
        .with_reminders(Arc::new(MemoryReminders::new()))
        .with_dashboard(
            DashboardConfig::default()
                .bind(local())
                .refresh(Duration::from_millis(100)),
        )
        .start()
        .await
        .unwrap();
    let addr = Dashboard::of(&silo).unwrap().local_addr();
    let service = ReminderService::of(&silo).unwrap();
    let grain = silo.get_grain::<Probe>("r1").id().clone();
    service
        .register(
            &grain,
            "nightly",
            Duration::from_secs(3600),
            Duration::from_secs(86_400),
        )
        .await
        .unwrap();
    service
        .register(&grain, "once", Duration::from_secs(60), Duration::ZERO)
        .await
        .unwrap();
    let r = eventually("two reminders listed", Duration::from_secs(10), || async {
        let r = get(addr, "/api/reminders").await.json();
        (r["count"] == 2).then_some(r)
    })
    .await;
    assert_eq!(r["enabled"], true);
    // Soonest first.
    assert_eq!(r["reminders"][0]["name"], "once");
    assert_eq!(r["reminders"][0]["period_millis"], 0);
    assert_eq!(r["reminders"][1]["name"], "nightly");
    assert_eq!(r["reminders"][1]["grain"], "test.probe/r1");
    assert_eq!(r["reminders"][1]["period_millis"], 86_400_000);
    silo.shutdown().await;

    // Without a reminder service the page says so.
    let (plain, addr) = silo_with(DashboardConfig::default()).await;
    let r = eventually("a snapshot", Duration::from_secs(10), || async {
        let r = get(addr, "/api/reminders").await;
        (r.status == 200).then(|| r.json())
    })
    .await;
    assert_eq!(r["enabled"], false);
    assert_eq!(r["count"], 0);
    plain.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_pushes_snapshots() {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;

    let (silo, addr) = silo_with(DashboardConfig::default()).await;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("/api/events")
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    // Two snapshots arrive, the second newer than the first.
    let mut seen = String::new();
    let mut times = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while times.len() < 2 {
            let frame = body.frame().await.expect("stream open").unwrap();
            if let Some(data) = frame.data_ref() {
                seen.push_str(&String::from_utf8_lossy(data));
            }
            while let Some(end) = seen.find("\n\n") {
                let event: String = seen.drain(..end + 2).collect();
                if let Some(json) = event
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .filter(|_| event.contains("event: snapshot"))
                {
                    let snap: serde_json::Value = serde_json::from_str(json).unwrap();
                    assert_eq!(snap["served_by"], "solo");
                    times.push(snap["at_millis"].as_i64().unwrap());
                }
            }
        }
    })
    .await
    .expect("two snapshots within 10 s");
    assert!(times[1] > times[0], "{times:?}");
    drop(body);
    silo.shutdown().await;
}
