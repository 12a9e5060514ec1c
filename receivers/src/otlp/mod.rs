//! `otlp` receiver: OTLP over gRPC (default 127.0.0.1:4317) and HTTP (127.0.0.1:4318),
//! for metrics, traces and logs.
//!
//! What it does with a request, in order: ask the pipelines' admission checks
//! (memory_limiter) before reading the body; read at most the size limit (compressed and
//! decompressed); check the protobuf framing and count items with the skeleton scan (no
//! decode), or parse OTLP/JSON; hand the batch to every pipeline of its signal; answer
//! success only when all of them placed it in every exporter queue. Refusals are answered
//! with retryable codes (gRPC RESOURCE_EXHAUSTED with RetryInfo / UNAVAILABLE, HTTP 429 /
//! 503 with Retry-After) and counted in `otelcol_receiver_refused_*`; bad data with
//! INVALID_ARGUMENT / 400, 413, 415.
//!
//! It must never panic on input, and never answer success for data it did not place.

pub mod cors;
mod grpc;
mod http;
pub mod json;

use std::net::SocketAddr;
use std::sync::Arc;

use oxcol_core::auth::{AuthFailure, AuthSettings, ServerAuthenticator};
use oxcol_core::telemetry::{ReceiverCounters, Registry};
use oxcol_core::tls::TlsServerConfig;
use oxcol_core::{Batch, Consumers, GoDuration, Refusal, Signal};
use serde::Deserialize;

use crate::server::{
    check_body_keys, check_security, enabled_with_defaults, resolve_authenticator,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const TYPE: &str = "otlp";
pub const ALIASES: &[&str] = &["otlp"];

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub protocols: Protocols,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Protocols {
    #[serde(deserialize_with = "enabled_with_defaults")]
    pub grpc: Option<GrpcConfig>,
    #[serde(deserialize_with = "enabled_with_defaults")]
    pub http: Option<HttpConfig>,
}

/// HTTP/2 streams one gRPC connection may have open when `max_concurrent_streams` is 0.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 200;

/// Server-side keepalive keys of the Collector's gRPC server config.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveConfig {
    pub server_parameters: Option<KeepaliveServerParameters>,
    pub enforcement_policy: Option<KeepaliveEnforcementPolicy>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveServerParameters {
    pub max_connection_idle: Option<GoDuration>,
    pub max_connection_age: Option<GoDuration>,
    pub max_connection_age_grace: Option<GoDuration>,
    pub time: Option<GoDuration>,
    pub timeout: Option<GoDuration>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveEnforcementPolicy {
    pub min_time: Option<GoDuration>,
    pub permit_without_stream: bool,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Listen address. Default `127.0.0.1:4317` (loopback unless configured).
    pub endpoint: String,
    /// Only `tcp`.
    pub transport: String,
    /// Largest request accepted, after decompression. Default 4 MiB.
    pub max_recv_msg_size_mib: usize,
    /// Concurrent streams per connection; 0 = the HTTP/2 default.
    pub max_concurrent_streams: u32,
    pub read_buffer_size: Option<usize>,
    pub write_buffer_size: Option<usize>,
    pub keepalive: Option<KeepaliveConfig>,
    pub include_metadata: bool,
    /// Server TLS (`cert_file`, `key_file`, `client_ca_file` for mTLS, ...). Default: plaintext.
    pub tls: Option<TlsServerConfig>,
    /// `authenticator: bearertokenauth/NAME | basicauth/NAME`. Default: none.
    pub auth: Option<AuthSettings>,
    /// oxcol key: connections served at once; more wait in the listen backlog. Default 1024.
    pub max_connections: Option<usize>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "127.0.0.1:4317".to_string(),
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

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address. Default `127.0.0.1:4318`.
    pub endpoint: String,
    pub traces_url_path: String,
    pub metrics_url_path: String,
    pub logs_url_path: String,
    /// Largest request body, compressed and after decompression. Default 20 MiB (the
    /// Collector's confighttp default).
    pub max_request_body_size: usize,
    pub include_metadata: bool,
    /// Cross-origin requests from browsers: `allowed_origins` (wildcards), `allowed_headers`,
    /// `exposed_headers`, `max_age`. Default: off.
    pub cors: Option<cors::CorsConfig>,
    /// Server TLS, as on grpc. Default: plaintext.
    pub tls: Option<TlsServerConfig>,
    /// `authenticator: bearertokenauth/NAME | basicauth/NAME`. Default: none.
    pub auth: Option<AuthSettings>,
    pub response_headers: std::collections::BTreeMap<String, String>,
    /// Accepted request encodings. Default: gzip, zstd, deflate (and identity).
    pub compression_algorithms: Option<Vec<String>>,
    /// Deadline for reading one request body. Default: none.
    pub read_timeout: Option<GoDuration>,
    /// Deadline for a new connection's TLS handshake and for each request's headers.
    /// Default 10s (slowloris protection).
    pub read_header_timeout: Option<GoDuration>,
    pub write_timeout: Option<GoDuration>,
    pub idle_timeout: Option<GoDuration>,
    /// oxcol key: connections served at once; more wait in the listen backlog. Default 1024.
    pub max_connections: Option<usize>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "127.0.0.1:4318".to_string(),
            traces_url_path: "/v1/traces".to_string(),
            metrics_url_path: "/v1/metrics".to_string(),
            logs_url_path: "/v1/logs".to_string(),
            max_request_body_size: 20 << 20,
            include_metadata: false,
            cors: None,
            tls: None,
            auth: None,
            response_headers: Default::default(),
            compression_algorithms: None,
            read_timeout: None,
            read_header_timeout: None,
            write_timeout: None,
            idle_timeout: None,
            max_connections: None,
        }
    }
}

