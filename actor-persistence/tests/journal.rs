//! Event-sourced state: the event store contract on memory, SQLite,
//! PostgreSQL and Redis; journals that replay to the live state, from a snapshot plus
//! the tail as from the full log (proptest), and refuse stale appends.

mod common;

use std::sync::Arc;
use std::time::Duration;

use actor_core::prelude::*;
use actor_persistence::{
    Error, EventStore, Journal, JournaledState, MemoryStorage, SiloBuilderStorageExt, Snapshot,
    SqliteStorage, StateKey,
};
use common::{Fixture, TEST_BOUND, unique};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

// ---- a journaled state ----

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Ledger {
    balance: i64,
    entries: u64,
    /// Order-sensitive, so that a replay in the wrong order shows.
    digest: u64,
    memo: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Entry {
    Credit(i64),
    Debit(i64),
    Memo(String),
}

impl JournaledState for Ledger {
    type Event = Entry;
    fn apply(&mut self, e: &Entry) {
        self.entries += 1;
        let v = match e {
            Entry::Credit(n) => {
                self.balance += n;
                *n as u64
            }
            Entry::Debit(n) => {
                self.balance -= n;
                (*n as u64) << 1
            }
            Entry::Memo(m) => {
                self.memo = m.clone();
                m.len() as u64
            }
        };
        self.digest = self.digest.wrapping_mul(31).wrapping_add(v ^ self.entries);
    }
}

fn stream() -> StateKey {
    StateKey::new(&GrainId::new("ledger", unique("g").as_str()), "journal")
}

// ---- the event store contract ----

async fn store_contract(s: Arc<dyn EventStore>) {
    let k = stream();
    assert_eq!(s.version(&k).await.unwrap(), 0);
    assert!(s.read_events(&k, 0).await.unwrap().is_empty());
    assert_eq!(s.append(&k, 0, &[]).await.unwrap(), 0);

    assert_eq!(s.append(&k, 0, &[b"a".to_vec()]).await.unwrap(), 1);
    assert_eq!(
        s.append(&k, 1, &[b"b".to_vec(), b"c".to_vec(), vec![0xff; 3]])
            .await
            .unwrap(),
        4
    );
    let all = s.read_events(&k, 0).await.unwrap();
    let versions: Vec<u64> = all.iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2, 3, 4]);
    assert_eq!(all[1].data, b"b");
    assert_eq!(all[3].data, [0xff; 3]);
    let tail = s.read_events(&k, 2).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.version).collect::<Vec<_>>(), [3, 4]);

    // Stale and future versions are refused, and store nothing.
    for expected in [0, 3, 9] {
        let e = s
            .append(&k, expected, &[b"x".to_vec(), b"y".to_vec()])
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::VersionConflict { expected: x, actual: 4, .. } if x == expected),
            "{e:?}"
        );
    }
    assert!(s.append(&k, 2, &[]).await.unwrap_err().is_conflict());
    assert_eq!(s.version(&k).await.unwrap(), 4);

    // Snapshots: the newest is kept.
    assert_eq!(s.read_snapshot(&k).await.unwrap(), None);
    let snap = |v: u64| Snapshot {
        version: v,
        data: format!("s{v}").into_bytes(),
    };
    s.write_snapshot(&k, &snap(2)).await.unwrap();
    s.write_snapshot(&k, &snap(4)).await.unwrap();
    s.write_snapshot(&k, &snap(3)).await.unwrap();
    assert_eq!(s.read_snapshot(&k).await.unwrap(), Some(snap(4)));

    // Streams are independent.
    let other = StateKey::new(&GrainId::new("ledger", unique("g").as_str()), "journal");
    assert_eq!(s.version(&other).await.unwrap(), 0);
    assert_eq!(s.read_snapshot(&other).await.unwrap(), None);
}

async fn concurrent_appends(s: Arc<dyn EventStore>) {
    let k = stream();
    s.append(&k, 0, &[b"0".to_vec()]).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (s, k) = (s.clone(), k.clone());
            tokio::spawn(async move {
                s.append(
                    &k,
                    1,
                    &[format!("{i}a").into_bytes(), format!("{i}b").into_bytes()],
                )
                .await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(v) => {
                won += 1;
                assert_eq!(v, 3);
            }
            Err(e) => assert!(e.is_conflict(), "{e:?}"),
        }
    }
    assert_eq!(won, 1, "exactly one append at version 1 wins");
    let events = s.read_events(&k, 0).await.unwrap();
    assert_eq!(events.len(), 3);
    // The winner's two events are both there, in order.
    let a = String::from_utf8(events[1].data.clone()).unwrap();
    let b = String::from_utf8(events[2].data.clone()).unwrap();
    assert_eq!(a.trim_end_matches('a'), b.trim_end_matches('b'));
}

