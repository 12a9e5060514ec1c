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

use std::borrow::Cow;
use std::collections::HashMap;
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
    /// The regex as plain text when it is a literal (matching is then string equality).
    literal: Option<String>,
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
        regex_is_default: config.regex.is_none(),
        literal: literal_text(&regex_text),
        regex_text,
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
    let mut scratch = Scratch::default();
    rules.iter().all(|rule| {
        let mut state = RuleState::new(rule, false);
        apply_rule(rule, &mut state, labels, &mut scratch)
    })
}

/// Applies one rule; false means "drop".
pub fn apply(rule: &Rule, labels: &mut LabelSet) -> bool {
    let mut state = RuleState::new(rule, false);
    apply_rule(rule, &mut state, labels, &mut Scratch::default())
}

/// A label set that borrows what it can (attribute keys and string values, the metric
/// name, rule literals) and owns only what rules produce. Same invariants as
/// [`LabelSet`] once [`Labels::normalize`] ran: sorted by name, names unique, no empty
/// values. Its allocation can be reused across points with [`Labels::recycle`].
#[derive(Debug, Default)]
pub struct Labels<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Labels<'a> {
    pub fn with_capacity(capacity: usize) -> Labels<'a> {
        Labels(Vec::with_capacity(capacity))
    }

    /// Empties the set and returns its allocation with a new lifetime (no reallocation).
    pub fn recycle<'b>(mut self) -> Labels<'b> {
        self.0.clear();
        // An in-place collect of an empty iterator: keeps the buffer, drops nothing.
        Labels(self.0.into_iter().filter_map(|_| None).collect())
    }

    /// Appends a pair; call [`Labels::normalize`] after the last one.
    pub fn push(&mut self, name: Cow<'a, str>, value: Cow<'a, str>) {
        self.0.push((name, value));
    }

    /// Establishes the set invariants as [`LabelSet::from_pairs`] does: empty values
    /// dropped, sorted by name (stable), the first pair of a repeated name wins.
    pub fn normalize(&mut self) {
        self.0.retain(|(_, v)| !v.is_empty());
        // Stable (the first of equal names is kept below); insertion sort for small sets
        // inside, O(n log n) for hostile ones (a point with 1M attributes).
        self.0.sort_by(|a, b| cmp_names(&a.0, &b.0));
        self.0.dedup_by(|later, earlier| later.0 == earlier.0);
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| cmp_names(n, name))
    }

    /// The value of `name`, `""` when absent.
    pub fn get(&self, name: &str) -> &str {
        if self.0.len() <= 16 {
            // Small sets: comparing lengths first skips most names without a memcmp.
            return self
                .0
                .iter()
                .find(|(n, _)| n.len() == name.len() && n.as_ref() == name)
                .map_or("", |(_, v)| v.as_ref());
        }
        match self.position(name) {
            Ok(i) => &self.0[i].1,
            Err(_) => "",
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_ref(), v.as_ref()))
    }

    /// Removes every pair, in order (the allocation stays).
    pub fn drain(&mut self) -> impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)> + '_ {
        self.0.drain(..)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[(Cow<'a, str>, Cow<'a, str>)] {
        &self.0
    }

    pub fn to_label_set(&self) -> LabelSet {
        LabelSet(
            self.0
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }
}

impl fmt::Display for Labels<'_> {
    /// Prometheus' `{a="1", b="2"}` form, as [`LabelSet`]'s.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (name, value)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name}={value:?}")?;
        }
        f.write_str("}")
    }
}

/// `a.cmp(b)` for label names, inlined: names are short and usually differ early, where
/// a call to `memcmp` costs more than the comparison.
#[inline]
fn cmp_names(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// What the rule engine needs of a label set; implemented by [`LabelSet`] (owned) and
/// [`Labels`] (borrowing), so both run exactly the same rule code.
trait Store<'a> {
    fn get(&self, name: &str) -> &str;
    /// Sets `name` to `value`; an empty value deletes the label.
    fn set(&mut self, name: Cow<'a, str>, value: Cow<'a, str>);
    fn count(&self) -> usize;
    fn name_at(&self, i: usize) -> &str;
    fn value_at(&self, i: usize) -> Cow<'a, str>;
    fn retain_names(&mut self, keep: impl FnMut(&str) -> bool);
}

impl<'a> Store<'a> for LabelSet {
    fn get(&self, name: &str) -> &str {
        LabelSet::get(self, name)
    }
    fn set(&mut self, name: Cow<'a, str>, value: Cow<'a, str>) {
        LabelSet::set(self, &name, value.into_owned())
    }
    fn count(&self) -> usize {
        self.0.len()
    }
    fn name_at(&self, i: usize) -> &str {
        &self.0[i].0
    }
    fn value_at(&self, i: usize) -> Cow<'a, str> {
        Cow::Owned(self.0[i].1.clone())
    }
    fn retain_names(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|(name, _)| keep(name))
    }
}

