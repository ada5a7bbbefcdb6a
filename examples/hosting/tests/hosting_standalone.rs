//! (b) The standalone silo as its own process: it joins the web app's
//! cluster through the shared SQLite table and serves grains to the web
//! app and to external clients; and the binary's default scenario.

use std::process::Stdio;
use std::time::Duration;

use actor_cluster::ClusterConfig;
use example_hosting::{
    ClusterClient, Hello, HelloGrain, HelloGrainRef, READY, STANDALONE, WEB, names_owned_by, serve,
    sqlite_table, start_web, wait_for_members,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_example-hosting");
const BOUND: Duration = Duration::from_secs(60);

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("test timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_silo_process_serves_the_web_app_and_clients() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("membership.db");
    let mut child = Command::new(EXE)
        .args(["--standalone", "--fast", "--exit-on-eof", "--table"])
        .arg(&table)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (pid, endpoint) = bounded(async {
        loop {
            let line = lines.next_line().await.unwrap().expect("child exited");
            let words: Vec<_> = line.split_whitespace().collect();
            if let [READY, pid, endpoint] = words[..] {
                return (pid.parse::<u32>().unwrap(), endpoint.to_owned());
            }
        }
    })
    .await;
    assert_ne!(pid, std::process::id());

    // The web app in this process joins the standalone silo's cluster.
    let (web, app) = start_web(sqlite_table(&table).await.unwrap(), ClusterConfig::fast())
        .await
        .unwrap();
    let server = serve(app, TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    bounded(wait_for_members(&web, 2, BOUND)).await.unwrap();

    let there = names_owned_by(&web, &endpoint, 2);
    let here = names_owned_by(&web, &web.address().endpoint, 2);
    for name in &there {
        let r = bounded(reqwest::get(format!("http://{}/hello/{name}", server.addr)))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let hello: Hello = r.json().await.unwrap();
        assert_eq!((hello.silo.as_str(), hello.pid), (STANDALONE, pid));
    }

    // An external client through the standalone process's gateway. It
    // learns the gateways from the standalone silo's view: once it lists
    // both, the child process sees the web silo too.
    let client = bounded(ClusterClient::connect(
        vec![endpoint.clone()],
        Duration::from_millis(100),
    ))
    .await
    .unwrap();
    bounded(async {
        while client.gateways().len() != 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for name in &there {
        let hello = bounded(
            client
                .get_grain::<HelloGrain>(name.as_str())
                .say_hello("test".into()),
        )
        .await
        .unwrap();
        assert_eq!(
            (hello.silo.as_str(), hello.pid, hello.count),
            (STANDALONE, pid, 2)
        );
    }
    for name in &here {
        let hello = bounded(
            client
                .get_grain::<HelloGrain>(name.as_str())
                .say_hello("test".into()),
        )
        .await
        .unwrap();
        assert_eq!((hello.silo.as_str(), hello.pid), (WEB, std::process::id()));
    }
    drop(client);

    // Closing its stdin stops the standalone silo cleanly.
    drop(stdin);
    let status = bounded(child.wait()).await.unwrap();
    assert!(status.success(), "{status}");
    let mut rest = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push(line);
    }
    assert!(
        rest.iter()
            .any(|l| l.contains("left the cluster after hosting 2 grains")),
        "{rest:?}"
    );
    // Its grains come back in the web app's silo, fresh.
    bounded(wait_for_members(&web, 1, BOUND)).await.unwrap();
    let r = bounded(reqwest::get(format!(
        "http://{}/hello/{}",
        server.addr, there[0]
    )))
    .await
    .unwrap();
    let hello: Hello = r.json().await.unwrap();
    assert_eq!((hello.silo.as_str(), hello.count), (WEB, 1));
    server.stop().await.unwrap();
    web.leave().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_plays_the_scenario_and_exits_0() {
    // Exactly what `cargo run -p example-hosting` does.
    let output = bounded(Command::new(EXE).kill_on_drop(true).output())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}\n{stdout}", output.status);
    assert!(
        stdout.contains(
            "HTTP requests were answered by grains on silos standalone and web; the cluster client"
        ),
        "{stdout}"
    );
    assert_eq!(stdout.matches("#2 from silo").count(), 4, "{stdout}");
    assert!(stdout.contains("both silos left the cluster"), "{stdout}");
}
