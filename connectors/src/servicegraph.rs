//! The `servicegraph` connector (traces -> metrics): joins client and server spans of one
//! call (the client/producer span's id is the server/consumer span's parent id) into an
//! edge `client -> server`, and counts requests, failed requests and both sides' latency
//! per edge, emitted every `metrics_flush_interval` as the Collector's
//! `traces_service_graph_*` metrics (cumulative).
//!
//! Half-open edges wait in a bounded store (`store.max_items`); spans arriving when it is
//! full are dropped and counted, and edges still unpaired after `store.ttl` are expired
//! and counted. A client span with a database name attribute (`db.name` by default) is an
//! edge to that database on its own. Series are bounded by [`MAX_SERIES`]; series not
//! updated for `cache_loop` are forgotten.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint, Sum, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use oxcol_core::telemetry::Counter;
use oxcol_core::{Batch, GoDuration, Refusal, Signal};
use serde::Deserialize;

use crate::helper::attributes;
use crate::helper::connector::{
    Connector, Output, decoded_traces, resource_metrics, service_of, unix_nanos,
};

pub const TYPE: &str = "servicegraph";
pub const ALIASES: &[&str] = &["servicegraph"];
pub const PAIRS: &[(Signal, Signal)] = &[(Signal::Traces, Signal::Metrics)];
pub const SCOPE_NAME: &str = "traces_service_graph";
/// Series (edges with their dimensions) held at most; new series beyond are dropped and
/// counted (oxcol's bound; the Collector has none).
pub const MAX_SERIES: usize = 10_000;

pub const REQUEST_TOTAL: &str = "traces_service_graph_request_total";
pub const REQUEST_FAILED_TOTAL: &str = "traces_service_graph_request_failed_total";
pub const REQUEST_SERVER: &str = "traces_service_graph_request_server";
pub const REQUEST_CLIENT: &str = "traces_service_graph_request_client";

const DEFAULT_BUCKETS_SECONDS: &[f64] = &[
    0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0,
];

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub ttl: GoDuration,
    pub max_items: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            ttl: GoDuration::from_secs(2),
            max_items: 1000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Latency buckets; empty: the Collector's default (2ms .. 15s).
    pub latency_histogram_buckets: Vec<GoDuration>,
    pub dimensions: Vec<String>,
    pub store: StoreConfig,
    pub cache_loop: GoDuration,
    pub store_expiration_loop: GoDuration,
    /// Used by the Collector only behind its `connector.servicegraph.virtualNode` feature
    /// gate (off by default); accepted, and without effect, as there.
    pub virtual_node_peer_attributes: Vec<String>,
    pub database_name_attributes: Vec<String>,
    /// 0: emit after every batch.
    pub metrics_flush_interval: GoDuration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            latency_histogram_buckets: Vec::new(),
            dimensions: Vec::new(),
            store: StoreConfig::default(),
            cache_loop: GoDuration::from_secs(60),
            store_expiration_loop: GoDuration::from_secs(2),
            virtual_node_peer_attributes: vec![
                "peer.service".into(),
                "db.name".into(),
                "db.system".into(),
            ],
            database_name_attributes: vec!["db.name".into()],
            metrics_flush_interval: GoDuration::from_secs(60),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.store.max_items == 0 {
            problems.push("store.max_items must be positive (the default is 1000)".to_string());
        }
        if self.store.ttl.is_zero() {
            problems.push("store.ttl must be positive (the default is 2s)".to_string());
        }
        if self.store_expiration_loop.is_zero() {
            problems.push("store_expiration_loop must be positive (the default is 2s)".to_string());
        }
        if self.cache_loop.is_zero() {
            problems.push("cache_loop must be positive (the default is 1m)".to_string());
        }
        if self
            .latency_histogram_buckets
            .windows(2)
            .any(|w| w[0] >= w[1])
        {
            problems.push("latency_histogram_buckets must be in increasing order".to_string());
        }
        problems
    }

    fn bounds(&self) -> Vec<f64> {
        if self.latency_histogram_buckets.is_empty() {
            DEFAULT_BUCKETS_SECONDS.to_vec()
        } else {
            self.latency_histogram_buckets
                .iter()
                .map(|d| d.get().as_secs_f64())
                .collect()
        }
    }
}

/// The connector's own counters (self-telemetry, the Collector's names are in the doc).
#[derive(Clone, Debug, Default)]
pub struct EdgeCounters {
    /// Edges completed (client and server joined, or a database call).
    pub total_edges: Counter,
    /// Edges expired unpaired after `store.ttl`.
    pub expired_edges: Counter,
    /// Spans dropped because the store was full.
    pub dropped_spans: Counter,
    /// New series dropped because [`MAX_SERIES`] was reached.
    pub dropped_series: Counter,
}

