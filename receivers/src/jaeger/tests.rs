use std::collections::HashMap;

use ::http::StatusCode;
use bytes::Bytes;
use http_body_util::BodyExt;
use oxcol_core::grpc::RawCodec;
use prost::Message;
use serde_json::json;

use super::thrift::tests::{binary_emit_batch, compact_emit_batch, encode_binary, full_batch};
use super::*;

fn parse(value: serde_json::Value) -> Config {
    serde_json::from_value(value).unwrap()
}

#[test]
fn protocols_present_with_no_value_take_the_collector_defaults() {
    let config = parse(
        json!({"protocols": {"grpc": null, "thrift_http": null, "thrift_compact": null, "thrift_binary": null}}),
    );
    let p = &config.protocols;
    assert_eq!(p.grpc.as_ref().unwrap().endpoint, "127.0.0.1:14250");
    assert_eq!(p.thrift_http.as_ref().unwrap().endpoint, "127.0.0.1:14268");
    assert_eq!(
        p.thrift_http.as_ref().unwrap().max_request_body_size,
        20 << 20
    );
    let compact = p.thrift_compact.as_ref().unwrap();
    assert_eq!(
        (
            compact.endpoint.as_str(),
            compact.queue_size,
            compact.max_packet_size,
            compact.workers,
            compact.socket_buffer_size
        ),
        ("127.0.0.1:6831", 1000, 65_000, 10, 0)
    );
    assert_eq!(p.thrift_binary.as_ref().unwrap().endpoint, "127.0.0.1:6832");
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    // Absent = off.
    let only =
        parse(json!({"protocols": {"thrift_compact": {"endpoint": "0.0.0.0:7000", "workers": 2}}}));
    assert!(only.protocols.grpc.is_none() && only.protocols.thrift_binary.is_none());
    assert_eq!(
        only.protocols.thrift_compact.as_ref().unwrap().endpoint,
        "0.0.0.0:7000"
    );
    assert_eq!(
        only.protocols.thrift_compact.as_ref().unwrap().queue_size,
        1000
    );
    // Unknown keys are refused.
    assert!(serde_json::from_value::<Config>(json!({"protocols": {"thrift_udp": null}})).is_err());
    assert!(
        serde_json::from_value::<Config>(json!({"protocols": {"grpc": {"endpont": ":1"}}}))
            .is_err()
    );
}

#[test]
fn validation_reports_every_problem() {
    assert!(Config::default().validate()[0].contains("at least one protocol"));
    let config = parse(json!({
        "protocols": {
            "grpc": {"endpoint": "nowhere", "transport": "unix"},
            "thrift_http": {"endpoint": ":0", "compression_algorithms": ["brotli"], "cors": {"allowed_origins": ["https://**.example.com"]}},
            "thrift_compact": {"queue_size": 0, "max_packet_size": 0},
            "thrift_binary": {"workers": 0, "endpoint": "host:port"}
        },
        "remote_sampling": {"host_endpoint": ":5778"}
    }));
    let errors = config.validate();
    assert_eq!(errors.len(), 9, "{errors:#?}");
    assert!(errors[0].contains("jaegerremotesampling"), "{}", errors[0]);
    assert!(
        errors.iter().any(|e| e.contains(
            "protocols.thrift_http.endpoint \":0\": port number must be between 1 and 65535"
        )),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("protocols.thrift_compact.max_packet_size must be greater than 0"))
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("protocols.thrift_http.cors.allowed_origins")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("\"brotli\" is not supported")),
        "{errors:#?}"
    );
    // As in the Collector, a queue_size of 0 and a packet size above 65535 are accepted.
    let lenient = parse(
        json!({"protocols": {"thrift_compact": {"queue_size": 0, "max_packet_size": 70000}}}),
    );
    assert!(lenient.validate().is_empty(), "{:?}", lenient.validate());
    assert!(
        errors
            .iter()
            .any(|e| e.contains("protocols.thrift_binary.workers must be greater than 0"))
    );
}

fn test_pipeline() -> (Consumers, tokio::task::JoinHandle<Vec<oxcol_core::Batch>>) {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<oxcol_core::Envelope>(8);
    let mut consumers = Consumers::new();
    consumers.add(
        Signal::Traces,
        oxcol_core::PipelineInput {
            pipeline: "traces".into(),
            sender,
            admissions: vec![],
        },
    );
    let task = tokio::spawn(async move {
        let mut batches = Vec::new();
        while let Some(envelope) = receiver.recv().await {
            // Refuse batches whose first span is named "refuse-me".
            let refuse = {
                let mut batch = envelope.batch.clone();
                batch
                    .traces_mut()
                    .map(|r| r[0].scope_spans[0].spans[0].name == "refuse-me")
                    .unwrap_or(false)
            };
            if refuse {
                let _ = envelope.ack.send(Err(Refusal::overloaded("queue full")));
            } else {
                batches.push(envelope.batch);
                let _ = envelope.ack.send(Ok(()));
            }
        }
        batches
    });
    (consumers, task)
}

