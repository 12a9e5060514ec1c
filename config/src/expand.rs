//! Env references in string values, with the Collector's confmap rules:
//! `${env:VAR}`, `${VAR}`, `${env:VAR:-default}` (default when VAR is unset or empty),
//! `$$` for a literal `$`, and references nested inside a reference's text.
//!
//! An unset variable with no default becomes "" (as in the Collector). Other providers
//! (`file:`, `http:`, ...) are errors: oxcol does not read configuration from them.
//! A value that is exactly one reference is re-typed (`${env:PORT}` -> 4317); a reference
//! inside longer text stays text. Map keys are never expanded.

use std::sync::Arc;

use crate::merge::relocate;
use crate::parse::{core_schema, parse_document};
use crate::{ConfigError, Location, Node, Value};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Expands every string value in the tree in place, pushing one error per bad value.
pub(crate) fn expand_tree(node: &mut Node, env: Env<'_>, errors: &mut Vec<ConfigError>) {
    match &mut node.value {
        Value::String(text) => {
            if !text.contains('$') {
                return;
            }
            match expand_value(text, env, &node.location) {
                Ok(value) => node.value = value,
                Err(error) => errors.push(error),
            }
        }
        Value::Seq(items) => items
            .iter_mut()
            .for_each(|item| expand_tree(item, env, errors)),
        Value::Map(entries) => entries
            .iter_mut()
            .for_each(|(_, value)| expand_tree(value, env, errors)),
        _ => {}
    }
}

fn expand_value(text: &str, env: Env<'_>, location: &Location) -> Result<Value, ConfigError> {
    let whole_reference = text.starts_with("${") && closing_brace(text, 2) == Some(text.len() - 1);
    let expanded = expand_text(text, env, location)?;
    if !whole_reference {
        return Ok(Value::String(expanded));
    }
    Ok(retype(expanded, location))
}

/// Expands references in `text`. An unterminated `${` is kept as written.
fn expand_text(text: &str, env: Env<'_>, location: &Location) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar..];
        if let Some(after_escape) = after.strip_prefix("$$") {
            out.push('$');
            rest = after_escape;
        } else if after.starts_with("${") {
            let Some(close) = closing_brace(after, 2) else {
                out.push_str(after);
                return Ok(out);
            };
            let inner = expand_text(&after[2..close], env, location)?;
            out.push_str(&resolve(&inner, env, location)?);
            rest = &after[close + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Byte index of the `}` closing a reference whose content starts at `from`, counting
/// nested `${`; `$$` is skipped as a unit.
fn closing_brace(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 1;
    let mut index = from;
    while index < bytes.len() {
        match bytes[index] {
            b'$' if bytes.get(index + 1) == Some(&b'$') => index += 1,
            b'$' if bytes.get(index + 1) == Some(&b'{') => {
                depth += 1;
                index += 1;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(index);
                }
            }
            _ => {}
        }
        index += 1;
    }
    None
}

/// Resolves the content of one `${...}`: `VAR`, `env:VAR`, `env:VAR:-default`, or (a
/// convenience the shell taught everyone) `VAR:-default`.
fn resolve(reference: &str, env: Env<'_>, location: &Location) -> Result<String, ConfigError> {
    let (name, default) = match reference.split_once(':') {
        None => (reference, None),
        Some(("env", rest)) => match rest.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (rest, None),
        },
        Some((name, rest)) if rest.starts_with('-') && is_env_name(name) => {
            (name, Some(&rest[1..]))
        }
        Some((scheme, _)) => {
            return Err(ConfigError::at(
                location,
                format!(
                    "unsupported config provider '{scheme}' in '${{{reference}}}': oxcol expands only \
                     env references (${{env:VAR}}, ${{VAR}}, ${{env:VAR:-default}}); write $$ for a literal $"
                ),
            ));
        }
    };
    if !is_env_name(name) {
        return Err(ConfigError::at(
            location,
            format!("'{name}' in '${{{reference}}}' is not a valid environment variable name"),
        ));
    }
    match (env(name), default) {
        (Some(value), Some(default)) if value.is_empty() => Ok(default.to_owned()),
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_owned()),
        (None, None) => Ok(String::new()),
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|rest| rest.is_ascii_alphanumeric() || rest == '_')
}

