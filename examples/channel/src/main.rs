//! Run with: cargo run -p example-channel
//!
//! Without arguments: serves the app on a free port of 127.0.0.1, posts
//! ten jobs to itself (each answered `202` at once), then watches
//! `GET /stats` while the slow consumer grain works through its mailbox,
//! and exits. With `--serve`: keeps serving on 127.0.0.1:3000 (`--port N`
//! to change it) until Ctrl-C or SIGTERM; try
//! `for i in $(seq 20); do curl -s -H 'content-type: application/json' -d '{"payload":"x"}' localhost:3000/jobs; echo; done; curl -s localhost:3000/stats`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use example_channel::{AppConfig, DEFAULT_WORK, build_silo, router, run_scenario};
use tokio::net::TcpListener;

struct Args {
    serve: bool,
    port: u16,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        serve: false,
        port: 3000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--serve" => args.serve = true,
            "--port" => {
                args.port = it
                    .next()
                    .context("--port needs a number")?
                    .parse()
                    .context("--port needs a number from 0 to 65535")?;
            }
            other => anyhow::bail!("unknown argument `{other}`; use --serve and --port N"),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let silo = build_silo(DEFAULT_WORK).await?;
    let app = router(&silo, AppConfig::default());

    if args.serve {
        let mut signals = actor_cluster::ShutdownSignals::new()?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, args.port)).await?;
        println!(
            "serving on http://{} (POST /jobs, GET /stats, GET /metrics); Ctrl-C or SIGTERM stops",
            listener.local_addr()?
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                signals.recv().await;
            })
            .await?;
        silo.shutdown().await;
        return Ok(());
    }

    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr: SocketAddr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    println!("serving on http://{addr}; the consumer grain takes {DEFAULT_WORK:?} per job");

    let s = run_scenario(
        addr,
        10,
        Duration::from_millis(150),
        Duration::from_secs(10),
    )
    .await?;
    println!(
        "posted 10 jobs in {:.1?}, every one answered 202 Accepted:",
        s.posting_took
    );
    for a in &s.accepted {
        println!(
            "  job {:>2} queued, mailbox depth {}",
            a.job_id, a.mailbox_depth
        );
    }
    let show = |label: String, st: &example_channel::Stats| {
        println!(
            "  {label:<22} accepted {:>2}  mailbox depth {:>2}  processed {:>2}",
            st.accepted, st.mailbox_depth, st.processed
        );
    };
    println!("GET /stats while the consumer catches up:");
    show("right after posting".to_owned(), &s.right_after);
    for (at, st) in &s.draining {
        show(format!("at {at:.0?}"), st);
    }
    show(format!("drained at {:.0?}", s.drained_after), &s.drained);

    let _ = stop.send(());
    server.await??;
    silo.shutdown().await;
    Ok(())
}
