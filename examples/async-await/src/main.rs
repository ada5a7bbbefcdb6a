//! Run with: cargo run -p example-async-await
//!
//! One client sends 1,000 calls to one consumer grain without waiting for
//! any of them, then awaits them all; the consumer answers them one turn at
//! a time.

use example_async_await::{TurnProbe, build_silo, run_scenario};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let probe = TurnProbe::new();
    let silo = build_silo(probe.clone()).await?;
    let s = run_scenario(&silo, &probe, "consumer-1", 1_000).await?;
    let correct = s
        .replies
        .iter()
        .filter(|r| r.output == r.input * r.input)
        .count();
    println!(
        "1000 calls from one task to one consumer grain in {:.1?}",
        s.elapsed
    );
    println!(
        "  calls in flight at once (client side): up to {}",
        s.max_in_flight
    );
    println!(
        "  consumer turns running at once:        up to {}",
        s.max_concurrent_turns
    );
    println!("  consumer activations:                  {}", s.activations);
    println!(
        "  correct replies: {correct}/{}; consumer ran {} turns, sum of inputs {}",
        s.replies.len(),
        s.totals.turns,
        s.totals.sum
    );
    for r in s.replies.iter().take(3) {
        println!("    square({}) = {} in turn {}", r.input, r.output, r.turn);
    }
    silo.shutdown().await;
    Ok(())
}
