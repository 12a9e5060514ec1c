//! The `operators` list (stanza operators) as configured, and the chain they make: each
//! operator passes an entry to its `output` (default: the next one in the list; after the
//! last, the receiver's output). Supported types: `container`, `regex_parser`,
//! `json_parser`, `severity_parser`, `time_parser`, `move`, `copy`, `add`, `remove`,
//! `router`, `recombine`, `filter`, `noop`; parsers take `parse_from`, `parse_to`,
//! `preserve_to`, embedded `timestamp` and `severity` blocks; every operator takes `id`,
//! `output`, `on_error` and `if`.
//!
//! The chain never loses track of an entry's file range: entries dropped (by `filter`, a
//! router without a match, `on_error: drop`) report their marks as done, and entries held
//! by `recombine` (or the container parser's partial-line recombination) report theirs as
//! held, so the reader does not checkpoint past them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use oxcol_core::GoDuration;
use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::entry::{Entry, Field, Mark};
use super::expr::Expr;
use super::time::{Layout, Location};

// ---------------------------------------------------------------- config

/// `output`: one operator id or a list.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Outputs {
    One(String),
    Many(Vec<String>),
}

impl Outputs {
    fn ids(&self) -> Vec<String> {
        match self {
            Outputs::One(id) => vec![id.clone()],
            Outputs::Many(ids) => ids.clone(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimestampConfig {
    pub parse_from: Field,
    #[serde(default)]
    pub layout_type: Option<String>,
    #[serde(default)]
    pub layout: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeverityConfig {
    pub parse_from: Field,
    #[serde(default)]
    pub preset: Option<String>,
    #[serde(default)]
    pub mapping: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    pub overwrite_text: bool,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    pub size: u64,
}

/// Keys every parser has (stanza's ParserConfig), written out per operator because serde
/// cannot combine `flatten` with `deny_unknown_fields`.
macro_rules! operator_config {
    ($name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        #[derive(Clone, Debug, Deserialize, PartialEq, Default)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            #[serde(default)]
            pub id: Option<String>,
            #[serde(default)]
            pub output: Option<Outputs>,
            #[serde(default)]
            pub on_error: Option<String>,
            #[serde(default, rename = "if")]
            pub if_expr: Option<String>,
            $(#[serde(default)] pub $field: $ty,)*
        }
    };
}

operator_config!(ContainerConfig {
    format: Option<String>,
    add_metadata_from_filepath: Option<bool>,
    max_log_size: Option<super::ByteSize>,
    parse_from: Option<Field>,
    parse_to: Option<Field>,
});
operator_config!(RegexConfig {
    regex: String,
    parse_from: Option<Field>,
    parse_to: Option<Field>,
    preserve_to: Option<Field>,
    body: Option<Field>,
    timestamp: Option<TimestampConfig>,
    severity: Option<SeverityConfig>,
    cache: Option<CacheConfig>,
});
operator_config!(JsonConfig {
    parse_from: Option<Field>,
    parse_to: Option<Field>,
    preserve_to: Option<Field>,
    body: Option<Field>,
    timestamp: Option<TimestampConfig>,
    severity: Option<SeverityConfig>,
});
operator_config!(SeverityParserConfig {
    parse_from: Option<Field>,
    preset: Option<String>,
    mapping: Option<BTreeMap<String, Value>>,
    overwrite_text: bool,
});
operator_config!(TimeParserConfig {
    parse_from: Option<Field>,
    layout_type: Option<String>,
    layout: Option<String>,
    location: Option<String>,
});
operator_config!(MoveConfig { from: Option<Field>, to: Option<Field> });
operator_config!(AddConfig { field: Option<Field>, value: Value });
operator_config!(RemoveConfig { field: Option<Field> });
operator_config!(FilterConfig { expr: String, drop_ratio: Option<f64> });
operator_config!(NoopConfig {});
operator_config!(RecombineConfig {
    combine_field: Option<Field>,
    combine_with: Option<String>,
    is_first_entry: Option<String>,
    is_last_entry: Option<String>,
    source_identifier: Option<Field>,
    max_batch_size: Option<usize>,
    max_unmatched_batch_size: Option<usize>,
    overwrite_with: Option<String>,
    force_flush_period: Option<GoDuration>,
    max_sources: Option<usize>,
    max_log_size: Option<super::ByteSize>,
});

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub expr: String,
    pub output: Outputs,
    #[serde(default)]
    pub attributes: Option<BTreeMap<String, Value>>,
}

operator_config!(RouterConfig {
    routes: Vec<Route>,
    default: Option<Outputs>,
});

/// One entry of `operators`, by its `type`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type")]
pub enum OperatorConfig {
    #[serde(rename = "container")]
    Container(ContainerConfig),
    #[serde(rename = "regex_parser")]
    Regex(RegexConfig),
    #[serde(rename = "json_parser")]
    Json(JsonConfig),
    #[serde(rename = "severity_parser")]
    Severity(SeverityParserConfig),
    #[serde(rename = "time_parser")]
    Time(TimeParserConfig),
    #[serde(rename = "move")]
    Move(MoveConfig),
    #[serde(rename = "copy")]
    Copy(MoveConfig),
    #[serde(rename = "add")]
    Add(AddConfig),
    #[serde(rename = "remove")]
    Remove(RemoveConfig),
    #[serde(rename = "router")]
    Router(RouterConfig),
    #[serde(rename = "recombine")]
    Recombine(RecombineConfig),
    #[serde(rename = "filter")]
    Filter(FilterConfig),
    #[serde(rename = "noop")]
    Noop(NoopConfig),
}

struct Common<'a> {
    type_name: &'static str,
    id: &'a Option<String>,
    output: &'a Option<Outputs>,
    on_error: &'a Option<String>,
    if_expr: &'a Option<String>,
}

impl OperatorConfig {
    fn common(&self) -> Common<'_> {
        macro_rules! c {
            ($t:expr, $c:expr) => {
                Common {
                    type_name: $t,
                    id: &$c.id,
                    output: &$c.output,
                    on_error: &$c.on_error,
                    if_expr: &$c.if_expr,
                }
            };
        }
        match self {
            OperatorConfig::Container(c) => c!("container", c),
            OperatorConfig::Regex(c) => c!("regex_parser", c),
            OperatorConfig::Json(c) => c!("json_parser", c),
            OperatorConfig::Severity(c) => c!("severity_parser", c),
            OperatorConfig::Time(c) => c!("time_parser", c),
            OperatorConfig::Move(c) => c!("move", c),
            OperatorConfig::Copy(c) => c!("copy", c),
            OperatorConfig::Add(c) => c!("add", c),
            OperatorConfig::Remove(c) => c!("remove", c),
            OperatorConfig::Router(c) => c!("router", c),
            OperatorConfig::Recombine(c) => c!("recombine", c),
            OperatorConfig::Filter(c) => c!("filter", c),
            OperatorConfig::Noop(c) => c!("noop", c),
        }
    }

    /// The operator's id (default: its type).
    pub fn id(&self) -> String {
        let common = self.common();
        common
            .id
            .clone()
            .unwrap_or_else(|| common.type_name.to_string())
    }
}

// ---------------------------------------------------------------- runtime

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnError {
    Send,
    SendQuiet,
    Drop,
    DropQuiet,
}

/// Where an operator's entries go: operator indexes; empty = the receiver's output.
type Next = Vec<usize>;

struct TimeParser {
    from: Field,
    layout: Layout,
    location: Location,
}

struct SeverityParser {
    from: Field,
    mapping: HashMap<String, i32>,
    overwrite_text: bool,
}

/// What parsers share: where from/to, and the embedded timestamp/severity.
struct ParseSettings {
    from: Field,
    to: Field,
    preserve_to: Option<Field>,
    body: Option<Field>,
    timestamp: Option<TimeParser>,
    severity: Option<SeverityParser>,
}

enum Kind {
    Container(Box<Container>),
    Regex(Regex, ParseSettings),
    Json(ParseSettings),
    Severity(SeverityParser),
    Time(TimeParser),
    Move(Field, Field),
    Copy(Field, Field),
    Add(Field, Value),
    Remove(Field),
    Router(Vec<(Expr, Next, Map<String, Value>)>, Option<Next>),
    Recombine(Box<Recombine>),
    Filter(Expr),
    Noop,
}

struct Operator {
    id: String,
    kind: Kind,
    next: Next,
    on_error: OnError,
    condition: Option<Expr>,
}

/// What one operator did with an entry.
enum Outcome {
    /// To the operator's outputs (none, one, or several completed entries).
    Forward(Vec<Entry>),
    /// To these operators (a router's choice).
    To(Next, Entry),
    Dropped(Vec<Mark>),
    /// Failed: `on_error` decides (the entry as it was before the operator when it can be).
    Failed(String, Entry),
}

/// What running entries through the chain produced.
#[derive(Debug, Default)]
pub struct Output {
    pub entries: Vec<Entry>,
    /// Marks of entries dropped (done, nothing to send).
    pub dropped: Vec<Mark>,
}

impl Output {
    /// Every file range this output completes: the emitted entries' and the dropped ones.
    pub fn marks(&self) -> Vec<Mark> {
        let mut done = self.dropped.clone();
        done.extend(self.entries.iter().flat_map(|e| e.marks.iter().copied()));
        done
    }
}

pub struct Chain {
    operators: Vec<Operator>,
    /// Wall-clock year, for timestamps without one.
    pub year: i64,
}

/// Longest path through the chain (router loops are refused at build).
const MAX_HOPS: usize = 64;

fn on_error(value: &Option<String>) -> Result<OnError, String> {
    Ok(match value.as_deref() {
        None | Some("send") => OnError::Send,
        Some("send_quiet") => OnError::SendQuiet,
        Some("drop") => OnError::Drop,
        Some("drop_quiet") => OnError::DropQuiet,
        Some(other) => {
            return Err(format!(
                "on_error {other:?} is not one of send, send_quiet, drop, drop_quiet"
            ));
        }
    })
}

fn location(value: &Option<String>) -> Result<Location, String> {
    match value.as_deref() {
        None | Some("") | Some("Local") => Ok(Location::Local),
        Some("UTC") | Some("Etc/UTC") | Some("GMT") => Ok(Location::Utc),
        Some(other) => Err(format!(
            "location {other:?} is not supported; use UTC or Local, or a layout with a zone offset"
        )),
    }
}

fn time_parser(
    from: Field,
    layout_type: &Option<String>,
    layout: &Option<String>,
    loc: &Option<String>,
) -> Result<TimeParser, String> {
    let layout_type = layout_type.as_deref().unwrap_or("strptime");
    let Some(layout) = layout.as_deref() else {
        return Err("timestamp parsing needs `layout`".to_string());
    };
    Ok(TimeParser {
        from,
        layout: Layout::new(layout_type, layout)?,
        location: location(loc)?,
    })
}

/// stanza's default severity mapping plus `preset` and `mapping`.
fn severity_mapping(
    preset: &Option<String>,
    mapping: &Option<BTreeMap<String, Value>>,
) -> Result<HashMap<String, i32>, String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "fatal"];
    let mut names: HashMap<String, i32> = HashMap::new();
    for (i, level) in LEVELS.iter().enumerate() {
        let base = i as i32 * 4 + 1;
        names.insert(level.to_string(), base);
        for k in 2..=4 {
            names.insert(format!("{level}{k}"), base + k - 1);
        }
    }
    let mut map: HashMap<String, i32> = HashMap::new();
    match preset.as_deref() {
        Some("none") => {}
        Some("otel") | Some("aliases") => {
            map.extend(names.clone());
            map.extend((1..=24).map(|n| (n.to_string(), n)));
        }
        None | Some("") | Some("default") => {
            map.extend(names.clone());
            map.extend((1..=24).map(|n| (n.to_string(), n)));
            for (alias, level) in [("warning", "warn"), ("err", "error")] {
                map.insert(alias.to_string(), names[level]);
                for k in 2..=4 {
                    map.insert(format!("{alias}{k}"), names[&format!("{level}{k}")]);
                }
            }
        }
        Some(other) => {
            return Err(format!(
                "severity preset {other:?} is not one of default, otel, aliases, none"
            ));
        }
    }
    for (level, values) in mapping.iter().flatten() {
        let Some(number) = names.get(&level.to_lowercase()).copied() else {
            return Err(format!(
                "severity mapping key {level:?} is not a severity (trace, debug, info, warn, error, fatal, optionally with 2-4)"
            ));
        };
        let list = match values {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        for value in list {
            for text in parseable(&value)? {
                map.insert(text, number);
            }
        }
    }
    Ok(map)
}

/// The widest `{min, max}` severity range a mapping may name.
const MAX_SEVERITY_RANGE: u64 = 100_000;

fn parseable(value: &Value) -> Result<Vec<String>, String> {
    // Expanded into one map entry per number, as stanza does; a range wider than
    // MAX_SEVERITY_RANGE would take unbounded memory, so it is refused.
    let range = |min: i64, max: i64| -> Result<Vec<String>, String> {
        let (low, high) = (min.min(max), min.max(max));
        if high.abs_diff(low) >= MAX_SEVERITY_RANGE {
            return Err(format!(
                "severity range {{min: {min}, max: {max}}} spans more than {MAX_SEVERITY_RANGE} numbers"
            ));
        }
        Ok((low..=high).map(|n| n.to_string()).collect())
    };
    Ok(match value {
        Value::Number(n) => vec![n.to_string()],
        Value::String(s) => match s.as_str() {
            "2xx" => range(200, 299)?,
            "3xx" => range(300, 399)?,
            "4xx" => range(400, 499)?,
            "5xx" => range(500, 599)?,
            other => vec![other.to_lowercase()],
        },
        Value::Object(m) => match (
            m.get("min").and_then(Value::as_i64),
            m.get("max").and_then(Value::as_i64),
        ) {
            (Some(min), Some(max)) => range(min, max)?,
            _ => return Err("a severity range needs integer min and max".to_string()),
        },
        other => return Err(format!("{other} cannot be parsed as a severity")),
    })
}

const SEVERITY_NAMES: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

fn severity_name(number: i32) -> String {
    if number <= 0 {
        return "DEFAULT".to_string();
    }
    let level = ((number - 1) / 4).min(5) as usize;
    let step = (number - 1) % 4 + 1;
    if step == 1 {
        SEVERITY_NAMES[level].to_string()
    } else {
        format!("{}{step}", SEVERITY_NAMES[level])
    }
}

impl SeverityParser {
    fn build(
        from: Field,
        preset: &Option<String>,
        mapping: &Option<BTreeMap<String, Value>>,
        overwrite_text: bool,
    ) -> Result<SeverityParser, String> {
        Ok(SeverityParser {
            from,
            mapping: severity_mapping(preset, mapping)?,
            overwrite_text,
        })
    }

