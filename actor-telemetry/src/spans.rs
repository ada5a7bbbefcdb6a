//! One OTLP span per grain call, written from the incoming call filter
//! when the turn ends: its ids are the runtime's own W3C trace context
//! (so parents on other silos line up), its times are the turn's.
//!
//! Finished spans go to a batch processor whose bounded queue and export
//! run on their own thread: a slow or dead collector drops spans, it never
//! holds up a call.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actor_core::{CallInfo, IncomingCallFilter};
use opentelemetry::trace::{SpanContext, SpanKind, Status, TraceFlags, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SpanData, SpanEvents, SpanLinks, SpanProcessor,
};

use crate::metrics::CallInstruments;

/// The filter a silo runs when telemetry is on.
pub(crate) struct TelemetryFilter {
    pub(crate) spans: Option<Arc<BatchSpanProcessor>>,
    pub(crate) calls: Option<CallInstruments>,
    pub(crate) scope: InstrumentationScope,
}

impl IncomingCallFilter for TelemetryFilter {
    fn on_response(&self, call: &CallInfo<'_>, elapsed: Duration, ok: bool) {
        if let Some(m) = &self.calls {
            m.record(call, elapsed, ok);
        }
        if let Some(spans) = &self.spans
            && call.trace.is_sampled()
        {
            spans.on_end(span_data(call, elapsed, ok, &self.scope));
        }
    }
}

/// The OTLP span of one finished call.
pub(crate) fn span_data(
    call: &CallInfo<'_>,
    elapsed: Duration,
    ok: bool,
    scope: &InstrumentationScope,
) -> SpanData {
    let end = SystemTime::now();
    let grain_type = call.grain.grain_type.as_str();
    let mut attributes = vec![
        KeyValue::new("rpc.system", "grains"),
        KeyValue::new("rpc.service", grain_type.to_owned()),
        KeyValue::new("rpc.method", call.method),
        KeyValue::new("grain.key", call.grain.key.to_string()),
    ];
    if let Some(caller) = call.sender {
        attributes.push(KeyValue::new("grain.caller", caller.to_string()));
    }
    let trace = call.trace;
    SpanData {
        span_context: SpanContext::new(
            opentelemetry::trace::TraceId::from_bytes(trace.trace_id.to_bytes()),
            opentelemetry::trace::SpanId::from_bytes(trace.span_id.to_bytes()),
            TraceFlags::new(trace.flags),
            false,
            TraceState::default(),
        ),
        parent_span_id: call
            .parent_span
            .map_or(opentelemetry::trace::SpanId::INVALID, |p| {
                opentelemetry::trace::SpanId::from_bytes(p.to_bytes())
            }),
        parent_span_is_remote: false,
        span_kind: SpanKind::Server,
        name: Cow::Owned(format!("{grain_type}/{}", call.method)),
        start_time: end.checked_sub(elapsed).unwrap_or(end),
        end_time: end,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        // Unset on success, as the OpenTelemetry conventions ask of
        // instrumentation (Ok is for applications to claim).
        status: if ok {
            Status::Unset
        } else {
            Status::error("the grain call failed (an error reply, or the handler panicked)")
        },
        instrumentation_scope: scope.clone(),
    }
}
