//! `gofit`: does a Go service's runtime fit its container? Joins the service's Go runtime
//! metrics (GOMAXPROCS, GOMEMLIMIT, GC CPU, scheduling latency; client_golang's Prometheus
//! names or the OTel Go runtime conventions) with its cgroup's limits and throttling (the
//! `cgroup` receiver's `cgroup.cpu.max`, `cgroup.memory.max`, `cgroup.cpu.stat.*`), and
//! emits findings (`go.runtime.fit.finding{finding}` = 1 while one holds, 0 once it
//! clears) plus the inputs side by side, on the service's resource. Each finding is logged
//! once when it starts, with the numbers and the fix.
//!
//! Services and cgroups meet on `join_on` resource attributes (empty: one service and one
//! cgroup per pipeline). The cgroup side arrives in other batches than the service side,
//! so the latest cgroup readings are kept per join key. Time comes only from data-point
//! timestamps; this module must never read the wall clock, never pass input through
//! changed (it only appends), and its state must stay bounded (`max_series`, stale
//! entries evicted, both counted).

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use oxcol_core::telemetry::{Counter, Gauge as GaugeCounter, Registry};
use oxcol_core::{Batch, GoDuration, Processor, Refusal};
use serde::Deserialize;

use crate::ewma::{attributes_hash, combine, hash_str};

pub const TYPE: &str = "gofit";
pub const ALIASES: &[&str] = &["gofit"];

/// The scope of everything this processor appends.
pub const SCOPE_NAME: &str = "oxcol/processor/gofit";

/// What gofit appends, on the service's resource in [`SCOPE_NAME`]: `finding` = 1 / 0 per
/// finding, then the inputs (each absent when unknown or, for the limits and GOMEMLIMIT,
/// when there is none).
pub const METRIC_FINDING: &str = "go.runtime.fit.finding";
pub const METRIC_GOMAXPROCS: &str = "go.runtime.fit.gomaxprocs";
pub const METRIC_CPU_LIMIT: &str = "go.runtime.fit.cpu_limit";
pub const METRIC_GOMEMLIMIT: &str = "go.runtime.fit.gomemlimit";
pub const METRIC_MEMORY_LIMIT: &str = "go.runtime.fit.memory_limit";
pub const METRIC_GC_CPU_SHARE: &str = "go.runtime.fit.gc_cpu_share";
pub const METRIC_CPU_THROTTLED_SHARE: &str = "go.runtime.fit.cpu_throttled_share";
pub const METRIC_SCHED_LATENCY: &str = "go.runtime.fit.sched_latency";

/// OTLP `DataPointFlags.NO_RECORDED_VALUE`.
const FLAG_NO_RECORDED_VALUE: u32 = 1;
/// GOMEMLIMIT at or above this is "no limit" (the runtime reports math.MaxInt64).
const GOMEMLIMIT_UNSET: f64 = 4_611_686_018_427_387_904.0; // 2^62

// Input names: client_golang's Prometheus names (with and without unit suffixes, as other
// scrapers may strip them), then the OTel Go runtime semantic conventions.
const GOMAXPROCS: &[&str] = &[
    "go_sched_gomaxprocs_threads",
    "go_sched_gomaxprocs",
    "go.processor.limit",
];
const GOMEMLIMIT: &[&str] = &[
    "go_gc_gomemlimit_bytes",
    "go_gc_gomemlimit",
    "go.memory.limit",
];
const GOGC: &[&str] = &["go_gc_gogc_percent", "go_gc_gogc", "go.config.gogc"];
const GC_CPU: &[&str] = &[
    "go_cpu_classes_gc_total_cpu_seconds_total",
    "go_cpu_classes_gc_total_cpu_seconds",
    "go_cpu_classes_gc_total_cpu_total",
    "go_cpu_classes_gc_total_cpu",
];
const TOTAL_CPU: &[&str] = &[
    "go_cpu_classes_total_cpu_seconds_total",
    "go_cpu_classes_total_cpu_seconds",
    "go_cpu_classes_total_cpu_total",
    "go_cpu_classes_total_cpu",
];
const IDLE_CPU: &[&str] = &[
    "go_cpu_classes_idle_cpu_seconds_total",
    "go_cpu_classes_idle_cpu_seconds",
    "go_cpu_classes_idle_cpu_total",
    "go_cpu_classes_idle_cpu",
];
const SCHED_LATENCY: &[&str] = &[
    "go_sched_latencies_seconds",
    "go_sched_latencies",
    "go.schedule.duration",
];
/// The OTel Go runtime instrumentation leaves `go.memory.limit` out when it is unset;
/// a service that sends `go.processor.limit` without it has no GOMEMLIMIT.
const OTEL_GOMAXPROCS: &str = "go.processor.limit";

