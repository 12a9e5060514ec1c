//! Black-box tests of the `jaeger` receiver in the `oxcol` binary: Jaeger spans over gRPC
//! (`PostSpans`), Thrift HTTP (`POST /api/traces`) and Thrift compact over UDP, each
//! delivered as OTLP to the sink, with the translation checked on what the sink recorded.
//!
//! The Jaeger messages are encoded here, independently of oxcol's decoders: protobuf with
//! prost derives of the `api_v2` fields used, Thrift byte by byte from the protocol specs.
//!
//! Needs `target/debug/oxcol` (`cargo build -p oxcol`). Every wait is bounded.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use oxcol_integration::sink::{self, RunningSink, SinkConfig};
use prost::Message;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TEST_LIMIT: Duration = Duration::from_secs(60);

// --- jaeger.api_v2 (model.proto / collector.proto), only the fields these tests send ---

#[derive(Clone, PartialEq, Message)]
struct Timestamp {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

#[derive(Clone, PartialEq, Message)]
struct JKeyValue {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(int32, tag = "2")]
    v_type: i32,
    #[prost(string, tag = "3")]
    v_str: String,
    #[prost(bool, tag = "4")]
    v_bool: bool,
    #[prost(int64, tag = "5")]
    v_int64: i64,
    #[prost(double, tag = "6")]
    v_float64: f64,
    #[prost(bytes = "vec", tag = "7")]
    v_binary: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct JLog {
    #[prost(message, optional, tag = "1")]
    timestamp: Option<Timestamp>,
    #[prost(message, repeated, tag = "2")]
    fields: Vec<JKeyValue>,
}

#[derive(Clone, PartialEq, Message)]
struct JSpanRef {
    #[prost(bytes = "vec", tag = "1")]
    trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    span_id: Vec<u8>,
    #[prost(int32, tag = "3")]
    ref_type: i32,
}

#[derive(Clone, PartialEq, Message)]
struct JProcess {
    #[prost(string, tag = "1")]
    service_name: String,
    #[prost(message, repeated, tag = "2")]
    tags: Vec<JKeyValue>,
}

#[derive(Clone, PartialEq, Message)]
struct JSpan {
    #[prost(bytes = "vec", tag = "1")]
    trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    span_id: Vec<u8>,
    #[prost(string, tag = "3")]
    operation_name: String,
    #[prost(message, repeated, tag = "4")]
    references: Vec<JSpanRef>,
    #[prost(uint32, tag = "5")]
    flags: u32,
    #[prost(message, optional, tag = "6")]
    start_time: Option<Timestamp>,
    #[prost(message, optional, tag = "7")]
    duration: Option<Timestamp>,
    #[prost(message, repeated, tag = "8")]
    tags: Vec<JKeyValue>,
    #[prost(message, repeated, tag = "9")]
    logs: Vec<JLog>,
    #[prost(message, optional, tag = "10")]
    process: Option<JProcess>,
}

#[derive(Clone, PartialEq, Message)]
struct JBatch {
    #[prost(message, repeated, tag = "1")]
    spans: Vec<JSpan>,
    #[prost(message, optional, tag = "2")]
    process: Option<JProcess>,
}

#[derive(Clone, PartialEq, Message)]
struct PostSpansRequest {
    #[prost(message, optional, tag = "1")]
    batch: Option<JBatch>,
}

fn jstr(key: &str, value: &str) -> JKeyValue {
    JKeyValue {
        key: key.into(),
        v_type: 0,
        v_str: value.into(),
        ..JKeyValue::default()
    }
}

// --- Thrift: Batch{process{serviceName, tags[hostname]}, spans[one span]} ---

/// The span every Thrift test sends: trace id high 1 / low 2, span id 3, parent 4,
/// start 1_700_000_000_000_000 us, duration 1500 us, tags span.kind=server and
/// http.status_code=503 (long).
struct ThriftSpan<'a> {
    name: &'a str,
    service: &'a str,
}

fn binary_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as i32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// TBinaryProtocol field header.
fn binary_field(out: &mut Vec<u8>, ttype: u8, id: i16) {
    out.push(ttype);
    out.extend_from_slice(&id.to_be_bytes());
}

