use std::collections::HashMap;

use bytes::Bytes;
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use prost::Message;

use super::translate::{
    NO_SERVICE_NAME, START_TIME_ABSENT, parse_json_v2, parse_proto_v2, to_otlp, typed_tag_value,
};
use super::*;

fn convert(json: &str, parse_string_tags: bool) -> Vec<ResourceSpans> {
    to_otlp(
        parse_json_v2(json.as_bytes()).expect("fixture parses"),
        parse_string_tags,
    )
    .expect("fixture converts")
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn string(value: &str) -> Value {
    Value::StringValue(value.to_string())
}

fn only_span(resource_spans: &[ResourceSpans]) -> &Span {
    assert_eq!(resource_spans.len(), 1);
    assert_eq!(resource_spans[0].scope_spans.len(), 1);
    &resource_spans[0].scope_spans[0].spans[0]
}

const CLIENT_SPAN: &str = r#"[{
  "traceId": "5af7183fb1d4cf5f", "id": "352bff9a74ca9ad2", "parentId": "6b221d5bc9e6496c",
  "name": "get /api", "kind": "CLIENT", "timestamp": 1556604172355737, "duration": 1431, "shared": true,
  "localEndpoint": {"serviceName": "frontend", "ipv4": "192.168.99.1", "port": 8080},
  "remoteEndpoint": {"serviceName": "backend", "ipv6": "2001:db8::c001", "port": 9000},
  "annotations": [{"timestamp": 1556604172355800, "value": "wire send"}],
  "tags": {"http.method": "GET", "http.status_code": "200", "otel.status_code": "STATUS_CODE_ERROR",
           "otel.status_description": "boom", "deployment.environment": "prod", "w3c.tracestate": "k=v"}
}]"#;

#[test]
fn v2_json_maps_ids_kind_endpoints_times_events_and_resource() {
    let out = convert(CLIENT_SPAN, false);
    let resource = out[0].resource.as_ref().unwrap();
    assert_eq!(
        attr(&resource.attributes, "service.name"),
        Some(&string("frontend"))
    );
    assert_eq!(
        attr(&resource.attributes, "deployment.environment"),
        Some(&string("prod")),
        "resource semconv tags move to the resource"
    );
    let span = only_span(&out);
    // A 64-bit trace id is padded with a zero high half.
    assert_eq!(
        span.trace_id,
        [
            0, 0, 0, 0, 0, 0, 0, 0, 0x5a, 0xf7, 0x18, 0x3f, 0xb1, 0xd4, 0xcf, 0x5f
        ]
    );
    assert_eq!(span.span_id, 0x352bff9a74ca9ad2u64.to_be_bytes());
    assert_eq!(span.parent_span_id, 0x6b221d5bc9e6496cu64.to_be_bytes());
    assert_eq!(span.trace_state, "k=v");
    assert_eq!(span.kind, SpanKind::Client as i32);
    assert_eq!(span.start_time_unix_nano, 1_556_604_172_355_737_000);
    assert_eq!(
        span.end_time_unix_nano,
        1_556_604_172_355_737_000 + 1_431_000
    );
    let status = span.status.as_ref().unwrap();
    assert_eq!(
        (status.code, status.message.as_str()),
        (StatusCode::Error as i32, "boom")
    );
    assert_eq!(
        attr(&span.attributes, "network.local.address"),
        Some(&string("192.168.99.1"))
    );
    assert_eq!(
        attr(&span.attributes, "net.host.port"),
        Some(&Value::IntValue(8080))
    );
    assert_eq!(
        attr(&span.attributes, "service.peer.name"),
        Some(&string("backend"))
    );
    assert_eq!(
        attr(&span.attributes, "network.peer.address"),
        Some(&string("2001:db8::c001"))
    );
    assert_eq!(
        attr(&span.attributes, "net.peer.port"),
        Some(&Value::IntValue(9000))
    );
    assert_eq!(
        attr(&span.attributes, "http.status_code"),
        Some(&string("200")),
        "strings stay strings by default"
    );
    for consumed in [
        "otel.status_code",
        "otel.status_description",
        "w3c.tracestate",
        "deployment.environment",
    ] {
        assert!(
            attr(&span.attributes, consumed).is_none(),
            "{consumed} is not a span attribute"
        );
    }
    assert_eq!(span.events.len(), 1);
    assert_eq!(
        (span.events[0].name.as_str(), span.events[0].time_unix_nano),
        ("wire send", 1_556_604_172_355_800_000)
    );
}

