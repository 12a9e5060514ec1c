//! The sampling policies: each looks at every span held for one trace and answers with a
//! [`Decision`]. They follow the Collector's evaluators (contrib `tailsamplingprocessor`,
//! `internal/sampling`) rule for rule, including their quirks (attribute values of the
//! wrong type read as `""`/`0`/`false`, a latency bound checked on the running span
//! window, composite sub-policies without a `rate_allocation` never sampling), so the
//! same config keeps the same traces.
//!
//! Policies never read the wall clock: rate limits get the time from the caller (the
//! processor's injectable clock).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span, status::StatusCode};
use regex::Regex;

use oxcol_ottl::{Condition, ContextKind, ErrorMode, Item};

use super::config::{CompositeConfig, OttlConditionConfig, PolicyConfig};
use super::lru::Lru;

/// What one policy says about one trace (the Collector's `sampling.Decision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    Sampled,
    NotSampled,
    /// From a `drop` policy: do not sample, overriding everything.
    Dropped,
}

impl Decision {
    /// The `decision` attribute of the Collector's metrics.
    pub fn label(self) -> &'static str {
        match self {
            Decision::Sampled => "sampled",
            Decision::NotSampled => "not_sampled",
            Decision::Dropped => "dropped",
        }
    }
}

/// The spans held for one trace, as a policy sees them.
#[derive(Clone, Copy, Debug)]
pub struct TraceView<'a> {
    pub trace_id: &'a [u8; 16],
    /// Spans received for the trace, including those after a decision.
    pub span_count: i64,
    pub batches: &'a [ResourceSpans],
}

/// Size of the regex result cache when `cache_max_size` is 0 (the Collector's default).
const DEFAULT_REGEX_CACHE_SIZE: usize = 128;
/// The salt when `hash_salt` is empty (the Collector's `defaultHashSalt`).
const DEFAULT_HASH_SALT: &str = "default-hash-seed";

/// A built policy, ready to evaluate.
#[derive(Debug)]
pub enum Policy {
    AlwaysSample,
    Latency {
        threshold_ms: i64,
        upper_threshold_ms: i64,
    },
    NumericAttribute {
        key: String,
        min: i64,
        max: i64,
        invert: bool,
    },
    Probabilistic {
        salt: Vec<u8>,
        threshold: u64,
    },
    StatusCode {
        codes: Vec<i32>,
    },
    StringAttribute {
        key: String,
        matcher: StringMatcher,
        invert: bool,
    },
    RateLimiting(TokenBucket),
    SpanCount {
        min: i32,
        max: i32,
    },
    TraceState {
        key: String,
        values: HashSet<String>,
    },
    BooleanAttribute {
        key: String,
        value: bool,
        invert: bool,
    },
    OttlCondition(OttlCondition),
    And(Vec<Policy>),
    Drop(Vec<Policy>),
    Composite(Composite),
    /// Inverts Sampled and NotSampled of its sub-policy; other decisions pass unchanged.
    Not(Box<Policy>),
}

