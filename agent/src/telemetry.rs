//! `service.telemetry`: oxcol's own logs (through `tracing`) and metrics (Prometheus text
//! on 127.0.0.1:8888/metrics by default), configured with the Collector's keys, both its
//! current `readers: [{pull: {exporter: {prometheus: {host, port}}}}]` form and the older
//! `address:` form, plus `readers: [{periodic: {exporter: {otlp: ...}}}]`, which pushes
//! the same series as OTLP metrics (see [`push_metrics`]).
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
    /// The Collector's own traces; accepted, oxcol emits none (said once in the log).
    pub traces: Option<serde_json::Value>,
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
    /// OTLP export of oxcol's own log; accepted, not done (said once in the log).
    pub processors: Option<serde_json::Value>,
    pub disable_zap_resource: bool,
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
    /// Only `cumulative` (the default) is what oxcol sends; others are refused.
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

impl PeriodicReader {
    /// The exporter and its protocol, or what is wrong.
    pub fn otlp(&self) -> Result<(PushProtocol, &OtlpPush), String> {
        let exporter = &self.exporter;
        match (&exporter.otlp, &exporter.otlp_http, &exporter.otlp_grpc) {
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

    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.interval == 0 {
            errors.push("interval must be greater than 0 (milliseconds)".to_string());
        }
        match self.otlp() {
            Err(e) => errors.push(e),
            Ok((protocol, otlp)) => {
                if otlp.endpoint.as_deref().unwrap_or("").is_empty() {
                    errors.push(
                        "exporter.otlp.endpoint is required (e.g. http://collector:4318)"
                            .to_string(),
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
                    && preference != "cumulative"
                {
                    errors.push(format!("exporter.otlp.temporality_preference {preference:?}: oxcol pushes cumulative self-metrics only; remove it or set cumulative"));
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
                if let Err(e) = push_config(protocol, otlp) {
                    errors.push(format!("exporter.otlp: {e}"));
                }
            }
        }
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
    let result = if config.encoding == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
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

pub fn push_config(protocol: PushProtocol, otlp: &OtlpPush) -> Result<PushConfig, String> {
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
            // Without a path the SDK posts to /v1/metrics; with one, to exactly that path.
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
            let metrics_endpoint = Some(if written_path.is_empty() {
                format!("{base}/v1/metrics")
            } else {
                format!("{base}{written_path}")
            });
            let encoding = if protocol == PushProtocol::HttpJson {
                otlphttp::WireEncoding::Json
            } else {
                otlphttp::WireEncoding::Proto
            };
            let config = otlphttp::Config {
                endpoint: base,
                metrics_endpoint,
                encoding,
                compression,
                tls,
                headers,
                timeout,
                ..Default::default()
            };
            check(config.validate())?;
            Ok(PushConfig::Http(config))
        }
    }
}

/// Builds the exporter of a push reader (inside the async runtime).
pub fn push_exporter(
    protocol: PushProtocol,
    otlp: &OtlpPush,
) -> Result<Arc<dyn oxcol_core::Exporter>, String> {
    Ok(match push_config(protocol, otlp)? {
        PushConfig::Grpc(config) => {
            Arc::new(oxcol_exporters::otlp::OtlpGrpcExporter::new(&config)?)
        }
        PushConfig::Http(config) => {
            Arc::new(oxcol_exporters::otlphttp::OtlpHttpExporter::new(&config)?)
        }
    })
}

/// The resource of pushed self-metrics: oxcol's service attributes, then the configured
/// ones (a null removes an attribute).
fn self_resource(config: &ResourceConfig) -> opentelemetry_proto::tonic::resource::v1::Resource {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
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
    let any = |value: &serde_json::Value| -> any_value::Value {
        match value {
            serde_json::Value::Bool(flag) => any_value::Value::BoolValue(*flag),
            serde_json::Value::Number(n) if n.is_i64() => {
                any_value::Value::IntValue(n.as_i64().unwrap_or_default())
            }
            serde_json::Value::Number(n) => {
                any_value::Value::DoubleValue(n.as_f64().unwrap_or_default())
            }
            serde_json::Value::String(text) => any_value::Value::StringValue(text.clone()),
            other => any_value::Value::StringValue(other.to_string()),
        }
    };
    opentelemetry_proto::tonic::resource::v1::Resource {
        attributes: attributes
            .iter()
            .map(|(key, value)| KeyValue {
                key: key.clone(),
                value: Some(AnyValue {
                    value: Some(any(value)),
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// Turns the registry into OTLP metrics: its Prometheus text read back by the prometheus
/// receiver's parser and converter (one translation in the tree, not a second one here).
/// The converter keeps each series' start time across pushes (cumulative).
pub struct SelfMetrics {
    converter: oxcol_receivers::prometheus::convert::Converter,
    resource: opentelemetry_proto::tonic::resource::v1::Resource,
    schema_url: String,
}

impl SelfMetrics {
    pub fn new(resource: &ResourceConfig) -> SelfMetrics {
        SelfMetrics {
            converter: Default::default(),
            resource: self_resource(resource),
            schema_url: resource.schema_url.clone().unwrap_or_default(),
        }
    }

    pub fn collect(
        &mut self,
        registry: &Registry,
        now_nanos: u64,
    ) -> Result<oxcol_core::Batch, String> {
        use oxcol_receivers::prometheus::convert::Kind;
        use oxcol_receivers::prometheus::parse::{FamilyType, parse};
        let families = parse(&registry.render_prometheus(), false)?;
        for family in families {
            let kind = match family.kind {
                FamilyType::Counter => Kind::Counter,
                FamilyType::Histogram => Kind::Histogram,
                FamilyType::Summary => Kind::Summary,
                _ => Kind::Gauge,
            };
            for sample in family.samples {
                self.converter.add(
                    kind,
                    &family.name,
                    &sample.name,
                    sample.labels,
                    sample.value,
                );
            }
        }
        let metrics = self.converter.finish(now_nanos);
        use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
        use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
        Ok(oxcol_core::Batch::from_metrics(vec![ResourceMetrics {
            resource: Some(self.resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "oxcol".to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: self.schema_url.clone(),
        }]))
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Starts self-telemetry: the process metrics, the `/metrics` server of a pull reader (or
/// the `address`/default), one push task per periodic reader, and the log notes about
/// what is accepted but not done.
pub async fn start(
    config: &TelemetryConfig,
    registry: &Arc<Registry>,
    shutdown: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, String> {
    if config.traces.as_ref().is_some_and(|t| !t.is_null()) {
        tracing::info!(
            "service.telemetry.traces is accepted, but oxcol emits no spans of its own yet"
        );
    }
    if config
        .logs
        .processors
        .as_ref()
        .is_some_and(|p| !p.is_null())
    {
        tracing::warn!(
            "service.telemetry.logs.processors: oxcol does not export its own log over OTLP yet; the log goes to output_paths only"
        );
    }
    let mut tasks = Vec::new();
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
    for (index, reader) in config.metrics.readers.iter().enumerate() {
        let Some(periodic) = &reader.periodic else {
            continue;
        };
        let (protocol, otlp) = periodic
            .otlp()
            .map_err(|e| format!("service.telemetry.metrics.readers[{index}].periodic.{e}"))?;
        let exporter = push_exporter(protocol, otlp).map_err(|e| {
            format!("service.telemetry.metrics.readers[{index}].periodic.exporter: {e}")
        })?;
        let endpoint = otlp.endpoint.clone().unwrap_or_default();
        let interval = std::time::Duration::from_millis(periodic.interval);
        let timeout = std::time::Duration::from_millis(periodic.timeout.max(1));
        let mut self_metrics = SelfMetrics::new(&config.resource);
        let registry = Arc::clone(registry);
        let stop = shutdown.clone();
        tracing::info!(%endpoint, interval_ms = periodic.interval, "pushing self-telemetry metrics over OTLP");
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let batch = match self_metrics.collect(&registry, now_nanos()) {
                    Ok(batch) => batch,
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the self-telemetry registry; push skipped");
                        continue;
                    }
                };
                match tokio::time::timeout(timeout, exporter.export(batch)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => tracing::warn!(%endpoint, %error, "self-telemetry push failed; dropped (the next push carries the cumulative values)"),
                    Err(_) => tracing::warn!(%endpoint, "self-telemetry push timed out; dropped"),
                }
            }
        }));
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
        let get = |key: &str| {
            resource
                .attributes
                .iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| kv.value.clone())
        };
        use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
        assert_eq!(
            get("service.name").and_then(|v| v.value),
            Some(Any::StringValue("gw".into())),
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
            {"periodic": {"exporter": {"otlp": {"protocol": "http/protobuf", "endpoint": "http://x:4318", "compression": "zstd", "temporality_preference": "delta"}}}},
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

    #[tokio::test]
    async fn self_metrics_become_otlp_sums_and_gauges_with_a_stable_start() {
        let registry = Registry::new();
        registry
            .counter(
                "otelcol_exporter_sent_metric_points",
                "Sent.",
                &[("exporter", "otlp")],
            )
            .add(42);
        registry
            .gauge(
                "otelcol_exporter_queue_size",
                "Size.",
                &[("exporter", "otlp")],
            )
            .set(7);
        let mut self_metrics = SelfMetrics::new(&ResourceConfig::default());
        let first = self_metrics.collect(&registry, 1_000).unwrap();
        let second = self_metrics.collect(&registry, 2_000).unwrap();
        use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point::Value};
        let metrics = |batch: &oxcol_core::Batch| {
            let mut batch = batch.clone();
            batch.decode().unwrap();
            let oxcol_core::Data::Metrics(resource_metrics) = batch.data().clone() else {
                panic!("metrics")
            };
            resource_metrics[0].scope_metrics[0].metrics.clone()
        };
        let (first, second) = (metrics(&first), metrics(&second));
        let sent = |metrics: &[opentelemetry_proto::tonic::metrics::v1::Metric]| match &metrics
            .iter()
            .find(|m| m.name == "otelcol_exporter_sent_metric_points")
            .expect("the counter")
            .data
        {
            Some(Data::Sum(sum)) => sum.data_points[0].clone(),
            other => panic!("a counter is a sum: {other:?}"),
        };
        assert_eq!(sent(&first).value, Some(Value::AsDouble(42.0)));
        assert_eq!(
            sent(&first).start_time_unix_nano,
            sent(&second).start_time_unix_nano,
            "cumulative: one start time"
        );
        assert!(matches!(
            first
                .iter()
                .find(|m| m.name == "otelcol_exporter_queue_size")
                .and_then(|m| m.data.clone()),
            Some(Data::Gauge(_))
        ));
    }

    #[test]
    fn push_endpoints_map_as_the_go_sdk_maps_them() {
        let http = |endpoint: &str| OtlpPush {
            protocol: Some("http/protobuf".into()),
            endpoint: Some(endpoint.into()),
            compression: Some("gzip".into()),
            ..OtlpPush::default()
        };
        let url = |endpoint: &str| match push_config(PushProtocol::HttpProtobuf, &http(endpoint)) {
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
        assert!(
            push_config(PushProtocol::HttpProtobuf, &http("collector:4318")).is_err(),
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
        let Ok(PushConfig::Grpc(config)) = push_config(PushProtocol::Grpc, &grpc) else {
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
