//! Writes the smaps receiver's output as encoded OTLP protobuf directly: an
//! `ExportMetricsServiceRequest` with one `ResourceMetrics` per process, each rollup
//! field a gauge `Metric` with one integer point.
//!
//! Building those as `ResourceMetrics` objects took ~80 allocations per process (a name
//! `String`, a unit `String` and a point `Vec` per field, the resource attributes and
//! the scope) and about half of a scrape's instructions, building and dropping them
//! included. Here a field's name and unit are encoded once per collector, the resource
//! once per process identity, the scope once; a scrape allocates only its output.
//!
//! The bytes are what prost writes for the same objects (fields in tag order, proto3
//! defaults left out, the oneof value always written), so a decoder sees exactly the
//! `ResourceMetrics` the object-model builder ([`ResourceBuilder`]) gives; the tests
//! compare both, byte for byte.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::encoding::{encode_varint, encoded_len_varint};

use super::{SCOPE, parse};
use crate::cgroup::emit::ResourceBuilder;

/// Field keys (field number << 3 | wire type): 2 = length-delimited, 1 = 64-bit.
/// `ExportMetricsServiceRequest.resource_metrics` (1).
const REQUEST_RESOURCE_METRICS: u8 = 1 << 3 | 2;
/// `ResourceMetrics.resource` (1), `ScopeMetrics.scope` (1).
const RESOURCE_OR_SCOPE: u32 = 1;
/// `ResourceMetrics.scope_metrics` (2).
const RESOURCE_METRICS_SCOPE_METRICS: u8 = 2 << 3 | 2;
/// `ScopeMetrics.metrics` (2), as a field number for prost.
pub(super) const SCOPE_METRICS_METRICS: u32 = 2;
const SCOPE_METRICS_METRICS_KEY: u8 = 2 << 3 | 2;
/// `Metric.name` (1), `Metric.unit` (3), `Metric.gauge` (5).
const METRIC_NAME: u8 = 1 << 3 | 2;
const METRIC_UNIT: u8 = 3 << 3 | 2;
const METRIC_GAUGE: u8 = 5 << 3 | 2;
/// `Gauge.data_points` (1).
const GAUGE_DATA_POINTS: u8 = 1 << 3 | 2;
/// `NumberDataPoint.time_unix_nano` (3, fixed64), `NumberDataPoint.as_int` (6, sfixed64).
const POINT_TIME: u8 = 3 << 3 | 1;
const POINT_AS_INT: u8 = 6 << 3 | 1;

/// Every rollup value is in bytes.
const UNIT: &str = "By";

/// The rollup metrics: smaps field -> encoded metric head, learnt as fields appear.
#[derive(Default)]
pub(super) struct RollupMetrics {
    fields: Vec<RollupField>,
    /// The values of the metric being written: one, unless a metric name repeats on
    /// consecutive lines (the object-model builder then adds points to one metric).
    values: Vec<i64>,
}

struct RollupField {
    /// The smaps field name (`Pss_Anon`).
    field: Box<[u8]>,
    /// `Metric.name` and `Metric.unit`, encoded.
    head: Box<[u8]>,
    /// The index of the first field with the same metric name (two spellings that
    /// snake_case alike, `PssAnon` and `Pss_Anon`, are one metric).
    name: usize,
}

impl RollupMetrics {
    /// Appends a gauge `Metric` (as a `ScopeMetrics.metrics` field) per `Field: N kB`
    /// line of `rollup` to `out`, with points at `time_unix_nano`; returns the points.
    pub(super) fn write(&mut self, rollup: &[u8], time_unix_nano: u64, out: &mut Vec<u8>) -> u64 {
        let fields = &mut self.fields;
        let values = &mut self.values;
        values.clear();
        let mut current: Option<usize> = None;
        let mut points = 0;
        // Fields come in the same order in every rollup: look at the next known field
        // first, so a lookup is one comparison.
        let mut next = 0;
        parse::for_each_rollup_field(rollup, |field, bytes| {
            let index = match fields.get(next).filter(|known| &*known.field == field) {
                Some(_) => next,
                None => match fields.iter().position(|known| &*known.field == field) {
                    Some(index) => index,
                    None => learn(fields, field),
                },
            };
            next = index + 1;
            match current {
                Some(open) if fields[open].name == fields[index].name => {}
                Some(open) => {
                    gauge(&fields[open].head, values, time_unix_nano, out);
                    values.clear();
                    current = Some(index);
                }
                None => current = Some(index),
            }
            values.push(i64::try_from(bytes).unwrap_or(i64::MAX));
            points += 1;
        });
        if let Some(open) = current {
            gauge(&fields[open].head, values, time_unix_nano, out);
        }
        points
    }
}

