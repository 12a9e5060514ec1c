//! `file` exporter tests on real files in a temporary directory.

use super::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use oxcol_core::{Signal, testdata};
use prost::Message;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "oxcol-fileexp-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create the test directory");
        TempDir(path)
    }

    fn file(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn config(path: &str) -> Config {
    Config {
        path: path.to_string(),
        ..Config::default()
    }
}

/// A unique exporter id per test (files are shared by id within the process).
fn id(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("file/{tag}{}", N.fetch_add(1, Ordering::SeqCst))
}

fn export(exporter: &FileExporter, batch: Batch) -> Result<ExportOutcome, ExportError> {
    futures::executor::block_on(exporter.export(batch))
}

/// Reads length-prefixed messages (4-byte big-endian length, then the bytes).
fn length_prefixed_messages(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        assert!(rest.len() >= 4, "a truncated length prefix");
        let length = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        assert!(rest.len() >= 4 + length, "a truncated message");
        messages.push(rest[4..4 + length].to_vec());
        rest = &rest[4 + length..];
    }
    messages
}

#[test]
fn json_lines_round_trip_every_signal_into_one_shared_file() {
    let dir = TempDir::new("json");
    let path = dir.file("out.json");
    let config = config(&path);
    let id = id("json");
    let metrics = testdata::metrics_request(2, 3, 4);
    let traces = testdata::trace_request(2, 5);
    let logs = testdata::logs_request(1, 3);
    {
        // One exporter per signal, as the agent builds them; they share the file.
        let for_metrics = FileExporter::new(&id, &config).expect("open");
        let for_traces = FileExporter::new(&id, &config).expect("open");
        let for_logs = FileExporter::new(&id, &config).expect("open");
        assert!(Arc::ptr_eq(&for_metrics.file, &for_traces.file));
        export(
            &for_metrics,
            Batch::from_metrics(metrics.resource_metrics.clone()),
        )
        .expect("metrics written");
        // Encoded input is decoded for JSON.
        export(
            &for_traces,
            Batch::from_encoded(Signal::Traces, traces.encode_to_vec().into()).expect("valid"),
        )
        .expect("traces written");
        export(&for_logs, Batch::from_logs(logs.resource_logs.clone())).expect("logs written");
    }
    let text = fs::read_to_string(&path).expect("the file");
    assert!(text.ends_with('\n'));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "one line per request");
    let metrics_back: ExportMetricsServiceRequest =
        serde_json::from_str(lines[0]).expect("OTLP/JSON metrics");
    assert_eq!(metrics_back, metrics);
    let traces_back: ExportTraceServiceRequest =
        serde_json::from_str(lines[1]).expect("OTLP/JSON traces");
    assert_eq!(traces_back, traces);
    let logs_back: ExportLogsServiceRequest =
        serde_json::from_str(lines[2]).expect("OTLP/JSON logs");
    assert_eq!(logs_back, logs);
    // The OTLP/JSON mapping: lowerCamelCase keys, ids in hex.
    assert!(lines[1].starts_with("{\"resourceSpans\":["));
    let span_id = hex(&traces.resource_spans[0].scope_spans[0].spans[0].span_id);
    assert!(
        lines[1].contains(&format!("\"spanId\":\"{span_id}\"")),
        "{}",
        &lines[1][..300.min(lines[1].len())]
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn proto_is_length_prefixed_and_round_trips() {
    let dir = TempDir::new("proto");
    let path = dir.file("out.pb");
    let config = Config {
        format: FORMAT_PROTO.to_string(),
        ..config(&path)
    };
    let first = testdata::metrics_request(1, 2, 3);
    let second = testdata::metrics_request(3, 1, 1);
    {
        let exporter = FileExporter::new(&id("proto"), &config).expect("open");
        let encoded = first.encode_to_vec();
        export(
            &exporter,
            Batch::from_encoded(Signal::Metrics, encoded.into()).expect("valid"),
        )
        .expect("written");
        export(
            &exporter,
            Batch::from_metrics(second.resource_metrics.clone()),
        )
        .expect("written");
    }
    let bytes = fs::read(&path).expect("the file");
    let messages = length_prefixed_messages(&bytes);
    assert_eq!(messages.len(), 2);
    assert_eq!(
        ExportMetricsServiceRequest::decode(&messages[0][..]).expect("proto"),
        first
    );
    assert_eq!(
        ExportMetricsServiceRequest::decode(&messages[1][..]).expect("proto"),
        second
    );
}

#[test]
fn zstd_compresses_each_message_and_round_trips() {
    let dir = TempDir::new("zstd");
    for format in [FORMAT_JSON, FORMAT_PROTO] {
        let path = dir.file(&format!("out.{format}.zst"));
        let config = Config {
            format: format.to_string(),
            compression: COMPRESSION_ZSTD.to_string(),
            ..config(&path)
        };
        let traces = testdata::trace_request(2, 20);
        {
            let exporter = FileExporter::new(&id("zstd"), &config).expect("open");
            for _ in 0..2 {
                export(&exporter, Batch::from_traces(traces.resource_spans.clone()))
                    .expect("written");
            }
        }
        let bytes = fs::read(&path).expect("the file");
        let messages = length_prefixed_messages(&bytes);
        assert_eq!(messages.len(), 2, "{format}: one frame per message");
        for message in messages {
            let plain = zstd::decode_all(&message[..]).expect("a zstd frame");
            let back: ExportTraceServiceRequest = if format == FORMAT_JSON {
                serde_json::from_slice(&plain).expect("OTLP/JSON")
            } else {
                ExportTraceServiceRequest::decode(&plain[..]).expect("proto")
            };
            assert_eq!(back, traces, "{format}");
        }
    }
}

fn lines_in(path: &str) -> usize {
    fs::read_to_string(path).expect("the file").lines().count()
}

#[test]
fn append_false_truncates_and_append_true_keeps() {
    let dir = TempDir::new("append");
    let path = dir.file("out.json");
    let batch = || Batch::from_logs(testdata::logs_request(1, 2).resource_logs);
    let write_once = |config: &Config| {
        let exporter = FileExporter::new(&id("append"), config).expect("open");
        export(&exporter, batch()).expect("written");
    };
    write_once(&config(&path));
    write_once(&config(&path));
    assert_eq!(lines_in(&path), 1, "append: false truncates at start");
    let appending = Config {
        append: true,
        ..config(&path)
    };
    write_once(&appending);
    write_once(&appending);
    assert_eq!(lines_in(&path), 3, "append: true keeps what was there");
    // Truncation happens at start even before anything is written.
    drop(FileExporter::new(&id("append"), &config(&path)).expect("open"));
    assert_eq!(fs::metadata(&path).expect("the file").len(), 0);
}

fn backups_of(dir: &TempDir, prefix: &str, ext: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(&dir.0)
        .expect("the directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.starts_with(prefix) && n.ends_with(ext))
        .collect();
    names.sort();
    names
}

/// The lumberjack backup pattern `<stem>-2006-01-02T15-04-05.000<ext>`.
fn is_backup_name(name: &str, stem: &str, ext: &str) -> bool {
    let Some(stamp) = name
        .strip_prefix(&format!("{stem}-"))
        .and_then(|r| r.strip_suffix(ext))
    else {
        return false;
    };
    stamp.len() == 23
        && stamp
            .bytes()
            .zip("dddd-dd-ddTdd-dd-dd.ddd".bytes())
            .all(|(b, l)| {
                if l == b'd' {
                    b.is_ascii_digit()
                } else {
                    b == l
                }
            })
}

#[test]
fn rotation_renames_with_lumberjack_names_and_keeps_max_backups() {
    let dir = TempDir::new("rotate");
    let path = dir.file("data.log");
    let rotation = RotationPolicy::new(1, 0, 2, false);
    let message = vec![b'x'; 400 * 1024];
    {
        let mut sink =
            Sink::open(Path::new(&path), false, Some(rotation), None).expect("open the sink");
        // 1 MiB holds two 400 KiB messages; ten messages rotate four times.
        for _ in 0..10 {
            sink.write_message(&[&message, b"\n"]).expect("written");
        }
        let too_large = vec![b'y'; 1024 * 1024 + 1];
        assert!(matches!(
            sink.write_message(&[&too_large]),
            Err(WriteError::TooLarge { .. })
        ));
    }
    let backups: Vec<String> = backups_of(&dir, "data-", ".log");
    assert_eq!(backups.len(), 2, "max_backups: 2 keeps two: {backups:?}");
    for name in &backups {
        assert!(is_backup_name(name, "data", ".log"), "{name}");
        let size = fs::metadata(dir.0.join(name)).expect("a backup").len();
        assert_eq!(size, 2 * (400 * 1024 + 1), "a backup holds whole messages");
    }
    assert_eq!(
        fs::metadata(&path).expect("the current file").len(),
        2 * (400 * 1024 + 1)
    );
}

#[test]
fn rotation_deletes_backups_older_than_max_days_and_continues_the_file() {
    let dir = TempDir::new("maxdays");
    let path = dir.file("data.json");
    fs::write(&path, b"existing\n").expect("an existing file");
    // A backup named 10 days ago, and a file that only looks alike.
    let old = SystemTime::now() - Duration::from_secs(10 * 86_400);
    let old_backup = writer::backup_name(Path::new(&path), old, false);
    fs::write(&old_backup, b"old").expect("an old backup");
    fs::write(dir.0.join("data-notatime.json"), b"other").expect("another file");
    let config = Config {
        rotation: Some(Rotation {
            max_megabytes: 1,
            max_days: 1,
            max_backups: 0,
            localtime: false,
        }),
        ..config(&path)
    };
    {
        let exporter = FileExporter::new(&id("maxdays"), &config).expect("open");
        // One request bigger than half a MiB, twice: the second rotates.
        let logs = logs_with_body_of(600 * 1024);
        for _ in 0..2 {
            export(&exporter, Batch::from_logs(logs.resource_logs.clone())).expect("written");
        }
    }
    assert!(!old_backup.exists(), "older than max_days: deleted");
    assert!(dir.0.join("data-notatime.json").exists(), "not a backup");
    let backups = backups_of(&dir, "data-", ".json");
    let rotated: Vec<&String> = backups
        .iter()
        .filter(|n| is_backup_name(n, "data", ".json"))
        .collect();
    assert_eq!(rotated.len(), 1, "{backups:?}");
    let first = fs::read_to_string(dir.0.join(rotated[0])).expect("the backup");
    assert!(
        first.starts_with("existing\n"),
        "with rotation the existing file is continued"
    );
    assert_eq!(lines_in(&path), 1);
}

/// One log record whose body is a string of `bytes` bytes.
fn logs_with_body_of(bytes: usize) -> ExportLogsServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value};
    let mut logs = testdata::logs_request(1, 1);
    logs.resource_logs[0].scope_logs[0].log_records[0].body = Some(AnyValue {
        value: Some(Value::StringValue("z".repeat(bytes))),
    });
    logs
}

