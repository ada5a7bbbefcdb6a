//! The gateway list: a client asks any silo for the silos it may call
//! through.

use std::sync::Arc;
use std::time::Duration;

use tonic::Request;

use super::pb::{self, silo_link_client::SiloLinkClient};
use crate::error::{Error, Result};
use crate::transport::Connector;

/// Asks the silo at `endpoint`, reached through `connector`, for the
/// cluster's gateways.
pub(crate) async fn fetch_gateways(
    connector: &Arc<dyn Connector>,
    endpoint: &str,
    timeout: Duration,
) -> Result<Vec<String>> {
    let unavailable = |reason: String| Error::SiloUnavailable {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let channel = crate::transport::channel(connector, endpoint, timeout, Some(timeout)).await?;
    let reply = SiloLinkClient::new(channel)
        .gateways(Request::new(pb::GatewaysRequest {}))
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    Ok(reply.into_inner().endpoints)
}
