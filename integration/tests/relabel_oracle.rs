//! Oracle test for oxcol's relabel engine (`oxcol_core::relabel`): a real Prometheus
//! (Debian package `prometheus`, installed by scripts/test) scrapes a small HTTP endpoint
//! this test serves, applies `metric_relabel_configs`, and the series it stores must be
//! exactly the label sets oxcol's engine computes from the same input and the same rules.
//!
//! The rules are written once, as JSON (which is YAML), into Prometheus' config and
//! decoded from the same text for oxcol. Prometheus gets a bounded time to scrape and is
//! always killed (Drop guard, oxcol_integration::prometheus).
//!
//! Edge cases covered: empty regex match, missing source labels, static replacement,
//! `$1xx` (group "1xx" does not exist) vs `${1}xx`, hashmod, labelmap with `$1`,
//! labeldrop/labelkeep, keepequal/dropequal, lowercase/uppercase, `__tmp_` labels (kept by
//! metric relabeling), `__name__` rename, keep/drop, and a rule producing an invalid label
//! name (Prometheus fails the whole scrape: no series from that job, `up` = 0).
//!
//! Prometheus 2.42 (Debian bookworm) differs from 3.x in two places this test avoids:
//! its regexes lack `(?s)` (so no newline in values), and an empty replacement with a
//! templated `target_label` deleted the literal template name (fixed in 2.50).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use oxcol_core::relabel::{self, LabelSet, NameValidation, RelabelConfig};
use oxcol_integration::prometheus::{Prometheus, sample_value};

/// The scraped exposition: every series the test feeds both engines.
const EXPOSITION: &str = r#"# TYPE http_requests_total untyped
http_requests_total{method="GET",code="200",path="/api/v1"} 1
http_requests_total{method="POST",code="500",path="/api/v2"} 2
http_requests_total{method="Delete",code="404"} 3
latency_ms{svc="Checkout",le="0.5"} 4
debug_metric{env="dev"} 5
keep_me_not{x="1"} 6
temp_celsius{sensor="A-1",zone="north",other="z"} 7
meta_series{tag_team="infra",tag_owner="bob",other="z"} 8
equal_series{a="1",b="1"} 9
equal_series{a="1",b="2"} 10
same_name{x="same_name"} 11
invalid_source{x_9lives="1"} 12
"#;

/// Rules for job "good" (JSON is YAML: the same bytes go to Prometheus and to oxcol).
const GOOD_RULES: &str = r#"[
  {"source_labels": ["__name__"], "regex": "debug_.*", "action": "drop"},
  {"source_labels": ["__name__"], "regex": "[^k].*", "action": "keep"},
  {"source_labels": ["method"], "target_label": "method", "action": "lowercase"},
  {"source_labels": ["nonexistent"], "target_label": "missing_copy"},
  {"target_label": "static_label", "replacement": "fixed"},
  {"source_labels": ["path"], "regex": "", "target_label": "path_empty", "replacement": "yes"},
  {"source_labels": ["path"], "regex": "/api/(v\\d+)", "target_label": "api_version", "replacement": "${1}"},
  {"source_labels": ["code"], "regex": "(\\d)\\d\\d", "target_label": "code_class", "replacement": "$1xx"},
  {"source_labels": ["code"], "regex": "(\\d)\\d\\d", "target_label": "code_class2", "replacement": "${1}xx"},
  {"source_labels": ["path", "method"], "modulus": 8, "target_label": "shard", "action": "hashmod"},
  {"regex": "tag_(.*)", "replacement": "owner_$1", "action": "labelmap"},
  {"regex": "tag_owner", "action": "labeldrop"},
  {"source_labels": ["a"], "target_label": "b", "action": "keepequal"},
  {"source_labels": ["__name__"], "target_label": "x", "action": "dropequal"},
  {"source_labels": ["svc"], "target_label": "svc_upper", "action": "uppercase"},
  {"source_labels": ["zone"], "regex": "(.+)", "target_label": "__tmp_zone", "replacement": "$1"},
  {"source_labels": ["__tmp_zone", "sensor"], "separator": "/", "regex": "(.+)/(.+)", "target_label": "location", "replacement": "${1}-${2}"},
  {"source_labels": ["__name__"], "regex": "(.*)_ms", "target_label": "__name__", "replacement": "${1}_seconds"},
  {"source_labels": ["method"], "regex": "(?i)GET|post", "target_label": "write", "replacement": "maybe"},
  {"regex": "other|env", "action": "labeldrop"},
  {"regex": "__.*|job|instance|[a-z]{3,}(_[a-z0-9]+)*|a|b|x|x_9lives", "action": "labelkeep"}
]"#;

/// Rules for job "bad": labelmap turns `x_9lives` into `9lives`, invalid under
/// Prometheus 2's legacy names, so the whole scrape fails.
const BAD_RULES: &str = r#"[
  {"regex": "x_(.*)", "replacement": "$1", "action": "labelmap"}
]"#;

/// Serves EXPOSITION over HTTP on a free loopback port (thread lives until the test ends).
fn serve_exposition() -> u16 {
    let listener =
        TcpListener::bind("127.0.0.1:0").expect("binds a loopback port for the exposition");
    let port = listener
        .local_addr()
        .expect("bound listener has an address")
        .port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{EXPOSITION}",
                EXPOSITION.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
}

