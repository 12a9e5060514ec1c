//! Black-box tests of the `zipkin` receiver and exporter in the `oxcol` binary: Zipkin v2
//! JSON in -> OTLP out to the sink, and OTLP in -> `zipkin` exporter (JSON and protobuf)
//! -> the `zipkin` receiver of a second oxcol -> sink, checking that the spans survive.
//!
//! Needs `target/debug/oxcol` (`cargo build -p oxcol`). Every wait is bounded.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use oxcol_integration::sink::{self, RunningSink, SinkConfig};
use prost::Message;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TEST_LIMIT: Duration = Duration::from_secs(60);

fn attribute(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn text(value: &str) -> Value {
    Value::StringValue(value.to_string())
}

/// A sink that records every accepted request body in a fresh directory.
async fn recording_sink(name: &str) -> (RunningSink, PathBuf) {
    let record = std::env::temp_dir().join(format!("oxcol-zipkin-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&record);
    std::fs::create_dir_all(&record).expect("creates the record dir");
    let sink = sink::start(SinkConfig {
        record_dir: Some(record.clone()),
        ..SinkConfig::default()
    })
    .await
    .expect("starts the sink");
    (sink, record)
}

/// Every span the sink recorded, with its resource's attributes.
fn recorded_spans(record: &Path) -> Vec<(Vec<KeyValue>, Span)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(record)
        .expect("reads the record dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files
        .iter()
        .filter(|f| f.to_string_lossy().ends_with("-traces.pb"))
    {
        let request = ExportTraceServiceRequest::decode(
            std::fs::read(file).expect("reads a record").as_slice(),
        )
        .expect("a recorded traces request");
        for resource_spans in request.resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                out.extend(
                    scope_spans
                        .spans
                        .into_iter()
                        .map(|span| (resource.clone(), span)),
                );
            }
        }
    }
    out
}

/// oxcol with the otlp receiver (from the harness), a `zipkin` receiver on `zipkin_port`,
/// and a traces pipeline from both to `exporters` (YAML, indented for `exporters:`).
async fn oxcol_with_zipkin(zipkin_port: u16, exporters: &str, exporter_ids: &str) -> Oxcol {
    let components =
        format!("  zipkin:\n    endpoint: 127.0.0.1:{zipkin_port}\nexporters:\n{exporters}");
    let pipelines = format!(
        "    traces:\n      receivers: [otlp, zipkin]\n      exporters: [{exporter_ids}]\n"
    );
    Oxcol::start("", &components, &pipelines).await
}

async fn post(url: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let request = http::Request::post(url)
        .header("content-type", content_type)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .expect("a request");
    let response = client.request(request).await.expect("oxcol answers");
    let status = response.status().as_u16();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("reads the answer")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).to_string())
}

