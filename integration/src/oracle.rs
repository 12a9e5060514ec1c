//! The real OpenTelemetry Collector as a differential oracle: the same config fragment and
//! the same OTLP input through the Collector and through oxcol, and the two outputs
//! compared in a canonical form ([`canonical`]) that ignores batching and order and nothing
//! else (docs/oracle.md).
//!
//! A case is a directory of `integration/oracle/cases/`: `config.yaml` (the processors and
//! connectors under test and `service.pipelines`, naming the receiver `otlp` and the
//! exporter `otlp`), `case.json` ([`CaseSettings`]) and optionally `metrics.json`,
//! `traces.json`, `logs.json` (OTLP/JSON, one request or a list sent in order); a signal
//! without its own file gets `integration/oracle/inputs/<signal>.json`. Each system runs with
//! that config plus a base config ([`base_config`]) holding only what is substituted: the
//! OTLP gRPC receiver on a free 127.0.0.1 port, the `otlp` exporter to an in-process sink
//! on a free port that records every request, and self-telemetry off. No batch processor.
//!
//! Never here: a case marked as expected to differ. A difference is a finding.

pub mod canonical;
pub mod diff;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use oxcol_core::Signal;
use prost::Message;
use serde::Deserialize;

use crate::child::{ChildGuard, spawn_logged};
use crate::net::free_port;
use crate::sink::{self, SinkConfig};
use canonical::Output;

/// The environment variable naming the oracle binary (set by scripts/test).
pub const ORACLE_ENV: &str = "OXCOL_ORACLE_OTELCOL";

/// The Collector builds a case can choose with `"oracle"` in its `case.json`: the name,
/// the environment variable scripts/test sets to its binary, and its manifest (relative
/// to the repository root). A case without `"oracle"` uses the main build.
pub const ORACLES: &[(&str, &str, &str)] = &[
    ("main", ORACLE_ENV, "integration/oracle/otelcol-oracle.yaml"),
    // Collector v0.148.0 with the routing connector and the resourcedetection processor,
    // which the proxy refuses (or cannot build) at the main build's release
    // (docs/oracle.md).
    (
        "routing",
        "OXCOL_ORACLE_OTELCOL_ROUTING",
        "integration/oracle/otelcol-oracle-routing.yaml",
    ),
];

/// The oracle a case's `"oracle"` names (`None`: the main build), or an error listing the
/// names there are.
pub fn oracle_entry(
    name: Option<&str>,
) -> Result<(&'static str, &'static str, &'static str), String> {
    let name = name.unwrap_or("main");
    ORACLES
        .iter()
        .copied()
        .find(|(known, ..)| *known == name)
        .ok_or_else(|| {
            let known: Vec<&str> = ORACLES.iter().map(|(known, ..)| *known).collect();
            format!("unknown oracle {name:?}: use one of {known:?}")
        })
}

/// Longest wait for a system to listen after it was started.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Output is complete when the sink saw no new request for this long.
pub const QUIET: Duration = Duration::from_millis(700);

/// Longest wait for output to become quiet (after the case's `settle_ms`).
pub const OUTPUT_TIMEOUT: Duration = Duration::from_secs(20);

/// Longest time one export of the input may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The main Collector oracle binary: `$OXCOL_ORACLE_OTELCOL`, or the one
/// `scripts/build-oracle` built for the current manifest. The error says how to build it.
pub fn oracle_binary(repo_root: &Path) -> Result<PathBuf, String> {
    oracle_binary_named(repo_root, None)
}

