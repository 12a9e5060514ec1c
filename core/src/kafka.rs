//! The Kafka client keys shared by the `kafka` exporter and the `kafka` receiver (the
//! Collector's `configkafka.ClientConfig`): brokers, client id, SASL and TLS, metadata.
//!
//! This module only decodes, checks, and turns the keys into librdkafka properties (plain
//! `(name, value)` pairs); it does not link librdkafka, so `core` stays free of it. The
//! components hand the pairs to `rdkafka::ClientConfig::set`.
//!
//! It must never silently drop a setting: a key librdkafka cannot honour is a validation
//! error naming the key, never a key accepted and ignored.

use serde::Deserialize;

use crate::GoDuration;
use crate::tls::TlsClientConfig;

/// Default bootstrap broker of the Collector.
pub const DEFAULT_BROKER: &str = "localhost:9092";
/// Default client id (and consumer group) of the Collector.
pub const DEFAULT_CLIENT_ID: &str = "otel-collector";
/// Encodings oxcol reads and writes on Kafka.
pub const ENCODINGS: &[&str] = &["otlp_proto", "otlp_json"];
/// Default topics by signal, as in the Collector.
pub const DEFAULT_TRACES_TOPIC: &str = "otlp_spans";
pub const DEFAULT_METRICS_TOPIC: &str = "otlp_metrics";
pub const DEFAULT_LOGS_TOPIC: &str = "otlp_logs";

/// The wire format of a Kafka message value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// An OTLP `Export*ServiceRequest`, protobuf.
    OtlpProto,
    /// The same request in the OTLP/JSON mapping.
    OtlpJson,
}

impl Encoding {
    /// Parses an `encoding:` value; the error lists what oxcol supports.
    pub fn parse(text: &str) -> Result<Encoding, String> {
        match text {
            "otlp_proto" => Ok(Encoding::OtlpProto),
            "otlp_json" => Ok(Encoding::OtlpJson),
            other => Err(format!(
                "encoding {other:?} is not supported; use one of {}",
                ENCODINGS.join(", ")
            )),
        }
    }
}

/// `auth:` (the Collector's `configkafka.AuthenticationConfig`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Deprecated spelling of `sasl: {mechanism: PLAIN}`.
    pub plain_text: Option<PlainTextConfig>,
    pub sasl: Option<SaslConfig>,
    /// Not supported (librdkafka's GSSAPI needs Cyrus SASL): a validation error.
    pub kerberos: Option<serde_json::Value>,
    /// Deprecated place of `tls:`; used when the top-level `tls` is absent.
    pub tls: Option<TlsClientConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PlainTextConfig {
    pub username: String,
    pub password: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SaslConfig {
    pub username: String,
    pub password: String,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// SASL handshake version 0 or 1 (librdkafka negotiates; accepted for compatibility).
    pub version: i64,
    /// Not supported (AWS_MSK_IAM_OAUTHBEARER): a validation error when set.
    pub aws_msk: Option<serde_json::Value>,
    /// Not supported (OIDCFILE): a validation error when set.
    pub oidc_file: Option<serde_json::Value>,
}

/// `metadata:` (the Collector's `configkafka.MetadataConfig`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataConfig {
    /// Keep metadata of all topics. librdkafka always keeps what it needs; accepted.
    pub full: bool,
    /// Default 10m: librdkafka's `topic.metadata.refresh.interval.ms`.
    pub refresh_interval: GoDuration,
    pub retry: MetadataRetryConfig,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            full: true,
            refresh_interval: GoDuration::from_secs(600),
            retry: MetadataRetryConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataRetryConfig {
    /// Default 3. librdkafka retries metadata requests on its own; accepted.
    pub max: i64,
    /// Default 250ms: librdkafka's `retry.backoff.ms`.
    pub backoff: GoDuration,
}

impl Default for MetadataRetryConfig {
    fn default() -> Self {
        MetadataRetryConfig {
            max: 3,
            backoff: GoDuration::from_millis(250),
        }
    }
}

/// The client keys of one component, borrowed from its config (the exporter and the
/// receiver each list them as their own fields, since `deny_unknown_fields` forbids
/// `flatten`).
#[derive(Clone, Copy, Debug)]
pub struct ClientKeys<'a> {
    pub brokers: &'a [String],
    pub client_id: &'a str,
    pub protocol_version: &'a str,
    pub resolve_canonical_bootstrap_servers_only: bool,
    pub auth: &'a AuthConfig,
    pub tls: Option<&'a TlsClientConfig>,
    pub metadata: &'a MetadataConfig,
    pub rack_id: &'a str,
    pub use_leader_epoch: bool,
    /// Idle broker connections are closed after this (librdkafka's
    /// `connections.max.idle.ms`). The Collector's default: 9m.
    pub conn_idle_timeout: GoDuration,
}

