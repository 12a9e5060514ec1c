//! Zipkin v1 JSON (`POST /api/v1/spans`) to OTLP traces, with the rules of the Collector's
//! `pkg/translator/zipkin/zipkinv1` (contrib v0.161): the span kind and the resource come
//! from the first `cs`/`cr`/`sr`/`ss`/`ms`/`mr` annotation with a service name, the other
//! annotations become events, binary annotations become attributes (`lc` is renamed
//! `component`), and the status is taken from `census.status_code`, `otel.status_code`
//! (as a number), `error` or `http.status_code`, in that order. One resource per endpoint
//! (`service.name`, and `ipv4`/`ipv6`/`port` when set). Thrift v1 is not read.
//!
//! It must never panic on input: malformed JSON and bad ids are errors.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde::Deserialize;

use super::translate::{START_TIME_ABSENT, put, string_value, typed_tag_value};

/// The service name of spans without an endpoint (also the "none found" marker).
const UNKNOWN_SERVICE_NAME: &str = "unknown-service";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan {
    #[serde(default)]
    trace_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    parent_id: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    timestamp: i64,
    #[serde(default)]
    duration: i64,
    #[serde(default)]
    annotations: Vec<Option<JsonAnnotation>>,
    #[serde(default)]
    binary_annotations: Vec<Option<JsonBinaryAnnotation>>,
}

#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct JsonEndpoint {
    #[serde(default)]
    service_name: String,
    #[serde(default)]
    ipv4: String,
    #[serde(default)]
    ipv6: String,
    #[serde(default)]
    port: i32,
}

#[derive(Deserialize)]
struct JsonAnnotation {
    #[serde(default)]
    timestamp: i64,
    #[serde(default)]
    value: String,
    endpoint: Option<JsonEndpoint>,
}

#[derive(Deserialize)]
struct JsonBinaryAnnotation {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    endpoint: Option<JsonEndpoint>,
}

fn hex_bytes(hex: &str, what: &str) -> Result<Vec<u8>, String> {
    (0..hex.len() / 2)
        .map(|i| {
            hex.get(2 * i..2 * i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("zipkinV1 span {what}: {hex:?} is not hex"))
        })
        .collect()
}

fn trace_id(hex: &str) -> Result<Vec<u8>, String> {
    let mut id = match hex.len() {
        16 => vec![0; 8],
        32 => Vec::new(),
        _ => {
            return Err(format!(
                "zipkinV1 span traceId: {hex:?} has the wrong length (expected 16 or 32 hex digits)"
            ));
        }
    };
    id.extend(hex_bytes(hex, "traceId")?);
    if id.iter().all(|b| *b == 0) {
        return Err("zipkinV1 span traceId: traceId is zero".to_string());
    }
    Ok(id)
}

fn span_id(hex: &str, what: &str) -> Result<Vec<u8>, String> {
    if hex.len() != 16 {
        return Err(format!(
            "zipkinV1 span {what}: {hex:?} has the wrong length (expected 16 hex digits)"
        ));
    }
    let id = hex_bytes(hex, what)?;
    if id.iter().all(|b| *b == 0) {
        return Err(format!("zipkinV1 span {what}: ID is zero"));
    }
    Ok(id)
}

fn micros_to_nanos(micros: i64) -> u64 {
    if micros <= 0 {
        0
    } else {
        (micros as u64).saturating_mul(1000)
    }
}

/// Status candidates, picked in the Collector's order once every tag is read.
#[derive(Default)]
struct StatusMapper {
    census: (Option<StatusCode>, String),
    otel: (Option<i32>, String),
    error_tag: Option<StatusCode>,
    http: (Option<StatusCode>, String),
}

/// An integer status from a tag value (the Collector's `attribToStatusCode`).
fn status_number(value: &Value) -> Option<i32> {
    match value {
        Value::IntValue(i) => i32::try_from(*i).ok(),
        Value::StringValue(s) => s.parse::<i64>().ok().and_then(|i| i32::try_from(i).ok()),
        _ => None,
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::StringValue(s) => s.clone(),
        _ => String::new(),
    }
}

