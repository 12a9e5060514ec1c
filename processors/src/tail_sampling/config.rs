//! The `tail_sampling` config: the Collector's keys (contrib `tailsamplingprocessor`,
//! v0.161) with its defaults, and `validate()`, which reports every problem at once.
//!
//! A policy is written as in the Collector: `name`, `type`, and the block named after the
//! type (`latency: {threshold_ms: 500}`). Blocks of other types are accepted and ignored,
//! as the Collector does (its policy config squashes all of them into one struct).
//!
//! `validate` must report every problem at once, each with the path of its policy
//! (`policies[2].and.and_sub_policy[0]...`), never stopping at the first.

use oxcol_core::GoDuration;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Wait after the first span of a trace before deciding. Default 30s.
    pub decision_wait: GoDuration,
    /// Traces held in memory (awaiting a decision, or decided and remembered for late
    /// spans). A new trace beyond it pushes out the oldest one. Default 50000.
    pub num_traces: u64,
    /// Expected new traces per second: only sizes the tables up front. Default 0.
    pub expected_new_traces_per_sec: u64,
    /// LRU caches of decided trace IDs, so late spans follow the decision after the trace
    /// left memory. Default: both 0 (off).
    pub decision_cache: DecisionCacheConfig,
    /// The policies. Required.
    pub policies: Vec<PolicyConfig>,
    /// Stop evaluating at the first policy that samples. Default false.
    pub sample_on_first_match: bool,
    /// At shutdown, drop traces still awaiting a decision instead of deciding them on the
    /// spans received so far. Default false.
    pub drop_pending_traces_on_shutdown: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            decision_wait: GoDuration::from_secs(30),
            num_traces: 50_000,
            expected_new_traces_per_sec: 0,
            decision_cache: DecisionCacheConfig::default(),
            policies: Vec::new(),
            sample_on_first_match: false,
            drop_pending_traces_on_shutdown: false,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionCacheConfig {
    /// Trace IDs of sampled traces remembered (LRU). Default 0: off.
    pub sampled_cache_size: usize,
    /// Trace IDs of not-sampled traces remembered (LRU). Default 0: off.
    pub non_sampled_cache_size: usize,
}

