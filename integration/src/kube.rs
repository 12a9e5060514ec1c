//! A real Kubernetes control plane for tests: etcd plus kube-apiserver (both built by
//! `scripts/build-peer`) on free 127.0.0.1 ports, in a temp dir of their own, and a small
//! JSON client for it.
//!
//! There is no kubelet, scheduler or controller manager: a test creates a pod with
//! `spec.nodeName` already set and PATCHes its status (phase, pod IP, container IDs) the way a
//! kubelet would ([`KubeClient::set_pod_status`]). Objects that controllers would make
//! (ReplicaSets owned by Deployments, ...) are created by hand with their owner references.
//!
//! Authentication is a static token file: an `admin` user in `system:masters` plus any
//! [`KubeUser`] the test asks for (RBAC tests bind roles to them). Authorization is
//! `AlwaysAllow` or `RBAC` ([`KubeOptions::rbac`]). With [`KubeOptions::audit`] every request
//! is written to an audit log ([`KubeApiServer::audit_events`]), so a test can check which
//! lists and watches a client made.
//!
//! Both processes are killed when the [`KubeApiServer`] is dropped (also when the test
//! panics), and every wait here is bounded. Nothing here is part of the oxcol binary.

use crate::child::{ChildGuard, spawn_appending, spawn_logged};
use crate::net::{free_port, percent_encode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use oxcol_core::tls::{HttpsConnector, TlsClientConfig, https_connector};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest wait for etcd or the apiserver to become ready (a debug test machine is slow and
/// the apiserver runs its post-start hooks before `/readyz` says ok; ~3 s when idle).
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Longest time one API call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// The token of the `admin` user (group `system:masters`: allowed everything under RBAC).
pub const ADMIN_TOKEN: &str = "oxcol-test-admin-token";

/// A user in the static token file.
#[derive(Clone, Debug)]
pub struct KubeUser {
    pub name: String,
    pub token: String,
    pub groups: Vec<String>,
}

impl KubeUser {
    pub fn new(name: &str, token: &str, groups: &[&str]) -> KubeUser {
        KubeUser {
            name: name.to_string(),
            token: token.to_string(),
            groups: groups.iter().map(|group| group.to_string()).collect(),
        }
    }
}

/// How to start the apiserver.
#[derive(Clone, Debug, Default)]
pub struct KubeOptions {
    /// `--authorization-mode=RBAC` instead of `AlwaysAllow`.
    pub rbac: bool,
    /// Users besides `admin`.
    pub users: Vec<KubeUser>,
    /// Write an audit log of every request (level Metadata).
    pub audit: bool,
    /// Extra apiserver flags, e.g. `--default-watch-cache-size=0`.
    pub extra_args: Vec<String>,
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A running etcd + kube-apiserver pair.
pub struct KubeApiServer {
    dir: PathBuf,
    options: KubeOptions,
    etcd: Option<ChildGuard>,
    apiserver: Option<ChildGuard>,
    /// The apiserver's secure port on 127.0.0.1.
    pub port: u16,
    /// etcd's client port on 127.0.0.1 (plain HTTP; its JSON gateway answers under `/v3/`).
    pub etcd_port: u16,
    admin: KubeClient,
}

impl KubeApiServer {
    /// Starts etcd and the apiserver and waits until `/readyz` answers ok.
    pub async fn start(options: KubeOptions) -> Result<KubeApiServer, String> {
        let dir = std::env::temp_dir().join(format!(
            "oxcol-kube-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("certs"))
            .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        make_certificates(&dir)?;
        let etcd_port = free_port();
        let etcd_peer_port = free_port();
        let port = free_port();
        let etcd = spawn_logged(
            Command::new(crate::peers::peer("etcd"))
                .arg("--name=oxcol-test")
                .arg(format!("--data-dir={}", dir.join("etcd").display()))
                .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
                .arg(format!(
                    "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
                ))
                .arg(format!(
                    "--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"
                ))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}"
                ))
                .arg(format!(
                    "--initial-cluster=oxcol-test=http://127.0.0.1:{etcd_peer_port}"
                ))
                .arg("--unsafe-no-fsync=true")
                .arg("--log-level=warn"),
            &dir.join("etcd.log"),
        );
        let admin = KubeClient::new(
            &format!("https://127.0.0.1:{port}"),
            ADMIN_TOKEN,
            &dir.join("ca.crt"),
        )?;
        let mut server = KubeApiServer {
            dir,
            options,
            etcd: Some(etcd),
            apiserver: None,
            port,
            etcd_port,
            admin,
        };
        server.wait_etcd().await?;
        server.start_apiserver().await?;
        Ok(server)
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The CA (PEM) that signed the apiserver's serving certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The temp dir holding certificates, logs and etcd's data (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A client acting as `admin`.
    pub fn admin(&self) -> &KubeClient {
        &self.admin
    }

    /// A client acting as the user with `token`.
    pub fn client_as(&self, token: &str) -> Result<KubeClient, String> {
        KubeClient::new(&self.url(), token, &self.ca_file())
    }

    /// Writes a kubeconfig for the user with `token` (server, CA file, token) and returns
    /// its path; point `KUBECONFIG` at it.
    pub fn write_kubeconfig(&self, name: &str, token: &str) -> Result<PathBuf, String> {
        let path = self.dir.join(format!("kubeconfig-{name}"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    certificate-authority: {ca}\nusers:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: {name}\ncurrent-context: test\n",
            url = self.url(),
            ca = self.ca_file().display(),
        );
        std::fs::write(&path, text)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        Ok(path)
    }

    /// Adds a user to the token file and restarts the apiserver so it reads it.
    pub async fn add_user(&mut self, user: KubeUser) -> Result<(), String> {
        self.options.users.push(user);
        self.restart().await
    }

    /// Kills the apiserver (etcd keeps running with all data).
    pub fn stop_apiserver(&mut self) {
        self.apiserver.take();
    }

    /// Starts the apiserver again (same port, same etcd) and waits for `/readyz`.
    pub async fn start_apiserver(&mut self) -> Result<(), String> {
        if self.apiserver.is_some() {
            return Ok(());
        }
        self.write_token_file()?;
        let mut command = Command::new(crate::peers::peer("kube-apiserver"));
        let dir = &self.dir;
        command
            .arg(format!(
                "--etcd-servers=http://127.0.0.1:{}",
                self.etcd_port
            ))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={}", self.port))
            .arg(format!("--cert-dir={}", dir.join("certs").display()))
            .arg(format!(
                "--tls-cert-file={}",
                dir.join("server.crt").display()
            ))
            .arg(format!(
                "--tls-private-key-file={}",
                dir.join("server.key").display()
            ))
            .arg(format!("--client-ca-file={}", dir.join("ca.crt").display()))
            .arg(format!(
                "--token-auth-file={}",
                dir.join("tokens.csv").display()
            ))
            .arg(format!(
                "--authorization-mode={}",
                if self.options.rbac {
                    "RBAC"
                } else {
                    "AlwaysAllow"
                }
            ))
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg("--endpoint-reconciler-type=none")
            .arg("--allow-privileged=true")
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!(
                "--service-account-key-file={}",
                dir.join("sa.key").display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                dir.join("sa.key").display()
            ))
            .arg("--profiling=false")
            .arg("-v=1");
        if self.options.audit {
            std::fs::write(
                dir.join("audit-policy.yaml"),
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
            )
            .map_err(|error| format!("cannot write the audit policy: {error}"))?;
            command
                .arg(format!(
                    "--audit-policy-file={}",
                    dir.join("audit-policy.yaml").display()
                ))
                .arg(format!(
                    "--audit-log-path={}",
                    dir.join("audit.log").display()
                ))
                .arg("--audit-log-mode=blocking");
        }
        command.args(&self.options.extra_args);
        self.apiserver = Some(spawn_appending(&mut command, &dir.join("apiserver.log")));
        self.wait_ready().await
    }

    /// Kills and starts the apiserver again (same port, same etcd).
    pub async fn restart(&mut self) -> Result<(), String> {
        self.stop_apiserver();
        self.start_apiserver().await
    }

    /// The apiserver's stderr so far (all its runs).
    pub fn apiserver_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("apiserver.log")).unwrap_or_default()
    }

    /// Every audit event logged so far (one JSON object per request and stage); empty
    /// unless started with [`KubeOptions::audit`].
    pub fn audit_events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Makes etcd forget the history the apiserver's resourceVersions point into: writes a
    /// key outside the apiserver's prefix (so the revision moves on), then compacts etcd at
    /// that revision (physically). A watch resumed afterwards from an older resourceVersion
    /// gets `410 Gone` from the apiserver. Returns the compacted revision.
    pub async fn compact_etcd(&self) -> Result<i64, String> {
        let base = format!("http://127.0.0.1:{}", self.etcd_port);
        let put = self
            .admin
            .raw(
                http::Method::POST,
                &format!("{base}/v3/kv/put"),
                "application/json",
                Bytes::from(json!({"key": "b3hjb2wtY29tcGFjdA==", "value": "MQ=="}).to_string()),
            )
            .await?;
        let put: Value = parse_json(&put.1)?;
        let revision: i64 = put["header"]["revision"]
            .as_str()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| format!("etcd put answered without a revision: {put}"))?;
        let (status, body) = self
            .admin
            .raw(
                http::Method::POST,
                &format!("{base}/v3/kv/compaction"),
                "application/json",
                Bytes::from(
                    json!({"revision": revision.to_string(), "physical": true}).to_string(),
                ),
            )
            .await?;
        if !status.is_success() {
            return Err(format!(
                "etcd compaction answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        Ok(revision)
    }

    fn write_token_file(&self) -> Result<(), String> {
        let mut text = format!("{ADMIN_TOKEN},admin,admin-uid,\"system:masters\"\n");
        for user in &self.options.users {
            text.push_str(&format!(
                "{},{},{}-uid,\"{}\"\n",
                user.token,
                user.name,
                user.name,
                user.groups.join(",")
            ));
        }
        let path = self.dir.join("tokens.csv");
        std::fs::write(&path, text)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))
    }

    async fn wait_etcd(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = format!("127.0.0.1:{}", self.etcd_port);
        loop {
            if let Some(Ok(Some(status))) =
                self.etcd.as_mut().map(|etcd| etcd.child_mut().try_wait())
            {
                return Err(format!(
                    "etcd exited during start-up with {status}:\n{}",
                    std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
                ));
            }
            let health = tokio::task::spawn_blocking({
                let addr = addr.clone();
                move || crate::net::http_get(&addr, "/health")
            })
            .await
            .map_err(|error| error.to_string())?;
            if let Ok((200, body)) = health
                && body.contains("true")
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "etcd was not healthy within {START_TIMEOUT:?}:\n{}",
                    std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last;
        loop {
            if let Some(Ok(Some(status))) = self
                .apiserver
                .as_mut()
                .map(|apiserver| apiserver.child_mut().try_wait())
            {
                return Err(format!(
                    "kube-apiserver exited during start-up with {status}:\n{}",
                    tail(&self.apiserver_log(), 40)
                ));
            }
            match self
                .admin
                .raw(
                    http::Method::GET,
                    &format!("{}/readyz", self.url()),
                    "",
                    Bytes::new(),
                )
                .await
            {
                Ok((status, _)) if status.is_success() => return Ok(()),
                Ok((status, body)) => {
                    last = format!("{status}: {}", String::from_utf8_lossy(&body))
                }
                Err(error) => last = error,
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "kube-apiserver was not ready within {START_TIMEOUT:?} (last answer: {last}):\n{}",
                    tail(&self.apiserver_log(), 40)
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        self.apiserver.take();
        self.etcd.take();
        if std::thread::panicking() {
            eprintln!(
                "---- kube-apiserver log (last 30 lines) ----\n{}",
                tail(&self.apiserver_log(), 30)
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Generates, with the `openssl` command: a CA (`ca.crt`/`ca.key`), the apiserver's serving
/// certificate for 127.0.0.1 and localhost signed by it (`server.crt`/`server.key`), and the
/// service-account signing key (`sa.key`).
fn make_certificates(dir: &Path) -> Result<(), String> {
    let run = |args: &[&str]| -> Result<(), String> {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|error| format!("cannot run openssl (install it): {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    };
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|error| format!("cannot write server.ext: {error}"))?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=oxcol-test-ca",
    ]);
    run(&ca)?;
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=kube-apiserver",
    ]);
    run(&csr)?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ])?;
    run(&["genrsa", "-out", "sa.key", "2048"])
}

fn parse_json(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|error| {
        format!(
            "answer is not JSON ({error}): {}",
            String::from_utf8_lossy(body)
        )
    })
}

/// What a kubelet would write into a pod's status.
#[derive(Clone, Debug, Default)]
pub struct PodStatus {
    /// `Pending`, `Running`, `Succeeded`, `Failed`.
    pub phase: String,
    pub pod_ip: Option<String>,
    pub host_ip: Option<String>,
    /// `(container name, container ID with its runtime prefix, e.g. "containerd://<64 hex>")`.
    pub containers: Vec<(String, String)>,
}

/// A JSON client of one apiserver, acting as one user (bearer token).
#[derive(Clone)]
pub struct KubeClient {
    base: String,
    token: String,
    client: Client<HttpsConnector, Full<Bytes>>,
    /// kind per `apiVersion` -> (resource, namespaced), from discovery.
    resources: Arc<Mutex<HashMap<String, HashMap<String, (String, bool)>>>>,
}

impl KubeClient {
    /// A client of `base` (`https://host:port`) that trusts `ca_file` and sends `token`.
    pub fn new(base: &str, token: &str, ca_file: &Path) -> Result<KubeClient, String> {
        let tls = TlsClientConfig {
            ca_file: Some(ca_file.display().to_string()),
            ..TlsClientConfig::default()
        };
        let connector = https_connector(Some(&tls), Duration::from_secs(5))?;
        Ok(KubeClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            resources: Arc::default(),
        })
    }

    /// One request to a full URL; returns the status and the body, whatever the status.
    pub async fn raw(
        &self,
        method: http::Method,
        url: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<(http::StatusCode, Bytes), String> {
        let mut request = http::Request::builder()
            .method(method.clone())
            .uri(url)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::ACCEPT, "application/json");
        if !content_type.is_empty() {
            request = request.header(http::header::CONTENT_TYPE, content_type);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|error| format!("cannot build {method} {url}: {error}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| format!("{method} {url}: {error}"))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|error| format!("{method} {url}: {error}"))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("{method} {url}: no answer within {CALL_TIMEOUT:?}"))?
    }

    /// A request to `path` (under the apiserver); `Ok` holds the JSON answer of a 2xx,
    /// `Err` the status and the apiserver's message otherwise.
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let (status, answer) = self.raw(method.clone(), &url, content_type, body).await?;
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&answer)
                .ok()
                .and_then(|status| status["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&answer).into_owned());
            return Err(format!("{method} {path} answered {status}: {message}"));
        }
        if answer.is_empty() {
            return Ok(Value::Null);
        }
        parse_json(&answer)
    }

    pub async fn get(&self, path: &str) -> Result<Value, String> {
        self.call(http::Method::GET, path, "", Bytes::new()).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.call(
            http::Method::POST,
            path,
            "application/json",
            Bytes::from(body.to_string()),
        )
        .await
    }

    /// A JSON merge patch (`application/merge-patch+json`).
    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.call(
            http::Method::PATCH,
            path,
            "application/merge-patch+json",
            Bytes::from(body.to_string()),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, String> {
        self.call(http::Method::DELETE, path, "", Bytes::new())
            .await
    }

    /// Creates a namespace with `labels`; an existing one is fine.
    pub async fn create_namespace(
        &self,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Result<Value, String> {
        let body = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": to_map(labels)},
        });
        match self.post("/api/v1/namespaces", &body).await {
            Err(error) if error.contains("409") => {
                self.get(&format!("/api/v1/namespaces/{name}")).await
            }
            other => other,
        }
    }

    /// Creates a node object (no kubelet behind it) with `labels`.
    pub async fn create_node(&self, name: &str, labels: &[(&str, &str)]) -> Result<Value, String> {
        let body = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": to_map(labels)},
        });
        self.post("/api/v1/nodes", &body).await
    }

    /// Creates a pod already bound to `node` (`spec.nodeName`), one container per name in
    /// `containers` (image `registry.example/<name>:1.2.3`), with `labels` and `annotations`,
    /// and `owner` (`(apiVersion, kind, name, uid)`) as its controller when given.
    /// Returns the created pod (its `metadata.uid` is the `k8s.pod.uid`).
    #[allow(clippy::too_many_arguments)]
    pub async fn create_pod(
        &self,
        namespace: &str,
        name: &str,
        node: &str,
        containers: &[&str],
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
        owner: Option<(&str, &str, &str, &str)>,
    ) -> Result<Value, String> {
        let mut metadata = json!({
            "name": name,
            "labels": to_map(labels),
            "annotations": to_map(annotations),
        });
        if let Some((api_version, kind, owner_name, uid)) = owner {
            metadata["ownerReferences"] = json!([{
                "apiVersion": api_version, "kind": kind, "name": owner_name, "uid": uid,
                "controller": true,
            }]);
        }
        let containers: Vec<Value> = containers
            .iter()
            .map(|container| json!({"name": container, "image": format!("registry.example/{container}:1.2.3")}))
            .collect();
        let body = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": {"nodeName": node, "containers": containers},
        });
        self.post(&format!("/api/v1/namespaces/{namespace}/pods"), &body)
            .await
    }

    /// Creates a ReplicaSet (no controller runs it) owned by Deployment `deployment` when
    /// given; returns it (its `metadata.uid` is what pods name as owner).
    pub async fn create_replicaset(
        &self,
        namespace: &str,
        name: &str,
        deployment: Option<(&str, &str)>,
    ) -> Result<Value, String> {
        let mut metadata = json!({"name": name});
        if let Some((deployment, uid)) = deployment {
            metadata["ownerReferences"] = json!([{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": deployment, "uid": uid,
                "controller": true,
            }]);
        }
        let body = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": metadata,
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "registry.example/c:1"}]},
                },
            },
        });
        self.post(
            &format!("/apis/apps/v1/namespaces/{namespace}/replicasets"),
            &body,
        )
        .await
    }

    /// PATCHes the pod's status as its kubelet would (phase, IPs, running containers).
    pub async fn set_pod_status(
        &self,
        namespace: &str,
        name: &str,
        status: &PodStatus,
    ) -> Result<Value, String> {
        let now = "2026-01-01T00:00:00Z";
        let statuses: Vec<Value> = status
            .containers
            .iter()
            .map(|(container, id)| {
                json!({
                    "name": container,
                    "image": format!("registry.example/{container}:1.2.3"),
                    "imageID": "",
                    "containerID": id,
                    "ready": true,
                    "restartCount": 0,
                    "started": true,
                    "state": {"running": {"startedAt": now}},
                })
            })
            .collect();
        let mut body = json!({
            "status": {
                "phase": status.phase,
                "startTime": now,
                "containerStatuses": statuses,
            }
        });
        if let Some(ip) = &status.pod_ip {
            body["status"]["podIP"] = json!(ip);
            body["status"]["podIPs"] = json!([{"ip": ip}]);
        }
        if let Some(ip) = &status.host_ip {
            body["status"]["hostIP"] = json!(ip);
            body["status"]["hostIPs"] = json!([{"ip": ip}]);
        }
        self.patch(
            &format!("/api/v1/namespaces/{namespace}/pods/{name}/status"),
            &body,
        )
        .await
    }

    /// Merges `labels` into the pod's labels (a value of `None` removes the label).
    pub async fn patch_pod_labels(
        &self,
        namespace: &str,
        name: &str,
        labels: &[(&str, Option<&str>)],
    ) -> Result<Value, String> {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(key, value)| (key.to_string(), value.map_or(Value::Null, |v| json!(v))))
            .collect();
        self.patch(
            &format!("/api/v1/namespaces/{namespace}/pods/{name}"),
            &json!({"metadata": {"labels": labels}}),
        )
        .await
    }

    /// Deletes the pod at once (grace period 0: there is no kubelet to wait for).
    pub async fn delete_pod(&self, namespace: &str, name: &str) -> Result<Value, String> {
        self.call(
            http::Method::DELETE,
            &format!("/api/v1/namespaces/{namespace}/pods/{name}"),
            "application/json",
            Bytes::from(json!({"gracePeriodSeconds": 0}).to_string()),
        )
        .await
    }

    /// Server-side dry run of one manifest (a JSON object, or one YAML document):
    /// `POST <collection>?dryRun=All&fieldValidation=Strict`. The collection comes from the
    /// manifest's `apiVersion`, `kind` and `metadata.namespace` (default `default`) through
    /// API discovery. `Ok` holds the object the apiserver would have stored; `Err` its
    /// rejection (unknown fields, invalid values, a missing namespace, ...).
    ///
    /// YAML is sent as is (`application/yaml`); only its top-level `apiVersion`, `kind`
    /// and `metadata.namespace` are read here, by a line scan that expects them in block
    /// style (as `kubectl`/`helm template` write them). Split multi-document files with
    /// [`split_yaml_documents`] first.
    pub async fn server_side_dry_run(&self, manifest: &str) -> Result<Value, String> {
        let trimmed = manifest.trim_start();
        let (head, content_type) = if trimmed.starts_with('{') {
            let object: Value = parse_json(trimmed.as_bytes())?;
            (
                ManifestHead {
                    api_version: object["apiVersion"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    kind: object["kind"].as_str().unwrap_or_default().to_string(),
                    namespace: object["metadata"]["namespace"].as_str().map(str::to_string),
                },
                "application/json",
            )
        } else {
            (scan_yaml_head(manifest), "application/yaml")
        };
        if head.api_version.is_empty() || head.kind.is_empty() {
            return Err("the manifest has no top-level apiVersion and kind".to_string());
        }
        let (resource, namespaced) = self.resource_of(&head.api_version, &head.kind).await?;
        let prefix = if head.api_version.contains('/') {
            format!("/apis/{}", head.api_version)
        } else {
            format!("/api/{}", head.api_version)
        };
        let path = if namespaced {
            let namespace = head.namespace.as_deref().unwrap_or("default");
            format!("{prefix}/namespaces/{namespace}/{resource}")
        } else {
            format!("{prefix}/{resource}")
        };
        self.call(
            http::Method::POST,
            &format!("{path}?dryRun=All&fieldValidation=Strict"),
            content_type,
            Bytes::from(manifest.to_string()),
        )
        .await
        .map_err(|error| format!("{} {}: {error}", head.kind, head.api_version))
    }

    /// The resource name (plural) of `kind` in `api_version` and whether it is namespaced,
    /// from discovery (cached per client).
    pub async fn resource_of(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<(String, bool), String> {
        let cached = self
            .resources
            .lock()
            .ok()
            .and_then(|map| map.get(api_version).map(|kinds| kinds.get(kind).cloned()));
        let kinds = match cached {
            Some(found) => {
                return found
                    .ok_or_else(|| format!("the apiserver serves no {kind} in {api_version}"));
            }
            None => {
                let path = if api_version.contains('/') {
                    format!("/apis/{api_version}")
                } else {
                    format!("/api/{api_version}")
                };
                let list = self.get(&path).await?;
                let mut kinds = HashMap::new();
                for resource in list["resources"].as_array().into_iter().flatten() {
                    let Some(name) = resource["name"].as_str() else {
                        continue;
                    };
                    if name.contains('/') {
                        continue;
                    }
                    if let Some(kind) = resource["kind"].as_str() {
                        let namespaced = resource["namespaced"].as_bool().unwrap_or(false);
                        kinds.insert(kind.to_string(), (name.to_string(), namespaced));
                    }
                }
                kinds
            }
        };
        let found = kinds.get(kind).cloned();
        if let Ok(mut map) = self.resources.lock() {
            map.insert(api_version.to_string(), kinds);
        }
        found.ok_or_else(|| format!("the apiserver serves no {kind} in {api_version}"))
    }

    /// The query-string fragment for a label selector, e.g. `labelSelector=app%3Dx`.
    pub fn label_selector(selector: &str) -> String {
        format!("labelSelector={}", percent_encode(selector))
    }
}

fn to_map(pairs: &[(&str, &str)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), json!(value)))
            .collect(),
    )
}

