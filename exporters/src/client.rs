//! Client settings shared by the OTLP exporters, with the Collector's key names
//! (`configtls.ClientConfig`, `configcompression`, headers).

use std::collections::BTreeMap;

use oxcol_core::compression::Encoding;

/// `auth:` of a client: `{authenticator: bearertokenauth/NAME | basicauth/NAME}`.
pub use oxcol_core::auth::{AuthSettings, ClientCredentials};
/// `tls:` of a client: the Collector's `configtls.ClientConfig`, built into rustls by
/// `oxcol_core::tls` (shared with receivers that scrape).
pub use oxcol_core::tls::TlsClientConfig;

/// `compression:` — `gzip` (the Collector's default), `zstd`, `deflate`, `none`.
pub fn parse_compression(text: &str) -> Result<Encoding, String> {
    match text {
        "" | "none" => Ok(Encoding::Identity),
        "gzip" => Ok(Encoding::Gzip),
        "zstd" => Ok(Encoding::Zstd),
        "deflate" | "zlib" => Ok(Encoding::Deflate),
        other => Err(format!(
            "compression: unsupported value {other:?}; use gzip, zstd, deflate or none"
        )),
    }
}

/// Whether a connection to an endpoint that is `scheme_is_https` (None when the endpoint
/// has no scheme, as gRPC endpoints often do) uses TLS: the scheme decides; without one,
/// TLS unless `insecure: true` (the Collector's rule).
pub fn uses_tls(tls: &TlsClientConfig, scheme_is_https: Option<bool>) -> bool {
    scheme_is_https.unwrap_or(!tls.insecure)
}

/// Checks a client's TLS settings for `endpoint`. TLS material on a plaintext connection is
/// an error (never silently ignored).
pub fn check_tls(
    tls: &TlsClientConfig,
    endpoint: &str,
    scheme_is_https: Option<bool>,
) -> Vec<String> {
    let mut errors = tls.validate();
    if !uses_tls(tls, scheme_is_https) && tls.configures_tls_material() {
        errors.push(format!(
            "endpoint {endpoint:?} is plaintext but tls has certificates configured; use an https:// endpoint (or remove tls.insecure) to use them"
        ));
    }
    errors
}

/// Header names must be valid HTTP/gRPC header names; values must be printable.
pub fn validate_headers(headers: &BTreeMap<String, String>) -> Vec<String> {
    let mut errors = Vec::new();
    for (name, value) in headers {
        if http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            errors.push(format!("headers: {name:?} is not a valid header name"));
        }
        if http::header::HeaderValue::from_str(value).is_err() {
            // Never echo the value: headers carry credentials.
            errors.push(format!(
                "headers: the value of {name:?} is not a valid header value"
            ));
        }
    }
    errors
}
