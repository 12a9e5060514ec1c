//! The few OTLP messages the bench tool builds or reads itself: export responses (with
//! partial success), gRPC status code names, and the request pool of the load generator.
//!
//! Requests themselves are never decoded here; only the small response messages are.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use oxcol_core::Signal;
use oxcol_core::testdata;
use prost::Message;

/// The encoded `Export*ServiceResponse` for `signal`. With `rejected == 0` it is the empty
/// (full success) response; otherwise it carries `partial_success`.
pub fn export_response(signal: Signal, rejected: u64, error_message: &str) -> Bytes {
    let rejected_count = rejected as i64;
    let message = error_message.to_string();
    let encoded = match signal {
        Signal::Metrics => ExportMetricsServiceResponse {
            partial_success: (rejected > 0).then_some(ExportMetricsPartialSuccess {
                rejected_data_points: rejected_count,
                error_message: message,
            }),
        }
        .encode_to_vec(),
        Signal::Traces => ExportTraceServiceResponse {
            partial_success: (rejected > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: rejected_count,
                error_message: message,
            }),
        }
        .encode_to_vec(),
        Signal::Logs => ExportLogsServiceResponse {
            partial_success: (rejected > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: rejected_count,
                error_message: message,
            }),
        }
        .encode_to_vec(),
    };
    Bytes::from(encoded)
}

/// What an export response's `partial_success` says: rejected items and the message.
/// An empty body is full success.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartialSuccess {
    pub rejected: u64,
    pub error_message: String,
}

/// Decodes the `partial_success` of an encoded `Export*ServiceResponse`.
pub fn decode_partial_success(
    signal: Signal,
    body: &[u8],
) -> Result<PartialSuccess, prost::DecodeError> {
    let (rejected, error_message) = match signal {
        Signal::Metrics => ExportMetricsServiceResponse::decode(body)?
            .partial_success
            .map(|p| (p.rejected_data_points, p.error_message)),
        Signal::Traces => ExportTraceServiceResponse::decode(body)?
            .partial_success
            .map(|p| (p.rejected_spans, p.error_message)),
        Signal::Logs => ExportLogsServiceResponse::decode(body)?
            .partial_success
            .map(|p| (p.rejected_log_records, p.error_message)),
    }
    .unwrap_or_default();
    Ok(PartialSuccess {
        rejected: rejected.max(0) as u64,
        error_message,
    })
}

/// gRPC code names as written in `/mode` and reported in `status_counts`
/// (`unavailable` in, `UNAVAILABLE` out; both spellings are accepted in).
const GRPC_CODE_NAMES: [(tonic::Code, &str); 17] = [
    (tonic::Code::Ok, "OK"),
    (tonic::Code::Cancelled, "CANCELLED"),
    (tonic::Code::Unknown, "UNKNOWN"),
    (tonic::Code::InvalidArgument, "INVALID_ARGUMENT"),
    (tonic::Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
    (tonic::Code::NotFound, "NOT_FOUND"),
    (tonic::Code::AlreadyExists, "ALREADY_EXISTS"),
    (tonic::Code::PermissionDenied, "PERMISSION_DENIED"),
    (tonic::Code::ResourceExhausted, "RESOURCE_EXHAUSTED"),
    (tonic::Code::FailedPrecondition, "FAILED_PRECONDITION"),
    (tonic::Code::Aborted, "ABORTED"),
    (tonic::Code::OutOfRange, "OUT_OF_RANGE"),
    (tonic::Code::Unimplemented, "UNIMPLEMENTED"),
    (tonic::Code::Internal, "INTERNAL"),
    (tonic::Code::Unavailable, "UNAVAILABLE"),
    (tonic::Code::DataLoss, "DATA_LOSS"),
    (tonic::Code::Unauthenticated, "UNAUTHENTICATED"),
];

/// The canonical upper-case name of a gRPC code (`UNAVAILABLE`).
pub fn grpc_code_name(code: tonic::Code) -> &'static str {
    GRPC_CODE_NAMES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, name)| *name)
        .unwrap_or("UNKNOWN")
}

