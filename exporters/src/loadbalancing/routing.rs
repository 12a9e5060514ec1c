//! What the `loadbalancing` exporter routes by (`routing_key`), and the split of one batch
//! into one batch per backend of the ring.
//!
//! `service` and `resource` route whole resources, so an encoded batch is cut between its
//! resources by the skeleton scan and only each resource's `Resource` message is decoded;
//! the cut pieces are slices of the received bytes (no copy, no re-encode). The other keys
//! look inside resources and decode the batch. This module never sends anything.

use std::collections::BTreeMap;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics, metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use oxcol_core::batch::{BatchError, Data};
use oxcol_core::{Batch, Signal};
use prost::Message;

use super::ring::{Ring, position};
use crate::prom_translate::any_value_string;

/// `routing_key` as resolved for one signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoutingKey {
    /// The span's (or log record's) trace ID; log records without one go to a random backend.
    TraceId,
    /// The resource's `service.name` (resources without one share the key "").
    Service,
    /// All the resource's attributes.
    Resource,
    /// The metric name.
    Metric,
    /// The data point's stream: resource, scope, metric identity and point attributes.
    StreamId,
    /// `routing_attributes`, looked up on the resource, then the scope, then the item.
    Attributes(Vec<String>),
}

/// The `routing_key` values the Collector accepts.
pub const ROUTING_KEYS: &[&str] = &[
    "traceID",
    "service",
    "resource",
    "metric",
    "streamID",
    "attributes",
];

impl RoutingKey {
    /// Resolves `routing_key` (empty = the Collector's default: `traceID` for traces and
    /// logs, `service` for metrics) for `signal`.
    pub fn for_signal(
        routing_key: &str,
        attributes: &[String],
        signal: Signal,
    ) -> Result<RoutingKey, String> {
        let key = match (routing_key, signal) {
            ("", Signal::Metrics) | ("service", _) => RoutingKey::Service,
            ("" | "traceID", Signal::Traces | Signal::Logs) => RoutingKey::TraceId,
            ("resource", Signal::Metrics) => RoutingKey::Resource,
            ("metric", Signal::Metrics) => RoutingKey::Metric,
            ("streamID", Signal::Metrics) => RoutingKey::StreamId,
            ("attributes", _) => RoutingKey::Attributes(attributes.to_vec()),
            (other, signal) => {
                let usable = match signal {
                    Signal::Metrics => "service, resource, metric, streamID or attributes",
                    Signal::Traces | Signal::Logs => "traceID, service or attributes",
                };
                return Err(format!(
                    "routing_key {other:?} cannot route {signal}; for {signal} use {usable}"
                ));
            }
        };
        Ok(key)
    }
}

/// A resource message alone: decoding a `Resource{Metrics,Spans,Logs}` entry into it reads
/// field 1 and skips the scopes and their items without decoding them.
#[derive(Clone, PartialEq, Message)]
struct ResourceOnly {
    #[prost(message, optional, tag = "1")]
    resource: Option<Resource>,
}

/// Splits `batch` into one batch per backend of `ring`: (index into `ring.endpoints()`,
/// batch). An empty ring yields nothing (the caller checks it first).
pub fn split(
    batch: Batch,
    key: &RoutingKey,
    ring: &Ring,
) -> Result<Vec<(usize, Batch)>, BatchError> {
    if ring.is_empty() || batch.items() == 0 && batch.is_empty() {
        return Ok(Vec::new());
    }
    if ring.endpoints().len() == 1 {
        return Ok(vec![(0, batch)]);
    }
    let owner = |bytes: &[u8]| ring.owner(position(bytes)).unwrap_or(0);
    let signal = batch.signal();
    if matches!(key, RoutingKey::Service | RoutingKey::Resource) {
        if let Data::Encoded(segments) = batch.data() {
            return split_encoded_resources(signal, segments, key, &owner);
        }
    }
    let mut batch = batch;
    let mut out: BTreeMap<usize, Batch> = BTreeMap::new();
    match signal {
        Signal::Metrics => {
            let resources = std::mem::take(batch.metrics_mut()?);
            for (index, resources) in split_metrics(resources, key, &owner) {
                merge(&mut out, index, Batch::from_metrics(resources))?;
            }
        }
        Signal::Traces => {
            let resources = std::mem::take(batch.traces_mut()?);
            for (index, resources) in split_spans(resources, key, &owner) {
                merge(&mut out, index, Batch::from_traces(resources))?;
            }
        }
        Signal::Logs => {
            let resources = std::mem::take(batch.logs_mut()?);
            for (index, resources) in split_logs(resources, key, &owner) {
                merge(&mut out, index, Batch::from_logs(resources))?;
            }
        }
    }
    Ok(out.into_iter().collect())
}

