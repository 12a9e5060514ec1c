//! `otlphttp` exporter (also spelled `otlp_http`): OTLP over HTTP POST, protobuf (the
//! encoded bytes as they arrived) or JSON.
//!
//! Retryable per the OTLP spec: 429, 502, 503, 504 and connection failures, honouring
//! `Retry-After`. Every other status is permanent (400 is bad data; 500 is not retried,
//! unlike remote write). A 2xx body may carry a partial success, which is counted and
//! never retried.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use oxcol_core::compression::{Encoding, compress};
use oxcol_core::rpc_status::{ExportResponse, RpcStatus};
use oxcol_core::{Batch, ExportError, ExportOutcome, Exporter, GoDuration, Signal};
use prost::Message;
use serde::Deserialize;

use crate::client::{
    AuthSettings, ClientCredentials, TlsClientConfig, check_tls, parse_compression,
    validate_headers,
};
use crate::queue::{QueueConfig, RetryConfig, parse_retry_after};

pub const TYPE: &str = "otlphttp";
pub const ALIASES: &[&str] = &["otlphttp", "otlp_http"];

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WireEncoding {
    #[default]
    Proto,
    Json,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Base URL; `/v1/traces`, `/v1/metrics`, `/v1/logs` are appended.
    pub endpoint: String,
    /// Full URLs per signal; override `endpoint` for that signal.
    pub traces_endpoint: Option<String>,
    pub metrics_endpoint: Option<String>,
    pub logs_endpoint: Option<String>,
    /// `proto` (default) or `json`.
    pub encoding: WireEncoding,
    /// Default `gzip`, as in the Collector.
    pub compression: String,
    /// TLS for `https://` URLs. See `oxcol_core::tls::TlsClientConfig`.
    pub tls: TlsClientConfig,
    /// `authenticator: bearertokenauth/NAME | basicauth/NAME`: credentials on every request.
    pub auth: Option<AuthSettings>,
    pub headers: BTreeMap<String, String>,
    /// Deadline of one attempt. Default 30s, as in the Collector.
    pub timeout: GoDuration,
    pub sending_queue: QueueConfig,
    pub retry_on_failure: RetryConfig,
    pub read_buffer_size: Option<usize>,
    pub write_buffer_size: Option<usize>,
    pub max_idle_conns: Option<usize>,
    pub max_idle_conns_per_host: Option<usize>,
    pub max_conns_per_host: Option<usize>,
    pub idle_conn_timeout: Option<GoDuration>,
    pub disable_keep_alives: bool,
    pub http2_read_idle_timeout: Option<GoDuration>,
    pub http2_ping_timeout: Option<GoDuration>,
    /// `http://[user:password@]host:port` of an HTTP proxy: every connection is an HTTP
    /// CONNECT tunnel through it. Default "": connect directly.
    pub proxy_url: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: String::new(),
            traces_endpoint: None,
            metrics_endpoint: None,
            logs_endpoint: None,
            encoding: WireEncoding::Proto,
            compression: "gzip".to_string(),
            tls: TlsClientConfig::default(),
            auth: None,
            headers: BTreeMap::new(),
            timeout: GoDuration::from_secs(30),
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
            read_buffer_size: None,
            write_buffer_size: None,
            max_idle_conns: None,
            max_idle_conns_per_host: None,
            max_conns_per_host: None,
            idle_conn_timeout: None,
            disable_keep_alives: false,
            http2_read_idle_timeout: None,
            http2_ping_timeout: None,
            proxy_url: String::new(),
        }
    }
}