struct ManifestHead {
    api_version: String,
    kind: String,
    namespace: Option<String>,
}

/// Reads `apiVersion`, `kind` and `metadata.namespace` from a block-style YAML document.
fn scan_yaml_head(text: &str) -> ManifestHead {
    let unquote = |value: &str| {
        let value = value.split(" #").next().unwrap_or_default().trim();
        value.trim_matches(|c| c == '"' || c == '\'').to_string()
    };
    let mut head = ManifestHead {
        api_version: String::new(),
        kind: String::new(),
        namespace: None,
    };
    let mut in_metadata = false;
    let mut child_indent = None;
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 0 {
            in_metadata = line.starts_with("metadata:");
            child_indent = None;
            if let Some(value) = line.strip_prefix("apiVersion:") {
                head.api_version = unquote(value);
            } else if let Some(value) = line.strip_prefix("kind:") {
                head.kind = unquote(value);
            }
        } else if in_metadata {
            let indent_here = *child_indent.get_or_insert(indent);
            if indent == indent_here
                && let Some(value) = line.trim_start().strip_prefix("namespace:")
            {
                head.namespace = Some(unquote(value));
            }
        }
    }
    head
}

/// Splits a multi-document YAML stream at its `---` lines, dropping empty documents.
pub fn split_yaml_documents(text: &str) -> Vec<String> {
    let mut documents = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line == "---" || line.starts_with("--- ") {
            documents.push(std::mem::take(&mut current));
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    documents.push(current);
    documents
        .into_iter()
        .filter(|document| {
            document
                .lines()
                .any(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_head_reads_only_top_level_keys() {
        let head = scan_yaml_head(
            "# c\napiVersion: apps/v1\nkind: \"DaemonSet\"\nmetadata:\n  name: x\n  labels:\n    namespace: nope\n  namespace: observability\nspec:\n  namespace: nope2\n",
        );
        assert_eq!(head.api_version, "apps/v1");
        assert_eq!(head.kind, "DaemonSet");
        assert_eq!(head.namespace.as_deref(), Some("observability"));
        let head = scan_yaml_head("kind: Namespace\napiVersion: v1\nmetadata:\n  name: x\n");
        assert_eq!(head.namespace, None);
    }

    #[test]
    fn yaml_documents_split_at_separators() {
        let documents = split_yaml_documents("---\n# only a comment\n---\na: 1\n--- \nb: 2\n");
        assert_eq!(documents, vec!["a: 1\n".to_string(), "b: 2\n".to_string()]);
    }
}
