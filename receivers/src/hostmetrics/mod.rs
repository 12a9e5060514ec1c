//! `host_metrics` receiver (also spelled `hostmetrics`): the node's CPU, load, memory,
//! network, disk, filesystem, paging, process-count, uptime and per-process metrics, read
//! from `/proc` (under `root_path`, so a node agent in a container reads the host's `/proc`
//! through a mount), with the Collector's config keys, metric names, units, attributes and
//! defaults (contrib v0.161.0).
//!
//! One file per scraper. The system-wide scrapers read their files into one reused buffer
//! and parse them without allocating; the OTLP output allocates. A scraper that fails (a
//! file missing under `root_path`) is logged and counted, keeps what it did read, and the
//! other scrapers of the same scrape are still delivered. The scrape fails as a whole only
//! when every scraper failed and nothing was read.

pub mod cpu;
pub mod disk;
pub mod emit;
pub mod filesystem;
pub mod filter;
pub mod load;
pub mod memory;
pub mod metadata;
pub mod network;
pub mod paging;
pub mod process;
pub mod processes;
pub mod system;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use oxcol_core::GoDuration;
use oxcol_core::telemetry::{Counter, Registry};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

use crate::cgroup::emit::unix_nanos;
use crate::scraper::{ScrapeOutput, Scraper};
use emit::Out;
use filter::MatchConfig;

/// The Collector's type since v0.154 is `host_metrics`; `hostmetrics` is its deprecated spelling.
pub const TYPE: &str = "host_metrics";
pub const ALIASES: &[&str] = &["host_metrics", "hostmetrics"];

/// `metrics: {<name>: {enabled: bool}}` of one scraper.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricSetting {
    pub enabled: Option<bool>,
    /// The attributes kept (the Collector's `mdatagen` key); points whose kept attributes
    /// are equal are merged by `aggregation_strategy`. Default: the metric's default
    /// attributes (all but the opt-in `cpu`).
    pub attributes: Option<Vec<String>>,
    /// `sum`, `avg`, `min` or `max`. Default: `sum` for sums, `avg` for gauges.
    pub aggregation_strategy: Option<String>,
}

pub type Metrics = BTreeMap<String, MetricSetting>;

/// One metric a scraper knows: its name, whether the Collector enables it by default,
/// and whether oxcol emits it.
pub struct MetricInfo {
    pub name: &'static str,
    pub default_enabled: bool,
    pub implemented: bool,
}

const fn done(name: &'static str, default_enabled: bool) -> MetricInfo {
    MetricInfo {
        name,
        default_enabled,
        implemented: true,
    }
}

const fn missing(name: &'static str, default_enabled: bool) -> MetricInfo {
    MetricInfo {
        name,
        default_enabled,
        implemented: false,
    }
}

