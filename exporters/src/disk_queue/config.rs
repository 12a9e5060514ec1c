//! The `file_storage` extension's config (Collector keys, plus oxcol's `max_size_mib`).
//! The extension itself does nothing on its own: exporters whose
//! `sending_queue.storage` names it keep their queue in its directory.

use oxcol_core::GoDuration;
use serde::Deserialize;

pub const TYPE: &str = "file_storage";
pub const ALIASES: &[&str] = &["file_storage"];

/// `file_storage` as in the Collector's contrib extension.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where queues are kept, one subdirectory per exporter and signal. Required (the
    /// Collector defaults to a per-OS path; oxcol asks for it explicitly).
    pub directory: Option<String>,
    /// How long to wait for the directory lock held by another process. Default 1s.
    pub timeout: GoDuration,
    /// Create `directory` (and parents) when missing. Default false.
    pub create_directory: bool,
    /// Octal permissions of a directory created by `create_directory`. Default "0750".
    pub directory_permissions: String,
    /// Sync every write to disk before acknowledging. Default TRUE (the Collector's
    /// default is false; oxcol differs on purpose: acknowledged data survives power loss).
    pub fsync: bool,
    /// Collector key (start from an empty store). Only false is supported.
    pub recreate: bool,
    /// Collector key. Accepted for compatibility; oxcol's segment files need no compaction
    /// (a segment is deleted as soon as everything in it was sent).
    pub compaction: CompactionConfig,
    /// oxcol key: bound of each queue's bytes on disk, in MiB. When full, new data is
    /// refused upstream with a retryable error. Default 1024.
    pub max_size_mib: u64,
    /// oxcol key: size at which a segment file is closed and a new one started, in MiB.
    /// Default 8.
    pub segment_size_mib: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            directory: None,
            timeout: GoDuration::from_secs(1),
            create_directory: false,
            directory_permissions: "0750".to_string(),
            fsync: true,
            recreate: false,
            compaction: CompactionConfig::default(),
            max_size_mib: 1024,
            segment_size_mib: 8,
        }
    }
}

/// `compaction` as in the Collector. Accepted and ignored (see `Config::compaction`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// Default false.
    pub on_start: bool,
    /// Default false.
    pub on_rebound: bool,
    /// Default: the storage directory.
    pub directory: Option<String>,
    /// Default 65536.
    pub max_transaction_size: u64,
    /// Default 100.
    pub rebound_needed_threshold_mib: u64,
    /// Default 10.
    pub rebound_trigger_threshold_mib: u64,
    /// Default 5s.
    pub check_interval: GoDuration,
    /// Default false.
    pub cleanup_on_start: bool,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            on_start: false,
            on_rebound: false,
            directory: None,
            max_transaction_size: 65536,
            rebound_needed_threshold_mib: 100,
            rebound_trigger_threshold_mib: 10,
            check_interval: GoDuration::from_secs(5),
            cleanup_on_start: false,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        match &self.directory {
            None => errors.push("directory is required: set it to a directory oxcol may write (e.g. /var/lib/oxcol/queue)".to_string()),
            Some(d) if d.trim().is_empty() => errors.push("directory must not be empty".to_string()),
            Some(_) => {}
        }
        if self.max_size_mib == 0 {
            errors.push("max_size_mib must be greater than 0".to_string());
        }
        if self.segment_size_mib == 0 {
            errors.push("segment_size_mib must be greater than 0".to_string());
        }
        if u32::from_str_radix(self.directory_permissions.trim_start_matches("0o"), 8)
            .map_or(true, |m| m > 0o7777)
        {
            errors.push(format!(
                "directory_permissions: {:?} is not an octal mode such as \"0750\"",
                self.directory_permissions
            ));
        }
        if self.recreate {
            errors.push("recreate: true is not supported; remove the queue directory by hand to start empty".to_string());
        }
        errors
    }

    /// Bytes allowed per queue.
    pub fn max_bytes(&self) -> u64 {
        self.max_size_mib.saturating_mul(1 << 20)
    }

    /// Bytes per segment: `segment_size_mib`, at most an eighth of the bound so that
    /// deleting consumed segments frees room well before the bound is reached.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_size_mib
            .saturating_mul(1 << 20)
            .min(self.max_bytes() / 8)
            .max(64 << 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_problems() {
        let c = Config {
            directory: Some("/tmp/q".into()),
            ..Config::default()
        };
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert!(c.fsync, "fsync must default to true");
        assert_eq!(c.max_bytes(), 1 << 30);
        let bad = Config {
            max_size_mib: 0,
            recreate: true,
            directory_permissions: "rwx".into(),
            ..Config::default()
        };
        let problems = bad.validate();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("directory is required"));
    }
}
