//! The live status page at `/` of the `zpages` extension, and the JSON it polls at
//! [`API_STATUS`] every 2 s: the pipeline graph, live counts and rates per component (from
//! the self-telemetry registry, the numbers `/metrics` shows), and the memory picture
//! (working set vs limit, trend, time to limit, PSI, leak suspects, Go runtime fit findings
//! with their fix, burn rates).
//!
//! The page is hand-written HTML, CSS and JavaScript compiled into the binary
//! (`include_str!`), drawing inline SVG: no external asset, no build step. Rates and their
//! sparklines come from a bounded ring of registry samples ([`History`]: one sample every
//! [`SAMPLE_INTERVAL`], [`HISTORY_LEN`] of them = 15 minutes), taken by a task that runs
//! with the server.
//!
//! Must never: hold the history lock while reading the registry or building the JSON of
//! the picture, or keep more than [`HISTORY_LEN`] samples (memory stays bounded however long
//! oxcol runs). Every text reaches the page as JSON and is put in the DOM as text, never
//! as markup.

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::pages::{Counts, component_counts, nav_links};
use super::{ComponentView, PipelineView, State, Topology};

/// Where the page polls its data.
pub(crate) const API_STATUS: &str = "/api/status";

/// How often the registry is sampled for rates and sparklines.
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

/// Samples kept: 15 minutes at [`SAMPLE_INTERVAL`].
pub(crate) const HISTORY_LEN: usize = 90;

/// A rate "now" is measured over at least this long (a sample taken just before the
/// request would give a noisy rate over a fraction of a second).
const MIN_RATE_SPAN: Duration = Duration::from_secs(2);

const HTML: &str = include_str!("index.html");
const CSS: &str = include_str!("status.css");
const JS: &str = include_str!("status.js");

/// Bytes of the page's assets compiled into the binary.
#[cfg(test)]
pub(crate) const ASSET_BYTES: usize = HTML.len() + CSS.len() + JS.len();

/// Counts that are levels, not running totals: shown as they are, never as a rate.
fn is_gauge(label: &str) -> bool {
    matches!(label, "queue size" | "queue capacity")
}

/// One row of the page: a component where one pipeline names it, with its counts now.
struct Row<'a> {
    pipeline: &'a PipelineView,
    stage: &'static str,
    component: &'a ComponentView,
    counts: Vec<(&'static str, Option<f64>)>,
}

/// Every component of every pipeline in page order (pipelines in config order, then
/// receivers, processors, exporters), with its counts read from `counts`. The topology is
/// fixed while the server runs, so the flattened order of the values is too.
fn rows<'a>(topology: &'a Topology, counts: &Counts) -> Vec<Row<'a>> {
    let mut out = Vec::new();
    for pipeline in &topology.pipelines {
        for (stage, list) in [
            ("receivers", &pipeline.receivers),
            ("processors", &pipeline.processors),
            ("exporters", &pipeline.exporters),
        ] {
            for component in list {
                out.push(Row {
                    pipeline,
                    stage,
                    component,
                    counts: component_counts(counts, pipeline, stage, component),
                });
            }
        }
    }
    out
}