const CGROUP_CPU_MAX: &str = "cgroup.cpu.max";
const CGROUP_MEMORY_MAX: &str = "cgroup.memory.max";
const CGROUP_NR_THROTTLED: &str = "cgroup.cpu.stat.nr_throttled";
const CGROUP_NR_PERIODS: &str = "cgroup.cpu.stat.nr_periods";
const CGROUP_THROTTLED: &str = "cgroup.cpu.stat.throttled";

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Resource attributes a service's metrics and its cgroup's metrics share (e.g.
    /// `[k8s.pod.uid]`). Empty: one service and one cgroup per pipeline (the sidecar).
    pub join_on: Vec<String>,
    /// `gc_cpu_high` holds when the GC's share of the CPU the Go runtime used (GC /
    /// (total - idle) of `go_cpu_classes_*`) over the last scrape interval is above this.
    /// Default 0.25.
    pub gc_cpu_share: f64,
    /// `cpu_throttled` holds when the share of CFS periods that were throttled
    /// (`nr_throttled` / `nr_periods`) over the last interval is above this. Default 0.1.
    pub throttled_share: f64,
    /// `gomemlimit_too_close_to_memory_limit` holds when GOMEMLIMIT leaves less than this
    /// share of `memory.max` for non-heap memory (stacks, cgo, other processes in the
    /// container). Default 0.05.
    pub memory_headroom: f64,
    /// Most services + cgroups tracked at once; new ones beyond it are not (counted).
    /// Default 10000.
    pub max_series: usize,
    /// A service or cgroup with no point for this long (data time, behind the newest
    /// timestamp seen) is forgotten. Default 10m.
    pub stale_after: GoDuration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            join_on: Vec::new(),
            gc_cpu_share: 0.25,
            throttled_share: 0.1,
            memory_headroom: 0.05,
            max_series: 10_000,
            stale_after: GoDuration::from_secs(600),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for (i, key) in self.join_on.iter().enumerate() {
            if key.trim().is_empty() {
                errors.push(format!(
                    "join_on[{i}] is empty: name a resource attribute (e.g. k8s.pod.uid)"
                ));
            }
        }
        for (key, value, default) in [
            ("gc_cpu_share", self.gc_cpu_share, "0.25"),
            ("throttled_share", self.throttled_share, "0.1"),
        ] {
            if !(value > 0.0 && value < 1.0) {
                errors.push(format!(
                    "{key} must be a share between 0 and 1 exclusive (default {default}), got {value}"
                ));
            }
        }
        if !(self.memory_headroom >= 0.0 && self.memory_headroom < 1.0) {
            errors.push(format!(
                "memory_headroom must be a share in [0, 1) of memory.max (default 0.05), got {}",
                self.memory_headroom
            ));
        }
        if self.max_series == 0 {
            errors.push("max_series must be greater than zero (default 10000)".to_string());
        }
        if self.stale_after.is_zero() {
            errors.push("stale_after must be greater than zero (default 10m)".to_string());
        }
        errors
    }
}

/// The findings, in emission order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finding {
    GomaxprocsAboveCpuLimit = 0,
    GomemlimitUnset = 1,
    GomemlimitAboveMemoryLimit = 2,
    GomemlimitTooCloseToMemoryLimit = 3,
    GcCpuHigh = 4,
    CpuThrottled = 5,
}

impl Finding {
    pub const ALL: [Finding; 6] = [
        Finding::GomaxprocsAboveCpuLimit,
        Finding::GomemlimitUnset,
        Finding::GomemlimitAboveMemoryLimit,
        Finding::GomemlimitTooCloseToMemoryLimit,
        Finding::GcCpuHigh,
        Finding::CpuThrottled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Finding::GomaxprocsAboveCpuLimit => "gomaxprocs_above_cpu_limit",
            Finding::GomemlimitUnset => "gomemlimit_unset",
            Finding::GomemlimitAboveMemoryLimit => "gomemlimit_above_memory_limit",
            Finding::GomemlimitTooCloseToMemoryLimit => "gomemlimit_too_close_to_memory_limit",
            Finding::GcCpuHigh => "gc_cpu_high",
            Finding::CpuThrottled => "cpu_throttled",
        }
    }

    /// The finding named `name` (the `finding` attribute's value).
    pub fn from_name(name: &str) -> Option<Finding> {
        Finding::ALL.into_iter().find(|f| f.name() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// What to change, as the finding's log line ends (after the numbers). `None` when an
    /// input the fix is computed from is absent; the finding cannot hold then.
    pub fn fix(self, inputs: &FixInputs) -> Option<String> {
        let allowed_procs = |limit: f64| limit.ceil().max(1.0);
        let margin = inputs.memory_headroom.max(0.1);
        let gomemlimit = |limit: f64| go_bytes(limit * (1.0 - margin));
        Some(match self {
            Finding::GomaxprocsAboveCpuLimit => format!(
                "set GOMAXPROCS={}, or build with Go 1.25+ which follows the CPU limit",
                number(allowed_procs(inputs.cpu_limit?))
            ),
            Finding::GomemlimitUnset => format!(
                "set GOMEMLIMIT={} (memory.max less {:.0}% for non-heap memory)",
                gomemlimit(inputs.memory_limit?),
                margin * 100.0
            ),
            Finding::GomemlimitAboveMemoryLimit | Finding::GomemlimitTooCloseToMemoryLimit => {
                format!("set GOMEMLIMIT={} or lower", gomemlimit(inputs.memory_limit?))
            }
            Finding::GcCpuHigh => {
                "raise the memory limit and GOMEMLIMIT, or reduce allocations".to_string()
            }
            Finding::CpuThrottled => match (inputs.gomaxprocs, inputs.cpu_limit) {
                (Some(p), Some(l)) if p > allowed_procs(l) => format!(
                    "set GOMAXPROCS={} (or build with Go 1.25+), or raise the CPU limit (cpu.max)",
                    number(allowed_procs(l))
                ),
                (Some(_), Some(_)) => "GOMAXPROCS already fits: raise the CPU limit (cpu.max) or reduce the service's CPU use".to_string(),
                _ => "raise the CPU limit (cpu.max) or reduce the service's CPU use".to_string(),
            },
        })
    }
}

/// The inputs a finding's fix is computed from: what gofit emits as
/// `go.runtime.fit.gomaxprocs`, `.cpu_limit` and `.memory_limit` (absent = `None`), and the
/// `memory_headroom` of its config.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FixInputs {
    pub gomaxprocs: Option<f64>,
    pub cpu_limit: Option<f64>,
    pub memory_limit: Option<f64>,
    pub memory_headroom: f64,
}

