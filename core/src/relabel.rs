//! Prometheus relabeling (`relabel_config`), the one implementation shared by the
//! `relabel` processor and the `prometheus` scrape receiver.
//!
//! Semantics follow Prometheus' `model/relabel/relabel.go` (3.x): the YAML keys and their
//! defaults (`separator: ";"`, `regex: "(.*)"`, `replacement: "$1"`, `action: replace`),
//! its validation messages, regexes compiled fully anchored as `^(?s:<regex>)$` with
//! Go's RE2 syntax, every action, Go's `Regexp.Expand` template rules (`$1x` names the
//! group `1x`; `${1}x` is group 1 then `x`), "an empty value removes the label", and the
//! checks the scrape loop applies after metric relabeling ([`check_result`]).
//!
//! Where Rust and Go differ, this module translates so that results are Go's:
//! - `\d`, `\w`, `\s`, `\b` (and their negations) are ASCII-only in Go and Unicode in
//!   Rust's `regex`: patterns are rewritten to the ASCII classes before compiling.
//! - `\Q...\E` (Go literal text) is not Rust syntax: it is rewritten to escaped literals.
//! - `$name` expansion is done here (Rust's `Captures::expand` reads `$01` as group 1;
//!   Go reads it as the name `01`, which never exists).
//! - `lowercase`/`uppercase` use per-character simple case mapping as Go's
//!   `strings.ToLower`/`ToUpper` do (`ß` stays `ß`; Rust's `to_uppercase` gives `SS`).
//!
//! A label set here is a [`LabelSet`]: sorted by name, names unique, no empty values
//! (Prometheus: "empty labels are the same as missing labels"). Each rule sees the
//! sorted output of the rule before it.
//!
//! This module must never allocate per rule more than the strings it produces, and never
//! panic on any input: configs are checked by [`compile`], label sets may be anything.

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;
use serde::Deserialize;

/// Prometheus' `relabel_config`, as written in YAML. Every key is optional; the defaults
/// are Prometheus' (see each field). Decode a list of these and [`compile`] it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    /// Labels whose values are joined with `separator` into the value the regex sees.
    /// A missing label reads as `""`. Default: none (the value is `""`).
    #[serde(default)]
    pub source_labels: Option<Vec<String>>,
    /// Default `;`.
    #[serde(default)]
    pub separator: Option<String>,
    /// RE2 regex, fully anchored. Default `(.*)`. An explicit `""` matches only `""`.
    #[serde(default)]
    pub regex: Option<String>,
    /// For `hashmod`: the modulus (required, non-zero). Default 0.
    #[serde(default)]
    pub modulus: Option<u64>,
    /// The label written by `replace`, `hashmod`, `lowercase`, `uppercase`, or compared
    /// by `keepequal`/`dropequal`. `replace` expands `$1`/`${name}` in it. Default none.
    #[serde(default)]
    pub target_label: Option<String>,
    /// For `replace` and `labelmap`: the template of the new value (or name). Default `$1`.
    #[serde(default)]
    pub replacement: Option<String>,
    /// One of `replace` (default), `keep`, `drop`, `keepequal`, `dropequal`, `hashmod`,
    /// `labelmap`, `labeldrop`, `labelkeep`, `lowercase`, `uppercase`; case-insensitive.
    #[serde(default)]
    pub action: Option<String>,
}

/// Which label and metric names are valid, as Prometheus' `metric_name_validation_scheme`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NameValidation {
    /// Prometheus 3 default: any non-empty UTF-8 name.
    #[default]
    Utf8,
    /// Prometheus 2: labels `[a-zA-Z_][a-zA-Z0-9_]*`, metric names `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    Legacy,
}

impl NameValidation {
    pub fn is_valid_label_name(self, name: &str) -> bool {
        match self {
            NameValidation::Utf8 => !name.is_empty(),
            NameValidation::Legacy => is_legacy_name(name, false),
        }
    }