/// Parses a gRPC code name in either case (`unavailable`, `RESOURCE_EXHAUSTED`) or as its number.
pub fn parse_grpc_code(text: &str) -> Result<tonic::Code, String> {
    if let Ok(number) = text.parse::<i32>() {
        return Ok(tonic::Code::from_i32(number));
    }
    GRPC_CODE_NAMES
        .iter()
        .find(|(_, name)| name.eq_ignore_ascii_case(text))
        .map(|(code, _)| *code)
        .ok_or_else(|| {
            let known: Vec<String> = GRPC_CODE_NAMES
                .iter()
                .map(|(_, n)| n.to_ascii_lowercase())
                .collect();
            format!(
                "unknown gRPC code {text:?}; use one of {}",
                known.join(", ")
            )
        })
}

/// The HTTP status OTLP/HTTP pairs with a gRPC code (the OTLP spec's mapping).
pub fn http_status_for_grpc(code: tonic::Code) -> u16 {
    match code {
        tonic::Code::Ok => 200,
        tonic::Code::Unavailable => 503,
        tonic::Code::ResourceExhausted => 429,
        tonic::Code::InvalidArgument
        | tonic::Code::OutOfRange
        | tonic::Code::FailedPrecondition => 400,
        tonic::Code::Unauthenticated => 401,
        tonic::Code::PermissionDenied => 403,
        tonic::Code::NotFound => 404,
        tonic::Code::DeadlineExceeded => 504,
        tonic::Code::Aborted => 409,
        _ => 500,
    }
}

/// The gRPC code paired with an HTTP status (inverse of [`http_status_for_grpc`]).
pub fn grpc_code_for_http(status: u16) -> tonic::Code {
    match status {
        200..=299 => tonic::Code::Ok,
        503 | 502 => tonic::Code::Unavailable,
        429 => tonic::Code::ResourceExhausted,
        400 => tonic::Code::InvalidArgument,
        401 => tonic::Code::Unauthenticated,
        403 => tonic::Code::PermissionDenied,
        404 => tonic::Code::NotFound,
        504 => tonic::Code::DeadlineExceeded,
        409 => tonic::Code::Aborted,
        _ => tonic::Code::Internal,
    }
}

/// Whether an OTLP client should retry this gRPC answer (the load generator's "refused").
pub fn grpc_code_is_refusal(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable | tonic::Code::ResourceExhausted
    )
}

/// Whether an OTLP client should retry this HTTP answer (the load generator's "refused").
pub fn http_status_is_refusal(status: u16) -> bool {
    matches!(status, 429 | 503)
}

/// Shape of the requests in a load generator's pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestShape {
    pub resources: usize,
    /// Metrics per resource; for traces and logs, `metrics x points` items per resource.
    pub metrics: usize,
    pub points: usize,
    pub attributes: usize,
}

impl RequestShape {
    /// Items (points, spans, log records) in one request of this shape.
    pub fn items_per_request(&self) -> u64 {
        (self.resources * self.metrics * self.points) as u64
    }
}

/// `pool_size` distinct encoded `Export*ServiceRequest`s of the same shape. Request `i`
/// differs from the others in a resource attribute (`bench.pool.index`), its timestamps and
/// its values, so a receiver that deduplicates or a stateful processor sees distinct data.
/// Traces and logs carry `metrics x points` spans/records per resource.
pub fn request_pool(signal: Signal, shape: RequestShape, pool_size: usize) -> Vec<Bytes> {
    (0..pool_size.max(1))
        .map(|index| Bytes::from(pool_request(signal, shape, index)))
        .collect()
}

fn pool_attribute(index: usize) -> KeyValue {
    KeyValue {
        key: "bench.pool.index".to_string(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(index as i64)),
        }),
    }
}

