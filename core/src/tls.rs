//! TLS for every oxcol server and client, built from the Collector's `configtls` keys.
//!
//! This is the ONE place where TLS settings become rustls configurations (ring provider,
//! no C TLS library): receivers, extensions, self-telemetry and exporters all call
//! [`TlsServerConfig::rustls_config`] / [`TlsClientConfig::rustls_config`], and HTTP and
//! gRPC clients get ready connectors from [`https_connector`] and [`GrpcTlsConnector`].
//!
//! It must never silently downgrade: a TLS setting that cannot be honoured is an error
//! naming the key and the file, and a failed certificate reload keeps the previous
//! certificate (logged) instead of serving none.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;

use crate::GoDuration;

/// ALPN for gRPC (HTTP/2 only).
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];
/// ALPN for HTTP servers and clients (HTTP/2 preferred, HTTP/1.1 accepted).
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

/// `tls:` of a client (the Collector's `configtls.ClientConfig`).
///
/// Defaults: verify the server against the system's CA pool (or `ca_file`/`ca_pem`),
/// TLS 1.2 minimum, no client certificate.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsClientConfig {
    /// Plaintext for endpoints without a scheme (gRPC). Default false.
    pub insecure: bool,
    /// Accept any server certificate (encryption without authentication). Default false.
    pub insecure_skip_verify: bool,
    /// CA bundle (PEM) that signs the server's certificate. Default: the system pool.
    pub ca_file: Option<String>,
    pub ca_pem: Option<String>,
    /// Client certificate and key for mTLS (PEM). Default none.
    pub cert_file: Option<String>,
    pub cert_pem: Option<String>,
    pub key_file: Option<String>,
    pub key_pem: Option<String>,
    /// `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<String>,
    /// `"1.2"` or `"1.3"` (default: the newest).
    pub max_version: Option<String>,
    /// Name checked in the server certificate instead of the endpoint's host.
    pub server_name_override: Option<String>,
    /// Also trust the system pool when `ca_file`/`ca_pem` is set. Default false.
    pub include_system_ca_certs_pool: Option<bool>,
    /// Accepted for compatibility; client material is read once at start (see docs/security.md).
    pub reload_interval: Option<GoDuration>,
}

/// `tls:` of a server (the Collector's `configtls.ServerConfig`). Present = TLS on.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsServerConfig {
    /// Server certificate chain and key (PEM). Required.
    pub cert_file: Option<String>,
    pub cert_pem: Option<String>,
    pub key_file: Option<String>,
    pub key_pem: Option<String>,
    /// With `client_ca_file`, accepted for compatibility (the Collector uses it as the client CA when
    /// `client_ca_file` is not set; so does oxcol).
    pub ca_file: Option<String>,
    pub ca_pem: Option<String>,
    /// CA that signs client certificates: when set, every client must present a valid
    /// certificate (mTLS). Default none (no client certificate asked for).
    pub client_ca_file: Option<String>,
    /// Re-read `client_ca_file` periodically: accepted; the client CA is read at start.
    pub client_ca_file_reload: bool,
    /// `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub include_system_ca_certs_pool: Option<bool>,
    /// Re-read `cert_file`/`key_file` this often (checked at handshakes). Default: never.
    pub reload_interval: Option<GoDuration>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn versions(
    min: &Option<String>,
    max: &Option<String>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    fn parse(key: &str, value: &str) -> Result<u8, String> {
        match value {
            "1.2" => Ok(2),
            "1.3" => Ok(3),
            "1.0" | "1.1" => Err(format!(
                "tls.{key} {value:?}: TLS {value} is insecure and not supported; use \"1.2\" or \"1.3\""
            )),
            other => Err(format!("tls.{key} {other:?}: use \"1.2\" or \"1.3\"")),
        }
    }
    let low = match min.as_deref() {
        None | Some("") => 2,
        Some(v) => parse("min_version", v)?,
    };
    let high = match max.as_deref() {
        None | Some("") => 3,
        Some(v) => parse("max_version", v)?,
    };
    if low > high {
        return Err("tls.min_version is above tls.max_version".to_string());
    }
    let mut list = Vec::new();
    if high >= 3 {
        list.push(&rustls::version::TLS13);
    }
    if low <= 2 {
        list.push(&rustls::version::TLS12);
    }
    Ok(list)
}

