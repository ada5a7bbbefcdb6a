//! Run with: cargo run -p example-transactions
//!
//! Starts two silos on loopback TCP sharing a transactional store (a
//! SQLite file in the temp directory, or `--postgres [URL]`), lets four
//! clients make random transfers between eight accounts at once, forces
//! an overdraw, and prints the committed / aborted / in-doubt counts and
//! the final total. Exits 0 when the total did not change.
//!
//! `--silo NAME --table FILE --store FILE [--members N] [--park-at STEP
//! --armed FILE]` runs one silo process instead: a member of the cluster
//! whose SQLite membership table is `--table`, with transactions stored in
//! the SQLite file `--store` (shared by all the processes). It prints
//! `READY <name> <pid> <endpoint>` once it sees `N` members, and leaves
//! when its stdin closes. With `--park-at` (`before-prepare`,
//! `after-prepare`, `after-commit-record`, `during-confirmation`), the
//! first commit it manages after the file `--armed` appears stops at that
//! step and it prints `PARKED <step> <tx>`, so that a test can kill it
//! there with a signal (`tests/processes.rs`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actor_cluster::SqlMembership;
use actor_tx::{PostgresTxStorage, SqliteTxStorage, Step, StepHook, TransactionalStorage};
use anyhow::Context;
use example_transactions::{Scenario, play, start_cluster, start_member};

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--silo") {
        return run_silo(&args).await;
    }
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

fn arg(args: &[String], name: &str) -> Option<String> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

fn parse_step(s: &str) -> anyhow::Result<Step> {
    Ok(match s {
        "before-prepare" => Step::BeforePrepare,
        "after-prepare" => Step::AfterPrepare,
        "after-commit-record" => Step::AfterCommitRecord,
        "during-confirmation" => Step::DuringConfirmation,
        other => anyhow::bail!(
            "unknown step `{other}`: before-prepare, after-prepare, after-commit-record or during-confirmation"
        ),
    })
}

/// One silo process (see the crate docs).
async fn run_silo(args: &[String]) -> anyhow::Result<()> {
    let name = arg(args, "--silo").context("--silo needs a name")?;
    let table = PathBuf::from(arg(args, "--table").context("--silo needs --table FILE")?);
    let store = PathBuf::from(arg(args, "--store").context("--silo needs --store FILE")?);
    let members: usize = match arg(args, "--members") {
        Some(n) => n.parse().context("--members takes a number")?,
        None => 1,
    };
    let hook = match arg(args, "--park-at") {
        Some(step) => {
            let step = parse_step(&step)?;
            let armed =
                PathBuf::from(arg(args, "--armed").context("--park-at needs --armed FILE")?);
            let parked = Arc::new(AtomicBool::new(false));
            let hook: StepHook = Arc::new(move |at, tx| {
                let hit = at == step && armed.exists() && !parked.swap(true, Ordering::SeqCst);
                Box::pin(async move {
                    if hit {
                        println!("PARKED {at:?} {tx}");
                        let _ = std::io::stdout().flush();
                        // Stopped here until the process is killed.
                        std::future::pending::<()>().await;
                    }
                })
            });
            Some(hook)
        }
        None => None,
    };
    let membership = SqlMembership::connect(
        &format!("sqlite://{}", table.display()),
        "bank",
        Duration::from_secs(5),
    )
    .await
    .with_context(|| format!("opening the membership table {}", table.display()))?;
    let storage = SqliteTxStorage::open(&store).await?;
    let member = start_member(&name, Arc::new(membership), Arc::new(storage), hook).await?;
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    while member.active_members().len() < members {
        anyhow::ensure!(
            tokio::time::Instant::now() < until,
            "{name}: {} of {members} silos active after 60 s",
            member.active_members().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "READY {name} {} {}",
        std::process::id(),
        member.address().endpoint
    );
    let _ = std::io::stdout().flush();
    // Until the parent closes stdin (or goes away).
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await?;
    member.leave().await?;
    Ok(())
}
