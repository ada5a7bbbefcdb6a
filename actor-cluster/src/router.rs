//! Deadline helpers every router of this crate shares, and
//! [`StaticRouter`], the test router: calls routed over silo links by
//! rendezvous hashing over a fixed list of silo endpoints, with no
//! membership, directory or fencing. It is the link on its own, for
//! tests, benchmarks and demos of the transport; a `ClusterSilo` routes
//! through the grain directory (`directory/`), whose view, fence and lease
//! live in `fence.rs`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actor_core::{EncodedCall, GrainId, Router, Silo};
use futures::future::BoxFuture;

use crate::hash::MemberSet;
use crate::link::LinkPool;
use crate::transport::Connector;

/// A test router: routes calls to the silo that owns each grain among a
/// fixed set of silos (rendezvous hashing over their endpoints, so every
/// silo computes the same owner), over one link per remote silo, opened on
/// first use and reopened after it breaks. It keeps no membership, no
/// directory and no fence: a grain is active on its owner, and moves when
/// [`set_members`](StaticRouter::set_members) changes the list. Build a
/// silo with it as its [`Router`] (`SiloBuilder::router(router.clone())`),
/// then [`attach`](StaticRouter::attach) the silo.
pub struct StaticRouter {
    me: String,
    members: parking_lot::RwLock<Arc<MemberSet>>,
    links: Arc<LinkPool>,
    silo: OnceLock<Silo>,
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
            links: Arc::new(LinkPool::without_connector(
                crate::link::DEFAULT_MAX_FRAME,
                Duration::from_secs(2),
                false,
            )),
            silo: OnceLock::new(),
        })
    }

    /// Gives the router its own silo, for calls it owns.
    pub fn attach(&self, silo: &Silo) {
        let _ = self.silo.set(silo.clone());
    }

    /// Reaches other silos through `connector` instead of TCP (set once,
    /// before the first call; later calls are ignored).
    pub fn use_connector(&self, connector: Arc<dyn Connector>) {
        self.links.use_connector(connector);
    }

    /// The endpoint owning `id` in the current member list.
    pub fn owner(&self, id: &GrainId) -> String {
        let members = self.members.read().clone();
        members.owner(id).unwrap_or(&self.me).to_owned()
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

    /// Replaces the member list. Grains are placed over the new list from
    /// the next call on; nothing fences the move (a grain active on its
    /// old owner stays active there until it is collected).
    pub fn set_members(&self, members: Vec<String>) {
        let mut members = members;
        members.sort();
        members.dedup();
        *self.members.write() = Arc::new(MemberSet::new(members));
    }
}

impl Router for StaticRouter {
    fn is_local(&self, id: &GrainId) -> bool {
        self.owns(id)
    }

    /// Routes a call. The common case (another silo owns the grain and its
    /// link is up) returns the link's call future without wrapping it in
    /// the slower paths' state, which is large (a connection attempt) and
    /// would be copied with every call.
    fn invoke(&self, call: EncodedCall) -> BoxFuture<'static, actor_core::Result<Vec<u8>>> {
        let link = {
            let members = self.members.read();
            match members.owner(&call.target) {
                None => None,
                Some(owner) if owner == self.me => None,
                Some(owner) => match self.links.live(owner) {
                    Some(link) => Some(Ok(link)),
                    None => Some(Err(owner.to_owned())),
                },
            }
        };
        // The link fails a call at its deadline by itself; the slower
        // paths (connecting) are bounded here, so that this router can
        // promise `bounds_deadlines`.
        match link {
            None => {
                let silo = self.silo.get().cloned();
                let (deadline, late) = (deadline_of(&call), timeout_of(&call));
                Box::pin(async move {
                    let silo = silo.ok_or(actor_core::Error::SiloStopped)?;
                    by(deadline, silo.invoke_encoded(call))
                        .await
                        .unwrap_or_else(|| Err(late()))
                })
            }
            Some(Ok(link)) => Box::pin(link.call_owned(call)),
            Some(Err(owner)) => {
                let links = self.links.clone();
                let (deadline, late) = (deadline_of(&call), timeout_of(&call));
                Box::pin(async move {
                    let sent = async {
                        let link = links.get(&owner).await.map_err(|e| {
                            actor_core::Error::SiloUnavailable {
                                silo: format!("{owner} ({e})"),
                            }
                        })?;
                        link.call(call).await
                    };
                    by(deadline, sent).await.unwrap_or_else(|| Err(late()))
                })
            }
        }
    }

    fn bounds_deadlines(&self) -> bool {
        true
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
