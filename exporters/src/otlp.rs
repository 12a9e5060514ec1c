//! `otlp` exporter (also spelled `otlp_grpc`): OTLP over gRPC, unary Export calls.
//!
//! The batch goes on the wire as the encoded bytes it arrived in (see `oxcol_core::grpc`),
//! so a relay never re-encodes. Failures are classified by the OTLP spec: CANCELLED,
//! DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS are retryable;
//! RESOURCE_EXHAUSTED only with a RetryInfo; everything else is permanent.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use futures::future::BoxFuture;
use oxcol_core::grpc::RawCodec;
use oxcol_core::rpc_status::{ExportResponse, retry_delay_from_details};
use oxcol_core::{Batch, ExportError, ExportOutcome, Exporter, GoDuration};
use prost::Message;
use serde::Deserialize;
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::client::{
    AuthSettings, ClientCredentials, TlsClientConfig, check_tls, parse_compression, uses_tls,
    validate_headers,
};
use crate::queue::{QueueConfig, RetryConfig};

pub const TYPE: &str = "otlp";
pub const ALIASES: &[&str] = &["otlp", "otlp_grpc"];

/// Keepalive settings of the gRPC client.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveConfig {
    pub time: Option<GoDuration>,
    pub timeout: Option<GoDuration>,
    pub permit_without_stream: bool,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `host:port`, `http://host:port` (plaintext) or `https://host:port`. Required.
    pub endpoint: String,
    /// Default `gzip`, as in the Collector.
    pub compression: String,
    /// TLS: on for `https://` endpoints and for endpoints without a scheme unless
    /// `insecure: true`. See `oxcol_core::tls::TlsClientConfig`.
    pub tls: TlsClientConfig,
    /// `authenticator: bearertokenauth/NAME | basicauth/NAME`: credentials on every request.
    pub auth: Option<AuthSettings>,
    /// Sent as gRPC metadata with every request. Redacted by `print-config`.
    pub headers: BTreeMap<String, String>,
    /// Deadline of one attempt. Default 5s.
    pub timeout: GoDuration,
    pub sending_queue: QueueConfig,
    pub retry_on_failure: RetryConfig,
    pub keepalive: Option<KeepaliveConfig>,
    /// Accepted for compatibility; oxcol connects to the resolved address directly.
    pub balancer_name: Option<String>,
    pub wait_for_ready: bool,
    pub read_buffer_size: Option<usize>,
    pub write_buffer_size: Option<usize>,
    pub authority: Option<String>,
    /// Largest response oxcol reads. Default 4 MiB.
    pub max_recv_msg_size_mib: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: String::new(),
            compression: "gzip".to_string(),
            tls: TlsClientConfig::default(),
            auth: None,
            headers: BTreeMap::new(),
            timeout: GoDuration::from_secs(5),
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
            keepalive: None,
            balancer_name: None,
            wait_for_ready: false,
            read_buffer_size: None,
            write_buffer_size: None,
            authority: None,
            max_recv_msg_size_mib: None,
        }
    }
}

/// Splits an endpoint into (`http://host:port` URI, scheme_is_https).
fn endpoint_uri(endpoint: &str) -> (String, Option<bool>) {
    if let Some(rest) = endpoint.strip_prefix("https://") {
        (format!("http://{}", rest.trim_end_matches('/')), Some(true))
    } else if let Some(rest) = endpoint.strip_prefix("http://") {
        (
            format!("http://{}", rest.trim_end_matches('/')),
            Some(false),
        )
    } else {
        let rest = endpoint.strip_prefix("dns:///").unwrap_or(endpoint);
        (format!("http://{rest}"), None)
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.endpoint.is_empty() {
            errors.push(
                "endpoint is required: the host:port of the OTLP/gRPC destination".to_string(),
            );
        } else {
            let (uri, https) = endpoint_uri(&self.endpoint);
            if let Err(e) = Endpoint::from_shared(uri) {
                errors.push(format!(
                    "endpoint {:?} is not a valid address: {e}",
                    self.endpoint
                ));
            }
            errors.extend(check_tls(&self.tls, &self.endpoint, https));
        }
        if let Err(e) = parse_compression(&self.compression) {
            errors.push(e);
        }
        if self.compression == "deflate" {
            errors.push(
                "compression: deflate is not available for gRPC; use gzip, zstd or none"
                    .to_string(),
            );
        }
        errors.extend(validate_headers(&self.headers));
        errors.extend(self.sending_queue.validate());
        errors.extend(self.retry_on_failure.validate());
        errors
    }
}

pub struct OtlpGrpcExporter {
    channel: Channel,
    metadata: MetadataMap,
    /// `auth:` credentials, added to each request as they are at that moment.
    credentials: Option<(MetadataKey<tonic::metadata::Ascii>, ClientCredentials)>,
    /// `headers_setter` headers, computed from each batch's client metadata; the
    /// exporter's own `headers:` win on the same name.
    context_headers: Option<oxcol_core::client::ContextHeaders>,
    compression: Option<CompressionEncoding>,
    timeout: Duration,
    max_response_bytes: usize,
}

