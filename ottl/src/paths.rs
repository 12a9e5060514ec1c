//! Paths: which field of which context an OTTL path names, and reading/writing it on the
//! OTLP prost structures of the item being evaluated (the `View`).

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint, SummaryDataPoint,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{Span, Status, span};

use crate::value::{Value, hex_decode, hex_lower, map_get};
use crate::{ContextKind, DataPointRef};

/// Whether a time field is read as nanoseconds (`*_unix_nano`) or as a time (`time`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimeForm {
    Nanos,
    Time,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    Cache,
    ResourceAttributes,
    ResourceDropped,
    ScopeName,
    ScopeVersion,
    ScopeAttributes,
    ScopeDropped,
    MetricName,
    MetricDescription,
    MetricUnit,
    MetricType,
    MetricTemporality,
    MetricMonotonic,
    PointAttributes,
    PointStart(TimeForm),
    PointTime(TimeForm),
    PointValueDouble,
    PointValueInt,
    PointFlags,
    PointCount,
    PointSum,
    PointBucketCounts,
    PointExplicitBounds,
    PointScale,
    PointZeroCount,
    PointPositiveOffset,
    PointPositiveBucketCounts,
    PointNegativeOffset,
    PointNegativeBucketCounts,
    SpanTraceId,
    SpanTraceIdString,
    SpanSpanId,
    SpanSpanIdString,
    SpanParentSpanId,
    SpanParentSpanIdString,
    SpanTraceState,
    SpanName,
    SpanKind,
    SpanKindString,
    SpanStart(TimeForm),
    SpanEnd(TimeForm),
    SpanAttributes,
    SpanDropped,
    SpanDroppedEvents,
    SpanDroppedLinks,
    SpanStatusCode,
    SpanStatusMessage,
    SpanFlags,
    EventName,
    EventTime(TimeForm),
    EventAttributes,
    EventDropped,
    LogTime(TimeForm),
    LogObservedTime(TimeForm),
    LogSeverityNumber,
    LogSeverityText,
    LogBody,
    LogBodyString,
    LogAttributes,
    LogDropped,
    LogFlags,
    LogTraceId,
    LogTraceIdString,
    LogSpanId,
    LogSpanIdString,
    LogEventName,
}

impl Field {
    /// Fields that can be indexed with `[key]`.
    pub(crate) fn indexable(self) -> bool {
        matches!(
            self,
            Field::Cache
                | Field::ResourceAttributes
                | Field::ScopeAttributes
                | Field::PointAttributes
                | Field::SpanAttributes
                | Field::EventAttributes
                | Field::LogAttributes
                | Field::LogBody
        )
    }
}

/// The field named by `names` (the path without its context prefix) in `context`.
pub(crate) fn resolve_field(context: ContextKind, names: &[&str]) -> Option<Field> {
    use Field::*;
    use TimeForm::*;
    if names == ["cache"] {
        return Some(Cache);
    }
    Some(match context {
        ContextKind::Resource => match names {
            ["attributes"] => ResourceAttributes,
            ["dropped_attributes_count"] => ResourceDropped,
            _ => return None,
        },
        ContextKind::Scope => match names {
            ["name"] => ScopeName,
            ["version"] => ScopeVersion,
            ["attributes"] => ScopeAttributes,
            ["dropped_attributes_count"] => ScopeDropped,
            _ => return None,
        },
        ContextKind::Metric => match names {
            ["name"] => MetricName,
            ["description"] => MetricDescription,
            ["unit"] => MetricUnit,
            ["type"] => MetricType,
            ["aggregation_temporality"] => MetricTemporality,
            ["is_monotonic"] => MetricMonotonic,
            _ => return None,
        },
        ContextKind::DataPoint => match names {
            ["attributes"] => PointAttributes,
            ["start_time_unix_nano"] => PointStart(Nanos),
            ["start_time"] => PointStart(Time),
            ["time_unix_nano"] => PointTime(Nanos),
            ["time"] => PointTime(Time),
            ["value_double"] => PointValueDouble,
            ["value_int"] => PointValueInt,
            ["flags"] => PointFlags,
            ["count"] => PointCount,
            ["sum"] => PointSum,
            ["bucket_counts"] => PointBucketCounts,
            ["explicit_bounds"] => PointExplicitBounds,
            ["scale"] => PointScale,
            ["zero_count"] => PointZeroCount,
            ["positive", "offset"] => PointPositiveOffset,
            ["positive", "bucket_counts"] => PointPositiveBucketCounts,
            ["negative", "offset"] => PointNegativeOffset,
            ["negative", "bucket_counts"] => PointNegativeBucketCounts,
            _ => return None,
        },
        ContextKind::Span => match names {
            ["trace_id"] => SpanTraceId,
            ["trace_id", "string"] => SpanTraceIdString,
            ["span_id"] => SpanSpanId,
            ["span_id", "string"] => SpanSpanIdString,
            ["parent_span_id"] => SpanParentSpanId,
            ["parent_span_id", "string"] => SpanParentSpanIdString,
            ["trace_state"] => SpanTraceState,
            ["name"] => SpanName,
            ["kind"] => SpanKind,
            ["kind", "string"] => SpanKindString,
            ["start_time_unix_nano"] => SpanStart(Nanos),
            ["start_time"] => SpanStart(Time),
            ["end_time_unix_nano"] => SpanEnd(Nanos),
            ["end_time"] => SpanEnd(Time),
            ["attributes"] => SpanAttributes,
            ["dropped_attributes_count"] => SpanDropped,
            ["dropped_events_count"] => SpanDroppedEvents,
            ["dropped_links_count"] => SpanDroppedLinks,
            ["status", "code"] => SpanStatusCode,
            ["status", "message"] => SpanStatusMessage,
            ["flags"] => SpanFlags,
            _ => return None,
        },
        ContextKind::SpanEvent => match names {
            ["name"] => EventName,
            ["time_unix_nano"] => EventTime(Nanos),
            ["time"] => EventTime(Time),
            ["attributes"] => EventAttributes,
            ["dropped_attributes_count"] => EventDropped,
            _ => return None,
        },
        ContextKind::Log => match names {
            ["time_unix_nano"] => LogTime(Nanos),
            ["time"] => LogTime(Time),
            ["observed_time_unix_nano"] => LogObservedTime(Nanos),
            ["observed_time"] => LogObservedTime(Time),
            ["severity_number"] => LogSeverityNumber,
            ["severity_text"] => LogSeverityText,
            ["body"] => LogBody,
            ["body", "string"] => LogBodyString,
            ["attributes"] => LogAttributes,
            ["dropped_attributes_count"] => LogDropped,
            ["flags"] => LogFlags,
            ["trace_id"] => LogTraceId,
            ["trace_id", "string"] => LogTraceIdString,
            ["span_id"] => LogSpanId,
            ["span_id", "string"] => LogSpanIdString,
            ["event_name"] => LogEventName,
            _ => return None,
        },
    })
}

