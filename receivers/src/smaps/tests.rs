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
    let kv = rm
        .resource
        .as_ref()?
        .attributes
        .iter()
        .find(|kv| kv.key == "process.pid")?;
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
    let mut child = Command::new("python3")
        .args(["-c", program, marker])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is installed (test dependency)");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("child prints ready");
    assert_eq!(line.trim(), "ready");
    Guard(child)
}

#[test]
fn config_defaults_and_validation() {
    let config = Config::default();
    assert_eq!(config.collection_interval.get(), Duration::from_secs(10));
    assert_eq!(config.proc_path, Path::new("/proc"));
    assert!(config.reads_self() && config.validate().is_empty());
    assert!(
        !Config {
            all: true,
            ..Config::default()
        }
        .reads_self()
    );
    assert!(!config.detailed && config.top_files == 10);
    assert!(
        Config {
            detailed: true,
            top_files: 1000,
            ..Config::default()
        }
        .validate()
        .is_empty()
    );
    let bad = Config {
        proc_path: "proc".into(),
        names: vec!["(".into()],
        top_files: 1001,
        self_process: Some(false),
        ..Config::default()
    };
    let errors = bad.validate();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[2].contains("top_files"), "{errors:?}");
    assert!(
        Config {
            self_process: Some(false),
            ..Config::default()
        }
        .validate()[0]
            .contains("no process selected")
    );
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
    assert!(
        resource_attr(rm, "process.creation.time")
            .is_some_and(|t| t.starts_with("20") && t.ends_with('Z'))
    );
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
    for config in [
        Config {
            pids: vec![pid],
            ..Config::default()
        },
        Config {
            cmdline: vec![regex::escape(&marker)],
            ..Config::default()
        },
    ] {
        let mut collector = Collector::new("smaps", &config, &registry);
        let out = collector.collect(std::time::SystemTime::now());
        assert_eq!(out.len(), 1, "only the child is selected");
        let rm = &out[0];
        assert_eq!(pid_of(rm), Some(i64::from(pid)));
        let anon = value(rm, "process.smaps.anonymous", &[]).unwrap();
        let pss_anon = value(rm, "process.smaps.pss_anon", &[]).unwrap();
        // 64 MiB touched, plus the interpreter's own heap (a few MiB).
        assert!(
            (64.0 * MIB..64.0 * MIB + 40.0 * MIB).contains(&anon),
            "anonymous {}",
            anon / MIB
        );
        assert!(
            (64.0 * MIB..64.0 * MIB + 40.0 * MIB).contains(&pss_anon),
            "pss_anon {}",
            pss_anon / MIB
        );
        assert!(value(rm, "process.smaps.rss", &[]).unwrap() >= anon);
    }
    // The child exits: an explicitly selected pid is skipped and counted, the scrape goes on.
    let mut collector = Collector::new(
        "smaps/gone",
        &Config {
            pids: vec![pid],
            self_process: Some(true),
            ..Config::default()
        },
        &registry,
    );
    let _ = child.0.kill();
    let _ = child.0.wait();
    let out = collector.collect(std::time::SystemTime::now());
    assert_eq!(out.len(), 1, "oxcol itself is still read");
    assert_eq!(pid_of(&out[0]), Some(i64::from(std::process::id())));
    assert!(
        registry
            .render_prometheus()
            .contains("oxcol_smaps_skipped_processes{receiver=\"smaps/gone\",reason=\"exited\"} 1")
    );
}

