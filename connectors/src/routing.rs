//! The `routing` connector (same signal in and out), as the Collector's `routingconnector`
//! (checked against contrib v0.148.0, docs/oracle.md): the routes of `table` are tried in
//! order, each on what the earlier `move` routes left; a route takes the resources (or spans,
//! log records, metrics or data points, per its `context`) its OTTL condition matches and
//! sends them to its pipelines, removing them from the rest (`action: move`, the default)
//! or leaving them for later routes too (`action: copy`). What is left at the end goes to
//! `default_pipelines` (dropped when there are none).
//!
//! Conditions are parsed once at start (`oxcol_ottl`). A condition that fails to evaluate
//! refuses the whole batch as unavailable (nothing is sent) with `error_mode: propagate`
//! (the default); with `ignore` it is logged and counts as "no match"; with `silent` it
//! counts as "no match" quietly.

use std::time::SystemTime;

use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, Gauge, Histogram, Metric, ResourceMetrics, ScopeMetrics, Sum, Summary,
    metric,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use oxcol_core::{Batch, Refusal, Signal};
use oxcol_ottl::{Condition, ContextKind, DataPointRef, ErrorMode, Item};
use serde::Deserialize;

use crate::helper::connector::{Connector, Output};

pub const TYPE: &str = "routing";
pub const ALIASES: &[&str] = &["routing"];
pub const PAIRS: &[(Signal, Signal)] = &[
    (Signal::Metrics, Signal::Metrics),
    (Signal::Traces, Signal::Traces),
    (Signal::Logs, Signal::Logs),
];

/// One route: a condition (or a `route() where <condition>` statement) and its pipelines.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Route {
    pub context: Option<String>,
    pub condition: Option<String>,
    pub statement: Option<String>,
    /// `move` (default) or `copy`.
    pub action: Option<String>,
    pub pipelines: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub table: Vec<Route>,
    pub default_pipelines: Vec<String>,
    pub error_mode: ErrorMode,
}

const CONTEXTS: &[ContextKind] = &[
    ContextKind::Resource,
    ContextKind::Span,
    ContextKind::Metric,
    ContextKind::DataPoint,
    ContextKind::Log,
];

impl Route {
    fn context(&self) -> Result<ContextKind, String> {
        match self.context.as_deref() {
            None => Ok(ContextKind::Resource),
            Some("request") => Err("context \"request\" (request headers) is not supported by oxcol; use resource, span, metric, datapoint or log".to_string()),
            Some(name) => ContextKind::parse(name).filter(|c| CONTEXTS.contains(c)).ok_or_else(|| format!("unknown context {name:?}; use resource, span, metric, datapoint or log")),
        }
    }

    /// The condition text: `condition`, or the `where` clause of `route() where ...`
    /// (`None`: `route()` alone, which matches everything).
    fn condition_text(&self) -> Result<Option<&str>, String> {
        match (&self.condition, &self.statement) {
            (Some(_), Some(_)) => {
                Err("set either `condition` or `statement`, not both".to_string())
            }
            (None, None) => {
                Err("set `condition` or `statement` (route() where <condition>)".to_string())
            }
            (Some(condition), None) => Ok(Some(condition.as_str())),
            (None, Some(statement)) => {
                let rest = statement.trim().strip_prefix("route()").ok_or_else(|| format!("statement {statement:?}: a routing statement is `route() where <condition>`"))?.trim_start();
                if rest.is_empty() {
                    return Ok(None);
                }
                rest.strip_prefix("where").filter(|c| c.starts_with(char::is_whitespace)).map(|c| Some(c.trim())).ok_or_else(|| format!("statement {statement:?}: a routing statement is `route() where <condition>`"))
            }
        }
    }

    /// Whether matched data stays for later routes (`action: copy`).
    fn copies(&self) -> Result<bool, String> {
        match self.action.as_deref() {
            None | Some("move") => Ok(false),
            Some("copy") => Ok(true),
            Some(other) => Err(format!("action {other:?}: use move or copy")),
        }
    }

    /// What makes two routes the same to the Collector (context and statement, a condition
    /// written as `route() where <condition>`): a later duplicate is ignored.
    fn key(&self) -> (String, String) {
        let context = match self.context.as_deref() {
            None | Some("resource") => String::new(),
            Some(other) => other.to_string(),
        };
        let statement = match (&self.condition, &self.statement) {
            (Some(condition), _) => format!("route() where {condition}"),
            (None, Some(statement)) => statement.clone(),
            (None, None) => String::new(),
        };
        (context, statement)
    }

