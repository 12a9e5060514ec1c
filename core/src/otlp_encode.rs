//! OTLP export requests (metrics, traces, logs) encoded in two passes: the length of
//! every nested message is measured once, bottom up, and then the bytes are written.
//!
//! prost writes a nested message's length prefix by calling `encoded_len()` on it, and
//! that walks the whole subtree; so a key-value at depth 7 (request, resource metrics,
//! scope metrics, metric, sum, data point, key-value) is measured once per level above
//! it, and measuring was most of the encode of a decoded metrics batch (the gateway
//! benchmark's one encode, docs/benchmarks.md). Here the first pass records each nested
//! message's length in pre-order, and the second pass reads them back in the same order.
//!
//! The output is byte for byte prost's (fields in tag order, proto3 defaults left out,
//! oneof fields always written): `encodes_like_prost` pins that on random trees. Rare
//! leaf messages (histogram, exponential histogram and summary points, exemplars,
//! scopes, entity refs, span statuses) are measured and written by prost itself: they
//! are shallow.

use bytes::{BufMut, Bytes};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;
use prost::encoding::{encode_varint, encoded_len_varint};

/// The encoded `ExportMetricsServiceRequest` holding `resource_metrics`.
pub fn metrics_request(resource_metrics: &[ResourceMetrics]) -> Bytes {
    request(resource_metrics, resource_metrics_len, put_resource_metrics)
}

/// The encoded `ExportTraceServiceRequest` holding `resource_spans`.
pub fn traces_request(resource_spans: &[ResourceSpans]) -> Bytes {
    request(resource_spans, resource_spans_len, put_resource_spans)
}

/// The encoded `ExportLogsServiceRequest` holding `resource_logs`.
pub fn logs_request(resource_logs: &[ResourceLogs]) -> Bytes {
    request(resource_logs, resource_logs_len, put_resource_logs)
}

/// A request of one repeated field (tag 1) of resource-level messages.
fn request<T>(
    items: &[T],
    len: fn(&mut Vec<usize>, &T) -> usize,
    put: fn(&mut Writer, &T),
) -> Bytes {
    let mut lens = Vec::new();
    let total: usize = items
        .iter()
        .map(|item| nested(1, measure(&mut lens, |l| len(l, item))))
        .sum();
    let mut w = Writer {
        buf: Vec::with_capacity(total),
        lens: &lens,
        next: 0,
    };
    for item in items {
        w.message(1, |w| put(w, item));
    }
    debug_assert_eq!(w.buf.len(), total);
    Bytes::from(w.buf)
}

// --- pass 1: lengths -------------------------------------------------------------------

/// Records the body length of one nested message in pre-order (its slot first, then its
/// children's) and returns it.
fn measure(lens: &mut Vec<usize>, body: impl FnOnce(&mut Vec<usize>) -> usize) -> usize {
    let slot = lens.len();
    lens.push(0);
    let len = body(lens);
    lens[slot] = len;
    len
}

fn key_len(tag: u32) -> usize {
    encoded_len_varint(u64::from(tag << 3))
}

/// A length-delimited field: key, length, body.
fn nested(tag: u32, body: usize) -> usize {
    key_len(tag) + encoded_len_varint(body as u64) + body
}

fn string_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        nested(tag, s.len())
    }
}

fn varint_field_len(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value)
    }
}

/// A message prost measures and writes itself (shallow leaves).
fn prost_len(lens: &mut Vec<usize>, tag: u32, message: &impl Message) -> usize {
    nested(tag, measure(lens, |_| message.encoded_len()))
}

/// A resource-level message (`ResourceMetrics`, `ResourceSpans`, `ResourceLogs`):
/// resource (1), its scope-level messages (2), schema URL (3).
fn resource_level_len<S>(
    l: &mut Vec<usize>,
    resource: Option<&Resource>,
    scopes: &[S],
    scope_len: fn(&mut Vec<usize>, &S) -> usize,
    schema_url: &str,
) -> usize {
    let mut n = 0;
    if let Some(resource) = resource {
        n += nested(1, measure(l, |l| resource_len(l, resource)));
    }
    for scope in scopes {
        n += nested(2, measure(l, |l| scope_len(l, scope)));
    }
    n + string_len(3, schema_url)
}

