//! `service.telemetry`: oxcol's own logs (through `tracing`) and metrics (Prometheus text
//! on 127.0.0.1:8888/metrics by default), configured with the Collector's keys, both its
//! current `readers: [{pull: {exporter: {prometheus: {host, port}}}}]` form and the older
//! `address:` form.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::routing::get;
use axum::Router;
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
    /// Resource attributes of the Collector's own telemetry; accepted, not used yet.
    pub resource: std::collections::BTreeMap<String, serde_json::Value>,
    /// The Collector's own traces; accepted, oxcol emits none.
    pub traces: Option<serde_json::Value>,
}

impl TelemetryConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !["debug", "info", "warn", "error", "dpanic", "panic", "fatal"].contains(&self.logs.level.to_ascii_lowercase().as_str()) {
            errors.push(format!("logs.level {:?}: use debug, info, warn or error", self.logs.level));
        }
        if !["console", "json"].contains(&self.logs.encoding.as_str()) {
            errors.push(format!("logs.encoding {:?}: use console or json", self.logs.encoding));
        }
        if !["none", "basic", "normal", "detailed"].contains(&self.metrics.level.as_str()) {
            errors.push(format!("metrics.level {:?}: use none, basic, normal or detailed", self.metrics.level));
        }
        if let Err(e) = self.metrics.listen_address() {
            errors.push(e);
        }
        if let Some(tls) = self.metrics.tls() {
            errors.extend(tls.validate().into_iter().map(|e| format!("metrics.readers[0].pull.exporter.prometheus.{e}")));
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
    pub sampling: Option<serde_json::Value>,
    /// Only stderr is supported (the default).
    pub output_paths: Vec<String>,
    pub error_output_paths: Vec<String>,
    pub initial_fields: std::collections::BTreeMap<String, serde_json::Value>,
    pub processors: Option<serde_json::Value>,
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
        MetricsConfig { level: "basic".to_string(), address: None, readers: Vec::new(), views: None }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Reader {
    pub pull: Option<PullReader>,
    /// Push readers (OTLP) are not supported yet.
    pub periodic: Option<serde_json::Value>,
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
        self.readers.iter().find_map(|r| r.pull.as_ref()?.exporter.prometheus.as_ref()?.tls.as_ref())
    }

    /// Where `/metrics` is served, or None when self-metrics are off.
    pub fn listen_address(&self) -> Result<Option<String>, String> {
        if self.level == "none" {
            return Ok(None);
        }
        if self.readers.iter().any(|r| r.periodic.is_some()) {
            return Err("metrics.readers: periodic (push) readers are not supported yet; use a pull/prometheus reader".to_string());
        }
        let pull: Vec<&PrometheusReader> = self.readers.iter().filter_map(|r| r.pull.as_ref()?.exporter.prometheus.as_ref()).collect();
        match (self.address.as_ref(), pull.as_slice()) {
            (Some(_), [_, ..]) => Err("metrics: set either address or readers, not both".to_string()),
            (Some(address), []) => Ok(Some(address.clone())),
            (None, [reader]) => {
                let host = if reader.host.contains(':') { format!("[{}]", reader.host) } else { reader.host.clone() };
                Ok(Some(format!("{host}:{}", reader.port)))
            }
            (None, []) => Ok(Some("127.0.0.1:8888".to_string())),
            (None, [_, _, ..]) => Err("metrics.readers: only one pull reader is supported".to_string()),
        }
    }
}

/// Installs the log subscriber. Logs go to stderr.
pub fn init_logging(config: &LogsConfig) {
    let level = match config.level.to_ascii_lowercase().as_str() {
        "debug" => "debug",
        "warn" => "warn",
        "error" | "dpanic" | "panic" | "fatal" => "error",
        _ => "info",
    };
    // Dependencies are noisy at debug; keep them at warn unless RUST_LOG says otherwise.
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| format!("warn,oxcol={level},oxcol_core={level},oxcol_receivers={level},oxcol_processors={level},oxcol_exporters={level}"));
    let builder = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).with_writer(std::io::stderr).with_target(false).with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = if config.encoding == "json" { builder.json().try_init() } else { builder.try_init() };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

/// Registers the process metrics the Collector reports about itself.
pub fn register_process_metrics(registry: &Registry) {
    let started = Instant::now();
    registry.gauge_fn("otelcol_process_uptime", "Uptime of the process in seconds.", &[], move || started.elapsed().as_secs_f64());
    registry.gauge_fn("otelcol_process_memory_rss", "Total physical memory (resident set size) in bytes.", &[], || {
        process::resident_bytes().unwrap_or(0) as f64
    });
    registry.gauge_fn("otelcol_process_cpu_seconds", "Total CPU user and system time in seconds.", &[], || process::cpu_seconds().unwrap_or(0.0));
    registry.gauge_fn("otelcol_process_runtime_heap_alloc_bytes", "Bytes of allocated heap objects.", &[], || {
        process::allocated_bytes().unwrap_or(0) as f64
    });
}

/// Serves `/metrics` until `shutdown`.
pub async fn serve_metrics(address: &str, tls: Option<&oxcol_core::tls::TlsServerConfig>, registry: Arc<Registry>, shutdown: CancellationToken) -> Result<(SocketAddr, JoinHandle<()>), String> {
    let socket = oxcol_receivers::otlp::resolve_endpoint(address).map_err(|e| format!("service.telemetry.metrics: address {address:?}: {e}"))?;
    let listener = tokio::net::TcpListener::bind(socket)
        .await
        .map_err(|e| format!("service.telemetry.metrics: cannot listen on {socket}: {e} (set service.telemetry.metrics.address, or level: none)"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let stats = oxcol_core::listen::ConnectionStats::new(&registry, "telemetry");
    let router = Router::new().route(
        "/metrics",
        get(move || {
            let registry = Arc::clone(&registry);
            async move { ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], registry.render_prometheus()) }
        }),
    );
    let tls = match tls {
        Some(tls) => Some(tls.rustls_config(oxcol_core::tls::ALPN_HTTP).map_err(|e| format!("service.telemetry.metrics: {e}"))?),
        None => None,
    };
    let secure = tls.is_some();
    let mut limits = oxcol_core::listen::ServerLimits::http(None, None);
    limits.stats = Some(stats);
    let incoming = oxcol_core::listen::incoming("telemetry", listener, tls, limits.clone(), shutdown.clone());
    tracing::info!(endpoint = %bound, tls = secure, "self-telemetry metrics at /metrics");
    let task = tokio::spawn(async move {
        oxcol_core::listen::serve_http("telemetry", incoming, router, &limits, shutdown, std::time::Duration::from_secs(2)).await;
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_address_forms_resolve() {
        let old = MetricsConfig { address: Some("127.0.0.1:9999".into()), ..MetricsConfig::default() };
        assert_eq!(old.listen_address().unwrap().as_deref(), Some("127.0.0.1:9999"));
        let new = MetricsConfig {
            readers: vec![Reader {
                pull: Some(PullReader { exporter: PullExporter { prometheus: Some(PrometheusReader { port: 7777, ..PrometheusReader::default() }) } }),
                periodic: None,
            }],
            ..MetricsConfig::default()
        };
        assert_eq!(new.listen_address().unwrap().as_deref(), Some("127.0.0.1:7777"));
        assert_eq!(MetricsConfig::default().listen_address().unwrap().as_deref(), Some("127.0.0.1:8888"));
        let none = MetricsConfig { level: "none".into(), ..MetricsConfig::default() };
        assert_eq!(none.listen_address().unwrap(), None);
    }
}
