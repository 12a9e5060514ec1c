//! What the statsd receiver holds during one `aggregation_interval`, and the OTLP metrics
//! it releases at the end of it, as the Collector's statsd receiver builds them:
//!
//! - one `ResourceMetrics` (empty resource) per source: client address and port, the
//!   address only (`enable_ip_only_aggregation`), or one for all (`ignore_host`);
//! - inside it, one `ScopeMetrics` per metric (scope
//!   `github.com/open-telemetry/opentelemetry-collector-contrib/receiver/statsdreceiver`),
//!   in the Collector's order: gauges, timer/histogram gauges, counters, (oxcol) sets,
//!   summaries, histograms;
//! - a series is (name, type, attributes); counters are delta sums (start = interval
//!   start), gauges keep the last value (deltas `+n`/`-n` add to it), timers and
//!   histograms follow `timer_histogram_mapping`.
//!
//! Time comes in as arguments (unix nanoseconds), never from the clock, so tests are
//! exact. Memory is bounded by `max_points_per_interval`: new series and stored samples
//! past it are dropped (and counted by the caller).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exponential_histogram_data_point, metric, number_data_point,
    summary_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use regex::Regex;

use super::expo::ExpoHistogram;
use super::parse::{Line, MetricType};

/// The scope the Collector's statsd receiver names its metrics with.
pub const SCOPE_NAME: &str =
    "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/statsdreceiver";

/// The Collector's default summary percentiles.
pub const DEFAULT_PERCENTILES: &[f64] = &[0.0, 10.0, 50.0, 90.0, 95.0, 100.0];

/// How counters carry their value (`counter_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterType {
    /// Each line's value truncated to an integer (the default).
    Int,
    Float,
    /// Each line's value rounded up with probability equal to its fraction.
    StochasticInt,
}

/// How timers (or histograms/distributions) are aggregated (`observer_type`).
#[derive(Clone, Debug)]
pub enum Observer {
    /// Not mapped: dropped.
    Disabled,
    /// Every observation its own gauge point.
    Gauge,
    Summary {
        percentiles: Arc<[f64]>,
    },
    Histogram {
        max_size: i32,
        explicit: Arc<[ExplicitBuckets]>,
    },
}

/// `histogram.explicit_buckets[]`: names matching `pattern` get these bounds.
#[derive(Clone, Debug)]
pub struct ExplicitBuckets {
    pub pattern: Regex,
    pub bounds: Vec<f64>,
}

/// How sources are told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKeying {
    AddressAndPort,
    AddressOnly,
    All,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub is_monotonic_counter: bool,
    pub counter_type: CounterType,
    pub timer: Observer,
    pub histogram: Observer,
    pub keying: SourceKeying,
    pub max_points_per_interval: usize,
    /// The scope version (oxcol's version).
    pub version: String,
}

