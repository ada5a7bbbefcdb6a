//! The one error type of actor-core.
//!
//! Runtime failures (timeout, deadlock, panic, unknown type, silo stopped)
//! are kept apart from a grain's own failures, which a grain returns inside
//! its reply type. Errors are `Clone` (one failed activation fails every
//! queued caller) and serde types (they travel back to remote callers).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::id::GrainId;

/// A failure of the runtime to carry out a call or to build a silo.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Error {
    /// No grain type of this name is registered where the call was routed.
    #[error(
        "grain type `{type_name}` is not registered on this silo; register it with SiloBuilder::grain"
    )]
    UnknownGrainType {
        /// The type name that was asked for.
        type_name: String,
    },
    /// A serialized call named a method the grain type does not list in its
    /// `GrainMethods`.
    #[error(
        "grain type `{type_name}` has no method `{method}` on this silo; if the grain handles it, list it in the type's GrainMethods (`#[grain_methods(also_handles(..))]` for a handler written outside the block), and run the same version of the type on every silo"
    )]
    UnknownMethod {
        /// The grain type.
        type_name: String,
        /// The method (message) name.
        method: String,
    },
    /// The call's deadline passed before a reply arrived.
    #[error(
        "call to {grain} `{method}` timed out after {timeout:?}; the turn may still have run (raise the deadline with GrainRef::with_timeout)"
    )]
    Timeout {
        /// The called grain.
        grain: GrainId,
        /// The method (message) name.
        method: String,
        /// The deadline the call had.
        timeout: Duration,
    },
    /// The call would wait on a turn that is itself waiting on this call.
    #[error(
        "deadlock: {} would wait on itself in `{method}`; to let the call re-enter, the methods on the cycle must be shared (&self) on a grain type with call-chain reentrancy; otherwise break the cycle",
        display_cycle(cycle)
    )]
    Deadlock {
        /// The grains of the cycle, from the first to the one called again.
        cycle: Vec<GrainId>,
        /// The method that closed the cycle.
        method: String,
    },
    /// The handler panicked. The activation was dropped; the next call
    /// activates the grain afresh.
    #[error("grain {grain} panicked in `{method}`: {message}; the activation was dropped")]
    Panicked {
        /// The grain whose handler panicked.
        grain: GrainId,
        /// The method (message) name.
        method: String,
        /// The panic message.
        message: String,
    },
    /// Creating or activating the grain failed; every queued call gets this.
    #[error(
        "activation of {grain} failed: {reason}; the grain was not activated and the next call tries again (fix what on_activate or the factory reported)"
    )]
    ActivationFailed {
        /// The grain that could not be activated.
        grain: GrainId,
        /// What `on_activate` (or the factory) reported.
        reason: String,
    },
    /// A call filter refused the call.
    #[error("call to {grain} `{method}` was rejected: {reason}")]
    Rejected {
        /// The called grain.
        grain: GrainId,
        /// The method (message) name.
        method: String,
        /// The filter's reason.
        reason: String,
    },
    /// The silo is shutting down or has stopped and accepts no calls.
    #[error(
        "the silo has stopped and accepts no calls; call a silo that is running (a reference keeps the silo it was made from: get a new one from a live silo or ClusterClient)"
    )]
    SiloStopped,
    /// The silo hosting the grain cannot be reached.
    #[error(
        "silo {silo} is unavailable; the call may or may not have run: retry it if it is idempotent (a dead silo's grains come back elsewhere on the next call)"
    )]
    SiloUnavailable {
        /// The silo's address.
        silo: String,
    },
    /// A message, reply or id could not be encoded or decoded.
    #[error(
        "serialization failed: {0}; check that caller and grain use the same message and reply types (same crate version on every silo and client)"
    )]
    Serialization(String),
    /// The silo configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The silo a call was sent to does not host the grain (the caller's
    /// grain directory cache was stale). The call did not run; cluster
    /// routers drop the cache entry and retry within the deadline, so
    /// users only see this from hand-made transports.
    #[error("{grain} is not hosted on silo {silo}; look it up in the grain directory again")]
    NotHere {
        /// The called grain.
        grain: GrainId,
        /// The silo that answered.
        silo: String,
    },
    /// The silo had as many calls in flight (accepted and not yet
    /// answered) as its bound allows, and refused this one at once
    /// instead of queueing it: the call did not run. Load shedding keeps
    /// a silo's memory bounded and its probes answered under a call
    /// storm; the caller should back off (wait, with jitter, longer after
    /// each refusal) and retry, or send less at a time. The bound is
    /// `ClusterConfig::max_calls_in_flight` in actor-cluster; probes and
    /// membership traffic are never shed.
    #[error(
        "silo {silo} is overloaded: it has {limit} calls in flight, its bound, and refused this call, which did not run; back off and retry it later (or send fewer calls at once; the bound is ClusterConfig::max_calls_in_flight)"
    )]
    Overloaded {
        /// The silo that refused the call.
        silo: String,
        /// Its bound on calls in flight.
        limit: usize,
    },
}

