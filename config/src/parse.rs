//! YAML text -> [`Node`] tree, built from `saphyr-parser`'s event stream so that every
//! node keeps the line and column its event started at.
//!
//! Plain scalars are typed by the YAML 1.2 core schema ([`core_schema`]); quoted and block
//! scalars are always strings. Anchors are resolved by cloning, the merge key `<<` is
//! honoured, and a duplicate key is an error at the second key. This module never decides
//! what a config *means*; it only reports what was written and where.

use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Span, StrInput, Tag};

use crate::{ConfigError, Location, Node, Value};

/// Deeper nesting than this is not a config, it is an attack on the stack.
const MAX_DEPTH: usize = 256;
/// Bound on nodes created, so an alias bomb ("billion laughs") fails instead of eating RAM.
const MAX_NODES: usize = 1_000_000;

/// Parses one YAML document. Returns the root (`Null` for an empty document or one with
/// only comments) unless the text could not be parsed, and every error found: a syntax
/// error stops the parse, a duplicate key does not.
pub(crate) fn parse_document(text: &str, source: &Arc<str>) -> (Option<Node>, Vec<ConfigError>) {
    let mut builder = Builder {
        parser: Parser::new_from_str(text),
        source: source.clone(),
        anchors: HashMap::new(),
        node_count: 0,
        errors: Vec::new(),
    };
    let root = builder.document();
    let mut errors = builder.errors;
    match root {
        Ok(root) => (Some(root), errors),
        Err(error) => {
            errors.push(error);
            (None, errors)
        }
    }
}

struct Builder<'input> {
    parser: Parser<'input, StrInput<'input>>,
    source: Arc<str>,
    /// Anchor id -> the anchored node and how many nodes it contains.
    anchors: HashMap<usize, (Node, usize)>,
    node_count: usize,
    errors: Vec<ConfigError>,
}

impl<'input> Builder<'input> {
    fn location(&self, marker: &Marker) -> Location {
        Location {
            source: self.source.clone(),
            line: marker.line(),
            column: marker.col() + 1,
        }
    }

    fn next(&mut self) -> Result<(Event<'input>, Span), ConfigError> {
        match self.parser.next_event() {
            Some(Ok(event)) => Ok(event),
            Some(Err(error)) => Err(ConfigError::at(
                &self.location(error.marker()),
                format!("YAML syntax error: {}", error.info()),
            )),
            None => Err(ConfigError::new(
                Some(Location::new(self.source.clone(), 1, 1)),
                "YAML parser ended unexpectedly",
            )),
        }
    }

