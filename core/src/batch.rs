//! The batch that flows through a pipeline: OTLP data of one signal, kept as the encoded
//! `Export*ServiceRequest` bytes it arrived in for as long as nobody reads it, decoded into
//! the prost types only when a processor or exporter asks.
//!
//! Protobuf repeated fields concatenate, so several encoded requests appended byte for
//! byte are one valid request holding all their resources. Batching and fan-out therefore
//! only collect `Bytes` handles (reference-counted, no copy); the one copy happens when an
//! exporter writes the request into its send buffer.
//!
//! This module must never decode data that no one reads, and never lose the item count.

use bytes::{BufMut, Bytes, BytesMut};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;

use std::sync::Arc;

use crate::client::{Metadata, same_metadata};
use crate::signal::Signal;
use crate::skeleton::{self, WireError};

/// How an exporter queue groups batches before sending (set by the `batch` processor of
/// the pipelines that feed it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchSettings {
    /// Items that make a batch ready to send.
    pub send_batch_size: u64,
    /// Upper bound of one sent batch; 0 = no bound.
    pub send_batch_max_size: u64,
    /// Longest wait for a batch to fill; zero merges only what is already queued.
    pub timeout: std::time::Duration,
    /// Client metadata keys (lower-cased): batches are formed per distinct combination of
    /// their values, each carrying only these keys. Empty = one group.
    pub metadata_keys: Vec<String>,
    /// Most distinct combinations over the life of the queue; 0 = no limit.
    pub metadata_cardinality_limit: u64,
}

/// The data of a batch, encoded or decoded.
#[derive(Clone, Debug)]
pub enum Data {
    /// Encoded request segments; their concatenation is one valid export request.
    Encoded(Vec<Bytes>),
    Metrics(Vec<ResourceMetrics>),
    Traces(Vec<ResourceSpans>),
    Logs(Vec<ResourceLogs>),
}

/// OTLP data of one signal with its item count (points, spans or log records).
#[derive(Clone, Debug)]
pub struct Batch {
    signal: Signal,
    data: Data,
    items: u64,
    /// IP address of the client that sent the data (the peer of an OTLP connection), when
    /// the receiver knows it; kept by `append` only while every part came from that client.
    /// `k8sattributes` reads it for its `connection` pod association.
    client_addr: Option<std::net::IpAddr>,
    /// Client request metadata (receivers with `include_metadata: true`), shared by the
    /// batches of one request or one `metadata_keys` partition; None when not kept. Kept
    /// by `append` only while every part has the same.
    metadata: Option<Arc<Metadata>>,
}

impl Batch {
    /// An empty batch of `signal`.
    pub fn empty(signal: Signal) -> Batch {
        Batch {
            signal,
            data: Data::Encoded(Vec::new()),
            items: 0,
            client_addr: None,
            metadata: None,
        }
    }

    /// Wraps an encoded export request, counting its items with the skeleton scan
    /// (which also checks its framing).
    pub fn from_encoded(signal: Signal, bytes: Bytes) -> Result<Batch, WireError> {
        let items = skeleton::count_items(signal, &bytes)?;
        Ok(Batch::from_encoded_counted(signal, bytes, items))
    }

    /// Wraps an encoded request whose item count is already known.
    pub fn from_encoded_counted(signal: Signal, bytes: Bytes, items: u64) -> Batch {
        Batch {
            signal,
            data: encoded_data(bytes),
            items,
            client_addr: None,
            metadata: None,
        }
    }

    pub fn from_metrics(resource_metrics: Vec<ResourceMetrics>) -> Batch {
        let items = resource_metrics.iter().map(count_metric_points).sum();
        Batch {
            signal: Signal::Metrics,
            data: Data::Metrics(resource_metrics),
            items,
            client_addr: None,
            metadata: None,
        }
    }

    pub fn from_traces(resource_spans: Vec<ResourceSpans>) -> Batch {
        let items = resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum();
        Batch {
            signal: Signal::Traces,
            data: Data::Traces(resource_spans),
            items,
            client_addr: None,
            metadata: None,
        }
    }

