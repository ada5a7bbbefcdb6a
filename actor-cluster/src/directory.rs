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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actor_core::{EncodedCall, GrainId, Router, Silo};
use dashmap::DashMap;
use futures::StreamExt;
use futures::future::BoxFuture;
use tonic::{Request, Response, Status};

use crate::link::{Link, LinkOptions, LinkService};
use crate::membership::SiloAddress;
use crate::placement::{Candidate, Draw, PlacementContext, Placements};
use crate::router::{StaticRouter, by, rendezvous_owner, stable_hash, timeout_of};
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
/// hosts, its cache of other silos' registrations, and the router that
/// sends calls by them.
pub(crate) struct Directory {
    me: SiloAddress,
    router: Arc<StaticRouter>,
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
    links: DashMap<String, Arc<Link>, foldhash::fast::RandomState>,
    connecting: tokio::sync::Mutex<()>,
    clients: DashMap<String, GrainDirectoryClient<tonic::transport::Channel>>,
    loads: DashMap<String, u64>,
    placements: Placements,
    draw: Draw,
    next_activation: AtomicU64,
    rpc_timeout: Duration,
    max_frame: usize,
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
        router: Arc<StaticRouter>,
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
            router,
            silo: OnceLock::new(),
            partition: parking_lot::Mutex::new(HashMap::new()),
            hosted: DashMap::default(),
            released: parking_lot::Mutex::new(HashMap::new()),
            cache: DashMap::default(),
            gate: tokio::sync::RwLock::new(()),
            links: DashMap::default(),
            connecting: tokio::sync::Mutex::new(()),
            clients: DashMap::new(),
            loads: DashMap::new(),
            placements,
            connector,
            draw: Draw::seeded(seed),
            next_activation: AtomicU64::new(1),
            rpc_timeout,
            max_frame,
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
        if v.owner(id) != Some(self.me.endpoint.as_str()) || !self.router.lease_valid() {
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
            _ if !self.router.may_activate() => false,
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

    // ----- the partition owner's side -----

    /// Registers `addr` for `id` in this silo's partition: a fresh
    /// registration (fenced) or a claim of a running activation.
    fn register_local(
        &self,
        id: &GrainId,
        addr: ActivationAddress,
        view: u64,
        claim: bool,
    ) -> Answer {
        let v = self.view.read();
        if v.id != view {
            return Err("the silos' membership views differ".into());
        }
        if v.owner(id) != Some(self.me.endpoint.as_str()) {
            return Err("not the owner of this grain's partition".into());
        }
        if !v.has(&addr.silo) {
            return Err(format!("{} is not an active silo", addr.silo));
        }
        if !self.router.lease_valid() {
            return Err("the partition owner's lease has expired".into());
        }
        let mut part = self.partition.lock();
        match part.get(id) {
            // First writer wins (reading the winner needs no fence); the
            // entry of a silo no longer active is void (its lease ran out
            // before the fence opened).
            Some(cur) if v.has(&cur.silo) => Ok(Some(cur.clone())),
            _ if !claim && !self.router.may_activate() => {
                Err("the partition is fenced until every silo has applied the view".into())
            }
            _ => {
                part.insert(id.clone(), addr.clone());
                Ok(Some(addr))
            }
        }
    }

    fn lookup_local(&self, id: &GrainId) -> Answer {
        let v = self.view.read();
        if v.owner(id) != Some(self.me.endpoint.as_str()) {
            return Err("not the owner of this grain's partition".into());
        }
        Ok(self
            .partition
            .lock()
            .get(id)
            .filter(|a| v.has(&a.silo))
            .cloned())
    }

    fn unregister_local(&self, id: &GrainId, addr: &ActivationAddress) -> Answer {
        let mut part = self.partition.lock();
        if part.get(id) == Some(addr) {
            part.remove(id);
        }
        Ok(None)
    }

    // ----- RPCs to other silos -----

    fn client(
        &self,
        endpoint: &str,
    ) -> Result<GrainDirectoryClient<tonic::transport::Channel>, String> {
        if let Some(c) = self.clients.get(endpoint) {
            return Ok(c.clone());
        }
        let channel = crate::transport::lazy_channel(&self.connector, endpoint, self.rpc_timeout)
            .map_err(|e| e.to_string())?;
        let c = GrainDirectoryClient::new(channel);
        self.clients.insert(endpoint.to_owned(), c.clone());
        Ok(c)
    }

    async fn rpc<F, Fut>(&self, endpoint: &str, f: F) -> Answer
    where
        F: FnOnce(GrainDirectoryClient<tonic::transport::Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<pb::DirectoryReply>, Status>>,
    {
        let client = self.client(endpoint)?;
        match tokio::time::timeout(self.rpc_timeout, f(client)).await {
            Ok(Ok(reply)) => {
                let r = reply.into_inner();
                if r.retry.is_empty() {
                    Ok(r.address.map(ActivationAddress::from_pb))
                } else {
                    Err(r.retry)
                }
            }
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                Err(format!("{endpoint} {UNREACHABLE} ({})", status.message()))
            }
            Ok(Err(status)) => Err(format!("{endpoint}: {}", status.message())),
            Err(_) => Err(format!(
                "{endpoint} {UNREACHABLE} (no answer within {:?})",
                self.rpc_timeout
            )),
        }
    }

    async fn register_at(
        &self,
        owner: &str,
        id: &GrainId,
        addr: ActivationAddress,
        view: u64,
        claim: bool,
    ) -> Answer {
        if owner == self.me.endpoint {
            return self.register_local(id, addr, view, claim);
        }
        let grain = actor_core::__private::codec::encode(id).map_err(|e| e.to_string())?;
        let req = pb::RegisterRequest {
            grain,
            address: Some(addr.to_pb()),
            view,
            claim,
        };
        self.rpc(
            owner,
            |mut c| async move { c.register(Request::new(req)).await },
        )
        .await
    }

    async fn lookup_at(&self, owner: &str, id: &GrainId, view: u64) -> Answer {
        if owner == self.me.endpoint {
            return self.lookup_local(id);
        }
        let grain = actor_core::__private::codec::encode(id).map_err(|e| e.to_string())?;
        self.rpc(owner, |mut c| async move {
            c.lookup(Request::new(pb::LookupRequest { grain, view }))
                .await
        })
        .await
    }

    async fn place_at(&self, target: &str, id: &GrainId) -> Answer {
        if target == self.me.endpoint {
            return self.place_here(id).await;
        }
        let grain = actor_core::__private::codec::encode(id).map_err(|e| e.to_string())?;
        self.rpc(target, |mut c| async move {
            c.place(Request::new(pb::LookupRequest { grain, view: 0 }))
                .await
        })
        .await
    }

    /// Registers `id` on this silo at its partition owner (the placement
    /// target's side): the winner, which is this silo if it was first.
    async fn place_here(&self, id: &GrainId) -> Answer {
        if let Some(act) = self.hosted.get(id) {
            return Ok(Some(self.my_address(*act)));
        }
        if !self.router.lease_valid() {
            return Err("this silo's membership lease has expired".into());
        }
        let _gate = self.gate.read().await;
        let (view, owner) = {
            let v = self.view.read();
            if !v.has(&self.me) {
                return Err("this silo is not active in its own view".into());
            }
            (v.id, v.owner(id).map(str::to_owned))
        };
        let owner = owner.ok_or("no active silo")?;
        let addr = self.my_address(self.next_activation.fetch_add(1, Ordering::Relaxed));
        let winner = self.register_at(&owner, id, addr, view, false).await?;
        if let Some(w) = &winner
            && w.silo == self.me
        {
            self.hosted.insert(id.clone(), w.activation);
        }
        Ok(winner)
    }

    /// Where calls to `id` go: the cache, else the partition owner's
    /// registration, else a new placement registered by compare-and-set.
    async fn resolve(&self, id: &GrainId) -> Answer {
        if let Some(a) = self.cache.get(id) {
            return Ok(Some(a.clone()));
        }
        let hash = self.placements.is_hash(id.grain_type.as_str());
        let (view, owner, candidates) = {
            let v = self.view.read();
            let owner = v.owner(id).ok_or("no active silo")?.to_owned();
            if hash && owner != self.me.endpoint {
                // Hash placement: send the call straight to the owner,
                // which registers the grain on itself as it admits the
                // call (or answers "not here", and the next attempt asks
                // it properly).
                let generation = v.generations.get(&owner).copied().unwrap_or_default();
                return Ok(Some(ActivationAddress {
                    silo: SiloAddress::new(owner, generation),
                    activation: 0,
                }));
            }
            let candidates: Vec<Candidate> = v
                .members
                .iter()
                .map(|m| Candidate {
                    endpoint: m.clone(),
                    activations: self.load_of(m),
                })
                .collect();
            (v.id, owner, candidates)
        };
        let target = self.placements.place(&PlacementContext {
            grain: id,
            local: &self.me.endpoint,
            candidates: &candidates,
            random: [self.draw.next(), self.draw.next()],
        });
        // Placing on the partition owner or on this silo answers an
        // existing registration as well as a lookup would, in as many
        // hops; placing elsewhere costs a hop more, so look up first.
        if target != owner
            && target != self.me.endpoint
            && let Some(found) = self.lookup_at(&owner, id, view).await?
        {
            self.remember(id, &found);
            return Ok(Some(found));
        }
        let winner = self.place_at(&target, id).await?;
        if let Some(w) = &winner {
            self.remember(id, w);
        }
        Ok(winner)
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

    async fn link(&self, endpoint: &str) -> Option<Arc<Link>> {
        if let Some(l) = self.links.get(endpoint).filter(|l| l.is_alive()) {
            return Some(l.clone());
        }
        let _guard = self.connecting.lock().await;
        if let Some(l) = self.links.get(endpoint).filter(|l| l.is_alive()) {
            return Some(l.clone());
        }
        let options = LinkOptions {
            connector: self.connector.clone(),
            max_frame: self.max_frame,
            timeout: self.rpc_timeout,
            directed: true,
        };
        let link = Link::connect(endpoint, options).await.ok()?;
        let link = Arc::new(link);
        self.links.insert(endpoint.to_owned(), link.clone());
        Some(link)
    }

    /// Routes a call for a grain not active here: to the silo the
    /// directory names, retrying (within the deadline) where the call
    /// provably did not run: a stale cache entry ("not here"), a silo
    /// that could not be reached, a registration not answered yet.
    async fn route(self: Arc<Self>, call: EncodedCall) -> actor_core::Result<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + call.timeout;
        let mut last = String::new();
        let mut pause = Duration::from_millis(2);
        // The address that last answered "not here".
        let mut stale: Option<ActivationAddress> = None;
        loop {
            if !self.router.lease_valid() {
                return Err(actor_core::Error::SiloUnavailable {
                    silo: format!("{} (membership lease expired)", self.me.endpoint),
                });
            }
            let silo = self.silo.get().ok_or(actor_core::Error::SiloStopped)?;
            if self.hosts(&call.target) {
                let late = timeout_of(&call);
                return by(deadline, silo.invoke_encoded(call))
                    .await
                    .unwrap_or_else(|| Err(late()));
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                tracing::debug!(grain = %call.target, reason = %last, "gave up routing at the deadline");
                if last.contains(UNREACHABLE) {
                    // Never sent, and the silo it had to go through could
                    // not be reached until the deadline: say so, rather
                    // than a timeout of a call that never ran.
                    return Err(actor_core::Error::SiloUnavailable { silo: last });
                }
                return Err(actor_core::Error::Timeout {
                    grain: call.target,
                    method: call.method,
                    timeout: call.timeout,
                });
            }
            // Every await here ends by the call's deadline (a lookup answered
            // from the cache is ready at once and arms no timer), so the
            // reference needs no timer of its own (`bounds_deadlines`).
            let Some(resolved) = by(deadline, self.resolve(&call.target)).await else {
                return Err(timeout_of(&call)());
            };
            match resolved {
                Ok(Some(addr)) if addr.silo == self.me => {
                    // Registered here but not hosted: a registration whose
                    // answer was lost (timeout). Registering again settles
                    // it (the entry names this silo, so this silo wins).
                    match by(deadline, self.place_here(&call.target))
                        .await
                        .unwrap_or_else(|| Err("no placement by the deadline".into()))
                    {
                        Ok(_) => continue,
                        Err(reason) => last = reason,
                    }
                }
                Ok(Some(addr)) if stale.as_ref() == Some(&addr) => {
                    // The directory names a silo that just said "not here"
                    // (its registration's answer was lost): ask it to
                    // settle its registration, then call it again.
                    self.cache.remove(&call.target);
                    match by(deadline, self.place_at(&addr.silo.endpoint, &call.target))
                        .await
                        .unwrap_or_else(|| Err("no placement by the deadline".into()))
                    {
                        Ok(Some(w)) => {
                            self.remember(&call.target, &w);
                            stale = None;
                            continue;
                        }
                        Ok(None) => last = "no silo to place it on".into(),
                        Err(reason) => last = reason,
                    }
                }
                Ok(Some(addr)) => {
                    match by(deadline, self.link(&addr.silo.endpoint)).await.flatten() {
                        None => {
                            // Never sent: safe to retry once the directory
                            // knows better.
                            last = format!("{} {UNREACHABLE}", addr.silo);
                            self.cache.remove(&call.target);
                        }
                        Some(link) => {
                            match link.try_call(&call, left).await {
                                Err(crate::link::NotSent) => {
                                    // The link went down before the call was
                                    // sent: it did not run, route it again.
                                    self.cache.remove_if(&call.target, |_, a| *a == addr);
                                    last = format!("{} {UNREACHABLE}", addr.silo);
                                }
                                Ok(Err(actor_core::Error::NotHere { .. })) => {
                                    self.cache.remove_if(&call.target, |_, a| *a == addr);
                                    last = format!("not hosted on {}", addr.silo);
                                    stale = Some(addr);
                                    continue;
                                }
                                Ok(Err(actor_core::Error::SiloUnavailable { silo })) => {
                                    self.cache.remove_if(&call.target, |_, a| *a == addr);
                                    return Err(actor_core::Error::SiloUnavailable { silo });
                                }
                                Ok(other) => return other,
                            }
                        }
                    }
                }
                Ok(None) => last = "no silo to place it on".into(),
                Err(reason) => last = reason,
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            // While this silo's own fence is closed (a view change is
            // being applied), the partition owners' are almost surely
            // closed too: wait here instead of asking them again and
            // again. Only after a failed attempt, so calls to grains that
            // are active somewhere never wait for the fence.
            while !self.router.may_activate() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    // ----- membership changes -----

    /// Applies the active silos of a new membership view: drops the
    /// partition entries this silo no longer owns, fails calls in flight
    /// to silos that left, and claims every hosted grain whose partition
    /// moved at its new owner (retrying up to `patience`). Grains it cannot
    /// claim are deactivated. Returns once done: only then may the silo
    /// report the view applied.
    pub(crate) async fn apply_view(&self, active: &[SiloAddress], patience: Duration) {
        let next = View::new(active);
        if next.id == self.view.read().id {
            return;
        }
        let _gate = self.gate.write().await;
        let (old, view) = {
            let mut v = self.view.write();
            let old = std::mem::replace(&mut *v, next);
            let me = self.me.endpoint.as_str();
            self.partition
                .lock()
                .retain(|id, _| v.owner(id) == Some(me));
            (old, v.id)
        };
        let old_members = &old.members;
        let (members, gone): (Vec<String>, Vec<String>) = {
            let v = self.view.read();
            let gone = old_members
                .iter()
                .filter(|m| !v.members.contains(m))
                .cloned()
                .collect();
            (v.members.clone(), gone)
        };
        {
            let v = self.view.read();
            self.cache.retain(|_, a| v.has(&a.silo));
        }
        for endpoint in &gone {
            if let Some((_, link)) = self.links.remove(endpoint) {
                link.fail_pending();
            }
            self.clients.remove(endpoint);
            if *endpoint != self.me.endpoint {
                self.loads.remove(endpoint);
            }
        }
        // Grains let go by the last sweep that are active again (a call
        // slipped in) are hosted: they must be claimed like the others.
        if let Some(silo) = self.silo.get() {
            self.released.lock().retain(|id, act| {
                if silo.is_active(id) {
                    self.hosted.insert(id.clone(), *act);
                    false
                } else {
                    true
                }
            });
        }
        // A partition moved if its owner changed, or restarted on the same
        // endpoint (a new generation has an empty partition).
        let new_generations = self.view.read().generations.clone();
        let mut moved: Vec<(GrainId, u64, String)> = self
            .hosted
            .iter()
            .filter_map(|e| {
                let new = rendezvous_owner(e.key(), &members)?;
                let before =
                    rendezvous_owner(e.key(), old_members).map(|o| (o, old.generations.get(o)));
                let same = before == Some((new, new_generations.get(new)));
                (!same).then(|| (e.key().clone(), *e.value(), new.to_owned()))
            })
            .collect();
        if moved.is_empty() {
            return;
        }
        // Claims go out in grain order, not hash order: a simulated run
        // must replay.
        moved.sort_unstable();
        let until = tokio::time::Instant::now() + patience;
        let lost: HashSet<GrainId> = futures::stream::iter(moved)
            .map(|(id, act, owner)| async move {
                let addr = self.my_address(act);
                loop {
                    match self.register_at(&owner, &id, addr.clone(), view, true).await {
                        Ok(Some(w)) if w.silo == self.me => return None,
                        Ok(_) => return Some(id),
                        Err(reason) => {
                            if tokio::time::Instant::now() >= until {
                                tracing::warn!(grain = %id, %reason, "could not re-register a grain; deactivating it");
                                return Some(id);
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            })
            .buffer_unordered(64)
            .filter_map(|x| async move { x })
            .collect()
            .await;
        if !lost.is_empty() {
            for id in &lost {
                self.hosted.remove(id);
            }
            if let Some(silo) = self.silo.get() {
                silo.deactivate_where(|id| lost.contains(id), patience)
                    .await;
            }
        }
    }

    /// Unregisters grains this silo no longer runs (collected when idle),
    /// in two sweeps: the first stops hosting them (new calls then go
    /// through the directory again), the next one, a sweep later, removes
    /// their registrations unless they came back. Holds the gate, so no
    /// registration of this silo runs meanwhile; a grain active again is
    /// hosted again (its registration was never removed).
    pub(crate) async fn sweep(&self) {
        let Some(silo) = self.silo.get() else {
            return;
        };
        let _gate = self.gate.write().await;
        // In grain order, not hash order: a simulated run must replay.
        let mut released: Vec<(GrainId, u64)> = std::mem::take(&mut *self.released.lock())
            .into_iter()
            .collect();
        released.sort_unstable();
        let mut remote = Vec::new();
        {
            let v = self.view.read();
            for (id, act) in released {
                if self.hosted.contains_key(&id) {
                    continue;
                }
                if silo.is_active(&id) {
                    self.hosted.insert(id, act);
                    continue;
                }
                match v.owner(&id) {
                    Some(owner) if owner == self.me.endpoint => {
                        let mut part = self.partition.lock();
                        // Under the partition lock: a grain taken again by
                        // `hosts_or_takes` meanwhile is hosted now.
                        if !self.hosted.contains_key(&id)
                            && part.get(&id) == Some(&self.my_address(act))
                        {
                            part.remove(&id);
                        }
                    }
                    Some(owner) => remote.push((id, act, owner.to_owned())),
                    None => {}
                }
            }
        }
        futures::stream::iter(remote)
            .map(|(id, act, owner)| async move {
                let Ok(grain) = actor_core::__private::codec::encode(&id) else {
                    return;
                };
                let req = pb::RegisterRequest {
                    grain,
                    address: Some(self.my_address(act).to_pb()),
                    view: 0,
                    claim: false,
                };
                // A failed unregistration leaves an entry naming this
                // silo; the next call settles it here (see `route`).
                let _ = self
                    .rpc(&owner, |mut c| async move {
                        c.unregister(Request::new(req)).await
                    })
                    .await;
            })
            .buffer_unordered(64)
            .collect::<Vec<()>>()
            .await;
        let mut idle: Vec<(GrainId, u64)> = self
            .hosted
            .iter()
            .filter(|e| !silo.is_active(e.key()))
            .map(|e| (e.key().clone(), *e.value()))
            .collect();
        idle.sort_unstable();
        let mut released = self.released.lock();
        for (id, act) in idle {
            self.hosted.remove(&id);
            if silo.is_active(&id) {
                // Activated between the two looks: keep hosting it.
                self.hosted.insert(id, act);
            } else {
                released.insert(id, act);
            }
        }
    }

    /// Asks every other active silo for its activation count (for
    /// activation-count placement).
    pub(crate) async fn exchange_loads(&self) {
        if let Some(silo) = self.silo.get() {
            self.loads
                .insert(self.me.endpoint.clone(), silo.activation_count() as u64);
        }
        let peers: Vec<String> = self
            .view
            .read()
            .members
            .iter()
            .filter(|m| **m != self.me.endpoint)
            .cloned()
            .collect();
        let answers = futures::future::join_all(peers.iter().map(|p| async move {
            let mut c = self.client(p).ok()?;
            let r =
                tokio::time::timeout(self.rpc_timeout, c.load(Request::new(pb::LoadRequest {})))
                    .await
                    .ok()?
                    .ok()?;
            Some(r.into_inner().activations)
        }))
        .await;
        for (p, a) in peers.into_iter().zip(answers) {
            if let Some(a) = a {
                self.loads.insert(p, a);
            }
        }
    }
}

/// The `Router` of a cluster silo: grains it hosts run here, others go
/// where the directory says.
#[derive(Debug, Clone)]
pub(crate) struct DirectoryRouting(pub(crate) Arc<Directory>);

impl Router for DirectoryRouting {
    fn is_local(&self, id: &GrainId) -> bool {
        self.0.router.lease_valid() && self.0.hosts_or_takes(id)
    }

    fn invoke(&self, call: EncodedCall) -> BoxFuture<'static, actor_core::Result<Vec<u8>>> {
        Box::pin(self.0.clone().route(call))
    }

    fn bounds_deadlines(&self) -> bool {
        true
    }
}

/// The gRPC face of a silo's directory partition: silent (unavailable)
/// while the silo does not serve, like its link.
#[derive(Debug, Clone)]
struct DirectoryService(Arc<Directory>);

impl DirectoryService {
    fn check(&self) -> Result<(), Status> {
        if self.0.serving.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Status::unavailable("this silo has stopped serving"))
        }
    }
}

fn decode_grain(bytes: &[u8]) -> Result<GrainId, Status> {
    actor_core::__private::codec::decode(bytes).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn reply(answer: Answer) -> Result<Response<pb::DirectoryReply>, Status> {
    Ok(Response::new(match answer {
        Ok(address) => pb::DirectoryReply {
            address: address.map(|a| a.to_pb()),
            retry: String::new(),
        },
        Err(retry) => pb::DirectoryReply {
            address: None,
            retry: if retry.is_empty() {
                "retry".into()
            } else {
                retry
            },
        },
    }))
}

#[tonic::async_trait]
impl GrainDirectory for DirectoryService {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::DirectoryReply>, Status> {
        self.check()?;
        let r = request.into_inner();
        let id = decode_grain(&r.grain)?;
        let addr = r
            .address
            .map(ActivationAddress::from_pb)
            .ok_or_else(|| Status::invalid_argument("a registration needs an address"))?;
        reply(self.0.register_local(&id, addr, r.view, r.claim))
    }

    async fn lookup(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::DirectoryReply>, Status> {
        self.check()?;
        let id = decode_grain(&request.into_inner().grain)?;
        reply(self.0.lookup_local(&id))
    }

    async fn unregister(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::DirectoryReply>, Status> {
        self.check()?;
        let r = request.into_inner();
        let id = decode_grain(&r.grain)?;
        let addr = r
            .address
            .map(ActivationAddress::from_pb)
            .ok_or_else(|| Status::invalid_argument("an unregistration needs an address"))?;
        reply(self.0.unregister_local(&id, &addr))
    }

    async fn place(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::DirectoryReply>, Status> {
        self.check()?;
        let id = decode_grain(&request.into_inner().grain)?;
        reply(self.0.place_here(&id).await)
    }

    async fn load(
        &self,
        _request: Request<pb::LoadRequest>,
    ) -> Result<Response<pb::LoadReply>, Status> {
        self.check()?;
        Ok(Response::new(pb::LoadReply {
            activations: self.0.load_of(&self.0.me.endpoint),
            generation: self.0.me.generation,
        }))
    }
}

/// Serves a silo's link, its directory partition and its stats service
/// on `listener`.
pub(crate) fn serve_member(
    link: LinkService,
    directory: Arc<Directory>,
    stats: crate::stats::StatsService,
    listener: LinkListener,
) -> tokio::task::JoinHandle<()> {
    let incoming = listener.into_incoming();
    let link = link.into_server();
    let directory = GrainDirectoryServer::new(DirectoryService(directory));
    tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(crate::transport::KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(crate::transport::KEEPALIVE_TIMEOUT))
            .add_service(link)
            .add_service(directory)
            .add_service(stats.into_server())
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(error = %e, "silo server stopped");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn silo(i: u16) -> SiloAddress {
        SiloAddress::new(format!("127.0.0.1:{}", 30_000 + i), 7)
    }

    /// A directory for silo 0 in a view of `n` silos (fencing off).
    fn directory(n: u16) -> (Arc<Directory>, Vec<SiloAddress>) {
        let view: Vec<SiloAddress> = (0..n).map(silo).collect();
        let me = view[0].clone();
        let router = StaticRouter::new(
            me.endpoint.clone(),
            view.iter().map(|a| a.endpoint.clone()).collect(),
        );
        let d = Directory::new(
            me,
            router,
            crate::transport::tcp(),
            Placements::default(),
            Duration::from_millis(200),
            crate::link::DEFAULT_MAX_FRAME,
            Arc::new(std::sync::atomic::AtomicBool::new(true)),
        );
        *d.view.write() = View::new(&view);
        (d, view)
    }

    /// Grain ids whose partition silo 0 owns.
    fn owned(d: &Directory, count: usize) -> Vec<GrainId> {
        (0..10_000i64)
            .map(|k| GrainId::new("t", k))
            .filter(|id| d.view.read().owner(id) == Some(d.me.endpoint.as_str()))
            .take(count)
            .collect()
    }

    fn at(s: &SiloAddress, activation: u64) -> ActivationAddress {
        ActivationAddress {
            silo: s.clone(),
            activation,
        }
    }

    #[test]
    fn the_first_registration_wins() {
        let (d, view) = directory(3);
        let id = owned(&d, 1).remove(0);
        let v = d.view.read().id;
        let first = d.register_local(&id, at(&view[1], 1), v, false).unwrap();
        assert_eq!(first, Some(at(&view[1], 1)));
        let second = d.register_local(&id, at(&view[2], 2), v, false).unwrap();
        assert_eq!(second, Some(at(&view[1], 1)), "the loser learns the winner");
        assert_eq!(d.lookup_local(&id).unwrap(), Some(at(&view[1], 1)));
    }

    #[test]
    fn registrations_from_another_view_or_to_the_wrong_owner_are_refused() {
        let (d, view) = directory(3);
        let id = owned(&d, 1).remove(0);
        let v = d.view.read().id;
        let err = d
            .register_local(&id, at(&view[1], 1), v + 1, false)
            .unwrap_err();
        assert!(err.contains("views differ"), "{err}");
        let stranger = SiloAddress::new("127.0.0.1:1", 1);
        let err = d
            .register_local(&id, at(&stranger, 1), v, false)
            .unwrap_err();
        assert!(err.contains("not an active silo"), "{err}");
        let other = (0..10_000i64)
            .map(|k| GrainId::new("t", k))
            .find(|g| d.view.read().owner(g) != Some(d.me.endpoint.as_str()))
            .unwrap();
        let err = d
            .register_local(&other, at(&view[1], 1), v, false)
            .unwrap_err();
        assert!(err.contains("not the owner"), "{err}");
        assert!(d.lookup_local(&other).is_err());
        assert_eq!(d.partition_len(), 0, "nothing registered by a refusal");
    }

    #[test]
    fn a_closed_fence_refuses_fresh_registrations_but_takes_claims_and_answers_winners() {
        let (d, view) = directory(3);
        let ids = owned(&d, 2);
        let v = d.view.read().id;
        d.register_local(&ids[0], at(&view[1], 1), v, false)
            .unwrap();
        // Fencing on, a view nobody has acked yet.
        d.router
            .enable_fencing(tokio::time::Instant::now() + Duration::from_secs(60));
        d.router
            .set_view(view.iter().map(|a| a.endpoint.clone()).collect(), 5);
        assert!(!d.router.may_activate());
        let err = d
            .register_local(&ids[1], at(&view[2], 2), v, false)
            .unwrap_err();
        assert!(err.contains("fenced"), "{err}");
        assert_eq!(
            d.register_local(&ids[0], at(&view[2], 2), v, false)
                .unwrap(),
            Some(at(&view[1], 1)),
            "an existing winner is answered through the fence"
        );
        assert_eq!(
            d.register_local(&ids[1], at(&view[2], 3), v, true).unwrap(),
            Some(at(&view[2], 3)),
            "a claim of a running activation is taken"
        );
        // Once everyone has acked, fresh registrations go through.
        for s in &view[1..] {
            d.router.set_acked(&s.endpoint, 5);
        }
        assert!(d.router.may_activate());
        let id = owned(&d, 3).remove(2);
        assert_eq!(
            d.register_local(&id, at(&view[1], 4), v, false).unwrap(),
            Some(at(&view[1], 4))
        );
    }

    #[tokio::test]
    async fn a_view_change_voids_the_entries_of_silos_that_left() {
        let (d, view) = directory(3);
        let v = d.view.read().id;
        let ids = owned(&d, 20);
        for id in &ids {
            d.register_local(id, at(&view[2], 1), v, false).unwrap();
        }
        d.cache.insert(GrainId::new("t", "cached"), at(&view[2], 1));
        // Silo 2 leaves.
        d.apply_view(&view[..2], Duration::from_millis(100)).await;
        assert!(
            d.cache.is_empty(),
            "cached locations on a gone silo are dropped"
        );
        let v2 = d.view.read().id;
        assert_ne!(v, v2);
        for id in &ids {
            // Owned still (rendezvous: only the gone silo's grains move)...
            assert_eq!(d.view.read().owner(id), Some(d.me.endpoint.as_str()));
            // ...but the entry is void: not looked up, replaced on register.
            assert_eq!(d.lookup_local(id).unwrap(), None);
            assert_eq!(
                d.register_local(id, at(&view[1], 9), v2, false).unwrap(),
                Some(at(&view[1], 9))
            );
        }
    }

    #[tokio::test]
    async fn hosted_grains_are_claimed_where_their_partition_moves_or_let_go() {
        let (d, view) = directory(3);
        // Grains hosted here whose partition silo 1 owns now.
        let on_1: Vec<GrainId> = (0..10_000i64)
            .map(|k| GrainId::new("t", k))
            .filter(|g| d.view.read().owner(g) == Some(view[1].endpoint.as_str()))
            .take(30)
            .collect();
        for (i, g) in on_1.iter().enumerate() {
            d.hosted.insert(g.clone(), i as u64 + 1);
        }
        // Silo 1 leaves: its partitions go to silo 0 (claimed here, no
        // RPC) or to silo 2 (nobody listens there: cannot be claimed).
        let next = [view[0].clone(), view[2].clone()];
        d.apply_view(&next, Duration::from_millis(150)).await;
        let mut here = 0;
        for (i, g) in on_1.iter().enumerate() {
            if d.view.read().owner(g) == Some(d.me.endpoint.as_str()) {
                here += 1;
                assert!(d.hosts(g), "claimed and kept");
                assert_eq!(
                    d.lookup_local(g).unwrap(),
                    Some(at(&view[0], i as u64 + 1)),
                    "registered with its own activation id"
                );
            } else {
                assert!(!d.hosts(g), "not claimable: let go");
            }
        }
        assert!(here > 0 && here < on_1.len(), "both cases met: {here}");
        // The same endpoint restarting (new generation) moves the
        // partitions it owns too.
        let g = on_1
            .iter()
            .find(|g| d.view.read().owner(g) == Some(view[2].endpoint.as_str()))
            .unwrap()
            .clone();
        d.hosted.insert(g.clone(), 99);
        let restarted = SiloAddress::new(view[2].endpoint.clone(), 8);
        d.apply_view(&[view[0].clone(), restarted], Duration::from_millis(150))
            .await;
        assert!(!d.hosts(&g), "a claim was tried at the new incarnation");
    }

    #[test]
    fn the_owner_takes_hash_placed_grains_as_it_admits_them() {
        let (d, view) = directory(3);
        let ids = owned(&d, 2);
        assert!(d.hosts_or_takes(&ids[0]));
        assert!(d.hosts(&ids[0]));
        assert_eq!(d.lookup_local(&ids[0]).unwrap().unwrap().silo, view[0]);
        // Registered elsewhere: not taken.
        let v = d.view.read().id;
        d.register_local(&ids[1], at(&view[1], 1), v, false)
            .unwrap();
        assert!(!d.hosts_or_takes(&ids[1]));
        // A grain whose partition is elsewhere is never taken.
        let other = (0..10_000i64)
            .map(|k| GrainId::new("t", k))
            .find(|g| d.view.read().owner(g) != Some(d.me.endpoint.as_str()))
            .unwrap();
        assert!(!d.hosts_or_takes(&other));
    }

    #[tokio::test]
    async fn the_service_refuses_garbage_and_is_silent_when_not_serving() {
        let (d, _) = directory(3);
        let svc = DirectoryService(d.clone());
        let garbage = pb::LookupRequest {
            grain: vec![0xff; 5],
            view: 0,
        };
        let err = svc.lookup(Request::new(garbage)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let no_address = pb::RegisterRequest {
            grain: actor_core::__private::codec::encode(&GrainId::new("t", 1)).unwrap(),
            address: None,
            view: 0,
            claim: false,
        };
        let err = svc.register(Request::new(no_address)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(d.partition_len(), 0);
        d.serving.store(false, Ordering::SeqCst);
        let err = svc
            .load(Request::new(pb::LoadRequest {}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
    }

    proptest! {
        /// Whatever order registrations and claims of one grain arrive in
        /// within one view, every answer names the same activation: the
        /// first one accepted.
        #[test]
        fn every_answer_names_the_first_accepted_registration(
            attempts in proptest::collection::vec((0u16..4, any::<bool>(), 1u64..1000), 1..30),
            key in 0usize..20,
        ) {
            let (d, view) = directory(4);
            let id = owned(&d, 20).remove(key);
            let v = d.view.read().id;
            let mut winner: Option<ActivationAddress> = None;
            for (s, claim, act) in attempts {
                let answer = d.register_local(&id, at(&view[s as usize], act), v, claim).unwrap();
                let answer = answer.unwrap();
                let first = winner.get_or_insert_with(|| answer.clone());
                prop_assert_eq!(&answer, first);
            }
        }
    }
}