macro_rules! store_contract {
    ($name:ident, $fixture:expr) => {
        mod $name {
            use super::*;

            async fn run<F: std::future::Future<Output = ()>>(
                case: impl FnOnce(Arc<dyn EventStore>) -> F,
            ) {
                let Some(fixture) = $fixture else { return };
                let store = fixture.events.clone().expect("an event store");
                tokio::time::timeout(TEST_BOUND, case(store))
                    .await
                    .expect("the case finished in time");
                fixture.cleanup().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn contract() {
                run(super::store_contract).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_appends() {
                run(super::concurrent_appends).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn journal_conflict() {
                run(super::journal_conflict).await
            }
        }
    };
}

store_contract!(memory, Some(Fixture::memory()));
store_contract!(sqlite, Some(Fixture::sqlite().await));
store_contract!(postgres, Fixture::postgres().await);
store_contract!(redis, Fixture::redis().await);

// ---- journals ----

/// Two journals on one stream (as two activations of a grain could be): the
/// second to confirm is refused, stores nothing, and recovers by reloading.
async fn journal_conflict(s: Arc<dyn EventStore>) {
    let id = GrainId::new("ledger", unique("g").as_str());
    let mut a = Journal::<Ledger>::load_with(s.clone(), &id, "journal")
        .await
        .unwrap();
    let mut b = Journal::<Ledger>::load_with(s.clone(), &id, "journal")
        .await
        .unwrap();
    a.raise(Entry::Credit(10));
    assert_eq!(a.confirm().await.unwrap(), 1);

    b.raise(Entry::Debit(3));
    b.raise(Entry::Debit(4));
    let e = b.confirm().await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::VersionConflict {
                expected: 0,
                actual: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("ledger/"), "{e}");
    assert_eq!(b.unconfirmed().len(), 2, "nothing was confirmed");
    assert_eq!(
        s.version(a.stream()).await.unwrap(),
        1,
        "nothing was appended"
    );

    b.reload().await.unwrap();
    assert_eq!(b.state().balance, 10);
    b.raise(Entry::Debit(3));
    assert_eq!(b.confirm().await.unwrap(), 2);
    assert_eq!(b.replay_all().await.unwrap(), *b.state());
}

#[tokio::test]
async fn a_journal_rebuilds_from_the_latest_snapshot_and_the_tail() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStorage::new());
    let id = GrainId::new("ledger", "snap");
    let mut j = Journal::<Ledger>::load_with(store.clone(), &id, "journal")
        .await
        .unwrap()
        .snapshot_every(4);
    for n in 1..=10 {
        j.raise(Entry::Credit(n));
        j.confirm().await.unwrap();
    }
    assert_eq!(j.version(), 10);
    assert_eq!(j.snapshot_version(), 8);
    let live = j.state().clone();

    let again = Journal::<Ledger>::load_with(store.clone(), &id, "journal")
        .await
        .unwrap();
    assert_eq!(*again.state(), live);
    assert_eq!(again.version(), 10);
    assert_eq!(again.recovery().snapshot, Some(8));
    assert_eq!(again.recovery().events_replayed, 2);
    assert_eq!(again.replay_all().await.unwrap(), live);
    let history = again.history().await.unwrap();
    assert_eq!(history.len(), 10);
    assert_eq!(history[0], (1, Entry::Credit(1)));
}

#[tokio::test]
async fn an_unreadable_snapshot_means_a_full_replay_not_an_error() {
    let store = MemoryStorage::new();
    let id = GrainId::new("ledger", "bad-snapshot");
    let mut j = Journal::<Ledger>::load_with(Arc::new(store.clone()), &id, "journal")
        .await
        .unwrap();
    j.raise_all([Entry::Credit(5), Entry::Memo("hi".into())]);
    j.confirm().await.unwrap();
    let live = j.state().clone();
    store
        .write_snapshot(
            j.stream(),
            &Snapshot {
                version: 2,
                data: b"{\"not\": \"a ledger\"".to_vec(),
            },
        )
        .await
        .unwrap();
    let again = Journal::<Ledger>::load_with(Arc::new(store), &id, "journal")
        .await
        .unwrap();
    assert_eq!(*again.state(), live);
    assert_eq!(again.recovery().snapshot, None);
    assert_eq!(again.recovery().events_replayed, 2);
}

#[tokio::test]
async fn an_outage_fails_confirm_and_loses_nothing_acknowledged() {
    let store = MemoryStorage::new();
    let id = GrainId::new("ledger", "outage");
    let mut j = Journal::<Ledger>::load_with(Arc::new(store.clone()), &id, "journal")
        .await
        .unwrap();
    j.raise(Entry::Credit(1));
    j.confirm().await.unwrap();
    store.set_available(false);
    j.raise(Entry::Credit(100));
    assert!(j.confirm().await.unwrap_err().is_unavailable());
    store.set_available(true);
    j.reload().await.unwrap();
    assert_eq!(j.state().balance, 1);
}

// ---- proptest: snapshot + tail = full replay = live state ----

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        (1..1000i64).prop_map(Entry::Credit),
        (1..1000i64).prop_map(Entry::Debit),
        "[a-zé🔑]{0,8}".prop_map(Entry::Memo),
    ]
}

