//! The cases of Prometheus' `relabel_test.go` (domain-specs §4.2), validation messages,
//! Go-syntax translation, and a never-panics property test.

use super::*;

fn labels(pairs: &[(&str, &str)]) -> LabelSet {
    LabelSet::from_pairs(pairs.iter().copied())
}

#[derive(Default)]
struct R<'a> {
    src: &'a [&'a str],
    sep: Option<&'a str>,
    regex: Option<&'a str>,
    modulus: Option<u64>,
    target: Option<&'a str>,
    repl: Option<&'a str>,
    action: Option<&'a str>,
}

impl R<'_> {
    fn config(&self) -> RelabelConfig {
        RelabelConfig {
            source_labels: if self.src.is_empty() {
                None
            } else {
                Some(self.src.iter().map(|s| s.to_string()).collect())
            },
            separator: self.sep.map(str::to_string),
            regex: self.regex.map(str::to_string),
            modulus: self.modulus,
            target_label: self.target.map(str::to_string),
            replacement: self.repl.map(str::to_string),
            action: self.action.map(str::to_string),
        }
    }
}

/// Runs `rules` (Prometheus 3 / UTF-8 names) and returns the result, `None` if dropped.
fn run(input: &[(&str, &str)], rules: &[R]) -> Option<LabelSet> {
    let configs: Vec<RelabelConfig> = rules.iter().map(R::config).collect();
    let rules = compile(&configs, NameValidation::Utf8)
        .unwrap_or_else(|e| panic!("rules must compile: {e:?}"));
    let mut set = labels(input);
    process(&mut set, &rules).then_some(set)
}

const ABC: &[(&str, &str)] = &[("a", "foo"), ("b", "bar"), ("c", "baz")];

#[test]
fn case_01_replace_with_group_twice() {
    let out = run(
        ABC,
        &[R {
            src: &["a"],
            regex: Some("f(.*)"),
            target: Some("d"),
            repl: Some("ch${1}-ch${1}"),
            ..R::default()
        }],
    );
    assert_eq!(
        out,
        Some(labels(&[
            ("a", "foo"),
            ("b", "bar"),
            ("c", "baz"),
            ("d", "choo-choo")
        ]))
    );
}

#[test]
fn case_02_rules_see_previous_output() {
    let out = run(
        ABC,
        &[
            R {
                src: &["a", "b"],
                regex: Some("f(.*);(.*)r"),
                target: Some("a"),
                repl: Some("b${1}${2}m"),
                ..R::default()
            },
            R {
                src: &["c", "a"],
                regex: Some("(b).*b(.*)ba(.*)"),
                target: Some("d"),
                repl: Some("$1$2$2$3"),
                ..R::default()
            },
        ],
    );
    assert_eq!(
        out,
        Some(labels(&[
            ("a", "boobam"),
            ("b", "bar"),
            ("c", "baz"),
            ("d", "boooom")
        ]))
    );
}

#[test]
fn cases_03_to_09_keep_drop_and_anchoring() {
    let foo = &[("a", "foo")];
    assert_eq!(
        run(
            foo,
            &[
                R {
                    src: &["a"],
                    regex: Some(".*o.*"),
                    action: Some("drop"),
                    ..R::default()
                },
                R {
                    src: &["a"],
                    target: Some("x"),
                    ..R::default()
                }
            ]
        ),
        None
    );
    assert_eq!(
        run(
            &[("a", "abc")],
            &[R {
                src: &["a"],
                regex: Some(".*(b).*"),
                target: Some("d"),
                ..R::default()
            }]
        ),
        Some(labels(&[("a", "abc"), ("d", "b")]))
    );
    assert_eq!(
        run(
            foo,
            &[R {
                src: &["a"],
                regex: Some("no-match"),
                action: Some("drop"),
                ..R::default()
            }]
        ),
        Some(labels(foo))
    );
    assert_eq!(
        run(
            foo,
            &[R {
                src: &["a"],
                regex: Some("f|o"),
                action: Some("drop"),
                ..R::default()
            }]
        ),
        Some(labels(foo)),
        "anchored"
    );
    assert_eq!(
        run(
            foo,
            &[R {
                src: &["a"],
                regex: Some("no-match"),
                action: Some("keep"),
                ..R::default()
            }]
        ),
        None
    );
    assert_eq!(
        run(
            foo,
            &[R {
                src: &["a"],
                regex: Some("f.*"),
                action: Some("KEEP"),
                ..R::default()
            }]
        ),
        Some(labels(foo)),
        "action is case-insensitive"
    );
    assert_eq!(
        run(
            &[("a", "boo")],
            &[R {
                src: &["a"],
                regex: Some("f"),
                target: Some("b"),
                repl: Some("bar"),
                ..R::default()
            }]
        ),
        Some(labels(&[("a", "boo")]))
    );
}

