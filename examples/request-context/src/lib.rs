//! # Course exercise 20: the request context
//!
//! **The original** (MicrosoftOrleansRequestContext) has an ASP.NET front
//! put the caller's `UserRole` into Orleans' `RequestContext` before it
//! calls a grain. The grain reads the role without a parameter for it
//! in its interface. The context travels with the call, and with every call
//! the grain makes in turn. The lesson: cross-cutting data (who is calling,
//! a trace id, a tenant) rides along the call chain as ambient context,
//! and a grain can decide authorization from it.
//!
//! **The grain version** is the same on one silo. An axum middleware
//! ([`router`]) reads the `X-User-Role` header and runs the request inside
//! `RequestContext::new().with("UserRole", role).scope(..)`. The
//! [`AccountGrain`] reads the role with `RequestContext::get` and refuses
//! [`DeleteAccount`] unless it is `admin`. When it calls the [`AuditGrain`],
//! that grain sees the same role (front -> account -> audit), so the audit
//! log records who deleted what. A value a grain sets during its turn with
//! `RequestContext::set` (here [`VISITED_BY`]) reaches the calls that turn
//! makes, never its caller. The context belongs to each call, not to the
//! activation: concurrent, interleaved calls with different roles each see
//! their own.
//!
//! **Across silos** ([`start_pair`], [`play_cluster_scenario`]) the same
//! grains and the same web front run on two silos of one cluster. The front
//! is served by the silo that hosts the audit log, and the scenario uses
//! accounts that the cluster placed on the other silo. Each request
//! therefore crosses twice: front -> account on the other silo -> audit log
//! back on the front's silo. The request context travels inside the call
//! envelope both ways. The account grain decides authorization from the
//! role on its own silo, and the audit grain records the role, and the
//! value the account grain set, on the first silo. The grains are the
//! same code; they only list their messages in `GrainMethods`, so that
//! calls arriving serialized from another silo can be dispatched.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use actor_cluster::{ClusterConfig, ClusterSilo, InMemoryMembership, MembershipTable};
use actor_core::SiloBuilder;
use actor_core::prelude::*;
use actor_telemetry::{SiloBuilderTelemetryExt, Telemetry};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{delete, get};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// The request-context key of the caller's role.
pub const USER_ROLE: &str = "UserRole";
/// The HTTP header the web front reads the role from.
pub const ROLE_HEADER: &str = "x-user-role";
/// A key the account grain sets during its turn, for the calls it makes.
pub const VISITED_BY: &str = "VisitedBy";
/// The key of the one audit log grain.
pub const AUDIT_LOG: &str = "log";

/// A bank account (type name `account`, keyed by the holder's name). Every
/// account starts with a balance of 100.
#[derive(Debug)]
pub struct AccountGrain {
    balance: i64,
    closed: bool,
}

impl Default for AccountGrain {
    fn default() -> Self {
        AccountGrain {
            balance: 100,
            closed: false,
        }
    }
}

impl Grain for AccountGrain {
    const TYPE_NAME: &'static str = "account";
}

impl GrainMethods for AccountGrain {
    // Calls from other silos arrive serialized: list the messages.
    fn register(m: &mut Methods<Self>) {
        m.add::<GetBalance, _>()
            .add::<DeleteAccount, _>()
            .add::<Describe, _>();
    }
}

/// A grain's refusal or failure, sent back inside its reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountError {
    /// The caller's role (from the request context) may not do this.
    Forbidden {
        /// What was refused.
        action: String,
        /// The role the grain saw, if any.
        role: Option<String>,
    },
    /// The account has been deleted.
    Closed,
    /// The audit log could not be written or read.
    Audit(actor_core::Error),
}

impl fmt::Display for AccountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountError::Forbidden { action, role } => write!(
                f,
                "{action} refused for role {}",
                role.as_deref().unwrap_or("(none)")
            ),
            AccountError::Closed => f.write_str("the account is closed"),
            AccountError::Audit(e) => write!(f, "the audit log failed: {e}"),
        }
    }
}

