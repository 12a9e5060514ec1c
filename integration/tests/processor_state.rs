//! The state of the stateful processors (`burnrate`, `ewma`) survives a restart of the
//! real `oxcol` binary when they name a `file_storage` extension (`storage:`).
//!
//! Two oxcol processes get the same timestamped OTLP counters and gauges (two pods of
//! one service): the subject checkpoints to a directory and is restarted, the reference
//! runs uninterrupted without storage. Each exports to its own in-process sink, which
//! records every request; the `slo.*` and `*.ewma` points the two emit for the same data
//! timestamps are compared.
//!
//! - SIGTERM, restart: every output after the restart equals the reference's (3d burn
//!   rate included, which still holds the error-heavy hours before the restart; no ewma
//!   warm-up).
//! - kill -9 with `checkpoint_interval: 1s`: the state restored is from a checkpoint taken
//!   less than an interval (plus slack) before the kill; the batches after it are lost
//!   and, sent again, bring the subject back to exactly the reference.
//! - `oxcol validate`: a processor's `storage` must name a file_storage extension listed
//!   in service.extensions (reported at the key's file:line:column).
//!
//! Needs `target/debug/oxcol` (`cargo build -p oxcol`). Every wait is bounded.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{READY_TIMEOUT, bounded, free_port, metric_sum, oxcol_binary};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_integration::child::{ChildGuard, spawn_appending};
use oxcol_integration::sink::{self, RunningSink, SinkConfig};
use prost::Message;

const TEST_LIMIT: Duration = Duration::from_secs(50);
/// Data time between batches (three samples in the 5m window).
const STEP_NS: u64 = 120 * 1_000_000_000;
/// The outputs compared: `slo.*` of burnrate, `*.ewma` of ewma.
const OUTPUTS: [&str; 5] = [
    "slo.burn_rate",
    "slo.error_budget.remaining",
    "slo.alert",
    "process.memory.usage.ewma",
    "process.memory.usage.rate.ewma",
];

