//! `filter`: drops spans, span events, metrics, data points, log records and whole
//! resources, as the Collector's filter processor does.
//!
//! OTTL forms (an item is dropped when ANY condition of its list is true):
//! - `traces: {resource, span, spanevent}`, `metrics: {resource, metric, datapoint}`,
//!   `logs: {resource, log_record}`;
//! - `trace_conditions`, `metric_conditions`, `log_conditions`: flat condition strings
//!   (one group, context inferred from the path prefixes) or groups
//!   `{context, conditions, error_mode}`.
//!
//! Legacy match forms (`metrics: {include, exclude}`, `logs: {include, exclude}`,
//! `spans: {include, exclude}`) with `match_type: strict|regexp`: include keeps only
//! matching items, exclude drops matching items; include is applied first.
//!
//! After filtering, scopes without items and resources without scopes are removed, and
//! metrics left without data points are removed; the item count is recomputed.

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics, metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use oxcol_core::{Batch, Processor, Refusal, Signal};
use oxcol_ottl::config::{ConfigProblem, PathSegment, key};
use oxcol_ottl::{
    Condition, ContextKind, DataPointRef, ErrorMode, EvalError, Item, infer_context_in,
    parse_condition,
};
use regex::Regex;

use crate::helper::ottl_config::{EntryGroup, FlatOrGroup, contexts_of, group_context};
use serde::Deserialize;

#[cfg(test)]
mod tests;

