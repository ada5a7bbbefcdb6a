//! `PersistentState` in grains on a silo: loaded before `on_activate`,
//! survives deactivation and silo restart, several named states on named
//! providers, stale writes refused and the activation reset, outages
//! reported to the caller.

mod common;

use std::sync::Arc;
use std::time::Duration;

use actor_core::prelude::*;
use actor_core::{BoxError, Error as CoreError};
use actor_persistence::{
    Error, MemoryStorage, PersistentState, SiloBuilderStorageExt, SiloStorageExt, SqliteStorage,
    StateKey, StorageProvider,
};
use common::unique;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Count {
    value: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Audit {
    entries: Vec<String>,
}

/// A counter with two named states: its count on the default provider, and
/// an audit trail on the `archive` provider.
struct Counter {
    count: PersistentState<Count>,
    audit: PersistentState<Audit>,
    seen_on_activate: Option<u64>,
}

impl Grain for Counter {
    const TYPE_NAME: &'static str = "counter";

    async fn on_activate(&mut self, _ctx: &GrainContext<Self>) -> Result<(), BoxError> {
        self.seen_on_activate = Some(self.count.value);
        Ok(())
    }
}

#[grain_methods]
impl Counter {
    async fn add(&mut self, n: u64, ctx: &GrainContext<Self>) -> Result<u64, Error> {
        self.count.value += n;
        self.count.write_or_reset(ctx).await?;
        self.audit.entries.push(format!("add {n}"));
        self.audit.write_or_reset(ctx).await?;
        Ok(self.count.value)
    }

    #[read_only]
    async fn get(&self) -> u64 {
        self.count.value
    }

    #[read_only]
    async fn value_at_activation(&self) -> Option<u64> {
        self.seen_on_activate
    }

    #[read_only]
    async fn audit(&self) -> Vec<String> {
        self.audit.entries.clone()
    }

    #[read_only]
    async fn exists(&self) -> bool {
        self.count.record_exists()
    }

    async fn clear(&mut self, ctx: &GrainContext<Self>) -> Result<(), Error> {
        let outcome = self.count.clear().await;
        if outcome.is_err() {
            ctx.deactivate_on_idle();
        }
        outcome
    }
}

async fn silo_on(
    default: impl StorageProvider,
    archive: impl StorageProvider,
) -> Result<Silo, CoreError> {
    Silo::builder()
        .with_default_storage(default)
        .with_storage("archive", archive)
        .grain_with_async(|ctx| async move {
            Ok(Counter {
                count: PersistentState::load(&ctx, "count").await?,
                audit: PersistentState::load_from(&ctx, "audit", "archive").await?,
                seen_on_activate: None,
            })
        })
        .start()
        .await
}

const BOUND: Duration = Duration::from_secs(5);

#[tokio::test]
async fn state_is_loaded_before_on_activate_and_survives_deactivation() {
    let storage = MemoryStorage::new();
    let archive = MemoryStorage::new();
    let silo = silo_on(storage.clone(), archive.clone()).await.unwrap();
    let c = silo.get_grain::<Counter>("a");
    assert_eq!(c.value_at_activation().await.unwrap(), Some(0));
    assert!(!c.exists().await.unwrap());
    assert_eq!(c.add(2).await.unwrap(), Ok(2));
    assert_eq!(c.add(3).await.unwrap(), Ok(5));
    assert!(c.exists().await.unwrap());

    assert!(silo.deactivate_all(BOUND).await);
    assert_eq!(silo.activation_count(), 0);
    assert_eq!(c.value_at_activation().await.unwrap(), Some(5));
    assert_eq!(c.audit().await.unwrap(), ["add 2", "add 3"]);
    // Each named state is its own record, on its own provider.
    assert_eq!((storage.len(), archive.len()), (1, 1));
    silo.shutdown().await;
}

#[tokio::test]
async fn state_survives_a_silo_restart_on_the_same_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grains.db");
    let silo = silo_on(
        SqliteStorage::open(&path).await.unwrap(),
        MemoryStorage::new(),
    )
    .await
    .unwrap();
    let c = silo.get_grain::<Counter>("restart");
    for _ in 0..3 {
        c.add(1).await.unwrap().unwrap();
    }
    silo.shutdown().await;

    // A new silo, a new connection pool, the same file.
    let silo = silo_on(
        SqliteStorage::open(&path).await.unwrap(),
        MemoryStorage::new(),
    )
    .await
    .unwrap();
    let c = silo.get_grain::<Counter>("restart");
    assert_eq!(c.value_at_activation().await.unwrap(), Some(3));
    assert_eq!(c.add(1).await.unwrap(), Ok(4));
    silo.shutdown().await;
}