fn merge(out: &mut BTreeMap<usize, Batch>, index: usize, piece: Batch) -> Result<(), BatchError> {
    match out.get_mut(&index) {
        Some(existing) => existing.append(piece),
        None => {
            out.insert(index, piece);
            Ok(())
        }
    }
}

/// `service`/`resource` on encoded data: each top-level resource entry is a slice of the
/// received bytes; only its `Resource` is decoded.
fn split_encoded_resources(
    signal: Signal,
    segments: &[Bytes],
    key: &RoutingKey,
    owner: &dyn Fn(&[u8]) -> usize,
) -> Result<Vec<(usize, Batch)>, BatchError> {
    let mut out: BTreeMap<usize, Batch> = BTreeMap::new();
    for segment in segments {
        for entry in oxcol_core::skeleton::scan_request(signal, segment)? {
            let whole = segment.slice(entry.range.clone());
            // The entry is tag + length + payload; decoding the whole field as a request
            // with one resource gives that resource.
            let resource = ResourceEntryOnly::decode(whole.clone())?
                .entries
                .into_iter()
                .next()
                .and_then(|r| r.resource);
            let index = owner(&resource_key(resource.as_ref(), key));
            let piece = Batch::from_encoded_counted(signal, whole, entry.items);
            merge(&mut out, index, piece)?;
        }
    }
    Ok(out.into_iter().collect())
}

/// An export request read for its resources only (field 1 of every request type).
#[derive(Clone, PartialEq, Message)]
struct ResourceEntryOnly {
    #[prost(message, repeated, tag = "1")]
    entries: Vec<ResourceOnly>,
}

/// The key bytes of a whole resource (`service` or `resource` routing).
fn resource_key(resource: Option<&Resource>, key: &RoutingKey) -> Vec<u8> {
    let attributes = resource.map(|r| r.attributes.as_slice()).unwrap_or(&[]);
    match key {
        RoutingKey::Resource => attributes_identity(attributes),
        _ => service_name(attributes).into_bytes(),
    }
}

fn service_name(attributes: &[KeyValue]) -> String {
    attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .map(|kv| any_value_string(kv.value.as_ref()))
        .unwrap_or_default()
}

/// An order-independent identity of a set of attributes: `key=value` pairs, sorted.
fn attributes_identity(attributes: &[KeyValue]) -> Vec<u8> {
    let mut pairs: Vec<(String, String)> = attributes
        .iter()
        .map(|kv| (kv.key.clone(), any_value_string(kv.value.as_ref())))
        .collect();
    pairs.sort();
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn find<'a>(attributes: &'a [KeyValue], name: &str) -> Option<&'a KeyValue> {
    attributes.iter().find(|kv| kv.key == name)
}

/// The `attributes` routing key, in the Collector's form: `name=value|` per configured
/// attribute, in the configured order, `name=|` when missing. Each name is looked up on the
/// resource, then the scope, then the item (with the item's pseudo attributes).
fn composite_key(
    names: &[String],
    resource: &[KeyValue],
    scope: Option<&InstrumentationScope>,
    item: &[KeyValue],
    pseudo: &dyn Fn(&str) -> Option<String>,
) -> Vec<u8> {
    let scope_attributes = scope.map(|s| s.attributes.as_slice()).unwrap_or(&[]);
    let mut out = String::new();
    for name in names {
        let value = find(resource, name)
            .or_else(|| find(scope_attributes, name))
            .or_else(|| find(item, name))
            .map(|kv| any_value_string(kv.value.as_ref()))
            .or_else(|| pseudo(name))
            .unwrap_or_default();
        out.push_str(name);
        out.push('=');
        out.push_str(&value);
        out.push('|');
    }
    out.into_bytes()
}

