//! Config of the `file` exporter: the Collector's keys (contrib `fileexporter`, v0.162)
//! with its defaults and its `Validate` rules.

use oxcol_core::GoDuration;
use serde::{Deserialize, Deserializer};

/// `format: json` (default): one OTLP/JSON request per line.
pub const FORMAT_JSON: &str = "json";
/// `format: proto`: OTLP protobuf requests, each after its 4-byte big-endian length.
pub const FORMAT_PROTO: &str = "proto";
/// The one compression the Collector offers.
pub const COMPRESSION_ZSTD: &str = "zstd";
/// Default `group_by.resource_attribute`.
pub const DEFAULT_RESOURCE_ATTRIBUTE: &str = "fileexporter.path_segment";

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// File to write. Required; relative to the working directory.
    pub path: String,
    /// Default false: the file is truncated when the exporter starts. True appends.
    pub append: bool,
    /// Present (even empty: `rotation:`) turns rotation on with its defaults; absent, the
    /// file grows without bound.
    #[serde(deserialize_with = "present_or_default")]
    pub rotation: Option<Rotation>,
    /// `json` (default) or `proto`.
    pub format: String,
    /// An encoding extension id (overrides `format` in the Collector). oxcol has no
    /// encoding extensions: a validation error naming it.
    pub encoding: Option<String>,
    /// `""` (default, none) or `zstd`: each message is compressed on its own.
    pub compression: String,
    /// Time between flushes of the write buffer. 0 or absent: 1s.
    pub flush_interval: GoDuration,
    /// One file per value of a resource attribute. Not supported yet: `enabled: true` is
    /// a validation error.
    #[serde(deserialize_with = "present_or_default")]
    pub group_by: Option<GroupBy>,
    /// Create the parent directory of `path` at start. Default false (a missing
    /// directory fails the start).
    pub create_directory: bool,
    /// Permissions of created directories, an octal string; default `0755`. Only with
    /// `create_directory: true`.
    pub directory_permissions: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: String::new(),
            append: false,
            rotation: None,
            format: FORMAT_JSON.to_string(),
            encoding: None,
            compression: String::new(),
            flush_interval: GoDuration::from_secs(1),
            group_by: None,
            create_directory: false,
            directory_permissions: String::new(),
        }
    }
}

/// `rotation:` (lumberjack's settings).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Rotation {
    /// Size in MiB at which the file is rotated. Default 100 (also when 0).
    pub max_megabytes: u64,
    /// Delete backups older than this many days (by the time in their name); 0 keeps
    /// them regardless of age. Default 0.
    pub max_days: u64,
    /// Keep at most this many backups; 0 keeps all. Default 100.
    pub max_backups: u64,
    /// Backup names carry local time instead of UTC. Default false.
    pub localtime: bool,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_megabytes: 100,
            max_days: 0,
            max_backups: 100,
            localtime: false,
        }
    }
}

/// `group_by:`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GroupBy {
    pub enabled: bool,
    /// Default `fileexporter.path_segment`.
    pub resource_attribute: String,
    /// Default 100.
    pub max_open_files: u64,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            enabled: false,
            resource_attribute: DEFAULT_RESOURCE_ATTRIBUTE.to_string(),
            max_open_files: 100,
        }
    }
}

/// A key written with no value (`rotation:`) is the section with its defaults, as the
/// Collector reads it; an absent key stays `None` (through `#[serde(default)]`).
fn present_or_default<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(
        Option::<T>::deserialize(deserializer)?.unwrap_or_default(),
    ))
}

impl Config {
    /// Every problem at once, with the Collector's rules (its `Config.Validate`).
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.path.is_empty() {
            errors.push("path must be non-empty".to_string());
        }
        if self.append && !self.compression.is_empty() {
            errors.push(
                "append and compression enabled at the same time is not supported".to_string(),
            );
        }
        if self.append && self.rotation.is_some() {
            errors
                .push("append and rotation enabled at the same time is not supported".to_string());
        }
        if self.format != FORMAT_JSON && self.format != FORMAT_PROTO {
            errors.push(format!(
                "format {:?} is not supported; use {FORMAT_JSON} or {FORMAT_PROTO}",
                self.format
            ));
        }
        if !self.compression.is_empty() && self.compression != COMPRESSION_ZSTD {
            errors.push(format!(
                "compression {:?} is not supported; use {COMPRESSION_ZSTD} or leave it out",
                self.compression
            ));
        }
        if let Some(encoding) = &self.encoding {
            errors.push(format!(
                "encoding: {encoding:?} names an encoding extension, and oxcol has no encoding extensions; remove `encoding` and use format: {FORMAT_JSON} or {FORMAT_PROTO}"
            ));
        }
        if let Some(group_by) = &self.group_by
            && group_by.enabled
        {
            let parts: Vec<&str> = self.path.split('*').collect();
            if parts.len() != 2 {
                errors.push("path must contain exactly one * when group_by is enabled".to_string());
            } else if parts[0].is_empty() {
                errors.push("path must not start with * when group_by is enabled".to_string());
            }
            if group_by.resource_attribute.is_empty() {
                errors.push(
                    "resource_attribute must not be empty when group_by is enabled".to_string(),
                );
            }
            errors.push(
                "group_by.enabled: true is not supported by oxcol yet (one file per resource attribute value); remove group_by or set enabled: false".to_string(),
            );
        }
        if self.create_directory {
            if let Err(problem) = self.directory_mode() {
                errors.push(problem);
            }
        } else if !self.directory_permissions.is_empty() {
            errors.push("directory_permissions requires create_directory to be true".to_string());
        }
        errors
    }

    /// The permission bits of created directories (`directory_permissions`, default 0755).
    pub fn directory_mode(&self) -> Result<u32, String> {
        let text = if self.directory_permissions.is_empty() {
            "0755"
        } else {
            self.directory_permissions.as_str()
        };
        let mode = u32::from_str_radix(text, 8).map_err(|_| {
            format!("directory_permissions {text:?} must be a valid octal representation, such as \"0755\"")
        })?;
        if mode & 0o777 != mode {
            return Err(format!(
                "directory_permissions {text:?} contain invalid bits for file access (only 0777 are allowed)"
            ));
        }
        Ok(mode)
    }

    /// The effective flush interval (0 means the default 1s, as in the Collector).
    pub fn flush_every(&self) -> std::time::Duration {
        if self.flush_interval.is_zero() {
            std::time::Duration::from_secs(1)
        } else {
            self.flush_interval.get()
        }
    }

    /// Whether each message is written after its length instead of as a line: `proto`,
    /// or any compression (the Collector's rule without its native-compression gate).
    pub fn length_prefixed(&self) -> bool {
        self.format == FORMAT_PROTO || !self.compression.is_empty()
    }
}
