//! A `serde::Deserializer` over `&Node`, so components decode their typed config with
//! `#[derive(Deserialize)]` and every error still says `file:line:column`.
//!
//! Each `deserialize_*` call tags an error with its own node's location unless an inner
//! call already did, so the innermost position wins: an unknown key points at the key
//! (serde raises it while reading the key), a wrong type at the value, a missing field at
//! the map that lacks it (serde raises it at the end of the map).
//!
//! Lenient like Go's mapstructure is for the Collector: "4317" reads as a number, 8192 as
//! a string, an integer as a float, and a null (`grpc:`) as an empty struct, map or list,
//! so "present with defaults" works as Collector users expect.
//!
//! Known limit: `#[serde(flatten)]` buffers the map in serde's private `Content`, so the
//! flattened part loses the lenient conversions and errors in it point at the whole map.

use serde::de::{
    self, DeserializeSeed, EnumAccess, Error as _, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, VariantAccess, Visitor,
};

use crate::parse::{parse_float, parse_int};
use crate::{ConfigError, Node, Value};

impl de::Error for ConfigError {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        ConfigError {
            location: None,
            message: message.to_string(),
        }
    }
}

impl<'de> IntoDeserializer<'de, ConfigError> for &'de Node {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

fn unexpected(node: &Node) -> Unexpected<'_> {
    match &node.value {
        Value::Null => Unexpected::Other("null"),
        Value::Bool(flag) => Unexpected::Bool(*flag),
        Value::Int(number) => Unexpected::Signed(*number),
        Value::Float(number) => Unexpected::Float(*number),
        Value::String(text) => Unexpected::Str(text),
        Value::Seq(_) => Unexpected::Seq,
        Value::Map(_) => Unexpected::Map,
    }
}

impl Node {
    /// Tags an error from decoding this node with this node's location (innermost wins).
    fn locate<T>(&self, result: Result<T, ConfigError>) -> Result<T, ConfigError> {
        result.map_err(|error| error.or_at(&self.location))
    }

    fn invalid_type<T>(&self, expected: &dyn de::Expected) -> Result<T, ConfigError> {
        Err(ConfigError::invalid_type(unexpected(self), expected))
    }

    /// The node as an integer: an int, an integral float, or a string that parses as one.
    fn integer(&self) -> Option<i128> {
        match &self.value {
            Value::Int(number) => Some(i128::from(*number)),
            Value::Float(number) if number.fract() == 0.0 && number.abs() < 1e38 => {
                Some(*number as i128)
            }
            Value::String(text) => parse_int(text.trim()),
            _ => None,
        }
    }

    fn float(&self) -> Option<f64> {
        match &self.value {
            Value::Float(number) => Some(*number),
            Value::Int(number) => Some(*number as f64),
            Value::String(text) => {
                let text = text.trim();
                parse_float(text).or_else(|| parse_int(text).map(|number| number as f64))
            }
            _ => None,
        }
    }

