//! Env references in string values, with the Collector's confmap rules:
//! `${env:VAR}`, `${VAR}`, `${env:VAR:-default}` (default when VAR is unset or empty),
//! `$$` for a literal `$`, and references nested inside a reference's text.
//!
//! An unset variable with no default becomes "" (as in the Collector). `${file:PATH}` is
//! the file's content (a path relative to the working directory, as the Collector reads
//! it): inside longer text its bytes as written; as the whole value, the content parsed as
//! YAML (a map or list becomes that fragment, with positions in that file, and its own
//! references expanded; a string stays the exact bytes, trailing newline included, as the
//! Collector's `NewRetrievedFromYAML` keeps them). Other providers (`http:`, `https:`,
//! `yaml:`, ...) are errors: oxcol does not read configuration from them.
//! A value that is exactly one reference is re-typed (`${env:PORT}` -> 4317); a reference
//! inside longer text stays text. Map keys are never expanded.

use std::sync::Arc;

use crate::merge::relocate;
use crate::parse::{core_schema, parse_document};
use crate::{ConfigError, Location, Node, Value};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// How deep `${file:...}` fragments may include further fragments (a file that names
/// itself would otherwise recurse forever).
const MAX_FILE_DEPTH: usize = 8;

/// Expands every string value in the tree in place, pushing one error per bad value.
pub(crate) fn expand_tree(node: &mut Node, env: Env<'_>, errors: &mut Vec<ConfigError>) {
    expand_node(node, env, errors, 0);
}

fn expand_node(node: &mut Node, env: Env<'_>, errors: &mut Vec<ConfigError>, depth: usize) {
    match &mut node.value {
        Value::String(text) => {
            if !text.contains('$') {
                return;
            }
            match expand_value(text, env, &node.location, depth) {
                Ok(value) => node.value = value,
                Err(mut more) => errors.append(&mut more),
            }
        }
        Value::Seq(items) => items
            .iter_mut()
            .for_each(|item| expand_node(item, env, errors, depth)),
        Value::Map(entries) => entries
            .iter_mut()
            .for_each(|(_, value)| expand_node(value, env, errors, depth)),
        _ => {}
    }
}

fn expand_value(
    text: &str,
    env: Env<'_>,
    location: &Location,
    depth: usize,
) -> Result<Value, Vec<ConfigError>> {
    let whole_reference = text.starts_with("${") && closing_brace(text, 2) == Some(text.len() - 1);
    if whole_reference {
        let inner = expand_text(&text[2..text.len() - 1], env, location).map_err(|e| vec![e])?;
        if let Some(path) = inner.strip_prefix("file:") {
            return file_fragment(path, env, location, depth);
        }
    }
    let expanded = expand_text(text, env, location).map_err(|e| vec![e])?;
    if !whole_reference {
        return Ok(Value::String(expanded));
    }
    Ok(retype(expanded, location))
}