impl StatusMapper {
    /// Reads a tag; true when it is consumed (not a span attribute).
    fn read(&mut self, key: &str, value: &Value) -> bool {
        match key {
            "census.status_code" => {
                if let Some(code) = status_number(value) {
                    self.census.0 = Some(if code == 0 {
                        StatusCode::Ok
                    } else {
                        StatusCode::Error
                    });
                }
                true
            }
            "census.status_description" | "opencensus.status_description" => {
                self.census.1 = value_text(value);
                true
            }
            "otel.status_code" => {
                self.otel.0 = status_number(value);
                true
            }
            "otel.status_description" => {
                self.otel.1 = value_text(value);
                true
            }
            "http.status_code" => {
                if let Some(code) = status_number(value) {
                    self.http.0 = Some(if (100..400).contains(&code) {
                        StatusCode::Unset
                    } else {
                        StatusCode::Error
                    });
                }
                false
            }
            "http.status_message" => {
                self.http.1 = value_text(value);
                false
            }
            "error" => {
                self.error_tag = Some(StatusCode::Error);
                true
            }
            _ => false,
        }
    }

    fn status(self) -> Option<Status> {
        let (code, message) = if let Some(code) = self.census.0 {
            (code as i32, self.census.1)
        } else if let Some(code) = self.otel.0 {
            (code, self.otel.1)
        } else if let Some(code) = self.error_tag {
            let message = if !self.census.1.is_empty() {
                self.census.1
            } else {
                self.otel.1
            };
            (code as i32, message)
        } else if let Some(code) = self.http.0 {
            (code as i32, self.http.1)
        } else {
            return None;
        };
        Some(Status { code, message })
    }
}

/// Parses a Zipkin v1 JSON body and converts it to OTLP.
pub fn parse_json_v1(
    body: &[u8],
    parse_string_tags: bool,
    now_nanos: u64,
) -> Result<Vec<ResourceSpans>, String> {
    let spans: Vec<Option<JsonSpan>> = serde_json::from_slice(body).map_err(|e| format!("cannot parse Zipkin v1 JSON: {e} (the body must be a JSON array of spans with string binary annotation values)"))?;
    let mut out: Vec<ResourceSpans> = Vec::new();
    let mut by_endpoint: HashMap<String, usize> = HashMap::new();
    for span in spans.into_iter().flatten() {
        let (converted, endpoint) = convert(span, parse_string_tags, now_nanos)?;
        let key = format!(
            "{}-{}-{}-{}",
            endpoint.service_name, endpoint.ipv4, endpoint.ipv6, endpoint.port
        );
        let index = *by_endpoint.entry(key).or_insert_with(|| {
            let mut resource = Resource::default();
            put(
                &mut resource.attributes,
                "service.name",
                string_value(endpoint.service_name.clone()),
            );
            if !endpoint.ipv4.is_empty() {
                put(
                    &mut resource.attributes,
                    "ipv4",
                    string_value(endpoint.ipv4.clone()),
                );
            }
            if !endpoint.ipv6.is_empty() {
                put(
                    &mut resource.attributes,
                    "ipv6",
                    string_value(endpoint.ipv6.clone()),
                );
            }
            if endpoint.port != 0 {
                put(
                    &mut resource.attributes,
                    "port",
                    string_value(endpoint.port.to_string()),
                );
            }
            out.push(ResourceSpans {
                resource: Some(resource),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope::default()),
                    ..Default::default()
                }],
                ..Default::default()
            });
            out.len() - 1
        });
        out[index].scope_spans[0].spans.push(converted);
    }
    Ok(out)
}