    fn apply(&self, entry: &mut Entry) -> Result<(), String> {
        let Some(value) = entry.get(&self.from) else {
            return Err(format!("severity field {} does not exist", self.from));
        };
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => return Err(format!("type {other} cannot be parsed as a severity")),
        };
        let number = self.mapping.get(&text.to_lowercase()).copied().unwrap_or(0);
        entry.severity = number;
        entry.severity_text = if self.overwrite_text && number > 0 {
            severity_name(number)
        } else {
            text
        };
        Ok(())
    }
}

impl TimeParser {
    fn apply(&self, entry: &mut Entry, year: i64) -> Result<(), String> {
        let Some(value) = entry.get(&self.from) else {
            return Err(format!("time field {} does not exist", self.from));
        };
        entry.timestamp = Some(self.layout.parse(value, self.location, year)?);
        Ok(())
    }
}

impl ParseSettings {
    fn build(
        from: &Option<Field>,
        to: &Option<Field>,
        preserve_to: &Option<Field>,
        body: &Option<Field>,
        timestamp: &Option<TimestampConfig>,
        severity: &Option<SeverityConfig>,
    ) -> Result<ParseSettings, String> {
        Ok(ParseSettings {
            from: from.clone().unwrap_or_else(Field::body),
            to: to.clone().unwrap_or(Field {
                root: super::entry::Root::Attributes,
                path: Vec::new(),
            }),
            preserve_to: preserve_to.clone(),
            body: body.clone(),
            timestamp: timestamp
                .as_ref()
                .map(|t| time_parser(t.parse_from.clone(), &t.layout_type, &t.layout, &t.location))
                .transpose()?,
            severity: severity
                .as_ref()
                .map(|s| {
                    SeverityParser::build(
                        s.parse_from.clone(),
                        &s.preset,
                        &s.mapping,
                        s.overwrite_text,
                    )
                })
                .transpose()?,
        })
    }

