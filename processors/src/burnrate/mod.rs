//! `burnrate`: SLO burn rates computed in the pipeline from a service's own counters or
//! histograms (Scenario 3), as metrics any backend can alert on.
//!
//! For every SLO and group (resource + `group_by` labels) it emits, next to the input:
//! - `slo.burn_rate{slo.name, slo.window}` per configured window: error ratio over the
//!   window divided by the error budget `1 - objective`;
//! - `slo.error_budget.remaining{slo.name}`: `1 - error_ratio(period) / (1 - objective)`;
//! - `slo.alert{slo.name, severity}` (1 or 0): the SRE workbook's multiwindow,
//!   multi-burn-rate rule (page: 14.4x over 1h and 5m, or 6x over 6h and 30m; ticket: 3x
//!   over 1d and 2h, or 1x over 3d and 6h).
//!
//! The error ratio over a window is `increase(bad) / increase(total)` with Prometheus'
//! `increase()` semantics: counter resets add the new value, the result is extrapolated
//! to the window edges (see `window::extrapolated_increase`). Increases are summed per
//! group as the counters arrive (reset-adjusted), and one cumulative sample per group is
//! kept per `resolution` in a ring that spans the longest window.
//!
//! Time comes only from data-point timestamps; this module must never read the wall
//! clock, and its state must stay bounded (`max_series`, `max_groups`, stale state evicted
//! and counted).

pub mod window;

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, metric,
    number_data_point,
};
use oxcol_core::telemetry::{Counter, Gauge as GaugeCounter, Registry};
use oxcol_core::{Batch, Processor, Refusal};
use regex::Regex;
use serde::Deserialize;

pub use window::PromDuration;
use window::{Ring, Sample};

pub const TYPE: &str = "burnrate";
pub const ALIASES: &[&str] = &["burnrate"];

/// OTLP `DataPointFlags.NO_RECORDED_VALUE`.
const FLAG_NO_RECORDED_VALUE: u32 = 1;
/// The error-budget ring holds at most this many samples over `period`.
const PERIOD_SLOTS: i64 = 720;

/// The SRE workbook's alert rows: (severity, long window, short window, burn rate).
const ALERT_ROWS: &[(&str, i64, i64, f64)] = &[
    ("page", 3_600_000, 300_000, 14.4),
    ("page", 21_600_000, 1_800_000, 6.0),
    ("ticket", 86_400_000, 7_200_000, 3.0),
    ("ticket", 259_200_000, 21_600_000, 1.0),
];

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The SLO period the error budget is spent over. Default 30d.
    pub period: PromDuration,
    /// The SLOs. Required (at least one).
    pub slos: Vec<Slo>,
    /// Burn-rate windows, written as Prometheus durations; `slo.window` carries the text.
    /// Default [5m, 30m, 1h, 2h, 6h, 1d, 3d].
    pub windows: Vec<PromDuration>,
    /// At most one cumulative sample per group per this interval is kept. Default 30s.
    pub resolution: PromDuration,
    /// Most counter series tracked at once; new ones beyond it are ignored (counted).
    /// Default 10000.
    pub max_series: usize,
    /// Most (SLO, group) pairs tracked at once; new ones beyond it are ignored (counted).
    /// Default 1000.
    pub max_groups: usize,
    /// A counter series with no point for this long (data time) is forgotten; if it comes
    /// back, its next point is a new start. Default 10m.
    pub stale_after: PromDuration,
    /// Checkpointing to a `file_storage` extension: not supported yet (issue 7); setting
    /// it is a config error.
    pub storage: Option<String>,
}

fn duration(text: &str) -> PromDuration {
    PromDuration::parse(text)
        .unwrap_or_else(|e| panic!("built-in default duration {text:?} must parse: {e}"))
}

