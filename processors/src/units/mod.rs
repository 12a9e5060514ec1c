//! `units`: converts metric units to base units (seconds `s`, bytes `By`, ratio `1`) and
//! scales every value of the metric by the same factor, so `latency` in `ms` becomes
//! `latency` in `s` with values divided by 1000. The unit table is `oxcol_core::units`.
//!
//! What is scaled: gauge and sum values, histogram bounds, sum, min and max (counts are
//! not values), summary quantile values and sum, exemplar values. Exponential histograms
//! are converted exactly only when the factor is a power of two (`KiBy`, `MiBy`, ...):
//! their bucket offset shifts by `log2(factor) * 2^scale`, which must be an integer.
//! Any other factor (`ms`, `kBy`, `%`) would need re-bucketing, which loses precision,
//! so such metrics pass through unchanged and are counted as unconvertible.
//!
//! Integer points stay integers when the factor is a whole number and the result fits
//! (`KiBy` -> `By`); otherwise they become doubles. Unknown units pass through untouched
//! and are counted per unit. This processor keeps no state and never reads the clock.

use std::collections::HashMap;

use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, Metric, ResourceMetrics, exemplar, metric, number_data_point,
};
use oxcol_core::telemetry::{Counter, Registry};
use oxcol_core::units::{self, Conversion, Dimension};
use oxcol_core::{Batch, Processor, Refusal};
use regex::Regex;
use serde::Deserialize;

pub const TYPE: &str = "units";
pub const ALIASES: &[&str] = &["units"];

/// Distinct unknown units counted by name; beyond this they share `unit="other"`.
const MAX_UNKNOWN_UNIT_SERIES: usize = 100;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Units for metrics that carry none, tried in order. Default: none.
    pub rules: Vec<UnitRule>,
    /// Rename names carrying a unit word to the base word (`latency_ms` ->
    /// `latency_seconds`, `heap_kb` -> `heap_bytes`, `cpu_percent` -> `cpu_ratio`).
    /// Default false.
    pub rename: bool,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UnitRule {
    /// Metric name: an exact name or a regex, fully anchored (`jvm_.*_kb`).
    #[serde(rename = "match")]
    pub match_name: String,
    /// The unit to declare for matching metrics that have no unit (e.g. `ms`, `KiBy`).
    pub unit: String,
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if let Err(e) = Regex::new(&format!("^(?:{})$", rule.match_name)) {
                errors.push(format!(
                    "rules[{i}].match {:?} is not a valid regex: {e}",
                    rule.match_name
                ));
            }
            if rule.unit.is_empty() {
                errors.push(format!("rules[{i}].unit is empty: declare the unit the metrics are in (e.g. ms, KiBy, %)"));
            } else if units::to_base(&rule.unit).is_none() {
                errors.push(format!("rules[{i}].unit {:?} is not a unit oxcol can convert (use one of ns us ms s min h d By KiBy MiBy GiBy kBy MBy GBy % 1)", rule.unit));
            }
        }
        errors
    }
}

pub struct UnitsProcessor {
    id: String,
    rules: Vec<(Regex, String)>,
    rename: bool,
    registry: Option<std::sync::Arc<Registry>>,
    unknown: HashMap<String, Counter>,
    unconvertible: Counter,
}

