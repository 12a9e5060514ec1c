//! `cgroup` receiver: what the kernel knows about a cgroup's memory, CPU, IO and pids,
//! read from the cgroup files every `collection_interval`, as OTel metrics.
//!
//! The memory truth of Scenario 1 lives here: `memory.current` counts page cache and can
//! drop under reclaim while anonymous memory keeps rising, so the receiver also emits the
//! working set (current minus inactive_file, as the kubelet computes it), every field of
//! `memory.stat`, the OOM events and PSI stall time.
//!
//! It must never fail a scrape because of one file: a file this kernel lacks is skipped
//! silently (the controller is absent), a cgroup that vanishes mid-read or a file oxcol
//! may not read is skipped and counted in `oxcol_cgroup_read_errors{receiver,reason}`.
//! The hot path (reading and parsing) reuses one buffer and one path buffer and does not
//! allocate; only the OTLP output allocates.

pub mod emit;
pub mod k8s;
pub mod locate;
pub mod parse;
mod read;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use oxcol_core::GoDuration;
use oxcol_core::telemetry::Registry;
use serde::Deserialize;

use crate::scraper::{ScrapeOutput, Scraper};
use emit::{ResourceBuilder, string_attribute, unix_nanos};
use locate::Target;
use read::{ReadErrors, Reader};

pub const TYPE: &str = "cgroup";
pub const ALIASES: &[&str] = &["cgroup", "cgroups"];

/// The instrumentation scope of every metric this receiver emits.
pub const SCOPE: &str = "oxcol/receiver/cgroup";

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How often to read. Default `10s`.
    pub collection_interval: GoDuration,
    /// Where the cgroup hierarchy is mounted. Default `/sys/fs/cgroup` (in a DaemonSet,
    /// e.g. `/host/sys/fs/cgroup`). Used by `paths` and `discovery`, not by `self`.
    pub root_path: PathBuf,
    /// Read the cgroup oxcol itself runs in (found from /proc/self/cgroup and
    /// /proc/self/mountinfo). Default: true when neither `paths` nor
    /// `discovery.include` is set, false otherwise.
    #[serde(rename = "self")]
    pub self_cgroup: Option<bool>,
    /// Explicit cgroups, relative to `root_path` (`/system.slice/app.service`). Default
    /// none.
    pub paths: Vec<String>,
    /// Every cgroup under `root_path` that matches (node agent).
    pub discovery: Discovery,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Discovery {
    /// Globs on the cgroup path relative to `root_path` (`*`, `?` within an element, `**`
    /// across elements), e.g. `kubepods.slice/**`. Default none (no discovery).
    pub include: Vec<String>,
    /// Globs of cgroups to leave out, e.g. `**/crio-conmon-*`. Default none.
    pub exclude: Vec<String>,
    /// How many levels below `root_path` to walk. Default 8.
    pub max_depth: usize,
}

