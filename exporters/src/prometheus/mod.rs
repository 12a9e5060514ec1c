//! The `prometheus` exporter: serves the latest value of every series it was sent on an
//! HTTP `/metrics` endpoint for Prometheus to scrape, in the Prometheus text format
//! (0.0.4) or, when `enable_open_metrics` is on and the scraper asks for it, OpenMetrics
//! 1.0.
//!
//! Translation is `prom_translate`'s, as for remote write. State: one entry per series
//! (labels -> last value, timestamp, when it was last updated). Delta sums and histograms
//! are accumulated into cumulative values here (the exporter keeps state anyway); a data
//! point flagged "no recorded value" (the staleness marker) removes its series; a series
//! not updated for `metric_expiration` is removed when the endpoint is read.
//!
//! This module must never block an export on a scrape for long: both take one mutex for
//! the time of a map update or a render.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use oxcol_core::{Batch, ExportError, ExportOutcome, Exporter, GoDuration};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::prom_translate::{
    self, DeltaHandling, Family, FamilyType, Labels, Settings, format_float, is_stale_nan,
};

pub const TYPE: &str = "prometheus";
pub const ALIASES: &[&str] = &["prometheus"];

const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `host:port` to serve `/metrics` on. Required (the Collector has no default either).
    pub endpoint: String,
    /// Prefix for every metric name (`<namespace>_`). Default empty.
    pub namespace: String,
    /// Labels added to every series that does not already have them. Default none.
    pub const_labels: BTreeMap<String, String>,
    /// Write each sample's timestamp. Default false (Prometheus uses the scrape time).
    pub send_timestamps: bool,
    /// A series not updated for this long is no longer served. Default 5m.
    pub metric_expiration: GoDuration,
    /// `enabled: true` copies every resource attribute onto every series. Default false.
    pub resource_to_telemetry_conversion: Toggle,
    /// Answer OpenMetrics when the scraper's `Accept` asks for it. Default false.
    pub enable_open_metrics: bool,
    /// Unit and type suffixes (`_seconds`, `_total`, `_ratio`). Default true.
    pub add_metric_suffixes: bool,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Toggle {
    pub enabled: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: String::new(),
            namespace: String::new(),
            const_labels: BTreeMap::new(),
            send_timestamps: false,
            metric_expiration: GoDuration::from_secs(300),
            resource_to_telemetry_conversion: Toggle::default(),
            enable_open_metrics: false,
            add_metric_suffixes: true,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.endpoint.is_empty() {
            errors.push("endpoint is required, e.g. 127.0.0.1:8889".to_string());
        } else if self.endpoint.parse::<std::net::SocketAddr>().is_err()
            && !self.endpoint.contains(':')
        {
            errors.push(format!(
                "endpoint {:?} must be host:port, e.g. 0.0.0.0:8889",
                self.endpoint
            ));
        }
        for name in self.const_labels.keys() {
            if prom_translate::label_name(name).as_deref() != Some(name.as_str()) {
                errors.push(format!(
                    "const_labels: {name:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
                ));
            }
        }
        if self.metric_expiration.is_zero() {
            errors.push("metric_expiration must be greater than 0".to_string());
        }
        errors
    }
}

struct Entry {
    family: String,
    value: f64,
    timestamp_ms: i64,
    updated: Instant,
}

#[derive(Default)]
struct Store {
    series: HashMap<Labels, Entry>,
    families: HashMap<String, Family>,
}

struct Shared {
    store: Mutex<Store>,
    expiration: Duration,
    send_timestamps: bool,
    open_metrics: bool,
}

pub struct PrometheusExporter {
    shared: Arc<Shared>,
    settings: Settings,
    stop: CancellationToken,
    /// Where the endpoint is bound (useful with port 0).
    pub local_addr: std::net::SocketAddr,
}

impl Drop for PrometheusExporter {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl PrometheusExporter {
    /// Binds the endpoint and starts serving. Must be called inside a tokio runtime.
    pub fn new(id: &str, config: &Config) -> Result<PrometheusExporter, String> {
        let listener = std::net::TcpListener::bind(&config.endpoint).map_err(|e| {
            format!(
                "cannot listen on {}: {e}; choose a free host:port for `endpoint`",
                config.endpoint
            )
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot listen on {}: {e}", config.endpoint))?;
        let local_addr = listener.local_addr().map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| format!("cannot listen on {}: {e}", config.endpoint))?;
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            expiration: config.metric_expiration.get(),
            send_timestamps: config.send_timestamps,
            open_metrics: config.enable_open_metrics,
        });
        let stop = CancellationToken::new();
        let served = Arc::clone(&shared);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move |headers: http::HeaderMap| {
                let shared = Arc::clone(&served);
                async move {
                    let accept = headers
                        .get(http::header::ACCEPT)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let open_metrics =
                        shared.open_metrics && accept.contains("application/openmetrics-text");
                    let body = shared.render(open_metrics, Instant::now());
                    let content_type = if open_metrics {
                        OPENMETRICS_CONTENT_TYPE
                    } else {
                        TEXT_CONTENT_TYPE
                    };
                    ([(http::header::CONTENT_TYPE, content_type)], body)
                }
            }),
        );
        let until = stop.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await;
            if let Err(error) = served {
                tracing::error!(exporter = %id, %error, "the /metrics endpoint stopped");
            }
        });
        let settings = Settings {
            namespace: config.namespace.clone(),
            add_metric_suffixes: config.add_metric_suffixes,
            resource_to_telemetry: config.resource_to_telemetry_conversion.enabled,
            target_info: true,
            extra_labels: config
                .const_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            delta: DeltaHandling::Pass,
            native_histograms: false,
        };
        Ok(PrometheusExporter {
            shared,
            settings,
            stop,
            local_addr,
        })
    }

    /// What a scrape would return now (for tests).
    pub fn render(&self, open_metrics: bool) -> String {
        self.shared.render(open_metrics, Instant::now())
    }
}

