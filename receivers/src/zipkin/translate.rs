//! Zipkin v2 spans (JSON or protobuf) to OTLP traces, with the rules of the Collector's
//! translator (`pkg/translator/zipkin/zipkinv2`, contrib v0.161, default feature gates):
//! one resource per local service name, one scope per `otel.library.name` tag, span kind,
//! status from `otel.status_code`/`error`, endpoints to `network.local.address`,
//! `network.peer.address`, `service.peer.name` and `net.host.port`/`net.peer.port` (v0.161
//! has its `EmitV1NetworkConventions` and `DontEmitV0NetworkConventions` gates on),
//! annotations to events, `otlp.link.N` tags to links.
//!
//! It must never panic on input: every malformed id, number or embedded JSON is an error
//! naming the span, answered 400 by the receiver.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde::Deserialize;

use super::proto;

/// The local service name of spans without one (the Collector's
/// `tracetranslator.ResourceNoServiceName`); such spans get a resource without attributes.
pub const NO_SERVICE_NAME: &str = "OTLPResourceNoServiceName";
/// Tag naming the resource key the service name came from (when not `service.name`).
pub const TAG_SERVICE_NAME_SOURCE: &str = "otlp.service.name.source";
/// Span attribute set when the Zipkin span had no timestamp.
pub const START_TIME_ABSENT: &str = "otel.zipkin.absentField.startTime";
const TAG_LIBRARY_NAME: &str = "otel.library.name";
const TAG_LIBRARY_VERSION: &str = "otel.library.version";
const TAG_SCOPE_NAME: &str = "otel.scope.name";
const TAG_SCOPE_VERSION: &str = "otel.scope.version";
/// The scope tags, which never become resource attributes.
const SCOPE_TAGS: [&str; 4] = [
    TAG_LIBRARY_NAME,
    TAG_LIBRARY_VERSION,
    TAG_SCOPE_NAME,
    TAG_SCOPE_VERSION,
];

/// Tags that never become span attributes: the resource attributes the Collector's
/// translator lists (semantic conventions v1.6.1 and a few later ones), plus scope,
/// OpenCensus and translator keys (its `nonSpanAttributes`).
/// Those present on the first span of a service become resource attributes.
const NON_SPAN_ATTRIBUTES: &[&str] = &[
    "cloud.provider",
    "cloud.account.id",
    "cloud.region",
    "cloud.availability_zone",
    "cloud.platform",
    "aws.ecs.container.arn",
    "aws.ecs.cluster.arn",
    "aws.ecs.launchtype",
    "aws.ecs.task.arn",
    "aws.ecs.task.family",
    "aws.ecs.task.revision",
    "aws.eks.cluster.arn",
    "aws.log.group.names",
    "aws.log.group.arns",
    "aws.log.stream.names",
    "aws.log.stream.arns",
    "container.name",
    "container.id",
    "container.runtime",
    "container.image.name",
    "container.image.tag",
    "deployment.environment",
    "device.id",
    "device.model.identifier",
    "device.model.name",
    "device.manufacturer",
    "cloud.resource_id",
    "faas.name",
    "faas.id",
    "faas.version",
    "faas.instance",
    "faas.max_memory",
    "host.id",
    "host.name",
    "host.type",
    "host.arch",
    "host.image.name",
    "host.image.id",
    "host.image.version",
    "k8s.cluster.name",
    "k8s.node.name",
    "k8s.node.uid",
    "k8s.namespace.name",
    "k8s.pod.uid",
    "k8s.pod.name",
    "k8s.container.name",
    "k8s.container.restart_count",
    "k8s.replicaset.uid",
    "k8s.replicaset.name",
    "k8s.deployment.uid",
    "k8s.deployment.name",
    "k8s.statefulset.uid",
    "k8s.statefulset.name",
    "k8s.daemonset.uid",
    "k8s.daemonset.name",
    "k8s.job.uid",
    "k8s.job.name",
    "k8s.cronjob.uid",
    "k8s.cronjob.name",
    "os.type",
    "os.description",
    "os.name",
    "os.version",
    "process.pid",
    "process.executable.name",
    "process.executable.path",
    "process.command",
    "process.command_line",
    "process.command_args",
    "process.owner",
    "process.runtime.name",
    "process.runtime.version",
    "process.runtime.description",
    "service.name",
    "service.namespace",
    "service.instance.id",
    "service.version",
    "telemetry.sdk.name",
    "telemetry.sdk.language",
    "telemetry.sdk.version",
    "telemetry.auto.version",
    "webengine.name",
    "webengine.version",
    "webengine.description",
    TAG_SERVICE_NAME_SOURCE,
    TAG_LIBRARY_NAME,
    TAG_LIBRARY_VERSION,
    TAG_SCOPE_NAME,
    TAG_SCOPE_VERSION,
    "opencensus.starttime",
    "opencensus.exporterversion",
    "opencensus.resourcetype",
];

