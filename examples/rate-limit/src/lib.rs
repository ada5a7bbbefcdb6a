//! Course exercise 18: a rate-limited HTTP front backed by grains.
//!
//! Each client (the `x-client-id` header, or the peer's IP address
//! without one) has a [`RateLimiter`] grain that counts its requests in
//! fixed windows of [`WINDOW`]: at most [`LIMIT`] requests per window; past
//! that the front answers `429 Too Many Requests` with a `Retry-After`
//! header (whole seconds until the window ends). The window starts at the
//! client's first request after the previous one ended.
//!
//! The count lives in the grain, and the grain lives on exactly one silo
//! of the cluster at a time, so the limit holds for a client whichever
//! front (and silo) its requests reach. A limiter in each front's process
//! (tower_governor and the like) would let every front allow the full
//! limit: with three fronts behind a load balancer, three times the limit.
//!
//! Time comes from a [`Clock`] the front owns and passes to the grain with
//! each request, so that tests move it by hand instead of sleeping.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actor_core::prelude::*;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// Requests one client may make per window.
pub const LIMIT: u32 = 100;
/// The length of a window.
pub const WINDOW: Duration = Duration::from_secs(5);

/// Milliseconds since some fixed start: the system clock, or a manual one
/// for tests.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The system clock (milliseconds since the Unix epoch).
    pub fn system() -> Self {
        Clock(Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        }))
    }

    /// A clock that reads `now` and moves only when it is changed.
    pub fn manual(now: Arc<AtomicU64>) -> Self {
        Clock(Arc::new(move || now.load(Ordering::SeqCst)))
    }

    /// The time now, in milliseconds.
    pub fn now_millis(&self) -> u64 {
        (self.0)()
    }
}

/// What the limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Let it through; `remaining` more are allowed in this window.
    Allowed {
        /// Requests left in the window.
        remaining: u32,
    },
    /// Refuse it; the window ends in `retry_after_millis`.
    Limited {
        /// Milliseconds until the window ends.
        retry_after_millis: u64,
    },
}

/// One client's fixed-window counter.
#[derive(Debug, Default)]
pub struct RateLimiter {
    /// When the current window started (ms), if there is one.
    window_start: Option<u64>,
    /// Requests allowed in the current window.
    count: u32,
}

impl Grain for RateLimiter {
    const TYPE_NAME: &'static str = "rate-limit.client";
}

#[grain_methods]
impl RateLimiter {
    /// Counts a request at `now_millis` (the front's clock) and decides.
    pub async fn hit(&mut self, now_millis: u64) -> Decision {
        let window = WINDOW.as_millis() as u64;
        let start = match self.window_start {
            // A clock that went back (another front's) stays in the window.
            Some(start) if now_millis < start.saturating_add(window) => start,
            _ => {
                self.window_start = Some(now_millis);
                self.count = 0;
                now_millis
            }
        };
        if self.count < LIMIT {
            self.count += 1;
            Decision::Allowed {
                remaining: LIMIT - self.count,
            }
        } else {
            Decision::Limited {
                retry_after_millis: (start + window).saturating_sub(now_millis),
            }
        }
    }
}

/// Where the front finds a client's limiter: a silo it embeds, or a
/// cluster client.
pub type Limiters = Arc<dyn Fn(&str) -> GrainRef<RateLimiter> + Send + Sync>;

#[derive(Clone)]
struct Front {
    limiters: Limiters,
    clock: Clock,
}

/// The front: `GET /work` is the rate-limited resource, answering 200 with
/// `x-ratelimit-remaining`, or 429 with `retry-after`; a failed limiter
/// call answers 503 (the request is not let through unchecked).
pub fn app(limiters: Limiters, clock: Clock) -> Router {
    Router::new()
        .route("/work", get(work))
        .with_state(Front { limiters, clock })
}

async fn work(
    State(front): State<Front>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let client = match headers.get("x-client-id").and_then(|v| v.to_str().ok()) {
        Some(id) if !id.is_empty() && id.len() <= 128 => id.to_owned(),
        Some(_) => {
            return (
                StatusCode::BAD_REQUEST,
                "x-client-id must be 1 to 128 visible ASCII characters",
            )
                .into_response();
        }
        None => peer.ip().to_string(),
    };
    let limiter = (front.limiters)(&client);
    match limiter.hit(front.clock.now_millis()).await {
        Ok(Decision::Allowed { remaining }) => {
            let mut response = (StatusCode::OK, "done\n").into_response();
            response
                .headers_mut()
                .insert("x-ratelimit-remaining", HeaderValue::from(remaining));
            response
        }
        Ok(Decision::Limited { retry_after_millis }) => {
            // Whole seconds, rounded up: a client that waits that long
            // finds a new window.
            let secs = retry_after_millis.div_ceil(1000).max(1);
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                format!("at most {LIMIT} requests per {WINDOW:?}; retry in {secs} s\n"),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            response
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the rate limiter is unavailable: {e}\n"),
        )
            .into_response(),
    }
}

/// Serves `app` on `listener` (with peer addresses) until the task is
/// aborted.
pub fn serve(app: Router, listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    })
}

/// The limiters of a silo the front embeds.
pub fn limiters_of(silo: Silo) -> Limiters {
    Arc::new(move |client: &str| silo.get_grain::<RateLimiter>(client))
}

/// The outcome of a bounded burst of requests: the status of each, in
/// order, and the `Retry-After` of each 429.
#[derive(Debug, Default)]
pub struct Burst {
    /// Status codes, in the order the requests were sent.
    pub statuses: Vec<u16>,
    /// `Retry-After` seconds of the 429s, in order.
    pub retry_after: Vec<u64>,
}

impl Burst {
    /// How many answers had `status`.
    pub fn count(&self, status: u16) -> usize {
        self.statuses.iter().filter(|s| **s == status).count()
    }
}

/// The load generator: `requests` requests one after the other as
/// `client`, the i-th to `fronts[i % fronts.len()]` (so a burst spreads
/// over every front), each bounded by a 10 s timeout.
pub async fn burst(
    http: &reqwest::Client,
    fronts: &[SocketAddr],
    client: &str,
    requests: usize,
) -> anyhow::Result<Burst> {
    let mut out = Burst::default();
    for i in 0..requests {
        let front = fronts[i % fronts.len()];
        let response = http
            .get(format!("http://{front}/work"))
            .header("x-client-id", client)
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        let status = response.status().as_u16();
        if status == 429 {
            let secs = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("a 429 without a Retry-After"))?;
            out.retry_after.push(secs);
        }
        out.statuses.push(status);
    }
    Ok(out)
}
