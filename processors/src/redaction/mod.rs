//! `redaction`: removes attributes whose keys are not allowed and masks values that match
//! blocked patterns, in resource attributes, span and span event attributes, log record
//! attributes and bodies, and data point attributes, as the Collector's redaction
//! processor does.
//!
//! Per attribute, in this order: a key in `ignored_keys` is left alone; a key not in
//! `allowed_keys` (unless `allow_all_keys`) is removed; a string value matching one of
//! `allowed_values` is left alone; a key matching `blocked_key_patterns` has its whole
//! value masked; otherwise every substring matching a `blocked_values` regex is masked.
//! Masking writes `****`, or the hex digest of the matched text with `hash_function`
//! (`md5`, `sha1`). Like the Collector, only string values are read (other types are
//! seen as ""), so a non-string value under a blocked key becomes `****`.
//! `summary: info` adds `redaction.*.count` attributes, `debug` also the sorted key
//! lists, `silent` (and the default) nothing.
//!
//! Keeps no state; never drops data (only a batch that cannot be decoded is refused).

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::metric;
use oxcol_core::{Batch, Processor, Refusal, Signal};
use regex::Regex;
use serde::Deserialize;

use crate::helper::pvalue;

pub const TYPE: &str = "redaction";
pub const ALIASES: &[&str] = &["redaction"];

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Keep every key (only values are checked). Default false.
    pub allow_all_keys: bool,
    /// Keys kept; every other key is removed (an empty list removes all). Default empty.
    pub allowed_keys: Vec<String>,
    /// Keys never changed nor removed. Default empty.
    pub ignored_keys: Vec<String>,
    /// Regexes on keys; matching keys are never changed nor removed. Default empty.
    pub ignored_key_patterns: Vec<String>,
    /// Also check non-string values, through their text form (`AsString`). Default false.
    pub redact_all_types: bool,
    /// Regexes; matching parts of values are masked. Default empty.
    pub blocked_values: Vec<String>,
    /// Regexes; values matching any are left unmasked. Default empty.
    pub allowed_values: Vec<String>,
    /// Regexes on keys; whole values of matching keys are masked. Default empty.
    pub blocked_key_patterns: Vec<String>,
    /// `md5`, `sha1`, `sha3` (SHA3-256), `hmac-sha256` or `hmac-sha512`: mask with the hex digest of the
    /// matched text instead of `****`. Default none.
    pub hash_function: String,
    /// The secret of the HMAC hash functions (at least 32 bytes for hmac-sha256, 64 for
    /// hmac-sha512).
    pub hmac_key: String,
    /// `debug`, `info` or `silent`. Default: no summary attributes.
    pub summary: String,
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (field, patterns) in [
            ("blocked_values", &self.blocked_values),
            ("allowed_values", &self.allowed_values),
            ("blocked_key_patterns", &self.blocked_key_patterns),
            ("ignored_key_patterns", &self.ignored_key_patterns),
        ] {
            for (i, pattern) in patterns.iter().enumerate() {
                if let Err(e) = Regex::new(pattern) {
                    problems.push(format!(
                        "{field}[{i}] {pattern:?} is not a valid regex: {e}"
                    ));
                }
            }
        }
        match self.hash_function.to_ascii_lowercase().as_str() {
            "" | "md5" | "sha1" | "sha3" => {}
            function @ ("hmac-sha256" | "hmac-sha512") => {
                let min = if function == "hmac-sha256" { 32 } else { 64 };
                if self.hmac_key.is_empty() {
                    problems.push(format!(
                        "hmac_key is empty: hash_function {function} needs a secret of at \
                         least {min} bytes (e.g. hmac_key: ${{env:REDACTION_HMAC_KEY}})"
                    ));
                } else if self.hmac_key.len() < min {
                    problems.push(format!(
                        "hmac_key has {} bytes: hash_function {function} needs at least {min}",
                        self.hmac_key.len()
                    ));
                }
            }
            other => problems.push(format!(
                "hash_function {other:?} is not valid: use md5, sha1, sha3, hmac-sha256 or \
                 hmac-sha512"
            )),
        }
        if !matches!(self.summary.as_str(), "" | "debug" | "info" | "silent") {
            problems.push(format!(
                "summary {:?} is not valid: use debug, info or silent",
                self.summary
            ));
        }
        problems
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Hash {
    None,
    Md5,
    Sha1,
    Sha3,
    Hmac(&'static ring::hmac::Algorithm),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Summary {
    Silent,
    Info,
    Debug,
}

/// Names of the summary attributes for attributes and for log bodies.
struct SummaryNames {
    redacted_keys: &'static str,
    redacted_count: &'static str,
    masked_keys: &'static str,
    masked_count: &'static str,
    allowed_keys: &'static str,
    allowed_count: &'static str,
    ignored_count: &'static str,
}

const ATTRIBUTE_SUMMARY: SummaryNames = SummaryNames {
    redacted_keys: "redaction.redacted.keys",
    redacted_count: "redaction.redacted.count",
    masked_keys: "redaction.masked.keys",
    masked_count: "redaction.masked.count",
    allowed_keys: "redaction.allowed.keys",
    allowed_count: "redaction.allowed.count",
    ignored_count: "redaction.ignored.count",
};

const BODY_SUMMARY: SummaryNames = SummaryNames {
    redacted_keys: "redaction.body.redacted.keys",
    redacted_count: "redaction.body.redacted.count",
    masked_keys: "redaction.body.masked.keys",
    masked_count: "redaction.body.masked.count",
    allowed_keys: "redaction.body.allowed.keys",
    allowed_count: "redaction.body.allowed.count",
    ignored_count: "redaction.body.ignored.count",
};

/// The summary attributes the processor writes itself, always allowed.
const OWN_KEYS: [&str; 5] = [
    "redaction.redacted.keys",
    "redaction.redacted.count",
    "redaction.masked.keys",
    "redaction.masked.count",
    "redaction.ignored.count",
];

#[derive(Default)]
struct Findings {
    redacted: Vec<String>,
    masked: Vec<String>,
    allowed: Vec<String>,
    ignored: Vec<String>,
}

pub struct RedactionProcessor {
    id: String,
    allow_all_keys: bool,
    allowed_keys: Vec<String>,
    ignored_keys: Vec<String>,
    ignored_key_patterns: Vec<Regex>,
    redact_all_types: bool,
    blocked_values: Vec<Regex>,
    allowed_values: Vec<Regex>,
    blocked_keys: Vec<Regex>,
    match_all: Regex,
    hash: Hash,
    hmac_key: Option<ring::hmac::Key>,
    summary: Summary,
}

impl RedactionProcessor {
    pub fn new(id: &str, config: &Config) -> Result<RedactionProcessor, String> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let compile = |patterns: &[String]| {
            patterns
                .iter()
                .map(|p| Regex::new(p).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()
        };
        let hash = match config.hash_function.to_ascii_lowercase().as_str() {
            "md5" => Hash::Md5,
            "sha1" => Hash::Sha1,
            "sha3" => Hash::Sha3,
            "hmac-sha256" => Hash::Hmac(&ring::hmac::HMAC_SHA256),
            "hmac-sha512" => Hash::Hmac(&ring::hmac::HMAC_SHA512),
            _ => Hash::None,
        };
        let mut allowed_keys = config.allowed_keys.clone();
        allowed_keys.extend(OWN_KEYS.iter().map(|k| k.to_string()));
        Ok(RedactionProcessor {
            id: id.to_string(),
            allow_all_keys: config.allow_all_keys,
            allowed_keys,
            ignored_keys: config.ignored_keys.clone(),
            ignored_key_patterns: compile(&config.ignored_key_patterns)?,
            redact_all_types: config.redact_all_types,
            blocked_values: compile(&config.blocked_values)?,
            allowed_values: compile(&config.allowed_values)?,
            blocked_keys: compile(&config.blocked_key_patterns)?,
            match_all: Regex::new(".*").map_err(|e| e.to_string())?,
            hash,
            hmac_key: match hash {
                Hash::Hmac(algorithm) => {
                    Some(ring::hmac::Key::new(*algorithm, config.hmac_key.as_bytes()))
                }
                _ => None,
            },
            summary: match config.summary.as_str() {
                "debug" => Summary::Debug,
                "info" => Summary::Info,
                _ => Summary::Silent,
            },
        })
    }

    fn ignored(&self, key: &str) -> bool {
        self.ignored_keys.iter().any(|k| k == key)
            || self.ignored_key_patterns.iter().any(|r| r.is_match(key))
    }

    fn redacted(&self, key: &str) -> bool {
        !self.allow_all_keys && !self.allowed_keys.iter().any(|k| k == key)
    }

    fn value_allowed(&self, text: &str) -> bool {
        self.allowed_values.iter().any(|r| r.is_match(text))
    }

    fn key_blocked(&self, key: &str) -> bool {
        self.blocked_keys.iter().any(|r| r.is_match(key))
    }

    fn mask(&self, text: &str, regex: &Regex) -> String {
        regex
            .replace_all(text, |captures: &regex::Captures| {
                let matched = captures.get(0).map_or("", |m| m.as_str());
                match self.hash {
                    Hash::None => "****".to_string(),
                    Hash::Md5 => format!("{:x}", md5::compute(matched.as_bytes())),
                    Hash::Sha3 => {
                        use sha3::Digest;
                        oxcol_ottl::value::hex_lower(&sha3::Sha3_256::digest(matched.as_bytes()))
                    }
                    Hash::Hmac(_) => match &self.hmac_key {
                        Some(key) => oxcol_ottl::value::hex_lower(
                            ring::hmac::sign(key, matched.as_bytes()).as_ref(),
                        ),
                        None => "****".to_string(),
                    },
                    Hash::Sha1 => oxcol_ottl::value::hex_lower(
                        ring::digest::digest(
                            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                            matched.as_bytes(),
                        )
                        .as_ref(),
                    ),
                }
            })
            .into_owned()
    }

    /// Masks every part of `text` that a blocked value matches.
    fn mask_blocked(&self, text: &str) -> String {
        let mut out = text.to_string();
        for regex in &self.blocked_values {
            if regex.is_match(&out) {
                out = self.mask(&out, regex);
            }
        }
        out
    }

    /// The Collector's `processAttrs`.
    fn process_attrs(&self, attrs: &mut Vec<KeyValue>) {
        let mut found = Findings::default();
        for kv in attrs.iter_mut() {
            let key = kv.key.clone();
            if self.ignored(&key) {
                found.ignored.push(key);
                continue;
            }
            if self.redacted(&key) {
                found.redacted.push(key);
                continue;
            }
            let text = if self.redact_all_types {
                kv.value
                    .as_ref()
                    .map_or_else(String::new, pvalue::as_string)
            } else {
                string_of(kv.value.as_ref())
            };
            if self.value_allowed(&text) {
                found.allowed.push(key);
                continue;
            }
            if self.key_blocked(&key) {
                kv.value = Some(string_value(self.mask(&text, &self.match_all)));
                found.masked.push(key);
                continue;
            }
            let processed = self.mask_blocked(&text);
            if processed != text {
                kv.value = Some(string_value(processed));
                found.masked.push(key);
            }
        }
        for key in &found.redacted {
            pvalue::remove(attrs, key);
        }
        self.add_summary(attrs, &found, &ATTRIBUTE_SUMMARY);
    }

    /// The Collector's `processLogBody`: map bodies key by key (recursively, with dotted
    /// paths), slices element by element, scalars as text.
    fn process_body(&self, body: &mut AnyValue, attrs: &mut Vec<KeyValue>) {
        let mut found = Findings::default();
        match &mut body.value {
            Some(Value::KvlistValue(map)) => {
                self.process_body_map(&mut map.values, None, &mut found)
            }
            Some(Value::ArrayValue(list)) => {
                for (i, value) in list.values.iter_mut().enumerate() {
                    self.process_body_value(&format!("[{i}]"), value, &mut found);
                }
            }
            _ => {
                let text = pvalue::as_string(body);
                if self.value_allowed(&text) {
                    found.allowed.push("body".into());
                } else {
                    let processed = self.mask_blocked(&text);
                    if processed != text {
                        found.masked.push("body".into());
                        *body = string_value(processed);
                    }
                }
            }
        }
        self.add_summary(attrs, &found, &BODY_SUMMARY);
    }

    fn process_body_map(&self, map: &mut Vec<KeyValue>, path: Option<&str>, found: &mut Findings) {
        let with_path = |k: &str| path.map_or_else(|| k.to_string(), |p| format!("{p}.{k}"));
        let mut remove: Vec<String> = Vec::new();
        for kv in map.iter_mut() {
            let key = kv.key.clone();
            if self.ignored(&key) {
                found.ignored.push(with_path(&key));
                continue;
            }
            if self.redacted(&key) {
                remove.push(key);
                continue;
            }
            if self.key_blocked(&key) {
                found.masked.push(with_path(&key));
                let text = string_of(kv.value.as_ref());
                kv.value = Some(string_value(self.mask(&text, &self.match_all)));
                continue;
            }
            let value = kv.value.get_or_insert_with(AnyValue::default);
            self.process_body_value(&with_path(&key), value, found);
        }
        for key in remove {
            pvalue::remove(map, &key);
            found.redacted.push(with_path(&key));
        }
    }

    fn process_body_value(&self, path: &str, value: &mut AnyValue, found: &mut Findings) {
        match &mut value.value {
            Some(Value::KvlistValue(map)) => {
                self.process_body_map(&mut map.values, Some(path), found)
            }
            Some(Value::ArrayValue(list)) => {
                for (i, item) in list.values.iter_mut().enumerate() {
                    self.process_body_value(&format!("{path}.[{i}]"), item, found);
                }
            }
            _ => {
                let text = pvalue::as_string(value);
                if self.value_allowed(&text) {
                    found.allowed.push(path.to_string());
                    return;
                }
                let processed = self.mask_blocked(&text);
                if processed != text {
                    found.masked.push(path.to_string());
                    *value = string_value(processed);
                }
            }
        }
    }

    /// The Collector's `addMetaAttrs` for the four lists.
    fn add_summary(&self, attrs: &mut Vec<KeyValue>, found: &Findings, names: &SummaryNames) {
        for (keys, keys_attr, count_attr) in [
            (
                &found.redacted,
                Some(names.redacted_keys),
                names.redacted_count,
            ),
            (&found.masked, Some(names.masked_keys), names.masked_count),
            (
                &found.allowed,
                Some(names.allowed_keys),
                names.allowed_count,
            ),
            (&found.ignored, None, names.ignored_count),
        ] {
            if keys.is_empty() {
                continue;
            }
            if self.summary == Summary::Debug
                && let Some(keys_attr) = keys_attr
            {
                let mut all = keys.clone();
                if let Some(existing) = pvalue::get(attrs, keys_attr)
                    .map(|v| string_of(Some(v)))
                    .filter(|s| !s.is_empty())
                {
                    all.extend(existing.split(',').map(str::to_string));
                }
                all.sort();
                pvalue::put_str(attrs, keys_attr, all.join(","));
            }
            if matches!(self.summary, Summary::Info | Summary::Debug) {
                let existing = match pvalue::get(attrs, count_attr).and_then(|v| v.value.as_ref()) {
                    Some(Value::IntValue(i)) => *i,
                    _ => 0,
                };
                pvalue::put(
                    attrs,
                    count_attr,
                    AnyValue {
                        value: Some(Value::IntValue(existing + keys.len() as i64)),
                    },
                );
            }
        }
    }
}

/// `pcommon.Value.Str()`: the string, or "" for any other type.
fn string_of(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        _ => String::new(),
    }
}