/// Largest file a `${file:PATH}` reference reads: fragments and secrets are small, and a
/// path such as `/dev/zero` must not eat the memory.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// Reads a `${file:PATH}` reference's file (UTF-8, at most [`MAX_FILE_BYTES`]).
fn read_file(path: &str, location: &Location) -> Result<String, ConfigError> {
    use std::io::Read;
    let fail = |problem: String| {
        ConfigError::at(location, format!("cannot read ${{file:{path}}}: {problem}"))
    };
    let file = std::fs::File::open(path).map_err(|error| {
        fail(format!(
            "{error} (a relative path is read from the working directory)"
        ))
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| fail(error.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(fail(format!(
            "it is larger than {} MiB",
            MAX_FILE_BYTES >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|_| fail("it is not UTF-8 text".to_string()))
}

/// The value of a whole-value `${file:PATH}`: the content as YAML, as the Collector's
/// `NewRetrievedFromYAML` types it. A map or list keeps positions in that file and has its
/// own references expanded; a string is the exact bytes; text that is not valid YAML is
/// kept as a string too.
fn file_fragment(
    path: &str,
    env: Env<'_>,
    location: &Location,
    depth: usize,
) -> Result<Value, Vec<ConfigError>> {
    if depth >= MAX_FILE_DEPTH {
        return Err(vec![ConfigError::at(
            location,
            format!(
                "${{file:{path}}}: files include each other more than {MAX_FILE_DEPTH} levels \
                 deep; a file probably names itself"
            ),
        )]);
    }
    let content = read_file(path, location).map_err(|e| vec![e])?;
    let source: Arc<str> = Arc::from(path);
    let (root, parse_errors) = parse_document(&content, &source);
    let Some(mut root) = root.filter(|_| parse_errors.is_empty()) else {
        return Ok(Value::String(content));
    };
    match root.value {
        Value::String(_) => Ok(Value::String(content)),
        Value::Map(_) | Value::Seq(_) => {
            let mut errors = Vec::new();
            expand_node(&mut root, env, &mut errors, depth + 1);
            if errors.is_empty() {
                Ok(root.value)
            } else {
                Err(errors)
            }
        }
        scalar => Ok(scalar),
    }
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

/// Resolves the content of one `${...}`: `VAR`, `env:VAR`, `env:VAR:-default`,
/// `file:PATH` (the file's bytes), or (a convenience the shell taught everyone)
/// `VAR:-default`.
fn resolve(reference: &str, env: Env<'_>, location: &Location) -> Result<String, ConfigError> {
    if let Some(path) = reference.strip_prefix("file:") {
        return read_file(path, location);
    }
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
                     env and file references (${{env:VAR}}, ${{VAR}}, ${{env:VAR:-default}}, \
                     ${{file:PATH}}); write $$ for a literal $"
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
        expand_value(text, &env, &Location::new("t.yaml", 1, 1), 0)
            .map_err(|mut errors| errors.remove(0))
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
        let error = expand("${file:/nonexistent/oxcol/secret}").unwrap_err();
        assert!(
            error
                .message
                .starts_with("cannot read ${file:/nonexistent/oxcol/secret}: "),
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

    /// A fresh directory for one test's files.
    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("oxcol-expand-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        dir
    }

    #[test]
    fn file_references_read_the_file_as_the_collector_does() {
        let dir = temp_dir("file");
        let token = dir.join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let port = dir.join("port");
        std::fs::write(&port, "4317\n").unwrap();
        let fragment = dir.join("fragment.yaml");
        std::fs::write(
            &fragment,
            "endpoint: ${env:HOST}:4317\ntls:\n  insecure: true\n",
        )
        .unwrap();
        let broken = dir.join("broken.yaml");
        std::fs::write(&broken, "a: [unclosed\n").unwrap();
        let token = token.display();
        // Whole value: a string keeps its exact bytes (the Collector keeps the newline).
        assert_eq!(
            expand(&format!("${{file:{token}}}")).unwrap(),
            string("s3cret\n")
        );
        // Inside longer text: the bytes as written.
        assert_eq!(
            expand(&format!("Bearer ${{file:{token}}}")).unwrap(),
            string("Bearer s3cret\n")
        );
        // A YAML scalar is typed.
        assert_eq!(
            expand(&format!("${{file:{}}}", port.display())).unwrap(),
            Value::Int(4317)
        );
        // Not valid YAML: kept as text.
        assert_eq!(
            expand(&format!("${{file:{}}}", broken.display())).unwrap(),
            string("a: [unclosed\n")
        );
        // A map becomes a fragment with positions in its own file and references expanded.
        let Value::Map(entries) = expand(&format!("${{file:{}}}", fragment.display())).unwrap()
        else {
            panic!("expected a map")
        };
        assert_eq!(entries[0].1.value, string("collector.local:4317"));
        assert_eq!(entries[1].1.get("insecure").unwrap().as_bool(), Some(true));
        assert_eq!(
            entries[1].1.get("insecure").unwrap().location,
            Location::new(fragment.display().to_string(), 3, 13)
        );
    }

    #[test]
    fn an_endless_file_is_refused_not_read_to_the_end() {
        let error = expand("${file:/dev/zero}").unwrap_err();
        assert!(
            error.message.contains("larger than 4 MiB"),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_file_that_includes_itself_is_an_error_not_a_hang() {
        let dir = temp_dir("loop");
        let looped = dir.join("loop.yaml");
        std::fs::write(&looped, format!("again: ${{file:{}}}\n", looped.display())).unwrap();
        let error = expand(&format!("${{file:{}}}", looped.display())).unwrap_err();
        assert!(
            error.message.contains("more than 8 levels deep"),
            "{}",
            error.message
        );
    }

    #[test]
    fn env_numbers_type_as_go_yaml_does() {
        let env = |name: &str| match name {
            "LIMIT" => Some("65_536".to_owned()),
            "PORT" => Some("4317".to_owned()),
            _ => None,
        };
        let source = Source::Text {
            name: "c.yaml".into(),
            text: "limit_mib: ${env:LIMIT}\nendpoint: 0.0.0.0:${env:PORT}\nport: ${env:PORT}\nsize: 65_536\n"
                .into(),
        };
        let root = load(&[source], &[], &env).unwrap();
        // `65_536` from the environment is not lossless as an integer, so it stays text;
        // an integer field still reads it as go-yaml would (65536).
        assert_eq!(root.get("limit_mib").unwrap().as_str(), Some("65_536"));
        let limit: u64 = crate::decode(root.get("limit_mib").unwrap()).unwrap();
        assert_eq!(limit, 65536);
        assert_eq!(root.get("endpoint").unwrap().as_str(), Some("0.0.0.0:4317"));
        assert_eq!(root.get("port").unwrap().as_i64(), Some(4317));
        let size: u64 = crate::decode(root.get("size").unwrap()).unwrap();
        assert_eq!(size, 65536, "a YAML 65_536 is 65536 for a number field");
        let text: String = crate::decode(root.get("size").unwrap()).unwrap();
        assert_eq!(
            text, "65_536",
            "and its text for a string field, as go-yaml gives it"
        );
    }
}