impl Policy {
    /// Builds a policy from a config that passed `Config::validate`.
    pub fn build(config: &PolicyConfig) -> Result<Policy, String> {
        let policy = match config.policy_type.as_str() {
            "always_sample" => Policy::AlwaysSample,
            "latency" => {
                let c = config.latency.clone().unwrap_or_default();
                Policy::Latency {
                    threshold_ms: c.threshold_ms,
                    upper_threshold_ms: c.upper_threshold_ms,
                }
            }
            "numeric_attribute" => {
                let c = config.numeric_attribute.clone().unwrap_or_default();
                // As the Collector: 0 means the bound is not set.
                Policy::NumericAttribute {
                    min: if c.min_value != 0 {
                        c.min_value
                    } else {
                        i64::MIN
                    },
                    max: if c.max_value != 0 {
                        c.max_value
                    } else {
                        i64::MAX
                    },
                    key: c.key,
                    invert: c.invert_match,
                }
            }
            "probabilistic" => {
                let c = config.probabilistic.clone().unwrap_or_default();
                let salt = if c.hash_salt.is_empty() {
                    DEFAULT_HASH_SALT.to_string()
                } else {
                    c.hash_salt
                };
                Policy::Probabilistic {
                    salt: salt.into_bytes(),
                    threshold: probability_threshold(c.sampling_percentage / 100.0),
                }
            }
            "status_code" => {
                let c = config.status_code.clone().unwrap_or_default();
                let mut codes = Vec::new();
                for code in &c.status_codes {
                    codes.push(match code.as_str() {
                        "OK" => StatusCode::Ok as i32,
                        "ERROR" => StatusCode::Error as i32,
                        "UNSET" => StatusCode::Unset as i32,
                        other => {
                            return Err(format!(
                                "unknown status code {other:?}, use OK, ERROR or UNSET"
                            ));
                        }
                    });
                }
                Policy::StatusCode { codes }
            }
            "string_attribute" => {
                let c = config.string_attribute.clone().unwrap_or_default();
                let matcher = if c.enabled_regex_matching {
                    let regexes = c
                        .values
                        .iter()
                        .map(|v| {
                            Regex::new(v).map_err(|e| format!("{v:?} is not a valid regex: {e}"))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let size = if c.cache_max_size == 0 {
                        DEFAULT_REGEX_CACHE_SIZE
                    } else {
                        c.cache_max_size
                    };
                    StringMatcher::Regex {
                        regexes,
                        cache: Lru::new(size),
                    }
                } else {
                    StringMatcher::Exact(
                        c.values.iter().filter(|v| !v.is_empty()).cloned().collect(),
                    )
                };
                Policy::StringAttribute {
                    key: c.key,
                    matcher,
                    invert: c.invert_match,
                }
            }
            "rate_limiting" => {
                let c = config.rate_limiting.clone().unwrap_or_default();
                let burst = if c.burst_capacity > 0 {
                    c.burst_capacity
                } else {
                    c.spans_per_second.saturating_mul(2)
                };
                Policy::RateLimiting(TokenBucket::new(c.spans_per_second as f64, burst))
            }
            "span_count" => {
                let c = config.span_count.clone().unwrap_or_default();
                Policy::SpanCount {
                    min: c.min_spans,
                    max: c.max_spans,
                }
            }
            "trace_state" => {
                let c = config.trace_state.clone().unwrap_or_default();
                // A key=value member can hold at most 256 characters, "=" included.
                let values = c
                    .values
                    .iter()
                    .filter(|v| !v.is_empty() && c.key.len() + v.len() < 256)
                    .cloned()
                    .collect();
                Policy::TraceState { key: c.key, values }
            }
            "boolean_attribute" => {
                let c = config.boolean_attribute.clone().unwrap_or_default();
                Policy::BooleanAttribute {
                    key: c.key,
                    value: c.value,
                    invert: c.invert_match,
                }
            }
            "ottl_condition" => {
                let c = config.ottl_condition.clone().unwrap_or_default();
                Policy::OttlCondition(
                    OttlCondition::build(&c).map_err(|problems| problems.join("; "))?,
                )
            }
            "and" => {
                let c = config.and.clone().unwrap_or_default();
                Policy::And(
                    c.and_sub_policy
                        .iter()
                        .map(Policy::build)
                        .collect::<Result<_, _>>()?,
                )
            }
            "drop" => {
                let c = config.drop.clone().unwrap_or_default();
                Policy::Drop(
                    c.drop_sub_policy
                        .iter()
                        .map(Policy::build)
                        .collect::<Result<_, _>>()?,
                )
            }
            "not" => Policy::Not(Box::new(Policy::build(
                &config.not.clone().unwrap_or_default().not_sub_policy,
            )?)),
            "composite" => Policy::Composite(Composite::build(
                &config.composite.clone().unwrap_or_default(),
            )?),
            other => return Err(format!("policy type {other:?} is not supported")),
        };
        Ok(policy)
    }

    /// Evaluates the policy on `trace`; `now` is the processor clock's time (rate limits).
    pub fn evaluate(&mut self, trace: &TraceView<'_>, now: Duration) -> Result<Decision, String> {
        let batches = trace.batches;
        let decision = match self {
            Policy::AlwaysSample => Decision::Sampled,
            Policy::Latency {
                threshold_ms,
                upper_threshold_ms,
            } => {
                let (threshold_ms, upper_threshold_ms) = (*threshold_ms, *upper_threshold_ms);
                // The Collector checks the window of the spans seen so far after every span.
                let (mut min_start, mut max_end) = (0u64, 0u64);
                has_span(batches, |span| {
                    if min_start == 0 || span.start_time_unix_nano < min_start {
                        min_start = span.start_time_unix_nano;
                    }
                    if max_end == 0 || span.end_time_unix_nano > max_end {
                        max_end = span.end_time_unix_nano;
                    }
                    let ms = duration_ms(min_start, max_end);
                    if upper_threshold_ms == 0 {
                        ms >= threshold_ms
                    } else {
                        threshold_ms < ms && ms <= upper_threshold_ms
                    }
                })
            }
            Policy::NumericAttribute {
                key,
                min,
                max,
                invert,
            } => {
                let in_range = |attributes: &[KeyValue]| {
                    attribute(attributes, key)
                        .map(int_value)
                        .is_some_and(|v| v >= *min && v <= *max)
                };
                resource_or_span(
                    batches,
                    *invert,
                    |r| in_range(r),
                    |s| in_range(&s.attributes),
                )
            }
            Policy::Probabilistic { salt, threshold } => {
                if hash_trace_id(salt, trace.trace_id) <= *threshold {
                    Decision::Sampled
                } else {
                    Decision::NotSampled
                }
            }
            Policy::StatusCode { codes } => has_span(batches, |span| {
                codes.contains(&span.status.as_ref().map_or(0, |s| s.code))
            }),
            Policy::StringAttribute {
                key,
                matcher,
                invert,
            } => {
                // Resources match on any value (a non-string reads as ""); spans only on a
                // non-empty string, as in the Collector. Both closures use the matcher (its
                // regex cache is mutable), never at the same time.
                let matcher = std::cell::RefCell::new(matcher);
                resource_or_span(
                    batches,
                    *invert,
                    |r| {
                        attribute(r, key)
                            .is_some_and(|v| matcher.borrow_mut().matches(str_value(v)))
                    },
                    |s| {
                        attribute(&s.attributes, key)
                            .map(str_value)
                            .is_some_and(|v| !v.is_empty() && matcher.borrow_mut().matches(v))
                    },
                )
            }
            Policy::RateLimiting(bucket) => {
                if bucket.allow(now, trace.span_count) {
                    Decision::Sampled
                } else {
                    Decision::NotSampled
                }
            }
            Policy::SpanCount { min, max } => {
                let count = trace.span_count;
                let (min, max) = (i64::from(*min), i64::from(*max));
                // The Collector's two cases: no upper bound, or within both bounds.
                if count >= min && (max == 0 || count <= max) {
                    Decision::Sampled
                } else {
                    Decision::NotSampled
                }
            }
            Policy::TraceState { key, values } => has_span(batches, |span| {
                parse_trace_state(&span.trace_state).is_some_and(|members| {
                    let value = members
                        .iter()
                        .find(|(k, _)| k == key)
                        .map_or("", |(_, v)| v);
                    values.contains(value)
                })
            }),
            Policy::BooleanAttribute { key, value, invert } => {
                let matches = |attributes: &[KeyValue]| {
                    attribute(attributes, key).is_some_and(|v| bool_value(v) == *value)
                };
                resource_or_span(batches, *invert, |r| matches(r), |s| matches(&s.attributes))
            }
            Policy::OttlCondition(condition) => condition.evaluate(batches)?,
            Policy::And(subs) => {
                for sub in subs.iter_mut() {
                    if sub.evaluate(trace, now)? == Decision::NotSampled {
                        return Ok(Decision::NotSampled);
                    }
                }
                Decision::Sampled
            }
            Policy::Drop(subs) => {
                for sub in subs.iter_mut() {
                    if sub.evaluate(trace, now)? == Decision::NotSampled {
                        return Ok(Decision::NotSampled);
                    }
                }
                Decision::Dropped
            }
            Policy::Composite(composite) => composite.evaluate(trace, now)?,
            // An error of the sub-policy is the error of the `not`, as in the Collector.
            Policy::Not(sub) => match sub.evaluate(trace, now)? {
                Decision::Sampled => Decision::NotSampled,
                Decision::NotSampled => Decision::Sampled,
                other => other,
            },
        };
        Ok(decision)
    }
}

/// Exact values (a set) or regexes with an LRU cache of results per value.
#[derive(Debug)]
pub enum StringMatcher {
    Exact(HashSet<String>),
    Regex {
        regexes: Vec<Regex>,
        cache: Lru<String, bool>,
    },
}

impl StringMatcher {
    fn matches(&mut self, value: &str) -> bool {
        match self {
            StringMatcher::Exact(values) => values.contains(value),
            StringMatcher::Regex { regexes, cache } => {
                if let Some(hit) = cache.get(value) {
                    return *hit;
                }
                // Unanchored, as Go's regexp.MatchString.
                let matched = regexes.iter().any(|r| r.is_match(value));
                cache.put(value.to_string(), matched);
                matched
            }
        }
    }
}

/// The `rate_limiting` token bucket, with the semantics of Go's `golang.org/x/time/rate`
/// `Limiter.AllowN` (which the Collector uses): full at the first call, refilled
/// continuously, a trace larger than the bucket never passes.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: i64,
    tokens: f64,
    last: Option<Duration>,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: i64) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            tokens: 0.0,
            last: None,
        }
    }

    pub fn allow(&mut self, now: Duration, n: i64) -> bool {
        if self.rate == 0.0 {
            // x/time/rate with a zero limit: the burst is a one-time allowance.
            if self.burst >= n {
                self.burst -= n;
                return true;
            }
            return false;
        }
        let elapsed = match self.last {
            None => f64::INFINITY,
            Some(last) => now.saturating_sub(last).as_secs_f64(),
        };
        let tokens = (self.tokens + elapsed * self.rate).min(self.burst as f64) - n as f64;
        // A deficit worth less than a nanosecond of refill is no deficit (Go truncates the wait).
        let wait_ns = if tokens < 0.0 {
            (1e9 * (-tokens / self.rate)) as i64
        } else {
            0
        };
        if n <= self.burst && wait_ns <= 0 {
            self.last = Some(now);
            self.tokens = tokens;
            true
        } else {
            false
        }
    }
}