/// A cumulative counter's previous reading, to turn two readings into a delta.
#[derive(Clone, Copy, Debug, Default)]
struct Previous {
    ts: u64,
    values: [f64; 3],
}

impl Previous {
    /// The deltas since the previous reading, or None on the first reading, an
    /// out-of-order one, or a counter reset (any value went down): then this reading
    /// becomes the reference.
    fn advance(slot: &mut Option<Previous>, ts: u64, values: [f64; 3]) -> Option<[f64; 3]> {
        let previous = slot.replace(Previous { ts, values });
        let previous = previous?;
        if ts <= previous.ts {
            *slot = Some(previous);
            return None;
        }
        let mut deltas = [0.0; 3];
        for i in 0..3 {
            deltas[i] = values[i] - previous.values[i];
            if deltas[i] < 0.0 {
                return None;
            }
        }
        Some(deltas)
    }
}

/// What the cgroup side of a join key last said.
#[derive(Clone, Debug, Default)]
struct CgroupState {
    /// `Some(None)` = the cgroup's CPU was read and has no limit.
    cpu_limit: Option<Option<f64>>,
    /// `Some(None)` = the cgroup's memory was read and has no limit.
    memory_limit: Option<Option<f64>>,
    /// (nr_throttled, nr_periods, throttled seconds).
    throttle_previous: Option<Previous>,
    /// Share of periods throttled over the last interval, and throttled seconds per second.
    throttled: Option<(f64, f64)>,
    last_seen: u64,
}

/// One cgroup of a join key (a pod has a pod-level cgroup and one per container; a
/// hybrid host's `self` has a v1 and a v2 one).
#[derive(Clone, Debug)]
struct CgroupEntry {
    path: String,
    container_id: Option<String>,
    state: CgroupState,
}

/// The cgroups a service is held against: those with the service's `container.id`; else
/// those without a `container.id` (the pod's own, or a sidecar's `self`); else all. Their
/// readings are merged: the tightest limit, the highest throttled share.
fn merged_cgroup(entries: &[CgroupEntry], container_id: Option<&str>) -> CgroupState {
    let mut candidates: Vec<&CgroupEntry> = match container_id {
        Some(id) => entries
            .iter()
            .filter(|e| e.container_id.as_deref() == Some(id))
            .collect(),
        None => Vec::new(),
    };
    if candidates.is_empty() {
        candidates = entries
            .iter()
            .filter(|e| e.container_id.is_none())
            .collect();
    }
    if candidates.is_empty() {
        candidates = entries.iter().collect();
    }
    let tightest = |limits: Vec<Option<f64>>| -> Option<Option<f64>> {
        if limits.is_empty() {
            return None;
        }
        Some(limits.into_iter().flatten().reduce(f64::min))
    };
    CgroupState {
        cpu_limit: tightest(
            candidates
                .iter()
                .filter_map(|e| e.state.cpu_limit)
                .collect(),
        ),
        memory_limit: tightest(
            candidates
                .iter()
                .filter_map(|e| e.state.memory_limit)
                .collect(),
        ),
        throttle_previous: None,
        throttled: candidates
            .iter()
            .filter_map(|e| e.state.throttled)
            .reduce(|a, b| if b.0 > a.0 { b } else { a }),
        last_seen: candidates
            .iter()
            .map(|e| e.state.last_seen)
            .max()
            .unwrap_or(0),
    }
}

/// What the service side last said, and which findings hold.
#[derive(Clone, Debug, Default)]
struct ServiceState {
    gomaxprocs: Option<f64>,
    /// `Some(None)` = known to be unset.
    gomemlimit: Option<Option<f64>>,
    gogc: Option<f64>,
    /// (gc, total, idle) CPU seconds.
    cpu_previous: Option<Previous>,
    gc_cpu_share: Option<f64>,
    /// (sum, count) of the scheduling latency histogram.
    sched_previous: Option<Previous>,
    sched_latency_mean: Option<f64>,
    active: u8,
    last_seen: u64,
}

/// Self-telemetry of one `gofit` processor.
#[derive(Clone, Debug, Default)]
pub struct GofitCounters {
    pub series_evicted: Counter,
    pub series_dropped: Counter,
    pub series_active: GaugeCounter,
    /// Services whose cgroup is not (yet) known for their join key, or that lack a
    /// `join_on` attribute.
    pub unjoined: Counter,
    /// Services in which each finding holds now, in `Finding::ALL` order.
    pub findings_active: Vec<GaugeCounter>,
}

