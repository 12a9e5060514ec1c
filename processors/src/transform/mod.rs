//! `transform`: changes spans, metrics and logs with OTTL statements, as the Collector's
//! transform processor does. Statements are parsed once when the processor is built.
//!
//! Config (the Collector's keys): `error_mode`, `trace_statements`, `metric_statements`,
//! `log_statements`, each a list whose entries are either a statement (flat form; its
//! context is inferred from its path prefixes, e.g. `set(span.name, "x")`) or a group
//! `{context, statements, conditions, error_mode}`. Groups run in order over the whole
//! batch; inside a group every statement runs in order on each item, and only on items
//! where at least one of the group's `conditions` is true (conditions are ORed).
//!
//! `error_mode`: `propagate` (default) refuses the batch as invalid on the first error;
//! `ignore` logs it and goes on with the next statement; `silent` goes on without logging.

use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use oxcol_core::{Batch, Processor, Refusal, Signal};
use oxcol_ottl::config::{ConfigProblem, PathSegment, key};
use oxcol_ottl::{
    ErrorMode, EvalError, StatementGroup, infer_context_in, parse_condition, parse_statement,
};
use serde::Deserialize;

pub use crate::helper::ottl_config::contexts_of;
use crate::helper::ottl_config::{EntryGroup, FlatOrGroup, context_names, group_context};

#[cfg(test)]
mod tests;

pub const TYPE: &str = "transform";
pub const ALIASES: &[&str] = &["transform"];

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Default for every group: `ignore` (the Collector's transform default since it
    /// changed from `propagate`), `propagate`, `silent`.
    pub error_mode: ErrorMode,
    pub trace_statements: Vec<ContextStatements>,
    pub metric_statements: Vec<ContextStatements>,
    pub log_statements: Vec<ContextStatements>,
    /// The Collector's `flatten_data` (logs only); not supported: must stay false.
    pub flatten_data: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            error_mode: ErrorMode::Ignore,
            trace_statements: Vec::new(),
            metric_statements: Vec::new(),
            log_statements: Vec::new(),
            flatten_data: false,
        }
    }
}

/// One entry of a `*_statements` list: a statement whose context is inferred from its
/// paths, or a group.
pub type ContextStatements = FlatOrGroup<Group>;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// `resource`, `scope`, `span`, `spanevent`, `metric`, `datapoint`, `log`; inferred
    /// from the statements when absent.
    #[serde(default)]
    pub context: Option<String>,
    pub statements: Vec<String>,
    /// Run the statements only on items where any of these is true.
    #[serde(default)]
    pub conditions: Vec<String>,
    /// Overrides the processor's error_mode for this group.
    #[serde(default)]
    pub error_mode: Option<ErrorMode>,
}

impl EntryGroup for Group {
    const EXPECTING: &'static str =
        "a statement or a group {context, statements, conditions, error_mode}";
}

/// Compiled statement groups per signal.
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    pub traces: Vec<StatementGroup>,
    pub metrics: Vec<StatementGroup>,
    pub logs: Vec<StatementGroup>,
}

impl Config {
    /// Every problem, as messages (statement problems say the position inside the
    /// statement).
    pub fn validate(&self) -> Vec<String> {
        match self.compile() {
            Ok(_) => Vec::new(),
            Err(problems) => problems.iter().map(ConfigProblem::to_string).collect(),
        }
    }

    /// Every problem with the config path of the node it is in.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        self.compile().err().unwrap_or_default()
    }

    /// Parses every statement and condition, or returns every problem with the config
    /// path of the node it is in.
    pub fn compile(&self) -> Result<Compiled, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        if self.flatten_data {
            problems.push(ConfigProblem::at(
                vec![key("flatten_data")],
                "flatten_data is not supported by oxcol: remove it (statements that change resource attributes from the log context change the resource shared by its records)",
            ));
        }
        let compiled = Compiled {
            traces: compile_list(
                &self.trace_statements,
                "trace_statements",
                Signal::Traces,
                self.error_mode,
                &mut problems,
            ),
            metrics: compile_list(
                &self.metric_statements,
                "metric_statements",
                Signal::Metrics,
                self.error_mode,
                &mut problems,
            ),
            logs: compile_list(
                &self.log_statements,
                "log_statements",
                Signal::Logs,
                self.error_mode,
                &mut problems,
            ),
        };
        if problems.is_empty() {
            Ok(compiled)
        } else {
            Err(problems)
        }
    }
}

