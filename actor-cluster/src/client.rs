//! The external cluster client: calls grains from outside the cluster (an
//! axum front, a CLI) with the same typed references, through any silo
//! acting as gateway.
//!
//! The client is a silo that hosts no grains and whose router sends every
//! call to a gateway; the gateway passes it to the grain's owner. The
//! client refreshes its gateway list from the cluster and fails over to
//! another gateway when its gateway cannot be reached.

use std::sync::Arc;
use std::time::Duration;

use actor_core::{EncodedCall, Grain, GrainId, GrainKey, GrainRef, Router, Silo};
use dashmap::DashMap;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::link::{DEFAULT_MAX_FRAME, Link, LinkOptions, fetch_gateways};
use crate::transport::Connector;

/// A connection to a cluster from outside it.
pub struct ClusterClient {
    silo: Silo,
    router: Arc<ClientRouter>,
    refresher: JoinHandle<()>,
}

impl std::fmt::Debug for ClusterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClient")
            .field("gateways", &self.gateways())
            .finish_non_exhaustive()
    }
}

impl ClusterClient {
    /// Connects through the first of `gateways` that answers, learns the
    /// others from it, and refreshes the list every `refresh`. A cluster
    /// that requires TLS gets an error that says so (use
    /// [`connect_with_tls`](ClusterClient::connect_with_tls)).
    pub async fn connect(gateways: Vec<String>, refresh: Duration) -> Result<Self> {
        match ClusterClient::connect_via(crate::transport::tcp(), gateways.clone(), refresh).await {
            Err(e) => Err(crate::tls::explain_plain(&gateways, Duration::from_secs(2))
                .await
                .unwrap_or(e)),
            ok => ok,
        }
    }

    /// Like [`connect`](ClusterClient::connect), under mutual TLS: the
    /// client presents `tls`'s certificate and checks each gateway's
    /// against the cluster's CA and server name. The silos must accept
    /// the client's certificate (a name given to
    /// [`TlsConfig::accept_peer_name`](crate::TlsConfig::accept_peer_name),
    /// or no names at all).
    pub async fn connect_with_tls(
        gateways: Vec<String>,
        refresh: Duration,
        tls: &crate::TlsConfig,
    ) -> Result<Self> {
        let connector = tls.connector(crate::transport::tcp())?;
        match ClusterClient::connect_via(connector.clone(), gateways.clone(), refresh).await {
            Err(e) => {
                let timeout = Duration::from_secs(2);
                Err(crate::tls::explain_refusal(&connector, &gateways, timeout)
                    .await
                    .unwrap_or(e))
            }
            ok => ok,
        }
    }

    /// Like [`connect`](ClusterClient::connect), reaching the gateways
    /// through `connector` instead of TCP.
    pub async fn connect_via(
        connector: Arc<dyn Connector>,
        gateways: Vec<String>,
        refresh: Duration,
    ) -> Result<Self> {
        let mut last = Error::Config("no gateway given".into());
        let mut known = None;
        for g in &gateways {
            match fetch_gateways(&connector, g, Duration::from_secs(2)).await {
                Ok(list) if !list.is_empty() => {
                    known = Some(list);
                    break;
                }
                Ok(_) => last = Error::Config(format!("gateway {g} knows no active silo")),
                Err(e) => last = e,
            }
        }
        let known = known.ok_or(last)?;
        let router = Arc::new(ClientRouter {
            gateways: Mutex::new(known),
            links: DashMap::new(),
            connecting: Mutex::default(),
            connector,
        });
        let silo = Silo::builder()
            .name("cluster-client")
            .router(Arc::new(ClientRouting(router.clone())))
            .start()
            .await
            .map_err(|e| Error::Config(e.to_string()))?;
        let r = router.clone();
        let refresher = tokio::spawn(async move {
            loop {
                tokio::time::sleep(refresh).await;
                r.refresh().await;
            }
        });
        Ok(ClusterClient {
            silo,
            router,
            refresher,
        })
    }

