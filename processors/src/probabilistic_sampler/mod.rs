//! `probabilistic_sampler` (also `probabilisticsampler`): keeps a configured percentage of
//! spans or log records, deciding per item exactly as the Collector's processor does, so
//! the same traces are kept by oxcol and by the Collector.
//!
//! Modes: `hash_seed` (the default: FNV-1a of the seed and the trace ID, or for logs of a
//! record attribute, bucketed into 2^14), `equalizing` and `proportional` (OTEP 235
//! consistent sampling on the trace ID's randomness and the `th` threshold of the
//! tracestate). Sampled spans get their `ot=` tracestate entry updated (`rv`, `th`), and
//! sampled log records the `sampling.randomness`/`sampling.threshold` attributes, as the
//! Collector writes them. A `sampling.priority` span attribute forces the decision (0:
//! drop, > 0: keep); for logs `sampling_priority` names an attribute holding a percentage
//! that replaces the configured one.
//!
//! This processor keeps no state between batches and never reads the clock.

pub mod sampling;

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use oxcol_core::telemetry::{Counter, Registry};
use oxcol_core::{Batch, Processor, Refusal, Signal};
use serde::Deserialize;

use crate::helper::pvalue;
use sampling::{
    ALL_PROBABILITIES, ALWAYS_SAMPLE, NEVER_SAMPLE, NUM_HASH_BUCKETS, Randomness, Threshold,
    TraceState,
};

pub const TYPE: &str = "probabilistic_sampler";
pub const ALIASES: &[&str] = &["probabilistic_sampler", "probabilisticsampler"];

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Percentage of items kept (a float32 in the Collector); >= 100 keeps everything,
    /// 0 keeps nothing. Default 0.
    pub sampling_percentage: f32,
    /// Seed of the `hash_seed` hash. Default 0.
    pub hash_seed: u32,
    /// `hash_seed`, `equalizing` or `proportional`; unset means `hash_seed`.
    pub mode: String,
    /// Drop items whose randomness cannot be determined (bad tracestate, no trace ID and
    /// no `from_attribute`). Default true.
    pub fail_closed: bool,
    /// Hex digits of the thresholds written (1-14). Default 4.
    pub sampling_precision: usize,
    /// Logs: `traceID` (default) or `record`.
    pub attribute_source: String,
    /// Logs: the record attribute hashed when there is no trace ID (or with `record`).
    pub from_attribute: String,
    /// Logs: the record attribute holding a sampling percentage for that record.
    pub sampling_priority: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sampling_percentage: 0.0,
            hash_seed: 0,
            mode: String::new(),
            fail_closed: true,
            sampling_precision: 4,
            attribute_source: "traceID".into(),
            from_attribute: String::new(),
            sampling_priority: String::new(),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let pct = f64::from(self.sampling_percentage);
        if !pct.is_finite() {
            problems.push(format!(
                "sampling_percentage {pct} is not a number: use 0-100"
            ));
        } else if pct < 0.0 {
            problems.push(format!("sampling_percentage {pct} is negative: use 0-100"));
        } else if pct != 0.0 && pct / 100.0 < sampling::MIN_SAMPLING_PROBABILITY {
            problems.push(format!("sampling_percentage {pct} is too small: the smallest is 2^-56 (about 1.4e-15 percent)"));
        }
        if !matches!(
            self.mode.as_str(),
            "" | "hash_seed" | "equalizing" | "proportional"
        ) {
            problems.push(format!(
                "mode {:?} is not valid: use hash_seed, equalizing or proportional",
                self.mode
            ));
        }
        if !matches!(self.attribute_source.as_str(), "" | "traceID" | "record") {
            problems.push(format!(
                "attribute_source {:?} is not valid: use traceID or record",
                self.attribute_source
            ));
        }
        if self.sampling_precision == 0 {
            problems.push("sampling_precision 0 is not valid: use 1-14 (default 4)".into());
        } else if self.sampling_precision > sampling::NUM_HEX_DIGITS {
            problems.push(format!(
                "sampling_precision {} is too great: use 1-14",
                self.sampling_precision
            ));
        }
        problems
    }
}

