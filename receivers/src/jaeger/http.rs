//! The `thrift_http` protocol: `POST /api/traces` with a Thrift binary-protocol Batch
//! (`application/x-thrift` or `application/vnd.apache.thrift.binary`), optionally gzip,
//! zstd or deflate. 202 Accepted on success, plain-text errors as the Collector writes them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, HeaderValue, StatusCode};
use oxcol_core::{Refusal, Signal};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::translate::Flavor;
use super::{Failure, Shared, ThriftHttpConfig};
use crate::server::{
    BodyLimits, HttpServerKeys, bind, http_refusal_status, media_type, plain_answer,
    response_header_map, serve_http,
};

const PATH: &str = "/api/traces";
const THRIFT_TYPES: [&str; 2] = [
    "application/x-thrift",
    "application/vnd.apache.thrift.binary",
];

struct Endpoint {
    shared: Arc<Shared>,
    limits: BodyLimits,
    response_headers: HeaderMap,
}

impl Endpoint {
    fn answer(&self, status: StatusCode, message: &str, retry_after: Option<Duration>) -> Response {
        plain_answer(status, message, retry_after, &self.response_headers)
    }

    /// Pipeline refusals as the otlp receiver answers them (429 / 503 with Retry-After,
    /// 400 for bad data); the Collector answers 500 for all of them.
    fn refusal(&self, refusal: &Refusal) -> Response {
        let (status, retry_after) = http_refusal_status(refusal);
        let message = format!("Cannot submit Jaeger batch: {}", refusal.reason());
        self.answer(status, &message, retry_after)
    }
}

async fn post_traces(
    State(endpoint): State<Arc<Endpoint>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let shared = &endpoint.shared;
    if let Err(failure) = shared.authenticate(&headers) {
        let mut response = endpoint.answer(StatusCode::UNAUTHORIZED, &failure, None);
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer, Basic"),
        );
        return response;
    }
    let (content_type, media_type) = media_type(&headers);
    if !THRIFT_TYPES.contains(&media_type.as_str()) {
        shared.rejected_request("unsupported_media_type");
        return endpoint.answer(
            StatusCode::BAD_REQUEST,
            &format!("Unsupported content type: {content_type} (send application/x-thrift)"),
            None,
        );
    }
    let encoding = match endpoint.limits.encoding(&headers) {
        Ok(encoding) => encoding,
        Err(header) => {
            shared.rejected_request("unsupported_encoding");
            let message =
                format!("unsupported content encoding {header:?} (see compression_algorithms)");
            return endpoint.answer(StatusCode::BAD_REQUEST, &message, None);
        }
    };
    if let Err(refusal) = shared.consumers.admit(Signal::Traces) {
        shared.rejected_request("memory_limit");
        return endpoint.refusal(&refusal);
    }
    let plain = match endpoint
        .limits
        .read(&headers, body, encoding, "Unable to process request body")
        .await
    {
        Ok(plain) => plain,
        Err(rejected) => {
            shared.rejected_request(rejected.reason);
            return endpoint.answer(rejected.status, &rejected.message, None);
        }
    };
    let batch = match super::thrift::decode_binary_batch(&plain) {
        Ok(batch) => batch,
        Err(error) => {
            shared.rejected_request("malformed");
            return endpoint.answer(
                StatusCode::BAD_REQUEST,
                &format!("Unable to process request body: {error}"),
                None,
            );
        }
    };
    match shared.deliver(batch, Flavor::Thrift).await {
        Ok(()) => {
            let mut response = StatusCode::ACCEPTED.into_response();
            response
                .headers_mut()
                .extend(endpoint.response_headers.clone());
            response
        }
        Err(Failure::Invalid(message)) => endpoint.answer(
            StatusCode::BAD_REQUEST,
            &format!("Unable to process request body: {message}"),
            None,
        ),
        Err(Failure::Refused(refusal)) => endpoint.refusal(&refusal),
    }
}

pub(super) async fn serve(
    id: &str,
    config: &ThriftHttpConfig,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), String> {
    let prefix = "protocols.thrift_http.";
    let (listener, bound) = bind(id, prefix, &config.endpoint, "Jaeger Thrift HTTP").await?;
    let response_headers = response_header_map(&config.response_headers);
    let registry = Arc::clone(&shared.registry);
    let endpoint = Arc::new(Endpoint {
        shared,
        limits: BodyLimits::new(
            config.max_request_body_size,
            &config.compression_algorithms,
            config.read_timeout,
        ),
        response_headers: response_headers.clone(),
    });
    let router = Router::new().route(PATH, post(post_traces).with_state(endpoint));
    let keys = HttpServerKeys {
        tls: &config.tls,
        cors: &config.cors,
        max_connections: config.max_connections,
        read_header_timeout: config.read_header_timeout,
    };
    let task = serve_http(
        id,
        prefix,
        format!("{id}/thrift_http"),
        "Jaeger Thrift HTTP",
        listener,
        bound,
        router,
        keys,
        &response_headers,
        &registry,
        shutdown,
    )?;
    Ok((bound, task))
}
