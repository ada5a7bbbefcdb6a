//! The silo: the host of grain activations. It owns its registry of grain
//! types, its activation table, its filters, metrics and configuration;
//! nothing is process-wide, so several silos live side by side in one
//! process without seeing each other.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use dashmap::DashMap;
use serde::de::DeserializeOwned;
use tokio::time::{Duration, Instant};

use crate::activation::{self, Activation, Enqueued, Home, Req};
use crate::context::{ChainFrame, LocalCallId, ambient};
use crate::envelope::{CallHeader, EncodedCall, EncodedReply};
use crate::error::{Error, Result};
use crate::filter::{IncomingCallFilter, OutgoingCall, OutgoingCallFilter};
use crate::grain::{DeactivationReason, Grain, GrainMethods, GrainOptions};
use crate::id::{GrainId, GrainKey, GrainType};
use crate::metrics::MetricsSnapshot;
use crate::reference::GrainRef;
use crate::registry::{ActivationContext, ErasedType, Factory, TypeEntry, TypeHandle};
use crate::router::Router;
use crate::worker::WorkerPool;

/// Default deadline of a call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a one-way call may wait in queues: in effect, forever.
pub(crate) const ONE_WAY_LIFETIME: Duration = Duration::from_secs(365 * 86_400);

/// The deadline of every one-way call made on a silo: this long after the
/// silo started (no clock read per one-way call).
const ONE_WAY_HORIZON: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Default idle age after which an activation is collected (as Orleans).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// An entry of the activation table: one activation, or a stateless
/// worker pool.
trait Slot: Send + Sync + 'static {
    fn as_any(&self) -> &dyn Any;
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    /// Starts deactivation of what is idle (or of everything, if `force`).
    fn collect(
        self: Arc<Self>,
        silo: &Silo,
        now: Instant,
        default_age: Duration,
        force: Option<DeactivationReason>,
    );
    fn activations(&self) -> usize;
}

impl<G: Grain> Slot for Activation<G> {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
    fn collect(
        self: Arc<Self>,
        silo: &Silo,
        now: Instant,
        default_age: Duration,
        force: Option<DeactivationReason>,
    ) {
        let age = self.entry.options.idle_timeout.unwrap_or(default_age);
        if self.try_deactivate(now, age, force) {
            activation::spawn(self, silo.clone());
        }
    }
    fn activations(&self) -> usize {
        1
    }
}

impl<G: Grain> Slot for WorkerPool<G> {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
    fn collect(
        self: Arc<Self>,
        silo: &Silo,
        now: Instant,
        default_age: Duration,
        force: Option<DeactivationReason>,
    ) {
        for w in self.workers() {
            w.collect(silo, now, default_age, force);
        }
        if self.is_empty() {
            silo.remove_pool(&self.id_for_removal(), &self);
        }
    }
    fn activations(&self) -> usize {
        self.workers().len()
    }
}

impl<G: Grain> WorkerPool<G> {
    fn id_for_removal(&self) -> GrainId {
        self.id().clone()
    }
}

struct Config {
    name: String,
    call_timeout: Duration,
    idle_timeout: Duration,
    shutdown_timeout: Duration,
}

pub(crate) struct SiloInner {
    config: Config,
    // foldhash: looked up on every serialized call (SipHash cost more
    // than the lookup's other work); built once, from registered names.
    types: FastMap<TypeId, Arc<dyn ErasedType>>,
    by_name: FastMap<GrainType, Arc<dyn ErasedType>>,
    // A seeded fast hasher: ids come from callers, so keep it keyed.
    table: DashMap<GrainId, Arc<dyn Slot>, foldhash::fast::RandomState>,
    incoming: Vec<Arc<dyn IncomingCallFilter>>,
    outgoing: Vec<Arc<dyn OutgoingCallFilter>>,
    router: Option<Arc<dyn Router>>,
    extensions: Extensions,
    /// No new activations; set by shutdown.
    stopping: AtomicBool,
    /// No calls at all.
    stopped: AtomicBool,
    /// The deadline of one-way calls (see `ONE_WAY_HORIZON`).
    one_way_deadline: Instant,
}