/// A reference to one part of the item: absent, read-only, or writable.
pub(crate) enum Slot<'a, T> {
    Absent,
    Ref(&'a T),
    Mut(&'a mut T),
    MutOpt(&'a mut Option<T>),
}

impl<T: Default> Slot<'_, T> {
    pub(crate) fn get(&self) -> Option<&T> {
        match self {
            Slot::Absent => None,
            Slot::Ref(t) => Some(t),
            Slot::Mut(t) => Some(t),
            Slot::MutOpt(o) => o.as_ref(),
        }
    }
    pub(crate) fn get_mut(&mut self) -> Result<&mut T, String> {
        match self {
            Slot::Absent => Err("this context has no such item".to_string()),
            Slot::Ref(_) => {
                Err("the item is read-only here (conditions cannot change data)".to_string())
            }
            Slot::Mut(t) => Ok(t),
            Slot::MutOpt(o) => Ok(o.get_or_insert_with(T::default)),
        }
    }
}

/// A writable data point of any type.
pub(crate) enum PointMut<'a> {
    Number(&'a mut NumberDataPoint),
    Histogram(&'a mut HistogramDataPoint),
    ExponentialHistogram(&'a mut ExponentialHistogramDataPoint),
    Summary(&'a mut SummaryDataPoint),
}

pub(crate) enum PointSlot<'a> {
    Absent,
    Ref(DataPointRef<'a>),
    Mut(PointMut<'a>),
}

/// The type, temporality and monotonicity of a metric whose data points are being
/// iterated (its `data` is moved out meanwhile, so it is remembered here).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MetricShape {
    pub kind: i64,
    pub temporality: i64,
    pub monotonic: bool,
}

pub(crate) fn metric_shape(data: Option<&metric::Data>) -> MetricShape {
    match data {
        None => MetricShape::default(),
        Some(metric::Data::Gauge(_)) => MetricShape {
            kind: 1,
            temporality: 0,
            monotonic: false,
        },
        Some(metric::Data::Sum(s)) => MetricShape {
            kind: 2,
            temporality: i64::from(s.aggregation_temporality),
            monotonic: s.is_monotonic,
        },
        Some(metric::Data::Histogram(h)) => MetricShape {
            kind: 3,
            temporality: i64::from(h.aggregation_temporality),
            monotonic: false,
        },
        Some(metric::Data::ExponentialHistogram(h)) => MetricShape {
            kind: 4,
            temporality: i64::from(h.aggregation_temporality),
            monotonic: false,
        },
        Some(metric::Data::Summary(_)) => MetricShape {
            kind: 5,
            temporality: 0,
            monotonic: false,
        },
    }
}

/// Everything a statement or condition can read (and, for statements, write).
pub(crate) struct View<'a> {
    pub resource: Slot<'a, Resource>,
    pub scope: Slot<'a, InstrumentationScope>,
    pub metric: Slot<'a, Metric>,
    pub shape: Option<MetricShape>,
    pub point: PointSlot<'a>,
    pub span: Slot<'a, Span>,
    pub event: Slot<'a, span::Event>,
    pub log: Slot<'a, LogRecord>,
    pub cache: Vec<KeyValue>,
    /// Metrics added by metric functions (appended to the scope after the walk).
    pub new_metrics: Vec<Metric>,
}

impl<'a> View<'a> {
    pub(crate) fn empty() -> View<'a> {
        View {
            resource: Slot::Absent,
            scope: Slot::Absent,
            metric: Slot::Absent,
            shape: None,
            point: PointSlot::Absent,
            span: Slot::Absent,
            event: Slot::Absent,
            log: Slot::Absent,
            cache: Vec::new(),
            new_metrics: Vec::new(),
        }
    }

    pub(crate) fn point(&self) -> Option<DataPointRef<'_>> {
        match &self.point {
            PointSlot::Absent => None,
            PointSlot::Ref(p) => Some(*p),
            PointSlot::Mut(PointMut::Number(p)) => Some(DataPointRef::Number(p)),
            PointSlot::Mut(PointMut::Histogram(p)) => Some(DataPointRef::Histogram(p)),
            PointSlot::Mut(PointMut::ExponentialHistogram(p)) => {
                Some(DataPointRef::ExponentialHistogram(p))
            }
            PointSlot::Mut(PointMut::Summary(p)) => Some(DataPointRef::Summary(p)),
        }
    }

    fn point_mut(&mut self) -> Result<&mut PointMut<'a>, String> {
        match &mut self.point {
            PointSlot::Mut(p) => Ok(p),
            PointSlot::Ref(_) => {
                Err("the item is read-only here (conditions cannot change data)".to_string())
            }
            PointSlot::Absent => Err("this context has no data point".to_string()),
        }
    }

    fn shape(&self) -> MetricShape {
        self.shape
            .unwrap_or_else(|| metric_shape(self.metric.get().and_then(|m| m.data.as_ref())))
    }

    /// The attribute map of a map field, for writing.
    pub(crate) fn map_mut(&mut self, field: Field) -> Result<&mut Vec<KeyValue>, String> {
        Ok(match field {
            Field::Cache => &mut self.cache,
            Field::ResourceAttributes => &mut self.resource.get_mut()?.attributes,
            Field::ScopeAttributes => &mut self.scope.get_mut()?.attributes,
            Field::SpanAttributes => &mut self.span.get_mut()?.attributes,
            Field::EventAttributes => &mut self.event.get_mut()?.attributes,
            Field::LogAttributes => &mut self.log.get_mut()?.attributes,
            Field::PointAttributes => match self.point_mut()? {
                PointMut::Number(p) => &mut p.attributes,
                PointMut::Histogram(p) => &mut p.attributes,
                PointMut::ExponentialHistogram(p) => &mut p.attributes,
                PointMut::Summary(p) => &mut p.attributes,
            },
            _ => return Err("not a map".to_string()),
        })
    }

    fn map_ref(&self, field: Field) -> Option<&[KeyValue]> {
        Some(match field {
            Field::Cache => &self.cache,
            Field::ResourceAttributes => &self.resource.get()?.attributes,
            Field::ScopeAttributes => &self.scope.get()?.attributes,
            Field::SpanAttributes => &self.span.get()?.attributes,
            Field::EventAttributes => &self.event.get()?.attributes,
            Field::LogAttributes => &self.log.get()?.attributes,
            Field::PointAttributes => self.point()?.attributes(),
            _ => return None,
        })
    }
}

