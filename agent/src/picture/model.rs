//! The picture's tables: what the tap keeps from the metrics and logs it sees, bounded
//! (see [`super::Limits`]), and the snapshot built from them.
//!
//! Each resource of a batch is read once: the values the picture uses are collected from
//! its metrics ([`Found`]), then applied to the entry of that resource. Limits and
//! `high` come from the same resource as the working set (the cgroup receiver emits one
//! resource per cgroup per scrape), so a limit that is lifted (`max`, no point) is gone
//! at the next scrape.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::{Metric, NumberDataPoint, ResourceMetrics, metric};
use oxcol_core::{Batch, Data, Signal};
use oxcol_processors::ewma::{Trend as Smoothing, point_value, seconds_to_limit};
use oxcol_processors::gofit;
use oxcol_processors::relabel::stringify;
use prost::Message;

use super::ring::Ring;
use super::{
    Alert, BurnRate, CgroupView, GoFitFinding, GoFitView, LeakSuspect, Limits, MachineView,
    Picture, Pressure, ProcessView, SloView, Trend, TrendSource,
};

/// The values a time-to-limit prediction of the working set is made of (`predict[].value`).
pub(super) const WORKING_SET_VALUES: &[&str] = &[WORKING_SET];

const WORKING_SET: &str = "cgroup.memory.working_set";
/// The ewma processor's `rate: true` output for the working set.
const WORKING_SET_RATE: &str = "cgroup.memory.working_set.rate.ewma";
const MEMORY_MAX: &str = "cgroup.memory.max";
const MEMORY_HIGH: &str = "cgroup.memory.high";
const PRESSURE_AVG: &str = "cgroup.pressure.avg";
const MEMORY_EVENTS: &str = "cgroup.memory.events";
const SYSTEM_USAGE: &str = "system.memory.usage";
const SYSTEM_LIMIT: &str = "system.memory.limit";
const PSS: &str = "process.smaps.pss";
const RSS: &str = "process.smaps.rss";
const SWAP: &str = "process.smaps.swap";
const LEAK_GROWTH: &str = "go.goroutine.leak.growth";
const STACK_COUNT: &str = "go.goroutine.stack.count";
const BURN_RATE: &str = "slo.burn_rate";
const BUDGET: &str = "slo.error_budget.remaining";
const ALERT: &str = "slo.alert";
/// The gofit processor's output: the findings, and their inputs on the same resource.
const FIT_FINDING: &str = gofit::METRIC_FINDING;
/// `event.name` of the pprof receiver's leak-suspect log record.
const LEAK_EVENT: &str = "go.goroutine.leak.suspect";

const METRIC_NAMES: &[&str] = &[
    WORKING_SET,
    MEMORY_MAX,
    MEMORY_HIGH,
    PRESSURE_AVG,
    MEMORY_EVENTS,
    SYSTEM_USAGE,
    SYSTEM_LIMIT,
    PSS,
    LEAK_GROWTH,
    STACK_COUNT,
    BURN_RATE,
    BUDGET,
    ALERT,
    FIT_FINDING,
];

/// The ewma processor's defaults, used for the picture's own trend.
const HALF_LIFE: Duration = Duration::from_secs(120);
const WARMUP_SAMPLES: u32 = 5;
const MAX_GAP_HALF_LIVES: f64 = 10.0;
/// Predictions further away are absent (the ewma processor's default `horizon`).
const HORIZON_SECONDS: f64 = 24.0 * 3600.0;

/// What an encoded batch is searched for before it is decoded: the metric names the
/// picture reads (a name absent from the bytes is absent from the data) and the
/// leak-suspect event name.
pub(super) struct Needles {
    /// `None` only if the pattern could not be built: then every batch is decoded.
    pattern: Option<regex::bytes::Regex>,
}

impl Needles {
    pub(super) fn new(predictions: &[String]) -> Needles {
        let alternatives: Vec<String> = METRIC_NAMES
            .iter()
            .copied()
            .chain(predictions.iter().map(String::as_str))
            .chain([LEAK_EVENT])
            .map(regex::escape)
            .collect();
        Needles {
            pattern: regex::bytes::Regex::new(&alternatives.join("|")).ok(),
        }
    }

    fn found_in(&self, bytes: &[u8]) -> bool {
        self.pattern.as_ref().is_none_or(|p| p.is_match(bytes))
    }
}

/// The part of a batch the picture reads: borrowed when the batch is decoded, decoded
/// here (only the segments holding a needle) when it is encoded.
pub(super) enum Seen<'a> {
    Metrics(Cow<'a, [ResourceMetrics]>),
    Logs(Cow<'a, [ResourceLogs]>),
}

/// What of `batch` the picture needs to read; `None` when nothing (traces, or encoded data
/// without any needle).
pub(super) fn relevant<'a>(batch: &'a Batch, needles: &Needles) -> Option<Seen<'a>> {
    match batch.data() {
        Data::Metrics(resources) => Some(Seen::Metrics(Cow::Borrowed(resources))),
        Data::Logs(resources) => Some(Seen::Logs(Cow::Borrowed(resources))),
        Data::Traces(_) => None,
        Data::Encoded(segments) => {
            let mut matching = segments.iter().filter(|s| needles.found_in(s)).peekable();
            matching.peek()?;
            match batch.signal() {
                Signal::Metrics => Some(Seen::Metrics(Cow::Owned(
                    matching
                        .filter_map(|s| ExportMetricsServiceRequest::decode(s.as_ref()).ok())
                        .flat_map(|r| r.resource_metrics)
                        .collect(),
                ))),
                Signal::Logs => Some(Seen::Logs(Cow::Owned(
                    matching
                        .filter_map(|s| ExportLogsServiceRequest::decode(s.as_ref()).ok())
                        .flat_map(|r| r.resource_logs)
                        .collect(),
                ))),
                Signal::Traces => None,
            }
        }
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

fn attribute_text(attributes: &[KeyValue], key: &str) -> Option<String> {
    attribute(attributes, key).map(|v| stringify(Some(v)))
}

fn attribute_map(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), stringify(kv.value.as_ref())))
        .collect()
}

