//! `kafka` exporter: each batch becomes one or more Kafka messages (OTLP protobuf or
//! OTLP/JSON `Export*ServiceRequest`s) produced with librdkafka.
//!
//! A batch counts as sent only when the brokers acknowledged every message of it: the
//! producer is idempotent with `acks=all` by default, and `export` waits for each
//! message's delivery report. A retryable failure (broker down, leader moving, delivery
//! timeout, local queue full) is returned as retryable, so the sending queue retries the
//! whole batch (a part already acknowledged is sent again: at-least-once, never lost).
//!
//! With `otlp_proto` and no partitioning the bytes that arrived are written as they are,
//! never decoded (see DESIGN.md "Decode only what someone reads"). A batch larger than
//! `producer.max_message_bytes` is split between resources (or items) until each piece
//! fits.
//!
//! It must never panic on data and never report success for a message the broker did
//! not acknowledge.

mod config;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use oxcol_core::kafka::Encoding;
use oxcol_core::{Batch, ExportError, ExportOutcome, Exporter, Signal};
use prost::Message;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};

pub use config::{CompressionParams, Config, ProducerConfig, SignalConfig, SignalTarget};

pub const TYPE: &str = "kafka";
pub const ALIASES: &[&str] = &["kafka"];

/// One Kafka message: optional key, value, and the items it holds.
#[derive(Debug)]
struct Record {
    key: Option<String>,
    value: Bytes,
    items: u64,
}

/// How a batch is cut into keyed groups before encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Partitioning {
    None,
    ByTraceId,
    ByResource,
}

pub struct KafkaExporter {
    id: String,
    producer: FutureProducer,
    /// Topic and encoding of metrics, traces, logs (in `Signal` order).
    targets: [SignalTarget; 3],
    partition_traces_by_id: bool,
    partition_metrics_by_resource: bool,
    partition_logs_by_resource: bool,
    max_message_bytes: usize,
}

fn signal_index(signal: Signal) -> usize {
    match signal {
        Signal::Metrics => 0,
        Signal::Traces => 1,
        Signal::Logs => 2,
    }
}

impl KafkaExporter {
    /// Builds the producer (librdkafka connects in the background). One exporter serves
    /// every signal; each batch goes to its signal's topic.
    pub fn new(id: &str, config: &Config) -> Result<KafkaExporter, String> {
        let target = |signal| config.target(signal).map_err(|e| format!("{id}: {e}"));
        let targets = [
            target(Signal::Metrics)?,
            target(Signal::Traces)?,
            target(Signal::Logs)?,
        ];
        let mut client = rdkafka::ClientConfig::new();
        for (name, value) in config.producer_properties() {
            client.set(name, value);
        }
        let producer: FutureProducer = client
            .create()
            .map_err(|e| format!("{id}: cannot create the Kafka producer: {e}"))?;
        Ok(KafkaExporter {
            id: id.to_string(),
            producer,
            targets,
            partition_traces_by_id: config.partition_traces_by_id,
            partition_metrics_by_resource: config.partition_metrics_by_resource_attributes,
            partition_logs_by_resource: config.partition_logs_by_resource_attributes,
            max_message_bytes: config.producer.max_message_bytes,
        })
    }

    fn partitioning(&self, signal: Signal) -> Partitioning {
        match signal {
            Signal::Traces if self.partition_traces_by_id => Partitioning::ByTraceId,
            Signal::Metrics if self.partition_metrics_by_resource => Partitioning::ByResource,
            Signal::Logs if self.partition_logs_by_resource => Partitioning::ByResource,
            _ => Partitioning::None,
        }
    }

    /// The messages of one batch, in order.
    fn records(&self, batch: Batch) -> Result<Vec<Record>, String> {
        let signal = batch.signal();
        let encoding = self.targets[signal_index(signal)].encoding;
        let groups = partition(batch, self.partitioning(signal)).map_err(|e| e.to_string())?;
        let mut records = Vec::new();
        for (key, group) in groups {
            fit(group, encoding, self.max_message_bytes, &key, &mut records)?;
        }
        Ok(records)
    }
}

impl Exporter for KafkaExporter {
    fn export(&self, batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>> {
        Box::pin(async move {
            let topic = &self.targets[signal_index(batch.signal())].topic;
            let records = self
                .records(batch)
                .map_err(|reason| ExportError::Permanent {
                    reason: format!("{}: cannot encode the batch: {reason}", self.id),
                })?;
            let mut deliveries = Vec::with_capacity(records.len());
            for record in &records {
                let mut message =
                    FutureRecord::<str, [u8]>::to(topic).payload(record.value.as_ref());
                if let Some(key) = &record.key {
                    message = message.key(key.as_str());
                }
                // `send` waits for room in librdkafka's local queue (bounded), then for
                // the delivery report.
                deliveries.push(self.producer.send(message, Duration::from_secs(5)));
            }
            let results = futures::future::join_all(deliveries).await;
            let mut rejected = 0u64;
            let mut permanent = Vec::new();
            for (result, record) in results.into_iter().zip(&records) {
                if let Err((error, _)) = result {
                    match classify(&error) {
                        ExportError::Retryable { reason, after } => {
                            return Err(ExportError::Retryable {
                                reason: format!("{}: topic {}: {reason}", self.id, topic),
                                after,
                            });
                        }
                        ExportError::Permanent { reason } => {
                            rejected += record.items;
                            permanent.push(reason);
                        }
                    }
                }
            }
            if permanent.len() == records.len() && !records.is_empty() {
                return Err(ExportError::Permanent {
                    reason: format!("{}: topic {}: {}", self.id, topic, permanent[0]),
                });
            }
            Ok(ExportOutcome {
                rejected,
                message: permanent.first().cloned().unwrap_or_default(),
            })
        })
    }
}

/// Whether a produce error is worth retrying: broker-side refusals of the data itself,
/// authorization and configuration errors are permanent; everything else (timeouts,
/// unreachable brokers, leader changes, a full local queue) is retried.
pub fn classify(error: &KafkaError) -> ExportError {
    let reason = error.to_string();
    let permanent = matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::UnsupportedCompressionType
        )
    );
    if permanent {
        ExportError::Permanent { reason }
    } else {
        ExportError::Retryable {
            reason,
            after: None,
        }
    }
}

