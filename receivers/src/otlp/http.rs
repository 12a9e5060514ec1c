//! OTLP/HTTP transport of the `otlp` receiver: `POST /v1/{metrics,traces,logs}` with
//! `application/x-protobuf` or `application/json` bodies, optionally gzip/zstd/deflate.
//! Answers in the request's content type; errors carry a `google.rpc.Status` body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, HeaderValue, StatusCode};
use oxcol_core::listen::ConnectionInfo;
use oxcol_core::rpc_status::RpcStatus;
use oxcol_core::{Batch, Refusal, Signal};
use prost::Message;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{HttpConfig, Shared};
use crate::server::{
    BodyLimits, HttpServerKeys, bind, http_answer, http_refusal_status, media_type,
    response_header_map, serve_http,
};

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
    limits: BodyLimits,
    response_headers: HeaderMap,
    /// `include_metadata`: keep the request's headers with its batch.
    include_metadata: bool,
}

/// An error answer: status code, `google.rpc.Status` body in the request's format.
fn error_response(
    endpoint: &Endpoint,
    format: Format,
    status: StatusCode,
    message: &str,
    retry_after: Option<Duration>,
) -> Response {
    let code = match status.as_u16() {
        400 | 413 | 415 => 3, // INVALID_ARGUMENT
        429 => 8,             // RESOURCE_EXHAUSTED
        503 => 14,            // UNAVAILABLE
        404 => 12,            // UNIMPLEMENTED
        401 => 16,            // UNAUTHENTICATED
        _ => 2,               // UNKNOWN
    };
    let body = match format {
        Format::Protobuf => RpcStatus {
            code,
            message: message.to_string(),
            details: vec![],
        }
        .encode_to_vec(),
        Format::Json => serde_json::to_vec(&serde_json::json!({"code": code, "message": message}))
            .unwrap_or_default(),
    };
    http_answer(
        status,
        format.content_type(),
        body,
        retry_after,
        &endpoint.response_headers,
    )
}

fn refusal_response(endpoint: &Endpoint, format: Format, refusal: &Refusal) -> Response {
    let (status, retry_after) = http_refusal_status(refusal);
    error_response(endpoint, format, status, refusal.reason(), retry_after)
}

async fn export(
    State(endpoint): State<Arc<Endpoint>>,
    connection: Option<Extension<ConnectionInfo>>,
    uri: http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let shared = &endpoint.shared;
    // Credentials first, before the body is read.
    if let Err(failure) = shared.authenticate(&headers) {
        let mut response = error_response(
            &endpoint,
            Format::Protobuf,
            StatusCode::UNAUTHORIZED,
            &failure.to_string(),
            None,
        );
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer, Basic"),
        );
        return response;
    }
    let (content_type, media_type) = media_type(&headers);
    let format = match media_type.as_str() {
        "application/x-protobuf" | "application/protobuf" => Format::Protobuf,
        "application/json" => Format::Json,
        _ => {
            shared.rejected_request("unsupported_media_type");
            return error_response(
                &endpoint,
                Format::Protobuf,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!(
                    "unsupported content type {content_type:?}; use application/x-protobuf or application/json"
                ),
                None,
            );
        }
    };
    let encoding = match endpoint.limits.encoding(&headers) {
        Ok(encoding) => encoding,
        Err(header) => {
            shared.rejected_request("unsupported_encoding");
            return error_response(
                &endpoint,
                format,
                StatusCode::BAD_REQUEST,
                &format!("unsupported content encoding {header:?}"),
                None,
            );
        }
    };
    // Refuse before reading the body when memory is short.
    if let Err(refusal) = shared.consumers.admit(endpoint.signal) {
        shared.rejected_request("memory_limit");
        return refusal_response(&endpoint, format, &refusal);
    }
    let plain = match endpoint
        .limits
        .read(&headers, body, encoding, "cannot read request body")
        .await
    {
        Ok(plain) => plain,
        Err(rejected) => {
            shared.rejected_request(rejected.reason);
            return error_response(&endpoint, format, rejected.status, &rejected.message, None);
        }
    };
    let batch = match format {
        Format::Protobuf => Batch::from_encoded(endpoint.signal, plain)
            .map_err(|e| format!("cannot decode OTLP protobuf: {e}")),
        // Strict about the metrics oneofs that opentelemetry-proto's serde mapping would
        // drop silently (json.rs).
        Format::Json => super::json::parse(endpoint.signal, &plain),
    };
    let mut batch = match batch {
        Ok(batch) => batch,
        Err(message) => {
            shared.rejected_request("malformed");
            return error_response(&endpoint, format, StatusCode::BAD_REQUEST, &message, None);
        }
    };
    // The peer address, for k8sattributes' `connection` pod association (as over gRPC).
    batch.set_client_addr(connection.map(|Extension(info)| info.remote.ip()));
    if endpoint.include_metadata {
        batch.set_metadata(Some(Arc::new(request_metadata(&uri, &headers))));
    }
    match shared.consume(batch).await {
        Ok(()) => {
            // Full success: an empty Export*ServiceResponse.
            let body: &'static [u8] = match format {
                Format::Protobuf => b"",
                Format::Json => b"{}",
            };
            let mut response = (StatusCode::OK, body).into_response();
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            response
                .headers_mut()
                .extend(endpoint.response_headers.clone());
            response
        }
        Err(refusal) => refusal_response(&endpoint, format, &refusal),
    }
}