/// A scope-level message (`ScopeMetrics`, `ScopeSpans`, `ScopeLogs`): scope (1), its
/// items (2), schema URL (3).
fn scope_level_len<I>(
    l: &mut Vec<usize>,
    scope: Option<&InstrumentationScope>,
    items: &[I],
    item_len: fn(&mut Vec<usize>, &I) -> usize,
    schema_url: &str,
) -> usize {
    let mut n = 0;
    if let Some(scope) = scope {
        n += prost_len(l, 1, scope);
    }
    for item in items {
        n += nested(2, measure(l, |l| item_len(l, item)));
    }
    n + string_len(3, schema_url)
}

fn resource_metrics_len(l: &mut Vec<usize>, rm: &ResourceMetrics) -> usize {
    resource_level_len(
        l,
        rm.resource.as_ref(),
        &rm.scope_metrics,
        scope_metrics_len,
        &rm.schema_url,
    )
}

fn scope_metrics_len(l: &mut Vec<usize>, sm: &ScopeMetrics) -> usize {
    scope_level_len(
        l,
        sm.scope.as_ref(),
        &sm.metrics,
        metric_len,
        &sm.schema_url,
    )
}

fn resource_spans_len(l: &mut Vec<usize>, rs: &ResourceSpans) -> usize {
    resource_level_len(
        l,
        rs.resource.as_ref(),
        &rs.scope_spans,
        scope_spans_len,
        &rs.schema_url,
    )
}

fn scope_spans_len(l: &mut Vec<usize>, ss: &ScopeSpans) -> usize {
    scope_level_len(l, ss.scope.as_ref(), &ss.spans, span_len, &ss.schema_url)
}

fn resource_logs_len(l: &mut Vec<usize>, rl: &ResourceLogs) -> usize {
    resource_level_len(
        l,
        rl.resource.as_ref(),
        &rl.scope_logs,
        scope_logs_len,
        &rl.schema_url,
    )
}

fn scope_logs_len(l: &mut Vec<usize>, sl: &ScopeLogs) -> usize {
    scope_level_len(
        l,
        sl.scope.as_ref(),
        &sl.log_records,
        log_record_len,
        &sl.schema_url,
    )
}

fn resource_len(l: &mut Vec<usize>, resource: &Resource) -> usize {
    let mut n = key_values_len(l, 1, &resource.attributes);
    n += varint_field_len(2, u64::from(resource.dropped_attributes_count));
    for entity in &resource.entity_refs {
        n += prost_len(l, 3, entity);
    }
    n
}

fn fixed_len(tag: u32, value: u64, width: usize) -> usize {
    if value == 0 { 0 } else { key_len(tag) + width }
}

fn bytes_len(tag: u32, b: &[u8]) -> usize {
    if b.is_empty() {
        0
    } else {
        nested(tag, b.len())
    }
}

fn span_len(l: &mut Vec<usize>, s: &Span) -> usize {
    let mut n = bytes_len(1, &s.trace_id)
        + bytes_len(2, &s.span_id)
        + string_len(3, &s.trace_state)
        + bytes_len(4, &s.parent_span_id)
        + string_len(5, &s.name)
        + varint_field_len(6, s.kind as i64 as u64)
        + fixed_len(7, s.start_time_unix_nano, 8)
        + fixed_len(8, s.end_time_unix_nano, 8)
        + key_values_len(l, 9, &s.attributes)
        + varint_field_len(10, u64::from(s.dropped_attributes_count));
    for e in &s.events {
        n += nested(11, measure(l, |l| event_len(l, e)));
    }
    n += varint_field_len(12, u64::from(s.dropped_events_count));
    for link in &s.links {
        n += nested(13, measure(l, |l| link_len(l, link)));
    }
    n += varint_field_len(14, u64::from(s.dropped_links_count));
    if let Some(status) = &s.status {
        n += prost_len(l, 15, status);
    }
    n + fixed_len(16, u64::from(s.flags), 4)
}

fn event_len(l: &mut Vec<usize>, e: &span::Event) -> usize {
    fixed_len(1, e.time_unix_nano, 8)
        + string_len(2, &e.name)
        + key_values_len(l, 3, &e.attributes)
        + varint_field_len(4, u64::from(e.dropped_attributes_count))
}

