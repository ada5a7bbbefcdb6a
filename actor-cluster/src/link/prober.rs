//! Liveness probes: one connection per probed silo, answered with the
//! silo's generation and the membership view it has applied.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tonic::Request;

use super::pb::{self, silo_link_client::SiloLinkClient};
use crate::transport::Connector;

/// Sends liveness probes to silos, keeping one connection per silo.
pub(crate) struct Prober {
    clients: DashMap<String, SiloLinkClient<tonic::transport::Channel>>,
    connector: Arc<dyn Connector>,
}

impl Default for Prober {
    fn default() -> Self {
        Prober::with_connector(crate::transport::tcp())
    }
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("peers", &self.clients.len())
            .finish()
    }
}

impl Prober {
    /// A prober that reaches silos through `connector`.
    pub(crate) fn with_connector(connector: Arc<dyn Connector>) -> Self {
        Prober {
            clients: DashMap::new(),
            connector,
        }
    }

    /// Probes the silo at `endpoint`; its generation and applied view
    /// version if it answered within `timeout`, else why not.
    pub(crate) async fn probe(
        &self,
        endpoint: &str,
        from: &str,
        timeout: Duration,
    ) -> std::result::Result<(i64, i64), String> {
        let mut client = match self.clients.get(endpoint) {
            Some(c) => c.clone(),
            None => {
                let channel = crate::transport::lazy_channel(&self.connector, endpoint, timeout)
                    .map_err(|e| e.to_string())?;
                let c = SiloLinkClient::new(channel);
                self.clients.insert(endpoint.to_owned(), c.clone());
                c
            }
        };
        let request = pb::PingRequest {
            from: from.to_owned(),
        };
        let result = match tokio::time::timeout(timeout, client.ping(Request::new(request))).await {
            Ok(Ok(reply)) => {
                let r = reply.into_inner();
                return Ok((r.generation, r.applied_version));
            }
            Ok(Err(status)) => Err(status.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        // The next probe opens a fresh connection: this one may lead to a
        // stopped incarnation whose connection still answers "unavailable"
        // while a new one serves on the same endpoint (the simulator found
        // a restarted silo never acknowledged this way).
        self.clients.remove(endpoint);
        result
    }

    /// Forgets the connection to `endpoint` (after it was declared dead).
    pub(crate) fn forget(&self, endpoint: &str) {
        self.clients.remove(endpoint);
    }
}
