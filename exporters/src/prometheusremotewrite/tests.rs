//! The exporter against a small in-process HTTP server that records requests and answers
//! with scripted statuses (400 with a reason, 429 with Retry-After, 2.0 answers). The real
//! Prometheus tests are in integration/tests/prometheus.rs.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes as AxumBytes;
use axum::http::{HeaderMap as AxumHeaders, StatusCode as AxumStatus};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_core::testdata::string_attribute;
use prost::Message;

use super::*;
use crate::prometheusremotewrite::proto::{v1, v2};

type Answer = (u16, Vec<(&'static str, &'static str)>, &'static str);

#[derive(Default)]
struct Server {
    requests: Mutex<Vec<(AxumHeaders, Vec<u8>)>>,
    answers: Mutex<VecDeque<Answer>>,
}

async fn serve(answers: Vec<Answer>) -> (String, Arc<Server>) {
    let state = Arc::new(Server {
        answers: Mutex::new(answers.into()),
        ..Default::default()
    });
    let shared = Arc::clone(&state);
    let app = axum::Router::new().fallback(move |headers: AxumHeaders, body: AxumBytes| {
        let state = Arc::clone(&shared);
        async move {
            let raw = snap::raw::Decoder::new()
                .decompress_vec(&body)
                .unwrap_or_default();
            state.requests.lock().unwrap().push((headers, raw));
            let (status, headers, body) =
                state
                    .answers
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or((204, vec![], ""));
            let mut response = axum::response::Response::new(axum::body::Body::from(body));
            *response.status_mut() = AxumStatus::from_u16(status).unwrap();
            for (k, v) in headers {
                response.headers_mut().insert(k, v.parse().unwrap());
            }
            response
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}/api/v1/write"), state)
}

fn counter(temporality: AggregationTemporality, points: &[(u64, f64)]) -> Batch {
    let data_points = points
        .iter()
        .map(|(t, v)| NumberDataPoint {
            attributes: vec![
                string_attribute("http.route", "/cart"),
                string_attribute("Zone", "a"),
            ],
            start_time_unix_nano: 1_000_000_000_000,
            time_unix_nano: *t * 1_000_000,
            value: Some(number_data_point::Value::AsDouble(*v)),
            ..Default::default()
        })
        .collect();
    Batch::from_metrics(vec![ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![string_attribute("service.name", "shop")],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: None,
            metrics: vec![Metric {
                name: "http.requests".into(),
                description: "Requests".into(),
                unit: "{request}".into(),
                metadata: vec![],
                data: Some(metric::Data::Sum(Sum {
                    data_points,
                    aggregation_temporality: temporality as i32,
                    is_monotonic: true,
                })),
            }],
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }])
}

fn exporter(endpoint: &str, tweak: impl FnOnce(&mut Config)) -> RemoteWriteExporter {
    let mut config = Config {
        endpoint: endpoint.into(),
        ..Config::default()
    };
    config
        .headers
        .insert("Authorization".into(), "Bearer t0ken".into());
    tweak(&mut config);
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    RemoteWriteExporter::new("prometheusremotewrite", &config).unwrap()
}

#[tokio::test]
async fn v1_request_has_the_protocol_headers_and_sorted_labels() {
    let (endpoint, server) = serve(vec![]).await;
    let exporter = exporter(&endpoint, |c| c.send_metadata = true);
    let batch = counter(
        AggregationTemporality::Cumulative,
        &[(2_000_000, 7.0), (1_000_000, 5.0)],
    );
    assert_eq!(exporter.export(batch).await, Ok(ExportOutcome::default()));
    let requests = server.requests.lock().unwrap();
    assert_eq!(requests.len(), 1);
    let (headers, body) = &requests[0];
    assert_eq!(headers["content-encoding"], "snappy");
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(headers["x-prometheus-remote-write-version"], "0.1.0");
    assert!(
        headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("oxcol/")
    );
    assert_eq!(headers["authorization"], "Bearer t0ken");
    let request = v1::WriteRequest::decode(body.as_slice()).unwrap();
    let series = &request.timeseries[0];
    let names: Vec<&str> = series.labels.iter().map(|l| l.name.as_str()).collect();
    // Byte-wise: "Zone" < "__name__" < "http_route" < "job".
    assert_eq!(names, vec!["Zone", "__name__", "http_route", "job"]);
    assert_eq!(series.labels[1].value, "http_requests_total");
    assert_eq!(
        series.samples,
        vec![
            v1::Sample {
                value: 5.0,
                timestamp: 1_000_000
            },
            v1::Sample {
                value: 7.0,
                timestamp: 2_000_000
            }
        ]
    );
    assert_eq!(
        request.metadata[0],
        v1::MetricMetadata {
            r#type: 1,
            metric_family_name: "http_requests_total".into(),
            help: "Requests".into(),
            unit: String::new()
        }
    );
}

#[tokio::test]
async fn a_400_is_permanent_with_prometheus_reason_and_a_429_is_retried_after_retry_after() {
    let (endpoint, _server) = serve(vec![
        (400, vec![], "out of order sample\n"),
        (429, vec![("retry-after", "2")], "slow down"),
        (503, vec![], ""),
    ])
    .await;
    let exporter = exporter(&endpoint, |_| {});
    let batch = counter(AggregationTemporality::Cumulative, &[(1_000_000, 1.0)]);
    assert_eq!(
        exporter.export(batch.clone()).await,
        Err(ExportError::Permanent {
            reason: "HTTP 400: out of order sample".into()
        })
    );
    assert_eq!(
        exporter.export(batch.clone()).await,
        Err(ExportError::Retryable {
            reason: "HTTP 429: slow down".into(),
            after: Some(Duration::from_secs(2))
        })
    );
    assert!(matches!(
        exporter.export(batch.clone()).await,
        Err(ExportError::Retryable { after: None, .. })
    ));
    assert_eq!(exporter.export(batch).await, Ok(ExportOutcome::default()));
}

#[tokio::test]
async fn the_queue_waits_for_retry_after_then_delivers() {
    use crate::queue::{QueuedExporter, RetryConfig};
    use oxcol_core::telemetry::{ExporterCounters, Registry};
    let (endpoint, server) = serve(vec![(429, vec![("retry-after", "1")], "busy")]).await;
    let config = Config {
        endpoint: endpoint.clone(),
        ..Config::default()
    };
    let registry = Registry::new();
    let counters = ExporterCounters::new(
        &registry,
        "prometheusremotewrite",
        oxcol_core::Signal::Metrics,
    );
    let retry = RetryConfig {
        randomization_factor: 0.0,
        ..config.retry_on_failure.clone()
    };
    let queued = QueuedExporter::start(
        "prometheusremotewrite",
        oxcol_core::Signal::Metrics,
        Arc::new(exporter(&endpoint, |_| {})),
        &config.queue_config(),
        &retry,
        None,
        counters.clone(),
    );
    let started = std::time::Instant::now();
    queued
        .submit(counter(
            AggregationTemporality::Cumulative,
            &[(1_000_000, 1.0)],
        ))
        .await
        .unwrap();
    while counters.sent.get() == 0 && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counters.sent.get(), 1);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured: {:?}",
        started.elapsed()
    );
    assert_eq!(server.requests.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn delta_sums_are_dropped_and_counted() {
    let (endpoint, server) = serve(vec![]).await;
    let exporter = exporter(&endpoint, |_| {});
    let outcome = exporter
        .export(counter(
            AggregationTemporality::Delta,
            &[(1_000_000, 1.0), (2_000_000, 2.0)],
        ))
        .await
        .unwrap();
    assert_eq!(outcome.rejected, 2);
    assert!(
        outcome.message.contains("delta temporality"),
        "{}",
        outcome.message
    );
    assert!(server.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn v2_sends_symbols_and_needs_the_written_headers() {
    let (endpoint, server) = serve(vec![
        (
            204,
            vec![("x-prometheus-remote-write-samples-written", "1")],
            "",
        ),
        (204, vec![], ""),
    ])
    .await;
    let exporter = exporter(&endpoint, |c| {
        c.protobuf_message = config::PROTO_V2.into();
        c.target_info.enabled = false;
    });
    let batch = counter(AggregationTemporality::Cumulative, &[(2_000_000, 3.0)]);
    assert_eq!(
        exporter.export(batch.clone()).await,
        Ok(ExportOutcome::default())
    );
    // A 1.x receiver answers 204 but writes nothing: no *-Written header.
    let Err(ExportError::Permanent { reason }) = exporter.export(batch).await else {
        panic!("expected a permanent error")
    };
    assert!(
        reason.contains("does not understand remote write 2.0"),
        "{reason}"
    );
    let requests = server.requests.lock().unwrap();
    let (headers, body) = &requests[0];
    assert_eq!(
        headers["content-type"],
        "application/x-protobuf;proto=io.prometheus.write.v2.Request"
    );
    assert_eq!(headers["x-prometheus-remote-write-version"], "2.0.0");
    let request = v2::Request::decode(body.as_slice()).unwrap();
    assert_eq!(request.symbols[0], "");
    let labels: Vec<(&str, &str)> = request.timeseries[0]
        .labels_refs
        .chunks(2)
        .map(|p| {
            (
                request.symbols[p[0] as usize].as_str(),
                request.symbols[p[1] as usize].as_str(),
            )
        })
        .collect();
    assert_eq!(
        labels,
        vec![
            ("Zone", "a"),
            ("__name__", "http_requests_total"),
            ("http_route", "/cart"),
            ("job", "shop")
        ]
    );
    assert_eq!(
        request.timeseries[0].samples[0],
        v2::Sample {
            value: 3.0,
            timestamp: 2_000_000,
            start_timestamp: 1_000_000
        }
    );
    let metadata = request.timeseries[0].metadata.clone().unwrap();
    assert_eq!(
        (
            metadata.r#type,
            request.symbols[metadata.help_ref as usize].as_str()
        ),
        (1, "Requests")
    );
}

#[test]
fn partial_permanent_failure_is_reported_as_rejected_share() {
    let permanent = || {
        Some(ExportError::Permanent {
            reason: "HTTP 400: out of order sample".into(),
        })
    };
    let outcome = combine(
        vec![(0, None), (30, permanent())],
        100,
        10,
        ExportOutcome::default(),
    )
    .unwrap();
    assert_eq!(
        outcome,
        ExportOutcome {
            rejected: 3,
            message: "HTTP 400: out of order sample".into()
        }
    );
    assert!(matches!(
        combine(vec![(100, permanent())], 100, 10, ExportOutcome::default()),
        Err(ExportError::Permanent { .. })
    ));
    let retry = Some(ExportError::Retryable {
        reason: "HTTP 503".into(),
        after: Some(Duration::from_secs(3)),
    });
    assert!(matches!(
        combine(
            vec![(50, permanent()), (50, retry)],
            100,
            10,
            ExportOutcome::default()
        ),
        Err(ExportError::Retryable { after: Some(_), .. })
    ));
}

#[tokio::test]
async fn v2_written_headers_count_partial_writes_exactly_and_feed_telemetry() {
    let written = |samples: &'static str| {
        vec![
            ("x-prometheus-remote-write-samples-written", samples),
            ("x-prometheus-remote-write-histograms-written", "0"),
            ("x-prometheus-remote-write-exemplars-written", "0"),
        ]
    };
    let (endpoint, _server) = serve(vec![
        // Prometheus 3's partial write: 400 for the refused samples, the rest written.
        (400, written("1"), "out of order sample"),
        // A 2xx that confirms fewer samples than were sent.
        (204, written("3"), ""),
        // A 2xx that confirms nothing: a 1.x receiver.
        (204, written("0"), ""),
        (
            415,
            vec![],
            "io.prometheus.write.v2.Request protobuf message is not accepted",
        ),
        (204, written("4"), ""),
    ])
    .await;
    let registry = oxcol_core::telemetry::Registry::new();
    let exporter = exporter(&endpoint, |c| {
        c.protobuf_message = config::PROTO_V2.into();
        c.target_info.enabled = false;
        c.remote_write_queue.num_consumers = 1;
    })
    .with_telemetry(&registry);
    let batch = counter(
        AggregationTemporality::Cumulative,
        &[
            (1_000_000, 1.0),
            (2_000_000, 2.0),
            (3_000_000, 3.0),
            (4_000_000, 4.0),
        ],
    );
    let outcome = exporter.export(batch.clone()).await.unwrap();
    assert_eq!(outcome.rejected, 3, "3 of the 4 samples were refused");
    assert!(
        outcome.message.contains("out of order sample"),
        "{}",
        outcome.message
    );
    let outcome = exporter.export(batch.clone()).await.unwrap();
    assert_eq!(outcome.rejected, 1);
    assert!(
        outcome.message.contains("wrote only 3 of 4"),
        "{}",
        outcome.message
    );
    let Err(ExportError::Permanent { reason }) = exporter.export(batch.clone()).await else {
        panic!("a 2xx confirming nothing is a failure")
    };
    assert!(reason.contains("headers of 0"), "{reason}");
    let Err(ExportError::Permanent { reason }) = exporter.export(batch.clone()).await else {
        panic!("415 is permanent")
    };
    assert!(
        reason.contains("HTTP 415")
            && reason.contains("set protobuf_message: prometheus.v1.WriteRequest"),
        "{reason}"
    );
    assert_eq!(exporter.export(batch).await, Ok(ExportOutcome::default()));
    let text = registry.render_prometheus();
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{exporter=\"prometheusremotewrite\"}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
    };
    assert_eq!(
        value("oxcol_exporter_prometheusremotewrite_sent_samples"),
        Some(20)
    );
    assert_eq!(
        value("otelcol_exporter_prometheusremotewrite_written_samples"),
        Some(1 + 3 + 4),
        "{text}"
    );
    assert_eq!(
        value("otelcol_exporter_prometheusremotewrite_written_exemplars"),
        Some(0)
    );
}

#[test]
fn written_headers_missing_mean_zero_only_next_to_present_ones() {
    let mut headers = HeaderMap::new();
    assert_eq!(written_headers(&headers), None);
    headers.insert(
        "x-prometheus-remote-write-histograms-written",
        HeaderValue::from_static("2"),
    );
    headers.insert(
        "x-prometheus-remote-write-exemplars-written",
        HeaderValue::from_static("many"),
    );
    assert_eq!(
        written_headers(&headers),
        Some(Counts {
            samples: 0,
            histograms: 2,
            exemplars: 0
        })
    );
    // 1.0: the headers are not read; a 400 fails the whole request.
    let sent = Counts {
        samples: 5,
        histograms: 2,
        exemplars: 1,
    };
    let Err((_, unwritten)) = classify(StatusCode::BAD_REQUEST, &headers, b"bad", false, sent)
    else {
        panic!("400 is a failure")
    };
    assert_eq!(unwritten, 7);
    let Err((_, unwritten)) = classify(StatusCode::BAD_REQUEST, &headers, b"bad", true, sent)
    else {
        panic!("400 is a failure")
    };
    assert_eq!(unwritten, 5, "2 histograms were written");
    assert_eq!(
        classify(StatusCode::NO_CONTENT, &HeaderMap::new(), b"", false, sent),
        Ok(())
    );
}

#[tokio::test]
async fn a_permanent_failure_does_not_stop_the_other_requests_of_its_shard() {
    let (endpoint, server) = serve(vec![(400, vec![], "out of bounds"), (204, vec![], "")]).await;
    // One shard, one series per request.
    let exporter = exporter(&endpoint, |c| {
        c.target_info.enabled = false;
        c.remote_write_queue.num_consumers = 1;
        c.max_batch_size_bytes = 1;
    });
    let mut batch = counter(AggregationTemporality::Cumulative, &[(1_000_000, 1.0)]);
    let mut resources = batch.metrics_mut().unwrap().clone();
    let mut second = resources[0].scope_metrics[0].metrics[0].clone();
    second.name = "other.requests".into();
    resources[0].scope_metrics[0].metrics.push(second);
    let outcome = exporter
        .export(Batch::from_metrics(resources))
        .await
        .unwrap();
    assert_eq!(outcome.rejected, 1, "{outcome:?}");
    assert!(outcome.message.contains("out of bounds"));
    assert_eq!(
        server.requests.lock().unwrap().len(),
        2,
        "the request after the refused one was sent"
    );
}
