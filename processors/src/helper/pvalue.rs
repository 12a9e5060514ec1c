//! OTLP attribute values with the Collector's (Go `pcommon`) semantics, for processors that
//! must produce byte-identical output to the Collector: the text form of a value
//! (`Value.AsString`), the decoding of a config value (`Value.FromRaw`), the attribute-map
//! operations (`Map.Get`, `Map.PutEmpty`, `Map.Remove`) and Go's number parsing.
//!
//! This module must never invent a behaviour: every function names the Go function it
//! mirrors, and where Go's result depends on the CPU (float to int conversion) the amd64
//! result is used, as that is what the released Collector binaries run on.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value,
};
use oxcol_ottl::value::base64;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A value written in a config (`value: 2245`, `value: "x"`, `value: [1, 2]`), decoded
/// as the Collector's `pcommon.Value.FromRaw` does: ints stay ints, floats doubles,
/// sequences slices, maps maps (keys in the order written).
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigValue(pub AnyValue);

impl<'de> Deserialize<'de> for ConfigValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ConfigValueVisitor)
            .map(ConfigValue)
    }
}

struct ConfigValueVisitor;

fn any(value: Value) -> AnyValue {
    AnyValue { value: Some(value) }
}

impl<'de> Visitor<'de> for ConfigValueVisitor {
    type Value = AnyValue;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string, number, boolean, list or map")
    }
    fn visit_unit<E: de::Error>(self) -> Result<AnyValue, E> {
        Ok(AnyValue { value: None })
    }
    fn visit_none<E: de::Error>(self) -> Result<AnyValue, E> {
        Ok(AnyValue { value: None })
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<AnyValue, E> {
        Ok(any(Value::BoolValue(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<AnyValue, E> {
        Ok(any(Value::IntValue(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<AnyValue, E> {
        // FromRaw(uint64) stores int64(v), wrapping like Go's conversion.
        Ok(any(Value::IntValue(v as i64)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<AnyValue, E> {
        Ok(any(Value::DoubleValue(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<AnyValue, E> {
        Ok(any(Value::StringValue(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<AnyValue, E> {
        Ok(any(Value::StringValue(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
        let mut values = Vec::new();
        while let Some(ConfigValue(v)) = seq.next_element()? {
            values.push(v);
        }
        Ok(any(Value::ArrayValue(ArrayValue { values })))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
        let mut values = Vec::new();
        while let Some((key, ConfigValue(v))) = map.next_entry::<String, ConfigValue>()? {
            values.push(KeyValue {
                key,
                value: Some(v),
                ..Default::default()
            });
        }
        Ok(any(Value::KvlistValue(KeyValueList { values })))
    }
}

/// `pcommon.Map.Get`: the value of the first attribute named `key`.
pub fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    static EMPTY: AnyValue = AnyValue { value: None };
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.as_ref().unwrap_or(&EMPTY))
}

/// `pcommon.Map.Get` for writing (an attribute with no value gets an empty one).
pub fn get_mut<'a>(attrs: &'a mut [KeyValue], key: &str) -> Option<&'a mut AnyValue> {
    attrs
        .iter_mut()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.get_or_insert_with(AnyValue::default))
}

/// `pcommon.Map.PutEmpty` followed by a copy: replaces the first attribute named `key` in
/// place, or appends it.
pub fn put(attrs: &mut Vec<KeyValue>, key: &str, value: AnyValue) {
    match attrs.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = Some(value),
        None => attrs.push(KeyValue {
            key: key.to_string(),
            value: Some(value),
            ..Default::default()
        }),
    }
}

/// `pcommon.Map.PutStr`.
pub fn put_str(attrs: &mut Vec<KeyValue>, key: &str, value: String) {
    put(
        attrs,
        key,
        AnyValue {
            value: Some(Value::StringValue(value)),
        },
    );
}

/// `pcommon.Map.Remove`: removes the first attribute named `key`, moving the last
/// attribute into its place (Go does the same swap, so attribute order matches).
pub fn remove(attrs: &mut Vec<KeyValue>, key: &str) -> bool {
    match attrs.iter().position(|kv| kv.key == key) {
        Some(i) => {
            attrs.swap_remove(i);
            true
        }
        None => false,
    }
}

/// The type name the Collector prints for a value (`pcommon.ValueType.String()`).
pub fn type_name(value: &AnyValue) -> &'static str {
    match &value.value {
        None | Some(Value::StringValueStrindex(_)) => "Empty",
        Some(Value::StringValue(_)) => "Str",
        Some(Value::BoolValue(_)) => "Bool",
        Some(Value::IntValue(_)) => "Int",
        Some(Value::DoubleValue(_)) => "Double",
        Some(Value::KvlistValue(_)) => "Map",
        Some(Value::ArrayValue(_)) => "Slice",
        Some(Value::BytesValue(_)) => "Bytes",
    }
}

/// `pcommon.Value.AsString` (pdata v1.68): strings as they are, numbers and booleans as
/// Go formats them (`NaN`, `Infinity`, `-Infinity` for the special doubles), maps and
/// slices as Go's JSON encoding of their raw form (keys sorted, no HTML escaping; "" when
/// a NaN or infinity is inside), bytes as standard base64, an empty value as "".
pub fn as_string(value: &AnyValue) -> String {
    match &value.value {
        None | Some(Value::StringValueStrindex(_)) => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => {
            if d.is_nan() {
                "NaN".to_string()
            } else if d.is_infinite() {
                if *d > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
            } else {
                es6_number(*d)
            }
        }
        Some(Value::BytesValue(b)) => base64(b),
        Some(Value::KvlistValue(_)) | Some(Value::ArrayValue(_)) => {
            let mut out = String::new();
            // Go's json.Marshal fails on NaN/Inf anywhere inside and AsString then
            // returns the empty string.
            if write_json(value, &mut out) {
                out
            } else {
                String::new()
            }
        }
    }
}

/// A finite float as Go's encoding/json writes it (ES6 number formatting): plain
/// decimal between 1e-6 and 1e21, otherwise exponent form without a padded exponent.
fn es6_number(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust's shortest exponent form is "1.5e21" / "1e-7"; Go writes "1.5e+21" / "1e-7".
        let text = format!("{f:e}");
        match text.split_once('e') {
            Some((mantissa, exponent)) if !exponent.starts_with('-') => {
                format!("{mantissa}e+{exponent}")
            }
            _ => text,
        }
    } else {
        format!("{f}")
    }
}

/// Writes `value` as Go's json.Marshal writes `value.AsRaw()`. False when Go would fail
/// (a NaN or infinite double).
fn write_json(value: &AnyValue, out: &mut String) -> bool {
    match &value.value {
        None | Some(Value::StringValueStrindex(_)) => out.push_str("null"),
        Some(Value::StringValue(s)) => json_string(s, out),
        Some(Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(Value::IntValue(i)) => out.push_str(&i.to_string()),
        Some(Value::DoubleValue(d)) => {
            if !d.is_finite() {
                return false;
            }
            out.push_str(&es6_number(*d));
        }
        Some(Value::BytesValue(b)) => {
            out.push('"');
            out.push_str(&base64(b));
            out.push('"');
        }
        Some(Value::ArrayValue(a)) => {
            out.push('[');
            for (i, v) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if !write_json(v, out) {
                    return false;
                }
            }
            out.push(']');
        }
        Some(Value::KvlistValue(m)) => {
            // AsRaw builds a Go map (a later duplicate key wins); json.Marshal sorts keys.
            let mut entries: Vec<(&str, &KeyValue)> = Vec::new();
            for kv in &m.values {
                match entries.iter_mut().find(|(k, _)| *k == kv.key) {
                    Some(entry) => entry.1 = kv,
                    None => entries.push((&kv.key, kv)),
                }
            }
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            static EMPTY: AnyValue = AnyValue { value: None };
            for (i, (key, kv)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_string(key, out);
                out.push(':');
                if !write_json(kv.value.as_ref().unwrap_or(&EMPTY), out) {
                    return false;
                }
            }
            out.push('}');
        }
    }
    true
}

/// A JSON string as Go's encoding/json writes it with HTML escaping off (pdata's
/// `marshalJSONNoHTMLEscape`); U+2028 and U+2029 are still escaped.
fn json_string(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => {
                let b = c as u32 as usize;
                out.push_str("\\u00");
                out.push(HEX[b >> 4] as char);
                out.push(HEX[b & 15] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's `strconv.ParseInt(s, 10, 64)`: optional sign, decimal digits, nothing else; None
/// on syntax or range errors.
pub fn go_parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

/// Go's `strconv.ParseFloat(s, 64)` for the decimal syntax and the special values
/// (`inf`, `infinity`, `nan`, any case; a sign only before the infinities); None where Go
/// returns an error, including values out of range (Go's `ErrRange`). Hexadecimal
/// floats (`0x1p-2`) and digit separators (`1_000`, only legal with a base prefix in Go)
/// are not accepted.
pub fn go_parse_float(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = unsigned.to_ascii_lowercase();
    if lower == "nan" {
        // Go accepts "NaN" only without a sign.
        return (unsigned.len() == s.len()).then_some(f64::NAN);
    }
    if lower == "inf" || lower == "infinity" {
        let inf = if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
        return Some(inf);
    }
    // Rust accepts exactly the decimal forms Go does (digits, '.', exponent); reject what
    // Rust would read but Go would not.
    if unsigned.is_empty()
        || !unsigned
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    let value: f64 = s.parse().ok()?;
    value.is_finite().then_some(value)
}

/// Go's `int64(f)` on amd64: truncation toward zero; NaN and out-of-range values give
/// the "integer indefinite" value i64::MIN.
pub fn go_float_to_int(f: f64) -> i64 {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() || !(-TWO_63..TWO_63).contains(&f) {
        i64::MIN
    } else {
        f.trunc() as i64
    }
}

/// Whether two values are equal as the Collector compares attribute values for strict
/// matching: same type and same scalar; maps and slices by content (map key order
/// ignored, as `pdatautil.ValueHash` ignores it).
pub fn values_equal(a: &AnyValue, b: &AnyValue) -> bool {
    match (&a.value, &b.value) {
        (
            None | Some(Value::StringValueStrindex(_)),
            None | Some(Value::StringValueStrindex(_)),
        ) => true,
        (Some(Value::StringValue(x)), Some(Value::StringValue(y))) => x == y,
        (Some(Value::BoolValue(x)), Some(Value::BoolValue(y))) => x == y,
        (Some(Value::IntValue(x)), Some(Value::IntValue(y))) => x == y,
        (Some(Value::DoubleValue(x)), Some(Value::DoubleValue(y))) => x == y,
        (Some(Value::BytesValue(x)), Some(Value::BytesValue(y))) => x == y,
        (Some(Value::ArrayValue(x)), Some(Value::ArrayValue(y))) => {
            x.values.len() == y.values.len()
                && x.values
                    .iter()
                    .zip(&y.values)
                    .all(|(p, q)| values_equal(p, q))
        }
        (Some(Value::KvlistValue(x)), Some(Value::KvlistValue(y))) => {
            static EMPTY: AnyValue = AnyValue { value: None };
            x.values.len() == y.values.len()
                && x.values.iter().all(|kv| {
                    y.values.iter().any(|other| {
                        other.key == kv.key
                            && values_equal(
                                kv.value.as_ref().unwrap_or(&EMPTY),
                                other.value.as_ref().unwrap_or(&EMPTY),
                            )
                    })
                })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AnyValue {
        any(Value::StringValue(v.into()))
    }
    fn d(v: f64) -> AnyValue {
        any(Value::DoubleValue(v))
    }
    fn kv(k: &str, v: AnyValue) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(v),
            ..Default::default()
        }
    }

    #[test]
    fn as_string_formats_like_pcommon() {
        assert_eq!(as_string(&s("x")), "x");
        assert_eq!(as_string(&any(Value::IntValue(-5))), "-5");
        assert_eq!(as_string(&any(Value::BoolValue(true))), "true");
        assert_eq!(as_string(&d(1.5)), "1.5");
        assert_eq!(as_string(&d(3.0)), "3");
        assert_eq!(as_string(&d(1e21)), "1e+21");
        assert_eq!(as_string(&d(1e-7)), "1e-7");
        assert_eq!(as_string(&d(0.000001)), "0.000001");
        assert_eq!(as_string(&d(f64::NAN)), "NaN");
        assert_eq!(as_string(&d(f64::INFINITY)), "Infinity");
        assert_eq!(as_string(&d(f64::NEG_INFINITY)), "-Infinity");
        assert_eq!(
            as_string(&any(Value::BytesValue(vec![1, 2, 3, 255]))),
            "AQID/w=="
        );
        assert_eq!(as_string(&AnyValue::default()), "");
        let map = any(Value::KvlistValue(KeyValueList {
            values: vec![
                kv("b", d(2.5)),
                kv("a", s("<x>")),
                kv(
                    "c",
                    any(Value::ArrayValue(ArrayValue {
                        values: vec![any(Value::IntValue(1)), AnyValue::default()],
                    })),
                ),
            ],
        }));
        assert_eq!(as_string(&map), r#"{"a":"<x>","b":2.5,"c":[1,null]}"#);
        let bad = any(Value::ArrayValue(ArrayValue {
            values: vec![d(f64::NAN)],
        }));
        assert_eq!(as_string(&bad), "");
        assert_eq!(as_string(&s("a\u{1}\n")), "a\u{1}\n");
        let ctl = any(Value::ArrayValue(ArrayValue {
            values: vec![s("a\u{1}\n\"")],
        }));
        assert_eq!(as_string(&ctl), "[\"a\\u0001\\n\\\"\"]");
    }

    #[test]
    fn map_operations_match_pcommon() {
        let mut attrs = vec![kv("a", s("1")), kv("b", s("2")), kv("c", s("3"))];
        assert!(remove(&mut attrs, "a"));
        // Go moves the last entry into the hole.
        assert_eq!(
            attrs.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(),
            ["c", "b"]
        );
        assert!(!remove(&mut attrs, "zz"));
        put(&mut attrs, "b", s("new"));
        assert_eq!(attrs[1].value, Some(s("new")));
        put_str(&mut attrs, "d", "4".into());
        assert_eq!(attrs.len(), 3);
        assert_eq!(get(&attrs, "d"), Some(&s("4")));
        assert_eq!(get(&attrs, "zz"), None);
    }

    #[test]
    fn go_number_parsing() {
        assert_eq!(go_parse_int("42"), Some(42));
        assert_eq!(go_parse_int("+42"), Some(42));
        assert_eq!(go_parse_int("-0"), Some(0));
        assert_eq!(go_parse_int(" 42"), None);
        assert_eq!(go_parse_int("4.2"), None);
        assert_eq!(go_parse_int("9223372036854775808"), None);
        assert_eq!(go_parse_int(""), None);
        assert_eq!(go_parse_float("1.5"), Some(1.5));
        assert_eq!(go_parse_float(".5"), Some(0.5));
        assert_eq!(go_parse_float("1e3"), Some(1000.0));
        assert_eq!(go_parse_float("-Inf"), Some(f64::NEG_INFINITY));
        assert!(go_parse_float("NaN").is_some_and(f64::is_nan));
        assert_eq!(go_parse_float("+NaN"), None);
        assert_eq!(go_parse_float("1e400"), None);
        assert_eq!(go_parse_float("abc"), None);
        assert_eq!(go_parse_float("1_000"), None);
        assert_eq!(go_float_to_int(-3.9), -3);
        assert_eq!(go_float_to_int(f64::NAN), i64::MIN);
        assert_eq!(go_float_to_int(1e300), i64::MIN);
    }

    #[test]
    fn equality_ignores_map_order_but_not_types() {
        let m1 = any(Value::KvlistValue(KeyValueList {
            values: vec![kv("a", s("1")), kv("b", d(2.0))],
        }));
        let m2 = any(Value::KvlistValue(KeyValueList {
            values: vec![kv("b", d(2.0)), kv("a", s("1"))],
        }));
        assert!(values_equal(&m1, &m2));
        assert!(!values_equal(&any(Value::IntValue(2)), &d(2.0)));
        assert!(!values_equal(&s("1"), &any(Value::IntValue(1))));
    }
}
