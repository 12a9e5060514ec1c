//! What the network receivers (`otlp`, `jaeger`, `zipkin`) share: decoding of protocol
//! keys, validation of the server keys, the answers to pipeline refusals over HTTP and
//! gRPC, reading a request body within its limits, and serving an HTTP router or a gRPC
//! server behind oxcol's connection limits (core/src/listen.rs).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use oxcol_core::auth::{AuthSettings, ServerAuthenticator};
use oxcol_core::compression::{DecompressError, Encoding, decompress};
use oxcol_core::grpc::RawCodec;
use oxcol_core::listen::{ConnectionStats, Incoming, ServerLimits};
use oxcol_core::rpc_status::retry_info_details;
use oxcol_core::telemetry::Registry;
use oxcol_core::tls::TlsServerConfig;
use oxcol_core::{GoDuration, Refusal};
use serde::{Deserialize, Deserializer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Status};

use crate::otlp::KeepaliveConfig;
use crate::otlp::cors::{Cors, CorsConfig};

/// `protocols.grpc: ` with no value means "enabled with defaults", as in the Collector.
pub(crate) fn enabled_with_defaults<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

/// Checks the TLS, `auth` and `max_connections` keys of a server; `prefix` is where they
/// stand in the config (e.g. `protocols.grpc.`).
pub(crate) fn check_security(
    prefix: &str,
    tls: &Option<TlsServerConfig>,
    auth: &Option<AuthSettings>,
    max_connections: Option<usize>,
    errors: &mut Vec<String>,
) {
    if let Some(tls) = tls {
        errors.extend(tls.validate().into_iter().map(|e| format!("{prefix}{e}")));
    }
    if auth.as_ref().is_some_and(|a| a.authenticator.is_empty()) {
        errors.push(format!(
            "{prefix}auth.authenticator is required (e.g. bearertokenauth/NAME)"
        ));
    }
    if max_connections == Some(0) {
        errors.push(format!("{prefix}max_connections must be greater than 0"));
    }
}

/// Checks `max_request_body_size` and `compression_algorithms` of an HTTP server.
pub(crate) fn check_body_keys(
    prefix: &str,
    max_request_body_size: usize,
    compression_algorithms: &Option<Vec<String>>,
    errors: &mut Vec<String>,
) {
    if max_request_body_size == 0 {
        errors.push(format!(
            "{prefix}max_request_body_size must be greater than 0"
        ));
    }
    for algorithm in compression_algorithms.iter().flatten() {
        if Encoding::parse(algorithm).is_none() {
            errors.push(format!("{prefix}compression_algorithms: {algorithm:?} is not supported (gzip, zstd, deflate)"));
        }
    }
}

/// Finds the server authenticator an `auth:` key names among the service's extensions.
pub(crate) fn resolve_authenticator(
    id: &str,
    prefix: &str,
    auth: &Option<AuthSettings>,
    authenticators: &HashMap<String, Arc<ServerAuthenticator>>,
) -> Result<Option<Arc<ServerAuthenticator>>, String> {
    match auth {
        None => Ok(None),
        Some(a) => authenticators.get(&a.authenticator).cloned().map(Some).ok_or_else(|| {
            format!("receiver {id}: {prefix}auth.authenticator {:?} is not a server authenticator extension in service.extensions", a.authenticator)
        }),
    }
}

/// A pipeline refusal as the gRPC status the OTLP spec gives it: RESOURCE_EXHAUSTED with
/// RetryInfo, UNAVAILABLE, INVALID_ARGUMENT.
pub(crate) fn grpc_refusal_status(refusal: &Refusal) -> Status {
    match refusal {
        Refusal::Overloaded {
            reason,
            retry_after,
        } => {
            let delay = retry_after.unwrap_or(Duration::from_secs(1));
            let details = retry_info_details(Code::ResourceExhausted as i32, reason, delay);
            Status::with_details(Code::ResourceExhausted, reason.clone(), details.into())
        }
        Refusal::Unavailable { reason } => Status::unavailable(reason.clone()),
        Refusal::Invalid { reason } => Status::invalid_argument(reason.clone()),
    }
}

/// A pipeline refusal as the OTLP/HTTP spec answers it: the status and the Retry-After
/// delay (429 and 503 are retryable, 400 is not).
pub(crate) fn http_refusal_status(refusal: &Refusal) -> (StatusCode, Option<Duration>) {
    match refusal {
        Refusal::Overloaded { retry_after, .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            Some(retry_after.unwrap_or(Duration::from_secs(1))),
        ),
        Refusal::Unavailable { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(Duration::from_secs(1)),
        ),
        Refusal::Invalid { .. } => (StatusCode::BAD_REQUEST, None),
    }
}

