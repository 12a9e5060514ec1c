//! `attributes`: applies a list of attribute actions (insert, update, upsert, delete,
//! hash, extract, convert) to span attributes, log record attributes and metric data
//! point attributes, optionally only to items selected by `include`/`exclude`, exactly
//! as the Collector's attributes processor does (its output is the test oracle).
//!
//! The action engine is `helper::attraction` (shared with `resource`), the matchers are
//! `helper::filter`. This processor never drops or refuses data (only a batch that
//! cannot be decoded is refused) and keeps no state.

use opentelemetry_proto::tonic::metrics::v1::{Metric, metric};
use oxcol_core::{Batch, Processor, Refusal, Signal};
use serde::Deserialize;

use crate::helper::attraction::{self, ActionConfig, AttrProc};
use crate::helper::filter::{self, MatchProperties, Skip};

pub const TYPE: &str = "attributes";
pub const ALIASES: &[&str] = &["attributes"];

/// The Collector's config: `actions` plus `include`/`exclude` at the same level.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Actions, applied in order. Required (at least one).
    pub actions: Vec<ActionConfig>,
    /// Only items matching these properties are processed.
    pub include: Option<MatchProperties>,
    /// Items matching these properties are not processed (checked after `include`).
    pub exclude: Option<MatchProperties>,
}

impl Config {
    fn match_config(&self) -> filter::MatchConfig {
        filter::MatchConfig {
            include: self.include.clone(),
            exclude: self.exclude.clone(),
        }
    }

    /// Every problem, for every signal the processor could be used with (a pipeline of
    /// one signal only needs that signal's properties to be valid: see
    /// [`Config::validate_for`]).
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.actions.is_empty() {
            problems.push("\"actions\" is missing: list at least one action (e.g. {key: env, value: prod, action: upsert})".to_string());
        }
        problems.extend(attraction::validate(&self.actions, "actions"));
        problems
    }

    /// Problems of `include`/`exclude` for one signal (the Collector checks them when it
    /// builds the processor for a pipeline of that signal).
    pub fn validate_for(&self, signal: Signal) -> Vec<String> {
        self.match_config().validate(filter_signal(signal))
    }
}

fn filter_signal(signal: Signal) -> filter::Signal {
    match signal {
        Signal::Traces => filter::Signal::Spans,
        Signal::Logs => filter::Signal::Logs,
        Signal::Metrics => filter::Signal::Metrics,
    }
}

pub struct AttributesProcessor {
    id: String,
    actions: AttrProc,
    skip: Skip,
}

impl AttributesProcessor {
    /// Builds the processor for a pipeline of `signal`.
    pub fn new(id: &str, config: &Config, signal: Signal) -> Result<AttributesProcessor, String> {
        let mut problems = config.validate();
        problems.extend(config.validate_for(signal));
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(AttributesProcessor {
            id: id.to_string(),
            actions: AttrProc::new(&config.actions, "actions")?,
            skip: config.match_config().compile(filter_signal(signal))?,
        })
    }

    fn refuse(&self, e: impl std::fmt::Display) -> Refusal {
        Refusal::Invalid {
            reason: format!("processor {}: cannot decode the batch: {e}", self.id),
        }
    }
}

impl Processor for AttributesProcessor {
    fn process(&mut self, mut batch: Batch) -> Result<Batch, Refusal> {
        match batch.signal() {
            Signal::Traces => {
                let resources = batch.traces_mut().map_err(|e| self.refuse(e))?;
                for rs in resources.iter_mut() {
                    for ss in &mut rs.scope_spans {
                        for span in &mut ss.spans {
                            if self
                                .skip
                                .span(span, rs.resource.as_ref(), ss.scope.as_ref())
                            {
                                continue;
                            }
                            self.actions.process(&mut span.attributes);
                        }
                    }
                }
            }
            Signal::Logs => {
                let resources = batch.logs_mut().map_err(|e| self.refuse(e))?;
                for rl in resources.iter_mut() {
                    for sl in &mut rl.scope_logs {
                        for record in &mut sl.log_records {
                            if self
                                .skip
                                .log(record, rl.resource.as_ref(), sl.scope.as_ref())
                            {
                                continue;
                            }
                            self.actions.process(&mut record.attributes);
                        }
                    }
                }
            }
            Signal::Metrics => {
                let resources = batch.metrics_mut().map_err(|e| self.refuse(e))?;
                for metric in resources
                    .iter_mut()
                    .flat_map(|r| &mut r.scope_metrics)
                    .flat_map(|s| &mut s.metrics)
                {
                    if self.skip.metric(metric) {
                        continue;
                    }
                    process_points(&self.actions, metric);
                }
            }
        }
        Ok(batch)
    }
}

/// Applies the actions to the attributes of every data point of `metric`.
fn process_points(actions: &AttrProc, metric: &mut Metric) {
    match metric.data.as_mut() {
        Some(metric::Data::Gauge(g)) => g
            .data_points
            .iter_mut()
            .for_each(|p| actions.process(&mut p.attributes)),
        Some(metric::Data::Sum(s)) => s
            .data_points
            .iter_mut()
            .for_each(|p| actions.process(&mut p.attributes)),
        Some(metric::Data::Histogram(h)) => h
            .data_points
            .iter_mut()
            .for_each(|p| actions.process(&mut p.attributes)),
        Some(metric::Data::ExponentialHistogram(h)) => h
            .data_points
            .iter_mut()
            .for_each(|p| actions.process(&mut p.attributes)),
        Some(metric::Data::Summary(s)) => s
            .data_points
            .iter_mut()
            .for_each(|p| actions.process(&mut p.attributes)),
        None => {}
    }
}

#[cfg(test)]
mod tests;
