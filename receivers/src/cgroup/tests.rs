//! Fixture trees (receivers/tests/fixtures/cgroup/, kernel 6.x file formats) for the
//! three layouts a node agent meets, plus this machine's real hybrid hierarchy.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use oxcol_core::telemetry::Registry;

use super::emit::lookup::{is_gauge, is_monotonic_sum, resource_attr, unit, value};
use super::locate::{self, Version};
use super::*;

const CID: &str = "4c0e1b5d7f2a9e3c6b8d0a1f2e3d4c5b6a7980e1d2c3b4a5968778695a4b3c2d";
const UID: &str = "0b7c3c2e-6f1a-4d2b-9c8e-1a2b3c4d5e6f";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cgroup")
        .join(name)
}

fn node_config(root: &str, include: &[&str], exclude: &[&str]) -> Config {
    Config {
        root_path: fixture(root),
        self_cgroup: Some(false),
        discovery: Discovery {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            max_depth: 8,
        },
        ..Config::default()
    }
}

fn scrape(config: &Config) -> (Vec<ResourceMetrics>, std::sync::Arc<Registry>) {
    let registry = Registry::new();
    let mut collector = Collector::new("cgroup", config, &registry);
    let out = collector.collect(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    (out, registry)
}

fn by_path<'a>(out: &'a [ResourceMetrics], path: &str) -> &'a ResourceMetrics {
    out.iter()
        .find(|rm| resource_attr(rm, "cgroup.path") == Some(path))
        .unwrap_or_else(|| panic!("no resource for {path}"))
}

fn v(rm: &ResourceMetrics, name: &str) -> f64 {
    value(rm, name, &[]).unwrap_or_else(|| panic!("{name} missing"))
}

#[test]
fn config_defaults_and_validation() {
    let config = Config::default();
    assert_eq!(config.collection_interval.get(), Duration::from_secs(10));
    assert_eq!(config.root_path, Path::new("/sys/fs/cgroup"));
    assert!(config.reads_self());
    assert!(config.validate().is_empty());
    let with_discovery = node_config("v2-systemd", &["kubepods.slice/**"], &[]);
    assert!(
        !Config {
            self_cgroup: None,
            ..with_discovery.clone()
        }
        .reads_self()
    );
    let bad = Config {
        collection_interval: GoDuration::from_secs(0),
        root_path: PathBuf::from("relative"),
        self_cgroup: Some(false),
        paths: vec!["../etc".into()],
        discovery: Discovery {
            include: vec!["/".into()],
            exclude: vec![],
            max_depth: 0,
        },
    };
    let errors = bad.validate();
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert!(
        Config {
            self_cgroup: Some(false),
            ..Config::default()
        }
        .validate()[0]
            .contains("nothing to read")
    );
}