/// The binary of the oracle `name` (see [`ORACLES`]; `None`: the main one): its
/// environment variable when set, else what `scripts/build-oracle --path <manifest>`
/// prints. The error says how to build it.
pub fn oracle_binary_named(repo_root: &Path, name: Option<&str>) -> Result<PathBuf, String> {
    let (name, env, manifest) = oracle_entry(name)?;
    let build = if name == "main" {
        "scripts/build-oracle".to_string()
    } else {
        format!("scripts/build-oracle {manifest}")
    };
    if let Some(path) = std::env::var_os(env).filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{env}={} is not a file: run {build} and set {env} to the path it prints",
                path.display()
            ))
        };
    }
    let script = repo_root.join("scripts/build-oracle");
    let located = Command::new(&script)
        .arg("--path")
        .arg(repo_root.join(manifest))
        .output()
        .map_err(|error| format!("cannot run {} --path: {error}", script.display()))?;
    let path = PathBuf::from(String::from_utf8_lossy(&located.stdout).trim());
    if located.status.success() && path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "the Collector oracle {name:?} is not built (expected at {}): run {build} (a few minutes the first time; \
             scripts/test does it before cargo test), or set {env}",
            path.display()
        ))
    }
}

/// `case.json`: what a case sends and how its outputs compare.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSettings {
    /// What the case checks, in a sentence.
    pub description: String,
    /// Signals sent, in this order: `metrics`, `traces`, `logs`.
    pub send: Vec<String>,
    /// See [`canonical::Options::wall_clock_timestamps`].
    #[serde(default)]
    pub wall_clock_timestamps: bool,
    /// Time to wait after sending before watching for quiet output (for components that
    /// emit on a timer: tail_sampling's decision_wait, spanmetrics' flush interval).
    #[serde(default)]
    pub settle_ms: u64,
    /// Which Collector build is the oracle (a name of [`ORACLES`]; absent: `main`).
    #[serde(default)]
    pub oracle: Option<String>,
    /// Environment variables set on both systems (e.g. `OTEL_RESOURCE_ATTRIBUTES` for the
    /// resourcedetection `env` detector). `OTEL_RESOURCE_ATTRIBUTES` is removed from both
    /// when the case does not set it, so the test's own environment cannot leak into one.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
}

/// One kind of input, parsed.
#[derive(Clone, Debug)]
pub enum Input {
    Metrics(Vec<ExportMetricsServiceRequest>),
    Traces(Vec<ExportTraceServiceRequest>),
    Logs(Vec<ExportLogsServiceRequest>),
}

/// A case read from its directory.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    pub settings: CaseSettings,
    /// The processors and connectors `config.yaml` defines: `(section, type)`, e.g.
    /// `("processors", "transform")` for `transform/rename`.
    pub components: Vec<(String, String)>,
    pub inputs: Vec<Input>,
}

impl Case {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.yaml")
    }

    pub fn options(&self) -> canonical::Options {
        canonical::Options {
            wall_clock_timestamps: self.settings.wall_clock_timestamps,
        }
    }
}

/// Every case under `cases_dir` (sorted by name), inputs defaulting to `inputs_dir`.
pub fn load_cases(cases_dir: &Path, inputs_dir: &Path) -> Result<Vec<Case>, String> {
    let entries = std::fs::read_dir(cases_dir)
        .map_err(|error| format!("cannot list {}: {error}", cases_dir.display()))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs.iter().map(|dir| load_case(dir, inputs_dir)).collect()
}

/// Reads one case directory; the error names the file and what to fix.
pub fn load_case(dir: &Path, inputs_dir: &Path) -> Result<Case, String> {
    let name = dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let settings_path = dir.join("case.json");
    let settings_text = read(&settings_path)?;
    let settings: CaseSettings = serde_json::from_str(&settings_text)
        .map_err(|error| format!("{}: {error}", settings_path.display()))?;
    oracle_entry(settings.oracle.as_deref())
        .map_err(|problem| format!("{}: {problem}", settings_path.display()))?;
    let config = read(&dir.join("config.yaml"))?;
    let components = config_components(&config);
    if settings.send.is_empty() {
        return Err(format!(
            "{}: \"send\" names no signal: list metrics, traces and/or logs",
            settings_path.display()
        ));
    }
    let mut inputs = Vec::new();
    for signal_name in &settings.send {
        let signal = Signal::from_pipeline_type(signal_name).ok_or_else(|| {
            format!(
                "{}: \"send\" has {signal_name:?}: use metrics, traces or logs",
                settings_path.display()
            )
        })?;
        let own = dir.join(format!("{signal}.json"));
        let path = if own.is_file() {
            own
        } else {
            inputs_dir.join(format!("{signal}.json"))
        };
        inputs.push(parse_input(signal, &path)?);
    }
    Ok(Case {
        name,
        dir: dir.to_path_buf(),
        settings,
        components,
        inputs,
    })
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))
}

