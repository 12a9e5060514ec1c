//! Parser, evaluator and function tests on real OTLP structures.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

use super::*;

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.to_string())),
    }
}
fn i(v: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(v)),
    }
}
fn kv(k: &str, v: AnyValue) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(v),
        ..Default::default()
    }
}
fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
}

fn span() -> Span {
    Span {
        name: "GET /users".into(),
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        kind: 2,
        start_time_unix_nano: 1_000,
        end_time_unix_nano: 5_000,
        attributes: vec![
            kv("http.method", s("GET")),
            kv("http.status_code", i(200)),
            kv("user.email", s("a@b.c")),
        ],
        status: Some(Status {
            code: 2,
            message: "boom".into(),
        }),
        events: vec![span::Event {
            name: "exception".into(),
            time_unix_nano: 2_000,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn traces() -> Vec<ResourceSpans> {
    vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", s("api"))],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "lib".into(),
                version: "1.0".into(),
                ..Default::default()
            }),
            spans: vec![
                span(),
                Span {
                    name: "other".into(),
                    ..span()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn logs() -> Vec<ResourceLogs> {
    vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![kv("service.name", s("api"))],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: None,
            log_records: vec![LogRecord {
                body: Some(s("user=alice id=42 password=secret")),
                severity_number: 9,
                severity_text: "INFO".into(),
                attributes: vec![kv("a", s("1"))],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn number(v: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        value: Some(number_data_point::Value::AsDouble(v)),
        time_unix_nano: 10,
        ..Default::default()
    }
}

fn metrics() -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![kv("host", s("h1"))],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: None,
            metrics: vec![
                Metric {
                    name: "requests".into(),
                    unit: "1".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![
                            number(1.0, vec![kv("code", s("200"))]),
                            number(2.0, vec![kv("code", s("500"))]),
                        ],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "latency".into(),
                    unit: "ms".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint {
                            count: 4,
                            sum: Some(100.0),
                            bucket_counts: vec![1, 3],
                            explicit_bounds: vec![50.0],
                            attributes: vec![kv("route", s("/a"))],
                            ..Default::default()
                        }],
                        aggregation_temporality: 2,
                    })),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

/// Runs statements of `context` over the traces and returns them.
fn run_traces(context: ContextKind, statements: &[&str]) -> Result<Vec<ResourceSpans>, EvalError> {
    let mut data = traces();
    let parsed = statements
        .iter()
        .map(|t| parse_statement(t, context).unwrap())
        .collect();
    StatementGroup::new(context, parsed, vec![], ErrorMode::Propagate)
        .run_traces(&mut data, &mut Vec::new())?;
    Ok(data)
}

fn run_logs(statements: &[&str]) -> Vec<ResourceLogs> {
    let mut data = logs();
    let parsed = statements
        .iter()
        .map(|t| parse_statement(t, ContextKind::Log).unwrap())
        .collect();
    StatementGroup::new(ContextKind::Log, parsed, vec![], ErrorMode::Propagate)
        .run_logs(&mut data, &mut Vec::new())
        .unwrap();
    data
}

fn log_attrs(data: &[ResourceLogs]) -> &[KeyValue] {
    &data[0].scope_logs[0].log_records[0].attributes
}

/// Evaluates a converter expression on the first span (via a condition `expr == expected`).
fn eval_on_span(expr: &str) -> Result<Value, EvalError> {
    let statement = parse_statement(
        &format!("set(attributes[\"out\"], {expr})"),
        ContextKind::Span,
    )
    .unwrap();
    let mut data = traces();
    StatementGroup::new(
        ContextKind::Span,
        vec![statement],
        vec![],
        ErrorMode::Propagate,
    )
    .run_traces(&mut data, &mut Vec::new())?;
    Ok(Value::from_any_opt(attr(
        &data[0].scope_spans[0].spans[0].attributes,
        "out",
    )))
}

fn cond(text: &str, context: ContextKind) -> Condition {
    parse_condition(text, context).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn span_matches(text: &str) -> bool {
    let data = traces();
    let rs = &data[0];
    let item = Item::Span {
        resource: rs.resource.as_ref(),
        scope: rs.scope_spans[0].scope.as_ref(),
        span: &rs.scope_spans[0].spans[0],
    };
    cond(text, ContextKind::Span)
        .matches(&item)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn context_names_round_trip() {
    for ctx in [
        ContextKind::Resource,
        ContextKind::Scope,
        ContextKind::Metric,
        ContextKind::DataPoint,
        ContextKind::Span,
        ContextKind::SpanEvent,
        ContextKind::Log,
    ] {
        assert_eq!(ContextKind::parse(ctx.name()), Some(ctx));
    }
    assert_eq!(
        ContextKind::parse("instrumentation_scope"),
        Some(ContextKind::Scope)
    );
    assert_eq!(ContextKind::parse("spans"), None);
}

#[test]
fn parses_every_construct() {
    let ok = [
        r#"set(attributes["a"]["b"][0], "x") where name == "y""#,
        r#"set(attributes["n"], 1 + 2 * 3 - -4 / 2)"#,
        r#"set(attributes["l"], ["a", 1, 2.5, true, nil, 0xff])"#,
        r#"set(attributes["m"], {"k": "v", "n": {"x": 1}})"#,
        r#"set(attributes["s"], Split(name, " ")[0])"#,
        r#"replace_pattern(target = name, regex = "GET (.*)", replacement = "$1")"#,
        r#"set(name, "x") where not (kind == SPAN_KIND_SERVER or kind == SPAN_KIND_CLIENT) and status.code != STATUS_CODE_OK"#,
        r#"set(resource.attributes["a"], scope.name) where span.name != "" and instrumentation_scope.version == "1""#,
        r#"set(attributes["t"], trace_id.string) where IsMatch(name, "^GET")"#,
        r#"set(attributes["x"], (1 + 2) * 3) where (1 + 2) * 3 == 9"#,
        r#"set(cache["k"], "v")"#,
        r#"delete_key(attributes, "x") where true"#,
    ];
    for text in ok {
        parse_statement(text, ContextKind::Span).unwrap_or_else(|e| panic!("{text}: {e}"));
    }
}

#[test]
fn math_precedence_and_boolean_precedence() {
    assert_eq!(eval_on_span("1 + 2 * 3").unwrap(), Value::Int(7));
    assert_eq!(eval_on_span("(1 + 2) * 3").unwrap(), Value::Int(9));
    assert_eq!(eval_on_span("10 - 4 - 3").unwrap(), Value::Int(3));
    assert_eq!(eval_on_span("7 / 2").unwrap(), Value::Int(3));
    assert_eq!(eval_on_span("1.5 * 2.0").unwrap(), Value::Double(3.0));
    assert!(
        eval_on_span("1 / 0")
            .unwrap_err()
            .message
            .contains("divide by 0")
    );
    assert!(eval_on_span("1 + 2.0").unwrap_err().message.contains("int"));
    // and binds tighter than or; not applies to one factor.
    assert!(span_matches("true or false and false"));
    assert!(!span_matches("(true or false) and false"));
    assert!(!span_matches("not true or false"));
    assert!(span_matches("not (name == \"x\") and true"));
}

#[test]
fn parse_errors_carry_offsets() {
    let cases: &[(&str, usize, &str)] = &[
        (r#"set(attributes["x"], )"#, 21, "expected an argument"),
        (r#"set(attributes["x"] "y")"#, 20, "\",\" or \")\""),
        (r#"sett(name, "x")"#, 0, "unknown editor"),
        (r#"set(nam, "x")"#, 4, "not a valid path"),
        (r#"set("x", name)"#, 4, "must be a path"),
        (r#"set(name)"#, 8, "missing \"value\""),
        (r#"set(name, "x", "y")"#, 15, "too many arguments"),
        (r#"set(name, "x") where name"#, 25, "comparison operator"),
        (r#"set(name, "x") where"#, 20, "expected a value"),
        (r#"set(name, Foo("x"))"#, 10, "unknown converter"),
        (r#"Set(name, "x")"#, 0, "converter"),
        (r#"replace_pattern(name, "(", "x")"#, 22, "invalid regex"),
        (r#"set(name, UNKNOWN_ENUM)"#, 10, "unknown enum"),
        (r#"set(metric.name, "x")"#, 4, "cannot be reached"),
        (r#"set(name, "x") extra"#, 15, "unexpected"),
        (r#"set(name, "unterminated)"#, 10, "not closed"),
        (r#"keep_keys(attributes, "a")"#, 22, "list of string"),
        (r#"truncate_all(attributes, -1)"#, 0, "cannot be negative"),
        (r#"set(name, "x", value = "y")"#, 15, "given twice"),
        (r#"set(name, bogus = "y")"#, 10, "no parameter"),
        (r#"set(name.string, "x")"#, 4, "not a valid path"),
        (r#"convert_sum_to_gauge()"#, 0, "metric context"),
        (r#"append(attributes["x"])"#, 0, "at least one"),
        (
            r#"set(name, ExtractPatterns(name, "^(\\w+)"))"#,
            10,
            "named capture",
        ),
        (
            r#"set(name, ParseKeyValue(name, "=", "="))"#,
            10,
            "cannot be equal",
        ),
        (r#"set(name, Time(name, "%Q"))"#, 10, "not supported"),
        (
            r#"set(name, Time(name, "%Y", "Europe/Paris"))"#,
            10,
            "UTC only",
        ),
    ];
    for (text, offset, needle) in cases {
        let e = parse_statement(text, ContextKind::Span).expect_err(text);
        assert!(
            e.message.contains(needle),
            "{text}: {e:?} should mention {needle:?}"
        );
        assert_eq!(e.offset, *offset, "{text}: {e:?}");
    }
    let e = parse_condition("name == ", ContextKind::Span).unwrap_err();
    assert_eq!(e.offset, 8);
    let e = parse_condition("attributes[\"a\"] ==== 1", ContextKind::Span).unwrap_err();
    assert_eq!(e.offset, 18);
    // Offsets count characters, not bytes.
    let e = parse_condition("name == \"é\" and nope == 1", ContextKind::Span).unwrap_err();
    assert_eq!(e.offset, 16);
}

#[test]
fn span_paths_read() {
    assert!(span_matches(r#"name == "GET /users""#));
    assert!(span_matches("kind == SPAN_KIND_SERVER and kind == 2"));
    assert!(span_matches(r#"kind.string == "Server""#));
    assert!(span_matches("status.code == STATUS_CODE_ERROR"));
    assert!(span_matches(r#"status.message == "boom""#));
    assert!(span_matches(
        r#"trace_id.string == "01010101010101010101010101010101""#
    ));
    assert!(span_matches(r#"span_id.string == "0202020202020202""#));
    assert!(span_matches(
        "trace_id == TraceID(0x01010101010101010101010101010101)"
    ));
    assert!(span_matches("span_id == SpanID(0x0202020202020202)"));
    assert!(span_matches(r#"parent_span_id.string == """#));
    assert!(span_matches(
        "end_time_unix_nano - start_time_unix_nano == 4000"
    ));
    assert!(span_matches("UnixNano(start_time) == 1000"));
    assert!(span_matches(
        r#"attributes["http.status_code"] >= 200 and attributes["http.status_code"] < 300"#
    ));
    assert!(span_matches(r#"attributes["missing"] == nil"#));
    assert!(span_matches(r#"attributes["missing"]["deeper"] == nil"#));
    assert!(span_matches(
        r#"resource.attributes["service.name"] == "api""#
    ));
    assert!(span_matches(
        r#"scope.name == "lib" and scope.version == "1.0""#
    ));
    assert!(span_matches(r#"span.name == name"#));
    assert!(span_matches("dropped_attributes_count == 0 and flags == 0"));
    assert!(!span_matches(r#"attributes["http.method"] == 200"#));
    assert!(span_matches(r#"attributes["http.method"] != 200"#));
}

#[test]
fn span_paths_write() {
    let data = run_traces(
        ContextKind::Span,
        &[
            r#"set(name, "renamed")"#,
            "set(kind, SPAN_KIND_CLIENT)",
            "set(status.code, STATUS_CODE_OK)",
            r#"set(status.message, "fine")"#,
            r#"set(trace_id.string, "0af7651916cd43dd8448eb211c80319c")"#,
            r#"set(span_id, SpanID(0x0102030405060708))"#,
            "set(start_time_unix_nano, 7)",
            "set(end_time, TimeFromUnixNano(9))",
            r#"set(trace_state, "a=b")"#,
            r#"set(resource.attributes["env"], "prod")"#,
            r#"set(scope.name, "newlib")"#,
            "set(dropped_attributes_count, 3)",
        ],
    )
    .unwrap();
    let sp = &data[0].scope_spans[0].spans[0];
    assert_eq!(sp.name, "renamed");
    assert_eq!(sp.kind, 3);
    assert_eq!(
        sp.status.as_ref().map(|s| (s.code, s.message.as_str())),
        Some((1, "fine"))
    );
    assert_eq!(
        value::hex_lower(&sp.trace_id),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(sp.span_id, vec![1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!((sp.start_time_unix_nano, sp.end_time_unix_nano), (7, 9));
    assert_eq!(sp.trace_state, "a=b");
    assert_eq!(sp.dropped_attributes_count, 3);
    assert_eq!(
        attr(&data[0].resource.as_ref().unwrap().attributes, "env"),
        Some(&s("prod"))
    );
    assert_eq!(
        data[0].scope_spans[0].scope.as_ref().unwrap().name,
        "newlib"
    );
}

#[test]
fn wrong_types_are_eval_errors() {
    for text in [
        "set(name, 1)",
        r#"set(kind, "server")"#,
        r#"set(trace_id, 0x01)"#,
        r#"set(trace_id.string, "zz")"#,
        r#"set(start_time, 5)"#,
        r#"set(attributes, "x")"#,
        r#"set(attributes["http.method"]["x"], "y")"#,
    ] {
        let e = run_traces(ContextKind::Span, &[text]).expect_err(text);
        assert!(
            e.message.starts_with("failed to execute statement \"set("),
            "{e}"
        );
    }
}

#[test]
fn set_with_nil_is_a_no_op_and_nested_keys_create_maps() {
    let data = run_traces(
        ContextKind::Span,
        &[
            r#"set(name, attributes["missing"])"#,
            r#"set(attributes["a"]["b"]["c"], "deep")"#,
            r#"set(attributes["list"][2], "third")"#,
            r#"set(attributes["a"]["b"]["d"], 1)"#,
        ],
    )
    .unwrap();
    let sp = &data[0].scope_spans[0].spans[0];
    assert_eq!(sp.name, "GET /users");
    let a = Value::from_any_opt(attr(&sp.attributes, "a"));
    assert_eq!(a.to_string_like().unwrap(), r#"{"b":{"c":"deep","d":1}}"#);
    let list = Value::from_any_opt(attr(&sp.attributes, "list"));
    assert_eq!(list.to_string_like().unwrap(), r#"[null,null,"third"]"#);
    let e = run_traces(
        ContextKind::Span,
        &[
            r#"set(attributes["l"], [1]) "#,
            r#"set(attributes["l"][5], 1)"#,
        ],
    )
    .unwrap_err();
    assert!(e.message.contains("out of bounds"), "{e}");
}

#[test]
fn where_clause_and_cache() {
    let data = run_traces(
        ContextKind::Span,
        &[
            r#"set(cache["n"], Concat([name, "!"], ""))"#,
            r#"set(attributes["copied"], cache["n"]) where name == "other""#,
        ],
    )
    .unwrap();
    let spans = &data[0].scope_spans[0].spans;
    assert_eq!(attr(&spans[0].attributes, "copied"), None);
    assert_eq!(attr(&spans[1].attributes, "copied"), Some(&s("other!")));
}

#[test]
fn map_editors() {
    let attrs = |statements: &[&str]| -> Vec<String> {
        let data = run_traces(ContextKind::Span, statements).unwrap();
        data[0].scope_spans[0].spans[0]
            .attributes
            .iter()
            .map(|a| a.key.clone())
            .collect()
    };
    assert_eq!(
        attrs(&[r#"delete_key(attributes, "user.email")"#]),
        ["http.method", "http.status_code"]
    );
    assert_eq!(
        attrs(&[r#"delete_matching_keys(attributes, "^http\\.")"#]),
        ["user.email"]
    );
    assert_eq!(
        attrs(&[r#"keep_keys(attributes, ["user.email", "nope"])"#]),
        ["user.email"]
    );
    assert_eq!(
        attrs(&[r#"keep_matching_keys(attributes, "status")"#]),
        ["http.status_code"]
    );
    assert_eq!(
        attrs(&[r#"limit(attributes, 1, ["user.email"])"#]),
        ["user.email"]
    );
    assert_eq!(
        attrs(&[r#"limit(attributes, 2, [])"#]),
        ["http.method", "http.status_code"]
    );
    assert_eq!(
        attrs(&[r#"replace_all_patterns(attributes, "key", "^http\\.", "h.")"#]),
        ["h.method", "h.status_code", "user.email"]
    );
    assert_eq!(
        attrs(&[
            r#"flatten(attributes)"#,
            r#"set(attributes["m"], {"a": {"b": 1}, "l": [1, {"c": 2}]})"#,
            r#"flatten(attributes)"#
        ]),
        [
            "http.method",
            "http.status_code",
            "user.email",
            "m.a.b",
            "m.l.0",
            "m.l.1.c"
        ]
    );
    assert_eq!(
        attrs(&[
            r#"set(attributes["m"], {"a": {"b": 1}})"#,
            r#"flatten(attributes, "p", 1)"#
        ])
        .last()
        .unwrap(),
        "p.m.a"
    );
    // A target that is not a map (nil included) is an error.
    assert!(run_traces(ContextKind::Span, &[r#"delete_key(name, "x")"#]).is_err());
    assert!(
        run_traces(
            ContextKind::Span,
            &[r#"delete_key(attributes["missing"], "x")"#]
        )
        .is_err()
    );
    // flatten's conflict option keeps both values.
    let data = run_traces(
        ContextKind::Span,
        &[
            r#"set(attributes["a"], {"b": 1})"#,
            r#"set(attributes["a.b"], 2)"#,
            r#"flatten(attributes, conflict = true)"#,
        ],
    )
    .unwrap();
    let keys: Vec<&str> = data[0].scope_spans[0].spans[0]
        .attributes
        .iter()
        .map(|a| a.key.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "http.method",
            "http.status_code",
            "user.email",
            "a.b",
            "a.b.0"
        ]
    );
    // Lists inside lists get their indexes appended without a dot, as in the Collector.
    let data = run_traces(
        ContextKind::Span,
        &[
            r#"set(attributes["l"], [1, [2, 3]])"#,
            r#"keep_keys(attributes, ["l"])"#,
            r#"flatten(attributes, "q")"#,
        ],
    )
    .unwrap();
    let keys: Vec<&str> = data[0].scope_spans[0].spans[0]
        .attributes
        .iter()
        .map(|a| a.key.as_str())
        .collect();
    assert_eq!(keys, ["q.l.0", "q.l.10", "q.l.11"]);
}

#[test]
fn replace_editors() {
    let data = run_traces(
        ContextKind::Span,
        &[
            r#"replace_pattern(name, "^(GET|POST) /(\\w+)$", "$1 /{$2}")"#,
            r#"replace_all_patterns(attributes, "value", "@.*$", "@redacted")"#,
            r#"replace_match(attributes["http.method"], "G*", "get")"#,
            r#"set(attributes["h"], "secret")"#,
            r#"replace_pattern(attributes["h"], "secret", "$0", SHA256, "sha:%s")"#,
        ],
    )
    .unwrap();
    let sp = &data[0].scope_spans[0].spans[0];
    assert_eq!(sp.name, "GET /{users}");
    assert_eq!(attr(&sp.attributes, "user.email"), Some(&s("a@redacted")));
    assert_eq!(attr(&sp.attributes, "http.method"), Some(&s("get")));
    assert_eq!(
        attr(&sp.attributes, "h"),
        Some(&s(
            "sha:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        ))
    );
    let data = run_traces(
        ContextKind::Span,
        &[
            r#"replace_all_matches(attributes, "*@*", "hidden")"#,
            r#"replace_match(name, "POST*", "x")"#,
        ],
    )
    .unwrap();
    let sp = &data[0].scope_spans[0].spans[0];
    assert_eq!(attr(&sp.attributes, "user.email"), Some(&s("hidden")));
    assert_eq!(sp.name, "GET /users");
}

#[test]
fn log_context_and_body() {
    let data = run_logs(&[
        r#"replace_pattern(body, "password=\\S+", "password=***")"#,
        r#"set(attributes["body"], body.string)"#,
        r#"set(severity_text, "WARN") where severity_number < SEVERITY_NUMBER_WARN"#,
        r#"set(severity_number, SEVERITY_NUMBER_WARN) where severity_text == "WARN""#,
        r#"merge_maps(attributes, ParseJSON("{\"j\": 1, \"a\": \"x\"}"), "insert")"#,
        r#"set(attributes["len"], Len(body))"#,
        r#"set(attributes["svc"], resource.attributes["service.name"])"#,
        r#"truncate_all(attributes, 3)"#,
        r#"append(attributes["tags"], "t1")"#,
        r#"append(attributes["tags"], values = ["t2", "t3"])"#,
    ]);
    let rec = &data[0].scope_logs[0].log_records[0];
    assert_eq!(rec.body, Some(s("user=alice id=42 password=***")));
    assert_eq!(
        (rec.severity_text.as_str(), rec.severity_number),
        ("WARN", 13)
    );
    let attrs = log_attrs(&data);
    assert_eq!(attr(attrs, "body"), Some(&s("use")));
    assert_eq!(
        attr(attrs, "a"),
        Some(&s("1")),
        "insert keeps existing keys"
    );
    assert_eq!(
        attr(attrs, "j"),
        Some(&AnyValue {
            value: Some(any_value::Value::DoubleValue(1.0))
        })
    );
    assert_eq!(attr(attrs, "len"), Some(&i(29)));
    assert_eq!(attr(attrs, "svc"), Some(&s("api")));
    assert_eq!(
        Value::from_any_opt(attr(attrs, "tags"))
            .to_string_like()
            .unwrap(),
        r#"["t1","t2","t3"]"#
    );
    let data = run_logs(&[r#"merge_maps(attributes, {"a": "2", "z": "3"}, "update")"#]);
    assert_eq!(attr(log_attrs(&data), "a"), Some(&s("2")));
    assert_eq!(attr(log_attrs(&data), "z"), None);
    assert!(run_logs_err(r#"set(body["k"], "v")"#).contains("does not support indexing"));
}

fn run_logs_err(statement: &str) -> String {
    let mut data = logs();
    let parsed = vec![parse_statement(statement, ContextKind::Log).unwrap()];
    StatementGroup::new(ContextKind::Log, parsed, vec![], ErrorMode::Propagate)
        .run_logs(&mut data, &mut Vec::new())
        .unwrap_err()
        .message
}

#[test]
fn converters() {
    let cases: &[(&str, Value)] = &[
        (
            r#"Concat(["a", 1, 2.5, true, nil], "-")"#,
            Value::Str("a-1-2.5-true-<nil>".into()),
        ),
        (
            r#"ConvertCase("HelloWorld", "snake")"#,
            Value::Str("hello_world".into()),
        ),
        (
            r#"ConvertCase("hello_world", "camel")"#,
            Value::Str("HelloWorld".into()),
        ),
        (r#"ConvertCase("Hi", "upper")"#, Value::Str("HI".into())),
        (r#"ToLowerCase("HI")"#, Value::Str("hi".into())),
        (r#"Len([1, 2, 3])"#, Value::Int(3)),
        (r#"Len("héllo")"#, Value::Int(6)),
        (r#"Int("42")"#, Value::Int(42)),
        (r#"Int(1.9)"#, Value::Int(1)),
        (r#"Int(true)"#, Value::Int(1)),
        (r#"Double("1.5")"#, Value::Double(1.5)),
        (r#"Double(3)"#, Value::Double(3.0)),
        (r#"String(12)"#, Value::Str("12".into())),
        (r#"String(0xabcd)"#, Value::Str("abcd".into())),
        (r#"Bool("true")"#, Value::Bool(true)),
        (r#"Split("a,b,c", ",")[1]"#, Value::Str("b".into())),
        (r#"Substring("abcdef", 1, 3)"#, Value::Str("bcd".into())),
        (
            r#"SHA1("abc")"#,
            Value::Str("a9993e364706816aba3e25717850c26c9cd0d89d".into()),
        ),
        (
            r#"SHA256("abc")"#,
            Value::Str("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into()),
        ),
        (
            r#"MD5("abc")"#,
            Value::Str("900150983cd24fb0d6963f7d28e17f72".into()),
        ),
        (r#"FNV("abc")"#, Value::Int(0xe71fa2190541574bu64 as i64)),
        (
            r#"ParseJSON("{\"a\": {\"b\": [1, \"x\"]}}")["a"]["b"][1]"#,
            Value::Str("x".into()),
        ),
        (r#"IsString(name)"#, Value::Bool(true)),
        (
            r#"IsInt(attributes["http.status_code"])"#,
            Value::Bool(true),
        ),
        (r#"IsDouble(1.0)"#, Value::Bool(true)),
        (r#"IsBool(false)"#, Value::Bool(true)),
        (r#"IsMap(attributes)"#, Value::Bool(true)),
        (r#"IsList(attributes)"#, Value::Bool(false)),
        (r#"Hex(255)"#, Value::Str("00000000000000ff".into())),
        (r#"Hex("hi")"#, Value::Str("6869".into())),
        (r#"UnixMilli(TimeFromUnixNano(5000000))"#, Value::Int(5)),
        (
            r#"UnixSeconds(TimeFromUnixNano(5000000000))"#,
            Value::Int(5),
        ),
        (
            r#"UnixNano(TimeFromUnixNano(1) + Duration("1ms"))"#,
            Value::Int(1_000_001),
        ),
        (r#"HasPrefix(name, "GET")"#, Value::Bool(true)),
        (r#"HasSuffix(name, "GET")"#, Value::Bool(false)),
        (
            r#"IsMatch(attributes["http.status_code"], "^2")"#,
            Value::Bool(true),
        ),
        (
            r#"IsMatch(attributes["missing"], ".*")"#,
            Value::Bool(false),
        ),
        (
            r#"ExtractPatterns(name, "^(?P<method>\\w+) /(?P<path>\\w+)")["path"]"#,
            Value::Str("users".into()),
        ),
        (
            r#"Len(ExtractPatterns(name, "^(?P<nope>POST)"))"#,
            Value::Int(0),
        ),
        (
            r#"ParseKeyValue("a=1 b=\"x y\"  c=z")["b"]"#,
            Value::Str("x y".into()),
        ),
        (
            r#"Len(ParseKeyValue("a:1|b:2|a:3", ":", "|"))"#,
            Value::Int(2),
        ),
        (
            r#"ParseKeyValue("a:1|b:2|a:3", ":", "|")["a"]"#,
            Value::Str("3".into()),
        ),
        (r#"IsRootSpan()"#, Value::Bool(true)),
        (r#"Milliseconds(Duration("1m30s"))"#, Value::Int(90_000)),
        (r#"Seconds(Duration("1500ms"))"#, Value::Double(1.5)),
        (r#"Hours(Duration("90m"))"#, Value::Double(1.5)),
        (
            r#"Year(TimeFromUnixNano(1700000000123000000))"#,
            Value::Int(2023),
        ),
        (
            r#"Month(TimeFromUnixNano(1700000000123000000))"#,
            Value::Int(11),
        ),
        (
            r#"Day(TimeFromUnixNano(1700000000123000000))"#,
            Value::Int(14),
        ),
        (
            r#"Weekday(TimeFromUnixNano(1700000000123000000))"#,
            Value::Int(2),
        ),
        (
            r#"Hour(TimeFromUnixNano(1700000000123000000))"#,
            Value::Int(22),
        ),
        (
            r#"Minute(TimeFromUnixNano(1700000000123000000))"#,
            Value::Int(13),
        ),
        (
            r#"Second(TimeFromUnixNano(1700000000123000000))"#,
            Value::Int(20),
        ),
        (
            r#"Nanosecond(TimeFromUnixNano(1700000000123000000))"#,
            Value::Int(123_000_000),
        ),
        (
            r#"UnixSeconds(TruncateTime(TimeFromUnixNano(1700000000123000000), Duration("1h")))"#,
            Value::Int(1_699_999_200),
        ),
        (r#"Index("hello", "ll")"#, Value::Int(2)),
        (r#"Index(["a", "b"], "c")"#, Value::Int(-1)),
        (
            r#"Index(Keys(attributes), "http.status_code")"#,
            Value::Int(1),
        ),
        (r#"Values(attributes)[0]"#, Value::Str("GET".into())),
        (
            r#"UnixSeconds(Time("2023-11-14T22:13:20Z", "%Y-%m-%dT%H:%M:%S%z"))"#,
            Value::Int(1_700_000_000),
        ),
        (
            r#"FormatTime(TimeFromUnixNano(1700000000000000000), "%Y/%m/%d %H")"#,
            Value::Str("2023/11/14 22".into()),
        ),
    ];
    for (expr, expected) in cases {
        let got = eval_on_span(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(&got, expected, "{expr}");
    }
    // Conversions that fail give nil (so the set is a no-op).
    assert_eq!(eval_on_span(r#"Int("1.5")"#).unwrap(), Value::Nil);
    assert_eq!(eval_on_span(r#"Double("x")"#).unwrap(), Value::Nil);
    assert!(UnixNanoNow() > 1_600_000_000_000_000_000);
    for bad in [
        r#"Time("yesterday", "%Y")"#,
        r#"ParseKeyValue("a=\"open")"#,
        r#"ParseKeyValue("novalue")"#,
        r#"Substring("abc", 2, 5)"#,
        r#"Split(attributes["missing"], ",")"#,
        r#"ParseJSON("1")"#,
        r#"Len(1)"#,
    ] {
        assert!(eval_on_span(bad).is_err(), "{bad}");
    }
}

#[allow(non_snake_case)]
fn UnixNanoNow() -> i64 {
    match eval_on_span("UnixNano(Now())").unwrap() {
        Value::Int(i) => i,
        other => panic!("{other:?}"),
    }
}

#[test]
fn spanevent_context_reads_its_span() {
    let data = run_traces(
        ContextKind::SpanEvent,
        &[
            r#"set(attributes["span"], span.name)"#,
            r#"set(name, "renamed") where time_unix_nano == 2000"#,
        ],
    )
    .unwrap();
    let ev = &data[0].scope_spans[0].spans[0].events[0];
    assert_eq!(ev.name, "renamed");
    assert_eq!(attr(&ev.attributes, "span"), Some(&s("GET /users")));
}

#[test]
fn resource_and_scope_contexts() {
    let data = run_traces(
        ContextKind::Resource,
        &[
            r#"set(attributes["r"], "1")"#,
            r#"delete_key(attributes, "service.name")"#,
        ],
    )
    .unwrap();
    assert_eq!(
        data[0].resource.as_ref().unwrap().attributes,
        vec![kv("r", s("1"))]
    );
    let data = run_traces(
        ContextKind::Scope,
        &[r#"set(version, Concat([name, version], "@"))"#],
    )
    .unwrap();
    assert_eq!(
        data[0].scope_spans[0].scope.as_ref().unwrap().version,
        "lib@1.0"
    );
}

fn run_metrics(
    context: ContextKind,
    statements: &[&str],
) -> Result<Vec<ResourceMetrics>, EvalError> {
    let mut data = metrics();
    let parsed = statements
        .iter()
        .map(|t| parse_statement(t, context).unwrap_or_else(|e| panic!("{t}: {e}")))
        .collect();
    StatementGroup::new(context, parsed, vec![], ErrorMode::Propagate)
        .run_metrics(&mut data, &mut Vec::new())?;
    Ok(data)
}

#[test]
fn metric_and_datapoint_paths() {
    let data = run_metrics(
        ContextKind::DataPoint,
        &[
            r#"set(attributes["m"], metric.name)"#,
            r#"set(value_double, value_double * 10.0) where metric.type == METRIC_DATA_TYPE_SUM and attributes["code"] == "500""#,
            r#"set(attributes["agg"], metric.aggregation_temporality) where metric.is_monotonic == true"#,
            r#"set(attributes["count"], count) where metric.type == METRIC_DATA_TYPE_HISTOGRAM"#,
            r#"set(explicit_bounds, [0.05]) where metric.name == "latency""#,
            r#"set(sum, sum / 1000.0) where metric.name == "latency""#,
            r#"set(time, TimeFromUnixNano(77))"#,
        ],
    )
    .unwrap();
    let metrics = &data[0].scope_metrics[0].metrics;
    let Some(metric::Data::Sum(sum)) = &metrics[0].data else {
        panic!()
    };
    assert_eq!(
        sum.data_points[0].value,
        Some(number_data_point::Value::AsDouble(1.0))
    );
    assert_eq!(
        sum.data_points[1].value,
        Some(number_data_point::Value::AsDouble(20.0))
    );
    assert_eq!(
        attr(&sum.data_points[0].attributes, "m"),
        Some(&s("requests"))
    );
    assert_eq!(attr(&sum.data_points[0].attributes, "agg"), Some(&i(2)));
    assert_eq!(sum.data_points[0].time_unix_nano, 77);
    let Some(metric::Data::Histogram(h)) = &metrics[1].data else {
        panic!()
    };
    assert_eq!(attr(&h.data_points[0].attributes, "count"), Some(&i(4)));
    assert_eq!(h.data_points[0].explicit_bounds, vec![0.05]);
    assert_eq!(h.data_points[0].sum, Some(0.1));
    assert_eq!(attr(&h.data_points[0].attributes, "agg"), None);
}

#[test]
fn metric_functions() {
    let data = run_metrics(
        ContextKind::Metric,
        &[
            r#"convert_sum_to_gauge() where name == "requests""#,
            r#"extract_sum_metric(true) where name == "latency""#,
            r#"extract_count_metric(false, "_n") where name == "latency""#,
            r#"scale_metric(0.001, "s") where name == "latency""#,
            r#"set(description, "d") where type == METRIC_DATA_TYPE_GAUGE"#,
        ],
    )
    .unwrap();
    let metrics = &data[0].scope_metrics[0].metrics;
    assert_eq!(
        metrics.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["requests", "latency", "latency_sum", "latency_n"]
    );
    assert!(matches!(metrics[0].data, Some(metric::Data::Gauge(_))));
    assert_eq!(metrics[0].description, "d");
    let Some(metric::Data::Histogram(h)) = &metrics[1].data else {
        panic!()
    };
    assert_eq!(
        (
            metrics[1].unit.as_str(),
            h.data_points[0].sum,
            h.data_points[0].explicit_bounds[0]
        ),
        ("s", Some(0.1), 0.05)
    );
    let Some(metric::Data::Sum(sum)) = &metrics[2].data else {
        panic!()
    };
    assert_eq!((sum.is_monotonic, sum.aggregation_temporality), (true, 2));
    assert_eq!(
        sum.data_points[0].value,
        Some(number_data_point::Value::AsDouble(100.0))
    );
    assert_eq!(
        attr(&sum.data_points[0].attributes, "route"),
        Some(&s("/a"))
    );
    let Some(metric::Data::Sum(count)) = &metrics[3].data else {
        panic!()
    };
    assert_eq!(
        count.data_points[0].value,
        Some(number_data_point::Value::AsInt(4))
    );

    let data = run_metrics(
        ContextKind::Metric,
        &[
            r#"convert_sum_to_gauge()"#,
            r#"convert_gauge_to_sum("delta", false) where name == "requests""#,
        ],
    )
    .unwrap();
    let Some(metric::Data::Sum(sum)) = &data[0].scope_metrics[0].metrics[0].data else {
        panic!()
    };
    assert_eq!(
        (
            sum.aggregation_temporality,
            sum.is_monotonic,
            sum.data_points.len()
        ),
        (1, false, 2)
    );
    assert!(run_metrics(ContextKind::Metric, &["set(type, 1)"]).is_err());
    let gauge = Metric {
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![number(1.0, vec![])],
        })),
        ..Default::default()
    };
    let item = Item::Metric {
        resource: None,
        scope: None,
        metric: &gauge,
    };
    assert!(
        cond("type == METRIC_DATA_TYPE_GAUGE", ContextKind::Metric)
            .matches(&item)
            .unwrap()
    );
}

#[test]
fn error_modes() {
    let statements = || {
        vec![
            parse_statement("set(name, 1)", ContextKind::Span).unwrap(),
            parse_statement(r#"set(attributes["after"], "yes")"#, ContextKind::Span).unwrap(),
        ]
    };
    for (mode, expect_err, expect_logged) in [
        (ErrorMode::Propagate, true, 0),
        (ErrorMode::Ignore, false, 2),
        (ErrorMode::Silent, false, 0),
    ] {
        let mut data = traces();
        let mut ignored = Vec::new();
        let result = StatementGroup::new(ContextKind::Span, statements(), vec![], mode)
            .run_traces(&mut data, &mut ignored);
        assert_eq!(result.is_err(), expect_err, "{mode:?}");
        assert_eq!(ignored.len(), expect_logged, "{mode:?}");
        if !expect_err {
            // The statement after the failing one still ran.
            assert!(attr(&data[0].scope_spans[0].spans[1].attributes, "after").is_some());
        }
    }
}

#[test]
fn group_conditions_are_ored() {
    let statements =
        vec![parse_statement(r#"set(attributes["hit"], true)"#, ContextKind::Span).unwrap()];
    let conditions = vec![
        cond(r#"name == "other""#, ContextKind::Span),
        cond(r#"name == "nope""#, ContextKind::Span),
    ];
    let mut data = traces();
    StatementGroup::new(
        ContextKind::Span,
        statements,
        conditions,
        ErrorMode::Propagate,
    )
    .run_traces(&mut data, &mut Vec::new())
    .unwrap();
    let spans = &data[0].scope_spans[0].spans;
    assert!(attr(&spans[0].attributes, "hit").is_none());
    assert!(attr(&spans[1].attributes, "hit").is_some());
}

#[test]
fn conditions_on_items_of_every_context() {
    let t = traces();
    let rs = &t[0];
    let sp = &rs.scope_spans[0].spans[0];
    let resource = rs.resource.as_ref();
    let scope = rs.scope_spans[0].scope.as_ref();
    assert!(
        cond(
            r#"attributes["service.name"] == "api""#,
            ContextKind::Resource
        )
        .matches(&Item::Resource { resource })
        .unwrap()
    );
    assert!(
        cond(r#"name == "lib""#, ContextKind::Scope)
            .matches(&Item::Scope { resource, scope })
            .unwrap()
    );
    assert!(
        cond(
            r#"name == "exception" and span.name == "GET /users""#,
            ContextKind::SpanEvent
        )
        .matches(&Item::SpanEvent {
            resource,
            scope,
            span: sp,
            event: &sp.events[0]
        })
        .unwrap()
    );
    let l = logs();
    let log = &l[0].scope_logs[0].log_records[0];
    let c = cond(
        r#"IsMatch(body, "alice") and severity_number >= SEVERITY_NUMBER_INFO and scope.name == """#,
        ContextKind::Log,
    );
    assert!(
        c.matches(&Item::Log {
            resource: None,
            scope: None,
            log
        })
        .unwrap()
    );
    let m = metrics();
    let metric = &m[0].scope_metrics[0].metrics[0];
    let Some(metric::Data::Sum(sum)) = &metric.data else {
        panic!()
    };
    let item = Item::DataPoint {
        resource: None,
        scope: None,
        metric,
        point: DataPointRef::Number(&sum.data_points[1]),
    };
    assert!(cond(r#"value_double > 1.5 and metric.name == "requests" and metric.type == METRIC_DATA_TYPE_SUM"#, ContextKind::DataPoint).matches(&item).unwrap());
    // A condition cannot change data, and bad types in a condition are errors.
    assert!(
        cond(r#"IsMatch(name, "x") == 1"#, ContextKind::Span)
            .matches(&Item::Span {
                resource,
                scope,
                span: sp
            })
            .is_ok()
    );
    let e = cond(r#"Int(attributes)"#, ContextKind::Span)
        .matches(&Item::Span {
            resource,
            scope,
            span: sp,
        })
        .unwrap_err();
    assert!(e.message.contains("Int"), "{e}");
}

#[test]
fn context_inference() {
    assert_eq!(
        infer_context(&[r#"set(span.name, "x") where resource.attributes["a"] == "b""#]).unwrap(),
        ContextKind::Span
    );
    assert_eq!(
        infer_context(&[r#"set(resource.attributes["a"], "b")"#]).unwrap(),
        ContextKind::Resource
    );
    assert_eq!(
        infer_context(&[r#"span.name == "x""#, r#"spanevent.name == "y""#]).unwrap(),
        ContextKind::SpanEvent
    );
    assert_eq!(
        infer_context(&[
            r#"set(metric.name, "x")"#,
            r#"set(datapoint.attributes["a"], 1)"#
        ])
        .unwrap(),
        ContextKind::DataPoint
    );
    assert_eq!(
        infer_context(&[r#"log.body == "x" and resource.attributes["a"] == nil"#]).unwrap(),
        ContextKind::Log
    );
    assert_eq!(
        infer_context(&[
            r#"set(scope.name, "x")"#,
            r#"set(resource.attributes["a"], "b")"#
        ])
        .unwrap(),
        ContextKind::Log
    );
    assert_eq!(
        infer_context(&[r#"convert_sum_to_gauge() where metric.name == "x""#]).unwrap(),
        ContextKind::Metric
    );
    assert_eq!(
        infer_context(&[r#"convert_sum_to_gauge() where resource.attributes["a"] == "x""#])
            .unwrap(),
        ContextKind::Metric
    );
    assert!(infer_context(&[r#"set(name, "x")"#]).is_err());
    let e = infer_context(&[r#"set(span.name, )"#]).unwrap_err();
    assert_eq!(e.offset, 15);
}

#[test]
fn statements_and_conditions_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug>() {}
    check::<Statement>();
    check::<Condition>();
    check::<EvalError>();
    check::<StatementGroup>();
}

#[test]
fn every_function_is_documented() {
    let doc = include_str!("../../docs/ottl.md");
    for name in funcs::ALL_NAMES {
        assert!(
            doc.contains(&format!("`{name}")),
            "docs/ottl.md does not document {name}"
        );
    }
}

#[test]
fn set_semconv_span_name_derives_low_cardinality_names() {
    let statement = parse_statement(
        r#"set_semconv_span_name("1.43.0", "original_span_name")"#,
        ContextKind::Span,
    )
    .unwrap();
    let span_with = |kind: i32, attrs: Vec<KeyValue>| Span {
        name: "/users/42?x=1".into(),
        kind,
        attributes: attrs,
        ..Default::default()
    };
    let mut data = vec![ResourceSpans {
        resource: None,
        scope_spans: vec![ScopeSpans {
            scope: None,
            spans: vec![
                span_with(
                    2,
                    vec![
                        kv("http.request.method", s("GET")),
                        kv("http.route", s("/users/{id}")),
                    ],
                ),
                span_with(3, vec![kv("http.request.method", s("_OTHER"))]),
                span_with(
                    3,
                    vec![
                        kv("db.system.name", s("postgresql")),
                        kv("db.operation.name", s("SELECT")),
                        kv("db.namespace", s("shop")),
                        kv("db.collection.name", s("users")),
                    ],
                ),
                span_with(
                    2,
                    vec![
                        kv("rpc.system", s("grpc")),
                        kv("rpc.service", s("Cart")),
                        kv("rpc.method", s("Add")),
                    ],
                ),
                span_with(
                    5,
                    vec![
                        kv("messaging.system", s("kafka")),
                        kv("messaging.operation.name", s("process")),
                        kv("messaging.destination.name", s("orders")),
                    ],
                ),
                span_with(1, vec![kv("http.request.method", s("GET"))]),
            ],
            ..Default::default()
        }],
        ..Default::default()
    }];
    StatementGroup::new(
        ContextKind::Span,
        vec![statement],
        vec![],
        ErrorMode::Propagate,
    )
    .run_traces(&mut data, &mut Vec::new())
    .unwrap();
    let spans = &data[0].scope_spans[0].spans;
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "GET /users/{id}",
            "HTTP",
            "SELECT shop.users",
            "Cart/Add",
            "process orders",
            "/users/42?x=1"
        ]
    );
    assert_eq!(
        attr(&spans[0].attributes, "original_span_name"),
        Some(&s("/users/42?x=1"))
    );
    assert_eq!(
        attr(&spans[5].attributes, "original_span_name"),
        None,
        "unchanged names are not copied"
    );
    assert!(
        parse_statement(r#"set_semconv_span_name("1.0.0")"#, ContextKind::Span)
            .unwrap_err()
            .message
            .contains("unsupported semconv version")
    );
    assert!(
        parse_statement(r#"set_semconv_span_name("1.43.0")"#, ContextKind::Log)
            .unwrap_err()
            .message
            .contains("only in the span context")
    );
    assert_eq!(
        infer_context(&[
            r#"set_semconv_span_name("1.43.0") where resource.attributes["a"] == nil"#
        ])
        .unwrap(),
        ContextKind::Span
    );
}

#[test]
fn datapoint_attribute_tests_in_the_metric_context() {
    let m = metrics();
    let metric = &m[0].scope_metrics[0].metrics[0];
    let item = Item::Metric {
        resource: None,
        scope: None,
        metric,
    };
    assert!(
        cond(r#"HasAttrKeyOnDatapoint("code")"#, ContextKind::Metric)
            .matches(&item)
            .unwrap()
    );
    assert!(
        cond(r#"HasAttrOnDatapoint("code", "500")"#, ContextKind::Metric)
            .matches(&item)
            .unwrap()
    );
    assert!(
        !cond(r#"HasAttrOnDatapoint("code", "404")"#, ContextKind::Metric)
            .matches(&item)
            .unwrap()
    );
    assert!(
        !cond(r#"HasAttrKeyOnDatapoint("route")"#, ContextKind::Metric)
            .matches(&item)
            .unwrap()
    );
    let e =
        parse_condition(r#"HasAttrKeyOnDatapoint("code")"#, ContextKind::DataPoint).unwrap_err();
    assert!(e.message.contains("only in the metric context"), "{e:?}");
}

#[test]
fn absent_resource_and_scope_read_as_empty_in_statements() {
    let mut data = logs();
    data[0].resource = None;
    let statements = vec![
        parse_statement(
            r#"set(attributes["r"], IsMap(resource.attributes))"#,
            ContextKind::Log,
        )
        .unwrap(),
        parse_statement(r#"set(attributes["s"], scope.name)"#, ContextKind::Log).unwrap(),
    ];
    StatementGroup::new(ContextKind::Log, statements, vec![], ErrorMode::Propagate)
        .run_logs(&mut data, &mut Vec::new())
        .unwrap();
    let attrs = log_attrs(&data);
    assert_eq!(Value::from_any_opt(attr(attrs, "r")), Value::Bool(true));
    assert_eq!(attr(attrs, "s"), Some(&s("")));
}

#[test]
fn hostile_nesting_is_an_error_not_a_crash() {
    let deep = format!("set(name, {}1{})", "(".repeat(5000), ")".repeat(5000));
    assert!(
        parse_statement(&deep, ContextKind::Span)
            .unwrap_err()
            .message
            .contains("nested deeper")
    );
    let deep = format!("{}true", "not ".repeat(5000));
    assert!(parse_condition(&deep, ContextKind::Span).is_err());
    let deep = format!(
        "set(name, {}\"x\"{})",
        "Concat([".repeat(3000),
        "], \"\")".repeat(3000)
    );
    assert!(parse_statement(&deep, ContextKind::Span).is_err());
    // Odd bytes and truncated input never panic.
    for text in [
        "set(",
        "set(name, \"",
        "\u{0}",
        "set(attributes[",
        "x ==",
        "set(name, 0x",
        "[[[[",
        "{",
        "set(a.b.c.d.e, 1)",
    ] {
        let _ = parse_statement(text, ContextKind::Span);
        let _ = parse_condition(text, ContextKind::Log);
        let _ = infer_context(&[text]);
    }
}

#[test]
fn inference_needs_a_context_that_reaches_every_named_one() {
    // resource has priority over scope, but cannot read scope paths.
    assert_eq!(
        infer_context(&[r#"scope.name == "x" and resource.attributes["a"] == nil"#]).unwrap(),
        ContextKind::Log
    );
    let metrics = [
        ContextKind::Resource,
        ContextKind::Scope,
        ContextKind::Metric,
        ContextKind::DataPoint,
    ];
    assert_eq!(
        infer_context_in(
            &[r#"scope.name == "x" and resource.attributes["a"] == nil"#],
            &metrics
        )
        .unwrap(),
        ContextKind::DataPoint
    );
    assert_eq!(
        infer_context_in(&[r#"scope.name == "x""#], &metrics).unwrap(),
        ContextKind::Scope
    );
    assert!(infer_context_in(&[r#"span.name == "x""#], &metrics).is_err());
}

#[test]
fn copy_metric_and_set_of_missing_keys() {
    let data = run_metrics(
        ContextKind::Metric,
        &[r#"copy_metric(name = "requests.copy", description = "copied") where name == "requests""#],
    )
    .unwrap();
    let metrics = &data[0].scope_metrics[0].metrics;
    assert_eq!(
        metrics.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["requests", "latency", "requests.copy"]
    );
    assert_eq!(
        (metrics[2].description.as_str(), metrics[2].unit.as_str()),
        ("copied", "1")
    );
    assert_eq!(metrics[2].data, metrics[0].data);
    // A missing key read by a path creates the target key with the empty value; a
    // converter that gives nil changes nothing.
    let data = run_traces(
        ContextKind::Span,
        &[
            r#"set(attributes["copy"], attributes["missing"])"#,
            r#"set(attributes["int"], Int("1.5"))"#,
        ],
    )
    .unwrap();
    let attrs = &data[0].scope_spans[0].spans[0].attributes;
    assert_eq!(attr(attrs, "copy"), Some(&AnyValue::default()));
    assert!(attrs.iter().all(|a| a.key != "int"));
}

/// The editors that change maps and strings where they are (nested maps, the body,
/// values that are not strings or maps) give the same results and errors as reading,
/// editing and writing back.
#[test]
fn in_place_editors_match_read_edit_write() {
    let data = run_traces(
        ContextKind::Span,
        &[
            r#"set(attributes["m"], {"a": "value-1", "b": "x", "n": {"c": "value-22"}})"#,
            r#"delete_key(attributes["m"], "b")"#,
            r#"replace_pattern(attributes["m"]["a"], "^value-(\\d+)$", "v$1")"#,
            r#"replace_pattern(attributes["m"]["n"]["c"], "^value-(\\d+)$", "w${1}x")"#,
            r#"replace_pattern(attributes["http.status_code"], "2", "3")"#,
            r#"replace_pattern(attributes["missing"], "a", "b")"#,
            r#"keep_keys(attributes["m"]["n"], ["c"])"#,
            r#"delete_matching_keys(attributes, "^user[.]")"#,
            r#"set(attributes["hit"], true) where attributes["m"]["a"] == "v1" and name == "GET /users""#,
            r#"set(attributes["ordered"], true) where attributes["http.method"] < "POST""#,
            r#"set(attributes["int_match"], IsMatch(attributes["http.status_code"], "^20"))"#,
        ],
    )
    .unwrap();
    let sp = &data[0].scope_spans[0].spans[0];
    let m = Value::from_any_opt(attr(&sp.attributes, "m"));
    assert_eq!(
        m.to_string_like().unwrap(),
        r#"{"a":"v1","n":{"c":"w22x"}}"#
    );
    assert_eq!(attr(&sp.attributes, "http.status_code"), Some(&i(200)));
    assert_eq!(attr(&sp.attributes, "missing"), None);
    assert_eq!(attr(&sp.attributes, "user.email"), None);
    let yes = AnyValue {
        value: Some(any_value::Value::BoolValue(true)),
    };
    assert_eq!(attr(&sp.attributes, "hit"), Some(&yes));
    assert_eq!(attr(&sp.attributes, "ordered"), Some(&yes));
    assert_eq!(attr(&sp.attributes, "int_match"), Some(&yes));
    // A target that is not a map is the same error as before, nested or not.
    let err = run_traces(
        ContextKind::Span,
        &[r#"delete_key(attributes["http.method"], "x")"#],
    )
    .unwrap_err();
    assert!(
        err.message.contains("expected a map but got string"),
        "{err}"
    );
    let err = run_traces(
        ContextKind::Span,
        &[r#"delete_key(attributes["nope"], "x")"#],
    )
    .unwrap_err();
    assert!(err.message.contains("expected a map but got nil"), "{err}");
    // A replacement that is not a literal takes the general path.
    let data = run_traces(
        ContextKind::Span,
        &[r#"replace_pattern(attributes["http.method"], "GET", Concat(["g", "et"], ""))"#],
    )
    .unwrap();
    let sp = &data[0].scope_spans[0].spans[0];
    assert_eq!(attr(&sp.attributes, "http.method"), Some(&s("get")));
}

/// Templates prepared at parse time expand as the regex crate expands the same text.
#[test]
fn prepared_templates_expand_as_the_regex_crate() {
    let re = regex::Regex::new(r"(?P<word>[a-z]+)-(\d+)(x)?").unwrap();
    let text = "abc-12 de-3x -9 q-";
    for template in [
        "v$1",
        "$2$1",
        "${2}a",
        "$2a",
        "$word!",
        "${word}",
        "$$1",
        "$",
        "a$",
        "$-",
        "${}",
        "${nope}",
        "$nope",
        "$9",
        "$3",
        "${2",
        "plain",
        "",
        "$$",
        "$0.$1.$2.$3",
    ] {
        let prepared = crate::funcs::Template::parse(template, &re);
        assert_eq!(
            re.replace_all(text, &prepared),
            re.replace_all(text, template),
            "template {template:?}"
        );
    }
}