impl OtlpGrpcExporter {
    /// Builds the exporter; the connection is made lazily on the first send.
    pub fn new(config: &Config) -> Result<OtlpGrpcExporter, String> {
        let channel = lazy_channel(config)?;
        let metadata = grpc_metadata(&config.headers)?;
        let compression = match config.compression.as_str() {
            "gzip" => Some(CompressionEncoding::Gzip),
            "zstd" => Some(CompressionEncoding::Zstd),
            _ => None,
        };
        Ok(OtlpGrpcExporter {
            channel,
            metadata,
            credentials: None,
            context_headers: None,
            compression,
            timeout: config.timeout.get(),
            max_response_bytes: config.max_recv_msg_size_mib.unwrap_or(4) << 20,
        })
    }
}

/// The gRPC channel of an `otlp` exporter config (endpoint, TLS, keepalive, connect
/// timeout); it connects lazily, on the first request. Needs the async runtime.
pub fn lazy_channel(config: &Config) -> Result<Channel, String> {
    let (uri, https) = endpoint_uri(&config.endpoint);
    let mut endpoint =
        Endpoint::from_shared(uri).map_err(|e| format!("endpoint {:?}: {e}", config.endpoint))?;
    endpoint = endpoint
        .connect_timeout(config.timeout.get().max(Duration::from_secs(1)))
        .tcp_nodelay(true);
    if let Some(keepalive) = &config.keepalive {
        if let Some(time) = keepalive.time {
            endpoint = endpoint.http2_keep_alive_interval(time.get());
        }
        if let Some(timeout) = keepalive.timeout {
            endpoint = endpoint.keep_alive_timeout(timeout.get());
        }
        endpoint = endpoint.keep_alive_while_idle(keepalive.permit_without_stream);
    }
    Ok(if uses_tls(&config.tls, https) {
        let connector = oxcol_core::tls::GrpcTlsConnector::new(
            &config.tls,
            config.timeout.get().max(Duration::from_secs(1)),
        )
        .map_err(|e| format!("tls: {e}"))?;
        endpoint.connect_with_connector_lazy(connector)
    } else {
        endpoint.connect_lazy()
    })
}

/// `headers:` as gRPC metadata (names lower-cased).
pub fn grpc_metadata(headers: &BTreeMap<String, String>) -> Result<MetadataMap, String> {
    let mut metadata = MetadataMap::new();
    for (name, value) in headers {
        let key = MetadataKey::from_str(&name.to_ascii_lowercase())
            .map_err(|_| format!("headers: {name:?} is not a valid gRPC metadata key"))?;
        let value = MetadataValue::from_str(value)
            .map_err(|_| format!("headers: the value of {name:?} is not valid gRPC metadata"))?;
        metadata.insert(key, value);
    }
    Ok(metadata)
}

impl OtlpGrpcExporter {
    /// Adds the `auth:` authenticator's credentials to every request.
    pub fn with_credentials(
        mut self,
        credentials: Option<ClientCredentials>,
    ) -> Result<OtlpGrpcExporter, String> {
        if let Some(credentials) = credentials {
            let key = MetadataKey::from_str(credentials.header.as_str())
                .map_err(|_| "auth: invalid header name".to_string())?;
            credentials_metadata(&credentials.value())?;
            self.credentials = Some((key, credentials));
        }
        Ok(self)
    }
}

impl OtlpGrpcExporter {
    /// Adds a `headers_setter`'s headers, computed for each batch from its metadata.
    pub fn with_context_headers(
        mut self,
        headers: Option<oxcol_core::client::ContextHeaders>,
    ) -> OtlpGrpcExporter {
        self.context_headers = headers;
        self
    }
}

/// The credentials as gRPC metadata, marked sensitive (never logged).
fn credentials_metadata(
    value: &http::HeaderValue,
) -> Result<MetadataValue<tonic::metadata::Ascii>, String> {
    let mut value = MetadataValue::try_from(value.as_bytes())
        .map_err(|_| "auth: the credentials are not valid gRPC metadata".to_string())?;
    value.set_sensitive(true);
    Ok(value)
}

/// Classifies a gRPC status per the OTLP spec.
pub fn classify_status(status: &tonic::Status) -> ExportError {
    let reason = format!("gRPC status {:?}: {}", status.code(), status.message());
    let delay = retry_delay_from_details(status.details());
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => ExportError::Retryable {
            reason,
            after: delay,
        },
        Code::ResourceExhausted if delay.is_some() => ExportError::Retryable {
            reason,
            after: delay,
        },
        // tonic's own `Unknown: transport error` when the connection broke before an
        // answer (e.g. the backend was killed mid-request): no answer from the backend,
        // so retried, never dropped. A status the server sent has no source.
        Code::Unknown if std::error::Error::source(status).is_some() => ExportError::Retryable {
            reason: format!("{reason} (the connection broke before an answer)"),
            after: None,
        },
        _ => ExportError::Permanent { reason },
    }
}

