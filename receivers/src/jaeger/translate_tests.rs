use super::*;
use model::value_type::*;

fn kv(key: &str, v_type: i32) -> model::KeyValue {
    model::KeyValue {
        key: key.into(),
        v_type,
        ..Default::default()
    }
}

fn string_tag(key: &str, value: &str) -> model::KeyValue {
    model::KeyValue {
        v_str: value.into(),
        ..kv(key, STRING)
    }
}

fn trace_id(n: u8) -> Vec<u8> {
    let mut id = vec![0; 16];
    id[15] = n;
    id
}

fn span_id(n: u8) -> Vec<u8> {
    let mut id = vec![0; 8];
    id[7] = n;
    id
}

fn span(tags: Vec<model::KeyValue>) -> model::Span {
    model::Span {
        trace_id: trace_id(1),
        span_id: span_id(2),
        operation_name: "op".into(),
        start_time: Some(model::Timestamp {
            seconds: 10,
            nanos: 5,
        }),
        duration: Some(model::Duration {
            seconds: 1,
            nanos: 10,
        }),
        tags,
        ..Default::default()
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    get(attrs, key)
}

fn one_span(batch: model::Batch, flavor: Flavor) -> (ResourceSpans, Span) {
    let mut out = batch_to_resource_spans(batch, flavor).unwrap();
    assert_eq!(out.len(), 1);
    let resource_spans = out.remove(0);
    let span = resource_spans.scope_spans[0].spans[0].clone();
    (resource_spans, span)
}

#[test]
fn process_becomes_the_resource_with_renamed_keys() {
    let process = model::Process {
        service_name: "checkout".into(),
        tags: vec![
            string_tag("hostname", "node-1"),
            string_tag("jaeger.version", "Go-2.30"),
            model::KeyValue {
                v_int64: 7,
                ..kv("pid", INT64)
            },
        ],
    };
    let batch = model::Batch {
        process: Some(process),
        spans: vec![span(vec![])],
    };
    for flavor in [Flavor::Proto, Flavor::Thrift] {
        let (resource_spans, _) = one_span(batch.clone(), flavor);
        let attrs = &resource_spans.resource.as_ref().unwrap().attributes;
        let keys: Vec<&str> = attrs.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "service.name",
                "pid",
                "host.name",
                "opencensus.exporterversion"
            ],
            "{flavor:?}"
        );
        assert_eq!(
            attr(attrs, "service.name"),
            Some(&Value::StringValue("checkout".into()))
        );
        assert_eq!(
            attr(attrs, "host.name"),
            Some(&Value::StringValue("node-1".into()))
        );
        assert_eq!(
            attr(attrs, "opencensus.exporterversion"),
            Some(&Value::StringValue("Jaeger-Go-2.30".into()))
        );
        assert_eq!(attr(attrs, "pid"), Some(&Value::IntValue(7)));
    }
    // host.name already present: hostname stays as it is.
    let process = model::Process {
        service_name: "s".into(),
        tags: vec![string_tag("host.name", "a"), string_tag("hostname", "b")],
    };
    let (resource_spans, _) = one_span(
        model::Batch {
            process: Some(process),
            spans: vec![span(vec![])],
        },
        Flavor::Proto,
    );
    let attrs = &resource_spans.resource.unwrap().attributes;
    assert_eq!(
        attr(attrs, "hostname"),
        Some(&Value::StringValue("b".into()))
    );
    // The Collector exporter's placeholder service name gives an empty resource (gRPC).
    let process = model::Process {
        service_name: NO_SERVICE_NAME.into(),
        tags: vec![string_tag("x", "y")],
    };
    let (resource_spans, _) = one_span(
        model::Batch {
            process: Some(process),
            spans: vec![span(vec![])],
        },
        Flavor::Proto,
    );
    assert!(resource_spans.resource.unwrap().attributes.is_empty());
}