impl Exporter for PrometheusExporter {
    fn export(&self, mut batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>> {
        Box::pin(async move {
            let items = batch.items();
            let resource_metrics = batch.metrics_mut().map_err(|e| ExportError::Permanent {
                reason: format!("cannot decode the batch: {e}"),
            })?;
            let translation = prom_translate::translate(resource_metrics, &self.settings);
            let now = Instant::now();
            let mut store = self.shared.store.lock().unwrap_or_else(|p| p.into_inner());
            for family in &translation.families {
                store.families.insert(family.name.clone(), family.clone());
            }
            for sample in translation.samples {
                let labels = translation.series.owned(sample.series);
                if is_stale_nan(sample.value) {
                    store.series.remove(&labels);
                    continue;
                }
                let family = translation.families[sample.family as usize].name.clone();
                let expired = |e: &Entry| now.duration_since(e.updated) > self.shared.expiration;
                match store.series.get_mut(&labels) {
                    Some(entry) if sample.delta && !expired(entry) => {
                        entry.value += sample.value;
                        entry.timestamp_ms = entry.timestamp_ms.max(sample.timestamp_ms);
                        entry.updated = now;
                    }
                    // An older sample than what is served does not replace it.
                    Some(entry)
                        if !sample.delta
                            && sample.timestamp_ms < entry.timestamp_ms
                            && !expired(entry) => {}
                    _ => {
                        store.series.insert(
                            labels,
                            Entry {
                                family,
                                value: sample.value,
                                timestamp_ms: sample.timestamp_ms,
                                updated: now,
                            },
                        );
                    }
                }
            }
            Ok(ExportOutcome {
                rejected: translation.dropped_points.min(items),
                message: translation.problems.join("; "),
            })
        })
    }
}

impl Shared {
    fn render(&self, open_metrics: bool, now: Instant) -> String {
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        store
            .series
            .retain(|_, e| now.duration_since(e.updated) <= self.expiration);
        let mut by_family: BTreeMap<&str, Vec<(&Labels, &Entry)>> = BTreeMap::new();
        for (labels, entry) in &store.series {
            by_family
                .entry(entry.family.as_str())
                .or_default()
                .push((labels, entry));
        }
        let mut out = String::new();
        for (name, mut series) in by_family {
            series.sort_by(|a, b| a.0.cmp(b.0));
            let family = store.families.get(name);
            let kind = family.map(|f| f.kind).unwrap_or(FamilyType::Unknown);
            let help = family.map(|f| f.help.as_str()).unwrap_or("");
            let unit = family.map(|f| f.unit.as_str()).unwrap_or("");
            if open_metrics {
                // OpenMetrics names the counter family without `_total`; a counter whose
                // samples do not end in `_total` can only be `unknown`.
                let (family_name, type_word) = match kind {
                    FamilyType::Counter => match name.strip_suffix("_total") {
                        Some(base) => (base, "counter"),
                        None => (name, "unknown"),
                    },
                    FamilyType::Unknown => (name, "unknown"),
                    other => (name, other.text_name()),
                };
                if !help.is_empty() {
                    let _ = writeln!(out, "# HELP {family_name} {}", escape_help(help, true));
                }
                let _ = writeln!(out, "# TYPE {family_name} {type_word}");
                if !unit.is_empty() && family_name.ends_with(&format!("_{unit}")) {
                    let _ = writeln!(out, "# UNIT {family_name} {unit}");
                }
            } else {
                if !help.is_empty() {
                    let _ = writeln!(out, "# HELP {name} {}", escape_help(help, false));
                }
                let _ = writeln!(out, "# TYPE {name} {}", kind.text_name());
            }
            for (labels, entry) in series {
                write_sample(&mut out, labels, entry, self.send_timestamps, open_metrics);
            }
        }
        if open_metrics {
            out.push_str("# EOF\n");
        }
        out
    }
}

fn write_sample(
    out: &mut String,
    labels: &Labels,
    entry: &Entry,
    timestamps: bool,
    open_metrics: bool,
) {
    let name = labels
        .iter()
        .find(|(k, _)| k == "__name__")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    out.push_str(name);
    let mut first = true;
    for (key, value) in labels.iter().filter(|(k, _)| k != "__name__") {
        out.push(if first { '{' } else { ',' });
        first = false;
        let _ = write!(out, "{key}=\"{}\"", escape_label_value(value));
    }
    if !first {
        out.push('}');
    }
    let _ = write!(out, " {}", format_float(entry.value));
    if timestamps {
        if open_metrics {
            // OpenMetrics timestamps are seconds.
            let _ = write!(out, " {}", format_float(entry.timestamp_ms as f64 / 1000.0));
        } else {
            let _ = write!(out, " {}", entry.timestamp_ms);
        }
    }
    out.push('\n');
}

fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(help: &str, open_metrics: bool) -> String {
    let escaped = help.replace('\\', "\\\\").replace('\n', "\\n");
    if open_metrics {
        escaped.replace('"', "\\\"")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests;
