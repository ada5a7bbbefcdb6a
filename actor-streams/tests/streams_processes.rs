//! At least once with silo processes: three silos run as processes of
//! their own (this test binary run again as `silo_process`), beside a
//! silo in the test's process, in one cluster over TCP with its membership
//! table in SQLite, all pulling the real RabbitMQ. While the test's silo
//! publishes, two of the processes are killed with SIGKILL, one after the
//! other: every acknowledged publish is delivered at least once, and
//! first deliveries keep each producer's order (`StreamHistory`). A
//! process reports each item its consumer accepted on stdout before its
//! turn ends, so what a process acked is on record even if it dies the
//! next instant. With CI=true a missing broker fails.

use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use actor_cluster::{ClusterConfig, ClusterSilo, SqlMembership};
use actor_core::prelude::*;
use actor_streams::{
    Ack, DEFAULT_RABBITMQ_URL, Delivery, DeliveryPolicy, RabbitStreams, SiloBuilderStreamsExt,
    StreamId, Streams,
};
use actor_testkit::StreamHistory;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const TABLE: &str = "STREAMS_PROCESS_TABLE";
const PREFIX: &str = "STREAMS_PROCESS_PREFIX";
const NAME: &str = "STREAMS_PROCESS_NAME";
const PARTITIONS: u32 = 4;

fn require_service() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Records each accepted item: in the oracle when the silo has it (the
/// test's own silo), else as a `DELIVERED <key> <producer> <seq>` line on
/// stdout (a silo process), written before the turn ends.
#[derive(Default)]
struct Recorder;

impl Grain for Recorder {
    const TYPE_NAME: &'static str = "recorder";
}

impl Handler<Delivery<i64>> for Recorder {
    async fn handle(&mut self, d: Delivery<i64>, ctx: &GrainContext<Self>) -> Ack {
        match ctx.silo().extension::<StreamHistory>() {
            Some(h) => h.delivered(ctx.id(), &d.stream, d.token.producer, d.token.seq),
            None => {
                let key = d.stream.key.as_int().unwrap_or(-1);
                let mut out = std::io::stdout().lock();
                writeln!(out, "DELIVERED {key} {} {}", d.token.producer, d.token.seq)
                    .and_then(|()| out.flush())
                    .map_err(|e| format!("cannot report the delivery: {e}"))?;
            }
        }
        Ok(())
    }
}

#[grain_methods(also_handles(Delivery<i64>))]
impl Recorder {}

async fn member(
    name: &str,
    table: &str,
    prefix: &str,
    history: Option<StreamHistory>,
) -> ClusterSilo {
    let provider = RabbitStreams::new(DEFAULT_RABBITMQ_URL)
        .queue_prefix(prefix)
        .partitions(PARTITIONS)
        .prefetch(8);
    let mut builder = Silo::builder().name(name).grain::<Recorder>();
    if let Some(h) = history {
        builder = builder.extension(h);
    }
    let builder = builder.with_streams(
        Streams::builder()
            .provider("rabbit", provider)
            .implicit::<Recorder, i64>("numbers")
            .delivery(
                DeliveryPolicy::default()
                    .retry_backoff(Duration::from_millis(20))
                    .turn_timeout(Duration::from_secs(5)),
            ),
    );
    let membership = SqlMembership::connect(
        &format!("sqlite://{table}"),
        "streams",
        Duration::from_secs(10),
    )
    .await
    .expect("the membership table opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    ClusterSilo::start(
        builder,
        listener,
        Arc::new(membership),
        ClusterConfig::fast(),
    )
    .await
    .expect("the silo joins")
}

/// A silo process (run by the test below, never on its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a silo process of silo_processes_killed_mid_stream_lose_no_acknowledged_item"]
async fn silo_process() {
    let (Ok(table), Ok(prefix), Ok(name)) = (
        std::env::var(TABLE),
        std::env::var(PREFIX),
        std::env::var(NAME),
    ) else {
        return;
    };
    let member = member(&name, &table, &prefix, None).await;
    println!("READY {name} {}", std::process::id());
    let _ = std::io::stdout().flush();
    // Until the parent closes stdin (or kills this process).
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await
    .unwrap();
    let _ = member.leave().await;
}

struct Process {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    /// Items its consumers accepted so far.
    delivered: Arc<std::sync::atomic::AtomicUsize>,
    alive: bool,
}

impl Process {
    /// SIGKILL, and wait for the end.
    async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        let status = self.child.wait().await.unwrap();
        assert!(!status.success(), "killed by the signal: {status}");
        self.alive = false;
    }
}

