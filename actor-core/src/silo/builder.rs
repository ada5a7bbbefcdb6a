//! [`SiloBuilder`]: a silo's configuration, its grain types and plug-ins,
//! checked and turned into a running [`Silo`] by [`SiloBuilder::start`],
//! which also starts the idle collector.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use dashmap::DashMap;
use tokio::time::{Duration, Instant};

use super::table::{ErasedType, TypeHandle};
use super::{
    Config, DEFAULT_CALL_TIMEOUT, DEFAULT_IDLE_TIMEOUT, Extensions, ONE_WAY_HORIZON, Silo,
    SiloInner,
};
use crate::error::{Error, Result};
use crate::filter::{IncomingCallFilter, OutgoingCallFilter};
use crate::grain::{Grain, GrainMethods, GrainOptions};
use crate::id::{GrainId, GrainType};
use crate::registry::{ActivationContext, Factory, FastMap, TypeEntry};
use crate::router::Router;

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
    layers: Vec<Arc<dyn crate::layer::ErasedLayer>>,
    turn_fence: Option<Arc<crate::turn_fence::TurnFence>>,
    outgoing: Vec<Arc<dyn OutgoingCallFilter>>,
    router: Option<Arc<dyn Router>>,
    extensions: Extensions,
    on_start: Vec<StartHook>,
}

/// A plug-in's start-up step, run by [`SiloBuilder::start`] once the silo
/// exists (see [`SiloBuilder::on_start`]).
type StartHook = Box<dyn FnOnce(&Silo) -> std::result::Result<(), crate::BoxError> + Send + Sync>;

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
            layers: Vec::new(),
            turn_fence: None,
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

    /// Adds an async layer around the turn of every call entering a grain
    /// on this silo: it may await, refuse the call with an error, or run
    /// the rest of the stack and see how the turn ended (see
    /// [`CallLayer`](crate::CallLayer) for where layers sit among the
    /// built-in steps). Layers run in the order added, the first outermost.
    /// A silo without layers pays nothing for them on any call.
    pub fn layer(mut self, layer: impl crate::layer::CallLayer) -> Self {
        self.layers.push(Arc::new(layer));
        self
    }

    /// Runs turns only before `fence`'s deadline (see [`TurnFence`]): a
    /// turn that would start later fails its call with
    /// [`Error::NotHere`](crate::Error::NotHere) without running.
    /// actor-cluster sets it to the silo's membership lease.
    ///
    /// [`TurnFence`]: crate::TurnFence
    pub fn turn_fence(mut self, fence: Arc<crate::turn_fence::TurnFence>) -> Self {
        self.turn_fence = Some(fence);
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
        let mut local_types = Vec::new();
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
            if erased.stateless_worker() {
                local_types.push(GrainType::new(name));
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
            local_types,
            table: DashMap::default(),
            plain_turns: self.incoming.is_empty()
                && self.layers.is_empty()
                && self.turn_fence.is_none(),
            incoming: self.incoming,
            layers: self.layers,
            turn_fence: self.turn_fence,
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