impl Default for Config {
    fn default() -> Self {
        Config {
            period: duration("30d"),
            slos: Vec::new(),
            windows: ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]
                .into_iter()
                .map(duration)
                .collect(),
            resolution: duration("30s"),
            max_series: 10_000,
            max_groups: 1000,
            stale_after: duration("10m"),
            storage: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// The `slo.name` label. Required, unique.
    pub name: String,
    /// Target fraction of good events, in (0, 1), e.g. 0.999. Required.
    pub objective: f64,
    /// Bad events (ratio SLI), with `total`.
    #[serde(default)]
    pub errors: Option<Selector>,
    /// All events (ratio SLI), with `errors`.
    #[serde(default)]
    pub total: Option<Selector>,
    /// Latency SLI from a histogram, instead of `errors`/`total`.
    #[serde(default)]
    pub latency: Option<Latency>,
    /// Labels that split the SLO into groups (point attributes, else resource
    /// attributes). Default: none (one group per resource).
    #[serde(default)]
    pub group_by: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Exact metric name (a cumulative or delta sum). Required.
    pub metric: String,
    /// Label name -> fully anchored regex the point attribute must match (a missing
    /// attribute is the empty string, as in PromQL). Default: none.
    #[serde(default, rename = "match")]
    pub match_labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Exact name of an explicit-bucket histogram. Required.
    pub metric: String,
    /// Slower than this is bad. Must equal one of the histogram's bucket bounds. Required.
    pub threshold: f64,
    /// As `Selector.match`. Default: none.
    #[serde(default, rename = "match")]
    pub match_labels: BTreeMap<String, String>,
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.storage.is_some() {
            errors.push("storage is not supported yet: burn-rate state is not checkpointed (a restart starts the windows empty); remove `storage`".to_string());
        }
        if self.slos.is_empty() {
            errors.push(
                "slos is empty: define at least one SLO (name, objective, errors+total or latency)"
                    .to_string(),
            );
        }
        if self.period.millis <= 0 {
            errors.push("period must be greater than zero (default 30d)".to_string());
        }
        if self.resolution.millis <= 0 {
            errors.push("resolution must be greater than zero (default 30s)".to_string());
        }
        if self.stale_after.millis <= 0 {
            errors.push("stale_after must be greater than zero (default 10m)".to_string());
        }
        if self.windows.is_empty() {
            errors.push("windows is empty: list at least one window (default [5m, 30m, 1h, 2h, 6h, 1d, 3d])".to_string());
        }
        for (i, w) in self.windows.iter().enumerate() {
            if w.millis <= 0 {
                errors.push(format!("windows[{i}] must be greater than zero"));
            }
            if self.windows[..i].iter().any(|o| o.millis == w.millis) {
                errors.push(format!("windows[{i}] ({w}) is listed twice"));
            }
        }
        if self.max_series == 0 || self.max_groups == 0 {
            errors.push("max_series and max_groups must be greater than zero".to_string());
        }
        for (i, slo) in self.slos.iter().enumerate() {
            if slo.name.is_empty() {
                errors.push(format!("slos[{i}].name is required"));
            } else if self.slos[..i].iter().any(|o| o.name == slo.name) {
                errors.push(format!("slos[{i}].name {:?} is used twice", slo.name));
            }
            if !(slo.objective > 0.0 && slo.objective < 1.0) {
                errors.push(format!("slos[{i}].objective must be a fraction in (0, 1), e.g. 0.999 for 99.9%; got {}", slo.objective));
            }
            match (&slo.errors, &slo.total, &slo.latency) {
                (Some(_), Some(_), None) | (None, None, Some(_)) => {}
                _ => errors.push(format!(
                    "slos[{i}]: set either errors and total (ratio SLI) or latency (histogram SLI)"
                )),
            }
            let selectors = [
                slo.errors
                    .as_ref()
                    .map(|s| (&s.metric, &s.match_labels, "errors")),
                slo.total
                    .as_ref()
                    .map(|s| (&s.metric, &s.match_labels, "total")),
                slo.latency
                    .as_ref()
                    .map(|s| (&s.metric, &s.match_labels, "latency")),
            ];
            for (metric, labels, key) in selectors.into_iter().flatten() {
                if metric.is_empty() {
                    errors.push(format!("slos[{i}].{key}.metric is required"));
                }
                for (label, pattern) in labels {
                    if let Err(e) = Regex::new(&format!("^(?:{pattern})$")) {
                        errors.push(format!(
                            "slos[{i}].{key}.match.{label}: {pattern:?} is not a valid regex: {e}"
                        ));
                    }
                }
            }
            if let Some(latency) = &slo.latency {
                if !(latency.threshold.is_finite() && latency.threshold > 0.0) {
                    errors.push(format!(
                        "slos[{i}].latency.threshold must be a positive bucket bound (e.g. 0.3)"
                    ));
                }
            }
        }
        errors
    }
}

