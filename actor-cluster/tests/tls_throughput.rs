//! Remote call throughput with mutual TLS beside plain TCP, in the same
//! run: a measurement to read, not a test (it asserts nothing about
//! speed). Run it optimized:
//!
//! ```text
//! cargo test --release -p actor-cluster --test tls_throughput -- --ignored --nocapture
//! ```
//!
//! Two silos on loopback; the caller keeps 64 asks in flight to grains
//! that live on the other silo. The figures in BENCHMARKS.md come from the
//! benches' `remote/tls_*` scenarios (`cargo run --release -p benches --
//! --only remote/tls`: two processes, interleaved runs); this is a quick
//! check of the same ratio inside one process, through `ClusterSilo`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actor_cluster::{ClusterConfig, ClusterSilo, InMemoryMembership, MembershipTable, TlsConfig};
use actor_core::prelude::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::net::TcpListener;

/// Echoes a number.
#[derive(Default)]
pub struct Echo;

impl Grain for Echo {
    const TYPE_NAME: &'static str = "echo";
}

#[grain_methods]
impl Echo {
    /// Returns `n`.
    pub async fn echo(&mut self, n: u64) -> u64 {
        n
    }
}

fn tls() -> (TlsConfig, TlsConfig) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = || {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["silo.bench".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap().pem();
        TlsConfig::from_pem(
            ca_pem.as_bytes(),
            cert.as_bytes(),
            key.serialize_pem().as_bytes(),
        )
        .unwrap()
        .with_server_name("silo.bench")
    };
    (leaf(), leaf())
}

/// Calls per second with 64 in flight, over `calls` calls.
async fn run(tls: Option<(TlsConfig, TlsConfig)>, calls: u64) -> f64 {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let config = |t: Option<TlsConfig>| match t {
        Some(t) => ClusterConfig::fast().with_tls(t),
        None => ClusterConfig::fast(),
    };
    let (ta, tb) = match tls {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    };
    let mut silos = Vec::new();
    for (name, t) in [("a", ta), ("b", tb)] {
        silos.push(
            ClusterSilo::start(
                Silo::builder().name(name).grain::<Echo>(),
                TcpListener::bind("127.0.0.1:0").await.unwrap(),
                table.clone(),
                config(t),
            )
            .await
            .unwrap(),
        );
    }
    while silos.iter().any(|s| s.active_members().len() < 2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (a, b) = (&silos[0], &silos[1]);
    let remote: Vec<i64> = (0..10_000i64)
        .filter(|k| a.owner_of(&GrainId::new("echo", *k)) == b.address().endpoint)
        .take(64)
        .collect();
    // Warm up: activate the grains and open the links.
    for k in &remote {
        a.silo().get_grain::<Echo>(*k).echo(0).await.unwrap();
    }
    let start = Instant::now();
    let per_caller = calls / remote.len() as u64;
    let callers: Vec<_> = remote
        .iter()
        .map(|k| {
            let g = a.silo().get_grain::<Echo>(*k);
            tokio::spawn(async move {
                for n in 0..per_caller {
                    assert_eq!(g.echo(n).await.unwrap(), n);
                }
            })
        })
        .collect();
    for c in callers {
        c.await.unwrap();
    }
    let rate = (per_caller * remote.len() as u64) as f64 / start.elapsed().as_secs_f64();
    for s in silos {
        s.leave().await.unwrap();
    }
    rate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it with --release --ignored --nocapture"]
async fn remote_throughput_with_and_without_tls() {
    let calls = std::env::var("TLS_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let mut plain = Vec::new();
    let mut tls_on = Vec::new();
    for _ in 0..2 {
        plain.push(run(None, calls).await);
        tls_on.push(run(Some(tls()), calls).await);
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "64 in flight, {calls} calls: plain {:.0} calls/s, TLS {:.0} calls/s (best of 2 each): TLS at {:.2}x",
        best(&plain),
        best(&tls_on),
        best(&tls_on) / best(&plain)
    );
}
