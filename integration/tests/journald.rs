//! Black-box test of the `journald` receiver in the `oxcol` binary against the real
//! `journalctl`, on a journal directory written here by `systemd-journal-remote` (Debian
//! package systemd-journal-remote; scripts/test installs it) from export-format input:
//!
//! - entries arrive as log records with the Collector's body, time and no severity, and
//!   the `units`/`priority` filters apply;
//! - entries appended while oxcol runs arrive (the child follows the journal);
//! - journalctl killed with SIGKILL is started again and goes on after the last entry;
//! - oxcol stopped and started again resumes after the cursor in its `file_storage`:
//!   every entry arrives exactly once.
//!
//! Needs `target/debug/oxcol` (`cargo build -p oxcol`). Every wait is bounded.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use oxcol_integration::child::{ChildGuard, spawn_logged};
use oxcol_integration::sink::{self, SinkConfig};
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TEST_LIMIT: Duration = Duration::from_secs(120);
const BOOT_ID: &str = "0123456789abcdef0123456789abcdef";
const BASE_USEC: u64 = 1_700_000_000_000_000;

fn journal_remote() -> PathBuf {
    ["/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("systemd-journal-remote is installed (Debian package systemd-journal-remote; scripts/test installs it)")
}

/// Appends entries `(sequence, message, priority, unit)` to `journal` (export format in,
/// journal file out).
fn append(dir: &Path, journal: &Path, entries: &[(u64, &str, u8, &str)]) {
    let mut export = String::new();
    for (sequence, message, priority, unit) in entries {
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID={BOOT_ID}\nMESSAGE={message}\nPRIORITY={priority}\n_SYSTEMD_UNIT={unit}\nSYSLOG_IDENTIFIER=demo\n_HOSTNAME=fixture\n\n",
            BASE_USEC + sequence,
            sequence + 1
        ));
    }
    let input = dir.join("export.txt");
    std::fs::write(&input, export).expect("writes the export input");
    let output = Command::new(journal_remote())
        .arg("-o")
        .arg(journal)
        .arg(&input)
        .output()
        .expect("runs systemd-journal-remote");
    assert!(
        output.status.success(),
        "systemd-journal-remote failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn config(dir: &Path, sink: &str, metrics_port: u16) -> String {
    format!(
        "receivers:
  journald:
    directory: {journal}
    start_at: beginning
    units: [demo.service]
    storage: file_storage/cursor
extensions:
  file_storage/cursor:
    directory: {state}
    create_directory: true
exporters:
  otlp:
    endpoint: {sink}
    tls:
      insecure: true
service:
  extensions: [file_storage/cursor]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics_port}
  pipelines:
    logs:
      receivers: [journald]
      exporters: [otlp]
",
        journal = dir.join("journal").display(),
        state = dir.join("state").display(),
    )
}

struct Running {
    guard: ChildGuard,
    metrics_port: u16,
    log: PathBuf,
}

