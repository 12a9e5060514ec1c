//! `ewma`: per-series exponentially weighted moving averages of gauges and sums, their
//! smoothed growth rate, and the predicted time until a value reaches its limit (the early
//! OOM warning of Scenario 1: working set vs `cgroup.memory.max`).
//!
//! For every matched series (identity = metric name + resource attributes + point
//! attributes) it emits, next to the input (same resource, same scope):
//! - `<name>.ewma`: the smoothed level, same unit;
//! - `<name>.rate.ewma` (with `rate: true`): the smoothed per-second change, unit `<unit>/s`;
//! - for each `predict` rule, `<predict.name>`: seconds until `value` reaches `limit` at the
//!   smoothed growth rate of `value`, absent when not growing, beyond `horizon`, or with no
//!   finite limit for the same resource and attributes.
//!
//! Smoothing is time-aware: `alpha = 1 - exp(-ln2 * dt / half_life)` with `dt` the time
//! since the series' previous point, so irregular intervals weigh correctly. Averages are
//! bias-corrected (`S/W`, pandas `adjust=True`). Time comes only from data-point
//! timestamps; this module must never read the wall clock (only the checkpoint schedule
//! does, in `crate::checkpoint`), and its state must stay bounded (`max_series`, stale
//! series evicted, both counted).
//!
//! With `storage`, the state is checkpointed (see `crate::checkpoint`) and restored at
//! start, so a restart does not warm every series up again.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, metric, number_data_point,
};
use oxcol_core::telemetry::{Counter, Gauge as GaugeCounter, Registry};
use oxcol_core::{Batch, GoDuration, Processor, Refusal};
use regex::Regex;
use serde::Deserialize;

use crate::checkpoint::{self, Checkpointed, Checkpointer, Decoder, Encoder, Storage};

pub const TYPE: &str = "ewma";
pub const ALIASES: &[&str] = &["ewma"];

/// Half-life used when a rule gives neither `half_life` nor `alpha`.
const DEFAULT_HALF_LIFE: GoDuration = GoDuration::from_secs(120);
/// OTLP `DataPointFlags.NO_RECORDED_VALUE`.
const FLAG_NO_RECORDED_VALUE: u32 = 1;
/// Limits at or above this are "no limit" (cgroup v1 reports unlimited as ~2^63).
const UNLIMITED: f64 = 4_611_686_018_427_387_904.0; // 2^62

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Which metrics to smooth. Default: none.
    pub metrics: Vec<MetricRule>,
    /// Time-to-limit predictions. Default: none.
    pub predict: Vec<PredictRule>,
    /// Most series (smoothed series + predicted series + limits) kept at once; new series
    /// beyond it are not tracked (counted). Default 10000.
    pub max_series: usize,
    /// A series with no point for this long (in data time: behind the newest timestamp
    /// seen) is evicted. Default 10m.
    pub stale_after: GoDuration,
    /// Points a series needs before its `.ewma` is emitted (the `.rate.ewma` and
    /// predictions need this many rate samples, i.e. one point more). Default 5.
    pub warmup_points: u32,
    /// A gap longer than this many half-lives restarts the series (state dropped, warm-up
    /// again). Default 10. With `alpha`, the gap is measured in multiples of the series'
    /// previous interval.
    pub max_gap_half_lives: f64,
    /// A `file_storage` extension (`file_storage` or `file_storage/NAME`, listed in
    /// `service.extensions`) to checkpoint the state in, so it survives a restart.
    /// Default: none (a restart starts every series empty).
    pub storage: Option<String>,
    /// With `storage`: how often the state is checkpointed (wall clock, only when it
    /// changed), besides at shutdown. Default 30s.
    pub checkpoint_interval: GoDuration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            metrics: Vec::new(),
            predict: Vec::new(),
            max_series: 10_000,
            stale_after: GoDuration::from_secs(600),
            warmup_points: 5,
            max_gap_half_lives: 10.0,
            storage: None,
            checkpoint_interval: GoDuration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricRule {
    /// Metric name. Made only of name characters (letters, digits, `_ . - / :`) it is
    /// matched exactly; otherwise it is a fully anchored regex (`cgroup\.memory\..*`).
    #[serde(rename = "match")]
    pub match_name: String,
    /// Time for a point's weight to halve. Default 2m (when `alpha` is not set either).
    #[serde(default)]
    pub half_life: Option<GoDuration>,
    /// Constant per-point weight in (0, 1], instead of `half_life` (ignores the interval).
    #[serde(default)]
    pub alpha: Option<f64>,
    /// Also emit `<name>.rate.ewma`, the smoothed per-second change. Default false.
    #[serde(default)]
    pub rate: bool,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PredictRule {
    /// Name of the emitted metric (unit `s`). Required.
    pub name: String,
    /// Exact name of the growing metric (gauge or sum). Required.
    pub value: String,
    /// Exact name of the limit metric, matched per resource and point attributes.
    /// Required.
    pub limit: String,
    /// Half-life of the growth-rate average. Default 2m.
    #[serde(default)]
    pub half_life: Option<GoDuration>,
    /// Predictions further away than this are absent. Default 24h.
    #[serde(default)]
    pub horizon: Option<GoDuration>,
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for (i, rule) in self.metrics.iter().enumerate() {
            if let Err(e) = NameMatcher::new(&rule.match_name) {
                errors.push(format!("metrics[{i}].match: {e}"));
            }
            match (rule.half_life, rule.alpha) {
                (Some(_), Some(_)) => {
                    errors.push(format!("metrics[{i}]: set half_life or alpha, not both"))
                }
                (Some(h), None) if h.is_zero() => errors.push(format!(
                    "metrics[{i}].half_life must be greater than zero (e.g. 2m)"
                )),
                (None, Some(a)) if !(a > 0.0 && a <= 1.0) => {
                    errors.push(format!("metrics[{i}].alpha must be in (0, 1], got {a}"))
                }
                _ => {}
            }
        }
        for (i, rule) in self.predict.iter().enumerate() {
            for (key, value) in [
                ("name", &rule.name),
                ("value", &rule.value),
                ("limit", &rule.limit),
            ] {
                if value.is_empty() {
                    errors.push(format!("predict[{i}].{key} is required (e.g. name: cgroup.memory.time_to_limit, value: cgroup.memory.working_set, limit: cgroup.memory.max)"));
                }
            }
            if rule.half_life.is_some_and(GoDuration::is_zero) {
                errors.push(format!(
                    "predict[{i}].half_life must be greater than zero (e.g. 2m)"
                ));
            }
        }
        if self.metrics.is_empty() && self.predict.is_empty() {
            errors.push("nothing to do: set `metrics` and/or `predict`".to_string());
        }
        if self.max_series == 0 {
            errors.push("max_series must be greater than zero (default 10000)".to_string());
        }
        if self.stale_after.is_zero() {
            errors.push("stale_after must be greater than zero (default 10m)".to_string());
        }
        if !(self.max_gap_half_lives > 0.0) {
            errors.push("max_gap_half_lives must be greater than zero (default 10)".to_string());
        }
        if self.storage.as_deref().is_some_and(|s| s.trim().is_empty()) {
            errors.push("storage must name a file_storage extension (e.g. file_storage/state) or be left out".to_string());
        }
        if self.checkpoint_interval.is_zero() {
            errors.push("checkpoint_interval must be greater than zero (default 30s)".to_string());
        }
        errors
    }
}

