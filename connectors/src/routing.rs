//! The `routing` connector (same signal in and out): sends each resource (or span, log
//! record, metric or data point, per the route's `context`) to the pipelines of the first
//! route of `table` whose OTTL condition matches it, and what no route matched to
//! `default_pipelines` (dropped when there are none), as the Collector's
//! `routingconnector` does since `match_once` was removed.
//!
//! Conditions are parsed once at start (`oxcol_ottl`). A condition that fails to evaluate
//! fails the batch with `error_mode: propagate` (the default); with `ignore` it is logged
//! and counts as "no match"; with `silent` it counts as "no match" quietly.

use std::collections::BTreeMap;
use std::time::SystemTime;

use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics, metric};
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

    fn parse(&self) -> Result<(ContextKind, Option<Condition>), String> {
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
    pipelines: Vec<String>,
}

pub struct RoutingConnector {
    id: String,
    routes: Vec<ParsedRoute>,
    default_pipelines: Vec<String>,
    error_mode: ErrorMode,
}

impl RoutingConnector {
    /// Fails when a route's context does not fit `signal` (a span condition on logs).
    pub fn new(id: &str, config: &Config, signal: Signal) -> Result<RoutingConnector, String> {
        let mut routes = Vec::new();
        for (index, route) in config.table.iter().enumerate() {
            let (context, condition) = route.parse().map_err(|e| format!("table[{index}]: {e}"))?;
            let fits = match context {
                ContextKind::Resource => true,
                ContextKind::Span => signal == Signal::Traces,
                ContextKind::Metric | ContextKind::DataPoint => signal == Signal::Metrics,
                ContextKind::Log => signal == Signal::Logs,
                _ => false,
            };
            if !fits {
                return Err(format!(
                    "table[{index}]: context {context} cannot route {signal}; use resource or the {signal} item context"
                ));
            }
            routes.push(ParsedRoute {
                context,
                condition,
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

    /// The route index for an item (`routes.len()`: the default), trying only routes of
    /// `context`; an evaluation error follows `error_mode`.
    fn pick(&self, context: ContextKind, item: &Item<'_>) -> Result<Option<usize>, Refusal> {
        for (index, route) in self
            .routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.context == context)
        {
            let matched = match &route.condition {
                None => Ok(true),
                Some(condition) => condition.matches(item),
            };
            match matched {
                Ok(true) => return Ok(Some(index)),
                Ok(false) => {}
                Err(error) => match self.error_mode {
                    ErrorMode::Propagate => {
                        return Err(Refusal::Invalid {
                            reason: format!("routing {:?}: {error}", self.id),
                        });
                    }
                    ErrorMode::Ignore => {
                        tracing::warn!(connector = %self.id, %error, "routing condition failed; treated as not matching")
                    }
                    ErrorMode::Silent => {}
                },
            }
        }
        Ok(None)
    }

    fn has(&self, context: ContextKind) -> bool {
        self.routes.iter().any(|r| r.context == context)
    }

    fn default_route(&self) -> usize {
        self.routes.len()
    }

    fn outputs<T>(
        &self,
        groups: BTreeMap<usize, Vec<T>>,
        make: fn(Vec<T>) -> Batch,
    ) -> Vec<Output> {
        groups
            .into_iter()
            .filter_map(|(route, data)| {
                let pipelines = match self.routes.get(route) {
                    Some(r) => r.pipelines.clone(),
                    None if self.default_pipelines.is_empty() => return None,
                    None => self.default_pipelines.clone(),
                };
                Some(Output {
                    pipelines: Some(pipelines),
                    batch: make(data),
                })
            })
            .collect()
    }

    /// Routes each resource whole when a resource route matches, else each record (span,
    /// log record, metric or data point): every route gets a copy of the resource and
    /// scope with its records.
    fn route<R: Routed>(
        &self,
        resources: Vec<R>,
        make: fn(Vec<R>) -> Batch,
    ) -> Result<Vec<Output>, Refusal> {
        let mut groups: BTreeMap<usize, Vec<R>> = BTreeMap::new();
        for mut resource in resources {
            if let Some(route) = self.pick(
                ContextKind::Resource,
                &Item::Resource {
                    resource: resource.resource(),
                },
            )? {
                groups.entry(route).or_default().push(resource);
                continue;
            }
            if !R::per_record(self) {
                groups
                    .entry(self.default_route())
                    .or_default()
                    .push(resource);
                continue;
            }
            let mut split: BTreeMap<usize, R> = BTreeMap::new();
            for scope in std::mem::take(resource.scoped()) {
                let mut by_route: BTreeMap<usize, R::Scoped> = BTreeMap::new();
                for record in R::records(&scope) {
                    for (route, piece) in R::route_record(self, &resource, &scope, record)? {
                        R::records_mut(
                            by_route
                                .entry(route)
                                .or_insert_with(|| R::empty_like(&scope)),
                        )
                        .push(piece);
                    }
                }
                for (route, scope) in by_route {
                    split
                        .entry(route)
                        .or_insert_with(|| resource.clone())
                        .scoped()
                        .push(scope);
                }
            }
            for (route, resource) in split {
                groups.entry(route).or_default().push(resource);
            }
        }
        Ok(self.outputs(groups, make))
    }

    /// Routes each data point of `metric`; every route gets a copy of the metric with its points.
    fn split_points(
        &self,
        resource: &ResourceMetrics,
        scope: &ScopeMetrics,
        metric: &Metric,
    ) -> Result<Vec<(usize, Metric)>, Refusal> {
        let default = self.default_route();
        let mut out: BTreeMap<usize, Metric> = BTreeMap::new();
        let empty_like = |metric: &Metric| {
            let mut copy = metric.clone();
            match &mut copy.data {
                Some(metric::Data::Gauge(g)) => g.data_points.clear(),
                Some(metric::Data::Sum(s)) => s.data_points.clear(),
                Some(metric::Data::Histogram(h)) => h.data_points.clear(),
                Some(metric::Data::ExponentialHistogram(h)) => h.data_points.clear(),
                Some(metric::Data::Summary(s)) => s.data_points.clear(),
                None => {}
            }
            copy
        };
        for (index, point) in DataPointRef::of_metric(metric).into_iter().enumerate() {
            let item = Item::DataPoint {
                resource: resource.resource.as_ref(),
                scope: scope.scope.as_ref(),
                metric,
                point,
            };
            let route = self.pick(ContextKind::DataPoint, &item)?.unwrap_or(default);
            let target = out.entry(route).or_insert_with(|| empty_like(metric));
            match (&mut target.data, &metric.data) {
                (Some(metric::Data::Gauge(t)), Some(metric::Data::Gauge(s))) => {
                    t.data_points.push(s.data_points[index].clone())
                }
                (Some(metric::Data::Sum(t)), Some(metric::Data::Sum(s))) => {
                    t.data_points.push(s.data_points[index].clone())
                }
                (Some(metric::Data::Histogram(t)), Some(metric::Data::Histogram(s))) => {
                    t.data_points.push(s.data_points[index].clone())
                }
                (
                    Some(metric::Data::ExponentialHistogram(t)),
                    Some(metric::Data::ExponentialHistogram(s)),
                ) => t.data_points.push(s.data_points[index].clone()),
                (Some(metric::Data::Summary(t)), Some(metric::Data::Summary(s))) => {
                    t.data_points.push(s.data_points[index].clone())
                }
                _ => {}
            }
        }
        Ok(out.into_iter().collect())
    }
}

/// One signal's OTLP tree (resource, scope, record) as the routing connector splits it.
trait Routed: Clone {
    type Scoped;
    type Record: Clone;
    /// Whether the connector has a route below the resource for this signal.
    fn per_record(router: &RoutingConnector) -> bool;
    fn resource(&self) -> Option<&Resource>;
    fn scoped(&mut self) -> &mut Vec<Self::Scoped>;
    fn records(scoped: &Self::Scoped) -> &[Self::Record];
    fn records_mut(scoped: &mut Self::Scoped) -> &mut Vec<Self::Record>;
    /// The scope without its records.
    fn empty_like(scoped: &Self::Scoped) -> Self::Scoped;
    /// Where a record goes: one route, or pieces of it to several routes.
    fn route_record(
        router: &RoutingConnector,
        resource: &Self,
        scoped: &Self::Scoped,
        record: &Self::Record,
    ) -> Result<Vec<(usize, Self::Record)>, Refusal>;
}

impl Routed for ResourceSpans {
    type Scoped = ScopeSpans;
    type Record = Span;
    fn per_record(router: &RoutingConnector) -> bool {
        router.has(ContextKind::Span)
    }
    fn resource(&self) -> Option<&Resource> {
        self.resource.as_ref()
    }
    fn scoped(&mut self) -> &mut Vec<ScopeSpans> {
        &mut self.scope_spans
    }
    fn records(scoped: &ScopeSpans) -> &[Span] {
        &scoped.spans
    }
    fn records_mut(scoped: &mut ScopeSpans) -> &mut Vec<Span> {
        &mut scoped.spans
    }
    fn empty_like(scoped: &ScopeSpans) -> ScopeSpans {
        ScopeSpans {
            spans: Vec::new(),
            scope: scoped.scope.clone(),
            schema_url: scoped.schema_url.clone(),
        }
    }
    fn route_record(
        router: &RoutingConnector,
        resource: &ResourceSpans,
        scoped: &ScopeSpans,
        span: &Span,
    ) -> Result<Vec<(usize, Span)>, Refusal> {
        let item = Item::Span {
            resource: resource.resource.as_ref(),
            scope: scoped.scope.as_ref(),
            span,
        };
        let route = router
            .pick(ContextKind::Span, &item)?
            .unwrap_or(router.default_route());
        Ok(vec![(route, span.clone())])
    }
}

impl Routed for ResourceLogs {
    type Scoped = ScopeLogs;
    type Record = LogRecord;
    fn per_record(router: &RoutingConnector) -> bool {
        router.has(ContextKind::Log)
    }
    fn resource(&self) -> Option<&Resource> {
        self.resource.as_ref()
    }
    fn scoped(&mut self) -> &mut Vec<ScopeLogs> {
        &mut self.scope_logs
    }
    fn records(scoped: &ScopeLogs) -> &[LogRecord] {
        &scoped.log_records
    }
    fn records_mut(scoped: &mut ScopeLogs) -> &mut Vec<LogRecord> {
        &mut scoped.log_records
    }
    fn empty_like(scoped: &ScopeLogs) -> ScopeLogs {
        ScopeLogs {
            log_records: Vec::new(),
            scope: scoped.scope.clone(),
            schema_url: scoped.schema_url.clone(),
        }
    }
    fn route_record(
        router: &RoutingConnector,
        resource: &ResourceLogs,
        scoped: &ScopeLogs,
        log: &LogRecord,
    ) -> Result<Vec<(usize, LogRecord)>, Refusal> {
        let item = Item::Log {
            resource: resource.resource.as_ref(),
            scope: scoped.scope.as_ref(),
            log,
        };
        let route = router
            .pick(ContextKind::Log, &item)?
            .unwrap_or(router.default_route());
        Ok(vec![(route, log.clone())])
    }
}

impl Routed for ResourceMetrics {
    type Scoped = ScopeMetrics;
    type Record = Metric;
    fn per_record(router: &RoutingConnector) -> bool {
        router.has(ContextKind::Metric) || router.has(ContextKind::DataPoint)
    }
    fn resource(&self) -> Option<&Resource> {
        self.resource.as_ref()
    }
    fn scoped(&mut self) -> &mut Vec<ScopeMetrics> {
        &mut self.scope_metrics
    }
    fn records(scoped: &ScopeMetrics) -> &[Metric] {
        &scoped.metrics
    }
    fn records_mut(scoped: &mut ScopeMetrics) -> &mut Vec<Metric> {
        &mut scoped.metrics
    }
    fn empty_like(scoped: &ScopeMetrics) -> ScopeMetrics {
        ScopeMetrics {
            metrics: Vec::new(),
            scope: scoped.scope.clone(),
            schema_url: scoped.schema_url.clone(),
        }
    }
    /// A metric route takes the whole metric; otherwise with data point routes each
    /// route gets a copy of the metric with its points.
    fn route_record(
        router: &RoutingConnector,
        resource: &ResourceMetrics,
        scoped: &ScopeMetrics,
        metric: &Metric,
    ) -> Result<Vec<(usize, Metric)>, Refusal> {
        let item = Item::Metric {
            resource: resource.resource.as_ref(),
            scope: scoped.scope.as_ref(),
            metric,
        };
        Ok(match router.pick(ContextKind::Metric, &item)? {
            Some(route) => vec![(route, metric.clone())],
            None if router.has(ContextKind::DataPoint) => {
                router.split_points(resource, scoped, metric)?
            }
            None => vec![(router.default_route(), metric.clone())],
        })
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
