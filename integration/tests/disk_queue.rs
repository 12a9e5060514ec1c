//! Fault tests of the disk queue (`sending_queue.storage: file_storage/NAME`) against the
//! real `oxcol` binary, the in-process load generator (with `retry`) and the in-process
//! sink, which counts items exactly:
//!
//! - `kill -9` at random moments 20 times in a row under load, restarting each time with
//!   the same directory and ports: every acknowledged point reaches the sink.
//! - The backend down for a while under load, then up: everything delivered, RSS flat.
//! - A full disk (2 MiB tmpfs): retryable refusals, no corruption, recovery.
//! - `prometheusremotewrite` with the Collector's `wal.directory`: `kill -9` 10 times
//!   under load, every acknowledged point reaches the sink's remote write endpoint.
//!
//! Each prints a `RESULT` line (sent, acknowledged, delivered, lost, duplicated) recorded
//! in docs/reliability.md. Needs `target/debug/oxcol` (`cargo build -p oxcol`).

mod common;

use common::*;
use oxcol_core::Signal;
use oxcol_integration::child::{ChildGuard, spawn_appending};
use oxcol_integration::load::{self, LoadConfig, LoadSummary, Protocol};
use oxcol_integration::sink::RunningSink;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A directory removed when dropped (unmounted first if a tmpfs was mounted on it).
struct Scratch {
    path: PathBuf,
    mounted: bool,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("oxcol-dq-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("queue")).expect("creates the scratch dir");
        Scratch {
            path,
            mounted: false,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(self.path.join("queue")).status();
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One oxcol configuration, restartable on the same ports and directory.
struct Node {
    config: PathBuf,
    log: PathBuf,
    grpc_port: u16,
    metrics_port: u16,
    child: Option<ChildGuard>,
}

impl Node {
    fn new(scratch: &Scratch, sink: &RunningSink, storage_extra: &str) -> Node {
        let (grpc_port, http_port, metrics_port) = (free_port(), free_port(), free_port());
        let yaml = format!(
            "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc_port}
      http:
        endpoint: 127.0.0.1:{http_port}
processors:
  batch:
    send_batch_size: 500
    timeout: 20ms
extensions:
  file_storage/q:
    directory: {dir}
{storage_extra}exporters:
  otlp:
    endpoint: {sink}
    tls:
      insecure: true
    sending_queue:
      storage: file_storage/q
      num_consumers: 4
    retry_on_failure:
      initial_interval: 20ms
      max_interval: 200ms
      max_elapsed_time: 0s
service:
  extensions: [file_storage/q]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics_port}
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp]
",
            dir = scratch.path.join("queue").display(),
            sink = sink.grpc_addr,
        );
        Node::with_config(scratch, &yaml, grpc_port, metrics_port)
    }

    /// `prometheusremotewrite` to the sink's remote write endpoint with the Collector's
    /// `wal.directory` (no batch processor: each queued request is sent alone, so the
    /// sink's sample count is exactly the points; `target_info` and staleness markers,
    /// which add samples, are off).
    fn remote_write(scratch: &Scratch, write_url: &str) -> Node {
        let (grpc_port, http_port, metrics_port) = (free_port(), free_port(), free_port());
        let yaml = format!(
            "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc_port}
      http:
        endpoint: 127.0.0.1:{http_port}
exporters:
  prometheusremotewrite:
    endpoint: {write_url}
    target_info:
      enabled: false
    staleness_interval: 0s
    wal:
      directory: {dir}
    retry_on_failure:
      max_elapsed_time: 0s
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics_port}
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [prometheusremotewrite]
",
            dir = scratch.path.join("queue").join("wal").display(),
        );
        Node::with_config(scratch, &yaml, grpc_port, metrics_port)
    }

    fn with_config(scratch: &Scratch, yaml: &str, grpc_port: u16, metrics_port: u16) -> Node {
        let config = scratch.path.join("config.yaml");
        std::fs::write(&config, yaml).expect("writes the config");
        Node {
            config,
            log: scratch.path.join("oxcol.log"),
            grpc_port,
            metrics_port,
            child: None,
        }
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    /// Starts oxcol (appending to the log) and waits until its gRPC port answers.
    async fn start(&mut self) {
        self.child = Some(spawn_appending(
            Command::new(oxcol_binary())
                .arg("--config")
                .arg(&self.config),
            &self.log,
        ));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.child_mut().try_wait()) {
                panic!(
                    "oxcol exited during start-up with {status}\nlog:\n{}",
                    self.log()
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.grpc_port))
                .await
                .is_ok()
                && tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port))
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "oxcol was not ready\nlog:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL (ChildGuard's kill), and reap.
    fn kill9(&mut self) {
        self.child.take();
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(ChildGuard::id).unwrap_or(0)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn metric(&self, name: &str) -> f64 {
        let mut stream =
            match tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).await {
                Ok(s) => s,
                Err(_) => return f64::NAN,
            };
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .await;
        let mut body = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut body)).await;
        metric_sum(&String::from_utf8_lossy(&body), name, &[]).unwrap_or(0.0)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.child.take();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "---- oxcol log (last lines) ----\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

