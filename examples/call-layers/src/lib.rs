//! Call layers: async middleware around every turn a silo runs.
//!
//! Two layers sit on one silo, in this order:
//!
//! 1. [`Outcomes`] counts, per method, how many turns succeeded, failed,
//!    or were refused before they ran. It is outermost, so it also sees
//!    the calls the layer below refuses.
//! 2. [`RequireRole`] is authorization: before a call to a [`Vault`] runs,
//!    it asks the [`Policy`] grain (an `await` on another grain, which a
//!    synchronous filter could not do) whether the caller's role (from the
//!    request context) may call that method, and refuses the call with
//!    `Error::Rejected` if not. The vault's handlers hold no checks.
//!
//! The policy lives in a grain, so an administrator can change it at run
//! time and every silo's layer sees the change on the next call.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use actor_core::prelude::*;
use actor_core::{CallInfo, CallLayer, Error, Next, TurnOutcome};

/// The request-context key of the caller's role.
pub const ROLE: &str = "role";

/// A vault of coins. Its handlers check nothing: [`RequireRole`] does.
#[derive(Default)]
pub struct Vault {
    coins: u64,
}
impl Grain for Vault {
    const TYPE_NAME: &'static str = "vault";
}

#[grain_methods]
impl Vault {
    /// Adds coins; returns the new total.
    pub async fn deposit(&mut self, coins: u64) -> u64 {
        self.coins += coins;
        self.coins
    }

    /// Takes coins out; returns the new total.
    pub async fn withdraw(&mut self, coins: u64) -> u64 {
        self.coins = self.coins.saturating_sub(coins);
        self.coins
    }

    /// The coins in the vault.
    #[read_only]
    pub async fn balance(&self) -> u64 {
        self.coins
    }
}

/// Which roles may call which vault method (one policy grain, key
/// `"vault"`). Roles not listed for a method are refused.
pub struct Policy {
    allowed: BTreeMap<String, BTreeSet<String>>,
}
impl Grain for Policy {
    const TYPE_NAME: &'static str = "policy";
}
impl Default for Policy {
    fn default() -> Self {
        let mut allowed = BTreeMap::new();
        for (method, roles) in [
            ("deposit", &["clerk", "manager"][..]),
            ("balance", &["clerk", "manager", "auditor"][..]),
            ("withdraw", &["manager"][..]),
        ] {
            allowed.insert(
                method.to_owned(),
                roles.iter().map(|r| (*r).to_owned()).collect(),
            );
        }
        Policy { allowed }
    }
}

#[grain_methods]
impl Policy {
    /// Whether `role` may call `method`.
    #[read_only]
    pub async fn allows(&self, method: String, role: Option<String>) -> bool {
        role.is_some_and(|r| {
            self.allowed
                .get(&method)
                .is_some_and(|roles| roles.contains(&r))
        })
    }

    /// Lets `role` call `method` from now on.
    pub async fn grant(&mut self, method: String, role: String) {
        self.allowed.entry(method).or_default().insert(role);
    }
}

/// Authorization as a layer: a call to a vault runs only if the policy
/// grain allows the caller's role for its method.
pub struct RequireRole;

impl CallLayer for RequireRole {
    async fn call(&self, call: &CallInfo<'_>, next: Next<'_>) -> Result<TurnOutcome, Error> {
        if call.grain.grain_type.as_str() == Vault::TYPE_NAME {
            let role = call.context.value(ROLE).map(str::to_owned);
            let policy = next.silo().get_grain::<Policy>("vault");
            if !policy.allows(call.method.to_owned(), role.clone()).await? {
                let role = role.as_deref().unwrap_or("(none)");
                return Err(call.reject(format!("role {role} may not call {}", call.method)));
            }
        }
        next.run().await
    }
}

/// Turns per method: succeeded, failed, refused by a layer below.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Turns that ran and succeeded.
    pub ok: u64,
    /// Turns that ran and failed (panic or error reply).
    pub failed: u64,
    /// Calls refused before their turn.
    pub refused: u64,
}

/// Counts every call's outcome per `type.method`.
#[derive(Clone, Default)]
pub struct Outcomes(Arc<Mutex<BTreeMap<String, Counts>>>);

impl Outcomes {
    /// The counts of `grain_type.method`.
    pub fn of(&self, method: &str) -> Counts {
        self.0
            .lock()
            .unwrap()
            .get(method)
            .copied()
            .unwrap_or_default()
    }
}

impl CallLayer for Outcomes {
    async fn call(&self, call: &CallInfo<'_>, next: Next<'_>) -> Result<TurnOutcome, Error> {
        let result = next.run().await;
        let name = format!("{}.{}", call.grain.grain_type, call.method);
        let mut counts = self.0.lock().unwrap();
        let c = counts.entry(name).or_default();
        match &result {
            Ok(outcome) if outcome.ok => c.ok += 1,
            Ok(_) => c.failed += 1,
            Err(_) => c.refused += 1,
        }
        result
    }
}

/// A silo with the vault, the policy, and both layers in order.
pub async fn start_silo(outcomes: Outcomes) -> actor_core::Result<Silo> {
    Silo::builder()
        .grain::<Vault>()
        .grain::<Policy>()
        .layer(outcomes)
        .layer(RequireRole)
        .start()
        .await
}

/// Calls `fut` as a caller with `role`.
pub async fn as_role<F: std::future::Future>(role: &str, fut: F) -> F::Output {
    RequestContext::new().with(ROLE, role).scope(fut).await
}