fn link_len(l: &mut Vec<usize>, link: &span::Link) -> usize {
    bytes_len(1, &link.trace_id)
        + bytes_len(2, &link.span_id)
        + string_len(3, &link.trace_state)
        + key_values_len(l, 4, &link.attributes)
        + varint_field_len(5, u64::from(link.dropped_attributes_count))
        + fixed_len(6, u64::from(link.flags), 4)
}

fn log_record_len(l: &mut Vec<usize>, r: &LogRecord) -> usize {
    let mut n = fixed_len(1, r.time_unix_nano, 8)
        + varint_field_len(2, r.severity_number as i64 as u64)
        + string_len(3, &r.severity_text);
    if let Some(body) = &r.body {
        n += nested(5, measure(l, |l| any_value_len(l, body)));
    }
    n + key_values_len(l, 6, &r.attributes)
        + varint_field_len(7, u64::from(r.dropped_attributes_count))
        + fixed_len(8, u64::from(r.flags), 4)
        + bytes_len(9, &r.trace_id)
        + bytes_len(10, &r.span_id)
        + fixed_len(11, r.observed_time_unix_nano, 8)
        + string_len(12, &r.event_name)
}

fn metric_len(l: &mut Vec<usize>, m: &Metric) -> usize {
    let mut n = string_len(1, &m.name) + string_len(2, &m.description) + string_len(3, &m.unit);
    n += match &m.data {
        None => 0,
        Some(metric::Data::Gauge(g)) => nested(5, measure(l, |l| points_len(l, &g.data_points))),
        Some(metric::Data::Sum(s)) => nested(
            7,
            measure(l, |l| {
                points_len(l, &s.data_points)
                    + varint_field_len(2, s.aggregation_temporality as u64)
                    + bool_len(3, s.is_monotonic)
            }),
        ),
        Some(metric::Data::Histogram(h)) => prost_len(l, 9, h),
        Some(metric::Data::ExponentialHistogram(h)) => prost_len(l, 10, h),
        Some(metric::Data::Summary(s)) => prost_len(l, 11, s),
    };
    n + key_values_len(l, 12, &m.metadata)
}

fn bool_len(tag: u32, value: bool) -> usize {
    if value { key_len(tag) + 1 } else { 0 }
}

fn points_len(l: &mut Vec<usize>, points: &[NumberDataPoint]) -> usize {
    points
        .iter()
        .map(|p| nested(1, measure(l, |l| point_len(l, p))))
        .sum()
}

fn point_len(l: &mut Vec<usize>, p: &NumberDataPoint) -> usize {
    let mut n = fixed_len(2, p.start_time_unix_nano, 8) + fixed_len(3, p.time_unix_nano, 8);
    if p.value.is_some() {
        n += 1 + 8; // tag 4 (double) or 6 (sfixed64): one-byte key, 8 bytes
    }
    for e in &p.exemplars {
        n += prost_len(l, 5, e);
    }
    n + key_values_len(l, 7, &p.attributes) + varint_field_len(8, u64::from(p.flags))
}

fn key_values_len(l: &mut Vec<usize>, tag: u32, kvs: &[KeyValue]) -> usize {
    kvs.iter()
        .map(|kv| nested(tag, measure(l, |l| key_value_len(l, kv))))
        .sum()
}

fn key_value_len(l: &mut Vec<usize>, kv: &KeyValue) -> usize {
    let mut n = string_len(1, &kv.key);
    if let Some(value) = &kv.value {
        n += nested(2, measure(l, |l| any_value_len(l, value)));
    }
    // int32: a negative value is written as 10 bytes, like prost.
    n + varint_field_len(3, kv.key_strindex as i64 as u64)
}

fn any_value_len(l: &mut Vec<usize>, value: &AnyValue) -> usize {
    use any_value::Value;
    match &value.value {
        None => 0,
        Some(Value::StringValue(s)) => nested(1, s.len()),
        Some(Value::BoolValue(_)) => 2,
        Some(Value::IntValue(i)) => 1 + encoded_len_varint(*i as u64),
        Some(Value::DoubleValue(_)) => 9,
        Some(Value::ArrayValue(a)) => nested(
            5,
            measure(l, |l| {
                a.values
                    .iter()
                    .map(|v| nested(1, measure(l, |l| any_value_len(l, v))))
                    .sum()
            }),
        ),
        Some(Value::KvlistValue(kvs)) => {
            nested(6, measure(l, |l| key_values_len(l, 1, &kvs.values)))
        }
        Some(Value::BytesValue(b)) => nested(7, b.len()),
        Some(Value::StringValueStrindex(i)) => 1 + encoded_len_varint(*i as i64 as u64),
    }
}

