use super::*;
use serde_json::json;

fn parse(value: serde_json::Value) -> Config {
    serde_json::from_value(value).expect("decodes")
}

#[test]
fn default_args_are_the_collectors() {
    let config = parse(json!({}));
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    assert_eq!(
        config.args(),
        vec![
            "--utc",
            "--output=json",
            "--follow",
            "--lines=0",
            "--priority",
            "info"
        ]
    );
    assert_eq!(config.journalctl_path, "journalctl");
}

#[test]
fn every_filter_becomes_its_journalctl_argument() {
    let config = parse(json!({
        "start_at": "beginning",
        "units": ["ssh", "kubelet"],
        "identifiers": ["sshd"],
        "priority": "warning..emerg",
        "grep": "fail.*",
        "dmesg": true,
        "namespace": "ns",
        "directory": "/var/log/journal",
        "files": ["/ignored/because/directory.journal"],
        "matches": [{"_SYSTEMD_UNIT": "ssh"}, {"_UID": "1000", "_SYSTEMD_UNIT": "kubelet"}],
        "all": true,
        "merge": true
    }));
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    assert_eq!(
        config.args().join(" "),
        "--utc --output=json --follow --no-tail --unit ssh --unit kubelet --identifier sshd \
         --priority warning..emerg --grep fail.* --dmesg --namespace ns --directory /var/log/journal \
         _SYSTEMD_UNIT=ssh + _SYSTEMD_UNIT=kubelet _UID=1000 --all --merge"
    );
    let files = parse(json!({"files": ["/a.journal", "/b.journal"]}));
    assert!(
        files
            .args()
            .join(" ")
            .contains("--file /a.journal --file /b.journal")
    );
}

#[test]
fn resuming_reads_everything_after_the_cursor() {
    let config = parse(json!({}));
    let args = config.args_after(Some("s=abc;i=5"));
    assert!(!args.contains(&"--lines=0".to_string()), "{args:?}");
    assert!(args.contains(&"--no-tail".to_string()), "{args:?}");
    assert_eq!(&args[args.len() - 2..], ["--after-cursor", "s=abc;i=5"]);
    assert_eq!(config.args_after(Some("  ")), config.args());
    assert_eq!(config.args_after(None), config.args());
}

