//! Live tests on this machine's /proc (a child that allocates a known amount of
//! anonymous memory) and a fixture /proc tree for identity and selection.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use oxcol_core::telemetry::Registry;

use super::*;
use crate::cgroup::emit::lookup::{attr, is_gauge, resource_attr, unit, value};

const MIB: f64 = 1024.0 * 1024.0;

fn pid_of(rm: &ResourceMetrics) -> Option<i64> {
    let kv = rm.resource.as_ref()?.attributes.iter().find(|kv| kv.key == "process.pid")?;
    match kv.value.as_ref()?.value.as_ref()? {
        opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

/// Kills the child on drop, so a failing assertion leaves nothing behind.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A python3 child that allocates and touches 64 MiB of anonymous memory, then sleeps.
fn spawn_allocator(marker: &str) -> Guard {
    let program = "import sys, time\nb = bytearray(64 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('ready', flush=True)\ntime.sleep(60)\n";
    let mut child = Command::new("python3").args(["-c", program, marker]).stdout(Stdio::piped()).spawn().expect("python3 is installed (test dependency)");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).expect("child prints ready");
    assert_eq!(line.trim(), "ready");
    Guard(child)
}

#[test]
fn config_defaults_and_validation() {
    let config = Config::default();
    assert_eq!(config.collection_interval.get(), Duration::from_secs(10));
    assert_eq!(config.proc_path, Path::new("/proc"));
    assert!(config.reads_self() && config.validate().is_empty());
    assert!(!Config { all: true, ..Config::default() }.reads_self());
    let bad = Config { proc_path: "proc".into(), names: vec!["(".into()], detailed: true, self_process: Some(false), ..Config::default() };
    let errors = bad.validate();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(Config { self_process: Some(false), ..Config::default() }.validate()[0].contains("no process selected"));
}

#[test]
fn self_is_read_with_semantic_convention_attributes() {
    let registry = Registry::new();
    let mut collector = Collector::new("smaps", &Config::default(), &registry);
    let out = collector.collect(std::time::SystemTime::now());
    assert_eq!(out.len(), 1);
    let rm = &out[0];
    assert_eq!(pid_of(rm), Some(i64::from(std::process::id())));
    assert!(resource_attr(rm, "process.executable.name").is_some_and(|n| !n.is_empty()));
    assert!(resource_attr(rm, "process.owner").is_some());
    assert!(resource_attr(rm, "process.creation.time").is_some_and(|t| t.starts_with("20") && t.ends_with('Z')));
    assert!(value(rm, "process.smaps.rss", &[]).unwrap() > MIB);
    assert!(value(rm, "process.smaps.pss", &[]).unwrap() > 0.0);
    assert!(value(rm, "process.smaps.private_dirty", &[]).is_some());
    assert!(value(rm, "process.smaps.swap", &[]).is_some());
    assert!(is_gauge(rm, "process.smaps.rss") && unit(rm, "process.smaps.rss") == Some("By"));
}

#[test]
fn live_child_anon_memory_shows_up_and_its_exit_is_handled() {
    let marker = format!("oxcol-smaps-test-{}", std::process::id());
    let mut child = spawn_allocator(&marker);
    let pid = child.0.id();
    let registry = Registry::new();
    // Selected two ways: by pid, and by a cmdline regex (a listing of /proc).
    for config in [Config { pids: vec![pid], ..Config::default() }, Config { cmdline: vec![regex::escape(&marker)], ..Config::default() }] {
        let mut collector = Collector::new("smaps", &config, &registry);
        let out = collector.collect(std::time::SystemTime::now());
        assert_eq!(out.len(), 1, "only the child is selected");
        let rm = &out[0];
        assert_eq!(pid_of(rm), Some(i64::from(pid)));
        let anon = value(rm, "process.smaps.anonymous", &[]).unwrap();
        let pss_anon = value(rm, "process.smaps.pss_anon", &[]).unwrap();
        // 64 MiB touched, plus the interpreter's own heap (a few MiB).
        assert!((64.0 * MIB..64.0 * MIB + 40.0 * MIB).contains(&anon), "anonymous {}", anon / MIB);
        assert!((64.0 * MIB..64.0 * MIB + 40.0 * MIB).contains(&pss_anon), "pss_anon {}", pss_anon / MIB);
        assert!(value(rm, "process.smaps.rss", &[]).unwrap() >= anon);
    }
    // The child exits: an explicitly selected pid is skipped and counted, the scrape goes on.
    let mut collector = Collector::new("smaps/gone", &Config { pids: vec![pid], self_process: Some(true), ..Config::default() }, &registry);
    let _ = child.0.kill();
    let _ = child.0.wait();
    let out = collector.collect(std::time::SystemTime::now());
    assert_eq!(out.len(), 1, "oxcol itself is still read");
    assert_eq!(pid_of(&out[0]), Some(i64::from(std::process::id())));
    assert!(registry.render_prometheus().contains("oxcol_smaps_skipped_processes{receiver=\"smaps/gone\",reason=\"exited\"} 1"));
}

/// A fixture /proc: identity (pid reuse), names and cgroup selection, top-N.
#[test]
fn fixture_proc_identity_and_selection() {
    let proc = std::env::temp_dir().join(format!("oxcol-smaps-proc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&proc);
    std::fs::create_dir_all(&proc).unwrap();
    std::fs::write(proc.join("stat"), "cpu  1 2 3\nbtime 1700000000\nprocesses 10\n").unwrap();
    let write_process = |pid: u32, comm: &str, starttime: u64, rss_kib: u64, cgroup: &str| {
        let dir = proc.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stat"), format!("{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 {starttime} 1000 10 18446744073709551615\n")).unwrap();
        std::fs::write(dir.join("statm"), format!("1000 {} 10 1 0 100 0\n", rss_kib / 4)).unwrap();
        std::fs::write(dir.join("cgroup"), format!("0::{cgroup}\n")).unwrap();
        std::fs::write(dir.join("cmdline"), format!("/usr/bin/{comm}\0--flag\0")).unwrap();
        std::fs::write(dir.join("smaps_rollup"), format!("00400000-7fff00000000 ---p 00000000 00:00 0 [rollup]\nRss: {rss_kib} kB\nPss: {} kB\nPss_Anon: {} kB\nSwap: 0 kB\n", rss_kib / 2, rss_kib / 4)).unwrap();
    };
    write_process(100, "api server", 500, 4096, "/kubepods.slice/pod-a.slice/cri-containerd-1.scope");
    write_process(200, "worker", 900, 1024, "/system.slice/worker.service");
    write_process(300, "worker", 950, 8192, "/kubepods.slice/pod-b.slice");
    let registry = Registry::new();
    let base = Config { proc_path: proc.clone(), self_process: Some(false), ..Config::default() };

    let mut by_name = Collector::new("smaps", &Config { names: vec!["^worker$".into()], ..base.clone() }, &registry);
    let out = by_name.collect(UNIX_EPOCH + Duration::from_secs(1_700_001_000));
    let pids: Vec<i64> = out.iter().filter_map(pid_of).collect();
    assert_eq!(pids, [200, 300]);
    assert_eq!(value(&out[0], "process.smaps.rss", &[]), Some(1024.0 * 1024.0));
    assert_eq!(value(&out[0], "process.smaps.pss_anon", &[]), Some(256.0 * 1024.0));
    // starttime 900 ticks after btime 1700000000 = 1700000009.
    assert_eq!(resource_attr(&out[0], "process.creation.time"), Some("2023-11-14T22:13:29Z"));

    let mut by_cgroup = Collector::new("smaps", &Config { cgroups: vec!["/kubepods.slice".into()], ..base.clone() }, &registry);
    let pids: Vec<i64> = by_cgroup.collect(UNIX_EPOCH).iter().filter_map(pid_of).collect();
    assert_eq!(pids, [100, 300]);
    let mut not_a_prefix = Collector::new("smaps", &Config { cgroups: vec!["/kubepods".into()], ..base.clone() }, &registry);
    assert!(not_a_prefix.collect(UNIX_EPOCH).is_empty(), "/kubepods is not /kubepods.slice");

    let mut top = Collector::new("smaps", &Config { all: true, top: 2, ..base.clone() }, &registry);
    let out = top.collect(UNIX_EPOCH);
    let pids: Vec<i64> = out.iter().filter_map(pid_of).collect();
    assert_eq!(pids, [100, 300], "the two largest by statm resident pages");
    assert_eq!(out[0].resource.as_ref().map(|r| attr(&r.attributes, "process.executable.name")), Some(Some("api server")));

    // pid 200 exits and the pid is reused by a new process: new identity.
    let mut by_pid = Collector::new("smaps", &Config { pids: vec![200], ..base.clone() }, &registry);
    let before = resource_attr(&by_pid.collect(UNIX_EPOCH)[0], "process.creation.time").map(str::to_string);
    write_process(200, "worker", 123_456, 1024, "/");
    let after = resource_attr(&by_pid.collect(UNIX_EPOCH)[0], "process.creation.time").map(str::to_string);
    assert_ne!(before, after);
    // Unreadable smaps_rollup (a directory here): skipped and counted, never a panic.
    std::fs::remove_file(proc.join("200/smaps_rollup")).unwrap();
    std::fs::create_dir(proc.join("200/smaps_rollup")).unwrap();
    assert!(by_pid.collect(UNIX_EPOCH).is_empty());
    assert!(registry.render_prometheus().contains("oxcol_smaps_skipped_processes{receiver=\"smaps\",reason=\"io\"} 1"));
    let _ = std::fs::remove_dir_all(&proc);
}

#[test]
fn rfc3339_dates() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_009), "2023-11-14T22:13:29Z");
}