#[test]
fn case_10_empty_result_deletes_expanded_target() {
    let out = run(
        &[("a", "foo"), ("f", "baz")],
        &[R {
            src: &["a"],
            regex: Some("(f).*"),
            target: Some("$1"),
            repl: Some("$2"),
            ..R::default()
        }],
    );
    assert_eq!(out, Some(labels(&[("a", "foo")])));
}

#[test]
fn cases_11_12_hashmod_is_md5_tail_big_endian() {
    let out = run(
        ABC,
        &[R {
            src: &["c"],
            modulus: Some(1000),
            target: Some("d"),
            action: Some("hashmod"),
            ..R::default()
        }],
    );
    assert_eq!(out.as_ref().map(|s| s.get("d")), Some("976"));
    let out = run(
        &[("a", "foo\nbar")],
        &[R {
            src: &["a"],
            modulus: Some(1000),
            target: Some("b"),
            action: Some("hashmod"),
            ..R::default()
        }],
    );
    assert_eq!(out.as_ref().map(|s| s.get("b")), Some("734"));
}

#[test]
fn cases_13_14_labelmap_keeps_originals() {
    let input = &[("a", "foo"), ("b1", "bar"), ("b2", "baz")];
    let out = run(
        input,
        &[R {
            regex: Some("(b.*)"),
            repl: Some("bar_${1}"),
            action: Some("labelmap"),
            ..R::default()
        }],
    );
    assert_eq!(
        out,
        Some(labels(&[
            ("a", "foo"),
            ("b1", "bar"),
            ("b2", "baz"),
            ("bar_b1", "bar"),
            ("bar_b2", "baz")
        ]))
    );
    let meta = &[
        ("a", "foo"),
        ("__meta_my_bar", "aaa"),
        ("__meta_my_baz", "bbb"),
        ("__meta_other", "ccc"),
    ];
    let out = run(
        meta,
        &[R {
            regex: Some("__meta_(my.*)"),
            repl: Some("${1}"),
            action: Some("labelmap"),
            ..R::default()
        }],
    )
    .unwrap_or_default();
    assert_eq!(out.get("my_bar"), "aaa");
    assert_eq!(out.get("my_baz"), "bbb");
    assert_eq!(out.get("other"), "");
    assert_eq!(out.len(), 6);
}

#[test]
fn cases_15_to_17_templated_targets() {
    let input = &[("a", "some-name-value")];
    let out = run(
        input,
        &[R {
            src: &["a"],
            regex: Some("some-([^-]+)-([^,]+)"),
            target: Some("${1}"),
            repl: Some("${2}"),
            ..R::default()
        }],
    );
    assert_eq!(
        out,
        Some(labels(&[("a", "some-name-value"), ("name", "value")]))
    );
    let out = run(
        input,
        &[R {
            src: &["a"],
            regex: Some("some-([^-]+)-([^,]+)"),
            target: Some("${1}"),
            repl: Some("${3}"),
            ..R::default()
        }],
    );
    assert_eq!(out, Some(labels(input)));
    let input = &[("a", "some-name-0")];
    let out = run(
        input,
        &[R {
            src: &["a"],
            regex: Some("some-([^-]+)-([^,]+)"),
            target: Some("${3}"),
            repl: Some("${1}"),
            ..R::default()
        }],
    );
    assert_eq!(
        out,
        Some(labels(input)),
        "a target expanding to \"\" is invalid: rule skipped"
    );
}

