//! Silo statistics across the cluster: each member answers a `SiloStats`
//! gRPC call (proto/stats.proto, served beside its link) with a
//! [`SiloReport`] — its metrics snapshot, process CPU and memory, and
//! whatever plug-ins added through [`StatsExtras`]. [`ClusterView`], a silo
//! extension that [`ClusterSilo`](crate::ClusterSilo) installs, gives tools
//! such as the dashboard the membership table and these reports of peers.
//! Read only by tools, about once a second: never on the call path.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actor_core::{MetricsSnapshot, Silo};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use crate::error::{Error, Result};
use crate::fence::Ownership;
use crate::membership::{MembershipSnapshot, MembershipTable, SiloAddress};

#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
mod pb {
    tonic::include_proto!("grains.stats.v1");
}

use pb::silo_stats_client::SiloStatsClient;

/// The largest report request a silo decodes (the request is empty).
const MAX_REQUEST: usize = 4 * 1024;
/// The largest report a silo decodes from a peer (metrics of every grain
/// type and the plug-ins' extras; far below this in practice).
const MAX_REPORT: usize = 4 * 1024 * 1024;
use pb::silo_stats_server::{SiloStats, SiloStatsServer};

/// CPU time and resident memory of the process a silo runs in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProcessStats {
    /// CPU time the process has used so far (user and system), in seconds.
    pub cpu_seconds: f64,
    /// Resident memory in bytes, where the platform says (Linux); else 0.
    pub rss_bytes: u64,
    /// Logical CPUs of the machine (to turn CPU time into a percentage).
    pub cpus: u32,
}

impl ProcessStats {
    /// The figures of this process now.
    pub fn now() -> Self {
        ProcessStats {
            cpu_seconds: cpu_time::ProcessTime::try_now()
                .map(|t| t.as_duration().as_secs_f64())
                .unwrap_or(0.0),
            rss_bytes: rss_bytes().unwrap_or(0),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
        }
    }
}

/// `VmRSS` of `/proc/self/status` (Linux).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// What a silo reports about itself to tools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SiloReport {
    /// The silo's name.
    pub name: String,
    /// Its link endpoint, when it is a cluster member.
    pub endpoint: Option<String>,
    /// Live activations in its table now.
    pub activations: u64,
    /// Its metrics.
    pub metrics: MetricsSnapshot,
    /// Its process.
    pub process: ProcessStats,
    /// Figures plug-ins added (see [`StatsExtras`]), by key.
    pub extras: BTreeMap<String, serde_json::Value>,
}

impl SiloReport {
    /// The report of `silo` now (with the extras registered on it).
    pub fn of(silo: &Silo) -> Self {
        let extras = silo
            .extension::<StatsExtras>()
            .map(|x| {
                x.sources
                    .iter()
                    .map(|(k, f)| (k.clone(), f()))
                    .collect::<BTreeMap<_, _>>()
            })
            .unwrap_or_default();
        SiloReport {
            name: silo.name().to_owned(),
            endpoint: silo
                .extension::<ClusterView>()
                .map(|v| v.me.endpoint.clone()),
            activations: silo.activation_count() as u64,
            metrics: silo.metrics(),
            process: ProcessStats::now(),
            extras,
        }
    }
}

type ExtraSource = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Sources of extra figures a silo adds to its [`SiloReport`], keyed by
/// name (a plug-in's per-grain counters, say). A silo extension: add to it
/// with `builder.extension_mut::<StatsExtras>().add(..)`.
#[derive(Default, Clone)]
pub struct StatsExtras {
    sources: Vec<(String, ExtraSource)>,
}

impl std::fmt::Debug for StatsExtras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.sources.iter().map(|(k, _)| k))
            .finish()
    }
}

impl StatsExtras {
    /// Reports `source()` under `key` (replacing an earlier source of that
    /// key).
    pub fn add(
        &mut self,
        key: impl Into<String>,
        source: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    ) -> &mut Self {
        let key = key.into();
        self.sources.retain(|(k, _)| *k != key);
        self.sources.push((key, Arc::new(source)));
        self
    }
}

/// A cluster member's view of its cluster, for tools: the membership table
/// and the reports of its peers. [`ClusterSilo`](crate::ClusterSilo) puts
/// one in its silo's extensions; read it with [`ClusterView::of`].
pub struct ClusterView {
    me: SiloAddress,
    table: Arc<dyn MembershipTable>,
    ownership: Arc<Ownership>,
    clients: DashMap<String, SiloStatsClient<tonic::transport::Channel>>,
    /// How the silo reaches its peers (TLS when the cluster has it).
    connector: Arc<dyn crate::Connector>,
}

