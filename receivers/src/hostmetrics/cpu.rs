//! `cpu` scraper: per logical CPU times from `/proc/stat` (`cpuN` lines, in USER_HZ ticks).

use serde::Deserialize;

use super::emit::{Kind, Out};
use super::{Enabled, Files, MetricInfo, Metrics, done, missing};
use crate::cgroup::parse::parse_u64;
use crate::smaps::parse::for_each_line;

pub const METRICS: &[MetricInfo] = &[
    done("system.cpu.time", true),
    done("system.cpu.utilization", false),
    done("system.cpu.logical.count", true),
    missing("system.cpu.physical.count", false),
    done("system.cpu.frequency", false),
];

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub metrics: Metrics,
}

/// The Collector's `state` values, in its order, and their column in a `cpuN` line
/// (user nice system idle iowait irq softirq steal guest guest_nice).
pub const STATES: [(&str, usize); 8] = [
    ("user", 0),
    ("system", 2),
    ("idle", 3),
    ("interrupt", 5),
    ("nice", 1),
    ("softirq", 6),
    ("steal", 7),
    ("wait", 4),
];

/// One `cpuN` line: its name and its first 8 columns, in ticks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuTicks {
    pub name: String,
    pub ticks: [u64; 8],
}

impl CpuTicks {
    fn total(&self) -> u64 {
        self.ticks.iter().sum()
    }
}

/// Parses the `cpuN` lines of `/proc/stat` into `cpus`, reusing its entries (names are
/// allocated only when a CPU appears). The aggregate `cpu` line is skipped.
pub fn parse_stat(data: &[u8], cpus: &mut Vec<CpuTicks>) {
    let mut count = 0;
    for_each_line(data, |line, _| {
        let mut words = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        let Some(name) = words.next() else { return };
        if name.len() <= 3 || !name.starts_with(b"cpu") || !name[3..].iter().all(u8::is_ascii_digit)
        {
            return;
        }
        let mut ticks = [0u64; 8];
        for slot in &mut ticks {
            // Old kernels have fewer columns: the missing ones stay 0.
            match words.next().and_then(parse_u64) {
                Some(v) => *slot = v,
                None => break,
            }
        }
        let Ok(name) = std::str::from_utf8(name) else {
            return;
        };
        if count == cpus.len() {
            cpus.push(CpuTicks::default());
        }
        let entry = &mut cpus[count];
        if entry.name != name {
            entry.name.clear();
            entry.name.push_str(name);
        }
        entry.ticks = ticks;
        count += 1;
    });
    cpus.truncate(count);
}

/// `(processor, cpu MHz)` of every processor block of `/proc/cpuinfo` that has both.
pub fn frequencies(data: &[u8]) -> Vec<(u64, f64)> {
    let mut out = Vec::new();
    let mut processor = None;
    for_each_line(data, |line, _| {
        let Some(colon) = memchr::memchr(b':', line) else {
            return;
        };
        let key = crate::cgroup::parse::trim(&line[..colon]);
        let value = crate::cgroup::parse::trim(&line[colon + 1..]);
        if key == b"processor" {
            processor = parse_u64(value);
        } else if key == b"cpu MHz"
            && let (Some(p), Some(mhz)) = (
                processor,
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<f64>().ok()),
            )
        {
            out.push((p, mhz));
        }
    });
    out
}

/// The `processor : N` lines of `/proc/cpuinfo`.
pub fn count_processors(data: &[u8]) -> u64 {
    let mut count = 0;
    for_each_line(data, |line, _| {
        if line.len() >= 9
            && line[..9].eq_ignore_ascii_case(b"processor")
            && let Some(colon) = memchr::memchr(b':', line)
            && parse_u64(crate::cgroup::parse::trim(&line[colon + 1..])).is_some()
        {
            count += 1;
        }
    });
    count
}

pub struct Scraper {
    enabled: Enabled,
    ticks_per_second: f64,
    current: Vec<CpuTicks>,
    previous: Vec<CpuTicks>,
}

impl Scraper {
    pub fn new(config: &Config) -> Scraper {
        Scraper {
            enabled: Enabled::resolve(METRICS, &config.metrics),
            ticks_per_second: crate::cgroup::emit::clock_ticks_per_second() as f64,
            current: Vec::new(),
            previous: Vec::new(),
        }
    }

    pub fn scrape(&mut self, files: &mut Files, out: &mut Out) -> Result<(), String> {
        if !self.enabled.any() {
            return Ok(());
        }
        let data = files.read("stat")?;
        parse_stat(data, &mut self.current);
        if self.current.is_empty() {
            return Err("no cpuN lines in /proc/stat".to_string());
        }
        if self.enabled.on("system.cpu.time") {
            for cpu in &self.current {
                for (state, column) in STATES {
                    let seconds = cpu.ticks[column] as f64 / self.ticks_per_second;
                    out.double(
                        Kind::Counter,
                        "system.cpu.time",
                        "s",
                        seconds,
                        &[("cpu", &cpu.name), ("state", state)],
                    );
                }
            }
        }
        if self.enabled.on("system.cpu.utilization") {
            // The first scrape has no previous times: no points, as in the Collector.
            for cpu in &self.current {
                let Some(before) = self.previous.iter().find(|p| p.name == cpu.name) else {
                    continue;
                };
                // No ticks elapsed: zeros, as the Collector records them.
                let elapsed = cpu.total().saturating_sub(before.total());
                for (state, column) in STATES {
                    let delta = cpu.ticks[column].saturating_sub(before.ticks[column]);
                    let share = if elapsed == 0 {
                        0.0
                    } else {
                        delta as f64 / elapsed as f64
                    };
                    out.double(
                        Kind::Gauge,
                        "system.cpu.utilization",
                        "1",
                        share,
                        &[("cpu", &cpu.name), ("state", state)],
                    );
                }
            }
        }
        if self.enabled.on("system.cpu.logical.count") {
            // gopsutil: `processor` lines of /proc/cpuinfo, else the `cpuN` lines of /proc/stat.
            let processors = files.read("cpuinfo").map(count_processors).unwrap_or(0);
            let count = if processors > 0 {
                processors
            } else {
                self.current.len() as u64
            };
            out.int(
                Kind::UpDown,
                "system.cpu.logical.count",
                "{cpu}",
                count,
                &[],
            );
        }
        if self.enabled.on("system.cpu.frequency") {
            // procfs (what the Collector uses): `cpu MHz` of each processor, in Hz.
            for (processor, mhz) in frequencies(files.read("cpuinfo")?) {
                let cpu = format!("cpu{processor}");
                out.double(
                    Kind::Gauge,
                    "system.cpu.frequency",
                    "Hz",
                    mhz * 1e6,
                    &[("cpu", &cpu)],
                );
            }
        }
        std::mem::swap(&mut self.current, &mut self.previous);
        Ok(())
    }
}
