//! rio-rs 0.7.2 as a peer of the remote scenarios: its server in the peer
//! process, its clients in this one, with the same exchange as the other
//! subjects (a 64-byte payload to a service object that answers the
//! payload's length as a `u64`).
//!
//! How it is run, and why:
//! - membership and placement are rio-rs's in-memory providers
//!   (`LocalStorage`, `LocalObjectPlacement`) with the gossip cluster
//!   provider (`PeerToPeerClusterProvider`; the `LocalClusterProvider`
//!   never registers the server as a member);
//! - the server announces the machine's first non-loopback address in its
//!   own membership storage, whatever it binds to; nothing connects to that
//!   address (a single server pings no other member and places every
//!   object on itself), and the clients are given the server's loopback
//!   address as their only member, the way rio-rs's own cluster provider
//!   builds the clients it pings with. All traffic stays on 127.0.0.1, with
//!   no network namespace needed (to find that address, the server reads
//!   the interfaces over netlink and `connect`s a UDP socket to
//!   10.254.254.254, a route lookup that sends no packet);
//! - a rio-rs client carries one call at a time on its connection, so N
//!   calls in flight take N clients (N TCP connections), one per caller.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait_sync::async_trait;
use rio_rs::client::Client;
use rio_rs::cluster::storage::Member;
use rio_rs::cluster::storage::local::LocalStorage;
use rio_rs::object_placement::local::LocalObjectPlacement;
use rio_rs::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::Call;

/// The subject's name in tables and JSON.
pub(super) const NAME: &str = "rio-rs 0.7.2";

/// Said next to its figures.
pub(super) const NOTE: &str = "one client, so one TCP connection, per caller";

/// The longest a single call may take before the sample is given up.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The service object: answers the payload's length.
#[derive(Default, WithId, TypeName)]
#[type_name = "BenchEcho"]
struct RioEcho {
    id: String,
}

/// The request: the payload.
#[derive(Message, TypeName, Serialize, Deserialize)]
#[type_name = "BenchEchoPayload"]
struct EchoPayload {
    payload: Vec<u8>,
}

#[async_trait]
impl Handler<EchoPayload> for RioEcho {
    type Returns = u64;
    type Error = NoopError;

    async fn handle(&mut self, m: EchoPayload, _: Arc<AppData>) -> Result<u64, NoopError> {
        Ok(m.payload.len() as u64)
    }
}

/// Starts a rio-rs server on 127.0.0.1 (inside the peer process's tokio
/// runtime) and returns its address once it has registered itself as a
/// member.
pub(super) async fn serve() -> Result<String, String> {
    let mut registry = Registry::new();
    registry.add_type::<RioEcho>();
    registry.add_handler::<RioEcho, EchoPayload>();
    let members = LocalStorage::default();
    let cluster = PeerToPeerClusterProvider::builder()
        .members_storage(members.clone())
        .build();
    let mut server = Server::builder()
        .address("127.0.0.1:0".to_owned())
        .registry(registry)
        .cluster_provider(cluster)
        .object_placement_provider(LocalObjectPlacement::default())
        .build();
    server.prepare().await.map_err(|e| format!("{e:?}"))?;
    let listener = server.bind().await.map_err(|e| format!("{e:?}"))?;
    let at = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    tokio::spawn(async move {
        if let Err(e) = server.run(listener).await {
            eprintln!("remote peer: the rio-rs server stopped: {e:?}");
        }
    });
    // Its cluster provider pushes the server as an active member first
    // thing; placement checks that membership on every call.
    let deadline = Instant::now() + Duration::from_secs(10);
    while members
        .active_members()
        .await
        .map_err(|e| format!("{e:?}"))?
        .is_empty()
    {
        if Instant::now() > deadline {
            return Err("the rio-rs server never registered itself".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(at)
}

/// `callers` clients of the server at `server`; call `(caller, key,
/// payload)` asks service object `first + key` through client `caller`.
pub(super) async fn callers(server: &str, callers: u64, first: u64) -> Result<Call, String> {
    let (ip, port) = server
        .rsplit_once(':')
        .ok_or_else(|| format!("not an address: {server}"))?;
    let mut member = Member::new(ip.to_owned(), port.to_owned());
    member.set_active(true);
    let members = LocalStorage::default();
    members.push(member).await.map_err(|e| format!("{e:?}"))?;
    let clients: Vec<Mutex<Client<LocalStorage>>> = (0..callers.max(1))
        .map(|_| {
            ClientBuilder::new()
                .members_storage(members.clone())
                .build()
                .map(Mutex::new)
                .map_err(|e| format!("{e:?}"))
        })
        .collect::<Result<_, _>>()?;
    let clients = Arc::new(clients);
    Ok(Arc::new(move |caller, key, payload| {
        let clients = clients.clone();
        Box::pin(async move {
            // Uncontended: each caller has its own client.
            let mut client = clients[caller as usize % clients.len()].lock().await;
            let id = (first + key).to_string();
            let request = EchoPayload { payload };
            match tokio::time::timeout(
                CALL_TIMEOUT,
                client.send::<u64, NoopError>("BenchEcho", &id, &request),
            )
            .await
            {
                Ok(Ok(len)) => Ok(len),
                Ok(Err(e)) => Err(format!("rio-rs call failed: {e:?}")),
                Err(_) => Err(format!("a rio-rs call took over {CALL_TIMEOUT:?}")),
            }
        })
    }))
}