const ZIPKIN_JSON: &str = r#"[
  {"traceId": "463ac35c9f6413ad48485a3953bb6124", "id": "a2fb4a1d1a96d312", "name": "get /cart",
   "kind": "SERVER", "timestamp": 1700000000000000, "duration": 2500,
   "localEndpoint": {"serviceName": "cart", "ipv4": "10.0.0.7", "port": 8080},
   "annotations": [{"timestamp": 1700000000001000, "value": "cache miss"}],
   "tags": {"http.method": "GET", "error": "true"}},
  {"traceId": "463ac35c9f6413ad48485a3953bb6124", "id": "b2fb4a1d1a96d313", "parentId": "a2fb4a1d1a96d312",
   "name": "select", "kind": "CLIENT", "timestamp": 1700000000000500, "duration": 900,
   "localEndpoint": {"serviceName": "cart"}, "remoteEndpoint": {"serviceName": "postgres", "port": 5432},
   "tags": {"db.system": "postgresql"}}
]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_json_in_otlp_out() {
    bounded(TEST_LIMIT, async {
        let (sink, record) = recording_sink("json-in").await;
        let zipkin_port = free_port();
        let oxcol = oxcol_with_zipkin(zipkin_port, &otlp_exporter("otlp", &sink, ""), "otlp").await;
        let url = format!("http://127.0.0.1:{zipkin_port}/api/v2/spans");
        let (status, body) = post(&url, "application/json", ZIPKIN_JSON.as_bytes().to_vec()).await;
        assert_eq!(status, 202, "Zipkin's answer is 202 Accepted: {body}");
        let (status, body) = post(&url, "application/json", b"[{\"traceId\": 5}]".to_vec()).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body.contains("Zipkin v2 JSON"),
            "the 400 says what is wrong: {body}"
        );

        let stats = wait_sink(&sink, Duration::from_secs(10), |s| s.traces.items >= 2).await;
        assert_eq!(stats.traces.items, 2, "log:\n{}", oxcol.log());
        let spans = recorded_spans(&record);
        let (resource, server) = spans
            .iter()
            .find(|(_, s)| s.name == "get /cart")
            .expect("the server span arrived");
        assert_eq!(find(resource, "service.name"), Some(&text("cart")));
        assert_eq!(
            server.trace_id,
            [
                0x46, 0x3a, 0xc3, 0x5c, 0x9f, 0x64, 0x13, 0xad, 0x48, 0x48, 0x5a, 0x39, 0x53, 0xbb,
                0x61, 0x24
            ]
        );
        assert_eq!(server.span_id, 0xa2fb4a1d1a96d312u64.to_be_bytes());
        assert_eq!(server.kind, SpanKind::Server as i32);
        assert_eq!(
            (server.start_time_unix_nano, server.end_time_unix_nano),
            (1_700_000_000_000_000_000, 1_700_000_000_002_500_000)
        );
        assert_eq!(
            server.status.as_ref().map(|s| s.code),
            Some(StatusCode::Error as i32)
        );
        assert_eq!(
            find(&server.attributes, "network.local.address"),
            Some(&text("10.0.0.7"))
        );
        assert_eq!(find(&server.attributes, "http.method"), Some(&text("GET")));
        assert_eq!(server.events[0].name, "cache miss");
        let (_, client) = spans
            .iter()
            .find(|(_, s)| s.name == "select")
            .expect("the client span arrived");
        assert_eq!(client.parent_span_id, server.span_id);
        assert_eq!(
            find(&client.attributes, "service.peer.name"),
            Some(&text("postgres"))
        );
        assert_eq!(
            find(&client.attributes, "net.peer.port"),
            Some(&Value::IntValue(5432))
        );
        assert_eq!(
            oxcol
                .metric("otelcol_receiver_accepted_spans", &[("receiver", "zipkin")])
                .await,
            2.0
        );
        let _ = std::fs::remove_dir_all(&record);
    })
    .await;
}

