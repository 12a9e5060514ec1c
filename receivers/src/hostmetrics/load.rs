//! `load` scraper: `/proc/loadavg`, optionally divided by the number of CPUs oxcol may run
//! on (`cpu_average`, as the Collector divides by Go's `runtime.NumCPU()`).

use serde::Deserialize;

use super::emit::{Kind, Out};
use super::{Enabled, Files, MetricInfo, Metrics, done};

pub const METRICS: &[MetricInfo] = &[
    done("system.cpu.load_average.1m", true),
    done("system.cpu.load_average.5m", true),
    done("system.cpu.load_average.15m", true),
];

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub metrics: Metrics,
    /// Divide the load averages by the number of logical CPUs. Default false.
    pub cpu_average: bool,
}

/// The three load averages of `/proc/loadavg` (`0.52 0.58 0.59 1/467 12345`).
pub fn parse_loadavg(data: &[u8]) -> Option<[f64; 3]> {
    let text = std::str::from_utf8(data).ok()?;
    let mut words = text.split_ascii_whitespace();
    let mut averages = [0.0; 3];
    for slot in &mut averages {
        *slot = words.next()?.parse().ok()?;
    }
    Some(averages)
}

/// CPUs this process may run on (`sched_getaffinity`), what Go's `runtime.NumCPU()` counts.
pub fn affinity_cpus() -> usize {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            let n = libc::CPU_COUNT(&set);
            if n > 0 {
                return n as usize;
            }
        }
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub struct Scraper {
    enabled: Enabled,
    divisor: f64,
}

impl Scraper {
    pub fn new(config: &Config) -> Scraper {
        let divisor = if config.cpu_average {
            affinity_cpus() as f64
        } else {
            1.0
        };
        Scraper {
            enabled: Enabled::resolve(METRICS, &config.metrics),
            divisor,
        }
    }

    pub fn scrape(&mut self, files: &mut Files, out: &mut Out) -> Result<(), String> {
        if !self.enabled.any() {
            return Ok(());
        }
        let data = files.read("loadavg")?;
        let averages =
            parse_loadavg(data).ok_or("/proc/loadavg does not start with three load averages")?;
        for (name, value) in METRICS.iter().map(|m| m.name).zip(averages) {
            if self.enabled.on(name) {
                out.double(Kind::Gauge, name, "{thread}", value / self.divisor, &[]);
            }
        }
        Ok(())
    }
}
