//! The web app's HTTP edges: a `HEAD /hello/{name}` changes nothing (it
//! greets no one, so the count a later GET shows is unchanged) and
//! answers what a GET's headers would say, without a body.

use std::time::Duration;

use example_hosting::{Hello, HelloGrain, HelloGrainRef, app, serve, silo_builder};
use tokio::net::TcpListener;

const BOUND: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_request_greets_no_one() {
    let silo = silo_builder("web").start().await.unwrap();
    let server = serve(
        app(silo.clone()),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", server.addr);
    tokio::time::timeout(BOUND, async {
        let mut headers = None;
        for _ in 0..3 {
            let head = http.head(url("/hello/ada")).send().await.unwrap();
            assert_eq!(head.status(), 200);
            headers = Some(head.headers().clone());
            assert!(head.bytes().await.unwrap().is_empty());
        }
        // No greeting ran, and no activation was made for it.
        assert_eq!(silo.activation_count(), 0, "a HEAD activated the grain");
        // The headers a GET would send, but no length: a GET's body is not
        // empty, and its length is known only once the greeting ran.
        let headers = headers.unwrap();
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers.get("content-length"), None);
        let get = http.get(url("/hello/ada")).send().await.unwrap();
        assert_eq!(get.status(), 200);
        assert_eq!(get.headers()["content-type"], "application/json");
        let hello: Hello = get.json().await.unwrap();
        assert_eq!(hello.count, 1, "the HEADs before greeted no one");
        // And after a GET, a HEAD still leaves the count alone.
        let head = http.head(url("/hello/ada")).send().await.unwrap();
        assert_eq!(head.status(), 200);
        let next = silo
            .get_grain::<HelloGrain>("ada")
            .say_hello("the test".to_owned())
            .await
            .unwrap();
        assert_eq!(next.count, 2);
        // The app's other routes are as they were.
        let health = http.head(url("/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let post = http.post(url("/hello/ada")).send().await.unwrap();
        assert_eq!(post.status(), 405);
    })
    .await
    .expect("test timed out");
    server.stop().await.unwrap();
    silo.shutdown().await;
}
