//! The web server: the page and its assets, the JSON API under `/api/`,
//! and `/api/events`, a server-sent-events stream of snapshots. Every
//! route sits behind the access check; every error is JSON with an
//! `error` message (the HTTP server's own refusals too, rewritten by
//! [`crate::wire`]), and names the path as the client sent it.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, OriginalUri, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::json;
use tokio::sync::watch;

use crate::config::Access;
use crate::model::DashboardSnapshot;

type Snap = watch::Receiver<Option<Arc<DashboardSnapshot>>>;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) snap: Snap,
    pub(crate) access: Arc<Access>,
}

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/style.css");
const UPLOT_JS: &str = include_str!("../assets/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../assets/vendor/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("../assets/vendor/uPlot.LICENSE");

const ENDPOINTS: &[(&str, &str)] = &[
    ("/api/snapshot", "everything below in one document"),
    ("/api/overview", "cluster totals, silos and chart history"),
    (
        "/api/grain-types",
        "every grain type: activations per silo, calls, errors, methods",
    ),
    ("/api/grain-types/{name}", "one grain type"),
    (
        "/api/hot?limit=N",
        "hottest grains and slowest methods (N: 1..=100, default 10)",
    ),
    (
        "/api/silos",
        "every silo: status, activations by type, CPU, memory",
    ),
    ("/api/silos/{name}", "one silo"),
    (
        "/api/membership",
        "membership history: joined, suspected, dead",
    ),
    ("/api/reminders", "durable reminders"),
    ("/api/streams", "stream namespaces and partitions"),
    (
        "/api/transactions",
        "transactions: committed, aborted by reason, in doubt, lock waits",
    ),
    (
        "/api/events",
        "server-sent events: one snapshot per refresh",
    ),
];

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// The path as the client sent it, %-escapes and all (inside a nested
/// router, `req.uri()` has lost the `/api` prefix). Not the query: it may
/// hold the access token.
fn as_sent(uri: &Uri) -> &str {
    uri.path()
}

async fn not_found_in_api(OriginalUri(uri): OriginalUri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no API endpoint at {}; GET /api lists them", as_sent(&uri)),
    )
}

async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {}; the dashboard is read-only (GET)",
            as_sent(&uri)
        ),
    )
}

/// A path parameter (`{name}`), refused in JSON when it is not UTF-8
/// text once its %-escapes are decoded (axum's `Path` answers such a
/// path in plain text).
struct Name(String);

impl<S: Send + Sync> FromRequestParts<S> for Name {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(name)) => Ok(Name(name)),
            Err(rejection) => {
                let OriginalUri(uri) = OriginalUri::from_request_parts(parts, state)
                    .await
                    .unwrap_or_else(|e| match e {});
                let path = uri.path();
                Err(match &rejection {
                    PathRejection::FailedToDeserializePathParams(e)
                        if matches!(e.kind(), ErrorKind::InvalidUtf8InPathParam { .. }) =>
                    {
                        error(
                            StatusCode::BAD_REQUEST,
                            format!(
                                "the path {path} is not UTF-8 text once its %-escapes are decoded"
                            ),
                        )
                    }
                    other => error(
                        other.status(),
                        format!("cannot read the path {path}: {}", other.body_text()),
                    ),
                })
            }
        }
    }
}