fn string_value(s: String) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(s)),
    }
}

impl Processor for RedactionProcessor {
    fn process(&mut self, mut batch: Batch) -> Result<Batch, Refusal> {
        let id = self.id.clone();
        let refuse = |e: oxcol_core::batch::BatchError| Refusal::Invalid {
            reason: format!("processor {id}: cannot decode the batch: {e}"),
        };
        match batch.signal() {
            Signal::Traces => {
                for rs in batch.traces_mut().map_err(refuse)?.iter_mut() {
                    if let Some(resource) = rs.resource.as_mut() {
                        self.process_attrs(&mut resource.attributes);
                    }
                    for scope in rs.scope_spans.iter_mut().filter_map(|s| s.scope.as_mut()) {
                        self.process_attrs(&mut scope.attributes);
                    }
                    for span in rs.scope_spans.iter_mut().flat_map(|s| &mut s.spans) {
                        self.process_attrs(&mut span.attributes);
                        for event in &mut span.events {
                            self.process_attrs(&mut event.attributes);
                        }
                    }
                }
            }
            Signal::Logs => {
                for rl in batch.logs_mut().map_err(refuse)?.iter_mut() {
                    if let Some(resource) = rl.resource.as_mut() {
                        self.process_attrs(&mut resource.attributes);
                    }
                    for scope in rl.scope_logs.iter_mut().filter_map(|s| s.scope.as_mut()) {
                        self.process_attrs(&mut scope.attributes);
                    }
                    for record in rl.scope_logs.iter_mut().flat_map(|s| &mut s.log_records) {
                        self.process_attrs(&mut record.attributes);
                        let mut body = record.body.take().unwrap_or_default();
                        self.process_body(&mut body, &mut record.attributes);
                        if body.value.is_some() {
                            record.body = Some(body);
                        }
                    }
                }
            }
            Signal::Metrics => {
                for rm in batch.metrics_mut().map_err(refuse)?.iter_mut() {
                    if let Some(resource) = rm.resource.as_mut() {
                        self.process_attrs(&mut resource.attributes);
                    }
                    for scope in rm.scope_metrics.iter_mut().filter_map(|s| s.scope.as_mut()) {
                        self.process_attrs(&mut scope.attributes);
                    }
                    for m in rm.scope_metrics.iter_mut().flat_map(|s| &mut s.metrics) {
                        match m.data.as_mut() {
                            Some(metric::Data::Gauge(g)) => g
                                .data_points
                                .iter_mut()
                                .for_each(|p| self.process_attrs(&mut p.attributes)),
                            Some(metric::Data::Sum(s)) => s
                                .data_points
                                .iter_mut()
                                .for_each(|p| self.process_attrs(&mut p.attributes)),
                            Some(metric::Data::Histogram(h)) => h
                                .data_points
                                .iter_mut()
                                .for_each(|p| self.process_attrs(&mut p.attributes)),
                            Some(metric::Data::ExponentialHistogram(h)) => h
                                .data_points
                                .iter_mut()
                                .for_each(|p| self.process_attrs(&mut p.attributes)),
                            Some(metric::Data::Summary(s)) => s
                                .data_points
                                .iter_mut()
                                .for_each(|p| self.process_attrs(&mut p.attributes)),
                            None => {}
                        }
                    }
                }
            }
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests;
