//! The Collector config features that real configs need, through the real binary in one
//! run: a `${file:...}` fragment and a `${env:...}` port inside an endpoint with a host
//! name, CORS on the OTLP/HTTP receiver, the `logging` exporter, the `pprof` extension
//! (profiles read back by `go tool pprof`), and self-metrics pushed over OTLP by a
//! `readers[].periodic` reader (here into oxcol's own receiver, so they come out of the
//! logging exporter).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use oxcol_integration::child::spawn_logged;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.0 exchange; the whole answer (head and body) as bytes.
async fn http(port: u16, request: &str) -> Result<Vec<u8>, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        Ok(answer)
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| "no answer within 30 s".to_string())?
}

fn head_and_body(answer: &[u8]) -> (String, Vec<u8>) {
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    (
        String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase(),
        answer[end + 4..].to_vec(),
    )
}

/// `go tool pprof -top FILE`, or None when Go is not installed.
fn pprof_top(file: &Path) -> Option<String> {
    let output = Command::new("go")
        .args(["tool", "pprof", "-top"])
        .arg(file)
        .output()
        .ok()?;
    assert!(
        output.status.success(),
        "go tool pprof failed on {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test]
async fn real_config_features_work_end_to_end() {
    common::bounded(Duration::from_secs(120), async {
        let (http_port, pprof_port, metrics_port) = (common::free_port(), common::free_port(), common::free_port());
        let dir = std::env::temp_dir().join(format!("oxcol-config-gaps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cors.yaml"), "allowed_origins:\n  - http://*.example.com\nmax_age: 7_200\n").unwrap();
        let config = format!(
            "receivers:
  otlp:
    protocols:
      http:
        endpoint: localhost:${{env:OXCOL_TEST_HTTP_PORT}}
        cors: ${{file:{cors}}}
exporters:
  logging:
    loglevel: info
    sampling_thereafter: 1
extensions:
  pprof:
    endpoint: 127.0.0.1:{pprof_port}
service:
  extensions: [pprof]
  telemetry:
    resource:
      deployment.environment: test
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {metrics_port}
        - periodic:
            interval: 300
            exporter:
              otlp:
                protocol: http/protobuf
                endpoint: http://localhost:{http_port}
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [logging]
",
            cors = dir.join("cors.yaml").display()
        );
        let config_path = dir.join("config.yaml");
        std::fs::write(&config_path, &config).unwrap();
        let log_path = dir.join("oxcol.log");
        let validate = Command::new(common::oxcol_binary())
            .args(["validate", "--config"])
            .arg(&config_path)
            .env("OXCOL_TEST_HTTP_PORT", http_port.to_string())
            .output()
            .unwrap();
        assert!(validate.status.success(), "validate: {}", String::from_utf8_lossy(&validate.stderr));
        let _child = spawn_logged(
            Command::new(common::oxcol_binary()).arg("--config").arg(&config_path).env("OXCOL_TEST_HTTP_PORT", http_port.to_string()),
            &log_path,
        );
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let deadline = Instant::now() + common::READY_TIMEOUT;
        while http(pprof_port, "GET /debug/pprof/ HTTP/1.0\r\n\r\n").await.is_err() || http(http_port, "GET / HTTP/1.0\r\n\r\n").await.is_err() {
            assert!(Instant::now() < deadline, "oxcol did not start:\n{}", log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // CORS: the preflight is answered from the file fragment's policy.
        let (head, _) = head_and_body(
            &http(http_port, "OPTIONS /v1/metrics HTTP/1.0\r\nOrigin: http://app.example.com\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n").await.unwrap(),
        );
        assert!(head.starts_with("http/1.0 204") || head.starts_with("http/1.1 204"), "{head}");
        assert!(head.contains("access-control-allow-origin: http://app.example.com"), "{head}");
        assert!(head.contains("access-control-max-age: 7200"), "{head}");
        let (head, _) = head_and_body(&http(http_port, "OPTIONS /v1/metrics HTTP/1.0\r\nOrigin: http://evil.test\r\nAccess-Control-Request-Method: POST\r\n\r\n").await.unwrap());
        assert!(!head.contains("access-control-allow-origin"), "{head}");

        // pprof: a CPU profile while oxcol works, and the heap, both readable by pprof.
        let busy = tokio::spawn(async move {
            let body = r#"{"resourceMetrics":[]}"#;
            for _ in 0..400 {
                let request = format!("POST /v1/metrics HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                let _ = http(http_port, &request).await;
            }
        });
        let (head, cpu) = head_and_body(&http(pprof_port, "GET /debug/pprof/profile?seconds=2 HTTP/1.0\r\n\r\n").await.unwrap());
        busy.await.unwrap();
        assert!(head.contains(" 200"), "{head}");
        assert_eq!(&cpu[..2], &[0x1f, 0x8b], "a gzip-compressed profile, as Go serves it");
        let (head, heap) = head_and_body(&http(pprof_port, "GET /debug/pprof/heap HTTP/1.0\r\n\r\n").await.unwrap());
        assert!(head.contains(" 200"), "{head}");
        std::fs::write(dir.join("cpu.pb.gz"), &cpu).unwrap();
        std::fs::write(dir.join("heap.pb.gz"), &heap).unwrap();
        match (pprof_top(&dir.join("cpu.pb.gz")), pprof_top(&dir.join("heap.pb.gz"))) {
            (Some(cpu), Some(heap)) => {
                assert!(cpu.contains("Type: cpu"), "{cpu}");
                assert!(cpu.contains("Duration: 2"), "{cpu}");
                assert!(heap.contains("Type: inuse_space") && heap.contains("oxcol heap in use"), "{heap}");
            }
            _ => eprintln!("go is not installed: profiles checked for their gzip framing only"),
        }

        // The periodic reader pushes self-metrics into the receiver; the logging exporter
        // (verbosity normal from loglevel: info) prints their names.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !log().contains("otelcol_receiver_accepted_metric_points") {
            assert!(Instant::now() < deadline, "no pushed self-metrics in the log:\n{}", log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(log().contains("exporter=logging"), "the logging exporter runs as debug");
    })
    .await;
}
