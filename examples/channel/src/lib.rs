//! # Channel: one-way calls queue in a slow consumer's mailbox
//!
//! The course's fourth exercise (*EventsOutOfProcessByChannel*) puts a
//! channel between a web endpoint and a slow consumer running in the
//! background (`System.Threading.Channels` and a `BackgroundService`): the
//! endpoint writes the event to the channel and answers at once; the
//! consumer works through the channel at its own pace, and the channel's
//! length shows how far behind it is.
//!
//! Here the channel is a grain's mailbox. `POST /jobs` sends the
//! [`SlowConsumer`] grain a [`Job`] with [`tell`](actor_core::GrainRef::tell),
//! a one-way call: it is queued and the endpoint answers `202 Accepted`
//! without waiting for the consumer. The consumer takes one job per turn,
//! each taking a while. How many jobs wait is the grain type's
//! `mailbox_depth` in the silo's metrics
//! ([`Silo::metrics`](actor_core::Silo::metrics)), which `GET /stats`
//! serves as JSON next to the consumer's progress. Optionally the endpoint
//! pushes back: past [`AppConfig::max_backlog`] queued jobs it answers
//! `503` with `Retry-After` instead of queueing more.
//!
//! Two details of the runtime show up here:
//!
//! - [`Job`] is handled in a shared turn with `Interleave::Never` (still
//!   one job at a time), so that the [`Progress`] query, which is
//!   `Interleave::Always`, is answered at once, next to the running job and
//!   ahead of the queued ones, instead of waiting behind the backlog.
//! - A one-way call has no deadline: a job runs however long it waits in
//!   the mailbox behind a slow consumer; nothing told is dropped.
//!
//! [`build_silo`], [`router`] and [`run_scenario`] are shared by `main.rs`
//! and the tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actor_core::prelude::*;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// How long the consumer works on a job unless told otherwise.
pub const DEFAULT_WORK: Duration = Duration::from_millis(100);

/// The key of the consumer grain the endpoint sends jobs to.
pub const CONSUMER_KEY: &str = "default";

/// A job for the consumer: sent one-way, no reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The id the endpoint gave the job (1, 2, ...).
    pub id: u64,
    /// What to work on.
    pub payload: String,
}

impl Message for Job {
    type Reply = ();
    const NAME: &'static str = "job";
}

/// Asks the consumer how far it got.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Progress;

/// The consumer's answer to [`Progress`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerProgress {
    /// Jobs finished.
    pub processed: u64,
    /// The ids of the finished jobs, in the order they were processed.
    pub processed_ids: Vec<u64>,
}

impl Message for Progress {
    type Reply = ConsumerProgress;
    const NAME: &'static str = "progress";
}

/// The slow consumer grain: spends `work` on each [`Job`], one at a time.
#[derive(Debug)]
pub struct SlowConsumer {
    work: Duration,
    processed: AtomicU64,
    // Never held across `.await`.
    log: Mutex<Vec<u64>>,
}

impl SlowConsumer {
    /// A consumer that spends `work` on each job.
    pub fn new(work: Duration) -> Self {
        SlowConsumer {
            work,
            processed: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
        }
    }
}

impl Grain for SlowConsumer {
    const TYPE_NAME: &'static str = "slow-consumer";
}

impl GrainMethods for SlowConsumer {
    fn register(m: &mut Methods<Self>) {
        m.add::<Job, _>().add::<Progress, _>();
    }
}

// `Interleave::Never` on a non-reentrant grain: jobs run one at a time, in
// mailbox order, exactly as exclusive turns would. Taking `&self` is what
// lets the always-interleaving `Progress` query run beside a job.
impl SharedHandler<Job> for SlowConsumer {
    const INTERLEAVE: Interleave = Interleave::Never;
    async fn handle(&self, job: Job, _ctx: &GrainContext<Self>) {
        tokio::time::sleep(self.work).await;
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(job.id);
        self.processed.fetch_add(1, Ordering::SeqCst);
    }
}

impl SharedHandler<Progress> for SlowConsumer {
    const INTERLEAVE: Interleave = Interleave::Always;
    async fn handle(&self, _: Progress, _ctx: &GrainContext<Self>) -> ConsumerProgress {
        ConsumerProgress {
            processed: self.processed.load(Ordering::SeqCst),
            processed_ids: self.log.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}

/// Starts a silo with the [`SlowConsumer`] spending `work` on each job.
pub async fn build_silo(work: Duration) -> actor_core::Result<Silo> {
    Silo::builder()
        .name("channel")
        .grain_with::<SlowConsumer>(move |_| SlowConsumer::new(work))
        .start()
        .await
}

/// How the endpoint queues jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppConfig {
    /// Refuse new jobs (503) while this many or more are queued; `None`
    /// queues without limit. The check and the send are not atomic, so
    /// concurrent requests may overshoot it by a few.
    pub max_backlog: Option<u64>,
}

/// The body of `POST /jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitJob {
    /// What to work on.
    pub payload: String,
}

/// The answer of `POST /jobs` (202 Accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobAccepted {
    /// The id given to the job.
    pub job_id: u64,
    /// Jobs waiting in the consumer's mailbox right after this one was
    /// queued (this one included, unless the consumer already took it).
    pub mailbox_depth: u64,
}