fn pool_request(signal: Signal, shape: RequestShape, index: usize) -> Vec<u8> {
    let shift_nanos = index as u64 * 10_000_000_000;
    let items_per_resource = shape.metrics * shape.points;
    match signal {
        Signal::Metrics => {
            let mut request = testdata::metrics_request_with(
                shape.resources,
                shape.metrics,
                shape.points,
                shape.attributes,
            );
            for resource_metrics in &mut request.resource_metrics {
                if let Some(resource) = resource_metrics.resource.as_mut() {
                    resource.attributes.push(pool_attribute(index));
                }
                for scope in &mut resource_metrics.scope_metrics {
                    for metric in &mut scope.metrics {
                        vary_metric(metric, index, shift_nanos);
                    }
                }
            }
            request.encode_to_vec()
        }
        Signal::Traces => {
            let mut request = testdata::trace_request(shape.resources, items_per_resource);
            for resource_spans in &mut request.resource_spans {
                if let Some(resource) = resource_spans.resource.as_mut() {
                    resource.attributes.push(pool_attribute(index));
                }
                for span in resource_spans
                    .scope_spans
                    .iter_mut()
                    .flat_map(|s| s.spans.iter_mut())
                {
                    span.start_time_unix_nano += shift_nanos;
                    span.end_time_unix_nano += shift_nanos;
                }
            }
            request.encode_to_vec()
        }
        Signal::Logs => {
            let mut request = testdata::logs_request(shape.resources, items_per_resource);
            for resource_logs in &mut request.resource_logs {
                if let Some(resource) = resource_logs.resource.as_mut() {
                    resource.attributes.push(pool_attribute(index));
                }
                for record in resource_logs
                    .scope_logs
                    .iter_mut()
                    .flat_map(|s| s.log_records.iter_mut())
                {
                    record.time_unix_nano += shift_nanos;
                }
            }
            request.encode_to_vec()
        }
    }
}

fn vary_metric(
    metric: &mut opentelemetry_proto::tonic::metrics::v1::Metric,
    index: usize,
    shift_nanos: u64,
) {
    let step = index as f64 + 1.0;
    match metric.data.as_mut() {
        Some(metric::Data::Gauge(gauge)) => {
            for point in &mut gauge.data_points {
                point.time_unix_nano += shift_nanos;
                if let Some(number_data_point::Value::AsDouble(value)) = point.value.as_mut() {
                    *value += step;
                }
            }
        }
        Some(metric::Data::Sum(sum)) => {
            for point in &mut sum.data_points {
                point.time_unix_nano += shift_nanos;
                if let Some(number_data_point::Value::AsInt(value)) = point.value.as_mut() {
                    *value += index as i64 * 100;
                }
            }
        }
        Some(metric::Data::Histogram(histogram)) => {
            for point in &mut histogram.data_points {
                point.time_unix_nano += shift_nanos;
                point.count += index as u64 * 10;
                if let Some(last) = point.bucket_counts.last_mut() {
                    *last += index as u64 * 10;
                }
                point.sum = point.sum.map(|sum| sum + step);
            }
        }
        Some(metric::Data::Summary(summary)) => {
            for point in &mut summary.data_points {
                point.time_unix_nano += shift_nanos;
                point.count += index as u64;
                point.sum += step;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcol_core::skeleton::count_items;

    #[test]
    fn pool_requests_are_distinct_and_hold_the_shape_item_count() {
        let shape = RequestShape {
            resources: 2,
            metrics: 5,
            points: 3,
            attributes: 2,
        };
        for signal in Signal::ALL {
            let pool = request_pool(signal, shape, 4);
            assert_eq!(pool.len(), 4);
            for body in &pool {
                assert_eq!(
                    count_items(signal, body).unwrap(),
                    shape.items_per_request(),
                    "{signal}"
                );
            }
            assert_ne!(pool[0], pool[1], "{signal}");
        }
    }

    #[test]
    fn partial_success_round_trips_for_every_signal() {
        for signal in Signal::ALL {
            let body = export_response(signal, 7, "too old");
            let partial = decode_partial_success(signal, &body).unwrap();
            assert_eq!(
                partial,
                PartialSuccess {
                    rejected: 7,
                    error_message: "too old".to_string()
                }
            );
            assert!(export_response(signal, 0, "").is_empty());
            assert_eq!(
                decode_partial_success(signal, &[]).unwrap(),
                PartialSuccess::default()
            );
        }
    }

    #[test]
    fn grpc_code_names_parse_in_both_cases() {
        assert_eq!(
            parse_grpc_code("unavailable").unwrap(),
            tonic::Code::Unavailable
        );
        assert_eq!(
            parse_grpc_code("RESOURCE_EXHAUSTED").unwrap(),
            tonic::Code::ResourceExhausted
        );
        assert_eq!(parse_grpc_code("3").unwrap(), tonic::Code::InvalidArgument);
        assert!(parse_grpc_code("busy").unwrap_err().contains("unavailable"));
        assert_eq!(
            grpc_code_name(tonic::Code::ResourceExhausted),
            "RESOURCE_EXHAUSTED"
        );
    }
}