impl GofitCounters {
    pub fn new(registry: &Registry, processor: &str) -> GofitCounters {
        let (series_evicted, series_dropped, series_active) =
            oxcol_core::telemetry::series_counters(registry, processor);
        GofitCounters {
            series_evicted,
            series_dropped,
            series_active,
            unjoined: registry.counter(
                "oxcol_gofit_services_unjoined",
                "Go service readings with no cgroup to join (no cgroup seen for the join key, or a join_on attribute missing).",
                &[("processor", processor)],
            ),
            findings_active: Finding::ALL
                .iter()
                .map(|f| {
                    registry.gauge(
                        "oxcol_gofit_findings_active",
                        "Go services in which a gofit finding holds now.",
                        &[("processor", processor), ("finding", f.name())],
                    )
                })
                .collect(),
        }
    }

    fn finding_changed(&self, finding: Finding, delta: i64) {
        if let Some(gauge) = self.findings_active.get(finding as usize) {
            gauge.add(delta);
        }
    }
}

/// The Go runtime inputs of one resource in one batch.
#[derive(Debug, Default)]
struct GoReadings {
    ts: u64,
    gomaxprocs: Option<f64>,
    gomemlimit: Option<f64>,
    otel_names: bool,
    gogc: Option<f64>,
    gc_cpu: Option<f64>,
    total_cpu: Option<f64>,
    idle_cpu: Option<f64>,
    /// (sum, count)
    sched: Option<(f64, f64)>,
}

/// The cgroup inputs of one resource in one batch.
#[derive(Debug, Default)]
struct CgroupReadings {
    ts: u64,
    has_cpu: bool,
    has_memory: bool,
    cpu_limit: Option<f64>,
    memory_limit: Option<f64>,
    nr_throttled: Option<f64>,
    nr_periods: Option<f64>,
    throttled_seconds: Option<f64>,
}

pub struct GofitProcessor {
    id: String,
    join_on: Vec<String>,
    gc_cpu_share: f64,
    throttled_share: f64,
    memory_headroom: f64,
    max_series: usize,
    stale_after_ns: u64,
    /// Join key -> its cgroups.
    cgroups: HashMap<u64, Vec<CgroupEntry>>,
    cgroup_count: usize,
    services: HashMap<u64, ServiceState>,
    newest_ts: u64,
    last_sweep_ts: u64,
    counters: GofitCounters,
}