/// How a decision threshold is found (the Collector's `makeSampler`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Sampler {
    Never,
    Hashing { threshold: Threshold, seed: u32 },
    Equalizing { threshold: Threshold },
    Proportional { ratio: f64, precision: usize },
}

fn make_sampler(config: &Config) -> Sampler {
    let pct = config.sampling_percentage.min(100.0);
    if pct == 0.0 {
        return Sampler::Never;
    }
    let ratio = (f64::from(pct) / 100.0).max(sampling::MIN_SAMPLING_PROBABILITY);
    match config.mode.as_str() {
        "equalizing" => Sampler::Equalizing {
            threshold: sampling::probability_to_threshold(ratio, config.sampling_precision)
                .unwrap_or(ALWAYS_SAMPLE),
        },
        "proportional" => Sampler::Proportional {
            ratio,
            precision: config.sampling_precision,
        },
        _ => {
            // As the Collector: float32 multiply, truncated (`uint32(pct * 163.84)`).
            let scaled = (pct * (NUM_HASH_BUCKETS as f32 / 100.0)) as u32;
            if scaled == 0 {
                return Sampler::Never;
            }
            let reject = NUM_HASH_BUCKETS - u64::from(scaled).min(NUM_HASH_BUCKETS);
            Sampler::Hashing {
                threshold: Threshold(reject << 42),
                seed: config.hash_seed,
            }
        }
    }
}

/// Where an item's randomness came from; the `policy` attribute of the counters.
#[derive(Clone, Debug, PartialEq)]
enum Policy {
    Missing,
    TraceIdHash,
    TraceIdW3c,
    SamplingRandomness,
    SamplingPriority,
    Attribute(String),
}

impl Policy {
    fn name(&self) -> &str {
        match self {
            Policy::Missing => "missing_randomness",
            Policy::TraceIdHash => "trace_id_hash",
            Policy::TraceIdW3c => "trace_id_w3c",
            Policy::SamplingRandomness => "sampling_randomness",
            Policy::SamplingPriority => "sampling_priority",
            Policy::Attribute(name) => name,
        }
    }
}

#[derive(Clone, Debug)]
struct Rnd {
    policy: Policy,
    value: Randomness,
}

impl Rnd {
    fn missing() -> Rnd {
        Rnd {
            policy: Policy::Missing,
            value: ALL_PROBABILITIES,
        }
    }
}

/// The item's sampling fields: a span's tracestate or a log record's attributes.
trait Carrier {
    fn threshold(&self) -> Option<Threshold>;
    fn randomness(&self) -> Option<Randomness>;
    fn set_randomness(&mut self, rnd: Randomness);
    fn clear_threshold(&mut self);
    fn update_threshold(&mut self, threshold: Threshold);
}

struct SpanCarrier {
    state: TraceState,
}

impl Carrier for SpanCarrier {
    fn threshold(&self) -> Option<Threshold> {
        self.state.threshold()
    }
    fn randomness(&self) -> Option<Randomness> {
        self.state.randomness()
    }
    fn set_randomness(&mut self, rnd: Randomness) {
        self.state.set_randomness(rnd);
    }
    fn clear_threshold(&mut self) {
        self.state.clear_threshold();
    }
    fn update_threshold(&mut self, threshold: Threshold) {
        self.state.update_threshold(threshold);
    }
}

const LOG_THRESHOLD: &str = "sampling.threshold";
const LOG_RANDOMNESS: &str = "sampling.randomness";

/// Log records carry `sampling.threshold` and `sampling.randomness` string attributes.
struct LogCarrier<'a> {
    attributes: &'a mut Vec<KeyValue>,
    threshold: Option<Threshold>,
    randomness: Option<Randomness>,
}