#[test]
fn case_18_meta_tags() {
    let input = &[("__meta_sd_tags", "path:/secret,job:some-job,label:foo=bar")];
    let out = run(
        input,
        &[
            R {
                src: &["__meta_sd_tags"],
                regex: Some("(?:.+,|^)path:(/[^,]+).*"),
                target: Some("__metrics_path__"),
                ..R::default()
            },
            R {
                src: &["__meta_sd_tags"],
                regex: Some("(?:.+,|^)job:([^,]+).*"),
                target: Some("job"),
                ..R::default()
            },
            R {
                src: &["__meta_sd_tags"],
                regex: Some("(?:.+,|^)label:([^=]+)=([^,]+).*"),
                target: Some("${1}"),
                repl: Some("${2}"),
                ..R::default()
            },
        ],
    )
    .unwrap_or_default();
    assert_eq!(
        (out.get("__metrics_path__"), out.get("job"), out.get("foo")),
        ("/secret", "some-job", "bar")
    );
}

#[test]
fn case_19_labeldrop_then_replace_then_keep() {
    let input = &[
        ("__meta_kubernetes_pod_container_port_name", "foo"),
        ("__meta_kubernetes_pod_annotation_XXX_metrics_port", "9091"),
    ];
    let out = run(
        input,
        &[
            R {
                regex: Some("__meta_kubernetes_pod_container_port_name"),
                action: Some("labeldrop"),
                ..R::default()
            },
            R {
                src: &["__meta_kubernetes_pod_annotation_XXX_metrics_port"],
                regex: Some("(.+)"),
                repl: Some("metrics"),
                target: Some("__meta_kubernetes_pod_container_port_name"),
                ..R::default()
            },
            R {
                src: &["__meta_kubernetes_pod_container_port_name"],
                regex: Some("^metrics$"),
                action: Some("keep"),
                ..R::default()
            },
        ],
    );
    assert_eq!(
        out.map(|s| s
            .get("__meta_kubernetes_pod_container_port_name")
            .to_string()),
        Some("metrics".to_string())
    );
}

#[test]
fn cases_20_21_labelkeep_labeldrop() {
    let input = &[("a", "foo"), ("b1", "bar"), ("b2", "baz")];
    assert_eq!(
        run(
            input,
            &[R {
                regex: Some("(b.*)"),
                action: Some("labelkeep"),
                ..R::default()
            }]
        ),
        Some(labels(&[("b1", "bar"), ("b2", "baz")]))
    );
    assert_eq!(
        run(
            input,
            &[R {
                regex: Some("(b.*)"),
                action: Some("labeldrop"),
                ..R::default()
            }]
        ),
        Some(labels(&[("a", "foo")]))
    );
}

#[test]
fn case_22_case_mapping_is_gos() {
    let out = run(
        &[("foo", "bAr123Foo")],
        &[
            R {
                src: &["foo"],
                target: Some("foo_uppercase"),
                action: Some("uppercase"),
                ..R::default()
            },
            R {
                src: &["foo"],
                target: Some("foo_lowercase"),
                action: Some("lowercase"),
                ..R::default()
            },
        ],
    )
    .unwrap_or_default();
    assert_eq!(
        (out.get("foo_uppercase"), out.get("foo_lowercase")),
        ("BAR123FOO", "bar123foo")
    );
    assert_eq!(
        go_uppercase("straße"),
        "STRAßE",
        "Go's simple mapping keeps ß"
    );
    assert_eq!(go_lowercase("İΣ"), "iσ");
}

#[test]
fn cases_23_24_keepequal_dropequal() {
    let input = &[
        ("__tmp_port", "1234"),
        ("__port1", "1234"),
        ("__port2", "5678"),
    ];
    let eq = |action: &'static str, target: &'static str| {
        run(
            input,
            &[R {
                src: &["__tmp_port"],
                target: Some(target),
                action: Some(action),
                ..R::default()
            }],
        )
        .is_some()
    };
    assert!(eq("keepequal", "__port1"));
    assert!(!eq("keepequal", "__port2"));
    assert!(!eq("dropequal", "__port1"));
    assert!(eq("dropequal", "__port2"));
}