    fn document(&mut self) -> Result<Node, ConfigError> {
        let empty = Node::new(Value::Null, Location::new(self.source.clone(), 1, 1));
        let mut root = None;
        loop {
            let (event, span) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(root.unwrap_or(empty)),
                Event::DocumentStart(_) => {
                    if root.is_some() {
                        return Err(ConfigError::at(
                            &self.location(&span.start),
                            "a config file holds one YAML document; remove the second `---`",
                        ));
                    }
                    let (event, span) = self.next()?;
                    root = Some(self.node(event, span, 0)?);
                }
                _ => {
                    return Err(ConfigError::at(
                        &self.location(&span.start),
                        "unexpected YAML event",
                    ));
                }
            }
        }
    }

    fn count(&mut self, nodes: usize, at: &Location) -> Result<(), ConfigError> {
        self.node_count += nodes;
        if self.node_count > MAX_NODES {
            return Err(ConfigError::at(
                at,
                format!("document expands to more than {MAX_NODES} nodes (alias bomb?)"),
            ));
        }
        Ok(())
    }

    fn node(
        &mut self,
        event: Event<'input>,
        span: Span,
        depth: usize,
    ) -> Result<Node, ConfigError> {
        let location = self.location(&span.start);
        if depth > MAX_DEPTH {
            return Err(ConfigError::at(
                &location,
                format!("nesting deeper than {MAX_DEPTH} levels"),
            ));
        }
        let count_before = self.node_count;
        self.count(1, &location)?;
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = scalar_value(&text, style, tag.as_deref());
                (Node::new(value, location), anchor)
            }
            Event::Alias(id) => {
                let Some((node, size)) = self.anchors.get(&id).cloned() else {
                    return Err(ConfigError::at(
                        &location,
                        "alias refers to an unknown anchor",
                    ));
                };
                self.count(size, &location)?;
                return Ok(node);
            }
            Event::SequenceStart(anchor, _tag) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(event, span, depth + 1)?);
                }
                (Node::new(Value::Seq(items), location), anchor)
            }
            Event::MappingStart(anchor, _tag) => {
                let entries = self.mapping(depth)?;
                (Node::new(Value::Map(entries), location), anchor)
            }
            _ => return Err(ConfigError::at(&location, "unexpected YAML event")),
        };
        if anchor > 0 {
            self.anchors
                .insert(anchor, (node.clone(), self.node_count - count_before));
        }
        Ok(node)
    }

    /// Reads entries up to the end of a mapping. Keys written explicitly win over keys
    /// brought in by `<<: *anchor`, whatever their order.
    fn mapping(&mut self, depth: usize) -> Result<Vec<(Node, Node)>, ConfigError> {
        let mut entries: Vec<(Node, Node)> = Vec::new();
        let mut merged: Vec<(Node, Node)> = Vec::new();
        loop {
            let (event, span) = self.next()?;
            if matches!(event, Event::MappingEnd) {
                break;
            }
            let is_merge_key =
                matches!(&event, Event::Scalar(text, ScalarStyle::Plain, _, None) if text == "<<");
            let key = self.node(event, span, depth + 1)?;
            let (event, span) = self.next()?;
            let value = self.node(event, span, depth + 1)?;
            if is_merge_key {
                self.collect_merge(value, &mut merged);
                continue;
            }
            let key_text = key.scalar_text().map(|text| text.into_owned());
            if let Some((first, _)) = entries.iter().find(|(existing, _)| {
                key_text.is_some()
                    && existing.scalar_text().map(|text| text.into_owned()) == key_text
            }) {
                self.errors.push(ConfigError::at(
                    &key.location,
                    format!(
                        "duplicate key '{}' (first written at line {}, column {})",
                        key_text.unwrap_or_default(),
                        first.location.line,
                        first.location.column
                    ),
                ));
                continue;
            }
            entries.push((key, value));
        }
        for (key, value) in merged {
            let key_text = key.scalar_text().map(|text| text.into_owned());
            let present = entries.iter().any(|(existing, _)| {
                existing.scalar_text().map(|text| text.into_owned()) == key_text
            });
            if !present {
                entries.push((key, value));
            }
        }
        Ok(entries)
    }

    /// `<<: *a` or `<<: [*a, *b]`: earlier maps in the list win, as YAML's merge key says.
    fn collect_merge(&mut self, value: Node, merged: &mut Vec<(Node, Node)>) {
        let maps = match value.value {
            Value::Map(entries) => vec![entries],
            Value::Seq(items) if items.iter().all(|item| matches!(item.value, Value::Map(_))) => {
                items
                    .into_iter()
                    .filter_map(|item| match item.value {
                        Value::Map(entries) => Some(entries),
                        _ => None,
                    })
                    .collect()
            }
            _ => {
                self.errors.push(ConfigError::at(
                    &value.location,
                    "the merge key `<<` takes a map or a list of maps",
                ));
                return;
            }
        };
        for (key, value) in maps.into_iter().flatten() {
            if !merged
                .iter()
                .any(|(existing, _)| existing.scalar_text() == key.scalar_text())
            {
                merged.push((key, value));
            }
        }
    }
}