/// Self-telemetry of one `burnrate` processor.
#[derive(Clone, Debug, Default)]
pub struct BurnrateCounters {
    pub series_evicted: Counter,
    pub series_dropped: Counter,
    pub series_active: GaugeCounter,
    pub groups_evicted: Counter,
    pub groups_dropped: Counter,
    pub points_out_of_order: Counter,
    pub points_without_time: Counter,
    pub threshold_mismatch: Counter,
}

impl BurnrateCounters {
    pub fn new(registry: &Registry, processor: &str) -> BurnrateCounters {
        let p = [("processor", processor)];
        let skipped = |reason| {
            registry.counter(
                "oxcol_processor_points_skipped",
                "Points a stateful processor could not use, by reason.",
                &[("processor", processor), ("reason", reason)],
            )
        };
        let (series_evicted, series_dropped, series_active) = oxcol_core::telemetry::series_counters(registry, processor);
        BurnrateCounters {
            series_evicted,
            series_dropped,
            series_active,
            groups_evicted: registry.counter(
                "oxcol_processor_burnrate_groups_evicted",
                "SLO groups evicted after no data for the longest window.",
                &p,
            ),
            groups_dropped: registry.counter(
                "oxcol_processor_burnrate_groups_dropped",
                "Point uses skipped because their new SLO group would exceed max_groups.",
                &p,
            ),
            points_out_of_order: skipped("out_of_order"),
            points_without_time: skipped("no_timestamp"),
            threshold_mismatch: skipped("latency_threshold_not_a_bucket_bound"),
        }
    }
}

struct LabelMatcher {
    label: String,
    regex: Regex,
}

struct CompiledSlo {
    name: String,
    budget: f64,
    errors: Option<(String, Vec<LabelMatcher>)>,
    total: Option<(String, Vec<LabelMatcher>)>,
    latency: Option<(String, f64, Vec<LabelMatcher>)>,
    group_by: Vec<String>,
    threshold_warned: bool,
}

/// What a counter series contributes to its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Role {
    /// Adds to bad.
    Bad,
    /// Adds to total.
    Total,
    /// Histogram count: adds to total and bad.
    LatencyCount,
    /// Histogram bucket at the threshold: subtracts from bad.
    LatencyGood,
}

#[derive(Clone, Copy, Debug)]
struct CounterSeries {
    last_value: f64,
    last_ts: u64,
    start_ts: u64,
}

struct Group {
    slo: usize,
    labels: Vec<KeyValue>,
    bad: f64,
    total: f64,
    ring: Ring,
    period_ring: Ring,
    last_ts: u64,
}

/// A group touched by the current batch: where its outputs go and at what time.
#[derive(Clone, Copy)]
struct Touched {
    resource: usize,
    scope: usize,
    ts: u64,
}

pub struct BurnrateProcessor {
    id: String,
    slos: Vec<CompiledSlo>,
    windows: Vec<PromDuration>,
    period_ms: i64,
    resolution_ms: i64,
    longest_ms: i64,
    stale_after_ns: u64,
    max_series: usize,
    max_groups: usize,
    series: HashMap<u64, CounterSeries>,
    groups: HashMap<u64, Group>,
    newest_ts: u64,
    last_sweep_ts: u64,
    counters: BurnrateCounters,
}

fn compile_labels(labels: &BTreeMap<String, String>) -> Result<Vec<LabelMatcher>, String> {
    labels
        .iter()
        .map(|(label, pattern)| {
            Regex::new(&format!("^(?:{pattern})$"))
                .map(|regex| LabelMatcher {
                    label: label.clone(),
                    regex,
                })
                .map_err(|e| format!("{pattern:?} is not a valid regex: {e}"))
        })
        .collect()
}

