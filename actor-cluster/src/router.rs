//! Routing calls to the silo that owns a grain, over silo links.
//!
//! This first router places grains by rendezvous hashing over a fixed
//! list of silo endpoints: every silo computes the same owner for a grain
//! id without asking anyone. It is the transport's test bed; a
//! `ClusterSilo` routes through the grain directory (`directory.rs`) and
//! uses this router for its view, fence, lease and hash ring.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actor_core::{EncodedCall, GrainId, GrainKey, Router, Silo};
use dashmap::DashMap;
use futures::future::BoxFuture;
// Tokio's clock, not the standard one: a simulator (turmoil) controls it.
use tokio::time::Instant;

use crate::link::{Link, LinkOptions};
use crate::transport::Connector;

/// A stable 64-bit hash (FNV-1a): the same on every silo and release,
/// unlike the standard library's seeded hashers.
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    Fnv::new().bytes(bytes).finish()
}

/// FNV-1a, fed piece by piece (no buffer to build).
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    const fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(mut self, bytes: &[u8]) -> Self {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }

    fn finish(self) -> u64 {
        self.0
    }
}

/// A 64-bit finalizer (splitmix64): FNV alone barely mixes inputs that
/// differ in a few bytes, such as endpoints on one host.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of a grain id, the same on every silo and release,
/// computed from the id's parts without formatting or allocating.
///
/// It is FNV-1a over: the grain type's UTF-8 bytes; a `0xff` byte (never
/// part of UTF-8, so it ends the type name); a tag byte for the key's kind
/// (`1` integer, `2` string, `3` UUID, `4` integer + extension, `5` UUID +
/// extension); the key: an integer as its 8 little-endian bytes, a UUID as
/// its 16 bytes, a string as its UTF-8 bytes, and for compound keys the
/// integer or UUID followed by the extension's UTF-8 bytes; and then
/// finalized with splitmix64. The integer key 42 and the string key "42"
/// hash differently.
pub(crate) fn grain_hash(id: &GrainId) -> u64 {
    let h = Fnv::new()
        .bytes(id.grain_type.as_str().as_bytes())
        .bytes(&[0xff]);
    let h = match &id.key {
        GrainKey::Int(i) => h.bytes(&[1]).bytes(&i.to_le_bytes()),
        GrainKey::Str(s) => h.bytes(&[2]).bytes(s.as_bytes()),
        GrainKey::Uuid(u) => h.bytes(&[3]).bytes(u.as_bytes()),
        GrainKey::IntCompound(i, e) => h.bytes(&[4]).bytes(&i.to_le_bytes()).bytes(e.as_bytes()),
        GrainKey::UuidCompound(u, e) => h.bytes(&[5]).bytes(u.as_bytes()).bytes(e.as_bytes()),
    };
    mix(h.finish())
}

/// The weight of `member` for the grain whose [`grain_hash`] is `grain`
/// in rendezvous hashing: splitmix64 of the FNV-1a hash of the member's
/// UTF-8 bytes followed by the grain hash's 8 little-endian bytes.
fn weight(member: &str, grain: u64) -> u64 {
    mix(Fnv::new()
        .bytes(member.as_bytes())
        .bytes(&grain.to_le_bytes())
        .finish())
}

/// The owner of `id` among `members` by rendezvous (highest random weight)
/// hashing: removing a member moves only the grains it owned.
///
/// A stable function of the id and the member endpoints (see
/// `grain_hash` and the weight above; ties, which need equal 64-bit
/// weights, go to the greater endpoint), so every silo computes the same
/// owner; it neither formats nor allocates.
pub fn rendezvous_owner<'a>(id: &GrainId, members: &'a [String]) -> Option<&'a str> {
    let grain = grain_hash(id);
    members
        .iter()
        .max_by_key(|m| (weight(m, grain), m.as_str()))
        .map(String::as_str)
}

/// A member list with each endpoint's share of [`weight`] hashed once:
/// the owner of a grain is looked up on every call, the list changes with
/// the membership only. Gives the same owners as [`rendezvous_owner`].
struct MemberSet {
    list: Vec<String>,
    /// FNV-1a state after each member's bytes.
    hashed: Vec<Fnv>,
}

impl MemberSet {
    fn new(list: Vec<String>) -> Self {
        let hashed = list
            .iter()
            .map(|m| Fnv::new().bytes(m.as_bytes()))
            .collect();
        MemberSet { list, hashed }
    }