/// The answer of `GET /stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Jobs the endpoint accepted (202).
    pub accepted: u64,
    /// Jobs the endpoint refused (503).
    pub rejected: u64,
    /// Jobs queued in the consumer's mailbox, not yet started.
    pub mailbox_depth: u64,
    /// Jobs the consumer finished.
    pub processed: u64,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
}

#[derive(Clone)]
struct AppState {
    silo: Silo,
    consumer: GrainRef<SlowConsumer>,
    config: AppConfig,
    next_id: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    rejected: Arc<AtomicU64>,
}

impl AppState {
    fn mailbox_depth(&self) -> u64 {
        self.silo
            .metrics()
            .grain_type(SlowConsumer::TYPE_NAME)
            .map_or(0, |t| t.mailbox_depth)
    }
}

/// The app's routes: `POST /jobs` queues a job, `GET /stats` shows the
/// backlog, `GET /metrics` the silo's metrics.
pub fn router(silo: &Silo, config: AppConfig) -> Router {
    Router::new()
        .route("/jobs", post(submit_job))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .with_state(AppState {
            silo: silo.clone(),
            consumer: silo.get_grain::<SlowConsumer>(CONSUMER_KEY),
            config,
            next_id: Arc::new(AtomicU64::new(1)),
            accepted: Arc::new(AtomicU64::new(0)),
            rejected: Arc::new(AtomicU64::new(0)),
        })
}

fn unavailable(app: &AppState, error: String) -> Response {
    app.rejected.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        Json(ApiError { error }),
    )
        .into_response()
}

async fn submit_job(State(app): State<AppState>, Json(req): Json<SubmitJob>) -> Response {
    if let Some(max) = app.config.max_backlog {
        let depth = app.mailbox_depth();
        if depth >= max {
            return unavailable(
                &app,
                format!("{depth} jobs are waiting (limit {max}); retry later"),
            );
        }
    }
    let id = app.next_id.fetch_add(1, Ordering::SeqCst);
    // One-way: queued in the mailbox; the consumer has not seen it yet.
    if let Err(e) = app.consumer.tell(Job {
        id,
        payload: req.payload,
    }) {
        return unavailable(&app, e.to_string());
    }
    app.accepted.fetch_add(1, Ordering::SeqCst);
    let accepted = JobAccepted {
        job_id: id,
        mailbox_depth: app.mailbox_depth(),
    };
    (StatusCode::ACCEPTED, Json(accepted)).into_response()
}

async fn stats(State(app): State<AppState>) -> Response {
    // Read the depth before asking: the query itself passes through the
    // mailbox for an instant.
    let mailbox_depth = app.mailbox_depth();
    match app
        .consumer
        .with_timeout(Duration::from_secs(5))
        .ask(Progress)
        .await
    {
        Ok(progress) => Json(Stats {
            accepted: app.accepted.load(Ordering::SeqCst),
            rejected: app.rejected.load(Ordering::SeqCst),
            mailbox_depth,
            processed: progress.processed,
        })
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(ApiError {
                error: e.to_string(),
            }),
        )
            .into_response(),
    }
}

async fn metrics(State(app): State<AppState>) -> Json<actor_core::MetricsSnapshot> {
    Json(app.silo.metrics())
}

/// What a run of the scenario produced.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The endpoint's answers to the posts, in order.
    pub accepted: Vec<JobAccepted>,
    /// How long all the posts took, answers included.
    pub posting_took: Duration,
    /// `GET /stats` right after the last post was answered.
    pub right_after: Stats,
    /// `GET /stats` while the backlog drained, with the time since the
    /// first post.
    pub draining: Vec<(Duration, Stats)>,
    /// `GET /stats` once every job was processed.
    pub drained: Stats,
    /// Time from the first post until every job was processed.
    pub drained_after: Duration,
}

async fn get_stats(http: &reqwest::Client, addr: SocketAddr) -> anyhow::Result<Stats> {
    let res = http.get(format!("http://{addr}/stats")).send().await?;
    let status = res.status();
    let body = res.text().await?;
    anyhow::ensure!(status == 200, "GET /stats answered {status}: {body}");
    Ok(serde_json::from_str(&body)?)
}

/// Posts `jobs` jobs one after the other to the server at `addr` (over
/// HTTP), then polls `GET /stats` every `poll` until the consumer has
/// processed them all, for at most `limit`.
pub async fn run_scenario(
    addr: SocketAddr,
    jobs: u64,
    poll: Duration,
    limit: Duration,
) -> anyhow::Result<Summary> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut accepted = Vec::new();
    for i in 0..jobs {
        let job = SubmitJob {
            payload: format!("job-{i}"),
        };
        let res = http
            .post(format!("http://{addr}/jobs"))
            .json(&job)
            .send()
            .await?;
        let status = res.status();
        let body = res.text().await?;
        anyhow::ensure!(status == 202, "POST /jobs answered {status}: {body}");
        accepted.push(serde_json::from_str(&body)?);
    }
    let posting_took = started.elapsed();
    let right_after = get_stats(&http, addr).await?;
    let mut draining = Vec::new();
    loop {
        tokio::time::sleep(poll).await;
        let stats = get_stats(&http, addr).await?;
        if stats.processed >= stats.accepted && stats.mailbox_depth == 0 {
            return Ok(Summary {
                accepted,
                posting_took,
                right_after,
                draining,
                drained: stats,
                drained_after: started.elapsed(),
            });
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "the backlog did not drain within {limit:?}: {stats:?}"
        );
        draining.push((started.elapsed(), stats));
    }
}