fn compile_list(
    entries: &[ContextStatements],
    list_key: &str,
    signal: Signal,
    error_mode: ErrorMode,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<StatementGroup> {
    let mut groups = Vec::new();
    let flat: Vec<(usize, &str)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            if let ContextStatements::Flat(t) = e {
                Some((i, t.as_str()))
            } else {
                None
            }
        })
        .collect();
    if !flat.is_empty() {
        if flat.len() != entries.len() {
            problems.push(ConfigProblem::at(
                vec![key(list_key)],
                "mixes statement strings and groups: use only strings (context inferred) or only groups {context, statements}",
            ));
            return groups;
        }
        // As the Collector does, all flat statements form one group whose context is
        // inferred from all of them. Each is checked alone first, so that a syntax error
        // is reported at its own statement.
        let mut syntax_ok = true;
        for (index, text) in &flat {
            if let Err(e) = oxcol_ottl::check_syntax(text) {
                problems.push(ConfigProblem::parse(
                    vec![key(list_key), PathSegment::Index(*index)],
                    "statement",
                    text,
                    &e,
                ));
                syntax_ok = false;
            }
        }
        if !syntax_ok {
            return groups;
        }
        let texts: Vec<&str> = flat.iter().map(|(_, t)| *t).collect();
        let context = match infer_context_in(&texts, contexts_of(signal)) {
            Ok(c) if contexts_of(signal).contains(&c) => c,
            Ok(c) => {
                problems.push(ConfigProblem::at(
                    vec![key(list_key)],
                    format!("the statements refer to the {} context, which {list_key} cannot use (use one of {})", c.name(), context_names(signal)),
                ));
                return groups;
            }
            Err(e) => {
                problems.push(ConfigProblem::at(vec![key(list_key)], e.message));
                return groups;
            }
        };
        let mut statements = Vec::new();
        for (index, text) in &flat {
            match parse_statement(text, context) {
                Ok(s) => statements.push(s),
                Err(e) => problems.push(ConfigProblem::parse(
                    vec![key(list_key), PathSegment::Index(*index)],
                    "statement",
                    text,
                    &e,
                )),
            }
        }
        groups.push(StatementGroup::new(
            context,
            statements,
            Vec::new(),
            error_mode,
        ));
        return groups;
    }
    for (index, entry) in entries.iter().enumerate() {
        let base = vec![key(list_key), PathSegment::Index(index)];
        match entry {
            ContextStatements::Flat(_) => {}
            ContextStatements::Group(group) => {
                let texts: Vec<&str> = group
                    .statements
                    .iter()
                    .chain(&group.conditions)
                    .map(String::as_str)
                    .collect();
                let named = group.context.as_deref();
                let Some(context) = group_context(
                    named,
                    &texts,
                    "statements",
                    list_key,
                    signal,
                    &base,
                    problems,
                ) else {
                    continue;
                };
                let mut statements = Vec::new();
                for (i, text) in group.statements.iter().enumerate() {
                    let path =
                        [base.clone(), vec![key("statements"), PathSegment::Index(i)]].concat();
                    match parse_statement(text, context) {
                        Ok(s) => statements.push(s),
                        Err(e) => problems.push(ConfigProblem::parse(path, "statement", text, &e)),
                    }
                }
                let mut conditions = Vec::new();
                for (i, text) in group.conditions.iter().enumerate() {
                    let path =
                        [base.clone(), vec![key("conditions"), PathSegment::Index(i)]].concat();
                    match parse_condition(text, context) {
                        Ok(c) => conditions.push(c),
                        Err(e) => problems.push(ConfigProblem::parse(path, "condition", text, &e)),
                    }
                }
                groups.push(StatementGroup::new(
                    context,
                    statements,
                    conditions,
                    group.error_mode.unwrap_or(error_mode),
                ));
            }
        }
    }
    groups
}

pub struct TransformProcessor {
    id: String,
    compiled: Compiled,
}

impl TransformProcessor {
    pub fn new(id: &str, config: &Config) -> Result<TransformProcessor, String> {
        let compiled = config.compile().map_err(|problems| {
            problems
                .iter()
                .map(ConfigProblem::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        Ok(TransformProcessor {
            id: id.to_string(),
            compiled,
        })
    }

    fn finish(
        &self,
        result: Result<(), EvalError>,
        ignored: Vec<EvalError>,
    ) -> Result<(), Refusal> {
        for error in &ignored {
            tracing::warn!(processor = %self.id, error = %error, "transform statement failed; continuing (error_mode: ignore)");
        }
        // As the Collector, whose error is not permanent: its receivers answer
        // "unavailable" and clients retry.
        result.map_err(|e| Refusal::Unavailable {
            reason: format!("processor {:?}: {e}", self.id),
        })
    }

    pub fn transform_traces(&self, data: &mut [ResourceSpans]) -> Result<(), Refusal> {
        let mut ignored = Vec::new();
        let result = self
            .compiled
            .traces
            .iter()
            .try_for_each(|g| g.run_traces(data, &mut ignored));
        self.finish(result, ignored)
    }

    pub fn transform_metrics(&self, data: &mut [ResourceMetrics]) -> Result<(), Refusal> {
        let mut ignored = Vec::new();
        let result = self
            .compiled
            .metrics
            .iter()
            .try_for_each(|g| g.run_metrics(data, &mut ignored));
        self.finish(result, ignored)
    }

    pub fn transform_logs(&self, data: &mut [ResourceLogs]) -> Result<(), Refusal> {
        let mut ignored = Vec::new();
        let result = self
            .compiled
            .logs
            .iter()
            .try_for_each(|g| g.run_logs(data, &mut ignored));
        self.finish(result, ignored)
    }
}

impl Processor for TransformProcessor {
    fn process(&mut self, mut batch: Batch) -> Result<Batch, Refusal> {
        let invalid = |e: oxcol_core::batch::BatchError| Refusal::Invalid {
            reason: format!("processor {:?}: {e}", self.id),
        };
        match batch.signal() {
            Signal::Traces if !self.compiled.traces.is_empty() => {
                let data = batch.traces_mut().map_err(invalid)?;
                self.transform_traces(data)?;
            }
            Signal::Metrics if !self.compiled.metrics.is_empty() => {
                let data = batch.metrics_mut().map_err(invalid)?;
                self.transform_metrics(data)?;
                // Metric functions can add metrics (extract_sum_metric, ...).
                batch.recount();
            }
            Signal::Logs if !self.compiled.logs.is_empty() => {
                let data = batch.logs_mut().map_err(invalid)?;
                self.transform_logs(data)?;
            }
            _ => {}
        }
        Ok(batch)
    }
}
