//! One line of `journalctl --output=json` as the OTLP log record the Collector's journald
//! input (stanza) makes of it:
//!
//! - the body is the entry's fields as a map (keys sorted), without
//!   `__REALTIME_TIMESTAMP` and with `__CURSOR`; JSON strings stay strings, numbers become
//!   doubles, arrays (binary fields) arrays;
//! - the time is `__REALTIME_TIMESTAMP` (microseconds) in nanoseconds, the observed time
//!   is when oxcol read it;
//! - no severity: stanza's journald input does not map `PRIORITY` (add a severity mapping
//!   downstream, e.g. with the transform processor, as with the Collector);
//! - `convert_message_bytes` turns a `MESSAGE` byte array into text,
//!   `include_log_record_original` adds the line as `log.record.original`.
//!
//! Never panics on input: a line that is not such an entry is an error naming the problem.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::Value;

/// How entries are turned into records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub convert_message_bytes: bool,
    pub include_log_record_original: bool,
    /// Static attributes added to every record (the `attributes` key).
    pub attributes: Vec<(String, String)>,
}

/// A parsed entry: its record and its cursor.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub record: LogRecord,
    pub cursor: String,
}

/// Why a line was skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryError {
    Json(String),
    NoTimestamp,
    TimestampNotString,
    Timestamp(String),
    NoCursor,
    CursorNotString,
}

impl std::fmt::Display for EntryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntryError::Json(e) => write!(f, "not a JSON object: {e}"),
            EntryError::NoTimestamp => {
                f.write_str("journald body missing __REALTIME_TIMESTAMP field")
            }
            EntryError::TimestampNotString => {
                f.write_str("journald field for timestamp is not a string")
            }
            EntryError::Timestamp(t) => write!(f, "parse timestamp: {t:?}"),
            EntryError::NoCursor => f.write_str("journald body missing __CURSOR field"),
            EntryError::CursorNotString => f.write_str("journald field for cursor is not a string"),
        }
    }
}

pub fn any_value(value: Value) -> AnyValue {
    let value = match value {
        Value::Null => None,
        Value::Bool(b) => Some(any_value::Value::BoolValue(b)),
        // Go decodes every JSON number into a float64.
        Value::Number(n) => Some(any_value::Value::DoubleValue(
            n.as_f64().unwrap_or(f64::NAN),
        )),
        Value::String(s) => Some(any_value::Value::StringValue(s)),
        Value::Array(items) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: items.into_iter().map(any_value).collect(),
        })),
        Value::Object(map) => {
            // Sorted by key whatever serde_json's map order is (deterministic output).
            let mut values: Vec<KeyValue> = map
                .into_iter()
                .map(|(key, value)| KeyValue {
                    key,
                    value: Some(any_value(value)),
                    ..Default::default()
                })
                .collect();
            values.sort_by(|a, b| a.key.cmp(&b.key));
            Some(any_value::Value::KvlistValue(KeyValueList { values }))
        }
    };
    AnyValue { value }
}