pub const TYPE: &str = "filter";
pub const ALIASES: &[&str] = &["filter"];

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `propagate` (default): a condition error refuses the batch; `ignore`: log it and
    /// treat the condition as false; `silent`: the same without logging.
    pub error_mode: ErrorMode,
    pub traces: TraceFilters,
    pub metrics: MetricFilters,
    pub logs: LogFilters,
    /// Legacy span matching.
    pub spans: SpanFilters,
    pub trace_conditions: Vec<ContextConditions>,
    pub metric_conditions: Vec<ContextConditions>,
    pub log_conditions: Vec<ContextConditions>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TraceFilters {
    pub resource: Vec<String>,
    pub span: Vec<String>,
    pub spanevent: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricFilters {
    pub resource: Vec<String>,
    pub metric: Vec<String>,
    pub datapoint: Vec<String>,
    pub include: Option<MetricMatch>,
    pub exclude: Option<MetricMatch>,
    /// The Collector's regexp cache settings; accepted, no effect (oxcol's regexes need
    /// no match cache).
    pub regexp: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogFilters {
    pub resource: Vec<String>,
    pub log_record: Vec<String>,
    pub include: Option<LogMatch>,
    pub exclude: Option<LogMatch>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpanFilters {
    pub include: Option<SpanMatch>,
    pub exclude: Option<SpanMatch>,
}

/// `{key, value}`; without a value only the key's presence is matched.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttributeMatch {
    pub key: String,
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricMatch {
    pub match_type: String,
    /// Regexp cache settings; accepted, no effect.
    pub regexp: Option<serde_json::Value>,
    pub metric_names: Vec<String>,
    pub resource_attributes: Vec<AttributeMatch>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogMatch {
    pub match_type: String,
    pub resource_attributes: Vec<AttributeMatch>,
    pub record_attributes: Vec<AttributeMatch>,
    pub severity_texts: Vec<String>,
    pub severity_number: Option<SeverityNumberMatch>,
    pub bodies: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SeverityNumberMatch {
    /// Lowest severity that matches: `INFO`, `warn2`, `9`... (case-insensitive).
    pub min: String,
    /// Records with no severity number match too.
    pub match_undefined: bool,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpanMatch {
    pub match_type: String,
    /// Regexp cache settings; accepted, no effect.
    pub regexp: Option<serde_json::Value>,
    pub services: Vec<String>,
    pub span_names: Vec<String>,
    pub attributes: Vec<AttributeMatch>,
    pub resources: Vec<AttributeMatch>,
    pub span_kinds: Vec<String>,
}

/// One entry of a `*_conditions` list.
pub type ContextConditions = FlatOrGroup<ConditionGroup>;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConditionGroup {
    #[serde(default)]
    pub context: Option<String>,
    pub conditions: Vec<String>,
    #[serde(default)]
    pub error_mode: Option<ErrorMode>,
}

impl EntryGroup for ConditionGroup {
    const EXPECTING: &'static str = "a condition or a group {context, conditions, error_mode}";
}

/// A string matcher of the legacy forms.
#[derive(Clone, Debug)]
enum Pattern {
    Strict(String),
    Regexp(Regex),
}

impl Pattern {
    fn matches(&self, text: &str) -> bool {
        match self {
            Pattern::Strict(s) => s == text,
            Pattern::Regexp(r) => r.is_match(text),
        }
    }
}

#[derive(Clone, Debug)]
struct AttributeMatcher {
    key: String,
    value: Option<AttrValue>,
}

#[derive(Clone, Debug)]
enum AttrValue {
    Strict(AnyValue),
    Regexp(Regex),
}

impl AttributeMatcher {
    fn matches(&self, attributes: &[KeyValue]) -> bool {
        let Some(found) = attributes.iter().find(|a| a.key == self.key) else {
            return false;
        };
        let value = found.value.clone().unwrap_or_default();
        match &self.value {
            None => true,
            Some(AttrValue::Strict(expected)) => *expected == value,
            Some(AttrValue::Regexp(re)) => match &value.value {
                Some(any_value::Value::StringValue(s)) => re.is_match(s),
                _ => false,
            },
        }
    }
}

/// A config value as the attribute value it must equal (ints stay ints).
fn json_scalar(v: &serde_json::Value) -> AnyValue {
    match v {
        serde_json::Value::Number(n) if n.is_i64() => AnyValue {
            value: n.as_i64().map(any_value::Value::IntValue),
        },
        other => oxcol_ottl::Value::from_json(other)
            .into_any()
            .unwrap_or_default(),
    }
}

fn all_match(matchers: &[AttributeMatcher], attributes: &[KeyValue]) -> bool {
    matchers.iter().all(|m| m.matches(attributes))
}

fn any_pattern(patterns: &[Pattern], text: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| p.matches(text))
}

#[derive(Clone, Debug)]
struct CompiledMetricMatch {
    names: Vec<Pattern>,
    resource: Vec<AttributeMatcher>,
}

#[derive(Clone, Debug)]
struct CompiledLogMatch {
    resource: Vec<AttributeMatcher>,
    record: Vec<AttributeMatcher>,
    severity_texts: Vec<Pattern>,
    bodies: Vec<Pattern>,
    severity: Option<(i32, bool)>,
}

#[derive(Clone, Debug)]
struct CompiledSpanMatch {
    services: Vec<Pattern>,
    names: Vec<Pattern>,
    attributes: Vec<AttributeMatcher>,
    resources: Vec<AttributeMatcher>,
    kinds: Vec<i32>,
}

/// A list of OTTL conditions for one context: an item is dropped when any is true.
#[derive(Clone, Debug)]
struct ConditionStage {
    context: ContextKind,
    conditions: Vec<Condition>,
    error_mode: ErrorMode,
}

#[derive(Clone, Debug, Default)]
struct Compiled {
    traces: Vec<ConditionStage>,
    metrics: Vec<ConditionStage>,
    logs: Vec<ConditionStage>,
    metric_include: Option<CompiledMetricMatch>,
    metric_exclude: Option<CompiledMetricMatch>,
    log_include: Option<CompiledLogMatch>,
    log_exclude: Option<CompiledLogMatch>,
    span_include: Option<CompiledSpanMatch>,
    span_exclude: Option<CompiledSpanMatch>,
}

fn path(parts: &[&str]) -> Vec<PathSegment> {
    parts.iter().map(|p| key(p)).collect()
}

fn severity_number(text: &str) -> Option<i32> {
    let upper = text.to_uppercase();
    if let Ok(n) = upper.parse::<i32>() {
        return (1..=24).contains(&n).then_some(n);
    }
    oxcol_ottl::severity_word(&upper)
}

/// Compiles the legacy pieces shared by every match form.
struct LegacyCompiler<'a> {
    problems: &'a mut Vec<ConfigProblem>,
}

impl LegacyCompiler<'_> {
    fn match_type(&mut self, at: &[&str], match_type: &str) -> Option<bool> {
        match match_type {
            "strict" => Some(false),
            "regexp" => Some(true),
            other => {
                let mut p = at.to_vec();
                p.push("match_type");
                self.problems.push(ConfigProblem::at(
                    path(&p),
                    format!("match_type {other:?} is not supported: use \"strict\" or \"regexp\" (or OTTL conditions)"),
                ));
                None
            }
        }
    }

    fn patterns(
        &mut self,
        at: &[&str],
        field: &str,
        regexp: bool,
        texts: &[String],
    ) -> Vec<Pattern> {
        let mut out = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            if regexp {
                match Regex::new(t) {
                    Ok(r) => out.push(Pattern::Regexp(r)),
                    Err(e) => {
                        let mut p = path(at);
                        p.push(key(field));
                        p.push(PathSegment::Index(i));
                        self.problems
                            .push(ConfigProblem::at(p, format!("invalid regexp {t:?}: {e}")));
                    }
                }
            } else {
                out.push(Pattern::Strict(t.clone()));
            }
        }
        out
    }

    fn attributes(
        &mut self,
        at: &[&str],
        field: &str,
        regexp: bool,
        attrs: &[AttributeMatch],
    ) -> Vec<AttributeMatcher> {
        let mut out = Vec::new();
        for (i, a) in attrs.iter().enumerate() {
            let mut p = path(at);
            p.push(key(field));
            p.push(PathSegment::Index(i));
            let value = match (&a.value, regexp) {
                (None, _) => None,
                (Some(serde_json::Value::String(s)), true) => match Regex::new(s) {
                    Ok(r) => Some(AttrValue::Regexp(r)),
                    Err(e) => {
                        self.problems
                            .push(ConfigProblem::at(p, format!("invalid regexp {s:?}: {e}")));
                        continue;
                    }
                },
                (Some(_), true) => {
                    self.problems.push(ConfigProblem::at(
                        p,
                        "with match_type regexp the value must be a string (a regexp)",
                    ));
                    continue;
                }
                (Some(v), false) => Some(AttrValue::Strict(json_scalar(v))),
            };
            out.push(AttributeMatcher {
                key: a.key.clone(),
                value,
            });
        }
        out
    }
}

/// Parses a list of conditions of one context into a stage.
fn stage(
    context: ContextKind,
    texts: &[String],
    at: Vec<PathSegment>,
    error_mode: ErrorMode,
    problems: &mut Vec<ConfigProblem>,
) -> Option<ConditionStage> {
    if texts.is_empty() {
        return None;
    }
    let mut conditions = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let mut p = at.clone();
        p.push(PathSegment::Index(i));
        match parse_condition(text, context) {
            Ok(c) => conditions.push(c),
            Err(e) => problems.push(ConfigProblem::parse(p, "condition", text, &e)),
        }
    }
    Some(ConditionStage {
        context,
        conditions,
        error_mode,
    })
}

fn context_conditions(
    entries: &[ContextConditions],
    list_key: &str,
    signal: Signal,
    error_mode: ErrorMode,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<ConditionStage> {
    let flat: Vec<&str> = entries
        .iter()
        .filter_map(|e| {
            if let ContextConditions::Flat(t) = e {
                Some(t.as_str())
            } else {
                None
            }
        })
        .collect();
    if !flat.is_empty() && flat.len() != entries.len() {
        problems.push(ConfigProblem::at(
            vec![key(list_key)],
            "mixes condition strings and groups: use only strings (context inferred) or only groups {context, conditions}",
        ));
        return Vec::new();
    }
    let mut stages = Vec::new();
    if !flat.is_empty() {
        // Each condition is checked alone first, so a syntax error is placed at it.
        let mut syntax_ok = true;
        for (index, text) in flat.iter().enumerate() {
            if let Err(e) = oxcol_ottl::check_syntax(text) {
                problems.push(ConfigProblem::parse(
                    vec![key(list_key), PathSegment::Index(index)],
                    "condition",
                    text,
                    &e,
                ));
                syntax_ok = false;
            }
        }
        if !syntax_ok {
            return stages;
        }
        // The Collector (v0.161) infers the context of each flat condition on its own: a
        // span condition drops spans and a span event condition drops events, even in one
        // list.
        for (index, text) in flat.iter().enumerate() {
            let at = vec![key(list_key), PathSegment::Index(index)];
            let context = match infer_context_in(&[text], contexts_of(signal)) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(ConfigProblem::parse(at, "condition", text, &e));
                    continue;
                }
            };
            match parse_condition(text, context) {
                Ok(c) => stages.push(ConditionStage {
                    context,
                    conditions: vec![c],
                    error_mode,
                }),
                Err(e) => problems.push(ConfigProblem::parse(at, "condition", text, &e)),
            }
        }
        return stages;
    }
    for (index, entry) in entries.iter().enumerate() {
        let ContextConditions::Group(group) = entry else {
            continue;
        };
        let base = vec![key(list_key), PathSegment::Index(index)];
        let texts: Vec<&str> = group.conditions.iter().map(String::as_str).collect();
        let named = group.context.as_deref();
        let Some(context) = group_context(
            named,
            &texts,
            "conditions",
            list_key,
            signal,
            &base,
            problems,
        ) else {
            continue;
        };
        let mut at = base;
        at.push(key("conditions"));
        stages.extend(stage(
            context,
            &group.conditions,
            at,
            group.error_mode.unwrap_or(error_mode),
            problems,
        ));
    }
    stages
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        match self.compile() {
            Ok(_) => Vec::new(),
            Err(problems) => problems.iter().map(ConfigProblem::to_string).collect(),
        }
    }

    /// Every condition parsed and every legacy matcher compiled, or every problem with
    /// the config path of its node.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        self.compile().err().unwrap_or_default()
    }

    fn compile(&self) -> Result<Compiled, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let mode = self.error_mode;
        let mut c = Compiled::default();
        let t = &self.traces;
        c.traces.extend(stage(
            ContextKind::Resource,
            &t.resource,
            path(&["traces", "resource"]),
            mode,
            &mut problems,
        ));
        c.traces.extend(stage(
            ContextKind::Span,
            &t.span,
            path(&["traces", "span"]),
            mode,
            &mut problems,
        ));
        c.traces.extend(stage(
            ContextKind::SpanEvent,
            &t.spanevent,
            path(&["traces", "spanevent"]),
            mode,
            &mut problems,
        ));
        let m = &self.metrics;
        c.metrics.extend(stage(
            ContextKind::Resource,
            &m.resource,
            path(&["metrics", "resource"]),
            mode,
            &mut problems,
        ));
        c.metrics.extend(stage(
            ContextKind::Metric,
            &m.metric,
            path(&["metrics", "metric"]),
            mode,
            &mut problems,
        ));
        c.metrics.extend(stage(
            ContextKind::DataPoint,
            &m.datapoint,
            path(&["metrics", "datapoint"]),
            mode,
            &mut problems,
        ));
        let l = &self.logs;
        c.logs.extend(stage(
            ContextKind::Resource,
            &l.resource,
            path(&["logs", "resource"]),
            mode,
            &mut problems,
        ));
        c.logs.extend(stage(
            ContextKind::Log,
            &l.log_record,
            path(&["logs", "log_record"]),
            mode,
            &mut problems,
        ));

        for (list, key_name, signal, old_used) in [
            (
                &self.trace_conditions,
                "trace_conditions",
                Signal::Traces,
                !c.traces.is_empty(),
            ),
            (
                &self.metric_conditions,
                "metric_conditions",
                Signal::Metrics,
                !c.metrics.is_empty(),
            ),
            (
                &self.log_conditions,
                "log_conditions",
                Signal::Logs,
                !c.logs.is_empty(),
            ),
        ] {
            if list.is_empty() {
                continue;
            }
            if old_used {
                problems.push(ConfigProblem::at(
                    vec![key(key_name)],
                    format!("cannot be used together with the {} conditions of the older form: move them into {key_name}", signal),
                ));
                continue;
            }
            let stages = context_conditions(list, key_name, signal, mode, &mut problems);
            match signal {
                Signal::Traces => c.traces.extend(stages),
                Signal::Metrics => c.metrics.extend(stages),
                Signal::Logs => c.logs.extend(stages),
            }
        }

        let mut legacy = LegacyCompiler {
            problems: &mut problems,
        };
        for (which, spec) in [("include", &m.include), ("exclude", &m.exclude)] {
            let Some(spec) = spec else { continue };
            let at = ["metrics", which];
            let Some(regexp) = legacy.match_type(&at, &spec.match_type) else {
                continue;
            };
            let compiled = CompiledMetricMatch {
                names: legacy.patterns(&at, "metric_names", regexp, &spec.metric_names),
                resource: legacy.attributes(
                    &at,
                    "resource_attributes",
                    regexp,
                    &spec.resource_attributes,
                ),
            };
            if which == "include" {
                c.metric_include = Some(compiled)
            } else {
                c.metric_exclude = Some(compiled)
            }
        }
        for (which, spec) in [("include", &l.include), ("exclude", &l.exclude)] {
            let Some(spec) = spec else { continue };
            let at = ["logs", which];
            let Some(regexp) = legacy.match_type(&at, &spec.match_type) else {
                continue;
            };
            let severity = match &spec.severity_number {
                None => None,
                Some(s) => match severity_number(&s.min) {
                    Some(n) => Some((n, s.match_undefined)),
                    None => {
                        legacy.problems.push(ConfigProblem::at(
                            path(&["logs", which, "severity_number", "min"]),
                            format!("{:?} is not a valid severity: use TRACE, DEBUG, INFO, WARN, ERROR, FATAL (optionally 2-4 appended) or 1-24", s.min),
                        ));
                        None
                    }
                },
            };
            let compiled = CompiledLogMatch {
                resource: legacy.attributes(
                    &at,
                    "resource_attributes",
                    regexp,
                    &spec.resource_attributes,
                ),
                record: legacy.attributes(
                    &at,
                    "record_attributes",
                    regexp,
                    &spec.record_attributes,
                ),
                severity_texts: legacy.patterns(
                    &at,
                    "severity_texts",
                    regexp,
                    &spec.severity_texts,
                ),
                bodies: legacy.patterns(&at, "bodies", regexp, &spec.bodies),
                severity,
            };
            if which == "include" {
                c.log_include = Some(compiled)
            } else {
                c.log_exclude = Some(compiled)
            }
        }
        for (which, spec) in [
            ("include", &self.spans.include),
            ("exclude", &self.spans.exclude),
        ] {
            let Some(spec) = spec else { continue };
            let at = ["spans", which];
            let Some(regexp) = legacy.match_type(&at, &spec.match_type) else {
                continue;
            };
            let mut kinds = Vec::new();
            for (i, k) in spec.span_kinds.iter().enumerate() {
                match oxcol_ottl_span_kind(k) {
                    Some(n) => kinds.push(n),
                    None => legacy.problems.push(ConfigProblem::at(
                        vec![key("spans"), key(which), key("span_kinds"), PathSegment::Index(i)],
                        format!("{k:?} is not a span kind: use SPAN_KIND_INTERNAL, SPAN_KIND_SERVER, SPAN_KIND_CLIENT, SPAN_KIND_PRODUCER, SPAN_KIND_CONSUMER or SPAN_KIND_UNSPECIFIED"),
                    )),
                }
            }
            let compiled = CompiledSpanMatch {
                services: legacy.patterns(&at, "services", regexp, &spec.services),
                names: legacy.patterns(&at, "span_names", regexp, &spec.span_names),
                attributes: legacy.attributes(&at, "attributes", regexp, &spec.attributes),
                resources: legacy.attributes(&at, "resources", regexp, &spec.resources),
                kinds,
            };
            if which == "include" {
                c.span_include = Some(compiled)
            } else {
                c.span_exclude = Some(compiled)
            }
        }

        if (c.metric_include.is_some() || c.metric_exclude.is_some()) && !c.metrics.is_empty() {
            problems.push(ConfigProblem::at(path(&["metrics"]), "cannot use OTTL conditions and include/exclude for metrics at the same time: choose one"));
        }
        if (c.log_include.is_some() || c.log_exclude.is_some()) && !c.logs.is_empty() {
            problems.push(ConfigProblem::at(path(&["logs"]), "cannot use OTTL conditions and include/exclude for logs at the same time: choose one"));
        }
        if (c.span_include.is_some() || c.span_exclude.is_some()) && !c.traces.is_empty() {
            problems.push(ConfigProblem::at(
                path(&["spans"]),
                "cannot use OTTL conditions and spans include/exclude at the same time: choose one",
            ));
        }
        if problems.is_empty() {
            Ok(c)
        } else {
            Err(problems)
        }
    }
}

