//! Black-box tests of the `oxcol` binary's data spine: OTLP in, exporter queues with retry,
//! memory_limiter, fan-out, and bad input, against in-process `oxcol-bench` sinks with fault
//! injection and the in-process load generator.
//!
//! Needs `target/debug/oxcol` (`cargo build -p oxcol`). Each test starts its own oxcol on
//! free ports and kills it when it ends; every wait is bounded.

mod common;

use bytes::Bytes;
use common::*;
use oxcol_core::Signal;
use oxcol_core::grpc::RawCodec;
use oxcol_integration::load::{self, LoadConfig, Protocol};
use oxcol_integration::otlp::{RequestShape, request_pool};
use oxcol_integration::sink::RunningSink;
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

const TEST_LIMIT: Duration = Duration::from_secs(50);
const METRICS: &str = "    metrics:\n      receivers: [otlp]\n      exporters: [otlp]\n";

#[derive(Clone, Copy, Debug)]
enum Exporter {
    Grpc,
    Http,
}

impl Exporter {
    /// The exporter named `otlp` (both kinds, so the pipeline text is the same) with `extra`.
    fn yaml(self, sink: &RunningSink, extra: &str) -> String {
        let body = match self {
            Exporter::Grpc => otlp_exporter("otlp", sink, extra),
            Exporter::Http => otlphttp_exporter("otlphttp", sink, extra),
        };
        format!("exporters:\n{body}")
    }

    fn pipelines(self) -> &'static str {
        match self {
            Exporter::Grpc => METRICS,
            Exporter::Http => {
                "    metrics:\n      receivers: [otlp]\n      exporters: [otlphttp]\n"
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Exporter::Grpc => "otlp",
            Exporter::Http => "otlphttp",
        }
    }

    /// The receiver protocol the load uses: gRPC in for gRPC out, HTTP in for HTTP out, so
    /// both receivers are covered.
    fn load_protocol(self) -> Protocol {
        match self {
            Exporter::Grpc => Protocol::Grpc,
            Exporter::Http => Protocol::Http,
        }
    }
}

async fn start_with(exporter: Exporter, sink: &RunningSink, extra: &str) -> Oxcol {
    Oxcol::start("", &exporter.yaml(sink, extra), exporter.pipelines()).await
}

/// oxcol's exporter counters for `exporter`: (sent, send_failed, retry_send), once `sent`
/// has reached `expected_sent` (or 5 s passed): oxcol counts a send when the answer arrives,
/// just after the sink counted the items.
async fn exporter_counters(oxcol: &Oxcol, exporter: &str, expected_sent: u64) -> (f64, f64, f64) {
    oxcol
        .wait_metric(
            "otelcol_exporter_sent_metric_points",
            &[("exporter", exporter)],
            Duration::from_secs(5),
            |sent| sent >= expected_sent as f64,
        )
        .await;
    let text = oxcol.metrics_text().await;
    let get = |name: &str| metric_sum(&text, name, &[("exporter", exporter)]).unwrap_or(0.0);
    (
        get("otelcol_exporter_sent_metric_points"),
        get("otelcol_exporter_send_failed_metric_points"),
        get("otelcol_exporter_retry_send_metric_points"),
    )
}

// ---------------------------------------------------------------------------------------
// 1. Retry until success

