use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use super::translate::{NO_SERVICE_NAME, encode_json, encode_proto, from_otlp, value_as_string};
use super::*;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(text: &str) -> Value {
    Value::StringValue(text.to_string())
}

fn client_span() -> Span {
    Span {
        trace_id: vec![
            0, 0, 0, 0, 0, 0, 0, 0, 0x5a, 0xf7, 0x18, 0x3f, 0xb1, 0xd4, 0xcf, 0x5f,
        ],
        span_id: 0x352bff9a74ca9ad2u64.to_be_bytes().to_vec(),
        parent_span_id: 0x6b221d5bc9e6496cu64.to_be_bytes().to_vec(),
        trace_state: "k=v".into(),
        name: "get /api".into(),
        kind: SpanKind::Client as i32,
        start_time_unix_nano: 1_556_604_172_355_737_000,
        end_time_unix_nano: 1_556_604_172_355_737_000 + 1_431_400,
        attributes: vec![
            kv("http.method", s("GET")),
            kv("http.status_code", Value::IntValue(200)),
            kv("network.local.address", s("192.168.99.1")),
            kv("net.host.ip", s("10.0.0.1")),
            kv("net.host.port", Value::IntValue(8080)),
            kv("peer.service", s("Backend")),
            kv("network.peer.address", s("2001:db8::c001")),
            kv("net.peer.port", Value::IntValue(9000)),
            kv("error", s("false")),
        ],
        events: vec![
            Event {
                time_unix_nano: 1_556_604_172_355_800_000,
                name: "wire send".into(),
                ..Default::default()
            },
            Event {
                time_unix_nano: 1_556_604_172_355_900_000,
                name: "exception".into(),
                attributes: vec![kv("b", Value::BoolValue(true)), kv("a", s("x|y"))],
                dropped_attributes_count: 2,
            },
        ],
        links: vec![Link {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            trace_state: "s".into(),
            attributes: vec![kv("n", Value::IntValue(3))],
            dropped_attributes_count: 1,
            ..Default::default()
        }],
        status: Some(Status {
            code: StatusCode::Error as i32,
            message: "boom".into(),
        }),
        ..Default::default()
    }
}

fn traces(resource: Vec<KeyValue>, scope: &str, spans: Vec<Span>) -> Vec<ResourceSpans> {
    vec![ResourceSpans {
        resource: Some(Resource {
            attributes: resource,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: scope.into(),
                version: "1.2".into(),
                ..Default::default()
            }),
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }]
}