#[test]
fn v2_systemd_driver_kubepods() {
    let config = node_config("v2-systemd", &["kubepods.slice/**"], &["**/crio-conmon-*"]);
    let (out, registry) = scrape(&config);
    let paths: Vec<&str> = out
        .iter()
        .filter_map(|rm| resource_attr(rm, "cgroup.path"))
        .collect();
    let pod = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
        UID.replace('-', "_")
    );
    let container = format!("{pod}/cri-containerd-{CID}.scope");
    assert_eq!(paths.len(), 5, "{paths:?}");
    assert!(paths.contains(&container.as_str()) && paths.contains(&pod.as_str()));
    assert!(!paths.iter().any(|p| p.contains("conmon")
        || p.starts_with("/system.slice")
        || *p == "/kubepods.slice"));

    let rm = by_path(&out, &container);
    assert_eq!(resource_attr(rm, "cgroup.version"), Some("2"));
    assert_eq!(resource_attr(rm, "k8s.pod.uid"), Some(UID));
    assert_eq!(resource_attr(rm, "k8s.pod.qos_class"), Some("Burstable"));
    assert_eq!(resource_attr(rm, "container.id"), Some(CID));
    assert_eq!(resource_attr(rm, "container.runtime"), Some("containerd"));

    // Values as written in the fixture files.
    assert_eq!(v(rm, "cgroup.memory.current"), 157_286_400.0);
    assert_eq!(v(rm, "cgroup.memory.max"), 268_435_456.0);
    assert_eq!(
        value(rm, "cgroup.memory.high", &[]),
        None,
        "`max` is an absent metric, never 0"
    );
    assert_eq!(value(rm, "cgroup.memory.swap.max", &[]), None);
    assert_eq!(v(rm, "cgroup.memory.low"), 0.0);
    assert_eq!(v(rm, "cgroup.memory.peak"), 157_286_400.0 + 50_331_648.0);
    assert_eq!(v(rm, "cgroup.memory.stat.anon"), 113_246_208.0);
    assert_eq!(v(rm, "cgroup.memory.stat.file"), 41_943_040.0);
    assert_eq!(v(rm, "cgroup.memory.stat.inactive_file"), 41_943_040.0);
    assert_eq!(
        v(rm, "cgroup.memory.working_set"),
        157_286_400.0 - 41_943_040.0
    );
    assert_eq!(v(rm, "cgroup.memory.stat.pgmajfault"), 4.0);
    assert_eq!(v(rm, "cgroup.memory.stat.pgfault"), 1017.0);
    assert!(
        is_gauge(rm, "cgroup.memory.stat.anon")
            && unit(rm, "cgroup.memory.stat.anon") == Some("By")
    );
    assert!(
        is_monotonic_sum(rm, "cgroup.memory.stat.pgfault")
            && unit(rm, "cgroup.memory.stat.pgfault") == Some("1")
    );
    assert!(is_monotonic_sum(
        rm,
        "cgroup.memory.stat.workingset_refault_file"
    ));
    assert!(is_monotonic_sum(rm, "cgroup.memory.stat.thp_fault_alloc"));
    assert!(is_gauge(rm, "cgroup.memory.stat.slab_reclaimable"));
    // Every memory.stat field of the file is a metric.
    let stat = std::fs::read_to_string(
        fixture("v2-systemd")
            .join(&container[1..])
            .join("memory.stat"),
    )
    .unwrap();
    for line in stat.lines() {
        let field = line.split(' ').next().unwrap();
        assert!(
            value(rm, &format!("cgroup.memory.stat.{field}"), &[]).is_some(),
            "memory.stat {field} not emitted"
        );
    }
    assert_eq!(
        value(rm, "cgroup.memory.events", &[("event", "oom_kill")]),
        Some(1.0)
    );
    assert_eq!(
        value(rm, "cgroup.memory.events", &[("event", "max")]),
        Some(12.0)
    );
    assert_eq!(
        value(rm, "cgroup.memory.events", &[("event", "high")]),
        Some(4.0)
    );
    assert_eq!(
        value(rm, "cgroup.memory.events.local", &[("event", "oom")]),
        Some(1.0)
    );
    assert!(is_monotonic_sum(rm, "cgroup.memory.events"));

    // PSI: total µs -> seconds (sum), avg percent -> ratio (gauge).
    assert_eq!(
        value(
            rm,
            "cgroup.pressure.stall_time",
            &[("resource", "memory"), ("kind", "some")]
        ),
        Some(1_000_003.0 / 1e6)
    );
    assert_eq!(
        value(
            rm,
            "cgroup.pressure.stall_time",
            &[("resource", "cpu"), ("kind", "full")]
        ),
        Some(2.000003)
    );
    assert_eq!(
        value(
            rm,
            "cgroup.pressure.avg",
            &[("resource", "cpu"), ("kind", "some"), ("window", "10s")]
        ),
        Some(0.124)
    );
    assert_eq!(
        value(
            rm,
            "cgroup.pressure.avg",
            &[("resource", "memory"), ("kind", "full"), ("window", "300s")]
        ),
        Some(0.0005)
    );
    assert_eq!(unit(rm, "cgroup.pressure.stall_time"), Some("s"));
    assert!(
        is_monotonic_sum(rm, "cgroup.pressure.stall_time") && is_gauge(rm, "cgroup.pressure.avg")
    );

    // cpu.stat µs -> seconds; counts stay counts; cpu.max in cores.
    assert_eq!(v(rm, "cgroup.cpu.stat.usage"), 8.123456);
    assert_eq!(v(rm, "cgroup.cpu.stat.throttled"), 1.234567);
    assert_eq!(v(rm, "cgroup.cpu.stat.nr_throttled"), 42.0);
    assert_eq!(v(rm, "cgroup.cpu.max"), 0.5);
    assert_eq!(
        value(rm, "cgroup.io.stat.rbytes", &[("device", "259:0")]),
        Some(1_048_576.0)
    );
    assert_eq!(
        value(rm, "cgroup.io.stat.wios", &[("device", "259:0")]),
        Some(1024.0)
    );
    assert_eq!(
        value(rm, "cgroup.io.stat.rbytes", &[("device", "8:0")]),
        Some(4096.0)
    );
    assert_eq!(v(rm, "cgroup.pids.current"), 17.0);
    assert_eq!(v(rm, "cgroup.pids.max"), 4096.0);
    // Newer v2 files: swap peak/high/events, zswap, pids peak/events, irq PSI.
    assert_eq!(v(rm, "cgroup.memory.swap.peak"), 4_194_304.0);
    assert_eq!(value(rm, "cgroup.memory.swap.high", &[]), None, "`max`");
    assert_eq!(
        value(rm, "cgroup.memory.swap.events", &[("event", "fail")]),
        Some(3.0)
    );
    assert_eq!(
        value(rm, "cgroup.memory.swap.events", &[("event", "high")]),
        Some(0.0)
    );
    assert!(
        is_monotonic_sum(rm, "cgroup.memory.swap.events")
            && unit(rm, "cgroup.memory.swap.events") == Some("1")
    );
    assert_eq!(v(rm, "cgroup.memory.zswap.current"), 0.0);
    assert_eq!(value(rm, "cgroup.memory.zswap.max", &[]), None);
    assert_eq!(v(rm, "cgroup.pids.peak"), 23.0);
    assert!(is_gauge(rm, "cgroup.pids.peak"));
    assert_eq!(
        value(rm, "cgroup.pids.events", &[("event", "max")]),
        Some(0.0)
    );
    assert!(is_monotonic_sum(rm, "cgroup.pids.events"));
    assert_eq!(
        value(
            rm,
            "cgroup.pressure.stall_time",
            &[("resource", "irq"), ("kind", "full")]
        ),
        Some(4.000007)
    );
    assert_eq!(
        value(
            rm,
            "cgroup.pressure.stall_time",
            &[("resource", "irq"), ("kind", "some")]
        ),
        None,
        "irq.pressure has only `full`"
    );
    assert_eq!(
        value(
            rm,
            "cgroup.pressure.avg",
            &[("resource", "irq"), ("kind", "full"), ("window", "10s")]
        ),
        Some(0.005)
    );
    // A kernel without these files (the second container): nothing, and no error.
    let older = out
        .iter()
        .find(|rm| resource_attr(rm, "container.id").is_some_and(|id| id.starts_with("9f8e")))
        .unwrap();
    assert_eq!(value(older, "cgroup.pids.peak", &[]), None);
    assert_eq!(
        value(
            older,
            "cgroup.pressure.stall_time",
            &[("resource", "irq"), ("kind", "full")]
        ),
        None
    );

    // The second container: unlimited memory.max -> absent; even seed -> cpu.max max.
    let rm2 = out
        .iter()
        .find(|rm| resource_attr(rm, "container.id").is_some_and(|id| id.starts_with("9f8e")))
        .unwrap();
    assert_eq!(value(rm2, "cgroup.memory.max", &[]), None);
    assert_eq!(value(rm2, "cgroup.cpu.max", &[]), None);
    assert_eq!(value(rm2, "cgroup.pids.max", &[]), None);

    // Guaranteed pod: inactive_file > current clamps the working set at 0.
    let guaranteed = by_path(
        &out,
        "/kubepods.slice/kubepods-pod11111111_2222_3333_4444_555555555555.slice",
    );
    assert_eq!(
        resource_attr(guaranteed, "k8s.pod.qos_class"),
        Some("Guaranteed")
    );
    assert_eq!(v(guaranteed, "cgroup.memory.working_set"), 0.0);
    assert!(
        !registry
            .render_prometheus()
            .lines()
            .any(|l| l.starts_with("oxcol_cgroup_read_errors") && !l.ends_with(" 0")),
        "no read errors on a complete tree"
    );
}