impl<'a> LogCarrier<'a> {
    /// Reads `sampling.threshold` and `sampling.randomness` (string attributes only). A
    /// value that does not parse is left unset and reported, as the Collector's carrier
    /// keeps what parsed and returns the error.
    fn parse(attributes: &'a mut Vec<KeyValue>) -> (LogCarrier<'a>, Option<String>) {
        let text = |attrs: &[KeyValue], key: &str| match pvalue::get(attrs, key) {
            Some(AnyValue {
                value: Some(Value::StringValue(s)),
            }) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let mut error = None;
        let threshold = text(attributes, LOG_THRESHOLD).and_then(|t| {
            let parsed = Threshold::from_tvalue(&t);
            if parsed.is_none() {
                error = Some(format!("{LOG_THRESHOLD} {t:?} is not 1-14 hex digits"));
            }
            parsed
        });
        let randomness = text(attributes, LOG_RANDOMNESS).and_then(|r| {
            let parsed = Randomness::from_rvalue(&r);
            if parsed.is_none() {
                error = Some(format!("{LOG_RANDOMNESS} {r:?} is not 14 hex digits"));
            }
            parsed
        });
        (
            LogCarrier {
                attributes,
                threshold,
                randomness,
            },
            error,
        )
    }
}

impl Carrier for LogCarrier<'_> {
    fn threshold(&self) -> Option<Threshold> {
        self.threshold
    }
    fn randomness(&self) -> Option<Randomness> {
        self.randomness
    }
    fn set_randomness(&mut self, rnd: Randomness) {
        self.randomness = Some(rnd);
        pvalue::put_str(self.attributes, LOG_RANDOMNESS, rnd.rvalue());
    }
    fn clear_threshold(&mut self) {
        self.threshold = None;
        pvalue::remove(self.attributes, LOG_THRESHOLD);
    }
    fn update_threshold(&mut self, threshold: Threshold) {
        if self.threshold.is_some_and(|existing| threshold < existing) {
            return;
        }
        pvalue::put_str(self.attributes, LOG_THRESHOLD, threshold.tvalue());
    }
}

/// Why an item's sampling information could not be used (logged at debug level by the
/// Collector; here it decides `fail_closed`).
#[derive(Debug)]
enum SampleError {
    Parse,
    MissingRandomness,
    InUse,
    InconsistentThreshold,
}

impl Sampler {
    fn decide(&self, carrier: Option<&dyn Carrier>) -> Threshold {
        match *self {
            Sampler::Never => NEVER_SAMPLE,
            Sampler::Hashing { threshold, .. } => threshold,
            Sampler::Equalizing { threshold } => match carrier.and_then(Carrier::threshold) {
                Some(incoming) if threshold < incoming => incoming,
                _ => threshold,
            },
            Sampler::Proportional { ratio, precision } => {
                let incoming = carrier
                    .and_then(Carrier::threshold)
                    .map_or(1.0, Threshold::probability);
                sampling::probability_to_threshold(incoming * ratio, precision)
                    .unwrap_or(NEVER_SAMPLE)
            }
        }
    }
}

/// The Collector's `commonShouldSampleLogic`, once the randomness, the carrier (absent
/// when its sampling fields must not be touched) and any error are known.
fn should_sample(
    sampler: &Sampler,
    fail_closed: bool,
    rnd: Rnd,
    mut carrier: Option<&mut dyn Carrier>,
    error: Option<SampleError>,
    priority: impl FnOnce(Rnd, Threshold) -> (Rnd, Threshold),
) -> (bool, Policy) {
    let error = match error {
        Some(e) => Some(e),
        None => consistency_check(&rnd, carrier.as_deref_mut()),
    };
    let threshold = match error {
        Some(_) if fail_closed => NEVER_SAMPLE,
        Some(_) => ALWAYS_SAMPLE,
        None => sampler.decide(carrier.as_deref().map(|c| c as &dyn Carrier)),
    };
    let (rnd, threshold) = priority(rnd, threshold);
    let sampled = threshold.should_sample(rnd.value);
    if sampled && let Some(carrier) = carrier {
        carrier.update_threshold(threshold);
    }
    (sampled, rnd.policy)
}