impl Config {
    /// The URL data of `signal` is posted to.
    pub fn url_for(&self, signal: Signal) -> String {
        let specific = match signal {
            Signal::Traces => &self.traces_endpoint,
            Signal::Metrics => &self.metrics_endpoint,
            Signal::Logs => &self.logs_endpoint,
        };
        match specific {
            Some(url) => url.clone(),
            None => format!(
                "{}{}",
                self.endpoint.trim_end_matches('/'),
                signal.http_path()
            ),
        }
    }

    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.endpoint.is_empty()
            && (self.traces_endpoint.is_none()
                || self.metrics_endpoint.is_none()
                || self.logs_endpoint.is_none())
        {
            errors.push(
                "endpoint is required (or all of traces_endpoint, metrics_endpoint, logs_endpoint)"
                    .to_string(),
            );
        }
        for signal in Signal::ALL {
            if self.endpoint.is_empty() && self.url_for(signal).starts_with('/') {
                continue;
            }
            let url = self.url_for(signal);
            match url.parse::<http::Uri>() {
                Ok(uri) if matches!(uri.scheme_str(), Some("http") | Some("https")) => {
                    errors.extend(check_tls(
                        &self.tls,
                        &url,
                        Some(uri.scheme_str() == Some("https")),
                    ));
                }
                _ => errors.push(format!("{url:?} is not a valid http:// URL")),
            }
        }
        errors.dedup();
        if let Err(e) = parse_compression(&self.compression) {
            errors.push(e);
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

pub struct OtlpHttpExporter {
    client: Client<oxcol_core::tls::HttpsConnector, Full<Bytes>>,
    urls: [(Signal, http::Uri); 3],
    headers: HeaderMap,
    /// `auth:` credentials, added to each request as they are at that moment.
    credentials: Option<oxcol_core::auth::ClientCredentials>,
    /// `headers_setter` headers, computed from each batch's client metadata; the
    /// exporter's own `headers:` win on the same name.
    context_headers: Option<oxcol_core::client::ContextHeaders>,
    encoding: WireEncoding,
    compression: Encoding,
    timeout: Duration,
}

/// Largest response body read (the OTLP spec's recommended response limit).
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// The HTTP client of an `otlphttp` exporter config (TLS, proxy, connection pool).
/// Needs the async runtime when it sends.
pub fn http_client(
    config: &Config,
) -> Result<Client<oxcol_core::tls::HttpsConnector, Full<Bytes>>, String> {
    pooled_client(&ClientSettings {
        tls: &config.tls,
        timeout: config.timeout.get(),
        proxy_url: &config.proxy_url,
        idle_conn_timeout: config.idle_conn_timeout,
        max_idle_conns: config.max_idle_conns,
        max_idle_conns_per_host: config.max_idle_conns_per_host,
        disable_keep_alives: config.disable_keep_alives,
    })
}

/// The confighttp client settings of an HTTP exporter that shape its connection pool.
pub struct ClientSettings<'a> {
    pub tls: &'a oxcol_core::tls::TlsClientConfig,
    /// The exporter's timeout; connecting gets at most 10 s of it.
    pub timeout: Duration,
    pub proxy_url: &'a str,
    pub idle_conn_timeout: Option<oxcol_core::GoDuration>,
    pub max_idle_conns: Option<usize>,
    /// Wins over `max_idle_conns` (the pool is per host).
    pub max_idle_conns_per_host: Option<usize>,
    pub disable_keep_alives: bool,
}

/// An HTTP/1.1 and HTTP/2 client with TLS, an optional proxy and the pool settings, run
/// on oxcol's runtime (otlphttp, zipkin).
pub fn pooled_client(
    settings: &ClientSettings,
) -> Result<Client<oxcol_core::tls::HttpsConnector, Full<Bytes>>, String> {
    let connector = oxcol_core::tls::https_connector_with_proxy(
        Some(settings.tls),
        settings.timeout.min(Duration::from_secs(10)),
        oxcol_core::proxy::ProxyUrl::from_setting(settings.proxy_url)?,
    )?;
    let mut builder = Client::builder(TokioExecutor::new());
    if let Some(idle) = settings.idle_conn_timeout {
        builder.pool_idle_timeout(idle.get());
    }
    if let Some(max) = settings.max_idle_conns_per_host.or(settings.max_idle_conns) {
        builder.pool_max_idle_per_host(max);
    }
    if settings.disable_keep_alives {
        builder.pool_max_idle_per_host(0);
    }
    Ok(builder.build(connector))
}

impl OtlpHttpExporter {
    pub fn new(config: &Config) -> Result<OtlpHttpExporter, String> {
        let client = http_client(config)?;
        let parse = |signal: Signal| -> Result<(Signal, http::Uri), String> {
            let url = config.url_for(signal);
            url.parse::<http::Uri>()
                .map(|u| (signal, u))
                .map_err(|e| format!("{url:?}: {e}"))
        };
        let urls = [
            parse(Signal::Metrics)?,
            parse(Signal::Traces)?,
            parse(Signal::Logs)?,
        ];
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: {name:?} is not a valid header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("headers: the value of {name} is not valid"))?;
            headers.insert(name, value);
        }
        Ok(OtlpHttpExporter {
            client,
            urls,
            headers,
            credentials: None,
            context_headers: None,
            encoding: config.encoding,
            compression: parse_compression(&config.compression)?,
            timeout: config.timeout.get(),
        })
    }

    /// Adds the `auth:` authenticator's credentials to every request.
    pub fn with_credentials(mut self, credentials: Option<ClientCredentials>) -> OtlpHttpExporter {
        if let Some(credentials) = credentials {
            self.credentials = Some(credentials);
        }
        self
    }

    /// Adds a `headers_setter`'s headers, computed for each batch from its metadata.
    pub fn with_context_headers(
        mut self,
        headers: Option<oxcol_core::client::ContextHeaders>,
    ) -> OtlpHttpExporter {
        self.context_headers = headers;
        self
    }

    fn body(&self, mut batch: Batch) -> Result<Vec<u8>, ExportError> {
        let permanent = |reason: String| ExportError::Permanent { reason };
        match self.encoding {
            // One encode for decoded data (no prost encoded_len() before it); a single
            // encoded segment is copied as before.
            WireEncoding::Proto => Ok(Vec::from(batch.to_bytes())),
            WireEncoding::Json => crate::otlp_json::encode(&mut batch)
                .map(Vec::from)
                .map_err(permanent),
        }
    }
}