    pub fn from_logs(resource_logs: Vec<ResourceLogs>) -> Batch {
        let items = resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len() as u64)
            .sum();
        Batch {
            signal: Signal::Logs,
            data: Data::Logs(resource_logs),
            items,
            client_addr: None,
            metadata: None,
        }
    }

    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// IP address of the client that sent this data, when known (see the field).
    pub fn client_addr(&self) -> Option<std::net::IpAddr> {
        self.client_addr
    }

    /// Records the client that sent this data (receivers that know their peer).
    pub fn set_client_addr(&mut self, addr: Option<std::net::IpAddr>) {
        self.client_addr = addr;
    }

    /// The client request metadata, when a receiver kept it (see the field).
    pub fn metadata(&self) -> Option<&Arc<Metadata>> {
        self.metadata.as_ref()
    }

    /// Attaches client request metadata (receivers with `include_metadata`, partitions).
    pub fn set_metadata(&mut self, metadata: Option<Arc<Metadata>>) {
        self.metadata = metadata;
    }

    /// Items: data points, spans or log records.
    pub fn items(&self) -> u64 {
        self.items
    }

    pub fn is_empty(&self) -> bool {
        match &self.data {
            Data::Encoded(segments) => segments.is_empty(),
            Data::Metrics(v) => v.is_empty(),
            Data::Traces(v) => v.is_empty(),
            Data::Logs(v) => v.is_empty(),
        }
    }

    pub fn data(&self) -> &Data {
        &self.data
    }

    /// Size of the encoded request in bytes (computed for decoded data).
    pub fn encoded_len(&self) -> usize {
        match &self.data {
            Data::Encoded(segments) => segments.iter().map(Bytes::len).sum(),
            Data::Metrics(v) => v
                .iter()
                .map(|r| prost::encoding::message::encoded_len(1, r))
                .sum(),
            Data::Traces(v) => v
                .iter()
                .map(|r| prost::encoding::message::encoded_len(1, r))
                .sum(),
            Data::Logs(v) => v
                .iter()
                .map(|r| prost::encoding::message::encoded_len(1, r))
                .sum(),
        }
    }

    /// Appends `other` (same signal) to this batch. Encoded + encoded stays encoded and
    /// copies nothing; if either side is decoded, the result is decoded.
    pub fn append(&mut self, other: Batch) -> Result<(), BatchError> {
        if other.signal != self.signal {
            return Err(BatchError::SignalMismatch {
                expected: self.signal,
                found: other.signal,
            });
        }
        if self.is_empty() && self.items == 0 {
            self.client_addr = other.client_addr;
            self.metadata = other.metadata;
        } else {
            if self.client_addr != other.client_addr {
                self.client_addr = None;
            }
            if !same_metadata(&self.metadata, &other.metadata) {
                self.metadata = None;
            }
        }
        self.items += other.items;
        match (&mut self.data, other.data) {
            (Data::Encoded(mine), Data::Encoded(theirs)) => mine.extend(theirs),
            (_, other_data) => {
                self.decode()?;
                let mut other_batch = Batch {
                    signal: other.signal,
                    data: other_data,
                    items: 0,
                    client_addr: None,
                    metadata: None,
                };
                other_batch.decode()?;
                match (&mut self.data, other_batch.data) {
                    (Data::Metrics(a), Data::Metrics(b)) => a.extend(b),
                    (Data::Traces(a), Data::Traces(b)) => a.extend(b),
                    (Data::Logs(a), Data::Logs(b)) => a.extend(b),
                    _ => unreachable!("decode() yields the data variant of the batch's signal"),
                }
            }
        }
        Ok(())
    }

    /// Decodes the data into prost types in place (no-op when already decoded).
    pub fn decode(&mut self) -> Result<(), BatchError> {
        let Data::Encoded(segments) = &self.data else {
            return Ok(());
        };
        let joined = join_segments(segments);
        self.data = match self.signal {
            Signal::Metrics => {
                Data::Metrics(ExportMetricsServiceRequest::decode(joined)?.resource_metrics)
            }
            Signal::Traces => {
                Data::Traces(ExportTraceServiceRequest::decode(joined)?.resource_spans)
            }
            Signal::Logs => Data::Logs(ExportLogsServiceRequest::decode(joined)?.resource_logs),
        };
        Ok(())
    }

    /// Mutable access to decoded metrics (decodes first). Callers that change the number
    /// of points must call [`Batch::recount`] afterwards.
    pub fn metrics_mut(&mut self) -> Result<&mut Vec<ResourceMetrics>, BatchError> {
        if self.signal != Signal::Metrics {
            return Err(BatchError::SignalMismatch {
                expected: Signal::Metrics,
                found: self.signal,
            });
        }
        self.decode()?;
        match &mut self.data {
            Data::Metrics(v) => Ok(v),
            _ => unreachable!("decode() of a metrics batch yields Data::Metrics"),
        }
    }

    /// Mutable access to decoded spans (decodes first). Callers that change the number
    /// of spans must call [`Batch::recount`] afterwards.
    pub fn traces_mut(&mut self) -> Result<&mut Vec<ResourceSpans>, BatchError> {
        if self.signal != Signal::Traces {
            return Err(BatchError::SignalMismatch {
                expected: Signal::Traces,
                found: self.signal,
            });
        }
        self.decode()?;
        match &mut self.data {
            Data::Traces(v) => Ok(v),
            _ => unreachable!("decode() of a traces batch yields Data::Traces"),
        }
    }

    /// Mutable access to decoded log records (decodes first). Callers that change the
    /// number of records must call [`Batch::recount`] afterwards.
    pub fn logs_mut(&mut self) -> Result<&mut Vec<ResourceLogs>, BatchError> {
        if self.signal != Signal::Logs {
            return Err(BatchError::SignalMismatch {
                expected: Signal::Logs,
                found: self.signal,
            });
        }
        self.decode()?;
        match &mut self.data {
            Data::Logs(v) => Ok(v),
            _ => unreachable!("decode() of a logs batch yields Data::Logs"),
        }
    }

    /// Recomputes the item count from decoded data.
    pub fn recount(&mut self) {
        self.items = match &self.data {
            Data::Encoded(segments) => segments
                .iter()
                .map(|s| skeleton::count_items(self.signal, s).unwrap_or(0))
                .sum(),
            Data::Metrics(v) => v.iter().map(count_metric_points).sum(),
            Data::Traces(v) => v
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len() as u64)
                .sum(),
            Data::Logs(v) => v
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len() as u64)
                .sum(),
        };
    }

    /// Writes the encoded export request into `buf`.
    pub fn encode_into(&self, buf: &mut impl BufMut) {
        match &self.data {
            Data::Encoded(segments) => {
                for segment in segments {
                    buf.put_slice(segment);
                }
            }
            // Measured once and then written (crate::otlp_encode), not re-measured at
            // every level as prost does; one copy of the bytes is cheaper than that.
            Data::Metrics(v) => buf.put_slice(&crate::otlp_encode::metrics_request(v)),
            Data::Traces(v) => buf.put_slice(&crate::otlp_encode::traces_request(v)),
            Data::Logs(v) => buf.put_slice(&crate::otlp_encode::logs_request(v)),
        }
    }

    /// Replaces decoded data with its encoding, so that clones of the batch share one
    /// buffer; encoded data is left as it is. Items and signal do not change.
    pub fn encode_in_place(&mut self) {
        if !matches!(self.data, Data::Encoded(_)) {
            self.data = encoded_data(self.to_bytes());
        }
    }

    /// The encoded export request as one contiguous buffer (no copy when the batch is a
    /// single encoded segment).
    pub fn to_bytes(&self) -> Bytes {
        match &self.data {
            Data::Encoded(segments) if segments.len() == 1 => return segments[0].clone(),
            Data::Metrics(v) => return crate::otlp_encode::metrics_request(v),
            Data::Traces(v) => return crate::otlp_encode::traces_request(v),
            Data::Logs(v) => return crate::otlp_encode::logs_request(v),
            Data::Encoded(_) => {}
        }
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode_into(&mut buf);
        buf.freeze()
    }

    /// Splits into batches of at most `max_items` items each, cutting between resources
    /// (encoded data is cut by the skeleton scan without decoding). A single resource
    /// holding more than `max_items` is decoded and cut between scopes and items.
    pub fn split(self, max_items: u64) -> Result<Vec<Batch>, BatchError> {
        if max_items == 0 || self.items <= max_items {
            return Ok(vec![self]);
        }
        let signal = self.signal;
        let client_addr = self.client_addr;
        let metadata = self.metadata.clone();
        let mut out: Vec<Batch> = Vec::new();
        let mut current = Batch::empty(signal);
        let push =
            |piece: Batch, out: &mut Vec<Batch>, current: &mut Batch| -> Result<(), BatchError> {
                if current.items + piece.items > max_items && !current.is_empty() {
                    out.push(std::mem::replace(current, Batch::empty(signal)));
                }
                current.append(piece)?;
                Ok(())
            };
        match self.data {
            Data::Encoded(segments) => {
                for segment in segments {
                    for entry in skeleton::scan_request(signal, &segment)? {
                        let piece = Batch::from_encoded_counted(
                            signal,
                            segment.slice(entry.range.clone()),
                            entry.items,
                        );
                        if piece.items > max_items {
                            for small in split_decoded(piece, max_items)? {
                                push(small, &mut out, &mut current)?;
                            }
                        } else {
                            push(piece, &mut out, &mut current)?;
                        }
                    }
                }
            }
            data => {
                let decoded = Batch {
                    signal,
                    data,
                    items: self.items,
                    client_addr: None,
                    metadata: None,
                };
                for small in split_decoded(decoded, max_items)? {
                    push(small, &mut out, &mut current)?;
                }
            }
        }
        if !current.is_empty() {
            out.push(current);
        }
        for piece in &mut out {
            piece.client_addr = client_addr;
            piece.metadata = metadata.clone();
        }
        Ok(out)
    }
}

