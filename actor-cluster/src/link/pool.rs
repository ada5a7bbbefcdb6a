//! One link per remote silo, opened on first use and reopened after it
//! breaks: what every router of a silo (the test router, the directory's)
//! calls through.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dashmap::DashMap;

use super::{Link, LinkOptions};
use crate::error::Result;
use crate::transport::Connector;

/// Open links by endpoint.
pub(crate) struct LinkPool {
    links: DashMap<String, Arc<Link>, foldhash::fast::RandomState>,
    /// One connection attempt at a time, so that a burst of calls to a
    /// silo without a link opens one stream, not one each.
    connecting: tokio::sync::Mutex<()>,
    /// Set once (TCP unless a transport was given before the first call).
    connector: OnceLock<Arc<dyn Connector>>,
    max_frame: usize,
    timeout: Duration,
    directed: bool,
}

impl std::fmt::Debug for LinkPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkPool")
            .field("links", &self.links.len())
            .field("directed", &self.directed)
            .finish_non_exhaustive()
    }
}

impl LinkPool {
    /// A pool whose links are opened with `options`.
    pub(crate) fn new(options: LinkOptions) -> Self {
        let pool =
            LinkPool::without_connector(options.max_frame, options.timeout, options.directed);
        let _ = pool.connector.set(options.connector);
        pool
    }

    /// A pool whose connector is given later
    /// ([`use_connector`](Self::use_connector)), TCP if never.
    pub(crate) fn without_connector(max_frame: usize, timeout: Duration, directed: bool) -> Self {
        LinkPool {
            links: DashMap::default(),
            connecting: tokio::sync::Mutex::new(()),
            connector: OnceLock::new(),
            max_frame,
            timeout,
            directed,
        }
    }

    /// Opens links through `connector` (once; later calls are ignored,
    /// as are calls after the first link was opened).
    pub(crate) fn use_connector(&self, connector: Arc<dyn Connector>) {
        let _ = self.connector.set(connector);
    }

    /// The open link to `endpoint`, if there is one and it is up.
    pub(crate) fn live(&self, endpoint: &str) -> Option<Arc<Link>> {
        self.links
            .get(endpoint)
            .filter(|l| l.is_alive())
            .map(|l| l.clone())
    }

    /// The link to `endpoint`, opened now if there is none or it broke.
    pub(crate) async fn get(&self, endpoint: &str) -> Result<Arc<Link>> {
        if let Some(l) = self.live(endpoint) {
            return Ok(l);
        }
        let _guard = self.connecting.lock().await;
        if let Some(l) = self.live(endpoint) {
            return Ok(l);
        }
        let options = LinkOptions {
            connector: self.connector.get_or_init(crate::transport::tcp).clone(),
            max_frame: self.max_frame,
            timeout: self.timeout,
            directed: self.directed,
        };
        let link = Arc::new(Link::connect(endpoint, options).await?);
        self.links.insert(endpoint.to_owned(), link.clone());
        Ok(link)
    }

    /// Drops the link to `endpoint` (its silo left), failing the calls in
    /// flight on it.
    pub(crate) fn remove(&self, endpoint: &str) {
        if let Some((_, link)) = self.links.remove(endpoint) {
            link.fail_pending();
        }
    }
}
