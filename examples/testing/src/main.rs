//! Run with: cargo run -p example-testing
//!
//! Runs the converter grain with the real (in-process) exchange rates and
//! prints each conversion. The point of the example is its tests:
//! `cargo test -p example-testing`.

use std::sync::Arc;

use example_testing::{FixedRates, Money, build_silo, run_scenario};

#[tokio::main]
async fn main() -> actor_core::Result<()> {
    let silo = build_silo(Arc::new(FixedRates::default())).await?;
    let scenario = run_scenario(&silo).await?;
    for (request, reply) in &scenario.replies {
        let amount = Money::new(request.cents, &request.from);
        match reply {
            Ok(money) => println!("{amount} -> {}: {money}", request.to),
            Err(error) => println!("{amount} -> {}: refused: {error}", request.to),
        }
    }
    println!("conversions made: {}", scenario.conversions);
    silo.shutdown().await;
    Ok(())
}
