//! Run with: cargo run -p example-mediator
//!
//! Without arguments: serves the app on a free port of 127.0.0.1, posts
//! three orders to itself over HTTP, prints what each handler grain saw and
//! exits. With `--serve`: keeps serving on 127.0.0.1:3000 (`--port N` to
//! change it) until Ctrl-C or SIGTERM; try
//! `curl -i -H 'content-type: application/json' -d '{"customer_email":"ada@example.com","sku":"book","quantity":2}' localhost:3000/orders`.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context;
use example_mediator::{PlaceOrder, build_silo, router, run_scenario};
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
    let silo = build_silo().await?;
    let app = router(&silo);

    if args.serve {
        let mut signals = actor_cluster::ShutdownSignals::new()?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, args.port)).await?;
        println!(
            "serving on http://{} (POST /orders, GET /metrics); Ctrl-C or SIGTERM stops",
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
    println!("serving on http://{addr}; posting three orders to POST /orders");

    let orders = [
        ("ada@example.com", "book", 2),
        ("grace@example.com", "lamp", 1),
        ("alan@example.com", "book", 3),
    ]
    .map(|(email, sku, quantity)| PlaceOrder {
        customer_email: email.to_owned(),
        sku: sku.to_owned(),
        quantity,
    });
    let summary = run_scenario(&silo, addr, &orders).await?;
    for (order, placed) in orders.iter().zip(&summary.placed) {
        println!(
            "  201 {} x {} for {} -> order {} handled by {:?}",
            order.quantity, order.sku, order.customer_email, placed.order_id, placed.notified
        );
    }
    println!("email-sender grain sent {} emails:", summary.emails.len());
    for email in &summary.emails {
        println!("  to {:<18} {}", email.to, email.subject);
    }
    println!(
        "inventory-updater grain handled {} orders; reserved {:?}",
        summary.inventory.orders.len(),
        summary.inventory.reserved
    );

    let _ = stop.send(());
    server.await??;
    silo.shutdown().await;
    Ok(())
}
