//! `process` scraper: one `ResourceMetrics` per process, from `/proc/PID/{stat,status,
//! statm,cmdline,io,exe,fd}`, with the Collector's resource attributes (`process.pid`,
//! `process.executable.name`, `process.owner`, ...).
//!
//! As in the Collector, a process whose name cannot be read is skipped (an error unless
//! `mute_process_name_error`); one whose executable cannot be read (kernel threads have no
//! `exe`; another user's process without privileges) is reported with an empty
//! `process.executable.path` (an error unless `mute_process_exe_error`); an unreadable `io` file only drops `process.disk.*`
//! of that process (error unless `mute_process_io_error`), an unknown uid only drops
//! `process.owner` (error unless `mute_process_user_error`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use serde::Deserialize;

use super::emit::{Kind, Out};
use super::filter::{DeviceFilter, MatchConfig};
use super::{Enabled, Files, MetricInfo, MetricSetting, Metrics, done, missing};
use crate::cgroup::emit::{int_attribute, string_attribute};
use crate::cgroup::parse::{parse_u64, trim};
use crate::smaps::parse::for_each_line;
use oxcol_core::GoDuration;

pub const METRICS: &[MetricInfo] = &[
    done("process.cpu.time", true),
    done("process.memory.usage", true),
    done("process.memory.virtual", true),
    done("process.disk.io", true),
    done("process.memory.utilization", false),
    done("process.disk.operations", false),
    done("process.threads", false),
    done("process.paging.faults", false),
    done("process.context_switches", false),
    done("process.open_file_descriptors", false),
    done("process.uptime", false),
    missing("process.cpu.utilization", false),
    missing("process.signals_pending", false),
    missing("process.handles", false),
];

pub const RESOURCE_ATTRIBUTES: &[MetricInfo] = &[
    done("process.pid", true),
    done("process.parent_pid", true),
    done("process.executable.name", true),
    done("process.executable.path", true),
    done("process.command", true),
    done("process.command_line", true),
    done("process.owner", true),
    missing("process.cgroup", false),
    missing("process.linux.cgroup", false),
];

/// `include`/`exclude`: `{names: [...], match_type: strict|regexp}`, matched against the
/// executable name.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NameMatch {
    pub names: Vec<String>,
    pub match_type: String,
}

impl NameMatch {
    pub fn as_match(&self) -> MatchConfig {
        MatchConfig {
            devices: self.names.clone(),
            match_type: self.match_type.clone(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub metrics: Metrics,
    pub resource_attributes: std::collections::BTreeMap<String, MetricSetting>,
    pub include: Option<NameMatch>,
    pub exclude: Option<NameMatch>,
    pub mute_process_name_error: bool,
    pub mute_process_exe_error: bool,
    pub mute_process_io_error: bool,
    pub mute_process_user_error: bool,
    pub mute_process_cgroup_error: bool,
    pub mute_process_all_errors: bool,
    /// Processes younger than this are left out. Default `0s`.
    pub scrape_process_delay: GoDuration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            metrics: Metrics::default(),
            resource_attributes: Default::default(),
            include: None,
            exclude: None,
            mute_process_name_error: false,
            mute_process_exe_error: false,
            mute_process_io_error: false,
            mute_process_user_error: false,
            mute_process_cgroup_error: false,
            mute_process_all_errors: false,
            scrape_process_delay: GoDuration::from_millis(0),
        }
    }
}

/// The fields of `/proc/PID/stat` used (times in ticks).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stat {
    pub ppid: u64,
    pub minflt: u64,
    pub majflt: u64,
    pub utime: u64,
    pub stime: u64,
    pub threads: u64,
    pub starttime: u64,
    pub blkio_ticks: u64,
}