/// Cuts a batch into (key, batch) groups by the partitioning asked for. Without one, the
/// batch stays whole and undecoded.
fn partition(
    mut batch: Batch,
    partitioning: Partitioning,
) -> Result<Vec<(Option<String>, Batch)>, oxcol_core::batch::BatchError> {
    match (partitioning, batch.signal()) {
        (Partitioning::ByTraceId, Signal::Traces) => {
            let resources = std::mem::take(batch.traces_mut()?);
            Ok(group_by_trace_id(resources)
                .into_iter()
                .map(|(key, spans)| (Some(key), Batch::from_traces(spans)))
                .collect())
        }
        (Partitioning::ByResource, Signal::Metrics) => {
            let resources = std::mem::take(batch.metrics_mut()?);
            let mut groups: BTreeMap<String, Vec<ResourceMetrics>> = BTreeMap::new();
            for resource in resources {
                groups
                    .entry(resource_key(resource.resource.as_ref()))
                    .or_default()
                    .push(resource);
            }
            Ok(groups
                .into_iter()
                .map(|(key, r)| (Some(key), Batch::from_metrics(r)))
                .collect())
        }
        (Partitioning::ByResource, Signal::Logs) => {
            let resources = std::mem::take(batch.logs_mut()?);
            let mut groups: BTreeMap<String, Vec<ResourceLogs>> = BTreeMap::new();
            for resource in resources {
                groups
                    .entry(resource_key(resource.resource.as_ref()))
                    .or_default()
                    .push(resource);
            }
            Ok(groups
                .into_iter()
                .map(|(key, r)| (Some(key), Batch::from_logs(r)))
                .collect())
        }
        _ => Ok(vec![(None, batch)]),
    }
}

/// Spans regrouped per trace id (hex key), each keeping its resource and scope.
fn group_by_trace_id(resources: Vec<ResourceSpans>) -> BTreeMap<String, Vec<ResourceSpans>> {
    // Per trace: the (resource, scope) position its last span came from, and its spans.
    let mut groups: BTreeMap<String, ((usize, usize), Vec<ResourceSpans>)> = BTreeMap::new();
    for (r, resource) in resources.into_iter().enumerate() {
        for (s, scope) in resource.scope_spans.into_iter().enumerate() {
            for span in scope.spans {
                let key = hex(&span.trace_id);
                let (last, out) = groups
                    .entry(key)
                    .or_insert_with(|| ((usize::MAX, usize::MAX), Vec::new()));
                if last.0 != r {
                    out.push(ResourceSpans {
                        resource: resource.resource.clone(),
                        scope_spans: Vec::new(),
                        schema_url: resource.schema_url.clone(),
                    });
                }
                if *last != (r, s)
                    && let Some(current) = out.last_mut()
                {
                    current.scope_spans.push(ScopeSpans {
                        scope: scope.scope.clone(),
                        spans: Vec::new(),
                        schema_url: scope.schema_url.clone(),
                    });
                }
                *last = (r, s);
                if let Some(current) = out.last_mut().and_then(|r| r.scope_spans.last_mut()) {
                    current.spans.push(span);
                }
            }
        }
    }
    groups
        .into_iter()
        .map(|(key, (_, spans))| (key, spans))
        .collect()
}

/// The message key of a resource: FNV-1a (64 bit, hex) over its attributes sorted by
/// key, each as key and protobuf-encoded value. Stable across oxcol versions and
/// processes, so one resource always lands on one partition.
fn resource_key(resource: Option<&Resource>) -> String {
    let mut attributes: Vec<&KeyValue> = resource
        .map(|r| r.attributes.iter().collect())
        .unwrap_or_default();
    attributes.sort_by(|a, b| a.key.cmp(&b.key));
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for attribute in attributes {
        feed(attribute.key.as_bytes());
        feed(&[0]);
        if let Some(value) = &attribute.value {
            feed(&value.encode_to_vec());
        }
        feed(&[0xff]);
    }
    format!("{hash:016x}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Encodes `batch` into records of at most `max_bytes` each, halving it (between
/// resources, or items) while it is too large and can still be cut.
fn fit(
    mut batch: Batch,
    encoding: Encoding,
    max_bytes: usize,
    key: &Option<String>,
    out: &mut Vec<Record>,
) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    let items = batch.items();
    let value = encode(&mut batch, encoding)?;
    if value.len() <= max_bytes || items <= 1 {
        out.push(Record {
            key: key.clone(),
            value,
            items,
        });
        return Ok(());
    }
    let pieces = batch.split(items.div_ceil(2)).map_err(|e| e.to_string())?;
    if pieces.len() < 2 {
        // Cannot be cut further: the broker refuses it and it is counted as rejected.
        out.push(Record {
            key: key.clone(),
            value,
            items,
        });
        return Ok(());
    }
    for piece in pieces {
        fit(piece, encoding, max_bytes, key, out)?;
    }
    Ok(())
}

/// The message value of a batch.
pub fn encode(batch: &mut Batch, encoding: Encoding) -> Result<Bytes, String> {
    match encoding {
        Encoding::OtlpProto => Ok(batch.to_bytes()),
        Encoding::OtlpJson => crate::otlp_json::encode(batch),
    }
}
