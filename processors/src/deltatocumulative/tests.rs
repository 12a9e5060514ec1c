use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, Histogram, NumberDataPoint, ScopeMetrics, Sum,
};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

use super::*;

fn attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..KeyValue::default()
    }
}

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;

fn wrap(metrics: Vec<Metric>) -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn delta_sum(points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: "requests".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Delta as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn int_point(start: u64, ts: u64, v: i64) -> NumberDataPoint {
    NumberDataPoint {
        start_time_unix_nano: start,
        time_unix_nano: ts,
        value: Some(number_data_point::Value::AsInt(v)),
        ..Default::default()
    }
}

fn processor(config: Config, registry: Option<&Registry>) -> DeltaToCumulativeProcessor {
    DeltaToCumulativeProcessor::new("deltatocumulative", &config, registry).expect("valid")
}

/// Runs one sum point; returns (start, ts, value) of the output, if any.
fn run(
    p: &mut DeltaToCumulativeProcessor,
    point: NumberDataPoint,
    now: Instant,
) -> Option<(u64, u64, i64)> {
    let mut resources = wrap(vec![delta_sum(vec![point])]);
    p.process_metrics_at(&mut resources, now);
    let metric = resources.first()?.scope_metrics.first()?.metrics.first()?;
    let Some(metric::Data::Sum(sum)) = &metric.data else {
        return None;
    };
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let dp = sum.data_points.first()?;
    let Some(number_data_point::Value::AsInt(v)) = dp.value else {
        return None;
    };
    Some((dp.start_time_unix_nano, dp.time_unix_nano, v))
}

#[test]
fn delta_sums_accumulate_and_out_of_order_points_are_dropped_and_counted() {
    let registry = Registry::new();
    let mut p = processor(Config::default(), Some(&registry));
    let now = Instant::now();
    assert_eq!(
        run(&mut p, int_point(T0, T0 + SEC, 5), now),
        Some((T0, T0 + SEC, 5))
    );
    assert_eq!(
        run(&mut p, int_point(T0 + SEC, T0 + 2 * SEC, 3), now),
        Some((T0, T0 + 2 * SEC, 8))
    );
    // Out of order (timestamp not after the last one): dropped.
    assert_eq!(run(&mut p, int_point(T0, T0 + 2 * SEC, 100), now), None);
    // Start before the stream's start: dropped.
    assert_eq!(
        run(&mut p, int_point(T0 - SEC, T0 + 9 * SEC, 100), now),
        None
    );
    // A gap is just a longer delta.
    assert_eq!(
        run(&mut p, int_point(T0 + 2 * SEC, T0 + 600 * SEC, 2), now),
        Some((T0, T0 + 600 * SEC, 10))
    );
    let text = registry.render_prometheus();
    assert!(text.contains("otelcol_deltatocumulative_datapoints{processor=\"deltatocumulative\",error=\"out_of_order\"} 1"), "{text}");
    assert!(text.contains("otelcol_deltatocumulative_datapoints{processor=\"deltatocumulative\",error=\"older_start\"} 1"), "{text}");
    assert!(
        text.contains(
            "otelcol_deltatocumulative_datapoints{processor=\"deltatocumulative\",error=\"\"} 3"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "otelcol_deltatocumulative_streams_tracked{processor=\"deltatocumulative\"} 1"
        ),
        "{text}"
    );
}

#[test]
fn cumulative_and_gauges_pass_untouched_double_sums_add() {
    let mut p = processor(Config::default(), None);
    let cumulative = Metric {
        name: "c".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![int_point(T0, T0 + SEC, 5)],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let mut resources = wrap(vec![cumulative]);
    let before = resources.clone();
    p.process_metrics_at(&mut resources, Instant::now());
    assert_eq!(resources, before);
    assert_eq!(p.stream_count(), 0);

    let double = |ts: u64, v: f64| NumberDataPoint {
        start_time_unix_nano: ts - SEC,
        time_unix_nano: ts,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let mut resources = wrap(vec![delta_sum(vec![double(T0 + SEC, 0.5)])]);
    p.process_metrics_at(&mut resources, Instant::now());
    let mut resources = wrap(vec![delta_sum(vec![double(T0 + 2 * SEC, 0.25)])]);
    p.process_metrics_at(&mut resources, Instant::now());
    let Some(metric::Data::Sum(sum)) = &resources[0].scope_metrics[0].metrics[0].data else {
        panic!("sum expected");
    };
    assert_eq!(
        sum.data_points[0].value,
        Some(number_data_point::Value::AsDouble(0.75))
    );
    assert_eq!(sum.data_points[0].start_time_unix_nano, T0);
}

fn histogram_point(
    ts: u64,
    counts: Vec<u64>,
    bounds: Vec<f64>,
    sum: f64,
    min: f64,
    max: f64,
) -> HistogramDataPoint {
    HistogramDataPoint {
        start_time_unix_nano: ts - SEC,
        time_unix_nano: ts,
        count: counts.iter().sum(),
        sum: Some(sum),
        bucket_counts: counts,
        explicit_bounds: bounds,
        min: Some(min),
        max: Some(max),
        ..Default::default()
    }
}

fn run_histogram(
    p: &mut DeltaToCumulativeProcessor,
    point: HistogramDataPoint,
) -> Option<HistogramDataPoint> {
    let mut resources = wrap(vec![Metric {
        name: "latency".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![point],
            aggregation_temporality: AggregationTemporality::Delta as i32,
        })),
        ..Default::default()
    }]);
    p.process_metrics_at(&mut resources, Instant::now());
    let Some(metric::Data::Histogram(h)) = &resources
        .first()?
        .scope_metrics
        .first()?
        .metrics
        .first()?
        .data
    else {
        return None;
    };
    assert_eq!(
        h.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    h.data_points.first().cloned()
}

#[test]
fn histograms_add_bucket_by_bucket_and_restart_on_new_bounds() {
    let mut p = processor(Config::default(), None);
    let bounds = vec![1.0, 10.0];
    run_histogram(
        &mut p,
        histogram_point(T0 + SEC, vec![1, 2, 0], bounds.clone(), 12.0, 0.5, 8.0),
    )
    .expect("first");
    let out = run_histogram(
        &mut p,
        histogram_point(T0 + 2 * SEC, vec![0, 1, 3], bounds.clone(), 50.0, 2.0, 20.0),
    )
    .expect("total");
    assert_eq!(out.bucket_counts, vec![1, 3, 3]);
    assert_eq!(
        (out.count, out.sum, out.min, out.max),
        (7, Some(62.0), Some(0.5), Some(20.0))
    );
    assert_eq!(
        (out.start_time_unix_nano, out.time_unix_nano),
        (T0, T0 + 2 * SEC)
    );
    // New bounds: the total restarts from the new point.
    let out = run_histogram(
        &mut p,
        histogram_point(T0 + 3 * SEC, vec![4, 0], vec![5.0], 9.0, 1.0, 3.0),
    )
    .expect("restart");
    assert_eq!((out.bucket_counts.clone(), out.count), (vec![4, 0], 4));
    // A missing sum on one side removes it from the total.
    let mut no_sum = histogram_point(T0 + 4 * SEC, vec![1, 0], vec![5.0], 0.0, 1.0, 1.0);
    no_sum.sum = None;
    let out = run_histogram(&mut p, no_sum).expect("total");
    assert_eq!((out.count, out.sum), (5, None));
}

fn expo_point(
    ts: u64,
    scale: i32,
    offset: i32,
    counts: Vec<u64>,
    zero_count: u64,
    zero_threshold: f64,
) -> ExponentialHistogramDataPoint {
    ExponentialHistogramDataPoint {
        start_time_unix_nano: ts - SEC,
        time_unix_nano: ts,
        count: counts.iter().sum::<u64>() + zero_count,
        sum: Some(1.0),
        scale,
        zero_count,
        zero_threshold,
        positive: Some(Buckets {
            offset,
            bucket_counts: counts,
        }),
        negative: None,
        ..Default::default()
    }
}

fn run_expo(
    p: &mut DeltaToCumulativeProcessor,
    point: ExponentialHistogramDataPoint,
) -> Option<ExponentialHistogramDataPoint> {
    let mut resources = wrap(vec![Metric {
        name: "size".into(),
        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![point],
            aggregation_temporality: AggregationTemporality::Delta as i32,
        })),
        ..Default::default()
    }]);
    p.process_metrics_at(&mut resources, Instant::now());
    let Some(metric::Data::ExponentialHistogram(h)) = &resources
        .first()?
        .scope_metrics
        .first()?
        .metrics
        .first()?
        .data
    else {
        return None;
    };
    h.data_points.first().cloned()
}

