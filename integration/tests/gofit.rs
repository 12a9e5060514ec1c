//! The `gofit` processor end to end: real Go services (integration/go/goapp, client_golang)
//! scraped by the `prometheus` receiver, cgroups read by the `cgroup` receiver from fixture
//! trees in the real cgroup v2 format (copied from receivers/tests/fixtures/cgroup, limits
//! rewritten per test), joined in the pipeline, findings captured over OTLP/HTTP and in
//! oxcol's log.
//!
//! Throttling comes from a fixture `cpu.stat` that the test advances (this machine's cgroup
//! hierarchy is a v1/v2 hybrid that tests cannot create CPU-limited cgroups in); the GC
//! load is real (goapp -mode gofit churns a pointer-rich heap with GOGC=10).
//!
//! Needs `target/debug/oxcol` and Go (the service is built once into target/go/goapp).

mod gohelp;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gohelp::{Capture, attr, free_port, http_get, number_points, oxcol, wait_for};
use oxcol_integration::child::{ChildGuard, first_line};
use serde_json::Value;

const POD_TIGHT: &str = "11111111-2222-3333-4444-555555555555";
const POD_ROOMY: &str = "0b7c3c2e-6f1a-4d2b-9c8e-1a2b3c4d5e6f";
const MIB: u64 = 1024 * 1024;

/// A goapp with its own environment (GOMAXPROCS, GOMEMLIMIT, GOGC); killed on drop.
struct Service {
    addr: String,
    _child: ChildGuard,
}

impl Service {
    fn start(mode: &str, env: &[(&str, &str)], extra: &[&str]) -> Service {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = ChildGuard::new(
            Command::new(gohelp::goapp_binary())
                .args(["-mode", mode, "-addr", &addr])
                .args(extra)
                .env_remove("GOMAXPROCS")
                .env_remove("GOMEMLIMIT")
                .env_remove("GOGC")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("goapp starts"),
        );
        let stdout = child.child_mut().stdout.take().expect("piped stdout");
        let line = first_line(stdout, Duration::from_secs(10)).expect("goapp prints its address");
        assert!(line.starts_with("listening on"), "{line}");
        Service {
            addr,
            _child: child,
        }
    }
}

/// A cgroup v2 hierarchy under a temporary directory: the root's files and one pod
/// cgroup per call of [`CgroupTree::pod`], copied from the cgroup receiver's fixtures.
struct CgroupTree {
    root: PathBuf,
}

