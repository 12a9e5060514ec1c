//! The three OTLP signals a pipeline can carry, and the names the Collector uses for
//! their items in self-telemetry (`metric_points`, `spans`, `log_records`).

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    Metrics,
    Traces,
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Metrics, Signal::Traces, Signal::Logs];

    /// The pipeline type as written in `service.pipelines` (`metrics`, `traces`, `logs`).
    pub fn name(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Traces => "traces",
            Signal::Logs => "logs",
        }
    }

    /// Parses a pipeline id's type part: `metrics/sidecar` -> Metrics.
    pub fn from_pipeline_type(text: &str) -> Option<Signal> {
        match text {
            "metrics" => Some(Signal::Metrics),
            "traces" => Some(Signal::Traces),
            "logs" => Some(Signal::Logs),
            _ => None,
        }
    }

    /// The item suffix in the Collector's metric names:
    /// `otelcol_receiver_accepted_metric_points`, `..._spans`, `..._log_records`.
    pub fn item_name(self) -> &'static str {
        match self {
            Signal::Metrics => "metric_points",
            Signal::Traces => "spans",
            Signal::Logs => "log_records",
        }
    }

    /// OTLP/HTTP default path for this signal.
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Metrics => "/v1/metrics",
            Signal::Traces => "/v1/traces",
            Signal::Logs => "/v1/logs",
        }
    }

    /// gRPC method path of the OTLP export service for this signal.
    pub fn grpc_path(self) -> &'static str {
        match self {
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
