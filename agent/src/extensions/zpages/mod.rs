//! `zpages` extension: live debugging pages of the running service over HTTP, at the
//! Collector's paths and keys (`zpagesextension` plus the service's own zPages):
//!
//! - `/`: the live status page (module [`status`]): the pipeline graph, live rates per
//!   component and the memory picture, polling `/api/status`.
//! - `/debug/servicez`: build and runtime information, links to the other pages.
//! - `/debug/pipelinez`: every pipeline, its receivers -> processors -> exporters (and
//!   connectors), each with its type and live counts from the self-telemetry registry.
//! - `/debug/extensionz`: the defined extensions and whether they run.
//! - `/debug/featurez`: feature gates (oxcol has none; the page says so).
//! - `/debug/tracez`: oxcol records no spans of its own; the page says so.
//! - `/debug/expvarz` (only with `expvar.enabled`): process variables as JSON.
//!
//! `/debug/rpcz` is not served: the Collector dropped it with OpenCensus.
//!
//! The `/debug` pages are rendered on the server, with no external assets, every value
//! HTML-escaped (ids may hold `<`). The pages are a table ([`PAGES`]): a new page is one
//! function and one line there.
//!
//! Must never: serve a page to a request the configured authenticator refused, or hold
//! the registry lock while writing HTML (counts are read once per request, then rendered).

mod pages;
mod status;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use oxcol_core::Signal;
use oxcol_core::auth::{AuthSettings, ServerAuthenticator};
use oxcol_core::listen::ServerLimits;
use oxcol_core::telemetry::Registry;
use oxcol_core::tls::TlsServerConfig;
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::registry::Kind;
use crate::settings::Settings;

pub const TYPE: &str = "zpages";
pub const ALIASES: &[&str] = &["zpages"];

/// `expvar:` (the Collector's Go expvar handler at `/debug/expvarz`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExpvarConfig {
    /// Default false.
    pub enabled: bool,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listen address. Default `127.0.0.1:55679` (the Collector's `localhost:55679`).
    pub endpoint: String,
    pub expvar: ExpvarConfig,
    /// Server TLS (`oxcol_core::tls::TlsServerConfig`). Default: plaintext.
    pub tls: Option<TlsServerConfig>,
    /// `authenticator: bearertokenauth/NAME | basicauth/NAME`. Default: none.
    pub auth: Option<AuthSettings>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "127.0.0.1:55679".to_string(),
            expvar: ExpvarConfig::default(),
            tls: None,
            auth: None,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.endpoint.is_empty() {
            errors.push(
                "\"endpoint\" is required when using the \"zpages\" extension (e.g. 127.0.0.1:55679)"
                    .to_string(),
            );
        } else if let Err(problem) = oxcol_receivers::otlp::check_listen_endpoint(&self.endpoint) {
            errors.push(format!(
                "endpoint {:?}: {problem} (write host:port, e.g. 127.0.0.1:55679)",
                self.endpoint
            ));
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

/// The kind a component has where a pipeline names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Receiver,
    Processor,
    Exporter,
    /// A connector: in `receivers` it feeds this pipeline, in `exporters` it is fed by it.
    Connector,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Receiver => "receiver",
            Role::Processor => "processor",
            Role::Exporter => "exporter",
            Role::Connector => "connector",
        }
    }
}

