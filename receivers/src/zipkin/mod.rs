//! `zipkin` receiver: Zipkin v2 spans over HTTP (`POST /api/v2/spans`, JSON or
//! `application/x-protobuf`), optionally gzip/deflate/zstd, translated to OTLP traces with
//! the Collector's rules (see [`translate`]). Default endpoint `127.0.0.1:9411` (oxcol
//! binds loopback unless configured; the Collector's default is `localhost:9411`).
//!
//! Like the `otlp` receiver it asks the pipelines' admission checks before reading a body,
//! bounds the body (compressed and decompressed), and answers success (202 Accepted, as
//! Zipkin does) only when every pipeline placed the batch in every exporter queue.
//! Refusals are 429/503 with `Retry-After`; bad data is 400 with the reason.
//!
//! It must never panic on input, and never answer success for data it did not place.

/// The Zipkin v2 protobuf model, shared with the other end (oxcol-core).
pub use oxcol_core::zipkin_proto as proto;
#[cfg(test)]
mod tests;
pub mod translate;
pub mod v1;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use http::{HeaderMap, HeaderValue, StatusCode};
use oxcol_core::auth::{AuthSettings, ServerAuthenticator};
use oxcol_core::telemetry::{ReceiverCounters, Registry};
use oxcol_core::tls::TlsServerConfig;
use oxcol_core::{Batch, Consumers, GoDuration, Refusal, Signal};
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::otlp::cors::CorsConfig;
use crate::server::{
    BodyLimits, HttpServerKeys, bind, check_body_keys, check_security, http_refusal_status,
    media_type, plain_answer, resolve_authenticator, response_header_map, serve_http,
};

pub const TYPE: &str = "zipkin";
pub const ALIASES: &[&str] = &["zipkin"];

pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:9411";

/// The HTTP server keys (the Collector's `confighttp.ServerConfig`) oxcol supports.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address. Default `127.0.0.1:9411`.
    pub endpoint: String,
    /// Server TLS. Default: plaintext.
    pub tls: Option<TlsServerConfig>,
    /// Cross-origin requests from browsers. Default: off.
    pub cors: Option<CorsConfig>,
    /// `authenticator: bearertokenauth/NAME | basicauth/NAME`. Default: none.
    pub auth: Option<AuthSettings>,
    /// Largest request body, compressed and after decompression. Default 20 MiB.
    pub max_request_body_size: usize,
    pub response_headers: BTreeMap<String, String>,
    /// Accepted request encodings. Default: gzip, zstd, deflate (and identity).
    pub compression_algorithms: Option<Vec<String>>,
    /// Deadline for reading one request body. Default: none.
    pub read_timeout: Option<GoDuration>,
    /// Deadline for a new connection's TLS handshake and first request bytes. Default 10s.
    pub read_header_timeout: Option<GoDuration>,
    /// oxcol key: connections served at once. Default 1024.
    pub max_connections: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            endpoint: DEFAULT_ENDPOINT.to_string(),
            tls: None,
            cors: None,
            auth: None,
            max_request_body_size: 20 << 20,
            response_headers: BTreeMap::new(),
            compression_algorithms: None,
            read_timeout: None,
            read_header_timeout: None,
            max_connections: None,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Protocols {
    pub http: Option<ServerConfig>,
}

/// The Collector's zipkin receiver config: the server keys either at the top level (the
/// form most configs use, deprecated in the Collector since v0.128) or under
/// `protocols.http`, plus `parse_string_tags`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub protocols: Option<Protocols>,
    /// Turn tag strings that look like integers, floats or booleans into typed
    /// attributes. Default false.
    pub parse_string_tags: bool,
    pub endpoint: Option<String>,
    pub tls: Option<TlsServerConfig>,
    pub cors: Option<CorsConfig>,
    pub auth: Option<AuthSettings>,
    pub max_request_body_size: Option<usize>,
    pub response_headers: Option<BTreeMap<String, String>>,
    pub compression_algorithms: Option<Vec<String>>,
    pub read_timeout: Option<GoDuration>,
    pub read_header_timeout: Option<GoDuration>,
    pub max_connections: Option<usize>,
}