#[test]
fn span_fields_ids_times_and_typed_tags() {
    let tags = vec![
        string_tag("s", "v"),
        model::KeyValue {
            v_bool: true,
            ..kv("b", BOOL)
        },
        model::KeyValue {
            v_int64: -3,
            ..kv("i", INT64)
        },
        model::KeyValue {
            v_float64: 0.5,
            ..kv("d", FLOAT64)
        },
        model::KeyValue {
            v_binary: vec![1, 2],
            ..kv("bin", BINARY)
        },
        kv("odd", 9),
        string_tag("s", "second wins"),
    ];
    let (_, out) = one_span(
        model::Batch {
            process: None,
            spans: vec![span(tags)],
        },
        Flavor::Proto,
    );
    assert_eq!(out.trace_id, trace_id(1));
    assert_eq!(out.span_id, span_id(2));
    assert_eq!(out.name, "op");
    assert_eq!(out.start_time_unix_nano, 10_000_000_005);
    assert_eq!(out.end_time_unix_nano, 11_000_000_015);
    assert!(out.parent_span_id.is_empty());
    let values: Vec<(&str, Value)> = out
        .attributes
        .iter()
        .map(|a| (a.key.as_str(), a.value.clone().unwrap().value.unwrap()))
        .collect();
    assert_eq!(
        values,
        [
            ("s", Value::StringValue("second wins".into())),
            ("b", Value::BoolValue(true)),
            ("i", Value::IntValue(-3)),
            ("d", Value::DoubleValue(0.5)),
            ("bin", Value::BytesValue(vec![1, 2])),
            (
                "odd",
                Value::StringValue("<Unknown Jaeger TagType \"9\">".into())
            ),
        ]
    );
    assert_eq!(out.kind, SpanKind::Unspecified as i32);
    assert!(out.status.is_none());
}

#[test]
fn kind_and_status_tags_become_fields() {
    let status = |tags: Vec<model::KeyValue>| {
        let (_, out) = one_span(
            model::Batch {
                process: None,
                spans: vec![span(tags)],
            },
            Flavor::Thrift,
        );
        (
            out.kind,
            out.status.map(|s| (s.code, s.message)),
            out.attributes
                .iter()
                .map(|a| a.key.clone())
                .collect::<Vec<_>>(),
        )
    };
    let error = model::KeyValue {
        v_bool: true,
        ..kv("error", BOOL)
    };
    let (kind, st, keys) = status(vec![
        string_tag("span.kind", "client"),
        error.clone(),
        string_tag("otel.status_description", "boom"),
    ]);
    assert_eq!(kind, SpanKind::Client as i32);
    assert_eq!(st, Some((StatusCode::Error as i32, "boom".into())));
    assert!(keys.is_empty(), "{keys:?}");
    // The error tag wins over otel.status_code, which is removed anyway.
    let (_, st, keys) = status(vec![
        error.clone(),
        string_tag("otel.status_code", "OK"),
        string_tag("http.status_message", "bad gateway"),
    ]);
    assert_eq!(st, Some((StatusCode::Error as i32, "bad gateway".into())));
    assert_eq!(keys, ["http.status_message"]);
    let (_, st, _) = status(vec![string_tag("otel.status_code", "ok")]);
    assert_eq!(st, Some((StatusCode::Ok as i32, String::new())));
    // error=false is only an attribute.
    let (_, st, keys) = status(vec![model::KeyValue {
        v_bool: false,
        ..kv("error", BOOL)
    }]);
    assert_eq!((st, keys), (None, vec!["error".to_string()]));
    // HTTP status fallback: 404 is an error for a client, unset for a server; 500 always.
    let http = |kind: &str, code: i64| {
        status(vec![
            string_tag("span.kind", kind),
            model::KeyValue {
                v_int64: code,
                ..kv("http.status_code", INT64)
            },
        ])
        .1
    };
    assert_eq!(
        http("client", 404),
        Some((StatusCode::Error as i32, String::new()))
    );
    assert_eq!(http("server", 404), None);
    assert_eq!(
        http("server", 503),
        Some((StatusCode::Error as i32, String::new()))
    );
    assert_eq!(http("server", 200), None);
    assert_eq!(
        status(vec![string_tag("http.status_code", "500")])
            .1
            .map(|s| s.0),
        Some(StatusCode::Error as i32)
    );
    for (text, kind) in [
        ("server", SpanKind::Server),
        ("producer", SpanKind::Producer),
        ("consumer", SpanKind::Consumer),
        ("internal", SpanKind::Internal),
        ("other", SpanKind::Unspecified),
    ] {
        assert_eq!(
            status(vec![string_tag("span.kind", text)]).0,
            kind as i32,
            "{text}"
        );
    }
}