/// One side of an edge.
#[derive(Clone, Debug, Default)]
struct Side {
    service: String,
    latency_seconds: f64,
    failed: bool,
    dimensions: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
struct Edge {
    client: Option<Side>,
    server: Option<Side>,
    connection_type: &'static str,
    created: SystemTime,
}

struct Series {
    attributes: Vec<KeyValue>,
    total: u64,
    failed: u64,
    server: (u64, f64, Vec<u64>),
    client: (u64, f64, Vec<u64>),
    updated: SystemTime,
}

pub struct ServiceGraphConnector {
    config: Config,
    bounds: Vec<f64>,
    store: HashMap<(Vec<u8>, Vec<u8>), Edge>,
    series: BTreeMap<Vec<(String, String)>, Series>,
    counters: EdgeCounters,
    start: SystemTime,
    last_flush: Option<SystemTime>,
    last_clean: Option<SystemTime>,
}

fn seconds(span: &Span) -> f64 {
    Duration::from_nanos(
        span.end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano),
    )
    .as_secs_f64()
}

fn failed(span: &Span) -> bool {
    span.status
        .as_ref()
        .is_some_and(|s| s.code == status::StatusCode::Error as i32)
}

impl ServiceGraphConnector {
    pub fn new(config: &Config, counters: EdgeCounters, now: SystemTime) -> ServiceGraphConnector {
        ServiceGraphConnector {
            bounds: config.bounds(),
            config: config.clone(),
            store: HashMap::new(),
            series: BTreeMap::new(),
            counters,
            start: now,
            last_flush: None,
            last_clean: None,
        }
    }

    fn side(&self, service: &str, span: &Span, resource: &[KeyValue]) -> Side {
        let dimensions = self
            .config
            .dimensions
            .iter()
            .filter_map(|d| {
                attributes::find_in(&[&span.attributes, resource], d)
                    .map(|v| (d.clone(), attributes::as_string(v)))
            })
            .collect();
        Side {
            service: service.to_string(),
            latency_seconds: seconds(span),
            failed: failed(span),
            dimensions,
        }
    }

    fn on_span(&mut self, service: &str, span: &Span, resource: &[KeyValue], now: SystemTime) {
        let kind = span::SpanKind::try_from(span.kind).unwrap_or(span::SpanKind::Unspecified);
        let (key, is_client, connection_type) = match kind {
            span::SpanKind::Client => ((span.trace_id.clone(), span.span_id.clone()), true, ""),
            span::SpanKind::Producer => (
                (span.trace_id.clone(), span.span_id.clone()),
                true,
                "messaging_system",
            ),
            span::SpanKind::Server => (
                (span.trace_id.clone(), span.parent_span_id.clone()),
                false,
                "",
            ),
            span::SpanKind::Consumer => (
                (span.trace_id.clone(), span.parent_span_id.clone()),
                false,
                "messaging_system",
            ),
            _ => return,
        };
        let side = self.side(service, span, resource);
        if is_client && kind == span::SpanKind::Client {
            // A database call has no server span: the database is the server.
            if let Some(database) = self
                .config
                .database_name_attributes
                .iter()
                .find_map(|a| attributes::find_in(&[&span.attributes, resource], a))
            {
                let server = Side {
                    service: attributes::as_string(database),
                    latency_seconds: side.latency_seconds,
                    failed: side.failed,
                    dimensions: Vec::new(),
                };
                self.complete(
                    Edge {
                        client: Some(side),
                        server: Some(server),
                        connection_type: "database",
                        created: now,
                    },
                    now,
                );
                return;
            }
        }
        let edge = match self.store.remove(&key) {
            Some(edge) => edge,
            None => {
                if self.store.len() >= self.config.store.max_items {
                    self.counters.dropped_spans.add(1);
                    return;
                }
                Edge {
                    client: None,
                    server: None,
                    connection_type,
                    created: now,
                }
            }
        };
        let mut edge = edge;
        if is_client {
            edge.client = Some(side);
        } else {
            edge.server = Some(side);
        }
        if !connection_type.is_empty() {
            edge.connection_type = connection_type;
        }
        if edge.client.is_some() && edge.server.is_some() {
            self.complete(edge, now);
        } else {
            self.store.insert(key, edge);
        }
    }

    fn complete(&mut self, edge: Edge, now: SystemTime) {
        let (Some(client), Some(server)) = (edge.client, edge.server) else {
            return;
        };
        self.counters.total_edges.add(1);
        let mut labels = vec![
            attributes::string("client", client.service.clone()),
            attributes::string("server", server.service.clone()),
            attributes::string("connection_type", edge.connection_type),
        ];
        for (name, value) in &client.dimensions {
            labels.push(attributes::string(&format!("client_{name}"), value.clone()));
        }
        for (name, value) in &server.dimensions {
            labels.push(attributes::string(&format!("server_{name}"), value.clone()));
        }
        let key = attributes::set_key(&labels);
        if !self.series.contains_key(&key) && self.series.len() >= MAX_SERIES {
            self.counters.dropped_series.add(1);
            return;
        }
        let buckets = self.bounds.len() + 1;
        let series = self.series.entry(key).or_insert_with(|| Series {
            attributes: labels,
            total: 0,
            failed: 0,
            server: (0, 0.0, vec![0; buckets]),
            client: (0, 0.0, vec![0; buckets]),
            updated: now,
        });
        series.updated = now;
        series.total += 1;
        if client.failed || server.failed {
            series.failed += 1;
        }
        for (histogram, value) in [
            (&mut series.server, server.latency_seconds),
            (&mut series.client, client.latency_seconds),
        ] {
            histogram.0 += 1;
            histogram.1 += value;
            let bucket = self.bounds.partition_point(|bound| *bound < value);
            if let Some(slot) = histogram.2.get_mut(bucket) {
                *slot += 1;
            }
        }
    }

