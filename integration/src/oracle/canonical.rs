//! The canonical form of what a collector exported, so that two collectors' outputs compare
//! equal exactly when they carry the same content, however either one batched, split or
//! ordered its requests.
//!
//! Every request of a signal is merged into one tree: identical resources (resource and
//! schema URL) are one node, identical scopes under them one node, identical metrics (every
//! field but the data points) one node; then every level is sorted, and attribute lists
//! (`attributes`, `filteredAttributes`, `metadata`, and the entries of map values) are
//! sorted by key, because their order is not content. Nothing else is normalized: a changed
//! value, unit, description, type, temporality, flag, timestamp, a lost or duplicated item,
//! an empty resource or scope left behind, all show as a difference. The one opt-in
//! exception is [`Options::wall_clock_timestamps`], for components that stamp points with
//! the time of day (a count connector): then a non-zero point timestamp reads `"<wall
//! clock>"`, so that a zero on one side and a time on the other still differ.
//!
//! Absent and empty optional messages are the same here (a resource, a scope, a span
//! status, an attribute's value, a log body): proto3 gives them one meaning, and the
//! Collector's pdata cannot even tell them apart (it always writes them), so a relay that
//! keeps an absent resource absent is not different from one that writes it empty.
//!
//! Items are written as OTLP/JSON (opentelemetry-proto's serde mapping: hex trace and span
//! ids, int64 as strings), one item per line, indented by level: a line diff of two
//! canonical forms is the readable account of a mismatch ([`super::diff`]).

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use serde::Serialize;
use serde_json::Value;

/// Everything one collector exported during a case, request by request.
#[derive(Clone, Debug, Default)]
pub struct Output {
    pub metrics: Vec<ExportMetricsServiceRequest>,
    pub traces: Vec<ExportTraceServiceRequest>,
    pub logs: Vec<ExportLogsServiceRequest>,
}

/// What the comparison may treat as equal beyond order and batching.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Metric points' `timeUnixNano` and `startTimeUnixNano`, when non-zero, are replaced
    /// by `"<wall clock>"` (for components that stamp points with the current time).
    pub wall_clock_timestamps: bool,
}

/// JSON keys whose value is a list of `{key, value}` attributes, sorted by key.
const ATTRIBUTE_LISTS: [&str; 4] = ["attributes", "filteredAttributes", "metadata", "values"];

/// resource -> scope -> group (a metric's identity; "" for spans and logs) -> items.
type Tree = BTreeMap<String, BTreeMap<String, BTreeMap<String, Vec<String>>>>;

/// The canonical lines of `output`: a `== <signal>` header per signal that has any
/// request, then the sorted, merged tree.
pub fn canonical_lines(output: &Output, options: Options) -> Vec<String> {
    let mut lines = Vec::new();
    if !output.metrics.is_empty() {
        lines.push("== metrics".to_string());
        render(
            &metrics_tree(&output.metrics, options),
            "metric",
            "point",
            &mut lines,
        );
    }
    if !output.traces.is_empty() {
        lines.push("== traces".to_string());
        render(&traces_tree(&output.traces), "", "span", &mut lines);
    }
    if !output.logs.is_empty() {
        lines.push("== logs".to_string());
        render(&logs_tree(&output.logs), "", "log", &mut lines);
    }
    lines
}

fn metrics_tree(requests: &[ExportMetricsServiceRequest], options: Options) -> Tree {
    let mut tree = Tree::new();
    for resource_metrics in requests.iter().flat_map(|r| &r.resource_metrics) {
        let mut resource_key = resource_metrics.clone();
        resource_key.scope_metrics.clear();
        resource_key.resource.get_or_insert_default();
        let scopes = tree.entry(text(&resource_key)).or_default();
        for scope_metrics in &resource_metrics.scope_metrics {
            let mut scope_key = scope_metrics.clone();
            scope_key.metrics.clear();
            scope_key.scope.get_or_insert_default();
            let groups = scopes.entry(text(&scope_key)).or_default();
            for metric in &scope_metrics.metrics {
                let mut identity = metric.clone();
                let points = take_points(&mut identity, options);
                groups.entry(text(&identity)).or_default().extend(points);
            }
        }
    }
    tree
}

