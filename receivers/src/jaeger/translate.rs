//! Jaeger spans (the `api_v2` model, which the Thrift decoders also produce) to OTLP, with
//! the rules of the Collector's `pkg/translator/jaeger` (jaegerproto_to_traces.go and
//! jaegerthrift_to_traces.go):
//!
//! - process -> resource: `service.name` from the service name, then the process tags
//!   (typed); `hostname` -> `host.name`, `jaeger.version` -> `opencensus.exporterversion`
//!   = `Jaeger-<version>` (each only when the target key is absent).
//! - trace id high/low and span id as big-endian bytes; start and start + duration in ns.
//! - parent: the first CHILD_OF reference of the same trace, else the first FOLLOWS_FROM
//!   one; every other reference becomes a link with `opentracing.ref_type`.
//! - tags -> attributes, except `span.kind` (-> kind), `error`, `otel.status_code`,
//!   `otel.status_description` (-> status, `http.status_code` as fallback),
//!   `w3c.tracestate` (-> trace state, gRPC only, as upstream).
//! - logs -> events, the `event` field becoming the event name.
//! - gRPC only (as upstream): spans carrying their own process are regrouped under it, and
//!   `otel.scope.name`/`otel.scope.version` (or the older `otel.library.name`/`.version`)
//!   become the instrumentation scope.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use super::model;

/// Which upstream translator's rules apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `ProtoToTraces`: regroup by process, scope from tags, trace state from tags.
    Proto,
    /// `ThriftToTraces`: one resource, one (unnamed) scope.
    Thrift,
}

/// Ids of the wrong length (the Jaeger model requires 16-byte trace ids and 8-byte span ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidId(pub String);

impl std::fmt::Display for InvalidId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The service name the Collector's Jaeger exporter writes for a resource without one;
/// such a process gives no resource attributes.
const NO_SERVICE_NAME: &str = "OTLPResourceNoServiceName";

fn id<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N], InvalidId> {
    if bytes.is_empty() {
        return Ok([0; N]);
    }
    <[u8; N]>::try_from(bytes)
        .map_err(|_| InvalidId(format!("{what} has {} bytes, want {N}", bytes.len())))
}

fn put(attrs: &mut Vec<KeyValue>, key: &str, value: Value) {
    match attrs.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = Some(AnyValue { value: Some(value) }),
        None => attrs.push(KeyValue {
            key: key.to_string(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        }),
    }
}

fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn remove(attrs: &mut Vec<KeyValue>, key: &str) -> Option<Value> {
    let index = attrs.iter().position(|kv| kv.key == key)?;
    attrs.remove(index).value.and_then(|v| v.value)
}

/// A value as Go's `Value.Str()` gives it: the string, or "" for other types.
fn str_of(value: Option<&Value>) -> String {
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        _ => String::new(),
    }
}

fn tags_to_attributes(tags: &[model::KeyValue], attrs: &mut Vec<KeyValue>) {
    use model::value_type::*;
    for tag in tags {
        let value = match tag.v_type {
            STRING => Value::StringValue(tag.v_str.clone()),
            BOOL => Value::BoolValue(tag.v_bool),
            INT64 => Value::IntValue(tag.v_int64),
            FLOAT64 => Value::DoubleValue(tag.v_float64),
            BINARY => Value::BytesValue(tag.v_binary.clone()),
            other => Value::StringValue(format!("<Unknown Jaeger TagType \"{other}\">")),
        };
        put(attrs, &tag.key, value);
    }
}

fn process_to_resource(process: Option<&model::Process>, flavor: Flavor) -> Resource {
    let mut resource = Resource::default();
    let Some(process) = process else {
        return resource;
    };
    if flavor == Flavor::Proto && process.service_name == NO_SERVICE_NAME {
        return resource;
    }
    let attrs = &mut resource.attributes;
    if !process.service_name.is_empty() {
        put(
            attrs,
            "service.name",
            Value::StringValue(process.service_name.clone()),
        );
    }
    tags_to_attributes(&process.tags, attrs);
    if get(attrs, "host.name").is_none()
        && let Some(hostname) = remove(attrs, "hostname")
    {
        put(attrs, "host.name", hostname);
    }
    if get(attrs, "opencensus.exporterversion").is_none()
        && let Some(version) = remove(attrs, "jaeger.version")
    {
        put(
            attrs,
            "opencensus.exporterversion",
            Value::StringValue(format!("Jaeger-{}", str_of(Some(&version)))),
        );
    }
    resource
}

fn timestamp_nanos(t: Option<&model::Timestamp>) -> i128 {
    t.map_or(0, |t| {
        i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
    })
}

fn duration_nanos(d: Option<&model::Duration>) -> i128 {
    d.map_or(0, |d| {
        i128::from(d.seconds) * 1_000_000_000 + i128::from(d.nanos)
    })
}

