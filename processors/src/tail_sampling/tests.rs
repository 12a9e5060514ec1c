use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use oxcol_core::telemetry::Registry;
use oxcol_core::{Batch, Data, Processor, Refusal, Signal};
use serde_json::json;

use super::policy::{Policy, TraceView};
use super::*;

/// A clock the test moves by hand.
#[derive(Clone, Default)]
struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::SeqCst))
    }
}

fn config(value: serde_json::Value) -> Config {
    serde_json::from_value(value).expect("a valid tail_sampling config")
}

fn id(n: u8) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[15] = n;
    id
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn s(text: &str) -> any_value::Value {
    any_value::Value::StringValue(text.to_string())
}

fn span(trace: u8, name: &str) -> Span {
    Span {
        trace_id: id(trace).to_vec(),
        span_id: vec![1; 8],
        name: name.to_string(),
        start_time_unix_nano: 1_000_000_000,
        end_time_unix_nano: 1_001_000_000,
        ..Span::default()
    }
}

fn with_status(mut span: Span, code: i32) -> Span {
    span.status = Some(Status {
        code,
        message: String::new(),
    });
    span
}

fn with_attr(mut span: Span, attr: KeyValue) -> Span {
    span.attributes.push(attr);
    span
}

fn timed(mut span: Span, start_ms: u64, end_ms: u64) -> Span {
    span.start_time_unix_nano = start_ms * 1_000_000;
    span.end_time_unix_nano = end_ms * 1_000_000;
    span
}

fn resource_spans(resource_attributes: Vec<KeyValue>, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: resource_attributes,
            ..Resource::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..ScopeSpans::default()
        }],
        schema_url: String::new(),
    }
}

fn batch(spans: Vec<Span>) -> Batch {
    Batch::from_traces(vec![resource_spans(
        vec![kv("service.name", s("checkout"))],
        spans,
    )])
}

/// Evaluates one policy config on a trace made of `batches`.
fn decide_one(policy: serde_json::Value, batches: &[ResourceSpans]) -> Decision {
    let policy_config: PolicyConfig = serde_json::from_value(policy).expect("a valid policy");
    let mut policy = Policy::build(&policy_config).expect("builds");
    let span_count = batches
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as i64)
        .sum();
    let trace_id = id(1);
    policy
        .evaluate(
            &TraceView {
                trace_id: &trace_id,
                span_count,
                batches,
            },
            Duration::ZERO,
        )
        .expect("evaluates")
}

fn one(spans: Vec<Span>) -> Vec<ResourceSpans> {
    vec![resource_spans(Vec::new(), spans)]
}

/// (span names, trace IDs) of the spans in `batches`, sorted.
fn names(batches: &[Batch]) -> Vec<String> {
    let mut out = Vec::new();
    for batch in batches {
        let Data::Traces(resources) = batch.data() else {
            panic!("decoded traces expected")
        };
        for r in resources {
            for scope in &r.scope_spans {
                out.extend(scope.spans.iter().map(|s| s.name.clone()));
            }
        }
    }
    out.sort();
    out
}

fn processor(value: serde_json::Value) -> (TailSamplingProcessor, ManualClock, Arc<Registry>) {
    let registry = Registry::new();
    let clock = ManualClock::default();
    let processor = TailSamplingProcessor::new("tail_sampling", &config(value), Some(&registry))
        .expect("builds")
        .with_clock(Box::new(clock.clone()));
    (processor, clock, registry)
}

