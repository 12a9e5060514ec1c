use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, KeyValueList, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::Event};
use oxcol_core::{Batch, Data, Processor};

use super::*;

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(v.into())),
    }
}
fn i(v: i64) -> AnyValue {
    AnyValue {
        value: Some(Value::IntValue(v)),
    }
}
fn kv(k: &str, v: AnyValue) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(v),
        ..Default::default()
    }
}
fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|x| x.to_string()).collect()
}
const VISA: &str = "4[0-9]{12}(?:[0-9]{3})?";

fn redact(config: &Config, attrs: Vec<KeyValue>) -> Vec<KeyValue> {
    let processor = RedactionProcessor::new("redaction", config).expect("valid config");
    let mut attrs = attrs;
    processor.process_attrs(&mut attrs);
    attrs
}

#[test]
fn keys_not_allowed_are_removed_and_blocked_values_masked() {
    let config = Config {
        allowed_keys: strings(&["id", "notes"]),
        blocked_values: strings(&[VISA]),
        ..Default::default()
    };
    let out = redact(
        &config,
        vec![
            kv("id", s("42")),
            kv("birth_date", s("1990")),
            kv("notes", s("card 4111111111111111 ok")),
        ],
    );
    assert_eq!(out, vec![kv("id", s("42")), kv("notes", s("card **** ok"))]);
    // Fails closed: nothing allowed removes everything.
    assert!(redact(&Config::default(), vec![kv("a", s("1"))]).is_empty());
}

#[test]
fn ignored_allowed_values_and_blocked_key_patterns() {
    let config = Config {
        allow_all_keys: true,
        ignored_keys: strings(&["safe"]),
        blocked_values: strings(&[VISA]),
        allowed_values: strings(&["^4111"]),
        blocked_key_patterns: strings(&["(?i)password"]),
        ..Default::default()
    };
    let out = redact(
        &config,
        vec![
            kv("safe", s("4222222222222")),
            kv("card", s("4111111111111111")),
            kv("DB_PASSWORD", s("hunter2")),
            kv("token", i(7)),
        ],
    );
    // safe: ignored; card: allowed value; password: whole value masked; int: not a string, untouched.
    assert_eq!(
        out,
        vec![
            kv("safe", s("4222222222222")),
            kv("card", s("4111111111111111")),
            kv("DB_PASSWORD", s("****")),
            kv("token", i(7))
        ]
    );
    // A non-string value under a blocked key is read as "" and becomes "****", as in the Collector.
    let out = redact(&config, vec![kv("password_hash", i(5))]);
    assert_eq!(out, vec![kv("password_hash", s("****"))]);
}

#[test]
fn hash_functions_replace_the_match_with_its_digest() {
    // Digests: python3 hashlib.md5/sha1(b"4111111111111111").hexdigest().
    let md5 = Config {
        allow_all_keys: true,
        blocked_values: strings(&[VISA]),
        hash_function: "MD5".into(),
        ..Default::default()
    };
    assert_eq!(
        redact(&md5, vec![kv("n", s("x 4111111111111111"))]),
        vec![kv("n", s("x 5910f4ea0062a0e29afd3dccc741e3ce"))]
    );
    let sha1 = Config {
        hash_function: "sha1".into(),
        ..md5
    };
    assert_eq!(
        redact(&sha1, vec![kv("n", s("4111111111111111"))]),
        vec![kv("n", s("68bfb396f35af3876fc509665b3dc23a0930aab1"))]
    );
}

#[test]
fn summary_levels() {
    let base = Config {
        allowed_keys: strings(&["notes", "ok"]),
        ignored_keys: strings(&["safe"]),
        blocked_values: strings(&[VISA]),
        ..Default::default()
    };
    let input = || {
        vec![
            kv("notes", s("4111111111111111")),
            kv("zeta", s("x")),
            kv("alpha", s("y")),
            kv("safe", s("z")),
            kv("ok", s("fine")),
        ]
    };
    let info = redact(
        &Config {
            summary: "info".into(),
            ..base.clone()
        },
        input(),
    );
    assert_eq!(pvalue::get(&info, "redaction.redacted.count"), Some(&i(2)));
    assert_eq!(pvalue::get(&info, "redaction.masked.count"), Some(&i(1)));
    assert_eq!(pvalue::get(&info, "redaction.ignored.count"), Some(&i(1)));
    assert_eq!(pvalue::get(&info, "redaction.redacted.keys"), None);
    let debug = redact(
        &Config {
            summary: "debug".into(),
            ..base.clone()
        },
        input(),
    );
    assert_eq!(
        pvalue::get(&debug, "redaction.redacted.keys"),
        Some(&s("alpha,zeta"))
    );
    assert_eq!(
        pvalue::get(&debug, "redaction.masked.keys"),
        Some(&s("notes"))
    );
    let silent = redact(
        &Config {
            summary: "silent".into(),
            ..base
        },
        input(),
    );
    assert!(silent.iter().all(|kv| !kv.key.starts_with("redaction.")));
    // Counts accumulate across passes (the summary keys themselves are always allowed).
    let processor = RedactionProcessor::new(
        "r",
        &Config {
            summary: "info".into(),
            ..Default::default()
        },
    )
    .expect("valid");
    let mut attrs = vec![kv("a", s("1"))];
    processor.process_attrs(&mut attrs);
    attrs.push(kv("b", s("2")));
    processor.process_attrs(&mut attrs);
    assert_eq!(attrs, vec![kv("redaction.redacted.count", i(2))]);
}

