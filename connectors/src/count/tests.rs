use super::*;
use crate::helper::testing::*;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};

fn config(yaml_spans: BTreeMap<String, MetricInfo>) -> Config {
    Config {
        spans: Some(yaml_spans),
        ..Default::default()
    }
}

#[test]
fn default_metrics_count_spans_and_events_per_resource() {
    let mut with_events = span("a", SpanKind::Server, 1, vec![]);
    with_events.events = vec![Event::default(), Event::default()];
    let batch = traces(vec![
        resource_spans(
            "front",
            vec![with_events, span("b", SpanKind::Client, 1, vec![])],
        ),
        resource_spans("back", vec![span("c", SpanKind::Server, 1, vec![])]),
    ]);
    let out = CountConnector::new(&Config::default())
        .expect("builds")
        .consume(
            batch,
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(5),
        )
        .expect("counts");
    assert_eq!(out.len(), 1);
    let resources = metrics_of(&out[0].batch);
    assert_eq!(resources.len(), 2, "one ResourceMetrics per input resource");
    let front_spans = find_metrics(&resources[..1], "trace.span.count");
    assert_eq!(
        sum_points(front_spans[0]).iter().map(|p| p.1).sum::<i64>(),
        2
    );
    assert_eq!(
        sum_points(find_metrics(&resources[..1], "trace.span.event.count")[0])[0].1,
        2
    );
    assert_eq!(
        sum_points(find_metrics(&resources[1..], "trace.span.count")[0])[0].1,
        1
    );
    assert!(
        find_metrics(&resources[1..], "trace.span.event.count").is_empty(),
        "no events, no metric"
    );
    assert_eq!(
        attribute(
            &resources[0].resource.as_ref().unwrap().attributes,
            "service.name"
        )
        .as_deref(),
        Some("front")
    );
    let Some(metric::Data::Sum(sum)) = &front_spans[0].data else {
        panic!("a sum")
    };
    assert!(sum.is_monotonic);
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
    // The spans' time span: earliest start, latest end.
    assert_eq!(
        sum.data_points[0].start_time_unix_nano,
        1_700_000_000_000_000_000
    );
    assert_eq!(sum.data_points[0].time_unix_nano, 1_700_000_000_001_000_000);
    // Events without a time: the time of counting.
    let events = find_metrics(&resources[..1], "trace.span.event.count");
    let Some(metric::Data::Sum(sum)) = &events[0].data else {
        panic!("a sum")
    };
    assert_eq!(
        (
            sum.data_points[0].start_time_unix_nano,
            sum.data_points[0].time_unix_nano
        ),
        (5_000_000_000, 5_000_000_000)
    );
}

#[test]
fn attributes_group_counts_and_items_without_them_are_not_counted() {
    let spans = BTreeMap::from([
        (
            "by.env".to_string(),
            MetricInfo {
                description: "spans by env".into(),
                conditions: Vec::new(),
                attributes: vec![AttributeConfig {
                    key: "env".into(),
                    default_value: None,
                }],
            },
        ),
        (
            "by.tier".to_string(),
            MetricInfo {
                description: String::new(),
                conditions: Vec::new(),
                attributes: vec![AttributeConfig {
                    key: "tier".into(),
                    default_value: Some(Scalar::String("unknown".into())),
                }],
            },
        ),
    ]);
    let batch = traces(vec![resource_spans(
        "s",
        vec![
            span(
                "a",
                SpanKind::Server,
                1,
                vec![attributes::string("env", "prod")],
            ),
            span(
                "b",
                SpanKind::Server,
                1,
                vec![
                    attributes::string("env", "prod"),
                    attributes::string("tier", "web"),
                ],
            ),
            span(
                "c",
                SpanKind::Server,
                1,
                vec![attributes::string("env", "dev")],
            ),
            span("d", SpanKind::Server, 1, vec![]),
        ],
    )]);
    let out = CountConnector::new(&config(spans))
        .expect("builds")
        .consume(batch, SystemTime::now())
        .expect("counts");
    let resources = metrics_of(&out[0].batch);
    let mut by_env: Vec<(String, i64)> = sum_points(find_metrics(&resources, "by.env")[0])
        .into_iter()
        .map(|(a, n)| (attribute(&a, "env").unwrap(), n))
        .collect();
    by_env.sort();
    assert_eq!(
        by_env,
        vec![("dev".to_string(), 1), ("prod".to_string(), 2)],
        "the span without env is not counted"
    );
    let mut by_tier: Vec<(String, i64)> = sum_points(find_metrics(&resources, "by.tier")[0])
        .into_iter()
        .map(|(a, n)| (attribute(&a, "tier").unwrap(), n))
        .collect();
    by_tier.sort();
    assert_eq!(
        by_tier,
        vec![("unknown".to_string(), 3), ("web".to_string(), 1)]
    );
    assert!(
        find_metrics(&resources, "trace.span.count").is_empty(),
        "a configured section replaces the default"
    );
    assert_eq!(
        find_metrics(&resources, "trace.span.event.count").len(),
        0,
        "no events"
    );
}

#[test]
fn metrics_and_logs_are_counted_with_their_defaults() {
    let request = oxcol_core::testdata::metrics_request(1, 3, 2);
    let out = CountConnector::new(&Config::default())
        .expect("builds")
        .consume(
            Batch::from_metrics(request.resource_metrics),
            SystemTime::now(),
        )
        .expect("counts");
    let resources = metrics_of(&out[0].batch);
    assert_eq!(
        sum_points(find_metrics(&resources, "metric.count")[0])[0].1,
        3
    );
    assert_eq!(
        sum_points(find_metrics(&resources, "metric.datapoint.count")[0])
            .iter()
            .map(|p| p.1)
            .sum::<i64>(),
        6
    );

    let logs = oxcol_core::testdata::logs_request(2, 4);
    let out = CountConnector::new(&Config::default())
        .expect("builds")
        .consume(Batch::from_logs(logs.resource_logs), SystemTime::now())
        .expect("counts");
    let resources = metrics_of(&out[0].batch);
    assert_eq!(resources.len(), 2);
    assert_eq!(
        sum_points(find_metrics(&resources[..1], "log.record.count")[0])[0].1,
        4
    );
}

