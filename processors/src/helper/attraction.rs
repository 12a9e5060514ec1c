//! The attribute action engine shared by the `attributes` and `resource` processors (the
//! Collector's `internal/coreinternal/attraction`): `insert`, `update`, `upsert`,
//! `delete`, `hash`, `extract` and `convert`, applied in the order written to one
//! attribute map.
//!
//! Semantics follow the Collector exactly, because its output is the test oracle:
//! `insert` never touches an existing key, `update` never adds one, `default_value` fills
//! in when `value`/`from_attribute` give nothing, `hash` is SHA-256 of
//! the value's bytes (strings as UTF-8, ints and doubles as 8 little-endian bytes, bools
//! as one byte) written as lowercase hex, and anything else (maps, slices, bytes, empty)
//! becomes the empty string (a key that `pattern` also matches is hashed twice, as in
//! the Collector); `extract` only reads strings and sets every named group of
//! the first match (a group that took no part becomes ""); `convert` leaves values it
//! cannot convert unchanged. This module never reads the clock and never panics on data.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use regex::Regex;
use serde::Deserialize;

use super::pvalue::{self, ConfigValue};

/// One entry of `actions` (attributes processor) or `attributes` (resource processor).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ActionConfig {
    /// The attribute to act on.
    pub key: String,
    /// The value to set (insert/update/upsert); its YAML type becomes the attribute type.
    pub value: Option<ConfigValue>,
    /// The value to set when `value`/`from_attribute` provide none (insert/update/upsert).
    pub default_value: Option<ConfigValue>,
    /// A regex: named groups for `extract`, attribute names for `delete`/`hash`.
    pub pattern: String,
    /// Copy the value of this attribute (insert/update/upsert).
    pub from_attribute: String,
    /// Client metadata to copy from. Not supported by oxcol (see `validate`).
    pub from_context: String,
    /// `int`, `double` or `string` for `convert`.
    pub converted_type: String,
    /// insert, update, upsert, delete, hash, extract, convert (any case).
    pub action: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Insert,
    Update,
    Upsert,
    Delete,
    Hash,
    Extract,
    Convert,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Int,
    Double,
    Str,
}

#[derive(Clone, Debug)]
enum Source {
    Value(AnyValue),
    Attribute(String),
}

#[derive(Clone, Debug)]
struct Action {
    key: String,
    kind: Kind,
    source: Option<Source>,
    default: Option<AnyValue>,
    regex: Option<Regex>,
    /// Group names of an extract pattern, by group index (index 0 unused).
    group_names: Vec<String>,
    target: Option<Target>,
}

/// A compiled list of actions.
#[derive(Clone, Debug)]
pub struct AttrProc {
    actions: Vec<Action>,
}

/// Checks `actions` as the Collector's `NewAttrProc` does, returning every problem (the
/// Collector stops at the first). `field` is the config key that holds the list.
pub fn validate(actions: &[ActionConfig], field: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        if let Err(e) = compile(action) {
            problems.push(format!("{field}[{i}]: {e}"));
        }
    }
    problems
}

impl AttrProc {
    /// Compiles `actions`; the error lists every invalid action.
    pub fn new(actions: &[ActionConfig], field: &str) -> Result<AttrProc, String> {
        let problems = validate(actions, field);
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let actions = actions.iter().map(compile).collect::<Result<Vec<_>, _>>()?;
        Ok(AttrProc { actions })
    }

    /// Applies every action, in order, to `attrs`.
    pub fn process(&self, attrs: &mut Vec<KeyValue>) {
        for action in &self.actions {
            match action.kind {
                Kind::Delete => {
                    pvalue::remove(attrs, &action.key);
                    // Go's RemoveIf: keeps the order of the remaining attributes.
                    if let Some(regex) = &action.regex {
                        attrs.retain(|kv| !regex.is_match(&kv.key));
                    }
                }
                Kind::Insert => {
                    let Some(value) = source_value(action, attrs) else {
                        continue;
                    };
                    if pvalue::get(attrs, &action.key).is_none() {
                        attrs.push(KeyValue {
                            key: action.key.clone(),
                            value: Some(value),
                            ..Default::default()
                        });
                    }
                }
                Kind::Update => {
                    let Some(value) = source_value(action, attrs) else {
                        continue;
                    };
                    if let Some(existing) = pvalue::get_mut(attrs, &action.key) {
                        *existing = value;
                    }
                }
                Kind::Upsert => {
                    let Some(value) = source_value(action, attrs) else {
                        continue;
                    };
                    pvalue::put(attrs, &action.key, value);
                }
                Kind::Hash => {
                    if let Some(value) = pvalue::get_mut(attrs, &action.key) {
                        hash_in_place(value);
                    }
                    // Every attribute whose key matches, each once.
                    if let Some(regex) = &action.regex {
                        for kv in attrs.iter_mut().filter(|kv| regex.is_match(&kv.key)) {
                            hash_in_place(kv.value.get_or_insert_with(AnyValue::default));
                        }
                    }
                }
                Kind::Extract => extract(action, attrs),
                Kind::Convert => {
                    if let (Some(value), Some(target)) =
                        (pvalue::get_mut(attrs, &action.key), action.target)
                    {
                        convert(value, target);
                    }
                }
            }
        }
    }
}

