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
fn config_defaults_errors_and_storage_not_supported_yet() {
    let defaults = Config::default();
    let texts: Vec<&str> = defaults.windows.iter().map(|w| w.text.as_str()).collect();
    assert_eq!(texts, ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]);
    assert_eq!(defaults.period.millis, 30 * 86_400_000);
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
        "storage": "file_storage", "windows": ["5m", "300s"],
        "slos": [{"name": "x", "objective": 99.9, "errors": {"metric": "e", "match": {"code": "("}}},
                 {"name": "x", "objective": 0.9, "latency": {"metric": "h", "threshold": 0.3}}]
    }));
    let errors = bad.validate().join("\n");
    for expected in [
        "storage is not supported yet",
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
