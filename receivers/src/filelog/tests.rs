//! Tests of the filelog receiver: splitting, globs, fields, expressions, time layouts,
//! each operator, the container formats, the reader across rotations, refusals and
//! restarts, and the config's defaults and checks.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::any_value;
use serde_json::{Value, json};

use super::container::{Format, parse_line};
use super::entry::{Entry, Field, Mark, Root, to_resource_logs};
use super::expr::Expr;
use super::glob::{Glob, find_files};
use super::operators::{Chain, OperatorConfig, Output};
use super::reader::{Known, Settings, Tracker};
use super::split::{Cut, Mode, Splitter, compile};
use super::time::{Layout, Location, days_from_civil, year_of};
use super::{ByteSize, Config, Delivered, FileLog, Storage};

// ---------------------------------------------------------------- helpers

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "oxcol-filelog-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creates a temp dir");
    dir
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("opens the file");
    f.write_all(text.as_bytes()).expect("writes");
}

fn splitter(mode: Mode, max: usize) -> Splitter {
    Splitter {
        mode,
        max_log_size: max,
        preserve_leading: false,
        preserve_trailing: false,
    }
}

/// All tokens of `data` as strings (None for skipped blanks), flushing at the end.
fn cut_all(s: &Splitter, data: &[u8], flush: bool) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(Cut { advance, token }) = s.next(&data[pos..], flush) {
        out.push(token.map(|r| String::from_utf8_lossy(&data[pos..][r]).into_owned()));
        pos += advance;
    }
    out
}

fn config(value: Value) -> Config {
    serde_json::from_value(value).expect("a valid filelog config")
}

fn chain(ops: Value) -> Chain {
    let configs: Vec<OperatorConfig> = serde_json::from_value(ops).expect("valid operators");
    Chain::build(&configs).expect("the chain builds")
}

fn body_entry(body: &str) -> Entry {
    Entry {
        body: Value::String(body.to_string()),
        marks: vec![Mark {
            file: 1,
            start: 0,
            end: 1,
        }],
        ..Default::default()
    }
}

fn run(chain: &mut Chain, entries: Vec<Entry>) -> Output {
    let mut out = Output::default();
    for e in entries {
        chain.process(e, Instant::now(), &mut out);
    }
    out
}

fn bodies(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            e.body
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| e.body.to_string())
        })
        .collect()
}

// ---------------------------------------------------------------- split

#[test]
fn newline_split_drops_cr_trims_and_skips_blank_lines() {
    let s = splitter(Mode::Newline, 1024);
    let tokens = cut_all(&s, b"one\r\n  two  \n\nthree", false);
    assert_eq!(tokens, vec![Some("one".into()), Some("two".into()), None]);
    // The unfinished last line comes only with a flush.
    let tokens = cut_all(&s, b"one\nthree", true);
    assert_eq!(tokens, vec![Some("one".into()), Some("three".into())]);
}

#[test]
fn a_line_longer_than_max_log_size_is_cut_into_pieces() {
    let s = splitter(Mode::Newline, 4);
    let tokens = cut_all(&s, b"abcdefghij\nxy\n", false);
    assert_eq!(
        tokens,
        vec![
            Some("abcd".into()),
            Some("efgh".into()),
            Some("ij".into()),
            Some("xy".into())
        ]
    );
}

#[test]
fn line_start_pattern_groups_continuation_lines() {
    let s = splitter(
        Mode::LineStart {
            pattern: compile(r"^\d{4}-").expect("compiles"),
            omit: false,
        },
        1 << 20,
    );
    let data = b"junk\n2024-01 first\n  at a\n  at b\n2024-02 second\n2024-03 third";
    let tokens = cut_all(&s, data, false);
    assert_eq!(
        tokens,
        vec![
            Some("junk".into()),
            Some("2024-01 first\n  at a\n  at b".into()),
            Some("2024-02 second".into()),
        ]
    );
    let tokens = cut_all(&s, data, true);
    assert_eq!(tokens.last(), Some(&Some("2024-03 third".into())));
}

#[test]
fn line_end_pattern_ends_entries() {
    let s = splitter(
        Mode::LineEnd {
            pattern: compile(r"END\n").expect("compiles"),
            omit: false,
        },
        1 << 20,
    );
    let tokens = cut_all(&s, b"a\nb END\nc END\nmore", false);
    assert_eq!(tokens, vec![Some("a\nb END".into()), Some("c END".into())]);
}

#[test]
fn preserved_whitespace_is_kept() {
    let s = Splitter {
        mode: Mode::Newline,
        max_log_size: 100,
        preserve_leading: true,
        preserve_trailing: true,
    };
    assert_eq!(
        cut_all(&s, b"  a \n\n", false),
        vec![Some("  a ".into()), Some("".into())]
    );
}