impl Running {
    async fn start(dir: &Path, sink: &str, run: usize) -> Running {
        let metrics_port = free_port();
        let config_path = dir.join(format!("config-{run}.yaml"));
        std::fs::write(&config_path, config(dir, sink, metrics_port)).expect("writes the config");
        let log = dir.join(format!("oxcol-{run}.log"));
        let guard = spawn_logged(
            Command::new(oxcol_binary())
                .arg("--config")
                .arg(&config_path),
            &log,
        );
        let running = Running {
            guard,
            metrics_port,
            log,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while running.metrics_text().is_none() {
            assert!(
                Instant::now() < deadline,
                "oxcol not ready\n{}",
                running.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        running
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn metrics_text(&self) -> Option<String> {
        oxcol_integration::net::http_get(&format!("127.0.0.1:{}", self.metrics_port), "/metrics")
            .ok()
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body)
    }

    fn metric(&self, name: &str) -> Option<f64> {
        metric_sum(&self.metrics_text()?, name, &[("receiver", "journald")])
    }

    /// The journalctl children of this oxcol.
    fn journalctl_pids(&self) -> Vec<u32> {
        let parent = self.guard.id();
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                // pid (comm) state ppid ...
                let (comm, rest) = stat.split_once(") ")?;
                let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
                (ppid == parent && comm.ends_with("(journalctl")).then_some(pid)
            })
            .collect()
    }

    fn terminate(mut self) {
        let pid = self.guard.id();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        let status = self
            .guard
            .wait_timeout(Duration::from_secs(20))
            .expect("oxcol stops on SIGTERM");
        assert!(
            status.success(),
            "oxcol exited with {status}\n{}",
            self.log()
        );
    }
}

/// Every record the sink recorded, in arrival order.
/// Every recorded log record, in journal time order: two requests may be in flight at
/// once, so the order the sink recorded them in is not the order they were read in.
fn recorded(record: &Path) -> Vec<LogRecord> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(record)
        .expect("reads the record dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with("-logs.pb"))
        .collect();
    files.sort();
    let mut records = files
        .iter()
        .flat_map(|path| {
            let request = ExportLogsServiceRequest::decode(
                std::fs::read(path).expect("reads a record").as_slice(),
            )
            .expect("a logs request");
            request
                .resource_logs
                .into_iter()
                .flat_map(|r| r.scope_logs)
                .flat_map(|s| s.log_records)
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>();
    records.sort_by_key(|r| r.time_unix_nano);
    records
}

fn body_field(record: &LogRecord, key: &str) -> Option<String> {
    let Some(Value::KvlistValue(body)) = record.body.as_ref().and_then(|b| b.value.clone()) else {
        return None;
    };
    body.values
        .into_iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value?.value? {
            Value::StringValue(s) => Some(s),
            _ => None,
        })
}

fn messages(record: &Path) -> Vec<String> {
    recorded(record)
        .iter()
        .filter_map(|r| body_field(r, "MESSAGE"))
        .collect()
}

async fn wait_messages(record: &Path, count: usize, running: &Running) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = messages(record);
        if found.len() >= count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{count} messages did not arrive: {found:?}\nlog:\n{}",
            running.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journald_follows_restarts_and_resumes_from_its_cursor() {
    bounded(TEST_LIMIT, async {
        let dir = std::env::temp_dir().join(format!("oxcol-journald-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("journal")).expect("creates the journal dir");
        let journal = dir.join("journal").join("fixture.journal");
        let record = dir.join("record");
        std::fs::create_dir_all(&record).expect("creates the record dir");
        let sink = sink::start(SinkConfig {
            record_dir: Some(record.clone()),
            ..SinkConfig::default()
        })
        .await
        .expect("starts the sink");
        let sink_addr = sink.grpc_addr.to_string();

        // a3 is debug (below the default priority `info`), a4 another unit: both filtered.
        append(
            &dir,
            &journal,
            &[
                (1, "a1", 6, "demo.service"),
                (2, "a2", 3, "demo.service"),
                (3, "a3", 7, "demo.service"),
                (4, "a4", 6, "other.service"),
            ],
        );
        let first = Running::start(&dir, &sink_addr, 1).await;
        let found = wait_messages(&record, 2, &first).await;
        assert_eq!(found, ["a1", "a2"]);
        let records = recorded(&record);
        let a1 = &records[0];
        assert_eq!(
            a1.time_unix_nano,
            (BASE_USEC + 1) * 1000,
            "__REALTIME_TIMESTAMP in ns"
        );
        assert!(a1.observed_time_unix_nano > a1.time_unix_nano);
        assert_eq!(
            (a1.severity_number, a1.severity_text.as_str()),
            (0, ""),
            "PRIORITY is not mapped (as the Collector)"
        );
        assert_eq!(
            body_field(a1, "_SYSTEMD_UNIT").as_deref(),
            Some("demo.service")
        );
        assert_eq!(body_field(a1, "PRIORITY").as_deref(), Some("6"));
        assert!(body_field(a1, "__CURSOR").is_some_and(|c| c.contains(&format!("b={BOOT_ID}"))));
        assert_eq!(
            body_field(a1, "__REALTIME_TIMESTAMP"),
            None,
            "moved to the record's time"
        );

        // Following: an entry appended now arrives.
        append(&dir, &journal, &[(5, "b1", 6, "demo.service")]);
        assert_eq!(wait_messages(&record, 3, &first).await, ["a1", "a2", "b1"]);

        // journalctl killed: started again (after the back-off), it goes on after b1.
        let pids = first.journalctl_pids();
        assert_eq!(pids.len(), 1, "one journalctl child: {pids:?}");
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pids[0].to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while first
            .metric("oxcol_receiver_journald_restarts")
            .unwrap_or(0.0)
            < 1.0
            || first.journalctl_pids().iter().all(|p| *p == pids[0])
        {
            assert!(
                Instant::now() < deadline,
                "journalctl was not restarted\n{}",
                first.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        append(&dir, &journal, &[(6, "c1", 6, "demo.service")]);
        assert_eq!(
            wait_messages(&record, 4, &first).await,
            ["a1", "a2", "b1", "c1"]
        );

        // Stopped, an entry written meanwhile, started again: it resumes after c1.
        first.terminate();
        append(&dir, &journal, &[(7, "d1", 6, "demo.service")]);
        let second = Running::start(&dir, &sink_addr, 2).await;
        assert_eq!(
            wait_messages(&record, 5, &second).await,
            ["a1", "a2", "b1", "c1", "d1"]
        );
        // Nothing more comes (nothing read twice).
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            messages(&record),
            ["a1", "a2", "b1", "c1", "d1"],
            "log:\n{}",
            second.log()
        );
        assert_eq!(
            second.metric("otelcol_receiver_accepted_log_records"),
            Some(1.0)
        );
        second.terminate();
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}
