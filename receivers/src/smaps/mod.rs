//! `smaps` receiver: per-process memory truth from `/proc/PID/smaps_rollup` (Rss, Pss,
//! Pss_Anon, Private_Dirty, Swap, ...), one metric per field, for the processes the
//! config selects.
//!
//! smaps_rollup walks the target's page tables under its mmap lock, so the cost is
//! O(mapped pages) and it can contend with the target's page faults: select processes
//! deliberately and poll at 10 s or slower on big hosts. A process that exits between
//! listing and reading, or that oxcol may not read (the ptrace access check returns
//! EACCES despite the 0444 mode), is skipped and counted in
//! `oxcol_smaps_skipped_processes{receiver,reason}`; it never fails the scrape.
//!
//! Identity is (pid, starttime from /proc/PID/stat): a reused pid is a new process, with
//! a new `process.creation.time` and a new data-point start time.
//!
//! `detailed: true` also reads full /proc/PID/smaps (see [`detailed`]): the same page
//! walk again plus the kernel formatting ~25 lines per mapping, ~2.5x the rollup scrape
//! for a process with a few dozen mappings and more with thousands;
//! docs/components/smaps.md has the measured numbers.

pub mod detailed;
mod encode;
mod kubernetes;
pub mod parse;

use std::collections::HashMap;
use std::io::{ErrorKind, Read as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use oxcol_core::GoDuration;
use oxcol_core::batch::metric_points;
use oxcol_core::telemetry::{Counter, Registry};
use prost::Message as _;
use regex::Regex;
use serde::Deserialize;

use crate::cgroup::emit::{ResourceBuilder, int_attribute, string_attribute, unix_nanos};
use crate::scraper::{EncodedMetrics, ScrapeOutput, Scraper};
use encode::SCOPE_METRICS_METRICS;

pub const TYPE: &str = "smaps";
pub const ALIASES: &[&str] = &["smaps"];
pub const SCOPE: &str = "oxcol/receiver/smaps";

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How often to read. Default `10s`.
    pub collection_interval: GoDuration,
    /// Where procfs is mounted. Default `/proc` (in a DaemonSet, e.g. `/host/proc` with
    /// `hostPID`).
    pub proc_path: PathBuf,
    /// oxcol's own process. Default: true when no other selector is set.
    #[serde(rename = "self")]
    pub self_process: Option<bool>,
    /// These pids. Default none.
    pub pids: Vec<u32>,
    /// Files holding one pid each (pid files of daemons), read every scrape. Default none.
    pub pid_files: Vec<PathBuf>,
    /// Regexes (unanchored) on the process name (`comm`) or the executable's file name.
    /// Default none.
    pub names: Vec<String>,
    /// Regexes (unanchored) on the command line, arguments joined by spaces. Default none.
    pub cmdline: Vec<String>,
    /// Processes whose cgroup (any line of /proc/PID/cgroup) is one of these paths or
    /// below one, e.g. `/kubepods.slice`. Default none.
    pub cgroups: Vec<String>,
    /// Every process. Default false.
    pub all: bool,
    /// Read only the `top` selected processes with the largest resident set (ranked by
    /// the cheap /proc/PID/statm, before any smaps_rollup is read). 0 = no bound.
    /// Default 0.
    pub top: usize,
    /// Also read full /proc/PID/smaps and break Rss/Pss/Swap down by mapping class
    /// (heap, stack, anonymous, file, shmem, vdso), plus the `top_files` largest files
    /// by Pss. ~2.5x the cost of the rollup alone for a small process, more with many
    /// mappings. Default false.
    pub detailed: bool,
    /// With `detailed`, how many files (by Pss, summed over their mappings) get
    /// `process.smaps.file.*` points. 0 = none. Default 10.
    pub top_files: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            collection_interval: GoDuration::from_secs(10),
            proc_path: PathBuf::from("/proc"),
            self_process: None,
            pids: Vec::new(),
            pid_files: Vec::new(),
            names: Vec::new(),
            cmdline: Vec::new(),
            cgroups: Vec::new(),
            all: false,
            top: 0,
            detailed: false,
            top_files: 10,
        }
    }
}

impl Config {
    fn has_other_selector(&self) -> bool {
        !self.pids.is_empty()
            || !self.pid_files.is_empty()
            || !self.names.is_empty()
            || !self.cmdline.is_empty()
            || !self.cgroups.is_empty()
            || self.all
    }

