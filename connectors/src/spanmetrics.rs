//! The `spanmetrics` connector (traces -> metrics): aggregates request counts and durations
//! from spans into `{namespace}.calls` (Sum) and `{namespace}.duration` (Histogram), and
//! optionally span events into `{namespace}.events` (Sum), by `service.name`, `span.name`,
//! `span.kind`, `status.code` and the configured dimensions, one series set per resource,
//! and emits them every `metrics_flush_interval`.
//!
//! Spans are acknowledged once aggregated (as in the Collector); the metrics leave on the
//! timer. State is bounded: at most `resource_metrics_cache_size` resources (the least
//! recently seen is evicted) and, per resource and metric, `aggregation_cardinality_limit`
//! series (or oxcol's bound, [`MAX_SERIES_PER_RESOURCE`], when the limit is 0); data for further
//! series goes to one overflow series with `otel.metric.overflow=true`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, Histogram, HistogramDataPoint, Metric, NumberDataPoint, Sum,
    exemplar, metric, number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use oxcol_core::{Batch, GoDuration, Refusal, Signal};
use serde::Deserialize;

use crate::helper::attributes;
use crate::helper::connector::{
    Connector, Output, decoded_traces, resource_metrics, service_of, unix_nanos,
};

pub const TYPE: &str = "spanmetrics";
pub const ALIASES: &[&str] = &["spanmetrics", "span_metrics"];
pub const PAIRS: &[(Signal, Signal)] = &[(Signal::Traces, Signal::Metrics)];
/// The instrumentation scope of the emitted metrics (the Collector's).
pub const SCOPE_NAME: &str = "spanmetricsconnector";
/// Series per resource when `aggregation_cardinality_limit` is 0 (oxcol's bound; the
/// Collector has none).
pub const MAX_SERIES_PER_RESOURCE: usize = 10_000;

const SERVICE_NAME: &str = "service.name";
const SPAN_NAME: &str = "span.name";
const SPAN_KIND: &str = "span.kind";
const STATUS_CODE: &str = "status.code";
/// The Collector's (v0.161) fifth default dimension: which collector made the series.
pub const COLLECTOR_INSTANCE_ID: &str = "collector.instance.id";
const OVERFLOW: &str = "otel.metric.overflow";
const DELTA: &str = "AGGREGATION_TEMPORALITY_DELTA";
const CUMULATIVE: &str = "AGGREGATION_TEMPORALITY_CUMULATIVE";
const DEFAULT_BUCKETS_MS: &[f64] = &[
    2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0, 5000.0,
    10_000.0, 15_000.0,
];

/// An extra dimension: a span (then scope, then resource) attribute.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    pub name: String,
    #[serde(default)]
    pub default: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
