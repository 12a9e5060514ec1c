//! Builds OTLP `ResourceMetrics` for the file-reading receivers (cgroup, smaps) directly,
//! with no intermediate model: one `ResourceMetrics` per cgroup or process, one metric
//! per name, data points appended to the metric just written when the name repeats
//! (so `cgroup.memory.events{event=...}` is one metric with several points).
//!
//! It never reads a clock: the scrape's time and the series' start time are passed in.

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

pub fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
    }
}

pub fn int_attribute(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    MonotonicSum,
}

/// The metrics of one resource (a cgroup or a process) in one scrape.
pub struct ResourceBuilder {
    metrics: Vec<Metric>,
    time_unix_nano: u64,
    start_time_unix_nano: u64,
    /// The point capacity of the next new metric (see [`ResourceBuilder::reserve_points`]).
    next_points: usize,
}

impl ResourceBuilder {
    /// `start_time_unix_nano` is the start of the cumulative sums (when the cgroup was
    /// first seen, the process start time).
    /// `expected_metrics` sizes the metric list once (a cgroup has ~110, a process ~25).
    pub fn new(time_unix_nano: u64, start_time_unix_nano: u64, expected_metrics: usize) -> Self {
        ResourceBuilder {
            metrics: Vec::with_capacity(expected_metrics),
            time_unix_nano,
            start_time_unix_nano,
            next_points: 1,
        }
    }

    /// Sizes the point list of the next new metric for `points` points (a metric with
    /// one point per event, device or PSI window), so it is allocated once instead of
    /// growing 1 -> 4 -> 8 -> ... Applies to the next metric only.
    pub fn reserve_points(&mut self, points: usize) {
        self.next_points = points.max(1);
    }

    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    pub fn gauge_int(
        &mut self,
        name: &str,
        unit: &'static str,
        value: i64,
        attributes: &[(&'static str, &str)],
    ) {
        self.push(
            Kind::Gauge,
            name,
            unit,
            number_data_point::Value::AsInt(value),
            attributes,
        );
    }

    pub fn gauge_f64(
        &mut self,
        name: &str,
        unit: &'static str,
        value: f64,
        attributes: &[(&'static str, &str)],
    ) {
        self.push(
            Kind::Gauge,
            name,
            unit,
            number_data_point::Value::AsDouble(value),
            attributes,
        );
    }

    /// A cumulative, monotonic sum with an integer value.
    pub fn counter_int(
        &mut self,
        name: &str,
        unit: &'static str,
        value: u64,
        attributes: &[(&'static str, &str)],
    ) {
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        self.push(
            Kind::MonotonicSum,
            name,
            unit,
            number_data_point::Value::AsInt(value),
            attributes,
        );
    }

    /// A cumulative, monotonic sum with a floating-point value (seconds).
    pub fn counter_f64(
        &mut self,
        name: &str,
        unit: &'static str,
        value: f64,
        attributes: &[(&'static str, &str)],
    ) {
        self.push(
            Kind::MonotonicSum,
            name,
            unit,
            number_data_point::Value::AsDouble(value),
            attributes,
        );
    }

    fn push(
        &mut self,
        kind: Kind,
        name: &str,
        unit: &'static str,
        value: number_data_point::Value,
        attributes: &[(&'static str, &str)],
    ) {
        let point = NumberDataPoint {
            attributes: attributes
                .iter()
                .map(|(k, v)| string_attribute(k, v))
                .collect(),
            start_time_unix_nano: if kind == Kind::MonotonicSum {
                self.start_time_unix_nano
            } else {
                0
            },
            time_unix_nano: self.time_unix_nano,
            value: Some(value),
            ..Default::default()
        };
        if let Some(last) = self.metrics.last_mut() {
            if last.name == name {
                match &mut last.data {
                    Some(metric::Data::Gauge(g)) if kind == Kind::Gauge => {
                        return g.data_points.push(point);
                    }
                    Some(metric::Data::Sum(s)) if kind == Kind::MonotonicSum => {
                        return s.data_points.push(point);
                    }
                    _ => {}
                }
            }
        }
        let mut data_points = Vec::with_capacity(std::mem::replace(&mut self.next_points, 1));
        data_points.push(point);
        let data = match kind {
            Kind::Gauge => metric::Data::Gauge(Gauge { data_points }),
            Kind::MonotonicSum => metric::Data::Sum(Sum {
                data_points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            }),
        };
        self.metrics.push(Metric {
            name: name.to_string(),
            unit: unit.to_string(),
            data: Some(data),
            ..Default::default()
        });
    }

    /// The metrics built, without a resource or scope (for a caller that encodes them
    /// into a resource it writes itself, as smaps `detailed` does).
    pub fn into_metrics(self) -> Vec<Metric> {
        self.metrics
    }

    pub fn finish(self, resource_attributes: Vec<KeyValue>, scope_name: &str) -> ResourceMetrics {
        ResourceMetrics {
            resource: Some(Resource {
                attributes: resource_attributes,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: scope_name.to_string(),
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

/// USER_HZ, the unit of the tick counts in /proc/PID/stat and v1 `cpuacct.stat`:
/// `sysconf(_SC_CLK_TCK)`, or 100 (its value on every mainstream architecture) if that
/// fails. Callers read it once, at construction.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value; it has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// Nanoseconds since the Unix epoch.
pub fn unix_nanos(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Test helpers: find a metric's points in built output (used by tests and benches).
#[doc(hidden)]
pub mod lookup {
    use super::*;

    pub fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
        attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
            match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.as_str()),
                _ => None,
            }
        })
    }

    pub fn find<'a>(rm: &'a ResourceMetrics, name: &str) -> Option<&'a Metric> {
        rm.scope_metrics
            .iter()
            .flat_map(|s| &s.metrics)
            .find(|m| m.name == name)
    }

    fn points(m: &Metric) -> &[NumberDataPoint] {
        match &m.data {
            Some(metric::Data::Gauge(g)) => &g.data_points,
            Some(metric::Data::Sum(s)) => &s.data_points,
            _ => &[],
        }
    }

    /// The value of `name` whose point has all of `attributes`, as f64.
    pub fn value(rm: &ResourceMetrics, name: &str, attributes: &[(&str, &str)]) -> Option<f64> {
        let metric = find(rm, name)?;
        let point = points(metric).iter().find(|p| {
            attributes
                .iter()
                .all(|(k, v)| attr(&p.attributes, k) == Some(*v))
        })?;
        match point.value? {
            number_data_point::Value::AsInt(i) => Some(i as f64),
            number_data_point::Value::AsDouble(d) => Some(d),
        }
    }

    pub fn is_monotonic_sum(rm: &ResourceMetrics, name: &str) -> bool {
        matches!(find(rm, name).and_then(|m| m.data.as_ref()), Some(metric::Data::Sum(s)) if s.is_monotonic)
    }

    pub fn is_gauge(rm: &ResourceMetrics, name: &str) -> bool {
        matches!(
            find(rm, name).and_then(|m| m.data.as_ref()),
            Some(metric::Data::Gauge(_))
        )
    }

    pub fn unit<'a>(rm: &'a ResourceMetrics, name: &str) -> Option<&'a str> {
        find(rm, name).map(|m| m.unit.as_str())
    }

    pub fn resource_attr<'a>(rm: &'a ResourceMetrics, key: &str) -> Option<&'a str> {
        attr(&rm.resource.as_ref()?.attributes, key)
    }
}
