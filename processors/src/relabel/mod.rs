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

use std::borrow::Cow;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    SummaryDataPoint, metric,
};
use oxcol_core::relabel::{self, Labels, NameValidation, RelabelConfig, Relabeler, Rule};
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
        // Per batch: rule outcomes remembered per distinct input, reused buffers.
        let mut relabeler = Relabeler::new(&self.rules);
        let mut scratch = Scratch::default();
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
                relabeler: &mut relabeler,
                scratch: &mut scratch,
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

struct Context<'a, 'r> {
    processor: &'a RelabelProcessor,
    resource_pairs: &'a [(String, String)],
    relabeler: &'a mut Relabeler<'r>,
    scratch: &'a mut Scratch,
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

impl Context<'_, '_> {
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
            let original = std::mem::take(point.attributes_mut());
            // The label set borrows the point's attributes, the metric name and the
            // resource view; it reuses one allocation across points.
            let mut labels: Labels<'_> = std::mem::take(&mut self.scratch.labels).recycle();
            for kv in &original {
                labels.push(Cow::Borrowed(&kv.key), stringify_cow(kv.value.as_ref()));
            }
            labels.push(Cow::Borrowed("__name__"), Cow::Borrowed(name));
            for (key, value) in self.resource_pairs {
                labels.push(Cow::Borrowed(key), Cow::Borrowed(value));
            }
            labels.normalize();
            if !self.relabeler.process(&mut labels) {
                self.scratch.labels = labels.recycle();
                self.dropped += 1;
                continue;
            }
            if let Err(reason) = relabel::check_labels(&labels, self.processor.scheme) {
                self.scratch.labels = labels.recycle();
                self.invalid_points += 1;
                if self.invalid.is_none() {
                    self.invalid = Some(reason);
                }
                continue;
            }
            let new_name = labels.get("__name__");
            let destination = if new_name == name {
                None
            } else if let Some(i) = out.moved.iter().position(|(n, _)| n == new_name) {
                Some(i)
            } else {
                out.moved.push((new_name.to_string(), Vec::new()));
                Some(out.moved.len() - 1)
            };
            plan_attributes(&original, &mut labels, &mut self.scratch.plan);
            self.scratch.labels = labels.recycle();
            *point.attributes_mut() =
                build_attributes(original, &mut self.scratch.plan, &mut self.scratch.staging);
            match destination {
                None => out.kept.push(point),
                Some(i) => out.moved[i].1.push(point),
            }
        }
        out
    }
}

/// Buffers reused across the points of a batch.
#[derive(Default)]
struct Scratch {
    labels: Labels<'static>,
    plan: Vec<Planned>,
    staging: Vec<KeyValue>,
}

/// Where an output attribute's key and value come from.
enum Source {
    /// Taken from the original attribute at this index (no allocation).
    Original(usize),
    Owned(String),
}

struct Planned {
    key: Source,
    /// `None`: the typed value of the original attribute the key came from.
    value: Option<String>,
}

/// The attributes of a relabeled point: every label except `__name__` and the resource
/// view, keeping the original typed value where the string is unchanged (the original
/// typed value is that of the last attribute with the key, as a map built from them).
fn plan_attributes(original: &[KeyValue], labels: &mut Labels<'_>, plan: &mut Vec<Planned>) {
    plan.clear();
    // A linear lookup per label is fastest for ordinary points; a hostile point with many
    // thousands of attributes gets an index instead of quadratic time.
    let index: Option<std::collections::HashMap<&str, usize>> = (original.len() > 64).then(|| {
        let mut index = std::collections::HashMap::with_capacity(original.len());
        for (i, kv) in original.iter().enumerate() {
            if kv.value.is_some() {
                index.insert(kv.key.as_str(), i);
            }
        }
        index
    });
    for (name, value) in labels.drain() {
        if name == "__name__" || name.starts_with(RESOURCE_PREFIX) {
            continue;
        }
        let typed = match &index {
            Some(index) => index.get(name.as_ref()).copied(),
            None => original
                .iter()
                .rposition(|kv| same_text(&kv.key, &name) && kv.value.is_some()),
        };
        plan.push(match typed {
            Some(i) if stringify_cow(original[i].value.as_ref()) == value => Planned {
                key: Source::Original(i),
                value: None,
            },
            Some(i) => Planned {
                key: Source::Original(i),
                value: Some(value.into_owned()),
            },
            None => Planned {
                key: Source::Owned(name.into_owned()),
                value: Some(value.into_owned()),
            },
        });
    }
}

/// Whether two strings are equal; the label set usually borrows names from the
/// attributes themselves, so the pointers are compared first.
#[inline]
fn same_text(a: &str, b: &str) -> bool {
    a.len() == b.len() && (std::ptr::eq(a.as_ptr(), b.as_ptr()) || a == b)
}

/// Builds the planned attributes in `original`'s own allocation (a new one only when the
/// output is longer), through `staging` (empty on return).
fn build_attributes(
    mut original: Vec<KeyValue>,
    plan: &mut Vec<Planned>,
    staging: &mut Vec<KeyValue>,
) -> Vec<KeyValue> {
    staging.clear();
    for planned in plan.drain(..) {
        let (key, typed) = match planned.key {
            Source::Original(i) => {
                let kv = &mut original[i];
                (std::mem::take(&mut kv.key), kv.value.take())
            }
            Source::Owned(key) => (key, None),
        };
        let value = match planned.value {
            Some(text) => AnyValue {
                value: Some(any_value::Value::StringValue(text)),
            },
            None => typed.unwrap_or_default(),
        };
        staging.push(KeyValue {
            key,
            value: Some(value),
            ..KeyValue::default()
        });
    }
    if staging.len() <= original.capacity() {
        original.clear();
        original.append(staging);
        return original;
    }
    // Longer than the original: a new exact allocation (cheaper than a realloc copy).
    let mut out = Vec::with_capacity(staging.len());
    out.append(staging);
    out
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

/// An attribute value as a label value: strings as they are, numbers and booleans as
/// text, bytes as hex, arrays and maps as JSON.
pub fn stringify(value: Option<&AnyValue>) -> String {
    stringify_cow(value).into_owned()
}

/// [`stringify`], borrowing string values.
fn stringify_cow(value: Option<&AnyValue>) -> Cow<'_, str> {
    Cow::Owned(match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => return Cow::Borrowed(s),
        None => String::new(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(bytes)) => {
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        }
        Some(other) => json(other).to_string(),
    })
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
