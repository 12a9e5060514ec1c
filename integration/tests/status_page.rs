//! The status page at `/` of the `zpages` extension in a real browser: oxcol runs with
//! otlp + cgroup + smaps + pprof (scraping a real leaking Go service, integration/go/goapp),
//! prometheus (scraping a real Go service run with GOMAXPROCS=8 and no GOMEMLIMIT), gofit,
//! ewma, burnrate, a forward connector and zpages; the test sends OTLP (load, a
//! pod's growing working set against its limits, an SLO's request counters), waits until
//! `/api/status` has the picture, then loads `/` in headless Chromium and checks the DOM
//! the page's script rendered: pipeline ids, non-zero counts, the leak suspect of the Go
//! service with its stack, a time to limit, a firing burn-rate alert, the Go runtime fit
//! findings of the misfit service with their fix. It saves a
//! screenshot to target/status-page.png, and to docs/status-page.png with
//! `OXCOL_UPDATE_SCREENSHOT=1`.
//!
//! Needs `target/debug/oxcol` (`cargo build -p oxcol`), Go, and Chromium (Debian package
//! `chromium`; scripts/test installs it). Every wait is bounded; oxcol, the Go service and
//! Chromium are killed when the test ends, also on panic.

mod gohelp;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gohelp::{GoService, free_port, http_get};
use oxcol_integration::child::ChildGuard;
use serde_json::{Value, json};

const MIB: f64 = 1024.0 * 1024.0;
const POD_PATH: &str = "/kubepods/burstable/pod-checkout";
const POD_LIMIT: f64 = 512.0 * MIB;
/// The pod's CPU limit (`cgroup.cpu.max`, CPUs): gofit holds the GOMAXPROCS=8 service to it.
const POD_CPUS: f64 = 1.0;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

/// POST `body` (OTLP/JSON) to oxcol's OTLP/HTTP `/v1/metrics`; the status code.
fn post_metrics(http_addr: &str, body: &Value) -> u16 {
    use std::io::{Read, Write};
    let text = body.to_string();
    let mut stream = std::net::TcpStream::connect(http_addr).expect("connects to oxcol");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("sets a timeout");
    let request = format!(
        "POST /v1/metrics HTTP/1.0\r\nHost: {http_addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    );
    stream
        .write_all(request.as_bytes())
        .expect("sends the request");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn attributes(pairs: &[(&str, &str)]) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
            .collect(),
    )
}

/// One scrape of a pod's cgroup at `time`: its working set, its limits, its memory PSI.
fn pod_memory(time: u64, working_set: f64) -> Value {
    let gauge = |name: &str, value: f64| {
        json!({"name": name, "unit": "By", "gauge": {"dataPoints": [
            {"timeUnixNano": time.to_string(), "asInt": (value as i64).to_string()}
        ]}})
    };
    let pressure = |kind: &str, window: &str, ratio: f64| {
        json!({"timeUnixNano": time.to_string(), "asDouble": ratio,
               "attributes": attributes(&[("resource", "memory"), ("kind", kind), ("window", window)])})
    };
    json!({"resourceMetrics": [{
        "resource": {"attributes": attributes(&[
            ("cgroup.path", POD_PATH), ("cgroup.version", "2"),
            ("k8s.pod.name", "checkout-7d9f"), ("k8s.namespace.name", "shop"),
        ])},
        "scopeMetrics": [{"scope": {"name": "status-page-test"}, "metrics": [
            gauge("cgroup.memory.working_set", working_set),
            gauge("cgroup.memory.max", POD_LIMIT),
            {"name": "cgroup.cpu.max", "unit": "{cpu}", "gauge": {"dataPoints": [
                {"timeUnixNano": time.to_string(), "asDouble": POD_CPUS}
            ]}},
            {"name": "cgroup.pressure.avg", "unit": "1", "gauge": {"dataPoints": [
                pressure("some", "10s", 0.12), pressure("some", "60s", 0.08),
                pressure("full", "10s", 0.03), pressure("full", "60s", 0.02),
            ]}},
        ]}]
    }]})
}

