//! `deltatocumulative` (also `delta_to_cumulative`): accumulates delta sums, histograms
//! and exponential histograms into cumulative ones, as the Collector's
//! `deltatocumulativeprocessor` (contrib v0.161) does.
//!
//! Each stream (resource + scope + metric name, unit, type, monotonicity + point
//! attributes) keeps its running total. The first point of a stream is passed as it is
//! and starts the total; each later point is added to it and replaced by the total, with
//! the stream's first start timestamp. A point older than the total (timestamp not after
//! the last one) or starting before the stream started is dropped, as is a new stream once
//! `max_streams` are tracked; every drop is counted in
//! `otelcol_deltatocumulative_datapoints{error}`. Cumulative metrics, gauges and summaries
//! pass through untouched.
//!
//! Streams not updated for `max_stale` are forgotten. Like the Collector, staleness is
//! measured on the wall clock (time since a stream was last updated); nothing else here
//! reads it, and the accumulated values come only from the data.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, Metric,
    ResourceMetrics, exponential_histogram_data_point::Buckets, metric, number_data_point,
};
use oxcol_core::telemetry::{Counter, Gauge, Registry};
use oxcol_core::{Batch, GoDuration, Processor, Refusal, Signal};
use serde::Deserialize;

use crate::cumulativetodelta::{scope_identity, stream_key};
use crate::ewma::{SeriesHasher, attributes_hash};

pub const TYPE: &str = "deltatocumulative";
pub const ALIASES: &[&str] = &["deltatocumulative", "delta_to_cumulative"];

/// Most bucket indexes an exponential histogram side may span after a merge; a merge that
/// would need more is refused (the point is dropped, counted as `error="buckets"`).
const MAX_EXPONENTIAL_BUCKETS: i64 = 1 << 16;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Streams not updated for this long (wall clock) are forgotten. Default 5m.
    pub max_stale: GoDuration,
    /// Most streams tracked at once; points of further new streams are dropped.
    /// Default: no limit (the Collector's default), 0 also means no limit.
    pub max_streams: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_stale: GoDuration::from_secs(300),
            max_streams: u64::MAX,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.max_stale.is_zero() {
            errors.push("max_stale must be greater than zero (default 5m)".to_string());
        }
        errors
    }
}

/// Self-telemetry, named after the Collector's `deltatocumulative` metrics.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub accepted: Counter,
    pub dropped_out_of_order: Counter,
    pub dropped_older_start: Counter,
    pub dropped_limit: Counter,
    pub dropped_buckets: Counter,
    pub streams_tracked: Gauge,
    pub streams_evicted: Counter,
}

impl Counters {
    pub fn new(registry: &Registry, processor: &str, config: &Config) -> Counters {
        let datapoints = |error| {
            registry.counter(
                "otelcol_deltatocumulative_datapoints",
                "Data points processed by deltatocumulative, by error (empty: accumulated).",
                &[("processor", processor), ("error", error)],
            )
        };
        let limit = registry.gauge(
            "otelcol_deltatocumulative_streams_limit",
            "The max_streams setting (-1: no limit).",
            &[("processor", processor)],
        );
        limit.set(
            i64::try_from(config.max_streams)
                .ok()
                .filter(|l| *l > 0)
                .unwrap_or(-1),
        );
        let max_stale = registry.gauge(
            "otelcol_deltatocumulative_streams_max_stale",
            "The max_stale setting, in seconds.",
            &[("processor", processor)],
        );
        max_stale.set(i64::try_from(config.max_stale.get().as_secs()).unwrap_or(i64::MAX));
        Counters {
            accepted: datapoints(""),
            dropped_out_of_order: datapoints("out_of_order"),
            dropped_older_start: datapoints("older_start"),
            dropped_limit: datapoints("limit"),
            dropped_buckets: datapoints("buckets"),
            streams_tracked: registry.gauge(
                "otelcol_deltatocumulative_streams_tracked",
                "Streams deltatocumulative holds a running total for.",
                &[("processor", processor)],
            ),
            streams_evicted: registry.counter(
                "otelcol_deltatocumulative_streams_evicted",
                "Streams forgotten after max_stale without an update.",
                &[("processor", processor)],
            ),
        }
    }
}

/// The running total of one stream.
#[derive(Clone, Debug)]
struct Stream {
    start_ts: u64,
    last_ts: u64,
    /// Wall-clock time of the last update (staleness).
    touched: Instant,
    total: Total,
}

#[derive(Clone, Debug)]
enum Total {
    Int(i64),
    Float(f64),
    Histogram(HistogramDataPoint),
    Exponential(ExponentialHistogramDataPoint),
}

#[derive(Debug, PartialEq, Clone, Copy)]
enum Rejected {
    OutOfOrder,
    OlderStart,
    Limit,
    Buckets,
}