// --- pass 2: bytes ---------------------------------------------------------------------

struct Writer<'a> {
    buf: Vec<u8>,
    lens: &'a [usize],
    next: usize,
}

impl Writer<'_> {
    fn key(&mut self, tag: u32, wire_type: u32) {
        encode_varint(u64::from(tag << 3 | wire_type), &mut self.buf);
    }

    /// A nested message whose length pass 1 recorded at this point of the pre-order.
    fn message(&mut self, tag: u32, body: impl FnOnce(&mut Self)) {
        let len = self.lens[self.next];
        self.next += 1;
        self.key(tag, 2);
        encode_varint(len as u64, &mut self.buf);
        body(self);
    }

    fn prost(&mut self, tag: u32, message: &impl Message) {
        self.message(tag, |w| message.encode_raw(&mut w.buf));
    }

    fn bytes(&mut self, tag: u32, bytes: &[u8]) {
        self.key(tag, 2);
        encode_varint(bytes.len() as u64, &mut self.buf);
        self.buf.put_slice(bytes);
    }

    fn string(&mut self, tag: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(tag, s.as_bytes());
        }
    }

    fn varint(&mut self, tag: u32, value: u64) {
        if value != 0 {
            self.key(tag, 0);
            encode_varint(value, &mut self.buf);
        }
    }

    fn fixed64(&mut self, tag: u32, value: u64) {
        self.key(tag, 1);
        self.buf.put_u64_le(value);
    }

    /// A fixed64 field, left out when 0 (proto3).
    fn opt_fixed64(&mut self, tag: u32, value: u64) {
        if value != 0 {
            self.fixed64(tag, value);
        }
    }

    /// A fixed32 field, left out when 0 (proto3).
    fn opt_fixed32(&mut self, tag: u32, value: u32) {
        if value != 0 {
            self.key(tag, 5);
            self.buf.put_u32_le(value);
        }
    }

    /// A bytes field, left out when empty (proto3).
    fn opt_bytes(&mut self, tag: u32, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.bytes(tag, bytes);
        }
    }
}

/// Writes what [`resource_level_len`] measured.
fn put_resource_level<S>(
    w: &mut Writer,
    resource: Option<&Resource>,
    scopes: &[S],
    put_scope: fn(&mut Writer, &S),
    schema_url: &str,
) {
    if let Some(resource) = resource {
        w.message(1, |w| put_resource(w, resource));
    }
    for scope in scopes {
        w.message(2, |w| put_scope(w, scope));
    }
    w.string(3, schema_url);
}

/// Writes what [`scope_level_len`] measured.
fn put_scope_level<I>(
    w: &mut Writer,
    scope: Option<&InstrumentationScope>,
    items: &[I],
    put_item: fn(&mut Writer, &I),
    schema_url: &str,
) {
    if let Some(scope) = scope {
        w.prost(1, scope);
    }
    for item in items {
        w.message(2, |w| put_item(w, item));
    }
    w.string(3, schema_url);
}

fn put_resource_metrics(w: &mut Writer, rm: &ResourceMetrics) {
    put_resource_level(
        w,
        rm.resource.as_ref(),
        &rm.scope_metrics,
        put_scope_metrics,
        &rm.schema_url,
    );
}

fn put_scope_metrics(w: &mut Writer, sm: &ScopeMetrics) {
    put_scope_level(
        w,
        sm.scope.as_ref(),
        &sm.metrics,
        put_metric,
        &sm.schema_url,
    );
}

fn put_resource_spans(w: &mut Writer, rs: &ResourceSpans) {
    put_resource_level(
        w,
        rs.resource.as_ref(),
        &rs.scope_spans,
        put_scope_spans,
        &rs.schema_url,
    );
}

fn put_scope_spans(w: &mut Writer, ss: &ScopeSpans) {
    put_scope_level(w, ss.scope.as_ref(), &ss.spans, put_span, &ss.schema_url);
}

fn put_resource_logs(w: &mut Writer, rl: &ResourceLogs) {
    put_resource_level(
        w,
        rl.resource.as_ref(),
        &rl.scope_logs,
        put_scope_logs,
        &rl.schema_url,
    );
}