fn check_endpoint(protocol: &str, endpoint: &str, errors: &mut Vec<String>) {
    if let Err(problem) = check_listen_endpoint(endpoint) {
        errors.push(format!("protocols.{protocol}.endpoint {endpoint:?}: {problem} (write host:port, e.g. 127.0.0.1:4317, otel-collector:4317 or :4317)"));
    }
}

/// Checks the form of a listen address without resolving it (a host name such as
/// `otel-collector` may only resolve where oxcol runs, as with the Collector, whose
/// `validate` does not look names up either): `host:port`, `[v6]:port` or `:port`, with a
/// port from 0 to 65535.
pub fn check_listen_endpoint(endpoint: &str) -> Result<(), String> {
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return Err("no port".to_string());
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("the port {port:?} is not a number from 0 to 65535"));
    }
    let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    match bracketed {
        Some(v6) if v6.parse::<std::net::Ipv6Addr>().is_err() => {
            Err(format!("{v6:?} is not an IPv6 address"))
        }
        Some(_) => Ok(()),
        None if host.contains([':', '[', ']', '/', ' ']) => Err(format!(
            "the host {host:?} is not a host name or address (write an IPv6 address as [::1]:4317)"
        )),
        None => Ok(()),
    }
}

/// Resolves a listen address as the Collector (Go's `net.Listen`) does: `:4317` is every
/// interface (oxcol binds `0.0.0.0`, every IPv4 interface; write `[::]:4317` for IPv6 as
/// well), a host name is looked up and its first IPv4 address wins (Go prefers IPv4 for
/// a listener), `localhost:4317` is the loopback address.
pub fn resolve_endpoint(endpoint: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    check_listen_endpoint(endpoint)?;
    let endpoint = if endpoint.starts_with(':') {
        format!("0.0.0.0{endpoint}")
    } else {
        endpoint.to_string()
    };
    let addresses: Vec<SocketAddr> = endpoint
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {endpoint:?}: {e}"))?
        .collect();
    addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addresses.first())
        .copied()
        .ok_or_else(|| format!("{endpoint:?} resolves to no address"))
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.protocols.grpc.is_none() && self.protocols.http.is_none() {
            errors.push("protocols: enable at least one of grpc and http".to_string());
        }
        if let Some(grpc) = &self.protocols.grpc {
            check_endpoint("grpc", &grpc.endpoint, &mut errors);
            if grpc.transport != "tcp" {
                errors.push(format!(
                    "protocols.grpc.transport {:?}: only tcp is supported",
                    grpc.transport
                ));
            }
            check_security(
                "protocols.grpc.",
                &grpc.tls,
                &grpc.auth,
                grpc.max_connections,
                &mut errors,
            );
            if grpc.max_recv_msg_size_mib == 0 {
                errors.push(
                    "protocols.grpc.max_recv_msg_size_mib must be greater than 0".to_string(),
                );
            }
        }
        if let Some(http) = &self.protocols.http {
            check_endpoint("http", &http.endpoint, &mut errors);
            for (key, path) in [
                ("traces_url_path", &http.traces_url_path),
                ("metrics_url_path", &http.metrics_url_path),
                ("logs_url_path", &http.logs_url_path),
            ] {
                if !path.starts_with('/') {
                    errors.push(format!("protocols.http.{key} {path:?} must start with '/'"));
                }
            }
            check_security(
                "protocols.http.",
                &http.tls,
                &http.auth,
                http.max_connections,
                &mut errors,
            );
            if let Some(cors) = &http.cors {
                errors.extend(cors.validate());
            }
            check_body_keys(
                "protocols.http.",
                http.max_request_body_size,
                &http.compression_algorithms,
                &mut errors,
            );
        }
        errors
    }
}

/// What request handlers of both transports share.
pub(crate) struct Shared {
    pub id: String,
    pub transport: &'static str,
    pub consumers: Consumers,
    pub counters: [ReceiverCounters; 3],
    pub registry: Arc<Registry>,
    /// The `auth:` authenticator, resolved by the service.
    pub auth: Option<Arc<ServerAuthenticator>>,
}

