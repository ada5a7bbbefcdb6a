//! # actor-tx: ACID transactions across grains
//!
//! Serializable transactions over the state of many grains, on one silo
//! or across a cluster, in the manner of Orleans transactions: a grain
//! holds [`TransactionalState<T>`]s (several, by name), its methods declare
//! how they take part (`#[transaction(join)]` and the other
//! [`TransactionOption`]s), and a caller runs
//! [`run_transaction(&client, || async { .. })`](run_transaction) from a
//! [`ClusterClient`](actor_cluster::ClusterClient), a silo handle or
//! another grain. Either every write of the transaction happens, or none
//! does; no other transaction sees a write before it commits.
//!
//! What it does not do: nested transactions that commit apart from their
//! parent (a `create` method inside a transaction runs its own, separate
//! transaction), long-running transactions (each has a deadline, 10 s by
//! default), or transactions over state that is not a
//! `TransactionalState`.
//!
//! ## A tour
//!
//! ```
//! use actor_core::prelude::*;
//! use actor_tx::{MemoryTxStorage, SiloBuilderTransactionsExt, TransactionalState, run_transaction};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Balance { amount: i64 }
//!
//! struct Account { balance: TransactionalState<Balance> }
//!
//! impl Grain for Account {
//!     const TYPE_NAME: &'static str = "account";
//!     // `&self` methods that interleave: a call waiting for a lock never
//!     // holds up the account's other calls (see docs/transactions.md).
//!     fn options() -> GrainOptions { GrainOptions::new().reentrant() }
//! }
//!
//! #[grain_methods]
//! impl Account {
//!     /// Joins the caller's transaction; an overdraw aborts all of it.
//!     #[transaction(join)]
//!     pub async fn add(&self, amount: i64) -> actor_tx::Result<i64> {
//!         let balance = self.balance.perform_update(|b| { b.amount += amount; b.amount }).await?;
//!         if balance < 0 {
//!             return Err(actor_tx::abort("insufficient funds"));
//!         }
//!         Ok(balance)
//!     }
//!
//!     /// Runs a transaction of its own.
//!     #[transaction(create)]
//!     pub async fn balance(&self) -> actor_tx::Result<i64> {
//!         self.balance.perform_read(|b| b.amount).await
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let silo = Silo::builder()
//!     .with_transactions(MemoryTxStorage::new())   // or SqliteTxStorage, PostgresTxStorage
//!     .grain_with_async(|ctx| async move {
//!         Ok(Account { balance: TransactionalState::load(&ctx, "balance").await? })
//!     })
//!     .start()
//!     .await?;
//! let (alice, bob) = (silo.get_grain::<Account>("alice"), silo.get_grain::<Account>("bob"));
//!
//! // A transfer: both sides or neither.
//! run_transaction(&silo, || async {
//!     bob.add(30).await??;
//!     alice.add(-30).await??;   // alice has 0: aborts, and bob's +30 with it
//!     Ok(())
//! })
//! .await
//! .unwrap_err();
//! assert_eq!((alice.balance().await??, bob.balance().await??), (0, 0));
//!
//! run_transaction(&silo, || async {
//!     alice.add(50).await??;
//!     alice.add(-20).await??;
//!     bob.add(20).await??;
//!     Ok(())
//! })
//! .await?;
//! assert_eq!((alice.balance().await??, bob.balance().await??), (30, 20));
//! # silo.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! A call to a transactional method answers `actor_tx::Result<R>` (the
//! runtime's and the transaction's failures), around the method's own `R`;
//! hence the `??` when the method itself returns a `Result`.
//!
//! ## Outcomes
//!
//! [`run_transaction`] answers `Ok` once the transaction committed
//! everywhere it wrote, or an [`Error`]:
//!
//! - [`Error::Aborted`] with an [`AbortReason`]: nothing happened anywhere.
//!   [`Error::is_retryable`] says whether running it again can succeed
//!   (lock conflicts, lock timeouts, deadlines, failed participants: yes;
//!   the transaction's own abort, by returning an error or calling
//!   [`abort`]: no). [`retry_transaction`] retries with backoff and keeps
//!   the transaction's age across attempts.
//! - [`Error::InDoubt`]: the caller cannot know; every participant still
//!   ends on the same side (all or nothing). Never retried blindly.
//!
//! ## How it works
//!
//! Each transactional state has a participant (the system grain
//! [`TxResource`], one per state in the cluster) holding its read/write
//! lock, its committed value and its prepare record. Reads take read
//! locks, updates write locks (a read lock is upgraded), held to the end
//! of the transaction (strict two-phase locking: serializable).
//! Conflicts are settled by age, *wait-die*: an older transaction waits
//! for a younger one, a younger one asking for a lock an older one holds
//! aborts at once (retryable). No cycle of waits can form, so deadlocks
//! end in an immediate abort, not a timeout.
//!
//! At commit the caller picks the first participant written as the
//! transaction's *manager* (no central coordinator, as in Orleans). The
//! manager prepares the others (each writes a prepare record, durably),
//! then writes its own state together with the commit record in one
//! atomic storage write, answers, and confirms to the others afterwards.
//! Outcome records are first-writer-wins: a participant that gives up
//! waiting records "aborted" through the same insert, so exactly one
//! outcome holds whatever dies when. A read-only transaction has no
//! manager: it checks and releases its read locks. Writes of several
//! transactions that queue on one state go to storage in one write.
//! `docs/transactions.md` has the guarantees, the recovery bound and the
//! failure cases.
//!
//! Placement: participants are grains like any other (type
//! `actor-tx.state`); with [`PreferLocalPlacement`](actor_cluster::PreferLocalPlacement)
//! for that type name, a state's participant starts on the silo of the
//! grain that first touches it.
//!
//! ## Feature flags
//!
//! - `sqlite` (default): [`SqliteTxStorage`].
//! - `postgres`: [`PostgresTxStorage`].
//!
//! [`MemoryTxStorage`] is always there.