#[test]
fn parse_string_tags_types_numbers_and_booleans() {
    let out = convert(
        r#"[{"traceId":"1","id":"2","tags":{"i":"-42","f":"1.5","b":"true","s":"1.5.3","e":"","big":"99999999999999999999"}}]"#,
        true,
    );
    let span = only_span(&out);
    assert_eq!(attr(&span.attributes, "i"), Some(&Value::IntValue(-42)));
    assert_eq!(attr(&span.attributes, "f"), Some(&Value::DoubleValue(1.5)));
    assert_eq!(attr(&span.attributes, "b"), Some(&Value::BoolValue(true)));
    assert_eq!(attr(&span.attributes, "s"), Some(&string("1.5.3")));
    assert_eq!(attr(&span.attributes, "e"), Some(&string("")));
    assert_eq!(
        attr(&span.attributes, "big"),
        Some(&Value::IntValue(i64::MAX)),
        "out of range saturates as Go does"
    );
    assert_eq!(
        typed_tag_value("True"),
        string("True"),
        "only lower-case booleans"
    );
}

#[test]
fn kinds_status_and_error_tag() {
    let out = convert(
        r#"[
        {"traceId":"1","id":"1","kind":"SERVER","localEndpoint":{"serviceName":"a"}},
        {"traceId":"1","id":"2","kind":"PRODUCER","localEndpoint":{"serviceName":"a"}},
        {"traceId":"1","id":"3","kind":"CONSUMER","localEndpoint":{"serviceName":"a"}},
        {"traceId":"1","id":"4","tags":{"span.kind":"internal","error":"true"},"localEndpoint":{"serviceName":"a"}},
        {"traceId":"1","id":"5","tags":{"error":"timeout","otel.status_code":"STATUS_CODE_OK"},"localEndpoint":{"serviceName":"a"}},
        {"traceId":"1","id":"6","localEndpoint":{"serviceName":"a"}}
    ]"#,
        false,
    );
    let spans = &out[0].scope_spans[0].spans;
    let kinds: Vec<i32> = spans.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            SpanKind::Server,
            SpanKind::Producer,
            SpanKind::Consumer,
            SpanKind::Internal,
            SpanKind::Unspecified,
            SpanKind::Unspecified
        ]
        .map(|k| k as i32)
    );
    assert_eq!(
        spans[3].status.as_ref().unwrap().code,
        StatusCode::Error as i32
    );
    assert!(
        attr(&spans[3].attributes, "error").is_none()
            && attr(&spans[3].attributes, "span.kind").is_none()
    );
    // Any `error` tag makes the status an error (over otel.status_code); a value other
    // than "true" also stays an attribute.
    assert_eq!(
        spans[4].status.as_ref().unwrap().code,
        StatusCode::Error as i32
    );
    assert_eq!(
        attr(&spans[4].attributes, "error"),
        Some(&string("timeout"))
    );
    assert!(spans[5].status.is_none());
}

#[test]
fn one_resource_per_service_one_scope_per_library_and_no_service_name() {
    let out = convert(
        r#"[
        {"traceId":"1","id":"1","localEndpoint":{"serviceName":"b"}},
        {"traceId":"1","id":"2","localEndpoint":{"serviceName":"a"},"tags":{"otel.library.name":"lib","otel.library.version":"1.0"}},
        {"traceId":"1","id":"3","localEndpoint":{"serviceName":"a"}},
        {"traceId":"1","id":"4","tags":{"host.name":"h"}}
    ]"#,
        false,
    );
    let services: Vec<Option<&Value>> = out
        .iter()
        .map(|rs| attr(&rs.resource.as_ref().unwrap().attributes, "service.name"))
        .collect();
    assert_eq!(
        services,
        [None, Some(&string("a")), Some(&string("b"))],
        "sorted by service; {NO_SERVICE_NAME} sorts first"
    );
    assert!(
        out[0].resource.as_ref().unwrap().attributes.is_empty(),
        "no service name: an empty resource"
    );
    assert!(
        attr(&out[0].scope_spans[0].spans[0].attributes, "host.name").is_none(),
        "resource keys never become span attributes"
    );
    let scopes: Vec<(&str, &str)> = out[1]
        .scope_spans
        .iter()
        .map(|s| {
            s.scope
                .as_ref()
                .map(|s| (s.name.as_str(), s.version.as_str()))
                .unwrap()
        })
        .collect();
    assert_eq!(scopes, [("", ""), ("lib", "1.0")]);
}