    pub fn is_valid_metric_name(self, name: &str) -> bool {
        match self {
            NameValidation::Utf8 => !name.is_empty(),
            NameValidation::Legacy => is_legacy_name(name, true),
        }
    }
}

fn is_legacy_name(name: &str, colons: bool) -> bool {
    let mut chars = name.bytes();
    match chars.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' || (colons && b == b':') => {}
        _ => return false,
    }
    chars.all(|b| b.is_ascii_alphanumeric() || b == b'_' || (colons && b == b':'))
}

/// The relabel actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl Action {
    /// Parses an action name case-insensitively, as Prometheus' YAML does.
    pub fn parse(written: &str) -> Option<Action> {
        Some(match written.to_lowercase().as_str() {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "hashmod" => Action::HashMod,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const DEFAULT_SEPARATOR: &str = ";";
const DEFAULT_REGEX: &str = "(.*)";
const DEFAULT_REPLACEMENT: &str = "$1";

/// One compiled rule.
#[derive(Clone, Debug)]
pub struct Rule {
    pub source_labels: Vec<String>,
    pub separator: String,
    /// The anchored regex `^(?s:<regex>)$` (after the Go-to-Rust syntax translation).
    regex: Regex,
    /// The regex as written (or the default).
    pub regex_text: String,
    /// No `regex` key was written (Prometheus compares against its default object, so an
    /// explicit `(.*)` is not "the default").
    regex_is_default: bool,
    pub modulus: u64,
    pub target_label: String,
    pub replacement: String,
    pub action: Action,
    pub name_validation: NameValidation,
}

/// Compiles and validates a rule list as Prometheus does when it loads its config. Every
/// problem is reported, each prefixed with the rule's index (`[2] ...`).
pub fn compile(
    configs: &[RelabelConfig],
    name_validation: NameValidation,
) -> Result<Vec<Rule>, Vec<String>> {
    let mut rules = Vec::with_capacity(configs.len());
    let mut errors = Vec::new();
    for (index, config) in configs.iter().enumerate() {
        match compile_one(config, name_validation) {
            Ok(rule) => rules.push(rule),
            Err(message) => errors.push(format!("[{index}] {message}")),
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// Compiles one rule; the error is Prometheus' message for the first problem.
pub fn compile_one(
    config: &RelabelConfig,
    name_validation: NameValidation,
) -> Result<Rule, String> {
    let action = match config.action.as_deref() {
        None => Action::Replace,
        Some("") => return Err("relabel action cannot be empty".to_string()),
        Some(written) => {
            Action::parse(written).ok_or_else(|| format!("unknown relabel action {written:?}"))?
        }
    };
    let regex_text = config
        .regex
        .clone()
        .unwrap_or_else(|| DEFAULT_REGEX.to_string());
    let regex =
        compile_anchored(&regex_text).map_err(|e| format!("invalid regex {regex_text:?}: {e}"))?;
    let rule = Rule {
        source_labels: config.source_labels.clone().unwrap_or_default(),
        separator: config
            .separator
            .clone()
            .unwrap_or_else(|| DEFAULT_SEPARATOR.to_string()),
        regex,
        regex_text,
        regex_is_default: config.regex.is_none(),
        modulus: config.modulus.unwrap_or(0),
        target_label: config.target_label.clone().unwrap_or_default(),
        replacement: config
            .replacement
            .clone()
            .unwrap_or_else(|| DEFAULT_REPLACEMENT.to_string()),
        action,
        name_validation,
    };
    validate(&rule, config)?;
    Ok(rule)
}

/// Prometheus' `Config.Validate`, in its order, with its messages.
fn validate(rule: &Rule, config: &RelabelConfig) -> Result<(), String> {
    let scheme = rule.name_validation;
    let action = rule.action;
    let target = rule.target_label.as_str();
    for name in &rule.source_labels {
        if !scheme.is_valid_label_name(name) {
            return Err(format!("{name:?} is not a valid label name"));
        }
    }
    if rule.modulus == 0 && action == Action::HashMod {
        return Err("relabel configuration for hashmod requires non-zero modulus".to_string());
    }
    let writes_target = matches!(
        action,
        Action::Replace
            | Action::HashMod
            | Action::Lowercase
            | Action::Uppercase
            | Action::KeepEqual
            | Action::DropEqual
    );
    if writes_target && target.is_empty() {
        return Err(format!(
            "relabel configuration for {action} action requires 'target_label' value"
        ));
    }
    let valid_with_vars = |value: &str| match scheme {
        NameValidation::Utf8 => scheme.is_valid_label_name(value),
        NameValidation::Legacy => legacy_target_template().is_match(value),
    };
    if action == Action::Replace && !target.contains('$') && !scheme.is_valid_label_name(target) {
        return Err(format!(
            "{target:?} is invalid 'target_label' for {action} action"
        ));
    }
    if action == Action::Replace && target.contains('$') && !valid_with_vars(target) {
        return Err(format!(
            "{target:?} is invalid 'target_label' for {action} action"
        ));
    }
    let case_or_equal = matches!(
        action,
        Action::Lowercase | Action::Uppercase | Action::KeepEqual | Action::DropEqual
    );
    if case_or_equal && !scheme.is_valid_label_name(target) {
        return Err(format!(
            "{target:?} is invalid 'target_label' for {action} action"
        ));
    }
    if case_or_equal && rule.replacement != DEFAULT_REPLACEMENT {
        return Err(format!("'replacement' can not be set for {action} action"));
    }
    if action == Action::LabelMap && !valid_with_vars(&rule.replacement) {
        return Err(format!(
            "{:?} is invalid 'replacement' for {action} action",
            rule.replacement
        ));
    }
    if action == Action::HashMod && !scheme.is_valid_label_name(target) {
        return Err(format!(
            "{target:?} is invalid 'target_label' for {action} action"
        ));
    }
    if matches!(action, Action::KeepEqual | Action::DropEqual)
        && (!rule.regex_is_default
            || rule.modulus != 0
            || rule.separator != DEFAULT_SEPARATOR
            || rule.replacement != DEFAULT_REPLACEMENT)
    {
        return Err(format!(
            "{action} action requires only 'source_labels' and `target_label`, and no other fields"
        ));
    }
    if matches!(action, Action::LabelDrop | Action::LabelKeep)
        && (config.source_labels.is_some()
            || !target.is_empty()
            || rule.modulus != 0
            || rule.separator != DEFAULT_SEPARATOR
            || rule.replacement != DEFAULT_REPLACEMENT)
    {
        return Err(format!(
            "{action} action requires only 'regex', and no other fields"
        ));
    }
    Ok(())
}

/// Prometheus' `relabelTargetLegacy`: a legacy label name that may contain `$var`/`${var}`.
fn legacy_target_template() -> &'static Regex {
    static TEMPLATE: OnceLock<Regex> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{[0-9A-Za-z_]+\}|[0-9A-Za-z_]+))+[0-9A-Za-z_]*)+$")
            .expect("constant regex compiles (bug if not)")
    })
}

