//! `zipkin` exporter: OTLP traces to a Zipkin v2 endpoint (`POST`, JSON by default or
//! protobuf), translated with the Collector's rules (see [`translate`]).
//!
//! Outcome of a send: 2xx is success; 408, 429, 5xx and connection failures are retried
//! (honouring `Retry-After`); other 4xx are permanent (the Collector retries every
//! non-2xx; oxcol drops data a server refused as bad, as its other exporters do). A batch
//! the translator refuses (a span without ids) is permanent.

/// The Zipkin v2 protobuf model, shared with the other end (oxcol-core).
pub use oxcol_core::zipkin_proto as proto;
#[cfg(test)]
mod tests;
pub mod translate;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use oxcol_core::compression::{Encoding, compress};
use oxcol_core::{Batch, Data, ExportError, ExportOutcome, Exporter, GoDuration};
use serde::Deserialize;

use crate::client::{
    AuthSettings, ClientCredentials, TlsClientConfig, check_tls, parse_compression,
    validate_headers,
};
use crate::queue::{QueueConfig, RetryConfig, parse_retry_after};

pub const TYPE: &str = "zipkin";
pub const ALIASES: &[&str] = &["zipkin"];

/// `format:` of the request body.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Proto,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The full URL spans are posted to, e.g. `http://zipkin:9411/api/v2/spans`. Required.
    pub endpoint: String,
    /// `json` (default) or `proto`.
    pub format: Format,
    /// Accepted as in the Collector, which does not use it either: spans whose resource
    /// has no service name are sent with `OTLPResourceNoServiceName`, the name the
    /// `zipkin` receiver maps back to an empty resource.
    pub default_service_name: String,
    /// Request body compression: `gzip`, `zstd`, `deflate`, `none`. Default none.
    pub compression: String,
    /// TLS for `https://` URLs.
    pub tls: TlsClientConfig,
    /// `authenticator: bearertokenauth/NAME | basicauth/NAME`.
    pub auth: Option<AuthSettings>,
    pub headers: BTreeMap<String, String>,
    /// Deadline of one attempt. Default 5s (the Collector's zipkin default).
    pub timeout: GoDuration,
    pub sending_queue: QueueConfig,
    pub retry_on_failure: RetryConfig,
    pub max_idle_conns: Option<usize>,
    pub max_idle_conns_per_host: Option<usize>,
    pub idle_conn_timeout: Option<GoDuration>,
    pub disable_keep_alives: bool,
    /// `http://[user:password@]host:port` of an HTTP proxy (every connection is an HTTP
    /// CONNECT tunnel through it), as in otlphttp. Default "": connect directly.
    pub proxy_url: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: String::new(),
            format: Format::Json,
            default_service_name: "<missing service name>".to_string(),
            compression: String::new(),
            proxy_url: String::new(),
            tls: TlsClientConfig::default(),
            auth: None,
            headers: BTreeMap::new(),
            timeout: GoDuration::from_secs(5),
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
            max_idle_conns: None,
            max_idle_conns_per_host: None,
            idle_conn_timeout: None,
            disable_keep_alives: false,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.endpoint.is_empty() {
            errors.push("endpoint is required (e.g. http://zipkin:9411/api/v2/spans)".to_string());
        } else {
            match self.endpoint.parse::<http::Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http") | Some("https"))
                        && uri.host().is_some() =>
                {
                    errors.extend(check_tls(
                        &self.tls,
                        &self.endpoint,
                        Some(uri.scheme_str() == Some("https")),
                    ));
                }
                _ => errors.push(format!(
                    "endpoint {:?} is not a valid http:// or https:// URL",
                    self.endpoint
                )),
            }
        }
        if let Err(e) = parse_compression(&self.compression) {
            errors.push(e);
        }
        if self.timeout.get().is_zero() {
            errors.push("timeout must be greater than 0".to_string());
        }
        errors.extend(validate_headers(&self.headers));
        if let Err(e) = oxcol_core::proxy::ProxyUrl::from_setting(&self.proxy_url) {
            errors.push(e);
        }
        errors.extend(self.sending_queue.validate());
        errors.extend(self.retry_on_failure.validate());
        errors
    }
}

pub struct ZipkinExporter {
    client: Client<oxcol_core::tls::HttpsConnector, Full<Bytes>>,
    uri: http::Uri,
    headers: HeaderMap,
    credentials: Option<ClientCredentials>,
    format: Format,
    compression: Encoding,
    timeout: Duration,
}

/// Largest response body read.
const MAX_RESPONSE_BYTES: usize = 64 << 10;