fn resource_attributes(resource: &Option<Resource>) -> &[KeyValue] {
    resource
        .as_ref()
        .map(|r| r.attributes.as_slice())
        .unwrap_or(&[])
}

/// Traces, split by span (traceID, attributes) or resource (service).
fn split_spans(
    resources: Vec<ResourceSpans>,
    key: &RoutingKey,
    owner: &dyn Fn(&[u8]) -> usize,
) -> BTreeMap<usize, Vec<ResourceSpans>> {
    let mut out: BTreeMap<usize, Vec<ResourceSpans>> = BTreeMap::new();
    for resource_spans in resources {
        if matches!(key, RoutingKey::Service | RoutingKey::Resource) {
            let index = owner(&resource_key(resource_spans.resource.as_ref(), key));
            out.entry(index).or_default().push(resource_spans);
            continue;
        }
        let ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        } = resource_spans;
        let mut per_owner: BTreeMap<usize, ResourceSpans> = BTreeMap::new();
        for scope_spans in scope_spans {
            let ScopeSpans {
                scope,
                spans,
                schema_url: scope_schema,
            } = scope_spans;
            let mut per_scope: BTreeMap<usize, ScopeSpans> = BTreeMap::new();
            for span in spans {
                let key_bytes = match key {
                    RoutingKey::Attributes(names) => {
                        let pseudo = |name: &str| match name {
                            "span.kind" => Some(span_kind_name(span.kind).to_string()),
                            "span.name" => Some(span.name.clone()),
                            _ => None,
                        };
                        composite_key(
                            names,
                            resource_attributes(&resource),
                            scope.as_ref(),
                            &span.attributes,
                            &pseudo,
                        )
                    }
                    _ => span.trace_id.clone(),
                };
                let index = owner(&key_bytes);
                per_scope
                    .entry(index)
                    .or_insert_with(|| ScopeSpans {
                        scope: scope.clone(),
                        spans: Vec::new(),
                        schema_url: scope_schema.clone(),
                    })
                    .spans
                    .push(span);
            }
            for (index, scope_spans) in per_scope {
                per_owner
                    .entry(index)
                    .or_insert_with(|| ResourceSpans {
                        resource: resource.clone(),
                        scope_spans: Vec::new(),
                        schema_url: schema_url.clone(),
                    })
                    .scope_spans
                    .push(scope_spans);
            }
        }
        for (index, resource_spans) in per_owner {
            out.entry(index).or_default().push(resource_spans);
        }
    }
    out
}

/// The Collector's names of span kinds (`ptrace.SpanKind.String()`).
fn span_kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "Internal",
        2 => "Server",
        3 => "Client",
        4 => "Producer",
        5 => "Consumer",
        _ => "Unspecified",
    }
}

/// Logs, split by record (traceID, attributes) or resource (service).
fn split_logs(
    resources: Vec<ResourceLogs>,
    key: &RoutingKey,
    owner: &dyn Fn(&[u8]) -> usize,
) -> BTreeMap<usize, Vec<ResourceLogs>> {
    let mut out: BTreeMap<usize, Vec<ResourceLogs>> = BTreeMap::new();
    for resource_logs in resources {
        if matches!(key, RoutingKey::Service | RoutingKey::Resource) {
            let index = owner(&resource_key(resource_logs.resource.as_ref(), key));
            out.entry(index).or_default().push(resource_logs);
            continue;
        }
        let ResourceLogs {
            resource,
            scope_logs,
            schema_url,
        } = resource_logs;
        let mut per_owner: BTreeMap<usize, ResourceLogs> = BTreeMap::new();
        for scope_logs in scope_logs {
            let ScopeLogs {
                scope,
                log_records,
                schema_url: scope_schema,
            } = scope_logs;
            let mut per_scope: BTreeMap<usize, ScopeLogs> = BTreeMap::new();
            for record in log_records {
                let key_bytes = match key {
                    RoutingKey::Attributes(names) => {
                        let pseudo = |name: &str| match name {
                            "log.severity" => Some(record.severity_text.clone()),
                            "log.body" => Some(any_value_string(record.body.as_ref())),
                            _ => None,
                        };
                        composite_key(
                            names,
                            resource_attributes(&resource),
                            scope.as_ref(),
                            &record.attributes,
                            &pseudo,
                        )
                    }
                    // As the Collector: a record without a trace ID goes to a random backend.
                    _ if record.trace_id.iter().all(|b| *b == 0) => {
                        rand::random::<[u8; 16]>().to_vec()
                    }
                    _ => record.trace_id.clone(),
                };
                let index = owner(&key_bytes);
                per_scope
                    .entry(index)
                    .or_insert_with(|| ScopeLogs {
                        scope: scope.clone(),
                        log_records: Vec::new(),
                        schema_url: scope_schema.clone(),
                    })
                    .log_records
                    .push(record);
            }
            for (index, scope_logs) in per_scope {
                per_owner
                    .entry(index)
                    .or_insert_with(|| ResourceLogs {
                        resource: resource.clone(),
                        scope_logs: Vec::new(),
                        schema_url: schema_url.clone(),
                    })
                    .scope_logs
                    .push(scope_logs);
            }
        }
        for (index, resource_logs) in per_owner {
            out.entry(index).or_default().push(resource_logs);
        }
    }
    out
}

