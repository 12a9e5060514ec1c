//! OTLP/gRPC transport of the `otlp` receiver: the three unary Export services served
//! with a raw-bytes codec (tonic handles framing, compression and the size limit).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use oxcol_core::grpc::RawCodec;
use oxcol_core::rpc_status::retry_info_details;
use oxcol_core::{Batch, Refusal, Signal};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::server::NamedService;
use tonic::{Code, Status};

use super::{GrpcConfig, Shared};

/// Maps a pipeline refusal to the gRPC status the OTLP spec gives it.
pub(crate) fn refusal_status(refusal: &Refusal) -> Status {
    match refusal {
        Refusal::Overloaded { reason, retry_after } => {
            let delay = retry_after.unwrap_or(Duration::from_secs(1));
            let details = retry_info_details(Code::ResourceExhausted as i32, reason, delay);
            Status::with_details(Code::ResourceExhausted, reason.clone(), details.into())
        }
        Refusal::Unavailable { reason } => Status::unavailable(reason.clone()),
        Refusal::Invalid { reason } => Status::invalid_argument(reason.clone()),
    }
}

/// The unary handler: raw request bytes in, raw (empty = full success) response out.
#[derive(Clone)]
struct Export {
    shared: Arc<Shared>,
    signal: Signal,
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
        Box::pin(async move {
            let body = request.into_inner();
            let batch = match Batch::from_encoded(signal, body) {
                Ok(batch) => batch,
                Err(error) => {
                    shared.rejected_request("malformed");
                    tracing::debug!(%signal, %error, "refusing malformed OTLP/gRPC request");
                    return Err(Status::invalid_argument(format!("cannot decode Export{} request: {error}", signal_message(signal))));
                }
            };
            // An empty Export*ServiceResponse encodes to zero bytes: full success.
            shared.consume(batch).await.map(|()| tonic::Response::new(Bytes::new())).map_err(|r| refusal_status(&r))
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
                let max_bytes = self.max_bytes;
                Box::pin(async move { Ok(handle(shared, $signal, max_bytes, request).await) })
            }
        }
    };
}

otlp_service!(MetricsService, "opentelemetry.proto.collector.metrics.v1.MetricsService", Signal::Metrics);
otlp_service!(TraceService, "opentelemetry.proto.collector.trace.v1.TraceService", Signal::Traces);
otlp_service!(LogsService, "opentelemetry.proto.collector.logs.v1.LogsService", Signal::Logs);

async fn handle<B>(shared: Arc<Shared>, signal: Signal, max_bytes: usize, request: http::Request<B>) -> http::Response<tonic::body::Body>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    // In flight until answered: max_connection_idle never closes a connection serving it.
    let _busy = request.extensions().get::<oxcol_core::listen::ConnectionInfo>().map(|c| c.busy());
    // Credentials first: an unauthenticated client learns nothing else.
    if let Err(failure) = shared.authenticate(request.headers()) {
        return Status::unauthenticated(failure.to_string()).into_http();
    }
    if !request.uri().path().ends_with("/Export") {
        return Status::unimplemented(format!("unknown method {}", request.uri().path())).into_http();
    }
    if !shared.consumers.accepts(signal) {
        return Status::unimplemented(format!("this receiver feeds no {signal} pipeline")).into_http();
    }
    // Refuse before reading the body when memory is short.
    if let Err(refusal) = shared.consumers.admit(signal) {
        shared.rejected_request("memory_limit");
        return refusal_status(&refusal).into_http();
    }
    // Responses are empty or a few bytes (partial success): never compressed. Compressing
    // them cost ~10% of the receiver's CPU in the passthrough profile (a fresh gzip state
    // per response), for nothing.
    let mut grpc = tonic::server::Grpc::new(RawCodec::<Bytes>::default())
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .max_decoding_message_size(max_bytes);
    let response = grpc.unary(Export { shared: Arc::clone(&shared), signal }, request).await;
    // tonic answers an oversized message with OUT_OF_RANGE; gRPC and the OTLP spec say
    // RESOURCE_EXHAUSTED (without RetryInfo: not retryable).
    // A compressed message that expands past the limit gets RESOURCE_EXHAUSTED from tonic
    // already ("size limit ... exceeded while decompressing"); count it too.
    if let Some(status) = Status::from_header_map(response.headers()) {
        if status.code() == Code::OutOfRange && status.message().contains("too large") {
            shared.rejected_request("too_large");
            return Status::resource_exhausted(status.message().to_string()).into_http();
        }
        if status.code() == Code::ResourceExhausted && status.message().contains("size limit") {
            shared.rejected_request("too_large");
        }
    }
    response
}

