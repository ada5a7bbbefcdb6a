//! # actor-tx: ACID transactions across grains
//!
//! (Guide below, once the tour is written.)

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
    TransactionsConfig, TxMetrics, TxMetricsSnapshot, TxRuntime,
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