/// A fixture /proc: identity (pid reuse), names and cgroup selection, top-N.
#[test]
fn fixture_proc_identity_and_selection() {
    let proc = std::env::temp_dir().join(format!("oxcol-smaps-proc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&proc);
    std::fs::create_dir_all(&proc).unwrap();
    std::fs::write(
        proc.join("stat"),
        "cpu  1 2 3\nbtime 1700000000\nprocesses 10\n",
    )
    .unwrap();
    let write_process = |pid: u32, comm: &str, starttime: u64, rss_kib: u64, cgroup: &str| {
        let dir = proc.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stat"), format!("{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 {starttime} 1000 10 18446744073709551615\n")).unwrap();
        std::fs::write(
            dir.join("statm"),
            format!("1000 {} 10 1 0 100 0\n", rss_kib / 4),
        )
        .unwrap();
        std::fs::write(dir.join("cgroup"), format!("0::{cgroup}\n")).unwrap();
        std::fs::write(dir.join("cmdline"), format!("/usr/bin/{comm}\0--flag\0")).unwrap();
        std::fs::write(dir.join("smaps_rollup"), format!("00400000-7fff00000000 ---p 00000000 00:00 0 [rollup]\nRss: {rss_kib} kB\nPss: {} kB\nPss_Anon: {} kB\nSwap: 0 kB\n", rss_kib / 2, rss_kib / 4)).unwrap();
    };
    write_process(
        100,
        "api server",
        500,
        4096,
        "/kubepods.slice/pod-a.slice/cri-containerd-1.scope",
    );
    write_process(200, "worker", 900, 1024, "/system.slice/worker.service");
    write_process(300, "worker", 950, 8192, "/kubepods.slice/pod-b.slice");
    let registry = Registry::new();
    let base = Config {
        proc_path: proc.clone(),
        self_process: Some(false),
        ..Config::default()
    };

    let mut by_name = Collector::new(
        "smaps",
        &Config {
            names: vec!["^worker$".into()],
            ..base.clone()
        },
        &registry,
    );
    let out = by_name.collect(UNIX_EPOCH + Duration::from_secs(1_700_001_000));
    let pids: Vec<i64> = out.iter().filter_map(pid_of).collect();
    assert_eq!(pids, [200, 300]);
    assert_eq!(
        value(&out[0], "process.smaps.rss", &[]),
        Some(1024.0 * 1024.0)
    );
    assert_eq!(
        value(&out[0], "process.smaps.pss_anon", &[]),
        Some(256.0 * 1024.0)
    );
    // starttime 900 ticks after btime 1700000000 = 1700000009.
    assert_eq!(
        resource_attr(&out[0], "process.creation.time"),
        Some("2023-11-14T22:13:29Z")
    );

    let mut by_cgroup = Collector::new(
        "smaps",
        &Config {
            cgroups: vec!["/kubepods.slice".into()],
            ..base.clone()
        },
        &registry,
    );
    let pids: Vec<i64> = by_cgroup
        .collect(UNIX_EPOCH)
        .iter()
        .filter_map(pid_of)
        .collect();
    assert_eq!(pids, [100, 300]);
    let mut not_a_prefix = Collector::new(
        "smaps",
        &Config {
            cgroups: vec!["/kubepods".into()],
            ..base.clone()
        },
        &registry,
    );
    assert!(
        not_a_prefix.collect(UNIX_EPOCH).is_empty(),
        "/kubepods is not /kubepods.slice"
    );

    let mut top = Collector::new(
        "smaps",
        &Config {
            all: true,
            top: 2,
            ..base.clone()
        },
        &registry,
    );
    let out = top.collect(UNIX_EPOCH);
    let pids: Vec<i64> = out.iter().filter_map(pid_of).collect();
    assert_eq!(pids, [100, 300], "the two largest by statm resident pages");
    assert_eq!(
        out[0]
            .resource
            .as_ref()
            .map(|r| attr(&r.attributes, "process.executable.name")),
        Some(Some("api server"))
    );

    // pid 200 exits and the pid is reused by a new process: new identity.
    let mut by_pid = Collector::new(
        "smaps",
        &Config {
            pids: vec![200],
            ..base.clone()
        },
        &registry,
    );
    let before =
        resource_attr(&by_pid.collect(UNIX_EPOCH)[0], "process.creation.time").map(str::to_string);
    write_process(200, "worker", 123_456, 1024, "/");
    let after =
        resource_attr(&by_pid.collect(UNIX_EPOCH)[0], "process.creation.time").map(str::to_string);
    assert_ne!(before, after);
    // Unreadable smaps_rollup (a directory here): skipped and counted, never a panic.
    std::fs::remove_file(proc.join("200/smaps_rollup")).unwrap();
    std::fs::create_dir(proc.join("200/smaps_rollup")).unwrap();
    assert!(by_pid.collect(UNIX_EPOCH).is_empty());
    assert!(
        registry
            .render_prometheus()
            .contains("oxcol_smaps_skipped_processes{receiver=\"smaps\",reason=\"io\"} 1")
    );
    let _ = std::fs::remove_dir_all(&proc);
}

#[test]
fn rfc3339_dates() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_009), "2023-11-14T22:13:29Z");
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/smaps")
            .join(name),
    )
    .unwrap()
}

fn rollup_field(rollup: &[u8], name: &[u8]) -> u64 {
    let mut found = None;
    parse::for_each_rollup_field(rollup, |field, bytes| {
        if field == name {
            found = Some(bytes);
        }
    });
    found.unwrap_or_else(|| panic!("{} not in the rollup", String::from_utf8_lossy(name)))
}

