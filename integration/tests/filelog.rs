//! The `filelog` receiver through the real `oxcol` binary: files written here, rotated by
//! the real `logrotate` (Debian package; scripts/test installs it) with a config and a
//! state file in the test's temp dir, oxcol killed with SIGKILL between writes and
//! restarted with its checkpoint in a `file_storage` directory, and every record counted
//! at an in-process sink that records each request's bytes: every line arrives exactly
//! once. Also: Kubernetes CRI logs through the `container` operator, and memory that stays
//! bounded while a file with lines longer than `max_log_size` grows fast.
//!
//! Needs `target/debug/oxcol` (`cargo build -p oxcol`). Every wait is bounded; children
//! are killed on every exit path (ChildGuard).

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, metric_sum, oxcol_binary};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use oxcol_integration::child::{ChildGuard, spawn_appending};
use oxcol_integration::sink::{self, RunningSink, SinkConfig};
use prost::Message;

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "oxcol-filelog-it-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creates the temp dir");
    dir
}

fn logrotate() -> PathBuf {
    for candidate in [
        "/usr/sbin/logrotate",
        "/sbin/logrotate",
        "/usr/bin/logrotate",
    ] {
        if Path::new(candidate).is_file() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "logrotate is not installed: run scripts/test (it installs the Debian package) or apt-get install logrotate"
    )
}

/// Runs `logrotate -f -s state conf` for `log` with `mode` (`create` or `copytruncate`).
fn rotate(dir: &Path, log: &Path, mode: &str) {
    let conf = dir.join("logrotate.conf");
    std::fs::write(
        &conf,
        format!(
            "{} {{\n  rotate 20\n  missingok\n  nocompress\n  {mode}\n}}\n",
            log.display()
        ),
    )
    .expect("writes the logrotate config");
    let output = Command::new(logrotate())
        .arg("-f")
        .arg("-s")
        .arg(dir.join("logrotate.state"))
        .arg(&conf)
        .output()
        .expect("logrotate runs");
    assert!(
        output.status.success(),
        "logrotate failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn append_lines(log: &Path, from: usize, count: usize) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("opens the log");
    let mut text = String::new();
    for n in from..from + count {
        text.push_str(&format!("line-{n:06} some payload\n"));
    }
    f.write_all(text.as_bytes()).expect("writes lines");
}

/// oxcol with a config in `dir`, restartable, killed with SIGKILL when dropped.
struct Agent {
    config: PathBuf,
    log: PathBuf,
    metrics_port: u16,
    child: Option<ChildGuard>,
}

impl Agent {
    /// `exporter_extra`: more `otlp` exporter keys (indented 4 spaces), or "".
    fn new(dir: &Path, receiver: &str, sink: &RunningSink, exporter_extra: &str) -> Agent {
        let metrics_port = free_port();
        let yaml = format!(
            "receivers:\n{receiver}\nextensions:\n  file_storage:\n    directory: {state}\n    create_directory: true\nexporters:\n  otlp:\n    endpoint: {sink}\n    tls:\n      insecure: true\n    retry_on_failure:\n      initial_interval: 50ms\n      max_interval: 200ms\n{exporter_extra}service:\n  extensions: [file_storage]\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{metrics_port}\n  pipelines:\n    logs:\n      receivers: [filelog]\n      exporters: [otlp]\n",
            state = dir.join("state").display(),
            sink = sink.grpc_addr,
        );
        let config = dir.join("oxcol.yaml");
        std::fs::write(&config, yaml).expect("writes the config");
        Agent {
            config,
            log: dir.join("oxcol.log"),
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
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.child_mut().try_wait()) {
                panic!(
                    "oxcol exited during start-up with {status}\nlog:\n{}",
                    self.log_text()
                );
            }
            if self.metrics().await.is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "oxcol was not ready\nlog:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill9(&mut self) {
        self.child.take();
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(ChildGuard::id).unwrap_or(0)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn metrics(&self) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port))
            .await
            .ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .await
            .ok()?;
        let mut body = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut body))
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8_lossy(&body).into_owned();
        (text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200")).then_some(text)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.child.take();
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "---- oxcol log ----\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// Every recorded log record: (body, attributes as strings, resource attributes).
type Record = (String, BTreeMap<String, String>, BTreeMap<String, String>);

fn text(value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn recorded(dir: &Path) -> Vec<Record> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let mut out = Vec::new();
    for file in files
        .iter()
        .filter(|p| p.to_string_lossy().ends_with("logs.pb"))
    {
        let Ok(bytes) = std::fs::read(file) else {
            continue;
        };
        let Ok(request) = ExportLogsServiceRequest::decode(bytes.as_slice()) else {
            continue;
        };
        for rl in request.resource_logs {
            let resource: BTreeMap<String, String> = rl
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .map(|kv| (kv.key.clone(), text(&kv.value)))
                .collect();
            for sl in rl.scope_logs {
                for record in sl.log_records {
                    let attributes = record
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(&kv.value)))
                        .collect();
                    out.push((text(&record.body), attributes, resource.clone()));
                }
            }
        }
    }
    out
}

