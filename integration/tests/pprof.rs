//! The `pprof` receiver end to end against real Go services (integration/go/goapp):
//! a service leaking one goroutine per request, one with many stable goroutines, one
//! whose bursts drain, plus a target that is down and one that answers HTML.
//!
//! Needs `target/debug/oxcol` (`cargo build -p oxcol`) and Go; the Go service is built
//! once per test binary into target/go/goapp. oxcol exports OTLP/JSON over HTTP to a
//! capture server inside the test. Every wait is bounded; every child is killed on drop.

mod gohelp;

use std::time::{Duration, Instant};

use gohelp::{Capture, GoService, oxcol};
use serde_json::Value;

const LEAK_WINDOW_SECS: u64 = 10;

/// Every `go.goroutine.leak.suspect` log record seen so far: (service.name, record).
fn leak_records(capture: &Capture) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for request in capture.logs() {
        for rl in request["resourceLogs"].as_array().into_iter().flatten() {
            let service =
                gohelp::attr(&rl["resource"]["attributes"], "service.name").unwrap_or_default();
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for record in sl["logRecords"].as_array().into_iter().flatten() {
                    if record["eventName"] == "go.goroutine.leak.suspect" {
                        out.push((service.clone(), record.clone()));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn leaking_service_is_flagged_naming_the_function_and_counts_match() {
    let service = GoService::start("leak", &[]);
    let capture = Capture::start();
    let config = format!(
        "receivers:
  pprof:
    collection_interval: 1s
    timeout: 2s
    targets: [{{endpoint: \"http://{addr}\", labels: {{service.name: leaky}}}}]
    goroutine_stacks: {{top_k: 10, debug2: true, debug2_interval: 2s}}
    leak_detection: {{window: {LEAK_WINDOW_SECS}s, min_growth: 10}}
{exporter}
service:
  telemetry: {{metrics: {{level: none}}}}
  pipelines:
    metrics: {{receivers: [pprof], exporters: [otlphttp]}}
    logs: {{receivers: [pprof], exporters: [otlphttp]}}
",
        addr = service.addr,
        exporter = capture.exporter_yaml(),
    );
    let _oxcol = oxcol(&config);
    // Let oxcol see the service idle first, then leak ~10 goroutines a second.
    std::thread::sleep(Duration::from_secs(2));
    let traffic_start = Instant::now();
    let mut flagged_after = None;
    while traffic_start.elapsed() < Duration::from_secs(LEAK_WINDOW_SECS + 6) {
        for _ in 0..5 {
            service.get("/work");
        }
        std::thread::sleep(Duration::from_millis(500));
        if !leak_records(&capture).is_empty() {
            flagged_after = Some(traffic_start.elapsed());
            break;
        }
    }
    let flagged_after = flagged_after.unwrap_or_else(|| {
        panic!(
            "no leak suspect within {}s of traffic",
            LEAK_WINDOW_SECS + 6
        )
    });
    assert!(
        flagged_after <= Duration::from_secs(LEAK_WINDOW_SECS + 2),
        "flagged after {flagged_after:?}, window is {LEAK_WINDOW_SECS}s"
    );
    let records = leak_records(&capture);
    let (svc, record) = &records[0];
    assert_eq!(svc, "leaky");
    assert_eq!(
        gohelp::attr(&record["attributes"], "go.stack.function").as_deref(),
        Some("main.waitForResult"),
        "{record}"
    );
    assert_eq!(
        gohelp::attr(&record["attributes"], "go.stack.creator").as_deref(),
        Some("main.leakyHandler"),
        "{record}"
    );
    let body = record["body"]["stringValue"].as_str().unwrap_or_default();
    assert!(
        body.contains("main.waitForResult")
            && body.contains("goapp/main.go:")
            && body.contains("created by main.leakyHandler"),
        "{body}"
    );

    // The growth metric names the same stack.
    let growth = capture.points("go.goroutine.leak.growth");
    assert!(
        growth.iter().any(
            |(attrs, v)| gohelp::attr(attrs, "go.stack.function").as_deref()
                == Some("main.waitForResult")
                && *v > 1.0
        ),
        "{growth:?}"
    );

    // debug=2 gave the wait states (0 s: nothing has waited a whole minute yet).
    let waits = capture.points("go.goroutine.wait.oldest");
    assert!(
        waits
            .iter()
            .any(
                |(a, v)| gohelp::attr(a, "go.goroutine.state").as_deref() == Some("select")
                    && *v == 0.0
            ),
        "{waits:?}"
    );

    // Traffic stopped: the leaked goroutines stay, so the count is stable; compare it
    // with the service's own runtime.NumGoroutine().
    std::thread::sleep(Duration::from_millis(2500));
    let own: f64 = service
        .get("/numgoroutine")
        .trim()
        .parse()
        .expect("a number");
    let counts = capture.points("go.goroutine.count");
    let (_, seen) = counts.last().expect("go.goroutine.count was exported");
    assert!(
        (seen - own).abs() <= 4.0,
        "oxcol saw {seen} goroutines, the service says {own}"
    );
    assert!(own >= 50.0, "the service leaked: {own}");
    // Exactly one record for the one suspect, even after more scrapes.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(leak_records(&capture).len(), 1);
}

#[test]
fn stable_and_draining_services_raise_no_suspect_and_broken_targets_are_isolated() {
    let stable = GoService::start("stable", &["-stable", "300"]);
    let burst = GoService::start("burst", &["-burst", "200", "-burst-for", "700ms"]);
    let capture = Capture::start();
    let down = format!("127.0.0.1:{}", gohelp::free_port());
    let metrics_port = gohelp::free_port();
    let config = format!(
        "receivers:
  pprof:
    collection_interval: 1s
    timeout: 2s
    targets:
      - {{endpoint: \"http://{stable}\", labels: {{service.name: stable}}}}
      - {{endpoint: \"http://{burst}\", labels: {{service.name: burst}}}}
      - {{endpoint: \"http://{down}\", labels: {{service.name: down}}}}
      - {{endpoint: \"http://{html}\", labels: {{service.name: html}}}}
    goroutine_stacks: {{top_k: 5}}
    leak_detection: {{window: {LEAK_WINDOW_SECS}s, min_growth: 10}}
{exporter}
service:
  telemetry: {{metrics: {{address: \"127.0.0.1:{metrics_port}\"}}}}
  pipelines:
    metrics: {{receivers: [pprof], exporters: [otlphttp]}}
    logs: {{receivers: [pprof], exporters: [otlphttp]}}
",
        stable = stable.addr,
        burst = burst.addr,
        html = capture.addr,
        exporter = capture.exporter_yaml(),
    );
    let mut oxcol = oxcol(&config);
    let started = Instant::now();
    // Traffic on both for 1.5 windows: the stable service does nothing lasting, the
    // burst service starts 200 goroutines that exit after 0.7 s, every 1.2 s.
    while started.elapsed() < Duration::from_secs(LEAK_WINDOW_SECS * 3 / 2) {
        stable.get("/work");
        burst.get("/work");
        std::thread::sleep(Duration::from_millis(1200));
    }
    assert!(
        leak_records(&capture).is_empty(),
        "false suspects: {:?}",
        leak_records(&capture)
    );
    assert!(capture.points("go.goroutine.leak.growth").is_empty());

    let by_service = |name: &str| -> Vec<f64> {
        capture
            .points_by_resource("go.goroutine.count")
            .into_iter()
            .filter(|(s, _)| s == name)
            .map(|(_, v)| v)
            .collect()
    };
    let stable_counts = by_service("stable");
    assert!(
        stable_counts.len() >= 8,
        "the stable target is scraped every second despite the broken ones: {stable_counts:?}"
    );
    assert!(
        stable_counts.iter().all(|c| (300.0..320.0).contains(c)),
        "{stable_counts:?}"
    );
    let burst_counts = by_service("burst");
    assert!(
        burst_counts.iter().any(|c| *c >= 150.0) && burst_counts.iter().any(|c| *c < 50.0),
        "bursts were seen and drained: {burst_counts:?}"
    );
    assert!(by_service("down").is_empty() && by_service("html").is_empty());

    // Errors: counted every scrape, logged once per target.
    let telemetry = gohelp::http_get(&format!("127.0.0.1:{metrics_port}"), "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    let errors = |reason: &str| -> f64 {
        telemetry
            .lines()
            .filter(|l| {
                l.starts_with("oxcol_pprof_scrape_errors")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        errors("connect") >= 8.0,
        "connect errors counted per scrape:\n{telemetry}"
    );
    assert!(
        errors("html") >= 8.0,
        "html errors counted per scrape:\n{telemetry}"
    );
    let log = oxcol.stop_and_log();
    let warned = |needle: &str| {
        log.lines()
            .filter(|l| l.contains("cannot read pprof profiles") && l.contains(needle))
            .count()
    };
    assert_eq!(warned(&down), 1, "one warning for the down target:\n{log}");
    assert_eq!(
        warned(&capture.addr),
        1,
        "one warning for the HTML target:\n{log}"
    );
    assert!(log.contains("HTML page"), "{log}");
}