async fn retry_until_success(exporter: Exporter, mode: serde_json::Value) {
    const K: u64 = 200;
    let sink = start_sink().await;
    set_mode(&sink, mode);
    let oxcol = start_with(exporter, &sink, FAST_RETRY).await;

    let summary = send_points(&oxcol, exporter.load_protocol(), K).await;
    assert_eq!(
        summary.accepted_points, K,
        "oxcol acknowledges everything: {summary:?}"
    );

    let stats = wait_sink(&sink, Duration::from_secs(20), |s| s.metrics.items >= K).await;
    assert_eq!(
        stats.metrics.items, K,
        "every point arrives after retries: {stats:?}"
    );
    assert_eq!(
        stats.failed_requests, 3,
        "the sink failed exactly its 3 injected requests"
    );
    // Nothing still in flight arrives twice.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        sink.state.stats().metrics.items,
        K,
        "no point delivered twice"
    );

    let (sent, failed, retried) = exporter_counters(&oxcol, exporter.name(), K).await;
    assert_eq!(sent, K as f64, "sent counter");
    assert_eq!(failed, 0.0, "send_failed counter");
    assert!(
        retried > 0.0,
        "retry_send counter is {retried}, expected > 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_exporter_retries_unavailable_until_success() {
    bounded(
        TEST_LIMIT,
        retry_until_success(
            Exporter::Grpc,
            json!({"fail_next": 3, "grpc_code": "unavailable"}),
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_exporter_retries_503_until_success() {
    bounded(
        TEST_LIMIT,
        retry_until_success(
            Exporter::Http,
            json!({"fail_next": 3, "http_status": 503, "retry_after_secs": 1}),
        ),
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// 2. RetryInfo / Retry-After are honoured

async fn honours_server_delay(exporter: Exporter, mode: serde_json::Value) {
    const K: u64 = 10; // one request
    let sink = start_sink().await;
    set_mode(&sink, mode);
    let oxcol = start_with(exporter, &sink, FAST_RETRY).await;

    let sending = {
        let (protocol, endpoint) = match exporter.load_protocol() {
            Protocol::Grpc => (Protocol::Grpc, oxcol.grpc_endpoint()),
            Protocol::Http => (Protocol::Http, oxcol.http_endpoint()),
        };
        tokio::spawn(load::run(LoadConfig {
            protocol,
            endpoint,
            shape: SMALL,
            pool: 1,
            concurrency: 1,
            duration: None,
            total_points: Some(K),
            ..LoadConfig::default()
        }))
    };
    // Watch the sink closely: when the first (refused) attempt and the success arrive.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut first_attempt = None;
    let delivered = loop {
        let stats = sink.state.stats();
        let now = Instant::now();
        if first_attempt.is_none() && stats.failed_requests >= 1 {
            first_attempt = Some(now);
        }
        if stats.metrics.items >= K {
            break now;
        }
        assert!(now < deadline, "not delivered within 15 s: {stats:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let summary = sending.await.unwrap().unwrap();
    assert_eq!(summary.accepted_points, K);
    let first_attempt = first_attempt.expect("the refused attempt was seen before the success");
    let waited = delivered - first_attempt;
    // The exporter's own backoff is 50 ms; the server asked for 1 s.
    assert!(
        waited >= Duration::from_millis(900),
        "retried after {waited:?}, before the server's 1 s hint"
    );
    assert!(
        waited < Duration::from_secs(6),
        "retried only after {waited:?}"
    );
    let stats = sink.state.stats();
    assert_eq!(
        (stats.failed_requests, stats.metrics.items),
        (1, K),
        "{stats:?}"
    );
    let (sent, failed, retried) = exporter_counters(&oxcol, exporter.name(), K).await;
    assert_eq!((sent, failed, retried), (K as f64, 0.0, K as f64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_exporter_honours_retry_info() {
    bounded(
        TEST_LIMIT,
        honours_server_delay(
            Exporter::Grpc,
            json!({"fail_next": 1, "grpc_code": "resource_exhausted", "retry_info_secs": 1}),
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_exporter_honours_retry_after() {
    bounded(
        TEST_LIMIT,
        honours_server_delay(
            Exporter::Http,
            json!({"fail_next": 1, "http_status": 429, "retry_after_secs": 1}),
        ),
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// 3. Permanent errors are not retried

async fn permanent_error_not_retried(exporter: Exporter, mode: serde_json::Value) {
    const K: u64 = 100; // 10 requests of 10 points
    let requests = K / SMALL.items_per_request();
    let sink = start_sink().await;
    set_mode(&sink, mode);
    let oxcol = start_with(exporter, &sink, FAST_RETRY).await;

    let summary = send_points(&oxcol, exporter.load_protocol(), K).await;
    assert_eq!(summary.accepted_points, K, "{summary:?}");

    let failed = oxcol
        .wait_metric(
            "otelcol_exporter_send_failed_metric_points",
            &[("exporter", exporter.name())],
            Duration::from_secs(10),
            |v| v >= K as f64,
        )
        .await;
    assert_eq!(failed, K as f64, "send_failed counts every point");
    // Ten retry intervals: a retry would show by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = sink.state.stats();
    assert_eq!(
        stats.failed_requests, requests,
        "one attempt per batch: {stats:?}"
    );
    assert_eq!(stats.metrics.items, 0);
    let (sent, failed, retried) = exporter_counters(&oxcol, exporter.name(), 0).await;
    assert_eq!(
        (sent, failed, retried),
        (0.0, K as f64, 0.0),
        "(sent, send_failed, retry_send)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_exporter_drops_invalid_argument_without_retry() {
    bounded(
        TEST_LIMIT,
        permanent_error_not_retried(
            Exporter::Grpc,
            json!({"fail_next": 1000, "grpc_code": "invalid_argument"}),
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_exporter_drops_400_without_retry() {
    bounded(
        TEST_LIMIT,
        permanent_error_not_retried(
            Exporter::Http,
            json!({"fail_next": 1000, "http_status": 400}),
        ),
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// 4. Backend down, then up

async fn backend_down_then_up(exporter: Exporter) {
    const K: u64 = 200;
    let requests = K / SMALL.items_per_request();
    let sink = start_sink().await;
    set_mode(&sink, json!({"down": true}));
    let oxcol = start_with(exporter, &sink, FAST_RETRY).await;
    let down_since = Instant::now();

    let summary = send_points(&oxcol, exporter.load_protocol(), K).await;
    assert_eq!(
        summary.accepted_points, K,
        "oxcol acknowledges while the backend is down: {summary:?}"
    );

    tokio::time::sleep(Duration::from_secs(2).saturating_sub(down_since.elapsed())).await;
    let stats = sink.state.stats();
    assert_eq!(
        stats.metrics.items, 0,
        "the sink accepted nothing while down"
    );
    assert!(
        stats.failed_requests >= requests,
        "oxcol kept trying: {stats:?}"
    );

    set_mode(&sink, json!({"down": false}));
    let stats = wait_sink(&sink, Duration::from_secs(15), |s| s.metrics.items >= K).await;
    assert_eq!(
        stats.metrics.items, K,
        "everything acknowledged arrives: {stats:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = sink.state.stats();
    assert_eq!(stats.metrics.items, K, "nothing arrives twice: {stats:?}");
    assert_eq!(
        stats.metrics.requests, requests,
        "each batch accepted once: {stats:?}"
    );
    let (sent, failed, retried) = exporter_counters(&oxcol, exporter.name(), K).await;
    assert_eq!((sent, failed), (K as f64, 0.0), "(sent, send_failed)");
    assert!(
        retried >= K as f64,
        "every point was retried at least once: {retried}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_backend_down_then_up_loses_and_duplicates_nothing() {
    bounded(TEST_LIMIT, backend_down_then_up(Exporter::Grpc)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_backend_down_then_up_loses_and_duplicates_nothing() {
    bounded(TEST_LIMIT, backend_down_then_up(Exporter::Http)).await;
}

// ---------------------------------------------------------------------------------------
// 5. Flood under memory_limiter

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flood_under_memory_limiter_stays_bounded_and_loses_nothing_acknowledged() {
    bounded(TEST_LIMIT, async {
        const LIMIT_BYTES: u64 = 64 * 1024 * 1024;
        let sink = start_sink().await;
        set_mode(&sink, json!({"delay_ms": 200}));
        let components = format!(
            "processors:\n  memory_limiter:\n    check_interval: 1s\n    limit_mib: 64\n    spike_limit_mib: 16\n{}",
            Exporter::Grpc.yaml(
                &sink,
                "    compression: none\n    sending_queue:\n      queue_size: 50\n      num_consumers: 2\n",
            )
        );
        let oxcol = Oxcol::start(
            "",
            &components,
            "    metrics:\n      receivers: [otlp]\n      processors: [memory_limiter]\n      exporters: [otlp]\n",
        )
        .await;

        // 800 points (~100 KB) per request, 8 in flight, flat out, no retries.
        let shape = RequestShape {
            resources: 4,
            metrics: 20,
            points: 10,
            attributes: 4,
        };
        let flood = tokio::spawn(load::run(LoadConfig {
            protocol: Protocol::Grpc,
            endpoint: oxcol.grpc_endpoint(),
            shape,
            pool: 16,
            concurrency: 8,
            connections: 2,
            duration: Some(Duration::from_secs(8)),
            retry: false,
            request_timeout: Duration::from_secs(5),
            ..LoadConfig::default()
        }));
        let pid = oxcol.pid();
        let mut max_rss = 0;
        let mut samples = 0;
        while !flood.is_finished() {
            if let Some(rss) = rss_bytes(pid) {
                max_rss = max_rss.max(rss);
                samples += 1;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let summary = flood.await.unwrap().unwrap();
        eprintln!("flood: {summary:?}, max RSS {max_rss} bytes over {samples} samples");
        assert!(samples >= 50, "only {samples} RSS samples");
        assert!(
            max_rss < LIMIT_BYTES,
            "RSS reached {:.1} MiB, above the 64 MiB limit",
            max_rss as f64 / 1048576.0
        );
        assert!(summary.refused_points > 0, "the flood was never refused: {summary:?}");
        assert!(summary.accepted_points > 0, "{summary:?}");
        assert_eq!(summary.failed_points, 0, "refusals must be retryable: {summary:?}");
        for code in summary.status_counts.keys() {
            assert!(
                ["OK", "RESOURCE_EXHAUSTED", "UNAVAILABLE"].contains(&code.as_str()),
                "unexpected answer {code}: {summary:?}"
            );
        }
        let received = oxcol
            .metric(
                "otelcol_receiver_accepted_metric_points",
                &[("receiver", "otlp"), ("transport", "grpc")],
            )
            .await;
        assert_eq!(received, summary.accepted_points as f64, "receiver accepted counter");

        // Drain: 50 batches at 2 x 5 per second take ~5 s.
        let queued = oxcol
            .wait_metric(
                "otelcol_exporter_queue_size",
                &[("exporter", "otlp")],
                Duration::from_secs(25),
                |v| v == 0.0,
            )
            .await;
        assert_eq!(queued, 0.0, "the queue drains");
        let accepted = summary.accepted_points;
        let stats = wait_sink(&sink, Duration::from_secs(5), |s| s.metrics.items >= accepted).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats_later = sink.state.stats();
        assert_eq!(
            stats_later.metrics.items, accepted,
            "every acknowledged point arrives, once (after drain: {stats:?})"
        );
        let (sent, failed, _) = exporter_counters(&oxcol, "otlp", accepted).await;
        assert_eq!((sent, failed), (accepted as f64, 0.0), "(sent, send_failed)");

        // Still accepting afterwards.
        let after = send_points(&oxcol, Protocol::Grpc, 10).await;
        assert_eq!(after.accepted_points, 10, "a small request after the flood: {after:?}");
        let stats = wait_sink(&sink, Duration::from_secs(5), |s| s.metrics.items >= accepted + 10).await;
        assert_eq!(stats.metrics.items, accepted + 10);
    })
    .await;
}

/// The memory_limiter itself (not a full queue) bounds memory: the exporter queue is large
/// enough to hold far more than the limit, so only the limiter can stop the flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_limiter_refuses_before_the_limit_when_queues_could_take_more() {
    bounded(TEST_LIMIT, async {
        const LIMIT_MIB: u64 = 40;
        let sink = start_sink().await;
        set_mode(&sink, json!({"delay_ms": 100}));
        let components = format!(
            "processors:\n  memory_limiter:\n    check_interval: 1s\n    limit_mib: {LIMIT_MIB}\n    spike_limit_mib: 8\n  batch:\n    send_batch_size: 8192\n    timeout: 50ms\n{}",
            Exporter::Grpc.yaml(
                &sink,
                "    compression: none\n    sending_queue:\n      queue_size: 100000\n      num_consumers: 1\n",
            )
        );
        let oxcol = Oxcol::start(
            "",
            &components,
            "    metrics:\n      receivers: [otlp]\n      processors: [memory_limiter, batch]\n      exporters: [otlp]\n",
        )
        .await;
        let shape = RequestShape { resources: 4, metrics: 20, points: 10, attributes: 4 };
        let flood = tokio::spawn(load::run(LoadConfig {
            protocol: Protocol::Grpc,
            endpoint: oxcol.grpc_endpoint(),
            shape,
            pool: 16,
            concurrency: 8,
            connections: 2,
            duration: Some(Duration::from_secs(5)),
            retry: false,
            request_timeout: Duration::from_secs(5),
            ..LoadConfig::default()
        }));
        let pid = oxcol.pid();
        let mut max_rss = 0;
        while !flood.is_finished() {
            if let Some(rss) = rss_bytes(pid) {
                max_rss = max_rss.max(rss);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let summary = flood.await.unwrap().unwrap();
        eprintln!("memory_limiter flood: {summary:?}, max RSS {:.1} MiB", max_rss as f64 / 1048576.0);
        assert!(max_rss < LIMIT_MIB << 20, "RSS reached {:.1} MiB, above the {LIMIT_MIB} MiB limit", max_rss as f64 / 1048576.0);
        let text = oxcol.metrics_text().await;
        let limited = metric_sum(&text, "oxcol_receiver_rejected_requests", &[("reason", "memory_limit")]).unwrap_or(0.0)
            + metric_sum(&text, "otelcol_processor_refused_metric_points", &[("processor", "memory_limiter")]).unwrap_or(0.0);
        assert!(limited > 0.0, "the memory_limiter never refused; the test did not exercise it:\n{text}");
        assert_eq!(
            metric_sum(&text, "otelcol_exporter_enqueue_failed_metric_points", &[("exporter", "otlp")]).unwrap_or(0.0),
            0.0,
            "the queue must not have been what refused"
        );
        assert!(summary.refused_points > 0 && summary.failed_points == 0, "{summary:?}");
        let accepted = summary.accepted_points;
        oxcol
            .wait_metric("otelcol_exporter_queue_size", &[("exporter", "otlp")], Duration::from_secs(30), |v| v == 0.0)
            .await;
        let stats = wait_sink(&sink, Duration::from_secs(10), |s| s.metrics.items >= accepted).await;
        assert_eq!(stats.metrics.items, accepted, "every acknowledged point arrives, once");
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 6. gRPC bad input

async fn raw_export(oxcol: &Oxcol, body: Bytes, gzip: bool) -> Result<Bytes, tonic::Status> {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", oxcol.grpc_endpoint()))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .connect()
            .await
            .expect("connects to oxcol");
    let mut client = tonic::client::Grpc::new(channel);
    if gzip {
        client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    client.ready().await.expect("the channel is ready");
    let path = http::uri::PathAndQuery::from_static(Signal::Metrics.grpc_path());
    client
        .unary(
            tonic::Request::new(body),
            path,
            RawCodec::<Bytes>::default(),
        )
        .await
        .map(tonic::Response::into_inner)
}

const MIB: usize = 1024 * 1024;

/// A valid metrics request of about 2.3 MiB that gzip shrinks below 0.5 MiB.
fn big_request() -> Bytes {
    let shape = RequestShape {
        resources: 4,
        metrics: 50,
        points: 100,
        attributes: 3,
    };
    let big = request_pool(Signal::Metrics, shape, 1).remove(0);
    assert!(
        big.len() > MIB + MIB / 4,
        "the big request is {} bytes",
        big.len()
    );
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&big).unwrap();
    let compressed = encoder.finish().unwrap().len();
    assert!(
        compressed < MIB / 2,
        "gzip of the big request is {compressed} bytes"
    );
    big
}

async fn start_with_1_mib_limit(sink: &RunningSink) -> Oxcol {
    Oxcol::start(
        "        max_recv_msg_size_mib: 1\n",
        &Exporter::Grpc.yaml(sink, FAST_RETRY),
        METRICS,
    )
    .await
}

async fn rejected_requests(oxcol: &Oxcol, reason: &str) -> f64 {
    oxcol
        .metric(
            "oxcol_receiver_rejected_requests",
            &[("transport", "grpc"), ("reason", reason)],
        )
        .await
}

/// A good request after bad ones is accepted and reaches the sink, alone.
async fn good_request_still_works(oxcol: &Oxcol, sink: &RunningSink) {
    let good = request_pool(Signal::Metrics, SMALL, 1).remove(0);
    raw_export(oxcol, good, false)
        .await
        .expect("a good request after the bad ones");
    let stats = wait_sink(sink, Duration::from_secs(10), |s| s.metrics.items >= 10).await;
    assert_eq!(stats.metrics.items, 10, "{stats:?}");
    assert_eq!(
        stats.metrics.requests, 1,
        "only the good request reached the sink"
    );
    let accepted = oxcol
        .metric(
            "otelcol_receiver_accepted_metric_points",
            &[("transport", "grpc")],
        )
        .await;
    assert_eq!(accepted, 10.0, "receiver accepted counter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_receiver_refuses_malformed_and_oversized_requests() {
    bounded(TEST_LIMIT, async {
        let sink = start_sink().await;
        let oxcol = start_with_1_mib_limit(&sink).await;

        // Field 1 (resource_metrics), length 5, but one byte follows.
        let malformed = Bytes::from_static(&[0x0a, 0x05, 0x01]);
        let status = raw_export(&oxcol, malformed, false).await.unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "malformed: {status:?}"
        );
        assert_eq!(
            rejected_requests(&oxcol, "malformed").await,
            1.0,
            "rejected{{reason=malformed}}"
        );

        let big = big_request();
        let status = raw_export(&oxcol, big.clone(), false).await.unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::ResourceExhausted,
            "too large: {status:?}"
        );
        assert_eq!(
            rejected_requests(&oxcol, "too_large").await,
            1.0,
            "rejected{{reason=too_large}}"
        );

        // Compressed below the limit, above it once expanded.
        let status = raw_export(&oxcol, big, true).await.unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::ResourceExhausted,
            "too large after decompression: {status:?}"
        );

        good_request_still_works(&oxcol, &sink).await;
        assert_eq!(
            rejected_requests(&oxcol, "malformed").await,
            1.0,
            "rejected{{reason=malformed}}"
        );
    })
    .await;
}

/// docs/components/otlp-receiver.md and docs/self-telemetry.md: a request too large after
/// decompression (gzip bomb) is counted in `oxcol_receiver_rejected_requests{reason="too_large"}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_receiver_counts_decompression_bombs_as_too_large() {
    bounded(TEST_LIMIT, async {
        let sink = start_sink().await;
        let oxcol = start_with_1_mib_limit(&sink).await;
        let status = raw_export(&oxcol, big_request(), true).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        let text = oxcol.metrics_text().await;
        let counted: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("oxcol_receiver_rejected_requests"))
            .collect();
        assert_eq!(
            rejected_requests(&oxcol, "too_large").await,
            1.0,
            "rejected{{reason=too_large}}; rejected series: {counted:?}"
        );
        good_request_still_works(&oxcol, &sink).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 7. Fan-out

async fn fan_out(pipelines: &str) {
    const K: u64 = 200;
    let (sink_a, sink_b) = (start_sink().await, start_sink().await);
    let components = format!(
        "exporters:\n{}{}",
        otlp_exporter("otlp/a", &sink_a, FAST_RETRY),
        otlp_exporter("otlp/b", &sink_b, FAST_RETRY)
    );
    let oxcol = Oxcol::start("", &components, pipelines).await;
    let summary = send_points(&oxcol, Protocol::Grpc, K).await;
    assert_eq!(summary.accepted_points, K, "{summary:?}");
    for (name, sink) in [("a", &sink_a), ("b", &sink_b)] {
        let stats = wait_sink(sink, Duration::from_secs(10), |s| s.metrics.items >= K).await;
        assert_eq!(stats.metrics.items, K, "sink {name}: {stats:?}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (name, sink) in [("a", &sink_a), ("b", &sink_b)] {
        assert_eq!(
            sink.state.stats().metrics.items,
            K,
            "sink {name} got nothing twice"
        );
        let (sent, failed, _) = exporter_counters(&oxcol, &format!("otlp/{name}"), K).await;
        assert_eq!(
            (sent, failed),
            (K as f64, 0.0),
            "otlp/{name} (sent, send_failed)"
        );
    }
    let received = oxcol
        .metric(
            "otelcol_receiver_accepted_metric_points",
            &[("receiver", "otlp")],
        )
        .await;
    assert_eq!(received, K as f64, "the receiver counts each point once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_pipeline_fans_out_to_two_exporters() {
    bounded(
        TEST_LIMIT,
        fan_out("    metrics:\n      receivers: [otlp]\n      exporters: [otlp/a, otlp/b]\n"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_receiver_feeds_two_pipelines() {
    bounded(
        TEST_LIMIT,
        fan_out(
            "    metrics/one:\n      receivers: [otlp]\n      exporters: [otlp/a]\n    metrics/two:\n      receivers: [otlp]\n      exporters: [otlp/b]\n",
        ),
    )
    .await;
}
