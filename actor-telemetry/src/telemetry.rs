//! The telemetry handle: builds the OTLP exporters when an endpoint is
//! configured, plugs the call filter into silo builders and registers the
//! silo's metrics. Without an endpoint it is a no-op that adds nothing to
//! the call path.

use std::sync::Arc;
use std::time::Duration;

use actor_core::{CallInfo, IncomingCallFilter, Silo, SiloBuilder};
use opentelemetry::InstrumentationScope;
use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SpanProcessor};

use crate::error::{Error, Result};
use crate::metrics::{CallInstruments, Observed};
use crate::spans::TelemetryFilter;

/// The standard environment variable naming the OTLP collector endpoint;
/// read by [`TelemetryBuilder::build`] when no endpoint was given.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Configures [`Telemetry`].
#[derive(Debug, Clone)]
pub struct TelemetryBuilder {
    endpoint: Option<String>,
    from_env: bool,
    service_name: String,
    instance: Option<String>,
    export_interval: Duration,
    export_timeout: Duration,
    max_queued_spans: usize,
    traces: bool,
    metrics: bool,
}

impl Default for TelemetryBuilder {
    fn default() -> Self {
        TelemetryBuilder {
            endpoint: None,
            from_env: true,
            service_name: "grains".to_owned(),
            instance: None,
            export_interval: Duration::from_secs(5),
            export_timeout: Duration::from_secs(10),
            max_queued_spans: 2048,
            traces: true,
            metrics: true,
        }
    }
}

impl TelemetryBuilder {
    /// The OTLP/gRPC collector endpoint, e.g. `http://127.0.0.1:4317`
    /// (plain HTTP/2: TLS to the collector is not built in).
    /// Without it, [`OTEL_EXPORTER_OTLP_ENDPOINT`] is read; with neither,
    /// telemetry is off.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Whether to fall back to [`OTEL_EXPORTER_OTLP_ENDPOINT`] (default:
    /// yes). Turn it off to keep tests deaf to the environment.
    pub fn from_env(mut self, read: bool) -> Self {
        self.from_env = read;
        self
    }

    /// The `service.name` resource attribute (default `grains`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// The `service.instance.id` resource attribute: which silo (process)
    /// this is. Unset by default.
    pub fn instance(mut self, id: impl Into<String>) -> Self {
        self.instance = Some(id.into());
        self
    }

    /// How often batched spans and metrics are sent (default 5 s).
    pub fn export_interval(mut self, every: Duration) -> Self {
        self.export_interval = every;
        self
    }

    /// How long one export may take before it is abandoned (default 10 s).
    pub fn export_timeout(mut self, timeout: Duration) -> Self {
        self.export_timeout = timeout;
        self
    }

    /// Finished spans waiting for export beyond this many are dropped
    /// (default 2048), so a slow collector costs spans, not memory.
    pub fn max_queued_spans(mut self, spans: usize) -> Self {
        self.max_queued_spans = spans.max(1);
        self
    }

    /// Whether to export traces (default: yes).
    pub fn traces(mut self, on: bool) -> Self {
        self.traces = on;
        self
    }

    /// Whether to export metrics (default: yes).
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// The endpoint telemetry will use, if any: the configured one, else
    /// a non-empty [`OTEL_EXPORTER_OTLP_ENDPOINT`].
    fn resolved_endpoint(&self, env: impl Fn(&str) -> Option<String>) -> Option<String> {
        self.endpoint.clone().or_else(|| {
            self.from_env
                .then(|| env(OTEL_EXPORTER_OTLP_ENDPOINT))
                .flatten()
                .filter(|e| !e.trim().is_empty())
        })
    }

    /// Builds the exporters (inside a tokio runtime: the gRPC client runs
    /// on it). No endpoint gives a disabled handle, which is not an error.
    /// Nothing is sent yet: a collector that is down is found out, and
    /// logged, at export time, and never fails or slows grain calls.
    pub fn build(self) -> Result<Telemetry> {
        let Some(endpoint) = self.resolved_endpoint(|k| std::env::var(k).ok()) else {
            return Ok(Telemetry { inner: None });
        };
        let endpoint = endpoint.trim().to_owned();
        if endpoint.parse::<http_uri::Check>().is_err() {
            return Err(Error::InvalidEndpoint { endpoint });
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoRuntime);
        }
        let mut resource = Resource::builder().with_service_name(self.service_name.clone());
        if let Some(id) = &self.instance {
            resource = resource.with_attribute(KeyValue::new("service.instance.id", id.clone()));
        }
        let resource = resource.build();
        let scope = InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();