/// Parses an OTLP/JSON input file: one export request, or a list sent in order. A metric
/// without data or a number point without a value (what a misspelt key parses to) is an
/// error rather than a silently different input.
pub fn parse_input(signal: Signal, path: &Path) -> Result<Input, String> {
    let text = read(path)?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))?;
    let requests = match value {
        serde_json::Value::Array(requests) => requests,
        request => vec![request],
    };
    let parse_all =
        |what: &str| format!("{}: not an OTLP/JSON {what} export request", path.display());
    match signal {
        Signal::Metrics => {
            let mut parsed = Vec::new();
            for (index, request) in requests.into_iter().enumerate() {
                let request: ExportMetricsServiceRequest = serde_json::from_value(request)
                    .map_err(|error| format!("{} ({index}): {error}", parse_all("metrics")))?;
                check_metrics(&request)
                    .map_err(|problem| format!("{}: request {index}: {problem}", path.display()))?;
                parsed.push(request);
            }
            Ok(Input::Metrics(parsed))
        }
        Signal::Traces => requests
            .into_iter()
            .map(|request| {
                serde_json::from_value(request)
                    .map_err(|error| format!("{}: {error}", parse_all("traces")))
            })
            .collect::<Result<_, _>>()
            .map(Input::Traces),
        Signal::Logs => requests
            .into_iter()
            .map(|request| {
                serde_json::from_value(request)
                    .map_err(|error| format!("{}: {error}", parse_all("logs")))
            })
            .collect::<Result<_, _>>()
            .map(Input::Logs),
    }
}

fn check_metrics(request: &ExportMetricsServiceRequest) -> Result<(), String> {
    for metric in request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
    {
        let points = match &metric.data {
            None => {
                return Err(format!(
                    "metric {:?} has no data: check its gauge/sum/histogram key",
                    metric.name
                ));
            }
            Some(Data::Gauge(gauge)) => &gauge.data_points,
            Some(Data::Sum(sum)) => &sum.data_points,
            Some(_) => continue,
        };
        if points.iter().any(|point| point.value.is_none()) {
            return Err(format!(
                "metric {:?} has a point without value: check its asInt/asDouble key",
                metric.name
            ));
        }
    }
    Ok(())
}

/// The `(section, type)` of every processor and connector a config defines, read from the
/// lines of its top-level `processors:` and `connectors:` sections (a component id is a key
/// indented by exactly two spaces there; `type/name` gives `type`).
pub fn config_components(yaml: &str) -> Vec<(String, String)> {
    let mut section: Option<&str> = None;
    let mut components = Vec::new();
    for line in yaml.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            section = ["processors", "connectors"]
                .into_iter()
                .find(|name| line.trim_end() == format!("{name}:"));
            continue;
        }
        let Some(section) = section else { continue };
        let Some(key) = line
            .strip_prefix("  ")
            .filter(|rest| !rest.starts_with(' '))
            .and_then(|rest| rest.split_once(':'))
            .map(|(key, _)| key)
        else {
            continue;
        };
        let component_type = key.split('/').next().unwrap_or(key).trim().to_string();
        let entry = (section.to_string(), component_type);
        if !components.contains(&entry) {
            components.push(entry);
        }
    }
    components
}

