//! The exercise's claims on the real broker: published jobs wait in the
//! durable queue; with prefetch 1 the jobs are processed one at a time in
//! order; a job whose worker's silo died before the ack is delivered again
//! (attempt 2) to the next silo, and no job is lost. With CI=true a
//! missing broker fails the test.

use example_rabbitmq::{Processed, default_url, play};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_not_acked_before_the_crash_is_delivered_again() {
    let url = default_url();
    let out = match play(&url, 5).await {
        Ok(out) => out,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping: RabbitMQ unavailable: {e}");
            return;
        }
        Err(e) => panic!("RabbitMQ is required with CI=true: {e}"),
    };
    assert_eq!(out.queued_before_workers, 5);
    let p = |job, silo: &str, attempt| Processed {
        job,
        silo: silo.to_owned(),
        attempt,
    };
    assert_eq!(
        out.processed,
        [
            p(1, "silo-a", 1),
            p(2, "silo-a", 1),
            p(3, "silo-b", 2),
            p(4, "silo-b", 1),
            p(5, "silo-b", 1),
        ]
    );
}
