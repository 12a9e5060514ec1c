//! The memory picture: what oxcol exists to show, built from the metrics that flow through
//! it — per cgroup / pod / container the working set against its limit with its trend and
//! time-to-limit, PSI pressure, the top processes by PSS, goroutine-leak suspects with
//! their stack, burn rates per SLO with their alert state, and the Go services whose
//! runtime does not fit their container (the `gofit` processor's findings with their
//! inputs and fix) — plus short histories
//! (the last 15 minutes, for sparklines). The status page (`/` on the zpages endpoint) and
//! the `memory_picture` console exporter both read it through a [`PictureHandle`].
//!
//! How it sees the data: the service gives every pipeline a tap
//! ([`PictureHandle::observe`]), called with each processed batch before it is placed in
//! the exporter queues, by reference. The tap is installed only when something reads the
//! picture (a zpages extension or a `memory_picture` exporter, [`wanted`]); it never
//! clones a batch: decoded batches are read in place, encoded ones are first searched for
//! the metric names the picture needs and decoded (a copy) only when one is there.
//!
//! What it must never do: hold memory that grows with the data. Every table has a fixed
//! bound ([`Limits`]: series beyond it are counted in [`Picture::dropped_series`], not
//! kept) and every history is a fixed-capacity ring; series not updated for the history
//! span (by data time) are forgotten. Time comes from data-point timestamps, except the
//! snapshot's own `taken_at_unix_ms`.

mod console;
pub mod exporter;
mod model;
mod ring;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxcol_core::Batch;
use serde::Serialize;

use crate::registry::{ComponentConfig, Kind};
use crate::settings::Settings;

pub use console::{Style, render};

/// The bounds of what a picture holds. Memory at the defaults: about 1.5 KiB per series
/// history (90 samples of 16 bytes plus the entry), at most ~420 series: under 1 MiB.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Cgroups (or machines) kept; new ones beyond it are counted and not kept.
    pub max_cgroups: usize,
    /// Processes kept (the largest by PSS win when full).
    pub max_processes: usize,
    /// Goroutine-leak suspects kept.
    pub max_leak_suspects: usize,
    /// (SLO, group) pairs kept.
    pub max_slo_groups: usize,
    /// Go services with gofit findings kept (services that fit take no room).
    pub max_go_services: usize,
    /// How far back the histories reach, and how long a series without a point is kept.
    pub history: Duration,
    /// Samples per history ring: one sample per `history / history_points` (newer points
    /// in the same slot replace the slot's sample).
    pub history_points: usize,
    /// Longest leak-suspect stack kept, in bytes (cut at a line end, marked).
    pub max_stack_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_cgroups: 256,
            max_processes: 64,
            max_leak_suspects: 32,
            max_slo_groups: 64,
            max_go_services: 64,
            history: Duration::from_secs(15 * 60),
            history_points: 90,
            max_stack_bytes: 16 * 1024,
        }
    }
}

/// One point of a history: data time (ms since the epoch) and value.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// Milliseconds since the Unix epoch (the data point's timestamp).
    pub t: u64,
    pub v: f64,
}

/// Everything the picture holds at one moment. Units: bytes, seconds, ratios 0..1.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Picture {
    /// Wall clock when the snapshot was taken (ms since the epoch).
    pub taken_at_unix_ms: u64,
    /// The newest data timestamp seen (ms since the epoch; 0 before any data).
    pub newest_data_unix_ms: u64,
    /// Where the status page is (`http://127.0.0.1:55679/`), when a zpages extension runs.
    pub status_page: Option<String>,
    /// How far back the histories reach, in seconds.
    pub history_seconds: u64,
    /// Cgroups with their memory, fullest first (working set / limit, then working set).
    pub cgroups: Vec<CgroupView>,
    /// Machines (hostmetrics `system.memory.usage`), largest first.
    pub machines: Vec<MachineView>,
    /// Processes by PSS, largest first.
    pub processes: Vec<ProcessView>,
    /// Goroutine-leak suspects, fastest growing first.
    pub leak_suspects: Vec<LeakSuspect>,
    /// SLO groups, firing alerts first, then by name.
    pub slos: Vec<SloView>,
    /// Go services in which a gofit finding holds now, most findings first, then by name.
    /// A service whose findings all cleared is not in it.
    pub go_fit: Vec<GoFitView>,
    /// Data time (ms since the epoch) of the newest gofit report (of any service, findings
    /// or not) within the history span; `None` when no gofit output was seen in it. With
    /// an empty `go_fit`, tells "every Go service checked fits" from "nothing checked".
    pub go_fit_checked_unix_ms: Option<u64>,
    /// New series not kept because a table of [`Limits`] was full (since start).
    pub dropped_series: u64,
}

/// Where a trend comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrendSource {
    /// An `ewma` processor's `<name>.rate.ewma` / predict output in the data.
    EwmaProcessor,
    /// Computed by the picture from the series it holds, with the ewma processor's math
    /// (half-life 2m, 5 warm-up samples).
    Picture,
}