#[test]
fn validation_names_every_problem() {
    let spans = BTreeMap::from([(
        "x".to_string(),
        MetricInfo {
            description: String::new(),
            conditions: Vec::new(),
            attributes: vec![
                AttributeConfig {
                    key: String::new(),
                    default_value: None,
                },
                AttributeConfig {
                    key: "a".into(),
                    default_value: None,
                },
                AttributeConfig {
                    key: "a".into(),
                    default_value: None,
                },
            ],
        },
    )]);
    let problems = config(spans).validate();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("empty key"));
    assert!(problems[1].contains("listed twice"));
}

#[test]
fn an_empty_batch_emits_nothing() {
    assert!(
        CountConnector::new(&Config::default())
            .expect("builds")
            .consume(Batch::from_traces(vec![]), SystemTime::now())
            .expect("ok")
            .is_empty()
    );
}

#[test]
fn conditions_are_ored_and_filter_what_is_counted() {
    let spans = BTreeMap::from([(
        "slow.or.error".to_string(),
        MetricInfo {
            description: String::new(),
            conditions: vec![
                r#"attributes["slow"] == true"#.into(),
                "status.code == STATUS_CODE_ERROR".into(),
            ],
            attributes: Vec::new(),
        },
    )]);
    let batch = traces(vec![resource_spans(
        "s",
        vec![
            span(
                "a",
                SpanKind::Server,
                1,
                vec![attributes::boolean("slow", true)],
            ),
            with_error(span("b", SpanKind::Server, 1, vec![])),
            span("c", SpanKind::Server, 1, vec![]),
        ],
    )]);
    let out = CountConnector::new(&config(spans))
        .expect("builds")
        .consume(batch, SystemTime::now())
        .expect("counts");
    let resources = metrics_of(&out[0].batch);
    assert_eq!(
        sum_points(find_metrics(&resources, "slow.or.error")[0])[0].1,
        2
    );
    let bad = BTreeMap::from([(
        "x".to_string(),
        MetricInfo {
            conditions: vec!["attributes[".into()],
            ..Default::default()
        },
    )]);
    assert!(
        config(bad.clone()).validate()[0].starts_with("spans.x: condition"),
        "{:?}",
        config(bad).validate()
    );
}

#[test]
fn a_section_written_empty_counts_with_the_default_and_metrics_take_no_attributes() {
    let config = Config {
        spans: Some(BTreeMap::new()),
        ..Default::default()
    };
    let mut event_span = span("a", SpanKind::Server, 1, vec![]);
    event_span.events = vec![Event::default()];
    let out = CountConnector::new(&config)
        .expect("builds")
        .consume(
            traces(vec![resource_spans("s", vec![event_span])]),
            SystemTime::now(),
        )
        .expect("counts");
    let resources = metrics_of(&out[0].batch);
    assert_eq!(
        find_metrics(&resources, "trace.span.count").len(),
        1,
        "spans: {{}} is as if not written (checked against the Collector)"
    );
    assert_eq!(
        find_metrics(&resources, "trace.span.event.count").len(),
        1,
        "spanevents not written: default"
    );
    assert_eq!(
        resources[0].scope_metrics[0].scope.as_ref().unwrap().name,
        SCOPE_NAME
    );
    let metrics = BTreeMap::from([(
        "m".to_string(),
        MetricInfo {
            attributes: vec![AttributeConfig {
                key: "k".into(),
                default_value: None,
            }],
            ..Default::default()
        },
    )]);
    let problems = Config {
        metrics: Some(metrics),
        ..Default::default()
    }
    .validate();
    assert!(
        problems[0].contains("attributes are not supported for metrics"),
        "{problems:?}"
    );
}

#[test]
fn every_point_of_a_kind_carries_the_time_span_of_all_its_items_in_the_resource() {
    // As the Collector: the error count covers the time of all spans, not only the error one.
    let spans = BTreeMap::from([(
        "errors".to_string(),
        MetricInfo {
            conditions: vec!["status.code == STATUS_CODE_ERROR".into()],
            ..Default::default()
        },
    )]);
    let mut late = with_error(span("late", SpanKind::Server, 2, vec![]));
    late.start_time_unix_nano += 10_000_000;
    late.end_time_unix_nano += 10_000_000;
    let batch = traces(vec![resource_spans(
        "s",
        vec![span("early", SpanKind::Server, 1, vec![]), late],
    )]);
    let out = CountConnector::new(&config(spans))
        .expect("builds")
        .consume(batch, SystemTime::now())
        .expect("counts");
    let resources = metrics_of(&out[0].batch);
    let Some(metric::Data::Sum(sum)) = &find_metrics(&resources, "errors")[0].data else {
        panic!("a sum")
    };
    assert_eq!(sum_points(find_metrics(&resources, "errors")[0])[0].1, 1);
    assert_eq!(
        sum.data_points[0].start_time_unix_nano, 1_700_000_000_000_000_000,
        "the early span's start"
    );
    assert_eq!(
        sum.data_points[0].time_unix_nano, 1_700_000_000_012_000_000,
        "the late span's end"
    );
}
