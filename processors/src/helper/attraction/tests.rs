use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value,
};

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
fn d(v: f64) -> AnyValue {
    AnyValue {
        value: Some(Value::DoubleValue(v)),
    }
}
fn b(v: bool) -> AnyValue {
    AnyValue {
        value: Some(Value::BoolValue(v)),
    }
}
fn kv(k: &str, v: AnyValue) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(v),
        ..Default::default()
    }
}
fn action(key: &str, action: &str) -> ActionConfig {
    ActionConfig {
        key: key.into(),
        action: action.into(),
        ..Default::default()
    }
}
fn with_value(mut a: ActionConfig, v: AnyValue) -> ActionConfig {
    a.value = Some(ConfigValue(v));
    a
}
fn run(actions: Vec<ActionConfig>, mut attrs: Vec<KeyValue>) -> Vec<KeyValue> {
    AttrProc::new(&actions, "actions")
        .expect("valid actions")
        .process(&mut attrs);
    attrs
}
fn keys(attrs: &[KeyValue]) -> Vec<&str> {
    attrs.iter().map(|kv| kv.key.as_str()).collect()
}

#[test]
fn insert_only_adds_missing_keys() {
    let out = run(
        vec![
            with_value(action("a", "insert"), i(1)),
            with_value(action("b", "INSERT"), i(2)),
        ],
        vec![kv("a", s("kept"))],
    );
    assert_eq!(out, vec![kv("a", s("kept")), kv("b", i(2))]);
}

#[test]
fn update_only_changes_existing_keys_in_place() {
    let out = run(
        vec![
            with_value(action("a", "update"), b(true)),
            with_value(action("zz", "update"), b(true)),
        ],
        vec![kv("a", s("x")), kv("c", s("y"))],
    );
    assert_eq!(out, vec![kv("a", b(true)), kv("c", s("y"))]);
}

#[test]
fn upsert_inserts_or_updates() {
    let out = run(
        vec![
            with_value(action("a", "upsert"), d(1.5)),
            with_value(action("n", "upsert"), s("new")),
        ],
        vec![kv("a", s("x"))],
    );
    assert_eq!(out, vec![kv("a", d(1.5)), kv("n", s("new"))]);
}

#[test]
fn from_attribute_copies_any_type_and_skips_when_missing() {
    let map = AnyValue {
        value: Some(Value::KvlistValue(KeyValueList {
            values: vec![kv("k", i(1))],
        })),
    };
    let mut copy = action("copy", "upsert");
    copy.from_attribute = "src".into();
    let mut missing = action("other", "insert");
    missing.from_attribute = "absent".into();
    let out = run(vec![copy, missing], vec![kv("src", map.clone())]);
    assert_eq!(out, vec![kv("src", map.clone()), kv("copy", map)]);
}

#[test]
fn actions_run_in_order() {
    // delete then insert re-adds; insert then delete removes.
    let out = run(
        vec![
            action("a", "delete"),
            with_value(action("a", "insert"), i(2)),
        ],
        vec![kv("a", i(1))],
    );
    assert_eq!(out, vec![kv("a", i(2))]);
    let out = run(
        vec![
            with_value(action("a", "insert"), i(2)),
            action("a", "delete"),
        ],
        vec![],
    );
    assert!(out.is_empty());
}

#[test]
fn delete_by_key_swaps_like_go_and_by_pattern_keeps_order() {
    let mut del = action("a", "delete");
    del.pattern = "^tmp\\.".into();
    let out = run(
        vec![del],
        vec![
            kv("a", i(1)),
            kv("tmp.x", i(2)),
            kv("keep", i(3)),
            kv("tmp.y", i(4)),
            kv("last", i(5)),
        ],
    );
    // Remove("a") moves "last" into index 0 (pcommon.Map.Remove); the pattern then
    // removes tmp.* keeping the order of the rest (pcommon.Map.RemoveIf), as in v0.161.
    assert_eq!(keys(&out), vec!["last", "keep"]);
    let mut del = action("", "delete");
    del.pattern = "secret".into();
    let out = run(
        vec![del],
        vec![
            kv("first", i(0)),
            kv("my_secret_key", i(1)),
            kv("public", i(2)),
            kv("z", i(3)),
        ],
    );
    // Unanchored like Go's MatchString: the pattern matches anywhere in the key.
    assert_eq!(keys(&out), vec!["first", "public", "z"]);
}

