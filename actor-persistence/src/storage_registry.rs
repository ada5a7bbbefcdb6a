//! Named storage providers and event stores attached to a silo.
//!
//! The registry is a silo extension (no process-wide state): the builder
//! methods of [`SiloBuilderStorageExt`] add to it, grains and async
//! factories look providers up by name through the silo.

use std::collections::BTreeMap;
use std::sync::Arc;

use actor_core::{ActivationContext, Grain, GrainContext, GrainId, Silo, SiloBuilder};

use crate::error::{Error, Result};
use crate::event_store::EventStore;
use crate::provider::StorageProvider;

/// The name under which the default provider (and default event store) is
/// registered.
pub const DEFAULT_STORAGE: &str = "default";

/// The storage providers and event stores of one silo, by name. Built by
/// [`SiloBuilderStorageExt`]; read with [`SiloStorageExt`] or
/// `silo.extension::<StorageRegistry>()`.
#[derive(Default, Clone)]
pub struct StorageRegistry {
    providers: BTreeMap<String, Arc<dyn StorageProvider>>,
    event_stores: BTreeMap<String, Arc<dyn EventStore>>,
}

impl std::fmt::Debug for StorageRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let providers: BTreeMap<_, _> = self
            .providers
            .iter()
            .map(|(k, v)| (k, v.describe()))
            .collect();
        let stores: BTreeMap<_, _> = self
            .event_stores
            .iter()
            .map(|(k, v)| (k, v.describe()))
            .collect();
        f.debug_struct("StorageRegistry")
            .field("providers", &providers)
            .field("event_stores", &stores)
            .finish()
    }
}

impl StorageRegistry {
    /// Registers (or replaces) provider `name`.
    pub fn insert(&mut self, name: impl Into<String>, provider: Arc<dyn StorageProvider>) {
        self.providers.insert(name.into(), provider);
    }

    /// Registers (or replaces) event store `name`.
    pub fn insert_event_store(&mut self, name: impl Into<String>, store: Arc<dyn EventStore>) {
        self.event_stores.insert(name.into(), store);
    }

    /// The provider registered as `name`.
    pub fn get(&self, name: &str) -> Result<Arc<dyn StorageProvider>> {
        self.providers
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownProvider {
                name: name.to_owned(),
                registered: self.providers.keys().cloned().collect(),
            })
    }

    /// The event store registered as `name`.
    pub fn event_store(&self, name: &str) -> Result<Arc<dyn EventStore>> {
        self.event_stores
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownProvider {
                name: name.to_owned(),
                registered: self.event_stores.keys().cloned().collect(),
            })
    }

    /// The names of the registered providers.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }
}

/// Storage registration on a [`SiloBuilder`].
///
/// ```
/// use actor_core::Silo;
/// use actor_persistence::{MemoryStorage, SiloBuilderStorageExt};
/// let builder = Silo::builder()
///     .with_default_storage(MemoryStorage::new())
///     .with_storage("archive", MemoryStorage::new());
/// # let _ = builder;
/// ```
pub trait SiloBuilderStorageExt: Sized {
    /// Registers `provider` under `name` (replacing an earlier one).
    fn with_storage(self, name: impl Into<String>, provider: impl StorageProvider) -> Self;

    /// Registers `provider` as the default (name [`DEFAULT_STORAGE`]).
    fn with_default_storage(self, provider: impl StorageProvider) -> Self {
        self.with_storage(DEFAULT_STORAGE, provider)
    }

    /// Registers event store `store` under `name`, for journaled grains.
    fn with_event_store(self, name: impl Into<String>, store: impl EventStore) -> Self;

    /// Registers `store` as the default event store.
    fn with_default_event_store(self, store: impl EventStore) -> Self {
        self.with_event_store(DEFAULT_STORAGE, store)
    }
}

impl SiloBuilderStorageExt for SiloBuilder {
    fn with_storage(mut self, name: impl Into<String>, provider: impl StorageProvider) -> Self {
        self.extension_mut::<StorageRegistry>()
            .insert(name, Arc::new(provider));
        self
    }

    fn with_event_store(mut self, name: impl Into<String>, store: impl EventStore) -> Self {
        self.extension_mut::<StorageRegistry>()
            .insert_event_store(name, Arc::new(store));
        self
    }
}

/// Provider look-up on a running [`Silo`].
pub trait SiloStorageExt {
    /// The storage provider registered as `name`.
    fn storage(&self, name: &str) -> Result<Arc<dyn StorageProvider>>;

    /// The event store registered as `name`.
    fn event_store(&self, name: &str) -> Result<Arc<dyn EventStore>>;
}

impl SiloStorageExt for Silo {
    fn storage(&self, name: &str) -> Result<Arc<dyn StorageProvider>> {
        match self.extension::<StorageRegistry>() {
            Some(r) => r.get(name),
            None => StorageRegistry::default().get(name),
        }
    }

    fn event_store(&self, name: &str) -> Result<Arc<dyn EventStore>> {
        match self.extension::<StorageRegistry>() {
            Some(r) => r.event_store(name),
            None => StorageRegistry::default().event_store(name),
        }
    }
}

/// Where grain state can be loaded: the [`ActivationContext`] of an async
/// factory (`SiloBuilder::grain_with_async`, state loaded before
/// `on_activate`) or a [`GrainContext`] (in `on_activate` or a handler).
pub trait StateContext {
    /// The grain whose state it is.
    fn grain_id(&self) -> &GrainId;
    /// The silo, whose [`StorageRegistry`] names the providers.
    fn silo(&self) -> &Silo;
}

impl StateContext for ActivationContext {
    fn grain_id(&self) -> &GrainId {
        self.id()
    }
    fn silo(&self) -> &Silo {
        ActivationContext::silo(self)
    }
}

impl<G: Grain> StateContext for GrainContext<G> {
    fn grain_id(&self) -> &GrainId {
        self.id()
    }
    fn silo(&self) -> &Silo {
        GrainContext::silo(self)
    }
}
