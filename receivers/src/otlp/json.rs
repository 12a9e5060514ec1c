//! OTLP/JSON bodies of the HTTP receiver: serde_json into opentelemetry-proto's types, with
//! the oneof fields of metrics checked strictly.
//!
//! opentelemetry-proto maps the `Metric.data`, `NumberDataPoint.value` and
//! `Exemplar.value` oneofs with `#[serde(flatten)]` on an `Option`, and serde turns ANY
//! error inside a flattened `Option` into `None`: `timeUnixNano: true` in a point makes the
//! whole metric arrive without data, `asDouble: {}` makes the point arrive without a value,
//! and the request would be answered 200. The Collector answers 400. So after the parse,
//! every metric that came out without data, and every number point or exemplar without a
//! value, is looked at again in the JSON (only those metrics are materialised, see
//! [`metric_values`]; a request without such a metric costs one walk over the parsed
//! points):
//!
//! - no oneof key in the JSON (or `null`): nothing was lost, kept as is (valid OTLP);
//! - a oneof key present: it is deserialized strictly (no `flatten`), and either its value
//!   is what the client meant (kept) or the request is refused with a message naming the
//!   field: `resourceMetrics[0].scopeMetrics[0].metrics[1].gauge.dataPoints[0].timeUnixNano:
//!   invalid type: boolean `true`, expected ...`.
//!
//! The proto3 JSON mapping lets doubles be strings (`"NaN"`, `"Infinity"`, `"-Infinity"`,
//! `"1.5"`); opentelemetry-proto's plain `f64` fields refuse strings, so these are read
//! here for `asDouble` (points, exemplars) and the points' `sum`, `min`, `max`,
//! `zeroThreshold` (what Python's `json_format` writes for NaN and infinities). Likewise
//! `aggregationTemporality` as an enum name (`"AGGREGATION_TEMPORALITY_CUMULATIVE"`,
//! `json_format`'s default) is read as its number. Both used to drop the metric silently.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, Sum, Summary, SummaryDataPoint, exemplar, metric,
    number_data_point,
};
use oxcol_core::{Batch, Signal};
use serde::Deserialize;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::{Map, Value};

/// (resource, scope, metric) indices.
type MetricIndex = (usize, usize, usize);

const DATA_KEYS: [&str; 5] = [
    "gauge",
    "sum",
    "histogram",
    "exponentialHistogram",
    "summary",
];

/// Parses an OTLP/JSON request body of `signal` (the message says what is wrong).
pub fn parse(signal: Signal, body: &[u8]) -> Result<Batch, String> {
    match signal {
        Signal::Metrics => parse_metrics(body).map(|r| Batch::from_metrics(r.resource_metrics)),
        Signal::Traces => serde_json::from_slice::<ExportTraceServiceRequest>(body)
            .map(|r| Batch::from_traces(r.resource_spans))
            .map_err(invalid),
        Signal::Logs => serde_json::from_slice::<ExportLogsServiceRequest>(body)
            .map(|r| Batch::from_logs(r.resource_logs))
            .map_err(invalid),
    }
}

fn invalid(error: serde_json::Error) -> String {
    format!("invalid OTLP/JSON: {error}")
}

/// Parses an OTLP/JSON metrics request, refusing wrong oneof fields (see the module doc).
pub fn parse_metrics(body: &[u8]) -> Result<ExportMetricsServiceRequest, String> {
    let mut request: ExportMetricsServiceRequest = serde_json::from_slice(body).map_err(invalid)?;
    let mut suspects = BTreeSet::new();
    for (i, resource) in request.resource_metrics.iter().enumerate() {
        for (j, scope) in resource.scope_metrics.iter().enumerate() {
            for (k, metric) in scope.metrics.iter().enumerate() {
                if lost_something(metric) {
                    suspects.insert((i, j, k));
                }
            }
        }
    }
    if suspects.is_empty() {
        return Ok(request);
    }
    let values = metric_values(body, &suspects).map_err(invalid)?;
    for ((i, j, k), json) in &values {
        let Some(metric) = request
            .resource_metrics
            .get_mut(*i)
            .and_then(|r| r.scope_metrics.get_mut(*j))
            .and_then(|s| s.metrics.get_mut(*k))
        else {
            continue;
        };
        let path = format!("resourceMetrics[{i}].scopeMetrics[{j}].metrics[{k}]");
        if let Err(problem) = check_metric(&path, json, metric) {
            return Err(format!(
                "invalid OTLP/JSON: metric {:?}: {problem}",
                metric.name
            ));
        }
    }
    Ok(request)
}

