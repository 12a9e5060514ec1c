//! Running statements over whole batches: the walk over resources, scopes and items of
//! each signal, building a writable view per item.

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics, metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

use crate::paths::{PointMut, PointSlot, Slot, View, metric_shape};
use crate::{Condition, ContextKind, ErrorMode, EvalError, Statement};

/// Statements of one context run in order on every item of that context, when any of
/// the group's conditions matches (or there are none), as the transform processor does.
#[derive(Clone, Debug)]
pub struct StatementGroup {
    context: ContextKind,
    statements: Vec<Statement>,
    conditions: Vec<Condition>,
    error_mode: ErrorMode,
}

impl StatementGroup {
    /// Every statement and condition must be of `context`.
    pub fn new(
        context: ContextKind,
        statements: Vec<Statement>,
        conditions: Vec<Condition>,
        error_mode: ErrorMode,
    ) -> StatementGroup {
        StatementGroup {
            context,
            statements,
            conditions,
            error_mode,
        }
    }

    pub fn context(&self) -> ContextKind {
        self.context
    }

    pub fn error_mode(&self) -> ErrorMode {
        self.error_mode
    }

    /// Handles one error: Err under propagate; otherwise recorded for logging (ignore) or
    /// dropped (silent).
    fn failed(&self, error: EvalError, ignored: &mut Vec<EvalError>) -> Result<(), EvalError> {
        match self.error_mode {
            ErrorMode::Propagate => Err(error),
            ErrorMode::Ignore => {
                ignored.push(error);
                Ok(())
            }
            ErrorMode::Silent => Ok(()),
        }
    }

