//! Builders of prost trace data for the connectors' unit tests.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use oxcol_core::{Batch, Data};

use crate::helper::attributes;

/// A span of `kind` lasting `duration_ms`, with ids and attributes.
pub fn span(name: &str, kind: span::SpanKind, duration_ms: u64, attributes: Vec<KeyValue>) -> Span {
    let start = 1_700_000_000_000_000_000u64;
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: name.to_string(),
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + duration_ms * 1_000_000,
        attributes,
        ..Default::default()
    }
}

/// Sets the span's ids.
pub fn with_ids(mut span: Span, trace: u8, id: u8, parent: Option<u8>) -> Span {
    span.trace_id = vec![trace; 16];
    span.span_id = vec![id; 8];
    span.parent_span_id = parent.map(|p| vec![p; 8]).unwrap_or_default();
    span
}

pub fn with_error(mut span: Span) -> Span {
    span.status = Some(Status {
        code: status::StatusCode::Error as i32,
        message: String::new(),
    });
    span
}

/// A resource with `service.name` holding `spans`.
pub fn resource_spans(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![attributes::string("service.name", service)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn traces(resources: Vec<ResourceSpans>) -> Batch {
    Batch::from_traces(resources)
}

/// The resource metrics of a metrics batch.
pub fn metrics_of(batch: &Batch) -> Vec<ResourceMetrics> {
    let mut batch = batch.clone();
    batch.decode().expect("test batch decodes");
    match batch.data() {
        Data::Metrics(m) => m.clone(),
        other => panic!("expected metrics, got {other:?}"),
    }
}

/// Every metric named `name` across resources.
pub fn find_metrics<'a>(resources: &'a [ResourceMetrics], name: &str) -> Vec<&'a Metric> {
    resources
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == name)
        .collect()
}

/// The text of attribute `key` of a set of attributes.
pub fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes::find(attributes, key).map(attributes::as_string)
}

/// The int values of a Sum metric's points, with their attributes.
pub fn sum_points(metric: &Metric) -> Vec<(Vec<KeyValue>, i64)> {
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    match &metric.data {
        Some(metric::Data::Sum(s)) => s
            .data_points
            .iter()
            .map(|p| {
                let value = match p.value {
                    Some(Value::AsInt(i)) => i,
                    Some(Value::AsDouble(d)) => d as i64,
                    None => 0,
                };
                (p.attributes.clone(), value)
            })
            .collect(),
        other => panic!("expected a sum, got {other:?}"),
    }
}
