//! `relabel`: Prometheus' `metric_relabel_configs` applied to OTLP metrics, with the
//! shared engine of `oxcol_core::relabel` (the `prometheus` receiver uses the same one).
//!
//! Each data point is one label set: its attributes (non-string values stringified), plus
//! `__name__` = the metric name, plus, with `resource_labels: true`, every resource
//! attribute as `__resource_<key>` (read-only: removed after the rules; copy one onto
//! the point with a `replace` or `labelmap` rule). The rules then run as in Prometheus.
//! Afterwards:
//! - a dropped point is removed; metrics, scopes and resources left empty are removed;
//! - a changed `__name__` moves the point to the metric of that name in the same scope
//!   (same type, unit and temporality), created when missing;
//! - a result Prometheus' scrape loop would refuse (no `__name__`, or an invalid name
//!   under `metric_name_validation_scheme`) fails like a Prometheus scrape fails: every
//!   point of that resource (one scrape target's worth of data) is removed and counted.
//!
//! Attributes keep their OTLP type when the rules leave their value unchanged; a value a
//! rule wrote is a string. This processor never reads the clock and keeps no state.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    SummaryDataPoint, metric,
};
use oxcol_core::relabel::{self, LabelSet, NameValidation, RelabelConfig, Rule};
use oxcol_core::telemetry::{Counter, Registry};
use oxcol_core::{Batch, Processor, Refusal};
use serde::Deserialize;

pub const TYPE: &str = "relabel";
pub const ALIASES: &[&str] = &["relabel"];

/// The prefix under which resource attributes are visible with `resource_labels: true`.
pub const RESOURCE_PREFIX: &str = "__resource_";

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Prometheus `relabel_config` list, unchanged. Default: empty (points pass through).
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// Which names are valid: `utf8` (default, Prometheus 3) or `legacy` (Prometheus 2).
    pub metric_name_validation_scheme: NameValidation,
    /// Expose resource attributes to the rules as `__resource_<key>`. Default false.
    pub resource_labels: bool,
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        match relabel::compile(
            &self.metric_relabel_configs,
            self.metric_name_validation_scheme,
        ) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .into_iter()
                .map(|e| format!("metric_relabel_configs{e}"))
                .collect(),
        }
    }
}

/// The processor's counters (`processor` label = its id).
#[derive(Clone, Debug, Default)]
pub struct RelabelCounters {
    /// Points removed by keep/drop/keepequal/dropequal.
    pub dropped: Counter,
    /// Points removed because their resource produced an invalid label set.
    pub invalid: Counter,
}

impl RelabelCounters {
    pub fn new(registry: &Registry, processor: &str) -> RelabelCounters {
        let labels = [("processor", processor)];
        RelabelCounters {
            dropped: registry.counter("oxcol_processor_relabel_dropped_points", "Points dropped by relabel rules (keep, drop, keepequal, dropequal).", &labels),
            invalid: registry.counter(
                "oxcol_processor_relabel_invalid_points",
                "Points removed because relabeling produced an invalid label set for their resource (Prometheus fails such a scrape).",
                &labels,
            ),
        }
    }
}

pub struct RelabelProcessor {
    id: String,
    rules: Vec<Rule>,
    scheme: NameValidation,
    resource_labels: bool,
    counters: RelabelCounters,
}

impl RelabelProcessor {
    pub fn new(
        id: &str,
        config: &Config,
        counters: RelabelCounters,
    ) -> Result<RelabelProcessor, String> {
        let rules = relabel::compile(
            &config.metric_relabel_configs,
            config.metric_name_validation_scheme,
        )
        .map_err(|errors| format!("metric_relabel_configs{}", errors.join("; ")))?;
        Ok(RelabelProcessor {
            id: id.to_string(),
            rules,
            scheme: config.metric_name_validation_scheme,
            resource_labels: config.resource_labels,
            counters,
        })
    }