/// The Collector's default `conn_idle_timeout`.
pub const DEFAULT_CONN_IDLE_TIMEOUT: GoDuration = GoDuration::from_secs(9 * 60);

impl ClientKeys<'_> {
    /// Every problem with the client keys, each with the fix.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.brokers.is_empty() {
            errors.push("brokers must list at least one host:port of a Kafka broker".to_string());
        }
        for broker in self.brokers {
            if !broker_address_ok(broker) {
                errors.push(format!(
                    "brokers: {broker:?} is not a host:port (for example kafka-0:9092)"
                ));
            }
        }
        if !self.protocol_version.is_empty() && !protocol_version_ok(self.protocol_version) {
            errors.push(format!(
                "protocol_version {:?} is not a Kafka version such as 2.1.0 or 3.7.0",
                self.protocol_version
            ));
        }
        if !self.use_leader_epoch {
            errors.push(
                "use_leader_epoch: false is not supported (librdkafka always uses leader epochs); remove the key"
                    .to_string(),
            );
        }
        if self.conn_idle_timeout.get().is_zero() {
            errors.push(
                "conn_idle_timeout must be more than 0 (the Collector's default is 9m)".to_string(),
            );
        }
        if self.metadata.refresh_interval.get().is_zero() {
            errors.push("metadata.refresh_interval must be more than 0".to_string());
        }
        errors.extend(validate_auth(self.auth));
        if let Some(tls) = self.tls() {
            errors.extend(validate_tls(tls));
        }
        errors
    }

    /// The TLS settings in force: top-level `tls`, else the deprecated `auth.tls`.
    fn tls(&self) -> Option<&TlsClientConfig> {
        self.tls.or(self.auth.tls.as_ref())
    }

    /// The librdkafka properties of these keys (call after `validate` found nothing).
    pub fn properties(&self) -> Vec<(&'static str, String)> {
        let mut properties = vec![
            ("bootstrap.servers", self.brokers.join(",")),
            ("client.id", self.client_id.to_string()),
            (
                "topic.metadata.refresh.interval.ms",
                self.metadata.refresh_interval.get().as_millis().to_string(),
            ),
            (
                "retry.backoff.ms",
                self.metadata
                    .retry
                    .backoff
                    .get()
                    .as_millis()
                    .max(1)
                    .to_string(),
            ),
        ];
        if self.resolve_canonical_bootstrap_servers_only {
            properties.push((
                "client.dns.lookup",
                "resolve_canonical_bootstrap_servers_only".to_string(),
            ));
        }
        if !self.rack_id.is_empty() {
            properties.push(("client.rack", self.rack_id.to_string()));
        }
        properties.push((
            "connections.max.idle.ms",
            self.conn_idle_timeout.get().as_millis().to_string(),
        ));
        let tls = self.tls().filter(|t| !t.insecure);
        let sasl = sasl_of(self.auth);
        let protocol = match (sasl.is_some(), tls.is_some()) {
            (false, false) => "plaintext",
            (false, true) => "ssl",
            (true, false) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        properties.push(("security.protocol", protocol.to_string()));
        if let Some((mechanism, username, password)) = sasl {
            properties.push(("sasl.mechanism", mechanism.to_string()));
            properties.push(("sasl.username", username.to_string()));
            properties.push(("sasl.password", password.to_string()));
        }
        if let Some(tls) = tls {
            let pairs = [
                ("ssl.ca.location", &tls.ca_file),
                ("ssl.ca.pem", &tls.ca_pem),
                ("ssl.certificate.location", &tls.cert_file),
                ("ssl.certificate.pem", &tls.cert_pem),
                ("ssl.key.location", &tls.key_file),
                ("ssl.key.pem", &tls.key_pem),
            ];
            for (name, value) in pairs {
                if let Some(value) = value {
                    properties.push((name, value.clone()));
                }
            }
            if tls.insecure_skip_verify {
                properties.push(("enable.ssl.certificate.verification", "false".to_string()));
                properties.push(("ssl.endpoint.identification.algorithm", "none".to_string()));
            }
        }
        properties
    }
}