/// `ottl_condition`: sampled when any span condition holds for a span, or any span event
/// condition for one of its events (the Collector's `ottlConditionFilter`, conditions
/// OR-ed in order). A condition that fails to evaluate fails the policy with `propagate`
/// and counts as false with `ignore` (logged) or `silent`.
#[derive(Debug)]
pub struct OttlCondition {
    span: Vec<Condition>,
    span_event: Vec<Condition>,
    error_mode: ErrorMode,
}

impl OttlCondition {
    /// Parses every condition; on failure, every problem (`span[0] "...": at position 3: ...`).
    pub fn build(config: &OttlConditionConfig) -> Result<OttlCondition, Vec<String>> {
        let mut problems = Vec::new();
        if config.span.is_empty() && config.spanevent.is_empty() {
            problems.push(
                "span/spanevent: give at least one condition (e.g. span: ['attributes[\"http.route\"] == \"/pay\"'])"
                    .to_string(),
            );
        }
        let mut parse = |texts: &[String], key: &str, context: ContextKind| {
            let mut parsed = Vec::new();
            for (i, text) in texts.iter().enumerate() {
                match oxcol_ottl::parse_condition(text, context) {
                    Ok(condition) => parsed.push(condition),
                    Err(e) => problems.push(format!("{key}[{i}] {text:?}: {e}")),
                }
            }
            parsed
        };
        let span = parse(&config.span, "span", ContextKind::Span);
        let span_event = parse(&config.spanevent, "spanevent", ContextKind::SpanEvent);
        if problems.is_empty() {
            Ok(OttlCondition {
                span,
                span_event,
                error_mode: config.error_mode,
            })
        } else {
            Err(problems)
        }
    }