#[test]
fn validate_reports_every_problem() {
    let config = parse(json!({
        "start_at": "middle",
        "journalctl_path": " ",
        "root_path": "relative",
        "matches": [{"lower": "x", "GOOD_ONE": "y"}],
        "operators": [{"type": "regex_parser"}],
        "attributes": {"a": "EXPR(body)"},
        "retry_on_failure": {"initial_interval": "0s"}
    }));
    let errors = config.validate().join("\n");
    for expected in [
        "invalid value \"middle\" for parameter 'start_at'",
        "'journalctl_path' must be non-whitespace",
        "'journalctl_path' must be an absolute path when 'root_path' is set",
        "'root_path' must be an absolute path",
        "matches[0]: \"lower\" is not a valid Systemd field name",
        "operators: stanza operators are not supported",
        "a: \"EXPR(body)\": expressions are not supported",
        "retry_on_failure: initial_interval must be positive",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
    assert!(!errors.contains("GOOD_ONE"));
    let unknown = serde_json::from_value::<Config>(json!({"unit": ["x"]})).unwrap_err();
    assert!(unknown.to_string().contains("unknown field"), "{unknown}");
}

#[tokio::test]
async fn a_missing_journalctl_fails_the_start_naming_the_receiver() {
    let config = parse(json!({"journalctl_path": "/nonexistent/journalctl"}));
    let error = start(
        "journald/x",
        &config,
        None,
        Consumers::new(),
        &Registry::new(),
        CancellationToken::new(),
    )
    .await
    .err()
    .expect("fails");
    assert!(
        error.contains("receiver journald/x") && error.contains("cannot start"),
        "{error}"
    );
}

/// A fake journalctl (a shell script) that prints its arguments' cursor and two entries,
/// then exits: the receiver delivers both, stores the last cursor, and restarts the child
/// after the last cursor read.
#[tokio::test]
async fn entries_are_delivered_the_cursor_stored_and_the_child_restarted() {
    let dir = std::env::temp_dir().join(format!("oxcol-journald-unit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("journalctl");
    let log = dir.join("args.log");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" >> {log}\nn=$(wc -l < {log})\n\
             echo '{{\"MESSAGE\":\"m'$n'a\",\"__CURSOR\":\"c'$n'a\",\"__REALTIME_TIMESTAMP\":\"1\"}}'\n\
             echo 'garbage'\n\
             echo '{{\"MESSAGE\":\"m'$n'b\",\"__CURSOR\":\"c'$n'b\",\"__REALTIME_TIMESTAMP\":\"2\"}}'\n",
            log = log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let storage = Storage {
        extension: "file_storage/x".into(),
        directory: dir.join("state"),
        fsync: false,
        create_directory: true,
        directory_permissions: 0o750,
        lock_timeout: Duration::from_millis(100),
    };
    let config = parse(json!({"journalctl_path": script.to_str().unwrap()}));
    let (sender, mut pipeline) = tokio::sync::mpsc::channel::<oxcol_core::Envelope>(8);
    let mut consumers = Consumers::new();
    consumers.add(
        Signal::Logs,
        oxcol_core::PipelineInput {
            pipeline: "logs".into(),
            sender,
            admissions: vec![],
        },
    );
    let registry = Registry::new();
    let shutdown = CancellationToken::new();
    let running = start(
        "journald",
        &config,
        Some(storage.clone()),
        consumers,
        &registry,
        shutdown.clone(),
    )
    .await
    .expect("starts");
    let mut messages = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while messages.len() < 4 && tokio::time::Instant::now() < deadline {
        let Ok(Some(mut envelope)) =
            tokio::time::timeout(Duration::from_secs(5), pipeline.recv()).await
        else {
            break;
        };
        for resource in envelope.batch.logs_mut().unwrap().iter() {
            for record in &resource.scope_logs[0].log_records {
                let Some(opentelemetry_proto::tonic::common::v1::any_value::Value::KvlistValue(
                    body,
                )) = record.body.as_ref().and_then(|b| b.value.clone())
                else {
                    panic!("not a map body")
                };
                let message = body.values.iter().find(|kv| kv.key == "MESSAGE").unwrap();
                messages.push(format!("{:?}", message.value.as_ref().unwrap().value));
            }
        }
        let _ = envelope.ack.send(Ok(()));
    }
    shutdown.cancel();
    for task in running.tasks {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(messages.len(), 4, "{messages:?}");
    assert!(
        messages[0].contains("m1a") && messages[1].contains("m1b"),
        "{messages:?}"
    );
    assert!(
        messages[2].contains("m2a"),
        "the restarted child's entries: {messages:?}"
    );
    let args = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = args.lines().collect();
    assert!(!lines[0].contains("--after-cursor"), "{args}");
    assert!(
        lines[1].ends_with("--after-cursor c1b"),
        "restarted after the last cursor read: {args}"
    );
    let malformed = registry.counter(
        "oxcol_receiver_journald_malformed_entries",
        "",
        &[("receiver", "journald")],
    );
    assert!(
        (2..=3).contains(&malformed.get()),
        "one garbage line per child run: {}",
        malformed.get()
    );
    let restarts = registry.counter(
        "oxcol_receiver_journald_restarts",
        "",
        &[("receiver", "journald")],
    );
    assert!(restarts.get() >= 1);
    // The stored cursor is the last one the pipeline accepted.
    let (_, stored) = StateFile::open(&storage, TYPE, "journald").unwrap();
    let stored = String::from_utf8(stored.unwrap()).unwrap();
    assert!(stored == "c2b" || stored == "c3b", "{stored}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A refused batch is sent again (same records) after `initial_interval`, and its cursor
/// is stored only once the pipeline accepted it.
#[tokio::test]
async fn a_refused_batch_is_retried_and_only_then_stored() {
    let dir = std::env::temp_dir().join(format!("oxcol-journald-retry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("journalctl");
    // One entry, then wait (as a following journalctl does).
    std::fs::write(
        &script,
        "#!/bin/sh\necho '{\"MESSAGE\":\"only\",\"__CURSOR\":\"c1\",\"__REALTIME_TIMESTAMP\":\"1\"}'\nexec sleep 30\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let storage = Storage {
        extension: "file_storage/x".into(),
        directory: dir.join("state"),
        fsync: true,
        create_directory: true,
        directory_permissions: 0o750,
        lock_timeout: Duration::from_millis(100),
    };
    let config = parse(json!({
        "journalctl_path": script.to_str().unwrap(),
        "retry_on_failure": {"initial_interval": "20ms", "max_interval": "50ms"}
    }));
    let (sender, mut pipeline) = tokio::sync::mpsc::channel::<oxcol_core::Envelope>(8);
    let mut consumers = Consumers::new();
    consumers.add(
        Signal::Logs,
        oxcol_core::PipelineInput {
            pipeline: "logs".into(),
            sender,
            admissions: vec![],
        },
    );
    let registry = Registry::new();
    let shutdown = CancellationToken::new();
    let running = start(
        "journald/r",
        &config,
        Some(storage.clone()),
        consumers,
        &registry,
        shutdown.clone(),
    )
    .await
    .expect("starts");
    let cursor_file = dir.join("state").join("receiver_journald_journald_r");
    for attempt in 0..3 {
        let envelope = tokio::time::timeout(Duration::from_secs(10), pipeline.recv())
            .await
            .expect("a delivery")
            .expect("the receiver runs");
        assert_eq!(envelope.batch.items(), 1);
        if attempt < 2 {
            assert!(!cursor_file.exists(), "no cursor before acceptance");
            let _ = envelope
                .ack
                .send(Err(oxcol_core::Refusal::overloaded("full")));
        } else {
            let _ = envelope.ack.send(Ok(()));
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&cursor_file).ok().as_deref() != Some("c1") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cursor was not stored"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let accepted = registry.counter(
        "otelcol_receiver_accepted_log_records",
        "",
        &[("receiver", "journald/r"), ("transport", "")],
    );
    assert_eq!(accepted.get(), 1);
    shutdown.cancel();
    for task in running.tasks {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