/// An evaluated index key; a literal key is borrowed from the statement.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Key<'k> {
    Str(std::borrow::Cow<'k, str>),
    Int(i64),
}

fn time_value(ns: u64, form: TimeForm) -> Value {
    match form {
        TimeForm::Nanos => Value::Int(ns as i64),
        TimeForm::Time => Value::Time(ns as i64),
    }
}

fn expect_time(v: Value, form: TimeForm) -> Result<u64, String> {
    match (form, v) {
        (TimeForm::Nanos, Value::Int(i)) => Ok(i as u64),
        (TimeForm::Time, Value::Time(t)) => Ok(t as u64),
        (TimeForm::Nanos, other) => Err(format!(
            "expected an int (nanoseconds) but got {}",
            other.type_name()
        )),
        (TimeForm::Time, other) => Err(format!("expected a time but got {}", other.type_name())),
    }
}

fn expect_str(v: Value) -> Result<String, String> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(format!("expected a string but got {}", other.type_name())),
    }
}

fn expect_int(v: Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(i),
        other => Err(format!("expected an int but got {}", other.type_name())),
    }
}

fn expect_double(v: Value) -> Result<f64, String> {
    match v {
        Value::Double(d) => Ok(d),
        other => Err(format!("expected a double but got {}", other.type_name())),
    }
}

fn expect_bool(v: Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(b),
        other => Err(format!("expected a bool but got {}", other.type_name())),
    }
}

fn expect_id(v: Value, len: usize) -> Result<Vec<u8>, String> {
    match v {
        Value::Bytes(b) if b.len() == len => Ok(b),
        Value::Bytes(b) => Err(format!("expected {len} bytes but got {}", b.len())),
        other => Err(format!(
            "expected {len} bytes but got {}",
            other.type_name()
        )),
    }
}

fn expect_id_string(v: Value, len: usize) -> Result<Vec<u8>, String> {
    let s = expect_str(v)?;
    match hex_decode(&s) {
        Some(b) if b.len() == len => Ok(b),
        _ => Err(format!("expected {} hex characters but got {s:?}", len * 2)),
    }
}

fn u64_list(v: &[u64]) -> Value {
    Value::List(
        v.iter()
            .map(|x| AnyValue {
                value: Some(any_value::Value::IntValue(*x as i64)),
            })
            .collect(),
    )
}

fn f64_list(v: &[f64]) -> Value {
    Value::List(
        v.iter()
            .map(|x| AnyValue {
                value: Some(any_value::Value::DoubleValue(*x)),
            })
            .collect(),
    )
}

fn expect_u64_list(v: Value) -> Result<Vec<u64>, String> {
    match v {
        Value::List(items) => items
            .iter()
            .map(|i| match &i.value {
                Some(any_value::Value::IntValue(x)) => Ok(*x as u64),
                _ => Err("expected a list of ints".to_string()),
            })
            .collect(),
        other => Err(format!(
            "expected a list of ints but got {}",
            other.type_name()
        )),
    }
}

fn expect_f64_list(v: Value) -> Result<Vec<f64>, String> {
    match v {
        Value::List(items) => items
            .iter()
            .map(|i| match &i.value {
                Some(any_value::Value::DoubleValue(x)) => Ok(*x),
                Some(any_value::Value::IntValue(x)) => Ok(*x as f64),
                _ => Err("expected a list of doubles".to_string()),
            })
            .collect(),
        other => Err(format!(
            "expected a list of doubles but got {}",
            other.type_name()
        )),
    }
}

