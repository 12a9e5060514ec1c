//! Known vectors, derived by hand from the Collector's code (fnvhasher.go,
//! sampler_mode.go, pkg/sampling) with a 10-line Python transcription:
//!
//! ```text
//! fnv(data, seed): h = 0x811c9dc5; for b in seed.to_bytes(4, 'little') + data:
//!                  h = ((h ^ b) * 0x01000193) & 0xffffffff
//! bucket = fnv & 0x3fff;  scaled = uint32(float32(pct) * float32(163.84))
//! kept iff bucket < scaled;  rv = (0x3fff-bucket)<<42 | (u18 ^ u18<<10)<<14 | bucket
//!                            with u18 = fnv >> 18;  th = (16384 - scaled) << 42
//! ```
//!
//! Trace IDs: A = 01 02 .. 10, B = ff x16, C = 5b8efff798038103d269b633813fc60c.
//! seed 0:   A fnv 0xdf241a25 bucket 6693  rv 976837c4f25a25
//!           B fnv 0x291a1545 bucket 5445  rv aae80a44919545
//!           C fnv 0x245dd6df bucket 5855  rv a480091545d6df
//! seed 123: A bucket 10478, B bucket 14862, C bucket 12300.
//! scaled: 33.3% -> 5455 (th aac4), 50% -> 8192 (th 8), 75% -> 12288 (th 4),
//!         0.01% -> 1, 100% -> 16384 (th 0).

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use oxcol_core::{Batch, Data, Processor};

use super::*;

const A: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
const B: [u8; 16] = [0xff; 16];
const C: [u8; 16] = [
    0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c,
];

fn config(pct: f32, seed: u32) -> Config {
    Config {
        sampling_percentage: pct,
        hash_seed: seed,
        ..Default::default()
    }
}

fn span(trace_id: &[u8], name: &str) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        name: name.into(),
        ..Default::default()
    }
}

fn traces(spans: Vec<Span>) -> Batch {
    Batch::from_traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn kept_spans(batch: &Batch) -> Vec<Span> {
    let Data::Traces(r) = batch.data() else {
        panic!("traces expected")
    };
    r.iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.clone())
        .collect()
}

fn run(config: &Config, spans: Vec<Span>) -> Vec<Span> {
    let mut sampler =
        ProbabilisticSampler::new("probabilistic_sampler", config, None).expect("valid config");
    kept_spans(&sampler.process(traces(spans)).expect("processed"))
}

fn names(spans: &[Span]) -> Vec<String> {
    spans.iter().map(|s| s.name.clone()).collect()
}

#[test]
fn hash_seed_keeps_the_traces_the_collector_keeps() {
    let all = || vec![span(&A, "A"), span(&B, "B"), span(&C, "C")];
    assert_eq!(names(&run(&config(33.3, 0), all())), ["B"]);
    assert_eq!(names(&run(&config(50.0, 0), all())), ["A", "B", "C"]);
    assert!(run(&config(25.0, 0), all()).is_empty());
    assert_eq!(names(&run(&config(75.0, 123), all())), ["A"]);
    assert!(run(&config(0.0, 0), all()).is_empty());
    assert_eq!(
        run(&config(150.0, 0), all()).len(),
        3,
        "above 100 keeps everything"
    );
}

#[test]
fn sampled_spans_carry_rv_and_th_in_the_tracestate() {
    let mut b = span(&B, "B");
    b.trace_state = "vendor=1".into();
    let kept = run(&config(33.3, 0), vec![b]);
    assert_eq!(kept[0].trace_state, "ot=rv:aae80a44919545;th:aac4,vendor=1");
    let kept = run(&config(100.0, 0), vec![span(&A, "A")]);
    assert_eq!(kept[0].trace_state, "ot=rv:976837c4f25a25;th:0");
}