pub enum Unit {
    #[default]
    #[serde(rename = "ms")]
    Milliseconds,
    #[serde(rename = "s")]
    Seconds,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Milliseconds => "ms",
            Unit::Seconds => "s",
        }
    }
    fn of(self, duration: Duration) -> f64 {
        match self {
            Unit::Milliseconds => duration.as_secs_f64() * 1000.0,
            Unit::Seconds => duration.as_secs_f64(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExplicitConfig {
    pub buckets: Vec<GoDuration>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HistogramConfig {
    pub disable: bool,
    pub unit: Unit,
    pub explicit: Option<ExplicitConfig>,
    /// Dimensions of the `duration` metric only.
    pub dimensions: Vec<Dimension>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub histogram: HistogramConfig,
    pub dimensions: Vec<Dimension>,
    /// Dimensions of the `calls` metric only.
    pub calls_dimensions: Vec<Dimension>,
    pub exclude_dimensions: Vec<String>,
    /// Deprecated in the Collector (replaced by `aggregation_cardinality_limit`); accepted,
    /// no effect.
    pub dimensions_cache_size: i64,
    pub resource_metrics_cache_size: usize,
    pub resource_metrics_key_attributes: Vec<String>,
    pub aggregation_temporality: String,
    pub metrics_flush_interval: GoDuration,
    pub metrics_expiration: GoDuration,
    pub namespace: String,
    pub aggregation_cardinality_limit: i64,
    pub exemplars: ExemplarsConfig,
    pub events: EventsConfig,
}

/// The `{namespace}.events` metric: span events counted by the default dimensions, the
/// `dimensions`, and these (looked up on the event).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    pub enabled: bool,
    pub dimensions: Vec<Dimension>,
}

/// Exemplars (trace and span ids of the spans behind a duration point).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExemplarsConfig {
    pub enabled: bool,
    /// Exemplars kept per data point between flushes; later spans add none.
    pub max_per_data_point: usize,
}

impl Default for ExemplarsConfig {
    fn default() -> Self {
        ExemplarsConfig {
            enabled: false,
            max_per_data_point: 5,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            histogram: HistogramConfig::default(),
            dimensions: Vec::new(),
            calls_dimensions: Vec::new(),
            exclude_dimensions: Vec::new(),
            dimensions_cache_size: 0,
            resource_metrics_cache_size: 1000,
            resource_metrics_key_attributes: Vec::new(),
            aggregation_temporality: CUMULATIVE.to_string(),
            metrics_flush_interval: GoDuration::from_secs(60),
            metrics_expiration: GoDuration::default(),
            namespace: "traces.span.metrics".to_string(),
            aggregation_cardinality_limit: 0,
            exemplars: ExemplarsConfig::default(),
            events: EventsConfig::default(),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let base = [
            SERVICE_NAME,
            SPAN_NAME,
            SPAN_KIND,
            STATUS_CODE,
            COLLECTOR_INSTANCE_ID,
        ];
        let mut names: Vec<&str> = base.to_vec();
        check_dimensions("dimensions", &self.dimensions, &mut names, &mut problems);
        // Each metric's own dimensions must not repeat the shared ones.
        for (key, extra) in [
            ("calls_dimensions", &self.calls_dimensions),
            ("histogram.dimensions", &self.histogram.dimensions),
            ("events.dimensions", &self.events.dimensions),
        ] {
            check_dimensions(key, extra, &mut names.clone(), &mut problems);
        }
        if self.events.enabled && self.events.dimensions.is_empty() {
            problems.push("events.dimensions: no dimensions configured for events; add at least one (e.g. name: exception.type)".to_string());
        }
        if self.aggregation_temporality != CUMULATIVE && self.aggregation_temporality != DELTA {
            problems.push(format!(
                "aggregation_temporality {:?} is not one of {CUMULATIVE}, {DELTA}",
                self.aggregation_temporality
            ));
        }
        if self.metrics_flush_interval.is_zero() {
            problems
                .push("metrics_flush_interval must be positive (the default is 60s)".to_string());
        }
        if self.resource_metrics_cache_size == 0 {
            problems.push(
                "resource_metrics_cache_size must be positive (the default is 1000)".to_string(),
            );
        }
        if self.aggregation_cardinality_limit < 0 {
            problems.push(format!("invalid aggregation_cardinality_limit: {}, the limit should be positive (0: no limit)", self.aggregation_cardinality_limit));
        }
        if self
            .histogram
            .explicit
            .as_ref()
            .is_some_and(|e| e.buckets.windows(2).any(|w| w[0] >= w[1]))
        {
            problems.push("histogram.explicit.buckets must be in increasing order".to_string());
        }
        problems
    }

    fn is_delta(&self) -> bool {
        self.aggregation_temporality == DELTA
    }

    fn metric_name(&self, suffix: &str) -> String {
        if self.namespace.is_empty() {
            suffix.to_string()
        } else {
            format!("{}.{suffix}", self.namespace)
        }
    }

    /// Histogram bounds in the configured unit.
    fn bounds(&self) -> Vec<f64> {
        match self
            .histogram
            .explicit
            .as_ref()
            .filter(|e| !e.buckets.is_empty())
        {
            Some(explicit) => explicit
                .buckets
                .iter()
                .map(|d| self.histogram.unit.of(d.get()))
                .collect(),
            None => DEFAULT_BUCKETS_MS
                .iter()
                .map(|ms| self.histogram.unit.of(Duration::from_secs_f64(ms / 1000.0)))
                .collect(),
        }
    }
}

/// Reports empty and repeated names of `dimensions` (`taken`: names already in use).
fn check_dimensions<'a>(
    key: &str,
    dimensions: &'a [Dimension],
    taken: &mut Vec<&'a str>,
    problems: &mut Vec<String>,
) {
    for dimension in dimensions {
        if dimension.name.is_empty() {
            problems.push(format!("{key}: a dimension has an empty name; set `name`"));
        } else if taken.contains(&dimension.name.as_str()) {
            problems.push(format!("{key}: duplicate dimension name {:?} (service.name, span.name, span.kind, status.code and `dimensions` are always present); list each name once", dimension.name));
        }
        taken.push(&dimension.name);
    }
}

/// The values of `dimensions` from the first of `sources` that has each; a missing one
/// takes its `default`, or is left out.
fn dimension_values(dimensions: &[Dimension], sources: &[&[KeyValue]], out: &mut Vec<KeyValue>) {
    for dimension in dimensions {
        match attributes::find_in(sources, &dimension.name) {
            Some(value) => out.push(KeyValue {
                key: dimension.name.clone(),
                value: Some(value.clone()),
                ..Default::default()
            }),
            None => {
                if let Some(default) = &dimension.default {
                    out.push(attributes::string(&dimension.name, default.clone()));
                }
            }
        }
    }
}

type SetKey = Vec<(String, String)>;

/// The series of `labels` in `map`, created if there is room, else the overflow series.
fn series_slot<T>(
    map: &mut BTreeMap<SetKey, T>,
    labels: Vec<KeyValue>,
    limit: usize,
    make: impl FnOnce(Vec<KeyValue>) -> T,
) -> &mut T {
    let mut key = attributes::set_key(&labels);
    let mut labels = labels;
    if !map.contains_key(&key) && map.len() >= limit {
        labels = vec![attributes::boolean(OVERFLOW, true)];
        key = attributes::set_key(&labels);
    }
    map.entry(key).or_insert_with(|| make(labels))
}

/// A Sum series (`calls`, `events`).
struct Count {
    attributes: Vec<KeyValue>,
    value: u64,
    /// Since the last flush (cleared by each flush, whatever the temporality).
    exemplars: Vec<Exemplar>,
}

/// Adds an exemplar of `span` (its duration, stamped with the time it was aggregated, as
/// in the Collector) unless the series has `max` already.
fn add_exemplar(exemplars: &mut Vec<Exemplar>, max: usize, span: &Span, value: f64, now: u64) {
    if exemplars.len() < max {
        exemplars.push(Exemplar {
            time_unix_nano: now,
            trace_id: span.trace_id.clone(),
            span_id: span.span_id.clone(),
            value: Some(exemplar::Value::AsDouble(value)),
            ..Default::default()
        });
    }
}

/// A `duration` series.
struct Durations {
    attributes: Vec<KeyValue>,
    count: u64,
    sum: f64,
    buckets: Vec<u64>,
    /// Since the last flush (cleared by each flush, whatever the temporality).
    exemplars: Vec<Exemplar>,
}

struct ResourceState {
    attributes: Vec<KeyValue>,
    calls: BTreeMap<SetKey, Count>,
    durations: BTreeMap<SetKey, Durations>,
    events: BTreeMap<SetKey, Count>,
    last_seen: SystemTime,
    /// Start of the series' accumulation (the first span, or the last flush with delta).
    start: SystemTime,
}

pub struct SpanMetricsConnector {
    config: Config,
    bounds: Vec<f64>,
    series_limit: usize,
    resources: BTreeMap<SetKey, ResourceState>,
    /// Resources evicted because `resource_metrics_cache_size` was reached.
    pub evicted_resources: u64,
    /// With delta temporality: the last flush, the start time of what accumulates next.
    last_delta_flush: Option<SystemTime>,
    instance_id: Option<String>,
}

impl SpanMetricsConnector {
    pub fn new(config: &Config) -> SpanMetricsConnector {
        let series_limit = match config.aggregation_cardinality_limit {
            limit if limit > 0 => limit as usize,
            _ => MAX_SERIES_PER_RESOURCE,
        };
        SpanMetricsConnector {
            bounds: config.bounds(),
            config: config.clone(),
            series_limit,
            resources: BTreeMap::new(),
            evicted_resources: 0,
            last_delta_flush: None,
            instance_id: None,
        }
    }

    /// Adds the `collector.instance.id` dimension with this value (the agent passes the
    /// telemetry resource's `collector.instance.id`, or a random id per process).
    pub fn with_instance_id(mut self, instance_id: impl Into<String>) -> SpanMetricsConnector {
        self.instance_id = Some(instance_id.into());
        self
    }

    fn resource_key(&self, attributes: &[KeyValue]) -> SetKey {
        if self.config.resource_metrics_key_attributes.is_empty() {
            return attributes::set_key(attributes);
        }
        let kept: Vec<KeyValue> = attributes
            .iter()
            .filter(|kv| {
                self.config
                    .resource_metrics_key_attributes
                    .contains(&kv.key)
            })
            .cloned()
            .collect();
        attributes::set_key(&kept)
    }

    fn series_attributes(
        &self,
        service: &str,
        span: &Span,
        scope: &[KeyValue],
        resource: &[KeyValue],
    ) -> Vec<KeyValue> {
        let excluded = |name: &str| self.config.exclude_dimensions.iter().any(|e| e == name);
        let mut out = Vec::with_capacity(4 + self.config.dimensions.len());
        if !excluded(SERVICE_NAME) {
            out.push(attributes::string(SERVICE_NAME, service));
        }
        if !excluded(SPAN_NAME) {
            out.push(attributes::string(SPAN_NAME, span.name.clone()));
        }
        if !excluded(SPAN_KIND) {
            let kind = span::SpanKind::try_from(span.kind).unwrap_or(span::SpanKind::Unspecified);
            out.push(attributes::string(SPAN_KIND, kind.as_str_name()));
        }
        if !excluded(STATUS_CODE) {
            let code = span
                .status
                .as_ref()
                .and_then(|s| status::StatusCode::try_from(s.code).ok())
                .unwrap_or(status::StatusCode::Unset);
            out.push(attributes::string(STATUS_CODE, code.as_str_name()));
        }
        if let Some(instance_id) = self
            .instance_id
            .as_ref()
            .filter(|_| !excluded(COLLECTOR_INSTANCE_ID))
        {
            out.push(attributes::string(
                COLLECTOR_INSTANCE_ID,
                instance_id.clone(),
            ));
        }
        dimension_values(
            &self.config.dimensions,
            &[&span.attributes, scope, resource],
            &mut out,
        );
        out
    }

    fn aggregate(
        &mut self,
        resource_attributes: &[KeyValue],
        service: &str,
        span: &Span,
        scope: &[KeyValue],
        now: SystemTime,
    ) {
        let key = self.resource_key(resource_attributes);
        let full = !self.resources.contains_key(&key)
            && self.resources.len() >= self.config.resource_metrics_cache_size;
        if full
            && let Some(oldest) = self
                .resources
                .iter()
                .min_by_key(|(_, r)| r.last_seen)
                .map(|(k, _)| k.clone())
        {
            self.resources.remove(&oldest);
            self.evicted_resources += 1;
        }
        let base = self.series_attributes(service, span, scope, resource_attributes);
        let sources: [&[KeyValue]; 3] = [&span.attributes, scope, resource_attributes];
        let buckets = self.bounds.len() + 1;
        let limit = self.series_limit;
        let duration = Duration::from_nanos(
            span.end_time_unix_nano
                .saturating_sub(span.start_time_unix_nano),
        );
        let value = self.config.histogram.unit.of(duration);
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        // Cumulative: from the first span; delta: from the last flush ((T1,T2), (T2,T3) ...).
        let start_of_new = self.last_delta_flush.unwrap_or(now);
        let config = &self.config;
        let state = self.resources.entry(key).or_insert_with(|| ResourceState {
            attributes: resource_attributes.to_vec(),
            calls: BTreeMap::new(),
            durations: BTreeMap::new(),
            events: BTreeMap::new(),
            last_seen: now,
            start: start_of_new,
        });
        state.last_seen = now;
        state.attributes = resource_attributes.to_vec();

        let mut calls_attributes = base.clone();
        dimension_values(&config.calls_dimensions, &sources, &mut calls_attributes);
        let exemplars = if config.exemplars.enabled {
            config.exemplars.max_per_data_point
        } else {
            0
        };
        let now_nanos = unix_nanos(now);
        let calls = series_slot(&mut state.calls, calls_attributes, limit, |attributes| {
            Count {
                attributes,
                value: 0,
                exemplars: Vec::new(),
            }
        });
        calls.value += 1;
        add_exemplar(&mut calls.exemplars, exemplars, span, value, now_nanos);

        if !config.histogram.disable {
            let mut duration_attributes = base.clone();
            dimension_values(
                &config.histogram.dimensions,
                &sources,
                &mut duration_attributes,
            );
            let series = series_slot(
                &mut state.durations,
                duration_attributes,
                limit,
                |attributes| Durations {
                    attributes,
                    count: 0,
                    sum: 0.0,
                    buckets: vec![0; buckets],
                    exemplars: Vec::new(),
                },
            );
            add_exemplar(&mut series.exemplars, exemplars, span, value, now_nanos);
            series.count += 1;
            series.sum += value;
            if let Some(slot) = series.buckets.get_mut(bucket) {
                *slot += 1;
            }
        }

        if config.events.enabled {
            for event in &span.events {
                let mut event_attributes = base.clone();
                dimension_values(
                    &config.events.dimensions,
                    &[&event.attributes],
                    &mut event_attributes,
                );
                let events =
                    series_slot(&mut state.events, event_attributes, limit, |attributes| {
                        Count {
                            attributes,
                            value: 0,
                            exemplars: Vec::new(),
                        }
                    });
                events.value += 1;
                add_exemplar(&mut events.exemplars, exemplars, span, value, now_nanos);
            }
        }
    }

    /// The metrics of every resource; with delta temporality the state is then cleared.
    fn flush(&mut self, now: SystemTime) -> Vec<Output> {
        let expiration = self.config.metrics_expiration.get();
        if !expiration.is_zero() {
            self.resources.retain(|_, r| {
                now.duration_since(r.last_seen)
                    .map(|age| age <= expiration)
                    .unwrap_or(true)
            });
        }
        if self.resources.is_empty() {
            return Vec::new();
        }
        let time = unix_nanos(now);
        let temporality = if self.config.is_delta() {
            AggregationTemporality::Delta
        } else {
            AggregationTemporality::Cumulative
        } as i32;
        let mut out = Vec::with_capacity(self.resources.len());
        for state in self.resources.values() {
            let start = unix_nanos(state.start);
            let sum = |name: &str, series: &BTreeMap<SetKey, Count>| Metric {
                name: self.config.metric_name(name),
                data: Some(metric::Data::Sum(Sum {
                    data_points: series
                        .values()
                        .map(|s| NumberDataPoint {
                            attributes: s.attributes.clone(),
                            start_time_unix_nano: start,
                            time_unix_nano: time,
                            value: Some(number_data_point::Value::AsInt(s.value as i64)),
                            exemplars: s.exemplars.clone(),
                            ..Default::default()
                        })
                        .collect(),
                    aggregation_temporality: temporality,
                    is_monotonic: true,
                })),
                ..Default::default()
            };
            let mut metrics = vec![sum("calls", &state.calls)];
            if !self.config.histogram.disable {
                let points = state
                    .durations
                    .values()
                    .map(|s| HistogramDataPoint {
                        attributes: s.attributes.clone(),
                        start_time_unix_nano: start,
                        time_unix_nano: time,
                        count: s.count,
                        sum: Some(s.sum),
                        bucket_counts: s.buckets.clone(),
                        explicit_bounds: self.bounds.clone(),
                        exemplars: s.exemplars.clone(),
                        ..Default::default()
                    })
                    .collect();
                metrics.push(Metric {
                    name: self.config.metric_name("duration"),
                    unit: self.config.histogram.unit.name().to_string(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: points,
                        aggregation_temporality: temporality,
                    })),
                    ..Default::default()
                });
            }
            // As the Collector: the events metric is there (maybe without points) when enabled.
            if self.config.events.enabled {
                metrics.push(sum("events", &state.events));
            }
            out.push(resource_metrics(
                state.attributes.clone(),
                SCOPE_NAME,
                metrics,
            ));
        }
        if self.config.is_delta() {
            self.resources.clear();
            self.last_delta_flush = Some(now);
        } else {
            for state in self.resources.values_mut() {
                state.calls.values_mut().for_each(|s| s.exemplars.clear());
                state.events.values_mut().for_each(|s| s.exemplars.clear());
                state
                    .durations
                    .values_mut()
                    .for_each(|s| s.exemplars.clear());
            }
        }
        vec![Output::all(Batch::from_metrics(out))]
    }

    /// `calls` series held now, over all resources.
    pub fn series(&self) -> usize {
        self.resources.values().map(|r| r.calls.len()).sum()
    }
}

impl Connector for SpanMetricsConnector {
    fn consume(&mut self, mut batch: Batch, now: SystemTime) -> Result<Vec<Output>, Refusal> {
        let resources = decoded_traces(&mut batch, "spanmetrics")?;
        let empty: &[KeyValue] = &[];
        for resource in resources {
            // As the Collector: spans of a resource without service.name are not counted.
            let Some((resource_attributes, service)) = service_of(resource) else {
                continue;
            };
            for scope in &resource.scope_spans {
                let scope_attributes = scope
                    .scope
                    .as_ref()
                    .map(|s| s.attributes.as_slice())
                    .unwrap_or(empty);
                for span in &scope.spans {
                    self.aggregate(resource_attributes, &service, span, scope_attributes, now);
                }
            }
        }
        Ok(Vec::new())
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(self.config.metrics_flush_interval.get())
    }

    fn tick(&mut self, now: SystemTime) -> Vec<Output> {
        self.flush(now)
    }
}

#[cfg(test)]
mod tests;
