//! One chaos run, start to end: network, silos, clients, driver, the
//! nemesis's schedule with its measurements, then the oracles.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actor_cluster::__private::now_millis;
use actor_cluster::{ClusterClient, MembershipTable, SiloAddress, SiloStatus, SqlMembership};

use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::net::{Network, NetworkMode};
use crate::oracle;
use crate::report::{FaultFigures, Report};
use crate::schedule::{self, Fault, FaultKind};
use crate::silo::SiloProc;

/// What a run does.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChaosConfig {
    /// Silo processes (1 to 5).
    pub silos: usize,
    /// Ledger grains the driver calls.
    pub grains: usize,
    /// Concurrent calls of the driver.
    pub workers: usize,
    /// The seed of the schedule and of the driver's choices.
    pub seed: u64,
    /// The kinds of fault to draw from.
    pub faults: Vec<FaultKind>,
    /// How many faults.
    pub fault_count: usize,
    /// PostgreSQL, for membership and storage (from the harness's side).
    pub database_url: String,
    /// The program (and leading arguments) that runs one silo.
    pub silo_command: Vec<String>,
    /// Where the configurations, logs, records and the report go.
    pub out_dir: PathBuf,
    /// Namespaces or loopback proxies.
    pub network: NetworkMode,
    /// The driver's timeout per call.
    pub call_timeout: Duration,
    /// The silos' membership lease (default: the `default` profile's);
    /// pauses are drawn longer than it.
    pub lease: Duration,
    /// Keep the run's state tables in the database afterwards.
    pub keep_state: bool,
    /// Every pause lasts this long instead of the drawn time (to pause
    /// past the others' fence, say).
    pub pause: Option<Duration>,
    /// Every killed silo stays down this long instead of the drawn time
    /// (longer than detection: the others see it dead before it is back).
    pub down: Option<Duration>,
}

impl ChaosConfig {
    /// The full run's defaults: 3 silos, 10,000 grains, every kind of
    /// fault, 8 faults, PostgreSQL on 127.0.0.1:5432, namespaces if
    /// possible. `silo_command` runs one silo.
    pub fn new(silo_command: Vec<String>, out_dir: PathBuf) -> Self {
        ChaosConfig {
            silos: 3,
            grains: 10_000,
            workers: 64,
            seed: 1,
            faults: FaultKind::ALL.to_vec(),
            fault_count: 8,
            database_url: "postgres://postgres@127.0.0.1:5432/test".into(),
            silo_command,
            out_dir,
            network: NetworkMode::Auto,
            call_timeout: Duration::from_secs(10),
            lease: actor_cluster::ClusterConfig::default().lease,
            keep_state: false,
            pause: None,
            down: None,
        }
    }

    /// The schedule this configuration runs.
    pub fn schedule(&self) -> Vec<Fault> {
        let mut s = schedule::generate(
            self.seed,
            &self.faults,
            self.fault_count,
            self.silos,
            self.lease,
        );
        for f in &mut s {
            let over = match f.kind {
                FaultKind::Pause => self.pause,
                FaultKind::Kill => self.down,
                _ => None,
            };
            if let Some(d) = over {
                f.hold_ms = d.as_millis() as u64;
            }
        }
        s
    }

    /// The command line that replays this run.
    pub fn replay_command(&self) -> String {
        let faults: Vec<&str> = self.faults.iter().map(|f| f.name()).collect();
        format!(
            "cargo run -p actor-chaos -- --seed {} --silos {} --grains {} --workers {} --faults {} --count {} --lease-ms {}",
            self.seed,
            self.silos,
            self.grains,
            self.workers,
            faults.join(","),
            self.fault_count,
            self.lease.as_millis()
        ) + &self
            .pause
            .map(|p| format!(" --pause-ms {}", p.as_millis()))
            .unwrap_or_default()
            + &self
                .down
                .map(|p| format!(" --down-ms {}", p.as_millis()))
                .unwrap_or_default()
    }
}

static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

struct Cluster {
    silos: Vec<SiloProc>,
    held: Vec<bool>,
    command: Vec<String>,
    restarts: usize,
    log: Vec<String>,
}