#[test]
fn a_request_larger_than_the_rotation_size_is_a_permanent_error() {
    let dir = TempDir::new("toolarge");
    let path = dir.file("data.pb");
    let config = Config {
        format: FORMAT_PROTO.to_string(),
        rotation: Some(Rotation {
            max_megabytes: 1,
            ..Rotation::default()
        }),
        ..config(&path)
    };
    let exporter = FileExporter::new(&id("toolarge"), &config).expect("open");
    let big = logs_with_body_of(1100 * 1024);
    assert!(big.encoded_len() > 1024 * 1024);
    let error = export(&exporter, Batch::from_logs(big.resource_logs)).unwrap_err();
    assert!(
        matches!(&error, ExportError::Permanent { reason } if reason.contains("exceeds the maximum file size")),
        "{error}"
    );
}

#[test]
fn a_missing_directory_fails_at_start_unless_create_directory() {
    let dir = TempDir::new("mkdir");
    let path = dir.file("a/b/out.json");
    let error = FileExporter::new(&id("mkdir"), &config(&path))
        .err()
        .expect("a missing directory fails");
    assert!(error.contains("cannot open"), "{error}");
    assert!(error.contains("create_directory: true"), "{error}");
    let creating = Config {
        create_directory: true,
        directory_permissions: "0700".to_string(),
        ..config(&path)
    };
    assert!(creating.validate().is_empty());
    drop(FileExporter::new(&id("mkdir"), &creating).expect("creates the directory"));
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(dir.0.join("a/b"))
        .expect("created")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    assert!(Path::new(&path).exists());
}