/// A directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("oxcol-state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("state")).expect("creates the scratch dir");
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The config: burnrate (3d window, sum by service) and ewma, with or without storage.
fn config_yaml(
    grpc_port: u16,
    metrics_port: u16,
    sink: &RunningSink,
    state: Option<&Path>,
) -> String {
    let (extensions, storage, service_extensions) = match state {
        Some(dir) => (
            format!(
                "extensions:\n  file_storage/state:\n    directory: {}\n",
                dir.display()
            ),
            "    storage: file_storage/state\n    checkpoint_interval: 1s\n",
            "  extensions: [file_storage/state]\n",
        ),
        None => (String::new(), "", ""),
    };
    format!(
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc_port}
{extensions}processors:
  burnrate:
    period: 1d
    windows: [5m, 1h, 3d]
    resolution: 1m
{storage}    slos:
      - name: api
        objective: 0.99
        errors: {{metric: http_requests_total, match: {{code: \"5..\"}}}}
        total: {{metric: http_requests_total}}
        group_by: [service]
  ewma:
    metrics:
      - match: process.memory.usage
        half_life: 30m
        rate: true
    warmup_points: 3
{storage}exporters:
  otlp:
    endpoint: {sink}
    tls:
      insecure: true
service:
{service_extensions}  telemetry:
    metrics:
      address: 127.0.0.1:{metrics_port}
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [burnrate, ewma]
      exporters: [otlp]
",
        sink = sink.grpc_addr,
    )
}

/// One oxcol, restartable with the same config (ports, directory).
struct Node {
    config: PathBuf,
    log: PathBuf,
    grpc_port: u16,
    metrics_port: u16,
    child: Option<ChildGuard>,
}

impl Node {
    fn new(dir: &Path, name: &str, sink: &RunningSink, state: Option<&Path>) -> Node {
        let (grpc_port, metrics_port) = (free_port(), free_port());
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(&config, config_yaml(grpc_port, metrics_port, sink, state))
            .expect("writes the config");
        Node {
            config,
            log: dir.join(format!("{name}.log")),
            grpc_port,
            metrics_port,
            child: None,
        }
    }

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
            let open = |port| tokio::net::TcpStream::connect(("127.0.0.1", port));
            if open(self.grpc_port).await.is_ok() && open(self.metrics_port).await.is_ok() {
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

    /// SIGTERM, then wait (bounded) for a clean exit.
    fn terminate(&mut self) {
        let pid = self.child.as_ref().map(ChildGuard::id).expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("runs kill");
        assert!(status.success(), "kill -TERM {pid}");
        let exit = self
            .child
            .as_mut()
            .expect("running")
            .wait_timeout(Duration::from_secs(20));
        assert!(
            exit.as_ref().is_ok_and(|s| s.success()),
            "oxcol did not exit cleanly on SIGTERM: {exit:?}\nlog:\n{}",
            self.log()
        );
        self.child = None;
    }

    /// SIGKILL (ChildGuard's kill) and reap.
    fn kill9(&mut self) {
        self.child.take();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn metrics_text(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port))
                .await
                .ok()?;
            stream
                .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
                .await
                .ok()?;
            let mut body = Vec::new();
            stream.read_to_end(&mut body).await.ok()?;
            Some(String::from_utf8_lossy(&body).into_owned())
        };
        tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    async fn send(&self, request: ExportMetricsServiceRequest) {
        let mut client =
            MetricsServiceClient::connect(format!("http://127.0.0.1:{}", self.grpc_port))
                .await
                .unwrap_or_else(|e| panic!("connects to oxcol: {e}\nlog:\n{}", self.log()));
        client
            .export(request)
            .await
            .unwrap_or_else(|e| panic!("oxcol accepts the batch: {e}\nlog:\n{}", self.log()));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.child.take();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "---- {} (last lines) ----\n{}",
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// Start of data time: two days ago, on a minute.
fn t0() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    (now - 2 * 86_400) / 60 * 60 * 1_000_000_000
}

/// Batch i, at t0 + i x 2 min: two pods of service `checkout`, each with
/// `http_requests_total{code=200|500}` and a `process.memory.usage` gauge. Pod a fails 5%
/// of its requests for the first hour (30 batches), then 0.2%; pod b 1% throughout.
fn batch(t0: u64, i: u64) -> ExportMetricsServiceRequest {
    let ts = t0 + i * STEP_NS;
    let n = i as f64;
    let a_errors = if i < 30 {
        50.0 * n
    } else {
        1500.0 + 2.0 * (n - 30.0)
    };
    let pods = [
        ("a", 1000.0 + 950.0 * n, 100.0 + a_errors, 100.0 + 3.0 * n),
        (
            "b",
            500.0 + 990.0 * n,
            20.0 + 10.0 * n,
            300.0 + (n * 0.9).sin() * 20.0,
        ),
    ];
    let resource_metrics = pods
        .iter()
        .map(|(pod, ok, errors, memory)| {
            let counter = |code: &str, value: f64| NumberDataPoint {
                attributes: vec![text("code", code)],
                time_unix_nano: ts,
                start_time_unix_nano: t0 - STEP_NS,
                value: Some(number_data_point::Value::AsDouble(value)),
                ..Default::default()
            };
            ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![text("service", "checkout"), text("k8s.pod.name", pod)],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        Metric {
                            name: "http_requests_total".into(),
                            data: Some(metric::Data::Sum(Sum {
                                data_points: vec![counter("200", *ok), counter("500", *errors)],
                                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                                is_monotonic: true,
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "process.memory.usage".into(),
                            unit: "MiBy".into(),
                            data: Some(metric::Data::Gauge(Gauge {
                                data_points: vec![NumberDataPoint {
                                    time_unix_nano: ts,
                                    value: Some(number_data_point::Value::AsDouble(*memory)),
                                    ..Default::default()
                                }],
                            })),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

fn attribute_text(attributes: &[KeyValue]) -> String {
    let mut pairs: Vec<String> = attributes
        .iter()
        .map(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => format!("{}={s}", kv.key),
                other => format!("{}={other:?}", kv.key),
            },
        )
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// Output points by data timestamp: (metric, resource attributes, point attributes) -> value.
type Outputs = BTreeMap<u64, BTreeMap<String, f64>>;

/// Every output point the sink recorded.
fn outputs(record_dir: &Path) -> Outputs {
    let mut out = Outputs::new();
    let Ok(entries) = std::fs::read_dir(record_dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        let Ok(request) = ExportMetricsServiceRequest::decode(bytes.as_slice()) else {
            continue;
        };
        for rm in &request.resource_metrics {
            let resource = attribute_text(
                rm.resource
                    .as_ref()
                    .map(|r| r.attributes.as_slice())
                    .unwrap_or(&[]),
            );
            for m in rm
                .scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .filter(|m| OUTPUTS.contains(&m.name.as_str()))
            {
                let Some(metric::Data::Gauge(g)) = &m.data else {
                    continue;
                };
                for p in &g.data_points {
                    let Some(number_data_point::Value::AsDouble(v)) = p.value else {
                        continue;
                    };
                    out.entry(p.time_unix_nano).or_default().insert(
                        format!(
                            "{} [{resource}] {{{}}}",
                            m.name,
                            attribute_text(&p.attributes)
                        ),
                        v,
                    );
                }
            }
        }
    }
    out
}

/// Points per batch: burnrate 3 windows + budget + page alert (one group); ewma 2 pods x 2.
const PER_BATCH: usize = 5 + 4;

/// Waits (bounded) until the sink recorded all outputs of the batch at `ts`.
async fn wait_outputs(record_dir: &Path, ts: u64) -> Outputs {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = outputs(record_dir);
        if out.get(&ts).is_some_and(|points| points.len() >= PER_BATCH)
            || Instant::now() >= deadline
        {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts the subject emitted, for every batch in `batches`, exactly what the reference did.
fn assert_same(subject: &Outputs, reference: &Outputs, t0: u64, batches: std::ops::Range<u64>) {
    for i in batches {
        let ts = t0 + i * STEP_NS;
        let (ours, theirs) = (subject.get(&ts), reference.get(&ts));
        let theirs = theirs.unwrap_or_else(|| panic!("reference emitted nothing for batch {i}"));
        let ours = ours.unwrap_or_else(|| {
            panic!("subject emitted nothing for batch {i}; reference: {theirs:#?}")
        });
        assert_eq!(ours.len(), PER_BATCH, "batch {i}: {ours:#?}");
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "batch {i}"
        );
        for (key, v) in ours {
            let w = theirs[key];
            assert!(
                (v - w).abs() <= 1e-9 * w.abs().max(1.0),
                "batch {i} {key}: subject {v} reference {w}"
            );
        }
    }
}

fn value(outputs: &Outputs, ts: u64, prefix: &str) -> f64 {
    outputs
        .get(&ts)
        .and_then(|points| {
            points
                .iter()
                .find(|(k, _)| k.starts_with(prefix))
                .map(|(_, v)| *v)
        })
        .unwrap_or(f64::NAN)
}

async fn recording_sink(dir: &Path, name: &str) -> (RunningSink, PathBuf) {
    let record = dir.join(name);
    let sink = sink::start(SinkConfig {
        record_dir: Some(record.clone()),
        ..SinkConfig::default()
    })
    .await
    .expect("starts the sink");
    (sink, record)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_restart_continue_exactly_as_an_uninterrupted_run() {
    bounded(TEST_LIMIT, async {
        let scratch = Scratch::new("term");
        let (subject_sink, subject_record) = recording_sink(&scratch.0, "subject-out").await;
        let (reference_sink, reference_record) = recording_sink(&scratch.0, "reference-out").await;
        let state = scratch.0.join("state");
        let mut subject = Node::new(&scratch.0, "subject", &subject_sink, Some(&state));
        let mut reference = Node::new(&scratch.0, "reference", &reference_sink, None);
        subject.start().await;
        reference.start().await;
        let t0 = t0();
        for i in 0..60 {
            subject.send(batch(t0, i)).await;
            reference.send(batch(t0, i)).await;
        }
        subject.terminate();
        let files: Vec<String> = std::fs::read_dir(&state).expect("state dir").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        for processor in ["burnrate", "ewma"] {
            assert!(files.contains(&format!("processor.{processor}.metrics.state")), "{files:?}");
        }
        subject.start().await;
        let text = subject.metrics_text().await;
        for processor in ["burnrate", "ewma"] {
            let restored = metric_sum(&text, "oxcol_processor_state_restored_timestamp_seconds", &[("processor", processor)]);
            assert_eq!(restored, Some(((t0 + 59 * STEP_NS) / 1_000_000_000) as f64), "{processor}: state restored up to the last batch before SIGTERM");
            let failures = metric_sum(&text, "oxcol_processor_state_restore_failures", &[("processor", processor)]);
            assert_eq!(failures, Some(0.0), "{processor}");
        }
        for i in 60..90 {
            subject.send(batch(t0, i)).await;
            reference.send(batch(t0, i)).await;
        }
        let last = t0 + 89 * STEP_NS;
        let (ours, theirs) = (wait_outputs(&subject_record, last).await, wait_outputs(&reference_record, last).await);
        assert_same(&ours, &theirs, t0, 60..90);
        // The comparison is sensitive to lost state: right after the restart, the 3d burn
        // rate (still holding the 5% hours) is far above the 1h one, and ewma emits at
        // once (with no state it would need 3 points to warm up).
        let first = t0 + 60 * STEP_NS;
        let (long, short) = (value(&theirs, first, "slo.burn_rate [service=checkout] {service=checkout,slo.name=api,slo.window=3d}"), value(&theirs, first, "slo.burn_rate [service=checkout] {service=checkout,slo.name=api,slo.window=1h}"));
        assert!(long > 2.0 * short, "3d {long} vs 1h {short}");
        println!("RESULT sigterm: 30 batches after the restart x {PER_BATCH} outputs equal to the uninterrupted run; 3d burn rate {long:.3} (1h {short:.3}) right after the restart");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_at_most_one_checkpoint_interval() {
    bounded(TEST_LIMIT, async {
        let scratch = Scratch::new("kill9");
        let (subject_sink, subject_record) = recording_sink(&scratch.0, "subject-out").await;
        let (reference_sink, reference_record) = recording_sink(&scratch.0, "reference-out").await;
        let state = scratch.0.join("state");
        let mut subject = Node::new(&scratch.0, "subject", &subject_sink, Some(&state));
        let mut reference = Node::new(&scratch.0, "reference", &reference_sink, None);
        subject.start().await;
        reference.start().await;
        let t0 = t0();
        // 25 batches, 200 ms apart on the wall clock; checkpoint_interval is 1s.
        const N: u64 = 25;
        let mut acked = Vec::new();
        for i in 0..N {
            subject.send(batch(t0, i)).await;
            acked.push(Instant::now());
            reference.send(batch(t0, i)).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let killed = Instant::now();
        subject.kill9();
        subject.start().await;
        let text = subject.metrics_text().await;
        let mut restored = Vec::new();
        for processor in ["burnrate", "ewma"] {
            let seconds = metric_sum(&text, "oxcol_processor_state_restored_timestamp_seconds", &[("processor", processor)]).unwrap_or(0.0);
            assert!(seconds > 0.0, "{processor}: nothing restored after kill -9 (no periodic checkpoint?)\n{text}");
            let last = ((seconds as u64 * 1_000_000_000 - t0) / STEP_NS) as usize;
            assert!(last < N as usize, "{processor}: restored batch {last}");
            // Lost: the batches after `last`. The first of them was processed no more than
            // one interval (1 s) plus slack before the kill, else a checkpoint would hold it.
            if let Some(first_lost) = acked.get(last + 1) {
                let lost_for = killed - *first_lost;
                assert!(lost_for < Duration::from_millis(2000), "{processor}: state of the last {lost_for:?} lost (batches {}..{N}), more than one checkpoint interval", last + 1);
            }
            println!("RESULT kill9 {processor}: restored through batch {last} of {N}; {} batches ({:?} of wall time) lost", N as usize - 1 - last, acked.get(last + 1).map(|t| killed - *t).unwrap_or_default());
            restored.push(last as u64);
        }
        let (oldest, newest) = (restored.iter().min().copied().unwrap_or(0), restored.iter().max().copied().unwrap_or(0));
        // Sent again (at-least-once upstream), the lost batches bring the subject back to the
        // reference's state (points a processor already holds are skipped as out of order).
        for i in oldest + 1..N {
            subject.send(batch(t0, i)).await;
        }
        for i in N..N + 10 {
            subject.send(batch(t0, i)).await;
            reference.send(batch(t0, i)).await;
        }
        let last = t0 + (N + 9) * STEP_NS;
        let (ours, theirs) = (wait_outputs(&subject_record, last).await, wait_outputs(&reference_record, last).await);
        // From batch 4 on every output exists (ewma's rate needs 4 points).
        assert_same(&ours, &theirs, t0, (newest + 1).max(4)..N + 10);
    })
    .await;
}

#[test]
fn validate_reports_a_storage_that_is_not_a_listed_file_storage_extension() {
    let scratch = Scratch::new("validate");
    let cases = [
        (
            "extensions:\n  file_storage/state:\n    directory: /tmp\n",
            "",
            "is not listed in service.extensions; add it there",
        ),
        ("", "", "is not defined under `extensions`"),
        (
            "extensions:\n  health_check:\n",
            "  extensions: [health_check]\n",
            "is not a file_storage extension",
        ),
    ];
    for (n, (extensions, listed, expected)) in cases.iter().enumerate() {
        let storage = if extensions.contains("health_check") {
            "health_check"
        } else {
            "file_storage/state"
        };
        let yaml = format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:4317\n{extensions}processors:\n  ewma:\n    metrics: [{{match: x}}]\n    storage: {storage}\nexporters:\n  debug:\nservice:\n{listed}  pipelines:\n    metrics:\n      receivers: [otlp]\n      processors: [ewma]\n      exporters: [debug]\n"
        );
        let path = scratch.0.join(format!("case{n}.yaml"));
        std::fs::write(&path, &yaml).expect("writes the config");
        let line = yaml
            .lines()
            .position(|l| l.trim_start().starts_with("storage:"))
            .expect("a storage line")
            + 1;
        let output = Command::new(oxcol_binary())
            .args(["validate", "--config"])
            .arg(&path)
            .output()
            .expect("oxcol runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "case {n} must be refused:\n{yaml}"
        );
        let wanted = format!("{}:{line}:", path.display());
        assert!(
            stderr.contains(&wanted)
                && stderr.contains(&format!(
                    "processor \"ewma\": storage: extension \"{storage}\" {expected}"
                )),
            "case {n}: expected {wanted} ... {expected}, got:\n{stderr}"
        );
    }
    // Listed and defined: valid.
    let yaml = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:4317\nextensions:\n  file_storage/state:\n    directory: /tmp\nprocessors:\n  burnrate:\n    storage: file_storage/state\n    slos: [{name: a, objective: 0.99, errors: {metric: e}, total: {metric: t}}]\nexporters:\n  debug:\nservice:\n  extensions: [file_storage/state]\n  pipelines:\n    metrics:\n      receivers: [otlp]\n      processors: [burnrate]\n      exporters: [debug]\n";
    let path = scratch.0.join("valid.yaml");
    std::fs::write(&path, yaml).expect("writes the config");
    let output = Command::new(oxcol_binary())
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .expect("oxcol runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