    fn evaluate(&self, batches: &[ResourceSpans]) -> Result<Decision, String> {
        for rs in batches {
            let resource = rs.resource.as_ref();
            for ss in &rs.scope_spans {
                let scope = ss.scope.as_ref();
                for span in &ss.spans {
                    if self.any(
                        &self.span,
                        &Item::Span {
                            resource,
                            scope,
                            span,
                        },
                    )? {
                        return Ok(Decision::Sampled);
                    }
                    if self.span_event.is_empty() {
                        continue;
                    }
                    for event in &span.events {
                        let item = Item::SpanEvent {
                            resource,
                            scope,
                            span,
                            event,
                        };
                        if self.any(&self.span_event, &item)? {
                            return Ok(Decision::Sampled);
                        }
                    }
                }
            }
        }
        Ok(Decision::NotSampled)
    }

    fn any(&self, conditions: &[Condition], item: &Item<'_>) -> Result<bool, String> {
        for condition in conditions {
            match condition.matches(item) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(error) => match self.error_mode {
                    ErrorMode::Propagate => return Err(error.message),
                    ErrorMode::Ignore => {
                        tracing::warn!(%error, "ottl_condition failed on a span; counted as false (error_mode: ignore)")
                    }
                    ErrorMode::Silent => {}
                },
            }
        }
        Ok(false)
    }
}