/// An answer with `body` of `content_type`, a Retry-After when given, and the configured
/// response headers.
pub(crate) fn http_answer(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
    retry_after: Option<Duration>,
    response_headers: &HeaderMap,
) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    if let Some(after) = retry_after {
        headers.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from(after.as_secs().max(1)),
        );
    }
    headers.extend(response_headers.clone());
    response
}

/// A plain-text answer (`message` and a newline).
pub(crate) fn plain_answer(
    status: StatusCode,
    message: &str,
    retry_after: Option<Duration>,
    response_headers: &HeaderMap,
) -> Response {
    http_answer(
        status,
        "text/plain; charset=utf-8",
        format!("{message}\n").into_bytes(),
        retry_after,
        response_headers,
    )
}

/// The request's `Content-Type` as sent and its media type, lower case, without parameters.
pub(crate) fn media_type(headers: &HeaderMap) -> (&str, String) {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    (content_type, media_type)
}

/// The `response_headers` key as headers; names or values that are not valid are left out
/// (validation reports them).
pub(crate) fn response_header_map(configured: &BTreeMap<String, String>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in configured {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    headers
}

/// A request refused while its body was checked or read: the `reason` counted in
/// `oxcol_receiver_rejected_requests`, the status and the message to answer with.
#[derive(Debug)]
pub(crate) struct Rejected {
    pub reason: &'static str,
    pub status: StatusCode,
    pub message: String,
}

/// Limits of a request body: the HTTP server keys `max_request_body_size`,
/// `compression_algorithms` and `read_timeout`.
#[derive(Clone, Debug)]
pub(crate) struct BodyLimits {
    pub max_body: usize,
    pub encodings: Vec<Encoding>,
    pub read_timeout: Option<Duration>,
}

impl BodyLimits {
    pub fn new(
        max_body: usize,
        compression_algorithms: &Option<Vec<String>>,
        read_timeout: Option<GoDuration>,
    ) -> BodyLimits {
        let encodings = match compression_algorithms {
            Some(list) => list.iter().filter_map(|a| Encoding::parse(a)).collect(),
            None => vec![Encoding::Gzip, Encoding::Zstd, Encoding::Deflate],
        };
        BodyLimits {
            max_body,
            encodings,
            read_timeout: read_timeout.map(|d| d.get()).filter(|d| !d.is_zero()),
        }
    }

    /// The request's `Content-Encoding` if it is identity or one of `compression_algorithms`;
    /// otherwise the header as sent.
    pub fn encoding<'h>(&self, headers: &'h HeaderMap) -> Result<Encoding, &'h str> {
        let header = headers
            .get(http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match Encoding::parse(header) {
            Some(e) if e == Encoding::Identity || self.encodings.contains(&e) => Ok(e),
            _ => Err(header),
        }
    }

    fn too_large(&self) -> Rejected {
        Rejected {
            reason: "too_large",
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "request body exceeds max_request_body_size ({} bytes)",
                self.max_body
            ),
        }
    }

    /// Reads and decompresses a body: at most `max_body` bytes before and after
    /// decompression (a declared Content-Length above it is refused without reading), within
    /// `read_timeout`. `read_error` starts the message of a failed read.
    pub async fn read(
        &self,
        headers: &HeaderMap,
        body: Body,
        encoding: Encoding,
        read_error: &str,
    ) -> Result<Bytes, Rejected> {
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > self.max_body) {
            return Err(self.too_large());
        }
        let reading = Limited::new(body, self.max_body).collect();
        let collected = match self.read_timeout {
            Some(limit) => tokio::time::timeout(limit, reading)
                .await
                .map_err(|_| Rejected {
                    reason: "read_timeout",
                    status: StatusCode::REQUEST_TIMEOUT,
                    message: "request body not received within read_timeout".to_string(),
                })?,
            None => reading.await,
        };
        let raw = match collected {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(self.too_large());
            }
            Err(error) => {
                return Err(Rejected {
                    reason: "read_error",
                    status: StatusCode::BAD_REQUEST,
                    message: format!("{read_error}: {error}"),
                });
            }
        };
        decompress(encoding, raw, self.max_body).map_err(|error| match error {
            DecompressError::TooLarge { limit } => Rejected {
                message: format!("decompressed body exceeds max_request_body_size ({limit} bytes)"),
                ..self.too_large()
            },
            error => Rejected {
                reason: "malformed",
                status: StatusCode::BAD_REQUEST,
                message: error.to_string(),
            },
        })
    }
}

