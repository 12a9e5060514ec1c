//! Real, published Collector configs (distribution defaults, Helm-rendered charts, the
//! OpenTelemetry demo, SDK and vendor examples; `integration/real-configs/`, each stored
//! unchanged under a header naming its source) through `oxcol validate`, against the
//! expectations in `integration/real-configs/EXPECTED.md`: per config either `valid` or
//! the list of gaps (component types and keys oxcol does not have yet).
//!
//! The test fails when a config regresses AND when a gap closes without its expectation
//! being updated, so the file always says what real users would hit. To refresh it after
//! a change that is meant to close gaps: `OXCOL_UPDATE_EXPECTED=1 cargo test -p
//! oxcol-integration --test real_configs`, then review the diff.
//!
//! Helm-rendered ConfigMaps are stored as rendered; the test validates their `relay`
//! entry, which is the Collector config the chart mounts.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment values the configs reference, as their deployments set them (the demo's
/// `.env`, the chart's downward-API variables).
const PLAUSIBLE_ENV: &[(&str, &str)] = &[
    ("MY_POD_IP", "10.1.2.3"),
    ("OTEL_K8S_NODE_NAME", "node-1"),
    ("OTEL_K8S_NODE_IP", "10.1.0.1"),
    ("OTEL_K8S_POD_NAME", "collector-0"),
    ("OTEL_K8S_POD_IP", "10.1.2.3"),
    ("OTEL_K8S_NAMESPACE", "default"),
    ("K8S_NODE_NAME", "node-1"),
    ("OTEL_COLLECTOR_HOST", "otel-collector"),
    ("OTEL_COLLECTOR_PORT_GRPC", "4317"),
    ("OTEL_COLLECTOR_PORT_HTTP", "4318"),
    ("FRONTEND_PROXY_ADDR", "frontend-proxy:8080"),
    ("IMAGE_PROVIDER_HOST", "image-provider"),
    ("IMAGE_PROVIDER_PORT", "8081"),
    ("AD_PROMETHEUS_PORT", "9464"),
    ("POSTGRES_HOST", "postgresql"),
    ("POSTGRES_PORT", "5432"),
    ("POSTGRES_MONITORING_PASSWORD", "otel"),
    ("REDACTION_HMAC_KEY", "0123456789abcdef"),
];

/// Configs that are overlays of another one, validated as the deployment runs them:
/// `--config BASE --config OVERLAY` (the demo's docker-compose passes both).
const OVERLAYS: &[(&str, &str)] = &[
    (
        "open-telemetry__opentelemetry-demo__src__otel-collector__otelcol-config-extras.yaml",
        "open-telemetry__opentelemetry-demo__src__otel-collector__otelcol-config.yaml",
    ),
    (
        "open-telemetry__opentelemetry-demo__src__otel-collector__otelcol-config-observability.yaml",
        "open-telemetry__opentelemetry-demo__src__otel-collector__otelcol-config.yaml",
    ),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("real-configs")
}

/// The Collector config inside a stored file: the file itself, or the `relay: |` block of
/// a Helm-rendered ConfigMap, dedented.
fn collector_config(text: &str) -> String {
    if !text.lines().any(|line| line == "kind: ConfigMap") {
        return text.to_string();
    }
    let mut lines = text
        .lines()
        .skip_while(|line| line.trim_end() != "  relay: |")
        .skip(1);
    let mut out = String::new();
    for line in lines.by_ref() {
        if line.trim().is_empty() {
            out.push('\n');
            continue;
        }
        match line.strip_prefix("    ") {
            Some(rest) => {
                out.push_str(rest);
                out.push('\n');
            }
            None => break,
        }
    }
    assert!(
        !out.trim().is_empty(),
        "a ConfigMap without a `relay: |` entry"
    );
    out
}

/// Every `${env:NAME...}` and `${NAME}` the config references.
fn referenced_env(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("${") {
        if text[..at].ends_with('$') {
            continue; // `$${` is a literal `${`
        }
        let rest = &text[at + 2..];
        let rest = rest.strip_prefix("env:").unwrap_or(rest);
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            names.insert(name);
        }
    }
    names
}