fn put_scope_logs(w: &mut Writer, sl: &ScopeLogs) {
    put_scope_level(
        w,
        sl.scope.as_ref(),
        &sl.log_records,
        put_log_record,
        &sl.schema_url,
    );
}

fn put_span(w: &mut Writer, s: &Span) {
    w.opt_bytes(1, &s.trace_id);
    w.opt_bytes(2, &s.span_id);
    w.string(3, &s.trace_state);
    w.opt_bytes(4, &s.parent_span_id);
    w.string(5, &s.name);
    w.varint(6, s.kind as i64 as u64);
    w.opt_fixed64(7, s.start_time_unix_nano);
    w.opt_fixed64(8, s.end_time_unix_nano);
    put_key_values(w, 9, &s.attributes);
    w.varint(10, u64::from(s.dropped_attributes_count));
    for e in &s.events {
        w.message(11, |w| {
            w.opt_fixed64(1, e.time_unix_nano);
            w.string(2, &e.name);
            put_key_values(w, 3, &e.attributes);
            w.varint(4, u64::from(e.dropped_attributes_count));
        });
    }
    w.varint(12, u64::from(s.dropped_events_count));
    for link in &s.links {
        w.message(13, |w| {
            w.opt_bytes(1, &link.trace_id);
            w.opt_bytes(2, &link.span_id);
            w.string(3, &link.trace_state);
            put_key_values(w, 4, &link.attributes);
            w.varint(5, u64::from(link.dropped_attributes_count));
            w.opt_fixed32(6, link.flags);
        });
    }
    w.varint(14, u64::from(s.dropped_links_count));
    if let Some(status) = &s.status {
        w.prost(15, status);
    }
    w.opt_fixed32(16, s.flags);
}

fn put_log_record(w: &mut Writer, r: &LogRecord) {
    w.opt_fixed64(1, r.time_unix_nano);
    w.varint(2, r.severity_number as i64 as u64);
    w.string(3, &r.severity_text);
    if let Some(body) = &r.body {
        w.message(5, |w| put_any_value(w, body));
    }
    put_key_values(w, 6, &r.attributes);
    w.varint(7, u64::from(r.dropped_attributes_count));
    w.opt_fixed32(8, r.flags);
    w.opt_bytes(9, &r.trace_id);
    w.opt_bytes(10, &r.span_id);
    w.opt_fixed64(11, r.observed_time_unix_nano);
    w.string(12, &r.event_name);
}

fn put_resource(w: &mut Writer, resource: &Resource) {
    put_key_values(w, 1, &resource.attributes);
    w.varint(2, u64::from(resource.dropped_attributes_count));
    for entity in &resource.entity_refs {
        w.prost(3, entity);
    }
}

fn put_metric(w: &mut Writer, m: &Metric) {
    w.string(1, &m.name);
    w.string(2, &m.description);
    w.string(3, &m.unit);
    match &m.data {
        None => {}
        Some(metric::Data::Gauge(g)) => w.message(5, |w| put_points(w, &g.data_points)),
        Some(metric::Data::Sum(s)) => w.message(7, |w| {
            put_points(w, &s.data_points);
            w.varint(2, s.aggregation_temporality as u64);
            w.varint(3, u64::from(s.is_monotonic));
        }),
        Some(metric::Data::Histogram(h)) => w.prost(9, h),
        Some(metric::Data::ExponentialHistogram(h)) => w.prost(10, h),
        Some(metric::Data::Summary(s)) => w.prost(11, s),
    }
    put_key_values(w, 12, &m.metadata);
}

fn put_points(w: &mut Writer, points: &[NumberDataPoint]) {
    for p in points {
        w.message(1, |w| put_point(w, p));
    }
}

fn put_point(w: &mut Writer, p: &NumberDataPoint) {
    w.opt_fixed64(2, p.start_time_unix_nano);
    w.opt_fixed64(3, p.time_unix_nano);
    match p.value {
        None => {}
        Some(number_data_point::Value::AsDouble(d)) => w.fixed64(4, d.to_bits()),
        Some(number_data_point::Value::AsInt(i)) => w.fixed64(6, i as u64),
    }
    for e in &p.exemplars {
        w.prost(5, e);
    }
    put_key_values(w, 7, &p.attributes);
    w.varint(8, u64::from(p.flags));
}