impl Shared {
    fn new(
        id: &str,
        transport: &'static str,
        consumers: Consumers,
        registry: &Arc<Registry>,
        auth: Option<Arc<ServerAuthenticator>>,
    ) -> Arc<Shared> {
        let counters =
            Signal::ALL.map(|signal| ReceiverCounters::new(registry, id, transport, signal));
        Arc::new(Shared {
            id: id.to_string(),
            transport,
            consumers,
            counters,
            registry: Arc::clone(registry),
            auth,
        })
    }

    /// Checks the request's credentials (HTTP headers or gRPC metadata); a failure is
    /// counted as `reason="unauthenticated"` and logged without the credential.
    pub fn authenticate(&self, headers: &::http::HeaderMap) -> Result<(), AuthFailure> {
        let Some(auth) = &self.auth else {
            return Ok(());
        };
        auth.authenticate(headers).inspect_err(|failure| {
            self.rejected_request("unauthenticated");
            tracing::debug!(receiver = %self.id, transport = self.transport, reason = %failure, "request refused: not authenticated");
        })
    }

    /// Counts a request refused before its items could be counted (malformed, too large,
    /// wrong content type, memory limit before reading), by reason.
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

    pub fn counters(&self, signal: Signal) -> &ReceiverCounters {
        &self.counters[Signal::ALL
            .iter()
            .position(|s| *s == signal)
            .expect("Signal::ALL holds every signal")]
    }

    /// Hands a checked batch to the pipelines and counts the outcome.
    pub async fn consume(&self, batch: Batch) -> Result<(), Refusal> {
        let items = batch.items();
        let counters = self.counters(batch.signal());
        if batch.is_empty() {
            return Ok(());
        }
        let started = std::time::SystemTime::now();
        let result = self.consumers.consume(batch).await;
        counters.finished(
            started,
            items,
            result.as_ref().err().map(ToString::to_string),
        );
        result
    }
}

/// A running receiver: its tasks finish after `shutdown` is cancelled and in-flight
/// requests are answered.
pub struct Running {
    pub tasks: Vec<JoinHandle<()>>,
    pub addresses: Vec<SocketAddr>,
}

/// Binds every configured protocol (so a taken port fails at start, naming the receiver)
/// and serves until `shutdown`.
///
/// `authenticators` maps extension ids to authenticators (built by the service from the
/// `bearertokenauth`/`basicauth` extensions); an `auth:` naming an id not in it is an error.
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
    if let Some(grpc_config) = &config.protocols.grpc {
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
    if let Some(http_config) = &config.protocols.http {
        let shared = Shared::new(
            id,
            "http",
            consumers,
            registry,
            resolve("protocols.http.", &http_config.auth)?,
        );
        let (address, task) = http::serve(id, http_config, shared, shutdown).await?;
        running.addresses.push(address);
        running.tasks.push(task);
    }
    Ok(running)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_and_validation_collects_everything() {
        let config = Config {
            protocols: Protocols {
                grpc: Some(GrpcConfig::default()),
                http: Some(HttpConfig::default()),
            },
        };
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(
            config.protocols.grpc.as_ref().unwrap().endpoint,
            "127.0.0.1:4317"
        );
        let bad = Config {
            protocols: Protocols {
                grpc: Some(GrpcConfig {
                    endpoint: "nowhere".into(),
                    transport: "unix".into(),
                    ..GrpcConfig::default()
                }),
                http: Some(HttpConfig {
                    metrics_url_path: "v1/metrics".into(),
                    ..HttpConfig::default()
                }),
            },
        };
        let errors = bad.validate();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(Config::default().validate()[0].contains("at least one"));
    }

    #[test]
    fn endpoints_take_host_names_and_bare_ports_as_the_collector_does() {
        for good in [
            "otel-collector:4317",
            "localhost:4317",
            ":4317",
            "0.0.0.0:4317",
            "[::1]:4318",
            "[::]:0",
            "my.host.example:65535",
        ] {
            assert_eq!(check_listen_endpoint(good), Ok(()), "{good}");
        }
        for bad in [
            "nowhere",
            "host:99999",
            "host:port",
            "::1:4317",
            "[nope]:4317",
            "a b:1",
        ] {
            assert!(check_listen_endpoint(bad).is_err(), "{bad}");
        }
        // A name that does not resolve here still validates: it may resolve where oxcol runs.
        let config = Config {
            protocols: Protocols {
                grpc: Some(GrpcConfig {
                    endpoint: "otel-collector.invalid:4317".into(),
                    ..GrpcConfig::default()
                }),
                http: None,
            },
        };
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(
            resolve_endpoint(":4317").unwrap(),
            "0.0.0.0:4317".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            resolve_endpoint("localhost:4317").unwrap().ip(),
            std::net::IpAddr::from([127, 0, 0, 1])
        );
        assert!(
            resolve_endpoint("otel-collector.invalid:4317")
                .unwrap_err()
                .contains("cannot resolve")
        );
    }
}