/// Reads a PEM source: inline PEM or a file. `key` names the config key in errors.
fn read_pem(
    key: &str,
    file: &Option<String>,
    pem: &Option<String>,
) -> Result<Option<Vec<u8>>, String> {
    match (file, pem) {
        (Some(_), Some(_)) => Err(format!("tls: set either {key}_file or {key}_pem, not both")),
        (Some(path), None) => std::fs::read(path).map(Some).map_err(|e| {
            format!(
                "tls.{key}_file {path:?}: cannot read: {e} (check the path and its permissions)"
            )
        }),
        (None, Some(text)) => Ok(Some(text.as_bytes().to_vec())),
        (None, None) => Ok(None),
    }
}

fn origin(key: &str, file: &Option<String>) -> String {
    match file {
        Some(path) => format!("tls.{key}_file {path:?}"),
        None => format!("tls.{key}_pem"),
    }
}

fn parse_certs(what: &str, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what}: not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{what}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(certs)
}

fn parse_key(what: &str, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    // Never echo key material: only the origin and the parser's complaint.
    PrivateKeyDer::from_pem_slice(bytes)
        .map_err(|e| format!("{what}: no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"))
}

fn roots(
    what: &str,
    bytes: Option<Vec<u8>>,
    include_system: bool,
) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let use_system = include_system || bytes.is_none();
    if let Some(bytes) = bytes {
        for cert in parse_certs(what, &bytes)? {
            store
                .add(cert)
                .map_err(|e| format!("{what}: a CA certificate is not usable: {e}"))?;
        }
    }
    if use_system {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "cannot load part of the system CA pool");
        }
        let (_added, _ignored) = store.add_parsable_certificates(found.certs);
    }
    Ok(store)
}

/// Loads a certificate chain + key and checks they belong together.
fn certified_key(
    cert_file: &Option<String>,
    cert_pem: &Option<String>,
    key_file: &Option<String>,
    key_pem: &Option<String>,
) -> Result<Option<Arc<CertifiedKey>>, String> {
    let cert = read_pem("cert", cert_file, cert_pem)?;
    let key = read_pem("key", key_file, key_pem)?;
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(_), None) => {
            Err("tls: cert_file/cert_pem is set without key_file/key_pem".to_string())
        }
        (None, Some(_)) => {
            Err("tls: key_file/key_pem is set without cert_file/cert_pem".to_string())
        }
        (Some(cert), Some(key)) => {
            let chain = parse_certs(&origin("cert", cert_file), &cert)?;
            let key = parse_key(&origin("key", key_file), &key)?;
            let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
                format!(
                    "{} and {}: the key does not match the certificate, or is unsupported: {e}",
                    origin("cert", cert_file),
                    origin("key", key_file)
                )
            })?;
            Ok(Some(Arc::new(certified)))
        }
    }
}

fn check_pair(errors: &mut Vec<String>, a: &str, file: &Option<String>, pem: &Option<String>) {
    if file.is_some() && pem.is_some() {
        errors.push(format!("tls: set either {a}_file or {a}_pem, not both"));
    }
}

impl TlsClientConfig {
    /// Whether a client certificate, CA or version bound is configured (material that
    /// only makes sense with TLS on).
    pub fn configures_tls_material(&self) -> bool {
        self.ca_file.is_some()
            || self.ca_pem.is_some()
            || self.cert_file.is_some()
            || self.cert_pem.is_some()
            || self.key_file.is_some()
            || self.key_pem.is_some()
    }

    /// Static checks (no file is read): pairs, versions.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        check_pair(&mut errors, "ca", &self.ca_file, &self.ca_pem);
        check_pair(&mut errors, "cert", &self.cert_file, &self.cert_pem);
        check_pair(&mut errors, "key", &self.key_file, &self.key_pem);
        if (self.cert_file.is_some() || self.cert_pem.is_some())
            != (self.key_file.is_some() || self.key_pem.is_some())
        {
            errors.push("tls: a client certificate needs both cert_file (or cert_pem) and key_file (or key_pem)".to_string());
        }
        if let Err(e) = versions(&self.min_version, &self.max_version) {
            errors.push(e);
        }
        if self
            .server_name_override
            .as_deref()
            .is_some_and(|n| ServerName::try_from(n.to_string()).is_err())
        {
            errors
                .push("tls.server_name_override is not a valid DNS name or IP address".to_string());
        }
        errors
    }

    /// The rustls client configuration (files are read now; errors name them).
    pub fn rustls_config(&self, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, String> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions(&self.min_version, &self.max_version)?)
            .map_err(|e| format!("tls: {e}"))?;
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SkipServerVerification(provider())))
        } else {
            let ca = read_pem("ca", &self.ca_file, &self.ca_pem)?;
            builder.with_root_certificates(roots(
                &origin("ca", &self.ca_file),
                ca,
                self.include_system_ca_certs_pool.unwrap_or(false),
            )?)
        };
        let cert = read_pem("cert", &self.cert_file, &self.cert_pem)?;
        let key = read_pem("key", &self.key_file, &self.key_pem)?;
        let mut config = match (cert, key) {
            (Some(cert), Some(key)) => {
                let chain = parse_certs(&origin("cert", &self.cert_file), &cert)?;
                let key = parse_key(&origin("key", &self.key_file), &key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("{} and {}: not a usable client certificate and key: {e}", origin("cert", &self.cert_file), origin("key", &self.key_file)))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("tls: a client certificate needs both cert_file (or cert_pem) and key_file (or key_pem)".to_string()),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// The name the server certificate must carry: `server_name_override`, else `host`.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        let name = self.server_name_override.as_deref().unwrap_or(host);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(name.to_string()).map_err(|_| {
            format!("tls: {name:?} is not a valid server name (set tls.server_name_override)")
        })
    }
}