impl GofitProcessor {
    pub fn new(
        id: &str,
        config: &Config,
        registry: Option<&Registry>,
    ) -> Result<GofitProcessor, String> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(GofitProcessor {
            id: id.to_string(),
            join_on: config.join_on.clone(),
            gc_cpu_share: config.gc_cpu_share,
            throttled_share: config.throttled_share,
            memory_headroom: config.memory_headroom,
            max_series: config.max_series,
            stale_after_ns: u64::try_from(config.stale_after.get().as_nanos()).unwrap_or(u64::MAX),
            cgroups: HashMap::new(),
            cgroup_count: 0,
            services: HashMap::new(),
            newest_ts: 0,
            last_sweep_ts: 0,
            counters: registry
                .map(|r| GofitCounters::new(r, id))
                .unwrap_or_default(),
        })
    }

    /// Services and cgroups currently tracked.
    pub fn series_count(&self) -> usize {
        self.services.len() + self.cgroup_count
    }

    /// The join key of a resource, or None when it lacks a `join_on` attribute.
    fn join_key(&self, resource: &ResourceMetrics) -> Option<u64> {
        let attributes = resource
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let mut key = hash_str("gofit-join");
        for name in &self.join_on {
            let value = attributes
                .iter()
                .find(|kv| &kv.key == name)
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| v.value.as_ref())?;
            let text = match value {
                any_value::Value::StringValue(s) if !s.is_empty() => s.clone(),
                any_value::Value::StringValue(_) => return None,
                any_value::Value::IntValue(i) => i.to_string(),
                any_value::Value::BoolValue(b) => b.to_string(),
                any_value::Value::DoubleValue(d) => d.to_string(),
                _ => return None,
            };
            key = combine(combine(key, hash_str(name)), hash_str(&text));
        }
        Some(key)
    }

    /// Room for one more tracked entry (sweeping stale ones first when full).
    fn has_room(&mut self) -> bool {
        if self.series_count() < self.max_series {
            return true;
        }
        self.sweep(true);
        if self.series_count() < self.max_series {
            return true;
        }
        self.counters.series_dropped.add(1);
        false
    }

    fn sweep(&mut self, force: bool) {
        let since = self.newest_ts.saturating_sub(self.last_sweep_ts);
        if (force && since == 0 && self.last_sweep_ts != 0)
            || (!force && since < self.stale_after_ns / 4)
        {
            return;
        }
        self.last_sweep_ts = self.newest_ts;
        let cutoff = self.newest_ts.saturating_sub(self.stale_after_ns);
        let before = self.series_count();
        let counters = &self.counters;
        self.services.retain(|_, s| {
            let keep = s.last_seen >= cutoff;
            if !keep {
                for finding in Finding::ALL {
                    if s.active & finding.bit() != 0 {
                        counters.finding_changed(finding, -1);
                    }
                }
            }
            keep
        });
        let mut cgroup_count = 0;
        self.cgroups.retain(|_, entries| {
            entries.retain(|e| e.state.last_seen >= cutoff);
            cgroup_count += entries.len();
            !entries.is_empty()
        });
        self.cgroup_count = cgroup_count;
        let evicted = before - self.series_count();
        if evicted > 0 {
            self.counters.series_evicted.add(evicted as u64);
        }
        self.counters.series_active.set(self.series_count() as i64);
    }

    fn process_metrics(&mut self, resources: &mut [ResourceMetrics]) {
        // The cgroup side first, so a batch holding both sides joins within itself.
        for resource in resources.iter() {
            let readings = cgroup_readings(resource);
            if !(readings.has_cpu || readings.has_memory) {
                continue;
            }
            self.newest_ts = self.newest_ts.max(readings.ts);
            let Some(key) = self.join_key(resource) else {
                continue;
            };
            let path = string_attribute(resource, "cgroup.path").unwrap_or("");
            let known = self
                .cgroups
                .get(&key)
                .is_some_and(|entries| entries.iter().any(|e| e.path == path));
            if !known && !self.has_room() {
                continue;
            }
            let entries = self.cgroups.entry(key).or_default();
            let index = match entries.iter().position(|e| e.path == path) {
                Some(index) => index,
                None => {
                    entries.push(CgroupEntry {
                        path: path.to_string(),
                        container_id: string_attribute(resource, "container.id")
                            .map(str::to_string),
                        state: CgroupState::default(),
                    });
                    self.cgroup_count += 1;
                    entries.len() - 1
                }
            };
            if let Some(entry) = entries.get_mut(index) {
                update_cgroup(&mut entry.state, &readings);
            }
        }
        for resource in resources.iter_mut() {
            let readings = go_readings(resource);
            if readings.gomaxprocs.is_none() && readings.gomemlimit.is_none() {
                continue;
            }
            self.newest_ts = self.newest_ts.max(readings.ts);
            let Some(join_key) = self.join_key(resource) else {
                self.counters.unjoined.add(1);
                continue;
            };
            let resource_hash = resource
                .resource
                .as_ref()
                .map(|r| attributes_hash(&r.attributes))
                .unwrap_or(0);
            let service_key = combine(join_key, resource_hash);
            if !self.services.contains_key(&service_key) && !self.has_room() {
                continue;
            }
            let service = self.services.entry(service_key).or_default();
            update_service(service, &readings);
            let Some(entries) = self.cgroups.get(&join_key) else {
                self.counters.unjoined.add(1);
                continue;
            };
            let cgroup = merged_cgroup(entries, string_attribute(resource, "container.id"));
            let evaluation = evaluate(
                service,
                &cgroup,
                self.gc_cpu_share,
                self.throttled_share,
                self.memory_headroom,
            );
            let previously = service.active;
            // A finding this reading cannot evaluate (e.g. no GC share across a counter
            // reset or a missed scrape) keeps its state: it is neither cleared nor, when it
            // holds again, started (and logged) a second time.
            let mut now = 0u8;
            let mut evaluated = 0u8;
            for (finding, holds, _) in &evaluation.findings {
                evaluated |= finding.bit();
                if *holds {
                    now |= finding.bit();
                }
            }
            service.active = now | (previously & !evaluated);
            let service_name = resource_label(resource);
            for (finding, holds, message) in &evaluation.findings {
                let was = previously & finding.bit() != 0;
                if *holds && !was {
                    self.counters.finding_changed(*finding, 1);
                    tracing::warn!(processor = %self.id, service = %service_name, finding = finding.name(), "{message}");
                } else if !*holds && was {
                    self.counters.finding_changed(*finding, -1);
                    tracing::info!(processor = %self.id, service = %service_name, finding = finding.name(), "cleared: {message}");
                }
            }
            resource
                .scope_metrics
                .push(evaluation.into_scope(readings.ts));
        }
        self.sweep(false);
        self.counters.series_active.set(self.series_count() as i64);
    }
}

fn update_cgroup(state: &mut CgroupState, readings: &CgroupReadings) {
    state.last_seen = state.last_seen.max(readings.ts);
    if readings.has_cpu {
        state.cpu_limit = Some(readings.cpu_limit);
    }
    if readings.has_memory {
        state.memory_limit = Some(readings.memory_limit);
    }
    if let (Some(throttled), Some(periods)) = (readings.nr_throttled, readings.nr_periods) {
        let seconds = readings.throttled_seconds.unwrap_or(0.0);
        if let Some([d_throttled, d_periods, d_seconds]) = Previous::advance(
            &mut state.throttle_previous,
            readings.ts,
            [throttled, periods, seconds],
        ) {
            if d_periods > 0.0 {
                state.throttled = Some((d_throttled / d_periods, d_seconds));
            } else {
                // No CFS period ran (an idle cgroup): nothing was throttled.
                state.throttled = Some((0.0, 0.0));
            }
        }
    }
}

