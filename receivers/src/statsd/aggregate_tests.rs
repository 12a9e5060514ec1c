use super::*;
use crate::statsd::parse::parse_line;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

const START: u64 = 1_000;
const NOW: u64 = 5_000;
const END: u64 = 9_000;
const CLIENT: &str = "127.0.0.1:40000";

fn settings() -> Settings {
    Settings {
        is_monotonic_counter: false,
        counter_type: CounterType::Int,
        timer: Observer::Gauge,
        histogram: Observer::Gauge,
        keying: SourceKeying::AddressAndPort,
        max_points_per_interval: 1000,
        version: "test".to_string(),
    }
}

fn feed(aggregator: &mut Aggregator, lines: &[&str], address: &str) {
    for line in lines {
        let parsed = parse_line(line, false, false).unwrap_or_else(|e| panic!("{line}: {e}"));
        aggregator
            .add(&parsed, address, NOW)
            .unwrap_or_else(|e| panic!("{line}: {e:?}"));
    }
}

fn run(settings: Settings, lines: &[&str]) -> Vec<ResourceMetrics> {
    let mut aggregator = Aggregator::new(settings, START);
    feed(&mut aggregator, lines, CLIENT);
    aggregator.flush(END)
}

fn metrics(out: &[ResourceMetrics]) -> Vec<&Metric> {
    out.iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .collect()
}

fn only<'a>(out: &'a [ResourceMetrics], name: &str) -> &'a Metric {
    let found: Vec<&Metric> = metrics(out)
        .into_iter()
        .filter(|m| m.name == name)
        .collect();
    assert_eq!(found.len(), 1, "{name}: {found:?}");
    found[0]
}