pub(crate) async fn serve(id: &str, config: &GrpcConfig, shared: Arc<Shared>, shutdown: CancellationToken) -> Result<(SocketAddr, JoinHandle<()>), String> {
    let address = super::resolve_endpoint(&config.endpoint).map_err(|e| format!("receiver {id}: grpc endpoint {:?}: {e}", config.endpoint))?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("receiver {id}: cannot listen on {address} for OTLP/gRPC: {e} (is another collector running? set protocols.grpc.endpoint)"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let max_bytes = config.max_recv_msg_size_mib << 20;
    let mut builder = tonic::transport::Server::builder().tcp_nodelay(true);
    // 0 (the Collector's default) means unlimited in gRPC-Go and in tonic: a client that
    // never reads its responses could then hold any number of streams. oxcol bounds it.
    let streams = if config.max_concurrent_streams > 0 { config.max_concurrent_streams } else { super::DEFAULT_MAX_CONCURRENT_STREAMS };
    builder = builder.max_concurrent_streams(streams);
    if let Some(params) = config.keepalive.as_ref().and_then(|k| k.server_parameters.as_ref()) {
        if let Some(time) = params.time {
            builder = builder.http2_keepalive_interval(Some(time.get()));
        }
        if let Some(timeout) = params.timeout {
            builder = builder.http2_keepalive_timeout(Some(timeout.get()));
        }
        // As in gRPC-Go: at max_connection_age the server sends GOAWAY (clients reconnect,
        // e.g. to a new backend behind a load balancer) and closes the connection after
        // max_connection_age_grace at the latest.
        // (tonic's own max_connection_age_grace would replace the GOAWAY by a close at
        // age + grace: the accept loop enforces the grace instead, see `limits` below.)
        if let Some(age) = params.max_connection_age {
            builder = builder.max_connection_age(age.get());
        }
    }
    let stats = oxcol_core::listen::ConnectionStats::new(&shared.registry, &format!("{id}/grpc"));
    let router = builder
        .add_service(MetricsService { shared: Arc::clone(&shared), max_bytes })
        .add_service(TraceService { shared: Arc::clone(&shared), max_bytes })
        .add_service(LogsService { shared, max_bytes });
    let tls = match &config.tls {
        Some(tls) => Some(tls.rustls_config(oxcol_core::tls::ALPN_GRPC).map_err(|e| format!("receiver {id}: protocols.grpc.{e}"))?),
        None => None,
    };
    let secure = tls.is_some();
    // Bounded connections, TLS handshakes off the accept path, a deadline for the HTTP/2
    // preface: slow or idle clients cannot starve the others (core/src/listen.rs).
    let mut limits = oxcol_core::listen::ServerLimits::grpc(config.max_connections, None);
    limits.stats = Some(stats);
    if let Some(params) = config.keepalive.as_ref().and_then(|k| k.server_parameters.as_ref()) {
        limits.max_idle = params.max_connection_idle.map(|d| d.get()).filter(|d| !d.is_zero());
        if let (Some(age), Some(grace)) = (params.max_connection_age, params.max_connection_age_grace) {
            limits.max_lifetime = Some(age.get() + grace.get());
        }
    }
    let incoming = oxcol_core::listen::incoming(&format!("{id}/grpc"), listener, tls, limits, shutdown.clone());
    let id = id.to_string();
    tracing::info!(receiver = %id, endpoint = %bound, tls = secure, "OTLP/gRPC receiver listening");
    let task = tokio::spawn(async move {
        if let Err(error) = router.serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned()).await {
            tracing::error!(receiver = %id, %error, "OTLP/gRPC server stopped with an error");
        }
    });
    Ok((bound, task))
}
