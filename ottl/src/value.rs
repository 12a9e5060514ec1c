//! The values OTTL expressions produce, their conversion to and from the OTLP `AnyValue`,
//! and the comparison rules of the Collector's LANGUAGE.md.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};

/// A value produced by an OTTL expression. Maps and lists keep the OTLP representation so
/// reading a whole attribute map is one clone, not a conversion.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(String),
    Bytes(Vec<u8>),
    Map(Vec<KeyValue>),
    List(Vec<AnyValue>),
    /// A point in time, nanoseconds since the Unix epoch (UTC).
    Time(i64),
    /// A duration in nanoseconds.
    Duration(i64),
}

impl Value {
    /// The type name used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Double(_) => "double",
            Value::Str(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Map(_) => "map",
            Value::List(_) => "slice",
            Value::Time(_) => "time",
            Value::Duration(_) => "duration",
        }
    }

    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// Converts an OTLP value (an empty `AnyValue` is nil).
    pub fn from_any(value: &AnyValue) -> Value {
        match &value.value {
            None | Some(any_value::Value::StringValueStrindex(_)) => Value::Nil,
            Some(any_value::Value::StringValue(s)) => Value::Str(s.clone()),
            Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
            Some(any_value::Value::IntValue(i)) => Value::Int(*i),
            Some(any_value::Value::DoubleValue(d)) => Value::Double(*d),
            Some(any_value::Value::BytesValue(b)) => Value::Bytes(b.clone()),
            Some(any_value::Value::ArrayValue(a)) => Value::List(a.values.clone()),
            Some(any_value::Value::KvlistValue(m)) => Value::Map(m.values.clone()),
        }
    }

    pub fn from_any_opt(value: Option<&AnyValue>) -> Value {
        value.map_or(Value::Nil, Value::from_any)
    }

    /// Converts to an OTLP value; nil becomes the empty value. Times and durations have no
    /// OTLP form and are an error.
    pub fn into_any(self) -> Result<AnyValue, String> {
        let value = match self {
            Value::Nil => None,
            Value::Bool(b) => Some(any_value::Value::BoolValue(b)),
            Value::Int(i) => Some(any_value::Value::IntValue(i)),
            Value::Double(d) => Some(any_value::Value::DoubleValue(d)),
            Value::Str(s) => Some(any_value::Value::StringValue(s)),
            Value::Bytes(b) => Some(any_value::Value::BytesValue(b)),
            Value::Map(m) => Some(any_value::Value::KvlistValue(KeyValueList { values: m })),
            Value::List(l) => Some(any_value::Value::ArrayValue(ArrayValue { values: l })),
            Value::Time(_) | Value::Duration(_) => {
                return Err(format!(
                    "a {} value cannot be stored in telemetry; convert it first (e.g. UnixNano, String)",
                    self.type_name()
                ));
            }
        };
        Ok(AnyValue { value })
    }

    /// The value as a string in the Collector's "string-like" sense (used by Concat,
    /// String, ...): bytes as hex, maps and lists as JSON, numbers and bools as JSON.
    /// Nil has no string form.
    pub fn to_string_like(&self) -> Option<String> {
        Some(match self {
            Value::Nil => return None,
            Value::Str(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Double(d) => format_double(*d),
            Value::Bytes(b) => hex_lower(b),
            Value::Map(_) | Value::List(_) => self.to_json().to_string(),
            Value::Time(ns) => format_time(*ns),
            Value::Duration(ns) => format_duration(*ns),
        })
    }

    /// JSON form of the value (maps keep their key order).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Nil => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Double(d) => serde_json::Number::from_f64(*d)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Bytes(b) => serde_json::Value::String(base64(b)),
            Value::Map(m) => {
                let mut out = serde_json::Map::new();
                for kv in m {
                    out.insert(
                        kv.key.clone(),
                        Value::from_any_opt(kv.value.as_ref()).to_json(),
                    );
                }
                serde_json::Value::Object(out)
            }
            Value::List(l) => {
                serde_json::Value::Array(l.iter().map(|v| Value::from_any(v).to_json()).collect())
            }
            Value::Time(ns) => serde_json::Value::String(format_time(*ns)),
            Value::Duration(ns) => serde_json::Value::from(*ns),
        }
    }

    /// Converts parsed JSON into a value (objects become maps, arrays lists; whole
    /// numbers that fit become ints only when the text had no fraction, as the Collector's
    /// ParseJSON turns every number into a double).
    pub fn from_json(json: &serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Double(n.as_f64().unwrap_or(0.0)),
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(a) => Value::List(
                a.iter()
                    .map(|v| Value::from_json(v).into_any().unwrap_or_default())
                    .collect(),
            ),
            serde_json::Value::Object(o) => Value::Map(
                o.iter()
                    .map(|(k, v)| KeyValue {
                        key: k.clone(),
                        value: Some(Value::from_json(v).into_any().unwrap_or_default()),
                        ..Default::default()
                    })
                    .collect(),
            ),
        }
    }
}

