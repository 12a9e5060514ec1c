//! The Kubernetes manifests (`deploy/`), the Helm chart (`deploy/helm/oxcol`) and the image
//! recipe (`Dockerfile`), checked against real things:
//!
//! - every manifest, and the chart's `helm template` output for each mode, is accepted by a
//!   real kube-apiserver in a server-side dry run with strict field validation, and the chart
//!   renders the same objects as the plain manifests (compared on what the apiserver would
//!   store);
//! - the node agent's ClusterRole, applied for real under RBAC, lets its ServiceAccount's own
//!   token (a TokenRequest) list and watch what k8sattributes reads, and nothing else; and
//!   the node agent itself, run from its ConfigMap with that token, makes only requests the
//!   role allows (the apiserver's audit log), for its own node's pods;
//! - the configs the ConfigMaps carry are the ones in `configs/`, pass `oxcol validate`, and
//!   the gateway's answers the probes on its health_check port;
//! - every container runs oxcol's image as the Dockerfile builds it, non-root, with a
//!   read-only root file system and no capability.
//!
//! The apiserver and etcd come from `oxcol_integration::kube` (binaries built once per
//! machine by `scripts/build-peer`), helm from `peers::peer("helm")`; `oxcol` is the debug
//! binary (`cargo build -p oxcol`).

mod common;