/// A component as one pipeline names it.
#[derive(Clone, Debug, PartialEq)]
pub struct ComponentView {
    pub id: String,
    pub type_name: String,
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PipelineView {
    pub id: String,
    pub signal: Signal,
    pub receivers: Vec<ComponentView>,
    pub processors: Vec<ComponentView>,
    pub exporters: Vec<ComponentView>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExtensionView {
    pub id: String,
    pub type_name: String,
    /// Listed in `service.extensions` (so started with the service).
    pub enabled: bool,
}

/// What the pages show of the service's structure: fixed while it runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Topology {
    pub pipelines: Vec<PipelineView>,
    pub extensions: Vec<ExtensionView>,
}

impl Topology {
    /// The pipelines and extensions of validated settings, in the config's order.
    pub fn new(settings: &Settings) -> Topology {
        let view = |kind: Kind, role: Role, id: &str| {
            let (role, def) = match settings.find(kind, id) {
                Some(def) => (role, Some(def)),
                None => (Role::Connector, settings.find(Kind::Connector, id)),
            };
            ComponentView {
                id: id.to_string(),
                type_name: def.map_or("", |d| d.type_name).to_string(),
                role,
            }
        };
        let pipelines = settings
            .pipelines
            .iter()
            .map(|p| PipelineView {
                id: p.id.clone(),
                signal: p.signal,
                receivers: p
                    .receivers
                    .iter()
                    .map(|r| view(Kind::Receiver, Role::Receiver, &r.id))
                    .collect(),
                processors: p
                    .processors
                    .iter()
                    .map(|r| view(Kind::Processor, Role::Processor, &r.id))
                    .collect(),
                exporters: p
                    .exporters
                    .iter()
                    .map(|r| view(Kind::Exporter, Role::Exporter, &r.id))
                    .collect(),
            })
            .collect();
        let extensions = settings
            .extensions
            .iter()
            .map(|def| ExtensionView {
                id: def.id.clone(),
                type_name: def.type_name.to_string(),
                enabled: settings.service_extensions.iter().any(|r| r.id == def.id),
            })
            .collect();
        Topology {
            pipelines,
            extensions,
        }
    }
}

/// What every page may read.
pub(crate) struct State {
    pub topology: Topology,
    pub registry: Arc<Registry>,
    pub started: SystemTime,
    pub started_at: Instant,
    pub expvar: bool,
    /// Registry samples of the status page's rates and sparklines.
    pub history: std::sync::Mutex<status::History>,
    /// The memory picture the status page shows; `None` shows the page without it.
    pub picture: Option<crate::picture::PictureHandle>,
}

/// One HTML page of the extension.
pub(crate) struct Page {
    pub path: &'static str,
    /// Link text in the navigation bar.
    pub title: &'static str,
    pub render: fn(&State) -> String,
}

/// The HTML pages, in navigation order. Add a page here (e.g. the status page at `/`).
pub(crate) const PAGES: &[Page] = &[
    Page {
        path: "/",
        title: "Status",
        render: status::index,
    },
    Page {
        path: "/debug/servicez",
        title: "Service",
        render: pages::servicez,
    },
    Page {
        path: "/debug/pipelinez",
        title: "Pipelines",
        render: pages::pipelinez,
    },
    Page {
        path: "/debug/extensionz",
        title: "Extensions",
        render: pages::extensionz,
    },
    Page {
        path: "/debug/featurez",
        title: "Feature gates",
        render: pages::featurez,
    },
    Page {
        path: "/debug/tracez",
        title: "Traces",
        render: pages::tracez,
    },
];

/// `/debug/expvarz`, served only with `expvar.enabled`.
pub(crate) const EXPVARZ: &str = "/debug/expvarz";

fn answer(content_type: &'static str, body: String) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// 401 with the challenge a browser needs to ask for credentials (basic auth) and the
/// scheme a bearer token client expects.
fn unauthorized() -> Response {
    let mut response = StatusCode::UNAUTHORIZED.into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"oxcol\", Bearer"),
    );
    response
}

/// The router of every page; each request is authenticated first when `auth` is set.
fn router(state: Arc<State>, auth: Option<Arc<ServerAuthenticator>>) -> Router {
    let mut router = Router::new();
    let allowed = move |headers: &http::HeaderMap| {
        auth.as_ref()
            .is_none_or(|a| a.authenticate(headers).is_ok())
    };
    for page in PAGES {
        let (state, allowed) = (Arc::clone(&state), allowed.clone());
        let render = page.render;
        router = router.route(
            page.path,
            get(move |headers: http::HeaderMap| {
                let response = if allowed(&headers) {
                    answer("text/html; charset=utf-8", render(&state))
                } else {
                    unauthorized()
                };
                async move { response }
            }),
        );
    }
    {
        let (state, allowed) = (Arc::clone(&state), allowed.clone());
        router = router.route(
            status::API_STATUS,
            get(move |headers: http::HeaderMap| {
                let response = if allowed(&headers) {
                    answer(
                        "application/json; charset=utf-8",
                        status::status_json(&state, Instant::now()),
                    )
                } else {
                    unauthorized()
                };
                async move { response }
            }),
        );
    }
    if state.expvar {
        router = router.route(
            EXPVARZ,
            get(move |headers: http::HeaderMap| {
                let response = if allowed(&headers) {
                    answer("application/json; charset=utf-8", pages::expvarz(&state))
                } else {
                    unauthorized()
                };
                async move { response }
            }),
        );
    }
    router
}

/// Serves the pages until `shutdown`. Errors name the extension.
pub async fn serve(
    id: &str,
    config: &Config,
    topology: Topology,
    auth: Option<Arc<ServerAuthenticator>>,
    registry: &Arc<Registry>,
    picture: Option<crate::picture::PictureHandle>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), String> {
    let address = oxcol_receivers::otlp::resolve_endpoint(&config.endpoint)
        .map_err(|e| format!("extension {id}: endpoint {:?}: {e}", config.endpoint))?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("extension {id}: cannot listen on {address}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("extension {id}: {e}"))?;
    let tls = match &config.tls {
        Some(tls) => Some(
            tls.rustls_config(oxcol_core::tls::ALPN_HTTP)
                .map_err(|e| format!("extension {id}: {e}"))?,
        ),
        None => None,
    };
    let state = Arc::new(State {
        topology,
        registry: Arc::clone(registry),
        started: SystemTime::now(),
        started_at: Instant::now(),
        expvar: config.expvar.enabled,
        history: std::sync::Mutex::new(status::History::new(status::HISTORY_LEN)),
        picture,
    });
    let sampler = tokio::spawn(status::sample_until(Arc::clone(&state), shutdown.clone()));
    let router = router(state, auth);
    let mut limits = ServerLimits::http(None, None);
    let name = id.to_string();
    limits.stats = Some(oxcol_core::listen::ConnectionStats::new(registry, &name));
    let incoming =
        oxcol_core::listen::incoming(&name, listener, tls, limits.clone(), shutdown.clone());
    tracing::info!(extension = %name, endpoint = %bound, tls = config.tls.is_some(), "zpages listening");
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
        let _ = sampler.await;
    });
    Ok((bound, task))
}