/// Standard base64 with padding (Go's `base64.StdEncoding`): bytes inside JSON output.
pub fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(TABLE[(n >> 18) as usize & 63] as char);
        out.push(TABLE[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            TABLE[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            TABLE[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Lowercase hex of `bytes` (Go's `hex.EncodeToString`).
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    text.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`-like shortest form ("1.5", "3", "0.001").
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".to_string();
    }
    if d.is_infinite() {
        return if d > 0.0 {
            "+Inf".to_string()
        } else {
            "-Inf".to_string()
        };
    }
    format!("{d}")
}

/// RFC 3339 with nanoseconds, UTC (as Go prints a `time.Time` in JSON).
pub fn format_time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

pub use oxcol_core::civil::{civil_from_days, days_from_civil};

fn format_duration(ns: i64) -> String {
    if ns % 1_000_000_000 == 0 {
        format!("{}s", ns / 1_000_000_000)
    } else {
        format!("{}s", ns as f64 / 1e9)
    }
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn invalid(self) -> bool {
        self == CmpOp::Ne
    }
    fn ordered<T: PartialOrd + ?Sized>(self, a: &T, b: &T) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        }
    }
}

/// Compares two values by the OTTL rules: nil equals only nil; ints and doubles compare
/// numerically; strings, bytes, bools, times and durations compare within their type;
/// maps and lists support only `==`/`!=`; any other mix is "not equal" (so `!=` is true
/// and every other operator false).
pub fn compare(a: &Value, b: &Value, op: CmpOp) -> bool {
    use Value::*;
    match (a, b) {
        (Nil, Nil) => matches!(op, CmpOp::Eq | CmpOp::Le | CmpOp::Ge),
        (Nil, _) | (_, Nil) => op.invalid(),
        (Bool(x), Bool(y)) => op.ordered(x, y),
        (Int(x), Int(y)) => op.ordered(x, y),
        (Int(x), Double(y)) => op.ordered(&(*x as f64), y),
        (Double(x), Int(y)) => op.ordered(x, &(*y as f64)),
        (Double(x), Double(y)) => op.ordered(x, y),
        (Str(x), Str(y)) => compare_str(x, y, op),
        (Bytes(x), Bytes(y)) => op.ordered(x.as_slice(), y.as_slice()),
        (Time(x), Time(y)) | (Duration(x), Duration(y)) => op.ordered(x, y),
        (Map(x), Map(y)) => match op {
            CmpOp::Eq => maps_equal(x, y),
            CmpOp::Ne => !maps_equal(x, y),
            _ => false,
        },
        (List(x), List(y)) => match op {
            CmpOp::Eq => x == y,
            CmpOp::Ne => x != y,
            _ => false,
        },
        _ => op.invalid(),
    }
}

/// [`compare`] of two strings.
pub(crate) fn compare_str(a: &str, b: &str, op: CmpOp) -> bool {
    op.ordered(a, b)
}

/// Map equality regardless of key order.
fn maps_equal(a: &[KeyValue], b: &[KeyValue]) -> bool {
    a.len() == b.len()
        && a.iter().all(|kv| {
            b.iter()
                .any(|other| other.key == kv.key && other.value == kv.value)
        })
}

/// Looks up `key` in an attribute map.
pub fn map_get<'m>(map: &'m [KeyValue], key: &str) -> Option<&'m KeyValue> {
    map.iter().find(|kv| kv.key == key)
}

/// Sets `key` in an attribute map, replacing an existing entry in place.
pub fn map_put(map: &mut Vec<KeyValue>, key: &str, value: AnyValue) {
    match map.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = Some(value),
        None => map.push(KeyValue {
            key: key.to_string(),
            value: Some(value),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_rules_follow_the_collector() {
        assert!(compare(&Value::Nil, &Value::Nil, CmpOp::Eq));
        assert!(compare(&Value::Nil, &Value::Nil, CmpOp::Le));
        assert!(!compare(&Value::Nil, &Value::Int(1), CmpOp::Eq));
        assert!(compare(&Value::Nil, &Value::Int(1), CmpOp::Ne));
        assert!(compare(&Value::Int(1), &Value::Double(1.0), CmpOp::Eq));
        assert!(compare(&Value::Int(1), &Value::Double(1.5), CmpOp::Lt));
        assert!(compare(
            &Value::Str("a".into()),
            &Value::Str("b".into()),
            CmpOp::Lt
        ));
        assert!(!compare(&Value::Str("1".into()), &Value::Int(1), CmpOp::Eq));
        assert!(compare(&Value::Str("1".into()), &Value::Int(1), CmpOp::Ne));
        assert!(!compare(&Value::Str("1".into()), &Value::Int(1), CmpOp::Lt));
        assert!(compare(&Value::Bool(false), &Value::Bool(true), CmpOp::Lt));
        let m1 = vec![
            KeyValue {
                key: "a".into(),
                value: Some(Value::Int(1).into_any().unwrap()),
                ..Default::default()
            },
            KeyValue {
                key: "b".into(),
                value: Some(Value::Int(2).into_any().unwrap()),
                ..Default::default()
            },
        ];
        let mut m2 = m1.clone();
        m2.reverse();
        assert!(compare(&Value::Map(m1.clone()), &Value::Map(m2), CmpOp::Eq));
        assert!(!compare(
            &Value::Map(m1.clone()),
            &Value::Map(m1),
            CmpOp::Lt
        ));
    }

    #[test]
    fn string_like_forms() {
        assert_eq!(Value::Double(1.5).to_string_like().unwrap(), "1.5");
        assert_eq!(Value::Double(3.0).to_string_like().unwrap(), "3");
        assert_eq!(
            Value::Bytes(vec![0xab, 0x01]).to_string_like().unwrap(),
            "ab01"
        );
        assert_eq!(Value::Nil.to_string_like(), None);
        let m = Value::Map(vec![KeyValue {
            key: "k".into(),
            value: Some(Value::Str("v".into()).into_any().unwrap()),
            ..Default::default()
        }]);
        assert_eq!(m.to_string_like().unwrap(), r#"{"k":"v"}"#);
    }

    #[test]
    fn time_formatting_and_calendar_round_trip() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_time(1_700_000_000_123_000_000),
            "2023-11-14T22:13:20.123Z"
        );
        for days in [-1000, 0, 59, 365 * 30 + 7, 20000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(hex_decode("ab01"), Some(vec![0xab, 1]));
        assert_eq!(hex_decode("zz"), None);
    }
}