#[tokio::test]
async fn buffered_data_is_flushed_every_flush_interval() {
    let dir = TempDir::new("flush");
    let path = dir.file("out.json");
    let config = Config {
        flush_interval: oxcol_core::GoDuration::from_millis(50),
        ..config(&path)
    };
    let exporter = FileExporter::new(&id("flush"), &config).expect("open");
    exporter
        .export(Batch::from_logs(testdata::logs_request(1, 1).resource_logs))
        .await
        .expect("written");
    assert_eq!(
        fs::metadata(&path).expect("the file").len(),
        0,
        "buffered, not yet flushed"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while fs::metadata(&path).expect("the file").len() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "not flushed within 5s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lines_in(&path), 1);
}

fn decoded(json: serde_json::Value) -> Config {
    serde_json::from_value(json).expect("a file exporter config")
}

#[test]
fn config_defaults_and_the_collector_validation_rules() {
    let defaults = decoded(serde_json::json!({"path": "out.json"}));
    assert!(defaults.validate().is_empty());
    assert_eq!(defaults.format, FORMAT_JSON);
    assert_eq!(
        defaults.rotation, None,
        "no rotation unless `rotation:` is written"
    );
    assert_eq!(defaults.flush_every(), Duration::from_secs(1));
    assert!(!defaults.length_prefixed());
    // `rotation:` with no value is rotation with the defaults.
    let rotation = decoded(serde_json::json!({"path": "out.json", "rotation": null}));
    assert_eq!(rotation.rotation, Some(Rotation::default()));
    assert_eq!(
        Rotation::default(),
        Rotation {
            max_megabytes: 100,
            max_days: 0,
            max_backups: 100,
            localtime: false
        }
    );
    let partial = decoded(serde_json::json!({"path": "x", "rotation": {"max_megabytes": 10}}));
    assert_eq!(partial.rotation.expect("set").max_backups, 100);
    assert_eq!(
        decoded(serde_json::json!({"path": "x", "flush_interval": "0s"})).flush_every(),
        Duration::from_secs(1)
    );
    assert!(decoded(serde_json::json!({"path": "x", "format": "proto"})).length_prefixed());
    assert!(decoded(serde_json::json!({"path": "x", "compression": "zstd"})).length_prefixed());

    let problems = |json: serde_json::Value| decoded(json).validate().join("\n");
    assert!(problems(serde_json::json!({})).contains("path must be non-empty"));
    assert!(
        problems(serde_json::json!({"path": "x", "append": true, "compression": "zstd"}))
            .contains("append and compression")
    );
    assert!(
        problems(serde_json::json!({"path": "x", "append": true, "rotation": null}))
            .contains("append and rotation")
    );
    assert!(problems(serde_json::json!({"path": "x", "format": "xml"})).contains("format \"xml\""));
    assert!(
        problems(serde_json::json!({"path": "x", "compression": "gzip"}))
            .contains("compression \"gzip\"")
    );
    let encoding = problems(serde_json::json!({"path": "x", "encoding": "otlp_encoding/1"}));
    assert!(
        encoding.contains("\"otlp_encoding/1\"") && encoding.contains("no encoding extensions"),
        "{encoding}"
    );
    let group_by = problems(serde_json::json!({"path": "x/*.json", "group_by": {"enabled": true}}));
    assert!(
        group_by.contains("not supported by oxcol yet"),
        "{group_by}"
    );
    assert!(!group_by.contains("exactly one *"), "{group_by}");
    assert!(
        problems(serde_json::json!({"path": "x.json", "group_by": {"enabled": true}}))
            .contains("exactly one *")
    );
    assert!(
        problems(serde_json::json!({"path": "*.json", "group_by": {"enabled": true}}))
            .contains("must not start with *")
    );
    assert!(problems(serde_json::json!({"path": "x", "group_by": {"enabled": false}})).is_empty());
    assert!(
        problems(serde_json::json!({"path": "x", "directory_permissions": "0755"}))
            .contains("requires create_directory")
    );
    assert!(
        problems(serde_json::json!({"path": "x", "create_directory": true, "directory_permissions": "0x9"}))
            .contains("valid octal")
    );
    assert!(
        problems(serde_json::json!({"path": "x", "create_directory": true, "directory_permissions": "4755"}))
            .contains("invalid bits")
    );
    // Every problem at once.
    let all = decoded(serde_json::json!({"format": "xml", "compression": "lz4"})).validate();
    assert_eq!(all.len(), 3, "{all:?}");
    // Unknown keys are errors.
    assert!(
        serde_json::from_value::<Config>(serde_json::json!({"path": "x", "paths": "y"})).is_err()
    );
}
