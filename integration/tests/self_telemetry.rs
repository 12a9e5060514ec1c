//! oxcol's own telemetry pushed over OTLP/gRPC through the OpenTelemetry Rust SDK, by the
//! real binary: self-metrics from a `readers[].periodic` reader (gzip), oxcol's log from a
//! `logs.processors[].batch` processor and its spans (a receiver's request, an exporter's
//! send) from `traces.processors`, all into the recording sink; at SIGTERM the last lines
//! (the shutdown's own) are exported before oxcol exits.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use oxcol_integration::child::spawn_logged;
use oxcol_integration::sink::{self, SinkConfig};
use prost::Message;

/// The recorded requests of one signal, decoded, in arrival order.
fn recorded<T: Message + Default>(dir: &std::path::Path, signal: &str) -> Vec<T> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(&format!("-{signal}.pb")))
        .filter_map(|p| std::fs::read(p).ok())
        .map(|body| T::decode(body.as_slice()).expect("the sink records whole requests"))
        .collect()
}

fn log_bodies(dir: &std::path::Path) -> Vec<String> {
    recorded::<ExportLogsServiceRequest>(dir, "logs")
        .iter()
        .flat_map(|r| &r.resource_logs)
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .map(|record| format!("{:?}", record.body))
        .collect()
}

// Multi-threaded: the in-process sink must keep answering while the test waits for oxcol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_metrics_log_and_spans_go_over_otlp_grpc_through_the_sdk() {
    common::bounded(Duration::from_secs(120), async {
        let dir = std::env::temp_dir().join(format!("oxcol-self-telemetry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let record = dir.join("recorded");
        let sink = sink::start(SinkConfig {
            record_dir: Some(record.clone()),
            ..SinkConfig::default()
        })
        .await
        .expect("starts the sink");
        let (grpc_port, metrics_port) = (common::free_port(), common::free_port());
        let config = format!(
            "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc_port}
exporters:
  debug:
    verbosity: basic
service:
  telemetry:
    resource:
      deployment.environment: test
    traces:
      processors:
        - batch:
            schedule_delay: 200
            exporter:
              otlp:
                protocol: grpc
                endpoint: http://{sink}
    logs:
      level: info
      processors:
        - batch:
            schedule_delay: 200
            exporter:
              otlp_grpc:
                endpoint: http://{sink}
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
                protocol: grpc
                endpoint: http://{sink}
                compression: gzip
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [debug]
",
            sink = sink.grpc_addr
        );
        std::fs::create_dir_all(&dir).unwrap();
        let config_path = dir.join("config.yaml");
        std::fs::write(&config_path, &config).unwrap();
        let log_path = dir.join("oxcol.log");
        let mut child = spawn_logged(
            Command::new(common::oxcol_binary())
                .arg("--config")
                .arg(&config_path),
            &log_path,
        );
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

        // Self-metrics arrive as OTLP, with oxcol's resource and the Collector's names.
        let deadline = Instant::now() + Duration::from_secs(30);
        let pushed = loop {
            let pushes = recorded::<ExportMetricsServiceRequest>(&record, "metrics");
            if let Some(push) = pushes.iter().find(|p| {
                p.resource_metrics
                    .iter()
                    .flat_map(|r| &r.scope_metrics)
                    .flat_map(|s| &s.metrics)
                    .any(|m| m.name == "otelcol_process_uptime")
            }) {
                break push.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no self-metrics pushed within 30 s:\n{}",
                log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let resource = pushed.resource_metrics[0].resource.clone().unwrap();
        let attribute = |key: &str| {
            resource
                .attributes
                .iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| kv.value.clone())
                .map(|v| format!("{:?}", v.value))
        };
        assert!(
            attribute("service.name").is_some_and(|v| v.contains("\"oxcol\"")),
            "{resource:?}"
        );
        assert!(
            attribute("deployment.environment").is_some_and(|v| v.contains("\"test\"")),
            "{resource:?}"
        );
        let names: Vec<&str> = pushed.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert!(names.contains(&"otelcol_process_memory_rss"), "{names:?}");
        assert!(
            names.contains(&"oxcol_server_connections_accepted"),
            "{names:?}"
        );

        // oxcol's log arrives as OTLP log records.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !log_bodies(&record)
            .iter()
            .any(|b| b.contains("oxcol is running"))
        {
            assert!(
                Instant::now() < deadline,
                "no exported log within 30 s:\n{}",
                log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // A request through the pipeline: the receiver's span and the exporter's.
        let request =
            oxcol_integration::otlp::request_pool(oxcol_core::Signal::Metrics, common::SMALL, 1)
                .remove(0);
        let request = ExportMetricsServiceRequest::decode(request).unwrap();
        let points = common::SMALL.items_per_request() as i64;
        let mut client = MetricsServiceClient::connect(format!("http://127.0.0.1:{grpc_port}"))
            .await
            .expect("connects to oxcol");
        client
            .export(request)
            .await
            .expect("oxcol accepts the request");
        let spans = || -> Vec<Span> {
            recorded::<ExportTraceServiceRequest>(&record, "traces")
                .into_iter()
                .flat_map(|r| r.resource_spans)
                .flat_map(|r| r.scope_spans)
                .flat_map(|s| s.spans)
                .collect()
        };
        let int = |span: &Span, key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(v) => {
                        Some(*v)
                    }
                    _ => None,
                })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = spans();
            let received = spans
                .iter()
                .find(|s| s.name == "receiver/otlp/MetricsReceived");
            let sent = spans.iter().find(|s| s.name == "exporter/debug/metrics");
            if let (Some(received), Some(sent)) = (received, sent) {
                assert_eq!(
                    int(received, "accepted_metric_points"),
                    Some(points),
                    "{received:?}"
                );
                assert_eq!(
                    int(received, "refused_metric_points"),
                    Some(0),
                    "{received:?}"
                );
                assert_eq!(received.kind, 2, "a server span: {received:?}");
                assert_eq!(int(sent, "sent_metric_points"), Some(points), "{sent:?}");
                assert_eq!(sent.kind, 3, "a client span: {sent:?}");
                assert!(received.end_time_unix_nano >= received.start_time_unix_nano);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no receiver and exporter spans within 30 s: {:?}\n{}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>(),
                log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // SIGTERM: the lines written while stopping are exported before oxcol exits.
        let pid = child.id();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
        let (status, child) = tokio::task::spawn_blocking(move || {
            let status = child.wait_timeout(Duration::from_secs(30));
            (status, child)
        })
        .await
        .unwrap();
        let status = status.expect("oxcol stops");
        drop(child);
        assert!(status.success(), "{status}:\n{}", log());
        assert!(
            log_bodies(&record)
                .iter()
                .any(|b| b.contains("received SIGTERM")),
            "the shutdown's own log line was exported: {:?}\n{}",
            log_bodies(&record),
            log()
        );
        assert!(!log().contains("panicked"), "{}", log());
        drop(sink);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}