/// Confirms `batches` of events through one journal (snapshots every
/// `every`), then checks a fresh load against the live state and a full
/// replay.
async fn snapshot_replay(
    store: Arc<dyn EventStore>,
    batches: Vec<Vec<Entry>>,
    every: u64,
) -> Result<(), TestCaseError> {
    let id = GrainId::new("ledger", unique("p").as_str());
    let mut live = Journal::<Ledger>::load_with(store.clone(), &id, "journal")
        .await
        .unwrap()
        .snapshot_every(every);
    let mut expected = Ledger::default();
    let mut total = 0u64;
    for batch in batches {
        for e in &batch {
            expected.apply(e);
        }
        total += batch.len() as u64;
        live.raise_all(batch);
        live.confirm().await.unwrap();
    }
    prop_assert_eq!(live.state(), &expected);
    prop_assert_eq!(live.version(), total);

    let loaded = Journal::<Ledger>::load_with(store.clone(), &id, "journal")
        .await
        .unwrap();
    prop_assert_eq!(
        loaded.state(),
        &expected,
        "snapshot + tail equals the live state"
    );
    prop_assert_eq!(
        &loaded.replay_all().await.unwrap(),
        &expected,
        "full replay equals it too"
    );
    prop_assert_eq!(loaded.version(), total);
    let r = loaded.recovery();
    prop_assert_eq!(r.snapshot.unwrap_or(0) + r.events_replayed, total);
    if every > 0 && total >= every {
        prop_assert!(r.snapshot.is_some(), "a snapshot was due");
        // A snapshot is taken after a confirm once `every` events have
        // accumulated; a batch may overshoot by its own length.
        prop_assert!(r.events_replayed < total);
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn batches() -> impl Strategy<Value = Vec<Vec<Entry>>> {
    proptest::collection::vec(proptest::collection::vec(entry(), 1..5), 0..25)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn memory_snapshot_plus_tail_equals_replay(batches in batches(), every in 0..8u64) {
        runtime().block_on(snapshot_replay(Arc::new(MemoryStorage::new()), batches, every))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn sqlite_snapshot_plus_tail_equals_replay(batches in batches(), every in 0..8u64) {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(async {
            let s = SqliteStorage::open(dir.path().join("j.db")).await.unwrap();
            snapshot_replay(Arc::new(s), batches, every).await
        })?;
    }
}

// ---- a journaled grain on a silo ----

struct LedgerGrain {
    journal: Journal<Ledger>,
}

impl Grain for LedgerGrain {
    const TYPE_NAME: &'static str = "ledger";
}

#[grain_methods]
impl LedgerGrain {
    async fn post(&mut self, entries: Vec<Entry>, ctx: &GrainContext<Self>) -> Result<u64, Error> {
        self.journal.raise_all(entries);
        self.journal.confirm_or_reset(ctx).await
    }

    #[read_only]
    async fn ledger(&self) -> (Ledger, u64, Option<u64>) {
        (
            self.journal.state().clone(),
            self.journal.version(),
            self.journal.recovery().snapshot,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journaled_grain_replays_to_its_live_state_after_deactivation() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStorage::open(dir.path().join("ledger.db"))
        .await
        .unwrap();
    let silo = Silo::builder()
        .with_default_event_store(store)
        .grain_with_async(|ctx| async move {
            Ok(LedgerGrain {
                journal: Journal::load(&ctx, "journal").await?.snapshot_every(5),
            })
        })
        .start()
        .await
        .unwrap();
    let g = silo.get_grain::<LedgerGrain>("acct");
    for i in 1..=6 {
        let v = g
            .post(vec![Entry::Credit(i * 10), Entry::Debit(i)])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v, 2 * i as u64);
    }
    let (live, version, _) = g.ledger().await.unwrap();
    assert_eq!((live.balance, version), (210 - 21, 12));

    assert!(silo.deactivate_all(Duration::from_secs(5)).await);
    let (replayed, version, snapshot) = g.ledger().await.unwrap();
    assert_eq!(replayed, live, "replay equals the live state");
    assert_eq!(version, 12);
    assert_eq!(snapshot, Some(12), "a snapshot was taken at version 12");
    silo.shutdown().await;
}
