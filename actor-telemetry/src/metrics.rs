//! The silo's metrics as OTLP instruments. Counters and gauges are read
//! from [`Silo::metrics`] snapshots at each export (the same numbers the
//! dashboard shows); call durations are recorded per call by the filter,
//! as a histogram in seconds. The names are listed in the crate docs.
//! Plug-ins' figures ([`actor_core::MetricSources`]) become one
//! instrument each, registered when a silo that declares them is observed.

use std::sync::Arc;
use std::time::Duration;

use actor_core::{CallInfo, MetricsSnapshot, Silo};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};
use parking_lot::Mutex;

/// Instrument names, public so dashboards and tests refer to one list.
pub mod names {
    /// Calls answered or failed, per silo, grain type and method (counter).
    pub const CALLS: &str = "grains.calls";
    /// Calls that failed, per silo, grain type and method (counter).
    pub const ERRORS: &str = "grains.errors";
    /// Turn duration in seconds, per grain type, method and outcome
    /// (histogram).
    pub const CALL_DURATION: &str = "grains.call.duration";
    /// Live activations, per silo and grain type (gauge).
    pub const ACTIVATIONS: &str = "grains.activations";
    /// Calls queued and not yet started, per silo and grain type (gauge).
    pub const MAILBOX_DEPTH: &str = "grains.mailbox.depth";
    /// Activations created since the silo started (counter).
    pub const ACTIVATED: &str = "grains.activations.created";
    /// Activations deactivated or dropped since the silo started (counter).
    pub const DEACTIVATED: &str = "grains.activations.removed";
    /// Activations whose factory or `on_activate` failed (counter).
    pub const ACTIVATION_FAILURES: &str = "grains.activation.failures";
}

/// The per-call instruments the filter records into.
pub(crate) struct CallInstruments {
    duration: Histogram<f64>,
}

