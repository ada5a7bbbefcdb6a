//! (c) The external client: hosts no grains, reaches grains on every silo
//! through a gateway, shares their activations with the web app, and goes
//! on through another gateway when its own leaves.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actor_cluster::{ClusterConfig, InMemoryMembership, MembershipTable};
use example_hosting::{
    ClusterClient, HelloGrain, HelloGrainRef, STANDALONE, Via, WEB, play, serve, start_standalone,
    start_web, wait_for_members,
};
use tokio::net::TcpListener;

const BOUND: Duration = Duration::from_secs(30);

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("test timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_and_the_web_app_reach_the_same_activations() {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let standalone = start_standalone(table.clone(), ClusterConfig::fast())
        .await
        .unwrap();
    let (web, app) = start_web(table, ClusterConfig::fast()).await.unwrap();
    let server = serve(app, TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    bounded(wait_for_members(&web, 2, BOUND)).await.unwrap();
    bounded(wait_for_members(&standalone, 2, BOUND))
        .await
        .unwrap();

    let answers = bounded(play(&web, server.addr, &standalone.address().endpoint))
        .await
        .unwrap();
    let (http, client): (Vec<_>, Vec<_>) = answers.iter().partition(|a| a.via == Via::Http);
    assert_eq!((http.len(), client.len()), (4, 4));
    for (h, c) in http.iter().zip(&client) {
        assert_eq!(h.name, c.name);
        assert_eq!((h.hello.count, c.hello.count), (1, 2), "{} twice", h.name);
        assert_eq!(h.hello.silo, c.hello.silo);
    }
    let silos: HashSet<_> = client.iter().map(|a| a.hello.silo.as_str()).collect();
    assert_eq!(silos, HashSet::from([WEB, STANDALONE]));
    server.stop().await.unwrap();
    web.leave().await.unwrap();
    standalone.leave().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_calls_every_silo_and_outlives_its_gateway() {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let standalone = start_standalone(table.clone(), ClusterConfig::fast())
        .await
        .unwrap();
    let (web, _app) = start_web(table, ClusterConfig::fast()).await.unwrap();
    bounded(wait_for_members(&web, 2, BOUND)).await.unwrap();
    bounded(wait_for_members(&standalone, 2, BOUND))
        .await
        .unwrap();

    // Given one gateway, the client learns both.
    let client = ClusterClient::connect(
        vec![standalone.address().endpoint.clone()],
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    assert_eq!(client.gateways().len(), 2);
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let g = client.get_grain::<HelloGrain>(format!("guest-{i}"));
            tokio::spawn(async move { g.say_hello("test".into()).await })
        })
        .collect();
    let mut silos = HashSet::new();
    for call in calls {
        let hello = bounded(call).await.unwrap().unwrap();
        assert_eq!(hello.count, 1);
        silos.insert(hello.silo);
    }
    assert_eq!(silos.len(), 2, "grains on both silos: {silos:?}");
    assert_eq!(
        web.silo().activation_count() + standalone.silo().activation_count(),
        50,
        "one activation per grain, none in the client"
    );

    // The client's first gateway leaves; it goes on through the web silo.
    standalone.leave().await.unwrap();
    bounded(async {
        while client.gateways().len() != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for i in 0..50 {
        let hello = bounded(
            client
                .get_grain::<HelloGrain>(format!("guest-{i}"))
                .say_hello("test".into()),
        )
        .await
        .unwrap();
        assert_eq!(hello.silo, WEB);
    }
    web.leave().await.unwrap();
}