    pub fn reads_self(&self) -> bool {
        self.self_process.unwrap_or(!self.has_other_selector())
    }

    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.collection_interval.is_zero() {
            errors.push("collection_interval must be greater than zero (e.g. 10s)".to_string());
        }
        if !self.proc_path.is_absolute() {
            errors.push(format!(
                "proc_path {:?} must be an absolute path (e.g. /proc)",
                self.proc_path
            ));
        }
        for (key, patterns) in [("names", &self.names), ("cmdline", &self.cmdline)] {
            for pattern in patterns {
                if let Err(error) = Regex::new(pattern) {
                    errors.push(format!(
                        "{key}: {pattern:?} is not a valid regular expression: {error}"
                    ));
                }
            }
        }
        if self.top_files > MAX_TOP_FILES {
            errors.push(format!("top_files: {} is more than {MAX_TOP_FILES}; each file is a series per process, set a smaller number", self.top_files));
        }
        if !self.reads_self() && !self.has_other_selector() {
            errors.push(
                "no process selected: set self, pids, pid_files, names, cmdline, cgroups or all"
                    .to_string(),
            );
        }
        errors
    }
}

/// The bound on `top_files` (series per process).
const MAX_TOP_FILES: usize = 1000;

/// `oxcol_smaps_skipped_processes{receiver, reason}`.
struct Skipped {
    exited: Counter,
    permission: Counter,
    io: Counter,
}

impl Skipped {
    fn new(registry: &Registry, receiver: &str) -> Skipped {
        let counter = |reason| {
            registry.counter(
                "oxcol_smaps_skipped_processes",
                "Processes skipped in a scrape: exited while being read, permission denied (ptrace access check), other io error.",
                &[("receiver", receiver), ("reason", reason)],
            )
        };
        Skipped {
            exited: counter("exited"),
            permission: counter("permission"),
            io: counter("io"),
        }
    }

    fn count(&self, error: &std::io::Error) {
        match error.kind() {
            // ESRCH (3) reading a file of a process that has exited.
            ErrorKind::NotFound => self.exited.add(1),
            _ if error.raw_os_error() == Some(3) => self.exited.add(1),
            ErrorKind::PermissionDenied => self.permission.add(1),
            _ => self.io.add(1),
        }
    }
}

/// Reads selected processes synchronously; [`SmapsScraper`] runs it on the blocking pool.
pub struct Collector {
    config: Config,
    names: Vec<Regex>,
    cmdline: Vec<Regex>,
    cgroups: Vec<String>,
    skipped: Skipped,
    /// Read buffer: always initialised (zeros at first), grown by doubling; a read
    /// fills a prefix of it.
    buffer: Vec<u8>,
    /// The /proc listing, reused across scrapes.
    pids: Vec<u32>,
    /// The `comm` of every selected process of this scrape, back to back.
    comms: String,
    path: std::ffi::OsString,
    /// smaps field -> its metric, encoded once per field.
    rollup: encode::RollupMetrics,
    /// The encoded metrics of the process being written, reused across processes.
    metrics: Vec<u8>,
    /// The encoded `ScopeMetrics.scope`, the same for every process.
    scope: Vec<u8>,
    /// The size of the last scrape's output: the next one is allocated once at it.
    encoded_capacity: usize,
    owners: HashMap<u32, String>,
    boot_time_seconds: u64,
    /// pid -> the identity last seen under it, with its encoded resource.
    identities: HashMap<u32, Identity>,
    generation: u64,
    /// USER_HZ (`sysconf(_SC_CLK_TCK)`), the unit of /proc/PID/stat `starttime`.
    clock_ticks: u64,
    /// `detailed`: the per-process breakdown, its file list reused across processes.
    breakdown: detailed::Breakdown,
    /// `detailed`: full smaps reads that failed after the rollup was read.
    detailed_errors: Counter,
}

/// A process selected for reading in this scrape.
#[derive(Clone)]
struct Selected {
    pid: u32,
    /// Its `comm`, a range of `Collector::comms`.
    comm: std::ops::Range<usize>,
    ppid: u64,
    starttime: u64,
}

