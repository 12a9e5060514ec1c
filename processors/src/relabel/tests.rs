//! The processor on real OTLP shapes: point attributes and `__name__` as labels, moves
//! between metrics, pruning, typed attributes, resource labels, invalid results.

use super::*;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, ScopeMetrics, Sum, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_core::testdata::string_attribute;

fn processor(yaml_json: &str, resource_labels: bool) -> (RelabelProcessor, RelabelCounters) {
    let rules: Vec<RelabelConfig> = serde_json::from_str(yaml_json).expect("test rules decode");
    let config = Config {
        metric_relabel_configs: rules,
        resource_labels,
        ..Config::default()
    };
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let counters = RelabelCounters::default();
    (
        RelabelProcessor::new("relabel", &config, counters.clone()).expect("compiles"),
        counters,
    )
}

fn int_attribute(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

fn point(attributes: Vec<KeyValue>, value: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        time_unix_nano: 1,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..NumberDataPoint::default()
    }
}

fn gauge(name: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.to_string(),
        unit: unit.to_string(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Metric::default()
    }
}

fn resource(service: &str, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![string_attribute("service.name", service)],
            ..Resource::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..ScopeMetrics::default()
        }],
        ..ResourceMetrics::default()
    }
}

fn names_and_points(resources: &[ResourceMetrics]) -> Vec<(String, usize)> {
    resources
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| (m.name.clone(), point_count(m)))
        .collect()
}

fn attrs(resources: &[ResourceMetrics], metric_name: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    for m in resources
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == metric_name)
    {
        if let Some(metric::Data::Gauge(g)) = &m.data {
            for p in &g.data_points {
                out.push(
                    p.attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), stringify(kv.value.as_ref())))
                        .collect(),
                );
            }
        }
    }
    out
}

#[test]
fn drops_points_and_prunes_empty_metrics_scopes_resources() {
    let (p, counters) = processor(
        r#"[{"source_labels": ["__name__"], "regex": "debug_.*", "action": "drop"}]"#,
        false,
    );
    let mut batch = Batch::from_metrics(vec![
        resource(
            "a",
            vec![
                gauge("debug_x", "1", vec![point(vec![], 1.0)]),
                gauge("kept", "1", vec![point(vec![], 2.0)]),
            ],
        ),
        resource(
            "b",
            vec![gauge(
                "debug_y",
                "1",
                vec![
                    point(vec![], 1.0),
                    point(vec![string_attribute("k", "v")], 3.0),
                ],
            )],
        ),
    ]);
    let mut p = p;
    batch = p.process(batch).expect("processes");
    assert_eq!(batch.items(), 1, "recounted");
    let resources = batch.metrics_mut().expect("metrics");
    assert_eq!(resources.len(), 1, "resource b had only dropped points");
    assert_eq!(names_and_points(resources), vec![("kept".to_string(), 1)]);
    assert_eq!(counters.dropped.get(), 3);
}

#[test]
fn name_change_moves_points_and_merges_into_an_existing_metric() {
    let rules = r#"[{"source_labels": ["__name__"], "regex": "(.*)_ms", "target_label": "__name__", "replacement": "${1}_seconds"}]"#;
    let (p, _) = processor(rules, false);
    let mut resources = vec![resource(
        "a",
        vec![
            gauge(
                "latency_ms",
                "s",
                vec![
                    point(vec![string_attribute("route", "/a")], 1.0),
                    point(vec![string_attribute("route", "/b")], 2.0),
                ],
            ),
            gauge(
                "latency_seconds",
                "s",
                vec![point(vec![string_attribute("route", "/c")], 3.0)],
            ),
            gauge("queue_ms", "s", vec![point(vec![], 4.0)]),
        ],
    )];
    p.relabel(&mut resources);
    assert_eq!(
        names_and_points(&resources),
        vec![
            ("latency_seconds".to_string(), 3),
            ("queue_seconds".to_string(), 1)
        ]
    );
    assert_eq!(attrs(&resources, "latency_seconds").len(), 3);
}