/// Exact name or anchored regex.
#[derive(Debug)]
enum NameMatcher {
    Exact(String),
    Regex(Regex),
}

impl NameMatcher {
    fn new(pattern: &str) -> Result<NameMatcher, String> {
        if pattern.is_empty() {
            return Err("is empty: give a metric name or a regex".to_string());
        }
        if pattern
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':'))
        {
            return Ok(NameMatcher::Exact(pattern.to_string()));
        }
        Regex::new(&format!("^(?:{pattern})$"))
            .map(NameMatcher::Regex)
            .map_err(|e| format!("{pattern:?} is not a valid regex: {e}"))
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            NameMatcher::Exact(exact) => exact == name,
            // Never smooth our own output again when a broad regex matches it.
            NameMatcher::Regex(re) => !name.ends_with(".ewma") && re.is_match(name),
        }
    }
}

/// How the weight of a new point is computed.
#[derive(Clone, Copy, Debug)]
enum Weighting {
    HalfLife { seconds: f64 },
    Alpha(f64),
}

impl Weighting {
    fn alpha(self, dt_seconds: f64) -> f64 {
        match self {
            Weighting::HalfLife { seconds } => {
                1.0 - (-std::f64::consts::LN_2 * dt_seconds / seconds).exp()
            }
            Weighting::Alpha(a) => a,
        }
    }
}

/// A bias-corrected exponentially weighted average: `sum / weight` (pandas `adjust=True`).
#[derive(Clone, Copy, Debug, Default)]
struct Smoothed {
    sum: f64,
    weight: f64,
    samples: u32,
}

impl Smoothed {
    fn update(&mut self, x: f64, alpha: f64) {
        self.sum = (1.0 - alpha) * self.sum + alpha * x;
        self.weight = (1.0 - alpha) * self.weight + alpha;
        self.samples = self.samples.saturating_add(1);
    }

    fn value(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| self.sum / self.weight)
    }
}

/// The state of one series.
#[derive(Clone, Debug, Default)]
struct SeriesState {
    /// Timestamp (ns) and value of the previous point; `points == 0` means none yet.
    last_ts: u64,
    last_value: f64,
    start_ts: u64,
    /// Previous interval in seconds (the gap reference for `alpha` rules).
    last_dt: f64,
    points: u32,
    level: Smoothed,
    rate: Smoothed,
}

/// What happened to a point.
#[derive(Debug, PartialEq)]
enum Update {
    Applied,
    /// Timestamp not after the previous one: never apply a negative or zero interval.
    OutOfOrder,
    /// The series restarted from this point after a gap.
    Gap,
    /// A monotonic sum went down or its start time moved: rate from zero, level restarted.
    Reset,
}