fn is_non_span_attribute(key: &str) -> bool {
    NON_SPAN_ATTRIBUTES.contains(&key)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Client,
    Server,
    Producer,
    Consumer,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Endpoint {
    pub service_name: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub port: u16,
}

/// One Zipkin span, from either encoding.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ZipkinSpan {
    pub trace_id_high: u64,
    pub trace_id_low: u64,
    pub id: u64,
    pub parent_id: Option<u64>,
    pub name: String,
    pub kind: Option<Kind>,
    /// Epoch microseconds; 0 when absent.
    pub timestamp: u64,
    /// Microseconds.
    pub duration: u64,
    pub local_endpoint: Option<Endpoint>,
    pub remote_endpoint: Option<Endpoint>,
    /// (epoch microseconds, value).
    pub annotations: Vec<(u64, String)>,
    pub tags: BTreeMap<String, String>,
}

impl ZipkinSpan {
    fn local_service_name(&self) -> &str {
        match &self.local_endpoint {
            Some(endpoint) if !endpoint.service_name.is_empty() => &endpoint.service_name,
            _ => NO_SERVICE_NAME,
        }
    }

    /// `otel.scope.name`, else `otel.library.name`.
    fn library_name(&self) -> &str {
        self.tags
            .get(TAG_SCOPE_NAME)
            .or_else(|| self.tags.get(TAG_LIBRARY_NAME))
            .map(String::as_str)
            .unwrap_or("")
    }
}

// ---------------------------------------------------------------- JSON v2

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan {
    trace_id: Option<String>,
    id: Option<String>,
    parent_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    kind: Option<String>,
    timestamp: Option<u64>,
    duration: Option<u64>,
    local_endpoint: Option<JsonEndpoint>,
    remote_endpoint: Option<JsonEndpoint>,
    #[serde(default)]
    annotations: Option<Vec<JsonAnnotation>>,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonEndpoint {
    service_name: Option<String>,
    ipv4: Option<String>,
    ipv6: Option<String>,
    port: Option<u16>,
}

#[derive(Deserialize)]
struct JsonAnnotation {
    timestamp: Option<u64>,
    value: Option<String>,
}

/// Parses a Zipkin v2 JSON body: an array of spans.
pub fn parse_json_v2(body: &[u8]) -> Result<Vec<ZipkinSpan>, String> {
    let spans: Vec<JsonSpan> = serde_json::from_slice(body).map_err(|e| {
        format!("cannot parse Zipkin v2 JSON: {e} (the body must be a JSON array of spans with string tag values)")
    })?;
    spans
        .into_iter()
        .enumerate()
        .map(|(index, span)| json_span(span).map_err(|e| format!("span {index}: {e}")))
        .collect()
}

fn json_span(span: JsonSpan) -> Result<ZipkinSpan, String> {
    let (trace_id_high, trace_id_low) = match span.trace_id.as_deref() {
        Some(hex) => parse_trace_id_hex(hex)?,
        None => return Err("valid traceId required".to_string()),
    };
    let id = match span.id.as_deref() {
        Some(hex) => parse_span_id_hex(hex, "id")?,
        None => return Err("valid span id required".to_string()),
    };
    let parent_id = match span.parent_id.as_deref() {
        None | Some("") => None,
        Some(hex) => Some(parse_span_id_hex(hex, "parentId")?).filter(|id| *id != 0),
    };
    let kind = match span.kind.as_deref().map(str::to_ascii_uppercase).as_deref() {
        Some("CLIENT") => Some(Kind::Client),
        Some("SERVER") => Some(Kind::Server),
        Some("PRODUCER") => Some(Kind::Producer),
        Some("CONSUMER") => Some(Kind::Consumer),
        _ => None,
    };
    Ok(ZipkinSpan {
        trace_id_high,
        trace_id_low,
        id,
        parent_id,
        name: span.name.unwrap_or_default(),
        kind,
        timestamp: span.timestamp.unwrap_or(0),
        duration: span.duration.unwrap_or(0),
        local_endpoint: span.local_endpoint.map(json_endpoint),
        remote_endpoint: span.remote_endpoint.map(json_endpoint),
        annotations: span
            .annotations
            .unwrap_or_default()
            .into_iter()
            .map(|a| (a.timestamp.unwrap_or(0), a.value.unwrap_or_default()))
            .collect(),
        tags: span.tags.unwrap_or_default(),
    })
}

fn json_endpoint(endpoint: JsonEndpoint) -> Endpoint {
    Endpoint {
        service_name: endpoint.service_name.unwrap_or_default(),
        // An address that does not parse is left out, as Go's net.ParseIP does.
        ipv4: endpoint.ipv4.and_then(|ip| ip.parse().ok()),
        ipv6: endpoint.ipv6.and_then(|ip| ip.parse().ok()),
        port: endpoint.port.unwrap_or(0),
    }
}

/// A trace id of 1 to 32 hex digits: the last 16 are the low half (64-bit ids are padded
/// with a zero high half).
pub fn parse_trace_id_hex(hex: &str) -> Result<(u64, u64), String> {
    if hex.is_empty() || hex.len() > 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("traceId {hex:?} is not 1 to 32 hex digits"));
    }
    let split = hex.len().saturating_sub(16);
    let high = if split == 0 {
        0
    } else {
        u64::from_str_radix(&hex[..split], 16).map_err(|e| format!("traceId {hex:?}: {e}"))?
    };
    let low =
        u64::from_str_radix(&hex[split..], 16).map_err(|e| format!("traceId {hex:?}: {e}"))?;
    if high == 0 && low == 0 {
        return Err("valid traceId required (it is all zeros)".to_string());
    }
    Ok((high, low))
}