/// Smoothed growth of a memory series.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Trend {
    /// Bytes per second (negative when shrinking).
    pub bytes_per_second: f64,
    pub source: TrendSource,
}

/// Pressure stall information of one resource, ratios 0..1 (`cgroup.pressure.avg`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Pressure {
    /// `memory`, `cpu`, `io` or `irq`.
    pub resource: String,
    pub some_avg10: Option<f64>,
    pub some_avg60: Option<f64>,
    pub full_avg10: Option<f64>,
    pub full_avg60: Option<f64>,
}

/// One cgroup (pod, container, or oxcol's own).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CgroupView {
    /// `cgroup.path` (`/` is the root cgroup).
    pub path: String,
    /// The resource attributes of its series (`cgroup.version`, `k8s.pod.uid`,
    /// `container.id`, `host.name`, ... as they arrived).
    pub resource: BTreeMap<String, String>,
    /// `cgroup.memory.working_set`.
    pub working_set_bytes: Option<f64>,
    /// `cgroup.memory.max`; `None` = no limit.
    pub limit_bytes: Option<f64>,
    /// `cgroup.memory.high`; `None` = none.
    pub high_bytes: Option<f64>,
    pub trend: Option<Trend>,
    /// Seconds until the working set reaches the limit at the trend; `None` when not
    /// growing, no limit, or beyond 24h. From the ewma processor when it predicts it.
    pub time_to_limit_seconds: Option<f64>,
    /// Memory, cpu, io pressure when the kernel reports it (in that order).
    pub pressure: Vec<Pressure>,
    /// `cgroup.memory.events{event="oom_kill"}` (cumulative).
    pub oom_kills: Option<f64>,
    pub working_set_history: Vec<Sample>,
    /// Data time of the newest point (ms since the epoch).
    pub updated_unix_ms: u64,
}

/// One machine's memory (hostmetrics memory scraper).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MachineView {
    /// `host.name` when the resource has it, else empty.
    pub host: String,
    /// `system.memory.usage{state="used"}` (MemTotal − MemAvailable).
    pub used_bytes: Option<f64>,
    /// The sum over all `state`s of `system.memory.usage` (or `system.memory.limit`).
    pub total_bytes: Option<f64>,
    pub trend: Option<Trend>,
    pub time_to_limit_seconds: Option<f64>,
    pub used_history: Vec<Sample>,
    pub updated_unix_ms: u64,
}

/// One process (smaps receiver).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProcessView {
    pub pid: i64,
    /// `process.executable.name`.
    pub name: String,
    /// `process.owner`.
    pub owner: Option<String>,
    /// `host.name` when the resource has it.
    pub host: Option<String>,
    /// `process.smaps.pss`.
    pub pss_bytes: f64,
    /// `process.smaps.rss`.
    pub rss_bytes: Option<f64>,
    /// `process.smaps.swap`.
    pub swap_bytes: Option<f64>,
    pub pss_history: Vec<Sample>,
    pub updated_unix_ms: u64,
}

/// A goroutine-leak suspect (pprof receiver): a stack signature whose count keeps growing.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LeakSuspect {
    /// Who was scraped: `service.name`, else `url.full`, else empty.
    pub target: String,
    /// `go.stack.function`, `go.stack.creator`, `go.stack.id`.
    pub function: String,
    pub creator: String,
    pub stack_id: String,
    /// `go.goroutine.leak.growth`, goroutines per second.
    pub growth_per_second: f64,
    /// The signature's goroutines (`go.goroutine.stack.count`) when seen.
    pub goroutines: Option<f64>,
    /// The full stack from the `go.goroutine.leak.suspect` log record, when a logs
    /// pipeline carried it (cut at `Limits::max_stack_bytes`).
    pub stack: Option<String>,
    pub goroutines_history: Vec<Sample>,
    pub updated_unix_ms: u64,
}

/// One SLO group (burnrate processor).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SloView {
    /// `slo.name`.
    pub name: String,
    /// The group's labels (point attributes besides `slo.*` and `severity`).
    pub group: BTreeMap<String, String>,
    /// `slo.burn_rate` by `slo.window`, shortest window first.
    pub burn_rates: Vec<BurnRate>,
    /// `slo.error_budget.remaining` (negative when overspent).
    pub error_budget_remaining: Option<f64>,
    /// `slo.alert` by `severity` (`page`, `ticket`).
    pub alerts: Vec<Alert>,
    /// History of the shortest window's burn rate.
    pub burn_rate_history: Vec<Sample>,
    pub updated_unix_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BurnRate {
    /// As written in the config (`5m`, `1h`).
    pub window: String,
    pub rate: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    pub severity: String,
    pub firing: bool,
}