impl SeriesState {
    fn update(
        &mut self,
        ts: u64,
        value: f64,
        start_ts: u64,
        monotonic: bool,
        weighting: Weighting,
        max_gap_half_lives: f64,
    ) -> Update {
        if self.points == 0 {
            *self = SeriesState {
                last_ts: ts,
                last_value: value,
                start_ts,
                points: 1,
                ..SeriesState::default()
            };
            return Update::Applied;
        }
        if ts <= self.last_ts {
            return Update::OutOfOrder;
        }
        let dt = (ts - self.last_ts) as f64 / 1e9;
        let gap_reference = match weighting {
            Weighting::HalfLife { seconds } => seconds,
            Weighting::Alpha(_) => self.last_dt,
        };
        if gap_reference > 0.0 && dt > max_gap_half_lives * gap_reference {
            *self = SeriesState {
                last_ts: ts,
                last_value: value,
                start_ts,
                points: 1,
                ..SeriesState::default()
            };
            return Update::Gap;
        }
        let alpha = weighting.alpha(dt);
        let reset = monotonic
            && (value < self.last_value
                || (start_ts != 0 && self.start_ts != 0 && start_ts != self.start_ts));
        let rate_sample = if reset {
            value / dt
        } else {
            (value - self.last_value) / dt
        };
        // Extreme values over a nanosecond interval can overflow; such a sample is dropped.
        if rate_sample.is_finite() {
            self.rate.update(rate_sample, alpha);
        }
        let outcome = if reset {
            // As Prometheus' rate(): after a reset the counter counted up from zero.
            self.level = Smoothed::default();
            self.level.update(value, 1.0);
            Update::Reset
        } else {
            if self.level.samples == 0 {
                // The first point is weighted as if it came one interval earlier.
                self.level.update(self.last_value, alpha);
            }
            self.level.update(value, alpha);
            Update::Applied
        };
        self.last_ts = ts;
        self.last_value = value;
        self.start_ts = start_ts;
        self.last_dt = dt;
        self.points = self.points.saturating_add(1);
        outcome
    }
}

/// The processor's smoothing of one gauge series, for code outside the processor that
/// holds a series of its own (the agent's memory picture when no `ewma` processor runs):
/// the same time-aware weighting, bias correction, first-point and gap rules, so the two
/// never disagree on what "the trend" is.
#[derive(Clone, Debug)]
pub struct Trend {
    state: SeriesState,
    weighting: Weighting,
    max_gap_half_lives: f64,
}

impl Trend {
    /// A series smoothed with `half_life` (the processor's default is 2m), restarted after
    /// a gap of `max_gap_half_lives` half-lives (default 10).
    pub fn new(half_life: Duration, max_gap_half_lives: f64) -> Trend {
        Trend {
            state: SeriesState::default(),
            weighting: Weighting::HalfLife {
                seconds: half_life.as_secs_f64().max(1e-9),
            },
            max_gap_half_lives,
        }
    }

    /// Adds a gauge point (time in ns since the epoch). Out-of-order or duplicate
    /// timestamps and non-finite values are ignored.
    pub fn update(&mut self, ts_unix_nano: u64, value: f64) {
        if ts_unix_nano == 0 || !value.is_finite() {
            return;
        }
        self.state.update(
            ts_unix_nano,
            value,
            0,
            false,
            self.weighting,
            self.max_gap_half_lives,
        );
    }

    /// The smoothed growth per second, once `warmup` rate samples were seen (the
    /// processor's `warmup_points` rule for `.rate.ewma` and predictions).
    pub fn rate_per_second(&self, warmup: u32) -> Option<f64> {
        if self.state.rate.samples < warmup.max(1) {
            return None;
        }
        self.state.rate.value()
    }
}

/// Seconds until `current` reaches `limit` growing at `rate_per_second`: the `predict`
/// rule. 0 once at or over the limit; `None` with no finite positive limit (or one of
/// 2^62 and more: cgroup v1 "unlimited"), a rate that is not positive, or an answer
/// beyond `horizon_seconds`.
pub fn seconds_to_limit(
    current: f64,
    limit: f64,
    rate_per_second: f64,
    horizon_seconds: f64,
) -> Option<f64> {
    if !limit.is_finite() || limit <= 0.0 || limit >= UNLIMITED {
        return None;
    }
    if current >= limit {
        return Some(0.0);
    }
    if !(rate_per_second > 0.0) {
        return None;
    }
    let seconds = (limit - current) / rate_per_second;
    (seconds.is_finite() && seconds <= horizon_seconds).then_some(seconds)
}

struct CompiledRule {
    matcher: NameMatcher,
    weighting: Weighting,
    rate: bool,
}

struct CompiledPredict {
    name: String,
    value: String,
    limit: String,
    weighting: Weighting,
    horizon_seconds: f64,
}

