//! The first run: `oxcol` with its embedded default config prints a memory picture on
//! stdout — this container's working set against its limit, PSI, the top processes by
//! PSS — and the line saying where the status page is.
//!
//! The embedded default binds fixed ports (4317, 4318, 8888, 55679), which other tests on
//! this machine may hold, so the run uses a copy of `configs/default.yaml` with those
//! four ports rewritten to free ones. That the copy is what `oxcol` runs with no
//! `--config` is checked first: `oxcol print-config` prints the same resolved config for
//! both.
//!
//! Needs `target/debug/oxcol` (`cargo build -p oxcol`). Every wait is bounded; the child is
//! killed when the test ends, also on panic.

mod common;

use common::*;
use oxcol_integration::child::ChildGuard;
use oxcol_integration::net::http_get;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for the first complete block (the default prints one per 10 s scrape).
const FIRST_BLOCK_TIMEOUT: Duration = Duration::from_secs(60);

fn default_yaml() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/default.yaml"))
        .expect("configs/default.yaml is readable")
}

fn print_config(args: &[&std::ffi::OsStr]) -> String {
    let output = Command::new(oxcol_binary())
        .arg("print-config")
        .args(args)
        .output()
        .expect("oxcol runs");
    assert!(
        output.status.success(),
        "print-config failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The memory cgroup this process is in, as (memory usage file, memory.stat, limit file,
/// the stat key of inactive file pages), found from /proc/self/cgroup; the mount root
/// itself when the path is not visible under it (a cgroup namespace).
fn own_memory_cgroup() -> Option<(PathBuf, PathBuf, PathBuf, &'static str)> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut v1 = None;
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path.to_string());
        } else if controllers.is_empty() {
            v2 = Some(path.to_string());
        }
    }
    let root = Path::new("/sys/fs/cgroup");
    if let Some(path) = v1 {
        for dir in [
            root.join("memory").join(path.trim_start_matches('/')),
            root.join("memory"),
        ] {
            if dir.join("memory.usage_in_bytes").is_file() {
                return Some((
                    dir.join("memory.usage_in_bytes"),
                    dir.join("memory.stat"),
                    dir.join("memory.limit_in_bytes"),
                    "total_inactive_file",
                ));
            }
        }
    }
    let path = v2?;
    for dir in [root.join(path.trim_start_matches('/')), root.to_path_buf()] {
        if dir.join("memory.current").is_file() {
            return Some((
                dir.join("memory.current"),
                dir.join("memory.stat"),
                dir.join("memory.max"),
                "inactive_file",
            ));
        }
    }
    None
}

