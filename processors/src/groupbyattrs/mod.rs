//! `groupbyattrs`: moves the record attributes named in `keys` (span, log record or data
//! point attributes) up to the resource, and regroups the records under resources with
//! the same attributes, merging into an existing identical resource. With empty `keys`
//! it only compacts: records of identical resources and scopes end up together.
//!
//! Exactly as the Collector's processor: resources are identified by their attributes
//! (order-insensitive) and rebuilt from them alone (the resource's dropped count and the
//! schema URLs are not carried over); scopes are matched by name and version; metrics
//! inside a scope by name and type (description, unit, metadata, temporality and
//! monotonicity come from the first one seen). Output order is the order of first
//! appearance. Keeps no state, never drops data.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, Gauge, Histogram, Metric, ResourceMetrics, ScopeMetrics, Sum, Summary,
    metric,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use oxcol_core::telemetry::{Counter, Registry};
use oxcol_core::{Batch, Processor, Refusal, Signal};
use prost::Message;
use serde::Deserialize;

use crate::helper::pvalue;

pub const TYPE: &str = "groupbyattrs";
pub const ALIASES: &[&str] = &["groupbyattrs"];

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Record attributes to move to the resource. Default empty (compaction only).
    pub keys: Vec<String>,
}

impl Config {
    /// Nothing to check: any list of keys is valid (as in the Collector, even "").
    pub fn validate(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Counters with the Collector's names (`otelcol_processor_groupbyattrs_num_grouped_*`,
/// `..._num_non_grouped_*`), by signal.
#[derive(Clone, Debug, Default)]
struct Counters {
    grouped: Counter,
    non_grouped: Counter,
}

pub struct GroupByAttrsProcessor {
    id: String,
    keys: Vec<String>,
    registry: Option<std::sync::Arc<Registry>>,
    counters: [Option<Counters>; 3],
}

impl GroupByAttrsProcessor {
    pub fn new(
        id: &str,
        config: &Config,
        registry: Option<std::sync::Arc<Registry>>,
    ) -> Result<GroupByAttrsProcessor, String> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(GroupByAttrsProcessor {
            id: id.to_string(),
            keys: config.keys.clone(),
            registry,
            counters: [None, None, None],
        })
    }

    fn counters(&mut self, signal: Signal) -> Counters {
        let (index, items) = match signal {
            Signal::Traces => (0, "spans"),
            Signal::Metrics => (1, "metrics"),
            Signal::Logs => (2, "logs"),
        };
        if self.counters[index].is_none() {
            let counters = match &self.registry {
                Some(registry) => Counters {
                    grouped: registry.counter(
                        &format!("otelcol_processor_groupbyattrs_num_grouped_{items}"),
                        "Number of items that had attributes grouped.",
                        &[("processor", &self.id)],
                    ),
                    non_grouped: registry.counter(
                        &format!("otelcol_processor_groupbyattrs_num_non_grouped_{items}"),
                        "Number of items that did not have attributes grouped.",
                        &[("processor", &self.id)],
                    ),
                },
                None => Counters::default(),
            };
            self.counters[index] = Some(counters);
        }
        self.counters[index].clone().unwrap_or_default()
    }

    /// Takes the grouping attributes out of `attrs` (in `keys` order); empty when none
    /// is present.
    fn extract(&self, attrs: &mut Vec<KeyValue>, counters: &Counters) -> Vec<KeyValue> {
        let mut grouping: Vec<KeyValue> = Vec::new();
        for key in &self.keys {
            if let Some(value) = pvalue::get(attrs, key) {
                let value = value.clone();
                pvalue::put(&mut grouping, key, value);
            }
        }
        if grouping.is_empty() {
            counters.non_grouped.add(1);
        } else {
            counters.grouped.add(1);
            for kv in &grouping {
                pvalue::remove(attrs, &kv.key);
            }
        }
        grouping
    }
}

/// The origin resource's attributes with the grouping attributes put on top.
fn reference_attributes(origin: Option<&Resource>, grouping: &[KeyValue]) -> Vec<KeyValue> {
    let mut attrs = origin.map(|r| r.attributes.clone()).unwrap_or_default();
    for kv in grouping {
        pvalue::put(&mut attrs, &kv.key, kv.value.clone().unwrap_or_default());
    }
    attrs
}

/// An order-insensitive identity of an attribute map (what the Collector's
/// `pdatautil.MapHash` compares): entries sorted by key, nested maps too, encoded.
fn identity(attrs: &[KeyValue]) -> Vec<u8> {
    fn normalize(value: &AnyValue) -> AnyValue {
        match &value.value {
            Some(Value::KvlistValue(m)) => AnyValue {
                value: Some(Value::KvlistValue(KeyValueList {
                    values: sorted(&m.values),
                })),
            },
            Some(Value::ArrayValue(a)) => AnyValue {
                value: Some(Value::ArrayValue(
                    opentelemetry_proto::tonic::common::v1::ArrayValue {
                        values: a.values.iter().map(normalize).collect(),
                    },
                )),
            },
            _ => value.clone(),
        }
    }
    fn sorted(attrs: &[KeyValue]) -> Vec<KeyValue> {
        let mut out: Vec<KeyValue> = attrs
            .iter()
            .map(|kv| KeyValue {
                key: kv.key.clone(),
                value: Some(normalize(kv.value.as_ref().unwrap_or(&AnyValue::default()))),
                ..Default::default()
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }
    KeyValueList {
        values: sorted(attrs),
    }
    .encode_to_vec()
}

fn same_scope(a: Option<&InstrumentationScope>, b: Option<&InstrumentationScope>) -> bool {
    fn name_version(s: Option<&InstrumentationScope>) -> (&str, &str) {
        s.map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()))
    }
    name_version(a) == name_version(b)
}

/// Resources of the output, found by identity, in order of first appearance.
struct Groups<T> {
    entries: Vec<(Vec<u8>, T)>,
}

impl<T> Groups<T> {
    fn find_or_create(
        &mut self,
        attrs: Vec<KeyValue>,
        create: impl FnOnce(Resource) -> T,
    ) -> &mut T {
        let id = identity(&attrs);
        let index = match self
            .entries
            .iter()
            .position(|(existing, _)| *existing == id)
        {
            Some(i) => i,
            None => {
                self.entries.push((
                    id,
                    create(Resource {
                        attributes: attrs,
                        ..Default::default()
                    }),
                ));
                self.entries.len() - 1
            }
        };
        &mut self.entries[index].1
    }
}

impl Processor for GroupByAttrsProcessor {
    fn process(&mut self, mut batch: Batch) -> Result<Batch, Refusal> {
        let id = self.id.clone();
        let refuse = |e: oxcol_core::batch::BatchError| Refusal::Invalid {
            reason: format!("processor {id}: cannot decode the batch: {e}"),
        };
        let signal = batch.signal();
        let counters = self.counters(signal);
        match signal {
            Signal::Traces => {
                let resources = batch.traces_mut().map_err(refuse)?;
                let mut groups: Groups<ResourceSpans> = Groups {
                    entries: Vec::new(),
                };
                for rs in std::mem::take(resources) {
                    for ss in rs.scope_spans {
                        for mut span in ss.spans {
                            let grouping = self.extract(&mut span.attributes, &counters);
                            let out = groups.find_or_create(
                                reference_attributes(rs.resource.as_ref(), &grouping),
                                |resource| ResourceSpans {
                                    resource: Some(resource),
                                    ..Default::default()
                                },
                            );
                            let scope = match out
                                .scope_spans
                                .iter()
                                .position(|s| same_scope(s.scope.as_ref(), ss.scope.as_ref()))
                            {
                                Some(i) => i,
                                None => {
                                    out.scope_spans.push(ScopeSpans {
                                        scope: Some(ss.scope.clone().unwrap_or_default()),
                                        ..Default::default()
                                    });
                                    out.scope_spans.len() - 1
                                }
                            };
                            out.scope_spans[scope].spans.push(span);
                        }
                    }
                }
                *resources = groups.entries.into_iter().map(|(_, r)| r).collect();
            }
            Signal::Logs => {
                let resources = batch.logs_mut().map_err(refuse)?;
                let mut groups: Groups<ResourceLogs> = Groups {
                    entries: Vec::new(),
                };
                for rl in std::mem::take(resources) {
                    for sl in rl.scope_logs {
                        for mut record in sl.log_records {
                            let grouping = self.extract(&mut record.attributes, &counters);
                            let out = groups.find_or_create(
                                reference_attributes(rl.resource.as_ref(), &grouping),
                                |resource| ResourceLogs {
                                    resource: Some(resource),
                                    ..Default::default()
                                },
                            );
                            let scope = match out
                                .scope_logs
                                .iter()
                                .position(|s| same_scope(s.scope.as_ref(), sl.scope.as_ref()))
                            {
                                Some(i) => i,
                                None => {
                                    out.scope_logs.push(ScopeLogs {
                                        scope: Some(sl.scope.clone().unwrap_or_default()),
                                        ..Default::default()
                                    });
                                    out.scope_logs.len() - 1
                                }
                            };
                            out.scope_logs[scope].log_records.push(record);
                        }
                    }
                }
                *resources = groups.entries.into_iter().map(|(_, r)| r).collect();
            }
            Signal::Metrics => {
                let resources = batch.metrics_mut().map_err(refuse)?;
                let mut groups: Groups<ResourceMetrics> = Groups {
                    entries: Vec::new(),
                };
                for rm in std::mem::take(resources) {
                    for sm in rm.scope_metrics {
                        for mut metric in sm.metrics {
                            // A metric without data has no points: the Collector drops it.
                            let Some(data) = metric.data.take() else {
                                continue;
                            };
                            let template = empty_like(&data);
                            macro_rules! regroup {
                                ($points:expr, $variant:ident) => {
                                    for mut point in $points {
                                        let grouping =
                                            self.extract(&mut point.attributes, &counters);
                                        let attrs =
                                            reference_attributes(rm.resource.as_ref(), &grouping);
                                        if let metric::Data::$variant(out) = target(
                                            &mut groups,
                                            attrs,
                                            sm.scope.as_ref(),
                                            &metric,
                                            &template,
                                        ) {
                                            out.data_points.push(point);
                                        }
                                    }
                                };
                            }
                            match data {
                                metric::Data::Gauge(g) => regroup!(g.data_points, Gauge),
                                metric::Data::Sum(s) => regroup!(s.data_points, Sum),
                                metric::Data::Histogram(h) => regroup!(h.data_points, Histogram),
                                metric::Data::ExponentialHistogram(h) => {
                                    regroup!(h.data_points, ExponentialHistogram)
                                }
                                metric::Data::Summary(s) => regroup!(s.data_points, Summary),
                            }
                        }
                    }
                }
                *resources = groups.entries.into_iter().map(|(_, r)| r).collect();
            }
        }
        batch.recount();
        Ok(batch)
    }
}

/// The data of the metric with `metric`'s name and `template`'s type, in the scope of the
/// resource with `attrs`, created (empty, with the same descriptive fields) when missing.
fn target<'a>(
    groups: &'a mut Groups<ResourceMetrics>,
    attrs: Vec<KeyValue>,
    scope: Option<&InstrumentationScope>,
    metric: &Metric,
    template: &metric::Data,
) -> &'a mut metric::Data {
    let out = groups.find_or_create(attrs, |resource| ResourceMetrics {
        resource: Some(resource),
        ..Default::default()
    });
    let scope_index = match out
        .scope_metrics
        .iter()
        .position(|s| same_scope(s.scope.as_ref(), scope))
    {
        Some(i) => i,
        None => {
            out.scope_metrics.push(ScopeMetrics {
                scope: Some(scope.cloned().unwrap_or_default()),
                ..Default::default()
            });
            out.scope_metrics.len() - 1
        }
    };
    let metrics = &mut out.scope_metrics[scope_index].metrics;
    let kind = std::mem::discriminant(template);
    let index = match metrics.iter().position(|m| {
        m.name == metric.name
            && m.data
                .as_ref()
                .is_some_and(|d| std::mem::discriminant(d) == kind)
    }) {
        Some(i) => i,
        None => {
            metrics.push(Metric {
                name: metric.name.clone(),
                description: metric.description.clone(),
                unit: metric.unit.clone(),
                metadata: metric.metadata.clone(),
                data: Some(template.clone()),
            });
            metrics.len() - 1
        }
    };
    metrics[index].data.get_or_insert_with(|| template.clone())
}

/// The same kind of data with no points (temporality and monotonicity kept).
fn empty_like(data: &metric::Data) -> metric::Data {
    match data {
        metric::Data::Gauge(_) => metric::Data::Gauge(Gauge {
            data_points: Vec::new(),
        }),
        metric::Data::Sum(s) => metric::Data::Sum(Sum {
            data_points: Vec::new(),
            aggregation_temporality: s.aggregation_temporality,
            is_monotonic: s.is_monotonic,
        }),
        metric::Data::Histogram(h) => metric::Data::Histogram(Histogram {
            data_points: Vec::new(),
            aggregation_temporality: h.aggregation_temporality,
        }),
        metric::Data::ExponentialHistogram(h) => {
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: Vec::new(),
                aggregation_temporality: h.aggregation_temporality,
            })
        }
        metric::Data::Summary(_) => metric::Data::Summary(Summary {
            data_points: Vec::new(),
        }),
    }
}

#[cfg(test)]
mod tests;
