//! Turns parsed families of one target into OTLP metrics, as the Collector's prometheus
//! receiver does: counters -> monotonic cumulative sums, gauges and untyped -> gauges,
//! histograms -> cumulative histograms (Prometheus' cumulative `le` buckets become
//! per-bucket counts), summaries -> summaries; start times from the first sight of a
//! series (reset when a cumulative value goes down); and staleness: a series that was
//! there last scrape and is gone now gets one point flagged NO_RECORDED_VALUE.
//!
//! Sample labels are already relabelled and merged with the target's labels when they
//! reach [`Converter::add`]; this module never drops data on its own.

use std::collections::{BTreeMap, HashMap};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, Sum,
    Summary, SummaryDataPoint, metric, number_data_point, summary_data_point::ValueAtQuantile,
};

use crate::cgroup::emit::string_attribute;

/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`.
pub const NO_RECORDED_VALUE: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
    Summary,
}

/// One OTLP series: metric name, kind, and its point attributes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SeriesKey {
    name: String,
    attributes: Vec<(String, String)>,
}

struct SeriesState {
    kind: Kind,
    start_time_unix_nano: u64,
    last_cumulative: f64,
    generation: u64,
}

#[derive(Default)]
struct HistogramAccumulator {
    buckets: Vec<(f64, f64)>,
    sum: Option<f64>,
    count: Option<f64>,
}

#[derive(Default)]
struct SummaryAccumulator {
    quantiles: Vec<(f64, f64)>,
    sum: Option<f64>,
    count: Option<f64>,
}

/// Keeps the series of one target across scrapes.
#[derive(Default)]
pub struct Converter {
    series: HashMap<SeriesKey, SeriesState>,
    generation: u64,
    // The scrape being built.
    numbers: BTreeMap<SeriesKey, (Kind, f64)>,
    histograms: BTreeMap<SeriesKey, HistogramAccumulator>,
    summaries: BTreeMap<SeriesKey, SummaryAccumulator>,
}

impl Converter {
    /// Adds one sample. `family_name` and `kind` come from the family; `name` and
    /// `labels` (without `__name__`, `job`, `instance`) from the relabelled sample.
    pub fn add(
        &mut self,
        kind: Kind,
        family_name: &str,
        name: &str,
        labels: Vec<(String, String)>,
        value: f64,
    ) {
        match kind {
            Kind::Gauge | Kind::Counter => {
                if kind == Kind::Counter && name.ends_with("_created") {
                    return;
                }
                self.numbers.insert(
                    SeriesKey {
                        name: name.to_string(),
                        attributes: labels,
                    },
                    (kind, value),
                );
            }
            Kind::Histogram => {
                let (labels, le) = take_label(labels, "le");
                let entry = self
                    .histograms
                    .entry(SeriesKey {
                        name: family_name.to_string(),
                        attributes: labels,
                    })
                    .or_default();
                if name.ends_with("_bucket") {
                    if let Some(bound) = le.as_deref().and_then(super::parse::parse_float) {
                        entry.buckets.push((bound, value));
                    }
                } else if name.ends_with("_sum") {
                    entry.sum = Some(value);
                } else if name.ends_with("_count") {
                    entry.count = Some(value);
                }
            }
            Kind::Summary => {
                let (labels, quantile) = take_label(labels, "quantile");
                let entry = self
                    .summaries
                    .entry(SeriesKey {
                        name: family_name.to_string(),
                        attributes: labels,
                    })
                    .or_default();
                if name.ends_with("_sum") && name != family_name {
                    entry.sum = Some(value);
                } else if name.ends_with("_count") && name != family_name {
                    entry.count = Some(value);
                } else if let Some(q) = quantile.as_deref().and_then(super::parse::parse_float) {
                    entry.quantiles.push((q, value));
                }
            }
        }
    }

    /// The metrics of this scrape plus stale markers for series that disappeared; `up ==
    /// false` (a failed scrape) makes every known series stale.
    pub fn finish(&mut self, now: u64) -> Vec<Metric> {
        self.generation += 1;
        let generation = self.generation;
        let mut metrics: BTreeMap<String, Metric> = BTreeMap::new();
        let numbers = std::mem::take(&mut self.numbers);
        for (key, (kind, value)) in numbers {
            let start = self.touch(&key, kind, value, now);
            let point = NumberDataPoint {
                attributes: attributes(&key.attributes),
                start_time_unix_nano: if kind == Kind::Counter { start } else { 0 },
                time_unix_nano: now,
                value: Some(number_data_point::Value::AsDouble(value)),
                ..Default::default()
            };
            push_number(&mut metrics, &key.name, kind, point);
        }
        for (key, h) in std::mem::take(&mut self.histograms) {
            let mut buckets = h.buckets;
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let count = h
                .count
                .or_else(|| buckets.last().map(|b| b.1))
                .unwrap_or(0.0);
            let start = self.touch(&key, Kind::Histogram, count, now);
            let mut bounds = Vec::new();
            let mut counts = Vec::new();
            let mut previous = 0.0;
            for (bound, cumulative) in &buckets {
                if bound.is_infinite() && *bound > 0.0 {
                    continue;
                }
                bounds.push(*bound);
                counts.push((cumulative - previous).max(0.0) as u64);
                previous = *cumulative;
            }
            counts.push((count - previous).max(0.0) as u64);
            let point = HistogramDataPoint {
                attributes: attributes(&key.attributes),
                start_time_unix_nano: start,
                time_unix_nano: now,
                count: count.max(0.0) as u64,
                sum: h.sum,
                bucket_counts: counts,
                explicit_bounds: bounds,
                ..Default::default()
            };
            histogram_metric(&mut metrics, &key.name)
                .data_points
                .push(point);
        }
        for (key, s) in std::mem::take(&mut self.summaries) {
            let count = s.count.unwrap_or(0.0);
            let start = self.touch(&key, Kind::Summary, count, now);
            let mut quantiles = s.quantiles;
            quantiles.sort_by(|a, b| a.0.total_cmp(&b.0));
            let point = SummaryDataPoint {
                attributes: attributes(&key.attributes),
                start_time_unix_nano: start,
                time_unix_nano: now,
                count: count.max(0.0) as u64,
                sum: s.sum.unwrap_or(0.0),
                quantile_values: quantiles
                    .into_iter()
                    .map(|(quantile, value)| ValueAtQuantile { quantile, value })
                    .collect(),
                ..Default::default()
            };
            summary_metric(&mut metrics, &key.name)
                .data_points
                .push(point);
        }
        // Staleness: series of the previous scrape that are gone now.
        let stale: Vec<(SeriesKey, Kind, u64)> = self
            .series
            .iter()
            .filter(|(_, s)| s.generation == generation - 1)
            .map(|(k, s)| (k.clone(), s.kind, s.start_time_unix_nano))
            .collect();
        for (key, kind, start) in stale {
            let attrs = attributes(&key.attributes);
            match kind {
                Kind::Gauge | Kind::Counter => {
                    let point = NumberDataPoint {
                        attributes: attrs,
                        start_time_unix_nano: if kind == Kind::Counter { start } else { 0 },
                        time_unix_nano: now,
                        flags: NO_RECORDED_VALUE,
                        ..Default::default()
                    };
                    push_number(&mut metrics, &key.name, kind, point);
                }
                Kind::Histogram => {
                    histogram_metric(&mut metrics, &key.name)
                        .data_points
                        .push(HistogramDataPoint {
                            attributes: attrs,
                            start_time_unix_nano: start,
                            time_unix_nano: now,
                            flags: NO_RECORDED_VALUE,
                            ..Default::default()
                        })
                }
                Kind::Summary => {
                    summary_metric(&mut metrics, &key.name)
                        .data_points
                        .push(SummaryDataPoint {
                            attributes: attrs,
                            start_time_unix_nano: start,
                            time_unix_nano: now,
                            flags: NO_RECORDED_VALUE,
                            ..Default::default()
                        })
                }
            }
        }
        // Forget series stale for more than one scrape (bounded memory).
        self.series.retain(|_, s| s.generation + 1 >= generation);
        metrics.into_values().collect()
    }

    /// Marks `key` seen; returns its start time (reset when a cumulative value went down).
    fn touch(&mut self, key: &SeriesKey, kind: Kind, cumulative: f64, now: u64) -> u64 {
        let generation = self.generation;
        let state = self.series.entry(key.clone()).or_insert(SeriesState {
            kind,
            start_time_unix_nano: now,
            last_cumulative: cumulative,
            generation,
        });
        if kind != Kind::Gauge && cumulative < state.last_cumulative {
            state.start_time_unix_nano = now;
        }
        state.kind = kind;
        state.last_cumulative = cumulative;
        state.generation = generation;
        state.start_time_unix_nano
    }

    pub fn series(&self) -> usize {
        self.series.len()
    }
}

