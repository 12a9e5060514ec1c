//! Reload without a restart, with the real binary: SIGHUP (and `--watch-config`) under a
//! steady OTLP load. Every point the receiver acknowledged must arrive at a sink, whatever
//! the reload changed; an invalid config is refused with file:line:column and the old one
//! keeps delivering. Every wait is bounded; oxcol is killed when a test ends.

mod common;

use common::{
    FAST_RETRY, SMALL, bounded, free_port, metric_sum, oxcol_binary, set_mode, start_sink,
    wait_sink,
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use oxcol_core::Signal;
use oxcol_integration::child::{ChildGuard, spawn_logged};
use oxcol_integration::load::{self, LoadConfig, LoadSummary, Protocol};
use oxcol_integration::sink::{self, RunningSink, SinkConfig};
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// One oxcol child whose config file the test rewrites.
struct Reloadable {
    guard: Option<ChildGuard>,
    dir: PathBuf,
    metrics_port: u16,
}

impl Reloadable {
    fn new_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "oxcol-reload-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creates the temp dir");
        dir
    }

    /// Starts oxcol on `config` (a path in `dir`) with `extra` arguments.
    async fn start(
        dir: PathBuf,
        config: &Path,
        grpc_port: u16,
        metrics_port: u16,
        extra: &[&str],
    ) -> Reloadable {
        let child = spawn_logged(
            Command::new(oxcol_binary())
                .arg("--config")
                .arg(config)
                .args(extra),
            &dir.join("oxcol.log"),
        );
        let mut oxcol = Reloadable {
            guard: Some(child),
            dir,
            metrics_port,
        };
        let deadline = Instant::now() + common::READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = oxcol
                .guard
                .as_mut()
                .expect("running")
                .child_mut()
                .try_wait()
            {
                panic!(
                    "oxcol exited during start-up with {status}\nlog:\n{}",
                    oxcol.log()
                );
            }
            let grpc = tokio::net::TcpStream::connect(("127.0.0.1", grpc_port))
                .await
                .is_ok();
            if grpc && oxcol.metrics().await.is_some() {
                return oxcol;
            }
            assert!(
                Instant::now() < deadline,
                "oxcol was not ready\nlog:\n{}",
                oxcol.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("oxcol.log")).unwrap_or_default()
    }

    fn sighup(&self) {
        let pid = self.guard.as_ref().map(ChildGuard::id).expect("running");
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("runs kill");
        assert!(status.success(), "kill -HUP {pid} failed");
    }

    /// The /metrics text, or None while the server is (re)starting.
    async fn metrics(&self) -> Option<String> {
        let address = format!("127.0.0.1:{}", self.metrics_port);
        let got = tokio::task::spawn_blocking(move || {
            oxcol_integration::net::http_get(&address, "/metrics")
        })
        .await
        .ok()?;
        match got {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    }

    /// Polls `name{labels}` until it reaches `at_least` (bounded); returns the last value.
    async fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        at_least: f64,
        timeout: Duration,
    ) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self
                .metrics()
                .await
                .and_then(|text| metric_sum(&text, name, labels))
                .unwrap_or(0.0);
            if value >= at_least || Instant::now() >= deadline {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn alive(&mut self) -> bool {
        matches!(
            self.guard.as_mut().expect("running").child_mut().try_wait(),
            Ok(None)
        )
    }
}