impl Default for Discovery {
    fn default() -> Self {
        Discovery {
            include: Vec::new(),
            exclude: Vec::new(),
            max_depth: 8,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            collection_interval: GoDuration::from_secs(10),
            root_path: PathBuf::from("/sys/fs/cgroup"),
            self_cgroup: None,
            paths: Vec::new(),
            discovery: Discovery::default(),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.collection_interval.is_zero() {
            errors.push("collection_interval must be greater than zero (e.g. 10s)".to_string());
        }
        if !self.root_path.is_absolute() {
            errors.push(format!(
                "root_path {:?} must be an absolute path (e.g. /sys/fs/cgroup)",
                self.root_path
            ));
        }
        for path in &self.paths {
            if path.split('/').any(|e| e == "..") {
                errors.push(format!("paths: {path:?} must not contain \"..\"; write the cgroup path relative to root_path"));
            }
        }
        if !(1..=64).contains(&self.discovery.max_depth) {
            errors.push(format!(
                "discovery.max_depth must be between 1 and 64, not {}",
                self.discovery.max_depth
            ));
        }
        for pattern in self.discovery.include.iter().chain(&self.discovery.exclude) {
            if pattern.trim_matches('/').is_empty() || pattern.split('/').any(|e| e == "..") {
                errors.push(format!("discovery: glob {pattern:?} is empty or contains \"..\"; write e.g. \"kubepods.slice/**\""));
            }
        }
        if self.self_cgroup == Some(false)
            && self.paths.is_empty()
            && self.discovery.include.is_empty()
        {
            errors.push("nothing to read: set self: true, paths, or discovery.include".to_string());
        }
        errors
    }

    pub fn reads_self(&self) -> bool {
        self.self_cgroup
            .unwrap_or(self.paths.is_empty() && self.discovery.include.is_empty())
    }
}

/// What the receiver remembers about a cgroup between scrapes.
struct Known {
    /// The directory's inode: a cgroup re-created under the same name is a new series.
    inode: u64,
    start_time_unix_nano: u64,
    attributes: Vec<KeyValue>,
    generation: u64,
}

/// Reads cgroups synchronously; [`CgroupScraper`] runs it on the blocking pool.
pub struct Collector {
    id: String,
    config: Config,
    self_targets: Vec<Target>,
    reader: Reader,
    known: HashMap<String, Known>,
    generation: u64,
    layout_warned: bool,
}

impl Collector {
    pub fn new(id: &str, config: &Config, registry: &Registry) -> Collector {
        let errors = ReadErrors::new(registry, id);
        let self_targets = if config.reads_self() {
            let found = match (
                std::fs::read_to_string("/proc/self/cgroup"),
                std::fs::read_to_string("/proc/self/mountinfo"),
            ) {
                (Ok(cgroup), Ok(mountinfo)) => locate::self_targets(&cgroup, &mountinfo),
                _ => Vec::new(),
            };
            if found.is_empty() {
                tracing::warn!(
                    receiver = id,
                    "self: true but oxcol's own cgroup could not be found from /proc/self/cgroup and /proc/self/mountinfo"
                );
            }
            found
        } else {
            Vec::new()
        };
        Collector {
            id: id.to_string(),
            config: config.clone(),
            self_targets,
            reader: Reader::new(errors),
            known: HashMap::new(),
            generation: 0,
            layout_warned: false,
        }
    }

    /// Builds the collector with explicit `self` targets (tests).
    pub fn with_self_targets(
        id: &str,
        config: &Config,
        registry: &Registry,
        targets: Vec<Target>,
    ) -> Collector {
        let mut collector = Collector::new(
            id,
            &Config {
                self_cgroup: Some(false),
                ..config.clone()
            },
            registry,
        );
        collector.self_targets = targets;
        collector
    }

    /// The cgroups to read this scrape: self, explicit paths, discovered ones (deduplicated).
    pub fn targets(&mut self) -> Vec<Target> {
        let mut targets = self.self_targets.clone();
        let own = targets.len();
        if !self.config.paths.is_empty() || !self.config.discovery.include.is_empty() {
            match locate::detect_layout(&self.config.root_path) {
                Some(layout) => {
                    let mut paths: Vec<String> = self
                        .config
                        .paths
                        .iter()
                        .map(|p| locate::normalize(p))
                        .collect();
                    if !self.config.discovery.include.is_empty() {
                        let discovery = &self.config.discovery;
                        paths.extend(layout.discover(
                            &discovery.include,
                            &discovery.exclude,
                            discovery.max_depth,
                        ));
                    }
                    paths.sort_unstable();
                    paths.dedup();
                    targets.reserve(paths.len());
                    for path in paths {
                        // `paths` is deduplicated already: only `self` can repeat one.
                        if !targets[..own].iter().any(|t| t.path == path) {
                            targets.push(layout.target(&path));
                        }
                    }
                }
                None if !self.layout_warned => {
                    self.layout_warned = true;
                    tracing::warn!(receiver = %self.id, root_path = %self.config.root_path.display(), "root_path is not a cgroup hierarchy (no cgroup.controllers, no v1 controller directories); set root_path to where cgroupfs is mounted");
                }
                None => {}
            }
        }
        targets
    }

