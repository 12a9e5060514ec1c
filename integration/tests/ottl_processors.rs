//! Black-box tests of the OTTL processors in the `oxcol` binary: `oxcol validate` places
//! every statement or condition that does not parse at its file:line:column (moved to the
//! position inside the statement when it is on one line), and OTLP traces and logs in ->
//! `transform` -> `filter` -> a sink receive the changed, filtered data.
//!
//! Needs `target/debug/oxcol` (`cargo build -p oxcol`). Every wait is bounded.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use oxcol_integration::sink::{self, SinkConfig};
use prost::Message;
use std::process::Command;
use std::time::Duration;

const TEST_LIMIT: Duration = Duration::from_secs(60);

fn text(value: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(value.to_string())),
    }
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(text(value)),
        ..Default::default()
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
}

fn write_config(name: &str, yaml: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("oxcol-ottl-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creates the temp dir");
    let path = dir.join("c.yaml");
    std::fs::write(&path, yaml).expect("writes the config");
    path
}

#[test]
fn validate_places_ottl_errors_inside_the_statement() {
    let yaml = r#"receivers:
  otlp:
    protocols:
      grpc:
processors:
  transform:
    trace_statements:
      - context: span
        statements:
          - set(name, "ok")
          - set(attributes["x"], )
          - "set(attributes[\"y\"], nope)"
      - statements:
          - set(name, "no context prefix")
  filter/drop:
    metrics:
      datapoint:
        - 'attributes["a"] == '
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [transform]
      exporters: [debug]
    metrics:
      receivers: [otlp]
      processors: [filter/drop]
      exporters: [debug]
"#;
    let path = write_config("validate", yaml);
    let output = Command::new(oxcol_binary())
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .expect("oxcol runs");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{out}");
    let file = path.display().to_string();
    let expected = [
        format!(
            r#"{file}:11:34: processor "transform": statement "set(attributes[\"x\"], )": at position 21: expected an argument"#
        ),
        format!(
            r#"{file}:12:37: processor "transform": statement "set(attributes[\"y\"], nope)": at position 21: "nope" is not a valid path for the span context (see docs/ottl.md for the paths oxcol supports)"#
        ),
        format!(
            r#"{file}:13:9: processor "transform": trace_statements[1]: no context given and cannot infer the context"#
        ),
        format!(
            r#"{file}:18:31: processor "filter/drop": condition "attributes[\"a\"] == ": at position 19: expected a value but found the end of the text"#
        ),
    ];
    for line in &expected {
        assert!(
            out.lines().any(|l| l.starts_with(line.as_str())),
            "missing {line:?} in:\n{out}"
        );
    }
    assert_eq!(
        out.lines().filter(|l| l.starts_with(&file)).count(),
        expected.len(),
        "exactly these errors:\n{out}"
    );
    // The column really points at the problem in the file.
    let lines: Vec<&str> = yaml.lines().collect();
    assert!(lines[10][33..].starts_with(')'));
    assert!(lines[11][36..].starts_with("nope"));

    let fixed = yaml
        .replace(r#"set(attributes["x"], )"#, r#"set(attributes["x"], 1)"#)
        .replace("nope)", "name)")
        .replace(
            r#"set(name, "no context prefix")"#,
            r#"set(span.name, "prefixed")"#,
        )
        .replace(r#"'attributes["a"] == '"#, r#"'attributes["a"] == 1'"#);
    let output = Command::new(oxcol_binary())
        .args(["validate", "--config"])
        .arg(write_config("fixed", &fixed))
        .output()
        .expect("oxcol runs");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn recorded<T: Message + Default>(dir: &std::path::Path, signal: &str) -> Vec<T> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("reads the record dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(&format!("-{signal}.pb")))
        .map(|p| {
            T::decode(
                std::fs::read(p)
                    .expect("reads a recorded request")
                    .as_slice(),
            )
            .expect("decodes a recorded request")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transform_then_filter_on_traces_and_logs() {
    bounded(TEST_LIMIT, async {
        let record = std::env::temp_dir().join(format!("oxcol-ottl-{}-record", std::process::id()));
        let _ = std::fs::remove_dir_all(&record);
        std::fs::create_dir_all(&record).expect("creates the record dir");
        let sink = sink::start(SinkConfig { record_dir: Some(record.clone()), ..SinkConfig::default() }).await.expect("starts the sink");
        let components = format!(
            r#"processors:
  transform:
    trace_statements:
      - context: span
        statements:
          - replace_pattern(name, "^GET /users/\\d+$", "GET /users/{{id}}")
          - set(attributes["env"], resource.attributes["deployment"])
      - statements: ['set(resource.attributes["seen_by"], "oxcol")']
    log_statements:
      - context: log
        statements:
          - merge_maps(attributes, ParseJSON(body), "upsert") where IsMatch(body, "^\\{{")
          - set(severity_number, SEVERITY_NUMBER_ERROR) where attributes["level"] == "error"
  filter:
    error_mode: ignore
    traces:
      span:
        - name == "GET /health"
    logs:
      log_record:
        - severity_number < SEVERITY_NUMBER_WARN
exporters:
{}"#,
            otlp_exporter("otlp", &sink, "")
        );
        let pipelines = "    traces:\n      receivers: [otlp]\n      processors: [transform, filter]\n      exporters: [otlp]\n    logs:\n      receivers: [otlp]\n      processors: [transform, filter]\n      exporters: [otlp]\n";
        let oxcol = Oxcol::start("", &components, pipelines).await;

        let span = |name: &str| Span { trace_id: vec![7; 16], span_id: vec![1; 8], name: name.to_string(), ..Default::default() };
        let traces = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: vec![attribute("deployment", "prod")], ..Default::default() }),
                scope_spans: vec![ScopeSpans { spans: vec![span("GET /users/42"), span("GET /health"), span("POST /cart")], ..Default::default() }],
                ..Default::default()
            }],
        };
        let mut client = TraceServiceClient::connect(format!("http://{}", oxcol.grpc_endpoint())).await.expect("connects");
        client.export(traces).await.expect("oxcol accepts the traces");

        let log = |body: &str| LogRecord { body: Some(text(body)), severity_number: 9, ..Default::default() };
        let logs = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: None,
                scope_logs: vec![ScopeLogs {
                    log_records: vec![log(r#"{"level": "error", "msg": "db down"}"#), log("plain info line"), log(r#"{"level": "info"}"#)],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut client = LogsServiceClient::connect(format!("http://{}", oxcol.grpc_endpoint())).await.expect("connects");
        client.export(logs).await.expect("oxcol accepts the logs");

        let stats = wait_sink(&sink, Duration::from_secs(10), |s| s.traces.items >= 2 && s.logs.items >= 1).await;
        assert_eq!((stats.traces.items, stats.logs.items), (2, 1), "{stats:?}");

        let traces: Vec<ExportTraceServiceRequest> = recorded(&record, "traces");
        let rs: Vec<&ResourceSpans> = traces.iter().flat_map(|r| &r.resource_spans).collect();
        assert_eq!(rs.len(), 1);
        assert_eq!(attr(&rs[0].resource.as_ref().expect("resource").attributes, "seen_by"), Some(&text("oxcol")));
        let spans: Vec<&Span> = rs[0].scope_spans.iter().flat_map(|s| &s.spans).collect();
        assert_eq!(spans.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["GET /users/{id}", "POST /cart"]);
        assert!(spans.iter().all(|s| attr(&s.attributes, "env") == Some(&text("prod"))));

        let logs: Vec<ExportLogsServiceRequest> = recorded(&record, "logs");
        let records: Vec<&LogRecord> = logs.iter().flat_map(|r| &r.resource_logs).flat_map(|r| &r.scope_logs).flat_map(|s| &s.log_records).collect();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].severity_number, 17);
        assert_eq!(attr(&records[0].attributes, "msg"), Some(&text("db down")));

        // The filter's drops show in the pipeline's processor counters: 6 items in, 3 out.
        let incoming = oxcol
            .wait_metric("otelcol_processor_incoming_items", &[("processor", "filter")], Duration::from_secs(5), |v| v >= 6.0)
            .await;
        let outgoing = oxcol.metric("otelcol_processor_outgoing_items", &[("processor", "filter")]).await;
        assert_eq!((incoming, outgoing), (6.0, 3.0), "{}", oxcol.metrics_text().await);
    })
    .await;
}