#[test]
fn v2_root_cgroup_has_no_memory_files_and_that_is_fine() {
    let config = Config {
        root_path: fixture("v2-systemd"),
        self_cgroup: Some(false),
        paths: vec!["/".into(), "system.slice/containerd.service".into()],
        ..Config::default()
    };
    let (out, registry) = scrape(&config);
    let root = by_path(&out, "/");
    assert_eq!(value(root, "cgroup.memory.current", &[]), None);
    assert_eq!(value(root, "cgroup.memory.working_set", &[]), None);
    assert_eq!(v(root, "cgroup.cpu.stat.usage"), 987_654.321);
    let service = by_path(&out, "/system.slice/containerd.service");
    assert_eq!(resource_attr(service, "k8s.pod.uid"), None);
    assert_eq!(
        v(service, "cgroup.memory.working_set"),
        83_886_080.0 - 10_485_760.0
    );
    assert_eq!(
        value(service, "cgroup.cpu.stat.nr_periods", &[]),
        None,
        "cpu controller off: no bandwidth stats"
    );
    assert!(
        registry
            .render_prometheus()
            .contains("oxcol_cgroup_read_errors{receiver=\"cgroup\",reason=\"vanished\"} 0")
    );
}

#[test]
fn v2_cgroupfs_driver_kubepods() {
    let (out, _) = scrape(&node_config("v2-cgroupfs", &["kubepods/**"], &[]));
    assert_eq!(out.len(), 4);
    let container = by_path(&out, &format!("/kubepods/besteffort/pod{UID}/{CID}"));
    assert_eq!(resource_attr(container, "k8s.pod.uid"), Some(UID));
    assert_eq!(
        resource_attr(container, "k8s.pod.qos_class"),
        Some("BestEffort")
    );
    assert_eq!(resource_attr(container, "container.id"), Some(CID));
    assert_eq!(resource_attr(container, "container.runtime"), None);
    assert_eq!(
        v(container, "cgroup.memory.working_set"),
        157_286_400.0 - 41_943_040.0
    );
    let guaranteed = by_path(&out, "/kubepods/pod11111111-2222-3333-4444-555555555555");
    assert_eq!(
        resource_attr(guaranteed, "k8s.pod.qos_class"),
        Some("Guaranteed")
    );
    assert_eq!(v(guaranteed, "cgroup.memory.max"), 134_217_728.0);
    assert_eq!(
        value(guaranteed, "cgroup.memory.events", &[("event", "max")]),
        Some(3.0)
    );
    assert_eq!(v(container, "cgroup.memory.swap.high"), 536_870_912.0);
    assert_eq!(v(container, "cgroup.memory.swap.peak"), 1_048_576.0);
    assert_eq!(v(container, "cgroup.memory.zswap.max"), 268_435_456.0);
    assert_eq!(
        value(container, "cgroup.memory.swap.events", &[("event", "high")]),
        Some(7.0)
    );
    assert_eq!(
        value(container, "cgroup.pids.events", &[("event", "max")]),
        Some(5.0)
    );
    assert_eq!(v(container, "cgroup.pids.peak"), 4096.0);
    assert_eq!(
        value(
            container,
            "cgroup.pressure.stall_time",
            &[("resource", "irq"), ("kind", "full")]
        ),
        Some(12e-6)
    );
    // max_depth bounds the walk: depth 2 sees kubepods/besteffort and kubepods/pod..., not below.
    let mut shallow = node_config("v2-cgroupfs", &["kubepods/**"], &[]);
    shallow.discovery.max_depth = 2;
    assert_eq!(scrape(&shallow).0.len(), 2);
}

