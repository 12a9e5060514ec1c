//! The sink's OTLP/HTTP server: `POST /v1/metrics|traces|logs` with protobuf bodies,
//! plain, gzip or zstd.
//!
//! Errors are answered as OTLP/HTTP says: the status code, a `google.rpc.Status` protobuf
//! body, and `Retry-After` when the fault mode sets one.

use super::{Failure, SinkState};
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use oxcol_core::Signal;
use oxcol_core::rpc_status::RpcStatus;
use prost::Message;
use std::future::Future;
use std::io::Read;
use std::sync::Arc;
use tokio::net::TcpListener;

use super::grpc::MAX_MESSAGE_BYTES;

const PROTOBUF: &str = "application/x-protobuf";

pub(super) async fn serve(
    listener: TcpListener,
    state: Arc<SinkState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut router = axum::Router::new();
    for signal in Signal::ALL {
        router = router.route(
            signal.http_path(),
            axum::routing::post(
                move |State(state): State<Arc<SinkState>>, headers: HeaderMap, body: Bytes| {
                    export(state, signal, headers, body)
                },
            ),
        );
    }
    let router = router
        .route(
            "/api/v1/write",
            axum::routing::post(super::remote_write::write),
        )
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .with_state(state);
    if let Err(error) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("oxcol-bench sink: OTLP/HTTP server stopped: {error}");
    }
}

async fn export(
    state: Arc<SinkState>,
    signal: Signal,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(PROTOBUF);
    if !content_type.starts_with(PROTOBUF) && !content_type.starts_with("application/protobuf") {
        let message = format!(
            "content-type {content_type:?} is not supported; the sink reads {PROTOBUF} only"
        );
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, message).into_response();
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    let body = match decompress(encoding, body) {
        Ok(body) => body,
        Err(message) => {
            return failure_response(&Failure::malformed(message));
        }
    };
    match state.export(signal, body).await {
        Ok(accepted) => ([(header::CONTENT_TYPE, PROTOBUF)], accepted.response).into_response(),
        Err(failure) => failure_response(&failure),
    }
}

/// Decompresses an OTLP/HTTP body, refusing more than [`MAX_MESSAGE_BYTES`] once inflated.
pub(crate) fn decompress(encoding: &str, body: Bytes) -> Result<Bytes, String> {
    let inflate = |reader: &mut dyn Read| -> Result<Bytes, String> {
        let mut out = Vec::new();
        reader
            .take(MAX_MESSAGE_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|error| format!("cannot decompress {encoding} body: {error}"))?;
        if out.len() > MAX_MESSAGE_BYTES {
            return Err(format!(
                "decompressed body exceeds {MAX_MESSAGE_BYTES} bytes"
            ));
        }
        Ok(Bytes::from(out))
    };
    match encoding {
        "" | "identity" => Ok(body),
        "gzip" => inflate(&mut flate2::read::GzDecoder::new(body.as_ref())),
        "zstd" => {
            let mut decoder = zstd::stream::read::Decoder::new(body.as_ref())
                .map_err(|error| format!("cannot start zstd decoder: {error}"))?;
            inflate(&mut decoder)
        }
        other => Err(format!(
            "content-encoding {other:?} is not supported; use gzip, zstd or none"
        )),
    }
}

fn failure_response(failure: &Failure) -> Response {
    let status =
        StatusCode::from_u16(failure.http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = RpcStatus {
        code: failure.grpc_code as i32,
        message: failure.message.clone(),
        details: Vec::new(),
    };
    let mut response = (
        status,
        [(header::CONTENT_TYPE, PROTOBUF)],
        body.encode_to_vec(),
    )
        .into_response();
    if let Some(secs) = failure.retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
