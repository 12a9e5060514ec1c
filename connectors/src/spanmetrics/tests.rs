use super::*;
use crate::helper::testing::*;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
}

fn histogram_points(metric: &Metric) -> &[HistogramDataPoint] {
    match &metric.data {
        Some(metric::Data::Histogram(h)) => &h.data_points,
        other => panic!("expected a histogram, got {other:?}"),
    }
}

#[test]
fn calls_and_durations_are_aggregated_by_the_default_dimensions() {
    let mut connector = SpanMetricsConnector::new(&Config::default());
    let batch = traces(vec![resource_spans(
        "checkout",
        vec![
            span("GET /cart", SpanKind::Server, 3, vec![]),
            span("GET /cart", SpanKind::Server, 70, vec![]),
            with_error(span("GET /cart", SpanKind::Server, 1, vec![])),
            span("SELECT", SpanKind::Client, 5, vec![]),
        ],
    )]);
    assert!(
        connector
            .consume(batch, at(0))
            .expect("aggregates")
            .is_empty(),
        "metrics leave on the timer, not per batch"
    );
    assert_eq!(connector.tick_interval(), Some(Duration::from_secs(60)));
    let out = connector.tick(at(60));
    let resources = metrics_of(&out[0].batch);
    assert_eq!(resources.len(), 1);
    assert_eq!(
        resources[0].scope_metrics[0].scope.as_ref().unwrap().name,
        SCOPE_NAME
    );
    let calls = find_metrics(&resources, "traces.span.metrics.calls");
    let mut points: Vec<(String, String, String, i64)> = sum_points(calls[0])
        .into_iter()
        .map(|(a, n)| {
            assert_eq!(attribute(&a, "service.name").as_deref(), Some("checkout"));
            (
                attribute(&a, "span.name").unwrap(),
                attribute(&a, "span.kind").unwrap(),
                attribute(&a, "status.code").unwrap(),
                n,
            )
        })
        .collect();
    points.sort();
    assert_eq!(
        points,
        vec![
            (
                "GET /cart".into(),
                "SPAN_KIND_SERVER".into(),
                "STATUS_CODE_ERROR".into(),
                1
            ),
            (
                "GET /cart".into(),
                "SPAN_KIND_SERVER".into(),
                "STATUS_CODE_UNSET".into(),
                2
            ),
            (
                "SELECT".into(),
                "SPAN_KIND_CLIENT".into(),
                "STATUS_CODE_UNSET".into(),
                1
            ),
        ]
    );
    let duration = find_metrics(&resources, "traces.span.metrics.duration");
    assert_eq!(duration[0].unit, "ms");
    let unset = histogram_points(duration[0])
        .iter()
        .find(|p| {
            attribute(&p.attributes, "status.code").as_deref() == Some("STATUS_CODE_UNSET")
                && attribute(&p.attributes, "span.name").as_deref() == Some("GET /cart")
        })
        .expect("series");
    assert_eq!(unset.count, 2);
    assert_eq!(unset.sum, Some(73.0));
    assert_eq!(unset.explicit_bounds, DEFAULT_BUCKETS_MS);
    // 3 ms falls in (2, 4], 70 ms in (50, 100].
    assert_eq!(unset.bucket_counts[1], 1);
    assert_eq!(unset.bucket_counts[6], 1);
    assert_eq!(unset.bucket_counts.iter().sum::<u64>(), 2);
}

