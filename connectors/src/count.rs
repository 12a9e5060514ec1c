//! The `count` connector: counts spans, span events, metrics, data points or log records
//! and emits the counts as metrics (any signal -> metrics), one `ResourceMetrics` per input
//! resource, as the Collector's `countconnector` does.
//!
//! Each count is a monotonic delta Sum of ints, stamped with the time of the batch, grouped
//! by the configured attributes (looked up on the item, then its scope, then its resource).
//! An item lacking an attribute that has no `default_value` is not counted by that metric;
//! with `conditions` (OTTL, ORed) only matching items are counted. A condition that fails
//! to evaluate fails the batch (the Collector's behaviour).
//! It never keeps state between batches.

use std::collections::BTreeMap;
use std::time::SystemTime;

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use oxcol_core::{Batch, Data, Refusal, Signal};
use oxcol_ottl::{Condition, ContextKind, DataPointRef, Item};
use serde::Deserialize;

use crate::helper::attributes;
use crate::helper::connector::{Connector, Output, resource_metrics, unix_nanos};

pub const TYPE: &str = "count";
pub const ALIASES: &[&str] = &["count"];
/// (from, to) signal pairs: any signal to metrics.
pub const PAIRS: &[(Signal, Signal)] = &[
    (Signal::Traces, Signal::Metrics),
    (Signal::Metrics, Signal::Metrics),
    (Signal::Logs, Signal::Metrics),
];
/// The instrumentation scope of the emitted metrics (the Collector's).
pub const SCOPE_NAME: &str =
    "github.com/open-telemetry/opentelemetry-collector-contrib/connector/countconnector";

/// An attribute value as written in YAML (`default_value`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Double(f64),
    String(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Double(d) => d.to_string(),
            Scalar::String(s) => s.clone(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttributeConfig {
    pub key: String,
    #[serde(default)]
    pub default_value: Option<Scalar>,
}

/// One count metric.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricInfo {
    pub description: String,
    /// OTTL conditions, ORed; none: count every item.
    pub conditions: Vec<String>,
    pub attributes: Vec<AttributeConfig>,
}

/// Metric name -> definition, per kind of item. A section left empty counts with the
/// Collector's default metric (`trace.span.count`, ...).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub spans: Option<BTreeMap<String, MetricInfo>>,
    pub spanevents: Option<BTreeMap<String, MetricInfo>>,
    pub metrics: Option<BTreeMap<String, MetricInfo>>,
    pub datapoints: Option<BTreeMap<String, MetricInfo>>,
    pub logs: Option<BTreeMap<String, MetricInfo>>,
}

fn default_section(name: &str, description: &str) -> BTreeMap<String, MetricInfo> {
    BTreeMap::from([(
        name.to_string(),
        MetricInfo {
            description: description.to_string(),
            conditions: Vec::new(),
            attributes: Vec::new(),
        },
    )])
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (section, metrics, context) in self.sections() {
            for (name, info) in &metrics {
                if context == ContextKind::Metric && !info.attributes.is_empty() {
                    problems.push(format!(
                        "{section}.{name}: attributes are not supported for metrics (a metric has none); count data points to group by attributes"
                    ));
                }
                if name.is_empty() {
                    problems.push(format!(
                        "{section}: a metric name is empty; give each count metric a name"
                    ));
                }
                for condition in &info.conditions {
                    if let Err(e) = oxcol_ottl::parse_condition(condition, context) {
                        problems.push(format!("{section}.{name}: condition {condition:?}: {e}"));
                    }
                }
                let mut seen: Vec<&str> = Vec::new();
                for attribute in &info.attributes {
                    if attribute.key.is_empty() {
                        problems.push(format!(
                            "{section}.{name}: an attribute has an empty key; set `key`"
                        ));
                    } else if seen.contains(&attribute.key.as_str()) {
                        problems.push(format!(
                            "{section}.{name}: attribute {:?} is listed twice; list each key once",
                            attribute.key
                        ));
                    }
                    seen.push(&attribute.key);
                }
            }
        }
        problems
    }

    /// The five sections with the Collector's default metric in each one not written
    /// (a section written empty counts nothing), and the OTTL context of its items.
    fn sections(&self) -> [(&'static str, BTreeMap<String, MetricInfo>, ContextKind); 5] {
        let pick =
            |section: &Option<BTreeMap<String, MetricInfo>>, name: &str, description: &str| {
                // Written empty (`spans: {}`) counts as not written, as in the Collector.
                section
                    .clone()
                    .filter(|metrics| !metrics.is_empty())
                    .unwrap_or_else(|| default_section(name, description))
            };
        [
            (
                "spans",
                pick(
                    &self.spans,
                    "trace.span.count",
                    "The number of spans observed.",
                ),
                ContextKind::Span,
            ),
            (
                "spanevents",
                pick(
                    &self.spanevents,
                    "trace.span.event.count",
                    "The number of span events observed.",
                ),
                ContextKind::SpanEvent,
            ),
            (
                "metrics",
                pick(
                    &self.metrics,
                    "metric.count",
                    "The number of metrics observed.",
                ),
                ContextKind::Metric,
            ),
            (
                "datapoints",
                pick(
                    &self.datapoints,
                    "metric.datapoint.count",
                    "The number of data points observed.",
                ),
                ContextKind::DataPoint,
            ),
            (
                "logs",
                pick(
                    &self.logs,
                    "log.record.count",
                    "The number of log records observed.",
                ),
                ContextKind::Log,
            ),
        ]
    }
}