/// A running silo. Cheap to clone (a handle); the silo keeps running until
/// [`shutdown`](Silo::shutdown).
///
/// ```
/// use actor_core::prelude::*;
/// # #[derive(Default)] struct Echo;
/// # impl Grain for Echo { const TYPE_NAME: &'static str = "echo"; }
/// # impl GrainMethods for Echo { fn register(m: &mut Methods<Self>) { m.add::<Say, _>(); } }
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Say(String);
/// # impl Message for Say { type Reply = String; const NAME: &'static str = "say"; }
/// # impl Handler<Say> for Echo {
/// #     async fn handle(&mut self, m: Say, _: &GrainContext<Self>) -> String { m.0 }
/// # }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> actor_core::Result<()> {
/// let silo = Silo::builder().grain::<Echo>().start().await?;
/// let echo = silo.get_grain::<Echo>("a");
/// assert_eq!(echo.ask(Say("hi".into())).await?, "hi");
/// silo.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Silo {
    inner: Arc<SiloInner>,
}

impl fmt::Debug for Silo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Silo")
            .field("name", &self.inner.config.name)
            .field("activations", &self.activation_count())
            .finish_non_exhaustive()
    }
}

thread_local! {
    static DECODING: RefCell<Option<Silo>> = const { RefCell::new(None) };
}

pub(crate) fn decoding_silo() -> Option<Silo> {
    DECODING.with(|d| d.borrow().clone())
}

/// The grain type `name` as registered on the silo decoding on this
/// thread, if it has one by that name (its name is static: no allocation).
pub(crate) fn registered_type(name: &str) -> Option<GrainType> {
    DECODING.with(|d| {
        let silo = d.borrow();
        let (ty, _) = silo.as_ref()?.inner.by_name.get_key_value(name)?;
        Some(ty.clone())
    })
}

impl Silo {
    /// Starts configuring a silo.
    pub fn builder() -> SiloBuilder {
        SiloBuilder::new()
    }

    /// The silo's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// A reference to the grain of type `G` with `key`. Nothing is activated
    /// until the first call.
    pub fn get_grain<G: Grain>(&self, key: impl Into<GrainKey>) -> GrainRef<G> {
        GrainRef::new(GrainId::new(G::TYPE_NAME, key), self.clone())
    }

