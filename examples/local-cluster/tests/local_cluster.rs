//! The one command starts three silo processes that see each other; the
//! dashboard of one shows all three, each hosting some of the traffic's
//! grains; a killed silo process is shown dead within the
//! failure-detection time; Ctrl-C (SIGINT) to the launcher stops the rest
//! cleanly. A silo process given SIGINT or SIGTERM leaves the cluster and
//! exits, though its launcher still holds its stdin open.

use std::process::Stdio;
use std::time::{Duration, Instant};

use actor_cluster::SiloStatus;
use example_local_cluster::{READY, SILOS, sqlite_table};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_example-local-cluster");

/// `GET path` over plain HTTP/1.0: (status, body).
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {out}")))?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_owned();
    Ok((status, body))
}

async fn api(addr: &str, path: &str) -> Option<serde_json::Value> {
    let (addr, path) = (addr.to_owned(), path.to_owned());
    let (status, body) = tokio::task::spawn_blocking(move || http_get(&addr, &path))
        .await
        .unwrap()
        .ok()?;
    (status == 200).then(|| serde_json::from_str(&body).unwrap())
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_one_dashboard_a_kill_is_seen_and_ctrl_c_stops_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut launcher = Command::new(EXE)
        .args(["--port", "0", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(launcher.stdout.take().unwrap()).lines();
    // READY <name> <pid> <endpoint> <dashboard url>
    let mut silos: Vec<(String, u32, String)> = Vec::new();
    tokio::time::timeout(Duration::from_secs(90), async {
        while silos.len() < SILOS {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("launcher exited early");
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.first() == Some(&READY) {
                let host = w[4].trim_start_matches("http://").trim_end_matches('/');
                silos.push((w[1].to_owned(), w[2].parse().unwrap(), host.to_owned()));
            }
        }
    })
    .await
    .expect("three silos ready within 90 s");
    silos.sort();
    let pids: Vec<u32> = silos.iter().map(|s| s.1).collect();
    assert!(pids.iter().all(|p| *p != std::process::id()));
    assert_eq!(
        pids.iter().collect::<std::collections::HashSet<_>>().len(),
        3,
        "three processes"
    );
    let dash = silos[0].2.clone();

    // silo-0's dashboard shows all three, active, with traffic.
    let start = Instant::now();
    loop {
        if let Some(s) = api(&dash, "/api/snapshot").await {
            let active = s["silos"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|v| v["status"] == "active" && v["reachable"] == true)
                .count();
            if active == 3 && s["overview"]["calls_per_sec"].as_f64().unwrap() > 0.0 {
                let names: Vec<_> = s["silos"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v["name"].clone())
                    .collect();
                assert_eq!(names.len(), 3, "{names:?}");
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the dashboard never showed three active silos"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The traffic's grains are spread over the cluster: every silo hosts
    // some (not all on the first silo up).
    let start = Instant::now();
    loop {
        let s = api(&dash, "/api/snapshot").await;
        let hosted: Vec<(String, u64)> = s
            .iter()
            .flat_map(|s| s["silos"].as_array().unwrap())
            .map(|v| {
                let name = v["name"].as_str().unwrap().to_owned();
                (name, v["activations"].as_u64().unwrap_or(0))
            })
            .collect();
        if hosted.len() == SILOS && hosted.iter().all(|(_, n)| *n > 0) {
            eprintln!("activations per silo: {hosted:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the traffic's grains are not on every silo: {hosted:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Kill silo-2's process outright.
    let (victim, victim_pid, _) = silos[2].clone();
    signal(victim_pid, "-9");
    let killed = Instant::now();
    // Default detection: 3 missed probes of 1 s, a probe timeout of 1 s,
    // then a vote; plus one dashboard refresh. Bounded with slack for a
    // loaded machine.
    let detection = Duration::from_secs(3 + 1 + 1);
    let bound = detection + Duration::from_secs(10);
    loop {
        if let Some(v) = api(&dash, &format!("/api/silos/{victim}")).await
            && v["status"] == "dead"
        {
            break;
        }
        assert!(
            killed.elapsed() < bound,
            "{victim} not shown dead within {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{victim} shown dead {:?} after the kill (detection ~{detection:?})",
        killed.elapsed()
    );
    let history = api(&dash, "/api/membership").await.unwrap();
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["silo"] == victim.as_str() && e["event"] == "dead"),
        "{history}"
    );

    // Ctrl-C to the launcher: the two others leave and everything exits.
    signal(launcher.id().unwrap(), "-INT");
    let mut said_stopped = false;
    let status = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            said_stopped |= line.contains("all silos stopped");
        }
        launcher.wait().await.unwrap()
    })
    .await
    .expect("the launcher stops within 60 s");
    assert!(status.success(), "launcher exit: {status}");
    assert!(said_stopped);
    for pid in pids {
        assert!(!alive(pid), "silo process {pid} outlived the launcher");
    }
}

/// Starts one silo process on its own table, sends it `sig` while its
/// stdin is still open (as the launcher holds it), and checks that it
/// exits 0 in time and that its row says it left by itself.
async fn a_silo_leaves_and_exits_on(sig: &str, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("membership.db");
    let mut child = Command::new(EXE)
        .args(["--silo", name, "--table"])
        .arg(&table)
        .args(["--dashboard", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Held apart from the child: `Child::wait` would close it.
    let stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // READY <name> <pid> <endpoint> <dashboard url>
    let (pid, endpoint) = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let line = lines.next_line().await.unwrap().expect("silo exited early");
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.first() == Some(&READY) {
                return (w[2].parse::<u32>().unwrap(), w[3].to_owned());
            }
        }
    })
    .await
    .expect("the silo serves within 60 s");

    signal(pid, sig);
    let sent = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap_or_else(|_| panic!("{name} still running 20 s after kill {sig}"))
        .unwrap();
    drop(stdin);
    assert!(status.success(), "{name} after kill {sig}: {status}");
    eprintln!("{name} exited {:?} after kill {sig}", sent.elapsed());
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert!(
        stderr.contains(&format!("{name} left the cluster")),
        "{stderr}"
    );

    let snapshot = sqlite_table(&table)
        .await
        .unwrap()
        .read_all()
        .await
        .unwrap();
    let (row, _) = snapshot
        .entries
        .iter()
        .find(|(e, _)| e.silo.endpoint == endpoint)
        .unwrap_or_else(|| panic!("no row for {endpoint}: {snapshot:?}"));
    // Alone in its table, nobody else could have declared it dead.
    assert_eq!(row.status, SiloStatus::Dead, "{row:?}");
    assert!(row.suspicions.is_empty(), "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silo_process_leaves_and_exits_on_sigint() {
    a_silo_leaves_and_exits_on("-INT", "silo-int").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silo_process_leaves_and_exits_on_sigterm() {
    a_silo_leaves_and_exits_on("-TERM", "silo-term").await;
}