/// Self-telemetry of one `ewma` processor.
#[derive(Clone, Debug, Default)]
pub struct EwmaCounters {
    pub series_evicted: Counter,
    pub series_dropped: Counter,
    pub series_active: GaugeCounter,
    pub points_out_of_order: Counter,
    pub points_without_time: Counter,
    pub restarted_gap: Counter,
    pub restarted_reset: Counter,
}

impl EwmaCounters {
    pub fn new(registry: &Registry, processor: &str) -> EwmaCounters {
        let skipped = |reason| {
            registry.counter(
                "oxcol_processor_points_skipped",
                "Points a stateful processor could not use, by reason.",
                &[("processor", processor), ("reason", reason)],
            )
        };
        let restarted = |reason| {
            registry.counter(
                "oxcol_processor_series_restarted",
                "Series whose state restarted, by reason (gap, reset).",
                &[("processor", processor), ("reason", reason)],
            )
        };
        let (series_evicted, series_dropped, series_active) =
            oxcol_core::telemetry::series_counters(registry, processor);
        EwmaCounters {
            series_evicted,
            series_dropped,
            series_active,
            points_out_of_order: skipped("out_of_order"),
            points_without_time: skipped("no_timestamp"),
            restarted_gap: restarted("gap"),
            restarted_reset: restarted("reset"),
        }
    }
}

/// Last value of a limit series.
#[derive(Clone, Copy, Debug)]
struct LimitState {
    value: f64,
    last_ts: u64,
}

/// A predicted series touched by the current batch, resolved after all limits are read.
struct PendingPrediction {
    resource: usize,
    scope: usize,
    predict: usize,
    value_key: u64,
    limit_key: u64,
    ts: u64,
    /// The input point: index of its metric in the scope and of the point in the metric
    /// (its attributes are cloned only when a prediction is emitted).
    metric: usize,
    point: usize,
}

pub struct EwmaProcessor {
    id: String,
    rules: Vec<CompiledRule>,
    predicts: Vec<CompiledPredict>,
    max_series: usize,
    stale_after_ns: u64,
    warmup_points: u32,
    max_gap_half_lives: f64,
    series: KeyMap<SeriesState>,
    limits: KeyMap<LimitState>,
    last_seen: KeyMap<u64>,
    newest_ts: u64,
    last_sweep_ts: u64,
    counters: EwmaCounters,
    /// Checkpointing (`storage`): the file, the config fingerprint, and whether state
    /// changed since the last checkpoint.
    checkpoint: Option<Checkpointer>,
    fingerprint: u64,
    checkpoint_interval: Duration,
    dirty: bool,
}

/// Version of the checkpoint payload below; bump it when the encoding or the series keys
/// change (an older checkpoint then starts empty, counted as `reason="version"`).
pub const STATE_VERSION: u32 = 1;

/// The config keys the state depends on (series keys carry rule and predict indexes).
fn state_fingerprint(config: &Config) -> u64 {
    checkpoint::fingerprint(&format!("ewma\n{:?}\n{:?}", config.metrics, config.predict))
}

impl SeriesState {
    fn encode(&self, e: &mut Encoder) {
        e.u64(self.last_ts);
        e.f64(self.last_value);
        e.u64(self.start_ts);
        e.f64(self.last_dt);
        e.u32(self.points);
        for s in [&self.level, &self.rate] {
            e.f64(s.sum);
            e.f64(s.weight);
            e.u32(s.samples);
        }
    }

    fn decode(d: &mut Decoder<'_>) -> Result<SeriesState, String> {
        let (last_ts, last_value, start_ts, last_dt, points) =
            (d.u64()?, d.f64()?, d.u64()?, d.f64()?, d.u32()?);
        let mut smoothed = || -> Result<Smoothed, String> {
            Ok(Smoothed {
                sum: d.f64()?,
                weight: d.f64()?,
                samples: d.u32()?,
            })
        };
        let (level, rate) = (smoothed()?, smoothed()?);
        Ok(SeriesState {
            last_ts,
            last_value,
            start_ts,
            last_dt,
            points,
            level,
            rate,
        })
    }
}

/// One tracked key of a checkpoint: (key, last seen, series state, limit state).
type StateEntry = (u64, u64, Option<SeriesState>, Option<LimitState>);

