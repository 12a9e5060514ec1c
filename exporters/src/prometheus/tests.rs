use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_core::testdata::string_attribute;

use super::*;

fn batch(metrics: Vec<Metric>) -> Batch {
    Batch::from_metrics(vec![ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![
                string_attribute("service.name", "cart"),
                string_attribute("service.instance.id", "i-1"),
                string_attribute("k8s.pod.name", "p"),
            ],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: None,
            metrics,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }])
}

fn point(t: u64, v: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: vec![string_attribute("path", "/a\"b")],
        time_unix_nano: t * 1_000_000,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn sum(name: &str, temporality: AggregationTemporality, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: "Handled requests".into(),
        unit: "".into(),
        metadata: vec![],
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality as i32,
            is_monotonic: true,
        })),
    }
}

fn exporter(tweak: impl FnOnce(&mut Config)) -> PrometheusExporter {
    let mut config = Config {
        endpoint: "127.0.0.1:0".into(),
        ..Config::default()
    };
    tweak(&mut config);
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    PrometheusExporter::new("prometheus", &config).unwrap()
}

#[tokio::test]
async fn serves_text_format_with_help_type_and_escaped_labels() {
    let exporter = exporter(|c| {
        c.namespace = "shop".into();
        c.const_labels.insert("region".into(), "eu".into());
    });
    let histogram = Metric {
        name: "rpc.duration".into(),
        description: "RPC time".into(),
        unit: "s".into(),
        metadata: vec![],
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                time_unix_nano: 5_000_000,
                count: 3,
                sum: Some(0.75),
                bucket_counts: vec![1, 2],
                explicit_bounds: vec![0.5],
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
    };
    let gauge = Metric {
        name: "queue.depth".into(),
        description: String::new(),
        unit: "{item}".into(),
        metadata: vec![],
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![point(5, 4.0)],
        })),
    };
    let outcome = exporter
        .export(batch(vec![
            sum(
                "requests",
                AggregationTemporality::Cumulative,
                vec![point(5, 10.0)],
            ),
            histogram,
            gauge,
        ]))
        .await
        .unwrap();
    assert_eq!(outcome, ExportOutcome::default());
    let text = reqwest_text(exporter.local_addr, "text/plain").await;
    let expected = "\
# HELP shop_queue_depth 
# TYPE shop_queue_depth gauge
shop_queue_depth{instance=\"i-1\",job=\"cart\",path=\"/a\\\"b\",region=\"eu\"} 4
# HELP shop_requests_total Handled requests
# TYPE shop_requests_total counter
shop_requests_total{instance=\"i-1\",job=\"cart\",path=\"/a\\\"b\",region=\"eu\"} 10
# HELP shop_rpc_duration_seconds RPC time
# TYPE shop_rpc_duration_seconds histogram
shop_rpc_duration_seconds_bucket{instance=\"i-1\",job=\"cart\",le=\"+Inf\",region=\"eu\"} 3
shop_rpc_duration_seconds_bucket{instance=\"i-1\",job=\"cart\",le=\"0.5\",region=\"eu\"} 1
shop_rpc_duration_seconds_count{instance=\"i-1\",job=\"cart\",region=\"eu\"} 3
shop_rpc_duration_seconds_sum{instance=\"i-1\",job=\"cart\",region=\"eu\"} 0.75
# HELP shop_target_info Target metadata
# TYPE shop_target_info gauge
shop_target_info{instance=\"i-1\",job=\"cart\",k8s_pod_name=\"p\",region=\"eu\"} 1
";
    // An empty HELP line is not written.
    let expected = expected.replace("# HELP shop_queue_depth \n", "");
    assert_eq!(text, expected);
}

#[tokio::test]
async fn open_metrics_by_content_negotiation() {
    let exporter = exporter(|c| c.enable_open_metrics = true);
    exporter
        .export(batch(vec![sum(
            "requests",
            AggregationTemporality::Cumulative,
            vec![point(5, 10.0)],
        )]))
        .await
        .unwrap();
    let text = reqwest_text(
        exporter.local_addr,
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    )
    .await;
    assert!(
        text.contains("# TYPE requests counter\nrequests_total{"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    let plain = reqwest_text(exporter.local_addr, "text/plain").await;
    assert!(
        plain.contains("# TYPE requests_total counter\n") && !plain.contains("# EOF"),
        "{plain}"
    );
}

#[tokio::test]
async fn delta_accumulates_stale_removes_and_old_series_expire() {
    let exporter = exporter(|c| c.metric_expiration = GoDuration::from_millis(200));
    for (t, v) in [(1, 2.0), (2, 3.0)] {
        exporter
            .export(batch(vec![sum(
                "hits",
                AggregationTemporality::Delta,
                vec![point(t, v)],
            )]))
            .await
            .unwrap();
    }
    let text = exporter.render(false);
    assert!(
        text.contains("hits_total{instance=\"i-1\",job=\"cart\",path=\"/a\\\"b\"} 5\n"),
        "{text}"
    );
    let mut stale = point(3, 0.0);
    stale.flags = 1;
    exporter
        .export(batch(vec![sum(
            "hits",
            AggregationTemporality::Cumulative,
            vec![stale],
        )]))
        .await
        .unwrap();
    assert!(
        !exporter.render(false).contains("hits_total{"),
        "{}",
        exporter.render(false)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !exporter.render(false).contains("target_info"),
        "expired series are not served"
    );
}

/// A plain HTTP/1.0 GET with an Accept header (no client crate needed).
async fn reqwest_text(address: std::net::SocketAddr, accept: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET /metrics HTTP/1.0\r\nHost: x\r\nAccept: {accept}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_string()
}
