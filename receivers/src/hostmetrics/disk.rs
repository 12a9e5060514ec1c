//! `disk` scraper: `/proc/diskstats`, every device line (whole disks, partitions, loop and
//! dm devices, as the Collector reports them) except those whose counters are all zero
//! (gopsutil skips them: an unused loop or zram device), sectors counted as 512 bytes.

use serde::Deserialize;

use super::emit::{Kind, Out};
use super::filter::{DeviceFilter, MatchConfig};
use super::{Enabled, Files, MetricInfo, Metrics, done};
use crate::cgroup::parse::parse_u64;
use crate::smaps::parse::for_each_line;

pub const METRICS: &[MetricInfo] = &[
    done("system.disk.io", true),
    done("system.disk.operations", true),
    done("system.disk.io_time", true),
    done("system.disk.operation_time", true),
    done("system.disk.weighted_io_time", true),
    done("system.disk.pending_operations", true),
    done("system.disk.merged", true),
];

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub metrics: Metrics,
    pub include: Option<MatchConfig>,
    pub exclude: Option<MatchConfig>,
}

/// The unit of the sector counts in /proc/diskstats, whatever the device's sector size.
const SECTOR_BYTES: u64 = 512;

/// One line of `/proc/diskstats` (times in milliseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DiskStats<'a> {
    pub name: &'a str,
    pub reads: u64,
    pub reads_merged: u64,
    pub sectors_read: u64,
    pub read_ms: u64,
    pub writes: u64,
    pub writes_merged: u64,
    pub sectors_written: u64,
    pub write_ms: u64,
    pub in_progress: u64,
    pub io_ms: u64,
    pub weighted_io_ms: u64,
}

impl DiskStats<'_> {
    /// Every counter zero: a device gopsutil (so the Collector) leaves out.
    pub fn unused(&self) -> bool {
        DiskStats {
            name: self.name,
            ..DiskStats::default()
        } == *self
    }
}

/// Calls `each` for every line with at least the 14 classic fields.
pub fn for_each_disk<'a>(data: &'a [u8], mut each: impl FnMut(&DiskStats<'a>)) {
    for_each_line(data, |line, _| {
        let mut words = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        let (Some(_major), Some(_minor), Some(name)) = (words.next(), words.next(), words.next())
        else {
            return;
        };
        let Ok(name) = std::str::from_utf8(name) else {
            return;
        };
        let mut v = [0u64; 11];
        for slot in &mut v {
            match words.next().and_then(parse_u64) {
                Some(value) => *slot = value,
                None => return,
            }
        }
        each(&DiskStats {
            name,
            reads: v[0],
            reads_merged: v[1],
            sectors_read: v[2],
            read_ms: v[3],
            writes: v[4],
            writes_merged: v[5],
            sectors_written: v[6],
            write_ms: v[7],
            in_progress: v[8],
            io_ms: v[9],
            weighted_io_ms: v[10],
        });
    });
}

pub struct Scraper {
    enabled: Enabled,
    filter: DeviceFilter,
}

impl Scraper {
    pub fn new(config: &Config) -> Result<Scraper, String> {
        Ok(Scraper {
            enabled: Enabled::resolve(METRICS, &config.metrics),
            filter: DeviceFilter::new(&config.include, &config.exclude)
                .map_err(|e| format!("scrapers.disk: {e}"))?,
        })
    }

    pub fn scrape(&mut self, files: &mut Files, out: &mut Out) -> Result<(), String> {
        if !self.enabled.any() {
            return Ok(());
        }
        let data = files.read("diskstats")?;
        let mut disks = Vec::new();
        for_each_disk(data, |d| {
            if !d.unused() && self.filter.passes(d.name) {
                disks.push(*d);
            }
        });
        let seconds = |ms: u64| ms as f64 / 1000.0;
        type ReadWrite = fn(&DiskStats) -> (u64, u64);
        let by_direction: [(&'static str, &'static str, ReadWrite); 2] = [
            ("system.disk.io", "By", |d| {
                (
                    d.sectors_read.saturating_mul(SECTOR_BYTES),
                    d.sectors_written.saturating_mul(SECTOR_BYTES),
                )
            }),
            ("system.disk.operations", "{operations}", |d| {
                (d.reads, d.writes)
            }),
        ];
        for (name, unit, values) in by_direction {
            if self.enabled.on(name) {
                for d in &disks {
                    let (read, write) = values(d);
                    out.int(
                        Kind::Counter,
                        name,
                        unit,
                        read,
                        &[("device", d.name), ("direction", "read")],
                    );
                    out.int(
                        Kind::Counter,
                        name,
                        unit,
                        write,
                        &[("device", d.name), ("direction", "write")],
                    );
                }
            }
        }
        if self.enabled.on("system.disk.io_time") {
            for d in &disks {
                out.double(
                    Kind::Counter,
                    "system.disk.io_time",
                    "s",
                    seconds(d.io_ms),
                    &[("device", d.name)],
                );
            }
        }
        if self.enabled.on("system.disk.operation_time") {
            for d in &disks {
                let attrs = |direction| [("device", d.name), ("direction", direction)];
                out.double(
                    Kind::Counter,
                    "system.disk.operation_time",
                    "s",
                    seconds(d.read_ms),
                    &attrs("read"),
                );
                out.double(
                    Kind::Counter,
                    "system.disk.operation_time",
                    "s",
                    seconds(d.write_ms),
                    &attrs("write"),
                );
            }
        }
        if self.enabled.on("system.disk.weighted_io_time") {
            for d in &disks {
                out.double(
                    Kind::Counter,
                    "system.disk.weighted_io_time",
                    "s",
                    seconds(d.weighted_io_ms),
                    &[("device", d.name)],
                );
            }
        }
        if self.enabled.on("system.disk.pending_operations") {
            for d in &disks {
                out.int(
                    Kind::UpDown,
                    "system.disk.pending_operations",
                    "{operations}",
                    d.in_progress,
                    &[("device", d.name)],
                );
            }
        }
        if self.enabled.on("system.disk.merged") {
            for d in &disks {
                out.int(
                    Kind::Counter,
                    "system.disk.merged",
                    "{operations}",
                    d.reads_merged,
                    &[("device", d.name), ("direction", "read")],
                );
                out.int(
                    Kind::Counter,
                    "system.disk.merged",
                    "{operations}",
                    d.writes_merged,
                    &[("device", d.name), ("direction", "write")],
                );
            }
        }
        Ok(())
    }
}
