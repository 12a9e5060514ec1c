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
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use serde::Deserialize;

use crate::GoDuration;
use crate::reload::Reloading;

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
    /// Re-read the CA (`ca_file`) and the client certificate and key this often, at the
    /// next handshake after the interval (new connections). Default: never.
    pub reload_interval: Option<GoDuration>,
    /// Cipher suites allowed, Go/IANA names (see [`cipher_suite`]). Default: all of rustls'.
    pub cipher_suites: Vec<String>,
    /// Key exchange groups in order of preference: `X25519`, `P256`, `P384`. Default: all three.
    pub curve_preferences: Vec<String>,
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
    /// Re-read `client_ca_file` when it changed: checked at handshakes, at most once per
    /// `reload_interval` (default 1s). Default false.
    pub client_ca_file_reload: bool,
    /// `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub include_system_ca_certs_pool: Option<bool>,
    /// Re-read `cert_file`/`key_file` this often (checked at handshakes). Default: never.
    pub reload_interval: Option<GoDuration>,
    /// As for clients.
    pub cipher_suites: Vec<String>,
    pub curve_preferences: Vec<String>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls suite for a `cipher_suites` entry: Go's names (the Collector's), which are
/// the IANA names (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`, `TLS_AES_128_GCM_SHA256`).
/// CBC, RSA key exchange and 3DES suites do not exist in rustls: an error names them.
fn cipher_suite(name: &str) -> Result<rustls::SupportedCipherSuite, String> {
    use rustls::crypto::ring::cipher_suite as suite;
    Ok(match name {
        "TLS_AES_128_GCM_SHA256" => suite::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_256_GCM_SHA384" => suite::TLS13_AES_256_GCM_SHA384,
        "TLS_CHACHA20_POLY1305_SHA256" => suite::TLS13_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        other
            if other.contains("_CBC_")
                || other.starts_with("TLS_RSA_")
                || other.contains("3DES")
                || other.contains("RC4") =>
        {
            return Err(format!(
                "tls.cipher_suites: {other:?} is not supported (no CBC, RC4, 3DES or RSA key exchange suites: they are insecure); use an ECDHE GCM or CHACHA20 suite"
            ));
        }
        other => return Err(format!("tls.cipher_suites: unknown cipher suite {other:?}")),
    })
}

/// The key exchange group for a `curve_preferences` entry (Go's names).
fn curve(name: &str) -> Result<&'static dyn rustls::crypto::SupportedKxGroup, String> {
    use rustls::crypto::ring::kx_group;
    match name {
        "X25519" => Ok(kx_group::X25519),
        "P256" | "CurveP256" => Ok(kx_group::SECP256R1),
        "P384" | "CurveP384" => Ok(kx_group::SECP384R1),
        "P521" | "CurveP521" | "X25519MLKEM768" => Err(format!(
            "tls.curve_preferences: {name:?} is not supported by oxcol's TLS provider; use X25519, P256 or P384"
        )),
        other => Err(format!("tls.curve_preferences: unknown curve {other:?}")),
    }
}

/// The crypto provider with `cipher_suites` and `curve_preferences` applied. TLS 1.3
/// suites stay all enabled unless a TLS 1.3 suite is listed (Go ignores the list for
/// TLS 1.3; the Collector documents it for TLS 1.2 and below).
fn configured_provider(
    cipher_suites: &[String],
    curves: &[String],
) -> Result<Arc<CryptoProvider>, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !cipher_suites.is_empty() {
        let listed: Vec<rustls::SupportedCipherSuite> = cipher_suites
            .iter()
            .map(|n| cipher_suite(n))
            .collect::<Result<_, _>>()?;
        let lists_tls13 = listed.iter().any(|s| s.tls13().is_some());
        let mut suites: Vec<rustls::SupportedCipherSuite> = Vec::new();
        if !lists_tls13 {
            suites.extend(
                provider
                    .cipher_suites
                    .iter()
                    .filter(|s| s.tls13().is_some()),
            );
        }
        suites.extend(listed);
        provider.cipher_suites = suites;
    }
    if !curves.is_empty() {
        provider.kx_groups = curves.iter().map(|n| curve(n)).collect::<Result<_, _>>()?;
    }
    Ok(Arc::new(provider))
}