/// Splits decoded data item by item, keeping resource and scope with each part.
fn split_decoded(mut batch: Batch, max_items: u64) -> Result<Vec<Batch>, BatchError> {
    batch.decode()?;
    let max_items = max_items.max(1) as usize;
    let mut out = Vec::new();
    match batch.data {
        Data::Metrics(resources) => {
            let mut current: Vec<ResourceMetrics> = Vec::new();
            let mut current_items = 0usize;
            for resource in resources {
                for scope in &resource.scope_metrics {
                    for metric in &scope.metrics {
                        for chunk in split_metric(metric, max_items) {
                            let n = metric_points(&chunk);
                            if current_items + n > max_items && current_items > 0 {
                                out.push(Batch::from_metrics(std::mem::take(&mut current)));
                                current_items = 0;
                            }
                            push_metric(&mut current, &resource, scope, chunk);
                            current_items += n;
                        }
                    }
                }
            }
            if !current.is_empty() {
                out.push(Batch::from_metrics(current));
            }
        }
        Data::Traces(resources) => {
            for resource in resources {
                for scope in &resource.scope_spans {
                    for chunk in scope.spans.chunks(max_items) {
                        let mut r = resource.clone();
                        let mut s = scope.clone();
                        s.spans = chunk.to_vec();
                        r.scope_spans = vec![s];
                        out.push(Batch::from_traces(vec![r]));
                    }
                }
            }
        }
        Data::Logs(resources) => {
            for resource in resources {
                for scope in &resource.scope_logs {
                    for chunk in scope.log_records.chunks(max_items) {
                        let mut r = resource.clone();
                        let mut s = scope.clone();
                        s.log_records = chunk.to_vec();
                        r.scope_logs = vec![s];
                        out.push(Batch::from_logs(vec![r]));
                    }
                }
            }
        }
        Data::Encoded(_) => unreachable!("decoded above"),
    }
    Ok(out)
}