/// Resolves and binds a listen address; `what` names the protocol in the error.
pub(crate) async fn bind(
    id: &str,
    prefix: &str,
    endpoint: &str,
    what: &str,
) -> Result<(TcpListener, SocketAddr), String> {
    let address = crate::otlp::resolve_endpoint(endpoint)
        .map_err(|e| format!("receiver {id}: {prefix}endpoint {endpoint:?}: {e}"))?;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| format!("receiver {id}: cannot listen on {address} for {what}: {e} (is another collector running? set {prefix}endpoint)"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("receiver {id}: {e}"))?;
    Ok((listener, bound))
}

/// Accepts connections on `listener` (TLS when configured) within `limits`, counting them
/// under `name`; also says whether TLS is on.
pub(crate) fn accept(
    id: &str,
    prefix: &str,
    name: &str,
    listener: TcpListener,
    tls: &Option<TlsServerConfig>,
    alpn: &[&[u8]],
    limits: ServerLimits,
    shutdown: &CancellationToken,
) -> Result<(Incoming, bool), String> {
    let tls = match tls {
        Some(tls) => Some(
            tls.rustls_config(alpn)
                .map_err(|e| format!("receiver {id}: {prefix}{e}"))?,
        ),
        None => None,
    };
    let secure = tls.is_some();
    Ok((
        oxcol_core::listen::incoming(name, listener, tls, limits, shutdown.clone()),
        secure,
    ))
}

/// The HTTP server keys that `serve_http` applies around a router.
pub(crate) struct HttpServerKeys<'a> {
    pub tls: &'a Option<TlsServerConfig>,
    pub cors: &'a Option<CorsConfig>,
    pub max_connections: Option<usize>,
    pub read_header_timeout: Option<GoDuration>,
}