/// The values of `rows` flattened in order, then oxcol's resident bytes last.
fn flatten(rows: &[Row<'_>], resident_bytes: Option<u64>) -> Vec<Option<f64>> {
    rows.iter()
        .flat_map(|row| row.counts.iter().map(|(_, value)| *value))
        .chain([resident_bytes.map(|b| b as f64)])
        .collect()
}

/// One reading of every series of the page.
#[derive(Clone, Debug)]
struct Sample {
    at: Instant,
    values: Vec<Option<f64>>,
}

/// The last [`HISTORY_LEN`] samples, oldest first.
#[derive(Debug)]
pub(crate) struct History {
    capacity: usize,
    samples: VecDeque<Sample>,
}

impl History {
    pub(crate) fn new(capacity: usize) -> History {
        History {
            capacity: capacity.max(2),
            samples: VecDeque::with_capacity(capacity.max(2)),
        }
    }

    /// Adds a sample, dropping the oldest beyond the capacity.
    fn record(&mut self, at: Instant, values: Vec<Option<f64>>) {
        while self.samples.len() >= self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample { at, values });
    }

    /// The newest sample taken at least [`MIN_RATE_SPAN`] before `now`.
    fn reference(&self, now: Instant) -> Option<&Sample> {
        self.samples
            .iter()
            .rev()
            .find(|s| now.saturating_duration_since(s.at) >= MIN_RATE_SPAN)
    }

    /// Per-second rate of series `index` between consecutive samples, oldest first
    /// (`None` where a value is missing or went down: a restart, not a negative rate).
    fn rates(&self, index: usize) -> Vec<Option<f64>> {
        self.samples
            .iter()
            .zip(self.samples.iter().skip(1))
            .map(|(before, after)| {
                rate(before, after.at, after.values.get(index)?.as_ref()?, index)
            })
            .collect()
    }

    /// Values of series `index`, oldest first.
    fn values(&self, index: usize) -> Vec<Option<f64>> {
        self.samples
            .iter()
            .map(|s| s.values.get(index).copied().flatten())
            .collect()
    }
}

/// Per-second rate from `before`'s value of series `index` to `value` at `at`.
fn rate(before: &Sample, at: Instant, value: &f64, index: usize) -> Option<f64> {
    let seconds = at.checked_duration_since(before.at)?.as_secs_f64();
    let previous = before.values.get(index).copied().flatten()?;
    (seconds > 0.0 && *value >= previous).then(|| (value - previous) / seconds)
}

/// Reads the registry into the history; called every [`SAMPLE_INTERVAL`].
pub(crate) fn sample(state: &State) {
    let counts = Counts::read(state);
    let values = flatten(
        &rows(&state.topology, &counts),
        oxcol_core::process::resident_bytes(),
    );
    let at = Instant::now();
    state
        .history
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .record(at, values);
}

/// Samples the registry every [`SAMPLE_INTERVAL`] until `shutdown`.
pub(crate) async fn sample_until(
    state: std::sync::Arc<State>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => sample(&state),
        }
    }
}

#[derive(Serialize)]
struct CountJson {
    name: &'static str,
    value: Option<f64>,
    /// Per second, over the time since the newest sample at least 2 s old.
    rate: Option<f64>,
    gauge: bool,
}

#[derive(Serialize)]
struct ComponentJson<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    type_name: &'a str,
    kind: &'static str,
    counts: Vec<CountJson>,
    /// Name of the count the sparkline shows (the first: accepted, incoming, sent,
    /// produced or consumed).
    spark_of: &'static str,
    /// Per-second rate of `spark_of` per sample interval, oldest first.
    spark: Vec<Option<f64>>,
    /// queue size / queue capacity, for exporters.
    queue_fill: Option<f64>,
}

#[derive(Serialize)]
struct PipelineJson<'a> {
    id: &'a str,
    signal: &'static str,
    receivers: Vec<ComponentJson<'a>>,
    processors: Vec<ComponentJson<'a>>,
    exporters: Vec<ComponentJson<'a>>,
}

#[derive(Serialize)]
struct ProcessJson {
    resident_bytes: Option<u64>,
    allocated_bytes: Option<usize>,
    /// Resident bytes per sample interval, oldest first.
    resident_spark: Vec<Option<f64>>,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    version: &'static str,
    uptime_seconds: f64,
    sample_interval_seconds: u64,
    process: ProcessJson,
    pipelines: Vec<PipelineJson<'a>>,
    /// `null` when the service gave the page no picture.
    picture: Option<crate::picture::Picture>,
}

