//! The gRPC protocol: `jaeger.api_v2.CollectorService/PostSpans`, served with the tree's
//! raw-bytes codec (tonic handles framing, compression and the size limit) and decoded
//! with the prost structs of `model.rs`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use oxcol_core::Signal;
use prost::Message;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::server::NamedService;

use super::translate::Flavor;
use super::{Failure, GrpcConfig, Shared, model};
use crate::server::{accept, bind, grpc_refusal_status, grpc_server, grpc_unary};

const SERVICE: &str = "jaeger.api_v2.CollectorService";
const POST_SPANS: &str = "/jaeger.api_v2.CollectorService/PostSpans";

#[derive(Clone)]
struct PostSpans {
    shared: Arc<Shared>,
}

impl tower::Service<tonic::Request<Bytes>> for PostSpans {
    type Response = tonic::Response<Bytes>;
    type Error = Status;
    type Future = BoxFuture<'static, Result<tonic::Response<Bytes>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let request = match model::PostSpansRequest::decode(request.into_inner()) {
                Ok(request) => request,
                Err(error) => {
                    shared.rejected_request("malformed");
                    return Err(Status::invalid_argument(format!(
                        "receiver {}: cannot decode PostSpansRequest: {error}",
                        shared.id
                    )));
                }
            };
            let batch = request.batch.unwrap_or_default();
            match shared.deliver(batch, Flavor::Proto).await {
                // PostSpansResponse is empty: zero bytes.
                Ok(()) => Ok(tonic::Response::new(Bytes::new())),
                Err(Failure::Invalid(message)) => Err(Status::invalid_argument(format!(
                    "receiver {}: {message}",
                    shared.id
                ))),
                Err(Failure::Refused(refusal)) => Err(grpc_refusal_status(&refusal)),
            }
        })
    }
}

#[derive(Clone)]
struct CollectorService {
    shared: Arc<Shared>,
    max_bytes: usize,
}

impl NamedService for CollectorService {
    const NAME: &'static str = SERVICE;
}

impl<B> tower::Service<http::Request<B>> for CollectorService
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let max_bytes = self.max_bytes;
        Box::pin(async move { Ok(handle(shared, max_bytes, request).await) })
    }
}

async fn handle<B>(
    shared: Arc<Shared>,
    max_bytes: usize,
    request: http::Request<B>,
) -> http::Response<tonic::body::Body>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    let _busy = request
        .extensions()
        .get::<oxcol_core::listen::ConnectionInfo>()
        .map(|c| c.busy());
    if let Err(failure) = shared.authenticate(request.headers()) {
        return Status::unauthenticated(failure).into_http();
    }
    if request.uri().path() != POST_SPANS {
        return Status::unimplemented(format!("unknown method {}", request.uri().path()))
            .into_http();
    }
    if let Err(refusal) = shared.consumers.admit(Signal::Traces) {
        shared.rejected_request("memory_limit");
        return grpc_refusal_status(&refusal).into_http();
    }
    let post_spans = PostSpans {
        shared: Arc::clone(&shared),
    };
    grpc_unary(post_spans, max_bytes, request, |reason| {
        shared.rejected_request(reason)
    })
    .await
}

pub(super) async fn serve(
    id: &str,
    config: &GrpcConfig,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), String> {
    let (listener, bound) = bind(id, "protocols.grpc.", &config.endpoint, "Jaeger gRPC").await?;
    let max_bytes = config.max_recv_msg_size_mib << 20;
    let name = format!("{id}/grpc");
    let (mut builder, limits) = grpc_server(
        config.max_concurrent_streams,
        &config.keepalive,
        config.max_connections,
        &shared.registry,
        &name,
    );
    let router = builder.add_service(CollectorService { shared, max_bytes });
    let (incoming, secure) = accept(
        id,
        "protocols.grpc.",
        &name,
        listener,
        &config.tls,
        oxcol_core::tls::ALPN_GRPC,
        limits,
        &shutdown,
    )?;
    let id = id.to_string();
    tracing::info!(receiver = %id, endpoint = %bound, tls = secure, "Jaeger gRPC receiver listening");
    let task = tokio::spawn(async move {
        if let Err(error) = router
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
        {
            tracing::error!(receiver = %id, %error, "Jaeger gRPC server stopped with an error");
        }
    });
    Ok((bound, task))
}