    /// Relabels every point of `resources` in place.
    pub fn relabel(&self, resources: &mut Vec<ResourceMetrics>) {
        if self.rules.is_empty() {
            return;
        }
        for resource in resources.iter_mut() {
            let resource_pairs: Vec<(String, String)> =
                match (&resource.resource, self.resource_labels) {
                    (Some(r), true) => r
                        .attributes
                        .iter()
                        .map(|kv| {
                            (
                                format!("{RESOURCE_PREFIX}{}", kv.key),
                                stringify(kv.value.as_ref()),
                            )
                        })
                        .collect(),
                    _ => Vec::new(),
                };
            let mut context = Context {
                processor: self,
                resource_pairs: &resource_pairs,
                dropped: 0,
                invalid: None,
                invalid_points: 0,
            };
            for scope in &mut resource.scope_metrics {
                let mut moved: Vec<(String, Metric)> = Vec::new();
                for metric in &mut scope.metrics {
                    context.relabel_metric(metric, &mut moved);
                }
                merge_moved(&mut scope.metrics, moved);
                scope.metrics.retain(|m| point_count(m) > 0);
            }
            self.counters.dropped.add(context.dropped);
            if let Some(reason) = context.invalid {
                let points: u64 = context.invalid_points
                    + resource
                        .scope_metrics
                        .iter()
                        .flat_map(|s| &s.metrics)
                        .map(|m| point_count(m) as u64)
                        .sum::<u64>();
                self.counters.invalid.add(points);
                tracing::warn!(processor = %self.id, points, "relabeling produced an invalid label set; removed every point of the resource, as Prometheus fails the scrape: {reason}");
                resource.scope_metrics.clear();
            }
            resource.scope_metrics.retain(|s| !s.metrics.is_empty());
        }
        resources.retain(|r| !r.scope_metrics.is_empty());
    }
}

impl Processor for RelabelProcessor {
    fn process(&mut self, mut batch: Batch) -> Result<Batch, Refusal> {
        if self.rules.is_empty() || batch.signal() != oxcol_core::Signal::Metrics {
            return Ok(batch);
        }
        let resources = batch.metrics_mut().map_err(|e| Refusal::Invalid {
            reason: format!(
                "processor {}: cannot decode the metrics batch: {e}",
                self.id
            ),
        })?;
        self.relabel(resources);
        batch.recount();
        Ok(batch)
    }
}

struct Context<'a> {
    processor: &'a RelabelProcessor,
    resource_pairs: &'a [(String, String)],
    dropped: u64,
    invalid: Option<String>,
    /// Points whose own result was invalid (already out of their metric).
    invalid_points: u64,
}

/// Access to the attributes of every data point type.
trait Point {
    fn attributes_mut(&mut self) -> &mut Vec<KeyValue>;
}

macro_rules! impl_point {
    ($($t:ty),*) => {$(impl Point for $t {
        fn attributes_mut(&mut self) -> &mut Vec<KeyValue> { &mut self.attributes }
    })*};
}
impl_point!(
    NumberDataPoint,
    HistogramDataPoint,
    ExponentialHistogramDataPoint,
    SummaryDataPoint
);

