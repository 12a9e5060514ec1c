//! `burnrate`: SLO burn rates computed in the pipeline from a service's own counters or
//! histograms (Scenario 3), as metrics any backend can alert on.
//!
//! For every SLO and group (`group_by` labels, across every resource) it emits, in a
//! resource of its own per group (attributes: the group's `service.namespace` and
//! `service.name` while all its inputs agree on them, and its `group_by` labels):
//! - `slo.burn_rate{slo.name, slo.window}` per configured window: error ratio over the
//!   window divided by the error budget `1 - objective`;
//! - `slo.error_budget.remaining{slo.name}`: `1 - error_ratio(period) / (1 - objective)`;
//! - `slo.alert{slo.name, severity}` (1 or 0): the SRE workbook's multiwindow,
//!   multi-burn-rate rule (page: 14.4x over 1h and 5m, or 6x over 6h and 30m; ticket: 3x
//!   over 1d and 2h, or 1x over 3d and 6h).
//!
//! The error ratio over a window is `increase(bad) / increase(total)` with Prometheus'
//! `increase()` semantics: counter resets add the new value, the result is extrapolated
//! to the window edges (see `window::extrapolated_increase`). Each input series (its
//! resource and point attributes) keeps its own last value, so resets are handled per series; the
//! increases are summed per group as the counters arrive (Prometheus' `sum by
//! (group_by) (increase(...))`), and one cumulative sample per group is kept per
//! `resolution` in a ring that spans the longest window.
//!
//! Time comes only from data-point timestamps; this module must never read the wall
//! clock (only the checkpoint schedule does, in `crate::checkpoint`), and its state must
//! stay bounded (`max_series`, `max_groups`, stale state evicted and counted). With
//! `storage`, the state is checkpointed and restored at start, so a deploy does not reset
//! the windows.

pub mod window;

use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_core::telemetry::{Counter, Gauge as GaugeCounter, Registry};
use oxcol_core::{Batch, Processor, Refusal};
use regex::Regex;
use serde::Deserialize;

use crate::checkpoint::{self, Checkpointed, Checkpointer, Decoder, Encoder, Storage};
use crate::ewma::{SeriesHasher, attributes_hash, hash_str};

pub use window::PromDuration;
use window::{Ring, Sample};

pub const TYPE: &str = "burnrate";
pub const ALIASES: &[&str] = &["burnrate"];

/// OTLP `DataPointFlags.NO_RECORDED_VALUE`.
const FLAG_NO_RECORDED_VALUE: u32 = 1;
/// The error-budget ring holds at most this many samples over `period`.
const PERIOD_SLOTS: i64 = 720;

/// The SRE workbook's alert rows: (severity, long window, short window, burn rate).
const ALERT_ROWS: &[(&str, i64, i64, f64)] = &[
    ("page", 3_600_000, 300_000, 14.4),
    ("page", 21_600_000, 1_800_000, 6.0),
    ("ticket", 86_400_000, 7_200_000, 3.0),
    ("ticket", 259_200_000, 21_600_000, 1.0),
];

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The SLO period the error budget is spent over. Default 30d.
    pub period: PromDuration,
    /// The SLOs. Required (at least one).
    pub slos: Vec<Slo>,
    /// Burn-rate windows, written as Prometheus durations; `slo.window` carries the text.
    /// Default [5m, 30m, 1h, 2h, 6h, 1d, 3d].
    pub windows: Vec<PromDuration>,
    /// At most one cumulative sample per group per this interval is kept. Default 30s.
    pub resolution: PromDuration,
    /// Most counter series tracked at once; new ones beyond it are ignored (counted).
    /// Default 10000.
    pub max_series: usize,
    /// Most (SLO, group) pairs tracked at once; new ones beyond it are ignored (counted).
    /// Default 1000.
    pub max_groups: usize,
    /// A counter series with no point for this long (data time) is forgotten; if it comes
    /// back, its next point is a new start. Default 10m.
    pub stale_after: PromDuration,
    /// A `file_storage` extension (`file_storage` or `file_storage/NAME`, listed in
    /// `service.extensions`) to checkpoint the state in, so the windows survive a restart.
    /// Default: none (a restart starts every window empty).
    pub storage: Option<String>,
    /// With `storage`: how often the state is checkpointed (wall clock, only when it
    /// changed), besides at shutdown. Default 30s.
    pub checkpoint_interval: PromDuration,
}

fn duration(text: &str) -> PromDuration {
    PromDuration::parse(text)
        .unwrap_or_else(|e| panic!("built-in default duration {text:?} must parse: {e}"))
}

