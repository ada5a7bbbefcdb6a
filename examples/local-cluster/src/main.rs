//! Run with: cargo run -p example-local-cluster
//!
//! Starts three silo processes on this machine that share a SQLite
//! membership table, each with the dashboard of the whole cluster
//! (<http://127.0.0.1:8080>, `:8081`, `:8082`) and a little steady
//! traffic. Ctrl-C (or SIGTERM to the launcher) stops them all: each silo
//! leaves the cluster cleanly.
//!
//! Options: `--port BASE` (first dashboard port, 8080; 0 picks free
//! ports), `--dir DIR` (where the SQLite file goes; a fresh temporary
//! directory by default). `--silo NAME --table FILE --dashboard ADDR
//! [--wait-for N]` runs one silo (what the launcher starts, with
//! `--wait-for 3`): it starts its traffic once N silos are active (or after
//! 30 s regardless), so that the grains are placed over the whole cluster
//! rather than all on the first silo up; it leaves the cluster and exits on
//! Ctrl-C, on SIGTERM, or when its standard input closes, so that no silo
//! outlives its launcher.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use actor_cluster::{ClusterConfig, ShutdownSignals, stdin_closed};
use anyhow::{Context, bail};
use example_local_cluster::{READY, SILOS, sqlite_table, start_silo, traffic_round};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn arg(args: &[String], name: &str) -> Option<String> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    match arg(&args, "--silo") {
        Some(name) => run_silo(&name, &args).await,
        None => launch(&args).await,
    }
}

/// How long a silo waits for the others before it starts its traffic
/// anyway.
const WAIT_FOR_CLUSTER: Duration = Duration::from_secs(30);

/// One silo process.
async fn run_silo(name: &str, args: &[String]) -> anyhow::Result<()> {
    // Before READY: a stop sent right after it must find the handlers.
    let mut signals = ShutdownSignals::new()?;
    let mut stdin_closed = stdin_closed();
    let table = PathBuf::from(arg(args, "--table").context("--silo needs --table FILE")?);
    let dashboard: SocketAddr = arg(args, "--dashboard")
        .context("--silo needs --dashboard ADDR")?
        .parse()
        .context("--dashboard takes an address such as 127.0.0.1:8080")?;
    let wait_for: usize = match arg(args, "--wait-for") {
        Some(n) => n.parse().context("--wait-for takes a number of silos")?,
        None => 1,
    };
    let member = start_silo(
        name,
        sqlite_table(&table).await?,
        dashboard,
        ClusterConfig::default(),
    )
    .await?;
    let url = dashboard::Dashboard::of(member.silo())
        .map(|d| d.url())
        .unwrap_or_default();
    println!(
        "{READY} {name} {} {} {url}",
        std::process::id(),
        member.address().endpoint
    );
    // Traffic placed while this silo is the only one up would all stay on
    // it (an activation does not move when silos join): wait for the
    // others first.
    let waited = tokio::time::Instant::now();
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    let mut why = loop {
        if member.active_members().len() >= wait_for {
            break None;
        }
        if waited.elapsed() >= WAIT_FOR_CLUSTER {
            eprintln!(
                "{name}: {} of {wait_for} silos active after {WAIT_FOR_CLUSTER:?}; \
                 starting the traffic anyway",
                member.active_members().len()
            );
            break None;
        }
        tokio::select! {
            _ = poll.tick() => {}
            signal = signals.recv() => break Some(signal.name()),
            _ = &mut stdin_closed => break Some("stdin closed"),
        }
    };
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    let mut round = 0;
    while why.is_none() {
        tokio::select! {
            _ = ticker.tick() => {
                traffic_round(member.silo(), round).await;
                round += 1;
            }
            signal = signals.recv() => why = Some(signal.name()),
            // The launcher is gone or asks us to stop.
            _ = &mut stdin_closed => why = Some("stdin closed"),
        }
    }
    member.leave().await?;
    eprintln!("{name} left the cluster ({})", why.unwrap_or_default());
    Ok(())
}

/// The launcher: starts the silos, relays what they say, stops them all.
async fn launch(args: &[String]) -> anyhow::Result<()> {
    let mut signals = ShutdownSignals::new()?;
    let base: u16 = match arg(args, "--port") {
        Some(p) => p.parse().context("--port takes a port number")?,
        None => 8080,
    };
    let (dir, _temp) = match arg(args, "--dir") {
        Some(d) => (PathBuf::from(d), None),
        None => {
            let t =
                std::env::temp_dir().join(format!("grains-local-cluster-{}", std::process::id()));
            (t.clone(), Some(TempDir(t)))
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let table = dir.join("membership.db");
    // A fresh table each run: rows of an earlier run's silos would show
    // as dead members.
    let _ = std::fs::remove_file(&table);
    // Create it once here, so that the silos do not race to.
    drop(sqlite_table(&table).await?);
    let exe = std::env::current_exe().context("finding this program")?;
    println!("membership table: {}", table.display());
    let mut children: Vec<(String, Child)> = Vec::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(64);
    for i in 0..SILOS {
        let name = format!("silo-{i}");
        let port = if base == 0 { 0 } else { base + i as u16 };
        let mut child = Command::new(&exe)
            .args(["--silo", &name, "--table"])
            .arg(&table)
            .args(["--dashboard", &format!("127.0.0.1:{port}")])
            .args(["--wait-for", &SILOS.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        });
        children.push((name, child));
    }
    drop(tx);
    let mut ready = 0;
    let mut poll = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some(line) => {
                    println!("{line}");
                    if line.starts_with(READY) {
                        ready += 1;
                        if ready == SILOS {
                            println!("all {SILOS} silos serve; open a dashboard above. Ctrl-C stops them all.");
                        }
                    }
                }
                None => break,
            },
            _ = poll.tick() => {
                for (name, child) in &mut children {
                    if let Ok(Some(status)) = child.try_wait()
                        && child.stdin.is_some()
                    {
                        println!("{name} exited ({status}); the others go on");
                        child.stdin = None;
                    }
                }
                if children.iter().all(|(_, c)| c.stdin.is_none()) {
                    break;
                }
            }
            _ = signals.recv() => break,
        }
    }
    println!("stopping the silos…");
    for (_, child) in &mut children {
        child.stdin = None; // EOF: the silo leaves the cluster
    }
    let mut failed = false;
    for (name, mut child) in children {
        match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
            Ok(Ok(_)) => {}
            _ => {
                eprintln!("{name} did not stop in time; killing it");
                let _ = child.kill().await;
                failed = true;
            }
        }
    }
    if failed {
        bail!("some silos had to be killed");
    }
    println!("all silos stopped");
    Ok(())
}

/// Removes the launcher's temporary directory when it ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
