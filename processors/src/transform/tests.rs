use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use oxcol_core::batch::Data;
use prost::Message;

use super::*;

fn config(json: serde_json::Value) -> Config {
    serde_json::from_value(json).unwrap()
}

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.to_string())),
    }
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(s(v)),
        ..Default::default()
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
}

fn spans() -> Vec<ResourceSpans> {
    vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", "api")],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "lib".into(),
                ..Default::default()
            }),
            spans: vec![
                Span {
                    name: "GET /a".into(),
                    attributes: vec![kv("http.path", "/animal"), kv("secret", "x")],
                    ..Default::default()
                },
                Span {
                    name: "POST /b".into(),
                    attributes: vec![kv("http.path", "/b")],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn processor(json: serde_json::Value) -> TransformProcessor {
    TransformProcessor::new("transform/test", &config(json)).unwrap()
}

#[test]
fn grouped_and_flat_trace_statements_on_an_encoded_batch() {
    let mut p = processor(serde_json::json!({
        "trace_statements": [
            {"context": "span", "statements": [
                "set(name, \"bear\") where attributes[\"http.path\"] == \"/animal\"",
                "keep_keys(attributes, [\"http.path\"])"
            ]},
            {"context": "resource", "statements": ["set(attributes[\"name\"], \"bear\")"]},
            {"statements": ["set(span.attributes[\"svc\"], resource.attributes[\"service.name\"])"]}
        ]
    }));
    let request = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: spans(),
    };
    let batch = Batch::from_encoded(Signal::Traces, request.encode_to_vec().into()).unwrap();
    let out = p.process(batch).unwrap();
    assert_eq!(out.items(), 2);
    let Data::Traces(rs) = out.data() else {
        panic!("decoded traces expected")
    };
    let spans = &rs[0].scope_spans[0].spans;
    assert_eq!(spans[0].name, "bear");
    assert_eq!(spans[1].name, "POST /b");
    assert_eq!(
        spans[0]
            .attributes
            .iter()
            .map(|a| a.key.as_str())
            .collect::<Vec<_>>(),
        ["http.path", "svc"]
    );
    assert_eq!(attr(&spans[1].attributes, "svc"), Some(&s("api")));
    assert_eq!(
        attr(&rs[0].resource.as_ref().unwrap().attributes, "name"),
        Some(&s("bear"))
    );
}

#[test]
fn group_conditions_gate_the_statements() {
    let mut p = processor(serde_json::json!({
        "trace_statements": [{
            "context": "span",
            "conditions": ["name == \"nope\"", "IsMatch(name, \"^POST\")"],
            "statements": ["set(attributes[\"posted\"], true)"]
        }]
    }));
    let out = p.process(Batch::from_traces(spans())).unwrap();
    let Data::Traces(rs) = out.data() else {
        panic!()
    };
    let spans = &rs[0].scope_spans[0].spans;
    assert!(attr(&spans[0].attributes, "posted").is_none());
    assert!(attr(&spans[1].attributes, "posted").is_some());
}

#[test]
fn metrics_statements_and_metric_functions_keep_the_count_right() {
    let mut p = processor(serde_json::json!({
        "metric_statements": [
            {"context": "datapoint", "statements": ["set(metric.name, \"bear\") where attributes[\"http.path\"] == \"/animal\""]},
            {"context": "metric", "statements": ["extract_count_metric(true) where type == METRIC_DATA_TYPE_HISTOGRAM"]},
            {"statements": ["set(datapoint.attributes[\"k\"], \"v\")"]}
        ]
    }));
    let data = vec![ResourceMetrics {
        resource: None,
        scope_metrics: vec![ScopeMetrics {
            scope: None,
            metrics: vec![
                Metric {
                    name: "hist".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: vec![
                            HistogramDataPoint {
                                count: 3,
                                ..Default::default()
                            },
                            HistogramDataPoint {
                                count: 5,
                                ..Default::default()
                            },
                        ],
                        aggregation_temporality: 1,
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "requests".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![kv("http.path", "/animal")],
                            value: Some(number_data_point::Value::AsInt(1)),
                            ..Default::default()
                        }],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }];
    let out = p.process(Batch::from_metrics(data)).unwrap();
    assert_eq!(
        out.items(),
        5,
        "2 histogram points + 1 sum point + 2 extracted count points"
    );
    let Data::Metrics(rm) = out.data() else {
        panic!()
    };
    let metrics = &rm[0].scope_metrics[0].metrics;
    // The datapoint statement renamed the metric (the last point's statement wins).
    assert_eq!(
        metrics.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["hist", "bear", "hist_count"]
    );
    let Some(metric::Data::Sum(count)) = &metrics[2].data else {
        panic!()
    };
    assert_eq!(
        count
            .data_points
            .iter()
            .map(|p| p.value)
            .collect::<Vec<_>>(),
        [
            Some(number_data_point::Value::AsInt(3)),
            Some(number_data_point::Value::AsInt(5))
        ]
    );
    // The flat datapoint statement ran after the extraction, on the new points too.
    assert!(
        count
            .data_points
            .iter()
            .all(|p| attr(&p.attributes, "k") == Some(&s("v")))
    );
}

#[test]
fn log_statements_and_untouched_signals() {
    let mut p = processor(serde_json::json!({
        "log_statements": [{"context": "log", "statements": ["set(body, \"bear\") where attributes[\"http.path\"] == \"/animal\""]}]
    }));
    let logs = vec![ResourceLogs {
        resource: None,
        scope_logs: vec![ScopeLogs {
            scope: None,
            log_records: vec![LogRecord {
                attributes: vec![kv("http.path", "/animal")],
                body: Some(s("x")),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }];
    let out = p.process(Batch::from_logs(logs)).unwrap();
    let Data::Logs(rl) = out.data() else { panic!() };
    assert_eq!(rl[0].scope_logs[0].log_records[0].body, Some(s("bear")));
    // A signal without statements is passed on without being decoded.
    let request = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: spans(),
    };
    let batch = Batch::from_encoded(Signal::Traces, request.encode_to_vec().into()).unwrap();
    let out = p.process(batch).unwrap();
    assert!(matches!(out.data(), Data::Encoded(_)));
}

#[test]
fn error_modes_decide_between_refusing_and_continuing() {
    let statements = serde_json::json!([
        "set(span.name, 1)",
        "set(span.attributes[\"after\"], \"yes\")"
    ]);
    let mut p =
        processor(serde_json::json!({"error_mode": "propagate", "trace_statements": statements}));
    let refusal = p.process(Batch::from_traces(spans())).unwrap_err();
    // Not permanent, as in the Collector (its receivers answer "unavailable").
    assert!(
        matches!(&refusal, Refusal::Unavailable { reason } if reason.contains("transform/test") && reason.contains("set(span.name, 1)")),
        "{refusal:?}"
    );
    // The default error_mode is ignore (the Collector's transform default).
    assert_eq!(Config::default().error_mode, ErrorMode::Ignore);
    let mut p = processor(serde_json::json!({"trace_statements": statements}));
    assert!(p.process(Batch::from_traces(spans())).is_ok());
    for mode in ["ignore", "silent"] {
        let mut p =
            processor(serde_json::json!({"error_mode": mode, "trace_statements": statements}));
        let out = p.process(Batch::from_traces(spans())).unwrap();
        let Data::Traces(rs) = out.data() else {
            panic!()
        };
        assert!(
            rs[0].scope_spans[0]
                .spans
                .iter()
                .all(|sp| attr(&sp.attributes, "after").is_some()),
            "{mode}"
        );
    }
    // A group's error_mode overrides the processor's.
    let mut p = processor(serde_json::json!({
        "error_mode": "propagate",
        "trace_statements": [{"context": "span", "error_mode": "ignore", "statements": ["set(name, 1)"]}]
    }));
    assert!(p.process(Batch::from_traces(spans())).is_ok());
}

#[test]
fn config_problems_name_the_statement_and_position() {
    let c = config(serde_json::json!({
        "trace_statements": [
            {"context": "span", "statements": ["set(name, \"ok\")", "set(attributes[\"x\"], )"]},
            {"context": "metric", "statements": ["set(name, \"x\")"]},
            {"statements": ["set(name, \"no prefix\")"]},
            {"statements": ["set(metric.name, \"wrong signal\")"]},
            {"context": "span", "statements": ["set(name, \"x\")"], "conditions": ["name =="]}
        ],
        "metric_statements": ["set(metric.name, \"x\")", {"context": "metric", "statements": []}],
        "log_statements": ["set(log.body, \"ok\")", "set(log.body, )", "set(body, \"unprefixed is fine here\")"],
        "flatten_data": true
    }));
    let problems = c.compile().unwrap_err();
    let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 8, "{texts:#?}");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("flatten_data is not supported"))
    );
    let p = problems
        .iter()
        .find(|p| p.offset == Some(21))
        .expect("the empty argument");
    assert_eq!(p.path_text(), "trace_statements[0].statements[1]");
    assert_eq!(
        p.to_string(),
        "statement \"set(attributes[\\\"x\\\"], )\": at position 21: expected an argument"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("trace_statements[1].context: unknown context \"metric\"")),
        "{texts:#?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t
                .starts_with("trace_statements[2]: no context given and cannot infer the context")),
        "{texts:#?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("no context of resource, scope, span, spanevent can run")),
        "{texts:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.path_text() == "trace_statements[4].conditions[0]" && p.offset == Some(7))
    );
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("metric_statements: mixes statement strings and groups")),
        "{texts:#?}"
    );
    // A syntax error in a flat statement is placed at that statement.
    assert!(
        problems
            .iter()
            .any(|p| p.path_text() == "log_statements[1]" && p.offset == Some(14)),
        "{texts:#?}"
    );
    assert!(TransformProcessor::new("t", &c).is_err());
    assert!(!c.validate().is_empty());
    assert!(Config::default().validate().is_empty());
}

