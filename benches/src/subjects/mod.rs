//! The things measured: actor-core, its floor (raw tokio channels) and the
//! peers, each behind one small trait so that every workload runs the same
//! code against all of them.
//!
//! Every subject implements the same actor: a `u64` of state, an ask that
//! adds its argument and answers the new value, and a one-way tell that
//! adds. Nothing else differs between subjects but the runtime.

use std::future::Future;

use tokio::task::JoinHandle;

pub(crate) mod actix;
pub(crate) mod floor;
pub(crate) mod kameo;
pub(crate) mod ours;
pub(crate) mod ractor;

/// The user state every subject's actor holds (a `u64`), in bytes; memory
/// targets are stated beyond it.
pub(crate) const STATE_BYTES: usize = std::mem::size_of::<u64>();

/// Which tokio scheduler a workload asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// `new_current_thread`: everything on one thread.
    CurrentThread,
    /// `new_multi_thread` with two workers (the machine has two cores).
    MultiThread,
}

/// The role of a subject in a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Ours,
    Floor,
    Peer,
}

/// A two-worker multi-thread tokio runtime (the machine has two cores):
/// where the remote and storage scenarios run.
pub(crate) fn two_workers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Where a subject's workload runs: a tokio runtime, or actix's own
/// single-threaded `System` (actix actors cannot live on a tokio runtime's
/// worker threads).
pub(crate) enum Executor {
    Tokio(tokio::runtime::Runtime),
    Actix(actix_rt::SystemRunner),
}

impl Executor {
    pub(crate) fn tokio(flavor: Flavor) -> Executor {
        let mut b = match flavor {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            Flavor::MultiThread => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(2);
                b
            }
        };
        Executor::Tokio(b.enable_all().build().expect("a tokio runtime"))
    }

    pub(crate) fn block_on<F: Future>(&self, f: F) -> F::Output {
        match self {
            Executor::Tokio(rt) => rt.block_on(f),
            Executor::Actix(sys) => sys.block_on(f),
        }
    }
}

/// One implementation under test.
pub(crate) trait Subject: 'static {
    /// The name in tables and JSON.
    const NAME: &'static str;
    const ROLE: Role;
    /// Said next to its figures (how it was run, where that differs).
    const NOTE: Option<&'static str> = None;

    /// What a run shares between its actors (a silo, for actor-core).
    type Env: Clone + Send + Sync + 'static;
    /// What reaches one actor.
    type Handle: Clone + Send + Sync + 'static;

    /// The executor for a workload that asks for `flavor`.
    fn executor(flavor: Flavor) -> Executor {
        Executor::tokio(flavor)
    }

    /// Spawns a task on the executor running the workload.
    fn spawn_task<F>(f: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        tokio::spawn(f)
    }

    /// Builds the run's environment, inside the executor.
    fn env() -> impl Future<Output = Self::Env>;

    /// Creates actor number `i` (for actor-core: a reference to grain `i`,
    /// activated by its first call).
    fn spawn(env: &Self::Env, i: u64) -> impl Future<Output = Self::Handle> + Send + '_;

    /// Request/response: adds `x`, answers the new state.
    fn ask(h: &Self::Handle, x: u64) -> impl Future<Output = u64> + Send + '_;

    /// One-way: adds `x`.
    fn tell(h: &Self::Handle, x: u64);
}