impl<'a> Store<'a> for Labels<'a> {
    fn get(&self, name: &str) -> &str {
        Labels::get(self, name)
    }
    fn set(&mut self, name: Cow<'a, str>, value: Cow<'a, str>) {
        match (self.position(&name), value.is_empty()) {
            (Ok(i), true) => {
                self.0.remove(i);
            }
            (Err(_), true) => {}
            (Ok(i), false) => self.0[i].1 = value,
            (Err(i), false) => self.0.insert(i, (name, value)),
        }
    }
    fn count(&self) -> usize {
        self.0.len()
    }
    fn name_at(&self, i: usize) -> &str {
        &self.0[i].0
    }
    fn value_at(&self, i: usize) -> Cow<'a, str> {
        self.0[i].1.clone()
    }
    fn retain_names(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|(name, _)| keep(name))
    }
}

/// Runs a rule list over many label sets, reusing per-rule buffers (regex capture
/// locations, the joined source value) and remembering each rule's outcome per distinct
/// input (source value, or label name for `labelmap`/`labeldrop`/`labelkeep`): label
/// values repeat across the points of a batch (`__name__`, `job`, `instance`), so most
/// regex matches, expansions and md5 digests run once per distinct value. Results are
/// those of [`process`]. Memory: at most [`Relabeler::MEMO_ENTRIES`] remembered inputs
/// per rule; drop the relabeler (e.g. after each batch) to free them.
pub struct Relabeler<'r> {
    rules: &'r [Rule],
    states: Vec<RuleState>,
    scratch: Scratch,
}

impl<'r> Relabeler<'r> {
    /// Distinct inputs remembered per rule; later new inputs are computed every time.
    pub const MEMO_ENTRIES: usize = 4096;

    pub fn new(rules: &'r [Rule]) -> Relabeler<'r> {
        Relabeler {
            rules,
            states: rules
                .iter()
                .map(|rule| RuleState::new(rule, true))
                .collect(),
            scratch: Scratch::default(),
        }
    }

    /// Applies every rule in order; false when a rule drops the set.
    pub fn process<'a>(&mut self, labels: &mut Labels<'a>) -> bool
    where
        'r: 'a,
    {
        let rules: &'a [Rule] = self.rules;
        for (rule, state) in rules.iter().zip(self.states.iter_mut()) {
            if !apply_rule(rule, state, labels, &mut self.scratch) {
                return false;
            }
        }
        true
    }
}

/// Reused buffers.
#[derive(Default)]
struct Scratch {
    /// The joined value of several source labels.
    value: String,
    /// Names produced by `labelmap`, applied after the scan.
    mapped: Vec<(String, usize)>,
}

/// What one rule produced for one input, remembered by [`Relabeler`].
#[derive(Clone, Debug)]
enum Outcome {
    /// keep/drop: whether the regex matched; labeldrop/labelkeep: whether the name did.
    Matched(bool),
    /// replace: the (expanded when templated) target and the value; `None`: no change.
    Replace(Option<(Option<String>, String)>),
    /// lowercase/uppercase/hashmod: the value written to the target.
    Value(String),
    /// labelmap: the new name for this label name, when it matches.
    Mapped(Option<String>),
}

/// Per-rule reusable state.
struct RuleState {
    locations: regex::CaptureLocations,
    /// Remembered outcomes: input -> index into `outcomes`.
    memo: Option<HashMap<Box<str>, usize, BuildFx>>,
    outcomes: Vec<Outcome>,
}

impl RuleState {
    fn new(rule: &Rule, memo: bool) -> RuleState {
        let memoized = memo
            && !matches!(rule.action, Action::KeepEqual | Action::DropEqual)
            // The literal fast path of `replace` is already cheaper than a lookup.
            && !(rule.action == Action::Replace && rule.source_labels.is_empty())
            // Equality with a literal is cheaper than a lookup.
            && !(rule.literal.is_some()
                && matches!(
                    rule.action,
                    Action::Keep | Action::Drop | Action::LabelDrop | Action::LabelKeep
                ));
        RuleState {
            locations: rule.regex.capture_locations(),
            memo: memoized.then(HashMap::default),
            outcomes: Vec::new(),
        }
    }
}