/// Which metrics of one scraper are on, resolved once at start from `metrics:` and the
/// Collector's defaults.
pub struct Enabled(Vec<&'static str>);

impl Enabled {
    fn resolve(known: &'static [MetricInfo], settings: &Metrics) -> Enabled {
        Enabled(
            known
                .iter()
                .filter(|m| {
                    m.implemented
                        && settings
                            .get(m.name)
                            .and_then(|s| s.enabled)
                            .unwrap_or(m.default_enabled)
                })
                .map(|m| m.name)
                .collect(),
        )
    }

    pub fn on(&self, name: &str) -> bool {
        self.0.contains(&name)
    }

    pub fn any(&self) -> bool {
        !self.0.is_empty()
    }
}

fn validate_metrics(key: &str, known: &[MetricInfo], settings: &Metrics, errors: &mut Vec<String>) {
    for (name, setting) in settings {
        if setting.attributes.is_some() || setting.aggregation_strategy.is_some() {
            match metadata::attributes(name) {
                None if known.iter().any(|m| m.name == name) => errors.push(format!(
                    "scrapers.{key}.{name}: this metric has no attributes, so no `attributes` or `aggregation_strategy`"
                )),
                None => {}
                Some(meta) => {
                    for attribute in setting.attributes.iter().flatten() {
                        if !meta.all.contains(&attribute.as_str()) {
                            errors.push(format!(
                                "scrapers.{key}.{name}.attributes: {attribute:?} is not an attribute of this metric; its attributes are: {}",
                                meta.all.join(", ")
                            ));
                        }
                    }
                    if let Some(strategy) = &setting.aggregation_strategy
                        && parse_strategy(strategy).is_none()
                    {
                        errors.push(format!(
                            "scrapers.{key}.{name}.aggregation_strategy: {strategy:?} is not one of sum, avg, min, max"
                        ));
                    }
                }
            }
        }
        match known.iter().find(|m| m.name == name) {
            None => errors.push(format!(
                "scrapers.{key}: unknown name {name:?}; the names here are: {}",
                known.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
            )),
            Some(m) if !m.implemented && setting.enabled.unwrap_or(m.default_enabled) => errors.push(format!(
                "scrapers.{key}.{name}: oxcol does not emit this yet; remove it or set enabled: false"
            )),
            Some(_) => {}
        }
    }
}

fn parse_strategy(text: &str) -> Option<metadata::Strategy> {
    use metadata::Strategy;
    Some(match text {
        "sum" => Strategy::Sum,
        "avg" => Strategy::Avg,
        "min" => Strategy::Min,
        "max" => Strategy::Max,
        _ => return None,
    })
}

/// A metric whose points lose some attributes: those that remain equal are merged.
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregation {
    pub metric: &'static str,
    pub keep: Vec<&'static str>,
    pub strategy: metadata::Strategy,
}

/// The metrics of `known` whose points must be aggregated: those whose kept attributes
/// (configured, else the Collector's defaults) are fewer than all of theirs.
pub fn aggregations(known: &'static [MetricInfo], settings: &Metrics) -> Vec<Aggregation> {
    let mut out = Vec::new();
    for info in known {
        let Some(meta) = metadata::attributes(info.name) else {
            continue;
        };
        let setting = settings.get(info.name);
        let keep: Vec<&'static str> = match setting.and_then(|s| s.attributes.as_ref()) {
            Some(names) => meta
                .all
                .iter()
                .copied()
                .filter(|a| names.iter().any(|n| n == a))
                .collect(),
            None => meta.default.to_vec(),
        };
        if keep.len() == meta.all.len() {
            continue;
        }
        let strategy = setting
            .and_then(|s| s.aggregation_strategy.as_deref())
            .and_then(parse_strategy)
            .unwrap_or(meta.strategy);
        out.push(Aggregation {
            metric: info.name,
            keep,
            strategy,
        });
    }
    out
}

