//! `debug` exporter: prints what passes through a pipeline to oxcol's log (stderr), as
//! the Collector's debug exporter does. `basic` prints counts per batch, `normal` one line
//! per metric/span/log record, `detailed` every item in OTLP JSON.
//!
//! It never fails a send: printing is best effort, and sampling bounds the log volume.
//!
//! `logging` is the Collector's older name of this exporter (removed in Collector
//! v0.111): [`LoggingConfig`] reads its keys and defaults and becomes a debug [`Config`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use opentelemetry_proto::tonic::metrics::v1::metric;
use oxcol_core::{Batch, Data, ExportError, ExportOutcome, Exporter};
use serde::Deserialize;
use std::sync::Mutex;

pub const TYPE: &str = "debug";
pub const ALIASES: &[&str] = &["debug"];

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    #[default]
    Basic,
    Normal,
    Detailed,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `basic` (default), `normal` or `detailed`.
    pub verbosity: Verbosity,
    /// Batches printed per second before sampling starts. Default 2.
    pub sampling_initial: u64,
    /// After that, print one batch in this many each second. Default 1 (print all).
    pub sampling_thereafter: u64,
    /// Collector key; accepted, printing is always to stderr here.
    pub use_internal_logger: Option<bool>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            verbosity: Verbosity::Basic,
            sampling_initial: 2,
            sampling_thereafter: 1,
            use_internal_logger: None,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        if self.sampling_thereafter == 0 {
            return vec!["sampling_thereafter must be at least 1".to_string()];
        }
        Vec::new()
    }
}

/// The old `logging` exporter's type name.
pub const LOGGING_TYPE: &str = "logging";
pub const LOGGING_ALIASES: &[&str] = &["logging"];

/// The `logging` exporter's config: its defaults (`verbosity: normal`,
/// `sampling_thereafter: 500`) differ from debug's, and its deprecated `loglevel` maps
/// onto a verbosity as the Collector mapped it (debug -> detailed, info -> normal, warn
/// and above -> basic).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// Deprecated: `debug`, `info`, `warn`, `error` (also `dpanic`, `panic`, `fatal`).
    pub loglevel: Option<String>,
    /// `basic`, `normal` (default) or `detailed`; not together with `loglevel`.
    pub verbosity: Option<Verbosity>,
    /// Default 2.
    pub sampling_initial: u64,
    /// Default 500.
    pub sampling_thereafter: u64,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            loglevel: None,
            verbosity: None,
            sampling_initial: 2,
            sampling_thereafter: 500,
        }
    }
}

impl LoggingConfig {
    fn level_verbosity(level: &str) -> Option<Verbosity> {
        match level.to_ascii_lowercase().as_str() {
            "debug" => Some(Verbosity::Detailed),
            "info" => Some(Verbosity::Normal),
            "warn" | "error" | "dpanic" | "panic" | "fatal" => Some(Verbosity::Basic),
            _ => None,
        }
    }

    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.loglevel.is_some() && self.verbosity.is_some() {
            errors.push(
                "'loglevel' and 'verbosity' are incompatible; use only 'verbosity'".to_string(),
            );
        }
        if let Some(level) = &self.loglevel
            && LoggingConfig::level_verbosity(level).is_none()
        {
            errors.push(format!("loglevel {level:?} is not supported; use debug, info, warn or error (or verbosity: basic, normal, detailed)"));
        }
        errors.extend(self.to_debug().validate());
        errors
    }

    /// The debug exporter config that behaves as this `logging` config did.
    pub fn to_debug(&self) -> Config {
        let verbosity = self
            .verbosity
            .or_else(|| {
                self.loglevel
                    .as_deref()
                    .and_then(LoggingConfig::level_verbosity)
            })
            .unwrap_or(Verbosity::Normal);
        Config {
            verbosity,
            sampling_initial: self.sampling_initial,
            sampling_thereafter: self.sampling_thereafter,
            use_internal_logger: None,
        }
    }
}

pub struct DebugExporter {
    id: String,
    config: Config,
    /// (start of the current one-second window, batches seen in it)
    window: Mutex<(Instant, u64)>,
    printed: AtomicU64,
}

impl DebugExporter {
    pub fn new(id: &str, config: &Config) -> DebugExporter {
        DebugExporter {
            id: id.to_string(),
            config: config.clone(),
            window: Mutex::new((Instant::now(), 0)),
            printed: AtomicU64::new(0),
        }
    }

    fn sampled(&self) -> bool {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if window.0.elapsed() >= Duration::from_secs(1) {
            *window = (Instant::now(), 0);
        }
        window.1 += 1;
        let seen = window.1;
        seen <= self.config.sampling_initial
            || (seen - self.config.sampling_initial) % self.config.sampling_thereafter == 0
    }
}

/// The one-line summary of a batch, in the Collector's basic-verbosity form:
/// `MetricsExporter {"resource metrics": 1, "metrics": 3, "data points": 12}`.
pub fn summary(batch: &Batch) -> String {
    let items = batch.items();
    let mut decoded = batch.clone();
    match decoded.decode().map(|_| decoded.data()) {
        Ok(Data::Metrics(v)) => {
            let metrics: usize = v
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .map(|s| s.metrics.len())
                .sum();
            format!(
                "MetricsExporter {{\"resource metrics\": {}, \"metrics\": {metrics}, \"data points\": {items}}}",
                v.len()
            )
        }
        Ok(Data::Traces(v)) => format!(
            "TracesExporter {{\"resource spans\": {}, \"spans\": {items}}}",
            v.len()
        ),
        Ok(Data::Logs(v)) => format!(
            "LogsExporter {{\"resource logs\": {}, \"log records\": {items}}}",
            v.len()
        ),
        _ => format!("{} {{\"items\": {items}}} (undecodable)", batch.signal()),
    }
}