/// One sub-policy of a composite with its per-second span budget.
#[derive(Debug)]
struct SubPolicy {
    policy: Policy,
    allocated_per_second: i64,
    sampled_this_second: i64,
}

/// `composite`: the first sub-policy (in `composite_sub_policy` order) that samples decides,
/// within its share of `max_total_spans_per_second`, counted per one-second window.
#[derive(Debug)]
pub struct Composite {
    subs: Vec<SubPolicy>,
    max_total_per_second: i64,
    current_second: u64,
}

impl Composite {
    fn build(config: &CompositeConfig) -> Result<Composite, String> {
        let max_total = config.max_total_spans_per_second as f64;
        let default_share = max_total / config.composite_sub_policy.len().max(1) as f64;
        let mut allocations: HashMap<&str, f64> = HashMap::new();
        for allocation in &config.rate_allocation {
            let share = if allocation.percent > 0 {
                allocation.percent as f64 / 100.0 * max_total
            } else {
                default_share
            };
            allocations.insert(&allocation.policy, share);
        }
        let subs = config
            .composite_sub_policy
            .iter()
            .map(|sub| {
                Ok(SubPolicy {
                    policy: Policy::build(sub)?,
                    // As the Collector: a sub-policy without an allocation gets 0.
                    allocated_per_second: allocations.get(sub.name.as_str()).copied().unwrap_or(0.0)
                        as i64,
                    sampled_this_second: 0,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Composite {
            subs,
            max_total_per_second: config.max_total_spans_per_second,
            current_second: 0,
        })
    }

    fn evaluate(&mut self, trace: &TraceView<'_>, now: Duration) -> Result<Decision, String> {
        let second = now.as_secs();
        if second != self.current_second {
            self.current_second = second;
            for sub in &mut self.subs {
                sub.sampled_this_second = 0;
            }
        }
        for sub in &mut self.subs {
            let decision = sub.policy.evaluate(trace, now)?;
            if decision == Decision::Sampled {
                let if_sampled = sub.sampled_this_second.saturating_add(trace.span_count);
                if if_sampled <= sub.allocated_per_second && if_sampled <= self.max_total_per_second
                {
                    sub.sampled_this_second = if_sampled;
                    return Ok(Decision::Sampled);
                }
                return Ok(Decision::NotSampled);
            }
        }
        Ok(Decision::NotSampled)
    }
}

/// The Collector's `hashTraceID`: FNV-1a 64 over the salt, then the 16 trace ID bytes.
pub fn hash_trace_id(salt: &[u8], trace_id: &[u8; 16]) -> u64 {
    salt.iter()
        .chain(trace_id.iter())
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// The Collector's `calculateThreshold`: `MaxUint64 * ratio` computed as a Go `big.Float`
/// (64-bit mantissa, round half to even), then truncated to an integer and clamped to
/// `[0, MaxUint64]`. Done exactly with integers: `ratio` is `m * 2^e`, so the product is
/// `(2^64 - 1) * m * 2^e`, whose 117-bit integer part `(2^64 - 1) * m` fits in a u128.
pub fn probability_threshold(ratio: f64) -> u64 {
    if ratio.is_nan() || ratio <= 0.0 {
        return 0;
    }
    if ratio.is_infinite() {
        return u64::MAX;
    }
    let bits = ratio.to_bits();
    let biased_exponent = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1u64 << 52) - 1);
    let (mantissa, mut exponent) = if biased_exponent == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1u64 << 52), biased_exponent - 1075)
    };
    let mut product = u128::from(u64::MAX) * u128::from(mantissa);
    let bit_length = 128 - product.leading_zeros() as i32;
    if bit_length > 64 {
        // Round to 64 significant bits, half to even (big.Float's default mode).
        let shift = (bit_length - 64) as u32;
        let remainder = product & ((1u128 << shift) - 1);
        let half = 1u128 << (shift - 1);
        product >>= shift;
        if remainder > half || (remainder == half && product & 1 == 1) {
            product += 1;
        }
        exponent += shift as i32;
    }
    let value = if exponent >= 0 {
        if exponent >= 64 || product.leading_zeros() < exponent as u32 {
            return u64::MAX;
        }
        product << exponent
    } else if -exponent >= 128 {
        0
    } else {
        product >> (-exponent) as u32
    };
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// Milliseconds between two span timestamps as Go computes them: `time.Time.Sub`
/// saturating at the int64 bounds, then `Duration.Milliseconds()` truncating.
fn duration_ms(start: u64, end: u64) -> i64 {
    let nanos = i128::from(end as i64) - i128::from(start as i64);
    let nanos = nanos.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    nanos / 1_000_000
}