const SPAN_KIND_NAMES: [&str; 6] = [
    "Unspecified",
    "Internal",
    "Server",
    "Client",
    "Producer",
    "Consumer",
];

/// Reads a field (without keys).
pub(crate) fn get_field(view: &View<'_>, field: Field) -> Value {
    use Field::*;
    if let Some(map) = view.map_ref(field) {
        return Value::Map(map.to_vec());
    }
    let resource = view.resource.get();
    let scope = view.scope.get();
    let metric = view.metric.get();
    let span = view.span.get();
    let event = view.event.get();
    let log = view.log.get();
    let point = view.point();
    let opt = |o: Option<Value>| o.unwrap_or(Value::Nil);
    match field {
        Cache | ResourceAttributes | ScopeAttributes | PointAttributes | SpanAttributes
        | EventAttributes | LogAttributes => Value::Nil,
        ResourceDropped => opt(resource.map(|r| Value::Int(i64::from(r.dropped_attributes_count)))),
        ScopeName => Value::Str(scope.map(|s| s.name.clone()).unwrap_or_default()),
        ScopeVersion => Value::Str(scope.map(|s| s.version.clone()).unwrap_or_default()),
        ScopeDropped => Value::Int(scope.map_or(0, |s| i64::from(s.dropped_attributes_count))),
        MetricName => opt(metric.map(|m| Value::Str(m.name.clone()))),
        MetricDescription => opt(metric.map(|m| Value::Str(m.description.clone()))),
        MetricUnit => opt(metric.map(|m| Value::Str(m.unit.clone()))),
        MetricType => Value::Int(view.shape().kind),
        MetricTemporality => Value::Int(view.shape().temporality),
        MetricMonotonic => Value::Bool(view.shape().monotonic),
        PointStart(form) => opt(point.map(|p| time_value(p.times().0, form))),
        PointTime(form) => opt(point.map(|p| time_value(p.times().1, form))),
        PointValueDouble => match point {
            Some(DataPointRef::Number(p)) => match p.value {
                Some(number_data_point::Value::AsDouble(d)) => Value::Double(d),
                _ => Value::Double(0.0),
            },
            _ => Value::Nil,
        },
        PointValueInt => match point {
            Some(DataPointRef::Number(p)) => match p.value {
                Some(number_data_point::Value::AsInt(i)) => Value::Int(i),
                _ => Value::Int(0),
            },
            _ => Value::Nil,
        },
        PointFlags => opt(point.map(|p| {
            Value::Int(i64::from(match p {
                DataPointRef::Number(p) => p.flags,
                DataPointRef::Histogram(p) => p.flags,
                DataPointRef::ExponentialHistogram(p) => p.flags,
                DataPointRef::Summary(p) => p.flags,
            }))
        })),
        PointCount => match point {
            Some(DataPointRef::Histogram(p)) => Value::Int(p.count as i64),
            Some(DataPointRef::ExponentialHistogram(p)) => Value::Int(p.count as i64),
            Some(DataPointRef::Summary(p)) => Value::Int(p.count as i64),
            _ => Value::Nil,
        },
        PointSum => match point {
            Some(DataPointRef::Histogram(p)) => Value::Double(p.sum.unwrap_or(0.0)),
            Some(DataPointRef::ExponentialHistogram(p)) => Value::Double(p.sum.unwrap_or(0.0)),
            Some(DataPointRef::Summary(p)) => Value::Double(p.sum),
            _ => Value::Nil,
        },
        PointBucketCounts => match point {
            Some(DataPointRef::Histogram(p)) => u64_list(&p.bucket_counts),
            _ => Value::Nil,
        },
        PointExplicitBounds => match point {
            Some(DataPointRef::Histogram(p)) => f64_list(&p.explicit_bounds),
            _ => Value::Nil,
        },
        PointScale => match point {
            Some(DataPointRef::ExponentialHistogram(p)) => Value::Int(i64::from(p.scale)),
            _ => Value::Nil,
        },
        PointZeroCount => match point {
            Some(DataPointRef::ExponentialHistogram(p)) => Value::Int(p.zero_count as i64),
            _ => Value::Nil,
        },
        PointPositiveOffset
        | PointNegativeOffset
        | PointPositiveBucketCounts
        | PointNegativeBucketCounts => match point {
            Some(DataPointRef::ExponentialHistogram(p)) => {
                let buckets = if matches!(field, PointPositiveOffset | PointPositiveBucketCounts) {
                    &p.positive
                } else {
                    &p.negative
                };
                let default = Default::default();
                let b = buckets.as_ref().unwrap_or(&default);
                if matches!(field, PointPositiveOffset | PointNegativeOffset) {
                    Value::Int(i64::from(b.offset))
                } else {
                    u64_list(&b.bucket_counts)
                }
            }
            _ => Value::Nil,
        },
        SpanTraceId => opt(span.map(|s| Value::Bytes(id_or_zero(&s.trace_id, 16)))),
        SpanTraceIdString => opt(span.map(|s| Value::Str(id_string(&s.trace_id)))),
        SpanSpanId => opt(span.map(|s| Value::Bytes(id_or_zero(&s.span_id, 8)))),
        SpanSpanIdString => opt(span.map(|s| Value::Str(id_string(&s.span_id)))),
        SpanParentSpanId => opt(span.map(|s| Value::Bytes(id_or_zero(&s.parent_span_id, 8)))),
        SpanParentSpanIdString => opt(span.map(|s| Value::Str(id_string(&s.parent_span_id)))),
        SpanTraceState => opt(span.map(|s| Value::Str(s.trace_state.clone()))),
        SpanName => opt(span.map(|s| Value::Str(s.name.clone()))),
        SpanKind => opt(span.map(|s| Value::Int(i64::from(s.kind)))),
        SpanKindString => opt(span.map(|s| {
            Value::Str(
                usize::try_from(s.kind)
                    .ok()
                    .and_then(|k| SPAN_KIND_NAMES.get(k))
                    .map_or_else(String::new, |n| n.to_string()),
            )
        })),
        SpanStart(form) => opt(span.map(|s| time_value(s.start_time_unix_nano, form))),
        SpanEnd(form) => opt(span.map(|s| time_value(s.end_time_unix_nano, form))),
        SpanDropped => opt(span.map(|s| Value::Int(i64::from(s.dropped_attributes_count)))),
        SpanDroppedEvents => opt(span.map(|s| Value::Int(i64::from(s.dropped_events_count)))),
        SpanDroppedLinks => opt(span.map(|s| Value::Int(i64::from(s.dropped_links_count)))),
        SpanStatusCode => {
            opt(span.map(|s| Value::Int(i64::from(s.status.as_ref().map_or(0, |st| st.code)))))
        }
        SpanStatusMessage => opt(span.map(|s| {
            Value::Str(
                s.status
                    .as_ref()
                    .map(|st| st.message.clone())
                    .unwrap_or_default(),
            )
        })),
        SpanFlags => opt(span.map(|s| Value::Int(i64::from(s.flags)))),
        EventName => opt(event.map(|e| Value::Str(e.name.clone()))),
        EventTime(form) => opt(event.map(|e| time_value(e.time_unix_nano, form))),
        EventDropped => opt(event.map(|e| Value::Int(i64::from(e.dropped_attributes_count)))),
        LogTime(form) => opt(log.map(|l| time_value(l.time_unix_nano, form))),
        LogObservedTime(form) => opt(log.map(|l| time_value(l.observed_time_unix_nano, form))),
        LogSeverityNumber => opt(log.map(|l| Value::Int(i64::from(l.severity_number)))),
        LogSeverityText => opt(log.map(|l| Value::Str(l.severity_text.clone()))),
        LogBody => opt(log.map(|l| Value::from_any_opt(l.body.as_ref()))),
        LogBodyString => opt(log.map(|l| Value::Str(any_as_string(l.body.as_ref())))),
        LogDropped => opt(log.map(|l| Value::Int(i64::from(l.dropped_attributes_count)))),
        LogFlags => opt(log.map(|l| Value::Int(i64::from(l.flags)))),
        LogTraceId => opt(log.map(|l| Value::Bytes(id_or_zero(&l.trace_id, 16)))),
        LogTraceIdString => opt(log.map(|l| Value::Str(id_string(&l.trace_id)))),
        LogSpanId => opt(log.map(|l| Value::Bytes(id_or_zero(&l.span_id, 8)))),
        LogSpanIdString => opt(log.map(|l| Value::Str(id_string(&l.span_id)))),
        LogEventName => opt(log.map(|l| Value::Str(l.event_name.clone()))),
    }
}

