//! Every point type through a conversion, rules, rename, unknown units, and the
//! exponential histogram power-of-two rule.

use super::*;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    NumberDataPoint, ScopeMetrics, Summary, SummaryDataPoint,
    exponential_histogram_data_point::Buckets, summary_data_point::ValueAtQuantile,
};

fn number(value: number_data_point::Value) -> NumberDataPoint {
    NumberDataPoint {
        value: Some(value),
        exemplars: vec![Exemplar {
            value: Some(exemplar::Value::AsDouble(250.0)),
            ..Exemplar::default()
        }],
        ..NumberDataPoint::default()
    }
}

fn metric(name: &str, unit: &str, data: metric::Data) -> Metric {
    Metric {
        name: name.to_string(),
        unit: unit.to_string(),
        data: Some(data),
        ..Metric::default()
    }
}

fn run(config: Config, metrics: Vec<Metric>) -> (Vec<Metric>, UnitsProcessor) {
    let mut processor = UnitsProcessor::new("units", &config, None).expect("valid config");
    let mut resources = vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..ScopeMetrics::default()
        }],
        ..ResourceMetrics::default()
    }];
    processor.convert(&mut resources);
    (
        resources.remove(0).scope_metrics.remove(0).metrics,
        processor,
    )
}

fn gauge_values(m: &Metric) -> Vec<number_data_point::Value> {
    match &m.data {
        Some(metric::Data::Gauge(g)) => g.data_points.iter().filter_map(|p| p.value).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn gauge_in_ms_becomes_seconds_with_exemplars() {
    let (out, _) = run(
        Config::default(),
        vec![metric(
            "latency",
            "ms",
            metric::Data::Gauge(Gauge {
                data_points: vec![
                    number(number_data_point::Value::AsDouble(1500.0)),
                    number(number_data_point::Value::AsInt(20)),
                ],
            }),
        )],
    );
    assert_eq!(out[0].unit, "s");
    assert_eq!(
        gauge_values(&out[0]),
        vec![
            number_data_point::Value::AsDouble(1.5),
            number_data_point::Value::AsDouble(0.02)
        ]
    );
    let Some(metric::Data::Gauge(g)) = &out[0].data else {
        panic!("gauge")
    };
    assert_eq!(
        g.data_points[0].exemplars[0].value,
        Some(exemplar::Value::AsDouble(0.25))
    );
}

#[test]
fn kib_integers_stay_integers_and_percent_becomes_ratio() {
    let (out, _) = run(
        Config::default(),
        vec![
            metric(
                "heap",
                "KiBy",
                metric::Data::Gauge(Gauge {
                    data_points: vec![number(number_data_point::Value::AsInt(3))],
                }),
            ),
            metric(
                "cpu",
                "%",
                metric::Data::Gauge(Gauge {
                    data_points: vec![number(number_data_point::Value::AsDouble(50.0))],
                }),
            ),
        ],
    );
    assert_eq!(
        (out[0].unit.as_str(), gauge_values(&out[0])),
        ("By", vec![number_data_point::Value::AsInt(3072)])
    );
    assert_eq!(
        (out[1].unit.as_str(), gauge_values(&out[1])),
        ("1", vec![number_data_point::Value::AsDouble(0.5)])
    );
}

#[test]
fn histogram_bounds_sum_min_max_and_summary_quantiles_scale() {
    let histogram = Histogram {
        data_points: vec![HistogramDataPoint {
            count: 3,
            bucket_counts: vec![1, 1, 1],
            explicit_bounds: vec![100.0, 500.0],
            sum: Some(900.0),
            min: Some(50.0),
            max: Some(600.0),
            ..HistogramDataPoint::default()
        }],
        ..Histogram::default()
    };
    let summary = Summary {
        data_points: vec![SummaryDataPoint {
            count: 2,
            sum: 3000.0,
            quantile_values: vec![
                ValueAtQuantile {
                    quantile: 0.5,
                    value: 1000.0,
                },
                ValueAtQuantile {
                    quantile: 0.99,
                    value: 2000.0,
                },
            ],
            ..SummaryDataPoint::default()
        }],
    };
    let (out, _) = run(
        Config::default(),
        vec![
            metric("h", "ms", metric::Data::Histogram(histogram)),
            metric("q", "ms", metric::Data::Summary(summary)),
        ],
    );
    let Some(metric::Data::Histogram(h)) = &out[0].data else {
        panic!("histogram")
    };
    let p = &h.data_points[0];
    assert_eq!(
        (
            p.explicit_bounds.clone(),
            p.sum,
            p.min,
            p.max,
            p.bucket_counts.clone()
        ),
        (
            vec![0.1, 0.5],
            Some(0.9),
            Some(0.05),
            Some(0.6),
            vec![1, 1, 1]
        )
    );
    let Some(metric::Data::Summary(s)) = &out[1].data else {
        panic!("summary")
    };
    assert_eq!(
        (
            s.data_points[0].sum,
            s.data_points[0].quantile_values[1].value,
            s.data_points[0].quantile_values[1].quantile
        ),
        (3.0, 2.0, 0.99)
    );
}

fn exp_histogram(scale: i32, offset: i32) -> metric::Data {
    metric::Data::ExponentialHistogram(ExponentialHistogram {
        data_points: vec![ExponentialHistogramDataPoint {
            scale,
            count: 2,
            sum: Some(3072.0),
            positive: Some(Buckets {
                offset,
                bucket_counts: vec![1, 1],
            }),
            ..ExponentialHistogramDataPoint::default()
        }],
        ..ExponentialHistogram::default()
    })
}

#[test]
fn exponential_histogram_converts_exactly_for_powers_of_two_only() {
    // KiBy -> By is 2^10: at scale 2 every bucket index moves by 10 * 4 = 40.
    let (out, processor) = run(
        Config::default(),
        vec![
            metric("mem", "KiBy", exp_histogram(2, 5)),
            metric("lat", "ms", exp_histogram(2, 5)),
        ],
    );
    let Some(metric::Data::ExponentialHistogram(h)) = &out[0].data else {
        panic!("exp histogram")
    };
    assert_eq!(
        (
            out[0].unit.as_str(),
            h.data_points[0].positive.as_ref().map(|b| b.offset),
            h.data_points[0].sum
        ),
        ("By", Some(45), Some(3072.0 * 1024.0))
    );
    // ms -> s is not a power of two: unchanged, counted.
    let Some(metric::Data::ExponentialHistogram(h)) = &out[1].data else {
        panic!("exp histogram")
    };
    assert_eq!(
        (
            out[1].unit.as_str(),
            h.data_points[0].positive.as_ref().map(|b| b.offset)
        ),
        ("ms", Some(5))
    );
    assert_eq!(processor.unconvertible_points(), 1);
    // At scale -4 a bucket spans 2^16: a 2^10 shift is not whole -> unchanged.
    assert_eq!(bucket_shift(10, -4), None);
    assert_eq!(bucket_shift(32, -4), Some(2));
    assert_eq!(power_of_two(1024.0), Some(10));
    assert_eq!(power_of_two(1000.0), None);
}

#[test]
fn rules_declare_units_and_rename_fixes_names() {
    let config = Config {
        rules: vec![
            UnitRule {
                match_name: "heap_kb|jvm_.*_kb".to_string(),
                unit: "KiBy".to_string(),
            },
            UnitRule {
                match_name: "latency_ms".to_string(),
                unit: "ms".to_string(),
            },
        ],
        rename: true,
    };
    let gauge = |v: f64| {
        metric::Data::Gauge(Gauge {
            data_points: vec![number(number_data_point::Value::AsDouble(v))],
        })
    };
    let (out, _) = run(
        config,
        vec![
            metric("heap_kb", "", gauge(2.0)),
            metric("latency_ms", "", gauge(5.0)),
            metric("latency_ms_total", "ms", gauge(5.0)),
            metric("cpu.percent", "%", gauge(5.0)),
            metric("other_kb", "", gauge(1.0)),
            metric("duration_seconds", "s", gauge(1.0)),
        ],
    );
    let names: Vec<(&str, &str)> = out
        .iter()
        .map(|m| (m.name.as_str(), m.unit.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("heap_bytes", "By"),
            ("latency_seconds", "s"),
            ("latency_seconds_total", "s"),
            ("cpu.ratio", "1"),
            ("other_kb", ""),
            ("duration_seconds", "s")
        ]
    );
    assert_eq!(
        gauge_values(&out[0]),
        vec![number_data_point::Value::AsDouble(2048.0)]
    );
}

#[test]
fn unknown_units_pass_through_and_are_counted() {
    let registry = Registry::new();
    let mut processor =
        UnitsProcessor::new("units/x", &Config::default(), Some(registry.clone())).expect("valid");
    let mut resources = vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![metric(
                "dist",
                "furlong",
                metric::Data::Gauge(Gauge {
                    data_points: vec![number(number_data_point::Value::AsDouble(7.0)); 2],
                }),
            )],
            ..ScopeMetrics::default()
        }],
        ..ResourceMetrics::default()
    }];
    processor.convert(&mut resources);
    let m = &resources[0].scope_metrics[0].metrics[0];
    assert_eq!(
        (m.unit.as_str(), gauge_values(m)),
        ("furlong", vec![number_data_point::Value::AsDouble(7.0); 2])
    );
    assert_eq!(processor.unknown_points("furlong"), 2);
    assert!(
        registry
            .render_prometheus()
            .contains("oxcol_processor_units_unknown{processor=\"units/x\",unit=\"furlong\"} 2"),
        "{}",
        registry.render_prometheus()
    );
}

#[test]
fn config_validation_tells_what_to_do() {
    let config = Config {
        rules: vec![UnitRule {
            match_name: "(".to_string(),
            unit: "parsec".to_string(),
        }],
        rename: false,
    };
    let errors = config.validate();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[1].contains("not a unit oxcol can convert"));
}