/// Nanoseconds as OTLP's unsigned field (times before 1970 become 0).
fn unix_nanos(nanos: i128) -> u64 {
    u64::try_from(nanos.max(0)).unwrap_or(u64::MAX)
}

/// The parent rule of the Jaeger model (`Span.ParentSpanID`): the first CHILD_OF reference
/// of the same trace, else the first FOLLOWS_FROM one of the same trace, else none (0).
fn parent_span_id(span: &model::Span) -> &[u8] {
    let same_trace = |r: &&model::SpanRef| r.trace_id == span.trace_id;
    let mut refs = span.references.iter().filter(same_trace);
    if let Some(child_of) = refs
        .clone()
        .find(|r| r.ref_type == model::ref_type::CHILD_OF)
    {
        return &child_of.span_id;
    }
    refs.find(|r| r.ref_type == model::ref_type::FOLLOWS_FROM)
        .map_or(&[], |r| &r.span_id)
}

fn span_kind(kind: Option<&Value>) -> SpanKind {
    match str_of(kind).as_str() {
        "client" => SpanKind::Client,
        "server" => SpanKind::Server,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        "internal" => SpanKind::Internal,
        _ => SpanKind::Unspecified,
    }
}

/// `setInternalSpanStatus`: the `error` tag wins, then `otel.status_code`, then an HTTP
/// status code (4xx is an error only for client spans).
fn set_status(attrs: &mut Vec<KeyValue>, kind: SpanKind) -> Option<Status> {
    let mut code = StatusCode::Unset;
    let mut message = String::new();
    let mut exists = false;
    if let Some(Value::BoolValue(true)) = get(attrs, "error") {
        code = StatusCode::Error;
        remove(attrs, "error");
        exists = true;
        if let Some(description) = remove(attrs, "otel.status_description") {
            message = str_of(Some(&description));
        } else if let Some(http_message) = get(attrs, "http.status_message") {
            message = str_of(Some(http_message));
        }
    }
    if let Some(status_code) = get(attrs, "otel.status_code") {
        if !exists {
            exists = true;
            match str_of(Some(status_code)).to_ascii_uppercase().as_str() {
                "OK" => code = StatusCode::Ok,
                "ERROR" => code = StatusCode::Error,
                _ => {}
            }
            if let Some(description) = remove(attrs, "otel.status_description") {
                message = str_of(Some(&description));
            }
        }
        remove(attrs, "otel.status_code");
    } else if !exists && let Some(http_code) = get(attrs, "http.status_code") {
        let number = match http_code {
            Value::IntValue(n) => Some(*n),
            Value::StringValue(s) => s.parse::<i64>().ok(),
            _ => None,
        };
        if let Some(number) = number {
            // 4xx: an error for a client, unset for a server; otherwise 100-398 is unset
            // and anything else an error (tracetranslator.StatusCodeFromHTTP).
            let client_error = (400..500).contains(&number);
            let from_http = match kind {
                SpanKind::Client if client_error => StatusCode::Error,
                SpanKind::Server if client_error => StatusCode::Unset,
                _ if (100..399).contains(&number) => StatusCode::Unset,
                _ => StatusCode::Error,
            };
            if from_http != StatusCode::Unset {
                exists = true;
                code = from_http;
            }
            if let Some(http_message) = get(attrs, "http.status_message") {
                message = str_of(Some(http_message));
            }
        }
    }
    exists.then_some(Status {
        code: code as i32,
        message,
    })
}

