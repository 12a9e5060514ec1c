//! Renders a [`Node`] tree back to block-style YAML, for `oxcol print-config`.
//!
//! The output must load back into the same tree: strings that would be re-typed (`"4317"`,
//! `"true"`) or are not safe as plain scalars are double-quoted, `$` is written `$$` so env
//! expansion gives it back unchanged, empty collections are `{}` and `[]`, and floats keep
//! a `.` or exponent. [`to_yaml_redacted`] must never let a credential through: values
//! under secret-looking keys and everything under `headers` become `"[REDACTED]"`.

use crate::parse::core_schema;
use crate::{Node, Value};

const REDACTED: &str = "[REDACTED]";

/// Key fragments (lowercase) whose values are credentials.
const SECRET_KEY_PARTS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "api_key",
    "apikey",
    // Inline key material (`tls.key_pem`) and htpasswd lines (`basicauth.htpasswd.inline`).
    "key_pem",
    "inline",
];
/// Keys that match no fragment above but are listed so intent is explicit: they hold
/// *paths* to key material, and a path is not a secret.
const PATH_KEYS: &[&str] = &["key_file", "cert_file", "ca_file", "client_ca_file"];

/// Renders the tree as YAML with secrets replaced by `"[REDACTED]"`.
pub fn to_yaml_redacted(node: &Node) -> String {
    render(node, true)
}

/// Renders the tree as YAML, secrets included. Never print this to a log or a terminal
/// a user did not ask for; it exists for tests and for writing a resolved config to disk.
pub fn to_yaml(node: &Node) -> String {
    render(node, false)
}

fn render(node: &Node, redact: bool) -> String {
    let mut out = String::new();
    let mode = if redact { Mode::Redact } else { Mode::Plain };
    match &node.value {
        Value::Map(entries) if !entries.is_empty() => write_map(&mut out, entries, 0, false, mode),
        Value::Seq(items) if !items.is_empty() => write_seq(&mut out, items, 0, false, mode),
        _ => {
            out.push_str(&inline(node, mode));
            out.push('\n');
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Plain,
    /// Redact secrets found below.
    Redact,
    /// Everything below is secret (under a secret key or `headers`).
    Secret,
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    !PATH_KEYS.contains(&key.as_str()) && SECRET_KEY_PARTS.iter().any(|part| key.contains(part))
}

/// The mode for the value stored under `key`.
fn mode_under(key: &Node, mode: Mode) -> Mode {
    if mode != Mode::Redact {
        return mode;
    }
    match key.scalar_text() {
        Some(key) if key.eq_ignore_ascii_case("headers") || is_secret_key(&key) => Mode::Secret,
        _ => Mode::Redact,
    }
}

fn indent(out: &mut String, width: usize) {
    out.extend(std::iter::repeat_n(' ', width));
}

/// Writes a non-empty map. `continues_line` is true when the cursor already sits after a
/// `- ` at this indentation, so the first entry goes on that line.
fn write_map(
    out: &mut String,
    entries: &[(Node, Node)],
    width: usize,
    continues_line: bool,
    mode: Mode,
) {
    for (index, (key, value)) in entries.iter().enumerate() {
        if index > 0 || !continues_line {
            indent(out, width);
        }
        out.push_str(&key_text(key));
        out.push(':');
        write_value(out, value, width + 2, mode_under(key, mode));
    }
}

fn write_seq(out: &mut String, items: &[Node], width: usize, continues_line: bool, mode: Mode) {
    for (index, item) in items.iter().enumerate() {
        if index > 0 || !continues_line {
            indent(out, width);
        }
        out.push_str("- ");
        match &item.value {
            Value::Map(entries) if !entries.is_empty() => {
                write_map(out, entries, width + 2, true, mode)
            }
            Value::Seq(inner) if !inner.is_empty() => write_seq(out, inner, width + 2, true, mode),
            _ => {
                out.push_str(&inline(item, mode));
                out.push('\n');
            }
        }
    }
}

/// Writes what follows `key:` — a nested block on the next lines, or ` scalar`.
fn write_value(out: &mut String, value: &Node, width: usize, mode: Mode) {
    match &value.value {
        Value::Map(entries) if !entries.is_empty() => {
            out.push('\n');
            write_map(out, entries, width, false, mode);
        }
        Value::Seq(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, width, false, mode);
        }
        _ => {
            out.push(' ');
            out.push_str(&inline(value, mode));
            out.push('\n');
        }
    }
}

/// A scalar or empty collection on one line.
fn inline(node: &Node, mode: Mode) -> String {
    match &node.value {
        Value::Null => "null".to_owned(),
        Value::Map(_) => "{}".to_owned(),
        Value::Seq(_) => "[]".to_owned(),
        Value::String(text) if mode == Mode::Secret && text.is_empty() => "\"\"".to_owned(),
        _ if mode == Mode::Secret => quote(REDACTED),
        Value::Bool(flag) => flag.to_string(),
        Value::Int(number) => number.to_string(),
        Value::Float(number) => float_text(*number),
        Value::String(text) => string_text(&text.replace('$', "$$")),
    }
}

fn key_text(key: &Node) -> String {
    match &key.value {
        Value::String(text) => string_text(text),
        Value::Float(number) => float_text(*number),
        _ => key
            .scalar_text()
            .map(|text| text.into_owned())
            .unwrap_or_else(|| quote("<complex key>")),
    }
}

fn float_text(number: f64) -> String {
    if number.is_nan() {
        ".nan".to_owned()
    } else if number.is_infinite() {
        if number > 0.0 { ".inf" } else { "-.inf" }.to_owned()
    } else {
        // `{:?}` keeps a `.0` or an exponent, so it reads back as a float.
        format!("{number:?}")
    }
}

/// A string as a plain scalar when that is safe and reads back as the same string,
/// double-quoted otherwise.
fn string_text(text: &str) -> String {
    if is_plain_safe(text) {
        text.to_owned()
    } else {
        quote(text)
    }
}

fn is_plain_safe(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    let retyped = !matches!(core_schema(text), Value::String(_));
    let starts_badly = "-?:,[]{}#&*!|>'\"%@`".contains(first) || first.is_whitespace();
    let ends_badly = text.ends_with(|last: char| last.is_whitespace() || last == ':');
    let has_bad_sequence =
        text.contains(": ") || text.contains(" #") || text.contains(['\t', '\n', '\r']);
    let has_control = text.chars().any(|c| c.is_control() || c == '\u{feff}');
    !(retyped || starts_badly || ends_badly || has_bad_sequence || has_control)
}

fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || c == '\u{feff}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Source, load};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load_text(text: &str) -> Node {
        load(
            &[Source::Text {
                name: "c.yaml".into(),
                text: text.into(),
            }],
            &[],
            &no_env,
        )
        .unwrap_or_else(|errors| panic!("{errors:?}\n---\n{text}"))
    }

    const CONFIG: &str = r##"receivers:
  otlp:
    protocols:
      grpc:
      http:
        endpoint: "0.0.0.0:4318"
        cors: {}