impl Exporter for OtlpGrpcExporter {
    fn sends_encoded(&self) -> bool {
        true
    }

    fn export(&self, batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>> {
        Box::pin(async move {
            let signal = batch.signal();
            let mut grpc = tonic::client::Grpc::new(self.channel.clone())
                .max_decoding_message_size(self.max_response_bytes);
            if let Some(encoding) = self.compression {
                grpc = grpc.send_compressed(encoding);
            }
            grpc = grpc
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd);
            grpc.ready().await.map_err(|e| ExportError::Retryable {
                reason: format!("connection not ready: {e}"),
                after: None,
            })?;
            let from_context = oxcol_core::client::ContextHeaders::for_batch(
                self.context_headers.as_ref(),
                &batch,
            )?;
            let mut request = tonic::Request::new(batch);
            *request.metadata_mut() = self.metadata.clone();
            for (name, value) in from_context {
                let (Ok(key), Ok(value)) = (
                    MetadataKey::from_bytes(name.as_str().as_bytes()),
                    credentials_metadata(&value),
                ) else {
                    continue;
                };
                if !request.metadata().contains_key(&key) {
                    request.metadata_mut().insert(key, value);
                }
            }
            if let Some((key, credentials)) = &self.credentials {
                // The value of the moment: a token file may have been rotated.
                if let Ok(value) = credentials_metadata(&credentials.value()) {
                    request.metadata_mut().insert(key.clone(), value);
                }
            }
            request.set_timeout(self.timeout);
            let path = http::uri::PathAndQuery::from_static(signal.grpc_path());
            let response = tokio::time::timeout(
                self.timeout + Duration::from_millis(100),
                grpc.unary(request, path, RawCodec::<Batch>::default()),
            )
            .await
            .map_err(|_| ExportError::Retryable {
                reason: format!("no answer within timeout {:?}", self.timeout),
                after: None,
            })?
            .map_err(|status| classify_status(&status))?;
            let body = response.into_inner();
            let partial = ExportResponse::decode(body)
                .ok()
                .and_then(|r| r.partial_success)
                .unwrap_or_default();
            Ok(ExportOutcome {
                rejected: partial.rejected.max(0) as u64,
                message: partial.error_message,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcol_core::rpc_status::retry_info_details;

    #[test]
    fn a_broken_connection_is_retryable_a_server_unknown_is_not() {
        // What tonic's client makes of a transport failure: Unknown, with the error as source.
        let broken = tonic::Status::from_error(Box::new(std::io::Error::other("transport error")));
        assert_eq!(broken.code(), Code::Unknown);
        assert!(matches!(
            classify_status(&broken),
            ExportError::Retryable { .. }
        ));
        // Unknown as the server's answer has no source: permanent, as the spec says.
        assert!(matches!(
            classify_status(&tonic::Status::unknown("transport error")),
            ExportError::Permanent { .. }
        ));
    }

    #[test]
    fn classification_follows_the_otlp_spec() {
        let retryable = [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ];
        for code in retryable {
            assert!(
                matches!(
                    classify_status(&tonic::Status::new(code, "x")),
                    ExportError::Retryable { .. }
                ),
                "{code:?}"
            );
        }
        let permanent = [
            Code::Unknown,
            Code::InvalidArgument,
            Code::NotFound,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::Unimplemented,
            Code::Internal,
            Code::ResourceExhausted,
        ];
        for code in permanent {
            assert!(
                matches!(
                    classify_status(&tonic::Status::new(code, "x")),
                    ExportError::Permanent { .. }
                ),
                "{code:?}"
            );
        }
        let details = retry_info_details(8, "slow", Duration::from_secs(3));
        let throttled =
            tonic::Status::with_details(Code::ResourceExhausted, "slow", details.into());
        assert_eq!(
            classify_status(&throttled),
            ExportError::Retryable {
                reason: "gRPC status ResourceExhausted: slow".into(),
                after: Some(Duration::from_secs(3))
            }
        );
    }

    #[test]
    fn validation_names_every_problem() {
        let config = Config {
            compression: "brotli".into(),
            ..Config::default()
        };
        let errors = config.validate();
        assert!(
            errors.iter().any(|e| e.contains("endpoint is required")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.contains("brotli")), "{errors:?}");
        let tls = Config {
            endpoint: "collector:4317".into(),
            ..Config::default()
        };
        assert!(tls.validate().is_empty(), "{:?}", tls.validate());
        let material_on_plaintext = Config {
            endpoint: "http://collector:4317".into(),
            tls: TlsClientConfig {
                ca_file: Some("/ca.pem".into()),
                ..Default::default()
            },
            ..Config::default()
        };
        assert!(
            material_on_plaintext
                .validate()
                .iter()
                .any(|e| e.contains("plaintext"))
        );
        let plain = Config {
            endpoint: "http://collector:4317".into(),
            ..Config::default()
        };
        assert!(plain.validate().is_empty(), "{:?}", plain.validate());
    }
}