#[test]
fn service_name_source_and_128_bit_ids_and_missing_timestamp() {
    let out = convert(
        r#"[{"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"a2fb4a1d1a96d312","duration":7,
            "localEndpoint":{"serviceName":"fn"},"tags":{"otlp.service.name.source":"faas.name"}}]"#,
        false,
    );
    let resource = out[0].resource.as_ref().unwrap();
    assert_eq!(attr(&resource.attributes, "faas.name"), Some(&string("fn")));
    assert!(attr(&resource.attributes, "service.name").is_none());
    let span = only_span(&out);
    assert_eq!(
        span.trace_id,
        [
            0x46, 0x3a, 0xc3, 0x5c, 0x9f, 0x64, 0x13, 0xad, 0x48, 0x48, 0x5a, 0x39, 0x53, 0xbb,
            0x61, 0x24
        ]
    );
    assert_eq!(
        (span.start_time_unix_nano, span.end_time_unix_nano),
        (0, 7000)
    );
    assert_eq!(
        attr(&span.attributes, START_TIME_ABSENT),
        Some(&Value::BoolValue(true))
    );
}

#[test]
fn encoded_events_and_links_are_decoded() {
    let out = convert(
        r#"[{"traceId":"1","id":"2",
            "annotations":[{"timestamp":5,"value":"exception|{\"message\":\"a|b\",\"n\":3,\"x\":1.5,\"ok\":true}|2"},{"timestamp":6,"value":"a|b"}],
            "tags":{"otlp.link.0":"0102030405060708090a0b0c0d0e0f10|0102030405060708|st|{\"k\":\"v\"}|1"}}]"#,
        false,
    );
    let span = only_span(&out);
    let event = &span.events[0];
    assert_eq!(
        (event.name.as_str(), event.dropped_attributes_count),
        ("exception", 2)
    );
    assert_eq!(attr(&event.attributes, "message"), Some(&string("a|b")));
    assert_eq!(attr(&event.attributes, "n"), Some(&Value::IntValue(3)));
    assert_eq!(attr(&event.attributes, "x"), Some(&Value::DoubleValue(1.5)));
    assert_eq!(attr(&event.attributes, "ok"), Some(&Value::BoolValue(true)));
    assert_eq!(
        span.events[1].name, "a",
        "fewer than three parts: the name only"
    );
    assert_eq!(span.links.len(), 1);
    assert_eq!(span.links[0].span_id, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(span.links[0].trace_state, "st");
    assert_eq!(span.links[0].dropped_attributes_count, 1);
    assert!(attr(&span.attributes, "otlp.link.0").is_none());
}

#[test]
fn bad_input_is_an_error_never_a_panic() {
    for bad in [
        "",
        "{",
        "{}",
        r#"[{"id":"1"}]"#,
        r#"[{"traceId":"xyz","id":"1"}]"#,
        r#"[{"traceId":"0","id":"1"}]"#,
        r#"[{"traceId":"1","id":"0"}]"#,
        r#"[{"traceId":"1","id":"11111111111111111"}]"#,
        r#"[{"traceId":"111111111111111111111111111111111","id":"1"}]"#,
        r#"[{"traceId":"1","id":"1","tags":{"n":1}}]"#,
        r#"[{"traceId":"1","id":"1","timestamp":-1}]"#,
        r#"[{"traceId":"1","id":"1","annotations":[{"timestamp":1,"value":"e|notjson|1"}]}]"#,
        r#"[{"traceId":"1","id":"1","annotations":[{"timestamp":1,"value":"e|{}|x"}]}]"#,
        r#"[{"traceId":"1","id":"1","tags":{"otlp.link.0":"zz|01|s|{}|0"}}]"#,
        // Found by the fuzz target `zipkin`: a 2-byte character where a hex pair ends.
        r#"[{"traceId":"1","id":"1","tags":{"otlp.link.0":"0102030405060708090a0b0c0d0e0f10|010\u02d403040506070|s|{}|0"}}]"#,
    ] {
        assert!(decode_v2(false, bad.as_bytes(), false).is_err(), "{bad}");
    }
    assert!(decode_v2(true, b"\xff\xff\xff", false).is_err());
    let empty = decode_v2(false, b"[]", false).unwrap();
    assert!(empty.is_empty());
}

