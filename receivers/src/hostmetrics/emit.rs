//! The OTLP output of one hostmetrics scraper: one `ResourceMetrics` (no resource
//! attributes: the host is described by `resourcedetection`, as in the Collector) with one
//! scope named like the Collector's scraper. Unlike `cgroup::emit::ResourceBuilder` it also
//! writes non-monotonic sums (`system.memory.usage` is an UpDownCounter).

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::Aggregation;
use super::metadata::Strategy;
use crate::cgroup::emit::string_attribute;

/// `a` and `b` merged by `strategy` (`Avg` sums; the caller divides).
fn combine(
    a: Option<number_data_point::Value>,
    b: Option<number_data_point::Value>,
    strategy: Strategy,
) -> Option<number_data_point::Value> {
    use number_data_point::Value::{AsDouble, AsInt};
    Some(match (a?, b?) {
        (AsDouble(a), AsDouble(b)) => AsDouble(match strategy {
            Strategy::Sum | Strategy::Avg => a + b,
            Strategy::Min => a.min(b),
            Strategy::Max => a.max(b),
        }),
        (AsInt(a), AsInt(b)) => AsInt(match strategy {
            Strategy::Sum | Strategy::Avg => a.saturating_add(b),
            Strategy::Min => a.min(b),
            Strategy::Max => a.max(b),
        }),
        (a, _) => a,
    })
}

/// The Collector's scope names: `.../hostmetricsreceiver/internal/scraper/<name>scraper`.
pub const SCOPE_PREFIX: &str = "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/hostmetricsreceiver/internal/scraper/";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Gauge,
    /// Cumulative monotonic sum (a counter).
    Counter,
    /// Cumulative non-monotonic sum (an UpDownCounter).
    UpDown,
}

pub struct Out {
    metrics: Vec<Metric>,
    now: u64,
    start: u64,
}

impl Out {
    pub fn new(now: u64, start: u64) -> Out {
        Out {
            metrics: Vec::new(),
            now,
            start,
        }
    }

    /// The scrape's time, Unix nanoseconds.
    pub fn now(&self) -> u64 {
        self.now
    }

    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    pub fn int(
        &mut self,
        kind: Kind,
        name: &'static str,
        unit: &'static str,
        value: u64,
        attributes: &[(&'static str, &str)],
    ) {
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        self.push(
            kind,
            name,
            unit,
            number_data_point::Value::AsInt(value),
            attributes,
        );
    }

    pub fn double(
        &mut self,
        kind: Kind,
        name: &'static str,
        unit: &'static str,
        value: f64,
        attributes: &[(&'static str, &str)],
    ) {
        self.push(
            kind,
            name,
            unit,
            number_data_point::Value::AsDouble(value),
            attributes,
        );
    }

    /// Appends a point; a point of the metric written last joins it, so the points of one
    /// metric written in a row are one metric.
    fn push(
        &mut self,
        kind: Kind,
        name: &'static str,
        unit: &'static str,
        value: number_data_point::Value,
        attributes: &[(&'static str, &str)],
    ) {
        let point = NumberDataPoint {
            attributes: attributes
                .iter()
                .map(|(k, v)| string_attribute(k, v))
                .collect(),
            // The Collector's mdatagen sets the start on gauges too.
            start_time_unix_nano: self.start,
            time_unix_nano: self.now,
            value: Some(value),
            ..Default::default()
        };
        if let Some(last) = self.metrics.last_mut().filter(|m| m.name == name) {
            match &mut last.data {
                Some(metric::Data::Gauge(g)) => return g.data_points.push(point),
                Some(metric::Data::Sum(s)) => return s.data_points.push(point),
                _ => {}
            }
        }
        let data_points = vec![point];
        let data = match kind {
            Kind::Gauge => metric::Data::Gauge(Gauge { data_points }),
            Kind::Counter | Kind::UpDown => metric::Data::Sum(Sum {
                data_points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: kind == Kind::Counter,
            }),
        };
        self.metrics.push(Metric {
            name: name.to_string(),
            description: super::metadata::description(name).to_string(),
            unit: unit.to_string(),
            data: Some(data),
            ..Default::default()
        });
    }

    /// Drops the attributes each aggregation does not keep and merges the points of its
    /// metric whose remaining attributes are equal, as the Collector's mdatagen does
    /// (`system.cpu.time` is summed over the CPUs by default).
    pub fn aggregate(&mut self, aggregations: &[Aggregation]) {
        for aggregation in aggregations {
            let Some(metric) = self
                .metrics
                .iter_mut()
                .find(|m| m.name == aggregation.metric)
            else {
                continue;
            };
            let points = match &mut metric.data {
                Some(metric::Data::Gauge(g)) => &mut g.data_points,
                Some(metric::Data::Sum(s)) => &mut s.data_points,
                _ => continue,
            };
            let mut merged: Vec<(NumberDataPoint, u32)> = Vec::new();
            for mut point in points.drain(..) {
                point
                    .attributes
                    .retain(|a| aggregation.keep.contains(&a.key.as_str()));
                match merged
                    .iter_mut()
                    .find(|(m, _)| m.attributes == point.attributes)
                {
                    Some((into, count)) => {
                        *count += 1;
                        into.value = combine(into.value, point.value, aggregation.strategy);
                    }
                    None => merged.push((point, 1)),
                }
            }
            for (mut point, count) in merged {
                if aggregation.strategy == Strategy::Avg && count > 1 {
                    point.value = match point.value {
                        Some(number_data_point::Value::AsDouble(v)) => {
                            Some(number_data_point::Value::AsDouble(v / f64::from(count)))
                        }
                        Some(number_data_point::Value::AsInt(v)) => {
                            Some(number_data_point::Value::AsInt(v / i64::from(count)))
                        }
                        None => None,
                    };
                }
                points.push(point);
            }
        }
    }

    /// The scraper's `ResourceMetrics`; `scraper` is its config name (`cpu`).
    pub fn finish(self, scraper: &str) -> ResourceMetrics {
        self.finish_with(scraper, Vec::new())
    }

    /// Like [`Out::finish`], with resource attributes (a process).
    pub fn finish_with(self, scraper: &str, attributes: Vec<KeyValue>) -> ResourceMetrics {
        ResourceMetrics {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: format!("{SCOPE_PREFIX}{scraper}scraper"),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..Default::default()
                }),
                metrics: self.metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }
}