/// One scrape of a service's request counters at `time`: `total` requests, 5% of them 500s.
fn requests(start: u64, time: u64, total: u64) -> Value {
    let errors = total / 20;
    let point = |code: &str, value: u64| {
        json!({"startTimeUnixNano": start.to_string(), "timeUnixNano": time.to_string(),
               "asInt": value.to_string(), "attributes": attributes(&[("code", code)])})
    };
    json!({"resourceMetrics": [{
        "resource": {"attributes": attributes(&[("service.name", "checkout")])},
        "scopeMetrics": [{"metrics": [{"name": "http_requests_total", "unit": "1", "sum": {
            "aggregationTemporality": 2, "isMonotonic": true,
            "dataPoints": [point("200", total - errors), point("500", errors)]
        }}]}]
    }]})
}

const STEP_NANOS: u64 = 30_000_000_000;

/// A pod growing 3 MiB a minute from 380 MiB toward its 512 MiB limit, and a service
/// burning its SLO's error budget 50 times too fast (5% errors, objective 99.9%), as
/// scrapes (data time is what the ewma and burnrate processors and the picture go by).
struct Feed {
    http_addr: String,
    /// Data time of the first scrape.
    start: u64,
}

impl Feed {
    /// Sends the last 14 minutes at once, a scrape every 30 s.
    fn with_history(http_addr: &str) -> Feed {
        let feed = Feed {
            http_addr: http_addr.to_string(),
            start: now_unix_nanos() - 28 * STEP_NANOS,
        };
        for i in 0..=28u64 {
            assert_eq!(feed.scrape(feed.start + i * STEP_NANOS), (200, 200));
        }
        feed
    }

    /// One scrape of both at data time `time`; the HTTP statuses.
    fn scrape(&self, time: u64) -> (u16, u16) {
        let steps = (time - self.start) as f64 / STEP_NANOS as f64;
        let working_set = 380.0 * MIB + steps * 1.5 * MIB;
        let total = 1000 + (steps * 600.0) as u64;
        (
            post_metrics(&self.http_addr, &pod_memory(time, working_set)),
            post_metrics(&self.http_addr, &requests(self.start, time, total)),
        )
    }

    /// A scrape now; what oxcol answers is checked by the history (a refusal here would
    /// show as missing data on the page).
    fn scrape_now(&self) {
        let _ = self.scrape(now_unix_nanos());
    }
}

