//! The grain directory: `GrainId -> activation address`, partitioned over
//! the active silos by rendezvous hashing, with compare-and-set
//! registration fenced across membership changes.
//!
//! Invariants (see the crate docs for the whole protocol):
//! - a silo runs a grain only while it *hosts* it: it won the grain's
//!   registration at the partition owner (or still holds an activation);
//! - a partition owner answers fresh registrations only with its fence
//!   open (every active silo has applied its view, dead silos' leases have
//!   run out, its own lease is valid) and only from a silo with the same
//!   view, so no two owners accept registrations for one grain;
//! - a silo re-registers (claims) every grain it hosts whose partition
//!   moved before it reports the new view applied, and gives up (and
//!   deactivates) what it cannot claim.
//!
//! The rooms: this file holds a silo's directory state (its view, its
//! partition, the grains it hosts, its cache); `partition.rs` the
//! partition owner's side of registration; `protocol.rs` the rest of the
//! registration protocol (the RPCs to owners, placement, claims after a
//! view change, unregistration sweeps, load exchange); `routing.rs` call
//! routing and its retries; `service.rs` the gRPC service other silos
//! call. The fence, lease and view of ownership are `crate::fence`.

mod partition;
mod protocol;
mod routing;
mod service;
#[cfg(test)]
mod tests;

pub(crate) use routing::DirectoryRouting;
pub(crate) use service::serve_member;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actor_core::{EncodedCall, GrainId, Router, Silo};
use dashmap::DashMap;
use futures::StreamExt;
use futures::future::BoxFuture;
use tonic::{Request, Response, Status};

use crate::fence::Ownership;
use crate::hash::{rendezvous_owner, stable_hash};
use crate::link::{LinkOptions, LinkPool, LinkService};
use crate::membership::SiloAddress;
use crate::placement::{Candidate, Draw, PlacementContext, Placements};
use crate::router::{by, timeout_of};
use crate::transport::{Connector, LinkListener};

#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
mod pb {
    tonic::include_proto!("grains.directory.v1");
}

use pb::grain_directory_client::GrainDirectoryClient;
use pb::grain_directory_server::{GrainDirectory, GrainDirectoryServer};

/// Where the one activation of a grain lives: the hosting silo (endpoint
/// and generation) and the registration's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ActivationAddress {
    /// The hosting silo.
    pub(crate) silo: SiloAddress,
    /// Distinguishes registrations of one grain on one silo.
    pub(crate) activation: u64,
}

impl ActivationAddress {
    fn to_pb(&self) -> pb::ActivationAddress {
        pb::ActivationAddress {
            endpoint: self.silo.endpoint.clone(),
            generation: self.silo.generation,
            activation: self.activation,
        }
    }

    fn from_pb(a: pb::ActivationAddress) -> Self {
        ActivationAddress {
            silo: SiloAddress::new(a.endpoint, a.generation),
            activation: a.activation,
        }
    }
}

/// How a routing failure says that a silo could not be reached (the call
/// never left); a call that gives up on such a failure at its deadline
/// fails with "silo unavailable", not with a timeout.
const UNREACHABLE: &str = "unreachable";

/// The answer of a directory operation: an address (or none), or "not
/// now, retry" with the reason.
pub(crate) type Answer = Result<Option<ActivationAddress>, String>;

/// The active silos as this silo sees them, and the id every silo with
/// the same view computes.
#[derive(Debug, Default)]
struct View {
    members: Vec<String>,
    generations: HashMap<String, i64>,
    id: u64,
}

impl View {
    fn new(active: &[SiloAddress]) -> Self {
        let mut active = active.to_vec();
        active.sort();
        let text: Vec<String> = active.iter().map(ToString::to_string).collect();
        View {
            members: active.iter().map(|a| a.endpoint.clone()).collect(),
            generations: active
                .iter()
                .map(|a| (a.endpoint.clone(), a.generation))
                .collect(),
            id: stable_hash(text.join(",").as_bytes()),
        }
    }

    fn owner(&self, id: &GrainId) -> Option<&str> {
        rendezvous_owner(id, &self.members)
    }

    /// Whether `silo` (endpoint and generation) is active in this view.
    fn has(&self, silo: &SiloAddress) -> bool {
        self.generations.get(&silo.endpoint) == Some(&silo.generation)
    }
}

