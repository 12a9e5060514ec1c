//! Config of the `kafka` receiver: the Collector's keys (contrib `kafkareceiver`, v0.162)
//! with its defaults, except `message_marking` (see [`MessageMarking`]).

use oxcol_core::kafka::{AuthConfig, ClientKeys, Encoding, MetadataConfig};
use oxcol_core::tls::TlsClientConfig;
use oxcol_core::{GoDuration, Signal};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Bootstrap brokers. Default `[localhost:9092]`.
    pub brokers: Vec<String>,
    /// Default `otel-collector`.
    pub client_id: String,
    /// Checked for form; librdkafka negotiates the protocol with the broker itself.
    pub protocol_version: String,
    pub resolve_canonical_bootstrap_servers_only: bool,
    pub auth: AuthConfig,
    pub tls: Option<TlsClientConfig>,
    pub metadata: MetadataConfig,
    pub rack_id: String,
    pub use_leader_epoch: bool,
    /// Default 9m (librdkafka's `connections.max.idle.ms`).
    pub conn_idle_timeout: GoDuration,
    /// Default 10s.
    pub session_timeout: GoDuration,
    /// Default 3s.
    pub heartbeat_interval: GoDuration,
    /// Consumer group. Default `otel-collector`.
    pub group_id: String,
    /// `latest` (default) or `earliest`: where a group without committed offsets starts.
    pub initial_offset: String,
    pub autocommit: AutoCommit,
    /// Default 1.
    pub min_fetch_size: i64,
    /// Default 1048576 (librdkafka has one per-partition fetch size: the larger of this and
    /// `max_partition_fetch_size` is used).
    pub default_fetch_size: i64,
    /// Default 1048576, as in the Collector (`fetch.max.bytes`; 0 = librdkafka's 50 MiB,
    /// which lets a consumer with a backlog hold tens of MiB of pre-fetched messages).
    pub max_fetch_size: i64,
    /// Default 250ms.
    pub max_fetch_wait: GoDuration,
    /// Default 1048576.
    pub max_partition_fetch_size: i64,
    /// `range` (default), `roundrobin` or `sticky` (librdkafka's cooperative-sticky).
    pub group_rebalance_strategy: String,
    /// The newer list form (Collector v0.162): strategies in order of preference, from
    /// `range`, `roundrobin`, `sticky`, `cooperative-sticky` (`sticky` is librdkafka's
    /// cooperative-sticky, which cannot be mixed with the eager ones). Default: none
    /// (librdkafka's `range,roundrobin`; the Collector's franz-go uses cooperative-sticky).
    pub group_rebalance_strategies: Vec<String>,
    /// `independent: true` (per-partition workers) is refused; `max_buffered_batches`
    /// (default 1) is checked.
    pub partition_processing: PartitionProcessing,
    /// Static group membership id. Default none.
    pub group_instance_id: String,
    pub metrics: TopicEncoding,
    pub traces: TopicEncoding,
    pub logs: TopicEncoding,
    /// Accepted so Collector configs decode; oxcol has no profiles signal.
    pub profiles: TopicEncoding,
    /// Older top-level topic of every signal whose own topics are not set.
    pub topic: Option<String>,
    /// Older top-level encoding of every signal whose own encoding is not set.
    pub encoding: Option<String>,
    pub message_marking: MessageMarking,
    pub header_extraction: HeaderExtraction,
    pub error_backoff: ErrorBackoff,
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
            session_timeout: GoDuration::from_secs(10),
            heartbeat_interval: GoDuration::from_secs(3),
            group_id: oxcol_core::kafka::DEFAULT_CLIENT_ID.to_string(),
            initial_offset: "latest".to_string(),
            autocommit: AutoCommit::default(),
            min_fetch_size: 1,
            default_fetch_size: 1_048_576,
            max_fetch_size: 1_048_576,
            max_fetch_wait: GoDuration::from_millis(250),
            max_partition_fetch_size: 1_048_576,
            group_rebalance_strategy: String::new(),
            group_rebalance_strategies: Vec::new(),
            partition_processing: PartitionProcessing::default(),
            group_instance_id: String::new(),
            metrics: TopicEncoding::default(),
            traces: TopicEncoding::default(),
            logs: TopicEncoding::default(),
            profiles: TopicEncoding::default(),
            topic: None,
            encoding: None,
            message_marking: MessageMarking::default(),
            header_extraction: HeaderExtraction::default(),
            error_backoff: ErrorBackoff::default(),
        }
    }
}