fn local() -> serde_json::Value {
    json!({"endpoint": "127.0.0.1:0"})
}

#[tokio::test]
async fn serves_all_four_protocols_and_answers_errors() {
    let (consumers, pipeline) = test_pipeline();
    let registry = Registry::new();
    let shutdown = CancellationToken::new();
    let config = parse(
        json!({"protocols": {"grpc": local(), "thrift_http": local(), "thrift_compact": local(), "thrift_binary": local()}}),
    );
    let running = start(
        "jaeger",
        &config,
        consumers,
        &registry,
        shutdown.clone(),
        &HashMap::new(),
    )
    .await
    .unwrap();
    let [grpc_address, http_address, compact_address, binary_address] = running.addresses[..]
    else {
        panic!("{:?}", running.addresses)
    };

    // thrift_http: 202, then 400 for a bad body and for a wrong content type.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let post = |content_type: &str, body: Vec<u8>| {
        let request = ::http::Request::post(format!("http://{http_address}/api/traces"))
            .header("content-type", content_type);
        client.request(
            request
                .body(http_body_util::Full::new(Bytes::from(body)))
                .unwrap(),
        )
    };
    let mut body = Vec::new();
    encode_binary(&full_batch(), &mut body);
    assert_eq!(
        post("application/x-thrift", body.clone())
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    let bad = post("application/x-thrift", body[..body.len() / 2].to_vec())
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let text = bad.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&text).starts_with("Unable to process request body: truncated"),
        "{text:?}"
    );
    assert_eq!(
        post("application/json", body.clone())
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );

    // UDP, both encodings; then garbage, which is counted and dropped.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&compact_emit_batch(&full_batch()), compact_address)
        .await
        .unwrap();
    socket
        .send_to(&binary_emit_batch(&full_batch()), binary_address)
        .await
        .unwrap();
    socket
        .send_to(b"\x82\x81garbage", compact_address)
        .await
        .unwrap();

    // gRPC PostSpans: success, then a span the pipeline refuses, then garbage.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc_address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    let span = model::Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        operation_name: "grpc-span".into(),
        start_time: Some(model::Timestamp {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    };
    let request = |span: model::Span| {
        let batch = model::Batch {
            spans: vec![span],
            process: Some(model::Process {
                service_name: "svc".into(),
                tags: vec![],
            }),
        };
        Bytes::from(model::PostSpansRequest { batch: Some(batch) }.encode_to_vec())
    };
    let path = ::http::uri::PathAndQuery::from_static("/jaeger.api_v2.CollectorService/PostSpans");
    let call = |grpc: &mut tonic::client::Grpc<tonic::transport::Channel>, body: Bytes| {
        let mut grpc = grpc.clone();
        let path = path.clone();
        async move {
            grpc.ready().await.unwrap();
            grpc.unary(
                tonic::Request::new(body),
                path,
                RawCodec::<Bytes>::default(),
            )
            .await
        }
    };
    let ok = call(&mut grpc, request(span.clone())).await.unwrap();
    assert!(ok.into_inner().is_empty(), "PostSpansResponse is empty");
    let refused = call(
        &mut grpc,
        request(model::Span {
            operation_name: "refuse-me".into(),
            ..span.clone()
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    let malformed = call(&mut grpc, Bytes::from_static(b"\x0a\xff"))
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), tonic::Code::InvalidArgument);
    let short_id = call(
        &mut grpc,
        request(model::Span {
            trace_id: vec![1; 3],
            ..span
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(short_id.code(), tonic::Code::InvalidArgument);
    assert!(
        short_id.message().contains("trace_id has 3 bytes"),
        "{}",
        short_id.message()
    );

    // Wait for the UDP packets to go through.
    let metrics = || registry.render_prometheus();
    for _ in 0..100 {
        if metrics().contains("transport=\"udp_thrift_binary\"} 1")
            && metrics().contains("transport=\"udp_thrift_compact\"} 1")
            && metrics().contains(
                "reason=\"malformed\",receiver=\"jaeger\",transport=\"udp_thrift_compact\"",
            )
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    for task in running.tasks {
        task.await.unwrap();
    }
    drop(grpc);
    let batches = pipeline.await.unwrap();
    assert_eq!(batches.len(), 4, "http, compact, binary, grpc");
    let text = metrics();
    for transport in [
        "collector_http",
        "udp_thrift_compact",
        "udp_thrift_binary",
        "grpc",
    ] {
        assert!(
            text.contains(&format!(
                "otelcol_receiver_accepted_spans{{receiver=\"jaeger\",transport=\"{transport}\"}} 1"
            )),
            "{transport}: {text}"
        );
    }
    assert!(
        text.contains("otelcol_receiver_refused_spans{receiver=\"jaeger\",transport=\"grpc\"} 1"),
        "{text}"
    );
    // Thrift spans keep their tags; the Thrift parent id became the parent.
    let mut http_batch = batches[0].clone();
    let resource_spans = http_batch.traces_mut().unwrap();
    let span = &resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.parent_span_id, 0x2222i64.to_be_bytes());
    assert_eq!(span.name, "GET /users");
}