/// The working set as kubelet computes it: usage − inactive_file, clamped at 0.
fn working_set(cgroup: &(PathBuf, PathBuf, PathBuf, &'static str)) -> Option<f64> {
    let usage: f64 = std::fs::read_to_string(&cgroup.0)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(&cgroup.1).ok()?;
    let inactive: f64 = stat.lines().find_map(|l| {
        l.strip_prefix(cgroup.3)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })?;
    Some((usage - inactive).max(0.0))
}

/// The limit, `None` when unlimited (`max`, or 2^62 and more on v1).
fn limit(cgroup: &(PathBuf, PathBuf, PathBuf, &'static str)) -> Option<f64> {
    let value: f64 = std::fs::read_to_string(&cgroup.2)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (value < 4_611_686_018_427_387_904.0).then_some(value)
}

/// "757 MiB", "2.88 GiB", "0 B" -> bytes.
fn parse_human(text: &str) -> Option<f64> {
    let (number, unit) = text.trim().split_once(' ')?;
    let number: f64 = number.parse().ok()?;
    let factor = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number * factor)
}

/// The table cells of a row: text separated by two spaces or more.
fn cells(row: &str) -> Vec<&str> {
    row.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

#[test]
fn the_default_config_prints_this_containers_memory_picture_and_the_status_page() {
    // The copy is the embedded default.
    let embedded = print_config(&[]);
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/default.yaml");
    assert_eq!(
        embedded,
        print_config(&["--config".as_ref(), shipped.as_os_str()]),
        "oxcol with no --config runs configs/default.yaml"
    );

    let ports: Vec<(u16, u16)> = [4317, 4318, 8888, 55679]
        .into_iter()
        .map(|fixed| (fixed, free_port()))
        .collect();
    let mut yaml = default_yaml();
    for (fixed, free) in &ports {
        let (from, to) = (format!("127.0.0.1:{fixed}"), format!("127.0.0.1:{free}"));
        assert!(yaml.contains(&from), "default.yaml binds {from}");
        yaml = yaml.replace(&from, &to);
    }
    let zpages_port = ports[3].1;
    let dir = std::env::temp_dir().join(format!("oxcol-first-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creates the temp dir");
    let config = dir.join("default.yaml");
    std::fs::write(&config, &yaml).expect("writes the config");
    let (stdout_path, stderr_path) = (dir.join("stdout.txt"), dir.join("stderr.txt"));
    let child = Command::new(oxcol_binary())
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::from(
            std::fs::File::create(&stdout_path).expect("creates stdout file"),
        ))
        .stderr(Stdio::from(
            std::fs::File::create(&stderr_path).expect("creates stderr file"),
        ))
        .spawn()
        .expect("oxcol starts");
    let mut guard = ChildGuard::new(child);

    // Wait for the first complete block (it ends with an empty line), sampling this
    // cgroup's working set meanwhile: other work on the machine moves it, so the printed
    // value is compared with the range seen while oxcol ran.
    let cgroup = own_memory_cgroup();
    let (mut lowest, mut highest) = (f64::MAX, f64::MIN);
    let deadline = Instant::now() + FIRST_BLOCK_TIMEOUT;
    let block = loop {
        if let Some(ws) = cgroup.as_ref().and_then(working_set) {
            lowest = lowest.min(ws);
            highest = highest.max(ws);
        }
        let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
        if let Some(end) = stdout.find("\n\n") {
            break stdout[..end].to_string();
        }
        if let Ok(Some(status)) = guard.child_mut().try_wait() {
            panic!(
                "oxcol exited with {status}\nstderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no memory picture within {FIRST_BLOCK_TIMEOUT:?}\nstdout:\n{stdout}\nstderr:\n{}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    if let Some(ws) = cgroup.as_ref().and_then(working_set) {
        lowest = lowest.min(ws);
        highest = highest.max(ws);
    }
    println!("first block:\n{block}");

    assert!(block.starts_with("oxcol memory picture · "), "{block}");
    assert!(
        !block.contains('\x1b'),
        "no colour codes when stdout is a file:\n{block}"
    );
    assert!(
        !block.contains("MetricsExporter"),
        "a picture, not the debug exporter's counts:\n{block}"
    );
    assert!(
        block.lines().last()
            == Some(&format!("  status page: http://127.0.0.1:{zpages_port}/")[..]),
        "{block}"
    );
    let (status, _) =
        http_get(&format!("127.0.0.1:{zpages_port}"), "/debug/servicez").expect("zpages answers");
    assert_eq!(status, 200, "the zpages endpoint the line names is serving");

    // The working set row of this container (the first row: the only cgroup with memory).
    let lines: Vec<&str> = block.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.contains("working set") && l.contains("time to limit"))
        .unwrap_or_else(|| panic!("a working-set table:\n{block}"));
    let row = cells(lines[header + 1]);
    assert!(row.len() >= 6, "{row:?}");
    let Some(cgroup) = cgroup else {
        eprintln!(
            "no memory cgroup file is readable here; the printed working set {} is not compared",
            row[1]
        );
        return;
    };
    let printed = parse_human(row[1]).unwrap_or_else(|| panic!("a size in {row:?}"));
    // Three significant digits are printed: 0.5% rounding, plus 5% and 16 MiB for what
    // moved between two samples.
    let slack = 16.0 * 1024.0 * 1024.0;
    assert!(
        printed >= lowest * 0.95 - slack && printed <= highest * 1.05 + slack,
        "printed working set {printed} outside [{lowest}, {highest}] read from {}",
        cgroup.0.display()
    );
    match limit(&cgroup) {
        None => {
            assert_eq!(row[2], "no limit", "{row:?}");
            assert_eq!(row.last(), Some(&"no limit"), "{row:?}");
        }
        Some(limit) => {
            let shown = parse_human(row[2]).unwrap_or_else(|| panic!("a limit in {row:?}"));
            assert!((shown - limit).abs() <= limit * 0.01, "{shown} vs {limit}");
        }
    }
    // Trend: the default scrapes every 10 s; the first block comes before warm-up ends.
    assert!(
        row[4] == "warming up" || row[4] == "stable" || row[4].ends_with("/min"),
        "{row:?}"
    );

    // Top processes by PSS: the smaps receiver reads at least oxcol itself.
    let processes = lines
        .iter()
        .position(|l| l.contains("(top processes by PSS)"))
        .unwrap_or_else(|| panic!("a process table:\n{block}"));
    let first = cells(lines[processes + 1]);
    assert!(first[0].parse::<u32>().is_ok(), "a pid first: {first:?}");
    assert!(
        parse_human(first[2]).is_some_and(|pss| pss > 0.0),
        "{first:?}"
    );
    let pss_rows: Vec<Vec<&str>> = lines[processes + 1..]
        .iter()
        .take_while(|l| cells(l).first().is_some_and(|c| c.parse::<u32>().is_ok()))
        .map(|l| cells(l))
        .collect();
    let sizes: Vec<f64> = pss_rows.iter().filter_map(|r| parse_human(r[2])).collect();
    assert!(
        sizes.windows(2).all(|w| w[0] >= w[1]),
        "largest PSS first: {pss_rows:?}"
    );

    // A later block follows within the interval (one per 10 s scrape), still no colour.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
        if stdout.matches("oxcol memory picture · ").count() >= 2 {
            assert!(!stdout.contains('\x1b'));
            break;
        }
        assert!(Instant::now() < deadline, "no second block:\n{stdout}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