#[test]
fn proto_wire_fixture_translates_to_otlp() {
    let spans = parse_proto_v2(&oxcol_core::zipkin_proto::wire_fixture()).expect("fixture decodes");
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(
        (span.trace_id_high, span.trace_id_low),
        (0x0101010101010101, 0x0101010101010101)
    );
    assert_eq!(
        (span.id, span.parent_id, span.name.as_str()),
        (3, Some(9), "n")
    );
    assert_eq!((span.timestamp, span.duration), (1_000_000, 5));
    let local = span.local_endpoint.as_ref().unwrap();
    assert_eq!(
        (local.service_name.as_str(), local.ipv4, local.port),
        ("svc", Some([10, 0, 0, 1].into()), 8080)
    );
    assert_eq!(span.annotations, [(7, "hi".to_string())]);
    assert_eq!(span.tags.get("k").map(String::as_str), Some("v"));
    let out = to_otlp(spans, false).unwrap();
    assert_eq!(only_span(&out).kind, SpanKind::Server as i32);
}

#[test]
fn proto_rejects_bad_ids() {
    let span = |trace_id: Vec<u8>, id: Vec<u8>| {
        proto::ListOfSpans {
            spans: vec![proto::Span {
                trace_id,
                id,
                ..Default::default()
            }],
        }
        .encode_to_vec()
    };
    assert!(parse_proto_v2(&span(vec![1; 8], vec![2; 8])).is_ok());
    assert!(parse_proto_v2(&span(vec![1; 5], vec![2; 8])).is_err());
    assert!(parse_proto_v2(&span(vec![0; 16], vec![2; 8])).is_err());
    assert!(parse_proto_v2(&span(vec![1; 16], vec![2; 4])).is_err());
}

#[test]
fn config_defaults_legacy_and_protocols_forms() {
    assert_eq!(Config::default().server().endpoint, "127.0.0.1:9411");
    assert!(Config::default().validate().is_empty());
    let legacy = Config {
        endpoint: Some("0.0.0.0:9412".into()),
        ..Config::default()
    };
    assert_eq!(legacy.server().endpoint, "0.0.0.0:9412");
    let nested = Config {
        protocols: Some(Protocols {
            http: Some(ServerConfig {
                endpoint: ":9413".into(),
                ..ServerConfig::default()
            }),
        }),
        ..Config::default()
    };
    assert_eq!(nested.server().endpoint, ":9413");
    assert!(nested.validate().is_empty(), "{:?}", nested.validate());
    let both = Config {
        endpoint: Some(":1".into()),
        ..nested.clone()
    };
    assert!(both.validate()[0].contains("move them under protocols.http"));
    let empty_protocols = Config {
        protocols: Some(Protocols::default()),
        ..Config::default()
    };
    assert!(empty_protocols.validate()[0].contains("enable http"));
    let bad = Config {
        endpoint: Some("nowhere".into()),
        max_request_body_size: Some(0),
        max_connections: Some(0),
        compression_algorithms: Some(vec!["brotli".into()]),
        ..Config::default()
    };
    assert_eq!(bad.validate().len(), 4, "{:?}", bad.validate());
}

