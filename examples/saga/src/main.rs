//! Run with: cargo run -p example-saga
//!
//! Plays the order saga on a SQLite file in a fresh temporary directory:
//! an accepted order, a declined payment that is compensated, an
//! out-of-stock order, a customer cancelling a pending order, and an order
//! left pending across a silo restart that finishes on its own on the new
//! silo. Prints every saga's stored transitions and checks the books at
//! the end (exit 1 if they do not add up).

use example_saga::{check_consistency, play};

#[tokio::main]
async fn main() {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("cannot create a temporary directory: {e}");
            std::process::exit(1);
        }
    };
    let db = dir.path().join("example-saga.db");
    let outcome = match play(&db, |line| println!("{line}")).await {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("the scenario failed: {e:#}");
            std::process::exit(1);
        }
    };
    match check_consistency(&outcome) {
        Ok(()) => println!(
            "The books add up: every unit is on the shelf or reserved once by an accepted order, and every customer paid exactly for their accepted orders."
        ),
        Err(e) => {
            eprintln!("INCONSISTENT: {e}");
            std::process::exit(1);
        }
    }
}