fn oxcol_ottl_span_kind(name: &str) -> Option<i32> {
    [
        "SPAN_KIND_UNSPECIFIED",
        "SPAN_KIND_INTERNAL",
        "SPAN_KIND_SERVER",
        "SPAN_KIND_CLIENT",
        "SPAN_KIND_PRODUCER",
        "SPAN_KIND_CONSUMER",
    ]
    .iter()
    .position(|k| *k == name)
    .map(|p| p as i32)
}

fn service_name(resource: Option<&Resource>) -> String {
    resource
        .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
        .and_then(|a| a.value.as_ref())
        .map(|v| {
            oxcol_ottl::Value::from_any(v)
                .to_string_like()
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

impl CompiledMetricMatch {
    fn matches(&self, resource: Option<&Resource>, metric: &Metric) -> bool {
        any_pattern(&self.names, &metric.name)
            && all_match(&self.resource, resource.map_or(&[][..], |r| &r.attributes))
    }
}

impl CompiledLogMatch {
    fn matches(&self, resource: Option<&Resource>, log: &LogRecord) -> bool {
        let body = oxcol_ottl::Value::from_any_opt(log.body.as_ref());
        let body_matches = self.bodies.is_empty()
            || matches!(&body, oxcol_ottl::Value::Str(s) if any_pattern(&self.bodies, s));
        let severity_matches = match self.severity {
            None => true,
            Some((min, undefined)) => {
                log.severity_number >= min || (undefined && log.severity_number == 0)
            }
        };
        all_match(&self.resource, resource.map_or(&[][..], |r| &r.attributes))
            && all_match(&self.record, &log.attributes)
            && (self.severity_texts.is_empty()
                || any_pattern(&self.severity_texts, &log.severity_text))
            && body_matches
            && severity_matches
    }
}

impl CompiledSpanMatch {
    fn matches(&self, resource: Option<&Resource>, span: &Span) -> bool {
        (self.services.is_empty() || any_pattern(&self.services, &service_name(resource)))
            && any_pattern(&self.names, &span.name)
            && all_match(&self.attributes, &span.attributes)
            && all_match(&self.resources, resource.map_or(&[][..], |r| &r.attributes))
            && (self.kinds.is_empty() || self.kinds.contains(&span.kind))
    }
}

/// Evaluates a stage on one item; errors follow the stage's error_mode.
fn any_true(
    stage: &ConditionStage,
    item: &Item<'_>,
    ignored: &mut Vec<EvalError>,
    failure: &mut Option<EvalError>,
) -> bool {
    for c in &stage.conditions {
        match c.matches(item) {
            Ok(true) => return true,
            Ok(false) => {}
            Err(e) => match stage.error_mode {
                ErrorMode::Propagate => {
                    failure.get_or_insert(e);
                    return false;
                }
                ErrorMode::Ignore => ignored.push(e),
                ErrorMode::Silent => {}
            },
        }
    }
    false
}

/// Keeps the items of `include` (when set) then drops those of `exclude`.
fn legacy_keep(include: bool, exclude: bool) -> bool {
    include && !exclude
}

pub struct FilterProcessor {
    id: String,
    compiled: Compiled,
}

impl FilterProcessor {
    pub fn new(id: &str, config: &Config) -> Result<FilterProcessor, String> {
        let compiled = config.compile().map_err(|p| {
            p.iter()
                .map(ConfigProblem::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        Ok(FilterProcessor {
            id: id.to_string(),
            compiled,
        })
    }

    fn reads(&self, signal: Signal) -> bool {
        let c = &self.compiled;
        match signal {
            Signal::Traces => {
                !c.traces.is_empty() || c.span_include.is_some() || c.span_exclude.is_some()
            }
            Signal::Metrics => {
                !c.metrics.is_empty() || c.metric_include.is_some() || c.metric_exclude.is_some()
            }
            Signal::Logs => {
                !c.logs.is_empty() || c.log_include.is_some() || c.log_exclude.is_some()
            }
        }
    }

    pub fn filter_traces(
        &self,
        data: &mut Vec<ResourceSpans>,
        ignored: &mut Vec<EvalError>,
    ) -> Result<(), EvalError> {
        let c = &self.compiled;
        filter_signal(
            data,
            &c.traces,
            c.span_include.as_ref(),
            c.span_exclude.as_ref(),
            ignored,
        )
    }

    pub fn filter_metrics(
        &self,
        data: &mut Vec<ResourceMetrics>,
        ignored: &mut Vec<EvalError>,
    ) -> Result<(), EvalError> {
        let c = &self.compiled;
        filter_signal(
            data,
            &c.metrics,
            c.metric_include.as_ref(),
            c.metric_exclude.as_ref(),
            ignored,
        )
    }

    pub fn filter_logs(
        &self,
        data: &mut Vec<ResourceLogs>,
        ignored: &mut Vec<EvalError>,
    ) -> Result<(), EvalError> {
        let c = &self.compiled;
        filter_signal(
            data,
            &c.logs,
            c.log_include.as_ref(),
            c.log_exclude.as_ref(),
            ignored,
        )
    }
}

/// One signal's OTLP tree (resource, scope, record) as the filter walks it.
trait SignalTree {
    type Scoped;
    type Record;
    /// The legacy include/exclude matcher of the signal.
    type Legacy;
    /// The OTTL context of a record (span, metric, log record).
    const RECORD: ContextKind;
    fn resource(&self) -> Option<&Resource>;
    fn split(&mut self) -> (Option<&Resource>, &mut Vec<Self::Scoped>);
    fn scope(scoped: &Self::Scoped) -> Option<&InstrumentationScope>;
    fn split_scoped(
        scoped: &mut Self::Scoped,
    ) -> (Option<&InstrumentationScope>, &mut Vec<Self::Record>);
    fn item<'a>(
        resource: Option<&'a Resource>,
        scope: Option<&'a InstrumentationScope>,
        record: &'a Self::Record,
    ) -> Item<'a>;
    fn legacy_matches(
        legacy: &Self::Legacy,
        resource: Option<&Resource>,
        record: &Self::Record,
    ) -> bool;
    /// Drops the parts of records a stage of a context below the record (span events,
    /// data points) matches.
    fn filter_parts(
        _stage: &ConditionStage,
        _resource: Option<&Resource>,
        _scope: Option<&InstrumentationScope>,
        _records: &mut Vec<Self::Record>,
        _ignored: &mut Vec<EvalError>,
        _failure: &mut Option<EvalError>,
    ) {
    }
}

/// Runs the OTTL stages in order (a propagated error stops at the end of its stage), then
/// the legacy include/exclude match, then removes scopes without records and resources
/// without scopes.
fn filter_signal<R: SignalTree>(
    data: &mut Vec<R>,
    stages: &[ConditionStage],
    include: Option<&R::Legacy>,
    exclude: Option<&R::Legacy>,
    ignored: &mut Vec<EvalError>,
) -> Result<(), EvalError> {
    let mut failure = None;
    for stage in stages {
        match stage.context {
            ContextKind::Resource => data.retain(|r| {
                !any_true(
                    stage,
                    &Item::Resource {
                        resource: r.resource(),
                    },
                    ignored,
                    &mut failure,
                )
            }),
            ContextKind::Scope => {
                for r in data.iter_mut() {
                    let (resource, scoped) = r.split();
                    scoped.retain(|s| {
                        let item = Item::Scope {
                            resource,
                            scope: R::scope(s),
                        };
                        !any_true(stage, &item, ignored, &mut failure)
                    });
                }
            }
            context => {
                for r in data.iter_mut() {
                    let (resource, scoped) = r.split();
                    for s in scoped.iter_mut() {
                        let (scope, records) = R::split_scoped(s);
                        if context == R::RECORD {
                            records.retain(|record| {
                                !any_true(
                                    stage,
                                    &R::item(resource, scope, record),
                                    ignored,
                                    &mut failure,
                                )
                            });
                        } else {
                            R::filter_parts(stage, resource, scope, records, ignored, &mut failure);
                        }
                    }
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
    }
    if include.is_some() || exclude.is_some() {
        for r in data.iter_mut() {
            let (resource, scoped) = r.split();
            for s in scoped.iter_mut() {
                R::split_scoped(s).1.retain(|record| {
                    legacy_keep(
                        include.is_none_or(|m| R::legacy_matches(m, resource, record)),
                        exclude.is_some_and(|m| R::legacy_matches(m, resource, record)),
                    )
                });
            }
        }
    }
    for r in data.iter_mut() {
        r.split().1.retain_mut(|s| !R::split_scoped(s).1.is_empty());
    }
    data.retain_mut(|r| !r.split().1.is_empty());
    Ok(())
}

impl SignalTree for ResourceSpans {
    type Scoped = ScopeSpans;
    type Record = Span;
    type Legacy = CompiledSpanMatch;
    const RECORD: ContextKind = ContextKind::Span;
    fn resource(&self) -> Option<&Resource> {
        self.resource.as_ref()
    }
    fn split(&mut self) -> (Option<&Resource>, &mut Vec<ScopeSpans>) {
        (self.resource.as_ref(), &mut self.scope_spans)
    }
    fn scope(scoped: &ScopeSpans) -> Option<&InstrumentationScope> {
        scoped.scope.as_ref()
    }
    fn split_scoped(scoped: &mut ScopeSpans) -> (Option<&InstrumentationScope>, &mut Vec<Span>) {
        (scoped.scope.as_ref(), &mut scoped.spans)
    }
    fn item<'a>(
        resource: Option<&'a Resource>,
        scope: Option<&'a InstrumentationScope>,
        span: &'a Span,
    ) -> Item<'a> {
        Item::Span {
            resource,
            scope,
            span,
        }
    }
    fn legacy_matches(
        legacy: &CompiledSpanMatch,
        resource: Option<&Resource>,
        span: &Span,
    ) -> bool {
        legacy.matches(resource, span)
    }
    fn filter_parts(
        stage: &ConditionStage,
        resource: Option<&Resource>,
        scope: Option<&InstrumentationScope>,
        spans: &mut Vec<Span>,
        ignored: &mut Vec<EvalError>,
        failure: &mut Option<EvalError>,
    ) {
        for span in spans.iter_mut() {
            let keep: Vec<bool> = {
                let span: &Span = span;
                span.events
                    .iter()
                    .map(|event| {
                        !any_true(
                            stage,
                            &Item::SpanEvent {
                                resource,
                                scope,
                                span,
                                event,
                            },
                            ignored,
                            failure,
                        )
                    })
                    .collect()
            };
            let mut flags = keep.into_iter();
            span.events.retain(|_| flags.next().unwrap_or(true));
        }
    }
}

impl SignalTree for ResourceMetrics {
    type Scoped = ScopeMetrics;
    type Record = Metric;
    type Legacy = CompiledMetricMatch;
    const RECORD: ContextKind = ContextKind::Metric;
    fn resource(&self) -> Option<&Resource> {
        self.resource.as_ref()
    }
    fn split(&mut self) -> (Option<&Resource>, &mut Vec<ScopeMetrics>) {
        (self.resource.as_ref(), &mut self.scope_metrics)
    }
    fn scope(scoped: &ScopeMetrics) -> Option<&InstrumentationScope> {
        scoped.scope.as_ref()
    }
    fn split_scoped(
        scoped: &mut ScopeMetrics,
    ) -> (Option<&InstrumentationScope>, &mut Vec<Metric>) {
        (scoped.scope.as_ref(), &mut scoped.metrics)
    }
    fn item<'a>(
        resource: Option<&'a Resource>,
        scope: Option<&'a InstrumentationScope>,
        metric: &'a Metric,
    ) -> Item<'a> {
        Item::Metric {
            resource,
            scope,
            metric,
        }
    }
    fn legacy_matches(
        legacy: &CompiledMetricMatch,
        resource: Option<&Resource>,
        metric: &Metric,
    ) -> bool {
        legacy.matches(resource, metric)
    }
    /// Drops the data points a `datapoint` stage matches, then metrics left without any.
    fn filter_parts(
        stage: &ConditionStage,
        resource: Option<&Resource>,
        scope: Option<&InstrumentationScope>,
        metrics: &mut Vec<Metric>,
        ignored: &mut Vec<EvalError>,
        failure: &mut Option<EvalError>,
    ) {
        for metric in metrics.iter_mut() {
            let keep: Vec<bool> = {
                let metric: &Metric = metric;
                DataPointRef::of_metric(metric)
                    .into_iter()
                    .map(|point| {
                        !any_true(
                            stage,
                            &Item::DataPoint {
                                resource,
                                scope,
                                metric,
                                point,
                            },
                            ignored,
                            failure,
                        )
                    })
                    .collect()
            };
            retain_points(metric, &keep);
        }
        metrics.retain(|m| oxcol_core::batch::metric_points(m) > 0);
    }
}

impl SignalTree for ResourceLogs {
    type Scoped = ScopeLogs;
    type Record = LogRecord;
    type Legacy = CompiledLogMatch;
    const RECORD: ContextKind = ContextKind::Log;
    fn resource(&self) -> Option<&Resource> {
        self.resource.as_ref()
    }
    fn split(&mut self) -> (Option<&Resource>, &mut Vec<ScopeLogs>) {
        (self.resource.as_ref(), &mut self.scope_logs)
    }
    fn scope(scoped: &ScopeLogs) -> Option<&InstrumentationScope> {
        scoped.scope.as_ref()
    }
    fn split_scoped(
        scoped: &mut ScopeLogs,
    ) -> (Option<&InstrumentationScope>, &mut Vec<LogRecord>) {
        (scoped.scope.as_ref(), &mut scoped.log_records)
    }
    fn item<'a>(
        resource: Option<&'a Resource>,
        scope: Option<&'a InstrumentationScope>,
        log: &'a LogRecord,
    ) -> Item<'a> {
        Item::Log {
            resource,
            scope,
            log,
        }
    }
    fn legacy_matches(
        legacy: &CompiledLogMatch,
        resource: Option<&Resource>,
        log: &LogRecord,
    ) -> bool {
        legacy.matches(resource, log)
    }
}

fn retain_points(metric: &mut Metric, keep: &[bool]) {
    fn retain<T>(v: &mut Vec<T>, keep: &[bool]) {
        let mut flags = keep.iter();
        v.retain(|_| *flags.next().unwrap_or(&true));
    }
    match &mut metric.data {
        None => {}
        Some(metric::Data::Gauge(g)) => retain(&mut g.data_points, keep),
        Some(metric::Data::Sum(s)) => retain(&mut s.data_points, keep),
        Some(metric::Data::Histogram(h)) => retain(&mut h.data_points, keep),
        Some(metric::Data::ExponentialHistogram(h)) => retain(&mut h.data_points, keep),
        Some(metric::Data::Summary(s)) => retain(&mut s.data_points, keep),
    }
}

impl Processor for FilterProcessor {
    fn process(&mut self, mut batch: Batch) -> Result<Batch, Refusal> {
        let signal = batch.signal();
        if !self.reads(signal) {
            return Ok(batch);
        }
        let invalid = |e: &dyn std::fmt::Display| Refusal::Invalid {
            reason: format!("processor {:?}: {e}", self.id),
        };
        let mut ignored = Vec::new();
        let result = match signal {
            Signal::Traces => {
                let data = batch.traces_mut().map_err(|e| invalid(&e))?;
                self.filter_traces(data, &mut ignored)
            }
            Signal::Metrics => {
                let data = batch.metrics_mut().map_err(|e| invalid(&e))?;
                self.filter_metrics(data, &mut ignored)
            }
            Signal::Logs => {
                let data = batch.logs_mut().map_err(|e| invalid(&e))?;
                self.filter_logs(data, &mut ignored)
            }
        };
        for e in &ignored {
            tracing::warn!(processor = %self.id, error = %e, "filter condition failed; treated as false (error_mode: ignore)");
        }
        // As the Collector, whose error is not permanent: its receivers answer
        // "unavailable" and clients retry.
        result.map_err(|e| Refusal::Unavailable {
            reason: format!("processor {:?}: {e}", self.id),
        })?;
        batch.recount();
        Ok(batch)
    }
}
