//! Config of the `kafka` exporter: the Collector's keys (contrib `kafkaexporter`, v0.162)
//! with its defaults, except `producer.required_acks` (see [`ProducerConfig`]).

use oxcol_core::kafka::{AuthConfig, ClientKeys, Encoding, MetadataConfig};
use oxcol_core::tls::TlsClientConfig;
use oxcol_core::{GoDuration, Signal};
use serde::{Deserialize, Deserializer};

use crate::queue::{QueueConfig, RetryConfig};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Bootstrap brokers. Default `[localhost:9092]`.
    pub brokers: Vec<String>,
    /// Client id advertised to Kafka. Default `otel-collector`.
    pub client_id: String,
    /// Checked for form; librdkafka negotiates the protocol with the broker itself.
    pub protocol_version: String,
    pub resolve_canonical_bootstrap_servers_only: bool,
    pub auth: AuthConfig,
    pub tls: Option<TlsClientConfig>,
    pub metadata: MetadataConfig,
    pub rack_id: String,
    /// Default true; false is refused (librdkafka always uses leader epochs).
    pub use_leader_epoch: bool,
    /// Default 9m (librdkafka's `connections.max.idle.ms`).
    pub conn_idle_timeout: GoDuration,
    /// Longest wait for the brokers to acknowledge one message (librdkafka's
    /// `message.timeout.ms`); 0 = no limit. Default 5s.
    pub timeout: GoDuration,
    pub sending_queue: QueueConfig,
    pub retry_on_failure: RetryConfig,
    pub producer: ProducerConfig,
    pub metrics: SignalConfig,
    pub traces: SignalConfig,
    pub logs: SignalConfig,
    /// Accepted so Collector configs decode; oxcol has no profiles signal.
    pub profiles: SignalConfig,
    /// Deprecated (v0.124): the topic of every signal whose own `topic` is not set.
    pub topic: Option<String>,
    /// Deprecated (v0.124): the encoding of every signal whose own `encoding` is not set.
    pub encoding: Option<String>,
    /// Not supported (oxcol carries no client metadata): only an empty list is accepted.
    pub include_metadata_keys: Vec<String>,
    /// Not supported: only an empty value is accepted.
    pub topic_from_attribute: String,
    /// One message per trace, keyed by the trace id (hex), so a trace stays on one partition.
    pub partition_traces_by_id: bool,
    /// One message per resource, keyed by a hash of its attributes.
    pub partition_metrics_by_resource_attributes: bool,
    /// One message per resource, keyed by a hash of its attributes.
    pub partition_logs_by_resource_attributes: bool,
    /// Not supported: only false is accepted.
    pub partition_logs_by_trace_id: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            brokers: oxcol_core::kafka::default_brokers(),
            client_id: oxcol_core::kafka::DEFAULT_CLIENT_ID.to_string(),
            protocol_version: String::new(),
            resolve_canonical_bootstrap_servers_only: false,
            auth: AuthConfig::default(),
            tls: None,
            metadata: MetadataConfig::default(),
            rack_id: String::new(),
            use_leader_epoch: true,
            conn_idle_timeout: oxcol_core::kafka::DEFAULT_CONN_IDLE_TIMEOUT,
            timeout: GoDuration::from_secs(5),
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
            producer: ProducerConfig::default(),
            metrics: SignalConfig::default(),
            traces: SignalConfig::default(),
            logs: SignalConfig::default(),
            profiles: SignalConfig::default(),
            topic: None,
            encoding: None,
            include_metadata_keys: Vec::new(),
            topic_from_attribute: String::new(),
            partition_traces_by_id: false,
            partition_metrics_by_resource_attributes: false,
            partition_logs_by_resource_attributes: false,
            partition_logs_by_trace_id: false,
        }
    }
}

/// `metrics:`, `traces:`, `logs:` — where and how one signal is written.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SignalConfig {
    /// Default `otlp_metrics`, `otlp_spans`, `otlp_logs` (or the top-level `topic`).
    pub topic: Option<String>,
    /// Not supported (oxcol carries no client metadata): only empty is accepted.
    pub topic_from_metadata_key: String,
    /// `otlp_proto` (default, or the top-level `encoding`) or `otlp_json`.
    pub encoding: Option<String>,
}