/// Waits until the sink holds `want` log records (bounded), then a little longer so any
/// duplicate would show.
async fn wait_records(sink: &RunningSink, want: u64, agent: &Agent) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.state.stats().logs.items < want {
        assert!(
            Instant::now() < deadline,
            "the sink got {} of {want} log records\nlog:\n{}",
            sink.state.stats().logs.items,
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The checkpoint is written right after the pipeline accepts; give it time.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn assert_each_once(records: &[Record], total: usize) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (body, attributes, _) in records {
        *counts.entry(body.as_str()).or_default() += 1;
        assert!(
            attributes
                .get("log.file.name")
                .is_some_and(|n| n.starts_with("app.log")),
            "log.file.name set: {attributes:?}"
        );
    }
    let missing: Vec<usize> = (0..total)
        .filter(|n| !counts.contains_key(format!("line-{n:06} some payload").as_str()))
        .collect();
    let twice: Vec<(&&str, &usize)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        missing.is_empty(),
        "{} lines lost, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        twice.is_empty(),
        "{} lines read twice, first {:?}",
        twice.len(),
        &twice[..twice.len().min(10)]
    );
    assert_eq!(records.len(), total);
}

async fn rotation_with_kill(mode: &str, include_rotated: bool) {
    let dir = temp_dir(mode);
    let records_dir = dir.join("records");
    std::fs::create_dir_all(&records_dir).expect("mkdir");
    let sink = sink::start(SinkConfig {
        record_dir: Some(records_dir.clone()),
        ..SinkConfig::default()
    })
    .await
    .expect("starts the sink");
    let log = dir.join("app.log");
    let include = if include_rotated {
        format!("{}*", log.display())
    } else {
        log.display().to_string()
    };
    let receiver = format!(
        "  filelog:\n    include: [\"{include}\"]\n    start_at: beginning\n    poll_interval: 50ms\n    storage: file_storage\n"
    );
    let mut agent = Agent::new(&dir, &receiver, &sink, "");
    const STEP: usize = 300;
    append_lines(&log, 0, STEP);
    agent.start().await;
    wait_records(&sink, STEP as u64, &agent).await;
    // Write and rotate at once (the new lines may be unread), then write on.
    append_lines(&log, STEP, STEP);
    rotate(&dir, &log, mode);
    append_lines(&log, 2 * STEP, STEP);
    wait_records(&sink, 3 * STEP as u64, &agent).await;
    // kill -9 between writes; lines written while oxcol is down arrive after the restart.
    let old_pid = agent.pid();
    agent.kill9();
    append_lines(&log, 3 * STEP, STEP);
    agent.start().await;
    assert_ne!(agent.pid(), old_pid);
    wait_records(&sink, 4 * STEP as u64, &agent).await;
    append_lines(&log, 4 * STEP, STEP);
    rotate(&dir, &log, mode);
    append_lines(&log, 5 * STEP, STEP);
    wait_records(&sink, 6 * STEP as u64, &agent).await;
    assert_each_once(&recorded(&records_dir), 6 * STEP);
    let metrics = agent.metrics().await.unwrap_or_default();
    let accepted = metric_sum(
        &metrics,
        "otelcol_receiver_accepted_log_records",
        &[("receiver", "filelog")],
    );
    assert!(
        accepted.is_some_and(|a| a >= (2 * STEP) as f64),
        "accepted after the restart: {accepted:?}"
    );
    sink.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logrotate_create_and_kill9_lose_and_repeat_nothing() {
    // Only app.log matches: the rest of a renamed file is read through the open handle.
    common::bounded(
        Duration::from_secs(150),
        rotation_with_kill("create", false),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logrotate_copytruncate_and_kill9_lose_and_repeat_nothing() {
    // app.log* matches the copies too: lines written before the copy but not yet read are
    // read from the copy (its fingerprint is the known file's), nothing twice.
    common::bounded(
        Duration::from_secs(150),
        rotation_with_kill("copytruncate", true),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_cri_logs_through_the_container_operator() {
    common::bounded(Duration::from_secs(60), async {
        let dir = temp_dir("cri");
        let records_dir = dir.join("records");
        std::fs::create_dir_all(&records_dir).expect("mkdir");
        let sink = sink::start(SinkConfig {
            record_dir: Some(records_dir.clone()),
            ..SinkConfig::default()
        })
        .await
        .expect("starts the sink");
        let pod_dir = dir.join("var/log/pods/shop_cart-7d9f_5f1c2e3a-aaaa-bbbb-cccc-0123456789ab/cart");
        std::fs::create_dir_all(&pod_dir).expect("mkdir");
        // The helm chart's daemonset-collector-logs receiver, pointed at this directory.
        let receiver = format!(
            "  filelog:\n    exclude: []\n    include:\n    - {}/var/log/pods/*/*/*.log\n    include_file_name: false\n    include_file_path: true\n    operators:\n    - id: container-parser\n      max_log_size: 102400\n      type: container\n    retry_on_failure:\n      enabled: true\n    start_at: beginning\n    poll_interval: 50ms\n",
            dir.display()
        );
        let mut agent = Agent::new(&dir, &receiver, &sink, "");
        let log = pod_dir.join("3.log");
        std::fs::write(
            &log,
            "2024-03-05T13:04:05.100000000Z stdout P part one, \n\
             2024-03-05T13:04:05.200000000Z stdout F part two\n\
             2024-03-05T13:04:06.000000000Z stderr F whole line\n",
        )
        .expect("writes");
        agent.start().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while sink.state.stats().logs.items < 2 {
            assert!(Instant::now() < deadline, "got {} records\n{}", sink.state.stats().logs.items, agent.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let records = recorded(&records_dir);
        let bodies: Vec<&str> = records.iter().map(|r| r.0.as_str()).collect();
        // The line's trailing space is trimmed before parsing (the Collector's default trim
        // too, unless preserve_trailing_whitespaces).
        assert_eq!(bodies, vec!["part one,part two", "whole line"]);
        let (_, attributes, resource) = &records[0];
        assert_eq!(attributes.get("log.iostream").map(String::as_str), Some("stdout"));
        assert_eq!(attributes.get("log.file.path"), Some(&log.display().to_string()));
        assert!(!attributes.contains_key("log.file.name"), "include_file_name: false");
        assert_eq!(resource.get("k8s.namespace.name").map(String::as_str), Some("shop"));
        assert_eq!(resource.get("k8s.pod.name").map(String::as_str), Some("cart-7d9f"));
        assert_eq!(resource.get("k8s.pod.uid").map(String::as_str), Some("5f1c2e3a-aaaa-bbbb-cccc-0123456789ab"));
        assert_eq!(resource.get("k8s.container.name").map(String::as_str), Some("cart"));
        assert_eq!(resource.get("k8s.container.restart_count").map(String::as_str), Some("3"));
        assert_eq!(records[1].1.get("log.iostream").map(String::as_str), Some("stderr"));
        sink.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_with_a_fast_file_and_overlong_lines() {
    common::bounded(Duration::from_secs(240), async {
        let dir = temp_dir("bounded");
        let sink = sink::start(SinkConfig::default()).await.expect("starts the sink");
        let log = dir.join("app.log");
        let receiver = format!(
            "  filelog:\n    include: [\"{}\"]\n    start_at: beginning\n    poll_interval: 50ms\n    max_log_size: 256KiB\n",
            log.display()
        );
        // A small exporter queue and one sender: the pipeline pushes back, and the receiver
        // must wait rather than buffer.
        let mut agent = Agent::new(&dir, &receiver, &sink, "    sending_queue:\n      queue_size: 4\n      num_consumers: 1\n");
        agent.start().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let baseline_rss = common::rss_bytes(agent.pid()).unwrap_or(0);
        // 96 MiB written as fast as possible: 1 KiB lines, and every 8 MiB one 3 MiB line
        // (longer than max_log_size: cut into 12 pieces of 256 KiB).
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("opens");
        let line = format!("{}\n", "x".repeat(1023));
        let long = format!("{}\n", "y".repeat(3 << 20));
        let mut expected = 0u64;
        let mut peak_rss = 0u64;
        for _ in 0..12 {
            let mut block = String::with_capacity(5 << 20);
            for _ in 0..(5 << 10) {
                block.push_str(&line);
            }
            f.write_all(block.as_bytes()).expect("writes");
            f.write_all(long.as_bytes()).expect("writes");
            expected += (5 << 10) + 12;
            peak_rss = peak_rss.max(common::rss_bytes(agent.pid()).unwrap_or(0));
        }
        let deadline = Instant::now() + Duration::from_secs(200);
        while sink.state.stats().logs.items < expected {
            peak_rss = peak_rss.max(common::rss_bytes(agent.pid()).unwrap_or(0));
            assert!(
                Instant::now() < deadline,
                "got {} of {expected} records\n{}",
                sink.state.stats().logs.items,
                agent.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(sink.state.stats().logs.items, expected, "every piece exactly once");
        // The file is ~100 MiB; oxcol holds one batch (at most 1 MiB of bodies), one read
        // chunk, the exporter's 4 queued requests and the one in flight (measured: ~21 MiB
        // over the start).
        eprintln!(
            "filelog bounded: file {} MiB, RSS at start {} MiB, peak {} MiB",
            std::fs::metadata(&log).map(|m| m.len() >> 20).unwrap_or(0),
            baseline_rss >> 20,
            peak_rss >> 20
        );
        assert!(
            peak_rss < baseline_rss + (32 << 20),
            "peak RSS {} MiB, at start {} MiB: more than 32 MiB of growth for a 96 MiB file",
            peak_rss >> 20,
            baseline_rss >> 20
        );
        sink.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}