/// Metrics, split by resource (service, resource), metric (metric) or data point
/// (streamID, attributes).
fn split_metrics(
    resources: Vec<ResourceMetrics>,
    key: &RoutingKey,
    owner: &dyn Fn(&[u8]) -> usize,
) -> BTreeMap<usize, Vec<ResourceMetrics>> {
    let mut out: BTreeMap<usize, Vec<ResourceMetrics>> = BTreeMap::new();
    for resource_metrics in resources {
        if matches!(key, RoutingKey::Service | RoutingKey::Resource) {
            let index = owner(&resource_key(resource_metrics.resource.as_ref(), key));
            out.entry(index).or_default().push(resource_metrics);
            continue;
        }
        let ResourceMetrics {
            resource,
            scope_metrics,
            schema_url,
        } = resource_metrics;
        let resource_identity = attributes_identity(resource_attributes(&resource));
        let mut per_owner: BTreeMap<usize, ResourceMetrics> = BTreeMap::new();
        for scope_metrics in scope_metrics {
            let ScopeMetrics {
                scope,
                metrics,
                schema_url: scope_schema,
            } = scope_metrics;
            let mut per_scope: BTreeMap<usize, ScopeMetrics> = BTreeMap::new();
            for metric in metrics {
                let pieces: Vec<(usize, Metric)> = match key {
                    RoutingKey::Attributes(names) => partition_points(metric, &|attributes| {
                        owner(&composite_key(
                            names,
                            resource_attributes(&resource),
                            scope.as_ref(),
                            attributes,
                            &|_| None,
                        ))
                    }),
                    RoutingKey::StreamId => {
                        let metric_identity =
                            metric_identity(&resource_identity, scope.as_ref(), &metric);
                        partition_points(metric, &|attributes| {
                            let mut key_bytes = metric_identity.clone();
                            key_bytes.extend(attributes_identity(attributes));
                            owner(&key_bytes)
                        })
                    }
                    _ => vec![(owner(metric.name.as_bytes()), metric)],
                };
                for (index, metric) in pieces {
                    per_scope
                        .entry(index)
                        .or_insert_with(|| ScopeMetrics {
                            scope: scope.clone(),
                            metrics: Vec::new(),
                            schema_url: scope_schema.clone(),
                        })
                        .metrics
                        .push(metric);
                }
            }
            for (index, scope_metrics) in per_scope {
                per_owner
                    .entry(index)
                    .or_insert_with(|| ResourceMetrics {
                        resource: resource.clone(),
                        scope_metrics: Vec::new(),
                        schema_url: schema_url.clone(),
                    })
                    .scope_metrics
                    .push(scope_metrics);
            }
        }
        for (index, resource_metrics) in per_owner {
            out.entry(index).or_default().push(resource_metrics);
        }
    }
    out
}

