use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;

use super::*;

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(v.into())),
    }
}
fn kv(k: &str, v: AnyValue) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(v),
        ..Default::default()
    }
}
fn strict() -> MatchProperties {
    MatchProperties {
        match_type: "strict".into(),
        ..Default::default()
    }
}
fn regexp() -> MatchProperties {
    MatchProperties {
        match_type: "regexp".into(),
        ..Default::default()
    }
}
fn include(p: MatchProperties, signal: Signal) -> Skip {
    MatchConfig {
        include: Some(p),
        exclude: None,
    }
    .compile(signal)
    .expect("valid match config")
}
fn exclude(p: MatchProperties, signal: Signal) -> Skip {
    MatchConfig {
        include: None,
        exclude: Some(p),
    }
    .compile(signal)
    .expect("valid match config")
}
fn resource(service: Option<&str>) -> Resource {
    Resource {
        attributes: service
            .map(|s| vec![kv("service.name", self::s(s))])
            .unwrap_or_default(),
        ..Default::default()
    }
}
fn span(name: &str, kind: i32, attrs: Vec<KeyValue>) -> Span {
    Span {
        name: name.into(),
        kind,
        attributes: attrs,
        ..Default::default()
    }
}
fn attr(key: &str, value: Option<AnyValue>) -> AttributeProperty {
    AttributeProperty {
        key: key.into(),
        value: value.map(ConfigValue),
    }
}

#[test]
fn services_strict_and_regexp_with_missing_service_name() {
    let skip = include(
        MatchProperties {
            services: vec!["svc-a".into()],
            ..strict()
        },
        Signal::Spans,
    );
    let sp = span("x", 0, vec![]);
    assert!(!skip.span(&sp, Some(&resource(Some("svc-a"))), None));
    assert!(skip.span(&sp, Some(&resource(Some("svc-b"))), None));
    assert!(skip.span(&sp, None, None));
    // The Collector compares a missing service.name as "<nil-service-name>".
    let skip = include(
        MatchProperties {
            services: vec!["^<nil".into()],
            ..regexp()
        },
        Signal::Spans,
    );
    assert!(!skip.span(&sp, None, None));
    // Regexp is unanchored: "svc" matches "my-svc-1".
    let skip = include(
        MatchProperties {
            services: vec!["svc".into()],
            ..regexp()
        },
        Signal::Spans,
    );
    assert!(!skip.span(&sp, Some(&resource(Some("my-svc-1"))), None));
}

#[test]
fn span_names_and_kinds() {
    let skip = exclude(
        MatchProperties {
            span_names: vec!["health".into(), "ready".into()],
            ..strict()
        },
        Signal::Spans,
    );
    assert!(skip.span(&span("ready", 0, vec![]), None, None));
    assert!(!skip.span(&span("ready2", 0, vec![]), None, None));
    let skip = include(
        MatchProperties {
            span_kinds: vec!["SPAN_KIND_SERVER".into()],
            ..strict()
        },
        Signal::Spans,
    );
    assert!(!skip.span(&span("x", 2, vec![]), None, None));
    assert!(skip.span(&span("x", 3, vec![]), None, None));
    let bad = MatchConfig {
        include: Some(MatchProperties {
            span_kinds: vec!["server".into()],
            ..strict()
        }),
        exclude: None,
    };
    assert!(bad.validate(Signal::Spans)[0].contains("SPAN_KIND_SERVER"));
    // With regexp any text is accepted and matched against the kind name.
    let skip = include(
        MatchProperties {
            span_kinds: vec!["CLIENT|SERVER".into()],
            ..regexp()
        },
        Signal::Spans,
    );
    assert!(!skip.span(&span("x", 3, vec![]), None, None));
    assert!(skip.span(&span("x", 1, vec![]), None, None));
}