#[test]
fn existing_sampling_information_in_hash_seed_mode_fails_closed_or_open() {
    let mut with_th = span(&A, "A");
    with_th.trace_state = "ot=th:8".into();
    assert!(
        run(&config(100.0, 0), vec![with_th.clone()]).is_empty(),
        "fail_closed is the default"
    );
    let open = Config {
        fail_closed: false,
        ..config(1.0, 0)
    };
    let kept = run(&open, vec![with_th]);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].trace_state, "ot=th:8", "the carrier is not touched");
    // A malformed tracestate: same rule.
    let mut bad = span(&A, "A");
    bad.trace_state = "ot=th:zz".into();
    assert!(run(&config(100.0, 0), vec![bad]).is_empty());
    // No trace ID: missing randomness.
    assert!(run(&config(100.0, 0), vec![span(&[0; 16], "empty")]).is_empty());
}

#[test]
fn span_sampling_priority_overrides() {
    let with_priority = |name: &str, value: Value| {
        let mut s = span(&A, name);
        s.attributes.push(KeyValue {
            key: "sampling.priority".into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        });
        s
    };
    let spans = vec![
        with_priority("keep", Value::IntValue(1)),
        with_priority("drop", Value::StringValue("0".into())),
        with_priority("defer", Value::IntValue(-1)),
    ];
    // At 0% only the forced one stays; at 100% the zero one is dropped.
    assert_eq!(names(&run(&config(0.0, 0), spans.clone())), ["keep"]);
    assert_eq!(names(&run(&config(100.0, 0), spans)), ["keep", "defer"]);
}

#[test]
fn equalizing_and_proportional_use_trace_id_randomness() {
    // W3C randomness is the last 7 bytes: A -> 0x0a0b0c0d0e0f10 (< 0x80000000000000),
    // B -> 0xffffffffffffff. At 50% (th 8) only B passes.
    let equalizing = Config {
        mode: "equalizing".into(),
        ..config(50.0, 0)
    };
    let kept = run(&equalizing, vec![span(&A, "A"), span(&B, "B")]);
    assert_eq!(names(&kept), ["B"]);
    assert_eq!(kept[0].trace_state, "ot=th:8");
    // Proportional multiplies an arriving 50% by 50%: th for 25% is "c".
    let proportional = Config {
        mode: "proportional".into(),
        ..config(50.0, 0)
    };
    let mut b = span(&B, "B");
    b.trace_state = "ot=th:8".into();
    let kept = run(&proportional, vec![b]);
    assert_eq!(kept[0].trace_state, "ot=th:c");
    // Equalizing never lowers an arriving higher threshold.
    let mut b = span(&B, "B");
    b.trace_state = "ot=th:c".into();
    assert_eq!(run(&equalizing, vec![b])[0].trace_state, "ot=th:c");
    // An arriving threshold the trace ID does not satisfy is inconsistent: dropped.
    let mut a = span(&A, "A");
    a.trace_state = "ot=th:8".into();
    assert!(run(&proportional, vec![a]).is_empty());
}

fn log(trace_id: &[u8], attrs: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        trace_id: trace_id.to_vec(),
        attributes: attrs,
        ..Default::default()
    }
}

fn run_logs(config: &Config, records: Vec<LogRecord>) -> Vec<LogRecord> {
    let mut sampler =
        ProbabilisticSampler::new("probabilistic_sampler", config, None).expect("valid config");
    let batch = Batch::from_logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let out = sampler.process(batch).expect("processed");
    assert_eq!(
        out.items() as usize,
        match out.data() {
            Data::Logs(r) => r
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len())
                .sum::<usize>(),
            _ => panic!("logs expected"),
        }
    );
    let Data::Logs(r) = out.data() else {
        panic!("logs expected")
    };
    r.iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| s.log_records.clone())
        .collect()
}

fn text(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::StringValue(v.into())),
    })
}

