//! oxcol's `prometheusremotewrite` exporter speaking remote write 2.0
//! (`io.prometheus.write.v2.Request`) to a real Prometheus 3.16 (the `prometheus3` peer,
//! `oxcol_integration::prometheus3`): metrics sent by an OTLP gRPC client into a real oxcol
//! process come out in Prometheus, checked through its HTTP API, and the receiver's
//! `X-Prometheus-Remote-Write-*-Written` answers are checked against what was sent through
//! oxcol's self-metrics (`otelcol_exporter_prometheusremotewrite_written_*` from the
//! headers, `oxcol_exporter_prometheusremotewrite_sent_*` from the requests).
//! Prometheus runs on a free loopback port with a temp storage dir and is always killed
//! when a test ends; every wait is bounded.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Oxcol, bounded};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, DataPointFlags, Exemplar, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, exemplar, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_integration::net::percent_encode;
use oxcol_integration::prometheus::{Api, sample_value};
use oxcol_integration::prometheus3::{Prometheus3, WRITE_V1, WRITE_V2};
use serde_json::Value;

const SECOND: u64 = 1_000_000_000;

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

/// One resource (`service.name` `checkout` in `shop`, instance `pod`, host `node-7`) with
/// `metrics` in one scope.
fn request_from(pod: &str, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", "checkout"),
                    text("service.namespace", "shop"),
                    text("service.instance.id", pod),
                    text("host.name", "node-7"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "oxcol.test".into(),
                    version: "1.0".into(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    request_from("pod-1", metrics)
}

fn number(t: u64, value: f64, attributes: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: t - 60 * SECOND,
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn counter(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: "a counter".into(),
        unit: "{request}".into(),
        metadata: vec![],
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
    }
}

fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: String::new(),
        unit: String::new(),
        metadata: vec![],
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
    }
}

fn exemplar_at(t: u64, value: f64) -> Exemplar {
    Exemplar {
        filtered_attributes: vec![text("user", "u1")],
        time_unix_nano: t,
        value: Some(exemplar::Value::AsDouble(value)),
        span_id: (1..=8).collect(),
        trace_id: (1..=16).collect(),
    }
}

/// An exponential histogram point: scale 1, 12 observations (2 zero, 3 in OTel bucket -1,
/// 5 in bucket 3, 2 negative), sum 30.5, started a minute before `t`.
fn exponential_point(t: u64) -> ExponentialHistogramDataPoint {
    ExponentialHistogramDataPoint {
        start_time_unix_nano: t - 60 * SECOND,
        time_unix_nano: t,
        count: 12,
        sum: Some(30.5),
        scale: 1,
        zero_count: 2,
        positive: Some(Buckets {
            offset: -1,
            bucket_counts: vec![3, 0, 0, 0, 5],
        }),
        negative: Some(Buckets {
            offset: 0,
            bucket_counts: vec![2],
        }),
        ..Default::default()
    }
}

fn exponential(name: &str, points: Vec<ExponentialHistogramDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: "rpc time".into(),
        unit: "s".into(),
        metadata: vec![],
        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
    }
}

/// Every kind at time `t`: a gauge, a counter with an exemplar, a classic histogram, a
/// summary and an exponential histogram with an exemplar. What remote write makes of it:
/// 1 + 1 + (3 buckets + sum + count) + (2 quantiles + sum + count) = 11 float samples,
/// plus `target_info` = 12; 1 native histogram; 2 exemplars.
fn every_kind(t: u64) -> ExportMetricsServiceRequest {
    let mut with_exemplar = number(t, 42.0, vec![text("http.route", "/cart")]);
    with_exemplar.exemplars = vec![exemplar_at(t, 1.0)];
    let mut native = exponential_point(t);
    native.exemplars = vec![exemplar_at(t, 1.5)];
    request(vec![
        Metric {
            name: "queue.depth".into(),
            description: "items waiting".into(),
            unit: "{item}".into(),
            metadata: vec![],
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![number(t, 7.0, vec![text("queue", "orders")])],
            })),
        },
        counter("http.server.requests", vec![with_exemplar]),
        Metric {
            name: "http.server.duration".into(),
            description: "request time".into(),
            unit: "s".into(),
            metadata: vec![],
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    start_time_unix_nano: t - 60 * SECOND,
                    time_unix_nano: t,
                    count: 6,
                    sum: Some(2.5),
                    bucket_counts: vec![1, 2, 3],
                    explicit_bounds: vec![0.1, 0.5],
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
        },
        Metric {
            name: "rpc.latency".into(),
            description: "rpc latency".into(),
            unit: "ms".into(),
            metadata: vec![],
            data: Some(metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    start_time_unix_nano: t - 60 * SECOND,
                    time_unix_nano: t,
                    count: 5,
                    sum: 100.0,
                    quantile_values: vec![
                        ValueAtQuantile {
                            quantile: 0.5,
                            value: 10.0,
                        },
                        ValueAtQuantile {
                            quantile: 0.99,
                            value: 50.0,
                        },
                    ],
                    ..Default::default()
                }],
            })),
        },
        exponential("rpc.server.duration", vec![native]),
    ])
}

