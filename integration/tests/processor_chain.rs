//! The shipped sidecar config (configs/sidecar-go.yaml) run by the real `oxcol` binary,
//! end to end: a real Go service (integration/go/goapp `-mode slo`, client_golang with
//! promhttp middleware) generates its own traffic with 5% errors (500) and 2% slow
//! requests (400 ms; the latency SLO's threshold is 250 ms); oxcol scrapes it (plus
//! pprof, its cgroup and smaps) and runs the whole chain relabel -> units -> ewma ->
//! burnrate into remote write to a real Prometheus (Debian package, 2.42, with
//! `--web.enable-remote-write-receiver`), which is then queried:
//!
//! - relabel: `go_memstats_*`/`go_gc_*` dropped while `go_goroutines` arrives; every
//!   `http_requests_total` series carries `code_class` (`5xx` for `code="500"`);
//! - units: `app_buffer_kb` (KiB, no unit metadata) arrives only as `app_buffer_bytes`,
//!   scaled by 1024 (the service keeps the KiB value odd, so x1000 would show);
//! - ewma: `app_buffer_bytes_ewma` within the range the raw gauge covered and near its mean,
//!   `http_requests_total_rate_ewma_per_second` close to Prometheus' own `rate()` of the
//!   raw counter, `cgroup_memory_working_set_ewma_bytes` present (loosely near the raw
//!   working set: the cgroup is shared with whatever else runs on the machine);
//! - burnrate: `slo_burn_rate_ratio{slo_window="5m"}` ~5 for availability (5% errors,
//!   objective 0.99) and ~2 for latency (2% slow), each within a few percent of the same
//!   ratio computed by Prometheus from the raw series, every configured window present,
//!   `slo_alert_ratio` ticket = 1 and page = 0 (5 and 2 are above the 3d/6h factor 1 and
//!   below the page factors 6 and 14.4).
//!
//! Intervals are shortened for the test through the config's env variables and `--set`
//! (scrape every 1 s, burn-rate resolution 1 s). Every child (goapp, Prometheus, oxcol)
//! is killed on drop and every wait is bounded; the test takes about 18 s.
//!
//! Needs `target/debug/oxcol` (`cargo build -p oxcol`), Go, and `prometheus` (both
//! installed by scripts/test).

mod gohelp;

use std::path::{Path, PathBuf};
use std::time::Duration;

use gohelp::{GoService, Oxcol, free_port, http_get, wait_every};
use oxcol_integration::prometheus::{Prometheus, sample_value};
use serde_json::Value;

/// Requests per second the service sends itself, and the ratios it is told to produce.
const RPS: f64 = 50.0;
const ERROR_RATIO: f64 = 0.05;
const SLOW_RATIO: f64 = 0.02;
/// The objective of both SLOs in configs/sidecar-go.yaml.
const OBJECTIVE: f64 = 0.99;
/// Seconds of burn-rate samples to collect before checking.
const SAMPLES_SECS: usize = 15;
/// How often the waits below poll (as this test always did). The latency burn rate is
/// read against its PromQL oracle at whatever point of the 1 s scrape period the test
/// happens to be; now and then the two are one scrape apart (2.06 vs 2.00: outside 3%).
const POLL: Duration = Duration::from_millis(250);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn label<'a>(sample: &'a Value, name: &str) -> &'a str {
    sample["metric"][name].as_str().unwrap_or_default()
}

fn assert_close(what: &str, actual: f64, expected: f64, relative: f64) {
    assert!(
        (actual - expected).abs() <= relative * expected.abs(),
        "{what}: {actual} is not within {:.0}% of {expected}",
        relative * 100.0
    );
}