fn update_service(service: &mut ServiceState, readings: &GoReadings) {
    service.last_seen = service.last_seen.max(readings.ts);
    if readings.gomaxprocs.is_some() {
        service.gomaxprocs = readings.gomaxprocs;
    }
    match readings.gomemlimit {
        Some(limit) if limit >= GOMEMLIMIT_UNSET => service.gomemlimit = Some(None),
        Some(limit) => service.gomemlimit = Some(Some(limit)),
        None if readings.otel_names => service.gomemlimit = Some(None),
        None => {}
    }
    if readings.gogc.is_some() {
        service.gogc = readings.gogc;
    }
    if let (Some(gc), Some(total)) = (readings.gc_cpu, readings.total_cpu) {
        let idle = readings.idle_cpu.unwrap_or(0.0);
        if let Some([d_gc, d_total, d_idle]) =
            Previous::advance(&mut service.cpu_previous, readings.ts, [gc, total, idle])
        {
            let used = d_total - d_idle;
            // The runtime updates these estimates when a GC cycle ends: no GC cycle in
            // the interval means no GC CPU (and no movement in the totals either).
            service.gc_cpu_share = if d_gc <= 0.0 {
                Some(0.0)
            } else {
                (used > 0.0).then(|| (d_gc / used).clamp(0.0, 1.0))
            };
        }
    }
    if let Some((sum, count)) = readings.sched
        && let Some([d_sum, d_count, _]) =
            Previous::advance(&mut service.sched_previous, readings.ts, [sum, count, 0.0])
    {
        service.sched_latency_mean = (d_count > 0.0).then(|| d_sum / d_count);
    }
}

/// The findings of one service against its cgroup, and the inputs to emit.
struct Evaluation {
    /// (finding, holds, message); only findings whose inputs are known.
    findings: Vec<(Finding, bool, String)>,
    gomaxprocs: Option<f64>,
    cpu_limit: Option<f64>,
    gomemlimit: Option<f64>,
    memory_limit: Option<f64>,
    gc_cpu_share: Option<f64>,
    throttled_share: Option<f64>,
    sched_latency_mean: Option<f64>,
}

fn evaluate(
    service: &ServiceState,
    cgroup: &CgroupState,
    gc_threshold: f64,
    throttled_threshold: f64,
    memory_headroom: f64,
) -> Evaluation {
    let mut findings = Vec::new();
    let cpu_limit = cgroup.cpu_limit.flatten();
    let memory_limit = cgroup.memory_limit.flatten();
    let inputs = FixInputs {
        gomaxprocs: service.gomaxprocs,
        cpu_limit,
        memory_limit,
        memory_headroom,
    };
    // The log line: the numbers (and why it matters), then the fix, which the status page
    // shows too.
    let with_fix = |finding: Finding, numbers: String, separator: &str| match finding.fix(&inputs) {
        Some(fix) => format!("{numbers}{separator}{fix}"),
        None => numbers,
    };
    if let (Some(gomaxprocs), Some(limit)) = (service.gomaxprocs, cgroup.cpu_limit) {
        let finding = Finding::GomaxprocsAboveCpuLimit;
        let holds = limit.is_some_and(|l| gomaxprocs > l.ceil().max(1.0));
        let message = match limit {
            Some(l) => with_fix(
                finding,
                format!(
                    "GOMAXPROCS={} but the container may use {} CPU (cgroup cpu.max quota/period = {})",
                    number(gomaxprocs),
                    number(l),
                    number(l)
                ),
                ": ",
            ),
            None => format!(
                "GOMAXPROCS={} and the container has no CPU limit",
                number(gomaxprocs)
            ),
        };
        findings.push((finding, holds, message));
    }
    if let (Some(gomemlimit), Some(limit)) = (service.gomemlimit, cgroup.memory_limit) {
        let unset_holds = gomemlimit.is_none() && limit.is_some();
        let message = match limit {
            Some(l) => with_fix(
                Finding::GomemlimitUnset,
                format!(
                    "GOMEMLIMIT is not set but the container's memory.max is {}: the GC will not work harder before the OOM killer comes",
                    bytes(l)
                ),
                "; ",
            ),
            None => "GOMEMLIMIT is not set and the container has no memory limit".to_string(),
        };
        findings.push((Finding::GomemlimitUnset, unset_holds, message));
        match (gomemlimit, limit) {
            (Some(g), Some(l)) => {
                let above = g > l;
                findings.push((
                    Finding::GomemlimitAboveMemoryLimit,
                    above,
                    with_fix(
                        Finding::GomemlimitAboveMemoryLimit,
                        format!(
                            "GOMEMLIMIT={} is above the container's memory.max {}: the OOM killer comes before the GC tries harder",
                            bytes(g),
                            bytes(l)
                        ),
                        "; ",
                    ),
                ));
                let room = l - g;
                let close = !above && room < memory_headroom * l;
                findings.push((
                    Finding::GomemlimitTooCloseToMemoryLimit,
                    close,
                    with_fix(
                        Finding::GomemlimitTooCloseToMemoryLimit,
                        format!(
                            "GOMEMLIMIT={} leaves {} ({:.1}%) of memory.max {} for non-heap memory (goroutine stacks, cgo, other processes), less than the {:.0}% margin",
                            bytes(g),
                            bytes(room.max(0.0)),
                            room.max(0.0) / l * 100.0,
                            bytes(l),
                            memory_headroom * 100.0
                        ),
                        ": ",
                    ),
                ));
            }
            (_, None) | (None, Some(_)) => {
                // No memory limit, or no GOMEMLIMIT (said by gomemlimit_unset): neither
                // comparison can hold.
                for finding in [
                    Finding::GomemlimitAboveMemoryLimit,
                    Finding::GomemlimitTooCloseToMemoryLimit,
                ] {
                    findings.push((finding, false, String::new()));
                }
            }
        }
    }
    if let Some(share) = service.gc_cpu_share {
        let gogc = service
            .gogc
            .map(|g| format!("GOGC={}", number(g)))
            .unwrap_or_else(|| "GOGC unknown".to_string());
        let gomemlimit = match service.gomemlimit {
            Some(Some(g)) => format!("GOMEMLIMIT={}", bytes(g)),
            Some(None) => "GOMEMLIMIT unset".to_string(),
            None => "GOMEMLIMIT unknown".to_string(),
        };
        let limit = memory_limit
            .map(|l| format!("memory.max {}", bytes(l)))
            .unwrap_or_else(|| "no memory limit".to_string());
        findings.push((
            Finding::GcCpuHigh,
            share > gc_threshold,
            with_fix(
                Finding::GcCpuHigh,
                format!(
                    "the GC used {:.0}% of the service's CPU over the last interval (threshold {:.0}%; {gogc}, {gomemlimit}, {limit}): the live heap is close to GOMEMLIMIT or GOGC is too low",
                    share * 100.0,
                    gc_threshold * 100.0
                ),
                "; ",
            ),
        ));
    }
    if let Some((share, seconds)) = cgroup.throttled {
        let latency = service
            .sched_latency_mean
            .map(|s| format!(", mean goroutine scheduling latency {:.1} µs", s * 1e6))
            .unwrap_or_default();
        let procs = match (service.gomaxprocs, cpu_limit) {
            (Some(p), Some(l)) => {
                format!(
                    " with GOMAXPROCS={} and a CPU limit of {}",
                    number(p),
                    number(l)
                )
            }
            _ => String::new(),
        };
        findings.push((
            Finding::CpuThrottled,
            share > throttled_threshold,
            with_fix(
                Finding::CpuThrottled,
                format!(
                    "{:.0}% of CFS periods were throttled over the last interval ({:.3} s throttled{latency}){procs}",
                    share * 100.0,
                    seconds
                ),
                ": ",
            ),
        ));
    }
    Evaluation {
        findings,
        gomaxprocs: service.gomaxprocs,
        cpu_limit,
        gomemlimit: service.gomemlimit.flatten(),
        memory_limit,
        gc_cpu_share: service.gc_cpu_share,
        throttled_share: cgroup.throttled.map(|t| t.0),
        sched_latency_mean: service.sched_latency_mean,
    }
}