    fn parse(&self) -> Result<(ContextKind, Option<Condition>), String> {
        self.copies()?;
        let context = self.context()?;
        let condition = match self.condition_text()? {
            None => None,
            Some(text) => Some(
                oxcol_ottl::parse_condition(text, context)
                    .map_err(|e| format!("condition {text:?}: {e}"))?,
            ),
        };
        Ok((context, condition))
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.table.is_empty() {
            problems.push(
                "table is empty: add at least one route (condition or statement, and pipelines)"
                    .to_string(),
            );
        }
        for (index, route) in self.table.iter().enumerate() {
            if let Err(problem) = route.parse() {
                problems.push(format!("table[{index}]: {problem}"));
            }
            if route.pipelines.is_empty() {
                problems.push(format!(
                    "table[{index}]: pipelines is empty; name the pipelines this route sends to"
                ));
            }
        }
        problems
    }

    /// Every pipeline a route or the default names.
    pub fn pipelines(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self
            .table
            .iter()
            .flat_map(|r| r.pipelines.iter())
            .chain(&self.default_pipelines)
            .map(String::as_str)
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

struct ParsedRoute {
    context: ContextKind,
    condition: Option<Condition>,
    copies: bool,
    pipelines: Vec<String>,
}

pub struct RoutingConnector {
    id: String,
    routes: Vec<ParsedRoute>,
    default_pipelines: Vec<String>,
    error_mode: ErrorMode,
}

/// Whether a route's context reads items of `signal` (`resource` reads every signal).
fn fits(context: ContextKind, signal: Signal) -> bool {
    match context {
        ContextKind::Resource => true,
        ContextKind::Span => signal == Signal::Traces,
        ContextKind::Metric | ContextKind::DataPoint => signal == Signal::Metrics,
        ContextKind::Log => signal == Signal::Logs,
        _ => false,
    }
}

impl RoutingConnector {
    /// Keeps the routes that read `signal`: like the Collector, a `span` route in a
    /// connector that also routes logs matches no log (one config serves every signal).
    /// A later route with the same context and statement as an earlier one is ignored, as
    /// the Collector ignores it (with a warning).
    pub fn new(id: &str, config: &Config, signal: Signal) -> Result<RoutingConnector, String> {
        let mut routes = Vec::new();
        let mut seen = Vec::new();
        for (index, route) in config.table.iter().enumerate() {
            let (context, condition) = route.parse().map_err(|e| format!("table[{index}]: {e}"))?;
            let copies = route.copies().map_err(|e| format!("table[{index}]: {e}"))?;
            let key = route.key();
            if seen.contains(&key) {
                tracing::warn!(connector = %id, route = index, "a route with the same context and statement is earlier in the table; this one is ignored");
                continue;
            }
            seen.push(key);
            if !fits(context, signal) {
                continue;
            }
            routes.push(ParsedRoute {
                context,
                condition,
                copies,
                pipelines: route.pipelines.clone(),
            });
        }
        Ok(RoutingConnector {
            id: id.to_string(),
            routes,
            default_pipelines: config.default_pipelines.clone(),
            error_mode: config.error_mode,
        })
    }

    /// Runs every route in table order over what is left, then sends the rest to the
    /// default pipelines. A failed condition follows `error_mode` once per route: with
    /// `propagate` the whole batch is refused and nothing is sent.
    fn route<R: Routed>(
        &self,
        mut left: Vec<R>,
        make: fn(Vec<R>) -> Batch,
    ) -> Result<Vec<Output>, Refusal> {
        let mut outputs = Vec::new();
        for route in &self.routes {
            if left.is_empty() {
                break;
            }
            let mut failure = None;
            let mut matches = |item: &Item<'_>| match &route.condition {
                None => true,
                Some(condition) => match condition.matches(item) {
                    Ok(matched) => matched,
                    Err(error) => {
                        failure.get_or_insert(error);
                        false
                    }
                },
            };
            let matched = match route.context {
                ContextKind::Resource => take_resources(&mut left, route.copies, &mut matches),
                ContextKind::DataPoint => R::take_points(&mut left, route.copies, &mut matches),
                _ => take_records(&mut left, route.copies, &mut matches),
            };
            if let Some(error) = failure {
                match self.error_mode {
                    // As the Collector, whose OTTL error is not permanent: its receivers
                    // answer "unavailable" (gRPC UNAVAILABLE) and clients retry.
                    ErrorMode::Propagate => {
                        return Err(Refusal::Unavailable {
                            reason: format!("routing {:?}: {error}", self.id),
                        });
                    }
                    ErrorMode::Ignore => {
                        tracing::warn!(connector = %self.id, %error, "routing condition failed; treated as not matching")
                    }
                    ErrorMode::Silent => {}
                }
            }
            if !matched.is_empty() {
                outputs.push(Output {
                    pipelines: Some(route.pipelines.clone()),
                    batch: make(matched),
                });
            }
        }
        if !left.is_empty() && !self.default_pipelines.is_empty() {
            outputs.push(Output {
                pipelines: Some(self.default_pipelines.clone()),
                batch: make(left),
            });
        }
        Ok(outputs)
    }
}

/// The resources `matches` accepts: moved out of `left`, or cloned with `copy`.
fn take_resources<R: Routed>(
    left: &mut Vec<R>,
    copy: bool,
    matches: &mut dyn FnMut(&Item<'_>) -> bool,
) -> Vec<R> {
    let mut matched = Vec::new();
    let mut kept = Vec::with_capacity(left.len());
    for resource in std::mem::take(left) {
        let hit = matches(&Item::Resource {
            resource: resource.resource(),
        });
        match (hit, copy) {
            (true, true) => {
                matched.push(resource.clone());
                kept.push(resource);
            }
            (true, false) => matched.push(resource),
            (false, _) => kept.push(resource),
        }
    }
    *left = kept;
    matched
}

/// The records (spans, log records, metrics) `matches` accepts, each under a copy of its
/// resource and scope (made once per resource and scope that has a match). With move, a
/// scope left without records and a resource left without scopes are removed, even when
/// they had none to begin with, as the Collector's `RemoveIf` passes do.
fn take_records<R: Routed>(
    left: &mut Vec<R>,
    copy: bool,
    matches: &mut dyn FnMut(&Item<'_>) -> bool,
) -> Vec<R> {
    let mut matched = Vec::new();
    for resource in left.iter_mut() {
        let mut scopes = std::mem::take(resource.scoped());
        let mut resource_copy: Option<R> = None;
        for scope in &mut scopes {
            let records = std::mem::take(R::records_mut(scope));
            let mut scope_copy: Option<R::Scoped> = None;
            let mut kept = Vec::with_capacity(records.len());
            for record in records {
                let hit = matches(&R::item(resource, scope, &record));
                if !hit {
                    kept.push(record);
                    continue;
                }
                let target = scope_copy.get_or_insert_with(|| R::empty_like(scope));
                if copy {
                    R::records_mut(target).push(record.clone());
                    kept.push(record);
                } else {
                    R::records_mut(target).push(record);
                }
            }
            *R::records_mut(scope) = kept;
            if let Some(scope_copy) = scope_copy {
                resource_copy
                    .get_or_insert_with(|| resource.without_scopes())
                    .scoped()
                    .push(scope_copy);
            }
        }
        if !copy {
            scopes.retain(|scope| !R::records_of(scope).is_empty());
        }
        *resource.scoped() = scopes;
        matched.extend(resource_copy);
    }
    if !copy {
        left.retain_mut(|resource| !resource.scoped().is_empty());
    }
    matched
}

/// The data points `matches` accepts (metrics only), each under a copy of its resource,
/// scope and metric. The metric copy has the name, description, unit, type, temporality
/// and monotonicity but not the `metadata`, as the Collector's copy. With move, a metric
/// left without points (of a known type), a scope without metrics and a resource without
/// scopes are removed.
fn take_data_points(
    left: &mut Vec<ResourceMetrics>,
    copy: bool,
    matches: &mut dyn FnMut(&Item<'_>) -> bool,
) -> Vec<ResourceMetrics> {
    let mut matched = Vec::new();
    for resource in left.iter_mut() {
        let mut resource_copy: Option<ResourceMetrics> = None;
        let bare_resource = resource.without_scopes();
        for scope in &mut resource.scope_metrics {
            let bare_scope = ScopeMetrics::empty_like(scope);
            let mut scope_copy: Option<ScopeMetrics> = None;
            for metric in &mut scope.metrics {
                let hits: Vec<bool> = DataPointRef::of_metric(metric)
                    .into_iter()
                    .map(|point| {
                        matches(&Item::DataPoint {
                            resource: resource.resource.as_ref(),
                            scope: scope.scope.as_ref(),
                            metric,
                            point,
                        })
                    })
                    .collect();
                if let Some(metric_copy) = split_points(metric, &hits, copy) {
                    scope_copy
                        .get_or_insert_with(|| bare_scope.clone())
                        .metrics
                        .push(metric_copy);
                }
            }
            if let Some(scope_copy) = scope_copy {
                resource_copy
                    .get_or_insert_with(|| bare_resource.clone())
                    .scope_metrics
                    .push(scope_copy);
            }
            if !copy {
                scope.metrics.retain(|metric| !metric_emptied(metric));
            }
        }
        if !copy {
            resource
                .scope_metrics
                .retain(|scope| !scope.metrics.is_empty());
        }
        matched.extend(resource_copy);
    }
    if !copy {
        left.retain(|resource| !resource.scope_metrics.is_empty());
    }
    matched
}

/// A metric of a known type without data points (the Collector removes it after a move).
fn metric_emptied(metric: &Metric) -> bool {
    metric.data.is_some() && DataPointRef::of_metric(metric).is_empty()
}

/// Moves (or clones, with `copy`) the points of `metric` whose `hits` entry is true into a
/// copy of the metric; `None` when no point matched.
fn split_points(metric: &mut Metric, hits: &[bool], copy: bool) -> Option<Metric> {
    if !hits.contains(&true) {
        return None;
    }
    fn part<P: Clone>(points: &mut Vec<P>, hits: &[bool], copy: bool) -> Vec<P> {
        let mut taken = Vec::new();
        let mut kept = Vec::with_capacity(points.len());
        for (point, hit) in std::mem::take(points).into_iter().zip(hits) {
            match (hit, copy) {
                (true, true) => {
                    taken.push(point.clone());
                    kept.push(point);
                }
                (true, false) => taken.push(point),
                (false, _) => kept.push(point),
            }
        }
        *points = kept;
        taken
    }
    let data = match metric.data.as_mut()? {
        metric::Data::Gauge(g) => metric::Data::Gauge(Gauge {
            data_points: part(&mut g.data_points, hits, copy),
        }),
        metric::Data::Sum(s) => metric::Data::Sum(Sum {
            data_points: part(&mut s.data_points, hits, copy),
            aggregation_temporality: s.aggregation_temporality,
            is_monotonic: s.is_monotonic,
        }),
        metric::Data::Histogram(h) => metric::Data::Histogram(Histogram {
            data_points: part(&mut h.data_points, hits, copy),
            aggregation_temporality: h.aggregation_temporality,
        }),
        metric::Data::ExponentialHistogram(h) => {
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: part(&mut h.data_points, hits, copy),
                aggregation_temporality: h.aggregation_temporality,
            })
        }
        metric::Data::Summary(s) => metric::Data::Summary(Summary {
            data_points: part(&mut s.data_points, hits, copy),
        }),
    };
    Some(Metric {
        name: metric.name.clone(),
        description: metric.description.clone(),
        unit: metric.unit.clone(),
        metadata: Vec::new(),
        data: Some(data),
    })
}

/// One signal's OTLP tree (resource, scope, record) as the routing connector splits it.
trait Routed: Clone + Sized {
    type Scoped: EmptyLike;
    type Record: Clone;
    fn resource(&self) -> Option<&Resource>;
    fn scoped(&mut self) -> &mut Vec<Self::Scoped>;
    /// The resource and schema URL without any scope.
    fn without_scopes(&self) -> Self;
    fn records_of(scoped: &Self::Scoped) -> &[Self::Record];
    fn records_mut(scoped: &mut Self::Scoped) -> &mut Vec<Self::Record>;
    fn empty_like(scoped: &Self::Scoped) -> Self::Scoped {
        Self::Scoped::empty_like(scoped)
    }
    /// The OTTL item of a record in its resource and scope.
    fn item<'a>(resource: &'a Self, scoped: &'a Self::Scoped, record: &'a Self::Record)
    -> Item<'a>;
    /// Data point routes: only metrics have data points; other signals never get such a
    /// route (`fits`), so they take nothing.
    fn take_points(
        _left: &mut Vec<Self>,
        _copy: bool,
        _matches: &mut dyn FnMut(&Item<'_>) -> bool,
    ) -> Vec<Self> {
        Vec::new()
    }
}

/// A scope (with its schema URL) without its records.
trait EmptyLike {
    fn empty_like(scoped: &Self) -> Self;
}

impl EmptyLike for ScopeSpans {
    fn empty_like(scoped: &ScopeSpans) -> ScopeSpans {
        ScopeSpans {
            spans: Vec::new(),
            scope: scoped.scope.clone(),
            schema_url: scoped.schema_url.clone(),
        }
    }
}

impl EmptyLike for ScopeLogs {
    fn empty_like(scoped: &ScopeLogs) -> ScopeLogs {
        ScopeLogs {
            log_records: Vec::new(),
            scope: scoped.scope.clone(),
            schema_url: scoped.schema_url.clone(),
        }
    }
}

impl EmptyLike for ScopeMetrics {
    fn empty_like(scoped: &ScopeMetrics) -> ScopeMetrics {
        ScopeMetrics {
            metrics: Vec::new(),
            scope: scoped.scope.clone(),
            schema_url: scoped.schema_url.clone(),
        }
    }
}

impl Routed for ResourceSpans {
    type Scoped = ScopeSpans;
    type Record = Span;
    fn resource(&self) -> Option<&Resource> {
        self.resource.as_ref()
    }
    fn scoped(&mut self) -> &mut Vec<ScopeSpans> {
        &mut self.scope_spans
    }
    fn without_scopes(&self) -> ResourceSpans {
        ResourceSpans {
            resource: self.resource.clone(),
            scope_spans: Vec::new(),
            schema_url: self.schema_url.clone(),
        }
    }
    fn records_of(scoped: &ScopeSpans) -> &[Span] {
        &scoped.spans
    }
    fn records_mut(scoped: &mut ScopeSpans) -> &mut Vec<Span> {
        &mut scoped.spans
    }
    fn item<'a>(resource: &'a Self, scoped: &'a ScopeSpans, span: &'a Span) -> Item<'a> {
        Item::Span {
            resource: resource.resource.as_ref(),
            scope: scoped.scope.as_ref(),
            span,
        }
    }
}