#[test]
fn sidecar_config_runs_the_processor_chain_into_prometheus() {
    // The service first, so its counters are well past zero when oxcol's first scrape
    // starts the SLO groups.
    let service = GoService::start(
        "slo",
        &[
            "-rps",
            &RPS.to_string(),
            "-error-ratio",
            &ERROR_RATIO.to_string(),
            "-slow-ratio",
            &SLOW_RATIO.to_string(),
            "-slow-latency",
            "400ms",
        ],
    );
    // Both code series and a slow request exist before the first scrape: a series that
    // appears later contributes only what it adds afterwards (Prometheus' rule), which
    // would lose the first errors and bias the burn rate low.
    let warm = wait_every(Duration::from_secs(10), POLL, || {
        let text = service.get("/metrics");
        let served: f64 = text
            .lines()
            .filter(|l| l.starts_with("http_requests_total{"))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum();
        (served >= 2.0 / SLOW_RATIO && text.contains(r#"http_requests_total{code="500""#))
            .then_some(())
    });
    assert!(
        warm.is_some(),
        "goapp did not serve its first errors within 10 s:\n{}",
        service.get("/metrics")
    );
    let prometheus = Prometheus::start("global:\n  scrape_interval: 1m\nscrape_configs: []\n", &[]);
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let env = [
        ("SERVICE_NAME", "goapp".to_string()),
        ("SERVICE_METRICS_TARGET", service.addr.clone()),
        ("SERVICE_PPROF_ENDPOINT", format!("http://{}", service.addr)),
        ("SERVICE_NAME_REGEX", "^goapp$".to_string()),
        ("SCRAPE_INTERVAL", "1s".to_string()),
        ("PROM_REMOTE_WRITE_URL", prometheus.write_url()),
        ("OTLP_GRPC_ENDPOINT", format!("127.0.0.1:{}", free_port())),
        ("OXCOL_METRICS_ADDRESS", metrics_addr.clone()),
        ("RUST_LOG", "warn".to_string()),
    ];
    let sets = [
        "processors::burnrate::resolution=1s",
        "receivers::cgroup::collection_interval=1s",
        "receivers::smaps::collection_interval=2s",
        "receivers::pprof::collection_interval=2s",
        "processors::batch::timeout=100ms",
    ];
    let mut oxcol = Oxcol::run(&workspace().join("configs/sidecar-go.yaml"), &sets, &env);
    oxcol.wait_metrics(&metrics_addr, Duration::from_secs(20), POLL);

    // Bounded: the first burn rate needs two scrapes; then SAMPLES_SECS of samples.
    let availability_5m =
        r#"slo_burn_rate_ratio{job="goapp",slo_name="availability",slo_window="5m"}"#;
    let enough = wait_every(Duration::from_secs(45), POLL, || {
        let result = prometheus.query(&format!("count_over_time({availability_5m}[2m])"));
        result
            .first()
            .map(sample_value)
            .filter(|n| *n >= SAMPLES_SECS as f64)
    });
    if enough.is_none() {
        let names: Vec<String> = prometheus
            .query("count by (__name__, job) ({__name__=~\".+\"})")
            .iter()
            .map(|s| format!("{} {}", s["metric"], sample_value(s)))
            .collect();
        panic!(
            "fewer than {SAMPLES_SECS} burn-rate samples within 45 s\nin prometheus: {names:#?}\noxcol /metrics:\n{}\noxcol log:\n{}",
            http_get(&metrics_addr, "/metrics")
                .map(|(_, body)| body)
                .unwrap_or_default(),
            oxcol.log()
        );
    }

    // relabel: go_memstats_* and go_gc_* dropped, the rest of the Go collector kept.
    assert!(prometheus.value(r#"go_goroutines{job="goapp"}"#) > 0.0);
    let dropped = prometheus.query(r#"{job="goapp", __name__=~"go_memstats_.*|go_gc_.*"}"#);
    assert!(dropped.is_empty(), "relabel should drop these: {dropped:?}");
    // ... and code_class added from code.
    let requests = prometheus.query(r#"http_requests_total{job="goapp"}"#);
    assert_eq!(requests.len(), 2, "code 200 and 500: {requests:?}");
    for series in &requests {
        let class = format!("{}xx", &label(series, "code")[..1]);
        assert_eq!(label(series, "code_class"), class, "{series}");
        assert_eq!(label(series, "method"), "get", "{series}");
    }

    // units: app_buffer_kb (KiB) renamed and scaled by 1024.
    let kb = prometheus.query(r#"{__name__="app_buffer_kb"}"#);
    assert!(kb.is_empty(), "units should rename app_buffer_kb: {kb:?}");
    let buffer = prometheus.value(r#"app_buffer_bytes{job="goapp"}"#);
    let kib = buffer / 1024.0;
    assert!(
        kib.fract() == 0.0 && kib as i64 % 2 == 1 && (1537.0..=2561.0).contains(&kib),
        "app_buffer_bytes {buffer} is not an odd KiB count in [1537, 2561] x 1024"
    );

    // ewma: the smoothed gauge lies in the range the raw gauge covered, and near its mean.
    let smoothed_buffer = prometheus.value(r#"app_buffer_bytes_ewma{job="goapp"}"#);
    let low = prometheus.value(r#"min_over_time(app_buffer_bytes{job="goapp"}[2m])"#);
    let high = prometheus.value(r#"max_over_time(app_buffer_bytes{job="goapp"}[2m])"#);
    assert!(
        low <= smoothed_buffer && smoothed_buffer <= high,
        "app_buffer_bytes_ewma {smoothed_buffer} outside the raw range [{low}, {high}]"
    );
    // With a 2m half-life and ~20 s of data the bias-corrected average weighs every
    // sample so far almost equally (the oldest by 2^(-20/120) = 0.89): it is the mean.
    let mean = prometheus.value(r#"avg_over_time(app_buffer_bytes{job="goapp"}[2m])"#);
    assert_close(
        "app_buffer_bytes_ewma vs the mean of the raw samples",
        smoothed_buffer,
        mean,
        0.05,
    );
    // The smoothed request rate per code, against Prometheus' rate() of the raw counter.
    let mut total_rate = 0.0;
    for code in ["200", "500"] {
        let ewma_rate = prometheus.value(&format!(
            r#"http_requests_total_rate_ewma_per_second{{job="goapp",code="{code}"}}"#
        ));
        let raw_rate = prometheus.value(&format!(
            r#"rate(http_requests_total{{job="goapp",code="{code}"}}[{SAMPLES_SECS}s])"#
        ));
        assert_close(
            &format!("request rate ewma, code {code}"),
            ewma_rate,
            raw_rate,
            0.25,
        );
        total_rate += ewma_rate;
    }
    assert!(
        (RPS * 0.5..=RPS * 1.5).contains(&total_rate),
        "smoothed request rate {total_rate}/s, the service sends {RPS}/s"
    );
    // The working set of oxcol's cgroup (shared with whatever else runs there: loose).
    let working_set = prometheus.query("cgroup_memory_working_set_bytes");
    let working_set_ewma = prometheus.query("cgroup_memory_working_set_ewma_bytes");
    assert!(
        !working_set.is_empty() && !working_set_ewma.is_empty(),
        "cgroup working set {working_set:?} and its ewma {working_set_ewma:?}"
    );
    let (raw, smoothed) = (
        sample_value(&working_set[0]),
        sample_value(&working_set_ewma[0]),
    );
    assert!(
        raw > 0.0 && smoothed > raw / 4.0 && smoothed < raw * 4.0,
        "working set {raw}, ewma {smoothed}"
    );

    // transform/identity: the cgroup and smaps series carry the service's job and what
    // tells them apart (target_info alone would merge oxcol's smaps with the service's,
    // and the v1 and v2 cgroups of a hybrid host).
    let by_cgroup: Vec<(String, String)> = prometheus
        .query("cgroup_cpu_stat_usage_seconds_total")
        .iter()
        .map(|s| {
            (
                label(s, "job").to_string(),
                label(s, "cgroup_path").to_string(),
            )
        })
        .collect();
    assert!(
        !by_cgroup.is_empty()
            && by_cgroup
                .iter()
                .all(|(job, path)| job == "goapp" && path.starts_with('/')),
        "cgroup series need job and cgroup_path: {by_cgroup:?}"
    );
    let mut by_process: Vec<(String, String)> = prometheus
        .query("process_smaps_rss_bytes")
        .iter()
        .map(|s| {
            (
                label(s, "job").to_string(),
                label(s, "process_executable_name").to_string(),
            )
        })
        .collect();
    by_process.sort();
    assert_eq!(
        by_process,
        [
            ("goapp".to_string(), "goapp".to_string()),
            ("goapp".to_string(), "oxcol".to_string())
        ],
        "smaps of the service and of oxcol (self), each its own series"
    );

    // burnrate: every configured window, at the generated ratios, consistent with
    // Prometheus' own computation over the raw series.
    let windows: Vec<String> = prometheus
        .query(r#"slo_burn_rate_ratio{job="goapp",slo_name="availability"}"#)
        .iter()
        .map(|s| label(s, "slo_window").to_string())
        .collect();
    for window in ["5m", "30m", "1h", "2h", "6h", "1d", "3d"] {
        assert!(
            windows.iter().any(|w| w == window),
            "no {window} burn rate: {windows:?}"
        );
    }
    let budget = 1.0 - OBJECTIVE;
    let availability = prometheus.value(availability_5m);
    assert_close(
        "availability burn rate (5% errors / 1% budget)",
        availability,
        ERROR_RATIO / budget,
        0.1,
    );
    let oracle = prometheus.value(&format!(
        r#"sum(increase(http_requests_total{{job="goapp",code=~"5.."}}[5m])) / sum(increase(http_requests_total{{job="goapp"}}[5m])) / {budget}"#
    ));
    // The oracle is evaluated at query time and extrapolates `increase()` over a window
    // that holds only ~20 s of samples, while oxcol's value is from its last data point:
    // a few percent apart on a loaded machine (exactness is the processors'
    // burnrate_oracle test, against Prometheus recording rules).
    assert_close(
        "availability burn rate vs PromQL over the raw counters",
        availability,
        oracle,
        0.06,
    );

    let latency =
        prometheus.value(r#"slo_burn_rate_ratio{job="goapp",slo_name="latency",slo_window="5m"}"#);
    let oracle = prometheus.value(&format!(
        r#"(1 - sum(increase(http_request_duration_seconds_bucket{{job="goapp",le="0.25"}}[5m])) / sum(increase(http_request_duration_seconds_count{{job="goapp"}}[5m]))) / {budget}"#
    ));
    assert_close(
        "latency burn rate vs PromQL over the raw histogram",
        latency,
        oracle,
        0.06,
    );
    // Slower-than-250ms requests are the 2% slow ones, plus any the loaded machine delayed.
    assert!(
        (SLOW_RATIO / budget * 0.8..=SLOW_RATIO / budget * 1.75).contains(&latency),
        "latency burn rate {latency}, 2% slow requests give 2"
    );

    for slo in ["availability", "latency"] {
        let alert = |severity: &str| {
            prometheus.value(&format!(
                r#"slo_alert_ratio{{job="goapp",slo_name="{slo}",severity="{severity}"}}"#
            ))
        };
        assert_eq!(
            (alert("ticket"), alert("page")),
            (1.0, 0.0),
            "{slo}: ticket fires above burn rate 1 (3d/6h), page needs 6 or 14.4"
        );
    }
    // The budget ring keeps one sample per period/720 (1 h): within the test it may hold
    // only one sample, then there is no value yet. When there is one, it is 1 - 5.
    let remaining = prometheus
        .query(r#"slo_error_budget_remaining_ratio{job="goapp",slo_name="availability"}"#);
    if let Some(sample) = remaining.first() {
        assert_close(
            "error budget remaining",
            sample_value(sample),
            1.0 - ERROR_RATIO / budget,
            0.3,
        );
    }

    eprintln!(
        "burn rate 5m: availability {availability:.3} (PromQL {:.3}), latency {latency:.3}; \
         request rate ewma {total_rate:.1}/s; app_buffer {buffer} ewma {smoothed_buffer:.0} mean {mean:.0}; budget left {:?}",
        prometheus.value(&format!(
            r#"sum(increase(http_requests_total{{job="goapp",code=~"5.."}}[5m])) / sum(increase(http_requests_total{{job="goapp"}}[5m])) / {budget}"#
        )),
        remaining.first().map(sample_value),
    );

    // Nothing failed on the way to Prometheus.
    let telemetry = http_get(&metrics_addr, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    let failed = telemetry
        .lines()
        .filter(|l| l.starts_with("otelcol_exporter_send_failed_metric_points"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum::<f64>();
    if failed != 0.0 {
        // The reasons first (a CI log keeps only the start of a long message): what oxcol
        // and Prometheus logged above info, then the exporter's counters.
        let warnings = |log: String| {
            log.lines()
                .filter(|l| {
                    l.contains(" WARN ")
                        || l.contains(" ERROR ")
                        || l.contains("level=warn")
                        || l.contains("level=error")
                })
                .map(str::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "{failed} points failed in remote write\noxcol warnings:\n{}\nprometheus warnings:\n{}\nexporter telemetry:\n{}",
            warnings(oxcol.log()),
            warnings(prometheus.log()),
            telemetry
                .lines()
                .filter(|l| l.starts_with("otelcol_exporter") || l.starts_with("oxcol_exporter"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    drop(service);
}
