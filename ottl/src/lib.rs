//! oxcol-ottl: the OpenTelemetry Transformation Language, parsed once and evaluated on
//! the OTLP prost model. Used by transform, filter, routing, count and tail_sampling.
//!
//! - [`parse_statement`] / [`parse_condition`] parse one statement or condition for a
//!   context; errors carry the 0-based character offset in the text.
//! - [`infer_context`] applies the Collector's inference rules to flat-form texts.
//! - [`Condition::matches`] evaluates a condition on a read-only [`Item`].
//! - [`StatementGroup`] runs statements (with optional group conditions) over whole
//!   batches of spans, metrics or logs, changing them in place.
//!
//! The language as oxcol supports it is documented in `docs/ottl.md`.

mod ast;
pub mod config;
mod eval;
mod exec;
mod funcs;
mod lexer;
mod paths;
mod timefmt;
pub mod value;

#[cfg(test)]
mod tests;

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{Span, span};

pub use ast::severity_word;
pub use exec::StatementGroup;
pub use value::Value;

/// The OTTL contexts: which kind of item a statement or condition runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContextKind {
    Resource,
    Scope,
    Metric,
    DataPoint,
    Span,
    SpanEvent,
    Log,
}

impl ContextKind {
    /// Every context.
    pub const ALL: [ContextKind; 7] = [
        ContextKind::Resource,
        ContextKind::Scope,
        ContextKind::Metric,
        ContextKind::DataPoint,
        ContextKind::Span,
        ContextKind::SpanEvent,
        ContextKind::Log,
    ];

    /// The context named as in the Collector's config (`resource`, `scope` (or
    /// `instrumentation_scope`), `metric`, `datapoint`, `span`, `spanevent`, `log`).
    pub fn parse(name: &str) -> Option<ContextKind> {
        ast::prefix_context(name)
    }

    pub fn name(self) -> &'static str {
        match self {
            ContextKind::Resource => "resource",
            ContextKind::Scope => "scope",
            ContextKind::Metric => "metric",
            ContextKind::DataPoint => "datapoint",
            ContextKind::Span => "span",
            ContextKind::SpanEvent => "spanevent",
            ContextKind::Log => "log",
        }
    }

    /// Priority of the Collector's context inference (lower wins).
    fn inference_priority(self) -> usize {
        match self {
            ContextKind::Log => 0,
            ContextKind::DataPoint => 1,
            ContextKind::Metric => 2,
            ContextKind::SpanEvent => 3,
            ContextKind::Span => 4,
            ContextKind::Resource => 5,
            ContextKind::Scope => 6,
        }
    }
}

impl std::fmt::Display for ContextKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A statement or condition that does not parse.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseError {
    /// 0-based character (not byte) index in the text.
    pub offset: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at position {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for ParseError {}

/// A failure while evaluating a statement or condition on one item.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    pub message: String,
}

/// What a processor does when a statement or condition fails on an item (the
/// Collector's `error_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorMode {
    /// Log the error and continue with the next statement/item.
    Ignore,
    /// Continue without logging.
    Silent,
    /// Fail the whole batch.
    #[default]
    Propagate,
}

/// One parsed statement: `editor(args) [where condition]`.
#[derive(Clone, Debug)]
pub struct Statement {
    call: ast::Call,
    condition: Option<ast::BoolExpr>,
    context: ContextKind,
    text: String,
}

impl Statement {
    pub fn context(&self) -> ContextKind {
        self.context
    }
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Runs the statement on one item; Ok(false) when its `where` clause did not match.
    fn execute(&self, view: &mut paths::View<'_>) -> Result<bool, EvalError> {
        if let Some(condition) = &self.condition {
            let matched = eval::eval_bool(condition, view).map_err(|m| self.error(m))?;
            if !matched {
                return Ok(false);
            }
        }
        funcs::call_editor(&self.call, view).map_err(|m| self.error(m))?;
        Ok(true)
    }

