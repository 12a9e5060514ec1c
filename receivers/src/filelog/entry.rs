//! The log entry operators work on (stanza's `entry.Entry`): a body, attributes and
//! resource as JSON-like values, timestamps and severity, plus where in which file it came
//! from (so the reader advances a file's checkpoint only past entries the pipeline took).
//!
//! Fields are named as stanza names them: `body`, `body.key`, `attributes.key`,
//! `attributes["key.with.dots"]`, `resource.key`; a dot nests one map deeper.
//! Conversion to OTLP follows the Collector's stanza adapter: one `ResourceLogs` per
//! distinct resource, one empty-scope `ScopeLogs` in it.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::{Map, Value};

/// Where an entry's bytes lie in a tracked file (`file` is the reader's id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub file: u64,
    pub start: u64,
    pub end: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entry {
    pub body: Value,
    /// The body as raw bytes (`encoding: nop`), when no operator replaced it.
    pub raw_body: Option<Vec<u8>>,
    pub attributes: Map<String, Value>,
    pub resource: Map<String, Value>,
    /// Unix nanoseconds; None until a timestamp is parsed.
    pub timestamp: Option<u64>,
    pub observed: u64,
    pub severity: i32,
    pub severity_text: String,
    /// The file ranges this entry was made of (several after recombining).
    pub marks: Vec<Mark>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root {
    Body,
    Attributes,
    Resource,
}

/// A stanza field: a root and a path of map keys below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub root: Root,
    pub path: Vec<String>,
}

impl Field {
    pub fn body() -> Field {
        Field {
            root: Root::Body,
            path: Vec::new(),
        }
    }

    pub fn attribute(key: &str) -> Field {
        Field {
            root: Root::Attributes,
            path: vec![key.to_string()],
        }
    }

    /// Parses `body`, `attributes.a.b`, `resource["k.x"]`, `body.a["b"]`.
    pub fn parse(text: &str) -> Result<Field, String> {
        let text = text.trim();
        let text = text.strip_prefix('$').unwrap_or(text);
        let (root_name, mut rest) = match text.find(['.', '[']) {
            Some(i) => (&text[..i], &text[i..]),
            None => (text, ""),
        };
        let root = match root_name {
            "body" => Root::Body,
            "attributes" => Root::Attributes,
            "resource" => Root::Resource,
            _ => {
                return Err(format!(
                    "field {text:?} must start with body, attributes or resource (e.g. attributes.level or attributes[\"log.file.path\"])"
                ));
            }
        };
        let mut path = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let key = &after[..end];
                if key.is_empty() {
                    return Err(format!("field {text:?} has an empty key"));
                }
                path.push(key.to_string());
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'');
                let Some(quote) = quote else {
                    return Err(format!(
                        "field {text:?}: a bracketed key must be quoted, e.g. [\"log.file.path\"]"
                    ));
                };
                let inner = &after[1..];
                let Some(close) = inner.find(quote) else {
                    return Err(format!("field {text:?}: unterminated quoted key"));
                };
                path.push(inner[..close].to_string());
                let after_quote = &inner[close + 1..];
                let Some(after_bracket) = after_quote.strip_prefix(']') else {
                    return Err(format!("field {text:?}: expected ] after the quoted key"));
                };
                rest = after_bracket;
            } else {
                return Err(format!("field {text:?}: unexpected text {rest:?}"));
            }
        }
        Ok(Field { root, path })
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.root {
            Root::Body => "body",
            Root::Attributes => "attributes",
            Root::Resource => "resource",
        })?;
        for key in &self.path {
            if key.contains(['.', '[', ']']) {
                write!(f, "[\"{key}\"]")?;
            } else {
                write!(f, ".{key}")?;
            }
        }
        Ok(())
    }
}

impl<'de> serde::Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Field, D::Error> {
        let text = String::deserialize(deserializer)?;
        Field::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn walk<'a>(mut value: &'a Value, path: &[String]) -> Option<&'a Value> {
    for key in path {
        value = value.as_object()?.get(key)?;
    }
    Some(value)
}

impl Entry {
    pub fn get(&self, field: &Field) -> Option<&Value> {
        match field.root {
            Root::Body => walk(&self.body, &field.path),
            Root::Attributes | Root::Resource => {
                let map = if field.root == Root::Attributes {
                    &self.attributes
                } else {
                    &self.resource
                };
                let (first, rest) = field.path.split_first()?;
                walk(map.get(first)?, rest)
            }
        }
    }