impl BurnrateProcessor {
    pub fn new(
        id: &str,
        config: &Config,
        registry: Option<&Registry>,
    ) -> Result<BurnrateProcessor, String> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let slos = config
            .slos
            .iter()
            .map(|slo| {
                Ok(CompiledSlo {
                    name: slo.name.clone(),
                    budget: 1.0 - slo.objective,
                    errors: slo
                        .errors
                        .as_ref()
                        .map(|s| compile_labels(&s.match_labels).map(|m| (s.metric.clone(), m)))
                        .transpose()?,
                    total: slo
                        .total
                        .as_ref()
                        .map(|s| compile_labels(&s.match_labels).map(|m| (s.metric.clone(), m)))
                        .transpose()?,
                    latency: slo
                        .latency
                        .as_ref()
                        .map(|l| {
                            compile_labels(&l.match_labels)
                                .map(|m| (l.metric.clone(), l.threshold, m))
                        })
                        .transpose()?,
                    group_by: slo.group_by.clone(),
                    threshold_warned: false,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(BurnrateProcessor {
            id: id.to_string(),
            slos,
            windows: config.windows.clone(),
            period_ms: config.period.millis,
            resolution_ms: config.resolution.millis,
            longest_ms: config.windows.iter().map(|w| w.millis).max().unwrap_or(0),
            stale_after_ns: u64::try_from(config.stale_after.millis)
                .unwrap_or(0)
                .saturating_mul(1_000_000),
            max_series: config.max_series,
            max_groups: config.max_groups,
            series: HashMap::new(),
            groups: HashMap::new(),
            newest_ts: 0,
            last_sweep_ts: 0,
            counters: registry
                .map(|r| BurnrateCounters::new(r, id))
                .unwrap_or_default(),
        })
    }

    /// (counter series, groups) currently held.
    pub fn state_size(&self) -> (usize, usize) {
        (self.series.len(), self.groups.len())
    }

    fn process_metrics(&mut self, resources: &mut [ResourceMetrics]) {
        let mut touched: HashMap<u64, Touched> = HashMap::new();
        for (resource_index, resource_metrics) in resources.iter().enumerate() {
            let resource_attributes = resource_metrics
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            let resource_hash = attributes_hash(resource_attributes);
            for (scope_index, scope) in resource_metrics.scope_metrics.iter().enumerate() {
                for metric in &scope.metrics {
                    for slo in 0..self.slos.len() {
                        self.process_metric(
                            slo,
                            metric,
                            resource_attributes,
                            resource_hash,
                            Touched {
                                resource: resource_index,
                                scope: scope_index,
                                ts: 0,
                            },
                            &mut touched,
                        );
                    }
                }
            }
        }
        let mut outputs: BTreeMap<(usize, usize), [Vec<NumberDataPoint>; 3]> = BTreeMap::new();
        let mut touched: Vec<(u64, Touched)> = touched.into_iter().collect();
        touched.sort_unstable_by_key(|(key, t)| (t.resource, t.scope, *key));
        for (key, place) in touched {
            let Some(group) = self.groups.get_mut(&key) else {
                continue;
            };
            let sample = Sample {
                ts_ms: (place.ts / 1_000_000) as i64,
                bad: group.bad,
                total: group.total,
            };
            group.ring.push(sample);
            group.period_ring.push(sample);
            let slot = outputs.entry((place.resource, place.scope)).or_default();
            evaluate(&self.slos[group.slo], group, &self.windows, place.ts, slot);
        }
        for ((resource, scope), [burn, budget, alert]) in outputs {
            let Some(scope_metrics) = resources
                .get_mut(resource)
                .and_then(|r| r.scope_metrics.get_mut(scope))
            else {
                continue;
            };
            for (name, description, points) in [
                (
                    "slo.burn_rate",
                    "Error ratio over the window divided by the error budget (1 - objective).",
                    burn,
                ),
                (
                    "slo.error_budget.remaining",
                    "Fraction of the error budget left over the SLO period (negative when overspent).",
                    budget,
                ),
                (
                    "slo.alert",
                    "1 when the multiwindow multi-burn-rate condition of the severity holds, else 0.",
                    alert,
                ),
            ] {
                if !points.is_empty() {
                    scope_metrics.metrics.push(Metric {
                        name: name.to_string(),
                        description: description.to_string(),
                        unit: "1".to_string(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: points,
                        })),
                        ..Default::default()
                    });
                }
            }
        }
        self.sweep(false);
        self.counters
            .series_active
            .set((self.series.len() + self.groups.len()) as i64);
    }

    fn process_metric(
        &mut self,
        slo_index: usize,
        metric: &Metric,
        resource_attributes: &[KeyValue],
        resource_hash: u64,
        place: Touched,
        touched: &mut HashMap<u64, Touched>,
    ) {
        let slo = &self.slos[slo_index];
        // (role, matchers) pairs this metric feeds for this SLO.
        let mut roles: Vec<Role> = Vec::with_capacity(2);
        if slo.errors.as_ref().is_some_and(|(m, _)| *m == metric.name) {
            roles.push(Role::Bad);
        }
        if slo.total.as_ref().is_some_and(|(m, _)| *m == metric.name) {
            roles.push(Role::Total);
        }
        let is_latency = slo
            .latency
            .as_ref()
            .is_some_and(|(m, _, _)| *m == metric.name);
        if roles.is_empty() && !is_latency {
            return;
        }
        let name_hash = hash_one(&metric.name);
        match &metric.data {
            Some(metric::Data::Sum(sum)) if !roles.is_empty() => {
                let delta = sum.aggregation_temporality == AggregationTemporality::Delta as i32;
                for point in &sum.data_points {
                    let Some(value) = number_value(point) else {
                        continue;
                    };
                    for &role in &roles {
                        let matchers = match role {
                            Role::Bad => &self.slos[slo_index].errors.as_ref().map(|(_, m)| m),
                            _ => &self.slos[slo_index].total.as_ref().map(|(_, m)| m),
                        };
                        if !matchers.is_some_and(|m| labels_match(m, &point.attributes)) {
                            continue;
                        }
                        self.observe(
                            slo_index,
                            role,
                            name_hash,
                            resource_attributes,
                            resource_hash,
                            &point.attributes,
                            point.time_unix_nano,
                            point.start_time_unix_nano,
                            value,
                            delta,
                            place,
                            touched,
                        );
                    }
                }
            }
            Some(metric::Data::Histogram(histogram)) if is_latency => {
                let delta =
                    histogram.aggregation_temporality == AggregationTemporality::Delta as i32;
                let Some(threshold) = self.slos[slo_index].latency.as_ref().map(|l| l.1) else {
                    return;
                };
                for point in &histogram.data_points {
                    let selected = self.slos[slo_index]
                        .latency
                        .as_ref()
                        .is_some_and(|(_, _, m)| labels_match(m, &point.attributes));
                    if point.flags & FLAG_NO_RECORDED_VALUE != 0 || !selected {
                        continue;
                    }
                    let tolerance = 1e-9 * threshold.abs().max(1.0);
                    let Some(bound) = point
                        .explicit_bounds
                        .iter()
                        .position(|b| (b - threshold).abs() <= tolerance)
                    else {
                        self.counters.threshold_mismatch.add(1);
                        let slo = &mut self.slos[slo_index];
                        if !slo.threshold_warned {
                            slo.threshold_warned = true;
                            tracing::warn!(processor = %self.id, slo = %slo.name, threshold, bounds = ?point.explicit_bounds, "latency threshold is not a bucket bound of the histogram: its points are skipped (counted in oxcol_processor_points_skipped); set the threshold to one of the bounds");
                        }
                        continue;
                    };
                    let good: u64 = point.bucket_counts.iter().take(bound + 1).sum();
                    let (ts, start) = (point.time_unix_nano, point.start_time_unix_nano);
                    self.observe(
                        slo_index,
                        Role::LatencyCount,
                        name_hash,
                        resource_attributes,
                        resource_hash,
                        &point.attributes,
                        ts,
                        start,
                        point.count as f64,
                        delta,
                        place,
                        touched,
                    );
                    self.observe(
                        slo_index,
                        Role::LatencyGood,
                        name_hash,
                        resource_attributes,
                        resource_hash,
                        &point.attributes,
                        ts,
                        start,
                        good as f64,
                        delta,
                        place,
                        touched,
                    );
                }
            }
            _ => {}
        }
    }

    /// Feeds one counter value of one series into its group.
    #[allow(clippy::too_many_arguments)]
    fn observe(
        &mut self,
        slo_index: usize,
        role: Role,
        name_hash: u64,
        resource_attributes: &[KeyValue],
        resource_hash: u64,
        attributes: &[KeyValue],
        ts: u64,
        start_ts: u64,
        value: f64,
        delta_temporality: bool,
        place: Touched,
        touched: &mut HashMap<u64, Touched>,
    ) {
        if ts == 0 {
            self.counters.points_without_time.add(1);
            return;
        }
        self.newest_ts = self.newest_ts.max(ts);
        let slo = &self.slos[slo_index];
        let mut group_hasher = DefaultHasher::new();
        (slo_index, resource_hash).hash(&mut group_hasher);
        let mut group_labels: Vec<KeyValue> = Vec::new();
        for label in &slo.group_by {
            let value = lookup(attributes, label)
                .or_else(|| lookup(resource_attributes, label))
                .unwrap_or_default();
            value.hash(&mut group_hasher);
            if !value.is_empty() {
                group_labels.push(string_attribute(label, &value));
            }
        }
        let group_key = group_hasher.finish();
        if !self.groups.contains_key(&group_key) {
            if self.groups.len() >= self.max_groups {
                self.sweep(true);
            }
            if self.groups.len() >= self.max_groups {
                self.counters.groups_dropped.add(1);
                return;
            }
            let span = self.longest_ms + self.resolution_ms;
            self.groups.insert(
                group_key,
                Group {
                    slo: slo_index,
                    labels: group_labels,
                    bad: 0.0,
                    total: 0.0,
                    ring: Ring::new(self.resolution_ms, span),
                    period_ring: Ring::new(
                        (self.period_ms / PERIOD_SLOTS).max(self.resolution_ms),
                        self.period_ms,
                    ),
                    last_ts: ts,
                },
            );
        }
        let mut series_hasher = DefaultHasher::new();
        (group_key, role, name_hash, attributes_hash(attributes)).hash(&mut series_hasher);
        let series_key = series_hasher.finish();
        let increase = match self.series.get_mut(&series_key) {
            Some(series) => {
                if ts <= series.last_ts {
                    self.counters.points_out_of_order.add(1);
                    return;
                }
                let reset = value < series.last_value
                    || (start_ts != 0 && series.start_ts != 0 && start_ts != series.start_ts);
                let increase = if delta_temporality {
                    value
                } else if reset {
                    value
                } else {
                    value - series.last_value
                };
                *series = CounterSeries {
                    last_value: value,
                    last_ts: ts,
                    start_ts,
                };
                increase
            }
            None => {
                if self.series.len() >= self.max_series {
                    self.sweep(true);
                }
                if self.series.len() >= self.max_series {
                    self.counters.series_dropped.add(1);
                    return;
                }
                self.series.insert(
                    series_key,
                    CounterSeries {
                        last_value: value,
                        last_ts: ts,
                        start_ts,
                    },
                );
                // A series first seen in a group's first sample sets the group's base (so the
                // zero-point rule of increase() sees real counter values); one that appears
                // later contributes only what it adds from now on, as in Prometheus.
                let group_is_new = self
                    .groups
                    .get(&group_key)
                    .is_some_and(|g| g.ring.len() == 0);
                if delta_temporality {
                    value
                } else if group_is_new {
                    value
                } else {
                    0.0
                }
            }
        };
        let Some(group) = self.groups.get_mut(&group_key) else {
            return;
        };
        match role {
            Role::Bad => group.bad += increase,
            Role::Total => group.total += increase,
            Role::LatencyCount => {
                group.total += increase;
                group.bad += increase;
            }
            Role::LatencyGood => group.bad -= increase,
        }
        group.last_ts = group.last_ts.max(ts);
        let entry = touched.entry(group_key).or_insert(Touched { ts, ..place });
        entry.ts = entry.ts.max(ts);
    }

    /// Forgets counter series idle for `stale_after` and groups idle for the longest
    /// window, at most every `resolution` of data time unless `force`d (when full).
    fn sweep(&mut self, force: bool) {
        let resolution_ns = u64::try_from(self.resolution_ms)
            .unwrap_or(0)
            .saturating_mul(1_000_000);
        // A forced sweep (when full) runs at most once per data timestamp.
        let since = self.newest_ts.saturating_sub(self.last_sweep_ts);
        if (force && since == 0 && self.last_sweep_ts != 0) || (!force && since < resolution_ns) {
            return;
        }
        self.last_sweep_ts = self.newest_ts;
        let series_cutoff = self.newest_ts.saturating_sub(self.stale_after_ns);
        let before = self.series.len();
        self.series.retain(|_, s| s.last_ts >= series_cutoff);
        self.counters
            .series_evicted
            .add((before - self.series.len()) as u64);
        let group_cutoff = self.newest_ts.saturating_sub(
            u64::try_from(self.longest_ms)
                .unwrap_or(0)
                .saturating_mul(1_000_000),
        );
        let before = self.groups.len();
        self.groups.retain(|_, g| g.last_ts >= group_cutoff);
        self.counters
            .groups_evicted
            .add((before - self.groups.len()) as u64);
    }
}

/// Burn rates, budget and alerts of one group at time `ts`, into `slot`
/// ([burn rates, budget remaining, alerts]).
fn evaluate(
    slo: &CompiledSlo,
    group: &Group,
    windows: &[PromDuration],
    ts: u64,
    slot: &mut [Vec<NumberDataPoint>; 3],
) {
    let now_ms = (ts / 1_000_000) as i64;
    let mut burn_by_window: Vec<(i64, f64)> = Vec::with_capacity(windows.len());
    for window in windows {
        let Some((bad, total)) = group.ring.increase(now_ms, window.millis) else {
            continue;
        };
        if !(total > 0.0) {
            continue;
        }
        let burn = (bad / total) / slo.budget;
        if !burn.is_finite() {
            continue;
        }
        burn_by_window.push((window.millis, burn));
        let mut attributes = vec![
            string_attribute("slo.name", &slo.name),
            string_attribute("slo.window", &window.text),
        ];
        attributes.extend(group.labels.iter().cloned());
        slot[0].push(gauge_point(attributes, ts, burn));
    }
    if let Some((bad, total)) = group.period_ring.span_increase() {
        if total > 0.0 {
            let remaining = 1.0 - (bad / total) / slo.budget;
            let mut attributes = vec![string_attribute("slo.name", &slo.name)];
            attributes.extend(group.labels.iter().cloned());
            slot[1].push(gauge_point(attributes, ts, remaining));
        }
    }
    for severity in ["page", "ticket"] {
        let rows: Vec<_> = ALERT_ROWS
            .iter()
            .filter(|(s, long, short, _)| {
                *s == severity
                    && windows.iter().any(|w| w.millis == *long)
                    && windows.iter().any(|w| w.millis == *short)
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let burn = |window: i64| {
            burn_by_window
                .iter()
                .find(|(w, _)| *w == window)
                .map(|(_, b)| *b)
        };
        let firing = rows.iter().any(|(_, long, short, rate)| {
            burn(*long).is_some_and(|b| b > *rate) && burn(*short).is_some_and(|b| b > *rate)
        });
        let mut attributes = vec![
            string_attribute("slo.name", &slo.name),
            string_attribute("severity", severity),
        ];
        attributes.extend(group.labels.iter().cloned());
        slot[2].push(gauge_point(attributes, ts, if firing { 1.0 } else { 0.0 }));
    }
}

impl Processor for BurnrateProcessor {
    fn process(&mut self, mut batch: Batch) -> Result<Batch, Refusal> {
        if batch.signal() != oxcol_core::Signal::Metrics {
            return Ok(batch);
        }
        let id = self.id.clone();
        let resources = batch.metrics_mut().map_err(|e| Refusal::Invalid {
            reason: format!("processor {id}: cannot decode the metrics batch: {e}"),
        })?;
        self.process_metrics(resources);
        batch.recount();
        Ok(batch)
    }
}

fn number_value(point: &NumberDataPoint) -> Option<f64> {
    if point.flags & FLAG_NO_RECORDED_VALUE != 0 {
        return None;
    }
    let value = match point.value? {
        number_data_point::Value::AsDouble(v) => v,
        number_data_point::Value::AsInt(v) => v as f64,
    };
    value.is_finite().then_some(value)
}

fn labels_match(matchers: &[LabelMatcher], attributes: &[KeyValue]) -> bool {
    matchers.iter().all(|m| {
        m.regex
            .is_match(&lookup(attributes, &m.label).unwrap_or_default())
    })
}

/// The attribute as a string (PromQL sees every label as a string).
fn lookup(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        _ => return None,
    })
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

fn gauge_point(attributes: Vec<KeyValue>, ts: u64, value: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        time_unix_nano: ts,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn hash_one(value: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Order-independent hash of an attribute set (the sum of per-attribute hashes).
fn attributes_hash(attributes: &[KeyValue]) -> u64 {
    attributes.iter().fold(0u64, |acc, kv| {
        let mut h = DefaultHasher::new();
        kv.key.hash(&mut h);
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            None => 0u8.hash(&mut h),
            Some(any_value::Value::StringValue(s)) => (1u8, s).hash(&mut h),
            Some(any_value::Value::BoolValue(b)) => (2u8, b).hash(&mut h),
            Some(any_value::Value::IntValue(i)) => (3u8, i).hash(&mut h),
            Some(any_value::Value::DoubleValue(d)) => (4u8, d.to_bits()).hash(&mut h),
            Some(other) => (5u8, format!("{other:?}")).hash(&mut h),
        }
        acc.wrapping_add(h.finish())
    })
}

#[cfg(test)]
mod tests;