        let spans = if self.traces {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(self.export_timeout)
                .build()
                .map_err(|e| Error::Exporter {
                    signal: "traces",
                    message: e.to_string(),
                })?;
            let config = BatchConfigBuilder::default()
                .with_scheduled_delay(self.export_interval)
                .with_max_queue_size(self.max_queued_spans)
                .with_max_export_batch_size(512.min(self.max_queued_spans))
                .build();
            let mut processor = BatchSpanProcessor::builder(exporter)
                .with_batch_config(config)
                .build();
            processor.set_resource(&resource);
            Some(Arc::new(processor))
        } else {
            None
        };

        let observed = Observed::default();
        let (meters, calls) = if self.metrics {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(self.export_timeout)
                .build()
                .map_err(|e| Error::Exporter {
                    signal: "metrics",
                    message: e.to_string(),
                })?;
            let reader = PeriodicReader::builder(exporter)
                .with_interval(self.export_interval)
                .build();
            let provider = SdkMeterProvider::builder()
                .with_reader(reader)
                .with_resource(resource)
                .build();
            let meter = provider.meter_with_scope(scope.clone());
            crate::metrics::register(&meter, &observed);
            let calls = CallInstruments::new(&meter);
            (Some((provider, meter)), Some(calls))
        } else {
            (None, None)
        };
        let (meters, meter) = meters.unzip();

        Ok(Telemetry {
            inner: Some(Arc::new(Inner {
                endpoint,
                timeout: self.export_timeout,
                filter: Arc::new(TelemetryFilter {
                    spans: spans.clone(),
                    calls,
                    scope,
                }),
                spans,
                meters,
                meter,
                plugins: Default::default(),
                observed,
            })),
        })
    }
}

/// Tiny URI check without pulling in another crate: plain `http://` (the
/// exporter is built without TLS), then a non-empty `host[:port]`, no
/// spaces.
mod http_uri {
    pub(super) struct Check;
    impl std::str::FromStr for Check {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let rest = s.strip_prefix("http://").ok_or(())?;
            let authority = rest.split('/').next().unwrap_or("");
            if authority.is_empty() || s.chars().any(char::is_whitespace) {
                return Err(());
            }
            if let Some((_, port)) = authority.rsplit_once(':')
                && !authority.ends_with(']')
                && port.parse::<u16>().is_err()
            {
                return Err(());
            }
            Ok(Check)
        }
    }
}

struct Inner {
    endpoint: String,
    timeout: Duration,
    filter: Arc<TelemetryFilter>,
    spans: Option<Arc<BatchSpanProcessor>>,
    meters: Option<SdkMeterProvider>,
    meter: Option<opentelemetry::metrics::Meter>,
    /// The plug-in figures registered as instruments so far, by name.
    plugins: parking_lot::Mutex<std::collections::HashSet<String>>,
    observed: Observed,
}