    /// Stores a parse result: merged into `parse_to` (a map there keeps its other keys),
    /// then `body`, timestamp and severity.
    fn store(
        &self,
        entry: &mut Entry,
        parsed: Map<String, Value>,
        year: i64,
    ) -> Result<(), String> {
        // The parsed field stays (stanza no longer removes it); `preserve_to` copies it.
        if let Some(preserve) = &self.preserve_to {
            if let Some(original) = entry.get(&self.from).cloned() {
                entry.set(preserve, original);
            }
        }
        entry.merge(&self.to, parsed);
        if let Some(body) = &self.body {
            if let Some(value) = entry.get(body).cloned() {
                entry.set(&Field::body(), value);
            }
        }
        if let Some(timestamp) = &self.timestamp {
            timestamp.apply(entry, year)?;
        }
        if let Some(severity) = &self.severity {
            severity.apply(entry)?;
        }
        Ok(())
    }
}

/// Named captures of `regex` in `text`, as stanza's MatchValues (unmatched groups left out).
pub fn match_values(regex: &Regex, text: &str) -> Option<Map<String, Value>> {
    let captures = regex.captures(text)?;
    let mut out = Map::new();
    for name in regex.capture_names().flatten() {
        if let Some(m) = captures.name(name) {
            out.insert(name.to_string(), Value::String(m.as_str().to_string()));
        }
    }
    Some(out)
}