/// The remembered outcome for `input` (computed by `compute` when new).
fn remembered<'s>(
    memo: &mut Option<HashMap<Box<str>, usize, BuildFx>>,
    outcomes: &'s mut Vec<Outcome>,
    input: &str,
    compute: impl FnOnce() -> Outcome,
) -> Cow<'s, Outcome> {
    let Some(memo) = memo.as_mut() else {
        return Cow::Owned(compute());
    };
    if let Some(&i) = memo.get(input) {
        return Cow::Borrowed(&outcomes[i]);
    }
    let outcome = compute();
    if outcomes.len() >= Relabeler::MEMO_ENTRIES {
        return Cow::Owned(outcome);
    }
    memo.insert(input.into(), outcomes.len());
    outcomes.push(outcome);
    Cow::Borrowed(&outcomes[outcomes.len() - 1])
}

/// The text a regex matches when it is a plain literal (letters, digits, other
/// non-meta characters, and backslash-escaped punctuation), else `None`.
fn literal_text(regex: &str) -> Option<String> {
    let mut out = String::with_capacity(regex.len());
    let mut chars = regex.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(p) if p.is_ascii_punctuation() => out.push(p),
                _ => return None,
            },
            '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' => {
                return None;
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// Applies one rule; false means "drop".
fn apply_rule<'a, S: Store<'a>>(
    rule: &'a Rule,
    state: &mut RuleState,
    labels: &mut S,
    scratch: &mut Scratch,
) -> bool {
    let RuleState {
        locations,
        memo,
        outcomes,
    } = state;
    let is_match = |text: &str| match &rule.literal {
        Some(literal) => literal == text,
        None => rule.regex.is_match(text),
    };
    let value: &str = match rule.source_labels.as_slice() {
        [] => "",
        [one] => labels.get(one),
        many => {
            scratch.value.clear();
            for (i, name) in many.iter().enumerate() {
                if i > 0 {
                    scratch.value.push_str(&rule.separator);
                }
                scratch.value.push_str(labels.get(name));
            }
            &scratch.value
        }
    };
    match rule.action {
        Action::Drop | Action::Keep if rule.literal.is_some() => {
            return is_match(value) == (rule.action == Action::Keep);
        }
        Action::Drop | Action::Keep => {
            let matched =
                match *remembered(memo, outcomes, value, || Outcome::Matched(is_match(value))) {
                    Outcome::Matched(m) => m,
                    _ => false,
                };
            return matched == (rule.action == Action::Keep);
        }
        Action::DropEqual => return labels.get(&rule.target_label) != value,
        Action::KeepEqual => return labels.get(&rule.target_label) == value,
        Action::Replace => {
            // Prometheus' fast path: a literal target and replacement with the default
            // regex on an empty value set the replacement as written.
            if value.is_empty()
                && rule.regex_is_default
                && !rule.target_label.contains('$')
                && !rule.replacement.contains('$')
            {
                labels.set(
                    Cow::Borrowed(&rule.target_label),
                    Cow::Borrowed(&rule.replacement),
                );
                return true;
            }
            let outcome = remembered(memo, outcomes, value, || {
                Outcome::Replace(replace_outcome(rule, locations, value))
            });
            if let Outcome::Replace(Some((target, result))) = &*outcome {
                let target = match target {
                    Some(expanded) => Cow::Owned(expanded.clone()),
                    None => Cow::Borrowed(rule.target_label.as_str()),
                };
                let result = if *result == rule.replacement {
                    Cow::Borrowed(rule.replacement.as_str())
                } else {
                    Cow::Owned(result.clone())
                };
                labels.set(target, result);
            }
        }
        Action::Lowercase | Action::Uppercase | Action::HashMod => {
            let outcome = remembered(memo, outcomes, value, || {
                Outcome::Value(match rule.action {
                    Action::Lowercase => go_lowercase(value),
                    Action::Uppercase => go_uppercase(value),
                    _ => {
                        let digest = md5::compute(value.as_bytes()).0;
                        let mut tail = [0u8; 8];
                        tail.copy_from_slice(&digest[8..16]);
                        (u64::from_be_bytes(tail) % rule.modulus.max(1)).to_string()
                    }
                })
            });
            if let Outcome::Value(result) = &*outcome {
                let result = Cow::Owned(result.clone());
                labels.set(Cow::Borrowed(rule.target_label.as_str()), result);
            }
        }
        Action::LabelMap => {
            scratch.mapped.clear();
            for i in 0..labels.count() {
                let name = labels.name_at(i);
                let outcome = remembered(memo, outcomes, name, || {
                    Outcome::Mapped(rule.regex.captures_read(locations, name).map(|_| {
                        let mut out = String::with_capacity(rule.replacement.len());
                        expand_locations(&rule.regex, locations, name, &rule.replacement, &mut out);
                        out
                    }))
                });
                if let Outcome::Mapped(Some(new_name)) = &*outcome {
                    scratch.mapped.push((new_name.clone(), i));
                }
            }
            // Values are read before any is written, as Prometheus builds the new set
            // from the old one.
            let mapped: Vec<(String, Cow<'a, str>)> = scratch
                .mapped
                .drain(..)
                .map(|(name, i)| (name, labels.value_at(i)))
                .collect();
            for (name, value) in mapped {
                labels.set(Cow::Owned(name), value);
            }
        }
        Action::LabelDrop | Action::LabelKeep if rule.literal.is_some() => {
            let keep_matching = rule.action == Action::LabelKeep;
            labels.retain_names(|name| is_match(name) == keep_matching);
        }
        Action::LabelDrop | Action::LabelKeep => {
            let keep_matching = rule.action == Action::LabelKeep;
            labels.retain_names(|name| {
                let matched =
                    match *remembered(memo, outcomes, name, || Outcome::Matched(is_match(name))) {
                        Outcome::Matched(m) => m,
                        _ => false,
                    };
                matched == keep_matching
            });
        }
    }
    true
}

/// What `replace` does with `value`: the target (`None`: the literal `target_label`) and
/// the value to write, or nothing when the regex does not match or the expanded target
/// is not a valid label name.
fn replace_outcome(
    rule: &Rule,
    locations: &mut regex::CaptureLocations,
    value: &str,
) -> Option<(Option<String>, String)> {
    rule.regex.captures_read(locations, value)?;
    let target = if rule.target_label.contains('$') {
        let mut target = String::with_capacity(rule.target_label.len());
        expand_locations(
            &rule.regex,
            locations,
            value,
            &rule.target_label,
            &mut target,
        );
        if !rule.name_validation.is_valid_label_name(&target) {
            return None;
        }
        Some(target)
    } else {
        if !rule.name_validation.is_valid_label_name(&rule.target_label) {
            return None;
        }
        None
    };
    let mut result = String::with_capacity(rule.replacement.len() + value.len());
    expand_locations(
        &rule.regex,
        locations,
        value,
        &rule.replacement,
        &mut result,
    );
    Some((target, result))
}

/// Go's `Regexp.Expand`: `$$` is `$`; `$name`/`${name}` with `name` the longest run of
/// letters, digits and `_` (a number names a group by index, a leading zero makes it a
/// name); a missing group expands to nothing; a malformed `$` is kept as text.
pub fn expand(regex: &Regex, captures: &regex::Captures<'_>, template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    expand_with(
        regex,
        |i| captures.get(i).map(|m| m.as_str()),
        template,
        &mut out,
    );
    out
}

/// [`expand`] from capture locations of a search of `haystack`, appended to `out`.
pub fn expand_locations(
    regex: &Regex,
    locations: &regex::CaptureLocations,
    haystack: &str,
    template: &str,
    out: &mut String,
) {
    expand_with(
        regex,
        |i| locations.get(i).and_then(|(s, e)| haystack.get(s..e)),
        template,
        out,
    )
}

fn expand_with<'h>(
    regex: &Regex,
    group_text: impl Fn(usize) -> Option<&'h str>,
    template: &str,
    out: &mut String,
) {
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
            Some(index) => group_text(index),
            None => regex
                .capture_names()
                .position(|n| n == Some(name))
                .and_then(&group_text),
        };
        if let Some(group) = group {
            out.push_str(group);
        }
    }
    out.push_str(rest);
}