/// What identifies a metric's streams apart from point attributes: the resource, the
/// scope (name, version, attributes) and the metric's name, unit, type, temporality and
/// monotonicity.
fn metric_identity(
    resource_identity: &[u8],
    scope: Option<&InstrumentationScope>,
    metric: &Metric,
) -> Vec<u8> {
    let mut out = resource_identity.to_vec();
    out.push(1);
    if let Some(scope) = scope {
        out.extend_from_slice(scope.name.as_bytes());
        out.push(0);
        out.extend_from_slice(scope.version.as_bytes());
        out.push(0);
        out.extend(attributes_identity(&scope.attributes));
    }
    out.push(1);
    out.extend_from_slice(metric.name.as_bytes());
    out.push(0);
    out.extend_from_slice(metric.unit.as_bytes());
    out.push(0);
    let (kind, temporality, monotonic) = match &metric.data {
        Some(metric::Data::Gauge(_)) => (1u8, 0, false),
        Some(metric::Data::Sum(s)) => (2, s.aggregation_temporality, s.is_monotonic),
        Some(metric::Data::Histogram(h)) => (3, h.aggregation_temporality, false),
        Some(metric::Data::ExponentialHistogram(h)) => (4, h.aggregation_temporality, false),
        Some(metric::Data::Summary(_)) => (5, 0, false),
        None => (0, 0, false),
    };
    out.push(kind);
    out.extend_from_slice(&temporality.to_le_bytes());
    out.push(monotonic as u8);
    out
}

/// Splits a metric's points by `owner(point attributes)`: one metric (same name, unit,
/// type) per owner holding that owner's points, in their order.
fn partition_points(metric: Metric, owner: &dyn Fn(&[KeyValue]) -> usize) -> Vec<(usize, Metric)> {
    fn by_owner<P>(
        points: Vec<P>,
        attributes: impl Fn(&P) -> &[KeyValue],
        owner: &dyn Fn(&[KeyValue]) -> usize,
    ) -> BTreeMap<usize, Vec<P>> {
        let mut out: BTreeMap<usize, Vec<P>> = BTreeMap::new();
        for point in points {
            out.entry(owner(attributes(&point)))
                .or_default()
                .push(point);
        }
        out
    }
    let Metric {
        name,
        description,
        unit,
        metadata,
        data,
    } = metric;
    let with = |data: metric::Data| Metric {
        name: name.clone(),
        description: description.clone(),
        unit: unit.clone(),
        metadata: metadata.clone(),
        data: Some(data),
    };
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogram, Gauge, Histogram, Sum, Summary,
    };
    match data {
        Some(metric::Data::Gauge(g)) => by_owner(g.data_points, |p| &p.attributes, owner)
            .into_iter()
            .map(|(i, data_points)| (i, with(metric::Data::Gauge(Gauge { data_points }))))
            .collect(),
        Some(metric::Data::Sum(s)) => {
            let (temporality, monotonic) = (s.aggregation_temporality, s.is_monotonic);
            by_owner(s.data_points, |p| &p.attributes, owner)
                .into_iter()
                .map(|(i, data_points)| {
                    let sum = Sum {
                        data_points,
                        aggregation_temporality: temporality,
                        is_monotonic: monotonic,
                    };
                    (i, with(metric::Data::Sum(sum)))
                })
                .collect()
        }
        Some(metric::Data::Histogram(h)) => {
            let temporality = h.aggregation_temporality;
            by_owner(h.data_points, |p| &p.attributes, owner)
                .into_iter()
                .map(|(i, data_points)| {
                    let histogram = Histogram {
                        data_points,
                        aggregation_temporality: temporality,
                    };
                    (i, with(metric::Data::Histogram(histogram)))
                })
                .collect()
        }
        Some(metric::Data::ExponentialHistogram(h)) => {
            let temporality = h.aggregation_temporality;
            by_owner(h.data_points, |p| &p.attributes, owner)
                .into_iter()
                .map(|(i, data_points)| {
                    let histogram = ExponentialHistogram {
                        data_points,
                        aggregation_temporality: temporality,
                    };
                    (i, with(metric::Data::ExponentialHistogram(histogram)))
                })
                .collect()
        }
        Some(metric::Data::Summary(s)) => by_owner(s.data_points, |p| &p.attributes, owner)
            .into_iter()
            .map(|(i, data_points)| (i, with(metric::Data::Summary(Summary { data_points }))))
            .collect(),
        None => {
            let metric = Metric {
                name: name.clone(),
                description: description.clone(),
                unit: unit.clone(),
                metadata: metadata.clone(),
                data: None,
            };
            vec![(owner(&[]), metric)]
        }
    }
}