impl Context<'_> {
    fn relabel_metric(&mut self, metric: &mut Metric, moved: &mut Vec<(String, Metric)>) {
        let name = metric.name.clone();
        let Some(data) = metric.data.as_mut() else {
            return;
        };
        match data {
            metric::Data::Gauge(g) => {
                let out = self.relabel_points(&name, std::mem::take(&mut g.data_points));
                g.data_points = out.kept;
                for (target, points) in out.moved {
                    moved.push((
                        target,
                        with_data(
                            metric,
                            metric::Data::Gauge(opentelemetry_proto::tonic::metrics::v1::Gauge {
                                data_points: points,
                            }),
                        ),
                    ));
                }
            }
            metric::Data::Sum(s) => {
                let out = self.relabel_points(&name, std::mem::take(&mut s.data_points));
                s.data_points = out.kept;
                let template = s.clone();
                for (target, points) in out.moved {
                    moved.push((
                        target,
                        with_data(
                            metric,
                            metric::Data::Sum(opentelemetry_proto::tonic::metrics::v1::Sum {
                                data_points: points,
                                ..template.clone()
                            }),
                        ),
                    ));
                }
            }
            metric::Data::Histogram(h) => {
                let out = self.relabel_points(&name, std::mem::take(&mut h.data_points));
                h.data_points = out.kept;
                let template = h.clone();
                for (target, points) in out.moved {
                    moved.push((
                        target,
                        with_data(
                            metric,
                            metric::Data::Histogram(
                                opentelemetry_proto::tonic::metrics::v1::Histogram {
                                    data_points: points,
                                    ..template.clone()
                                },
                            ),
                        ),
                    ));
                }
            }
            metric::Data::ExponentialHistogram(h) => {
                let out = self.relabel_points(&name, std::mem::take(&mut h.data_points));
                h.data_points = out.kept;
                let template = h.clone();
                for (target, points) in out.moved {
                    moved.push((
                        target,
                        with_data(
                            metric,
                            metric::Data::ExponentialHistogram(
                                opentelemetry_proto::tonic::metrics::v1::ExponentialHistogram {
                                    data_points: points,
                                    ..template.clone()
                                },
                            ),
                        ),
                    ));
                }
            }
            metric::Data::Summary(s) => {
                let out = self.relabel_points(&name, std::mem::take(&mut s.data_points));
                s.data_points = out.kept;
                for (target, points) in out.moved {
                    moved.push((
                        target,
                        with_data(
                            metric,
                            metric::Data::Summary(
                                opentelemetry_proto::tonic::metrics::v1::Summary {
                                    data_points: points,
                                },
                            ),
                        ),
                    ));
                }
            }
        }
    }

    fn relabel_points<P: Point>(&mut self, name: &str, points: Vec<P>) -> Relabeled<P> {
        let mut out = Relabeled {
            kept: Vec::with_capacity(points.len()),
            moved: Vec::new(),
        };
        for mut point in points {
            let attributes = point.attributes_mut();
            let mut labels = LabelSet::from_pairs(
                attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), stringify(kv.value.as_ref())))
                    .chain(std::iter::once(("__name__".to_string(), name.to_string())))
                    .chain(self.resource_pairs.iter().cloned()),
            );
            if !relabel::process(&mut labels, &self.processor.rules) {
                self.dropped += 1;
                continue;
            }
            if let Err(reason) = relabel::check_result(&labels, self.processor.scheme) {
                self.invalid_points += 1;
                if self.invalid.is_none() {
                    self.invalid = Some(reason);
                }
                continue;
            }
            let new_name = labels.get("__name__").to_string();
            *attributes = rebuild_attributes(std::mem::take(attributes), labels);
            if new_name == name {
                out.kept.push(point);
            } else if let Some((_, group)) = out.moved.iter_mut().find(|(n, _)| *n == new_name) {
                group.push(point);
            } else {
                out.moved.push((new_name, vec![point]));
            }
        }
        out
    }
}

struct Relabeled<P> {
    kept: Vec<P>,
    moved: Vec<(String, Vec<P>)>,
}

fn with_data(metric: &Metric, data: metric::Data) -> Metric {
    Metric {
        name: metric.name.clone(),
        description: metric.description.clone(),
        unit: metric.unit.clone(),
        metadata: metric.metadata.clone(),
        data: Some(data),
    }
}

