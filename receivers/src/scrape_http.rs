//! The HTTP client of the pull receivers that scrape a target over HTTP (`pprof`,
//! `prometheus`): one GET with a timeout around the whole exchange, a bound on the bytes
//! read, and credentials (headers, bearer token, basic auth) added to every request.
//!
//! Plaintext only in this release: a TLS setting or an https:// target is a config error
//! (see [`TlsSettings::check`]) rather than a silent downgrade. It never retries: a pull
//! receiver's next scrape is the retry.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

/// `tls:` (Collector) or `tls_config:` (Prometheus). Accepted so configs parse, but only
/// plaintext works in this release: any TLS material, or `insecure: false` with an
/// https:// target, is reported by [`TlsSettings::check`].
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    pub insecure: bool,
    pub insecure_skip_verify: bool,
    pub ca_file: Option<String>,
    pub ca: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub server_name: Option<String>,
    pub server_name_override: Option<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
}

impl TlsSettings {
    fn has_material(&self) -> bool {
        self.ca_file.is_some()
            || self.ca.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
    }

    /// An error when a target would need TLS.
    pub fn check(&self, target: &str) -> Result<(), String> {
        if target.starts_with("https://") || self.has_material() {
            return Err(format!(
                "target {target:?} needs TLS, which this release of oxcol's scrape receivers does not support; \
                 scrape it over plaintext (an http:// endpoint, e.g. the pod-local 127.0.0.1 address) and remove the TLS settings"
            ));
        }
        Ok(())
    }
}

/// `basic_auth:` as Prometheus spells it (`password_file` is also accepted).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuth {
    pub username: String,
    pub password: Option<String>,
    pub password_file: Option<String>,
}

/// Builds the headers every request carries: the configured ones, then
/// `Authorization: Bearer ...` or `Authorization: Basic ...`. Errors never echo secrets.
pub fn credential_headers(
    headers: &BTreeMap<String, String>,
    bearer_token: Option<&str>,
    basic_auth: Option<&BasicAuth>,
) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("headers: {name:?} is not a valid header name"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("headers: the value of {name} is not a valid header value"))?;
        map.insert(name, value);
    }
    if let Some(token) = bearer_token {
        let value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| "the bearer token is not a valid header value".to_string())?;
        map.insert(http::header::AUTHORIZATION, value);
    }
    if let Some(basic) = basic_auth {
        let password = match (&basic.password, &basic.password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| format!("basic_auth.password_file {file:?} cannot be read: {e}"))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
            (None, None) => String::new(),
        };
        use base64_lite::encode;
        let value = HeaderValue::from_str(&format!(
            "Basic {}",
            encode(format!("{}:{}", basic.username, password).as_bytes())
        ))
        .map_err(|_| "basic_auth: the credentials are not a valid header value".to_string())?;
        map.insert(http::header::AUTHORIZATION, value);
    }
    Ok(map)
}

/// Why a GET failed; `reason()` is the stable label for error counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    Connect(String),
    Timeout(Duration),
    Status(u16, String),
    TooLarge(usize),
    Body(String),
}

impl FetchError {
    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::Connect(_) => "connect",
            FetchError::Timeout(_) => "timeout",
            FetchError::Status(..) => "http_status",
            FetchError::TooLarge(_) => "too_large",
            FetchError::Body(_) => "body",
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Connect(e) => write!(
                f,
                "cannot connect: {e}; is the target up and listening on this address?"
            ),
            FetchError::Timeout(t) => write!(
                f,
                "no complete answer within the timeout ({t:?}); raise timeout or check the target's load"
            ),
            FetchError::Status(code, body) => write!(f, "HTTP {code}: {body}"),
            FetchError::TooLarge(limit) => write!(
                f,
                "the answer is larger than {limit} bytes; raise the body size limit if this is expected"
            ),
            FetchError::Body(e) => write!(f, "reading the answer failed: {e}"),
        }
    }
}

