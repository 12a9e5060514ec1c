//! Realistic OTLP requests built in code, for unit tests, benchmarks and the load
//! generator. Deterministic: the same arguments always give the same bytes.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

const BASE_TIME_NANOS: u64 = 1_700_000_000_000_000_000;

/// A deterministic xorshift64 generator (shifts 13, 7, 17) for property tests,
/// benchmarks and fuzz replays: the same seed gives the same sequence everywhere, with no
/// dependency. Not for anything secret. The seed must not be 0.
#[derive(Clone, Debug)]
pub struct XorShift64(pub u64);

impl XorShift64 {
    /// The next state, which is also the number drawn.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

pub fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
    }
}

fn resource(index: usize) -> Resource {
    Resource {
        attributes: vec![
            string_attribute("service.name", &format!("checkout-{index}")),
            string_attribute("service.instance.id", &format!("instance-{index}")),
            string_attribute("host.name", "node-1"),
        ],
        dropped_attributes_count: 0,
        entity_refs: Vec::new(),
    }
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "oxcol.testdata".to_string(),
        version: "1.0.0".to_string(),
        ..Default::default()
    })
}

fn point_attributes(point: usize, count: usize) -> Vec<KeyValue> {
    (0..count)
        .map(|i| string_attribute(&format!("attr.{i}"), &format!("value-{}", (point + i) % 17)))
        .collect()
}

/// `resources` resources x `metrics` metrics x `points` points. Metric `m` has type
/// `m % 4`: gauge, cumulative monotonic sum, explicit-bucket histogram, summary.
pub fn metrics_request(
    resources: usize,
    metrics: usize,
    points: usize,
) -> ExportMetricsServiceRequest {
    metrics_request_with(resources, metrics, points, 3)
}

/// As [`metrics_request`], with `attributes` attributes on every data point.
pub fn metrics_request_with(
    resources: usize,
    metrics: usize,
    points: usize,
    attributes: usize,
) -> ExportMetricsServiceRequest {
    let resource_metrics = (0..resources)
        .map(|r| ResourceMetrics {
            resource: Some(resource(r)),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: (0..metrics)
                    .map(|m| metric(m, points, attributes))
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

fn number_point(p: usize, attributes: usize, value: number_data_point::Value) -> NumberDataPoint {
    NumberDataPoint {
        attributes: point_attributes(p, attributes),
        start_time_unix_nano: BASE_TIME_NANOS,
        time_unix_nano: BASE_TIME_NANOS + 10_000_000_000,
        exemplars: Vec::new(),
        flags: 0,
        value: Some(value),
    }
}

fn metric(m: usize, points: usize, attributes: usize) -> Metric {
    let data = match m % 4 {
        0 => metric::Data::Gauge(Gauge {
            data_points: (0..points)
                .map(|p| {
                    number_point(
                        p,
                        attributes,
                        number_data_point::Value::AsDouble(p as f64 * 1.5),
                    )
                })
                .collect(),
        }),
        1 => metric::Data::Sum(Sum {
            data_points: (0..points)
                .map(|p| {
                    number_point(
                        p,
                        attributes,
                        number_data_point::Value::AsInt(p as i64 * 10),
                    )
                })
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
        2 => metric::Data::Histogram(Histogram {
            data_points: (0..points)
                .map(|p| HistogramDataPoint {
                    attributes: point_attributes(p, attributes),
                    start_time_unix_nano: BASE_TIME_NANOS,
                    time_unix_nano: BASE_TIME_NANOS + 10_000_000_000,
                    count: 10,
                    sum: Some(12.5),
                    bucket_counts: vec![1, 2, 3, 4],
                    explicit_bounds: vec![0.1, 0.5, 1.0],
                    exemplars: Vec::new(),
                    flags: 0,
                    min: Some(0.01),
                    max: Some(2.0),
                })
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
        _ => metric::Data::Summary(Summary {
            data_points: (0..points)
                .map(|p| SummaryDataPoint {
                    attributes: point_attributes(p, attributes),
                    start_time_unix_nano: BASE_TIME_NANOS,
                    time_unix_nano: BASE_TIME_NANOS + 10_000_000_000,
                    count: 4,
                    sum: 8.0,
                    quantile_values: Vec::new(),
                    flags: 0,
                })
                .collect(),
        }),
    };
    Metric {
        name: format!("test.metric.{m}"),
        description: "a metric for tests".to_string(),
        unit: "By".to_string(),
        metadata: Vec::new(),
        data: Some(data),
    }
}

/// `resources` resources x `spans` spans each.
pub fn trace_request(resources: usize, spans: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: (0..resources)
            .map(|r| ResourceSpans {
                resource: Some(resource(r)),
                scope_spans: vec![ScopeSpans {
                    scope: scope(),
                    spans: (0..spans)
                        .map(|s| Span {
                            trace_id: vec![r as u8 + 1; 16],
                            span_id: vec![s as u8 + 1; 8],
                            name: format!("GET /item/{s}"),
                            kind: 2,
                            start_time_unix_nano: BASE_TIME_NANOS,
                            end_time_unix_nano: BASE_TIME_NANOS + 1_000_000,
                            attributes: point_attributes(s, 3),
                            ..Default::default()
                        })
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// `resources` resources x `records` log records each.
pub fn logs_request(resources: usize, records: usize) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: (0..resources)
            .map(|r| ResourceLogs {
                resource: Some(resource(r)),
                scope_logs: vec![ScopeLogs {
                    scope: scope(),
                    log_records: (0..records)
                        .map(|l| LogRecord {
                            time_unix_nano: BASE_TIME_NANOS + l as u64,
                            severity_number: 9,
                            severity_text: "INFO".to_string(),
                            body: Some(AnyValue {
                                value: Some(any_value::Value::StringValue(format!(
                                    "request {l} served"
                                ))),
                            }),
                            attributes: point_attributes(l, 2),
                            ..Default::default()
                        })
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}