/// Adds `field` to `fields` with its metric `process.smaps.<snake_case>`; returns its
/// index.
fn learn(fields: &mut Vec<RollupField>, field: &[u8]) -> usize {
    let name = format!("process.smaps.{}", parse::snake_case(field));
    let mut head = Vec::with_capacity(name.len() + UNIT.len() + 4);
    put_bytes(&mut head, METRIC_NAME, name.as_bytes());
    put_bytes(&mut head, METRIC_UNIT, UNIT.as_bytes());
    let index = fields.len();
    let name = fields
        .iter()
        .position(|known| known.head[..] == head[..])
        .unwrap_or(index);
    fields.push(RollupField {
        field: field.into(),
        head: head.into(),
        name,
    });
    index
}

/// One gauge `Metric` with a point per value, as a `ScopeMetrics.metrics` field. Points
/// carry only `time_unix_nano` (left out when 0, as proto3 does) and `as_int`.
fn gauge(head: &[u8], values: &[i64], time_unix_nano: u64, out: &mut Vec<u8>) {
    let point_len = if time_unix_nano != 0 { 9 } else { 0 } + 9;
    let gauge_len = values.len() * (1 + encoded_len_varint(point_len as u64) + point_len);
    let metric_len = head.len() + 1 + encoded_len_varint(gauge_len as u64) + gauge_len;
    out.push(SCOPE_METRICS_METRICS_KEY);
    encode_varint(metric_len as u64, out);
    out.extend_from_slice(head);
    out.push(METRIC_GAUGE);
    encode_varint(gauge_len as u64, out);
    for value in values {
        out.push(GAUGE_DATA_POINTS);
        encode_varint(point_len as u64, out);
        if time_unix_nano != 0 {
            out.push(POINT_TIME);
            out.extend_from_slice(&time_unix_nano.to_le_bytes());
        }
        out.push(POINT_AS_INT);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// A length-delimited field with a one-byte key.
fn put_bytes(out: &mut Vec<u8>, key: u8, bytes: &[u8]) {
    out.push(key);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// `ResourceMetrics.resource` with `attributes`, encoded (key included).
pub(super) fn resource(attributes: Vec<KeyValue>) -> Vec<u8> {
    let resource = Resource {
        attributes,
        ..Default::default()
    };
    let mut out = Vec::with_capacity(prost::encoding::message::encoded_len(
        RESOURCE_OR_SCOPE,
        &resource,
    ));
    prost::encoding::message::encode(RESOURCE_OR_SCOPE, &resource, &mut out);
    out
}

/// `ScopeMetrics.scope`, encoded (key included): the scope the object-model builder
/// gives the other receivers (name [`SCOPE`], the crate's version).
pub(super) fn scope() -> Vec<u8> {
    let built = ResourceBuilder::new(0, 0, 0).finish(Vec::new(), SCOPE);
    let mut out = Vec::new();
    if let Some(scope) = built.scope_metrics.first().and_then(|s| s.scope.as_ref()) {
        prost::encoding::message::encode(RESOURCE_OR_SCOPE, scope, &mut out);
    }
    out
}

/// Appends one `ResourceMetrics` as an `ExportMetricsServiceRequest.resource_metrics`
/// field: `resource` and `scope` (encoded fields, see [`resource`] and [`scope`]) and
/// `metrics` (encoded `ScopeMetrics.metrics` fields) in one `ScopeMetrics`.
pub(super) fn resource_metrics(resource: &[u8], scope: &[u8], metrics: &[u8], out: &mut Vec<u8>) {
    let scope_metrics_len = scope.len() + metrics.len();
    let resource_metrics_len =
        resource.len() + 1 + encoded_len_varint(scope_metrics_len as u64) + scope_metrics_len;
    // Exactly: the output is allocated at the last scrape's size, so a slack here would
    // double it (and copy it) at the last process.
    out.reserve(1 + encoded_len_varint(resource_metrics_len as u64) + resource_metrics_len);
    out.push(REQUEST_RESOURCE_METRICS);
    encode_varint(resource_metrics_len as u64, out);
    out.extend_from_slice(resource);
    out.push(RESOURCE_METRICS_SCOPE_METRICS);
    encode_varint(scope_metrics_len as u64, out);
    out.extend_from_slice(scope);
    out.extend_from_slice(metrics);
}