struct Identity {
    starttime: u64,
    /// `ResourceMetrics.resource`, encoded (see [`encode::resource`]).
    resource: Vec<u8>,
    generation: u64,
}

impl Collector {
    /// `config` must have passed `validate()` (invalid regexes are dropped here).
    pub fn new(id: &str, config: &Config, registry: &Registry) -> Collector {
        let compile = |patterns: &[String]| {
            patterns
                .iter()
                .filter_map(|p| Regex::new(p).ok())
                .collect::<Vec<_>>()
        };
        let boot_time_seconds = std::fs::read_to_string(config.proc_path.join("stat"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
            })
            .unwrap_or(0);
        Collector {
            config: config.clone(),
            names: compile(&config.names),
            cmdline: compile(&config.cmdline),
            cgroups: config.cgroups.iter().map(|c| format!("/{}", c.trim_matches('/'))).collect(),
            skipped: Skipped::new(registry, id),
            buffer: vec![0; 8 * 1024],
            pids: Vec::new(),
            comms: String::new(),
            path: std::ffi::OsString::with_capacity(256),
            rollup: encode::RollupMetrics::default(),
            metrics: Vec::with_capacity(2 * 1024),
            scope: encode::scope(),
            encoded_capacity: 0,
            owners: load_owners(),
            boot_time_seconds,
            identities: HashMap::new(),
            generation: 0,
            clock_ticks: crate::cgroup::emit::clock_ticks_per_second(),
            breakdown: detailed::Breakdown::default(),
            detailed_errors: registry.counter(
                "oxcol_smaps_detailed_read_errors",
                "detailed: full /proc/PID/smaps reads that failed after the process's smaps_rollup was read (it exited, or an io error); the rollup metrics are still emitted.",
                &[("receiver", id)],
            ),
        }
    }

    /// Reads `<proc_path>/<pid>/<file>` whole into the buffer.
    fn read(&mut self, pid: u32, file: &str) -> std::io::Result<&[u8]> {
        use std::os::unix::ffi::OsStrExt as _;
        // The pid in decimal on the stack: no allocation per read.
        let mut digits = [0u8; 10];
        let mut at = digits.len();
        let mut rest = pid;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.path.clear();
        self.path.push(self.config.proc_path.as_os_str());
        self.path.push("/");
        self.path.push(std::ffi::OsStr::from_bytes(&digits[at..]));
        self.path.push("/");
        self.path.push(file);
        let mut handle = std::fs::File::open(Path::new(&self.path))?;
        let filled = read_all(&mut handle, &mut self.buffer)?;
        Ok(&self.buffer[..filled])
    }

    /// The numeric entries of `proc_path` into `pids` (cleared first).
    fn list_pids(&self, pids: &mut Vec<u32>) {
        use std::os::unix::ffi::OsStrExt as _;
        pids.clear();
        let Ok(entries) = std::fs::read_dir(&self.config.proc_path) else {
            return;
        };
        pids.extend(
            entries
                .flatten()
                .filter_map(|e| parse_pid(e.file_name().as_bytes())),
        );
    }

    /// Whether a listed process matches names/cmdline/cgroups (or `all`).
    fn matches(&mut self, pid: u32, comm: &str) -> bool {
        if self.config.all {
            return true;
        }
        if !self.names.is_empty() {
            if self.names.iter().any(|r| r.is_match(comm)) {
                return true;
            }
            let exe =
                std::fs::read_link(self.config.proc_path.join(pid.to_string()).join("exe")).ok();
            if let Some(name) = exe
                .as_ref()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
            {
                if self.names.iter().any(|r| r.is_match(name)) {
                    return true;
                }
            }
        }
        if !self.cmdline.is_empty() {
            if let Ok(data) = self.read(pid, "cmdline") {
                let line: String = String::from_utf8_lossy(data)
                    .trim_end_matches('\0')
                    .replace('\0', " ");
                if self.cmdline.iter().any(|r| r.is_match(&line)) {
                    return true;
                }
            }
        }
        if !self.cgroups.is_empty() {
            if let Ok(data) = self.read(pid, "cgroup") {
                let text = String::from_utf8_lossy(data).into_owned();
                let inside = |path: &str| {
                    self.cgroups.iter().any(|c| {
                        c == "/"
                            || path == c
                            || path
                                .strip_prefix(c.as_str())
                                .is_some_and(|r| r.starts_with('/'))
                    })
                };
                if text
                    .lines()
                    .filter_map(|l| l.splitn(3, ':').nth(2))
                    .any(inside)
                {
                    return true;
                }
            }
        }
        false
    }