    /// A typed reference to a grain anywhere in the cluster.
    pub fn get_grain<G: Grain>(&self, key: impl Into<GrainKey>) -> GrainRef<G> {
        self.silo.get_grain(key)
    }

    /// The gateways the client knows now.
    pub fn gateways(&self) -> Vec<String> {
        self.router.gateways.lock().clone()
    }
}

impl Drop for ClusterClient {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

struct ClientRouter {
    gateways: Mutex<Vec<String>>,
    links: DashMap<String, Arc<Link>>,
    /// The connection attempt under way to each gateway, which every
    /// caller that finds no link waits for.
    connecting: Mutex<std::collections::HashMap<String, Connecting>>,
    connector: Arc<dyn Connector>,
}

/// One attempt to open a link, shared by the callers waiting for it.
type Connecting = Shared<BoxFuture<'static, Option<Arc<Link>>>>;

impl ClientRouter {
    async fn refresh(&self) {
        let known = self.gateways.lock().clone();
        for g in known {
            if let Ok(list) = fetch_gateways(&self.connector, &g, Duration::from_secs(2)).await
                && !list.is_empty()
            {
                *self.gateways.lock() = list;
                return;
            }
        }
    }

    async fn link(&self, gateway: &str) -> Option<Arc<Link>> {
        if let Some(l) = self.links.get(gateway).filter(|l| l.is_alive()) {
            return Some(l.clone());
        }
        // One attempt at a time per gateway, however many callers find no
        // link: a storm of first calls must not open a connection each
        // (past ConnectionLimits::max_per_address the gateway refuses
        // them, and the calls failed with "no gateway answered").
        let attempt = self
            .connecting
            .lock()
            .entry(gateway.to_owned())
            .or_insert_with(|| {
                let options = LinkOptions {
                    connector: self.connector.clone(),
                    max_frame: DEFAULT_MAX_FRAME,
                    timeout: Duration::from_secs(2),
                    directed: false,
                };
                let gateway = gateway.to_owned();
                async move { Link::connect(&gateway, options).await.ok().map(Arc::new) }
                    .boxed()
                    .shared()
            })
            .clone();
        let link = attempt.clone().await;
        // The first waiter to finish files the link and ends the attempt.
        let mut connecting = self.connecting.lock();
        if connecting.get(gateway).is_some_and(|a| a.ptr_eq(&attempt)) {
            if let Some(link) = &link {
                self.links.insert(gateway.to_owned(), link.clone());
            }
            connecting.remove(gateway);
        }
        link
    }

    async fn call(self: Arc<Self>, call: EncodedCall) -> actor_core::Result<Vec<u8>> {
        let gateways = self.gateways.lock().clone();
        // Start at a gateway chosen by the grain, so load spreads.
        let start = (crate::hash::grain_hash(&call.target) as usize) % gateways.len().max(1);
        for i in 0..gateways.len() {
            let g = &gateways[(start + i) % gateways.len()];
            // Only a call that provably did not run moves on to the next
            // gateway (so none runs twice): the gateway could not be
            // reached, its link was down before the call was sent, or it
            // has stopped serving and said so ("not here").
            let Some(link) = self.link(g).await else {
                continue;
            };
            match link.try_call(&call, call.timeout).await {
                Err(crate::link::NotSent) => {}
                Ok(Err(actor_core::Error::NotHere { .. })) => {}
                Ok(outcome) => return outcome,
            }
        }
        Err(actor_core::Error::SiloUnavailable {
            silo: format!("no gateway of {gateways:?} answered"),
        })
    }
}

struct ClientRouting(Arc<ClientRouter>);

impl Router for ClientRouting {
    fn is_local(&self, _: &GrainId) -> bool {
        false
    }

    fn invoke(&self, call: EncodedCall) -> BoxFuture<'static, actor_core::Result<Vec<u8>>> {
        Box::pin(self.0.clone().call(call))
    }
}