#[test]
fn references_give_the_parent_and_links() {
    let reference = |trace: u8, span: u8, ref_type: i32| model::SpanRef {
        trace_id: trace_id(trace),
        span_id: span_id(span),
        ref_type,
    };
    let with_refs = |refs: Vec<model::SpanRef>| {
        let mut s = span(vec![]);
        s.references = refs;
        let (_, out) = one_span(
            model::Batch {
                process: None,
                spans: vec![s],
            },
            Flavor::Proto,
        );
        let links: Vec<(Vec<u8>, Value)> = out
            .links
            .iter()
            .map(|l| {
                (
                    l.span_id.clone(),
                    l.attributes[0].value.clone().unwrap().value.unwrap(),
                )
            })
            .collect();
        (out.parent_span_id, links)
    };
    // CHILD_OF of the same trace is the parent and no link.
    assert_eq!(
        with_refs(vec![reference(1, 7, model::ref_type::CHILD_OF)]),
        (span_id(7), vec![])
    );
    // CHILD_OF of another trace is a link; FOLLOWS_FROM of the same trace is then the parent
    // but stays a link too (only CHILD_OF references to the parent are dropped).
    let (parent, links) = with_refs(vec![
        reference(9, 7, model::ref_type::CHILD_OF),
        reference(1, 8, model::ref_type::FOLLOWS_FROM),
    ]);
    assert_eq!(parent, span_id(8));
    assert_eq!(
        links,
        [
            (span_id(7), Value::StringValue("child_of".into())),
            (span_id(8), Value::StringValue("follows_from".into()))
        ]
    );
    // The first CHILD_OF wins over an earlier FOLLOWS_FROM.
    let (parent, links) = with_refs(vec![
        reference(1, 3, model::ref_type::FOLLOWS_FROM),
        reference(1, 4, model::ref_type::CHILD_OF),
    ]);
    assert_eq!(parent, span_id(4));
    assert_eq!(links.len(), 1);
}

#[test]
fn logs_become_events_named_by_the_event_field() {
    let mut s = span(vec![]);
    s.logs = vec![
        model::Log {
            timestamp: Some(model::Timestamp {
                seconds: 12,
                nanos: 0,
            }),
            fields: vec![string_tag("event", "retry"), string_tag("attempt", "2")],
        },
        model::Log {
            timestamp: Some(model::Timestamp {
                seconds: 13,
                nanos: 1,
            }),
            fields: vec![],
        },
    ];
    let (_, out) = one_span(
        model::Batch {
            process: None,
            spans: vec![s],
        },
        Flavor::Thrift,
    );
    assert_eq!(out.events.len(), 2);
    assert_eq!(out.events[0].name, "retry");
    assert_eq!(out.events[0].time_unix_nano, 12_000_000_000);
    assert_eq!(out.events[0].attributes.len(), 1);
    assert_eq!(out.events[0].attributes[0].key, "attempt");
    assert_eq!(
        (out.events[1].name.as_str(), out.events[1].time_unix_nano),
        ("", 13_000_000_001)
    );
}

#[test]
fn grpc_reads_scope_and_trace_state_tags_thrift_keeps_them() {
    let tags = || {
        vec![
            string_tag("otel.scope.name", "io.lib"),
            string_tag("otel.scope.version", "1.2"),
            string_tag("w3c.tracestate", "a=b"),
        ]
    };
    let batch = model::Batch {
        process: None,
        spans: vec![
            span(tags()),
            span(vec![string_tag("otel.scope.name", "other")]),
            // The older key is not read by v0.161 (checked against the Collector).
            span(vec![string_tag("otel.library.name", "old")]),
        ],
    };
    let out = batch_to_resource_spans(batch.clone(), Flavor::Proto).unwrap();
    let scopes: Vec<(String, String, usize)> = out[0]
        .scope_spans
        .iter()
        .map(|s| {
            let scope = s.scope.clone().unwrap();
            (scope.name, scope.version, s.spans.len())
        })
        .collect();
    assert_eq!(
        scopes,
        [
            ("io.lib".into(), "1.2".into(), 1),
            ("other".into(), String::new(), 1),
            (String::new(), String::new(), 1)
        ]
    );
    assert_eq!(
        out[0].scope_spans[2].spans[0].attributes[0].key,
        "otel.library.name"
    );
    let first = &out[0].scope_spans[0].spans[0];
    assert_eq!(first.trace_state, "a=b");
    assert!(first.attributes.is_empty());
    let out = batch_to_resource_spans(batch, Flavor::Thrift).unwrap();
    assert_eq!(out[0].scope_spans.len(), 1);
    assert_eq!(out[0].scope_spans[0].spans.len(), 3);
    assert_eq!(out[0].scope_spans[0].spans[0].attributes.len(), 3);
    assert_eq!(out[0].scope_spans[0].spans[0].trace_state, "");
}