/// FxHash (rustc's): a fast non-cryptographic hash for the memo of short label values.
#[derive(Clone, Copy, Default)]
struct BuildFx;

impl std::hash::BuildHasher for BuildFx {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

struct FxHasher(u64);

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::hash::Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }
    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
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
    check_names(
        labels.get("__name__"),
        labels.iter(),
        labels,
        name_validation,
    )
}

/// [`check_result`] of a borrowing [`Labels`] set (same checks, same messages).
pub fn check_labels(labels: &Labels<'_>, name_validation: NameValidation) -> Result<(), String> {
    check_names(
        labels.get("__name__"),
        labels.iter(),
        labels,
        name_validation,
    )
}

/// The checks behind [`check_result`] and [`check_labels`], over any label set's name,
/// pairs and printed form.
fn check_names<'a>(
    name: &str,
    mut pairs: impl Iterator<Item = (&'a str, &'a str)>,
    shown: &dyn fmt::Display,
    name_validation: NameValidation,
) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("__name__ label is mandatory, missing in {shown}"));
    }
    if name_validation.is_valid_metric_name(name)
        && pairs.all(|(n, _)| name_validation.is_valid_label_name(n))
    {
        Ok(())
    } else {
        Err(format!("invalid metric name or label names: {shown}"))
    }
}

#[cfg(test)]
mod tests;
