use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use oxcol_core::{Batch, Data, Processor};

use super::*;

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(v.into())),
    }
}
fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(s(v)),
        ..Default::default()
    }
}
fn scope(name: &str) -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: name.into(),
        ..Default::default()
    })
}
fn resource(attrs: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource {
        attributes: attrs,
        ..Default::default()
    })
}
fn processor(keys: &[&str]) -> GroupByAttrsProcessor {
    GroupByAttrsProcessor::new(
        "groupbyattrs",
        &Config {
            keys: keys.iter().map(|k| k.to_string()).collect(),
        },
        None,
    )
    .expect("valid config")
}
fn span(name: &str, attrs: Vec<KeyValue>) -> Span {
    Span {
        name: name.into(),
        attributes: attrs,
        ..Default::default()
    }
}

#[test]
fn spans_move_keys_to_the_resource_and_regroup() {
    let input = vec![ResourceSpans {
        resource: resource(vec![kv("service.name", "api")]),
        scope_spans: vec![ScopeSpans {
            scope: scope("lib"),
            spans: vec![
                span("a", vec![kv("host", "h1"), kv("x", "1")]),
                span("b", vec![kv("host", "h2")]),
                span("c", vec![kv("host", "h1")]),
                span("d", vec![]),
            ],
            ..Default::default()
        }],
        ..Default::default()
    }];
    let out = processor(&["host"])
        .process(Batch::from_traces(input))
        .expect("processed");
    assert_eq!(out.items(), 4);
    let Data::Traces(r) = out.data() else {
        panic!("traces")
    };
    let summary: Vec<(Vec<KeyValue>, Vec<String>)> = r
        .iter()
        .map(|rs| {
            (
                rs.resource
                    .as_ref()
                    .map(|r| r.attributes.clone())
                    .unwrap_or_default(),
                rs.scope_spans
                    .iter()
                    .flat_map(|s| s.spans.iter().map(|sp| sp.name.clone()))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                vec![kv("service.name", "api"), kv("host", "h1")],
                vec!["a".to_string(), "c".to_string()]
            ),
            (
                vec![kv("service.name", "api"), kv("host", "h2")],
                vec!["b".to_string()]
            ),
            (vec![kv("service.name", "api")], vec!["d".to_string()]),
        ]
    );
    // The moved attribute is gone from the span; others stay.
    assert_eq!(r[0].scope_spans[0].spans[0].attributes, vec![kv("x", "1")]);
}

#[test]
fn merges_into_an_identical_existing_resource_whatever_the_attribute_order() {
    let input = vec![
        ResourceSpans {
            resource: resource(vec![kv("a", "1"), kv("host", "h1")]),
            scope_spans: vec![ScopeSpans {
                scope: scope("lib"),
                spans: vec![span("x", vec![])],
                ..Default::default()
            }],
            ..Default::default()
        },
        ResourceSpans {
            resource: resource(vec![kv("a", "1")]),
            scope_spans: vec![ScopeSpans {
                scope: scope("lib"),
                spans: vec![span("y", vec![kv("host", "h1")])],
                ..Default::default()
            }],
            ..Default::default()
        },
        ResourceSpans {
            resource: resource(vec![kv("host", "h1"), kv("a", "1")]),
            scope_spans: vec![ScopeSpans {
                scope: scope("other"),
                spans: vec![span("z", vec![])],
                ..Default::default()
            }],
            ..Default::default()
        },
    ];
    let out = processor(&["host"])
        .process(Batch::from_traces(input))
        .expect("processed");
    let Data::Traces(r) = out.data() else {
        panic!("traces")
    };
    assert_eq!(r.len(), 1);
    let scopes: Vec<(String, usize)> = r[0]
        .scope_spans
        .iter()
        .map(|s| {
            (
                s.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                s.spans.len(),
            )
        })
        .collect();
    assert_eq!(
        scopes,
        vec![("lib".to_string(), 2), ("other".to_string(), 1)]
    );
}

#[test]
fn empty_keys_only_compact() {
    let input = vec![
        ResourceLogs {
            resource: resource(vec![kv("a", "1")]),
            scope_logs: vec![ScopeLogs {
                scope: scope("lib"),
                log_records: vec![LogRecord::default()],
                ..Default::default()
            }],
            ..Default::default()
        },
        ResourceLogs {
            resource: resource(vec![kv("a", "1")]),
            scope_logs: vec![ScopeLogs {
                scope: scope("lib"),
                log_records: vec![LogRecord {
                    attributes: vec![kv("host", "h")],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        },
    ];
    let out = processor(&[])
        .process(Batch::from_logs(input))
        .expect("processed");
    let Data::Logs(r) = out.data() else {
        panic!("logs")
    };
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].scope_logs.len(), 1);
    assert_eq!(r[0].scope_logs[0].log_records.len(), 2);
    assert_eq!(
        r[0].scope_logs[0].log_records[1].attributes,
        vec![kv("host", "h")],
        "no key moves with empty keys"
    );
}

#[test]
fn metric_points_split_into_metrics_per_resource() {
    let point = |host: &str, v: i64| NumberDataPoint {
        attributes: vec![kv("host", host), kv("cpu", "0")],
        value: Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(v)),
        ..Default::default()
    };
    let input = vec![ResourceMetrics {
        resource: resource(vec![]),
        scope_metrics: vec![ScopeMetrics {
            scope: scope("lib"),
            metrics: vec![
                Metric {
                    name: "load".into(),
                    unit: "1".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![point("h1", 1), point("h2", 2), point("h1", 3)],
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "count".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![point("h2", 5)],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "nodata".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }];
    let out = processor(&["host"])
        .process(Batch::from_metrics(input))
        .expect("processed");
    assert_eq!(out.items(), 4);
    let Data::Metrics(r) = out.data() else {
        panic!("metrics")
    };
    assert_eq!(r.len(), 2);
    let h1 = &r[0].scope_metrics[0].metrics;
    assert_eq!(
        r[0].resource.as_ref().map(|r| r.attributes.clone()),
        Some(vec![kv("host", "h1")])
    );
    assert_eq!(h1.len(), 1);
    assert_eq!(h1[0].unit, "1");
    let Some(metric::Data::Gauge(g)) = &h1[0].data else {
        panic!("gauge")
    };
    assert_eq!(g.data_points.len(), 2);
    assert_eq!(g.data_points[0].attributes, vec![kv("cpu", "0")]);
    let h2 = &r[1].scope_metrics[0].metrics;
    assert_eq!(
        h2.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["load", "count"]
    );
    let Some(metric::Data::Sum(sum)) = &h2[1].data else {
        panic!("sum")
    };
    assert_eq!(
        (
            sum.aggregation_temporality,
            sum.is_monotonic,
            sum.data_points.len()
        ),
        (2, true, 1)
    );
}

#[test]
fn an_empty_key_is_accepted_and_moves_the_attribute_named_empty() {
    assert!(
        Config {
            keys: vec![String::new()]
        }
        .validate()
        .is_empty()
    );
    let input = vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: vec![span("x", vec![kv("", "v"), kv("a", "1")])],
            ..Default::default()
        }],
        ..Default::default()
    }];
    let out = processor(&[""])
        .process(Batch::from_traces(input))
        .expect("processed");
    let Data::Traces(r) = out.data() else {
        panic!("traces")
    };
    assert_eq!(
        r[0].resource.as_ref().map(|r| r.attributes.clone()),
        Some(vec![kv("", "v")])
    );
    assert_eq!(r[0].scope_spans[0].spans[0].attributes, vec![kv("a", "1")]);
}