fn compile(config: &ActionConfig) -> Result<Action, String> {
    let kind = match config.action.to_ascii_lowercase().as_str() {
        "insert" => Kind::Insert,
        "update" => Kind::Update,
        "upsert" => Kind::Upsert,
        "delete" => Kind::Delete,
        "hash" => Kind::Hash,
        "extract" => Kind::Extract,
        "convert" => Kind::Convert,
        "" => return Err("\"action\" is missing: use one of insert, update, upsert, delete, hash, extract, convert".into()),
        other => return Err(format!("unsupported action {other:?}: use one of insert, update, upsert, delete, hash, extract, convert")),
    };
    let name = config.action.to_ascii_lowercase();
    match kind {
        Kind::Delete | Kind::Hash if config.key.is_empty() && config.pattern.is_empty() => {
            return Err(format!("action {name:?} needs \"key\" and/or \"pattern\""));
        }
        Kind::Delete | Kind::Hash => {}
        _ if config.key.is_empty() => return Err(format!("action {name:?} needs \"key\"")),
        _ => {}
    }
    let sources = usize::from(config.value.is_some())
        + usize::from(!config.from_attribute.is_empty())
        + usize::from(!config.from_context.is_empty());
    let mut action = Action {
        key: config.key.clone(),
        kind,
        source: None,
        default: None,
        regex: None,
        group_names: Vec::new(),
        target: None,
    };
    let no_converted_type = || {
        if config.converted_type.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "action {name:?} does not use \"converted_type\": remove it"
            ))
        }
    };
    match kind {
        Kind::Insert | Kind::Update | Kind::Upsert => {
            if sources == 0 && config.default_value.is_none() {
                return Err(format!(
                    "action {name:?} needs one of \"value\", \"from_attribute\", \"from_context\" or \"default_value\""
                ));
            }
            if sources > 1 {
                return Err(format!(
                    "action {name:?} takes only one of \"value\", \"from_attribute\" and \"from_context\""
                ));
            }
            if !config.pattern.is_empty() {
                return Err(format!(
                    "action {name:?} does not use \"pattern\": remove it"
                ));
            }
            no_converted_type()?;
            if !config.from_context.is_empty() {
                return Err(format!(
                    "\"from_context\" ({:?}) is not supported by oxcol: request metadata does not reach processors; use \"value\" or \"from_attribute\"",
                    config.from_context
                ));
            }
            action.source = match &config.value {
                Some(ConfigValue(value)) => Some(Source::Value(value.clone())),
                None if !config.from_attribute.is_empty() => {
                    Some(Source::Attribute(config.from_attribute.clone()))
                }
                None => None,
            };
            action.default = config
                .default_value
                .as_ref()
                .map(|ConfigValue(v)| v.clone());
        }
        Kind::Delete | Kind::Hash => {
            if config.value.is_some() || !config.from_attribute.is_empty() {
                return Err(format!(
                    "action {name:?} does not use \"value\" or \"from_attribute\": remove them"
                ));
            }
            if !config.pattern.is_empty() {
                action.regex = Some(Regex::new(&config.pattern).map_err(|e| {
                    format!("\"pattern\" {:?} is not a valid regex: {e}", config.pattern)
                })?);
            }
            no_converted_type()?;
        }
        Kind::Extract => {
            if sources > 0 {
                return Err(format!(
                    "action {name:?} does not use \"value\", \"from_attribute\" or \"from_context\": remove them"
                ));
            }
            if config.pattern.is_empty() {
                return Err(format!(
                    "action {name:?} needs \"pattern\" (a regex with named groups)"
                ));
            }
            no_converted_type()?;
            let regex = Regex::new(&config.pattern).map_err(|e| {
                format!("\"pattern\" {:?} is not a valid regex: {e}", config.pattern)
            })?;
            let names: Vec<String> = regex
                .capture_names()
                .map(|n| n.unwrap_or("").to_string())
                .collect();
            if names.len() <= 1 {
                return Err(format!(
                    "\"pattern\" {:?} has no named groups: write them as (?P<name>...)",
                    config.pattern
                ));
            }
            if names.iter().skip(1).any(String::is_empty) {
                return Err(format!(
                    "\"pattern\" {:?} has an unnamed group: name every group, or make it non-capturing with (?:...)",
                    config.pattern
                ));
            }
            action.regex = Some(regex);
            action.group_names = names;
        }
        Kind::Convert => {
            if sources > 0 || !config.pattern.is_empty() {
                return Err(format!(
                    "action {name:?} does not use value sources or \"pattern\": remove them"
                ));
            }
            action.target = Some(match config.converted_type.as_str() {
                "int" => Target::Int,
                "double" => Target::Double,
                "string" => Target::Str,
                "" => {
                    return Err(
                        "action \"convert\" needs \"converted_type\": int, double or string".into(),
                    );
                }
                other => {
                    return Err(format!(
                        "\"converted_type\" {other:?} is not valid: use int, double or string"
                    ));
                }
            });
        }
    }
    Ok(action)
}