#[test]
fn flat_statements_form_one_group_with_the_most_specific_context() {
    // The resource statement runs in the span context (inferred from the whole list), so
    // it runs once per span before the span statement of the same item.
    let mut p = processor(serde_json::json!({
        "trace_statements": [
            "set(resource.attributes[\"n\"], Concat([resource.attributes[\"n\"], \"x\"], \"\"))",
            "set(span.attributes[\"n\"], resource.attributes[\"n\"])"
        ]
    }));
    let out = p.process(Batch::from_traces(spans())).unwrap();
    let Data::Traces(rs) = out.data() else {
        panic!()
    };
    let spans = &rs[0].scope_spans[0].spans;
    assert_eq!(attr(&spans[0].attributes, "n"), Some(&s("<nil>x")));
    assert_eq!(attr(&spans[1].attributes, "n"), Some(&s("<nil>xx")));
    assert_eq!(
        attr(&rs[0].resource.as_ref().unwrap().attributes, "n"),
        Some(&s("<nil>xx"))
    );
}

#[test]
fn group_without_context_is_inferred() {
    let mut p = processor(serde_json::json!({
        "trace_statements": [{"statements": ["set(span.name, \"inferred\") where span.name == \"GET /a\""]}]
    }));
    let out = p.process(Batch::from_traces(spans())).unwrap();
    let Data::Traces(rs) = out.data() else {
        panic!()
    };
    assert_eq!(rs[0].scope_spans[0].spans[0].name, "inferred");
}

#[test]
fn unknown_keys_are_rejected() {
    assert!(serde_json::from_value::<Config>(serde_json::json!({"trace_statement": []})).is_err());
    assert!(
        serde_json::from_value::<Config>(
            serde_json::json!({"trace_statements": [{"context": "span", "statement": []}]})
        )
        .is_err()
    );
    assert!(serde_json::from_value::<Config>(serde_json::json!({"error_mode": "loud"})).is_err());
}
