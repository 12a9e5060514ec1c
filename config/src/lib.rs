//! Loads the Collector's YAML configuration into a tree that remembers where every node
//! was written, and decodes typed config structs from that tree so that every error a
//! user sees carries `file:line:column`.
//!
//! The pipeline is: parse each source ([`parse`]) -> deep-merge them in order ([`merge`])
//! -> apply `--set` overrides -> expand `${env:VAR}` references ([`expand`]). Components
//! then call [`decode`] on their own subtree ([`de`]), and `oxcol print-config` renders
//! the tree back with [`to_yaml_redacted`] ([`emit`]).
//!
//! Why a hand-built tree instead of deserializing straight from YAML: several files and
//! `--set` flags are merged *before* typing, and the component type is only known from the
//! key (`otlp/2` -> `otlp`), so the typed decode happens later, on a subtree. Keeping the
//! positions in the tree is what lets that late decode still say `file:line:column`.
//!
//! This crate must never print or log a config value: secrets live in it. The only
//! rendering path is [`to_yaml_redacted`].

mod de;
mod emit;
mod expand;
mod merge;
mod parse;

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

pub use emit::{to_yaml, to_yaml_redacted};

/// Where a node was written. `line` and `column` are 1-based and count characters.
///
/// `source` is the file path, `"--set"` for command-line overrides (then `line` is the
/// 1-based position of the `--set` flag among all of them and `column` the character
/// position inside that flag's text), or the name given to [`Source::Text`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub source: Arc<str>,
    pub line: usize,
    pub column: usize,
}

impl Location {
    pub fn new(source: impl Into<Arc<str>>, line: usize, column: usize) -> Location {
        Location {
            source: source.into(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.source, self.line, self.column)
    }
}

/// A problem in the configuration, with where it is when that is known.
///
/// It is also the `serde` error type of the [`Node`] deserializer, so a component's own
/// `Deserialize` impl can return `D::Error::custom(...)` and still get a location.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub location: Option<Location>,
    pub message: String,
}

impl ConfigError {
    pub fn new(location: Option<Location>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            location,
            message: message.into(),
        }
    }

    pub fn at(location: &Location, message: impl Into<String>) -> ConfigError {
        ConfigError {
            location: Some(location.clone()),
            message: message.into(),
        }
    }

    /// Gives the error `location` unless it already has one: the innermost position wins.
    pub fn or_at(mut self, location: &Location) -> ConfigError {
        if self.location.is_none() {
            self.location = Some(location.clone());
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// One YAML node and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub location: Location,
}

/// A YAML value, typed by the YAML 1.2 core schema. Map keys are nodes too, so an error
/// about a key can point at the key; maps keep the order they were written in.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn new(value: Value, location: Location) -> Node {
        Node { value, location }
    }

    /// The value stored under a string key, when this node is a map.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, value)| value)
    }

    /// Where the key itself was written, when this node is a map that has it.
    pub fn key_location(&self, key: &str) -> Option<&Location> {
        self.entry(key).map(|(key, _)| &key.location)
    }

    fn entry(&self, key: &str) -> Option<&(Node, Node)> {
        self.map_entries()?
            .iter()
            .find(|(candidate, _)| candidate.scalar_text().as_deref() == Some(key))
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Bool(flag) => Some(flag),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.value {
            Value::Int(number) => Some(number),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    pub fn map_entries(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// The text of a scalar as a map key compares it: strings as written, numbers and
    /// booleans in their canonical spelling, null as `null`. `None` for maps and sequences.
    pub fn scalar_text(&self) -> Option<Cow<'_, str>> {
        match &self.value {
            Value::String(text) => Some(Cow::Borrowed(text)),
            Value::Null => Some(Cow::Borrowed("null")),
            Value::Bool(flag) => Some(Cow::Owned(flag.to_string())),
            Value::Int(number) => Some(Cow::Owned(number.to_string())),
            Value::Float(number) => Some(Cow::Owned(number.to_string())),
            Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// What kind of node this is, in the words an error message uses.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Seq(_) => "sequence",
            Value::Map(_) => "map",
        }
    }

    /// Equality of the values only, ignoring every location (NaN equals NaN here).
    pub fn same_value(&self, other: &Node) -> bool {
        match (&self.value, &other.value) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b || (a.is_nan() && b.is_nan()),
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Seq(a), Value::Seq(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_value(y))
            }
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((ka, va), (kb, vb))| ka.same_value(kb) && va.same_value(vb))
            }
            _ => false,
        }
    }
}

/// One configuration source, merged in the order given.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    /// Text that is not read from disk, such as the embedded default config; `name` is
    /// what locations call it (for example `"<embedded default>"`).
    Text {
        name: String,
        text: String,
    },
}

/// Parses every source, deep-merges them in order (maps merge recursively, later wins for
/// scalars and sequences, as the Collector's confmap merges several `--config` files),
/// applies each `--set` override, then expands env references in every string value.
///
/// Returns every error found: a broken file does not hide the errors of the next one.
pub fn load(
    sources: &[Source],
    sets: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Node, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut merged: Option<Node> = None;
    for source in sources {
        let Some(root) = load_source(source, &mut errors) else {
            continue;
        };
        match merged.as_mut() {
            Some(base) => merge::merge(base, root),
            None => merged = Some(root),
        }
    }
    let mut root = merged
        .unwrap_or_else(|| Node::new(Value::Map(Vec::new()), Location::new("<no config>", 1, 1)));
    for (index, set) in sets.iter().enumerate() {
        match merge::parse_set(set, index + 1) {
            Ok(overlay) => merge::merge(&mut root, overlay),
            Err(error) => errors.push(error),
        }
    }
    expand::expand_tree(&mut root, env, &mut errors);
    if errors.is_empty() {
        Ok(root)
    } else {
        Err(errors)
    }
}

/// Reads and parses one source; the root must be a map (an empty file is an empty map).
fn load_source(source: &Source, errors: &mut Vec<ConfigError>) -> Option<Node> {
    let (name, text): (Arc<str>, Cow<'_, str>) = match source {
        Source::File(path) => match std::fs::read_to_string(path) {
            Ok(text) => (path.display().to_string().into(), Cow::Owned(text)),
            Err(error) => {
                errors.push(ConfigError::new(
                    None,
                    format!("cannot read config file {}: {error}", path.display()),
                ));
                return None;
            }
        },
        Source::Text { name, text } => (name.as_str().into(), Cow::Borrowed(text.as_str())),
    };
    let (root, parse_errors) = parse::parse_document(&text, &name);
    errors.extend(parse_errors);
    let root = root?;
    match root.value {
        Value::Map(_) => Some(root),
        Value::Null => Some(Node::new(Value::Map(Vec::new()), Location::new(name, 1, 1))),
        _ => {
            errors.push(ConfigError::at(
                &root.location,
                format!(
                    "a config file must be a map of sections (receivers, processors, \
                     exporters, extensions, service), found a {}",
                    root.kind()
                ),
            ));
            None
        }
    }
}

/// Decodes a typed value from a node.
///
/// Errors carry the location of the innermost offending node: an unknown key points at
/// the key, a wrong type at the value, a missing field at the map that lacks it.
pub fn decode<T: serde::de::DeserializeOwned>(node: &Node) -> Result<T, ConfigError> {
    T::deserialize(node).map_err(|error| error.or_at(&node.location))
}