fn parse_span_id_hex(hex: &str, field: &str) -> Result<u64, String> {
    if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{field} {hex:?} is not 1 to 16 hex digits"));
    }
    let id = u64::from_str_radix(hex, 16).map_err(|e| format!("{field} {hex:?}: {e}"))?;
    if id == 0 && field == "id" {
        return Err("valid span id required (it is zero)".to_string());
    }
    Ok(id)
}

// ---------------------------------------------------------------- protobuf v2

/// Parses a Zipkin v2 protobuf body (`ListOfSpans`).
pub fn parse_proto_v2(body: &[u8]) -> Result<Vec<ZipkinSpan>, String> {
    let list = proto::ListOfSpans::decode(body)
        .map_err(|e| format!("cannot decode Zipkin v2 protobuf (ListOfSpans): {e}"))?;
    list.spans
        .into_iter()
        .enumerate()
        .map(|(index, span)| proto_span(span).map_err(|e| format!("span {index}: {e}")))
        .collect()
}

fn be_u64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

fn proto_span(span: proto::Span) -> Result<ZipkinSpan, String> {
    let (trace_id_high, trace_id_low) = match span.trace_id.len() {
        8 => (0, be_u64(&span.trace_id)),
        16 => (be_u64(&span.trace_id[..8]), be_u64(&span.trace_id[8..])),
        n => return Err(format!("trace_id has {n} bytes; it must have 8 or 16")),
    };
    if trace_id_high == 0 && trace_id_low == 0 {
        return Err("valid trace_id required (it is all zeros)".to_string());
    }
    if span.id.len() != 8 || be_u64(&span.id) == 0 {
        return Err(format!(
            "id must be 8 bytes and not zero (got {} bytes)",
            span.id.len()
        ));
    }
    let parent_id = match span.parent_id.len() {
        0 => None,
        8 => Some(be_u64(&span.parent_id)).filter(|id| *id != 0),
        n => return Err(format!("parent_id has {n} bytes; it must have 8 or none")),
    };
    let kind = match span.kind {
        1 => Some(Kind::Client),
        2 => Some(Kind::Server),
        3 => Some(Kind::Producer),
        4 => Some(Kind::Consumer),
        _ => None,
    };
    Ok(ZipkinSpan {
        trace_id_high,
        trace_id_low,
        id: be_u64(&span.id),
        parent_id,
        name: span.name,
        kind,
        timestamp: span.timestamp,
        duration: span.duration,
        local_endpoint: span.local_endpoint.map(proto_endpoint),
        remote_endpoint: span.remote_endpoint.map(proto_endpoint),
        annotations: span
            .annotations
            .into_iter()
            .map(|a| (a.timestamp, a.value))
            .collect(),
        tags: span.tags.into_iter().collect(),
    })
}