fn binary_batch(span: &ThriftSpan) -> Vec<u8> {
    let (string, i32t, i64t, structt, list) = (11u8, 8u8, 10u8, 12u8, 15u8);
    let mut out = Vec::new();
    binary_field(&mut out, structt, 1); // process
    binary_field(&mut out, string, 1);
    binary_string(&mut out, span.service);
    binary_field(&mut out, list, 2); // process tags
    out.push(structt);
    out.extend_from_slice(&1i32.to_be_bytes());
    binary_field(&mut out, string, 1);
    binary_string(&mut out, "hostname");
    binary_field(&mut out, i32t, 2);
    out.extend_from_slice(&0i32.to_be_bytes()); // STRING
    binary_field(&mut out, string, 3);
    binary_string(&mut out, "node-7");
    out.push(0); // end Tag
    out.push(0); // end Process
    binary_field(&mut out, list, 2); // spans
    out.push(structt);
    out.extend_from_slice(&1i32.to_be_bytes());
    for (id, value) in [(1i16, 2i64), (2, 1), (3, 3), (4, 4)] {
        binary_field(&mut out, i64t, id);
        out.extend_from_slice(&value.to_be_bytes());
    }
    binary_field(&mut out, string, 5);
    binary_string(&mut out, span.name);
    binary_field(&mut out, i32t, 7);
    out.extend_from_slice(&1i32.to_be_bytes());
    binary_field(&mut out, i64t, 8);
    out.extend_from_slice(&1_700_000_000_000_000i64.to_be_bytes());
    binary_field(&mut out, i64t, 9);
    out.extend_from_slice(&1500i64.to_be_bytes());
    binary_field(&mut out, list, 10); // tags
    out.push(structt);
    out.extend_from_slice(&2i32.to_be_bytes());
    binary_field(&mut out, string, 1);
    binary_string(&mut out, "span.kind");
    binary_field(&mut out, i32t, 2);
    out.extend_from_slice(&0i32.to_be_bytes());
    binary_field(&mut out, string, 3);
    binary_string(&mut out, "server");
    out.push(0);
    binary_field(&mut out, string, 1);
    binary_string(&mut out, "http.status_code");
    binary_field(&mut out, i32t, 2);
    out.extend_from_slice(&3i32.to_be_bytes()); // LONG
    binary_field(&mut out, i64t, 6);
    out.extend_from_slice(&503i64.to_be_bytes());
    out.push(0);
    out.push(0); // end Span
    out.push(0); // end Batch
    out
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn zigzag(out: &mut Vec<u8>, n: i64) {
    varint(out, ((n << 1) ^ (n >> 63)) as u64);
}

fn compact_string(out: &mut Vec<u8>, text: &str) {
    varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// `Agent.emitBatch` oneway, TCompactProtocol, with the same content as `binary_batch`.
fn compact_emit_batch(span: &ThriftSpan) -> Vec<u8> {
    // Compact types: 5 i32, 6 i64, 8 binary, 9 list, 12 struct. Field header byte:
    // (id delta << 4) | type.
    let mut out = vec![0x82, (4 << 5) | 1, 0x00];
    compact_string(&mut out, "emitBatch");
    out.push(0x1c); // args.1 batch: struct
    out.push(0x1c); // Batch.1 process: struct
    out.push(0x18); // Process.1 serviceName
    compact_string(&mut out, span.service);
    out.push(0x19); // Process.2 tags: list
    out.push(0x1c); // 1 element, struct
    out.push(0x18); // Tag.1 key
    compact_string(&mut out, "hostname");
    out.push(0x15); // Tag.2 vType
    zigzag(&mut out, 0);
    out.push(0x18); // Tag.3 vStr
    compact_string(&mut out, "node-7");
    out.push(0); // end Tag
    out.push(0); // end Process
    out.push(0x19); // Batch.2 spans: list
    out.push(0x1c); // 1 element, struct
    for value in [2i64, 1, 3, 4] {
        out.push(0x16); // next field id, i64
        zigzag(&mut out, value);
    }
    out.push(0x18); // 5 operationName
    compact_string(&mut out, span.name);
    out.push(0x25); // 7 flags (delta 2), i32
    zigzag(&mut out, 1);
    out.push(0x16); // 8 startTime
    zigzag(&mut out, 1_700_000_000_000_000);
    out.push(0x16); // 9 duration
    zigzag(&mut out, 1500);
    out.push(0x19); // 10 tags: list
    out.push(0x2c); // 2 elements, struct
    out.push(0x18);
    compact_string(&mut out, "span.kind");
    out.push(0x15);
    zigzag(&mut out, 0);
    out.push(0x18);
    compact_string(&mut out, "server");
    out.push(0);
    out.push(0x18);
    compact_string(&mut out, "http.status_code");
    out.push(0x15);
    zigzag(&mut out, 3); // LONG
    out.push(0x46); // 6 vLong (delta 4), i64
    zigzag(&mut out, 503);
    out.push(0);
    out.push(0); // end Span
    out.push(0); // end Batch
    out.push(0); // end args
    out
}

// --- harness ---

async fn recording_sink(name: &str) -> (RunningSink, PathBuf) {
    let record = std::env::temp_dir().join(format!("oxcol-jaeger-{}-{name}", std::process::id()));
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

/// Every span the sink recorded, with its resource attributes.
fn recorded_spans(record: &Path) -> Vec<(Vec<KeyValue>, Span)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(record)
        .expect("reads the record dir")
        .filter_map(Result::ok)
    {
        if !entry.path().to_string_lossy().ends_with("-traces.pb") {
            continue;
        }
        let request = ExportTraceServiceRequest::decode(
            std::fs::read(entry.path())
                .expect("reads a record")
                .as_slice(),
        )
        .expect("a traces request");
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

fn trace_id(high: u64, low: u64) -> Vec<u8> {
    [high.to_be_bytes(), low.to_be_bytes()].concat()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jaeger_grpc_thrift_http_and_udp_in_otlp_out() {
    bounded(TEST_LIMIT, async {
        let (sink, record) = recording_sink("all").await;
        let (grpc_port, http_port, udp_port) = (free_port(), free_port(), free_port());
        let components = format!(
            "  jaeger:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc_port}\n      thrift_http:\n        endpoint: 127.0.0.1:{http_port}\n      thrift_compact:\n        endpoint: 127.0.0.1:{udp_port}\n        workers: 2\nexporters:\n{}",
            otlp_exporter("otlp", &sink, "")
        );
        let pipelines = "    traces:\n      receivers: [otlp, jaeger]\n      exporters: [otlp]\n";
        let oxcol = Oxcol::start("", &components, pipelines).await;

        // Thrift HTTP: 202, then 400 for a truncated body and for a wrong content type.
        let url = format!("http://127.0.0.1:{http_port}/api/traces");
        let body = binary_batch(&ThriftSpan { name: "http-span", service: "billing" });
        let (status, answer) = post(&url, "application/x-thrift", body.clone()).await;
        assert_eq!(status, 202, "{answer}\nlog:\n{}", oxcol.log());
        let (status, answer) = post(&url, "application/x-thrift", body[..body.len() - 10].to_vec()).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer.contains("Unable to process request body"), "{answer}");
        let (status, _) = post(&url, "application/json", body).await;
        assert_eq!(status, 400);

        // UDP compact: a good packet and a garbage one (counted, dropped).
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("binds a UDP socket");
        socket.send_to(&compact_emit_batch(&ThriftSpan { name: "udp-span", service: "agent-svc" }), ("127.0.0.1", udp_port)).await.expect("sends");
        socket.send_to(b"\x82\x81\x00\x05nope!", ("127.0.0.1", udp_port)).await.expect("sends");

        // gRPC PostSpans, with a CHILD_OF reference and scope and status tags.
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc_port}")).expect("a URI").connect().await.expect("connects");
        let mut grpc = tonic::client::Grpc::new(channel);
        let span = JSpan {
            trace_id: trace_id(5, 6),
            span_id: 7u64.to_be_bytes().to_vec(),
            operation_name: "grpc-span".into(),
            references: vec![JSpanRef { trace_id: trace_id(5, 6), span_id: 8u64.to_be_bytes().to_vec(), ref_type: 0 }],
            start_time: Some(Timestamp { seconds: 1_700_000_000, nanos: 0 }),
            duration: Some(Timestamp { seconds: 0, nanos: 2_000 }),
            tags: vec![jstr("span.kind", "client"), jstr("otel.scope.name", "my.lib"), jstr("otel.status_code", "ERROR"), jstr("otel.status_description", "timeout")],
            ..JSpan::default()
        };
        let request = PostSpansRequest { batch: Some(JBatch { spans: vec![span], process: Some(JProcess { service_name: "frontend".into(), tags: vec![] }) }) };
        grpc.ready().await.expect("ready");
        let path = http::uri::PathAndQuery::from_static("/jaeger.api_v2.CollectorService/PostSpans");
        let codec = oxcol_core::grpc::RawCodec::<bytes::Bytes>::default();
        grpc.unary(tonic::Request::new(bytes::Bytes::from(request.encode_to_vec())), path.clone(), codec).await.expect("PostSpans succeeds");
        grpc.ready().await.expect("ready");
        let codec = oxcol_core::grpc::RawCodec::<bytes::Bytes>::default();
        let error = grpc.unary(tonic::Request::new(bytes::Bytes::from_static(b"\x0a\x05\x0a\x03abc")), path, codec).await.expect_err("a malformed batch is refused");
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");

        let stats = wait_sink(&sink, Duration::from_secs(10), |s| s.traces.items >= 3).await;
        assert_eq!(stats.traces.items, 3, "log:\n{}", oxcol.log());
        let spans = recorded_spans(&record);
        for (name, service) in [("http-span", "billing"), ("udp-span", "agent-svc")] {
            let (resource, span) = spans.iter().find(|(_, s)| s.name == name).unwrap_or_else(|| panic!("{name} arrived: {spans:?}"));
            assert_eq!(find(resource, "service.name"), Some(&text(service)));
            assert_eq!(find(resource, "host.name"), Some(&text("node-7")), "hostname is renamed");
            assert_eq!(span.trace_id, trace_id(1, 2), "high then low");
            assert_eq!(span.span_id, 3u64.to_be_bytes());
            assert_eq!(span.parent_span_id, 4u64.to_be_bytes());
            assert_eq!((span.start_time_unix_nano, span.end_time_unix_nano), (1_700_000_000_000_000_000, 1_700_000_000_001_500_000));
            assert_eq!(span.kind, SpanKind::Server as i32);
            assert_eq!(span.status.as_ref().map(|s| s.code), Some(StatusCode::Error as i32), "503 is an error");
            assert_eq!(find(&span.attributes, "http.status_code"), Some(&Value::IntValue(503)));
        }
        let (resource, span) = spans.iter().find(|(_, s)| s.name == "grpc-span").expect("the gRPC span arrived");
        assert_eq!(find(resource, "service.name"), Some(&text("frontend")));
        assert_eq!(span.parent_span_id, 8u64.to_be_bytes());
        assert!(span.links.is_empty());
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(span.status.as_ref().map(|s| (s.code, s.message.as_str())), Some((StatusCode::Error as i32, "timeout")));
        assert!(span.attributes.is_empty(), "{:?}", span.attributes);
        assert_eq!(span.end_time_unix_nano - span.start_time_unix_nano, 2_000);

        for transport in ["grpc", "collector_http", "udp_thrift_compact"] {
            assert_eq!(oxcol.metric("otelcol_receiver_accepted_spans", &[("receiver", "jaeger"), ("transport", transport)]).await, 1.0, "{transport}");
        }
        let malformed = oxcol
            .wait_metric("oxcol_receiver_rejected_requests", &[("receiver", "jaeger"), ("transport", "udp_thrift_compact"), ("reason", "malformed")], Duration::from_secs(5), |v| v >= 1.0)
            .await;
        assert_eq!(malformed, 1.0);
        let _ = std::fs::remove_dir_all(&record);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_sampling_is_refused_with_advice() {
    let dir = std::env::temp_dir().join(format!("oxcol-jaeger-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creates the temp dir");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        "receivers:\n  jaeger:\n    protocols:\n      grpc:\n    remote_sampling:\n      host_endpoint: 127.0.0.1:5778\nexporters:\n  debug:\nservice:\n  pipelines:\n    traces:\n      receivers: [jaeger]\n      exporters: [debug]\n",
    )
    .expect("writes the config");
    let output = std::process::Command::new(oxcol_binary())
        .arg("validate")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("runs oxcol validate");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("jaegerremotesampling"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

// --- differential test against the Collector oracle (docs/oracle.md) ---

/// A gRPC batch that exercises every translation rule the gRPC path has.
fn rich_grpc_request() -> Vec<u8> {
    let typed = |key: &str, v_type: i32| JKeyValue {
        key: key.into(),
        v_type,
        ..JKeyValue::default()
    };
    let span = |id: u64, name: &str, tags: Vec<JKeyValue>| JSpan {
        trace_id: trace_id(0xabc, 0xdef),
        span_id: id.to_be_bytes().to_vec(),
        operation_name: name.into(),
        start_time: Some(Timestamp {
            seconds: 1_700_000_100,
            nanos: 5,
        }),
        duration: Some(Timestamp {
            seconds: 1,
            nanos: 7,
        }),
        tags,
        ..JSpan::default()
    };
    let mut root = span(
        1,
        "root",
        vec![
            jstr("span.kind", "server"),
            JKeyValue {
                v_bool: true,
                ..typed("error", 1)
            },
            jstr("http.status_message", "gateway"),
            JKeyValue {
                v_int64: 42,
                ..typed("count", 2)
            },
            JKeyValue {
                v_float64: 0.25,
                ..typed("ratio", 3)
            },
            JKeyValue {
                v_binary: vec![0, 1, 2],
                ..typed("raw", 4)
            },
            jstr("w3c.tracestate", "k=v"),
            jstr("otel.library.name", "old.lib"),
            jstr("otel.library.version", "0.9"),
        ],
    );
    root.logs = vec![
        JLog {
            timestamp: Some(Timestamp {
                seconds: 1_700_000_100,
                nanos: 500,
            }),
            fields: vec![jstr("event", "cache miss"), jstr("key", "u1")],
        },
        JLog {
            timestamp: Some(Timestamp {
                seconds: 1_700_000_101,
                nanos: 0,
            }),
            fields: vec![],
        },
    ];
    root.flags = 1;
    let mut child = span(
        2,
        "child",
        vec![
            JKeyValue {
                v_int64: 404,
                ..typed("http.status_code", 2)
            },
            jstr("span.kind", "client"),
        ],
    );
    child.flags = 0x107;
    child.references = vec![
        JSpanRef {
            trace_id: trace_id(0xabc, 0xdef),
            span_id: 1u64.to_be_bytes().to_vec(),
            ref_type: 0,
        },
        JSpanRef {
            trace_id: trace_id(9, 9),
            span_id: 5u64.to_be_bytes().to_vec(),
            ref_type: 1,
        },
    ];
    let mut follower = span(
        3,
        "follower",
        vec![
            jstr("otel.status_code", "ok"),
            jstr("otel.scope.name", "new.lib"),
            jstr("otel.scope.version", "2.0"),
        ],
    );
    follower.references = vec![JSpanRef {
        trace_id: trace_id(0xabc, 0xdef),
        span_id: 2u64.to_be_bytes().to_vec(),
        ref_type: 1,
    }];
    follower.process = Some(JProcess {
        service_name: "worker".into(),
        tags: vec![jstr("jaeger.version", "Go-2.30.0")],
    });
    let process = JProcess {
        service_name: "api".into(),
        tags: vec![
            jstr("hostname", "h1"),
            JKeyValue {
                v_bool: true,
                ..typed("canary", 1)
            },
        ],
    };
    PostSpansRequest {
        batch: Some(JBatch {
            spans: vec![root, child, follower],
            process: Some(process),
        }),
    }
    .encode_to_vec()
}

struct Ports {
    grpc: u16,
    http: u16,
    compact: u16,
    binary: u16,
}

/// Runs `binary` (the oracle or oxcol) with a jaeger receiver on all four protocols,
/// sends the same input, and returns the canonical lines of what reached the sink.
async fn run_system(binary: &Path, name: &str) -> Vec<String> {
    let (sink, record) = recording_sink(name).await;
    let ports = Ports {
        grpc: free_port(),
        http: free_port(),
        compact: free_port(),
        binary: free_port(),
    };
    let config = format!(
        "receivers:\n  jaeger:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{}\n      thrift_http:\n        endpoint: 127.0.0.1:{}\n      thrift_compact:\n        endpoint: 127.0.0.1:{}\n      thrift_binary:\n        endpoint: 127.0.0.1:{}\n\
         exporters:\n  otlp:\n    endpoint: {}\n    tls:\n      insecure: true\n\
         service:\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n    traces:\n      receivers: [jaeger]\n      exporters: [otlp]\n",
        ports.grpc, ports.http, ports.compact, ports.binary, sink.grpc_addr
    );
    let config_path = record.with_extension("yaml");
    std::fs::write(&config_path, config).expect("writes the config");
    let log_path = record.with_extension("log");
    let _child = oxcol_integration::child::spawn_logged(
        std::process::Command::new(binary)
            .arg("--config")
            .arg(&config_path),
        &log_path,
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", ports.grpc))
        .await
        .is_err()
        || tokio::net::TcpStream::connect(("127.0.0.1", ports.http))
            .await
            .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} did not listen\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // UDP sockets cannot be probed: give them a moment after the TCP listeners.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (status, answer) = post(
        &format!("http://127.0.0.1:{}/api/traces", ports.http),
        "application/x-thrift",
        binary_batch(&ThriftSpan {
            name: "http-span",
            service: "billing",
        }),
    )
    .await;
    assert_eq!(status, 202, "{name}: {answer}");
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("binds a UDP socket");
    socket
        .send_to(
            &compact_emit_batch(&ThriftSpan {
                name: "compact-span",
                service: "agent-a",
            }),
            ("127.0.0.1", ports.compact),
        )
        .await
        .expect("sends");
    let mut binary_message = (0x8001_0000u32 | 4).to_be_bytes().to_vec();
    binary_string(&mut binary_message, "emitBatch");
    binary_message.extend_from_slice(&1i32.to_be_bytes());
    binary_field(&mut binary_message, 12, 1);
    binary_message.extend_from_slice(&binary_batch(&ThriftSpan {
        name: "binary-span",
        service: "agent-b",
    }));
    binary_message.push(0);
    socket
        .send_to(&binary_message, ("127.0.0.1", ports.binary))
        .await
        .expect("sends");
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", ports.grpc))
            .expect("a URI")
            .connect()
            .await
            .expect("connects");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static("/jaeger.api_v2.CollectorService/PostSpans");
    grpc.unary(
        tonic::Request::new(bytes::Bytes::from(rich_grpc_request())),
        path,
        oxcol_core::grpc::RawCodec::<bytes::Bytes>::default(),
    )
    .await
    .unwrap_or_else(|status| panic!("{name}: PostSpans failed: {status:?}\n{}", log()));

    let stats = wait_sink(&sink, Duration::from_secs(15), |s| s.traces.items >= 6).await;
    assert_eq!(
        stats.traces.items,
        6,
        "{name}: 3 Thrift spans and 3 gRPC spans\n{}",
        log()
    );
    // Anything more would show up within this time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut output = oxcol_integration::oracle::canonical::Output::default();
    for entry in std::fs::read_dir(&record)
        .expect("reads the record dir")
        .filter_map(Result::ok)
    {
        if entry.path().to_string_lossy().ends_with("-traces.pb") {
            output.traces.push(
                ExportTraceServiceRequest::decode(
                    std::fs::read(entry.path())
                        .expect("reads a record")
                        .as_slice(),
                )
                .expect("a traces request"),
            );
        }
    }
    let _ = std::fs::remove_dir_all(&record);
    let _ = std::fs::remove_file(&config_path);
    oxcol_integration::oracle::canonical::canonical_lines(&output, Default::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jaeger_translation_matches_the_collector_oracle() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let oracle = oxcol_integration::oracle::oracle_binary(&repo)
        .unwrap_or_else(|problem| panic!("{problem}"));
    bounded(Duration::from_secs(90), async {
        let expected = run_system(&oracle, "oracle").await;
        let actual = run_system(&oxcol_binary(), "oxcol").await;
        if let Some(difference) =
            oxcol_integration::oracle::diff::diff("otelcol", &expected, "oxcol", &actual)
        {
            panic!(
                "oxcol's OTLP differs from the Collector's for the same Jaeger input:\n{difference}"
            );
        }
    })
    .await;
}
