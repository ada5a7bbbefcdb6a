//! Run with: cargo run -p example-outbox
//!
//! Starts three silos in one process, in one cluster (a shared in-memory
//! membership table) over one SQLite file in a fresh temporary directory.
//! Producers on every silo append 60 messages to the outbox partitions;
//! the outboxes' reminders deliver them to the consumers; one silo is
//! killed half way and the survivors finish its outbox. Prints who did
//! what and checks, from the consumers' stored state, that every message
//! was processed exactly once (exit 1 otherwise).

use example_outbox::{Scenario, play};

#[tokio::main]
async fn main() {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("cannot create a temporary directory: {e}");
            std::process::exit(1);
        }
    };
    let db = dir.path().join("example-outbox.db");
    let scenario = Scenario::default();
    let outcome = match play(&db, &scenario, |line| println!("{line}")).await {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("the scenario failed: {e:#}");
            std::process::exit(1);
        }
    };
    match outcome.check() {
        Ok(()) => println!(
            "All {} messages were processed exactly once (the consumers' stored ids, counted), {} despite {} killed half way.",
            outcome.sent.len(),
            if outcome.duplicates > 0 {
                format!("{} repeated deliveries ignored", outcome.duplicates)
            } else {
                "no repeated delivery".to_owned()
            },
            outcome.killed.as_deref().unwrap_or("no silo"),
        ),
        Err(e) => {
            eprintln!("NOT EXACTLY ONCE: {e}");
            std::process::exit(1);
        }
    }
}