/// A series key: a hash of the given attribute sets (order-insensitive) and extra text.
fn key_of(sets: &[&[KeyValue]], extra: &[&str]) -> u64 {
    let mut pairs: Vec<(&str, String)> = sets
        .iter()
        .flat_map(|set| set.iter())
        .map(|kv| (kv.key.as_str(), stringify(kv.value.as_ref())))
        .collect();
    pairs.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    pairs.hash(&mut hasher);
    extra.hash(&mut hasher);
    hasher.finish()
}

fn number_points(metric: &Metric) -> &[NumberDataPoint] {
    match &metric.data {
        Some(metric::Data::Gauge(g)) => &g.data_points,
        Some(metric::Data::Sum(s)) => &s.data_points,
        _ => &[],
    }
}

/// A point's (timestamp, value) when it has both.
fn timed_value(point: &NumberDataPoint) -> Option<(u64, f64)> {
    let value = point_value(point)?;
    (point.time_unix_nano > 0).then_some((point.time_unix_nano, value))
}

/// The value of a gauge's last point that has one.
fn last_value(points: &[NumberDataPoint]) -> Option<f64> {
    points.iter().filter_map(point_value).next_back()
}

/// The newest of two timed values.
fn newest(a: Option<(u64, f64)>, b: (u64, f64)) -> Option<(u64, f64)> {
    match a {
        Some(a) if a.0 > b.0 => Some(a),
        _ => Some(b),
    }
}