/// A Go service with Go runtime fit findings (the `gofit` processor's
/// `go.runtime.fit.finding` = 1), with the inputs side by side as its last report gave them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GoFitView {
    /// `service.name` of its resource (empty when absent).
    pub service: String,
    /// `service.instance.id`, when present.
    pub instance: Option<String>,
    /// `k8s.pod.name`, when present.
    pub pod: Option<String>,
    /// `go.runtime.fit.gomaxprocs`.
    pub gomaxprocs: Option<f64>,
    /// `go.runtime.fit.cpu_limit`, CPUs; `None`: no CPU limit, or not known.
    pub cpu_limit: Option<f64>,
    /// `go.runtime.fit.gomemlimit`, bytes; `None`: unset (with `gomemlimit_unset` among the
    /// findings), or not known.
    pub gomemlimit: Option<f64>,
    /// `go.runtime.fit.memory_limit`, bytes; `None`: no memory limit, or not known.
    pub memory_limit: Option<f64>,
    /// `go.runtime.fit.gc_cpu_share`, 0..1.
    pub gc_cpu_share: Option<f64>,
    /// `go.runtime.fit.cpu_throttled_share`, 0..1.
    pub cpu_throttled_share: Option<f64>,
    /// The findings that hold, in gofit's order.
    pub findings: Vec<GoFitFinding>,
    pub updated_unix_ms: u64,
}

/// One finding that holds, with what to change (the wording gofit logs).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GoFitFinding {
    /// `gomaxprocs_above_cpu_limit`, `gomemlimit_unset`, ... (the `finding` attribute).
    pub finding: String,
    /// One line; empty for a finding this oxcol does not know.
    pub fix: String,
}

/// The shared picture: cheap to clone, usable from any thread. Created once by the service
/// and kept across reloads.
#[derive(Clone)]
pub struct PictureHandle {
    inner: Arc<Mutex<model::Model>>,
}

impl Default for PictureHandle {
    fn default() -> Self {
        PictureHandle::new(Limits::default())
    }
}

impl std::fmt::Debug for PictureHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PictureHandle")
    }
}

impl PictureHandle {
    pub fn new(limits: Limits) -> PictureHandle {
        PictureHandle {
            inner: Arc::new(Mutex::new(model::Model::new(limits))),
        }
    }

    fn model(&self) -> std::sync::MutexGuard<'_, model::Model> {
        // A panic while holding the lock leaves bounded tables that are still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The picture now (a copy; the lock is held only while copying).
    pub fn snapshot(&self) -> Picture {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        self.model().snapshot(now)
    }

    /// The tap: reads what the picture needs from a processed batch (metrics or logs),
    /// by reference. Called by every pipeline when [`wanted`] said so.
    pub fn observe(&self, batch: &Batch) {
        // Searching and decoding run outside the lock; only applying holds it.
        let needles = self.model().needles();
        let Some(seen) = model::relevant(batch, &needles) else {
            return;
        };
        self.model().ingest(&seen);
    }

    /// Takes what the config says about the picture's sources: the names of the `ewma`
    /// processors' predictions of `cgroup.memory.working_set` (their time-to-limit is used
    /// instead of the picture's own), the status page address (the first zpages
    /// extension in `service.extensions`), and the first `gofit` processor's
    /// `memory_headroom` (the suggested GOMEMLIMIT of a fix depends on it).
    pub fn configure(
        &self,
        settings: &Settings,
        configs: &HashMap<(Kind, String), ComponentConfig>,
    ) {
        let mut predictions = Vec::new();
        let mut status_page = None;
        let mut fit_headroom = None;
        for reference in &settings.service_extensions {
            if let Some(ComponentConfig::Zpages(c)) =
                configs.get(&(Kind::Extension, reference.id.clone()))
            {
                if status_page.is_none() {
                    let scheme = if c.tls.is_some() { "https" } else { "http" };
                    status_page = Some(format!("{scheme}://{}/", c.endpoint));
                }
            }
        }
        for def in &settings.processors {
            if let Some(ComponentConfig::Ewma(c)) = configs.get(&(Kind::Processor, def.id.clone()))
            {
                for rule in &c.predict {
                    if model::WORKING_SET_VALUES.contains(&rule.value.as_str()) {
                        predictions.push(rule.name.clone());
                    }
                }
            }
            if let Some(ComponentConfig::Gofit(c)) = configs.get(&(Kind::Processor, def.id.clone()))
            {
                fit_headroom.get_or_insert(c.memory_headroom);
            }
        }
        let mut model = self.model();
        model.configure(predictions, status_page);
        model.set_fit_headroom(fit_headroom);
    }
}

/// Whether anything reads the picture in this config: a zpages extension in
/// `service.extensions` (the status page), or a `memory_picture` exporter a pipeline uses.
/// Without a reader the pipelines get no tap and the picture costs nothing.
pub fn wanted(settings: &Settings, configs: &HashMap<(Kind, String), ComponentConfig>) -> bool {
    let status_page = settings.service_extensions.iter().any(|r| {
        matches!(
            configs.get(&(Kind::Extension, r.id.clone())),
            Some(ComponentConfig::Zpages(_))
        )
    });
    let console = settings.pipelines.iter().any(|p| {
        p.exporters.iter().any(|e| {
            matches!(
                configs.get(&(Kind::Exporter, e.id.clone())),
                Some(ComponentConfig::MemoryPicture(_))
            )
        })
    });
    status_page || console
}
