//! Two `silo` processes on one SQLite membership table: a client outside
//! calls ledgers on both, SIGTERM makes one leave cleanly (its row goes
//! to dead by its own hand, without suspicion votes, and the process
//! exits 0), and the ledgers it hosted go on, their stored appends intact,
//! on the other. A bad configuration exits with status 2 and one line
//! saying what is wrong.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use actor_cluster::{ClusterClient, MembershipTable, SiloStatus, SqlMembership};
use actor_silo::{EXIT_CONFIG, LedgerRef, READY};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const EXE: &str = env!("CARGO_BIN_EXE_silo");
/// Starting a process on a loaded machine.
const START: Duration = Duration::from_secs(60);

struct Proc {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    endpoint: String,
    health: String,
}

fn write_config(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        r#"
name = "{name}"
listen = "127.0.0.1:0"
cluster_id = "silo-test"

[membership]
url = "sqlite://{m}"

[storage.default]
url = "sqlite://{s}"

[health]
bind = "127.0.0.1:0"
"#,
        m = dir.join("membership.db").display(),
        s = dir.join("state.db").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn start(config: &Path) -> Proc {
    let mut child = Command::new(EXE)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (endpoint, health) = tokio::time::timeout(START, async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("silo exited before READY");
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.first() == Some(&READY) {
                return (w[3].to_owned(), w[4].to_owned());
            }
        }
    })
    .await
    .expect("the silo serves in time");
    Proc {
        child,
        lines,
        endpoint,
        health,
    }
}

/// `GET path` over HTTP/1.0: the status code.
async fn http_status(addr: &str, path: &str) -> u16 {
    let (addr, path) = (addr.to_owned(), path.to_owned());
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.get(9..12).and_then(|s| s.parse().ok()).unwrap()
    })
    .await
    .unwrap()
}