    /// One scrape: every target's metrics, one `ResourceMetrics` per cgroup.
    pub fn collect(&mut self, now: SystemTime) -> Vec<ResourceMetrics> {
        self.generation += 1;
        let now_nanos = unix_nanos(now);
        let targets = self.targets();
        let mut out = Vec::with_capacity(targets.len());
        for target in &targets {
            let Some(primary) = target.dirs.memory.as_ref().or(target.dirs.unified.as_ref()) else {
                continue;
            };
            let inode = match self.reader.inode(primary) {
                Ok(inode) => inode,
                Err(error) => {
                    // Listed but gone: vanished between discovery and reading. An
                    // explicit path that does not exist is the same to the user.
                    self.reader.errors.count(&error);
                    continue;
                }
            };
            let generation = self.generation;
            // Look up by &str first: no key allocation per cgroup per scrape.
            if !self.known.contains_key(&target.path) {
                self.known.insert(
                    target.path.clone(),
                    Known {
                        inode,
                        start_time_unix_nano: now_nanos,
                        attributes: resource_attributes(target),
                        generation,
                    },
                );
            }
            let Some(known) = self.known.get_mut(&target.path) else {
                continue;
            };
            if known.inode != inode {
                known.inode = inode;
                known.start_time_unix_nano = now_nanos;
            }
            known.generation = generation;
            let mut builder = ResourceBuilder::new(now_nanos, known.start_time_unix_nano, 128);
            let attributes = known.attributes.clone();
            read::read_target(&mut self.reader, target, &mut builder);
            self.reader.release();
            if !builder.is_empty() {
                out.push(builder.finish(attributes, SCOPE));
            }
        }
        // Forget cgroups not seen this scrape, so the map stays bounded on a busy node.
        let generation = self.generation;
        self.known.retain(|_, k| k.generation == generation);
        out
    }
}

fn resource_attributes(target: &Target) -> Vec<KeyValue> {
    let mut attributes = vec![
        string_attribute("cgroup.path", &target.path),
        string_attribute("cgroup.version", target.version.name()),
    ];
    let k8s = k8s::parse(&target.path);
    if let Some(uid) = &k8s.pod_uid {
        attributes.push(string_attribute("k8s.pod.uid", uid));
    }
    if let Some(qos) = k8s.qos_class {
        attributes.push(string_attribute("k8s.pod.qos_class", qos));
    }
    if let Some(id) = &k8s.container_id {
        attributes.push(string_attribute("container.id", id));
    }
    if let Some(runtime) = k8s.container_runtime {
        attributes.push(string_attribute("container.runtime", runtime));
    }
    attributes
}

/// The receiver as a pull scraper: runs the [`Collector`] on tokio's blocking pool (file
/// reads block), one scrape at a time.
pub struct CgroupScraper {
    collector: Option<Box<Collector>>,
}

impl CgroupScraper {
    pub fn new(id: &str, config: &Config, registry: &Arc<Registry>) -> CgroupScraper {
        CgroupScraper {
            collector: Some(Box::new(Collector::new(id, config, registry))),
        }
    }
}

impl Scraper for CgroupScraper {
    fn scrape(&mut self, now: SystemTime) -> BoxFuture<'_, Result<ScrapeOutput, String>> {
        Box::pin(async move {
            let mut collector = self
                .collector
                .take()
                .ok_or("a previous cgroup scrape panicked; the receiver is stopped")?;
            let (collector, metrics) = tokio::task::spawn_blocking(move || {
                let metrics = collector.collect(now);
                (collector, metrics)
            })
            .await
            .map_err(|e| format!("cgroup scrape task failed: {e}"))?;
            self.collector = Some(collector);
            Ok(ScrapeOutput {
                metrics,
                encoded_metrics: None,
                logs: Vec::new(),
            })
        })
    }
}

#[cfg(test)]
mod tests;