impl CallInstruments {
    pub(crate) fn new(meter: &Meter) -> Self {
        CallInstruments {
            duration: meter
                .f64_histogram(names::CALL_DURATION)
                .with_unit("s")
                .with_description("Duration of grain turns")
                .with_boundaries(vec![
                    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
                .build(),
        }
    }

    pub(crate) fn record(&self, call: &CallInfo<'_>, elapsed: Duration, ok: bool) {
        self.duration.record(
            elapsed.as_secs_f64(),
            &[
                KeyValue::new("grain.type", call.grain.grain_type.as_str().to_owned()),
                KeyValue::new("rpc.method", call.method),
                KeyValue::new("error", !ok),
            ],
        );
    }
}

/// The silos whose snapshots the observable instruments read. A silo that
/// has begun shutting down is dropped at the next read.
#[derive(Clone, Default)]
pub(crate) struct Observed(Arc<Mutex<Vec<Silo>>>);

impl Observed {
    pub(crate) fn add(&self, silo: &Silo) {
        let mut silos = self.0.lock();
        if !silos
            .iter()
            .any(|s| s.name() == silo.name() && !s.is_stopping())
        {
            silos.push(silo.clone());
        }
    }

    pub(crate) fn clear(&self) {
        self.0.lock().clear();
    }

    fn snapshots(&self) -> Vec<MetricsSnapshot> {
        let silos: Vec<Silo> = {
            let mut silos = self.0.lock();
            silos.retain(|s| !s.is_stopping());
            silos.clone()
        };
        silos.iter().map(Silo::metrics).collect()
    }
}

fn type_attrs(silo: &str, grain_type: &str) -> [KeyValue; 2] {
    [
        KeyValue::new("silo.name", silo.to_owned()),
        KeyValue::new("grain.type", grain_type.to_owned()),
    ]
}

fn method_attrs(silo: &str, grain_type: &str, method: &str) -> [KeyValue; 3] {
    [
        KeyValue::new("silo.name", silo.to_owned()),
        KeyValue::new("grain.type", grain_type.to_owned()),
        KeyValue::new("rpc.method", method.to_owned()),
    ]
}

/// Registers the observable instruments; they live as long as `meter`'s
/// provider.
pub(crate) fn register(meter: &Meter, observed: &Observed) {
    let o = observed.clone();
    meter
        .u64_observable_counter(names::CALLS)
        .with_unit("{call}")
        .with_description("Grain calls answered or failed")
        .with_callback(move |obs| {
            for s in o.snapshots() {
                for t in &s.grain_types {
                    for m in &t.methods {
                        obs.observe(m.calls, &method_attrs(&s.silo, &t.grain_type, &m.method));
                    }
                }
            }
        })
        .build();
    let o = observed.clone();
    meter
        .u64_observable_counter(names::ERRORS)
        .with_unit("{call}")
        .with_description("Grain calls that failed")
        .with_callback(move |obs| {
            for s in o.snapshots() {
                for t in &s.grain_types {
                    for m in &t.methods {
                        obs.observe(m.errors, &method_attrs(&s.silo, &t.grain_type, &m.method));
                    }
                }
            }
        })
        .build();
    type Read = fn(&actor_core::GrainTypeStats) -> u64;
    let gauges: [(&'static str, &'static str, &'static str, Read); 2] = [
        (
            names::ACTIVATIONS,
            "{activation}",
            "Live grain activations",
            |t| t.activations,
        ),
        (
            names::MAILBOX_DEPTH,
            "{call}",
            "Calls queued and not yet started",
            |t| t.mailbox_depth,
        ),
    ];
    for (name, unit, description, read) in gauges {
        let o = observed.clone();
        meter
            .u64_observable_gauge(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |obs| {
                for s in o.snapshots() {
                    for t in &s.grain_types {
                        obs.observe(read(t), &type_attrs(&s.silo, &t.grain_type));
                    }
                }
            })
            .build();
    }
    let counters: [(&'static str, &'static str, Read); 3] = [
        (
            names::ACTIVATED,
            "Activations created since the silo started",
            |t| t.activated_total,
        ),
        (
            names::DEACTIVATED,
            "Activations deactivated or dropped since the silo started",
            |t| t.deactivated_total,
        ),
        (
            names::ACTIVATION_FAILURES,
            "Activations whose factory or on_activate failed",
            |t| t.activation_failures,
        ),
    ];
    for (name, description, read) in counters {
        let o = observed.clone();
        meter
            .u64_observable_counter(name)
            .with_unit("{activation}")
            .with_description(description)
            .with_callback(move |obs| {
                for s in o.snapshots() {
                    for t in &s.grain_types {
                        obs.observe(read(t), &type_attrs(&s.silo, &t.grain_type));
                    }
                }
            })
            .build();
    }
}

/// Registers an observable instrument for each plug-in figure `silo`
/// declares that is not registered yet (`registered` holds their names),
/// reading every observed silo's readings of it at each export, with the
/// silo's name beside the reading's own attributes.
pub(crate) fn register_plugins(
    meter: &Meter,
    observed: &Observed,
    registered: &Mutex<std::collections::HashSet<String>>,
    silo: &Silo,
) {
    let Some(sources) = silo.extension::<actor_core::MetricSources>() else {
        return;
    };
    let mut registered = registered.lock();
    for d in sources.descriptors() {
        if !registered.insert(d.name.clone()) {
            continue;
        }
        let o = observed.clone();
        let name = d.name.clone();
        let read = move || {
            let mut out = Vec::new();
            for s in o.snapshots() {
                for p in s.plugin(&name) {
                    let mut attrs = Vec::with_capacity(p.attributes.len() + 1);
                    attrs.push(KeyValue::new("silo.name", s.silo.clone()));
                    attrs.extend(
                        p.attributes
                            .iter()
                            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
                    );
                    out.push((p.value, attrs));
                }
            }
            out
        };
        match d.kind {
            actor_core::MetricKind::Gauge => {
                meter
                    .i64_observable_gauge(d.name.clone())
                    .with_unit(d.unit.clone())
                    .with_description(d.description.clone())
                    .with_callback(move |obs| {
                        for (v, attrs) in read() {
                            obs.observe(v, &attrs);
                        }
                    })
                    .build();
            }
            _ => {
                meter
                    .u64_observable_counter(d.name.clone())
                    .with_unit(d.unit.clone())
                    .with_description(d.description.clone())
                    .with_callback(move |obs| {
                        for (v, attrs) in read() {
                            obs.observe(v.max(0) as u64, &attrs);
                        }
                    })
                    .build();
            }
        }
    }
}