/// One problem line of `oxcol validate` as a gap: the location dropped, unknown types as
/// `<kind> <type>`, and the long "expected one of" tails cut (they grow as keys are added).
fn gap(message: &str) -> String {
    if let Some(kind_and_type) = unknown_type(message) {
        return kind_and_type;
    }
    let cut = ["; expected", ", expected", "; oxcol has:"]
        .iter()
        .filter_map(|marker| message.find(marker))
        .min()
        .unwrap_or(message.len());
    message[..cut].trim_end().to_string()
}

/// `<kind> <type>` when the message says a component type is unknown.
fn unknown_type(message: &str) -> Option<String> {
    [
        "receiver",
        "processor",
        "exporter",
        "extension",
        "connector",
    ]
    .iter()
    .find_map(|kind| {
        let rest = message.strip_prefix(&format!("unknown {kind} type \""))?;
        let name: String = rest.chars().take_while(|c| *c != '"').collect();
        Some(format!("{kind} {name}"))
    })
}

/// A reference to a component whose type is already reported unknown only repeats that gap.
fn is_cascade(message: &str, unknown_types: &BTreeSet<String>) -> bool {
    if let Some(rest) = message.strip_prefix("service.extensions: extension \"")
        && message.ends_with("is not defined under `extensions`")
    {
        let type_part: String = rest
            .chars()
            .take_while(|c| *c != '"' && *c != '/')
            .collect();
        return unknown_types.contains(&format!("extension {type_part}"));
    }
    let Some(at) = message.find(" references ") else {
        return false;
    };
    if !message.contains("which is not defined under") {
        return false;
    }
    let rest = &message[at + " references ".len()..];
    let Some((kind, rest)) = rest.split_once(" \"") else {
        return false;
    };
    let id: String = rest.chars().take_while(|c| *c != '"').collect();
    let type_part = id.split('/').next().unwrap_or_default();
    // A connector is referenced as a receiver of one pipeline and an exporter of another.
    unknown_types.contains(&format!("{kind} {type_part}"))
        || unknown_types.contains(&format!("connector {type_part}"))
}

/// The extracted config of a stored file, written into `work`; its path and text.
fn extract(work: &Path, file: &Path) -> (PathBuf, String) {
    let text = std::fs::read_to_string(file).expect("read a stored config");
    let config = collector_config(&text);
    let path = work.join(file.file_name().expect("a file name"));
    std::fs::write(&path, &config).expect("write the extracted config");
    (path, config)
}

/// The dotted key path of the parent of the key on `line` (1-based), read from the
/// indentation: where an "unknown field" is, so a gap says `exporters.otlp.sending_queue`.
fn parent_path(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(target) = lines.get(line.saturating_sub(1)) else {
        return String::new();
    };
    let indent = |l: &str| l.len() - l.trim_start_matches([' ', '-']).len();
    let mut current = indent(target);
    let mut path = Vec::new();
    for candidate in lines[..line.saturating_sub(1)].iter().rev() {
        let trimmed = candidate.trim_start_matches([' ', '-']);
        if trimmed.is_empty() || trimmed.starts_with('#') || indent(candidate) >= current {
            continue;
        }
        current = indent(candidate);
        if let Some((key, _)) = trimmed.split_once(':') {
            path.push(key.trim().trim_matches(['"', '\'']).to_string());
        }
        if current == 0 {
            break;
        }
    }
    path.reverse();
    path.join(".")
}