#[test]
fn attributes_strict_need_every_entry_with_same_type() {
    let p = MatchProperties {
        attributes: vec![
            attr("env", Some(s("prod"))),
            attr(
                "code",
                Some(AnyValue {
                    value: Some(Value::IntValue(200)),
                }),
            ),
            attr("present", None),
        ],
        ..strict()
    };
    let skip = include(p, Signal::Spans);
    let all = vec![
        kv("env", s("prod")),
        kv(
            "code",
            AnyValue {
                value: Some(Value::IntValue(200)),
            },
        ),
        kv("present", AnyValue::default()),
    ];
    assert!(!skip.span(&span("x", 0, all.clone()), None, None));
    let mut wrong_type = all.clone();
    wrong_type[1] = kv("code", s("200"));
    assert!(skip.span(&span("x", 0, wrong_type), None, None));
    assert!(
        skip.span(&span("x", 0, all[..2].to_vec()), None, None),
        "missing key"
    );
    assert!(
        skip.span(&span("x", 0, vec![]), None, None),
        "no attributes"
    );
}

#[test]
fn attributes_regexp_reads_scalars_as_text_and_rejects_non_string_patterns() {
    let skip = include(
        MatchProperties {
            attributes: vec![attr("code", Some(s("^2\\d\\d$")))],
            ..regexp()
        },
        Signal::Spans,
    );
    assert!(!skip.span(
        &span(
            "x",
            0,
            vec![kv(
                "code",
                AnyValue {
                    value: Some(Value::IntValue(204))
                }
            )]
        ),
        None,
        None
    ));
    assert!(!skip.span(&span("x", 0, vec![kv("code", s("200"))]), None, None));
    assert!(
        skip.span(
            &span(
                "x",
                0,
                vec![kv(
                    "code",
                    AnyValue {
                        value: Some(Value::BytesValue(b"200".to_vec()))
                    }
                )]
            ),
            None,
            None
        ),
        "bytes never match"
    );
    let skip = include(
        MatchProperties {
            attributes: vec![attr("ratio", Some(s("^0\\.5$")))],
            ..regexp()
        },
        Signal::Spans,
    );
    assert!(!skip.span(
        &span(
            "x",
            0,
            vec![kv(
                "ratio",
                AnyValue {
                    value: Some(Value::DoubleValue(0.5))
                }
            )]
        ),
        None,
        None
    ));
    let bad = MatchConfig {
        include: Some(MatchProperties {
            attributes: vec![attr(
                "code",
                Some(AnyValue {
                    value: Some(Value::IntValue(1)),
                }),
            )],
            ..regexp()
        }),
        exclude: None,
    };
    assert!(bad.validate(Signal::Spans)[0].contains("only supports string values"));
    let bad = MatchConfig {
        include: Some(MatchProperties {
            attributes: vec![attr("", None)],
            ..strict()
        }),
        exclude: None,
    };
    assert!(bad.validate(Signal::Spans)[0].contains("empty \"key\""));
}

#[test]
fn resources_and_libraries() {
    let p = MatchProperties {
        resources: vec![attr("service.name", Some(s("svc")))],
        libraries: vec![LibraryProperty {
            name: "lib".into(),
            version: Some("1.0".into()),
        }],
        ..strict()
    };
    let skip = include(p, Signal::Spans);
    let scope = InstrumentationScope {
        name: "lib".into(),
        version: "1.0".into(),
        ..Default::default()
    };
    let other_version = InstrumentationScope {
        name: "lib".into(),
        version: "2.0".into(),
        ..Default::default()
    };
    let sp = span("x", 0, vec![]);
    assert!(!skip.span(&sp, Some(&resource(Some("svc"))), Some(&scope)));
    assert!(skip.span(&sp, Some(&resource(Some("svc"))), Some(&other_version)));
    assert!(skip.span(&sp, Some(&resource(Some("other"))), Some(&scope)));
    assert!(
        skip.span(&sp, Some(&resource(Some("svc"))), None),
        "no scope: name \"\" does not match"
    );
    // Version absent: any version; version "": only an empty version.
    let any_version = include(
        MatchProperties {
            libraries: vec![LibraryProperty {
                name: "lib".into(),
                version: None,
            }],
            ..strict()
        },
        Signal::Spans,
    );
    assert!(!any_version.span(&sp, None, Some(&other_version)));
    let empty_version = include(
        MatchProperties {
            libraries: vec![LibraryProperty {
                name: "lib".into(),
                version: Some(String::new()),
            }],
            ..strict()
        },
        Signal::Spans,
    );
    assert!(empty_version.span(&sp, None, Some(&other_version)));
}