impl Cluster {
    /// Restarts silos that exited on their own (declared dead), unless
    /// the nemesis holds them down.
    async fn supervise(&mut self) {
        for i in 0..self.silos.len() {
            if self.held[i] {
                continue;
            }
            let s = &mut self.silos[i];
            if let Some(status) = s.exited() {
                let line = format!("{} exited by itself ({status}); restarting it", s.name);
                eprintln!("chaos: {line}");
                self.log.push(line);
                self.restarts += 1;
                if let Err(e) = s.start(&self.command).await {
                    eprintln!("chaos: {e}");
                }
            } else if !s.running() {
                if let Err(e) = s.start(&self.command).await {
                    eprintln!("chaos: {e}");
                }
            }
        }
    }

    /// Waits `d`, supervising.
    async fn wait(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.supervise().await;
            tokio::time::sleep(Duration::from_millis(100).min(end - Instant::now())).await;
        }
    }
}

async fn active_row(table: &dyn MembershipTable, endpoint: &str) -> Option<SiloAddress> {
    let snap = table.read_all().await.ok()?;
    snap.entries
        .iter()
        .filter(|(e, _)| e.silo.endpoint == endpoint && e.status == SiloStatus::Active)
        .map(|(e, _)| e.silo.clone())
        .max_by_key(|s| s.generation)
}