#[test]
fn exponential_histograms_merge_at_the_coarser_scale() {
    let mut p = processor(Config::default(), None);
    // Scale 1: indexes 2..=5 -> at scale 0 they become 1,1,2,2.
    run_expo(&mut p, expo_point(T0 + SEC, 1, 2, vec![1, 2, 3, 4], 0, 0.0)).expect("first");
    let out = run_expo(&mut p, expo_point(T0 + 2 * SEC, 0, 0, vec![5, 1], 2, 0.0)).expect("total");
    assert_eq!(out.scale, 0);
    let positive = out.positive.expect("positive");
    assert_eq!(
        (positive.offset, positive.bucket_counts),
        (0, vec![5, 4, 7])
    );
    assert_eq!((out.count, out.zero_count, out.sum), (18, 2, Some(2.0)));
}

#[test]
fn exponential_zero_threshold_widening_moves_low_buckets_into_zero() {
    let mut p = processor(Config::default(), None);
    // Scale 0: bucket i covers (2^i, 2^(i+1)]. Buckets 0 and 1 end at 2 and 4.
    run_expo(&mut p, expo_point(T0 + SEC, 0, 0, vec![1, 2, 3], 0, 0.0)).expect("first");
    let out = run_expo(&mut p, expo_point(T0 + 2 * SEC, 0, 2, vec![1], 1, 4.0)).expect("total");
    assert_eq!(out.zero_threshold, 4.0);
    assert_eq!(out.zero_count, 1 + 1 + 2);
    let positive = out.positive.expect("positive");
    assert_eq!((positive.offset, positive.bucket_counts), (2, vec![4]));
}