/// Removes the data points from `metric` (keeping its type, temporality and monotonicity)
/// and returns them as canonical text.
fn take_points(
    metric: &mut opentelemetry_proto::tonic::metrics::v1::Metric,
    options: Options,
) -> Vec<String> {
    let point_text = |json: Value| point_text(json, options);
    match metric.data.as_mut() {
        None => Vec::new(),
        Some(Data::Gauge(gauge)) => std::mem::take(&mut gauge.data_points)
            .iter()
            .map(|p| point_text(json(p)))
            .collect(),
        Some(Data::Sum(sum)) => std::mem::take(&mut sum.data_points)
            .iter()
            .map(|p| point_text(json(p)))
            .collect(),
        Some(Data::Histogram(histogram)) => std::mem::take(&mut histogram.data_points)
            .iter()
            .map(|p| point_text(json(p)))
            .collect(),
        Some(Data::ExponentialHistogram(histogram)) => std::mem::take(&mut histogram.data_points)
            .iter()
            .map(|p| point_text(json(p)))
            .collect(),
        Some(Data::Summary(summary)) => std::mem::take(&mut summary.data_points)
            .iter()
            .map(|p| point_text(json(p)))
            .collect(),
    }
}

fn point_text(mut point: Value, options: Options) -> String {
    if options.wall_clock_timestamps
        && let Value::Object(fields) = &mut point
    {
        for key in ["timeUnixNano", "startTimeUnixNano"] {
            if let Some(value) = fields.get_mut(key)
                && !is_zero(value)
            {
                *value = Value::String("<wall clock>".to_string());
            }
        }
    }
    normalized_text(point)
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(text) => text == "0",
        Value::Number(number) => number.as_u64() == Some(0),
        Value::Null => true,
        _ => false,
    }
}

fn traces_tree(requests: &[ExportTraceServiceRequest]) -> Tree {
    let mut tree = Tree::new();
    for resource_spans in requests.iter().flat_map(|r| &r.resource_spans) {
        let mut resource_key = resource_spans.clone();
        resource_key.scope_spans.clear();
        resource_key.resource.get_or_insert_default();
        let scopes = tree.entry(text(&resource_key)).or_default();
        for scope_spans in &resource_spans.scope_spans {
            let mut scope_key = scope_spans.clone();
            scope_key.spans.clear();
            scope_key.scope.get_or_insert_default();
            let items = scopes
                .entry(text(&scope_key))
                .or_default()
                .entry(String::new())
                .or_default();
            items.extend(scope_spans.spans.iter().map(|span| {
                let mut span = span.clone();
                span.status.get_or_insert_default();
                text(&span)
            }));
        }
    }
    tree
}

fn logs_tree(requests: &[ExportLogsServiceRequest]) -> Tree {
    let mut tree = Tree::new();
    for resource_logs in requests.iter().flat_map(|r| &r.resource_logs) {
        let mut resource_key = resource_logs.clone();
        resource_key.scope_logs.clear();
        resource_key.resource.get_or_insert_default();
        let scopes = tree.entry(text(&resource_key)).or_default();
        for scope_logs in &resource_logs.scope_logs {
            let mut scope_key = scope_logs.clone();
            scope_key.log_records.clear();
            scope_key.scope.get_or_insert_default();
            let items = scopes
                .entry(text(&scope_key))
                .or_default()
                .entry(String::new())
                .or_default();
            items.extend(scope_logs.log_records.iter().map(text));
        }
    }
    tree
}

/// Writes the tree, sorted, two spaces of indent per level. `group_word` is empty for
/// signals without a group level (the items then sit right under the scope).
fn render(tree: &Tree, group_word: &str, item_word: &str, lines: &mut Vec<String>) {
    for (resource, scopes) in tree {
        lines.push(format!("resource {resource}"));
        for (scope, groups) in scopes {
            lines.push(format!("  scope {scope}"));
            for (group, items) in groups {
                let indent = if group_word.is_empty() {
                    "    "
                } else {
                    lines.push(format!("    {group_word} {group}"));
                    "      "
                };
                let mut items = items.clone();
                items.sort();
                lines.extend(
                    items
                        .into_iter()
                        .map(|item| format!("{indent}{item_word} {item}")),
                );
            }
        }
    }
}

fn json<T: Serialize>(value: &T) -> Value {
    // opentelemetry-proto's types serialize to JSON for every value they can hold (NaN
    // becomes null); an error here would be a bug in that mapping, and it is shown as such.
    serde_json::to_value(value)
        .unwrap_or_else(|error| Value::String(format!("<not serializable: {error}>")))
}

fn text<T: Serialize>(value: &T) -> String {
    normalized_text(json(value))
}

fn normalized_text(mut value: Value) -> String {
    normalize_json(&mut value);
    value.to_string()
}

