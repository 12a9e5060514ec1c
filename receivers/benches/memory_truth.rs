//! A full scrape of a synthetic node against the bare cost of reading the same files.
//!
//! The node (written to a temp dir once): 500 cgroup v2 container cgroups with every file
//! the cgroup receiver reads (copied from the v2-systemd fixture), and a /proc with 1000
//! processes' `stat`, `smaps_rollup` and full `smaps` (the recorded `sleep` fixture, 37
//! mappings). Each pair of benches reads exactly the same files; the "bare" loops only
//! do open/read/close into a reused buffer: `bare_open_read_close` with `read_to_end`
//! (which also makes a `statx` and an `lseek` per file for its size hint), and
//! `..._no_size_hint` with plain `read` calls until EOF, as both receivers read.
//! `self_process` reads this process's real /proc/self files (the kernel's page walk and
//! formatting included), rollup only vs `detailed: true`.
//! The smaps scrapes are timed as the receiver runs them: `collect_encoded`, the
//! encoded request it hands to the pipelines.
//!
//! Run: `cargo bench -p oxcol-receivers --bench memory_truth`.

use std::hint::black_box;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use criterion::{Criterion, criterion_group, criterion_main};
use oxcol_core::telemetry::Registry;
use oxcol_receivers::{cgroup, smaps};

const CGROUPS: usize = 500;
const PROCESSES: u32 = 1000;

const ROLLUP: &str =
    "564cb973e000-7ffd0096d000 ---p 00000000 00:00 0                          [rollup]
Rss:               81688 kB
Pss:               70278 kB
Pss_Dirty:         64112 kB
Pss_Anon:          64112 kB
Pss_File:           6166 kB
Pss_Shmem:             0 kB
Shared_Clean:      11536 kB
Shared_Dirty:          0 kB
Private_Clean:      6040 kB
Private_Dirty:     64112 kB
Referenced:        81688 kB
Anonymous:         64112 kB
KSM:                   0 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
ShmemPmdMapped:        0 kB
FilePmdMapped:         0 kB
Shared_Hugetlb:        0 kB
Private_Hugetlb:       0 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
";

struct Node {
    root: PathBuf,
    cgroup_paths: Vec<String>,
    cgroup_files: Vec<PathBuf>,
    proc_files: Vec<PathBuf>,
    /// `proc_files` plus each process's full `smaps`.
    detailed_files: Vec<PathBuf>,
}

fn build_node() -> Node {
    let root = std::env::temp_dir().join(format!("oxcol-bench-node-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "tests/fixtures/cgroup/v2-systemd/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b7c3c2e_6f1a_4d2b_9c8e_1a2b3c4d5e6f.slice/cri-containerd-4c0e1b5d7f2a9e3c6b8d0a1f2e3d4c5b6a7980e1d2c3b4a5968778695a4b3c2d.scope",
    );
    let sys = root.join("sys");
    std::fs::create_dir_all(&sys).expect("temp dir");
    std::fs::write(sys.join("cgroup.controllers"), "cpu io memory pids\n").expect("write");
    // The files the receiver reads, so the bare loop reads exactly the same set.
    let read_files = [
        "memory.current",
        "memory.max",
        "memory.high",
        "memory.low",
        "memory.min",
        "memory.peak",
        "memory.swap.current",
        "memory.swap.max",
        "memory.stat",
        "memory.events",
        "memory.events.local",
        "cpu.stat",
        "cpu.max",
        "io.stat",
        "pids.current",
        "pids.max",
        "cpu.pressure",
        "memory.pressure",
        "io.pressure",
        "memory.swap.high",
        "memory.swap.peak",
        "memory.swap.events",
        "memory.zswap.current",
        "memory.zswap.max",
        "pids.peak",
        "pids.events",
        "irq.pressure",
    ];
    let mut cgroup_paths = Vec::new();
    let mut cgroup_files = Vec::new();
    for i in 0..CGROUPS {
        let path = format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{i:08}_0000_0000_0000_000000000000.slice/cri-containerd-{i:064x}.scope"
        );
        let dir = sys.join(&path);
        std::fs::create_dir_all(&dir).expect("cgroup dir");
        for file in read_files {
            std::fs::copy(fixture.join(file), dir.join(file)).expect("fixture file");
            cgroup_files.push(dir.join(file));
        }
        cgroup_paths.push(format!("/{path}"));
    }
    let proc = root.join("proc");
    std::fs::create_dir_all(&proc).expect("proc dir");
    std::fs::write(proc.join("stat"), "btime 1700000000\n").expect("write");
    let mut proc_files = Vec::new();
    let mut detailed_files = Vec::new();
    let smaps = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smaps/sleep-glibc.smaps"),
    )
    .expect("smaps fixture");
    for pid in 1..=PROCESSES {
        let dir = proc.join(pid.to_string());
        std::fs::create_dir_all(&dir).expect("pid dir");
        std::fs::write(dir.join("stat"), format!("{pid} (worker-{pid}) S 1 {pid} {pid} 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 {} 1000 10 1\n", 1000 + pid)).expect("write");
        std::fs::write(dir.join("smaps_rollup"), ROLLUP).expect("write");
        std::fs::write(dir.join("smaps"), &smaps).expect("write");
        proc_files.push(dir.join("stat"));
        proc_files.push(dir.join("smaps_rollup"));
        detailed_files.extend([
            dir.join("stat"),
            dir.join("smaps_rollup"),
            dir.join("smaps"),
        ]);
    }
    Node {
        root,
        cgroup_paths,
        cgroup_files,
        proc_files,
        detailed_files,
    }
}