fn take_label(
    mut labels: Vec<(String, String)>,
    name: &str,
) -> (Vec<(String, String)>, Option<String>) {
    let value = labels
        .iter()
        .position(|(n, _)| n == name)
        .map(|i| labels.remove(i).1);
    (labels, value)
}

fn attributes(labels: &[(String, String)]) -> Vec<KeyValue> {
    labels.iter().map(|(k, v)| string_attribute(k, v)).collect()
}

fn push_number(
    metrics: &mut BTreeMap<String, Metric>,
    name: &str,
    kind: Kind,
    point: NumberDataPoint,
) {
    let metric = metrics.entry(name.to_string()).or_insert_with(|| Metric {
        name: name.to_string(),
        data: Some(if kind == Kind::Counter {
            metric::Data::Sum(Sum {
                data_points: Vec::new(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })
        } else {
            metric::Data::Gauge(Gauge {
                data_points: Vec::new(),
            })
        }),
        ..Default::default()
    });
    match &mut metric.data {
        Some(metric::Data::Sum(s)) => s.data_points.push(point),
        Some(metric::Data::Gauge(g)) => g.data_points.push(point),
        _ => {}
    }
}

fn histogram_metric<'a>(
    metrics: &'a mut BTreeMap<String, Metric>,
    name: &str,
) -> &'a mut Histogram {
    let metric = metrics.entry(name.to_string()).or_insert_with(|| Metric {
        name: name.to_string(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: Vec::new(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    });
    if !matches!(metric.data, Some(metric::Data::Histogram(_))) {
        metric.data = Some(metric::Data::Histogram(Histogram {
            data_points: Vec::new(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }));
    }
    match &mut metric.data {
        Some(metric::Data::Histogram(h)) => h,
        _ => unreachable!("set to a histogram just above"),
    }
}

fn summary_metric<'a>(metrics: &'a mut BTreeMap<String, Metric>, name: &str) -> &'a mut Summary {
    let metric = metrics.entry(name.to_string()).or_insert_with(|| Metric {
        name: name.to_string(),
        data: Some(metric::Data::Summary(Summary {
            data_points: Vec::new(),
        })),
        ..Default::default()
    });
    if !matches!(metric.data, Some(metric::Data::Summary(_))) {
        metric.data = Some(metric::Data::Summary(Summary {
            data_points: Vec::new(),
        }));
    }
    match &mut metric.data {
        Some(metric::Data::Summary(s)) => s,
        _ => unreachable!("set to a summary just above"),
    }
}