    /// The field as text (strings as they are; numbers and booleans printed).
    pub fn get_string(&self, field: &Field) -> Option<String> {
        match self.get(field)? {
            Value::String(text) => Some(text.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// Sets a field, creating maps on the way (a non-map in the way is replaced). Setting
    /// `attributes` or `resource` itself needs a map value; others are ignored.
    pub fn set(&mut self, field: &Field, value: Value) {
        if field.root == Root::Body {
            if field.path.is_empty() {
                self.body = value;
                self.raw_body = None;
                return;
            }
            self.raw_body = None;
            set_in(&mut self.body, &field.path, value);
            return;
        }
        let map = if field.root == Root::Attributes {
            &mut self.attributes
        } else {
            &mut self.resource
        };
        match field.path.split_first() {
            None => {
                if let Value::Object(object) = value {
                    *map = object;
                }
            }
            Some((first, rest)) => {
                if rest.is_empty() {
                    map.insert(first.clone(), value);
                } else {
                    let slot = map
                        .entry(first.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    set_in(slot, rest, value);
                }
            }
        }
    }

    /// Merges `values` into the map at `field` (a parser's `parse_to`): keys already there
    /// stay unless `values` has them; a non-map there is replaced.
    pub fn merge(&mut self, field: &Field, values: Map<String, Value>) {
        if field.root != Root::Body && field.path.is_empty() {
            let map = if field.root == Root::Attributes {
                &mut self.attributes
            } else {
                &mut self.resource
            };
            map.extend(values);
            return;
        }
        match self.get(field).cloned() {
            Some(Value::Object(mut existing)) => {
                existing.extend(values);
                self.set(field, Value::Object(existing));
            }
            _ => self.set(field, Value::Object(values)),
        }
    }

    /// Removes a field and returns its value.
    pub fn delete(&mut self, field: &Field) -> Option<Value> {
        if field.root == Root::Body {
            if field.path.is_empty() {
                self.raw_body = None;
                return Some(std::mem::take(&mut self.body));
            }
            return delete_in(&mut self.body, &field.path);
        }
        let map = if field.root == Root::Attributes {
            &mut self.attributes
        } else {
            &mut self.resource
        };
        match field.path.split_first() {
            None => Some(Value::Object(std::mem::take(map))),
            Some((first, rest)) if rest.is_empty() => map.remove(first),
            Some((first, rest)) => delete_in(map.get_mut(first)?, rest),
        }
    }
}

fn set_in(mut slot: &mut Value, path: &[String], value: Value) {
    for key in path {
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(object) = slot else {
            return;
        };
        slot = object.entry(key.clone()).or_insert(Value::Null);
    }
    *slot = value;
}

fn delete_in(value: &mut Value, path: &[String]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    let mut slot = value;
    for key in parents {
        slot = slot.as_object_mut()?.get_mut(key)?;
    }
    slot.as_object_mut()?.remove(last)
}

/// A JSON-like value as an OTLP `AnyValue` (null is an empty value).
pub fn any_value(value: &Value) -> AnyValue {
    let inner = match value {
        Value::Null => None,
        Value::Bool(b) => Some(any_value::Value::BoolValue(*b)),
        Value::Number(n) => Some(match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => any_value::Value::IntValue(i),
            (None, Some(u)) => any_value::Value::IntValue(u as i64),
            _ => any_value::Value::DoubleValue(n.as_f64().unwrap_or_default()),
        }),
        Value::String(text) => Some(any_value::Value::StringValue(text.clone())),
        Value::Array(items) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().map(any_value).collect(),
        })),
        Value::Object(map) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: key_values(map),
        })),
    };
    AnyValue { value: inner }
}

pub fn key_values(map: &Map<String, Value>) -> Vec<KeyValue> {
    map.iter()
        .map(|(key, value)| KeyValue {
            key: key.clone(),
            value: Some(any_value(value)),
            ..Default::default()
        })
        .collect()
}

/// A JSON-like value as an OTLP `AnyValue`, moving its strings.
pub fn into_any_value(value: Value) -> AnyValue {
    let inner = match value {
        Value::String(text) => Some(any_value::Value::StringValue(text)),
        Value::Array(items) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: items.into_iter().map(into_any_value).collect(),
        })),
        Value::Object(map) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: into_key_values(map),
        })),
        other => return any_value(&other),
    };
    AnyValue { value: inner }
}

pub fn into_key_values(map: Map<String, Value>) -> Vec<KeyValue> {
    map.into_iter()
        .map(|(key, value)| KeyValue {
            key,
            value: Some(into_any_value(value)),
            ..Default::default()
        })
        .collect()
}

impl Entry {
    pub fn to_log_record(&self) -> LogRecord {
        self.clone().into_log_record()
    }

    pub fn into_log_record(self) -> LogRecord {
        let body = match self.raw_body {
            Some(bytes) => AnyValue {
                value: Some(any_value::Value::BytesValue(bytes)),
            },
            None => into_any_value(self.body),
        };
        LogRecord {
            time_unix_nano: self.timestamp.unwrap_or(0),
            observed_time_unix_nano: self.observed,
            severity_number: self.severity,
            severity_text: self.severity_text,
            body: Some(body),
            attributes: into_key_values(self.attributes),
            ..Default::default()
        }
    }
}

/// Entries as OTLP: one `ResourceLogs` per distinct resource (in order of first
/// appearance), one `ScopeLogs` with an empty scope in each.
pub fn to_resource_logs(entries: Vec<Entry>) -> Vec<ResourceLogs> {
    let mut out: Vec<ResourceLogs> = Vec::new();
    let mut resources: Vec<Map<String, Value>> = Vec::new();
    let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
    let mut last: Option<usize> = None;
    for mut entry in entries {
        let resource = std::mem::take(&mut entry.resource);
        // Consecutive entries mostly share a resource: compare with the last one first.
        let index = match last.filter(|&i| resources[i] == resource) {
            Some(i) => i,
            None => {
                let key = serde_json::to_string(&resource).unwrap_or_default();
                match by_key.get(&key) {
                    Some(&i) => i,
                    None => {
                        out.push(ResourceLogs {
                            resource: Some(Resource {
                                attributes: key_values(&resource),
                                ..Default::default()
                            }),
                            scope_logs: vec![ScopeLogs::default()],
                            schema_url: String::new(),
                        });
                        resources.push(resource);
                        by_key.insert(key, out.len() - 1);
                        out.len() - 1
                    }
                }
            }
        };
        last = Some(index);
        if let Some(scope) = out[index].scope_logs.first_mut() {
            scope.log_records.push(entry.into_log_record());
        }
    }
    out
}
