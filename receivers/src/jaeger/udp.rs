//! The agent protocols over UDP: `thrift_compact` (6831) and `thrift_binary` (6832), one
//! `Agent.emitBatch` message per datagram.
//!
//! As in the Collector (Jaeger's buffered UDP server): one task reads datagrams into a
//! bounded queue of `queue_size` packets (a full queue drops the packet), `workers` tasks
//! decode, translate and deliver. UDP has no answer: a malformed, oversized or dropped
//! packet and spans the pipeline refuses are counted and lost.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::translate::Flavor;
use super::{Failure, Shared, UdpConfig, model, thrift};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Encoding {
    Compact,
    Binary,
}

impl Encoding {
    fn decode(self, packet: &[u8]) -> Result<model::Batch, thrift::ThriftError> {
        match self {
            Encoding::Compact => thrift::decode_compact_agent(packet),
            Encoding::Binary => thrift::decode_binary_agent(packet),
        }
    }
}

/// SO_RCVBUF, as `socket_buffer_size` asks (the kernel may cap or double it).
fn set_receive_buffer(socket: &UdpSocket, bytes: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt on a socket this process owns, with a pointer to a live c_int
    // and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub(super) async fn serve(
    id: &str,
    protocol: &'static str,
    settings: &UdpConfig,
    encoding: Encoding,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, Vec<JoinHandle<()>>), String> {
    let address = crate::otlp::resolve_endpoint(&settings.endpoint).map_err(|e| {
        format!(
            "receiver {id}: protocols.{protocol}.endpoint {:?}: {e}",
            settings.endpoint
        )
    })?;
    let socket = UdpSocket::bind(address)
        .await
        .map_err(|e| format!("receiver {id}: cannot listen on UDP {address} for Jaeger {protocol}: {e} (is a Jaeger agent running? set protocols.{protocol}.endpoint)"))?;
    if settings.socket_buffer_size > 0 {
        set_receive_buffer(&socket, settings.socket_buffer_size).map_err(|e| {
            format!(
                "receiver {id}: protocols.{protocol}.socket_buffer_size {}: {e}",
                settings.socket_buffer_size
            )
        })?;
    }
    let bound = socket.local_addr().map_err(|e| e.to_string())?;
    let (sender, receiver) = mpsc::channel::<Vec<u8>>(settings.queue_size.max(1));
    let receiver = Arc::new(Mutex::new(receiver));
    let mut tasks = Vec::with_capacity(settings.workers + 1);
    let max_packet = settings.max_packet_size;
    let reader_shared = Arc::clone(&shared);
    let reader_stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        // One byte more than the limit tells an oversized datagram from one that fits.
        let mut buffer = vec![0u8; max_packet + 1];
        loop {
            let received = tokio::select! {
                _ = reader_stop.cancelled() => break,
                received = socket.recv_from(&mut buffer) => received,
            };
            match received {
                Ok((n, _)) if n > max_packet => reader_shared.rejected_request("too_large"),
                Ok((n, _)) => {
                    if sender.try_send(buffer[..n].to_vec()).is_err() {
                        reader_shared.rejected_request("queue_full");
                    }
                }
                Err(error) => {
                    tracing::debug!(receiver = %reader_shared.id, %error, "UDP receive failed")
                }
            }
        }
        // Dropping the sender lets the workers drain the queue and stop.
    }));
    for _ in 0..settings.workers {
        let shared = Arc::clone(&shared);
        let receiver = Arc::clone(&receiver);
        tasks.push(tokio::spawn(async move {
            loop {
                let packet = receiver.lock().await.recv().await;
                let Some(packet) = packet else { break };
                let batch = match encoding.decode(&packet) {
                    Ok(batch) => batch,
                    Err(error) => {
                        shared.rejected_request("malformed");
                        tracing::debug!(receiver = %shared.id, transport = shared.transport, %error, "dropping malformed Jaeger UDP packet");
                        continue;
                    }
                };
                match shared.deliver(batch, Flavor::Thrift).await {
                    Ok(()) => {}
                    Err(Failure::Invalid(message)) => tracing::debug!(receiver = %shared.id, transport = shared.transport, %message, "dropping invalid Jaeger spans"),
                    Err(Failure::Refused(refusal)) => {
                        tracing::debug!(receiver = %shared.id, transport = shared.transport, %refusal, "pipeline refused Jaeger UDP spans; they are lost (UDP has no answer)")
                    }
                }
            }
        }));
    }
    tracing::info!(receiver = %id, endpoint = %bound, protocol, "Jaeger UDP receiver listening");
    Ok((bound, tasks))
}
