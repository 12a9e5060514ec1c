//! oxcol's own metrics (self-telemetry), under the OpenTelemetry Collector's names so
//! that Collector dashboards work unchanged, rendered as Prometheus text.
//!
//! Counters and gauges are atomics handed out once at build time; the hot path only does
//! a relaxed atomic add. The registry is read only when `/metrics` is scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::signal::Signal;

/// A monotonic counter.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn add(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge that can go up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }
    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

type GaugeFn = Box<dyn Fn() -> f64 + Send + Sync>;

enum Value {
    Counter(Counter),
    Gauge(Gauge),
    GaugeFn(GaugeFn),
}

/// What a family's series hold: a monotonic counter, a gauge set by the code, or a
/// gauge computed when read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadingKind {
    Counter,
    Gauge,
    ComputedGauge,
}

/// One series' value at the moment it was read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reading {
    Counter(u64),
    Gauge(i64),
    ComputedGauge(f64),
}

impl Value {
    fn kind(&self) -> ReadingKind {
        match self {
            Value::Counter(_) => ReadingKind::Counter,
            Value::Gauge(_) => ReadingKind::Gauge,
            Value::GaugeFn(_) => ReadingKind::ComputedGauge,
        }
    }

    fn read(&self) -> Reading {
        match self {
            Value::Counter(c) => Reading::Counter(c.get()),
            Value::Gauge(g) => Reading::Gauge(g.get()),
            Value::GaugeFn(f) => Reading::ComputedGauge(f()),
        }
    }
}

struct Series {
    name: String,
    help: &'static str,
    labels: Vec<(String, String)>,
    value: Value,
}

/// The registry of self-telemetry series.
#[derive(Default)]
pub struct Registry {
    series: Mutex<Vec<Series>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

fn owned_labels(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Series>> {
        // A poisoned lock only means another thread panicked while registering; the
        // data (a list of handles) is still consistent.
        self.series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns the counter `name{labels}`, creating it on first use.
    pub fn counter(&self, name: &str, help: &'static str, labels: &[(&str, &str)]) -> Counter {
        let labels = owned_labels(labels);
        let mut series = self.lock();
        if let Some(existing) = series.iter().find(|s| s.name == name && s.labels == labels) {
            if let Value::Counter(c) = &existing.value {
                return c.clone();
            }
        }
        let counter = Counter::default();
        series.push(Series {
            name: name.to_string(),
            help,
            labels,
            value: Value::Counter(counter.clone()),
        });
        counter
    }

    /// Returns the gauge `name{labels}`, creating it on first use.
    pub fn gauge(&self, name: &str, help: &'static str, labels: &[(&str, &str)]) -> Gauge {
        let labels = owned_labels(labels);
        let mut series = self.lock();
        if let Some(existing) = series.iter().find(|s| s.name == name && s.labels == labels) {
            if let Value::Gauge(g) = &existing.value {
                return g.clone();
            }
        }
        let gauge = Gauge::default();
        series.push(Series {
            name: name.to_string(),
            help,
            labels,
            value: Value::Gauge(gauge.clone()),
        });
        gauge
    }

    /// Registers a gauge computed when scraped.
    pub fn gauge_fn(
        &self,
        name: &str,
        help: &'static str,
        labels: &[(&str, &str)],
        f: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.lock().push(Series {
            name: name.to_string(),
            help,
            labels: owned_labels(labels),
            value: Value::GaugeFn(Box::new(f)),
        });
    }

    /// The series' names, each once, with its help text and kind, sorted by name.
    pub fn families(&self) -> Vec<(String, &'static str, ReadingKind)> {
        let series = self.lock();
        let mut families: Vec<(String, &'static str, ReadingKind)> = Vec::new();
        for s in series.iter() {
            if !families.iter().any(|(name, _, _)| *name == s.name) {
                families.push((s.name.clone(), s.help, s.value.kind()));
            }
        }
        families.sort_by(|a, b| a.0.cmp(&b.0));
        families
    }

    /// Reads every series of the family `name` now: its labels and current value.
    pub fn read_family(&self, name: &str, mut f: impl FnMut(&[(String, String)], Reading)) {
        for s in self.lock().iter().filter(|s| s.name == name) {
            f(&s.labels, s.value.read());
        }
    }

    /// Renders every series in the Prometheus text exposition format 0.0.4.
    pub fn render_prometheus(&self) -> String {
        let series = self.lock();
        let mut names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let mut out = String::with_capacity(series.len() * 96);
        for name in names {
            let mut first = true;
            for s in series.iter().filter(|s| s.name == name) {
                if first {
                    let kind = match s.value {
                        Value::Counter(_) => "counter",
                        _ => "gauge",
                    };
                    let _ = writeln!(out, "# HELP {name} {}", s.help);
                    let _ = writeln!(out, "# TYPE {name} {kind}");
                    first = false;
                }
                out.push_str(name);
                if !s.labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in s.labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let escaped = v
                            .replace('\\', "\\\\")
                            .replace('"', "\\\"")
                            .replace('\n', "\\n");
                        let _ = write!(out, "{k}=\"{escaped}\"");
                    }
                    out.push('}');
                }
                let _ = match s.value.read() {
                    Reading::Counter(value) => writeln!(out, " {value}"),
                    Reading::Gauge(value) => writeln!(out, " {value}"),
                    Reading::ComputedGauge(value) => writeln!(out, " {value}"),
                };
            }
        }
        out
    }
}

/// The tracer of oxcol's own spans (`service.telemetry.traces.processors`), set by the
/// running config; None: no spans, and recording one costs an atomic load.
static SELF_TRACER: std::sync::RwLock<Option<opentelemetry::global::BoxedTracer>> =
    std::sync::RwLock::new(None);
static SELF_TRACING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sets (or, with None, removes) the tracer of oxcol's own spans.
pub fn set_self_tracer(tracer: Option<opentelemetry::global::BoxedTracer>) {
    let mut slot = SELF_TRACER
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    SELF_TRACING.store(tracer.is_some(), Ordering::Relaxed);
    *slot = tracer;
}

/// Whether oxcol records its own spans now (check before building a span's attributes).
pub fn self_tracing() -> bool {
    SELF_TRACING.load(Ordering::Relaxed)
}

/// Records one finished operation of a component as a span, as the Collector's obsreport
/// does (`receiver/ID/MetricsReceived`, `exporter/ID/metrics`): from `started` to now,
/// with `attributes`, and an error status with `error`'s text.
pub fn record_span(
    name: String,
    kind: opentelemetry::trace::SpanKind,
    started: std::time::SystemTime,
    attributes: Vec<opentelemetry::KeyValue>,
    error: Option<String>,
) {
    use opentelemetry::trace::{Span as _, Status, Tracer as _};
    if !self_tracing() {
        return;
    }
    let slot = SELF_TRACER
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(tracer) = slot.as_ref() else {
        return;
    };
    let mut span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_start_time(started)
        .with_attributes(attributes)
        .start(tracer);
    if let Some(error) = error {
        span.set_status(Status::error(error));
    }
    span.end();
}

/// A receiver's counters for one signal and transport.
#[derive(Clone, Debug)]
pub struct ReceiverCounters {
    pub accepted: Counter,
    pub refused: Counter,
    /// What the receiver's spans carry: (span name, receiver id, transport, item name).
    span: Arc<(String, String, String, &'static str)>,
}

impl ReceiverCounters {
    pub fn new(registry: &Registry, receiver: &str, transport: &str, signal: Signal) -> Self {
        let labels = [("receiver", receiver), ("transport", transport)];
        let item = signal.item_name();
        ReceiverCounters {
            accepted: registry.counter(
                &format!("otelcol_receiver_accepted_{item}"),
                "Number of items successfully pushed into the pipeline.",
                &labels,
            ),
            refused: registry.counter(
                &format!("otelcol_receiver_refused_{item}"),
                "Number of items that could not be pushed into the pipeline.",
                &labels,
            ),
            span: Arc::new((
                format!(
                    "receiver/{receiver}/{}",
                    match signal {
                        Signal::Metrics => "MetricsReceived",
                        Signal::Traces => "TraceDataReceived",
                        Signal::Logs => "LogsReceived",
                    }
                ),
                receiver.to_string(),
                transport.to_string(),
                item,
            )),
        }
    }