use common::{bounded, free_port, oxcol_binary};
use oxcol_integration::child::spawn_logged;
use oxcol_integration::kube::{KubeApiServer, KubeClient, KubeOptions, split_yaml_documents};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The three ways to run oxcol: (mode, the manifests directory under deploy/, the config in
/// configs/ its ConfigMap carries).
const MODES: [(&str, &str); 3] = [
    ("sidecar", "sidecar-go.yaml"),
    ("node-agent", "node-agent.yaml"),
    ("gateway", "gateway.yaml"),
];

/// The namespace the node agent and gateway manifests name.
const NAMESPACE: &str = "observability";

/// Overall limit of a test that starts an apiserver.
const TEST_LIMIT: Duration = Duration::from_secs(240);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// The `.yaml` manifests of `deploy/<mode>/` (sorted), without the sidecar's container
/// snippet, which is not an object (its example deployment embeds it).
fn manifest_files(mode: &str) -> Vec<String> {
    let dir = repo().join("deploy").join(mode);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") && name != "container.yaml")
        .map(|name| format!("deploy/{mode}/{name}"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    files
}

/// The text of the block scalar `key: |` at two spaces of indentation in a ConfigMap file,
/// de-indented by four: what the apiserver stores as `data[key]`.
fn configmap_block(text: &str, key: &str) -> Option<String> {
    let header = format!("  {key}: |");
    let mut lines = text.lines().skip_while(|line| *line != header);
    lines.next()?;
    let mut block = String::new();
    for line in lines {
        if !line.trim().is_empty() && !line.starts_with("    ") {
            break;
        }
        block.push_str(line.get(4..).unwrap_or(""));
        block.push('\n');
    }
    // A `|` block keeps exactly one final newline.
    let trimmed = block.trim_end_matches('\n');
    Some(format!("{trimmed}\n"))
}

/// The workspace version: the image tag every manifest must name.
fn workspace_version() -> String {
    let manifest = read("Cargo.toml");
    let mut in_package = false;
    for line in manifest.lines() {
        if line.starts_with('[') {
            in_package = line == "[workspace.package]";
        } else if in_package && let Some(value) = line.strip_prefix("version = ") {
            return value.trim_matches('"').to_string();
        }
    }
    panic!("no version in [workspace.package] of Cargo.toml")
}

/// Runs `oxcol validate` on `files` merged in order; returns its output on failure.
fn validate(files: &[PathBuf]) -> Result<(), String> {
    let mut command = Command::new(oxcol_binary());
    command.arg("validate");
    for file in files {
        command.arg("--config").arg(file);
    }
    let output = command
        .output()
        .map_err(|error| format!("cannot run oxcol: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oxcol-deploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creates a temp dir");
    dir
}

/// Writes a ConfigMap's `data` (config.yaml, kubernetes.yaml, values.yaml when present) to
/// `dir` and returns the files in the order the containers pass them to `--config`.
fn write_config_files(dir: &Path, data: &BTreeMap<String, String>) -> Vec<PathBuf> {
    ["config.yaml", "kubernetes.yaml", "values.yaml"]
        .iter()
        .filter_map(|key| {
            let text = data.get(*key)?;
            let path = dir.join(key);
            std::fs::write(&path, text).expect("writes a config file");
            Some(path)
        })
        .collect()
}

fn configmap_data_of_file(mode: &str) -> BTreeMap<String, String> {
    let text = read(&format!("deploy/{mode}/configmap.yaml"));
    ["config.yaml", "kubernetes.yaml"]
        .iter()
        .map(|key| {
            let block = configmap_block(&text, key)
                .unwrap_or_else(|| panic!("deploy/{mode}/configmap.yaml has no `{key}: |` block"));
            (key.to_string(), block)
        })
        .collect()
}

#[test]
fn configmaps_and_chart_carry_the_configs_of_configs_dir() {
    let fix = "run deploy/sync-configs after changing configs/ or deploy/helm/oxcol/files/";
    for (mode, config) in MODES {
        let shipped = read(&format!("configs/{config}"));
        let chart = read(&format!("deploy/helm/oxcol/files/{mode}.yaml"));
        assert_eq!(
            chart, shipped,
            "deploy/helm/oxcol/files/{mode}.yaml differs from configs/{config}: {fix}"
        );
        let data = configmap_data_of_file(mode);
        assert_eq!(
            data["config.yaml"], shipped,
            "config.yaml of deploy/{mode}/configmap.yaml differs from configs/{config}: {fix}"
        );
        let overlay = read(&format!("deploy/helm/oxcol/files/kubernetes-{mode}.yaml"));
        assert_eq!(
            data["kubernetes.yaml"], overlay,
            "kubernetes.yaml of deploy/{mode}/configmap.yaml differs from the chart's \
             files/kubernetes-{mode}.yaml: {fix}"
        );
    }
}

#[test]
fn configmap_configs_validate_as_the_containers_load_them() {
    for (mode, _) in MODES {
        let dir = temp_dir(&format!("validate-{mode}"));
        let files = write_config_files(&dir, &configmap_data_of_file(mode));
        assert_eq!(files.len(), 2, "{mode}: config.yaml and kubernetes.yaml");
        if let Err(output) = validate(&files) {
            panic!("deploy/{mode}/configmap.yaml: oxcol validate failed:\n{output}");
        }
        // Every container starts oxcol with exactly these files, in this order.
        let args = "args: [\"--config\", \"/etc/oxcol/config.yaml\", \"--config\", \
                    \"/etc/oxcol/kubernetes.yaml\", \"--watch-config\"]";
        let workload = if mode == "sidecar" {
            read("deploy/sidecar/container.yaml")
        } else {
            manifest_files(mode)
                .iter()
                .map(|file| read(file))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(
            workload.contains(args),
            "deploy/{mode}: the oxcol container does not start with `{args}`"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn sidecar_example_embeds_the_container_snippet() {
    let snippet = read("deploy/sidecar/container.yaml");
    let example = read("deploy/sidecar/example-deployment.yaml");
    // The snippet's two parts (container, volume), each without its comment header.
    let mut parts = Vec::new();
    let mut current = String::new();
    for line in snippet.lines() {
        if line.starts_with('#') {
            if !current.is_empty() {
                parts.push(std::mem::take(&mut current));
            }
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    parts.push(current);
    assert_eq!(parts.len(), 2, "container.yaml: a container and a volume");
    for part in &parts {
        assert!(
            example.contains(part.as_str()),
            "deploy/sidecar/example-deployment.yaml does not contain this part of \
             container.yaml verbatim:\n{part}"
        );
    }
    assert!(example.contains("      shareProcessNamespace: true\n"));
}

#[test]
fn manifests_and_chart_name_the_image_the_dockerfile_builds() {
    let version = workspace_version();
    let image = format!("oxcol:{version}");
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile.contains(&format!("#   docker build -t {image} .\n")),
        "the Dockerfile's header must say how to build {image}"
    );
    assert!(
        dockerfile.contains(&format!("org.opencontainers.image.version=\"{version}\"")),
        "the Dockerfile's version label must be {version}"
    );
    assert!(dockerfile.contains("USER 65532:65532"));
    let chart = read("deploy/helm/oxcol/Chart.yaml");
    assert!(
        chart.contains(&format!("appVersion: \"{version}\"")),
        "deploy/helm/oxcol/Chart.yaml: appVersion must be {version} (the image tag)"
    );
    let values = read("deploy/helm/oxcol/values.yaml");
    assert!(values.contains("  repository: oxcol\n"));
    let mut oxcol_images = 0;
    for (mode, _) in MODES {
        let mut files = manifest_files(mode);
        if mode == "sidecar" {
            files.push("deploy/sidecar/container.yaml".to_string());
        }
        for file in files {
            for line in read(&file).lines() {
                let Some(named) = line.trim_start().strip_prefix("image: ") else {
                    continue;
                };
                if named.contains("oxcol") {
                    assert_eq!(named, image, "{file}: oxcol's image must be {image}");
                    oxcol_images += 1;
                }
            }
        }
    }
    // container.yaml, example-deployment.yaml, the DaemonSet, the gateway Deployment.
    assert_eq!(oxcol_images, 4);
}

/// The gateway as its Deployment runs it (ConfigMap files, OXCOL_LISTEN_HOST) on free ports:
/// the health_check answers 200 on the path and port the probes use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_configmap_runs_and_answers_the_probes() {
    bounded(Duration::from_secs(60), async {
        let dir = temp_dir("gateway-run");
        let files = write_config_files(&dir, &configmap_data_of_file("gateway"));
        let health = free_port();
        let mut command = Command::new(oxcol_binary());
        for file in &files {
            command.arg("--config").arg(file);
        }
        // The Deployment's env and the Service's ports, moved to free loopback ports.
        command
            .env("OXCOL_LISTEN_HOST", "127.0.0.1")
            .env("PROM_REMOTE_WRITE_URL", "http://127.0.0.1:9/api/v1/write")
            .arg("--set")
            .arg(format!(
                "extensions::health_check::endpoint=127.0.0.1:{health}"
            ))
            .arg("--set")
            .arg(format!(
                "receivers::otlp::protocols::grpc::endpoint=127.0.0.1:{}",
                free_port()
            ))
            .arg("--set")
            .arg(format!(
                "receivers::otlp::protocols::http::endpoint=127.0.0.1:{}",
                free_port()
            ))
            .arg("--set")
            .arg(format!(
                "service::telemetry::metrics::address=127.0.0.1:{}",
                free_port()
            ));
        let log = dir.join("oxcol.log");
        let mut child = spawn_logged(&mut command, &log);
        let deadline = Instant::now() + common::READY_TIMEOUT;
        let address = format!("127.0.0.1:{health}");
        loop {
            if let Ok(Some(status)) = child.child_mut().try_wait() {
                panic!(
                    "oxcol exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let answer = tokio::task::spawn_blocking({
                let address = address.clone();
                move || oxcol_integration::net::http_get(&address, "/")
            })
            .await
            .expect("the probe task runs");
            if let Ok((200, body)) = answer {
                assert!(body.contains("Server available"), "health body: {body}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the health_check did not answer 200 within {:?} (last: {answer:?}):\n{}",
                common::READY_TIMEOUT,
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(child);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

/// `helm template oxcol deploy/helm/oxcol --namespace observability <args>`: the rendered
/// stream, or helm's error.
fn helm_template(args: &[&str]) -> Result<String, String> {
    let helm = oxcol_integration::peers::peer("helm");
    let home = temp_dir("helm-home");
    let output = Command::new(&helm)
        .args(["template", "oxcol"])
        .arg(repo().join("deploy/helm/oxcol"))
        .args(["--namespace", NAMESPACE])
        .args(args)
        // Keep helm's cache and config out of the user's home.
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .map_err(|error| format!("cannot run {}: {error}", helm.display()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// What the apiserver would store for each document, keyed by (kind, name); panics naming
/// `what` and the document when the dry run is refused.
async fn dry_run_all(
    client: &KubeClient,
    what: &str,
    stream: &str,
) -> BTreeMap<(String, String), Value> {
    let mut objects = BTreeMap::new();
    for document in split_yaml_documents(stream) {
        let stored = client
            .server_side_dry_run(&document)
            .await
            .unwrap_or_else(|error| panic!("{what}: dry run refused: {error}\n{document}"));
        let kind = stored["kind"].as_str().unwrap_or_default().to_string();
        let name = stored["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            objects
                .insert((kind.clone(), name.clone()), stored)
                .is_none(),
            "{what}: two objects named {kind}/{name}"
        );
    }
    objects
}

/// The object without what the apiserver or helm set on its own (uid, timestamps, managed
/// fields, labels and annotations, the namespace, a Service's virtual IP, which each dry run
/// allocates anew): what must be the same whether it came from a plain manifest or from
/// the chart.
fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    if let Some(spec) = object["spec"].as_object_mut()
        && spec.get("clusterIP") != Some(&json!("None"))
    {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    object
}

/// The containers of a workload's pod template (empty for other kinds).
fn containers(object: &Value) -> Vec<Value> {
    object["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Every oxcol container: the image the Dockerfile builds, non-root, read-only root, no
/// capability (the node agent's opt-in to read other processes' memory is checked apart).
fn assert_locked_down(what: &str, object: &Value) {
    let image = format!("oxcol:{}", workspace_version());
    for container in containers(object) {
        if container["name"] != "oxcol" {
            continue;
        }
        let context = &container["securityContext"];
        assert_eq!(container["image"], json!(image), "{what}: image");
        assert_eq!(context["runAsNonRoot"], json!(true), "{what}: runAsNonRoot");
        assert_eq!(
            context["readOnlyRootFilesystem"],
            json!(true),
            "{what}: read-only root"
        );
        assert_eq!(
            context["allowPrivilegeEscalation"],
            json!(false),
            "{what}: escalation"
        );
        assert_eq!(
            context["capabilities"]["drop"],
            json!(["ALL"]),
            "{what}: drop ALL"
        );
        assert!(
            context["capabilities"].get("add").is_none(),
            "{what}: adds a capability"
        );
        assert!(
            container["resources"]["limits"]["memory"].is_string(),
            "{what}: a memory limit"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_and_chart_pass_a_strict_server_side_dry_run() {
    bounded(TEST_LIMIT, async {
        let server = KubeApiServer::start(KubeOptions::default())
            .await
            .expect("etcd and kube-apiserver start");
        let admin = server.admin();
        // The namespace manifest first, while the namespace does not exist yet; then for
        // real, since the other objects live in it.
        dry_run_all(
            admin,
            "deploy/namespace.yaml",
            &read("deploy/namespace.yaml"),
        )
        .await;
        admin
            .create_namespace(NAMESPACE, &[])
            .await
            .expect("creates the namespace");

        for (mode, _) in MODES {
            let mut plain = BTreeMap::new();
            for file in manifest_files(mode) {
                plain.extend(dry_run_all(admin, &file, &read(&file)).await);
            }
            for ((kind, name), object) in &plain {
                assert_locked_down(&format!("deploy/{mode}: {kind}/{name}"), object);
            }
            let kinds: Vec<&str> = plain.keys().map(|(kind, _)| kind.as_str()).collect();
            let expected: &[&str] = match mode {
                "sidecar" => &["ConfigMap", "Deployment"],
                "node-agent" => &[
                    "ClusterRole",
                    "ClusterRoleBinding",
                    "ConfigMap",
                    "DaemonSet",
                    "ServiceAccount",
                ],
                _ => &[
                    "ConfigMap",
                    "Deployment",
                    "PodDisruptionBudget",
                    "Service",
                    "Service",
                    "ServiceAccount",
                ],
            };
            assert_eq!(kinds, expected, "deploy/{mode}: the objects");

            let rendered = helm_template(&["--set", &format!("mode={mode}")])
                .unwrap_or_else(|error| panic!("helm template mode={mode}: {error}"));
            let chart = dry_run_all(admin, &format!("chart mode={mode}"), &rendered).await;
            assert_eq!(
                chart.keys().collect::<Vec<_>>(),
                plain.keys().collect::<Vec<_>>(),
                "chart mode={mode} renders other objects than deploy/{mode}"
            );
            for (key, object) in &chart {
                assert_locked_down(&format!("chart mode={mode}: {key:?}"), object);
                assert_eq!(
                    comparable(object),
                    comparable(&plain[key]),
                    "chart mode={mode}: {key:?} differs from deploy/{mode}"
                );
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_values_render_valid_objects_and_configs() {
    bounded(TEST_LIMIT, async {
        // A mode the chart does not know fails the render and says what to set.
        let error = helm_template(&["--set", "mode=daemonset"]).expect_err("mode=daemonset");
        assert!(
            error.contains("mode \"daemonset\" is not one of sidecar, node-agent, gateway"),
            "{error}"
        );

        let server = KubeApiServer::start(KubeOptions::default())
            .await
            .expect("etcd and kube-apiserver start");
        let admin = server.admin();
        admin
            .create_namespace(NAMESPACE, &[])
            .await
            .expect("creates the namespace");

        // `config` merged over the default: a third config file, passed last.
        let overlay = r#"{"exporters":{"debug":{}},"service":{"pipelines":{"metrics":{"exporters":["prometheusremotewrite","debug"]}}}}"#;
        let rendered = helm_template(&[
            "--set",
            "mode=gateway",
            "--set-json",
            &format!("config={overlay}"),
            "--set",
            "image.repository=registry.example.com/oxcol",
            "--set",
            "gateway.replicas=3",
        ])
        .expect("helm template with a config overlay");
        let objects = dry_run_all(admin, "chart gateway + config", &rendered).await;
        let deployment = &objects[&("Deployment".to_string(), "oxcol-gateway".to_string())];
        assert_eq!(deployment["spec"]["replicas"], json!(3));
        let container = &containers(deployment)[0];
        assert_eq!(container["image"], json!("registry.example.com/oxcol:0.1.0"));
        assert_eq!(
            container["args"],
            json!([
                "--config",
                "/etc/oxcol/config.yaml",
                "--config",
                "/etc/oxcol/kubernetes.yaml",
                "--config",
                "/etc/oxcol/values.yaml",
                "--watch-config"
            ])
        );
        let configmap = &objects[&("ConfigMap".to_string(), "oxcol-gateway".to_string())];
        let data: BTreeMap<String, String> =
            serde_json::from_value(configmap["data"].clone()).expect("ConfigMap data");
        assert_eq!(data["config.yaml"], read("configs/gateway.yaml"));
        let dir = temp_dir("chart-values");
        let files = write_config_files(&dir, &data);
        assert_eq!(files.len(), 3);
        validate(&files).unwrap_or_else(|output| panic!("rendered gateway config:\n{output}"));
        // The overlay really is merged: a debug exporter the pipeline uses.
        let printed = Command::new(oxcol_binary())
            .arg("print-config")
            .args(files.iter().flat_map(|file| [Path::new("--config"), file.as_path()]))
            .output()
            .expect("oxcol print-config runs");
        let printed = String::from_utf8_lossy(&printed.stdout);
        assert!(printed.contains("  debug:"), "{printed}");
        assert!(printed.contains("- debug"), "{printed}");

        // The node agent's opt-in to read other users' processes: root with only
        // CAP_SYS_PTRACE, still a read-only root file system; accepted by the apiserver.
        let rendered = helm_template(&[
            "--set",
            "mode=node-agent",
            "--set",
            "nodeAgent.readOtherProcessesMemory=true",
        ])
        .expect("helm template node-agent with readOtherProcessesMemory");
        let objects = dry_run_all(admin, "chart node-agent + ptrace", &rendered).await;
        let daemonset = &objects[&("DaemonSet".to_string(), "oxcol-node-agent".to_string())];
        let context = &containers(daemonset)[0]["securityContext"];
        assert_eq!(context["runAsUser"], json!(0));
        assert_eq!(context["capabilities"]["add"], json!(["SYS_PTRACE"]));
        assert_eq!(context["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(context["readOnlyRootFilesystem"], json!(true));
        assert_eq!(daemonset["spec"]["template"]["spec"]["hostPID"], json!(true));

        // defaultConfig: false runs `config` alone (plus the Kubernetes overlay).
        let own = r#"{"receivers":{"otlp":{"protocols":{"grpc":{}}}},"exporters":{"debug":{}},"service":{"pipelines":{"traces":{"receivers":["otlp"],"exporters":["debug"]}}}}"#;
        let rendered = helm_template(&[
            "--set",
            "mode=sidecar",
            "--set",
            "defaultConfig=false",
            "--set-json",
            &format!("config={own}"),
        ])
        .expect("helm template with defaultConfig=false");
        let objects = dry_run_all(admin, "chart sidecar, own config", &rendered).await;
        let configmap = &objects[&("ConfigMap".to_string(), "oxcol-sidecar".to_string())];
        let data: BTreeMap<String, String> =
            serde_json::from_value(configmap["data"].clone()).expect("ConfigMap data");
        assert!(!data["config.yaml"].contains("prometheusremotewrite"));
        assert!(!data.contains_key("values.yaml"));
        let files = write_config_files(&dir, &data);
        validate(&files).unwrap_or_else(|output| panic!("own sidecar config:\n{output}"));
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

/// A watch of `path` from `resource_version` for two seconds, as `client`; returns the status
/// and the event stream (one JSON object per line).
async fn watch(
    client: &KubeClient,
    server: &KubeApiServer,
    path: &str,
    resource_version: &str,
) -> (http::StatusCode, String) {
    let separator = if path.contains('?') { '&' } else { '?' };
    let url = format!(
        "{}{path}{separator}watch=1&resourceVersion={resource_version}&timeoutSeconds=2",
        server.url()
    );
    let (status, body) = client
        .raw(http::Method::GET, &url, "", bytes::Bytes::new())
        .await
        .unwrap_or_else(|error| panic!("watch {path}: {error}"));
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_agent_role_allows_the_watches_of_k8sattributes_and_nothing_else() {
    bounded(TEST_LIMIT, async {
        let server = KubeApiServer::start(KubeOptions {
            rbac: true,
            ..KubeOptions::default()
        })
        .await
        .expect("etcd and kube-apiserver start with RBAC");
        let admin = server.admin();
        admin
            .create_namespace(NAMESPACE, &[])
            .await
            .expect("creates the namespace");
        // The role, binding and service accounts for real, exactly as in deploy/.
        for file in [
            "deploy/node-agent/rbac.yaml",
            "deploy/gateway/deployment.yaml",
        ] {
            for document in split_yaml_documents(&read(file)) {
                if !document.contains("\nkind: Deployment\n") {
                    create(admin, &document).await;
                }
            }
        }
        let node_agent = service_account_client(&server, "oxcol-node-agent").await;

        // What k8sattributes lists and watches: pods (all, and one node's), namespaces,
        // nodes, replicasets.
        admin
            .create_node("node-a", &[])
            .await
            .expect("creates a node");
        for path in [
            "/api/v1/pods",
            "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a",
            "/api/v1/namespaces",
            "/api/v1/nodes",
            "/apis/apps/v1/replicasets",
        ] {
            let list = node_agent
                .get(path)
                .await
                .unwrap_or_else(|error| panic!("the node agent cannot list {path}: {error}"));
            let version = list["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_else(|| panic!("{path}: a list without resourceVersion: {list}"))
                .to_string();
            let (status, _) = watch(&node_agent, &server, path, &version).await;
            assert!(
                status.is_success(),
                "watch {path} as the node agent: {status}"
            );
        }
        let one_pod = "/api/v1/namespaces/default/pods";

        // A watch sees a pod created while it runs.
        let list = node_agent.get("/api/v1/pods").await.expect("lists pods");
        let version = list["metadata"]["resourceVersion"]
            .as_str()
            .expect("resourceVersion")
            .to_string();
        let watching = {
            let node_agent = node_agent.clone();
            let url_server = server.url();
            tokio::spawn(async move {
                let url = format!(
                    "{url_server}/api/v1/pods?watch=1&resourceVersion={version}&timeoutSeconds=3"
                );
                node_agent
                    .raw(http::Method::GET, &url, "", bytes::Bytes::new())
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        admin
            .create_pod("default", "watched", "node-a", &["app"], &[], &[], None)
            .await
            .expect("creates a pod");
        let (status, body) = watching
            .await
            .expect("the watch task runs")
            .expect("the watch answers");
        assert!(status.is_success(), "watch pods: {status}");
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.lines().any(|line| {
                serde_json::from_str::<Value>(line).is_ok_and(|event| {
                    event["type"] == "ADDED" && event["object"]["metadata"]["name"] == "watched"
                })
            }),
            "the node agent's watch did not see the new pod:\n{body}"
        );
        let pod = node_agent
            .get(&format!("{one_pod}/watched"))
            .await
            .expect("gets one pod");
        assert_eq!(pod["spec"]["nodeName"], json!("node-a"));

        // What it must not do: read secrets or config maps, change anything, read
        // workloads it does not need.
        let forbidden: [(http::Method, &str); 7] = [
            (http::Method::GET, "/api/v1/secrets"),
            (
                http::Method::GET,
                "/api/v1/namespaces/observability/configmaps",
            ),
            (http::Method::GET, "/apis/apps/v1/deployments"),
            (http::Method::GET, "/api/v1/services"),
            (
                http::Method::DELETE,
                "/api/v1/namespaces/default/pods/watched",
            ),
            (http::Method::POST, one_pod),
            (http::Method::PATCH, "/api/v1/nodes/node-a"),
        ];
        for (method, path) in forbidden {
            let content_type = match method {
                http::Method::PATCH => "application/merge-patch+json",
                http::Method::POST => "application/json",
                _ => "",
            };
            let body = if content_type.is_empty() {
                bytes::Bytes::new()
            } else {
                bytes::Bytes::from_static(b"{}")
            };
            let (status, answer) = node_agent
                .raw(
                    method.clone(),
                    &format!("{}{path}", server.url()),
                    content_type,
                    body,
                )
                .await
                .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
            assert_eq!(
                status,
                http::StatusCode::FORBIDDEN,
                "{method} {path} as the node agent: {}",
                String::from_utf8_lossy(&answer)
            );
        }
        let (status, _) = watch(&node_agent, &server, "/api/v1/secrets", "0").await;
        assert_eq!(status, http::StatusCode::FORBIDDEN, "watch secrets");

        // The gateway's account reads nothing.
        let gateway = service_account_client(&server, "oxcol-gateway").await;
        let error = gateway
            .get("/api/v1/pods")
            .await
            .expect_err("the gateway's account lists pods");
        assert!(error.contains("403"), "{error}");
    })
    .await;
}

/// Creates the object of a YAML document for real (as admin).
async fn create(admin: &KubeClient, document: &str) {
    // The dry run resolves the collection; the same POST without dryRun creates it.
    let stored = admin
        .server_side_dry_run(document)
        .await
        .unwrap_or_else(|error| panic!("dry run before create: {error}\n{document}"));
    let kind = stored["kind"].as_str().unwrap_or_default();
    let api_version = stored["apiVersion"].as_str().unwrap_or_default();
    let (resource, namespaced) = admin
        .resource_of(api_version, kind)
        .await
        .expect("discovery");
    let prefix = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    let path = if namespaced {
        let namespace = stored["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        format!("{prefix}/namespaces/{namespace}/{resource}")
    } else {
        format!("{prefix}/{resource}")
    };
    admin
        .call(
            http::Method::POST,
            &format!("{path}?fieldValidation=Strict"),
            "application/yaml",
            bytes::Bytes::from(document.to_string()),
        )
        .await
        .unwrap_or_else(|error| panic!("create {kind}: {error}\n{document}"));
}

/// A client with [`service_account_token`].
async fn service_account_client(server: &KubeApiServer, name: &str) -> KubeClient {
    let token = service_account_token(server, name).await;
    server.client_as(&token).expect("a client with the token")
}

/// A token the apiserver issues for the ServiceAccount (TokenRequest: what the kubelet
/// mounts into the pod), so RBAC sees `system:serviceaccount:observability:<name>`.
async fn service_account_token(server: &KubeApiServer, name: &str) -> String {
    let answer = server
        .admin()
        .post(
            &format!("/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{name}/token"),
            &json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 600},
            }),
        )
        .await
        .unwrap_or_else(|error| panic!("TokenRequest for {name}: {error}"));
    answer["status"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("TokenRequest for {name} answered no token: {answer}"))
        .to_string()
}

/// The node agent as its DaemonSet runs it (ConfigMap files, K8S_NODE_NAME), with the
/// ServiceAccount's own token under RBAC: its k8sattributes watches succeed with the
/// ClusterRole of deploy/node-agent/rbac.yaml (the audit log has its lists and watches, all
/// answered 2xx), touch nothing the role does not name, and ask only for this node's pods.
/// auth_type is switched to kubeConfig only to point it at this test apiserver with that
/// token (serviceAccount reads the fixed in-pod path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_agent_config_watches_under_its_cluster_role() {
    bounded(TEST_LIMIT, async {
        let server = KubeApiServer::start(KubeOptions {
            rbac: true,
            audit: true,
            ..KubeOptions::default()
        })
        .await
        .expect("etcd and kube-apiserver start with RBAC and an audit log");
        let admin = server.admin();
        admin
            .create_namespace(NAMESPACE, &[])
            .await
            .expect("creates the namespace");
        for document in split_yaml_documents(&read("deploy/node-agent/rbac.yaml")) {
            create(admin, &document).await;
        }
        admin
            .create_node("node-a", &[])
            .await
            .expect("creates a node");
        admin
            .create_pod("default", "on-node-a", "node-a", &["app"], &[], &[], None)
            .await
            .expect("creates a pod");
        let token = service_account_token(&server, "oxcol-node-agent").await;
        let kubeconfig = server
            .write_kubeconfig("oxcol-node-agent", &token)
            .expect("writes a kubeconfig");

        let dir = temp_dir("node-agent-rbac");
        let files = write_config_files(&dir, &configmap_data_of_file("node-agent"));
        let health = free_port();
        let mut command = Command::new(oxcol_binary());
        for file in &files {
            command.arg("--config").arg(file);
        }
        command
            .env("KUBECONFIG", &kubeconfig)
            .env("K8S_NODE_NAME", "node-a")
            .env("POD_IP", "127.0.0.1")
            .env("OXCOL_GATEWAY", format!("127.0.0.1:{}", free_port()))
            .arg("--set")
            .arg("processors::k8sattributes::auth_type=kubeConfig")
            // This machine's /proc and cgroups instead of the host mounts.
            .arg("--set")
            .arg("receivers::cgroup::root_path=/sys/fs/cgroup")
            .arg("--set")
            .arg("receivers::smaps::proc_path=/proc")
            .arg("--set")
            .arg(format!(
                "extensions::health_check::endpoint=127.0.0.1:{health}"
            ))
            .arg("--set")
            .arg(format!(
                "service::telemetry::metrics::address=127.0.0.1:{}",
                free_port()
            ));
        let log = dir.join("oxcol.log");
        let mut child = spawn_logged(&mut command, &log);

        // Wait (bounded) until the audit log shows the node agent's watch of pods.
        let user = format!("system:serviceaccount:{NAMESPACE}:oxcol-node-agent");
        let deadline = Instant::now() + Duration::from_secs(60);
        let events = loop {
            if let Ok(Some(status)) = child.child_mut().try_wait() {
                panic!(
                    "oxcol exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let events: Vec<Value> = server
                .audit_events()
                .into_iter()
                .filter(|event| event["user"]["username"] == json!(user))
                .collect();
            let watching_pods = events
                .iter()
                .any(|event| event["verb"] == "watch" && event["objectRef"]["resource"] == "pods");
            if watching_pods {
                break events;
            }
            assert!(
                Instant::now() < deadline,
                "no watch of pods by {user} within 60 s; its requests: {:#?}\noxcol log:\n{}",
                events
                    .iter()
                    .map(|event| (
                        &event["verb"],
                        &event["requestURI"],
                        &event["responseStatus"]["code"]
                    ))
                    .collect::<Vec<_>>(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let allowed = ["pods", "namespaces", "nodes", "replicasets"];
        for event in &events {
            let uri = event["requestURI"].as_str().unwrap_or_default();
            let code = event["responseStatus"]["code"].as_i64().unwrap_or(0);
            assert!(
                (200..300).contains(&code),
                "{} {uri} as the node agent answered {code}:\n{event:#}",
                event["verb"]
            );
            let resource = event["objectRef"]["resource"].as_str().unwrap_or_default();
            assert!(
                allowed.contains(&resource),
                "the node agent asked for {resource} ({uri}), which its role does not name"
            );
            if resource == "pods" {
                assert!(
                    uri.contains("fieldSelector=spec.nodeName%3Dnode-a"),
                    "a pod request without this node's field selector: {uri}"
                );
            }
        }
        assert!(
            events
                .iter()
                .any(|event| event["verb"] == "list" && event["objectRef"]["resource"] == "pods"),
            "the node agent never listed pods"
        );
        let answer = tokio::task::spawn_blocking(move || {
            oxcol_integration::net::http_get(&format!("127.0.0.1:{health}"), "/")
        })
        .await
        .expect("the probe task runs");
        assert!(matches!(answer, Ok((200, _))), "health_check: {answer:?}");
        drop(child);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}
