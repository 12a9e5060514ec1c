//! `prometheusremotewrite` config: the keys and defaults of the Collector's
//! `prometheusremotewriteexporter`, with what oxcol does not support refused by `validate`.

use std::collections::BTreeMap;

use oxcol_core::GoDuration;
use serde::Deserialize;

use crate::client::{AuthSettings, TlsClientConfig, check_tls, validate_headers};
use crate::queue::{QueueConfig, RetryConfig};

/// `protobuf_message` value for remote write 1.0 (the default).
pub const PROTO_V1: &str = "prometheus.v1.WriteRequest";
/// `protobuf_message` value for remote write 2.0.
pub const PROTO_V2: &str = "io.prometheus.write.v2.Request";

/// Headers the protocol owns; `headers:` may not set them.
pub const RESERVED_HEADERS: &[&str] = &[
    "content-encoding",
    "content-type",
    "x-prometheus-remote-write-version",
];

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Full URL of the receiver, e.g. `http://prometheus:9090/api/v1/write`. Required.
    pub endpoint: String,
    /// Extra request headers (tenant ids, `Authorization: Basic …` / `Bearer …`). The
    /// protocol headers (Content-Encoding, Content-Type, X-Prometheus-Remote-Write-Version)
    /// cannot be set. Default none.
    pub headers: BTreeMap<String, String>,
    /// Deadline of one HTTP request. Default 5s (the Collector's).
    pub timeout: GoDuration,
    /// Only `snappy` (the protocol requires it). Default `snappy`.
    pub compression: String,
    /// TLS for `https://` endpoints (`oxcol_core::tls::TlsClientConfig`). Default: system CAs.
    pub tls: TlsClientConfig,
    /// `authenticator: bearertokenauth/NAME | basicauth/NAME`: credentials on every request.
    pub auth: Option<AuthSettings>,
    /// `enabled: true` copies every resource attribute onto every series. Default false.
    pub resource_to_telemetry_conversion: Toggle,
    /// Unit and type suffixes (`_seconds`, `_total`, `_ratio`). Default true.
    pub add_metric_suffixes: bool,
    /// `enabled: true` (default) sends one `target_info` series per resource.
    pub target_info: TargetInfo,
    /// `enabled: true` would send `_created` series: not supported; must stay false.
    pub export_created_metric: Toggle,
    /// Prefix for every metric name (`<namespace>_`). Default empty.
    pub namespace: String,
    /// Labels added to every series that does not already have them. Default none.
    pub external_labels: BTreeMap<String, String>,
    /// The queue in front of the exporter (see the doc on ordering).
    pub remote_write_queue: RemoteWriteQueue,
    /// The Collector's write-ahead log: with `directory` set, the queue is kept on disk
    /// there (oxcol's disk queue, see [`Wal`]). Default none (queue in memory).
    pub wal: Option<Wal>,
    /// Defaults as the Collector's prometheusremotewrite: 50ms initial, 200ms max
    /// interval, 1m max elapsed time.
    pub retry_on_failure: RetryConfig,
    /// Upper bound of one request's uncompressed protobuf size; larger sends are split.
    /// Default 3000000.
    pub max_batch_size_bytes: usize,
    /// How many requests of one batch are sent at once (series are sharded by label hash,
    /// so a series is always in the same shard). Default: `remote_write_queue.num_consumers`.
    pub max_batch_request_parallelism: Option<usize>,
    /// Remote write 1.0 only: send `MetricMetadata` (type, help, unit). Default false.
    pub send_metadata: bool,
    /// `prometheus.v1.WriteRequest` (default) or `io.prometheus.write.v2.Request`.
    pub protobuf_message: String,
    /// A series absent this long from what its resource keeps sending gets a staleness
    /// marker (see `staleness.rs`). `0s` turns the tracking off. Default 2m.
    pub staleness_interval: GoDuration,
    /// Most series tracked for staleness; beyond it the least recently seen 10% are
    /// forgotten (no marker) and counted. Default 100000.
    pub staleness_max_series: usize,
    /// `http://[user:password@]host:port` of an HTTP proxy (HTTP CONNECT tunnel), as
    /// otlphttp's. Default "": connect directly.
    pub proxy_url: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Toggle {
    pub enabled: bool,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TargetInfo {
    /// Default true.
    pub enabled: bool,
}

impl Default for TargetInfo {
    fn default() -> Self {
        TargetInfo { enabled: true }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteQueue {
    /// Default true. When false, the pipeline waits for each send.
    pub enabled: bool,
    /// Batches waiting to be sent. Default 10000.
    pub queue_size: usize,
    /// Concurrent requests per batch (shards). Default 5.
    pub num_consumers: usize,
    /// oxcol key (the Collector's `remote_write_queue` has none): a `file_storage`
    /// extension id (`file_storage` or `file_storage/NAME`, listed in
    /// `service.extensions`) keeping the queue on disk in its directory, as
    /// `sending_queue.storage` does for the other exporters. Default none (in memory).
    pub storage: Option<String>,
}

/// `wal` as in the Collector's prometheusremotewrite exporter. Setting `directory` keeps
/// the queue on disk in that directory: oxcol's disk queue with the `file_storage`
/// defaults (fsync on, 1024 MiB bound, 8 MiB segments), not the Collector's WAL format.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Wal {
    /// Directory of the queue (created with mode 0750 if missing). Required.
    pub directory: String,
    /// Collector key (WAL entries read per truncation). Accepted, no effect: the disk
    /// queue reads in order and deletes a segment once all of it was sent. Default 300.
    pub buffer_size: usize,
    /// Collector key. Accepted, no effect (see `buffer_size`). Default 1m.
    pub truncate_frequency: GoDuration,
    /// Collector key (how often WAL lag is recorded). Accepted, no effect: the queue's
    /// length is `otelcol_exporter_queue_size` and its bytes
    /// `oxcol_exporter_disk_queue_bytes`. Default 15s.
    pub lag_record_frequency: GoDuration,
}

impl Default for Wal {
    fn default() -> Self {
        Wal {
            directory: String::new(),
            buffer_size: 300,
            truncate_frequency: GoDuration::from_secs(60),
            lag_record_frequency: GoDuration::from_secs(15),
        }
    }
}

impl Default for RemoteWriteQueue {
    fn default() -> Self {
        RemoteWriteQueue {
            enabled: true,
            queue_size: 10000,
            num_consumers: 5,
            storage: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: String::new(),
            headers: BTreeMap::new(),
            timeout: GoDuration::from_secs(5),
            compression: "snappy".to_string(),
            tls: TlsClientConfig::default(),
            auth: None,
            resource_to_telemetry_conversion: Toggle::default(),
            add_metric_suffixes: true,
            target_info: TargetInfo::default(),
            export_created_metric: Toggle::default(),
            namespace: String::new(),
            external_labels: BTreeMap::new(),
            remote_write_queue: RemoteWriteQueue::default(),
            wal: None,
            retry_on_failure: RetryConfig {
                initial_interval: GoDuration::from_millis(50),
                max_interval: GoDuration::from_millis(200),
                max_elapsed_time: GoDuration::from_secs(60),
                ..RetryConfig::default()
            },
            max_batch_size_bytes: 3_000_000,
            max_batch_request_parallelism: None,
            send_metadata: false,
            protobuf_message: PROTO_V1.to_string(),
            staleness_interval: GoDuration::from_secs(120),
            staleness_max_series: 100_000,
            proxy_url: String::new(),
        }
    }
}

impl Config {
    /// Problems with `endpoint`. The Collector's `Validate` does not look at it; building
    /// the exporter does ("invalid endpoint"), and only exporters a pipeline uses are
    /// built, so the agent reports these for used exporters only (`service::decode_all`).
    pub fn endpoint_problems(&self) -> Vec<String> {
        if self.endpoint.is_empty() {
            return vec![
                "endpoint is required, e.g. http://prometheus:9090/api/v1/write".to_string(),
            ];
        }
        match self.endpoint.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http") | Some("https"))
                    && uri.host().is_some() =>
            {
                Vec::new()
            }
            _ => vec![format!(
                "endpoint {:?} is not a valid http:// URL",
                self.endpoint
            )],
        }
    }

    /// Every problem but those of `endpoint` (see [`Config::endpoint_problems`]).
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Ok(uri) = self.endpoint.parse::<http::Uri>()
            && matches!(uri.scheme_str(), Some("http") | Some("https"))
        {
            errors.extend(check_tls(
                &self.tls,
                &self.endpoint,
                Some(uri.scheme_str() == Some("https")),
            ));
        }
        if !matches!(self.compression.as_str(), "snappy" | "") {
            errors.push(format!(
                "compression: {:?} is not possible; remote write always uses snappy (remove the key)",
                self.compression
            ));
        }
        errors.extend(validate_headers(&self.headers));
        for name in self.headers.keys() {
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                errors.push(format!(
                    "headers: {name} is set by the remote write protocol and cannot be overridden; remove it"
                ));
            }
        }
        for name in self.external_labels.keys() {
            if crate::prom_translate::label_name(name).as_deref() != Some(name.as_str()) {
                errors.push(format!(
                    "external_labels: {name:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
                ));
            }
        }
        if self.export_created_metric.enabled {
            errors.push("export_created_metric.enabled: true is not supported; remove it (2.0 sends start timestamps instead)".to_string());
        }
        if self.protobuf_message != PROTO_V1 && self.protobuf_message != PROTO_V2 {
            errors.push(format!(
                "protobuf_message: {:?} is not known; use {PROTO_V1:?} (remote write 1.0) or {PROTO_V2:?} (2.0)",
                self.protobuf_message
            ));
        }
        if self.send_metadata && self.protobuf_message == PROTO_V2 {
            errors.push("send_metadata applies to remote write 1.0 only; 2.0 always sends metadata with each series".to_string());
        }
        if self.max_batch_size_bytes == 0 {
            errors.push("max_batch_size_bytes must be greater than 0".to_string());
        }
        if self.remote_write_queue.enabled && self.remote_write_queue.queue_size == 0 {
            errors.push("remote_write_queue.queue_size must be greater than 0".to_string());
        }
        if self.remote_write_queue.num_consumers == 0
            || self.max_batch_request_parallelism == Some(0)
        {
            errors.push("remote_write_queue.num_consumers and max_batch_request_parallelism must be greater than 0".to_string());
        }
        if let Some(storage) = &self.remote_write_queue.storage {
            if storage.split('/').next() != Some(crate::disk_queue::config::TYPE) {
                errors.push(format!("remote_write_queue.storage: {storage:?} is not a file_storage extension id; write file_storage or file_storage/NAME"));
            } else if !self.remote_write_queue.enabled {
                errors.push(
                    "remote_write_queue.storage needs remote_write_queue.enabled: true".to_string(),
                );
            }
        }
        if let Some(wal) = &self.wal {
            if wal.directory.trim().is_empty() {
                errors.push("wal.directory is required: set it to a directory oxcol may write (e.g. /var/lib/oxcol/prw), or remove `wal`".to_string());
            }
            if self.remote_write_queue.storage.is_some() {
                errors.push(
                    "wal and remote_write_queue.storage both put the queue on disk; keep one"
                        .to_string(),
                );
            }
            if !self.remote_write_queue.enabled {
                errors.push("wal needs remote_write_queue.enabled: true (with wal, the queue is kept on disk)".to_string());
            }
        }
        if let Err(e) = oxcol_core::proxy::ProxyUrl::from_setting(&self.proxy_url) {
            errors.push(e);
        }
        if self.staleness_max_series == 0 {
            errors.push("staleness_max_series must be greater than 0 (turn tracking off with staleness_interval: 0s)".to_string());
        }
        errors.extend(self.retry_on_failure.validate());
        errors
    }

    /// The queue that wraps the exporter. Always ONE consumer: batches are sent in the
    /// order they were queued, so a series' samples reach the receiver in time order
    /// (Prometheus refuses out-of-order samples with a 400). Concurrency happens inside
    /// the exporter, across shards of series (`shards()`).
    pub fn queue_config(&self) -> QueueConfig {
        QueueConfig {
            enabled: self.remote_write_queue.enabled,
            num_consumers: 1,
            queue_size: self.remote_write_queue.queue_size,
            storage: self.remote_write_queue.storage.clone(),
            ..QueueConfig::default()
        }
    }

    /// With `wal.directory`: the disk queue's settings there (the `file_storage`
    /// defaults, the directory created if missing).
    pub fn wal_storage(&self) -> Option<crate::disk_queue::Config> {
        let wal = self
            .wal
            .as_ref()
            .filter(|w| !w.directory.trim().is_empty())?;
        Some(crate::disk_queue::Config {
            directory: Some(wal.directory.clone()),
            create_directory: true,
            ..crate::disk_queue::Config::default()
        })
    }

    pub fn shards(&self) -> usize {
        self.max_batch_request_parallelism
            .unwrap_or(self.remote_write_queue.num_consumers)
            .max(1)
    }

    pub fn is_v2(&self) -> bool {
        self.protobuf_message == PROTO_V2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let config = Config {
            endpoint: "http://127.0.0.1:9090/api/v1/write".into(),
            ..Config::default()
        };
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(config.queue_config().num_consumers, 1);
        assert_eq!(config.shards(), 5);
        let bad = Config {
            endpoint: "http://x/api/v1/write".into(),
            tls: TlsClientConfig {
                ca_file: Some("/ca.pem".into()),
                ..Default::default()
            },
            compression: "gzip".into(),
            headers: [("Content-Type".to_string(), "text/plain".to_string())].into(),
            external_labels: [("1bad".to_string(), "x".to_string())].into(),
            protobuf_message: "v3".into(),
            ..Config::default()
        };
        let errors = bad.validate();
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(errors.iter().any(|e| e.contains("plaintext")));
        // The endpoint is checked apart, only for exporters a pipeline uses.
        assert!(
            Config::default().validate().is_empty(),
            "{:?}",
            Config::default().validate()
        );
        assert!(Config::default().endpoint_problems()[0].contains("endpoint is required"));
        let not_url = Config {
            endpoint: "prometheus:9090".into(),
            ..Config::default()
        };
        assert!(
            not_url.endpoint_problems()[0].contains("is not a valid http:// URL"),
            "{:?}",
            not_url.endpoint_problems()
        );
        let good = Config {
            endpoint: "http://prometheus:9090/api/v1/write".into(),
            ..Config::default()
        };
        assert!(good.endpoint_problems().is_empty());
        let socks = Config {
            proxy_url: "socks5://proxy:1080".into(),
            ..good.clone()
        };
        assert!(
            socks
                .validate()
                .iter()
                .any(|e| e.contains("http:// proxies")),
            "{:?}",
            socks.validate()
        );
    }

    #[test]
    fn disk_queue_by_storage_or_the_collectors_wal() {
        let endpoint = "http://127.0.0.1:9090/api/v1/write".to_string();
        let json = r#"{"endpoint": "http://127.0.0.1:9090/api/v1/write", "remote_write_queue": {"storage": "file_storage/q"}}"#;
        let stored: Config = serde_json::from_str(json).expect("parses");
        assert!(stored.validate().is_empty(), "{:?}", stored.validate());
        assert_eq!(
            stored.queue_config().storage.as_deref(),
            Some("file_storage/q")
        );
        assert_eq!(
            stored.queue_config().num_consumers,
            1,
            "a disk queue keeps the order too"
        );
        assert!(stored.wal_storage().is_none());

        // The Collector's keys, as its users write them.
        let json = r#"{"endpoint": "http://127.0.0.1:9090/api/v1/write",
            "wal": {"directory": "/var/lib/prw", "buffer_size": 100, "truncate_frequency": "45s", "lag_record_frequency": "15s"}}"#;
        let wal: Config = serde_json::from_str(json).expect("parses");
        assert!(wal.validate().is_empty(), "{:?}", wal.validate());
        let storage = wal
            .wal_storage()
            .expect("wal.directory puts the queue on disk");
        assert_eq!(storage.directory.as_deref(), Some("/var/lib/prw"));
        assert!(storage.create_directory && storage.fsync);
        assert!(storage.validate().is_empty());
        assert_eq!(wal.queue_config().storage, None);

        let bad = |c: Config, needle: &str| {
            let errors = c.validate();
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{needle:?} not in {errors:?}"
            );
        };
        let queue = |storage: &str, enabled: bool| RemoteWriteQueue {
            storage: Some(storage.into()),
            enabled,
            ..RemoteWriteQueue::default()
        };
        bad(
            Config {
                endpoint: endpoint.clone(),
                remote_write_queue: queue("memory", true),
                ..Config::default()
            },
            "not a file_storage extension id",
        );
        bad(
            Config {
                endpoint: endpoint.clone(),
                remote_write_queue: queue("file_storage", false),
                ..Config::default()
            },
            "needs remote_write_queue.enabled",
        );
        bad(
            Config {
                endpoint: endpoint.clone(),
                wal: Some(Wal::default()),
                ..Config::default()
            },
            "wal.directory is required",
        );
        let wal_dir = Some(Wal {
            directory: "/tmp/w".into(),
            ..Wal::default()
        });
        bad(
            Config {
                endpoint: endpoint.clone(),
                wal: wal_dir.clone(),
                remote_write_queue: queue("file_storage", true),
                ..Config::default()
            },
            "keep one",
        );
        bad(
            Config {
                endpoint,
                wal: wal_dir,
                remote_write_queue: RemoteWriteQueue {
                    enabled: false,
                    ..RemoteWriteQueue::default()
                },
                ..Config::default()
            },
            "wal needs",
        );
        assert!(
            serde_json::from_str::<Config>(r#"{"wal": {"dir": "/x"}}"#).is_err(),
            "unknown wal keys are refused"
        );
    }
}