/// A scraper present in YAML, even as `cpu:` with no value, is on with its defaults.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(deserializer).map(|value| Some(value.unwrap_or_default()))
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Scrapers {
    #[serde(deserialize_with = "present")]
    pub cpu: Option<cpu::Config>,
    #[serde(deserialize_with = "present")]
    pub load: Option<load::Config>,
    #[serde(deserialize_with = "present")]
    pub memory: Option<memory::Config>,
    #[serde(deserialize_with = "present")]
    pub network: Option<network::Config>,
    #[serde(deserialize_with = "present")]
    pub disk: Option<disk::Config>,
    #[serde(deserialize_with = "present")]
    pub filesystem: Option<filesystem::Config>,
    #[serde(deserialize_with = "present")]
    pub paging: Option<paging::Config>,
    /// Scrapers oxcol does not have yet: accepted by the parser so that `validate` can
    /// name them, never run.
    #[serde(deserialize_with = "present")]
    pub processes: Option<processes::Config>,
    #[serde(deserialize_with = "present")]
    pub process: Option<process::Config>,
    #[serde(deserialize_with = "present")]
    pub system: Option<system::Config>,
    #[serde(deserialize_with = "present")]
    pub nfs: Option<IgnoredAny>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How often to scrape. Default `1m`.
    pub collection_interval: GoDuration,
    /// How long to wait before the first scrape. Default `1s`.
    pub initial_delay: GoDuration,
    /// The scrape timeout of the Collector's scraper controller. Default `0s` (none).
    /// Accepted for compatibility; a scrape here reads local files only.
    pub timeout: GoDuration,
    /// Where the host's root filesystem is mounted (`/hostfs`): `/proc` is read from
    /// `<root_path>/proc`. Default empty (this machine's `/`).
    pub root_path: PathBuf,
    pub scrapers: Scrapers,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            collection_interval: GoDuration::from_millis(60_000),
            initial_delay: GoDuration::from_millis(1_000),
            timeout: GoDuration::from_millis(0),
            root_path: PathBuf::new(),
            scrapers: Scrapers::default(),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.collection_interval.is_zero() {
            errors.push("collection_interval must be greater than zero (e.g. 1m)".to_string());
        }
        if !self.root_path.as_os_str().is_empty() {
            if !self.root_path.is_absolute() {
                errors.push(format!(
                    "root_path {:?} must be an absolute path (e.g. /hostfs)",
                    self.root_path
                ));
            } else if !self.root_path.is_dir() {
                errors.push(format!(
                    "root_path {:?} does not exist or is not a directory; mount the host's / there or remove root_path",
                    self.root_path
                ));
            }
        }
        let s = &self.scrapers;
        let none_done = s.cpu.is_none()
            && s.load.is_none()
            && s.memory.is_none()
            && s.network.is_none()
            && s.disk.is_none()
            && s.filesystem.is_none()
            && s.paging.is_none()
            && s.processes.is_none()
            && s.system.is_none()
            && s.process.is_none();
        if s.nfs.is_some() {
            errors.push(
                "scrapers.nfs: oxcol's hostmetrics receiver does not have the nfs scraper yet; remove it (available: cpu, load, memory, network, disk, filesystem, paging, processes, system, process)"
                    .to_string(),
            );
        }
        if none_done && errors.is_empty() {
            errors.push(
                "scrapers: name at least one scraper (cpu, load, memory, network, disk, filesystem, paging, processes, system, process)"
                    .to_string(),
            );
        }
        if let Some(c) = &s.cpu {
            validate_metrics("cpu.metrics", cpu::METRICS, &c.metrics, &mut errors);
        }
        if let Some(c) = &s.load {
            validate_metrics("load.metrics", load::METRICS, &c.metrics, &mut errors);
        }
        if let Some(c) = &s.memory {
            validate_metrics("memory.metrics", memory::METRICS, &c.metrics, &mut errors);
        }
        if let Some(c) = &s.network {
            validate_metrics("network.metrics", network::METRICS, &c.metrics, &mut errors);
            validate_filters(
                "network",
                "interfaces",
                &c.include.as_ref().map(network::InterfaceMatch::as_match),
                &c.exclude.as_ref().map(network::InterfaceMatch::as_match),
                &mut errors,
            );
        }
        if let Some(c) = &s.disk {
            validate_metrics("disk.metrics", disk::METRICS, &c.metrics, &mut errors);
            validate_filters("disk", "devices", &c.include, &c.exclude, &mut errors);
        }
        if let Some(c) = &s.process {
            validate_metrics("process.metrics", process::METRICS, &c.metrics, &mut errors);
            validate_metrics(
                "process.resource_attributes",
                process::RESOURCE_ATTRIBUTES,
                &c.resource_attributes,
                &mut errors,
            );
            for (key, m) in [("include", &c.include), ("exclude", &c.exclude)] {
                for problem in m
                    .as_ref()
                    .map(|m| m.as_match().problems())
                    .unwrap_or_default()
                {
                    errors.push(format!(
                        "scrapers.process.{key}: {}",
                        problem.replace("devices:", "names:")
                    ));
                }
            }
        }
        if let Some(c) = &s.processes {
            validate_metrics(
                "processes.metrics",
                processes::METRICS,
                &c.metrics,
                &mut errors,
            );
        }
        if let Some(c) = &s.system {
            validate_metrics("system.metrics", system::METRICS, &c.metrics, &mut errors);
        }
        if let Some(c) = &s.paging {
            validate_metrics("paging.metrics", paging::METRICS, &c.metrics, &mut errors);
        }
        if let Some(c) = &s.filesystem {
            validate_metrics(
                "filesystem.metrics",
                filesystem::METRICS,
                &c.metrics,
                &mut errors,
            );
            for (key, include, exclude) in c.filters() {
                for (side, m) in [("include", include), ("exclude", exclude)] {
                    for problem in m.map(|m| m.problems()).unwrap_or_default() {
                        errors.push(format!(
                            "scrapers.filesystem.{side}_{key}: {}",
                            problem.replace("devices:", &format!("{key}:"))
                        ));
                    }
                }
            }
        }
        errors
    }

    /// `root_path`, or `/`.
    pub fn root_dir(&self) -> PathBuf {
        if self.root_path.as_os_str().is_empty() {
            PathBuf::from("/")
        } else {
            self.root_path.clone()
        }
    }

    /// `<root_path>/proc`.
    pub fn proc_dir(&self) -> PathBuf {
        if self.root_path.as_os_str().is_empty() {
            PathBuf::from("/proc")
        } else {
            self.root_path.join("proc")
        }
    }
}

/// `list`: the key of the name list (`devices`, `interfaces`), named in regexp errors.
fn validate_filters(
    scraper: &str,
    list: &str,
    include: &Option<MatchConfig>,
    exclude: &Option<MatchConfig>,
    errors: &mut Vec<String>,
) {
    for (key, m) in [("include", include), ("exclude", exclude)] {
        if let Some(m) = m {
            for problem in m.problems() {
                let problem = problem.replace("devices:", &format!("{list}:"));
                errors.push(format!("scrapers.{scraper}.{key}: {problem}"));
            }
        }
    }
}