impl std::error::Error for AccountError {}

/// Checks the caller's role, read from the request context of this call.
fn authorize(action: &str, allowed: &[&str]) -> Result<(), AccountError> {
    let role = RequestContext::get(USER_ROLE);
    match &role {
        Some(r) if allowed.contains(&r.as_str()) => Ok(()),
        _ => Err(AccountError::Forbidden {
            action: action.to_owned(),
            role,
        }),
    }
}

/// Read the balance; allowed for roles `user` and `admin`.
#[derive(Debug, Serialize, Deserialize)]
pub struct GetBalance;

impl Message for GetBalance {
    type Reply = Result<i64, AccountError>;
    const NAME: &'static str = "get_balance";
    fn is_error(reply: &Self::Reply) -> bool {
        reply.is_err()
    }
}

/// Delete the account and pay out its balance; allowed for `admin` only.
/// Recorded in the audit log.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeleteAccount;

impl Message for DeleteAccount {
    type Reply = Result<i64, AccountError>;
    const NAME: &'static str = "delete_account";
    fn is_error(reply: &Self::Reply) -> bool {
        reply.is_err()
    }
}

/// Report what the account grain and the audit grain it calls see of the
/// request context.
#[derive(Debug, Serialize, Deserialize)]
pub struct Describe;

impl Message for Describe {
    type Reply = Result<ContextView, AccountError>;
    const NAME: &'static str = "describe";
    fn is_error(reply: &Self::Reply) -> bool {
        reply.is_err()
    }
}

/// The request context as seen one and two calls deep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextView {
    /// The role the account grain saw.
    pub account_role: Option<String>,
    /// The role the audit grain saw, in the account grain's nested call.
    pub audit_role: Option<String>,
    /// What the audit grain saw under [`VISITED_BY`], set by the account
    /// grain's turn.
    pub audit_visited_by: Option<String>,
    /// The silo the account grain ran on.
    pub account_silo: String,
    /// The silo the audit grain ran on.
    pub audit_silo: String,
}

impl SharedHandler<GetBalance> for AccountGrain {
    const INTERLEAVE: Interleave = Interleave::ReadOnly;
    async fn handle(&self, _: GetBalance, _: &GrainContext<Self>) -> Result<i64, AccountError> {
        authorize("get balance", &["user", "admin"])?;
        if self.closed {
            return Err(AccountError::Closed);
        }
        Ok(self.balance)
    }
}

impl Handler<DeleteAccount> for AccountGrain {
    async fn handle(
        &mut self,
        _: DeleteAccount,
        ctx: &GrainContext<Self>,
    ) -> Result<i64, AccountError> {
        authorize("delete account", &["admin"])?;
        if self.closed {
            return Err(AccountError::Closed);
        }
        // No role is passed: the audit grain reads it from the context this
        // call carries on.
        let action = format!("delete account {}", ctx.key());
        ctx.get_grain::<AuditGrain>(AUDIT_LOG)
            .ask(Record { action })
            .await
            .map_err(AccountError::Audit)?;
        self.closed = true;
        Ok(std::mem::take(&mut self.balance))
    }
}

impl SharedHandler<Describe> for AccountGrain {
    const INTERLEAVE: Interleave = Interleave::ReadOnly;
    async fn handle(
        &self,
        _: Describe,
        ctx: &GrainContext<Self>,
    ) -> Result<ContextView, AccountError> {
        let account_role = RequestContext::get(USER_ROLE);
        // Reaches the calls this turn makes from here on, never our caller.
        RequestContext::set(VISITED_BY, ctx.id().to_string());
        let seen = ctx
            .get_grain::<AuditGrain>(AUDIT_LOG)
            .ask(Peek)
            .await
            .map_err(AccountError::Audit)?;
        Ok(ContextView {
            account_role,
            audit_role: seen.role,
            audit_visited_by: seen.visited_by,
            account_silo: ctx.silo().name().to_owned(),
            audit_silo: seen.silo,
        })
    }
}