// ---------------------------------------------------------------- globs

#[test]
fn globs_match_like_doublestar() {
    let g = Glob::new("/var/log/pods/*/*/*.log").expect("valid");
    assert!(g.matches("/var/log/pods/ns_pod_uid/c/0.log"));
    assert!(!g.matches("/var/log/pods/ns_pod_uid/c/sub/0.log"));
    let g = Glob::new("/var/log/**/*.log").expect("valid");
    assert!(g.matches("/var/log/a.log"));
    assert!(g.matches("/var/log/x/y/z.log"));
    let g = Glob::new("/l/{a,b}[0-9].txt").expect("valid");
    assert!(g.matches("/l/a1.txt") && g.matches("/l/b9.txt"));
    assert!(!g.matches("/l/c1.txt") && !g.matches("/l/ax.txt"));
    assert!(Glob::new("/l/[a").is_err());
}

#[test]
fn find_walks_only_what_can_match_and_applies_excludes() {
    let dir = temp_dir();
    std::fs::create_dir_all(dir.join("a/deep")).expect("mkdir");
    for f in ["a/x.log", "a/y.txt", "a/deep/z.log", "b.log"] {
        append(&dir.join(f), "x\n");
    }
    let d = dir.display();
    let include = [Glob::new(&format!("{d}/**/*.log")).expect("valid")];
    let exclude = [Glob::new(&format!("{d}/b.log")).expect("valid")];
    let found: Vec<String> = find_files(&include, &exclude)
        .iter()
        .map(|p| {
            p.strip_prefix(&dir)
                .expect("below dir")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(found, vec!["a/deep/z.log", "a/x.log"]);
    let include = [Glob::new(&format!("{d}/*/*.log")).expect("valid")];
    assert_eq!(find_files(&include, &[]).len(), 1);
}

// ---------------------------------------------------------------- fields and expressions

#[test]
fn fields_parse_get_set_and_delete() {
    let f = Field::parse(r#"attributes["log.file.path"]"#).expect("valid");
    assert_eq!(
        f,
        Field {
            root: Root::Attributes,
            path: vec!["log.file.path".into()]
        }
    );
    let nested = Field::parse("body.a.b").expect("valid");
    let mut e = body_entry("text");
    e.set(&nested, json!(5));
    assert_eq!(e.body, json!({"a": {"b": 5}}));
    assert_eq!(e.delete(&nested), Some(json!(5)));
    assert!(Field::parse("record.x").is_err());
    assert!(Field::parse("attributes[x]").is_err());
}

#[test]
fn expressions_evaluate_like_stanza() {
    let mut e = body_entry("{\"a\":1}");
    e.attributes.insert("logtag".into(), json!("F"));
    e.attributes
        .insert("log.file.path".into(), json!("/var/log/x.log"));
    for (text, want) in [
        (r#"body matches "^\\{""#, true),
        ("attributes.logtag == 'F'", true),
        ("attributes.logtag != 'F'", false),
        (
            r#"attributes["log.file.path"] endsWith ".log" && !(attributes.logtag == "P")"#,
            true,
        ),
        ("attributes.missing == nil or false", true),
        ("attributes.logtag in ['P', 'X']", false),
    ] {
        assert_eq!(Expr::parse(text).expect(text).matches(&e), want, "{text}");
    }
    let error = Expr::parse(r#"env("HOME") == "x""#).expect_err("functions are refused");
    assert!(error.contains("not supported"), "{error}");
}

// ---------------------------------------------------------------- time

#[test]
fn time_layouts_parse_as_stanza() {
    let utc = |layout_type: &str, layout: &str, value: Value| {
        Layout::new(layout_type, layout)
            .expect("valid layout")
            .parse(&value, Location::Utc, 2024)
    };
    let base = days_from_civil(2024, 3, 5) as u64 * 86_400 + 13 * 3600 + 4 * 60 + 5;
    assert_eq!(
        utc(
            "strptime",
            "%Y-%m-%d %H:%M:%S",
            json!("2024-03-05 13:04:05")
        ),
        Ok(base * 1_000_000_000)
    );
    assert_eq!(
        utc(
            "strptime",
            "%Y-%m-%dT%H:%M:%S.%L%z",
            json!("2024-03-05T14:04:05.123+0100")
        ),
        Ok(base * 1_000_000_000 + 123_000_000)
    );
    assert_eq!(
        utc(
            "gotime",
            "2006-01-02T15:04:05.999999999Z07:00",
            json!("2024-03-05T13:04:05.5Z")
        ),
        Ok(base * 1_000_000_000 + 500_000_000)
    );
    // No year: the given current year; month names.
    assert_eq!(
        utc("strptime", "%b %d %H:%M:%S", json!("Mar 05 13:04:05")),
        Ok(base * 1_000_000_000)
    );
    assert_eq!(
        utc("epoch", "s.ms", json!("1700000000.250")),
        Ok(1_700_000_000_250_000_000)
    );
    assert_eq!(
        utc("epoch", "ms", json!(1_700_000_000_250u64)),
        Ok(1_700_000_000_250_000_000)
    );
    assert!(utc("strptime", "%Y-%m-%d", json!("2024-13-01")).is_err());
    assert!(utc("strptime", "%Y-%m-%d", json!("not a date")).is_err());
    assert!(Layout::new("epoch", "minutes").is_err());
    assert_eq!(year_of(1_700_000_000), 2023);
}

#[test]
fn a_multi_byte_character_where_a_month_or_weekday_name_ends_is_an_error() {
    // Found by the fuzz target `filelog`: the name's length fell inside the character.
    for (layout, value) in [
        ("%b %d %H:%M:%S", "Ma\u{fffd}r 05 13:04:05"),
        ("%B %d", "Ma\u{e9}"),
        ("%a %d", "M\u{e9}n 05"),
        ("%A %d", "Monday\u{e9}"),
    ] {
        let parsed = Layout::new("strptime", layout)
            .expect("valid layout")
            .parse(&json!(value), Location::Utc, 2024);
        assert!(parsed.is_err(), "{layout} {value:?}: {parsed:?}");
    }
}

#[test]
fn a_year_past_2554_is_an_error_not_an_overflow() {
    // Found by the fuzz target `filelog`: u64 nanoseconds overflowed.
    let parse = |value: &str| {
        Layout::new("strptime", "%Y-%m-%d")
            .expect("valid layout")
            .parse(&json!(value), Location::Utc, 2024)
    };
    assert!(parse("9999-12-31").is_err());
    assert!(parse("2554-01-01").is_ok());
}

#[test]
fn an_epoch_with_more_digits_than_nanoseconds_hold_is_an_error_not_an_overflow() {
    // Found by the fuzz target `filelog`: the whole part times 10^9 overflowed u128.
    let parse = |layout: &str, value: &str| {
        Layout::new("epoch", layout).expect("valid layout").parse(
            &json!(value),
            Location::Utc,
            2024,
        )
    };
    let huge = format!("1700{}0.0000000000000000000", "4".repeat(32));
    assert!(parse("s.ms", &huge).is_err());
    assert!(parse("s.ns", &"9".repeat(38)).is_err());
    assert!(parse("s.ms", "1700000000.250").is_ok());
}

// ---------------------------------------------------------------- container

#[test]
fn container_formats_are_detected_and_parsed() {
    let docker = parse_line(
        r#"{"log":"hello\n","stream":"stderr","time":"2024-03-05T13:04:05.123456789Z"}"#,
        None,
    )
    .expect("docker");
    assert_eq!(docker.format, Format::Docker);
    assert_eq!(docker.fields["log"], json!("hello\n"));
    let base = days_from_civil(2024, 3, 5) as u64 * 86_400 + 13 * 3600 + 4 * 60 + 5;
    assert_eq!(docker.time, base * 1_000_000_000 + 123_456_789);
    let crio = parse_line(
        "2024-03-05T14:04:05.000000001+01:00 stdout F the message",
        None,
    )
    .expect("crio");
    assert_eq!(crio.format, Format::Crio);
    assert_eq!(crio.time, base * 1_000_000_000 + 1);
    assert_eq!(crio.fields["logtag"], json!("F"));
    assert_eq!(crio.fields["log"], json!("the message"));
    let containerd = parse_line("2024-03-05T13:04:05.5Z stderr P part", None).expect("containerd");
    assert_eq!(containerd.format, Format::Containerd);
    assert!(parse_line("plain text", None).is_err());
    assert!(parse_line("{not json", None).is_err());
    assert!(parse_line(r#"{"log":"x"}"#, None).is_err(), "no time");
}

#[test]
fn container_operator_recombines_partial_cri_lines_and_adds_k8s_metadata() {
    let mut c =
        chain(json!([{"type": "container", "id": "container-parser", "max_log_size": 102400}]));
    let path = "/var/log/pods/default_web-1_0a1b2c3d-0000-1111-2222-333344445555/app/2.log";
    let line = |text: &str, start: u64| {
        let mut e = body_entry(text);
        e.attributes.insert("log.file.path".into(), json!(path));
        e.marks = vec![Mark {
            file: 7,
            start,
            end: start + 10,
        }];
        e
    };
    let out = run(
        &mut c,
        vec![
            line("2024-03-05T13:04:05.1Z stdout P first ", 0),
            line("2024-03-05T13:04:05.2Z stdout P second ", 10),
        ],
    );
    assert!(out.entries.is_empty(), "partial lines wait for F");
    assert_eq!(c.held().len(), 2);
    let out = run(
        &mut c,
        vec![line("2024-03-05T13:04:05.3Z stdout F third", 20)],
    );
    assert_eq!(bodies(&out.entries), vec!["first second third"]);
    let e = &out.entries[0];
    assert_eq!(
        e.marks.len(),
        3,
        "the joined entry completes all three ranges"
    );
    assert_eq!(e.attributes["log.iostream"], json!("stdout"));
    assert_eq!(
        e.attributes["logtag"],
        json!("P"),
        "oldest entry's fields win"
    );
    assert!(!e.attributes.contains_key("time"));
    assert_eq!(e.resource["k8s.namespace.name"], json!("default"));
    assert_eq!(e.resource["k8s.pod.name"], json!("web-1"));
    assert_eq!(
        e.resource["k8s.pod.uid"],
        json!("0a1b2c3d-0000-1111-2222-333344445555")
    );
    assert_eq!(e.resource["k8s.container.name"], json!("app"));
    assert_eq!(e.resource["k8s.container.restart_count"], json!("2"));
    assert!(c.held().is_empty());
    // Docker lines pass at once, keeping the newline in the body.
    let out = run(
        &mut c,
        vec![line(
            r#"{"log":"d\n","stream":"stdout","time":"2024-03-05T13:04:05Z"}"#,
            30,
        )],
    );
    assert_eq!(bodies(&out.entries), vec!["d\n"]);
}

#[test]
fn container_partial_lines_are_flushed_after_the_period() {
    let mut c = chain(json!([{"type": "container", "add_metadata_from_filepath": false}]));
    let mut e = body_entry("2024-03-05T13:04:05.1Z stdout P lonely");
    e.attributes.insert("log.file.path".into(), json!("/x.log"));
    let mut out = run(&mut c, vec![e]);
    assert!(out.entries.is_empty());
    c.flush(Instant::now() + Duration::from_secs(6), false, &mut out);
    assert_eq!(bodies(&out.entries), vec!["lonely"]);
}

#[test]
fn container_errors_follow_on_error() {
    let mut c = chain(json!([{"type": "container", "on_error": "drop_quiet"}]));
    let out = run(&mut c, vec![body_entry("not a container line")]);
    assert!(out.entries.is_empty());
    assert_eq!(out.dropped.len(), 1, "a dropped entry's range is done");
    let mut c = chain(json!([{"type": "container"}]));
    let out = run(&mut c, vec![body_entry("not a container line")]);
    assert_eq!(
        bodies(&out.entries),
        vec!["not a container line"],
        "send: passed on unchanged"
    );
}

// ---------------------------------------------------------------- other operators

#[test]
fn regex_parser_with_timestamp_and_severity() {
    let mut c = chain(json!([{
        "type": "regex_parser",
        "regex": r"^(?P<time>\S+ \S+) (?P<sev>\w+) (?P<msg>.*)$",
        "timestamp": {"parse_from": "attributes.time", "layout": "%Y-%m-%d %H:%M:%S"},
        "severity": {"parse_from": "attributes.sev"}
    }]));
    let out = run(
        &mut c,
        vec![body_entry("2024-03-05 13:04:05 WARNING disk almost full")],
    );
    let e = &out.entries[0];
    assert_eq!(e.attributes["msg"], json!("disk almost full"));
    assert_eq!(e.severity, 13);
    assert_eq!(e.severity_text, "WARNING");
    let base = days_from_civil(2024, 3, 5) as u64 * 86_400 + 13 * 3600 + 4 * 60 + 5;
    assert!(
        e.timestamp
            .is_some_and(|t| t.abs_diff(base * 1_000_000_000) <= 14 * 3600 * 1_000_000_000),
        "parsed in the local zone"
    );
    assert_eq!(
        e.body,
        json!("2024-03-05 13:04:05 WARNING disk almost full"),
        "the parsed body stays"
    );
}

#[test]
fn severity_ranges_map_numbers_and_a_huge_range_is_refused() {
    let mut c = chain(json!([{
        "type": "severity_parser",
        "parse_from": "body",
        "mapping": {"error": "5xx", "warn": {"min": 400, "max": 404}}
    }]));
    let out = run(&mut c, vec![body_entry("503"), body_entry("404")]);
    assert_eq!(out.entries[0].severity, 17, "5xx is error");
    assert_eq!(out.entries[1].severity, 13, "400-404 is warn");
    let configs: Vec<OperatorConfig> = serde_json::from_value(json!([{
        "type": "severity_parser",
        "parse_from": "body",
        "mapping": {"info": {"min": 0, "max": 9_000_000_000i64}}
    }]))
    .expect("valid operators");
    let errors = Chain::build(&configs)
        .err()
        .expect("a 9e9-number range is refused");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("spans more than 100000 numbers")),
        "{errors:?}"
    );
}

#[test]
fn json_parser_numbers_are_floats_and_parse_to_body() {
    let mut c = chain(
        json!([{"type": "json_parser", "parse_to": "body", "severity": {"parse_from": "body.level", "overwrite_text": true}}]),
    );
    let out = run(
        &mut c,
        vec![body_entry(r#"{"level":"error","n":3,"msg":"x"}"#)],
    );
    let e = &out.entries[0];
    assert_eq!(e.body["msg"], json!("x"));
    assert!(e.body["n"].is_f64());
    assert_eq!((e.severity, e.severity_text.as_str()), (17, "ERROR"));
    let record = e.to_log_record();
    let Some(any_value::Value::KvlistValue(list)) = record.body.and_then(|b| b.value) else {
        panic!("a map body is a kvlist")
    };
    let n = list
        .values
        .iter()
        .find(|kv| kv.key == "n")
        .and_then(|kv| kv.value.clone());
    assert_eq!(
        n.and_then(|v| v.value),
        Some(any_value::Value::DoubleValue(3.0))
    );
}

#[test]
fn move_add_remove_copy_and_router() {
    let mut c = chain(json!([
        {"type": "router", "routes": [
            {"expr": r#"body matches "^\\{""#, "output": "json"},
            {"expr": r#"body startsWith "drop""#, "output": "gone"}
        ], "default": "plain"},
        {"type": "json_parser", "id": "json", "output": "tag"},
        {"type": "add", "id": "plain", "field": "attributes.kind", "value": "plain", "output": "tag"},
        {"type": "filter", "id": "gone", "expr": "true"},
        {"type": "copy", "id": "tag", "from": "attributes.kind", "to": "resource.kind", "on_error": "send_quiet"},
        {"type": "move", "from": "attributes.a", "to": "attributes.b", "on_error": "send_quiet"},
        {"type": "remove", "field": "attributes.kind", "on_error": "send_quiet"}
    ]));
    let out = run(
        &mut c,
        vec![
            body_entry(r#"{"a":"x"}"#),
            body_entry("hello"),
            body_entry("drop me"),
        ],
    );
    assert_eq!(out.entries.len(), 2);
    assert_eq!(out.dropped.len(), 1, "filtered entries are done, not lost");
    let json_entry = &out.entries[0];
    assert_eq!(json_entry.attributes.get("b"), Some(&json!("x")));
    assert!(!json_entry.attributes.contains_key("a"));
    let plain = &out.entries[1];
    assert_eq!(plain.resource.get("kind"), Some(&json!("plain")));
    assert!(!plain.attributes.contains_key("kind"));
}

#[test]
fn if_conditions_skip_operators() {
    let mut c = chain(
        json!([{"type": "add", "field": "attributes.x", "value": 1, "if": r#"body == "yes""#}]),
    );
    let out = run(&mut c, vec![body_entry("yes"), body_entry("no")]);
    assert_eq!(out.entries[0].attributes.get("x"), Some(&json!(1)));
    assert!(!out.entries[1].attributes.contains_key("x"));
}

#[test]
fn recombine_with_is_first_entry() {
    let mut c = chain(
        json!([{"type": "recombine", "combine_field": "body", "is_first_entry": r#"body matches "^\\d""#, "source_identifier": "attributes.src"}]),
    );
    let out = run(
        &mut c,
        vec![
            body_entry("1 start"),
            body_entry(" cont"),
            body_entry("2 next"),
        ],
    );
    assert_eq!(bodies(&out.entries), vec!["1 start\n cont"]);
    assert_eq!(c.held().len(), 1);
    let mut out = Output::default();
    c.flush(Instant::now(), true, &mut out);
    assert_eq!(bodies(&out.entries), vec!["2 next"]);
}

#[test]
fn operator_problems_are_reported_together() {
    let configs: Vec<OperatorConfig> = serde_json::from_value(json!([
        {"type": "regex_parser", "regex": "(unnamed)"},
        {"type": "move", "from": "body"},
        {"type": "add", "field": "body", "value": "x", "output": "nowhere"},
        {"type": "recombine", "combine_field": "body"},
        {"type": "router", "id": "r", "routes": [{"expr": "true", "output": "r"}]},
    ]))
    .expect("decodes");
    let problems = super::operators::problems(&configs);
    assert!(problems.len() >= 4, "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("named capture")));
    assert!(problems.iter().any(|p| p.contains("nowhere")));
    assert!(problems.iter().any(|p| p.contains("is_first_entry")));
    let looped: Vec<OperatorConfig> = serde_json::from_value(json!([
        {"type": "router", "id": "r", "routes": [{"expr": "true", "output": "r"}]}
    ]))
    .expect("decodes");
    assert!(
        super::operators::problems(&looped)
            .iter()
            .any(|p| p.contains("itself"))
    );
    let unknown = serde_json::from_value::<Vec<OperatorConfig>>(json!([{"type": "csv_parser"}]));
    assert!(unknown.is_err());
}

// ---------------------------------------------------------------- OTLP

#[test]
fn entries_become_otlp_grouped_by_resource() {
    let mut a = body_entry("a");
    a.resource.insert("k8s.pod.name".into(), json!("p1"));
    a.attributes.insert("log.file.name".into(), json!("x.log"));
    a.timestamp = Some(5);
    a.observed = 9;
    let mut b = body_entry("b");
    b.resource.insert("k8s.pod.name".into(), json!("p2"));
    let mut c = body_entry("c");
    c.resource = a.resource.clone();
    let logs = to_resource_logs(vec![a, b, c]);
    assert_eq!(logs.len(), 2);
    let first = &logs[0].scope_logs[0].log_records;
    assert_eq!(first.len(), 2);
    assert_eq!(
        (first[0].time_unix_nano, first[0].observed_time_unix_nano),
        (5, 9)
    );
    assert_eq!(first[0].attributes[0].key, "log.file.name");
    assert_eq!(
        first[1].body.as_ref().and_then(|b| b.value.clone()),
        Some(any_value::Value::StringValue("c".into()))
    );
}

// ---------------------------------------------------------------- reader

fn settings(start_at_beginning: bool) -> Settings {
    Settings {
        fingerprint_size: 1000,
        splitter: splitter(Mode::Newline, 1 << 20),
        start_at_beginning,
        force_flush_period: Duration::from_millis(500),
        max_concurrent_files: 1024,
        delete_after_read: false,
    }
}

/// One poll: discover, read everything, commit it; returns the lines.
fn poll(tracker: &mut Tracker, paths: &[PathBuf]) -> Vec<String> {
    tracker.discover(paths);
    let mut lines = Vec::new();
    loop {
        let mut tokens = Vec::new();
        let more = tracker.read(Instant::now(), 1000, 1 << 20, &mut tokens);
        let marks: Vec<Mark> = tokens.iter().map(|t| t.mark).collect();
        tracker.commit(&marks, &[]);
        lines.extend(
            tokens
                .into_iter()
                .filter_map(|t| t.bytes)
                .map(|b| String::from_utf8_lossy(&b).into_owned()),
        );
        if !more {
            break;
        }
    }
    tracker.close_finished();
    lines
}

#[test]
fn start_at_end_skips_what_exists_at_the_first_poll_only() {
    let dir = temp_dir();
    let log = dir.join("app.log");
    append(&log, "old 1\nold 2\n");
    let mut t = Tracker::new(settings(false), Vec::new());
    assert!(poll(&mut t, &[log.clone()]).is_empty());
    append(&log, "new 1\n");
    let other = dir.join("other.log");
    append(&other, "other 1\n");
    assert_eq!(
        poll(&mut t, &[log.clone(), other.clone()]),
        vec!["new 1", "other 1"]
    );
}

#[test]
fn rename_and_create_rotation_loses_and_repeats_nothing() {
    let dir = temp_dir();
    let log = dir.join("app.log");
    let mut t = Tracker::new(settings(true), Vec::new());
    append(&log, "line 1\nline 2\n");
    assert_eq!(poll(&mut t, &[log.clone()]), vec!["line 1", "line 2"]);
    append(&log, "line 3\n");
    std::fs::rename(&log, dir.join("app.log.1")).expect("renames");
    append(&log, "line 4\n");
    // Only app.log matches: line 3 comes through the handle still open on the old file.
    let mut got = poll(&mut t, &[log.clone()]);
    got.sort();
    assert_eq!(got, vec!["line 3", "line 4"]);
    // The rotated file matched later (e.g. `app.log*`) is known by fingerprint.
    append(&log, "line 5\n");
    assert_eq!(
        poll(&mut t, &[log.clone(), dir.join("app.log.1")]),
        vec!["line 5"]
    );
}

#[test]
fn copytruncate_rotation_reads_the_new_start() {
    let dir = temp_dir();
    let log = dir.join("app.log");
    let copy = dir.join("app.log.1");
    let mut t = Tracker::new(settings(true), Vec::new());
    append(&log, "first generation line 1\n");
    assert_eq!(
        poll(&mut t, &[log.clone()]),
        vec!["first generation line 1"]
    );
    append(&log, "first generation line 2\n");
    // copytruncate: copy, then truncate in place, then new writes.
    std::fs::copy(&log, &copy).expect("copies");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("opens")
        .set_len(0)
        .expect("truncates");
    append(&log, "second generation 1\n");
    let mut got = poll(&mut t, &[log.clone(), copy.clone()]);
    got.sort();
    assert_eq!(got, vec!["first generation line 2", "second generation 1"]);
    assert!(
        poll(&mut t, &[log.clone(), copy.clone()]).is_empty(),
        "nothing twice"
    );
}

#[test]
fn copytruncate_without_the_copy_matched_never_reads_the_new_content_twice() {
    let dir = temp_dir();
    let log = dir.join("app.log");
    let mut t = Tracker::new(settings(true), Vec::new());
    append(&log, "old generation a\nold generation b\n");
    assert_eq!(
        poll(&mut t, &[log.clone()]),
        vec!["old generation a", "old generation b"]
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("opens")
        .set_len(0)
        .expect("truncates");
    append(
        &log,
        "a new generation, longer than the old offset was ........\n",
    );
    assert_eq!(
        poll(&mut t, &[log.clone()]),
        vec!["a new generation, longer than the old offset was ........"],
        "read once, from its start, not from the old offset"
    );
    assert!(poll(&mut t, &[log.clone()]).is_empty());
}

#[test]
fn restart_resumes_at_the_committed_offset() {
    let dir = temp_dir();
    let log = dir.join("app.log");
    append(&log, "a\nb\n");
    let mut t = Tracker::new(settings(false), Vec::new());
    t.discover(&[log.clone()]);
    // A restored file: known at offset 2 ("a\n" done).
    let known = vec![Known {
        fingerprint: b"a\nb\n".to_vec(),
        offset: 2,
        path: log.display().to_string(),
    }];
    let mut t2 = Tracker::new(settings(false), known);
    assert_eq!(
        poll(&mut t2, &[log.clone()]),
        vec!["b"],
        "a known file resumes, start_at end notwithstanding"
    );
    drop(t);
}

#[test]
fn a_refusal_rewinds_to_the_committed_offset() {
    let dir = temp_dir();
    let log = dir.join("app.log");
    append(&log, "x1\nx2\nx3\n");
    let mut t = Tracker::new(settings(true), Vec::new());
    t.discover(&[log.clone()]);
    let mut tokens = Vec::new();
    t.read(Instant::now(), 2, 1 << 20, &mut tokens);
    assert_eq!(tokens.len(), 2);
    t.commit(&[tokens[0].mark], &[]);
    t.rewind();
    let mut again = Vec::new();
    t.read(Instant::now(), 100, 1 << 20, &mut again);
    let lines: Vec<Vec<u8>> = again.into_iter().filter_map(|t| t.bytes).collect();
    assert_eq!(lines, vec![b"x2".to_vec(), b"x3".to_vec()]);
}

#[test]
fn a_held_entry_caps_the_committed_offset() {
    let dir = temp_dir();
    let log = dir.join("app.log");
    append(&log, "p1\nf2\n");
    let mut t = Tracker::new(settings(true), Vec::new());
    t.discover(&[log.clone()]);
    let mut tokens = Vec::new();
    t.read(Instant::now(), 100, 1 << 20, &mut tokens);
    // The second line completed, the first is still held by an operator.
    t.commit(&[tokens[1].mark], &[tokens[0].mark]);
    assert_eq!(t.known()[0].offset, 0);
}

#[test]
fn a_long_unfinished_line_is_bounded_and_flushed_after_the_period() {
    let dir = temp_dir();
    let log = dir.join("app.log");
    let mut s = settings(true);
    s.splitter = splitter(Mode::Newline, 10);
    s.force_flush_period = Duration::from_millis(0);
    let mut t = Tracker::new(s, Vec::new());
    append(&log, &"z".repeat(25));
    t.discover(&[log.clone()]);
    let mut tokens = Vec::new();
    let now = Instant::now();
    t.read(now, 100, 1 << 20, &mut tokens);
    let sizes: Vec<usize> = tokens
        .iter()
        .filter_map(|t| t.bytes.as_ref())
        .map(Vec::len)
        .collect();
    assert_eq!(sizes, vec![10, 10], "max_log_size pieces; the rest waits");
    assert!(t.waiting());
    t.read(now, 100, 1 << 20, &mut tokens);
    let sizes: Vec<usize> = tokens
        .iter()
        .filter_map(|t| t.bytes.as_ref())
        .map(Vec::len)
        .collect();
    assert_eq!(
        sizes,
        vec![10, 10, 5],
        "flushed once the file stopped growing"
    );
}

// ---------------------------------------------------------------- config and receiver

#[test]
fn defaults_are_the_collectors() {
    let c = Config::default();
    assert_eq!(c.start_at, "end");
    assert!(c.include_file_name && !c.include_file_path);
    assert_eq!(c.poll_interval.get(), Duration::from_millis(200));
    assert_eq!(c.fingerprint_size, ByteSize(1000));
    assert_eq!(c.max_log_size, ByteSize(1 << 20));
    assert_eq!(c.max_concurrent_files, 1024);
    assert_eq!(c.encoding, "utf-8");
    assert_eq!(ByteSize::parse("1kb"), Ok(ByteSize(1000)));
    assert_eq!(ByteSize::parse("1KiB"), Ok(ByteSize(1024)));
    assert_eq!(ByteSize::parse("2MiB"), Ok(ByteSize(2 << 20)));
    assert!(ByteSize::parse("1 parsec").is_err());
}

#[test]
fn validate_reports_every_problem() {
    let c = config(json!({
        "start_at": "middle",
        "encoding": "utf-16le",
        "fingerprint_size": 4,
        "multiline": {"line_start_pattern": "a", "line_end_pattern": "b"},
        "header": {"pattern": "x"},
        "operators": [{"type": "move"}]
    }));
    let problems = c.validate();
    for needle in [
        "include",
        "start_at",
        "utf-16le",
        "fingerprint_size",
        "only one of",
        "header",
        "from",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{needle}: {problems:?}"
        );
    }
}

#[test]
fn the_real_configs_validate() {
    // opentelemetry-helm-charts daemonset-collector-logs and contrib's fault-tolerant example.
    let helm = config(json!({
        "exclude": [], "include": ["/var/log/pods/*/*/*.log"], "include_file_name": false,
        "include_file_path": true, "start_at": "end",
        "operators": [{"id": "container-parser", "max_log_size": 102400, "type": "container"}],
        "retry_on_failure": {"enabled": true}
    }));
    assert_eq!(helm.validate(), Vec::<String>::new());
    let contrib = config(
        json!({"include": ["/var/log/busybox/simple.log"], "storage": "file_storage/filelogreceiver"}),
    );
    assert_eq!(contrib.validate(), Vec::<String>::new());
}

#[test]
fn the_receiver_checkpoints_only_what_was_accepted() {
    let dir = temp_dir();
    let log = dir.join("app.log");
    let storage = Storage {
        extension: "file_storage".into(),
        directory: dir.join("state"),
        fsync: false,
        create_directory: true,
        directory_permissions: 0o750,
        lock_timeout: Duration::from_millis(100),
    };
    let c = config(
        json!({"include": [format!("{}/*.log", dir.display())], "start_at": "beginning", "include_file_path": true}),
    );
    append(&log, "one\ntwo\n");
    let mut r = FileLog::new("filelog/a", &c, Some(&storage)).expect("builds");
    assert!(
        FileLog::new("filelog/a", &c, Some(&storage)).is_err(),
        "the checkpoint is locked"
    );
    r.discover();
    let (out, _) = r.next_batch(Instant::now(), false);
    assert_eq!(bodies(&out.entries), vec!["one", "two"]);
    assert_eq!(out.entries[0].attributes["log.file.name"], json!("app.log"));
    assert_eq!(
        out.entries[0].attributes["log.file.path"],
        json!(log.display().to_string())
    );
    r.settle(&out.marks(), &Delivered::Refused("full".into()))
        .expect("settles");
    let (again, _) = r.next_batch(Instant::now(), false);
    assert_eq!(
        bodies(&again.entries),
        vec!["one", "two"],
        "refused data is read again"
    );
    r.settle(&again.marks(), &Delivered::Accepted)
        .expect("settles");
    drop(r);
    append(&log, "three\n");
    let mut restarted = FileLog::new("filelog/a", &c, Some(&storage)).expect("builds again");
    restarted.discover();
    let (out, _) = restarted.next_batch(Instant::now(), false);
    assert_eq!(
        bodies(&out.entries),
        vec!["three"],
        "the restart resumes after the accepted lines"
    );
}