#[test]
fn maps_ids_kind_endpoints_status_events_links_and_resource_tags() {
    let input = traces(
        vec![kv("service.name", s("Frontend")), kv("host.name", s("h1"))],
        "lib",
        vec![client_span()],
    );
    let spans = from_otlp(&input).unwrap();
    let span = &spans[0];
    assert_eq!(
        (
            span.trace_id_high,
            span.trace_id_low,
            span.id,
            span.parent_id
        ),
        (
            0,
            0x5af7183fb1d4cf5f,
            0x352bff9a74ca9ad2,
            Some(0x6b221d5bc9e6496c)
        )
    );
    assert_eq!(span.kind, Some("CLIENT"));
    let local = span.local_endpoint.as_ref().unwrap();
    assert_eq!(
        (local.service_name.as_str(), local.ip, local.port),
        ("Frontend", Some("192.168.99.1".parse().unwrap()), 8080)
    );
    let remote = span.remote_endpoint.as_ref().unwrap();
    assert_eq!(
        (remote.service_name.as_str(), remote.ip, remote.port),
        ("Backend", Some("2001:db8::c001".parse().unwrap()), 9000)
    );
    let tag = |key: &str| span.tags.get(key).map(String::as_str);
    assert_eq!(
        tag("error"),
        Some("true"),
        "an error status sets error=true, replacing the attribute"
    );
    assert_eq!(tag("otel.status_code"), Some("STATUS_CODE_ERROR"));
    assert_eq!(tag("otel.status_description"), Some("boom"));
    assert_eq!(tag("w3c.tracestate"), Some("k=v"));
    assert_eq!(
        tag("http.status_code"),
        Some("200"),
        "typed attributes become strings"
    );
    assert_eq!(
        tag("host.name"),
        Some("h1"),
        "resource attributes become tags"
    );
    assert_eq!(
        tag("net.host.ip"),
        Some("10.0.0.1"),
        "v0.161 reads only network.local.address; the old key stays a tag"
    );
    assert_eq!(
        (tag("otel.library.name"), tag("otel.library.version")),
        (Some("lib"), Some("1.2"))
    );
    for moved in [
        "service.name",
        "network.local.address",
        "net.host.port",
        "peer.service",
        "network.peer.address",
        "net.peer.port",
    ] {
        assert_eq!(tag(moved), None, "{moved} lives in an endpoint");
    }
    assert_eq!(
        span.annotations[0],
        (1_556_604_172_355_800_000, "wire send".to_string())
    );
    assert_eq!(span.annotations[1].1, r#"exception|{"a":"x|y","b":true}|2"#);
    assert_eq!(
        tag("otlp.link.0"),
        Some("01010101010101010101010101010101|0202020202020202|s|{\"n\":3}|1")
    );
}

#[test]
fn json_encoding_is_zipkin_v2() {
    let input = traces(
        vec![kv("service.name", s("Frontend"))],
        "",
        vec![client_span()],
    );
    let json: serde_json::Value =
        serde_json::from_slice(&encode_json(&from_otlp(&input).unwrap()).unwrap()).unwrap();
    let span = &json[0];
    assert_eq!(
        span["traceId"], "5af7183fb1d4cf5f",
        "a zero high half is written as 16 digits"
    );
    assert_eq!(span["id"], "352bff9a74ca9ad2");
    assert_eq!(span["parentId"], "6b221d5bc9e6496c");
    assert_eq!(span["kind"], "CLIENT");
    assert_eq!(span["timestamp"], 1_556_604_172_355_737u64);
    assert_eq!(span["duration"], 1431, "rounded to the microsecond");
    assert_eq!(
        span["localEndpoint"],
        serde_json::json!({"serviceName": "frontend", "ipv4": "192.168.99.1", "port": 8080})
    );
    assert_eq!(
        span["remoteEndpoint"],
        serde_json::json!({"serviceName": "backend", "ipv6": "2001:db8::c001", "port": 9000})
    );
    assert_eq!(
        span["annotations"][0],
        serde_json::json!({"timestamp": 1_556_604_172_355_800u64, "value": "wire send"})
    );
    assert_eq!(span["tags"]["http.method"], "GET");
}

#[test]
fn no_service_name_internal_kind_ok_status_and_absent_start() {
    let mut span = client_span();
    span.kind = SpanKind::Internal as i32;
    span.status = Some(Status {
        code: StatusCode::Ok as i32,
        message: String::new(),
    });
    span.start_time_unix_nano = 0;
    span.end_time_unix_nano = 500;
    span.attributes.clear();
    let spans = from_otlp(&traces(vec![], "", vec![span])).unwrap();
    let span = &spans[0];
    assert_eq!(
        span.local_endpoint.as_ref().unwrap().service_name,
        NO_SERVICE_NAME
    );
    assert_eq!(span.kind, None);
    assert_eq!(
        span.tags.get("span.kind").map(String::as_str),
        Some("internal")
    );
    assert_eq!(
        span.tags.get("otel.status_code").map(String::as_str),
        Some("STATUS_CODE_OK")
    );
    assert!(!span.tags.contains_key("error"));
    assert_eq!(span.start_nanos, None);
    let json: serde_json::Value = serde_json::from_slice(&encode_json(&spans).unwrap()).unwrap();
    assert!(json[0].get("timestamp").is_none());
    assert_eq!(
        json[0]["duration"], 1,
        "a sub-microsecond duration is written as 1"
    );
}

#[test]
fn service_name_fallbacks_record_their_source() {
    for key in [
        "faas.name",
        "k8s.deployment.name",
        "process.executable.name",
    ] {
        let spans = from_otlp(&traces(vec![kv(key, s("svc"))], "", vec![client_span()])).unwrap();
        assert_eq!(
            spans[0].local_endpoint.as_ref().unwrap().service_name,
            "svc"
        );
        assert_eq!(
            spans[0]
                .tags
                .get("otlp.service.name.source")
                .map(String::as_str),
            Some(key)
        );
        assert!(!spans[0].tags.contains_key(key));
    }
}

#[test]
fn spans_without_ids_are_refused() {
    let mut span = client_span();
    span.trace_id = vec![0; 16];
    assert!(
        from_otlp(&traces(vec![], "", vec![span]))
            .unwrap_err()
            .contains("TraceID")
    );
    let mut span = client_span();
    span.span_id = vec![];
    assert!(
        from_otlp(&traces(vec![], "", vec![span]))
            .unwrap_err()
            .contains("SpanID")
    );
    let batch = Batch::from_traces(traces(
        vec![],
        "",
        vec![Span {
            name: "x".into(),
            ..Default::default()
        }],
    ));
    assert!(matches!(
        encode(batch, Format::Json),
        Err(ExportError::Permanent { .. })
    ));
}

#[test]
fn attribute_values_as_strings() {
    assert_eq!(
        value_as_string(Some(&AnyValue {
            value: Some(Value::DoubleValue(3.0))
        })),
        "3"
    );
    assert_eq!(
        value_as_string(Some(&AnyValue {
            value: Some(Value::DoubleValue(1.25))
        })),
        "1.25"
    );
    assert_eq!(
        value_as_string(Some(&AnyValue {
            value: Some(Value::BoolValue(false))
        })),
        "false"
    );
    assert_eq!(
        value_as_string(Some(&AnyValue {
            value: Some(Value::BytesValue(b"hi!?".to_vec()))
        })),
        "aGkhPw=="
    );
    let array = opentelemetry_proto::tonic::common::v1::ArrayValue {
        values: vec![
            AnyValue {
                value: Some(Value::IntValue(1)),
            },
            AnyValue {
                value: Some(s("a")),
            },
        ],
    };
    assert_eq!(
        value_as_string(Some(&AnyValue {
            value: Some(Value::ArrayValue(array))
        })),
        r#"[1,"a"]"#
    );
    assert_eq!(value_as_string(None), "");
}

#[test]
fn proto_output_decodes_as_zipkin_proto3() {
    // What the exporter writes decodes back to the same span.
    let input = traces(vec![kv("service.name", s("svc"))], "", vec![client_span()]);
    let list =
        proto::ListOfSpans::decode(encode_proto(&from_otlp(&input).unwrap()).as_slice()).unwrap();
    let span = &list.spans[0];
    assert_eq!(span.trace_id, client_span().trace_id);
    assert_eq!(
        (span.kind, span.timestamp, span.duration),
        (1, 1_556_604_172_355_737, 1431)
    );
    assert_eq!(
        span.remote_endpoint.as_ref().unwrap().ipv6,
        "2001:db8::c001"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets()
    );
    assert_eq!(span.tags.get("error").map(String::as_str), Some("true"));
}

#[test]
fn config_requires_an_endpoint_and_checks_keys() {
    assert!(Config::default().validate()[0].contains("endpoint is required"));
    let good = Config {
        endpoint: "http://zipkin:9411/api/v2/spans".into(),
        ..Config::default()
    };
    assert!(good.validate().is_empty(), "{:?}", good.validate());
    assert_eq!(good.timeout, GoDuration::from_secs(5));
    let bad = Config {
        endpoint: "zipkin:9411".into(),
        compression: "brotli".into(),
        timeout: GoDuration::from_secs(0),
        ..Config::default()
    };
    assert_eq!(bad.validate().len(), 3, "{:?}", bad.validate());
}

#[test]
fn retries_408_429_5xx_and_drops_other_refusals() {
    let headers = HeaderMap::new();
    for code in [408u16, 429, 500, 502, 503] {
        assert!(
            matches!(
                classify_response(http::StatusCode::from_u16(code).unwrap(), &headers, b""),
                ExportError::Retryable { .. }
            ),
            "{code}"
        );
    }
    for code in [400u16, 401, 404, 413] {
        assert!(
            matches!(
                classify_response(http::StatusCode::from_u16(code).unwrap(), &headers, b"bad"),
                ExportError::Permanent { .. }
            ),
            "{code}"
        );
    }
}

#[tokio::test]
async fn proxy_url_tunnels_through_the_proxy() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let app = axum::Router::new().route(
        "/api/v2/spans",
        axum::routing::post(|| async { http::StatusCode::ACCEPTED }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let tunnels = std::sync::Arc::new(AtomicUsize::new(0));
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let proxy_port =
        crate::otlphttp::tests::connect_proxy(tunnels.clone(), heads.clone(), false).await;
    let config = Config {
        endpoint: format!("http://{address}/api/v2/spans"),
        proxy_url: format!("http://127.0.0.1:{proxy_port}"),
        ..Config::default()
    };
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let exporter = ZipkinExporter::new(&config).unwrap();
    let batch = || Batch::from_traces(traces(vec![], "", vec![client_span()]));
    assert_eq!(exporter.export(batch()).await, Ok(ExportOutcome::default()));
    assert_eq!(tunnels.load(Ordering::SeqCst), 1);
    let head = heads.lock().unwrap()[0].clone();
    assert!(
        head.starts_with(&format!("CONNECT {address} HTTP/1.1\r\n")),
        "{head:?}"
    );
    let bad = Config {
        proxy_url: "socks5://127.0.0.1:1080".into(),
        ..config
    };
    assert_eq!(bad.validate().len(), 1, "{:?}", bad.validate());
    server.abort();
}

#[tokio::test]
async fn posts_json_to_the_endpoint() {
    use axum::routing::post;
    let (sender, mut received) = tokio::sync::mpsc::channel::<(String, Bytes)>(1);
    let app = axum::Router::new().route(
        "/api/v2/spans",
        post(move |headers: HeaderMap, body: Bytes| {
            let sender = sender.clone();
            async move {
                let content_type = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let _ = sender.send((content_type, body)).await;
                http::StatusCode::ACCEPTED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let exporter = ZipkinExporter::new(&Config {
        endpoint: format!("http://{address}/api/v2/spans"),
        ..Config::default()
    })
    .unwrap();
    let batch = Batch::from_traces(traces(
        vec![kv("service.name", s("svc"))],
        "",
        vec![client_span()],
    ));
    assert_eq!(exporter.export(batch).await, Ok(ExportOutcome::default()));
    let (content_type, body) = received.recv().await.unwrap();
    assert_eq!(content_type, "application/json");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json[0]["localEndpoint"]["serviceName"], "svc");
    let missing = ZipkinExporter::new(&Config {
        endpoint: format!("http://{address}/nope"),
        ..Config::default()
    })
    .unwrap();
    let batch = Batch::from_traces(traces(vec![], "", vec![client_span()]));
    assert!(
        matches!(
            missing.export(batch).await,
            Err(ExportError::Permanent { .. })
        ),
        "404 is permanent"
    );
    server.abort();
}

#[test]
fn service_peer_name_wins_over_peer_service_and_scope_attributes_become_tags() {
    let mut span = client_span();
    span.attributes.push(kv("service.peer.name", s("new-name")));
    let mut input = traces(vec![kv("service.name", s("svc"))], "lib", vec![span]);
    input[0].scope_spans[0].scope.as_mut().unwrap().attributes = vec![kv("scope.kind", s("e2e"))];
    let spans = from_otlp(&input).unwrap();
    assert_eq!(
        spans[0].remote_endpoint.as_ref().unwrap().service_name,
        "new-name"
    );
    assert_eq!(
        spans[0].tags.get("peer.service").map(String::as_str),
        Some("Backend"),
        "only the key used is removed"
    );
    assert_eq!(
        spans[0].tags.get("scope.kind").map(String::as_str),
        Some("e2e")
    );
}
