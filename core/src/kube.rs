//! A small Kubernetes API client shared by the components that read the API
//! (`k8sattributes`, the `loadbalancing` exporter's `resolver.k8s`): where the API is and
//! how to authenticate (service account, kubeconfig, none), and a list + watch loop that
//! keeps a component's view of one collection current.
//!
//! Plain HTTP/JSON over the shared hyper + rustls client (no Kubernetes client crate: the
//! two requests needed here are small, and the crates pull in far more than they give):
//! `GET <collection>?limit=100` pages for the list, then `?watch=1&resourceVersion=<rv>
//! &allowWatchBookmarks=true` as a stream of JSON lines. A `410 Gone` (the resourceVersion
//! was compacted away) re-lists; any other failure retries the watch from the last
//! resourceVersion after a bounded, jittered back-off. The bearer token is read from its
//! file at every request, so a rotated service-account token is picked up.
//!
//! This module knows no resource kind: what a list or an event means is the [`Sink`]'s
//! business. It must never hold a caller's lock or block a pipeline: it runs on the caller's
//! task and only calls the sink, once per list and once per event.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::telemetry::Counter;
use crate::tls::{HttpsConnector, TlsClientConfig, https_connector};

/// In-cluster service-account files (mounted by the kubelet).
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// One list page.
const PAGE_SIZE: u32 = 100;
/// The server ends a watch after this long unless the collection asks otherwise; we then
/// resume it from the last version.
pub const WATCH_TIMEOUT: Duration = Duration::from_secs(290);
/// A watch silent this much longer than its timeout (no event, no bookmark) is taken as a
/// dead connection.
const WATCH_IDLE_MARGIN: Duration = Duration::from_secs(30);
/// Longest wait for an answer to a list request.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq)]
pub enum Token {
    None,
    Static(String),
    /// Re-read at every request (rotated service-account tokens).
    File(PathBuf),
}

/// How to reach the API server.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiConfig {
    /// `https://host:port` (no trailing slash).
    pub server: String,
    pub tls: TlsClientConfig,
    pub token: Token,
}

/// The API server and credentials `auth_type` selects, from `env` and the file system.

