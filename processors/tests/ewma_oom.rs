//! Scenario 1, the early OOM warning, with a real process: a python3 child allocates and
//! touches 4 MiB every 100 ms; the test samples its VmRSS from /proc/PID/status every
//! 200 ms with the real timestamps, feeds the samples with a limit a bit above the start
//! through the `ewma` processor's `predict`, and checks that once warmed up the predicted
//! time to the limit is within 20% of the time it really took to get there.

use std::fmt::Write as _;
use std::io::Write as _IoWrite;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_core::{Batch, Data, Processor};
use oxcol_processors::ewma::{Config, EwmaProcessor};

const MIB: f64 = 1_048_576.0;

/// Kills the child however the test ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn vm_rss_bytes(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

fn gauge(name: &str, ts: u64, value: f64) -> Metric {
    Metric {
        name: name.to_string(),
        unit: "By".to_string(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: ts,
                value: Some(number_data_point::Value::AsDouble(value)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

fn prediction(batch: &Batch) -> Option<f64> {
    let Data::Metrics(resources) = batch.data() else {
        return None;
    };
    resources
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == "process.memory.time_to_limit")
        .find_map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.first().and_then(|p| match p.value {
                Some(number_data_point::Value::AsDouble(v)) => Some(v),
                _ => None,
            }),
            _ => None,
        })
}

#[test]
fn predicted_time_to_limit_of_a_growing_process_is_within_20_percent() {
    let script = r#"
import sys, time
chunks = []
sys.stdout.write("ready\n"); sys.stdout.flush()
start = time.monotonic()
for i in range(400):
    chunks.append(b"\x01" * (4 * 1024 * 1024))
    delay = start + (i + 1) * 0.1 - time.monotonic()
    if delay > 0:
        time.sleep(delay)
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map(Guard)
        .expect("python3 is installed (the test needs a real growing process)");
    let pid = child.0.id();
    let mut stdout = child.0.stdout.take().expect("piped stdout");
    let mut ready = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut ready).expect("child says ready");

    let config: Config = serde_json::from_value(serde_json::json!({
        "predict": [{"name": "process.memory.time_to_limit", "value": "process.memory.usage", "limit": "process.memory.limit", "half_life": "1s"}],
        "warmup_points": 5
    }))
    .expect("valid ewma config");
    let mut processor = EwmaProcessor::new("ewma", &config, None).expect("valid ewma config");

    let start_rss = vm_rss_bytes(pid).expect("child's /proc/PID/status is readable");
    // 4 MiB per 100 ms = 40 MiB/s: the limit is reached about 6 s in.
    let limit = start_rss + 240.0 * MIB;
    let deadline = Instant::now() + Duration::from_secs(18);
    // (timestamp in seconds, predicted seconds to limit) after warm-up.
    let mut predictions: Vec<(f64, f64)> = Vec::new();
    let mut previous: Option<(f64, f64)> = None;
    let reached_at = loop {
        assert!(
            Instant::now() < deadline,
            "the child did not reach the limit in time (predictions so far: {predictions:?})"
        );
        std::thread::sleep(Duration::from_millis(200));
        let rss = vm_rss_bytes(pid).expect("child is alive");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970");
        let ts_seconds = now.as_secs_f64();
        if rss >= limit {
            // Interpolate the crossing between the last two samples.
            let (t0, r0) = previous.unwrap_or((ts_seconds, rss));
            break if rss > r0 {
                t0 + (ts_seconds - t0) * (limit - r0) / (rss - r0)
            } else {
                ts_seconds
            };
        }
        previous = Some((ts_seconds, rss));
        let ts = now.as_nanos() as u64;
        let resource = ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "process.pid".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::IntValue(pid as i64)),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    gauge("process.memory.usage", ts, rss),
                    gauge("process.memory.limit", ts, limit),
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let out = processor
            .process(Batch::from_metrics(vec![resource]))
            .expect("ewma never refuses");
        if let Some(eta) = prediction(&out) {
            predictions.push((ts_seconds, eta));
        }
    };

    // Judge the predictions made while the true remaining time was at least 1.5 s
    // (7 samples); closer in, 20% is less than the sampling interval.
    let judged: Vec<(f64, f64, f64)> = predictions
        .iter()
        .map(|&(ts, eta)| (ts, eta, reached_at - ts))
        .filter(|&(_, _, truth)| truth >= 1.5)
        .collect();
    let mut report = String::new();
    for (ts, eta, truth) in &judged {
        let _ = writeln!(
            report,
            "t={:.2} predicted={eta:.2}s true={truth:.2}s",
            ts - judged[0].0
        );
    }
    assert!(
        judged.len() >= 5,
        "too few predictions after warm-up to judge:\n{report}"
    );
    for (_, eta, truth) in &judged {
        assert!(
            (eta - truth).abs() <= 0.2 * truth,
            "prediction off by more than 20%:\n{report}"
        );
    }
    let _ = std::io::stderr().write_all(report.as_bytes());
}