fn bare_read(files: &[PathBuf], buffer: &mut Vec<u8>) -> usize {
    let mut total = 0;
    for file in files {
        buffer.clear();
        if let Ok(mut f) = std::fs::File::open(file) {
            total += f.read_to_end(buffer).unwrap_or(0);
        }
    }
    total
}

/// As [`bare_read`], with plain `read` calls until EOF into an initialised buffer: no
/// `statx` + `lseek` size hint per file (what `read_to_end` on a `File` adds, useless for
/// procfs files of size 0). The smaps receiver reads this way.
fn bare_read_no_size_hint(files: &[PathBuf], buffer: &mut [u8]) -> usize {
    let mut total = 0;
    for file in files {
        if let Ok(mut f) = std::fs::File::open(file) {
            while let Ok(n) = f.read(buffer) {
                if n == 0 {
                    break;
                }
                total += n;
            }
        }
    }
    total
}

fn benches(c: &mut Criterion) {
    let node = build_node();
    let registry = Registry::new();
    let cgroup_config = cgroup::Config {
        root_path: node.root.join("sys"),
        self_cgroup: Some(false),
        paths: node.cgroup_paths.clone(),
        ..cgroup::Config::default()
    };
    let mut cgroups = cgroup::Collector::new("cgroup", &cgroup_config, &registry);
    let smaps_config = smaps::Config {
        proc_path: node.root.join("proc"),
        self_process: Some(false),
        all: true,
        ..smaps::Config::default()
    };
    let mut processes = smaps::Collector::new("smaps", &smaps_config, &registry);
    let mut detailed = smaps::Collector::new(
        "smaps",
        &smaps::Config {
            detailed: true,
            ..smaps_config.clone()
        },
        &registry,
    );
    let mut buffer = Vec::with_capacity(16 * 1024);
    let mut plain = vec![0u8; 64 * 1024];

    let mut group = c.benchmark_group("node_500_cgroups");
    group.sample_size(20);
    group.bench_function("oxcol_scrape", |b| {
        b.iter(|| black_box(cgroups.collect(SystemTime::now()).len()))
    });
    group.bench_function("bare_open_read_close", |b| {
        b.iter(|| black_box(bare_read(&node.cgroup_files, &mut buffer)))
    });
    group.bench_function("bare_open_read_close_no_size_hint", |b| {
        b.iter(|| black_box(bare_read_no_size_hint(&node.cgroup_files, &mut plain)))
    });
    group.finish();

    let mut group = c.benchmark_group("node_1000_processes");
    group.sample_size(20);
    group.bench_function("oxcol_scrape", |b| {
        b.iter(|| black_box(processes.collect_encoded(SystemTime::now()).points))
    });
    group.bench_function("bare_open_read_close", |b| {
        b.iter(|| black_box(bare_read(&node.proc_files, &mut buffer)))
    });
    group.bench_function("bare_open_read_close_no_size_hint", |b| {
        b.iter(|| black_box(bare_read_no_size_hint(&node.proc_files, &mut plain)))
    });
    group.finish();

    let mut group = c.benchmark_group("node_1000_processes_detailed");
    group.sample_size(20);
    group.bench_function("oxcol_scrape", |b| {
        b.iter(|| black_box(detailed.collect_encoded(SystemTime::now()).points))
    });
    group.bench_function("bare_open_read_close", |b| {
        b.iter(|| black_box(bare_read(&node.detailed_files, &mut buffer)))
    });
    group.bench_function("bare_open_read_close_no_size_hint", |b| {
        b.iter(|| black_box(bare_read_no_size_hint(&node.detailed_files, &mut plain)))
    });
    group.finish();

    // This process, through the real kernel: smaps_rollup alone vs rollup + full smaps.
    let mut rollup_self = smaps::Collector::new("smaps", &smaps::Config::default(), &registry);
    let mut detailed_self = smaps::Collector::new(
        "smaps",
        &smaps::Config {
            detailed: true,
            ..smaps::Config::default()
        },
        &registry,
    );
    let mut group = c.benchmark_group("self_process");
    group.bench_function("rollup", |b| {
        b.iter(|| black_box(rollup_self.collect_encoded(SystemTime::now()).points))
    });
    group.bench_function("detailed", |b| {
        b.iter(|| black_box(detailed_self.collect_encoded(SystemTime::now()).points))
    });
    group.finish();

    assert_eq!(cgroups.collect(SystemTime::now()).len(), CGROUPS);
    assert_eq!(
        processes.collect(SystemTime::now()).len(),
        PROCESSES as usize
    );
    assert_eq!(
        detailed.collect(SystemTime::now()).len(),
        PROCESSES as usize
    );
    let _ = std::fs::remove_dir_all(&node.root);
}

criterion_group!(memory_truth, benches);
criterion_main!(memory_truth);