/// `producer:`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerConfig {
    /// Largest message value. Default 1000000. Bigger batches are split.
    pub max_message_bytes: usize,
    /// `all` (or -1), 1 or 0. The Collector's default is 1 (leader only); oxcol's is
    /// `all` with the idempotent producer, so that a batch counts as sent only once every
    /// in-sync replica has it. Any other value turns idempotence off.
    #[serde(deserialize_with = "required_acks")]
    pub required_acks: i64,
    /// `none` (default), `gzip`, `snappy`, `lz4`, `zstd`.
    pub compression: String,
    pub compression_params: CompressionParams,
    /// Most messages in one produce request; 0 = librdkafka's default. Default 0.
    pub flush_max_messages: usize,
    /// Let the broker create a missing topic on first produce. Default true.
    pub allow_auto_topic_creation: bool,
    /// How long messages wait to fill a batch (librdkafka's `linger.ms`). Default 10ms,
    /// the Collector's.
    pub linger: GoDuration,
    /// The Collector's cap on one produce request (franz-go's BrokerMaxWriteBytes; default
    /// and minimum 104857600). Checked (at least `max_message_bytes`), no other effect:
    /// librdkafka bounds a request by `message.max.bytes`, set from `max_message_bytes`.
    pub max_broker_write_bytes: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            max_message_bytes: 1_000_000,
            required_acks: -1,
            compression: "none".to_string(),
            compression_params: CompressionParams::default(),
            flush_max_messages: 0,
            allow_auto_topic_creation: true,
            linger: GoDuration::from_millis(10),
            max_broker_write_bytes: 104_857_600,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionParams {
    /// Codec level (librdkafka's `compression.level`); 0 = the codec's default.
    pub level: i64,
}

/// `required_acks`: `all` or a number.
fn required_acks<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Acks {
        Number(i64),
        Text(String),
    }
    match Acks::deserialize(d)? {
        Acks::Number(n) => Ok(n),
        Acks::Text(t) if t == "all" => Ok(-1),
        Acks::Text(t) => t.parse::<i64>().map_err(|_| {
            serde::de::Error::custom(format!("required_acks {t:?} is not one of all, -1, 0, 1"))
        }),
    }
}

/// Where and how one signal is written, resolved from the per-signal and deprecated
/// top-level keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalTarget {
    pub topic: String,
    pub encoding: Encoding,
}