fn scalar_value(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Value {
    let forced_string = tag.is_some_and(|tag| tag.is_yaml_core_schema() && tag.suffix == "str");
    if style != ScalarStyle::Plain || forced_string {
        return Value::String(text.to_owned());
    }
    core_schema(text)
}

/// Types a plain scalar as the Collector's YAML library (go-yaml v3) does: the YAML 1.2
/// core schema for null and booleans; for numbers its `resolve` rules, which drop every
/// `_` first (`65_536` is 65536) and read integers as Go's `strconv.ParseInt(text, 0, 64)`
/// does (`0x1F`, `0o17`, `0b101`, and `0755` as octal, as YAML 1.1 spelled it).
///
/// A number whose text a string field must keep as written, because go-yaml hands a
/// string field the scalar's text (`directory_permissions: 0750` is "0750", not "488";
/// `65_536`, `0b101`, `09`), stays a string here; the typed decode of a number field
/// parses it with [`parse_int`]/[`parse_float`], which follow go-yaml, so both kinds of
/// field get what the Collector gets. An integer too large for `i64` stays a string too,
/// so a lenient decode into `u64` can still read it.
pub(crate) fn core_schema(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if spelled_for_go_only(text) {
        return Value::String(text.to_owned());
    }
    if let Some(number) = parse_int(text) {
        return match i64::try_from(number) {
            Ok(number) => Value::Int(number),
            Err(_) => Value::String(text.to_owned()),
        };
    }
    match parse_float(text) {
        Some(number) => Value::Float(number),
        None => Value::String(text.to_owned()),
    }
}

/// Number spellings that only go-yaml's rules read as numbers and whose value would lose
/// the text: `_` separators, a leading `0` before a digit (octal, or `09`), `0b`.
fn spelled_for_go_only(text: &str) -> bool {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let bytes = unsigned.as_bytes();
    let looks_numeric = bytes
        .first()
        .is_some_and(|b| b.is_ascii_digit() || *b == b'.');
    looks_numeric
        && (text.contains('_')
            || (bytes.len() > 1 && bytes[0] == b'0' && bytes[1].is_ascii_digit())
            || unsigned.starts_with("0b")
            || unsigned.starts_with("0B"))
        && (parse_int(text).is_some() || parse_float(text).is_some())
}

/// Parses an integer as go-yaml v3 does: `_` removed, then an optional sign and Go's base
/// prefixes (`0x`, `0o`, `0b`, or a leading `0` for octal). `None` when it is not one or
/// does not fit `i128`.
pub(crate) fn parse_int(text: &str) -> Option<i128> {
    let plain = text.replace('_', "");
    let (negative, unsigned) = match plain.as_bytes().first() {
        Some(b'-') => (true, &plain[1..]),
        Some(b'+') => (false, &plain[1..]),
        _ => (false, plain.as_str()),
    };
    let lower = unsigned.get(..2).map(str::to_ascii_lowercase);
    let (digits, radix) = match lower.as_deref() {
        Some("0x") => (&unsigned[2..], 16),
        Some("0o") => (&unsigned[2..], 8),
        Some("0b") => (&unsigned[2..], 2),
        _ if unsigned.len() > 1 && unsigned.starts_with('0') => (&unsigned[1..], 8),
        _ => (unsigned, 10),
    };
    if digits.is_empty() || !digits.chars().all(|digit| digit.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// Parses a float as go-yaml v3 does: `.inf`, `-.Inf`, `.nan`, or (with every `_`
/// removed) `1.5`, `-.5`, `1e3`, `2.`, `09`.
pub(crate) fn parse_float(text: &str) -> Option<f64> {
    match text {
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    let plain = text.replace('_', "");
    let unsigned = plain.strip_prefix(['-', '+']).unwrap_or(&plain);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (mantissa, None),
    };
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    let mantissa_ok = match fraction {
        // `.5` needs fraction digits; `5.` needs whole digits.
        Some(fraction) => {
            all_digits(whole) && all_digits(fraction) && !(whole.is_empty() && fraction.is_empty())
        }
        None => !whole.is_empty() && all_digits(whole),
    };
    let exponent_ok = exponent.is_none_or(|exponent| {
        let digits = exponent.strip_prefix(['-', '+']).unwrap_or(exponent);
        !digits.is_empty() && all_digits(digits)
    });
    if !mantissa_ok || !exponent_ok {
        return None;
    }
    plain.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Option<Node>, Vec<ConfigError>) {
        parse_document(text, &Arc::from("test.yaml"))
    }

    fn parse_ok(text: &str) -> Node {
        let (root, errors) = parse(text);
        assert!(errors.is_empty(), "unexpected errors: {errors:?}");
        root.expect("a root node")
    }

    #[test]
    fn core_schema_types_plain_scalars() {
        assert_eq!(core_schema(""), Value::Null);
        assert_eq!(core_schema("~"), Value::Null);
        assert_eq!(core_schema("True"), Value::Bool(true));
        assert_eq!(core_schema("FALSE"), Value::Bool(false));
        assert_eq!(core_schema("yes"), Value::String("yes".into()));
        assert_eq!(core_schema("-42"), Value::Int(-42));
        assert_eq!(core_schema("0x1F"), Value::Int(31));
        assert_eq!(core_schema("0o17"), Value::Int(15));
        assert_eq!(core_schema("1.5"), Value::Float(1.5));
        assert_eq!(core_schema("-.5"), Value::Float(-0.5));
        assert_eq!(core_schema("1e3"), Value::Float(1000.0));
        assert_eq!(core_schema("2."), Value::Float(2.0));
        assert_eq!(core_schema("-.inf"), Value::Float(f64::NEG_INFINITY));
        assert!(matches!(core_schema(".nan"), Value::Float(number) if number.is_nan()));
        assert_eq!(core_schema("."), Value::String(".".into()));
        assert_eq!(core_schema("1.2.3"), Value::String("1.2.3".into()));
        assert_eq!(core_schema("10s"), Value::String("10s".into()));
        assert_eq!(core_schema("0x"), Value::String("0x".into()));
        assert_eq!(core_schema("e5"), Value::String("e5".into()));
        assert_eq!(core_schema("inf"), Value::String("inf".into()));
        // go-yaml v3 (the Collector's YAML library) drops `_` and reads Go's base prefixes.
        // Spellings only go-yaml reads as numbers keep their text (a string field gets
        // it as written, as from go-yaml); number fields parse them the go-yaml way.
        for (text, number) in [
            ("65_536", 65536),
            ("-1_000", -1000),
            ("0b101", 5),
            ("0755", 493),
        ] {
            assert_eq!(core_schema(text), Value::String(text.into()));
            assert_eq!(parse_int(text), Some(number), "{text}");
        }
        assert_eq!(core_schema("09"), Value::String("09".into()));
        assert_eq!(parse_float("09"), Some(9.0));
        assert_eq!(core_schema("1_000.5"), Value::String("1_000.5".into()));
        assert_eq!(parse_float("1_000.5"), Some(1000.5));
        assert_eq!(core_schema("0"), Value::Int(0));
        assert_eq!(core_schema("0.5"), Value::Float(0.5));
        assert_eq!(core_schema("_"), Value::String("_".into()));
        assert_eq!(core_schema("0x_"), Value::String("0x_".into()));
        // Too big for i64: kept as text so a u64 field can still read it.
        assert_eq!(
            core_schema("18446744073709551615"),
            Value::String("18446744073709551615".into())
        );
    }

    #[test]
    fn quoted_and_block_scalars_are_strings() {
        let root = parse_ok("a: '1'\nb: \"true\"\nc: |\n  42\nd: !!str 7\ne: 7\n");
        assert_eq!(root.get("a").unwrap().value, Value::String("1".into()));
        assert_eq!(root.get("b").unwrap().value, Value::String("true".into()));
        assert_eq!(root.get("c").unwrap().value, Value::String("42\n".into()));
        assert_eq!(root.get("d").unwrap().value, Value::String("7".into()));
        assert_eq!(root.get("e").unwrap().value, Value::Int(7));
    }

    #[test]
    fn nodes_carry_one_based_positions() {
        let root = parse_ok("receivers:\n  otlp:\n    endpoint: \"0.0.0.0:4317\"\n");
        let otlp = root.get("receivers").unwrap().get("otlp").unwrap();
        let endpoint = otlp.get("endpoint").unwrap();
        assert_eq!((endpoint.location.line, endpoint.location.column), (3, 15));
        let key = otlp.key_location("endpoint").unwrap();
        assert_eq!((key.line, key.column), (3, 5));
        assert_eq!(&*key.source, "test.yaml");
    }

    #[test]
    fn empty_and_comment_only_documents_are_null() {
        assert!(parse_ok("").is_null());
        assert!(parse_ok("# only a comment\n\n# another\n").is_null());
    }

    #[test]
    fn duplicate_key_points_at_second_key() {
        let (root, errors) = parse("a: 1\nb:\n  c: 1\n  c: 2\n");
        assert!(root.is_some(), "a duplicate key does not stop the parse");
        assert_eq!(errors.len(), 1);
        let location = errors[0].location.as_ref().unwrap();
        assert_eq!((location.line, location.column), (4, 3));
        assert!(
            errors[0].message.contains("duplicate key 'c'"),
            "{}",
            errors[0].message
        );
        assert!(
            errors[0].message.contains("line 3, column 3"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn syntax_error_has_parser_position() {
        let (root, errors) = parse("a: 1\nb: [1, 2\nc: 3\n");
        assert!(root.is_none());
        assert_eq!(errors.len(), 1);
        let location = errors[0].location.as_ref().unwrap();
        assert!(
            errors[0].message.starts_with("YAML syntax error"),
            "{}",
            errors[0].message
        );
        assert_eq!((location.line, location.column), (3, 2), "{}", errors[0]);
    }

    #[test]
    fn bad_indentation_is_a_syntax_error_with_position() {
        let (_, errors) = parse("a:\n  b: 1\n c: 2\n");
        assert_eq!(errors.len(), 1);
        let location = errors[0].location.as_ref().unwrap();
        assert_eq!((location.line, location.column), (3, 2), "{}", errors[0]);
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let root = parse_ok(
            "base: &base\n  timeout: 5s\n  retries: 3\nother:\n  <<: *base\n  retries: 9\nlist: [*base]\n",
        );
        let other = root.get("other").unwrap();
        assert_eq!(
            other.get("timeout").unwrap().value,
            Value::String("5s".into())
        );
        assert_eq!(
            other.get("retries").unwrap().value,
            Value::Int(9),
            "explicit key beats merged one"
        );
        assert!(other.get("<<").is_none());
        let list = root.get("list").unwrap().as_seq().unwrap();
        assert!(list[0].same_value(root.get("base").unwrap()));
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..8 {
            let previous = format!("*a{}", level - 1);
            let list = [previous.as_str(); 10].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{list}]\n"));
        }
        let (root, errors) = parse(&text);
        assert!(root.is_none());
        assert!(
            errors[0].message.contains("alias bomb"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn second_document_is_an_error() {
        let (_, errors) = parse("a: 1\n---\nb: 2\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].location.as_ref().unwrap().line, 2);
    }
}
