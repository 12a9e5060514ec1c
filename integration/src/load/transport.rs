//! How the load generator sends one pre-encoded request: OTLP/gRPC through the raw codec on
//! a tonic `Channel`, or OTLP/HTTP protobuf through a keep-alive hyper client.

use super::{Compression, Protocol};
use crate::otlp::{
    decode_partial_success, grpc_code_is_refusal, grpc_code_name, http_status_is_refusal,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use oxcol_core::Signal;
use oxcol_core::grpc::RawCodec;
use std::io::Write;
use std::time::Duration;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Channel, Endpoint};

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted; `rejected` items were reported back through `partial_success`.
    Accepted { rejected: u64 },
    /// A retryable refusal (gRPC UNAVAILABLE/RESOURCE_EXHAUSTED, HTTP 429/503).
    Refused,
    /// No answer: the connection failed or broke. Counted as failed, but retried with `retry`
    /// (a receiver that restarts is unreachable for a moment).
    Unreachable,
    /// Anything else: a permanent error, a malformed answer, a timeout.
    Failed,
}

/// An outcome with the label counted in `status_counts` (`OK`, `UNAVAILABLE`, `200`, `503`,
/// `timeout`, `transport_error`).
#[derive(Clone, Debug)]
pub struct Answer {
    pub outcome: Outcome,
    pub status: String,
}

// Built once per run and shared by reference, so the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Transport {
    Grpc {
        clients: Vec<tonic::client::Grpc<Channel>>,
    },
    Http {
        client: Client<HttpConnector, Full<Bytes>>,
        url: String,
        content_encoding: Option<&'static str>,
    },
}

impl Transport {
    pub(super) fn new(
        protocol: Protocol,
        endpoint: &str,
        signal: Signal,
        compression: Compression,
        connections: usize,
        pool_size: usize,
    ) -> Result<Transport, String> {
        match protocol {
            Protocol::Grpc => {
                let uri = if endpoint.contains("://") {
                    endpoint.to_string()
                } else {
                    format!("http://{endpoint}")
                };
                let clients = (0..connections.max(1))
                    .map(|_| {
                        let channel = Endpoint::from_shared(uri.clone())
                            .map_err(|error| {
                                format!("invalid gRPC endpoint {endpoint:?}: {error}")
                            })?
                            .tcp_nodelay(true)
                            .connect_lazy();
                        let mut client = tonic::client::Grpc::new(channel)
                            .accept_compressed(CompressionEncoding::Gzip)
                            .accept_compressed(CompressionEncoding::Zstd)
                            .max_decoding_message_size(64 * 1024 * 1024);
                        if let Some(encoding) = compression.grpc_encoding() {
                            client = client.send_compressed(encoding);
                        }
                        Ok(client)
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                Ok(Transport::Grpc { clients })
            }
            Protocol::Http => {
                let base = if endpoint.contains("://") {
                    endpoint.to_string()
                } else {
                    format!("http://{endpoint}")
                };
                let url = format!("{}{}", base.trim_end_matches('/'), signal.http_path());
                url.parse::<http::Uri>()
                    .map_err(|error| format!("invalid HTTP endpoint {endpoint:?}: {error}"))?;
                let client = Client::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(pool_size.max(1))
                    .pool_idle_timeout(Duration::from_secs(90))
                    .build_http();
                Ok(Transport::Http {
                    client,
                    url,
                    content_encoding: compression.content_encoding(),
                })
            }
        }
    }

    /// Sends `body` (already compressed for HTTP; plain for gRPC, which compresses itself).
    pub(super) async fn send(
        &self,
        signal: Signal,
        connection: usize,
        body: Bytes,
        timeout: Duration,
    ) -> Answer {
        let exchange = async {
            match self {
                Transport::Grpc { clients } => {
                    let mut client = clients[connection % clients.len()].clone();
                    send_grpc(&mut client, signal, body, timeout).await
                }
                Transport::Http {
                    client,
                    url,
                    content_encoding,
                } => send_http(client, url, *content_encoding, signal, body).await,
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Answer {
                outcome: Outcome::Failed,
                status: "timeout".to_string(),
            },
        }
    }
}

async fn send_grpc(
    client: &mut tonic::client::Grpc<Channel>,
    signal: Signal,
    body: Bytes,
    timeout: Duration,
) -> Answer {
    if client.ready().await.is_err() {
        return Answer {
            outcome: Outcome::Unreachable,
            status: "transport_error".to_string(),
        };
    }
    let mut request = tonic::Request::new(body);
    request.set_timeout(timeout);
    let path = http::uri::PathAndQuery::from_static(signal.grpc_path());
    match client
        .unary(request, path, RawCodec::<Bytes>::default())
        .await
    {
        Ok(response) => match decode_partial_success(signal, response.get_ref()) {
            Ok(partial) => Answer {
                outcome: Outcome::Accepted {
                    rejected: partial.rejected,
                },
                status: "OK".to_string(),
            },
            Err(_) => Answer {
                outcome: Outcome::Failed,
                status: "bad_response".to_string(),
            },
        },
        // A status the client made up from a connection error carries that error as its
        // source; one the server sent does not.
        Err(status) if std::error::Error::source(&status).is_some() => Answer {
            outcome: Outcome::Unreachable,
            status: "transport_error".to_string(),
        },
        Err(status) => {
            let outcome = if grpc_code_is_refusal(status.code()) {
                Outcome::Refused
            } else {
                Outcome::Failed
            };
            Answer {
                outcome,
                status: grpc_code_name(status.code()).to_string(),
            }
        }
    }
}

async fn send_http(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    content_encoding: Option<&'static str>,
    signal: Signal,
    body: Bytes,
) -> Answer {
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(url)
        .header(http::header::CONTENT_TYPE, "application/x-protobuf");
    if let Some(encoding) = content_encoding {
        request = request.header(http::header::CONTENT_ENCODING, encoding);
    }
    let request = match request.body(Full::new(body)) {
        Ok(request) => request,
        Err(_) => {
            return Answer {
                outcome: Outcome::Failed,
                status: "bad_request".to_string(),
            };
        }
    };
    let response = match client.request(request).await {
        Ok(response) => response,
        Err(_) => {
            return Answer {
                outcome: Outcome::Failed,
                status: "transport_error".to_string(),
            };
        }
    };
    let status = response.status().as_u16();
    let body = match response.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Answer {
                outcome: Outcome::Failed,
                status: "transport_error".to_string(),
            };
        }
    };
    let outcome = if (200..300).contains(&status) {
        match decode_partial_success(signal, &body) {
            Ok(partial) => Outcome::Accepted {
                rejected: partial.rejected,
            },
            Err(_) => {
                return Answer {
                    outcome: Outcome::Failed,
                    status: "bad_response".to_string(),
                };
            }
        }
    } else if http_status_is_refusal(status) {
        Outcome::Refused
    } else {
        Outcome::Failed
    };
    Answer {
        outcome,
        status: status.to_string(),
    }
}

/// Compresses an OTLP/HTTP body once, when the pool is built.
pub(super) fn compress(compression: Compression, body: &[u8]) -> std::io::Result<Bytes> {
    match compression {
        Compression::None => Ok(Bytes::copy_from_slice(body)),
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(body)?;
            Ok(Bytes::from(encoder.finish()?))
        }
        Compression::Zstd => Ok(Bytes::from(zstd::bulk::compress(body, 1)?)),
    }
}