pub(crate) fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/", get(api_index))
        .route("/snapshot", get(snapshot))
        .route("/overview", get(overview))
        .route("/grain-types", get(grain_types))
        .route("/grain-types/{name}", get(grain_type))
        .route("/hot", get(hot))
        .route("/silos", get(silos))
        .route("/silos/{name}", get(silo))
        .route("/membership", get(membership))
        .route("/reminders", get(reminders))
        .route("/streams", get(streams))
        .route("/transactions", get(transactions))
        .route("/events", get(events))
        .fallback(not_found_in_api)
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route("/style.css", get(|| async { asset("text/css", STYLE) }))
        .route(
            "/vendor/uPlot.iife.min.js",
            get(|| async { asset("text/javascript", UPLOT_JS) }),
        )
        .route(
            "/vendor/uPlot.min.css",
            get(|| async { asset("text/css", UPLOT_CSS) }),
        )
        .route(
            "/vendor/uPlot.LICENSE",
            get(|| async { asset("text/plain; charset=utf-8", UPLOT_LICENSE) }),
        )
        // The index with a trailing slash too (the nested `/` is `/api`
        // only).
        .route("/api/", get(api_index))
        .nest("/api", api)
        .fallback(|OriginalUri(uri): OriginalUri| async move {
            error(
                StatusCode::NOT_FOUND,
                format!("nothing at {}; the dashboard is at /", as_sent(&uri)),
            )
        })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), check_access))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Constant-time comparison, so that response times leak nothing about a
/// secret's prefix.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn query_token(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "token").then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

const COOKIE: &str = "grains_dashboard_token";

/// Hex, so that any token is a valid cookie value.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn cookie_token(req: &Request) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == COOKIE).then(|| unhex(v)).flatten()
        })
}

async fn check_access(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (ok, challenge) = match &*state.access {
        Access::Open => (true, ""),
        Access::Token(token) => {
            let from_query = query_token(req.uri().query());
            let given = auth
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
                .map(str::to_owned)
                .or_else(|| from_query.clone())
                .or_else(|| cookie_token(&req));
            if given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
                let mut resp = next.run(req).await;
                // The page's own assets and event stream then need no token
                // in their addresses.
                if from_query.is_some()
                    && let Ok(v) = HeaderValue::from_str(&format!(
                        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
                        hex(token.as_bytes())
                    ))
                {
                    resp.headers_mut().insert(header::SET_COOKIE, v);
                }
                return resp;
            }
            (false, "Bearer realm=\"grains dashboard\"")
        }
        Access::Basic { user, password } => {
            let given = auth
                .as_deref()
                .and_then(|a| a.strip_prefix("Basic "))
                .and_then(|b| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b.trim())
                        .ok()
                });
            let expected = format!("{user}:{password}");
            (
                given.is_some_and(|g| same(&g, expected.as_bytes())),
                "Basic realm=\"grains dashboard\", charset=\"UTF-8\"",
            )
        }
    };
    if ok {
        return next.run(req).await;
    }
    let message = match &*state.access {
        Access::Token(_) => {
            "this dashboard needs its access token: send `Authorization: Bearer <token>` or add `?token=<token>` to the address"
        }
        _ => "this dashboard needs a user name and password (HTTP basic auth)",
    };
    let mut resp = error(StatusCode::UNAUTHORIZED, message);
    if let Ok(v) = HeaderValue::from_str(challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

fn current(state: &AppState) -> Result<Arc<DashboardSnapshot>, Box<Response>> {
    state.snap.borrow().clone().ok_or_else(|| {
        Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the first figures are still being gathered; retry in a second",
        ))
    })
}

async fn api_index() -> Response {
    let list: Vec<_> = ENDPOINTS
        .iter()
        .map(|(p, what)| json!({ "path": p, "what": what }))
        .collect();
    axum::Json(json!({ "endpoints": list })).into_response()
}

async fn snapshot(State(s): State<AppState>) -> Response {
    match current(&s) {
        Ok(snap) => axum::Json(&*snap).into_response(),
        Err(e) => *e,
    }
}

async fn overview(State(s): State<AppState>) -> Response {
    match current(&s) {
        Ok(snap) => axum::Json(json!({
            "at_millis": snap.at_millis,
            "served_by": snap.served_by,
            "clustered": snap.clustered,
            "overview": snap.overview,
            "silos": snap.silos,
            "history": snap.history,
        }))
        .into_response(),
        Err(e) => *e,
    }
}

async fn grain_types(State(s): State<AppState>) -> Response {
    match current(&s) {
        Ok(snap) => axum::Json(&snap.grain_types).into_response(),
        Err(e) => *e,
    }
}