    /// The extension of type `T` given to the builder, if any (see
    /// [`SiloBuilder::extension`]).
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.inner
            .extensions
            .get(&TypeId::of::<T>())
            .and_then(|b| b.downcast_ref::<T>())
    }

    /// The default call deadline.
    pub fn call_timeout(&self) -> Duration {
        self.inner.config.call_timeout
    }

    /// A snapshot of the silo's metrics.
    pub fn metrics(&self) -> MetricsSnapshot {
        let mut grain_types: Vec<_> = self
            .inner
            .by_name
            .values()
            .map(|t| t.metrics().snapshot())
            .collect();
        grain_types.sort_by(|a, b| a.grain_type.cmp(&b.grain_type));
        MetricsSnapshot {
            silo: self.inner.config.name.clone(),
            grain_types,
        }
    }

    /// Activations in the table now (stateless workers counted one by one),
    /// including ones being activated or deactivated.
    pub fn activation_count(&self) -> usize {
        self.inner.table.iter().map(|e| e.activations()).sum()
    }

    /// Whether the grain has an activation (or worker pool) on this silo.
    pub fn is_active(&self, id: &GrainId) -> bool {
        self.inner.table.contains_key(id)
    }

    /// The grain types registered on this silo.
    pub fn grain_types(&self) -> Vec<GrainType> {
        let mut v: Vec<_> = self.inner.by_name.keys().cloned().collect();
        v.sort();
        v
    }

    /// Decodes a value with the wire codec; [`GrainRef`]s inside it bind to
    /// this silo.
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        let prev = DECODING.with(|d| d.replace(Some(self.clone())));
        let out = crate::codec::decode(bytes);
        DECODING.with(|d| *d.borrow_mut() = prev);
        out
    }

    /// Runs a serialized call (from a transport) and returns the encoded
    /// reply; a one-way call returns an empty reply once queued.
    pub async fn invoke_encoded(&self, call: EncodedCall) -> Result<Vec<u8>> {
        let (one_way, timeout) = (call.one_way, call.timeout);
        let now = Instant::now();
        let (queued, target, method) = self.queue_encoded_at(call, now, now + timeout);
        let rx = queued?;
        if one_way {
            return Ok(Vec::new());
        }
        match tokio::time::timeout_at(now + timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(Error::SiloStopped),
            Err(_) => Err(Error::Timeout {
                grain: target,
                method,
                timeout,
            }),
        }
    }

    /// Queues a serialized call (from a transport) on its grain now, so
    /// calls are queued in the order of calls to this method, and returns
    /// its encoded reply (empty at once for a one-way call). Unlike
    /// [`invoke_encoded`](Self::invoke_encoded), the reply has no timer of
    /// its own: the grain's queue fails the call if its deadline passes
    /// before it runs, and the caller enforces the deadline.
    pub fn queue_encoded(&self, call: EncodedCall) -> Result<EncodedReply> {
        let one_way = call.one_way;
        let now = Instant::now();
        let deadline = now + call.timeout;
        let rx = self.queue_encoded_at(call, now, deadline).0?;
        Ok(EncodedReply((!one_way).then_some(rx)))
    }

    /// Queues `call` (received at `now`) with `deadline`; gives back its
    /// target and method. If the grain's activation was idle, its turn
    /// runs here, on the caller's thread, as far as it gets without
    /// waiting (as for a local caller: see `activation::run_now`).
    fn queue_encoded_at(
        &self,
        call: EncodedCall,
        now: Instant,
        deadline: Instant,
    ) -> (
        Result<tokio::sync::oneshot::Receiver<Result<Vec<u8>>>>,
        GrainId,
        String,
    ) {
        let Some(ty) = self
            .inner
            .by_name
            .get(call.target.grain_type.as_str())
            .cloned()
        else {
            let e = Error::UnknownGrainType {
                type_name: call.target.grain_type.to_string(),
            };
            return (Err(e), call.target, call.method);
        };
        let chain = call.chain.into_iter().fold(None, |parent, (grain, call)| {
            Some(Arc::new(ChainFrame {
                grain,
                call,
                parent,
            }))
        });
        let trace = call
            .trace
            .or_else(|| crate::trace::external_parent(&call.context));
        // The caller says who it is; a caller that does not (an older
        // transport) is the innermost frame of its chain.
        let sender = call
            .sender
            .or_else(|| chain.as_ref().map(|f| f.grain.clone()));
        let mut parts = Some((call.context, chain));
        let mut make_header = |method: &'static str| {
            let (context, chain) = parts.take().unwrap_or_default();
            CallHeader {
                // The turn's id is this silo's own, never the sender's: a
                // peer's id could collide with (or be chosen to match) a
                // turn running here.
                call_id: LocalCallId::next(),
                method,
                deadline,
                timeout: call.timeout,
                chain: if call.one_way { None } else { chain },
                context,
                sender: sender.clone(),
                span: crate::trace::current_span(),
                timer: false,
                trace,
            }
        };
        let prev = DECODING.with(|d| d.replace(Some(self.clone())));
        let queued = ty.dispatch_encoded(
            self,
            &call.target,
            &call.method,
            &mut make_header,
            &call.payload,
            now,
        );
        DECODING.with(|d| *d.borrow_mut() = prev);
        let queued = queued.map(|(rx, idle)| {
            if let Some(run) = idle {
                crate::activation::run_now(run);
            }
            rx
        });
        (queued, call.target, call.method)
    }

    /// Deactivates every activation now (running `on_deactivate`) and
    /// waits until they are gone or `timeout` passes. Grains are activated
    /// again on their next call. Returns whether all were deactivated.
    pub async fn deactivate_all(&self, timeout: Duration) -> bool {
        self.collect(Some(DeactivationReason::Requested));
        self.wait_empty(timeout).await
    }

    /// Deactivates the activations whose ids match `which` (running
    /// `on_deactivate`) and waits until they are gone or `timeout` passes.
    /// Returns how many were asked to deactivate. Calls that arrive for
    /// them meanwhile go wherever the grain belongs next.
    pub async fn deactivate_where(
        &self,
        which: impl Fn(&GrainId) -> bool,
        timeout: Duration,
    ) -> usize {
        let now = Instant::now();
        let mut chosen: Vec<(GrainId, Arc<dyn Slot>)> = self
            .inner
            .table
            .iter()
            .filter(|e| which(e.key()))
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        // In id order, not the table's (randomly seeded) hash order, so
        // that a run under a simulator replays exactly.
        chosen.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, slot) in &chosen {
            slot.clone().collect(
                self,
                now,
                self.inner.config.idle_timeout,
                Some(DeactivationReason::Rebalanced),
            );
        }
        let until = now + timeout;
        loop {
            let left = chosen.iter().any(|(id, slot)| {
                self.inner
                    .table
                    .get(id)
                    .is_some_and(|cur| Arc::ptr_eq(cur.value(), slot))
            });
            if !left || Instant::now() >= until {
                return chosen.len();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The ids of the grains active on this silo.
    pub fn active_grains(&self) -> Vec<GrainId> {
        self.inner.table.iter().map(|e| e.key().clone()).collect()
    }

    /// Runs one pass of idle collection now (it also runs periodically).
    pub fn collect_idle(&self) {
        self.collect(None);
    }

    fn collect(&self, force: Option<DeactivationReason>) {
        let now = Instant::now();
        let mut slots: Vec<(GrainId, Arc<dyn Slot>)> = self
            .inner
            .table
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        // In id order (see `deactivate_where`): runs replay under a simulator.
        slots.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, s) in slots {
            s.collect(self, now, self.inner.config.idle_timeout, force);
        }
    }

    async fn wait_empty(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        loop {
            if self.inner.table.is_empty() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the silo: no new activations, every activation deactivated
    /// (`on_deactivate` runs), then no calls at all. Waits at most the
    /// configured shutdown timeout for activations to finish.
    pub async fn shutdown(&self) {
        if self.inner.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        self.collect(Some(DeactivationReason::Shutdown));
        if !self.wait_empty(self.inner.config.shutdown_timeout).await {
            tracing::warn!(
                silo = %self.inner.config.name,
                left = self.inner.table.len(),
                "shutdown timed out with activations still running"
            );
        }
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.table.clear();
    }

    /// Stops the silo at once, as a crash would: no `on_deactivate`, every
    /// call into or out of it fails with [`Error::SiloStopped`] from now
    /// on (turns already running finish, but cannot call anyone). For
    /// fault-injection tests and tools; use [`shutdown`](Silo::shutdown)
    /// otherwise.
    pub fn halt(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.table.clear();
    }

    /// Whether [`shutdown`](Silo::shutdown) has begun.
    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Relaxed)
    }

    /// The router for grains that may live elsewhere, if this silo is part
    /// of a cluster and `id` is not known to be local.
    pub(crate) fn remote_route(&self, id: &GrainId) -> Option<&Arc<dyn Router>> {
        // An activation here is the grain's one activation until it is
        // deactivated (then its queued calls are routed anew): call it here
        // whatever the router would decide for a new activation.
        self.inner
            .router
            .as_ref()
            .filter(|r| !r.is_local(id) && !self.inner.table.contains_key(id))
    }

    /// Whether this silo is part of a cluster (has a router).
    pub(crate) fn has_router(&self) -> bool {
        self.inner.router.is_some()
    }

    pub(crate) fn incoming_filters(&self) -> &[Arc<dyn IncomingCallFilter>] {
        &self.inner.incoming
    }

    /// Builds the header of an outgoing call from the ambient scope and
    /// runs the outgoing filters.
    #[inline(always)]
    pub(crate) fn outgoing_header(
        &self,
        target: &GrainId,
        method: &'static str,
        timeout: Duration,
        one_way: bool,
    ) -> Result<CallHeader> {
        if self.inner.stopped.load(Ordering::Relaxed) {
            return Err(Error::SiloStopped);
        }
        let crate::context::Ambient {
            mut context,
            chain,
            sender,
            trace,
        } = ambient(one_way);
        for f in &self.inner.outgoing {
            let mut call = OutgoingCall {
                grain: target,
                method,
                context: &mut context,
                one_way,
            };
            f.on_call(&mut call).map_err(|reason| Error::Rejected {
                grain: target.clone(),
                method: method.to_owned(),
                reason,
            })?;
        }
        // Outside a turn, an external caller's `traceparent` (read after the
        // filters, which may have set it) is the parent.
        let trace = trace.or_else(|| crate::trace::external_parent(&context));
        Ok(CallHeader {
            call_id: LocalCallId::next(),
            method,
            // Nobody waits on a one-way call, so nothing is gained by
            // dropping it late: it runs however long its queue is.
            deadline: if one_way {
                self.inner.one_way_deadline
            } else {
                Instant::now() + timeout
            },
            timeout,
            chain,
            context,
            sender,
            span: crate::trace::current_span(),
            timer: false,
            trace,
        })
    }

    fn entry<G: Grain>(&self) -> Result<Arc<TypeEntry<G>>> {
        self.inner
            .types
            .get(&TypeId::of::<G>())
            .and_then(|t| t.as_any().downcast_ref::<TypeHandle<G>>())
            .map(|h| h.0.clone())
            .ok_or_else(|| Error::UnknownGrainType {
                type_name: G::TYPE_NAME.to_owned(),
            })
    }

    /// Queues a call to the grain `id` of type `G`, activating it if needed.
    pub(crate) fn send<G: Grain>(&self, id: &GrainId, req: Req<G>) -> Result<()> {
        self.send_via(id, req, None, false).map(|_| ())
    }

    /// [`send`](Self::send) for a reference that keeps the activation it
    /// reached in `cache`: while that one lives, the call is queued on it
    /// without a table lookup; the first activation found fills the cache.
    ///
    /// With `inline`, an activation that was idle is not started here but
    /// returned, for the caller to run (see `activation::run_inline`).
    pub(crate) fn send_via<G: Grain>(
        &self,
        id: &GrainId,
        mut req: Req<G>,
        cache: Option<&OnceLock<Arc<Activation<G>>>>,
        inline: bool,
    ) -> Result<Option<Arc<Activation<G>>>> {
        let start = |act: Arc<Activation<G>>| {
            if inline {
                Some(act)
            } else {
                activation::spawn(act, self.clone());
                None
            }
        };
        if let Some(act) = cache.and_then(OnceLock::get) {
            if self.inner.stopped.load(Ordering::Relaxed) {
                return Err(Error::SiloStopped);
            }
            match act.enqueue(req) {
                Ok(Enqueued::Queued) => return Ok(None),
                Ok(Enqueued::Spawn) => return Ok(start(act.clone())),
                // Dead: resolve the grain again below (the cache cannot be
                // reset; a later call pays one more failed enqueue).
                Err(back) => req = back,
            }
        }
        loop {
            if self.inner.stopped.load(Ordering::Relaxed) {
                return Err(Error::SiloStopped);
            }
            let Some(slot) = self.inner.table.get(id) else {
                if self.inner.stopping.load(Ordering::Relaxed) {
                    return Err(Error::SiloStopped);
                }
                // Not active here: activate only if this silo is where the
                // grain belongs now; otherwise pass the call on (a caller
                // with an older view, or a call queued on an activation
                // that moved away).
                if let Some(router) = self.remote_route(id) {
                    req.forward(self, router.clone(), id.clone());
                    return Ok(None);
                }
                let entry = self.entry::<G>()?;
                let slot: Arc<dyn Slot> = match entry.options.stateless_worker {
                    Some(max) => Arc::new(WorkerPool::new(id.clone(), entry, max)),
                    None => Arc::new(Activation::new(id.clone(), entry, Home::Table)),
                };
                self.inner.table.entry(id.clone()).or_insert(slot);
                continue;
            };
            if let Some(act) = slot.as_any().downcast_ref::<Activation<G>>() {
                match act.enqueue(req) {
                    Ok(Enqueued::Queued) => {
                        if let Some(cache) = cache
                            && cache.get().is_none()
                        {
                            let act = slot.value().clone().into_any().downcast::<Activation<G>>();
                            let _ = cache.set(act.expect("checked above"));
                        }
                        return Ok(None);
                    }
                    Ok(Enqueued::Spawn) => {
                        let act = slot
                            .value()
                            .clone()
                            .into_any()
                            .downcast::<Activation<G>>()
                            .expect("checked above");
                        drop(slot);
                        if let Some(cache) = cache
                            && cache.get().is_none()
                        {
                            let _ = cache.set(act.clone());
                        }
                        return Ok(start(act));
                    }
                    Err(back) => {
                        req = back;
                        let stale = slot.value().clone();
                        drop(slot);
                        self.inner
                            .table
                            .remove_if(id, |_, v| Arc::ptr_eq(v, &stale));
                    }
                }
            } else if slot.as_any().is::<WorkerPool<G>>() {
                let pool = slot.value().clone().into_any().downcast::<WorkerPool<G>>();
                drop(slot);
                let worker = pool
                    .expect("checked above")
                    .pick(req.header().chain.as_ref());
                match worker.enqueue(req) {
                    Ok(Enqueued::Queued) => return Ok(None),
                    Ok(Enqueued::Spawn) => {
                        activation::spawn(worker, self.clone());
                        return Ok(None);
                    }
                    Err(back) => req = back,
                }
            } else {
                return Err(Error::Config(format!(
                    "grain id {id} is held by another Rust type with the same TYPE_NAME"
                )));
            }
        }
    }

    /// Sends a call that an ended activation had queued to a fresh one.
    pub(crate) fn redeliver<G: Grain>(&self, id: &GrainId, req: Req<G>) {
        // `send` consumes the call only on success; on failure it is gone
        // with its reply channel, which the caller sees as the silo stopping.
        if let Err(e) = self.send::<G>(id, req) {
            tracing::debug!(grain = %id, error = %e, "could not redeliver a queued call");
        }
    }

    pub(crate) fn remove_activation<G: Grain>(&self, id: &GrainId, act: &Arc<Activation<G>>) {
        let ptr = Arc::as_ptr(act) as *const ();
        self.inner
            .table
            .remove_if(id, |_, v| Arc::as_ptr(v) as *const () == ptr);
    }

    pub(crate) fn remove_pool<G: Grain>(&self, id: &GrainId, pool: &Arc<WorkerPool<G>>) {
        let ptr = Arc::as_ptr(pool) as *const ();
        self.inner.table.remove_if(id, |_, v| {
            Arc::as_ptr(v) as *const () == ptr && pool.is_empty()
        });
    }
}

