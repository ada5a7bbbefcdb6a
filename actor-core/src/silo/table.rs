//! The activation table: which grain ids have an activation (or a
//! stateless worker pool) on this silo, how a call finds or creates its
//! activation, and idle collection and deactivation over the table.

use std::any::{Any, TypeId};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

use super::Silo;
use crate::activation::InlineDrain;
use crate::activation::{self, Activation, Enqueued, Home, Req};
use crate::envelope::CallHeader;
use crate::error::{Error, Result};
use crate::grain::{DeactivationReason, Grain};
use crate::id::GrainId;
use crate::metrics::TypeMetrics;
use crate::registry::TypeEntry;
use crate::worker::WorkerPool;

/// An entry of the activation table: one activation, or a stateless
/// worker pool.
pub(super) trait Slot: Send + Sync + 'static {
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

impl Silo {
    /// Activations in the table now (stateless workers counted one by one),
    /// including ones being activated or deactivated.
    pub fn activation_count(&self) -> usize {
        self.inner.table.iter().map(|e| e.activations()).sum()
    }

    /// Whether the grain has an activation (or worker pool) on this silo.
    pub fn is_active(&self, id: &GrainId) -> bool {
        self.inner.table.contains_key(id)
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

    pub(super) fn collect(&self, force: Option<DeactivationReason>) {
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

    pub(super) async fn wait_empty(&self, timeout: Duration) -> bool {
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
    pub(crate) fn send<G: Grain>(&self, id: &GrainId, req: Req<G>) -> Result<(), Unsent<G>> {
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
    ) -> Result<Option<Arc<Activation<G>>>, Unsent<G>> {
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
                return Err(Unsent(Box::new(Error::SiloStopped), req));
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
                return Err(Unsent(Box::new(Error::SiloStopped), req));
            }
            let Some(slot) = self.inner.table.get(id) else {
                if self.inner.stopping.load(Ordering::Relaxed) {
                    return Err(Unsent(Box::new(Error::SiloStopped), req));
                }
                // Not active here: activate only if this silo is where the
                // grain belongs now; otherwise pass the call on (a caller
                // with an older view, or a call queued on an activation
                // that moved away).
                if let Some(router) = self.remote_route(id) {
                    req.forward(self, router.clone(), id.clone());
                    return Ok(None);
                }
                let entry = match self.entry::<G>() {
                    Ok(entry) => entry,
                    Err(e) => return Err(Unsent(Box::new(e), req)),
                };
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
                return Err(Unsent(
                    Box::new(Error::Config(format!(
                        "grain id {id} is held by another Rust type with the same TYPE_NAME"
                    ))),
                    req,
                ));
            }
        }
    }

    /// Sends a call that an ended activation had queued to a fresh one.
    pub(crate) fn redeliver<G: Grain>(&self, id: &GrainId, req: Req<G>) {
        // A call that cannot be queued again fails to its caller with the
        // reason (the silo stopping, mostly).
        if let Err(Unsent(e, req)) = self.send::<G>(id, req) {
            tracing::debug!(grain = %id, error = %e, "could not redeliver a queued call");
            req.fail(*e);
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

/// A registered type seen without its Rust type: what the silo needs to
/// dispatch a serialized call and to report metrics.
pub(crate) trait ErasedType: Send + Sync {
    fn metrics(&self) -> &Arc<TypeMetrics>;
    fn as_any(&self) -> &dyn std::any::Any;
    fn idle_timeout(&self) -> Option<std::time::Duration>;
    /// Whether the type is a stateless worker (local to each silo).
    fn stateless_worker(&self) -> bool;
    /// Decodes and queues a serialized call; `make_header` receives the
    /// method's static name.
    fn dispatch_encoded(
        &self,
        silo: &Silo,
        target: &GrainId,
        method: &str,
        make_header: &mut dyn FnMut(&'static str) -> CallHeader,
        payload: &[u8],
        sent: tokio::time::Instant,
    ) -> Result<(EncodedReceiver, Option<InlineDrain>)>;
}

/// Where a queued serialized call's encoded reply arrives.
pub(crate) type EncodedReceiver = oneshot::Receiver<Result<Vec<u8>>>;

/// `Arc<TypeEntry<G>>` behind the erased view.
/// A call the table could not queue, with the reason: the sender still
/// owns it (a `tell` hands the message back, a redelivery fails it to its
/// caller).
pub(crate) struct Unsent<G: Grain>(pub(crate) Box<Error>, pub(crate) Req<G>);

pub(crate) struct TypeHandle<G: Grain>(pub(crate) Arc<TypeEntry<G>>);

impl<G: Grain> ErasedType for TypeHandle<G> {
    fn metrics(&self) -> &Arc<TypeMetrics> {
        &self.0.metrics
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn idle_timeout(&self) -> Option<std::time::Duration> {
        self.0.options.idle_timeout
    }
    fn stateless_worker(&self) -> bool {
        self.0.options.stateless_worker.is_some()
    }
    fn dispatch_encoded(
        &self,
        silo: &Silo,
        target: &GrainId,
        method: &str,
        make_header: &mut dyn FnMut(&'static str) -> CallHeader,
        payload: &[u8],
        sent: tokio::time::Instant,
    ) -> Result<(EncodedReceiver, Option<InlineDrain>)> {
        let (name, decode) = self
            .0
            .methods
            .by_name
            .get_key_value(method)
            .ok_or_else(|| Error::UnknownMethod {
                type_name: G::TYPE_NAME.to_owned(),
                method: method.to_owned(),
            })?;
        let (tx, rx) = oneshot::channel();
        let req = decode(make_header(name), payload, tx)?;
        let idle = silo
            .send_via::<G>(target, req, None, true)
            .map_err(|Unsent(e, _)| *e)?;
        Ok((
            rx,
            idle.map(|act| activation::inline_drain(act, silo.clone(), sent)),
        ))
    }
}