fn convert(
    span: JsonSpan,
    parse_string_tags: bool,
    now_nanos: u64,
) -> Result<(Span, JsonEndpoint), String> {
    let mut out = Span {
        trace_id: trace_id(&span.trace_id)?,
        span_id: span_id(&span.id, "id")?,
        name: span.name,
        ..Default::default()
    };
    if !span.parent_id.is_empty() {
        out.parent_span_id = span_id(&span.parent_id, "parentId")?;
    }
    // Annotations: kind and endpoint from the first core annotation, events from the rest.
    let mut endpoint: Option<JsonEndpoint> = None;
    let mut kind_set = false;
    let (mut earliest, mut latest) = (i64::MAX, i64::MIN);
    for annotation in span
        .annotations
        .into_iter()
        .flatten()
        .filter(|a| !a.value.is_empty())
    {
        let kind = match annotation.value.as_str() {
            "cs" | "cr" => Some(SpanKind::Client),
            "ms" => Some(SpanKind::Producer),
            "mr" => Some(SpanKind::Consumer),
            "ss" | "sr" => Some(SpanKind::Server),
            _ => None,
        };
        let named = annotation
            .endpoint
            .as_ref()
            .is_some_and(|e| !e.service_name.is_empty());
        if endpoint.is_none() && named && kind.is_some() {
            endpoint = annotation.endpoint.clone();
        }
        if let Some(kind) = kind
            && !kind_set
        {
            out.kind = kind as i32;
            kind_set = true;
        }
        let at = micros_to_nanos(annotation.timestamp);
        if annotation.timestamp < earliest {
            earliest = annotation.timestamp;
            out.start_time_unix_nano = at;
        }
        if annotation.timestamp > latest {
            latest = annotation.timestamp;
            out.end_time_unix_nano = at;
        }
        if kind.is_none() {
            out.events.push(Event {
                time_unix_nano: at,
                name: annotation.value,
                ..Default::default()
            });
        }
    }
    let mut endpoint = endpoint.unwrap_or(JsonEndpoint {
        service_name: UNKNOWN_SERVICE_NAME.to_string(),
        ..Default::default()
    });
    // Binary annotations: attributes, status, and a fallback service name.
    let mut fallback_service = String::new();
    let mut local_component = String::new();
    let mut status = StatusMapper::default();
    let had_binary_annotations = !span.binary_annotations.is_empty();
    for annotation in span.binary_annotations.into_iter().flatten() {
        if let Some(name) = annotation
            .endpoint
            .as_ref()
            .map(|e| &e.service_name)
            .filter(|n| !n.is_empty())
        {
            fallback_service = name.clone();
        }
        let mut key = annotation.key;
        if key == "lc" {
            key = "component".to_string();
            local_component = annotation.value.clone();
        }
        let value = if parse_string_tags {
            typed_tag_value(&annotation.value)
        } else {
            Value::StringValue(annotation.value)
        };
        if status.read(&key, &value) {
            continue;
        }
        put(
            &mut out.attributes,
            &key,
            Some(AnyValue { value: Some(value) }),
        );
    }
    if had_binary_annotations {
        if fallback_service.is_empty() {
            fallback_service = local_component;
        }
        out.status = status.status();
    }
    if endpoint.service_name == UNKNOWN_SERVICE_NAME && !fallback_service.is_empty() {
        endpoint.service_name = fallback_service;
    }
    if span.timestamp != 0 {
        out.start_time_unix_nano = micros_to_nanos(span.timestamp);
        out.end_time_unix_nano = micros_to_nanos(span.timestamp.saturating_add(span.duration));
    }
    if out.start_time_unix_nano == 0 {
        // As the Collector: "now", marked as absent.
        out.start_time_unix_nano = now_nanos;
        out.end_time_unix_nano = now_nanos;
        put(
            &mut out.attributes,
            START_TIME_ABSENT,
            Some(AnyValue {
                value: Some(Value::BoolValue(true)),
            }),
        );
    }
    Ok((out, endpoint))
}
