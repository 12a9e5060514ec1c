//! `service.telemetry`: oxcol's own logs (through `tracing`) and metrics (Prometheus text
//! on 127.0.0.1:8888/metrics by default), configured with the Collector's keys, both its
//! current `readers: [{pull: {exporter: {prometheus: {host, port}}}}]` form and the older
//! `address:` form, plus `readers: [{periodic: {exporter: {otlp: ...}}}]`, which pushes
//! the same series as OTLP metrics, and `logs.processors`, which exports the log over
//! OTLP; both through the OpenTelemetry Rust SDK (`crate::telemetry_sdk`).
//!
//! Self-telemetry must never stop or slow the pipelines: a failed push is logged and
//! dropped, never retried into a queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::routing::get;
use oxcol_core::process;
use oxcol_core::telemetry::Registry;
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub logs: LogsConfig,
    pub metrics: MetricsConfig,
    /// Resource attributes of oxcol's own telemetry: the Collector's inline map
    /// (`service.name: x`, null removes a default) or `attributes: [{name, value}]`.
    /// Used on pushed self-metrics.
    pub resource: ResourceConfig,
    /// oxcol's own spans, exported through `traces.processors` (`crate::telemetry_sdk`).
    pub traces: TracesConfig,
}

/// `service.telemetry.resource`, in either of the Collector's forms: the legacy inline map
/// of string (or null) values, or the declarative `attributes: [{name, value, type}]` list
/// with `schema_url`. The two forms cannot be mixed, as in the Collector.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceConfig {
    /// Attributes in the order written; `None` removes one of oxcol's defaults
    /// (`service.name`, `service.version`, `service.instance.id`).
    pub attributes: Vec<(String, Option<serde_json::Value>)>,
    pub schema_url: Option<String>,
    /// Problems found while reading (reported by `validate`).
    problems: Vec<String>,
}

impl<'de> Deserialize<'de> for ResourceConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Attribute {
            name: String,
            value: serde_json::Value,
            #[serde(rename = "type")]
            _type: Option<String>,
        }
        let raw = Option::<std::collections::BTreeMap<String, serde_json::Value>>::deserialize(
            deserializer,
        )?
        .unwrap_or_default();
        let mut config = ResourceConfig::default();
        let mut inline = Vec::new();
        for (key, value) in raw {
            match key.as_str() {
                "attributes" => {
                    let list: Vec<Attribute> = serde_json::from_value(value).map_err(|e| serde::de::Error::custom(format!("resource.attributes: {e}; write a list of {{name, value}}")))?;
                    config.attributes.extend(list.into_iter().map(|a| (a.name, Some(a.value))));
                }
                "schema_url" => config.schema_url = value.as_str().map(str::to_string),
                "attributes_list" => config.problems.push("resource.attributes_list is not supported (nor by the Collector); use resource.attributes".to_string()),
                "detection/development" => config.problems.push("resource.detection/development is not supported by oxcol; set the attributes under resource".to_string()),
                _ => match value {
                    serde_json::Value::Null => inline.push((key, None)),
                    serde_json::Value::String(_) => inline.push((key, Some(value))),
                    other => config.problems.push(format!("resource {key:?}: an inline resource attribute must be a string or null, found {other}")),
                },
            }
        }
        if !config.attributes.is_empty() && !inline.is_empty() {
            config.problems.push("resource.attributes cannot be used together with inline resource attributes; use one form".to_string());
        }
        config.attributes.extend(inline);
        Ok(config)
    }
}

impl TelemetryConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !["debug", "info", "warn", "error", "dpanic", "panic", "fatal"]
            .contains(&self.logs.level.to_ascii_lowercase().as_str())
        {
            errors.push(format!(
                "logs.level {:?}: use debug, info, warn or error",
                self.logs.level
            ));
        }
        if !["console", "json"].contains(&self.logs.encoding.as_str()) {
            errors.push(format!(
                "logs.encoding {:?}: use console or json",
                self.logs.encoding
            ));
        }
        if !["none", "basic", "normal", "detailed"].contains(&self.metrics.level.as_str()) {
            errors.push(format!(
                "metrics.level {:?}: use none, basic, normal or detailed",
                self.metrics.level
            ));
        }
        if let Err(e) = self.metrics.listen_address() {
            errors.push(e);
        }
        if let Some(tls) = self.metrics.tls() {
            errors.extend(
                tls.validate()
                    .into_iter()
                    .map(|e| format!("metrics.readers[0].pull.exporter.prometheus.{e}")),
            );
        }
        for (index, reader) in self.metrics.readers.iter().enumerate() {
            if let Some(periodic) = &reader.periodic {
                errors.extend(
                    periodic
                        .validate()
                        .into_iter()
                        .map(|e| format!("metrics.readers[{index}].periodic.{e}")),
                );
            }
        }
        if let Some(level) = &self.traces.level
            && !["none", "basic", "normal", "detailed"].contains(&level.as_str())
        {
            errors.push(format!(
                "traces.level {level:?}: use none, basic, normal or detailed"
            ));
        }
        for (index, processor) in self.traces.processors.iter().flatten().enumerate() {
            errors.extend(
                processor
                    .validate()
                    .into_iter()
                    .map(|e| format!("traces.processors[{index}].{e}")),
            );
        }
        for (index, processor) in self.logs.processors.iter().flatten().enumerate() {
            errors.extend(
                processor
                    .validate()
                    .into_iter()
                    .map(|e| format!("logs.processors[{index}].{e}")),
            );
        }
        errors.extend(self.resource.problems.iter().cloned());
        for path in self
            .logs
            .output_paths
            .iter()
            .chain(&self.logs.error_output_paths)
        {
            if path.is_empty() {
                errors.push(
                    "logs.output_paths: an empty path; use stderr, stdout or a file path"
                        .to_string(),
                );
            }
        }
        errors
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// `debug`, `info` (default), `warn`, `error`.
    pub level: String,
    /// `console` (default) or `json`.
    pub encoding: String,
    pub development: bool,
    pub disable_caller: bool,
    pub disable_stacktrace: bool,
    /// zap's log sampling; accepted, oxcol does not sample its own log.
    pub sampling: Option<LogsSampling>,
    /// Where logs go: `stderr` (default), `stdout`, or file paths (appended); several
    /// paths all get every line.
    pub output_paths: Vec<String>,
    /// Accepted; errors go where `output_paths` say.
    pub error_output_paths: Vec<String>,
    /// Accepted; not added to oxcol's log lines.
    pub initial_fields: std::collections::BTreeMap<String, serde_json::Value>,
    /// OTLP export of oxcol's own log: `[{batch: {exporter: {otlp: ...}}}]` or
    /// `[{simple: ...}]`, through the OpenTelemetry Rust SDK (`crate::telemetry_sdk`).
    pub processors: Option<Vec<LogProcessor>>,
    pub disable_zap_resource: bool,
}