/// Parses `/proc/PID/stat`; the words after the command's last `)`.
pub fn parse_stat(data: &[u8]) -> Option<Stat> {
    let close = memchr::memrchr(b')', data)?;
    let mut words = data[close + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    // After ")": state(0) ppid(1) ... minflt(7) majflt(9) utime(11) stime(12)
    // num_threads(17) starttime(19) ... delayacct_blkio_ticks(39).
    let mut stat = Stat::default();
    for (i, word) in words.by_ref().enumerate().take(40) {
        let value = || parse_u64(word);
        match i {
            1 => stat.ppid = value()?,
            7 => stat.minflt = value()?,
            9 => stat.majflt = value()?,
            11 => stat.utime = value()?,
            12 => stat.stime = value()?,
            17 => stat.threads = value()?,
            19 => stat.starttime = value()?,
            39 => stat.blkio_ticks = value().unwrap_or(0),
            _ => {}
        }
    }
    Some(stat)
}

/// The fields of `/proc/PID/status` used.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Status {
    pub name: String,
    pub uid: Option<u64>,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

pub fn parse_status(data: &[u8]) -> Status {
    let mut status = Status::default();
    for_each_line(data, |line, _| {
        let Some(colon) = memchr::memchr(b':', line) else {
            return;
        };
        let value = trim(&line[colon + 1..]);
        match &line[..colon] {
            b"Name" => status.name = String::from_utf8_lossy(value).into_owned(),
            b"Uid" => {
                status.uid = value
                    .split(|b| b.is_ascii_whitespace())
                    .next()
                    .and_then(parse_u64)
            }
            b"voluntary_ctxt_switches" => status.voluntary_switches = parse_u64(value).unwrap_or(0),
            b"nonvoluntary_ctxt_switches" => {
                status.involuntary_switches = parse_u64(value).unwrap_or(0)
            }
            _ => {}
        }
    });
    status
}

/// `rchar`, `wchar`, `syscr`, `syscw` of `/proc/PID/io`: what gopsutil calls `ReadBytes`
/// and `WriteBytes` and the Collector reports as `process.disk.io` (bytes read and written
/// through syscalls, page cache included, not only the block device's `read_bytes`).
pub fn parse_io(data: &[u8]) -> [u64; 4] {
    let mut io = [0; 4];
    for_each_line(data, |line, _| {
        let Some(colon) = memchr::memchr(b':', line) else {
            return;
        };
        let slot = match &line[..colon] {
            b"rchar" => 0,
            b"wchar" => 1,
            b"syscr" => 2,
            b"syscw" => 3,
            _ => return,
        };
        io[slot] = parse_u64(trim(&line[colon + 1..])).unwrap_or(0);
    });
    io
}

/// `uid -> name` from an `/etc/passwd` text.
pub fn parse_passwd(data: &[u8]) -> HashMap<u64, String> {
    let mut users = HashMap::new();
    for_each_line(data, |line, _| {
        let mut fields = line.split(|b| *b == b':');
        let (Some(name), Some(_), Some(uid)) = (fields.next(), fields.next(), fields.next()) else {
            return;
        };
        if let Some(uid) = parse_u64(uid) {
            users
                .entry(uid)
                .or_insert_with(|| String::from_utf8_lossy(name).into_owned());
        }
    });
    users
}

pub struct Scraper {
    enabled: Enabled,
    attributes: Enabled,
    filter: DeviceFilter,
    aggregations: Vec<super::Aggregation>,
    mute_name: bool,
    mute_exe: bool,
    mute_io: bool,
    mute_user: bool,
    delay_nanos: u64,
    ticks_per_second: u64,
    page_size: u64,
    root: PathBuf,
    path: String,
}

impl Scraper {
    pub fn new(config: &Config, root: &Path) -> Result<Scraper, String> {
        let all = config.mute_process_all_errors;
        Ok(Scraper {
            enabled: Enabled::resolve(METRICS, &config.metrics),
            attributes: Enabled::resolve(RESOURCE_ATTRIBUTES, &config.resource_attributes),
            filter: DeviceFilter::new(
                &config.include.as_ref().map(NameMatch::as_match),
                &config.exclude.as_ref().map(NameMatch::as_match),
            )
            .map_err(|e| format!("scrapers.process: {e}"))?,
            aggregations: super::aggregations(METRICS, &config.metrics),
            mute_name: all || config.mute_process_name_error,
            mute_exe: all || config.mute_process_exe_error,
            mute_io: all || config.mute_process_io_error,
            mute_user: all || config.mute_process_user_error,
            delay_nanos: u64::try_from(config.scrape_process_delay.get().as_nanos())
                .unwrap_or(u64::MAX),
            ticks_per_second: crate::cgroup::emit::clock_ticks_per_second(),
            page_size: super::memory::page_size(),
            root: root.to_path_buf(),
            path: String::with_capacity(32),
        })
    }

    fn read<'a>(
        &mut self,
        files: &'a mut Files,
        pid: &str,
        file: &str,
    ) -> Result<&'a [u8], String> {
        self.path.clear();
        self.path.push_str(pid);
        self.path.push('/');
        self.path.push_str(file);
        files.read(&self.path)
    }

    /// (involuntary, voluntary) context switches summed over the threads of `/proc/PID/task`,
    /// as the Collector reports a multi-threaded process (`/proc/PID/status` counts only its
    /// main thread). A thread that exits meanwhile is left out.
    fn thread_switches(&mut self, files: &mut Files, pid: &str) -> (u64, u64) {
        let mut tids: Vec<String> = Vec::new();
        if let Ok(dir) = std::fs::read_dir(files.proc_dir().join(pid).join("task")) {
            tids.extend(
                dir.flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_string)),
            );
        }
        let (mut involuntary, mut voluntary) = (0u64, 0u64);
        let mut file = String::with_capacity(32);
        for tid in &tids {
            file.clear();
            file.push_str("task/");
            file.push_str(tid);
            file.push_str("/status");
            if let Ok(status) = self.read(files, pid, &file).map(parse_status) {
                involuntary = involuntary.saturating_add(status.involuntary_switches);
                voluntary = voluntary.saturating_add(status.voluntary_switches);
            }
        }
        (involuntary, voluntary)
    }

    /// Every process's metrics. Errors are per process and do not stop the scrape; they
    /// are returned joined (at most a few named) next to what was read.
    pub fn scrape(
        &mut self,
        files: &mut Files,
        now: u64,
        boot: u64,
    ) -> (Vec<ResourceMetrics>, Result<(), String>) {
        let mut out = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        let pids: Vec<String> = match std::fs::read_dir(files.proc_dir()) {
            Ok(dir) => dir
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                        .map(str::to_string)
                })
                .collect(),
            Err(e) => {
                return (
                    out,
                    Err(format!("listing {}: {e}", files.proc_dir().display())),
                );
            }
        };
        let mem_total = if self.enabled.on("process.memory.utilization") {
            files
                .read("meminfo")
                .ok()
                .and_then(super::memory::parse_meminfo)
                .map(|m| m.total)
        } else {
            None
        };
        let users = if self.attributes.on("process.owner") {
            std::fs::read(self.root.join("etc/passwd"))
                .map(|d| parse_passwd(&d))
                .unwrap_or_default()
        } else {
            HashMap::new()
        };
        for pid in &pids {
            // A process that exited since the listing is not an error.
            let Ok(stat) = self.read(files, pid, "stat").map(parse_stat) else {
                continue;
            };
            let Some(stat) = stat else { continue };
            let Ok(status) = self.read(files, pid, "status").map(parse_status) else {
                continue;
            };
            if status.name.is_empty() {
                if !self.mute_name {
                    errors.push(format!("pid {pid}: no process name"));
                }
                continue;
            }
            // As in the Collector: an unreadable exe (kernel threads, no privileges) is an
            // error, and the process is still reported with an empty executable path.
            let exe = match std::fs::read_link(files.proc_dir().join(pid).join("exe")) {
                Ok(path) => path.to_string_lossy().into_owned(),
                Err(e) => {
                    if !self.mute_exe {
                        errors.push(format!(
                            "pid {pid} ({}): reading the executable: {e}",
                            status.name
                        ));
                    }
                    String::new()
                }
            };
            let cmdline: Option<Vec<String>> = self
                .read(files, pid, "cmdline")
                .map(|d| {
                    d.split(|b| *b == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect()
                })
                .ok();
            // gopsutil: the kernel truncates Name to 15 bytes; argv[0]'s file name is whole.
            let name = match cmdline
                .as_ref()
                .and_then(|c| c.first())
                .and_then(|a| a.rsplit('/').next())
            {
                Some(base) if status.name.len() >= 15 && base.starts_with(&status.name) => {
                    base.to_string()
                }
                _ => status.name.clone(),
            };
            if !self.filter.passes(&name) {
                continue;
            }
            let start = boot.saturating_add(
                stat.starttime.saturating_mul(1_000_000_000) / self.ticks_per_second.max(1),
            );
            if self.delay_nanos > 0 && now.saturating_sub(start) < self.delay_nanos {
                continue;
            }
            let mut attributes: Vec<KeyValue> = Vec::with_capacity(7);
            let pid_number = pid.parse::<i64>().unwrap_or(0);
            if self.attributes.on("process.pid") {
                attributes.push(int_attribute("process.pid", pid_number));
            }
            if self.attributes.on("process.parent_pid") {
                attributes.push(int_attribute(
                    "process.parent_pid",
                    i64::try_from(stat.ppid).unwrap_or(0),
                ));
            }
            if self.attributes.on("process.executable.name") {
                attributes.push(string_attribute("process.executable.name", &name));
            }
            if self.attributes.on("process.executable.path") {
                attributes.push(string_attribute("process.executable.path", &exe));
            }
            match &cmdline {
                Some(cmdline) => {
                    if self.attributes.on("process.command") {
                        attributes.push(string_attribute(
                            "process.command",
                            cmdline.first().map_or("", String::as_str),
                        ));
                    }
                    if self.attributes.on("process.command_line") {
                        attributes
                            .push(string_attribute("process.command_line", &cmdline.join(" ")));
                    }
                }
                None => errors.push(format!(
                    "pid {pid} ({name}): reading the command line failed"
                )),
            }
            if self.attributes.on("process.owner") {
                match status.uid.and_then(|uid| users.get(&uid)) {
                    Some(user) => attributes.push(string_attribute("process.owner", user)),
                    None if !self.mute_user => errors.push(format!(
                        "pid {pid} ({name}): no user for uid {:?}",
                        status.uid
                    )),
                    None => {}
                }
            }

            let mut sink = Out::new(now, start);
            let hz = self.ticks_per_second as f64;
            if self.enabled.on("process.cpu.time") {
                sink.double(
                    Kind::Counter,
                    "process.cpu.time",
                    "s",
                    stat.utime as f64 / hz,
                    &[("state", "user")],
                );
                sink.double(
                    Kind::Counter,
                    "process.cpu.time",
                    "s",
                    stat.stime as f64 / hz,
                    &[("state", "system")],
                );
                sink.double(
                    Kind::Counter,
                    "process.cpu.time",
                    "s",
                    stat.blkio_ticks as f64 / hz,
                    &[("state", "wait")],
                );
            }
            let wants_memory = [
                "process.memory.usage",
                "process.memory.virtual",
                "process.memory.utilization",
            ]
            .iter()
            .any(|m| self.enabled.on(m));
            // `statm`, as gopsutil: its resident count is exact, where `rss` of `stat` is the
            // kernel's approximate per-CPU counter (they differ by ~10% on Linux 6.18).
            if wants_memory && let Ok(statm) = self.read(files, pid, "statm") {
                let mut words = statm
                    .split(|b| b.is_ascii_whitespace())
                    .filter(|w| !w.is_empty())
                    .map(parse_u64);
                let (virtual_pages, rss_pages) = (
                    words.next().flatten().unwrap_or(0),
                    words.next().flatten().unwrap_or(0),
                );
                let rss = rss_pages.saturating_mul(self.page_size);
                if self.enabled.on("process.memory.usage") {
                    sink.int(Kind::UpDown, "process.memory.usage", "By", rss, &[]);
                }
                if self.enabled.on("process.memory.virtual") {
                    sink.int(
                        Kind::UpDown,
                        "process.memory.virtual",
                        "By",
                        virtual_pages.saturating_mul(self.page_size),
                        &[],
                    );
                }
                if let Some(total) = mem_total.filter(|t| *t > 0) {
                    // The Collector's number: gopsutil's MemoryPercent, a percentage (0-100,
                    // under unit "1") computed in float32.
                    let percent = 100.0f32 * rss as f32 / total as f32;
                    sink.double(
                        Kind::Gauge,
                        "process.memory.utilization",
                        "1",
                        f64::from(percent),
                        &[],
                    );
                }
            }
            if self.enabled.on("process.disk.io") || self.enabled.on("process.disk.operations") {
                match self.read(files, pid, "io").map(parse_io) {
                    Ok([read, write, syscr, syscw]) => {
                        if self.enabled.on("process.disk.io") {
                            sink.int(
                                Kind::Counter,
                                "process.disk.io",
                                "By",
                                read,
                                &[("direction", "read")],
                            );
                            sink.int(
                                Kind::Counter,
                                "process.disk.io",
                                "By",
                                write,
                                &[("direction", "write")],
                            );
                        }
                        if self.enabled.on("process.disk.operations") {
                            sink.int(
                                Kind::Counter,
                                "process.disk.operations",
                                "{operations}",
                                syscr,
                                &[("direction", "read")],
                            );
                            sink.int(
                                Kind::Counter,
                                "process.disk.operations",
                                "{operations}",
                                syscw,
                                &[("direction", "write")],
                            );
                        }
                    }
                    Err(e) if !self.mute_io => errors.push(format!("pid {pid} ({name}): {e}")),
                    Err(_) => {}
                }
            }
            if self.enabled.on("process.threads") {
                sink.int(
                    Kind::UpDown,
                    "process.threads",
                    "{threads}",
                    stat.threads,
                    &[],
                );
            }
            if self.enabled.on("process.paging.faults") {
                sink.int(
                    Kind::Counter,
                    "process.paging.faults",
                    "{faults}",
                    stat.majflt,
                    &[("type", "major")],
                );
                sink.int(
                    Kind::Counter,
                    "process.paging.faults",
                    "{faults}",
                    stat.minflt,
                    &[("type", "minor")],
                );
            }
            if self.enabled.on("process.context_switches") {
                let name = "process.context_switches";
                let (involuntary, voluntary) = if stat.threads > 1 {
                    self.thread_switches(files, pid)
                } else {
                    (status.involuntary_switches, status.voluntary_switches)
                };
                sink.int(
                    Kind::Counter,
                    name,
                    "{count}",
                    involuntary,
                    &[("type", "involuntary")],
                );
                sink.int(
                    Kind::Counter,
                    name,
                    "{count}",
                    voluntary,
                    &[("type", "voluntary")],
                );
            }
            if self.enabled.on("process.open_file_descriptors")
                && let Ok(fds) = std::fs::read_dir(files.proc_dir().join(pid).join("fd"))
            {
                sink.int(
                    Kind::UpDown,
                    "process.open_file_descriptors",
                    "{count}",
                    fds.count() as u64,
                    &[],
                );
            }
            if self.enabled.on("process.uptime") {
                sink.double(
                    Kind::Gauge,
                    "process.uptime",
                    "s",
                    now.saturating_sub(start) as f64 / 1e9,
                    &[],
                );
            }
            sink.aggregate(&self.aggregations);
            if !sink.is_empty() {
                out.push(sink.finish_with("process", attributes));
            }
        }
        let result = if errors.is_empty() {
            Ok(())
        } else {
            let shown = errors
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ");
            Err(format!(
                "{} process errors (set the mute_process_*_error options to silence them): {shown}",
                errors.len()
            ))
        };
        (out, result)
    }
}
