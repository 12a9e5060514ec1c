use super::*;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_core::testdata::string_attribute;

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;
const MIB: f64 = 1_048_576.0;
const MAX_INT64: f64 = 9_223_372_036_854_775_807.0;

fn config(json: serde_json::Value) -> Config {
    serde_json::from_value(json).expect("test config is valid JSON for gofit::Config")
}

fn point(ts: u64, value: f64) -> NumberDataPoint {
    NumberDataPoint {
        time_unix_nano: ts,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn g(name: &str, ts: u64, value: f64) -> Metric {
    gauge(name, "", "", vec![point(ts, value)])
}

fn counter(name: &str, ts: u64, value: f64) -> Metric {
    Metric {
        name: name.to_string(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![point(ts, value)],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn histogram(name: &str, ts: u64, sum: f64, count: u64) -> Metric {
    Metric {
        name: name.to_string(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                time_unix_nano: ts,
                sum: Some(sum),
                count,
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    }
}

fn resource(attrs: &[(&str, &str)], metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes: attrs.iter().map(|(k, v)| string_attribute(k, v)).collect(),
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A Go service as the prometheus receiver names client_golang's default collectors.
fn go_service(
    attrs: &[(&str, &str)],
    ts: u64,
    gomaxprocs: f64,
    gomemlimit: f64,
) -> ResourceMetrics {
    resource(
        attrs,
        vec![
            g("go_sched_gomaxprocs_threads", ts, gomaxprocs),
            g("go_gc_gomemlimit_bytes", ts, gomemlimit),
            g("go_gc_gogc_percent", ts, 100.0),
        ],
    )
}

/// A cgroup as the cgroup receiver emits it (v2: cpu.max quota/period, memory.max).
fn cgroup(
    attrs: &[(&str, &str)],
    ts: u64,
    cpus: Option<f64>,
    memory: Option<f64>,
) -> ResourceMetrics {
    let mut metrics = vec![
        g("cgroup.memory.current", ts, 100.0 * MIB),
        counter("cgroup.cpu.stat.usage", ts, 10.0),
    ];
    if let Some(cpus) = cpus {
        metrics.push(g("cgroup.cpu.max", ts, cpus));
    }
    if let Some(memory) = memory {
        metrics.push(g("cgroup.memory.max", ts, memory));
    }
    resource(attrs, metrics)
}

fn throttling(ts: u64, nr_periods: f64, nr_throttled: f64, throttled: f64) -> ResourceMetrics {
    resource(
        &[("cgroup.path", "/app")],
        vec![
            g("cgroup.cpu.max", ts, 1.0),
            g("cgroup.memory.max", ts, 512.0 * MIB),
            counter("cgroup.cpu.stat.nr_periods", ts, nr_periods),
            counter("cgroup.cpu.stat.nr_throttled", ts, nr_throttled),
            counter("cgroup.cpu.stat.throttled", ts, throttled),
        ],
    )
}

fn run(processor: &mut GofitProcessor, resources: Vec<ResourceMetrics>) -> Vec<ResourceMetrics> {
    let batch = processor
        .process(Batch::from_metrics(resources))
        .expect("gofit never refuses a metrics batch");
    match batch.data() {
        oxcol_core::Data::Metrics(v) => v.clone(),
        other => panic!("expected decoded metrics, got {other:?}"),
    }
}

fn gauge_values(resource: &ResourceMetrics, name: &str) -> Vec<(Option<String>, f64)> {
    resource
        .scope_metrics
        .iter()
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == name)
        .flat_map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.clone(),
            _ => Vec::new(),
        })
        .map(|p| {
            let finding =
                p.attributes
                    .iter()
                    .find(|kv| kv.key == "finding")
                    .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                        any_value::Value::StringValue(s) => Some(s.clone()),
                        _ => None,
                    });
            let value = match p.value {
                Some(number_data_point::Value::AsInt(i)) => i as f64,
                Some(number_data_point::Value::AsDouble(d)) => d,
                None => f64::NAN,
            };
            (finding, value)
        })
        .collect()
}

/// finding -> 1/0 on one resource.
fn findings(resource: &ResourceMetrics) -> HashMap<String, f64> {
    gauge_values(resource, "go.runtime.fit.finding")
        .into_iter()
        .map(|(f, v)| (f.expect("every finding point names its finding"), v))
        .collect()
}

fn input(resource: &ResourceMetrics, name: &str) -> Option<f64> {
    gauge_values(resource, name).first().map(|(_, v)| *v)
}

fn holding(resource: &ResourceMetrics) -> Vec<String> {
    let mut names: Vec<String> = findings(resource)
        .into_iter()
        .filter(|(_, v)| *v == 1.0)
        .map(|(f, _)| f)
        .collect();
    names.sort();
    names
}

fn sidecar() -> GofitProcessor {
    GofitProcessor::new("gofit", &Config::default(), None).expect("defaults are valid")
}

#[test]
fn gomaxprocs_above_the_cpu_limit_and_no_gomemlimit_under_a_memory_limit() {
    let mut p = sidecar();
    // The cgroup arrives in its own batch, the service in the next (separate receivers).
    run(
        &mut p,
        vec![cgroup(
            &[("cgroup.path", "/app")],
            T0,
            Some(1.0),
            Some(512.0 * MIB),
        )],
    );
    let out = run(
        &mut p,
        vec![go_service(
            &[("service.name", "app")],
            T0 + SEC,
            8.0,
            MAX_INT64,
        )],
    );
    let service = &out[0];
    assert_eq!(
        holding(service),
        ["gomaxprocs_above_cpu_limit", "gomemlimit_unset"]
    );
    let all = findings(service);
    assert_eq!(all["gomemlimit_above_memory_limit"], 0.0);
    assert_eq!(all["gomemlimit_too_close_to_memory_limit"], 0.0);
    assert_eq!(input(service, "go.runtime.fit.gomaxprocs"), Some(8.0));
    assert_eq!(input(service, "go.runtime.fit.cpu_limit"), Some(1.0));
    assert_eq!(
        input(service, "go.runtime.fit.memory_limit"),
        Some(512.0 * MIB)
    );
    assert_eq!(
        input(service, "go.runtime.fit.gomemlimit"),
        None,
        "unset is not a number"
    );
    // The input metrics pass through unchanged, the findings are appended in their own scope.
    assert_eq!(service.scope_metrics[0].metrics.len(), 3);
    assert_eq!(
        service.scope_metrics[1]
            .scope
            .as_ref()
            .map(|s| s.name.as_str()),
        Some(SCOPE_NAME)
    );
}

#[test]
fn a_fitting_service_has_every_finding_at_zero() {
    let mut p = sidecar();
    let out = run(
        &mut p,
        vec![
            go_service(&[("service.name", "app")], T0, 1.0, 400.0 * MIB),
            cgroup(&[("cgroup.path", "/app")], T0, Some(1.0), Some(512.0 * MIB)),
        ],
    );
    let all = findings(&out[0]);
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(all.values().all(|v| *v == 0.0), "{all:?}");
    assert_eq!(
        input(&out[0], "go.runtime.fit.gomemlimit"),
        Some(400.0 * MIB)
    );
    assert!(
        findings(&out[1]).is_empty(),
        "nothing lands on the cgroup's resource"
    );
}

#[test]
fn fractional_cpu_limits_round_up_as_go_does() {
    let mut p = sidecar();
    run(&mut p, vec![cgroup(&[], T0, Some(1.5), None)]);
    let out = run(&mut p, vec![go_service(&[], T0, 2.0, MAX_INT64)]);
    assert_eq!(findings(&out[0])["gomaxprocs_above_cpu_limit"], 0.0);
    let out = run(&mut p, vec![go_service(&[], T0 + SEC, 3.0, MAX_INT64)]);
    assert_eq!(findings(&out[0])["gomaxprocs_above_cpu_limit"], 1.0);
    // No memory limit: an unset GOMEMLIMIT is not a finding.
    assert_eq!(findings(&out[0])["gomemlimit_unset"], 0.0);
}

#[test]
fn no_cpu_limit_is_never_gomaxprocs_above_it() {
    let mut p = sidecar();
    run(&mut p, vec![cgroup(&[], T0, None, Some(512.0 * MIB))]);
    let out = run(&mut p, vec![go_service(&[], T0, 64.0, 400.0 * MIB)]);
    assert_eq!(findings(&out[0])["gomaxprocs_above_cpu_limit"], 0.0);
    assert_eq!(input(&out[0], "go.runtime.fit.cpu_limit"), None);
}

#[test]
fn gomemlimit_above_and_too_close_to_the_memory_limit() {
    let mut p = sidecar();
    run(&mut p, vec![cgroup(&[], T0, Some(2.0), Some(512.0 * MIB))]);
    let out = run(&mut p, vec![go_service(&[], T0, 2.0, 600.0 * MIB)]);
    assert_eq!(holding(&out[0]), ["gomemlimit_above_memory_limit"]);
    // 500 of 512 MiB leaves 2.3%, under the 5% default margin.
    let out = run(&mut p, vec![go_service(&[], T0 + SEC, 2.0, 500.0 * MIB)]);
    assert_eq!(holding(&out[0]), ["gomemlimit_too_close_to_memory_limit"]);
    // 480 of 512 MiB leaves 6.25%: fine.
    let out = run(
        &mut p,
        vec![go_service(&[], T0 + 2 * SEC, 2.0, 480.0 * MIB)],
    );
    assert!(holding(&out[0]).is_empty());
    // A wider margin makes the same numbers a finding.
    let mut strict = GofitProcessor::new(
        "gofit",
        &config(serde_json::json!({"memory_headroom": 0.1})),
        None,
    )
    .expect("valid");
    run(
        &mut strict,
        vec![cgroup(&[], T0, Some(2.0), Some(512.0 * MIB))],
    );
    let out = run(&mut strict, vec![go_service(&[], T0, 2.0, 480.0 * MIB)]);
    assert_eq!(holding(&out[0]), ["gomemlimit_too_close_to_memory_limit"]);
}

#[test]
fn cpu_throttling_from_advancing_cpu_stat_holds_and_clears() {
    let registry = Registry::new();
    let mut p = GofitProcessor::new("gofit", &Config::default(), Some(&registry)).expect("valid");
    let service = |ts| go_service(&[("service.name", "app")], ts, 1.0, 400.0 * MIB);
    // First reading: no interval yet, no throttling finding either way.
    let out = run(&mut p, vec![throttling(T0, 1000.0, 0.0, 0.0), service(T0)]);
    assert!(!findings(&out[1]).contains_key("cpu_throttled"));
    // 100 periods, 50 throttled: 50% > 10%.
    let out = run(
        &mut p,
        vec![
            throttling(T0 + 10 * SEC, 1100.0, 50.0, 2.5),
            service(T0 + 10 * SEC),
        ],
    );
    assert_eq!(holding(&out[1]), ["cpu_throttled"]);
    assert_eq!(
        input(&out[1], "go.runtime.fit.cpu_throttled_share"),
        Some(0.5)
    );
    let active = p.counters.findings_active[Finding::CpuThrottled as usize].clone();
    assert_eq!(active.get(), 1);
    // Still throttled: still 1, still one service counted.
    let out = run(
        &mut p,
        vec![
            throttling(T0 + 20 * SEC, 1200.0, 100.0, 5.0),
            service(T0 + 20 * SEC),
        ],
    );
    assert_eq!(holding(&out[1]), ["cpu_throttled"]);
    assert_eq!(active.get(), 1);
    // 100 more periods, 2 throttled: 2%, the finding clears to 0.
    let out = run(
        &mut p,
        vec![
            throttling(T0 + 30 * SEC, 1300.0, 102.0, 5.1),
            service(T0 + 30 * SEC),
        ],
    );
    assert_eq!(findings(&out[1])["cpu_throttled"], 0.0);
    assert_eq!(active.get(), 0);
    // A counter reset (cgroup re-created) is a new reference, not a negative share.
    let out = run(
        &mut p,
        vec![
            throttling(T0 + 40 * SEC, 10.0, 0.0, 0.0),
            service(T0 + 40 * SEC),
        ],
    );
    assert_eq!(findings(&out[1])["cpu_throttled"], 0.0);
    assert!(
        registry
            .render_prometheus()
            .contains("oxcol_gofit_findings_active")
    );
}

fn gc_service(ts: u64, gc: f64, total: f64, idle: f64) -> ResourceMetrics {
    resource(
        &[("service.name", "app")],
        vec![
            g("go_sched_gomaxprocs_threads", ts, 1.0),
            g("go_gc_gomemlimit_bytes", ts, 400.0 * MIB),
            counter("go_cpu_classes_gc_total_cpu_seconds_total", ts, gc),
            counter("go_cpu_classes_total_cpu_seconds_total", ts, total),
            counter("go_cpu_classes_idle_cpu_seconds_total", ts, idle),
            histogram("go_sched_latencies_seconds", ts, 0.0, 0),
        ],
    )
}

#[test]
fn gc_cpu_share_of_the_used_cpu_holds_and_clears() {
    let mut p = sidecar();
    run(&mut p, vec![cgroup(&[], T0, Some(1.0), Some(512.0 * MIB))]);
    run(&mut p, vec![gc_service(T0, 1.0, 100.0, 50.0)]);
    // 10 s available, 2 s idle, 8 s used of which 4 s GC: 50%.
    let out = run(&mut p, vec![gc_service(T0 + 10 * SEC, 5.0, 110.0, 52.0)]);
    assert_eq!(holding(&out[0]), ["gc_cpu_high"]);
    assert_eq!(input(&out[0], "go.runtime.fit.gc_cpu_share"), Some(0.5));
    // 10 s available, 5 s idle, 5 s used of which 0.5 s GC: 10%, cleared.
    let out = run(&mut p, vec![gc_service(T0 + 20 * SEC, 5.5, 120.0, 57.0)]);
    assert_eq!(findings(&out[0])["gc_cpu_high"], 0.0);
    assert_eq!(input(&out[0], "go.runtime.fit.gc_cpu_share"), Some(0.1));
    // The allocation stopped: no GC cycle ends, the runtime's CPU classes stand still,
    // and the share is 0 (not unknown), so the finding stays cleared.
    let out = run(&mut p, vec![gc_service(T0 + 30 * SEC, 5.5, 120.0, 57.0)]);
    assert_eq!(findings(&out[0])["gc_cpu_high"], 0.0);
    assert_eq!(input(&out[0], "go.runtime.fit.gc_cpu_share"), Some(0.0));
}

#[test]
fn scheduling_latency_mean_comes_from_histogram_deltas() {
    let mut p = sidecar();
    let service = |ts, sum, count| {
        resource(
            &[],
            vec![
                g("go.processor.limit", ts, 4.0),
                histogram("go.schedule.duration", ts, sum, count),
            ],
        )
    };
    run(&mut p, vec![cgroup(&[], T0, Some(4.0), Some(512.0 * MIB))]);
    run(&mut p, vec![service(T0, 1.0, 1000)]);
    let out = run(&mut p, vec![service(T0 + 10 * SEC, 1.5, 1100)]);
    let mean = input(&out[0], "go.runtime.fit.sched_latency").expect("a mean after two readings");
    assert!((mean - 0.005).abs() < 1e-12, "{mean}");
}

#[test]
fn otel_runtime_names_without_go_memory_limit_mean_gomemlimit_unset() {
    let mut p = sidecar();
    run(&mut p, vec![cgroup(&[], T0, Some(1.0), Some(256.0 * MIB))]);
    let otel = |ts, memory_limit: Option<f64>| {
        let mut metrics = vec![
            g("go.processor.limit", ts, 8.0),
            g("go.config.gogc", ts, 100.0),
        ];
        if let Some(limit) = memory_limit {
            metrics.push(g("go.memory.limit", ts, limit));
        }
        resource(&[("service.name", "otel-app")], metrics)
    };
    let out = run(&mut p, vec![otel(T0, None)]);
    assert_eq!(
        holding(&out[0]),
        ["gomaxprocs_above_cpu_limit", "gomemlimit_unset"]
    );
    let out = run(&mut p, vec![otel(T0 + SEC, Some(300.0 * MIB))]);
    assert_eq!(
        holding(&out[0]),
        [
            "gomaxprocs_above_cpu_limit",
            "gomemlimit_above_memory_limit"
        ]
    );
}

#[test]
fn prometheus_names_without_unit_suffixes_work_too() {
    let mut p = sidecar();
    run(&mut p, vec![cgroup(&[], T0, Some(1.0), Some(512.0 * MIB))]);
    let out = run(
        &mut p,
        vec![resource(
            &[],
            vec![
                g("go_sched_gomaxprocs", T0, 4.0),
                g("go_gc_gomemlimit", T0, MAX_INT64),
            ],
        )],
    );
    assert_eq!(
        holding(&out[0]),
        ["gomaxprocs_above_cpu_limit", "gomemlimit_unset"]
    );
}

#[test]
fn join_on_puts_findings_on_the_right_service() {
    let registry = Registry::new();
    let mut p = GofitProcessor::new(
        "gofit/node",
        &config(serde_json::json!({"join_on": ["k8s.pod.uid"]})),
        Some(&registry),
    )
    .expect("valid");
    let out = run(
        &mut p,
        vec![
            go_service(
                &[("service.name", "tight"), ("k8s.pod.uid", "pod-a")],
                T0,
                8.0,
                MAX_INT64,
            ),
            go_service(
                &[("service.name", "roomy"), ("k8s.pod.uid", "pod-b")],
                T0,
                8.0,
                MAX_INT64,
            ),
            cgroup(
                &[("k8s.pod.uid", "pod-a")],
                T0,
                Some(1.0),
                Some(512.0 * MIB),
            ),
            cgroup(&[("k8s.pod.uid", "pod-b")], T0, Some(8.0), None),
            // No pod uid: cannot be joined, gets nothing.
            go_service(&[("service.name", "lost")], T0, 8.0, MAX_INT64),
        ],
    );
    assert_eq!(
        holding(&out[0]),
        ["gomaxprocs_above_cpu_limit", "gomemlimit_unset"]
    );
    assert!(holding(&out[1]).is_empty());
    assert_eq!(findings(&out[1]).len(), 4);
    assert_eq!(input(&out[1], "go.runtime.fit.cpu_limit"), Some(8.0));
    assert!(findings(&out[4]).is_empty());
    assert_eq!(p.counters.unjoined.get(), 1);
    // A service whose pod's cgroup was never seen is unjoined too.
    let out = run(
        &mut p,
        vec![go_service(
            &[("k8s.pod.uid", "pod-c")],
            T0 + SEC,
            8.0,
            MAX_INT64,
        )],
    );
    assert!(findings(&out[0]).is_empty());
    assert_eq!(p.counters.unjoined.get(), 2);
}

#[test]
fn state_is_bounded_and_stale_entries_are_evicted() {
    let mut p = GofitProcessor::new(
        "gofit",
        &config(
            serde_json::json!({"join_on": ["k8s.pod.uid"], "max_series": 3, "stale_after": "1m"}),
        ),
        None,
    )
    .expect("valid");
    for i in 0..5 {
        let pod = format!("pod-{i}");
        run(
            &mut p,
            vec![cgroup(&[("k8s.pod.uid", &pod)], T0, Some(1.0), None)],
        );
    }
    assert_eq!(p.series_count(), 3);
    assert_eq!(p.counters.series_dropped.get(), 2);
    // Two minutes of data time later the old ones are gone and new ones fit.
    run(
        &mut p,
        vec![cgroup(
            &[("k8s.pod.uid", "pod-new")],
            T0 + 120 * SEC,
            Some(1.0),
            None,
        )],
    );
    assert_eq!(p.series_count(), 1);
    assert_eq!(p.counters.series_evicted.get(), 3);
}

#[test]
fn eviction_of_a_service_with_findings_lowers_the_active_gauge() {
    let mut p = GofitProcessor::new(
        "gofit",
        &config(serde_json::json!({"stale_after": "1m"})),
        Some(&Registry::new()),
    )
    .expect("valid");
    run(&mut p, vec![cgroup(&[], T0, Some(1.0), Some(512.0 * MIB))]);
    run(
        &mut p,
        vec![go_service(&[("service.name", "a")], T0, 8.0, MAX_INT64)],
    );
    let active = p.counters.findings_active[Finding::GomaxprocsAboveCpuLimit as usize].clone();
    assert_eq!(active.get(), 1);
    run(
        &mut p,
        vec![cgroup(&[], T0 + 300 * SEC, Some(1.0), Some(512.0 * MIB))],
    );
    assert_eq!(active.get(), 0);
}

#[test]
fn messages_carry_the_numbers_and_the_fix() {
    let service = ServiceState {
        gomaxprocs: Some(8.0),
        gomemlimit: Some(None),
        ..Default::default()
    };
    let cgroup = CgroupState {
        cpu_limit: Some(Some(1.0)),
        memory_limit: Some(Some(512.0 * MIB)),
        throttled: Some((0.5, 2.0)),
        ..Default::default()
    };
    let evaluation = evaluate(&service, &cgroup, 0.25, 0.1, 0.05);
    let message = |f: Finding| {
        evaluation
            .findings
            .iter()
            .find(|(finding, _, _)| *finding == f)
            .map(|(_, _, m)| m.clone())
            .expect("evaluated")
    };
    assert_eq!(
        message(Finding::GomaxprocsAboveCpuLimit),
        "GOMAXPROCS=8 but the container may use 1 CPU (cgroup cpu.max quota/period = 1): set GOMAXPROCS=1, or build with Go 1.25+ which follows the CPU limit"
    );
    let unset = message(Finding::GomemlimitUnset);
    assert!(unset.contains("512MiB (536870912)"), "{unset}");
    assert!(unset.contains("set GOMEMLIMIT=460MiB"), "{unset}");
    let throttled = message(Finding::CpuThrottled);
    assert!(
        throttled.starts_with("50% of CFS periods were throttled")
            && throttled.contains("GOMAXPROCS=8 and a CPU limit of 1: set GOMAXPROCS=1"),
        "{throttled}"
    );
}

#[test]
fn each_log_line_ends_with_the_fix_the_status_page_shows() {
    let cases = [
        // GOMAXPROCS above a 1.5 CPU limit, GOMEMLIMIT unset, heavy GC, throttled.
        (
            ServiceState {
                gomaxprocs: Some(8.0),
                gomemlimit: Some(None),
                gc_cpu_share: Some(0.6),
                ..Default::default()
            },
            Some(1.5),
            Some(512.0 * MIB),
        ),
        // GOMEMLIMIT above memory.max; GOMAXPROCS fits and the CPU is still throttled.
        (
            ServiceState {
                gomaxprocs: Some(2.0),
                gomemlimit: Some(Some(600.0 * MIB)),
                ..Default::default()
            },
            Some(2.0),
            Some(512.0 * MIB),
        ),
        // GOMEMLIMIT too close to memory.max; no CPU limit, throttled anyway.
        (
            ServiceState {
                gomaxprocs: Some(4.0),
                gomemlimit: Some(Some(500.0 * MIB)),
                ..Default::default()
            },
            None,
            Some(512.0 * MIB),
        ),
    ];
    let mut held = Vec::new();
    for (service, cpu_limit, memory_limit) in cases {
        let cgroup = CgroupState {
            cpu_limit: Some(cpu_limit),
            memory_limit: Some(memory_limit),
            throttled: Some((0.5, 2.0)),
            ..Default::default()
        };
        // As the status page gets them: from the emitted input gauges.
        let inputs = FixInputs {
            gomaxprocs: service.gomaxprocs,
            cpu_limit,
            memory_limit,
            memory_headroom: 0.05,
        };
        for (finding, holds, message) in evaluate(&service, &cgroup, 0.25, 0.1, 0.05).findings {
            if !holds {
                continue;
            }
            let fix = finding.fix(&inputs).expect("a holding finding has a fix");
            assert!(
                message.ends_with(&format!(": {fix}")) || message.ends_with(&format!("; {fix}")),
                "{message}\n does not end with {fix}"
            );
            held.push((finding, fix));
        }
    }
    let fix_of = |finding: Finding| {
        held.iter()
            .filter(|(f, _)| *f == finding)
            .map(|(_, fix)| fix.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        fix_of(Finding::GomaxprocsAboveCpuLimit),
        ["set GOMAXPROCS=2, or build with Go 1.25+ which follows the CPU limit"]
    );
    assert_eq!(
        fix_of(Finding::GomemlimitUnset),
        ["set GOMEMLIMIT=460MiB (memory.max less 10% for non-heap memory)"]
    );
    assert_eq!(
        fix_of(Finding::GomemlimitAboveMemoryLimit),
        ["set GOMEMLIMIT=460MiB or lower"]
    );
    assert_eq!(
        fix_of(Finding::GomemlimitTooCloseToMemoryLimit),
        ["set GOMEMLIMIT=460MiB or lower"]
    );
    assert_eq!(
        fix_of(Finding::GcCpuHigh),
        ["raise the memory limit and GOMEMLIMIT, or reduce allocations"]
    );
    assert_eq!(
        fix_of(Finding::CpuThrottled),
        [
            "set GOMAXPROCS=2 (or build with Go 1.25+), or raise the CPU limit (cpu.max)",
            "GOMAXPROCS already fits: raise the CPU limit (cpu.max) or reduce the service's CPU use",
            "raise the CPU limit (cpu.max) or reduce the service's CPU use",
        ]
    );
    // The whole line as it was logged before the fix became its own function.
    let service = ServiceState {
        gomaxprocs: Some(1.0),
        gomemlimit: Some(None),
        ..Default::default()
    };
    let cgroup = CgroupState {
        cpu_limit: Some(Some(1.0)),
        memory_limit: Some(Some(512.0 * MIB)),
        ..Default::default()
    };
    let evaluation = evaluate(&service, &cgroup, 0.25, 0.1, 0.05);
    assert!(evaluation.findings.iter().any(|(f, holds, m)| {
        *f == Finding::GomemlimitUnset
            && *holds
            && m == "GOMEMLIMIT is not set but the container's memory.max is 512MiB (536870912): the GC will not work harder before the OOM killer comes; set GOMEMLIMIT=460MiB (memory.max less 10% for non-heap memory)"
    }));
    // Without the inputs it is computed from there is no fix (and the finding cannot hold).
    let none = FixInputs {
        gomaxprocs: None,
        cpu_limit: None,
        memory_limit: None,
        memory_headroom: 0.05,
    };
    assert_eq!(Finding::GomaxprocsAboveCpuLimit.fix(&none), None);
    assert_eq!(Finding::GomemlimitUnset.fix(&none), None);
    for finding in Finding::ALL {
        assert_eq!(Finding::from_name(finding.name()), Some(finding));
    }
    assert_eq!(Finding::from_name("nope"), None);
}

#[test]
fn traces_and_batches_without_go_or_cgroup_metrics_pass_unchanged() {
    let mut p = sidecar();
    let input = vec![resource(
        &[("service.name", "x")],
        vec![g("http_requests_total", T0, 3.0)],
    )];
    let out = run(&mut p, input.clone());
    assert_eq!(out, input);
    assert_eq!(p.series_count(), 0);
}

#[test]
fn hostile_values_do_not_panic() {
    let mut p = sidecar();
    run(&mut p, vec![cgroup(&[], T0, Some(f64::NAN), Some(-1.0))]);
    run(&mut p, vec![cgroup(&[], 0, Some(0.0), Some(0.0))]);
    let out = run(
        &mut p,
        vec![
            go_service(&[], u64::MAX, f64::INFINITY, -5.0),
            go_service(&[], 0, 0.0, 0.0),
            resource(
                &[],
                vec![histogram("go_sched_latencies_seconds", T0, f64::NAN, 3)],
            ),
        ],
    );
    assert_eq!(out.len(), 3);
}

#[test]
fn validate_reports_every_problem() {
    let problems = config(serde_json::json!({
        "join_on": [""],
        "gc_cpu_share": 0,
        "throttled_share": 1.5,
        "memory_headroom": 1,
        "max_series": 0,
        "stale_after": "0s",
    }))
    .validate();
    assert_eq!(problems.len(), 6, "{problems:#?}");
    assert!(
        problems
            .iter()
            .all(|p| p.contains("default") || p.contains("e.g.")),
        "{problems:#?}"
    );
    assert!(Config::default().validate().is_empty());
    assert!(serde_json::from_value::<Config>(serde_json::json!({"gc_cpu": 0.3})).is_err());
}

#[test]
fn a_pods_container_cgroup_is_matched_by_container_id_else_the_pod_cgroup() {
    let mut p = GofitProcessor::new(
        "gofit",
        &config(serde_json::json!({"join_on": ["k8s.pod.uid"]})),
        None,
    )
    .expect("valid");
    let pod = ("k8s.pod.uid", "pod-a");
    run(
        &mut p,
        vec![
            // The pod's cgroup: the sum of its containers' limits.
            cgroup(
                &[pod, ("cgroup.path", "/kubepods/podA")],
                T0,
                Some(4.0),
                None,
            ),
            cgroup(
                &[
                    pod,
                    ("cgroup.path", "/kubepods/podA/app"),
                    ("container.id", "app"),
                ],
                T0,
                Some(1.0),
                None,
            ),
            cgroup(
                &[
                    pod,
                    ("cgroup.path", "/kubepods/podA/proxy"),
                    ("container.id", "proxy"),
                ],
                T0,
                Some(3.0),
                None,
            ),
        ],
    );
    let out = run(
        &mut p,
        vec![
            go_service(&[pod, ("container.id", "app")], T0, 2.0, MAX_INT64),
            go_service(
                &[pod, ("service.name", "no-container-id")],
                T0,
                2.0,
                MAX_INT64,
            ),
        ],
    );
    assert_eq!(holding(&out[0]), ["gomaxprocs_above_cpu_limit"]);
    assert_eq!(input(&out[0], "go.runtime.fit.cpu_limit"), Some(1.0));
    assert!(holding(&out[1]).is_empty());
    assert_eq!(input(&out[1], "go.runtime.fit.cpu_limit"), Some(4.0));
    assert_eq!(p.series_count(), 5);
}

#[test]
fn a_hybrid_hosts_two_self_cgroups_are_merged() {
    let mut p = sidecar();
    run(
        &mut p,
        vec![
            // v1 memory + cpu controllers, and the v2 cgroup with only cpu.stat.
            cgroup(
                &[("cgroup.path", "/app"), ("cgroup.version", "1")],
                T0,
                Some(2.0),
                Some(512.0 * MIB),
            ),
            resource(
                &[("cgroup.path", "/"), ("cgroup.version", "2")],
                vec![counter("cgroup.cpu.stat.usage", T0, 1.0)],
            ),
        ],
    );
    let out = run(&mut p, vec![go_service(&[], T0, 4.0, MAX_INT64)]);
    assert_eq!(
        holding(&out[0]),
        ["gomaxprocs_above_cpu_limit", "gomemlimit_unset"]
    );
}

#[test]
fn a_reading_that_cannot_evaluate_a_finding_keeps_it_without_a_second_start() {
    let registry = Registry::new();
    let mut p = GofitProcessor::new("gofit", &Config::default(), Some(&registry)).expect("valid");
    let active = p.counters.findings_active[Finding::GcCpuHigh as usize].clone();
    run(&mut p, vec![cgroup(&[], T0, Some(1.0), Some(512.0 * MIB))]);
    run(&mut p, vec![gc_service(T0, 1.0, 100.0, 50.0)]);
    let out = run(&mut p, vec![gc_service(T0 + 10 * SEC, 5.0, 110.0, 52.0)]);
    assert_eq!(holding(&out[0]), ["gc_cpu_high"]);
    assert_eq!(active.get(), 1);
    // GC time advanced but the used CPU did not (the runtime's estimates move at different
    // moments): no GC share for this interval.
    let out = run(&mut p, vec![gc_service(T0 + 20 * SEC, 6.0, 110.0, 52.0)]);
    assert_eq!(input(&out[0], "go.runtime.fit.gc_cpu_share"), None);
    assert_eq!(
        active.get(),
        1,
        "an unknown share neither clears the finding nor restarts it"
    );
    // 10 s available, 2 s idle, 8 s used of which 4 s GC: 50% again, the same finding.
    let out = run(&mut p, vec![gc_service(T0 + 30 * SEC, 10.0, 120.0, 54.0)]);
    assert_eq!(holding(&out[0]), ["gc_cpu_high"]);
    assert_eq!(active.get(), 1, "started once, not twice");
}
