//! Run with: cargo run -p example-hosting
//!
//! Without arguments: starts a standalone silo and a silo embedded in an
//! axum app, in one cluster in this process, serves the app on a free port
//! of 127.0.0.1, greets over HTTP and through a cluster client, prints
//! which silo answered each, and exits.
//!
//! The other modes, to try the hosts as separate processes:
//!
//! - `-- --standalone --table /tmp/hosting.db`: a standalone (console)
//!   silo; prints its endpoint; serves until Ctrl-C or SIGTERM (with
//!   `--exit-on-eof`, also until its stdin closes), then leaves the cluster
//!   and exits.
//! - `-- --serve [--port 3000] [--table /tmp/hosting.db]`: the web app
//!   with its embedded silo, until Ctrl-C or SIGTERM. With `--table` it
//!   joins the silos of that table; without, it starts a standalone silo
//!   in-process. Try `curl localhost:3000/hello/ada`.
//! - `-- --client 127.0.0.1:PORT [NAME...]`: an external client greeting
//!   through the silo at that endpoint.

use std::sync::Arc;
use std::time::Duration;

use actor_cluster::{InMemoryMembership, MembershipTable, ShutdownSignals, stdin_closed};
use example_hosting::{
    ClusterClient, HelloGrain, HelloGrainRef, Options, READY, Via, play, serve, sqlite_table,
    start_standalone, start_web, wait_for_members,
};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse(std::env::args().skip(1))?;
    if let Some(gateway) = &options.client {
        return run_client(gateway, &options.names).await;
    }
    if options.standalone {
        return run_standalone(&options).await;
    }
    if options.serve {
        return run_serve(&options).await;
    }
    run_scenario(&options).await
}

/// The scenario: both hosts in one process, HTTP and client calls.
async fn run_scenario(options: &Options) -> anyhow::Result<()> {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let standalone = start_standalone(table.clone(), options.config()).await?;
    let (web, app) = start_web(table, options.config()).await?;
    let server = serve(app, TcpListener::bind("127.0.0.1:0").await?)?;
    wait_for_members(&web, 2, Duration::from_secs(30)).await?;
    wait_for_members(&standalone, 2, Duration::from_secs(30)).await?;
    println!(
        "standalone silo at {}; web app on http://{} with its silo at {}\n",
        standalone.address().endpoint,
        server.addr,
        web.address().endpoint
    );

    let gateway = standalone.address().endpoint.clone();
    let answers = play(&web, server.addr, &gateway).await?;
    for answer in &answers {
        println!("{answer}");
    }
    let silos = |via| {
        let mut s: Vec<_> = answers
            .iter()
            .filter(|a| a.via == via)
            .map(|a| a.hello.silo.as_str())
            .collect();
        s.sort();
        s.dedup();
        s.join(" and ")
    };
    println!(
        "\nHTTP requests were answered by grains on silos {}; the cluster client \
         (gateway {gateway}) reached the same activations on {}",
        silos(Via::Http),
        silos(Via::Client)
    );

    server.stop().await?;
    web.leave().await?;
    standalone.leave().await?;
    println!("web app stopped, both silos left the cluster");
    Ok(())
}

/// A console silo: serves until Ctrl-C or SIGTERM (or stdin closes, with
/// `--exit-on-eof`), then leaves the cluster and exits.
async fn run_standalone(options: &Options) -> anyhow::Result<()> {
    // Before READY: a stop sent right after it must find the handlers.
    let mut signals = ShutdownSignals::new()?;
    let path = options.table.as_deref().expect("checked by Options::parse");
    let member = start_standalone(sqlite_table(path).await?, options.config()).await?;
    let endpoint = member.address().endpoint.clone();
    println!("{READY} {} {endpoint}", std::process::id());
    println!(
        "standalone silo serving at {endpoint} (table {}); Ctrl-C or SIGTERM stops it. \
         Clients: --client {endpoint}",
        path.display()
    );
    let eof = async {
        if options.exit_on_eof {
            let _ = stdin_closed().await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let why = tokio::select! {
        signal = signals.recv() => signal.name(),
        () = eof => "stdin closed",
    };
    let hosted = member.silo().activation_count();
    member.leave().await?;
    println!("standalone silo left the cluster after hosting {hosted} grains ({why})");
    Ok(())
}

/// The web app with its embedded silo, serving until Ctrl-C or SIGTERM.
async fn run_serve(options: &Options) -> anyhow::Result<()> {
    let mut signals = ShutdownSignals::new()?;
    let (table, standalone) = match &options.table {
        Some(path) => (sqlite_table(path).await?, None),
        None => {
            let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
            let s = start_standalone(table.clone(), options.config()).await?;
            (table, Some(s))
        }
    };
    let (web, app) = start_web(table, options.config()).await?;
    let server = serve(app, TcpListener::bind(("127.0.0.1", options.port)).await?)?;
    println!(
        "serving on http://{} (GET /hello/NAME); cluster gateway {}; Ctrl-C or SIGTERM stops",
        server.addr,
        web.address().endpoint
    );
    let signal = signals.recv().await;
    server.stop().await?;
    web.leave().await?;
    if let Some(s) = standalone {
        s.leave().await?;
    }
    println!("web app stopped and left the cluster ({signal})");
    Ok(())
}

/// An external client: greets each name through the cluster.
async fn run_client(gateway: &str, names: &[String]) -> anyhow::Result<()> {
    let client = ClusterClient::connect(vec![gateway.to_owned()], Duration::from_secs(1)).await?;
    println!("connected; gateways {:?}", client.gateways());
    let defaults = ["ada".to_owned(), "grace".to_owned()];
    let names = if names.is_empty() {
        &defaults[..]
    } else {
        names
    };
    for name in names {
        let hello = client
            .get_grain::<HelloGrain>(name.as_str())
            .say_hello("a cluster client".to_owned())
            .await?;
        println!(
            "{name}: \"{}\" #{} from silo {} (pid {})",
            hello.text, hello.count, hello.silo, hello.pid
        );
    }
    Ok(())
}
