use super::*;
use opentelemetry_proto::tonic::metrics::v1::{Histogram, HistogramDataPoint, ScopeMetrics, Sum};
use opentelemetry_proto::tonic::resource::v1::Resource;

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;

fn config(json: serde_json::Value) -> Config {
    serde_json::from_value(json).expect("test config is valid JSON for burnrate::Config")
}

fn availability(windows: &[&str]) -> Config {
    config(serde_json::json!({
        "period": "1d",
        "windows": windows,
        "resolution": "1s",
        "slos": [{"name": "checkout-availability", "objective": 0.999,
                  "errors": {"metric": "http_requests_total", "match": {"code": "5.."}},
                  "total": {"metric": "http_requests_total"},
                  "group_by": ["service"]}]
    }))
}

fn counter_point(ts: u64, value: f64, attrs: &[(&str, &str)]) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs.iter().map(|(k, v)| string_attribute(k, v)).collect(),
        time_unix_nano: ts,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn requests(ts: u64, ok: f64, errors: f64, service: &str) -> Metric {
    Metric {
        name: "http_requests_total".to_string(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![
                counter_point(ts, ok, &[("code", "200"), ("service", service)]),
                counter_point(ts, errors, &[("code", "503"), ("service", service)]),
            ],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn batch(metrics: Vec<Metric>) -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![string_attribute("service.name", "checkout")],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn run(p: &mut BurnrateProcessor, resources: Vec<ResourceMetrics>) -> Vec<ResourceMetrics> {
    let out = p
        .process(Batch::from_metrics(resources))
        .expect("burnrate never refuses a metrics batch");
    match out.data() {
        oxcol_core::Data::Metrics(v) => v.clone(),
        other => panic!("expected decoded metrics, got {other:?}"),
    }
}

/// Points of `name` as (attributes "k=v,..." sorted, value).
fn points(out: &[ResourceMetrics], name: &str) -> Vec<(String, f64)> {
    let mut found: Vec<(String, f64)> = out
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == name)
        .flat_map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.clone(),
            _ => Vec::new(),
        })
        .map(|p| {
            let mut labels: Vec<String> = p
                .attributes
                .iter()
                .map(|kv| {
                    format!(
                        "{}={}",
                        kv.key,
                        lookup(&p.attributes, &kv.key).unwrap_or_default()
                    )
                })
                .collect();
            labels.sort();
            (labels.join(","), number_value(&p).unwrap_or(f64::NAN))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn point(out: &[ResourceMetrics], name: &str, labels: &str) -> Option<f64> {
    points(out, name)
        .into_iter()
        .find(|(l, _)| l == labels)
        .map(|(_, v)| v)
}

#[test]
fn steady_error_ratio_gives_its_burn_rate_on_every_window_and_the_budget() {
    let mut p = BurnrateProcessor::new("burnrate", &availability(&["1m", "5m"]), None)
        .expect("valid config");
    let mut out = Vec::new();
    // 1000 requests/10 s of which 0.2% fail: burn rate 2 against a 0.1% budget.
    for i in 0..40u64 {
        out = run(
            &mut p,
            batch(vec![requests(
                T0 + i * 10 * SEC,
                5000.0 + 998.0 * i as f64,
                10.0 + 2.0 * i as f64,
                "checkout",
            )]),
        );
    }
    let labels =
        |w: &str| format!("service=checkout,slo.name=checkout-availability,slo.window={w}");
    for w in ["1m", "5m"] {
        let burn = point(&out, "slo.burn_rate", &labels(w))
            .unwrap_or_else(|| panic!("burn rate {w}: {:?}", points(&out, "slo.burn_rate")));
        assert!((burn - 2.0).abs() < 1e-9, "{w}: {burn}");
    }
    // Over the 390 s seen: 0.2% of errors -> budget 1 - 2 = -1 (overspent).
    let budget = point(
        &out,
        "slo.error_budget.remaining",
        "service=checkout,slo.name=checkout-availability",
    )
    .expect("budget");
    assert!((budget - -1.0).abs() < 1e-9, "{budget}");
    // Neither the page nor the ticket rows have their windows configured: no alert.
    assert!(points(&out, "slo.alert").is_empty());
}

#[test]
fn multiwindow_alerts_fire_page_and_ticket_and_clear() {
    let windows = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"];
    let mut p =
        BurnrateProcessor::new("burnrate", &availability(&windows), None).expect("valid config");
    let labels = |s: &str| format!("service=checkout,severity={s},slo.name=checkout-availability");
    let (mut ok, mut errors) = (0.0, 0.0);
    let mut out = Vec::new();
    // Two hours of 2% errors: burn rate 20 > 14.4 on 5m and 1h -> page; > 3 on 2h and 1d
    // -> ticket.
    for i in 0..(2 * 360u64) {
        ok += 98.0;
        errors += 2.0;
        out = run(
            &mut p,
            batch(vec![requests(T0 + i * 10 * SEC, ok, errors, "checkout")]),
        );
    }
    assert_eq!(
        point(&out, "slo.alert", &labels("page")),
        Some(1.0),
        "{:?}",
        points(&out, "slo.burn_rate")
    );
    assert_eq!(point(&out, "slo.alert", &labels("ticket")), Some(1.0));
    // Then 30 minutes of no errors: the 5m and 30m windows are clean, both page rows
    // stop; the ticket rows (1d & 2h at 3x: the 2h window still burns 15x) hold.
    for i in 720..(720 + 180u64) {
        ok += 100.0;
        out = run(
            &mut p,
            batch(vec![requests(T0 + i * 10 * SEC, ok, errors, "checkout")]),
        );
    }
    let burn5m = point(
        &out,
        "slo.burn_rate",
        "service=checkout,slo.name=checkout-availability,slo.window=5m",
    );
    assert_eq!(burn5m, Some(0.0));
    assert_eq!(point(&out, "slo.alert", &labels("page")), Some(0.0));
    assert_eq!(point(&out, "slo.alert", &labels("ticket")), Some(1.0));
}

#[test]
fn resets_count_the_new_value_and_group_by_splits_groups() {
    let mut p =
        BurnrateProcessor::new("burnrate", &availability(&["1m"]), None).expect("valid config");
    run(
        &mut p,
        batch(vec![
            requests(T0, 1000.0, 10.0, "a"),
            requests(T0, 1000.0, 0.0, "b"),
        ]),
    );
    run(
        &mut p,
        batch(vec![
            requests(T0 + 10 * SEC, 1100.0, 20.0, "a"),
            requests(T0 + 10 * SEC, 1100.0, 0.0, "b"),
        ]),
    );
    // Service a restarts: its counters start again from zero.
    let out = run(
        &mut p,
        batch(vec![
            requests(T0 + 20 * SEC, 100.0, 10.0, "a"),
            requests(T0 + 20 * SEC, 1200.0, 0.0, "b"),
        ]),
    );
    // a: errors +10 +10 = 20, total (ok + errors) +110 +110 = 220 over 20 s. As
    // increase() does: the window starts 40 s before the first sample, so total is
    // extrapolated by half an interval (x 25/20); errors (10 at the first sample) are
    // extrapolated only back to their zero point 10 s before it (x 30/20).
    let burn_a = point(
        &out,
        "slo.burn_rate",
        "service=a,slo.name=checkout-availability,slo.window=1m",
    )
    .expect("group a");
    assert!(
        (burn_a - (20.0 * 1.5) / (220.0 * 1.25) / 0.001).abs() < 1e-6,
        "{burn_a}"
    );
    let burn_b = point(
        &out,
        "slo.burn_rate",
        "service=b,slo.name=checkout-availability,slo.window=1m",
    )
    .expect("group b");
    assert_eq!(burn_b, 0.0);
    // Three series per group: 200 (total), 503 (errors), 503 (total).
    assert_eq!(p.state_size(), (6, 2));
}

fn latency_config(threshold: f64) -> Config {
    config(serde_json::json!({
        "windows": ["1m"], "resolution": "1s",
        "slos": [{"name": "checkout-latency", "objective": 0.99,
                  "latency": {"metric": "http_request_duration_seconds", "threshold": threshold}}]
    }))
}

fn histogram(ts: u64, buckets: [u64; 4]) -> Metric {
    Metric {
        name: "http_request_duration_seconds".to_string(),
        unit: "s".to_string(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                time_unix_nano: ts,
                count: buckets.iter().sum(),
                explicit_bounds: vec![0.1, 0.3, 1.0],
                bucket_counts: buckets.to_vec(),
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    }
}

#[test]
fn latency_sli_counts_requests_slower_than_the_threshold_bucket() {
    let mut p =
        BurnrateProcessor::new("burnrate", &latency_config(0.3), None).expect("valid config");
    let mut out = Vec::new();
    // Per 10 s: 60 under 0.1 s, 36 in (0.1, 0.3], 3 in (0.3, 1], 1 above: 4% slow.
    for i in 0..10u64 {
        let n = i + 1;
        out = run(
            &mut p,
            batch(vec![histogram(
                T0 + i * 10 * SEC,
                [60 * n, 36 * n, 3 * n, n],
            )]),
        );
    }
    let burn = point(
        &out,
        "slo.burn_rate",
        "slo.name=checkout-latency,slo.window=1m",
    )
    .expect("latency burn rate");
    assert!((burn - 4.0).abs() < 1e-9, "{burn}");
}

#[test]
fn latency_threshold_that_is_not_a_bucket_bound_is_counted_and_skipped() {
    let registry = Registry::new();
    let mut p = BurnrateProcessor::new("burnrate/lat", &latency_config(0.25), Some(&registry))
        .expect("valid config");
    for i in 0..3u64 {
        let out = run(
            &mut p,
            batch(vec![histogram(T0 + i * 10 * SEC, [1, 1, 1, 1])]),
        );
        assert!(points(&out, "slo.burn_rate").is_empty());
    }
    let skipped = registry.counter(
        "oxcol_processor_points_skipped",
        "",
        &[
            ("processor", "burnrate/lat"),
            ("reason", "latency_threshold_not_a_bucket_bound"),
        ],
    );
    assert_eq!(skipped.get(), 3);
}

#[test]
fn groups_and_series_are_bounded_and_counted() {
    let registry = Registry::new();
    let mut c = availability(&["1m"]);
    c.max_groups = 2;
    let mut p = BurnrateProcessor::new("burnrate", &c, Some(&registry)).expect("valid config");
    let metrics = ["a", "b", "c", "d"]
        .iter()
        .map(|s| requests(T0, 1.0, 1.0, s))
        .collect();
    run(&mut p, batch(metrics));
    assert_eq!(p.state_size().1, 2);
    // Counted per point use: c and d have 3 each (200 -> total; 503 -> errors and total).
    assert_eq!(
        registry
            .counter(
                "oxcol_processor_burnrate_groups_dropped",
                "",
                &[("processor", "burnrate")]
            )
            .get(),
        6
    );
    // Hours later in data time, the old groups and series are evicted when new data comes.
    run(
        &mut p,
        batch(vec![requests(T0 + 7200 * SEC, 1.0, 1.0, "e")]),
    );
    assert_eq!(p.state_size(), (3, 1));
    assert_eq!(
        registry
            .counter(
                "oxcol_processor_burnrate_groups_evicted",
                "",
                &[("processor", "burnrate")]
            )
            .get(),
        2
    );
    assert_eq!(
        registry
            .counter(
                "oxcol_processor_series_evicted",
                "",
                &[("processor", "burnrate")]
            )
            .get(),
        6
    );
}

#[test]
fn config_defaults_and_errors() {
    let defaults = Config::default();
    let texts: Vec<&str> = defaults.windows.iter().map(|w| w.text.as_str()).collect();
    assert_eq!(texts, ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]);
    assert_eq!(defaults.period.millis, 30 * 86_400_000);
    assert_eq!(defaults.storage, None);
    assert_eq!(defaults.checkpoint_interval.millis, 30_000);
    // The example is valid.
    let example = config(serde_json::json!({
        "period": "30d",
        "slos": [
            {"name": "checkout-availability", "objective": 0.999,
             "errors": {"metric": "http_requests_total", "match": {"code": "5.."}},
             "total": {"metric": "http_requests_total"}, "group_by": ["service"]},
            {"name": "checkout-latency", "objective": 0.99,
             "latency": {"metric": "http_request_duration_seconds", "threshold": 0.3}}
        ]
    }));
    assert_eq!(example.validate(), Vec::<String>::new());
    let bad = config(serde_json::json!({
        "storage": " ", "checkpoint_interval": "0s", "windows": ["5m", "300s"],
        "slos": [{"name": "x", "objective": 99.9, "errors": {"metric": "e", "match": {"code": "("}}},
                 {"name": "x", "objective": 0.9, "latency": {"metric": "h", "threshold": 0.3}}]
    }));
    let errors = bad.validate().join("\n");
    for expected in [
        "storage must name a file_storage extension",
        "checkpoint_interval must be greater than zero",
        "windows[1] (300s) is listed twice",
        "objective must be a fraction in (0, 1)",
        "slos[0]: set either errors and total",
        "slos[0].errors.match.code",
        "slos[1].name \"x\" is used twice",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
    assert!(
        serde_json::from_value::<Config>(serde_json::json!({"windows": ["5 minutes"]})).is_err()
    );
    assert!(serde_json::from_value::<Config>(serde_json::json!({"unknown_key": 1})).is_err());
}

// ---------------------------------------------------------------------------------------
// Aggregation across resources (sum by group_by)

fn pod(pod: &str, service: &str, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![
                string_attribute("service", service),
                string_attribute("k8s.pod.name", pod),
            ],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `http_requests_total` with only the `code` label (the service is a resource attribute).
fn pod_requests(ts: u64, ok: f64, errors: f64) -> Metric {
    Metric {
        name: "http_requests_total".to_string(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![
                counter_point(ts, ok, &[("code", "200")]),
                counter_point(ts, errors, &[("code", "503")]),
            ],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

#[test]
fn pods_of_one_service_are_summed_into_one_group_with_per_pod_resets() {
    let mut p =
        BurnrateProcessor::new("burnrate", &availability(&["1m"]), None).expect("valid config");
    // Pod a: 1% errors; pod b: 3% errors (100 requests per 10 s each); pod b restarts
    // (counters from zero) at t=30 s. Sum by service: 4 errors per 200 requests = 2%.
    let (mut a, mut b) = ((1000.0, 10.0), (2000.0, 60.0));
    let mut out = Vec::new();
    for i in 0..6u64 {
        if i > 0 {
            a = (a.0 + 99.0, a.1 + 1.0);
            b = if i == 3 {
                (97.0, 3.0)
            } else {
                (b.0 + 97.0, b.1 + 3.0)
            };
        }
        let ts = T0 + i * 10 * SEC;
        out = run(
            &mut p,
            vec![
                pod("a", "checkout", vec![pod_requests(ts, a.0, a.1)]),
                pod("b", "checkout", vec![pod_requests(ts, b.0, b.1)]),
                pod(
                    "c",
                    "payment",
                    vec![pod_requests(ts, 1000.0 + i as f64 * 100.0, 0.0)],
                ),
            ],
        );
    }
    // One group per service, not per pod: 2 groups; 3 series per pod.
    assert_eq!(p.state_size(), (9, 2));
    let burn = point(
        &out,
        "slo.burn_rate",
        "service=checkout,slo.name=checkout-availability,slo.window=1m",
    )
    .unwrap_or_else(|| panic!("{:?}", points(&out, "slo.burn_rate")));
    // Every 10 s the group gains 4 errors of 200 requests, resets included (pod b's
    // reset adds its new value, 3 errors of 100): exactly 2% -> burn rate 20. (Both
    // counters are extrapolated by the same factor, so the ratio is exact.)
    assert!((burn - 20.0).abs() < 1e-9, "{burn}");
    // The emitted metrics are in a resource of their own per group, carrying the group
    // labels only, with the processor's scope.
    let slo_resources: Vec<&ResourceMetrics> = out
        .iter()
        .filter(|r| {
            r.scope_metrics
                .iter()
                .any(|s| s.metrics.iter().any(|m| m.name.starts_with("slo.")))
        })
        .collect();
    assert_eq!(slo_resources.len(), 2);
    for r in &slo_resources {
        let attributes = &r.resource.as_ref().expect("a resource").attributes;
        assert_eq!(attributes.len(), 1, "{attributes:?}");
        assert_eq!(attributes[0].key, "service");
        assert_eq!(
            r.scope_metrics[0].scope.as_ref().map(|s| s.name.as_str()),
            Some(SCOPE_NAME)
        );
    }
    // The input resources are untouched (3 pods, 1 metric each).
    assert!(
        out[..3]
            .iter()
            .all(|r| r.scope_metrics[0].metrics.len() == 1)
    );
}

#[test]
fn without_group_by_everything_the_slo_matches_is_one_group() {
    let mut c = availability(&["1m"]);
    c.slos[0].group_by.clear();
    let mut p = BurnrateProcessor::new("burnrate", &c, None).expect("valid config");
    let mut out = Vec::new();
    for i in 0..10u64 {
        let ts = T0 + i * 10 * SEC;
        let n = i as f64;
        out = run(
            &mut p,
            vec![
                pod(
                    "a",
                    "checkout",
                    vec![pod_requests(ts, 1000.0 + 90.0 * n, 100.0 + 10.0 * n)],
                ),
                pod(
                    "b",
                    "payment",
                    vec![pod_requests(ts, 1000.0 + 100.0 * n, 0.0)],
                ),
            ],
        );
    }
    assert_eq!(p.state_size().1, 1);
    let burn = point(
        &out,
        "slo.burn_rate",
        "slo.name=checkout-availability,slo.window=1m",
    )
    .unwrap_or_else(|| panic!("{:?}", points(&out, "slo.burn_rate")));
    // 10 errors of 200 requests (both services) per 10 s: 5% -> burn rate 50.
    assert!((burn - 50.0).abs() < 1e-9, "{burn}");
    let slo_resource = out.last().expect("an output resource");
    assert!(
        slo_resource
            .resource
            .as_ref()
            .is_some_and(|r| r.attributes.is_empty())
    );
}

#[test]
fn an_instance_whose_first_scrape_comes_in_a_later_batch_still_sets_the_base() {
    // Pods a and b are scraped at the same timestamps but arrive in separate batches.
    let mut split =
        BurnrateProcessor::new("burnrate", &availability(&["1m"]), None).expect("valid config");
    let mut together =
        BurnrateProcessor::new("burnrate", &availability(&["1m"]), None).expect("valid config");
    let (mut out_split, mut out_together) = (Vec::new(), Vec::new());
    for i in 0..6u64 {
        let ts = T0 + i * 10 * SEC;
        let n = i as f64;
        let a = pod(
            "a",
            "checkout",
            vec![pod_requests(ts, 500.0 + 99.0 * n, 5.0 + n)],
        );
        let b = pod(
            "b",
            "checkout",
            vec![pod_requests(ts, 800.0 + 95.0 * n, 40.0 + 5.0 * n)],
        );
        run(&mut split, vec![a.clone()]);
        out_split = run(&mut split, vec![b.clone()]);
        out_together = run(&mut together, vec![a, b]);
    }
    let labels = "service=checkout,slo.name=checkout-availability,slo.window=1m";
    let (s, t) = (
        point(&out_split, "slo.burn_rate", labels).expect("split"),
        point(&out_together, "slo.burn_rate", labels).expect("together"),
    );
    assert!((s - t).abs() < 1e-9 * t, "split {s} together {t}");
}

// ---------------------------------------------------------------------------------------
// Checkpoints

use crate::checkpoint::{RestoreFailure, Storage, file_name};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oxcol-br-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creates a scratch dir");
    dir
}

fn storage(dir: &Path) -> Storage {
    Storage {
        extension: "file_storage".to_string(),
        directory: dir.to_path_buf(),
        fsync: true,
        create_directory: false,
        directory_permissions: 0o750,
        lock_timeout: Duration::from_millis(100),
    }
}

fn checkpoint_config() -> Config {
    config(serde_json::json!({
        "period": "1d", "windows": ["5m", "1h", "3d"], "resolution": "30s",
        "slos": [{"name": "api", "objective": 0.99,
                  "errors": {"metric": "http_requests_total", "match": {"code": "5.."}},
                  "total": {"metric": "http_requests_total"},
                  "group_by": ["service"]}]
    }))
}

/// Batch i: two pods of one service, errors heavy in the first 100 batches.
fn traffic(i: u64) -> Vec<ResourceMetrics> {
    let ts = T0 + i * 60 * SEC;
    let n = i as f64;
    let errors = if i < 100 {
        20.0 * n
    } else {
        2000.0 + 0.5 * (n - 100.0)
    };
    let mut pods = vec![
        pod(
            "a",
            "checkout",
            vec![pod_requests(ts, 1000.0 + 100.0 * n, errors)],
        ),
        pod(
            "b",
            "checkout",
            vec![pod_requests(ts, 3000.0 + 50.0 * n, 2.0 * n)],
        ),
    ];
    for p in &mut pods {
        if let Some(r) = p.resource.as_mut() {
            r.attributes
                .push(string_attribute("service.name", "checkout"));
        }
    }
    pods
}

/// The burn rates and budget, each with the attributes of its resource.
fn slo_points(out: &[ResourceMetrics]) -> Vec<(String, f64)> {
    let mut all = Vec::new();
    for r in out {
        let attributes = &r.resource.as_ref().expect("a resource").attributes;
        let resource: Vec<String> = attributes
            .iter()
            .map(|kv| {
                format!(
                    "{}={}",
                    kv.key,
                    lookup(attributes, &kv.key).unwrap_or_default()
                )
            })
            .collect();
        let one = std::slice::from_ref(r);
        for (labels, v) in points(one, "slo.burn_rate")
            .into_iter()
            .chain(points(one, "slo.error_budget.remaining"))
        {
            all.push((format!("[{}] {labels}", resource.join(",")), v));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn with_storage(dir: &Path, registry: &Registry) -> BurnrateProcessor {
    BurnrateProcessor::new("burnrate/slo", &checkpoint_config(), Some(registry))
        .and_then(|p| p.with_storage(&storage(dir), "metrics", Some(registry)))
        .expect("valid config and storage")
}

fn restore_failures(registry: &Registry, reason: RestoreFailure) -> u64 {
    registry
        .counter(
            "oxcol_processor_state_restore_failures",
            "",
            &[("processor", "burnrate/slo"), ("reason", reason.label())],
        )
        .get()
}

#[test]
fn checkpoint_round_trip_continues_exactly_as_an_uninterrupted_run() {
    let dir = scratch("roundtrip");
    let registry = Registry::new();
    let mut reference =
        BurnrateProcessor::new("burnrate/slo", &checkpoint_config(), None).expect("valid");
    let mut first = with_storage(&dir, &registry);
    for i in 0..150 {
        run(&mut reference, traffic(i));
        run(&mut first, traffic(i));
    }
    first.shutdown();
    drop(first);
    let registry = Registry::new();
    let mut second = with_storage(&dir, &registry);
    assert_eq!(second.state_size(), reference.state_size());
    assert_eq!(
        registry
            .counter(
                "oxcol_processor_state_restored_series",
                "",
                &[("processor", "burnrate/slo")]
            )
            .get(),
        7
    );
    for i in 150..200 {
        let (ours, theirs) = (
            run(&mut second, traffic(i)),
            run(&mut reference, traffic(i)),
        );
        let (ours, theirs) = (slo_points(&ours), slo_points(&theirs));
        assert_eq!(ours.len(), 4, "{ours:?}");
        assert!(
            ours[0]
                .0
                .starts_with("[service.name=checkout,service=checkout]"),
            "{ours:?}"
        );
        // Bit for bit: the restored state is the state.
        assert_eq!(ours, theirs, "batch {i}");
    }
    // The 3d window still holds the error-heavy first 100 minutes: far above the 5m rate.
    let out = run(&mut second, traffic(200));
    let burn = |w: &str| {
        point(
            &out,
            "slo.burn_rate",
            &format!("service=checkout,slo.name=api,slo.window={w}"),
        )
        .expect("a burn rate")
    };
    assert!(
        burn("3d") > 3.0 * burn("5m"),
        "3d {} 5m {}",
        burn("3d"),
        burn("5m")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn damaged_old_or_foreign_checkpoints_start_empty_and_are_counted() {
    let dir = scratch("damaged");
    let path = dir.join(file_name("burnrate/slo", "metrics"));
    let registry = Registry::new();
    let mut p = with_storage(&dir, &registry);
    for i in 0..20 {
        run(&mut p, traffic(i));
    }
    p.shutdown();
    drop(p);
    let good = std::fs::read(&path).expect("the checkpoint was written at shutdown");
    let restart = |bytes: &[u8], reason: Option<RestoreFailure>| {
        std::fs::write(&path, bytes).expect("writes the damaged checkpoint");
        let registry = Registry::new();
        let p = with_storage(&dir, &registry);
        for r in RestoreFailure::ALL {
            let expected = u64::from(Some(r) == reason);
            assert_eq!(
                restore_failures(&registry, r),
                expected,
                "{r:?} for {reason:?}"
            );
        }
        p.state_size()
    };
    assert_eq!(restart(&good, None), (6, 1));
    // Truncated (a torn write without the rename), corrupt, another version.
    assert_eq!(
        restart(&good[..good.len() / 2], Some(RestoreFailure::Truncated)),
        (0, 0)
    );
    let mut flipped = good.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 1;
    assert_eq!(restart(&flipped, Some(RestoreFailure::Corrupt)), (0, 0));
    let mut old = good.clone();
    old[12..16].copy_from_slice(&(STATE_VERSION - 1).to_le_bytes());
    assert_eq!(restart(&old, Some(RestoreFailure::Version)), (0, 0));
    // A valid envelope around a payload this version cannot decode.
    let fingerprint = state_fingerprint(&checkpoint_config());
    let garbage = checkpoint::encode_file(STATE_VERSION, fingerprint, 1, &[7u8; 100]);
    assert_eq!(restart(&garbage, Some(RestoreFailure::Corrupt)), (0, 0));
    // Written with another SLO config: the objective changed.
    let mut other = checkpoint_config();
    other.slos[0].objective = 0.999;
    let registry = Registry::new();
    std::fs::write(&path, &good).expect("restores the good checkpoint");
    let p = BurnrateProcessor::new("burnrate/slo", &other, Some(&registry))
        .and_then(|p| p.with_storage(&storage(&dir), "metrics", Some(&registry)))
        .expect("valid");
    assert_eq!(p.state_size(), (0, 0));
    assert_eq!(
        restore_failures(&registry, RestoreFailure::ConfigChanged),
        1
    );
    drop(p);
    // A config change the state does not depend on (windows, bounds) keeps it.
    let mut wider = checkpoint_config();
    wider
        .windows
        .push(PromDuration::parse("7d").expect("a duration"));
    let p = BurnrateProcessor::new("burnrate/slo", &wider, None)
        .and_then(|p| p.with_storage(&storage(&dir), "metrics", None))
        .expect("valid");
    assert_eq!(p.state_size(), (6, 1));
    drop(p);
    // A smaller max_series keeps the most recent series, counting the rest as dropped.
    let mut smaller = checkpoint_config();
    smaller.max_series = 4;
    let registry = Registry::new();
    let p = BurnrateProcessor::new("burnrate/slo", &smaller, Some(&registry))
        .and_then(|p| p.with_storage(&storage(&dir), "metrics", Some(&registry)))
        .expect("valid");
    assert_eq!(p.state_size(), (4, 1));
    assert_eq!(
        registry
            .counter(
                "oxcol_processor_series_dropped",
                "",
                &[("processor", "burnrate/slo")]
            )
            .get(),
        2
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn checkpoints_are_taken_on_tick_only_when_due_and_changed() {
    let dir = scratch("tick");
    let registry = Registry::new();
    let mut c = checkpoint_config();
    c.checkpoint_interval = PromDuration::parse("500ms").expect("a duration");
    let opened = std::time::Instant::now();
    let mut p = BurnrateProcessor::new("burnrate/slo", &c, Some(&registry))
        .and_then(|p| p.with_storage(&storage(&dir), "metrics", Some(&registry)))
        .expect("valid");
    assert_eq!(p.tick_interval(), Some(Duration::from_millis(500)));
    let written = registry.counter(
        "oxcol_processor_state_checkpoints",
        "",
        &[("processor", "burnrate/slo")],
    );
    let wait_written = |n: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while written.get() < n && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        written.get()
    };
    p.tick();
    assert_eq!(written.get(), 0, "nothing changed, not due");
    run(&mut p, traffic(0));
    p.tick();
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        opened.elapsed() < Duration::from_millis(450),
        "test too slow to check"
    );
    assert_eq!(written.get(), 0, "changed but not due yet");
    std::thread::sleep(Duration::from_millis(550).saturating_sub(opened.elapsed()));
    p.tick();
    assert_eq!(wait_written(1), 1);
    std::thread::sleep(Duration::from_millis(550));
    p.tick();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(written.get(), 1, "due but unchanged");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn outputs_carry_the_service_while_every_input_agrees_on_it_never_instance_attributes() {
    let mut c = availability(&["1m"]);
    c.slos[0].group_by.clear();
    let mut p = BurnrateProcessor::new("burnrate", &c, None).expect("valid config");
    let instance = |id: &str, service: &str, ts: u64, n: f64| ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![
                string_attribute("service.name", service),
                string_attribute("service.instance.id", id),
                string_attribute("k8s.pod.name", id),
            ],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![pod_requests(ts, 1000.0 + 99.0 * n, 10.0 + n)],
            ..Default::default()
        }],
        ..Default::default()
    };
    let output_resource = |out: &[ResourceMetrics]| -> Vec<(String, String)> {
        let r = out
            .iter()
            .find(|r| {
                r.scope_metrics
                    .iter()
                    .any(|s| s.scope.as_ref().is_some_and(|s| s.name == SCOPE_NAME))
            })
            .expect("an output resource");
        let attributes = &r.resource.as_ref().expect("a resource").attributes;
        attributes
            .iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    lookup(attributes, &kv.key).unwrap_or_default(),
                )
            })
            .collect()
    };
    let mut out = Vec::new();
    for i in 0..3u64 {
        let (ts, n) = (T0 + i * 10 * SEC, i as f64);
        out = run(
            &mut p,
            vec![
                instance("pod-1", "checkout", ts, n),
                instance("pod-2", "checkout", ts, n),
            ],
        );
    }
    // Two instances of one service: service.name kept (Prometheus' job), instance
    // attributes dropped.
    assert_eq!(
        output_resource(&out),
        vec![("service.name".to_string(), "checkout".to_string())]
    );
    // Another service feeds the same group (no group_by): the service is dropped, for good.
    for i in 3..6u64 {
        let (ts, n) = (T0 + i * 10 * SEC, i as f64);
        let service = if i == 3 { "payment" } else { "checkout" };
        out = run(&mut p, vec![instance("pod-1", service, ts, n)]);
    }
    assert_eq!(output_resource(&out), Vec::new());
    // group_by on service.name: it is a group label (on the points and the resource, once).
    c.slos[0].group_by = vec!["service.name".to_string()];
    let mut p = BurnrateProcessor::new("burnrate", &c, None).expect("valid config");
    for i in 0..3u64 {
        let (ts, n) = (T0 + i * 10 * SEC, i as f64);
        out = run(
            &mut p,
            vec![
                instance("pod-1", "checkout", ts, n),
                instance("pod-2", "payment", ts, n),
            ],
        );
    }
    let resources: Vec<Vec<(String, String)>> = out
        .iter()
        .filter(|r| {
            r.scope_metrics
                .iter()
                .any(|s| s.scope.as_ref().is_some_and(|s| s.name == SCOPE_NAME))
        })
        .map(|r| output_resource(std::slice::from_ref(r)))
        .collect();
    assert_eq!(
        resources,
        vec![
            vec![("service.name".to_string(), "checkout".to_string())],
            vec![("service.name".to_string(), "payment".to_string())]
        ]
    );
    assert!(
        point(
            &out,
            "slo.burn_rate",
            "service.name=payment,slo.name=checkout-availability,slo.window=1m"
        )
        .is_some()
    );
}