/// A silo's part of the grain directory: its partition, the grains it
/// hosts, its cache of other silos' registrations, and the links it sends
/// calls over by them.
pub(crate) struct Directory {
    me: SiloAddress,
    /// What this silo may own and activate (view, fence, lease).
    ownership: Arc<Ownership>,
    silo: OnceLock<Silo>,
    view: parking_lot::RwLock<View>,
    /// This silo's partition: the registrations it is the owner of.
    partition: parking_lot::Mutex<HashMap<GrainId, ActivationAddress>>,
    /// Grains registered to this silo, with their registration id.
    hosted: DashMap<GrainId, u64, foldhash::fast::RandomState>,
    /// Grains let go at the last sweep (no longer active), unregistered at
    /// the next one unless they came back.
    released: parking_lot::Mutex<HashMap<GrainId, u64>>,
    /// Other silos' registrations as last seen.
    cache: DashMap<GrainId, ActivationAddress, foldhash::fast::RandomState>,
    /// Held (shared) by registrations in flight, (exclusively) by a view
    /// change: a registration that started under the old view is claimed
    /// under the new one.
    gate: tokio::sync::RwLock<()>,
    links: LinkPool,
    clients: DashMap<String, GrainDirectoryClient<tonic::transport::Channel>>,
    loads: DashMap<String, u64>,
    placements: Placements,
    draw: Draw,
    next_activation: AtomicU64,
    rpc_timeout: Duration,
    serving: Arc<std::sync::atomic::AtomicBool>,
    /// How this silo reaches the others (TCP, or a test transport).
    connector: Arc<dyn Connector>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("me", &self.me)
            .field("hosted", &self.hosted.len())
            .finish_non_exhaustive()
    }
}

impl Directory {
    pub(crate) fn new(
        me: SiloAddress,
        ownership: Arc<Ownership>,
        connector: Arc<dyn Connector>,
        placements: Placements,
        rpc_timeout: Duration,
        max_frame: usize,
        serving: Arc<std::sync::atomic::AtomicBool>,
    ) -> Arc<Self> {
        let seed = stable_hash(me.to_string().as_bytes());
        Arc::new(Directory {
            view: parking_lot::RwLock::new(View::new(std::slice::from_ref(&me))),
            me,
            ownership,
            silo: OnceLock::new(),
            partition: parking_lot::Mutex::new(HashMap::new()),
            hosted: DashMap::default(),
            released: parking_lot::Mutex::new(HashMap::new()),
            cache: DashMap::default(),
            gate: tokio::sync::RwLock::new(()),
            links: LinkPool::new(LinkOptions {
                connector: connector.clone(),
                max_frame,
                timeout: rpc_timeout,
                directed: true,
            }),
            clients: DashMap::new(),
            loads: DashMap::new(),
            placements,
            connector,
            draw: Draw::seeded(seed),
            next_activation: AtomicU64::new(1),
            rpc_timeout,
            serving,
        })
    }

    pub(crate) fn attach(&self, silo: &Silo) {
        let _ = self.silo.set(silo.clone());
    }

    /// Whether this silo hosts `id` (won its registration).
    pub(crate) fn hosts(&self, id: &GrainId) -> bool {
        self.hosted.contains_key(id)
    }

    /// Whether this silo hosts `id`, or, for a hash-placed grain whose
    /// partition this silo owns, can register it here now without an
    /// RPC (the fast path of the default placement). Synchronous: the
    /// registration and the `hosted` entry are made under the view lock,
    /// so a view change either sees the grain hosted (and claims it) or
    /// happens first (and this registers under the new view).
    pub(crate) fn hosts_or_takes(&self, id: &GrainId) -> bool {
        if self.hosts(id) {
            return true;
        }
        if !self.placements.is_hash(id.grain_type.as_str()) {
            return false;
        }
        let v = self.view.read();
        if v.owner(id) != Some(self.me.endpoint.as_str()) || !self.ownership.lease_valid() {
            return false;
        }
        let mut part = self.partition.lock();
        match part.get(id) {
            Some(cur) if v.has(&cur.silo) => {
                if cur.silo == self.me {
                    self.hosted.insert(id.clone(), cur.activation);
                    true
                } else {
                    false
                }
            }
            _ if !self.ownership.may_activate() => false,
            _ => {
                let act = self.next_activation.fetch_add(1, Ordering::Relaxed);
                part.insert(id.clone(), self.my_address(act));
                self.hosted.insert(id.clone(), act);
                true
            }
        }
    }

    /// Where this silo last saw `id` registered (hosted here or cached).
    pub(crate) fn location(&self, id: &GrainId) -> Option<String> {
        if self.hosts(id) {
            return Some(self.me.endpoint.clone());
        }
        self.cache.get(id).map(|a| a.silo.endpoint.clone())
    }

    /// The active silos of the view this directory routes by.
    pub(crate) fn members(&self) -> Vec<String> {
        self.view.read().members.clone()
    }

    /// Registrations this silo's partition holds.
    pub(crate) fn partition_len(&self) -> usize {
        self.partition.lock().len()
    }

    fn my_address(&self, activation: u64) -> ActivationAddress {
        ActivationAddress {
            silo: self.me.clone(),
            activation,
        }
    }

    fn remember(&self, id: &GrainId, a: &ActivationAddress) {
        if a.silo != self.me {
            self.cache.insert(id.clone(), a.clone());
        }
    }

    /// The activation count of a silo as last exchanged (this silo's own
    /// too: counting walks the activation table, so not per placement).
    fn load_of(&self, endpoint: &str) -> u64 {
        self.loads.get(endpoint).map_or(0, |l| *l)
    }
}
