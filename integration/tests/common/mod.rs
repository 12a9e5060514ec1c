//! Harness for black-box tests of the `oxcol` binary: start it as a child with a YAML config
//! in a temp dir on free loopback ports, wait until it is ready, read its self-metrics, and
//! always kill it when the test ends (even on panic). Every wait here is bounded.

#![allow(dead_code)]

use oxcol_core::Signal;
use oxcol_integration::child::{ChildGuard, spawn_logged};
use oxcol_integration::load::{self, LoadConfig, LoadSummary, Protocol};
pub use oxcol_integration::net::free_port;
use oxcol_integration::otlp::RequestShape;
use oxcol_integration::sink::{self, RunningSink, SinkConfig, SinkStats};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest wait for oxcol to start answering.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Small requests: 1 resource x 2 metrics x 5 points = 10 points each.
pub const SMALL: RequestShape = RequestShape {
    resources: 1,
    metrics: 2,
    points: 5,
    attributes: 2,
};

/// The `oxcol` binary built by `cargo build -p oxcol`.
pub fn oxcol_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/oxcol");
    assert!(
        path.is_file(),
        "oxcol binary not found at {}: build it first with `cargo build -p oxcol` \
         (./scripts/test builds every binary before `cargo test`)",
        path.display()
    );
    path
}

/// Runs a test body under an overall time limit, so no test can hang.
pub async fn bounded<F: Future>(limit: Duration, body: F) -> F::Output {
    tokio::time::timeout(limit, body)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {limit:?}"))
}

/// The receiver block every config starts with. `@GRPC_EXTRA@` is replaced by extra keys
/// for the gRPC protocol (indented 8 spaces), or by nothing.
const RECEIVERS: &str = "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC_PORT@
@GRPC_EXTRA@      http:
        endpoint: 127.0.0.1:@HTTP_PORT@
";

/// A running oxcol child process.
pub struct Oxcol {
    guard: Option<ChildGuard>,
    dir: PathBuf,
    pub grpc_port: u16,
    pub http_port: u16,
    pub metrics_port: u16,
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

impl Oxcol {
    /// Starts oxcol with the otlp receiver on free ports, self-metrics on a free port, and
    /// `components` (processors, exporters) plus `pipelines` (the body of
    /// `service.pipelines`, indented 4 spaces). `grpc_extra`: extra gRPC receiver keys.
    pub async fn start(grpc_extra: &str, components: &str, pipelines: &str) -> Oxcol {
        let (grpc_port, http_port, metrics_port) = (free_port(), free_port(), free_port());
        let yaml = format!(
            "{receivers}{components}\nservice:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{metrics_port}\n  pipelines:\n{pipelines}",
            receivers = RECEIVERS
                .replace("@GRPC_PORT@", &grpc_port.to_string())
                .replace("@HTTP_PORT@", &http_port.to_string())
                .replace("@GRPC_EXTRA@", grpc_extra),
        );
        let dir = std::env::temp_dir().join(format!(
            "oxcol-spine-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("creates the temp dir");
        let config = dir.join("config.yaml");
        std::fs::write(&config, &yaml).expect("writes the config");
        let child = spawn_logged(
            Command::new(oxcol_binary()).arg("--config").arg(&config),
            &dir.join("oxcol.log"),
        );
        let mut oxcol = Oxcol {
            guard: Some(child),
            dir,
            grpc_port,
            http_port,
            metrics_port,
        };
        oxcol.wait_ready(&yaml).await;
        oxcol
    }

    async fn wait_ready(&mut self, yaml: &str) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.guard.as_mut().unwrap().child_mut().try_wait() {
                panic!(
                    "oxcol exited during start-up with {status}\nconfig:\n{yaml}\nlog:\n{}",
                    self.log()
                );
            }
            let ports_open = tokio::net::TcpStream::connect(("127.0.0.1", self.grpc_port))
                .await
                .is_ok()
                && tokio::net::TcpStream::connect(("127.0.0.1", self.http_port))
                    .await
                    .is_ok();
            if ports_open && self.try_metrics_text().await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "oxcol was not ready within {READY_TIMEOUT:?}\nconfig:\n{yaml}\nlog:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.guard.as_ref().map(ChildGuard::id).unwrap_or(0)
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// oxcol's stderr and stdout so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("oxcol.log")).unwrap_or_default()
    }

    async fn try_metrics_text(&self) -> Result<String, String> {
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port))
                .await
                .map_err(|error| error.to_string())?;
            stream
                .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .await
                .map_err(|error| error.to_string())?;
            let mut response = Vec::new();
            stream
                .read_to_end(&mut response)
                .await
                .map_err(|error| error.to_string())?;
            let text = String::from_utf8_lossy(&response).into_owned();
            let (head, body) = text
                .split_once("\r\n\r\n")
                .ok_or_else(|| "no HTTP header end".to_string())?;
            if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
                return Err(format!("/metrics answered {head}"));
            }
            Ok(body.to_string())
        };
        tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .map_err(|_| "/metrics did not answer within 5 s".to_string())?
    }

    /// The `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        self.try_metrics_text().await.unwrap_or_else(|error| {
            panic!("cannot read oxcol /metrics: {error}\nlog:\n{}", self.log())
        })
    }

    /// Sum of the samples of `name` whose labels include `labels`; 0 when there is none.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics_text().await, name, labels).unwrap_or(0.0)
    }

    /// Polls `metric` until `done(value)` holds, up to `timeout`; returns the last value.
    pub async fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        timeout: Duration,
        done: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.metric(name, labels).await;
            if done(value) || Instant::now() >= deadline {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Resident set size of the process in bytes (`VmRSS` in /proc/PID/status).
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_bytes(self.pid())
    }
}

