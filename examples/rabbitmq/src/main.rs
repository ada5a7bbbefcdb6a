//! Run with: cargo run -p example-rabbitmq
//!
//! Needs the RabbitMQ of the project's machines (127.0.0.1:5672,
//! guest/guest; or `AMQP_URL`). Publishes five jobs to a durable queue,
//! lets silo-a's workers process them with prefetch 1 until silo-a dies
//! while job 3 is unacked, then starts silo-b, which gets job 3 again.

#[tokio::main]
async fn main() {
    let url = example_rabbitmq::default_url();
    let out = match example_rabbitmq::play(&url, 5).await {
        Ok(out) => out,
        Err(e) => {
            eprintln!("scenario failed (is RabbitMQ running at {url}?): {e}");
            std::process::exit(1);
        }
    };
    for p in &out.processed {
        println!("job {} on {} (attempt {})", p.job, p.silo, p.attempt);
    }
    let mut jobs: Vec<u32> = out.processed.iter().map(|p| p.job).collect();
    jobs.sort_unstable();
    jobs.dedup();
    let redelivered = out
        .processed
        .iter()
        .any(|p| p.job == 3 && p.silo == "silo-b" && p.attempt == 2);
    if jobs != [1, 2, 3, 4, 5] || !redelivered {
        eprintln!("expected every job processed and job 3 redelivered to silo-b");
        std::process::exit(1);
    }
}