/// `service.telemetry.traces`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TracesConfig {
    /// `none` turns oxcol's spans off; other levels record the same spans.
    pub level: Option<String>,
    /// Span processors (the same forms as `logs.processors`; `schedule_delay` default 5000).
    pub processors: Option<Vec<LogProcessor>>,
    /// Accepted; oxcol's spans start no propagated context.
    pub propagators: Option<serde_json::Value>,
}

/// One of `service.telemetry.logs.processors` or `traces.processors` (declarative config
/// `LogRecordProcessor`/`SpanProcessor`, which have the same keys).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogProcessor {
    pub batch: Option<BatchLogProcessor>,
    /// Run as a batch processor with a 100 ms delay: an export inside the log call would
    /// block oxcol's runtime threads.
    pub simple: Option<SimpleLogProcessor>,
}

/// `logs.processors[].batch` / `traces.processors[].batch` (the Go SDK's defaults).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchLogProcessor {
    /// Milliseconds between exports. Default 1000 for logs, 5000 for spans.
    pub schedule_delay: Option<u64>,
    /// Milliseconds one export may take. Default 30000.
    pub export_timeout: u64,
    /// Records waiting at most; more are dropped. Default 2048.
    pub max_queue_size: usize,
    /// Records per export at most. Default 512.
    pub max_export_batch_size: usize,
    pub exporter: PushExporter,
}

impl Default for BatchLogProcessor {
    fn default() -> Self {
        BatchLogProcessor {
            schedule_delay: None,
            export_timeout: 30_000,
            max_queue_size: 2048,
            max_export_batch_size: 512,
            exporter: PushExporter::default(),
        }
    }
}

/// `logs.processors[].simple`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SimpleLogProcessor {
    pub exporter: PushExporter,
}

impl LogProcessor {
    /// The processor as batch settings (`simple` as a batch of 100 ms) and its exporter.
    pub fn settings(&self) -> Result<BatchLogProcessor, String> {
        match (&self.batch, &self.simple) {
            (Some(batch), None) => Ok(batch.clone()),
            (None, Some(simple)) => Ok(BatchLogProcessor {
                schedule_delay: Some(100),
                exporter: simple.exporter.clone(),
                ..Default::default()
            }),
            _ => Err("set one of batch and simple".to_string()),
        }
    }

    pub fn validate(&self) -> Vec<String> {
        let settings = match self.settings() {
            Ok(settings) => settings,
            Err(e) => return vec![e],
        };
        let form = if self.batch.is_some() {
            "batch"
        } else {
            "simple"
        };
        let mut errors = Vec::new();
        if settings.schedule_delay == Some(0) {
            errors.push(format!(
                "{form}.schedule_delay must be greater than 0 (milliseconds)"
            ));
        }
        if settings.max_export_batch_size == 0
            || settings.max_export_batch_size > settings.max_queue_size
        {
            errors.push(format!(
                "{form}.max_export_batch_size must be between 1 and max_queue_size ({})",
                settings.max_queue_size
            ));
        }
        errors.extend(
            settings
                .exporter
                .validate(oxcol_core::Signal::Logs)
                .into_iter()
                .map(|e| format!("{form}.{e}")),
        );
        errors
    }
}

/// `service.telemetry.logs.sampling` (zap's sampler).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogsSampling {
    pub enabled: bool,
    pub tick: Option<oxcol_core::GoDuration>,
    pub initial: Option<u64>,
    pub thereafter: Option<u64>,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            level: "info".to_string(),
            encoding: "console".to_string(),
            development: false,
            disable_caller: false,
            disable_stacktrace: false,
            sampling: None,
            output_paths: Vec::new(),
            error_output_paths: Vec::new(),
            initial_fields: Default::default(),
            processors: None,
            disable_zap_resource: false,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `none` turns self-metrics off; other levels serve the same set.
    pub level: String,
    /// Older form: `host:port` of the Prometheus endpoint.
    pub address: Option<String>,
    /// Current form: `[{pull: {exporter: {prometheus: {host, port}}}}]`.
    pub readers: Vec<Reader>,
    pub views: Option<serde_json::Value>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            level: "basic".to_string(),
            address: None,
            readers: Vec::new(),
            views: None,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Reader {
    pub pull: Option<PullReader>,
    /// Push self-metrics as OTLP every `interval`.
    pub periodic: Option<PeriodicReader>,
}

/// `readers[].periodic` (OpenTelemetry declarative config v0.3, as the Collector reads it).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PeriodicReader {
    /// Milliseconds between pushes. Default 60000.
    pub interval: u64,
    /// Milliseconds one push may take. Default 30000.
    pub timeout: u64,
    pub exporter: PushExporter,
    /// Accepted; oxcol has one producer (its registry).
    pub producers: Option<serde_json::Value>,
    /// Accepted; the registry's series are bounded by the config.
    pub cardinality_limits: Option<serde_json::Value>,
}