/// One policy. The same struct serves the top level and the sub-policies of `and`,
/// `drop`, `composite` and `not`; `validate` rejects the combinations the Collector does
/// not have (a composite inside anything, an `and` inside `and`/`drop`, a `not` inside a
/// composite or a `not`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Unique among the policies of its list; names the policy in self-telemetry.
    pub name: String,
    #[serde(rename = "type")]
    pub policy_type: String,
    pub latency: Option<LatencyConfig>,
    pub numeric_attribute: Option<NumericAttributeConfig>,
    pub probabilistic: Option<ProbabilisticConfig>,
    pub status_code: Option<StatusCodeConfig>,
    pub string_attribute: Option<StringAttributeConfig>,
    pub rate_limiting: Option<RateLimitingConfig>,
    pub span_count: Option<SpanCountConfig>,
    pub trace_state: Option<TraceStateConfig>,
    pub boolean_attribute: Option<BooleanAttributeConfig>,
    pub ottl_condition: Option<OttlConditionConfig>,
    pub composite: Option<CompositeConfig>,
    pub and: Option<AndConfig>,
    pub drop: Option<DropConfig>,
    pub not: Option<NotConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyConfig {
    /// Lower bound of the trace duration (ms).
    pub threshold_ms: i64,
    /// Upper bound (ms); 0: none.
    pub upper_threshold_ms: i64,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NumericAttributeConfig {
    pub key: String,
    /// 0 means "no lower bound" (as in the Collector).
    pub min_value: i64,
    /// 0 means "no upper bound" (as in the Collector).
    pub max_value: i64,
    pub invert_match: bool,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProbabilisticConfig {
    /// Salt of the trace ID hash; empty: the Collector's `default-hash-seed`.
    pub hash_salt: String,
    pub sampling_percentage: f64,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StatusCodeConfig {
    /// `OK`, `ERROR`, `UNSET`.
    pub status_codes: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StringAttributeConfig {
    pub key: String,
    pub values: Vec<String>,
    pub enabled_regex_matching: bool,
    /// Size of the LRU cache of regex results; 0: 128.
    pub cache_max_size: usize,
    pub invert_match: bool,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitingConfig {
    pub spans_per_second: i64,
    /// Token bucket size; 0: twice `spans_per_second`.
    pub burst_capacity: i64,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpanCountConfig {
    pub min_spans: i32,
    /// 0: no upper bound.
    pub max_spans: i32,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TraceStateConfig {
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BooleanAttributeConfig {
    pub key: String,
    pub value: bool,
    pub invert_match: bool,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OttlConditionConfig {
    /// `propagate` (default): a failing condition fails the policy for that trace;
    /// `ignore` (logged) or `silent`: it counts as false.
    pub error_mode: oxcol_ottl::ErrorMode,
    /// Conditions on spans; any true samples the trace.
    pub span: Vec<String>,
    /// Conditions on span events; any true samples the trace.
    pub spanevent: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompositeConfig {
    pub max_total_spans_per_second: i64,
    /// Accepted and, as in the Collector, not used: sub-policies are evaluated in the
    /// order of `composite_sub_policy`.
    pub policy_order: Vec<String>,
    pub composite_sub_policy: Vec<PolicyConfig>,
    pub rate_allocation: Vec<RateAllocationConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateAllocationConfig {
    pub policy: String,
    pub percent: i64,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AndConfig {
    pub and_sub_policy: Vec<PolicyConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DropConfig {
    pub drop_sub_policy: Vec<PolicyConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotConfig {
    /// The policy whose decision is inverted (one of the plain types; its name is
    /// optional).
    pub not_sub_policy: Box<PolicyConfig>,
}

/// Policy types every list accepts.
pub const LEAF_TYPES: &[&str] = &[
    "always_sample",
    "latency",
    "numeric_attribute",
    "probabilistic",
    "status_code",
    "string_attribute",
    "rate_limiting",
    "span_count",
    "trace_state",
    "boolean_attribute",
    "ottl_condition",
];

/// Where a policy list sits, which decides the types it may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Top,
    Composite,
    /// `and` or `drop` sub-policies: leaf types and `not`.
    AndDrop,
    /// The sub-policy of `not`: leaf types only.
    Leaf,
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.decision_wait.is_zero() {
            errors.push("decision_wait must be greater than zero (default 30s)".to_string());
        }
        if self.num_traces == 0 {
            errors.push("num_traces must be greater than zero (default 50000)".to_string());
        }
        if self.policies.is_empty() {
            errors.push(
                "policies is required: give at least one (e.g. - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}})"
                    .to_string(),
            );
        }
        validate_list(&self.policies, "policies", Level::Top, &mut errors);
        errors
    }
}

fn validate_list(policies: &[PolicyConfig], path: &str, level: Level, errors: &mut Vec<String>) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, policy) in policies.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if policy.name.is_empty() {
            errors.push(format!(
                "{at}.name is required (policy names label the self-telemetry)"
            ));
        } else if seen.contains(&policy.name.as_str()) {
            errors.push(format!(
                "{at}.name {:?} is used twice: policy names must be unique",
                policy.name
            ));
        } else {
            seen.push(&policy.name);
        }
        validate_policy(policy, &at, level, errors);
    }
}

fn validate_policy(policy: &PolicyConfig, at: &str, level: Level, errors: &mut Vec<String>) {
    let kind = policy.policy_type.as_str();
    let allowed_here = LEAF_TYPES.contains(&kind)
        || match level {
            Level::Top => matches!(kind, "composite" | "and" | "drop" | "not"),
            Level::Composite => kind == "and",
            Level::AndDrop => kind == "not",
            Level::Leaf => false,
        };
    if !allowed_here {
        let mut allowed: Vec<&str> = LEAF_TYPES.to_vec();
        match level {
            Level::Top => allowed.extend(["composite", "and", "drop", "not"]),
            Level::Composite => allowed.push("and"),
            Level::AndDrop => allowed.push("not"),
            Level::Leaf => {}
        }
        let what = if kind.is_empty() {
            "is required".to_string()
        } else {
            format!("{kind:?} is not allowed here")
        };
        errors.push(format!(
            "{at}.type {what}: use one of {}",
            allowed.join(", ")
        ));
        return;
    }
    match kind {
        "latency" => {
            let c = policy.latency.clone().unwrap_or_default();
            if c.threshold_ms < 0 || c.upper_threshold_ms < 0 {
                errors.push(format!(
                    "{at}.latency: threshold_ms and upper_threshold_ms must not be negative"
                ));
            }
            if c.upper_threshold_ms != 0 && c.upper_threshold_ms < c.threshold_ms {
                errors.push(format!(
                    "{at}.latency.upper_threshold_ms ({}) must be at least threshold_ms ({}) or 0 for no upper bound",
                    c.upper_threshold_ms, c.threshold_ms
                ));
            }
        }
        "numeric_attribute" => {
            let c = policy.numeric_attribute.clone().unwrap_or_default();
            if c.key.is_empty() {
                errors.push(format!("{at}.numeric_attribute.key is required"));
            }
            if c.min_value == 0 && c.max_value == 0 {
                errors.push(format!(
                    "{at}.numeric_attribute: set min_value and/or max_value (0 means unset)"
                ));
            }
            if c.min_value != 0 && c.max_value != 0 && c.max_value < c.min_value {
                errors.push(format!(
                    "{at}.numeric_attribute.max_value ({}) is below min_value ({}): nothing could match",
                    c.max_value, c.min_value
                ));
            }
        }
        "probabilistic" => {
            let c = policy.probabilistic.clone().unwrap_or_default();
            if !c.sampling_percentage.is_finite() || c.sampling_percentage < 0.0 {
                errors.push(format!(
                    "{at}.probabilistic.sampling_percentage must be a number from 0 to 100, got {}",
                    c.sampling_percentage
                ));
            }
        }
        "status_code" => {
            let c = policy.status_code.clone().unwrap_or_default();
            if c.status_codes.is_empty() {
                errors.push(format!(
                    "{at}.status_code.status_codes needs at least one of OK, ERROR, UNSET"
                ));
            }
            for code in &c.status_codes {
                if !matches!(code.as_str(), "OK" | "ERROR" | "UNSET") {
                    errors.push(format!(
                        "{at}.status_code: unknown status code {code:?}, use OK, ERROR or UNSET"
                    ));
                }
            }
        }
        "string_attribute" => {
            let c = policy.string_attribute.clone().unwrap_or_default();
            if c.key.is_empty() {
                errors.push(format!("{at}.string_attribute.key is required"));
            }
            if c.values.is_empty() {
                errors.push(format!(
                    "{at}.string_attribute.values needs at least one value"
                ));
            }
            if c.enabled_regex_matching {
                for value in &c.values {
                    if let Err(e) = regex::Regex::new(value) {
                        errors.push(format!(
                            "{at}.string_attribute.values: {value:?} is not a valid regex: {e}"
                        ));
                    }
                }
            }
        }
        "rate_limiting" => {
            let c = policy.rate_limiting.clone().unwrap_or_default();
            if c.spans_per_second < 0 || c.burst_capacity < 0 {
                errors.push(format!(
                    "{at}.rate_limiting: spans_per_second and burst_capacity must not be negative"
                ));
            }
        }
        "span_count" => {
            let c = policy.span_count.clone().unwrap_or_default();
            if c.min_spans < 0 || c.max_spans < 0 {
                errors.push(format!(
                    "{at}.span_count: min_spans and max_spans must not be negative"
                ));
            }
            if c.max_spans != 0 && c.max_spans < c.min_spans {
                errors.push(format!(
                    "{at}.span_count.max_spans ({}) must be at least min_spans ({}) or 0 for no upper bound",
                    c.max_spans, c.min_spans
                ));
            }
        }
        "trace_state" => {
            let c = policy.trace_state.clone().unwrap_or_default();
            if c.key.is_empty() {
                errors.push(format!("{at}.trace_state.key is required"));
            }
            if c.values.is_empty() {
                errors.push(format!("{at}.trace_state.values needs at least one value"));
            }
        }
        "boolean_attribute" => {
            let c = policy.boolean_attribute.clone().unwrap_or_default();
            if c.key.is_empty() {
                errors.push(format!("{at}.boolean_attribute.key is required"));
            }
        }
        "ottl_condition" => {
            let c = policy.ottl_condition.clone().unwrap_or_default();
            if let Err(problems) = super::policy::OttlCondition::build(&c) {
                errors.extend(
                    problems
                        .into_iter()
                        .map(|p| format!("{at}.ottl_condition.{p}")),
                );
            }
        }
        "composite" => {
            let c = policy.composite.clone().unwrap_or_default();
            if c.max_total_spans_per_second <= 0 {
                errors.push(format!(
                    "{at}.composite.max_total_spans_per_second must be greater than zero"
                ));
            }
            if c.composite_sub_policy.is_empty() {
                errors.push(format!(
                    "{at}.composite.composite_sub_policy needs at least one policy"
                ));
            }
            validate_list(
                &c.composite_sub_policy,
                &format!("{at}.composite.composite_sub_policy"),
                Level::Composite,
                errors,
            );
            for (j, allocation) in c.rate_allocation.iter().enumerate() {
                if !c
                    .composite_sub_policy
                    .iter()
                    .any(|p| p.name == allocation.policy)
                {
                    errors.push(format!(
                        "{at}.composite.rate_allocation[{j}].policy {:?} names no composite_sub_policy",
                        allocation.policy
                    ));
                }
                if allocation.percent < 0 {
                    errors.push(format!(
                        "{at}.composite.rate_allocation[{j}].percent must not be negative"
                    ));
                }
            }
        }
        "and" => {
            let c = policy.and.clone().unwrap_or_default();
            if c.and_sub_policy.is_empty() {
                errors.push(format!("{at}.and.and_sub_policy needs at least one policy"));
            }
            validate_list(
                &c.and_sub_policy,
                &format!("{at}.and.and_sub_policy"),
                Level::AndDrop,
                errors,
            );
        }
        "drop" => {
            let c = policy.drop.clone().unwrap_or_default();
            if c.drop_sub_policy.is_empty() {
                errors.push(format!(
                    "{at}.drop.drop_sub_policy needs at least one policy"
                ));
            }
            validate_list(
                &c.drop_sub_policy,
                &format!("{at}.drop.drop_sub_policy"),
                Level::AndDrop,
                errors,
            );
        }
        "not" => {
            // As in the Collector, the sub-policy needs no name (it labels nothing).
            let c = policy.not.clone().unwrap_or_default();
            validate_policy(
                &c.not_sub_policy,
                &format!("{at}.not.not_sub_policy"),
                Level::Leaf,
                errors,
            );
        }
        _ => {}
    }
}