impl EwmaProcessor {
    pub fn new(
        id: &str,
        config: &Config,
        registry: Option<&Registry>,
    ) -> Result<EwmaProcessor, String> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let weighting = |half_life: Option<GoDuration>, alpha: Option<f64>| match alpha {
            Some(a) => Weighting::Alpha(a),
            None => Weighting::HalfLife {
                seconds: half_life.unwrap_or(DEFAULT_HALF_LIFE).get().as_secs_f64(),
            },
        };
        let rules = config
            .metrics
            .iter()
            .map(|r| {
                Ok(CompiledRule {
                    matcher: NameMatcher::new(&r.match_name)?,
                    weighting: weighting(r.half_life, r.alpha),
                    rate: r.rate,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let predicts = config
            .predict
            .iter()
            .map(|p| CompiledPredict {
                name: p.name.clone(),
                value: p.value.clone(),
                limit: p.limit.clone(),
                weighting: weighting(p.half_life, None),
                horizon_seconds: p
                    .horizon
                    .unwrap_or(GoDuration::from_secs(86_400))
                    .get()
                    .as_secs_f64(),
            })
            .collect();
        Ok(EwmaProcessor {
            id: id.to_string(),
            rules,
            predicts,
            max_series: config.max_series,
            stale_after_ns: duration_nanos(config.stale_after.get()),
            warmup_points: config.warmup_points,
            max_gap_half_lives: config.max_gap_half_lives,
            series: KeyMap::default(),
            limits: KeyMap::default(),
            last_seen: KeyMap::default(),
            newest_ts: 0,
            last_sweep_ts: 0,
            counters: registry
                .map(|r| EwmaCounters::new(r, id))
                .unwrap_or_default(),
            checkpoint: None,
            fingerprint: state_fingerprint(config),
            checkpoint_interval: config.checkpoint_interval.get(),
            dirty: false,
        })
    }

    /// Checkpoints to `storage` from now on (file per processor id and `pipeline`), after
    /// restoring what a previous run left there. An unusable checkpoint starts empty
    /// (logged, counted); errors only when the directory cannot be used.
    pub fn with_storage(
        mut self,
        storage: &Storage,
        pipeline: &str,
        registry: Option<&Registry>,
    ) -> Result<EwmaProcessor, String> {
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
            match decode_state(&restored.payload) {
                Ok((newest_ts, last_sweep_ts, entries)) => {
                    let restored_series = self.restore(newest_ts, last_sweep_ts, entries);
                    checkpointer.restored(restored_series, newest_ts);
                    tracing::info!(processor = %self.id, series = restored_series, newest_data_time_unix_nano = newest_ts, "state restored from checkpoint");
                }
                Err(detail) => checkpointer.decode_failed(&detail),
            }
        }
        self.checkpoint = Some(checkpointer);
        Ok(self)
    }

    /// The state as a checkpoint payload (public for the checkpoint benchmark).
    pub fn encode_state(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(32 + self.last_seen.len() * 110);
        e.u64(self.newest_ts);
        e.u64(self.last_sweep_ts);
        e.len(self.last_seen.len());
        for (key, seen) in &self.last_seen {
            e.u64(*key);
            e.u64(*seen);
            match self.series.get(key) {
                Some(state) => {
                    e.u8(1);
                    state.encode(&mut e);
                }
                None => e.u8(0),
            }
            match self.limits.get(key) {
                Some(limit) => {
                    e.u8(1);
                    e.f64(limit.value);
                    e.u64(limit.last_ts);
                }
                None => e.u8(0),
            }
        }
        e.buf
    }

    /// Installs decoded state, keeping at most `max_series` (the most recently seen;
    /// the rest are counted as dropped). Returns the series kept.
    fn restore(
        &mut self,
        newest_ts: u64,
        last_sweep_ts: u64,
        mut entries: Vec<StateEntry>,
    ) -> usize {
        if entries.len() > self.max_series {
            entries.sort_unstable_by_key(|e| std::cmp::Reverse(e.1));
            self.counters
                .series_dropped
                .add((entries.len() - self.max_series) as u64);
            entries.truncate(self.max_series);
        }
        self.newest_ts = newest_ts;
        self.last_sweep_ts = last_sweep_ts;
        for (key, seen, series, limit) in entries {
            self.last_seen.insert(key, seen);
            if let Some(series) = series {
                self.series.insert(key, series);
            }
            if let Some(limit) = limit {
                self.limits.insert(key, limit);
            }
        }
        self.counters.series_active.set(self.last_seen.len() as i64);
        self.last_seen.len()
    }

    /// Series currently held (smoothed, predicted and limits).
    pub fn series_count(&self) -> usize {
        self.last_seen.len()
    }

    /// Marks `key` seen at `ts`; false when it is new and there is no room for it.
    fn admit(&mut self, key: u64, ts: u64) -> bool {
        self.dirty = true;
        if let Some(seen) = self.last_seen.get_mut(&key) {
            *seen = (*seen).max(ts);
            return true;
        }
        if self.last_seen.len() >= self.max_series {
            self.sweep(true);
            if self.last_seen.len() >= self.max_series {
                self.counters.series_dropped.add(1);
                return false;
            }
        }
        self.last_seen.insert(key, ts);
        true
    }

    /// Evicts series not seen for `stale_after`. Runs at most every `stale_after / 4` of
    /// data time unless `force`d.
    fn sweep(&mut self, force: bool) {
        // A forced sweep (when full) runs at most once per data timestamp, so a burst of
        // new series past max_series costs one pass, not one pass per series.
        let since = self.newest_ts.saturating_sub(self.last_sweep_ts);
        if (force && since == 0 && self.last_sweep_ts != 0)
            || (!force && since < self.stale_after_ns / 4)
        {
            return;
        }
        self.last_sweep_ts = self.newest_ts;
        let cutoff = self.newest_ts.saturating_sub(self.stale_after_ns);
        let before = self.last_seen.len();
        self.last_seen.retain(|_, seen| *seen >= cutoff);
        let evicted = before - self.last_seen.len();
        if evicted > 0 {
            self.dirty = true;
            let live = &self.last_seen;
            self.series.retain(|k, _| live.contains_key(k));
            self.limits.retain(|k, _| live.contains_key(k));
            self.counters.series_evicted.add(evicted as u64);
        }
    }

    fn process_metrics(&mut self, resources: &mut [ResourceMetrics]) {
        let mut pending: Vec<PendingPrediction> = Vec::new();
        for (resource_index, resource_metrics) in resources.iter_mut().enumerate() {
            let resource_hash = resource_metrics
                .resource
                .as_ref()
                .map(|r| attributes_hash(&r.attributes))
                .unwrap_or(0);
            for (scope_index, scope) in resource_metrics.scope_metrics.iter_mut().enumerate() {
                let mut emitted: Vec<Metric> = Vec::new();
                for (metric_index, metric) in scope.metrics.iter().enumerate() {
                    self.process_metric(
                        metric,
                        metric_index,
                        resource_hash,
                        resource_index,
                        scope_index,
                        &mut emitted,
                        &mut pending,
                    );
                }
                scope.metrics.extend(emitted);
            }
        }
        self.emit_predictions(resources, pending);
        self.sweep(false);
        self.counters.series_active.set(self.last_seen.len() as i64);
    }

    fn process_metric(
        &mut self,
        metric: &Metric,
        metric_index: usize,
        resource_hash: u64,
        resource_index: usize,
        scope_index: usize,
        emitted: &mut Vec<Metric>,
        pending: &mut Vec<PendingPrediction>,
    ) {
        let (points, monotonic) = match &metric.data {
            Some(metric::Data::Gauge(g)) => (&g.data_points, false),
            Some(metric::Data::Sum(s)) => (&s.data_points, s.is_monotonic),
            _ => return,
        };
        let rule_index = self
            .rules
            .iter()
            .position(|r| r.matcher.matches(&metric.name));
        let predict_values: Vec<usize> = self
            .predicts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.value == metric.name)
            .map(|(i, _)| i)
            .collect();
        let predict_limits: Vec<usize> = self
            .predicts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.limit == metric.name)
            .map(|(i, _)| i)
            .collect();
        if rule_index.is_none() && predict_values.is_empty() && predict_limits.is_empty() {
            return;
        }
        let name_hash = hash_str(&metric.name);
        let capacity = if rule_index.is_some() {
            points.len()
        } else {
            0
        };
        let mut level_points = Vec::with_capacity(capacity);
        let mut rate_points = Vec::with_capacity(capacity);
        for (point_index, point) in points.iter().enumerate() {
            let Some(value) = point_value(point) else {
                continue;
            };
            let ts = point.time_unix_nano;
            if ts == 0 {
                self.counters.points_without_time.add(1);
                continue;
            }
            self.newest_ts = self.newest_ts.max(ts);
            // Resource + point attributes: the series without its name (limits match on it).
            let identity = resource_hash.wrapping_add(attributes_hash(&point.attributes));
            let series_hash = combine(name_hash, identity);
            if let Some(rule_index) = rule_index {
                let key = combine(series_hash, 0x5eed_0000 + rule_index as u64);
                if self.admit(key, ts) {
                    let rule = &self.rules[rule_index];
                    let state = self.series.entry(key).or_default();
                    match state.update(
                        ts,
                        value,
                        point.start_time_unix_nano,
                        monotonic,
                        rule.weighting,
                        self.max_gap_half_lives,
                    ) {
                        Update::OutOfOrder => self.counters.points_out_of_order.add(1),
                        Update::Gap => self.counters.restarted_gap.add(1),
                        Update::Reset => self.counters.restarted_reset.add(1),
                        Update::Applied => {}
                    }
                    if state.points >= self.warmup_points && state.last_ts == ts {
                        // A single point is its own average.
                        if let Some(level) = state
                            .level
                            .value()
                            .or(Some(state.last_value))
                            .filter(|v| v.is_finite())
                        {
                            level_points.push(gauge_point(&point.attributes, ts, level));
                        }
                    }
                    if rule.rate && state.rate.samples >= self.warmup_points && state.last_ts == ts
                    {
                        if let Some(rate) = state.rate.value().filter(|v| v.is_finite()) {
                            rate_points.push(gauge_point(&point.attributes, ts, rate));
                        }
                    }
                }
            }
            for &predict in &predict_values {
                let key = combine(series_hash, 0x9e3d_0000 + predict as u64);
                let weighting = self.predicts[predict].weighting;
                if self.admit(key, ts) {
                    let state = self.series.entry(key).or_default();
                    match state.update(
                        ts,
                        value,
                        point.start_time_unix_nano,
                        monotonic,
                        weighting,
                        self.max_gap_half_lives,
                    ) {
                        Update::OutOfOrder => self.counters.points_out_of_order.add(1),
                        Update::Gap => self.counters.restarted_gap.add(1),
                        Update::Reset => self.counters.restarted_reset.add(1),
                        Update::Applied => {}
                    }
                    let limit_key = combine(identity, 0x1111_0000 + predict as u64);
                    pending.push(PendingPrediction {
                        resource: resource_index,
                        scope: scope_index,
                        predict,
                        value_key: key,
                        limit_key,
                        ts,
                        metric: metric_index,
                        point: point_index,
                    });
                }
            }
            for &predict in &predict_limits {
                let limit_key = combine(identity, 0x1111_0000 + predict as u64);
                if self.admit(limit_key, ts) {
                    let entry = self
                        .limits
                        .entry(limit_key)
                        .or_insert(LimitState { value, last_ts: ts });
                    if ts >= entry.last_ts {
                        *entry = LimitState { value, last_ts: ts };
                    }
                }
            }
        }
        if !level_points.is_empty() {
            emitted.push(gauge_metric(
                format!("{}.ewma", metric.name),
                &metric.description,
                metric.unit.clone(),
                level_points,
            ));
        }
        if !rate_points.is_empty() {
            let unit = if metric.unit.is_empty() {
                "1/s".to_string()
            } else {
                format!("{}/s", metric.unit)
            };
            emitted.push(gauge_metric(
                format!("{}.rate.ewma", metric.name),
                &metric.description,
                unit,
                rate_points,
            ));
        }
    }