impl Default for PeriodicReader {
    fn default() -> Self {
        PeriodicReader {
            interval: 60_000,
            timeout: 30_000,
            exporter: PushExporter::default(),
            producers: None,
            cardinality_limits: None,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PushExporter {
    /// `protocol: grpc | http/protobuf | http/json` and `endpoint`.
    pub otlp: Option<OtlpPush>,
    /// The newer declarative-config names: HTTP and gRPC without `protocol`.
    pub otlp_http: Option<OtlpPush>,
    pub otlp_grpc: Option<OtlpPush>,
}

/// `{name, value}` of a push exporter's `headers`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NameValue {
    pub name: String,
    pub value: Option<String>,
}

/// An OTLP metric exporter of the declarative config (`OTLPMetric`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpPush {
    /// `grpc`, `http/protobuf` or `http/json`; required for `otlp`.
    pub protocol: Option<String>,
    /// `http(s)://host:port[/path]`; HTTP without a path posts to `/v1/metrics`. A gRPC
    /// endpoint without a scheme is TLS unless `insecure: true`.
    pub endpoint: Option<String>,
    #[serde(alias = "certificate_file")]
    pub certificate: Option<String>,
    #[serde(alias = "client_key_file")]
    pub client_key: Option<String>,
    #[serde(alias = "client_certificate_file")]
    pub client_certificate: Option<String>,
    pub headers: Vec<NameValue>,
    /// `k1=v1,k2=v2`.
    pub headers_list: Option<String>,
    /// `gzip` or `none` (default).
    pub compression: Option<String>,
    /// Milliseconds per request. Default 10000.
    pub timeout: Option<u64>,
    pub insecure: Option<bool>,
    /// `cumulative` (default), `delta` or `low_memory`.
    pub temporality_preference: Option<String>,
    /// Accepted; the registry has no histograms.
    pub default_histogram_aggregation: Option<String>,
}

/// Which wire a push uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushProtocol {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

impl PushExporter {
    /// The exporter and its protocol, or what is wrong.
    pub fn otlp(&self) -> Result<(PushProtocol, &OtlpPush), String> {
        match (&self.otlp, &self.otlp_http, &self.otlp_grpc) {
            (Some(otlp), None, None) => match otlp.protocol.as_deref() {
                Some("grpc") => Ok((PushProtocol::Grpc, otlp)),
                Some("http/protobuf") => Ok((PushProtocol::HttpProtobuf, otlp)),
                Some("http/json") => Ok((PushProtocol::HttpJson, otlp)),
                Some(other) => Err(format!("exporter.otlp.protocol {other:?}: use grpc, http/protobuf or http/json")),
                None => Err("exporter.otlp.protocol is required: grpc, http/protobuf or http/json".to_string()),
            },
            (None, Some(http), None) => Ok((if http.protocol.as_deref() == Some("http/json") { PushProtocol::HttpJson } else { PushProtocol::HttpProtobuf }, http)),
            (None, None, Some(grpc)) => Ok((PushProtocol::Grpc, grpc)),
            (None, None, None) => Err("exporter: set otlp (with protocol), otlp_http or otlp_grpc; oxcol has no other push exporter (console is not supported)".to_string()),
            _ => Err("exporter: set only one of otlp, otlp_http and otlp_grpc".to_string()),
        }
    }