fn check_provider(errors: &mut Vec<String>, cipher_suites: &[String], curves: &[String]) {
    errors.extend(cipher_suites.iter().filter_map(|n| cipher_suite(n).err()));
    errors.extend(curves.iter().filter_map(|n| curve(n).err()));
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

fn check_reload_interval(errors: &mut Vec<String>, interval: Option<GoDuration>) {
    if interval.is_some_and(|d| d.is_zero()) {
        errors.push(
            "tls.reload_interval must be greater than 0 (remove it to never reload)".to_string(),
        );
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
        check_reload_interval(&mut errors, self.reload_interval);
        check_provider(&mut errors, &self.cipher_suites, &self.curve_preferences);
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

    /// The rustls client configuration. Files are read now (errors name them) and, with
    /// `reload_interval`, again at the first handshake after each interval.
    pub fn rustls_config(&self, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, String> {
        let every = self.reload_interval.map(|d| d.get());
        let builder = rustls::ClientConfig::builder_with_provider(configured_provider(
            &self.cipher_suites,
            &self.curve_preferences,
        )?)
        .with_protocol_versions(&versions(&self.min_version, &self.max_version)?)
        .map_err(|e| format!("tls: {e}"))?
        .dangerous();
        let builder = if self.insecure_skip_verify {
            builder.with_custom_certificate_verifier(Arc::new(SkipServerVerification(provider())))
        } else {
            let tls = self.clone();
            let verifier = Reloading::new(origin("ca", &self.ca_file), every, move || {
                let ca = read_pem("ca", &tls.ca_file, &tls.ca_pem)?;
                let what = origin("ca", &tls.ca_file);
                let store = roots(&what, ca, tls.include_system_ca_certs_pool.unwrap_or(false))?;
                let verifier: Arc<dyn ServerCertVerifier> =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider())
                        .build()
                        .map_err(|e| format!("{what}: cannot verify servers with it: {e}"))?;
                Ok(verifier)
            })?;
            builder.with_custom_certificate_verifier(Arc::new(ServerVerifier(verifier)))
        };
        let mut config = if self.configures_client_cert() {
            let c = self.clone();
            let cert = Reloading::new(origin("cert", &self.cert_file), every, move || {
                certified_key(&c.cert_file, &c.cert_pem, &c.key_file, &c.key_pem)?
                    .ok_or_else(|| "tls: no client certificate configured".to_string())
            })?;
            builder.with_client_cert_resolver(Arc::new(ClientCert(cert)))
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    fn configures_client_cert(&self) -> bool {
        self.cert_file.is_some()
            || self.cert_pem.is_some()
            || self.key_file.is_some()
            || self.key_pem.is_some()
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
        check_reload_interval(&mut errors, self.reload_interval);
        check_provider(&mut errors, &self.cipher_suites, &self.curve_preferences);
        if self.client_ca_file_reload && self.client_ca_file.is_none() {
            errors.push("tls.client_ca_file_reload needs tls.client_ca_file".to_string());
        }
        errors
    }

    /// The rustls server configuration. Certificate files are read now (errors name
    /// them) and again every `reload_interval`, at the next handshake.
    pub fn rustls_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, String> {
        let builder = rustls::ServerConfig::builder_with_provider(configured_provider(
            &self.cipher_suites,
            &self.curve_preferences,
        )?)
        .with_protocol_versions(&versions(&self.min_version, &self.max_version)?)
        .map_err(|e| format!("tls: {e}"))?;
        let client_ca = match &self.client_ca_file {
            Some(path) => Some((
                format!("tls.client_ca_file {path:?}"),
                Some(path.clone()),
                None,
            )),
            None => (self.ca_file.is_some() || self.ca_pem.is_some()).then(|| {
                (
                    origin("ca", &self.ca_file),
                    self.ca_file.clone(),
                    self.ca_pem.clone(),
                )
            }),
        };
        let builder = match client_ca {
            Some((what, file, pem)) => {
                let include_system = self.include_system_ca_certs_pool.unwrap_or(false);
                let load_verifier = move || {
                    let bytes = match &file {
                        Some(path) => std::fs::read(path).map_err(|e| {
                            format!("{what}: cannot read: {e} (check the path and its permissions)")
                        })?,
                        None => pem.clone().unwrap_or_default().into_bytes(),
                    };
                    let store = roots(&what, Some(bytes), include_system)?;
                    let verifier: Arc<dyn ClientCertVerifier> =
                        WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider())
                            .build()
                            .map_err(|e| format!("{what}: cannot verify clients with it: {e}"))?;
                    Ok(verifier)
                };
                if self.client_ca_file_reload {
                    let every = self
                        .reload_interval
                        .map_or(Duration::from_secs(1), |d| d.get());
                    let verifier = Reloading::new(
                        "tls.client_ca_file".to_string(),
                        Some(every),
                        load_verifier,
                    )?
                    .when_changed(self.client_ca_file.clone().map(Into::into));
                    builder.with_client_cert_verifier(Arc::new(ClientVerifier(verifier)))
                } else {
                    builder.with_client_cert_verifier(load_verifier()?)
                }
            }
            None => builder.with_no_client_auth(),
        };
        let c = self.clone();
        let every = self.reload_interval.map(|d| d.get());
        let cert = Reloading::new(origin("cert", &self.cert_file), every, move || {
            certified_key(&c.cert_file, &c.cert_pem, &c.key_file, &c.key_pem)?.ok_or_else(|| {
                "tls: a server needs cert_file (or cert_pem) and key_file (or key_pem)".to_string()
            })
        })?;
        let mut config = builder.with_cert_resolver(Arc::new(ServerCert(cert)));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// The server certificate (see [`Reloading`]).
#[derive(Debug)]
struct ServerCert(Reloading<CertifiedKey>);

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get())
    }
}

/// The client certificate for mTLS (see [`Reloading`]).
#[derive(Debug)]
struct ClientCert(Reloading<CertifiedKey>);

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The signature checks of a verifier wrapper, delegated to the verifier of the moment
/// (`self.0`, a [`Reloading`] verifier): the same three methods for servers and clients.
macro_rules! signatures_of_the_moment {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.get().verify_tls12_signature(message, cert, dss)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.get().verify_tls13_signature(message, cert, dss)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.get().supported_verify_schemes()
        }
    };
}

