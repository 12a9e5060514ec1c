//! OTLP attribute helpers shared by the connectors: lookups by key and the text form of a
//! value used as a metric attribute (the Collector's `AsString`).

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};

/// The value of `key` in `attributes`, if present.
pub fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

/// The first of `sources` (in order) that has `key`.
pub fn find_in<'a>(sources: &[&'a [KeyValue]], key: &str) -> Option<&'a AnyValue> {
    sources.iter().find_map(|attributes| find(attributes, key))
}

/// A value as text, as the Collector's `pcommon.Value.AsString` writes it for scalars
/// (arrays, maps and bytes are written in a readable form, not byte-identical to Go's JSON).
pub fn as_string(value: &AnyValue) -> String {
    match &value.value {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => b.iter().map(|byte| format!("{byte:02x}")).collect(),
        Some(Value::ArrayValue(a)) => format!(
            "[{}]",
            a.values.iter().map(as_string).collect::<Vec<_>>().join(",")
        ),
        // Profiles' string-table references; they never appear in metrics, traces or logs.
        Some(Value::StringValueStrindex(index)) => index.to_string(),
        Some(Value::KvlistValue(kv)) => format!(
            "{{{}}}",
            kv.values
                .iter()
                .map(|kv| format!(
                    "{}:{}",
                    kv.key,
                    kv.value.as_ref().map(as_string).unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// A string attribute.
pub fn string(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// A boolean attribute.
pub fn boolean(key: &str, value: bool) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(Value::BoolValue(value)),
        }),
        ..Default::default()
    }
}

/// A canonical key for a set of attributes (order-insensitive), for grouping.
pub fn set_key(attributes: &[KeyValue]) -> Vec<(String, String)> {
    let mut key: Vec<(String, String)> = attributes
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(as_string).unwrap_or_default(),
            )
        })
        .collect();
    key.sort();
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_take_the_first_source_that_has_the_key() {
        let span = vec![string("a", "span")];
        let resource = vec![string("a", "resource"), string("b", "resource")];
        assert_eq!(
            find_in(&[&span, &resource], "a").map(as_string).as_deref(),
            Some("span")
        );
        assert_eq!(
            find_in(&[&span, &resource], "b").map(as_string).as_deref(),
            Some("resource")
        );
        assert!(find_in(&[&span, &resource], "c").is_none());
    }

    #[test]
    fn set_keys_ignore_order() {
        assert_eq!(
            set_key(&[string("a", "1"), boolean("b", true)]),
            set_key(&[boolean("b", true), string("a", "1")])
        );
        assert_ne!(set_key(&[string("a", "1")]), set_key(&[string("a", "2")]));
    }
}
