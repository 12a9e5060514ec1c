//! The sink's OTLP/gRPC server: the three `Export` methods, served on raw bytes.
//!
//! One hand-written tower service handles all three paths, so no generated server (and no
//! prost decode) sits in the way; tonic's `Grpc` still does framing and decompression.

use super::{Failure, SinkState};
use bytes::Bytes;
use futures::future::BoxFuture;
use oxcol_core::Signal;
use oxcol_core::grpc::RawCodec;
use oxcol_core::rpc_status::retry_info_details;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;

/// Largest request the sink accepts (after decompression).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

pub(super) async fn serve(
    listener: TcpListener,
    state: Arc<SinkState>,
    shutdown: impl Future<Output = ()>,
) {
    let mut router = axum::Router::new();
    for signal in Signal::ALL {
        router = router.route_service(
            signal.grpc_path(),
            ExportService {
                state: state.clone(),
                signal,
            },
        );
    }
    let routes = tonic::service::Routes::from(router);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let result = tonic::transport::Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    if let Err(error) = result {
        eprintln!("oxcol-bench sink: OTLP/gRPC server stopped: {error}");
    }
}

/// The tower service behind one `Export` path.
#[derive(Clone)]
struct ExportService {
    state: Arc<SinkState>,
    signal: Signal,
}

impl tower::Service<http::Request<axum::body::Body>> for ExportService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<axum::body::Body>) -> Self::Future {
        let call = ExportCall {
            state: self.state.clone(),
            signal: self.signal,
        };
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec::<Bytes>::default())
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(MAX_MESSAGE_BYTES);
            Ok(grpc.unary(call, request).await)
        })
    }
}

/// One unary `Export` call: raw request bytes in, raw response bytes out.
struct ExportCall {
    state: Arc<SinkState>,
    signal: Signal,
}

impl tonic::server::UnaryService<Bytes> for ExportCall {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<tonic::Response<Bytes>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let state = self.state.clone();
        let signal = self.signal;
        Box::pin(async move {
            match state.export(signal, request.into_inner()).await {
                Ok(accepted) => Ok(tonic::Response::new(accepted.response)),
                Err(failure) => Err(grpc_status(&failure)),
            }
        })
    }
}

fn grpc_status(failure: &Failure) -> tonic::Status {
    match failure.retry_info_secs {
        Some(secs) => tonic::Status::with_details(
            failure.grpc_code,
            failure.message.clone(),
            Bytes::from(retry_info_details(
                failure.grpc_code as i32,
                &failure.message,
                Duration::from_secs(secs),
            )),
        ),
        None => tonic::Status::new(failure.grpc_code, failure.message.clone()),
    }
}