    fn owner(&self, id: &GrainId) -> Option<&str> {
        let grain = grain_hash(id).to_le_bytes();
        self.list
            .iter()
            .zip(&self.hashed)
            .max_by_key(|(m, h)| (mix(h.bytes(&grain).finish()), m.as_str()))
            .map(|(m, _)| m.as_str())
    }
}

/// Routes calls to the silo that owns each grain among a fixed set of
/// silos, over one [`Link`] per remote silo (opened on first use and
/// reopened after it breaks).
pub struct StaticRouter {
    me: String,
    members: parking_lot::RwLock<Arc<MemberSet>>,
    fence: parking_lot::Mutex<Fence>,
    links: DashMap<String, Arc<Link>, foldhash::fast::RandomState>,
    connecting: tokio::sync::Mutex<()>,
    silo: OnceLock<Silo>,
    connector: OnceLock<Arc<dyn Connector>>,
    max_frame: usize,
    connect_timeout: Duration,
}

impl std::fmt::Debug for StaticRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticRouter")
            .field("me", &self.me)
            .field("members", &self.members())
            .finish_non_exhaustive()
    }
}

impl StaticRouter {
    /// A router for the silo at `me` among `members` (which include `me`).
    /// Call [`attach`](StaticRouter::attach) with the started silo.
    pub fn new(me: impl Into<String>, members: Vec<String>) -> Arc<Self> {
        let mut members = members;
        members.sort();
        members.dedup();
        Arc::new(StaticRouter {
            me: me.into(),
            members: parking_lot::RwLock::new(Arc::new(MemberSet::new(members))),
            fence: parking_lot::Mutex::new(Fence::default()),
            links: DashMap::default(),
            connecting: tokio::sync::Mutex::new(()),
            silo: OnceLock::new(),
            connector: OnceLock::new(),
            max_frame: crate::link::DEFAULT_MAX_FRAME,
            connect_timeout: Duration::from_secs(2),
        })
    }

    /// Gives the router its own silo, for calls it owns.
    pub fn attach(&self, silo: &Silo) {
        let _ = self.silo.set(silo.clone());
    }

    /// Reaches other silos through `connector` instead of TCP (set once,
    /// before the first call; later calls are ignored).
    pub fn use_connector(&self, connector: Arc<dyn Connector>) {
        let _ = self.connector.set(connector);
    }

    /// The endpoint owning `id` in the current member list.
    pub fn owner(&self, id: &GrainId) -> String {
        let members = self.members.read().clone();
        members.owner(id).unwrap_or(&self.me).to_owned()
    }

    /// Whether this silo may activate grains now: with fencing on, only
    /// when every member has applied the current view, dead silos' leases
    /// have run out, and this silo's own lease is valid.
    pub fn may_activate(&self) -> bool {
        let members = self.members.read().clone();
        self.fence
            .lock()
            .open(&self.me, &members.list, Instant::now())
    }

    /// Turns fencing on (the membership agent does): from now on, new
    /// activations wait for every member to apply the current view, for
    /// dead silos' leases to run out, and for this silo's own lease.
    pub fn enable_fencing(&self, lease_until: Instant) {
        let mut f = self.fence.lock();
        f.enabled = true;
        f.lease_until = Some(lease_until);
    }

    /// Extends this silo's lease (after a successful read of the table that
    /// shows it active).
    pub fn renew_lease(&self, until: Instant) {
        let mut f = self.fence.lock();
        if f.lease_until.is_none_or(|t| until > t) {
            f.lease_until = Some(until);
        }
    }

    /// Whether this silo's lease is still valid.
    pub fn lease_valid(&self) -> bool {
        let f = self.fence.lock();
        !f.enabled || f.lease_until.is_some_and(|t| Instant::now() < t)
    }

    /// Records the view version that `endpoint` reports as applied.
    pub fn set_acked(&self, endpoint: &str, version: i64) {
        let mut f = self.fence.lock();
        let v = f.acked.entry(endpoint.to_owned()).or_insert(version);
        *v = (*v).max(version);
    }

    /// Blocks new activations until `until` (a dead silo's lease has run
    /// out by then).
    pub fn hold_until(&self, until: Instant) {
        self.fence.lock().holds.push(until);
    }

