//! The edges of the JSON API: `/api/` is the index as `/api` is, every
//! error (the server's own ones included: a malformed request, a URI too
//! long, headers too large) is a JSON `{"error": ...}` body, error
//! messages name the path as sent, and a repeated query parameter is
//! refused. Requests are written by hand on TCP so that anything can be
//! sent, including what an HTTP client library would refuse to send.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use actor_core::prelude::*;
use common::*;
use dashboard::{Dashboard, DashboardConfig, SiloBuilderDashboardExt};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn silo() -> (Silo, SocketAddr) {
    let silo = Silo::builder()
        .name("edges")
        .grain::<Probe>()
        .with_dashboard(
            DashboardConfig::default()
                .bind("127.0.0.1:0".parse().unwrap())
                .refresh(Duration::from_millis(100)),
        )
        .start()
        .await
        .expect("silo with dashboard starts");
    let addr = Dashboard::of(&silo).unwrap().local_addr();
    // The first snapshot, so that no answer is "still gathering".
    eventually("first snapshot", Duration::from_secs(10), || async {
        (get(addr, "/api/snapshot").await.status == 200).then_some(())
    })
    .await;
    (silo, addr)
}

/// A response read off the wire.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The error message, checking the body is JSON of the API's error
    /// shape: an object with one string field, `error`.
    fn error(&self) -> String {
        self.error_shape().unwrap_or_else(|e| panic!("{e}"))
    }

    fn error_shape(&self) -> Result<String, String> {
        let text = String::from_utf8_lossy(&self.body);
        let fail = |what: &str| format!("{what}:\n{}\n\n{text}", self.head);
        if !self
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
        {
            return Err(fail("an error whose type is not JSON"));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&self.body).map_err(|e| fail(&format!("not JSON ({e})")))?;
        match v.as_object().map(|o| (o.len(), o.get("error"))) {
            Some((1, Some(serde_json::Value::String(e)))) => Ok(e.clone()),
            _ => Err(fail("not an object of one string, `error`")),
        }
    }
}

/// Writes `head` (a request line and headers, without the blank line),
/// then reads one response: its head and, unless it is the event stream,
/// its whole body (by `content-length`, else up to the end).
async fn raw(addr: SocketAddr, head: &[u8]) -> Raw {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut req = head.to_vec();
        req.extend_from_slice(b"\r\nhost: x\r\nconnection: close\r\n\r\n");
        // The server may answer and close before it has read everything.
        let _ = s.write_all(&req).await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("a status line: {head}"));
                let r = Raw {
                    status,
                    head,
                    body: buf[end + 4..].to_vec(),
                };
                let len = r
                    .header("content-length")
                    .map(|l| l.parse::<usize>().unwrap());
                let stream = r.header("content-type") == Some("text/event-stream");
                if stream || len.is_some_and(|l| r.body.len() >= l) {
                    return r;
                }
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("a whole response: {:?}", String::from_utf8_lossy(&buf)));
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        Raw {
            status: head.split(' ').nth(1).unwrap().parse().unwrap(),
            head,
            body: buf[end + 4..].to_vec(),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("an answer within 10 s")
}