/// (mechanism, username, password) of `auth.sasl` or the deprecated `auth.plain_text`.
fn sasl_of(auth: &AuthConfig) -> Option<(&str, &str, &str)> {
    if let Some(sasl) = &auth.sasl {
        return Some((&sasl.mechanism, &sasl.username, &sasl.password));
    }
    auth.plain_text
        .as_ref()
        .map(|p| ("PLAIN", p.username.as_str(), p.password.as_str()))
}

fn validate_auth(auth: &AuthConfig) -> Vec<String> {
    let mut errors = Vec::new();
    if auth.kerberos.is_some() {
        errors.push(
            "auth.kerberos is not supported by oxcol (librdkafka's GSSAPI needs Cyrus SASL); use auth.sasl with PLAIN or SCRAM"
                .to_string(),
        );
    }
    if auth.sasl.is_some() && auth.plain_text.is_some() {
        errors.push("auth: set either sasl or the deprecated plain_text, not both".to_string());
    }
    if let Some(sasl) = &auth.sasl {
        match sasl.mechanism.as_str() {
            "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512" => {
                if sasl.username.is_empty() {
                    errors.push("auth.sasl.username is required".to_string());
                }
                if sasl.password.is_empty() {
                    errors.push("auth.sasl.password is required".to_string());
                }
            }
            "AWS_MSK_IAM_OAUTHBEARER" | "OIDCFILE" => errors.push(format!(
                "auth.sasl.mechanism {:?} is not supported by oxcol; use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                sasl.mechanism
            )),
            other => errors.push(format!(
                "auth.sasl.mechanism {other:?} is not known; use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
            )),
        }
        if !(0..=1).contains(&sasl.version) {
            errors.push(format!(
                "auth.sasl.version must be 0 or 1, not {}",
                sasl.version
            ));
        }
        if sasl.aws_msk.is_some() || sasl.oidc_file.is_some() {
            errors.push(
                "auth.sasl.aws_msk and auth.sasl.oidc_file are not supported by oxcol; remove them"
                    .to_string(),
            );
        }
    }
    if let Some(plain) = &auth.plain_text
        && (plain.username.is_empty() || plain.password.is_empty())
    {
        errors.push("auth.plain_text needs both username and password".to_string());
    }
    errors
}

/// TLS keys librdkafka (OpenSSL) has no property for are refused by name.
fn validate_tls(tls: &TlsClientConfig) -> Vec<String> {
    let mut errors = Vec::new();
    let unsupported = [
        ("server_name_override", tls.server_name_override.is_some()),
        ("min_version", tls.min_version.is_some()),
        ("max_version", tls.max_version.is_some()),
        ("reload_interval", tls.reload_interval.is_some()),
        (
            "include_system_ca_certs_pool",
            tls.include_system_ca_certs_pool.is_some(),
        ),
        ("cipher_suites", !tls.cipher_suites.is_empty()),
        ("curve_preferences", !tls.curve_preferences.is_empty()),
    ];
    for (key, set) in unsupported {
        if set {
            errors.push(format!(
                "tls.{key} is not supported for Kafka (librdkafka has no such setting); remove it"
            ));
        }
    }
    if tls.cert_file.is_some() != tls.key_file.is_some() && tls.cert_pem.is_none() {
        errors.push("tls: cert_file and key_file must be set together".to_string());
    }
    errors
}

