//! `batch`: groups small batches into larger ones, by size (`send_batch_size`) or age
//! (`timeout`), and cuts oversized ones (`send_batch_max_size`).
//!
//! Where the grouping happens: in the exporter queues of the pipeline, as batches are
//! taken out to be sent (see `oxcol_exporters::queue`), not in a buffer in front of them.
//! A receiver's data is placed in the exporter queues at once, so the client is answered
//! at once, and nothing that was acknowledged ever sits in a buffer that can still refuse
//! it. The Collector's batch processor acknowledges data it then holds in memory, and
//! drops it if the queue behind is full; this design cannot.
//!
//! Encoded batches are grouped by collecting `Bytes` handles: no decode, no copy.

use oxcol_core::{BatchSettings, GoDuration};
use serde::Deserialize;

pub const TYPE: &str = "batch";
pub const ALIASES: &[&str] = &["batch"];

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Items (points, spans, log records) that trigger a send. Default 8192.
    pub send_batch_size: u64,
    /// Upper bound of one sent batch; 0 = no bound. Default 0.
    pub send_batch_max_size: u64,
    /// Longest time data waits for a batch to fill. Default 200ms; 0 = send at once.
    pub timeout: GoDuration,
    /// Collector key: batch separately per distinct combination of the values of these
    /// client metadata keys (case-insensitive; the metadata a receiver with
    /// `include_metadata: true` keeps). Each sent batch carries only these keys, which
    /// `headers_setter`'s `from_context` reads. Default: none (one group).
    pub metadata_keys: Vec<String>,
    /// Collector key: most distinct combinations over the life of the exporter queue
    /// (0 = no limit); data of a new combination beyond it is refused, not retryable, with
    /// the Collector's "too many batcher metadata-value combinations". Default 1000.
    pub metadata_cardinality_limit: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: GoDuration::from_millis(200),
            metadata_keys: Vec::new(),
            metadata_cardinality_limit: 1000,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.send_batch_max_size > 0 && self.send_batch_max_size < self.send_batch_size {
            errors.push(format!(
                "send_batch_max_size ({}) must be greater than or equal to send_batch_size ({})",
                self.send_batch_max_size, self.send_batch_size
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for key in &self.metadata_keys {
            if !seen.insert(key.to_ascii_lowercase()) {
                errors.push(format!(
                    "metadata_keys: duplicate entry {:?} (keys are case-insensitive)",
                    key.to_ascii_lowercase()
                ));
            }
        }
        errors
    }
}

impl Config {
    /// The grouping the exporter queues of this pipeline apply.
    pub fn settings(&self) -> BatchSettings {
        BatchSettings {
            send_batch_size: self.send_batch_size.max(1),
            send_batch_max_size: self.send_batch_max_size,
            timeout: self.timeout.get(),
            metadata_keys: self
                .metadata_keys
                .iter()
                .map(|k| k.to_ascii_lowercase())
                .collect(),
            metadata_cardinality_limit: self.metadata_cardinality_limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn defaults_and_validation() {
        let settings = Config::default().settings();
        assert_eq!(settings.send_batch_size, 8192);
        assert_eq!(settings.send_batch_max_size, 0);
        assert_eq!(settings.timeout, Duration::from_millis(200));
        assert!(
            Config {
                send_batch_size: 10,
                send_batch_max_size: 5,
                ..Config::default()
            }
            .validate()[0]
                .contains("send_batch_max_size")
        );
        let keyed = Config {
            metadata_keys: vec!["Tenant".into()],
            metadata_cardinality_limit: 10,
            ..Config::default()
        };
        assert!(
            keyed.validate().is_empty(),
            "metadata_keys are accepted: {:?}",
            keyed.validate()
        );
        let settings = keyed.settings();
        assert_eq!(settings.metadata_keys, vec!["tenant".to_string()]);
        assert_eq!(settings.metadata_cardinality_limit, 10);
        assert!(Config::default().settings().metadata_keys.is_empty());
        let twice = Config {
            metadata_keys: vec!["Tenant".into(), "tenant".into()],
            ..Config::default()
        };
        assert!(
            twice.validate()[0].contains("duplicate entry \"tenant\""),
            "{:?}",
            twice.validate()
        );
    }
}
