//! Event-sourced (journaled) grain state: the state is a fold of its
//! events.
//!
//! A [`Journal`] keeps the state in the activation, appends raised events
//! to an [`EventStore`] with a compare-and-set on the stream version, and
//! on activation rebuilds the state from the latest snapshot plus the
//! events after it. Snapshots are only a cache: a missing or unreadable one
//! means a longer replay, never a different state.

use std::fmt;
use std::sync::Arc;

use actor_core::{Grain, GrainContext, GrainId};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::event_store::{EventStore, Snapshot, StoredEvent};
use crate::provider::StateKey;
use crate::storage_registry::{DEFAULT_STORAGE, SiloStorageExt, StateContext};

/// State built from events. `apply` must be deterministic and depend only
/// on the state and the event: replaying the same events always gives the
/// same state.
///
/// ```
/// use actor_persistence::JournaledState;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Default, Serialize, Deserialize)]
/// struct Account { balance: i64 }
///
/// #[derive(Serialize, Deserialize)]
/// enum AccountEvent { Deposited(i64), Withdrawn(i64) }
///
/// impl JournaledState for Account {
///     type Event = AccountEvent;
///     fn apply(&mut self, event: &AccountEvent) {
///         match event {
///             AccountEvent::Deposited(n) => self.balance += n,
///             AccountEvent::Withdrawn(n) => self.balance -= n,
///         }
///     }
/// }
/// ```
pub trait JournaledState: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The events that change this state (stored as JSON).
    type Event: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// Applies one event.
    fn apply(&mut self, event: &Self::Event);
}

/// How a [`Journal`] was rebuilt on load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovery {
    /// The version of the snapshot the replay started from, if one was
    /// used.
    pub snapshot: Option<u64>,
    /// How many events were replayed after it.
    pub events_replayed: u64,
}

/// An event-sourced state of type `S` in a grain (Orleans'
/// `JournaledGrain`): [`raise`](Self::raise) events, then
/// [`confirm`](Self::confirm) them to the event store.
///
/// ```
/// # use actor_core::prelude::*;
/// # use actor_persistence::{Journal, JournaledState, MemoryStorage, SiloBuilderStorageExt};
/// # #[derive(Default, serde::Serialize, serde::Deserialize)] struct Account { balance: i64 }
/// # impl JournaledState for Account {
/// #     type Event = i64;
/// #     fn apply(&mut self, e: &i64) { self.balance += e }
/// # }
/// struct AccountGrain { journal: Journal<Account> }
/// # impl Grain for AccountGrain { const TYPE_NAME: &'static str = "account"; }
/// # impl GrainMethods for AccountGrain { fn register(_: &mut Methods<Self>) {} }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let silo = Silo::builder()
///     .with_default_event_store(MemoryStorage::new())
///     .grain_with_async(|ctx| async move {
///         // Snapshot every 100 events; replay from the latest on load.
///         let journal = Journal::load(&ctx, "account").await?.snapshot_every(100);
///         Ok(AccountGrain { journal })
///     })
///     .start()
///     .await?;
/// # silo.shutdown().await; Ok(()) }
/// ```
///
/// [`state`](Self::state) includes raised events that are not confirmed
/// yet. If a confirm fails (a [`Error::VersionConflict`]: another
/// activation appended; or an outage), the state holds events the store
/// may not have: reload it ([`reload`](Self::reload)), or use
/// [`confirm_or_reset`](Self::confirm_or_reset), which drops the
/// activation so that the next call replays from storage.
pub struct Journal<S: JournaledState> {
    stream: StateKey,
    store: Arc<dyn EventStore>,
    snapshot_every: Option<u64>,
    state: S,
    version: u64,
    snapshot_version: u64,
    pending: Vec<S::Event>,
    recovery: Recovery,
}

impl<S: JournaledState> Journal<S> {
    /// Loads journal `name` of the grain from the silo's default event
    /// store (registered with `with_default_event_store`).
    pub async fn load(ctx: &impl StateContext, name: &str) -> Result<Self> {
        Self::load_from(ctx, name, DEFAULT_STORAGE).await
    }

    /// Loads journal `name` of the grain from the silo's event store
    /// registered as `store`.
    pub async fn load_from(ctx: &impl StateContext, name: &str, store: &str) -> Result<Self> {
        let store = ctx.silo().event_store(store)?;
        Self::load_with(store, ctx.grain_id(), name).await
    }

    /// Loads journal `name` of grain `id` from `store` directly.
    pub async fn load_with(store: Arc<dyn EventStore>, id: &GrainId, name: &str) -> Result<Self> {
        let mut journal = Journal {
            stream: StateKey::new(id, name),
            store,
            snapshot_every: None,
            state: S::default(),
            version: 0,
            snapshot_version: 0,
            pending: Vec::new(),
            recovery: Recovery::default(),
        };
        journal.reload().await?;
        Ok(journal)
    }

    /// Takes a snapshot after every `n` confirmed events (0: never, the
    /// default), so that loading replays at most about `n` events.
    pub fn snapshot_every(mut self, n: u64) -> Self {
        self.snapshot_every = (n > 0).then_some(n);
        self
    }

