//! The processors of the gateway benchmark (`transform` with 5 statements, `filter` and
//! `attributes`, the oracle case `gateway_processors_bench`) over a fixed request, as the
//! pipeline runs them: the encoded request is decoded once, goes through the three
//! processors, and is encoded once (`Batch::encode_in_place`, as the sending queue does).
//! For instruction counts: `valgrind --tool=callgrind target/release/examples/gateway_ottl`.
//! Prints a checksum of the output so a change of behaviour shows.
//!
//! `cargo build --release -p oxcol-processors --example gateway_ottl`; argument: rounds
//! (default 200).

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_core::batch::Batch;
use oxcol_core::pipeline::Processor;
use oxcol_core::signal::Signal;
use oxcol_processors::{attributes, filter, transform};

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// 10 resources x 10 metrics (gauges and sums) x 10 points with 3 attributes each,
/// shaped like `oxcol-bench load`'s requests.
fn batch() -> Vec<ResourceMetrics> {
    (0..10)
        .map(|r| ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", &format!("checkout-{r}")),
                    kv("service.instance.id", &format!("instance-{r}")),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "oxcol.testdata".to_string(),
                    version: "1.0.0".to_string(),
                    ..Default::default()
                }),
                metrics: (0..10)
                    .map(|m| {
                        let points = (0..10)
                            .map(|p| NumberDataPoint {
                                attributes: (0..3)
                                    .map(|a| {
                                        kv(&format!("attr.{a}"), &format!("value-{}", (p + a) % 8))
                                    })
                                    .collect(),
                                start_time_unix_nano: 1_700_000_000_000_000_000,
                                time_unix_nano: 1_700_000_010_000_000_000,
                                value: Some(number_data_point::Value::AsDouble(p as f64 * 1.5)),
                                ..Default::default()
                            })
                            .collect();
                        Metric {
                            name: format!("test.metric.{m}"),
                            description: "a metric for tests".to_string(),
                            unit: "By".to_string(),
                            data: Some(if m % 2 == 0 {
                                metric::Data::Gauge(Gauge {
                                    data_points: points,
                                })
                            } else {
                                metric::Data::Sum(Sum {
                                    data_points: points,
                                    aggregation_temporality: 2,
                                    is_monotonic: true,
                                })
                            }),
                            ..Default::default()
                        }
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect()
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    // The config of integration/oracle/cases/gateway_processors_bench ($$ already
    // expanded to $ as the config loader does).
    let transform_config: transform::Config = serde_json::from_value(serde_json::json!({
        "error_mode": "ignore",
        "metric_statements": [
            {"context": "resource", "statements": [
                "set(attributes[\"k8s.cluster.name\"], \"gateway-eu-1\")",
                "replace_pattern(attributes[\"service.instance.id\"], \"^instance-(\\\\d+)$\", \"i-$1\")"
            ]},
            {"context": "datapoint", "statements": [
                "set(attributes[\"tier\"], \"gold\") where attributes[\"attr.0\"] == \"value-3\"",
                "replace_pattern(attributes[\"attr.1\"], \"^value-(\\\\d+)$\", \"v$1\")",
                "delete_key(attributes, \"attr.2\")"
            ]}
        ]
    }))
    .expect("transform config");
    let filter_config: filter::Config = serde_json::from_value(serde_json::json!({
        "error_mode": "ignore",
        "metrics": {
            "metric": [
                "name == \"test.metric.9\"",
                "IsMatch(name, \"^test[.]metric[.][37]$\")"
            ],
            "datapoint": ["attributes[\"attr.0\"] == \"value-5\""]
        }
    }))
    .expect("filter config");
    let attributes_config: attributes::Config = serde_json::from_value(serde_json::json!({
        "actions": [
            {"key": "collector.name", "value": "gateway-1", "action": "insert"},
            {"key": "attr.0", "action": "delete"}
        ]
    }))
    .expect("attributes config");
    let mut processors: Vec<Box<dyn Processor>> = vec![
        Box::new(
            transform::TransformProcessor::new("transform", &transform_config)
                .expect("transform processor"),
        ),
        Box::new(filter::FilterProcessor::new("filter", &filter_config).expect("filter processor")),
        Box::new(
            attributes::AttributesProcessor::new("attributes", &attributes_config, Signal::Metrics)
                .expect("attributes processor"),
        ),
    ];
    let input = bytes::Bytes::from(prost::Message::encode_to_vec(
        &opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
            resource_metrics: batch(),
        },
    ));
    let mut checksum = 0xcbf2_9ce4_8422_2325u64;
    for _ in 0..rounds {
        let mut batch = Batch::from_encoded(Signal::Metrics, input.clone()).expect("input");
        for processor in &mut processors {
            batch = processor.process(batch).expect("process");
        }
        batch.encode_in_place();
        // FNV-1a over the encoded output.
        for b in batch.to_bytes() {
            checksum = (checksum ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    println!("rounds {rounds} checksum {checksum}");
}