impl Default for Config {
    fn default() -> Self {
        Config {
            period: duration("30d"),
            slos: Vec::new(),
            windows: ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]
                .into_iter()
                .map(duration)
                .collect(),
            resolution: duration("30s"),
            max_series: 10_000,
            max_groups: 1000,
            stale_after: duration("10m"),
            storage: None,
            checkpoint_interval: duration("30s"),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// The `slo.name` label. Required, unique.
    pub name: String,
    /// Target fraction of good events, in (0, 1), e.g. 0.999. Required.
    pub objective: f64,
    /// Bad events (ratio SLI), with `total`.
    #[serde(default)]
    pub errors: Option<Selector>,
    /// All events (ratio SLI), with `errors`.
    #[serde(default)]
    pub total: Option<Selector>,
    /// Latency SLI from a histogram, instead of `errors`/`total`.
    #[serde(default)]
    pub latency: Option<Latency>,
    /// Labels that split the SLO into groups (looked up in point attributes, else
    /// resource attributes); series of every resource with the same values are summed.
    /// Default: none (everything the SLO matches is one group).
    #[serde(default)]
    pub group_by: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Exact metric name (a cumulative or delta sum). Required.
    pub metric: String,
    /// Label name -> fully anchored regex the point attribute must match (a missing
    /// attribute is the empty string, as in PromQL). Default: none.
    #[serde(default, rename = "match")]
    pub match_labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Exact name of an explicit-bucket histogram. Required.
    pub metric: String,
    /// Slower than this is bad. Must equal one of the histogram's bucket bounds. Required.
    pub threshold: f64,
    /// As `Selector.match`. Default: none.
    #[serde(default, rename = "match")]
    pub match_labels: BTreeMap<String, String>,
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.storage.as_deref().is_some_and(|s| s.trim().is_empty()) {
            errors.push("storage must name a file_storage extension (e.g. file_storage/state) or be left out".to_string());
        }
        if self.checkpoint_interval.millis <= 0 {
            errors.push("checkpoint_interval must be greater than zero (default 30s)".to_string());
        }
        if self.slos.is_empty() {
            errors.push(
                "slos is empty: define at least one SLO (name, objective, errors+total or latency)"
                    .to_string(),
            );
        }
        if self.period.millis <= 0 {
            errors.push("period must be greater than zero (default 30d)".to_string());
        }
        if self.resolution.millis <= 0 {
            errors.push("resolution must be greater than zero (default 30s)".to_string());
        }
        if self.stale_after.millis <= 0 {
            errors.push("stale_after must be greater than zero (default 10m)".to_string());
        }
        if self.windows.is_empty() {
            errors.push("windows is empty: list at least one window (default [5m, 30m, 1h, 2h, 6h, 1d, 3d])".to_string());
        }
        for (i, w) in self.windows.iter().enumerate() {
            if w.millis <= 0 {
                errors.push(format!("windows[{i}] must be greater than zero"));
            }
            if self.windows[..i].iter().any(|o| o.millis == w.millis) {
                errors.push(format!("windows[{i}] ({w}) is listed twice"));
            }
        }
        if self.max_series == 0 || self.max_groups == 0 {
            errors.push("max_series and max_groups must be greater than zero".to_string());
        }
        for (i, slo) in self.slos.iter().enumerate() {
            if slo.name.is_empty() {
                errors.push(format!("slos[{i}].name is required"));
            } else if self.slos[..i].iter().any(|o| o.name == slo.name) {
                errors.push(format!("slos[{i}].name {:?} is used twice", slo.name));
            }
            if !(slo.objective > 0.0 && slo.objective < 1.0) {
                errors.push(format!("slos[{i}].objective must be a fraction in (0, 1), e.g. 0.999 for 99.9%; got {}", slo.objective));
            }
            match (&slo.errors, &slo.total, &slo.latency) {
                (Some(_), Some(_), None) | (None, None, Some(_)) => {}
                _ => errors.push(format!(
                    "slos[{i}]: set either errors and total (ratio SLI) or latency (histogram SLI)"
                )),
            }
            let selectors = [
                slo.errors
                    .as_ref()
                    .map(|s| (&s.metric, &s.match_labels, "errors")),
                slo.total
                    .as_ref()
                    .map(|s| (&s.metric, &s.match_labels, "total")),
                slo.latency
                    .as_ref()
                    .map(|s| (&s.metric, &s.match_labels, "latency")),
            ];
            for (metric, labels, key) in selectors.into_iter().flatten() {
                if metric.is_empty() {
                    errors.push(format!("slos[{i}].{key}.metric is required"));
                }
                for (label, pattern) in labels {
                    if let Err(e) = Regex::new(&format!("^(?:{pattern})$")) {
                        errors.push(format!(
                            "slos[{i}].{key}.match.{label}: {pattern:?} is not a valid regex: {e}"
                        ));
                    }
                }
            }
            if let Some(latency) = &slo.latency {
                if !(latency.threshold.is_finite() && latency.threshold > 0.0) {
                    errors.push(format!(
                        "slos[{i}].latency.threshold must be a positive bucket bound (e.g. 0.3)"
                    ));
                }
            }
        }
        errors
    }
}

/// Self-telemetry of one `burnrate` processor.
#[derive(Clone, Debug, Default)]
pub struct BurnrateCounters {
    pub series_evicted: Counter,
    pub series_dropped: Counter,
    pub series_active: GaugeCounter,
    pub groups_evicted: Counter,
    pub groups_dropped: Counter,
    pub points_out_of_order: Counter,
    pub points_without_time: Counter,
    pub threshold_mismatch: Counter,
}