/// A string field borrowed from the item, when `field` is one and the item has it (None:
/// read it with [`get_field`]). Same values as `get_field`.
pub(crate) fn field_str<'v>(view: &'v View<'_>, field: Field) -> Option<&'v str> {
    use Field::*;
    Some(match field {
        ScopeName => view.scope.get().map_or("", |s| s.name.as_str()),
        ScopeVersion => view.scope.get().map_or("", |s| s.version.as_str()),
        MetricName => &view.metric.get()?.name,
        MetricDescription => &view.metric.get()?.description,
        MetricUnit => &view.metric.get()?.unit,
        SpanName => &view.span.get()?.name,
        SpanTraceState => &view.span.get()?.trace_state,
        EventName => &view.event.get()?.name,
        LogSeverityText => &view.log.get()?.severity_text,
        LogEventName => &view.log.get()?.event_name,
        _ => return None,
    })
}

/// The body (or any value) as the Collector's `AsString`: strings as is, others as JSON
/// or their printed form; the empty value is "".
pub(crate) fn any_as_string(value: Option<&AnyValue>) -> String {
    Value::from_any_opt(value)
        .to_string_like()
        .unwrap_or_default()
}

fn id_or_zero(id: &[u8], len: usize) -> Vec<u8> {
    if id.len() == len {
        id.to_vec()
    } else {
        vec![0; len]
    }
}

/// An id as hex; the all-zero (empty) id is "".
fn id_string(id: &[u8]) -> String {
    if id.iter().all(|b| *b == 0) {
        String::new()
    } else {
        hex_lower(id)
    }
}

