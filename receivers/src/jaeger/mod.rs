//! `jaeger` receiver: Jaeger spans over gRPC (`jaeger.api_v2.CollectorService/PostSpans`,
//! default 127.0.0.1:14250), Thrift over HTTP (`POST /api/traces`, 127.0.0.1:14268) and
//! the agent's Thrift UDP protocols (compact 127.0.0.1:6831, binary 127.0.0.1:6832),
//! translated to OTLP traces with the Collector's rules (`translate.rs`).
//!
//! Keys and defaults are those of the Collector's `receiver/jaegerreceiver`; a protocol is
//! on when its key is present (with no value: its defaults). gRPC and HTTP answer success
//! only after the pipelines accepted the spans; UDP has no answer, so spans the pipeline
//! refuses after a packet arrived are counted (`otelcol_receiver_refused_spans`) and lost.

mod grpc;
mod http;
pub mod model;
pub mod thrift;
pub mod translate;
mod udp;

use std::net::SocketAddr;
use std::sync::Arc;

use oxcol_core::auth::{AuthSettings, ServerAuthenticator};
use oxcol_core::telemetry::{ReceiverCounters, Registry};
use oxcol_core::tls::TlsServerConfig;
use oxcol_core::{Batch, Consumers, GoDuration, Refusal, Signal};
use serde::{Deserialize, Deserializer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::otlp::KeepaliveConfig;
use crate::server::{
    check_body_keys, check_security, enabled_with_defaults, resolve_authenticator,
};

pub const TYPE: &str = "jaeger";
pub const ALIASES: &[&str] = &["jaeger"];

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub protocols: Protocols,
    /// Removed from the Collector's jaeger receiver (use the `jaegerremotesampling`
    /// extension); kept here only to refuse it with that advice.
    #[serde(default)]
    pub remote_sampling: Option<serde::de::IgnoredAny>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Protocols {
    #[serde(deserialize_with = "enabled_with_defaults")]
    pub grpc: Option<GrpcConfig>,
    #[serde(deserialize_with = "enabled_with_defaults")]
    pub thrift_http: Option<ThriftHttpConfig>,
    #[serde(deserialize_with = "compact_with_defaults")]
    pub thrift_compact: Option<UdpConfig>,
    #[serde(deserialize_with = "binary_with_defaults")]
    pub thrift_binary: Option<UdpConfig>,
}

/// The Collector's gRPC server settings (configgrpc), default endpoint 127.0.0.1:14250.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    pub endpoint: String,
    /// Only `tcp`.
    pub transport: String,
    /// Largest request accepted, after decompression. Default 4 MiB.
    pub max_recv_msg_size_mib: usize,
    /// Concurrent streams per connection; 0 = oxcol's bound (200).
    pub max_concurrent_streams: u32,
    pub read_buffer_size: Option<usize>,
    pub write_buffer_size: Option<usize>,
    pub keepalive: Option<KeepaliveConfig>,
    pub include_metadata: bool,
    pub tls: Option<TlsServerConfig>,
    pub auth: Option<AuthSettings>,
    /// oxcol key: connections served at once. Default 1024.
    pub max_connections: Option<usize>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "127.0.0.1:14250".to_string(),
            transport: "tcp".to_string(),
            max_recv_msg_size_mib: 4,
            max_concurrent_streams: 0,
            read_buffer_size: None,
            write_buffer_size: None,
            keepalive: None,
            include_metadata: false,
            tls: None,
            auth: None,
            max_connections: None,
        }
    }
}

