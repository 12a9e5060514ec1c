//! `headers_setter` extension: headers that the `otlp` and `otlphttp` exporters send with
//! every request, named as their client authenticator (`auth: {authenticator:
//! headers_setter}`), with the Collector's keys (`headerssetterextension`).
//!
//! `from_context: KEY` takes the value of KEY (case-insensitive) in the client
//! metadata of the batch being sent: the headers of the request that brought the data in,
//! kept by a receiver with `include_metadata: true` and, behind a `batch` processor,
//! reduced to its `metadata_keys` (a batch merged from requests that disagree carries
//! none, so use `metadata_keys` with the key). When the batch has no value, the header
//! gets `default_value`, or is not set. When the key has several values, the batch is
//! not sent (a permanent error naming the count, never the values), as in the Collector.
//! `from_attribute` (an auth attribute of the
//! client) is not carried by oxcol: it always gets its `default_value`. `value` headers
//! are sent as configured.
//!
//! Order, as in the Collector's HTTP client: the extension's headers first, then the
//! exporter's own `headers:` (which win on the same name).
//!
//! Must never: log a header value (tokens travel this way).

use oxcol_core::client::{ContextHeaders, Metadata};
use serde::Deserialize;

pub const TYPE: &str = "headers_setter";
pub const ALIASES: &[&str] = &["headers_setter"];

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Set the header only when the request does not have it yet.
    Insert,
    /// Set the header only when the request has it already.
    Update,
    /// Set the header (default).
    #[default]
    Upsert,
    /// Remove the header.
    Delete,
}