#[test]
fn cumulative_keeps_counting_and_delta_resets() {
    let one = || {
        traces(vec![resource_spans(
            "s",
            vec![span("op", SpanKind::Server, 1, vec![])],
        )])
    };
    let mut cumulative = SpanMetricsConnector::new(&Config::default());
    let mut delta = SpanMetricsConnector::new(&Config {
        aggregation_temporality: DELTA.into(),
        ..Config::default()
    });
    for connector in [&mut cumulative, &mut delta] {
        connector.consume(one(), at(0)).expect("ok");
        connector.tick(at(60));
        connector.consume(one(), at(61)).expect("ok");
    }
    let total = |out: Vec<Output>| {
        sum_points(find_metrics(&metrics_of(&out[0].batch), "traces.span.metrics.calls")[0])[0].1
    };
    assert_eq!(total(cumulative.tick(at(120))), 2);
    let delta_out = delta.tick(at(120));
    let delta_metrics = metrics_of(&delta_out[0].batch);
    let Some(metric::Data::Sum(sum)) =
        &find_metrics(&delta_metrics, "traces.span.metrics.calls")[0].data
    else {
        panic!("a sum")
    };
    assert_eq!(
        sum.data_points[0].start_time_unix_nano,
        unix_nanos(at(60)),
        "delta starts at the previous flush"
    );
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
    assert_eq!(total(delta_out), 1);
    assert!(
        delta.tick(at(180)).is_empty(),
        "delta: nothing new, nothing sent"
    );
    assert_eq!(
        total(cumulative.tick(at(180))),
        2,
        "cumulative: sent again unchanged"
    );
}

#[test]
fn dimensions_defaults_exclusions_namespace_and_seconds() {
    let config = Config {
        dimensions: vec![
            Dimension {
                name: "http.method".into(),
                default: Some("NONE".into()),
            },
            Dimension {
                name: "region".into(),
                default: None,
            },
        ],
        exclude_dimensions: vec!["status.code".into()],
        namespace: String::new(),
        histogram: HistogramConfig {
            unit: Unit::Seconds,
            explicit: Some(ExplicitConfig {
                buckets: vec![GoDuration::from_millis(100), GoDuration::from_secs(1)],
            }),
            ..Default::default()
        },
        ..Config::default()
    };
    let mut connector = SpanMetricsConnector::new(&config);
    connector
        .consume(
            traces(vec![resource_spans(
                "s",
                vec![
                    span(
                        "a",
                        SpanKind::Server,
                        500,
                        vec![attributes::string("http.method", "GET")],
                    ),
                    span("b", SpanKind::Server, 5, vec![]),
                ],
            )]),
            at(0),
        )
        .expect("ok");
    let resources = metrics_of(&connector.tick(at(60))[0].batch);
    let calls = sum_points(find_metrics(&resources, "calls")[0]);
    for (attributes, _) in &calls {
        assert!(attribute(attributes, "status.code").is_none(), "excluded");
        assert!(
            attribute(attributes, "region").is_none(),
            "missing without default: omitted"
        );
    }
    let methods: Vec<String> = calls
        .iter()
        .map(|(a, _)| attribute(a, "http.method").unwrap())
        .collect();
    assert!(
        methods.contains(&"GET".to_string()) && methods.contains(&"NONE".to_string()),
        "{methods:?}"
    );
    let duration = find_metrics(&resources, "duration")[0];
    assert_eq!(duration.unit, "s");
    let a = histogram_points(duration)
        .iter()
        .find(|p| attribute(&p.attributes, "span.name").as_deref() == Some("a"))
        .unwrap();
    assert_eq!(a.explicit_bounds, vec![0.1, 1.0]);
    assert_eq!(a.bucket_counts, vec![0, 1, 0]);
    assert_eq!(a.sum, Some(0.5));
}

#[test]
fn cardinality_limit_overflows_into_one_series() {
    let mut connector = SpanMetricsConnector::new(&Config {
        aggregation_cardinality_limit: 2,
        ..Config::default()
    });
    let spans = (0..5)
        .map(|i| span(&format!("op{i}"), SpanKind::Server, 1, vec![]))
        .collect();
    connector
        .consume(traces(vec![resource_spans("s", spans)]), at(0))
        .expect("ok");
    assert_eq!(connector.series(), 3, "two series plus the overflow series");
    let resources = metrics_of(&connector.tick(at(60))[0].batch);
    let overflow: Vec<i64> = sum_points(find_metrics(&resources, "traces.span.metrics.calls")[0])
        .into_iter()
        .filter(|(a, _)| attribute(a, OVERFLOW).as_deref() == Some("true"))
        .map(|(_, n)| n)
        .collect();
    assert_eq!(overflow, vec![3]);
}

