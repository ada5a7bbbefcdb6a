//! Run with: cargo run -p example-streams
//!
//! A producer grain's timer pushes the ints 1..=10 to the stream
//! ("numbers", 1); the consumer grain with key 1, implicitly subscribed to
//! the namespace, is activated by the first item and prints each one.

#[tokio::main]
async fn main() {
    let silo = example_streams::silo().await.expect("silo starts");
    let out = example_streams::play(&silo, 1, 10)
        .await
        .expect("scenario runs");
    println!(
        "activations before the first item: {}; the consumer received {:?}",
        out.activations_before, out.received
    );
    silo.shutdown().await;
    if out.received != (1..=10).collect::<Vec<_>>() {
        eprintln!("the consumer missed items");
        std::process::exit(1);
    }
}
