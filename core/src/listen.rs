//! The accept loop every oxcol server uses (OTLP gRPC and HTTP receivers, health_check,
//! self-telemetry): a bounded number of connections, TLS handshakes off the accept path
//! and under a deadline, and a deadline for a new connection's first bytes, so slow or
//! idle clients (slowloris) cannot take the server away from the others.
//!
//! What it must never do: block accepting on one client, or hold more than
//! `max_connections` sockets at once.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::telemetry::{Counter, Gauge, Registry};

/// Default of `max_connections` (oxcol key on every server): connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default of `read_header_timeout`: a new connection must finish its TLS handshake and
/// send its first request bytes (HTTP/1 request line, HTTP/2 preface) within this time.
pub const DEFAULT_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits of one server.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    pub max_connections: usize,
    /// Deadline for the TLS handshake, and then for the first `preamble_bytes` bytes.
    pub read_header_timeout: Duration,
    /// Bytes a connection must send before `read_header_timeout` (24: the HTTP/2 preface;
    /// 16: the shortest HTTP/1 request line).
    pub preamble_bytes: usize,
    /// Close a connection that has had no request in flight and sent no bytes for this
    /// long (gRPC `keepalive.server_parameters.max_connection_idle`). None: never.
    pub max_idle: Option<Duration>,
    /// Close a connection this long after it was accepted, whatever it is doing (gRPC
    /// `max_connection_age` + `max_connection_age_grace`: GOAWAY is sent at the age by
    /// the HTTP/2 server, this is the hard end). None: never.
    pub max_lifetime: Option<Duration>,
    /// Where connection counts go (self-telemetry); None: not counted.
    pub stats: Option<Arc<ConnectionStats>>,
}

/// Why the server closed a connection, for [`ConnectionStats`].
#[derive(Clone, Copy, Debug)]
enum Closed {
    TlsHandshakeFailed,
    TlsHandshakeTimeout,
    HeaderTimeout,
    Idle,
    MaxAge,
}

impl Closed {
    const ALL: [Closed; 5] = [
        Closed::TlsHandshakeFailed,
        Closed::TlsHandshakeTimeout,
        Closed::HeaderTimeout,
        Closed::Idle,
        Closed::MaxAge,
    ];

    fn label(self) -> &'static str {
        match self {
            Closed::TlsHandshakeFailed => "tls_handshake_failed",
            Closed::TlsHandshakeTimeout => "tls_handshake_timeout",
            Closed::HeaderTimeout => "read_header_timeout",
            Closed::Idle => "max_connection_idle",
            Closed::MaxAge => "max_connection_age",
        }
    }
}

/// Self-telemetry of one server's connections: `oxcol_server_connections{server}` (open
/// now), `oxcol_server_connections_accepted{server}`,
/// `oxcol_server_connections_closed{server,reason}` (closed by the server's limits) and
/// `oxcol_server_connection_limit_reached{server}` (times `max_connections` was full).
#[derive(Debug)]
pub struct ConnectionStats {
    open: Gauge,
    accepted: Counter,
    closed: [Counter; 5],
    limit_reached: Counter,
}

impl ConnectionStats {
    pub fn new(registry: &Registry, server: &str) -> Arc<ConnectionStats> {
        let labels = [("server", server)];
        Arc::new(ConnectionStats {
            open: registry.gauge("oxcol_server_connections", "Connections open now.", &labels),
            accepted: registry.counter(
                "oxcol_server_connections_accepted",
                "Connections accepted.",
                &labels,
            ),
            closed: Closed::ALL.map(|reason| {
                registry.counter(
                    "oxcol_server_connections_closed",
                    "Connections closed by the server's limits, by reason.",
                    &[("server", server), ("reason", reason.label())],
                )
            }),
            limit_reached: registry.counter(
                "oxcol_server_connection_limit_reached",
                "Times every max_connections slot was taken (new connections wait in the backlog).",
                &labels,
            ),
        })
    }

    fn closed(&self, reason: Closed) {
        self.closed[reason as usize].add(1);
    }
}

fn count(stats: &Option<Arc<ConnectionStats>>, reason: Closed) {
    if let Some(stats) = stats {
        stats.closed(reason);
    }
}

impl ServerLimits {
    pub fn http(
        max_connections: Option<usize>,
        read_header_timeout: Option<Duration>,
    ) -> ServerLimits {
        ServerLimits {
            max_connections: max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS).max(1),
            read_header_timeout: read_header_timeout
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_READ_HEADER_TIMEOUT),
            preamble_bytes: 16,
            max_idle: None,
            max_lifetime: None,
            stats: None,
        }
    }

    pub fn grpc(
        max_connections: Option<usize>,
        read_header_timeout: Option<Duration>,
    ) -> ServerLimits {
        ServerLimits {
            preamble_bytes: 24,
            ..ServerLimits::http(max_connections, read_header_timeout)
        }
    }
}