#[test]
fn cases_25_26_dot_matches_newline_and_named_groups() {
    let out = run(
        &[("a", "line1\nline2")],
        &[R {
            src: &["a"],
            regex: Some("line1.*line2"),
            target: Some("d"),
            repl: Some("match${1}"),
            ..R::default()
        }],
    );
    assert_eq!(
        out.map(|s| s.get("d").to_string()),
        Some("match".to_string())
    );
    let rules = [
        R {
            src: &["a"],
            regex: Some("(line1).*(?<second>line2)"),
            target: Some("label1_${1}"),
            repl: Some("val_${second}"),
            ..R::default()
        },
        R {
            src: &["a"],
            regex: Some("(line1).*(?P<second>line2)"),
            target: Some("label2_$1"),
            repl: Some("val_$second"),
            ..R::default()
        },
    ];
    let out = run(&[("a", "line1\nline2")], &rules).unwrap_or_default();
    assert_eq!(out.get("label1_line1"), "val_line2");
    // `$1` in `label2_$1` ends the template: the name is `1`.
    assert_eq!(out.get("label2_line1"), "val_line2");
}

#[test]
fn case_27_name_label() {
    let out = run(
        &[("__name__", "http_requests_total")],
        &[R {
            src: &["__name__"],
            regex: Some(".*_total$"),
            target: Some("__type__"),
            repl: Some("counter"),
            ..R::default()
        }],
    );
    assert_eq!(
        out.map(|s| s.get("__type__").to_string()),
        Some("counter".to_string())
    );
}

#[test]
fn case_28_missing_source_and_static_replacement() {
    let out = run(
        &[("x", "1")],
        &[
            R {
                src: &["abc"],
                target: Some("cde"),
                ..R::default()
            },
            R {
                target: Some("abc"),
                repl: Some("static"),
                ..R::default()
            },
        ],
    );
    assert_eq!(out, Some(labels(&[("abc", "static"), ("x", "1")])));
}

#[test]
fn dollar_name_takes_the_longest_run() {
    let re = compile_anchored("(a)(b)").unwrap();
    let caps = re.captures("ab").unwrap();
    assert_eq!(expand(&re, &caps, "$1x"), "", "$1x is the group named 1x");
    assert_eq!(expand(&re, &caps, "${1}x"), "ax");
    assert_eq!(expand(&re, &caps, "$2-$1"), "b-a");
    assert_eq!(expand(&re, &caps, "$$1"), "$1");
    assert_eq!(
        expand(&re, &caps, "$01"),
        "",
        "leading zero: a name, not group 1"
    );
    assert_eq!(
        expand(&re, &caps, "a$-b$"),
        "a$-b$",
        "malformed $ stays text"
    );
    assert_eq!(expand(&re, &caps, "${1"), "${1", "missing brace stays text");
    // Go's example (golang/go PR 56507): `$1W` is the group named 1W.
    let re = compile_anchored("(?:a(x*)b)").unwrap();
    let caps = re.captures("axxb").unwrap();
    assert_eq!(expand(&re, &caps, "-$1W-"), "--");
}

#[test]
fn perl_classes_are_ascii_like_go() {
    let digit = compile_anchored(r"\d+").unwrap();
    assert!(digit.is_match("123"));
    assert!(
        !digit.is_match("١٢٣"),
        "Arabic-Indic digits are not \\d in Go"
    );
    let word = compile_anchored(r"[\w.]+").unwrap();
    assert!(word.is_match("a_b.c"));
    assert!(!word.is_match("é"));
    let quoted = compile_anchored(r"\Qa.b\E+").unwrap();
    assert!(quoted.is_match("a.bbb"));
    assert!(!quoted.is_match("axb"));
    let space = compile_anchored(r"a\sb").unwrap();
    assert!(space.is_match("a b") && !space.is_match("a\u{a0}b"));
}

