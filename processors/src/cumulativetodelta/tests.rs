use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge as GaugeData, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::*;

const SEC: u64 = 1_000_000_000;
/// Points of the tests start here; the processor "started" at START_PROCESSOR.
const T0: u64 = 1_700_000_000 * SEC;
const START_PROCESSOR: u64 = T0 - 3600 * SEC;

fn attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..KeyValue::default()
    }
}

fn wrap(metrics: Vec<Metric>) -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![attr("service.name", "svc")],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn sum_metric(
    name: &str,
    monotonic: bool,
    temporality: AggregationTemporality,
    points: Vec<NumberDataPoint>,
) -> Metric {
    Metric {
        name: name.to_string(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality as i32,
            is_monotonic: monotonic,
        })),
        ..Default::default()
    }
}

fn int_point(start: u64, ts: u64, value: i64) -> NumberDataPoint {
    NumberDataPoint {
        start_time_unix_nano: start,
        time_unix_nano: ts,
        value: Some(number_data_point::Value::AsInt(value)),
        ..Default::default()
    }
}

fn double_point(start: u64, ts: u64, value: f64) -> NumberDataPoint {
    NumberDataPoint {
        start_time_unix_nano: start,
        time_unix_nano: ts,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn processor(config: Config) -> CumulativeToDeltaProcessor {
    CumulativeToDeltaProcessor::new("cumulativetodelta", &config, None)
        .expect("valid config")
        .with_start_time(START_PROCESSOR)
}

/// Runs one single-point sum batch; returns (start, value) of the output point, if any.
fn run_sum(p: &mut CumulativeToDeltaProcessor, point: NumberDataPoint) -> Option<(u64, f64, i32)> {
    let mut resources = wrap(vec![sum_metric(
        "requests",
        true,
        AggregationTemporality::Cumulative,
        vec![point],
    )]);
    p.process_metrics(&mut resources);
    let metric = resources.first()?.scope_metrics.first()?.metrics.first()?;
    let Some(metric::Data::Sum(sum)) = &metric.data else {
        return None;
    };
    let dp = sum.data_points.first()?;
    let value = match dp.value {
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        Some(number_data_point::Value::AsDouble(v)) => v,
        None => f64::NAN,
    };
    Some((dp.start_time_unix_nano, value, sum.aggregation_temporality))
}

#[test]
fn monotonic_sum_becomes_delta_with_previous_time_as_start_and_drops_reset_points() {
    let mut p = processor(Config::default());
    let start = START_PROCESSOR - 100 * SEC; // before the processor started -> first point dropped (auto)
    assert_eq!(run_sum(&mut p, int_point(start, T0, 10)), None);
    let delta = AggregationTemporality::Delta as i32;
    assert_eq!(
        run_sum(&mut p, int_point(start, T0 + 10 * SEC, 15)),
        Some((T0, 5.0, delta))
    );
    assert_eq!(
        run_sum(&mut p, int_point(start, T0 + 20 * SEC, 15)),
        Some((T0 + 10 * SEC, 0.0, delta))
    );
    // Same start, lower value: a reset. That point is dropped and becomes the reference.
    assert_eq!(run_sum(&mut p, int_point(start, T0 + 25 * SEC, 3)), None);
    assert_eq!(
        run_sum(&mut p, int_point(start, T0 + 30 * SEC, 7)),
        Some((T0 + 25 * SEC, 4.0, delta))
    );
    // A gap changes nothing: the delta covers it, start = previous point's time.
    assert_eq!(
        run_sum(&mut p, int_point(start, T0 + 400 * SEC, 27)),
        Some((T0 + 30 * SEC, 20.0, delta))
    );
    assert_eq!(p.stream_count(), 1);
    // A new start time is a new stream (the start time is part of the identity): its
    // first point follows `initial_value`. With auto, a start before the processor
    // started drops it...
    let restarted = START_PROCESSOR - 50 * SEC;
    assert_eq!(
        run_sum(&mut p, int_point(restarted, T0 + 410 * SEC, 2)),
        None
    );
    assert_eq!(
        run_sum(&mut p, int_point(restarted, T0 + 420 * SEC, 5)),
        Some((T0 + 410 * SEC, 3.0, delta))
    );
    // ...and a start after it keeps it whole, with its own start.
    assert_eq!(
        run_sum(&mut p, int_point(T0 + 425 * SEC, T0 + 430 * SEC, 3)),
        Some((T0 + 425 * SEC, 3.0, delta))
    );
    assert_eq!(p.stream_count(), 3);
}

#[test]
fn keep_emits_first_points_with_start_zero_also_after_a_restart() {
    let mut p = processor(Config {
        initial_value: InitialValue::Keep,
        ..Config::default()
    });
    let delta = AggregationTemporality::Delta as i32;
    assert_eq!(
        run_sum(&mut p, int_point(T0, T0 + 10 * SEC, 10)),
        Some((0, 10.0, delta))
    );
    assert_eq!(
        run_sum(&mut p, int_point(T0, T0 + 20 * SEC, 15)),
        Some((T0 + 10 * SEC, 5.0, delta))
    );
    // The counter restarted (new start time, lower value): the first point of the new
    // stream, kept whole with start 0.
    assert_eq!(
        run_sum(&mut p, int_point(T0 + 25 * SEC, T0 + 30 * SEC, 2)),
        Some((0, 2.0, delta))
    );
    assert_eq!(
        run_sum(&mut p, int_point(T0 + 25 * SEC, T0 + 40 * SEC, 6)),
        Some((T0 + 30 * SEC, 4.0, delta))
    );
}

#[test]
fn points_without_a_recorded_value_are_dropped_and_scope_attributes_are_not_identity() {
    let mut p = processor(Config {
        initial_value: InitialValue::Keep,
        ..Config::default()
    });
    let mut flagged = int_point(T0, T0 + SEC, 10);
    flagged.flags = NO_RECORDED_VALUE;
    assert_eq!(run_sum(&mut p, flagged), None);
    assert_eq!(p.stream_count(), 0);
    // A point without a value reads as the integer 0, as in the Collector.
    let mut empty = int_point(T0, T0 + SEC, 0);
    empty.value = None;
    assert_eq!(run_sum(&mut p, empty).map(|r| r.1), Some(0.0));

    let with_scope = |attribute: &str, ts: u64, value: i64| {
        let mut resources = wrap(vec![sum_metric(
            "requests",
            true,
            AggregationTemporality::Cumulative,
            vec![int_point(T0, ts, value)],
        )]);
        resources[0].scope_metrics[0].scope = Some(InstrumentationScope {
            name: "meter".into(),
            attributes: vec![attr("a", attribute)],
            ..Default::default()
        });
        resources
    };
    let mut first = with_scope("x", T0 + SEC, 10);
    p.process_metrics(&mut first);
    let mut second = with_scope("y", T0 + 2 * SEC, 14);
    p.process_metrics(&mut second);
    let Some(metric::Data::Sum(sum)) = &second[0].scope_metrics[0].metrics[0].data else {
        panic!("sum expected");
    };
    assert_eq!(
        sum.data_points[0].value,
        Some(number_data_point::Value::AsInt(4)),
        "same stream although the scope attributes differ"
    );
}

#[test]
fn double_sums_and_nan_points() {
    let mut p = processor(Config {
        initial_value: InitialValue::Keep,
        ..Config::default()
    });
    assert_eq!(
        run_sum(&mut p, double_point(T0, T0 + SEC, 1.5)).map(|r| r.1),
        Some(1.5)
    );
    // NaN (staleness marker) passes untouched and does not move the reference.
    let nan = run_sum(&mut p, double_point(T0, T0 + 2 * SEC, f64::NAN)).expect("kept");
    assert!(nan.1.is_nan());
    assert_eq!(
        run_sum(&mut p, double_point(T0, T0 + 3 * SEC, 4.0)),
        Some((T0 + SEC, 2.5, AggregationTemporality::Delta as i32))
    );
}

#[test]
fn initial_value_auto_keep_drop() {
    // auto: start time after the processor started -> the counter began while watched: kept.
    let mut p = processor(Config::default());
    let late_start = START_PROCESSOR + SEC;
    assert_eq!(
        run_sum(&mut p, int_point(late_start, T0, 4)).map(|r| (r.0, r.1)),
        Some((late_start, 4.0))
    );
    // auto: start == timestamp -> dropped even when recent.
    let mut p = processor(Config::default());
    assert_eq!(run_sum(&mut p, int_point(T0, T0, 4)), None);
    let mut p = processor(Config {
        initial_value: InitialValue::Keep,
        ..Config::default()
    });
    assert_eq!(
        run_sum(&mut p, int_point(T0 - 1000 * SEC, T0, 4)).map(|r| r.1),
        Some(4.0)
    );
    let mut p = processor(Config {
        initial_value: InitialValue::Drop,
        ..Config::default()
    });
    assert_eq!(run_sum(&mut p, int_point(late_start, T0, 4)), None);
    assert_eq!(
        run_sum(&mut p, int_point(late_start, T0 + SEC, 6)).map(|r| r.1),
        Some(2.0)
    );
}

#[test]
fn non_monotonic_delta_and_gauges_pass_untouched_and_streams_are_separate() {
    let mut p = processor(Config {
        initial_value: InitialValue::Keep,
        ..Config::default()
    });
    let mut resources = wrap(vec![
        sum_metric(
            "updown",
            false,
            AggregationTemporality::Cumulative,
            vec![int_point(T0, T0 + SEC, 5)],
        ),
        sum_metric(
            "already_delta",
            true,
            AggregationTemporality::Delta,
            vec![int_point(T0, T0 + SEC, 5)],
        ),
        Metric {
            name: "g".into(),
            data: Some(metric::Data::Gauge(GaugeData {
                data_points: vec![int_point(0, T0, 1)],
            })),
            ..Default::default()
        },
    ]);
    let before = resources.clone();
    p.process_metrics(&mut resources);
    assert_eq!(resources, before);
    assert_eq!(p.stream_count(), 0);

    // Two attribute sets of one metric are two streams.
    let mut a = int_point(T0, T0 + SEC, 10);
    a.attributes = vec![attr("k", "a")];
    let mut b = int_point(T0, T0 + SEC, 100);
    b.attributes = vec![attr("k", "b")];
    let mut resources = wrap(vec![sum_metric(
        "c",
        true,
        AggregationTemporality::Cumulative,
        vec![a.clone(), b.clone()],
    )]);
    p.process_metrics(&mut resources);
    a.time_unix_nano += SEC;
    a.value = Some(number_data_point::Value::AsInt(11));
    b.time_unix_nano += SEC;
    b.value = Some(number_data_point::Value::AsInt(150));
    let mut resources = wrap(vec![sum_metric(
        "c",
        true,
        AggregationTemporality::Cumulative,
        vec![a, b],
    )]);
    p.process_metrics(&mut resources);
    let Some(metric::Data::Sum(sum)) = &resources[0].scope_metrics[0].metrics[0].data else {
        panic!("sum")
    };
    let values: Vec<_> = sum.data_points.iter().map(|d| d.value).collect();
    assert_eq!(
        values,
        vec![
            Some(number_data_point::Value::AsInt(1)),
            Some(number_data_point::Value::AsInt(50))
        ]
    );
    assert_eq!(p.stream_count(), 2);
}

fn histogram(points: Vec<HistogramDataPoint>) -> Metric {
    Metric {
        name: "latency".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    }
}

fn hist_point(
    ts: u64,
    count: u64,
    sum: f64,
    buckets: Vec<u64>,
    bounds: Vec<f64>,
) -> HistogramDataPoint {
    HistogramDataPoint {
        start_time_unix_nano: START_PROCESSOR - 100 * SEC,
        time_unix_nano: ts,
        count,
        sum: Some(sum),
        bucket_counts: buckets,
        explicit_bounds: bounds,
        min: Some(0.1),
        max: Some(9.0),
        ..Default::default()
    }
}

fn run_hist(
    p: &mut CumulativeToDeltaProcessor,
    point: HistogramDataPoint,
) -> Option<HistogramDataPoint> {
    let mut resources = wrap(vec![histogram(vec![point])]);
    p.process_metrics(&mut resources);
    let metric = resources.first()?.scope_metrics.first()?.metrics.first()?;
    let Some(metric::Data::Histogram(h)) = &metric.data else {
        return None;
    };
    assert_eq!(
        h.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
    h.data_points.first().cloned()
}

#[test]
fn histograms_become_deltas_bucket_by_bucket_and_resets_are_dropped() {
    let registry = Registry::new();
    let mut p = CumulativeToDeltaProcessor::new("c2d", &Config::default(), Some(&registry))
        .expect("valid")
        .with_start_time(START_PROCESSOR);
    let bounds = vec![1.0, 5.0];
    assert!(
        run_hist(
            &mut p,
            hist_point(T0, 4, 10.0, vec![1, 2, 1], bounds.clone())
        )
        .is_none()
    );
    let out = run_hist(
        &mut p,
        hist_point(T0 + SEC, 10, 25.0, vec![3, 5, 2], bounds.clone()),
    )
    .expect("delta");
    assert_eq!(
        (
            out.count,
            out.sum,
            out.bucket_counts.clone(),
            out.start_time_unix_nano
        ),
        (6, Some(15.0), vec![2, 3, 1], T0)
    );
    assert_eq!((out.min, out.max), (None, None));
    // Reset: count went down -> dropped, and the previous point stays the reference.
    assert!(
        run_hist(
            &mut p,
            hist_point(T0 + 2 * SEC, 2, 3.0, vec![1, 1, 0], bounds.clone())
        )
        .is_none()
    );
    // A bucket going down is a reset too, even when the count grows.
    assert!(
        run_hist(
            &mut p,
            hist_point(T0 + 3 * SEC, 11, 26.0, vec![2, 6, 3], bounds.clone())
        )
        .is_none()
    );
    let out = run_hist(
        &mut p,
        hist_point(T0 + 4 * SEC, 12, 27.0, vec![3, 6, 3], bounds.clone()),
    )
    .expect("delta from the point before the resets");
    assert_eq!(
        (
            out.count,
            out.sum,
            out.bucket_counts,
            out.start_time_unix_nano
        ),
        (2, Some(2.0), vec![0, 1, 1], T0 + SEC)
    );
    // Bucket layout changed -> dropped and counted; it becomes the new reference.
    assert!(
        run_hist(
            &mut p,
            hist_point(
                T0 + 5 * SEC,
                15,
                30.0,
                vec![3, 6, 3, 3],
                vec![1.0, 2.0, 5.0]
            )
        )
        .is_none()
    );
    let out = run_hist(
        &mut p,
        hist_point(
            T0 + 6 * SEC,
            17,
            32.0,
            vec![3, 7, 3, 4],
            vec![1.0, 2.0, 5.0],
        ),
    )
    .expect("delta");
    assert_eq!((out.count, out.bucket_counts), (2, vec![0, 1, 0, 1]));
    // A new start time is a new stream: with auto and a start before the processor
    // started, its first point is dropped.
    let mut restarted = hist_point(T0 + 7 * SEC, 1, 1.0, vec![1, 0, 0, 0], vec![1.0, 2.0, 5.0]);
    restarted.start_time_unix_nano = START_PROCESSOR - 10 * SEC;
    assert!(run_hist(&mut p, restarted).is_none());
    let text = registry.render_prometheus();
    for (reason, count) in [("bucket_mismatch", 1), ("initial", 2), ("reset", 2)] {
        let line = format!(
            "otelcol_cumulativetodelta_datapoints_dropped{{processor=\"c2d\",metric_type=\"histogram\",reason=\"{reason}\"}} {count}"
        );
        assert!(text.contains(&line), "{line} missing in {text}");
    }
    assert!(
        text.contains(
            "otelcol_cumulativetodelta_datapoints{processor=\"c2d\",metric_type=\"histogram\"} 3"
        ),
        "{text}"
    );
}

#[test]
fn first_histogram_points_lose_min_and_max_and_empty_histograms_stay_cumulative() {
    let mut p = processor(Config {
        initial_value: InitialValue::Keep,
        ..Config::default()
    });
    let out = run_hist(
        &mut p,
        hist_point(T0, 4, 10.0, vec![1, 2, 1], vec![1.0, 5.0]),
    )
    .expect("kept");
    assert_eq!(
        (
            out.count,
            out.sum,
            out.bucket_counts,
            out.min,
            out.max,
            out.start_time_unix_nano
        ),
        (4, Some(10.0), vec![1, 2, 1], None, None, 0)
    );
    let mut resources = wrap(vec![histogram(Vec::new())]);
    p.process_metrics(&mut resources);
    let Some(metric::Data::Histogram(h)) = &resources[0].scope_metrics[0].metrics[0].data else {
        panic!("the empty histogram is kept");
    };
    assert_eq!(
        h.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
}

#[test]
fn include_exclude_by_name_and_type() {
    let config = Config {
        include: MatchMetrics {
            match_type: Some("regexp".into()),
            metrics: vec!["^http\\.".into()],
            ..Default::default()
        },
        exclude: MatchMetrics {
            match_type: Some("strict".into()),
            metrics: vec!["http.skip".into()],
            ..Default::default()
        },
        initial_value: InitialValue::Keep,
        ..Config::default()
    };
    let mut p = processor(config);
    let mut resources = wrap(vec![
        sum_metric(
            "http.requests",
            true,
            AggregationTemporality::Cumulative,
            vec![int_point(T0, T0 + SEC, 5)],
        ),
        sum_metric(
            "http.skip",
            true,
            AggregationTemporality::Cumulative,
            vec![int_point(T0, T0 + SEC, 5)],
        ),
        sum_metric(
            "db.calls",
            true,
            AggregationTemporality::Cumulative,
            vec![int_point(T0, T0 + SEC, 5)],
        ),
    ]);
    p.process_metrics(&mut resources);
    let temporality: Vec<i32> = resources[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| match &m.data {
            Some(metric::Data::Sum(s)) => s.aggregation_temporality,
            _ => -1,
        })
        .collect();
    let (d, c) = (
        AggregationTemporality::Delta as i32,
        AggregationTemporality::Cumulative as i32,
    );
    assert_eq!(temporality, vec![d, c, c]);

    // metric_types: only histograms.
    let mut p = processor(Config {
        include: MatchMetrics {
            metric_types: vec!["histogram".into()],
            ..Default::default()
        },
        ..Config::default()
    });
    let mut resources = wrap(vec![sum_metric(
        "x",
        true,
        AggregationTemporality::Cumulative,
        vec![int_point(T0, T0 + SEC, 5)],
    )]);
    p.process_metrics(&mut resources);
    assert!(
        matches!(&resources[0].scope_metrics[0].metrics[0].data, Some(metric::Data::Sum(s)) if s.aggregation_temporality == c)
    );
}

#[test]
fn staleness_forgets_streams_by_wall_clock() {
    let mut p = processor(Config {
        max_staleness: GoDuration::from_secs(60),
        initial_value: InitialValue::Keep,
        ..Config::default()
    });
    assert!(run_sum(&mut p, int_point(T0, T0 + SEC, 5)).is_some());
    assert_eq!(p.tick_interval(), Some(Duration::from_secs(60)));
    p.evict_stale(T0 + 30 * SEC);
    assert_eq!(p.stream_count(), 1);
    p.evict_stale(T0 + 62 * SEC);
    assert_eq!(p.stream_count(), 0);
    // Forgotten: the next point is a first point again (kept whole with initial_value keep).
    assert_eq!(
        run_sum(&mut p, int_point(T0, T0 + 70 * SEC, 9)).map(|r| r.1),
        Some(9.0)
    );
}

#[test]
fn validation_reports_every_problem() {
    let config = Config {
        include: MatchMetrics {
            metrics: vec!["a".into()],
            ..Default::default()
        },
        exclude: MatchMetrics {
            match_type: Some("regexp".into()),
            metrics: vec!["(".into()],
            metric_types: vec!["gauge".into()],
            ..Default::default()
        },
        ..Config::default()
    };
    let errors = config.validate();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].contains("include.match_type must be set"));
    assert!(errors[1].contains("not a valid regexp"));
    assert!(errors[2].contains("use sum, histogram or exponentialhistogram"));
    assert!(Config::default().validate().is_empty());
}

fn expo(
    ts: u64,
    scale: i32,
    offset: i32,
    counts: Vec<u64>,
    zero_count: u64,
    zero_threshold: f64,
) -> ExponentialHistogramDataPoint {
    ExponentialHistogramDataPoint {
        start_time_unix_nano: START_PROCESSOR - 100 * SEC,
        time_unix_nano: ts,
        count: counts.iter().sum::<u64>() + zero_count,
        sum: Some(counts.iter().sum::<u64>() as f64),
        scale,
        zero_count,
        zero_threshold,
        positive: Some(Buckets {
            offset,
            bucket_counts: counts,
        }),
        min: Some(0.0),
        max: Some(100.0),
        ..Default::default()
    }
}

fn run_expo(
    p: &mut CumulativeToDeltaProcessor,
    point: ExponentialHistogramDataPoint,
) -> Option<ExponentialHistogramDataPoint> {
    let mut resources = wrap(vec![Metric {
        name: "size".into(),
        data: Some(metric::Data::ExponentialHistogram(
            opentelemetry_proto::tonic::metrics::v1::ExponentialHistogram {
                data_points: vec![point],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            },
        )),
        ..Default::default()
    }]);
    p.process_metrics(&mut resources);
    let metric = resources.first()?.scope_metrics.first()?.metrics.first()?;
    let Some(metric::Data::ExponentialHistogram(h)) = &metric.data else {
        return None;
    };
    assert_eq!(
        h.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
    h.data_points.first().cloned()
}

#[test]
fn exponential_histograms_become_deltas_across_scale_and_zero_changes() {
    let mut p = processor(Config::default());
    // Scale 1, indexes 2..=5.
    assert!(
        run_expo(&mut p, expo(T0, 1, 2, vec![1, 1, 1, 1], 1, 0.0)).is_none(),
        "first point dropped (auto)"
    );
    // Same layout, more counts.
    let out = run_expo(&mut p, expo(T0 + SEC, 1, 2, vec![2, 1, 3, 1], 2, 0.0)).expect("delta");
    let positive = out.positive.clone().expect("positive");
    assert_eq!(
        (positive.offset, positive.bucket_counts),
        (2, vec![1, 0, 2])
    );
    assert_eq!(
        (out.count, out.zero_count, out.sum, out.start_time_unix_nano),
        (4, 1, Some(3.0), T0)
    );
    assert_eq!((out.min, out.max), (None, None));
    // Downscaled to scale 0: previous [2,1,3,1]@2 (scale 1) -> [3,4]@1 (scale 0).
    let out = run_expo(&mut p, expo(T0 + 2 * SEC, 0, 1, vec![5, 6], 2, 0.0)).expect("delta");
    let positive = out.positive.expect("positive");
    assert_eq!((positive.offset, positive.bucket_counts), (1, vec![2, 2]));
    // Zero threshold widened to 4 at scale 0: previous bucket 1 (2,4] moves into zero.
    let out = run_expo(&mut p, expo(T0 + 3 * SEC, 0, 2, vec![7], 8, 4.0)).expect("delta");
    assert_eq!(out.zero_count, 8 - (2 + 5));
    assert_eq!(out.positive.expect("positive").bucket_counts, vec![1]);
    // Scale went up: a reset -> dropped; the previous point stays the reference, so a
    // later point at the higher scale is a reset too.
    assert!(run_expo(&mut p, expo(T0 + 4 * SEC, 1, 4, vec![9], 8, 4.0)).is_none());
    assert!(run_expo(&mut p, expo(T0 + 5 * SEC, 1, 4, vec![10], 8, 4.0)).is_none());
    let out =
        run_expo(&mut p, expo(T0 + 6 * SEC, 0, 2, vec![9], 9, 4.0)).expect("delta after resets");
    let positive = out.positive.expect("positive");
    assert_eq!((positive.offset, positive.bucket_counts), (2, vec![2]));
    assert_eq!(
        (out.zero_count, out.start_time_unix_nano),
        (1, T0 + 3 * SEC)
    );
    // Unchanged buckets give an empty side at offset 0.
    let out = run_expo(&mut p, expo(T0 + 7 * SEC, 0, 2, vec![9], 10, 4.0)).expect("delta");
    let positive = out.positive.expect("positive");
    assert_eq!(
        (positive.offset, positive.bucket_counts),
        (0, Vec::<u64>::new())
    );
}

#[test]
fn exponential_buckets_coarsen_trim_and_subtract_like_the_collector() {
    let buckets = ExpBuckets {
        offset: -3,
        counts: vec![1, 2, 3, 4, 5],
    };
    // Indexes -3..=1 at one step down: -2,-1,-1,0,0 -> [1, 5, 9] at -2.
    assert_eq!(
        buckets.coarsen(1),
        ExpBuckets {
            offset: -2,
            counts: vec![1, 5, 9]
        }
    );
    let mut trimmed = buckets.clone();
    assert_eq!(trimmed.trim_below(-2), 3);
    assert_eq!(
        trimmed,
        ExpBuckets {
            offset: -1,
            counts: vec![3, 4, 5]
        }
    );
    assert_eq!(trimmed.clone().trim_below(-10), 0);
    assert_eq!(trimmed.clone().trim_below(100), 12);
    let later = ExpBuckets {
        offset: -3,
        counts: vec![1, 2, 4, 4, 7, 1],
    };
    assert_eq!(
        later.minus(&buckets),
        Some(ExpBuckets {
            offset: -1,
            counts: vec![1, 0, 2, 1]
        })
    );
    assert_eq!(buckets.minus(&later), None, "a bucket went down");
}