    /// Resolves the predictions of this batch, after every limit point in it was read.
    fn emit_predictions(
        &mut self,
        resources: &mut [ResourceMetrics],
        pending: Vec<PendingPrediction>,
    ) {
        let mut outputs: HashMap<(usize, usize, usize), Vec<NumberDataPoint>> = HashMap::new();
        // Pending predictions come in batch order: one map lookup per run of a key.
        let mut run: Option<((usize, usize, usize), Vec<NumberDataPoint>)> = None;
        for p in pending {
            let Some(seconds) = self.predict_seconds(&p) else {
                continue;
            };
            let Some(attributes) = input_attributes(resources, &p) else {
                continue;
            };
            let key = (p.resource, p.scope, p.predict);
            let point = gauge_point(attributes, p.ts, seconds);
            match &mut run {
                Some((run_key, points)) if *run_key == key => points.push(point),
                _ => {
                    if let Some((run_key, points)) = run.take() {
                        outputs.entry(run_key).or_default().extend(points);
                    }
                    run = Some((key, vec![point]));
                }
            }
        }
        if let Some((run_key, points)) = run.take() {
            outputs.entry(run_key).or_default().extend(points);
        }
        let mut keys: Vec<_> = outputs.keys().copied().collect();
        keys.sort_unstable();
        for key in keys {
            let Some(points) = outputs.remove(&key) else {
                continue;
            };
            let (resource, scope, predict) = key;
            let name = self.predicts[predict].name.clone();
            if let Some(scope_metrics) = resources
                .get_mut(resource)
                .and_then(|r| r.scope_metrics.get_mut(scope))
            {
                scope_metrics.metrics.push(gauge_metric(
                    name,
                    "Predicted time until the value reaches its limit at the smoothed growth rate.",
                    "s".to_string(),
                    points,
                ));
            }
        }
    }