/// Why a parsed line was not aggregated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// NaN or an infinity (the Collector discards them too).
    NotFinite,
    /// `max_points_per_interval` reached.
    Limit,
    /// A timer or histogram whose type no `timer_histogram_mapping` entry maps.
    Unmapped,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SeriesKey {
    name: String,
    metric_type: MetricType,
    attributes: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
enum Entry {
    Gauge {
        value: f64,
        time: u64,
    },
    Counter {
        int: i64,
        double: f64,
        /// `T<secs>` of the line that created it; 0: the flush time.
        time: u64,
    },
    Set {
        members: HashSet<String>,
    },
    Summary {
        values: Vec<(f64, f64)>,
        percentiles: Arc<[f64]>,
    },
    Expo(ExpoHistogram),
    Explicit(ExplicitHistogram),
}

impl Entry {
    /// The Collector's output order within a source.
    fn rank(&self) -> u8 {
        match self {
            Entry::Gauge { .. } => 0,
            Entry::Counter { .. } => 2,
            Entry::Set { .. } => 3,
            Entry::Summary { .. } => 4,
            Entry::Expo(_) | Entry::Explicit(_) => 5,
        }
    }
}

#[derive(Clone, Debug)]
struct ExplicitHistogram {
    bounds: Vec<f64>,
    /// One per bound, plus the overflow bucket.
    counts: Vec<u64>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl ExplicitHistogram {
    fn new(bounds: &[f64]) -> ExplicitHistogram {
        ExplicitHistogram {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            count: 0,
            sum: 0.0,
            min: f64::NEG_INFINITY,
            max: f64::INFINITY,
        }
    }

    fn record(&mut self, value: f64, by: u64) {
        if by == 0 {
            return;
        }
        self.sum += value * by as f64;
        self.count = self.count.saturating_add(by);
        if self.count == by {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        let slot = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        if let Some(count) = self.counts.get_mut(slot) {
            *count = count.saturating_add(by);
        }
    }
}

#[derive(Default)]
struct Source {
    index: HashMap<SeriesKey, usize>,
    series: Vec<(SeriesKey, Entry)>,
    /// Observations of timers/histograms mapped to `gauge`, each its own point.
    observations: Vec<(SeriesKey, f64, u64)>,
}

/// The receiver's state for the current interval.
pub struct Aggregator {
    settings: Settings,
    index: HashMap<String, usize>,
    sources: Vec<Source>,
    interval_start: u64,
    stored: usize,
}

impl Aggregator {
    pub fn new(settings: Settings, now: u64) -> Aggregator {
        Aggregator {
            settings,
            index: HashMap::new(),
            sources: Vec::new(),
            interval_start: now,
            stored: 0,
        }
    }

    /// The key of a client address (`ip:port`, `[ip]:port` or a socket path).
    fn source_key(&self, address: &str) -> String {
        match self.settings.keying {
            SourceKeying::All => String::new(),
            SourceKeying::AddressOnly => match address.rsplit_once(':') {
                Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                _ => address.to_string(),
            },
            SourceKeying::AddressAndPort => address.to_string(),
        }
    }

    fn has_room(&self) -> bool {
        self.stored < self.settings.max_points_per_interval
    }

    /// Adds one parsed line from `address` received at `now`.
    pub fn add(&mut self, line: &Line<'_>, address: &str, now: u64) -> Result<(), Dropped> {
        if line.metric_type != MetricType::Set && !line.value.is_finite() {
            return Err(Dropped::NotFinite);
        }
        let observer = match line.metric_type {
            MetricType::Timing => Some(self.settings.timer.clone()),
            MetricType::Histogram | MetricType::Distribution => {
                Some(self.settings.histogram.clone())
            }
            _ => None,
        };
        if matches!(observer, Some(Observer::Disabled)) {
            return Err(Dropped::Unmapped);
        }
        let key = self.source_key(address);
        let source_slot = match self.index.get(&key) {
            Some(slot) => *slot,
            None => {
                if !self.has_room() {
                    return Err(Dropped::Limit);
                }
                self.sources.push(Source::default());
                self.index.insert(key, self.sources.len() - 1);
                self.sources.len() - 1
            }
        };
        let series = SeriesKey {
            name: line.name.to_string(),
            metric_type: line.metric_type,
            attributes: line
                .attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        // How many times the sample counts (timers and histograms): 1/rate.
        let weight = if line.sample_rate > 0.0 && line.sample_rate < 1.0 {
            1.0 / line.sample_rate
        } else {
            1.0
        };
        let room = self.has_room();
        let settings = &self.settings;
        let Some(source) = self.sources.get_mut(source_slot) else {
            return Err(Dropped::Limit);
        };
        if let Some(Observer::Gauge) = observer {
            if !room {
                return Err(Dropped::Limit);
            }
            source.observations.push((series, line.value, now));
            self.stored += 1;
            return Ok(());
        }
        let existing = source.index.get(&series).copied();
        let slot = match existing {
            Some(slot) => slot,
            None => {
                if !room {
                    return Err(Dropped::Limit);
                }
                let entry = match (&observer, line.metric_type) {
                    (_, MetricType::Gauge) => Entry::Gauge {
                        value: line.value,
                        time: now,
                    },
                    (_, MetricType::Counter) => Entry::Counter {
                        int: 0,
                        double: 0.0,
                        time: line.timestamp_ns,
                    },
                    (_, MetricType::Set) => Entry::Set {
                        members: HashSet::new(),
                    },
                    (Some(Observer::Summary { percentiles }), _) => Entry::Summary {
                        values: Vec::new(),
                        percentiles: Arc::clone(percentiles),
                    },
                    (Some(Observer::Histogram { max_size, explicit }), _) => {
                        match explicit.iter().find(|e| e.pattern.is_match(line.name)) {
                            Some(buckets) => {
                                Entry::Explicit(ExplicitHistogram::new(&buckets.bounds))
                            }
                            None => Entry::Expo(ExpoHistogram::new(*max_size)),
                        }
                    }
                    _ => return Err(Dropped::Unmapped),
                };
                source.series.push((series.clone(), entry));
                source.index.insert(series, source.series.len() - 1);
                self.stored += 1;
                // A new gauge or counter is complete with this line.
                if line.metric_type == MetricType::Gauge {
                    return Ok(());
                }
                source.series.len() - 1
            }
        };
        let Some((_, entry)) = source.series.get_mut(slot) else {
            return Err(Dropped::Limit);
        };
        match entry {
            Entry::Gauge { value, time } => {
                if line.addition {
                    *value += line.value;
                } else {
                    *value = line.value;
                    *time = now;
                }
            }
            Entry::Counter { int, double, .. } => {
                // The Collector divides by the rate (not multiplies by 1/rate).
                let delta = if line.sample_rate > 0.0 && line.sample_rate < 1.0 {
                    line.value / line.sample_rate
                } else {
                    line.value
                };
                match settings.counter_type {
                    CounterType::Float => *double += delta,
                    CounterType::Int => *int = int.wrapping_add(delta as i64),
                    CounterType::StochasticInt => *int = int.wrapping_add(stochastic_round(delta)),
                }
            }
            Entry::Set { members } => {
                if !members.contains(line.raw_value) {
                    if !room {
                        return Err(Dropped::Limit);
                    }
                    members.insert(line.raw_value.to_string());
                    self.stored += 1;
                }
            }
            Entry::Summary { values, .. } => {
                if !room {
                    return Err(Dropped::Limit);
                }
                values.push((line.value, weight));
                self.stored += 1;
            }
            Entry::Expo(histogram) => histogram.record(line.value, weight as u64),
            Entry::Explicit(histogram) => histogram.record(line.value, weight as u64),
        }
        Ok(())
    }

    /// Ends the interval at `now`: the metrics of every source (none when nothing came),
    /// and a fresh state starting at `now`.
    pub fn flush(&mut self, now: u64) -> Vec<ResourceMetrics> {
        let start = self.interval_start;
        let sources = std::mem::take(&mut self.sources);
        self.index.clear();
        self.stored = 0;
        self.interval_start = now;
        let scope = InstrumentationScope {
            name: SCOPE_NAME.to_string(),
            version: self.settings.version.clone(),
            ..Default::default()
        };
        let mut out = Vec::with_capacity(sources.len());
        for source in sources {
            let mut metrics: Vec<(u8, Metric)> = Vec::new();
            for (key, entry) in source.series.iter() {
                metrics.push((entry.rank(), self.build(key, entry, start, now)));
            }
            for (key, value, time) in source.observations {
                metrics.push((1, gauge_metric(&key, value, time)));
            }
            // Stable: insertion order within a kind.
            metrics.sort_by_key(|(rank, _)| *rank);
            let scope_metrics = metrics
                .into_iter()
                .map(|(_, metric)| ScopeMetrics {
                    scope: Some(scope.clone()),
                    metrics: vec![metric],
                    schema_url: String::new(),
                })
                .collect();
            out.push(ResourceMetrics {
                resource: Some(Resource::default()),
                scope_metrics,
                schema_url: String::new(),
            });
        }
        out
    }

    fn build(&self, key: &SeriesKey, entry: &Entry, start: u64, now: u64) -> Metric {
        let attributes = attributes(key);
        let data = match entry {
            Entry::Gauge { value, time } => return gauge_metric(key, *value, *time),
            Entry::Counter { int, double, time } => {
                let value = match self.settings.counter_type {
                    CounterType::Float => number_data_point::Value::AsDouble(*double),
                    _ => number_data_point::Value::AsInt(*int),
                };
                metric::Data::Sum(Sum {
                    data_points: vec![NumberDataPoint {
                        attributes,
                        start_time_unix_nano: start,
                        time_unix_nano: if *time == 0 { now } else { *time },
                        value: Some(value),
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                    is_monotonic: self.settings.is_monotonic_counter,
                })
            }
            Entry::Set { members } => metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    value: Some(number_data_point::Value::AsInt(members.len() as i64)),
                    ..Default::default()
                }],
            }),
            Entry::Summary {
                values,
                percentiles,
            } => metric::Data::Summary(Summary {
                data_points: vec![summary_point(values, percentiles, attributes, start, now)],
            }),
            Entry::Expo(h) => metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    count: h.count,
                    sum: Some(h.sum),
                    scale: h.scale,
                    zero_count: h.zero_count,
                    positive: Some(expo_buckets(&h.positive)),
                    negative: Some(expo_buckets(&h.negative)),
                    min: (h.count != 0).then_some(h.min),
                    max: (h.count != 0).then_some(h.max),
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Delta as i32,
            }),
            Entry::Explicit(h) => metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    count: h.count,
                    sum: Some(h.sum),
                    bucket_counts: h.counts.clone(),
                    explicit_bounds: h.bounds.clone(),
                    min: (h.count != 0).then_some(h.min),
                    max: (h.count != 0).then_some(h.max),
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Delta as i32,
            }),
        };
        Metric {
            name: key.name.clone(),
            data: Some(data),
            ..Default::default()
        }
    }
}