/// Verifies servers against the CA of the moment (see [`Reloading`]); webpki does the work.
#[derive(Debug)]
struct ServerVerifier(Reloading<dyn ServerCertVerifier>);

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0
            .get()
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
    }
    signatures_of_the_moment!();
}

/// Verifies client certificates against the client CA of the moment (`client_ca_file_reload`).
/// It sends no CA hints (they would borrow from a value that may be replaced); clients
/// then offer the certificate they have.
#[derive(Debug)]
struct ClientVerifier(Reloading<dyn ClientCertVerifier>);

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .get()
            .verify_client_cert(end_entity, intermediates, now)
    }
    signatures_of_the_moment!();
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
/// `http://` URLs in plaintext, `https://` with `tls` (system roots when `tls` is None),
/// directly or through a `proxy_url` ([`crate::proxy`]).
pub type HttpsConnector = hyper_rustls::HttpsConnector<crate::proxy::ProxyConnector>;

pub fn https_connector(
    tls: Option<&TlsClientConfig>,
    connect_timeout: Duration,
) -> Result<HttpsConnector, String> {
    https_connector_with_proxy(tls, connect_timeout, None)
}

/// [`https_connector`] whose connections go through an HTTP CONNECT proxy when `proxy`
/// is set (TLS to the target runs inside the tunnel).
pub fn https_connector_with_proxy(
    tls: Option<&TlsClientConfig>,
    connect_timeout: Duration,
    proxy: Option<crate::proxy::ProxyUrl>,
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
    Ok(builder
        .enable_http1()
        .enable_http2()
        .wrap_connector(crate::proxy::ProxyConnector::new(http, proxy)))
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