/// A metric the flattened serde mapping may have emptied: no data, or a number point or
/// exemplar without a value.
fn lost_something(metric: &Metric) -> bool {
    let exemplars = |e: &[Exemplar]| e.iter().any(|e| e.value.is_none());
    let numbers = |points: &[NumberDataPoint]| {
        points
            .iter()
            .any(|p| p.value.is_none() || exemplars(&p.exemplars))
    };
    match &metric.data {
        None => true,
        Some(metric::Data::Gauge(g)) => numbers(&g.data_points),
        Some(metric::Data::Sum(s)) => numbers(&s.data_points),
        Some(metric::Data::Histogram(h)) => h.data_points.iter().any(|p| exemplars(&p.exemplars)),
        Some(metric::Data::ExponentialHistogram(h)) => {
            h.data_points.iter().any(|p| exemplars(&p.exemplars))
        }
        Some(metric::Data::Summary(_)) => false,
    }
}

/// Checks one suspect metric against its JSON, restoring what the client sent or naming
/// the wrong field.
fn check_metric(path: &str, json: &Value, metric: &mut Metric) -> Result<(), String> {
    let Some(object) = json.as_object() else {
        return Ok(());
    };
    if metric.data.is_none() {
        let present: Vec<(&str, &Value)> = DATA_KEYS
            .iter()
            .filter_map(|k| object.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
            .collect();
        if present.len() > 1 {
            return Err(format!(
                "{path}: more than one of gauge, sum, histogram, exponentialHistogram, summary is set"
            ));
        }
        if let Some((key, value)) = present.first() {
            metric.data = Some(strict_data(&format!("{path}.{key}"), key, value)?);
        }
    }
    let points = |key: &str| object.get(key).and_then(|d| d.get("dataPoints"));
    match &mut metric.data {
        Some(metric::Data::Gauge(g)) => number_points(
            &format!("{path}.gauge"),
            points("gauge"),
            &mut g.data_points,
        ),
        Some(metric::Data::Sum(s)) => {
            number_points(&format!("{path}.sum"), points("sum"), &mut s.data_points)
        }
        Some(metric::Data::Histogram(h)) => {
            for (n, point) in h.data_points.iter_mut().enumerate() {
                exemplars(
                    &format!("{path}.histogram.dataPoints[{n}]"),
                    points("histogram").and_then(|p| p.get(n)),
                    &mut point.exemplars,
                )?;
            }
            Ok(())
        }
        Some(metric::Data::ExponentialHistogram(h)) => {
            for (n, point) in h.data_points.iter_mut().enumerate() {
                exemplars(
                    &format!("{path}.exponentialHistogram.dataPoints[{n}]"),
                    points("exponentialHistogram").and_then(|p| p.get(n)),
                    &mut point.exemplars,
                )?;
            }
            Ok(())
        }
        Some(metric::Data::Summary(_)) | None => Ok(()),
    }
}

/// Deserializes the `key` oneof of a metric without `flatten`, so that an error is an
/// error. Doubles written as strings in the points' scalar double fields are read first.
fn strict_data(path: &str, key: &str, value: &Value) -> Result<metric::Data, String> {
    let mut value = value.clone();
    enum_names(&mut value);
    let doubles = take_string_doubles(key, &mut value);
    let parsed = match key {
        "gauge" => Gauge::deserialize(&value).map(metric::Data::Gauge),
        "sum" => Sum::deserialize(&value).map(metric::Data::Sum),
        "histogram" => Histogram::deserialize(&value).map(metric::Data::Histogram),
        "exponentialHistogram" => {
            ExponentialHistogram::deserialize(&value).map(metric::Data::ExponentialHistogram)
        }
        _ => Summary::deserialize(&value).map(metric::Data::Summary),
    };
    let mut data = parsed.map_err(|error| match key {
        "gauge" => locate::<Gauge, NumberDataPoint>(path, &value, error),
        "sum" => locate::<Sum, NumberDataPoint>(path, &value, error),
        "histogram" => locate::<Histogram, HistogramDataPoint>(path, &value, error),
        "exponentialHistogram" => {
            locate::<ExponentialHistogram, ExponentialHistogramDataPoint>(path, &value, error)
        }
        _ => locate::<Summary, SummaryDataPoint>(path, &value, error),
    })?;
    for (n, field, x) in doubles {
        match &mut data {
            metric::Data::Histogram(h) => {
                if let Some(p) = h.data_points.get_mut(n) {
                    match field {
                        "sum" => p.sum = Some(x),
                        "min" => p.min = Some(x),
                        _ => p.max = Some(x),
                    }
                }
            }
            metric::Data::ExponentialHistogram(h) => {
                if let Some(p) = h.data_points.get_mut(n) {
                    match field {
                        "sum" => p.sum = Some(x),
                        "min" => p.min = Some(x),
                        "max" => p.max = Some(x),
                        _ => p.zero_threshold = x,
                    }
                }
            }
            metric::Data::Summary(s) => {
                if let Some(p) = s.data_points.get_mut(n) {
                    p.sum = x;
                }
            }
            _ => {}
        }
    }
    Ok(data)
}

/// `aggregationTemporality` written as its proto enum name (protobuf's JSON mapping by
/// default; OTLP/JSON says integers) becomes the integer opentelemetry-proto reads.
fn enum_names(value: &mut Value) {
    let Some(temporality) = value.get_mut("aggregationTemporality") else {
        return;
    };
    let number = match temporality.as_str() {
        Some("AGGREGATION_TEMPORALITY_UNSPECIFIED") => 0,
        Some("AGGREGATION_TEMPORALITY_DELTA") => 1,
        Some("AGGREGATION_TEMPORALITY_CUMULATIVE") => 2,
        _ => return,
    };
    *temporality = Value::from(number);
}

/// Removes the scalar double fields of the points that are proto3 JSON strings and
/// returns them as (point index, field, value); anything else is left for serde to judge.
fn take_string_doubles(key: &str, value: &mut Value) -> Vec<(usize, &'static str, f64)> {
    let fields: &[&'static str] = match key {
        "histogram" => &["sum", "min", "max"],
        "exponentialHistogram" => &["sum", "min", "max", "zeroThreshold"],
        "summary" => &["sum"],
        _ => &[],
    };
    let mut taken = Vec::new();
    if fields.is_empty() {
        return taken;
    }
    let Some(points) = value.get_mut("dataPoints").and_then(Value::as_array_mut) else {
        return taken;
    };
    for (n, point) in points.iter_mut().enumerate() {
        let Some(point) = point.as_object_mut() else {
            continue;
        };
        for field in fields {
            if let Some(x) = point
                .get(*field)
                .and_then(Value::as_str)
                .and_then(proto3_double)
            {
                point.remove(*field);
                taken.push((n, *field, x));
            }
        }
    }
    taken
}

/// A double as the proto3 JSON mapping writes it in a string: `NaN`, `Infinity`,
/// `-Infinity` or a decimal number (Rust's own spellings such as `inf` are not accepted).
fn proto3_double(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ if !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')) =>
        {
            text.parse().ok()
        }
        _ => None,
    }
}