    /// Runs the group on one item.
    fn apply(&self, view: &mut View<'_>, ignored: &mut Vec<EvalError>) -> Result<(), EvalError> {
        if !self.conditions.is_empty() {
            let mut any = false;
            for condition in &self.conditions {
                match condition.eval(view) {
                    Ok(true) => {
                        any = true;
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => self.failed(e, ignored)?,
                }
            }
            if !any {
                return Ok(());
            }
        }
        for statement in &self.statements {
            if let Err(e) = statement.execute(view) {
                self.failed(e, ignored)?;
            }
        }
        Ok(())
    }

    /// Runs the group on one resource (context resource) or its scopes (context scope);
    /// for a context below the scope, `records` runs it on one scope's items. As in the
    /// Collector's data model, an absent resource or scope reads as an empty one.
    fn run_resource<S>(
        &self,
        resource: &mut Option<Resource>,
        scoped: &mut [S],
        scope: fn(&mut S) -> &mut Option<InstrumentationScope>,
        ignored: &mut Vec<EvalError>,
        mut records: impl FnMut(
            &mut Option<Resource>,
            &mut S,
            &mut Vec<EvalError>,
        ) -> Result<(), EvalError>,
    ) -> Result<(), EvalError> {
        resource.get_or_insert_with(Default::default);
        if self.context == ContextKind::Resource {
            let mut view = View::empty();
            view.resource = Slot::MutOpt(resource);
            return self.apply(&mut view, ignored);
        }
        for s in scoped {
            scope(s).get_or_insert_with(Default::default);
            if self.context == ContextKind::Scope {
                let mut view = View::empty();
                view.resource = Slot::MutOpt(resource);
                view.scope = Slot::MutOpt(scope(s));
                self.apply(&mut view, ignored)?;
                continue;
            }
            records(resource, s, ignored)?;
        }
        Ok(())
    }

    /// Runs the group over spans (contexts resource, scope, span, spanevent). Errors
    /// under error_mode ignore are appended to `ignored`.
    pub fn run_traces(
        &self,
        data: &mut [ResourceSpans],
        ignored: &mut Vec<EvalError>,
    ) -> Result<(), EvalError> {
        for rs in data {
            let ResourceSpans {
                resource,
                scope_spans,
                ..
            } = rs;
            let scope: fn(&mut ScopeSpans) -> &mut Option<InstrumentationScope> =
                |ss| &mut ss.scope;
            self.run_resource(
                resource,
                scope_spans,
                scope,
                ignored,
                |resource, ss, ignored| {
                    for span in &mut ss.spans {
                        if self.context == ContextKind::SpanEvent {
                            let mut events = std::mem::take(&mut span.events);
                            let mut result = Ok(());
                            for event in &mut events {
                                let mut view = View::empty();
                                view.resource = Slot::MutOpt(resource);
                                view.scope = Slot::MutOpt(&mut ss.scope);
                                view.span = Slot::Mut(span);
                                view.event = Slot::Mut(event);
                                result = self.apply(&mut view, ignored);
                                if result.is_err() {
                                    break;
                                }
                            }
                            span.events = events;
                            result?;
                        } else {
                            let mut view = View::empty();
                            view.resource = Slot::MutOpt(resource);
                            view.scope = Slot::MutOpt(&mut ss.scope);
                            view.span = Slot::Mut(span);
                            self.apply(&mut view, ignored)?;
                        }
                    }
                    Ok(())
                },
            )?;
        }
        Ok(())
    }

    /// Runs the group over logs (contexts resource, scope, log).
    pub fn run_logs(
        &self,
        data: &mut [ResourceLogs],
        ignored: &mut Vec<EvalError>,
    ) -> Result<(), EvalError> {
        for rl in data {
            let ResourceLogs {
                resource,
                scope_logs,
                ..
            } = rl;
            let scope: fn(&mut ScopeLogs) -> &mut Option<InstrumentationScope> = |sl| &mut sl.scope;
            self.run_resource(
                resource,
                scope_logs,
                scope,
                ignored,
                |resource, sl, ignored| {
                    for log in &mut sl.log_records {
                        let mut view = View::empty();
                        view.resource = Slot::MutOpt(resource);
                        view.scope = Slot::MutOpt(&mut sl.scope);
                        view.log = Slot::Mut(log);
                        self.apply(&mut view, ignored)?;
                    }
                    Ok(())
                },
            )?;
        }
        Ok(())
    }

    /// Runs the group over metrics (contexts resource, scope, metric, datapoint). Metrics
    /// created by metric functions are appended to their scope after its metrics were
    /// processed (they are not processed by the same group).
    pub fn run_metrics(
        &self,
        data: &mut [ResourceMetrics],
        ignored: &mut Vec<EvalError>,
    ) -> Result<(), EvalError> {
        for rm in data {
            let ResourceMetrics {
                resource,
                scope_metrics,
                ..
            } = rm;
            let scope: fn(&mut ScopeMetrics) -> &mut Option<InstrumentationScope> =
                |sm| &mut sm.scope;
            self.run_resource(
                resource,
                scope_metrics,
                scope,
                ignored,
                |resource, sm, ignored| {
                    let mut added = Vec::new();
                    let mut result = Ok(());
                    for metric in &mut sm.metrics {
                        if self.context == ContextKind::Metric {
                            let mut view = View::empty();
                            view.resource = Slot::MutOpt(resource);
                            view.scope = Slot::MutOpt(&mut sm.scope);
                            view.metric = Slot::Mut(metric);
                            result = self.apply(&mut view, ignored);
                            added.append(&mut view.new_metrics);
                        } else {
                            result = self.run_points(resource, &mut sm.scope, metric, ignored);
                        }
                        if result.is_err() {
                            break;
                        }
                    }
                    sm.metrics.extend(added);
                    result
                },
            )?;
        }
        Ok(())
    }

    fn run_points(
        &self,
        resource: &mut Option<Resource>,
        scope: &mut Option<InstrumentationScope>,
        metric: &mut opentelemetry_proto::tonic::metrics::v1::Metric,
        ignored: &mut Vec<EvalError>,
    ) -> Result<(), EvalError> {
        let mut data = metric.data.take();
        let shape = metric_shape(data.as_ref());
        let mut points: Vec<PointMut<'_>> = match &mut data {
            None => Vec::new(),
            Some(metric::Data::Gauge(g)) => {
                g.data_points.iter_mut().map(PointMut::Number).collect()
            }
            Some(metric::Data::Sum(s)) => s.data_points.iter_mut().map(PointMut::Number).collect(),
            Some(metric::Data::Histogram(h)) => {
                h.data_points.iter_mut().map(PointMut::Histogram).collect()
            }
            Some(metric::Data::ExponentialHistogram(h)) => h
                .data_points
                .iter_mut()
                .map(PointMut::ExponentialHistogram)
                .collect(),
            Some(metric::Data::Summary(s)) => {
                s.data_points.iter_mut().map(PointMut::Summary).collect()
            }
        };
        let mut result = Ok(());
        for point in points.drain(..) {
            let mut view = View::empty();
            view.resource = Slot::MutOpt(resource);
            view.scope = Slot::MutOpt(scope);
            view.metric = Slot::Mut(metric);
            view.shape = Some(shape);
            view.point = PointSlot::Mut(point);
            result = self.apply(&mut view, ignored);
            if result.is_err() {
                break;
            }
        }
        drop(points);
        metric.data = data;
        result
    }
}
