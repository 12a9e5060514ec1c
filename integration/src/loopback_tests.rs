//! End-to-end tests over real loopback sockets: the load generator against an in-process
//! sink. Every test is bounded by a timeout; ports are picked by the OS (bind :0).

use crate::control_client::ControlClient;
use crate::load::{self, Compression, LoadConfig, LoadSummary, Protocol};
use crate::otlp::{RequestShape, decode_partial_success, request_pool};
use crate::sink::{self, RunningSink, SinkConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use oxcol_core::Signal;
use oxcol_core::grpc::RawCodec;
use oxcol_core::rpc_status::{RpcStatus, retry_delay_from_details};
use prost::Message;
use serde_json::json;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

const SHAPE: RequestShape = RequestShape {
    resources: 2,
    metrics: 4,
    points: 5,
    attributes: 2,
};
const POINTS_PER_REQUEST: u64 = 2 * 4 * 5;
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("test did not finish within its timeout")
}

async fn start_sink() -> (RunningSink, ControlClient) {
    start_sink_with(SinkConfig::default()).await
}

async fn start_sink_with(config: SinkConfig) -> (RunningSink, ControlClient) {
    let sink = sink::start(config)
        .await
        .expect("sink starts on free loopback ports");
    let control = ControlClient::new(sink.control_addr);
    (sink, control)
}

fn load_config(sink: &RunningSink, protocol: Protocol, requests: u64) -> LoadConfig {
    LoadConfig {
        protocol,
        endpoint: match protocol {
            Protocol::Grpc => sink.grpc_addr.to_string(),
            Protocol::Http => sink.http_endpoint(),
        },
        shape: SHAPE,
        pool: 4,
        concurrency: 4,
        duration: Some(Duration::from_secs(20)),
        total_points: Some(requests * POINTS_PER_REQUEST),
        request_timeout: Duration::from_secs(5),
        ..LoadConfig::default()
    }
}

async fn run_load(config: LoadConfig) -> LoadSummary {
    load::run(config).await.expect("load run completes")
}