/// JSON as stanza's json_parser decodes it (numbers are floats, as Go's `any`).
pub fn parse_json_object(text: &str) -> Result<Map<String, Value>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    match floats(value) {
        Value::Object(map) => Ok(map),
        other => Err(format!("JSON {other} is not an object")),
    }
}

fn floats(value: Value) -> Value {
    match value {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Value::Array(items) => Value::Array(items.into_iter().map(floats).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, floats(v))).collect()),
        other => other,
    }
}

// ---------------------------------------------------------------- container

pub use super::container::Container;

// ---------------------------------------------------------------- recombine

/// stanza's recombine: entries of one source are joined until an entry matches
/// `is_last_entry` (it ends the batch) or `is_first_entry` (it starts the next one).
pub struct Recombine {
    field: Field,
    with: String,
    first: bool,
    condition: Expr,
    source: Field,
    max_batch_size: usize,
    max_unmatched_batch_size: usize,
    newest: bool,
    force_flush: Duration,
    max_sources: usize,
    max_log_size: usize,
    batches: BTreeMap<String, Batch>,
}

struct Batch {
    entries: Vec<Entry>,
    bytes: usize,
    matched: bool,
    last_added: std::time::Instant,
}

pub struct RecombineSettings {
    pub field: Field,
    pub with: String,
    pub first: bool,
    pub condition: Expr,
    pub source: Field,
    pub max_batch_size: usize,
    pub max_unmatched_batch_size: usize,
    pub newest: bool,
    pub force_flush: Duration,
    pub max_sources: usize,
    pub max_log_size: usize,
}

