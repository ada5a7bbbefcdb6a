//! Run with: cargo run -p example-microservices
//!
//! Starts silo `a` in this process and silo `b` as a child process (this
//! same binary with `--silo b --table <file>`), both members of one
//! cluster whose membership table is a SQLite file in a temporary
//! directory. Once both see each other, plays calls whose grains live in
//! the other process and prints which process answered each, then stops
//! the child cleanly. `--fast` uses the test timings.

use std::time::Duration;

use example_microservices::{ChildSilo, Options, play, run_child, start_silo, wait_for_members};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse(std::env::args().skip(1))?;
    if let Some(name) = &options.silo {
        let table = options
            .table
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("--silo needs --table <file>"))?;
        return run_child(name, table, options.members, options.config()).await;
    }

    let dir = tempfile::tempdir()?;
    let table = dir.path().join("membership.db");
    let a = start_silo("a", &table, options.config()).await?;
    println!(
        "silo a: pid {}, endpoint {}, membership table {}",
        std::process::id(),
        a.address().endpoint,
        table.display()
    );
    let exe = std::env::current_exe()?;
    let b = ChildSilo::spawn(&exe, "b", &table, options.fast, 2, Duration::from_secs(30)).await?;
    wait_for_members(&a, 2, Duration::from_secs(30)).await?;
    println!(
        "silo b: pid {} (child process), endpoint {}",
        b.pid, b.endpoint
    );
    println!("both silos see each other: {:?}\n", a.active_members());

    let exchanges = play(&a, &b.endpoint).await?;
    for ex in &exchanges {
        println!("{ex}");
    }
    // Each exchange is two calls: this process -> order grain -> stock grain.
    let me = std::process::id();
    let crossed: usize = exchanges
        .iter()
        .map(|ex| {
            usize::from(ex.placed.by.pid != me)
                + usize::from(ex.placed.by.pid != ex.placed.stock.by.pid)
        })
        .sum();
    let from_b = exchanges
        .iter()
        .flat_map(|ex| [&ex.placed.by, &ex.placed.stock.by])
        .filter(|origin| origin.silo == "b")
        .all(|origin| origin.pid == b.pid);
    anyhow::ensure!(
        from_b,
        "a grain placed on silo b answered from another process"
    );
    println!(
        "\n{crossed} of {} calls crossed between the processes; every grain on silo b answered from pid {}",
        exchanges.len() * 2,
        b.pid
    );

    let (status, said) = b.stop(Duration::from_secs(20)).await?;
    for line in said {
        println!("child: {line}");
    }
    println!("child exited with {status}");
    a.leave().await?;
    anyhow::ensure!(status.success(), "the child silo failed: {status}");
    Ok(())
}