#[test]
fn incompatible_target_gets_its_own_metric() {
    let rules = r#"[{"target_label": "__name__", "replacement": "same"}]"#;
    let (p, _) = processor(rules, false);
    let sum = Metric {
        name: "counter".to_string(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![point(vec![], 1.0)],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Metric::default()
    };
    let mut resources = vec![resource(
        "a",
        vec![gauge("same", "", vec![point(vec![], 1.0)]), sum],
    )];
    p.relabel(&mut resources);
    let metrics = &resources[0].scope_metrics[0].metrics;
    assert_eq!(metrics.len(), 2);
    assert!(metrics.iter().all(|m| m.name == "same"));
    assert!(
        matches!(metrics[1].data, Some(metric::Data::Sum(ref s)) if s.is_monotonic),
        "type and temporality kept"
    );
}

#[test]
fn attributes_keep_their_types_unless_rewritten() {
    let rules = r#"[
        {"source_labels": ["code"], "regex": "(\\d)\\d\\d", "target_label": "class", "replacement": "${1}xx"},
        {"source_labels": ["route"], "target_label": "route", "action": "uppercase"},
        {"regex": "tmp", "action": "labeldrop"}
    ]"#;
    let (p, _) = processor(rules, false);
    let mut resources = vec![resource(
        "a",
        vec![gauge(
            "m",
            "",
            vec![point(
                vec![
                    int_attribute("code", 503),
                    string_attribute("route", "/x"),
                    string_attribute("tmp", "1"),
                ],
                1.0,
            )],
        )],
    )];
    p.relabel(&mut resources);
    let Some(metric::Data::Gauge(g)) = &resources[0].scope_metrics[0].metrics[0].data else {
        panic!("gauge stays a gauge")
    };
    let point = &g.data_points[0];
    let keys: Vec<&str> = point.attributes.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        vec!["class", "code", "route"],
        "sorted, __name__ not an attribute, tmp dropped"
    );
    assert_eq!(
        point.attributes[1]
            .value
            .as_ref()
            .and_then(|v| v.value.clone()),
        Some(any_value::Value::IntValue(503)),
        "int kept"
    );
    assert_eq!(stringify(point.attributes[0].value.as_ref()), "5xx");
    assert_eq!(stringify(point.attributes[2].value.as_ref()), "/X");
}

#[test]
fn resource_attributes_are_visible_with_a_prefix_and_read_only() {
    let rules = r#"[
        {"source_labels": ["__resource_service.name"], "regex": "b", "action": "drop"},
        {"source_labels": ["__resource_service.name"], "target_label": "service"}
    ]"#;
    let (p, _) = processor(rules, true);
    let mut resources = vec![
        resource("a", vec![gauge("m", "", vec![point(vec![], 1.0)])]),
        resource("b", vec![gauge("m", "", vec![point(vec![], 1.0)])]),
    ];
    p.relabel(&mut resources);
    assert_eq!(resources.len(), 1);
    assert_eq!(
        attrs(&resources, "m"),
        vec![vec![("service".to_string(), "a".to_string())]]
    );
    let (hidden, _) = processor(
        r#"[{"source_labels": ["__resource_service.name"], "regex": "a", "action": "drop"}]"#,
        false,
    );
    let mut resources = vec![resource(
        "a",
        vec![gauge("m", "", vec![point(vec![], 1.0)])],
    )];
    hidden.relabel(&mut resources);
    assert_eq!(
        resources.len(),
        1,
        "without resource_labels the rules do not see resource attributes"
    );
}

#[test]
fn invalid_result_fails_the_resource_like_a_scrape() {
    let rules = r#"[{"source_labels": ["kind"], "regex": "bad", "target_label": "__name__", "replacement": ""}]"#;
    let (p, counters) = processor(rules, false);
    let mut resources = vec![
        resource(
            "a",
            vec![
                gauge(
                    "m",
                    "",
                    vec![
                        point(vec![string_attribute("kind", "bad")], 1.0),
                        point(vec![], 2.0),
                    ],
                ),
                gauge("n", "", vec![point(vec![], 3.0)]),
            ],
        ),
        resource("b", vec![gauge("m", "", vec![point(vec![], 1.0)])]),
    ];
    p.relabel(&mut resources);
    assert_eq!(resources.len(), 1, "resource a removed whole");
    assert_eq!(
        counters.invalid.get(),
        3,
        "every point of the failed resource is counted"
    );
}