impl Config {
    pub(crate) fn client(&self) -> ClientKeys<'_> {
        ClientKeys {
            brokers: &self.brokers,
            client_id: &self.client_id,
            protocol_version: &self.protocol_version,
            resolve_canonical_bootstrap_servers_only: self.resolve_canonical_bootstrap_servers_only,
            auth: &self.auth,
            tls: self.tls.as_ref(),
            metadata: &self.metadata,
            rack_id: &self.rack_id,
            use_leader_epoch: self.use_leader_epoch,
            conn_idle_timeout: self.conn_idle_timeout,
        }
    }

    fn signal_config(&self, signal: Signal) -> &SignalConfig {
        match signal {
            Signal::Metrics => &self.metrics,
            Signal::Traces => &self.traces,
            Signal::Logs => &self.logs,
        }
    }

    /// The topic and encoding of `signal`: its own keys, else the deprecated top-level
    /// ones, else the Collector's defaults.
    pub fn target(&self, signal: Signal) -> Result<SignalTarget, String> {
        let own = self.signal_config(signal);
        let topic = own
            .topic
            .clone()
            .or_else(|| self.topic.clone())
            .unwrap_or_else(|| oxcol_core::kafka::default_topic(signal).to_string());
        let encoding = own
            .encoding
            .as_deref()
            .or(self.encoding.as_deref())
            .unwrap_or("otlp_proto");
        Ok(SignalTarget {
            topic,
            encoding: Encoding::parse(encoding).map_err(|e| format!("{}: {e}", signal.name()))?,
        })
    }

    pub fn validate(&self) -> Vec<String> {
        let mut errors = self.client().validate();
        for signal in [Signal::Metrics, Signal::Traces, Signal::Logs] {
            match self.target(signal) {
                Ok(target) if target.topic.is_empty() => {
                    errors.push(format!("{}.topic must not be empty", signal.name()))
                }
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
            if !self
                .signal_config(signal)
                .topic_from_metadata_key
                .is_empty()
            {
                errors.push(format!(
                    "{}.topic_from_metadata_key is not supported by oxcol (no client metadata reaches exporters); remove it",
                    signal.name()
                ));
            }
        }
        if !self.include_metadata_keys.is_empty() {
            errors.push("include_metadata_keys is not supported by oxcol (no client metadata reaches exporters); remove it".to_string());
        }
        if !self.topic_from_attribute.is_empty() {
            errors.push(
                "topic_from_attribute is not supported by oxcol yet; route with the routing connector to kafka exporters with fixed topics".to_string(),
            );
        }
        if self.partition_logs_by_trace_id {
            errors.push(
                "partition_logs_by_trace_id is not supported by oxcol yet; use partition_logs_by_resource_attributes".to_string(),
            );
        }
        let producer = &self.producer;
        if !(-1..=1).contains(&producer.required_acks) {
            errors.push(format!(
                "producer.required_acks must be all (-1), 0 or 1, not {}",
                producer.required_acks
            ));
        }
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&producer.compression.as_str()) {
            errors.push(format!(
                "producer.compression {:?} is not one of none, gzip, snappy, lz4, zstd",
                producer.compression
            ));
        }
        if producer.max_message_bytes < 1000 {
            errors.push(format!(
                "producer.max_message_bytes must be at least 1000 (librdkafka's minimum), not {}",
                producer.max_message_bytes
            ));
        }
        if producer.compression_params.level != 0 && producer.compression == "none" {
            errors
                .push("producer.compression_params.level needs a producer.compression".to_string());
        }
        if producer.flush_max_messages > 1_000_000 {
            errors.push("producer.flush_max_messages must be at most 1000000".to_string());
        }
        if producer.max_broker_write_bytes < producer.max_message_bytes {
            errors.push(format!(
                "producer.max_broker_write_bytes ({}) must be at least producer.max_message_bytes ({})",
                producer.max_broker_write_bytes, producer.max_message_bytes
            ));
        }
        if producer.linger.get() > std::time::Duration::from_secs(900) {
            errors.push("producer.linger must be at most 15m (librdkafka's limit)".to_string());
        }
        errors.extend(self.sending_queue.validate());
        errors.extend(self.retry_on_failure.validate());
        errors
    }

    /// The librdkafka producer properties.
    pub fn producer_properties(&self) -> Vec<(&'static str, String)> {
        let mut properties = self.client().properties();
        let producer = &self.producer;
        let acks = if producer.required_acks == -1 {
            "all".to_string()
        } else {
            producer.required_acks.to_string()
        };
        properties.push(("acks", acks));
        properties.push((
            "enable.idempotence",
            (producer.required_acks == -1).to_string(),
        ));
        properties.push(("compression.codec", producer.compression.clone()));
        if producer.compression_params.level != 0 {
            properties.push((
                "compression.level",
                producer.compression_params.level.to_string(),
            ));
        }
        // The request may carry a little framing beyond the largest value.
        properties.push((
            "message.max.bytes",
            (producer.max_message_bytes + 512).to_string(),
        ));
        if producer.flush_max_messages > 0 {
            properties.push((
                "batch.num.messages",
                producer.flush_max_messages.to_string(),
            ));
        }
        properties.push(("linger.ms", producer.linger.get().as_millis().to_string()));
        properties.push((
            "allow.auto.create.topics",
            producer.allow_auto_topic_creation.to_string(),
        ));
        properties.push((
            "message.timeout.ms",
            self.timeout.get().as_millis().to_string(),
        ));
        properties
    }
}
