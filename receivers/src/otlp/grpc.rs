//! OTLP/gRPC transport of the `otlp` receiver: the three unary Export services served
//! with a raw-bytes codec (tonic handles framing, compression and the size limit).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use oxcol_core::{Batch, Signal};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::server::NamedService;

use super::{GrpcConfig, Shared};
use crate::server::{accept, bind, grpc_refusal_status, grpc_server, grpc_unary};

/// The unary handler: raw request bytes in, raw (empty = full success) response out.
#[derive(Clone)]
struct Export {
    shared: Arc<Shared>,
    signal: Signal,
    /// `include_metadata`: keep the request's gRPC metadata with its batch.
    include_metadata: bool,
}

impl tower::Service<tonic::Request<Bytes>> for Export {
    type Response = tonic::Response<Bytes>;
    type Error = Status;
    type Future = BoxFuture<'static, Result<tonic::Response<Bytes>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let signal = self.signal;
        // The peer address, for k8sattributes' `connection` pod association.
        let client_addr = request
            .extensions()
            .get::<oxcol_core::listen::ConnectionInfo>()
            .map(|info| info.remote.ip());
        // The Collector's client.Info.Metadata: every metadata entry of the request.
        let metadata = self.include_metadata.then(|| {
            Arc::new(oxcol_core::client::Metadata::from_headers(
                &request.metadata().clone().into_headers(),
            ))
        });
        Box::pin(async move {
            let body = request.into_inner();
            let mut batch = match Batch::from_encoded(signal, body) {
                Ok(batch) => batch,
                Err(error) => {
                    shared.rejected_request("malformed");
                    tracing::debug!(%signal, %error, "refusing malformed OTLP/gRPC request");
                    return Err(Status::invalid_argument(format!(
                        "cannot decode Export{} request: {error}",
                        signal_message(signal)
                    )));
                }
            };
            batch.set_client_addr(client_addr);
            batch.set_metadata(metadata);
            // An empty Export*ServiceResponse encodes to zero bytes: full success.
            shared
                .consume(batch)
                .await
                .map(|()| tonic::Response::new(Bytes::new()))
                .map_err(|r| grpc_refusal_status(&r))
        })
    }
}

fn signal_message(signal: Signal) -> &'static str {
    match signal {
        Signal::Metrics => "MetricsService",
        Signal::Traces => "TraceService",
        Signal::Logs => "LogsService",
    }
}

/// One gRPC service per signal (tonic routes by the service name).
macro_rules! otlp_service {
    ($name:ident, $service:literal, $signal:expr) => {
        #[derive(Clone)]
        struct $name {
            shared: Arc<Shared>,
            max_bytes: usize,
            include_metadata: bool,
        }

        impl NamedService for $name {
            const NAME: &'static str = $service;
        }

        impl<B> tower::Service<http::Request<B>> for $name
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
                let (max_bytes, include_metadata) = (self.max_bytes, self.include_metadata);
                Box::pin(async move {
                    Ok(handle(shared, $signal, max_bytes, include_metadata, request).await)
                })
            }
        }
    };
}

otlp_service!(
    MetricsService,
    "opentelemetry.proto.collector.metrics.v1.MetricsService",
    Signal::Metrics
);
otlp_service!(
    TraceService,
    "opentelemetry.proto.collector.trace.v1.TraceService",
    Signal::Traces
);
otlp_service!(
    LogsService,
    "opentelemetry.proto.collector.logs.v1.LogsService",
    Signal::Logs
);

async fn handle<B>(
    shared: Arc<Shared>,
    signal: Signal,
    max_bytes: usize,
    include_metadata: bool,
    request: http::Request<B>,
) -> http::Response<tonic::body::Body>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    // In flight until answered: max_connection_idle never closes a connection serving it.
    let _busy = request
        .extensions()
        .get::<oxcol_core::listen::ConnectionInfo>()
        .map(|c| c.busy());
    // Credentials first: an unauthenticated client learns nothing else.
    if let Err(failure) = shared.authenticate(request.headers()) {
        return Status::unauthenticated(failure.to_string()).into_http();
    }
    if !request.uri().path().ends_with("/Export") {
        return Status::unimplemented(format!("unknown method {}", request.uri().path()))
            .into_http();
    }
    if !shared.consumers.accepts(signal) {
        return Status::unimplemented(format!("this receiver feeds no {signal} pipeline"))
            .into_http();
    }
    // Refuse before reading the body when memory is short.
    if let Err(refusal) = shared.consumers.admit(signal) {
        shared.rejected_request("memory_limit");
        return grpc_refusal_status(&refusal).into_http();
    }
    // Responses are empty or a few bytes (partial success): never compressed.
    let rejected = |reason| shared.rejected_request(reason);
    grpc_unary(
        Export {
            shared: Arc::clone(&shared),
            signal,
            include_metadata,
        },
        max_bytes,
        request,
        rejected,
    )
    .await
}

pub(crate) async fn serve(
    id: &str,
    config: &GrpcConfig,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), String> {
    let (listener, bound) = bind(id, "protocols.grpc.", &config.endpoint, "OTLP/gRPC").await?;
    let max_bytes = config.max_recv_msg_size_mib << 20;
    let name = format!("{id}/grpc");
    let (mut builder, limits) = grpc_server(
        config.max_concurrent_streams,
        &config.keepalive,
        config.max_connections,
        &shared.registry,
        &name,
    );
    let router = builder
        .add_service(MetricsService {
            shared: Arc::clone(&shared),
            max_bytes,
            include_metadata: config.include_metadata,
        })
        .add_service(TraceService {
            shared: Arc::clone(&shared),
            max_bytes,
            include_metadata: config.include_metadata,
        })
        .add_service(LogsService {
            shared,
            max_bytes,
            include_metadata: config.include_metadata,
        });
    // Bounded connections, TLS handshakes off the accept path, a deadline for the HTTP/2
    // preface: slow or idle clients cannot starve the others (core/src/listen.rs).
    let (mut incoming, secure) = accept(
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
    tracing::info!(receiver = %id, endpoint = %bound, tls = secure, "OTLP/gRPC receiver listening");
    let accept_loop = incoming.take_accept_loop();
    let task = tokio::spawn(async move {
        if let Err(error) = router
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
        {
            tracing::error!(receiver = %id, %error, "OTLP/gRPC server stopped with an error");
        }
        // The listening socket is the accept loop's: this task ends (and a reload may bind
        // the same address) only once it is closed.
        if let Some(accept_loop) = accept_loop {
            accept_loop.closed().await;
        }
    });
    Ok((bound, task))
}
