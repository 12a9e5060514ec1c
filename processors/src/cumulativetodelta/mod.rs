//! `cumulativetodelta` (also `cumulative_to_delta`): turns cumulative monotonic sums,
//! histograms and exponential histograms into delta ones, as the Collector's
//! `cumulativetodeltaprocessor` (contrib v0.161) does.
//!
//! Each stream (resource attributes + scope name and version + metric name, unit, type +
//! point attributes + value type + the point's start timestamp) remembers its previous
//! point. A point's delta is its value minus the previous value, and its start timestamp
//! becomes the previous point's timestamp. A new start timestamp is a new stream, whose
//! first point has no reference: `initial_value` decides whether it is dropped (`auto`,
//! `drop`) or kept whole (with its start with `auto`, with start 0 with `keep`). A point
//! whose value went down under the same start was reset: it is dropped. A reset sum
//! point becomes the new reference; a reset histogram or exponential histogram point
//! does not (the previous point stays the reference), as in the Collector.
//! Non-monotonic sums, delta metrics, gauges and summaries pass through untouched.
//!
//! Time comes from data-point timestamps; the only wall-clock reads are the processor's
//! start time (for `initial_value: auto`) and the `max_staleness` sweep, which the
//! Collector also runs on the wall clock. This module must never hold a stream longer
//! than `max_staleness` allows, and never panics on any input.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, exponential_histogram_data_point::Buckets, metric,
    number_data_point,
};
use oxcol_core::telemetry::{Counter, Gauge, Registry};
use oxcol_core::{Batch, GoDuration, Processor, Refusal, Signal};
use regex::Regex;
use serde::Deserialize;

use crate::ewma::{SeriesHasher, attributes_hash};

pub const TYPE: &str = "cumulativetodelta";
pub const ALIASES: &[&str] = &["cumulativetodelta", "cumulative_to_delta"];

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Streams with no point for this long (wall clock) are forgotten. Default 0: never.
    pub max_staleness: GoDuration,
    /// Metrics to convert. Default: every metric.
    pub include: MatchMetrics,
    /// Metrics never converted. Default: none.
    pub exclude: MatchMetrics,
    /// What to do with the first point of a stream: `auto` (default), `keep`, `drop`.
    pub initial_value: InitialValue,
}

