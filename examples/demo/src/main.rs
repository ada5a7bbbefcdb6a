//! Run with: cargo run -p demo
//!
//! Starts a demo silo on embedded defaults with the live dashboard at
//! <http://127.0.0.1:8080>, drives a few grains printing what happens, then
//! keeps steady traffic going (some calls fail, some are slow) until
//! Ctrl-C or SIGTERM. `--rounds N` stops after N rounds (the tests use it);
//! `--dashboard ADDR` serves the dashboard elsewhere (say
//! `127.0.0.1:0` for any free port); `--no-dashboard` serves none.

use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().collect();
    let rounds: Option<u64> = args
        .iter()
        .position(|a| a == "--rounds")
        .map(|i| {
            args.get(i + 1)
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("--rounds needs a number"))
        })
        .transpose()?;

    let flag = |name: &str| args.iter().position(|a| a == name);
    let dashboard_addr: Option<std::net::SocketAddr> = if flag("--no-dashboard").is_some() {
        None
    } else {
        Some(match flag("--dashboard") {
            Some(i) => args
                .get(i + 1)
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| {
                    anyhow::anyhow!("--dashboard needs an address such as 127.0.0.1:8080")
                })?,
            None => dashboard::DEFAULT_ADDR,
        })
    };
    let mut signals = actor_cluster::ShutdownSignals::new()?;
    let silo = match dashboard_addr {
        Some(addr) => demo::build_silo_with_dashboard(dashboard::DashboardConfig::default().bind(addr))
            .await
            .map_err(|e| anyhow::anyhow!("{e}\n(another program may hold the port: try `cargo run -p demo -- --dashboard 127.0.0.1:8081`)"))?,
        None => demo::build_silo().await?,
    };
    println!(
        "demo silo `{}` started; grain types: {:?}",
        silo.name(),
        silo.grain_types()
    );
    if let Some(d) = dashboard::Dashboard::of(&silo) {
        println!("dashboard: {}", d.url());
    }
    let mut round = 0;
    loop {
        let r = tokio::select! {
            r = demo::run_round(&silo, round) => r?,
            _ = signals.recv() => break,
        };
        if round == 0 {
            println!("home page visits so far: {}", r.home_visits);
            println!("transfers refused for insufficient funds: {}", r.refused);
            println!("stateless worker says: {}", r.greeting);
            match &r.deadlock {
                Some(e) => println!("ping -> pong -> ping failed in {:?}: {e}", r.deadlock_after),
                None => println!("ping -> pong -> ping completed"),
            }
        }
        println!(
            "round {round}: sensor samples={} | {}",
            r.samples,
            demo::summary(&silo.metrics())
        );
        round += 1;
        if rounds.is_some_and(|n| round >= n) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = signals.recv() => break,
        }
    }
    silo.shutdown().await;
    println!("silo stopped after {round} rounds");
    Ok(())
}
