//! OTLP/JSON encoding of a batch (the opentelemetry-proto serde mapping), shared by the
//! exporters that write it: `otlphttp` (`encoding: json`), `kafka` (`otlp_json`) and `file`.

use bytes::Bytes;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use oxcol_core::Batch;
use oxcol_core::batch::Data;

/// The batch as an OTLP/JSON `Export*ServiceRequest`, decoding it first if needed.
pub fn encode(batch: &mut Batch) -> Result<Bytes, String> {
    batch
        .decode()
        .map_err(|e| format!("the batch could not be decoded: {e}"))?;
    let json = match batch.data() {
        Data::Metrics(resource_metrics) => serde_json::to_vec(&JsonRequest {
            resource_metrics: Some(resource_metrics),
            resource_spans: None,
            resource_logs: None,
        }),
        Data::Traces(resource_spans) => serde_json::to_vec(&JsonRequest {
            resource_metrics: None,
            resource_spans: Some(resource_spans),
            resource_logs: None,
        }),
        Data::Logs(resource_logs) => serde_json::to_vec(&JsonRequest {
            resource_metrics: None,
            resource_spans: None,
            resource_logs: Some(resource_logs),
        }),
        Data::Encoded(_) => return Err("the batch could not be decoded".to_string()),
    };
    json.map(Bytes::from)
        .map_err(|e| format!("cannot encode OTLP/JSON: {e}"))
}

/// An `Export*ServiceRequest` in OTLP/JSON, borrowing the batch's resources (no copy).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_metrics: Option<&'a [ResourceMetrics]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_spans: Option<&'a [ResourceSpans]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_logs: Option<&'a [ResourceLogs]>,
}