#![cfg_attr(
    not(all(feature = "sqlite", feature = "postgres")),
    allow(rustdoc::broken_intra_doc_links)
)]

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod batch;
mod error;
mod id;
mod option;
mod resource;
mod runtime;
mod sql;
mod state;
mod storage;
mod transaction;

pub use error::{AbortReason, Error, Result};
pub use id::{Access, Priority, TxId, TxInfo, now_millis};
pub use option::{CONTEXT_KEY, TransactionOption, TxReply, call, serve};
pub use resource::{LockStatus, TxResource};
pub use runtime::{
    DEFAULT_SWEEP_EVERY, SiloBuilderTransactionsExt, SiloTransactionsExt, Step, StepHook,
    TransactionsConfig, TxMetrics, TxMetricsSnapshot, TxRuntime, metric_names,
};
pub use sql::DEFAULT_TX_TABLE_PREFIX;
#[cfg(feature = "postgres")]
pub use sql::PostgresTxStorage;
#[cfg(feature = "sqlite")]
pub use sql::SqliteTxStorage;
pub use state::{TransactionalState, TxStateContext, lock_status, state_key};
pub use storage::{BoxFuture, MemoryTxStorage, Outcome, Refused, StoredRow, TransactionalStorage};
pub use transaction::{
    RetryPolicy, TransactionClient, TransactionOptions, abort, current_transaction,
    retry_transaction, run_transaction, run_transaction_with,
};

/// Hooks for actor-testkit's deterministic simulation; not a public API.
#[doc(hidden)]
pub mod __private {
    /// A simulated clock: milliseconds since the Unix epoch, `None` where it
    /// has none (outside a simulated host).
    pub type SimClock = fn() -> Option<i64>;

    /// On this thread, read the time from `clock` (falling back to the
    /// wall clock where it answers `None`) and draw transaction ids, ages,
    /// ETags and backoff jitter from a generator seeded with `seed`, so
    /// that a simulated run replays with its seed; `None` restores the wall
    /// clock and the OS's randomness. A turmoil simulation runs all its
    /// hosts on one thread, so this covers the whole run.
    pub fn simulate_on_this_thread(hooks: Option<(SimClock, u64)>) {
        crate::id::SIMULATED.set(hooks.map(|(clock, seed)| crate::id::Simulated {
            clock,
            rng: seed ^ 0x5851_f42d_4c95_7f2d,
        }));
    }
}

/// The names a grain author needs, in one `use`.
pub mod prelude {
    pub use crate::{
        SiloBuilderTransactionsExt, TransactionOption, TransactionalState, abort,
        retry_transaction, run_transaction,
    };
}
