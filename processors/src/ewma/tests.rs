use super::*;
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, ScopeMetrics, Sum};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_core::testdata::string_attribute;

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;
const MIB: f64 = 1_048_576.0;

fn config(json: serde_json::Value) -> Config {
    serde_json::from_value(json).expect("test config is valid JSON for ewma::Config")
}

fn point(ts: u64, value: f64, attrs: &[(&str, &str)]) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs.iter().map(|(k, v)| string_attribute(k, v)).collect(),
        time_unix_nano: ts,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn gauge(name: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    gauge_metric(name.to_string(), "", unit.to_string(), points)
}

fn counter(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.to_string(),
        unit: "1".to_string(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn resource(pod: &str, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![string_attribute("k8s.pod.name", pod)],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn run(processor: &mut EwmaProcessor, resources: Vec<ResourceMetrics>) -> Vec<ResourceMetrics> {
    let batch = processor
        .process(Batch::from_metrics(resources))
        .expect("ewma never refuses a metrics batch");
    match batch.data() {
        oxcol_core::Data::Metrics(v) => v.clone(),
        other => panic!("expected decoded metrics, got {other:?}"),
    }
}

/// The value of the single point of metric `name` in the output, if any.
fn value(out: &[ResourceMetrics], name: &str) -> Option<f64> {
    let values = values(out, name);
    assert!(
        values.len() <= 1,
        "{name}: expected at most one point, got {values:?}"
    );
    values.first().copied()
}

fn values(out: &[ResourceMetrics], name: &str) -> Vec<f64> {
    out.iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == name)
        .flat_map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g
                .data_points
                .iter()
                .filter_map(|p| match p.value {
                    Some(number_data_point::Value::AsDouble(v)) => Some(v),
                    Some(number_data_point::Value::AsInt(v)) => Some(v as f64),
                    None => None,
                })
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn alpha_from_half_life_matches_the_spec_fact() {
    // Δt = 15 s, H = 60 s -> α = 0.159104…
    let alpha = Weighting::HalfLife { seconds: 60.0 }.alpha(15.0);
    assert!((alpha - 0.159104).abs() < 1e-6, "{alpha}");
}

#[test]
fn bias_corrected_start_matches_pandas_adjust_true() {
    // α = 0.5, x = [10, 20] -> S = [5, 12.5], W = [0.5, 0.75], corrected 16.667.
    let mut state = SeriesState::default();
    state.update(T0, 10.0, 0, false, Weighting::Alpha(0.5), 10.0);
    state.update(T0 + SEC, 20.0, 0, false, Weighting::Alpha(0.5), 10.0);
    assert!((state.level.sum - 12.5).abs() < 1e-12);
    assert!((state.level.weight - 0.75).abs() < 1e-12);
    assert!((state.level.value().unwrap_or(f64::NAN) - 50.0 / 3.0).abs() < 1e-9);
}

#[test]
fn irregular_intervals_give_the_true_slope_of_a_ramp_and_warm_up_is_respected() {
    let mut p = EwmaProcessor::new(
        "ewma",
        &config(serde_json::json!({
            "metrics": [{"match": "mem", "half_life": "30s", "rate": true}], "warmup_points": 3
        })),
        None,
    )
    .expect("valid config");
    // 2 units per second, sampled at irregular intervals.
    let offsets = [0u64, 1, 5, 6, 15, 16, 40];
    for (i, &s) in offsets.iter().enumerate() {
        let out = run(
            &mut p,
            vec![resource(
                "a",
                vec![gauge(
                    "mem",
                    "By",
                    vec![point(T0 + s * SEC, 100.0 + 2.0 * s as f64, &[])],
                )],
            )],
        );
        let level = value(&out, "mem.ewma");
        let rate = value(&out, "mem.rate.ewma");
        // Warm-up: .ewma from the 3rd point, .rate.ewma from the 3rd rate sample (4th point).
        assert_eq!(level.is_some(), i >= 2, "point {i}: {level:?}");
        assert_eq!(rate.is_some(), i >= 3, "point {i}: {rate:?}");
        if let Some(rate) = rate {
            assert!((rate - 2.0).abs() < 1e-9, "point {i}: rate {rate}");
        }
        if let Some(level) = level {
            // A smoothed ramp lags the current value, but stays between the first and last.
            assert!(
                level > 100.0 && level <= 100.0 + 2.0 * s as f64,
                "point {i}: level {level}"
            );
        }
        if i == offsets.len() - 1 {
            let unit = out[0].scope_metrics[0]
                .metrics
                .iter()
                .find(|m| m.name == "mem.rate.ewma")
                .map(|m| m.unit.clone());
            assert_eq!(unit.as_deref(), Some("By/s"));
        }
    }
}

#[test]
fn outputs_stay_in_the_input_resource_and_scope_and_the_batch_is_recounted() {
    let mut p = EwmaProcessor::new(
        "ewma",
        &config(serde_json::json!({
            "metrics": [{"match": "m.*", "alpha": 0.5}], "warmup_points": 1
        })),
        None,
    )
    .expect("valid config");
    let batch = Batch::from_metrics(vec![
        resource(
            "a",
            vec![gauge(
                "m1",
                "s",
                vec![point(T0, 1.0, &[("x", "1")]), point(T0, 2.0, &[("x", "2")])],
            )],
        ),
        resource(
            "b",
            vec![
                gauge("other", "s", vec![point(T0, 3.0, &[])]),
                gauge("m2", "s", vec![point(T0, 4.0, &[])]),
            ],
        ),
    ]);
    assert_eq!(batch.items(), 4);
    let batch = p.process(batch).expect("processed");
    // Two more points in resource a (one per series), one more in b.
    assert_eq!(batch.items(), 7);
    let oxcol_core::Data::Metrics(out) = batch.data() else {
        panic!("decoded")
    };
    let names = |r: &ResourceMetrics| {
        r.scope_metrics[0]
            .metrics
            .iter()
            .map(|m| m.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&out[0]), ["m1", "m1.ewma"]);
    assert_eq!(names(&out[1]), ["other", "m2", "m2.ewma"]);
    assert_eq!(values(&out[..1], "m1.ewma"), [1.0, 2.0]);
}

#[test]
fn counter_reset_uses_the_new_value_as_the_increase_and_is_counted() {
    let registry = Registry::new();
    let mut p = EwmaProcessor::new(
        "ewma/c",
        &config(serde_json::json!({
            "metrics": [{"match": "requests", "half_life": "1h", "rate": true}], "warmup_points": 1
        })),
        Some(&registry),
    )
    .expect("valid config");
    run(
        &mut p,
        vec![resource(
            "a",
            vec![counter("requests", vec![point(T0, 1000.0, &[])])],
        )],
    );
    let out = run(
        &mut p,
        vec![resource(
            "a",
            vec![counter("requests", vec![point(T0 + 10 * SEC, 1100.0, &[])])],
        )],
    );
    assert_eq!(value(&out, "requests.rate.ewma"), Some(10.0));
    // Process restart: the counter starts again from 0 and is at 50 ten seconds later.
    let out = run(
        &mut p,
        vec![resource(
            "a",
            vec![counter("requests", vec![point(T0 + 20 * SEC, 50.0, &[])])],
        )],
    );
    let rate = value(&out, "requests.rate.ewma").expect("rate after reset");
    // Equal weights for equal intervals under a 1h half-life: mean of 10 and 5.
    assert!((rate - 7.5).abs() < 0.01, "{rate}");
    assert!(rate > 0.0, "a reset must never produce a negative rate");
    assert_eq!(
        registry
            .counter(
                "oxcol_processor_series_restarted",
                "",
                &[("processor", "ewma/c"), ("reason", "reset")]
            )
            .get(),
        1
    );
}

#[test]
fn gap_restarts_and_out_of_order_points_are_skipped() {
    let registry = Registry::new();
    let mut p = EwmaProcessor::new("ewma", &config(serde_json::json!({
        "metrics": [{"match": "g", "half_life": "10s"}], "warmup_points": 2, "max_gap_half_lives": 3
    })), Some(&registry))
    .expect("valid config");
    run(
        &mut p,
        vec![resource(
            "a",
            vec![gauge("g", "", vec![point(T0, 1.0, &[])])],
        )],
    );
    let out = run(
        &mut p,
        vec![resource(
            "a",
            vec![gauge("g", "", vec![point(T0 + 5 * SEC, 1.0, &[])])],
        )],
    );
    assert_eq!(value(&out, "g.ewma"), Some(1.0));
    // Older than the last point: skipped, nothing emitted.
    let out = run(
        &mut p,
        vec![resource(
            "a",
            vec![gauge("g", "", vec![point(T0 + 4 * SEC, 9.0, &[])])],
        )],
    );
    assert_eq!(value(&out, "g.ewma"), None);
    // 31 s later > 3 half-lives: restart, warm-up again, old level forgotten.
    let out = run(
        &mut p,
        vec![resource(
            "a",
            vec![gauge("g", "", vec![point(T0 + 36 * SEC, 100.0, &[])])],
        )],
    );
    assert_eq!(value(&out, "g.ewma"), None);
    let out = run(
        &mut p,
        vec![resource(
            "a",
            vec![gauge("g", "", vec![point(T0 + 37 * SEC, 100.0, &[])])],
        )],
    );
    assert_eq!(value(&out, "g.ewma"), Some(100.0));
    let skipped = registry.counter(
        "oxcol_processor_points_skipped",
        "",
        &[("processor", "ewma"), ("reason", "out_of_order")],
    );
    assert_eq!(skipped.get(), 1);
    assert_eq!(
        registry
            .counter(
                "oxcol_processor_series_restarted",
                "",
                &[("processor", "ewma"), ("reason", "gap")]
            )
            .get(),
        1
    );
}

fn predictor(warmup: u32) -> EwmaProcessor {
    EwmaProcessor::new("ewma", &config(serde_json::json!({
        "predict": [{"name": "cgroup.memory.time_to_limit", "value": "cgroup.memory.working_set", "limit": "cgroup.memory.max", "half_life": "1m"}],
        "warmup_points": warmup
    })), None)
    .expect("valid config")
}

fn memory(ts: u64, working_set: f64, limit: Option<f64>) -> Vec<ResourceMetrics> {
    let mut metrics = vec![gauge(
        "cgroup.memory.working_set",
        "By",
        vec![point(ts, working_set, &[])],
    )];
    if let Some(limit) = limit {
        metrics.push(gauge(
            "cgroup.memory.max",
            "By",
            vec![point(ts, limit, &[])],
        ));
    }
    vec![resource("app", metrics)]
}

#[test]
fn prediction_matches_the_spec_fact_and_is_absent_when_not_growing_or_unlimited() {
    // Level 800 MiB, limit 1024 MiB, slope 1 MiB/s -> 224 s.
    let mut p = predictor(2);
    let mut last = None;
    for s in 0..=4u64 {
        let out = memory(T0 + s * SEC, (796 + s) as f64 * MIB, Some(1024.0 * MIB));
        last = value(&run(&mut p, out), "cgroup.memory.time_to_limit");
        // Warm-up: two rate samples needed (third point).
        assert_eq!(last.is_some(), s >= 2, "second {s}: {last:?}");
    }
    let eta = last.expect("prediction after warm-up");
    assert!((eta - 224.0).abs() < 1e-6, "{eta}");
    // The limit is read from the same batch even when it comes after the value, and
    // from another resource it does not apply.
    let mut other = predictor(1);
    run(&mut other, memory(T0, 0.0, None));
    let batch = vec![
        resource(
            "app",
            vec![gauge(
                "cgroup.memory.working_set",
                "By",
                vec![point(T0 + SEC, MIB, &[])],
            )],
        ),
        resource(
            "other",
            vec![gauge(
                "cgroup.memory.max",
                "By",
                vec![point(T0 + SEC, 10.0 * MIB, &[])],
            )],
        ),
    ];
    assert_eq!(
        value(&run(&mut other, batch), "cgroup.memory.time_to_limit"),
        None,
        "no limit for this resource"
    );

    // Not growing: absent, never a huge number.
    let mut flat = predictor(1);
    for s in 0..5u64 {
        let out = run(
            &mut flat,
            memory(T0 + s * SEC, 500.0 * MIB, Some(1024.0 * MIB)),
        );
        assert_eq!(value(&out, "cgroup.memory.time_to_limit"), None);
    }
    // Shrinking: absent.
    let mut shrinking = predictor(1);
    for s in 0..5u64 {
        let out = run(
            &mut shrinking,
            memory(T0 + s * SEC, (500 - s) as f64 * MIB, Some(1024.0 * MIB)),
        );
        assert_eq!(value(&out, "cgroup.memory.time_to_limit"), None);
    }
    // No limit (memory.max = "max" is reported as no point) or an "unlimited" v1 value.
    let mut unlimited = predictor(1);
    for s in 0..5u64 {
        let limit = if s % 2 == 0 { None } else { Some(9.2e18) };
        let out = run(
            &mut unlimited,
            memory(T0 + s * SEC, (500 + s) as f64 * MIB, limit),
        );
        assert_eq!(value(&out, "cgroup.memory.time_to_limit"), None);
    }
    // At or above the limit: 0.
    let mut over = predictor(1);
    run(&mut over, memory(T0, 1000.0 * MIB, Some(1024.0 * MIB)));
    let out = run(
        &mut over,
        memory(T0 + SEC, 1030.0 * MIB, Some(1024.0 * MIB)),
    );
    assert_eq!(value(&out, "cgroup.memory.time_to_limit"), Some(0.0));
}

#[test]
fn series_are_bounded_and_stale_series_are_evicted_and_counted() {
    let registry = Registry::new();
    let mut p = EwmaProcessor::new(
        "ewma",
        &config(serde_json::json!({
            "metrics": [{"match": "g"}], "max_series": 3, "stale_after": "1m"
        })),
        Some(&registry),
    )
    .expect("valid config");
    let points = |ts: u64, ids: std::ops::Range<u32>| {
        ids.map(|i| point(ts, 1.0, &[("id", &i.to_string())]))
            .collect::<Vec<_>>()
    };
    run(
        &mut p,
        vec![resource("a", vec![gauge("g", "", points(T0, 0..5))])],
    );
    assert_eq!(p.series_count(), 3);
    let dropped = registry.counter(
        "oxcol_processor_series_dropped",
        "",
        &[("processor", "ewma")],
    );
    assert_eq!(dropped.get(), 2);
    // Two minutes later only series 3 and 4 report: 0..3 are stale, evicted, and 3, 4 fit.
    run(
        &mut p,
        vec![resource(
            "a",
            vec![gauge("g", "", points(T0 + 120 * SEC, 3..5))],
        )],
    );
    assert_eq!(p.series_count(), 2);
    let evicted = registry.counter(
        "oxcol_processor_series_evicted",
        "",
        &[("processor", "ewma")],
    );
    assert_eq!(evicted.get(), 3);
    assert_eq!(
        registry
            .gauge(
                "oxcol_processor_series_active",
                "",
                &[("processor", "ewma")]
            )
            .get(),
        2
    );
}

#[test]
fn attribute_order_does_not_change_series_identity() {
    let a = vec![string_attribute("a", "1"), string_attribute("b", "2")];
    let b = vec![string_attribute("b", "2"), string_attribute("a", "1")];
    assert_eq!(attributes_hash(&a), attributes_hash(&b));
    assert_ne!(
        attributes_hash(&a),
        attributes_hash(&[string_attribute("a", "2"), string_attribute("b", "1")])
    );
}

#[test]
fn config_errors_say_what_to_do() {
    let c = config(
        serde_json::json!({"metrics": [{"match": "(", "half_life": "1m", "alpha": 0.3}, {"match": "x", "alpha": 1.5}], "predict": [{"name": "", "value": "v", "limit": "l"}], "max_series": 0}),
    );
    let errors = c.validate().join("\n");
    assert!(errors.contains("metrics[0].match"), "{errors}");
    assert!(
        errors.contains("metrics[0]: set half_life or alpha, not both"),
        "{errors}"
    );
    assert!(
        errors.contains("metrics[1].alpha must be in (0, 1]"),
        "{errors}"
    );
    assert!(errors.contains("predict[0].name is required"), "{errors}");
    assert!(
        errors.contains("max_series must be greater than zero"),
        "{errors}"
    );
    assert!(
        config(serde_json::json!({}))
            .validate()
            .join("")
            .contains("nothing to do")
    );
    assert!(
        serde_json::from_value::<Config>(serde_json::json!({"metrics": [], "bogus": 1})).is_err()
    );
    // The example is valid.
    let example = config(serde_json::json!({
        "metrics": [{"match": "cgroup.memory.working_set", "half_life": "2m", "rate": true}],
        "predict": [{"name": "cgroup.memory.time_to_limit", "value": "cgroup.memory.working_set", "limit": "cgroup.memory.max"}]
    }));
    assert_eq!(example.validate(), Vec::<String>::new());
}

#[test]
fn random_points_never_panic_and_never_emit_non_finite_values() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut p = EwmaProcessor::new(
        "ewma",
        &config(serde_json::json!({
            "metrics": [{"match": ".*", "half_life": "5s", "rate": true}],
            "predict": [{"name": "eta", "value": "v", "limit": "l"}],
            "warmup_points": 1, "max_series": 50
        })),
        None,
    )
    .expect("valid config");
    for _ in 0..500 {
        let ts = rng.random_range(0..T0 + 1000 * SEC);
        let v: f64 = match rng.random_range(0..6) {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => -1e300,
            _ => rng.random_range(-1e6..1e6),
        };
        let name = ["v", "l", "x"][rng.random_range(0..3)];
        let metric = if rng.random_bool(0.5) {
            gauge(name, "", vec![point(ts, v, &[])])
        } else {
            counter(name, vec![point(ts, v, &[])])
        };
        let out = run(&mut p, vec![resource("a", vec![metric])]);
        for name in [
            "v.ewma",
            "v.rate.ewma",
            "l.ewma",
            "x.ewma",
            "x.rate.ewma",
            "eta",
        ] {
            for v in values(&out, name) {
                assert!(v.is_finite(), "{name} = {v}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Checkpoints

use crate::checkpoint::{RestoreFailure, Storage, file_name};
use std::path::{Path, PathBuf};

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oxcol-ewma-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creates a scratch dir");
    dir
}

fn storage(dir: &Path) -> Storage {
    Storage {
        extension: "file_storage/state".to_string(),
        directory: dir.to_path_buf(),
        fsync: true,
        create_directory: false,
        directory_permissions: 0o750,
        lock_timeout: Duration::from_millis(100),
    }
}

fn stateful_config() -> Config {
    config(serde_json::json!({
        "metrics": [{"match": "cgroup.memory.working_set", "half_life": "1m", "rate": true},
                    {"match": "requests", "alpha": 0.3, "rate": true}],
        "predict": [{"name": "cgroup.memory.time_to_limit", "value": "cgroup.memory.working_set",
                     "limit": "cgroup.memory.max", "half_life": "2m"}],
        "warmup_points": 3
    }))
}

/// Batch i: two pods' working sets (growing irregularly), their limit, and a counter.
fn pods(i: u64) -> Vec<ResourceMetrics> {
    let ts = T0 + i * 15 * SEC + (i * 7919 % 3000) * 1_000_000;
    let n = i as f64;
    ["a", "b"]
        .iter()
        .enumerate()
        .map(|(k, pod)| {
            let ws = (300.0 + 2.0 * n + (n * 0.7 + k as f64).sin() * 5.0) * MIB;
            resource(
                pod,
                vec![
                    gauge(
                        "cgroup.memory.working_set",
                        "By",
                        vec![point(ts, ws, &[("container", "app")])],
                    ),
                    gauge(
                        "cgroup.memory.max",
                        "By",
                        vec![point(ts, 1024.0 * MIB, &[("container", "app")])],
                    ),
                    counter(
                        "requests",
                        vec![point(ts, 100.0 * n * (k as f64 + 1.0), &[])],
                    ),
                ],
            )
        })
        .collect()
}

/// Every emitted point of the batch as (metric, resource index, value), sorted.
fn emitted(out: &[ResourceMetrics]) -> Vec<(String, usize, u64)> {
    let mut all: Vec<(String, usize, u64)> = out
        .iter()
        .enumerate()
        .flat_map(|(r, rm)| {
            rm.scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .flat_map(move |m| match &m.data {
                    Some(metric::Data::Gauge(g))
                        if m.name.contains(".ewma") || m.name.ends_with("time_to_limit") =>
                    {
                        g.data_points
                            .iter()
                            .map(|p| {
                                (
                                    m.name.clone(),
                                    r,
                                    point_value(p).unwrap_or(f64::NAN).to_bits(),
                                )
                            })
                            .collect::<Vec<_>>()
                    }
                    _ => Vec::new(),
                })
        })
        .collect();
    all.sort();
    all
}

fn with_storage(dir: &Path, config: &Config, registry: &Registry) -> EwmaProcessor {
    EwmaProcessor::new("ewma", config, Some(registry))
        .and_then(|p| p.with_storage(&storage(dir), "metrics/mem", Some(registry)))
        .expect("valid config and storage")
}

fn failures(registry: &Registry, reason: RestoreFailure) -> u64 {
    registry
        .counter(
            "oxcol_processor_state_restore_failures",
            "",
            &[("processor", "ewma"), ("reason", reason.label())],
        )
        .get()
}

#[test]
fn checkpoint_round_trip_continues_bit_for_bit_without_a_new_warm_up() {
    let dir = scratch("roundtrip");
    let mut reference = EwmaProcessor::new("ewma", &stateful_config(), None).expect("valid");
    let mut first = with_storage(&dir, &stateful_config(), &Registry::new());
    for i in 0..40 {
        run(&mut reference, pods(i));
        run(&mut first, pods(i));
    }
    first.shutdown();
    drop(first);
    let registry = Registry::new();
    let mut second = with_storage(&dir, &stateful_config(), &registry);
    assert_eq!(second.series_count(), reference.series_count());
    assert_eq!(
        registry
            .gauge(
                "oxcol_processor_state_restored_timestamp_seconds",
                "",
                &[("processor", "ewma")]
            )
            .get() as u64,
        reference.newest_ts / SEC
    );
    // Right after the restart every output is there (no warm-up) and equal bit for bit.
    for i in 40..60 {
        let (ours, theirs) = (
            emitted(&run(&mut second, pods(i))),
            emitted(&run(&mut reference, pods(i))),
        );
        // 2 pods x (working_set .ewma + .rate.ewma, requests .ewma + .rate.ewma, prediction).
        assert_eq!(ours.len(), 10, "batch {i}: {ours:?}");
        assert_eq!(ours, theirs, "batch {i}");
    }
    // Without the checkpoint, a restart warms up again: nothing on the first point.
    let mut fresh = EwmaProcessor::new("ewma", &stateful_config(), None).expect("valid");
    assert!(emitted(&run(&mut fresh, pods(60))).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unusable_checkpoints_start_empty_and_are_counted_by_reason() {
    let dir = scratch("damaged");
    let path = dir.join(file_name("ewma", "metrics/mem"));
    let mut p = with_storage(&dir, &stateful_config(), &Registry::new());
    for i in 0..10 {
        run(&mut p, pods(i));
    }
    let held = p.series_count();
    assert_eq!(held, 8, "2 pods x (2 smoothed + 1 predicted + 1 limit)");
    p.shutdown();
    drop(p);
    let good = std::fs::read(&path).expect("written at shutdown");
    let restart = |bytes: &[u8], config: &Config, reason: Option<RestoreFailure>| {
        std::fs::write(&path, bytes).expect("writes the checkpoint");
        let registry = Registry::new();
        let p = with_storage(&dir, config, &registry);
        for r in RestoreFailure::ALL {
            assert_eq!(
                failures(&registry, r),
                u64::from(Some(r) == reason),
                "{r:?} for {reason:?}"
            );
        }
        p.series_count()
    };
    assert_eq!(restart(&good, &stateful_config(), None), held);
    assert_eq!(
        restart(
            &good[..checkpoint::HEADER_LEN + 3],
            &stateful_config(),
            Some(RestoreFailure::Truncated)
        ),
        0
    );
    let mut corrupt = good.clone();
    corrupt[checkpoint::HEADER_LEN + 1] ^= 0x40;
    assert_eq!(
        restart(&corrupt, &stateful_config(), Some(RestoreFailure::Corrupt)),
        0
    );
    let mut newer = good.clone();
    newer[12..16].copy_from_slice(&(STATE_VERSION + 1).to_le_bytes());
    assert_eq!(
        restart(&newer, &stateful_config(), Some(RestoreFailure::Version)),
        0
    );
    // Another rule set (a half-life changed): the keys mean something else now.
    let mut changed = stateful_config();
    changed.metrics[0].half_life = Some(GoDuration::from_secs(120));
    assert_eq!(
        restart(&good, &changed, Some(RestoreFailure::ConfigChanged)),
        0
    );
    // Keys the state does not depend on may change: a smaller max_series keeps the most
    // recently seen series.
    let mut smaller = stateful_config();
    smaller.max_series = 5;
    assert_eq!(restart(&good, &smaller, None), 5);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn storage_and_checkpoint_interval_defaults_and_errors() {
    let defaults = Config::default();
    assert_eq!(defaults.storage, None);
    assert_eq!(defaults.checkpoint_interval, GoDuration::from_secs(30));
    let c = config(
        serde_json::json!({"metrics": [{"match": "x"}], "storage": "", "checkpoint_interval": "0s"}),
    );
    let errors = c.validate().join("\n");
    assert!(
        errors.contains("storage must name a file_storage extension"),
        "{errors}"
    );
    assert!(
        errors.contains("checkpoint_interval must be greater than zero"),
        "{errors}"
    );
    // Without storage there is no timer.
    let p = EwmaProcessor::new("ewma", &stateful_config(), None).expect("valid");
    assert_eq!(p.tick_interval(), None);
}