#[test]
fn max_streams_drops_new_streams_and_staleness_frees_room() {
    let registry = Registry::new();
    let mut p = processor(
        Config {
            max_streams: 1,
            max_stale: GoDuration::from_secs(60),
        },
        Some(&registry),
    );
    let now = Instant::now();
    let mut a = int_point(T0, T0 + SEC, 1);
    a.attributes = vec![attr("k", "a")];
    let mut b = int_point(T0, T0 + SEC, 1);
    b.attributes = vec![attr("k", "b")];
    assert!(run(&mut p, a.clone(), now).is_some());
    assert_eq!(run(&mut p, b.clone(), now), None, "limit reached");
    assert!(registry.render_prometheus().contains("error=\"limit\"} 1"));
    // After max_stale without updates, stream a is evicted and b fits.
    let later = now + Duration::from_secs(61);
    assert!(run(&mut p, b, later).is_some());
    assert_eq!(p.stream_count(), 1);
    // a is new again: its next point starts a fresh total... but the limit is reached.
    a.time_unix_nano += SEC;
    assert_eq!(run(&mut p, a, later), None);
    p.evict_stale(later + Duration::from_secs(61));
    assert_eq!(p.stream_count(), 0);
    assert!(
        registry.render_prometheus().contains(
            "otelcol_deltatocumulative_streams_evicted{processor=\"deltatocumulative\"} 2"
        )
    );
}