fn display_cycle(cycle: &[GrainId]) -> String {
    let mut s = String::new();
    for (i, g) in cycle.iter().enumerate() {
        if i > 0 {
            s.push_str(" -> ");
        }
        s.push_str(&g.to_string());
    }
    s
}

/// `Result` with actor-core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A one-way message the runtime did not deliver, handed back to its
/// sender with the reason, as tokio's `SendError` hands back what a closed
/// channel refused. [`GrainRef::tell`](crate::GrainRef::tell) returns it
/// whenever the message provably never reached a mailbox or a transport
/// (the silo had stopped, a filter refused it, it could not be encoded):
/// the caller can retry it, send it elsewhere, or log it without losing
/// it. `?` turns it into an [`Error`] (dropping the message).
pub struct SendError<M> {
    error: Error,
    message: M,
}

impl<M> SendError<M> {
    pub(crate) fn new(error: Error, message: M) -> Self {
        SendError { error, message }
    }

    /// Why the message was not delivered.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The undelivered message.
    pub fn message(&self) -> &M {
        &self.message
    }

    /// The undelivered message, taken back.
    pub fn into_message(self) -> M {
        self.message
    }

    /// The reason and the message.
    pub fn into_parts(self) -> (Error, M) {
        (self.error, self.message)
    }
}

// Neither Debug nor Display needs the message to be printable (as with
// tokio's `SendError`): what a log wants is the reason.
impl<M> std::fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<M> std::fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "message not delivered: {}", self.error)
    }
}

impl<M> std::error::Error for SendError<M> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<M> From<SendError<M>> for Error {
    fn from(e: SendError<M>) -> Error {
        e.error
    }
}

/// A boxed error returned by user code (activation hooks, factories).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every runtime error says what happened and then what to do about
    /// it, after a semicolon.
    #[test]
    fn every_error_names_a_remedy() {
        let g = GrainId::new("counter", 1);
        let all = [
            Error::UnknownGrainType {
                type_name: "t".into(),
            },
            Error::UnknownMethod {
                type_name: "t".into(),
                method: "m".into(),
            },
            Error::Timeout {
                grain: g.clone(),
                method: "m".into(),
                timeout: Duration::from_secs(1),
            },
            Error::Deadlock {
                cycle: vec![g.clone(), g.clone()],
                method: "m".into(),
            },
            Error::Panicked {
                grain: g.clone(),
                method: "m".into(),
                message: "boom".into(),
            },
            Error::ActivationFailed {
                grain: g.clone(),
                reason: "no database".into(),
            },
            Error::SiloStopped,
            Error::SiloUnavailable {
                silo: "127.0.0.1:1".into(),
            },
            Error::Serialization("unexpected end".into()),
            Error::NotHere {
                grain: g,
                silo: "s".into(),
            },
            Error::Overloaded {
                silo: "s".into(),
                limit: 200,
            },
        ];
        for e in all {
            let text = e.to_string();
            let (what, remedy) = text.split_once("; ").unwrap_or((&text, ""));
            assert!(
                !what.is_empty() && remedy.len() > 10,
                "no remedy in {text:?}"
            );
        }
    }
}
