//! Run with: cargo run -p example-deadlock
//!
//! Plays the call cycles on a silo without reentrancy (each fails at once
//! with a deadlock error naming the cycle) and on one with call-chain
//! reentrancy (each completes).

use std::time::Instant;

use actor_core::Silo;
use example_deadlock::{
    Reentrancy, Trail, build_silo, show_trail, straight_chain, three_grain_cycle, two_grain_cycle,
};

#[tokio::main]
async fn main() -> actor_core::Result<()> {
    let silo = build_silo(Reentrancy::Off).await?;
    println!(
        "Without reentrancy (the Orleans default), call deadline {:?}:",
        silo.call_timeout()
    );
    play(&silo).await;
    silo.shutdown().await;

    let silo = build_silo(Reentrancy::CallChain).await?;
    println!("\nWith call-chain reentrancy on a, b and c:");
    play(&silo).await;
    silo.shutdown().await;
    Ok(())
}

async fn play(silo: &Silo) {
    report("a -> b -> a     ", two_grain_cycle(silo)).await;
    report("a -> b -> c -> a", three_grain_cycle(silo)).await;
    report("a -> b -> c     ", straight_chain(silo)).await;
}

async fn report(label: &str, scenario: impl Future<Output = Trail>) {
    let started = Instant::now();
    let outcome = scenario.await;
    let took = started.elapsed();
    match outcome {
        Ok(trail) => println!("  {label}: completed in {took:.2?}: {}", show_trail(&trail)),
        Err(error) => println!("  {label}: failed after {took:.2?}: {error}"),
    }
}