#[test]
fn spans_events_resources_and_log_bodies() {
    let config = Config {
        allow_all_keys: true,
        blocked_values: strings(&[VISA]),
        summary: "debug".into(),
        ..Default::default()
    };
    let mut processor = RedactionProcessor::new("redaction", &config).expect("valid config");
    let card = || s("4111111111111111");
    let batch = Batch::from_traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("r", card())],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                attributes: vec![kv("a", card())],
                events: vec![Event {
                    attributes: vec![kv("e", card())],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let out = processor.process(batch).expect("processed");
    let Data::Traces(r) = out.data() else {
        panic!("traces")
    };
    assert_eq!(
        pvalue::get(
            &r[0]
                .resource
                .as_ref()
                .map(|r| r.attributes.clone())
                .unwrap_or_default(),
            "r"
        ),
        Some(&s("****"))
    );
    let span = &r[0].scope_spans[0].spans[0];
    assert_eq!(pvalue::get(&span.attributes, "a"), Some(&s("****")));
    assert_eq!(
        pvalue::get(&span.events[0].attributes, "e"),
        Some(&s("****"))
    );

    let body = AnyValue {
        value: Some(Value::KvlistValue(KeyValueList {
            values: vec![
                kv(
                    "user",
                    AnyValue {
                        value: Some(Value::KvlistValue(KeyValueList {
                            values: vec![kv("card", card()), kv("n", i(4111111111111111))],
                        })),
                    },
                ),
                kv("msg", s("hi")),
            ],
        })),
    };
    let batch = Batch::from_logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: vec![
                LogRecord {
                    body: Some(body),
                    ..Default::default()
                },
                LogRecord {
                    body: Some(card()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let out = processor.process(batch).expect("processed");
    let Data::Logs(r) = out.data() else {
        panic!("logs")
    };
    let records = &r[0].scope_logs[0].log_records;
    let Some(Value::KvlistValue(map)) = records[0].body.as_ref().and_then(|b| b.value.clone())
    else {
        panic!("map body")
    };
    let Some(Value::KvlistValue(user)) =
        pvalue::get(&map.values, "user").and_then(|v| v.value.clone())
    else {
        panic!("nested map")
    };
    // Nested scalars are compared as text: the int is masked too (it becomes a string).
    assert_eq!(user.values, vec![kv("card", s("****")), kv("n", s("****"))]);
    assert_eq!(
        pvalue::get(&records[0].attributes, "redaction.body.masked.keys"),
        Some(&s("user.card,user.n"))
    );
    assert_eq!(records[1].body, Some(s("****")));
    assert_eq!(
        pvalue::get(&records[1].attributes, "redaction.body.masked.count"),
        Some(&i(1))
    );
}

#[test]
fn config_errors() {
    let bad = Config {
        blocked_values: strings(&["("]),
        hash_function: "sha256".into(),
        summary: "loud".into(),
        ..Default::default()
    };
    let problems = bad.validate();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("blocked_values[0]"));
    assert!(RedactionProcessor::new("r", &bad).is_err());
}

#[test]
fn hmac_ignored_key_patterns_and_redact_all_types() {
    // Digest: python3 hmac.new(b"k" * 32, b"4111111111111111", hashlib.sha256).hexdigest().
    let hmac = Config {
        allow_all_keys: true,
        blocked_values: strings(&[VISA]),
        hash_function: "hmac-sha256".into(),
        hmac_key: "k".repeat(32),
        ..Default::default()
    };
    assert_eq!(
        redact(&hmac, vec![kv("n", s("4111111111111111"))]),
        vec![kv(
            "n",
            s("68461c4333f0d6ffc13ab17a895ccb61b6a8864e96602c4e91c869cfb9ccc6f1")
        )]
    );
    let short_key = Config {
        hmac_key: "k".repeat(10),
        ..hmac.clone()
    };
    assert!(short_key.validate()[0].contains("at least 32"));
    let no_key = Config {
        hash_function: "hmac-sha512".into(),
        hmac_key: String::new(),
        ..hmac
    };
    assert!(no_key.validate()[0].contains("hmac_key is empty"));

    let config = Config {
        allowed_keys: strings(&["n"]),
        ignored_key_patterns: strings(&["^safe\\."]),
        blocked_values: strings(&["^41"]),
        redact_all_types: true,
        ..Default::default()
    };
    let out = redact(
        &config,
        vec![
            kv("safe.x", s("4111")),
            kv("n", i(4111)),
            kv("other", s("x")),
        ],
    );
    // safe.* ignored (and kept though not allowed); the int is read as "4111" and masked.
    assert_eq!(out, vec![kv("safe.x", s("4111")), kv("n", s("****11"))]);
}

#[test]
fn scope_attributes_are_redacted_too() {
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    let mut processor = RedactionProcessor::new(
        "redaction",
        &Config {
            allowed_keys: strings(&["keep"]),
            ..Default::default()
        },
    )
    .expect("valid");
    let batch = Batch::from_traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                attributes: vec![kv("keep", s("1")), kv("drop", s("2"))],
                ..Default::default()
            }),
            spans: vec![Span::default()],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let out = processor.process(batch).expect("processed");
    let Data::Traces(r) = out.data() else {
        panic!("traces")
    };
    assert_eq!(
        r[0].scope_spans[0]
            .scope
            .as_ref()
            .map(|s| s.attributes.clone()),
        Some(vec![kv("keep", s("1"))])
    );
}

#[test]
fn sha3_masks_with_the_sha3_256_digest() {
    // Digest: python3 hashlib.sha3_256(b"4111111111111111").hexdigest().
    let sha3 = Config {
        allow_all_keys: true,
        blocked_values: strings(&[VISA]),
        hash_function: "SHA3".into(),
        ..Default::default()
    };
    assert_eq!(
        redact(&sha3, vec![kv("n", s("4111111111111111"))]),
        vec![kv(
            "n",
            s("6099154214406cce6105a4688ab66533d3a55d1d7dd393cbccf22b487a22d922")
        )]
    );
}
