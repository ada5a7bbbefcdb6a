//! A silo's port under clients that flood it or open connections and say
//! nothing: one address gets at most its cap of connections, a
//! connection that never starts speaking HTTP/2 or falls silent is
//! closed, links without calls stay open, and a silo out of file
//! descriptors backs off instead of spinning, then serves again.
//!
//! The file-descriptor test re-runs this test binary as the silo process
//! (the ignored test `silo_process`) under `prlimit --nofile=64`.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use actor_cluster::{
    ClusterClient, ClusterConfig, ClusterSilo, ConnectionLimits, InMemoryMembership, Link,
    LinkOptions,
};
use actor_core::EncodedCall;
use actor_core::prelude::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const BOUND: Duration = Duration::from_secs(60);
const SILO_ENV: &str = "CONNECTION_LIMITS_SILO";

async fn bounded<F: Future>(f: F) -> F::Output {
    common::bounded(BOUND, f).await
}

/// Counts its calls.
#[derive(Default)]
pub struct Counter {
    calls: u64,
}

impl Grain for Counter {
    const TYPE_NAME: &'static str = "counter";
}

#[grain_methods]
impl Counter {
    /// Counts a call.
    pub async fn hit(&mut self) -> u64 {
        self.calls += 1;
        self.calls
    }
}

/// A one-silo cluster on a fresh loopback port, serving under `limits`.
async fn silo(limits: ConnectionLimits) -> ClusterSilo {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = ClusterConfig::fast();
    config.connections = limits;
    ClusterSilo::start(
        Silo::builder().name("s").grain::<Counter>(),
        listener,
        Arc::new(InMemoryMembership::new()),
        config,
    )
    .await
    .unwrap()
}