pub struct DeltaToCumulativeProcessor {
    id: String,
    max_stale: Duration,
    max_streams: u64,
    streams: HashMap<u64, Stream>,
    counters: Counters,
    /// Wall clock of the current batch (set once per batch).
    now: Instant,
}

impl DeltaToCumulativeProcessor {
    pub fn new(
        id: &str,
        config: &Config,
        registry: Option<&Registry>,
    ) -> Result<DeltaToCumulativeProcessor, String> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(DeltaToCumulativeProcessor {
            id: id.to_string(),
            max_stale: config.max_stale.get(),
            max_streams: if config.max_streams == 0 {
                u64::MAX
            } else {
                config.max_streams
            },
            streams: HashMap::new(),
            counters: registry
                .map(|r| Counters::new(r, id, config))
                .unwrap_or_default(),
            now: Instant::now(),
        })
    }

    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Forgets streams not updated since `now - max_stale`.
    pub fn evict_stale(&mut self, now: Instant) {
        let before = self.streams.len();
        let max_stale = self.max_stale;
        self.streams
            .retain(|_, s| now.saturating_duration_since(s.touched) < max_stale);
        self.counters
            .streams_evicted
            .add((before - self.streams.len()) as u64);
        self.counters.streams_tracked.set(self.streams.len() as i64);
    }

    /// Accumulates the delta metrics of `resources` in place, as of wall-clock `now`.
    pub fn process_metrics_at(&mut self, resources: &mut Vec<ResourceMetrics>, now: Instant) {
        self.now = now;
        for resource in resources.iter_mut() {
            let resource_hash = resource
                .resource
                .as_ref()
                .map_or(0, |r| attributes_hash(&r.attributes));
            for scope in resource.scope_metrics.iter_mut() {
                let scope_hash = scope_identity(scope.scope.as_ref());
                scope
                    .metrics
                    .retain_mut(|metric| self.accumulate_metric(resource_hash, scope_hash, metric));
            }
            resource.scope_metrics.retain(|s| !s.metrics.is_empty());
        }
        resources.retain(|r| !r.scope_metrics.is_empty());
        self.counters.streams_tracked.set(self.streams.len() as i64);
    }

    fn count(&self, outcome: Result<(), Rejected>) {
        match outcome {
            Ok(()) => self.counters.accepted.add(1),
            Err(Rejected::OutOfOrder) => self.counters.dropped_out_of_order.add(1),
            Err(Rejected::OlderStart) => self.counters.dropped_older_start.add(1),
            Err(Rejected::Limit) => self.counters.dropped_limit.add(1),
            Err(Rejected::Buckets) => self.counters.dropped_buckets.add(1),
        }
    }

    /// Accumulates one metric in place; false when all its points were dropped.
    fn accumulate_metric(
        &mut self,
        resource_hash: u64,
        scope_hash: u64,
        metric: &mut Metric,
    ) -> bool {
        let delta = AggregationTemporality::Delta as i32;
        let cumulative = AggregationTemporality::Cumulative as i32;
        let identity = |kind: u8, monotonic: bool| {
            let mut h = SeriesHasher::default();
            (
                resource_hash,
                scope_hash,
                &metric.name,
                &metric.unit,
                kind,
                monotonic,
            )
                .hash(&mut h);
            h.finish()
        };
        match &mut metric.data {
            Some(metric::Data::Sum(sum)) if sum.aggregation_temporality == delta => {
                let base = identity(1, sum.is_monotonic);
                sum.data_points.retain_mut(|dp| {
                    let (tag, value) = match dp.value {
                        Some(number_data_point::Value::AsInt(v)) => (1, Total::Int(v)),
                        Some(number_data_point::Value::AsDouble(v)) => (2, Total::Float(v)),
                        None => return true,
                    };
                    let key = stream_key(base, tag, &dp.attributes);
                    let outcome = self
                        .add(key, dp.start_time_unix_nano, dp.time_unix_nano, value)
                        .map(|(start, total)| {
                            dp.start_time_unix_nano = start;
                            dp.value = match total {
                                Total::Int(v) => Some(number_data_point::Value::AsInt(v)),
                                Total::Float(v) => Some(number_data_point::Value::AsDouble(v)),
                                _ => dp.value,
                            };
                        });
                    self.count(outcome);
                    outcome.is_ok()
                });
                sum.aggregation_temporality = cumulative;
                !sum.data_points.is_empty()
            }
            Some(metric::Data::Histogram(histogram))
                if histogram.aggregation_temporality == delta =>
            {
                let base = identity(2, false);
                histogram.data_points.retain_mut(|dp| {
                    let key = stream_key(base, 3, &dp.attributes);
                    let outcome = self
                        .add(
                            key,
                            dp.start_time_unix_nano,
                            dp.time_unix_nano,
                            Total::Histogram(dp.clone()),
                        )
                        .map(|(_, total)| {
                            if let Total::Histogram(total) = total {
                                *dp = total;
                            }
                        });
                    self.count(outcome);
                    outcome.is_ok()
                });
                histogram.aggregation_temporality = cumulative;
                !histogram.data_points.is_empty()
            }
            Some(metric::Data::ExponentialHistogram(histogram))
                if histogram.aggregation_temporality == delta =>
            {
                let base = identity(3, false);
                histogram.data_points.retain_mut(|dp| {
                    let key = stream_key(base, 4, &dp.attributes);
                    let outcome = self
                        .add(
                            key,
                            dp.start_time_unix_nano,
                            dp.time_unix_nano,
                            Total::Exponential(dp.clone()),
                        )
                        .map(|(_, total)| {
                            if let Total::Exponential(total) = total {
                                *dp = total;
                            }
                        });
                    self.count(outcome);
                    outcome.is_ok()
                });
                histogram.aggregation_temporality = cumulative;
                !histogram.data_points.is_empty()
            }
            _ => true,
        }
    }

    /// Adds one delta point to its stream; returns (stream start, new total).
    fn add(
        &mut self,
        key: u64,
        start_ts: u64,
        ts: u64,
        value: Total,
    ) -> Result<(u64, Total), Rejected> {
        let now = self.now;
        let Some(stream) = self.streams.get_mut(&key) else {
            if self.streams.len() as u64 >= self.max_streams {
                self.evict_stale(now);
                if self.streams.len() as u64 >= self.max_streams {
                    return Err(Rejected::Limit);
                }
            }
            self.streams.insert(
                key,
                Stream {
                    start_ts,
                    last_ts: ts,
                    touched: now,
                    total: value.clone(),
                },
            );
            return Ok((start_ts, value));
        };
        if start_ts < stream.start_ts {
            return Err(Rejected::OlderStart);
        }
        if ts <= stream.last_ts {
            return Err(Rejected::OutOfOrder);
        }
        let total = match (&stream.total, value) {
            (Total::Int(a), Total::Int(b)) => Total::Int(a.wrapping_add(b)),
            (Total::Float(a), Total::Float(b)) => Total::Float(a + b),
            (Total::Histogram(a), Total::Histogram(b)) => Total::Histogram(add_histogram(a, b)),
            (Total::Exponential(a), Total::Exponential(b)) => {
                Total::Exponential(add_exponential(a, b).ok_or(Rejected::Buckets)?)
            }
            // The key carries the type, so this is a hash collision: start over.
            (_, other) => other,
        };
        stream.total = total.clone();
        stream.last_ts = ts;
        stream.touched = now;
        let start = stream.start_ts;
        Ok((start, with_times(total, start, ts)))
    }
}

