//! Run with: cargo run -p example-transactions
//!
//! Starts two silos on loopback TCP sharing a transactional store (a
//! SQLite file in the temp directory, or `--postgres [URL]`), lets four
//! clients make random transfers between eight accounts at once, forces
//! an overdraw, and prints the committed / aborted / in-doubt counts and
//! the final total. Exits 0 when the total did not change.

use std::sync::Arc;

use actor_tx::{PostgresTxStorage, SqliteTxStorage, TransactionalStorage};
use example_transactions::{Scenario, play, start_cluster};

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut scenario = Scenario::default();
    let mut postgres = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--postgres" => {
                let url = args.get(i + 1).filter(|a| !a.starts_with("--")).cloned();
                i += usize::from(url.is_some());
                postgres = Some(url.unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_owned()));
            }
            "--transfers" => {
                scenario.transfers = args
                    .get(i + 1)
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("--transfers needs a number"))?;
                i += 1;
            }
            other => anyhow::bail!(
                "unknown argument `{other}`; usage: example-transactions [--postgres [URL]] [--transfers N]"
            ),
        }
        i += 1;
    }
    let dir = std::env::temp_dir().join("example-transactions");
    std::fs::create_dir_all(&dir)?;
    let storage: Arc<dyn TransactionalStorage> = match &postgres {
        Some(url) => Arc::new(PostgresTxStorage::connect(url).await?),
        None => Arc::new(SqliteTxStorage::open(dir.join("bank.db")).await?),
    };
    println!("storage: {}", storage.describe());
    let silos = start_cluster(2, storage).await?;
    println!(
        "{} accounts of {} on {} silos; {} clients making {} random transfers each",
        scenario.accounts,
        scenario.start,
        silos.len(),
        scenario.clients,
        scenario.transfers
    );
    let report = play(&silos, &scenario).await?;
    println!("committed: {}", report.committed);
    println!("aborted (overdraw): {}", report.overdraws);
    for (reason, n) in &report.aborted {
        println!("aborted ({reason}, after retries): {n}");
    }
    println!("in doubt: {}", report.in_doubt);
    println!(
        "a deliberate overdraw left both sides unchanged: {}",
        report.overdraw_left_both_unchanged
    );
    println!(
        "total: {} before, {} after",
        report.initial_total, report.final_total
    );
    for s in &silos {
        s.silo().shutdown().await;
    }
    if report.final_total != report.initial_total || !report.overdraw_left_both_unchanged {
        eprintln!("the bank lost its balance");
        std::process::exit(1);
    }
    Ok(())
}