/// `host:port` with a numeric port (IPv6 hosts in brackets).
fn broker_address_ok(address: &str) -> bool {
    let Some((host, port)) = address.rsplit_once(':') else {
        return false;
    };
    !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// `major.minor[.patch[.build]]`, all numbers.
fn protocol_version_ok(version: &str) -> bool {
    let parts: Vec<&str> = version.split('.').collect();
    (2..=4).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Signals' defaults: the topic of `signal` when none is configured.
pub fn default_topic(signal: crate::Signal) -> &'static str {
    match signal {
        crate::Signal::Metrics => DEFAULT_METRICS_TOPIC,
        crate::Signal::Traces => DEFAULT_TRACES_TOPIC,
        crate::Signal::Logs => DEFAULT_LOGS_TOPIC,
    }
}

/// The default broker list.
pub fn default_brokers() -> Vec<String> {
    vec![DEFAULT_BROKER.to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<'a>(
        brokers: &'a [String],
        auth: &'a AuthConfig,
        tls: Option<&'a TlsClientConfig>,
        metadata: &'a MetadataConfig,
    ) -> ClientKeys<'a> {
        ClientKeys {
            brokers,
            client_id: DEFAULT_CLIENT_ID,
            protocol_version: "",
            resolve_canonical_bootstrap_servers_only: false,
            auth,
            tls,
            metadata,
            rack_id: "",
            use_leader_epoch: true,
            conn_idle_timeout: DEFAULT_CONN_IDLE_TIMEOUT,
        }
    }

    fn property<'a>(properties: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        properties
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn plaintext_by_default_and_sasl_over_tls_when_both_are_set() {
        let brokers = default_brokers();
        let metadata = MetadataConfig::default();
        let auth = AuthConfig::default();
        let plain = keys(&brokers, &auth, None, &metadata);
        assert!(plain.validate().is_empty(), "{:?}", plain.validate());
        let properties = plain.properties();
        assert_eq!(
            property(&properties, "bootstrap.servers"),
            Some("localhost:9092")
        );
        assert_eq!(
            property(&properties, "security.protocol"),
            Some("plaintext")
        );
        assert_eq!(
            property(&properties, "topic.metadata.refresh.interval.ms"),
            Some("600000")
        );

        let auth = AuthConfig {
            sasl: Some(SaslConfig {
                username: "u".into(),
                password: "p".into(),
                mechanism: "SCRAM-SHA-512".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let tls = TlsClientConfig {
            ca_file: Some("/ca.pem".into()),
            ..Default::default()
        };
        let secure = keys(&brokers, &auth, Some(&tls), &metadata);
        assert!(secure.validate().is_empty(), "{:?}", secure.validate());
        let properties = secure.properties();
        assert_eq!(property(&properties, "security.protocol"), Some("sasl_ssl"));
        assert_eq!(
            property(&properties, "sasl.mechanism"),
            Some("SCRAM-SHA-512")
        );
        assert_eq!(property(&properties, "ssl.ca.location"), Some("/ca.pem"));

        // `tls: {insecure: true}` is plaintext, as configtls reads it.
        let insecure = TlsClientConfig {
            insecure: true,
            ..Default::default()
        };
        let auth = AuthConfig::default();
        let properties = keys(&brokers, &auth, Some(&insecure), &metadata).properties();
        assert_eq!(
            property(&properties, "security.protocol"),
            Some("plaintext")
        );
    }

    #[test]
    fn validation_reports_every_problem_with_its_key() {
        let brokers = vec!["no-port".to_string(), "ok:9092".to_string()];
        let metadata = MetadataConfig::default();
        let auth = AuthConfig {
            sasl: Some(SaslConfig {
                mechanism: "GSSAPI".into(),
                version: 3,
                ..Default::default()
            }),
            kerberos: Some(serde_json::json!({})),
            ..Default::default()
        };
        let tls = TlsClientConfig {
            server_name_override: Some("x".into()),
            ..Default::default()
        };
        let mut bad = keys(&brokers, &auth, Some(&tls), &metadata);
        bad.protocol_version = "latest";
        bad.use_leader_epoch = false;
        let errors = bad.validate().join("\n");
        for needle in [
            "\"no-port\"",
            "protocol_version",
            "use_leader_epoch",
            "kerberos",
            "GSSAPI",
            "auth.sasl.version",
            "tls.server_name_override",
        ] {
            assert!(errors.contains(needle), "{needle} missing in:\n{errors}");
        }
        assert!(!errors.contains("ok:9092"), "{errors}");
        let empty: Vec<String> = Vec::new();
        let auth = AuthConfig::default();
        assert!(keys(&empty, &auth, None, &metadata).validate()[0].contains("brokers must list"));
    }

    #[test]
    fn encodings_other_than_otlp_are_refused_with_the_supported_list() {
        assert_eq!(Encoding::parse("otlp_json"), Ok(Encoding::OtlpJson));
        let error = Encoding::parse("jaeger_proto").unwrap_err();
        assert!(error.contains("otlp_proto, otlp_json"), "{error}");
    }
}