fn attributes(key: &SeriesKey) -> Vec<KeyValue> {
    key.attributes
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.clone())),
            }),
            ..Default::default()
        })
        .collect()
}

fn gauge_metric(key: &SeriesKey, value: f64, time: u64) -> Metric {
    Metric {
        name: key.name.clone(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                attributes: attributes(key),
                time_unix_nano: time,
                value: Some(number_data_point::Value::AsDouble(value)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

fn expo_buckets(buckets: &super::expo::Buckets) -> exponential_histogram_data_point::Buckets {
    exponential_histogram_data_point::Buckets {
        offset: if buckets.counts.is_empty() {
            0
        } else {
            buckets.offset
        },
        bucket_counts: buckets.counts.iter().copied().collect(),
    }
}

/// The summary point of weighted `values`: count (truncated), weighted sum, and each
/// percentile by the empirical quantile of the weighted values (gonum's
/// `stat.Quantile(p, stat.Empirical, ...)`, which the Collector uses).
fn summary_point(
    values: &[(f64, f64)],
    percentiles: &[f64],
    attributes: Vec<KeyValue>,
    start: u64,
    now: u64,
) -> SummaryDataPoint {
    // Count and sum in arrival order, as the Collector adds them (float addition is not
    // associative); the quantiles on the values sorted.
    let total_weight: f64 = values.iter().map(|(_, w)| w).sum();
    let sum: f64 = values.iter().map(|(v, w)| v * w).sum();
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let quantile_values = percentiles
        .iter()
        .map(|pct| {
            let p = pct / 100.0;
            summary_data_point::ValueAtQuantile {
                quantile: p,
                value: empirical_quantile(p, &sorted, total_weight),
            }
        })
        .collect();
    SummaryDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now,
        count: total_weight as u64,
        sum,
        quantile_values,
        ..Default::default()
    }
}

/// The first sorted value whose cumulative weight reaches `p` of the total.
fn empirical_quantile(p: f64, sorted: &[(f64, f64)], total_weight: f64) -> f64 {
    let target = p * total_weight;
    let mut cumulative = 0.0;
    for (value, weight) in sorted {
        cumulative += weight;
        if cumulative >= target {
            return *value;
        }
    }
    // Only reachable through rounding of the sums: the largest value.
    sorted.last().map_or(0.0, |(value, _)| *value)
}

/// Rounds up with probability equal to the fraction (statistically exact over time).
fn stochastic_round(value: f64) -> i64 {
    let floor = value.floor();
    let fraction = value - floor;
    if rand::random::<f64>() < fraction {
        floor as i64 + 1
    } else {
        floor as i64
    }
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