fn get_json(addr: &str, path: &str) -> Option<Value> {
    let (status, body) = http_get(addr, path).ok()?;
    (status == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

/// The first `/api/status` for which `ready` holds, within `limit`; panics with the last.
fn wait_status(
    zpages: &str,
    limit: Duration,
    ready: impl Fn(&Value) -> Result<(), String>,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let status = get_json(zpages, "/api/status").unwrap_or(Value::Null);
        match ready(&status) {
            Ok(()) => return status,
            Err(missing) if Instant::now() >= deadline => {
                panic!("/api/status did not have {missing} within {limit:?}:\n{status:#}")
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Headless Chromium with a fresh profile, bounded; its stdout.
fn chromium(args: &[String], limit: Duration) -> String {
    let profile = std::env::temp_dir().join(format!(
        "oxcol-chromium-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&profile).expect("creates the profile dir");
    let out_path = profile.join("stdout");
    let out = std::fs::File::create(&out_path).expect("creates the output file");
    let mut child = ChildGuard::new(
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts (Debian package `chromium`; scripts/test installs it)"),
    );
    let status = child
        .wait_timeout(limit)
        .unwrap_or_else(|e| panic!("chromium did not finish within {limit:?}: {e}"));
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(status.success(), "chromium failed with {status}: {output}");
    output
}

/// The numbers shown in the DOM for count `name` of component `id` in the table (one per
/// pipeline that names it).
fn table_counts(dom: &str, id: &str, name: &str) -> Vec<f64> {
    let mut found = Vec::new();
    let row_marker = "<tr class=\"component\" data-pipeline=";
    for row in dom.split(row_marker).skip(1) {
        let row = row.split("</tr>").next().unwrap_or_default();
        if !row.contains(&format!("data-component=\"{id}\"")) {
            continue;
        }
        let Some((_, rest)) = row.split_once(&format!("data-count=\"{name}\">")) else {
            continue;
        };
        let value = rest
            .split_once("<b class=\"value\">")
            .and_then(|(_, v)| v.split_once("</b>"))
            .map(|(v, _)| v);
        if let Some(value) = value {
            let (number, scale) = match value.chars().last() {
                Some('k') => (&value[..value.len() - 1], 1e3),
                Some('M') => (&value[..value.len() - 1], 1e6),
                _ => (value, 1.0),
            };
            if let Ok(n) = number.parse::<f64>() {
                found.push(n * scale);
            }
        }
    }
    found
}

#[test]
fn status_page_renders_pipelines_counts_and_the_memory_picture_in_chromium() {
    let test_start = Instant::now();
    let service = GoService::start("leak", &[]);
    // client_golang's default Go collector, run as if nobody had set the runtime up for
    // its container (gofit holds it to the pod's limits: join_on [] in one pipeline).
    let misfit = GoService::start_with_env(
        "metrics",
        &[],
        &[("GOMAXPROCS", "8"), ("GOMEMLIMIT", "off")],
    );
    let (grpc, http, metrics, zpages) = (free_port(), free_port(), free_port(), free_port());
    let zpages_addr = format!("127.0.0.1:{zpages}");
    let http_addr = format!("127.0.0.1:{http}");
    let config = format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
      http: {{endpoint: 127.0.0.1:{http}}}
  cgroup: {{collection_interval: 2s, self: true}}
  smaps: {{collection_interval: 3s, self: true, all: true, top: 8}}
  pprof:
    collection_interval: 1s
    timeout: 2s
    targets: [{{endpoint: \"http://{leaky}\", labels: {{service.name: leaky}}}}]
    goroutine_stacks: {{top_k: 10, debug2: true, debug2_interval: 2s}}
    leak_detection: {{window: 10s, min_growth: 10}}
  prometheus:
    config:
      scrape_configs:
        - job_name: misfit
          scrape_interval: 1s
          static_configs:
            - targets: [\"{misfit}\"]
processors:
  gofit:
  ewma:
    metrics: [{{match: cgroup.memory.working_set, half_life: 2m, rate: true}}]
    predict:
      - {{name: cgroup.memory.time_to_limit, value: cgroup.memory.working_set, limit: cgroup.memory.max}}
  burnrate:
    slos:
      - name: checkout-availability
        objective: 0.999
        errors: {{metric: http_requests_total, match: {{code: \"5..\"}}}}
        total: {{metric: http_requests_total}}
        group_by: [service.name]
  batch:
exporters:
  debug: {{verbosity: basic}}
connectors:
  forward:
extensions:
  zpages: {{endpoint: \"{zpages_addr}\"}}
service:
  extensions: [zpages]
  telemetry: {{metrics: {{address: \"127.0.0.1:{metrics}\"}}}}
  pipelines:
    metrics/in:
      receivers: [otlp, cgroup, smaps, pprof, prometheus]
      processors: [batch]
      exporters: [forward]
    metrics/picture:
      receivers: [forward]
      processors: [gofit, ewma, burnrate]
      exporters: [debug]
    logs:
      receivers: [pprof]
      exporters: [debug]
",
        leaky = service.addr,
        misfit = misfit.addr,
    );
    let mut oxcol = gohelp::oxcol(&config);
    oxcol.wait_metrics(
        &format!("127.0.0.1:{metrics}"),
        Duration::from_secs(20),
        Duration::from_millis(100),
    );
    let feed = Feed::with_history(&http_addr);
    let metrics_addr = format!("127.0.0.1:{metrics}");

    // From here on, as a real deployment would: the pod and the service are scraped every
    // second (a picture drops a cgroup that stops reporting at its own pace), and the
    // leaking service gets traffic (each /work leaks a goroutine).
    let traffic_on = std::sync::atomic::AtomicBool::new(true);
    let status = std::thread::scope(|scope| {
        scope.spawn(|| {
            while traffic_on.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..5 {
                    service.get("/work");
                }
                feed.scrape_now();
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        // Stops the traffic however this scope ends (a failed assertion too).
        let _stop = StopOnDrop(&traffic_on);
        check_the_page(&zpages_addr, &metrics_addr)
    });
    eprintln!(
        "/api/status: {} bytes; test took {:?}",
        status.to_string().len(),
        test_start.elapsed()
    );
    let log = oxcol.stop_and_log();
    assert!(!log.contains("panicked"), "{log}");
}

/// Waits until the picture has data, then checks the page Chromium rendered and saves
/// the screenshot; the last `/api/status`.
fn check_the_page(zpages_addr: &str, metrics_addr: &str) -> Value {
    let status = wait_status(zpages_addr, Duration::from_secs(60), |status| {
        let picture = &status["picture"];
        let suspects = picture["leak_suspects"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !suspects
            .iter()
            .any(|s| s["function"] == "main.waitForResult" && s["stack"].is_string())
        {
            return Err("a leak suspect main.waitForResult with its stack".into());
        }
        let cgroups = picture["cgroups"].as_array().cloned().unwrap_or_default();
        if !cgroups
            .iter()
            .any(|c| c["path"] == POD_PATH && c["time_to_limit_seconds"].is_number())
        {
            return Err("the pod's time to limit".into());
        }
        if cgroups.len() < 2 {
            return Err("oxcol's own cgroup besides the pod".into());
        }
        if picture["slos"].as_array().is_none_or(|s| s.is_empty()) {
            return Err("an SLO".into());
        }
        if picture["processes"].as_array().is_none_or(|p| p.is_empty()) {
            return Err("processes by PSS".into());
        }
        let misfit_findings = picture["go_fit"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["service"] == "misfit"))
            .map(|s| s["findings"].to_string())
            .unwrap_or_default();
        if !(misfit_findings.contains("gomaxprocs_above_cpu_limit")
            && misfit_findings.contains("gomemlimit_unset"))
        {
            return Err("the misfit Go service's gofit findings".into());
        }
        Ok(())
    });
    let pod = status["picture"]["cgroups"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["path"] == POD_PATH))
        .cloned()
        .unwrap_or_default();
    // 1.5 MiB per 30 s = 3 MiB/min; ~90 MiB left: about half an hour.
    let ttl = pod["time_to_limit_seconds"].as_f64().unwrap_or_default();
    assert!(
        (600.0..3600.0).contains(&ttl),
        "time to limit {ttl} s:\n{pod:#}"
    );

    let rss_before = oxcol_rss(metrics_addr);
    let url = format!("http://{zpages_addr}/");
    let dom = chromium(
        &[
            "--virtual-time-budget=5000".to_string(),
            "--dump-dom".to_string(),
            url.clone(),
        ],
        Duration::from_secs(60),
    );
    let now = || get_json(zpages_addr, "/api/status").unwrap_or_default();
    // The script ran and drew the data.
    assert!(
        dom.contains("data-updated=\""),
        "the page's script rendered:\n{dom}"
    );
    for pipeline in ["metrics/in", "metrics/picture", "logs"] {
        assert!(
            dom.contains(&format!("data-pipeline=\"{pipeline}\"")),
            "pipeline {pipeline} is drawn:\n{dom}"
        );
    }
    for component in [
        "otlp",
        "cgroup",
        "smaps",
        "pprof",
        "prometheus",
        "forward",
        "gofit",
        "ewma",
        "burnrate",
        "debug",
    ] {
        assert!(
            dom.contains(&format!("data-component=\"{component}\"")),
            "component {component} is shown"
        );
    }
    let accepted = table_counts(&dom, "otlp", "accepted");
    assert!(
        accepted.iter().any(|n| *n > 0.0),
        "otlp accepted a non-zero count: {accepted:?}"
    );
    let sent = table_counts(&dom, "debug", "sent");
    assert!(sent.iter().any(|n| *n > 0.0), "debug sent: {sent:?}");
    assert!(
        dom.contains("data-function=\"main.waitForResult\"")
            && dom.contains("created by main.leakyHandler"),
        "the leak suspect with its stack is shown; the picture now: {:#}",
        now()["picture"]
    );
    assert!(
        dom.contains("data-ttl-seconds=\""),
        "a time to limit is shown; the picture now: {:#}",
        now()["picture"]
    );
    assert!(dom.contains("checkout-7d9f"), "the pod is named");
    assert!(
        dom.contains("memory some 12% / 8.0%, full 3.0% / 2.0%"),
        "the pod's memory PSI (avg10 / avg60) is shown"
    );
    assert!(
        dom.contains("data-slo=\"checkout-availability\"") && dom.contains("FIRING"),
        "the SLO burning 50x fires its page alert"
    );
    // The Go service run with GOMAXPROCS=8 and no GOMEMLIMIT in a 1-CPU, 512 MiB pod: its
    // row has both findings with the fix gofit logs, the inputs side by side.
    let misfit_row = dom
        .split("<tr class=\"gofit\" data-service=\"misfit/")
        .nth(1)
        .and_then(|row| row.split("</tr>").next())
        .unwrap_or_else(|| {
            panic!(
                "the misfit service's Go runtime fit row; the picture now: {:#}",
                now()["picture"]["go_fit"]
            )
        });
    for shown in [
        "data-finding=\"gomaxprocs_above_cpu_limit\"",
        // ceil of the tightest CPU limit: the pod's 1 CPU (oxcol's own cgroup may be tighter).
        "set GOMAXPROCS=1, or build with Go 1.25+ which follows the CPU limit",
        "data-finding=\"gomemlimit_unset\"",
        "set GOMEMLIMIT=",
        ">8</td>",
        ">unset</td>",
    ] {
        assert!(misfit_row.contains(shown), "{shown} in {misfit_row}");
    }
    // Each fix as the picture has it (the suggested GOMEMLIMIT depends on the tightest
    // memory limit: the pod's 512 MiB, or oxcol's own cgroup's if lower).
    let fixes: Vec<String> = status["picture"]["go_fit"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["service"] == "misfit"))
        .and_then(|s| s["findings"].as_array())
        .map(|f| {
            f.iter()
                .filter_map(|f| f["fix"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert!(fixes.len() >= 2, "{fixes:?}");
    for fix in &fixes {
        assert!(misfit_row.contains(fix.as_str()), "{fix} in {misfit_row}");
    }

    // The screenshot the docs use; for the committed one, first let the sparklines fill
    // (a sample every 10 s).
    let update = std::env::var("OXCOL_UPDATE_SCREENSHOT").as_deref() == Ok("1");
    if update {
        std::thread::sleep(Duration::from_secs(60));
    }
    let shot = workspace().join("target/status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &[
            "--virtual-time-budget=5000".to_string(),
            format!("--screenshot={}", shot.display()),
            "--window-size=1400,1700".to_string(),
            url,
        ],
        Duration::from_secs(60),
    );
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
        "a screenshot was saved to {}",
        shot.display()
    );
    if update {
        std::fs::copy(&shot, workspace().join("docs/status-page.png"))
            .expect("copies the screenshot to docs/");
    }
    eprintln!(
        "oxcol RSS before Chromium loaded the page: {rss_before:?} bytes, after two loads: {:?} bytes",
        oxcol_rss(metrics_addr)
    );
    status
}

/// oxcol's resident bytes from its own `/metrics` (`otelcol_process_memory_rss`).
fn oxcol_rss(metrics_addr: &str) -> Option<f64> {
    let (_, body) = http_get(metrics_addr, "/metrics").ok()?;
    body.lines()
        .find(|l| l.starts_with("otelcol_process_memory_rss "))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}