/// OTLP export of a process's silos: one span per grain call and the
/// silos' metrics. Cheap to clone. See the crate docs for a tour.
#[derive(Clone)]
pub struct Telemetry {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Starts configuring telemetry.
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder::default()
    }

    /// Telemetry configured from the environment only: on when
    /// [`OTEL_EXPORTER_OTLP_ENDPOINT`] is set.
    pub fn from_env() -> Result<Telemetry> {
        TelemetryBuilder::default().build()
    }

    /// A handle that exports nothing.
    pub fn disabled() -> Telemetry {
        Telemetry { inner: None }
    }

    /// Whether an endpoint is configured.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The collector endpoint, when enabled.
    pub fn endpoint(&self) -> Option<&str> {
        self.inner.as_ref().map(|i| i.endpoint.as_str())
    }

    /// Adds the span and call-duration filter to a silo builder (nothing
    /// when disabled). Prefer [`SiloBuilderTelemetryExt::with_telemetry`].
    pub fn install(&self, builder: SiloBuilder) -> SiloBuilder {
        match &self.inner {
            Some(inner) => builder.incoming_filter(SharedFilter(inner.filter.clone())),
            None => builder,
        }
    }

    /// Exports the metrics of `silo` (activations, calls, errors, mailbox
    /// depth, ..., and the figures its plug-ins declare in
    /// [`MetricSources`](actor_core::MetricSources), such as the stream
    /// counters of actor-streams) from now on, until it shuts down.
    /// Nothing when disabled or when metrics are off.
    pub fn observe(&self, silo: &Silo) {
        if let Some(inner) = &self.inner
            && let Some(meter) = &inner.meter
        {
            inner.observed.add(silo);
            crate::metrics::register_plugins(meter, &inner.observed, &inner.plugins, silo);
        }
    }

    /// Sends what is buffered now (spans and a metrics collection) and
    /// waits for it, at most the export timeout per signal.
    pub async fn flush(&self) {
        let Some(inner) = self.inner.clone() else {
            return;
        };
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(s) = &inner.spans
                && let Err(e) = s.force_flush()
            {
                tracing::warn!(error = %e, "flushing spans failed");
            }
            if let Some(m) = &inner.meters
                && let Err(e) = m.force_flush()
            {
                tracing::warn!(error = %e, "flushing metrics failed");
            }
        })
        .await;
    }

    /// Exports what is left and stops the exporters; waits at most about
    /// twice the export timeout. Silos keep running; their calls are no
    /// longer exported.
    pub async fn shutdown(&self) {
        let Some(inner) = self.inner.clone() else {
            return;
        };
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(m) = &inner.meters
                && let Err(e) = m.shutdown_with_timeout(inner.timeout)
            {
                tracing::debug!(error = %e, "shutting down the metrics exporter");
            }
            inner.observed.clear();
            if let Some(s) = &inner.spans
                && let Err(e) = s.shutdown_with_timeout(inner.timeout)
            {
                tracing::debug!(error = %e, "shutting down the span exporter");
            }
        })
        .await;
    }
}

/// The filter as installed in a silo: shares the telemetry's.
struct SharedFilter(Arc<TelemetryFilter>);

impl IncomingCallFilter for SharedFilter {
    fn on_response(&self, call: &CallInfo<'_>, elapsed: Duration, ok: bool) {
        self.0.on_response(call, elapsed, ok);
    }
}

/// Plugs [`Telemetry`] into a [`SiloBuilder`].
pub trait SiloBuilderTelemetryExt {
    /// Exports a span per grain call on this silo and its call durations
    /// through `telemetry` (nothing when it is disabled). Call
    /// [`Telemetry::observe`] with the started silo for its other metrics.
    fn with_telemetry(self, telemetry: &Telemetry) -> Self;
}

impl SiloBuilderTelemetryExt for SiloBuilder {
    fn with_telemetry(self, telemetry: &Telemetry) -> Self {
        telemetry.install(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_comes_from_the_builder_then_the_environment() {
        let env = |v: Option<&'static str>| {
            move |k: &str| {
                assert_eq!(k, OTEL_EXPORTER_OTLP_ENDPOINT);
                v.map(str::to_owned)
            }
        };
        let b = TelemetryBuilder::default();
        assert_eq!(b.resolved_endpoint(env(None)), None);
        assert_eq!(b.resolved_endpoint(env(Some("  "))), None, "blank is unset");
        assert_eq!(
            b.resolved_endpoint(env(Some("http://collector:4317")))
                .as_deref(),
            Some("http://collector:4317")
        );
        let given = TelemetryBuilder::default().endpoint("http://here:4317");
        assert_eq!(
            given
                .resolved_endpoint(env(Some("http://collector:4317")))
                .as_deref(),
            Some("http://here:4317"),
            "the builder wins"
        );
        let deaf = TelemetryBuilder::default().from_env(false);
        assert_eq!(
            deaf.resolved_endpoint(env(Some("http://collector:4317"))),
            None
        );
    }

    #[test]
    fn endpoints_are_checked() {
        for good in [
            "http://127.0.0.1:4317",
            "http://otel.example:4317/",
            "http://[::1]:4317",
            "http://collector",
        ] {
            assert!(good.parse::<http_uri::Check>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "127.0.0.1:4317",
            "http://",
            "http://h:99999",
            "http://h:x",
            "http://a b",
            "https://tls.example:4317",
        ] {
            assert!(bad.parse::<http_uri::Check>().is_err(), "{bad}");
        }
    }
}
