//! # actor-telemetry: OpenTelemetry export for silos
//!
//! Sends what a silo knows about its grain calls to an OpenTelemetry
//! collector over OTLP/gRPC (`opentelemetry-otlp` on tonic):
//!
//! - **traces**: one span per grain call (the turn), named
//!   `{grain type}/{method}`, with the ids of the runtime's W3C trace
//!   context. actor-core gives every turn a span id and makes the turn's
//!   calls its children, on this silo or across the cluster link, so a
//!   request that hops from grain to grain and silo to silo arrives as one
//!   trace. A call made outside any turn with a `traceparent` in its
//!   [`RequestContext`](actor_core::RequestContext) (say, by an axum
//!   handler that received one) continues that trace. Failed calls (error
//!   replies, panics) have an error status.
//! - **metrics**: the silo's own counters (the numbers
//!   [`Silo::metrics`](actor_core::Silo::metrics) and the dashboard show)
//!   and a histogram of turn durations.
//!
//! It is off unless an endpoint is configured, with
//! [`TelemetryBuilder::endpoint`] or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` variable. Off, it adds nothing to a silo;
//! on, a finished call costs one filter call that queues a span for a
//! background thread. A slow or dead collector loses spans (the queue is
//! bounded) and never fails or slows a call.
//!
//! ## Example
//!
//! ```
//! use actor_core::prelude::*;
//! use actor_telemetry::{SiloBuilderTelemetryExt, Telemetry};
//!
//! #[derive(Default)]
//! struct Greeter;
//! impl Grain for Greeter { const TYPE_NAME: &'static str = "greeter"; }
//!
//! #[grain_methods]
//! impl Greeter {
//!     pub async fn hello(&mut self, name: String) -> String { format!("hello, {name}") }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // On when OTEL_EXPORTER_OTLP_ENDPOINT is set, or with
//! // `.endpoint("http://127.0.0.1:4317")`.
//! let telemetry = Telemetry::builder().service_name("greetings").instance("silo-1").build()?;
//!
//! let silo = Silo::builder()
//!     .name("silo-1")
//!     .grain::<Greeter>()
//!     .with_telemetry(&telemetry)   // a span per call, call durations
//!     .start()
//!     .await?;
//! telemetry.observe(&silo);          // activations, calls, errors, mailbox depth
//!
//! // Continue the trace of an incoming HTTP request, if it had one.
//! let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
//! let reply = RequestContext::new()
//!     .with(actor_core::TRACEPARENT, incoming)
//!     .scope(silo.get_grain::<Greeter>("a").hello("you".into()))
//!     .await?;
//! assert_eq!(reply, "hello, you");
//!
//! silo.shutdown().await;
//! telemetry.shutdown().await;        // sends what is left
//! # Ok(())
//! # }
//! ```
//!
//! ## Span
//!
//! | field | value |
//! |---|---|
//! | name | `{grain type}/{method}`, e.g. `account/deposit` |
//! | kind | server |
//! | trace id, span id, parent span id | the call's W3C trace context; the parent is the calling turn (maybe on another silo) or the external `traceparent` |
//! | start, end | the turn's start and end |
//! | status | unset, or `Error` when the reply is an error ([`Message::is_error`](actor_core::Message::is_error)) or the handler panicked |
//! | attributes | `rpc.system` = `grains`, `rpc.service` = grain type, `rpc.method`, `grain.key`, `grain.caller` (the calling grain, if any) |
//! | resource | `service.name`, `service.instance.id` (see [`TelemetryBuilder`]) |
//!
//! Calls that never ran (rejected by a filter, deadlock, timed out in the
//! queue) have no span; they count in `grains.errors`. Traces whose
//! `traceparent` says "not sampled" are not exported.
//!
//! ## Metrics
//!
//! | name | kind | unit | attributes | meaning |
//! |---|---|---|---|---|
//! | `grains.calls` | counter | `{call}` | `silo.name`, `grain.type`, `rpc.method` | calls answered or failed |
//! | `grains.errors` | counter | `{call}` | `silo.name`, `grain.type`, `rpc.method` | calls that failed (error reply, panic, timeout, deadlock, rejection) |
//! | `grains.call.duration` | histogram | `s` | `grain.type`, `rpc.method`, `error` | duration of turns |
//! | `grains.activations` | gauge | `{activation}` | `silo.name`, `grain.type` | live activations |
//! | `grains.mailbox.depth` | gauge | `{call}` | `silo.name`, `grain.type` | calls queued and not yet started |
//! | `grains.activations.created` | counter | `{activation}` | `silo.name`, `grain.type` | activations created |
//! | `grains.activations.removed` | counter | `{activation}` | `silo.name`, `grain.type` | activations deactivated or dropped |
//! | `grains.activation.failures` | counter | `{activation}` | `silo.name`, `grain.type` | activations whose factory or `on_activate` failed |
//!
//! Counters are cumulative since the silo started. The names are also
//! constants in [`names`].
//!
//! Plug-ins add figures of their own through
//! [`MetricSources`](actor_core::MetricSources) (actor-streams' counters
//! per namespace and partition, `streams.*`): each is exported under its
//! declared name, kind and unit, with `silo.name` beside the reading's
//! own attributes.
//!
//! ## Feature flags
//!
//! - `collector`: `collector::Collector`, an in-process OTLP collector
//!   for tests that check what a silo exports.

#[cfg(feature = "collector")]
pub mod collector;
mod error;
mod metrics;
mod spans;
mod telemetry;

pub use error::{Error, Result};
pub use metrics::names;
pub use telemetry::{
    OTEL_EXPORTER_OTLP_ENDPOINT, SiloBuilderTelemetryExt, Telemetry, TelemetryBuilder,
};