fn put_key_values(w: &mut Writer, tag: u32, kvs: &[KeyValue]) {
    for kv in kvs {
        w.message(tag, |w| {
            w.string(1, &kv.key);
            if let Some(value) = &kv.value {
                w.message(2, |w| put_any_value(w, value));
            }
            w.varint(3, kv.key_strindex as i64 as u64);
        });
    }
}

fn put_any_value(w: &mut Writer, value: &AnyValue) {
    use any_value::Value;
    match &value.value {
        None => {}
        // Oneof fields are written even when they hold the default value.
        Some(Value::StringValue(s)) => w.bytes(1, s.as_bytes()),
        Some(Value::BoolValue(b)) => {
            w.key(2, 0);
            w.buf.put_u8(u8::from(*b));
        }
        Some(Value::IntValue(i)) => {
            w.key(3, 0);
            encode_varint(*i as u64, &mut w.buf);
        }
        Some(Value::DoubleValue(d)) => w.fixed64(4, d.to_bits()),
        Some(Value::ArrayValue(a)) => w.message(5, |w| {
            for v in &a.values {
                w.message(1, |w| put_any_value(w, v));
            }
        }),
        Some(Value::KvlistValue(kvs)) => w.message(6, |w| put_key_values(w, 1, &kvs.values)),
        Some(Value::BytesValue(b)) => w.bytes(7, b),
        Some(Value::StringValueStrindex(i)) => {
            w.key(8, 0);
            encode_varint(*i as i64 as u64, &mut w.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        ArrayValue, EntityRef, InstrumentationScope, KeyValueList,
    };
    use opentelemetry_proto::tonic::metrics::v1::{
        Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
        HistogramDataPoint, Sum, Summary, SummaryDataPoint, exemplar,
        exponential_histogram_data_point, summary_data_point,
    };

    /// A small deterministic generator (xorshift): the same trees on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn chance(&mut self, one_in: u64) -> bool {
            self.below(one_in) == 0
        }
        /// Often the default value (0), sometimes a small one, sometimes a huge one.
        fn number(&mut self) -> u64 {
            match self.below(4) {
                0 => 0,
                1 => self.below(200),
                _ => self.next(),
            }
        }
        fn string(&mut self) -> String {
            let len = [0, 1, 5, 20, 130][self.below(5) as usize];
            (0..len)
                .map(|i| char::from(b'a' + ((i + self.below(26)) % 26) as u8))
                .collect()
        }
        fn float(&mut self) -> f64 {
            match self.below(6) {
                0 => 0.0,
                1 => -0.0,
                2 => f64::NAN,
                _ => self.next() as f64 / 7.0 - 1e15,
            }
        }
    }

    fn any_value(r: &mut Rng, depth: u32) -> AnyValue {
        use any_value::Value;
        let value = match r.below(if depth > 2 { 6 } else { 9 }) {
            0 => None,
            1 => Some(Value::StringValue(r.string())),
            2 => Some(Value::BoolValue(r.chance(2))),
            3 => Some(Value::IntValue(r.number() as i64)),
            4 => Some(Value::DoubleValue(r.float())),
            5 => Some(Value::StringValueStrindex(r.number() as i32)),
            6 => Some(Value::BytesValue(r.string().into_bytes())),
            7 => Some(Value::ArrayValue(ArrayValue {
                values: (0..r.below(4)).map(|_| any_value(r, depth + 1)).collect(),
            })),
            _ => Some(Value::KvlistValue(KeyValueList {
                values: key_values(r, depth + 1),
            })),
        };
        AnyValue { value }
    }

    fn key_values(r: &mut Rng, depth: u32) -> Vec<KeyValue> {
        (0..r.below(5))
            .map(|_| KeyValue {
                key: r.string(),
                value: (!r.chance(5)).then(|| any_value(r, depth)),
                key_strindex: if r.chance(4) { r.number() as i32 } else { 0 },
            })
            .collect()
    }

    fn exemplars(r: &mut Rng) -> Vec<Exemplar> {
        (0..r.below(3))
            .map(|_| Exemplar {
                filtered_attributes: key_values(r, 2),
                time_unix_nano: r.number(),
                span_id: r.string().into_bytes(),
                trace_id: r.string().into_bytes(),
                value: r
                    .chance(3)
                    .then(|| exemplar::Value::AsInt(r.number() as i64))
                    .or(Some(exemplar::Value::AsDouble(r.float()))),
            })
            .collect()
    }

    fn number_points(r: &mut Rng) -> Vec<NumberDataPoint> {
        (0..r.below(5))
            .map(|_| NumberDataPoint {
                attributes: key_values(r, 0),
                start_time_unix_nano: r.number(),
                time_unix_nano: r.number(),
                exemplars: exemplars(r),
                flags: r.number() as u32,
                value: match r.below(3) {
                    0 => None,
                    1 => Some(number_data_point::Value::AsDouble(r.float())),
                    _ => Some(number_data_point::Value::AsInt(r.number() as i64)),
                },
            })
            .collect()
    }

    fn data(r: &mut Rng) -> Option<metric::Data> {
        let temporality = r.below(3) as i32;
        Some(match r.below(6) {
            0 => return None,
            1 => metric::Data::Gauge(Gauge {
                data_points: number_points(r),
            }),
            2 => metric::Data::Sum(Sum {
                data_points: number_points(r),
                aggregation_temporality: temporality,
                is_monotonic: r.chance(2),
            }),
            3 => metric::Data::Histogram(Histogram {
                data_points: (0..r.below(3))
                    .map(|_| HistogramDataPoint {
                        attributes: key_values(r, 0),
                        count: r.number(),
                        sum: r.chance(2).then(|| r.float()),
                        bucket_counts: (0..r.below(4)).map(|_| r.number()).collect(),
                        explicit_bounds: (0..r.below(4)).map(|_| r.float()).collect(),
                        exemplars: exemplars(r),
                        min: r.chance(2).then(|| r.float()),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: temporality,
            }),
            4 => metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: (0..r.below(3))
                    .map(|_| ExponentialHistogramDataPoint {
                        attributes: key_values(r, 0),
                        scale: r.number() as i32,
                        zero_count: r.number(),
                        positive: Some(exponential_histogram_data_point::Buckets {
                            offset: r.number() as i32,
                            bucket_counts: (0..r.below(4)).map(|_| r.number()).collect(),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: temporality,
            }),
            _ => metric::Data::Summary(Summary {
                data_points: (0..r.below(3))
                    .map(|_| SummaryDataPoint {
                        attributes: key_values(r, 0),
                        count: r.number(),
                        sum: r.float(),
                        quantile_values: vec![summary_data_point::ValueAtQuantile {
                            quantile: r.float(),
                            value: r.float(),
                        }],
                        ..Default::default()
                    })
                    .collect(),
            }),
        })
    }

    fn tree(r: &mut Rng) -> Vec<ResourceMetrics> {
        (0..r.below(4))
            .map(|_| ResourceMetrics {
                resource: (!r.chance(4)).then(|| Resource {
                    attributes: key_values(r, 0),
                    dropped_attributes_count: r.number() as u32,
                    entity_refs: (0..r.below(2))
                        .map(|_| EntityRef {
                            schema_url: r.string(),
                            r#type: r.string(),
                            id_keys: vec![r.string()],
                            description_keys: Vec::new(),
                        })
                        .collect(),
                }),
                scope_metrics: (0..r.below(3))
                    .map(|_| ScopeMetrics {
                        scope: (!r.chance(3)).then(|| InstrumentationScope {
                            name: r.string(),
                            version: r.string(),
                            attributes: key_values(r, 1),
                            dropped_attributes_count: r.number() as u32,
                        }),
                        metrics: (0..r.below(4))
                            .map(|_| Metric {
                                name: r.string(),
                                description: r.string(),
                                unit: r.string(),
                                metadata: key_values(r, 1),
                                data: data(r),
                            })
                            .collect(),
                        schema_url: r.string(),
                    })
                    .collect(),
                schema_url: r.string(),
            })
            .collect()
    }

    fn resource(r: &mut Rng) -> Option<Resource> {
        (!r.chance(4)).then(|| Resource {
            attributes: key_values(r, 0),
            dropped_attributes_count: r.number() as u32,
            entity_refs: Vec::new(),
        })
    }

    fn scope(r: &mut Rng) -> Option<InstrumentationScope> {
        (!r.chance(3)).then(|| InstrumentationScope {
            name: r.string(),
            version: r.string(),
            attributes: key_values(r, 1),
            dropped_attributes_count: r.number() as u32,
        })
    }

    fn spans(r: &mut Rng) -> Vec<ResourceSpans> {
        (0..r.below(4))
            .map(|_| ResourceSpans {
                resource: resource(r),
                scope_spans: (0..r.below(3))
                    .map(|_| ScopeSpans {
                        scope: scope(r),
                        spans: (0..r.below(4))
                            .map(|_| Span {
                                trace_id: r.string().into_bytes(),
                                span_id: r.string().into_bytes(),
                                trace_state: r.string(),
                                parent_span_id: r.string().into_bytes(),
                                flags: r.number() as u32,
                                name: r.string(),
                                kind: r.number() as i32,
                                start_time_unix_nano: r.number(),
                                end_time_unix_nano: r.number(),
                                attributes: key_values(r, 0),
                                dropped_attributes_count: r.number() as u32,
                                events: (0..r.below(3))
                                    .map(|_| span::Event {
                                        time_unix_nano: r.number(),
                                        name: r.string(),
                                        attributes: key_values(r, 1),
                                        dropped_attributes_count: r.number() as u32,
                                    })
                                    .collect(),
                                dropped_events_count: r.number() as u32,
                                links: (0..r.below(3))
                                    .map(|_| span::Link {
                                        trace_id: r.string().into_bytes(),
                                        span_id: r.string().into_bytes(),
                                        trace_state: r.string(),
                                        attributes: key_values(r, 1),
                                        dropped_attributes_count: r.number() as u32,
                                        flags: r.number() as u32,
                                    })
                                    .collect(),
                                dropped_links_count: r.number() as u32,
                                status: (!r.chance(2)).then(|| {
                                    opentelemetry_proto::tonic::trace::v1::Status {
                                        message: r.string(),
                                        code: r.number() as i32,
                                    }
                                }),
                            })
                            .collect(),
                        schema_url: r.string(),
                    })
                    .collect(),
                schema_url: r.string(),
            })
            .collect()
    }

    fn logs(r: &mut Rng) -> Vec<ResourceLogs> {
        (0..r.below(4))
            .map(|_| ResourceLogs {
                resource: resource(r),
                scope_logs: (0..r.below(3))
                    .map(|_| ScopeLogs {
                        scope: scope(r),
                        log_records: (0..r.below(4))
                            .map(|_| LogRecord {
                                time_unix_nano: r.number(),
                                observed_time_unix_nano: r.number(),
                                severity_number: r.number() as i32,
                                severity_text: r.string(),
                                body: (!r.chance(3)).then(|| any_value(r, 0)),
                                attributes: key_values(r, 0),
                                dropped_attributes_count: r.number() as u32,
                                flags: r.number() as u32,
                                trace_id: r.string().into_bytes(),
                                span_id: r.string().into_bytes(),
                                event_name: r.string(),
                            })
                            .collect(),
                        schema_url: r.string(),
                    })
                    .collect(),
                schema_url: r.string(),
            })
            .collect()
    }

    #[test]
    fn traces_and_logs_encode_like_prost() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        let mut r = Rng(0x2545_f491_4f6c_dd1d);
        let mut nonempty = 0;
        for _ in 0..2000 {
            let request = ExportTraceServiceRequest {
                resource_spans: spans(&mut r),
            };
            let ours = traces_request(&request.resource_spans);
            assert_eq!(ours, request.encode_to_vec(), "{request:?}");
            nonempty += usize::from(!ours.is_empty());
            let request = ExportLogsServiceRequest {
                resource_logs: logs(&mut r),
            };
            let ours = logs_request(&request.resource_logs);
            assert_eq!(ours, request.encode_to_vec(), "{request:?}");
            nonempty += usize::from(!ours.is_empty());
        }
        assert!(nonempty > 2500, "the generator made mostly empty trees");
    }

    #[test]
    fn encodes_like_prost() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let mut nonempty = 0;
        for _ in 0..3000 {
            let resource_metrics = tree(&mut r);
            let request = ExportMetricsServiceRequest { resource_metrics };
            let ours = metrics_request(&request.resource_metrics);
            assert_eq!(ours, request.encode_to_vec(), "{request:?}");
            nonempty += usize::from(!ours.is_empty());
        }
        assert!(nonempty > 2000, "the generator made mostly empty trees");
    }

    #[test]
    fn an_empty_request_is_empty() {
        assert!(metrics_request(&[]).is_empty());
    }
}