    fn predict_seconds(&self, p: &PendingPrediction) -> Option<f64> {
        let predict = &self.predicts[p.predict];
        let state = self.series.get(&p.value_key)?;
        if state.last_ts != p.ts || state.rate.samples < self.warmup_points {
            return None;
        }
        let limit = self.limits.get(&p.limit_key)?.value;
        let current = state.last_value;
        // At or over the limit is 0 even before the rate has a value.
        let slope = state.rate.value().unwrap_or(f64::NAN);
        seconds_to_limit(current, limit, slope, predict.horizon_seconds)
    }
}

/// Decodes a checkpoint payload: (newest_ts, last_sweep_ts, entries).
fn decode_state(payload: &[u8]) -> Result<(u64, u64, Vec<StateEntry>), String> {
    let mut d = Decoder::new(payload);
    let (newest_ts, last_sweep_ts) = (d.u64()?, d.u64()?);
    let n = d.len(18)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let (key, seen) = (d.u64()?, d.u64()?);
        let series = match d.u8()? {
            0 => None,
            1 => Some(SeriesState::decode(&mut d)?),
            other => return Err(format!("bad series flag {other}")),
        };
        let limit = match d.u8()? {
            0 => None,
            1 => Some(LimitState {
                value: d.f64()?,
                last_ts: d.u64()?,
            }),
            other => return Err(format!("bad limit flag {other}")),
        };
        entries.push((key, seen, series, limit));
    }
    d.finished()?;
    Ok((newest_ts, last_sweep_ts, entries))
}

