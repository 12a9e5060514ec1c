//! OTLP/HTTP transport of the `otlp` receiver: `POST /v1/{metrics,traces,logs}` with
//! `application/x-protobuf` or `application/json` bodies, optionally gzip/zstd/deflate.
//! Answers in the request's content type; errors carry a `google.rpc.Status` body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use oxcol_core::compression::{decompress, DecompressError, Encoding};
use oxcol_core::rpc_status::RpcStatus;
use oxcol_core::{Batch, Refusal, Signal};
use prost::Message;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{HttpConfig, Shared};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

struct Endpoint {
    shared: Arc<Shared>,
    signal: Signal,
    max_body: usize,
    encodings: Vec<Encoding>,
    response_headers: HeaderMap,
    read_timeout: Option<Duration>,
}

/// An error answer: status code, `google.rpc.Status` body in the request's format.
fn error_response(endpoint: &Endpoint, format: Format, status: StatusCode, message: &str, retry_after: Option<Duration>) -> Response {
    let code = match status.as_u16() {
        400 | 413 | 415 => 3, // INVALID_ARGUMENT
        429 => 8,             // RESOURCE_EXHAUSTED
        503 => 14,            // UNAVAILABLE
        404 => 12,            // UNIMPLEMENTED
        401 => 16,            // UNAUTHENTICATED
        _ => 2,               // UNKNOWN
    };
    let body = match format {
        Format::Protobuf => RpcStatus { code, message: message.to_string(), details: vec![] }.encode_to_vec(),
        Format::Json => serde_json::to_vec(&serde_json::json!({"code": code, "message": message})).unwrap_or_default(),
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    if let Some(after) = retry_after {
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(after.as_secs().max(1)));
    }
    headers.extend(endpoint.response_headers.clone());
    response
}

fn refusal_response(endpoint: &Endpoint, format: Format, refusal: &Refusal) -> Response {
    match refusal {
        Refusal::Overloaded { reason, retry_after } => {
            error_response(endpoint, format, StatusCode::TOO_MANY_REQUESTS, reason, Some(retry_after.unwrap_or(Duration::from_secs(1))))
        }
        Refusal::Unavailable { reason } => error_response(endpoint, format, StatusCode::SERVICE_UNAVAILABLE, reason, Some(Duration::from_secs(1))),
        Refusal::Invalid { reason } => error_response(endpoint, format, StatusCode::BAD_REQUEST, reason, None),
    }
}

async fn export(State(endpoint): State<Arc<Endpoint>>, headers: HeaderMap, body: Body) -> Response {
    let shared = &endpoint.shared;
    // Credentials first, before the body is read.
    if let Err(failure) = shared.authenticate(&headers) {
        let mut response = error_response(&endpoint, Format::Protobuf, StatusCode::UNAUTHORIZED, &failure.to_string(), None);
        response.headers_mut().insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer, Basic"));
        return response;
    }
    let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let format = match media_type.as_str() {
        "application/x-protobuf" | "application/protobuf" => Format::Protobuf,
        "application/json" => Format::Json,
        _ => {
            shared.rejected_request("unsupported_media_type");
            return error_response(
                &endpoint,
                Format::Protobuf,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("unsupported content type {content_type:?}; use application/x-protobuf or application/json"),
                None,
            );
        }
    };
    let encoding_header = headers.get(http::header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
    let encoding = match Encoding::parse(encoding_header) {
        Some(e) if e == Encoding::Identity || endpoint.encodings.contains(&e) => e,
        _ => {
            shared.rejected_request("unsupported_encoding");
            return error_response(&endpoint, format, StatusCode::BAD_REQUEST, &format!("unsupported content encoding {encoding_header:?}"), None);
        }
    };
    // Refuse before reading the body when memory is short.
    if let Err(refusal) = shared.consumers.admit(endpoint.signal) {
        shared.rejected_request("memory_limit");
        return refusal_response(&endpoint, format, &refusal);
    }
    let declared = headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > endpoint.max_body) {
        shared.rejected_request("too_large");
        return error_response(&endpoint, format, StatusCode::PAYLOAD_TOO_LARGE, &format!("request body exceeds max_request_body_size ({} bytes)", endpoint.max_body), None);
    }
    let collected = match endpoint.read_timeout {
        Some(limit) => match tokio::time::timeout(limit, Limited::new(body, endpoint.max_body).collect()).await {
            Ok(result) => result,
            Err(_) => {
                shared.rejected_request("read_timeout");
                return error_response(&endpoint, format, StatusCode::REQUEST_TIMEOUT, "request body not received within read_timeout", None);
            }
        },
        None => Limited::new(body, endpoint.max_body).collect().await,
    };
    let raw = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            shared.rejected_request("too_large");
            return error_response(&endpoint, format, StatusCode::PAYLOAD_TOO_LARGE, &format!("request body exceeds max_request_body_size ({} bytes)", endpoint.max_body), None);
        }
        Err(error) => {
            shared.rejected_request("read_error");
            return error_response(&endpoint, format, StatusCode::BAD_REQUEST, &format!("cannot read request body: {error}"), None);
        }
    };
    let plain: Bytes = match decompress(encoding, raw, endpoint.max_body) {
        Ok(plain) => plain,
        Err(DecompressError::TooLarge { limit }) => {
            shared.rejected_request("too_large");
            return error_response(&endpoint, format, StatusCode::PAYLOAD_TOO_LARGE, &format!("decompressed body exceeds max_request_body_size ({limit} bytes)"), None);
        }
        Err(error) => {
            shared.rejected_request("malformed");
            return error_response(&endpoint, format, StatusCode::BAD_REQUEST, &error.to_string(), None);
        }
    };
    let batch = match format {
        Format::Protobuf => Batch::from_encoded(endpoint.signal, plain).map_err(|e| format!("cannot decode OTLP protobuf: {e}")),
        // Strict about the metrics oneofs that opentelemetry-proto's serde mapping would
        // drop silently (json.rs).
        Format::Json => super::json::parse(endpoint.signal, &plain),
    };
    let batch = match batch {
        Ok(batch) => batch,
        Err(message) => {
            shared.rejected_request("malformed");
            return error_response(&endpoint, format, StatusCode::BAD_REQUEST, &message, None);
        }
    };
    match shared.consume(batch).await {
        Ok(()) => {
            // Full success: an empty Export*ServiceResponse.
            let body: &'static [u8] = match format {
                Format::Protobuf => b"",
                Format::Json => b"{}",
            };
            let mut response = (StatusCode::OK, body).into_response();
            response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
            response.headers_mut().extend(endpoint.response_headers.clone());
            response
        }
        Err(refusal) => refusal_response(&endpoint, format, &refusal),
    }
}

