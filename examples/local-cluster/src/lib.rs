//! A local cluster on one machine: three silo processes that share a
//! SQLite membership table, each serving the dashboard of the whole
//! cluster, with a little steady traffic so there is something to watch.
//! The binary is both the launcher (the default) and one silo
//! (`--silo NAME`); see `main.rs`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actor_cluster::{ClusterConfig, ClusterSilo, MembershipTable, SqlMembership};
use actor_core::prelude::*;
use anyhow::Context;
use dashboard::{DashboardConfig, SiloBuilderDashboardExt};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// The cluster id in the membership table.
pub const CLUSTER_ID: &str = "local-cluster";
/// The first word of the line a silo prints once it serves:
/// `READY <name> <pid> <silo endpoint> <dashboard url>`.
pub const READY: &str = "READY";
/// How many silos the launcher starts.
pub const SILOS: usize = 3;

/// Counts views of one page.
#[derive(Default)]
pub struct Page {
    views: u64,
}
impl Grain for Page {
    const TYPE_NAME: &'static str = "local.page";
}

impl GrainMethods for Page {
    fn register(m: &mut Methods<Self>) {
        m.add::<View, _>();
    }
}

/// Records a view; answers the total.
#[derive(Serialize, Deserialize)]
pub struct View;
impl Message for View {
    type Reply = u64;
    const NAME: &'static str = "view";
}
impl Handler<View> for Page {
    async fn handle(&mut self, _: View, _: &GrainContext<Self>) -> u64 {
        self.views += 1;
        self.views
    }
}

/// An order desk: some orders are slow, some are refused.
#[derive(Default)]
pub struct Orders {
    placed: u64,
}
impl Grain for Orders {
    const TYPE_NAME: &'static str = "local.orders";
}

impl GrainMethods for Orders {
    fn register(m: &mut Methods<Self>) {
        m.add::<Place, _>();
    }
}

/// Places an order of `n` items.
#[derive(Serialize, Deserialize)]
pub struct Place(pub u32);
impl Message for Place {
    type Reply = Result<u64, String>;
    const NAME: &'static str = "place";
    fn is_error(reply: &Self::Reply) -> bool {
        reply.is_err()
    }
}
impl Handler<Place> for Orders {
    async fn handle(&mut self, Place(n): Place, _: &GrainContext<Self>) -> Result<u64, String> {
        if n == 0 {
            return Err("an order needs at least one item".into());
        }
        if n % 5 == 0 {
            // A large order checks stock somewhere slow.
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        self.placed += 1;
        Ok(self.placed)
    }
}

/// Opens the shared SQLite membership table at `path`.
pub async fn sqlite_table(path: &Path) -> anyhow::Result<Arc<dyn MembershipTable>> {
    let url = format!("sqlite://{}", path.display());
    let table = SqlMembership::connect(&url, CLUSTER_ID, Duration::from_secs(5))
        .await
        .with_context(|| format!("opening the membership table {}", path.display()))?;
    Ok(Arc::new(table))
}

/// Starts silo `name` as a member of the cluster in `table`, serving its
/// dashboard on `dashboard_addr`.
pub async fn start_silo(
    name: &str,
    table: Arc<dyn MembershipTable>,
    dashboard_addr: SocketAddr,
    config: ClusterConfig,
) -> anyhow::Result<ClusterSilo> {
    let builder = Silo::builder()
        .name(name)
        .grain::<Page>()
        .grain::<Orders>()
        .with_dashboard(DashboardConfig::default().bind(dashboard_addr));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let member = ClusterSilo::start(builder, listener, table, config)
        .await
        .with_context(|| format!("starting silo {name}"))?;
    Ok(member)
}

/// How many page grains the traffic views.
pub const PAGES: u64 = 24;
/// How many order desk grains the traffic places orders with.
pub const DESKS: u64 = 6;

/// One burst of traffic through `silo` to grains all over the cluster:
/// page views, orders (one in five slow, one in ten refused). Every two
/// rounds reach all [`PAGES`] pages and [`DESKS`] desks; enough grains that
/// hash placement puts some on every one of the [`SILOS`] silos (all but
/// certainly), provided the traffic starts once they are all active (the
/// silo binary waits for that).
pub async fn traffic_round(silo: &Silo, round: u64) {
    let mut failed = None;
    for i in 0..20u64 {
        let page = silo.get_grain::<Page>(format!("page-{}", (round * 20 + i) % PAGES));
        if let Err(e) = page.ask(View).await {
            failed = Some(e); // while a dead silo's grains move, say
        }
    }
    if let Some(e) = failed {
        eprintln!("{}: page views failed this round: {e}", silo.name());
    }
    for i in 0..5u64 {
        let desk = silo.get_grain::<Orders>(format!("desk-{}", (round * 5 + i) % DESKS));
        let items = ((round + i) % 10) as u32;
        let _ = desk.ask(Place(items)).await;
    }
}