fn load_config(endpoint: String, duration: Duration, rate: f64, retry: bool) -> LoadConfig {
    LoadConfig {
        protocol: Protocol::Grpc,
        endpoint,
        signal: Signal::Metrics,
        shape: SMALL,
        pool: 8,
        concurrency: 8,
        rate,
        duration: Some(duration),
        total_points: None,
        retry,
        request_timeout: Duration::from_secs(2),
        ..LoadConfig::default()
    }
}

fn delivered(sink: &RunningSink) -> u64 {
    sink.state.stats().metrics.items
}

/// Waits until the sink holds at least `at_least` points and stops growing.
async fn wait_delivered(sink: &RunningSink, at_least: u64, timeout: Duration) -> u64 {
    let stats = wait_sink(sink, timeout, |s| s.metrics.items >= at_least).await;
    // Let duplicates in flight land too, so the count is final.
    let mut last = stats.metrics.items;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = delivered(sink);
        if now == last {
            return now;
        }
        last = now;
    }
}

fn result_line(test: &str, summary: &LoadSummary, delivered: u64) {
    let lost = summary.accepted_points.saturating_sub(delivered);
    let duplicated = delivered.saturating_sub(summary.accepted_points);
    println!(
        "RESULT {test}: sent={} acknowledged={} refused={} failed={} delivered={delivered} lost={lost} duplicated={duplicated}",
        summary.sent_points, summary.accepted_points, summary.refused_points, summary.failed_points
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_twenty_times_under_load_loses_nothing_acknowledged() {
    bounded(Duration::from_secs(90), async {
        let sink = start_sink().await;
        let scratch = Scratch::new("kill9");
        let mut node = Node::new(&scratch, &sink, "");
        node.start().await;
        // One load run across every kill: with `retry`, requests that meet a dead oxcol
        // are retried until it is back; `accepted_points` counts what oxcol acknowledged.
        let load = tokio::spawn(load::run(load_config(
            node.endpoint(),
            Duration::from_secs(25),
            20_000.0,
            true,
        )));
        // Random moments (xorshift seeded from the clock; the seed is printed).
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        println!("kill schedule seed {seed}");
        let mut rng = oxcol_core::testdata::XorShift64(seed);
        let mut random =
            move |range: std::ops::Range<u64>| range.start + rng.below(range.end - range.start);
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(random(150..900))).await;
            node.kill9();
            tokio::time::sleep(Duration::from_millis(random(0..100))).await;
            node.start().await;
        }
        let summary = load.await.expect("load task").expect("load runs");
        assert!(
            summary.accepted_points > 50_000,
            "too little load to mean anything: {summary:?}"
        );
        let got = wait_delivered(&sink, summary.accepted_points, Duration::from_secs(20)).await;
        result_line("kill9x20", &summary, got);
        assert!(
            got >= summary.accepted_points,
            "LOST {} acknowledged points: acknowledged {}, delivered {got}",
            summary.accepted_points - got,
            summary.accepted_points
        );
        let corrupt = node
            .metric("oxcol_exporter_disk_queue_corrupt_records")
            .await;
        println!("corrupt records counted at the last start: {corrupt}");
        node.kill9();
    })
    .await;
}

/// Remote write with the Collector's `wal.directory`: the queue carries OTLP batches and
/// translation happens at send time, so the same disk queue applies. `kill -9` 10 times
/// under load; the sink counts remote write samples (one per point here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_wal_kill_9_ten_times_under_load_loses_nothing_acknowledged() {
    bounded(Duration::from_secs(90), async {
        let sink = start_sink().await;
        let scratch = Scratch::new("prw-kill9");
        let mut node =
            Node::remote_write(&scratch, &format!("http://{}/api/v1/write", sink.http_addr));
        node.start().await;
        let load = tokio::spawn(load::run(load_config(
            node.endpoint(),
            Duration::from_secs(15),
            5_000.0,
            true,
        )));
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        println!("kill schedule seed {seed}");
        let mut rng = oxcol_core::testdata::XorShift64(seed);
        let mut random =
            move |range: std::ops::Range<u64>| range.start + rng.below(range.end - range.start);
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(random(300..1200))).await;
            node.kill9();
            tokio::time::sleep(Duration::from_millis(random(0..100))).await;
            node.start().await;
        }
        let summary = load.await.expect("load task").expect("load runs");
        assert!(
            summary.accepted_points > 20_000,
            "too little load to mean anything: {summary:?}"
        );
        let got = wait_delivered(&sink, summary.accepted_points, Duration::from_secs(30)).await;
        result_line("remote_write_wal_kill9x10", &summary, got);
        assert!(
            got >= summary.accepted_points,
            "LOST {} acknowledged points: acknowledged {}, delivered {got}",
            summary.accepted_points - got,
            summary.accepted_points
        );
        assert!(
            std::fs::read_dir(scratch.path.join("queue").join("wal"))
                .map(|d| d
                    .flatten()
                    .any(|e| e.file_name() == "exporter_prometheusremotewrite_metrics"))
                .unwrap_or(false),
            "the queue lives in wal.directory"
        );
        let failed = node
            .metric("otelcol_exporter_send_failed_metric_points")
            .await;
        assert_eq!(
            failed, 0.0,
            "nothing refused by the sink after the last start"
        );
        node.kill9();
    })
    .await;
}

