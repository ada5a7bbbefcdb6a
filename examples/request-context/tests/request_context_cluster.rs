//! Across two silos: the role set by the web front travels with the call
//! to an account grain on the other silo and back to the audit log on the
//! front's silo, decides authorization there, never flows back, and stays
//! apart between concurrent calls.

use std::time::Duration;

use actor_cluster::ClusterConfig;
use actor_core::prelude::*;
use axum::http::{Method, StatusCode};
use example_request_context::{
    AUDIT_LOG, AccountError, AccountGrain, AuditEntry, AuditGrain, ContextView, DeleteAccount,
    Describe, Entries, USER_ROLE, VISITED_BY, play_cluster_scenario, send, start_pair,
};

const BOUND: Duration = Duration::from_secs(30);

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("test timed out")
}

fn as_role<F: Future>(role: &str, f: F) -> impl Future<Output = F::Output> {
    RequestContext::new().with(USER_ROLE, role).scope(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_crosses_both_silos_and_decides_on_the_far_one() {
    let pair = bounded(start_pair(ClusterConfig::fast())).await.unwrap();
    let (front, back) = (pair.front.silo().name(), pair.back.silo().name());
    assert_ne!(front, back);
    let app = pair.router();
    let [alice, bob] = <[String; 2]>::try_from(pair.accounts_on_back(2)).unwrap();

    bounded(async {
        // front -> account on the back silo -> audit log on the front silo.
        let (status, body) = send(
            &app,
            Method::GET,
            &format!("/accounts/{alice}/context"),
            Some("user"),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        let view: ContextView = serde_json::from_str(&body).unwrap();
        assert_eq!(view.account_silo, back);
        assert_eq!(view.audit_silo, front);
        assert_eq!(view.account_role.as_deref(), Some("user"));
        assert_eq!(view.audit_role.as_deref(), Some("user"));
        assert_eq!(
            view.audit_visited_by,
            Some(format!("account/{alice}")),
            "a value set on the back silo reaches the nested call"
        );

        // Authorization is decided on the back silo from the context.
        let (status, body) = send(&app, Method::DELETE, &format!("/accounts/{alice}"), None)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, body) = send(
            &app,
            Method::DELETE,
            &format!("/accounts/{alice}"),
            Some("user"),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("role user"), "{body}");
        let (status, body) = send(
            &app,
            Method::DELETE,
            &format!("/accounts/{alice}"),
            Some("admin"),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");

        // The same through a grain reference from the front silo.
        let account = pair.front.silo().get_grain::<AccountGrain>(bob.as_str());
        let refused = as_role("user", account.ask(DeleteAccount)).await.unwrap();
        assert_eq!(
            refused,
            Err(AccountError::Forbidden {
                action: "delete account".into(),
                role: Some("user".into()),
            })
        );
        let (paid, after) = as_role("admin", async {
            let paid = account.ask(DeleteAccount).await.unwrap();
            (paid, RequestContext::current())
        })
        .await;
        assert_eq!(paid, Ok(100));
        // Nothing the grains set flowed back across the silos.
        assert_eq!(after.value(USER_ROLE), Some("admin"));
        assert_eq!(after.value(VISITED_BY), None);

        // The audit log, on the front silo, recorded the role each nested
        // call from the back silo carried.
        let log = pair
            .back
            .silo()
            .get_grain::<AuditGrain>(AUDIT_LOG)
            .ask(Entries)
            .await
            .unwrap();
        assert_eq!(
            log,
            [
                AuditEntry {
                    action: format!("delete account {alice}"),
                    role: Some("admin".into()),
                },
                AuditEntry {
                    action: format!("delete account {bob}"),
                    role: Some("admin".into()),
                },
            ]
        );
    })
    .await;
    // Each grain ran where the cluster placed it, once.
    let id = |t: &'static str, k: &str| GrainId::new(t, k);
    assert!(pair.back.silo().is_active(&id("account", &alice)));
    assert!(!pair.front.silo().is_active(&id("account", &alice)));
    assert!(pair.front.silo().is_active(&id("audit", AUDIT_LOG)));
    assert!(!pair.back.silo().is_active(&id("audit", AUDIT_LOG)));
    pair.leave().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_scenario_plays_as_expected() {
    let pair = bounded(start_pair(ClusterConfig::fast())).await.unwrap();
    let exchanges = bounded(play_cluster_scenario(&pair)).await.unwrap();
    let statuses: Vec<u16> = exchanges.iter().map(|e| e.status.as_u16()).collect();
    assert_eq!(statuses, [200, 403, 403, 200, 200]);
    let view: ContextView = serde_json::from_str(&exchanges[0].body).unwrap();
    assert_ne!(view.account_silo, view.audit_silo);
    let log: Vec<AuditEntry> = serde_json::from_str(&exchanges[4].body).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].role.as_deref(), Some("admin"));
    pair.leave().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_across_silos_see_only_their_own_role() {
    let pair = bounded(start_pair(ClusterConfig::fast())).await.unwrap();
    let account = pair.accounts_on_back(1).remove(0);
    // Through grain references from both silos at once...
    let calls = (0..100).map(|i| {
        let silo = if i % 2 == 0 { &pair.front } else { &pair.back };
        let account = silo.silo().get_grain::<AccountGrain>(account.as_str());
        tokio::spawn(async move {
            let role = format!("role-{i}");
            let view = as_role(&role, account.ask(Describe)).await;
            (role, view)
        })
    });
    for joined in bounded(futures::future::join_all(calls)).await {
        let (role, view) = joined.unwrap();
        let view = view.unwrap().unwrap();
        assert_eq!(view.account_role.as_deref(), Some(role.as_str()));
        assert_eq!(view.audit_role.as_deref(), Some(role.as_str()));
    }
    // ...and through the web front.
    let app = pair.router();
    let requests = (0..100).map(|i| {
        let app = app.clone();
        let uri = format!("/accounts/{account}/context");
        tokio::spawn(async move {
            let role = format!("web-{i}");
            let reply = send(&app, Method::GET, &uri, Some(&role)).await;
            (role, reply)
        })
    });
    for joined in bounded(futures::future::join_all(requests)).await {
        let (role, reply) = joined.unwrap();
        let (status, body) = reply.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        let view: ContextView = serde_json::from_str(&body).unwrap();
        assert_eq!(view.account_role.as_deref(), Some(role.as_str()));
        assert_eq!(view.audit_role.as_deref(), Some(role.as_str()));
        assert_ne!(view.account_silo, view.audit_silo);
    }
    pair.leave().await.unwrap();
}