impl TlsServerConfig {
    /// Static checks (no file is read).
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        check_pair(&mut errors, "ca", &self.ca_file, &self.ca_pem);
        check_pair(&mut errors, "cert", &self.cert_file, &self.cert_pem);
        check_pair(&mut errors, "key", &self.key_file, &self.key_pem);
        if self.cert_file.is_none() && self.cert_pem.is_none() {
            errors.push(
                "tls: a server needs cert_file (or cert_pem) and key_file (or key_pem)".to_string(),
            );
        } else if self.key_file.is_none() && self.key_pem.is_none() {
            errors.push("tls: key_file (or key_pem) is required with cert_file".to_string());
        }
        if let Err(e) = versions(&self.min_version, &self.max_version) {
            errors.push(e);
        }
        if self.reload_interval.is_some_and(|d| d.is_zero()) {
            errors.push(
                "tls.reload_interval must be greater than 0 (remove it to never reload)"
                    .to_string(),
            );
        }
        errors
    }

    /// The rustls server configuration. Certificate files are read now (errors name
    /// them) and again every `reload_interval`, at the next handshake.
    pub fn rustls_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, String> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions(&self.min_version, &self.max_version)?)
            .map_err(|e| format!("tls: {e}"))?;
        let client_ca = match &self.client_ca_file {
            Some(path) => Some((
                format!("tls.client_ca_file {path:?}"),
                std::fs::read(path).map_err(|e| format!("tls.client_ca_file {path:?}: cannot read: {e} (check the path and its permissions)"))?,
            )),
            None => read_pem("ca", &self.ca_file, &self.ca_pem)?.map(|b| (origin("ca", &self.ca_file), b)),
        };
        let builder = match client_ca {
            Some((what, bytes)) => {
                let store = roots(
                    &what,
                    Some(bytes),
                    self.include_system_ca_certs_pool.unwrap_or(false),
                )?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider())
                        .build()
                        .map_err(|e| format!("{what}: cannot verify clients with it: {e}"))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let resolver = ReloadingCert::new(self.clone())?;
        let mut config = builder.with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// The server certificate, re-read from its files every `reload_interval`.
#[derive(Debug)]
struct ReloadingCert {
    config: TlsServerConfig,
    current: Mutex<(Instant, Arc<CertifiedKey>)>,
}

impl ReloadingCert {
    fn new(config: TlsServerConfig) -> Result<ReloadingCert, String> {
        let key = certified_key(
            &config.cert_file,
            &config.cert_pem,
            &config.key_file,
            &config.key_pem,
        )?
        .ok_or_else(|| {
            "tls: a server needs cert_file (or cert_pem) and key_file (or key_pem)".to_string()
        })?;
        Ok(ReloadingCert {
            config,
            current: Mutex::new((Instant::now(), key)),
        })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(interval) = self.config.reload_interval {
            if current.0.elapsed() >= interval.get() {
                current.0 = Instant::now();
                let c = &self.config;
                match certified_key(&c.cert_file, &c.cert_pem, &c.key_file, &c.key_pem) {
                    Ok(Some(key)) => current.1 = key,
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(%error, "cannot reload the TLS certificate; keeping the previous one")
                    }
                }
            }
        }
        Some(Arc::clone(&current.1))
    }
}