#[test]
fn include_then_exclude() {
    let config = MatchConfig {
        include: Some(MatchProperties {
            services: vec!["svc".into()],
            ..strict()
        }),
        exclude: Some(MatchProperties {
            span_names: vec!["health".into()],
            ..strict()
        }),
    };
    let skip = config.compile(Signal::Spans).expect("valid");
    let res = resource(Some("svc"));
    assert!(!skip.span(&span("work", 0, vec![]), Some(&res), None));
    assert!(skip.span(&span("health", 0, vec![]), Some(&res), None));
    assert!(skip.span(&span("work", 0, vec![]), Some(&resource(Some("x"))), None));
}

#[test]
fn log_bodies_severity_text_and_number() {
    let record = |body: AnyValue, text: &str, number: i32| LogRecord {
        body: Some(body),
        severity_text: text.into(),
        severity_number: number,
        ..Default::default()
    };
    let skip = include(
        MatchProperties {
            log_bodies: vec!["^42$".into()],
            ..regexp()
        },
        Signal::Logs,
    );
    // Bodies are compared as AsString: an int body 42 reads "42".
    assert!(!skip.log(
        &record(
            AnyValue {
                value: Some(Value::IntValue(42))
            },
            "",
            0
        ),
        None,
        None
    ));
    assert!(skip.log(&record(s("43"), "", 0), None, None));
    let skip = include(
        MatchProperties {
            log_severity_texts: vec!["ERROR".into()],
            ..strict()
        },
        Signal::Logs,
    );
    assert!(!skip.log(&record(s(""), "ERROR", 0), None, None));
    assert!(skip.log(&record(s(""), "error", 0), None, None));
    let sev = |min: i32, undefined: bool| {
        include(
            MatchProperties {
                log_severity_number: Some(SeverityNumberProperties {
                    min: SeverityNumber(min),
                    match_undefined: undefined,
                }),
                ..strict()
            },
            Signal::Logs,
        )
    };
    assert!(!sev(9, false).log(&record(s(""), "", 13), None, None));
    assert!(!sev(9, false).log(&record(s(""), "", 9), None, None));
    assert!(sev(9, false).log(&record(s(""), "", 5), None, None));
    assert!(sev(9, false).log(&record(s(""), "", 0), None, None));
    assert!(!sev(9, true).log(&record(s(""), "", 0), None, None));
    assert_eq!(severity_from_name("warn"), Some(13));
    assert_eq!(severity_from_name("INFO4"), Some(12));
    assert_eq!(severity_from_name("FATAL"), Some(21));
    assert_eq!(severity_from_name("LOUD"), None);
}

#[test]
fn metrics_use_only_metric_names() {
    let metric = |name: &str| Metric {
        name: name.into(),
        ..Default::default()
    };
    let skip = include(
        MatchProperties {
            metric_names: vec!["^http\\.".into()],
            ..regexp()
        },
        Signal::Metrics,
    );
    assert!(!skip.metric(&metric("http.server.duration")));
    assert!(skip.metric(&metric("rpc.duration")));
    // resources alone: accepted, and (as in the Collector) nothing is filtered.
    let skip = include(
        MatchProperties {
            resources: vec![attr("service.name", Some(s("x")))],
            ..strict()
        },
        Signal::Metrics,
    );
    assert!(!skip.metric(&metric("anything")));
}

#[test]
fn validation_per_signal_reports_misplaced_properties_and_match_type() {
    let p = MatchProperties {
        span_names: vec!["x".into()],
        ..strict()
    };
    let config = MatchConfig {
        include: Some(p.clone()),
        exclude: Some(p),
    };
    assert!(config.validate(Signal::Spans).is_empty());
    assert_eq!(config.validate(Signal::Logs).len(), 2);
    assert_eq!(config.validate(Signal::Metrics).len(), 2);
    let empty = MatchConfig {
        include: Some(strict()),
        exclude: None,
    };
    assert_eq!(empty.validate(Signal::Spans).len(), 1);
    let no_type = MatchConfig {
        include: Some(MatchProperties {
            services: vec!["x".into()],
            ..Default::default()
        }),
        exclude: None,
    };
    assert!(no_type.validate(Signal::Spans)[0].contains("strict or regexp"));
    let bad_regex = MatchConfig {
        include: Some(MatchProperties {
            span_names: vec!["(".into()],
            ..regexp()
        }),
        exclude: None,
    };
    assert!(bad_regex.validate(Signal::Spans)[0].contains("not a valid regex"));
}