/// Parses one output line, read at `observed` (unix ns).
pub fn parse_entry(line: &[u8], options: &Options, observed: u64) -> Result<Entry, EntryError> {
    let mut body: serde_json::Map<String, Value> =
        serde_json::from_slice(line).map_err(|e| EntryError::Json(e.to_string()))?;
    let timestamp = match body.get("__REALTIME_TIMESTAMP") {
        None => return Err(EntryError::NoTimestamp),
        Some(Value::String(text)) => text
            .parse::<i64>()
            .map_err(|_| EntryError::Timestamp(text.clone()))?,
        Some(_) => return Err(EntryError::TimestampNotString),
    };
    if options.convert_message_bytes {
        if let Some(Value::Array(items)) = body.get("MESSAGE") {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(|v| v.as_f64().map(|f| f as i64 as u8))
                .collect();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            body.insert("MESSAGE".to_string(), Value::String(text));
        }
    }
    body.remove("__REALTIME_TIMESTAMP");
    let cursor = match body.get("__CURSOR") {
        None => return Err(EntryError::NoCursor),
        Some(Value::String(cursor)) => cursor.clone(),
        Some(_) => return Err(EntryError::CursorNotString),
    };
    let mut attributes: Vec<KeyValue> = options
        .attributes
        .iter()
        .map(|(key, value)| KeyValue {
            key: key.clone(),
            value: Some(any_value(Value::String(value.clone()))),
            ..Default::default()
        })
        .collect();
    if options.include_log_record_original {
        let original = String::from_utf8_lossy(line).trim().to_string();
        attributes.push(KeyValue {
            key: "log.record.original".to_string(),
            value: Some(any_value(Value::String(original))),
            ..Default::default()
        });
    }
    let record = LogRecord {
        // Microseconds to nanoseconds; Go wraps a negative time into the u64.
        time_unix_nano: timestamp.wrapping_mul(1000) as u64,
        observed_time_unix_nano: observed,
        body: Some(any_value(Value::Object(body))),
        attributes,
        ..Default::default()
    };
    Ok(Entry { record, cursor })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &[u8] = br#"{"PRIORITY":"3","_SYSTEMD_UNIT":"demo.service","MESSAGE":"hello 0","__CURSOR":"s=abc;i=1","__REALTIME_TIMESTAMP":"1796623026491207","__MONOTONIC_TIMESTAMP":"1"}"#;

    fn body_map(record: &LogRecord) -> Vec<(String, AnyValue)> {
        match record.body.as_ref().and_then(|b| b.value.clone()) {
            Some(any_value::Value::KvlistValue(list)) => list
                .values
                .into_iter()
                .map(|kv| (kv.key, kv.value.unwrap_or_default()))
                .collect(),
            other => panic!("body is not a map: {other:?}"),
        }
    }

    fn text(s: &str) -> AnyValue {
        AnyValue {
            value: Some(any_value::Value::StringValue(s.to_string())),
        }
    }

    #[test]
    fn a_journal_line_becomes_a_record_with_the_collectors_fields() {
        let entry = parse_entry(LINE, &Options::default(), 42).unwrap();
        assert_eq!(entry.cursor, "s=abc;i=1");
        let record = &entry.record;
        assert_eq!(record.time_unix_nano, 1_796_623_026_491_207_000);
        assert_eq!(record.observed_time_unix_nano, 42);
        assert_eq!(record.severity_number, 0, "stanza does not map PRIORITY");
        assert!(record.severity_text.is_empty());
        assert!(record.attributes.is_empty());
        let body = body_map(record);
        let keys: Vec<&str> = body.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "MESSAGE",
                "PRIORITY",
                "_SYSTEMD_UNIT",
                "__CURSOR",
                "__MONOTONIC_TIMESTAMP"
            ]
        );
        assert_eq!(body[0].1, text("hello 0"));
        assert_eq!(body[3].1, text("s=abc;i=1"));
    }

    #[test]
    fn message_bytes_numbers_and_the_original_line() {
        let line = br#"{"MESSAGE":[104,105,10],"N":5,"__CURSOR":"c","__REALTIME_TIMESTAMP":"1"}"#;
        let plain = parse_entry(line, &Options::default(), 0).unwrap();
        let body = body_map(&plain.record);
        assert!(matches!(
            body[0].1.value,
            Some(any_value::Value::ArrayValue(_))
        ));
        assert_eq!(body[1].1.value, Some(any_value::Value::DoubleValue(5.0)));
        let options = Options {
            convert_message_bytes: true,
            include_log_record_original: true,
            attributes: vec![("source".into(), "journal".into())],
        };
        let converted = parse_entry(line, &options, 0).unwrap();
        assert_eq!(body_map(&converted.record)[0].1, text("hi\n"));
        let attributes: Vec<&str> = converted
            .record
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect();
        assert_eq!(attributes, vec!["source", "log.record.original"]);
        assert_eq!(
            converted.record.attributes[1].value,
            Some(text(std::str::from_utf8(line).unwrap()))
        );
    }

    /// The Collector's journald receiver (contrib v0.160.0, run from its factory by a Go
    /// program with `directory`, `start_at: beginning`, `units: [demo.service]`) read a
    /// journal written by systemd-journal-remote; `journalctl.jsonl` is what journalctl
    /// printed for that journal. oxcol makes the same records of those lines: body, time,
    /// no severity, no attributes, empty resource and scope (the Collector's body order is
    /// Go map order; observed times are clock readings).
    #[test]
    fn matches_the_collectors_records_for_the_same_journal() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        let recorded: ExportLogsServiceRequest =
            serde_json::from_slice(include_bytes!("testdata/collector_v0160_output.json"))
                .expect("the recorded Collector output is OTLP/JSON");
        assert_eq!(recorded.resource_logs.len(), 1);
        let resource = &recorded.resource_logs[0];
        assert!(
            resource
                .resource
                .as_ref()
                .is_none_or(|r| r.attributes.is_empty())
        );
        assert_eq!(resource.scope_logs.len(), 1);
        assert!(
            resource.scope_logs[0]
                .scope
                .as_ref()
                .is_none_or(|s| s.name.is_empty())
        );
        let mut collector = resource.scope_logs[0].log_records.clone();
        let mut oxcol: Vec<LogRecord> = include_str!("testdata/journalctl.jsonl")
            .lines()
            .map(|line| {
                parse_entry(line.as_bytes(), &Options::default(), 0)
                    .unwrap()
                    .record
            })
            .collect();
        for record in collector.iter_mut().chain(oxcol.iter_mut()) {
            record.observed_time_unix_nano = 0;
            if let Some(any_value::Value::KvlistValue(body)) =
                record.body.as_mut().and_then(|b| b.value.as_mut())
            {
                body.values.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
        assert_eq!(oxcol, collector);
    }

    #[test]
    fn broken_lines_are_errors() {
        let options = Options::default();
        assert!(matches!(
            parse_entry(b"not json", &options, 0),
            Err(EntryError::Json(_))
        ));
        assert!(matches!(
            parse_entry(b"[1,2]", &options, 0),
            Err(EntryError::Json(_))
        ));
        assert_eq!(
            parse_entry(br#"{"__CURSOR":"c"}"#, &options, 0),
            Err(EntryError::NoTimestamp)
        );
        assert_eq!(
            parse_entry(br#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":5}"#, &options, 0),
            Err(EntryError::TimestampNotString)
        );
        assert_eq!(
            parse_entry(
                br#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"x"}"#,
                &options,
                0
            ),
            Err(EntryError::Timestamp("x".into()))
        );
        assert_eq!(
            parse_entry(br#"{"__REALTIME_TIMESTAMP":"1"}"#, &options, 0),
            Err(EntryError::NoCursor)
        );
        assert_eq!(
            parse_entry(br#"{"__REALTIME_TIMESTAMP":"1","__CURSOR":7}"#, &options, 0),
            Err(EntryError::CursorNotString)
        );
    }
}
