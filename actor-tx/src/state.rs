//! `TransactionalState<T>`: a grain's typed handle on one transactional
//! state. The value, its lock and its records live in the state's
//! participant (see `resource`); the handle reads and updates the value
//! the running transaction sees, through closures that cannot await, so
//! no lock is ever held across someone else's code.

use std::marker::PhantomData;

use actor_core::{ActivationContext, Grain, GrainContext, GrainId, GrainKey, GrainRef, Silo};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{AbortReason, Error, Result};
use crate::id::Access;
use crate::resource::{LockStatus, TxResource, TxResourceRef};
use crate::runtime::TxRuntime;
use crate::transaction::{TransactionClient, TxScope, current};

/// Where transactional state can be loaded: an async factory's
/// [`ActivationContext`] or a [`GrainContext`].
pub trait TxStateContext {
    /// The grain whose state it is.
    fn grain_id(&self) -> &GrainId;
    /// Its silo.
    fn silo(&self) -> &Silo;
}

impl TxStateContext for ActivationContext {
    fn grain_id(&self) -> &GrainId {
        self.id()
    }
    fn silo(&self) -> &Silo {
        ActivationContext::silo(self)
    }
}

impl<G: Grain> TxStateContext for GrainContext<G> {
    fn grain_id(&self) -> &GrainId {
        self.id()
    }
    fn silo(&self) -> &Silo {
        GrainContext::silo(self)
    }
}

/// The participant key of state `name` of grain `id`.
pub fn state_key(id: &GrainId, name: &str) -> String {
    format!("{}/{}", id.storage_key(), name)
}

/// One named, typed transactional state of a grain (Orleans'
/// `ITransactionalState<T>`), stored as JSON through the silo's
/// transactional storage. A grain may hold several, each under its own
/// name. Read it with [`perform_read`](Self::perform_read) and change it
/// with [`perform_update`](Self::perform_update), inside a transaction;
/// the transaction's other participants see nothing of a change until it
/// commits, and an abort undoes it everywhere.
///
/// ```
/// # use actor_core::prelude::*;
/// # use actor_tx::TransactionalState;
/// #[derive(Default, serde::Serialize, serde::Deserialize)]
/// struct Balance { amount: i64 }
///
/// struct Account { balance: TransactionalState<Balance> }
/// # impl Grain for Account { const TYPE_NAME: &'static str = "account"; }
/// # impl GrainMethods for Account { fn register(_: &mut Methods<Self>) {} }
///
/// # fn f(b: actor_core::SiloBuilder) -> actor_core::SiloBuilder {
/// b.grain_with_async(|ctx| async move {
///     Ok(Account { balance: TransactionalState::load(&ctx, "balance").await? })
/// })
/// # }
/// ```
pub struct TransactionalState<T> {
    key: String,
    resource: GrainRef<TxResource>,
    _value: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for TransactionalState<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionalState")
            .field("key", &self.key)
            .finish()
    }
}

impl<T> TransactionalState<T>
where
    T: Serialize + DeserializeOwned + Default + Send + 'static,
{
    /// The handle on state `name` of the grain. Fails with
    /// [`Error::NotConfigured`] if the silo has no transactions.
    pub async fn load(ctx: &impl TxStateContext, name: &str) -> Result<Self> {
        TxRuntime::of(ctx.silo())?;
        let key = state_key(ctx.grain_id(), name);
        let resource = ctx
            .silo()
            .get_grain::<TxResource>(GrainKey::from(key.as_str()));
        Ok(TransactionalState {
            key,
            resource,
            _value: PhantomData,
        })
    }

    /// The state's participant key (`{grain storage key}/{name}`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Runs `read` on the value the current transaction sees, under a read
    /// lock held until the transaction ends.
    pub async fn perform_read<R>(&self, read: impl FnOnce(&T) -> R) -> Result<R> {
        let scope = self.scope("perform_read")?;
        scope.join(&self.key, Access::Read);
        let value = self.access(&scope, false).await?;
        Ok(read(&value))
    }

    /// Runs `update` on the value the current transaction sees, under a
    /// write lock held until the transaction ends; the change is the
    /// transaction's until it commits.
    pub async fn perform_update<R>(&self, update: impl FnOnce(&mut T) -> R) -> Result<R> {
        let scope = self.scope("perform_update")?;
        scope.join(&self.key, Access::Write);
        let mut value = self.access(&scope, true).await?;
        let out = update(&mut value);
        let json = serde_json::to_string(&value).map_err(|e| {
            self.poisoned(
                &scope,
                Error::Codec {
                    state: self.key.clone(),
                    action: "encoded".into(),
                    cause: e.to_string(),
                },
            )
        })?;
        match self.resource.set_value(scope.info.id, Some(json)).await {
            Ok(Ok(())) => Ok(out),
            Ok(Err(reason)) => Err(self.aborted(&scope, reason)),
            Err(e) => Err(self.poisoned(&scope, Error::call(e))),
        }
    }

    fn scope(&self, op: &str) -> Result<std::sync::Arc<TxScope>> {
        current().ok_or_else(|| Error::NotInTransaction {
            method: format!("TransactionalState::{op} on {}", self.key),
        })
    }

    async fn access(&self, scope: &TxScope, write: bool) -> Result<T> {
        let json = match self.resource.access(scope.info.clone(), write).await {
            Ok(Ok(json)) => json,
            Ok(Err(reason)) => return Err(self.aborted(scope, reason)),
            Err(e) => return Err(self.poisoned(scope, Error::call(e))),
        };
        match json {
            None => Ok(T::default()),
            Some(j) => serde_json::from_str(&j).map_err(|e| {
                self.poisoned(
                    scope,
                    Error::Codec {
                        state: self.key.clone(),
                        action: "decoded".into(),
                        cause: e.to_string(),
                    },
                )
            }),
        }
    }

    fn aborted(&self, scope: &TxScope, reason: AbortReason) -> Error {
        scope.poison(reason.clone());
        Error::Aborted {
            tx: scope.info.id,
            reason,
        }
    }

    fn poisoned(&self, scope: &TxScope, e: Error) -> Error {
        scope.poison(AbortReason::ParticipantFailed {
            participant: self.key.clone(),
            cause: e.to_string(),
        });
        e
    }

    /// The lock table of this state (for tests and tools).
    pub async fn status(&self) -> Result<LockStatus> {
        Ok(self.resource.inspect().await?)
    }
}

/// The lock table of state `name` of grain `grain`, asked through
/// `client` (for tests and tools: whether a lock is still held).
pub async fn lock_status(
    client: &(impl TransactionClient + ?Sized),
    grain: &GrainId,
    name: &str,
) -> Result<LockStatus> {
    let r = crate::transaction::resource(client, &state_key(grain, name));
    Ok(r.inspect().await?)
}