    /// Whether this silo owns `id` (no allocation: the local fast path).
    pub fn owns(&self, id: &GrainId) -> bool {
        let members = self.members.read();
        members.owner(id).is_none_or(|o| o == self.me)
    }

    /// The silos grains are placed on now.
    pub fn members(&self) -> Vec<String> {
        self.members.read().list.clone()
    }

    /// Replaces the member list (the membership agent calls this when the
    /// set of active silos changes). Grains are placed over the new list
    /// from the next call on.
    pub fn set_members(&self, members: Vec<String>) {
        self.set_view(members, 0);
    }

    /// Replaces the member list with the view read at table `version`:
    /// new activations wait until every member has applied it.
    pub fn set_view(&self, members: Vec<String>, version: i64) {
        let mut members = members;
        members.sort();
        members.dedup();
        let mut f = self.fence.lock();
        f.view_since = f.view_since.max(version);
        *self.members.write() = Arc::new(MemberSet::new(members));
    }

    /// The open link to `endpoint`, if there is one and it is up.
    fn live_link(&self, endpoint: &str) -> Option<Arc<Link>> {
        self.links
            .get(endpoint)
            .filter(|l| l.is_alive())
            .map(|l| l.clone())
    }

    async fn link(&self, endpoint: &str) -> actor_core::Result<Arc<Link>> {
        if let Some(l) = self.live_link(endpoint) {
            return Ok(l);
        }
        // One connection attempt at a time, so a burst of calls opens one
        // stream, not one each.
        let _guard = self.connecting.lock().await;
        if let Some(l) = self.live_link(endpoint) {
            return Ok(l);
        }
        let connector = self
            .connector
            .get()
            .cloned()
            .unwrap_or_else(crate::transport::tcp);
        let options = LinkOptions {
            connector,
            max_frame: self.max_frame,
            timeout: self.connect_timeout,
            directed: false,
        };
        let link = Link::connect(endpoint, options).await.map_err(|e| {
            actor_core::Error::SiloUnavailable {
                silo: format!("{endpoint} ({e})"),
            }
        })?;
        let link = Arc::new(link);
        self.links.insert(endpoint.to_owned(), link.clone());
        Ok(link)
    }