fn consistency_check<'c>(
    rnd: &Rnd,
    carrier: Option<&mut (dyn Carrier + 'c)>,
) -> Option<SampleError> {
    if rnd.policy == Policy::Missing {
        return Some(SampleError::MissingRandomness);
    }
    let carrier = carrier?;
    if let Some(threshold) = carrier.threshold()
        && !threshold.should_sample(rnd.value)
    {
        carrier.clear_threshold();
        return Some(SampleError::InconsistentThreshold);
    }
    None
}

pub struct ProbabilisticSampler {
    id: String,
    sampler: Sampler,
    fail_closed: bool,
    precision: usize,
    logs_trace_id: bool,
    from_attribute: String,
    sampling_priority: String,
    registry: Option<Arc<Registry>>,
    counters: HashMap<(String, bool), Counter>,
}

impl ProbabilisticSampler {
    /// `registry` receives `otelcol_processor_probabilistic_sampler_count_traces_sampled`
    /// and `..._count_logs_sampled` with `processor`, `policy` and `sampled`.
    pub fn new(
        id: &str,
        config: &Config,
        registry: Option<Arc<Registry>>,
    ) -> Result<ProbabilisticSampler, String> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(ProbabilisticSampler {
            id: id.to_string(),
            sampler: make_sampler(config),
            fail_closed: config.fail_closed,
            precision: config.sampling_precision,
            logs_trace_id: config.attribute_source == "traceID",
            from_attribute: config.from_attribute.clone(),
            sampling_priority: config.sampling_priority.clone(),
            registry,
            counters: HashMap::new(),
        })
    }

    fn count(&mut self, signal: Signal, policy: &Policy, sampled: bool) {
        let key = (policy.name().to_string(), sampled);
        if !self.counters.contains_key(&key) {
            let counter = match &self.registry {
                Some(registry) => {
                    let name = match signal {
                        Signal::Logs => {
                            "otelcol_processor_probabilistic_sampler_count_logs_sampled"
                        }
                        _ => "otelcol_processor_probabilistic_sampler_count_traces_sampled",
                    };
                    let sampled_text = sampled.to_string();
                    registry.counter(
                        name,
                        "Count of items that were sampled or not, by policy.",
                        &[
                            ("processor", &self.id),
                            ("policy", &key.0),
                            ("sampled", &sampled_text),
                        ],
                    )
                }
                None => Counter::default(),
            };
            self.counters.insert(key.clone(), counter);
        }
        if let Some(counter) = self.counters.get(&key) {
            counter.add(1);
        }
    }

    /// Items counted so far with `policy` and `sampled`.
    pub fn counted(&self, policy: &str, sampled: bool) -> u64 {
        self.counters
            .get(&(policy.to_string(), sampled))
            .map_or(0, Counter::get)
    }

    fn sample_span(&self, span: &mut Span) -> (bool, Policy) {
        let parsed = TraceState::parse(&span.trace_state);
        let trace_id_empty = span.trace_id.iter().all(|b| *b == 0);
        let (rnd, mut carrier, error) = match self.sampler {
            Sampler::Hashing { seed, .. } => {
                let rnd = if trace_id_empty {
                    Rnd::missing()
                } else {
                    Rnd {
                        policy: Policy::TraceIdHash,
                        value: sampling::randomness_from_bytes(&span.trace_id, seed),
                    }
                };
                match parsed {
                    Err(_) => (rnd, None, Some(SampleError::Parse)),
                    // Sampling-aware data: left alone, fail_closed decides.
                    Ok(state) if state.randomness().is_some() || state.threshold().is_some() => {
                        (rnd, None, Some(SampleError::InUse))
                    }
                    Ok(mut state) => {
                        state.set_randomness(rnd.value);
                        (rnd, Some(SpanCarrier { state }), None)
                    }
                }
            }
            Sampler::Never => {
                // The randomness is not used; a carrier is kept even when the tracestate
                // is malformed, as in the Collector (a forced keep then rewrites it).
                let rnd = Rnd {
                    policy: Policy::SamplingPriority,
                    value: ALL_PROBABILITIES,
                };
                match parsed {
                    Err(_) => (
                        rnd,
                        Some(SpanCarrier {
                            state: TraceState::default(),
                        }),
                        Some(SampleError::Parse),
                    ),
                    Ok(state) => (rnd, Some(SpanCarrier { state }), None),
                }
            }
            Sampler::Equalizing { .. } | Sampler::Proportional { .. } => match parsed {
                Err(_) => (Rnd::missing(), None, Some(SampleError::Parse)),
                Ok(state) => {
                    let rnd = match state.randomness() {
                        Some(value) => Rnd {
                            policy: Policy::SamplingRandomness,
                            value,
                        },
                        None if !trace_id_empty => Rnd {
                            policy: Policy::TraceIdW3c,
                            value: Randomness::from_trace_id(&span.trace_id),
                        },
                        None => Rnd::missing(),
                    };
                    (rnd, Some(SpanCarrier { state }), None)
                }
            },
        };
        let priority = span_priority(&span.attributes);
        let (sampled, policy) = should_sample(
            &self.sampler,
            self.fail_closed,
            rnd,
            carrier.as_mut().map(|c| c as &mut dyn Carrier),
            error,
            |rnd, threshold| match priority {
                Some(true) => (
                    Rnd {
                        policy: Policy::SamplingPriority,
                        ..rnd
                    },
                    ALWAYS_SAMPLE,
                ),
                Some(false) => (
                    Rnd {
                        policy: Policy::SamplingPriority,
                        ..rnd
                    },
                    NEVER_SAMPLE,
                ),
                None => (rnd, threshold),
            },
        );
        if sampled && let Some(carrier) = carrier {
            span.trace_state = carrier.state.serialize();
        }
        (sampled, policy)
    }

    fn sample_log(&self, record: &mut LogRecord) -> (bool, Policy) {
        let trace_id_empty = record.trace_id.iter().all(|b| *b == 0);
        let priority = self.log_priority(&record.attributes);
        let mut rnd = Rnd::missing();
        if let Sampler::Hashing { seed, .. } = self.sampler {
            if self.logs_trace_id && !trace_id_empty {
                rnd = Rnd {
                    policy: Policy::TraceIdHash,
                    value: sampling::randomness_from_bytes(&record.trace_id, seed),
                };
            }
            if rnd.policy == Policy::Missing
                && !self.from_attribute.is_empty()
                && let Some(value) = pvalue::get(&record.attributes, &self.from_attribute)
            {
                let bytes = match &value.value {
                    Some(Value::BytesValue(b)) => b.clone(),
                    _ => pvalue::as_string(value).into_bytes(),
                };
                if !bytes.is_empty() {
                    rnd = Rnd {
                        policy: Policy::Attribute(self.from_attribute.clone()),
                        value: sampling::randomness_from_bytes(&bytes, seed),
                    };
                }
            }
        }
        let sampler = self.sampler;
        let (mut parsed, parse_error) = LogCarrier::parse(&mut record.attributes);
        let (rnd, carrier, error): (Rnd, Option<&mut dyn Carrier>, Option<SampleError>) =
            match sampler {
                Sampler::Hashing { .. } => {
                    if parse_error.is_some() {
                        (rnd, None, Some(SampleError::Parse))
                    } else if parsed.randomness().is_some() || parsed.threshold().is_some() {
                        (rnd, None, Some(SampleError::InUse))
                    } else {
                        if rnd.policy != Policy::Missing {
                            parsed.set_randomness(rnd.value);
                        }
                        (rnd, Some(&mut parsed), None)
                    }
                }
                Sampler::Never => {
                    let rnd = Rnd {
                        policy: Policy::SamplingPriority,
                        value: ALL_PROBABILITIES,
                    };
                    (
                        rnd,
                        Some(&mut parsed),
                        parse_error.map(|_| SampleError::Parse),
                    )
                }
                Sampler::Equalizing { .. } | Sampler::Proportional { .. } => {
                    if parse_error.is_some() {
                        (Rnd::missing(), None, Some(SampleError::Parse))
                    } else {
                        let rnd = match parsed.randomness() {
                            Some(value) => Rnd {
                                policy: Policy::SamplingRandomness,
                                value,
                            },
                            None if !trace_id_empty => Rnd {
                                policy: Policy::TraceIdW3c,
                                value: Randomness::from_trace_id(&record.trace_id),
                            },
                            None => Rnd::missing(),
                        };
                        (rnd, Some(&mut parsed), None)
                    }
                }
            };
        should_sample(
            &sampler,
            self.fail_closed,
            rnd,
            carrier,
            error,
            |rnd, threshold| match priority {
                Some(priority_threshold) => (
                    Rnd {
                        policy: Policy::SamplingPriority,
                        ..rnd
                    },
                    priority_threshold,
                ),
                None => (rnd, threshold),
            },
        )
    }

    /// The logs `sampling_priority` attribute as a threshold (a percentage, int or double).
    fn log_priority(&self, attrs: &[KeyValue]) -> Option<Threshold> {
        if self.sampling_priority.is_empty() {
            return None;
        }
        let min_probability = match pvalue::get(attrs, &self.sampling_priority)?.value {
            Some(Value::DoubleValue(d)) => d / 100.0,
            Some(Value::IntValue(i)) => i as f64 / 100.0,
            _ => 0.0,
        };
        if min_probability == 0.0 {
            return None;
        }
        sampling::probability_to_threshold(min_probability, self.precision)
    }
}