/// The API server and credentials `auth_type` (`serviceAccount`, `kubeConfig` or `none`, the
/// Collector's `k8sconfig.APIConfig`) selects, from `env` and the file system. `context`
/// picks a kubeconfig context other than the file's `current-context`.
pub fn api_config(
    auth_type: &str,
    context: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ApiConfig, String> {
    match auth_type {
        "none" => Ok(ApiConfig {
            server: in_cluster_server(env)?,
            tls: TlsClientConfig {
                insecure_skip_verify: true,
                ..TlsClientConfig::default()
            },
            token: Token::None,
        }),
        "kubeConfig" => {
            let path = kubeconfig_path(env).ok_or_else(|| {
                "no kubeconfig found: set KUBECONFIG or create ~/.kube/config".to_string()
            })?;
            load_kubeconfig(&path, context)
        }
        _ => service_account(env),
    }
}

/// The API the way client-go's `config.GetConfig` finds it (what the Collector's
/// loadbalancing `resolver.k8s` uses): the `KUBECONFIG` file, else the pod's service
/// account, else `~/.kube/config`.
pub fn default_api_config(env: &dyn Fn(&str) -> Option<String>) -> Result<ApiConfig, String> {
    if let Some(list) = env("KUBECONFIG").filter(|v| !v.is_empty()) {
        let path = std::env::split_paths(&list)
            .find(|p| p.is_file())
            .ok_or_else(|| format!("KUBECONFIG={list} names no existing file"))?;
        return load_kubeconfig(&path, "");
    }
    let in_cluster = service_account(env);
    if in_cluster.is_ok() {
        return in_cluster;
    }
    if let Some(path) = kubeconfig_path(env) {
        return load_kubeconfig(&path, "");
    }
    in_cluster.map_err(|problem| {
        format!("{problem}; and no kubeconfig found (set KUBECONFIG or create ~/.kube/config)")
    })
}

/// The namespace of the pod this process runs in (its service account's `namespace` file),
/// if it runs in one.
pub fn own_namespace() -> Option<String> {
    std::fs::read_to_string(Path::new(SERVICE_ACCOUNT_DIR).join("namespace"))
        .ok()
        .map(|text| text.trim().to_string())
        .filter(|ns| !ns.is_empty())
}

fn in_cluster_server(env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    match (
        env("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty()),
        env("KUBERNETES_SERVICE_PORT").filter(|p| !p.is_empty()),
    ) {
        (Some(host), Some(port)) => {
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            Ok(format!("https://{host}:{port}"))
        }
        _ => Err(
            "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not running \
                 in a pod?): run in the cluster, or use auth_type: kubeConfig"
                .to_string(),
        ),
    }
}

fn service_account(env: &dyn Fn(&str) -> Option<String>) -> Result<ApiConfig, String> {
    let dir = Path::new(SERVICE_ACCOUNT_DIR);
    let token = dir.join("token");
    if !token.exists() {
        return Err(format!(
            "the service-account token {} does not exist (automountServiceAccountToken: false?)",
            token.display()
        ));
    }
    Ok(ApiConfig {
        server: in_cluster_server(env)?,
        tls: TlsClientConfig {
            ca_file: Some(dir.join("ca.crt").display().to_string()),
            ..TlsClientConfig::default()
        },
        token: Token::File(token),
    })
}

/// `KUBECONFIG` (the first existing file of its list) or `~/.kube/config`.
fn kubeconfig_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(list) = env("KUBECONFIG").filter(|v| !v.is_empty()) {
        return std::env::split_paths(&list).find(|p| p.is_file());
    }
    let home = env("HOME")?;
    let path = Path::new(&home).join(".kube").join("config");
    path.is_file().then_some(path)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct KubeConfigFile {
    clusters: Vec<Named<KubeCluster>>,
    users: Vec<NamedUser>,
    contexts: Vec<Named<KubeContext>>,
    #[serde(rename = "current-context")]
    current_context: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Named<T: Default> {
    name: String,
    #[serde(alias = "cluster", alias = "context")]
    value: T,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NamedUser {
    name: String,
    user: KubeUser,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
struct KubeCluster {
    server: String,
    certificate_authority: Option<String>,
    certificate_authority_data: Option<String>,
    insecure_skip_tls_verify: bool,
    tls_server_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
struct KubeUser {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    client_certificate: Option<String>,
    client_certificate_data: Option<String>,
    client_key: Option<String>,
    client_key_data: Option<String>,
    exec: Option<serde::de::IgnoredAny>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct KubeContext {
    cluster: String,
    user: String,
}

fn decode_base64(what: &str, data: &str) -> Result<String, String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("{what} is not valid base64: {e}"))?;
    String::from_utf8(bytes).map_err(|_| format!("{what} is not PEM text"))
}

/// Reads a kubeconfig: the cluster and user of `context` (or `current-context`). Relative
/// file paths in it are relative to the kubeconfig's directory, as kubectl reads them.
pub fn load_kubeconfig(path: &Path, context: &str) -> Result<ApiConfig, String> {
    let shown = path.display();
    let node = oxcol_config::load(
        &[oxcol_config::Source::File(path.to_path_buf())],
        &[],
        &|_| None,
    )
    .map_err(|errors| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!("kubeconfig {shown}: {}", text.join("; "))
    })?;
    let file: KubeConfigFile =
        oxcol_config::decode(&node).map_err(|e| format!("kubeconfig {shown}: {e}"))?;
    let context_name = if context.is_empty() {
        file.current_context.as_str()
    } else {
        context
    };
    let chosen = file
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .ok_or_else(|| format!("kubeconfig {shown} has no context {context_name:?}"))?;
    let cluster = file
        .clusters
        .iter()
        .find(|c| c.name == chosen.value.cluster)
        .map(|c| &c.value)
        .ok_or_else(|| {
            format!(
                "kubeconfig {shown} has no cluster {:?}",
                chosen.value.cluster
            )
        })?;
    let default_user = KubeUser::default();
    let user = file
        .users
        .iter()
        .find(|u| u.name == chosen.value.user)
        .map_or(&default_user, |u| &u.user);
    if user.exec.is_some() || user.auth_provider.is_some() {
        return Err(format!(
            "kubeconfig {shown}: user {:?} uses an exec or auth-provider plugin, which oxcol does not run: \
             use a token, tokenFile or client certificate",
            chosen.value.user
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let relative = |file: &String| base.join(file).display().to_string();
    let mut tls = TlsClientConfig {
        insecure_skip_verify: cluster.insecure_skip_tls_verify,
        ca_file: cluster.certificate_authority.as_ref().map(relative),
        cert_file: user.client_certificate.as_ref().map(relative),
        key_file: user.client_key.as_ref().map(relative),
        server_name_override: cluster.tls_server_name.clone(),
        ..TlsClientConfig::default()
    };
    if let Some(data) = &cluster.certificate_authority_data {
        tls.ca_pem = Some(decode_base64("certificate-authority-data", data)?);
    }
    if let Some(data) = &user.client_certificate_data {
        tls.cert_pem = Some(decode_base64("client-certificate-data", data)?);
    }
    if let Some(data) = &user.client_key_data {
        tls.key_pem = Some(decode_base64("client-key-data", data)?);
    }
    let token = match (&user.token, &user.token_file) {
        (Some(token), _) => Token::Static(token.clone()),
        (None, Some(file)) => Token::File(base.join(file)),
        (None, None) => Token::None,
    };
    if cluster.server.is_empty() {
        return Err(format!(
            "kubeconfig {shown}: cluster {:?} has no server",
            chosen.value.cluster
        ));
    }
    Ok(ApiConfig {
        server: cluster.server.trim_end_matches('/').to_string(),
        tls,
        token,
    })
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn token(api: &Api) -> Result<Option<String>, String> {
    match &api.config.token {
        Token::None => Ok(None),
        Token::Static(token) => Ok(Some(token.clone())),
        Token::File(path) => std::fs::read_to_string(path)
            .map(|t| Some(t.trim().to_string()))
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display())),
    }
}

async fn get(
    api: &Api,
    path_and_query: &str,
) -> Result<http::Response<hyper::body::Incoming>, Ended> {
    let url = format!("{}{path_and_query}", api.config.server);
    let mut request = http::Request::get(&url).header(http::header::ACCEPT, "application/json");
    if let Some(token) = token(api).map_err(Ended::Failed)? {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::new())
        .map_err(|e| Ended::Failed(format!("cannot build GET {url}: {e}")))?;
    let response = api
        .client
        .request(request)
        .await
        .map_err(|e| Ended::Failed(format!("GET {path_and_query}: {}", error_chain(&e))))?;
    let status = response.status();
    if status == http::StatusCode::GONE {
        return Err(Ended::Gone);
    }
    if !status.is_success() {
        let body = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
        let hint = match status.as_u16() {
            401 => " (the token or client certificate is not accepted)",
            403 => " (grant get, list and watch on this resource to the service account)",
            _ => "",
        };
        return Err(Ended::Failed(format!(
            "GET {path_and_query} answered {status}: {message}{hint}"
        )));
    }
    Ok(response)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Deserialize)]
struct List<T> {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ListMeta {
    resource_version: String,
    #[serde(rename = "continue")]
    continue_token: String,
}

fn join_query(parts: &[&str]) -> String {
    let parts: Vec<&str> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    parts.join("&")
}

/// Lists the collection page by page into the table; returns the resourceVersion to

type HttpClient = Client<HttpsConnector, Empty<Bytes>>;

/// A located API server with its HTTP client.
pub struct Api {
    pub config: ApiConfig,
    client: HttpClient,
}

impl Api {
    /// Builds the HTTPS client for `config` (no request is made yet).
    pub fn new(config: ApiConfig) -> Result<Api, String> {
        let connector = https_connector(Some(&config.tls), Duration::from_secs(10))
            .map_err(|e| format!("Kubernetes API TLS: {e}"))?;
        let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Api { config, client })
    }
}

/// One watched collection.
#[derive(Clone, Debug)]
pub struct Collection {
    /// `/api/v1/pods`, `/api/v1/namespaces/<ns>/pods`, `/apis/apps/v1/replicasets`, ...
    pub path: String,
    /// `fieldSelector=...&labelSelector=...` (may be empty).
    pub query: String,
    /// The watch's `timeoutSeconds` (at least 1 s): the server ends it after this long and
    /// it is resumed from the last resourceVersion.
    pub watch_timeout: Duration,
}

/// What a watch event did to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Modified,
    Deleted,
}

/// Receives what the list + watch loop learns about one collection.
pub trait Sink<T>: Send {
    /// The whole collection, after the first list and after every re-list (410 Gone).
    fn replace(&mut self, items: Vec<T>) -> Result<(), String>;
    /// One change seen by the watch.
    fn apply(&mut self, change: Change, item: T) -> Result<(), String>;
}

/// Who watches, for logs and self-telemetry.
#[derive(Clone, Debug, Default)]
pub struct Reporter {
    /// `processor k8sattributes`, `exporter loadbalancing/gateways`: starts every log line.
    pub owner: String,
    /// What the owner does while the API is unreachable (said once, in the warning).
    pub meanwhile: String,
    /// Lists after the first one.
    pub relists: Counter,
    /// Failed lists and watches.
    pub errors: Counter,
}

/// Why a list or watch ended.
#[derive(Debug)]
enum Ended {
    /// `410 Gone`: list again.
    Gone,
    /// The owner is shutting down.
    Stopped,
    /// The server ended the watch (its `timeoutSeconds`): resume at once.
    Closed,
    Failed(String),
}

/// Lists `collection` into `sink`, then watches it, until `stop` is cancelled: re-lists on
/// `410 Gone`, retries every other failure with a jittered back-off (500 ms doubling to
/// 30 s). The first failure of an outage is a warning, later ones are debug lines, and the
/// first success after it an info line.
pub async fn list_and_watch<T: DeserializeOwned + Send>(
    api: &Api,
    collection: &Collection,
    sink: &mut dyn Sink<T>,
    reporter: &Reporter,
    stop: &CancellationToken,
) {
    let mut backoff = BACKOFF_FIRST;
    let mut warned = false;
    let mut listed_once = false;
    let mut version: Option<String> = None;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let ended = match &version {
            None => {
                if listed_once {
                    reporter.relists.add(1);
                }
                let listed = tokio::select! {
                    listed = list(api, collection, sink) => listed,
                    _ = stop.cancelled() => Err(Ended::Stopped),
                };
                match listed {
                    Ok(listed) => {
                        listed_once = true;
                        version = Some(listed);
                        continue;
                    }
                    Err(ended) => ended,
                }
            }
            Some(from) => {
                let mut current = from.clone();
                let ended = tokio::select! {
                    ended = watch_once(api, collection, sink, reporter, &mut current, &mut backoff, &mut warned) => ended,
                    _ = stop.cancelled() => Ended::Stopped,
                };
                version = Some(current);
                ended
            }
        };
        let problem = match ended {
            Ended::Stopped => return,
            Ended::Closed => continue,
            Ended::Gone => {
                tracing::info!(
                    "{}: {} watch: resourceVersion too old (410 Gone); listing again",
                    reporter.owner,
                    collection.path
                );
                version = None;
                continue;
            }
            Ended::Failed(problem) => problem,
        };
        reporter.errors.add(1);
        if warned {
            tracing::debug!("{}: {}: {problem}", reporter.owner, collection.path);
        } else {
            warned = true;
            tracing::warn!(
                "{}: Kubernetes API {}{}: {problem}; retrying with back-off, {} meanwhile",
                reporter.owner,
                api.config.server,
                collection.path,
                reporter.meanwhile
            );
        }
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        tokio::select! {
            _ = tokio::time::sleep(backoff.mul_f64(jitter)) => {}
            _ = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Lists the collection page by page into the sink; returns the resourceVersion to watch
/// from.
async fn list<T: DeserializeOwned + Send>(
    api: &Api,
    collection: &Collection,
    sink: &mut dyn Sink<T>,
) -> Result<String, Ended> {
    let mut continue_token = String::new();
    let mut items: Vec<T> = Vec::new();
    let version = loop {
        let limit = format!("limit={PAGE_SIZE}");
        let cont = if continue_token.is_empty() {
            String::new()
        } else {
            format!("continue={}", percent_encode(&continue_token))
        };
        let query = join_query(&[&collection.query, &limit, &cont]);
        let response = get(api, &format!("{}?{query}", collection.path)).await?;
        let body = tokio::time::timeout(LIST_TIMEOUT, response.into_body().collect())
            .await
            .map_err(|_| {
                Ended::Failed(format!(
                    "list {}: no complete answer within {LIST_TIMEOUT:?}",
                    collection.path
                ))
            })?
            .map_err(|e| Ended::Failed(format!("list {}: {e}", collection.path)))?
            .to_bytes();
        let page: List<T> = serde_json::from_slice(&body).map_err(|e| {
            Ended::Failed(format!(
                "list {}: not a list of the expected objects: {e}",
                collection.path
            ))
        })?;
        items.extend(page.items);
        if page.metadata.continue_token.is_empty() {
            break page.metadata.resource_version;
        }
        continue_token = page.metadata.continue_token;
    };
    sink.replace(items).map_err(Ended::Failed)?;
    Ok(version)
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    object: serde_json::Value,
}

/// Watches from `version` until the stream ends or fails; keeps `version` at the last
/// event seen, so the next watch resumes there. An established watch resets the back-off
/// and ends an outage (logged once at info level).
async fn watch_once<T: DeserializeOwned + Send>(
    api: &Api,
    collection: &Collection,
    sink: &mut dyn Sink<T>,
    reporter: &Reporter,
    version: &mut String,
    backoff: &mut Duration,
    warned: &mut bool,
) -> Ended {
    let timeout = collection.watch_timeout.max(Duration::from_secs(1));
    let query = join_query(&[
        "watch=1",
        &format!("resourceVersion={}", percent_encode(version)),
        "allowWatchBookmarks=true",
        &format!("timeoutSeconds={}", timeout.as_secs()),
        &collection.query,
    ]);
    let response = match get(api, &format!("{}?{query}", collection.path)).await {
        Ok(response) => response,
        Err(ended) => return ended,
    };
    *backoff = BACKOFF_FIRST;
    if *warned {
        *warned = false;
        tracing::info!(
            "{}: Kubernetes API {}{} is reachable again",
            reporter.owner,
            api.config.server,
            collection.path
        );
    }
    let idle_limit = timeout + WATCH_IDLE_MARGIN;
    let mut body = response.into_body();
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let frame = match tokio::time::timeout(idle_limit, body.frame()).await {
            Err(_) => {
                return Ended::Failed(format!(
                    "watch {}: silent for {idle_limit:?}",
                    collection.path
                ));
            }
            Ok(None) => return Ended::Closed,
            Ok(Some(Err(e))) => {
                return Ended::Failed(format!("watch {}: {}", collection.path, error_chain(&e)));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buffer.extend_from_slice(&data);
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if let Some(ended) = apply_event(collection, sink, &line, version) {
                return ended;
            }
        }
    }
}

/// Applies one watch event to the sink; Some when the watch must end.
fn apply_event<T: DeserializeOwned>(
    collection: &Collection,
    sink: &mut dyn Sink<T>,
    line: &[u8],
    version: &mut String,
) -> Option<Ended> {
    let event: Event = match serde_json::from_slice(line) {
        Ok(event) => event,
        Err(e) => {
            return Some(Ended::Failed(format!(
                "watch {}: undecodable event: {e}",
                collection.path
            )));
        }
    };
    if event.kind == "ERROR" {
        let code = event.object["code"].as_u64().unwrap_or(0);
        if code == 410 {
            return Some(Ended::Gone);
        }
        let message = event.object["message"].as_str().unwrap_or("no message");
        return Some(Ended::Failed(format!(
            "watch {}: error {code}: {message}",
            collection.path
        )));
    }
    if let Some(seen) = event.object["metadata"]["resourceVersion"].as_str() {
        *version = seen.to_string();
    }
    let change = match event.kind.as_str() {
        "ADDED" => Change::Added,
        "MODIFIED" => Change::Modified,
        "DELETED" => Change::Deleted,
        // BOOKMARK (only moves the resourceVersion) and anything newer.
        _ => return None,
    };
    let item: T = match serde_json::from_value(event.object) {
        Ok(item) => item,
        Err(e) => {
            return Some(Ended::Failed(format!(
                "watch {}: undecodable object: {e}",
                collection.path
            )));
        }
    };
    sink.apply(change, item).err().map(Ended::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorded {
        lists: Vec<Vec<String>>,
        changes: Vec<(Change, String)>,
    }

    #[derive(Deserialize)]
    struct Named {
        metadata: NamedMeta,
    }

    #[derive(Deserialize)]
    struct NamedMeta {
        name: String,
    }

    impl Sink<Named> for Recorded {
        fn replace(&mut self, items: Vec<Named>) -> Result<(), String> {
            self.lists
                .push(items.into_iter().map(|i| i.metadata.name).collect());
            Ok(())
        }

        fn apply(&mut self, change: Change, item: Named) -> Result<(), String> {
            self.changes.push((change, item.metadata.name));
            Ok(())
        }
    }

    fn collection() -> Collection {
        Collection {
            path: "/api/v1/pods".to_string(),
            query: String::new(),
            watch_timeout: WATCH_TIMEOUT,
        }
    }

    #[test]
    fn watch_events_reach_the_sink_and_move_the_version() {
        let mut sink = Recorded::default();
        let mut version = "1".to_string();
        for (line, expected_version) in [
            (
                r#"{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"5"}}}"#,
                "5",
            ),
            (
                r#"{"type":"MODIFIED","object":{"metadata":{"name":"a","resourceVersion":"6"}}}"#,
                "6",
            ),
            (
                r#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}"#,
                "9",
            ),
            (
                r#"{"type":"DELETED","object":{"metadata":{"name":"a","resourceVersion":"10"}}}"#,
                "10",
            ),
        ] {
            assert!(apply_event(&collection(), &mut sink, line.as_bytes(), &mut version).is_none());
            assert_eq!(version, expected_version);
        }
        assert_eq!(
            sink.changes,
            [
                (Change::Added, "a".to_string()),
                (Change::Modified, "a".to_string()),
                (Change::Deleted, "a".to_string())
            ]
        );
        let gone = br#"{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old resource version"}}"#;
        assert!(matches!(
            apply_event(&collection(), &mut sink, gone, &mut version),
            Some(Ended::Gone)
        ));
        let forbidden = br#"{"type":"ERROR","object":{"code":403,"message":"forbidden"}}"#;
        match apply_event(&collection(), &mut sink, forbidden, &mut version) {
            Some(Ended::Failed(problem)) => {
                assert!(problem.contains("403: forbidden"), "{problem}")
            }
            other => panic!("{other:?}"),
        }
        let garbage = br#"{"type":"ADDED","object":{"metadata":{"name":7}}}"#;
        assert!(matches!(
            apply_event(&collection(), &mut sink, garbage, &mut version),
            Some(Ended::Failed(_))
        ));
    }

    #[test]
    fn the_default_config_prefers_kubeconfig_then_the_service_account() {
        let dir = std::env::temp_dir().join(format!("oxcol-kube-default-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("config");
        std::fs::write(
            &path,
            "current-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\n\
             users:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n",
        )
        .expect("writes");
        let list = path.display().to_string();
        let env = |name: &str| (name == "KUBECONFIG").then(|| list.clone());
        let api = default_api_config(&env).expect("kubeconfig");
        assert_eq!(api.server, "https://127.0.0.1:6443");
        assert_eq!(api.token, Token::Static("t".to_string()));
        let missing =
            |name: &str| (name == "KUBECONFIG").then(|| "/nonexistent/kubeconfig".to_string());
        assert!(
            default_api_config(&missing)
                .unwrap_err()
                .contains("KUBECONFIG")
        );
        // No KUBECONFIG, no service account here (a test machine), no HOME: explained.
        if !Path::new(SERVICE_ACCOUNT_DIR).join("token").exists() {
            let error = default_api_config(&|_| None).unwrap_err();
            assert!(
                error.contains("token") && error.contains("kubeconfig"),
                "{error}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