    fn error(&self, message: String) -> EvalError {
        EvalError {
            message: format!("failed to execute statement {:?}: {message}", self.text),
        }
    }
}

/// One parsed boolean condition.
#[derive(Clone, Debug)]
pub struct Condition {
    expr: ast::BoolExpr,
    context: ContextKind,
    text: String,
}

impl Condition {
    pub fn context(&self) -> ContextKind {
        self.context
    }
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates the condition on a read-only item. The item must be of the condition's
    /// context (or a lower one: a resource condition can be asked about a span).
    pub fn matches(&self, item: &Item<'_>) -> Result<bool, EvalError> {
        let view = item.view();
        self.eval(&view)
    }

    fn eval(&self, view: &paths::View<'_>) -> Result<bool, EvalError> {
        eval::eval_bool(&self.expr, view).map_err(|m| EvalError {
            message: format!("failed to evaluate condition {:?}: {m}", self.text),
        })
    }
}

/// A read-only view of one item and its parents (for routing, count and tail_sampling
/// conditions).
#[derive(Clone, Copy, Debug)]
pub enum Item<'a> {
    Resource {
        resource: Option<&'a Resource>,
    },
    Scope {
        resource: Option<&'a Resource>,
        scope: Option<&'a InstrumentationScope>,
    },
    Span {
        resource: Option<&'a Resource>,
        scope: Option<&'a InstrumentationScope>,
        span: &'a Span,
    },
    SpanEvent {
        resource: Option<&'a Resource>,
        scope: Option<&'a InstrumentationScope>,
        span: &'a Span,
        event: &'a span::Event,
    },
    Metric {
        resource: Option<&'a Resource>,
        scope: Option<&'a InstrumentationScope>,
        metric: &'a Metric,
    },
    DataPoint {
        resource: Option<&'a Resource>,
        scope: Option<&'a InstrumentationScope>,
        metric: &'a Metric,
        point: DataPointRef<'a>,
    },
    Log {
        resource: Option<&'a Resource>,
        scope: Option<&'a InstrumentationScope>,
        log: &'a LogRecord,
    },
}