async fn raw_get(addr: SocketAddr, target: &str) -> Raw {
    raw(addr, format!("GET {target} HTTP/1.1").as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_answers_with_and_without_a_trailing_slash() {
    let (silo, addr) = silo().await;
    for path in ["/api", "/api/"] {
        let r = get(addr, path).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        assert!(
            r.json()["endpoints"]
                .as_array()
                .is_some_and(|e| !e.is_empty())
        );
    }
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_path_as_it_was_sent() {
    let (silo, addr) = silo().await;
    let r = raw_get(addr, "/api/nope/deeper").await;
    assert_eq!(r.status, 404);
    assert!(r.error().contains("at /api/nope/deeper;"), "{}", r.error());
    let r = raw(addr, b"POST /api/snapshot HTTP/1.1\r\ncontent-length: 0").await;
    assert_eq!(r.status, 405);
    assert!(r.error().contains("on /api/snapshot;"), "{}", r.error());
    assert_eq!(r.header("allow"), Some("GET,HEAD"));
    // Escapes as sent, not decoded.
    let r = raw_get(addr, "/api/no%20such").await;
    assert_eq!(r.status, 404);
    assert!(r.error().contains("/api/no%20such"), "{}", r.error());
    // The page's routes refuse other methods in JSON too.
    let r = raw(addr, b"DELETE /app.js HTTP/1.1").await;
    assert_eq!(r.status, 405);
    assert!(r.error().contains("on /app.js"), "{}", r.error());
    assert_eq!(r.header("allow"), Some("GET,HEAD"));
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escape_that_is_not_utf8_gets_a_json_400() {
    let (silo, addr) = silo().await;
    for path in ["/api/grain-types/%FF", "/api/silos/%C3%28"] {
        let r = raw_get(addr, path).await;
        assert_eq!(r.status, 400, "{path}: {r:?}");
        let e = r.error();
        assert!(e.contains("UTF-8") && e.contains(path), "{path}: {e}");
    }
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_http_server_refuses_is_answered_in_json() {
    let (silo, addr) = silo().await;
    // Longer than any URI the HTTP layer parses (64 KiB).
    let long = format!("/api/{}", "a".repeat(70_000));
    let r = raw_get(addr, &long).await;
    assert_eq!(r.status, 414);
    assert!(r.error().contains("too long"), "{}", r.error());
    // A request line that is not HTTP.
    let r = raw(addr, b"GET /api/a b HTTP/1.1").await;
    assert_eq!(r.status, 400);
    assert!(!r.error().is_empty());
    // Headers beyond the server's buffer.
    let big = format!("GET /api HTTP/1.1\r\nx-big: {}", "b".repeat(600_000));
    let r = raw(addr, big.as_bytes()).await;
    assert_eq!(r.status, 431);
    assert!(r.error().contains("too large"), "{}", r.error());
    // The server still answers.
    assert_eq!(raw_get(addr, "/api").await.status, 200);
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_query_parameter_is_refused() {
    let (silo, addr) = silo().await;
    let r = raw_get(addr, "/api/hot?limit=1&limit=2").await;
    assert_eq!(r.status, 400);
    let e = r.error();
    assert!(e.contains("`limit`") && e.contains("once"), "{e}");
    // Once is fine.
    assert_eq!(raw_get(addr, "/api/hot?limit=2").await.status, 200);
    silo.shutdown().await;
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "api",
            "hot",
            "grain-types",
            "test.probe",
            "silos",
            "edges",
            "snapshot",
            "overview",
            "membership",
            "reminders",
            "events",
            "app.js",
            "",
        ])
        .prop_map(str::to_owned),
        // Unreserved characters and escapes, any bytes.
        "([a-zA-Z0-9._~!$'()*+,;=:@-]|%[0-9A-Fa-f]{2}){1,8}",
        // Any byte a client might put there, valid or not.
        prop::collection::vec(0x21u8..=0xff, 1..4)
            .prop_map(|b| b.iter().map(|&b| b as char).collect()),
    ]
}

fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        prop::sample::select(vec!["limit", "token", "top"]).prop_map(str::to_owned),
        "([a-z]|%[0-9A-Fa-f]{2}){0,4}",
    ];
    let value = "([0-9a-z]|%[0-9A-Fa-f]{2}|[+&=]){0,6}";
    prop::collection::vec((key, prop::option::of(value)), 0..4).prop_map(|kvs| {
        kvs.into_iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k,
            })
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn with_query(mut t: String, q: Option<String>) -> String {
    if let Some(q) = q {
        t.push('?');
        t.push_str(&q);
    }
    t
}

fn target() -> impl Strategy<Value = String> {
    let known = (
        prop::sample::select(vec![
            "/",
            "/app.js",
            "/api",
            "/api/",
            "/api/hot",
            "/api/hot",
            "/api/hot",
            "/api/grain-types/",
            "/api/grain-types/",
            "/api/silos/",
            "/api/silos/",
            "/api/snapshot",
            "/api/events",
        ]),
        prop::option::weighted(0.4, segment()),
        prop::option::weighted(0.7, query()),
    )
        .prop_map(|(base, seg, q)| {
            let mut t = base.to_owned();
            if let Some(seg) = seg {
                if !t.ends_with('/') {
                    t.push('/');
                }
                t.push_str(&seg);
            }
            with_query(t, q)
        });
    let any = (
        prop::collection::vec(segment(), 0..4),
        any::<bool>(),
        prop::option::of(query()),
    )
        .prop_map(|(segs, under_api, q)| {
            let mut t = if under_api {
                "/api".to_owned()
            } else {
                String::new()
            };
            for s in segs {
                t.push('/');
                t.push_str(&s);
            }
            if t.is_empty() {
                t.push('/');
            }
            with_query(t, q)
        });
    prop_oneof![known, any]
}

#[test]
fn no_request_gets_an_error_that_is_not_json() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (silo, addr) = rt.block_on(silo());
    let method = prop::sample::select(vec![
        "GET", "GET", "GET", "POST", "PUT", "DELETE", "OPTIONS",
    ]);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 500,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&(method, target()), |(method, target)| {
            let mut head = format!("{method} ").into_bytes();
            // `target` holds chars up to U+00FF: send each as one byte.
            head.extend(target.chars().map(|c| c as u32 as u8));
            head.extend_from_slice(b" HTTP/1.1");
            if method != "GET" {
                head.extend_from_slice(b"\r\ncontent-length: 0");
            }
            let r = rt.block_on(raw(addr, &head));
            prop_assert!(r.status < 500, "{method} {target}: {r:?}");
            if std::env::var_os("EDGES_TRACE").is_some() {
                eprintln!("{} {method} {target:?}", r.status);
            }
            if r.status >= 400 {
                let shape = r.error_shape();
                prop_assert!(shape.is_ok(), "{method} {target:?}: {}", shape.unwrap_err());
            }
            Ok(())
        })
        .unwrap();
    rt.block_on(silo.shutdown());
}
