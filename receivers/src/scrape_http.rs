//! The HTTP client of the pull receivers that scrape a target over HTTP (`pprof`,
//! `prometheus`): one GET with a timeout around the whole exchange, a bound on the bytes
//! read, and credentials (headers, bearer token, basic auth) added to every request.
//!
//! `https://` targets use TLS through the shared client builder
//! (`oxcol_core::tls::https_connector`, see docs/security.md): the system CA pool by
//! default, or the `tls`/`tls_config` settings. `http://` targets are plaintext; TLS
//! material set for a job/receiver that only has `http://` targets is a config error
//! rather than a silent downgrade. It never retries: a pull receiver's next scrape is the
//! retry.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use oxcol_core::tls::{HttpsConnector, TlsClientConfig, https_connector};
use serde::Deserialize;

/// `tls:` (Collector `configtls` spelling) or `tls_config:` (Prometheus spelling), for
/// `https://` targets. Both spellings are accepted: Prometheus' `ca`/`cert`/`key` (inline
/// PEM), `server_name`, `min_version: TLS12|TLS13`; the Collector's `ca_pem`/`cert_pem`/
/// `key_pem`, `server_name_override`, `min_version: "1.2"|"1.3"`. Every key defaults to
/// unset: verify against the system CA pool, TLS 1.2 minimum, no client certificate.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// Accepted for Collector compatibility; the URL scheme decides TLS. Default false.
    pub insecure: bool,
    /// Accept any server certificate. Default false.
    pub insecure_skip_verify: bool,
    pub ca_file: Option<String>,
    /// Inline CA PEM (Prometheus `ca`, Collector `ca_pem`).
    pub ca: Option<String>,
    pub ca_pem: Option<String>,
    /// Client certificate for mTLS (file or inline PEM).
    pub cert_file: Option<String>,
    pub cert: Option<String>,
    pub cert_pem: Option<String>,
    pub key_file: Option<String>,
    pub key: Option<String>,
    pub key_pem: Option<String>,
    /// Name checked in the target's certificate instead of the host (Prometheus spelling).
    pub server_name: Option<String>,
    /// The same, Collector spelling.
    pub server_name_override: Option<String>,
    /// `TLS12`/`TLS13` or `1.2`/`1.3`. Default 1.2.
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    /// Re-read `ca_file`, `cert_file` and `key_file` at the first new connection after this
    /// interval. Default 1m when any of them is set (Prometheus re-reads rotated TLS files
    /// without a restart, and so do scrapes here).
    pub reload_interval: Option<oxcol_core::GoDuration>,
}

/// [`TlsSettings::reload_interval`] when files are set and it is not.
const DEFAULT_RELOAD: oxcol_core::GoDuration = oxcol_core::GoDuration::from_secs(60);

impl TlsSettings {
    /// Whether anything that only matters with TLS is set.
    pub fn has_material(&self) -> bool {
        self.client_config().is_ok_and(|c| {
            c.configures_tls_material()
                || c.insecure_skip_verify
                || c.server_name_override.is_some()
        })
    }

    /// The shared client TLS configuration (`oxcol_core::tls`) these keys stand for.
    pub fn client_config(&self) -> Result<TlsClientConfig, String> {
        let either = |a: &Option<String>,
                      b: &Option<String>,
                      what: &str|
         -> Result<Option<String>, String> {
            match (a, b) {
                (Some(_), Some(_)) => Err(format!("tls: set {what} once (both spellings are set)")),
                (a, b) => Ok(a.clone().or_else(|| b.clone())),
            }
        };
        let version = |v: &Option<String>| -> Result<Option<String>, String> {
            Ok(match v.as_deref() {
                None | Some("") => None,
                Some("TLS12") | Some("1.2") => Some("1.2".to_string()),
                Some("TLS13") | Some("1.3") => Some("1.3".to_string()),
                Some(other) => {
                    return Err(format!(
                        "tls: version {other:?} is not supported; use TLS12 or TLS13 (\"1.2\"/\"1.3\")"
                    ));
                }
            })
        };
        Ok(TlsClientConfig {
            insecure_skip_verify: self.insecure_skip_verify,
            ca_file: self.ca_file.clone(),
            ca_pem: either(&self.ca, &self.ca_pem, "ca/ca_pem")?,
            cert_file: self.cert_file.clone(),
            cert_pem: either(&self.cert, &self.cert_pem, "cert/cert_pem")?,
            key_file: self.key_file.clone(),
            key_pem: either(&self.key, &self.key_pem, "key/key_pem")?,
            server_name_override: either(
                &self.server_name,
                &self.server_name_override,
                "server_name/server_name_override",
            )?,
            min_version: version(&self.min_version)?,
            max_version: version(&self.max_version)?,
            reload_interval: self.reload_interval.or_else(|| {
                let files =
                    self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some();
                files.then_some(DEFAULT_RELOAD)
            }),
            ..TlsClientConfig::default()
        })
    }