/// When `silo` was declared dead (its row's last vote), polling the table.
async fn declared_dead(
    table: Arc<dyn MembershipTable>,
    silo: SiloAddress,
    give_up: Duration,
) -> Option<i64> {
    let start = Instant::now();
    while start.elapsed() < give_up {
        if let Ok(snap) = table.read_all().await
            && let Some((e, _)) = snap.entry(&silo)
            && e.status == SiloStatus::Dead
        {
            return Some(
                e.suspicions
                    .iter()
                    .map(|v| v.at_millis)
                    .max()
                    .unwrap_or_else(now_millis),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Runs the chaos run of `config` and returns its report (also written
/// to `out_dir/report.json`). An `Err` is a run that could not be carried
/// out; a run whose oracles failed is an `Ok` report with `passed: false`.
pub async fn run(config: ChaosConfig) -> Result<Report> {
    if !(1..=5).contains(&config.silos) {
        return Err(Error::Usage(format!(
            "--silos takes 1 to 5, not {}",
            config.silos
        )));
    }
    if config.grains == 0 || config.workers == 0 {
        return Err(Error::Usage(
            "--grains and --workers must be above 0".into(),
        ));
    }
    let started = Instant::now();
    std::fs::create_dir_all(&config.out_dir).map_err(|source| Error::Io {
        path: config.out_dir.clone(),
        source,
    })?;
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let tag = format!("{}x{n}", std::process::id());
    let run_id = format!("{tag}_{}", now_millis() % 1_000_000);
    let cluster_id = format!("chaos-{run_id}");
    let prefix = format!("chaos_{run_id}");
    let schedule = config.schedule();
    println!("chaos: seed {} schedule:", config.seed);
    for (i, f) in schedule.iter().enumerate() {
        println!("chaos:   {i}: {f}");
    }

    let table: Arc<dyn MembershipTable> = Arc::new(
        SqlMembership::connect(
            &config.database_url,
            cluster_id.clone(),
            Duration::from_secs(5),
        )
        .await?,
    );
    let net = Network::setup(config.network, &tag, config.silos, &config.database_url).await?;
    println!("chaos: network: {}", net.kind);
    let network = (net.kind.to_owned(), net.fallback_reason.clone());
    let mut cluster = Cluster {
        silos: Vec::new(),
        held: vec![false; config.silos],
        command: config.silo_command.clone(),
        restarts: 0,
        log: Vec::new(),
    };
    for i in 0..config.silos {
        let mut s = SiloProc::new(
            i,
            net.silo(i).clone(),
            &config.out_dir,
            &cluster_id,
            &prefix,
            config.lease,
        )?;
        s.start(&config.silo_command).await?;
        cluster.silos.push(s);
    }
    let outcome = drive(&config, &schedule, &mut cluster, &net, table.clone()).await;
    // Stop every silo gracefully so that its records are complete.
    for s in &mut cluster.silos {
        s.stop(Duration::from_secs(20)).await;
    }
    drop(net);
    let (driver, mut figures) = outcome?;

    let mut files = Vec::new();
    for s in &cluster.silos {
        files.extend(s.record_files());
    }
    let intervals = oracle::intervals(&files)?;
    let duplicates = oracle::duplicates(&intervals);
    let stragglers = oracle::stragglers(&intervals);
    let acked = driver.acked();
    let stored = oracle::stored_ledgers(&config.database_url, &prefix).await?;
    let lost = oracle::lost_writes(&acked, &stored);

    // False deaths: silos declared dead by votes that no fault explains.
    let snap = table.read_all().await?;
    let mut false_deaths = 0;
    let mut false_under_load = 0;
    for (e, _) in &snap.entries {
        if e.status != SiloStatus::Dead || e.suspicions.is_empty() {
            continue;
        }
        let at = e.suspicions.iter().map(|v| v.at_millis).max().unwrap_or(0);
        let explained = figures.iter().any(|f| {
            f.fault.kind != FaultKind::CpuLoad
                && cluster.silos[f.fault.silo].endpoint() == e.silo.endpoint
                && at >= f.start_ms
                && at <= f.end_ms + 30_000
        });
        if !explained {
            false_deaths += 1;
            let line = format!("false death: {} declared dead at {at}", e.silo);
            eprintln!("chaos: {line}");
            cluster.log.push(line);
            for f in figures.iter_mut() {
                if f.fault.kind == FaultKind::CpuLoad && at >= f.start_ms && at <= f.end_ms + 10_000
                {
                    f.false_deaths += 1;
                    false_under_load += 1;
                }
            }
        }
    }
    let _ = table.cleanup_defunct(now_millis() + 1).await;
    if !config.keep_state {
        let _ = oracle::drop_state(&config.database_url, &prefix).await;
    }

    let report = Report::new(
        &config,
        &net_summary(&cluster),
        schedule,
        started.elapsed(),
        duplicates,
        stragglers,
        acked.values().map(|v| v.len() as u64).sum(),
        lost,
        driver.phases(),
        figures,
        false_deaths,
        false_under_load,
        cluster.restarts,
        cluster.log.clone(),
    );
    let mut report = report;
    report.network = network.0;
    report.network_fallback = network.1;
    report.print(&config);
    let path = config.out_dir.join("report.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&report).expect("a report serializes"),
    )
    .map_err(|source| Error::Io { path, source })?;
    Ok(report)
}

fn net_summary(cluster: &Cluster) -> Vec<String> {
    cluster
        .silos
        .iter()
        .map(|s| s.endpoint().to_owned())
        .collect()
}

async fn drive(
    config: &ChaosConfig,
    schedule: &[Fault],
    cluster: &mut Cluster,
    net: &Network,
    table: Arc<dyn MembershipTable>,
) -> Result<(Arc<Driver>, Vec<FaultFigures>)> {
    // Everyone active and in every view before the grains are placed.
    let t = Instant::now();
    loop {
        let snap = table.read_all().await?;
        if snap.with_status(SiloStatus::Active).count() == config.silos {
            break;
        }
        if t.elapsed() > Duration::from_secs(60) {
            return Err(Error::Silo {
                name: "all".into(),
                message: format!("not all {} silos active after 60 s", config.silos),
            });
        }
        cluster.wait(Duration::from_millis(100)).await;
    }
    let gateways: Vec<String> = cluster
        .silos
        .iter()
        .map(|s| s.endpoint().to_owned())
        .collect();
    let mut clients = Vec::new();
    for k in 0..2.min(config.silos) {
        let mut order = gateways.clone();
        order.rotate_left(k);
        let c = ClusterClient::connect(order, Duration::from_millis(500))
            .await
            .map_err(|e| Error::Client(e.to_string()))?;
        clients.push(c);
    }
    let t = Instant::now();
    while clients.iter().any(|c| c.gateways().len() < config.silos) {
        if t.elapsed() > Duration::from_secs(30) {
            break; // the driver copes; the figures will show it
        }
        cluster.wait(Duration::from_millis(100)).await;
    }
    let driver = Driver::new(clients, config.grains, config.call_timeout);
    let workers = driver.spawn_workers(config.workers, config.seed);
    let t = Instant::now();
    while !driver.warmed_up() && t.elapsed() < Duration::from_secs(180) {
        cluster.wait(Duration::from_millis(200)).await;
    }
    println!(
        "chaos: warm-up done in {:.1} s ({} grains)",
        t.elapsed().as_secs_f64(),
        config.grains
    );
    driver.phase("steady");
    cluster.wait(Duration::from_secs(3)).await;

    let mut figures = Vec::new();
    for (k, fault) in schedule.iter().enumerate() {
        let i = fault.silo;
        let name = cluster.silos[i].name.clone();
        let label = match fault.kind {
            FaultKind::CpuLoad => format!("{k}: cpu-load"),
            kind => format!("{k}: {} {name}", kind.name()),
        };
        println!("chaos: fault {fault}");
        driver.phase(label.clone());
        let mut fig = FaultFigures::new(fault.clone(), label);
        let endpoint = cluster.silos[i].endpoint().to_owned();
        let victim = active_row(&*table, &endpoint).await;
        let moved = driver.grains_on(&name, 20);
        fig.start_ms = now_millis();
        let start = fig.start_ms;
        // Measurements run beside the fault.
        let measure = |victim: Option<SiloAddress>| {
            let table = table.clone();
            let driver = driver.clone();
            let moved = moved.clone();
            tokio::spawn(async move {
                let dead = match victim {
                    Some(v) => declared_dead(table, v, Duration::from_secs(60)).await,
                    None => None,
                };
                let answers = futures_join(moved.iter().map(|&g| {
                    let driver = driver.clone();
                    async move { driver.until_answered(g, Duration::from_secs(60)).await }
                }))
                .await;
                (dead, answers)
            })
        };
        let mut measuring = None;
        match fault.kind {
            FaultKind::Kill => {
                cluster.held[i] = true;
                cluster.silos[i].kill9().await;
                measuring = Some(measure(victim));
                cluster.wait(Duration::from_millis(fault.hold_ms)).await;
                cluster.held[i] = false;
                fig.end_ms = now_millis();
                if let Err(e) = cluster.silos[i].start(&config.silo_command).await {
                    eprintln!("chaos: restart after kill: {e}");
                }
            }
            FaultKind::Pause => {
                cluster.held[i] = true;
                cluster.silos[i].signal("-STOP");
                measuring = Some(measure(victim));
                cluster.wait(Duration::from_millis(fault.hold_ms)).await;
                cluster.silos[i].signal("-CONT");
                fig.end_ms = now_millis();
                cluster.held[i] = false;
            }
            FaultKind::Partition => {
                cluster.held[i] = true;
                net.cut(i)?;
                measuring = Some(measure(victim));
                cluster.wait(Duration::from_millis(fault.hold_ms)).await;
                net.heal(i)?;
                fig.end_ms = now_millis();
                cluster.held[i] = false;
                // Recovery: every silo active again and a sample of
                // grains answering.
                let t = Instant::now();
                loop {
                    cluster.supervise().await;
                    let snap = table.read_all().await?;
                    let active: BTreeSet<&str> = snap
                        .with_status(SiloStatus::Active)
                        .map(|e| e.silo.endpoint.as_str())
                        .collect();
                    if active.len() == config.silos {
                        let sample: Vec<usize> =
                            (0..10).map(|j| (j * 7919 + k) % config.grains).collect();
                        let ok =
                            futures_join(
                                sample.iter().map(|&g| {
                                    let driver = driver.clone();
                                    async move {
                                        driver.until_answered(g, Duration::from_secs(30)).await
                                    }
                                }),
                            )
                            .await;
                        if ok.iter().all(Option::is_some) {
                            fig.recovery_ms = Some(now_millis() - fig.end_ms);
                            break;
                        }
                    }
                    if t.elapsed() > Duration::from_secs(90) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            FaultKind::CpuLoad => {
                let burners = burn(
                    2 * std::thread::available_parallelism()
                        .map(|n| n.get())
                        .unwrap_or(2),
                );
                cluster.wait(Duration::from_millis(fault.hold_ms)).await;
                for mut b in burners {
                    let _ = b.kill();
                    let _ = b.wait();
                }
                fig.end_ms = now_millis();
            }
        }
        cluster.wait(Duration::from_millis(fault.settle_ms)).await;
        if let Some(m) = measuring {
            // Bounded: every measurement gives up after 60 s.
            while !m.is_finished() {
                cluster.wait(Duration::from_millis(200)).await;
            }
            if let Ok((dead, answers)) = m.await {
                fig.detect_ms = dead.map(|d| d - start);
                for a in answers {
                    match a {
                        Some(t) => fig.moved_ms.push(t - start),
                        None => fig.moved_unanswered += 1,
                    }
                }
            }
        }
        println!("chaos:   {}", fig.summary());
        figures.push(fig);
    }
    driver.phase("final");
    cluster.wait(Duration::from_secs(3)).await;
    driver.stop();
    for w in workers {
        let _ = w.await;
    }
    Ok((driver, figures))
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join<F>(it: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = it.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

/// `n` processes that spin on a CPU each.
fn burn(n: usize) -> Vec<std::process::Child> {
    (0..n)
        .filter_map(|_| {
            std::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .stdin(std::process::Stdio::null())
                .spawn()
                .ok()
        })
        .collect()
}
