//! proptest: random sequences of reads, writes (current, stale or absent
//! ETag) and clears against a simple model of the contract, on the memory
//! and SQLite providers.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use actor_core::GrainId;
use actor_persistence::{ETag, Error, MemoryStorage, SqliteStorage, StateKey, StorageProvider};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Pick {
    /// The ETag the model says is stored (a well-behaved writer).
    Current,
    /// "I think there is no record."
    Absent,
    /// Some ETag seen earlier (may be current by chance).
    Seen(usize),
}

#[derive(Debug, Clone)]
enum Op {
    Read(usize),
    Write(usize, u8, Pick),
    Clear(usize, Pick),
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        3 => Just(Pick::Current),
        1 => Just(Pick::Absent),
        2 => any::<usize>().prop_map(Pick::Seen),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..3usize;
    prop_oneof![
        key.clone().prop_map(Op::Read),
        (key.clone(), any::<u8>(), pick()).prop_map(|(k, d, p)| Op::Write(k, d, p)),
        (key, pick()).prop_map(|(k, p)| Op::Clear(k, p)),
    ]
}

#[derive(Default)]
struct Model {
    records: HashMap<usize, (Vec<u8>, ETag)>,
    seen: Vec<ETag>,
}

impl Model {
    fn expected(&self, key: usize, pick: &Pick) -> Option<ETag> {
        match pick {
            Pick::Current => self.records.get(&key).map(|r| r.1.clone()),
            Pick::Absent => None,
            Pick::Seen(i) if self.seen.is_empty() => Some(ETag::from(format!("never-{i}"))),
            Pick::Seen(i) => Some(self.seen[i % self.seen.len()].clone()),
        }
    }
}

async fn check(p: Arc<dyn StorageProvider>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let id = GrainId::new("model", common::unique("g").as_str());
    let keys: Vec<StateKey> = (0..3)
        .map(|i| StateKey::new(&id, &format!("s{i}")))
        .collect();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Read(k) => {
                let got = p.read(&keys[k]).await.unwrap().map(|r| (r.data, r.etag));
                prop_assert_eq!(got, model.records.get(&k).cloned());
            }
            Op::Write(k, byte, pick) => {
                let expected = model.expected(k, &pick);
                let current = model.records.get(&k).map(|r| r.1.clone());
                let data = vec![byte; byte as usize % 5];
                match p.write(&keys[k], &data, expected.as_ref()).await {
                    Ok(etag) => {
                        prop_assert_eq!(&expected, &current, "a write with a wrong ETag succeeded");
                        prop_assert!(!model.seen.contains(&etag), "an ETag was reused");
                        model.seen.push(etag.clone());
                        model.records.insert(k, (data, etag));
                    }
                    Err(Error::Conflict { actual, .. }) => {
                        prop_assert_ne!(&expected, &current, "a write with the right ETag failed");
                        prop_assert_eq!(actual, current);
                    }
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
            }
            Op::Clear(k, pick) => {
                let expected = model.expected(k, &pick);
                let current = model.records.get(&k).map(|r| r.1.clone());
                match p.clear(&keys[k], expected.as_ref()).await {
                    Ok(()) => {
                        prop_assert_eq!(&expected, &current, "a clear with a wrong ETag succeeded");
                        model.records.remove(&k);
                    }
                    Err(Error::Conflict { actual, .. }) => {
                        prop_assert_ne!(&expected, &current, "a clear with the right ETag failed");
                        prop_assert_eq!(actual, current);
                    }
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
            }
        }
    }
    for (k, key) in keys.iter().enumerate() {
        let got = p.read(key).await.unwrap().map(|r| (r.data, r.etag));
        prop_assert_eq!(got, model.records.get(&k).cloned());
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn memory_follows_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        runtime().block_on(check(Arc::new(MemoryStorage::new()), ops))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn sqlite_follows_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(async {
            let s = SqliteStorage::open(dir.path().join("model.db")).await.unwrap();
            check(Arc::new(s), ops).await
        })?;
    }
}