/// The total with the stream's start and the latest point's timestamp.
fn with_times(total: Total, start: u64, ts: u64) -> Total {
    match total {
        Total::Histogram(mut h) => {
            h.start_time_unix_nano = start;
            h.time_unix_nano = ts;
            Total::Histogram(h)
        }
        Total::Exponential(mut h) => {
            h.start_time_unix_nano = start;
            h.time_unix_nano = ts;
            Total::Exponential(h)
        }
        other => other,
    }
}

/// Adds histogram `b` to the total `a`. Different bounds cannot be merged: the total
/// restarts from `b` (as the Collector does). Sum, min and max survive only when both
/// sides have them.
fn add_histogram(a: &HistogramDataPoint, b: HistogramDataPoint) -> HistogramDataPoint {
    if a.explicit_bounds != b.explicit_bounds {
        return b;
    }
    let mut out = b.clone();
    let n = a.bucket_counts.len().min(b.bucket_counts.len());
    out.bucket_counts = (0..n)
        .map(|i| a.bucket_counts[i].saturating_add(b.bucket_counts[i]))
        .collect();
    out.count = a.count.saturating_add(b.count);
    out.sum = a.sum.zip(b.sum).map(|(x, y)| x + y);
    out.min = a.min.zip(b.min).map(|(x, y)| x.min(y));
    out.max = a.max.zip(b.max).map(|(x, y)| x.max(y));
    out
}

/// Expands `buckets` (at some scale) into (offset, counts), downscaled by `shift` bits.
pub(crate) fn downscale(buckets: Option<&Buckets>, shift: u32) -> (i64, Vec<u64>) {
    let Some(b) = buckets.filter(|b| !b.bucket_counts.is_empty()) else {
        return (0, Vec::new());
    };
    let first = i64::from(b.offset) >> shift;
    let last = (i64::from(b.offset) + b.bucket_counts.len() as i64 - 1) >> shift;
    let mut counts = vec![0u64; (last - first + 1) as usize];
    for (i, c) in b.bucket_counts.iter().enumerate() {
        let index = ((i64::from(b.offset) + i as i64) >> shift) - first;
        counts[index as usize] = counts[index as usize].saturating_add(*c);
    }
    (first, counts)
}

