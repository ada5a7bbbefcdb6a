//! Stopping silo processes with signals, as a terminal (SIGINT) or a
//! process manager (SIGTERM) does: the silo leaves the cluster gracefully
//! (its row goes to dead by its own hand, with no suspicion votes) and the
//! process exits 0, even while its stdin stays open.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use actor_cluster::SiloStatus;
use example_hosting::{READY, sqlite_table};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const EXE: &str = env!("CARGO_BIN_EXE_example-hosting");
/// Starting a silo process (on a loaded machine).
const START: Duration = Duration::from_secs(60);
/// From the signal to the process's exit. A graceful leave takes tens of
/// milliseconds; failure detection (what a crash costs) is not awaited.
const STOP: Duration = Duration::from_secs(20);

struct Silo {
    child: Child,
    /// Held apart from `child`: `Child::wait` would close it.
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    endpoint: String,
}

/// Starts the binary with `args`, stdin piped (and held open by the
/// returned [`Silo`] until it is dropped) or null, and waits for the line that names its silo's
/// endpoint: the word `skip` words after `marker`.
async fn start(args: &[&str], table: &Path, stdin: Stdio, marker: &str, skip: usize) -> Silo {
    let mut child = Command::new(EXE)
        .args(args)
        .arg("--table")
        .arg(table)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let endpoint = tokio::time::timeout(START, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("child exited");
            let words: Vec<_> = line.split_whitespace().collect();
            if let Some(i) = words.iter().position(|w| *w == marker) {
                return words[i + skip].trim_end_matches(';').to_owned();
            }
        }
    })
    .await
    .expect("the silo process serves in time");
    Silo {
        child,
        stdin,
        lines,
        endpoint,
    }
}

fn send(child: &Child, signal: &str) {
    let pid = child.id().expect("still running").to_string();
    let status = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// Sends `signal`, then checks that the process exits 0 within [`STOP`],
/// says it left, and that the table shows it left by itself. Returns what
/// it printed after the signal.
async fn stop_with(mut silo: Silo, signal: &str, table: &Path) -> Vec<String> {
    send(&silo.child, signal);
    let sent = Instant::now();
    let status = tokio::time::timeout(STOP, silo.child.wait())
        .await
        .unwrap_or_else(|_| panic!("still running {STOP:?} after {signal}"))
        .unwrap();
    drop(silo.stdin.take()); // open until the process is gone
    assert!(status.success(), "exit after {signal}: {status}");
    eprintln!("exited {:?} after {signal}", sent.elapsed());
    let mut rest = Vec::new();
    while let Ok(Some(line)) = silo.lines.next_line().await {
        rest.push(line);
    }

    let snapshot = sqlite_table(table).await.unwrap().read_all().await.unwrap();
    let (row, _) = snapshot
        .entries
        .iter()
        .find(|(e, _)| e.silo.endpoint == silo.endpoint)
        .unwrap_or_else(|| panic!("no row for {} in {snapshot:?}", silo.endpoint));
    // Alone in its table, nobody else could have declared it dead.
    assert_eq!(row.status, SiloStatus::Dead, "{row:?}");
    assert!(row.suspicions.is_empty(), "{row:?}");
    rest
}

async fn a_standalone_silo_with_stdin_open_leaves_and_exits_on(signal: &str, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("membership.db");
    let args = ["--standalone", "--fast", "--exit-on-eof"];
    // READY <pid> <endpoint>
    let silo = start(&args, &table, Stdio::piped(), READY, 2).await;
    // Its stdin stays open until it has exited: only the signal can stop
    // it.
    assert!(silo.stdin.is_some());
    let rest = stop_with(silo, signal, &table).await;
    assert!(
        rest.iter()
            .any(|l| l.contains("left the cluster after hosting 0 grains") && l.contains(name)),
        "{rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_a_graceful_leave_and_the_process_exits() {
    a_standalone_silo_with_stdin_open_leaves_and_exits_on("-TERM", "SIGTERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_makes_the_process_exit_though_its_stdin_stays_open() {
    a_standalone_silo_with_stdin_open_leaves_and_exits_on("-INT", "SIGINT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_standalone_silo_that_ignores_its_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("membership.db");
    let silo = start(&["--standalone", "--fast"], &table, Stdio::null(), READY, 2).await;
    let rest = stop_with(silo, "-TERM", &table).await;
    assert!(
        rest.iter().any(|l| l.contains("left the cluster")),
        "{rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_web_app_and_its_silo_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("membership.db");
    // "serving on http://ADDR (GET /hello/NAME); cluster gateway ENDPOINT; ..."
    let args = ["--serve", "--fast", "--port", "0"];
    let silo = start(&args, &table, Stdio::piped(), "gateway", 1).await;
    let rest = stop_with(silo, "-TERM", &table).await;
    assert!(
        rest.iter()
            .any(|l| l.contains("left the cluster") && l.contains("SIGTERM")),
        "{rest:?}"
    );
}