#[test]
fn resources_are_bounded_and_expire() {
    let mut connector = SpanMetricsConnector::new(&Config {
        resource_metrics_cache_size: 2,
        metrics_expiration: GoDuration::from_secs(90),
        ..Config::default()
    });
    for (i, service) in ["a", "b", "c"].iter().enumerate() {
        connector
            .consume(
                traces(vec![resource_spans(
                    service,
                    vec![span("op", SpanKind::Server, 1, vec![])],
                )]),
                at(i as u64),
            )
            .expect("ok");
    }
    assert_eq!(
        connector.evicted_resources, 1,
        "the least recently seen resource (a) was evicted"
    );
    let services = |out: &[Output]| -> Vec<String> {
        let mut s: Vec<String> = metrics_of(&out[0].batch)
            .iter()
            .map(|r| attribute(&r.resource.as_ref().unwrap().attributes, "service.name").unwrap())
            .collect();
        s.sort();
        s
    };
    assert_eq!(services(&connector.tick(at(60))), vec!["b", "c"]);
    connector
        .consume(
            traces(vec![resource_spans(
                "c",
                vec![span("op", SpanKind::Server, 1, vec![])],
            )]),
            at(80),
        )
        .expect("ok");
    assert_eq!(
        services(&connector.tick(at(120))),
        vec!["c"],
        "b was not seen for more than metrics_expiration"
    );
}

#[test]
fn spans_without_service_name_are_skipped() {
    let mut connector = SpanMetricsConnector::new(&Config::default());
    let mut resource = resource_spans("x", vec![span("op", SpanKind::Server, 1, vec![])]);
    resource.resource = None;
    connector
        .consume(traces(vec![resource]), at(0))
        .expect("ok");
    assert!(connector.tick(at(60)).is_empty());
}

#[test]
fn validation_reports_every_problem() {
    let config = Config {
        dimensions: vec![Dimension {
            name: "span.name".into(),
            default: None,
        }],
        aggregation_temporality: "SOMETIMES".into(),
        metrics_flush_interval: GoDuration::default(),
        aggregation_cardinality_limit: -1,
        ..Config::default()
    };
    let problems = config.validate();
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(problems[0].contains("duplicate dimension name \"span.name\""));
}

#[test]
fn exemplars_carry_trace_and_span_ids_up_to_the_limit_and_reset_per_flush() {
    let config = Config {
        exemplars: ExemplarsConfig {
            enabled: true,
            max_per_data_point: 2,
        },
        ..Config::default()
    };
    let mut connector = SpanMetricsConnector::new(&config);
    let spans = (1..=3)
        .map(|i| with_ids(span("op", SpanKind::Server, i, vec![]), 7, i as u8, None))
        .collect();
    connector
        .consume(traces(vec![resource_spans("s", spans)]), at(0))
        .expect("ok");
    let out = connector.tick(at(60));
    let resources = metrics_of(&out[0].batch);
    let point = &histogram_points(find_metrics(&resources, "traces.span.metrics.duration")[0])[0];
    assert_eq!(point.count, 3);
    assert_eq!(point.exemplars.len(), 2, "max_per_data_point");
    assert_eq!(
        point.exemplars[0].time_unix_nano,
        unix_nanos(at(0)),
        "stamped when aggregated"
    );
    let calls = &find_metrics(&resources, "traces.span.metrics.calls")[0];
    let Some(metric::Data::Sum(calls)) = &calls.data else {
        panic!("a sum")
    };
    assert_eq!(
        calls.data_points[0].exemplars.len(),
        2,
        "calls carry exemplars too"
    );
    assert_eq!(point.exemplars[0].trace_id, vec![7; 16]);
    assert_eq!(point.exemplars[1].span_id, vec![2; 8]);
    assert_eq!(
        point.exemplars[1].value,
        Some(exemplar::Value::AsDouble(2.0))
    );
    let out = connector.tick(at(120));
    let resources = metrics_of(&out[0].batch);
    let point = &histogram_points(find_metrics(&resources, "traces.span.metrics.duration")[0])[0];
    assert_eq!(point.count, 3, "cumulative");
    assert!(point.exemplars.is_empty(), "exemplars are per flush");
    assert!(!Config::default().exemplars.enabled, "off by default");
}

