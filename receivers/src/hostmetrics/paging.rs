//! `paging` scraper: swap devices from `/proc/swaps`, paging and fault counters from
//! `/proc/vmstat`.
//!
//! The Collector takes the `/proc/vmstat` counters from gopsutil, which multiplies each by
//! 4096 (`pswpin`, `pswpout`, `pgpgin`, `pgpgout`, `pgfault`, `pgmajfault` * 4 * 1024).
//! oxcol reports the same values so that dashboards and alerts written for the Collector
//! keep their meaning; `docs/components/hostmetrics.md` says so.

use serde::Deserialize;

use super::emit::{Kind, Out};
use super::{Enabled, Files, MetricInfo, Metrics, done};
use crate::cgroup::parse::parse_u64;
use crate::smaps::parse::for_each_line;

pub const METRICS: &[MetricInfo] = &[
    done("system.paging.usage", true),
    done("system.paging.operations", true),
    done("system.paging.faults", true),
    done("system.paging.utilization", false),
];

/// gopsutil's factor on every /proc/vmstat counter (see the module doc).
pub const GOPSUTIL_VMSTAT_FACTOR: u64 = 4 * 1024;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub metrics: Metrics,
}

/// One swap device of `/proc/swaps`, in bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Swap {
    pub device: String,
    pub total: u64,
    pub used: u64,
}

/// Parses `/proc/swaps` (`Filename Type Size Used Priority`, sizes in KiB). A header that
/// is not the expected one is an error, as in the Collector.
pub fn parse_swaps(data: &[u8]) -> Result<Vec<Swap>, String> {
    let text = std::str::from_utf8(data).map_err(|_| "/proc/swaps is not text".to_string())?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    if header.len() < 4 || header[0] != "Filename" || header[2] != "Size" || header[3] != "Used" {
        return Err(format!(
            "/proc/swaps header {header:?} is not `Filename Type Size Used ...`"
        ));
    }
    let mut swaps = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let number = |i: usize| fields.get(i).and_then(|f| parse_u64(f.as_bytes()));
        let (Some(total), Some(used)) = (number(2), number(3)) else {
            return Err(format!(
                "/proc/swaps line {line:?} has no Size and Used numbers"
            ));
        };
        swaps.push(Swap {
            device: fields[0].to_string(),
            total: total.saturating_mul(1024),
            used: used.saturating_mul(1024),
        });
    }
    Ok(swaps)
}

/// The /proc/vmstat counters used, as read (not multiplied).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct VmStat {
    pub pswpin: u64,
    pub pswpout: u64,
    pub pgpgin: u64,
    pub pgpgout: u64,
    pub pgfault: u64,
    pub pgmajfault: u64,
}

pub fn parse_vmstat(data: &[u8]) -> VmStat {
    let mut v = VmStat::default();
    for_each_line(data, |line, _| {
        let Some(space) = memchr::memchr(b' ', line) else {
            return;
        };
        let Some(value) = parse_u64(&line[space + 1..]) else {
            return;
        };
        let slot = match &line[..space] {
            b"pswpin" => &mut v.pswpin,
            b"pswpout" => &mut v.pswpout,
            b"pgpgin" => &mut v.pgpgin,
            b"pgpgout" => &mut v.pgpgout,
            b"pgfault" => &mut v.pgfault,
            b"pgmajfault" => &mut v.pgmajfault,
            _ => return,
        };
        *slot = value;
    });
    v
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
        let mut errors = Vec::new();
        if self.enabled.on("system.paging.usage") || self.enabled.on("system.paging.utilization") {
            match files.read("swaps").and_then(parse_swaps) {
                Ok(swaps) => {
                    if self.enabled.on("system.paging.usage") {
                        for s in &swaps {
                            out.int(
                                Kind::UpDown,
                                "system.paging.usage",
                                "By",
                                s.used,
                                &[("device", &s.device), ("state", "used")],
                            );
                            let free = s.total.saturating_sub(s.used);
                            out.int(
                                Kind::UpDown,
                                "system.paging.usage",
                                "By",
                                free,
                                &[("device", &s.device), ("state", "free")],
                            );
                        }
                    }
                    if self.enabled.on("system.paging.utilization") {
                        for s in swaps.iter().filter(|s| s.total > 0) {
                            let total = s.total as f64;
                            let free = s.total.saturating_sub(s.used) as f64;
                            out.double(
                                Kind::Gauge,
                                "system.paging.utilization",
                                "1",
                                s.used as f64 / total,
                                &[("device", &s.device), ("state", "used")],
                            );
                            out.double(
                                Kind::Gauge,
                                "system.paging.utilization",
                                "1",
                                free / total,
                                &[("device", &s.device), ("state", "free")],
                            );
                        }
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if self.enabled.on("system.paging.operations") || self.enabled.on("system.paging.faults") {
            match files.read("vmstat") {
                Ok(data) => {
                    let v = parse_vmstat(data);
                    let f = |n: u64| n.saturating_mul(GOPSUTIL_VMSTAT_FACTOR);
                    if self.enabled.on("system.paging.operations") {
                        let name = "system.paging.operations";
                        out.int(
                            Kind::Counter,
                            name,
                            "{operations}",
                            f(v.pswpin),
                            &[("direction", "page_in"), ("type", "major")],
                        );
                        out.int(
                            Kind::Counter,
                            name,
                            "{operations}",
                            f(v.pswpout),
                            &[("direction", "page_out"), ("type", "major")],
                        );
                        out.int(
                            Kind::Counter,
                            name,
                            "{operations}",
                            f(v.pgpgin),
                            &[("direction", "page_in"), ("type", "minor")],
                        );
                        out.int(
                            Kind::Counter,
                            name,
                            "{operations}",
                            f(v.pgpgout),
                            &[("direction", "page_out"), ("type", "minor")],
                        );
                    }
                    if self.enabled.on("system.paging.faults") {
                        out.int(
                            Kind::Counter,
                            "system.paging.faults",
                            "{faults}",
                            f(v.pgmajfault),
                            &[("type", "major")],
                        );
                        let minor = f(v.pgfault).saturating_sub(f(v.pgmajfault));
                        out.int(
                            Kind::Counter,
                            "system.paging.faults",
                            "{faults}",
                            minor,
                            &[("type", "minor")],
                        );
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}