/// A GET's answer.
pub struct Fetched {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// True when the body was cut at the byte bound (only with [`Overflow::Truncate`]).
    pub truncated: bool,
}

/// What to do with a body over the byte bound.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    Fail,
    Truncate,
}

#[derive(Clone)]
pub struct HttpScraper {
    client: Client<HttpConnector, Empty<Bytes>>,
    headers: HeaderMap,
}

impl HttpScraper {
    pub fn new(headers: HeaderMap, connect_timeout: Duration) -> HttpScraper {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout.min(Duration::from_secs(10))));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(2)
            .build(connector);
        HttpScraper { client, headers }
    }

    /// GETs `uri`: at most `limit` body bytes, the whole exchange within `timeout`.
    pub async fn get(
        &self,
        uri: &http::Uri,
        extra: &[(HeaderName, HeaderValue)],
        timeout: Duration,
        limit: usize,
        overflow: Overflow,
    ) -> Result<Fetched, FetchError> {
        let mut request = http::Request::builder()
            .method(http::Method::GET)
            .uri(uri.clone());
        if let Some(headers) = request.headers_mut() {
            headers.extend(self.headers.clone());
            headers.insert(
                http::header::USER_AGENT,
                HeaderValue::from_static(concat!("oxcol/", env!("CARGO_PKG_VERSION"))),
            );
            for (name, value) in extra {
                headers.insert(name.clone(), value.clone());
            }
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::Connect(format!("cannot build the request: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| FetchError::Connect(error_chain(&e)))?;
            let (parts, mut body) = response.into_parts();
            let mut buffer = BytesMut::new();
            let mut truncated = false;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| FetchError::Body(e.to_string()))?;
                if let Ok(data) = frame.into_data() {
                    if buffer.len() + data.len() > limit {
                        if overflow == Overflow::Fail {
                            return Err(FetchError::TooLarge(limit));
                        }
                        let room = limit - buffer.len();
                        buffer.extend_from_slice(&data[..room]);
                        truncated = true;
                        break;
                    }
                    buffer.extend_from_slice(&data);
                }
            }
            if !parts.status.is_success() {
                let snippet = String::from_utf8_lossy(&buffer[..buffer.len().min(200)])
                    .trim()
                    .to_string();
                return Err(FetchError::Status(parts.status.as_u16(), snippet));
            }
            Ok(Fetched {
                headers: parts.headers,
                body: buffer.freeze(),
                truncated,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| FetchError::Timeout(timeout))?
    }
}

/// An error with its sources, e.g. "client error (Connect): tcp connect error: Connection refused".
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Standard base64 (RFC 4648, with padding) for the basic-auth header; a dozen lines do
/// not justify a dependency.
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    #[test]
    fn rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ] {
            assert_eq!(encode(input.as_bytes()), expected);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_become_headers_and_errors_hide_secrets() {
        let basic = BasicAuth {
            username: "Aladdin".into(),
            password: Some("open sesame".into()),
            password_file: None,
        };
        let headers = credential_headers(
            &BTreeMap::from([("X-Team".to_string(), "core".to_string())]),
            None,
            Some(&basic),
        )
        .expect("valid");
        assert_eq!(
            headers["authorization"],
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(headers["x-team"], "core");
        let headers = credential_headers(&BTreeMap::new(), Some("tok\n"), None).expect("valid");
        assert_eq!(headers["authorization"], "Bearer tok");
        let error = credential_headers(
            &BTreeMap::from([("X".to_string(), "sec\u{7f}ret".to_string())]),
            None,
            None,
        )
        .expect_err("invalid value");
        assert!(!error.contains("sec"), "{error}");
        assert!(TlsSettings::default().check("https://a:1").is_err());
        assert!(
            TlsSettings {
                ca_file: Some("/ca.pem".into()),
                ..Default::default()
            }
            .check("http://a:1")
            .is_err()
        );
        assert!(
            TlsSettings {
                insecure: true,
                ..Default::default()
            }
            .check("http://a:1")
            .is_ok()
        );
    }
}
