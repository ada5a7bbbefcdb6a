//! The silo: the host of grain activations. It owns its registry of grain
//! types, its activation table, its filters, metrics and configuration;
//! nothing is process-wide, so several silos live side by side in one
//! process without seeing each other.
//!
//! This file is the handle: configuration, lifecycle, outgoing call
//! headers, and the one entrance of serialized calls (`queue_encoded_at`,
//! behind [`Silo::invoke_encoded`] and [`Silo::queue_encoded`]). The
//! builder is in `silo/builder.rs`, the activation table (how a call finds
//! its activation, idle collection) in `silo/table.rs`.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;
use serde::de::DeserializeOwned;
use tokio::time::{Duration, Instant};

use crate::context::{ChainFrame, LocalCallId, ambient};
use crate::envelope::{CallHeader, EncodedCall, EncodedReply};
use crate::error::{Error, Result};
use crate::filter::{IncomingCallFilter, OutgoingCall, OutgoingCallFilter};
use crate::grain::{DeactivationReason, Grain};
use crate::id::{GrainId, GrainKey, GrainType};
use crate::metrics::MetricsSnapshot;
use crate::reference::GrainRef;
use crate::registry::FastMap;
use crate::router::Router;

mod builder;
mod table;

pub use builder::SiloBuilder;
pub(crate) use table::Unsent;
use table::{ErasedType, Slot};

/// Default deadline of a call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a one-way call may wait in queues: in effect, forever.
pub(crate) const ONE_WAY_LIFETIME: Duration = Duration::from_secs(365 * 86_400);

/// The deadline of every one-way call made on a silo: this long after the
/// silo started (no clock read per one-way call).
const ONE_WAY_HORIZON: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Default idle age after which an activation is collected (as Orleans).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

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
    /// The stateless worker types registered here (few, usually none):
    /// their calls run on this silo, never through the router.
    local_types: Vec<GrainType>,
    // A seeded fast hasher: ids come from callers, so keep it keyed.
    table: DashMap<GrainId, Arc<dyn Slot>, foldhash::fast::RandomState>,
    incoming: Vec<Arc<dyn IncomingCallFilter>>,
    layers: Vec<Arc<dyn crate::layer::ErasedLayer>>,
    turn_fence: Option<Arc<crate::turn_fence::TurnFence>>,
    /// No incoming filters, no layers and no turn fence: a turn starts
    /// with none of their checks (one flag, read once per drain).
    plain_turns: bool,
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

// Here, not beside `GrainType`: decoding a name looks it up on the silo
// decoding on this thread (ids stay below the silo).
impl<'de> serde::Deserialize<'de> for GrainType {
    /// A name that the silo decoding it has registered (see
    /// [`Silo::decode`]) comes back as that silo's own static name,
    /// without allocating; any other is shared.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = GrainType;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a grain type name")
            }
            fn visit_str<E: serde::de::Error>(
                self,
                name: &str,
            ) -> std::result::Result<GrainType, E> {
                Ok(registered_type(name)
                    .unwrap_or_else(|| GrainType(crate::id::TypeName::Shared(Arc::from(name)))))
            }
            fn visit_string<E: serde::de::Error>(
                self,
                name: String,
            ) -> std::result::Result<GrainType, E> {
                Ok(registered_type(&name).unwrap_or_else(|| GrainType::from(name)))
            }
        }
        d.deserialize_str(Name)
    }
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
            plugins: self
                .extension::<crate::metrics::MetricSources>()
                .map(crate::metrics::MetricSources::read)
                .unwrap_or_default(),
        }
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
            .or_else(|| crate::context::external_parent(&call.context));
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
        self.inner.router.as_ref().filter(|r| {
            !self.is_local_type(id) && !r.is_local(id) && !self.inner.table.contains_key(id)
        })
    }

    /// Whether `id`'s type runs on this silo whatever the router says: a
    /// stateless worker registered here. As in Orleans, such a grain has
    /// a pool of activations on every silo that registers it, is never
    /// entered in the grain directory, and serves its callers on their
    /// own silo (or a client's gateway).
    #[inline]
    fn is_local_type(&self, id: &GrainId) -> bool {
        let local = &self.inner.local_types;
        !local.is_empty() && local.contains(&id.grain_type)
    }

    /// The fence of this silo's turns, if it has one (see
    /// [`SiloBuilder::turn_fence`](crate::SiloBuilder::turn_fence)):
    /// storage checks it before each write, so that a turn that runs on
    /// past its silo's lease writes nothing.
    pub fn turn_fence_handle(&self) -> Option<Arc<crate::turn_fence::TurnFence>> {
        self.inner.turn_fence.clone()
    }

    /// Whether this silo is part of a cluster (has a router).
    pub(crate) fn has_router(&self) -> bool {
        self.inner.router.is_some()
    }

    pub(crate) fn incoming_filters(&self) -> &[Arc<dyn IncomingCallFilter>] {
        &self.inner.incoming
    }

    pub(crate) fn layers(&self) -> &[Arc<dyn crate::layer::ErasedLayer>] {
        &self.inner.layers
    }

    pub(crate) fn turn_fence(&self) -> Option<&crate::turn_fence::TurnFence> {
        self.inner.turn_fence.as_deref()
    }

    /// Whether turns start without filters, layers or a fence to check.
    #[inline(always)]
    pub(crate) fn plain_turns(&self) -> bool {
        self.inner.plain_turns
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
        let trace = trace.or_else(|| crate::context::external_parent(&context));
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
}

/// What plug-ins attach to a silo (see [`SiloBuilder::extension`]).
type Extensions = HashMap<TypeId, Box<dyn Any + Send + Sync>>;