impl CgroupTree {
    fn new(name: &str) -> CgroupTree {
        let root = std::env::temp_dir().join(format!(
            "oxcol-gofit-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("kubepods")).expect("fixture root");
        std::fs::copy(
            fixtures().join("cgroup.controllers"),
            root.join("cgroup.controllers"),
        )
        .expect("cgroup.controllers copied");
        CgroupTree { root }
    }

    /// `/kubepods/pod<uid>` with `cpu.max` and `memory.max` as given (file contents).
    fn pod(&self, uid: &str, cpu_max: &str, memory_max: &str) -> PathBuf {
        let source = fixtures().join(format!("kubepods/pod{POD_TIGHT}"));
        let dir = self.root.join(format!("kubepods/pod{uid}"));
        std::fs::create_dir_all(&dir).expect("pod dir");
        for entry in std::fs::read_dir(&source).expect("fixture pod dir") {
            let entry = entry.expect("fixture entry");
            if entry.path().is_file() {
                std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copied");
            }
        }
        std::fs::write(dir.join("cpu.max"), format!("{cpu_max}\n")).expect("cpu.max");
        std::fs::write(dir.join("memory.max"), format!("{memory_max}\n")).expect("memory.max");
        write_cpu_stat(&dir, 1000, 0);
        dir
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../receivers/tests/fixtures/cgroup/v2-cgroupfs")
}

/// A v2 `cpu.stat` (kernel 6.x layout), written atomically (rename) so a read never sees
/// half a file.
fn write_cpu_stat(dir: &Path, nr_periods: u64, nr_throttled: u64) {
    let text = format!(
        "usage_usec {usage}\nuser_usec {user}\nsystem_usec {system}\ncore_sched.force_idle_usec 0\nnr_periods {nr_periods}\nnr_throttled {nr_throttled}\nthrottled_usec {throttled}\nnr_bursts 0\nburst_usec 0\n",
        usage = nr_periods * 90_000,
        user = nr_periods * 60_000,
        system = nr_periods * 30_000,
        throttled = nr_throttled * 20_000,
    );
    let tmp = dir.join(".cpu.stat.tmp");
    std::fs::write(&tmp, text).expect("cpu.stat written");
    std::fs::rename(&tmp, dir.join("cpu.stat")).expect("cpu.stat renamed");
}

/// Each resource carrying `go.runtime.fit.finding`, in arrival order:
/// (service.name, finding -> value).
fn finding_reports(capture: &Capture) -> Vec<(String, Vec<(String, f64)>)> {
    capture
        .metric_instances("go.runtime.fit.finding")
        .into_iter()
        .map(|(resource, metric)| {
            let service = attr(&resource["attributes"], "service.name").unwrap_or_default();
            let findings = number_points(&metric)
                .into_iter()
                .map(|(attributes, value)| {
                    (attr(&attributes, "finding").unwrap_or_default(), value)
                })
                .collect();
            (service, findings)
        })
        .collect()
}

fn value_of(findings: &[(String, f64)], finding: &str) -> Option<f64> {
    findings.iter().find(|(f, _)| f == finding).map(|(_, v)| *v)
}

/// The scrapes of `job` seen so far (resources with `go_sched_gomaxprocs_threads`).
fn scrapes(capture: &Capture, job: &str) -> Vec<Value> {
    capture
        .metric_instances("go_sched_gomaxprocs_threads")
        .into_iter()
        .filter(|(resource, _)| {
            attr(&resource["attributes"], "service.name").as_deref() == Some(job)
        })
        .map(|(resource, _)| resource)
        .collect()
}

/// The last value of input gauge `name` on `job`'s resource.
fn last_input(capture: &Capture, job: &str, name: &str) -> Option<f64> {
    capture
        .metric_instances(name)
        .into_iter()
        .filter(|(resource, _)| {
            attr(&resource["attributes"], "service.name").as_deref() == Some(job)
        })
        .filter_map(|(_, metric)| number_points(&metric).last().map(|(_, v)| *v))
        .last()
}

fn scrape_job(job: &str, addr: &str) -> String {
    format!(
        "        - job_name: {job}\n          scrape_interval: 1s\n          static_configs:\n            - targets: [\"{addr}\"]\n"
    )
}

#[test]
fn sidecar_flags_gomaxprocs_and_gomemlimit_within_two_scrapes_and_not_a_fitting_service() {
    let tree = CgroupTree::new("sidecar");
    tree.pod(POD_TIGHT, "100000 100000", &(512 * MIB).to_string());
    // client_golang's default collectors (goapp -mode metrics: prometheus.NewGoCollector()).
    let misfit = Service::start(
        "metrics",
        &[("GOMAXPROCS", "8"), ("GOMEMLIMIT", "off")],
        &[],
    );
    let fitting = Service::start(
        "metrics",
        &[("GOMAXPROCS", "1"), ("GOMEMLIMIT", "400MiB")],
        &[],
    );
    let capture = Capture::start();
    let config = format!(
        "receivers:
  prometheus:
    config:
      scrape_configs:
{misfit_job}{fitting_job}
  cgroup:
    collection_interval: 1s
    root_path: {root}
    paths: [/kubepods/pod{POD_TIGHT}]
processors:
  gofit:
{exporter}
service:
  telemetry: {{metrics: {{level: none}}}}
  pipelines:
    metrics: {{receivers: [cgroup, prometheus], processors: [gofit], exporters: [otlphttp]}}
",
        misfit_job = scrape_job("misfit", &misfit.addr),
        fitting_job = scrape_job("fitting", &fitting.addr),
        root = tree.root.display(),
        exporter = capture.exporter_yaml(),
    );
    let mut oxcol = oxcol(&config);
    let enough = wait_for(Duration::from_secs(20), || {
        (scrapes(&capture, "misfit").len() >= 5 && scrapes(&capture, "fitting").len() >= 5)
            .then_some(())
    });
    assert!(
        enough.is_some(),
        "five scrapes of each did not arrive:\n{}",
        oxcol.stop_and_log()
    );
    let log = oxcol.stop_and_log();
    let reports = finding_reports(&capture);

    // Both findings by the second scrape of the misfit (the first may come before the
    // first cgroup read), and from then on in every scrape.
    let misfit_reports: Vec<&Vec<(String, f64)>> = reports
        .iter()
        .filter(|(service, _)| service == "misfit")
        .map(|(_, f)| f)
        .collect();
    let misfit_scrapes = scrapes(&capture, "misfit").len();
    assert!(
        misfit_reports.len() + 1 >= misfit_scrapes,
        "{} of {misfit_scrapes} misfit scrapes got findings",
        misfit_reports.len()
    );
    for (i, findings) in misfit_reports.iter().enumerate() {
        for finding in ["gomaxprocs_above_cpu_limit", "gomemlimit_unset"] {
            assert_eq!(
                value_of(findings, finding),
                Some(1.0),
                "report {i}: {findings:?}\n{log}"
            );
        }
        for finding in [
            "gomemlimit_above_memory_limit",
            "gomemlimit_too_close_to_memory_limit",
        ] {
            assert_eq!(
                value_of(findings, finding),
                Some(0.0),
                "report {i}: {findings:?}"
            );
        }
    }
    assert_eq!(
        last_input(&capture, "misfit", "go.runtime.fit.gomaxprocs"),
        Some(8.0)
    );
    assert_eq!(
        last_input(&capture, "misfit", "go.runtime.fit.cpu_limit"),
        Some(1.0)
    );
    assert_eq!(
        last_input(&capture, "misfit", "go.runtime.fit.memory_limit"),
        Some((512 * MIB) as f64)
    );
    assert_eq!(
        last_input(&capture, "misfit", "go.runtime.fit.gomemlimit"),
        None
    );

    // No false positive: every finding of the fitting service is 0, in every scrape.
    let fitting_reports: Vec<&Vec<(String, f64)>> = reports
        .iter()
        .filter(|(service, _)| service == "fitting")
        .map(|(_, f)| f)
        .collect();
    assert!(fitting_reports.len() >= 4, "{fitting_reports:?}");
    for findings in &fitting_reports {
        // The four GOMAXPROCS/GOMEMLIMIT findings, plus cpu_throttled once the (still)
        // cpu.stat has been read twice.
        assert!(findings.len() >= 4, "{findings:?}");
        assert!(findings.iter().all(|(_, v)| *v == 0.0), "{findings:?}");
    }
    assert_eq!(
        last_input(&capture, "fitting", "go.runtime.fit.gomemlimit"),
        Some((400 * MIB) as f64)
    );

    // Logged once each, with the numbers and the fix.
    let gomaxprocs_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("gomaxprocs_above_cpu_limit"))
        .collect();
    assert_eq!(gomaxprocs_lines.len(), 1, "{log}");
    assert!(
        gomaxprocs_lines[0].contains("GOMAXPROCS=8 but the container may use 1 CPU")
            && gomaxprocs_lines[0].contains("set GOMAXPROCS=1")
            && gomaxprocs_lines[0].contains("misfit"),
        "{}",
        gomaxprocs_lines[0]
    );
    let gomemlimit_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("gomemlimit_unset"))
        .collect();
    assert_eq!(gomemlimit_lines.len(), 1, "{log}");
    assert!(
        gomemlimit_lines[0].contains("512MiB (536870912)")
            && gomemlimit_lines[0].contains("set GOMEMLIMIT="),
        "{}",
        gomemlimit_lines[0]
    );
    assert!(
        !log.lines().any(|l| l.contains("service=fitting")),
        "nothing is logged for the fitting service:\n{log}"
    );
}

#[test]
fn gc_and_throttling_findings_hold_and_clear_when_the_cause_goes() {
    let tree = CgroupTree::new("load");
    let pod = tree.pod(POD_TIGHT, "200000 100000", &(512 * MIB).to_string());
    // A GC-heavy service: pointer-rich live heap churned with GOGC=10.
    let service = Service::start(
        "gofit",
        &[
            ("GOMAXPROCS", "2"),
            ("GOMEMLIMIT", "400MiB"),
            ("GOGC", "10"),
        ],
        &["-churn"],
    );
    // CFS throttling: half the periods throttled while `throttling` is on.
    let throttling = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (throttling, stop, pod) = (Arc::clone(&throttling), Arc::clone(&stop), pod.clone());
        std::thread::spawn(move || {
            let (mut periods, mut throttled) = (1000u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                periods += 10;
                if throttling.load(Ordering::Relaxed) {
                    throttled += 5;
                }
                write_cpu_stat(&pod, periods, throttled);
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let capture = Capture::start();
    let config = format!(
        "receivers:
  prometheus:
    config:
      scrape_configs:
{job}
  cgroup:
    collection_interval: 1s
    root_path: {root}
    paths: [/kubepods/pod{POD_TIGHT}]
processors:
  gofit:
{exporter}
service:
  telemetry: {{metrics: {{level: none}}}}
  pipelines:
    metrics: {{receivers: [cgroup, prometheus], processors: [gofit], exporters: [otlphttp]}}
",
        job = scrape_job("churner", &service.addr),
        root = tree.root.display(),
        exporter = capture.exporter_yaml(),
    );
    let mut oxcol = oxcol(&config);
    let latest = |finding: &str| {
        finding_reports(&capture)
            .iter()
            .rev()
            .find_map(|(_, findings)| value_of(findings, finding))
    };
    let both_hold = wait_for(Duration::from_secs(30), || {
        (latest("gc_cpu_high") == Some(1.0) && latest("cpu_throttled") == Some(1.0)).then_some(())
    });
    assert!(
        both_hold.is_some(),
        "gc_cpu_high {:?} (GC share {:?}), cpu_throttled {:?}:\n{}",
        latest("gc_cpu_high"),
        last_input(&capture, "churner", "go.runtime.fit.gc_cpu_share"),
        latest("cpu_throttled"),
        oxcol.stop_and_log()
    );
    let share = last_input(&capture, "churner", "go.runtime.fit.cpu_throttled_share");
    assert!(
        share.is_some_and(|s| s > 0.3 && s < 0.7),
        "throttled share {share:?}"
    );
    assert_eq!(latest("gomaxprocs_above_cpu_limit"), Some(0.0));

    // The causes go: the allocation stops, the throttling stops.
    let (status, _) = http_get(&service.addr, "/load?churn=0").expect("goapp answers /load");
    assert_eq!(status, 200);
    throttling.store(false, Ordering::Relaxed);
    let both_clear = wait_for(Duration::from_secs(30), || {
        (latest("gc_cpu_high") == Some(0.0) && latest("cpu_throttled") == Some(0.0)).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    assert!(
        both_clear.is_some(),
        "gc_cpu_high {:?} (GC share {:?}), cpu_throttled {:?}:\n{}",
        latest("gc_cpu_high"),
        last_input(&capture, "churner", "go.runtime.fit.gc_cpu_share"),
        latest("cpu_throttled"),
        oxcol.stop_and_log()
    );
    let log = oxcol.stop_and_log();
    let started = log
        .lines()
        .filter(|l| l.contains("finding=\"gc_cpu_high\"") && !l.contains("cleared:"))
        .count();
    assert_eq!(started, 1, "{log}");
    assert!(log.contains("of CFS periods were throttled"), "{log}");
}

#[test]
fn node_agent_puts_findings_on_the_service_of_the_right_pod() {
    let tree = CgroupTree::new("node");
    tree.pod(POD_TIGHT, "100000 100000", &(512 * MIB).to_string());
    tree.pod(POD_ROOMY, "max 100000", "max");
    // The same runtime settings in both: only the pod's limits differ.
    let env = [("GOMAXPROCS", "8"), ("GOMEMLIMIT", "off")];
    let tight = Service::start("metrics", &env, &[]);
    let roomy = Service::start("metrics", &env, &[]);
    let capture = Capture::start();
    // On a real node `k8sattributes` puts k8s.pod.uid on the scraped resources; here a
    // transform does, by job.
    let config = format!(
        "receivers:
  prometheus:
    config:
      scrape_configs:
{tight_job}{roomy_job}
  cgroup:
    collection_interval: 1s
    root_path: {root}
    discovery:
      include: [\"kubepods/*\"]
processors:
  transform:
    metric_statements:
      - context: resource
        statements:
          - set(attributes[\"k8s.pod.uid\"], \"{POD_TIGHT}\") where attributes[\"service.name\"] == \"tight\"
          - set(attributes[\"k8s.pod.uid\"], \"{POD_ROOMY}\") where attributes[\"service.name\"] == \"roomy\"
  gofit:
    join_on: [k8s.pod.uid]
{exporter}
service:
  telemetry: {{metrics: {{level: none}}}}
  pipelines:
    metrics: {{receivers: [cgroup, prometheus], processors: [transform, gofit], exporters: [otlphttp]}}
",
        tight_job = scrape_job("tight", &tight.addr),
        roomy_job = scrape_job("roomy", &roomy.addr),
        root = tree.root.display(),
        exporter = capture.exporter_yaml(),
    );
    let mut oxcol = oxcol(&config);
    let enough = wait_for(Duration::from_secs(20), || {
        let reports = finding_reports(&capture);
        let count = |job: &str| reports.iter().filter(|(s, _)| s == job).count();
        (count("tight") >= 3 && count("roomy") >= 3).then_some(())
    });
    assert!(
        enough.is_some(),
        "findings for both services did not arrive:\n{}",
        oxcol.stop_and_log()
    );
    let reports = finding_reports(&capture);
    for (service, findings) in &reports {
        let expected = if service == "tight" { 1.0 } else { 0.0 };
        assert_eq!(
            value_of(findings, "gomaxprocs_above_cpu_limit"),
            Some(expected),
            "{service}: {findings:?}"
        );
        assert_eq!(
            value_of(findings, "gomemlimit_unset"),
            Some(expected),
            "{service}: {findings:?}"
        );
    }
    assert_eq!(
        last_input(&capture, "tight", "go.runtime.fit.cpu_limit"),
        Some(1.0)
    );
    assert_eq!(
        last_input(&capture, "roomy", "go.runtime.fit.cpu_limit"),
        None
    );
    assert_eq!(
        last_input(&capture, "roomy", "go.runtime.fit.memory_limit"),
        None
    );
    // Nothing lands on the cgroups' own resources.
    assert!(
        reports
            .iter()
            .all(|(service, _)| service == "tight" || service == "roomy")
    );
}