/// Writes a field (without keys). The value's type must match the field.
pub(crate) fn set_field(view: &mut View<'_>, field: Field, value: Value) -> Result<(), String> {
    use Field::*;
    match field {
        Cache | ResourceAttributes | ScopeAttributes | PointAttributes | SpanAttributes
        | EventAttributes | LogAttributes => {
            let Value::Map(m) = value else {
                return Err(format!("expected a map but got {}", value.type_name()));
            };
            *view.map_mut(field)? = m;
        }
        ResourceDropped => {
            view.resource.get_mut()?.dropped_attributes_count = expect_int(value)? as u32
        }
        ScopeName => view.scope.get_mut()?.name = expect_str(value)?,
        ScopeVersion => view.scope.get_mut()?.version = expect_str(value)?,
        ScopeDropped => view.scope.get_mut()?.dropped_attributes_count = expect_int(value)? as u32,
        MetricName => view.metric.get_mut()?.name = expect_str(value)?,
        MetricDescription => view.metric.get_mut()?.description = expect_str(value)?,
        MetricUnit => view.metric.get_mut()?.unit = expect_str(value)?,
        MetricType => {
            return Err("metric.type cannot be set; use the convert_* functions".to_string());
        }
        MetricTemporality => {
            let t = expect_int(value)? as i32;
            if view.shape.is_some() {
                return Err("metric.aggregation_temporality cannot be set from the datapoint context; use the metric context".to_string());
            }
            match &mut view.metric.get_mut()?.data {
                Some(metric::Data::Sum(s)) => s.aggregation_temporality = t,
                Some(metric::Data::Histogram(h)) => h.aggregation_temporality = t,
                Some(metric::Data::ExponentialHistogram(h)) => h.aggregation_temporality = t,
                _ => {}
            }
        }
        MetricMonotonic => {
            let b = expect_bool(value)?;
            if view.shape.is_some() {
                return Err("metric.is_monotonic cannot be set from the datapoint context; use the metric context".to_string());
            }
            if let Some(metric::Data::Sum(s)) = &mut view.metric.get_mut()?.data {
                s.is_monotonic = b;
            }
        }
        PointStart(form) | PointTime(form) => {
            let ns = expect_time(value, form)?;
            let start = matches!(field, PointStart(_));
            let (s, t) = match view.point_mut()? {
                PointMut::Number(p) => (&mut p.start_time_unix_nano, &mut p.time_unix_nano),
                PointMut::Histogram(p) => (&mut p.start_time_unix_nano, &mut p.time_unix_nano),
                PointMut::ExponentialHistogram(p) => {
                    (&mut p.start_time_unix_nano, &mut p.time_unix_nano)
                }
                PointMut::Summary(p) => (&mut p.start_time_unix_nano, &mut p.time_unix_nano),
            };
            if start {
                *s = ns;
            } else {
                *t = ns;
            }
        }
        PointValueDouble => {
            let d = expect_double(value)?;
            if let PointMut::Number(p) = view.point_mut()? {
                p.value = Some(number_data_point::Value::AsDouble(d));
            }
        }
        PointValueInt => {
            let i = expect_int(value)?;
            if let PointMut::Number(p) = view.point_mut()? {
                p.value = Some(number_data_point::Value::AsInt(i));
            }
        }
        PointFlags => {
            let f = expect_int(value)? as u32;
            match view.point_mut()? {
                PointMut::Number(p) => p.flags = f,
                PointMut::Histogram(p) => p.flags = f,
                PointMut::ExponentialHistogram(p) => p.flags = f,
                PointMut::Summary(p) => p.flags = f,
            }
        }
        PointCount => {
            let c = expect_int(value)? as u64;
            match view.point_mut()? {
                PointMut::Histogram(p) => p.count = c,
                PointMut::ExponentialHistogram(p) => p.count = c,
                PointMut::Summary(p) => p.count = c,
                PointMut::Number(_) => {}
            }
        }
        PointSum => {
            let s = expect_double(value)?;
            match view.point_mut()? {
                PointMut::Histogram(p) => p.sum = Some(s),
                PointMut::ExponentialHistogram(p) => p.sum = Some(s),
                PointMut::Summary(p) => p.sum = s,
                PointMut::Number(_) => {}
            }
        }
        PointBucketCounts => {
            let v = expect_u64_list(value)?;
            if let PointMut::Histogram(p) = view.point_mut()? {
                p.bucket_counts = v;
            }
        }
        PointExplicitBounds => {
            let v = expect_f64_list(value)?;
            if let PointMut::Histogram(p) = view.point_mut()? {
                p.explicit_bounds = v;
            }
        }
        PointScale => {
            let v = expect_int(value)? as i32;
            if let PointMut::ExponentialHistogram(p) = view.point_mut()? {
                p.scale = v;
            }
        }
        PointZeroCount => {
            let v = expect_int(value)? as u64;
            if let PointMut::ExponentialHistogram(p) = view.point_mut()? {
                p.zero_count = v;
            }
        }
        PointPositiveOffset
        | PointNegativeOffset
        | PointPositiveBucketCounts
        | PointNegativeBucketCounts => {
            let offset = matches!(field, PointPositiveOffset | PointNegativeOffset);
            let (o, counts) = if offset {
                (Some(expect_int(value)? as i32), None)
            } else {
                (None, Some(expect_u64_list(value)?))
            };
            if let PointMut::ExponentialHistogram(p) = view.point_mut()? {
                let b = if matches!(field, PointPositiveOffset | PointPositiveBucketCounts) {
                    &mut p.positive
                } else {
                    &mut p.negative
                };
                let b = b.get_or_insert_with(Default::default);
                if let Some(o) = o {
                    b.offset = o;
                }
                if let Some(c) = counts {
                    b.bucket_counts = c;
                }
            }
        }
        SpanTraceId => view.span.get_mut()?.trace_id = expect_id(value, 16)?,
        SpanTraceIdString => view.span.get_mut()?.trace_id = expect_id_string(value, 16)?,
        SpanSpanId => view.span.get_mut()?.span_id = expect_id(value, 8)?,
        SpanSpanIdString => view.span.get_mut()?.span_id = expect_id_string(value, 8)?,
        SpanParentSpanId => view.span.get_mut()?.parent_span_id = expect_id(value, 8)?,
        SpanParentSpanIdString => view.span.get_mut()?.parent_span_id = expect_id_string(value, 8)?,
        SpanTraceState => view.span.get_mut()?.trace_state = expect_str(value)?,
        SpanName => view.span.get_mut()?.name = expect_str(value)?,
        SpanKind => view.span.get_mut()?.kind = expect_int(value)? as i32,
        SpanKindString => {
            let s = expect_str(value)?;
            let kind = SPAN_KIND_NAMES
                .iter()
                .position(|n| *n == s)
                .ok_or_else(|| {
                    format!(
                        "unknown span kind {s:?} (one of {})",
                        SPAN_KIND_NAMES.join(", ")
                    )
                })?;
            view.span.get_mut()?.kind = kind as i32;
        }
        SpanStart(form) => view.span.get_mut()?.start_time_unix_nano = expect_time(value, form)?,
        SpanEnd(form) => view.span.get_mut()?.end_time_unix_nano = expect_time(value, form)?,
        SpanDropped => view.span.get_mut()?.dropped_attributes_count = expect_int(value)? as u32,
        SpanDroppedEvents => view.span.get_mut()?.dropped_events_count = expect_int(value)? as u32,
        SpanDroppedLinks => view.span.get_mut()?.dropped_links_count = expect_int(value)? as u32,
        SpanStatusCode => {
            let code = expect_int(value)? as i32;
            view.span
                .get_mut()?
                .status
                .get_or_insert_with(Status::default)
                .code = code;
        }
        SpanStatusMessage => {
            let message = expect_str(value)?;
            view.span
                .get_mut()?
                .status
                .get_or_insert_with(Status::default)
                .message = message;
        }
        SpanFlags => view.span.get_mut()?.flags = expect_int(value)? as u32,
        EventName => view.event.get_mut()?.name = expect_str(value)?,
        EventTime(form) => view.event.get_mut()?.time_unix_nano = expect_time(value, form)?,
        EventDropped => view.event.get_mut()?.dropped_attributes_count = expect_int(value)? as u32,
        LogTime(form) => view.log.get_mut()?.time_unix_nano = expect_time(value, form)?,
        LogObservedTime(form) => {
            view.log.get_mut()?.observed_time_unix_nano = expect_time(value, form)?
        }
        LogSeverityNumber => view.log.get_mut()?.severity_number = expect_int(value)? as i32,
        LogSeverityText => view.log.get_mut()?.severity_text = expect_str(value)?,
        LogBody => view.log.get_mut()?.body = Some(value.into_any()?),
        LogBodyString => {
            let s = expect_str(value)?;
            view.log.get_mut()?.body = Some(AnyValue {
                value: Some(any_value::Value::StringValue(s)),
            });
        }
        LogDropped => view.log.get_mut()?.dropped_attributes_count = expect_int(value)? as u32,
        LogFlags => view.log.get_mut()?.flags = expect_int(value)? as u32,
        LogTraceId => view.log.get_mut()?.trace_id = expect_id(value, 16)?,
        LogTraceIdString => view.log.get_mut()?.trace_id = expect_id_string(value, 16)?,
        LogSpanId => view.log.get_mut()?.span_id = expect_id(value, 8)?,
        LogSpanIdString => view.log.get_mut()?.span_id = expect_id_string(value, 8)?,
        LogEventName => view.log.get_mut()?.event_name = expect_str(value)?,
    }
    Ok(())
}