/// The values of one resource the picture uses.
#[derive(Default)]
struct Found<'a> {
    working_set: Option<(u64, f64)>,
    limit: Option<f64>,
    high: Option<f64>,
    ewma_rate: Option<(u64, f64)>,
    ewma_time_to_limit: Option<(u64, f64)>,
    /// (resource, kind, window, value)
    pressure: Vec<(String, String, String, f64)>,
    pressure_ts: u64,
    oom_kills: Option<f64>,
    system_used: Option<(u64, f64)>,
    system_sum: Option<f64>,
    system_limit: Option<f64>,
    pss: Option<(u64, f64)>,
    rss: Option<f64>,
    swap: Option<f64>,
    leak_growth: Vec<(&'a [KeyValue], u64, f64)>,
    stack_counts: Vec<(&'a [KeyValue], u64, f64)>,
    /// (metric name, point attributes, timestamp, value)
    slo: Vec<(&'a str, &'a [KeyValue], u64, f64)>,
    /// gofit's `finding` points: (finding, timestamp, value).
    fit_findings: Vec<(String, u64, f64)>,
    fit: FitInputs,
}

/// The input gauges gofit appends next to its findings.
#[derive(Default)]
struct FitInputs {
    gomaxprocs: Option<f64>,
    cpu_limit: Option<f64>,
    gomemlimit: Option<f64>,
    memory_limit: Option<f64>,
    gc_cpu_share: Option<f64>,
    cpu_throttled_share: Option<f64>,
}

struct CgroupEntry {
    view: CgroupView,
    smoothing: Smoothing,
    /// The ewma processor's rate and prediction for the newest working-set point.
    ewma_rate: Option<(u64, f64)>,
    ewma_time_to_limit: Option<(u64, f64)>,
    working_set_ts: u64,
    history: Ring,
    updated: Cadence,
}

struct MachineEntry {
    view: MachineView,
    smoothing: Smoothing,
    used_ts: u64,
    history: Ring,
    updated: Cadence,
}

struct ProcessEntry {
    view: ProcessView,
    history: Ring,
    updated: Cadence,
}

struct SuspectEntry {
    view: LeakSuspect,
    history: Ring,
    updated: Cadence,
}

struct GoFitEntry {
    view: GoFitView,
    updated: Cadence,
}

struct SloEntry {
    view: SloView,
    /// `slo.window` text with its duration, for ordering.
    windows: Vec<(Duration, String, f64)>,
    history: Ring,
    updated: Cadence,
}

pub(super) struct Model {
    limits: Limits,
    needles: Arc<Needles>,
    /// Names of the ewma processors' predictions of the working set.
    predictions: Vec<String>,
    status_page: Option<String>,
    newest_ns: u64,
    last_sweep_ns: u64,
    cgroups: HashMap<u64, CgroupEntry>,
    machines: HashMap<u64, MachineEntry>,
    processes: HashMap<u64, ProcessEntry>,
    suspects: HashMap<u64, SuspectEntry>,
    slos: HashMap<u64, SloEntry>,
    /// Services with gofit findings holding; one whose findings all cleared is removed.
    go_fit: HashMap<u64, GoFitEntry>,
    /// Data time of the newest gofit report (ns).
    go_fit_checked_ns: u64,
    /// The gofit processor's `memory_headroom`, for the suggested GOMEMLIMIT in a fix.
    fit_headroom: f64,
    dropped: u64,
}

/// Makes room for one more entry: drops the entries no longer reported
/// ([`Reporting`]) or not updated within `stale_ns` of `newest_ns`; true when there is
/// room.
fn make_room<E>(
    table: &mut HashMap<u64, E>,
    max: usize,
    updated: impl Fn(&E) -> Cadence,
    newest_ns: u64,
    stale_ns: u64,
) -> bool {
    if table.len() < max {
        return true;
    }
    let reporting = Reporting::of(table.values().map(&updated), stale_ns);
    table.retain(|_, e| {
        let cadence = updated(e);
        reporting.current(cadence) && cadence.last_ns.saturating_add(stale_ns) >= newest_ns
    });
    table.len() < max
}

/// When an entry was last reported and how often it is.
#[derive(Clone, Copy, Debug, Default)]
struct Cadence {
    /// Data time of the newest point (ns).
    last_ns: u64,
    /// The gap between its last two points (0 when seen once).
    gap_ns: u64,
}

impl Cadence {
    fn seen(&mut self, ts: u64) {
        if ts > self.last_ns {
            if self.last_ns > 0 {
                self.gap_ns = ts - self.last_ns;
            }
            self.last_ns = ts;
        }
    }
}

/// Which entries of a table are still reported: a process that exited, a cgroup that was
/// removed, a suspect that stopped growing is missing from the next reports of its kind.
/// An entry is current while it is behind the table's newest point by at most 2.5 of its
/// own intervals (an entry seen once: of the longest interval in the table).
struct Reporting {
    newest_ns: u64,
    fallback_gap_ns: u64,
}

impl Reporting {
    fn of(cadences: impl Iterator<Item = Cadence>, stale_ns: u64) -> Reporting {
        let (mut newest_ns, mut gap) = (0, 0);
        for cadence in cadences {
            newest_ns = newest_ns.max(cadence.last_ns);
            gap = gap.max(cadence.gap_ns);
        }
        Reporting {
            newest_ns,
            fallback_gap_ns: if gap == 0 { stale_ns } else { gap },
        }
    }

    /// Counts reports outside the table too (gofit's reports of services that fit).
    fn newest_at_least(mut self, newest_ns: u64) -> Reporting {
        self.newest_ns = self.newest_ns.max(newest_ns);
        self
    }

    fn current(&self, cadence: Cadence) -> bool {
        let gap = if cadence.gap_ns > 0 {
            cadence.gap_ns
        } else {
            self.fallback_gap_ns
        };
        cadence.last_ns.saturating_add(gap.saturating_mul(5) / 2) >= self.newest_ns
    }
}

impl Model {
    pub(super) fn new(limits: Limits) -> Model {
        Model {
            limits,
            needles: Arc::new(Needles::new(&[])),
            predictions: Vec::new(),
            status_page: None,
            newest_ns: 0,
            last_sweep_ns: 0,
            cgroups: HashMap::new(),
            machines: HashMap::new(),
            processes: HashMap::new(),
            suspects: HashMap::new(),
            slos: HashMap::new(),
            go_fit: HashMap::new(),
            go_fit_checked_ns: 0,
            fit_headroom: gofit::Config::default().memory_headroom,
            dropped: 0,
        }
    }

    pub(super) fn needles(&self) -> Arc<Needles> {
        Arc::clone(&self.needles)
    }

    pub(super) fn configure(&mut self, predictions: Vec<String>, status_page: Option<String>) {
        if predictions != self.predictions {
            self.needles = Arc::new(Needles::new(&predictions));
            self.predictions = predictions;
        }
        self.status_page = status_page;
    }

    /// The `memory_headroom` of the gofit processor (`None`: none configured; its default).
    pub(super) fn set_fit_headroom(&mut self, headroom: Option<f64>) {
        self.fit_headroom = headroom.unwrap_or(gofit::Config::default().memory_headroom);
    }

    fn history_ns(&self) -> u64 {
        u64::try_from(self.limits.history.as_nanos()).unwrap_or(u64::MAX)
    }

    fn ring(&self) -> Ring {
        Ring::new(self.history_ns(), self.limits.history_points)
    }

    pub(super) fn ingest(&mut self, seen: &Seen<'_>) {
        match seen {
            Seen::Metrics(resources) => {
                for resource in resources.iter() {
                    self.ingest_metrics(resource);
                }
            }
            Seen::Logs(resources) => {
                for resource in resources.iter() {
                    self.ingest_logs(resource);
                }
            }
        }
        self.sweep_now_and_then();
    }

    /// Forgets series without a point for the history span, once per history slot.
    fn sweep_now_and_then(&mut self) {
        let slot = self.history_ns() / self.limits.history_points.max(1) as u64;
        if self.newest_ns < self.last_sweep_ns.saturating_add(slot) {
            return;
        }
        self.last_sweep_ns = self.newest_ns;
        let (newest, stale) = (self.newest_ns, self.history_ns());
        let fresh = |updated: Cadence| updated.last_ns.saturating_add(stale) >= newest;
        self.cgroups.retain(|_, e| fresh(e.updated));
        self.machines.retain(|_, e| fresh(e.updated));
        self.processes.retain(|_, e| fresh(e.updated));
        self.suspects.retain(|_, e| fresh(e.updated));
        self.slos.retain(|_, e| fresh(e.updated));
        self.go_fit.retain(|_, e| fresh(e.updated));
    }

    fn see_time(&mut self, ts: u64) {
        self.newest_ns = self.newest_ns.max(ts);
    }

    fn ingest_metrics(&mut self, resource_metrics: &ResourceMetrics) {
        let resource: &[KeyValue] = resource_metrics
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let mut found = Found::default();
        for metric in resource_metrics
            .scope_metrics
            .iter()
            .flat_map(|s| s.metrics.iter())
        {
            self.collect(metric, &mut found);
        }
        if let Some(ts) = [
            found.working_set,
            found.system_used,
            found.pss,
            found.ewma_rate,
            found.ewma_time_to_limit,
        ]
        .iter()
        .flatten()
        .map(|(ts, _)| *ts)
        .chain(found.leak_growth.iter().map(|(_, ts, _)| *ts))
        .chain(found.slo.iter().map(|(_, _, ts, _)| *ts))
        .chain(found.fit_findings.iter().map(|(_, ts, _)| *ts))
        .chain([found.pressure_ts])
        .max()
        {
            self.see_time(ts);
        }
        self.apply_cgroup(resource, &found);
        self.apply_machine(resource, &found);
        self.apply_process(resource, &found);
        self.apply_suspects(resource, &found);
        self.apply_slos(resource, &found);
        self.apply_go_fit(resource, &found);
    }

    fn collect<'a>(&self, metric: &'a Metric, found: &mut Found<'a>) {
        let points = number_points(metric);
        let name = metric.name.as_str();
        match name {
            WORKING_SET => {
                for p in points.iter().filter_map(timed_value) {
                    found.working_set = newest(found.working_set, p);
                }
            }
            WORKING_SET_RATE => {
                for p in points.iter().filter_map(timed_value) {
                    found.ewma_rate = newest(found.ewma_rate, p);
                }
            }
            MEMORY_MAX => found.limit = points.iter().filter_map(point_value).last(),
            MEMORY_HIGH => found.high = points.iter().filter_map(point_value).last(),
            PRESSURE_AVG => {
                for p in points {
                    let (Some(value), Some(resource), Some(kind), Some(window)) = (
                        point_value(p),
                        attribute_text(&p.attributes, "resource"),
                        attribute_text(&p.attributes, "kind"),
                        attribute_text(&p.attributes, "window"),
                    ) else {
                        continue;
                    };
                    found.pressure.push((resource, kind, window, value));
                    found.pressure_ts = found.pressure_ts.max(p.time_unix_nano);
                }
            }
            MEMORY_EVENTS => {
                for p in points {
                    if attribute_text(&p.attributes, "event").as_deref() == Some("oom_kill") {
                        found.oom_kills = point_value(p);
                    }
                }
            }
            SYSTEM_USAGE => {
                for p in points {
                    let Some(timed) = timed_value(p) else {
                        continue;
                    };
                    *found.system_sum.get_or_insert(0.0) += timed.1;
                    if attribute_text(&p.attributes, "state").as_deref() == Some("used") {
                        found.system_used = newest(found.system_used, timed);
                    }
                }
            }
            SYSTEM_LIMIT => found.system_limit = points.iter().filter_map(point_value).last(),
            PSS => {
                for p in points.iter().filter_map(timed_value) {
                    found.pss = newest(found.pss, p);
                }
            }
            RSS => found.rss = points.iter().filter_map(point_value).last(),
            SWAP => found.swap = points.iter().filter_map(point_value).last(),
            LEAK_GROWTH | STACK_COUNT => {
                let into = if name == LEAK_GROWTH {
                    &mut found.leak_growth
                } else {
                    &mut found.stack_counts
                };
                for p in points {
                    if let Some((ts, value)) = timed_value(p) {
                        into.push((&p.attributes, ts, value));
                    }
                }
            }
            BURN_RATE | BUDGET | ALERT => {
                for p in points {
                    if let Some((ts, value)) = timed_value(p) {
                        found.slo.push((name, &p.attributes, ts, value));
                    }
                }
            }
            FIT_FINDING => {
                for p in points {
                    if let (Some((ts, value)), Some(finding)) =
                        (timed_value(p), attribute_text(&p.attributes, "finding"))
                    {
                        found.fit_findings.push((finding, ts, value));
                    }
                }
            }
            gofit::METRIC_GOMAXPROCS => found.fit.gomaxprocs = last_value(points),
            gofit::METRIC_CPU_LIMIT => found.fit.cpu_limit = last_value(points),
            gofit::METRIC_GOMEMLIMIT => found.fit.gomemlimit = last_value(points),
            gofit::METRIC_MEMORY_LIMIT => found.fit.memory_limit = last_value(points),
            gofit::METRIC_GC_CPU_SHARE => found.fit.gc_cpu_share = last_value(points),
            gofit::METRIC_CPU_THROTTLED_SHARE => found.fit.cpu_throttled_share = last_value(points),
            _ if self.predictions.iter().any(|n| n == name) => {
                for p in points.iter().filter_map(timed_value) {
                    found.ewma_time_to_limit = newest(found.ewma_time_to_limit, p);
                }
            }
            _ => {}
        }
    }

    fn apply_cgroup(&mut self, resource: &[KeyValue], found: &Found<'_>) {
        let memory = found.working_set.is_some()
            || found.ewma_rate.is_some()
            || found.ewma_time_to_limit.is_some();
        if !memory && found.pressure.is_empty() {
            return;
        }
        let Some(path) = attribute_text(resource, "cgroup.path") else {
            return;
        };
        let key = key_of(&[resource], &[]);
        if !self.cgroups.contains_key(&key) {
            let (newest_ns, stale_ns) = (self.newest_ns, self.history_ns());
            let room = make_room(
                &mut self.cgroups,
                self.limits.max_cgroups,
                |e| e.updated,
                newest_ns,
                stale_ns,
            );
            if !room {
                self.dropped += 1;
                return;
            }
            let entry = CgroupEntry {
                view: CgroupView {
                    path,
                    resource: attribute_map(resource),
                    ..CgroupView::default()
                },
                smoothing: Smoothing::new(HALF_LIFE, MAX_GAP_HALF_LIVES),
                ewma_rate: None,
                ewma_time_to_limit: None,
                working_set_ts: 0,
                history: self.ring(),
                updated: Cadence::default(),
            };
            self.cgroups.insert(key, entry);
        }
        let Some(entry) = self.cgroups.get_mut(&key) else {
            return;
        };
        if let Some((ts, working_set)) = found.working_set {
            if ts >= entry.working_set_ts {
                entry.working_set_ts = ts;
                entry.view.working_set_bytes = Some(working_set);
                // The limits of the same scrape: absent = none.
                entry.view.limit_bytes = found.limit;
                entry.view.high_bytes = found.high;
                if found.oom_kills.is_some() {
                    entry.view.oom_kills = found.oom_kills;
                }
            }
            entry.smoothing.update(ts, working_set);
            entry.history.push(ts, working_set);
            entry.updated.seen(ts);
        }
        if let Some(rate) = found.ewma_rate {
            entry.ewma_rate = newest(entry.ewma_rate, rate);
            entry.updated.seen(rate.0);
        }
        if let Some(ttl) = found.ewma_time_to_limit {
            entry.ewma_time_to_limit = newest(entry.ewma_time_to_limit, ttl);
        }
        if !found.pressure.is_empty() {
            entry.view.pressure = pressure_of(&found.pressure);
            entry.updated.seen(found.pressure_ts);
        }
    }

    fn apply_machine(&mut self, resource: &[KeyValue], found: &Found<'_>) {
        let Some((ts, used)) = found.system_used else {
            return;
        };
        let key = key_of(&[resource], &[]);
        if !self.machines.contains_key(&key) {
            let (newest_ns, stale_ns) = (self.newest_ns, self.history_ns());
            let room = make_room(
                &mut self.machines,
                self.limits.max_cgroups,
                |e| e.updated,
                newest_ns,
                stale_ns,
            );
            if !room {
                self.dropped += 1;
                return;
            }
            let entry = MachineEntry {
                view: MachineView {
                    host: attribute_text(resource, "host.name").unwrap_or_default(),
                    ..MachineView::default()
                },
                smoothing: Smoothing::new(HALF_LIFE, MAX_GAP_HALF_LIVES),
                used_ts: 0,
                history: self.ring(),
                updated: Cadence::default(),
            };
            self.machines.insert(key, entry);
        }
        let Some(entry) = self.machines.get_mut(&key) else {
            return;
        };
        if ts >= entry.used_ts {
            entry.used_ts = ts;
            entry.view.used_bytes = Some(used);
            entry.view.total_bytes = found.system_limit.or(found.system_sum);
        }
        entry.smoothing.update(ts, used);
        entry.history.push(ts, used);
        entry.updated.seen(ts);
    }

    fn apply_process(&mut self, resource: &[KeyValue], found: &Found<'_>) {
        let Some((ts, pss)) = found.pss else {
            return;
        };
        let pid = match attribute(resource, "process.pid").and_then(|v| v.value.as_ref()) {
            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(pid)) => *pid,
            Some(_) => attribute_text(resource, "process.pid")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
            None => return,
        };
        let creation = attribute_text(resource, "process.creation.time").unwrap_or_default();
        let host = attribute_text(resource, "host.name");
        let key = key_of(
            &[],
            &[&pid.to_string(), &creation, host.as_deref().unwrap_or("")],
        );
        if !self.processes.contains_key(&key) {
            let (newest_ns, stale_ns) = (self.newest_ns, self.history_ns());
            let room = make_room(
                &mut self.processes,
                self.limits.max_processes,
                |e| e.updated,
                newest_ns,
                stale_ns,
            );
            if !room {
                // Full of live processes: the smallest gives way to a larger newcomer.
                let smallest = self
                    .processes
                    .iter()
                    .min_by(|a, b| a.1.view.pss_bytes.total_cmp(&b.1.view.pss_bytes))
                    .map(|(k, e)| (*k, e.view.pss_bytes));
                match smallest {
                    Some((smallest, smallest_pss)) if smallest_pss < pss => {
                        self.processes.remove(&smallest);
                        self.dropped += 1;
                    }
                    _ => {
                        self.dropped += 1;
                        return;
                    }
                }
            }
            let entry = ProcessEntry {
                view: ProcessView {
                    pid,
                    name: attribute_text(resource, "process.executable.name").unwrap_or_default(),
                    owner: attribute_text(resource, "process.owner"),
                    host,
                    ..ProcessView::default()
                },
                history: self.ring(),
                updated: Cadence::default(),
            };
            self.processes.insert(key, entry);
        }
        let Some(entry) = self.processes.get_mut(&key) else {
            return;
        };
        if ts >= entry.updated.last_ns {
            entry.view.pss_bytes = pss;
            entry.view.rss_bytes = found.rss;
            entry.view.swap_bytes = found.swap;
            entry.updated.seen(ts);
        }
        entry.history.push(ts, pss);
    }

    /// Who a pprof resource is: `service.name`, else `url.full`.
    fn target_of(resource: &[KeyValue]) -> String {
        attribute_text(resource, "service.name")
            .or_else(|| attribute_text(resource, "url.full"))
            .unwrap_or_default()
    }

    /// The suspect entry of (target, stack id), created when there is room.
    fn suspect_entry(&mut self, target: &str, stack_id: &str) -> Option<&mut SuspectEntry> {
        let key = key_of(&[], &[target, stack_id]);
        if !self.suspects.contains_key(&key) {
            let (newest_ns, stale_ns) = (self.newest_ns, self.history_ns());
            let room = make_room(
                &mut self.suspects,
                self.limits.max_leak_suspects,
                |e| e.updated,
                newest_ns,
                stale_ns,
            );
            if !room {
                self.dropped += 1;
                return None;
            }
            let entry = SuspectEntry {
                view: LeakSuspect {
                    target: target.to_string(),
                    stack_id: stack_id.to_string(),
                    ..LeakSuspect::default()
                },
                history: self.ring(),
                updated: Cadence::default(),
            };
            self.suspects.insert(key, entry);
        }
        self.suspects.get_mut(&key)
    }

    fn apply_suspects(&mut self, resource: &[KeyValue], found: &Found<'_>) {
        if found.leak_growth.is_empty()
            && (found.stack_counts.is_empty() || self.suspects.is_empty())
        {
            return;
        }
        let target = Self::target_of(resource);
        for (attributes, ts, growth) in &found.leak_growth {
            let Some(stack_id) = attribute_text(attributes, "go.stack.id") else {
                continue;
            };
            let Some(entry) = self.suspect_entry(&target, &stack_id) else {
                continue;
            };
            entry.view.function =
                attribute_text(attributes, "go.stack.function").unwrap_or_default();
            entry.view.creator = attribute_text(attributes, "go.stack.creator").unwrap_or_default();
            entry.view.growth_per_second = *growth;
            entry.updated.seen(*ts);
            entry.view.updated_unix_ms = entry.updated.last_ns / 1_000_000;
        }
        // Counts only of signatures that are suspects.
        for (attributes, ts, count) in &found.stack_counts {
            let Some(stack_id) = attribute_text(attributes, "go.stack.id") else {
                continue;
            };
            let key = key_of(&[], &[&target, &stack_id]);
            if let Some(entry) = self.suspects.get_mut(&key) {
                entry.view.goroutines = Some(*count);
                entry.history.push(*ts, *count);
            }
        }
    }

    fn apply_slos(&mut self, resource: &[KeyValue], found: &Found<'_>) {
        for (metric, attributes, ts, value) in &found.slo {
            let Some(name) = attribute_text(attributes, "slo.name") else {
                continue;
            };
            let mut group = attribute_map(resource);
            for kv in attributes.iter() {
                if !matches!(kv.key.as_str(), "slo.name" | "slo.window" | "severity") {
                    group.insert(kv.key.clone(), stringify(kv.value.as_ref()));
                }
            }
            let group_text: Vec<String> = group.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let key = key_of(&[], &[&name, &group_text.join(",")]);
            if !self.slos.contains_key(&key) {
                let (newest_ns, stale_ns) = (self.newest_ns, self.history_ns());
                let room = make_room(
                    &mut self.slos,
                    self.limits.max_slo_groups,
                    |e| e.updated,
                    newest_ns,
                    stale_ns,
                );
                if !room {
                    self.dropped += 1;
                    continue;
                }
                let entry = SloEntry {
                    view: SloView {
                        name: name.clone(),
                        group,
                        ..SloView::default()
                    },
                    windows: Vec::new(),
                    history: self.ring(),
                    updated: Cadence::default(),
                };
                self.slos.insert(key, entry);
            }
            let Some(entry) = self.slos.get_mut(&key) else {
                continue;
            };
            entry.updated.seen(*ts);
            match *metric {
                BURN_RATE => {
                    let window = attribute_text(attributes, "slo.window").unwrap_or_default();
                    let duration =
                        oxcol_core::duration::parse_go_duration(&window).unwrap_or(Duration::MAX);
                    match entry.windows.iter_mut().find(|w| w.1 == window) {
                        Some(w) => w.2 = *value,
                        None => entry.windows.push((duration, window, *value)),
                    }
                    entry.windows.sort_by(|a, b| a.0.cmp(&b.0));
                    if entry.windows.first().is_some_and(|w| w.0 == duration) {
                        entry.history.push(*ts, *value);
                    }
                }
                BUDGET => entry.view.error_budget_remaining = Some(*value),
                _ => {
                    let severity = attribute_text(attributes, "severity").unwrap_or_default();
                    let firing = *value >= 1.0;
                    match entry
                        .view
                        .alerts
                        .iter_mut()
                        .find(|a| a.severity == severity)
                    {
                        Some(alert) => alert.firing = firing,
                        None => entry.view.alerts.push(Alert { severity, firing }),
                    }
                    entry
                        .view
                        .alerts
                        .sort_by(|a, b| a.severity.cmp(&b.severity));
                }
            }
        }
    }

    /// A gofit report of one service: its findings holding now replace the previous ones;
    /// none holding removes the service (its findings cleared).
    fn apply_go_fit(&mut self, resource: &[KeyValue], found: &Found<'_>) {
        let Some(ts) = found.fit_findings.iter().map(|(_, ts, _)| *ts).max() else {
            return;
        };
        self.go_fit_checked_ns = self.go_fit_checked_ns.max(ts);
        let service = attribute_text(resource, "service.name");
        let instance = attribute_text(resource, "service.instance.id");
        let pod = attribute_text(resource, "k8s.pod.name");
        let key = if service.is_none() && instance.is_none() && pod.is_none() {
            key_of(&[resource], &["go_fit"])
        } else {
            key_of(
                &[],
                &[
                    "go_fit",
                    service.as_deref().unwrap_or(""),
                    instance.as_deref().unwrap_or(""),
                    pod.as_deref().unwrap_or(""),
                ],
            )
        };
        let inputs = gofit::FixInputs {
            gomaxprocs: found.fit.gomaxprocs,
            cpu_limit: found.fit.cpu_limit,
            memory_limit: found.fit.memory_limit,
            memory_headroom: self.fit_headroom,
        };
        // In gofit's order; each finding once (a point per finding is what gofit emits).
        let mut holding: Vec<GoFitFinding> = Vec::new();
        for (name, _, value) in &found.fit_findings {
            if *value >= 0.5 && !holding.iter().any(|f| &f.finding == name) {
                let fix = gofit::Finding::from_name(name)
                    .and_then(|f| f.fix(&inputs))
                    .unwrap_or_default();
                holding.push(GoFitFinding {
                    finding: name.clone(),
                    fix,
                });
            }
        }
        // An older report (out of order, or a batch seen again) changes nothing.
        if self
            .go_fit
            .get(&key)
            .is_some_and(|e| e.updated.last_ns > ts)
        {
            return;
        }
        if holding.is_empty() {
            self.go_fit.remove(&key);
            return;
        }
        if !self.go_fit.contains_key(&key) {
            let (newest_ns, stale_ns) = (self.newest_ns, self.history_ns());
            let room = make_room(
                &mut self.go_fit,
                self.limits.max_go_services,
                |e| e.updated,
                newest_ns,
                stale_ns,
            );
            if !room {
                self.dropped += 1;
                return;
            }
            self.go_fit.insert(
                key,
                GoFitEntry {
                    view: GoFitView::default(),
                    updated: Cadence::default(),
                },
            );
        }
        let Some(entry) = self.go_fit.get_mut(&key) else {
            return;
        };
        entry.updated.seen(ts);
        entry.view = GoFitView {
            service: service.unwrap_or_default(),
            instance,
            pod,
            gomaxprocs: found.fit.gomaxprocs,
            cpu_limit: found.fit.cpu_limit,
            gomemlimit: found.fit.gomemlimit,
            memory_limit: found.fit.memory_limit,
            gc_cpu_share: found.fit.gc_cpu_share,
            cpu_throttled_share: found.fit.cpu_throttled_share,
            findings: holding,
            updated_unix_ms: entry.updated.last_ns / 1_000_000,
        };
    }

    fn ingest_logs(&mut self, resource_logs: &ResourceLogs) {
        let resource: &[KeyValue] = resource_logs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let max_stack = self.limits.max_stack_bytes;
        for record in resource_logs
            .scope_logs
            .iter()
            .flat_map(|s| s.log_records.iter())
        {
            let is_suspect = record.event_name == LEAK_EVENT
                || attribute_text(&record.attributes, "event.name").as_deref() == Some(LEAK_EVENT);
            if !is_suspect {
                continue;
            }
            let Some(stack_id) = attribute_text(&record.attributes, "go.stack.id") else {
                continue;
            };
            let ts = record.time_unix_nano.max(record.observed_time_unix_nano);
            self.see_time(ts);
            let target = Self::target_of(resource);
            let body = record
                .body
                .as_ref()
                .map(|b| stringify(Some(b)))
                .unwrap_or_default();
            let number = |key: &str| {
                attribute_text(&record.attributes, key).and_then(|t| t.parse::<f64>().ok())
            };
            let (count, growth) = (
                number("go.goroutine.count"),
                number("go.goroutine.leak.growth"),
            );
            let function = attribute_text(&record.attributes, "go.stack.function");
            let creator = attribute_text(&record.attributes, "go.stack.creator");
            let Some(entry) = self.suspect_entry(&target, &stack_id) else {
                continue;
            };
            entry.view.stack = Some(cut(&body, max_stack));
            if entry.view.function.is_empty() {
                entry.view.function = function.unwrap_or_default();
                entry.view.creator = creator.unwrap_or_default();
            }
            if entry.view.goroutines.is_none() {
                entry.view.goroutines = count;
            }
            if entry.view.growth_per_second == 0.0 {
                entry.view.growth_per_second = growth.unwrap_or_default();
            }
            entry.updated.seen(ts);
            entry.view.updated_unix_ms = entry.updated.last_ns / 1_000_000;
        }
    }

    pub(super) fn snapshot(&self, now_unix_ms: u64) -> Picture {
        let newest = self.newest_ns;
        let stale = self.history_ns();
        let fresh = |updated: Cadence| updated.last_ns.saturating_add(stale) >= newest;
        let reporting = Reportings {
            cgroups: Reporting::of(self.cgroups.values().map(|e| e.updated), stale),
            machines: Reporting::of(self.machines.values().map(|e| e.updated), stale),
            processes: Reporting::of(self.processes.values().map(|e| e.updated), stale),
            suspects: Reporting::of(self.suspects.values().map(|e| e.updated), stale),
            slos: Reporting::of(self.slos.values().map(|e| e.updated), stale),
            go_fit: Reporting::of(self.go_fit.values().map(|e| e.updated), stale)
                .newest_at_least(self.go_fit_checked_ns),
        };
        let mut cgroups: Vec<CgroupView> = self
            .cgroups
            .values()
            .filter(|e| fresh(e.updated) && reporting.cgroups.current(e.updated))
            .map(|e| {
                let mut view = e.view.clone();
                let (trend, time_to_limit) = cgroup_trend(e);
                view.trend = trend;
                view.time_to_limit_seconds = time_to_limit;
                view.working_set_history = e.history.recent(newest);
                view.updated_unix_ms = e.updated.last_ns / 1_000_000;
                view
            })
            .collect();
        cgroups.sort_by(|a, b| {
            fill(b)
                .total_cmp(&fill(a))
                .then(
                    b.working_set_bytes
                        .unwrap_or(-1.0)
                        .total_cmp(&a.working_set_bytes.unwrap_or(-1.0)),
                )
                .then(a.path.cmp(&b.path))
        });
        let mut machines: Vec<MachineView> = self
            .machines
            .values()
            .filter(|e| fresh(e.updated) && reporting.machines.current(e.updated))
            .map(|e| {
                let mut view = e.view.clone();
                view.trend = e.smoothing.rate_per_second(WARMUP_SAMPLES).map(|r| Trend {
                    bytes_per_second: r,
                    source: TrendSource::Picture,
                });
                view.time_to_limit_seconds = match (view.used_bytes, view.total_bytes, view.trend) {
                    (Some(used), Some(total), Some(trend)) => {
                        seconds_to_limit(used, total, trend.bytes_per_second, HORIZON_SECONDS)
                    }
                    _ => None,
                };
                view.used_history = e.history.recent(newest);
                view.updated_unix_ms = e.updated.last_ns / 1_000_000;
                view
            })
            .collect();
        machines.sort_by(|a, b| {
            b.used_bytes
                .unwrap_or(0.0)
                .total_cmp(&a.used_bytes.unwrap_or(0.0))
        });
        let mut processes: Vec<ProcessView> = self
            .processes
            .values()
            .filter(|e| fresh(e.updated) && reporting.processes.current(e.updated))
            .map(|e| {
                let mut view = e.view.clone();
                view.pss_history = e.history.recent(newest);
                view.updated_unix_ms = e.updated.last_ns / 1_000_000;
                view
            })
            .collect();
        processes.sort_by(|a, b| b.pss_bytes.total_cmp(&a.pss_bytes).then(a.pid.cmp(&b.pid)));
        let mut leak_suspects: Vec<LeakSuspect> = self
            .suspects
            .values()
            .filter(|e| fresh(e.updated) && reporting.suspects.current(e.updated))
            .map(|e| {
                let mut view = e.view.clone();
                view.goroutines_history = e.history.recent(newest);
                view
            })
            .collect();
        leak_suspects.sort_by(|a, b| {
            b.growth_per_second
                .total_cmp(&a.growth_per_second)
                .then(a.stack_id.cmp(&b.stack_id))
        });
        let mut slos: Vec<SloView> = self
            .slos
            .values()
            .filter(|e| fresh(e.updated) && reporting.slos.current(e.updated))
            .map(|e| {
                let mut view = e.view.clone();
                view.burn_rates = e
                    .windows
                    .iter()
                    .map(|(_, window, rate)| BurnRate {
                        window: window.clone(),
                        rate: *rate,
                    })
                    .collect();
                view.burn_rate_history = e.history.recent(newest);
                view.updated_unix_ms = e.updated.last_ns / 1_000_000;
                view
            })
            .collect();
        slos.sort_by(|a, b| {
            let firing = |s: &SloView| s.alerts.iter().any(|a| a.firing);
            firing(b)
                .cmp(&firing(a))
                .then(a.name.cmp(&b.name))
                .then(a.group.cmp(&b.group))
        });
        let mut go_fit: Vec<GoFitView> = self
            .go_fit
            .values()
            .filter(|e| fresh(e.updated) && reporting.go_fit.current(e.updated))
            .map(|e| e.view.clone())
            .collect();
        go_fit.sort_by(|a, b| {
            b.findings
                .len()
                .cmp(&a.findings.len())
                .then(a.service.cmp(&b.service))
                .then(a.instance.cmp(&b.instance))
                .then(a.pod.cmp(&b.pod))
        });
        let go_fit_checked_unix_ms = (self.go_fit_checked_ns > 0
            && self.go_fit_checked_ns.saturating_add(stale) >= newest)
            .then_some(self.go_fit_checked_ns / 1_000_000);
        Picture {
            taken_at_unix_ms: now_unix_ms,
            newest_data_unix_ms: newest / 1_000_000,
            status_page: self.status_page.clone(),
            history_seconds: self.limits.history.as_secs(),
            cgroups,
            machines,
            processes,
            leak_suspects,
            slos,
            go_fit,
            go_fit_checked_unix_ms,
            dropped_series: self.dropped,
        }
    }
}