/// Compiles `regex` as Prometheus does, `^(?s:<regex>)$`, after translating the Go RE2
/// syntax Rust reads differently.
pub fn compile_anchored(regex: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?s:{})$", go_to_rust_syntax(regex)))
}

/// Rewrites the parts of Go's RE2 syntax that Rust's `regex` reads differently: Perl
/// classes and word boundaries are ASCII in Go, and `\Q...\E` quotes literal text.
fn go_to_rust_syntax(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(next) = chars.next() else {
            out.push('\\');
            break;
        };
        match next {
            'd' => out.push_str("[0-9]"),
            'D' => out.push_str("[^0-9]"),
            'w' => out.push_str("[0-9A-Za-z_]"),
            'W' => out.push_str("[^0-9A-Za-z_]"),
            's' => out.push_str("[\\t\\n\\f\\r ]"),
            'S' => out.push_str("[^\\t\\n\\f\\r ]"),
            'b' => out.push_str("(?-u:\\b)"),
            'B' => out.push_str("(?-u:\\B)"),
            'Q' => {
                // Literal text up to `\E` or the end of the pattern.
                let rest: String = chars.by_ref().collect();
                let (literal, after) = match rest.find("\\E") {
                    Some(end) => (&rest[..end], &rest[end + 2..]),
                    None => (rest.as_str(), ""),
                };
                out.push_str(&regex::escape(literal));
                out.push_str(&go_to_rust_syntax(after));
                return out;
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    out
}

/// A label set: sorted by name, names unique, no empty values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelSet(Vec<(String, String)>);

impl LabelSet {
    pub fn new() -> LabelSet {
        LabelSet(Vec::new())
    }

    /// Builds a set from pairs in any order. Empty values are dropped; for a repeated name
    /// the first pair wins.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> LabelSet {
        let mut labels: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        labels.dedup_by(|later, earlier| later.0 == earlier.0);
        LabelSet(labels)
    }

    /// The value of `name`, `""` when absent.
    pub fn get(&self, name: &str) -> &str {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => &self.0[i].1,
            Err(_) => "",
        }
    }

    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: &str, value: String) {
        if value.is_empty() {
            self.del(name);
            return;
        }
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (name.to_string(), value)),
        }
    }

    pub fn del(&mut self, name: &str) {
        if let Ok(i) = self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            self.0.remove(i);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<(String, String)> {
        self.0
    }

    pub fn as_slice(&self) -> &[(String, String)] {
        &self.0
    }
}