impl Config {
    /// Top-level server keys that are set (for the "not both" check).
    fn top_level_keys(&self) -> Vec<&'static str> {
        let set = [
            ("endpoint", self.endpoint.is_some()),
            ("tls", self.tls.is_some()),
            ("cors", self.cors.is_some()),
            ("auth", self.auth.is_some()),
            (
                "max_request_body_size",
                self.max_request_body_size.is_some(),
            ),
            ("response_headers", self.response_headers.is_some()),
            (
                "compression_algorithms",
                self.compression_algorithms.is_some(),
            ),
            ("read_timeout", self.read_timeout.is_some()),
            ("read_header_timeout", self.read_header_timeout.is_some()),
            ("max_connections", self.max_connections.is_some()),
        ];
        set.into_iter()
            .filter(|(_, is_set)| *is_set)
            .map(|(key, _)| key)
            .collect()
    }

    /// The server settings in effect: `protocols.http`, else the top-level keys over the
    /// defaults.
    pub fn server(&self) -> ServerConfig {
        if let Some(http) = self.protocols.as_ref().and_then(|p| p.http.clone()) {
            return http;
        }
        let defaults = ServerConfig::default();
        ServerConfig {
            endpoint: self.endpoint.clone().unwrap_or(defaults.endpoint),
            tls: self.tls.clone(),
            cors: self.cors.clone(),
            auth: self.auth.clone(),
            max_request_body_size: self
                .max_request_body_size
                .unwrap_or(defaults.max_request_body_size),
            response_headers: self.response_headers.clone().unwrap_or_default(),
            compression_algorithms: self.compression_algorithms.clone(),
            read_timeout: self.read_timeout,
            read_header_timeout: self.read_header_timeout,
            max_connections: self.max_connections,
        }
    }

    /// Where the server keys live, for error messages.
    fn prefix(&self) -> &'static str {
        if self.protocols.as_ref().is_some_and(|p| p.http.is_some()) {
            "protocols.http."
        } else {
            ""
        }
    }

    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        match &self.protocols {
            Some(protocols) if protocols.http.is_none() => {
                errors.push("protocols: enable http (protocols.http), the only Zipkin protocol, or remove protocols and write endpoint at the top level".to_string());
            }
            Some(_) => {
                let top = self.top_level_keys();
                if !top.is_empty() {
                    errors.push(format!(
                        "{} set at the top level and protocols.http is set too; move them under protocols.http (the Collector silently ignores the top-level ones)",
                        top.join(", ")
                    ));
                }
            }
            None => {}
        }
        let server = self.server();
        let prefix = self.prefix();
        if let Err(problem) = crate::otlp::check_listen_endpoint(&server.endpoint) {
            errors.push(format!(
                "{prefix}endpoint {:?}: {problem} (write host:port, e.g. 0.0.0.0:9411 or :9411)",
                server.endpoint
            ));
        }
        check_security(
            prefix,
            &server.tls,
            &server.auth,
            server.max_connections,
            &mut errors,
        );
        if let Some(cors) = &server.cors {
            errors.extend(cors.validate().into_iter().map(|e| format!("{prefix}{e}")));
        }
        check_body_keys(
            prefix,
            server.max_request_body_size,
            &server.compression_algorithms,
            &mut errors,
        );
        for (name, value) in &server.response_headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || HeaderValue::from_str(value).is_err()
            {
                errors.push(format!(
                    "{prefix}response_headers: {name:?} is not a valid header name and value"
                ));
            }
        }
        errors
    }
}

/// The two wire formats of `/api/v2/spans`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json,
    Protobuf,
}

struct Endpoint {
    /// `/api/v1/spans` (v1 JSON) rather than `/api/v2/spans`.
    v1: bool,
    id: String,
    consumers: Consumers,
    counters: ReceiverCounters,
    registry: Arc<Registry>,
    auth: Option<Arc<ServerAuthenticator>>,
    parse_string_tags: bool,
    limits: BodyLimits,
    response_headers: HeaderMap,
}

impl Endpoint {
    /// Counts a request refused before its spans could be counted, by reason (the metric
    /// the `otlp` receiver uses too).
    fn rejected_request(&self, reason: &'static str) {
        self.registry
            .counter(
                "oxcol_receiver_rejected_requests",
                "Requests refused before their items were counted, by reason.",
                &[
                    ("receiver", &self.id),
                    ("transport", "http"),
                    ("reason", reason),
                ],
            )
            .add(1);
    }

    /// A plain-text answer with the configured response headers.
    fn answer(&self, status: StatusCode, message: &str, retry_after: Option<Duration>) -> Response {
        plain_answer(status, message, retry_after, &self.response_headers)
    }

    fn refusal(&self, refusal: &Refusal) -> Response {
        let (status, retry_after) = http_refusal_status(refusal);
        self.answer(status, refusal.reason(), retry_after)
    }
}

/// Turns a v1 JSON body into an OTLP batch.
pub fn decode_v1(body: &[u8], parse_string_tags: bool) -> Result<Batch, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    Ok(Batch::from_traces(v1::parse_json_v1(
        body,
        parse_string_tags,
        now,
    )?))
}

/// Turns a request body into an OTLP batch (the part without I/O, tested on its own).
pub fn decode_v2(
    format_is_protobuf: bool,
    body: &[u8],
    parse_string_tags: bool,
) -> Result<Batch, String> {
    let spans = if format_is_protobuf {
        translate::parse_proto_v2(body)?
    } else {
        translate::parse_json_v2(body)?
    };
    Ok(Batch::from_traces(translate::to_otlp(
        spans,
        parse_string_tags,
    )?))
}

