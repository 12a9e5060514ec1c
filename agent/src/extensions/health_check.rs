//! `health_check` extension: answers 200 on its path while every pipeline runs, 503
//! otherwise (starting, stopping, or a pipeline died), as the Collector's does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use oxcol_core::auth::{AuthSettings, ServerAuthenticator};
use oxcol_core::listen::ServerLimits;
use oxcol_core::tls::TlsServerConfig;
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const TYPE: &str = "health_check";
pub const ALIASES: &[&str] = &["health_check"];

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseBody {
    pub healthy: Option<String>,
    pub unhealthy: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listen address. Default `127.0.0.1:13133`.
    pub endpoint: String,
    /// Default `/`.
    pub path: String,
    pub response_body: Option<ResponseBody>,
    /// Collector key (deprecated there); accepted, pipelines are always checked here.
    pub check_collector_pipeline: Option<serde_json::Value>,
    /// Server TLS (`oxcol_core::tls::TlsServerConfig`). Default: plaintext.
    pub tls: Option<TlsServerConfig>,
    /// `authenticator: bearertokenauth/NAME | basicauth/NAME`. Default: none.
    pub auth: Option<AuthSettings>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "127.0.0.1:13133".to_string(),
            path: "/".to_string(),
            response_body: None,
            check_collector_pipeline: None,
            tls: None,
            auth: None,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        // The form only: a host name is resolved when the extension starts (as the
        // Collector does), so `validate` works where the name does not resolve.
        if let Err(problem) = oxcol_receivers::otlp::check_listen_endpoint(&self.endpoint) {
            errors.push(format!("endpoint {:?}: {problem} (write host:port, e.g. 127.0.0.1:13133, otel-collector:13133 or :13133)", self.endpoint));
        }
        if !self.path.starts_with('/') {
            errors.push(format!("path {:?} must start with '/'", self.path));
        }
        if let Some(tls) = &self.tls {
            errors.extend(tls.validate());
        }
        if self
            .auth
            .as_ref()
            .is_some_and(|a| a.authenticator.is_empty())
        {
            errors.push("auth.authenticator is required (e.g. bearertokenauth/NAME)".to_string());
        }
        errors
    }
}

/// Serves the health endpoint until `shutdown`; `healthy` is flipped by the service.
pub async fn serve(
    id: &str,
    config: &Config,
    healthy: Arc<AtomicBool>,
    auth: Option<Arc<ServerAuthenticator>>,
    registry: &oxcol_core::telemetry::Registry,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), String> {
    let address = oxcol_receivers::otlp::resolve_endpoint(&config.endpoint)
        .map_err(|e| format!("extension {id}: endpoint {:?}: {e}", config.endpoint))?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("extension {id}: cannot listen on {address}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let body = config.response_body.clone().unwrap_or_default();
    let healthy_text = body
        .healthy
        .unwrap_or_else(|| r#"{"status":"Server available"}"#.to_string());
    let unhealthy_text = body
        .unhealthy
        .unwrap_or_else(|| r#"{"status":"Server not available"}"#.to_string());
    let router = Router::new().route(
        &config.path,
        get(move |headers: http::HeaderMap| {
            let allowed = auth
                .as_ref()
                .is_none_or(|a| a.authenticate(&headers).is_ok());
            let up = healthy.load(Ordering::Relaxed);
            let (status, text) = if !allowed {
                (StatusCode::UNAUTHORIZED, String::new())
            } else if up {
                (StatusCode::OK, healthy_text.clone())
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, unhealthy_text.clone())
            };
            async move { (status, text) }
        }),
    );
    let tls = match &config.tls {
        Some(tls) => Some(
            tls.rustls_config(oxcol_core::tls::ALPN_HTTP)
                .map_err(|e| format!("extension {id}: {e}"))?,
        ),
        None => None,
    };
    let mut limits = ServerLimits::http(None, None);
    let name = id.to_string();
    limits.stats = Some(oxcol_core::listen::ConnectionStats::new(registry, &name));
    let incoming =
        oxcol_core::listen::incoming(&name, listener, tls, limits.clone(), shutdown.clone());
    tracing::info!(extension = %name, endpoint = %bound, tls = config.tls.is_some(), "health check listening");
    let task = tokio::spawn(async move {
        oxcol_core::listen::serve_http(
            &name,
            incoming,
            router,
            &limits,
            shutdown,
            std::time::Duration::from_secs(2),
        )
        .await;
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_checks_the_endpoint_form_without_resolving_it() {
        for good in [
            "127.0.0.1:13133",
            ":13133",
            "[::1]:13133",
            "otel-collector.invalid:13133",
            "localhost:0",
        ] {
            let config = Config {
                endpoint: good.to_string(),
                ..Config::default()
            };
            assert!(
                config.validate().is_empty(),
                "{good}: {:?}",
                config.validate()
            );
        }
        for bad in [
            "13133",
            "host:notaport",
            "host:70000",
            "[zz]:13133",
            "a b:1",
        ] {
            let config = Config {
                endpoint: bad.to_string(),
                ..Config::default()
            };
            let errors = config.validate();
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert!(errors[0].contains("write host:port"), "{bad}: {errors:?}");
        }
    }

    #[tokio::test]
    async fn start_fails_naming_the_extension_when_the_host_does_not_resolve() {
        let config = Config {
            endpoint: "otel-collector.invalid:13133".to_string(),
            ..Config::default()
        };
        let registry = oxcol_core::telemetry::Registry::new();
        let result = serve(
            "health_check/x",
            &config,
            Arc::new(AtomicBool::new(true)),
            None,
            &registry,
            CancellationToken::new(),
        )
        .await;
        let error = result.err().expect("an unresolvable host cannot be bound");
        assert!(
            error.starts_with("extension health_check/x: endpoint"),
            "{error}"
        );
        assert!(error.contains("cannot resolve"), "{error}");
    }

    #[tokio::test]
    async fn start_binds_localhost_like_the_otlp_receiver() {
        let config = Config {
            endpoint: "localhost:0".to_string(),
            ..Config::default()
        };
        let registry = oxcol_core::telemetry::Registry::new();
        let shutdown = CancellationToken::new();
        let (bound, task) = serve(
            "health_check",
            &config,
            Arc::new(AtomicBool::new(true)),
            None,
            &registry,
            shutdown.clone(),
        )
        .await
        .expect("binds");
        assert_eq!(bound.ip(), std::net::IpAddr::from([127, 0, 0, 1]));
        assert_ne!(bound.port(), 0);
        shutdown.cancel();
        let _ = task.await;
    }
}