type Registration = Box<
    dyn FnOnce(Option<GrainOptions>) -> (TypeId, &'static str, Arc<dyn ErasedType>) + Send + Sync,
>;

/// Configures and starts a [`Silo`].
pub struct SiloBuilder {
    name: String,
    call_timeout: Duration,
    idle_timeout: Duration,
    collection_interval: Option<Duration>,
    shutdown_timeout: Duration,
    registrations: Vec<(TypeId, &'static str, Registration)>,
    options: HashMap<TypeId, GrainOptions>,
    incoming: Vec<Arc<dyn IncomingCallFilter>>,
    outgoing: Vec<Arc<dyn OutgoingCallFilter>>,
    router: Option<Arc<dyn Router>>,
    extensions: Extensions,
    on_start: Vec<StartHook>,
}

/// A plug-in's start-up step, run by [`SiloBuilder::start`] once the silo
/// exists (see [`SiloBuilder::on_start`]).
type StartHook = Box<dyn FnOnce(&Silo) -> std::result::Result<(), crate::BoxError> + Send + Sync>;

type Extensions = HashMap<TypeId, Box<dyn Any + Send + Sync>>;

/// A map built once at start and only read afterwards.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

impl Default for SiloBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SiloBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiloBuilder")
            .field("name", &self.name)
            .field(
                "grain_types",
                &self.registrations.iter().map(|r| r.1).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl SiloBuilder {
    /// A builder with the defaults: 30 s call deadline, 15 min idle age.
    pub fn new() -> Self {
        SiloBuilder {
            name: "silo".to_owned(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            collection_interval: None,
            shutdown_timeout: Duration::from_secs(30),
            registrations: Vec::new(),
            options: HashMap::new(),
            incoming: Vec::new(),
            outgoing: Vec::new(),
            router: None,
            extensions: HashMap::new(),
            on_start: Vec::new(),
        }
    }

    /// Makes this silo part of a cluster: calls to grains the router does
    /// not place here are serialized and handed to it (see [`Router`]).
    pub fn router(mut self, router: Arc<dyn Router>) -> Self {
        self.router = Some(router);
        self
    }

    /// The silo's name (in logs and metrics).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Registers grain type `G`, built with `G::default()` on activation.
    /// It answers the messages its [`GrainMethods`] lists, whether the call
    /// is local or serialized.
    pub fn grain<G: GrainMethods + Default>(self) -> Self {
        self.grain_with::<G>(|_| G::default())
    }

    /// Registers grain type `G`, built by `factory` on activation (the
    /// place to hand a grain its services).
    pub fn grain_with<G: GrainMethods>(
        mut self,
        factory: impl Fn(&GrainId) -> G + Send + Sync + 'static,
    ) -> Self {
        let factory = Factory::Sync(Arc::new(factory));
        let reg: Registration = Box::new(move |opts| {
            let entry = Arc::new(TypeEntry::new(opts.unwrap_or_else(G::options), factory));
            (
                TypeId::of::<G>(),
                G::TYPE_NAME,
                Arc::new(TypeHandle(entry)) as Arc<dyn ErasedType>,
            )
        });
        self.registrations
            .push((TypeId::of::<G>(), G::TYPE_NAME, reg));
        self
    }

    /// Registers grain type `G`, built on activation by an async, fallible
    /// `factory` (the place to load state or connect to services before
    /// `on_activate`). A factory error fails the activation: every queued
    /// call gets [`Error::ActivationFailed`] with its message.
    pub fn grain_with_async<G, F, Fut>(mut self, factory: F) -> Self
    where
        G: GrainMethods,
        F: Fn(ActivationContext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = std::result::Result<G, crate::BoxError>> + Send + 'static,
    {
        let factory = Factory::Async(Arc::new(move |ctx| Box::pin(factory(ctx))));
        let reg: Registration = Box::new(move |opts| {
            let entry = Arc::new(TypeEntry::new(opts.unwrap_or_else(G::options), factory));
            (
                TypeId::of::<G>(),
                G::TYPE_NAME,
                Arc::new(TypeHandle(entry)) as Arc<dyn ErasedType>,
            )
        });
        self.registrations
            .push((TypeId::of::<G>(), G::TYPE_NAME, reg));
        self
    }

    /// Stores a service or configuration value of type `T` in the silo,
    /// replacing any earlier one; grains and plug-in crates read it with
    /// [`Silo::extension`]. This is how plug-ins (storage, streams, ...)
    /// attach to a silo without process-wide state.
    pub fn extension<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.insert(TypeId::of::<T>(), Box::new(value));
        self
    }

    /// The extension of type `T`, created with `T::default()` if absent,
    /// for plug-ins that add to a value (say, a registry of named
    /// providers) across several builder calls.
    pub fn extension_mut<T: Default + Send + Sync + 'static>(&mut self) -> &mut T {
        self.extensions
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()))
            .downcast_mut::<T>()
            .expect("extensions are keyed by their TypeId")
    }

    /// Runs `hook` with the new silo at the end of [`start`](Self::start)
    /// (on the tokio runtime), for plug-ins that serve something from the
    /// running silo (the dashboard's web server, say). Hooks run in the
    /// order they were added; if one fails, the silo is halted and `start`
    /// returns [`Error::Config`] with its message.
    pub fn on_start(
        mut self,
        hook: impl FnOnce(&Silo) -> std::result::Result<(), crate::BoxError> + Send + Sync + 'static,
    ) -> Self {
        self.on_start.push(Box::new(hook));
        self
    }

    /// Overrides `G::options()` on this silo.
    pub fn grain_options<G: Grain>(mut self, options: GrainOptions) -> Self {
        self.options.insert(TypeId::of::<G>(), options);
        self
    }

    /// The default call deadline (30 s unless set).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The default idle age before an activation is collected (15 min
    /// unless set; a grain type may override it).
    pub fn idle_timeout(mut self, age: Duration) -> Self {
        self.idle_timeout = age;
        self
    }

    /// How often idle collection runs (by default a quarter of the
    /// shortest idle age, between 10 ms and 1 min).
    pub fn collection_interval(mut self, every: Duration) -> Self {
        self.collection_interval = Some(every);
        self
    }

    /// How long shutdown waits for activations to deactivate.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Adds a filter that sees every call entering a grain on this silo.
    pub fn incoming_filter(mut self, filter: impl IncomingCallFilter) -> Self {
        self.incoming.push(Arc::new(filter));
        self
    }

    /// Adds a filter that sees every call made through this silo.
    pub fn outgoing_filter(mut self, filter: impl OutgoingCallFilter) -> Self {
        self.outgoing.push(Arc::new(filter));
        self
    }

    /// Validates the configuration and starts the silo (its idle collector
    /// runs on the current tokio runtime).
    pub async fn start(self) -> Result<Silo> {
        if self.call_timeout.is_zero() {
            return Err(Error::Config("the call timeout must be above zero".into()));
        }
        if self.idle_timeout.is_zero() {
            return Err(Error::Config("the idle timeout must be above zero".into()));
        }
        let mut types = FastMap::default();
        let mut by_name: FastMap<GrainType, Arc<dyn ErasedType>> = FastMap::default();
        let mut min_age = self.idle_timeout;
        for (tid, name, reg) in self.registrations {
            if types.contains_key(&tid) {
                return Err(Error::Config(format!(
                    "grain type `{name}` is registered twice"
                )));
            }
            if by_name.contains_key(name) {
                return Err(Error::Config(format!(
                    "two grain types share the TYPE_NAME `{name}`; type names must be unique"
                )));
            }
            let opts = self.options.get(&tid).cloned();
            let (tid, name, erased) = reg(opts);
            if let Some(age) = erased_age(&*erased) {
                min_age = min_age.min(age);
            }
            types.insert(tid, erased.clone());
            by_name.insert(GrainType::new(name), erased);
        }
        if let Some(tid) = self.options.keys().find(|t| !types.contains_key(t)) {
            let _ = tid;
            return Err(Error::Config(
                "grain_options was given for a grain type that is not registered".into(),
            ));
        }
        let collection_interval = self.collection_interval.unwrap_or_else(|| {
            (min_age / 4).clamp(Duration::from_millis(10), Duration::from_secs(60))
        });
        let inner = Arc::new(SiloInner {
            config: Config {
                name: self.name,
                call_timeout: self.call_timeout,
                idle_timeout: self.idle_timeout,
                shutdown_timeout: self.shutdown_timeout,
            },
            types,
            by_name,
            table: DashMap::default(),
            incoming: self.incoming,
            outgoing: self.outgoing,
            router: self.router,
            extensions: self.extensions,
            stopping: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            one_way_deadline: Instant::now() + ONE_WAY_HORIZON,
        });
        tokio::spawn(collector(Arc::downgrade(&inner), collection_interval));
        let silo = Silo { inner };
        for hook in self.on_start {
            if let Err(e) = hook(&silo) {
                silo.halt();
                return Err(Error::Config(format!("a start-up hook failed: {e}")));
            }
        }
        Ok(silo)
    }
}

fn erased_age(t: &dyn ErasedType) -> Option<Duration> {
    t.idle_timeout()
}

async fn collector(silo: Weak<SiloInner>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = silo.upgrade() else { return };
        if inner.stopping.load(Ordering::Relaxed) {
            return;
        }
        Silo { inner }.collect_idle();
    }
}