struct Reportings {
    cgroups: Reporting,
    machines: Reporting,
    processes: Reporting,
    suspects: Reporting,
    slos: Reporting,
    go_fit: Reporting,
}

/// Working set / limit; -1 without a limit (sorted after every limited cgroup).
fn fill(view: &CgroupView) -> f64 {
    match (view.working_set_bytes, view.limit_bytes) {
        (Some(ws), Some(limit)) if limit > 0.0 => ws / limit,
        _ => -1.0,
    }
}

/// The trend and time-to-limit of a cgroup: the ewma processor's when its outputs belong to
/// the newest working-set point, else the picture's own from the same math.
fn cgroup_trend(entry: &CgroupEntry) -> (Option<Trend>, Option<f64>) {
    let current = |v: Option<(u64, f64)>| v.filter(|(ts, _)| *ts >= entry.working_set_ts);
    let trend = match current(entry.ewma_rate) {
        Some((_, rate)) => Some(Trend {
            bytes_per_second: rate,
            source: TrendSource::EwmaProcessor,
        }),
        None => entry
            .smoothing
            .rate_per_second(WARMUP_SAMPLES)
            .map(|rate| Trend {
                bytes_per_second: rate,
                source: TrendSource::Picture,
            }),
    };
    let time_to_limit = match current(entry.ewma_time_to_limit) {
        Some((_, seconds)) => Some(seconds),
        None => match (entry.view.working_set_bytes, entry.view.limit_bytes, trend) {
            (Some(ws), Some(limit), Some(trend)) => {
                seconds_to_limit(ws, limit, trend.bytes_per_second, HORIZON_SECONDS)
            }
            _ => None,
        },
    };
    (trend, time_to_limit)
}