/// What `field[keys...]` names, borrowed from the item: a whole map (a map field without
/// keys), or a value (None: absent, read as nil).
pub(crate) enum Found<'v> {
    Map(&'v [KeyValue]),
    Any(Option<&'v AnyValue>),
}

/// Finds `field[keys...]` without copying: a missing map key is nil; an index out of
/// range, or indexing a value that is neither map nor list, is an error.
pub(crate) fn lookup<'v>(
    view: &'v View<'_>,
    field: Field,
    keys: &[Key<'_>],
) -> Result<Found<'v>, String> {
    let (root, rest): (Option<&AnyValue>, &[Key<'_>]) = match field {
        Field::LogBody => (view.log.get().and_then(|l| l.body.as_ref()), keys),
        _ => {
            let Some(map) = view.map_ref(field) else {
                return Ok(Found::Any(None));
            };
            let Some((first, rest)) = keys.split_first() else {
                return Ok(Found::Map(map));
            };
            let Key::Str(k) = first else {
                return Err("a map must be indexed by a string".to_string());
            };
            match map_get(map, k) {
                Some(kv) => (kv.value.as_ref(), rest),
                None => return Ok(Found::Any(None)),
            }
        }
    };
    let mut current = root;
    for key in rest {
        let Some(value) = current else {
            return Ok(Found::Any(None));
        };
        current = match (&value.value, key) {
            (Some(any_value::Value::KvlistValue(m)), Key::Str(k)) => match map_get(&m.values, k) {
                Some(kv) => kv.value.as_ref(),
                None => return Ok(Found::Any(None)),
            },
            (Some(any_value::Value::KvlistValue(_)), Key::Int(_)) => {
                return Err("a map must be indexed by a string".to_string());
            }
            (Some(any_value::Value::ArrayValue(a)), Key::Int(i)) => {
                match usize::try_from(*i).ok().and_then(|i| a.values.get(i)) {
                    Some(v) => Some(v),
                    None => return Err(format!("index {i} out of bounds")),
                }
            }
            (Some(any_value::Value::ArrayValue(_)), Key::Str(_)) => {
                return Err("a slice must be indexed by an int".to_string());
            }
            (None, _) => return Ok(Found::Any(None)),
            (_, _) => {
                return Err(format!(
                    "type {} does not support indexing",
                    Value::from_any(value).type_name()
                ));
            }
        };
    }
    Ok(Found::Any(current))
}

/// Reads `field[keys...]` as a value (see [`lookup`]).
pub(crate) fn get_indexed(
    view: &View<'_>,
    field: Field,
    keys: &[Key<'_>],
) -> Result<Value, String> {
    Ok(match lookup(view, field, keys)? {
        Found::Map(map) => Value::Map(map.to_vec()),
        Found::Any(any) => Value::from_any_opt(any),
    })
}

/// The value at `field[keys...]` for changing in place, when it exists (a map field
/// with at least one key, or the log body); None when it is absent or on the way is
/// something that is not a map or list (callers then take the general path, which
/// reports the same errors as reading).
pub(crate) fn value_mut<'v>(
    view: &'v mut View<'_>,
    field: Field,
    keys: &[Key<'_>],
) -> Option<&'v mut AnyValue> {
    let (mut current, rest): (&mut AnyValue, &[Key<'_>]) = match field {
        Field::LogBody => (view.log.get_mut().ok()?.body.as_mut()?, keys),
        _ => {
            let (first, rest) = keys.split_first()?;
            let Key::Str(k) = first else {
                return None;
            };
            let map = view.map_mut(field).ok()?;
            let kv = map.iter_mut().find(|kv| kv.key == *k)?;
            (kv.value.as_mut()?, rest)
        }
    };
    for key in rest {
        current = match (&mut current.value, key) {
            (Some(any_value::Value::KvlistValue(m)), Key::Str(k)) => m
                .values
                .iter_mut()
                .find(|kv| kv.key == *k)?
                .value
                .as_mut()?,
            (Some(any_value::Value::ArrayValue(a)), Key::Int(i)) => {
                a.values.get_mut(usize::try_from(*i).ok()?)?
            }
            _ => return None,
        };
    }
    Some(current)
}

/// The map at `field[keys...]` for changing in place, when there is one (a map field, or
/// a map value inside one or inside the log body); None otherwise.
pub(crate) fn map_at_mut<'v>(
    view: &'v mut View<'_>,
    field: Field,
    keys: &[Key<'_>],
) -> Option<&'v mut Vec<KeyValue>> {
    if keys.is_empty() && field != Field::LogBody {
        return view.map_mut(field).ok();
    }
    match &mut value_mut(view, field, keys)?.value {
        Some(any_value::Value::KvlistValue(m)) => Some(&mut m.values),
        _ => None,
    }
}

/// Writes `field[keys...] = value`, creating maps (string key) or lists padded with empty
/// values (int key) where the value on the way is empty, as the Collector does.
pub(crate) fn set_indexed(
    view: &mut View<'_>,
    field: Field,
    keys: &[Key<'_>],
    value: Value,
) -> Result<(), String> {
    let new = value.into_any()?;
    if field == Field::LogBody {
        let body = view
            .log
            .get_mut()?
            .body
            .get_or_insert_with(AnyValue::default);
        return set_in_any(body, keys, new);
    }
    let map = view.map_mut(field)?;
    let mut root = AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: std::mem::take(map),
        })),
    };
    let result = set_in_any(&mut root, keys, new);
    if let Some(any_value::Value::KvlistValue(kv)) = root.value {
        *map = kv.values;
    }
    result
}

