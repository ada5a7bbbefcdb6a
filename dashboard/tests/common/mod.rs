//! Shared helpers of the dashboard tests: a test grain, an HTTP/1 client
//! (hyper) for the JSON API, and bounded polling.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actor_core::prelude::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};

/// A grain with a fast method, a failing one and a slow one.
#[derive(Default)]
pub struct Probe {
    n: u64,
}
impl Grain for Probe {
    const TYPE_NAME: &'static str = "test.probe";
}

impl GrainMethods for Probe {
    fn register(m: &mut Methods<Self>) {
        m.add::<Hit, _>();
        m.add::<Fail, _>();
        m.add::<Slow, _>();
    }
}

/// Counts.
#[derive(Serialize, Deserialize)]
pub struct Hit;
impl Message for Hit {
    type Reply = u64;
    const NAME: &'static str = "hit";
}
impl Handler<Hit> for Probe {
    async fn handle(&mut self, _: Hit, _: &GrainContext<Self>) -> u64 {
        self.n += 1;
        self.n
    }
}

/// Always answers an error (the message classes it as one).
#[derive(Serialize, Deserialize)]
pub struct Fail;
impl Message for Fail {
    type Reply = Result<(), String>;
    const NAME: &'static str = "fail";
    fn is_error(reply: &Self::Reply) -> bool {
        reply.is_err()
    }
}
impl Handler<Fail> for Probe {
    async fn handle(&mut self, _: Fail, _: &GrainContext<Self>) -> Result<(), String> {
        Err("refused".into())
    }
}

/// Sleeps 20 ms.
#[derive(Serialize, Deserialize)]
pub struct Slow;
impl Message for Slow {
    type Reply = ();
    const NAME: &'static str = "slow";
}
impl Handler<Slow> for Probe {
    async fn handle(&mut self, _: Slow, _: &GrainContext<Self>) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends one request on a fresh connection (bounded by 10 s).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> std::io::Result<Resp> {
    let fut = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(std::io::Error::other)?;
        let resp = send
            .send_request(req)
            .await
            .map_err(std::io::Error::other)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        Ok(Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| std::io::Error::other("request timed out"))?
}

/// `GET path` without credentials.
pub async fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], None)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Polls `probe` until it returns `Some`, failing after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