#[test]
fn hash_is_sha256_of_the_value_bytes() {
    // Expected values: python3 hashlib.sha256 of b"foo", b"\x01", b"\x00", b"",
    // struct.pack('<q', 24), struct.pack('<d', 2.4) (the Collector's sha2Hasher encoding).
    let cases = [
        (
            s("foo"),
            "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
        ),
        (
            b(true),
            "4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a",
        ),
        (
            b(false),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        ),
        (
            s(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        (
            i(24),
            "cbb032642036ec7043fa4529f06c9c9d8b12fa70ea6799a19ca8321a808d86fa",
        ),
        (
            i(-1),
            "12a3ae445661ce5dee78d0650d33362dec29c4f82af05e7e57fb595bbbacf0ca",
        ),
        (
            d(2.4),
            "df3022be03461368aa299f2f30d440fd3ca45c9b62af40733f10296a53d42859",
        ),
    ];
    for (value, expected) in cases {
        let out = run(vec![action("k", "hash")], vec![kv("k", value.clone())]);
        assert_eq!(out, vec![kv("k", s(expected))], "hash of {value:?}");
    }
    // Bytes, maps, slices and empty values become "".
    for value in [
        AnyValue {
            value: Some(Value::BytesValue(vec![1, 2, 3])),
        },
        AnyValue {
            value: Some(Value::ArrayValue(ArrayValue { values: vec![i(1)] })),
        },
        AnyValue::default(),
    ] {
        let out = run(vec![action("k", "hash")], vec![kv("k", value)]);
        assert_eq!(out, vec![kv("k", s(""))]);
    }
    // Missing key: nothing added. Pattern hashes every matching key.
    let mut by_pattern = action("", "hash");
    by_pattern.pattern = "^user\\.".into();
    let out = run(
        vec![action("absent", "hash"), by_pattern],
        vec![kv("user.email", s("foo")), kv("other", s("foo"))],
    );
    assert_eq!(
        out,
        vec![
            kv(
                "user.email",
                s("2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae")
            ),
            kv("other", s("foo"))
        ]
    );
}

#[test]
fn extract_sets_named_groups_and_ignores_non_matching_and_non_strings() {
    let mut ex = action("url", "extract");
    ex.pattern = r"^/api/(?P<version>v\d+)/(?P<resource>\w+)(?:/(?P<id>\d+))?".into();
    let out = run(
        vec![ex.clone()],
        vec![kv("url", s("/api/v1/users")), kv("version", s("old"))],
    );
    // Existing target overwritten in place; a group that did not take part becomes "".
    assert_eq!(
        out,
        vec![
            kv("url", s("/api/v1/users")),
            kv("version", s("v1")),
            kv("resource", s("users")),
            kv("id", s(""))
        ]
    );
    let out = run(vec![ex.clone()], vec![kv("url", s("/other"))]);
    assert_eq!(out, vec![kv("url", s("/other"))]);
    let out = run(vec![ex], vec![kv("url", i(5))]);
    assert_eq!(out, vec![kv("url", i(5))]);
}

#[test]
fn convert_follows_the_collector_rules() {
    let conv = |t: &str| {
        let mut a = action("k", "convert");
        a.converted_type = t.into();
        a
    };
    let case = |t: &str, input: AnyValue| {
        run(vec![conv(t)], vec![kv("k", input)])
            .remove(0)
            .value
            .expect("value kept")
    };
    assert_eq!(case("int", s("42")), i(42));
    assert_eq!(case("int", s("4.2")), s("4.2"), "unparsable strings stay");
    assert_eq!(case("int", d(-3.9)), i(-3));
    assert_eq!(case("int", b(true)), i(1));
    assert_eq!(case("int", i(7)), i(7));
    assert_eq!(case("double", s("1e3")), d(1000.0));
    assert_eq!(case("double", s("x")), s("x"));
    assert_eq!(case("double", i(2)), d(2.0));
    assert_eq!(case("double", b(false)), d(0.0));
    assert_eq!(case("string", i(2)), s("2"));
    assert_eq!(case("string", d(2.5)), s("2.5"));
    assert_eq!(case("string", b(true)), s("true"));
    assert_eq!(
        case(
            "string",
            AnyValue {
                value: Some(Value::BytesValue(vec![104, 105]))
            }
        ),
        s("aGk=")
    );
    let list = AnyValue {
        value: Some(Value::ArrayValue(ArrayValue {
            values: vec![i(1), s("a")],
        })),
    };
    assert_eq!(case("string", list.clone()), s(r#"[1,"a"]"#));
    assert_eq!(
        case("int", list.clone()),
        list,
        "slices are not converted to numbers"
    );
    // Missing key: nothing happens.
    assert!(run(vec![conv("int")], vec![]).is_empty());
}

#[test]
fn validation_reports_every_problem_with_the_index() {
    let mut bad_extract = action("k", "extract");
    bad_extract.pattern = "(unnamed)".into();
    let mut two_sources = with_value(action("k", "insert"), i(1));
    two_sources.from_attribute = "x".into();
    let mut ctx = action("k", "upsert");
    ctx.from_context = "metadata.tenant".into();
    let mut bad_conv = action("k", "convert");
    bad_conv.converted_type = "float".into();
    let actions = vec![
        action("k", "insert"),
        action("", "delete"),
        bad_extract,
        two_sources,
        ctx,
        bad_conv,
        action("k", "rename"),
        with_value(action("k", "hash"), i(1)),
    ];
    let problems = validate(&actions, "actions");
    assert_eq!(problems.len(), 8, "{problems:#?}");
    for (n, p) in problems.iter().enumerate() {
        assert!(p.starts_with(&format!("actions[{n}]")), "{p}");
    }
    assert!(problems[4].contains("from_context"));
    assert!(problems[5].contains("int, double or string"));
    let mut bad_regex = action("", "hash");
    bad_regex.pattern = "(".into();
    assert!(AttrProc::new(&[bad_regex], "actions").is_err());
}

#[test]
fn default_value_fills_in_when_the_source_is_missing() {
    let mut copy = action("env", "upsert");
    copy.from_attribute = "deployment".into();
    copy.default_value = Some(ConfigValue(s("unknown")));
    let out = run(vec![copy.clone()], vec![]);
    assert_eq!(out, vec![kv("env", s("unknown"))]);
    let out = run(vec![copy], vec![kv("deployment", i(3))]);
    assert_eq!(out, vec![kv("deployment", i(3)), kv("env", i(3))]);
    // default_value alone is a value source.
    let mut only_default = action("k", "insert");
    only_default.default_value = Some(ConfigValue(b(true)));
    assert_eq!(run(vec![only_default], vec![]), vec![kv("k", b(true))]);
    assert!(validate(&[action("k", "update")], "actions")[0].contains("default_value"));
}

#[test]
fn hash_by_key_and_pattern_hashes_a_matching_key_twice_like_the_collector() {
    // v0.161 hashes `key` first, then every key the pattern matches: a key that is
    // both is hashed twice. sha256 of the 64 hex characters of sha256("foo"):
    // python3 hashlib.sha256(hashlib.sha256(b"foo").hexdigest().encode()).hexdigest().
    let mut both = action("user.email", "hash");
    both.pattern = "^user\\.".into();
    let out = run(vec![both], vec![kv("user.email", s("foo"))]);
    assert_eq!(
        out,
        vec![kv(
            "user.email",
            s("505221025f9701f8a05cc22cbafeec897598b2924a9d665cbc10f0073d66da20")
        )]
    );
}