/// Checks a breakdown of full smaps against the smaps_rollup of the same process: Rss
/// and Swap sum exactly (whole pages), Pss is short by less than 1 KiB per mapping (each
/// mapping's Pss is truncated to a KiB, the rollup's sum is truncated once).
fn assert_matches_rollup(breakdown: &detailed::Breakdown, rollup: &[u8], slack: u64) {
    let sum = |f: fn(&detailed::ClassTotals) -> u64| breakdown.classes.iter().map(f).sum::<u64>();
    let mappings = sum(|t| t.count);
    let (rss, pss, swap) = (
        rollup_field(rollup, b"Rss"),
        rollup_field(rollup, b"Pss"),
        rollup_field(rollup, b"Swap"),
    );
    assert!(
        sum(|t| t.rss).abs_diff(rss) <= slack,
        "Rss {} vs rollup {rss}",
        sum(|t| t.rss)
    );
    assert!(
        sum(|t| t.swap).abs_diff(swap) <= slack,
        "Swap {} vs rollup {swap}",
        sum(|t| t.swap)
    );
    let detailed_pss = sum(|t| t.pss);
    assert!(
        detailed_pss <= pss + slack && pss < detailed_pss + mappings * 1024 + slack,
        "Pss {detailed_pss} vs rollup {pss} ({mappings} mappings)"
    );
}

#[test]
fn detailed_breakdown_of_recorded_smaps_matches_their_rollup() {
    let mut breakdown = detailed::Breakdown::default();
    let class = |b: &detailed::Breakdown, c: parse::MappingClass| b.classes[c.index()];
    use parse::MappingClass::*;

    let smaps = fixture("sleep-glibc.smaps");
    breakdown.parse(&smaps, 3);
    assert_matches_rollup(&breakdown, &fixture("sleep-glibc.smaps_rollup"), 0);
    assert_eq!(
        class(&breakdown, Heap),
        detailed::ClassTotals {
            rss: 16 << 10,
            pss: 16 << 10,
            swap: 0,
            count: 1
        }
    );
    assert_eq!(
        class(&breakdown, Stack),
        detailed::ClassTotals {
            rss: 16 << 10,
            pss: 16 << 10,
            swap: 0,
            count: 1
        }
    );
    assert_eq!(
        class(&breakdown, File),
        detailed::ClassTotals {
            rss: 1744 << 10,
            pss: 149 << 10,
            swap: 0,
            count: 28
        }
    );
    assert_eq!(
        class(&breakdown, Anonymous),
        detailed::ClassTotals {
            rss: 32 << 10,
            pss: 32 << 10,
            swap: 0,
            count: 3
        }
    );
    assert_eq!(
        class(&breakdown, Vdso).count,
        4,
        "[vvar], [vvar_vclock], [vdso], [vsyscall]"
    );
    assert_eq!(class(&breakdown, Shmem).count, 0);
    // libc's five segments are one file; the top three by Pss, largest first.
    let files: Vec<(&[u8], u64, u64)> = breakdown
        .files
        .iter()
        .map(|f| (&smaps[f.path.clone()], f.pss >> 10, f.rss >> 10))
        .collect();
    assert_eq!(
        files,
        [
            (&b"/usr/lib/x86_64-linux-gnu/libc.so.6"[..], 69, 1288),
            (&b"/usr/bin/sleep"[..], 44, 44),
            (
                &b"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"[..],
                23,
                212
            )
        ]
    );
    breakdown.parse(&smaps, 0);
    assert!(breakdown.files.is_empty());
    breakdown.parse(&smaps, 1000);
    assert_eq!(breakdown.files.len(), 16, "every distinct file once");

    let smaps = fixture("go-static.smaps");
    breakdown.parse(&smaps, 10);
    assert_matches_rollup(&breakdown, &fixture("go-static.smaps_rollup"), 0);
    assert_eq!(
        class(&breakdown, Shmem),
        detailed::ClassTotals {
            rss: 1024 << 10,
            pss: 1024 << 10,
            swap: 0,
            count: 1
        }
    );
    assert_eq!(
        class(&breakdown, Heap).count,
        0,
        "a static Go binary has no brk heap"
    );
    assert_eq!(class(&breakdown, Anonymous).pss, 9240 << 10);
    let paths: Vec<&[u8]> = breakdown
        .files
        .iter()
        .map(|f| &smaps[f.path.clone()])
        .collect();
    assert_eq!(
        paths,
        [
            &b"/tmp/w4/gofix/fixture"[..],
            b"/dev/shm/oxcol-smaps-fixture"
        ]
    );
}