/// The config both systems get besides the case's: only endpoints and self-telemetry.
pub fn base_config(receiver_port: u16, sink: std::net::SocketAddr) -> String {
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{receiver_port}\n\
         exporters:\n  otlp:\n    endpoint: {sink}\n    tls:\n      insecure: true\n\
         service:\n  telemetry:\n    metrics:\n      level: none\n"
    )
}

/// What one system did with a case's input.
#[derive(Debug, Default)]
pub struct Run {
    /// Every request the system exported.
    pub output: Output,
    /// One line per input request: `send metrics #0: OK` or the gRPC code of its refusal.
    pub sends: Vec<String>,
    /// The system's stdout and stderr.
    pub log: String,
}

impl Run {
    /// The canonical lines of this run: the send outcomes, then the output.
    pub fn canonical_lines(&self, options: canonical::Options) -> Vec<String> {
        let mut lines = self.sends.clone();
        lines.extend(canonical::canonical_lines(&self.output, options));
        lines
    }
}

/// Runs `case` through the collector `binary` (the oracle or oxcol; both take
/// `--config A --config B`) in `work_dir`: start it with the base and case configs, send
/// the input, wait until its output is quiet, stop it, and read what it exported.
pub async fn run_case(binary: &Path, case: &Case, work_dir: &Path) -> Result<Run, String> {
    std::fs::create_dir_all(work_dir)
        .map_err(|error| format!("cannot create {}: {error}", work_dir.display()))?;
    let records = work_dir.join("records");
    let sink = sink::start(SinkConfig {
        record_dir: Some(records.clone()),
        ..SinkConfig::default()
    })
    .await
    .map_err(|error| format!("cannot start the sink: {error}"))?;
    let receiver_port = free_port();
    let base = work_dir.join("base.yaml");
    std::fs::write(&base, base_config(receiver_port, sink.grpc_addr))
        .map_err(|error| format!("cannot write {}: {error}", base.display()))?;
    let log_path = work_dir.join("log.txt");
    let mut command = Command::new(binary);
    command
        .arg("--config")
        .arg(&base)
        .arg("--config")
        .arg(case.config_path());
    if !case.settings.env.contains_key("OTEL_RESOURCE_ATTRIBUTES") {
        command.env_remove("OTEL_RESOURCE_ATTRIBUTES");
    }
    command.envs(&case.settings.env);
    let mut child = spawn_logged(&mut command, &log_path);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_listening(&mut child, receiver_port)
        .await
        .map_err(|problem| format!("{problem}\nlog:\n{}", log()))?;
    wait_collector_ready(&mut child, &log_path)
        .await
        .map_err(|problem| format!("{problem}\nlog:\n{}", log()))?;

    let endpoint = format!("http://127.0.0.1:{receiver_port}");
    let sends = send_inputs(&endpoint, &case.inputs)
        .await
        .map_err(|problem| format!("{problem}\nlog:\n{}", log()))?;
    tokio::time::sleep(Duration::from_millis(case.settings.settle_ms)).await;
    wait_quiet(&sink.state, &mut child)
        .await
        .map_err(|problem| format!("{problem}\nlog:\n{}", log()))?;
    drop(child);
    drop(sink);
    let output = read_records(&records)?;
    Ok(Run {
        output,
        sends,
        log: log(),
    })
}

