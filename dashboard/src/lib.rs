//! # dashboard: a live web dashboard served by a silo
//!
//! In the spirit of OrleansDashboard: one line on the silo builder serves a
//! page at `http://127.0.0.1:8080` (by default) that shows, updated about
//! once a second over server-sent events:
//!
//! - **overview**: silos and their status, total activations, calls/s,
//!   error rate, mean and p99 latency, and charts over the last minutes;
//! - **grain types**: activations per silo, calls/s, errors, latency per
//!   method;
//! - **hottest grains and slowest methods**;
//! - **silos**: each silo's activations by type, CPU and memory of its
//!   process, and the membership history (joined, suspected, dead);
//! - **reminders** (feature `reminders`, on by default): the durable
//!   reminders of actor-persistence, when the silo has a reminder service;
//! - **streams**: actor-streams' figures per namespace (published,
//!   delivered, redelivered, dead-lettered, in flight) and per partition
//!   (which silo pulls it, items held, consumer lag), when silos have
//!   streams;
//! - **transactions**: actor-tx's commits, aborts by reason and in-doubt
//!   outcomes per second, and the mean lock wait, over the cluster and per
//!   silo, when silos host transactional state.
//!
//! A JSON API under `/api/` serves the same numbers (`GET /api` lists the
//! endpoints; the figures are described on [`DashboardSnapshot`]). Every
//! error, from the API, the page's routes or the HTTP server itself (a
//! malformed request, a URI too long, headers too large), is a JSON object
//! `{"error": "<message>"}` with the error's status. `/api/hot` refuses
//! a query parameter it does not know or one given twice.
//!
//! **Cluster-wide.** On a silo started with
//! [`actor_cluster::ClusterSilo`], figures are gathered from every member:
//! the membership table gives the silos and their status, and each live
//! peer is asked for its [`SiloReport`](actor_cluster::SiloReport) over the
//! cluster's `SiloStats` gRPC service. A peer that does not answer within
//! the peer timeout is shown unreachable. Hottest grains come from silos
//! that run the dashboard too (it counts calls per grain with an incoming
//! call filter); other figures come from every silo.
//!
//! **Access.** Loopback addresses may be served open; any other address
//! needs [`DashboardConfig::token`] (sent as `Authorization: Bearer` or
//! `?token=`) or [`DashboardConfig::basic_auth`], or the silo refuses to
//! start.
//! [`DashboardConfig::tls`] serves HTTPS instead (a [`DashboardTls`] from
//! PEM files or certificates in memory; rustls on ring); the access rule
//! stays as set. Connections on which nothing moves for the idle timeout
//! (30 s, [`DashboardConfig::idle_timeout`]) are closed; a page's event
//! stream is not idle. `docs/security.md` says what this protects.
//!
//! Charts are drawn by [uPlot](https://github.com/leeoniya/uPlot) (MIT),
//! served from the crate: the page needs no internet.
//!
//! ```no_run
//! use actor_core::prelude::*;
//! use dashboard::{Dashboard, DashboardConfig, SiloBuilderDashboardExt};
//!
//! # #[derive(Default)] struct Counter;
//! # impl Grain for Counter { const TYPE_NAME: &'static str = "counter"; }
//! # impl GrainMethods for Counter { fn register(_: &mut Methods<Self>) {} }
//! # #[tokio::main] async fn main() -> actor_core::Result<()> {
//! let silo = Silo::builder()
//!     .grain::<Counter>()
//!     .with_dashboard(DashboardConfig::default()) // http://127.0.0.1:8080
//!     .start()
//!     .await?;
//! println!("dashboard at {}", Dashboard::of(&silo).unwrap().url());
//! # silo.shutdown().await; Ok(()) }
//! ```

mod collector;
mod config;
mod error;
mod hot;
mod model;
mod server;
mod streams;
mod tls;
mod transactions;
mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use actor_cluster::StatsExtras;
use actor_core::{Silo, SiloBuilder};

