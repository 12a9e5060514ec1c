//! `processes` scraper: process counts by status from the state letter of every
//! `/proc/PID/stat`, with `running` and `blocked` taken from `procs_running` and
//! `procs_blocked` of `/proc/stat` (one read, so exact, as the Collector does), and
//! `system.processes.created` from its `processes` line. When the PID directories
//! outnumber the statuses counted, `unknown` is set to the difference, as the Collector does.

use serde::Deserialize;

use super::emit::{Kind, Out};
use super::{Enabled, Files, MetricInfo, Metrics, done};
use crate::cgroup::parse::{parse_u64, trim};
use crate::smaps::parse::for_each_line;

pub const METRICS: &[MetricInfo] = &[
    done("system.processes.count", true),
    done("system.processes.created", true),
];

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub metrics: Metrics,
}

/// The Collector's `status` for a state letter (gopsutil's `convertStatusChar`).
pub fn status_of(letter: u8) -> &'static str {
    match letter {
        b'A' => "daemon",
        b'D' | b'U' => "blocked",
        b'E' => "detached",
        b'I' => "idle",
        b'L' => "locked",
        b'O' => "orphan",
        b'R' => "running",
        b'S' => "sleeping",
        b'T' | b't' => "stopped",
        b'W' => "paging",
        b'Y' => "system",
        b'Z' => "zombies",
        _ => "unknown",
    }
}

/// The state letter of a `/proc/PID/stat`: the first word after the last `)` (the
/// command name may itself contain `)` and spaces).
pub fn state_letter(stat: &[u8]) -> Option<u8> {
    let close = memchr::memrchr(b')', stat)?;
    stat[close + 1..]
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace())
}

/// `procs_running`, `procs_blocked` and `processes` of `/proc/stat`.
pub fn parse_misc(data: &[u8]) -> (Option<u64>, Option<u64>, Option<u64>) {
    let (mut running, mut blocked, mut created) = (None, None, None);
    for_each_line(data, |line, _| {
        if let Some(v) = line.strip_prefix(b"procs_running ") {
            running = parse_u64(trim(v));
        } else if let Some(v) = line.strip_prefix(b"procs_blocked ") {
            blocked = parse_u64(trim(v));
        } else if let Some(v) = line.strip_prefix(b"processes ") {
            created = parse_u64(trim(v));
        }
    });
    (running, blocked, created)
}

pub struct Scraper {
    enabled: Enabled,
    name: String,
}

impl Scraper {
    pub fn new(config: &Config) -> Scraper {
        Scraper {
            enabled: Enabled::resolve(METRICS, &config.metrics),
            name: String::with_capacity(32),
        }
    }

    pub fn scrape(&mut self, files: &mut Files, out: &mut Out) -> Result<(), String> {
        if !self.enabled.any() {
            return Ok(());
        }
        let (running, blocked, created) = parse_misc(files.read("stat")?);
        if self.enabled.on("system.processes.count") {
            let mut counts: Vec<(&'static str, u64)> = Vec::with_capacity(8);
            let mut pids = 0u64;
            let dir = std::fs::read_dir(files.proc_dir())
                .map_err(|e| format!("listing {}: {e}", files.proc_dir().display()))?;
            for entry in dir.flatten() {
                let file_name = entry.file_name();
                let Some(pid) = file_name
                    .to_str()
                    .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                else {
                    continue;
                };
                pids += 1;
                self.name.clear();
                self.name.push_str(pid);
                self.name.push_str("/stat");
                // A process that exited since the listing is not counted.
                let Ok(stat) = files.read(&self.name) else {
                    continue;
                };
                let status = state_letter(stat).map_or("unknown", status_of);
                match counts.iter_mut().find(|(s, _)| *s == status) {
                    Some(entry) => entry.1 += 1,
                    None => counts.push((status, 1)),
                }
            }
            for (status, exact) in [("running", running), ("blocked", blocked)] {
                let Some(exact) = exact else { continue };
                match counts.iter_mut().find(|(s, _)| *s == status) {
                    Some(entry) => entry.1 = exact,
                    None => counts.push((status, exact)),
                }
            }
            // The Collector (gopsutil's NumProcs): when the PID directories outnumber the
            // statuses counted, `unknown` becomes the difference (replacing its count).
            let known: u64 = counts.iter().map(|(_, n)| n).sum();
            if pids > known {
                match counts.iter_mut().find(|(s, _)| *s == "unknown") {
                    Some(entry) => entry.1 = pids - known,
                    None => counts.push(("unknown", pids - known)),
                }
            }
            counts.sort_unstable();
            for (status, count) in counts {
                out.int(
                    Kind::UpDown,
                    "system.processes.count",
                    "{processes}",
                    count,
                    &[("status", status)],
                );
            }
        }
        if self.enabled.on("system.processes.created") {
            let created = created.ok_or("/proc/stat has no `processes` line")?;
            out.int(
                Kind::Counter,
                "system.processes.created",
                "{processes}",
                created,
                &[],
            );
        }
        Ok(())
    }
}