    /// Routes a call. The common case (another silo owns the grain and its
    /// link is up) returns the link's call future without wrapping it in
    /// the slower paths' state, which is large (a connection attempt) and
    /// would be copied with every call.
    fn route(
        self: &Arc<Self>,
        call: EncodedCall,
    ) -> BoxFuture<'static, actor_core::Result<Vec<u8>>> {
        if !self.lease_valid() {
            // Cut off from the table: this silo may be declared dead, so it
            // neither serves nor places grains until it can read again.
            let e = actor_core::Error::SiloUnavailable {
                silo: format!("{} (membership lease expired)", self.me),
            };
            return Box::pin(std::future::ready(Err(e)));
        }
        let link = {
            let members = self.members.read();
            match members.owner(&call.target) {
                None => None,
                Some(owner) if owner == self.me => None,
                Some(owner) => match self.live_link(owner) {
                    Some(link) => Some(Ok(link)),
                    None => Some(Err(owner.to_owned())),
                },
            }
        };
        // The link fails a call at its deadline by itself; the slower
        // paths (waiting to activate here, connecting) are bounded here,
        // so that `StaticRouting` can promise `bounds_deadlines`.
        match link {
            None => {
                let (deadline, late) = (deadline_of(&call), timeout_of(&call));
                let run = self.clone().run_here(call);
                Box::pin(async move { by(deadline, run).await.unwrap_or_else(|| Err(late())) })
            }
            Some(Ok(link)) => Box::pin(link.call_owned(call)),
            Some(Err(owner)) => {
                let me = self.clone();
                let (deadline, late) = (deadline_of(&call), timeout_of(&call));
                Box::pin(async move {
                    let sent = async { me.link(&owner).await?.call(call).await };
                    by(deadline, sent).await.unwrap_or_else(|| Err(late()))
                })
            }
        }
    }

    /// Runs a call this silo owns.
    async fn run_here(self: Arc<Self>, call: EncodedCall) -> actor_core::Result<Vec<u8>> {
        let silo = self.silo.get().ok_or(actor_core::Error::SiloStopped)?;
        // A grain may not be activated here before the silo that held it
        // has let it go: wait (within the call's deadline). A grain
        // already active here needs no wait.
        let until = tokio::time::Instant::now() + call.timeout;
        while !silo.is_active(&call.target) && !self.may_activate() {
            if tokio::time::Instant::now() >= until {
                return Err(actor_core::Error::Timeout {
                    grain: call.target,
                    method: call.method,
                    timeout: call.timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        silo.invoke_encoded(call).await
    }
}

/// What keeps two silos from activating one grain while ownership moves.
///
/// With fencing on, a silo activates a grain only when (1) every member of
/// its current view reports having applied that view (so the previous owner
/// has deactivated what it lost), (2) the leases of silos that were declared
/// dead have run out (so a cut-off silo has stopped serving), and (3) its
/// own lease is valid (it read the table recently and saw itself active).
#[derive(Debug, Default)]
pub(crate) struct Fence {
    enabled: bool,
    view_since: i64,
    acked: std::collections::HashMap<String, i64>,
    holds: Vec<Instant>,
    lease_until: Option<Instant>,
}

impl Fence {
    fn open(&mut self, me: &str, members: &[String], now: Instant) -> bool {
        if !self.enabled {
            return true;
        }
        if self.lease_until.is_none_or(|t| now >= t) {
            return false;
        }
        self.holds.retain(|t| *t > now);
        if !self.holds.is_empty() {
            return false;
        }
        members
            .iter()
            .filter(|m| m.as_str() != me)
            .all(|m| self.acked.get(m).is_some_and(|v| *v >= self.view_since))
    }
}

/// The deadline of `call`, routed now.
fn deadline_of(call: &EncodedCall) -> tokio::time::Instant {
    tokio::time::Instant::now() + call.timeout
}

/// `fut`'s output, or `None` once `deadline` has passed. A future that is
/// ready when first polled arms no timer. (The routers' bound on the
/// steps of a call that are not on its link.)
pub(crate) async fn by<T>(
    deadline: tokio::time::Instant,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::time::timeout_at(deadline, fut).await.ok()
}

/// The timeout error of `call`, for when its deadline passes.
pub(crate) fn timeout_of(call: &EncodedCall) -> impl FnOnce() -> actor_core::Error + use<> {
    let (grain, method, timeout) = (call.target.clone(), call.method.clone(), call.timeout);
    move || actor_core::Error::Timeout {
        grain,
        method,
        timeout,
    }
}

/// The `Router` a silo is built with: a handle to the shared router.
#[derive(Debug, Clone)]
pub struct StaticRouting(pub Arc<StaticRouter>);

impl Router for StaticRouting {
    fn is_local(&self, id: &GrainId) -> bool {
        self.0.owns(id) && self.0.may_activate()
    }

    fn invoke(&self, call: EncodedCall) -> BoxFuture<'static, actor_core::Result<Vec<u8>>> {
        self.0.route(call)
    }

    fn bounds_deadlines(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Removing a member moves only the grains it owned.
        #[test]
        fn rendezvous_moves_only_the_removed_members_grains(keys in proptest::collection::vec(any::<i64>(), 1..100), gone in 0usize..4) {
            let members: Vec<String> = (0..4).map(|i| format!("10.0.0.{i}:1")).collect();
            let fewer: Vec<String> = members.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, m)| m.clone()).collect();
            for k in keys {
                let id = GrainId::new("g", k);
                let before = rendezvous_owner(&id, &members).unwrap();
                let after = rendezvous_owner(&id, &fewer).unwrap();
                if before != members[gone] {
                    prop_assert_eq!(before, after);
                }
            }
        }
    }

    /// Pinned values (checked against an independent implementation of
    /// the documented definition): every silo and every release must
    /// place grains the same way, so these may never change.
    #[test]
    fn grain_hashes_and_owners_never_change() {
        let u = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let pinned = [
            (GrainId::new("counter", 42), 0x2d07_b4f5_9a0f_8dfb_u64),
            (GrainId::new("counter", "42"), 0xbf8f_e1ce_5292_4d8d),
            (GrainId::new("counter", u), 0xfce8_48ac_89f9_e6b5),
            (GrainId::new("counter", (42, "x")), 0x763d_6925_00d7_618a),
            (GrainId::new("counter", (u, "x")), 0x49ad_2959_438f_c837),
        ];
        for (id, hash) in pinned {
            assert_eq!(grain_hash(&id), hash, "{id:?}");
        }
        let members: Vec<String> = (0..3).map(|i| format!("10.0.0.{i}:11111")).collect();
        let owners: Vec<usize> = (0..16)
            .map(|k| {
                let owner = rendezvous_owner(&GrainId::new("g", k), &members).unwrap();
                members.iter().position(|m| m == owner).unwrap()
            })
            .collect();
        assert_eq!(owners, [1, 2, 2, 0, 2, 0, 2, 0, 0, 0, 1, 1, 1, 2, 0, 0]);
    }

    fn any_key() -> impl Strategy<Value = GrainKey> {
        prop_oneof![
            any::<i64>().prop_map(GrainKey::Int),
            ".*".prop_map(GrainKey::from),
            any::<u128>().prop_map(|u| GrainKey::Uuid(uuid::Uuid::from_u128(u))),
            (any::<i64>(), ".*").prop_map(|(i, s)| GrainKey::int_compound(i, s)),
            (any::<u128>(), ".*")
                .prop_map(|(u, s)| GrainKey::uuid_compound(uuid::Uuid::from_u128(u), s)),
        ]
    }

    proptest! {
        /// The owner depends only on the id's value and the set of
        /// members: not on how the id was built (a static or a shared type
        /// name, a decoded copy) nor on the members' order.
        #[test]
        fn the_owner_is_a_function_of_the_id_and_the_members(
            ty in "[a-z.]{1,12}", key in any_key(),
            hosts in proptest::collection::btree_set(0u16..1000, 1..8),
            rotate in 0usize..8,
        ) {
            let built = GrainId::new(ty.clone(), key.clone());
            let decoded: GrainId =
                actor_core::__private::codec::decode(&actor_core::__private::codec::encode(&built).unwrap()).unwrap();
            let stat = GrainId::new(&*Box::leak(ty.into_boxed_str()), key);
            prop_assert_eq!(grain_hash(&built), grain_hash(&decoded));
            prop_assert_eq!(grain_hash(&built), grain_hash(&stat));
            let members: Vec<String> = hosts.iter().map(|h| format!("10.1.{}.{}:7000", h / 256, h % 256)).collect();
            let mut turned = members.clone();
            let by = rotate % turned.len();
            turned.rotate_left(by);
            turned.reverse();
            let owner = rendezvous_owner(&built, &members);
            prop_assert_eq!(owner, rendezvous_owner(&decoded, &turned));
            prop_assert!(owner.is_some_and(|o| members.iter().any(|m| m == o)));
            // The router's member set (members hashed ahead) agrees.
            let set = MemberSet::new(turned);
            prop_assert_eq!(owner, set.owner(&built));
        }

        /// Any set of members shares the grains about evenly.
        #[test]
        fn grains_spread_evenly_over_any_members(
            hosts in proptest::collection::btree_set(0u32..1_000_000, 2..7),
            port in 1000u16..60000, base in any::<i64>(), ty in "[a-z]{1,8}",
        ) {
            let members: Vec<String> = hosts
                .iter()
                .map(|h| format!("10.{}.{}.{}:{port}", h >> 16, (h >> 8) & 255, h & 255))
                .collect();
            let grains = 600 * members.len();
            let mut counts = std::collections::BTreeMap::new();
            for k in 0..grains as i64 {
                let id = GrainId::new(ty.clone(), base.wrapping_add(k));
                *counts.entry(rendezvous_owner(&id, &members).unwrap()).or_insert(0usize) += 1;
            }
            prop_assert_eq!(counts.len(), members.len());
            // A fair share is 600; a bad hash (or one that ignores a part
            // of the id) is far off.
            prop_assert!(counts.values().all(|c| (450..750).contains(c)), "{:?}", counts);
        }
    }

    #[test]
    fn the_hash_is_stable_across_releases() {
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"grain"), stable_hash(b"grain"));
        assert_ne!(stable_hash(b"a"), stable_hash(b"b"));
        // Spread: 4 members each own a fair share of 4,000 grains.
        let members: Vec<String> = (0..4).map(|i| format!("127.0.0.1:4000{i}")).collect();
        let mut counts = std::collections::HashMap::new();
        for k in 0..4000 {
            *counts
                .entry(rendezvous_owner(&GrainId::new("g", k), &members).unwrap())
                .or_insert(0) += 1;
        }
        assert!(
            counts.values().all(|c| (700..1300).contains(c)),
            "{counts:?}"
        );
    }
}