async fn spans(State(endpoint): State<Arc<Endpoint>>, headers: HeaderMap, body: Body) -> Response {
    if let Some(auth) = &endpoint.auth
        && let Err(failure) = auth.authenticate(&headers)
    {
        endpoint.rejected_request("unauthenticated");
        tracing::debug!(receiver = %endpoint.id, reason = %failure, "request refused: not authenticated");
        let mut response = endpoint.answer(StatusCode::UNAUTHORIZED, &failure.to_string(), None);
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer, Basic"),
        );
        return response;
    }
    let (_, media_type) = media_type(&headers);
    if endpoint.v1 && media_type == "application/x-thrift" {
        endpoint.rejected_request("unsupported_media_type");
        return endpoint.answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Zipkin v1 thrift is not supported by oxcol; send v1 JSON or v2 JSON/protobuf",
            None,
        );
    }
    // As in the Collector: protobuf only when said so, JSON otherwise.
    let format = match media_type.as_str() {
        "application/x-protobuf" | "application/protobuf" => Format::Protobuf,
        _ => Format::Json,
    };
    let encoding = match endpoint.limits.encoding(&headers) {
        Ok(encoding) => encoding,
        Err(header) => {
            endpoint.rejected_request("unsupported_encoding");
            return endpoint.answer(
                StatusCode::BAD_REQUEST,
                &format!("unsupported content encoding {header:?}"),
                None,
            );
        }
    };
    if let Err(refusal) = endpoint.consumers.admit(Signal::Traces) {
        endpoint.rejected_request("memory_limit");
        return endpoint.refusal(&refusal);
    }
    let plain = match endpoint
        .limits
        .read(&headers, body, encoding, "cannot read request body")
        .await
    {
        Ok(plain) => plain,
        Err(rejected) => {
            endpoint.rejected_request(rejected.reason);
            return endpoint.answer(rejected.status, &rejected.message, None);
        }
    };
    let decoded = if endpoint.v1 {
        decode_v1(&plain, endpoint.parse_string_tags)
    } else {
        decode_v2(
            format == Format::Protobuf,
            &plain,
            endpoint.parse_string_tags,
        )
    };
    let batch = match decoded {
        Ok(batch) => batch,
        Err(message) => {
            endpoint.rejected_request("malformed");
            return endpoint.answer(StatusCode::BAD_REQUEST, &message, None);
        }
    };
    let items = batch.items();
    if batch.is_empty() {
        return endpoint.answer(StatusCode::ACCEPTED, "", None);
    }
    let started = std::time::SystemTime::now();
    let result = endpoint.consumers.consume(batch).await;
    endpoint.counters.finished(
        started,
        items,
        result.as_ref().err().map(ToString::to_string),
    );
    match result {
        Ok(()) => endpoint.answer(StatusCode::ACCEPTED, "", None),
        Err(refusal) => endpoint.refusal(&refusal),
    }
}

/// A running receiver: its task ends after `shutdown` is cancelled and in-flight requests
/// are answered.
pub struct Running {
    pub task: JoinHandle<()>,
    pub address: SocketAddr,
}

/// Binds the endpoint (so a taken port fails at start, naming the receiver) and serves
/// until `shutdown`.
pub async fn start(
    id: &str,
    config: &Config,
    consumers: Consumers,
    registry: &Arc<Registry>,
    shutdown: CancellationToken,
    authenticators: &HashMap<String, Arc<ServerAuthenticator>>,
) -> Result<Running, String> {
    let server = config.server();
    let prefix = config.prefix();
    let auth = resolve_authenticator(id, prefix, &server.auth, authenticators)?;
    let (listener, bound) = bind(id, prefix, &server.endpoint, "Zipkin").await?;
    let limits = BodyLimits::new(
        server.max_request_body_size,
        &server.compression_algorithms,
        server.read_timeout,
    );
    let response_headers = response_header_map(&server.response_headers);
    let counters = ReceiverCounters::new(registry, id, "http", Signal::Traces);
    let endpoint = |v1: bool| {
        Arc::new(Endpoint {
            v1,
            id: id.to_string(),
            consumers: consumers.clone(),
            counters: counters.clone(),
            registry: Arc::clone(registry),
            auth: auth.clone(),
            parse_string_tags: config.parse_string_tags,
            limits: limits.clone(),
            response_headers: response_headers.clone(),
        })
    };
    let router = Router::new()
        .route("/api/v2/spans", post(spans).with_state(endpoint(false)))
        .route("/api/v1/spans", post(spans).with_state(endpoint(true)));
    let keys = HttpServerKeys {
        tls: &server.tls,
        cors: &server.cors,
        max_connections: server.max_connections,
        read_header_timeout: server.read_header_timeout,
    };
    let task = serve_http(
        id,
        prefix,
        format!("{id}/http"),
        "Zipkin",
        listener,
        bound,
        router,
        keys,
        &response_headers,
        registry,
        shutdown,
    )?;
    Ok(Running {
        task,
        address: bound,
    })
}