/// The audit log (type name `audit`, one grain keyed [`AUDIT_LOG`]).
#[derive(Debug, Default)]
pub struct AuditGrain {
    entries: Vec<AuditEntry>,
}

impl Grain for AuditGrain {
    const TYPE_NAME: &'static str = "audit";
}

impl GrainMethods for AuditGrain {
    fn register(m: &mut Methods<Self>) {
        m.add::<Record, _>().add::<Entries, _>().add::<Peek, _>();
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// What was done.
    pub action: String,
    /// Who did it: the role in the request context of the call.
    pub role: Option<String>,
}

/// Append an entry; the role comes from the request context.
#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    /// What was done.
    pub action: String,
}

impl Message for Record {
    type Reply = ();
    const NAME: &'static str = "record";
}

/// The whole log.
#[derive(Debug, Serialize, Deserialize)]
pub struct Entries;

impl Message for Entries {
    type Reply = Vec<AuditEntry>;
    const NAME: &'static str = "entries";
}

/// What this call's request context holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Peek;

/// The request context the audit grain saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// The value of [`USER_ROLE`].
    pub role: Option<String>,
    /// The value of [`VISITED_BY`].
    pub visited_by: Option<String>,
    /// The silo the audit grain runs on.
    pub silo: String,
}

impl Message for Peek {
    type Reply = Seen;
    const NAME: &'static str = "peek";
}

impl Handler<Record> for AuditGrain {
    async fn handle(&mut self, Record { action }: Record, _: &GrainContext<Self>) {
        let role = RequestContext::get(USER_ROLE);
        self.entries.push(AuditEntry { action, role });
    }
}

impl SharedHandler<Entries> for AuditGrain {
    const INTERLEAVE: Interleave = Interleave::ReadOnly;
    async fn handle(&self, _: Entries, _: &GrainContext<Self>) -> Vec<AuditEntry> {
        self.entries.clone()
    }
}

impl SharedHandler<Peek> for AuditGrain {
    const INTERLEAVE: Interleave = Interleave::ReadOnly;
    async fn handle(&self, _: Peek, ctx: &GrainContext<Self>) -> Seen {
        Seen {
            role: RequestContext::get(USER_ROLE),
            visited_by: RequestContext::get(VISITED_BY),
            silo: ctx.silo().name().to_owned(),
        }
    }
}

/// A silo builder with the account and audit grains.
pub fn silo_builder(name: &str) -> SiloBuilder {
    Silo::builder()
        .name(name)
        .grain::<AccountGrain>()
        .grain::<AuditGrain>()
}

/// Starts a silo hosting the account and audit grains.
pub async fn build_silo() -> actor_core::Result<Silo> {
    silo_builder("request-context").start().await
}

/// The web front: `GET /accounts/{name}/balance`, `DELETE /accounts/{name}`,
/// `GET /accounts/{name}/context` and `GET /audit`. Every request runs in a
/// request context holding the `X-User-Role` header as [`USER_ROLE`].
pub fn router(silo: Silo) -> Router {
    Router::new()
        .route("/accounts/{name}/balance", get(balance))
        .route("/accounts/{name}", delete(delete_account))
        .route("/accounts/{name}/context", get(describe))
        .route("/audit", get(audit))
        .layer(middleware::from_fn(role_from_header))
        .with_state(silo)
}

/// Sets the request context for everything the request calls, like an
/// ASP.NET middleware calling `RequestContext.Set("UserRole", ..)`.
///
/// It also passes on a W3C `traceparent` header: the grain calls the request
/// makes then continue the caller's trace (exported when telemetry is on,
/// see `main.rs`), across silos too. A malformed value is ignored.
async fn role_from_header(request: Request, next: Next) -> Response {
    let mut context = RequestContext::new();
    for (header, key) in [
        (ROLE_HEADER, USER_ROLE),
        (actor_core::TRACEPARENT, actor_core::TRACEPARENT),
    ] {
        if let Some(value) = request.headers().get(header).and_then(|v| v.to_str().ok()) {
            context.insert(key, value);
        }
    }
    context.scope(next.run(request)).await
}