/// A file mapped in two places that are not adjacent is still one entry.
#[test]
fn detailed_merges_a_file_mapped_twice() {
    let smaps = b"00400000-00401000 r--p 00000000 fe:00 1 /data/a\nRss: 4 kB\nPss: 4 kB\n\
00401000-00402000 rw-p 00000000 00:00 0 \nRss: 4 kB\nPss: 4 kB\n\
00500000-00510000 r--s 00000000 fe:00 2 /data/b\nRss: 64 kB\nPss: 8 kB\n\
00600000-00601000 r--p 00001000 fe:00 1 /data/a\nRss: 8 kB\nPss: 8 kB\nSwap: 4 kB\n";
    let mut breakdown = detailed::Breakdown::default();
    breakdown.parse(smaps, 1);
    assert_eq!(
        breakdown.files,
        [detailed::FileEntry {
            path: 40..47,
            pss: 12 << 10,
            rss: 12 << 10
        }]
    );
    assert_eq!(&smaps[40..47], b"/data/a");
    assert_eq!(
        breakdown.classes[parse::MappingClass::File.index()].swap,
        4 << 10
    );
}

/// A child with known mappings: 64 MiB of touched anonymous memory, 8 MiB in /dev/shm,
/// 4 MiB in a memfd, read through the collector with `detailed: true`.
#[test]
fn detailed_live_child_by_class_and_against_its_rollup() {
    let marker = format!("oxcol-smaps-detailed-{}", std::process::id());
    let shm = format!("/dev/shm/{marker}");
    let program = format!(
        "import mmap, os, sys, time\nb = bytearray(64 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n\
f = open('{shm}', 'w+b'); f.truncate(8 << 20); s = mmap.mmap(f.fileno(), 8 << 20)\nfor i in range(0, 8 << 20, 4096): s[i] = 1\n\
fd = os.memfd_create('oxcol-test'); os.ftruncate(fd, 4 << 20); m = mmap.mmap(fd, 4 << 20)\nfor i in range(0, 4 << 20, 4096): m[i] = 1\n\
print('ready', flush=True)\ntime.sleep(60)\n"
    );
    let mut child = Command::new("python3")
        .args(["-c", &program, &marker])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is installed (test dependency)");
    let stdout = child.stdout.take().expect("piped stdout");
    let guard = Guard(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("child prints ready");
    let _ = std::fs::remove_file(&shm);
    assert_eq!(line.trim(), "ready");
    let pid = guard.0.id();

    let registry = Registry::new();
    let mut collector = Collector::new(
        "smaps",
        &Config {
            pids: vec![pid],
            detailed: true,
            top_files: 5,
            ..Config::default()
        },
        &registry,
    );
    let out = collector.collect(std::time::SystemTime::now());
    assert_eq!(out.len(), 1);
    let rm = &out[0];
    let class = |name: &str, c: &str| {
        value(rm, name, &[("mapping.class", c)]).unwrap_or_else(|| panic!("{name}{{{c}}} missing"))
    };
    assert!(
        class("process.smaps.mapping.pss", "anonymous")
            + class("process.smaps.mapping.pss", "heap")
            >= 64.0 * MIB
    );
    assert!(
        (12.0 * MIB..13.0 * MIB).contains(&class("process.smaps.mapping.rss", "shmem")),
        "{}",
        class("process.smaps.mapping.rss", "shmem") / MIB
    );
    assert!(
        class("process.smaps.mapping.rss", "file") > 0.0
            && class("process.smaps.mapping.count", "vdso") >= 1.0
    );
    assert!(class("process.smaps.mapping.count", "stack") == 1.0);
    assert_eq!(unit(rm, "process.smaps.mapping.count"), Some("{mapping}"));
    assert!(
        is_gauge(rm, "process.smaps.mapping.pss")
            && unit(rm, "process.smaps.mapping.pss") == Some("By")
    );
    // The shm file (deleted by now) and the memfd are among the top files by Pss.
    let shm_path = format!("{shm} (deleted)");
    assert_eq!(
        value(rm, "process.smaps.file.pss", &[("file.path", &shm_path)]),
        Some(8.0 * MIB)
    );
    assert_eq!(
        value(
            rm,
            "process.smaps.file.rss",
            &[("file.path", "/memfd:oxcol-test (deleted)")]
        ),
        Some(4.0 * MIB)
    );
    let files =
        crate::cgroup::emit::lookup::find(rm, "process.smaps.file.pss").map(|m| match &m.data {
            Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Gauge(g)) => {
                g.data_points.len()
            }
            _ => 0,
        });
    assert_eq!(files, Some(5));
    // The rollup totals are still there, and the classes add up to them. Pss of shared
    // library pages moves when other processes map or unmap them between the two reads
    // (builds run beside this test): retry a few times.
    assert!(value(rm, "process.smaps.pss_anon", &[]).is_some());
    let mut last = String::new();
    for _ in 0..5 {
        let rollup = std::fs::read(format!("/proc/{pid}/smaps_rollup")).unwrap();
        let smaps = std::fs::read(format!("/proc/{pid}/smaps")).unwrap();
        let mut breakdown = detailed::Breakdown::default();
        breakdown.parse(&smaps, 0);
        match std::panic::catch_unwind(|| assert_matches_rollup(&breakdown, &rollup, 0)) {
            Ok(()) => return,
            Err(e) => last = e.downcast_ref::<String>().cloned().unwrap_or_default(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("detailed totals never matched the rollup: {last}");
}

/// `detailed` on a fixture /proc: the recorded smaps of `sleep` as one process's.
#[test]
fn detailed_fixture_proc_points() {
    let proc =
        std::env::temp_dir().join(format!("oxcol-smaps-detailed-proc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&proc);
    std::fs::create_dir_all(proc.join("42")).unwrap();
    std::fs::write(proc.join("stat"), "btime 1700000000\n").unwrap();
    std::fs::write(
        proc.join("42/stat"),
        "42 (sleep) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 100 1000 10 1\n",
    )
    .unwrap();
    std::fs::write(
        proc.join("42/smaps_rollup"),
        fixture("sleep-glibc.smaps_rollup"),
    )
    .unwrap();
    std::fs::write(proc.join("42/smaps"), fixture("sleep-glibc.smaps")).unwrap();
    std::fs::create_dir_all(proc.join("43")).unwrap();
    std::fs::write(
        proc.join("43/stat"),
        "43 (gone) S 1 43 43 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 100 1000 10 1\n",
    )
    .unwrap();
    std::fs::write(
        proc.join("43/smaps_rollup"),
        fixture("go-static.smaps_rollup"),
    )
    .unwrap();
    let registry = Registry::new();
    let base = Config {
        proc_path: proc.clone(),
        pids: vec![42, 43],
        self_process: Some(false),
        detailed: true,
        ..Config::default()
    };
    let out = Collector::new("smaps", &base, &registry).collect(UNIX_EPOCH);
    assert_eq!(out.len(), 2);
    let rm = &out[0];
    assert_eq!(
        value(
            rm,
            "process.smaps.mapping.pss",
            &[("mapping.class", "heap")]
        ),
        Some(16.0 * 1024.0)
    );
    assert_eq!(
        value(
            rm,
            "process.smaps.mapping.rss",
            &[("mapping.class", "file")]
        ),
        Some(1744.0 * 1024.0)
    );
    assert_eq!(
        value(
            rm,
            "process.smaps.mapping.swap",
            &[("mapping.class", "shmem")]
        ),
        Some(0.0),
        "every class is emitted, zeros too"
    );
    assert_eq!(
        value(
            rm,
            "process.smaps.file.pss",
            &[("file.path", "/usr/lib/x86_64-linux-gnu/libc.so.6")]
        ),
        Some(69.0 * 1024.0)
    );
    assert_eq!(
        value(rm, "process.smaps.rss", &[]),
        Some(1812.0 * 1024.0),
        "the rollup metrics are unchanged"
    );
    // pid 43 has no smaps file: its rollup metrics are kept, the failure is counted.
    assert_eq!(
        value(&out[1], "process.smaps.rss", &[]),
        Some(11788.0 * 1024.0)
    );
    assert_eq!(
        value(
            &out[1],
            "process.smaps.mapping.pss",
            &[("mapping.class", "heap")]
        ),
        None
    );
    assert!(
        registry
            .render_prometheus()
            .contains("oxcol_smaps_detailed_read_errors{receiver=\"smaps\"} 1")
    );
    let out = Collector::new(
        "smaps",
        &Config {
            top_files: 0,
            ..base.clone()
        },
        &registry,
    )
    .collect(UNIX_EPOCH);
    assert!(crate::cgroup::emit::lookup::find(&out[0], "process.smaps.file.pss").is_none());
    assert!(
        value(
            &out[0],
            "process.smaps.mapping.count",
            &[("mapping.class", "vdso")]
        ) == Some(4.0)
    );
    let out = Collector::new(
        "smaps",
        &Config {
            detailed: false,
            ..base
        },
        &registry,
    )
    .collect(UNIX_EPOCH);
    assert!(crate::cgroup::emit::lookup::find(&out[0], "process.smaps.mapping.pss").is_none());
    let _ = std::fs::remove_dir_all(&proc);
}

#[test]
fn clock_ticks_come_from_sysconf() {
    let ticks = crate::cgroup::emit::clock_ticks_per_second();
    let getconf = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    assert_eq!(Some(ticks), getconf.or(Some(100)));
}

/// A fixture /proc with a process in a pod (cgroup v1, systemd driver, containerd) and
/// one outside Kubernetes: only the first gets `k8s.pod.uid` and `container.id`.
#[test]
fn pod_uid_and_container_id_from_the_process_cgroup() {
    let proc = std::env::temp_dir().join(format!("oxcol-smaps-k8s-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&proc);
    let id = "0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6";
    let pod = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7c1a9e2b_3d4f_4a5b_8c6d_9e0f1a2b3c4d.slice/cri-containerd-{id}.scope"
    );
    for (pid, cgroup) in [
        (
            410,
            format!("12:memory:{pod}\n11:pids:{pod}\n1:name=systemd:{pod}\n0::/\n"),
        ),
        (420, "0::/system.slice/containerd.service\n".to_string()),
    ] {
        let dir = proc.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stat"), format!("{pid} (app) S 1 {pid} {pid} 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 100 1000 10 18446744073709551615\n")).unwrap();
        std::fs::write(dir.join("cgroup"), cgroup).unwrap();
        std::fs::write(
            dir.join("smaps_rollup"),
            "00400000-7fff00000000 ---p 00000000 00:00 0 [rollup]\nRss: 100 kB\nPss: 50 kB\n",
        )
        .unwrap();
    }
    let mut collector = Collector::new(
        "smaps",
        &Config {
            proc_path: proc.clone(),
            pids: vec![410, 420],
            ..Config::default()
        },
        &Registry::new(),
    );
    let out = collector.collect(UNIX_EPOCH);
    let pids: Vec<i64> = out.iter().filter_map(pid_of).collect();
    assert_eq!(pids, [410, 420]);
    assert_eq!(
        resource_attr(&out[0], "k8s.pod.uid"),
        Some("7c1a9e2b-3d4f-4a5b-8c6d-9e0f1a2b3c4d")
    );
    assert_eq!(resource_attr(&out[0], "container.id"), Some(id));
    assert_eq!(resource_attr(&out[1], "k8s.pod.uid"), None);
    assert_eq!(resource_attr(&out[1], "container.id"), None);
    // The attributes are kept with the identity: a second scrape has them too.
    let again = collector.collect(UNIX_EPOCH);
    assert_eq!(resource_attr(&again[0], "container.id"), Some(id));
    let _ = std::fs::remove_dir_all(&proc);
}

/// The scrape loop as it was before the rollup metrics were written as protobuf
/// directly (issue 18): selection shared, then the `ResourceBuilder` object model per
/// process. Kept as the reference the encoded output must equal.
fn reference_collect(c: &mut Collector, now: std::time::SystemTime) -> Vec<ResourceMetrics> {
    let now_nanos = unix_nanos(now);
    let selected = c.select();
    let comms = std::mem::take(&mut c.comms);
    let mut metric_names: Vec<(Box<[u8]>, String)> = Vec::new();
    let mut out = Vec::new();
    for Selected {
        pid,
        comm,
        ppid,
        starttime,
    } in selected
    {
        let ticks = c.clock_ticks;
        let start_seconds = c.boot_time_seconds + starttime / ticks;
        let start_nanos = start_seconds
            .saturating_mul(1_000_000_000)
            .saturating_add((starttime % ticks).saturating_mul(1_000_000_000) / ticks);
        let mut builder = ResourceBuilder::new(
            now_nanos,
            start_nanos,
            if c.config.detailed { 32 } else { 24 },
        );
        let filled = match c.read(pid, "smaps_rollup") {
            Ok(data) => data.len(),
            Err(_) => continue,
        };
        parse::for_each_rollup_field(&c.buffer[..filled], |field, bytes| {
            let index = match metric_names.iter().position(|(f, _)| &**f == field) {
                Some(i) => i,
                None => {
                    metric_names.push((
                        field.into(),
                        format!("process.smaps.{}", parse::snake_case(field)),
                    ));
                    metric_names.len() - 1
                }
            };
            builder.gauge_int(
                &metric_names[index].1,
                "By",
                i64::try_from(bytes).unwrap_or(i64::MAX),
                &[],
            );
        });
        if builder.is_empty() {
            continue;
        }
        if c.config.detailed
            && let Ok(data) = c.read(pid, "smaps")
        {
            let filled = data.len();
            c.breakdown.parse(&c.buffer[..filled], c.config.top_files);
            c.breakdown.emit(&c.buffer[..filled], &mut builder);
        }
        let attributes = c.resource_attributes(pid, ppid, &comms[comm], start_seconds);
        out.push(builder.finish(attributes, SCOPE));
    }
    c.comms = comms;
    out
}

/// Scrapes twice (the second with the field heads and resources already encoded) with
/// the encoded writer and the reference builder; `Err` with the difference if the
/// decoded output, the bytes or the point count differ. Returns the resources.
fn compare_with_reference(config: &Config, now: std::time::SystemTime) -> Result<usize, String> {
    let registry = Registry::new();
    let mut reference = Collector::new("reference", config, &registry);
    let mut encoded = Collector::new("encoded", config, &registry);
    let mut resources = 0;
    for scrape in 0..2 {
        let expected = reference_collect(&mut reference, now);
        let got = encoded.collect_encoded(now);
        let decoded = ExportMetricsServiceRequest::decode(got.bytes.clone())
            .map_err(|e| format!("scrape {scrape}: the output does not decode: {e}"))?
            .resource_metrics;
        if decoded != expected {
            return Err(format!(
                "scrape {scrape}: decoded output differs:\n{decoded:#?}\nreference:\n{expected:#?}"
            ));
        }
        let reference_bytes = ExportMetricsServiceRequest {
            resource_metrics: expected.clone(),
        }
        .encode_to_vec();
        if got.bytes[..] != reference_bytes[..] {
            return Err(format!(
                "scrape {scrape}: decodes equal but the bytes differ from prost's"
            ));
        }
        let points = oxcol_core::Batch::from_metrics(expected).items();
        if got.points != points {
            return Err(format!(
                "scrape {scrape}: {} points counted, {points} in the output",
                got.points
            ));
        }
        resources = decoded.len();
    }
    Ok(resources)
}

/// A fixture /proc for the reference comparison: the two recorded rollups (one with
/// its recorded full smaps, one without), and hand-written rollups with what the
/// encoder must handle like the builder: a field repeated on consecutive lines, two
/// spellings of one metric name in a row, zeros, a value that saturates, fields in
/// another order, an unknown field, no fields at all (a kernel thread), a zombie, and
/// a process in a Kubernetes pod (resource attributes from its cgroup).
fn reference_fixture_proc(test: &str) -> std::path::PathBuf {
    let proc = std::env::temp_dir().join(format!(
        "oxcol-smaps-encode-proc-{test}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&proc);
    std::fs::create_dir_all(&proc).unwrap();
    std::fs::write(proc.join("stat"), "btime 1700000000\n").unwrap();
    let header = "00400000-7fff00000000 ---p 00000000 00:00 0 [rollup]\n";
    // pid, comm, state, smaps_rollup, full smaps.
    type Process<'a> = (u32, &'a str, char, Vec<u8>, Option<Vec<u8>>);
    let processes: [Process; 7] = [
        (
            42,
            "sleep",
            'S',
            fixture("sleep-glibc.smaps_rollup"),
            Some(fixture("sleep-glibc.smaps")),
        ),
        (
            43,
            "go static",
            'S',
            fixture("go-static.smaps_rollup"),
            None,
        ),
        (
            44,
            "odd",
            'R',
            format!(
                "{header}Rss: 10 kB\nRss: 11 kB\nPss_Anon: 0 kB\nPssAnon: 3 kB\nPss_Anon: 4 kB\nHuge: 18446744073709551615 kB\nBig: 9007199254740992 kB\nNew_Field: 7 kB\nTHPeligible: 0\nRss: 12 kB\n"
            )
            .into_bytes(),
            Some(fixture("go-static.smaps")),
        ),
        (
            45,
            "reordered",
            'S',
            format!("{header}Swap: 1 kB\nPss: 2 kB\nRss: 3 kB\nLocked: 0 kB\n").into_bytes(),
            None,
        ),
        (46, "kthread", 'S', Vec::new(), None),
        (
            47,
            "zombie",
            'Z',
            format!("{header}Rss: 1 kB\n").into_bytes(),
            None,
        ),
        (
            48,
            "in a pod",
            'S',
            fixture("sleep-glibc.smaps_rollup"),
            None,
        ),
    ];
    for (pid, comm, state, rollup, smaps) in processes {
        let dir = proc.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("stat"),
            format!("{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 {} 1000 10 1\n", 100 + 37 * u64::from(pid)),
        )
        .unwrap();
        std::fs::write(dir.join("smaps_rollup"), rollup).unwrap();
        if let Some(smaps) = smaps {
            std::fs::write(dir.join("smaps"), smaps).unwrap();
        }
        let cgroup = if pid == 48 {
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b7c3c2e_6f1a_4d2b_9c8e_1a2b3c4d5e6f.slice/cri-containerd-4c0e1b5d7f2a9e3c6b8d0a1f2e3d4c5b6a7980e1d2c3b4a5968778695a4b3c2d.scope\n"
        } else {
            "0::/system.slice/x.service\n"
        };
        std::fs::write(dir.join("cgroup"), cgroup).unwrap();
    }
    proc
}

#[test]
fn encoded_output_matches_reference_builder_on_fixtures() {
    let proc = reference_fixture_proc("reference");
    let base = Config {
        proc_path: proc.clone(),
        self_process: Some(false),
        all: true,
        ..Config::default()
    };
    let configs = [
        base.clone(),
        Config {
            detailed: true,
            ..base.clone()
        },
        Config {
            detailed: true,
            top_files: 0,
            ..base.clone()
        },
        Config {
            all: false,
            pids: vec![48, 44, 4_000_000],
            ..base.clone()
        },
    ];
    for config in &configs {
        for now in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::from_nanos(1_700_000_123_456_789_012),
        ] {
            // 42, 43, 44, 45 and 48 have fields; the kernel thread and the zombie none.
            let expected = if config.all { 5 } else { 2 };
            match compare_with_reference(config, now) {
                Ok(resources) => assert_eq!(resources, expected, "{config:?}"),
                Err(difference) => panic!("{config:?} at {now:?}: {difference}"),
            }
        }
    }
    // The fixtures exercise what they claim: a merged repeat, a saturated value.
    let out = Collector::new("smaps", &configs[3], &Registry::new()).collect(UNIX_EPOCH);
    let odd = out.iter().find(|rm| pid_of(rm) == Some(44)).unwrap();
    let rss = crate::cgroup::emit::lookup::find(odd, "process.smaps.rss").unwrap();
    assert_eq!(oxcol_core::batch::metric_points(rss), 2);
    assert_eq!(value(odd, "process.smaps.huge", &[]), Some(i64::MAX as f64));
    let _ = std::fs::remove_dir_all(&proc);
}

#[test]
fn encoded_output_matches_reference_builder_on_a_live_child() {
    let child = Command::new("sleep")
        .arg("60")
        .stdout(Stdio::null())
        .spawn()
        .expect("sleep is installed");
    let child = Guard(child);
    let pid = child.0.id();
    // The child must have exec'd sleep (its rollup is then stable).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).map_or(true, |c| c.trim() != "sleep")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "child never became sleep"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for detailed in [false, true] {
        let config = Config {
            pids: vec![pid],
            self_process: Some(false),
            detailed,
            ..Config::default()
        };
        // The reference and the encoder read the files at different times: retry if a
        // value moved in between.
        let mut last = String::new();
        let matched =
            (0..20).any(
                |_| match compare_with_reference(&config, std::time::SystemTime::now()) {
                    Ok(resources) => {
                        assert_eq!(resources, 1);
                        true
                    }
                    Err(difference) => {
                        last = difference;
                        std::thread::sleep(Duration::from_millis(20));
                        false
                    }
                },
            );
        assert!(matched, "detailed: {detailed}: {last}");
    }
}

/// Through the scrape loop: the smaps scraper's encoded output reaches the pipeline as
/// one encoded batch (not decoded on the way), counted by its points, and decodes to
/// what `collect` gives.
#[tokio::test]
async fn scraper_delivers_the_encoded_batch() {
    let proc = reference_fixture_proc("scraper");
    let config = Config {
        proc_path: proc.clone(),
        self_process: Some(false),
        all: true,
        ..Config::default()
    };
    let registry = Arc::new(Registry::new());
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<oxcol_core::Envelope>(8);
    let mut consumers = oxcol_core::Consumers::new();
    consumers.add(
        oxcol_core::Signal::Metrics,
        oxcol_core::PipelineInput {
            pipeline: "metrics".into(),
            sender,
            admissions: vec![],
        },
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = crate::scraper::spawn(
        "smaps",
        Duration::from_secs(3600),
        SmapsScraper::new("smaps", &config, &registry),
        consumers,
        &registry,
        shutdown.clone(),
    );
    let envelope = tokio::time::timeout(Duration::from_secs(10), receiver.recv())
        .await
        .expect("a scrape within 10 s")
        .expect("a batch");
    let _ = envelope.ack.send(Ok(()));
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    let mut batch = envelope.batch;
    assert!(
        matches!(batch.data(), oxcol_core::Data::Encoded(segments) if segments.len() == 1),
        "delivered encoded"
    );
    let items = batch.items();
    batch.recount();
    assert_eq!(items, batch.items(), "the point count is the batch's");
    let delivered = batch.metrics_mut().expect("metrics").clone();
    let expected = Collector::new("smaps", &config, &Registry::new()).collect(UNIX_EPOCH);
    assert_eq!(delivered.len(), 5);
    assert_eq!(delivered.len(), expected.len());
    for (got, want) in delivered.iter().zip(&expected) {
        assert_eq!(got.resource, want.resource);
        let names = |rm: &ResourceMetrics| -> Vec<String> {
            rm.scope_metrics[0]
                .metrics
                .iter()
                .map(|m| m.name.clone())
                .collect()
        };
        assert_eq!(names(got), names(want));
    }
    let _ = std::fs::remove_dir_all(&proc);
}