    /// Static checks (no file is read). `any_https`: whether some target uses https; TLS
    /// settings without any https target are an error (they would silently do nothing).
    pub fn validate(&self, any_https: bool) -> Vec<String> {
        match self.client_config() {
            Err(e) => vec![e],
            Ok(config) => {
                let mut errors = config.validate();
                if !any_https && self.has_material() {
                    errors.push(
                        "TLS settings are set but no target uses https: scrape with an https:// endpoint (scheme: https) or remove the TLS settings"
                            .to_string(),
                    );
                }
                errors
            }
        }
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
    client: Client<HttpsConnector, Empty<Bytes>>,
    headers: HeaderMap,
}

impl HttpScraper {
    /// A client for `http://` and `https://` targets; TLS files are read now (errors
    /// name them).
    pub fn new(
        headers: HeaderMap,
        connect_timeout: Duration,
        tls: &TlsSettings,
    ) -> Result<HttpScraper, String> {
        let tls = tls.client_config()?;
        let connector = https_connector(Some(&tls), connect_timeout.min(Duration::from_secs(10)))?;
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(2)
            .build(connector);
        Ok(HttpScraper { client, headers })
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
        assert!(TlsSettings::default().validate(true).is_empty());
        assert!(TlsSettings::default().validate(false).is_empty());
        let with_ca = TlsSettings {
            ca_file: Some("/ca.pem".into()),
            ..Default::default()
        };
        assert!(with_ca.validate(true).is_empty());
        assert_eq!(
            with_ca.validate(false).len(),
            1,
            "TLS material without an https target"
        );
        assert!(
            TlsSettings {
                insecure: true,
                ..Default::default()
            }
            .validate(false)
            .is_empty()
        );
    }

    #[test]
    fn both_spellings_map_to_the_shared_tls_config() {
        let prometheus = TlsSettings {
            ca: Some("PEM".into()),
            server_name: Some("target.local".into()),
            min_version: Some("TLS13".into()),
            ..Default::default()
        };
        let config = prometheus.client_config().expect("valid");
        assert_eq!(config.ca_pem.as_deref(), Some("PEM"));
        assert_eq!(config.server_name_override.as_deref(), Some("target.local"));
        assert_eq!(config.min_version.as_deref(), Some("1.3"));
        let collector = TlsSettings {
            ca_pem: Some("PEM".into()),
            min_version: Some("1.2".into()),
            ..Default::default()
        };
        assert_eq!(
            collector.client_config().expect("valid").ca_pem.as_deref(),
            Some("PEM")
        );
        let twice = TlsSettings {
            ca: Some("a".into()),
            ca_pem: Some("b".into()),
            ..Default::default()
        };
        assert!(twice.client_config().is_err());
        let old = TlsSettings {
            min_version: Some("TLS10".into()),
            ..Default::default()
        };
        assert!(old.validate(true)[0].contains("TLS10"));
        // A missing CA file is reported when the client is built, naming the file.
        let missing = TlsSettings {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let error = HttpScraper::new(HeaderMap::new(), Duration::from_secs(1), &missing)
            .err()
            .unwrap_or_default();
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
    }
}