/// Serves `router` on `listener` until `shutdown`: CORS when configured, TLS, bounded
/// connections and header deadlines; `name` counts the connections, `what` names the
/// server in the log.
#[allow(clippy::too_many_arguments)]
pub(crate) fn serve_http(
    id: &str,
    prefix: &str,
    name: String,
    what: &str,
    listener: TcpListener,
    bound: SocketAddr,
    mut router: Router,
    keys: HttpServerKeys<'_>,
    response_headers: &HeaderMap,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, String> {
    if let Some(cors) = keys
        .cors
        .as_ref()
        .and_then(|c| Cors::new(c, response_headers.clone()))
    {
        router = router.layer(axum::middleware::from_fn_with_state(
            Arc::new(cors),
            crate::otlp::cors::layer,
        ));
    }
    let mut limits = ServerLimits::http(
        keys.max_connections,
        keys.read_header_timeout.map(|d| d.get()),
    );
    limits.stats = Some(ConnectionStats::new(registry, &name));
    let (incoming, secure) = accept(
        id,
        prefix,
        &name,
        listener,
        keys.tls,
        oxcol_core::tls::ALPN_HTTP,
        limits.clone(),
        &shutdown,
    )?;
    tracing::info!(receiver = %id, endpoint = %bound, tls = secure, "{what} receiver listening");
    Ok(tokio::spawn(async move {
        oxcol_core::listen::serve_http(
            &name,
            incoming,
            router,
            &limits,
            shutdown,
            Duration::from_secs(10),
        )
        .await;
    }))
}

/// A tonic server builder and connection limits from the gRPC server keys: bounded
/// concurrent streams (0 means oxcol's bound, not unlimited), keepalive and connection age
/// (at max_connection_age the server sends GOAWAY, and the accept loop closes the
/// connection after max_connection_age_grace), idle connections, counted under `name`.
pub(crate) fn grpc_server(
    max_concurrent_streams: u32,
    keepalive: &Option<KeepaliveConfig>,
    max_connections: Option<usize>,
    registry: &Registry,
    name: &str,
) -> (tonic::transport::Server, ServerLimits) {
    let streams = if max_concurrent_streams > 0 {
        max_concurrent_streams
    } else {
        crate::otlp::DEFAULT_MAX_CONCURRENT_STREAMS
    };
    let mut builder = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .max_concurrent_streams(streams);
    let mut limits = ServerLimits::grpc(max_connections, None);
    limits.stats = Some(ConnectionStats::new(registry, name));
    if let Some(params) = keepalive
        .as_ref()
        .and_then(|k| k.server_parameters.as_ref())
    {
        if let Some(time) = params.time {
            builder = builder.http2_keepalive_interval(Some(time.get()));
        }
        if let Some(timeout) = params.timeout {
            builder = builder.http2_keepalive_timeout(Some(timeout.get()));
        }
        // (tonic's own max_connection_age_grace would replace the GOAWAY by a close at
        // age + grace: the accept loop enforces the grace instead.)
        if let Some(age) = params.max_connection_age {
            builder = builder.max_connection_age(age.get());
        }
        limits.max_idle = params
            .max_connection_idle
            .map(|d| d.get())
            .filter(|d| !d.is_zero());
        if let (Some(age), Some(grace)) =
            (params.max_connection_age, params.max_connection_age_grace)
        {
            limits.max_lifetime = Some(age.get() + grace.get());
        }
    }
    (builder, limits)
}

/// Runs one unary gRPC call on raw bytes: gzip and zstd requests, at most `max_bytes`
/// after decompression. tonic answers an oversized message with OUT_OF_RANGE; gRPC says
/// RESOURCE_EXHAUSTED (not retryable), and a compressed message that expands past the
/// limit already gets it from tonic; both are counted by `rejected("too_large")`.
/// Responses are never compressed (a fresh gzip state per response cost ~10% of the
/// receiver's CPU for a few bytes).
pub(crate) async fn grpc_unary<S, B>(
    service: S,
    max_bytes: usize,
    request: http::Request<B>,
    rejected: impl Fn(&'static str),
) -> http::Response<tonic::body::Body>
where
    S: tonic::server::UnaryService<Bytes, Response = Bytes>,
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    let mut grpc = tonic::server::Grpc::new(RawCodec::<Bytes>::default())
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .max_decoding_message_size(max_bytes);
    let response = grpc.unary(service, request).await;
    if let Some(status) = Status::from_header_map(response.headers()) {
        if status.code() == Code::OutOfRange && status.message().contains("too large") {
            rejected("too_large");
            return Status::resource_exhausted(status.message().to_string()).into_http();
        }
        if status.code() == Code::ResourceExhausted && status.message().contains("size limit") {
            rejected("too_large");
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_retryable_answers_and_bad_data_does_not() {
        let overloaded = Refusal::Overloaded {
            reason: "memory".into(),
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(
            http_refusal_status(&overloaded),
            (StatusCode::TOO_MANY_REQUESTS, Some(Duration::from_secs(7)))
        );
        let status = grpc_refusal_status(&overloaded);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(!status.details().is_empty(), "RetryInfo is attached");
        let unavailable = Refusal::Unavailable {
            reason: "down".into(),
        };
        assert_eq!(
            http_refusal_status(&unavailable).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(grpc_refusal_status(&unavailable).code(), Code::Unavailable);
        let invalid = Refusal::Invalid {
            reason: "bad".into(),
        };
        assert_eq!(
            http_refusal_status(&invalid),
            (StatusCode::BAD_REQUEST, None)
        );
        assert_eq!(grpc_refusal_status(&invalid).code(), Code::InvalidArgument);
    }

    #[test]
    fn security_keys_are_checked_under_their_prefix() {
        let mut errors = Vec::new();
        check_security(
            "protocols.x.",
            &None,
            &Some(AuthSettings::default()),
            Some(0),
            &mut errors,
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors.iter().all(|e| e.starts_with("protocols.x.")),
            "{errors:?}"
        );
    }

    #[tokio::test]
    async fn bodies_are_read_within_their_limits() {
        let limits = BodyLimits::new(8, &Some(vec!["gzip".into()]), None);
        let mut headers = HeaderMap::new();
        assert_eq!(limits.encoding(&headers), Ok(Encoding::Identity));
        headers.insert(
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static("zstd"),
        );
        assert_eq!(limits.encoding(&headers), Err("zstd"));
        let headers = HeaderMap::new();
        let read = limits
            .read(&headers, Body::from("12345678"), Encoding::Identity, "x")
            .await;
        assert_eq!(read.unwrap(), Bytes::from_static(b"12345678"));
        let read = limits
            .read(&headers, Body::from("123456789"), Encoding::Identity, "x")
            .await;
        assert_eq!(read.unwrap_err().reason, "too_large");
        let read = limits
            .read(&headers, Body::from("not gzip"), Encoding::Gzip, "x")
            .await;
        assert_eq!(read.unwrap_err().reason, "malformed");
    }
}