/// Reads files into one reused buffer.
pub struct Files {
    proc_dir: PathBuf,
    buf: Vec<u8>,
    path: PathBuf,
}

impl Files {
    pub fn new(proc_dir: PathBuf) -> Files {
        Files {
            proc_dir,
            buf: Vec::new(),
            path: PathBuf::new(),
        }
    }

    /// The contents of `<proc>/<relative>`, valid until the next read.
    ///
    /// Reads into the zero-filled buffer with plain `read` calls: `read_to_end` would first
    /// `statx` and `lseek` each file for a size hint (useless for `/proc`, whose files show
    /// size 0), two extra system calls on each of the ~6 files per process.
    pub fn read(&mut self, relative: &str) -> Result<&[u8], String> {
        use std::io::Read as _;
        self.path.clear();
        self.path.push(&self.proc_dir);
        self.path.push(relative);
        let error = |e: std::io::Error, path: &Path| format!("reading {}: {e}", path.display());
        let mut file = std::fs::File::open(&self.path).map_err(|e| error(e, &self.path))?;
        let mut len = 0;
        loop {
            if len == self.buf.len() {
                let grown = (self.buf.len() * 2).max(16 * 1024);
                self.buf.resize(grown, 0);
            }
            match file.read(&mut self.buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(error(e, &self.path)),
            }
        }
        Ok(&self.buf[..len])
    }

    pub fn proc_dir(&self) -> &Path {
        &self.proc_dir
    }
}

/// Boot time (`btime` of `/proc/stat`) in Unix nanoseconds: the start of every
/// cumulative sum, as the Collector sets it.
fn boot_time_nanos(files: &mut Files) -> Option<u64> {
    let data = files.read("stat").ok()?;
    let mut boot = None;
    crate::smaps::parse::for_each_line(data, |line, _| {
        if let Some(rest) = line.strip_prefix(b"btime ") {
            boot = crate::cgroup::parse::parse_u64(crate::cgroup::parse::trim(rest));
        }
    });
    boot.map(|s| s.saturating_mul(1_000_000_000))
}

struct Counters {
    scraper_errors: Counter,
}

/// All configured scrapers, run synchronously; [`HostmetricsScraper`] runs it on the
/// blocking pool.
pub struct Collector {
    id: String,
    files: Files,
    start_time: Option<u64>,
    cpu: Option<cpu::Scraper>,
    load: Option<load::Scraper>,
    memory: Option<memory::Scraper>,
    network: Option<network::Scraper>,
    disk: Option<disk::Scraper>,
    filesystem: Option<filesystem::Scraper>,
    paging: Option<paging::Scraper>,
    processes: Option<processes::Scraper>,
    system: Option<system::Scraper>,
    process: Option<process::Scraper>,
    /// The system scrapers' metrics whose points are merged over dropped attributes.
    aggregations: Vec<Aggregation>,
    counters: Option<Counters>,
}

impl Collector {
    /// `config` must have passed `validate` (filters compile).
    pub fn new(
        id: &str,
        config: &Config,
        registry: Option<&Registry>,
    ) -> Result<Collector, String> {
        let s = &config.scrapers;
        let err = |e: String| format!("hostmetrics receiver {id:?}: {e}");
        let mut aggregations = Vec::new();
        macro_rules! aggregate {
            ($field:ident) => {
                if let Some(c) = &s.$field {
                    aggregations.extend(self::aggregations($field::METRICS, &c.metrics));
                }
            };
        }
        aggregate!(cpu);
        aggregate!(load);
        aggregate!(memory);
        aggregate!(network);
        aggregate!(disk);
        aggregate!(filesystem);
        aggregate!(paging);
        aggregate!(processes);
        aggregate!(system);
        Ok(Collector {
            id: id.to_string(),
            files: Files::new(config.proc_dir()),
            start_time: None,
            cpu: s.cpu.as_ref().map(cpu::Scraper::new),
            load: s.load.as_ref().map(load::Scraper::new),
            memory: s.memory.as_ref().map(memory::Scraper::new),
            network: s.network.as_ref().map(network::Scraper::new).transpose().map_err(err)?,
            disk: s.disk.as_ref().map(disk::Scraper::new).transpose().map_err(err)?,
            paging: s.paging.as_ref().map(paging::Scraper::new),
            processes: s.processes.as_ref().map(processes::Scraper::new),
            system: s.system.as_ref().map(system::Scraper::new),
            process: s.process.as_ref().map(|c| process::Scraper::new(c, &config.root_dir())).transpose().map_err(err)?,
            filesystem: s.filesystem.as_ref().map(|c| filesystem::Scraper::new(c, &config.root_dir())).transpose().map_err(err)?,
            aggregations,
            counters: registry.map(|r| Counters {
                scraper_errors: r.counter(
                    "oxcol_hostmetrics_scraper_errors",
                    "hostmetrics scraper runs that failed in whole or in part (the metrics they could not read are missing from that scrape).",
                    &[("receiver", id)],
                ),
            }),
        })
    }