async fn send(oxcol: &Oxcol, request: ExportMetricsServiceRequest) {
    let mut client = MetricsServiceClient::connect(format!("http://{}", oxcol.grpc_endpoint()))
        .await
        .expect("connects to oxcol");
    client
        .export(request)
        .await
        .expect("oxcol accepts the metrics");
}

const PIPELINE: &str = "    metrics:\n      receivers: [otlp]\n      exporters: [@EXPORTERS@]\n";

/// oxcol with one remote write 2.0 exporter `prometheusremotewrite` to `api`, with `extra`
/// keys (indented 4 spaces).
async fn oxcol_v2(api: Api, extra: &str) -> Oxcol {
    let components = format!(
        "exporters:\n  prometheusremotewrite:\n    endpoint: {}\n    protobuf_message: io.prometheus.write.v2.Request\n{extra}",
        api.write_url()
    );
    Oxcol::start(
        "",
        &components,
        &PIPELINE.replace("@EXPORTERS@", "prometheusremotewrite"),
    )
    .await
}

/// oxcol's self-metric `name` of the exporter `prometheusremotewrite`.
async fn exporter_metric(oxcol: &Oxcol, name: &str) -> f64 {
    oxcol
        .metric(name, &[("exporter", "prometheusremotewrite")])
        .await
}