impl Processor for EwmaProcessor {
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

impl Checkpointed for EwmaProcessor {
    fn checkpoint_parts(&mut self) -> (&mut Option<Checkpointer>, &mut bool) {
        (&mut self.checkpoint, &mut self.dirty)
    }

    fn newest_data_ts(&self) -> u64 {
        self.newest_ts
    }

    fn encode_state(&self) -> Vec<u8> {
        EwmaProcessor::encode_state(self)
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A number point's value as f64; `None` for `NO_RECORDED_VALUE` points, points without
/// a value, and NaN/Inf.
pub fn point_value(point: &NumberDataPoint) -> Option<f64> {
    if point.flags & FLAG_NO_RECORDED_VALUE != 0 {
        return None;
    }
    let value = match point.value? {
        number_data_point::Value::AsDouble(v) => v,
        number_data_point::Value::AsInt(v) => v as f64,
    };
    value.is_finite().then_some(value)
}

/// The attributes of the input point a pending prediction was computed for.
fn input_attributes<'r>(
    resources: &'r [ResourceMetrics],
    p: &PendingPrediction,
) -> Option<&'r [KeyValue]> {
    let metric = resources
        .get(p.resource)?
        .scope_metrics
        .get(p.scope)?
        .metrics
        .get(p.metric)?;
    let points = match &metric.data {
        Some(metric::Data::Gauge(g)) => &g.data_points,
        Some(metric::Data::Sum(s)) => &s.data_points,
        _ => return None,
    };
    Some(&points.get(p.point)?.attributes)
}

fn gauge_point(attributes: &[KeyValue], ts: u64, value: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attributes.to_vec(),
        time_unix_nano: ts,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn gauge_metric(
    name: String,
    description: &str,
    unit: String,
    points: Vec<NumberDataPoint>,
) -> Metric {
    Metric {
        name,
        description: description.to_string(),
        unit,
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

/// State maps keyed by series hashes (already well mixed). The map hash is the key mixed
/// with a random per-map seed, so crafted series cannot pile up in one probe sequence.
type KeyMap<V> = HashMap<u64, V, KeyState>;

#[derive(Clone, Copy)]
struct KeyState {
    seed: u64,
}

impl Default for KeyState {
    fn default() -> Self {
        KeyState {
            seed: rand::random(),
        }
    }
}

impl std::hash::BuildHasher for KeyState {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            seed: self.seed,
            value: 0,
        }
    }
}

struct KeyHasher {
    seed: u64,
    value: u64,
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = SeriesHasher::default();
        h.write(bytes);
        self.value = h.finish();
    }
    fn write_u64(&mut self, n: u64) {
        self.value = n;
    }
    fn finish(&self) -> u64 {
        fmix64(self.value ^ self.seed)
    }
}

/// A fast hash for series identities (FxHash's word step, murmur3's finalizer). Not
/// keyed, as the SipHash with fixed keys it replaces was not either.
#[derive(Default)]
pub(crate) struct SeriesHasher(u64);

impl SeriesHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for SeriesHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        // The length keeps "a\0" and "a" apart.
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(word) ^ ((bytes.len() as u64) << 56));
    }
    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        fmix64(self.0)
    }
}

/// murmur3's 64-bit finalizer: every input bit affects every output bit.
#[inline]
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

pub(crate) fn hash_str(s: &str) -> u64 {
    let mut h = SeriesHasher::default();
    s.hash(&mut h);
    h.finish()
}

pub(crate) fn combine(a: u64, b: u64) -> u64 {
    fmix64(a ^ fmix64(b ^ 0x9e37_79b9_7f4a_7c15))
}

/// Order-independent hash of an attribute set (the sum of per-attribute hashes).
pub(crate) fn attributes_hash(attributes: &[KeyValue]) -> u64 {
    attributes.iter().fold(0u64, |acc, kv| {
        let mut h = SeriesHasher::default();
        kv.key.hash(&mut h);
        hash_any_value(kv.value.as_ref(), &mut h);
        acc.wrapping_add(h.finish())
    })
}

fn hash_any_value(value: Option<&AnyValue>, h: &mut SeriesHasher) {
    match value.and_then(|v| v.value.as_ref()) {
        None => 0u8.hash(h),
        Some(any_value::Value::StringValue(s)) => (1u8, s).hash(h),
        Some(any_value::Value::BoolValue(b)) => (2u8, b).hash(h),
        Some(any_value::Value::IntValue(i)) => (3u8, i).hash(h),
        Some(any_value::Value::DoubleValue(d)) => (4u8, d.to_bits()).hash(h),
        Some(any_value::Value::BytesValue(b)) => (5u8, b).hash(h),
        Some(any_value::Value::ArrayValue(a)) => {
            6u8.hash(h);
            for v in &a.values {
                hash_any_value(Some(v), h);
            }
        }
        Some(any_value::Value::KvlistValue(kv)) => (7u8, attributes_hash(&kv.values)).hash(h),
        #[allow(unreachable_patterns)]
        Some(_) => 8u8.hash(h),
    }
}

#[cfg(test)]
mod tests;