/// The first attribute named `key` (pcommon `Map.Get`), as its value.
fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<Option<&'a any_value::Value>> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.as_ref().and_then(|v: &AnyValue| v.value.as_ref()))
}

/// pcommon `Value.Str()`: the string, or "" for any other type.
fn str_value(value: Option<&any_value::Value>) -> &str {
    match value {
        Some(any_value::Value::StringValue(s)) => s,
        _ => "",
    }
}

/// pcommon `Value.Int()`: the integer, or 0 for any other type.
fn int_value(value: Option<&any_value::Value>) -> i64 {
    match value {
        Some(any_value::Value::IntValue(i)) => *i,
        _ => 0,
    }
}

/// pcommon `Value.Bool()`: the boolean, or false for any other type.
fn bool_value(value: Option<&any_value::Value>) -> bool {
    matches!(value, Some(any_value::Value::BoolValue(true)))
}

fn resource_attributes(resource_spans: &ResourceSpans) -> &[KeyValue] {
    resource_spans
        .resource
        .as_ref()
        .map_or(&[], |r| &r.attributes)
}

fn spans(resource_spans: &ResourceSpans) -> impl Iterator<Item = &Span> {
    resource_spans.scope_spans.iter().flat_map(|s| &s.spans)
}

/// `hasSpanWithCondition`: Sampled when any span matches.
fn has_span(batches: &[ResourceSpans], mut matches: impl FnMut(&Span) -> bool) -> Decision {
    if batches.iter().any(|rs| spans(rs).any(&mut matches)) {
        Decision::Sampled
    } else {
        Decision::NotSampled
    }
}

/// `hasResourceOrSpanWithCondition` (Sampled when any resource or span matches), or with
/// `invert` its inverted form (`invertHasResourceOrSpanWithCondition`): NotSampled when
/// any resource or span matches, Sampled otherwise.
fn resource_or_span(
    batches: &[ResourceSpans],
    invert: bool,
    mut resource_matches: impl FnMut(&[KeyValue]) -> bool,
    mut span_matches: impl FnMut(&Span) -> bool,
) -> Decision {
    let any = batches
        .iter()
        .any(|rs| resource_matches(resource_attributes(rs)) || spans(rs).any(&mut span_matches));
    if any != invert {
        Decision::Sampled
    } else {
        Decision::NotSampled
    }
}

/// Most members a W3C tracestate may have.
const MAX_TRACE_STATE_MEMBERS: usize = 32;

/// Parses a W3C `tracestate` as Go's `go.opentelemetry.io/otel/trace.ParseTraceState`
/// does; None when it is invalid (the Collector's policy then does not match the span).
pub fn parse_trace_state(text: &str) -> Option<Vec<(String, String)>> {
    let mut members: Vec<(String, String)> = Vec::new();
    for member in text.split(',') {
        if member.is_empty() {
            continue;
        }
        let (key, value) = member.split_once('=')?;
        let key = key.trim_start_matches([' ', '\t']);
        let value = value.trim_end_matches([' ', '\t']);
        if !valid_trace_state_key(key) || !valid_trace_state_value(value) {
            return None;
        }
        if members.iter().any(|(k, _)| k == key) {
            return None;
        }
        members.push((key.to_string(), value.to_string()));
        if members.len() > MAX_TRACE_STATE_MEMBERS {
            return None;
        }
    }
    Some(members)
}

fn valid_trace_state_key(key: &str) -> bool {
    let part = |text: &str, max_len: usize, first_may_be_digit: bool| {
        let bytes = text.as_bytes();
        let Some(first) = bytes.first() else {
            return false;
        };
        bytes.len() <= max_len
            && (first.is_ascii_lowercase() || (first_may_be_digit && first.is_ascii_digit()))
            && bytes[1..].iter().all(|c| {
                c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || matches!(c, b'_' | b'-' | b'*' | b'/')
            })
    };
    match key.split_once('@') {
        None => part(key, 256, false),
        Some((tenant, system)) => part(tenant, 241, true) && part(system, 14, false),
    }
}

fn valid_trace_state_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 256
        && bytes.last() != Some(&b' ')
        && bytes
            .iter()
            .all(|c| (0x20..=0x7e).contains(c) && *c != b',' && *c != b'=')
}