/// PSI in the order memory, cpu, io, others, each with its some/full avg10/avg60.
fn pressure_of(found: &[(String, String, String, f64)]) -> Vec<Pressure> {
    let mut out: Vec<Pressure> = Vec::new();
    for (resource, kind, window, value) in found {
        let index = match out.iter().position(|p| &p.resource == resource) {
            Some(index) => index,
            None => {
                out.push(Pressure {
                    resource: resource.clone(),
                    ..Pressure::default()
                });
                out.len() - 1
            }
        };
        let pressure = &mut out[index];
        let slot = match (kind.as_str(), window.as_str()) {
            ("some", "10s") => &mut pressure.some_avg10,
            ("some", "60s") => &mut pressure.some_avg60,
            ("full", "10s") => &mut pressure.full_avg10,
            ("full", "60s") => &mut pressure.full_avg60,
            _ => continue,
        };
        *slot = Some(*value);
    }
    let rank = |r: &str| match r {
        "memory" => 0,
        "cpu" => 1,
        "io" => 2,
        _ => 3,
    };
    out.sort_by(|a, b| {
        rank(&a.resource)
            .cmp(&rank(&b.resource))
            .then(a.resource.cmp(&b.resource))
    });
    out
}

/// `text` cut to at most `max` bytes at a line end, marked when cut.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    let end = text[..end].rfind('\n').unwrap_or(end);
    format!("{}\n… ({} more bytes)", &text[..end], text.len() - end)
}