    /// One scrape of every configured scraper: one `ResourceMetrics` per scraper that
    /// produced metrics. `Err` only when every scraper failed and none produced anything.
    pub fn collect(&mut self, now: SystemTime) -> Result<Vec<ResourceMetrics>, String> {
        let now = unix_nanos(now);
        if self.start_time.is_none() {
            self.start_time = boot_time_nanos(&mut self.files);
        }
        let start = self.start_time.unwrap_or(now);
        let mut out = Vec::with_capacity(9);
        let mut errors = Vec::new();
        let mut ran = 0;
        macro_rules! run {
            ($field:ident, $name:literal) => {
                if let Some(scraper) = self.$field.as_mut() {
                    ran += 1;
                    let mut sink = Out::new(now, start);
                    // A partial failure keeps what the scraper did read.
                    let result = scraper.scrape(&mut self.files, &mut sink);
                    sink.aggregate(&self.aggregations);
                    if !sink.is_empty() {
                        out.push(sink.finish($name));
                    }
                    if let Err(e) = result {
                        errors.push(format!("{} scraper: {e}", $name));
                    }
                }
            };
        }
        run!(cpu, "cpu");
        run!(load, "load");
        run!(memory, "memory");
        run!(network, "network");
        run!(disk, "disk");
        run!(filesystem, "filesystem");
        run!(paging, "paging");
        run!(processes, "processes");
        run!(system, "system");
        if let Some(scraper) = self.process.as_mut() {
            ran += 1;
            let (processes, result) = scraper.scrape(&mut self.files, now, start);
            out.extend(processes);
            if let Err(e) = result {
                errors.push(format!("process scraper: {e}"));
            }
        }
        if !errors.is_empty() {
            if let Some(c) = &self.counters {
                c.scraper_errors.add(errors.len() as u64);
            }
            tracing::warn!(receiver = %self.id, errors = %errors.join("; "), "hostmetrics scrapers failed");
            if errors.len() == ran && out.is_empty() {
                return Err(format!(
                    "hostmetrics receiver {:?}: {}",
                    self.id,
                    errors.join("; ")
                ));
            }
        }
        Ok(out)
    }
}

/// The receiver as a pull scraper: waits `initial_delay` before the first scrape, then
/// runs the [`Collector`] on tokio's blocking pool.
pub struct HostmetricsScraper {
    collector: Option<Box<Collector>>,
    initial_delay: Option<std::time::Duration>,
}

impl HostmetricsScraper {
    pub fn new(
        id: &str,
        config: &Config,
        registry: &Arc<Registry>,
    ) -> Result<HostmetricsScraper, String> {
        Ok(HostmetricsScraper {
            collector: Some(Box::new(Collector::new(id, config, Some(registry))?)),
            initial_delay: Some(config.initial_delay.get()).filter(|d| !d.is_zero()),
        })
    }
}

impl Scraper for HostmetricsScraper {
    fn scrape(&mut self, _now: SystemTime) -> BoxFuture<'_, Result<ScrapeOutput, String>> {
        Box::pin(async move {
            if let Some(delay) = self.initial_delay.take() {
                tokio::time::sleep(delay).await;
            }
            let mut collector = self
                .collector
                .take()
                .ok_or("a previous hostmetrics scrape panicked; the receiver is stopped")?;
            let (collector, metrics) = tokio::task::spawn_blocking(move || {
                let metrics = collector.collect(SystemTime::now());
                (collector, metrics)
            })
            .await
            .map_err(|e| format!("hostmetrics scrape task failed: {e}"))?;
            self.collector = Some(collector);
            Ok(ScrapeOutput {
                metrics: metrics?,
                encoded_metrics: None,
                logs: Vec::new(),
            })
        })
    }
}

#[cfg(test)]
mod tests;