/// Series stored by Prometheus for `selector`, without the scrape's synthetic series.
fn stored_series(prometheus: &Prometheus, selector: &str) -> Result<Vec<LabelSet>, String> {
    let mut series: Vec<LabelSet> = prometheus
        .series(selector)?
        .iter()
        .filter_map(|s| s.as_object())
        .map(|s| {
            LabelSet::from_pairs(
                s.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())),
            )
        })
        .filter(|s| {
            let name = s.get("__name__");
            name != "up" && !name.starts_with("scrape_")
        })
        .collect();
    series.sort();
    Ok(series)
}

/// Parses the exposition's series into label sets (the simple subset written above).
fn exposed_series() -> Vec<LabelSet> {
    EXPOSITION
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (name, rest) = line.split_once('{').expect("every test series has labels");
            let (labels, _) = rest.split_once('}').expect("label block closes");
            let mut pairs = vec![("__name__".to_string(), name.to_string())];
            for pair in labels.split(',') {
                let (k, v) = pair.split_once('=').expect("label is k=\"v\"");
                pairs.push((k.to_string(), v.trim_matches('"').to_string()));
            }
            LabelSet::from_pairs(pairs)
        })
        .collect()
}

/// What oxcol's engine keeps for `job`: target labels first (as Prometheus' scrape loop
/// adds them before metric relabeling), then the rules; an invalid result fails the
/// whole scrape, as in Prometheus.
fn oxcol_series(job: &str, instance: &str, rules_json: &str) -> Vec<LabelSet> {
    let configs: Vec<RelabelConfig> =
        serde_json::from_str(rules_json).expect("rules decode as relabel configs");
    let rules = relabel::compile(&configs, NameValidation::Legacy).expect("rules are valid");
    let mut kept = Vec::new();
    for series in exposed_series() {
        let mut labels =
            LabelSet::from_pairs(series.iter().chain([("job", job), ("instance", instance)]));
        if !relabel::process(&mut labels, &rules) {
            continue;
        }
        if relabel::check_result(&labels, NameValidation::Legacy).is_err() {
            return Vec::new();
        }
        kept.push(labels);
    }
    kept.sort();
    kept
}

#[test]
fn prometheus_and_oxcol_relabel_the_same_series_the_same_way() {
    let exposition_port = serve_exposition();
    let target = format!("127.0.0.1:{exposition_port}");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n\
         - job_name: good\n  static_configs: [{{targets: ['{target}']}}]\n  metric_relabel_configs: {}\n\
         - job_name: bad\n  static_configs: [{{targets: ['{target}']}}]\n  metric_relabel_configs: {}\n",
        GOOD_RULES.replace('\n', " "),
        BAD_RULES.replace('\n', " ")
    );
    let mut prometheus = Prometheus::start(&config, &[]);

    // Wait (bounded) until both jobs were scraped: `up` exists for both.
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let up = prometheus.try_query("up", None);
        if let Ok(result) = &up {
            let up_of = |job: &str| {
                result
                    .iter()
                    .find(|s| s["metric"]["job"] == job)
                    .map(sample_value)
            };
            if let (Some(_), Some(bad)) = (up_of("good"), up_of("bad")) {
                assert_eq!(
                    bad, 0.0,
                    "Prometheus fails the scrape that yields an invalid label name: {result:?}"
                );
                break;
            }
        }
        let exited = prometheus.exit_status();
        if Instant::now() > deadline || exited.is_some() {
            panic!(
                "prometheus did not scrape both jobs within 45s (exit: {exited:?}, last answer {up:?})"
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }

    let instance = target.as_str();
    let expected_good = oxcol_series("good", instance, GOOD_RULES);
    let stored_good = stored_series(&prometheus, "{job=\"good\"}").expect("series API answers");
    let show = |sets: &[LabelSet]| {
        sets.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        show(&stored_good),
        show(&expected_good),
        "Prometheus (left) and oxcol (right) disagree"
    );
    // The test must exercise what it claims: spot checks on the agreed result.
    let text = show(&expected_good);
    for expected in [
        "__name__=\"latency_seconds\"",
        "code_class2=\"5xx\"",
        "owner_team=\"infra\"",
        "__tmp_zone=\"north\"",
        "location=\"north-A-1\"",
        "path_empty=\"yes\"",
        "method=\"delete\"",
        "svc_upper=\"CHECKOUT\"",
        "static_label=\"fixed\"",
        "shard=",
    ] {
        assert!(text.contains(expected), "expected {expected} in:\n{text}");
    }
    for absent in [
        "debug_metric",
        "keep_me_not",
        "same_name",
        "code_class=",
        "missing_copy",
        "other=",
        "tag_owner",
        "b=\"2\"",
        "le=",
    ] {
        assert!(!text.contains(absent), "{absent} must be gone:\n{text}");
    }
    assert_eq!(expected_good.len(), 8, "{text}");

    assert!(
        oxcol_series("bad", instance, BAD_RULES).is_empty(),
        "oxcol fails the scrape like Prometheus"
    );
    let stored_bad = stored_series(&prometheus, "{job=\"bad\"}").expect("series API answers");
    assert!(
        stored_bad.is_empty(),
        "Prometheus stored series from a failed scrape: {}",
        show(&stored_bad)
    );
}