impl BurnrateCounters {
    pub fn new(registry: &Registry, processor: &str) -> BurnrateCounters {
        let p = [("processor", processor)];
        let skipped = |reason| {
            registry.counter(
                "oxcol_processor_points_skipped",
                "Points a stateful processor could not use, by reason.",
                &[("processor", processor), ("reason", reason)],
            )
        };
        let (series_evicted, series_dropped, series_active) =
            oxcol_core::telemetry::series_counters(registry, processor);
        BurnrateCounters {
            series_evicted,
            series_dropped,
            series_active,
            groups_evicted: registry.counter(
                "oxcol_processor_burnrate_groups_evicted",
                "SLO groups evicted after no data for the longest window.",
                &p,
            ),
            groups_dropped: registry.counter(
                "oxcol_processor_burnrate_groups_dropped",
                "Point uses skipped because their new SLO group would exceed max_groups.",
                &p,
            ),
            points_out_of_order: skipped("out_of_order"),
            points_without_time: skipped("no_timestamp"),
            threshold_mismatch: skipped("latency_threshold_not_a_bucket_bound"),
        }
    }
}

struct LabelMatcher {
    label: String,
    regex: Regex,
}

struct CompiledSlo {
    name: String,
    budget: f64,
    errors: Option<(String, Vec<LabelMatcher>)>,
    total: Option<(String, Vec<LabelMatcher>)>,
    latency: Option<(String, f64, Vec<LabelMatcher>)>,
    group_by: Vec<String>,
    threshold_warned: bool,
}

/// What a counter series contributes to its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Adds to bad.
    Bad = 1,
    /// Adds to total.
    Total = 2,
    /// Histogram count: adds to total and bad.
    LatencyCount = 3,
    /// Histogram bucket at the threshold: subtracts from bad.
    LatencyGood = 4,
}

/// The metric and resource a point comes from, for one SLO.
struct Input<'a> {
    slo: usize,
    name_hash: u64,
    resource_attributes: &'a [KeyValue],
    resource_hash: u64,
    service: &'a [(String, String)],
}

#[derive(Clone, Copy, Debug)]
struct CounterSeries {
    last_value: f64,
    last_ts: u64,
    start_ts: u64,
}

struct Group {
    slo: usize,
    /// The `group_by` labels with a non-empty value, in `group_by` order.
    labels: Vec<(String, String)>,
    /// `service.namespace`/`service.name` of the group's input resources.
    service: Service,
    bad: f64,
    total: f64,
    ring: Ring,
    period_ring: Ring,
    last_ts: u64,
}

/// The service identity (`service.namespace`, `service.name` resource attributes) of a
/// group's inputs: carried on the emitted resource while every input agrees on it.
#[derive(Clone, Debug, PartialEq)]
enum Service {
    Unseen,
    Same(Vec<(String, String)>),
    /// Inputs of different services met: dropped for good (a stable output identity).
    Mixed,
}

/// The resource attributes that name a service (Prometheus' `job`).
const SERVICE_KEYS: [&str; 2] = ["service.namespace", "service.name"];

/// A checkpoint payload, decoded.
struct DecodedState {
    newest_ts: u64,
    last_sweep_ts: u64,
    series: Vec<(u64, CounterSeries)>,
    groups: Vec<(u64, Group)>,
}

/// Scope of the emitted `slo.*` metrics.
pub const SCOPE_NAME: &str = "oxcol/burnrate";

/// Version of the checkpoint payload below; bump it when the encoding or the series and
/// group keys change (an older checkpoint then starts empty, `reason="version"`).
pub const STATE_VERSION: u32 = 1;

/// The config keys the state depends on: the SLOs (group and series keys carry SLO
/// indexes; the sums depend on the selectors), the period and the resolution.
fn state_fingerprint(config: &Config) -> u64 {
    checkpoint::fingerprint(&format!(
        "burnrate\n{:?}\n{}\n{}",
        config.slos, config.period.millis, config.resolution.millis
    ))
}

pub struct BurnrateProcessor {
    id: String,
    slos: Vec<CompiledSlo>,
    windows: Vec<PromDuration>,
    period_ms: i64,
    resolution_ms: i64,
    longest_ms: i64,
    stale_after_ns: u64,
    max_series: usize,
    max_groups: usize,
    series: HashMap<u64, CounterSeries>,
    groups: HashMap<u64, Group>,
    newest_ts: u64,
    last_sweep_ts: u64,
    counters: BurnrateCounters,
    /// Checkpointing (`storage`): the file, the config fingerprint, and whether state
    /// changed since the last checkpoint.
    checkpoint: Option<Checkpointer>,
    fingerprint: u64,
    checkpoint_interval: Duration,
    dirty: bool,
}

fn compile_labels(labels: &BTreeMap<String, String>) -> Result<Vec<LabelMatcher>, String> {
    labels
        .iter()
        .map(|(label, pattern)| {
            Regex::new(&format!("^(?:{pattern})$"))
                .map(|regex| LabelMatcher {
                    label: label.clone(),
                    regex,
                })
                .map_err(|e| format!("{pattern:?} is not a valid regex: {e}"))
        })
        .collect()
}

