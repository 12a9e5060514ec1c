//! OTLP traces to Zipkin v2 spans, with the rules of the Collector's translator
//! (`pkg/translator/zipkin/zipkinv2` `FromTranslator`, contrib v0.161, default feature
//! gates), and their two encodings: JSON (as zipkin-go's reporter writes it) and protobuf
//! (`ListOfSpans`).
//!
//! Resource attributes, scope attributes and scope name/version become tags of every span;
//! the service name comes from `service.name` (else `faas.name`, `k8s.deployment.name`,
//! `process.executable.name`, recorded in `otlp.service.name.source`);
//! `network.local.address`/`net.host.port` and `service.peer.name` (or `peer.service`)/
//! `network.peer.address`/`net.peer.port` become the local and remote endpoints; the status becomes
//! `otel.status_code`/`otel.status_description`/`error`; events become annotations and
//! links `otlp.link.N` tags, in the encodings the `zipkin` receiver reads back.
//!
//! It must never panic on data: a span without trace or span id is an error.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;
use serde::Serialize;

use super::proto;

/// Local service name of spans whose resource names none (the Collector's
/// `tracetranslator.ResourceNoServiceName`; the `zipkin` receiver maps it back to an
/// empty resource).
pub const NO_SERVICE_NAME: &str = "OTLPResourceNoServiceName";
const TAG_SERVICE_NAME_SOURCE: &str = "otlp.service.name.source";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Endpoint {
    pub service_name: String,
    pub ip: Option<IpAddr>,
    pub port: u16,
}

impl Endpoint {
    fn is_empty(&self) -> bool {
        self.service_name.is_empty() && self.ip.is_none() && self.port == 0
    }
}

/// One Zipkin span, before encoding.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ZipkinSpan {
    pub trace_id_high: u64,
    pub trace_id_low: u64,
    pub id: u64,
    pub parent_id: Option<u64>,
    pub name: String,
    /// `CLIENT`, `SERVER`, `PRODUCER`, `CONSUMER`, or None.
    pub kind: Option<&'static str>,
    /// Nanoseconds since the epoch; None when the OTLP start is within the epoch's first
    /// second (the receiver's marker for "no timestamp").
    pub start_nanos: Option<u64>,
    pub duration_nanos: u64,
    pub local_endpoint: Option<Endpoint>,
    pub remote_endpoint: Option<Endpoint>,
    /// (nanoseconds since the epoch, value).
    pub annotations: Vec<(u64, String)>,
    pub tags: BTreeMap<String, String>,
}

/// An attribute value as a string (pdata's `Value.AsString`): numbers and booleans as
/// written, bytes as base64, arrays and maps as JSON.
pub fn value_as_string(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        // Shortest form without exponent, as Go's FormatFloat(f, 'f', -1, 64).
        Some(Value::DoubleValue(f)) => f.to_string(),
        Some(other) => match value_as_json(Some(other)) {
            serde_json::Value::String(s) => s,
            json => json.to_string(),
        },
    }
}

fn value_as_json(value: Option<&Value>) -> serde_json::Value {
    match value {
        None => serde_json::Value::Null,
        Some(Value::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Value::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Value::IntValue(i)) => serde_json::Value::from(*i),
        Some(Value::DoubleValue(f)) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or_else(|| serde_json::Value::String(f.to_string())),
        Some(Value::BytesValue(bytes)) => serde_json::Value::String(base64_encode(bytes)),
        Some(Value::ArrayValue(array)) => serde_json::Value::Array(
            array
                .values
                .iter()
                .map(|v| value_as_json(v.value.as_ref()))
                .collect(),
        ),
        Some(Value::KvlistValue(list)) => attributes_as_json(&list.values),
        #[allow(unreachable_patterns)]
        Some(_) => serde_json::Value::Null,
    }
}

