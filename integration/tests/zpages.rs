//! The `zpages` extension through the real binary: `oxcol validate` of configs with
//! zpages (the Collector's own forms, and mistakes), and one run where data goes through
//! and `/debug/pipelinez` shows it.
//!
//! Needs `target/debug/oxcol` (`cargo build -p oxcol`). Every wait is bounded; the child is
//! killed when the test ends.

mod common;

use common::*;
use oxcol_integration::load::Protocol;
use oxcol_integration::net::http_get;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `oxcol validate` on `yaml`; (success, stderr).
fn validate(name: &str, yaml: &str) -> (bool, String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("oxcol-zpages-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creates the temp dir");
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("writes the config");
    let output = Command::new(oxcol_binary())
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .expect("oxcol runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        path,
    )
}

const PIPELINES: &str = "service:
  extensions: [zpages, zpages/tls]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
";

#[test]
fn validate_accepts_the_collectors_zpages_forms_and_reports_mistakes() {
    // The Collector's own example (`zpages:` with no value), its endpoint form, expvar.
    let yaml = format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:4317\nexporters:\n  debug:\nextensions:\n  zpages:\n  zpages/tls:\n    endpoint: localhost:55680\n    expvar:\n      enabled: true\n{PIPELINES}"
    );
    let (ok, stderr, _) = validate("valid.yaml", &yaml);
    assert!(ok, "must validate:\n{yaml}\n{stderr}");

    // An empty endpoint, an unknown key, and an authenticator that is not defined.
    let yaml = format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:4317\nexporters:\n  debug:\nextensions:\n  zpages:\n    endpoint: \"\"\n  zpages/tls:\n    endpont: 127.0.0.1:1\n{PIPELINES}"
    );
    let (ok, stderr, path) = validate("invalid.yaml", &yaml);
    assert!(!ok, "must be refused:\n{yaml}");
    let at = |line: usize| format!("{}:{line}:", path.display());
    assert!(
        stderr.contains(&at(9))
            && stderr.contains("extension \"zpages\": \"endpoint\" is required"),
        "empty endpoint at line 9:\n{stderr}"
    );
    assert!(stderr.contains("endpont"), "unknown key named:\n{stderr}");

    let yaml = format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:4317\nexporters:\n  debug:\nextensions:\n  zpages:\n    auth:\n      authenticator: bearertokenauth/missing\n  zpages/tls:\n{PIPELINES}"
    );
    let (ok, stderr, _) = validate("auth.yaml", &yaml);
    assert!(!ok, "must be refused:\n{yaml}");
    assert!(
        stderr.contains(
            "auth.authenticator \"bearertokenauth/missing\" is not defined under `extensions`"
        ),
        "{stderr}"
    );
}

/// GET on a blocking thread (the helper uses std sockets), bounded by its own timeout.
async fn get(addr: String, path: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || http_get(&addr, path))
        .await
        .expect("the GET thread ends")
        .unwrap_or_else(|error| panic!("GET {path}: {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelinez_of_the_running_binary_shows_the_data_that_went_through() {
    bounded(Duration::from_secs(60), async {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let components = format!(
            "extensions:\n  zpages:\n    endpoint: {addr}\nexporters:\n  debug/<out>:\n    verbosity: basic\n"
        );
        // `service.extensions` after the pipelines (the harness writes `service:` itself).
        let pipelines = "    metrics/main:\n      receivers: [otlp]\n      exporters: [debug/<out>]\n  extensions: [zpages]\n";
        let oxcol = Oxcol::start("", &components, pipelines).await;

        let summary = send_points(&oxcol, Protocol::Grpc, 100).await;
        assert_eq!(summary.accepted_points, 100, "{summary:?}");
        let sent = oxcol
            .wait_metric("otelcol_exporter_sent_metric_points", &[("exporter", "debug/<out>")], Duration::from_secs(10), |v| v >= 100.0)
            .await;
        assert_eq!(sent, 100.0, "the debug exporter took every point\n{}", oxcol.log());

        let deadline = Instant::now() + Duration::from_secs(10);
        let page = loop {
            let (status, page) = get(addr.clone(), "/debug/pipelinez").await;
            assert_eq!(status, 200, "{page}");
            if page.contains("sent: 100") || Instant::now() >= deadline {
                break page;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        for wanted in [
            "Pipeline <code>metrics/main</code> (metrics)",
            "<code>otlp</code>",
            "accepted: 100, refused: 0",
            "<code>debug/&lt;out&gt;</code>",
            "sent: 100",
        ] {
            assert!(page.contains(wanted), "pipelinez lacks {wanted:?}:\n{page}");
        }
        assert!(!page.contains("<out>"), "ids are escaped:\n{page}");

        let (status, page) = get(addr.clone(), "/debug/servicez").await;
        assert_eq!(status, 200);
        assert!(page.contains(env!("CARGO_PKG_VERSION")) && page.contains("Uptime"), "{page}");
        let (_, page) = get(addr.clone(), "/debug/extensionz").await;
        assert!(page.contains("<code>zpages</code></td><td>zpages</td><td>running"), "{page}");
        assert_eq!(get(addr.clone(), "/debug/rpcz").await.0, 404);
    })
    .await;
}