fn normal_lines(batch: &Batch) -> Vec<String> {
    let mut decoded = batch.clone();
    if decoded.decode().is_err() {
        return vec!["(undecodable batch)".to_string()];
    }
    let mut lines = Vec::new();
    match decoded.data() {
        Data::Metrics(v) => {
            for metric in v
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
            {
                let (kind, points) = match &metric.data {
                    Some(metric::Data::Gauge(g)) => ("gauge", g.data_points.len()),
                    Some(metric::Data::Sum(s)) => ("sum", s.data_points.len()),
                    Some(metric::Data::Histogram(h)) => ("histogram", h.data_points.len()),
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        ("exponential_histogram", h.data_points.len())
                    }
                    Some(metric::Data::Summary(s)) => ("summary", s.data_points.len()),
                    None => ("empty", 0),
                };
                lines.push(format!(
                    "{} {kind} unit={:?} points={points}",
                    metric.name, metric.unit
                ));
            }
        }
        Data::Traces(v) => {
            for span in v.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
                lines.push(format!(
                    "span {:?} trace_id={} span_id={}",
                    span.name,
                    hex(&span.trace_id),
                    hex(&span.span_id)
                ));
            }
        }
        Data::Logs(v) => {
            for record in v
                .iter()
                .flat_map(|r| &r.scope_logs)
                .flat_map(|s| &s.log_records)
            {
                let body = record
                    .body
                    .as_ref()
                    .map(|b| format!("{:?}", b.value))
                    .unwrap_or_default();
                lines.push(format!("log severity={} {body}", record.severity_text));
            }
        }
        Data::Encoded(_) => {}
    }
    lines
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn detailed(batch: &Batch) -> String {
    let mut decoded = batch.clone();
    if decoded.decode().is_err() {
        return "(undecodable batch)".to_string();
    }
    let json = match decoded.data() {
        Data::Metrics(v) => serde_json::to_string_pretty(v),
        Data::Traces(v) => serde_json::to_string_pretty(v),
        Data::Logs(v) => serde_json::to_string_pretty(v),
        Data::Encoded(_) => Ok(String::new()),
    };
    json.unwrap_or_else(|e| format!("(cannot print: {e})"))
}

impl Exporter for DebugExporter {
    fn export(&self, batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>> {
        if self.sampled() {
            self.printed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(exporter = %self.id, "{}", summary(&batch));
            match self.config.verbosity {
                Verbosity::Basic => {}
                Verbosity::Normal => {
                    for line in normal_lines(&batch) {
                        tracing::info!(exporter = %self.id, "  {line}");
                    }
                }
                Verbosity::Detailed => tracing::info!(exporter = %self.id, "{}", detailed(&batch)),
            }
        }
        Box::pin(async { Ok(ExportOutcome::default()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcol_core::testdata;

    #[test]
    fn summary_counts_resources_metrics_and_points() {
        let batch = Batch::from_metrics(testdata::metrics_request(2, 3, 4).resource_metrics);
        assert_eq!(
            summary(&batch),
            r#"MetricsExporter {"resource metrics": 2, "metrics": 6, "data points": 24}"#
        );
        let spans = Batch::from_traces(testdata::trace_request(1, 5).resource_spans);
        assert_eq!(
            summary(&spans),
            r#"TracesExporter {"resource spans": 1, "spans": 5}"#
        );
        assert_eq!(normal_lines(&spans).len(), 5);
    }

    #[test]
    fn sampling_bounds_output() {
        let exporter = DebugExporter::new(
            "debug",
            &Config {
                sampling_initial: 2,
                sampling_thereafter: 10,
                ..Config::default()
            },
        );
        let printed = (0..22).filter(|_| exporter.sampled()).count();
        // 2 initial, then every 10th of the remaining 20.
        assert_eq!(printed, 4);
    }

    fn logging(yaml_like: &[(&str, serde_json::Value)]) -> LoggingConfig {
        let map: serde_json::Map<String, serde_json::Value> = yaml_like
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        serde_json::from_value(serde_json::Value::Object(map)).expect("a logging config")
    }

    #[test]
    fn logging_is_debug_with_the_old_defaults_and_loglevel_mapping() {
        let defaults = logging(&[]);
        assert!(defaults.validate().is_empty());
        assert_eq!(
            defaults.to_debug(),
            Config {
                verbosity: Verbosity::Normal,
                sampling_initial: 2,
                sampling_thereafter: 500,
                use_internal_logger: None
            }
        );
        for (level, verbosity) in [
            ("debug", Verbosity::Detailed),
            ("info", Verbosity::Normal),
            ("warn", Verbosity::Basic),
            ("error", Verbosity::Basic),
        ] {
            let config = logging(&[("loglevel", level.into())]);
            assert!(config.validate().is_empty(), "{level}");
            assert_eq!(config.to_debug().verbosity, verbosity, "{level}");
        }
        let explicit = logging(&[
            ("verbosity", "detailed".into()),
            ("sampling_initial", 5.into()),
            ("sampling_thereafter", 200.into()),
        ]);
        assert_eq!(
            explicit.to_debug(),
            Config {
                verbosity: Verbosity::Detailed,
                sampling_initial: 5,
                sampling_thereafter: 200,
                use_internal_logger: None
            }
        );
        let both = logging(&[("verbosity", "basic".into()), ("loglevel", "debug".into())]);
        assert!(both.validate()[0].contains("incompatible"));
        assert!(logging(&[("loglevel", "trace".into())]).validate()[0].contains("not supported"));
        assert!(logging(&[("sampling_thereafter", 0.into())]).validate()[0].contains("at least 1"));
    }
}