    /// Rebuilds the state from storage (the latest snapshot, then the
    /// events after it), dropping unconfirmed events.
    pub async fn reload(&mut self) -> Result<()> {
        let (mut state, from) = match self.store.read_snapshot(&self.stream).await? {
            Some(snap) => match serde_json::from_slice::<S>(&snap.data) {
                Ok(s) => (s, snap.version),
                Err(e) => {
                    // A snapshot is a cache: replay everything instead.
                    tracing::warn!(stream = %self.stream, version = snap.version, error = %e,
                        "ignoring a snapshot that does not deserialize; replaying all events");
                    (S::default(), 0)
                }
            },
            None => (S::default(), 0),
        };
        let events = self.store.read_events(&self.stream, from).await?;
        let version = self.fold(&mut state, from, &events)?;
        self.recovery = Recovery {
            snapshot: (from > 0).then_some(from),
            events_replayed: events.len() as u64,
        };
        self.state = state;
        self.version = version;
        self.snapshot_version = from;
        self.pending.clear();
        Ok(())
    }

    /// Rebuilds the state from every stored event, ignoring snapshots (for
    /// audits and tests: it must equal [`state`](Self::state) once all
    /// events are confirmed).
    pub async fn replay_all(&self) -> Result<S> {
        let events = self.store.read_events(&self.stream, 0).await?;
        let mut state = S::default();
        self.fold(&mut state, 0, &events)?;
        Ok(state)
    }

    /// Every stored event, in order, with its version.
    pub async fn history(&self) -> Result<Vec<(u64, S::Event)>> {
        self.store
            .read_events(&self.stream, 0)
            .await?
            .into_iter()
            .map(|e| {
                let event = serde_json::from_slice(&e.data)
                    .map_err(|err| Error::deserialize::<S::Event>(&self.stream, err))?;
                Ok((e.version, event))
            })
            .collect()
    }

    fn fold(&self, state: &mut S, from: u64, events: &[StoredEvent]) -> Result<u64> {
        let mut version = from;
        for e in events {
            if e.version != version + 1 {
                return Err(Error::Backend {
                    provider: self.store.describe(),
                    reason: format!(
                        "event stream {} has a gap: version {} follows {version}",
                        self.stream, e.version
                    ),
                });
            }
            let event: S::Event = serde_json::from_slice(&e.data)
                .map_err(|err| Error::deserialize::<S::Event>(&self.stream, err))?;
            state.apply(&event);
            version = e.version;
        }
        Ok(version)
    }

    /// Applies `event` to the state and queues it for
    /// [`confirm`](Self::confirm).
    pub fn raise(&mut self, event: S::Event) {
        self.state.apply(&event);
        self.pending.push(event);
    }

    /// [`raise`](Self::raise)s each event in order.
    pub fn raise_all(&mut self, events: impl IntoIterator<Item = S::Event>) {
        for e in events {
            self.raise(e);
        }
    }

    /// Appends the raised events to the store, all or nothing, if no one
    /// else appended since this journal was loaded or last confirmed;
    /// returns the new version. Takes a snapshot when one is due (a failed
    /// snapshot is logged, not returned: the events are stored).
    pub async fn confirm(&mut self) -> Result<u64> {
        if self.pending.is_empty() {
            return Ok(self.version);
        }
        let data = self
            .pending
            .iter()
            .map(|e| {
                serde_json::to_vec(e).map_err(|err| Error::serialize::<S::Event>(&self.stream, err))
            })
            .collect::<Result<Vec<_>>>()?;
        self.version = self.store.append(&self.stream, self.version, &data).await?;
        self.pending.clear();
        if let Some(every) = self.snapshot_every {
            if self.version - self.snapshot_version >= every {
                self.take_snapshot().await;
            }
        }
        Ok(self.version)
    }

    /// [`confirm`](Self::confirm), and on any error deactivate the grain
    /// once this turn ends, so that the next call replays from storage.
    pub async fn confirm_or_reset<G: Grain>(&mut self, ctx: &GrainContext<G>) -> Result<u64> {
        let outcome = self.confirm().await;
        if let Err(e) = &outcome {
            tracing::warn!(grain = %ctx.id(), journal = self.stream.name(), error = %e,
                "journal confirm failed; the activation will be reset");
            ctx.deactivate_on_idle();
        }
        outcome
    }

    async fn take_snapshot(&mut self) {
        let data = match serde_json::to_vec(&self.state) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(stream = %self.stream, error = %e, "cannot serialize a snapshot");
                return;
            }
        };
        let snapshot = Snapshot {
            version: self.version,
            data,
        };
        match self.store.write_snapshot(&self.stream, &snapshot).await {
            Ok(()) => self.snapshot_version = self.version,
            Err(e) => tracing::warn!(stream = %self.stream, error = %e,
                "snapshot not stored; the next load replays more events"),
        }
    }

    /// The state: confirmed events plus raised, unconfirmed ones.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The number of confirmed events (the stream version).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Raised events not confirmed yet.
    pub fn unconfirmed(&self) -> &[S::Event] {
        &self.pending
    }

    /// The version of the latest snapshot this journal loaded or took (0:
    /// none).
    pub fn snapshot_version(&self) -> u64 {
        self.snapshot_version
    }

    /// How the last load rebuilt the state.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// The stream's key (grain type, grain id, journal name).
    pub fn stream(&self) -> &StateKey {
        &self.stream
    }
}

impl<S: JournaledState + fmt::Debug> fmt::Debug for Journal<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("stream", &self.stream)
            .field("store", &self.store.describe())
            .field("version", &self.version)
            .field("unconfirmed", &self.pending.len())
            .field("snapshot_version", &self.snapshot_version)
            .field("state", &self.state)
            .finish()
    }
}