pub use config::{Access, DEFAULT_ADDR, DashboardConfig};
pub use error::{Error, Result};
pub use model::{
    DashboardSnapshot, GrainTypeView, HistoryPoint, HotGrain, MembershipEvent, MethodView,
    Overview, ReminderView, RemindersView, SiloView,
};
pub use streams::{StreamNamespaceView, StreamPartitionView, StreamsView};
pub use tls::DashboardTls;
pub use transactions::{
    AbortReasonView, TransactionFigures, TransactionSiloView, TransactionsView,
};

/// The running dashboard of a silo: where it listens. A silo extension;
/// read it with [`Dashboard::of`].
#[derive(Debug, Default)]
pub struct Dashboard {
    addr: OnceLock<SocketAddr>,
    access: OnceLock<Access>,
    https: OnceLock<bool>,
}

impl Dashboard {
    /// The dashboard of `silo`, if it was built
    /// [`with_dashboard`](SiloBuilderDashboardExt::with_dashboard).
    pub fn of(silo: &Silo) -> Option<&Dashboard> {
        silo.extension::<Dashboard>()
    }

    /// The address it listens on (the real port when configured with 0).
    pub fn local_addr(&self) -> SocketAddr {
        *self
            .addr
            .get()
            .expect("the dashboard's address is set when its silo starts")
    }

    /// The page's address, with the access token if there is one (what to
    /// print for a user to click).
    pub fn url(&self) -> String {
        let scheme = if self.https.get() == Some(&true) {
            "https"
        } else {
            "http"
        };
        match self.access.get() {
            Some(Access::Token(t)) => format!("{scheme}://{}/?token={t}", self.local_addr()),
            _ => format!("{scheme}://{}/", self.local_addr()),
        }
    }
}

/// Adds the dashboard to a silo builder.
pub trait SiloBuilderDashboardExt {
    /// Serves the dashboard of this silo (and of its cluster, if it is a
    /// member) as configured, from the moment the silo starts until it
    /// stops. Starting the silo fails with a configuration error if the
    /// configuration is unsafe (see [`DashboardConfig::validate`]) or the
    /// address cannot be bound.
    fn with_dashboard(self, config: DashboardConfig) -> Self;
}

impl SiloBuilderDashboardExt for SiloBuilder {
    fn with_dashboard(mut self, config: DashboardConfig) -> Self {
        let hot = Arc::new(hot::HotGrains::default());
        {
            let hot = hot.clone();
            self.extension_mut::<StatsExtras>()
                .add(collector::HOT_KEY, move || {
                    serde_json::to_value(hot.top()).unwrap_or_default()
                });
        }
        self.incoming_filter(hot::HotFilter(hot.clone()))
            .extension(Dashboard::default())
            .on_start(move |silo| start(silo, hot, config).map_err(Into::into))
    }
}

fn start(silo: &Silo, hot: Arc<hot::HotGrains>, config: DashboardConfig) -> Result<()> {
    config.validate()?;
    let std_listener = std::net::TcpListener::bind(config.addr).map_err(|source| Error::Bind {
        addr: config.addr,
        source,
    })?;
    let bind_err = |source| Error::Bind {
        addr: config.addr,
        source,
    };
    std_listener.set_nonblocking(true).map_err(bind_err)?;
    let listener = tokio::net::TcpListener::from_std(std_listener).map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    if let Some(d) = Dashboard::of(silo) {
        let _ = d.addr.set(addr);
        let _ = d.access.set(config.access.clone());
        let _ = d.https.set(config.is_tls());
    }
    let (tx, rx) = tokio::sync::watch::channel(None);
    let state = server::AppState {
        snap: rx.clone(),
        access: Arc::new(config.access.clone()),
    };
    let app = server::router(state);
    let listener = match &config.tls {
        Some(tls) => wire::Listener::tls(listener, tls, config.idle_timeout).map_err(bind_err)?,
        None => wire::Listener::plain(listener, config.idle_timeout),
    };
    let collector = collector::Collector::new(silo.clone(), hot, config.clone());
    tokio::spawn(collector::run(collector, tx, config.refresh));
    let mut closed = rx;
    tokio::spawn(async move {
        let stop = async move {
            // The collector drops its sender when the silo stops.
            while closed.changed().await.is_ok() {}
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "the dashboard server stopped");
        }
    });
    tracing::info!(%addr, tls = config.is_tls(), "dashboard serving");
    Ok(())
}