pub struct CountConnector {
    /// The five sections (spans, spanevents, metrics, datapoints, logs), defaults applied.
    sections: [BTreeMap<String, MetricInfo>; 5],
    /// Parsed conditions by metric name (names are unique per section; sections are
    /// looked up with their own maps).
    conditions: [BTreeMap<String, Vec<Condition>>; 5],
}

impl CountConnector {
    /// Fails only on a condition that does not parse (validate() reports those first).
    pub fn new(config: &Config) -> Result<CountConnector, String> {
        let mut conditions: [BTreeMap<String, Vec<Condition>>; 5] = Default::default();
        let mut sections: [BTreeMap<String, MetricInfo>; 5] = Default::default();
        for ((slot, kept), (section, metrics, context)) in conditions
            .iter_mut()
            .zip(sections.iter_mut())
            .zip(config.sections())
        {
            for (name, info) in &metrics {
                let parsed = info
                    .conditions
                    .iter()
                    .map(|c| {
                        oxcol_ottl::parse_condition(c, context)
                            .map_err(|e| format!("{section}.{name}: condition {c:?}: {e}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                slot.insert(name.clone(), parsed);
            }
            *kept = metrics;
        }
        Ok(CountConnector {
            sections,
            conditions,
        })
    }
}

const SPANS: usize = 0;
const SPANEVENTS: usize = 1;
const METRICS: usize = 2;
const DATAPOINTS: usize = 3;
const LOGS: usize = 4;

/// One count point: its attributes and the count.
struct Tally {
    attributes: Vec<KeyValue>,
    count: i64,
}

/// Attribute set key -> tally.
type CountsByAttributes = BTreeMap<Vec<(String, String)>, Tally>;

/// Counts of one resource, by (kind of item, metric name), and per kind of item the
/// earliest and latest timestamps of all its items in the resource (0: none had one),
/// which stamp every point of that kind (the Collector's rule).
#[derive(Default)]
struct Counts<'c> {
    by_metric: BTreeMap<(usize, &'c str), CountsByAttributes>,
    times: [(u64, u64); 5],
}

impl<'c> Counts<'c> {
    /// Counts one item under every metric of `section` whose conditions it matches (any
    /// of them; all when there are none) and whose attributes it has.
    fn add(
        &mut self,
        kind: usize,
        section: &'c BTreeMap<String, MetricInfo>,
        conditions: &BTreeMap<String, Vec<Condition>>,
        item: &Item<'_>,
        sources: &[&[KeyValue]],
        (start, end): (u64, u64),
    ) -> Result<(), Refusal> {
        let times = &mut self.times[kind];
        if start != 0 && (times.0 == 0 || start < times.0) {
            times.0 = start;
        }
        times.1 = times.1.max(end);
        for (name, info) in section {
            let wanted = conditions.get(name).map(Vec::as_slice).unwrap_or_default();
            let mut matched = wanted.is_empty();
            for condition in wanted {
                if condition.matches(item).map_err(|e| Refusal::Invalid {
                    reason: format!("count: {e}"),
                })? {
                    matched = true;
                    break;
                }
            }
            if !matched {
                continue;
            }
            let mut set = Vec::with_capacity(info.attributes.len());
            for attribute in &info.attributes {
                let value = attributes::find_in(sources, &attribute.key)
                    .map(attributes::as_string)
                    .or_else(|| attribute.default_value.as_ref().map(Scalar::text));
                match value {
                    Some(value) => set.push(attributes::string(&attribute.key, value)),
                    None => break,
                }
            }
            if set.len() != info.attributes.len() {
                continue;
            }
            let entry = self
                .by_metric
                .entry((kind, name.as_str()))
                .or_default()
                .entry(attributes::set_key(&set))
                .or_insert(Tally {
                    attributes: set,
                    count: 0,
                });
            entry.count += 1;
        }
        Ok(())
    }

    fn into_metrics(self, sections: &[BTreeMap<String, MetricInfo>; 5], time: u64) -> Vec<Metric> {
        let times = self.times;
        self.by_metric
            .into_iter()
            .map(|((kind, name), sets)| Metric {
                name: name.to_string(),
                description: sections[kind]
                    .get(name)
                    .map(|i| i.description.clone())
                    .unwrap_or_default(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: sets
                        .into_values()
                        .map(|tally| NumberDataPoint {
                            attributes: tally.attributes,
                            // The items' time span, or the time of counting when they had none.
                            start_time_unix_nano: if times[kind].0 == 0 {
                                time
                            } else {
                                times[kind].0
                            },
                            time_unix_nano: if times[kind].1 == 0 {
                                time
                            } else {
                                times[kind].1
                            },
                            value: Some(number_data_point::Value::AsInt(tally.count)),
                            ..Default::default()
                        })
                        .collect(),
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            })
            .collect()
    }
}

/// What the count connector counts with: the metrics and conditions of each kind of item.
struct Counter<'c> {
    sections: &'c [BTreeMap<String, MetricInfo>; 5],
    conditions: &'c [BTreeMap<String, Vec<Condition>>; 5],
}

impl<'c> Counter<'c> {
    /// Counts one item of `kind`; `sources` are its attributes, then its scope's and its
    /// resource's.
    fn add(
        &self,
        counts: &mut Counts<'c>,
        kind: usize,
        item: &Item<'_>,
        sources: &[&[KeyValue]],
        times: (u64, u64),
    ) -> Result<(), Refusal> {
        counts.add(
            kind,
            &self.sections[kind],
            &self.conditions[kind],
            item,
            sources,
            times,
        )
    }
}

/// Counts the items of each resource (`count` gets one scope, the resource, and the
/// scope's and the resource's attributes) and adds the counts of each resource that has
/// any, as metrics of that resource.
fn per_resource<'c, R, S>(
    resources: &[R],
    parts: fn(&R) -> (Option<&Resource>, &[S]),
    scope: fn(&S) -> Option<&InstrumentationScope>,
    sections: &'c [BTreeMap<String, MetricInfo>; 5],
    time: u64,
    out: &mut Vec<ResourceMetrics>,
    mut count: impl FnMut(
        &mut Counts<'c>,
        Option<&Resource>,
        &S,
        [&[KeyValue]; 2],
    ) -> Result<(), Refusal>,
) -> Result<(), Refusal> {
    for r in resources {
        let (resource, scopes) = parts(r);
        let resource_attributes = resource.map_or(&[][..], |r| &r.attributes);
        let mut counts = Counts::default();
        for s in scopes {
            let scope_attributes = scope(s).map_or(&[][..], |s| &s.attributes);
            count(
                &mut counts,
                resource,
                s,
                [scope_attributes, resource_attributes],
            )?;
        }
        if !counts.by_metric.is_empty() {
            let attributes = resource.map(|r| r.attributes.clone()).unwrap_or_default();
            let metrics = counts.into_metrics(sections, time);
            out.push(resource_metrics(attributes, SCOPE_NAME, metrics));
        }
    }
    Ok(())
}

impl Connector for CountConnector {
    fn consume(&mut self, mut batch: Batch, now: SystemTime) -> Result<Vec<Output>, Refusal> {
        batch.decode().map_err(|e| Refusal::Invalid {
            reason: e.to_string(),
        })?;
        let time = unix_nanos(now);
        let sections = &self.sections;
        let conditions = &self.conditions;
        let mut out = Vec::new();
        let counter = Counter {
            sections,
            conditions,
        };
        match batch.data() {
            Data::Traces(resources) => {
                let parts: fn(&ResourceSpans) -> (Option<&Resource>, &[_]) =
                    |r| (r.resource.as_ref(), r.scope_spans.as_slice());
                let scope: fn(&ScopeSpans) -> Option<&InstrumentationScope> = |s| s.scope.as_ref();
                per_resource(
                    resources,
                    parts,
                    scope,
                    sections,
                    time,
                    &mut out,
                    |counts, resource, s, [scope_attributes, resource_attributes]| {
                        let scope = s.scope.as_ref();
                        for span in &s.spans {
                            let item = Item::Span {
                                resource,
                                scope,
                                span,
                            };
                            let sources =
                                [&span.attributes[..], scope_attributes, resource_attributes];
                            counter.add(
                                counts,
                                SPANS,
                                &item,
                                &sources,
                                (span.start_time_unix_nano, span.end_time_unix_nano),
                            )?;
                            for event in &span.events {
                                let item = Item::SpanEvent {
                                    resource,
                                    scope,
                                    span,
                                    event,
                                };
                                let sources =
                                    [&event.attributes[..], scope_attributes, resource_attributes];
                                counter.add(
                                    counts,
                                    SPANEVENTS,
                                    &item,
                                    &sources,
                                    (event.time_unix_nano, event.time_unix_nano),
                                )?;
                            }
                        }
                        Ok(())
                    },
                )?;
            }
            Data::Metrics(resources) => {
                let parts: fn(&ResourceMetrics) -> (Option<&Resource>, &[_]) =
                    |r| (r.resource.as_ref(), r.scope_metrics.as_slice());
                let scope: fn(&ScopeMetrics) -> Option<&InstrumentationScope> =
                    |s| s.scope.as_ref();
                per_resource(
                    resources,
                    parts,
                    scope,
                    sections,
                    time,
                    &mut out,
                    |counts, resource, s, [scope_attributes, resource_attributes]| {
                        let scope = s.scope.as_ref();
                        for metric in &s.metrics {
                            let item = Item::Metric {
                                resource,
                                scope,
                                metric,
                            };
                            let sources =
                                [&metric.metadata[..], scope_attributes, resource_attributes];
                            counter.add(counts, METRICS, &item, &sources, (0, 0))?;
                            for point in DataPointRef::of_metric(metric) {
                                let point_time = point.times().1;
                                let sources =
                                    [point.attributes(), scope_attributes, resource_attributes];
                                let item = Item::DataPoint {
                                    resource,
                                    scope,
                                    metric,
                                    point,
                                };
                                counter.add(
                                    counts,
                                    DATAPOINTS,
                                    &item,
                                    &sources,
                                    (point_time, point_time),
                                )?;
                            }
                        }
                        Ok(())
                    },
                )?;
            }
            Data::Logs(resources) => {
                let parts: fn(&ResourceLogs) -> (Option<&Resource>, &[_]) =
                    |r| (r.resource.as_ref(), r.scope_logs.as_slice());
                let scope: fn(&ScopeLogs) -> Option<&InstrumentationScope> = |s| s.scope.as_ref();
                per_resource(
                    resources,
                    parts,
                    scope,
                    sections,
                    time,
                    &mut out,
                    |counts, resource, s, [scope_attributes, resource_attributes]| {
                        let scope = s.scope.as_ref();
                        for log in &s.log_records {
                            let item = Item::Log {
                                resource,
                                scope,
                                log,
                            };
                            let sources =
                                [&log.attributes[..], scope_attributes, resource_attributes];
                            counter.add(
                                counts,
                                LOGS,
                                &item,
                                &sources,
                                (log.time_unix_nano, log.time_unix_nano),
                            )?;
                        }
                        Ok(())
                    },
                )?;
            }
            Data::Encoded(_) => {
                return Err(Refusal::Invalid {
                    reason: "count: the batch could not be decoded".to_string(),
                });
            }
        }
        if out.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![Output::all(Batch::from_metrics(out))])
    }
}

#[cfg(test)]
mod tests;