#[test]
fn explicit_empty_regex_matches_only_empty() {
    let out = run(
        &[("a", "x")],
        &[R {
            src: &["a"],
            regex: Some(""),
            target: Some("t"),
            repl: Some("hit"),
            ..R::default()
        }],
    );
    assert_eq!(out, Some(labels(&[("a", "x")])));
    let out = run(
        &[("a", "x")],
        &[R {
            src: &["b"],
            regex: Some(""),
            target: Some("t"),
            repl: Some("hit"),
            ..R::default()
        }],
    );
    assert_eq!(out, Some(labels(&[("a", "x"), ("t", "hit")])));
}

fn error(rule: R, scheme: NameValidation) -> String {
    match compile_one(&rule.config(), scheme) {
        Ok(_) => String::from("<compiled>"),
        Err(e) => e,
    }
}

#[test]
fn validation_messages_are_prometheus() {
    use NameValidation::*;
    assert_eq!(
        error(
            R {
                action: Some(""),
                ..R::default()
            },
            Utf8
        ),
        "relabel action cannot be empty"
    );
    assert_eq!(
        error(
            R {
                action: Some("explode"),
                ..R::default()
            },
            Utf8
        ),
        "unknown relabel action \"explode\""
    );
    assert_eq!(
        error(
            R {
                action: Some("hashmod"),
                target: Some("t"),
                ..R::default()
            },
            Utf8
        ),
        "relabel configuration for hashmod requires non-zero modulus"
    );
    assert_eq!(
        error(R::default(), Utf8),
        "relabel configuration for replace action requires 'target_label' value"
    );
    assert_eq!(
        error(
            R {
                target: Some("1bad"),
                ..R::default()
            },
            Legacy
        ),
        "\"1bad\" is invalid 'target_label' for replace action"
    );
    assert_eq!(
        error(
            R {
                target: Some("1bad"),
                ..R::default()
            },
            Utf8
        ),
        "<compiled>",
        "UTF-8 names allow it"
    );
    assert_eq!(
        error(
            R {
                target: Some("x-$1"),
                ..R::default()
            },
            Legacy
        ),
        "\"x-$1\" is invalid 'target_label' for replace action"
    );
    assert_eq!(
        error(
            R {
                target: Some("x_${1}"),
                ..R::default()
            },
            Legacy
        ),
        "<compiled>"
    );
    assert_eq!(
        error(
            R {
                src: &["a"],
                target: Some("t"),
                repl: Some("x"),
                action: Some("lowercase"),
                ..R::default()
            },
            Utf8
        ),
        "'replacement' can not be set for lowercase action"
    );
    assert_eq!(
        error(
            R {
                src: &["a"],
                target: Some("t"),
                repl: Some("$1"),
                action: Some("uppercase"),
                ..R::default()
            },
            Utf8
        ),
        "<compiled>"
    );
    assert_eq!(
        error(
            R {
                src: &["a"],
                target: Some("t"),
                regex: Some("(.*)"),
                action: Some("keepequal"),
                ..R::default()
            },
            Utf8
        ),
        "keepequal action requires only 'source_labels' and `target_label`, and no other fields",
        "an explicit regex, even the default text, is not the default"
    );
    assert_eq!(
        error(
            R {
                src: &["a"],
                regex: Some("x"),
                action: Some("labeldrop"),
                ..R::default()
            },
            Utf8
        ),
        "labeldrop action requires only 'regex', and no other fields"
    );
    assert_eq!(
        error(
            R {
                regex: Some("(.*)"),
                repl: Some("1-$1"),
                action: Some("labelmap"),
                ..R::default()
            },
            Legacy
        ),
        "\"1-$1\" is invalid 'replacement' for labelmap action"
    );
    assert!(
        error(
            R {
                regex: Some("(unclosed"),
                target: Some("t"),
                ..R::default()
            },
            Utf8
        )
        .starts_with("invalid regex \"(unclosed\"")
    );
    assert_eq!(
        error(
            R {
                src: &["a.b"],
                target: Some("t"),
                ..R::default()
            },
            Legacy
        ),
        "\"a.b\" is not a valid label name"
    );
    let all = compile(
        &[
            R {
                action: Some(""),
                ..R::default()
            }
            .config(),
            R {
                target: Some("ok"),
                ..R::default()
            }
            .config(),
            R::default().config(),
        ],
        Utf8,
    )
    .unwrap_err();
    assert_eq!(all.len(), 2, "every problem is reported: {all:?}");
    assert!(all[1].starts_with("[2] "));
}