#[tokio::test]
async fn serves_v2_gzip_and_v1_json_and_answers_202_400_415() {
    use std::io::Write;
    let (sender, mut receiver) = tokio::sync::mpsc::channel(4);
    let mut consumers = Consumers::new();
    consumers.add(
        Signal::Traces,
        oxcol_core::PipelineInput {
            pipeline: "traces".into(),
            sender,
            admissions: vec![],
        },
    );
    let registry = Registry::new();
    let shutdown = CancellationToken::new();
    let config = Config {
        endpoint: Some("127.0.0.1:0".into()),
        ..Config::default()
    };
    let running = start(
        "zipkin",
        &config,
        consumers,
        &registry,
        shutdown.clone(),
        &HashMap::new(),
    )
    .await
    .unwrap();
    // The pipeline: accept everything, keep what arrived.
    let pipeline = tokio::spawn(async move {
        let mut spans = 0;
        while let Some(envelope) = receiver.recv().await {
            spans += envelope.batch.items();
            let _ = envelope.ack.send(Ok(()));
        }
        spans
    });
    let url = format!("http://{}/api/v2/spans", running.address);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(CLIENT_SPAN.as_bytes()).unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let post = |url: &str, body: Vec<u8>, encoding: Option<&'static str>| {
        let mut request = http::Request::post(url).header("content-type", "application/json");
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        client.request(
            request
                .body(http_body_util::Full::new(Bytes::from(body)))
                .unwrap(),
        )
    };
    let accepted = post(&url, gz.finish().unwrap(), Some("gzip"))
        .await
        .unwrap();
    assert_eq!(accepted.status(), http::StatusCode::ACCEPTED);
    let bad = post(&url, b"[{\"traceId\":\"zz\"}]".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(bad.status(), http::StatusCode::BAD_REQUEST);
    let text = bad.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&text).contains("traceId"),
        "{text:?}"
    );
    let v1 = post(
        &format!("http://{}/api/v1/spans", running.address),
        V1_JSON.as_bytes().to_vec(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        v1.status(),
        http::StatusCode::ACCEPTED,
        "Zipkin v1 JSON is served"
    );
    let thrift = client
        .request(
            http::Request::post(format!("http://{}/api/v1/spans", running.address))
                .header("content-type", "application/x-thrift")
                .body(http_body_util::Full::new(Bytes::from_static(b"\x0c")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        thrift.status(),
        http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "v1 thrift is refused with a reason"
    );
    shutdown.cancel();
    running.task.await.unwrap();
    assert_eq!(pipeline.await.unwrap(), 3);
    assert!(
        registry
            .render_prometheus()
            .contains("otelcol_receiver_accepted_spans{receiver=\"zipkin\",transport=\"http\"} 3"),
        "{}",
        registry.render_prometheus()
    );
}

const V1_JSON: &str = r#"[
  {"traceId": "5af7183fb1d4cf5f", "id": "352bff9a74ca9ad2", "parentId": "6b221d5bc9e6496c", "name": "get", "timestamp": 1000, "duration": 500,
   "annotations": [
     {"timestamp": 1000, "value": "cs", "endpoint": {"serviceName": "front", "ipv4": "10.0.0.1", "port": 80}},
     {"timestamp": 1200, "value": "retry", "endpoint": {"serviceName": "front", "ipv4": "10.0.0.1", "port": 80}},
     {"timestamp": 1500, "value": "cr", "endpoint": {"serviceName": "front", "ipv4": "10.0.0.1", "port": 80}}],
   "binaryAnnotations": [{"key": "http.status_code", "value": "503"}, {"key": "http.path", "value": "/x"}]},
  {"traceId": "463ac35c9f6413ad48485a3953bb6124", "id": "a2fb4a1d1a96d312", "name": "work",
   "annotations": [{"timestamp": 2000, "value": "sr"}, {"timestamp": 2600, "value": "ss"}],
   "binaryAnnotations": [{"key": "lc", "value": "worker", "endpoint": {"serviceName": "back"}},
                         {"key": "error", "value": "oops"}, {"key": "census.status_description", "value": "bad"}]}
]"#;

#[test]
fn v1_json_maps_core_annotations_binary_annotations_status_and_endpoints() {
    let out = super::v1::parse_json_v1(V1_JSON.as_bytes(), false, 42).unwrap();
    assert_eq!(out.len(), 2, "one resource per endpoint");
    let front = &out[0];
    let resource = &front.resource.as_ref().unwrap().attributes;
    assert_eq!(attr(resource, "service.name"), Some(&string("front")));
    assert_eq!(
        (attr(resource, "ipv4"), attr(resource, "port")),
        (Some(&string("10.0.0.1")), Some(&string("80")))
    );
    let span = &front.scope_spans[0].spans[0];
    assert_eq!(span.kind, SpanKind::Client as i32);
    assert_eq!(span.trace_id[8..], 0x5af7183fb1d4cf5fu64.to_be_bytes());
    assert_eq!(span.parent_span_id, 0x6b221d5bc9e6496cu64.to_be_bytes());
    assert_eq!(
        (span.start_time_unix_nano, span.end_time_unix_nano),
        (1_000_000, 1_500_000)
    );
    assert_eq!(
        span.events
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        ["retry"],
        "core annotations are not events"
    );
    assert_eq!(
        span.status.as_ref().unwrap().code,
        StatusCode::Error as i32,
        "HTTP 503 is an error"
    );
    assert_eq!(
        attr(&span.attributes, "http.status_code"),
        Some(&string("503")),
        "the HTTP code stays an attribute"
    );
    let back = &out[1];
    assert_eq!(
        attr(&back.resource.as_ref().unwrap().attributes, "service.name"),
        Some(&string("back")),
        "no named core annotation: the binary annotations' service"
    );
    let span = &back.scope_spans[0].spans[0];
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(
        (span.start_time_unix_nano, span.end_time_unix_nano),
        (2_000_000, 2_600_000),
        "times from the annotations when the span has none"
    );
    assert_eq!(
        attr(&span.attributes, "component"),
        Some(&string("worker")),
        "lc is renamed component"
    );
    let status = span.status.as_ref().unwrap();
    assert_eq!(
        (status.code, status.message.as_str()),
        (StatusCode::Error as i32, "bad")
    );
    assert!(attr(&span.attributes, "error").is_none());
}

#[test]
fn v1_json_without_times_or_endpoints_and_bad_ids() {
    let out = super::v1::parse_json_v1(
        br#"[{"traceId":"0000000000000001","id":"0000000000000002"}]"#,
        false,
        42,
    )
    .unwrap();
    assert_eq!(
        attr(
            &out[0].resource.as_ref().unwrap().attributes,
            "service.name"
        ),
        Some(&string("unknown-service"))
    );
    let span = &out[0].scope_spans[0].spans[0];
    assert_eq!(
        (span.start_time_unix_nano, span.end_time_unix_nano),
        (42, 42),
        "no time at all: now, marked absent"
    );
    assert_eq!(
        attr(&span.attributes, START_TIME_ABSENT),
        Some(&Value::BoolValue(true))
    );
    for bad in [
        "{",
        r#"[{"traceId":"1","id":"0000000000000002"}]"#,
        r#"[{"traceId":"0000000000000000","id":"0000000000000002"}]"#,
        r#"[{"traceId":"000000000000000g","id":"0000000000000002"}]"#,
        r#"[{"traceId":"0000000000000001","id":"2"}]"#,
        r#"[{"traceId":"0000000000000001","id":"0000000000000002","parentId":"00"}]"#,
        r#"[{"traceId":"0000000000000001","id":"0000000000000002","binaryAnnotations":[{"key":"a","value":true}]}]"#,
        r#"[{"traceId":"0000000000000001","id":"00000000000000é"}]"#,
    ] {
        assert!(decode_v1(bad.as_bytes(), false).is_err(), "{bad}");
    }
}

#[test]
fn otel_scope_tags_win_over_otel_library_tags() {
    let out = convert(
        r#"[{"traceId":"1","id":"2","timestamp":5,"localEndpoint":{"serviceName":"a"},
            "tags":{"otel.library.name":"old","otel.scope.name":"new","otel.scope.version":"2","k8s.container.restart_count":"1"}}]"#,
        false,
    );
    let scope = out[0].scope_spans[0].scope.as_ref().unwrap();
    assert_eq!((scope.name.as_str(), scope.version.as_str()), ("new", "2"));
    let resource = &out[0].resource.as_ref().unwrap().attributes;
    assert_eq!(
        attr(resource, "k8s.container.restart_count"),
        Some(&string("1"))
    );
    assert!(
        out[0].scope_spans[0].spans[0].attributes.is_empty(),
        "{:?}",
        out[0].scope_spans[0].spans[0].attributes
    );
}

#[test]
fn proto_ipv4_may_come_in_the_16_byte_mapped_form() {
    let mut mapped = vec![0u8; 10];
    mapped.extend_from_slice(&[0xff, 0xff, 10, 1, 2, 3]);
    let body = proto::ListOfSpans {
        spans: vec![proto::Span {
            trace_id: vec![1; 16],
            id: vec![2; 8],
            local_endpoint: Some(proto::Endpoint {
                service_name: "s".into(),
                ipv4: mapped,
                ..Default::default()
            }),
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let spans = parse_proto_v2(&body).unwrap();
    assert_eq!(
        spans[0].local_endpoint.as_ref().unwrap().ipv4,
        Some([10, 1, 2, 3].into())
    );
}
