//! Client request metadata carried with a batch, as the Collector's `client.Info.Metadata`:
//! the headers (HTTP) or metadata (gRPC) of the request that brought the data in, kept
//! when a receiver has `include_metadata: true`. The `batch` processor's `metadata_keys`
//! groups by it, and `headers_setter`'s `from_context` reads it in exporters.
//!
//! Names are lower-cased (lookups are case-insensitive, as `client.Metadata.Get`); a name
//! may have several values, in the order they came.
//!
//! Must never: log or print a value (tokens and tenant ids travel this way). `Debug`
//! shows the names only.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

/// The metadata of one client request: lower-cased names, each with its values.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Metadata {
    entries: BTreeMap<String, Vec<String>>,
}

impl std::fmt::Debug for Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metadata")
            .field("keys", &self.entries.keys().collect::<Vec<_>>())
            .field("values", &"[REDACTED]")
            .finish()
    }
}

impl Metadata {
    /// Every header of a request (HTTP headers, or gRPC metadata as a HeaderMap). Values
    /// that are not UTF-8 are kept lossily, as the Collector keeps them as Go strings.
    pub fn from_headers(headers: &HeaderMap) -> Metadata {
        let mut entries: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in headers {
            // HeaderName is already lower-case.
            entries
                .entry(name.as_str().to_string())
                .or_default()
                .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
        Metadata { entries }
    }

    /// Builds metadata from (name, values) pairs; names are lower-cased and values of the
    /// same name joined in order.
    pub fn from_pairs<K: AsRef<str>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Metadata {
        let mut entries: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in pairs {
            entries
                .entry(name.as_ref().to_ascii_lowercase())
                .or_default()
                .push(value.into());
        }
        Metadata { entries }
    }

    /// The values of `key` (case-insensitive); empty when absent.
    pub fn get(&self, key: &str) -> &[String] {
        let found = if key.bytes().any(|b| b.is_ascii_uppercase()) {
            self.entries.get(&key.to_ascii_lowercase())
        } else {
            self.entries.get(key)
        };
        found.map(Vec::as_slice).unwrap_or(&[])
    }

    /// The first value of `key` (case-insensitive), if any.
    pub fn first(&self, key: &str) -> Option<&str> {
        self.get(key).first().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The names present (lower-case), for diagnostics that must not show values.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The values of each of `keys` (lower-cased), in that order: the identity of a
    /// `metadata_keys` partition.
    pub fn partition_key(&self, keys: &[String]) -> Vec<Vec<String>> {
        keys.iter().map(|k| self.get(k).to_vec()).collect()
    }

    /// Only `keys` (lower-cased) with the values in `values` (as from
    /// [`Metadata::partition_key`]); keys without values are left out.
    pub fn from_partition(keys: &[String], values: &[Vec<String>]) -> Metadata {
        let entries = keys
            .iter()
            .zip(values)
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        Metadata { entries }
    }
}

/// Whether two batches' metadata is the same (same Arc, or equal content).
pub fn same_metadata(a: &Option<Arc<Metadata>>, b: &Option<Arc<Metadata>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        _ => false,
    }
}

/// Headers an exporter adds to each request from the metadata of the batch it sends
/// (the `headers_setter` extension). The function returns values marked sensitive.
#[derive(Clone)]
pub struct ContextHeaders(Arc<HeadersFn>);

/// What computes [`ContextHeaders`] from a batch's metadata.
type HeadersFn =
    dyn Fn(Option<&Metadata>) -> Result<Vec<(HeaderName, HeaderValue)>, String> + Send + Sync;

impl std::fmt::Debug for ContextHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContextHeaders([REDACTED])")
    }
}

impl ContextHeaders {
    pub fn new(
        f: impl Fn(Option<&Metadata>) -> Result<Vec<(HeaderName, HeaderValue)>, String>
        + Send
        + Sync
        + 'static,
    ) -> ContextHeaders {
        ContextHeaders(Arc::new(f))
    }

    /// The headers for a batch with `metadata`, or why that batch cannot be sent (a key
    /// with several values, as in the Collector: never a value in the message).
    pub fn headers(
        &self,
        metadata: Option<&Metadata>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        (self.0)(metadata)
    }

    /// The headers for `batch` from an exporter's optional `headers_setter`: none without
    /// one, and a permanent export error when the batch's metadata cannot give them.
    pub fn for_batch(
        this: Option<&ContextHeaders>,
        batch: &crate::Batch,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, crate::pipeline::ExportError> {
        let Some(this) = this else {
            return Ok(Vec::new());
        };
        this.headers(batch.metadata().map(|m| m.as_ref()))
            .map_err(|reason| crate::pipeline::ExportError::Permanent { reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_keep_every_value_in_order() {
        let mut headers = HeaderMap::new();
        headers.append("X-Tenant", HeaderValue::from_static("a"));
        headers.append("x-tenant", HeaderValue::from_static("b"));
        headers.append("other", HeaderValue::from_static("c"));
        let metadata = Metadata::from_headers(&headers);
        assert_eq!(metadata.get("X-TENANT"), ["a", "b"]);
        assert_eq!(metadata.first("x-Tenant"), Some("a"));
        assert!(metadata.get("missing").is_empty());
        let shown = format!("{metadata:?}");
        assert!(
            shown.contains("x-tenant") && !shown.contains("\"a\""),
            "{shown}"
        );
    }

    #[test]
    fn a_partition_keeps_only_its_keys() {
        let metadata = Metadata::from_pairs([("X-Tenant", "a"), ("authorization", "secret")]);
        let keys = vec!["x-tenant".to_string(), "x-region".to_string()];
        let key = metadata.partition_key(&keys);
        assert_eq!(key, vec![vec!["a".to_string()], vec![]]);
        let only = Metadata::from_partition(&keys, &key);
        assert_eq!(only.keys().collect::<Vec<_>>(), ["x-tenant"]);
        assert!(only.get("authorization").is_empty());
    }
}