fn proto_endpoint(endpoint: proto::Endpoint) -> Endpoint {
    Endpoint {
        service_name: endpoint.service_name,
        // 4 bytes, or 16 in the IPv4-mapped form zipkin-go (the Collector's exporter) writes.
        ipv4: <[u8; 4]>::try_from(endpoint.ipv4.as_slice())
            .ok()
            .map(Ipv4Addr::from)
            .or_else(|| {
                <[u8; 16]>::try_from(endpoint.ipv4.as_slice())
                    .ok()
                    .and_then(|bytes| Ipv6Addr::from(bytes).to_ipv4_mapped())
            }),
        ipv6: <[u8; 16]>::try_from(endpoint.ipv6.as_slice())
            .ok()
            .map(Ipv6Addr::from),
        port: u16::try_from(endpoint.port).unwrap_or(0),
    }
}

// ---------------------------------------------------------------- to OTLP

pub(super) fn string_value(value: impl Into<String>) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::StringValue(value.into())),
    })
}

/// Sets `key` (replacing an earlier value), keeping first-insertion order.
pub(super) fn put(attributes: &mut Vec<KeyValue>, key: &str, value: Option<AnyValue>) {
    match attributes.iter_mut().find(|kv| kv.key == key) {
        Some(existing) => existing.value = value,
        None => attributes.push(KeyValue {
            key: key.to_string(),
            value,
            ..Default::default()
        }),
    }
}

/// The typed value of a tag under `parse_string_tags` (the Collector's
/// `DetermineValueType`): integer, float, `true`/`false`, else string.
pub fn typed_tag_value(text: &str) -> Value {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if all_digits(digits) {
        // Out of range saturates, as Go's strconv.ParseInt does.
        let value = text.parse::<i64>().unwrap_or(if text.starts_with('-') {
            i64::MIN
        } else {
            i64::MAX
        });
        return Value::IntValue(value);
    }
    if let Some((whole, fraction)) = digits.split_once('.')
        && all_digits(whole)
        && all_digits(fraction)
        && let Ok(value) = text.parse::<f64>()
    {
        return Value::DoubleValue(value);
    }
    match text {
        "true" => Value::BoolValue(true),
        "false" => Value::BoolValue(false),
        _ => Value::StringValue(text.to_string()),
    }
}

fn trace_id_bytes(high: u64, low: u64) -> Vec<u8> {
    let mut bytes = high.to_be_bytes().to_vec();
    bytes.extend_from_slice(&low.to_be_bytes());
    bytes
}

/// Converts Zipkin spans to OTLP: spans sorted (stably) by local service name and
/// `otel.library.name`, one `ResourceSpans` per run of one service, one `ScopeSpans` per
/// run of one library within it.
pub fn to_otlp(
    mut spans: Vec<ZipkinSpan>,
    parse_string_tags: bool,
) -> Result<Vec<ResourceSpans>, String> {
    spans.sort_by(|a, b| {
        a.local_service_name()
            .cmp(b.local_service_name())
            .then_with(|| a.library_name().cmp(b.library_name()))
    });
    let mut out: Vec<ResourceSpans> = Vec::new();
    let mut previous_service: Option<String> = None;
    let mut previous_library: Option<String> = None;
    for span in spans {
        let mut tags = span.tags.clone();
        let service = span.local_service_name().to_string();
        if previous_service.as_deref() != Some(service.as_str()) {
            out.push(ResourceSpans {
                resource: Some(resource_from(&mut tags, &service)),
                ..Default::default()
            });
            previous_service = Some(service);
            previous_library = None;
        }
        let library = span.library_name().to_string();
        let resource_spans = out.last_mut().expect("a ResourceSpans was pushed above");
        if previous_library.as_deref() != Some(library.as_str()) {
            let mut scope = InstrumentationScope::default();
            if !library.is_empty() {
                // The new names win over the old ones.
                for key in [TAG_LIBRARY_NAME, TAG_SCOPE_NAME] {
                    if let Some(name) = tags.remove(key) {
                        scope.name = name;
                    }
                }
                for key in [TAG_LIBRARY_VERSION, TAG_SCOPE_VERSION] {
                    if let Some(version) = tags.remove(key) {
                        scope.version = version;
                    }
                }
            }
            resource_spans.scope_spans.push(ScopeSpans {
                scope: Some(scope),
                ..Default::default()
            });
            previous_library = Some(library);
        }
        let context = format!("span {:016x}", span.id);
        let converted =
            to_otlp_span(&span, tags, parse_string_tags).map_err(|e| format!("{context}: {e}"))?;
        resource_spans
            .scope_spans
            .last_mut()
            .expect("a ScopeSpans was pushed above")
            .spans
            .push(converted);
    }
    Ok(out)
}