    /// Resident pages from /proc/PID/statm, for `top` ranking.
    fn resident_pages(&mut self, pid: u32) -> u64 {
        match self.read(pid, "statm") {
            Ok(data) => data
                .split(|b| *b == b' ')
                .nth(1)
                .and_then(|f| std::str::from_utf8(f).ok()?.parse().ok())
                .unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// The pids to read this scrape, deduplicated, before `top`.
    fn explicit_pids(&mut self) -> Vec<u32> {
        let mut pids = self.config.pids.clone();
        if self.config.reads_self() {
            pids.push(std::process::id());
        }
        for file in self.config.pid_files.clone() {
            match std::fs::read_to_string(&file) {
                Ok(text) => match text.trim().parse() {
                    Ok(pid) => pids.push(pid),
                    Err(_) => self.skipped.io.add(1),
                },
                Err(error) => self.skipped.count(&error),
            }
        }
        pids
    }

    /// One scrape as `ResourceMetrics`, decoded from [`Collector::collect_encoded`] (for
    /// tests and tools; the receiver delivers the encoded bytes).
    pub fn collect(&mut self, now: SystemTime) -> Vec<ResourceMetrics> {
        let encoded = self.collect_encoded(now);
        // Our own writer's output: a decode error would be a bug in it, which the tests
        // comparing against the object-model builder catch.
        ExportMetricsServiceRequest::decode(encoded.bytes)
            .map(|request| request.resource_metrics)
            .unwrap_or_default()
    }

    /// One scrape: an encoded `ExportMetricsServiceRequest` with one `ResourceMetrics`
    /// per process read. The rollup metrics are written straight from the parsed fields
    /// (names and units encoded once per field, the resource once per identity, the
    /// scope once): building them as OTLP objects took ~80 allocations per process,
    /// about half the scrape. `detailed` metrics are built as objects and encoded.
    pub fn collect_encoded(&mut self, now: SystemTime) -> EncodedMetrics {
        self.generation += 1;
        let generation = self.generation;
        let now_nanos = unix_nanos(now);
        let selected = self.select();
        let comms = std::mem::take(&mut self.comms);
        let mut metrics = std::mem::take(&mut self.metrics);
        let mut out = Vec::with_capacity(self.encoded_capacity);
        let mut points = 0;
        for process in &selected {
            let (start_seconds, start_nanos) = self.start_time(process.starttime);
            let filled = match self.read(process.pid, "smaps_rollup") {
                Ok(data) => data.len(),
                Err(error) => {
                    self.skipped.count(&error);
                    continue;
                }
            };
            metrics.clear();
            let rollup_points = self
                .rollup
                .write(&self.buffer[..filled], now_nanos, &mut metrics);
            // An empty rollup: a kernel thread, or the process exited mid-read.
            if rollup_points == 0 {
                continue;
            }
            points += rollup_points;
            if self.config.detailed {
                points += self.write_detailed(process.pid, now_nanos, start_nanos, &mut metrics);
            }
            let comm = comms.get(process.comm.clone()).unwrap_or_default();
            self.write_resource_metrics(
                process,
                comm,
                start_seconds,
                generation,
                &metrics,
                &mut out,
            );
        }
        self.comms = comms;
        self.metrics = metrics;
        self.identities
            .retain(|_, known| known.generation == generation);
        self.encoded_capacity = out.len();
        EncodedMetrics {
            bytes: out.into(),
            points,
        }
    }

    /// The processes to read this scrape: identity from /proc/PID/stat, the selectors,
    /// `top`. Their `comm`s are left in `self.comms` (one string for the scrape, no
    /// allocation per process).
    fn select(&mut self) -> Vec<Selected> {
        let mut candidates: Vec<(u32, bool)> = self
            .explicit_pids()
            .into_iter()
            .map(|p| (p, true))
            .collect();
        let listing = self.config.all
            || !self.names.is_empty()
            || !self.cmdline.is_empty()
            || !self.cgroups.is_empty();
        if listing {
            let mut pids = std::mem::take(&mut self.pids);
            self.list_pids(&mut pids);
            candidates.extend(pids.iter().map(|&p| (p, false)));
            self.pids = pids;
        }
        candidates.sort_unstable_by_key(|(pid, explicit)| (*pid, !*explicit));
        candidates.dedup_by_key(|(pid, _)| *pid);

        let mut comms = std::mem::take(&mut self.comms);
        comms.clear();
        let mut selected: Vec<Selected> = Vec::with_capacity(candidates.len());
        for (pid, explicit) in candidates {
            let (comm, ppid, starttime) = match self.read(pid, "stat") {
                Ok(data) => match parse::parse_stat(data) {
                    // A zombie has no memory to read.
                    Some(stat) if stat.state != b'Z' => {
                        let start = comms.len();
                        comms.push_str(&String::from_utf8_lossy(stat.comm));
                        (start..comms.len(), stat.ppid, stat.starttime)
                    }
                    Some(_) => continue,
                    None => {
                        self.skipped.io.add(1);
                        continue;
                    }
                },
                Err(error) => {
                    // A listed process that exited before we looked is not worth counting
                    // unless it was asked for by pid.
                    if explicit || error.kind() != ErrorKind::NotFound {
                        self.skipped.count(&error);
                    }
                    continue;
                }
            };
            if explicit || self.matches(pid, &comms[comm.clone()]) {
                selected.push(Selected {
                    pid,
                    comm,
                    ppid,
                    starttime,
                });
            } else {
                comms.truncate(comm.start);
            }
        }
        self.comms = comms;
        if self.config.top > 0 && selected.len() > self.config.top {
            let mut ranked: Vec<(u64, usize)> = (0..selected.len())
                .map(|i| (self.resident_pages(selected[i].pid), i))
                .collect();
            ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0));
            let mut keep: Vec<usize> = ranked
                .into_iter()
                .take(self.config.top)
                .map(|(_, i)| i)
                .collect();
            keep.sort_unstable();
            selected = keep.into_iter().map(|i| selected[i].clone()).collect();
        }
        selected
    }