/// A data point of any metric type.
#[derive(Clone, Copy, Debug)]
pub enum DataPointRef<'a> {
    Number(&'a NumberDataPoint),
    Histogram(&'a HistogramDataPoint),
    ExponentialHistogram(&'a ExponentialHistogramDataPoint),
    Summary(&'a SummaryDataPoint),
}

impl<'a> DataPointRef<'a> {
    /// The data points of a metric, in order (none for a metric without data).
    pub fn of_metric(metric: &'a Metric) -> Vec<DataPointRef<'a>> {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        match &metric.data {
            None => Vec::new(),
            Some(Data::Gauge(g)) => g.data_points.iter().map(DataPointRef::Number).collect(),
            Some(Data::Sum(s)) => s.data_points.iter().map(DataPointRef::Number).collect(),
            Some(Data::Histogram(h)) => h.data_points.iter().map(DataPointRef::Histogram).collect(),
            Some(Data::ExponentialHistogram(h)) => h
                .data_points
                .iter()
                .map(DataPointRef::ExponentialHistogram)
                .collect(),
            Some(Data::Summary(s)) => s.data_points.iter().map(DataPointRef::Summary).collect(),
        }
    }

    pub fn attributes(self) -> &'a [KeyValue] {
        match self {
            DataPointRef::Number(p) => &p.attributes,
            DataPointRef::Histogram(p) => &p.attributes,
            DataPointRef::ExponentialHistogram(p) => &p.attributes,
            DataPointRef::Summary(p) => &p.attributes,
        }
    }

    /// `(start_time_unix_nano, time_unix_nano)`.
    pub fn times(self) -> (u64, u64) {
        match self {
            DataPointRef::Number(p) => (p.start_time_unix_nano, p.time_unix_nano),
            DataPointRef::Histogram(p) => (p.start_time_unix_nano, p.time_unix_nano),
            DataPointRef::ExponentialHistogram(p) => (p.start_time_unix_nano, p.time_unix_nano),
            DataPointRef::Summary(p) => (p.start_time_unix_nano, p.time_unix_nano),
        }
    }
}

// An absent resource or scope reads as an empty one (empty attributes, "" name).
static EMPTY_RESOURCE: Resource = Resource {
    attributes: Vec::new(),
    dropped_attributes_count: 0,
    entity_refs: Vec::new(),
};
static EMPTY_SCOPE: InstrumentationScope = InstrumentationScope {
    name: String::new(),
    version: String::new(),
    attributes: Vec::new(),
    dropped_attributes_count: 0,
};

impl<'a> Item<'a> {
    /// The context of the item.
    pub fn context(&self) -> ContextKind {
        match self {
            Item::Resource { .. } => ContextKind::Resource,
            Item::Scope { .. } => ContextKind::Scope,
            Item::Span { .. } => ContextKind::Span,
            Item::SpanEvent { .. } => ContextKind::SpanEvent,
            Item::Metric { .. } => ContextKind::Metric,
            Item::DataPoint { .. } => ContextKind::DataPoint,
            Item::Log { .. } => ContextKind::Log,
        }
    }

    fn view(&self) -> paths::View<'a> {
        use paths::{PointSlot, Slot};
        let mut view = paths::View::empty();
        let parents = |view: &mut paths::View<'a>,
                       r: Option<&'a Resource>,
                       s: Option<&'a InstrumentationScope>| {
            view.resource = Slot::Ref(r.unwrap_or(&EMPTY_RESOURCE));
            view.scope = Slot::Ref(s.unwrap_or(&EMPTY_SCOPE));
        };
        match *self {
            Item::Resource { resource } => {
                view.resource = Slot::Ref(resource.unwrap_or(&EMPTY_RESOURCE))
            }
            Item::Scope { resource, scope } => parents(&mut view, resource, scope),
            Item::Span {
                resource,
                scope,
                span,
            } => {
                parents(&mut view, resource, scope);
                view.span = Slot::Ref(span);
            }
            Item::SpanEvent {
                resource,
                scope,
                span,
                event,
            } => {
                parents(&mut view, resource, scope);
                view.span = Slot::Ref(span);
                view.event = Slot::Ref(event);
            }
            Item::Metric {
                resource,
                scope,
                metric,
            } => {
                parents(&mut view, resource, scope);
                view.metric = Slot::Ref(metric);
            }
            Item::DataPoint {
                resource,
                scope,
                metric,
                point,
            } => {
                parents(&mut view, resource, scope);
                view.metric = Slot::Ref(metric);
                view.point = PointSlot::Ref(point);
            }
            Item::Log {
                resource,
                scope,
                log,
            } => {
                parents(&mut view, resource, scope);
                view.log = Slot::Ref(log);
            }
        }
        view
    }
}

/// Parses `editor(args) [where condition]` for `context`.
pub fn parse_statement(text: &str, context: ContextKind) -> Result<Statement, ParseError> {
    let mut parser = ast::Parser::new(text, context)?;
    let (call, condition) = parser.statement()?;
    if let Some(only) = call.func.only_context().filter(|only| *only != context) {
        return Err(ParseError {
            offset: text.chars().take_while(|c| c.is_whitespace()).count(),
            message: format!(
                "{} works only in the {} context (this statement is in the {} context)",
                call.func.name(),
                only.name(),
                context.name()
            ),
        });
    }
    Ok(Statement {
        call,
        condition,
        context,
        text: text.to_string(),
    })
}

/// Parses a boolean condition for `context`.
pub fn parse_condition(text: &str, context: ContextKind) -> Result<Condition, ParseError> {
    let mut parser = ast::Parser::new(text, context)?;
    let expr = parser.bool_expr()?;
    parser.expect_end()?;
    if let Some((func, only)) = parser
        .hints
        .functions
        .iter()
        .find_map(|f| f.only_context().filter(|o| *o != context).map(|o| (f, o)))
    {
        return Err(ParseError {
            offset: text.chars().take_while(|c| c.is_whitespace()).count(),
            message: format!(
                "{} works only in the {} context (this condition is in the {} context)",
                func.name(),
                only.name(),
                context.name()
            ),
        });
    }
    Ok(Condition {
        expr,
        context,
        text: text.to_string(),
    })
}

/// Whether `text` has the form of a statement (starts with a lower-case call).
fn looks_like_statement(text: &str) -> bool {
    let trimmed = text.trim_start();
    let ident: String = trimmed
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    !ident.is_empty()
        && ident.starts_with(|c: char| c.is_lowercase())
        && !matches!(ident.as_str(), "not" | "true" | "false" | "nil")
        && trimmed[ident.len()..].trim_start().starts_with('(')
}

/// Checks the syntax of a statement or condition without resolving its paths against a
/// context (for flat-form texts whose context is inferred from the whole group).
pub fn check_syntax(text: &str) -> Result<(), ParseError> {
    let mut parser = ast::Parser::new(text, ContextKind::Log)?;
    parser.lenient_paths = true;
    if looks_like_statement(text) {
        parser.statement().map(|_| ())
    } else {
        parser.bool_expr()?;
        parser.expect_end()
    }
}

/// The context implied by the path prefixes of flat-form statements/conditions (the
/// Collector's inference rules): the most specific context named by any path prefix
/// (priority log, datapoint, metric, spanevent, span, resource, scope); when a function
/// used is not available there, the first more specific context that has it.
pub fn infer_context(texts: &[&str]) -> Result<ContextKind, ParseError> {
    infer_context_in(texts, &ContextKind::ALL)
}

/// [`infer_context`] restricted to the contexts of one signal (`allowed`): the chosen
/// context must be one of them, reach every context the paths name (`scope.name` and
/// `resource.attributes` together need scope or lower), and have every function used;
/// when the most specific named context does not, the first more specific allowed one
/// that does is used.
pub fn infer_context_in(
    texts: &[&str],
    allowed: &[ContextKind],
) -> Result<ContextKind, ParseError> {
    let mut named: Vec<ContextKind> = Vec::new();
    let mut functions = Vec::new();
    for text in texts {
        let mut parser = ast::Parser::new(text, ContextKind::Log)?;
        parser.lenient_paths = true;
        if looks_like_statement(text) {
            parser.statement()?;
        } else {
            parser.bool_expr()?;
            parser.expect_end()?;
        }
        named.extend(parser.hints.prefixes.iter().map(|(ctx, _)| *ctx));
        functions.extend(parser.hints.functions.iter().copied());
    }
    let Some(best) = named.iter().copied().min_by_key(|c| c.inference_priority()) else {
        return Err(ParseError {
            offset: 0,
            message: "cannot infer the context: prefix the paths with their context (e.g. span.name, resource.attributes[\"k\"], log.body) or use the grouped form with `context:`".to_string(),
        });
    };
    let fits = |ctx: ContextKind| {
        allowed.contains(&ctx)
            && named.iter().all(|n| ast::reachable(ctx, *n))
            && functions
                .iter()
                .all(|f| f.only_context().is_none_or(|only| only == ctx))
    };
    if fits(best) {
        return Ok(best);
    }
    let mut lower: Vec<ContextKind> = ContextKind::ALL
        .into_iter()
        .filter(|c| *c != best && ast::reachable(*c, best))
        .collect();
    lower.sort_by_key(|c| c.inference_priority());
    lower
        .into_iter()
        .find(|c| fits(*c))
        .ok_or_else(|| ParseError {
            offset: 0,
            message: format!(
                "no context of {} can run these paths and functions (the paths name {})",
                allowed
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", "),
                {
                    let mut names: Vec<&str> = named.iter().map(|c| c.name()).collect();
                    names.sort();
                    names.dedup();
                    names.join(", ")
                }
            ),
        })
}