/// Remote write with `wal.directory` against a real Prometheus (Debian package): one
/// counter sample per request, acknowledged by oxcol before it is sent. Prometheus is
/// killed (SIGKILL) at request 15, oxcol is `kill -9`ed at 25 and restarted while
/// Prometheus is still down, Prometheus comes back at 40: every acknowledged sample is in
/// Prometheus once, in order (Prometheus refuses out-of-order samples, so a queue that
/// resent out of order would lose them), and none was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_wal_delivers_to_a_real_prometheus_across_its_outage_and_kill_9() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        metric, number_data_point,
    };
    use oxcol_integration::prometheus::Prometheus;
    bounded(Duration::from_secs(120), async {
        let mut prometheus = Prometheus::start_async("global:\n  scrape_interval: 1m\n", &[]).await;
        let scratch = Scratch::new("prw-prometheus");
        let mut node = Node::remote_write(&scratch, &prometheus.write_url());
        node.start().await;
        let base_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as u64
            - 120_000;
        const TOTAL: u64 = 60;
        for i in 0..TOTAL {
            match i {
                15 => prometheus.kill(),
                25 => {
                    node.kill9();
                    node.start().await;
                }
                40 => prometheus.launch_async().await,
                _ => {}
            }
            let point = NumberDataPoint {
                time_unix_nano: (base_ms + i * 1000) * 1_000_000,
                value: Some(number_data_point::Value::AsDouble(i as f64)),
                ..Default::default()
            };
            let request = ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    scope_metrics: vec![ScopeMetrics {
                        metrics: vec![Metric {
                            name: "wal_seq".into(),
                            data: Some(metric::Data::Sum(Sum {
                                data_points: vec![point],
                                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                                is_monotonic: true,
                            })),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            let mut client = MetricsServiceClient::connect(format!("http://{}", node.endpoint()))
                .await
                .expect("connects to oxcol");
            client
                .export(request)
                .await
                .expect("oxcol acknowledges every request (queued on disk)");
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(40);
        let values: Vec<f64> = loop {
            let result = prometheus.query_async("wal_seq_total[10m]").await;
            let values: Vec<f64> = result
                .first()
                .and_then(|s| s["values"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .map(|v| {
                    v[1].as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(f64::NAN)
                })
                .collect();
            if values.len() as u64 >= TOTAL || Instant::now() >= deadline {
                break values;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!(
            values,
            (0..TOTAL).map(|i| i as f64).collect::<Vec<_>>(),
            "every acknowledged sample in Prometheus, in order, once\noxcol log:\n{}",
            node.log()
        );
        let failed = node
            .metric("otelcol_exporter_send_failed_metric_points")
            .await;
        assert_eq!(
            failed, 0.0,
            "nothing refused by Prometheus after the restart"
        );
        node.kill9();
    })
    .await;
}

/// The outage of `backend_down_under_load_then_up_delivers_everything_with_flat_memory`:
/// 8 s at 30,000 points/s in CI; `OXCOL_OUTAGE_SECS` and `OXCOL_OUTAGE_RATE` make it the
/// issue's 10 minutes (`OXCOL_OUTAGE_SECS=600 OXCOL_OUTAGE_RATE=3000 cargo test -p
/// oxcol-integration --test disk_queue backend_down -- --nocapture`; docs/reliability.md).
fn outage() -> (Duration, f64) {
    let secs = std::env::var("OXCOL_OUTAGE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let rate = std::env::var("OXCOL_OUTAGE_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000.0);
    (Duration::from_secs(secs), rate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_under_load_then_up_delivers_everything_with_flat_memory() {
    let (down_for, rate) = outage();
    bounded(down_for * 3 + Duration::from_secs(60), async {
        let sink = start_sink().await;
        let scratch = Scratch::new("down");
        let mut node = Node::new(&scratch, &sink, "");
        node.start().await;
        set_mode(&sink, json!({"down": true}));
        let load = tokio::spawn(load::run(load_config(
            node.endpoint(),
            down_for,
            rate,
            true,
        )));
        let mut rss = Vec::new();
        let started = Instant::now();
        while !load.is_finished() {
            if let Some(bytes) = rss_bytes(node.pid()) {
                rss.push((started.elapsed().as_secs_f64(), bytes));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let summary = load.await.expect("load task").expect("load runs");
        let queued_bytes = node.metric("oxcol_exporter_disk_queue_bytes").await;
        assert!(
            queued_bytes > 1_000_000.0,
            "the backlog should be on disk: {queued_bytes} bytes"
        );
        set_mode(&sink, json!({"down": false}));
        let got = wait_delivered(
            &sink,
            summary.accepted_points,
            Duration::from_secs(30) + down_for,
        )
        .await;
        result_line(
            &format!("backend_down_{}s", down_for.as_secs()),
            &summary,
            got,
        );
        assert_eq!(
            summary.refused_points + summary.failed_points,
            0,
            "{summary:?}"
        );
        assert!(
            got >= summary.accepted_points,
            "lost {}",
            summary.accepted_points - got
        );
        // Memory flat: after the first second, RSS grows by less than 16 MiB while the
        // backlog on disk grows without bound (within max_size_mib).
        let settled: Vec<u64> = rss
            .iter()
            .filter(|(t, _)| *t >= 1.0)
            .map(|(_, b)| *b)
            .collect();
        let (low, high) = (
            settled.iter().min().copied().unwrap_or(0),
            settled.iter().max().copied().unwrap_or(0),
        );
        println!(
            "RSS samples (s, MiB): {}",
            rss.iter()
                .step_by((rss.len() / 60).max(1))
                .map(|(t, b)| format!("{t:.1}:{:.1}", *b as f64 / 1048576.0))
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!(
            "backlog on disk before recovery: {:.1} MiB",
            queued_bytes / 1048576.0
        );
        assert!(
            high - low < 16 << 20,
            "RSS grew from {low} to {high} bytes with the backend down"
        );
    })
    .await;
}

fn mount_tmpfs(dir: &Path, size: &str) -> Result<(), String> {
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .stderr(Stdio::piped())
        .output();
    match status {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        Err(error) => Err(error.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_retryably_without_corruption_and_recovers() {
    bounded(Duration::from_secs(60), async {
        let mut scratch = Scratch::new("diskfull");
        if let Err(error) = mount_tmpfs(&scratch.path.join("queue"), "2m") {
            eprintln!("SKIPPED a_full_disk_refuses_retryably_without_corruption_and_recovers: cannot mount a 2 MiB tmpfs ({error}); run as root (CI does)");
            return;
        }
        scratch.mounted = true;
        let sink = start_sink().await;
        // The bound (64 MiB) is above the disk's size: the disk fills first.
        let mut node = Node::new(&scratch, &sink, "    max_size_mib: 64\n    segment_size_mib: 1\n");
        node.start().await;
        set_mode(&sink, json!({"down": true}));
        let full = load::run(load_config(node.endpoint(), Duration::from_secs(3), 0.0, false)).await.expect("load runs");
        assert!(full.refused_points > 0, "a full disk must refuse: {full:?}");
        assert_eq!(full.failed_points, 0, "refusals must be retryable: {full:?}");
        assert!(node.log().contains("append failed"), "the failed writes are logged");
        // A crash while full, then the backend comes back: no corruption, all delivered.
        node.kill9();
        node.start().await;
        assert_eq!(node.metric("oxcol_exporter_disk_queue_corrupt_records").await, 0.0, "no corruption on a full disk");
        set_mode(&sink, json!({"down": false}));
        let got = wait_delivered(&sink, full.accepted_points, Duration::from_secs(20)).await;
        assert!(got >= full.accepted_points, "lost {}", full.accepted_points - got);
        // Space was freed: new data is accepted again.
        let after = load::run(load_config(node.endpoint(), Duration::from_secs(1), 20_000.0, false)).await.expect("load runs");
        assert_eq!(after.refused_points + after.failed_points, 0, "no recovery after space freed: {after:?}");
        let total = wait_delivered(&sink, got + after.accepted_points, Duration::from_secs(20)).await;
        let summary = LoadSummary {
            sent_points: full.sent_points + after.sent_points,
            accepted_points: full.accepted_points + after.accepted_points,
            refused_points: full.refused_points + after.refused_points,
            failed_points: full.failed_points + after.failed_points,
            ..LoadSummary::default()
        };
        result_line("disk_full_2MiB_tmpfs", &summary, total);
        assert!(total >= summary.accepted_points);
        node.kill9();
    })
    .await;
}