fn translate_span(
    mut span: model::Span,
    flavor: Flavor,
) -> Result<(Span, (String, String)), InvalidId> {
    let trace_id = id::<16>(&span.trace_id, "trace_id")?;
    let span_id = id::<8>(&span.span_id, "span_id")?;
    // getScope (gRPC only): the scope tags leave the span.
    let mut scope = (String::new(), String::new());
    // (`otel.library.name` is not read: v0.161 leaves it as an attribute.)
    if flavor == Flavor::Proto
        && let Some(index) = span.tags.iter().position(|t| t.key == "otel.scope.name")
    {
        scope.0 = span.tags.remove(index).v_str;
        if let Some(index) = span.tags.iter().position(|t| t.key == "otel.scope.version") {
            scope.1 = span.tags.remove(index).v_str;
        }
    }
    let start = timestamp_nanos(span.start_time.as_ref());
    let end = start + duration_nanos(span.duration.as_ref());
    let parent = id::<8>(parent_span_id(&span), "parent span_id")?;
    let mut out = Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        name: std::mem::take(&mut span.operation_name),
        start_time_unix_nano: unix_nanos(start),
        end_time_unix_nano: unix_nanos(end),
        // Only Jaeger's "sampled" bit, which is W3C's too (debug and firehose bits are not
        // trace flags), as the Collector maps it.
        flags: span.flags & 1,
        ..Span::default()
    };
    if parent != [0; 8] {
        out.parent_span_id = parent.to_vec();
    }
    let mut attrs = Vec::with_capacity(span.tags.len());
    tags_to_attributes(&span.tags, &mut attrs);
    let mut kind = SpanKind::Unspecified;
    if let Some(value) = remove(&mut attrs, "span.kind") {
        kind = span_kind(Some(&value));
    }
    out.kind = kind as i32;
    out.status = set_status(&mut attrs, kind);
    if flavor == Flavor::Proto
        && let Some(state) = remove(&mut attrs, "w3c.tracestate")
    {
        out.trace_state = str_of(Some(&state));
    }
    out.attributes = attrs;
    for log in &span.logs {
        let mut event = Event {
            time_unix_nano: unix_nanos(timestamp_nanos(log.timestamp.as_ref())),
            ..Event::default()
        };
        tags_to_attributes(&log.fields, &mut event.attributes);
        if let Some(name) = remove(&mut event.attributes, "event") {
            event.name = str_of(Some(&name));
        }
        out.events.push(event);
    }
    for reference in &span.references {
        let reference_span_id = id::<8>(&reference.span_id, "reference span_id")?;
        if reference_span_id == parent && reference.ref_type == model::ref_type::CHILD_OF {
            continue;
        }
        let ref_type = if reference.ref_type == model::ref_type::CHILD_OF {
            "child_of"
        } else {
            "follows_from"
        };
        out.links.push(Link {
            trace_id: id::<16>(&reference.trace_id, "reference trace_id")?.to_vec(),
            span_id: reference_span_id.to_vec(),
            attributes: vec![KeyValue {
                key: "opentracing.ref_type".into(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue(ref_type.into())),
                }),
                ..KeyValue::default()
            }],
            ..Link::default()
        });
    }
    Ok((out, scope))
}

/// A span with nothing set (upstream skips them): all-zero ids and times, no name, no
/// references, tags, logs or process. Thrift spans count as blank with zero times too.
fn is_blank(span: &model::Span) -> bool {
    let zero = |bytes: &[u8]| bytes.iter().all(|b| *b == 0);
    zero(&span.trace_id)
        && zero(&span.span_id)
        && span.operation_name.is_empty()
        && span.references.is_empty()
        && span.flags == 0
        && timestamp_nanos(span.start_time.as_ref()) == 0
        && duration_nanos(span.duration.as_ref()) == 0
        && span.tags.is_empty()
        && span.logs.is_empty()
        && span.process.is_none()
        && span.process_id.is_empty()
        && span.warnings.is_empty()
}

/// Translates one Jaeger batch. An empty batch (no process, no spans) gives nothing; spans
/// equal to the default (blank) span are skipped, as upstream.
pub fn batch_to_resource_spans(
    batch: model::Batch,
    flavor: Flavor,
) -> Result<Vec<ResourceSpans>, InvalidId> {
    if batch.process.is_none() && batch.spans.is_empty() {
        return Ok(Vec::new());
    }
    // Groups of spans by process: the batch's process first, then each distinct span
    // process in order of appearance (gRPC only; Thrift spans have no process).
    let mut groups: Vec<(Option<model::Process>, Vec<model::Span>)> =
        vec![(batch.process, Vec::new())];
    for mut span in batch.spans {
        let own = if flavor == Flavor::Proto {
            span.process.take()
        } else {
            None
        };
        let index = match own {
            None => 0,
            Some(process) => match groups
                .iter()
                .position(|(p, _)| p.as_ref() == Some(&process))
            {
                Some(index) => index,
                None => {
                    groups.push((Some(process), Vec::new()));
                    groups.len() - 1
                }
            },
        };
        groups[index].1.push(span);
    }
    let mut out = Vec::with_capacity(groups.len());
    for (index, (process, spans)) in groups.into_iter().enumerate() {
        // The batch's own group is kept even without spans (a process alone gives a
        // resource, as upstream) unless it has no process either.
        if index == 0 && process.is_none() && spans.is_empty() {
            continue;
        }
        let mut resource_spans = ResourceSpans {
            resource: Some(process_to_resource(process.as_ref(), flavor)),
            ..ResourceSpans::default()
        };
        let mut scopes: Vec<((String, String), Vec<Span>)> = Vec::new();
        for span in spans {
            if is_blank(&span) {
                continue;
            }
            let (span, scope) = translate_span(span, flavor)?;
            match scopes.iter_mut().find(|(s, _)| *s == scope) {
                Some((_, list)) => list.push(span),
                None => scopes.push((scope, vec![span])),
            }
        }
        for ((name, version), spans) in scopes {
            let scope = InstrumentationScope {
                name,
                version,
                ..InstrumentationScope::default()
            };
            resource_spans.scope_spans.push(ScopeSpans {
                scope: Some(scope),
                spans,
                ..ScopeSpans::default()
            });
        }
        out.push(resource_spans);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
