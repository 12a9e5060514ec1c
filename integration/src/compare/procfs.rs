//! What `compare` reads from /proc: CPU time (utime + stime) and memory (VmRSS, VmHWM) of a
//! process tree, and how busy the whole machine is (`/proc/stat`).
//!
//! Parsers take the file text and never panic on odd input (a process can vanish between
//! the directory listing and the read; its files then read empty or fail).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The fields of `/proc/PID/stat` that `compare` uses. Times are in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub ppid: u32,
    pub utime: u64,
    pub stime: u64,
    /// CPU time of children this process waited for (reaped descendants).
    pub cutime: u64,
    pub cstime: u64,
}

impl ProcStat {
    /// The process' own CPU time plus that of the children it reaped, in ticks.
    pub fn cpu_ticks(&self) -> u64 {
        self.utime + self.stime + self.cutime + self.cstime
    }
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses and may contain
/// spaces and parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    // After ") ": field 3 (state) is index 0, so field N is index N - 3.
    let rest: Vec<&str> = text.get(close + 1..)?.split_ascii_whitespace().collect();
    let field = |n: usize| -> Option<u64> { rest.get(n - 3)?.parse().ok() };
    Some(ProcStat {
        pid,
        ppid: u32::try_from(field(4)?).ok()?,
        utime: field(14)?,
        stime: field(15)?,
        cutime: field(16)?,
        cstime: field(17)?,
    })
}

/// Memory lines of `/proc/PID/status`, in KiB (`None` when absent, e.g. for a zombie).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcMemory {
    pub vm_rss_kib: Option<u64>,
    pub vm_hwm_kib: Option<u64>,
}

/// Parses the `VmRSS:` and `VmHWM:` lines of `/proc/PID/status` (`VmRSS:   12345 kB`).
pub fn parse_status(text: &str) -> ProcMemory {
    let mut memory = ProcMemory::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "VmRSS" => &mut memory.vm_rss_kib,
            "VmHWM" => &mut memory.vm_hwm_kib,
            _ => continue,
        };
        let mut words = value.split_ascii_whitespace();
        if let (Some(number), Some("kB")) = (words.next(), words.next()) {
            *slot = number.parse().ok();
        }
    }
    memory
}

/// `root` and every process whose parent chain leads to it, from a `pid -> ppid` table.
pub fn descendants(root: u32, parents: &BTreeMap<u32, u32>) -> Vec<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (&pid, &ppid) in parents {
        if pid != ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut seen = BTreeSet::from([root]);
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
            if seen.insert(child) {
                stack.push(child);
            }
        }
    }
    seen.into_iter().collect()
}

/// One sample of a process tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeSample {
    /// Processes in the tree when sampled.
    pub processes: usize,
    /// Sum of `utime + stime + cutime + cstime` over the live tree, in ticks.
    pub cpu_ticks: u64,
    /// Sum of `VmRSS` over the tree, KiB.
    pub rss_kib: u64,
    /// Sum of each process' `VmHWM` (its own peak RSS), KiB: an upper bound of the tree's peak.
    pub hwm_kib: u64,
}

/// Samples `root` and its descendants under `proc_root` (normally `/proc`). `None` when the
/// root process is gone.
pub fn sample_tree(proc_root: &Path, root: u32) -> Option<TreeSample> {
    let root_stat = read_stat(proc_root, root)?;
    let parents = process_table(proc_root);
    let mut sample = TreeSample::default();
    for pid in descendants(root, &parents) {
        let stat = if pid == root {
            Some(root_stat)
        } else {
            read_stat(proc_root, pid)
        };
        let Some(stat) = stat else { continue };
        let memory = std::fs::read_to_string(proc_root.join(pid.to_string()).join("status"))
            .map(|text| parse_status(&text))
            .unwrap_or_default();
        sample.processes += 1;
        sample.cpu_ticks += stat.cpu_ticks();
        sample.rss_kib += memory.vm_rss_kib.unwrap_or(0);
        sample.hwm_kib += memory.vm_hwm_kib.unwrap_or(0);
    }
    Some(sample)
}