/// `include`/`exclude`: the Collector's `filterset.Config` plus `metrics` and
/// `metric_types`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MatchMetrics {
    /// `strict` (exact names) or `regexp` (unanchored regular expressions).
    pub match_type: Option<String>,
    /// The regexp cache settings of `filterset`; accepted, without effect here.
    pub regexp: Option<RegexpSettings>,
    pub metrics: Vec<String>,
    /// `sum`, `histogram`.
    pub metric_types: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RegexpSettings {
    pub cacheenabled: bool,
    pub cachemaxnumentries: usize,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InitialValue {
    /// Keep the first point only when its start time is after the processor started
    /// (the counter began while we were watching), else drop it.
    #[default]
    Auto,
    /// Pass the first point with its cumulative value as the delta.
    Keep,
    /// Always drop the first point.
    Drop,
}

impl MatchMetrics {
    fn validate(&self, key: &str, errors: &mut Vec<String>) {
        match self.match_type.as_deref() {
            None | Some("") => {
                if !self.metrics.is_empty() {
                    errors.push(format!(
                        "{key}.match_type must be set when {key}.metrics is (strict or regexp)"
                    ));
                }
            }
            Some("strict") => {
                if self.metrics.is_empty() {
                    errors.push(format!(
                        "{key}.metrics must be supplied when {key}.match_type is set"
                    ));
                }
            }
            Some("regexp") => {
                if self.metrics.is_empty() {
                    errors.push(format!(
                        "{key}.metrics must be supplied when {key}.match_type is set"
                    ));
                }
                for (i, pattern) in self.metrics.iter().enumerate() {
                    if let Err(e) = Regex::new(pattern) {
                        errors.push(format!(
                            "{key}.metrics[{i}] {pattern:?} is not a valid regexp: {e}"
                        ));
                    }
                }
            }
            Some(other) => errors.push(format!(
                "{key}.match_type {other:?} is not supported: use strict or regexp"
            )),
        }
        for (i, t) in self.metric_types.iter().enumerate() {
            if MetricKind::parse(t).is_none() {
                errors.push(format!(
                    "{key}.metric_types[{i}] {t:?} is not supported: use sum, histogram or exponentialhistogram"
                ));
            }
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        self.include.validate("include", &mut errors);
        self.exclude.validate("exclude", &mut errors);
        errors
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum MetricKind {
    Sum,
    Histogram,
    ExponentialHistogram,
}

impl MetricKind {
    fn parse(text: &str) -> Option<MetricKind> {
        match text.to_ascii_lowercase().as_str() {
            "sum" => Some(MetricKind::Sum),
            "histogram" => Some(MetricKind::Histogram),
            "exponentialhistogram" => Some(MetricKind::ExponentialHistogram),
            _ => None,
        }
    }
}

/// A compiled `include` or `exclude`.
#[derive(Debug, Default)]
struct Filter {
    /// None: every name matches.
    names: Option<NameSet>,
    kinds: Vec<MetricKind>,
}

#[derive(Debug)]
enum NameSet {
    Strict(Vec<String>),
    Regexp(Vec<Regex>),
}

impl NameSet {
    fn matches(&self, name: &str) -> bool {
        match self {
            NameSet::Strict(names) => names.iter().any(|n| n == name),
            NameSet::Regexp(res) => res.iter().any(|re| re.is_match(name)),
        }
    }
}

impl Filter {
    fn new(m: &MatchMetrics) -> Result<Filter, String> {
        let names = if m.metrics.is_empty() {
            None
        } else if m.match_type.as_deref() == Some("regexp") {
            let res = m
                .metrics
                .iter()
                .map(|p| Regex::new(p).map_err(|e| format!("{p:?}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            Some(NameSet::Regexp(res))
        } else {
            Some(NameSet::Strict(m.metrics.clone()))
        };
        Ok(Filter {
            names,
            kinds: m
                .metric_types
                .iter()
                .filter_map(|t| MetricKind::parse(t))
                .collect(),
        })
    }
}

/// The point flag `FLAG_NO_RECORDED_VALUE`: such points carry no value and are dropped.
const NO_RECORDED_VALUE: u32 = 1;

/// Self-telemetry, named after the Collector's `cumulativetodelta` metrics (each with a
/// `processor` attribute added).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Points converted, by metric type: sum, histogram, exponential histogram.
    pub converted: [Counter; 3],
    /// Points dropped: (`metric_type`, `reason`, counter), for the Collector's
    /// combinations only.
    pub dropped: Vec<(&'static str, &'static str, Counter)>,
    pub streams_tracked: Gauge,
}

const KIND_LABELS: [&str; 3] = ["sum", "histogram", "exponential_histogram"];

impl Counters {
    pub fn new(registry: &Registry, processor: &str) -> Counters {
        let converted = KIND_LABELS.map(|kind| {
            registry.counter(
                "otelcol_cumulativetodelta_datapoints",
                "Number of datapoints converted from cumulative to delta temporality.",
                &[("processor", processor), ("metric_type", kind)],
            )
        });
        let mut dropped = Vec::new();
        for kind in KIND_LABELS {
            let reasons: &[&str] = if kind == "histogram" {
                &["initial", "reset", "bucket_mismatch"]
            } else {
                &["initial", "reset"]
            };
            for reason in reasons {
                dropped.push((
                    kind,
                    *reason,
                    registry.counter(
                        "otelcol_cumulativetodelta_datapoints_dropped",
                        "Number of datapoints dropped instead of being converted.",
                        &[
                            ("processor", processor),
                            ("metric_type", kind),
                            ("reason", reason),
                        ],
                    ),
                ));
            }
        }
        Counters {
            converted,
            dropped,
            streams_tracked: registry.gauge(
                "otelcol_cumulativetodelta_streams_tracked",
                "Number of metric streams currently tracked in memory for cumulative-to-delta conversion.",
                &[("processor", processor)],
            ),
        }
    }
}

impl MetricKind {
    fn index(self) -> usize {
        match self {
            MetricKind::Sum => 0,
            MetricKind::Histogram => 1,
            MetricKind::ExponentialHistogram => 2,
        }
    }
}

/// The previous point of a stream.
#[derive(Clone, Debug)]
struct Stream {
    observed_ts: u64,
    value: Previous,
}

#[derive(Clone, Debug)]
enum Previous {
    Int(i64),
    Float(f64),
    Histogram {
        count: u64,
        /// 0 when the point has no sum (what the Collector reads then).
        sum: f64,
        buckets: Vec<u64>,
        bounds: Vec<f64>,
    },
    Exponential(ExpPoint),
}

/// What the Collector remembers of an exponential histogram point.
#[derive(Clone, Debug, PartialEq)]
struct ExpPoint {
    count: u64,
    /// 0 when the point has no sum.
    sum: f64,
    zero_count: u64,
    zero_threshold: f64,
    scale: i32,
    positive: ExpBuckets,
    negative: ExpBuckets,
}

/// One side of an exponential histogram: the index of the first bucket and the counts.
#[derive(Clone, Debug, Default, PartialEq)]
struct ExpBuckets {
    offset: i32,
    counts: Vec<u64>,
}

impl ExpBuckets {
    fn of(buckets: Option<&Buckets>) -> ExpBuckets {
        buckets.map_or_else(ExpBuckets::default, |b| ExpBuckets {
            offset: b.offset,
            counts: b.bucket_counts.clone(),
        })
    }

    fn into_proto(self) -> Buckets {
        Buckets {
            offset: self.offset,
            bucket_counts: self.counts,
        }
    }

    /// Brings the buckets `bits` scale steps down: bucket indexes are divided by 2^bits
    /// (rounding towards minus infinity) and buckets landing on the same index merge.
    fn coarsen(&self, bits: u32) -> ExpBuckets {
        let bits = bits.min(63);
        let offset = i64::from(self.offset) >> bits;
        let mut counts = Vec::new();
        if let Some(last) = self.counts.len().checked_sub(1) {
            let max = (i64::from(self.offset) + last as i64) >> bits;
            counts = vec![0u64; usize::try_from(max - offset + 1).unwrap_or(0)];
            for (i, count) in self.counts.iter().enumerate() {
                let index = ((i64::from(self.offset) + i as i64) >> bits) - offset;
                if let Some(slot) = usize::try_from(index).ok().and_then(|i| counts.get_mut(i)) {
                    *slot = slot.wrapping_add(*count);
                }
            }
        }
        ExpBuckets {
            offset: offset as i32,
            counts,
        }
    }

    /// Removes every bucket up to and including index `threshold_bucket` and returns the
    /// sum of their counts (they move into the zero bucket when the zero threshold grows).
    fn trim_below(&mut self, threshold_bucket: i32) -> u64 {
        let Ok(first_kept) =
            usize::try_from(i64::from(threshold_bucket) - i64::from(self.offset) + 1)
        else {
            return 0;
        };
        let trimmed = first_kept.min(self.counts.len());
        let moved = self.counts[..trimmed]
            .iter()
            .fold(0u64, |total, c| total.wrapping_add(*c));
        self.counts.drain(..trimmed);
        self.offset = (i64::from(self.offset) + trimmed as i64) as i32;
        moved
    }

    /// The delta `self - old` at the same scale, holding only the buckets from the first
    /// that changed to the last that changed (offset 0 and no buckets when none did). None
    /// when a bucket went down (a reset).
    fn minus(&self, old: &ExpBuckets) -> Option<ExpBuckets> {
        let mut out = ExpBuckets::default();
        for (i, count) in self.counts.iter().enumerate() {
            if *count == 0 {
                continue;
            }
            let bucket = i64::from(self.offset) + i as i64;
            let before = usize::try_from(bucket - i64::from(old.offset))
                .ok()
                .and_then(|i| old.counts.get(i))
                .copied()
                .unwrap_or(0);
            if *count == before {
                continue;
            }
            if *count < before {
                return None;
            }
            if out.counts.is_empty() {
                out.offset = bucket as i32;
            } else {
                let next = i64::from(out.offset) + out.counts.len() as i64;
                let gap = usize::try_from(bucket - next).unwrap_or(0);
                out.counts.resize(out.counts.len() + gap, 0);
            }
            out.counts.push(count - before);
        }
        Some(out)
    }
}

#[derive(Debug, PartialEq, Clone, Copy)]
enum DropReason {
    Initial,
    Reset,
    BucketMismatch,
}

impl DropReason {
    fn label(self) -> &'static str {
        match self {
            DropReason::Initial => "initial",
            DropReason::Reset => "reset",
            DropReason::BucketMismatch => "bucket_mismatch",
        }
    }
}

pub struct CumulativeToDeltaProcessor {
    id: String,
    include: Filter,
    exclude: Filter,
    initial_value: InitialValue,
    max_staleness: Duration,
    /// Wall-clock start (ns) for `initial_value: auto`.
    start_time: u64,
    streams: HashMap<u64, Stream>,
    counters: Counters,
    warned_buckets: bool,
}

fn wall_clock_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl CumulativeToDeltaProcessor {
    pub fn new(
        id: &str,
        config: &Config,
        registry: Option<&Registry>,
    ) -> Result<CumulativeToDeltaProcessor, String> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(CumulativeToDeltaProcessor {
            id: id.to_string(),
            include: Filter::new(&config.include)?,
            exclude: Filter::new(&config.exclude)?,
            initial_value: config.initial_value,
            max_staleness: config.max_staleness.get(),
            start_time: wall_clock_nanos(),
            streams: HashMap::new(),
            counters: registry.map(|r| Counters::new(r, id)).unwrap_or_default(),
            warned_buckets: false,
        })
    }

    /// Overrides the processor's start time (ns), which `initial_value: auto` compares
    /// start timestamps with (tests).
    pub fn with_start_time(mut self, start_time_unix_nano: u64) -> Self {
        self.start_time = start_time_unix_nano;
        self
    }

    /// Streams currently remembered.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    fn should_convert(&self, name: &str, kind: MetricKind) -> bool {
        self.include.names.as_ref().is_none_or(|n| n.matches(name))
            && (self.include.kinds.is_empty() || self.include.kinds.contains(&kind))
            && self.exclude.names.as_ref().is_none_or(|n| !n.matches(name))
            && (self.exclude.kinds.is_empty() || !self.exclude.kinds.contains(&kind))
    }

    /// Forgets streams whose last point is older than `now - max_staleness` (the
    /// Collector's sweeper, on the wall clock).
    pub fn evict_stale(&mut self, now_unix_nano: u64) {
        if self.max_staleness.is_zero() {
            return;
        }
        let stale_before = now_unix_nano
            .saturating_sub(u64::try_from(self.max_staleness.as_nanos()).unwrap_or(u64::MAX));
        self.streams.retain(|_, s| s.observed_ts >= stale_before);
        self.counters.streams_tracked.set(self.streams.len() as i64);
    }

    fn count_drop(&mut self, kind: MetricKind, reason: DropReason) {
        let (kind_label, reason_label) = (KIND_LABELS[kind.index()], reason.label());
        if let Some((_, _, counter)) = self
            .counters
            .dropped
            .iter()
            .find(|(k, r, _)| *k == kind_label && *r == reason_label)
        {
            counter.add(1);
        }
        if reason == DropReason::BucketMismatch && !self.warned_buckets {
            self.warned_buckets = true;
            tracing::warn!(processor = %self.id, "points in a histogram series have different buckets; such points are dropped");
        }
    }

    /// Counts a kept point (Ok) or a dropped one (Err) and says whether it is kept.
    fn count(&mut self, kind: MetricKind, outcome: Result<(), DropReason>) -> bool {
        match outcome {
            Ok(()) => {
                self.counters.converted[kind.index()].add(1);
                true
            }
            Err(reason) => {
                self.count_drop(kind, reason);
                false
            }
        }
    }

    /// The first point of a stream: remember it, then keep or drop it per `initial_value`.
    /// When kept, the start timestamp it gets: its own with `auto`, 0 with `keep` (as the
    /// Collector, which leaves the start of a kept first point unset).
    fn first_point(
        &mut self,
        key: u64,
        start_ts: u64,
        observed_ts: u64,
        value: Previous,
    ) -> Result<u64, DropReason> {
        self.streams.insert(key, Stream { observed_ts, value });
        match self.initial_value {
            InitialValue::Auto if start_ts < self.start_time || observed_ts == start_ts => {
                Err(DropReason::Initial)
            }
            InitialValue::Auto => Ok(start_ts),
            InitialValue::Keep => Ok(0),
            InitialValue::Drop => Err(DropReason::Initial),
        }
    }

    pub fn process_metrics(&mut self, resources: &mut Vec<ResourceMetrics>) {
        for resource in resources.iter_mut() {
            let resource_hash = resource
                .resource
                .as_ref()
                .map_or(0, |r| attributes_hash(&r.attributes));
            for scope in resource.scope_metrics.iter_mut() {
                let scope_hash = stream_scope_identity(scope.scope.as_ref());
                scope
                    .metrics
                    .retain_mut(|metric| self.convert_metric(resource_hash, scope_hash, metric));
            }
            resource.scope_metrics.retain(|s| !s.metrics.is_empty());
        }
        resources.retain(|r| !r.scope_metrics.is_empty());
        self.counters.streams_tracked.set(self.streams.len() as i64);
    }

    /// Converts one metric in place; false when all its points were dropped.
    fn convert_metric(&mut self, resource_hash: u64, scope_hash: u64, metric: &mut Metric) -> bool {
        let cumulative = AggregationTemporality::Cumulative as i32;
        let delta = AggregationTemporality::Delta as i32;
        let name = metric.name.clone();
        let base = |kind: u8| {
            let mut h = SeriesHasher::default();
            (resource_hash, scope_hash, &metric.name, &metric.unit, kind).hash(&mut h);
            h.finish()
        };
        match &mut metric.data {
            Some(metric::Data::Sum(sum)) => {
                if sum.aggregation_temporality != cumulative
                    || !sum.is_monotonic
                    || !self.should_convert(&name, MetricKind::Sum)
                {
                    return true;
                }
                let base = base(1);
                sum.data_points
                    .retain_mut(|dp| self.convert_number(base, dp));
                sum.aggregation_temporality = delta;
                !sum.data_points.is_empty()
            }
            Some(metric::Data::Histogram(histogram)) => {
                // Like the Collector, a histogram without points is left as it is.
                if histogram.aggregation_temporality != cumulative
                    || histogram.data_points.is_empty()
                    || !self.should_convert(&name, MetricKind::Histogram)
                {
                    return true;
                }
                let base = base(2);
                histogram
                    .data_points
                    .retain_mut(|dp| self.convert_histogram(base, dp));
                histogram.aggregation_temporality = delta;
                !histogram.data_points.is_empty()
            }
            Some(metric::Data::ExponentialHistogram(histogram)) => {
                if histogram.aggregation_temporality != cumulative
                    || histogram.data_points.is_empty()
                    || !self.should_convert(&name, MetricKind::ExponentialHistogram)
                {
                    return true;
                }
                let base = base(3);
                histogram
                    .data_points
                    .retain_mut(|dp| self.convert_exponential(base, dp));
                histogram.aggregation_temporality = delta;
                !histogram.data_points.is_empty()
            }
            _ => true,
        }
    }

    /// Converts a monotonic sum point in place; false when it is dropped.
    fn convert_number(&mut self, base: u64, dp: &mut NumberDataPoint) -> bool {
        if dp.flags & NO_RECORDED_VALUE != 0 {
            return false;
        }
        // A point without a value reads as the integer 0, as in the Collector.
        let (value, value_tag) = match dp.value {
            Some(number_data_point::Value::AsInt(v)) => (Previous::Int(v), 1u8),
            Some(number_data_point::Value::AsDouble(v)) => {
                // NaN marks staleness: such points are left as they are.
                if v.is_nan() {
                    return true;
                }
                (Previous::Float(v), 2u8)
            }
            None => (Previous::Int(0), 0u8),
        };
        let key = point_key(base, value_tag, dp.start_time_unix_nano, &dp.attributes);
        let outcome = match self.streams.get_mut(&key) {
            None => self
                .first_point(
                    key,
                    dp.start_time_unix_nano,
                    dp.time_unix_nano,
                    value.clone(),
                )
                .map(|start| (start, value)),
            Some(stream) => {
                let start = stream.observed_ts;
                let (reset, delta) = match (&stream.value, &value) {
                    (Previous::Int(prev), Previous::Int(cur)) => {
                        (cur < prev, Previous::Int(cur.wrapping_sub(*prev)))
                    }
                    (Previous::Float(prev), Previous::Float(cur)) => {
                        (cur < prev, Previous::Float(cur - prev))
                    }
                    // The key carries the value type, so this is a hash collision.
                    _ => (true, value.clone()),
                };
                stream.observed_ts = dp.time_unix_nano;
                stream.value = value;
                if reset {
                    Err(DropReason::Reset)
                } else {
                    Ok((start, delta))
                }
            }
        };
        let outcome = outcome.map(|(start, delta)| {
            dp.start_time_unix_nano = start;
            dp.value = match delta {
                Previous::Float(v) => Some(number_data_point::Value::AsDouble(v)),
                Previous::Int(v) => Some(number_data_point::Value::AsInt(v)),
                _ => dp.value,
            };
        });
        self.count(MetricKind::Sum, outcome)
    }

    /// Converts a histogram point in place; false when it is dropped.
    fn convert_histogram(&mut self, base: u64, dp: &mut HistogramDataPoint) -> bool {
        if dp.flags & NO_RECORDED_VALUE != 0 {
            return false;
        }
        let key = point_key(base, 3, dp.start_time_unix_nano, &dp.attributes);
        let mut sum = dp.sum.unwrap_or(0.0);
        let Some(stream) = self.streams.get_mut(&key) else {
            let first = Previous::Histogram {
                count: dp.count,
                sum,
                buckets: dp.bucket_counts.clone(),
                bounds: dp.explicit_bounds.clone(),
            };
            let outcome = self
                .first_point(key, dp.start_time_unix_nano, dp.time_unix_nano, first)
                .map(|start| {
                    dp.start_time_unix_nano = start;
                    dp.min = None;
                    dp.max = None;
                });
            return self.count(MetricKind::Histogram, outcome);
        };
        let Previous::Histogram {
            count: prev_count,
            sum: prev_sum,
            buckets: prev_buckets,
            bounds: prev_bounds,
        } = &stream.value
        else {
            // The key carries the metric type, so this is a hash collision: start over.
            stream.observed_ts = dp.time_unix_nano;
            stream.value = Previous::Histogram {
                count: dp.count,
                sum,
                buckets: dp.bucket_counts.clone(),
                bounds: dp.explicit_bounds.clone(),
            };
            return self.count(MetricKind::Histogram, Err(DropReason::Reset));
        };
        // A NaN sum carries the previous one forward (also into the reference).
        if sum.is_nan() {
            sum = *prev_sum;
        }
        let (prev_count, prev_sum) = (*prev_count, *prev_sum);
        let outcome =
            if prev_buckets.len() != dp.bucket_counts.len() || *prev_bounds != dp.explicit_bounds {
                Err(DropReason::BucketMismatch)
            } else if dp.count < prev_count
                || dp
                    .bucket_counts
                    .iter()
                    .zip(prev_buckets)
                    .any(|(cur, prev)| cur < prev)
            {
                // A reset: dropped, and (as in the Collector) the previous point stays the
                // reference.
                return self.count(MetricKind::Histogram, Err(DropReason::Reset));
            } else {
                Ok(prev_buckets.clone())
            };
        let start = stream.observed_ts;
        stream.observed_ts = dp.time_unix_nano;
        stream.value = Previous::Histogram {
            count: dp.count,
            sum,
            buckets: dp.bucket_counts.clone(),
            bounds: dp.explicit_bounds.clone(),
        };
        let outcome = outcome.map(|prev_buckets| {
            dp.count -= prev_count;
            for (bucket, prev) in dp.bucket_counts.iter_mut().zip(&prev_buckets) {
                *bucket -= *prev;
            }
            if dp.sum.is_some_and(|s| !s.is_nan()) {
                dp.sum = Some(sum - prev_sum);
            }
            // Cumulative min and max cannot be turned into a delta's.
            dp.min = None;
            dp.max = None;
            dp.start_time_unix_nano = start;
        });
        self.count(MetricKind::Histogram, outcome)
    }

    /// Converts an exponential histogram point in place; false when it is dropped.
    fn convert_exponential(&mut self, base: u64, dp: &mut ExponentialHistogramDataPoint) -> bool {
        if dp.flags & NO_RECORDED_VALUE != 0 {
            return false;
        }
        let key = point_key(base, 4, dp.start_time_unix_nano, &dp.attributes);
        let current = ExpPoint {
            count: dp.count,
            sum: dp.sum.unwrap_or(0.0),
            zero_count: dp.zero_count,
            zero_threshold: dp.zero_threshold,
            scale: dp.scale,
            positive: ExpBuckets::of(dp.positive.as_ref()),
            negative: ExpBuckets::of(dp.negative.as_ref()),
        };
        let Some(stream) = self.streams.get_mut(&key) else {
            let first = Previous::Exponential(current);
            let outcome = self
                .first_point(key, dp.start_time_unix_nano, dp.time_unix_nano, first)
                .map(|start| {
                    dp.start_time_unix_nano = start;
                    dp.min = None;
                    dp.max = None;
                });
            return self.count(MetricKind::ExponentialHistogram, outcome);
        };
        let Previous::Exponential(prev) = &mut stream.value else {
            // The key carries the metric type, so this is a hash collision: start over.
            stream.observed_ts = dp.time_unix_nano;
            stream.value = Previous::Exponential(current);
            return self.count(MetricKind::ExponentialHistogram, Err(DropReason::Reset));
        };
        // Count and zero threshold only grow and the scale only shrinks while a cumulative
        // exponential histogram accumulates; anything else is a reset. A reset point is
        // dropped and the previous point stays the reference, as in the Collector.
        if current.count < prev.count
            || current.zero_threshold < prev.zero_threshold
            || current.scale > prev.scale
        {
            return self.count(MetricKind::ExponentialHistogram, Err(DropReason::Reset));
        }
        // The reference is brought to the current zero threshold and scale in place; the
        // Collector keeps it so when a bucket reset follows.
        if current.zero_threshold > prev.zero_threshold {
            let scale_factor = std::f64::consts::LOG2_E * 2f64.powi(prev.scale);
            let threshold_bucket =
                ((current.zero_threshold.ln() * scale_factor).ceil() - 1.0) as i32;
            let moved = prev
                .positive
                .trim_below(threshold_bucket)
                .wrapping_add(prev.negative.trim_below(threshold_bucket));
            prev.zero_count = prev.zero_count.wrapping_add(moved);
        }
        if current.scale < prev.scale {
            let bits =
                u32::try_from(i64::from(prev.scale) - i64::from(current.scale)).unwrap_or(u32::MAX);
            prev.scale = current.scale;
            prev.positive = prev.positive.coarsen(bits);
            prev.negative = prev.negative.coarsen(bits);
        }
        let (Some(positive), Some(negative)) = (
            current.positive.minus(&prev.positive),
            current.negative.minus(&prev.negative),
        ) else {
            return self.count(MetricKind::ExponentialHistogram, Err(DropReason::Reset));
        };
        let (prev_count, prev_sum, prev_zero) = (prev.count, prev.sum, prev.zero_count);
        let start = stream.observed_ts;
        stream.observed_ts = dp.time_unix_nano;
        stream.value = Previous::Exponential(current);
        dp.count -= prev_count;
        if let Some(sum) = dp.sum.filter(|s| !s.is_nan()) {
            dp.sum = Some(sum - prev_sum);
        }
        dp.zero_count = dp.zero_count.wrapping_sub(prev_zero);
        dp.positive = Some(positive.into_proto());
        dp.negative = Some(negative.into_proto());
        dp.min = None;
        dp.max = None;
        dp.start_time_unix_nano = start;
        self.count(MetricKind::ExponentialHistogram, Ok(()))
    }
}

/// The scope part of a stream's identity in this processor: name and version (the
/// Collector leaves the scope's attributes out).
fn stream_scope_identity(scope: Option<&InstrumentationScope>) -> u64 {
    scope.map_or(0, |s| {
        let mut h = SeriesHasher::default();
        (&s.name, &s.version).hash(&mut h);
        h.finish()
    })
}

/// The identity of an instrumentation scope.
pub(crate) fn scope_identity(scope: Option<&InstrumentationScope>) -> u64 {
    match scope {
        None => 0,
        Some(s) => {
            let mut h = SeriesHasher::default();
            (&s.name, &s.version, attributes_hash(&s.attributes)).hash(&mut h);
            h.finish()
        }
    }
}

/// The key of one stream: the metric's identity, the value type, the point attributes.
pub(crate) fn stream_key(metric_identity: u64, value_tag: u8, attributes: &[KeyValue]) -> u64 {
    // combine() mixes both words fully, so the tag may simply be folded into the identity.
    crate::ewma::combine(
        metric_identity ^ u64::from(value_tag),
        attributes_hash(attributes),
    )
}

/// The key of one stream of this processor: like [`stream_key`], plus the point's start
/// timestamp (the Collector's identity holds it, so a new start time is a new stream).
fn point_key(metric_identity: u64, value_tag: u8, start_ts: u64, attributes: &[KeyValue]) -> u64 {
    stream_key(
        crate::ewma::combine(metric_identity, start_ts),
        value_tag,
        attributes,
    )
}

impl Processor for CumulativeToDeltaProcessor {
    fn process(&mut self, mut batch: Batch) -> Result<Batch, Refusal> {
        if batch.signal() != Signal::Metrics {
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

    fn tick_interval(&self) -> Option<Duration> {
        (!self.max_staleness.is_zero()).then_some(self.max_staleness)
    }

    fn tick(&mut self) {
        self.evict_stale(wall_clock_nanos());
    }
}

#[cfg(test)]
mod tests;