impl Drop for Oxcol {
    fn drop(&mut self) {
        // Kill and reap first (ChildGuard), then show the log if the test failed.
        self.guard.take();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "---- oxcol log (last {} lines) ----\n{}",
                tail.len(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Sum of the Prometheus text samples named `name` whose labels include every `labels` pair;
/// `None` when no sample matches.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(parts) => parts,
            None => continue,
        };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((series_name, rest)) => (series_name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let matches = labels.iter().all(|(key, wanted)| {
            series_labels.split(',').any(|pair| {
                pair.split_once('=')
                    .is_some_and(|(k, v)| k.trim() == *key && v.trim().trim_matches('"') == *wanted)
            })
        });
        if let (true, Ok(value)) = (matches, value.trim().parse::<f64>()) {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// An in-process sink on free loopback ports.
pub async fn start_sink() -> RunningSink {
    sink::start(SinkConfig::default())
        .await
        .expect("starts the in-process sink")
}

/// Sets the sink's fault mode from JSON, as `POST /mode` would.
pub fn set_mode(sink: &RunningSink, mode: serde_json::Value) {
    let update = serde_json::from_value(mode).expect("a valid mode update");
    sink.state
        .update_mode(update)
        .expect("the sink accepts the mode");
}

/// Polls the sink's stats until `done` holds, up to `timeout`; returns the last stats.
pub async fn wait_sink(
    sink: &RunningSink,
    timeout: Duration,
    done: impl Fn(&SinkStats) -> bool,
) -> SinkStats {
    let deadline = Instant::now() + timeout;
    loop {
        let stats = sink.state.stats();
        if done(&stats) || Instant::now() >= deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `otlp` exporter YAML (indented for `exporters:`) to `sink`'s gRPC address.
pub fn otlp_exporter(name: &str, sink: &RunningSink, extra: &str) -> String {
    format!(
        "  {name}:\n    endpoint: {}\n    tls:\n      insecure: true\n{extra}",
        sink.grpc_addr
    )
}

/// `otlphttp` exporter YAML (indented for `exporters:`) to `sink`'s HTTP address.
pub fn otlphttp_exporter(name: &str, sink: &RunningSink, extra: &str) -> String {
    format!(
        "  {name}:\n    endpoint: http://{}\n{extra}",
        sink.http_addr
    )
}

/// Fast retries, for tests.
pub const FAST_RETRY: &str =
    "    retry_on_failure:\n      initial_interval: 50ms\n      max_interval: 200ms\n";

/// Sends `total_points` metric points (whole `SMALL` requests) to oxcol, no retries.
pub async fn send_points(oxcol: &Oxcol, protocol: Protocol, total_points: u64) -> LoadSummary {
    let config = LoadConfig {
        protocol,
        endpoint: match protocol {
            Protocol::Grpc => oxcol.grpc_endpoint(),
            Protocol::Http => oxcol.http_endpoint(),
        },
        signal: Signal::Metrics,
        shape: SMALL,
        pool: 8,
        concurrency: 2,
        duration: None,
        total_points: Some(total_points),
        request_timeout: Duration::from_secs(5),
        ..LoadConfig::default()
    };
    load::run(config).await.expect("the load generator runs")
}