#[tokio::test]
async fn a_stale_write_is_refused_and_the_activation_reloads() {
    // Two silos over one storage, each with an activation of the same
    // grain: the single-activation guarantee is broken on purpose, as a
    // network split could, and storage must still not lose a write.
    let storage = MemoryStorage::new();
    let archive = MemoryStorage::new();
    let one = silo_on(storage.clone(), archive.clone()).await.unwrap();
    let two = silo_on(storage.clone(), archive.clone()).await.unwrap();
    let on_one = one.get_grain::<Counter>("split");
    let on_two = two.get_grain::<Counter>("split");
    assert_eq!(on_one.get().await.unwrap(), 0);
    assert_eq!(on_two.get().await.unwrap(), 0);

    assert_eq!(on_one.add(10).await.unwrap(), Ok(10));
    let refused = on_two.add(1).await.unwrap().unwrap_err();
    assert!(refused.is_conflict(), "{refused:?}");
    assert!(refused.to_string().contains("counter/s:split"), "{refused}");

    // The stale activation was reset: the next call loads 10 and builds
    // on it.
    assert_eq!(on_two.value_at_activation().await.unwrap(), Some(10));
    assert_eq!(on_two.add(1).await.unwrap(), Ok(11));
    // And now the first silo's copy is the stale one.
    assert!(on_one.add(1).await.unwrap().unwrap_err().is_conflict());
    assert_eq!(on_one.add(1).await.unwrap(), Ok(12));
    one.shutdown().await;
    two.shutdown().await;
}

#[tokio::test]
async fn an_outage_is_an_error_to_the_caller_never_a_false_success() {
    let storage = MemoryStorage::new();
    let silo = silo_on(storage.clone(), MemoryStorage::new())
        .await
        .unwrap();
    let c = silo.get_grain::<Counter>("outage");
    assert_eq!(c.add(1).await.unwrap(), Ok(1));

    storage.set_available(false);
    let e = c.add(1).await.unwrap().unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");
    // The activation was reset; while storage is down it cannot load, so
    // calls fail with the activation error that names the outage.
    let e = c.get().await.unwrap_err();
    assert!(
        matches!(&e, CoreError::ActivationFailed { reason, .. } if reason.contains("unavailable")),
        "{e:?}"
    );

    storage.set_available(true);
    // The unacknowledged increment is not there; the acknowledged one is.
    assert_eq!(c.get().await.unwrap(), 1);
    assert_eq!(c.add(1).await.unwrap(), Ok(2));
    silo.shutdown().await;
}

#[tokio::test]
async fn clear_deletes_the_record() {
    let storage = MemoryStorage::new();
    let silo = silo_on(storage.clone(), MemoryStorage::new())
        .await
        .unwrap();
    let c = silo.get_grain::<Counter>("clear");
    c.add(4).await.unwrap().unwrap();
    c.clear().await.unwrap().unwrap();
    assert_eq!(c.get().await.unwrap(), 0);
    assert!(!c.exists().await.unwrap());
    let id = GrainId::new("counter", "clear");
    assert_eq!(
        storage.read(&StateKey::new(&id, "count")).await.unwrap(),
        None
    );
    silo.deactivate_all(BOUND).await;
    assert_eq!(c.get().await.unwrap(), 0);
    silo.shutdown().await;
}

#[tokio::test]
async fn a_missing_provider_fails_the_activation_with_a_hint() {
    let silo = Silo::builder()
        .with_default_storage(MemoryStorage::new())
        .grain_with_async(|ctx| async move {
            Ok(Counter {
                count: PersistentState::load(&ctx, "count").await?,
                audit: PersistentState::load_from(&ctx, "audit", "archive").await?,
                seen_on_activate: None,
            })
        })
        .start()
        .await
        .unwrap();
    let e = silo.get_grain::<Counter>(1).get().await.unwrap_err();
    let CoreError::ActivationFailed { reason, .. } = &e else {
        panic!("{e:?}");
    };
    assert!(
        reason.contains("no storage provider named `archive`"),
        "{reason}"
    );
    assert!(reason.contains("registered: default"), "{reason}");
    assert!(reason.contains("with_storage(\"archive\""), "{reason}");
    assert!(silo.storage("default").is_ok());
    assert!(silo.storage("nope").is_err());
    silo.shutdown().await;
}

#[tokio::test]
async fn state_loads_in_on_activate_too() {
    struct Lazy {
        count: Option<PersistentState<Count>>,
    }
    impl Grain for Lazy {
        const TYPE_NAME: &'static str = "lazy";
        async fn on_activate(&mut self, ctx: &GrainContext<Self>) -> Result<(), BoxError> {
            self.count = Some(PersistentState::load(ctx, "count").await?);
            Ok(())
        }
    }
    #[grain_methods]
    impl Lazy {
        async fn bump(&mut self) -> Result<u64, Error> {
            let c = self.count.as_mut().expect("loaded in on_activate");
            c.value += 1;
            c.write().await?;
            Ok(c.value)
        }
    }
    let storage = MemoryStorage::new();
    let silo = Silo::builder()
        .with_default_storage(storage)
        .grain_with(|_| Lazy { count: None })
        .start()
        .await
        .unwrap();
    let g = silo.get_grain::<Lazy>(unique("k"));
    assert_eq!(g.bump().await.unwrap(), Ok(1));
    silo.deactivate_all(BOUND).await;
    assert_eq!(g.bump().await.unwrap(), Ok(2));
    silo.shutdown().await;
}

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<PersistentState<Count>>();
    check::<actor_persistence::Journal<Journaled>>();
    check::<Arc<dyn StorageProvider>>();
    check::<Arc<dyn actor_persistence::EventStore>>();
    check::<SqliteStorage>();
    check::<actor_persistence::PostgresStorage>();
    check::<actor_persistence::RedisStorage>();
    check::<Error>();
}

#[derive(Default, Serialize, Deserialize)]
struct Journaled;
impl actor_persistence::JournaledState for Journaled {
    type Event = ();
    fn apply(&mut self, _: &()) {}
}