/// The Collector's HTTP server settings (confighttp) that apply to `POST /api/traces`,
/// default endpoint 127.0.0.1:14268.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ThriftHttpConfig {
    pub endpoint: String,
    /// Largest request body. Default 20 MiB (confighttp).
    pub max_request_body_size: usize,
    pub include_metadata: bool,
    pub tls: Option<TlsServerConfig>,
    pub auth: Option<AuthSettings>,
    pub response_headers: std::collections::BTreeMap<String, String>,
    /// Cross-origin requests from browsers, as on the otlp receiver. Default: off.
    pub cors: Option<crate::otlp::cors::CorsConfig>,
    /// Accepted request encodings. Default: gzip, zstd, deflate (and identity).
    pub compression_algorithms: Option<Vec<String>>,
    /// Deadline for reading one request body. Default: none.
    pub read_timeout: Option<GoDuration>,
    /// Deadline for a request's headers (and a TLS handshake). Default 10s.
    pub read_header_timeout: Option<GoDuration>,
    pub write_timeout: Option<GoDuration>,
    pub idle_timeout: Option<GoDuration>,
    /// oxcol key: connections served at once. Default 1024.
    pub max_connections: Option<usize>,
}

impl Default for ThriftHttpConfig {
    fn default() -> Self {
        ThriftHttpConfig {
            endpoint: "127.0.0.1:14268".to_string(),
            max_request_body_size: 20 << 20,
            include_metadata: false,
            tls: None,
            auth: None,
            response_headers: Default::default(),
            cors: None,
            compression_algorithms: None,
            read_timeout: None,
            read_header_timeout: None,
            write_timeout: None,
            idle_timeout: None,
            max_connections: None,
        }
    }
}

/// Default endpoints of the UDP protocols.
pub const COMPACT_ENDPOINT: &str = "127.0.0.1:6831";
pub const BINARY_ENDPOINT: &str = "127.0.0.1:6832";

fn udp_with_defaults<'de, D: Deserializer<'de>>(
    d: D,
    endpoint: &str,
) -> Result<Option<UdpConfig>, D::Error> {
    let mut config = Option::<UdpConfig>::deserialize(d)?.unwrap_or_default();
    if config.endpoint.is_empty() {
        config.endpoint = endpoint.to_string();
    }
    Ok(Some(config))
}

fn compact_with_defaults<'de, D: Deserializer<'de>>(d: D) -> Result<Option<UdpConfig>, D::Error> {
    udp_with_defaults(d, COMPACT_ENDPOINT)
}

fn binary_with_defaults<'de, D: Deserializer<'de>>(d: D) -> Result<Option<UdpConfig>, D::Error> {
    udp_with_defaults(d, BINARY_ENDPOINT)
}

/// A UDP agent protocol (`thrift_compact`, `thrift_binary`). An absent endpoint is the
/// protocol's default (127.0.0.1:6831, 127.0.0.1:6832).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UdpConfig {
    pub endpoint: String,
    /// Packets waiting for a worker; more are dropped (and counted). Default 1000.
    pub queue_size: usize,
    /// Largest packet; larger ones are dropped (and counted). Default 65000.
    pub max_packet_size: usize,
    /// Tasks decoding and delivering packets. Default 10.
    pub workers: usize,
    /// SO_RCVBUF of the socket; 0 = the system default. Default 0.
    pub socket_buffer_size: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            endpoint: String::new(),
            queue_size: 1000,
            max_packet_size: 65_000,
            workers: 10,
            socket_buffer_size: 0,
        }
    }
}

/// The Collector's `checkPortFromEndpoint`: host:port with a port from 1 to 65535.
fn check_endpoint(protocol: &str, endpoint: &str, errors: &mut Vec<String>) {
    let problem = match crate::otlp::check_listen_endpoint(endpoint) {
        Err(problem) => Some(problem),
        Ok(())
            if endpoint
                .rsplit_once(':')
                .is_some_and(|(_, port)| port.parse::<u16>() == Ok(0)) =>
        {
            Some("port number must be between 1 and 65535".to_string())
        }
        Ok(()) => None,
    };
    if let Some(problem) = problem {
        errors.push(format!("protocols.{protocol}.endpoint {endpoint:?}: {problem} (write host:port, e.g. 127.0.0.1:14250 or :14250)"));
    }
}