impl std::fmt::Debug for ClusterView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterView")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl ClusterView {
    pub(crate) fn new(
        me: SiloAddress,
        table: Arc<dyn MembershipTable>,
        ownership: Arc<Ownership>,
        connector: Arc<dyn crate::Connector>,
    ) -> Self {
        ClusterView {
            me,
            table,
            ownership,
            clients: DashMap::new(),
            connector,
        }
    }

    /// The view of `silo`, if it is a cluster member.
    pub fn of(silo: &Silo) -> Option<&ClusterView> {
        silo.extension::<ClusterView>()
    }

    /// This silo's address.
    pub fn me(&self) -> &SiloAddress {
        &self.me
    }

    /// The active silos this silo places grains on now.
    pub fn active_members(&self) -> Vec<String> {
        self.ownership.members()
    }

    /// The endpoint that owns `id` in this silo's current view (where the
    /// default hash placement activates it), as
    /// [`ClusterSilo::owner_of`](crate::ClusterSilo::owner_of) says: for
    /// plug-ins that hand work to the silo owning it.
    pub fn owner_of(&self, id: &actor_core::GrainId) -> String {
        self.ownership.owner(id)
    }

    /// Reads the membership table (every row, with status, start time,
    /// heartbeat and suspicion votes).
    pub async fn membership(&self) -> Result<MembershipSnapshot> {
        self.table.read_all().await
    }

    /// Asks the silo at `endpoint` for its report, within `timeout`.
    pub async fn peer_report(&self, endpoint: &str, timeout: Duration) -> Result<SiloReport> {
        let unavailable = |reason: String| Error::SiloUnavailable {
            endpoint: endpoint.to_owned(),
            reason,
        };
        let client = match self.clients.get(endpoint) {
            Some(c) => c.clone(),
            None => {
                // Through the silo's connector, as its links: over TLS
                // when the cluster has it.
                let channel = crate::transport::lazy_channel(&self.connector, endpoint, timeout)?;
                let c = SiloStatsClient::new(channel).max_decoding_message_size(MAX_REPORT);
                self.clients.insert(endpoint.to_owned(), c.clone());
                c
            }
        };
        let mut client = client;
        let reply = match tokio::time::timeout(timeout, client.report(pb::ReportRequest {})).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => {
                self.clients.remove(endpoint);
                return Err(unavailable(status.to_string()));
            }
            Err(_) => {
                self.clients.remove(endpoint);
                return Err(unavailable(format!("no report within {timeout:?}")));
            }
        };
        decode_report(&reply.report_json).map_err(unavailable)
    }
}

/// A peer's report from its JSON (serde_json: nesting deeper than 128
/// levels is an error, not a stack overflow).
fn decode_report(json: &[u8]) -> std::result::Result<SiloReport, String> {
    serde_json::from_slice(json).map_err(|e| format!("unreadable report: {e}"))
}

/// Answers `SiloStats` calls with the silo's report while it serves.
#[derive(Clone)]
pub(crate) struct StatsService {
    silo: Silo,
    serving: Arc<AtomicBool>,
}

impl StatsService {
    pub(crate) fn new(silo: Silo, serving: Arc<AtomicBool>) -> Self {
        StatsService { silo, serving }
    }
}

#[tonic::async_trait]
impl SiloStats for StatsService {
    async fn report(
        &self,
        _request: Request<pb::ReportRequest>,
    ) -> std::result::Result<Response<pb::ReportReply>, Status> {
        if !self.serving.load(Ordering::SeqCst) {
            return Err(Status::unavailable("this silo has stopped serving"));
        }
        let report = SiloReport::of(&self.silo);
        let report_json = serde_json::to_vec(&report)
            .map_err(|e| Status::internal(format!("cannot encode the report: {e}")))?;
        Ok(Response::new(pb::ReportReply { report_json }))
    }
}

impl StatsService {
    /// The gRPC server of this service, to serve beside the link.
    pub(crate) fn into_server(self) -> SiloStatsServer<StatsService> {
        // A report request is empty: a peer announcing more is refused
        // before its bytes are buffered.
        SiloStatsServer::new(self).max_decoding_message_size(MAX_REQUEST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_stats_are_read() {
        let p = ProcessStats::now();
        assert!(p.cpus >= 1);
        if cfg!(target_os = "linux") {
            assert!(p.rss_bytes > 1024 * 1024, "rss {}", p.rss_bytes);
        }
    }

    fn report_json() -> Vec<u8> {
        let mut extras = BTreeMap::new();
        extras.insert(
            "streams".to_owned(),
            serde_json::json!({"agents": [1, 2, {"x": null}]}),
        );
        serde_json::to_vec(&SiloReport {
            name: "s".into(),
            endpoint: Some("127.0.0.1:1".into()),
            activations: 3,
            metrics: serde_json::from_value(serde_json::json!({"silo": "s", "grain_types": []}))
                .unwrap(),
            process: ProcessStats::now(),
            extras,
        })
        .unwrap()
    }

    /// What a silo does with a peer's reply: the protobuf message, then
    /// the report's JSON.
    fn decode_reply(bytes: &[u8]) {
        if let Ok(r) = <pb::ReportReply as prost::Message>::decode(bytes) {
            let _ = decode_report(&r.report_json);
        }
        let _ = <pb::ReportRequest as prost::Message>::decode(bytes);
        let _ = decode_report(bytes);
    }

    #[test]
    fn a_valid_report_decodes_and_deep_nesting_is_an_error() {
        assert_eq!(decode_report(&report_json()).unwrap().activations, 3);
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(decode_report(deep.as_bytes()).is_err());
    }

    proptest::proptest! {
        /// Random bytes as a report request or reply: never a panic.
        #[test]
        fn random_reports_never_panic(bytes in crate::link::fuzz::random_bytes()) {
            decode_reply(&bytes);
        }

        /// A valid report reply mutated: never a panic.
        #[test]
        fn mutated_reports_never_panic(mutations in crate::link::fuzz::mutations()) {
            let reply = prost::Message::encode_to_vec(&pb::ReportReply { report_json: report_json() });
            decode_reply(&crate::link::fuzz::apply(&reply, &mutations));
            decode_reply(&crate::link::fuzz::apply(&report_json(), &mutations));
        }
    }

    #[test]
    fn extras_replace_by_key() {
        let mut x = StatsExtras::default();
        x.add("a", || serde_json::json!(1));
        x.add("a", || serde_json::json!(2));
        assert_eq!(x.sources.len(), 1);
        assert_eq!((x.sources[0].1)(), serde_json::json!(2));
    }
}