    /// The process's start from its /proc/PID/stat `starttime` (clock ticks after
    /// boot): whole seconds since the epoch (for `process.creation.time`) and
    /// nanoseconds.
    fn start_time(&self, starttime: u64) -> (u64, u64) {
        let ticks = self.clock_ticks;
        let start_seconds = self.boot_time_seconds + starttime / ticks;
        let start_nanos = start_seconds
            .saturating_mul(1_000_000_000)
            .saturating_add((starttime % ticks).saturating_mul(1_000_000_000) / ticks);
        (start_seconds, start_nanos)
    }

    /// `detailed`: reads full smaps and appends its breakdown's metrics to `metrics`
    /// (encoded `ScopeMetrics.metrics` fields); returns their points. A failed read is
    /// counted and adds nothing (the rollup metrics stay).
    fn write_detailed(
        &mut self,
        pid: u32,
        now_nanos: u64,
        start_nanos: u64,
        metrics: &mut Vec<u8>,
    ) -> u64 {
        let filled = match self.read(pid, "smaps") {
            Ok(data) => data.len(),
            Err(_) => {
                self.detailed_errors.add(1);
                return 0;
            }
        };
        let data = &self.buffer[..filled];
        self.breakdown.parse(data, self.config.top_files);
        let mut builder = ResourceBuilder::new(now_nanos, start_nanos, 8);
        self.breakdown.emit(data, &mut builder);
        let mut points = 0;
        for metric in builder.into_metrics() {
            points += metric_points(&metric) as u64;
            prost::encoding::message::encode(SCOPE_METRICS_METRICS, &metric, metrics);
        }
        points
    }

    /// Appends one `ResourceMetrics` (as an `ExportMetricsServiceRequest` field) to
    /// `out`: the process's resource, encoded once per identity (pid, starttime), the
    /// scope, and `metrics`.
    fn write_resource_metrics(
        &mut self,
        process: &Selected,
        comm: &str,
        start_seconds: u64,
        generation: u64,
        metrics: &[u8],
        out: &mut Vec<u8>,
    ) {
        if let Some(known) = self
            .identities
            .get_mut(&process.pid)
            .filter(|known| known.starttime == process.starttime)
        {
            known.generation = generation;
            return encode::resource_metrics(&known.resource, &self.scope, metrics, out);
        }
        let attributes = self.resource_attributes(process.pid, process.ppid, comm, start_seconds);
        let resource = encode::resource(attributes);
        encode::resource_metrics(&resource, &self.scope, metrics, out);
        self.identities.insert(
            process.pid,
            Identity {
                starttime: process.starttime,
                resource,
                generation,
            },
        );
    }

