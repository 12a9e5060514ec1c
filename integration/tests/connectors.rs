//! Black-box tests of connectors in the `oxcol` binary: `oxcol validate` reports every
//! broken connector topology at its position; OTLP traces in -> `spanmetrics` -> a metrics
//! pipeline and a `routing` table -> two trace pipelines, each to its own sink; and the
//! acknowledgement rule across a connector (a full queue downstream is a refusal to the
//! client upstream).
//!
//! Needs `target/debug/oxcol` (`cargo build -p oxcol`). Every wait is bounded.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use oxcol_integration::sink::{self, SinkConfig};
use prost::Message;
use std::process::Command;
use std::time::Duration;

const TEST_LIMIT: Duration = Duration::from_secs(60);

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// A resource of `service` with `spans` server spans of 5 ms.
fn resource_spans(service: &str, spans: usize) -> ResourceSpans {
    let start = 1_700_000_000_000_000_000u64;
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![string_attribute("service.name", service)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: (0..spans)
                .map(|i| Span {
                    trace_id: vec![7; 16],
                    span_id: vec![i as u8 + 1; 8],
                    name: format!("GET /{service}"),
                    kind: span::SpanKind::Server as i32,
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + 5_000_000,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn trace_client(oxcol: &Oxcol) -> TraceServiceClient<tonic::transport::Channel> {
    TraceServiceClient::connect(format!("http://{}", oxcol.grpc_endpoint()))
        .await
        .expect("connects to oxcol's OTLP gRPC receiver")
}

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("oxcol-connectors-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creates the temp dir");
    let path = dir.join("c.yaml");
    std::fs::write(&path, text).expect("writes the config");
    path
}

fn validate(path: &std::path::Path) -> (bool, String) {
    let output = Command::new(oxcol_binary())
        .args(["validate", "--config"])
        .arg(path)
        .output()
        .expect("oxcol runs");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn validate_reports_every_connector_topology_error_at_its_position() {
    let text = "\
receivers:
  otlp:
    protocols:
      grpc:
exporters:
  debug:
connectors:
  forward:
  forward/loop:
  spanmetrics:
  count/unused:
service:
  pipelines:
    traces:
      receivers: [otlp, forward/loop]
      exporters: [forward]
    traces/2:
      receivers: [forward]
      exporters: [forward/loop, debug]
    logs:
      receivers: [otlp]
      exporters: [spanmetrics]
    metrics:
      receivers: [spanmetrics]
      exporters: [debug]
";
    let path = write_config("topology", text);
    let (ok, output) = validate(&path);
    assert!(!ok, "{output}");
    let file = path.display().to_string();
    let expected = [
        // One-sided use: spanmetrics is exported by a logs pipeline only (wrong signal pair),
        // so the metrics pipeline that receives from it has no supported exporter pipeline.
        format!(
            "{file}:22:19: connector \"spanmetrics\" used as exporter in [logs] pipeline but not used in any supported receiver pipeline; spanmetrics takes no logs data"
        ),
        format!(
            "{file}:24:19: connector \"spanmetrics\" used as receiver in [metrics] pipeline but not used in any supported exporter pipeline; add it to the exporters of a traces pipeline"
        ),
        format!(
            "{file}:16:19: cycle detected: pipeline \"traces\" -> connector \"forward\" -> pipeline \"traces/2\" -> connector \"forward/loop\" -> pipeline \"traces\"; data would loop forever: remove one of these connectors from a pipeline"
        ),
    ];
    for line in &expected {
        assert!(
            output.contains(line.as_str()),
            "missing {line:?} in:\n{output}"
        );
    }
    assert_eq!(
        output.lines().filter(|l| l.starts_with(&file)).count(),
        expected.len(),
        "exactly these errors (the unused count/unused is allowed):\n{output}"
    );

    // A good topology (with an unused connector, as the Collector allows) validates.
    let good = "\
receivers:
  otlp:
    protocols:
      grpc:
exporters:
  debug:
connectors:
  forward:
  count:
  routing:
    table:
      - statement: route() where attributes[\"service.name\"] == \"a\"
        pipelines: [traces/a]
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [routing]
    traces/a:
      receivers: [routing]
      exporters: [debug]
    logs:
      receivers: [otlp]
      exporters: [count]
    metrics:
      receivers: [count]
      exporters: [debug]
";
    let (ok, output) = validate(&write_config("good", good));
    assert!(ok, "{output}");

    // routing names a pipeline that does not receive from it.
    let (ok, output) = validate(&write_config(
        "routing",
        &good.replace("pipelines: [traces/a]", "pipelines: [traces/nope]"),
    ));
    assert!(!ok);
    assert!(output.contains("connector \"routing\": routes to pipeline \"traces/nope\", which does not list \"routing\" in its receivers"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_feed_spanmetrics_and_a_routing_table() {
    bounded(TEST_LIMIT, async {
        let record = std::env::temp_dir().join(format!("oxcol-connectors-{}-record", std::process::id()));
        let _ = std::fs::remove_dir_all(&record);
        std::fs::create_dir_all(&record).expect("creates the record dir");
        let metrics_sink = sink::start(SinkConfig { record_dir: Some(record.clone()), ..SinkConfig::default() }).await.expect("starts the metrics sink");
        let sink_a = start_sink().await;
        let sink_b = start_sink().await;
        let components = format!(
            "exporters:\n{}{}{}connectors:\n  spanmetrics:\n    metrics_flush_interval: 200ms\n  routing:\n    default_pipelines: [traces/b]\n    table:\n      - condition: attributes[\"service.name\"] == \"checkout\"\n        pipelines: [traces/a]\n",
            otlp_exporter("otlp/metrics", &metrics_sink, ""),
            otlp_exporter("otlp/a", &sink_a, ""),
            otlp_exporter("otlp/b", &sink_b, ""),
        );
        let pipelines = "    traces:\n      receivers: [otlp]\n      exporters: [spanmetrics, routing]\n    traces/a:\n      receivers: [routing]\n      exporters: [otlp/a]\n    traces/b:\n      receivers: [routing]\n      exporters: [otlp/b]\n    metrics:\n      receivers: [spanmetrics]\n      exporters: [otlp/metrics]\n";
        let oxcol = Oxcol::start("", &components, pipelines).await;

        let request = ExportTraceServiceRequest { resource_spans: vec![resource_spans("checkout", 3), resource_spans("cart", 2)] };
        trace_client(&oxcol).await.export(request).await.expect("oxcol accepts the traces");

        let a = wait_sink(&sink_a, Duration::from_secs(10), |s| s.traces.items >= 3).await;
        let b = wait_sink(&sink_b, Duration::from_secs(10), |s| s.traces.items >= 2).await;
        assert_eq!(a.traces.items, 3, "checkout's spans go to traces/a: {a:?}");
        assert_eq!(b.traces.items, 2, "the rest goes to the default traces/b: {b:?}");

        // spanmetrics flushes every 200ms (cumulative): wait for a flush with all 5 calls.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let calls = loop {
            let mut latest: Vec<(String, i64)> = Vec::new();
            let mut files: Vec<_> = std::fs::read_dir(&record).expect("reads the record dir").filter_map(Result::ok).map(|e| e.path()).collect();
            files.sort();
            if let Some(last) = files.last() {
                let body = std::fs::read(last).expect("reads a recorded request");
                let request = ExportMetricsServiceRequest::decode(body.as_slice()).expect("a metrics request");
                for resource in &request.resource_metrics {
                    for metric in resource.scope_metrics.iter().flat_map(|s| &s.metrics) {
                        if metric.name != "traces.span.metrics.calls" {
                            continue;
                        }
                        let Some(metric::Data::Sum(sum)) = &metric.data else { panic!("calls is a Sum") };
                        for point in &sum.data_points {
                            let service = point.attributes.iter().find(|kv| kv.key == "service.name").and_then(|kv| kv.value.as_ref()).and_then(|v| match &v.value {
                                Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                                _ => None,
                            });
                            let value = match point.value {
                                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(i)) => i,
                                _ => 0,
                            };
                            latest.push((service.unwrap_or_default(), value));
                        }
                    }
                }
            }
            latest.sort();
            if latest.iter().map(|(_, n)| n).sum::<i64>() == 5 || std::time::Instant::now() >= deadline {
                break latest;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(calls, vec![("cart".to_string(), 2), ("checkout".to_string(), 3)], "spanmetrics calls by service");

        // Self-telemetry: every span passed through both connectors.
        let consumed = oxcol
            .wait_metric("otelcol_connector_consumed_items", &[("otelcol_component_id", "routing"), ("otelcol_component_outcome", "success")], Duration::from_secs(5), |v| v >= 5.0)
            .await;
        assert_eq!(consumed, 5.0, "{}", oxcol.metrics_text().await);
        let produced_a = oxcol.metric("otelcol_connector_produced_items", &[("otelcol_component_id", "routing"), ("otelcol_pipeline_id", "traces/a")]).await;
        assert_eq!(produced_a, 3.0);
        assert_eq!(oxcol.metric("otelcol_connector_consumed_items", &[("otelcol_component_id", "spanmetrics"), ("otelcol_component_outcome", "success")]).await, 5.0);
        let _ = std::fs::remove_dir_all(&record);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_downstream_of_a_connector_is_a_refusal_upstream() {
    bounded(TEST_LIMIT, async {
        let sink = start_sink().await;
        set_mode(&sink, serde_json::json!({ "down": true }));
        // One batch fits the downstream queue; its only consumer is stuck retrying it.
        let components = format!(
            "exporters:\n{}connectors:\n  forward:\n",
            otlp_exporter("otlp", &sink, "    sending_queue:\n      queue_size: 1\n      num_consumers: 1\n    retry_on_failure:\n      initial_interval: 5s\n      max_elapsed_time: 60s\n")
        );
        let pipelines = "    traces:\n      receivers: [otlp]\n      exporters: [forward]\n    traces/out:\n      receivers: [forward]\n      exporters: [otlp]\n";
        let oxcol = Oxcol::start("", &components, pipelines).await;
        let mut client = trace_client(&oxcol).await;
        let mut refused = None;
        let mut accepted = 0;
        for _ in 0..10 {
            match client.export(ExportTraceServiceRequest { resource_spans: vec![resource_spans("s", 1)] }).await {
                Ok(_) => accepted += 1,
                Err(status) => {
                    refused = Some(status);
                    break;
                }
            }
        }
        let status = refused.unwrap_or_else(|| panic!("oxcol accepted {accepted} requests although the queue behind the connector holds one"));
        assert!(accepted >= 1, "the first batch fits the queue");
        assert!(matches!(status.code(), tonic::Code::ResourceExhausted | tonic::Code::Unavailable), "a retryable refusal: {status:?}");
        let refused_spans = oxcol.metric("otelcol_receiver_refused_spans", &[]).await;
        assert!(refused_spans >= 1.0, "the receiver counts the refusal");
        let connector_refused = oxcol.metric("otelcol_connector_consumed_items", &[("otelcol_component_id", "forward"), ("otelcol_component_outcome", "refused")]).await;
        assert!(connector_refused >= 1.0, "the connector counts the refusal");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_upstream_first_and_flushes_aggregates_downstream() {
    bounded(TEST_LIMIT, async {
        let sink = start_sink().await;
        // Three stop levels: traces -> forward -> traces/2 -> spanmetrics -> metrics. The
        // 1h flush interval means only the final flush at shutdown can emit the metrics.
        let components = format!("exporters:\n{}connectors:\n  forward:\n  spanmetrics:\n    metrics_flush_interval: 1h\n", otlp_exporter("otlp", &sink, ""));
        let pipelines = "    traces:\n      receivers: [otlp]\n      exporters: [forward]\n    traces/2:\n      receivers: [forward]\n      exporters: [spanmetrics]\n    metrics:\n      receivers: [spanmetrics]\n      exporters: [otlp]\n";
        let oxcol = Oxcol::start("", &components, pipelines).await;
        trace_client(&oxcol).await.export(ExportTraceServiceRequest { resource_spans: vec![resource_spans("s", 4)] }).await.expect("accepted");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(sink.state.stats().metrics.items, 0, "nothing is flushed before shutdown");
        let status = Command::new("kill").args(["-TERM", &oxcol.pid().to_string()]).status().expect("runs kill");
        assert!(status.success());
        // One series: a calls point and a duration point.
        let stats = wait_sink(&sink, Duration::from_secs(15), |s| s.metrics.items >= 2).await;
        assert_eq!(stats.metrics.items, 2, "the final flush reached the exporter before it stopped: {stats:?}\nlog:\n{}", oxcol.log());
    })
    .await;
}

/// Metric names in the requests recorded in `dir`.
fn recorded_metric_names(dir: &std::path::Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)
        .expect("reads the record dir")
        .filter_map(Result::ok)
    {
        let body = std::fs::read(entry.path()).expect("reads a recorded request");
        let Ok(request) = ExportMetricsServiceRequest::decode(body.as_slice()) else {
            continue;
        };
        for metric in request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
        {
            names.push(metric.name.clone());
        }
    }
    names.sort();
    names.dedup();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servicegraph_and_count_emit_their_metrics() {
    bounded(TEST_LIMIT, async {
        let record = std::env::temp_dir().join(format!("oxcol-connectors-{}-record-graph", std::process::id()));
        let _ = std::fs::remove_dir_all(&record);
        std::fs::create_dir_all(&record).expect("creates the record dir");
        let sink = sink::start(SinkConfig { record_dir: Some(record.clone()), ..SinkConfig::default() }).await.expect("starts the sink");
        let components = format!("exporters:\n{}connectors:\n  servicegraph:\n    metrics_flush_interval: 0s\n  count:\n", otlp_exporter("otlp", &sink, ""));
        let pipelines = "    traces:\n      receivers: [otlp]\n      exporters: [servicegraph, count]\n    metrics:\n      receivers: [servicegraph, count]\n      exporters: [otlp]\n";
        let oxcol = Oxcol::start("", &components, pipelines).await;
        // A client span in "front" and the server span of the same call in "back".
        let mut front = resource_spans("front", 1);
        front.scope_spans[0].spans[0].kind = span::SpanKind::Client as i32;
        let mut back = resource_spans("back", 1);
        back.scope_spans[0].spans[0].span_id = vec![9; 8];
        back.scope_spans[0].spans[0].parent_span_id = front.scope_spans[0].spans[0].span_id.clone();
        trace_client(&oxcol).await.export(ExportTraceServiceRequest { resource_spans: vec![front, back] }).await.expect("accepted");
        let wanted = ["trace.span.count", "traces_service_graph_request_client", "traces_service_graph_request_server", "traces_service_graph_request_total"];
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let names = loop {
            let names = recorded_metric_names(&record);
            if wanted.iter().all(|w| names.iter().any(|n| n == w)) || std::time::Instant::now() >= deadline {
                break names;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(names, wanted, "log:\n{}", oxcol.log());
        assert_eq!(oxcol.metric("otelcol_connector_servicegraph_total_edges", &[("connector", "servicegraph")]).await, 1.0);
        let _ = std::fs::remove_dir_all(&record);
    })
    .await;
}
