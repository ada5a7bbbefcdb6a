//! Transaction options of grain methods, and the two halves of a
//! transactional call: [`call`] on the caller's side (puts the current
//! transaction into the request context, merges the participants the reply
//! brings back) and [`serve`] on the grain's side (joins, creates or
//! refuses a transaction as the method's option says). `#[transaction(..)]`
//! on a `#[grain_methods]` method expands to exactly these two calls.

use std::future::Future;

use actor_core::{RequestContext, Silo};
use serde::{Deserialize, Serialize};

use crate::error::{AbortReason, Error, Result};
use crate::id::{Access, Priority, TxInfo};
use crate::transaction::{TransactionOptions, TxScope, attempt, current};

/// The request-context key that carries the current transaction.
pub const CONTEXT_KEY: &str = "actor-tx";

/// How a grain method relates to transactions (Orleans'
/// `TransactionOption`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransactionOption {
    /// Always starts a transaction of its own, committed when the method
    /// returns, even when called inside another one.
    Create,
    /// Must be called inside a transaction and joins it; outside one it
    /// fails with [`Error::NotInTransaction`].
    Join,
    /// Joins the caller's transaction, or starts its own outside one.
    CreateOrJoin,
    /// Not transactional itself, but a transaction it is called in flows
    /// on to what it calls (and its state accesses join it).
    Supported,
    /// Runs outside any transaction: the caller's does not flow on.
    Suppress,
    /// Must not be called inside a transaction: fails with
    /// [`Error::NotAllowed`] there.
    NotAllowed,
}

/// The reply of a transactional method: its value (or why it failed), and
/// the participants it added to the caller's transaction.
#[derive(Debug, Serialize, Deserialize)]
pub struct TxReply<R> {
    value: std::result::Result<R, Error>,
    joined: Vec<(String, Access)>,
    poisoned: Option<AbortReason>,
}

impl<R> TxReply<R> {
    fn plain(value: std::result::Result<R, Error>) -> Self {
        TxReply {
            value,
            joined: Vec::new(),
            poisoned: None,
        }
    }
}

/// The caller's half of a transactional call: runs `ask` (a grain call
/// not yet started, such as `grain_ref.ask(msg)`) with the current
/// transaction in its request context, and takes the participants of the
/// reply into it. A failed call makes the transaction abort-only: the
/// callee may have joined it.
pub async fn call<R>(ask: impl Future<Output = actor_core::Result<TxReply<R>>>) -> Result<R> {
    let scope = current();
    let mut context = RequestContext::current();
    match &scope {
        Some(s) => context.insert(CONTEXT_KEY, s.info.encode()),
        None => {
            context.remove(CONTEXT_KEY);
        }
    }
    match context.scope(ask).await {
        Ok(reply) => {
            if let Some(s) = &scope {
                s.merge(reply.joined);
                if let Some(p) = reply.poisoned {
                    s.poison(p);
                }
            }
            reply.value
        }
        Err(e) => {
            if let Some(s) = &scope {
                s.poison(AbortReason::ParticipantFailed {
                    participant: "a grain call".into(),
                    cause: e.to_string(),
                });
            }
            Err(Error::call(e))
        }
    }
}

/// The grain's half: runs the method `body` as `option` says, given the
/// transaction in the incoming request context. `method` names it in
/// errors; `silo` runs the transaction a `Create` method starts.
pub async fn serve<R, F>(
    option: TransactionOption,
    method: &'static str,
    silo: &Silo,
    body: F,
) -> TxReply<R>
where
    F: Future<Output = R>,
{
    let incoming = RequestContext::get(CONTEXT_KEY).and_then(|s| TxInfo::decode(&s));
    use TransactionOption::*;
    match (option, incoming) {
        (Join | CreateOrJoin | Supported, Some(info)) => {
            let scope = TxScope::new(info);
            let value = scope.run(body).await;
            TxReply {
                value: Ok(value),
                joined: scope.participants(),
                poisoned: scope.poisoned(),
            }
        }
        (Join, None) => TxReply::plain(Err(Error::NotInTransaction {
            method: method.to_owned(),
        })),
        (NotAllowed, Some(_)) => TxReply::plain(Err(Error::NotAllowed {
            method: method.to_owned(),
        })),
        (Create, _) | (CreateOrJoin, None) => {
            let options = TransactionOptions::default();
            TxReply::plain(attempt(silo, &options, Priority::now(), async { Ok(body.await) }).await)
        }
        (Supported | Suppress | NotAllowed, _) => TxReply::plain(Ok(body.await)),
    }
}