fn errors_policy() -> serde_json::Value {
    json!({"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}})
}

// --- config -------------------------------------------------------------------------------

#[test]
fn defaults_are_the_collectors() {
    let c = Config::default();
    assert_eq!(c.decision_wait.get(), Duration::from_secs(30));
    assert_eq!(c.num_traces, 50_000);
    assert_eq!(c.expected_new_traces_per_sec, 0);
    assert_eq!(
        c.decision_cache,
        DecisionCacheConfig {
            sampled_cache_size: 0,
            non_sampled_cache_size: 0
        }
    );
    assert!(!c.sample_on_first_match && !c.drop_pending_traces_on_shutdown);
}

#[test]
fn unknown_keys_are_errors() {
    let result: Result<Config, _> = serde_json::from_value(json!({"decision_wiat": "1s"}));
    assert!(result.unwrap_err().to_string().contains("decision_wiat"));
    let result: Result<Config, _> = serde_json::from_value(json!({
        "policies": [{"name": "a", "type": "latency", "latency": {"threshold": 5}}]
    }));
    assert!(result.unwrap_err().to_string().contains("threshold"));
}

#[test]
fn validate_reports_every_problem() {
    let c = config(json!({
        "decision_wait": "0s",
        "num_traces": 0,
        "policies": [
            {"name": "a", "type": "status_code", "status_code": {"status_codes": ["FAILED"]}},
            {"name": "a", "type": "latencyy"},
            {"name": "", "type": "and", "and": {"and_sub_policy": [
                {"name": "c", "type": "composite"}
            ]}},
            {"name": "d", "type": "string_attribute",
             "string_attribute": {"key": "k", "values": ["("], "enabled_regex_matching": true}},
            {"name": "e", "type": "numeric_attribute", "numeric_attribute": {"key": "k"}},
            {"name": "f", "type": "composite", "composite": {"max_total_spans_per_second": 10,
             "composite_sub_policy": [{"name": "g", "type": "always_sample"},
                                      {"name": "h", "type": "not"}],
             "rate_allocation": [{"policy": "nope", "percent": 50}]}},
            {"name": "i", "type": "not", "not": {"not_sub_policy": {"type": "and"}}},
            {"name": "j", "type": "not"},
            {"name": "k", "type": "not", "not": {"not_sub_policy": {"type": "latency",
             "latency": {"threshold_ms": -1}}}},
            {"name": "l", "type": "and", "and": {"and_sub_policy": [
                {"name": "m", "type": "not", "not": {"not_sub_policy": {"type": "always_sample"}}}
            ]}}
        ]
    }));
    let errors = c.validate();
    let expect = [
        "decision_wait must be greater than zero",
        "num_traces must be greater than zero",
        "policies[0].status_code: unknown status code \"FAILED\"",
        "policies[1].name \"a\" is used twice",
        "policies[1].type \"latencyy\" is not allowed here",
        "policies[2].name is required",
        "policies[2].and.and_sub_policy[0].type \"composite\" is not allowed here",
        "policies[3].string_attribute.values: \"(\" is not a valid regex",
        "policies[4].numeric_attribute: set min_value and/or max_value",
        "policies[5].composite.rate_allocation[0].policy \"nope\" names no composite_sub_policy",
        "policies[5].composite.composite_sub_policy[1].type \"not\" is not allowed here",
        "policies[6].not.not_sub_policy.type \"and\" is not allowed here",
        "policies[7].not.not_sub_policy.type is required",
        "policies[8].not.not_sub_policy.latency: threshold_ms and upper_threshold_ms must not be negative",
    ];
    for expected in expect {
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "missing {expected:?} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expect.len(), "{errors:#?}");
    assert!(
        config(json!({}))
            .validate()
            .iter()
            .any(|e| e.contains("policies is required"))
    );
    assert!(
        config(json!({"policies": [errors_policy()]}))
            .validate()
            .is_empty()
    );
}

#[test]
fn only_the_collectors_spelling_is_registered() {
    assert_eq!(TYPE, "tail_sampling");
    assert_eq!(ALIASES, &["tail_sampling"]);
}

// --- policies -----------------------------------------------------------------------------

#[test]
fn always_sample_samples() {
    assert_eq!(
        decide_one(
            json!({"name": "a", "type": "always_sample"}),
            &one(vec![span(1, "x")])
        ),
        Decision::Sampled
    );
}

#[test]
fn latency_measures_from_earliest_start_to_latest_end() {
    let trace = one(vec![
        timed(span(1, "a"), 1000, 1100),
        timed(span(1, "b"), 1400, 1600),
    ]); // 600 ms
    let latency = |threshold: i64, upper: i64| {
        decide_one(
            json!({"name": "l", "type": "latency", "latency": {"threshold_ms": threshold, "upper_threshold_ms": upper}}),
            &trace,
        )
    };
    assert_eq!(
        latency(600, 0),
        Decision::Sampled,
        "no upper bound: >= threshold"
    );
    assert_eq!(latency(601, 0), Decision::NotSampled);
    assert_eq!(
        latency(500, 600),
        Decision::Sampled,
        "with an upper bound: threshold < d <= upper"
    );
    assert_eq!(
        latency(600, 700),
        Decision::NotSampled,
        "the lower bound is exclusive with an upper bound"
    );
    // The Collector checks the window after every span: the first span alone (100 ms)
    // already fits (50, 200], although the whole trace (600 ms) does not.
    assert_eq!(latency(50, 200), Decision::Sampled);
}

#[test]
fn status_code_matches_any_span() {
    let policy = json!({"name": "s", "type": "status_code", "status_code": {"status_codes": ["ERROR", "UNSET"]}});
    assert_eq!(
        decide_one(
            policy.clone(),
            &one(vec![
                with_status(span(1, "a"), 1),
                with_status(span(1, "b"), 2)
            ])
        ),
        Decision::Sampled
    );
    assert_eq!(
        decide_one(policy.clone(), &one(vec![with_status(span(1, "a"), 1)])),
        Decision::NotSampled
    );
    // No status at all reads as UNSET.
    assert_eq!(
        decide_one(policy, &one(vec![span(1, "a")])),
        Decision::Sampled
    );
}

#[test]
fn fnv1a_matches_the_published_vectors() {
    // FNV-1a 64 test vectors (Fowler/Noll/Vo): "" -> cbf29ce484222325, "a" ->
    // af63dc4c8601ec8c; the salt-then-ID layout is the Collector's hashTraceID. The salted
    // vectors were computed independently in Python (a plain FNV-1a loop over
    // b"default-hash-seed" + bytes(range(16)) and b"my-salt" + b"\xff" * 16).
    let zero_salt_empty = super::policy::hash_trace_id(b"", &[0; 16]);
    let mut expected = 0xcbf2_9ce4_8422_2325u64;
    for _ in 0..16 {
        expected = expected.wrapping_mul(0x0100_0000_01b3); // xor with 0 is a no-op
    }
    assert_eq!(zero_salt_empty, expected);
    let ascending: [u8; 16] = std::array::from_fn(|i| i as u8);
    assert_eq!(
        hash_trace_id(b"default-hash-seed", &ascending),
        11_989_194_628_990_176_781
    );
    assert_eq!(
        hash_trace_id(b"my-salt", &[0xff; 16]),
        8_348_242_308_961_502_774
    );
}

#[test]
fn probabilistic_threshold_is_gos_big_float_product() {
    // calculateThreshold(p/100): MaxUint64 * ratio in a 64-bit-mantissa big.Float, rounded
    // half to even, truncated. Expected values computed independently in Python with exact
    // fractions (round(Fraction) is half-even) from the same float64 ratio.
    for (percentage, expected) in [
        (100.0, 18_446_744_073_709_551_615u64),
        (50.0, 9_223_372_036_854_775_807),
        (25.0, 4_611_686_018_427_387_903),
        (12.5, 2_305_843_009_213_693_951),
        (10.0, 1_844_674_407_370_955_263),
        (1.0, 184_467_440_737_095_519),
        (33.3, 6_142_765_776_545_279_999),
        (0.001, 184_467_440_737_095),
    ] {
        assert_eq!(
            probability_threshold(percentage / 100.0),
            expected,
            "{percentage}%"
        );
    }
    assert_eq!(probability_threshold(0.0), 0);
    assert_eq!(probability_threshold(2.0), u64::MAX, "above 100% saturates");
    assert_eq!(probability_threshold(f64::NAN), 0);
}

#[test]
fn probabilistic_keeps_a_trace_when_its_hash_is_at_most_the_threshold() {
    let ascending: [u8; 16] = std::array::from_fn(|i| i as u8);
    // hash 11989194628990176781 is 65.0% of MaxUint64: kept at 65.0%, not at 64.9%.
    let decide = |percentage: f64| {
        let policy_config: PolicyConfig =
            serde_json::from_value(json!({"name": "p", "type": "probabilistic",
            "probabilistic": {"sampling_percentage": percentage}}))
            .unwrap();
        let mut policy = Policy::build(&policy_config).unwrap();
        policy
            .evaluate(
                &TraceView {
                    trace_id: &ascending,
                    span_count: 1,
                    batches: &[],
                },
                Duration::ZERO,
            )
            .unwrap()
    };
    assert_eq!(decide(65.0), Decision::Sampled);
    assert_eq!(decide(64.9), Decision::NotSampled);
    // Over many IDs the kept share follows the percentage.
    let policy_config: PolicyConfig =
        serde_json::from_value(json!({"name": "p", "type": "probabilistic",
        "probabilistic": {"sampling_percentage": 20, "hash_salt": "s"}}))
        .unwrap();
    let mut policy = Policy::build(&policy_config).unwrap();
    let kept = (0..10_000u32)
        .filter(|n| {
            let mut trace_id = [0u8; 16];
            trace_id[..4].copy_from_slice(&n.to_be_bytes());
            policy
                .evaluate(
                    &TraceView {
                        trace_id: &trace_id,
                        span_count: 1,
                        batches: &[],
                    },
                    Duration::ZERO,
                )
                .unwrap()
                == Decision::Sampled
        })
        .count();
    assert!((1800..2200).contains(&kept), "kept {kept} of 10000 at 20%");
}

#[test]
fn string_attribute_exact_regex_and_inverted() {
    let exact = json!({"name": "s", "type": "string_attribute", "string_attribute": {"key": "route", "values": ["/pay", "/buy"]}});
    let pay = one(vec![with_attr(span(1, "a"), kv("route", s("/pay")))]);
    let other = one(vec![with_attr(span(1, "a"), kv("route", s("/health")))]);
    assert_eq!(decide_one(exact.clone(), &pay), Decision::Sampled);
    assert_eq!(decide_one(exact.clone(), &other), Decision::NotSampled);
    // The resource's attributes count too.
    let on_resource = vec![resource_spans(
        vec![kv("route", s("/buy"))],
        vec![span(1, "a")],
    )];
    assert_eq!(decide_one(exact, &on_resource), Decision::Sampled);

    let regex = json!({"name": "r", "type": "string_attribute", "string_attribute": {"key": "route", "values": ["^/p.y$", "ealt"],
        "enabled_regex_matching": true, "cache_max_size": 1}});
    assert_eq!(decide_one(regex.clone(), &pay), Decision::Sampled);
    assert_eq!(
        decide_one(regex, &other),
        Decision::Sampled,
        "unanchored like Go's MatchString"
    );

    // Inverted: plain NotSampled when a resource or span matches, else Sampled (v0.161 no
    // longer answers the Invert* decisions).
    let inverted = json!({"name": "i", "type": "string_attribute", "string_attribute": {"key": "route", "values": ["/health"], "invert_match": true}});
    assert_eq!(decide_one(inverted.clone(), &other), Decision::NotSampled);
    assert_eq!(decide_one(inverted.clone(), &pay), Decision::Sampled);
    assert_eq!(
        decide_one(inverted, &one(vec![span(1, "no attribute")])),
        Decision::Sampled
    );
}

#[test]
fn numeric_attribute_range_with_the_collectors_zero_bounds() {
    let code = |v: i64| {
        one(vec![with_attr(
            span(1, "a"),
            kv("http.status_code", any_value::Value::IntValue(v)),
        )])
    };
    let range = json!({"name": "n", "type": "numeric_attribute", "numeric_attribute": {"key": "http.status_code", "min_value": 500, "max_value": 599}});
    assert_eq!(decide_one(range.clone(), &code(503)), Decision::Sampled);
    assert_eq!(decide_one(range.clone(), &code(404)), Decision::NotSampled);
    // A string value reads as 0 (pcommon Value.Int()).
    let text = one(vec![with_attr(
        span(1, "a"),
        kv("http.status_code", s("503")),
    )]);
    assert_eq!(decide_one(range, &text), Decision::NotSampled);
    // max_value 0 = no upper bound.
    let at_least = json!({"name": "n", "type": "numeric_attribute", "numeric_attribute": {"key": "http.status_code", "min_value": 500}});
    assert_eq!(decide_one(at_least, &code(i64::MAX)), Decision::Sampled);
    // min_value 0 = no lower bound: negative values match (a Collector quirk, kept).
    let at_most = json!({"name": "n", "type": "numeric_attribute", "numeric_attribute": {"key": "http.status_code", "min_value": 0, "max_value": 10}});
    assert_eq!(decide_one(at_most, &code(-5)), Decision::Sampled);
    let inverted = json!({"name": "n", "type": "numeric_attribute", "numeric_attribute": {"key": "http.status_code", "min_value": 500, "max_value": 599, "invert_match": true}});
    assert_eq!(
        decide_one(inverted.clone(), &code(503)),
        Decision::NotSampled
    );
    assert_eq!(decide_one(inverted, &code(200)), Decision::Sampled);
}

#[test]
fn boolean_attribute_and_inverted() {
    let flagged = one(vec![with_attr(
        span(1, "a"),
        kv("force", any_value::Value::BoolValue(true)),
    )]);
    let policy = json!({"name": "b", "type": "boolean_attribute", "boolean_attribute": {"key": "force", "value": true}});
    assert_eq!(decide_one(policy.clone(), &flagged), Decision::Sampled);
    assert_eq!(
        decide_one(policy, &one(vec![span(1, "a")])),
        Decision::NotSampled
    );
    // A non-bool value reads as false (pcommon Value.Bool()).
    let as_text = one(vec![with_attr(span(1, "a"), kv("force", s("true")))]);
    let wants_false = json!({"name": "b", "type": "boolean_attribute", "boolean_attribute": {"key": "force", "value": false}});
    assert_eq!(decide_one(wants_false, &as_text), Decision::Sampled);
    let inverted = json!({"name": "b", "type": "boolean_attribute", "boolean_attribute": {"key": "force", "value": true, "invert_match": true}});
    assert_eq!(decide_one(inverted.clone(), &flagged), Decision::NotSampled);
    assert_eq!(
        decide_one(inverted, &one(vec![span(1, "a")])),
        Decision::Sampled
    );
}

#[test]
fn span_count_bounds_are_inclusive() {
    let three = one(vec![span(1, "a"), span(1, "b"), span(1, "c")]);
    let count = |min: i32, max: i32| {
        decide_one(
            json!({"name": "c", "type": "span_count", "span_count": {"min_spans": min, "max_spans": max}}),
            &three,
        )
    };
    assert_eq!(count(3, 3), Decision::Sampled);
    assert_eq!(count(2, 0), Decision::Sampled, "max 0 = no upper bound");
    assert_eq!(count(4, 0), Decision::NotSampled);
    assert_eq!(count(1, 2), Decision::NotSampled);
}

#[test]
fn trace_state_reads_w3c_members() {
    assert_eq!(
        parse_trace_state("vendor=v1, ot@sys=x,,  b=2 "),
        Some(vec![
            ("vendor".into(), "v1".into()),
            ("ot@sys".into(), "x".into()),
            ("b".into(), "2".into())
        ])
    );
    assert_eq!(parse_trace_state(""), Some(vec![]));
    assert_eq!(parse_trace_state("Upper=1"), None, "keys are lower case");
    assert_eq!(parse_trace_state("a=1,a=2"), None, "duplicate keys");
    assert_eq!(parse_trace_state("a=x=y"), None, "'=' in a value");
    assert_eq!(parse_trace_state("novalue"), None);
    let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    assert_eq!(
        parse_trace_state(&many.join(",")),
        None,
        "more than 32 members"
    );

    let policy = json!({"name": "t", "type": "trace_state", "trace_state": {"key": "vendor", "values": ["v1", "v2"]}});
    let with_state = |state: &str| {
        let mut sp = span(1, "a");
        sp.trace_state = state.to_string();
        one(vec![sp])
    };
    assert_eq!(
        decide_one(policy.clone(), &with_state("other=1,vendor=v2")),
        Decision::Sampled
    );
    assert_eq!(
        decide_one(policy.clone(), &with_state("vendor=v3")),
        Decision::NotSampled
    );
    assert_eq!(
        decide_one(policy, &with_state("vendor=v1,BAD")),
        Decision::NotSampled,
        "an invalid tracestate matches nothing"
    );
}

#[test]
fn rate_limiting_is_a_token_bucket_twice_the_rate() {
    let policy_config: PolicyConfig = serde_json::from_value(
        json!({"name": "r", "type": "rate_limiting", "rate_limiting": {"spans_per_second": 10}}),
    )
    .unwrap();
    let mut policy = Policy::build(&policy_config).unwrap();
    let trace_id = id(1);
    let mut at = |seconds: f64, spans: i64| {
        policy
            .evaluate(
                &TraceView {
                    trace_id: &trace_id,
                    span_count: spans,
                    batches: &[],
                },
                Duration::from_secs_f64(seconds),
            )
            .unwrap()
    };
    assert_eq!(
        at(100.0, 15),
        Decision::Sampled,
        "the bucket starts full at 20"
    );
    assert_eq!(at(100.0, 6), Decision::NotSampled, "5 left");
    assert_eq!(at(100.0, 5), Decision::Sampled);
    assert_eq!(at(100.5, 5), Decision::Sampled, "half a second refills 5");
    assert_eq!(at(100.5, 1), Decision::NotSampled);
    assert_eq!(
        at(200.0, 21),
        Decision::NotSampled,
        "more than the bucket never passes"
    );
    assert_eq!(
        at(200.0, 20),
        Decision::Sampled,
        "refill is capped at the bucket size"
    );
}

#[test]
fn and_needs_every_sub_policy_and_drop_drops() {
    let trace = one(vec![with_status(
        with_attr(span(1, "a"), kv("route", s("/pay"))),
        2,
    )]);
    let subs = json!([
        {"name": "e", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {"name": "r", "type": "string_attribute", "string_attribute": {"key": "route", "values": ["/pay"]}}
    ]);
    assert_eq!(
        decide_one(
            json!({"name": "a", "type": "and", "and": {"and_sub_policy": subs}}),
            &trace
        ),
        Decision::Sampled
    );
    assert_eq!(
        decide_one(
            json!({"name": "d", "type": "drop", "drop": {"drop_sub_policy": subs}}),
            &trace
        ),
        Decision::Dropped
    );
    let ok_trace = one(vec![with_attr(span(1, "a"), kv("route", s("/pay")))]);
    assert_eq!(
        decide_one(
            json!({"name": "a", "type": "and", "and": {"and_sub_policy": subs}}),
            &ok_trace
        ),
        Decision::NotSampled
    );
    assert_eq!(
        decide_one(
            json!({"name": "d", "type": "drop", "drop": {"drop_sub_policy": subs}}),
            &ok_trace
        ),
        Decision::NotSampled
    );
    // An inverted sub-policy's NotSampled fails the `and`, its Sampled is a yes.
    let with_inverted = json!([
        {"name": "r", "type": "string_attribute", "string_attribute": {"key": "route", "values": ["/health"], "invert_match": true}},
        {"name": "e", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}}
    ]);
    assert_eq!(
        decide_one(
            json!({"name": "a", "type": "and", "and": {"and_sub_policy": with_inverted}}),
            &trace
        ),
        Decision::Sampled
    );
}

#[test]
fn not_inverts_sampled_and_not_sampled_of_its_sub_policy() {
    let slow = one(vec![timed(span(1, "a"), 0, 900)]);
    let fast = one(vec![timed(span(1, "a"), 0, 50)]);
    let not_slow = json!({"name": "fast", "type": "not", "not": {"not_sub_policy":
        {"name": "slow", "type": "latency", "latency": {"threshold_ms": 100}}}});
    assert_eq!(decide_one(not_slow.clone(), &slow), Decision::NotSampled);
    assert_eq!(decide_one(not_slow.clone(), &fast), Decision::Sampled);
    // The sub-policy's name is optional.
    let unnamed = json!({"name": "n", "type": "not", "not": {"not_sub_policy":
        {"type": "always_sample"}}});
    assert_eq!(decide_one(unnamed, &fast), Decision::NotSampled);
    // Inside `and`: a `not` sub-policy saying NotSampled fails the `and`.
    let and = json!({"name": "a", "type": "and", "and": {"and_sub_policy": [
        {"name": "all", "type": "always_sample"}, not_slow.clone()
    ]}});
    assert_eq!(decide_one(and.clone(), &slow), Decision::NotSampled);
    assert_eq!(decide_one(and, &fast), Decision::Sampled);
    // Inside `drop`: drops the traces the sub-policy would not sample.
    let drop_fast =
        json!({"name": "d", "type": "drop", "drop": {"drop_sub_policy": [not_slow.clone()]}});
    assert_eq!(decide_one(drop_fast.clone(), &fast), Decision::Dropped);
    assert_eq!(decide_one(drop_fast, &slow), Decision::NotSampled);
    // An error of the sub-policy is the `not`'s error (counted, the policy skipped).
    let failing = json!({"name": "f", "type": "not", "not": {"not_sub_policy":
        {"name": "o", "type": "ottl_condition", "ottl_condition": {"span": ["1 / 0 == 0"]}}}});
    let policy_config: PolicyConfig = serde_json::from_value(failing).expect("a valid policy");
    let mut policy = Policy::build(&policy_config).expect("builds");
    let trace_id = id(1);
    let view = TraceView {
        trace_id: &trace_id,
        span_count: 1,
        batches: &fast,
    };
    let error = policy.evaluate(&view, Duration::ZERO).unwrap_err();
    assert!(error.contains("divide by 0"), "{error}");
    // End to end: a `not` policy keeps the fast trace and drops the slow one.
    assert!(final_decision(
        json!([not_slow.clone()]),
        vec![timed(span(1, "a"), 0, 50)]
    ));
    assert!(!final_decision(
        json!([not_slow]),
        vec![timed(span(1, "a"), 0, 900)]
    ));
}

#[test]
fn composite_shares_its_budget_in_sub_policy_order() {
    let policy_config: PolicyConfig = serde_json::from_value(json!({"name": "c", "type": "composite", "composite": {
        "max_total_spans_per_second": 10,
        "policy_order": ["ignored", "by", "the collector"],
        "composite_sub_policy": [
            {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
            {"name": "all", "type": "always_sample"},
            {"name": "unallocated", "type": "always_sample"}
        ],
        "rate_allocation": [{"policy": "errors", "percent": 60}, {"policy": "all", "percent": 0}]
    }}))
    .unwrap();
    let whole = Config {
        policies: vec![policy_config.clone()],
        ..Config::default()
    };
    assert!(whole.validate().is_empty(), "{:?}", whole.validate());
    let mut policy = Policy::build(&policy_config).unwrap();
    let trace_id = id(1);
    let error_trace = one(vec![
        with_status(span(1, "a"), 2),
        with_status(span(1, "b"), 2),
    ]);
    let ok_trace = one(vec![span(1, "a"), span(1, "b")]);
    let mut at = |second: u64, batches: &[ResourceSpans]| {
        policy
            .evaluate(
                &TraceView {
                    trace_id: &trace_id,
                    span_count: 2,
                    batches,
                },
                Duration::from_secs(second),
            )
            .unwrap()
    };
    // errors: 60% of 10 = 6 spans/s, three 2-span traces.
    assert_eq!(at(5, &error_trace), Decision::Sampled);
    assert_eq!(at(5, &error_trace), Decision::Sampled);
    assert_eq!(at(5, &error_trace), Decision::Sampled);
    // The first sub-policy that samples decides: over budget is NotSampled, even though
    // "all" would have had room.
    assert_eq!(at(5, &error_trace), Decision::NotSampled);
    // "all": percent 0 gets the default share 10/3 = 3 spans/s (truncated): one trace.
    assert_eq!(at(5, &ok_trace), Decision::Sampled);
    assert_eq!(at(5, &ok_trace), Decision::NotSampled);
    // A new second resets every budget.
    assert_eq!(at(6, &error_trace), Decision::Sampled);
    // A sub-policy without any rate_allocation entry gets 0 and never samples (as the Collector).
    let lone: PolicyConfig =
        serde_json::from_value(json!({"name": "c", "type": "composite", "composite": {
            "max_total_spans_per_second": 100,
            "composite_sub_policy": [{"name": "unallocated", "type": "always_sample"}]
        }}))
        .unwrap();
    let mut lone = Policy::build(&lone).unwrap();
    assert_eq!(
        lone.evaluate(
            &TraceView {
                trace_id: &trace_id,
                span_count: 1,
                batches: &ok_trace
            },
            Duration::ZERO
        )
        .unwrap(),
        Decision::NotSampled
    );
}

// --- the processor's decision rules -------------------------------------------------------

/// The final decision of `policies` for a trace of `spans`, through the processor.
fn final_decision(policies: serde_json::Value, spans: Vec<Span>) -> bool {
    let (mut p, clock, _) = processor(json!({"decision_wait": "1s", "policies": policies}));
    let out = p.process(batch(spans)).unwrap();
    assert!(out.is_empty(), "nothing passes before the decision");
    clock.advance(Duration::from_secs(1));
    p.tick();
    !p.take_pending().is_empty()
}

#[test]
fn decision_rules_follow_the_collectors_precedence() {
    let error_span = || with_status(with_attr(span(1, "a"), kv("route", s("/health"))), 2);
    let errors = errors_policy();
    let not_health = json!({"name": "nh", "type": "string_attribute", "string_attribute": {"key": "route", "values": ["/health"], "invert_match": true}});
    let not_pay = json!({"name": "np", "type": "string_attribute", "string_attribute": {"key": "route", "values": ["/pay"], "invert_match": true}});
    let never = json!({"name": "never", "type": "span_count", "span_count": {"min_spans": 100}});
    let drop_errors =
        json!({"name": "drop", "type": "drop", "drop": {"drop_sub_policy": [errors_policy()]}});
    let always = json!({"name": "always", "type": "always_sample"});

    assert!(
        final_decision(json!([errors.clone()]), vec![error_span()]),
        "any Sampled samples"
    );
    assert!(
        !final_decision(json!([never.clone()]), vec![error_span()]),
        "only NotSampled: not sampled"
    );
    // v0.161: an inverted policy answers plain Sampled/NotSampled, so any Sampled wins.
    assert!(
        final_decision(
            json!([errors.clone(), not_health.clone()]),
            vec![error_span()]
        ),
        "an inverted policy's NotSampled does not veto a Sampled"
    );
    assert!(
        !final_decision(json!([not_health]), vec![error_span()]),
        "an inverted policy alone, matching: not sampled"
    );
    assert!(
        final_decision(json!([not_pay.clone()]), vec![error_span()]),
        "an inverted policy alone, not matching: sampled"
    );
    assert!(
        final_decision(json!([not_pay, never]), vec![error_span()]),
        "an inverted policy's Sampled wins over a NotSampled"
    );
    assert!(
        final_decision(json!([errors]), vec![error_span()]),
        "a Sampled samples"
    );
    assert!(
        !final_decision(json!([always, drop_errors]), vec![error_span()]),
        "Dropped wins over everything"
    );
}

#[test]
fn policy_counters_use_the_collectors_names_and_labels() {
    let (mut p, clock, registry) = processor(json!({"decision_wait": "1s", "policies": [
        errors_policy(),
        {"name": "drop-health", "type": "drop", "drop": {"drop_sub_policy": [
            {"name": "h", "type": "string_attribute", "string_attribute": {"key": "route", "values": ["/health"]}}]}}
    ]}));
    p.process(batch(vec![
        with_status(span(1, "a"), 2),
        with_attr(span(2, "b"), kv("route", s("/health"))),
        span(3, "c"),
    ]))
    .unwrap();
    clock.advance(Duration::from_secs(1));
    p.tick();
    let text = registry.render_prometheus();
    for line in [
        "otelcol_processor_tail_sampling_count_traces_sampled{processor=\"tail_sampling\",policy=\"errors\",sampled=\"true\",decision=\"sampled\"} 1",
        "otelcol_processor_tail_sampling_count_traces_sampled{processor=\"tail_sampling\",policy=\"errors\",sampled=\"false\",decision=\"not_sampled\"} 1",
        // Drop policies run first; a Dropped ends the evaluation (trace 2 never reaches "errors").
        "otelcol_processor_tail_sampling_count_traces_sampled{processor=\"tail_sampling\",policy=\"drop-health\",sampled=\"false\",decision=\"dropped\"} 1",
        "otelcol_processor_tail_sampling_count_traces_sampled{processor=\"tail_sampling\",policy=\"drop-health\",sampled=\"false\",decision=\"not_sampled\"} 2",
        "otelcol_processor_tail_sampling_global_count_traces_sampled{processor=\"tail_sampling\",sampled=\"true\",decision=\"sampled\"} 1",
        "otelcol_processor_tail_sampling_global_count_traces_sampled{processor=\"tail_sampling\",sampled=\"false\",decision=\"not_sampled\"} 1",
        "otelcol_processor_tail_sampling_global_count_traces_sampled{processor=\"tail_sampling\",sampled=\"false\",decision=\"dropped\"} 1",
        "otelcol_processor_tail_sampling_new_trace_id_received{processor=\"tail_sampling\"} 3",
        "otelcol_processor_tail_sampling_sampling_traces_on_memory{processor=\"tail_sampling\"} 3",
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
    // A named component prefixes its policy names, as the Collector does.
    let registry = Registry::new();
    TailSamplingProcessor::new(
        "tail_sampling/edge",
        &config(json!({"policies": [errors_policy()]})),
        Some(&registry),
    )
    .unwrap();
    assert!(
        registry
            .render_prometheus()
            .contains("policy=\"edge.errors\"")
    );
}

#[test]
fn sample_on_first_match_stops_at_the_first_sampled() {
    let policies = json!([{"name": "first", "type": "always_sample"}, errors_policy()]);
    for (first_match, errors_evaluated) in [(false, 1), (true, 0)] {
        let (mut p, clock, registry) = processor(
            json!({"decision_wait": "1s", "sample_on_first_match": first_match, "policies": policies}),
        );
        p.process(batch(vec![span(1, "a")])).unwrap();
        clock.advance(Duration::from_secs(1));
        p.tick();
        let text = registry.render_prometheus();
        let line = format!(
            "otelcol_processor_tail_sampling_count_traces_sampled{{processor=\"tail_sampling\",policy=\"errors\",sampled=\"false\",decision=\"not_sampled\"}} {errors_evaluated}"
        );
        assert!(
            text.contains(&line),
            "sample_on_first_match={first_match}: {text}"
        );
    }
}

// --- the processor: timing, whole traces, late spans, memory ------------------------------

#[test]
fn decides_once_decision_wait_has_passed_and_releases_whole_traces() {
    let (mut p, clock, _) =
        processor(json!({"decision_wait": "10s", "policies": [errors_policy()]}));
    // Trace 1 arrives in two batches, its error in the second; trace 2 is all OK.
    assert!(
        p.process(batch(vec![span(1, "t1-a"), span(2, "t2-a")]))
            .unwrap()
            .is_empty()
    );
    clock.advance(Duration::from_secs(4));
    assert!(
        p.process(batch(vec![
            with_status(span(1, "t1-b"), 2),
            span(2, "t2-b")
        ]))
        .unwrap()
        .is_empty()
    );
    clock.advance(Duration::from_millis(5_999));
    p.tick();
    assert!(
        p.take_pending().is_empty(),
        "9.999 s after the first span: still waiting"
    );
    assert_eq!(p.traces_in_memory(), 2);
    clock.advance(Duration::from_millis(1));
    p.tick();
    let released = p.take_pending();
    assert_eq!(
        names(&released),
        ["t1-a", "t1-b"],
        "trace 1 whole, trace 2 not at all"
    );
    assert_eq!(released.iter().map(Batch::items).sum::<u64>(), 2);
    p.tick();
    assert!(p.take_pending().is_empty(), "released once");
}

#[test]
fn late_spans_follow_the_decision() {
    let (mut p, clock, _) =
        processor(json!({"decision_wait": "1s", "policies": [errors_policy()]}));
    p.process(batch(vec![
        with_status(span(1, "kept"), 2),
        span(2, "dropped"),
    ]))
    .unwrap();
    clock.advance(Duration::from_secs(1));
    p.tick();
    assert_eq!(names(&p.take_pending()), ["kept"]);
    // After the decision: trace 1's new spans pass at once, trace 2's (even an error) do not.
    let out = p
        .process(batch(vec![
            span(1, "kept-late"),
            with_status(span(2, "dropped-late"), 2),
        ]))
        .unwrap();
    assert_eq!(names(&[out]), ["kept-late"]);
    clock.advance(Duration::from_secs(5));
    p.tick();
    assert!(
        p.take_pending().is_empty(),
        "late spans are not decided again"
    );
}

#[test]
fn decision_caches_outlive_the_trace_in_memory() {
    let (mut p, clock, registry) = processor(json!({"decision_wait": "1s", "num_traces": 10,
        "decision_cache": {"sampled_cache_size": 5, "non_sampled_cache_size": 5}, "policies": [errors_policy()]}));
    p.process(batch(vec![
        with_status(span(1, "kept"), 2),
        span(2, "dropped"),
    ]))
    .unwrap();
    clock.advance(Duration::from_secs(1));
    p.tick();
    assert_eq!(names(&p.take_pending()), ["kept"]);
    assert_eq!(
        p.traces_in_memory(),
        0,
        "with caches, decided traces leave memory at once"
    );
    let out = p
        .process(batch(vec![
            span(1, "kept-late"),
            span(1, "kept-late-2"),
            span(2, "dropped-late"),
        ]))
        .unwrap();
    assert_eq!(names(&[out]), ["kept-late", "kept-late-2"]);
    assert_eq!(p.traces_in_memory(), 0);
    let text = registry.render_prometheus();
    assert!(text.contains("otelcol_processor_tail_sampling_early_releases_from_cache_decision{processor=\"tail_sampling\",sampled=\"true\"} 2"), "{text}");
    assert!(text.contains("otelcol_processor_tail_sampling_early_releases_from_cache_decision{processor=\"tail_sampling\",sampled=\"false\"} 1"), "{text}");
}

#[test]
fn num_traces_bounds_memory_and_counts_traces_lost_before_their_decision() {
    let (mut p, clock, _) = processor(
        json!({"decision_wait": "10s", "num_traces": 3, "policies": [{"name": "all", "type": "always_sample"}]}),
    );
    for trace in 1..=5u8 {
        p.process(batch(vec![span(trace, &format!("t{trace}"))]))
            .unwrap();
        clock.advance(Duration::from_secs(1));
        assert!(p.traces_in_memory() <= 3);
    }
    assert_eq!(p.traces_in_memory(), 3);
    assert_eq!(
        p.counters().trace_dropped_too_early.get(),
        2,
        "traces 1 and 2 were pushed out undecided"
    );
    assert_eq!(p.counters().traces_on_memory.get(), 3);
    clock.advance(Duration::from_secs(10));
    p.tick();
    assert_eq!(names(&p.take_pending()), ["t3", "t4", "t5"]);
    // Decided traces stay remembered (for late spans) until new ones push them out.
    p.process(batch(vec![span(6, "t6")])).unwrap();
    assert_eq!(p.traces_in_memory(), 3);
    assert_eq!(
        p.counters().trace_dropped_too_early.get(),
        2,
        "pushing out a decided trace loses nothing"
    );
    let out = p.process(batch(vec![span(3, "t3-late")])).unwrap();
    assert!(
        out.is_empty(),
        "trace 3 was forgotten: its late span starts a new trace"
    );
    assert_eq!(p.counters().new_trace_id_received.get(), 7);
}

#[test]
fn spans_of_several_traces_and_scopes_in_one_request_are_grouped() {
    let (mut p, clock, _) =
        processor(json!({"decision_wait": "1s", "policies": [errors_policy()]}));
    let request = Batch::from_traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", s("svc"))],
            ..Resource::default()
        }),
        scope_spans: vec![
            ScopeSpans {
                spans: vec![span(1, "s1-t1"), span(2, "s1-t2")],
                ..ScopeSpans::default()
            },
            ScopeSpans {
                spans: vec![with_status(span(1, "s2-t1"), 2)],
                ..ScopeSpans::default()
            },
        ],
        schema_url: "https://schema".into(),
    }]);
    p.process(request).unwrap();
    clock.advance(Duration::from_secs(1));
    p.tick();
    let released = p.take_pending();
    assert_eq!(names(&released), ["s1-t1", "s2-t1"]);
    let Data::Traces(resources) = released[0].data() else {
        panic!()
    };
    assert_eq!(resources.len(), 1, "one part per resource and trace");
    assert_eq!(
        resources[0].scope_spans.len(),
        2,
        "each span keeps its scope"
    );
    assert_eq!(resources[0].schema_url, "https://schema");
    assert_eq!(
        resources[0].resource.as_ref().unwrap().attributes[0].key,
        "service.name"
    );
}

#[test]
fn encoded_batches_are_decoded_and_other_signals_pass() {
    let (mut p, clock, _) =
        processor(json!({"decision_wait": "1s", "policies": [errors_policy()]}));
    let encoded = batch(vec![with_status(span(1, "e"), 2)]).to_bytes();
    p.process(Batch::from_encoded(Signal::Traces, encoded).unwrap())
        .unwrap();
    clock.advance(Duration::from_secs(1));
    p.tick();
    assert_eq!(names(&p.take_pending()), ["e"]);
    let metrics = Batch::empty(Signal::Metrics);
    assert_eq!(p.process(metrics).unwrap().signal(), Signal::Metrics);
}

#[test]
fn a_bad_trace_id_refuses_the_batch_and_holds_nothing() {
    let (mut p, _, _) = processor(json!({"policies": [errors_policy()]}));
    let mut bad = span(1, "bad");
    bad.trace_id = vec![1, 2, 3];
    let refusal = p.process(batch(vec![span(2, "good"), bad])).unwrap_err();
    assert!(
        matches!(&refusal, Refusal::Invalid { reason } if reason.contains("tail_sampling") && reason.contains("3 bytes")),
        "{refusal:?}"
    );
    assert_eq!(p.traces_in_memory(), 0);
    let garbage = Batch::from_encoded_counted(
        Signal::Traces,
        bytes::Bytes::from_static(&[0x0a, 0x05, 0xff]),
        1,
    );
    assert!(matches!(p.process(garbage), Err(Refusal::Invalid { .. })));
}

#[test]
fn shutdown_decides_pending_traces_unless_told_to_drop_them() {
    for (drop_pending, expected) in [(false, vec!["e"]), (true, vec![])] {
        let (mut p, _, _) = processor(
            json!({"drop_pending_traces_on_shutdown": drop_pending, "policies": [errors_policy()]}),
        );
        p.process(batch(vec![with_status(span(1, "e"), 2), span(2, "ok")]))
            .unwrap();
        p.shutdown();
        assert_eq!(
            names(&p.take_pending()),
            expected,
            "drop_pending_traces_on_shutdown={drop_pending}"
        );
    }
}

#[test]
fn ticks_at_least_every_second() {
    let (p, _, _) = processor(json!({"policies": [errors_policy()]}));
    assert_eq!(p.tick_interval(), Some(Duration::from_secs(1)));
    let (p, _, _) = processor(json!({"decision_wait": "200ms", "policies": [errors_policy()]}));
    assert_eq!(p.tick_interval(), Some(Duration::from_millis(200)));
}

#[test]
fn ottl_condition_on_spans_and_span_events() {
    use opentelemetry_proto::tonic::trace::v1::span::Event;
    let policy = json!({"name": "o", "type": "ottl_condition", "ottl_condition": {
        "span": ["attributes[\"route\"] == \"/pay\""],
        "spanevent": ["name == \"exception\""]
    }});
    let pay = one(vec![
        span(1, "a"),
        with_attr(span(1, "b"), kv("route", s("/pay"))),
    ]);
    assert_eq!(decide_one(policy.clone(), &pay), Decision::Sampled);
    let mut with_event = span(1, "c");
    with_event.events.push(Event {
        name: "exception".into(),
        ..Event::default()
    });
    assert_eq!(
        decide_one(policy.clone(), &one(vec![span(1, "a"), with_event])),
        Decision::Sampled
    );
    assert_eq!(
        decide_one(policy, &one(vec![span(1, "a")])),
        Decision::NotSampled
    );
}

#[test]
fn ottl_condition_errors_follow_error_mode() {
    let trace = one(vec![with_attr(span(1, "a"), kv("route", s("/pay")))]);
    let build = |mode: &str| {
        let policy_config: PolicyConfig = serde_json::from_value(
            json!({"name": "o", "type": "ottl_condition", "ottl_condition": {
            "error_mode": mode, "span": ["1 / 0 == 0", "attributes[\"route\"] == \"/pay\""]}}),
        )
        .unwrap();
        Policy::build(&policy_config).unwrap()
    };
    let trace_id = id(1);
    let view = TraceView {
        trace_id: &trace_id,
        span_count: 1,
        batches: &trace,
    };
    let error = build("propagate")
        .evaluate(&view, Duration::ZERO)
        .unwrap_err();
    assert!(error.contains("divide by 0"), "{error}");
    for mode in ["ignore", "silent"] {
        assert_eq!(
            build(mode).evaluate(&view, Duration::ZERO),
            Ok(Decision::Sampled),
            "{mode}: the failing condition counts as false"
        );
    }
    // Through the processor: a failing policy is skipped and counted; the others decide.
    let (mut p, clock, _) = processor(json!({"decision_wait": "1s", "policies": [
        {"name": "o", "type": "ottl_condition", "ottl_condition": {"span": ["1 / 0 == 0"]}},
        {"name": "all", "type": "always_sample"}
    ]}));
    p.process(batch(vec![span(1, "x")])).unwrap();
    clock.advance(Duration::from_secs(1));
    p.tick();
    assert_eq!(names(&p.take_pending()), ["x"]);
    assert_eq!(p.counters().policy_evaluation_error.get(), 1);
}

#[test]
fn ottl_condition_config_errors_name_the_condition() {
    let c = config(json!({"policies": [
        {"name": "o", "type": "ottl_condition", "ottl_condition": {"span": ["name == "], "spanevent": ["ok == ", "name == \"x\""]}},
        {"name": "e", "type": "ottl_condition", "ottl_condition": {}}
    ]}));
    let errors = c.validate();
    assert!(
        errors.iter().any(
            |e| e.starts_with("policies[0].ottl_condition.span[0] \"name == \": at position 8")
        ),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("policies[0].ottl_condition.spanevent[0]")),
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|e| e
            .starts_with("policies[1].ottl_condition.span/spanevent: give at least one condition")),
        "{errors:#?}"
    );
    assert_eq!(errors.len(), 3, "{errors:#?}");
    let result: Result<Config, _> = serde_json::from_value(json!({"policies": [
        {"name": "o", "type": "ottl_condition", "ottl_condition": {"error_mode": "loud", "span": ["true"]}}]}));
    assert!(result.is_err(), "unknown error_mode");
}
