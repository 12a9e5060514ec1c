//! `memory` scraper: `/proc/meminfo`, with the Collector's (gopsutil's) arithmetic:
//! `cached` is `Cached + SReclaimable`; `used` is `MemTotal - MemAvailable` (the Collector's
//! `receiver.hostmetricsreceiver.UseLinuxMemAvailable` gate, beta and so on in v0.161).

use serde::Deserialize;

use super::emit::{Kind, Out};
use super::{Enabled, Files, MetricInfo, Metrics, done, missing};
use crate::cgroup::parse::{parse_u64, trim};
use crate::smaps::parse::for_each_line;

pub const METRICS: &[MetricInfo] = &[
    done("system.memory.usage", true),
    done("system.memory.utilization", false),
    done("system.memory.limit", false),
    done("system.linux.memory.available", false),
    done("system.linux.memory.dirty", false),
    done("system.memory.page_size", false),
    missing("system.memory.linux.hugepages.limit", false),
    missing("system.memory.linux.hugepages.page_size", false),
    missing("system.memory.linux.hugepages.reserved", false),
    missing("system.memory.linux.hugepages.surplus", false),
    missing("system.memory.linux.hugepages.usage", false),
    missing("system.memory.linux.hugepages.utilization", false),
    missing("system.memory.linux.shared", false),
];

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub metrics: Metrics,
}

/// The `/proc/meminfo` fields used, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MemInfo {
    pub total: u64,
    pub free: u64,
    pub available: u64,
    pub buffers: u64,
    pub cached: u64,
    pub s_reclaimable: u64,
    pub s_unreclaim: u64,
    pub dirty: u64,
}

impl MemInfo {
    /// `cached` as the Collector reports it (page cache plus reclaimable slab).
    pub fn cached_reported(&self) -> u64 {
        self.cached.saturating_add(self.s_reclaimable)
    }

    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.available)
    }
}

/// Parses `Key:   123 kB` lines; kB here means KiB.
pub fn parse_meminfo(data: &[u8]) -> Option<MemInfo> {
    let mut info = MemInfo::default();
    let mut saw_total = false;
    for_each_line(data, |line, _| {
        let Some(colon) = memchr::memchr(b':', line) else {
            return;
        };
        let (key, rest) = (&line[..colon], trim(&line[colon + 1..]));
        let (number, multiplier) = match rest.strip_suffix(b"kB") {
            Some(n) => (trim(n), 1024),
            None => (rest, 1),
        };
        let Some(value) = parse_u64(number).map(|v| v.saturating_mul(multiplier)) else {
            return;
        };
        let slot = match key {
            b"MemTotal" => {
                saw_total = true;
                &mut info.total
            }
            b"MemFree" => &mut info.free,
            b"MemAvailable" => &mut info.available,
            b"Buffers" => &mut info.buffers,
            b"Cached" => &mut info.cached,
            b"SReclaimable" => &mut info.s_reclaimable,
            b"SUnreclaim" => &mut info.s_unreclaim,
            b"Dirty" => &mut info.dirty,
            _ => return,
        };
        *slot = value;
    });
    saw_total.then_some(info)
}

pub struct Scraper {
    enabled: Enabled,
}

impl Scraper {
    pub fn new(config: &Config) -> Scraper {
        Scraper {
            enabled: Enabled::resolve(METRICS, &config.metrics),
        }
    }

    pub fn scrape(&mut self, files: &mut Files, out: &mut Out) -> Result<(), String> {
        if !self.enabled.any() {
            return Ok(());
        }
        let data = files.read("meminfo")?;
        let m = parse_meminfo(data).ok_or("/proc/meminfo has no MemTotal line")?;
        let states = [
            ("used", m.used()),
            ("free", m.free),
            ("buffered", m.buffers),
            ("cached", m.cached_reported()),
            ("slab_reclaimable", m.s_reclaimable),
            ("slab_unreclaimable", m.s_unreclaim),
        ];
        if self.enabled.on("system.memory.usage") {
            for (state, bytes) in states {
                out.int(
                    Kind::UpDown,
                    "system.memory.usage",
                    "By",
                    bytes,
                    &[("state", state)],
                );
            }
        }
        if self.enabled.on("system.memory.utilization") && m.total > 0 {
            for (state, bytes) in states {
                out.double(
                    Kind::Gauge,
                    "system.memory.utilization",
                    "1",
                    bytes as f64 / m.total as f64,
                    &[("state", state)],
                );
            }
        }
        if self.enabled.on("system.memory.limit") {
            out.int(Kind::UpDown, "system.memory.limit", "By", m.total, &[]);
        }
        if self.enabled.on("system.linux.memory.available") {
            out.int(
                Kind::UpDown,
                "system.linux.memory.available",
                "By",
                m.available,
                &[],
            );
        }
        if self.enabled.on("system.linux.memory.dirty") {
            out.int(
                Kind::UpDown,
                "system.linux.memory.dirty",
                "By",
                m.dirty,
                &[],
            );
        }
        if self.enabled.on("system.memory.page_size") {
            out.int(
                Kind::Gauge,
                "system.memory.page_size",
                "By",
                page_size(),
                &[],
            );
        }
        Ok(())
    }
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}
