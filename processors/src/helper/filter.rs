//! `include`/`exclude` match properties, as the Collector's `internal/filter`
//! (`filterconfig`, `filterset`, `filtermatcher`, `filterspan`, `filterlog`,
//! `filtermetric`) applies them to spans, log records and metrics.
//!
//! An item is skipped when `include` is set and does not match, or `exclude` is set and
//! matches. Within one properties block every property that is set must match. Lists
//! (`services`, `span_names`, `metric_names`, ...) match when any entry matches;
//! `attributes` and `resources` need every entry; every `libraries` entry must match the
//! scope. `strict` compares whole strings; `regexp` matches anywhere in the string
//! (Go's unanchored `MatchString`), so anchor patterns with `^...$` for a full match.
//!
//! Collector quirk kept on purpose (its output is the oracle): for metrics only
//! `metric_names` is evaluated; `resources` is accepted and ignored (contrib issue
//! #50248), and an `include` without `metric_names` includes everything.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use regex::Regex;
use serde::Deserialize;

use super::pvalue::{self, ConfigValue};

/// `include` and `exclude`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MatchConfig {
    pub include: Option<MatchProperties>,
    pub exclude: Option<MatchProperties>,
}

/// One `include` or `exclude` block.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MatchProperties {
    /// `strict` or `regexp`.
    pub match_type: String,
    /// The Collector's regexp cache settings; accepted, not needed (compiled regexes are
    /// matched directly).
    pub regexp: Option<RegexpConfig>,
    pub services: Vec<String>,
    pub span_names: Vec<String>,
    pub span_kinds: Vec<String>,
    pub log_bodies: Vec<String>,
    pub log_severity_texts: Vec<String>,
    pub log_severity_number: Option<SeverityNumberProperties>,
    pub metric_names: Vec<String>,
    pub attributes: Vec<AttributeProperty>,
    pub resources: Vec<AttributeProperty>,
    pub libraries: Vec<LibraryProperty>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RegexpConfig {
    pub cacheenabled: bool,
    pub cachemaxnumentries: i64,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AttributeProperty {
    pub key: String,
    /// Absent: the key only has to exist.
    pub value: Option<ConfigValue>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LibraryProperty {
    pub name: String,
    /// Absent: any version; present (even "") it must match.
    pub version: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SeverityNumberProperties {
    /// The lowest severity number that matches: a number (9 = INFO) or a name
    /// (`INFO`, `WARN3`, ...).
    pub min: SeverityNumber,
    /// Whether records without a severity number match.
    pub match_undefined: bool,
}

/// A log severity number, written as a number or as its name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeverityNumber(pub i32);

impl<'de> Deserialize<'de> for SeverityNumber {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ConfigValue(value) = ConfigValue::deserialize(deserializer)?;
        match value.value {
            Some(Value::IntValue(i)) => i32::try_from(i).map(SeverityNumber).map_err(|_| serde::de::Error::custom(format!("severity number {i} is out of range"))),
            Some(Value::StringValue(name)) => severity_from_name(&name)
                .map(SeverityNumber)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown severity {name:?}: use a number 1-24 or a name such as INFO, WARN, ERROR, FATAL (optionally 2-4, e.g. INFO2)"))),
            _ => Err(serde::de::Error::custom("severity must be a number 1-24 or a name such as INFO")),
        }
    }
}

fn severity_from_name(name: &str) -> Option<i32> {
    let upper = name.to_ascii_uppercase();
    let (base, rest) = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
        .iter()
        .enumerate()
        .find_map(|(i, b)| upper.strip_prefix(b).map(|rest| (i as i32 * 4 + 1, rest)))?;
    match rest {
        "" | "1" => Some(base),
        "2" => Some(base + 1),
        "3" => Some(base + 2),
        "4" => Some(base + 3),
        _ => None,
    }
}

/// The signal a match config is applied to (the valid properties differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Spans,
    Logs,
    Metrics,
}

const SPAN_KINDS: [&str; 5] = [
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_CONSUMER",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_SERVER",
];

/// Strings to match: exact (`strict`) or by regex (`regexp`).
#[derive(Clone, Debug)]
enum StringSet {
    Strict(Vec<String>),
    Regexp(Vec<Regex>),
}

impl StringSet {
    fn new(items: &[String], match_type: &str, what: &str) -> Result<StringSet, String> {
        match match_type {
            "strict" => Ok(StringSet::Strict(items.to_vec())),
            "regexp" => items
                .iter()
                .map(|p| {
                    Regex::new(p).map_err(|e| format!("{what} {p:?} is not a valid regex: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(StringSet::Regexp),
            other => Err(unknown_match_type(other)),
        }
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            StringSet::Strict(items) => items.iter().any(|i| i == text),
            StringSet::Regexp(regexes) => regexes.iter().any(|r| r.is_match(text)),
        }
    }
}

fn unknown_match_type(found: &str) -> String {
    format!("match_type {found:?} is not valid: set match_type to strict or regexp")
}

#[derive(Clone, Debug)]
enum ValueMatch {
    Exists,
    Equals(AnyValue),
    Regex(StringSet),
}

#[derive(Clone, Debug)]
struct AttributeMatcher {
    key: String,
    value: ValueMatch,
}

fn attribute_matchers(
    properties: &[AttributeProperty],
    match_type: &str,
    what: &str,
) -> Result<Vec<AttributeMatcher>, String> {
    let mut out = Vec::new();
    for property in properties {
        if property.key.is_empty() {
            return Err(format!("{what}: an entry has an empty \"key\""));
        }
        let value = match &property.value {
            None => ValueMatch::Exists,
            Some(ConfigValue(value)) => match match_type {
                "regexp" => match &value.value {
                    Some(Value::StringValue(pattern)) => ValueMatch::Regex(StringSet::new(
                        std::slice::from_ref(pattern),
                        match_type,
                        what,
                    )?),
                    _ => {
                        return Err(format!(
                            "{what} {:?}: match_type regexp only supports string values, found {}",
                            property.key,
                            pvalue::type_name(value)
                        ));
                    }
                },
                "strict" => ValueMatch::Equals(value.clone()),
                other => return Err(unknown_match_type(other)),
            },
        };
        out.push(AttributeMatcher {
            key: property.key.clone(),
            value,
        });
    }
    Ok(out)
}

/// The text the regexp matcher compares (the Collector's `attributeStringValue`); None
/// for maps, slices, bytes and empty values, which never match.
fn attribute_string_value(value: &AnyValue) -> Option<String> {
    match &value.value {
        Some(Value::StringValue(s)) => Some(s.clone()),
        Some(Value::BoolValue(b)) => Some(b.to_string()),
        Some(Value::DoubleValue(d)) => Some(oxcol_ottl::value::format_double(*d)),
        Some(Value::IntValue(i)) => Some(i.to_string()),
        _ => None,
    }
}

fn attributes_match(matchers: &[AttributeMatcher], attrs: &[KeyValue]) -> bool {
    if matchers.is_empty() {
        return true;
    }
    if attrs.is_empty() {
        return false;
    }
    matchers.iter().all(|m| {
        let Some(value) = pvalue::get(attrs, &m.key) else {
            return false;
        };
        match &m.value {
            ValueMatch::Exists => true,
            ValueMatch::Equals(expected) => pvalue::values_equal(expected, value),
            ValueMatch::Regex(set) => {
                attribute_string_value(value).is_some_and(|text| set.matches(&text))
            }
        }
    })
}

#[derive(Clone, Debug)]
struct LibraryMatcher {
    name: StringSet,
    version: Option<StringSet>,
}

/// One compiled properties block.
#[derive(Clone, Debug, Default)]
struct Matcher {
    services: Option<StringSet>,
    span_names: Option<StringSet>,
    span_kinds: Option<StringSet>,
    log_bodies: Option<StringSet>,
    severity_texts: Option<StringSet>,
    severity_number: Option<(i32, bool)>,
    metric_names: Option<StringSet>,
    libraries: Vec<LibraryMatcher>,
    attributes: Vec<AttributeMatcher>,
    resources: Vec<AttributeMatcher>,
    /// False for a metrics block without `metric_names` (the Collector builds no matcher).
    active: bool,
}

fn optional_set(
    items: &[String],
    match_type: &str,
    what: &str,
) -> Result<Option<StringSet>, String> {
    if items.is_empty() {
        Ok(None)
    } else {
        StringSet::new(items, match_type, what).map(Some)
    }
}

impl MatchProperties {
    /// The Collector's `ValidateFor{Spans,Logs,Metrics}`.
    fn validate_for(&self, signal: Signal) -> Result<(), String> {
        match signal {
            Signal::Spans => {
                let invalid: Vec<&str> = [
                    ("log_bodies", !self.log_bodies.is_empty()),
                    ("log_severity_texts", !self.log_severity_texts.is_empty()),
                    ("log_severity_number", self.log_severity_number.is_some()),
                    ("metric_names", !self.metric_names.is_empty()),
                ]
                .iter()
                .filter(|(_, set)| *set)
                .map(|(name, _)| *name)
                .collect();
                if !invalid.is_empty() {
                    return Err(format!(
                        "{} cannot be used for spans: remove it",
                        invalid.join(", ")
                    ));
                }
                if self.services.is_empty()
                    && self.span_names.is_empty()
                    && self.attributes.is_empty()
                    && self.libraries.is_empty()
                    && self.resources.is_empty()
                    && self.span_kinds.is_empty()
                {
                    return Err("set at least one of services, span_names, span_kinds, attributes, resources, libraries".into());
                }
                if self.match_type == "strict"
                    && let Some(kind) = self
                        .span_kinds
                        .iter()
                        .find(|k| !SPAN_KINDS.contains(&k.as_str()))
                {
                    return Err(format!(
                        "span_kinds {kind:?} is not a span kind: with match_type strict use one of {}",
                        SPAN_KINDS.join(", ")
                    ));
                }
            }
            Signal::Logs => {
                if !self.span_names.is_empty()
                    || !self.services.is_empty()
                    || !self.span_kinds.is_empty()
                    || !self.metric_names.is_empty()
                {
                    return Err("services, span_names, span_kinds and metric_names cannot be used for log records: remove them".into());
                }
                if self.attributes.is_empty()
                    && self.libraries.is_empty()
                    && self.resources.is_empty()
                    && self.log_bodies.is_empty()
                    && self.log_severity_texts.is_empty()
                    && self.log_severity_number.is_none()
                {
                    return Err("set at least one of attributes, libraries, resources, log_bodies, log_severity_texts, log_severity_number".into());
                }
            }
            Signal::Metrics => {
                if !self.log_bodies.is_empty()
                    || !self.log_severity_texts.is_empty()
                    || !self.span_names.is_empty()
                    || !self.services.is_empty()
                    || !self.span_kinds.is_empty()
                    || !self.attributes.is_empty()
                    || !self.libraries.is_empty()
                    || self.log_severity_number.is_some()
                {
                    return Err("span_names, span_kinds, log_bodies, log_severity_texts, log_severity_number, services, attributes and libraries cannot be used for metrics: only metric_names (and resources, which the Collector ignores for metrics)".into());
                }
                if self.metric_names.is_empty() && self.resources.is_empty() {
                    return Err("set metric_names (or resources) for metrics".into());
                }
            }
        }
        Ok(())
    }

    fn compile(&self, signal: Signal) -> Result<Matcher, String> {
        self.validate_for(signal)?;
        let mt = self.match_type.as_str();
        if signal == Signal::Metrics {
            // filtermetric: only a name matcher, and none without metric_names.
            return Ok(Matcher {
                metric_names: optional_set(&self.metric_names, mt, "metric_names")?,
                active: !self.metric_names.is_empty(),
                ..Default::default()
            });
        }
        let mut libraries = Vec::new();
        for library in &self.libraries {
            let name = StringSet::new(std::slice::from_ref(&library.name), mt, "libraries name")?;
            let version = match &library.version {
                Some(v) => Some(StringSet::new(
                    std::slice::from_ref(v),
                    mt,
                    "libraries version",
                )?),
                None => None,
            };
            libraries.push(LibraryMatcher { name, version });
        }
        let mut matcher = Matcher {
            libraries,
            attributes: attribute_matchers(&self.attributes, mt, "attributes")?,
            resources: attribute_matchers(&self.resources, mt, "resources")?,
            active: true,
            ..Default::default()
        };
        match signal {
            Signal::Spans => {
                matcher.services = optional_set(&self.services, mt, "services")?;
                matcher.span_names = optional_set(&self.span_names, mt, "span_names")?;
                matcher.span_kinds = optional_set(&self.span_kinds, mt, "span_kinds")?;
            }
            Signal::Logs => {
                matcher.log_bodies = optional_set(&self.log_bodies, mt, "log_bodies")?;
                matcher.severity_texts =
                    optional_set(&self.log_severity_texts, mt, "log_severity_texts")?;
                matcher.severity_number = self
                    .log_severity_number
                    .as_ref()
                    .map(|s| (s.min.0, s.match_undefined));
            }
            Signal::Metrics => {}
        }
        Ok(matcher)
    }
}

impl Matcher {
    fn common(
        &self,
        attrs: &[KeyValue],
        resource: Option<&Resource>,
        scope: Option<&InstrumentationScope>,
    ) -> bool {
        let (scope_name, scope_version) =
            scope.map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
        for library in &self.libraries {
            if !library.name.matches(scope_name) {
                return false;
            }
            if library
                .version
                .as_ref()
                .is_some_and(|v| !v.matches(scope_version))
            {
                return false;
            }
        }
        if !self.resources.is_empty()
            && !attributes_match(&self.resources, resource.map_or(&[][..], |r| &r.attributes))
        {
            return false;
        }
        attributes_match(&self.attributes, attrs)
    }

    fn span(
        &self,
        span: &Span,
        resource: Option<&Resource>,
        scope: Option<&InstrumentationScope>,
    ) -> bool {
        if let Some(services) = &self.services {
            let name = resource
                .and_then(|r| pvalue::get(&r.attributes, "service.name"))
                .map_or_else(|| "<nil-service-name>".to_string(), pvalue::as_string);
            if !services.matches(&name) {
                return false;
            }
        }
        if self
            .span_names
            .as_ref()
            .is_some_and(|s| !s.matches(&span.name))
        {
            return false;
        }
        if self
            .span_kinds
            .as_ref()
            .is_some_and(|s| !s.matches(span_kind_name(span.kind)))
        {
            return false;
        }
        self.common(&span.attributes, resource, scope)
    }

    fn log(
        &self,
        record: &LogRecord,
        resource: Option<&Resource>,
        scope: Option<&InstrumentationScope>,
    ) -> bool {
        if let Some(bodies) = &self.log_bodies {
            let body = record
                .body
                .as_ref()
                .map_or_else(String::new, pvalue::as_string);
            if !bodies.matches(&body) {
                return false;
            }
        }
        if self
            .severity_texts
            .as_ref()
            .is_some_and(|s| !s.matches(&record.severity_text))
        {
            return false;
        }
        if let Some((min, match_undefined)) = self.severity_number {
            let matched = if record.severity_number == 0 {
                match_undefined
            } else {
                record.severity_number >= min
            };
            if !matched {
                return false;
            }
        }
        self.common(&record.attributes, resource, scope)
    }
}

/// The Collector's `traceutil.SpanKindStr`.
pub fn span_kind_name(kind: i32) -> &'static str {
    match kind {
        0 => "SPAN_KIND_UNSPECIFIED",
        1 => "SPAN_KIND_INTERNAL",
        2 => "SPAN_KIND_SERVER",
        3 => "SPAN_KIND_CLIENT",
        4 => "SPAN_KIND_PRODUCER",
        5 => "SPAN_KIND_CONSUMER",
        _ => "",
    }
}

/// Compiled `include`/`exclude` for one signal.
#[derive(Clone, Debug, Default)]
pub struct Skip {
    include: Option<Matcher>,
    exclude: Option<Matcher>,
}

impl MatchConfig {
    /// Every problem of `include` and `exclude` for `signal`.
    pub fn validate(&self, signal: Signal) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, properties) in [("include", &self.include), ("exclude", &self.exclude)] {
            if let Some(properties) = properties
                && let Err(e) = properties.compile(signal)
            {
                problems.push(format!("{name}: {e}"));
            }
        }
        problems
    }

    pub fn compile(&self, signal: Signal) -> Result<Skip, String> {
        let problems = self.validate(signal);
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let compile =
            |p: &Option<MatchProperties>| p.as_ref().map(|p| p.compile(signal)).transpose();
        Ok(Skip {
            include: compile(&self.include)?.filter(|m| m.active),
            exclude: compile(&self.exclude)?.filter(|m| m.active),
        })
    }

    /// Whether a properties block is set at all.
    pub fn is_set(&self) -> bool {
        self.include.is_some() || self.exclude.is_some()
    }
}

impl Skip {
    fn skip(&self, matches: impl Fn(&Matcher) -> bool) -> bool {
        self.include.as_ref().is_some_and(|m| !matches(m))
            || self.exclude.as_ref().is_some_and(matches)
    }

    pub fn span(
        &self,
        span: &Span,
        resource: Option<&Resource>,
        scope: Option<&InstrumentationScope>,
    ) -> bool {
        self.skip(|m| m.span(span, resource, scope))
    }

    pub fn log(
        &self,
        record: &LogRecord,
        resource: Option<&Resource>,
        scope: Option<&InstrumentationScope>,
    ) -> bool {
        self.skip(|m| m.log(record, resource, scope))
    }

    pub fn metric(&self, metric: &Metric) -> bool {
        self.skip(|m| {
            m.metric_names
                .as_ref()
                .is_none_or(|names| names.matches(&metric.name))
        })
    }
}

#[cfg(test)]
mod tests;