impl fmt::Display for LabelSet {
    /// Prometheus' `{a="1", b="2"}` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name}={value:?}")?;
        }
        f.write_str("}")
    }
}

/// Applies `rules` in order. Returns false when a rule drops the label set (the set is
/// then left as it was at that rule).
pub fn process(labels: &mut LabelSet, rules: &[Rule]) -> bool {
    rules.iter().all(|rule| apply(rule, labels))
}

/// Applies one rule; false means "drop".
pub fn apply(rule: &Rule, labels: &mut LabelSet) -> bool {
    let value = source_value(rule, labels);
    match rule.action {
        Action::Drop => return !rule.regex.is_match(&value),
        Action::Keep => return rule.regex.is_match(&value),
        Action::DropEqual => return labels.get(&rule.target_label) != value,
        Action::KeepEqual => return labels.get(&rule.target_label) == value,
        Action::Replace => replace(rule, labels, &value),
        Action::Lowercase => labels.set(&rule.target_label, go_lowercase(&value)),
        Action::Uppercase => labels.set(&rule.target_label, go_uppercase(&value)),
        Action::HashMod => {
            let digest = md5::compute(value.as_bytes()).0;
            let mut tail = [0u8; 8];
            tail.copy_from_slice(&digest[8..16]);
            labels.set(
                &rule.target_label,
                (u64::from_be_bytes(tail) % rule.modulus.max(1)).to_string(),
            );
        }
        Action::LabelMap => {
            let mapped: Vec<(String, String)> = labels
                .iter()
                .filter_map(|(name, value)| {
                    let captures = rule.regex.captures(name)?;
                    Some((
                        expand(&rule.regex, &captures, &rule.replacement),
                        value.to_string(),
                    ))
                })
                .collect();
            for (name, value) in mapped {
                labels.set(&name, value);
            }
        }
        Action::LabelDrop => labels.0.retain(|(name, _)| !rule.regex.is_match(name)),
        Action::LabelKeep => labels.0.retain(|(name, _)| rule.regex.is_match(name)),
    }
    true
}

fn source_value(rule: &Rule, labels: &LabelSet) -> String {
    match rule.source_labels.as_slice() {
        [] => String::new(),
        [one] => labels.get(one).to_string(),
        many => {
            let mut value = String::new();
            for (i, name) in many.iter().enumerate() {
                if i > 0 {
                    value.push_str(&rule.separator);
                }
                value.push_str(labels.get(name));
            }
            value
        }
    }
}