/// A JSON number, or a string as [`proto3_double`] reads it.
fn json_double(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => proto3_double(s),
        _ => None,
    }
}

/// Names the field of the oneof message `D` (points of type `P`) that fails: the first
/// data point that does not deserialize and its first field that does not on its own, or
/// the first other field of `D`. Falls back to serde's message for the whole.
fn locate<D: DeserializeOwned, P: DeserializeOwned>(
    path: &str,
    value: &Value,
    error: serde_json::Error,
) -> String {
    let Some(fields) = value.as_object() else {
        return format!("{path}: {error}");
    };
    for (field, inner) in fields {
        if let (true, Some(points)) = (field == "dataPoints", inner.as_array()) {
            for (n, point) in points.iter().enumerate() {
                let Err(point_error) = P::deserialize(point) else {
                    continue;
                };
                return match first_failing_field::<P>(point) {
                    Some((name, field_error)) => {
                        format!("{path}.dataPoints[{n}].{name}: {field_error}")
                    }
                    None => format!("{path}.dataPoints[{n}]: {point_error}"),
                };
            }
        }
        if let Err(field_error) = D::deserialize(&single(field, inner)) {
            return format!("{path}.{field}: {field_error}");
        }
    }
    format!("{path}: {error}")
}

/// The first field of the object `value` that `T` (whose fields all have defaults) cannot
/// deserialize on its own.
fn first_failing_field<T: DeserializeOwned>(value: &Value) -> Option<(String, serde_json::Error)> {
    let fields = value.as_object()?;
    fields.iter().find_map(|(name, inner)| {
        T::deserialize(&single(name, inner))
            .err()
            .map(|e| (name.clone(), e))
    })
}

fn single(name: &str, value: &Value) -> Value {
    let mut object = Map::new();
    object.insert(name.to_string(), value.clone());
    Value::Object(object)
}

/// Restores or refuses the `value` oneof of number points (and their exemplars).
fn number_points(
    path: &str,
    json: Option<&Value>,
    points: &mut [NumberDataPoint],
) -> Result<(), String> {
    for (n, point) in points.iter_mut().enumerate() {
        let Some(point_json) = json.and_then(|p| p.get(n)) else {
            continue;
        };
        if point.value.is_none() {
            point.value = oneof_value(
                &format!("{path}.dataPoints[{n}]"),
                point_json,
                number_data_point::Value::AsDouble,
                |v| number_data_point::Value::deserialize(&single("asInt", v)),
            )?;
        }
        exemplars(
            &format!("{path}.dataPoints[{n}]"),
            Some(point_json),
            &mut point.exemplars,
        )?;
    }
    Ok(())
}