/// The Collector's `getSourceAttributeValue`: the configured value, else the source
/// attribute, else `default_value`.
fn source_value(action: &Action, attrs: &[KeyValue]) -> Option<AnyValue> {
    let found = match action.source.as_ref() {
        Some(Source::Value(value)) => Some(value.clone()),
        Some(Source::Attribute(key)) => pvalue::get(attrs, key).cloned(),
        None => None,
    };
    found.or_else(|| action.default.clone())
}

fn hash_in_place(value: &mut AnyValue) {
    *value = AnyValue {
        value: Some(Value::StringValue(hash_value(value))),
    };
}

/// The Collector's `sha2Hasher`: lowercase hex SHA-256 of the value's bytes, "" for types
/// it does not hash.
pub fn hash_value(value: &AnyValue) -> String {
    let bytes: Vec<u8> = match &value.value {
        Some(Value::StringValue(s)) => s.as_bytes().to_vec(),
        Some(Value::BoolValue(b)) => vec![u8::from(*b)],
        Some(Value::IntValue(i)) => i.to_le_bytes().to_vec(),
        Some(Value::DoubleValue(d)) => d.to_bits().to_le_bytes().to_vec(),
        _ => return String::new(),
    };
    oxcol_ottl::value::hex_lower(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref())
}

fn extract(action: &Action, attrs: &mut Vec<KeyValue>) {
    let Some(regex) = &action.regex else { return };
    let Some(AnyValue {
        value: Some(Value::StringValue(text)),
    }) = pvalue::get(attrs, &action.key)
    else {
        return;
    };
    let Some(captures) = regex.captures(text) else {
        return;
    };
    let found: Vec<(String, String)> = (1..action.group_names.len())
        .map(|i| {
            (
                action.group_names[i].clone(),
                captures
                    .get(i)
                    .map_or(String::new(), |m| m.as_str().to_string()),
            )
        })
        .collect();
    for (name, value) in found {
        pvalue::put_str(attrs, &name, value);
    }
}

/// The Collector's `convertValue`.
fn convert(value: &mut AnyValue, target: Target) {
    let converted = match (target, &value.value) {
        (Target::Str, Some(Value::StringValue(_))) => None,
        (Target::Str, _) => Some(Value::StringValue(pvalue::as_string(value))),
        (Target::Int, Some(Value::DoubleValue(d))) => {
            Some(Value::IntValue(pvalue::go_float_to_int(*d)))
        }
        (Target::Int, Some(Value::BoolValue(b))) => Some(Value::IntValue(i64::from(*b))),
        (Target::Int, Some(Value::StringValue(s))) => pvalue::go_parse_int(s).map(Value::IntValue),
        (Target::Double, Some(Value::IntValue(i))) => Some(Value::DoubleValue(*i as f64)),
        (Target::Double, Some(Value::BoolValue(b))) => {
            Some(Value::DoubleValue(if *b { 1.0 } else { 0.0 }))
        }
        (Target::Double, Some(Value::StringValue(s))) => {
            pvalue::go_parse_float(s).map(Value::DoubleValue)
        }
        // Same type, or a type the Collector does not convert (maps, slices, bytes, empty).
        _ => None,
    };
    if let Some(converted) = converted {
        value.value = Some(converted);
    }
}

#[cfg(test)]
mod tests;