/// A live process whose consumers have accepted items (the kill then hits
/// a silo that runs consumers), else any live one.
fn victim(processes: &[Process]) -> usize {
    let live = |p: &&Process| p.alive;
    let busy = processes
        .iter()
        .enumerate()
        .filter(|(_, p)| live(p))
        .max_by_key(|(_, p)| p.delivered.load(std::sync::atomic::Ordering::Relaxed));
    busy.map(|(i, _)| i).expect("a live process")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silo_processes_killed_mid_stream_lose_no_acknowledged_item() {
    let conn = match lapin::Connection::connect(
        DEFAULT_RABBITMQ_URL,
        lapin::ConnectionProperties::default(),
    )
    .await
    {
        Ok(c) => c,
        Err(e) if !require_service() => return eprintln!("skipping: RabbitMQ unavailable: {e}"),
        Err(e) => panic!("RabbitMQ is required with CI=true: {e}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("membership.db").display().to_string();
    let prefix = format!("processes-{}", uuid::Uuid::new_v4());
    let history = StreamHistory::new();
    let me = member("test-silo", &table, &prefix, Some(history.clone())).await;

    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let exe = std::env::current_exe().unwrap();
    let mut processes = Vec::new();
    for i in 0..3 {
        let mut child = tokio::process::Command::new(&exe)
            .args(["silo_process", "--exact", "--ignored", "--nocapture"])
            .env(TABLE, &table)
            .env(PREFIX, &prefix)
            .env(NAME, format!("process-{i}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (h, ready) = (history.clone(), ready_tx.clone());
        let delivered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = delivered.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["READY", name, _pid] => {
                        let _ = ready.send((*name).to_owned());
                    }
                    ["DELIVERED", key, producer, seq] => {
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let key: i64 = key.parse().unwrap();
                        h.delivered(
                            GrainId::new(Recorder::TYPE_NAME, key),
                            StreamId::new("numbers", key),
                            producer.parse().unwrap(),
                            seq.parse().unwrap(),
                        );
                    }
                    _ => {}
                }
            }
        });
        processes.push(Process {
            child,
            stdin,
            delivered,
            alive: true,
        });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for _ in 0..3 {
        tokio::time::timeout_at(deadline, ready_rx.recv())
            .await
            .expect("every silo process is ready within 120 s");
    }
    while me.active_members().len() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cluster never had 4 active silos: {:?}",
            me.active_members()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The test's silo publishes on four streams.
    let silo = me.silo().clone();
    let h = history.clone();
    let producer = tokio::spawn(async move {
        let broker = Streams::provider(&silo, "rabbit").unwrap();
        let streams: Vec<_> = (0..4)
            .map(|k| broker.producer::<i64>(StreamId::new("numbers", k)))
            .collect();
        let mut failed = 0;
        for n in 0..150i64 {
            for p in &streams {
                h.publishing(p.stream(), p.producer_id(), n as u64 + 1);
                match p.publish(&n).await {
                    Ok(t) => h.acked(p.stream(), t.producer, t.seq),
                    Err(_) => failed += 1,
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        failed
    });
    let wait_acked = |n: usize| {
        let h = history.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while h.counts().0 < n {
                assert!(tokio::time::Instant::now() < deadline, "{n} never acked");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    // Mid-stream, SIGKILL one process, later another. The first victim
    // is a process that has run consumers: acknowledged publishes run
    // ahead of deliveries (a consumer gets its stream's items one after
    // another), so at 120 acks none may have reached a process yet.
    wait_acked(120).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !processes
        .iter()
        .any(|p| p.alive && p.delivered.load(std::sync::atomic::Ordering::Relaxed) > 0)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no silo process ran a consumer within 60 s of 120 acknowledged publishes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = victim(&processes);
    processes[first].kill().await;
    wait_acked(360).await;
    let second = victim(&processes);
    processes[second].kill().await;
    let killed_delivered: Vec<usize> = [first, second]
        .iter()
        .map(|i| {
            processes[*i]
                .delivered
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .collect();
    eprintln!(
        "killed processes {first} and {second}, which had accepted {killed_delivered:?} items"
    );

    assert_eq!(
        producer.await.unwrap(),
        0,
        "the broker stayed up: every publish was acknowledged"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while history.missing() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (acked, deliveries, repeats) = history.counts();
    assert_eq!(acked, 600);
    if let Err(v) = history.check() {
        panic!(
            "{} violations (acked {acked}, deliveries {deliveries}), first: {}",
            v.len(),
            v[0]
        );
    }
    eprintln!("acked {acked}, deliveries {deliveries}, repeats {repeats}");

    assert!(
        killed_delivered.iter().any(|n| *n > 0),
        "a killed process ran consumers: {killed_delivered:?}"
    );
    // The survivor leaves when its stdin closes; then this silo.
    let mut survivor = processes.into_iter().find(|p| p.alive).unwrap();
    if let Some(mut stdin) = survivor.stdin.take() {
        let _ = stdin.shutdown().await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), survivor.child.wait()).await;
    let _ = me.leave().await;
    let ch = conn.create_channel().await.unwrap();
    for q in (0..PARTITIONS)
        .map(|p| format!("{prefix}.{p}"))
        .chain([format!("{prefix}.dead")])
    {
        let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
    }
}