pub(crate) async fn serve(id: &str, config: &HttpConfig, shared: Arc<Shared>, shutdown: CancellationToken) -> Result<(SocketAddr, JoinHandle<()>), String> {
    let address = super::resolve_endpoint(&config.endpoint).map_err(|e| format!("receiver {id}: http endpoint {:?}: {e}", config.endpoint))?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("receiver {id}: cannot listen on {address} for OTLP/HTTP: {e} (is another collector running? set protocols.http.endpoint)"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let encodings: Vec<Encoding> = match &config.compression_algorithms {
        Some(list) => list.iter().filter_map(|a| Encoding::parse(a)).collect(),
        None => vec![Encoding::Gzip, Encoding::Zstd, Encoding::Deflate],
    };
    let mut response_headers = HeaderMap::new();
    for (name, value) in &config.response_headers {
        if let (Ok(name), Ok(value)) = (http::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            response_headers.insert(name, value);
        }
    }
    let mut router = Router::new();
    for (signal, path) in [(Signal::Metrics, &config.metrics_url_path), (Signal::Traces, &config.traces_url_path), (Signal::Logs, &config.logs_url_path)] {
        if !shared.consumers.accepts(signal) {
            continue;
        }
        let endpoint = Arc::new(Endpoint {
            shared: Arc::clone(&shared),
            signal,
            max_body: config.max_request_body_size,
            encodings: encodings.clone(),
            response_headers: response_headers.clone(),
            read_timeout: config.read_timeout.map(|d| d.get()).filter(|d| !d.is_zero()),
        });
        router = router.route(path, post(export).with_state(endpoint));
    }
    let tls = match &config.tls {
        Some(tls) => Some(tls.rustls_config(oxcol_core::tls::ALPN_HTTP).map_err(|e| format!("receiver {id}: protocols.http.{e}"))?),
        None => None,
    };
    let secure = tls.is_some();
    let registry = Arc::clone(&shared.registry);
    let mut limits = oxcol_core::listen::ServerLimits::http(config.max_connections, config.read_header_timeout.map(|d| d.get()));
    let name = format!("{id}/http");
    limits.stats = Some(oxcol_core::listen::ConnectionStats::new(&registry, &name));
    let incoming = oxcol_core::listen::incoming(&name, listener, tls, limits.clone(), shutdown.clone());
    tracing::info!(receiver = %id, endpoint = %bound, tls = secure, "OTLP/HTTP receiver listening");
    let task = tokio::spawn(async move {
        oxcol_core::listen::serve_http(&name, incoming, router, &limits, shutdown, Duration::from_secs(10)).await;
    });
    Ok((bound, task))
}