#[test]
fn calls_histogram_and_event_dimensions_apply_to_their_metric_only() {
    use opentelemetry_proto::tonic::trace::v1::span::Event;
    let config = Config {
        calls_dimensions: vec![Dimension {
            name: "http.method".into(),
            default: None,
        }],
        histogram: HistogramConfig {
            dimensions: vec![Dimension {
                name: "http.route".into(),
                default: Some("none".into()),
            }],
            ..Default::default()
        },
        events: EventsConfig {
            enabled: true,
            dimensions: vec![Dimension {
                name: "exception.type".into(),
                default: None,
            }],
        },
        ..Config::default()
    };
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let mut connector = SpanMetricsConnector::new(&config);
    let mut failing = span(
        "op",
        SpanKind::Server,
        1,
        vec![attributes::string("http.method", "GET")],
    );
    failing.events = vec![
        Event {
            name: "exception".into(),
            attributes: vec![attributes::string("exception.type", "Timeout")],
            ..Default::default()
        },
        Event {
            name: "exception".into(),
            attributes: vec![attributes::string("exception.type", "Timeout")],
            ..Default::default()
        },
    ];
    connector
        .consume(traces(vec![resource_spans("s", vec![failing])]), at(0))
        .expect("ok");
    let resources = metrics_of(&connector.tick(at(60))[0].batch);
    let calls = sum_points(find_metrics(&resources, "traces.span.metrics.calls")[0]);
    assert_eq!(
        attribute(&calls[0].0, "http.method").as_deref(),
        Some("GET")
    );
    assert!(attribute(&calls[0].0, "http.route").is_none());
    let duration =
        &histogram_points(find_metrics(&resources, "traces.span.metrics.duration")[0])[0];
    assert_eq!(
        attribute(&duration.attributes, "http.route").as_deref(),
        Some("none")
    );
    assert!(attribute(&duration.attributes, "http.method").is_none());
    let events = sum_points(find_metrics(&resources, "traces.span.metrics.events")[0]);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1, 2);
    assert_eq!(
        attribute(&events[0].0, "exception.type").as_deref(),
        Some("Timeout")
    );
    assert_eq!(attribute(&events[0].0, "span.name").as_deref(), Some("op"));

    let bad = Config {
        events: EventsConfig {
            enabled: true,
            dimensions: Vec::new(),
        },
        calls_dimensions: vec![Dimension {
            name: "span.kind".into(),
            default: None,
        }],
        ..Config::default()
    };
    let problems = bad.validate();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("calls_dimensions: duplicate dimension name \"span.kind\""));
    assert!(problems[1].contains("no dimensions configured for events"));
}

#[test]
fn the_collector_instance_id_is_a_default_dimension_that_can_be_excluded() {
    let one = || {
        traces(vec![resource_spans(
            "s",
            vec![span("op", SpanKind::Server, 1, vec![])],
        )])
    };
    let mut with_id = SpanMetricsConnector::new(&Config::default()).with_instance_id("collector-1");
    with_id.consume(one(), at(0)).expect("ok");
    let resources = metrics_of(&with_id.tick(at(60))[0].batch);
    let calls = sum_points(find_metrics(&resources, "traces.span.metrics.calls")[0]);
    assert_eq!(
        attribute(&calls[0].0, COLLECTOR_INSTANCE_ID).as_deref(),
        Some("collector-1")
    );
    let config = Config {
        exclude_dimensions: vec![COLLECTOR_INSTANCE_ID.into()],
        ..Config::default()
    };
    let mut excluded = SpanMetricsConnector::new(&config).with_instance_id("collector-1");
    excluded.consume(one(), at(0)).expect("ok");
    let resources = metrics_of(&excluded.tick(at(60))[0].batch);
    let calls = sum_points(find_metrics(&resources, "traces.span.metrics.calls")[0]);
    assert!(attribute(&calls[0].0, COLLECTOR_INSTANCE_ID).is_none());
}
