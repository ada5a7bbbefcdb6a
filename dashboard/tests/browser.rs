//! A real browser: headless Chromium (through chromedriver, spoken to over
//! the W3C WebDriver protocol) loads a silo's dashboard, sees the
//! activation count and calls/s change while the test drives grains, and
//! saves screenshots under `target/`.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (or
//! `CHROMIUM` / `CHROMEDRIVER` pointing at them). Without them the test
//! skips loudly, and fails under `CI=true`.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use common::*;
use dashboard::{Dashboard, DashboardConfig, SiloBuilderDashboardExt};
use serde_json::{Value, json};

use actor_core::prelude::*;

struct Driver {
    child: Child,
    addr: SocketAddr,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let r = request(self.addr, method, &path, &[], body.map(|b| b.to_string()))
            .await
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        assert_eq!(r.status, 200, "webdriver {method} {path}: {}", r.body);
        r.json()["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url }))).await;
    }

    async fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    async fn text(&self, id: &str) -> String {
        self.script(&format!(
            "const e = document.getElementById('{id}'); return e ? e.textContent : null;"
        ))
        .await
        .as_str()
        .unwrap_or("")
        .to_owned()
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.call("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

/// Starts chromedriver and a headless Chromium session, or says why not.
async fn start_browser() -> Result<Driver, String> {
    let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let browser = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    for p in [&driver, &browser] {
        if !std::path::Path::new(p).exists() {
            return Err(format!(
                "{p} is missing: install the Debian packages `chromium` and `chromium-driver`"
            ));
        }
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {driver}: {e}"))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut d = Driver {
        child,
        addr,
        session: String::new(),
    };
    let ready = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(r) = request(addr, "GET", "/status", &[], None).await
                && r.json()["value"]["ready"] == true
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    ready.map_err(|_| "chromedriver did not become ready within 20 s".to_owned())?;
    let caps = json!({ "capabilities": { "alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": browser,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,1000"]
        }
    }}});
    let r = request(addr, "POST", "/session", &[], Some(caps.to_string()))
        .await
        .map_err(|e| format!("new session: {e}"))?;
    if r.status != 200 {
        return Err(format!("chromedriver refused a session: {}", r.body));
    }
    d.session = r.json()["value"]["sessionId"]
        .as_str()
        .ok_or("no session id")?
        .to_owned();
    Ok(d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_activations_and_calls_changing() {
    let driver = match start_browser().await {
        Ok(d) => d,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and no browser: {why}")
        }
        Err(why) => {
            eprintln!("\n!!!!! SKIPPING the real-browser dashboard test: {why} !!!!!\n");
            return;
        }
    };
    let silo = Silo::builder()
        .name("browser-silo")
        .grain::<Probe>()
        .with_dashboard(
            DashboardConfig::default()
                .bind("127.0.0.1:0".parse().unwrap())
                .token("browser-test")
                .refresh(Duration::from_millis(250)),
        )
        .start()
        .await
        .unwrap();
    let url = Dashboard::of(&silo).unwrap().url();
    driver.goto(&url).await;

    // Before any call: the page is live and shows zero.
    eventually(
        "the page shows 0 activations",
        Duration::from_secs(20),
        || async { (driver.text("ov-activations").await == "0").then_some(()) },
    )
    .await;
    assert!(
        driver
            .text("status")
            .await
            .contains("served by browser-silo")
    );
    let calls_before: f64 = driver.text("ov-calls-per-sec").await.parse().unwrap();
    assert_eq!(calls_before, 0.0);

    // Drive 25 grains, and keep traffic going.
    for key in 0..25i64 {
        silo.get_grain::<Probe>(key).ask(Hit).await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let silo = silo.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                silo.get_grain::<Probe>(i % 25).ask(Hit).await.unwrap();
                if i % 10 == 0 {
                    let _ = silo.get_grain::<Probe>(i % 25).ask(Fail).await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                i += 1;
            }
        })
    };
    let rate = eventually(
        "the page shows 25 activations and calls/s above 0",
        Duration::from_secs(20),
        || async {
            let acts = driver.text("ov-activations").await;
            let rate: f64 = driver.text("ov-calls-per-sec").await.parse().unwrap_or(0.0);
            (acts == "25" && rate > 0.0).then_some(rate)
        },
    )
    .await;
    eprintln!("the page shows 25 activations and {rate} calls/s");
    // Let the charts gather a few points, then look at the pages.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shot = driver.screenshot("overview.png").await;
    eprintln!("screenshot: {}", shot.display());
    let chart_canvases = driver
        .script("return document.querySelectorAll('#page-overview canvas').length;")
        .await;
    assert!(
        chart_canvases.as_u64().unwrap() >= 3,
        "uPlot drew the charts"
    );
    driver
        .script("location.hash = '#grains'; return null;")
        .await;
    eventually(
        "the grain types page lists test.probe",
        Duration::from_secs(10),
        || async {
            driver
                .script("return document.querySelector('#grain-table tbody').textContent;")
                .await
                .as_str()
                .unwrap_or("")
                .contains("test.probe")
                .then_some(())
        },
    )
    .await;
    driver.screenshot("grain-types.png").await;
    driver
        .script("location.hash = '#silos'; return null;")
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    driver.screenshot("silos.png").await;

    // Traffic stops: calls/s falls back to zero.
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    driver
        .script("location.hash = '#overview'; return null;")
        .await;
    eventually("calls/s back to 0", Duration::from_secs(20), || async {
        (driver.text("ov-calls-per-sec").await == "0.0").then_some(())
    })
    .await;
    driver.call("DELETE", "", None).await;
    silo.shutdown().await;
}