    /// Expires edges older than `store.ttl`.
    fn expire(&mut self, now: SystemTime) {
        let ttl = self.config.store.ttl.get();
        let before = self.store.len();
        self.store.retain(|_, edge| {
            now.duration_since(edge.created)
                .map(|age| age < ttl)
                .unwrap_or(true)
        });
        self.counters
            .expired_edges
            .add((before - self.store.len()) as u64);
    }

    fn metrics(&self, now: SystemTime) -> Vec<Output> {
        if self.series.is_empty() {
            return Vec::new();
        }
        let start = unix_nanos(self.start);
        let time = unix_nanos(now);
        let cumulative = AggregationTemporality::Cumulative as i32;
        let sum = |name: &str, value: fn(&Series) -> u64| Metric {
            name: name.to_string(),
            data: Some(metric::Data::Sum(Sum {
                data_points: self
                    .series
                    .values()
                    .filter(|s| value(s) > 0 || name == REQUEST_TOTAL)
                    .map(|s| NumberDataPoint {
                        attributes: s.attributes.clone(),
                        start_time_unix_nano: start,
                        time_unix_nano: time,
                        value: Some(number_data_point::Value::AsInt(value(s) as i64)),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: cumulative,
                is_monotonic: true,
            })),
            ..Default::default()
        };
        let histogram = |name: &str, side: fn(&Series) -> &(u64, f64, Vec<u64>)| Metric {
            name: name.to_string(),
            unit: "s".to_string(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: self
                    .series
                    .values()
                    .map(|s| {
                        let (count, sum, buckets) = side(s);
                        HistogramDataPoint {
                            attributes: s.attributes.clone(),
                            start_time_unix_nano: start,
                            time_unix_nano: time,
                            count: *count,
                            sum: Some(*sum),
                            bucket_counts: buckets.clone(),
                            explicit_bounds: self.bounds.clone(),
                            ..Default::default()
                        }
                    })
                    .collect(),
                aggregation_temporality: cumulative,
            })),
            ..Default::default()
        };
        let mut metrics = vec![sum(REQUEST_TOTAL, |s| s.total)];
        let failed = sum(REQUEST_FAILED_TOTAL, |s| s.failed);
        if matches!(&failed.data, Some(metric::Data::Sum(s)) if !s.data_points.is_empty()) {
            metrics.push(failed);
        }
        metrics.push(histogram(REQUEST_SERVER, |s| &s.server));
        metrics.push(histogram(REQUEST_CLIENT, |s| &s.client));
        let resource_metrics = resource_metrics(Vec::new(), SCOPE_NAME, metrics);
        vec![Output::all(Batch::from_metrics(vec![resource_metrics]))]
    }

    /// Edges waiting for their other side.
    pub fn pending_edges(&self) -> usize {
        self.store.len()
    }
}

impl Connector for ServiceGraphConnector {
    fn consume(&mut self, mut batch: Batch, now: SystemTime) -> Result<Vec<Output>, Refusal> {
        let resources = decoded_traces(&mut batch, "servicegraph")?;
        for resource in resources {
            // As the Collector: spans of a resource without service.name are skipped.
            let Some((resource_attributes, service)) = service_of(resource) else {
                continue;
            };
            for scope in &resource.scope_spans {
                for span in &scope.spans {
                    self.on_span(&service, span, resource_attributes, now);
                }
            }
        }
        if self.config.metrics_flush_interval.is_zero() {
            return Ok(self.metrics(now));
        }
        Ok(Vec::new())
    }

    fn tick_interval(&self) -> Option<Duration> {
        let expiration = self.config.store_expiration_loop.get();
        let flush = self.config.metrics_flush_interval.get();
        Some(if flush.is_zero() {
            expiration
        } else {
            expiration.min(flush)
        })
    }

    fn tick(&mut self, now: SystemTime) -> Vec<Output> {
        self.expire(now);
        let due = |last: Option<SystemTime>, every: Duration| {
            last.is_none_or(|t| now.duration_since(t).map(|d| d >= every).unwrap_or(false))
        };
        if due(self.last_clean, self.config.cache_loop.get()) {
            let cache_loop = self.config.cache_loop.get();
            if self.last_clean.is_some() {
                self.series.retain(|_, s| {
                    now.duration_since(s.updated)
                        .map(|age| age < cache_loop)
                        .unwrap_or(true)
                });
            }
            self.last_clean = Some(now);
        }
        let flush = self.config.metrics_flush_interval.get();
        if flush.is_zero() || !due(self.last_flush, flush) {
            return Vec::new();
        }
        self.last_flush = Some(now);
        self.metrics(now)
    }

    fn shutdown(&mut self, now: SystemTime) -> Vec<Output> {
        self.metrics(now)
    }
}

#[cfg(test)]
mod tests;
