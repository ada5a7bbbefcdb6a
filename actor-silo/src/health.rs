//! `GET /livez` and `GET /readyz`, for process managers and load
//! balancers. Liveness: the process answers and has not been declared
//! dead (a silo declared dead must restart with a new generation).
//! Readiness: it serves and is in the active view, and is not leaving.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::run::Probe;

pub(crate) async fn serve(listener: TcpListener, probe: Probe) {
    let ready = probe.clone();
    let app = Router::new()
        .route(
            "/readyz",
            get(move || {
                let probe = ready.clone();
                async move {
                    match probe.ready() {
                        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
                        Err(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {why}\n"),
                        ),
                    }
                }
            }),
        )
        .route(
            "/livez",
            get(move || {
                let probe = probe.clone();
                async move {
                    match probe.alive() {
                        Ok(()) => (StatusCode::OK, "alive\n".to_owned()),
                        Err(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not alive: {why}\n"),
                        ),
                    }
                }
            }),
        );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the health endpoints stopped");
    }
}