async fn table(dir: &Path) -> SqlMembership {
    let url = format!("sqlite://{}", dir.join("membership.db").display());
    SqlMembership::connect(&url, "silo-test", Duration::from_secs(5))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_silo_processes_serve_a_client_and_one_leaves_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(&write_config(dir.path(), "a")).await;
    let mut b = start(&write_config(dir.path(), "b")).await;
    assert_ne!(a.endpoint, b.endpoint);

    // Both become ready: serving and in the active view.
    for p in [&a, &b] {
        assert_eq!(http_status(&p.health, "/livez").await, 200);
        let t = Instant::now();
        while http_status(&p.health, "/readyz").await != 200 {
            assert!(t.elapsed() < START, "{} never ready", p.endpoint);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Both see both before the client's calls place any ledger.
    let t = Instant::now();
    loop {
        let snap = table(dir.path()).await.read_all().await.unwrap();
        if snap.with_status(SiloStatus::Active).count() == 2 {
            break;
        }
        assert!(t.elapsed() < START, "never two active silos: {snap:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let client = ClusterClient::connect(vec![a.endpoint.clone()], Duration::from_millis(500))
        .await
        .unwrap();
    // a's view has both (the gateways it tells the client are its view).
    let t = Instant::now();
    while client.gateways().len() < 2 {
        assert!(
            t.elapsed() < START,
            "a never saw b: {:?}",
            client.gateways()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Enough ledgers that hash placement puts some on each silo; calls
    // may still see the second silo joining the client's view, so retry.
    let mut on_b = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for i in 0..40u64 {
        let key = format!("ledger-{i}");
        let ledger = client.get_grain::<actor_silo::Ledger>(key.clone());
        let appended = ledger.append(i).await.unwrap().unwrap();
        seen.insert(appended.silo.clone());
        if appended.silo == "b" {
            on_b.push((key, i));
        }
    }
    assert_eq!(seen.len(), 2, "ledgers on both silos: {seen:?}");

    // SIGTERM to b: it leaves and exits 0.
    let pid = b.child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(30), b.child.wait())
        .await
        .expect("b exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    while let Ok(Some(_)) = b.lines.next_line().await {}
    let snap = table(dir.path()).await.read_all().await.unwrap();
    let (row, _) = snap
        .entries
        .iter()
        .find(|(e, _)| e.silo.endpoint == b.endpoint)
        .expect("b's row");
    assert_eq!(row.status, SiloStatus::Dead, "{row:?}");
    assert!(
        row.suspicions.is_empty(),
        "left by itself, not voted dead: {row:?}"
    );

    // b's ledgers move to a with their stored appends.
    for (key, op) in on_b {
        let ledger = client.get_grain::<actor_silo::Ledger>(key.clone());
        let t = Instant::now();
        let appended = loop {
            match ledger.append(op + 1000).await {
                Ok(Ok(x)) => break x,
                Ok(Err(e)) => panic!("{key}: the append failed: {e}"),
                // The client may still route to b for a moment.
                Err(e) => {
                    assert!(t.elapsed() < START, "{key}: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        assert_eq!(appended.silo, "a");
        assert_eq!(ledger.ops().await.unwrap(), vec![op, op + 1000], "{key}");
    }
    drop(a);
}

async fn failing_start(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(EXE);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(START, cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{out:?}");
    assert!(out.stdout.is_empty(), "no READY line: {out:?}");
    String::from_utf8(out.stderr).unwrap()
}

#[tokio::test]
async fn a_bad_configuration_exits_2_saying_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let err = failing_start(&["--config", "/nonexistent/silo.toml"], &[]).await;
    assert!(
        err.contains("cannot read the configuration file /nonexistent/silo.toml"),
        "{err}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\n[membership\n").unwrap();
    let err = failing_start(&["--config", bad.to_str().unwrap()], &[]).await;
    assert!(err.contains("line 2"), "{err}");

    let err = failing_start(&["--confg", "x"], &[]).await;
    assert!(err.contains("unknown argument `--confg`"), "{err}");

    let err = failing_start(&[], &[]).await;
    assert!(err.contains("SILO_MEMBERSHIP_URL"), "{err}");

    let good = write_config(dir.path(), "c");
    let err = failing_start(
        &["--config", good.to_str().unwrap()],
        &[("SILO_LISTEN", "0.0.0.0:0")],
    )
    .await;
    assert!(err.contains("advertise"), "{err}");

    // The database cannot be reached: said, with the password hidden.
    let err = failing_start(
        &["--config", good.to_str().unwrap()],
        &[
            (
                "SILO_MEMBERSHIP_URL",
                "postgres://u:hunter2@127.0.0.1:1/none",
            ),
            ("SILO_PROFILE", "fast"),
        ],
    )
    .await;
    assert!(err.contains("membership"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = failing_start(
        &["--config", good.to_str().unwrap()],
        &[("SILO_HEALTH_BIND", addr.as_str())],
    )
    .await;
    assert!(
        err.contains("health endpoints") && err.contains(&addr),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_alone_configures_a_silo_with_its_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let mut child = Command::new(EXE)
        .env("SILO_MEMBERSHIP_URL", &url)
        .env("SILO_NAME", "env-only")
        .env("SILO_LISTEN", "127.0.0.1:0")
        .env("SILO_HEALTH_BIND", "off")
        .env("SILO_DASHBOARD", "on")
        .env("SILO_DASHBOARD_BIND", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let words: Vec<String> = tokio::time::timeout(START, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("silo exited");
            if line.starts_with(READY) {
                return line.split_whitespace().map(str::to_owned).collect();
            }
        }
    })
    .await
    .unwrap();
    // READY <name> <pid> <endpoint> <health> <dashboard>
    assert_eq!(words[1], "env-only");
    assert_eq!(words[4], "-", "health endpoints off");
    let dash = words[5]
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    assert_eq!(http_status(&dash, "/").await, 200, "the dashboard serves");
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}
