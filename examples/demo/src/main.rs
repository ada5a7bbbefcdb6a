//! Run with: cargo run -p demo
//!
//! Starts a demo silo on embedded defaults and drives a few grains,
//! printing what happens, then keeps steady traffic going until Ctrl-C.
//! `--rounds N` stops after N rounds (the tests use it).

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

    let silo = demo::build_silo().await?;
    println!(
        "demo silo `{}` started; grain types: {:?}",
        silo.name(),
        silo.grain_types()
    );
    let mut round = 0;
    loop {
        let r = tokio::select! {
            r = demo::run_round(&silo, round) => r?,
            _ = tokio::signal::ctrl_c() => break,
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
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    silo.shutdown().await;
    println!("silo stopped after {round} rounds");
    Ok(())
}