/// Runs `oxcol validate` on one stored config (after its base, for an overlay):
/// `Ok(())` when valid, else its gaps.
fn validate(work: &Path, file: &Path) -> Result<(), BTreeSet<String>> {
    let (path, config) = extract(work, file);
    let mut command = Command::new(common::oxcol_binary());
    command.arg("validate").current_dir(work);
    let name = file
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .to_string();
    let mut texts = vec![config.clone()];
    let mut base_prefix = None;
    if let Some((_, base)) = OVERLAYS.iter().find(|(overlay, _)| *overlay == name) {
        let (base_path, base_text) = extract(&work.join("base"), &file.with_file_name(base));
        command.arg("--config").arg(&base_path);
        base_prefix = Some(format!("{}:", base_path.display()));
        texts.push(base_text);
    }
    command.arg("--config").arg(&path);
    for name in texts.iter().flat_map(|text| referenced_env(text)) {
        let value = PLAUSIBLE_ENV
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, value)| *value);
        command.env(
            &name,
            value.unwrap_or_else(|| {
                panic!(
                    "{}: add a plausible value for ${{env:{name}}} to PLAUSIBLE_ENV",
                    file.display()
                )
            }),
        );
    }
    let output = command.output().expect("run oxcol validate");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        return Ok(());
    }
    let prefix = format!("{}:", path.display());
    let messages: Vec<String> = stderr
        .lines()
        .filter(|line| !line.ends_with("found in the configuration"))
        .map(|line| {
            match line
                .strip_prefix(&prefix)
                .map(|rest| (rest, config.as_str()))
                .or_else(|| {
                    line.strip_prefix(base_prefix.as_deref()?)
                        .map(|rest| (rest, texts.last().map(String::as_str).unwrap_or("")))
                }) {
                // `line:column: message`; an unknown or bad key also gets where it is.
                Some((rest, text)) => {
                    let mut parts = rest.splitn(3, ':');
                    let line: usize = parts.next().and_then(|l| l.parse().ok()).unwrap_or(0);
                    let message = parts.nth(1).unwrap_or(rest).trim().to_string();
                    let keyed = [
                        "unknown field",
                        "missing field",
                        "invalid type",
                        "invalid value",
                    ]
                    .iter()
                    .any(|start| message.starts_with(start));
                    match parent_path(text, line) {
                        parent if keyed && !parent.is_empty() => format!("{parent}: {message}"),
                        _ => message,
                    }
                }
                None => line.trim().to_string(),
            }
        })
        .map(|line| line.replace(&work.display().to_string(), "<dir>"))
        .collect();
    let unknown_types: BTreeSet<String> = messages.iter().filter_map(|m| unknown_type(m)).collect();
    let gaps: BTreeSet<String> = messages
        .iter()
        .filter(|message| !is_cascade(message, &unknown_types))
        .map(|message| gap(message))
        .collect();
    assert!(
        !gaps.is_empty(),
        "{}: oxcol validate failed without a message: {stderr}",
        file.display()
    );
    Err(gaps)
}

/// EXPECTED.md: `## <file>` then `- valid` or one `- <gap>` per line.
fn parse_expected(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("## ") {
            current = Some(name.trim().to_string());
            expected.entry(name.trim().to_string()).or_default();
        } else if let (Some(item), Some(name)) = (line.strip_prefix("- "), current.as_ref()) {
            expected
                .entry(name.clone())
                .or_default()
                .insert(item.trim().to_string());
        }
    }
    expected
}

const EXPECTED_HEADER: &str = "# What `oxcol validate` says about each real config\n\n\
Checked by `integration/tests/real_configs.rs`: per config in this directory, `valid` or the gaps \
(component types and keys oxcol does not have yet, as `oxcol validate` words them, without \
file positions). The test fails when a config regresses and when a gap closes without this file \
being updated. Regenerate with `OXCOL_UPDATE_EXPECTED=1 cargo test -p oxcol-integration --test \
real_configs` and review the diff.\n";

fn render_expected(results: &BTreeMap<String, Result<(), BTreeSet<String>>>) -> String {
    let valid = results.values().filter(|r| r.is_ok()).count();
    let mut out = format!(
        "{EXPECTED_HEADER}\n{valid} of {} validate.\n",
        results.len()
    );
    for (name, result) in results {
        out.push_str(&format!("\n## {name}\n"));
        match result {
            Ok(()) => out.push_str("- valid\n"),
            Err(gaps) => gaps
                .iter()
                .for_each(|gap| out.push_str(&format!("- {gap}\n"))),
        }
    }
    out
}