fn replace(rule: &Rule, labels: &mut LabelSet, value: &str) {
    // Prometheus' fast path: a literal target and replacement with the default regex on
    // an empty value set the replacement as written.
    if value.is_empty()
        && rule.regex_is_default
        && !rule.target_label.contains('$')
        && !rule.replacement.contains('$')
    {
        labels.set(&rule.target_label, rule.replacement.clone());
        return;
    }
    let Some(captures) = rule.regex.captures(value) else {
        return; // No match: no replacement.
    };
    let target = expand(&rule.regex, &captures, &rule.target_label);
    if !rule.name_validation.is_valid_label_name(&target) {
        return;
    }
    let result = expand(&rule.regex, &captures, &rule.replacement);
    labels.set(&target, result);
}

/// Go's `Regexp.Expand`: `$$` is `$`; `$name`/`${name}` with `name` the longest run of
/// letters, digits and `_` (a number names a group by index, a leading zero makes it a
/// name); a missing group expands to nothing; a malformed `$` is kept as text.
pub fn expand(regex: &Regex, captures: &regex::Captures<'_>, template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let Some((name, after)) = extract_name(rest) else {
            out.push('$');
            continue;
        };
        rest = after;
        let group = match group_number(name) {
            Some(index) => captures.get(index),
            None => regex
                .capture_names()
                .position(|n| n == Some(name))
                .and_then(|i| captures.get(i)),
        };
        if let Some(group) = group {
            out.push_str(group.as_str());
        }
    }
    out.push_str(rest);
    out
}

/// The name after a `$` (`name` or `{name}`) and the text after it, as Go's `extract`.
fn extract_name(text: &str) -> Option<(&str, &str)> {
    let (braced, body) = match text.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, text),
    };
    let end = body
        .char_indices()
        .find(|&(_, c)| !(c.is_alphabetic() || c.is_ascii_digit() || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let name = &body[..end];
    if braced {
        let after = body[end..].strip_prefix('}')?;
        return Some((name, after));
    }
    Some((name, &body[end..]))
}

/// A group index as Go reads it: digits only, below 1e8, no leading zero.
fn group_number(name: &str) -> Option<usize> {
    if name.len() > 1 && name.starts_with('0') {
        return None;
    }
    if name.len() > 8 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// Go's `strings.ToLower`: simple (one-to-one) case mapping per character.
pub fn go_lowercase(text: &str) -> String {
    text.chars()
        .map(|c| {
            let mut mapped = c.to_lowercase();
            match (mapped.next(), mapped.next()) {
                (Some(one), None) => one,
                // Only U+0130 (İ) lowercases to two characters; its simple mapping is `i`.
                _ if c == '\u{130}' => 'i',
                _ => c,
            }
        })
        .collect()
}

/// Go's `strings.ToUpper`: simple case mapping per character (`ß` stays `ß`).
pub fn go_uppercase(text: &str) -> String {
    text.chars()
        .map(|c| {
            let mut mapped = c.to_uppercase();
            match (mapped.next(), mapped.next()) {
                (Some(one), None) => one,
                _ => c,
            }
        })
        .collect()
}

/// What Prometheus' scrape loop checks after metric relabeling: `__name__` must be
/// present, and the metric name and every label name valid under `name_validation`.
/// Prometheus fails the whole scrape when this does not hold.
pub fn check_result(labels: &LabelSet, name_validation: NameValidation) -> Result<(), String> {
    let name = labels.get("__name__");
    if name.is_empty() {
        return Err(format!("__name__ label is mandatory, missing in {labels}"));
    }
    let valid = name_validation.is_valid_metric_name(name)
        && labels
            .iter()
            .all(|(n, _)| name_validation.is_valid_label_name(n));
    if valid {
        Ok(())
    } else {
        Err(format!("invalid metric name or label names: {labels}"))
    }
}

#[cfg(test)]
mod tests;