/// Sends `requests` requests and checks that the sink counted exactly what load accepted.
async fn assert_exact_counts(config: LoadConfig, control: &ControlClient, requests: u64) {
    let signal = config.signal;
    let summary = run_load(config).await;
    let expected = requests * POINTS_PER_REQUEST;
    assert_eq!(summary.requests, requests, "{summary:?}");
    assert_eq!(summary.sent_points, expected, "{summary:?}");
    assert_eq!(summary.accepted_points, expected, "{summary:?}");
    assert_eq!(
        (summary.refused_points, summary.failed_points),
        (0, 0),
        "{summary:?}"
    );
    let stats = control.stats().await.unwrap();
    assert_eq!(stats.signal(signal).items, summary.accepted_points);
    assert_eq!(stats.signal(signal).requests, requests);
    assert_eq!(stats.failed_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_load_is_counted_exactly_by_the_sink() {
    bounded(async {
        let (sink, control) = start_sink().await;
        assert_exact_counts(load_config(&sink, Protocol::Grpc, 50), &control, 50).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_gzip_load_is_counted_exactly_by_the_sink() {
    bounded(async {
        let (sink, control) = start_sink().await;
        let config = LoadConfig {
            compression: Compression::Gzip,
            ..load_config(&sink, Protocol::Http, 50)
        };
        assert_exact_counts(config, &control, 50).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signal_and_compression_is_counted_on_both_protocols() {
    bounded(async {
        let (sink, control) = start_sink().await;
        for signal in Signal::ALL {
            for protocol in [Protocol::Grpc, Protocol::Http] {
                for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
                    control.reset().await.unwrap();
                    let config = LoadConfig {
                        signal,
                        compression,
                        ..load_config(&sink, protocol, 6)
                    };
                    assert_exact_counts(config, &control, 6).await;
                }
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_next_refuses_the_first_requests_then_accepts() {
    bounded(async {
        let (sink, control) = start_sink().await;
        for (protocol, refusal_status) in [(Protocol::Grpc, "UNAVAILABLE"), (Protocol::Http, "503")]
        {
            control.reset().await.unwrap();
            control
                .set_mode(json!({"fail_next": 3, "grpc_code": "unavailable"}))
                .await
                .unwrap();
            let config = LoadConfig {
                concurrency: 1,
                ..load_config(&sink, protocol, 10)
            };
            let summary = run_load(config).await;
            assert_eq!(
                summary.refused_points,
                3 * POINTS_PER_REQUEST,
                "{summary:?}"
            );
            assert_eq!(
                summary.accepted_points,
                7 * POINTS_PER_REQUEST,
                "{summary:?}"
            );
            assert_eq!(summary.failed_points, 0, "{summary:?}");
            assert_eq!(
                summary.status_counts.get(refusal_status),
                Some(&3),
                "{summary:?}"
            );
            let stats = control.stats().await.unwrap();
            assert_eq!(
                (stats.metrics.requests, stats.metrics.items),
                (7, 7 * POINTS_PER_REQUEST)
            );
            assert_eq!(stats.failed_requests, 3);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_are_failed_not_refused() {
    bounded(async {
        let (sink, control) = start_sink().await;
        control
            .set_mode(json!({"fail_next": 2, "grpc_code": "invalid_argument"}))
            .await
            .unwrap();
        let summary = run_load(LoadConfig {
            concurrency: 1,
            ..load_config(&sink, Protocol::Http, 4)
        })
        .await;
        assert_eq!(summary.failed_points, 2 * POINTS_PER_REQUEST, "{summary:?}");
        assert_eq!(summary.refused_points, 0, "{summary:?}");
        assert_eq!(summary.status_counts.get("400"), Some(&2), "{summary:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_resends_refused_requests_until_accepted() {
    bounded(async {
        let (sink, control) = start_sink().await;
        control
            .set_mode(json!({"fail_next": 3, "grpc_code": "resource_exhausted"}))
            .await
            .unwrap();
        let config = LoadConfig {
            retry: true,
            concurrency: 2,
            ..load_config(&sink, Protocol::Grpc, 10)
        };
        let summary = run_load(config).await;
        assert_eq!(
            summary.accepted_points,
            10 * POINTS_PER_REQUEST,
            "{summary:?}"
        );
        assert_eq!(summary.refused_points, 0, "{summary:?}");
        assert_eq!(summary.requests, 13, "{summary:?}");
        assert_eq!(
            summary.status_counts.get("RESOURCE_EXHAUSTED"),
            Some(&3),
            "{summary:?}"
        );
        assert_eq!(
            control.stats().await.unwrap().metrics.items,
            10 * POINTS_PER_REQUEST
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_refuses_everything_until_up_again() {
    bounded(async {
        let (sink, control) = start_sink().await;
        control.set_mode(json!({"down": true})).await.unwrap();
        for protocol in [Protocol::Grpc, Protocol::Http] {
            let summary = run_load(load_config(&sink, protocol, 5)).await;
            assert_eq!(
                summary.refused_points,
                5 * POINTS_PER_REQUEST,
                "{summary:?}"
            );
            assert_eq!(summary.accepted_points, 0, "{summary:?}");
        }
        let stats = control.stats().await.unwrap();
        assert_eq!((stats.metrics.items, stats.failed_requests), (0, 10));

        control.set_mode(json!({"down": false})).await.unwrap();
        control.reset().await.unwrap();
        for protocol in [Protocol::Grpc, Protocol::Http] {
            let summary = run_load(load_config(&sink, protocol, 5)).await;
            assert_eq!(
                summary.accepted_points,
                5 * POINTS_PER_REQUEST,
                "{summary:?}"
            );
        }
        assert_eq!(
            control.stats().await.unwrap().metrics.items,
            10 * POINTS_PER_REQUEST
        );
    })
    .await;
}

/// One raw OTLP/gRPC export of `body`, returning the sink's answer as is.
async fn grpc_export(
    sink: &RunningSink,
    signal: Signal,
    body: Bytes,
) -> Result<Bytes, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", sink.grpc_addr))
        .unwrap()
        .connect()
        .await
        .expect("connects to the sink");
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(signal.grpc_path());
    client
        .unary(
            tonic::Request::new(body),
            path,
            RawCodec::<Bytes>::default(),
        )
        .await
        .map(tonic::Response::into_inner)
}

/// One raw OTLP/HTTP export of `body`, returning status, headers and body.
async fn http_export(
    sink: &RunningSink,
    signal: Signal,
    body: Bytes,
    encoding: Option<&str>,
) -> http::Response<Bytes> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let mut request =
        http::Request::post(format!("{}{}", sink.http_endpoint(), signal.http_path()))
            .header("content-type", "application/x-protobuf");
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    let response = client
        .request(request.body(Full::new(body)).unwrap())
        .await
        .expect("sink answers");
    let (parts, body) = response.into_parts();
    http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_reject_is_reported_in_grpc_and_http_responses() {
    bounded(async {
        let (sink, control) = start_sink().await;
        control
            .set_mode(json!({"partial_reject": 5}))
            .await
            .unwrap();
        for signal in Signal::ALL {
            let body = request_pool(signal, SHAPE, 1).remove(0);
            let grpc_answer = grpc_export(&sink, signal, body.clone())
                .await
                .expect("accepted");
            let partial = decode_partial_success(signal, &grpc_answer).unwrap();
            assert_eq!(partial.rejected, 5, "{signal}");
            assert!(!partial.error_message.is_empty());

            let http_answer = http_export(&sink, signal, body, None).await;
            assert_eq!(http_answer.status(), 200);
            assert_eq!(
                decode_partial_success(signal, http_answer.body())
                    .unwrap()
                    .rejected,
                5,
                "{signal}"
            );

            let stats = control.stats().await.unwrap().signal(signal);
            assert_eq!(
                (stats.items, stats.rejected_items),
                (2 * (POINTS_PER_REQUEST - 5), 10),
                "{signal}"
            );
        }
        let summary = run_load(load_config(&sink, Protocol::Grpc, 4)).await;
        assert_eq!(summary.partially_rejected_points, 20, "{summary:?}");
        assert_eq!(
            summary.accepted_points,
            4 * (POINTS_PER_REQUEST - 5),
            "{summary:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_hints_are_sent_on_both_protocols() {
    bounded(async {
        let (sink, control) = start_sink().await;
        control
            .set_mode(json!({"fail_next": 2, "grpc_code": "unavailable", "retry_info_secs": 2, "retry_after_secs": 3}))
            .await
            .unwrap();
        let body = request_pool(Signal::Metrics, SHAPE, 1).remove(0);
        let status = grpc_export(&sink, Signal::Metrics, body.clone()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            retry_delay_from_details(status.details()),
            Some(Duration::from_secs(2))
        );

        let response = http_export(&sink, Signal::Metrics, body, None).await;
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "3");
        let rpc_status = RpcStatus::decode(response.body().as_ref()).unwrap();
        assert_eq!(rpc_status.code, tonic::Code::Unavailable as i32);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unsupported_bodies_are_refused() {
    bounded(async {
        let (sink, control) = start_sink().await;
        let garbage = Bytes::from_static(&[0x0a, 0xff, 0xff]);
        let response = http_export(&sink, Signal::Logs, garbage.clone(), None).await;
        assert_eq!(response.status(), 400);
        let response = http_export(&sink, Signal::Logs, garbage.clone(), Some("gzip")).await;
        assert_eq!(response.status(), 400);
        let response = http_export(&sink, Signal::Logs, garbage.clone(), Some("br")).await;
        assert_eq!(response.status(), 400);
        let status = grpc_export(&sink, Signal::Traces, garbage)
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let stats = control.stats().await.unwrap();
        assert_eq!((stats.logs.requests, stats.traces.requests), (0, 0));
        assert_eq!(
            stats.failed_requests, 2,
            "only bodies that reach the counter are counted"
        );
        assert!(
            control
                .set_mode(json!({"grpc_code": "busy"}))
                .await
                .unwrap_err()
                .contains("400")
        );
        assert!(
            control
                .set_mode(json!({"fail_nxt": 1}))
                .await
                .unwrap_err()
                .contains("fail_nxt")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_and_rate_shape_the_run() {
    bounded(async {
        let (sink, control) = start_sink().await;
        control.set_mode(json!({"delay_ms": 50})).await.unwrap();
        let summary = run_load(LoadConfig {
            concurrency: 2,
            ..load_config(&sink, Protocol::Http, 4)
        })
        .await;
        assert!(summary.latency_p50_ms >= 50.0, "{summary:?}");

        control.set_mode(json!({"delay_ms": 0})).await.unwrap();
        // 5 requests of 40 points at 400 points/s: the last starts 0.4 s after the first.
        let config = LoadConfig {
            rate: 400.0,
            ..load_config(&sink, Protocol::Grpc, 5)
        };
        let summary = run_load(config).await;
        assert_eq!(
            summary.accepted_points,
            5 * POINTS_PER_REQUEST,
            "{summary:?}"
        );
        assert!(
            summary.elapsed_secs >= 0.4 && summary.elapsed_secs < 5.0,
            "{summary:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_ends_a_flat_out_run() {
    bounded(async {
        let (sink, control) = start_sink().await;
        let config = LoadConfig {
            duration: Some(Duration::from_millis(300)),
            total_points: None,
            ..load_config(&sink, Protocol::Grpc, 0)
        };
        let summary = run_load(config).await;
        assert!(summary.elapsed_secs < 5.0, "{summary:?}");
        assert!(summary.accepted_points > 0, "{summary:?}");
        assert_eq!(
            control.stats().await.unwrap().metrics.items,
            summary.accepted_points
        );
    })
    .await;
}

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path =
            std::env::temp_dir().join(format!("oxcol-bench-{name}-{}-{nanos}", std::process::id()));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_writes_the_sent_requests() {
    bounded(async {
        let dir = TempDir::new("record");
        let config = SinkConfig {
            record_dir: Some(dir.0.clone()),
            ..SinkConfig::default()
        };
        let (sink, _control) = start_sink_with(config).await;
        for (protocol, compression) in [
            (Protocol::Grpc, Compression::Zstd),
            (Protocol::Http, Compression::Gzip),
        ] {
            let config = LoadConfig {
                concurrency: 1,
                compression,
                ..load_config(&sink, protocol, 4)
            };
            run_load(config).await;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 8);
        let pool = request_pool(Signal::Metrics, SHAPE, 4);
        for (index, file) in files.iter().enumerate() {
            assert!(
                file.to_string_lossy()
                    .ends_with(&format!("{index:08}-metrics.pb")),
                "{file:?}"
            );
            let recorded =
                ExportMetricsServiceRequest::decode(std::fs::read(file).unwrap().as_slice())
                    .unwrap();
            let sent = ExportMetricsServiceRequest::decode(pool[index % 4].as_ref()).unwrap();
            assert_eq!(recorded, sent, "{file:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_receiver_fails_without_retry_and_is_waited_for_with_retry() {
    bounded(async {
        // A free port nobody listens on (yet).
        let port = crate::net::free_port();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let template = || LoadConfig {
            protocol: Protocol::Grpc,
            endpoint: addr.to_string(),
            shape: SHAPE,
            pool: 2,
            concurrency: 2,
            duration: Some(Duration::from_secs(20)),
            total_points: Some(5 * POINTS_PER_REQUEST),
            ..LoadConfig::default()
        };
        for protocol in [Protocol::Grpc, Protocol::Http] {
            let summary = run_load(LoadConfig {
                protocol,
                ..template()
            })
            .await;
            assert_eq!(summary.failed_points, 5 * POINTS_PER_REQUEST, "{summary:?}");
            assert_eq!(
                summary.status_counts.get("transport_error"),
                Some(&5),
                "{summary:?}"
            );
        }

        let retrying = tokio::spawn(run_load(LoadConfig {
            retry: true,
            ..template()
        }));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_sink, control) = start_sink_with(SinkConfig {
            grpc_addr: addr,
            ..SinkConfig::default()
        })
        .await;
        let summary = retrying.await.unwrap();
        assert_eq!(
            summary.accepted_points,
            5 * POINTS_PER_REQUEST,
            "{summary:?}"
        );
        assert_eq!(
            control.stats().await.unwrap().metrics.items,
            5 * POINTS_PER_REQUEST
        );
    })
    .await;
}