/// `insecure_skip_verify: true`: any certificate is accepted, signatures are still checked
/// so the handshake itself is sound.
#[derive(Debug)]
struct SkipServerVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipServerVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The HTTP client connector every HTTP client (exporters, scraping receivers) uses:
/// `http://` URLs in plaintext, `https://` with `tls` (system roots when `tls` is None).
pub type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

pub fn https_connector(
    tls: Option<&TlsClientConfig>,
    connect_timeout: Duration,
) -> Result<HttpsConnector, String> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.enforce_http(false);
    let default = TlsClientConfig::default();
    let tls = tls.unwrap_or(&default);
    // hyper-rustls sets ALPN itself (h2, http/1.1) and refuses a config that has it.
    let config = tls.rustls_config(&[])?;
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http();
    let builder = match &tls.server_name_override {
        Some(_) => builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
            tls.server_name("")?,
        )),
        None => builder,
    };
    Ok(builder.enable_http1().enable_http2().wrap_connector(http))
}

/// A tonic connector that always speaks TLS (ALPN h2) to the endpoint's host:port, for
/// `Endpoint::connect_with_connector_lazy`. Used when the gRPC exporter needs TLS.
#[derive(Clone)]
pub struct GrpcTlsConnector {
    connector: tokio_rustls::TlsConnector,
    tls: Arc<TlsClientConfig>,
    connect_timeout: Duration,
}

impl GrpcTlsConnector {
    pub fn new(
        tls: &TlsClientConfig,
        connect_timeout: Duration,
    ) -> Result<GrpcTlsConnector, String> {
        let config = tls.rustls_config(ALPN_GRPC)?;
        Ok(GrpcTlsConnector {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            tls: Arc::new(tls.clone()),
            connect_timeout,
        })
    }
}

impl tower::Service<http::Uri> for GrpcTlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
            let host = uri
                .host()
                .ok_or_else(|| invalid(format!("{uri}: no host")))?
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let name = this.tls.server_name(&host).map_err(invalid)?;
            let tcp = tokio::time::timeout(
                this.connect_timeout,
                tokio::net::TcpStream::connect((
                    host.trim_start_matches('[').trim_end_matches(']'),
                    port,
                )),
            )
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect to {host}:{port} timed out"),
                )
            })??;
            tcp.set_nodelay(true)?;
            let stream = this.connector.connect(name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_pairs_are_checked() {
        let bad = TlsClientConfig {
            min_version: Some("1.0".into()),
            cert_file: Some("/c".into()),
            ..Default::default()
        };
        let errors = bad.validate();
        assert!(
            errors
                .iter()
                .any(|e| e.contains("1.0") && e.contains("insecure")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("needs both")),
            "{errors:?}"
        );
        let inverted = TlsServerConfig {
            cert_file: Some("/c".into()),
            key_file: Some("/k".into()),
            min_version: Some("1.3".into()),
            max_version: Some("1.2".into()),
            ..Default::default()
        };
        assert!(inverted.validate().iter().any(|e| e.contains("above")));
        assert!(
            TlsServerConfig::default()
                .validate()
                .iter()
                .any(|e| e.contains("needs cert_file"))
        );
        assert_eq!(versions(&Some("1.3".into()), &None).unwrap().len(), 1);
        assert_eq!(versions(&None, &None).unwrap().len(), 2);
    }

    #[test]
    fn errors_name_the_file_that_could_not_be_read_or_parsed() {
        let missing = TlsServerConfig {
            cert_file: Some("/nonexistent/server.pem".into()),
            key_file: Some("/nonexistent/key.pem".into()),
            ..Default::default()
        };
        let error = missing.rustls_config(ALPN_HTTP).unwrap_err();
        assert!(
            error.contains("/nonexistent/server.pem") && error.contains("cannot read"),
            "{error}"
        );
        let dir = std::env::temp_dir().join(format!("oxcol-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let junk = junk.to_string_lossy().to_string();
        let unparsable = TlsClientConfig {
            ca_file: Some(junk.clone()),
            ..Default::default()
        };
        let error = unparsable.rustls_config(ALPN_GRPC).unwrap_err();
        assert!(
            error.contains(&junk) && error.contains("no PEM certificate"),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn random_pem_input_never_panics() {
        let mut state = 0x1234_5678_u64;
        for round in 0..300 {
            let len = (round * 7) % 400;
            let mut bytes = b"-----BEGIN CERTIFICATE-----\n".to_vec();
            for _ in 0..len {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                bytes.push((state >> 33) as u8);
            }
            let _ = parse_certs("fuzz", &bytes);
            let _ = parse_key("fuzz", &bytes);
        }
    }
}