enum Inner {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// One accepted connection: plaintext or TLS, holding its connection slot until dropped.
pub struct ServerIo {
    inner: Inner,
    info: ConnectionInfo,
    /// Set until the first `remaining` bytes arrived.
    deadline: Option<Pin<Box<Sleep>>>,
    remaining: usize,
    /// `max_idle` and its timer, when set.
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    /// Fires at `max_lifetime`, when set.
    lifetime: Option<Pin<Box<Sleep>>>,
    stats: Option<Arc<ConnectionStats>>,
    _slot: OwnedSemaphorePermit,
}

impl Drop for ServerIo {
    fn drop(&mut self) {
        if let Some(stats) = &self.stats {
            stats.open.add(-1);
        }
    }
}

impl ServerIo {
    fn new(
        inner: Inner,
        remote: SocketAddr,
        deadline: Pin<Box<Sleep>>,
        limits: &ServerLimits,
        slot: OwnedSemaphorePermit,
    ) -> ServerIo {
        let info = ConnectionInfo {
            remote,
            activity: Arc::new(Activity::default()),
        };
        if let Some(stats) = &limits.stats {
            stats.open.add(1);
        }
        ServerIo {
            inner,
            idle: limits
                .max_idle
                .map(|idle| (idle, Box::pin(tokio::time::sleep(idle)))),
            lifetime: limits
                .max_lifetime
                .map(|lifetime| Box::pin(tokio::time::sleep(lifetime))),
            info,
            deadline: Some(deadline),
            remaining: limits.preamble_bytes,
            stats: limits.stats.clone(),
            _slot: slot,
        }
    }

    pub fn remote_addr(&self) -> SocketAddr {
        self.info.remote
    }

    /// With `max_idle`: whether the connection has been idle that long (then it is
    /// closed). Activity only stamps a time; the timer is looked at when it fires and then
    /// re-armed for the earliest moment the connection could be idle long enough.
    fn idle_expired(&mut self, cx: &mut Context<'_>, got_bytes: bool) -> bool {
        let Some((idle, timer)) = &mut self.idle else {
            return false;
        };
        let activity = &self.info.activity;
        let busy = activity.in_flight.load(Ordering::Acquire) > 0;
        if got_bytes || busy {
            activity.touch();
        }
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        let since = activity.idle_since();
        if !busy && since.elapsed() >= *idle {
            return true;
        }
        let now = tokio::time::Instant::now();
        timer
            .as_mut()
            .reset((since + *idle).max(now + Duration::from_millis(1)));
        // Registers the waker: poll_read runs again when the timer fires.
        let _ = timer.as_mut().poll(cx);
        false
    }
}

/// What the service sees of its connection (tonic puts it in each request's extensions):
/// the peer, and the activity that `max_idle` watches.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    pub remote: SocketAddr,
    activity: Arc<Activity>,
}

impl ConnectionInfo {
    /// Marks a request in flight on this connection until the guard drops: a connection
    /// is never closed as idle while it serves one.
    pub fn busy(&self) -> Busy {
        self.activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(&self.activity))
    }
}

/// A request in flight (see [`ConnectionInfo::busy`]).
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Requests in flight on one connection and when it last did anything.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    start: tokio::time::Instant,
    /// Milliseconds after `start` of the last activity.
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            start: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::AcqRel);
    }

    fn idle_since(&self) -> tokio::time::Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Acquire))
    }
}

impl AsyncRead for ServerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let aged = this.lifetime.as_mut();
        if aged.is_some_and(|lifetime| lifetime.as_mut().poll(cx).is_ready()) {
            count(&this.stats, Closed::MaxAge);
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection older than max_connection_age + max_connection_age_grace",
            )));
        }
        let before = buf.filled().len();
        let polled = match &mut this.inner {
            Inner::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        let got = buf.filled().len() - before;
        // Checked while waiting for bytes (and re-armed when some came).
        let idle = (polled.is_pending() || got > 0) && this.idle_expired(cx, got > 0);
        if idle && polled.is_pending() {
            count(&this.stats, Closed::Idle);
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection idle for max_connection_idle",
            )));
        }
        if let Some(deadline) = &mut this.deadline {
            this.remaining = this.remaining.saturating_sub(got);
            if this.remaining == 0 {
                this.deadline = None;
            } else if polled.is_pending() && deadline.as_mut().poll(cx).is_ready() {
                count(&this.stats, Closed::HeaderTimeout);
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "client sent no request within read_header_timeout",
                )));
            }
        }
        polled
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_write(cx, data),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_flush(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Plain(s) => s.is_write_vectored(),
            Inner::Tls(s) => s.is_write_vectored(),
        }
    }
}

impl tonic::transport::server::Connected for ServerIo {
    type ConnectInfo = ConnectionInfo;
    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}

use std::future::Future;

/// Accepted connections, ready to serve (TLS already negotiated).
pub struct Incoming {
    receiver: mpsc::Receiver<ServerIo>,
    /// The accept loop, which owns the listening socket.
    accept: Option<tokio::task::JoinHandle<()>>,
}

impl Incoming {
    /// Stops accepting and waits (at most 2 s) until the accept loop has closed the
    /// listening socket, so that a reload can bind the same address right after; dropping
    /// an `Incoming` closes the socket a moment later, on another task.
    pub async fn close(mut self) {
        self.receiver.close();
        if let Some(accept) = self.accept.take() {
            AcceptLoop(accept).closed().await;
        }
    }