#[test]
fn config_errors_name_the_rule() {
    let config: Config = Config {
        metric_relabel_configs: serde_json::from_str(
            r#"[{"action": "hashmod", "target_label": "t"}]"#,
        )
        .unwrap(),
        ..Config::default()
    };
    assert_eq!(
        config.validate(),
        vec![
            "metric_relabel_configs[0] relabel configuration for hashmod requires non-zero modulus"
                .to_string()
        ]
    );
}

#[test]
fn no_rules_leaves_the_batch_encoded() {
    let (mut p, _) = (
        RelabelProcessor::new("relabel", &Config::default(), RelabelCounters::default())
            .expect("empty config compiles"),
        (),
    );
    let request = oxcol_core::testdata::metrics_request(1, 2, 3);
    let batch = Batch::from_encoded(
        oxcol_core::Signal::Metrics,
        prost::Message::encode_to_vec(&request).into(),
    )
    .expect("valid request");
    let out = p.process(batch).expect("passes");
    assert!(matches!(out.data(), oxcol_core::Data::Encoded(_)));
}

/// The first implementation of the output attributes (a map of the original typed
/// values), kept as the reference for the test below.
fn reference_rebuild(
    original: Vec<KeyValue>,
    labels: oxcol_core::relabel::LabelSet,
) -> Vec<KeyValue> {
    let mut by_key: std::collections::HashMap<String, AnyValue> = original
        .into_iter()
        .filter_map(|kv| Some((kv.key, kv.value?)))
        .collect();
    labels
        .into_vec()
        .into_iter()
        .filter(|(name, _)| name != "__name__" && !name.starts_with(RESOURCE_PREFIX))
        .map(|(key, value)| {
            let typed = by_key.remove(&key).filter(|v| stringify(Some(v)) == value);
            let value = typed.unwrap_or(AnyValue {
                value: Some(any_value::Value::StringValue(value)),
            });
            KeyValue {
                key,
                value: Some(value),
                ..KeyValue::default()
            }
        })
        .collect()
}

/// Output attributes (typed values kept where unchanged, repeated keys, missing values,
/// labels added and removed) are exactly what the first implementation built.
#[test]
fn attributes_match_reference_on_random_inputs() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let keys = ["a", "b", "c", "__name__", "__resource_x"];
    let values = ["", "1", "true", "x", "1.5"];
    for _ in 0..5000 {
        let original: Vec<KeyValue> = (0..rng.random_range(0..5))
            .map(|_| {
                let key = keys[rng.random_range(0..keys.len())];
                let value = match rng.random_range(0..5) {
                    0 => None,
                    1 => Some(any_value::Value::IntValue(1)),
                    2 => Some(any_value::Value::BoolValue(true)),
                    3 => Some(any_value::Value::DoubleValue(1.5)),
                    _ => Some(any_value::Value::StringValue(
                        values[rng.random_range(0..values.len())].to_string(),
                    )),
                };
                KeyValue {
                    key: key.to_string(),
                    value: if rng.random_range(0..6) == 0 {
                        None
                    } else {
                        Some(AnyValue { value })
                    },
                    ..KeyValue::default()
                }
            })
            .collect();
        let result: Vec<(&str, &str)> = (0..rng.random_range(0..5))
            .map(|_| {
                (
                    keys[rng.random_range(0..keys.len())],
                    values[rng.random_range(0..values.len())],
                )
            })
            .collect();
        let expected = reference_rebuild(
            original.clone(),
            oxcol_core::relabel::LabelSet::from_pairs(result.iter().copied()),
        );
        let mut labels = Labels::default();
        for (k, v) in &result {
            labels.push(Cow::Borrowed(k), Cow::Borrowed(v));
        }
        labels.normalize();
        let mut plan = Vec::new();
        plan_attributes(&original, &mut labels, &mut plan);
        let built = build_attributes(original.clone(), &mut plan, &mut Vec::new());
        assert_eq!(built, expected, "{original:?} -> {result:?}");
    }
}
