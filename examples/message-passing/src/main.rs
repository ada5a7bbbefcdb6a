//! Run with: cargo run -p example-message-passing
//!
//! A producer grain sends ten items to a consumer grain, one call at a
//! time, and prints each reply with its round-trip time.

use example_message_passing::{DEFAULT_WORK, build_silo, run_scenario};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let silo = build_silo(DEFAULT_WORK).await?;
    println!("producer -> consumer, 10 items, the consumer works {DEFAULT_WORK:?} on each");
    let summary = run_scenario(&silo, "producer-1", "consumer-1", 10).await?;
    for trip in &summary.round_trips {
        println!(
            "  item-{:<2} acknowledged after {:>6.1?} (consumer has processed {})",
            trip.ack.seq, trip.elapsed, trip.ack.processed
        );
    }
    let in_step = summary
        .deliveries
        .iter()
        .filter(|d| d.caller_had_previous_reply)
        .count();
    println!(
        "consumer received {} items in order {:?}; {in_step} of them sent only after the previous reply",
        summary.deliveries.len(),
        summary.deliveries.iter().map(|d| d.seq).collect::<Vec<_>>(),
    );
    silo.shutdown().await;
    Ok(())
}