impl Drop for Reloadable {
    fn drop(&mut self) {
        self.guard.take();
        if std::thread::panicking() {
            eprintln!("---- oxcol log ----\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A config with the otlp gRPC receiver, `exporters` (indented 2) and `pipelines` (indented 4).
fn config(grpc_port: u16, metrics_port: u16, exporters: &str, pipelines: &str) -> String {
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc_port}\nexporters:\n{exporters}service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{metrics_port}\n  pipelines:\n{pipelines}"
    )
}

fn exporter(name: &str, sink: &RunningSink) -> String {
    format!(
        "  {name}:\n    endpoint: {}\n    tls:\n      insecure: true\n{FAST_RETRY}",
        sink.grpc_addr
    )
}

/// A steady load (no client retries) for `duration`.
fn steady_load(grpc_port: u16, duration: Duration) -> tokio::task::JoinHandle<LoadSummary> {
    let config = LoadConfig {
        protocol: Protocol::Grpc,
        endpoint: format!("127.0.0.1:{grpc_port}"),
        signal: Signal::Metrics,
        shape: SMALL,
        pool: 8,
        concurrency: 2,
        rate: 4000.0,
        duration: Some(duration),
        total_points: None,
        request_timeout: Duration::from_secs(5),
        ..LoadConfig::default()
    };
    tokio::spawn(async move { load::run(config).await.expect("the load generator runs") })
}

fn items(sink: &RunningSink) -> u64 {
    sink.state.stats().metrics.items
}

/// Waits until the sinks together hold at least `accepted` points; returns their counts.
async fn delivered(sinks: &[&RunningSink], accepted: u64) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let counts: Vec<u64> = sinks.iter().map(|s| items(s)).collect();
        if counts.iter().sum::<u64>() >= accepted || Instant::now() >= deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changed_exporter_endpoint_loses_no_acknowledged_point() {
    bounded(Duration::from_secs(90), async {
        let (first, second) = (start_sink().await, start_sink().await);
        let (grpc_port, metrics_port) = (free_port(), free_port());
        let dir = Reloadable::new_dir();
        let path = dir.join("config.yaml");
        let pipeline = "    metrics:\n      receivers: [otlp]\n      exporters: [otlp]\n";
        std::fs::write(
            &path,
            config(grpc_port, metrics_port, &exporter("otlp", &first), pipeline),
        )
        .expect("writes");
        let mut oxcol = Reloadable::start(dir, &path, grpc_port, metrics_port, &[]).await;
        let load = steady_load(grpc_port, Duration::from_secs(4));
        wait_sink(&first, Duration::from_secs(10), |s| s.metrics.items > 0).await;
        std::fs::write(
            &path,
            config(
                grpc_port,
                metrics_port,
                &exporter("otlp", &second),
                pipeline,
            ),
        )
        .expect("writes");
        oxcol.sighup();
        let done = oxcol
            .wait_metric(
                "oxcol_config_reloads",
                &[("outcome", "done")],
                1.0,
                Duration::from_secs(20),
            )
            .await;
        assert_eq!(
            done,
            1.0,
            "the reload was not applied\nlog:\n{}",
            oxcol.log()
        );
        let summary = load.await.expect("load task");
        let counts = delivered(&[&first, &second], summary.accepted_points).await;
        assert!(oxcol.alive(), "oxcol died");
        assert!(summary.accepted_points > 0, "{summary:?}");
        // The unchanged receiver kept running: requests during the reload waited for the
        // new pipelines instead of failing.
        assert_eq!(summary.accepted_points, summary.sent_points, "{summary:?}");
        assert!(
            counts[0] > 0 && counts[1] > 0,
            "both sinks should have data: {counts:?}"
        );
        assert!(
            counts[0] + counts[1] >= summary.accepted_points,
            "acknowledged {} but the sinks received {counts:?}\nlog:\n{}",
            summary.accepted_points,
            oxcol.log()
        );
        assert!(
            counts[0] + counts[1] <= summary.sent_points,
            "more received than sent: {counts:?} {summary:?}"
        );
        let log = oxcol.log();
        assert!(
            log.contains("config reloaded")
                && log.contains("stopped_exporters=1")
                && log.contains("kept_receivers=1"),
            "{log}"
        );
        let text = oxcol.metrics().await.expect("metrics");
        let running: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("oxcol_config_info{") && l.ends_with(" 1"))
            .collect();
        assert_eq!(running.len(), 1, "one running config hash: {text}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removed_pipeline_stops_and_the_kept_exporter_loses_nothing() {
    bounded(Duration::from_secs(90), async {
        let (kept, removed) = (start_sink().await, start_sink().await);
        let (grpc_port, metrics_port) = (free_port(), free_port());
        let dir = Reloadable::new_dir();
        let path = dir.join("config.yaml");
        let exporters = format!("{}{}", exporter("otlp/kept", &kept), exporter("otlp/removed", &removed));
        let both = "    metrics:\n      receivers: [otlp]\n      exporters: [otlp/kept]\n    metrics/extra:\n      receivers: [otlp]\n      exporters: [otlp/removed]\n";
        let one = "    metrics:\n      receivers: [otlp]\n      exporters: [otlp/kept]\n";
        std::fs::write(&path, config(grpc_port, metrics_port, &exporters, both)).expect("writes");
        let mut oxcol = Reloadable::start(dir, &path, grpc_port, metrics_port, &[]).await;
        let load = steady_load(grpc_port, Duration::from_secs(4));
        wait_sink(&removed, Duration::from_secs(10), |s| s.metrics.items > 0).await;
        std::fs::write(&path, config(grpc_port, metrics_port, &exporters, one)).expect("writes");
        oxcol.sighup();
        let done = oxcol.wait_metric("oxcol_config_reloads", &[("outcome", "done")], 1.0, Duration::from_secs(20)).await;
        assert_eq!(done, 1.0, "the reload was not applied\nlog:\n{}", oxcol.log());
        let removed_after_reload = items(&removed);
        let summary = load.await.expect("load task");
        let counts = delivered(&[&kept], summary.accepted_points).await;
        assert!(oxcol.alive(), "oxcol died");
        assert_eq!(summary.accepted_points, summary.sent_points, "the kept receiver failed requests: {summary:?}");
        // Every acknowledged point went through the kept pipeline.
        assert!(counts[0] >= summary.accepted_points, "acknowledged {} but the kept sink received {}", summary.accepted_points, counts[0]);
        assert!(counts[0] <= summary.sent_points);
        // The removed pipeline got nothing after the reload.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(items(&removed), removed_after_reload, "the removed pipeline still delivers");
        assert!(removed_after_reload < counts[0], "removed {removed_after_reload} vs kept {}", counts[0]);
        let log = oxcol.log();
        assert!(log.contains("kept_exporters=1") && log.contains("stopped_exporters=1"), "{log}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_config_is_refused_with_its_position_and_the_old_one_keeps_delivering() {
    bounded(Duration::from_secs(90), async {
        let sink = start_sink().await;
        let (grpc_port, metrics_port) = (free_port(), free_port());
        let dir = Reloadable::new_dir();
        let path = dir.join("config.yaml");
        let pipeline = "    metrics:\n      receivers: [otlp]\n      exporters: [otlp]\n";
        let good = config(grpc_port, metrics_port, &exporter("otlp", &sink), pipeline);
        std::fs::write(&path, &good).expect("writes");
        let mut oxcol = Reloadable::start(dir, &path, grpc_port, metrics_port, &[]).await;
        let load = steady_load(grpc_port, Duration::from_secs(3));
        wait_sink(&sink, Duration::from_secs(10), |s| s.metrics.items > 0).await;
        // An unknown key on the exporter: line 8 ("exporters:" is line 6), column 5.
        let bad = good.replace(
            "exporters:\n  otlp:\n",
            "exporters:\n  otlp:\n    no_such_key: 1\n",
        );
        std::fs::write(&path, &bad).expect("writes");
        oxcol.sighup();
        let refused = oxcol
            .wait_metric(
                "oxcol_config_reloads",
                &[("outcome", "refused")],
                1.0,
                Duration::from_secs(20),
            )
            .await;
        assert_eq!(
            refused,
            1.0,
            "the reload was not refused\nlog:\n{}",
            oxcol.log()
        );
        let summary = load.await.expect("load task");
        let counts = delivered(&[&sink], summary.accepted_points).await;
        assert!(oxcol.alive(), "oxcol died");
        assert!(
            counts[0] >= summary.accepted_points,
            "acknowledged {} but received {}",
            summary.accepted_points,
            counts[0]
        );
        let log = oxcol.log();
        let position = format!("{}:8:5", path.display());
        assert!(
            log.contains(&position) && log.contains("no_such_key"),
            "no {position} in the log:\n{log}"
        );
        assert!(log.contains("config reload refused"), "{log}");
        // The old config still runs: a new send arrives.
        let before = items(&sink);
        let again = steady_load(grpc_port, Duration::from_millis(500))
            .await
            .expect("load task");
        assert!(again.accepted_points > 0, "{again:?}");
        let after = wait_sink(&sink, Duration::from_secs(10), |s| {
            s.metrics.items >= before + again.accepted_points
        })
        .await;
        assert!(after.metrics.items >= before + again.accepted_points);
        assert_eq!(
            oxcol
                .wait_metric(
                    "oxcol_config_reloads",
                    &[("outcome", "done")],
                    0.0,
                    Duration::ZERO
                )
                .await,
            0.0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_config_follows_a_configmap_symlink_swap() {
    bounded(Duration::from_secs(90), async {
        let (first, second) = (start_sink().await, start_sink().await);
        let (grpc_port, metrics_port) = (free_port(), free_port());
        let dir = Reloadable::new_dir();
        let pipeline = "    metrics:\n      receivers: [otlp]\n      exporters: [otlp]\n";
        // The kubelet's ConfigMap layout: config.yaml -> ..data/config.yaml, ..data -> v1.
        for (version, sink) in [("v1", &first), ("v2", &second)] {
            std::fs::create_dir_all(dir.join(version)).expect("mkdir");
            std::fs::write(
                dir.join(version).join("config.yaml"),
                config(grpc_port, metrics_port, &exporter("otlp", sink), pipeline),
            )
            .expect("writes");
        }
        std::os::unix::fs::symlink("v1", dir.join("..data")).expect("symlink");
        std::os::unix::fs::symlink("..data/config.yaml", dir.join("config.yaml")).expect("symlink");
        let path = dir.join("config.yaml");
        let mut oxcol = Reloadable::start(
            dir.clone(),
            &path,
            grpc_port,
            metrics_port,
            &["--watch-config"],
        )
        .await;
        let load = steady_load(grpc_port, Duration::from_secs(4));
        wait_sink(&first, Duration::from_secs(10), |s| s.metrics.items > 0).await;
        std::os::unix::fs::symlink("v2", dir.join("..data_tmp")).expect("symlink");
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap");
        let done = oxcol
            .wait_metric(
                "oxcol_config_reloads",
                &[("outcome", "done")],
                1.0,
                Duration::from_secs(20),
            )
            .await;
        assert_eq!(done, 1.0, "the swap did not reload\nlog:\n{}", oxcol.log());
        let summary = load.await.expect("load task");
        let counts = delivered(&[&first, &second], summary.accepted_points).await;
        assert!(oxcol.alive(), "oxcol died");
        assert_eq!(
            summary.accepted_points, summary.sent_points,
            "the kept receiver failed requests: {summary:?}"
        );
        assert!(
            counts[1] > 0,
            "the new config's sink got nothing: {counts:?}"
        );
        assert!(
            counts[0] + counts[1] >= summary.accepted_points,
            "acknowledged {} but received {counts:?}",
            summary.accepted_points
        );
        assert!(
            oxcol.log().contains("a config file changed"),
            "{}",
            oxcol.log()
        );
    })
    .await;
}

/// One gauge point of series `g` at `time` (ns), sent over gRPC; panics unless accepted.
async fn send_gauge(grpc_port: u16, value: f64, time: u64) {
    let data = metric::Data::Gauge(Gauge {
        data_points: vec![NumberDataPoint {
            time_unix_nano: time,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..Default::default()
        }],
    });
    send_metric(grpc_port, "g", data).await;
}

/// One metric named `name` with `data`, sent over gRPC; panics unless accepted.
async fn send_metric(grpc_port: u16, name: &str, data: metric::Data) {
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.to_string(),
                    data: Some(data),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut client = MetricsServiceClient::connect(format!("http://127.0.0.1:{grpc_port}"))
        .await
        .expect("connects");
    client.export(request).await.expect("the point is accepted");
}

/// One delta sum point of `d` (monotonic, int `value`) from `start` to `time` (ns).
fn delta_point(value: i64, start: u64, time: u64) -> metric::Data {
    metric::Data::Sum(Sum {
        data_points: vec![NumberDataPoint {
            start_time_unix_nano: start,
            time_unix_nano: time,
            value: Some(number_data_point::Value::AsInt(value)),
            ..Default::default()
        }],
        aggregation_temporality: AggregationTemporality::Delta as i32,
        is_monotonic: true,
    })
}

/// The int values of every `d` point a recording sink holds in `dir`, in arrival order.
fn recorded_d_values(dir: &Path) -> Vec<i64> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    let mut values = Vec::new();
    for file in files
        .iter()
        .filter(|p| p.to_string_lossy().ends_with("-metrics.pb"))
    {
        let bytes = std::fs::read(file).expect("reads a recorded request");
        let request = ExportMetricsServiceRequest::decode(bytes.as_slice()).expect("decodes");
        for metric in request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == "d")
        {
            if let Some(metric::Data::Sum(sum)) = &metric.data {
                for point in &sum.data_points {
                    if let Some(number_data_point::Value::AsInt(v)) = point.value {
                        values.push(v);
                    }
                }
            }
        }
    }
    values
}

/// A stateful processor beyond ewma/burnrate: `deltatocumulative`'s running totals go on
/// across a reload that changed only the exporter (a rebuilt one would restart at 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unchanged_deltatocumulative_keeps_its_running_totals() {
    bounded(Duration::from_secs(90), async {
        let dir = Reloadable::new_dir();
        let (first_dir, second_dir) = (dir.join("first"), dir.join("second"));
        let recording = |record: &Path| {
            std::fs::create_dir_all(record).expect("creates the record dir");
            sink::start(SinkConfig {
                record_dir: Some(record.to_path_buf()),
                ..SinkConfig::default()
            })
        };
        let first = recording(&first_dir).await.expect("starts a sink");
        let second = recording(&second_dir).await.expect("starts a sink");
        let (grpc_port, metrics_port) = (free_port(), free_port());
        let path = dir.join("config.yaml");
        let pipeline = "    metrics:\n      receivers: [otlp]\n      processors: [deltatocumulative]\n      exporters: [otlp]\n";
        let write = |sink: &RunningSink| {
            let text = config(grpc_port, metrics_port, &exporter("otlp", sink), pipeline)
                .replace("exporters:\n", "processors:\n  deltatocumulative:\nexporters:\n");
            std::fs::write(&path, text).expect("writes");
        };
        write(&first);
        let mut oxcol = Reloadable::start(dir, &path, grpc_port, metrics_port, &[]).await;
        let base = 1_700_000_000_000_000_000u64;
        let second_ns = 1_000_000_000u64;
        for i in 0..2u64 {
            let data = delta_point(1, base + i * second_ns, base + (i + 1) * second_ns);
            send_metric(grpc_port, "d", data).await;
        }
        wait_sink(&first, Duration::from_secs(10), |s| s.metrics.items >= 2).await;
        // Two requests may be in flight at once, so they can be recorded in either order.
        let mut before = recorded_d_values(&first_dir);
        before.sort_unstable();
        assert_eq!(before, vec![1, 2], "totals before the reload");
        write(&second);
        oxcol.sighup();
        assert_eq!(oxcol.wait_metric("oxcol_config_reloads", &[("outcome", "done")], 1.0, Duration::from_secs(20)).await, 1.0, "{}", oxcol.log());
        assert!(oxcol.log().contains("kept_processors=1"), "{}", oxcol.log());
        let data = delta_point(1, base + 2 * second_ns, base + 3 * second_ns);
        send_metric(grpc_port, "d", data).await;
        wait_sink(&second, Duration::from_secs(10), |s| s.metrics.items >= 1).await;
        assert_eq!(recorded_d_values(&second_dir), vec![3], "the kept processor adds to its total");
        assert!(oxcol.alive());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unchanged_ewma_keeps_its_state_and_a_changed_one_starts_over() {
    bounded(Duration::from_secs(90), async {
        let (first, second) = (start_sink().await, start_sink().await);
        let (grpc_port, metrics_port) = (free_port(), free_port());
        let dir = Reloadable::new_dir();
        let path = dir.join("config.yaml");
        let ewma = |alpha: &str| format!("processors:\n  ewma:\n    metrics:\n      - match: g\n        alpha: {alpha}\n    warmup_points: 3\n");
        let pipeline = "    metrics:\n      receivers: [otlp]\n      processors: [ewma]\n      exporters: [otlp]\n";
        let write = |alpha: &str, sink: &RunningSink| {
            let text = config(grpc_port, metrics_port, &exporter("otlp", sink), pipeline).replace("exporters:\n", &format!("{}exporters:\n", ewma(alpha)));
            std::fs::write(&path, text).expect("writes");
        };
        write("0.5", &first);
        let mut oxcol = Reloadable::start(dir, &path, grpc_port, metrics_port, &[]).await;
        let base = 1_700_000_000_000_000_000u64;
        let second_ns = 1_000_000_000u64;
        for i in 0..4u64 {
            send_gauge(grpc_port, i as f64, base + i * 10 * second_ns).await;
        }
        // Past the warm-up: the last point came out with its `g.ewma`.
        let stats = wait_sink(&first, Duration::from_secs(10), |s| s.metrics.items >= 6).await;
        assert_eq!(stats.metrics.items, 6, "4 points of g and g.ewma for points 3 and 4");
        // Reload with only the exporter changed: ewma goes on with its state.
        write("0.5", &second);
        oxcol.sighup();
        assert_eq!(oxcol.wait_metric("oxcol_config_reloads", &[("outcome", "done")], 1.0, Duration::from_secs(20)).await, 1.0, "{}", oxcol.log());
        send_gauge(grpc_port, 4.0, base + 40 * second_ns).await;
        let stats = wait_sink(&second, Duration::from_secs(10), |s| s.metrics.items >= 2).await;
        assert_eq!(stats.metrics.items, 2, "the kept ewma emits g.ewma for the 5th point");
        assert!(oxcol.log().contains("kept_processors=1"), "{}", oxcol.log());
        // Reload with the ewma changed: it starts over (warming up again), exporter kept.
        write("0.25", &second);
        oxcol.sighup();
        assert_eq!(oxcol.wait_metric("oxcol_config_reloads", &[("outcome", "done")], 2.0, Duration::from_secs(20)).await, 2.0, "{}", oxcol.log());
        send_gauge(grpc_port, 5.0, base + 50 * second_ns).await;
        let stats = wait_sink(&second, Duration::from_secs(10), |s| s.metrics.items >= 3).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(second.state.stats().metrics.items, 3, "a rebuilt ewma has one point: no g.ewma yet ({stats:?})");
        assert!(oxcol.alive());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changed_disk_queued_exporter_hands_its_disk_queue_to_the_new_one() {
    bounded(Duration::from_secs(120), async {
        let (first, second) = (start_sink().await, start_sink().await);
        let (grpc_port, metrics_port) = (free_port(), free_port());
        let dir = Reloadable::new_dir();
        let queue_dir = dir.join("queue");
        let path = dir.join("config.yaml");
        let write = |sink: &RunningSink| {
            let text = format!(
                "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc_port}\nextensions:\n  file_storage/q:\n    directory: {}\n    create_directory: true\nexporters:\n  otlp:\n    endpoint: {}\n    tls:\n      insecure: true\n    sending_queue:\n      storage: file_storage/q\n{FAST_RETRY}      max_elapsed_time: 0s\nservice:\n  extensions: [file_storage/q]\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{metrics_port}\n  pipelines:\n    metrics:\n      receivers: [otlp]\n      exporters: [otlp]\n",
                queue_dir.display(),
                sink.grpc_addr
            );
            std::fs::write(&path, text).expect("writes");
        };
        write(&first);
        let mut oxcol = Reloadable::start(dir, &path, grpc_port, metrics_port, &[]).await;
        // The first sink is down: what oxcol acknowledges waits in the disk queue.
        set_mode(&first, serde_json::json!({"down": true}));
        let summary = steady_load(grpc_port, Duration::from_secs(1)).await.expect("load task");
        assert!(summary.accepted_points > 0, "{summary:?}");
        // The changed exporter drains (its sink is down: until the shutdown deadline), closes
        // its disk queue, and the new exporter opens the same queue and sends it all.
        write(&second);
        oxcol.sighup();
        let done = oxcol.wait_metric("oxcol_config_reloads", &[("outcome", "done")], 1.0, Duration::from_secs(40)).await;
        assert_eq!(done, 1.0, "the reload was not applied\nlog:\n{}", oxcol.log());
        let counts = delivered(&[&first, &second], summary.accepted_points).await;
        assert_eq!(counts[0], 0, "the first sink was down");
        assert!(counts[1] >= summary.accepted_points, "acknowledged {} but the new sink received {}\nlog:\n{}", summary.accepted_points, counts[1], oxcol.log());
        assert!(oxcol.alive(), "oxcol died");
        assert!(!oxcol.log().contains("is locked by another process"), "{}", oxcol.log());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changed_receiver_releases_its_port_and_the_new_one_binds() {
    bounded(Duration::from_secs(60), async {
        let sink = start_sink().await;
        let (old_port, new_port, metrics_port) = (free_port(), free_port(), free_port());
        let dir = Reloadable::new_dir();
        let path = dir.join("config.yaml");
        let pipeline = "    metrics:\n      receivers: [otlp]\n      exporters: [otlp]\n";
        std::fs::write(
            &path,
            config(old_port, metrics_port, &exporter("otlp", &sink), pipeline),
        )
        .expect("writes");
        let mut oxcol = Reloadable::start(dir, &path, old_port, metrics_port, &[]).await;
        send_gauge(old_port, 1.0, 1_000).await;
        std::fs::write(
            &path,
            config(new_port, metrics_port, &exporter("otlp", &sink), pipeline),
        )
        .expect("writes");
        oxcol.sighup();
        let done = oxcol
            .wait_metric(
                "oxcol_config_reloads",
                &[("outcome", "done")],
                1.0,
                Duration::from_secs(20),
            )
            .await;
        assert_eq!(done, 1.0, "{}", oxcol.log());
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", old_port))
                .await
                .is_err(),
            "the old port is still open"
        );
        send_gauge(new_port, 2.0, 2_000).await;
        let stats = wait_sink(&sink, Duration::from_secs(10), |s| s.metrics.items >= 2).await;
        assert_eq!(stats.metrics.items, 2);
        assert!(oxcol.alive());
        assert!(
            oxcol.log().contains("kept_receivers=0") && oxcol.log().contains("kept_exporters=1"),
            "{}",
            oxcol.log()
        );
    })
    .await;
}

/// A receiver changed in place (same gRPC address, other settings) is stopped and started
/// again on the address it had: each reload must find the address free. The gRPC server
/// hands its listener to tonic, so the listener is closed by the accept loop's task, which
/// the stop must wait for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changed_grpc_receiver_binds_the_same_address_again_at_each_reload() {
    bounded(Duration::from_secs(90), async {
        let sink = start_sink().await;
        let (grpc_port, metrics_port) = (free_port(), free_port());
        let dir = Reloadable::new_dir();
        let path = dir.join("config.yaml");
        let pipeline = "    metrics:\n      receivers: [otlp]\n      exporters: [otlp]\n";
        let with_limit = |mib: u32| {
            config(grpc_port, metrics_port, &exporter("otlp", &sink), pipeline).replace(
                &format!("endpoint: 127.0.0.1:{grpc_port}\n"),
                &format!("endpoint: 127.0.0.1:{grpc_port}\n        max_recv_msg_size_mib: {mib}\n"),
            )
        };
        std::fs::write(&path, with_limit(4)).expect("writes");
        let mut oxcol = Reloadable::start(dir, &path, grpc_port, metrics_port, &[]).await;
        send_gauge(grpc_port, 0.0, 1_000).await;
        for round in 1..=6u32 {
            std::fs::write(&path, with_limit(4 + round)).expect("writes");
            oxcol.sighup();
            let done = oxcol
                .wait_metric(
                    "oxcol_config_reloads",
                    &[("outcome", "done")],
                    f64::from(round),
                    Duration::from_secs(20),
                )
                .await;
            assert_eq!(done, f64::from(round), "reload {round}: {}", oxcol.log());
            send_gauge(grpc_port, f64::from(round), 1_000 + u64::from(round)).await;
        }
        let stats = wait_sink(&sink, Duration::from_secs(10), |s| s.metrics.items >= 7).await;
        assert_eq!(stats.metrics.items, 7);
        assert!(
            !oxcol.log().contains("reload refused"),
            "a reload was refused: {}",
            oxcol.log()
        );
        assert!(oxcol.alive());
    })
    .await;
}
