//! The role set by the web front reaches the grain and its nested calls,
//! decides authorization, never flows back, and stays apart between
//! concurrent calls.

use std::time::Duration;

use actor_core::prelude::*;
use axum::http::{Method, StatusCode};
use example_request_context::{
    AccountError, AccountGrain, AuditEntry, AuditGrain, ContextView, DeleteAccount, Describe,
    Entries, GetBalance, Peek, USER_ROLE, VISITED_BY, build_silo, play_scenario, router, send,
};

const BOUND: Duration = Duration::from_secs(10);

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("test timed out")
}

fn as_role<F: Future>(role: &str, f: F) -> impl Future<Output = F::Output> {
    RequestContext::new().with(USER_ROLE, role).scope(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_is_refused_for_user_and_allowed_for_admin() {
    let silo = build_silo().await.unwrap();
    let app = router(silo.clone());
    bounded(async {
        let (status, _) = send(&app, Method::GET, "/accounts/bob/balance", Some("user"))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        let (status, _) = send(&app, Method::GET, "/accounts/bob/balance", None)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = send(&app, Method::DELETE, "/accounts/bob", Some("user"))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, body) = send(&app, Method::DELETE, "/accounts/bob", Some("admin"))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");

        // The same decisions, calling the grain directly.
        let carol = silo.get_grain::<AccountGrain>("carol");
        let refused = as_role("user", carol.ask(DeleteAccount)).await.unwrap();
        assert_eq!(
            refused,
            Err(AccountError::Forbidden {
                action: "delete account".into(),
                role: Some("user".into()),
            })
        );
        assert_eq!(
            as_role("admin", carol.ask(DeleteAccount)).await.unwrap(),
            Ok(100)
        );
        assert_eq!(
            as_role("admin", carol.ask(GetBalance)).await.unwrap(),
            Err(AccountError::Closed)
        );
    })
    .await;
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scenario_plays_as_expected() {
    let silo = build_silo().await.unwrap();
    let exchanges = bounded(play_scenario(&router(silo.clone()))).await.unwrap();
    let statuses: Vec<u16> = exchanges.iter().map(|e| e.status.as_u16()).collect();
    assert_eq!(statuses, [200, 403, 403, 200, 200, 410, 200]);
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_calls_see_the_role() {
    let silo = build_silo().await.unwrap();
    let app = router(silo.clone());
    bounded(async {
        // front -> account -> audit, over HTTP.
        let (status, body) = send(&app, Method::GET, "/accounts/dave/context", Some("admin"))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        let view: ContextView = serde_json::from_str(&body).unwrap();
        assert_eq!(view.account_role.as_deref(), Some("admin"));
        assert_eq!(view.audit_role.as_deref(), Some("admin"));

        // The audit grain recorded the role of the nested call that deleted.
        send(&app, Method::DELETE, "/accounts/dave", Some("admin"))
            .await
            .unwrap();
        let log = silo
            .get_grain::<AuditGrain>("log")
            .ask(Entries)
            .await
            .unwrap();
        assert_eq!(
            log,
            [AuditEntry {
                action: "delete account dave".into(),
                role: Some("admin".into()),
            }]
        );
    })
    .await;
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_set_in_a_grain_reaches_its_calls_but_not_its_caller() {
    let silo = build_silo().await.unwrap();
    let account = silo.get_grain::<AccountGrain>("erin");
    let (view, after) = bounded(as_role("user", async {
        let view = account.ask(Describe).await.unwrap().unwrap();
        (view, RequestContext::current())
    }))
    .await;
    // The account grain's nested call saw what it set...
    assert_eq!(view.audit_visited_by.as_deref(), Some("account/erin"));
    // ...its caller did not, and its own role is unchanged.
    assert_eq!(after.value(VISITED_BY), None);
    assert_eq!(after.value(USER_ROLE), Some("user"));
    // Nor does it linger for later calls to the audit grain.
    let seen = bounded(silo.get_grain::<AuditGrain>("log").ask(Peek))
        .await
        .unwrap();
    assert_eq!((seen.role, seen.visited_by), (None, None));
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_with_different_roles_see_only_their_own() {
    let silo = build_silo().await.unwrap();
    // One account grain: its read-only turns interleave, each with its own
    // context, and each makes its own nested call.
    let account = silo.get_grain::<AccountGrain>("shared");
    let calls = (0..200).map(|i| {
        let account = account.clone();
        tokio::spawn(async move {
            let role = format!("role-{i}");
            let view = as_role(&role, account.ask(Describe)).await;
            (role, view)
        })
    });
    let results = bounded(futures::future::join_all(calls)).await;
    assert_eq!(results.len(), 200);
    for joined in results {
        let (role, view) = joined.unwrap();
        let view = view.unwrap().unwrap();
        assert_eq!(view.account_role.as_deref(), Some(role.as_str()));
        assert_eq!(view.audit_role.as_deref(), Some(role.as_str()));
    }

    // The same through the web front.
    let app = router(silo.clone());
    let requests = (0..200).map(|i| {
        let app = app.clone();
        tokio::spawn(async move {
            let role = format!("web-{i}");
            let reply = send(&app, Method::GET, "/accounts/shared/context", Some(&role)).await;
            (role, reply)
        })
    });
    for joined in bounded(futures::future::join_all(requests)).await {
        let (role, reply) = joined.unwrap();
        let (status, body) = reply.unwrap();
        assert_eq!(status, StatusCode::OK);
        let view: ContextView = serde_json::from_str(&body).unwrap();
        assert_eq!(view.account_role.as_deref(), Some(role.as_str()));
        assert_eq!(view.audit_role.as_deref(), Some(role.as_str()));
    }
    silo.shutdown().await;
}