/// Types the text of a whole-value reference as the Collector does (as YAML), but only
/// where that loses nothing: `4317` becomes an integer, `0123` or `1.50` stay text (a
/// string field would otherwise get `123` or `1.5`), and an empty value stays "".
/// A flow list or map (`[a, b]`) becomes a list or map located at the reference.
fn retype(text: String, location: &Location) -> Value {
    if text.trim_start().starts_with(['[', '{']) {
        let source: Arc<str> = location.source.clone();
        if let (Some(mut node), errors) = parse_document(&text, &source)
            && errors.is_empty()
            && matches!(node.value, Value::Seq(_) | Value::Map(_))
        {
            relocate(&mut node, &|inner| *inner = location.clone());
            return node.value;
        }
        return Value::String(text);
    }
    let lossless = match core_schema(&text) {
        Value::Null => !text.is_empty(),
        Value::Bool(_) => true,
        Value::Int(number) => number.to_string() == text,
        Value::Float(number) => {
            number.is_nan() || number.is_infinite() || number.to_string() == text
        }
        _ => false,
    };
    if lossless {
        core_schema(&text)
    } else {
        Value::String(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Source, load};

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("4317".into()),
            "HOST" => Some("collector.local".into()),
            "EMPTY" => Some(String::new()),
            "ZEROS" => Some("0123".into()),
            "FLAG" => Some("true".into()),
            "LIST" => Some("[a, b]".into()),
            "NAME" => Some("HOST".into()),
            _ => None,
        }
    }

    fn expand(text: &str) -> Result<Value, ConfigError> {
        expand_value(text, &env, &Location::new("t.yaml", 1, 1))
    }

    fn string(text: &str) -> Value {
        Value::String(text.into())
    }

    #[test]
    fn references_in_longer_text_stay_text() {
        assert_eq!(
            expand("${env:HOST}:${env:PORT}").unwrap(),
            string("collector.local:4317")
        );
        assert_eq!(
            expand("http://${HOST}/v1").unwrap(),
            string("http://collector.local/v1")
        );
        assert_eq!(expand("port ${PORT}").unwrap(), string("port 4317"));
    }

    #[test]
    fn whole_reference_is_retyped_without_losing_text() {
        assert_eq!(expand("${env:PORT}").unwrap(), Value::Int(4317));
        assert_eq!(expand("${FLAG}").unwrap(), Value::Bool(true));
        assert_eq!(expand("${env:ZEROS}").unwrap(), string("0123"));
        assert_eq!(expand("${env:EMPTY}").unwrap(), string(""));
        assert_eq!(expand("${env:MISSING:-2.5}").unwrap(), Value::Float(2.5));
        let Value::Seq(items) = expand("${env:LIST}").unwrap() else {
            panic!("expected a list")
        };
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].location, Location::new("t.yaml", 1, 1));
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        assert_eq!(
            expand("${env:MISSING:-localhost}").unwrap(),
            string("localhost")
        );
        assert_eq!(
            expand("${env:EMPTY:-fallback}").unwrap(),
            string("fallback")
        );
        assert_eq!(
            expand("${env:HOST:-fallback}").unwrap(),
            string("collector.local")
        );
        assert_eq!(expand("${MISSING:-x}-y").unwrap(), string("x-y"));
        assert_eq!(
            expand("${env:MISSING:-${env:HOST}}").unwrap(),
            string("collector.local")
        );
        assert_eq!(
            expand("${env:${env:NAME}}").unwrap(),
            string("collector.local")
        );
    }

    #[test]
    fn unset_without_default_is_empty_not_an_error() {
        assert_eq!(expand("${env:MISSING}").unwrap(), string(""));
        assert_eq!(expand("a${MISSING}b").unwrap(), string("ab"));
    }

    #[test]
    fn double_dollar_is_a_literal_dollar() {
        assert_eq!(expand("$$").unwrap(), string("$"));
        assert_eq!(expand("$${env:PORT}").unwrap(), string("${env:PORT}"));
        assert_eq!(
            expand("cost: $5 and $$HOME").unwrap(),
            string("cost: $5 and $HOME")
        );
        assert_eq!(expand("${unterminated").unwrap(), string("${unterminated"));
    }

    #[test]
    fn unsupported_provider_and_bad_names_are_errors() {
        let error = expand("${file:/etc/secret}").unwrap_err();
        assert!(
            error
                .message
                .starts_with("unsupported config provider 'file'"),
            "{}",
            error.message
        );
        let error = expand("x ${http://example.com/c.yaml}").unwrap_err();
        assert!(
            error
                .message
                .starts_with("unsupported config provider 'http'"),
            "{}",
            error.message
        );
        let error = expand("${env:NOT-A-NAME}").unwrap_err();
        assert!(
            error
                .message
                .contains("not a valid environment variable name"),
            "{}",
            error.message
        );
    }

    #[test]
    fn load_expands_values_after_merge_and_reports_every_bad_reference() {
        let source = Source::Text {
            name: "c.yaml".into(),
            text: "receivers:\n  otlp:\n    port: ${env:PORT}\n    a: ${file:/x}\n    b: [\"${vault:y}\"]\n    ${env:PORT}: key\n"
                .into(),
        };
        let errors = load(std::slice::from_ref(&source), &[], &env).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].location, Some(Location::new("c.yaml", 4, 8)));
        assert!(
            errors[1]
                .to_string()
                .starts_with("c.yaml:5:9: unsupported config provider 'vault'"),
            "{}",
            errors[1]
        );

        let source = Source::Text {
            name: "c.yaml".into(),
            text: "port: ${env:PORT}\n${env:PORT}: key\n".into(),
        };
        let sets = vec!["host=${HOST}".to_owned()];
        let root = load(&[source], &sets, &env).unwrap();
        assert_eq!(root.get("port").unwrap().as_i64(), Some(4317));
        assert_eq!(
            root.get("port").unwrap().location,
            Location::new("c.yaml", 1, 7)
        );
        assert!(root.get("${env:PORT}").is_some(), "keys are not expanded");
        assert_eq!(
            root.get("host").unwrap().as_str(),
            Some("collector.local"),
            "--set values are expanded"
        );
    }
}