fn resource_from(tags: &mut BTreeMap<String, String>, service: &str) -> Resource {
    let mut resource = Resource::default();
    if service == NO_SERVICE_NAME {
        return resource;
    }
    let key = tags
        .remove(TAG_SERVICE_NAME_SOURCE)
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| "service.name".to_string());
    put(&mut resource.attributes, &key, string_value(service));
    for key in NON_SPAN_ATTRIBUTES
        .iter()
        .filter(|k| !SCOPE_TAGS.contains(k))
    {
        if let Some(value) = tags.remove(*key) {
            put(&mut resource.attributes, key, string_value(value));
        }
    }
    resource
}

fn to_otlp_span(
    span: &ZipkinSpan,
    mut tags: BTreeMap<String, String>,
    parse_string_tags: bool,
) -> Result<Span, String> {
    let mut out = Span {
        trace_id: trace_id_bytes(span.trace_id_high, span.trace_id_low),
        span_id: span.id.to_be_bytes().to_vec(),
        name: span.name.clone(),
        ..Default::default()
    };
    if let Some(state) = tags.remove("w3c.tracestate") {
        out.trace_state = state;
    }
    if let Some(parent) = span.parent_id.filter(|p| *p != span.id) {
        out.parent_span_id = parent.to_be_bytes().to_vec();
    }
    out.kind = match span.kind {
        Some(Kind::Client) => SpanKind::Client,
        Some(Kind::Server) => SpanKind::Server,
        Some(Kind::Producer) => SpanKind::Producer,
        Some(Kind::Consumer) => SpanKind::Consumer,
        None => match tags.remove("span.kind").as_deref() {
            Some("internal") => SpanKind::Internal,
            _ => SpanKind::Unspecified,
        },
    } as i32;
    out.status = status_from(&mut tags);
    out.links = links_from(&mut tags)?;
    for (key, value) in &tags {
        if is_non_span_attribute(key) {
            continue;
        }
        let value = if parse_string_tags {
            typed_tag_value(value)
        } else {
            Value::StringValue(value.clone())
        };
        put(
            &mut out.attributes,
            key,
            Some(AnyValue { value: Some(value) }),
        );
    }
    if let Some(local) = &span.local_endpoint {
        if let Some(ip) = local.ipv4 {
            put(
                &mut out.attributes,
                "network.local.address",
                string_value(ip.to_string()),
            );
        }
        if let Some(ip) = local.ipv6 {
            put(
                &mut out.attributes,
                "network.local.address",
                string_value(ip.to_string()),
            );
        }
        if local.port > 0 {
            put(
                &mut out.attributes,
                "net.host.port",
                Some(AnyValue {
                    value: Some(Value::IntValue(i64::from(local.port))),
                }),
            );
        }
    }
    if let Some(remote) = &span.remote_endpoint {
        if !remote.service_name.is_empty() {
            put(
                &mut out.attributes,
                "service.peer.name",
                string_value(remote.service_name.clone()),
            );
        }
        if let Some(ip) = remote.ipv4 {
            put(
                &mut out.attributes,
                "network.peer.address",
                string_value(ip.to_string()),
            );
        }
        if let Some(ip) = remote.ipv6 {
            put(
                &mut out.attributes,
                "network.peer.address",
                string_value(ip.to_string()),
            );
        }
        if remote.port > 0 {
            put(
                &mut out.attributes,
                "net.peer.port",
                Some(AnyValue {
                    value: Some(Value::IntValue(i64::from(remote.port))),
                }),
            );
        }
    }
    let micros_to_nanos = |us: u64| us.saturating_mul(1000);
    if span.timestamp == 0 {
        out.start_time_unix_nano = 0;
        out.end_time_unix_nano = micros_to_nanos(span.duration);
        put(
            &mut out.attributes,
            START_TIME_ABSENT,
            Some(AnyValue {
                value: Some(Value::BoolValue(true)),
            }),
        );
    } else {
        out.start_time_unix_nano = micros_to_nanos(span.timestamp);
        out.end_time_unix_nano = micros_to_nanos(span.timestamp.saturating_add(span.duration));
    }
    for (timestamp, value) in &span.annotations {
        out.events.push(event_from(*timestamp, value)?);
    }
    Ok(out)
}

