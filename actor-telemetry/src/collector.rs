//! An in-process OTLP collector for tests (feature `collector`): the OTLP
//! trace and metrics gRPC services on a loopback port, keeping every
//! export it receives so a test can look at what a silo sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// The OTLP message types, to look inside what was received.
pub use opentelemetry_proto as proto;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
pub use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value;
pub use opentelemetry_proto::tonic::metrics::v1::Metric;
pub use opentelemetry_proto::tonic::trace::v1::Span;
use parking_lot::Mutex;

/// A span as received, with the `service.instance.id` of its resource.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The exporting process's `service.instance.id` (empty if unset).
    pub instance: String,
    /// The span.
    pub span: Span,
}

/// An OTLP/gRPC collector on `127.0.0.1`, serving until dropped.
#[derive(Clone, Default)]
pub struct Collector {
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    server: Option<Arc<AbortOnDrop>>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector").finish_non_exhaustive()
    }
}

/// The string value of attribute `key`.
pub fn str_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
}

impl Collector {
    /// Starts a collector on a free loopback port; returns it and its
    /// endpoint (`http://127.0.0.1:<port>`).
    pub async fn start() -> std::io::Result<(Collector, String)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let mut c = Collector::default();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(c.clone()))
            .add_service(MetricsServiceServer::new(c.clone()))
            .serve_with_incoming(incoming);
        c.server = Some(Arc::new(AbortOnDrop(tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "test collector stopped");
            }
        }))));
        Ok((c, endpoint))
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let mut out = Vec::new();
        for req in self.traces.lock().iter() {
            for rs in &req.resource_spans {
                let instance = rs
                    .resource
                    .as_ref()
                    .and_then(|r| str_attr(&r.attributes, "service.instance.id"))
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        out.push(ReceivedSpan {
                            instance: instance.clone(),
                            span: span.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// The latest metric `name` exported by the process whose
    /// `service.instance.id` is `instance`.
    pub fn metric(&self, instance: &str, name: &str) -> Option<Metric> {
        let reqs = self.metrics.lock();
        reqs.iter()
            .rev()
            .flat_map(|r| &r.resource_metrics)
            .filter(|rm| {
                rm.resource
                    .as_ref()
                    .and_then(|r| str_attr(&r.attributes, "service.instance.id"))
                    .as_deref()
                    == Some(instance)
            })
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .find(|m| m.name == name)
            .cloned()
    }

    /// Waits until `done` holds, polling every 50 ms; `false` if `timeout`
    /// passed first.
    pub async fn wait_for(&self, timeout: Duration, done: impl Fn(&Collector) -> bool) -> bool {
        let until = Instant::now() + timeout;
        loop {
            if done(self) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.traces.lock().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.metrics.lock().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}