impl Evaluation {
    fn into_scope(self, ts: u64) -> ScopeMetrics {
        let mut metrics = Vec::new();
        if !self.findings.is_empty() {
            let points = self
                .findings
                .iter()
                .map(|(finding, holds, _)| NumberDataPoint {
                    attributes: vec![KeyValue {
                        key: "finding".to_string(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(finding.name().to_string())),
                        }),
                        ..Default::default()
                    }],
                    time_unix_nano: ts,
                    value: Some(number_data_point::Value::AsInt(i64::from(*holds))),
                    ..Default::default()
                })
                .collect();
            metrics.push(gauge(
                METRIC_FINDING,
                "1 while a Go runtime fit finding holds, 0 once it clears.",
                "1",
                points,
            ));
        }
        let inputs: [(&str, &str, &str, Option<f64>); 7] = [
            (
                METRIC_GOMAXPROCS,
                "GOMAXPROCS of the service.",
                "{thread}",
                self.gomaxprocs,
            ),
            (
                METRIC_CPU_LIMIT,
                "CPUs the container may use (cpu.max quota/period).",
                "{cpu}",
                self.cpu_limit,
            ),
            (
                METRIC_GOMEMLIMIT,
                "GOMEMLIMIT of the service (absent when unset).",
                "By",
                self.gomemlimit,
            ),
            (
                METRIC_MEMORY_LIMIT,
                "memory.max of the container (absent when unlimited).",
                "By",
                self.memory_limit,
            ),
            (
                METRIC_GC_CPU_SHARE,
                "Share of the CPU the Go runtime used that went to the GC over the last interval.",
                "1",
                self.gc_cpu_share,
            ),
            (
                METRIC_CPU_THROTTLED_SHARE,
                "Share of CFS periods throttled over the last interval.",
                "1",
                self.throttled_share,
            ),
            (
                METRIC_SCHED_LATENCY,
                "Mean goroutine scheduling latency over the last interval.",
                "s",
                self.sched_latency_mean,
            ),
        ];
        for (name, description, unit, value) in inputs {
            if let Some(value) = value {
                metrics.push(gauge(
                    name,
                    description,
                    unit,
                    vec![NumberDataPoint {
                        time_unix_nano: ts,
                        value: Some(number_data_point::Value::AsDouble(value)),
                        ..Default::default()
                    }],
                ));
            }
        }
        ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: SCOPE_NAME.to_string(),
                ..Default::default()
            }),
            metrics,
            ..Default::default()
        }
    }
}