impl ZipkinExporter {
    pub fn new(config: &Config) -> Result<ZipkinExporter, String> {
        let client = crate::otlphttp::pooled_client(&crate::otlphttp::ClientSettings {
            tls: &config.tls,
            timeout: config.timeout.get(),
            proxy_url: &config.proxy_url,
            idle_conn_timeout: config.idle_conn_timeout,
            max_idle_conns: config.max_idle_conns,
            max_idle_conns_per_host: config.max_idle_conns_per_host,
            disable_keep_alives: config.disable_keep_alives,
        })?;
        let uri = config
            .endpoint
            .parse::<http::Uri>()
            .map_err(|e| format!("endpoint {:?}: {e}", config.endpoint))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: {name:?} is not a valid header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("headers: the value of {name} is not valid"))?;
            headers.insert(name, value);
        }
        Ok(ZipkinExporter {
            client,
            uri,
            headers,
            credentials: None,
            format: config.format,
            compression: parse_compression(&config.compression)?,
            timeout: config.timeout.get(),
        })
    }

    /// Adds the `auth:` authenticator's credentials to every request.
    pub fn with_credentials(mut self, credentials: Option<ClientCredentials>) -> ZipkinExporter {
        self.credentials = credentials;
        self
    }
}

/// The request body for a batch of traces, in `format`.
pub fn encode(mut batch: Batch, format: Format) -> Result<Vec<u8>, ExportError> {
    let permanent = |reason: String| ExportError::Permanent { reason };
    batch.decode().map_err(|e| permanent(e.to_string()))?;
    let Data::Traces(resource_spans) = batch.data() else {
        return Err(permanent(
            "the zipkin exporter takes traces only".to_string(),
        ));
    };
    let spans = translate::from_otlp(resource_spans)
        .map_err(|e| permanent(format!("cannot translate to Zipkin: {e}")))?;
    match format {
        Format::Json => translate::encode_json(&spans).map_err(permanent),
        Format::Proto => Ok(translate::encode_proto(&spans)),
    }
}

/// Classifies a non-2xx answer: 408, 429 and 5xx are retried, other statuses are not.
pub fn classify_response(
    status: http::StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> ExportError {
    let detail = String::from_utf8_lossy(&body[..body.len().min(512)])
        .trim()
        .to_string();
    let reason = format!("HTTP {}: {}", status.as_u16(), detail);
    if status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error() {
        let after = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        ExportError::Retryable { reason, after }
    } else {
        ExportError::Permanent { reason }
    }
}

impl Exporter for ZipkinExporter {
    fn export(&self, batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>> {
        Box::pin(async move {
            let raw = encode(batch, self.format)?;
            let body = if self.compression == Encoding::Identity {
                raw
            } else {
                compress(self.compression, &raw).map_err(|e| ExportError::Permanent {
                    reason: format!("compression failed: {e}"),
                })?
            };
            let content_type = match self.format {
                Format::Json => "application/json",
                Format::Proto => "application/x-protobuf",
            };
            let mut request = Request::builder()
                .method(Method::POST)
                .uri(self.uri.clone());
            if let Some(headers) = request.headers_mut() {
                headers.extend(self.headers.clone());
                if let Some(credentials) = &self.credentials {
                    headers.insert(credentials.header.clone(), credentials.value());
                }
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static(content_type),
                );
                headers.insert(
                    http::header::USER_AGENT,
                    HeaderValue::from_static(concat!("oxcol/", env!("CARGO_PKG_VERSION"))),
                );
                if let Some(value) = self.compression.header_value() {
                    headers.insert(
                        http::header::CONTENT_ENCODING,
                        HeaderValue::from_static(value),
                    );
                }
            }
            let request =
                request
                    .body(Full::new(Bytes::from(body)))
                    .map_err(|e| ExportError::Permanent {
                        reason: format!("cannot build request: {e}"),
                    })?;
            let exchange = async {
                let response =
                    self.client
                        .request(request)
                        .await
                        .map_err(|e| ExportError::Retryable {
                            reason: format!("request failed: {e}"),
                            after: None,
                        })?;
                let (parts, body) = response.into_parts();
                // The body matters only for the error message; a cut-off one is fine.
                let body = Limited::new(body, MAX_RESPONSE_BYTES)
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                Ok::<_, ExportError>((parts, body))
            };
            let (parts, body) = tokio::time::timeout(self.timeout, exchange)
                .await
                .map_err(|_| ExportError::Retryable {
                    reason: format!("no answer within timeout {:?}", self.timeout),
                    after: None,
                })??;
            if !parts.status.is_success() {
                return Err(classify_response(parts.status, &parts.headers, &body));
            }
            Ok(ExportOutcome::default())
        })
    }
}