/// Waits until `otelcol_exporter_sent_metric_points` + `..._send_failed_metric_points`
/// reach `points` (every point of the test's requests was answered one way or the other).
async fn wait_answered(oxcol: &Oxcol, points: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answered = exporter_metric(oxcol, "otelcol_exporter_sent_metric_points").await
            + exporter_metric(oxcol, "otelcol_exporter_send_failed_metric_points").await;
        if answered >= points {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {answered} of {points} points answered:\n{}",
            oxcol.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The written (from the receiver's `*-Written` headers) and sent counts of samples,
/// histograms and exemplars.
async fn written_and_sent(oxcol: &Oxcol) -> ([f64; 3], [f64; 3]) {
    let mut written = [0.0; 3];
    let mut sent = [0.0; 3];
    for (i, kind) in ["samples", "histograms", "exemplars"].iter().enumerate() {
        written[i] = exporter_metric(
            oxcol,
            &format!("otelcol_exporter_prometheusremotewrite_written_{kind}"),
        )
        .await;
        sent[i] = exporter_metric(
            oxcol,
            &format!("oxcol_exporter_prometheusremotewrite_sent_{kind}"),
        )
        .await;
    }
    (written, sent)
}

/// The raw samples `(seconds, value text)` of `selector` over `range` ending at `at`.
async fn raw_samples(api: Api, selector: &str, range: &str, at: f64) -> Vec<(f64, String)> {
    let result = api
        .query_at_async(&format!("{selector}[{range}]"), at)
        .await;
    result
        .first()
        .and_then(|series| series["values"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|v| {
            (
                v[0].as_f64().unwrap_or(f64::NAN),
                v[1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn values(result: &[Value]) -> Vec<f64> {
    result.iter().map(sample_value).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_reaches_prometheus_3_over_remote_write_2() {
    bounded(Duration::from_secs(90), async {
        let prometheus = Prometheus3::start(
            &[WRITE_V2],
            &["--enable-feature=exemplar-storage,created-timestamp-zero-ingestion"],
        )
        .await;
        let oxcol = oxcol_v2(
            prometheus.api(),
            "    external_labels:\n      cluster: test\n",
        )
        .await;
        let t = now_nanos() - 2 * SECOND;
        send(&oxcol, every_kind(t)).await;
        wait_answered(&oxcol, 5.0).await;

        // What the receiver says it wrote is exactly what was sent.
        let (written, sent) = written_and_sent(&oxcol).await;
        assert_eq!(
            written,
            [12.0, 1.0, 2.0],
            "written (samples, histograms, exemplars)\n{}",
            oxcol.log()
        );
        assert_eq!(sent, written);
        assert_eq!(
            exporter_metric(&oxcol, "otelcol_exporter_sent_metric_points").await,
            5.0
        );
        assert_eq!(
            exporter_metric(&oxcol, "otelcol_exporter_send_failed_metric_points").await,
            0.0
        );

        // Counter, gauge: names, labels, values.
        let counter = prometheus
            .wait_series_async("http_server_requests_total", 1)
            .await;
        assert_eq!(counter.len(), 1, "{counter:?}");
        let labels = &counter[0]["metric"];
        assert_eq!(labels["job"], "shop/checkout");
        assert_eq!(labels["instance"], "pod-1");
        assert_eq!(labels["http_route"], "/cart");
        assert_eq!(labels["cluster"], "test");
        assert_eq!(labels["otel_scope_name"], "oxcol.test");
        assert_eq!(values(&counter), vec![42.0]);
        assert_eq!(
            values(
                &prometheus
                    .query_async("queue_depth{queue=\"orders\"}")
                    .await
            ),
            vec![7.0]
        );

        // Classic histogram and summary.
        let buckets = prometheus
            .query_async("http_server_duration_seconds_bucket")
            .await;
        let mut by_le: Vec<(String, f64)> = buckets
            .iter()
            .map(|s| {
                (
                    s["metric"]["le"].as_str().unwrap_or("").to_string(),
                    sample_value(s),
                )
            })
            .collect();
        by_le.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            by_le,
            vec![
                ("+Inf".into(), 6.0),
                ("0.1".into(), 1.0),
                ("0.5".into(), 3.0)
            ]
        );
        assert_eq!(
            values(
                &prometheus
                    .query_async("http_server_duration_seconds_sum")
                    .await
            ),
            vec![2.5]
        );
        assert_eq!(
            values(
                &prometheus
                    .query_async("http_server_duration_seconds_count")
                    .await
            ),
            vec![6.0]
        );
        assert_eq!(
            values(
                &prometheus
                    .query_async("rpc_latency_milliseconds{quantile=\"0.99\"}")
                    .await
            ),
            vec![50.0]
        );
        assert_eq!(
            values(
                &prometheus
                    .query_async("rpc_latency_milliseconds{quantile=\"0.5\"}")
                    .await
            ),
            vec![10.0]
        );
        assert_eq!(
            values(&prometheus.query_async("rpc_latency_milliseconds_sum").await),
            vec![100.0]
        );
        assert_eq!(
            values(
                &prometheus
                    .query_async("rpc_latency_milliseconds_count")
                    .await
            ),
            vec![5.0]
        );

        // Native histogram from the exponential histogram.
        assert_eq!(
            values(
                &prometheus
                    .query_async("histogram_count(rpc_server_duration_seconds)")
                    .await
            ),
            vec![12.0]
        );
        assert_eq!(
            values(
                &prometheus
                    .query_async("histogram_sum(rpc_server_duration_seconds)")
                    .await
            ),
            vec![30.5]
        );
        let upper = prometheus
            .query_async("histogram_fraction(2.83, 4, rpc_server_duration_seconds)")
            .await;
        let fraction = upper.first().map(sample_value).unwrap_or(f64::NAN);
        assert!((fraction - 5.0 / 12.0).abs() < 0.01, "fraction {fraction}");

        // target_info carries the resource attributes that are not job/instance.
        let info = prometheus.query_async("target_info").await;
        assert_eq!(info.len(), 1, "{info:?}");
        assert_eq!(info[0]["metric"]["host_name"], "node-7");
        assert_eq!(info[0]["metric"]["job"], "shop/checkout");
        assert_eq!(sample_value(&info[0]), 1.0);

        // Exemplars, on the counter and on the native histogram.
        let at = t as f64 / 1e9;
        for series in ["http_server_requests_total", "rpc_server_duration_seconds"] {
            let path = format!(
                "/api/v1/query_exemplars?query={}&start={:.3}&end={:.3}",
                percent_encode(series),
                at - 10.0,
                at + 10.0
            );
            let (status, body) = prometheus
                .get_async(&path)
                .await
                .expect("queries exemplars");
            assert_eq!(status, 200, "{body}");
            let json: Value = serde_json::from_str(&body).expect("JSON");
            let exemplar = &json["data"][0]["exemplars"][0];
            assert_eq!(
                exemplar["labels"]["trace_id"], "0102030405060708090a0b0c0d0e0f10",
                "{series}: {body}"
            );
            assert_eq!(exemplar["labels"]["span_id"], "0102030405060708");
            assert_eq!(exemplar["labels"]["user"], "u1");
        }

        // Created (start) timestamps: with created-timestamp-zero-ingestion Prometheus
        // stores a 0 at the start time, one minute before the sample, of the counter, the
        // histogram's and summary's _count, and the native histogram.
        let start = at - 60.0;
        for series in [
            "http_server_requests_total",
            "http_server_duration_seconds_count",
            "rpc_latency_milliseconds_count",
        ] {
            let raw = raw_samples(prometheus.api(), series, "5m", at + 1.0).await;
            assert_eq!(raw.len(), 2, "{series}: {raw:?}");
            assert!(
                (raw[0].0 - start).abs() < 0.002,
                "{series}: zero at the start time: {raw:?}"
            );
            assert_eq!(raw[0].1, "0", "{series}: {raw:?}");
        }
        let native = prometheus
            .query_at_async(
                "histogram_count(rpc_server_duration_seconds)",
                start + 0.001,
            )
            .await;
        assert_eq!(
            values(&native),
            vec![0.0],
            "a zero native histogram at the start time"
        );
        // The gauge has no start time: only its sample.
        assert_eq!(
            raw_samples(prometheus.api(), "queue_depth", "5m", at + 1.0)
                .await
                .len(),
            1
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_accepts_only_1_0_answers_415_and_the_batch_fails_clearly() {
    bounded(Duration::from_secs(60), async {
        let prometheus = Prometheus3::start(&[WRITE_V1], &[]).await;
        let components = format!(
            "exporters:\n  prometheusremotewrite:\n    endpoint: {url}\n    protobuf_message: io.prometheus.write.v2.Request\n    target_info:\n      enabled: false\n  prometheusremotewrite/v1:\n    endpoint: {url}\n    target_info:\n      enabled: false\n",
            url = prometheus.write_url()
        );
        let oxcol = Oxcol::start(
            "",
            &components,
            &PIPELINE.replace("@EXPORTERS@", "prometheusremotewrite, prometheusremotewrite/v1"),
        )
        .await;
        let t = now_nanos() - SECOND;
        send(&oxcol, request(vec![gauge("only_v1", vec![number(t, 3.0, vec![])])])).await;
        let failed = oxcol
            .wait_metric(
                "otelcol_exporter_send_failed_metric_points",
                &[("exporter", "prometheusremotewrite")],
                Duration::from_secs(20),
                |v| v >= 1.0,
            )
            .await;
        assert_eq!(failed, 1.0, "{}", oxcol.log());
        // Permanent: not retried, nothing written.
        assert_eq!(exporter_metric(&oxcol, "otelcol_exporter_retry_send_metric_points").await, 0.0);
        assert_eq!(exporter_metric(&oxcol, "otelcol_exporter_sent_metric_points").await, 0.0);
        assert_eq!(written_and_sent(&oxcol).await.0, [0.0; 3]);
        let log = oxcol.log();
        assert!(log.contains("HTTP 415"), "the status is logged:\n{log}");
        assert!(
            log.contains("set protobuf_message: prometheus.v1.WriteRequest"),
            "the log says what to do:\n{log}"
        );
        // The same data through the 1.0 exporter is stored: only 2.0 was refused.
        let stored = prometheus.wait_series_async("only_v1", 1).await;
        assert_eq!(values(&stored), vec![3.0]);
        assert_eq!(
            oxcol
                .metric("otelcol_exporter_sent_metric_points", &[("exporter", "prometheusremotewrite/v1")])
                .await,
            1.0
        );
    })
    .await;
}

/// `point` flagged `NO_RECORDED_VALUE`: the series ended (a staleness marker).
fn no_value(mut point: NumberDataPoint) -> NumberDataPoint {
    point.flags = DataPointFlags::NoRecordedValueMask as u32;
    point.value = None;
    point
}

/// Polls until `promql` at `at` returns no series; panics after 15 s.
async fn wait_hidden(api: Api, oxcol: &Oxcol, promql: &str, at: f64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let result = api.query_at_async(promql, at).await;
        if result.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{promql} is still visible at {at}: {result:?}\n{}",
            oxcol.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staleness_markers_end_series_in_prometheus_3() {
    bounded(Duration::from_secs(90), async {
        let prometheus = Prometheus3::start(&[WRITE_V2], &[]).await;
        let oxcol = oxcol_v2(
            prometheus.api(),
            "    staleness_interval: 1s\n    target_info:\n      enabled: false\n",
        )
        .await;
        let first = now_nanos() - 3 * SECOND;
        send(
            &oxcol,
            request(vec![
                gauge("kept", vec![number(first, 1.0, vec![])]),
                gauge("gone", vec![number(first, 2.0, vec![])]),
                gauge("ended", vec![number(first, 3.0, vec![])]),
                exponential("rpc.ended", vec![exponential_point(first)]),
            ]),
        )
        .await;
        assert_eq!(
            prometheus.wait_series_async("ended", 1).await.len(),
            1,
            "{}",
            oxcol.log()
        );
        // `ended` and the native histogram end explicitly (NO_RECORDED_VALUE), in the same
        // request as a new sample of the histogram before its end.
        let second = first + SECOND;
        let mut ended_histogram = exponential_point(second + 500_000_000);
        ended_histogram.flags = DataPointFlags::NoRecordedValueMask as u32;
        send(
            &oxcol,
            request(vec![
                gauge("kept", vec![number(second, 1.0, vec![])]),
                gauge("ended", vec![no_value(number(second, 0.0, vec![]))]),
                exponential(
                    "rpc.ended",
                    vec![exponential_point(second), ended_histogram],
                ),
            ]),
        )
        .await;
        // `gone` just stops arriving while its resource keeps sending.
        let mut last = second;
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(700)).await;
            last = now_nanos();
            send(
                &oxcol,
                request(vec![gauge("kept", vec![number(last, 1.0, vec![])])]),
            )
            .await;
        }
        let later = last as f64 / 1e9 + 1.0;
        wait_hidden(prometheus.api(), &oxcol, "ended", second as f64 / 1e9 + 0.1).await;
        let histogram_end = (second + 500_000_000) as f64 / 1e9;
        wait_hidden(
            prometheus.api(),
            &oxcol,
            "rpc_ended_seconds",
            histogram_end + 0.1,
        )
        .await;
        wait_hidden(prometheus.api(), &oxcol, "gone", later).await;
        // Before the marker each value is there; the series that keeps arriving is not hit.
        let before = first as f64 / 1e9 + 0.1;
        assert_eq!(
            values(&prometheus.query_at_async("gone", before).await),
            vec![2.0]
        );
        assert_eq!(
            values(&prometheus.query_at_async("ended", before).await),
            vec![3.0]
        );
        // The histogram's last sample, in the same request as its end, is stored before it.
        let raw = prometheus
            .query_at_async("rpc_ended_seconds[5m]", histogram_end)
            .await;
        let stamps: Vec<f64> = raw
            .first()
            .and_then(|series| series["histograms"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|h| h[0].as_f64().unwrap_or(f64::NAN))
            .collect();
        assert_eq!(stamps.len(), 2, "{raw:?}");
        assert!(
            (stamps[1] - second as f64 / 1e9).abs() < 0.002,
            "{stamps:?}"
        );
        assert_eq!(prometheus.query_at_async("kept", later).await.len(), 1);
        assert_eq!(
            exporter_metric(&oxcol, "otelcol_exporter_send_failed_metric_points").await,
            0.0,
            "{}",
            oxcol.log()
        );
        let (written, sent) = written_and_sent(&oxcol).await;
        // 9 samples sent + the 2 explicit ends + 1 absence marker (`gone`); no marker for
        // a series that ended explicitly.
        assert_eq!(sent, [10.0, 2.0, 0.0], "{}", oxcol.log());
        assert_eq!(written, sent, "every marker was written");
        assert_eq!(
            exporter_metric(
                &oxcol,
                "oxcol_exporter_prometheusremotewrite_staleness_markers"
            )
            .await,
            1.0,
            "one absence marker: gone"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_and_duplicate_samples_are_a_partial_write_counted_exactly() {
    bounded(Duration::from_secs(60), async {
        let prometheus = Prometheus3::start(&[WRITE_V2], &[]).await;
        // One shard: the four series go in one request, so Prometheus answers it as one
        // partial write.
        let oxcol = oxcol_v2(
            prometheus.api(),
            "    target_info:\n      enabled: false\n    remote_write_queue:\n      num_consumers: 1\n",
        )
        .await;
        let t = now_nanos() - 10 * SECOND;
        let series = |name: &str, at: u64, value: f64| gauge(name, vec![number(at, value, vec![])]);
        send(
            &oxcol,
            request(vec![series("same", t, 1.0), series("changed", t, 1.0), series("older", t, 1.0)]),
        )
        .await;
        wait_answered(&oxcol, 3.0).await;
        assert_eq!(written_and_sent(&oxcol).await.0, [3.0, 0.0, 0.0], "{}", oxcol.log());
        send(
            &oxcol,
            request(vec![
                // Same timestamp and value: accepted silently (what makes retries safe).
                series("same", t, 1.0),
                // Same timestamp, other value: "duplicate sample for timestamp".
                series("changed", t, 2.0),
                // Older than the newest sample: "out of order sample".
                series("older", t - 5 * SECOND, 3.0),
                series("fresh", t, 4.0),
            ]),
        )
        .await;
        wait_answered(&oxcol, 7.0).await;
        // The receiver wrote 2 of the 4 samples and said so; exactly the 2 refused points
        // are counted as failed, the 2 written ones as sent.
        let (written, sent) = written_and_sent(&oxcol).await;
        assert_eq!(written, [5.0, 0.0, 0.0], "{}", oxcol.log());
        assert_eq!(sent, [7.0, 0.0, 0.0]);
        assert_eq!(exporter_metric(&oxcol, "otelcol_exporter_send_failed_metric_points").await, 2.0);
        assert_eq!(exporter_metric(&oxcol, "otelcol_exporter_sent_metric_points").await, 5.0);
        assert_eq!(exporter_metric(&oxcol, "otelcol_exporter_retry_send_metric_points").await, 0.0, "a 400 is not retried");
        let log = oxcol.log();
        assert!(log.contains("duplicate sample for timestamp"), "Prometheus' reason is logged:\n{log}");
        assert!(log.contains("out of order sample"), "Prometheus' reason is logged:\n{log}");
        // What Prometheus stored: the first values, and the fresh series.
        for (name, value) in [("same", 1.0), ("changed", 1.0), ("older", 1.0), ("fresh", 4.0)] {
            let raw = raw_samples(prometheus.api(), name, "5m", t as f64 / 1e9 + 1.0).await;
            assert_eq!(raw.len(), 1, "{name}: {raw:?}");
            assert_eq!(raw[0].1.parse::<f64>().ok(), Some(value), "{name}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_type_and_unit_reach_prometheus_3() {
    bounded(Duration::from_secs(60), async {
        // type-and-unit-labels: Prometheus turns each series' 2.0 metadata into the
        // `__type__` and `__unit__` labels, so the metadata can be queried.
        let prometheus =
            Prometheus3::start(&[WRITE_V2], &["--enable-feature=type-and-unit-labels"]).await;
        let oxcol = oxcol_v2(prometheus.api(), "    target_info:\n      enabled: false\n").await;
        let t = now_nanos() - SECOND;
        send(&oxcol, every_kind(t)).await;
        wait_answered(&oxcol, 5.0).await;
        // Without exemplar-storage Prometheus still answers that it wrote both exemplars
        // (its exemplar appender accepts and drops them).
        assert_eq!(
            written_and_sent(&oxcol).await,
            ([11.0, 1.0, 2.0], [11.0, 1.0, 2.0])
        );
        let expected = [
            ("http_server_requests_total", "counter", ""),
            ("queue_depth", "gauge", ""),
            (
                "http_server_duration_seconds_bucket",
                "histogram",
                "seconds",
            ),
            ("rpc_latency_milliseconds_count", "summary", "milliseconds"),
            ("rpc_server_duration_seconds", "histogram", "seconds"),
        ];
        for (name, kind, unit) in expected {
            let series = prometheus
                .series(&format!("{{__name__=\"{name}\"}}"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!series.is_empty(), "{name} stored\n{}", oxcol.log());
            for labels in &series {
                assert_eq!(labels["__type__"], kind, "{name}: {labels}");
                assert_eq!(
                    labels["__unit__"].as_str().unwrap_or(""),
                    unit,
                    "{name}: {labels}"
                );
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_restart_under_load_loses_nothing_acknowledged() {
    bounded(Duration::from_secs(120), async {
        let mut prometheus = Prometheus3::start(&[WRITE_V2], &[]).await;
        let oxcol = oxcol_v2(prometheus.api(), "    target_info:\n      enabled: false\n").await;
        const SERIES: u64 = 20;
        const REQUESTS: u64 = 150;
        let base = now_nanos() - 60 * SECOND;
        // The load: request k carries sample k (value k, at base + k x 20 ms) of each of the
        // 20 series `load_total{series}`, one request every 20 ms; only what oxcol
        // acknowledged counts.
        let endpoint = format!("http://{}", oxcol.grpc_endpoint());
        let load = tokio::spawn(async move {
            let mut client = MetricsServiceClient::connect(endpoint)
                .await
                .expect("connects to oxcol");
            let mut acknowledged = Vec::new();
            for k in 0..REQUESTS {
                let t = base + k * 20_000_000;
                let points = (0..SERIES)
                    .map(|i| number(t, k as f64, vec![text("series", &i.to_string())]))
                    .collect();
                if client
                    .export(request(vec![counter("load", points)]))
                    .await
                    .is_ok()
                {
                    acknowledged.push(k);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            acknowledged
        });
        // Crash the receiver a second into the load, start it again (same storage) 1.5 s
        // later.
        tokio::time::sleep(Duration::from_secs(1)).await;
        prometheus.kill();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        prometheus.launch().await;
        let acknowledged = load.await.expect("the load runs");
        assert_eq!(
            acknowledged.len() as u64,
            REQUESTS,
            "oxcol acknowledged every request (queued)"
        );
        let points = (REQUESTS * SERIES) as f64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while exporter_metric(&oxcol, "otelcol_exporter_sent_metric_points").await < points {
            assert!(
                Instant::now() < deadline,
                "not all points delivered:\n{}",
                oxcol.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            exporter_metric(&oxcol, "otelcol_exporter_send_failed_metric_points").await,
            0.0
        );
        assert!(
            exporter_metric(&oxcol, "otelcol_exporter_retry_send_metric_points").await > 0.0,
            "the outage was retried:\n{}",
            oxcol.log()
        );
        // The receiver confirmed at least every sample once (a retried batch resends
        // samples it already had, which it writes again silently).
        let (written, sent) = written_and_sent(&oxcol).await;
        let retried = exporter_metric(&oxcol, "otelcol_exporter_retry_send_metric_points").await;
        eprintln!(
            "RESULT restart: acknowledged {points} points, samples sent {} written {} (headers), points retried {retried}",
            sent[0], written[0]
        );
        assert!(written[0] >= points, "written {written:?}, sent {sent:?}");
        assert!(sent[0] >= written[0]);
        // Stored: every acknowledged sample of every series, once, in order.
        let end = (base + REQUESTS * 20_000_000) as f64 / 1e9;
        let expected: Vec<String> = acknowledged.iter().map(|k| k.to_string()).collect();
        for i in 0..SERIES {
            let raw = raw_samples(
                prometheus.api(),
                &format!("load_total{{series=\"{i}\"}}"),
                "5m",
                end,
            )
            .await;
            let stored: Vec<String> = raw.iter().map(|(_, v)| v.clone()).collect();
            assert_eq!(stored, expected, "series {i}");
        }
    })
    .await;
}