impl Recombine {
    pub fn new(s: RecombineSettings) -> Recombine {
        Recombine {
            field: s.field,
            with: s.with,
            first: s.first,
            condition: s.condition,
            source: s.source,
            max_batch_size: s.max_batch_size,
            max_unmatched_batch_size: s.max_unmatched_batch_size,
            newest: s.newest,
            force_flush: s.force_flush,
            max_sources: s.max_sources,
            max_log_size: s.max_log_size,
            batches: BTreeMap::new(),
        }
    }

    fn from_config(c: &RecombineConfig) -> Result<Recombine, String> {
        let (first, condition) = match (&c.is_first_entry, &c.is_last_entry) {
            (Some(_), Some(_)) => {
                return Err("only one of is_first_entry and is_last_entry can be set".to_string());
            }
            (None, None) => {
                return Err("one of is_first_entry and is_last_entry must be set".to_string());
            }
            (Some(e), None) => (true, Expr::parse(e)?),
            (None, Some(e)) => (false, Expr::parse(e)?),
        };
        let Some(field) = c.combine_field.clone() else {
            return Err("missing required argument 'combine_field'".to_string());
        };
        let newest = match c.overwrite_with.as_deref() {
            None | Some("oldest") | Some("") => false,
            Some("newest") => true,
            Some(other) => {
                return Err(format!(
                    "invalid value {other:?} for overwrite_with (oldest or newest)"
                ));
            }
        };
        Ok(Recombine::new(RecombineSettings {
            field,
            with: c.combine_with.clone().unwrap_or_else(|| "\n".to_string()),
            first,
            condition,
            source: c
                .source_identifier
                .clone()
                .unwrap_or_else(|| Field::attribute("log.file.path")),
            max_batch_size: c.max_batch_size.unwrap_or(1000),
            max_unmatched_batch_size: c.max_unmatched_batch_size.unwrap_or(100),
            newest,
            force_flush: c
                .force_flush_period
                .map(GoDuration::get)
                .unwrap_or(Duration::from_secs(5)),
            max_sources: c.max_sources.unwrap_or(1000),
            max_log_size: c.max_log_size.map(|b| b.0 as usize).unwrap_or(0),
        }))
    }

    /// Takes one entry; returns the entries it completes.
    pub fn push(&mut self, entry: Entry, now: std::time::Instant, out: &mut Vec<Entry>) {
        let source = entry
            .get_string(&self.source)
            .unwrap_or_else(|| "DefaultSourceIdentifier".to_string());
        let matches = self.condition.matches(&entry);
        if self.first && matches {
            if let Some(batch) = self.batches.remove(&source) {
                out.push(self.combine(batch));
            }
        }
        if !self.batches.contains_key(&source) && self.batches.len() >= self.max_sources {
            // Too many sources: pass the entry through alone.
            out.push(entry);
            return;
        }
        let size = entry
            .get(&self.field)
            .and_then(Value::as_str)
            .map_or(0, str::len);
        let batch = self.batches.entry(source.clone()).or_insert_with(|| Batch {
            entries: Vec::new(),
            bytes: 0,
            matched: false,
            last_added: now,
        });
        batch.entries.push(entry);
        batch.bytes += size;
        batch.last_added = now;
        if self.first && matches {
            batch.matched = true;
        }
        let full = batch.entries.len() >= self.max_batch_size
            || (self.max_log_size > 0 && batch.bytes >= self.max_log_size)
            || (self.first
                && !batch.matched
                && batch.entries.len() >= self.max_unmatched_batch_size);
        if (!self.first && matches) || full {
            if let Some(batch) = self.batches.remove(&source) {
                out.push(self.combine(batch));
            }
        }
    }