async fn wait_listening(child: &mut ChildGuard, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.child_mut().try_wait() {
            return Err(format!("it exited during start-up with {status}"));
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "it did not listen on 127.0.0.1:{port} within {READY_TIMEOUT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The Collector's log line once every component has started.
const COLLECTOR_READY: &str = "Everything is ready";

/// Waits (bounded by [`READY_TIMEOUT`]) until the Collector says every component has
/// started. Its OTLP receiver may listen before a later pipeline's processors have
/// finished `Start` (resourcedetection detects there), and a processor not yet started
/// lets data through untouched; oxcol builds every processor before its receivers listen,
/// so for it (a log without the Collector's `Starting otelcol` line) this returns at once.
async fn wait_collector_ready(child: &mut ChildGuard, log_path: &Path) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        if !log.contains("Starting otelcol") || log.contains(COLLECTOR_READY) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.child_mut().try_wait() {
            return Err(format!("it exited during start-up with {status}"));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "it listened but did not log {COLLECTOR_READY:?} within {READY_TIMEOUT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn send_inputs(endpoint: &str, inputs: &[Input]) -> Result<Vec<String>, String> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .map_err(|error| format!("bad endpoint {endpoint}: {error}"))?
        .timeout(SEND_TIMEOUT)
        .connect_timeout(SEND_TIMEOUT)
        .connect()
        .await
        .map_err(|error| format!("cannot connect to {endpoint}: {error}"))?;
    let outcome = |signal: Signal, index: usize, result: Result<(), tonic::Status>| match result {
        Ok(()) => format!("send {signal} #{index}: OK"),
        Err(status) => format!("send {signal} #{index}: refused {:?}", status.code()),
    };
    let mut sends = Vec::new();
    for input in inputs {
        match input {
            Input::Metrics(requests) => {
                let mut client = MetricsServiceClient::new(channel.clone());
                for (index, request) in requests.iter().enumerate() {
                    sends.push(outcome(
                        Signal::Metrics,
                        index,
                        client.export(request.clone()).await.map(drop),
                    ));
                }
            }
            Input::Traces(requests) => {
                let mut client = TraceServiceClient::new(channel.clone());
                for (index, request) in requests.iter().enumerate() {
                    sends.push(outcome(
                        Signal::Traces,
                        index,
                        client.export(request.clone()).await.map(drop),
                    ));
                }
            }
            Input::Logs(requests) => {
                let mut client = LogsServiceClient::new(channel.clone());
                for (index, request) in requests.iter().enumerate() {
                    sends.push(outcome(
                        Signal::Logs,
                        index,
                        client.export(request.clone()).await.map(drop),
                    ));
                }
            }
        }
    }
    Ok(sends)
}

/// Waits until the sink has seen no new request (accepted or not) for [`QUIET`].
async fn wait_quiet(state: &sink::SinkState, child: &mut ChildGuard) -> Result<(), String> {
    let requests = || {
        let stats = state.stats();
        Signal::ALL
            .iter()
            .map(|signal| stats.signal(*signal).requests)
            .sum::<u64>()
            + stats.failed_requests
    };
    let deadline = Instant::now() + OUTPUT_TIMEOUT;
    let mut last = requests();
    let mut last_change = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(Some(status)) = child.child_mut().try_wait() {
            return Err(format!("it exited with {status} while exporting"));
        }
        let now = requests();
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() >= QUIET {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "its output did not settle: still exporting after {OUTPUT_TIMEOUT:?}"
            ));
        }
    }
}