    fn resource_attributes(
        &self,
        pid: u32,
        ppid: u64,
        comm: &str,
        start_seconds: u64,
    ) -> Vec<KeyValue> {
        let owner = std::fs::metadata(self.config.proc_path.join(pid.to_string()))
            .ok()
            .map(|m| m.uid());
        let mut attributes = vec![
            int_attribute("process.pid", i64::from(pid)),
            int_attribute("process.parent_pid", i64::try_from(ppid).unwrap_or(0)),
            string_attribute("process.executable.name", comm),
            string_attribute("process.creation.time", &rfc3339(start_seconds)),
        ];
        if let Some(uid) = owner {
            let name = self
                .owners
                .get(&uid)
                .cloned()
                .unwrap_or_else(|| uid.to_string());
            attributes.push(string_attribute("process.owner", &name));
        }
        // The pod and container from the process's cgroup, for k8sattributes. Read once
        // per identity (pid, starttime), like the rest of the resource.
        let cgroup =
            std::fs::read_to_string(self.config.proc_path.join(pid.to_string()).join("cgroup"))
                .unwrap_or_default();
        let kubernetes = kubernetes::from_proc_cgroup(&cgroup);
        if let Some(uid) = &kubernetes.pod_uid {
            attributes.push(string_attribute("k8s.pod.uid", uid));
        }
        if let Some(id) = &kubernetes.container_id {
            attributes.push(string_attribute("container.id", id));
        }
        attributes
    }
}

/// Reads `file` to its end into `buffer` from the start, growing it when full; returns
/// the bytes read. Unlike `read_to_end`, it asks for no size hint (procfs files report
/// size 0, so the `statx` + `lseek` that `read_to_end` makes per file are wasted).
pub(crate) fn read_all(file: &mut std::fs::File, buffer: &mut Vec<u8>) -> std::io::Result<usize> {
    if buffer.is_empty() {
        buffer.resize(8 * 1024, 0);
    }
    let mut filled = 0;
    loop {
        if filled == buffer.len() {
            buffer.resize(buffer.len() * 2, 0);
        }
        match file.read(&mut buffer[filled..]) {
            Ok(0) => return Ok(filled),
            Ok(n) => filled += n,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

/// A /proc entry name as a pid: decimal digits only.
fn parse_pid(name: &[u8]) -> Option<u32> {
    if name.is_empty() || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}

/// uid -> user name from /etc/passwd (read once).
fn load_owners() -> HashMap<u32, String> {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid = fields.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

/// Seconds since the epoch as RFC 3339 UTC (`2024-05-01T12:00:00Z`).
fn rfc3339(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rem = seconds % 86_400;
    let (year, month, day) = oxcol_core::civil::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The receiver as a pull scraper, on tokio's blocking pool.
pub struct SmapsScraper {
    collector: Option<Box<Collector>>,
}

impl SmapsScraper {
    pub fn new(id: &str, config: &Config, registry: &Arc<Registry>) -> SmapsScraper {
        SmapsScraper {
            collector: Some(Box::new(Collector::new(id, config, registry))),
        }
    }
}

impl Scraper for SmapsScraper {
    fn scrape(&mut self, now: SystemTime) -> BoxFuture<'_, Result<ScrapeOutput, String>> {
        Box::pin(async move {
            let mut collector = self
                .collector
                .take()
                .ok_or("a previous smaps scrape panicked; the receiver is stopped")?;
            let (collector, metrics) = tokio::task::spawn_blocking(move || {
                let metrics = collector.collect_encoded(now);
                (collector, metrics)
            })
            .await
            .map_err(|e| format!("smaps scrape task failed: {e}"))?;
            self.collector = Some(collector);
            Ok(ScrapeOutput {
                encoded_metrics: (metrics.points > 0).then_some(metrics),
                ..ScrapeOutput::default()
            })
        })
    }
}

#[cfg(test)]
mod tests;
