//! The crate's one error type, and why a transaction aborted.
//!
//! An abort says whether trying again can succeed ([`Error::is_retryable`]);
//! an in-doubt outcome says the caller cannot know whether it committed,
//! which is never reported as either of the two.

use serde::{Deserialize, Serialize};

use crate::id::TxId;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a transaction aborted. Every participant of an aborted transaction
/// ends with none of its writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum AbortReason {
    /// Wait-die: this transaction asked for a lock held by an older one,
    /// and a younger transaction never waits for an older one (that is how
    /// deadlocks are ruled out). Retry: the retry keeps its age, so it
    /// eventually becomes the oldest and waits instead.
    #[error(
        "lock conflict on {state}: an older transaction holds it, and a younger one never waits (wait-die); retry the transaction"
    )]
    LockConflict {
        /// The transactional state whose lock was refused.
        state: String,
    },
    /// A lock stayed held by another transaction longer than the lock
    /// timeout. Retry, or raise `TransactionOptions::lock_timeout`.
    #[error(
        "waited longer than the lock timeout for the lock on {state}; retry, or raise the lock timeout"
    )]
    LockTimeout {
        /// The transactional state whose lock did not come.
        state: String,
    },
    /// The transaction ran past its deadline; its locks were broken.
    #[error(
        "the transaction ran past its deadline and its locks were released; retry, or raise the transaction timeout"
    )]
    Timeout,
    /// A participant failed or lost the transaction's lock (its silo died,
    /// its call failed, its storage refused a write).
    #[error("participant {participant} failed: {cause}; retry the transaction")]
    ParticipantFailed {
        /// The transactional state (or call) that failed.
        participant: String,
        /// What went wrong.
        cause: String,
    },
    /// The transaction's own code aborted it: its closure returned an
    /// error, or it called [`abort`](crate::abort).
    #[error("aborted by the transaction's code: {0}")]
    User(String),
}

impl AbortReason {
    /// Whether running the same transaction again can succeed: yes for
    /// conflicts, timeouts and failures, no for the code's own abort.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, AbortReason::User(_))
    }

    /// A short label for metrics and logs: `lock_conflict`, `lock_timeout`,
    /// `timeout`, `participant_failed` or `user`.
    pub fn label(&self) -> &'static str {
        match self {
            AbortReason::LockConflict { .. } => "lock_conflict",
            AbortReason::LockTimeout { .. } => "lock_timeout",
            AbortReason::Timeout => "timeout",
            AbortReason::ParticipantFailed { .. } => "participant_failed",
            AbortReason::User(_) => "user",
        }
    }
}

/// What can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transaction aborted: none of its writes happened anywhere.
    #[error("transaction {tx} aborted: {reason}")]
    Aborted {
        /// The transaction.
        tx: TxId,
        /// Why.
        reason: AbortReason,
    },
    /// The caller cannot know whether the transaction committed: the
    /// manager's answer was lost and the outcome could not be read back in
    /// time. Every participant ends consistent with one outcome (all or
    /// nothing); read the state to learn which.
    #[error(
        "transaction {tx} is in doubt: {cause}; it either committed everywhere or nowhere; read the state to find out"
    )]
    InDoubt {
        /// The transaction.
        tx: TxId,
        /// Why the outcome is unknown.
        cause: String,
    },
    /// A method that requires a transaction (`#[transaction(join)]`, or a
    /// `TransactionalState` access) ran outside one.
    #[error(
        "`{method}` must run inside a transaction: call it from `run_transaction`, or from a method marked `#[transaction(create)]` or `#[transaction(create_or_join)]`"
    )]
    NotInTransaction {
        /// The method or state operation.
        method: String,
    },
    /// A `#[transaction(not_allowed)]` method was called inside a
    /// transaction.
    #[error(
        "`{method}` may not be called inside a transaction (it is `#[transaction(not_allowed)]`): call it outside `run_transaction`, or through a `#[transaction(suppress)]` method"
    )]
    NotAllowed {
        /// The method.
        method: String,
    },
    /// A call to a grain failed in the runtime (timeout, silo down,
    /// deadlock): the transaction cannot commit.
    #[error("grain call failed: {0}")]
    Call(String),
    /// The transactional storage failed; the message names the provider.
    #[error("transactional storage {provider} failed: {cause}; check that it is reachable")]
    Storage {
        /// The provider (`memory`, `sqlite:...`, `postgres:...`).
        provider: String,
        /// What went wrong.
        cause: String,
    },
    /// A write was refused because storage holds a newer version than this
    /// copy (another activation wrote): reload and retry.
    #[error(
        "stale write to {state}: storage holds a newer version; the state is reloaded on the next activation"
    )]
    Conflict {
        /// The state.
        state: String,
    },
    /// A state could not be encoded or decoded (JSON).
    #[error("state {state} could not be {action} as JSON: {cause}")]
    Codec {
        /// The state.
        state: String,
        /// `encoded` or `decoded`.
        action: String,
        /// The serde error.
        cause: String,
    },
    /// The silo has no transactions configured.
    #[error(
        "this silo has no transactional storage: add `.with_transactions(storage)` (SiloBuilderTransactionsExt) to its builder"
    )]
    NotConfigured,
}

impl Error {
    /// Whether running the transaction again can succeed: a retryable
    /// abort, a failed call. Not an in-doubt outcome (it may have
    /// committed), nor the code's own abort, nor a misuse.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Aborted { reason, .. } => reason.is_retryable(),
            Error::Call(_) | Error::Conflict { .. } => true,
            _ => false,
        }
    }

    /// Whether this is an abort (any reason).
    pub fn is_aborted(&self) -> bool {
        matches!(self, Error::Aborted { .. })
    }

    /// Whether this is an in-doubt outcome.
    pub fn is_in_doubt(&self) -> bool {
        matches!(self, Error::InDoubt { .. })
    }

    /// The abort reason, if this is an abort.
    pub fn abort_reason(&self) -> Option<&AbortReason> {
        match self {
            Error::Aborted { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// A user abort with `reason`, for the code of a transaction to return
    /// (`Err(Error::user("insufficient funds"))`). Prefer
    /// [`abort`](crate::abort) inside a grain method: it also marks the
    /// transaction so that it cannot commit.
    pub fn user(reason: impl std::fmt::Display) -> Self {
        Error::Aborted {
            tx: TxId::NIL,
            reason: AbortReason::User(reason.to_string()),
        }
    }

    pub(crate) fn call(e: actor_core::Error) -> Self {
        Error::Call(e.to_string())
    }
}

impl From<actor_core::Error> for Error {
    fn from(e: actor_core::Error) -> Self {
        Error::call(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_reasons() {
        let state = "account/s:a#balance".to_owned();
        assert!(
            AbortReason::LockConflict {
                state: state.clone()
            }
            .is_retryable()
        );
        assert!(AbortReason::LockTimeout { state }.is_retryable());
        assert!(AbortReason::Timeout.is_retryable());
        assert!(!AbortReason::User("no".into()).is_retryable());
        assert!(
            !Error::InDoubt {
                tx: TxId::NIL,
                cause: "x".into()
            }
            .is_retryable()
        );
        assert!(!Error::NotInTransaction { method: "m".into() }.is_retryable());
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = Error::NotInTransaction {
            method: "withdraw".into(),
        };
        assert!(e.to_string().contains("run_transaction"), "{e}");
        let e = Error::NotConfigured;
        assert!(e.to_string().contains("with_transactions"), "{e}");
    }
}