impl Routed for ResourceLogs {
    type Scoped = ScopeLogs;
    type Record = LogRecord;
    fn resource(&self) -> Option<&Resource> {
        self.resource.as_ref()
    }
    fn scoped(&mut self) -> &mut Vec<ScopeLogs> {
        &mut self.scope_logs
    }
    fn without_scopes(&self) -> ResourceLogs {
        ResourceLogs {
            resource: self.resource.clone(),
            scope_logs: Vec::new(),
            schema_url: self.schema_url.clone(),
        }
    }
    fn records_of(scoped: &ScopeLogs) -> &[LogRecord] {
        &scoped.log_records
    }
    fn records_mut(scoped: &mut ScopeLogs) -> &mut Vec<LogRecord> {
        &mut scoped.log_records
    }
    fn item<'a>(resource: &'a Self, scoped: &'a ScopeLogs, log: &'a LogRecord) -> Item<'a> {
        Item::Log {
            resource: resource.resource.as_ref(),
            scope: scoped.scope.as_ref(),
            log,
        }
    }
}

impl Routed for ResourceMetrics {
    type Scoped = ScopeMetrics;
    type Record = Metric;
    fn resource(&self) -> Option<&Resource> {
        self.resource.as_ref()
    }
    fn scoped(&mut self) -> &mut Vec<ScopeMetrics> {
        &mut self.scope_metrics
    }
    fn without_scopes(&self) -> ResourceMetrics {
        ResourceMetrics {
            resource: self.resource.clone(),
            scope_metrics: Vec::new(),
            schema_url: self.schema_url.clone(),
        }
    }
    fn records_of(scoped: &ScopeMetrics) -> &[Metric] {
        &scoped.metrics
    }
    fn records_mut(scoped: &mut ScopeMetrics) -> &mut Vec<Metric> {
        &mut scoped.metrics
    }
    fn item<'a>(resource: &'a Self, scoped: &'a ScopeMetrics, metric: &'a Metric) -> Item<'a> {
        Item::Metric {
            resource: resource.resource.as_ref(),
            scope: scoped.scope.as_ref(),
            metric,
        }
    }
    fn take_points(
        left: &mut Vec<ResourceMetrics>,
        copy: bool,
        matches: &mut dyn FnMut(&Item<'_>) -> bool,
    ) -> Vec<ResourceMetrics> {
        take_data_points(left, copy, matches)
    }
}

impl Connector for RoutingConnector {
    fn consume(&mut self, mut batch: Batch, _now: SystemTime) -> Result<Vec<Output>, Refusal> {
        let invalid = |e: oxcol_core::batch::BatchError| Refusal::Invalid {
            reason: e.to_string(),
        };
        match batch.signal() {
            Signal::Traces => {
                let data = std::mem::take(batch.traces_mut().map_err(invalid)?);
                self.route(data, Batch::from_traces)
            }
            Signal::Logs => {
                let data = std::mem::take(batch.logs_mut().map_err(invalid)?);
                self.route(data, Batch::from_logs)
            }
            Signal::Metrics => {
                let data = std::mem::take(batch.metrics_mut().map_err(invalid)?);
                self.route(data, Batch::from_metrics)
            }
        }
    }
}

#[cfg(test)]
mod tests;