    /// The node as a boolean: a bool, or a string Go's `strconv.ParseBool` accepts.
    fn boolean(&self) -> Option<bool> {
        match &self.value {
            Value::Bool(flag) => Some(*flag),
            Value::String(text) => match text.trim() {
                "1" | "t" | "T" | "true" | "True" | "TRUE" => Some(true),
                "0" | "f" | "F" | "false" | "False" | "FALSE" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }
}

macro_rules! deserialize_integer {
    ($($method:ident => $visit:ident : $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
            let result = match self.integer() {
                Some(number) => match <$ty>::try_from(number) {
                    Ok(number) => visitor.$visit(number),
                    Err(_) => Err(ConfigError::custom(format!(
                        "value {number} out of range for {}", stringify!($ty)
                    ))),
                },
                None => self.invalid_type(&visitor),
            };
            self.locate(result)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &'de Node {
    type Error = ConfigError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let result = match &self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(flag) => visitor.visit_bool(*flag),
            Value::Int(number) => visitor.visit_i64(*number),
            Value::Float(number) => visitor.visit_f64(*number),
            Value::String(text) => visitor.visit_borrowed_str(text),
            Value::Seq(items) => visit_seq(items, visitor),
            Value::Map(entries) => visit_map(entries, visitor),
        };
        self.locate(result)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let result = match self.boolean() {
            Some(flag) => visitor.visit_bool(flag),
            None => self.invalid_type(&visitor),
        };
        self.locate(result)
    }

    deserialize_integer! {
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_i128 => visit_i128: i128,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_u128 => visit_u128: u128,
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let result = match self.float() {
            Some(number) => visitor.visit_f64(number),
            None => self.invalid_type(&visitor),
        };
        self.locate(result)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let result = match &self.value {
            Value::String(text) => visitor.visit_borrowed_str(text),
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                let text = self
                    .scalar_text()
                    .map(|text| text.into_owned())
                    .unwrap_or_default();
                visitor.visit_string(text)
            }
            _ => self.invalid_type(&visitor),
        };
        self.locate(result)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let result = match &self.value {
            Value::String(text) => visitor.visit_borrowed_bytes(text.as_bytes()),
            Value::Seq(items) => visit_seq(items, visitor),
            _ => self.invalid_type(&visitor),
        };
        self.locate(result)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let result = match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        };
        self.locate(result)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let result = match self.value {
            Value::Null => visitor.visit_unit(),
            _ => self.invalid_type(&visitor),
        };
        self.locate(result)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        let result = visitor.visit_newtype_struct(self);
        self.locate(result)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let result = match &self.value {
            Value::Seq(items) => visit_seq(items, visitor),
            Value::Null => visit_seq(&[], visitor),
            _ => self.invalid_type(&visitor),
        };
        self.locate(result)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let result = match &self.value {
            Value::Map(entries) => visit_map(entries, visitor),
            Value::Null => visit_map(&[], visitor),
            _ => self.invalid_type(&visitor),
        };
        self.locate(result)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        let result = match &self.value {
            Value::String(_) => visitor.visit_enum(Variant {
                tag: self,
                content: None,
            }),
            Value::Map(entries) if entries.len() == 1 => {
                let (tag, content) = &entries[0];
                visitor.visit_enum(Variant {
                    tag,
                    content: Some(content),
                })
            }
            Value::Map(_) => Err(ConfigError::custom(format!(
                "expected {visitor_expecting}: a name, or a map with exactly one key",
                visitor_expecting = Expecting(&visitor)
            ))),
            _ => self.invalid_type(&visitor),
        };
        self.locate(result)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_unit()
    }
}

/// Shows what a visitor expects, for messages serde has no helper for.
struct Expecting<'a, V>(&'a V);

impl<'de, V: Visitor<'de>> std::fmt::Display for Expecting<'_, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.expecting(f)
    }
}

fn visit_seq<'de, V: Visitor<'de>>(
    items: &'de [Node],
    visitor: V,
) -> Result<V::Value, ConfigError> {
    let mut access = Items {
        items: items.iter(),
        count: 0,
    };
    let value = visitor.visit_seq(&mut access)?;
    let remaining = access.items.len();
    if remaining > 0 {
        return Err(ConfigError::invalid_length(
            access.count + remaining,
            &"fewer elements",
        ));
    }
    Ok(value)
}

fn visit_map<'de, V: Visitor<'de>>(
    entries: &'de [(Node, Node)],
    visitor: V,
) -> Result<V::Value, ConfigError> {
    let mut access = Entries {
        entries: entries.iter(),
        value: None,
    };
    visitor.visit_map(&mut access)
}