/// Classifies an HTTP answer per the OTLP spec.
pub fn classify_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ExportError {
    let detail = RpcStatus::decode(body)
        .ok()
        .map(|s| s.message)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&body[..body.len().min(512)])
                .trim()
                .to_string()
        });
    let reason = format!("HTTP {}: {}", status.as_u16(), detail);
    match status.as_u16() {
        429 | 502 | 503 | 504 => {
            let after = headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            ExportError::Retryable { reason, after }
        }
        _ => ExportError::Permanent { reason },
    }
}

impl Exporter for OtlpHttpExporter {
    fn sends_encoded(&self) -> bool {
        self.encoding == WireEncoding::Proto
    }

    fn export(&self, batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>> {
        Box::pin(async move {
            let signal = batch.signal();
            let uri = self
                .urls
                .iter()
                .find(|(s, _)| *s == signal)
                .map(|(_, u)| u.clone())
                .expect("a URL per signal is built in new()");
            let from_context = oxcol_core::client::ContextHeaders::for_batch(
                self.context_headers.as_ref(),
                &batch,
            )?;
            let raw = self.body(batch)?;
            let body = if self.compression == Encoding::Identity {
                raw
            } else {
                compress(self.compression, &raw).map_err(|e| ExportError::Permanent {
                    reason: format!("compression failed: {e}"),
                })?
            };
            let content_type = match self.encoding {
                WireEncoding::Proto => "application/x-protobuf",
                WireEncoding::Json => "application/json",
            };
            let mut request = Request::builder().method(Method::POST).uri(uri);
            let headers = request
                .headers_mut()
                .expect("builder has no error before body()");
            headers.extend(self.headers.clone());
            for (name, value) in from_context {
                if !headers.contains_key(&name) {
                    headers.insert(name, value);
                }
            }
            if let Some(credentials) = &self.credentials {
                // The value of the moment: a token file may have been rotated.
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
                let body = Limited::new(body, MAX_RESPONSE_BYTES)
                    .collect()
                    .await
                    .map_err(|e| ExportError::Retryable {
                        reason: format!("reading the response failed: {e}"),
                        after: None,
                    })?
                    .to_bytes();
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
            let is_json = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            let outcome = if is_json {
                let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let partial = &value["partialSuccess"];
                let rejected = ["rejectedDataPoints", "rejectedSpans", "rejectedLogRecords"]
                    .iter()
                    .find_map(|k| {
                        partial[*k]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .or_else(|| partial[*k].as_u64())
                    })
                    .unwrap_or(0);
                ExportOutcome {
                    rejected,
                    message: partial["errorMessage"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                }
            } else {
                let partial = ExportResponse::decode(body)
                    .ok()
                    .and_then(|r| r.partial_success)
                    .unwrap_or_default();
                ExportOutcome {
                    rejected: partial.rejected.max(0) as u64,
                    message: partial.error_message,
                }
            };
            Ok(outcome)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn only_429_502_503_504_are_retried() {
        let headers = HeaderMap::new();
        for code in [429u16, 502, 503, 504] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(
                matches!(
                    classify_response(status, &headers, b""),
                    ExportError::Retryable { .. }
                ),
                "{code}"
            );
        }
        for code in [400u16, 401, 403, 404, 413, 500, 501] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(
                matches!(
                    classify_response(status, &headers, b""),
                    ExportError::Permanent { .. }
                ),
                "{code}"
            );
        }
        let mut throttled = HeaderMap::new();
        throttled.insert(http::header::RETRY_AFTER, HeaderValue::from_static("4"));
        assert_eq!(
            classify_response(StatusCode::TOO_MANY_REQUESTS, &throttled, b"slow down"),
            ExportError::Retryable {
                reason: "HTTP 429: slow down".into(),
                after: Some(Duration::from_secs(4))
            }
        );
        let status_body = RpcStatus {
            code: 3,
            message: "bad metric name".into(),
            details: vec![],
        }
        .encode_to_vec();
        assert_eq!(
            classify_response(StatusCode::BAD_REQUEST, &headers, &status_body),
            ExportError::Permanent {
                reason: "HTTP 400: bad metric name".into()
            }
        );
    }

    #[test]
    fn urls_per_signal() {
        let config = Config {
            endpoint: "http://gw:4318/".into(),
            logs_endpoint: Some("http://logs:9000/ingest".into()),
            ..Config::default()
        };
        assert_eq!(config.url_for(Signal::Metrics), "http://gw:4318/v1/metrics");
        assert_eq!(config.url_for(Signal::Logs), "http://logs:9000/ingest");
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let https = Config {
            endpoint: "https://gw:4318".into(),
            ..Config::default()
        };
        assert!(https.validate().is_empty(), "{:?}", https.validate());
        let bad_version = Config {
            endpoint: "https://gw:4318".into(),
            tls: TlsClientConfig {
                min_version: Some("1.1".into()),
                ..Default::default()
            },
            ..Config::default()
        };
        assert!(
            bad_version
                .validate()
                .iter()
                .any(|e| e.contains("min_version"))
        );
    }

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Reads one HTTP head (up to the blank line) and returns it as text.
    async fn read_head(stream: &mut TcpStream) -> Option<String> {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.ok()? == 0 {
                return None;
            }
            head.push(byte[0]);
        }
        Some(String::from_utf8_lossy(&head).into_owned())
    }

    /// An OTLP/HTTP target answering 200 to every request; records request lines.
    async fn target(seen: Arc<Mutex<Vec<String>>>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    while let Some(head) = read_head(&mut stream).await {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        let mut body = vec![0u8; length];
                        if stream.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        seen.lock()
                            .expect("lock")
                            .push(head.lines().next().unwrap_or_default().to_string());
                        if stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    /// A CONNECT proxy that counts tunnels and records each CONNECT head; `refuse`
    /// answers 403 instead of tunnelling.
    /// A CONNECT proxy on a free port that counts tunnels and keeps each request head;
    /// with `refuse` it answers 403. Also used by the zipkin exporter's tests.
    pub(crate) async fn connect_proxy(
        tunnels: Arc<AtomicUsize>,
        heads: Arc<Mutex<Vec<String>>>,
        refuse: bool,
    ) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (tunnels, heads) = (tunnels.clone(), heads.clone());
                tokio::spawn(async move {
                    let Some(head) = read_head(&mut client).await else {
                        return;
                    };
                    heads.lock().expect("lock").push(head.clone());
                    let target = head
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_string();
                    if refuse || !head.starts_with("CONNECT ") {
                        let _ = client
                            .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                            .await;
                        return;
                    }
                    let Ok(mut upstream) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tunnels.fetch_add(1, Ordering::SeqCst);
                    if client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .is_ok()
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        });
        port
    }

    fn metrics_batch() -> Batch {
        Batch::from_metrics(vec![
            opentelemetry_proto::tonic::metrics::v1::ResourceMetrics::default(),
        ])
    }

    #[tokio::test]
    async fn proxy_url_sends_every_request_through_one_connect_tunnel() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let target_port = target(seen.clone()).await;
        let (tunnels, heads) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(Mutex::new(Vec::new())),
        );
        let proxy_port = connect_proxy(tunnels.clone(), heads.clone(), false).await;
        let config = Config {
            endpoint: format!("http://127.0.0.1:{target_port}"),
            compression: "none".into(),
            proxy_url: format!("http://otel:s3cret@127.0.0.1:{proxy_port}"),
            timeout: GoDuration::from_secs(5),
            ..Config::default()
        };
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let exporter = OtlpHttpExporter::new(&config).expect("exporter");
        exporter
            .export(metrics_batch())
            .await
            .expect("first export");
        exporter
            .export(metrics_batch())
            .await
            .expect("second export");
        // One tunnel, reused by the pooled connection for both requests.
        assert_eq!(tunnels.load(Ordering::SeqCst), 1);
        assert_eq!(
            *seen.lock().expect("lock"),
            vec!["POST /v1/metrics HTTP/1.1".to_string(); 2]
        );
        let heads = heads.lock().expect("lock").clone();
        assert!(
            heads[0].starts_with(&format!("CONNECT 127.0.0.1:{target_port} HTTP/1.1\r\n")),
            "{heads:?}"
        );
        // "otel:s3cret" in base64.
        assert!(
            heads[0].contains("proxy-authorization: Basic b3RlbDpzM2NyZXQ=")
                || heads[0].contains("Proxy-Authorization: Basic b3RlbDpzM2NyZXQ="),
            "{heads:?}"
        );

        // Without proxy_url the proxy sees nothing.
        let direct = OtlpHttpExporter::new(&Config {
            proxy_url: String::new(),
            ..config.clone()
        })
        .expect("exporter");
        direct.export(metrics_batch()).await.expect("direct export");
        assert_eq!(tunnels.load(Ordering::SeqCst), 1);
        assert_eq!(seen.lock().expect("lock").len(), 3);
    }

    #[tokio::test]
    async fn a_proxy_that_refuses_the_tunnel_is_a_retryable_failure() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let target_port = target(seen.clone()).await;
        let (tunnels, heads) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(Mutex::new(Vec::new())),
        );
        let proxy_port = connect_proxy(tunnels.clone(), heads.clone(), true).await;
        let config = Config {
            endpoint: format!("http://127.0.0.1:{target_port}"),
            proxy_url: format!("http://127.0.0.1:{proxy_port}"),
            ..Config::default()
        };
        let exporter = OtlpHttpExporter::new(&config).expect("exporter");
        match exporter.export(metrics_batch()).await {
            Err(ExportError::Retryable { reason, .. }) => {
                assert!(reason.contains("request failed"), "{reason}")
            }
            other => panic!("expected a retryable failure, got {other:?}"),
        }
        assert!(seen.lock().expect("lock").is_empty());
        assert_eq!(heads.lock().expect("lock").len(), 1);
    }

    #[test]
    fn proxy_url_is_validated() {
        let config = Config {
            endpoint: "http://gw:4318".into(),
            proxy_url: "socks5://proxy:1080".into(),
            ..Config::default()
        };
        let errors = config.validate();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("http:// proxies"), "{errors:?}");
        let ok = Config {
            endpoint: "http://gw:4318".into(),
            proxy_url: "http://proxy:3128".into(),
            ..Config::default()
        };
        assert!(ok.validate().is_empty(), "{:?}", ok.validate());
    }
}