exporters:
  otlphttp/backend:
    endpoint: https://example.com:443/v1
    headers:
      Authorization: Bearer abc
      x-tenant: team-a
    auth_token: s3cret
    tls:
      key_file: /etc/tls/key.pem
      ca_file: /etc/tls/ca.pem
    api_key: ""
processors:
  batch:
    send_batch_size: 8192
    ratio: 0.5
    big: 1e300
    whole: 2.0
    inf: -.inf
    weird: ["4317", "true", "", " padded ", "a: b", "# no", "- x", "line\nbreak", "tab\there", "quote\"d", "cost $$5", null, "null", "~", 'it''s', "ünïcödé", "x:", "0x1F", "1.5", "{a}", "@at", "a #b"]
    nested: [[1, 2], [], {a: 1, b: [x]}, {}]
    1: int key
    "2": string key
service:
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [otlphttp/backend]
"##;

    #[test]
    fn unredacted_output_loads_back_into_the_same_tree() {
        let original = load_text(CONFIG);
        let rendered = to_yaml(&original);
        let reloaded = load_text(&rendered);
        assert!(
            original.same_value(&reloaded),
            "round trip changed the tree:\n{rendered}"
        );
        let weird = reloaded
            .get("processors")
            .unwrap()
            .get("batch")
            .unwrap()
            .get("weird")
            .unwrap();
        assert_eq!(weird.as_seq().unwrap()[10].as_str(), Some("cost $5"));
    }

    #[test]
    fn redacted_output_hides_secrets_and_keeps_paths() {
        let original = load_text(CONFIG);
        let rendered = to_yaml_redacted(&original);
        assert!(!rendered.contains("abc"), "{rendered}");
        assert!(!rendered.contains("s3cret"), "{rendered}");
        assert!(
            !rendered.contains("team-a"),
            "every header value is redacted:\n{rendered}"
        );
        assert!(rendered.contains("/etc/tls/key.pem"), "{rendered}");
        assert!(rendered.contains("/etc/tls/ca.pem"), "{rendered}");
        let reloaded = load_text(&rendered);
        let backend = reloaded
            .get("exporters")
            .unwrap()
            .get("otlphttp/backend")
            .unwrap();
        assert_eq!(backend.get("auth_token").unwrap().as_str(), Some(REDACTED));
        assert_eq!(
            backend
                .get("headers")
                .unwrap()
                .get("Authorization")
                .unwrap()
                .as_str(),
            Some(REDACTED)
        );
        assert_eq!(
            backend.get("api_key").unwrap().as_str(),
            Some(""),
            "an empty secret reveals nothing"
        );
        assert_eq!(
            backend.get("endpoint").unwrap().as_str(),
            Some("https://example.com:443/v1")
        );
        // Apart from the redacted values, the tree is unchanged.
        let original_batch = original.get("processors").unwrap().get("batch").unwrap();
        assert!(
            original_batch.same_value(reloaded.get("processors").unwrap().get("batch").unwrap())
        );
    }

    #[test]
    fn layout_is_block_style_with_empty_collections_inline() {
        let rendered = to_yaml(&load_text(
            "a:\n  b: {}\n  c: []\n  d:\n    - x: 1\n      y: 2\n    - - 3\n",
        ));
        assert_eq!(
            rendered,
            "a:\n  b: {}\n  c: []\n  d:\n    - x: 1\n      y: 2\n    - - 3\n"
        );
        assert_eq!(to_yaml(&load_text("")), "{}\n");
    }

    #[test]
    fn secret_key_matching() {
        assert!(is_secret_key("password"));
        assert!(is_secret_key("X-API_KEY"));
        assert!(is_secret_key("bearer_token"));
        assert!(is_secret_key("client_secret"));
        assert!(!is_secret_key("key_file"));
        assert!(!is_secret_key("endpoint"));
    }
}