/// The JSON of [`API_STATUS`] at `now`.
pub(crate) fn status_json(state: &State, now: Instant) -> String {
    let counts = Counts::read(state);
    let rows = rows(&state.topology, &counts);
    let resident_bytes = oxcol_core::process::resident_bytes();
    let current = flatten(&rows, resident_bytes);
    let history = state
        .history
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let reference = history.reference(now);
    let mut pipelines: Vec<PipelineJson<'_>> = Vec::new();
    let mut index = 0;
    for row in &rows {
        let first = index;
        let mut counts_json = Vec::with_capacity(row.counts.len());
        for (name, value) in &row.counts {
            let gauge = is_gauge(name);
            let rate = match (gauge, value, reference) {
                (false, Some(value), Some(before)) => rate(before, now, value, index),
                _ => None,
            };
            counts_json.push(CountJson {
                name,
                value: *value,
                rate,
                gauge,
            });
            index += 1;
        }
        let by_name = |wanted: &str| {
            row.counts
                .iter()
                .find(|(name, _)| *name == wanted)
                .and_then(|(_, v)| *v)
        };
        let queue_fill = match (by_name("queue size"), by_name("queue capacity")) {
            (Some(size), Some(capacity)) if capacity > 0.0 => Some(size / capacity),
            _ => None,
        };
        let component = ComponentJson {
            id: &row.component.id,
            type_name: &row.component.type_name,
            kind: row.component.role.name(),
            spark_of: row.counts.first().map_or("", |(name, _)| name),
            spark: history.rates(first),
            counts: counts_json,
            queue_fill,
        };
        if pipelines.last().is_none_or(|p| p.id != row.pipeline.id) {
            pipelines.push(PipelineJson {
                id: &row.pipeline.id,
                signal: row.pipeline.signal.name(),
                receivers: Vec::new(),
                processors: Vec::new(),
                exporters: Vec::new(),
            });
        }
        if let Some(pipeline) = pipelines.last_mut() {
            match row.stage {
                "receivers" => pipeline.receivers.push(component),
                "processors" => pipeline.processors.push(component),
                _ => pipeline.exporters.push(component),
            }
        }
    }
    // Pipelines without components (none pass validation, but the page must not lose them).
    for pipeline in &state.topology.pipelines {
        if !pipelines.iter().any(|p| p.id == pipeline.id) {
            pipelines.push(PipelineJson {
                id: &pipeline.id,
                signal: pipeline.signal.name(),
                receivers: Vec::new(),
                processors: Vec::new(),
                exporters: Vec::new(),
            });
        }
    }
    let process = ProcessJson {
        resident_bytes,
        allocated_bytes: oxcol_core::process::allocated_bytes(),
        resident_spark: history.values(current.len().saturating_sub(1)),
    };
    drop(history);
    let status = StatusJson {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started_at.elapsed().as_secs_f64(),
        sample_interval_seconds: SAMPLE_INTERVAL.as_secs(),
        process,
        pipelines,
        picture: state
            .picture
            .as_ref()
            .map(crate::picture::PictureHandle::snapshot),
    };
    serde_json::to_string(&status).unwrap_or_else(|error| {
        tracing::warn!(%error, "zpages: cannot encode the status JSON");
        "{}".to_string()
    })
}

/// `/`: the status page. The HTML, CSS and script are static; only the navigation
/// (which pages exist) is filled in.
pub fn index(state: &State) -> String {
    let mut out = String::with_capacity(HTML.len() + CSS.len() + JS.len() + 512);
    let nav = nav_links(state);
    for (i, part) in HTML.split("<!--@@").enumerate() {
        if i == 0 {
            out.push_str(part);
            continue;
        }
        let (name, rest) = part.split_once("@@-->").unwrap_or(("", part));
        match name {
            "CSS" => out.push_str(CSS),
            "JS" => out.push_str(JS),
            "NAV" => out.push_str(&nav),
            "API" => out.push_str(API_STATUS),
            _ => {}
        }
        out.push_str(rest);
    }
    out
}