async fn grain_type(State(s): State<AppState>, Name(name): Name) -> Response {
    match current(&s) {
        Ok(snap) => match snap.grain_types.iter().find(|t| t.grain_type == name) {
            Some(t) => axum::Json(t).into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                format!(
                    "no grain type `{name}` on this cluster; known: {}",
                    snap.grain_types
                        .iter()
                        .map(|t| t.grain_type.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        },
        Err(e) => *e,
    }
}

async fn hot(
    State(s): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the query of /api/hot: {}", e.body_text()),
            );
        }
    };
    let mut seen = HashSet::new();
    for (k, _) in &q {
        if k != "limit" && k != "token" {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown query parameter `{k}`; /api/hot takes `limit`"),
            );
        }
        if !seen.insert(k) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("query parameter `{k}` is given more than once; give it once"),
            );
        }
    }
    let given = q.iter().find(|(k, _)| k == "limit").map(|(_, v)| v);
    let limit = match given.map(|l| l.parse::<usize>()) {
        None => 10,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "`limit` must be a whole number from 1 to 100, got `{}`",
                    given.map_or("", |v| v.as_str())
                ),
            );
        }
    };
    match current(&s) {
        Ok(snap) => axum::Json(json!({
            "hottest_grains": snap.hottest_grains.iter().take(limit).collect::<Vec<_>>(),
            "slowest_methods": snap.slowest_methods.iter().take(limit).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => *e,
    }
}

async fn silos(State(s): State<AppState>) -> Response {
    match current(&s) {
        Ok(snap) => axum::Json(&snap.silos).into_response(),
        Err(e) => *e,
    }
}

async fn silo(State(s): State<AppState>, Name(name): Name) -> Response {
    match current(&s) {
        Ok(snap) => {
            // Names repeat across restarts: the live one first.
            let mut matching: Vec<_> = snap.silos.iter().filter(|v| v.name == name).collect();
            matching.sort_by_key(|v| v.status != "active");
            match matching.first() {
                Some(v) => axum::Json(v).into_response(),
                None => error(
                    StatusCode::NOT_FOUND,
                    format!("no silo named `{name}`; GET /api/silos lists them"),
                ),
            }
        }
        Err(e) => *e,
    }
}

async fn membership(State(s): State<AppState>) -> Response {
    match current(&s) {
        Ok(snap) => axum::Json(&snap.membership_history).into_response(),
        Err(e) => *e,
    }
}

async fn reminders(State(s): State<AppState>) -> Response {
    match current(&s) {
        Ok(snap) => axum::Json(&snap.reminders).into_response(),
        Err(e) => *e,
    }
}

async fn streams(State(s): State<AppState>) -> Response {
    match current(&s) {
        Ok(snap) => axum::Json(&snap.streams).into_response(),
        Err(e) => *e,
    }
}

async fn transactions(State(s): State<AppState>) -> Response {
    match current(&s) {
        Ok(snap) => axum::Json(&snap.transactions).into_response(),
        Err(e) => *e,
    }
}

async fn events(
    State(s): State<AppState>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let mut rx = s.snap.clone();
    // The current snapshot at once (once there is one), then one per
    // change; the stream ends when the dashboard stops.
    rx.mark_changed();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        // Nothing is sent before the first snapshot exists.
        let snap = loop {
            rx.changed().await.ok()?;
            if let Some(s) = rx.borrow_and_update().clone() {
                break s;
            }
        };
        let data = serde_json::to_string(&*snap).unwrap_or_else(|_| "null".into());
        Some((Ok(Event::default().event("snapshot").data(data)), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_from_the_query() {
        assert_eq!(query_token(Some("a=1&token=x%2By")), Some("x+y".into()));
        assert_eq!(query_token(Some("token=abc")), Some("abc".into()));
        assert_eq!(query_token(Some("tokenx=abc")), None);
        assert_eq!(query_token(None), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(unhex(&hex("tök=;n".as_bytes())).as_deref(), Some("tök=;n"));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn comparison_needs_equal_bytes() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