fn string_attributes(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => panic!("not a string: {other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

#[test]
fn counters_sum_with_sample_rate_as_delta_int_sums() {
    // The Collector's README example: 3000 + 20/0.25 = 3080.
    let out = run(
        settings(),
        &[
            "m:3000|c|#mykey:myvalue",
            "m:20|c|@0.25|#mykey:myvalue",
            "m:7|c",
        ],
    );
    let with_tag: Vec<&Metric> = metrics(&out)
        .into_iter()
        .filter(|m| m.name == "m")
        .collect();
    assert_eq!(with_tag.len(), 2, "the untagged line is its own series");
    let Some(Data::Sum(sum)) = &with_tag[0].data else {
        panic!("{:?}", with_tag[0])
    };
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
    assert!(!sum.is_monotonic);
    let point = &sum.data_points[0];
    assert_eq!(point.value, Some(number_data_point::Value::AsInt(3080)));
    assert_eq!(
        (point.start_time_unix_nano, point.time_unix_nano),
        (START, END)
    );
    assert_eq!(
        string_attributes(&point.attributes),
        vec![("mykey".into(), "myvalue".into())]
    );
}

#[test]
fn counter_types_and_monotonic_flag() {
    let lines = ["c:1.7|c", "c:1.7|c"];
    let mut float = settings();
    float.counter_type = CounterType::Float;
    float.is_monotonic_counter = true;
    let out = run(float, &lines);
    let Some(Data::Sum(sum)) = &only(&out, "c").data else {
        panic!()
    };
    assert!(sum.is_monotonic);
    assert_eq!(
        sum.data_points[0].value,
        Some(number_data_point::Value::AsDouble(3.4))
    );
    // int truncates each line: 1 + 1.
    let out = run(settings(), &lines);
    let Some(Data::Sum(sum)) = &only(&out, "c").data else {
        panic!()
    };
    assert_eq!(
        sum.data_points[0].value,
        Some(number_data_point::Value::AsInt(2))
    );
    // stochastic_int: each line is 1 or 2.
    let mut stochastic = settings();
    stochastic.counter_type = CounterType::StochasticInt;
    let out = run(stochastic, &lines);
    let Some(Data::Sum(sum)) = &only(&out, "c").data else {
        panic!()
    };
    let Some(number_data_point::Value::AsInt(v)) = sum.data_points[0].value else {
        panic!()
    };
    assert!((2..=4).contains(&v), "{v}");
}

#[test]
fn counter_timestamp_from_dogstatsd_t() {
    let out = run(settings(), &["c:1|c|T1700000000", "c:2|c|T1800000000"]);
    let Some(Data::Sum(sum)) = &only(&out, "c").data else {
        panic!()
    };
    // The first line's time stays; values add.
    assert_eq!(sum.data_points[0].time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(
        sum.data_points[0].value,
        Some(number_data_point::Value::AsInt(3))
    );
}

#[test]
fn gauges_keep_the_last_value_and_add_deltas() {
    // The Collector's README example: 500, +2, -1 = 501; and 500 then 400 = 400.
    let out = run(
        settings(),
        &[
            "a:500|g", "a:+2|g", "a:-1|g", "b:500|g", "b:400|g", "n:-5|g",
        ],
    );
    for (name, expected) in [("a", 501.0), ("b", 400.0), ("n", -5.0)] {
        let Some(Data::Gauge(gauge)) = &only(&out, name).data else {
            panic!()
        };
        let point = &gauge.data_points[0];
        assert_eq!(
            point.value,
            Some(number_data_point::Value::AsDouble(expected)),
            "{name}"
        );
        assert_eq!(point.time_unix_nano, NOW);
        assert_eq!(point.start_time_unix_nano, 0);
    }
}

#[test]
fn timers_mapped_to_gauge_are_one_point_each() {
    let out = run(settings(), &["t:10|ms", "t:20|ms|@0.5", "h:3|h"]);
    let timers: Vec<&Metric> = metrics(&out)
        .into_iter()
        .filter(|m| m.name == "t")
        .collect();
    assert_eq!(timers.len(), 2);
    let values: Vec<_> = timers
        .iter()
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points[0].value,
            other => panic!("{other:?}"),
        })
        .collect();
    // The sample rate does not scale gauge points.
    assert_eq!(
        values,
        vec![
            Some(number_data_point::Value::AsDouble(10.0)),
            Some(number_data_point::Value::AsDouble(20.0))
        ]
    );
}

#[test]
fn unmapped_timers_are_dropped() {
    let mut s = settings();
    s.timer = Observer::Disabled;
    let mut aggregator = Aggregator::new(s, START);
    let line = parse_line("t:1|ms", false, false).unwrap();
    assert_eq!(aggregator.add(&line, CLIENT, NOW), Err(Dropped::Unmapped));
    assert!(aggregator.flush(END).is_empty());
}

#[test]
fn summary_with_weights_and_percentiles() {
    let mut s = settings();
    s.timer = Observer::Summary {
        percentiles: DEFAULT_PERCENTILES.into(),
    };
    let out = run(s, &["t:1|ms", "t:2|ms", "t:3|ms", "t:4|ms|@0.5", "t:10|ms"]);
    let Some(Data::Summary(summary)) = &only(&out, "t").data else {
        panic!()
    };
    let point = &summary.data_points[0];
    // Weights 1,1,1,2,1: count 6, sum 1+2+3+8+10.
    assert_eq!(point.count, 6);
    assert_eq!(point.sum, 24.0);
    assert_eq!(
        (point.start_time_unix_nano, point.time_unix_nano),
        (START, END)
    );
    let quantiles: Vec<(f64, f64)> = point
        .quantile_values
        .iter()
        .map(|q| (q.quantile, q.value))
        .collect();
    // Empirical: the first value whose cumulative weight reaches p*6; the same values as
    // gonum's stat.Quantile(p, stat.Empirical, [1 2 3 4 10], [1 1 1 2 1]) (checked with
    // gonum v0.16, which the Collector uses).
    assert_eq!(
        quantiles,
        vec![
            (0.0, 1.0),
            (0.1, 1.0),
            (0.5, 3.0),
            (0.9, 10.0),
            (0.95, 10.0),
            (1.0, 10.0)
        ]
    );
}

#[test]
fn exponential_histogram_points() {
    let mut s = settings();
    s.histogram = Observer::Histogram {
        max_size: 160,
        explicit: Arc::from(Vec::new()),
    };
    let out = run(s, &["h:1|h", "h:2|h|@0.5", "h:0|d", "h:-4|h"]);
    // `h|h` and `h|d` are different series (the type is part of the key).
    let hs: Vec<&Metric> = metrics(&out)
        .into_iter()
        .filter(|m| m.name == "h")
        .collect();
    assert_eq!(hs.len(), 2);
    let Some(Data::ExponentialHistogram(histogram)) = &hs[0].data else {
        panic!()
    };
    assert_eq!(
        histogram.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
    let point = &histogram.data_points[0];
    assert_eq!(point.count, 4, "1 + 2 (rate 0.5) + 1");
    assert_eq!(point.sum, Some(1.0 + 4.0 - 4.0));
    assert_eq!((point.min, point.max), (Some(-4.0), Some(2.0)));
    let positive = point.positive.as_ref().unwrap();
    assert_eq!(positive.bucket_counts.iter().sum::<u64>(), 3);
    assert_eq!(point.negative.as_ref().unwrap().bucket_counts, vec![1]);
    let Some(Data::ExponentialHistogram(zeros)) = &hs[1].data else {
        panic!()
    };
    assert_eq!(zeros.data_points[0].zero_count, 1);
    assert_eq!(zeros.data_points[0].scale, super::super::expo::MAX_SCALE);
}

#[test]
fn explicit_buckets_for_matching_names() {
    let mut s = settings();
    s.timer = Observer::Histogram {
        max_size: 0,
        explicit: Arc::from(vec![ExplicitBuckets {
            pattern: Regex::new("^foo").unwrap(),
            bounds: vec![1.0, 10.0, 100.0],
        }]),
    };
    let out = run(
        s,
        &[
            "foo.t:0.5|ms",
            "foo.t:10|ms",
            "foo.t:50|ms",
            "foo.t:500|ms|@0.5",
            "bar:1|ms",
        ],
    );
    let Some(Data::Histogram(histogram)) = &only(&out, "foo.t").data else {
        panic!()
    };
    let point = &histogram.data_points[0];
    assert_eq!(point.explicit_bounds, vec![1.0, 10.0, 100.0]);
    // Upper-inclusive bounds: 0.5 -> <=1, 10 -> <=10, 50 -> <=100, 500 x2 -> +Inf.
    assert_eq!(point.bucket_counts, vec![1, 1, 1, 2]);
    assert_eq!(point.count, 5);
    assert_eq!(point.sum, Some(0.5 + 10.0 + 50.0 + 1000.0));
    assert_eq!((point.min, point.max), (Some(0.5), Some(500.0)));
    assert!(matches!(
        only(&out, "bar").data,
        Some(Data::ExponentialHistogram(_))
    ));
}

#[test]
fn sets_count_distinct_members() {
    let out = run(settings(), &["u:alice|s", "u:bob|s", "u:alice|s"]);
    let Some(Data::Gauge(gauge)) = &only(&out, "u").data else {
        panic!()
    };
    assert_eq!(
        gauge.data_points[0].value,
        Some(number_data_point::Value::AsInt(2))
    );
}

#[test]
fn one_resource_per_client_by_keying() {
    let lines = ["c:1|c"];
    for (keying, expected) in [
        (SourceKeying::AddressAndPort, 3),
        (SourceKeying::AddressOnly, 2),
        (SourceKeying::All, 1),
    ] {
        let mut s = settings();
        s.keying = keying;
        let mut aggregator = Aggregator::new(s, START);
        for address in ["10.0.0.1:1", "10.0.0.1:2", "[::1]:3"] {
            feed(&mut aggregator, &lines, address);
        }
        let out = aggregator.flush(END);
        assert_eq!(out.len(), expected, "{keying:?}");
        let total: i64 = metrics(&out)
            .iter()
            .map(|m| match &m.data {
                Some(Data::Sum(s)) => match s.data_points[0].value {
                    Some(number_data_point::Value::AsInt(v)) => v,
                    _ => 0,
                },
                _ => 0,
            })
            .sum();
        assert_eq!(total, 3, "{keying:?}: nothing lost when merging");
    }
}

#[test]
fn scope_per_metric_in_the_collector_order() {
    let mut s = settings();
    s.histogram = Observer::Summary {
        percentiles: Arc::from(vec![50.0]),
    };
    let out = run(s, &["s:1|h", "c:1|c", "t:1|ms", "g:1|g", "u:x|s"]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].resource, Some(Resource::default()));
    let names: Vec<&str> = out[0]
        .scope_metrics
        .iter()
        .map(|sm| {
            assert_eq!(sm.metrics.len(), 1);
            let scope = sm.scope.as_ref().unwrap();
            assert_eq!(
                (scope.name.as_str(), scope.version.as_str()),
                (SCOPE_NAME, "test")
            );
            sm.metrics[0].name.as_str()
        })
        .collect();
    assert_eq!(names, vec!["g", "t", "c", "u", "s"]);
}

#[test]
fn flush_starts_a_new_interval() {
    let mut aggregator = Aggregator::new(settings(), START);
    feed(&mut aggregator, &["c:1|c"], CLIENT);
    assert_eq!(aggregator.flush(END).len(), 1);
    assert!(aggregator.flush(END + 1).is_empty(), "nothing carried over");
    feed(&mut aggregator, &["c:1|c"], CLIENT);
    let out = aggregator.flush(END + 2);
    let Some(Data::Sum(sum)) = &only(&out, "c").data else {
        panic!()
    };
    assert_eq!(sum.data_points[0].start_time_unix_nano, END + 1);
}

#[test]
fn the_limit_bounds_series_and_samples() {
    let mut s = settings();
    s.max_points_per_interval = 3;
    let mut aggregator = Aggregator::new(s, START);
    let mut dropped = 0;
    for i in 0..10 {
        let text = format!("c{i}:1|c");
        let line = parse_line(&text, false, false).unwrap();
        if aggregator.add(&line, CLIENT, NOW) == Err(Dropped::Limit) {
            dropped += 1;
        }
    }
    // Three series fit; the other seven are dropped.
    assert_eq!(dropped, 7);
    // An existing counter still adds past the limit.
    let line = parse_line("c0:5|c", false, false).unwrap();
    assert_eq!(aggregator.add(&line, CLIENT, NOW), Ok(()));
    let out = aggregator.flush(END);
    assert_eq!(metrics(&out).len(), 3);
}

#[test]
fn nan_and_infinity_are_refused() {
    let mut aggregator = Aggregator::new(settings(), START);
    for text in ["g:NaN|g", "c:+Inf|c", "t:-inf|ms"] {
        let line = parse_line(text, false, false).unwrap();
        assert_eq!(
            aggregator.add(&line, CLIENT, NOW),
            Err(Dropped::NotFinite),
            "{text}"
        );
    }
    assert!(aggregator.flush(END).is_empty());
}

/// Every timestamp as a token: 0 stays 0, a DogStatsD `T` time stays, any other (a clock
/// reading, different run to run) becomes 1.
fn tokenize_times(resources: &mut [ResourceMetrics]) {
    let token = |t: &mut u64| {
        if *t != 0 && *t != 1_700_000_000_000_000_000 {
            *t = 1;
        }
    };
    for scope in resources.iter_mut().flat_map(|r| &mut r.scope_metrics) {
        if let Some(scope) = scope.scope.as_mut() {
            scope.version.clear();
        }
        for metric in &mut scope.metrics {
            match metric.data.as_mut() {
                Some(Data::Gauge(g)) => g.data_points.iter_mut().for_each(|p| {
                    token(&mut p.start_time_unix_nano);
                    token(&mut p.time_unix_nano)
                }),
                Some(Data::Sum(s)) => s.data_points.iter_mut().for_each(|p| {
                    token(&mut p.start_time_unix_nano);
                    token(&mut p.time_unix_nano)
                }),
                Some(Data::Summary(s)) => s.data_points.iter_mut().for_each(|p| {
                    token(&mut p.start_time_unix_nano);
                    token(&mut p.time_unix_nano)
                }),
                Some(Data::ExponentialHistogram(h)) => h.data_points.iter_mut().for_each(|p| {
                    token(&mut p.start_time_unix_nano);
                    token(&mut p.time_unix_nano)
                }),
                Some(Data::Histogram(h)) => h.data_points.iter_mut().for_each(|p| {
                    token(&mut p.start_time_unix_nano);
                    token(&mut p.time_unix_nano)
                }),
                None => {}
            }
        }
        // The Collector's order within a kind follows Go map iteration (random).
    }
    for resource in resources.iter_mut() {
        resource
            .scope_metrics
            .sort_by(|a, b| a.metrics[0].name.cmp(&b.metrics[0].name));
    }
}

/// The same lines through the Collector's statsd receiver (contrib v0.161.0, recorded
/// with a Go program that runs it from its factory with enable_metric_type,
/// enable_simple_tags, timing -> summary [0, 50, 100], histogram -> histogram, and sends
/// testdata/collector_v0161_lines.txt in one datagram) and through oxcol's aggregator:
/// the same metrics, types, values, attributes, temporality and scope, up to clock times.
#[test]
fn matches_the_collectors_output_for_the_same_lines() {
    let recorded = include_bytes!("testdata/collector_v0161_output.json");
    let mut collector = crate::otlp::json::parse_metrics(recorded)
        .expect("the recorded Collector output is OTLP/JSON")
        .resource_metrics;
    let mut s = settings();
    s.timer = Observer::Summary {
        percentiles: Arc::from(vec![0.0, 50.0, 100.0]),
    };
    s.histogram = Observer::Histogram {
        max_size: 0,
        explicit: Arc::from(Vec::new()),
    };
    let mut aggregator = Aggregator::new(s, START);
    let lines = include_str!("testdata/collector_v0161_lines.txt");
    for line in lines.lines() {
        let parsed = parse_line(line, true, true).unwrap_or_else(|e| panic!("{line}: {e}"));
        aggregator.add(&parsed, "127.0.0.1:18126", NOW).unwrap();
    }
    let mut oxcol = aggregator.flush(END);
    tokenize_times(&mut collector);
    tokenize_times(&mut oxcol);
    assert_eq!(oxcol, collector);
}