    /// Counts one request's items as accepted (`refusal` None) or refused, and records
    /// the request as a span when oxcol traces itself.
    pub fn finished(&self, started: std::time::SystemTime, items: u64, refusal: Option<String>) {
        if refusal.is_none() {
            self.accepted.add(items);
        } else {
            self.refused.add(items);
        }
        if !self_tracing() {
            return;
        }
        use opentelemetry::KeyValue;
        let (name, receiver, transport, item) = &*self.span;
        let (accepted, refused) = if refusal.is_none() {
            (items, 0)
        } else {
            (0, items)
        };
        record_span(
            name.clone(),
            opentelemetry::trace::SpanKind::Server,
            started,
            vec![
                KeyValue::new("receiver", receiver.clone()),
                KeyValue::new("transport", transport.clone()),
                KeyValue::new(format!("accepted_{item}"), accepted as i64),
                KeyValue::new(format!("refused_{item}"), refused as i64),
            ],
            refusal,
        );
    }
}

/// An exporter's counters and queue gauges for one signal.
#[derive(Clone, Debug)]
pub struct ExporterCounters {
    /// What the exporter's spans carry: (span name, exporter id, item name).
    span: Arc<(String, String, &'static str)>,
    pub sent: Counter,
    pub send_failed: Counter,
    pub enqueue_failed: Counter,
    pub retries: Counter,
    pub queue_size: Gauge,
    pub queue_capacity: Gauge,
}

impl ExporterCounters {
    pub fn new(registry: &Registry, exporter: &str, signal: Signal) -> Self {
        let labels = [("exporter", exporter)];
        let item = signal.item_name();
        let queue_labels = [("exporter", exporter), ("data_type", signal.name())];
        ExporterCounters {
            span: Arc::new((
                format!("exporter/{exporter}/{}", signal.name()),
                exporter.to_string(),
                item,
            )),
            sent: registry.counter(
                &format!("otelcol_exporter_sent_{item}"),
                "Number of items successfully sent to destination.",
                &labels,
            ),
            send_failed: registry.counter(
                &format!("otelcol_exporter_send_failed_{item}"),
                "Number of items in failed attempts to send to destination.",
                &labels,
            ),
            enqueue_failed: registry.counter(
                &format!("otelcol_exporter_enqueue_failed_{item}"),
                "Number of items failed to be added to the sending queue.",
                &labels,
            ),
            retries: registry.counter(
                &format!("otelcol_exporter_retry_send_{item}"),
                "Number of items in send attempts that failed with a retryable error and were retried.",
                &labels,
            ),
            queue_size: registry.gauge("otelcol_exporter_queue_size", "Current size of the retry queue (in batches).", &queue_labels),
            queue_capacity: registry.gauge(
                "otelcol_exporter_queue_capacity",
                "Fixed capacity of the retry queue (in batches).",
                &queue_labels,
            ),
        }
    }
}

impl ExporterCounters {
    /// Records one send attempt as a span when oxcol traces itself: `sent` items accepted
    /// by the destination, `failed` not, and the attempt's error.
    pub fn trace_attempt(
        &self,
        started: std::time::SystemTime,
        sent: u64,
        failed: u64,
        error: Option<String>,
    ) {
        if !self_tracing() {
            return;
        }
        use opentelemetry::KeyValue;
        let (name, exporter, item) = &*self.span;
        record_span(
            name.clone(),
            opentelemetry::trace::SpanKind::Client,
            started,
            vec![
                KeyValue::new("exporter", exporter.clone()),
                KeyValue::new(format!("sent_{item}"), sent as i64),
                KeyValue::new(format!("send_failed_{item}"), failed as i64),
            ],
            error,
        );
    }
}

/// A processor's counters for one signal, named as the Collector's processorhelper does.
#[derive(Clone, Debug)]
pub struct ProcessorCounters {
    pub incoming: Counter,
    pub outgoing: Counter,
    pub refused: Counter,
}

impl ProcessorCounters {
    pub fn new(registry: &Registry, processor: &str, pipeline: &str, signal: Signal) -> Self {
        let labels = [
            ("processor", processor),
            ("pipeline", pipeline),
            ("otel_signal", signal.name()),
        ];
        ProcessorCounters {
            incoming: registry.counter(
                "otelcol_processor_incoming_items",
                "Number of items passed to the processor.",
                &labels,
            ),
            outgoing: registry.counter(
                "otelcol_processor_outgoing_items",
                "Number of items emitted from the processor.",
                &labels,
            ),
            refused: registry.counter(
                &format!("otelcol_processor_refused_{}", signal.item_name()),
                "Number of items refused by the processor (e.g. memory_limiter above its limit).",
                &[("processor", processor)],
            ),
        }
    }
}

/// The series-bookkeeping counters every stateful processor (ewma, burnrate) reports:
/// (evicted after going stale, dropped because `max_series` was reached, active now).
pub fn series_counters(registry: &Registry, processor: &str) -> (Counter, Counter, Gauge) {
    let labels = [("processor", processor)];
    (
        registry.counter(
            "oxcol_processor_series_evicted",
            "Series evicted from a stateful processor after going stale.",
            &labels,
        ),
        registry.counter(
            "oxcol_processor_series_dropped",
            "New series a stateful processor did not track because max_series was reached.",
            &labels,
        ),
        registry.gauge(
            "oxcol_processor_series_active",
            "Series a stateful processor holds state for.",
            &labels,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_help_type_and_labels() {
        let registry = Registry::new();
        let counters = ReceiverCounters::new(&registry, "otlp", "grpc", Signal::Metrics);
        counters.accepted.add(42);
        let again = ReceiverCounters::new(&registry, "otlp", "grpc", Signal::Metrics);
        again.accepted.add(1);
        registry.gauge_fn("otelcol_process_uptime", "Uptime.", &[], || 1.5);
        let text = registry.render_prometheus();
        assert!(
            text.contains("# TYPE otelcol_receiver_accepted_metric_points counter\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "otelcol_receiver_accepted_metric_points{receiver=\"otlp\",transport=\"grpc\"} 43\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "otelcol_receiver_refused_metric_points{receiver=\"otlp\",transport=\"grpc\"} 0\n"
            ),
            "{text}"
        );
        assert!(text.contains("otelcol_process_uptime 1.5\n"), "{text}");
        // One HELP line per name even with several series.
        ReceiverCounters::new(&registry, "otlp/2", "http", Signal::Metrics);
        let text = registry.render_prometheus();
        assert_eq!(
            text.matches("# HELP otelcol_receiver_accepted_metric_points")
                .count(),
            1
        );
    }
}