#[test]
fn logs_hash_the_trace_id_and_write_attributes() {
    let kept = run_logs(&config(33.3, 0), vec![log(&A, vec![]), log(&B, vec![])]);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].trace_id, B.to_vec());
    let attrs: Vec<(String, Option<AnyValue>)> = kept[0]
        .attributes
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    assert_eq!(
        attrs,
        vec![
            ("sampling.randomness".into(), text("aae80a44919545")),
            ("sampling.threshold".into(), text("aac4"))
        ]
    );
}

#[test]
fn logs_from_attribute_and_record_source() {
    // With attribute_source record, the trace ID is ignored and the attribute hashed:
    // the bytes of "B-ID" decide. Without the attribute: missing randomness, dropped.
    let record_source = Config {
        attribute_source: "record".into(),
        from_attribute: "id".into(),
        ..config(100.0, 0)
    };
    let id = |v: &str| {
        vec![KeyValue {
            key: "id".into(),
            value: text(v),
            ..Default::default()
        }]
    };
    let kept = run_logs(
        &record_source,
        vec![log(&A, id("x")), log(&A, vec![]), log(&[0; 16], id(""))],
    );
    assert_eq!(kept.len(), 1);
    assert_eq!(pvalue::get(&kept[0].attributes, "id"), text("x").as_ref());
    // The attribute hash equals the hash of its bytes with the seed.
    let expected = sampling::randomness_from_bytes(b"x", 0).rvalue();
    assert_eq!(
        pvalue::get(&kept[0].attributes, "sampling.randomness"),
        text(&expected).as_ref()
    );
}

#[test]
fn logs_sampling_priority_sets_the_probability() {
    let prioritized = Config {
        sampling_priority: "priority".into(),
        ..config(0.0, 0)
    };
    let prio = |v: Value| {
        vec![KeyValue {
            key: "priority".into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }]
    };
    let kept = run_logs(
        &prioritized,
        vec![
            log(&A, prio(Value::IntValue(100))),
            log(&A, prio(Value::StringValue("100".into()))),
            log(&A, vec![]),
        ],
    );
    assert_eq!(kept.len(), 1, "only numeric priorities count");
    assert_eq!(
        pvalue::get(&kept[0].attributes, "sampling.threshold"),
        text("0").as_ref()
    );
}

#[test]
fn counters_by_policy() {
    let mut sampler = ProbabilisticSampler::new("p", &config(33.3, 0), None).expect("valid");
    sampler
        .process(traces(vec![
            span(&A, "A"),
            span(&B, "B"),
            span(&[0; 16], "none"),
        ]))
        .expect("processed");
    assert_eq!(sampler.counted("trace_id_hash", true), 1);
    assert_eq!(sampler.counted("trace_id_hash", false), 1);
    assert_eq!(sampler.counted("missing_randomness", false), 1);
}

#[test]
fn validation() {
    assert!(Config::default().validate().is_empty());
    let bad = Config {
        sampling_percentage: -1.0,
        mode: "downsample".into(),
        attribute_source: "span".into(),
        sampling_precision: 0,
        ..Default::default()
    };
    assert_eq!(bad.validate().len(), 4);
    let bad = Config {
        sampling_percentage: f32::NAN,
        sampling_precision: 15,
        ..Default::default()
    };
    assert_eq!(bad.validate().len(), 2);
    assert!(ProbabilisticSampler::new("p", &bad, None).is_err());
}

#[test]
fn forced_keep_at_zero_percent_rewrites_a_malformed_tracestate() {
    // Never sampler: the Collector keeps a carrier despite the parse error, and the
    // forced keep writes the always-sample threshold over it.
    let mut s = span(&A, "A");
    s.trace_state = "ot=th:zz".into();
    s.attributes.push(KeyValue {
        key: "sampling.priority".into(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(1)),
        }),
        ..Default::default()
    });
    let kept = run(&config(0.0, 0), vec![s]);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].trace_state, "ot=th:0");
}