impl UnitsProcessor {
    /// `registry` receives `oxcol_processor_units_unknown{processor,unit}` and
    /// `oxcol_processor_units_unconvertible{processor}`.
    pub fn new(
        id: &str,
        config: &Config,
        registry: Option<std::sync::Arc<Registry>>,
    ) -> Result<UnitsProcessor, String> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let rules = config
            .rules
            .iter()
            .map(|r| {
                Ok((
                    Regex::new(&format!("^(?:{})$", r.match_name)).map_err(|e| e.to_string())?,
                    r.unit.clone(),
                ))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let unconvertible = match &registry {
            Some(registry) => registry.counter(
                "oxcol_processor_units_unconvertible",
                "Points left in their unit because no exact conversion exists (exponential histograms with a factor that is not a power of two).",
                &[("processor", id)],
            ),
            None => Counter::default(),
        };
        Ok(UnitsProcessor {
            id: id.to_string(),
            rules,
            rename: config.rename,
            registry,
            unknown: HashMap::new(),
            unconvertible,
        })
    }

    fn count_unknown(&mut self, unit: &str, points: u64) {
        let key = if self.unknown.contains_key(unit) || self.unknown.len() < MAX_UNKNOWN_UNIT_SERIES
        {
            unit
        } else {
            "other"
        };
        if !self.unknown.contains_key(key) {
            let counter = match &self.registry {
                Some(registry) => registry.counter(
                    "oxcol_processor_units_unknown",
                    "Points whose unit oxcol does not know, passed through unconverted.",
                    &[("processor", &self.id), ("unit", key)],
                ),
                None => Counter::default(),
            };
            self.unknown.insert(key.to_string(), counter);
        }
        if let Some(counter) = self.unknown.get(key) {
            counter.add(points);
        }
    }

    /// Points counted as having an unknown unit so far, for `unit`.
    pub fn unknown_points(&self, unit: &str) -> u64 {
        self.unknown.get(unit).map_or(0, Counter::get)
    }

    pub fn unconvertible_points(&self) -> u64 {
        self.unconvertible.get()
    }

    /// Converts every metric of `resources` in place.
    pub fn convert(&mut self, resources: &mut [ResourceMetrics]) {
        for metric in resources
            .iter_mut()
            .flat_map(|r| &mut r.scope_metrics)
            .flat_map(|s| &mut s.metrics)
        {
            self.convert_metric(metric);
        }
    }

    fn convert_metric(&mut self, metric: &mut Metric) {
        if metric.unit.is_empty()
            && let Some((_, unit)) = self.rules.iter().find(|(re, _)| re.is_match(&metric.name))
        {
            metric.unit = unit.clone();
        }
        let Some(conversion) = units::to_base(&metric.unit) else {
            let points = point_count(metric);
            let unit = metric.unit.clone();
            self.count_unknown(&unit, points);
            return;
        };
        if conversion.factor != 1.0 && !scale(metric, conversion.factor) {
            self.unconvertible.add(point_count(metric));
            return;
        }
        metric.unit = conversion.unit.clone();
        if self.rename {
            rename(metric, &conversion);
        }
    }
}

impl Processor for UnitsProcessor {
    fn process(&mut self, mut batch: Batch) -> Result<Batch, Refusal> {
        if batch.signal() != oxcol_core::Signal::Metrics {
            return Ok(batch);
        }
        let id = self.id.clone();
        let resources = batch.metrics_mut().map_err(|e| Refusal::Invalid {
            reason: format!("processor {id}: cannot decode the metrics batch: {e}"),
        })?;
        self.convert(resources);
        Ok(batch)
    }
}

fn point_count(metric: &Metric) -> u64 {
    oxcol_core::batch::metric_points(metric) as u64
}

/// Multiplies every value of `metric` by `factor`. False (and nothing changed) when the
/// metric cannot be converted exactly.
fn scale(metric: &mut Metric, factor: f64) -> bool {
    match metric.data.as_mut() {
        None => {}
        Some(metric::Data::Gauge(g)) => g.data_points.iter_mut().for_each(|p| {
            scale_number(&mut p.value, factor);
            scale_exemplars(&mut p.exemplars, factor);
        }),
        Some(metric::Data::Sum(s)) => s.data_points.iter_mut().for_each(|p| {
            scale_number(&mut p.value, factor);
            scale_exemplars(&mut p.exemplars, factor);
        }),
        Some(metric::Data::Histogram(h)) => h.data_points.iter_mut().for_each(|p| {
            p.explicit_bounds.iter_mut().for_each(|b| *b *= factor);
            p.sum = p.sum.map(|v| v * factor);
            p.min = p.min.map(|v| v * factor);
            p.max = p.max.map(|v| v * factor);
            scale_exemplars(&mut p.exemplars, factor);
        }),
        Some(metric::Data::Summary(s)) => s.data_points.iter_mut().for_each(|p| {
            p.sum *= factor;
            p.quantile_values.iter_mut().for_each(|q| q.value *= factor);
        }),
        Some(metric::Data::ExponentialHistogram(h)) => {
            let Some(shift_log2) = power_of_two(factor) else {
                return false;
            };
            // Every point must shift by a whole number of buckets; check before changing any.
            let shifts: Option<Vec<i64>> = h
                .data_points
                .iter()
                .map(|p| bucket_shift(shift_log2, p.scale))
                .collect();
            let Some(shifts) = shifts else { return false };
            for (p, shift) in h.data_points.iter_mut().zip(shifts) {
                let shift = shift as i32;
                if let Some(b) = p.positive.as_mut() {
                    b.offset = b.offset.saturating_add(shift);
                }
                if let Some(b) = p.negative.as_mut() {
                    b.offset = b.offset.saturating_add(shift);
                }
                p.zero_threshold *= factor;
                p.sum = p.sum.map(|v| v * factor);
                p.min = p.min.map(|v| v * factor);
                p.max = p.max.map(|v| v * factor);
                scale_exemplars(&mut p.exemplars, factor);
            }
        }
    }
    true
}

/// `k` when `factor` is exactly `2^k`.
fn power_of_two(factor: f64) -> Option<i32> {
    if factor <= 0.0 || !factor.is_finite() {
        return None;
    }
    let k = factor.log2().round() as i32;
    (2f64.powi(k) == factor).then_some(k)
}

/// Buckets to shift at `scale` for a factor `2^k`: `k * 2^scale`, when whole.
fn bucket_shift(k: i32, scale: i32) -> Option<i64> {
    if scale >= 0 {
        let shift = (k as i64).checked_mul(1i64.checked_shl(scale as u32)?)?;
        (shift.abs() <= i32::MAX as i64).then_some(shift)
    } else {
        let divisor = 1i64.checked_shl(scale.unsigned_abs())?;
        (k as i64 % divisor == 0).then_some(k as i64 / divisor)
    }
}

fn scale_number(value: &mut Option<number_data_point::Value>, factor: f64) {
    *value = match value.take() {
        Some(number_data_point::Value::AsDouble(v)) => {
            Some(number_data_point::Value::AsDouble(v * factor))
        }
        Some(number_data_point::Value::AsInt(i)) => Some(scaled_int(i, factor)),
        None => None,
    };
}

fn scaled_int(i: i64, factor: f64) -> number_data_point::Value {
    if factor.fract() == 0.0
        && factor.abs() < 9.0e15
        && let Some(v) = i.checked_mul(factor as i64)
    {
        return number_data_point::Value::AsInt(v);
    }
    number_data_point::Value::AsDouble(i as f64 * factor)
}

fn scale_exemplars(exemplars: &mut [Exemplar], factor: f64) {
    for e in exemplars {
        e.value = match e.value.take() {
            Some(exemplar::Value::AsDouble(v)) => Some(exemplar::Value::AsDouble(v * factor)),
            Some(exemplar::Value::AsInt(i)) => Some(match scaled_int(i, factor) {
                number_data_point::Value::AsInt(v) => exemplar::Value::AsInt(v),
                number_data_point::Value::AsDouble(v) => exemplar::Value::AsDouble(v),
            }),
            None => None,
        };
    }
}

/// Replaces the last unit word of the name that has the metric's dimension with the base
/// word: `latency_ms` -> `latency_seconds`, `http.heap.kb` -> `http.heap.bytes`.
fn rename(metric: &mut Metric, conversion: &Conversion) {
    let Some(dimension) = conversion.dimension else {
        return;
    };
    let name = &metric.name;
    let mut tokens: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    for (i, c) in name.char_indices() {
        if c == '_' || c == '.' {
            tokens.push((start, i));
            start = i + 1;
        }
    }
    tokens.push((start, name.len()));
    let found = tokens.iter().rev().find(|(s, e)| {
        let token = &name[*s..*e];
        units::unit_of_name_token(token).is_some_and(|k| k.dimension == dimension)
            && !token.eq_ignore_ascii_case(dimension.base_word())
    });
    if let Some(&(s, e)) = found {
        metric.name = format!("{}{}{}", &name[..s], base_word(dimension), &name[e..]);
    }
}

fn base_word(dimension: Dimension) -> &'static str {
    dimension.base_word()
}

#[cfg(test)]
mod tests;
