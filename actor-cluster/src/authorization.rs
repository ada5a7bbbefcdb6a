//! Authorization from the request context: a [`CallLayer`] that refuses
//! a call by role before its turn runs, so a grain does not have to check
//! its caller itself. The caller gets [`actor_core::Error::Rejected`]
//! naming the role needed; the grain never sees the call.
//!
//! The role is whatever the request context carries under the claim key
//! (`role` unless set): the layer trusts it. Set it where the caller is
//! authenticated (a web front, after checking a token) and keep clients
//! that could set it themselves off the silos' ports (docs/security.md).

use std::collections::HashMap;

use actor_core::{CallInfo, CallLayer, Error, Next, TurnOutcome};

/// A [`CallLayer`] that lets a call through only when the caller's role
/// (from its request context) is one the grain type, or the method,
/// allows. Add it with
/// [`SiloBuilder::layer`](actor_core::SiloBuilder::layer) on every silo.
///
/// ```
/// use actor_cluster::RoleAuthorization;
///
/// let authz = RoleAuthorization::new()
///     // Tellers and admins may call accounts...
///     .allow("bank.account", ["teller", "admin"])
///     // ...but only admins may close one.
///     .allow_method("bank.account", "close", ["admin"])
///     // Grain types with no rule are refused to everyone.
///     .deny_unlisted();
/// let silo = actor_core::Silo::builder().layer(authz);
/// # let _ = silo;
/// ```
///
/// The request context's value may list several roles separated by
/// commas (`teller,auditor`); one allowed role suffices. Calls from one
/// grain to another carry the context of the call that started them, so
/// a grain acting for a caller has that caller's role, as Orleans'
/// RequestContext flows.
#[derive(Debug, Clone)]
pub struct RoleAuthorization {
    claim: String,
    types: HashMap<String, Vec<String>>,
    methods: HashMap<(String, String), Vec<String>>,
    deny_unlisted: bool,
}

impl Default for RoleAuthorization {
    fn default() -> Self {
        RoleAuthorization::new()
    }
}

fn roles(roles: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    roles.into_iter().map(Into::into).collect()
}

impl RoleAuthorization {
    /// No rules yet: every call passes until rules are added. The role is
    /// read from the request context key `role`.
    pub fn new() -> Self {
        RoleAuthorization {
            claim: "role".to_owned(),
            types: HashMap::new(),
            methods: HashMap::new(),
            deny_unlisted: false,
        }
    }

    /// Reads the caller's role from request context key `key` instead of
    /// `role`.
    pub fn claim(mut self, key: impl Into<String>) -> Self {
        self.claim = key.into();
        self
    }

    /// Lets callers with one of `roles` call any method of `grain_type`
    /// (unless a method rule says otherwise).
    pub fn allow(
        mut self,
        grain_type: impl Into<String>,
        roles: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.types.insert(grain_type.into(), self::roles(roles));
        self
    }

    /// Lets callers with one of `roles`, and only them, call `method` of
    /// `grain_type` (the method's message name, as in
    /// [`CallInfo::method`]). It replaces the type's rule for that method.
    pub fn allow_method(
        mut self,
        grain_type: impl Into<String>,
        method: impl Into<String>,
        roles: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.methods
            .insert((grain_type.into(), method.into()), self::roles(roles));
        self
    }

    /// Refuses calls to grain types that have no rule (by default they
    /// pass): for clusters where every grain type must be listed.
    pub fn deny_unlisted(mut self) -> Self {
        self.deny_unlisted = true;
        self
    }

    /// Why `call` is refused, or `None` when it may go through.
    pub fn refusal(&self, call: &CallInfo<'_>) -> Option<String> {
        let grain_type = call.grain.grain_type.as_str();
        let rule = self
            .methods
            .get(&(grain_type.to_owned(), call.method.to_owned()))
            .or_else(|| self.types.get(grain_type));
        let Some(allowed) = rule else {
            return self
                .deny_unlisted
                .then(|| format!("not authorized: no role may call grain type `{grain_type}`"));
        };
        let held = call.context.value(&self.claim).unwrap_or("");
        let ok = held
            .split(',')
            .map(str::trim)
            .any(|r| !r.is_empty() && allowed.iter().any(|a| a == r));
        if ok {
            return None;
        }
        let held = if held.is_empty() {
            format!("the call carries no `{}`", self.claim)
        } else {
            format!("the call's `{}` is `{held}`", self.claim)
        };
        Some(format!(
            "not authorized: `{}` on `{grain_type}` needs {} {}; {held}",
            call.method,
            self.claim,
            allowed.join(" or "),
        ))
    }
}

impl CallLayer for RoleAuthorization {
    async fn call(&self, call: &CallInfo<'_>, next: Next<'_>) -> Result<TurnOutcome, Error> {
        if let Some(reason) = self.refusal(call) {
            tracing::debug!(grain = %call.grain, method = call.method, %reason, "call refused");
            return Err(call.reject(reason));
        }
        next.run().await
    }
}