/// Merges two (offset, counts) bucket sides; None when the result would be too wide.
fn merge_sides(a: (i64, Vec<u64>), b: (i64, Vec<u64>)) -> Option<Buckets> {
    let sides: Vec<&(i64, Vec<u64>)> = [&a, &b].into_iter().filter(|s| !s.1.is_empty()).collect();
    if sides.is_empty() {
        return Some(Buckets {
            offset: 0,
            bucket_counts: Vec::new(),
        });
    }
    let first = sides.iter().map(|s| s.0).min()?;
    let last = sides.iter().map(|s| s.0 + s.1.len() as i64 - 1).max()?;
    if last - first + 1 > MAX_EXPONENTIAL_BUCKETS {
        return None;
    }
    let mut counts = vec![0u64; (last - first + 1) as usize];
    for (offset, side) in sides {
        for (i, c) in side.iter().enumerate() {
            let index = (offset + i as i64 - first) as usize;
            counts[index] = counts[index].saturating_add(*c);
        }
    }
    Some(Buckets {
        offset: i32::try_from(first).ok()?,
        bucket_counts: counts,
    })
}

/// Adds exponential histogram `b` to the total `a`: both are brought to the coarser scale,
/// and to the wider zero bucket (buckets entirely inside it move into the zero count).
/// None when the buckets cannot be merged within bounds.
fn add_exponential(
    a: &ExponentialHistogramDataPoint,
    b: ExponentialHistogramDataPoint,
) -> Option<ExponentialHistogramDataPoint> {
    let scale = a.scale.min(b.scale);
    let shift_a = u32::try_from(i64::from(a.scale) - i64::from(scale))
        .ok()
        .filter(|s| *s < 63)?;
    let shift_b = u32::try_from(i64::from(b.scale) - i64::from(scale))
        .ok()
        .filter(|s| *s < 63)?;
    let zero_threshold = a.zero_threshold.max(b.zero_threshold);
    let mut zero_count = a.zero_count.saturating_add(b.zero_count);
    let mut side = |x: Option<&Buckets>, y: Option<&Buckets>| {
        let mut xs = downscale(x, shift_a);
        let mut ys = downscale(y, shift_b);
        zero_count = zero_count.saturating_add(widen_zero(&mut xs, scale, zero_threshold));
        zero_count = zero_count.saturating_add(widen_zero(&mut ys, scale, zero_threshold));
        merge_sides(xs, ys)
    };
    let positive = side(a.positive.as_ref(), b.positive.as_ref())?;
    let negative = side(a.negative.as_ref(), b.negative.as_ref())?;
    let mut out = b.clone();
    out.scale = scale;
    out.zero_threshold = zero_threshold;
    out.zero_count = zero_count;
    out.positive = Some(positive);
    out.negative = Some(negative);
    out.count = a.count.saturating_add(b.count);
    out.sum = a.sum.zip(b.sum).map(|(x, y)| x + y);
    out.min = a.min.zip(b.min).map(|(x, y)| x.min(y));
    out.max = a.max.zip(b.max).map(|(x, y)| x.max(y));
    Some(out)
}

/// Removes the buckets whose upper bound is at or below `threshold` (they now belong to
/// the zero bucket); returns their total count.
pub(crate) fn widen_zero(side: &mut (i64, Vec<u64>), scale: i32, threshold: f64) -> u64 {
    if threshold.is_nan() || threshold <= 0.0 || side.1.is_empty() {
        return 0;
    }
    // Bucket i covers (base^i, base^(i+1)], base = 2^(2^-scale).
    let upper = |i: i64| ((i + 1) as f64 * 2f64.powi(-scale)).exp2();
    let mut moved = 0u64;
    let mut drop = 0usize;
    while drop < side.1.len() && upper(side.0 + drop as i64) <= threshold {
        moved = moved.saturating_add(side.1[drop]);
        drop += 1;
    }
    if drop > 0 {
        side.1.drain(..drop);
        side.0 += drop as i64;
    }
    moved
}

impl Processor for DeltaToCumulativeProcessor {
    fn process(&mut self, mut batch: Batch) -> Result<Batch, Refusal> {
        if batch.signal() != Signal::Metrics {
            return Ok(batch);
        }
        let id = self.id.clone();
        let resources = batch.metrics_mut().map_err(|e| Refusal::Invalid {
            reason: format!("processor {id}: cannot decode the metrics batch: {e}"),
        })?;
        self.process_metrics_at(resources, Instant::now());
        batch.recount();
        Ok(batch)
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(self.max_stale.min(Duration::from_secs(60)))
    }

    fn tick(&mut self) {
        self.evict_stale(Instant::now());
    }
}

#[cfg(test)]
mod tests;
