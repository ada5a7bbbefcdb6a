//! (a) The silo embedded in the axum app: HTTP handlers call grains
//! through it, whichever silo of the cluster the grain lives on.

use std::sync::Arc;
use std::time::Duration;

use actor_cluster::{ClusterConfig, InMemoryMembership, MembershipTable};
use example_hosting::{
    Hello, STANDALONE, WEB, names_owned_by, serve, start_standalone, start_web, wait_for_members,
};
use tokio::net::TcpListener;

const BOUND: Duration = Duration::from_secs(30);

/// `GET path` on the app: status and body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_app_calls_grains_through_its_embedded_silo() {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let standalone = start_standalone(table.clone(), ClusterConfig::fast())
        .await
        .unwrap();
    let (web, app) = start_web(table, ClusterConfig::fast()).await.unwrap();
    let server = serve(app, TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    assert!(server.addr.ip().is_loopback());
    tokio::time::timeout(BOUND, async {
        wait_for_members(&web, 2, BOUND).await.unwrap();
        wait_for_members(&standalone, 2, BOUND).await.unwrap();
        let owners = [
            (web.address().endpoint.clone(), WEB),
            (standalone.address().endpoint.clone(), STANDALONE),
        ];
        for (endpoint, silo) in owners {
            for name in names_owned_by(&web, &endpoint, 3) {
                for count in 1..=2 {
                    let r = get(server.addr, &format!("/hello/{name}")).await;
                    assert_eq!(r.0, 200, "{}", r.1);
                    let hello: Hello = serde_json::from_str(&r.1).unwrap();
                    assert_eq!(hello.silo, silo, "{name} lives on {silo}");
                    assert_eq!(hello.count, count, "one activation of {name}");
                    assert_eq!(hello.pid, std::process::id());
                    assert!(hello.text.contains(&name), "{}", hello.text);
                }
            }
        }
        let health = get(server.addr, "/health").await;
        assert_eq!((health.0, health.1.as_str()), (200, "ok"));
        let missing = get(server.addr, "/nope").await;
        assert_eq!(missing.0, 404);
    })
    .await
    .expect("test timed out");
    assert_eq!(web.silo().activation_count(), 3);
    assert_eq!(standalone.silo().activation_count(), 3);
    server.stop().await.unwrap();
    web.leave().await.unwrap();
    standalone.leave().await.unwrap();
}