/// Attributes as a JSON object with sorted keys (Go's `json.Marshal` of a map).
fn attributes_as_json(attributes: &[KeyValue]) -> serde_json::Value {
    let sorted: BTreeMap<&str, serde_json::Value> = attributes
        .iter()
        .map(|kv| {
            (
                kv.key.as_str(),
                value_as_json(kv.value.as_ref().and_then(|v| v.value.as_ref())),
            )
        })
        .collect();
    serde_json::Value::Object(
        sorted
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// Standard base64 with padding (Go's encoding of `[]byte` in JSON).
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn be_u64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The service name of a resource's tags, removing the key it came from.
fn service_name(tags: &mut BTreeMap<String, String>) -> String {
    if let Some(name) = tags.remove("service.name") {
        return name;
    }
    for key in [
        "faas.name",
        "k8s.deployment.name",
        "process.executable.name",
    ] {
        if let Some(name) = tags.remove(key) {
            tags.insert(TAG_SERVICE_NAME_SOURCE.to_string(), key.to_string());
            return name;
        }
    }
    NO_SERVICE_NAME.to_string()
}

fn endpoint_from_tags(
    tags: &mut BTreeMap<String, String>,
    local_service_name: &str,
    remote: bool,
) -> Option<Endpoint> {
    let mut service_name = local_service_name.to_string();
    if remote {
        // The new name first; only the key used is removed.
        if let Some(peer) = tags
            .remove("service.peer.name")
            .or_else(|| tags.remove("peer.service"))
        {
            service_name = peer;
        }
    }
    // v0.161 reads only the new address keys (its `DontEmitV0NetworkConventions` gate is
    // on): `net.host.ip`/`net.peer.ip` stay tags.
    let (ip_key, port_key) = if remote {
        ("network.peer.address", "net.peer.port")
    } else {
        ("network.local.address", "net.host.port")
    };
    let ip = tags.remove(ip_key).and_then(|ip| ip.parse::<IpAddr>().ok());
    let port = tags
        .remove(port_key)
        .and_then(|port| port.parse::<u16>().ok())
        .unwrap_or(0);
    if service_name.is_empty() && ip.is_none() {
        return None;
    }
    Some(Endpoint {
        service_name,
        ip,
        port,
    })
}

/// Converts OTLP traces to Zipkin spans. A span without a trace or span id is an error.
pub fn from_otlp(resource_spans: &[ResourceSpans]) -> Result<Vec<ZipkinSpan>, String> {
    let mut out = Vec::new();
    for resource_spans in resource_spans {
        let attributes = resource_spans
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        if attributes.is_empty() && resource_spans.scope_spans.is_empty() {
            continue;
        }
        // Shared by the resource's scopes, as in the Collector: a scope without a name
        // keeps the previous scope's tags.
        let mut resource_tags: BTreeMap<String, String> = attributes
            .iter()
            .map(|kv| (kv.key.clone(), value_as_string(kv.value.as_ref())))
            .collect();
        let local_service_name = if attributes.is_empty() {
            NO_SERVICE_NAME.to_string()
        } else {
            service_name(&mut resource_tags)
        };
        for scope_spans in &resource_spans.scope_spans {
            if let Some(scope) = &scope_spans.scope {
                for kv in &scope.attributes {
                    resource_tags.insert(kv.key.clone(), value_as_string(kv.value.as_ref()));
                }
                if !scope.name.is_empty() {
                    resource_tags.insert("otel.library.name".to_string(), scope.name.clone());
                }
                if !scope.version.is_empty() {
                    resource_tags.insert("otel.library.version".to_string(), scope.version.clone());
                }
            }
            for span in &scope_spans.spans {
                out.push(span_from_otlp(span, &local_service_name, &resource_tags)?);
            }
        }
    }
    Ok(out)
}

fn span_from_otlp(
    span: &opentelemetry_proto::tonic::trace::v1::Span,
    local_service_name: &str,
    resource_tags: &BTreeMap<String, String>,
) -> Result<ZipkinSpan, String> {
    let mut tags = resource_tags.clone();
    for kv in &span.attributes {
        tags.insert(kv.key.clone(), value_as_string(kv.value.as_ref()));
    }
    if span.trace_id.len() != 16 || span.trace_id.iter().all(|b| *b == 0) {
        return Err(format!(
            "span {:?}: TraceID is invalid (it must be 16 bytes, not all zero)",
            span.name
        ));
    }
    if span.span_id.len() != 8 || span.span_id.iter().all(|b| *b == 0) {
        return Err(format!(
            "span {:?}: SpanID is invalid (it must be 8 bytes, not all zero)",
            span.name
        ));
    }
    let mut out = ZipkinSpan {
        trace_id_high: be_u64(&span.trace_id[..8]),
        trace_id_low: be_u64(&span.trace_id[8..]),
        id: be_u64(&span.span_id),
        name: span.name.clone(),
        ..Default::default()
    };
    if !span.trace_state.is_empty() {
        tags.insert("w3c.tracestate".to_string(), span.trace_state.clone());
    }
    if span.parent_span_id.len() == 8 && span.parent_span_id.iter().any(|b| *b != 0) {
        out.parent_id = Some(be_u64(&span.parent_span_id));
    }
    // The Collector tests the start's seconds: a start in the epoch's first second is
    // "no timestamp" (what the receiver sets for a Zipkin span without one).
    if span.start_time_unix_nano / 1_000_000_000 != 0 {
        out.start_nanos = Some(span.start_time_unix_nano);
    }
    if span.end_time_unix_nano != 0 {
        // An end before the start would be a negative duration, which zipkin-go refuses
        // for the whole request; oxcol sends the span with duration 0 instead.
        out.duration_nanos = span
            .end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano);
    }
    out.kind = match SpanKind::try_from(span.kind) {
        Ok(SpanKind::Client) => Some("CLIENT"),
        Ok(SpanKind::Server) => Some("SERVER"),
        Ok(SpanKind::Producer) => Some("PRODUCER"),
        Ok(SpanKind::Consumer) => Some("CONSUMER"),
        Ok(SpanKind::Internal) => {
            tags.insert("span.kind".to_string(), "internal".to_string());
            None
        }
        _ => None,
    };
    out.local_endpoint = endpoint_from_tags(&mut tags, local_service_name, false);
    out.remote_endpoint = endpoint_from_tags(&mut tags, "", true);
    let status = span.status.clone().unwrap_or_default();
    let code = StatusCode::try_from(status.code).unwrap_or(StatusCode::Unset);
    if code == StatusCode::Error {
        tags.insert("error".to_string(), "true".to_string());
    } else {
        // Zipkin treats any span with an `error` tag as failed.
        tags.remove("error");
    }
    if code != StatusCode::Unset {
        let name = if code == StatusCode::Ok {
            "STATUS_CODE_OK"
        } else {
            "STATUS_CODE_ERROR"
        };
        tags.insert("otel.status_code".to_string(), name.to_string());
        if !status.message.is_empty() {
            tags.insert(
                "otel.status_description".to_string(),
                status.message.clone(),
            );
        }
    }
    for event in &span.events {
        let value = if event.attributes.is_empty() && event.dropped_attributes_count == 0 {
            event.name.clone()
        } else {
            format!(
                "{}|{}|{}",
                event.name,
                attributes_as_json(&event.attributes),
                event.dropped_attributes_count
            )
        };
        out.annotations.push((event.time_unix_nano, value));
    }
    for (index, link) in span.links.iter().enumerate() {
        let id_or_empty = |id: &[u8]| {
            if id.iter().all(|b| *b == 0) {
                String::new()
            } else {
                hex(id)
            }
        };
        tags.insert(
            format!("otlp.link.{index}"),
            format!(
                "{}|{}|{}|{}|{}",
                id_or_empty(&link.trace_id),
                id_or_empty(&link.span_id),
                link.trace_state,
                attributes_as_json(&link.attributes),
                link.dropped_attributes_count
            ),
        );
    }
    out.tags = tags;
    Ok(out)
}

/// Nanoseconds to microseconds, rounded to the nearest (Go's `Round(time.Microsecond)`).
fn micros(nanos: u64) -> u64 {
    nanos / 1000 + u64::from(nanos % 1000 >= 500)
}

/// A duration in microseconds as zipkin-go writes it: rounded, but at least 1 when not 0.
fn duration_micros(nanos: u64) -> u64 {
    if nanos == 0 { 0 } else { micros(nanos).max(1) }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan<'a> {
    trace_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<String>,
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    local_endpoint: Option<JsonEndpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_endpoint: Option<JsonEndpoint>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    annotations: Vec<JsonAnnotation<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tags: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonEndpoint {
    #[serde(skip_serializing_if = "String::is_empty")]
    service_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipv4: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipv6: Option<Ipv6Addr>,
    #[serde(skip_serializing_if = "is_zero")]
    port: u16,
}

fn is_zero(port: &u16) -> bool {
    *port == 0
}

#[derive(Serialize)]
struct JsonAnnotation<'a> {
    timestamp: u64,
    value: &'a str,
}

fn trace_id_hex(span: &ZipkinSpan) -> String {
    if span.trace_id_high == 0 {
        format!("{:016x}", span.trace_id_low)
    } else {
        format!("{:016x}{:016x}", span.trace_id_high, span.trace_id_low)
    }
}

fn json_endpoint(endpoint: &Option<Endpoint>) -> Option<JsonEndpoint> {
    let endpoint = endpoint.as_ref().filter(|e| !e.is_empty())?;
    Some(JsonEndpoint {
        // zipkin-go lower-cases service names when writing JSON (Zipkin does on ingest).
        service_name: endpoint.service_name.to_lowercase(),
        ipv4: match endpoint.ip {
            Some(IpAddr::V4(ip)) => Some(ip),
            _ => None,
        },
        ipv6: match endpoint.ip {
            Some(IpAddr::V6(ip)) => Some(ip),
            _ => None,
        },
        port: endpoint.port,
    })
}

/// The JSON body of `POST /api/v2/spans`.
pub fn encode_json(spans: &[ZipkinSpan]) -> Result<Vec<u8>, String> {
    let json: Vec<JsonSpan<'_>> = spans
        .iter()
        .map(|span| JsonSpan {
            trace_id: trace_id_hex(span),
            parent_id: span.parent_id.map(|id| format!("{id:016x}")),
            id: format!("{:016x}", span.id),
            kind: span.kind,
            // zipkin-go lower-cases span names when writing JSON, as it does service names.
            name: span.name.to_lowercase(),
            timestamp: span.start_nanos.map(micros),
            duration: Some(duration_micros(span.duration_nanos)).filter(|d| *d != 0),
            local_endpoint: json_endpoint(&span.local_endpoint),
            remote_endpoint: json_endpoint(&span.remote_endpoint),
            annotations: span
                .annotations
                .iter()
                .map(|(nanos, value)| JsonAnnotation {
                    timestamp: micros(*nanos),
                    value,
                })
                .collect(),
            tags: &span.tags,
        })
        .collect();
    serde_json::to_vec(&json).map_err(|e| format!("cannot encode Zipkin JSON: {e}"))
}

fn proto_endpoint(endpoint: &Option<Endpoint>) -> Option<proto::Endpoint> {
    let endpoint = endpoint.as_ref().filter(|e| !e.is_empty())?;
    let mut out = proto::Endpoint {
        service_name: endpoint.service_name.clone(),
        port: i32::from(endpoint.port),
        ..Default::default()
    };
    match endpoint.ip {
        Some(IpAddr::V4(ip)) => out.ipv4 = ip.octets().to_vec(),
        Some(IpAddr::V6(ip)) => out.ipv6 = ip.octets().to_vec(),
        None => {}
    }
    Some(out)
}

/// The protobuf body (`ListOfSpans`) of `POST /api/v2/spans`.
pub fn encode_proto(spans: &[ZipkinSpan]) -> Vec<u8> {
    let list = proto::ListOfSpans {
        spans: spans
            .iter()
            .map(|span| {
                let mut trace_id = span.trace_id_high.to_be_bytes().to_vec();
                trace_id.extend_from_slice(&span.trace_id_low.to_be_bytes());
                proto::Span {
                    trace_id,
                    parent_id: span
                        .parent_id
                        .map(|id| id.to_be_bytes().to_vec())
                        .unwrap_or_default(),
                    id: span.id.to_be_bytes().to_vec(),
                    kind: match span.kind {
                        Some("CLIENT") => 1,
                        Some("SERVER") => 2,
                        Some("PRODUCER") => 3,
                        Some("CONSUMER") => 4,
                        _ => 0,
                    },
                    name: span.name.clone(),
                    timestamp: span.start_nanos.map(micros).unwrap_or(0),
                    // zipkin-go's protobuf encoder truncates durations and annotation
                    // times (its JSON encoder rounds them).
                    duration: span.duration_nanos / 1000,
                    local_endpoint: proto_endpoint(&span.local_endpoint),
                    remote_endpoint: proto_endpoint(&span.remote_endpoint),
                    annotations: span
                        .annotations
                        .iter()
                        .map(|(nanos, value)| proto::Annotation {
                            timestamp: *nanos / 1000,
                            value: value.clone(),
                        })
                        .collect(),
                    tags: span
                        .tags
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    debug: false,
                    shared: false,
                }
            })
            .collect(),
    };
    list.encode_to_vec()
}