fn check_udp(protocol: &str, udp: &UdpConfig, errors: &mut Vec<String>) {
    check_endpoint(protocol, &udp.endpoint, errors);
    // The Collector accepts 0 for these, which would drop every packet (oxcol takes a
    // queue_size of 0 as 1: the closest to Go's unbuffered channel).
    for (key, value) in [
        ("max_packet_size", udp.max_packet_size),
        ("workers", udp.workers),
    ] {
        if value == 0 {
            errors.push(format!(
                "protocols.{protocol}.{key} must be greater than 0 (0 would drop every packet)"
            ));
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let p = &self.protocols;
        if self.remote_sampling.is_some() {
            errors.push(
                "remote_sampling was removed from the Collector's jaeger receiver: serve sampling strategies with the jaegerremotesampling extension (not in oxcol) and delete this key"
                    .to_string(),
            );
        }
        if p.grpc.is_none()
            && p.thrift_http.is_none()
            && p.thrift_compact.is_none()
            && p.thrift_binary.is_none()
        {
            errors.push("protocols: must specify at least one protocol when using the Jaeger receiver (grpc, thrift_http, thrift_compact, thrift_binary)".to_string());
        }
        if let Some(grpc) = &p.grpc {
            check_endpoint("grpc", &grpc.endpoint, &mut errors);
            if grpc.transport != "tcp" {
                errors.push(format!(
                    "protocols.grpc.transport {:?}: only tcp is supported",
                    grpc.transport
                ));
            }
            if grpc.max_recv_msg_size_mib == 0 {
                errors.push(
                    "protocols.grpc.max_recv_msg_size_mib must be greater than 0".to_string(),
                );
            }
            check_security(
                "protocols.grpc.",
                &grpc.tls,
                &grpc.auth,
                grpc.max_connections,
                &mut errors,
            );
        }
        if let Some(http) = &p.thrift_http {
            check_endpoint("thrift_http", &http.endpoint, &mut errors);
            check_security(
                "protocols.thrift_http.",
                &http.tls,
                &http.auth,
                http.max_connections,
                &mut errors,
            );
            if let Some(cors) = &http.cors {
                errors.extend(
                    cors.validate()
                        .into_iter()
                        .map(|e| e.replace("protocols.http.", "protocols.thrift_http.")),
                );
            }
            check_body_keys(
                "protocols.thrift_http.",
                http.max_request_body_size,
                &http.compression_algorithms,
                &mut errors,
            );
        }
        if let Some(udp) = &p.thrift_compact {
            check_udp("thrift_compact", udp, &mut errors);
        }
        if let Some(udp) = &p.thrift_binary {
            check_udp("thrift_binary", udp, &mut errors);
        }
        errors
    }
}

/// What every transport's handlers share: the pipelines, counters and authenticator.
pub(crate) struct Shared {
    pub id: String,
    pub transport: &'static str,
    pub consumers: Consumers,
    pub counters: ReceiverCounters,
    pub registry: Arc<Registry>,
    pub auth: Option<Arc<ServerAuthenticator>>,
}

/// Why a Jaeger batch was not delivered.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The spans cannot be translated (ids of the wrong length): the client's fault.
    Invalid(String),
    Refused(Refusal),
}

impl Shared {
    fn new(
        id: &str,
        transport: &'static str,
        consumers: Consumers,
        registry: &Arc<Registry>,
        auth: Option<Arc<ServerAuthenticator>>,
    ) -> Arc<Shared> {
        let counters = ReceiverCounters::new(registry, id, transport, Signal::Traces);
        Arc::new(Shared {
            id: id.to_string(),
            transport,
            consumers,
            counters,
            registry: Arc::clone(registry),
            auth,
        })
    }

    /// Counts a request (or UDP packet) refused before its spans could be counted.
    pub fn rejected_request(&self, reason: &'static str) {
        self.registry
            .counter(
                "oxcol_receiver_rejected_requests",
                "Requests refused before their items were counted, by reason.",
                &[
                    ("receiver", &self.id),
                    ("transport", self.transport),
                    ("reason", reason),
                ],
            )
            .add(1);
    }

