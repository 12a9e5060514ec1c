//! oxcol's `prometheusremotewrite` and `prometheus` exporters against a real Prometheus
//! (Debian package `prometheus`, 2.x; installed by scripts/test): metrics sent with a real
//! OTLP gRPC client (tonic) into oxcol come out in Prometheus, checked through its HTTP
//! query API. Prometheus runs on a free loopback port with a temp storage dir and is
//! always killed when a test ends; every wait is bounded.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Oxcol, bounded, free_port};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_integration::net::percent_encode;
use oxcol_integration::prometheus::{Prometheus, sample_value};
use serde_json::Value;

/// Prometheus scraping every 1 s; `scrape` is extra YAML for `scrape_configs` (or empty).
async fn start_prometheus(scrape: &str, flags: &[&str]) -> Prometheus {
    Prometheus::start_async(
        &format!("global:\n  scrape_interval: 1s\nscrape_configs:\n{scrape}"),
        flags,
    )
    .await
}

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

fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", "checkout"),
                    text("service.namespace", "shop"),
                    text("service.instance.id", "pod-1"),
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

fn number(t: u64, value: f64, attributes: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: t - 60_000_000_000,
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

/// A gauge, a counter, a histogram and a summary, all at time `t`.
fn four_kinds(t: u64) -> ExportMetricsServiceRequest {
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
        counter(
            "http.server.requests",
            vec![number(t, 42.0, vec![text("http.route", "/cart")])],
        ),
        Metric {
            name: "http.server.duration".into(),
            description: "request time".into(),
            unit: "s".into(),
            metadata: vec![],
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    start_time_unix_nano: t - 60_000_000_000,
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
                    start_time_unix_nano: t - 60_000_000_000,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_and_scrape_reach_a_real_prometheus() {
    bounded(Duration::from_secs(90), async {
        let pull_port = free_port();
        let prometheus = start_prometheus(
            &format!("  - job_name: oxcol_pull\n    honor_labels: true\n    static_configs:\n      - targets: ['127.0.0.1:{pull_port}']\n"),
            &[],
        )
        .await;
        let components = format!(
            "exporters:\n  prometheusremotewrite:\n    endpoint: {}\n    external_labels:\n      cluster: test\n  prometheus:\n    endpoint: 127.0.0.1:{pull_port}\n    namespace: pulled\n",
            prometheus.write_url()
        );
        let oxcol = Oxcol::start("", &components, &PIPELINE.replace("@EXPORTERS@", "prometheusremotewrite, prometheus")).await;
        send(&oxcol, four_kinds(now_nanos() - 1_000_000_000)).await;

        // Remote write: names, labels, values.
        let counter = prometheus.wait_series_async("http_server_requests_total", 1).await;
        assert_eq!(counter.len(), 1, "{counter:?}");
        let labels = &counter[0]["metric"];
        assert_eq!(labels["job"], "shop/checkout");
        assert_eq!(labels["instance"], "pod-1");
        assert_eq!(labels["http_route"], "/cart");
        assert_eq!(labels["cluster"], "test");
        assert_eq!(labels["otel_scope_name"], "oxcol.test");
        assert_eq!(sample_value(&counter[0]), 42.0);
        let gauge = prometheus.wait_series_async("queue_depth{queue=\"orders\"}", 1).await;
        assert_eq!(gauge.iter().map(sample_value).collect::<Vec<_>>(), vec![7.0]);
        let buckets = prometheus.wait_series_async("http_server_duration_seconds_bucket", 3).await;
        let mut by_le: Vec<(String, f64)> =
            buckets.iter().map(|s| (s["metric"]["le"].as_str().unwrap_or("").to_string(), sample_value(s))).collect();
        by_le.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(by_le, vec![("+Inf".into(), 6.0), ("0.1".into(), 1.0), ("0.5".into(), 3.0)]);
        assert_eq!(prometheus.wait_series_async("http_server_duration_seconds_sum", 1).await.iter().map(sample_value).collect::<Vec<_>>(), vec![2.5]);
        assert_eq!(prometheus.wait_series_async("http_server_duration_seconds_count", 1).await.iter().map(sample_value).collect::<Vec<_>>(), vec![6.0]);
        let quantile = prometheus.wait_series_async("rpc_latency_milliseconds{quantile=\"0.99\"}", 1).await;
        assert_eq!(quantile.iter().map(sample_value).collect::<Vec<_>>(), vec![50.0]);
        assert_eq!(prometheus.wait_series_async("rpc_latency_milliseconds_count", 1).await.iter().map(sample_value).collect::<Vec<_>>(), vec![5.0]);
        let info = prometheus.wait_series_async("target_info", 1).await;
        assert_eq!(info[0]["metric"]["host_name"], "node-7");

        // Scrape: the same series under the `pulled_` namespace (honor_labels keeps job
        // and instance as oxcol wrote them).
        let pushed = prometheus.query_async("{__name__=~\"(queue_depth|http_server_.*|rpc_latency_.*|target_info)\"}").await;
        let pulled = prometheus.wait_series_async("{__name__=~\"pulled_.*\"}", pushed.len()).await;
        let key = |series: &Value, strip: &str| -> String {
            let mut labels: Vec<String> = series["metric"]
                .as_object()
                .map(|m| m.iter().filter(|(k, _)| k.as_str() != "cluster").map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect())
                .unwrap_or_default();
            labels.sort();
            format!("{} {}", labels.join(",").replace(strip, ""), sample_value(series))
        };
        let mut pushed_keys: Vec<String> = pushed.iter().map(|s| key(s, "")).collect();
        let mut pulled_keys: Vec<String> = pulled.iter().map(|s| key(s, "pulled_")).collect();
        pushed_keys.sort();
        pulled_keys.sort();
        assert_eq!(pulled_keys, pushed_keys);
        assert_eq!(pushed_keys.len(), 12, "{pushed_keys:#?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_killed_mid_stream_loses_nothing_acknowledged() {
    bounded(Duration::from_secs(100), async {
        let mut prometheus = start_prometheus("", &[]).await;
        let components = format!(
            "exporters:\n  prometheusremotewrite:\n    endpoint: {}\n    target_info:\n      enabled: false\n",
            prometheus.write_url()
        );
        let oxcol = Oxcol::start("", &components, &PIPELINE.replace("@EXPORTERS@", "prometheusremotewrite")).await;
        let base = now_nanos() - 120_000_000_000;
        const TOTAL: u64 = 40;
        for i in 0..TOTAL {
            if i == 15 {
                prometheus.kill();
            }
            if i == 25 {
                prometheus.launch_async().await;
            }
            // Every request is acknowledged by oxcol (queued) whether Prometheus is up or not.
            send(
                &oxcol,
                request(vec![counter("seq", vec![number(base + i * 1_000_000_000, i as f64, vec![])])]),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let samples = loop {
            let result = prometheus.query_async("seq_total[10m]").await;
            let samples: Vec<(f64, f64)> = result
                .first()
                .and_then(|s| s["values"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .map(|v| {
                    (
                        v[0].as_f64().unwrap_or(0.0),
                        v[1].as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN),
                    )
                })
                .collect();
            if samples.len() as u64 >= TOTAL || Instant::now() >= deadline {
                break samples;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let values: Vec<f64> = samples.iter().map(|(_, v)| *v).collect();
        assert_eq!(
            values,
            (0..TOTAL).map(|i| i as f64).collect::<Vec<_>>(),
            "every acknowledged sample, in order, none twice"
        );
        let mut timestamps: Vec<i64> = samples.iter().map(|(t, _)| (*t * 1000.0).round() as i64).collect();
        timestamps.dedup();
        assert_eq!(timestamps.len() as u64, TOTAL);
        let failed = oxcol.metric("otelcol_exporter_send_failed_metric_points", &[]).await;
        assert_eq!(failed, 0.0);
        assert!(
            oxcol.metric("otelcol_exporter_retry_send_metric_points", &[]).await > 0.0,
            "the outage was retried"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_out_of_order_samples_against_a_real_prometheus() {
    bounded(Duration::from_secs(60), async {
        let prometheus = start_prometheus("", &[]).await;
        let components = format!(
            "exporters:\n  prometheusremotewrite:\n    endpoint: {}\n    target_info:\n      enabled: false\n",
            prometheus.write_url()
        );
        let oxcol = Oxcol::start("", &components, &PIPELINE.replace("@EXPORTERS@", "prometheusremotewrite")).await;
        let t = now_nanos() - 10_000_000_000;
        let steps: [(u64, f64, f64, f64); 4] = [
            // (timestamp, value, expected sent, expected failed) after the step.
            (t, 1.0, 1.0, 0.0),
            // Same timestamp, same value: Prometheus accepts it silently (idempotent).
            (t, 1.0, 2.0, 0.0),
            // Same timestamp, other value: 400 "duplicate sample for timestamp", dropped.
            (t, 2.0, 2.0, 1.0),
            // Older than the newest sample: 400 "out of order sample", dropped.
            (t - 5_000_000_000, 3.0, 2.0, 2.0),
        ];
        for (timestamp, value, sent, failed) in steps {
            send(&oxcol, request(vec![counter("dup", vec![number(timestamp, value, vec![])])])).await;
            let done = |v: f64| v >= sent;
            oxcol
                .wait_metric("otelcol_exporter_sent_metric_points", &[], Duration::from_secs(10), done)
                .await;
            let seen_failed = oxcol
                .wait_metric(
                    "otelcol_exporter_send_failed_metric_points",
                    &[],
                    Duration::from_secs(if failed > 0.0 { 10 } else { 0 }),
                    |v| v >= failed,
                )
                .await;
            assert_eq!(seen_failed, failed, "after sending {value} at {timestamp}:\n{}", oxcol.log());
            assert_eq!(oxcol.metric("otelcol_exporter_sent_metric_points", &[]).await, sent);
        }
        let log = oxcol.log();
        assert!(log.contains("duplicate sample for timestamp"), "the 400 reason is logged:\n{log}");
        assert!(log.contains("out of order sample"), "the 400 reason is logged:\n{log}");
        let stored = prometheus.wait_series_async("dup_total", 1).await;
        assert_eq!(stored.iter().map(sample_value).collect::<Vec<_>>(), vec![1.0]);
    })
    .await;
}

fn gauge(name: &str, t: u64, value: f64) -> Metric {
    Metric {
        name: name.into(),
        description: String::new(),
        unit: String::new(),
        metadata: vec![],
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![number(t, value, vec![])],
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_that_stops_arriving_gets_a_staleness_marker() {
    bounded(Duration::from_secs(60), async {
        let prometheus = start_prometheus("", &[]).await;
        let components = format!(
            "exporters:\n  prometheusremotewrite:\n    endpoint: {}\n    staleness_interval: 1s\n",
            prometheus.write_url()
        );
        let oxcol = Oxcol::start(
            "",
            &components,
            &PIPELINE.replace("@EXPORTERS@", "prometheusremotewrite"),
        )
        .await;
        let first = now_nanos() - 2_000_000_000;
        send(
            &oxcol,
            request(vec![gauge("kept", first, 1.0), gauge("gone", first, 2.0)]),
        )
        .await;
        assert_eq!(
            prometheus.wait_series_async("gone", 1).await.len(),
            1,
            "the series arrived"
        );
        // The resource keeps sending, without `gone`, for longer than staleness_interval.
        let mut last = first;
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(700)).await;
            last = now_nanos();
            send(&oxcol, request(vec![gauge("kept", last, 1.0)])).await;
        }
        let later = last as f64 / 1e9 + 1.0;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let gone = prometheus.query_at_async("gone", later).await;
            if gone.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "gone is still visible at a later time: {gone:?}\n{}",
                oxcol.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Before the marker the value is there; the series that keeps arriving is unaffected.
        let before = prometheus
            .query_at_async("gone", first as f64 / 1e9 + 0.1)
            .await;
        assert_eq!(
            before.iter().map(sample_value).collect::<Vec<_>>(),
            vec![2.0]
        );
        assert_eq!(prometheus.query_at_async("kept", later).await.len(), 1);
        // The marker is a real sample of the series: the raw range shows a stale NaN last.
        let raw = prometheus.query_at_async("gone[1m]", later).await;
        assert!(!raw.is_empty(), "the series' samples are still stored");
        assert_eq!(
            oxcol
                .metric("otelcol_exporter_send_failed_metric_points", &[])
                .await,
            0.0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_histograms_and_exemplars_reach_a_real_prometheus() {
    use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
    use opentelemetry_proto::tonic::metrics::v1::{
        Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, exemplar,
    };
    bounded(Duration::from_secs(60), async {
        let prometheus = start_prometheus("", &["--enable-feature=native-histograms,exemplar-storage"]).await;
        let components = format!(
            "exporters:\n  prometheusremotewrite:\n    endpoint: {}\n    target_info:\n      enabled: false\n",
            prometheus.write_url()
        );
        let oxcol = Oxcol::start("", &components, &PIPELINE.replace("@EXPORTERS@", "prometheusremotewrite")).await;
        let t = now_nanos() - 1_000_000_000;
        let trace_id: Vec<u8> = (1..=16).collect();
        let span_id: Vec<u8> = (1..=8).collect();
        let exemplar = |value: f64| Exemplar {
            filtered_attributes: vec![text("user", "u1")],
            time_unix_nano: t,
            value: Some(exemplar::Value::AsDouble(value)),
            span_id: span_id.clone(),
            trace_id: trace_id.clone(),
        };
        let native = Metric {
            name: "rpc.server.duration".into(),
            description: "rpc time".into(),
            unit: "s".into(),
            metadata: vec![],
            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    start_time_unix_nano: t - 60_000_000_000,
                    time_unix_nano: t,
                    count: 12,
                    sum: Some(30.5),
                    scale: 1,
                    zero_count: 2,
                    positive: Some(Buckets { offset: -1, bucket_counts: vec![3, 0, 0, 0, 5] }),
                    negative: Some(Buckets { offset: 0, bucket_counts: vec![2] }),
                    exemplars: vec![exemplar(1.5)],
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
        };
        let mut with_exemplar = number(t, 42.0, vec![]);
        with_exemplar.exemplars = vec![exemplar(1.0)];
        send(&oxcol, request(vec![native, counter("orders", vec![with_exemplar])])).await;

        let count = prometheus.wait_series_async("histogram_count(rpc_server_duration_seconds)", 1).await;
        assert_eq!(count.iter().map(sample_value).collect::<Vec<_>>(), vec![12.0], "{}", oxcol.log());
        let sum = prometheus.query_async("histogram_sum(rpc_server_duration_seconds)").await;
        assert_eq!(sum.iter().map(sample_value).collect::<Vec<_>>(), vec![30.5]);
        // The 5 observations above 2^(3/2) and at most 2^2 (OTel index 3 at scale 1).
        let upper = prometheus.query_async("histogram_fraction(2.83, 4, rpc_server_duration_seconds)").await;
        let fraction = upper.first().map(sample_value).unwrap_or(f64::NAN);
        assert!((fraction - 5.0 / 12.0).abs() < 0.01, "fraction {fraction}");

        let start = t as f64 / 1e9 - 10.0;
        let path = format!(
            "/api/v1/query_exemplars?query={}&start={start:.3}&end={:.3}",
            percent_encode("orders_total"),
            start + 20.0
        );
        let (status, body) = prometheus.get_async(&path).await.expect("queries exemplars");
        assert_eq!(status, 200, "{body}");
        let json: Value = serde_json::from_str(&body).expect("JSON");
        let exemplars = &json["data"][0]["exemplars"];
        assert_eq!(exemplars[0]["labels"]["trace_id"], "0102030405060708090a0b0c0d0e0f10", "{body}");
        assert_eq!(exemplars[0]["labels"]["span_id"], "0102030405060708");
        assert_eq!(exemplars[0]["labels"]["user"], "u1");
        assert_eq!(exemplars[0]["value"], "1");
        assert_eq!(oxcol.metric("otelcol_exporter_send_failed_metric_points", &[]).await, 0.0);
    })
    .await;
}