/// `partition_processing:` (Collector v0.162).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PartitionProcessing {
    pub independent: bool,
    pub max_buffered_batches: i64,
}

impl Default for PartitionProcessing {
    fn default() -> Self {
        PartitionProcessing {
            independent: false,
            max_buffered_batches: 1,
        }
    }
}

/// `autocommit:`. Offsets are committed only after the pipeline accepted the message
/// either way; `enable` chooses between a periodic commit of those offsets (every
/// `interval`) and a commit after each message.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AutoCommit {
    /// Default true.
    pub enable: bool,
    /// Default 1s.
    pub interval: GoDuration,
}

impl Default for AutoCommit {
    fn default() -> Self {
        AutoCommit {
            enable: true,
            interval: GoDuration::from_secs(1),
        }
    }
}

/// `metrics:`, `traces:`, `logs:`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TopicEncoding {
    /// Topics to consume; one starting with `^` is a regular expression. Default
    /// `otlp_metrics`, `otlp_spans`, `otlp_logs`.
    pub topics: Vec<String>,
    /// Deprecated (v0.142) single-topic spelling of `topics`.
    pub topic: Option<String>,
    /// `otlp_proto` (default) or `otlp_json`.
    pub encoding: Option<String>,
    /// Regular expressions of topics not to consume (only with a `^` topic).
    pub exclude_topics: Vec<String>,
    /// Deprecated (v0.142) single spelling of `exclude_topics`.
    pub exclude_topic: Option<String>,
}

/// `message_marking:` — when a message's offset may be committed.
///
/// The Collector's defaults are `after: false` (mark before the pipeline saw the message:
/// a crash or a refusal loses it) and `on_error: false`. oxcol defaults to `after: true`,
/// `on_error: false`, `on_permanent_error: true`: an offset is committed only once the
/// pipeline accepted the message, a retryable refusal re-delivers the same message (never
/// skipped), and only a permanent refusal (data the pipeline can never take) is skipped
/// and counted, like an undecodable message.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MessageMarking {
    /// Default true (the Collector: false).
    pub after: bool,
    /// Also mark a message the pipeline refused with a retryable error (skipping it).
    /// Default false.
    pub on_error: bool,
    /// Mark a message the pipeline refused permanently. Default true (the Collector:
    /// the value of `on_error`); false retries it forever, blocking its partition.
    pub on_permanent_error: bool,
}

impl Default for MessageMarking {
    fn default() -> Self {
        MessageMarking {
            after: true,
            on_error: false,
            on_permanent_error: true,
        }
    }
}

/// `error_backoff:` — the pauses between offers of a message the pipeline refused with a
/// retryable error (the Collector's `configretry` keys). Disabled by default, as in the
/// Collector; then oxcol pauses 100ms, doubling up to 5s. Enabled, the unset keys take
/// `configretry`'s defaults (5s, x1.5, 30s, jitter 0.5, 5m). After `max_elapsed_time`
/// (0 = never) the message is skipped if `message_marking.on_error` is true, else it keeps
/// being offered.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorBackoff {
    pub enabled: bool,
    pub initial_interval: GoDuration,
    pub randomization_factor: f64,
    pub multiplier: f64,
    pub max_interval: GoDuration,
    pub max_elapsed_time: GoDuration,
}

impl Default for ErrorBackoff {
    fn default() -> Self {
        ErrorBackoff {
            enabled: false,
            initial_interval: GoDuration::from_secs(5),
            randomization_factor: 0.5,
            multiplier: 1.5,
            max_interval: GoDuration::from_secs(30),
            max_elapsed_time: GoDuration::from_secs(300),
        }
    }
}

/// `header_extraction:` — Kafka headers copied into resource attributes
/// `kafka.header.<name>`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderExtraction {
    pub extract_headers: bool,
    pub headers: Vec<String>,
}