async fn balance(
    State(silo): State<Silo>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let balance = answer(silo.get_grain::<AccountGrain>(name).ask(GetBalance).await)?;
    Ok(Json(serde_json::json!({ "balance": balance })))
}

async fn delete_account(
    State(silo): State<Silo>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let paid_out = answer(
        silo.get_grain::<AccountGrain>(name)
            .ask(DeleteAccount)
            .await,
    )?;
    Ok(Json(
        serde_json::json!({ "deleted": true, "paid_out": paid_out }),
    ))
}

async fn describe(
    State(silo): State<Silo>,
    Path(name): Path<String>,
) -> Result<Json<ContextView>, ApiError> {
    answer(silo.get_grain::<AccountGrain>(name).ask(Describe).await).map(Json)
}

async fn audit(State(silo): State<Silo>) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let entries = silo.get_grain::<AuditGrain>(AUDIT_LOG).ask(Entries).await;
    entries.map(Json).map_err(ApiError::Runtime)
}

/// A failed request: the grain's own refusal, or the runtime's failure.
enum ApiError {
    Account(AccountError),
    Runtime(actor_core::Error),
}

fn answer<T>(reply: actor_core::Result<Result<T, AccountError>>) -> Result<T, ApiError> {
    reply.map_err(ApiError::Runtime)?.map_err(ApiError::Account)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Account(e @ AccountError::Forbidden { .. }) => {
                (StatusCode::FORBIDDEN, e.to_string())
            }
            ApiError::Account(e @ AccountError::Closed) => (StatusCode::GONE, e.to_string()),
            ApiError::Account(e @ AccountError::Audit(_)) => {
                (StatusCode::BAD_GATEWAY, e.to_string())
            }
            ApiError::Runtime(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
        .into_response()
    }
}

/// Sends one request to `app` (no network), with `role` in the
/// `X-User-Role` header, and returns the status and body.
pub async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    role: Option<&str>,
) -> anyhow::Result<(StatusCode, String)> {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(role) = role {
        request = request.header(ROLE_HEADER, role);
    }
    let response = app.clone().oneshot(request.body(Body::empty())?).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// One request of the scenario and its answer.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The HTTP method.
    pub method: Method,
    /// The path.
    pub uri: String,
    /// The `X-User-Role` header sent, if any.
    pub role: Option<&'static str>,
    /// The response status.
    pub status: StatusCode,
    /// The response body.
    pub body: String,
}

/// The scenario: a user reads alice's balance, an anonymous caller and a
/// user try to read it or delete the account, a user looks at the context
/// seen by nested calls, an admin deletes the account, and the audit log
/// shows who did it.
pub async fn play_scenario(app: &Router) -> anyhow::Result<Vec<Exchange>> {
    let steps = [
        (Method::GET, "/accounts/alice/balance", Some("user")),
        (Method::GET, "/accounts/alice/balance", None),
        (Method::DELETE, "/accounts/alice", Some("user")),
        (Method::GET, "/accounts/alice/context", Some("user")),
        (Method::DELETE, "/accounts/alice", Some("admin")),
        (Method::GET, "/accounts/alice/balance", Some("admin")),
        (Method::GET, "/audit", Some("admin")),
    ];
    play_steps(
        app,
        steps.map(|(method, uri, role)| (method, uri.to_owned(), role)),
    )
    .await
}