#[test]
fn validation() {
    assert!(Config::default().validate().is_empty());
    let errors = Config {
        max_stale: GoDuration::from_secs(0),
        ..Config::default()
    }
    .validate();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("max_stale"));
}

/// Random points of every kind, including extreme values and layouts: the processor
/// (and cumulativetodelta after it) must never panic, and counts stay consistent.
#[test]
fn random_input_never_panics() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut d2c = processor(
        Config {
            max_streams: 50,
            ..Config::default()
        },
        None,
    );
    let mut c2d =
        crate::cumulativetodelta::CumulativeToDeltaProcessor::new("c2d", &Default::default(), None)
            .expect("valid");
    let pick_f = |rng: &mut rand::rngs::StdRng| match rng.random_range(0..6) {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => -1e308,
        3 => 0.0,
        _ => rng.random_range(-1e6..1e6),
    };
    for round in 0..400u64 {
        let temporality = if rng.random_bool(0.5) {
            AggregationTemporality::Delta
        } else {
            AggregationTemporality::Cumulative
        } as i32;
        let ts = T0 + rng.random_range(0..50) * SEC;
        let start = if rng.random_bool(0.2) {
            0
        } else {
            T0 + rng.random_range(0..50) * SEC
        };
        let value = match rng.random_range(0..4) {
            0 => Some(number_data_point::Value::AsInt(i64::MAX)),
            1 => Some(number_data_point::Value::AsInt(
                rng.random_range(i64::MIN..i64::MAX),
            )),
            2 => Some(number_data_point::Value::AsDouble(pick_f(&mut rng))),
            _ => None,
        };
        let sum = Metric {
            name: format!("s{}", round % 3),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![NumberDataPoint {
                    start_time_unix_nano: start,
                    time_unix_nano: ts,
                    value,
                    ..Default::default()
                }],
                aggregation_temporality: temporality,
                is_monotonic: rng.random_bool(0.7),
            })),
            ..Default::default()
        };
        let n = rng.random_range(0..5);
        let histogram = Metric {
            name: format!("h{}", round % 3),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    start_time_unix_nano: start,
                    time_unix_nano: ts,
                    count: rng.random_range(0..u64::MAX),
                    sum: rng.random_bool(0.5).then(|| pick_f(&mut rng)),
                    bucket_counts: (0..n).map(|_| rng.random_range(0..u64::MAX)).collect(),
                    explicit_bounds: (0..rng.random_range(0..4)).map(|i| i as f64).collect(),
                    min: Some(pick_f(&mut rng)),
                    max: None,
                    ..Default::default()
                }],
                aggregation_temporality: temporality,
            })),
            ..Default::default()
        };
        let offset = match rng.random_range(0..3) {
            0 => i32::MAX - 2,
            1 => i32::MIN,
            _ => rng.random_range(-100..100),
        };
        let expo = Metric {
            name: format!("e{}", round % 3),
            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    start_time_unix_nano: start,
                    time_unix_nano: ts,
                    count: rng.random_range(0..1000),
                    scale: rng.random_range(-10..20),
                    zero_threshold: if rng.random_bool(0.3) {
                        pick_f(&mut rng).abs()
                    } else {
                        0.0
                    },
                    zero_count: rng.random_range(0..10),
                    positive: Some(Buckets {
                        offset,
                        bucket_counts: (0..rng.random_range(0..6))
                            .map(|_| rng.random_range(0..u64::MAX))
                            .collect(),
                    }),
                    negative: rng.random_bool(0.5).then(|| Buckets {
                        offset: -offset.saturating_add(1),
                        bucket_counts: vec![1, 2],
                    }),
                    ..Default::default()
                }],
                aggregation_temporality: temporality,
            })),
            ..Default::default()
        };
        let mut resources = wrap(vec![sum, histogram, expo]);
        c2d.process_metrics(&mut resources);
        d2c.process_metrics_at(&mut resources, Instant::now());
        let batch = Batch::from_metrics(resources);
        assert!(batch.items() <= 3);
    }
    assert!(d2c.stream_count() <= 50);
}
