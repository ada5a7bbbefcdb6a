//! RoleAuthorization refuses calls by the caller's role before the turn
//! runs, on whichever silo the grain lives, for calls from an external
//! client: the caller gets `Error::Rejected` naming the role needed, and
//! the grain never sees the call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actor_cluster::{
    ClusterClient, ClusterConfig, ClusterSilo, InMemoryMembership, MembershipTable,
    RoleAuthorization,
};
use actor_core::prelude::*;
use tokio::net::TcpListener;

/// An account: deposits for tellers and admins, closing for admins only.
#[derive(Default)]
pub struct Account {
    balance: u64,
    closed: bool,
}

impl Grain for Account {
    const TYPE_NAME: &'static str = "bank.account";
}

#[grain_methods]
impl Account {
    /// Adds `amount`; answers the balance.
    pub async fn deposit(&mut self, amount: u64) -> u64 {
        self.balance += amount;
        self.balance
    }

    /// Closes the account.
    pub async fn close(&mut self) -> bool {
        self.closed = true;
        self.closed
    }

    /// The balance and whether the account is closed.
    pub async fn state(&mut self) -> (u64, bool) {
        (self.balance, self.closed)
    }
}

/// A grain type no rule lists.
#[derive(Default)]
pub struct Vault;

impl Grain for Vault {
    const TYPE_NAME: &'static str = "bank.vault";
}

#[grain_methods]
impl Vault {
    /// Opens the vault.
    pub async fn open(&mut self) -> bool {
        true
    }
}

fn authorization() -> RoleAuthorization {
    RoleAuthorization::new()
        .allow("bank.account", ["teller", "admin"])
        .allow_method("bank.account", "close", ["admin"])
        .allow_method("bank.account", "state", ["auditor", "admin"])
        .deny_unlisted()
}

async fn start(name: &str, table: &Arc<dyn MembershipTable>) -> ClusterSilo {
    ClusterSilo::start(
        Silo::builder()
            .name(name)
            .grain::<Account>()
            .grain::<Vault>()
            .layer(authorization()),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        table.clone(),
        ClusterConfig::fast(),
    )
    .await
    .unwrap()
}

fn rejected(result: actor_core::Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(e @ actor_core::Error::Rejected { .. }) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_refused_by_role_before_the_turn_runs() {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let a = start("a", &table).await;
    let b = start("b", &table).await;
    let until = Instant::now() + Duration::from_secs(20);
    while a.active_members().len() < 2 || b.active_members().len() < 2 {
        assert!(Instant::now() < until, "the silos never saw each other");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = ClusterClient::connect(vec![a.address().endpoint.clone()], Duration::from_secs(1))
        .await
        .unwrap();
    let as_role = |role: &str| RequestContext::new().with("role", role);

    // Accounts on both silos, so that the refusal is shown on each.
    for k in 0..16i64 {
        let account = client.get_grain::<Account>(k);
        let n = as_role("teller").scope(account.deposit(10)).await.unwrap();
        assert_eq!(n, 10);
        let err = rejected(as_role("teller").scope(account.close()).await);
        assert!(
            err.contains("`close` on `bank.account` needs role admin"),
            "{err}"
        );
        assert!(err.contains("the call's `role` is `teller`"), "{err}");
        let err = rejected(account.deposit(1).await);
        assert!(err.contains("carries no `role`"), "{err}");
        let err = rejected(as_role("guest").scope(account.deposit(1)).await);
        assert!(err.contains("needs role teller or admin"), "{err}");
        // Several roles: one allowed suffices.
        let (balance, closed) = as_role("guest, auditor")
            .scope(account.state())
            .await
            .unwrap();
        assert_eq!(
            (balance, closed),
            (10, false),
            "refused calls never ran: no deposit, not closed"
        );
        assert!(as_role("admin").scope(account.close()).await.unwrap());
    }
    let hosts: std::collections::HashSet<_> = (0..16i64)
        .flat_map(|k| {
            let id = GrainId::new("bank.account", k);
            [a.location_of(&id), b.location_of(&id)]
        })
        .flatten()
        .collect();
    assert_eq!(hosts.len(), 2, "accounts on both silos: {hosts:?}");

    // A type no rule lists is refused to everyone.
    let err = rejected(
        as_role("admin")
            .scope(client.get_grain::<Vault>(1).open())
            .await,
    );
    assert!(
        err.contains("no role may call grain type `bank.vault`"),
        "{err}"
    );
}
