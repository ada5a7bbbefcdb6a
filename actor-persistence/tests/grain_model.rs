//! proptest: random sequences of grain writes, reads, deactivations and
//! silo restarts against a model (a map of acknowledged values), on the
//! memory and SQLite providers. Every acknowledged write must be what the
//! next activation loads.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use actor_core::prelude::*;
use actor_persistence::{
    Error, MemoryStorage, PersistentState, SiloBuilderStorageExt, SqliteStorage,
};
use proptest::prelude::*;

struct Tally {
    total: PersistentState<i64>,
    log: PersistentState<Vec<i64>>,
}

impl Grain for Tally {
    const TYPE_NAME: &'static str = "tally";
}

#[grain_methods]
impl Tally {
    async fn add(&mut self, n: i64, ctx: &GrainContext<Self>) -> Result<i64, Error> {
        *self.total.state_mut() += n;
        self.total.write_or_reset(ctx).await?;
        self.log.push(n);
        self.log.write_or_reset(ctx).await?;
        Ok(*self.total.state())
    }

    #[read_only]
    async fn get(&self) -> (i64, usize) {
        (*self.total.state(), self.log.len())
    }
}

#[derive(Debug, Clone)]
enum Op {
    Add(u8, i64),
    Get(u8),
    DeactivateAll,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8, -100..100i64).prop_map(|(g, n)| Op::Add(g, n)),
        2 => (0..3u8).prop_map(Op::Get),
        1 => Just(Op::DeactivateAll),
        1 => Just(Op::Restart),
    ]
}

#[derive(Clone)]
enum Backend {
    Memory(MemoryStorage),
    Sqlite(PathBuf),
}

async fn start(backend: &Backend) -> Silo {
    let builder = Silo::builder();
    let builder = match backend {
        Backend::Memory(m) => builder.with_default_storage(m.clone()),
        Backend::Sqlite(path) => {
            builder.with_default_storage(SqliteStorage::open(path).await.unwrap())
        }
    };
    builder
        .grain_with_async(|ctx| async move {
            Ok(Tally {
                total: PersistentState::load(&ctx, "total").await?,
                log: PersistentState::load(&ctx, "log").await?,
            })
        })
        .start()
        .await
        .unwrap()
}

async fn check(backend: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let run = common::unique("r");
    let key = |g: u8| format!("{run}-{g}");
    let mut model: HashMap<u8, (i64, usize)> = HashMap::new();
    let mut silo = start(&backend).await;
    for op in ops {
        match op {
            Op::Add(g, n) => {
                let got = silo.get_grain::<Tally>(key(g)).add(n).await.unwrap();
                let m = model.entry(g).or_default();
                m.0 += n;
                m.1 += 1;
                prop_assert_eq!(got, Ok(m.0));
            }
            Op::Get(g) => {
                let got = silo.get_grain::<Tally>(key(g)).get().await.unwrap();
                prop_assert_eq!(got, model.get(&g).copied().unwrap_or_default());
            }
            Op::DeactivateAll => {
                prop_assert!(silo.deactivate_all(Duration::from_secs(5)).await);
            }
            Op::Restart => {
                silo.shutdown().await;
                silo = start(&backend).await;
            }
        }
    }
    silo.shutdown().await;
    let silo = start(&backend).await;
    for g in 0..3u8 {
        let got = silo.get_grain::<Tally>(key(g)).get().await.unwrap();
        prop_assert_eq!(got, model.get(&g).copied().unwrap_or_default());
    }
    silo.shutdown().await;
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn memory_grains_keep_every_acknowledged_write(ops in proptest::collection::vec(op(), 1..30)) {
        runtime().block_on(check(Backend::Memory(MemoryStorage::new()), ops))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn sqlite_grains_keep_every_acknowledged_write(ops in proptest::collection::vec(op(), 1..30)) {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(check(Backend::Sqlite(dir.path().join("g.db")), ops))?;
    }
}