/// The span's `sampling.priority` attribute: Some(true) keep, Some(false) drop.
fn span_priority(attrs: &[KeyValue]) -> Option<bool> {
    let value = match pvalue::get(attrs, "sampling.priority")?.value.as_ref()? {
        Value::IntValue(i) => *i as f64,
        Value::DoubleValue(d) => *d,
        Value::StringValue(s) => pvalue::go_parse_float(s)?,
        _ => return None,
    };
    if value == 0.0 {
        Some(false)
    } else if value > 0.0 {
        Some(true)
    } else {
        None
    }
}

impl Processor for ProbabilisticSampler {
    fn process(&mut self, mut batch: Batch) -> Result<Batch, Refusal> {
        let id = self.id.clone();
        let refuse = |e: oxcol_core::batch::BatchError| Refusal::Invalid {
            reason: format!("processor {id}: cannot decode the batch: {e}"),
        };
        let mut decisions: Vec<(bool, Policy)> = Vec::new();
        let signal = batch.signal();
        match signal {
            Signal::Traces => {
                let resources = batch.traces_mut().map_err(refuse)?;
                for rs in resources.iter_mut() {
                    for ss in &mut rs.scope_spans {
                        ss.spans.retain_mut(|span| {
                            let decision = self.sample_span(span);
                            let keep = decision.0;
                            decisions.push(decision);
                            keep
                        });
                    }
                    rs.scope_spans.retain(|s| !s.spans.is_empty());
                }
                resources.retain(|r| !r.scope_spans.is_empty());
            }
            Signal::Logs => {
                let resources = batch.logs_mut().map_err(refuse)?;
                for rl in resources.iter_mut() {
                    for sl in &mut rl.scope_logs {
                        sl.log_records.retain_mut(|record| {
                            let decision = self.sample_log(record);
                            let keep = decision.0;
                            decisions.push(decision);
                            keep
                        });
                    }
                    rl.scope_logs.retain(|s| !s.log_records.is_empty());
                }
                resources.retain(|r| !r.scope_logs.is_empty());
            }
            // Not a metrics processor: the registry rejects metrics pipelines; pass through.
            Signal::Metrics => return Ok(batch),
        }
        for (sampled, policy) in decisions {
            self.count(signal, &policy, sampled);
        }
        batch.recount();
        Ok(batch)
    }
}

#[cfg(test)]
mod tests;