#[test]
fn grpc_regroups_spans_by_their_own_process() {
    let own = model::Process {
        service_name: "other".into(),
        tags: vec![],
    };
    let mut with_process = span(vec![]);
    with_process.process = Some(own.clone());
    let mut with_same = span(vec![]);
    with_same.process = Some(own);
    let batch = model::Batch {
        process: Some(model::Process {
            service_name: "main".into(),
            tags: vec![],
        }),
        spans: vec![with_process, span(vec![]), with_same],
    };
    let out = batch_to_resource_spans(batch, Flavor::Proto).unwrap();
    let groups: Vec<(Value, usize)> = out
        .iter()
        .map(|r| {
            (
                attr(&r.resource.as_ref().unwrap().attributes, "service.name")
                    .cloned()
                    .unwrap(),
                r.scope_spans.iter().map(|s| s.spans.len()).sum(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            (Value::StringValue("main".into()), 1),
            (Value::StringValue("other".into()), 2)
        ]
    );
}

#[test]
fn blank_spans_are_skipped_and_bad_ids_refused() {
    let thrift_blank = model::Span {
        trace_id: vec![0; 16],
        span_id: vec![0; 8],
        start_time: Some(model::Timestamp::default()),
        duration: Some(model::Duration::default()),
        ..Default::default()
    };
    let batch = model::Batch {
        process: Some(model::Process {
            service_name: "s".into(),
            tags: vec![],
        }),
        spans: vec![model::Span::default(), thrift_blank, span(vec![])],
    };
    let out = batch_to_resource_spans(batch, Flavor::Thrift).unwrap();
    assert_eq!(out[0].scope_spans[0].spans.len(), 1);
    assert!(
        batch_to_resource_spans(model::Batch::default(), Flavor::Proto)
            .unwrap()
            .is_empty()
    );
    let mut bad = span(vec![]);
    bad.trace_id = vec![1, 2, 3];
    let error = batch_to_resource_spans(
        model::Batch {
            process: None,
            spans: vec![bad],
        },
        Flavor::Proto,
    )
    .unwrap_err();
    assert_eq!(error.0, "trace_id has 3 bytes, want 16");
    // Times before 1970 (negative) clamp to 0 rather than wrapping.
    let mut early = span(vec![]);
    early.start_time = Some(model::Timestamp {
        seconds: -5,
        nanos: 0,
    });
    early.duration = Some(model::Duration {
        seconds: 1,
        nanos: 0,
    });
    let (_, out) = one_span(
        model::Batch {
            process: None,
            spans: vec![early],
        },
        Flavor::Proto,
    );
    assert_eq!((out.start_time_unix_nano, out.end_time_unix_nano), (0, 0));
}

#[test]
fn only_the_sampled_flag_becomes_a_span_flag() {
    // Checked against the Collector: Jaeger flags 0x107 (sampled, debug, firehose, 0x100)
    // give OTLP flags 1.
    for (jaeger, otlp) in [(0x107, 1), (1, 1), (2, 0), (0, 0)] {
        let mut s = span(vec![]);
        s.flags = jaeger;
        let (_, out) = one_span(
            model::Batch {
                process: None,
                spans: vec![s],
            },
            Flavor::Thrift,
        );
        assert_eq!(out.flags, otlp, "{jaeger:#x}");
    }
}