    fn combine(&self, batch: Batch) -> Entry {
        let mut entries = batch.entries;
        let marks: Vec<Mark> = entries
            .iter()
            .flat_map(|e| e.marks.iter().copied())
            .collect();
        let parts: Vec<String> = entries
            .iter()
            .filter_map(|e| e.get(&self.field))
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            })
            .collect();
        let mut base = if self.newest {
            entries.pop().unwrap_or_default()
        } else {
            entries.swap_remove(0)
        };
        base.set(&self.field, Value::String(parts.join(&self.with)));
        base.marks = marks;
        base
    }

    /// Batches idle for `force_flush_period` (or all, at `force`).
    pub fn flush(&mut self, now: std::time::Instant, force: bool, out: &mut Vec<Entry>) {
        let due: Vec<String> = self
            .batches
            .iter()
            .filter(|(_, b)| force || now.duration_since(b.last_added) >= self.force_flush)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(batch) = self.batches.remove(&key) {
                out.push(self.combine(batch));
            }
        }
    }

    pub fn held(&self, out: &mut Vec<Mark>) {
        for batch in self.batches.values() {
            for entry in &batch.entries {
                out.extend(entry.marks.iter().copied());
            }
        }
    }

    pub fn clear(&mut self) {
        self.batches.clear();
    }
}

// ---------------------------------------------------------------- building

/// Checks the operator list (ids unique, outputs exist, every setting valid): the
/// messages `validate()` reports.
pub fn problems(configs: &[OperatorConfig]) -> Vec<String> {
    match Chain::build(configs) {
        Ok(_) => Vec::new(),
        Err(problems) => problems,
    }
}

impl Chain {
    pub fn build(configs: &[OperatorConfig]) -> Result<Chain, Vec<String>> {
        let mut problems = Vec::new();
        let ids: Vec<String> = configs.iter().map(OperatorConfig::id).collect();
        for (i, id) in ids.iter().enumerate() {
            if ids[..i].contains(id) {
                problems.push(format!(
                    "operators[{i}]: id {id:?} is used twice; give each operator of the same type its own `id`"
                ));
            }
        }
        let resolve = |outputs: &Outputs, at: usize, problems: &mut Vec<String>| -> Next {
            outputs
                .ids()
                .iter()
                .filter_map(|id| {
                    let found = ids.iter().position(|x| x == id);
                    if found.is_none() {
                        problems.push(format!(
                            "operators[{at}] ({}): output {id:?} is not the id of an operator",
                            ids[at]
                        ));
                    }
                    found
                })
                .collect()
        };
        let mut operators = Vec::new();
        for (i, config) in configs.iter().enumerate() {
            let common = config.common();
            let next = match common.output {
                Some(outputs) => resolve(outputs, i, &mut problems),
                None if i + 1 < configs.len() => vec![i + 1],
                None => Vec::new(),
            };
            let mut fail =
                |what: String| problems.push(format!("operators[{i}] ({}): {what}", ids[i]));
            let on_error = on_error(common.on_error).unwrap_or_else(|e| {
                fail(e);
                OnError::Send
            });
            let condition = match common.if_expr {
                Some(text) => match Expr::parse(text) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        fail(format!("if: {e}"));
                        None
                    }
                },
                None => None,
            };
            let kind = match Self::kind(config, &mut |outputs: &Outputs| {
                resolve(outputs, i, &mut Vec::new())
            }) {
                Ok(kind) => kind,
                Err(e) => {
                    fail(e);
                    continue;
                }
            };
            if let OperatorConfig::Router(router) = config {
                for route in &router.routes {
                    resolve(&route.output, i, &mut problems);
                }
                if let Some(default) = &router.default {
                    resolve(default, i, &mut problems);
                }
            }
            operators.push(Operator {
                id: ids[i].clone(),
                kind,
                next,
                on_error,
                condition,
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let chain = Chain {
            operators,
            year: super::time::year_of(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0),
            ),
        };
        if let Some(id) = chain.loop_at() {
            return Err(vec![format!(
                "operators: {id:?} can reach itself through `output`/routes; operators must form a chain without loops"
            )]);
        }
        Ok(chain)
    }

