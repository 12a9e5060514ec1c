use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    metric,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use oxcol_core::{Batch, Data, Processor, Signal};

use super::*;
use crate::helper::pvalue::ConfigValue;

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(v.into())),
    }
}
fn kv(k: &str, v: AnyValue) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(v),
        ..Default::default()
    }
}
fn upsert(key: &str, value: &str) -> ActionConfig {
    ActionConfig {
        key: key.into(),
        value: Some(ConfigValue(s(value))),
        action: "upsert".into(),
        ..Default::default()
    }
}

fn traces(service: &str, spans: Vec<Span>) -> Batch {
    Batch::from_traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", s(service))],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "lib".into(),
                ..Default::default()
            }),
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn span_attrs(batch: &Batch) -> Vec<Vec<KeyValue>> {
    let Data::Traces(r) = batch.data() else {
        panic!("traces expected")
    };
    r.iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.attributes.clone())
        .collect()
}

#[test]
fn spans_are_processed_unless_skipped() {
    let config = Config {
        actions: vec![upsert("env", "prod")],
        exclude: Some(MatchProperties {
            match_type: "strict".into(),
            span_names: vec!["health".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut processor =
        AttributesProcessor::new("attributes/x", &config, Signal::Traces).expect("valid config");
    let out = processor
        .process(traces(
            "svc",
            vec![
                Span {
                    name: "work".into(),
                    ..Default::default()
                },
                Span {
                    name: "health".into(),
                    ..Default::default()
                },
            ],
        ))
        .expect("processed");
    assert_eq!(span_attrs(&out), vec![vec![kv("env", s("prod"))], vec![]]);
    assert_eq!(out.items(), 2);
}

#[test]
fn encoded_batches_are_decoded_and_processed() {
    use prost::Message;
    let request = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span::default()],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let batch =
        Batch::from_encoded(Signal::Traces, request.encode_to_vec().into()).expect("valid request");
    let config = Config {
        actions: vec![upsert("a", "1")],
        ..Default::default()
    };
    let out = AttributesProcessor::new("attributes", &config, Signal::Traces)
        .expect("valid")
        .process(batch)
        .expect("processed");
    assert_eq!(span_attrs(&out), vec![vec![kv("a", s("1"))]]);
}

#[test]
fn log_records_with_severity_filter() {
    let config = Config {
        actions: vec![upsert("alert", "yes")],
        include: Some(MatchProperties {
            match_type: "strict".into(),
            log_severity_number: Some(crate::helper::filter::SeverityNumberProperties {
                min: crate::helper::filter::SeverityNumber(17),
                match_undefined: false,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut processor =
        AttributesProcessor::new("attributes", &config, Signal::Logs).expect("valid config");
    let batch = Batch::from_logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: vec![
                LogRecord {
                    severity_number: 17,
                    ..Default::default()
                },
                LogRecord {
                    severity_number: 9,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let out = processor.process(batch).expect("processed");
    let Data::Logs(r) = out.data() else {
        panic!("logs expected")
    };
    let attrs: Vec<_> = r[0].scope_logs[0]
        .log_records
        .iter()
        .map(|l| l.attributes.clone())
        .collect();
    assert_eq!(attrs, vec![vec![kv("alert", s("yes"))], vec![]]);
}

#[test]
fn metric_data_points_of_matching_metrics() {
    let config = Config {
        actions: vec![ActionConfig {
            key: "secret".into(),
            action: "delete".into(),
            ..Default::default()
        }],
        include: Some(MatchProperties {
            match_type: "regexp".into(),
            metric_names: vec!["^http".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut processor =
        AttributesProcessor::new("attributes", &config, Signal::Metrics).expect("valid config");
    let point = NumberDataPoint {
        attributes: vec![kv("secret", s("x")), kv("keep", s("y"))],
        ..Default::default()
    };
    let hist = HistogramDataPoint {
        attributes: vec![kv("secret", s("x"))],
        ..Default::default()
    };
    let batch = Batch::from_metrics(vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![
                Metric {
                    name: "http.requests".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![point.clone()],
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "http.latency".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: vec![hist],
                        ..Default::default()
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "rpc.requests".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![point],
                    })),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let out = processor.process(batch).expect("processed");
    let Data::Metrics(r) = out.data() else {
        panic!("metrics expected")
    };
    let metrics = &r[0].scope_metrics[0].metrics;
    let Some(metric::Data::Gauge(g)) = &metrics[0].data else {
        panic!("gauge")
    };
    assert_eq!(g.data_points[0].attributes, vec![kv("keep", s("y"))]);
    let Some(metric::Data::Histogram(h)) = &metrics[1].data else {
        panic!("histogram")
    };
    assert!(h.data_points[0].attributes.is_empty());
    let Some(metric::Data::Gauge(g)) = &metrics[2].data else {
        panic!("gauge")
    };
    assert_eq!(
        g.data_points[0].attributes.len(),
        2,
        "rpc.requests is not included"
    );
}

#[test]
fn config_errors_name_the_problem() {
    assert!(Config::default().validate()[0].contains("actions"));
    let config = Config {
        actions: vec![upsert("a", "b")],
        include: Some(MatchProperties {
            match_type: "strict".into(),
            span_names: vec!["x".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(config.validate().is_empty());
    assert!(config.validate_for(Signal::Traces).is_empty());
    assert_eq!(config.validate_for(Signal::Metrics).len(), 1);
    assert!(AttributesProcessor::new("attributes/m", &config, Signal::Metrics).is_err());
}