    /// Checks credentials; a failure is counted as `reason="unauthenticated"`.
    pub fn authenticate(&self, headers: &::http::HeaderMap) -> Result<(), String> {
        let Some(auth) = &self.auth else {
            return Ok(());
        };
        auth.authenticate(headers).map_err(|failure| {
            self.rejected_request("unauthenticated");
            tracing::debug!(receiver = %self.id, transport = self.transport, reason = %failure, "request refused: not authenticated");
            failure.to_string()
        })
    }

    /// Translates a Jaeger batch and hands it to the pipelines; counts the outcome.
    pub async fn deliver(
        &self,
        batch: model::Batch,
        flavor: translate::Flavor,
    ) -> Result<(), Failure> {
        let resource_spans = translate::batch_to_resource_spans(batch, flavor).map_err(|e| {
            self.rejected_request("malformed");
            Failure::Invalid(e.to_string())
        })?;
        let batch = Batch::from_traces(resource_spans);
        let items = batch.items();
        if batch.is_empty() {
            return Ok(());
        }
        let started = std::time::SystemTime::now();
        let result = self.consumers.consume(batch).await;
        self.counters.finished(
            started,
            items,
            result.as_ref().err().map(ToString::to_string),
        );
        result.map_err(Failure::Refused)
    }
}

/// A running receiver: its tasks finish after `shutdown` is cancelled.
pub struct Running {
    pub tasks: Vec<JoinHandle<()>>,
    pub addresses: Vec<SocketAddr>,
}

/// Binds every configured protocol (a taken port fails at start, naming the receiver) and
/// serves until `shutdown`. `authenticators` maps extension ids to server authenticators.
pub async fn start(
    id: &str,
    config: &Config,
    consumers: Consumers,
    registry: &Arc<Registry>,
    shutdown: CancellationToken,
    authenticators: &std::collections::HashMap<String, Arc<ServerAuthenticator>>,
) -> Result<Running, String> {
    let resolve = |prefix: &str, auth: &Option<AuthSettings>| {
        resolve_authenticator(id, prefix, auth, authenticators)
    };
    let mut running = Running {
        tasks: Vec::new(),
        addresses: Vec::new(),
    };
    let p = &config.protocols;
    if let Some(grpc_config) = &p.grpc {
        let shared = Shared::new(
            id,
            "grpc",
            consumers.clone(),
            registry,
            resolve("protocols.grpc.", &grpc_config.auth)?,
        );
        let (address, task) = grpc::serve(id, grpc_config, shared, shutdown.clone()).await?;
        running.addresses.push(address);
        running.tasks.push(task);
    }
    if let Some(http_config) = &p.thrift_http {
        let shared = Shared::new(
            id,
            "collector_http",
            consumers.clone(),
            registry,
            resolve("protocols.thrift_http.", &http_config.auth)?,
        );
        let (address, task) = http::serve(id, http_config, shared, shutdown.clone()).await?;
        running.addresses.push(address);
        running.tasks.push(task);
    }
    if let Some(udp_config) = &p.thrift_compact {
        let shared = Shared::new(id, "udp_thrift_compact", consumers.clone(), registry, None);
        let (address, tasks) = udp::serve(
            id,
            "thrift_compact",
            udp_config,
            udp::Encoding::Compact,
            shared,
            shutdown.clone(),
        )
        .await?;
        running.addresses.push(address);
        running.tasks.extend(tasks);
    }
    if let Some(udp_config) = &p.thrift_binary {
        let shared = Shared::new(id, "udp_thrift_binary", consumers, registry, None);
        let (address, tasks) = udp::serve(
            id,
            "thrift_binary",
            udp_config,
            udp::Encoding::Binary,
            shared,
            shutdown,
        )
        .await?;
        running.addresses.push(address);
        running.tasks.extend(tasks);
    }
    Ok(running)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