#[test]
fn v1_host_maps_to_the_same_names() {
    let (out, _) = scrape(&node_config("v1", &["kubepods/**"], &[]));
    // kubepods/burstable exists but holds no files in the fixture: nothing to emit.
    assert_eq!(out.len(), 2, "the pod and its container");
    let container = by_path(&out, &format!("/kubepods/burstable/pod{UID}/{CID}"));
    assert_eq!(resource_attr(container, "cgroup.version"), Some("1"));
    assert_eq!(resource_attr(container, "container.id"), Some(CID));
    assert_eq!(v(container, "cgroup.memory.current"), 157_286_400.0);
    assert_eq!(v(container, "cgroup.memory.max"), 268_435_456.0);
    assert_eq!(
        v(container, "cgroup.memory.peak"),
        157_286_400.0 + 16_777_216.0
    );
    // total_rss -> anon, total_cache -> file, total_mapped_file -> file_mapped.
    assert_eq!(v(container, "cgroup.memory.stat.anon"), 113_246_208.0);
    assert_eq!(v(container, "cgroup.memory.stat.file"), 41_943_040.0);
    assert_eq!(v(container, "cgroup.memory.stat.file_mapped"), 8_388_608.0);
    assert_eq!(v(container, "cgroup.memory.stat.anon_thp"), 2_097_152.0);
    assert_eq!(v(container, "cgroup.memory.stat.pgmajfault"), 3.0);
    assert!(is_monotonic_sum(container, "cgroup.memory.stat.pgpgin"));
    assert_eq!(
        value(
            container,
            "cgroup.memory.stat.hierarchical_memory_limit",
            &[]
        ),
        None
    );
    assert_eq!(value(container, "cgroup.memory.stat.swap", &[]), None);
    assert_eq!(v(container, "cgroup.memory.swap.current"), 1_048_576.0);
    assert_eq!(
        v(container, "cgroup.memory.working_set"),
        157_286_400.0 - 33_554_432.0
    );
    assert_eq!(
        value(container, "cgroup.memory.events", &[("event", "max")]),
        Some(12.0)
    );
    assert_eq!(
        value(container, "cgroup.memory.events", &[("event", "oom_kill")]),
        Some(1.0)
    );
    // cpuacct ns -> s; v1 cpu.stat throttled_time is ns (v2: µs).
    assert_eq!(v(container, "cgroup.cpu.stat.usage"), 1234.814734725);
    assert_eq!(v(container, "cgroup.cpu.stat.user"), 1000.0);
    assert_eq!(v(container, "cgroup.cpu.stat.throttled"), 1.234567);
    assert_eq!(v(container, "cgroup.cpu.stat.nr_throttled"), 42.0);
    assert_eq!(v(container, "cgroup.cpu.max"), 0.5);
    assert_eq!(
        value(container, "cgroup.io.stat.rbytes", &[("device", "8:0")]),
        Some(1_048_576.0)
    );
    assert_eq!(
        value(container, "cgroup.io.stat.wios", &[("device", "8:0")]),
        Some(1024.0)
    );
    assert_eq!(v(container, "cgroup.pids.current"), 17.0);
    assert_eq!(v(container, "cgroup.pids.max"), 4096.0);
    let pod = by_path(&out, &format!("/kubepods/burstable/pod{UID}"));
    assert_eq!(
        value(pod, "cgroup.memory.max", &[]),
        None,
        "9223372036854771712 is v1's unlimited"
    );
    assert_eq!(
        v(pod, "cgroup.memory.stat.anon"),
        2.0 * 113_246_208.0,
        "hierarchical total_ keys, not local ones"
    );
    assert_eq!(
        value(pod, "cgroup.cpu.max", &[]),
        None,
        "cfs_quota_us -1 is unlimited"
    );
}