use opentelemetry_proto::tonic::metrics::v1::{Metric, ScopeMetrics, metric};

/// One encoded request as batch data: no segment when it is empty (an empty batch).
fn encoded_data(bytes: Bytes) -> Data {
    Data::Encoded(if bytes.is_empty() {
        Vec::new()
    } else {
        vec![bytes]
    })
}

/// Data points of one metric, whatever its type.
pub fn metric_points(metric: &Metric) -> usize {
    match &metric.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

fn count_metric_points(resource: &ResourceMetrics) -> u64 {
    resource
        .scope_metrics
        .iter()
        .flat_map(|s| &s.metrics)
        .map(|m| metric_points(m) as u64)
        .sum()
}

/// Cuts one metric into metrics of at most `max` points each (same name/unit/type).
fn split_metric(metric: &Metric, max: usize) -> Vec<Metric> {
    if metric_points(metric) <= max {
        return vec![metric.clone()];
    }
    let with = |data: metric::Data| Metric {
        data: Some(data),
        ..metric.clone()
    };
    match &metric.data {
        Some(metric::Data::Gauge(g)) => g
            .data_points
            .chunks(max)
            .map(|c| {
                with(metric::Data::Gauge(
                    opentelemetry_proto::tonic::metrics::v1::Gauge {
                        data_points: c.to_vec(),
                    },
                ))
            })
            .collect(),
        Some(metric::Data::Sum(s)) => s
            .data_points
            .chunks(max)
            .map(|c| {
                with(metric::Data::Sum(
                    opentelemetry_proto::tonic::metrics::v1::Sum {
                        data_points: c.to_vec(),
                        ..s.clone()
                    },
                ))
            })
            .collect(),
        Some(metric::Data::Histogram(h)) => h
            .data_points
            .chunks(max)
            .map(|c| {
                with(metric::Data::Histogram(
                    opentelemetry_proto::tonic::metrics::v1::Histogram {
                        data_points: c.to_vec(),
                        ..h.clone()
                    },
                ))
            })
            .collect(),
        Some(metric::Data::ExponentialHistogram(h)) => h
            .data_points
            .chunks(max)
            .map(|c| {
                with(metric::Data::ExponentialHistogram(
                    opentelemetry_proto::tonic::metrics::v1::ExponentialHistogram {
                        data_points: c.to_vec(),
                        ..h.clone()
                    },
                ))
            })
            .collect(),
        Some(metric::Data::Summary(s)) => s
            .data_points
            .chunks(max)
            .map(|c| {
                with(metric::Data::Summary(
                    opentelemetry_proto::tonic::metrics::v1::Summary {
                        data_points: c.to_vec(),
                    },
                ))
            })
            .collect(),
        None => vec![metric.clone()],
    }
}

/// Adds `metric` under (resource, scope) at the end of `out`, reusing the last
/// resource/scope entry when it is the same one.
fn push_metric(
    out: &mut Vec<ResourceMetrics>,
    resource: &ResourceMetrics,
    scope: &ScopeMetrics,
    metric: Metric,
) {
    let same_resource = out.last().is_some_and(|last| {
        last.resource == resource.resource && last.schema_url == resource.schema_url
    });
    if !same_resource {
        out.push(ResourceMetrics {
            resource: resource.resource.clone(),
            scope_metrics: Vec::new(),
            schema_url: resource.schema_url.clone(),
        });
    }
    let last = out.last_mut().expect("pushed above when missing");
    let same_scope = last
        .scope_metrics
        .last()
        .is_some_and(|s| s.scope == scope.scope && s.schema_url == scope.schema_url);
    if !same_scope {
        last.scope_metrics.push(ScopeMetrics {
            scope: scope.scope.clone(),
            metrics: Vec::new(),
            schema_url: scope.schema_url.clone(),
        });
    }
    last.scope_metrics
        .last_mut()
        .expect("pushed above when missing")
        .metrics
        .push(metric);
}

fn join_segments(segments: &[Bytes]) -> Bytes {
    match segments.len() {
        0 => Bytes::new(),
        1 => segments[0].clone(),
        _ => {
            let mut buf = BytesMut::with_capacity(segments.iter().map(Bytes::len).sum());
            for s in segments {
                buf.put_slice(s);
            }
            buf.freeze()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("batch of {found} data given where {expected} was expected")]
    SignalMismatch { expected: Signal, found: Signal },
    #[error("cannot decode OTLP data: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error(transparent)]
    Wire(#[from] WireError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    fn encoded_metrics(r: usize, m: usize, p: usize) -> Batch {
        Batch::from_encoded(
            Signal::Metrics,
            testdata::metrics_request(r, m, p).encode_to_vec().into(),
        )
        .unwrap()
    }

    #[test]
    fn client_addr_survives_append_only_from_one_client_and_splits() {
        let one: std::net::IpAddr = [10, 0, 0, 1].into();
        let two: std::net::IpAddr = [10, 0, 0, 2].into();
        let from = |addr| {
            let mut batch = encoded_metrics(1, 1, 2);
            batch.set_client_addr(Some(addr));
            batch
        };
        let mut merged = Batch::empty(Signal::Metrics);
        merged.append(from(one)).unwrap();
        merged.append(from(one)).unwrap();
        assert_eq!(merged.client_addr(), Some(one));
        let pieces = merged.clone().split(2).unwrap();
        assert_eq!(pieces.len(), 2);
        assert!(pieces.iter().all(|p| p.client_addr() == Some(one)));
        merged.append(from(two)).unwrap();
        assert_eq!(merged.client_addr(), None, "two clients: no single address");
    }

    #[test]
    fn metadata_survives_append_only_when_every_part_agrees_and_splits() {
        let tenant = |name: &str| Some(Arc::new(Metadata::from_pairs([("X-Tenant", name)])));
        let from = |metadata: Option<Arc<Metadata>>| {
            let mut batch = encoded_metrics(1, 1, 2);
            batch.set_metadata(metadata);
            batch
        };
        let mut merged = Batch::empty(Signal::Metrics);
        merged.append(from(tenant("a"))).unwrap();
        // A different Arc with the same content agrees.
        merged.append(from(tenant("a"))).unwrap();
        assert_eq!(
            merged.metadata().and_then(|m| m.first("x-tenant")),
            Some("a")
        );
        let pieces = merged.clone().split(2).unwrap();
        assert_eq!(pieces.len(), 2);
        assert!(
            pieces
                .iter()
                .all(|p| p.metadata().and_then(|m| m.first("X-TENANT")) == Some("a"))
        );
        let mut mixed = merged.clone();
        mixed.append(from(tenant("b"))).unwrap();
        assert!(mixed.metadata().is_none(), "two tenants: no metadata");
        let mut partly = merged;
        partly.append(from(None)).unwrap();
        assert!(partly.metadata().is_none(), "a part without metadata: none");
        assert_eq!(partly.items(), 6);
    }

    #[test]
    fn append_of_encoded_batches_copies_nothing_and_keeps_counts() {
        let mut a = encoded_metrics(1, 2, 3);
        let b = encoded_metrics(2, 1, 1);
        a.append(b).unwrap();
        assert_eq!(a.items(), 8);
        assert!(matches!(a.data(), Data::Encoded(s) if s.len() == 2));
        let decoded = ExportMetricsServiceRequest::decode(a.to_bytes()).unwrap();
        assert_eq!(decoded.resource_metrics.len(), 3);
    }

    #[test]
    fn append_mixed_decodes_and_keeps_content() {
        let mut a = encoded_metrics(1, 2, 3);
        let b = Batch::from_metrics(testdata::metrics_request(1, 1, 2).resource_metrics);
        a.append(b).unwrap();
        assert_eq!(a.items(), 8);
        let Data::Metrics(resources) = a.data() else {
            panic!("expected decoded metrics")
        };
        assert_eq!(resources.len(), 2);
        assert!(a.append(Batch::empty(Signal::Logs)).is_err());
    }

    #[test]
    fn split_cuts_at_resources_and_inside_large_ones() {
        // 4 resources x 2 metrics x 5 points = 40 points, 10 per resource.
        let batch = encoded_metrics(4, 2, 5);
        let parts = batch.split(20).unwrap();
        assert_eq!(
            parts.iter().map(Batch::items).collect::<Vec<_>>(),
            vec![20, 20]
        );
        assert!(parts.iter().all(|p| matches!(p.data(), Data::Encoded(_))));

        // A limit below one resource's size cuts inside it.
        let parts = encoded_metrics(2, 2, 5).split(3).unwrap();
        assert!(
            parts.iter().all(|p| p.items() <= 3),
            "{:?}",
            parts.iter().map(Batch::items).collect::<Vec<_>>()
        );
        assert_eq!(parts.iter().map(Batch::items).sum::<u64>(), 20);
        // Every part's count matches its content.
        for part in parts {
            let counted = skeleton::count_items(Signal::Metrics, &part.to_bytes()).unwrap();
            assert_eq!(counted, part.items());
        }
    }

    #[test]
    fn split_traces_and_logs_keeps_every_item() {
        let spans = Batch::from_encoded(
            Signal::Traces,
            testdata::trace_request(2, 7).encode_to_vec().into(),
        )
        .unwrap();
        let parts = spans.split(3).unwrap();
        assert_eq!(parts.iter().map(Batch::items).sum::<u64>(), 14);
        assert!(parts.iter().all(|p| p.items() <= 3));
        let logs = Batch::from_logs(testdata::logs_request(1, 5).resource_logs);
        let parts = logs.split(2).unwrap();
        assert_eq!(
            parts.iter().map(Batch::items).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
    }
}