    /// For a server that hands the `Incoming` to a library (tonic) and so cannot call
    /// [`Incoming::close`]: the accept loop, which closes the listening socket when it ends
    /// (at shutdown). Await [`AcceptLoop::closed`] after the server has returned, before
    /// saying the receiver has stopped.
    pub fn take_accept_loop(&mut self) -> Option<AcceptLoop> {
        self.accept.take().map(AcceptLoop)
    }
}

/// The task that accepts connections and owns the listening socket.
pub struct AcceptLoop(tokio::task::JoinHandle<()>);

impl AcceptLoop {
    /// Waits (at most 2 s) until the loop has ended and dropped the socket, so that a
    /// reload can bind the same address right after.
    pub async fn closed(self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.0).await;
    }
}

impl Stream for Incoming {
    type Item = Result<ServerIo, std::io::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx).map(|item| item.map(Ok))
    }
}

/// Starts accepting on `listener` until `shutdown`. `server` names the server in logs.
pub fn incoming(
    server: &str,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> Incoming {
    let (sender, receiver) = mpsc::channel::<ServerIo>(64);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let server = server.to_string();
    let warned_full = Arc::new(AtomicBool::new(false));
    let accept = tokio::spawn(async move {
        loop {
            let slot = tokio::select! {
                _ = shutdown.cancelled() => return,
                slot = Arc::clone(&slots).acquire_owned() => match slot { Ok(s) => s, Err(_) => return },
            };
            if slots.available_permits() == 0 {
                if let Some(stats) = &limits.stats {
                    stats.limit_reached.add(1);
                }
            }
            if slots.available_permits() == 0 && !warned_full.swap(true, Ordering::Relaxed) {
                tracing::warn!(server = %server, max_connections = limits.max_connections, "connection limit reached; new connections wait until others close");
            }
            let (tcp, remote) = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(server = %server, %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            if let Some(stats) = &limits.stats {
                stats.accepted.add(1);
            }
            let deadline = Box::pin(tokio::time::sleep(limits.read_header_timeout));
            match &acceptor {
                None => {
                    let io = ServerIo::new(Inner::Plain(tcp), remote, deadline, &limits, slot);
                    if sender.send(io).await.is_err() {
                        return;
                    }
                }
                Some(acceptor) => {
                    // Handshakes run beside the accept loop: a client that never finishes
                    // its handshake holds one slot until the deadline, nothing more.
                    let acceptor = acceptor.clone();
                    let sender = sender.clone();
                    let server = server.clone();
                    let limits = limits.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(limits.read_header_timeout, acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(stream)) => {
                                let io = ServerIo::new(
                                    Inner::Tls(Box::new(stream)),
                                    remote,
                                    deadline,
                                    &limits,
                                    slot,
                                );
                                let _ = sender.send(io).await;
                            }
                            // A refused client certificate, a wrong protocol, a scanner: debug only.
                            Ok(Err(error)) => {
                                count(&limits.stats, Closed::TlsHandshakeFailed);
                                tracing::debug!(server = %server, %remote, %error, "TLS handshake failed")
                            }
                            Err(_) => {
                                count(&limits.stats, Closed::TlsHandshakeTimeout);
                                tracing::debug!(server = %server, %remote, "TLS handshake timed out")
                            }
                        }
                    });
                }
            }
            if slots.available_permits() > 0 {
                warned_full.store(false, Ordering::Relaxed);
            }
        }
    });
    Incoming {
        receiver,
        accept: Some(accept),
    }
}

/// Serves HTTP/1.1 and HTTP/2 with `service` on every connection of `incoming` until
/// `shutdown`, then lets in-flight requests finish (bounded by `drain`).
/// Each request's extensions hold its connection's [`ConnectionInfo`].
pub async fn serve_http<S, B>(
    server: &str,
    mut incoming: Incoming,
    service: S,
    limits: &ServerLimits,
    shutdown: CancellationToken,
    drain: Duration,
) where
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use futures::StreamExt;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_header_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let io = tokio::select! {
            _ = shutdown.cancelled() => break,
            io = incoming.next() => match io { Some(Ok(io)) => io, _ => break },
        };
        // Every request carries its connection's `ConnectionInfo` (the peer address), as
        // tonic does for gRPC.
        let info = io.info.clone();
        let service = tower::ServiceExt::map_request(
            service.clone(),
            move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(info.clone());
                request
            },
        );
        let service = hyper_util::service::TowerToHyperService::new(service);
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let server = server.to_string();
        let stats = limits.stats.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // hyper's own header_read_timeout (HTTP/1) closes slow request heads.
                let timed_out = error
                    .downcast_ref::<hyper::Error>()
                    .is_some_and(hyper::Error::is_timeout);
                if timed_out {
                    count(&stats, Closed::HeaderTimeout);
                }
                tracing::debug!(server = %server, %error, "connection ended with an error");
            }
        });
    }
    incoming.close().await;
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!(server = %server, "connections still open after the drain deadline; closing them");
    }
}