    fn kind(
        config: &OperatorConfig,
        resolve: &mut dyn FnMut(&Outputs) -> Next,
    ) -> Result<Kind, String> {
        Ok(match config {
            OperatorConfig::Container(c) => Kind::Container(Box::new(Container::from_config(c)?)),
            OperatorConfig::Regex(c) => {
                if c.regex.is_empty() {
                    return Err("missing required field `regex`".to_string());
                }
                let regex = Regex::new(&c.regex).map_err(|e| format!("regex: {e}"))?;
                if regex.capture_names().flatten().next().is_none() {
                    return Err("regex has no named capture groups (?P<name>...)".to_string());
                }
                Kind::Regex(
                    regex,
                    ParseSettings::build(
                        &c.parse_from,
                        &c.parse_to,
                        &c.preserve_to,
                        &c.body,
                        &c.timestamp,
                        &c.severity,
                    )?,
                )
            }
            OperatorConfig::Json(c) => Kind::Json(ParseSettings::build(
                &c.parse_from,
                &c.parse_to,
                &c.preserve_to,
                &c.body,
                &c.timestamp,
                &c.severity,
            )?),
            OperatorConfig::Severity(c) => Kind::Severity(SeverityParser::build(
                c.parse_from.clone().unwrap_or_else(Field::body),
                &c.preset,
                &c.mapping,
                c.overwrite_text,
            )?),
            OperatorConfig::Time(c) => Kind::Time(time_parser(
                c.parse_from
                    .clone()
                    .unwrap_or_else(|| Field::attribute("time")),
                &c.layout_type,
                &c.layout,
                &c.location,
            )?),
            OperatorConfig::Move(c) | OperatorConfig::Copy(c) => {
                let (Some(from), Some(to)) = (&c.from, &c.to) else {
                    return Err("needs both `from` and `to`".to_string());
                };
                if matches!(config, OperatorConfig::Move(_)) {
                    Kind::Move(from.clone(), to.clone())
                } else {
                    Kind::Copy(from.clone(), to.clone())
                }
            }
            OperatorConfig::Add(c) => {
                let Some(field) = &c.field else {
                    return Err("missing required field `field`".to_string());
                };
                if let Value::String(s) = &c.value {
                    if s.starts_with("EXPR(") {
                        return Err(
                            "EXPR(...) values are not supported; use a literal value".to_string()
                        );
                    }
                }
                Kind::Add(field.clone(), c.value.clone())
            }
            OperatorConfig::Remove(c) => {
                let Some(field) = &c.field else {
                    return Err("missing required field `field`".to_string());
                };
                Kind::Remove(field.clone())
            }
            OperatorConfig::Router(c) => {
                let mut routes = Vec::new();
                for route in &c.routes {
                    let attrs = route
                        .attributes
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .collect();
                    routes.push((Expr::parse(&route.expr)?, resolve(&route.output), attrs));
                }
                Kind::Router(routes, c.default.as_ref().map(|d| resolve(d)))
            }
            OperatorConfig::Recombine(c) => Kind::Recombine(Box::new(Recombine::from_config(c)?)),
            OperatorConfig::Filter(c) => {
                if c.drop_ratio.is_some_and(|r| r != 1.0) {
                    return Err("drop_ratio other than 1.0 is not supported".to_string());
                }
                Kind::Filter(Expr::parse(&c.expr)?)
            }
            OperatorConfig::Noop(_) => Kind::Noop,
        })
    }

    fn successors(&self, i: usize) -> Vec<usize> {
        let op = &self.operators[i];
        let mut out = op.next.clone();
        if let Kind::Router(routes, default) = &op.kind {
            out = routes.iter().flat_map(|(_, n, _)| n.clone()).collect();
            out.extend(default.iter().flatten());
        }
        out
    }

    fn loop_at(&self) -> Option<String> {
        // Depth-first search for a cycle.
        fn visit(chain: &Chain, i: usize, state: &mut Vec<u8>) -> bool {
            if state[i] == 1 {
                return true;
            }
            if state[i] == 2 {
                return false;
            }
            state[i] = 1;
            for n in chain.successors(i) {
                if visit(chain, n, state) {
                    return true;
                }
            }
            state[i] = 2;
            false
        }
        let mut state = vec![0u8; self.operators.len()];
        (0..self.operators.len())
            .find(|&i| visit(self, i, &mut state))
            .map(|i| self.operators[i].id.clone())
    }

    pub fn is_empty(&self) -> bool {
        self.operators.is_empty()
    }

    /// Runs one entry from the first operator.
    pub fn process(&mut self, entry: Entry, now: std::time::Instant, out: &mut Output) {
        if self.operators.is_empty() {
            out.entries.push(entry);
            return;
        }
        self.run(0, entry, now, out, 0);
    }

    fn forward(
        &mut self,
        next: &[usize],
        entry: Entry,
        now: std::time::Instant,
        out: &mut Output,
        hops: usize,
    ) {
        match next {
            [] => out.entries.push(entry),
            [only] => self.run(*only, entry, now, out, hops + 1),
            many => {
                for (k, n) in many.iter().enumerate() {
                    let mut copy = entry.clone();
                    if k > 0 {
                        // One file range, one commit: only the first copy carries it.
                        copy.marks.clear();
                    }
                    self.run(*n, copy, now, out, hops + 1);
                }
            }
        }
    }

    fn run(
        &mut self,
        i: usize,
        entry: Entry,
        now: std::time::Instant,
        out: &mut Output,
        hops: usize,
    ) {
        if hops > MAX_HOPS {
            out.dropped.extend(entry.marks);
            return;
        }
        let next = self.operators[i].next.clone();
        if let Some(condition) = &self.operators[i].condition {
            if !condition.matches(&entry) {
                return self.forward(&next, entry, now, out, hops);
            }
        }
        match self.apply(i, entry, now) {
            Outcome::Forward(entries) => {
                for e in entries {
                    self.forward(&next, e, now, out, hops);
                }
            }
            Outcome::To(target, entry) => self.forward(&target, entry, now, out, hops),
            Outcome::Dropped(marks) => out.dropped.extend(marks),
            Outcome::Failed(error, entry) => {
                let op = &self.operators[i];
                if matches!(op.on_error, OnError::Send | OnError::Drop) {
                    tracing::debug!(operator = %op.id, %error, "filelog: operator failed on an entry");
                }
                if matches!(op.on_error, OnError::Drop | OnError::DropQuiet) {
                    out.dropped.extend(entry.marks);
                } else {
                    self.forward(&next, entry, now, out, hops);
                }
            }
        }
    }

