use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::ScopeLogs;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, NumberDataPoint, ScopeMetrics, Sum, number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, span};
use oxcol_core::batch::Data;

use super::*;

fn config(json: serde_json::Value) -> Config {
    serde_json::from_value(json).unwrap()
}

fn processor(json: serde_json::Value) -> FilterProcessor {
    FilterProcessor::new("filter/test", &config(json)).unwrap_or_else(|e| panic!("{e}"))
}

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.to_string())),
    }
}

fn kv(k: &str, v: AnyValue) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(v),
        ..Default::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", s(service))],
        ..Default::default()
    })
}

fn traces() -> Vec<ResourceSpans> {
    let span = |name: &str, kind: i32| Span {
        name: name.into(),
        kind,
        attributes: vec![kv("http.route", s(&format!("/{name}")))],
        events: vec![
            span::Event {
                name: "keep".into(),
                ..Default::default()
            },
            span::Event {
                name: "drop".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    vec![
        ResourceSpans {
            resource: resource("api"),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "lib".into(),
                    ..Default::default()
                }),
                spans: vec![span("health", 2), span("users", 2), span("db", 3)],
                ..Default::default()
            }],
            ..Default::default()
        },
        ResourceSpans {
            resource: resource("worker"),
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans: vec![span("health", 1)],
                ..Default::default()
            }],
            ..Default::default()
        },
    ]
}

fn span_names(batch: &Batch) -> Vec<String> {
    let Data::Traces(rs) = batch.data() else {
        panic!("decoded traces expected")
    };
    rs.iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect()
}

fn number(v: i64, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        value: Some(number_data_point::Value::AsInt(v)),
        ..Default::default()
    }
}

fn metrics() -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        resource: resource("api"),
        scope_metrics: vec![ScopeMetrics {
            scope: None,
            metrics: vec![
                Metric {
                    name: "http.requests".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![
                            number(1, vec![kv("code", s("200"))]),
                            number(5, vec![kv("code", s("500"))]),
                        ],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "go.goroutines".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![number(10, vec![])],
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "jvm.heap".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![number(3, vec![kv("code", s("500"))])],
                    })),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn metric_names(batch: &Batch) -> Vec<String> {
    let Data::Metrics(rm) = batch.data() else {
        panic!()
    };
    rm.iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| m.name.clone())
        .collect()
}

