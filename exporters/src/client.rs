//! Client settings shared by the OTLP exporters, with the Collector's key names
//! (`configtls.ClientConfig`, `configcompression`, headers).

use std::collections::BTreeMap;

use oxcol_core::compression::Encoding;
use serde::Deserialize;

/// `tls:` of a client. Only plaintext (`insecure: true`, or an `http://` endpoint) is
/// supported in this release; anything that would need a TLS handshake is a config error
/// rather than a silent downgrade.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsClientConfig {
    pub insecure: bool,
    pub insecure_skip_verify: bool,
    pub ca_file: Option<String>,
    pub ca_pem: Option<String>,
    pub cert_file: Option<String>,
    pub cert_pem: Option<String>,
    pub key_file: Option<String>,
    pub key_pem: Option<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub server_name_override: Option<String>,
    pub include_system_ca_certs_pool: Option<bool>,
    pub reload_interval: Option<String>,
}

impl TlsClientConfig {
    fn configures_tls_material(&self) -> bool {
        self.ca_file.is_some()
            || self.ca_pem.is_some()
            || self.cert_file.is_some()
            || self.cert_pem.is_some()
            || self.key_file.is_some()
            || self.key_pem.is_some()
    }
}

/// `compression:` — `gzip` (the Collector's default), `zstd`, `deflate`, `none`.
pub fn parse_compression(text: &str) -> Result<Encoding, String> {
    match text {
        "" | "none" => Ok(Encoding::Identity),
        "gzip" => Ok(Encoding::Gzip),
        "zstd" => Ok(Encoding::Zstd),
        "deflate" | "zlib" => Ok(Encoding::Deflate),
        other => Err(format!("compression: unsupported value {other:?}; use gzip, zstd, deflate or none")),
    }
}

/// Checks a client's TLS settings for an endpoint that is `scheme_is_https` (None when
/// the endpoint has no scheme), and returns an error message when TLS would be required.
pub fn check_plaintext(tls: &TlsClientConfig, endpoint: &str, scheme_is_https: Option<bool>) -> Result<(), String> {
    let wants_tls = match scheme_is_https {
        Some(true) => true,
        Some(false) => false,
        None => !tls.insecure,
    };
    if wants_tls || tls.configures_tls_material() {
        return Err(format!(
            "endpoint {endpoint:?} needs TLS, which this release of oxcol does not support yet for exporters; \
             for a plaintext connection set `tls: {{insecure: true}}` or use an http:// endpoint"
        ));
    }
    Ok(())
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
            errors.push(format!("headers: the value of {name:?} is not a valid header value"));
        }
    }
    errors
}