fn status_from(tags: &mut BTreeMap<String, String>) -> Option<Status> {
    let mut status = Status::default();
    let mut set = false;
    if let Some(code) = tags.remove("otel.status_code") {
        status.code = match code.as_str() {
            "STATUS_CODE_OK" => StatusCode::Ok,
            "STATUS_CODE_ERROR" => StatusCode::Error,
            _ => StatusCode::Unset,
        } as i32;
        if let Some(message) = tags.remove("otel.status_description") {
            status.message = message;
        }
        set = true;
    }
    // Any `error` tag makes the span failed (Zipkin's rule); only `true` is consumed, any
    // other value (a message) stays an attribute.
    if let Some(value) = tags.get("error") {
        if value == "true" {
            tags.remove("error");
        }
        status.code = StatusCode::Error as i32;
        set = true;
    }
    set.then_some(status)
}

/// `a|b|...|n`: the first part is the name, the last the dropped-attributes count, the
/// middle (rejoined with `|`) a JSON object of attributes. Fewer than `min_parts` parts:
/// only the name (events) or nothing (links).
fn split_encoded(value: &str, min_parts: usize) -> Option<(Vec<&str>, String, u32, bool)> {
    let parts: Vec<&str> = value.split('|').collect();
    if parts.len() < min_parts {
        return None;
    }
    let last = parts[parts.len() - 1];
    let json = parts[min_parts - 2..parts.len() - 1].join("|");
    let head = parts[..min_parts - 2].to_vec();
    let dropped = last.parse::<u32>();
    Some((
        head,
        json,
        dropped.as_ref().copied().unwrap_or(0),
        dropped.is_ok(),
    ))
}

fn json_attributes(json: &str) -> Result<Vec<KeyValue>, String> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)
        .map_err(|e| format!("attributes {json:?} are not a JSON object: {e}"))?;
    let mut out = Vec::new();
    for (key, value) in map {
        let value = match value {
            serde_json::Value::String(s) => Value::StringValue(s),
            serde_json::Value::Bool(b) => Value::BoolValue(b),
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Value::IntValue(f as i64),
                Some(f) => Value::DoubleValue(f),
                None => continue,
            },
            // Arrays, objects and null are dropped, as in the Collector.
            _ => continue,
        };
        out.push(KeyValue {
            key,
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        });
    }
    Ok(out)
}

fn event_from(timestamp: u64, value: &str) -> Result<Event, String> {
    let mut event = Event {
        time_unix_nano: timestamp.saturating_mul(1000),
        ..Default::default()
    };
    match split_encoded(value, 3) {
        None => event.name = value.split('|').next().unwrap_or_default().to_string(),
        Some((head, json, dropped, dropped_ok)) => {
            event.name = head.first().copied().unwrap_or_default().to_string();
            event.attributes =
                json_attributes(&json).map_err(|e| format!("annotation {value:?}: {e}"))?;
            if !dropped_ok {
                return Err(format!(
                    "annotation {value:?}: the dropped-attributes count after the last '|' is not a number"
                ));
            }
            event.dropped_attributes_count = dropped;
        }
    }
    Ok(event)
}

fn hex_id(text: &str, bytes: usize, what: &str) -> Result<Vec<u8>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if text.len() != bytes * 2 {
        return Err(format!(
            "{what} {text:?} must have {} hex digits",
            bytes * 2
        ));
    }
    // Checked first: a non-ASCII character would put a slice below inside it.
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{what} {text:?} is not hex"));
    }
    (0..bytes)
        .map(|i| {
            u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| format!("{what} {text:?} is not hex"))
        })
        .collect()
}

fn links_from(tags: &mut BTreeMap<String, String>) -> Result<Vec<Link>, String> {
    let mut links = Vec::new();
    for index in 0..128 {
        let key = format!("otlp.link.{index}");
        let Some(value) = tags.remove(&key) else {
            break;
        };
        let Some((head, json, dropped, dropped_ok)) = split_encoded(&value, 5) else {
            continue;
        };
        let context = |e: String| format!("tag {key}: {e}");
        let mut link = Link {
            trace_id: hex_id(head[0], 16, "trace id").map_err(context)?,
            span_id: hex_id(head[1], 8, "span id").map_err(context)?,
            trace_state: head[2].to_string(),
            ..Default::default()
        };
        link.attributes = json_attributes(&json).map_err(context)?;
        if !dropped_ok {
            return Err(context(
                "the dropped-attributes count after the last '|' is not a number".to_string(),
            ));
        }
        link.dropped_attributes_count = dropped;
        links.push(link);
    }
    Ok(links)
}