#[test]
fn real_collector_configs_validate_as_expected() {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("integration/real-configs exists")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "the corpus has {} configs; it should have 20 or more",
        files.len()
    );
    let work = std::env::temp_dir().join(format!("oxcol-real-configs-{}", std::process::id()));
    std::fs::create_dir_all(work.join("base")).expect("create a work dir");
    let results: BTreeMap<String, Result<(), BTreeSet<String>>> = files
        .iter()
        .map(|file| {
            (
                file.file_name()
                    .expect("a file name")
                    .to_string_lossy()
                    .to_string(),
                validate(&work, file),
            )
        })
        .collect();
    let _ = std::fs::remove_dir_all(&work);
    let valid = results.values().filter(|r| r.is_ok()).count();
    eprintln!("{valid} of {} real configs validate", results.len());

    let expected_path = dir.join("EXPECTED.md");
    let rendered = render_expected(&results);
    if std::env::var_os("OXCOL_UPDATE_EXPECTED").is_some() {
        std::fs::write(&expected_path, &rendered).expect("write EXPECTED.md");
        return;
    }
    let expected = parse_expected(&std::fs::read_to_string(&expected_path).unwrap_or_default());
    let mut problems = Vec::new();
    for (name, result) in &results {
        let actual: BTreeSet<String> = match result {
            Ok(()) => BTreeSet::from(["valid".to_string()]),
            Err(gaps) => gaps.clone(),
        };
        match expected.get(name) {
            None => problems.push(format!("{name}: not in EXPECTED.md; oxcol says {actual:?}")),
            Some(want) if *want != actual => {
                let newly: Vec<&String> = actual.difference(want).collect();
                let closed: Vec<&String> = want.difference(&actual).collect();
                problems.push(format!("{name}:\n    new (regressions, or a new wording): {newly:?}\n    gone (closed gaps: update EXPECTED.md): {closed:?}"));
            }
            Some(_) => {}
        }
    }
    for name in expected.keys().filter(|name| !results.contains_key(*name)) {
        problems.push(format!("{name}: in EXPECTED.md but not in the corpus"));
    }
    assert!(
        problems.is_empty(),
        "{} of {} configs differ from integration/real-configs/EXPECTED.md:\n{}\n\nIf the change is intended, regenerate it: OXCOL_UPDATE_EXPECTED=1 cargo test -p oxcol-integration --test real_configs",
        problems.len(),
        results.len(),
        problems.join("\n")
    );
}

#[test]
fn helm_config_maps_yield_their_relay_config() {
    let rendered = "apiVersion: v1\nkind: ConfigMap\ndata:\n  relay: |\n    exporters:\n      debug: {}\n\n    service:\n      pipelines: {}\n---\nkind: Other\n";
    assert_eq!(
        collector_config(rendered),
        "exporters:\n  debug: {}\n\nservice:\n  pipelines: {}\n"
    );
    assert_eq!(collector_config("receivers: {}\n"), "receivers: {}\n");
}

#[test]
fn gaps_drop_positions_and_cascades() {
    assert_eq!(
        gap("unknown receiver type \"hostmetrics\" for \"hostmetrics\"; oxcol has: otlp"),
        "receiver hostmetrics"
    );
    assert_eq!(
        gap("unknown field `foo`, expected one of `a`, `b`"),
        "unknown field `foo`"
    );
    let unknown = BTreeSet::from(["receiver hostmetrics".to_string()]);
    assert!(is_cascade(
        "pipeline \"metrics\" references receiver \"hostmetrics/x\", which is not defined under `receivers`",
        &unknown
    ));
    assert!(!is_cascade(
        "pipeline \"metrics\" references receiver \"otlp\", which is not defined under `receivers`",
        &unknown
    ));
    let connectors = BTreeSet::from(["connector spanmetrics".to_string()]);
    assert!(is_cascade(
        "pipeline \"metrics\" references receiver \"spanmetrics\", which is not defined under `receivers`",
        &connectors
    ));
    let unknown = BTreeSet::from(["extension zpages".to_string()]);
    assert!(is_cascade(
        "service.extensions: extension \"zpages\" is not defined under `extensions`",
        &unknown
    ));
    assert!(!is_cascade(
        "service.extensions: extension \"pprof\" is not defined under `extensions`",
        &unknown
    ));
    let text = "exporters:\n  otlp:\n    sending_queue:\n      batch:\n        - name: a\n          bad: 1\n";
    assert_eq!(parent_path(text, 4), "exporters.otlp.sending_queue");
    assert_eq!(parent_path(text, 6), "exporters.otlp.sending_queue.batch");
    assert_eq!(
        referenced_env("a: ${env:MY_POD_IP}:4317 ${POSTGRES_HOST} $${NOT_THIS"),
        BTreeSet::from(["MY_POD_IP".into(), "POSTGRES_HOST".into()])
    );
}