    /// What is wrong with this exporter for pushing `signal`.
    pub fn validate(&self, signal: oxcol_core::Signal) -> Vec<String> {
        let mut errors = Vec::new();
        let (protocol, otlp) = match self.otlp() {
            Err(e) => return vec![e],
            Ok(found) => found,
        };
        if otlp.endpoint.as_deref().unwrap_or("").is_empty() {
            errors.push(
                "exporter.otlp.endpoint is required (e.g. http://collector:4318)".to_string(),
            );
        }
        if let Some(compression) = otlp.compression.as_deref()
            && !["gzip", "none"].contains(&compression)
        {
            errors.push(format!(
                "exporter.otlp.compression {compression:?}: use gzip or none"
            ));
        }
        if let Some(preference) = otlp.temporality_preference.as_deref()
            && signal == oxcol_core::Signal::Metrics
            && otlp.temporality().is_none()
        {
            errors.push(format!("exporter.otlp.temporality_preference {preference:?}: use cumulative, delta or low_memory"));
        }
        if let Some(list) = &otlp.headers_list
            && list
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .any(|p| !p.contains('='))
        {
            errors.push(
                "exporter.otlp.headers_list: write name=value pairs separated by commas"
                    .to_string(),
            );
        }
        if let Err(e) = push_config(protocol, otlp, signal) {
            errors.push(format!("exporter.otlp: {e}"));
        }
        errors
    }
}

impl OtlpPush {
    /// `temporality_preference` as the SDK's temporality (None: not one of the three).
    pub fn temporality(&self) -> Option<opentelemetry_sdk::metrics::Temporality> {
        use opentelemetry_sdk::metrics::Temporality;
        match self.temporality_preference.as_deref() {
            None | Some("cumulative") => Some(Temporality::Cumulative),
            Some("delta") => Some(Temporality::Delta),
            Some("low_memory") | Some("lowmemory") => Some(Temporality::LowMemory),
            Some(_) => None,
        }
    }
}

impl PeriodicReader {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.interval == 0 {
            errors.push("interval must be greater than 0 (milliseconds)".to_string());
        }
        errors.extend(self.exporter.validate(oxcol_core::Signal::Metrics));
        errors
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PullReader {
    pub exporter: PullExporter,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PullExporter {
    pub prometheus: Option<PrometheusReader>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusReader {
    pub host: String,
    pub port: u16,
    pub without_units: Option<bool>,
    pub without_type_suffix: Option<bool>,
    pub without_scope_info: Option<bool>,
    pub with_resource_constant_labels: Option<serde_json::Value>,
    /// oxcol key (the Collector has none here): serve `/metrics` over TLS, with the
    /// `configtls` server keys (`client_ca_file` for mTLS). Default: plaintext.
    pub tls: Option<oxcol_core::tls::TlsServerConfig>,
}

impl Default for PrometheusReader {
    fn default() -> Self {
        PrometheusReader {
            host: "127.0.0.1".to_string(),
            port: 8888,
            without_units: None,
            without_type_suffix: None,
            without_scope_info: None,
            with_resource_constant_labels: None,
            tls: None,
        }
    }
}

impl MetricsConfig {
    /// TLS of the `/metrics` server (from the pull reader), if any.
    pub fn tls(&self) -> Option<&oxcol_core::tls::TlsServerConfig> {
        self.readers
            .iter()
            .find_map(|r| r.pull.as_ref()?.exporter.prometheus.as_ref()?.tls.as_ref())
    }

    /// Where `/metrics` is served, or None when self-metrics are off.
    pub fn listen_address(&self) -> Result<Option<String>, String> {
        if self.level == "none" {
            return Ok(None);
        }
        let pull: Vec<&PrometheusReader> = self
            .readers
            .iter()
            .filter_map(|r| r.pull.as_ref()?.exporter.prometheus.as_ref())
            .collect();
        // Only push readers: no /metrics server, as in the Collector.
        if pull.is_empty()
            && self.address.is_none()
            && self.readers.iter().any(|r| r.periodic.is_some())
        {
            return Ok(None);
        }
        match (self.address.as_ref(), pull.as_slice()) {
            (Some(_), [_, ..]) => {
                Err("metrics: set either address or readers, not both".to_string())
            }
            (Some(address), []) => Ok(Some(address.clone())),
            (None, [reader]) => {
                let host = if reader.host.contains(':') {
                    format!("[{}]", reader.host)
                } else {
                    reader.host.clone()
                };
                Ok(Some(format!("{host}:{}", reader.port)))
            }
            (None, []) => Ok(Some("127.0.0.1:8888".to_string())),
            (None, [_, _, ..]) => {
                Err("metrics.readers: only one pull reader is supported".to_string())
            }
        }
    }
}

/// Where log lines go: every one of `output_paths` (stderr by default).
#[derive(Clone)]
struct LogOutputs {
    stdout: bool,
    stderr: bool,
    files: Vec<Arc<std::sync::Mutex<std::fs::File>>>,
}

impl LogOutputs {
    /// Opens the paths; a file that cannot be opened is reported on stderr and skipped.
    fn open(paths: &[String]) -> LogOutputs {
        let mut outputs = LogOutputs {
            stdout: false,
            stderr: paths.is_empty(),
            files: Vec::new(),
        };
        for path in paths {
            match path.as_str() {
                "stdout" => outputs.stdout = true,
                "stderr" => outputs.stderr = true,
                file => match std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(file)
                {
                    Ok(opened) => outputs.files.push(Arc::new(std::sync::Mutex::new(opened))),
                    Err(error) => {
                        eprintln!(
                            "service.telemetry.logs.output_paths: cannot open {file:?}: {error}; logging to stderr instead"
                        );
                        outputs.stderr = true;
                    }
                },
            }
        }
        outputs
    }

    fn to_terminal(&self) -> bool {
        self.files.is_empty()
            && !self.stdout
            && std::io::IsTerminal::is_terminal(&std::io::stderr())
    }
}

impl std::io::Write for LogOutputs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.stderr {
            std::io::stderr().write_all(buf)?;
        }
        if self.stdout {
            std::io::stdout().write_all(buf)?;
        }
        for file in &self.files {
            file.lock()
                .unwrap_or_else(|p| p.into_inner())
                .write_all(buf)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the log subscriber. Logs go to `output_paths` (stderr by default).
pub fn init_logging(config: &LogsConfig) {
    let level = match config.level.to_ascii_lowercase().as_str() {
        "debug" => "debug",
        "warn" => "warn",
        "error" | "dpanic" | "panic" | "fatal" => "error",
        _ => "info",
    };
    // Dependencies are noisy at debug; keep them at warn unless RUST_LOG says otherwise.
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| format!("warn,oxcol={level},oxcol_core={level},oxcol_receivers={level},oxcol_processors={level},oxcol_exporters={level}"));
    let outputs = LogOutputs::open(&config.output_paths);
    let ansi = outputs.to_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(move || outputs.clone())
        .with_target(false)
        .with_ansi(ansi);
    // The bridge layer hands every line to the OTLP log export of `logs.processors`, when
    // the running config has one (crate::telemetry_sdk).
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let bridge = crate::telemetry_sdk::LogBridgeLayer;
    let result = if config.encoding == "json" {
        builder.json().finish().with(bridge).try_init()
    } else {
        builder.finish().with(bridge).try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

/// The exporter config of a push reader, as one of oxcol's own OTLP exporters (the same
/// client code the pipelines use), mapped as the OpenTelemetry Go SDK's declarative config
/// maps the keys. Checked, not built (validation runs outside the async runtime).
pub enum PushConfig {
    Grpc(oxcol_exporters::otlp::Config),
    Http(oxcol_exporters::otlphttp::Config),
}

pub fn push_config(
    protocol: PushProtocol,
    otlp: &OtlpPush,
    signal: oxcol_core::Signal,
) -> Result<PushConfig, String> {
    use oxcol_exporters::{otlp as grpc, otlphttp};
    let endpoint = otlp.endpoint.clone().unwrap_or_default();
    let mut headers: std::collections::BTreeMap<String, String> = otlp
        .headers
        .iter()
        .filter_map(|h| Some((h.name.clone(), h.value.clone()?)))
        .collect();
    for pair in otlp.headers_list.iter().flat_map(|l| l.split(',')) {
        if let Some((name, value)) = pair.split_once('=') {
            headers
                .entry(name.trim().to_string())
                .or_insert_with(|| value.trim().to_string());
        }
    }
    let tls = oxcol_core::tls::TlsClientConfig {
        insecure: otlp.insecure.unwrap_or(false),
        ca_file: otlp.certificate.clone(),
        cert_file: otlp.client_certificate.clone(),
        key_file: otlp.client_key.clone(),
        ..Default::default()
    };
    let compression = if otlp.compression.as_deref() == Some("gzip") {
        "gzip"
    } else {
        "none"
    }
    .to_string();
    let timeout = oxcol_core::GoDuration(std::time::Duration::from_millis(
        otlp.timeout.unwrap_or(10_000),
    ));
    let check = |problems: Vec<String>| {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    };
    match protocol {
        PushProtocol::Grpc => {
            let config = grpc::Config {
                endpoint,
                compression,
                tls,
                headers,
                timeout,
                ..Default::default()
            };
            check(config.validate())?;
            Ok(PushConfig::Grpc(config))
        }
        PushProtocol::HttpProtobuf | PushProtocol::HttpJson => {
            // Without a path the SDK posts to /v1/metrics (/v1/logs); with one, to exactly
            // that path.
            let uri: http::Uri = endpoint
                .parse()
                .map_err(|e| format!("endpoint {endpoint:?}: {e}"))?;
            let base = match (uri.scheme_str(), uri.authority()) {
                (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
                _ => {
                    return Err(format!(
                        "endpoint {endpoint:?}: write http://host:port or https://host:port"
                    ));
                }
            };
            let written_path = &endpoint[endpoint
                .find(base.as_str())
                .map(|at| at + base.len())
                .unwrap_or(endpoint.len())..];
            let url = if written_path.is_empty() {
                format!("{base}/v1/{}", signal.name())
            } else {
                format!("{base}{written_path}")
            };
            let encoding = if protocol == PushProtocol::HttpJson {
                otlphttp::WireEncoding::Json
            } else {
                otlphttp::WireEncoding::Proto
            };
            let mut config = otlphttp::Config {
                endpoint: base,
                encoding,
                compression,
                tls,
                headers,
                timeout,
                ..Default::default()
            };
            match signal {
                oxcol_core::Signal::Metrics => config.metrics_endpoint = Some(url),
                oxcol_core::Signal::Logs => config.logs_endpoint = Some(url),
                oxcol_core::Signal::Traces => config.traces_endpoint = Some(url),
            }
            check(config.validate())?;
            Ok(PushConfig::Http(config))
        }
    }
}

/// The resource of oxcol's pushed telemetry: its service attributes, then the configured
/// ones (a null removes an attribute), with `schema_url`.
pub fn self_resource(config: &ResourceConfig) -> opentelemetry_sdk::Resource {
    use opentelemetry::{KeyValue, Value};
    let mut attributes: Vec<(String, serde_json::Value)> = vec![
        ("service.name".to_string(), "oxcol".into()),
        (
            "service.version".to_string(),
            env!("CARGO_PKG_VERSION").into(),
        ),
        (
            "service.instance.id".to_string(),
            format!("{}-{}", hostname(), std::process::id()).into(),
        ),
    ];
    for (name, value) in &config.attributes {
        attributes.retain(|(existing, _)| existing != name);
        if let Some(value) = value {
            attributes.push((name.clone(), value.clone()));
        }
    }
    let value = |value: serde_json::Value| -> Value {
        match value {
            serde_json::Value::Bool(flag) => Value::Bool(flag),
            serde_json::Value::Number(n) if n.is_i64() => {
                Value::I64(n.as_i64().unwrap_or_default())
            }
            serde_json::Value::Number(n) => Value::F64(n.as_f64().unwrap_or_default()),
            serde_json::Value::String(text) => Value::String(text.into()),
            other => Value::String(other.to_string().into()),
        }
    };
    let attributes = attributes
        .into_iter()
        .map(|(key, v)| KeyValue::new(key, value(v)));
    let builder = opentelemetry_sdk::Resource::builder_empty();
    match &config.schema_url {
        Some(url) => builder.with_schema_url(attributes, url.clone()),
        None => builder.with_attributes(attributes),
    }
    .build()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// Starts self-telemetry: the `/metrics` server of a pull reader (or the
/// `address`/default), the periodic readers and the log processors (through the
/// OpenTelemetry SDK, `crate::telemetry_sdk`), and the note about `traces`.
pub async fn start(
    config: &TelemetryConfig,
    registry: &Arc<Registry>,
    shutdown: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, String> {
    let mut tasks = Vec::new();
    if let Some(processors) = config.traces.processors.as_ref().filter(|p| !p.is_empty())
        && config.traces.level.as_deref() != Some("none")
    {
        tasks.push(crate::telemetry_sdk::start_trace_export(
            processors,
            self_resource(&config.resource),
            shutdown.clone(),
        )?);
    }
    if let Some(processors) = config.logs.processors.as_ref().filter(|p| !p.is_empty()) {
        tasks.push(crate::telemetry_sdk::start_log_export(
            processors,
            self_resource(&config.resource),
            shutdown.clone(),
        )?);
    }
    if config.metrics.level == "none" {
        return Ok(tasks);
    }
    // register_process_metrics: once per process, by the caller (a reload starts this again).
    if let Some(address) = config.metrics.listen_address()? {
        let (_, task) = serve_metrics(
            &address,
            config.metrics.tls(),
            Arc::clone(registry),
            shutdown.clone(),
        )
        .await?;
        tasks.push(task);
    }
    let periodic: Vec<&PeriodicReader> = config
        .metrics
        .readers
        .iter()
        .filter_map(|r| r.periodic.as_ref())
        .collect();
    if !periodic.is_empty() {
        tasks.push(crate::telemetry_sdk::start_metrics_push(
            &periodic,
            registry,
            self_resource(&config.resource),
            shutdown,
        )?);
    }
    Ok(tasks)
}

/// Registers the process metrics the Collector reports about itself.
pub fn register_process_metrics(registry: &Registry) {
    let started = Instant::now();
    registry.gauge_fn(
        "otelcol_process_uptime",
        "Uptime of the process in seconds.",
        &[],
        move || started.elapsed().as_secs_f64(),
    );
    registry.gauge_fn(
        "otelcol_process_memory_rss",
        "Total physical memory (resident set size) in bytes.",
        &[],
        || process::resident_bytes().unwrap_or(0) as f64,
    );
    registry.gauge_fn(
        "otelcol_process_cpu_seconds",
        "Total CPU user and system time in seconds.",
        &[],
        || process::cpu_seconds().unwrap_or(0.0),
    );
    registry.gauge_fn(
        "otelcol_process_runtime_heap_alloc_bytes",
        "Bytes of allocated heap objects.",
        &[],
        || process::allocated_bytes().unwrap_or(0) as f64,
    );
}

/// Serves `/metrics` until `shutdown`.
pub async fn serve_metrics(
    address: &str,
    tls: Option<&oxcol_core::tls::TlsServerConfig>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), String> {
    let socket = oxcol_receivers::otlp::resolve_endpoint(address)
        .map_err(|e| format!("service.telemetry.metrics: address {address:?}: {e}"))?;
    let listener = tokio::net::TcpListener::bind(socket)
        .await
        .map_err(|e| format!("service.telemetry.metrics: cannot listen on {socket}: {e} (set service.telemetry.metrics.address, or level: none)"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let stats = oxcol_core::listen::ConnectionStats::new(&registry, "telemetry");
    let router = Router::new().route(
        "/metrics",
        get(move || {
            let registry = Arc::clone(&registry);
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    registry.render_prometheus(),
                )
            }
        }),
    );
    let tls = match tls {
        Some(tls) => Some(
            tls.rustls_config(oxcol_core::tls::ALPN_HTTP)
                .map_err(|e| format!("service.telemetry.metrics: {e}"))?,
        ),
        None => None,
    };
    let secure = tls.is_some();
    let mut limits = oxcol_core::listen::ServerLimits::http(None, None);
    limits.stats = Some(stats);
    let incoming =
        oxcol_core::listen::incoming("telemetry", listener, tls, limits.clone(), shutdown.clone());
    tracing::info!(endpoint = %bound, tls = secure, "self-telemetry metrics at /metrics");
    let task = tokio::spawn(async move {
        oxcol_core::listen::serve_http(
            "telemetry",
            incoming,
            router,
            &limits,
            shutdown,
            std::time::Duration::from_secs(2),
        )
        .await;
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcol_core::Signal;

    #[test]
    fn both_address_forms_resolve() {
        let old = MetricsConfig {
            address: Some("127.0.0.1:9999".into()),
            ..MetricsConfig::default()
        };
        assert_eq!(
            old.listen_address().unwrap().as_deref(),
            Some("127.0.0.1:9999")
        );
        let new = MetricsConfig {
            readers: vec![Reader {
                pull: Some(PullReader {
                    exporter: PullExporter {
                        prometheus: Some(PrometheusReader {
                            port: 7777,
                            ..PrometheusReader::default()
                        }),
                    },
                }),
                periodic: None,
            }],
            ..MetricsConfig::default()
        };
        assert_eq!(
            new.listen_address().unwrap().as_deref(),
            Some("127.0.0.1:7777")
        );
        assert_eq!(
            MetricsConfig::default()
                .listen_address()
                .unwrap()
                .as_deref(),
            Some("127.0.0.1:8888")
        );
        let none = MetricsConfig {
            level: "none".into(),
            ..MetricsConfig::default()
        };
        assert_eq!(none.listen_address().unwrap(), None);
    }

    fn telemetry(json: serde_json::Value) -> TelemetryConfig {
        serde_json::from_value(json).expect("a service.telemetry config")
    }

    #[test]
    fn resource_takes_both_collector_forms_but_not_mixed() {
        let inline =
            telemetry(serde_json::json!({"resource": {"service.name": "gw", "host.name": null}}));
        assert!(inline.validate().is_empty(), "{:?}", inline.validate());
        let list = telemetry(
            serde_json::json!({"resource": {"attributes": [{"name": "deployment.environment", "value": "prod"}], "schema_url": "https://opentelemetry.io/schemas/1.26.0"}}),
        );
        assert!(list.validate().is_empty(), "{:?}", list.validate());
        assert_eq!(
            list.resource.schema_url.as_deref(),
            Some("https://opentelemetry.io/schemas/1.26.0")
        );
        let mixed = telemetry(
            serde_json::json!({"resource": {"attributes": [{"name": "a", "value": "b"}], "c": "d"}}),
        );
        assert!(
            mixed
                .validate()
                .iter()
                .any(|e| e.contains("cannot be used together")),
            "{:?}",
            mixed.validate()
        );
        let number = telemetry(serde_json::json!({"resource": {"replicas": 3}}));
        assert!(
            number
                .validate()
                .iter()
                .any(|e| e.contains("must be a string or null")),
            "{:?}",
            number.validate()
        );

        let resource = self_resource(&inline.resource);
        let get = |key: &str| resource.get(&opentelemetry::Key::from(key.to_string()));
        assert_eq!(
            get("service.name"),
            Some(opentelemetry::Value::from("gw")),
            "configured attributes replace oxcol's"
        );
        assert!(get("host.name").is_none(), "null removes");
        assert!(get("service.instance.id").is_some());
    }

    #[test]
    fn periodic_readers_are_checked_and_turn_off_the_default_pull_endpoint() {
        let push = telemetry(
            serde_json::json!({"metrics": {"readers": [{"periodic": {"interval": 5000, "exporter": {"otlp": {"protocol": "http/protobuf", "endpoint": "http://collector:4318"}}}}]}}),
        );
        assert!(push.validate().is_empty(), "{:?}", push.validate());
        assert_eq!(
            push.metrics.listen_address().unwrap(),
            None,
            "only push readers: no /metrics, as in the Collector"
        );
        let both = telemetry(serde_json::json!({"metrics": {"readers": [
            {"periodic": {"exporter": {"otlp_grpc": {"endpoint": "collector:4317", "insecure": true}}}},
            {"pull": {"exporter": {"prometheus": {"host": "0.0.0.0", "port": 9999}}}}
        ]}}));
        assert!(both.validate().is_empty(), "{:?}", both.validate());
        assert_eq!(
            both.metrics.listen_address().unwrap().as_deref(),
            Some("0.0.0.0:9999")
        );
        let bad = telemetry(serde_json::json!({"metrics": {"readers": [
            {"periodic": {"interval": 0, "exporter": {"otlp": {"endpoint": "http://x:4318"}}}},
            {"periodic": {"exporter": {"otlp": {"protocol": "http/protobuf", "endpoint": "http://x:4318", "compression": "zstd", "temporality_preference": "sometimes"}}}},
            {"periodic": {"exporter": {}}}
        ]}}));
        let errors = bad.validate();
        for expected in [
            "readers[0].periodic.interval",
            "readers[0].periodic.exporter.otlp.protocol is required",
            "readers[1].periodic.exporter.otlp.compression",
            "readers[1].periodic.exporter.otlp.temporality_preference",
            "readers[2].periodic.exporter: set otlp",
        ] {
            assert!(
                errors
                    .iter()
                    .any(|e| e.starts_with(&format!("metrics.{expected}"))),
                "missing {expected:?} in {errors:#?}"
            );
        }
    }

    /// An OTLP/HTTP sink on 127.0.0.1: every POST's path and body.
    async fn http_sink() -> (
        u16,
        tokio::sync::mpsc::UnboundedReceiver<(String, bytes::Bytes)>,
        CancellationToken,
    ) {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let router = Router::new().fallback(move |uri: http::Uri, body: bytes::Bytes| {
            let sender = sender.clone();
            async move {
                let _ = sender.send((uri.path().to_string(), body));
                ""
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(until.cancelled_owned())
                .await;
        });
        (port, receiver, stop)
    }

    async fn next_post(
        posts: &mut tokio::sync::mpsc::UnboundedReceiver<(String, bytes::Bytes)>,
    ) -> (String, bytes::Bytes) {
        tokio::time::timeout(std::time::Duration::from_secs(20), posts.recv())
            .await
            .expect("a push within 20 s")
            .expect("the sink runs")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn periodic_readers_push_the_registry_through_the_sdk() {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::metrics::v1::{
            AggregationTemporality, metric::Data, number_data_point::Value as Number,
        };
        use prost::Message;
        let registry = Registry::new();
        let sent = registry.counter(
            "otelcol_exporter_sent_metric_points",
            "Sent.",
            &[("exporter", "otlp")],
        );
        sent.add(42);
        registry
            .gauge(
                "otelcol_exporter_queue_size",
                "Size.",
                &[("exporter", "otlp")],
            )
            .set(7);
        registry.gauge_fn("otelcol_process_uptime", "Up.", &[], || 1.5);
        let (port, mut posts, sink_stop) = http_sink().await;
        let reader: PeriodicReader = serde_json::from_value(serde_json::json!({
            "interval": 200,
            "exporter": {"otlp": {"protocol": "http/protobuf", "endpoint": format!("http://127.0.0.1:{port}")}}
        }))
        .unwrap();
        let resource =
            telemetry(serde_json::json!({"resource": {"deployment.environment": "test"}})).resource;
        let stop = CancellationToken::new();
        let task = crate::telemetry_sdk::start_metrics_push(
            &[&reader],
            &registry,
            self_resource(&resource),
            stop.clone(),
        )
        .unwrap();
        let push =
            |body: &bytes::Bytes| ExportMetricsServiceRequest::decode(body.as_ref()).unwrap();
        let (path, first) = next_post(&mut posts).await;
        assert_eq!(path, "/v1/metrics");
        sent.add(8);
        let second = loop {
            let (_, body) = next_post(&mut posts).await;
            let request = push(&body);
            let value = request.resource_metrics[0].scope_metrics[0]
                .metrics
                .iter()
                .find(|m| m.name == "otelcol_exporter_sent_metric_points")
                .and_then(|m| match &m.data {
                    Some(Data::Sum(sum)) => sum.data_points[0].value.clone(),
                    _ => None,
                });
            if value == Some(Number::AsInt(50)) {
                break request;
            }
        };
        let first = push(&first);
        let resource = first.resource_metrics[0].resource.clone().unwrap();
        let attribute = |key: &str| {
            resource
                .attributes
                .iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| kv.value.clone())
                .and_then(|v| v.value)
        };
        use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
        assert_eq!(
            attribute("service.name"),
            Some(Any::StringValue("oxcol".into()))
        );
        assert_eq!(
            attribute("deployment.environment"),
            Some(Any::StringValue("test".into()))
        );
        let scope = &first.resource_metrics[0].scope_metrics[0];
        assert_eq!(scope.scope.as_ref().unwrap().name, "oxcol");
        let metric = |request: &ExportMetricsServiceRequest, name: &str| {
            request.resource_metrics[0].scope_metrics[0]
                .metrics
                .iter()
                .find(|m| m.name == name)
                .unwrap_or_else(|| panic!("{name} in the push"))
                .clone()
        };
        let (Some(Data::Sum(before)), Some(Data::Sum(after))) = (
            metric(&first, "otelcol_exporter_sent_metric_points").data,
            metric(&second, "otelcol_exporter_sent_metric_points").data,
        ) else {
            panic!("a counter is a sum")
        };
        assert!(before.is_monotonic);
        assert_eq!(
            before.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(before.data_points[0].value, Some(Number::AsInt(42)));
        assert_eq!(
            before.data_points[0].start_time_unix_nano, after.data_points[0].start_time_unix_nano,
            "cumulative: one start time"
        );
        let exporter_label = &before.data_points[0].attributes[0];
        assert_eq!(exporter_label.key, "exporter");
        let Some(Data::Gauge(queue)) = metric(&first, "otelcol_exporter_queue_size").data else {
            panic!("a gauge")
        };
        assert_eq!(queue.data_points[0].value, Some(Number::AsInt(7)));
        let Some(Data::Gauge(uptime)) = metric(&first, "otelcol_process_uptime").data else {
            panic!("a computed gauge")
        };
        assert_eq!(uptime.data_points[0].value, Some(Number::AsDouble(1.5)));
        // Shutdown makes a last push, then the task ends.
        while posts.try_recv().is_ok() {}
        stop.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(20), task)
            .await
            .expect("the push task ends at shutdown")
            .unwrap();
        assert!(posts.try_recv().is_ok(), "a last push at shutdown");
        sink_stop.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delta_temporality_pushes_the_increase_since_the_last_push() {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, metric::Data};
        use prost::Message;
        let registry = Registry::new();
        let sent = registry.counter("otelcol_receiver_accepted_spans", "Accepted.", &[]);
        let (port, mut posts, sink_stop) = http_sink().await;
        let reader: PeriodicReader = serde_json::from_value(serde_json::json!({
            "interval": 200,
            "exporter": {"otlp_http": {"endpoint": format!("http://127.0.0.1:{port}"), "temporality_preference": "delta"}}
        }))
        .unwrap();
        assert!(reader.validate().is_empty(), "{:?}", reader.validate());
        let stop = CancellationToken::new();
        let _task = crate::telemetry_sdk::start_metrics_push(
            &[&reader],
            &registry,
            self_resource(&ResourceConfig::default()),
            stop.clone(),
        )
        .unwrap();
        let mut seen = Vec::new();
        sent.add(5);
        while seen.len() < 2 {
            let (_, body) = next_post(&mut posts).await;
            let request = ExportMetricsServiceRequest::decode(body.as_ref()).unwrap();
            for metric in &request.resource_metrics[0].scope_metrics[0].metrics {
                if let Some(Data::Sum(sum)) = &metric.data {
                    assert_eq!(
                        sum.aggregation_temporality,
                        AggregationTemporality::Delta as i32
                    );
                    let value = sum.data_points[0].value.clone();
                    if seen.is_empty() && value != Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(5)) {
                        continue;
                    }
                    seen.push(value);
                    sent.add(3);
                }
            }
        }
        use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as Number;
        assert_eq!(
            seen[1],
            Some(Number::AsInt(3)),
            "the increase since the last push: {seen:?}"
        );
        stop.cancel();
        sink_stop.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn log_processors_export_oxcols_log_through_the_sdk() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use tracing_subscriber::layer::SubscriberExt as _;
        let (port, mut posts, sink_stop) = http_sink().await;
        let processors: Vec<LogProcessor> = serde_json::from_value(serde_json::json!([
            {"batch": {"schedule_delay": 100, "exporter": {"otlp": {"protocol": "http/json", "endpoint": format!("http://127.0.0.1:{port}")}}}}
        ]))
        .unwrap();
        assert!(
            processors[0].validate().is_empty(),
            "{:?}",
            processors[0].validate()
        );
        let stop = CancellationToken::new();
        let task = crate::telemetry_sdk::start_log_export(
            &processors,
            self_resource(&ResourceConfig::default()),
            stop.clone(),
        )
        .unwrap();
        let subscriber = tracing_subscriber::registry().with(crate::telemetry_sdk::LogBridgeLayer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(exporter = "otlp", "queue is full; data refused");
            tracing::warn!(target: "hyper::client", "a client line that is not exported");
        });
        let (path, body) = next_post(&mut posts).await;
        assert_eq!(path, "/v1/logs");
        let request: ExportLogsServiceRequest = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("OTLP/JSON: {e}: {}", String::from_utf8_lossy(&body)));
        let records: Vec<_> = request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .collect();
        assert_eq!(records.len(), 1, "only oxcol's line: {records:?}");
        let record = records[0];
        assert_eq!(record.severity_text, "WARN");
        assert_eq!(record.severity_number, 13);
        let body = format!("{:?}", record.body);
        assert!(body.contains("queue is full; data refused"), "{body}");
        assert!(
            record.attributes.iter().any(|kv| kv.key == "exporter"),
            "{record:?}"
        );
        // At shutdown the bridge is removed: later lines are not exported.
        stop.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(20), task)
            .await
            .expect("the export task ends at shutdown")
            .unwrap();
        let subscriber = tracing_subscriber::registry().with(crate::telemetry_sdk::LogBridgeLayer);
        tracing::subscriber::with_default(subscriber, || tracing::warn!("after shutdown"));
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(posts.try_recv().is_err(), "nothing after shutdown");
        sink_stop.cancel();
    }

    #[test]
    fn log_processors_are_checked() {
        let console = serde_json::from_value::<Vec<LogProcessor>>(serde_json::json!([
            {"batch": {"exporter": {"console": {}}}}
        ]));
        assert!(
            console.is_err_and(|e| e.to_string().contains("console")),
            "console is not an exporter oxcol has"
        );
        let processors: Vec<LogProcessor> = serde_json::from_value(serde_json::json!([
            {"batch": {"max_export_batch_size": 5000, "exporter": {"otlp": {"protocol": "grpc", "endpoint": "collector:4317"}}}},
            {},
            {"simple": {"exporter": {"otlp_grpc": {"endpoint": "http://collector:4317"}}}}
        ]))
        .unwrap();
        assert!(
            processors[0]
                .validate()
                .iter()
                .any(|e| e.contains("max_export_batch_size")),
            "{:?}",
            processors[0].validate()
        );
        assert_eq!(
            processors[1].validate(),
            vec!["set one of batch and simple".to_string()]
        );
        assert!(
            processors[2].validate().is_empty(),
            "{:?}",
            processors[2].validate()
        );
        assert_eq!(processors[2].settings().unwrap().schedule_delay, Some(100));
    }

    #[test]
    fn push_endpoints_map_as_the_go_sdk_maps_them() {
        let http = |endpoint: &str| OtlpPush {
            protocol: Some("http/protobuf".into()),
            endpoint: Some(endpoint.into()),
            compression: Some("gzip".into()),
            ..OtlpPush::default()
        };
        let url = |endpoint: &str| match push_config(
            PushProtocol::HttpProtobuf,
            &http(endpoint),
            Signal::Metrics,
        ) {
            Ok(PushConfig::Http(config)) => (
                config.metrics_endpoint.unwrap_or_default(),
                config.compression,
            ),
            Ok(PushConfig::Grpc(_)) => panic!("http"),
            Err(e) => panic!("{endpoint}: {e}"),
        };
        assert_eq!(
            url("http://collector:4318"),
            (
                "http://collector:4318/v1/metrics".to_string(),
                "gzip".to_string()
            )
        );
        assert_eq!(
            url("https://collector:4318/custom/path").0,
            "https://collector:4318/custom/path"
        );
        assert_eq!(
            url("http://collector:4318/").0,
            "http://collector:4318/",
            "a path is used as written, even /"
        );
        match push_config(
            PushProtocol::HttpProtobuf,
            &http("http://collector:4318"),
            Signal::Logs,
        ) {
            Ok(PushConfig::Http(config)) => assert_eq!(
                config.logs_endpoint.as_deref(),
                Some("http://collector:4318/v1/logs"),
                "a log processor posts to /v1/logs"
            ),
            _ => panic!("http"),
        }
        assert!(
            push_config(
                PushProtocol::HttpProtobuf,
                &http("collector:4318"),
                Signal::Metrics
            )
            .is_err(),
            "HTTP needs a scheme"
        );
        let grpc = OtlpPush {
            endpoint: Some("collector:4317".into()),
            insecure: Some(true),
            headers: vec![NameValue {
                name: "x-tenant".into(),
                value: Some("a".into()),
            }],
            headers_list: Some("x-b=2".into()),
            ..OtlpPush::default()
        };
        let Ok(PushConfig::Grpc(config)) = push_config(PushProtocol::Grpc, &grpc, Signal::Metrics)
        else {
            panic!("grpc")
        };
        assert!(config.tls.insecure);
        assert_eq!(
            config.compression, "none",
            "the SDK compresses nothing unless told"
        );
        assert_eq!(config.headers.len(), 2);
    }

    #[test]
    fn log_output_paths_write_every_line_to_each() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("oxcol-log-outputs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.log"), dir.join("b.log"));
        let mut outputs = LogOutputs::open(&[a.display().to_string(), b.display().to_string()]);
        assert!(!outputs.stderr && !outputs.stdout);
        outputs.write_all(b"line one\n").unwrap();
        outputs.write_all(b"line two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "line one\nline two\n");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "line one\nline two\n");
        assert!(LogOutputs::open(&[]).stderr, "stderr by default");
        let unopenable = LogOutputs::open(&["/nonexistent/dir/x.log".to_string()]);
        assert!(
            unopenable.stderr && unopenable.files.is_empty(),
            "falls back to stderr"
        );
    }
}