fn exemplars(
    path: &str,
    point_json: Option<&Value>,
    exemplars: &mut [Exemplar],
) -> Result<(), String> {
    for (e, exemplar) in exemplars.iter_mut().enumerate() {
        if exemplar.value.is_some() {
            continue;
        }
        let Some(json) = point_json
            .and_then(|p| p.get("exemplars"))
            .and_then(|x| x.get(e))
        else {
            continue;
        };
        exemplar.value = oneof_value(
            &format!("{path}.exemplars[{e}]"),
            json,
            exemplar::Value::AsDouble,
            |v| exemplar::Value::deserialize(&single("asInt", v)),
        )?;
    }
    Ok(())
}

/// The `asDouble` / `asInt` oneof of a point or exemplar whose value serde dropped: None
/// when neither is in the JSON (or null), the value when it is valid proto3 JSON, else
/// an error naming the field.
fn oneof_value<T>(
    path: &str,
    json: &Value,
    as_double: fn(f64) -> T,
    as_int: impl Fn(&Value) -> Result<T, serde_json::Error>,
) -> Result<Option<T>, String> {
    if let Some(value) = json.get("asDouble").filter(|v| !v.is_null()) {
        return match json_double(value) {
            Some(x) => Ok(Some(as_double(x))),
            None => Err(format!(
                "{path}.asDouble: expected a number or one of \"NaN\", \"Infinity\", \"-Infinity\", got {}",
                Brief(value)
            )),
        };
    }
    if let Some(value) = json.get("asInt").filter(|v| !v.is_null()) {
        return as_int(value)
            .map(Some)
            .map_err(|e| format!("{path}.asInt: {e}"));
    }
    Ok(None)
}

/// A JSON value in a message, cut at 40 characters.
struct Brief<'a>(&'a Value);

impl fmt::Display for Brief<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        match text.char_indices().nth(40) {
            Some((at, _)) => write!(f, "{}...", &text[..at]),
            None => f.write_str(&text),
        }
    }
}

/// The JSON of the metrics at `wanted`, read from the body without materialising
/// anything else (every other value is skipped with `IgnoredAny`).
fn metric_values(
    body: &[u8],
    wanted: &BTreeSet<MetricIndex>,
) -> Result<BTreeMap<MetricIndex, Value>, serde_json::Error> {
    let mut found = BTreeMap::new();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    ObjectSeed {
        stage: Stage::Request,
        wanted,
        found: &mut found,
    }
    .deserialize(&mut deserializer)?;
    Ok(found)
}

#[derive(Clone, Copy)]
enum Stage {
    /// `{"resourceMetrics": [...]}`
    Request,
    /// `{"scopeMetrics": [...]}` of resource i
    Resource(usize),
    /// `{"metrics": [...]}` of scope j of resource i
    Scope(usize, usize),
}

impl Stage {
    fn key(self) -> &'static str {
        match self {
            Stage::Request => "resourceMetrics",
            Stage::Resource(_) => "scopeMetrics",
            Stage::Scope(..) => "metrics",
        }
    }
}

struct ObjectSeed<'s> {
    stage: Stage,
    wanted: &'s BTreeSet<MetricIndex>,
    found: &'s mut BTreeMap<MetricIndex, Value>,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an OTLP/JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == self.stage.key() {
                map.next_value_seed(ListSeed {
                    stage: self.stage,
                    wanted: self.wanted,
                    found: &mut *self.found,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct ListSeed<'s> {
    stage: Stage,
    wanted: &'s BTreeSet<MetricIndex>,
    found: &'s mut BTreeMap<MetricIndex, Value>,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an OTLP/JSON array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for n in 0.. {
            let more = match self.stage {
                Stage::Request => seq.next_element_seed(ObjectSeed {
                    stage: Stage::Resource(n),
                    wanted: self.wanted,
                    found: &mut *self.found,
                })?,
                Stage::Resource(i) => seq.next_element_seed(ObjectSeed {
                    stage: Stage::Scope(i, n),
                    wanted: self.wanted,
                    found: &mut *self.found,
                })?,
                Stage::Scope(i, j) if self.wanted.contains(&(i, j, n)) => {
                    match seq.next_element::<Value>()? {
                        Some(value) => {
                            self.found.insert((i, j, n), value);
                            Some(())
                        }
                        None => None,
                    }
                }
                Stage::Scope(..) => seq.next_element::<IgnoredAny>()?.map(|_| ()),
            };
            if more.is_none() {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
