//! Run with: cargo run -p example-rate-limit
//!
//! Starts two silos in one cluster, each with an axum front on a free
//! port of 127.0.0.1, sends one client's burst of 130 requests spread over
//! both fronts, prints how many passed and how many got 429 (100 and 30:
//! the limit holds across fronts), and exits.

use std::sync::Arc;
use std::time::Duration;

use actor_cluster::{ClusterConfig, ClusterSilo, InMemoryMembership, MembershipTable};
use actor_core::Silo;
use example_rate_limit::{Clock, RateLimiter, app, burst, limiters_of, serve};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let mut silos = Vec::new();
    let mut fronts = Vec::new();
    for name in ["front-a", "front-b"] {
        let silo = ClusterSilo::start(
            Silo::builder().name(name).grain::<RateLimiter>(),
            TcpListener::bind("127.0.0.1:0").await?,
            table.clone(),
            ClusterConfig::default(),
        )
        .await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        fronts.push(listener.local_addr()?);
        serve(
            app(limiters_of(silo.silo().clone()), Clock::system()),
            listener,
        );
        silos.push(silo);
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    while silos.iter().any(|s| s.active_members().len() < 2) {
        anyhow::ensure!(
            tokio::time::Instant::now() < until,
            "the silos did not see each other"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("fronts on http://{} and http://{}", fronts[0], fronts[1]);
    let http = reqwest::Client::new();
    let result = burst(&http, &fronts, "demo-client", 130).await?;
    println!(
        "130 requests over both fronts: {} passed, {} got 429 (Retry-After {:?} s)",
        result.count(200),
        result.count(429),
        result.retry_after.first()
    );
    for silo in silos {
        silo.leave().await?;
    }
    Ok(())
}