struct Items<'de> {
    items: std::slice::Iter<'de, Node>,
    count: usize,
}

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = ConfigError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ConfigError> {
        match self.items.next() {
            Some(item) => {
                self.count += 1;
                item.locate(seed.deserialize(item)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Entries<'de> {
    entries: std::slice::Iter<'de, (Node, Node)>,
    value: Option<&'de Node>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = ConfigError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ConfigError> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                key.locate(seed.deserialize(key)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ConfigError> {
        let value = self
            .value
            .take()
            .ok_or_else(|| ConfigError::custom("map value requested before its key"))?;
        value.locate(seed.deserialize(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// An externally tagged enum: `tag` is the variant name (a string node, or the single key
/// of a map), `content` the map's value.
struct Variant<'de> {
    tag: &'de Node,
    content: Option<&'de Node>,
}

impl<'de> EnumAccess<'de> for Variant<'de> {
    type Error = ConfigError;
    type Variant = Self;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self), ConfigError> {
        let name = self.tag.locate(seed.deserialize(self.tag))?;
        Ok((name, self))
    }
}

impl<'de> VariantAccess<'de> for Variant<'de> {
    type Error = ConfigError;

    fn unit_variant(self) -> Result<(), ConfigError> {
        match self.content {
            None => Ok(()),
            Some(content) if content.is_null() => Ok(()),
            Some(content) => content
                .invalid_type(&"a variant without fields")
                .map_err(|error| error.or_at(&content.location)),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, ConfigError> {
        match self.content {
            Some(content) => content.locate(seed.deserialize(content)),
            None => Err(ConfigError::invalid_type(
                Unexpected::UnitVariant,
                &"a variant with a value",
            )
            .or_at(&self.tag.location)),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        match self.content {
            Some(content) => de::Deserializer::deserialize_seq(content, visitor),
            None => Err(ConfigError::invalid_type(Unexpected::UnitVariant, &visitor)
                .or_at(&self.tag.location)),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        match self.content {
            Some(content) => de::Deserializer::deserialize_map(content, visitor),
            None => Err(ConfigError::invalid_type(Unexpected::UnitVariant, &visitor)
                .or_at(&self.tag.location)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Arc;

    use serde::Deserialize;

    use crate::parse::parse_document;
    use crate::{ConfigError, Location, Node, decode};

    fn tree(text: &str) -> Node {
        let (root, errors) = parse_document(text, &Arc::from("c.yaml"));
        assert!(errors.is_empty(), "{errors:?}");
        root.unwrap()
    }

    fn error_at<T: serde::de::DeserializeOwned + std::fmt::Debug>(
        text: &str,
    ) -> (usize, usize, String) {
        let error: ConfigError = decode::<T>(&tree(text)).unwrap_err();
        let location = error.location.clone().expect("error has a location");
        assert_eq!(&*location.source, "c.yaml");
        (location.line, location.column, error.message)
    }

    /// A Go-style duration: accepts "5s"/"200ms" through `deserialize_any`, or bare seconds.
    #[derive(Debug, PartialEq, Default, Clone, Copy)]
    struct GoDuration(std::time::Duration);

    impl<'de> Deserialize<'de> for GoDuration {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct DurationVisitor;
            impl serde::de::Visitor<'_> for DurationVisitor {
                type Value = GoDuration;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a duration such as 5s or 200ms")
                }
                fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<GoDuration, E> {
                    let (digits, unit) = text.split_at(
                        text.find(|c: char| !c.is_ascii_digit())
                            .unwrap_or(text.len()),
                    );
                    let number: u64 = digits
                        .parse()
                        .map_err(|_| E::custom(format!("invalid duration '{text}'")))?;
                    let duration = match unit {
                        "ms" => std::time::Duration::from_millis(number),
                        "s" => std::time::Duration::from_secs(number),
                        _ => {
                            return Err(E::custom(format!(
                                "invalid duration '{text}': unit must be ms or s"
                            )));
                        }
                    };
                    Ok(GoDuration(duration))
                }
                fn visit_i64<E: serde::de::Error>(self, seconds: i64) -> Result<GoDuration, E> {
                    u64::try_from(seconds)
                        .map(|seconds| GoDuration(std::time::Duration::from_secs(seconds)))
                        .map_err(|_| E::custom("a duration cannot be negative"))
                }
            }
            deserializer.deserialize_any(DurationVisitor)
        }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Compression {
        None,
        Gzip,
        Zstd,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Tls {
        insecure: bool,
        ca_file: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Grpc {
        endpoint: String,
        max_recv_msg_size_mib: u16,
        tls: Option<Tls>,
        keepalive_ratio: f64,
    }

    impl Default for Grpc {
        fn default() -> Self {
            Grpc {
                endpoint: "127.0.0.1:4317".into(),
                max_recv_msg_size_mib: 4,
                tls: None,
                keepalive_ratio: 0.5,
            }
        }
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Protocols {
        grpc: Option<Grpc>,
        http: Option<Grpc>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Exporter {
        endpoint: String,
        #[serde(default)]
        headers: HashMap<String, String>,
        #[serde(default)]
        compression: Option<Compression>,
        #[serde(default)]
        timeout: GoDuration,
        #[serde(default)]
        send_batch_size: u32,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        enabled: Option<bool>,
    }

    #[test]
    fn decodes_nested_config_with_defaults() {
        let node = tree("grpc:\n  endpoint: 0.0.0.0:4317\n  tls:\n    insecure: true\nhttp:\n");
        let protocols: Protocols = decode(&node).unwrap();
        let grpc = protocols.grpc.unwrap();
        assert_eq!(grpc.endpoint, "0.0.0.0:4317");
        assert_eq!(grpc.max_recv_msg_size_mib, 4);
        assert_eq!(
            grpc.tls,
            Some(Tls {
                insecure: true,
                ca_file: None
            })
        );
        assert_eq!(protocols.http, None, "Option<struct> with null is None");
    }

    #[test]
    fn null_decodes_as_struct_with_all_defaults() {
        let node = tree("grpc:\n");
        let grpc: Grpc = decode(node.get("grpc").unwrap()).unwrap();
        assert_eq!(grpc, Grpc::default());
        let headers: HashMap<String, String> = decode(node.get("grpc").unwrap()).unwrap();
        assert!(headers.is_empty());
        let list: Vec<String> = decode(node.get("grpc").unwrap()).unwrap();
        assert!(list.is_empty());
        decode::<()>(node.get("grpc").unwrap()).unwrap();
    }

    #[test]
    fn lenient_string_number_conversions() {
        let node = tree(
            "endpoint: 8192\nsend_batch_size: \"4096\"\nheaders:\n  x-count: 12\n  x-ratio: 0.5\n  x-on: true\nenabled: \"false\"\ntimeout: 5s\ntags: [1, two]\n",
        );
        let exporter: Exporter = decode(&node).unwrap();
        assert_eq!(exporter.endpoint, "8192");
        assert_eq!(exporter.send_batch_size, 4096);
        assert_eq!(exporter.headers["x-count"], "12");
        assert_eq!(exporter.headers["x-ratio"], "0.5");
        assert_eq!(exporter.headers["x-on"], "true");
        assert_eq!(exporter.enabled, Some(false));
        assert_eq!(
            exporter.timeout,
            GoDuration(std::time::Duration::from_secs(5))
        );
        assert_eq!(exporter.tags, ["1", "two"]);
        let ratio: f64 = decode(&tree("7")).unwrap();
        assert_eq!(ratio, 7.0);
        let ratio: f64 = decode(&tree("'0.25'")).unwrap();
        assert_eq!(ratio, 0.25);
        let port: u16 = decode(&tree("'4317'")).unwrap();
        assert_eq!(port, 4317);
        let big: u64 = decode(&tree("18446744073709551615")).unwrap();
        assert_eq!(big, u64::MAX);
    }

    #[test]
    fn enums_and_goduration_via_any() {
        let exporter: Exporter =
            decode(&tree("endpoint: x\ncompression: zstd\ntimeout: 30\n")).unwrap();
        assert_eq!(exporter.compression, Some(Compression::Zstd));
        assert_eq!(
            exporter.timeout,
            GoDuration(std::time::Duration::from_secs(30))
        );
        let (line, column, message) = error_at::<Exporter>("endpoint: x\ncompression: brotli\n");
        assert_eq!((line, column), (2, 14));
        assert!(
            message.contains("unknown variant `brotli`, expected one of `none`, `gzip`, `zstd`"),
            "{message}"
        );
        let (line, column, message) = error_at::<Exporter>("endpoint: x\ntimeout: 5 minutes\n");
        assert_eq!((line, column), (2, 10));
        assert!(
            message.contains("invalid duration '5 minutes'"),
            "{message}"
        );
    }

    #[test]
    fn externally_tagged_enum_with_data() {
        #[derive(Debug, Deserialize, PartialEq)]
        #[serde(rename_all = "snake_case", deny_unknown_fields)]
        enum Auth {
            Anonymous,
            Bearer(String),
            Basic { user: String, password: String },
            Pair(u8, u8),
        }
        assert_eq!(decode::<Auth>(&tree("anonymous")).unwrap(), Auth::Anonymous);
        assert_eq!(
            decode::<Auth>(&tree("bearer: abc")).unwrap(),
            Auth::Bearer("abc".into())
        );
        assert_eq!(
            decode::<Auth>(&tree("basic: {user: u, password: p}")).unwrap(),
            Auth::Basic {
                user: "u".into(),
                password: "p".into()
            }
        );
        assert_eq!(
            decode::<Auth>(&tree("pair: [1, 2]")).unwrap(),
            Auth::Pair(1, 2)
        );
        let (line, column, message) = error_at::<Auth>("basic:\n  user: u\n  pasword: p\n");
        assert_eq!((line, column), (3, 3));
        assert!(message.starts_with("unknown field `pasword`"), "{message}");
    }

    #[test]
    fn unknown_key_points_at_the_key_and_lists_valid_keys() {
        let (line, column, message) = error_at::<Protocols>(
            "grpc:\n  endpoint: x\n  tls:\n    insecure: true\n    ca_fil: /x\n",
        );
        assert_eq!((line, column), (5, 5));
        assert_eq!(
            message,
            "unknown field `ca_fil`, expected `insecure` or `ca_file`"
        );
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let (line, column, message) =
            error_at::<Protocols>("grpc:\n  max_recv_msg_size_mib: lots\n");
        assert_eq!((line, column), (2, 26));
        assert_eq!(message, "invalid type: string \"lots\", expected u16");
        let (line, column, message) = error_at::<Exporter>("endpoint: [a, b]\n");
        assert_eq!((line, column), (1, 11));
        assert!(
            message.starts_with("invalid type: sequence, expected a string"),
            "{message}"
        );
        let (line, column, _) = error_at::<Exporter>("endpoint: x\ntags:\n  - ok\n  - {a: 1}\n");
        assert_eq!((line, column), (4, 5));
    }

    #[test]
    fn missing_field_points_at_the_map() {
        let (line, column, message) =
            error_at::<BTreeMap<String, Exporter>>("otlp:\n  headers: {}\n");
        assert_eq!((line, column), (2, 3));
        assert_eq!(message, "missing field `endpoint`");
        // A null decoded as a struct: the error points at the null (the parser places an
        // empty value at its key's colon).
        let (line, column, message) = error_at::<BTreeMap<String, Exporter>>("otlp:\n");
        assert_eq!((line, column), (1, 5));
        assert_eq!(message, "missing field `endpoint`");
    }

    #[test]
    fn integer_out_of_range() {
        let (line, column, message) =
            error_at::<Protocols>("grpc:\n  max_recv_msg_size_mib: 70000\n");
        assert_eq!((line, column), (2, 26));
        assert_eq!(message, "value 70000 out of range for u16");
        let (_, _, message) = error_at::<Exporter>("endpoint: x\nsend_batch_size: -1\n");
        assert_eq!(message, "value -1 out of range for u32");
        let (_, _, message) = error_at::<u8>("'300'");
        assert_eq!(message, "value 300 out of range for u8");
    }

    #[test]
    fn flatten_and_untagged_work_through_any_and_map() {
        #[derive(Debug, Deserialize)]
        struct WithExtra {
            name: String,
            #[serde(flatten)]
            rest: BTreeMap<String, serde_json::Value>,
        }
        let decoded: WithExtra =
            decode(&tree("name: n\nport: 1\nnested: {a: [true, null, 1.5]}\n")).unwrap();
        assert_eq!(decoded.name, "n");
        assert_eq!(decoded.rest["port"], serde_json::json!(1));
        assert_eq!(
            decoded.rest["nested"],
            serde_json::json!({"a": [true, null, 1.5]})
        );

        #[derive(Debug, Deserialize, PartialEq)]
        #[serde(untagged)]
        enum Endpoints {
            One(String),
            Many(Vec<String>),
        }
        assert_eq!(
            decode::<Endpoints>(&tree("[a, b]")).unwrap(),
            Endpoints::Many(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            decode::<Endpoints>(&tree("a")).unwrap(),
            Endpoints::One("a".into())
        );
    }

    #[test]
    fn newtypes_tuples_and_ignored_fields() {
        #[derive(Debug, Deserialize, PartialEq)]
        struct Port(u16);
        #[derive(Debug, Deserialize)]
        struct Loose {
            port: Port,
            pair: (String, i32),
        }
        let loose: Loose =
            decode(&tree("port: '80'\npair: [a, -3]\nignored: {deep: [1]}\n")).unwrap();
        assert_eq!(loose.port, Port(80));
        assert_eq!(loose.pair, ("a".into(), -3));
        let (line, column, message) = error_at::<(u8, u8)>("[1, 2, 3]");
        assert_eq!((line, column), (1, 1));
        assert!(message.contains("invalid length 3"), "{message}");
    }

    #[test]
    fn custom_errors_from_components_get_the_value_location() {
        #[derive(Debug)]
        struct Even(#[allow(dead_code)] u32);
        impl<'de> Deserialize<'de> for Even {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let number = u32::deserialize(deserializer)?;
                if number % 2 == 1 {
                    return Err(serde::de::Error::custom(format!(
                        "{number} is odd; use an even number"
                    )));
                }
                Ok(Even(number))
            }
        }
        let error = decode::<HashMap<String, Even>>(&tree("a: 2\nb: 3\n")).unwrap_err();
        assert_eq!(error.location, Some(Location::new("c.yaml", 2, 4)));
        assert_eq!(
            error.to_string(),
            "c.yaml:2:4: 3 is odd; use an even number"
        );
    }
}