/// The Collector's client.Info.Metadata of an HTTP request (confighttp): every header,
/// plus `host` (HTTP/2 carries it as `:authority`, not a header).
fn request_metadata(uri: &http::Uri, headers: &HeaderMap) -> oxcol_core::client::Metadata {
    match uri.authority() {
        Some(authority) if !headers.contains_key(http::header::HOST) => {
            let mut headers = headers.clone();
            if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                headers.insert(http::header::HOST, host);
            }
            oxcol_core::client::Metadata::from_headers(&headers)
        }
        _ => oxcol_core::client::Metadata::from_headers(headers),
    }
}

pub(crate) async fn serve(
    id: &str,
    config: &HttpConfig,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), String> {
    let (listener, bound) = bind(id, "protocols.http.", &config.endpoint, "OTLP/HTTP").await?;
    let limits = BodyLimits::new(
        config.max_request_body_size,
        &config.compression_algorithms,
        config.read_timeout,
    );
    let response_headers = response_header_map(&config.response_headers);
    let mut router = Router::new();
    for (signal, path) in [
        (Signal::Metrics, &config.metrics_url_path),
        (Signal::Traces, &config.traces_url_path),
        (Signal::Logs, &config.logs_url_path),
    ] {
        if !shared.consumers.accepts(signal) {
            continue;
        }
        let endpoint = Arc::new(Endpoint {
            shared: Arc::clone(&shared),
            signal,
            limits: limits.clone(),
            response_headers: response_headers.clone(),
            include_metadata: config.include_metadata,
        });
        router = router.route(path, post(export).with_state(endpoint));
    }
    let keys = HttpServerKeys {
        tls: &config.tls,
        cors: &config.cors,
        max_connections: config.max_connections,
        read_header_timeout: config.read_header_timeout,
    };
    let task = serve_http(
        id,
        "protocols.http.",
        format!("{id}/http"),
        "OTLP/HTTP",
        listener,
        bound,
        router,
        keys,
        &response_headers,
        &shared.registry,
        shutdown,
    )?;
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::IpAddr;

    use bytes::Bytes;
    use http_body_util::{BodyExt as _, Full};
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use oxcol_core::telemetry::Registry;
    use oxcol_core::{Consumers, PipelineInput};

    use super::super::{Config, HttpConfig, Protocols, start};
    use super::*;

    /// One POST from a client bound to `source`; the status and the batch the pipeline got.
    async fn post_from(source: IpAddr) -> (StatusCode, Batch) {
        post_with(source, false).await
    }

    /// As `post_from`, with `include_metadata` and an `X-Tenant: team-a` header.
    async fn post_with(source: IpAddr, include_metadata: bool) -> (StatusCode, Batch) {
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<oxcol_core::Envelope>(1);
        let mut consumers = Consumers::new();
        consumers.add(
            Signal::Logs,
            PipelineInput {
                pipeline: "logs".into(),
                sender,
                admissions: vec![],
            },
        );
        let config = Config {
            protocols: Protocols {
                grpc: None,
                http: Some(HttpConfig {
                    endpoint: "127.0.0.1:0".into(),
                    include_metadata,
                    ..HttpConfig::default()
                }),
            },
        };
        let shutdown = CancellationToken::new();
        let running = start(
            "otlp",
            &config,
            consumers,
            &Registry::new(),
            shutdown.clone(),
            &HashMap::new(),
        )
        .await
        .expect("the receiver starts");
        let address = running.addresses[0];
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(source, 0))
            .expect("bind the client's source address");
        let stream = socket.connect(address).await.expect("connect");
        let (mut client, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(connection);
        let body = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default()],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
        .encode_to_vec();
        let request = http::Request::post(format!("http://{address}/v1/logs"))
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .header("X-Tenant", "team-a")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let pipeline = async {
            let envelope = receiver.recv().await.expect("a batch reaches the pipeline");
            let _ = envelope.ack.send(Ok(()));
            envelope.batch
        };
        let (response, batch) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(client.send_request(request), pipeline)
        })
        .await
        .expect("answered within 10 s");
        let response = response.expect("a response");
        let status = response.status();
        let _ = response.into_body().collect().await;
        shutdown.cancel();
        (status, batch)
    }

    #[tokio::test]
    async fn a_request_batch_carries_the_client_address() {
        for source in ["127.0.0.1", "127.0.0.7"] {
            let source: IpAddr = source.parse().expect("an address");
            let (status, batch) = post_from(source).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(batch.client_addr(), Some(source));
            assert!(batch.metadata().is_none(), "include_metadata is off");
        }
    }

    #[tokio::test]
    async fn include_metadata_keeps_the_request_headers_with_the_batch() {
        let (status, batch) = post_with("127.0.0.1".parse().expect("an address"), true).await;
        assert_eq!(status, StatusCode::OK);
        let metadata = batch.metadata().expect("metadata kept");
        assert_eq!(metadata.first("x-tenant"), Some("team-a"));
        assert_eq!(
            metadata.first("Content-Type"),
            Some("application/x-protobuf")
        );
        assert!(metadata.first("host").is_some(), "host is part of it");
    }
}