async fn play_steps(
    app: &Router,
    steps: impl IntoIterator<Item = (Method, String, Option<&'static str>)>,
) -> anyhow::Result<Vec<Exchange>> {
    let mut exchanges = Vec::new();
    for (method, uri, role) in steps {
        let (status, body) = send(app, method.clone(), &uri, role).await?;
        exchanges.push(Exchange {
            method,
            uri,
            role,
            status,
            body,
        });
    }
    Ok(exchanges)
}

/// Two silos of one cluster hosting the same grains: the web front runs on
/// `front`, which hosts the audit log; the scenario's accounts live on
/// `back`.
#[derive(Debug)]
pub struct SiloPair {
    /// The silo the web front calls through; it hosts the audit log.
    pub front: ClusterSilo,
    /// The other silo.
    pub back: ClusterSilo,
}

impl SiloPair {
    /// `n` account names whose grain the cluster places on `back`
    /// (placement is by hashing; the scenario looks up where names land so
    /// that the calls cross).
    pub fn accounts_on_back(&self, n: usize) -> Vec<String> {
        let back = &self.back.address().endpoint;
        let names = [
            "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
        ];
        let extra = (0..).map(|i| format!("customer-{i}"));
        names
            .iter()
            .map(|s| s.to_string())
            .chain(extra)
            .filter(|name| {
                self.front
                    .owner_of(&GrainId::new(AccountGrain::TYPE_NAME, name.as_str()))
                    == *back
            })
            .take(n)
            .collect()
    }

    /// The web front, calling grains through `front`.
    pub fn router(&self) -> Router {
        router(self.front.silo().clone())
    }

    /// Leaves the cluster, both silos.
    pub async fn leave(self) -> anyhow::Result<()> {
        self.front.leave().await?;
        self.back.leave().await?;
        Ok(())
    }
}

/// Starts two silos, `a` and `b`, in one cluster (an in-memory membership
/// table: both live in this process, talking over 127.0.0.1), waits until
/// both see each other, and picks the one hosting the audit log as the
/// front.
pub async fn start_pair(config: ClusterConfig) -> anyhow::Result<SiloPair> {
    start_pair_with(config, &Telemetry::disabled()).await
}

/// [`start_pair`], with both silos exporting spans and metrics through
/// `telemetry` (OpenTelemetry OTLP; a no-op when it is disabled).
pub async fn start_pair_with(
    config: ClusterConfig,
    telemetry: &Telemetry,
) -> anyhow::Result<SiloPair> {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let mut silos = Vec::new();
    for name in ["a", "b"] {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let builder = silo_builder(name).with_telemetry(telemetry);
        let silo = ClusterSilo::start(builder, listener, table.clone(), config.clone()).await?;
        telemetry.observe(silo.silo());
        silos.push(silo);
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    while silos.iter().any(|s| s.active_members().len() != 2) {
        if tokio::time::Instant::now() >= until {
            anyhow::bail!("the two silos did not see each other within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = silos.pop().expect("two silos");
    let a = silos.pop().expect("two silos");
    let log = GrainId::new(AuditGrain::TYPE_NAME, AUDIT_LOG);
    let (front, back) = if a.owner_of(&log) == a.address().endpoint {
        (a, b)
    } else {
        (b, a)
    };
    Ok(SiloPair { front, back })
}

/// The scenario across two silos, with an account placed on `back`: a
/// user looks at the context seen two calls deep, an anonymous caller and
/// a user are refused, an admin deletes the account, and the audit log on
/// the front's silo shows who did it.
pub async fn play_cluster_scenario(pair: &SiloPair) -> anyhow::Result<Vec<Exchange>> {
    let account = pair.accounts_on_back(1).remove(0);
    let steps = [
        (
            Method::GET,
            format!("/accounts/{account}/context"),
            Some("user"),
        ),
        (Method::GET, format!("/accounts/{account}/balance"), None),
        (Method::DELETE, format!("/accounts/{account}"), Some("user")),
        (
            Method::DELETE,
            format!("/accounts/{account}"),
            Some("admin"),
        ),
        (Method::GET, "/audit".to_owned(), Some("admin")),
    ];
    play_steps(&pair.router(), steps).await
}