#[test]
fn invalid_results_are_reported_like_the_scrape_loop() {
    use NameValidation::*;
    assert!(check_result(&labels(&[("__name__", "up"), ("a", "1")]), Legacy).is_ok());
    assert!(
        check_result(&labels(&[("a", "1")]), Utf8)
            .unwrap_err()
            .contains("__name__ label is mandatory")
    );
    assert!(
        check_result(&labels(&[("__name__", "up"), ("9lives", "1")]), Legacy)
            .unwrap_err()
            .starts_with("invalid metric name or label names")
    );
    assert!(check_result(&labels(&[("__name__", "up"), ("9lives", "1")]), Utf8).is_ok());
    assert!(check_result(&labels(&[("__name__", "a.b")]), Legacy).is_err());
}

#[test]
fn yaml_shape_decodes_with_serde() {
    let config: RelabelConfig =
        serde_json::from_str(r#"{"source_labels":["a","b"],"regex":"x","action":"Drop"}"#).unwrap();
    assert_eq!(config.separator, None);
    assert!(compile_one(&config, NameValidation::Utf8).is_ok());
    assert!(
        serde_json::from_str::<RelabelConfig>(r#"{"sourcelabels":["a"]}"#).is_err(),
        "unknown keys are errors"
    );
}

/// Never panics: random label sets through a rule list with every action, and random
/// regex texts through the compiler.
#[test]
fn random_inputs_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let alphabet: Vec<char> = "ab_$1{}()*.;\\Qé\n".chars().collect();
    let random_text = |rng: &mut rand::rngs::StdRng, max: usize| -> String {
        let len = rng.random_range(0..max);
        (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect()
    };
    let configs: Vec<RelabelConfig> = [
        R {
            src: &["a", "b"],
            regex: Some("(.*);(.*)"),
            target: Some("${2}_$1"),
            repl: Some("$2$1"),
            ..R::default()
        },
        R {
            src: &["a"],
            modulus: Some(7),
            target: Some("h"),
            action: Some("hashmod"),
            ..R::default()
        },
        R {
            regex: Some("(.)(.*)"),
            repl: Some("m_$2"),
            action: Some("labelmap"),
            ..R::default()
        },
        R {
            src: &["b"],
            target: Some("u"),
            action: Some("uppercase"),
            ..R::default()
        },
        R {
            regex: Some("z.*"),
            action: Some("labeldrop"),
            ..R::default()
        },
    ]
    .iter()
    .map(R::config)
    .collect();
    let rules = compile(&configs, NameValidation::Utf8).unwrap();
    for _ in 0..2000 {
        let pairs: Vec<(String, String)> = (0..rng.random_range(0..6))
            .map(|_| (random_text(&mut rng, 6), random_text(&mut rng, 8)))
            .collect();
        let mut set = LabelSet::from_pairs(pairs);
        let _ = process(&mut set, &rules);
        let _ = check_result(&set, NameValidation::Legacy);
        let pattern = random_text(&mut rng, 10);
        if let Ok(re) = compile_anchored(&pattern) {
            if let Some(caps) = re.captures("ab$1") {
                let _ = expand(&re, &caps, &pattern);
            }
        }
    }
}

/// The rule engine as first written (owned strings, no memo), kept as a reference for
/// the differential test below.
mod reference {
    use super::super::*;

    pub fn process(labels: &mut LabelSet, rules: &[Rule]) -> bool {
        rules.iter().all(|rule| apply(rule, labels))
    }

    fn apply(rule: &Rule, labels: &mut LabelSet) -> bool {
        let value = match rule.source_labels.as_slice() {
            [] => String::new(),
            many => many
                .iter()
                .map(|n| labels.get(n))
                .collect::<Vec<_>>()
                .join(&rule.separator),
        };
        match rule.action {
            Action::Drop => return !rule.regex.is_match(&value),
            Action::Keep => return rule.regex.is_match(&value),
            Action::DropEqual => return labels.get(&rule.target_label) != value,
            Action::KeepEqual => return labels.get(&rule.target_label) == value,
            Action::Replace => {
                if value.is_empty()
                    && rule.regex_is_default
                    && !rule.target_label.contains('$')
                    && !rule.replacement.contains('$')
                {
                    labels.set(&rule.target_label, rule.replacement.clone());
                    return true;
                }
                let Some(captures) = rule.regex.captures(&value) else {
                    return true;
                };
                let target = expand(&rule.regex, &captures, &rule.target_label);
                if !rule.name_validation.is_valid_label_name(&target) {
                    return true;
                }
                let result = expand(&rule.regex, &captures, &rule.replacement);
                labels.set(&target, result);
            }
            Action::Lowercase => labels.set(&rule.target_label, go_lowercase(&value)),
            Action::Uppercase => labels.set(&rule.target_label, go_uppercase(&value)),
            Action::HashMod => {
                let digest = md5::compute(value.as_bytes()).0;
                let mut tail = [0u8; 8];
                tail.copy_from_slice(&digest[8..16]);
                labels.set(
                    &rule.target_label,
                    (u64::from_be_bytes(tail) % rule.modulus.max(1)).to_string(),
                );
            }
            Action::LabelMap => {
                let mapped: Vec<(String, String)> = labels
                    .iter()
                    .filter_map(|(name, value)| {
                        let captures = rule.regex.captures(name)?;
                        Some((
                            expand(&rule.regex, &captures, &rule.replacement),
                            value.to_string(),
                        ))
                    })
                    .collect();
                for (name, value) in mapped {
                    labels.set(&name, value);
                }
            }
            Action::LabelDrop => labels.0.retain(|(name, _)| !rule.regex.is_match(name)),
            Action::LabelKeep => labels.0.retain(|(name, _)| rule.regex.is_match(name)),
        }
        true
    }
}

/// The borrowing, memoizing [`Relabeler`] (one per many label sets, as the `relabel`
/// processor runs it per batch) and [`process`] give exactly what the first, owned
/// implementation gave, on random label sets from a small alphabet (so inputs repeat and
/// remembered outcomes are reused) through rules of every action.
#[test]
fn relabeler_matches_reference_implementation() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let alphabet: Vec<char> = "abAB_1$;é".chars().collect();
    let names = ["a", "b", "c", "__name__", "zz", "x_1"];
    let random_text = |rng: &mut rand::rngs::StdRng, max: usize| -> String {
        let len = rng.random_range(0..max);
        (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect()
    };
    let rule_sets: Vec<Vec<R>> = vec![
        vec![
            R {
                src: &["a", "b"],
                regex: Some("(.*);(.*)"),
                target: Some("${2}_$1"),
                repl: Some("$2$1"),
                ..R::default()
            },
            R {
                src: &["a"],
                modulus: Some(7),
                target: Some("h"),
                action: Some("hashmod"),
                ..R::default()
            },
            R {
                regex: Some("(.)(.*)"),
                repl: Some("m_$2"),
                action: Some("labelmap"),
                ..R::default()
            },
            R {
                src: &["b"],
                target: Some("u"),
                action: Some("uppercase"),
                ..R::default()
            },
            R {
                src: &["c"],
                target: Some("l"),
                action: Some("lowercase"),
                ..R::default()
            },
            R {
                regex: Some("z.*"),
                action: Some("labeldrop"),
                ..R::default()
            },
        ],
        vec![
            R {
                src: &["__name__"],
                regex: Some("a.*"),
                action: Some("drop"),
                ..R::default()
            },
            R {
                src: &["a"],
                regex: Some("(b+)(?P<n>.*)"),
                target: Some("b"),
                repl: Some("x${n}$1"),
                ..R::default()
            },
            R {
                target: Some("static"),
                repl: Some("v"),
                ..R::default()
            },
            R {
                src: &["c"],
                target: Some("b"),
                action: Some("keepequal"),
                ..R::default()
            },
        ],
        vec![
            R {
                src: &["a", "c"],
                sep: Some(""),
                regex: Some(".*1.*"),
                action: Some("keep"),
                ..R::default()
            },
            R {
                src: &["b"],
                target: Some("c"),
                action: Some("dropequal"),
                ..R::default()
            },
            R {
                src: &["a"],
                regex: Some("(.*)"),
                target: Some("$1"),
                repl: Some(""),
                ..R::default()
            },
            R {
                regex: Some("(a|b|__name__)"),
                action: Some("labelkeep"),
                ..R::default()
            },
            R {
                src: &["b"],
                target: Some("__name__"),
                repl: Some("n_$1"),
                ..R::default()
            },
        ],
        vec![
            R {
                src: &["a"],
                regex: Some("b\\$1"),
                action: Some("drop"),
                ..R::default()
            },
            R {
                src: &["b"],
                regex: Some(""),
                action: Some("drop"),
                ..R::default()
            },
            R {
                regex: Some("x_1"),
                action: Some("labeldrop"),
                ..R::default()
            },
            R {
                src: &["c", "a"],
                regex: Some("A;b"),
                action: Some("drop"),
                ..R::default()
            },
        ],
        vec![
            R {
                regex: Some("__name__"),
                action: Some("labelkeep"),
                ..R::default()
            },
            R {
                src: &["__name__"],
                regex: Some("é"),
                target: Some("e"),
                repl: Some("$0"),
                ..R::default()
            },
        ],
    ];
    for rules in &rule_sets {
        let configs: Vec<RelabelConfig> = rules.iter().map(R::config).collect();
        let rules = compile(&configs, NameValidation::Utf8).unwrap();
        let mut relabeler = Relabeler::new(&rules);
        let mut kept = 0;
        for _ in 0..3000 {
            let pairs: Vec<(String, String)> = (0..rng.random_range(0..6))
                .map(|_| {
                    let name = names[rng.random_range(0..names.len())].to_string();
                    (name, random_text(&mut rng, 4))
                })
                .collect();
            let mut expected = LabelSet::from_pairs(pairs.clone());
            let expected_kept = reference::process(&mut expected, &rules);

            let mut owned = LabelSet::from_pairs(pairs.clone());
            assert_eq!(process(&mut owned, &rules), expected_kept, "{pairs:?}");
            if expected_kept {
                assert_eq!(owned, expected, "{pairs:?}");
            }

            let mut borrowed = Labels::default();
            for (n, v) in &pairs {
                borrowed.push(Cow::Borrowed(n), Cow::Borrowed(v));
            }
            borrowed.normalize();
            assert_eq!(borrowed.to_label_set(), LabelSet::from_pairs(pairs.clone()));
            assert_eq!(relabeler.process(&mut borrowed), expected_kept, "{pairs:?}");
            if expected_kept {
                kept += 1;
                assert_eq!(borrowed.to_label_set(), expected, "{pairs:?}");
                assert_eq!(
                    check_labels(&borrowed, NameValidation::Legacy),
                    check_result(&expected, NameValidation::Legacy)
                );
            }
        }
        assert!(kept > 100, "the test must exercise kept sets, kept {kept}");
    }
}

/// A regex made of literal characters (and escaped punctuation) matches by equality;
/// anything with a meta character goes to the regex engine.
#[test]
fn literal_regexes_are_recognised_exactly() {
    for (pattern, literal) in [
        ("attr\\.2", Some("attr.2")),
        ("", Some("")),
        ("a b-c_é", Some("a b-c_é")),
        ("b\\$1", Some("b$1")),
        ("a.b", None),
        ("a|b", None),
        ("(?i)a", None),
        ("\\d", None),
        ("\\Qa.b\\E", None),
        ("a*", None),
    ] {
        assert_eq!(literal_text(pattern).as_deref(), literal, "{pattern}");
        if let Some(text) = literal {
            let regex = compile_anchored(pattern).unwrap();
            assert!(regex.is_match(text), "{pattern} matches {text}");
            assert!(
                !regex.is_match(&format!("{text}x")),
                "{pattern} is anchored"
            );
        }
    }
}