/// CPU ticks (own + reaped children) of one process, `None` when it is gone.
pub fn process_cpu_ticks(proc_root: &Path, pid: u32) -> Option<u64> {
    read_stat(proc_root, pid).map(|stat| stat.cpu_ticks())
}

fn read_stat(proc_root: &Path, pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    parse_stat(&text)
}

/// `pid -> ppid` for every process under `proc_root`.
pub fn process_table(proc_root: &Path) -> BTreeMap<u32, u32> {
    let mut table = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return table;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(stat) = read_stat(proc_root, pid) {
            table.insert(pid, stat.ppid);
        }
    }
    table
}

/// The aggregate `cpu` line of `/proc/stat`: (busy, total) ticks over all cores, where
/// busy excludes idle and iowait. Guest time is already inside user/nice and not re-added.
pub fn parse_machine_ticks(text: &str) -> Option<(u64, u64)> {
    let line = text
        .lines()
        .find(|line| line.split_ascii_whitespace().next() == Some("cpu"))?;
    let values: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .take(8) // user nice system idle iowait irq softirq steal
        .map(|word| word.parse().ok())
        .collect::<Option<_>>()?;
    if values.len() < 4 {
        return None;
    }
    let total: u64 = values.iter().sum();
    let idle = values[3] + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// `(busy, total)` ticks of the whole machine now.
pub fn machine_ticks(proc_root: &Path) -> Option<(u64, u64)> {
    parse_machine_ticks(&std::fs::read_to_string(proc_root.join("stat")).ok()?)
}

/// The first three fields of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_ascii_whitespace().map(|word| word.parse().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

pub fn loadavg(proc_root: &Path) -> Option<[f64; 3]> {
    parse_loadavg(&std::fs::read_to_string(proc_root.join("loadavg")).ok()?)
}

/// Clock ticks per second for `/proc/*/stat` times (`getconf CLK_TCK`; 100 on Linux when
/// `getconf` is missing: USER_HZ is 100 on every mainstream architecture).
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// Number of CPUs online (`/proc/stat` `cpuN` lines), at least 1.
pub fn cpu_count(proc_root: &Path) -> usize {
    std::fs::read_to_string(proc_root.join("stat"))
        .map(|text| {
            text.lines()
                .filter(|line| {
                    line.strip_prefix("cpu")
                        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
                })
                .count()
        })
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded on this machine: `cat /proc/self/stat` (comm with spaces and a paren added
    // to exercise the name rule) and the memory part of `/proc/self/status`.
    const STAT: &str = "4242 (tokio-rt (wor)ker 1) S 4200 4242 4200 34816 4242 4194304 2398 0 0 0 \
        1234 567 89 10 20 0 9 0 436108 1108729856 3214 18446744073709551615 1 1 0 0 0 0 0 \
        4096 17642 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
    const STATUS: &str = "Name:\toxcol\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\n\
        VmPeak:\t 1108732 kB\nVmSize:\t 1108728 kB\nVmLck:\t       0 kB\nVmPin:\t       0 kB\n\
        VmHWM:\t   98896 kB\nVmRSS:\t   12856 kB\nRssAnon:\t    4224 kB\nThreads:\t9\n";
    const PROC_STAT: &str = "cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 50 2 25 400 10 1 1 0 0 0\n\
        cpu1 50 3 25 400 10 2 1 0 0 0\nintr 1 2 3\nctxt 99\n";

    #[test]
    fn stat_fields_are_counted_after_the_last_paren() {
        let stat = parse_stat(STAT).unwrap();
        assert_eq!(
            stat,
            ProcStat {
                pid: 4242,
                ppid: 4200,
                utime: 1234,
                stime: 567,
                cutime: 89,
                cstime: 10
            }
        );
        assert_eq!(stat.cpu_ticks(), 1234 + 567 + 89 + 10);
    }

    #[test]
    fn stat_of_the_real_self_process_parses() {
        let text = std::fs::read_to_string("/proc/self/stat").unwrap();
        let stat = parse_stat(&text).unwrap();
        assert_eq!(stat.pid, std::process::id());
        assert!(stat.ppid > 0);
    }

    #[test]
    fn status_memory_lines() {
        assert_eq!(
            parse_status(STATUS),
            ProcMemory {
                vm_rss_kib: Some(12856),
                vm_hwm_kib: Some(98896)
            }
        );
        // A zombie or kernel thread has no Vm lines.
        assert_eq!(
            parse_status("Name:\tkthreadd\nState:\tS\n"),
            ProcMemory::default()
        );
        let real = parse_status(&std::fs::read_to_string("/proc/self/status").unwrap());
        assert!(
            real.vm_rss_kib.unwrap() > 0 && real.vm_hwm_kib.unwrap() >= real.vm_rss_kib.unwrap()
        );
    }

    #[test]
    fn descendants_follow_the_parent_chain_only() {
        let table = BTreeMap::from([
            (1, 0),
            (10, 1),
            (11, 10),
            (12, 11),
            (20, 1),
            (21, 20),
            (13, 10),
        ]);
        assert_eq!(descendants(10, &table), vec![10, 11, 12, 13]);
        assert_eq!(descendants(12, &table), vec![12]);
        assert_eq!(descendants(99, &table), vec![99]);
        // A self-parented entry (pid 0 in some containers) does not loop.
        assert_eq!(descendants(0, &BTreeMap::from([(0, 0)])), vec![0]);
    }

    #[test]
    fn machine_ticks_exclude_idle_and_iowait() {
        assert_eq!(parse_machine_ticks(PROC_STAT), Some((160, 980)));
        assert_eq!(parse_machine_ticks("cpu0 1 2 3 4\n"), None);
        assert!(parse_machine_ticks(&std::fs::read_to_string("/proc/stat").unwrap()).is_some());
    }

    #[test]
    fn loadavg_fields() {
        assert_eq!(
            parse_loadavg("0.39 1.64 2.38 1/234 5678\n"),
            Some([0.39, 1.64, 2.38])
        );
        assert_eq!(parse_loadavg("0.39 x"), None);
    }

    #[test]
    fn a_real_process_tree_is_sampled() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & sleep 5 & wait"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut sample = None;
        while std::time::Instant::now() < deadline {
            sample = sample_tree(Path::new("/proc"), pid);
            if sample.is_some_and(|s| s.processes == 3) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        let sample = sample.unwrap();
        assert_eq!(sample.processes, 3, "sh and its two sleeps");
        assert!(sample.rss_kib > 0 && sample.hwm_kib >= sample.rss_kib);
        assert_eq!(sample_tree(Path::new("/proc"), u32::MAX), None);
    }

    #[test]
    fn parsers_never_panic_on_mutated_input() {
        // Deterministic mutations (xorshift) of the fixtures: truncations, byte flips.
        let mut rng = oxcol_core::testdata::XorShift64(0x2545_f491_4f6c_dd1d);
        let mut next = move || rng.next_u64();
        for fixture in [STAT, STATUS, PROC_STAT, "0.1 0.2 0.3 1/2 3"] {
            for _ in 0..2000 {
                let mut bytes = fixture.as_bytes().to_vec();
                let cut = (next() as usize) % (bytes.len() + 1);
                bytes.truncate(cut);
                for _ in 0..(next() % 4) {
                    if !bytes.is_empty() {
                        let at = (next() as usize) % bytes.len();
                        bytes[at] = (next() & 0xff) as u8;
                    }
                }
                let text = String::from_utf8_lossy(&bytes);
                let _ = parse_stat(&text);
                let _ = parse_status(&text);
                let _ = parse_machine_ticks(&text);
                let _ = parse_loadavg(&text);
            }
        }
    }
}