/// Whether the peer closes `stream` within `within` (reading and
/// discarding what it sends meanwhile, such as its HTTP/2 settings).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut sink = [0u8; 512];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Calls a grain through a fresh client, retrying for up to `within`
/// (the silo frees a closed connection's slot as it notices the close).
async fn serves_within(endpoint: &str, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        match ClusterClient::connect(vec![endpoint.to_owned()], Duration::from_secs(1)).await {
            Ok(client) => match client.get_grain::<Counter>("c").hit().await {
                Ok(n) => return n,
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the silo at {endpoint} did not serve within {within:?}: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_holding_its_cap_gets_further_connections_closed() {
    bounded(async {
        const CAP: usize = 8;
        let s = silo(ConnectionLimits {
            max_per_address: CAP,
            handshake_timeout: Duration::from_secs(60),
            ..ConnectionLimits::default()
        })
        .await;
        let endpoint = s.address().endpoint.clone();
        let mut raw = Vec::new();
        for _ in 0..CAP + 4 {
            raw.push(TcpStream::connect(&endpoint).await.unwrap());
            // In order: the first ones take the slots.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let closed = futures::future::join_all(
            raw.iter_mut()
                .map(|stream| closed_within(stream, Duration::from_millis(1500))),
        )
        .await;
        let open = closed.iter().filter(|c| !**c).count();
        assert!(
            open <= CAP && closed.iter().filter(|c| **c).count() >= 4,
            "{CAP} connections at most stay open: {closed:?}"
        );
        assert!(
            closed[CAP..].iter().all(|c| *c),
            "the connections past the cap are the ones closed: {closed:?}"
        );

        // Once they go, the address is served again.
        drop(raw);
        assert_eq!(serves_within(&endpoint, Duration::from_secs(10)).await, 1);
        s.leave().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_speaks_http2_is_closed_after_the_handshake_timeout() {
    bounded(async {
        let timeout = Duration::from_millis(500);
        let s = silo(ConnectionLimits {
            handshake_timeout: timeout,
            ..ConnectionLimits::default()
        })
        .await;
        let endpoint = s.address().endpoint.clone();
        // A client connected before stays served: its handshake is done.
        let client = ClusterClient::connect(vec![endpoint.clone()], Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(client.get_grain::<Counter>("c").hit().await.unwrap(), 1);

        let started = Instant::now();
        let mut silent = TcpStream::connect(&endpoint).await.unwrap();
        let mut partial = TcpStream::connect(&endpoint).await.unwrap();
        partial.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        assert!(
            closed_within(&mut silent, Duration::from_secs(5)).await,
            "a connection that sends nothing is closed"
        );
        assert!(
            started.elapsed() >= timeout - Duration::from_millis(100),
            "not before its handshake timeout: {:?}",
            started.elapsed()
        );
        assert!(
            closed_within(&mut partial, Duration::from_secs(5)).await,
            "a connection that sends part of the preface is closed"
        );

        assert_eq!(client.get_grain::<Counter>("c").hit().await.unwrap(), 2);
        s.leave().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_falls_silent_is_closed_after_the_idle_timeout() {
    bounded(async {
        let idle = Duration::from_millis(600);
        let s = silo(ConnectionLimits {
            idle_timeout: idle,
            ..ConnectionLimits::default()
        })
        .await;
        let endpoint = s.address().endpoint.clone();
        // The HTTP/2 preface and an empty SETTINGS frame, then nothing:
        // not even answers to the server's pings. Keepalive alone would
        // close it after its interval and timeout (about 3 s).
        let mut quiet = TcpStream::connect(&endpoint).await.unwrap();
        quiet
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        let started = Instant::now();
        assert!(
            closed_within(&mut quiet, Duration::from_secs(5)).await,
            "a silent connection is closed"
        );
        let took = started.elapsed();
        assert!(
            took >= idle - Duration::from_millis(100) && took < Duration::from_millis(2500),
            "by the idle timeout ({idle:?}), not by keepalive: {took:?}"
        );
        s.leave().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_without_calls_is_not_idle() {
    bounded(async {
        // Above the 1 s keepalive interval, as every idle timeout must be.
        let idle = Duration::from_secs(2);
        let s = silo(ConnectionLimits {
            idle_timeout: idle,
            ..ConnectionLimits::default()
        })
        .await;
        let endpoint = s.address().endpoint.clone();
        let link = Link::connect(&endpoint, LinkOptions::default())
            .await
            .unwrap();
        // No call for three idle timeouts: the keepalive pings and their
        // answers keep the link open.
        tokio::time::sleep(idle * 3).await;
        assert!(link.is_alive(), "a link without calls stays open");
        let hit = actor_core::__private::codec::encode(&CounterHit {}).unwrap();
        let reply = link
            .call(EncodedCall::new(
                GrainId::new("counter", "l"),
                "hit",
                hit,
                Duration::from_secs(5),
            ))
            .await
            .unwrap();
        assert_eq!(
            actor_core::__private::codec::decode::<u64>(&reply).unwrap(),
            1
        );
        s.leave().await.unwrap();
    })
    .await;
}

/// The clock ticks of `/proc/<pid>/stat` per second (`USER_HZ`).
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User plus system CPU time of process `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name, in parentheses: state is field 3, utime
    // and stime fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silo_out_of_file_descriptors_backs_off_and_serves_again() {
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "prlimit (util-linux) is missing"
        );
        eprintln!("skipped: prlimit (util-linux) is missing");
        return;
    }
    bounded(async {
        const NOFILE: usize = 64;
        let exe = std::env::current_exe().unwrap();
        let mut child = tokio::process::Command::new("prlimit")
            .arg(format!("--nofile={NOFILE}"))
            .arg(&exe)
            .args(["silo_process", "--exact", "--ignored", "--nocapture"])
            .env(SILO_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (pid, endpoint) = loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the silo process ended before it was ready");
            if let Some(rest) = line.strip_prefix("READY ") {
                let (pid, endpoint) = rest.split_once(' ').unwrap();
                break (pid.parse::<u32>().unwrap(), endpoint.to_owned());
            }
        };
        assert_eq!(serves_within(&endpoint, Duration::from_secs(10)).await, 1);

        // More connections than it has descriptors for; they say nothing.
        let mut flood = Vec::new();
        for _ in 0..NOFILE * 2 {
            flood.push(TcpStream::connect(&endpoint).await.unwrap());
        }
        let full = Instant::now() + Duration::from_secs(10);
        while open_fds(pid) < NOFILE - 4 && Instant::now() < full {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            open_fds(pid) >= NOFILE - 4,
            "the flood takes the silo's descriptors: {} open",
            open_fds(pid)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let window = Duration::from_secs(3);
        let (before, at) = (cpu_ticks(pid), Instant::now());
        tokio::time::sleep(window).await;
        let used = (cpu_ticks(pid) - before) as f64 / clock_ticks_per_second();
        let share = used / at.elapsed().as_secs_f64();
        assert!(
            share < 0.3,
            "out of descriptors, the silo used {:.0}% of a core",
            share * 100.0
        );

        // The flood goes; the silo serves again.
        drop(flood);
        assert_eq!(serves_within(&endpoint, Duration::from_secs(20)).await, 2);
        drop(stdin);
        let status = child.wait().await.unwrap();
        assert!(status.success(), "the silo process failed: {status}");
    })
    .await;
}

/// The silo process of the test above; does nothing when run alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the silo process of a_silo_out_of_file_descriptors_backs_off_and_serves_again"]
async fn silo_process() {
    if std::env::var(SILO_ENV).is_err() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let s = ClusterSilo::start(
        Silo::builder().name("s").grain::<Counter>(),
        listener,
        Arc::new(InMemoryMembership::new()),
        ClusterConfig::default(),
    )
    .await
    .unwrap();
    println!("READY {} {}", std::process::id(), s.address().endpoint);
    // Serves until its stdin closes.
    let mut line = String::new();
    let _ = BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await;
    s.leave().await.unwrap();
}