/// The attributes of a relabeled point: every label except `__name__` and the resource
/// view, keeping the original typed value where the string is unchanged.
fn rebuild_attributes(original: Vec<KeyValue>, labels: LabelSet) -> Vec<KeyValue> {
    let mut by_key: HashMap<String, AnyValue> = original
        .into_iter()
        .filter_map(|kv| Some((kv.key, kv.value?)))
        .collect();
    labels
        .into_vec()
        .into_iter()
        .filter(|(name, _)| name != "__name__" && !name.starts_with(RESOURCE_PREFIX))
        .map(|(key, value)| {
            let typed = by_key.remove(&key).filter(|v| stringify(Some(v)) == value);
            let value = typed.unwrap_or(AnyValue {
                value: Some(any_value::Value::StringValue(value)),
            });
            KeyValue {
                key,
                value: Some(value),
                ..KeyValue::default()
            }
        })
        .collect()
}

/// An attribute value as a label value: strings as they are, numbers and booleans as
/// text, bytes as hex, arrays and maps as JSON.
pub fn stringify(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(bytes)) => {
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        }
        Some(other) => json(other).to_string(),
    }
}

fn json(value: &any_value::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        any_value::Value::StringValue(s) => J::String(s.clone()),
        any_value::Value::BoolValue(b) => J::Bool(*b),
        any_value::Value::IntValue(i) => J::from(*i),
        any_value::Value::DoubleValue(d) => serde_json::Number::from_f64(*d)
            .map(J::Number)
            .unwrap_or(J::Null),
        any_value::Value::BytesValue(b) => {
            J::String(b.iter().map(|b| format!("{b:02x}")).collect())
        }
        any_value::Value::ArrayValue(a) => J::Array(
            a.values
                .iter()
                .map(|v| v.value.as_ref().map(json).unwrap_or(J::Null))
                .collect(),
        ),
        any_value::Value::KvlistValue(kv) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                            .map(json)
                            .unwrap_or(J::Null),
                    )
                })
                .collect(),
        ),
        // An index into a dictionary this batch does not carry (profiles only).
        any_value::Value::StringValueStrindex(index) => J::from(*index),
    }
}

fn point_count(metric: &Metric) -> usize {
    oxcol_core::batch::metric_points(metric)
}

/// Whether `moved` can join `existing`: same type, unit and (for sums and histograms)
/// temporality and monotonicity.
fn compatible(existing: &Metric, moved: &Metric) -> bool {
    use metric::Data::*;
    existing.unit == moved.unit
        && match (&existing.data, &moved.data) {
            (Some(Gauge(_)), Some(Gauge(_))) | (Some(Summary(_)), Some(Summary(_))) => true,
            (Some(Sum(a)), Some(Sum(b))) => {
                a.aggregation_temporality == b.aggregation_temporality
                    && a.is_monotonic == b.is_monotonic
            }
            (Some(Histogram(a)), Some(Histogram(b))) => {
                a.aggregation_temporality == b.aggregation_temporality
            }
            (Some(ExponentialHistogram(a)), Some(ExponentialHistogram(b))) => {
                a.aggregation_temporality == b.aggregation_temporality
            }
            _ => false,
        }
}

/// Puts moved points into the metric of their new name: appended to a compatible metric
/// of that name in the scope, or as a new metric (name changed, rest as the source).
fn merge_moved(metrics: &mut Vec<Metric>, moved: Vec<(String, Metric)>) {
    for (name, mut source) in moved {
        source.name = name;
        match metrics
            .iter_mut()
            .find(|m| m.name == source.name && compatible(m, &source))
        {
            Some(target) => append_points(target, source),
            None => metrics.push(source),
        }
    }
}

fn append_points(target: &mut Metric, source: Metric) {
    use metric::Data::*;
    match (target.data.as_mut(), source.data) {
        (Some(Gauge(a)), Some(Gauge(b))) => a.data_points.extend(b.data_points),
        (Some(Sum(a)), Some(Sum(b))) => a.data_points.extend(b.data_points),
        (Some(Histogram(a)), Some(Histogram(b))) => a.data_points.extend(b.data_points),
        (Some(ExponentialHistogram(a)), Some(ExponentialHistogram(b))) => {
            a.data_points.extend(b.data_points)
        }
        (Some(Summary(a)), Some(Summary(b))) => a.data_points.extend(b.data_points),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