/// Decodes every request the sink recorded (`<sequence>-<signal>.pb`).
fn read_records(dir: &Path) -> Result<Output, String> {
    let mut output = Output::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(output);
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    paths.sort();
    for path in paths {
        let bytes = std::fs::read(&path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let decode_error = |error: prost::DecodeError| {
            format!("{}: not a valid export request: {error}", path.display())
        };
        if name.ends_with("-metrics.pb") {
            output
                .metrics
                .push(ExportMetricsServiceRequest::decode(bytes.as_slice()).map_err(decode_error)?);
        } else if name.ends_with("-traces.pb") {
            output
                .traces
                .push(ExportTraceServiceRequest::decode(bytes.as_slice()).map_err(decode_error)?);
        } else if name.ends_with("-logs.pb") {
            output
                .logs
                .push(ExportLogsServiceRequest::decode(bytes.as_slice()).map_err(decode_error)?);
        }
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_components_reads_processor_and_connector_types() {
        let yaml = "processors:\n  transform/a:\n    metric_statements:\n      - set(x, 1)\n  attributes:\n    actions: []\n\
                    connectors:\n  count:\n# a comment\nservice:\n  pipelines:\n    metrics:\n      processors: [transform/a]\n";
        assert_eq!(
            config_components(yaml),
            vec![
                ("processors".to_string(), "transform".to_string()),
                ("processors".to_string(), "attributes".to_string()),
                ("connectors".to_string(), "count".to_string()),
            ]
        );
        assert!(config_components("service:\n  pipelines: {}\n").is_empty());
    }

    #[test]
    fn input_with_a_misspelt_metric_type_is_refused() {
        let dir = std::env::temp_dir().join(format!("oxcol-oracle-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creates a temp dir");
        let path = dir.join("metrics.json");
        let metric = |data: &str| {
            format!(
                r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"m",{data}}}]}}]}}]}}"#
            )
        };
        std::fs::write(
            &path,
            metric(r#""gauge":{"dataPoints":[{"asInt":"3","timeUnixNano":"5"}]}"#),
        )
        .expect("writes");
        let Ok(Input::Metrics(requests)) = parse_input(Signal::Metrics, &path) else {
            panic!("a valid gauge parses")
        };
        assert_eq!(requests.len(), 1);
        std::fs::write(
            &path,
            format!(
                "[{}, {}]",
                metric(r#""sum":{"dataPoints":[{"asDouble":1.5}]}"#),
                metric(r#""gauge":{"dataPoints":[]}"#)
            ),
        )
        .expect("writes");
        let Ok(Input::Metrics(requests)) = parse_input(Signal::Metrics, &path) else {
            panic!("a list of requests parses")
        };
        assert_eq!(requests.len(), 2);
        std::fs::write(&path, metric(r#""gauges":{"dataPoints":[]}"#)).expect("writes");
        let error = parse_input(Signal::Metrics, &path).expect_err("no data is refused");
        assert!(error.contains("has no data"), "{error}");
        std::fs::write(&path, metric(r#""gauge":{"dataPoints":[{"asint":"3"}]}"#)).expect("writes");
        let error =
            parse_input(Signal::Metrics, &path).expect_err("a point without value is refused");
        assert!(error.contains("without value"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_case_names_a_known_oracle_or_is_refused() {
        let dir = std::env::temp_dir().join(format!("oxcol-oracle-choice-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creates a temp dir");
        std::fs::write(dir.join("config.yaml"), "service:\n  pipelines: {}\n").expect("writes");
        std::fs::write(
            dir.join("logs.json"),
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"5"}]}]}]}"#,
        )
        .expect("writes");
        let write_case = |oracle: &str| {
            std::fs::write(
                dir.join("case.json"),
                format!(r#"{{"description":"d","send":["logs"]{oracle}}}"#),
            )
            .expect("writes")
        };
        write_case("");
        let case = load_case(&dir, &dir).expect("no oracle: the main one");
        assert_eq!(case.settings.oracle, None);
        write_case(r#","oracle":"routing""#);
        let case = load_case(&dir, &dir).expect("routing is known");
        assert_eq!(case.settings.oracle.as_deref(), Some("routing"));
        assert_eq!(
            oracle_entry(case.settings.oracle.as_deref()).map(|(_, env, _)| env),
            Ok("OXCOL_ORACLE_OTELCOL_ROUTING")
        );
        write_case(r#","oracle":"nope""#);
        let error = load_case(&dir, &dir).expect_err("an unknown oracle is refused");
        assert!(error.contains("unknown oracle \"nope\""), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn base_config_names_only_endpoints_and_telemetry() {
        let yaml = base_config(4317, "127.0.0.1:9".parse().expect("an address"));
        assert!(
            yaml.contains("endpoint: 127.0.0.1:4317\n") && yaml.contains("endpoint: 127.0.0.1:9\n")
        );
        assert!(yaml.contains("level: none") && !yaml.contains("processors"));
    }
}