/// Kernels before 4.7 have no cpuacct.usage_user/usage_sys: user/system come from
/// cpuacct.stat, in USER_HZ ticks (sysconf(_SC_CLK_TCK)).
#[test]
fn v1_cpuacct_stat_ticks_when_usage_user_is_missing() {
    let temp = std::env::temp_dir().join(format!("oxcol-cgroup-v1-old-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&temp);
    let copy = std::process::Command::new("cp")
        .arg("-r")
        .arg(fixture("v1"))
        .arg(&temp)
        .status()
        .unwrap();
    assert!(copy.success());
    let container = format!("kubepods/burstable/pod{UID}/{CID}");
    for file in ["cpuacct.usage_user", "cpuacct.usage_sys"] {
        std::fs::remove_file(temp.join("cpuacct").join(&container).join(file)).unwrap();
    }
    let config = Config {
        root_path: temp.clone(),
        self_cgroup: Some(false),
        paths: vec![container.clone()],
        ..Config::default()
    };
    let (out, _) = scrape(&config);
    let rm = by_path(&out, &format!("/{container}"));
    let ticks = emit::clock_ticks_per_second() as f64;
    assert_eq!(
        v(rm, "cgroup.cpu.stat.user"),
        100_000.0 / ticks,
        "user 100000 ticks"
    );
    assert_eq!(v(rm, "cgroup.cpu.stat.system"), 23_481.0 / ticks);
    assert_eq!(
        v(rm, "cgroup.cpu.stat.usage"),
        1234.814734725,
        "cpuacct.usage is still ns"
    );
    // With the ns files present, cpuacct.stat is not used.
    let (out, _) = scrape(&node_config("v1", &["kubepods/**"], &[]));
    assert_eq!(
        v(
            by_path(&out, &format!("/{container}")),
            "cgroup.cpu.stat.system"
        ),
        234.814734725
    );
    let _ = std::fs::remove_dir_all(&temp);
}

#[test]
fn vanished_and_unreadable_are_skipped_and_counted() {
    let temp = std::env::temp_dir().join(format!("oxcol-cgroup-vanish-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&temp);
    let cgroup = temp.join("app");
    std::fs::create_dir_all(&cgroup).unwrap();
    std::fs::write(temp.join("cgroup.controllers"), "memory\n").unwrap();
    std::fs::write(cgroup.join("memory.current"), "4096\n").unwrap();
    std::fs::write(cgroup.join("memory.max"), "not a number\n").unwrap();
    // A directory where a file should be: read fails with EISDIR (an io error).
    std::fs::create_dir(cgroup.join("memory.stat")).unwrap();
    let config = Config {
        root_path: temp.clone(),
        self_cgroup: Some(false),
        paths: vec!["/app".into(), "/gone".into()],
        ..Config::default()
    };
    let registry = Registry::new();
    let mut collector = Collector::new("cgroup/t", &config, &registry);
    let out = collector.collect(UNIX_EPOCH);
    assert_eq!(out.len(), 1);
    assert_eq!(v(&out[0], "cgroup.memory.current"), 4096.0);
    assert_eq!(value(&out[0], "cgroup.memory.max", &[]), None);
    let text = registry.render_prometheus();
    assert!(
        text.contains("oxcol_cgroup_read_errors{receiver=\"cgroup/t\",reason=\"vanished\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("oxcol_cgroup_read_errors{receiver=\"cgroup/t\",reason=\"io\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("oxcol_cgroup_read_errors{receiver=\"cgroup/t\",reason=\"parse\"} 1"),
        "{text}"
    );
    // The cgroup vanishes between scrapes: skipped, counted, no panic; and a re-created
    // cgroup of the same name (new inode) restarts its cumulative sums.
    let first_start = collector.known["/app"].start_time_unix_nano;
    std::fs::remove_dir_all(&cgroup).unwrap();
    assert!(
        collector
            .collect(UNIX_EPOCH + Duration::from_secs(10))
            .is_empty()
    );
    std::fs::create_dir_all(&cgroup).unwrap();
    std::fs::write(cgroup.join("memory.current"), "8192\n").unwrap();
    let out = collector.collect(UNIX_EPOCH + Duration::from_secs(20));
    assert_eq!(v(&out[0], "cgroup.memory.current"), 8192.0);
    assert_ne!(collector.known["/app"].start_time_unix_nano, first_start);
    let _ = std::fs::remove_dir_all(&temp);
}

/// This machine: memory on v1, cpu/pressure on the hybrid unified mount.
#[test]
fn live_self_cgroup_on_this_machine() {
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let targets = locate::self_targets(&proc_cgroup, &mountinfo);
    assert!(!targets.is_empty(), "no cgroup found for this process");
    let registry = Registry::new();
    let mut collector =
        Collector::with_self_targets("cgroup", &Config::default(), &registry, targets.clone());
    let out = collector.collect(std::time::SystemTime::now());
    let memory_target = &targets[0];
    let rm = by_path(&out, &memory_target.path);
    let current = v(rm, "cgroup.memory.current");
    assert!(current > 0.0, "this process's cgroup uses memory");
    // Cross-check against the file the kernel exposes for the same cgroup.
    let (file, version) = match memory_target.version {
        Version::V1 => (
            memory_target
                .dirs
                .memory
                .clone()
                .unwrap()
                .join("memory.usage_in_bytes"),
            "1",
        ),
        Version::V2 => (
            memory_target
                .dirs
                .unified
                .clone()
                .unwrap()
                .join("memory.current"),
            "2",
        ),
    };
    let again: f64 = std::fs::read_to_string(file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        (again - current).abs() / current < 0.5,
        "{again} vs {current}"
    );
    assert_eq!(resource_attr(rm, "cgroup.version"), Some(version));
    let ws = v(rm, "cgroup.memory.working_set");
    assert!(ws <= current && ws >= 0.0);
    assert!(v(rm, "cgroup.cpu.stat.usage") > 0.0);
}