    fn apply(&mut self, i: usize, mut entry: Entry, now: std::time::Instant) -> Outcome {
        let year = self.year;
        let result: Result<(), String> = match &mut self.operators[i].kind {
            Kind::Noop => Ok(()),
            Kind::Regex(regex, settings) => match entry.get_string(&settings.from) {
                Some(text) => match match_values(regex, &text) {
                    Some(values) => settings.store(&mut entry, values, year),
                    None => Err(format!("regex pattern does not match {text:?}")),
                },
                None => Err(format!(
                    "field {} is missing or not a string",
                    settings.from
                )),
            },
            Kind::Json(settings) => match entry.get(&settings.from) {
                Some(Value::String(text)) => match parse_json_object(&text.clone()) {
                    Ok(values) => settings.store(&mut entry, values, year),
                    Err(e) => Err(e),
                },
                _ => Err(format!(
                    "field {} is missing or not a string",
                    settings.from
                )),
            },
            Kind::Severity(parser) => parser.apply(&mut entry),
            Kind::Time(parser) => parser.apply(&mut entry, year),
            Kind::Move(from, to) => match entry.delete(from) {
                Some(value) => {
                    entry.set(to, value);
                    Ok(())
                }
                None => Err(format!("move: field {from} does not exist")),
            },
            Kind::Copy(from, to) => match entry.get(from).cloned() {
                Some(value) => {
                    entry.set(to, value);
                    Ok(())
                }
                None => Err(format!("copy: field {from} does not exist")),
            },
            Kind::Add(field, value) => {
                entry.set(field, value.clone());
                Ok(())
            }
            Kind::Remove(field) => match entry.delete(field) {
                Some(_) => Ok(()),
                None => Err(format!("remove: field {field} does not exist")),
            },
            Kind::Filter(expr) => {
                if expr.matches(&entry) {
                    return Outcome::Dropped(entry.marks);
                }
                Ok(())
            }
            Kind::Router(routes, default) => {
                let target = routes
                    .iter()
                    .find(|(expr, _, _)| expr.matches(&entry))
                    .map(|(_, next, attrs)| (next.clone(), attrs.clone()));
                return match (target, default.clone()) {
                    (Some((next, attrs)), _) => {
                        for (k, v) in attrs {
                            entry.attributes.insert(k, v);
                        }
                        Outcome::To(next, entry)
                    }
                    (None, Some(next)) => Outcome::To(next, entry),
                    (None, None) => Outcome::Dropped(entry.marks),
                };
            }
            Kind::Recombine(recombine) => {
                let mut done = Vec::new();
                recombine.push(entry, now, &mut done);
                return Outcome::Forward(done);
            }
            Kind::Container(container) => {
                let original = entry.clone();
                let mut done = Vec::new();
                return match container.process(entry, now, year, &mut done) {
                    Ok(()) => Outcome::Forward(done),
                    Err(e) => Outcome::Failed(e, original),
                };
            }
        };
        match result {
            Ok(()) => Outcome::Forward(vec![entry]),
            Err(e) => Outcome::Failed(e, entry),
        }
    }

    /// Entries held by recombining operators past their flush period (all with `force`).
    pub fn flush(&mut self, now: std::time::Instant, force: bool, out: &mut Output) {
        for i in 0..self.operators.len() {
            let mut done = Vec::new();
            match &mut self.operators[i].kind {
                Kind::Recombine(r) => r.flush(now, force, &mut done),
                Kind::Container(c) => c.flush(now, force, &mut done),
                _ => continue,
            }
            let next = self.operators[i].next.clone();
            for entry in done {
                self.forward(&next, entry, now, out, 0);
            }
        }
    }

    /// File ranges of entries held inside operators.
    pub fn held(&self) -> Vec<Mark> {
        let mut out = Vec::new();
        for op in &self.operators {
            match &op.kind {
                Kind::Recombine(r) => r.held(&mut out),
                Kind::Container(c) => c.held(&mut out),
                _ => {}
            }
        }
        out
    }

    /// Forgets held entries (they are read again after a refusal).
    pub fn clear(&mut self) {
        for op in &mut self.operators {
            match &mut op.kind {
                Kind::Recombine(r) => r.clear(),
                Kind::Container(c) => c.clear(),
                _ => {}
            }
        }
    }
}