fn gauge(name: &str, description: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.to_string(),
        description: description.to_string(),
        unit: unit.to_string(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

/// The first recorded value of a gauge or sum, and its timestamp.
fn first_value(metric: &Metric) -> Option<(f64, u64)> {
    let points = match metric.data.as_ref()? {
        metric::Data::Gauge(g) => &g.data_points,
        metric::Data::Sum(s) => &s.data_points,
        _ => return None,
    };
    points.iter().find_map(|p| {
        if p.flags & FLAG_NO_RECORDED_VALUE != 0 {
            return None;
        }
        let value = match p.value? {
            number_data_point::Value::AsDouble(v) => v,
            number_data_point::Value::AsInt(v) => v as f64,
        };
        value.is_finite().then_some((value, p.time_unix_nano))
    })
}

/// (sum, count) of a histogram, summed over its points (attributes ignored), and the
/// newest timestamp.
fn histogram_sum_count(metric: &Metric) -> Option<((f64, f64), u64)> {
    let metric::Data::Histogram(h) = metric.data.as_ref()? else {
        return None;
    };
    let mut total = (0.0, 0.0);
    let mut ts = 0;
    let mut any = false;
    for p in &h.data_points {
        if p.flags & FLAG_NO_RECORDED_VALUE != 0 {
            continue;
        }
        let sum = p.sum?;
        total.0 += sum;
        total.1 += p.count as f64;
        ts = ts.max(p.time_unix_nano);
        any = true;
    }
    (any && total.0.is_finite()).then_some((total, ts))
}

fn go_readings(resource: &ResourceMetrics) -> GoReadings {
    let mut r = GoReadings::default();
    for scope in &resource.scope_metrics {
        if scope.scope.as_ref().is_some_and(|s| s.name == SCOPE_NAME) {
            continue;
        }
        for metric in &scope.metrics {
            let name = metric.name.as_str();
            // Every input name starts with `go`: most metrics stop here.
            if !name.starts_with("go") {
                continue;
            }
            let slot = if GOMAXPROCS.contains(&name) {
                if name == OTEL_GOMAXPROCS {
                    r.otel_names = true;
                }
                &mut r.gomaxprocs
            } else if GOMEMLIMIT.contains(&name) {
                &mut r.gomemlimit
            } else if GOGC.contains(&name) {
                &mut r.gogc
            } else if GC_CPU.contains(&name) {
                &mut r.gc_cpu
            } else if TOTAL_CPU.contains(&name) {
                &mut r.total_cpu
            } else if IDLE_CPU.contains(&name) {
                &mut r.idle_cpu
            } else if SCHED_LATENCY.contains(&name) {
                if let Some((sum_count, ts)) = histogram_sum_count(metric) {
                    r.sched = Some(sum_count);
                    r.ts = r.ts.max(ts);
                }
                continue;
            } else {
                continue;
            };
            if let Some((value, ts)) = first_value(metric) {
                *slot = Some(value);
                r.ts = r.ts.max(ts);
            }
        }
    }
    r
}

fn cgroup_readings(resource: &ResourceMetrics) -> CgroupReadings {
    let mut r = CgroupReadings::default();
    for scope in &resource.scope_metrics {
        for metric in &scope.metrics {
            let name = metric.name.as_str();
            if !name.starts_with("cgroup.") {
                continue;
            }
            let value = first_value(metric);
            if let Some((_, ts)) = value {
                r.ts = r.ts.max(ts);
            }
            if name.starts_with("cgroup.cpu.") {
                r.has_cpu = true;
            } else if name.starts_with("cgroup.memory.") {
                r.has_memory = true;
            }
            let value = value.map(|v| v.0);
            match name {
                CGROUP_CPU_MAX => r.cpu_limit = value,
                CGROUP_MEMORY_MAX => r.memory_limit = value,
                CGROUP_NR_THROTTLED => r.nr_throttled = value,
                CGROUP_NR_PERIODS => r.nr_periods = value,
                CGROUP_THROTTLED => r.throttled_seconds = value,
                _ => {}
            }
        }
    }
    r
}

/// A string resource attribute.
fn string_attribute<'r>(resource: &'r ResourceMetrics, key: &str) -> Option<&'r str> {
    resource
        .resource
        .as_ref()?
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

/// How a service is named in log lines: `service.name`/`service.instance.id`, or the
/// join attributes' resource when it has neither.
fn resource_label(resource: &ResourceMetrics) -> String {
    let get = |key: &str| string_attribute(resource, key);
    match (get("service.name"), get("service.instance.id")) {
        (Some(name), Some(instance)) => format!("{name}/{instance}"),
        (Some(name), None) => name.to_string(),
        (None, Some(instance)) => instance.to_string(),
        (None, None) => "(unnamed)".to_string(),
    }
}

/// A number without a trailing `.0`.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value:.2}")
    }
}

/// Bytes for a reader: `512 MiB (536870912)`.
fn bytes(value: f64) -> String {
    format!("{} ({})", go_bytes(value), number(value.round()))
}

/// Bytes in the GOMEMLIMIT syntax, rounded down to a whole MiB (or KiB below 1 MiB).
fn go_bytes(value: f64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if value >= MIB {
        let mib = (value / MIB).floor();
        if mib % 1024.0 == 0.0 {
            format!("{}GiB", number(mib / 1024.0))
        } else {
            format!("{}MiB", number(mib))
        }
    } else {
        format!("{}KiB", number((value / 1024.0).floor()))
    }
}

impl Processor for GofitProcessor {
    fn process(&mut self, mut batch: Batch) -> Result<Batch, Refusal> {
        if batch.signal() != oxcol_core::Signal::Metrics {
            return Ok(batch);
        }
        let id = self.id.clone();
        let resources = batch.metrics_mut().map_err(|e| Refusal::Invalid {
            reason: format!("processor {id}: cannot decode the metrics batch: {e}"),
        })?;
        self.process_metrics(resources);
        batch.recount();
        Ok(batch)
    }
}

#[cfg(test)]
mod tests;