/// What one signal consumes, resolved from the per-signal and older keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalSource {
    pub topics: Vec<String>,
    pub exclude_topics: Vec<String>,
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

    fn signal_config(&self, signal: Signal) -> &TopicEncoding {
        match signal {
            Signal::Metrics => &self.metrics,
            Signal::Traces => &self.traces,
            Signal::Logs => &self.logs,
        }
    }

    /// The topics and excluded-topic patterns of `signal`.
    fn topics(&self, signal: Signal) -> (Vec<String>, Vec<String>) {
        let own = self.signal_config(signal);
        let topics = if !own.topics.is_empty() {
            own.topics.clone()
        } else if let Some(topic) = own.topic.clone().or_else(|| self.topic.clone()) {
            vec![topic]
        } else {
            vec![oxcol_core::kafka::default_topic(signal).to_string()]
        };
        let mut exclude_topics = own.exclude_topics.clone();
        exclude_topics.extend(own.exclude_topic.clone());
        (topics, exclude_topics)
    }

    /// The topics and encoding of `signal`.
    pub fn source(&self, signal: Signal) -> Result<SignalSource, String> {
        let own = self.signal_config(signal);
        let (topics, exclude_topics) = self.topics(signal);
        let encoding = own
            .encoding
            .as_deref()
            .or(self.encoding.as_deref())
            .unwrap_or("otlp_proto");
        Ok(SignalSource {
            topics,
            exclude_topics,
            encoding: Encoding::parse(encoding).map_err(|e| format!("{}: {e}", signal.name()))?,
        })
    }

    /// librdkafka's `partition.assignment.strategy` names of `group_rebalance_strategies`
    /// (or the older `group_rebalance_strategy`), in order, without repeats.
    fn assignment_strategies(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let named = self
            .group_rebalance_strategies
            .iter()
            .map(String::as_str)
            .chain(
                (!self.group_rebalance_strategy.is_empty())
                    .then_some(self.group_rebalance_strategy.as_str()),
            );
        for name in named {
            let strategy = match name {
                "range" => "range",
                "roundrobin" => "roundrobin",
                "sticky" | "cooperative-sticky" => "cooperative-sticky",
                _ => continue,
            };
            if !out.contains(&strategy) {
                out.push(strategy);
            }
        }
        out
    }

    pub fn validate(&self) -> Vec<String> {
        let mut errors = self.client().validate();
        if self.group_id.is_empty() {
            errors.push("group_id must not be empty".to_string());
        }
        if !["latest", "earliest"].contains(&self.initial_offset.as_str()) {
            errors.push(format!(
                "initial_offset should be one of 'latest' or 'earliest', not {:?}",
                self.initial_offset
            ));
        }
        if !["", "range", "roundrobin", "sticky"].contains(&self.group_rebalance_strategy.as_str())
        {
            errors.push(format!(
                "group_rebalance_strategy should be one of 'range', 'roundrobin' or 'sticky', not {:?}",
                self.group_rebalance_strategy
            ));
        }
        if !self.group_rebalance_strategy.is_empty() && !self.group_rebalance_strategies.is_empty()
        {
            errors.push(
                "group_rebalance_strategy and group_rebalance_strategies cannot both be set; keep group_rebalance_strategies"
                    .to_string(),
            );
        }
        let strategies = self.assignment_strategies();
        for strategy in &self.group_rebalance_strategies {
            if !["range", "roundrobin", "sticky", "cooperative-sticky"].contains(&strategy.as_str())
            {
                errors.push(format!(
                    "group_rebalance_strategies: {strategy:?} is not one of range, roundrobin, sticky, cooperative-sticky (balancer extensions are not supported)"
                ));
            }
        }
        if strategies.contains(&"cooperative-sticky") && strategies.len() > 1 {
            errors.push(
                "group_rebalance_strategies: cooperative-sticky (also what sticky means here) cannot be mixed with range or roundrobin in librdkafka; list one or the other"
                    .to_string(),
            );
        }
        if self.partition_processing.max_buffered_batches <= 0 {
            errors.push(
                "partition_processing.max_buffered_batches must be greater than zero".to_string(),
            );
        }
        if self.partition_processing.independent {
            errors.push(
                "partition_processing.independent: true is not supported by oxcol (its consumer hands partitions to the pipeline in order from one task); remove it"
                    .to_string(),
            );
        }
        if self.session_timeout.get() < std::time::Duration::from_secs(1) {
            errors.push("session_timeout must be at least 1s".to_string());
        }
        if self.heartbeat_interval.get().is_zero()
            || self.heartbeat_interval.get() >= self.session_timeout.get()
        {
            errors.push(
                "heartbeat_interval must be more than 0 and less than session_timeout".to_string(),
            );
        }
        if self.autocommit.enable && self.autocommit.interval.get().is_zero() {
            errors.push("autocommit.interval must be more than 0".to_string());
        }
        for (key, value) in [
            ("min_fetch_size", self.min_fetch_size),
            ("default_fetch_size", self.default_fetch_size),
            ("max_partition_fetch_size", self.max_partition_fetch_size),
        ] {
            if !(1..=1_000_000_000).contains(&value) {
                errors.push(format!(
                    "{key} must be between 1 and 1000000000, not {value}"
                ));
            }
        }
        if !(0..=2_147_483_135).contains(&self.max_fetch_size) {
            errors.push(format!(
                "max_fetch_size must be 0 (no limit) or a positive size, not {}",
                self.max_fetch_size
            ));
        }
        let backoff = &self.error_backoff;
        if !(0.0..=1.0).contains(&backoff.randomization_factor) {
            errors.push("error_backoff.randomization_factor must be between 0 and 1".to_string());
        }
        if backoff.multiplier < 1.0 {
            errors.push("error_backoff.multiplier must be at least 1".to_string());
        }
        if backoff.enabled && backoff.initial_interval.get().is_zero() {
            errors.push("error_backoff.initial_interval must be more than 0".to_string());
        }
        if self.header_extraction.extract_headers && self.header_extraction.headers.is_empty() {
            errors.push(
                "header_extraction.headers must name the headers to extract when extract_headers is true"
                    .to_string(),
            );
        }
        for signal in [Signal::Metrics, Signal::Traces, Signal::Logs] {
            let own = self.signal_config(signal);
            let name = signal.name();
            if own.topic.is_some() && !own.topics.is_empty() {
                errors.push(format!(
                    "{name}: set either topics or the deprecated topic, not both"
                ));
            }
            if own.exclude_topic.is_some() && !own.exclude_topics.is_empty() {
                errors.push(format!(
                    "{name}: set either exclude_topics or the deprecated exclude_topic, not both"
                ));
            }
            if let Err(e) = self.source(signal) {
                errors.push(e);
            }
            let (topics, exclude_topics) = self.topics(signal);
            for topic in &topics {
                if topic.is_empty() {
                    errors.push(format!("{name}.topics must not contain an empty topic"));
                } else if topic.starts_with('^')
                    && let Err(e) = regex::Regex::new(topic)
                {
                    errors.push(format!(
                        "{name}.topics: {topic:?} is not a valid regular expression: {e}"
                    ));
                }
            }
            if !exclude_topics.is_empty() {
                if !topics.iter().any(|t| t.starts_with('^')) {
                    errors.push(format!(
                        "{name}.exclude_topics is configured but none of the configured {name}.topics use a regex pattern (must start with '^')"
                    ));
                }
                for exclude in &exclude_topics {
                    if exclude.is_empty() {
                        errors.push(format!(
                            "{name}.exclude_topics contains an empty string, which would match all topics"
                        ));
                    } else if let Err(e) = regex::Regex::new(exclude) {
                        errors.push(format!(
                            "{name}.exclude_topics: {exclude:?} is not a valid regular expression: {e}"
                        ));
                    }
                }
            }
        }
        errors
    }

    /// The librdkafka consumer properties.
    pub fn consumer_properties(&self) -> Vec<(&'static str, String)> {
        let mut properties = self.client().properties();
        let millis = |d: GoDuration| d.get().as_millis().to_string();
        properties.extend([
            ("group.id", self.group_id.clone()),
            ("session.timeout.ms", millis(self.session_timeout)),
            ("heartbeat.interval.ms", millis(self.heartbeat_interval)),
            ("auto.offset.reset", self.initial_offset.clone()),
            // Offsets are stored by the receiver once the pipeline accepted a message,
            // never by librdkafka when it hands the message over.
            ("enable.auto.offset.store", "false".to_string()),
            ("enable.auto.commit", self.autocommit.enable.to_string()),
            ("fetch.min.bytes", self.min_fetch_size.to_string()),
            ("fetch.wait.max.ms", millis(self.max_fetch_wait)),
            (
                "max.partition.fetch.bytes",
                self.default_fetch_size
                    .max(self.max_partition_fetch_size)
                    .to_string(),
            ),
        ]);
        if self.autocommit.enable {
            properties.push(("auto.commit.interval.ms", millis(self.autocommit.interval)));
        }
        if self.max_fetch_size > 0 {
            properties.push(("fetch.max.bytes", self.max_fetch_size.to_string()));
        }
        let strategies = self.assignment_strategies();
        if !strategies.is_empty() {
            properties.push(("partition.assignment.strategy", strategies.join(",")));
        }
        if !self.group_instance_id.is_empty() {
            properties.push(("group.instance.id", self.group_instance_id.clone()));
        }
        properties
    }
}