fn set_in_any(root: &mut AnyValue, keys: &[Key<'_>], new: AnyValue) -> Result<(), String> {
    let mut current = root;
    for key in keys {
        if current.value.is_none() {
            current.value = Some(match key {
                Key::Str(_) => any_value::Value::KvlistValue(KeyValueList::default()),
                Key::Int(i) => {
                    let n = usize::try_from(*i).map_err(|_| format!("index {i} out of bounds"))?;
                    any_value::Value::ArrayValue(
                        opentelemetry_proto::tonic::common::v1::ArrayValue {
                            values: vec![AnyValue::default(); n + 1],
                        },
                    )
                }
            });
        }
        current = match (&mut current.value, key) {
            (Some(any_value::Value::KvlistValue(m)), Key::Str(k)) => {
                let pos = match m.values.iter().position(|kv| kv.key == *k) {
                    Some(p) => p,
                    None => {
                        m.values.push(KeyValue {
                            key: k.to_string(),
                            value: Some(AnyValue::default()),
                            ..Default::default()
                        });
                        m.values.len() - 1
                    }
                };
                m.values[pos].value.get_or_insert_with(AnyValue::default)
            }
            (Some(any_value::Value::KvlistValue(_)), Key::Int(_)) => {
                return Err("a map must be indexed by a string".to_string());
            }
            (Some(any_value::Value::ArrayValue(a)), Key::Int(i)) => {
                let len = a.values.len();
                match usize::try_from(*i).ok().and_then(|i| a.values.get_mut(i)) {
                    Some(v) => v,
                    None => return Err(format!("index {i} out of bounds (length {len})")),
                }
            }
            (Some(any_value::Value::ArrayValue(_)), Key::Str(_)) => {
                return Err("a slice must be indexed by an int".to_string());
            }
            (Some(other), _) => {
                let name = Value::from_any(&AnyValue {
                    value: Some(other.clone()),
                })
                .type_name();
                return Err(format!("type {name} does not support indexing"));
            }
            (None, _) => return Err("internal: empty value after creation".to_string()),
        };
    }
    *current = new;
    Ok(())
}