/// At every depth: sorts each list of `{key, value}` entries by key (stable, so repeated
/// keys keep their order), and writes an absent attribute value or log body as the empty
/// value (`{}`), as the Collector's pdata always does.
fn normalize_json(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(normalize_json),
        Value::Object(fields) => {
            let is_attribute = fields.contains_key("key");
            for (name, field) in fields.iter_mut() {
                if field.is_null() && ((is_attribute && name == "value") || name == "body") {
                    *field = Value::Object(serde_json::Map::new());
                }
                normalize_json(field);
                if ATTRIBUTE_LISTS.contains(&name.as_str())
                    && let Value::Array(entries) = field
                    && entries
                        .iter()
                        .all(|entry| entry.get("key").is_some_and(Value::is_string))
                {
                    entries.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, InstrumentationScope, KeyValue, KeyValueList,
    };
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, number_data_point,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn attribute(key: &str, value: Any) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn point(value: f64, time: u64, attributes: Vec<KeyValue>) -> NumberDataPoint {
        NumberDataPoint {
            attributes,
            time_unix_nano: time,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..Default::default()
        }
    }

    fn request(resource: &str, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![attribute("service.name", Any::StringValue(resource.into()))],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "s".into(),
                        ..Default::default()
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
        Metric {
            name: name.into(),
            data: Some(Data::Gauge(Gauge {
                data_points: points,
            })),
            ..Default::default()
        }
    }

    fn lines(metrics: Vec<ExportMetricsServiceRequest>, options: Options) -> Vec<String> {
        canonical_lines(
            &Output {
                metrics,
                ..Default::default()
            },
            options,
        )
    }

    #[test]
    fn batching_and_order_do_not_matter_but_duplicates_do() {
        let a = point(1.0, 10, vec![attribute("k", Any::IntValue(1))]);
        let b = point(2.0, 20, vec![attribute("k", Any::IntValue(2))]);
        let one_request = lines(
            vec![request("r", vec![gauge("g", vec![a.clone(), b.clone()])])],
            Options::default(),
        );
        let split_reversed = lines(
            vec![
                request("r", vec![gauge("g", vec![b.clone()])]),
                request("r", vec![gauge("g", vec![a.clone()])]),
            ],
            Options::default(),
        );
        assert_eq!(one_request, split_reversed);
        assert_eq!(
            one_request
                .iter()
                .filter(|line| line.trim_start().starts_with("point "))
                .count(),
            2
        );
        let duplicated = lines(
            vec![request(
                "r",
                vec![gauge("g", vec![a.clone(), a.clone(), b])],
            )],
            Options::default(),
        );
        assert_ne!(one_request, duplicated);
    }

    #[test]
    fn attribute_order_is_not_content_but_values_and_types_are() {
        let ab = point(
            1.0,
            10,
            vec![
                attribute("a", Any::IntValue(1)),
                attribute("b", Any::StringValue("x".into())),
            ],
        );
        let ba = point(
            1.0,
            10,
            vec![
                attribute("b", Any::StringValue("x".into())),
                attribute("a", Any::IntValue(1)),
            ],
        );
        let a_as_string = point(
            1.0,
            10,
            vec![
                attribute("a", Any::StringValue("1".into())),
                attribute("b", Any::StringValue("x".into())),
            ],
        );
        let canonical = |p: NumberDataPoint| {
            lines(
                vec![request("r", vec![gauge("g", vec![p])])],
                Options::default(),
            )
        };
        assert_eq!(canonical(ab.clone()), canonical(ba));
        assert_ne!(canonical(ab), canonical(a_as_string));
    }

    #[test]
    fn map_values_are_sorted_by_key_at_every_depth() {
        let map = |entries: Vec<KeyValue>| Any::KvlistValue(KeyValueList { values: entries });
        let inner_xy = map(vec![
            attribute("x", Any::BoolValue(true)),
            attribute("y", Any::BoolValue(false)),
        ]);
        let inner_yx = map(vec![
            attribute("y", Any::BoolValue(false)),
            attribute("x", Any::BoolValue(true)),
        ]);
        let first = point(
            1.0,
            10,
            vec![attribute(
                "m",
                map(vec![
                    attribute("z", Any::IntValue(1)),
                    attribute("n", inner_xy),
                ]),
            )],
        );
        let second = point(
            1.0,
            10,
            vec![attribute(
                "m",
                map(vec![
                    attribute("n", inner_yx),
                    attribute("z", Any::IntValue(1)),
                ]),
            )],
        );
        let canonical = |p: NumberDataPoint| {
            lines(
                vec![request("r", vec![gauge("g", vec![p])])],
                Options::default(),
            )
        };
        assert_eq!(canonical(first), canonical(second));
    }

    #[test]
    fn metric_identity_includes_type_temporality_unit_and_description() {
        let sum = |temporality: i32| Metric {
            name: "g".into(),
            unit: "By".into(),
            data: Some(Data::Sum(Sum {
                data_points: vec![point(1.0, 10, vec![])],
                aggregation_temporality: temporality,
                is_monotonic: true,
            })),
            ..Default::default()
        };
        let cumulative = lines(vec![request("r", vec![sum(2)])], Options::default());
        assert_ne!(
            cumulative,
            lines(vec![request("r", vec![sum(1)])], Options::default())
        );
        assert_ne!(
            cumulative,
            lines(
                vec![request("r", vec![gauge("g", vec![point(1.0, 10, vec![])])])],
                Options::default()
            )
        );
        let mut described = sum(2);
        described.description = "d".into();
        assert_ne!(
            cumulative,
            lines(vec![request("r", vec![described])], Options::default())
        );
    }

    #[test]
    fn resources_merge_and_empty_ones_stay_visible() {
        let with_point = request("r", vec![gauge("g", vec![point(1.0, 10, vec![])])]);
        let mut empty_scope = request("r", vec![]);
        let merged = lines(
            vec![with_point.clone(), with_point.clone()],
            Options::default(),
        );
        assert_eq!(
            merged
                .iter()
                .filter(|line| line.starts_with("resource "))
                .count(),
            1
        );
        empty_scope.resource_metrics[0].scope_metrics.clear();
        let other_resource = {
            let mut request = empty_scope.clone();
            request.resource_metrics[0].resource = Some(Resource::default());
            request
        };
        let with_empty = lines(vec![with_point.clone(), other_resource], Options::default());
        assert_eq!(
            with_empty
                .iter()
                .filter(|line| line.starts_with("resource "))
                .count(),
            2
        );
        assert_ne!(with_empty, lines(vec![with_point], Options::default()));
    }

    #[test]
    fn wall_clock_option_hides_the_time_but_not_its_presence() {
        let at = |time: u64| {
            lines(
                vec![request(
                    "r",
                    vec![gauge("g", vec![point(1.0, time, vec![])])],
                )],
                Options {
                    wall_clock_timestamps: true,
                },
            )
        };
        assert_eq!(at(1_000), at(2_000));
        assert_ne!(at(1_000), at(0));
        let exact = |time: u64| {
            lines(
                vec![request(
                    "r",
                    vec![gauge("g", vec![point(1.0, time, vec![])])],
                )],
                Options::default(),
            )
        };
        assert_ne!(exact(1_000), exact(2_000));
    }

    #[test]
    fn logs_are_grouped_by_resource_and_scope_and_sorted() {
        let record = |body: &str| LogRecord {
            body: Some(AnyValue {
                value: Some(Any::StringValue(body.into())),
            }),
            ..Default::default()
        };
        let request = |records: Vec<LogRecord>| ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: None,
                scope_logs: vec![ScopeLogs {
                    scope: None,
                    log_records: records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let output = |requests| {
            canonical_lines(
                &Output {
                    logs: requests,
                    ..Default::default()
                },
                Options::default(),
            )
        };
        let together = output(vec![request(vec![record("b"), record("a")])]);
        assert_eq!(
            together,
            output(vec![request(vec![record("a")]), request(vec![record("b")])])
        );
        assert_eq!(together[0], "== logs");
        assert!(
            together[3].contains("\"a\"") && together[4].contains("\"b\""),
            "{together:#?}"
        );
    }

    #[test]
    fn absent_and_empty_optional_messages_are_the_same_but_an_empty_string_is_not() {
        let record = |body: Option<AnyValue>, value: Option<AnyValue>| LogRecord {
            body,
            attributes: vec![KeyValue {
                key: "k".into(),
                value,
                ..Default::default()
            }],
            ..Default::default()
        };
        let output =
            |resource: Option<Resource>, scope: Option<InstrumentationScope>, record: LogRecord| {
                let logs = vec![ExportLogsServiceRequest {
                    resource_logs: vec![ResourceLogs {
                        resource,
                        scope_logs: vec![ScopeLogs {
                            scope,
                            log_records: vec![record],
                            schema_url: String::new(),
                        }],
                        schema_url: String::new(),
                    }],
                }];
                canonical_lines(
                    &Output {
                        logs,
                        ..Default::default()
                    },
                    Options::default(),
                )
            };
        let absent = output(None, None, record(None, None));
        let empty = output(
            Some(Resource::default()),
            Some(InstrumentationScope::default()),
            record(Some(AnyValue::default()), Some(AnyValue::default())),
        );
        assert_eq!(absent, empty);
        let empty_string = Some(AnyValue {
            value: Some(Any::StringValue(String::new())),
        });
        assert_ne!(
            absent,
            output(None, None, record(empty_string.clone(), None))
        );
        assert_ne!(absent, output(None, None, record(None, empty_string)));
    }
}