fn logs() -> Vec<ResourceLogs> {
    let log = |body: &str, sev: i32, text: &str| LogRecord {
        body: Some(s(body)),
        severity_number: sev,
        severity_text: text.into(),
        attributes: vec![kv("env", s("prod"))],
        ..Default::default()
    };
    vec![ResourceLogs {
        resource: resource("api"),
        scope_logs: vec![ScopeLogs {
            scope: None,
            log_records: vec![
                log("GET /health ok", 9, "INFO"),
                log("db down", 17, "ERROR"),
                log("debugging", 5, "DEBUG"),
                log("no severity", 0, ""),
            ],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn log_bodies(batch: &Batch) -> Vec<String> {
    let Data::Logs(rl) = batch.data() else {
        panic!()
    };
    rl.iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .map(|l| {
            oxcol_ottl::Value::from_any_opt(l.body.as_ref())
                .to_string_like()
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn span_conditions_drop_matching_spans_and_empty_resources() {
    let mut p = processor(serde_json::json!({
        "traces": {"span": ["attributes[\"http.route\"] == \"/health\"", "kind == SPAN_KIND_CLIENT"]}
    }));
    let out = p.process(Batch::from_traces(traces())).unwrap();
    assert_eq!(span_names(&out), ["users"]);
    assert_eq!(out.items(), 1);
    let Data::Traces(rs) = out.data() else {
        panic!()
    };
    assert_eq!(
        rs.len(),
        1,
        "the worker resource lost its only span and is removed"
    );
}

#[test]
fn spanevent_and_resource_conditions() {
    let mut p = processor(serde_json::json!({
        "traces": {"resource": ["attributes[\"service.name\"] == \"worker\""], "spanevent": ["name == \"drop\" and span.name != \"db\""]}
    }));
    let out = p.process(Batch::from_traces(traces())).unwrap();
    assert_eq!(out.items(), 3);
    let Data::Traces(rs) = out.data() else {
        panic!()
    };
    assert_eq!(rs.len(), 1);
    let events: Vec<usize> = rs[0].scope_spans[0]
        .spans
        .iter()
        .map(|s| s.events.len())
        .collect();
    assert_eq!(events, [1, 1, 2]);
}

#[test]
fn metric_and_datapoint_conditions() {
    let mut p = processor(serde_json::json!({
        "metrics": {"metric": ["name == \"go.goroutines\""], "datapoint": ["attributes[\"code\"] == \"500\""]}
    }));
    let out = p.process(Batch::from_metrics(metrics())).unwrap();
    // jvm.heap lost its only point and is removed; http.requests keeps one point.
    assert_eq!(metric_names(&out), ["http.requests"]);
    assert_eq!(out.items(), 1);
}

#[test]
fn flat_and_grouped_condition_lists() {
    let mut p = processor(serde_json::json!({
        "metric_conditions": ["metric.name == \"jvm.heap\"", "metric.name == \"go.goroutines\""]
    }));
    let out = p.process(Batch::from_metrics(metrics())).unwrap();
    assert_eq!(metric_names(&out), ["http.requests"]);
    let mut p = processor(serde_json::json!({
        "log_conditions": [{"context": "log", "conditions": ["severity_number < SEVERITY_NUMBER_INFO"]}],
        "trace_conditions": ["span.name == \"db\""]
    }));
    let out = p.process(Batch::from_logs(logs())).unwrap();
    assert_eq!(log_bodies(&out), ["GET /health ok", "db down"]);
    let out = p.process(Batch::from_traces(traces())).unwrap();
    assert_eq!(span_names(&out), ["health", "users", "health"]);
}

#[test]
fn dropping_everything_leaves_an_empty_batch() {
    let mut p = processor(serde_json::json!({"logs": {"log_record": ["true"]}}));
    let out = p.process(Batch::from_logs(logs())).unwrap();
    assert!(out.is_empty());
    assert_eq!(out.items(), 0);
}

#[test]
fn error_modes() {
    // Int() of a map is an evaluation error.
    let conds = serde_json::json!({"span": ["Int(attributes) == 1", "name == \"db\""]});
    let mut p = processor(serde_json::json!({"traces": conds}));
    let refusal = p.process(Batch::from_traces(traces())).unwrap_err();
    assert!(
        matches!(&refusal, Refusal::Unavailable { reason } if reason.contains("filter/test")),
        "{refusal:?}"
    );
    let mut p = processor(serde_json::json!({"error_mode": "ignore", "traces": conds}));
    let out = p.process(Batch::from_traces(traces())).unwrap();
    assert_eq!(
        span_names(&out),
        ["health", "users", "health"],
        "the failing condition counts as false"
    );
}

#[test]
fn legacy_metric_include_exclude() {
    let mut p = processor(serde_json::json!({
        "metrics": {"include": {"match_type": "regexp", "metric_names": ["^http\\.", "jvm"]}}
    }));
    assert_eq!(
        metric_names(&p.process(Batch::from_metrics(metrics())).unwrap()),
        ["http.requests", "jvm.heap"]
    );
    let mut p = processor(serde_json::json!({
        "metrics": {
            "include": {"match_type": "strict", "metric_names": ["http.requests", "jvm.heap"], "resource_attributes": [{"key": "service.name", "value": "api"}]},
            "exclude": {"match_type": "strict", "metric_names": ["jvm.heap"]}
        }
    }));
    let out = p.process(Batch::from_metrics(metrics())).unwrap();
    assert_eq!(metric_names(&out), ["http.requests"]);
    assert_eq!(out.items(), 2);
    let mut p = processor(serde_json::json!({
        "metrics": {"include": {"match_type": "strict", "metric_names": ["http.requests"], "resource_attributes": [{"key": "service.name", "value": "other"}]}}
    }));
    assert!(
        p.process(Batch::from_metrics(metrics()))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn legacy_log_matching() {
    let mut p = processor(serde_json::json!({
        "logs": {"exclude": {"match_type": "regexp", "bodies": ["health"]}}
    }));
    assert_eq!(
        log_bodies(&p.process(Batch::from_logs(logs())).unwrap()),
        ["db down", "debugging", "no severity"]
    );
    let mut p = processor(serde_json::json!({
        "logs": {"include": {"match_type": "strict", "severity_number": {"min": "info", "match_undefined": true}, "record_attributes": [{"key": "env", "value": "prod"}]}}
    }));
    assert_eq!(
        log_bodies(&p.process(Batch::from_logs(logs())).unwrap()),
        ["GET /health ok", "db down", "no severity"]
    );
    let mut p = processor(serde_json::json!({
        "logs": {"include": {"match_type": "strict", "severity_texts": ["ERROR"]}}
    }));
    assert_eq!(
        log_bodies(&p.process(Batch::from_logs(logs())).unwrap()),
        ["db down"]
    );
}

#[test]
fn legacy_span_matching() {
    let mut p = processor(serde_json::json!({
        "spans": {"exclude": {"match_type": "strict", "services": ["api"], "span_names": ["health", "db"]}}
    }));
    assert_eq!(
        span_names(&p.process(Batch::from_traces(traces())).unwrap()),
        ["users", "health"]
    );
    let mut p = processor(serde_json::json!({
        "spans": {"include": {"match_type": "regexp", "attributes": [{"key": "http.route", "value": "^/(users|db)$"}], "span_kinds": ["SPAN_KIND_SERVER"]}}
    }));
    assert_eq!(
        span_names(&p.process(Batch::from_traces(traces())).unwrap()),
        ["users"]
    );
}

#[test]
fn config_problems() {
    let c = config(serde_json::json!({
        "traces": {"span": ["name == ", "name == \"ok\""]},
        "metrics": {"metric": ["name == \"x\""], "include": {"match_type": "expr", "metric_names": ["x"]}},
        "logs": {"include": {"match_type": "regexp", "bodies": ["("], "severity_number": {"min": "LOUD"}}},
        "log_conditions": ["log.body == \"x\"", {"context": "log", "conditions": []}],
        "trace_conditions": ["span.name == \"x\""]
    }));
    let problems = c.problems();
    let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let p = problems.iter().find(|p| p.offset.is_some()).unwrap();
    assert_eq!(
        (p.path_text().as_str(), p.offset),
        ("traces.span[0]", Some(8))
    );
    for needle in [
        "match_type \"expr\" is not supported",
        "invalid regexp \"(\"",
        "\"LOUD\" is not a valid severity",
        "mixes condition strings and groups",
        "cannot be used together with the traces conditions",
    ] {
        assert!(
            texts.iter().any(|t| t.contains(needle)),
            "{needle}: {texts:#?}"
        );
    }
    let c = config(
        serde_json::json!({"metrics": {"metric": ["name == \"x\""], "exclude": {"match_type": "strict", "metric_names": ["x"]}}}),
    );
    assert!(c.validate().iter().any(|t| t.contains("at the same time")));
    assert!(Config::default().validate().is_empty());
    assert!(
        serde_json::from_value::<Config>(serde_json::json!({"traces": {"spans": []}})).is_err()
    );
}

#[test]
fn untouched_signals_stay_encoded() {
    use prost::Message;
    let mut p = processor(serde_json::json!({"logs": {"log_record": ["true"]}}));
    let request = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: traces(),
    };
    let batch = Batch::from_encoded(Signal::Traces, request.encode_to_vec().into()).unwrap();
    let out = p.process(batch).unwrap();
    assert!(matches!(out.data(), Data::Encoded(_)));
    assert_eq!(out.items(), 4);
}