fn otlp_traces() -> ExportTraceServiceRequest {
    let start = 1_700_000_000_000_000_000u64;
    let server = Span {
        trace_id: (1..=16).collect(),
        span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
        trace_state: "vendor=1".into(),
        name: "GET /checkout".into(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 5_000_000,
        attributes: vec![
            attribute("http.status_code", Value::IntValue(503)),
            attribute("net.host.ip", text("10.1.2.3")),
            attribute("network.local.address", text("10.9.9.9")),
        ],
        events: vec![Event {
            time_unix_nano: start + 1_000_000,
            name: "retry".into(),
            attributes: vec![attribute("attempt", Value::IntValue(2))],
            dropped_attributes_count: 0,
        }],
        status: Some(Status {
            code: StatusCode::Error as i32,
            message: "upstream down".into(),
        }),
        ..Default::default()
    };
    let internal = Span {
        trace_id: (1..=16).collect(),
        span_id: vec![9; 8],
        parent_span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
        name: "compute".into(),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: start + 1_000,
        end_time_unix_nano: start + 2_000_000,
        status: Some(Status {
            code: StatusCode::Ok as i32,
            message: String::new(),
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    attribute("service.name", text("checkout")),
                    attribute("deployment.environment", text("prod")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![server, internal],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_through_zipkin_exporter_and_receiver_survives() {
    bounded(TEST_LIMIT, async {
        for format in ["json", "proto"] {
            let (sink, record) = recording_sink(&format!("roundtrip-{format}")).await;
            let downstream_zipkin = free_port();
            let downstream = oxcol_with_zipkin(downstream_zipkin, &otlp_exporter("otlp", &sink, ""), "otlp").await;
            let exporter = format!("  zipkin:\n    endpoint: http://127.0.0.1:{downstream_zipkin}/api/v2/spans\n    format: {format}\n{FAST_RETRY}");
            let upstream = oxcol_with_zipkin(free_port(), &exporter, "zipkin").await;
            TraceServiceClient::connect(format!("http://{}", upstream.grpc_endpoint()))
                .await
                .expect("connects to the upstream oxcol")
                .export(otlp_traces())
                .await
                .expect("the upstream oxcol accepts the traces");

            let stats = wait_sink(&sink, Duration::from_secs(10), |s| s.traces.items >= 2).await;
            assert_eq!(stats.traces.items, 2, "{format}: upstream log:\n{}\ndownstream log:\n{}", upstream.log(), downstream.log());
            let spans = recorded_spans(&record);
            let sent = otlp_traces();
            for original in &sent.resource_spans[0].scope_spans[0].spans {
                let (resource, span) = spans.iter().find(|(_, s)| s.span_id == original.span_id).unwrap_or_else(|| panic!("{format}: span {:?} arrived", original.name));
                assert_eq!(find(resource, "service.name"), Some(&text("checkout")), "{format}");
                assert_eq!(find(resource, "deployment.environment"), Some(&text("prod")), "{format}: resource attributes return to the resource");
                // zipkin-go, and so the Collector, lower-cases span names in JSON.
                let name = if format == "json" { original.name.to_lowercase() } else { original.name.clone() };
                assert_eq!((&span.trace_id, &span.parent_span_id, &span.name), (&original.trace_id, &original.parent_span_id, &name), "{format}");
                assert_eq!((span.start_time_unix_nano, span.end_time_unix_nano), (original.start_time_unix_nano, original.end_time_unix_nano), "{format}: microsecond times survive");
                assert_eq!(span.kind, original.kind, "{format}: kind (internal through the span.kind tag)");
                assert_eq!(span.status.as_ref().map(|s| s.code), original.status.as_ref().map(|s| s.code), "{format}");
                assert_eq!(span.trace_state, original.trace_state, "{format}");
            }
            let (_, server) = spans.iter().find(|(_, s)| s.span_id == [1, 2, 3, 4, 5, 6, 7, 8]).expect("the server span");
            assert_eq!(server.status.as_ref().map(|s| s.message.as_str()), Some("upstream down"), "{format}");
            assert_eq!(find(&server.attributes, "http.status_code"), Some(&text("503")), "{format}: Zipkin tags are strings");
            // The address travels in the local endpoint; the old key is only a tag in v0.161.
            assert_eq!(find(&server.attributes, "network.local.address"), Some(&text("10.9.9.9")), "{format}");
            assert_eq!(find(&server.attributes, "net.host.ip"), Some(&text("10.1.2.3")), "{format}");
            assert_eq!(server.events.len(), 1, "{format}");
            assert_eq!((server.events[0].name.as_str(), find(&server.events[0].attributes, "attempt")), ("retry", Some(&Value::IntValue(2))), "{format}");
            assert_eq!(upstream.metric("otelcol_exporter_sent_spans", &[("exporter", "zipkin")]).await, 2.0, "{format}");
            let _ = std::fs::remove_dir_all(&record);
        }
    })
    .await;
}

// ---------------------------------------------------------------- the Collector as oracle

/// A Zipkin v2 protobuf body (`ListOfSpans`) with one span, built from zipkin.proto's field
/// numbers (the integration crate does not link the receiver's structs).
fn zipkin_proto_body() -> Vec<u8> {
    let mut endpoint = vec![0x0a, 3];
    endpoint.extend_from_slice(b"pay");
    endpoint.extend_from_slice(&[0x12, 4, 10, 0, 0, 9]); // ipv4 10.0.0.9
    let mut tag = vec![0x0a, 4];
    tag.extend_from_slice(b"card");
    tag.extend_from_slice(&[0x12, 4]);
    tag.extend_from_slice(b"visa");
    let mut span = vec![0x0a, 16];
    span.extend_from_slice(&[0x11; 16]); // trace_id
    span.extend_from_slice(&[0x1a, 8, 0, 0, 0, 0, 0, 0, 0x22, 0x22]); // id
    span.extend_from_slice(&[0x20, 3]); // kind PRODUCER
    span.extend_from_slice(&[0x2a, 7]);
    span.extend_from_slice(b"publish");
    span.push(0x31); // timestamp, fixed64 micros
    span.extend_from_slice(&1_700_000_000_000_100u64.to_le_bytes());
    span.extend_from_slice(&[0x38, 0xe8, 0x07]); // duration 1000
    span.push(0x42);
    span.push(endpoint.len() as u8);
    span.extend_from_slice(&endpoint);
    span.push(0x5a);
    span.push(tag.len() as u8);
    span.extend_from_slice(&tag);
    let mut list = vec![0x0a, span.len() as u8];
    list.extend_from_slice(&span);
    list
}

/// Translation edge cases: no timestamp, no local service name, a short trace id, resource
/// and scope tags, `span.kind=internal`, `otel.status_*`, `error=false`, trace state, an
/// encoded link and event, remote IPv6.
const ZIPKIN_JSON_EDGES: &str = r#"[
  {"traceId": "abc", "id": "0000000000000001", "name": "no-time", "duration": 7,
   "localEndpoint": {"ipv4": "192.168.1.1"},
   "tags": {"host.name": "h1", "span.kind": "internal", "w3c.tracestate": "k=v"}},
  {"traceId": "abc", "id": "0000000000000002", "parentId": "0000000000000001", "name": "scoped", "kind": "CLIENT",
   "timestamp": 1700000000000000, "duration": 10,
   "localEndpoint": {"serviceName": "edge", "port": 1234},
   "remoteEndpoint": {"ipv6": "2001:db8::1", "port": 443},
   "annotations": [{"timestamp": 1700000000000005, "value": "exception|{\"exception.message\":\"a|b\",\"n\":2,\"ok\":true}|1"}],
   "tags": {"otel.scope.name": "lib", "otel.scope.version": "9", "otel.status_code": "STATUS_CODE_OK",
            "otel.status_description": "fine", "error": "false", "deployment.environment": "prod",
            "otlp.link.0": "0102030405060708090a0b0c0d0e0f10|0102030405060708|s=1|{\"l\":\"x\"}|0"}},
  {"traceId": "abc", "id": "0000000000000003", "name": "failed", "kind": "SERVER", "timestamp": 1700000000000000,
   "localEndpoint": {"serviceName": "edge"}, "tags": {"error": "true", "http.status_code": "500"}}
]"#;

const ZIPKIN_V1_JSON: &str = r#"[
  {"traceId": "5af7183fb1d4cf5f", "id": "352bff9a74ca9ad2", "name": "get", "timestamp": 1700000000000000, "duration": 500,
   "annotations": [
     {"timestamp": 1700000000000000, "value": "cs", "endpoint": {"serviceName": "front", "ipv4": "10.0.0.1", "port": 80}},
     {"timestamp": 1700000000000200, "value": "retry", "endpoint": {"serviceName": "front", "ipv4": "10.0.0.1", "port": 80}},
     {"timestamp": 1700000000000500, "value": "cr", "endpoint": {"serviceName": "front", "ipv4": "10.0.0.1", "port": 80}}],
   "binaryAnnotations": [{"key": "http.status_code", "value": "503"}, {"key": "lc", "value": "web"}]}
]"#;

/// The OTLP input of the exporter side of the oracle comparison: [`otlp_traces`] with a
/// mixed-case service name, scope attributes, a link, the new and old network keys, and a
/// span without a service name.
fn oracle_traces() -> ExportTraceServiceRequest {
    let mut request = otlp_traces();
    let resource_spans = &mut request.resource_spans[0];
    resource_spans
        .resource
        .as_mut()
        .expect("a resource")
        .attributes[0] = attribute("service.name", text("CheckOut"));
    let scope = resource_spans.scope_spans[0].scope.get_or_insert_default();
    scope.name = "io.shop".into();
    scope.version = "1.0".into();
    scope.attributes = vec![attribute("scope.team", text("payments"))];
    let server = &mut resource_spans.scope_spans[0].spans[0];
    server
        .links
        .push(opentelemetry_proto::tonic::trace::v1::span::Link {
            trace_id: vec![3; 16],
            span_id: vec![4; 8],
            trace_state: "a=b".into(),
            attributes: vec![attribute("why", text("retry"))],
            dropped_attributes_count: 1,
            ..Default::default()
        });
    server.attributes.extend([
        attribute("service.peer.name", text("Payments")),
        attribute("peer.service", text("legacy")),
        attribute("network.peer.address", text("::1")),
        attribute("net.peer.port", Value::IntValue(8443)),
        attribute("ratio", Value::DoubleValue(0.5)),
        attribute("ok", Value::BoolValue(true)),
    ]);
    request.resource_spans.push(ResourceSpans {
        resource: Some(Resource::default()),
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                trace_id: vec![5; 16],
                span_id: vec![6; 8],
                name: "anonymous".into(),
                start_time_unix_nano: 1_700_000_000_000_000_000,
                end_time_unix_nano: 1_700_000_000_000_000_500,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    request
}

/// Runs one system (the Collector oracle or oxcol) with a `zipkin` receiver feeding the
/// sink, and a second pipeline OTLP -> `zipkin` exporter -> that same receiver; sends the
/// v2 JSON, v2 protobuf, v1 JSON and OTLP inputs; returns the canonical output and the log.
async fn run_zipkin_system(binary: &Path, name: &str, format: &str) -> (Vec<String>, String) {
    let (sink, record) = recording_sink(&format!("oracle-{name}")).await;
    let (zipkin_port, otlp_port) = (free_port(), free_port());
    let dir = record.with_extension("run");
    std::fs::create_dir_all(&dir).expect("creates the run dir");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{otlp_port}\n  zipkin:\n    endpoint: 127.0.0.1:{zipkin_port}\n\
             exporters:\n  otlp:\n    endpoint: {}\n    tls:\n      insecure: true\n  zipkin:\n    endpoint: http://127.0.0.1:{zipkin_port}/api/v2/spans\n    format: {format}\n\
             service:\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n    traces/in:\n      receivers: [otlp]\n      exporters: [zipkin]\n    traces/out:\n      receivers: [zipkin]\n      exporters: [otlp]\n",
            sink.grpc_addr
        ),
    )
    .expect("writes the config");
    let log = dir.join("log.txt");
    let _child = oxcol_integration::child::spawn_logged(
        std::process::Command::new(binary)
            .arg("--config")
            .arg(&config),
        &log,
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", zipkin_port))
        .await
        .is_err()
        || tokio::net::TcpStream::connect(("127.0.0.1", otlp_port))
            .await
            .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} did not listen:\n{}",
            read_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v2 = format!("http://127.0.0.1:{zipkin_port}/api/v2/spans");
    let mut answers = vec![
        post(&v2, "application/json", ZIPKIN_JSON.as_bytes().to_vec())
            .await
            .0,
        post(&v2, "application/x-protobuf", zipkin_proto_body())
            .await
            .0,
        post(
            &v2,
            "application/json",
            ZIPKIN_JSON_EDGES.as_bytes().to_vec(),
        )
        .await
        .0,
        post(
            &v2,
            "application/json",
            b"[{\"traceId\": \"xyz\", \"id\": \"1\"}]".to_vec(),
        )
        .await
        .0,
        post(
            &format!("http://127.0.0.1:{zipkin_port}/api/v1/spans"),
            "application/json",
            ZIPKIN_V1_JSON.as_bytes().to_vec(),
        )
        .await
        .0,
    ];
    let exported = TraceServiceClient::connect(format!("http://127.0.0.1:{otlp_port}"))
        .await
        .expect("connects")
        .export(oracle_traces())
        .await;
    answers.push(if exported.is_ok() { 200 } else { 500 });
    let total = 2 + 1 + 3 + 1 + 3;
    let stats = wait_sink(&sink, Duration::from_secs(15), |s| s.traces.items >= total).await;
    // A moment more, so that a system sending too much shows it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stats.traces.items,
        total,
        "{name}: answers {answers:?}, log:\n{}",
        read_log()
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&record)
        .expect("reads the record dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    let output = oxcol_integration::oracle::canonical::Output {
        traces: files
            .iter()
            .map(|f| {
                ExportTraceServiceRequest::decode(
                    std::fs::read(f).expect("reads a record").as_slice(),
                )
                .expect("a traces request")
            })
            .collect(),
        ..Default::default()
    };
    let mut lines = vec![format!("answers {answers:?}")];
    lines.extend(oxcol_integration::oracle::canonical::canonical_lines(
        &output,
        Default::default(),
    ));
    let _ = std::fs::remove_dir_all(&record);
    (lines, read_log())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_receiver_and_exporter_match_the_collector() {
    bounded(TEST_LIMIT, async {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let oracle = oxcol_integration::oracle::oracle_binary(&root).unwrap_or_else(|error| panic!("{error}"));
        for format in ["json", "proto"] {
            let (expected, collector_log) = run_zipkin_system(&oracle, &format!("collector-{format}"), format).await;
            let (actual, oxcol_log) = run_zipkin_system(&oxcol_binary(), &format!("oxcol-{format}"), format).await;
            if std::env::var_os("OXCOL_ORACLE_SHOW").is_some() {
                eprintln!("---- Collector output ({format})\n{}", expected.join("\n"));
            }
            if let Some(diff) = oxcol_integration::oracle::diff::diff("collector", &expected, "oxcol", &actual) {
                panic!("exporter format {format}: oxcol differs from the Collector:\n{diff}\n--- collector log:\n{collector_log}\n--- oxcol log:\n{oxcol_log}");
            }
        }
    })
    .await;
}