impl BurnrateProcessor {
    pub fn new(
        id: &str,
        config: &Config,
        registry: Option<&Registry>,
    ) -> Result<BurnrateProcessor, String> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let slos = config
            .slos
            .iter()
            .map(|slo| {
                Ok(CompiledSlo {
                    name: slo.name.clone(),
                    budget: 1.0 - slo.objective,
                    errors: slo
                        .errors
                        .as_ref()
                        .map(|s| compile_labels(&s.match_labels).map(|m| (s.metric.clone(), m)))
                        .transpose()?,
                    total: slo
                        .total
                        .as_ref()
                        .map(|s| compile_labels(&s.match_labels).map(|m| (s.metric.clone(), m)))
                        .transpose()?,
                    latency: slo
                        .latency
                        .as_ref()
                        .map(|l| {
                            compile_labels(&l.match_labels)
                                .map(|m| (l.metric.clone(), l.threshold, m))
                        })
                        .transpose()?,
                    group_by: slo.group_by.clone(),
                    threshold_warned: false,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(BurnrateProcessor {
            id: id.to_string(),
            slos,
            windows: config.windows.clone(),
            period_ms: config.period.millis,
            resolution_ms: config.resolution.millis,
            longest_ms: config.windows.iter().map(|w| w.millis).max().unwrap_or(0),
            stale_after_ns: u64::try_from(config.stale_after.millis)
                .unwrap_or(0)
                .saturating_mul(1_000_000),
            max_series: config.max_series,
            max_groups: config.max_groups,
            series: HashMap::new(),
            groups: HashMap::new(),
            newest_ts: 0,
            last_sweep_ts: 0,
            counters: registry
                .map(|r| BurnrateCounters::new(r, id))
                .unwrap_or_default(),
            checkpoint: None,
            fingerprint: state_fingerprint(config),
            checkpoint_interval: Duration::from_millis(
                u64::try_from(config.checkpoint_interval.millis).unwrap_or(30_000),
            ),
            dirty: false,
        })
    }

    /// (counter series, groups) currently held.
    pub fn state_size(&self) -> (usize, usize) {
        (self.series.len(), self.groups.len())
    }

    /// Checkpoints to `storage` from now on (file per processor id and `pipeline`), after
    /// restoring what a previous run left there. An unusable checkpoint starts empty
    /// (logged, counted); errors only when the directory cannot be used.
    pub fn with_storage(
        mut self,
        storage: &Storage,
        pipeline: &str,
        registry: Option<&Registry>,
    ) -> Result<BurnrateProcessor, String> {
        let (checkpointer, restored) = Checkpointer::open(
            storage,
            &self.id,
            pipeline,
            STATE_VERSION,
            self.fingerprint,
            self.checkpoint_interval,
            registry,
        )?;
        if let Some(restored) = restored {
            match self.decode_state(&restored.payload) {
                Ok(state) => {
                    let (series, groups) = self.restore(state);
                    checkpointer.restored(series + groups, self.newest_ts);
                    tracing::info!(processor = %self.id, series, groups, newest_data_time_unix_nano = self.newest_ts, "state restored from checkpoint");
                }
                Err(detail) => checkpointer.decode_failed(&detail),
            }
        }
        self.checkpoint = Some(checkpointer);
        Ok(self)
    }

    /// The state as a checkpoint payload. Ring samples are stored as differences from the
    /// previous sample (timestamps subtracted, values XORed bitwise: exact, and mostly
    /// zero bytes for the compressor).
    pub fn encode_state(&self) -> Vec<u8> {
        let samples: usize = self
            .groups
            .values()
            .map(|g| g.ring.len() + g.period_ring.len())
            .sum();
        let mut e = Encoder::with_capacity(64 + self.series.len() * 32 + samples * 24);
        e.u64(self.newest_ts);
        e.u64(self.last_sweep_ts);
        e.len(self.series.len());
        for (key, series) in &self.series {
            e.u64(*key);
            e.f64(series.last_value);
            e.u64(series.last_ts);
            e.u64(series.start_ts);
        }
        e.len(self.groups.len());
        for (key, group) in &self.groups {
            e.u64(*key);
            e.u32(group.slo as u32);
            e.len(group.labels.len());
            for (k, v) in &group.labels {
                e.str(k);
                e.str(v);
            }
            match &group.service {
                Service::Unseen => e.u8(0),
                Service::Same(service) => {
                    e.u8(1);
                    e.len(service.len());
                    for (k, v) in service {
                        e.str(k);
                        e.str(v);
                    }
                }
                Service::Mixed => e.u8(2),
            }
            e.f64(group.bad);
            e.f64(group.total);
            e.u64(group.last_ts);
            for ring in [&group.ring, &group.period_ring] {
                e.len(ring.len());
                let mut previous = Sample {
                    ts_ms: 0,
                    bad: 0.0,
                    total: 0.0,
                };
                for sample in ring.samples() {
                    e.i64(sample.ts_ms.wrapping_sub(previous.ts_ms));
                    e.u64(sample.bad.to_bits() ^ previous.bad.to_bits());
                    e.u64(sample.total.to_bits() ^ previous.total.to_bits());
                    previous = *sample;
                }
            }
        }
        e.buf
    }

    fn decode_state(&self, payload: &[u8]) -> Result<DecodedState, String> {
        let mut d = Decoder::new(payload);
        let (newest_ts, last_sweep_ts) = (d.u64()?, d.u64()?);
        let n = d.len(32)?;
        let mut series = Vec::with_capacity(n);
        for _ in 0..n {
            let key = d.u64()?;
            series.push((
                key,
                CounterSeries {
                    last_value: d.f64()?,
                    last_ts: d.u64()?,
                    start_ts: d.u64()?,
                },
            ));
        }
        let n = d.len(60)?;
        let mut groups = Vec::with_capacity(n);
        for _ in 0..n {
            let key = d.u64()?;
            let slo = d.u32()? as usize;
            if slo >= self.slos.len() {
                return Err(format!(
                    "group of SLO #{slo}, only {} configured",
                    self.slos.len()
                ));
            }
            let labels = (0..d.len(16)?)
                .map(|_| Ok((d.str()?, d.str()?)))
                .collect::<Result<Vec<_>, String>>()?;
            let service = match d.u8()? {
                0 => Service::Unseen,
                1 => Service::Same(
                    (0..d.len(16)?)
                        .map(|_| Ok((d.str()?, d.str()?)))
                        .collect::<Result<Vec<_>, String>>()?,
                ),
                2 => Service::Mixed,
                other => return Err(format!("bad service tag {other}")),
            };
            let (bad, total, last_ts) = (d.f64()?, d.f64()?, d.u64()?);
            let mut group = Group {
                labels,
                service,
                bad,
                total,
                last_ts,
                ..self.new_group(slo, Vec::new(), last_ts)
            };
            for ring in [&mut group.ring, &mut group.period_ring] {
                let mut previous = Sample {
                    ts_ms: 0,
                    bad: 0.0,
                    total: 0.0,
                };
                for _ in 0..d.len(24)? {
                    let sample = Sample {
                        ts_ms: previous.ts_ms.wrapping_add(d.i64()?),
                        bad: f64::from_bits(previous.bad.to_bits() ^ d.u64()?),
                        total: f64::from_bits(previous.total.to_bits() ^ d.u64()?),
                    };
                    ring.push(sample);
                    previous = sample;
                }
            }
            groups.push((key, group));
        }
        d.finished()?;
        Ok(DecodedState {
            newest_ts,
            last_sweep_ts,
            series,
            groups,
        })
    }

    /// Installs decoded state, keeping at most `max_series` series and `max_groups`
    /// groups (the most recently updated; the rest are counted as dropped). Returns
    /// (series, groups) kept.
    fn restore(&mut self, mut state: DecodedState) -> (usize, usize) {
        if state.series.len() > self.max_series {
            state
                .series
                .sort_unstable_by_key(|(_, s)| std::cmp::Reverse(s.last_ts));
            self.counters
                .series_dropped
                .add((state.series.len() - self.max_series) as u64);
            state.series.truncate(self.max_series);
        }
        if state.groups.len() > self.max_groups {
            state
                .groups
                .sort_unstable_by_key(|(_, g)| std::cmp::Reverse(g.last_ts));
            self.counters
                .groups_dropped
                .add((state.groups.len() - self.max_groups) as u64);
            state.groups.truncate(self.max_groups);
        }
        self.newest_ts = state.newest_ts;
        self.last_sweep_ts = state.last_sweep_ts;
        self.series = state.series.into_iter().collect();
        self.groups = state.groups.into_iter().collect();
        self.counters
            .series_active
            .set((self.series.len() + self.groups.len()) as i64);
        (self.series.len(), self.groups.len())
    }

    fn process_metrics(&mut self, resources: &mut Vec<ResourceMetrics>) {
        // Groups touched by this batch, with the newest timestamp of their inputs.
        let mut touched: HashMap<u64, u64> = HashMap::new();
        for resource_metrics in resources.iter() {
            let resource_attributes = resource_metrics
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            let resource_hash = attributes_hash(resource_attributes);
            let service: Vec<(String, String)> = SERVICE_KEYS
                .iter()
                .filter_map(|key| lookup(resource_attributes, key).map(|v| (key.to_string(), v)))
                .collect();
            for scope in &resource_metrics.scope_metrics {
                for metric in &scope.metrics {
                    for slo in 0..self.slos.len() {
                        self.process_metric(
                            slo,
                            metric,
                            (resource_attributes, resource_hash, &service),
                            &mut touched,
                        );
                    }
                }
            }
        }
        if !touched.is_empty() {
            self.dirty = true;
        }
        // One output resource per attribute set (the group's service and group_by labels).
        let mut outputs: BTreeMap<Vec<(String, String)>, [Vec<NumberDataPoint>; 3]> =
            BTreeMap::new();
        let mut touched: Vec<(u64, u64)> = touched.into_iter().collect();
        touched.sort_unstable();
        for (key, ts) in touched {
            let Some(group) = self.groups.get_mut(&key) else {
                continue;
            };
            let sample = Sample {
                ts_ms: (ts / 1_000_000) as i64,
                bad: group.bad,
                total: group.total,
            };
            group.ring.push(sample);
            group.period_ring.push(sample);
            let slot = outputs.entry(output_resource(group)).or_default();
            evaluate(&self.slos[group.slo], group, &self.windows, ts, slot);
        }
        for (labels, [burn, budget, alert]) in outputs {
            let mut metrics = Vec::with_capacity(3);
            for (name, description, points) in [
                (
                    "slo.burn_rate",
                    "Error ratio over the window divided by the error budget (1 - objective).",
                    burn,
                ),
                (
                    "slo.error_budget.remaining",
                    "Fraction of the error budget left over the SLO period (negative when overspent).",
                    budget,
                ),
                (
                    "slo.alert",
                    "1 when the multiwindow multi-burn-rate condition of the severity holds, else 0.",
                    alert,
                ),
            ] {
                if !points.is_empty() {
                    metrics.push(Metric {
                        name: name.to_string(),
                        description: description.to_string(),
                        unit: "1".to_string(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: points,
                        })),
                        ..Default::default()
                    });
                }
            }
            if metrics.is_empty() {
                continue;
            }
            resources.push(ResourceMetrics {
                resource: Some(Resource {
                    attributes: labels.iter().map(|(k, v)| string_attribute(k, v)).collect(),
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: SCOPE_NAME.to_string(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        self.sweep(false);
        self.counters
            .series_active
            .set((self.series.len() + self.groups.len()) as i64);
    }

    fn process_metric(
        &mut self,
        slo_index: usize,
        metric: &Metric,
        (resource_attributes, resource_hash, service): (&[KeyValue], u64, &[(String, String)]),
        touched: &mut HashMap<u64, u64>,
    ) {
        let slo = &self.slos[slo_index];
        // (role, matchers) pairs this metric feeds for this SLO.
        let mut roles: Vec<Role> = Vec::with_capacity(2);
        if slo.errors.as_ref().is_some_and(|(m, _)| *m == metric.name) {
            roles.push(Role::Bad);
        }
        if slo.total.as_ref().is_some_and(|(m, _)| *m == metric.name) {
            roles.push(Role::Total);
        }
        let is_latency = slo
            .latency
            .as_ref()
            .is_some_and(|(m, _, _)| *m == metric.name);
        if roles.is_empty() && !is_latency {
            return;
        }
        let name_hash = hash_str(&metric.name);
        let input = Input {
            slo: slo_index,
            name_hash,
            resource_attributes,
            resource_hash,
            service,
        };
        match &metric.data {
            Some(metric::Data::Sum(sum)) if !roles.is_empty() => {
                let delta = sum.aggregation_temporality == AggregationTemporality::Delta as i32;
                for point in &sum.data_points {
                    let Some(value) = number_value(point) else {
                        continue;
                    };
                    for &role in &roles {
                        let matchers = match role {
                            Role::Bad => &self.slos[slo_index].errors.as_ref().map(|(_, m)| m),
                            _ => &self.slos[slo_index].total.as_ref().map(|(_, m)| m),
                        };
                        if !matchers.is_some_and(|m| labels_match(m, &point.attributes)) {
                            continue;
                        }
                        self.observe(
                            &input,
                            role,
                            &point.attributes,
                            point.time_unix_nano,
                            point.start_time_unix_nano,
                            value,
                            delta,
                            touched,
                        );
                    }
                }
            }
            Some(metric::Data::Histogram(histogram)) if is_latency => {
                let delta =
                    histogram.aggregation_temporality == AggregationTemporality::Delta as i32;
                let Some(threshold) = self.slos[slo_index].latency.as_ref().map(|l| l.1) else {
                    return;
                };
                for point in &histogram.data_points {
                    let selected = self.slos[slo_index]
                        .latency
                        .as_ref()
                        .is_some_and(|(_, _, m)| labels_match(m, &point.attributes));
                    if point.flags & FLAG_NO_RECORDED_VALUE != 0 || !selected {
                        continue;
                    }
                    let tolerance = 1e-9 * threshold.abs().max(1.0);
                    let Some(bound) = point
                        .explicit_bounds
                        .iter()
                        .position(|b| (b - threshold).abs() <= tolerance)
                    else {
                        self.counters.threshold_mismatch.add(1);
                        let slo = &mut self.slos[slo_index];
                        if !slo.threshold_warned {
                            slo.threshold_warned = true;
                            tracing::warn!(processor = %self.id, slo = %slo.name, threshold, bounds = ?point.explicit_bounds, "latency threshold is not a bucket bound of the histogram: its points are skipped (counted in oxcol_processor_points_skipped); set the threshold to one of the bounds");
                        }
                        continue;
                    };
                    let good: u64 = point.bucket_counts.iter().take(bound + 1).sum();
                    let (ts, start) = (point.time_unix_nano, point.start_time_unix_nano);
                    self.observe(
                        &input,
                        Role::LatencyCount,
                        &point.attributes,
                        ts,
                        start,
                        point.count as f64,
                        delta,
                        touched,
                    );
                    self.observe(
                        &input,
                        Role::LatencyGood,
                        &point.attributes,
                        ts,
                        start,
                        good as f64,
                        delta,
                        touched,
                    );
                }
            }
            _ => {}
        }
    }

    /// Feeds one counter value of one input series into its group.
    #[allow(clippy::too_many_arguments)]
    fn observe(
        &mut self,
        input: &Input<'_>,
        role: Role,
        attributes: &[KeyValue],
        ts: u64,
        start_ts: u64,
        value: f64,
        delta_temporality: bool,
        touched: &mut HashMap<u64, u64>,
    ) {
        if ts == 0 {
            self.counters.points_without_time.add(1);
            return;
        }
        self.newest_ts = self.newest_ts.max(ts);
        let slo = &self.slos[input.slo];
        // The group: the SLO and its group_by values, whatever resource the point came from.
        let mut group_hasher = SeriesHasher::default();
        group_hasher.write_u64(input.slo as u64);
        let mut group_labels: Vec<(String, String)> = Vec::new();
        for label in &slo.group_by {
            let value = lookup(attributes, label)
                .or_else(|| lookup(input.resource_attributes, label))
                .unwrap_or_default();
            group_hasher.write(value.as_bytes());
            if !value.is_empty() {
                group_labels.push((label.clone(), value));
            }
        }
        let group_key = group_hasher.finish();
        let ts_ms = (ts / 1_000_000) as i64;
        let resolution_ms = self.resolution_ms;
        if !self.groups.contains_key(&group_key) {
            if self.groups.len() >= self.max_groups {
                self.sweep(true);
            }
            if self.groups.len() >= self.max_groups {
                self.counters.groups_dropped.add(1);
                return;
            }
            self.groups
                .insert(group_key, self.new_group(input.slo, group_labels, ts));
        }
        // The input series: SLO, role, metric name, resource and point attributes.
        let mut series_hasher = SeriesHasher::default();
        for word in [
            input.slo as u64,
            role as u64,
            input.name_hash,
            input.resource_hash,
            attributes_hash(attributes),
        ] {
            series_hasher.write_u64(word);
        }
        let series_key = series_hasher.finish();
        let increase = match self.series.get_mut(&series_key) {
            Some(series) => {
                if ts <= series.last_ts {
                    self.counters.points_out_of_order.add(1);
                    return;
                }
                let reset = value < series.last_value
                    || (start_ts != 0 && series.start_ts != 0 && start_ts != series.start_ts);
                let increase = if delta_temporality || reset {
                    value
                } else {
                    value - series.last_value
                };
                *series = CounterSeries {
                    last_value: value,
                    last_ts: ts,
                    start_ts,
                };
                increase
            }
            None => {
                if self.series.len() >= self.max_series {
                    self.sweep(true);
                }
                if self.series.len() >= self.max_series {
                    self.counters.series_dropped.add(1);
                    return;
                }
                self.series.insert(
                    series_key,
                    CounterSeries {
                        last_value: value,
                        last_ts: ts,
                        start_ts,
                    },
                );
                // A series first seen in the group's first sample slot (the same scrape of
                // another instance may come in a later batch) sets the group's base at its
                // raw value, so the zero-point rule of increase() sees real counter values;
                // one that appears later contributes only what it adds from now on, as in
                // Prometheus.
                let group_has_history = self.groups.get(&group_key).is_some_and(|g| {
                    g.ring.first().is_some_and(|s| {
                        s.ts_ms.div_euclid(resolution_ms) < ts_ms.div_euclid(resolution_ms)
                    })
                });
                if delta_temporality || !group_has_history {
                    value
                } else {
                    0.0
                }
            }
        };
        let Some(group) = self.groups.get_mut(&group_key) else {
            return;
        };
        match role {
            Role::Bad => group.bad += increase,
            Role::Total => group.total += increase,
            Role::LatencyCount => {
                group.total += increase;
                group.bad += increase;
            }
            Role::LatencyGood => group.bad -= increase,
        }
        group.last_ts = group.last_ts.max(ts);
        match &group.service {
            Service::Unseen => group.service = Service::Same(input.service.to_vec()),
            Service::Same(service) if service.as_slice() != input.service => {
                group.service = Service::Mixed;
            }
            _ => {}
        }
        let entry = touched.entry(group_key).or_insert(ts);
        *entry = (*entry).max(ts);
    }

    fn new_group(&self, slo: usize, labels: Vec<(String, String)>, ts: u64) -> Group {
        Group {
            slo,
            labels,
            service: Service::Unseen,
            bad: 0.0,
            total: 0.0,
            ring: Ring::new(self.resolution_ms, self.longest_ms + self.resolution_ms),
            period_ring: Ring::new(
                (self.period_ms / PERIOD_SLOTS).max(self.resolution_ms),
                self.period_ms,
            ),
            last_ts: ts,
        }
    }

    /// Forgets counter series idle for `stale_after` and groups idle for the longest
    /// window, at most every `resolution` of data time unless `force`d (when full).
    fn sweep(&mut self, force: bool) {
        let resolution_ns = u64::try_from(self.resolution_ms)
            .unwrap_or(0)
            .saturating_mul(1_000_000);
        // A forced sweep (when full) runs at most once per data timestamp.
        let since = self.newest_ts.saturating_sub(self.last_sweep_ts);
        if (force && since == 0 && self.last_sweep_ts != 0) || (!force && since < resolution_ns) {
            return;
        }
        self.last_sweep_ts = self.newest_ts;
        let series_cutoff = self.newest_ts.saturating_sub(self.stale_after_ns);
        let before = self.series.len();
        self.series.retain(|_, s| s.last_ts >= series_cutoff);
        self.counters
            .series_evicted
            .add((before - self.series.len()) as u64);
        let group_cutoff = self.newest_ts.saturating_sub(
            u64::try_from(self.longest_ms)
                .unwrap_or(0)
                .saturating_mul(1_000_000),
        );
        if self.series.len() != before {
            self.dirty = true;
        }
        let before = self.groups.len();
        self.groups.retain(|_, g| g.last_ts >= group_cutoff);
        if self.groups.len() != before {
            self.dirty = true;
        }
        self.counters
            .groups_evicted
            .add((before - self.groups.len()) as u64);
    }
}

/// Burn rates, budget and alerts of one group at time `ts`, into `slot`
/// ([burn rates, budget remaining, alerts]).
fn evaluate(
    slo: &CompiledSlo,
    group: &Group,
    windows: &[PromDuration],
    ts: u64,
    slot: &mut [Vec<NumberDataPoint>; 3],
) {
    let now_ms = (ts / 1_000_000) as i64;
    let mut burn_by_window: Vec<(i64, f64)> = Vec::with_capacity(windows.len());
    for window in windows {
        let Some((bad, total)) = group.ring.increase(now_ms, window.millis) else {
            continue;
        };
        if !(total > 0.0) {
            continue;
        }
        let burn = (bad / total) / slo.budget;
        if !burn.is_finite() {
            continue;
        }
        burn_by_window.push((window.millis, burn));
        let mut attributes = vec![
            string_attribute("slo.name", &slo.name),
            string_attribute("slo.window", &window.text),
        ];
        attributes.extend(group_attributes(group));
        slot[0].push(gauge_point(attributes, ts, burn));
    }
    if let Some((bad, total)) = group.period_ring.span_increase() {
        if total > 0.0 {
            let remaining = 1.0 - (bad / total) / slo.budget;
            let mut attributes = vec![string_attribute("slo.name", &slo.name)];
            attributes.extend(group_attributes(group));
            slot[1].push(gauge_point(attributes, ts, remaining));
        }
    }
    for severity in ["page", "ticket"] {
        let rows: Vec<_> = ALERT_ROWS
            .iter()
            .filter(|(s, long, short, _)| {
                *s == severity
                    && windows.iter().any(|w| w.millis == *long)
                    && windows.iter().any(|w| w.millis == *short)
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let burn = |window: i64| {
            burn_by_window
                .iter()
                .find(|(w, _)| *w == window)
                .map(|(_, b)| *b)
        };
        let firing = rows.iter().any(|(_, long, short, rate)| {
            burn(*long).is_some_and(|b| b > *rate) && burn(*short).is_some_and(|b| b > *rate)
        });
        let mut attributes = vec![
            string_attribute("slo.name", &slo.name),
            string_attribute("severity", severity),
        ];
        attributes.extend(group_attributes(group));
        slot[2].push(gauge_point(attributes, ts, if firing { 1.0 } else { 0.0 }));
    }
}

impl Processor for BurnrateProcessor {
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

    fn tick_interval(&self) -> Option<Duration> {
        self.checkpoint.as_ref().map(Checkpointer::interval)
    }

    fn tick(&mut self) {
        self.checkpoint_if_due();
    }

    fn shutdown(&mut self) {
        self.final_checkpoint();
    }
}

impl Checkpointed for BurnrateProcessor {
    fn checkpoint_parts(&mut self) -> (&mut Option<Checkpointer>, &mut bool) {
        (&mut self.checkpoint, &mut self.dirty)
    }

    fn newest_data_ts(&self) -> u64 {
        self.newest_ts
    }

    fn encode_state(&self) -> Vec<u8> {
        BurnrateProcessor::encode_state(self)
    }
}

fn number_value(point: &NumberDataPoint) -> Option<f64> {
    if point.flags & FLAG_NO_RECORDED_VALUE != 0 {
        return None;
    }
    let value = match point.value? {
        number_data_point::Value::AsDouble(v) => v,
        number_data_point::Value::AsInt(v) => v as f64,
    };
    value.is_finite().then_some(value)
}

fn labels_match(matchers: &[LabelMatcher], attributes: &[KeyValue]) -> bool {
    matchers.iter().all(|m| {
        m.regex
            .is_match(&lookup(attributes, &m.label).unwrap_or_default())
    })
}

/// The attribute as a string (PromQL sees every label as a string).
fn lookup(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        _ => return None,
    })
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

fn gauge_point(attributes: Vec<KeyValue>, ts: u64, value: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        time_unix_nano: ts,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

/// The attributes of the resource a group's outputs go in: its service (when all its
/// inputs agree on it) and its group_by labels.
fn output_resource(group: &Group) -> Vec<(String, String)> {
    let mut attributes = match &group.service {
        Service::Same(service) => service
            .iter()
            .filter(|(k, _)| !group.labels.iter().any(|(l, _)| l == k))
            .cloned()
            .collect(),
        Service::Unseen | Service::Mixed => Vec::new(),
    };
    attributes.extend(group.labels.iter().cloned());
    attributes
}

fn group_attributes(group: &Group) -> impl Iterator<Item = KeyValue> + '_ {
    group.labels.iter().map(|(k, v)| string_attribute(k, v))
}

#[cfg(test)]
mod tests;