#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Header {
    pub key: Option<String>,
    pub action: Action,
    /// A fixed value. Redacted by `print-config` (everything under `headers` is).
    pub value: Option<String>,
    /// A client metadata key: the batch's first value of it (see the module doc).
    pub from_context: Option<String>,
    /// An auth attribute of the client (never found in oxcol: see the module doc).
    pub from_attribute: Option<String>,
    /// Used when `from_context`/`from_attribute` finds nothing.
    pub default_value: Option<String>,
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Header {{ key: {:?}, action: {:?}, from_context: {:?}, from_attribute: {:?}, value: [REDACTED] }}",
            self.key, self.action, self.from_context, self.from_attribute
        )
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub headers: Vec<Header>,
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.headers.is_empty() {
            errors.push(
                "headers is empty; list at least one {key, value | from_context}".to_string(),
            );
        }
        for (index, header) in self.headers.iter().enumerate() {
            let at = format!("headers[{index}]");
            match header.key.as_deref() {
                None | Some("") => errors.push(format!("{at}: key (the header name) is required")),
                Some(key) if http::HeaderName::from_bytes(key.as_bytes()).is_err() => {
                    errors.push(format!("{at}: key {key:?} is not a valid header name"))
                }
                Some(_) => {}
            }
            if header.action == Action::Delete {
                continue;
            }
            let sources = [
                header.value.is_some(),
                header.from_context.is_some(),
                header.from_attribute.is_some(),
            ]
            .into_iter()
            .filter(|s| *s)
            .count();
            if sources == 0 {
                errors.push(format!("{at}: missing header source, must be 'from_context', 'from_attribute' or 'value'"));
            } else if sources > 1 {
                errors.push(format!("{at}: invalid header source, set only one of 'from_context', 'from_attribute' and 'value'"));
            }
            if let Some(value) = header.value.as_ref().or(header.default_value.as_ref())
                && http::HeaderValue::from_str(value).is_err()
            {
                errors.push(format!(
                    "{at}: the value contains characters not allowed in a header"
                ));
            }
        }
        errors
    }

    /// The headers a request gets without client metadata (see [`Config::headers_for`]).
    pub fn headers(&self) -> Vec<(String, String)> {
        // Without metadata no lookup can find several values.
        self.headers_for(None).unwrap_or_default()
    }

    /// The headers a request for a batch with `metadata` gets, applying each entry's
    /// action in order to what the earlier entries set. `from_context` takes the value
    /// of its key in `metadata`, else `default_value`; a key with several values is an
    /// error, as in the Collector ("N source keys found in the context, can't determine
    /// which one to use"): that batch is not sent. `from_attribute` always takes its
    /// `default_value`; without a value the entry sets nothing.
    pub fn headers_for(
        &self,
        metadata: Option<&Metadata>,
    ) -> Result<Vec<(String, String)>, String> {
        let mut out: Vec<(String, String)> = Vec::new();
        for header in &self.headers {
            let Some(key) = header.key.as_deref() else {
                continue;
            };
            let position = out
                .iter()
                .position(|(existing, _)| existing.eq_ignore_ascii_case(key));
            let found = match (header.from_context.as_deref(), metadata) {
                (Some(key), Some(metadata)) => metadata.get(key),
                _ => &[],
            };
            if found.len() > 1 {
                return Err(format!(
                    "headers_setter: {} source keys found in the context, can't determine which one to use",
                    found.len()
                ));
            }
            let from_context = found.first().map(String::as_str);
            let value = match (&header.value, from_context, &header.default_value) {
                (Some(value), _, _) => Some(value.clone()),
                (None, Some(found), _) => Some(found.to_string()),
                (None, None, default) => default.clone(),
            };
            match (header.action, position, value) {
                (Action::Delete, Some(at), _) => {
                    out.remove(at);
                }
                (Action::Insert, None, Some(value)) | (Action::Upsert, None, Some(value)) => {
                    out.push((key.to_string(), value))
                }
                (Action::Update, Some(at), Some(value))
                | (Action::Upsert, Some(at), Some(value)) => out[at].1 = value,
                _ => {}
            }
        }
        Ok(out)
    }

    /// `from_attribute` keys, whose value oxcol can never look up (logged once at start).
    pub fn lookups(&self) -> Vec<String> {
        self.headers
            .iter()
            .filter_map(|h| h.from_attribute.clone())
            .collect()
    }

    /// The headers as an exporter computes them for each batch it sends, with values
    /// marked sensitive; an exporter's own `headers:` win over them on the same name.
    /// A value that cannot be a header (only possible from metadata) is left out.
    pub fn context_headers(&self) -> ContextHeaders {
        let config = self.clone();
        ContextHeaders::new(move |metadata| {
            Ok(config
                .headers_for(metadata)?
                .into_iter()
                .filter_map(|(name, value)| {
                    let name = http::HeaderName::from_bytes(name.as_bytes()).ok()?;
                    let mut value = http::HeaderValue::from_str(&value).ok()?;
                    value.set_sensitive(true);
                    Some((name, value))
                })
                .collect())
        })
    }

    /// An exporter's `headers:` with this extension's headers under them: the exporter's
    /// own win on the same name, as in the Collector's HTTP client.
    pub fn merged_into(
        &self,
        exporter_headers: &std::collections::BTreeMap<String, String>,
    ) -> std::collections::BTreeMap<String, String> {
        let mut merged = exporter_headers.clone();
        for (key, value) in self.headers() {
            if !merged
                .keys()
                .any(|existing| existing.eq_ignore_ascii_case(&key))
            {
                merged.insert(key, value);
            }
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> Config {
        serde_json::from_value(json).expect("a headers_setter config")
    }

    #[test]
    fn values_and_defaults_become_headers_in_order_of_the_actions() {
        let config = config(serde_json::json!({"headers": [
            {"key": "X-Scope-OrgID", "from_context": "tenant", "default_value": "anonymous"},
            {"key": "Authorization", "value": "Bearer t0ken"},
            {"key": "x-scope-orgid", "action": "update", "value": "team-a"},
            {"key": "X-Only-If-Absent", "action": "insert", "value": "1"},
            {"key": "Authorization", "action": "insert", "value": "ignored: already set"},
            {"key": "X-Never", "action": "update", "value": "not set before, so not set"},
            {"key": "X-From-Context-Only", "from_context": "missing"},
            {"key": "X-Only-If-Absent", "action": "delete"}
        ]}));
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(
            config.headers(),
            vec![
                ("X-Scope-OrgID".to_string(), "team-a".to_string()),
                ("Authorization".to_string(), "Bearer t0ken".to_string())
            ]
        );
        assert!(config.lookups().is_empty());
    }

    #[test]
    fn from_context_takes_the_value_of_the_batch_metadata() {
        let config = config(serde_json::json!({"headers": [
            {"key": "X-Scope-OrgID", "from_context": "X-Tenant", "default_value": "anonymous"},
            {"key": "X-Region", "from_context": "region"},
            {"key": "X-Attr", "from_attribute": "sub", "default_value": "nobody"},
            {"key": "X-Kept", "action": "update", "from_context": "x-tenant"}
        ]}));
        let metadata = Metadata::from_pairs([("X-TENANT", "team-a")]);
        assert_eq!(
            config.headers_for(Some(&metadata)),
            Ok(vec![
                ("X-Scope-OrgID".to_string(), "team-a".to_string()),
                ("X-Attr".to_string(), "nobody".to_string())
            ]),
            "the value (key case-insensitive); no region and no default: not set; update of an absent header: not set"
        );
        assert_eq!(
            config.headers_for(Some(&Metadata::default())),
            Ok(vec![
                ("X-Scope-OrgID".to_string(), "anonymous".to_string()),
                ("X-Attr".to_string(), "nobody".to_string())
            ])
        );
        assert_eq!(config.headers_for(None), Ok(config.headers()));
        let several = Metadata::from_pairs([("x-tenant", "team-a"), ("X-TENANT", "team-b")]);
        let refused = config.headers_for(Some(&several)).unwrap_err();
        assert!(
            refused.contains("2 source keys found in the context") && !refused.contains("team-"),
            "several values: the batch is refused, as in the Collector, without the values: {refused}"
        );
        let sent = config.context_headers().headers(Some(&metadata)).unwrap();
        assert_eq!(sent[0].0.as_str(), "x-scope-orgid");
        assert_eq!(sent[0].1, "team-a");
        assert!(sent.iter().all(|(_, v)| v.is_sensitive()));
    }

    #[test]
    fn the_exporters_own_headers_win() {
        let config = config(
            serde_json::json!({"headers": [{"key": "X-Tenant", "value": "a"}, {"key": "X-Extra", "value": "b"}]}),
        );
        let exporter =
            std::collections::BTreeMap::from([("x-tenant".to_string(), "mine".to_string())]);
        let merged = config.merged_into(&exporter);
        assert_eq!(merged.get("x-tenant").map(String::as_str), Some("mine"));
        assert_eq!(merged.get("X-Extra").map(String::as_str), Some("b"));
        assert_eq!(merged.len(), 2);
    }

    #[test]
    fn validation_matches_the_collector() {
        assert!(Config::default().validate()[0].contains("headers is empty"));
        let errors = config(serde_json::json!({"headers": [
            {"value": "x"},
            {"key": "a"},
            {"key": "b", "value": "x", "from_context": "y"},
            {"key": "c", "action": "delete"},
            {"key": "bad key", "value": "x"}
        ]}))
        .validate();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].contains("key (the header name) is required"));
        assert!(errors[1].contains("missing header source"));
        assert!(errors[2].contains("invalid header source"));
        assert!(errors[3].contains("not a valid header name"));
    }
}
