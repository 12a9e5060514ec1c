//! The `k8sattributes` processor against a real kube-apiserver and etcd
//! (`oxcol_integration::kube`): pods are created with `spec.nodeName` and their status is
//! PATCHed as a kubelet would; oxcol (the debug binary) watches them with a kubeconfig.
//!
//! - cgroup metrics (pod UID and container ID from the cgroup path) get pod, namespace,
//!   workload, container and label metadata, and so do smaps metrics (the same IDs from
//!   the process's /proc/PID/cgroup, a fixture /proc here); OTLP data is matched by
//!   `k8s.pod.ip` and by the connection's peer address, over gRPC and HTTP; a pod on
//!   another node is never listed (the apiserver's audit log shows every pod list and
//!   watch carried the node's field selector);
//! - a label PATCH shows up in the data within seconds;
//! - the apiserver restarted mid-watch, with etcd compacted past the watch's resourceVersion
//!   while it was down, so the resumed watch gets a real `410 Gone` and oxcol lists again;
//!   data keeps flowing (unchanged metadata) while the API is away;
//! - the cost of a watch over 1000 pods (RSS and CPU), printed for docs/kubernetes.md.

mod common;

use common::{bounded, free_port, metric_sum, oxcol_binary, rss_bytes};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_integration::child::{ChildGuard, spawn_logged};
use oxcol_integration::kube::{KubeApiServer, KubeClient, KubeOptions, KubeUser, PodStatus};
use oxcol_integration::sink::{self, RunningSink, SinkConfig};
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TEST_LIMIT: Duration = Duration::from_secs(300);
const NAMESPACE: &str = "shop";
/// The token oxcol uses (a user of its own, so the audit log tells its requests apart).
const OXCOL_TOKEN: &str = "oxcol-k8sattributes-token";

fn container_id(n: u8) -> String {
    format!("{:02x}", n).repeat(32)
}

/// A cgroup v2 tree (cgroupfs driver) with one container cgroup per pod.
struct CgroupTree {
    root: PathBuf,
}

impl CgroupTree {
    fn new() -> CgroupTree {
        let root = std::env::temp_dir().join(format!(
            "oxcol-k8sattr-cgroup-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("kubepods")).expect("cgroup root");
        std::fs::copy(
            fixtures().join("cgroup.controllers"),
            root.join("cgroup.controllers"),
        )
        .expect("cgroup.controllers");
        CgroupTree { root }
    }

    /// `/kubepods/pod<uid>/<container id>` with the fixture's files.
    fn container(&self, pod_uid: &str, container_id: &str) {
        let source = fixtures().join("kubepods/pod11111111-2222-3333-4444-555555555555");
        let dir = self
            .root
            .join(format!("kubepods/pod{pod_uid}/{container_id}"));
        std::fs::create_dir_all(&dir).expect("container dir");
        for entry in std::fs::read_dir(&source).expect("fixture dir") {
            let entry = entry.expect("fixture entry");
            if entry.path().is_file() {
                std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copied");
            }
        }
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A fixture /proc with one process: what the smaps receiver reads.
struct ProcTree {
    root: PathBuf,
}

impl ProcTree {
    fn new(pid: u32, comm: &str, cgroup: &str) -> ProcTree {
        let root = std::env::temp_dir().join(format!(
            "oxcol-k8sattr-proc-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).expect("proc dir");
        std::fs::write(root.join("stat"), "cpu  1 2 3\nbtime 1700000000\n").expect("stat");
        std::fs::write(
            dir.join("stat"),
            format!("{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 100 1000 10 18446744073709551615\n"),
        )
        .expect("pid stat");
        std::fs::write(dir.join("cgroup"), cgroup).expect("cgroup");
        std::fs::write(
            dir.join("smaps_rollup"),
            "00400000-7fff00000000 ---p 00000000 00:00 0 [rollup]\nRss: 2048 kB\nPss: 1024 kB\n",
        )
        .expect("smaps_rollup");
        ProcTree { root }
    }
}

impl Drop for ProcTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../receivers/tests/fixtures/cgroup/v2-cgroupfs")
}

/// oxcol started with a config and environment of the test's choosing.
struct Agent {
    guard: Option<ChildGuard>,
    dir: PathBuf,
    grpc_port: u16,
    http_port: u16,
    metrics_port: u16,
}

impl Agent {
    fn start(config: &str, env: &[(&str, &str)]) -> Agent {
        Agent::start_binary(&oxcol_binary(), config, env)
    }

    fn start_binary(binary: &Path, config: &str, env: &[(&str, &str)]) -> Agent {
        let dir = std::env::temp_dir().join(format!(
            "oxcol-k8sattr-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let grpc_port = free_port();
        let http_port = free_port();
        let metrics_port = free_port();
        let yaml = config
            .replace("@GRPC_PORT@", &grpc_port.to_string())
            .replace("@HTTP_PORT@", &http_port.to_string())
            .replace("@METRICS_PORT@", &metrics_port.to_string());
        std::fs::write(dir.join("config.yaml"), &yaml).expect("config");
        let mut command = Command::new(binary);
        command
            .arg("--config")
            .arg(dir.join("config.yaml"))
            .env("RUST_LOG", "info");
        for (name, value) in env {
            command.env(name, value);
        }
        let guard = spawn_logged(&mut command, &dir.join("oxcol.log"));
        let mut agent = Agent {
            guard: Some(guard),
            dir,
            grpc_port,
            http_port,
            metrics_port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while agent.try_metrics().is_none() {
            if let Some(Ok(Some(status))) = agent.guard.as_mut().map(|g| g.child_mut().try_wait()) {
                panic!("oxcol exited with {status}:\n{}", agent.log());
            }
            assert!(
                Instant::now() < deadline,
                "oxcol not ready:\n{}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        agent
    }

    fn pid(&self) -> u32 {
        self.guard.as_ref().map(ChildGuard::id).unwrap_or(0)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("oxcol.log")).unwrap_or_default()
    }

    fn try_metrics(&self) -> Option<String> {
        match oxcol_integration::net::http_get(
            &format!("127.0.0.1:{}", self.metrics_port),
            "/metrics",
        ) {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    }

    fn metric(&self, name: &str) -> f64 {
        self.try_metrics()
            .and_then(|text| metric_sum(&text, name, &[]))
            .unwrap_or(0.0)
    }

    /// Sends one gauge point with `attributes` on its resource, from `local` when given.
    async fn send(&self, attributes: &[(&str, &str)], local: Option<&str>) {
        let endpoint =
            tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", self.grpc_port))
                .expect("endpoint")
                .local_address(local.map(|ip| ip.parse().expect("an IP")));
        let channel = endpoint.connect().await.expect("connects to oxcol");
        let mut client = MetricsServiceClient::new(channel);
        client
            .export(probe(attributes))
            .await
            .expect("oxcol accepts the point");
    }

    /// The same over OTLP/HTTP (protobuf), from a socket bound to `local`.
    async fn send_http(&self, attributes: &[(&str, &str)], local: &str) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind(std::net::SocketAddr::new(local.parse().expect("an IP"), 0))
            .expect("binds the client address");
        let mut stream = socket
            .connect(([127, 0, 0, 1], self.http_port).into())
            .await
            .expect("connects to oxcol over HTTP");
        let body = probe(attributes).encode_to_vec();
        let head = format!(
            "POST /v1/metrics HTTP/1.1\r\nhost: 127.0.0.1:{}\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            self.http_port,
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("writes");
        stream.write_all(&body).await.expect("writes");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("answered within 10 s")
            .expect("reads the answer");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "oxcol refused the point: {answer}"
        );
    }
}

/// One gauge point with `attributes` on its resource.
fn probe(attributes: &[(&str, &str)]) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: attributes.iter().map(|(k, v)| string_kv(k, v)).collect(),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "probe".to_string(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: 1,
                            value: Some(number_data_point::Value::AsInt(1)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.guard.take();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "---- oxcol log ----\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// Resource attributes of every resource the sink recorded so far (in arrival order).
fn recorded_resources(dir: &Path) -> Vec<HashMap<String, String>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let mut out = Vec::new();
    for file in files
        .iter()
        .filter(|p| p.to_string_lossy().ends_with("-metrics.pb"))
    {
        let Ok(bytes) = std::fs::read(file) else {
            continue;
        };
        let Ok(request) = ExportMetricsServiceRequest::decode(bytes.as_slice()) else {
            continue;
        };
        for resource in request.resource_metrics {
            let attributes = resource
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|kv| match kv.value?.value? {
                    any_value::Value::StringValue(s) => Some((kv.key, s)),
                    _ => None,
                })
                .collect();
            out.push(attributes);
        }
    }
    out
}

/// Waits until a recorded resource satisfies `wanted`; returns it and how long it took.
async fn wait_resource(
    dir: &Path,
    what: &str,
    limit: Duration,
    wanted: impl Fn(&HashMap<String, String>) -> bool,
) -> (HashMap<String, String>, Duration) {
    let start = Instant::now();
    loop {
        if let Some(found) = recorded_resources(dir).into_iter().find(|r| wanted(r)) {
            return (found, start.elapsed());
        }
        if start.elapsed() > limit {
            let last: Vec<_> = recorded_resources(dir).into_iter().rev().take(5).collect();
            panic!("no recorded resource {what} within {limit:?}; last ones: {last:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn has(resource: &HashMap<String, String>, key: &str, value: &str) -> bool {
    resource.get(key).map(String::as_str) == Some(value)
}

async fn record_sink(name: &str) -> (RunningSink, PathBuf) {
    let record = std::env::temp_dir().join(format!(
        "oxcol-k8sattr-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&record);
    std::fs::create_dir_all(&record).expect("record dir");
    let sink = sink::start(SinkConfig {
        record_dir: Some(record.clone()),
        ..SinkConfig::default()
    })
    .await
    .expect("starts the sink");
    (sink, record)
}

fn config(sink: &RunningSink, cgroup_root: Option<&Path>, k8sattributes: &str) -> String {
    let cgroup = cgroup_root.map(|root| {
        format!(
            "  cgroup:\n    collection_interval: 500ms\n    root_path: {}\n    self: false\n    discovery:\n      include: [\"kubepods/**\"]\n",
            root.display()
        )
    });
    let receivers = if cgroup.is_some() {
        "[otlp, cgroup]"
    } else {
        "[otlp]"
    };
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:@GRPC_PORT@\n      http:\n        endpoint: 127.0.0.1:@HTTP_PORT@\n{cgroup}\
processors:\n  k8sattributes:\n{k8sattributes}\n  batch:\n    timeout: 200ms\n\
exporters:\n  otlp:\n    endpoint: {grpc}\n    tls:\n      insecure: true\n\
service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:@METRICS_PORT@\n  pipelines:\n    metrics:\n      receivers: {receivers}\n      processors: [k8sattributes, batch]\n      exporters: [otlp]\n",
        cgroup = cgroup.unwrap_or_default(),
        grpc = sink.grpc_addr,
    )
}

async fn start_cluster() -> KubeApiServer {
    let options = KubeOptions {
        audit: true,
        users: vec![KubeUser::new("oxcol", OXCOL_TOKEN, &[])],
        ..KubeOptions::default()
    };
    KubeApiServer::start(options)
        .await
        .expect("starts etcd and kube-apiserver")
}

/// A running pod of ReplicaSet `cart-7d9f8b6c5d` (Deployment `cart`) on `node`.
async fn running_pod(
    admin: &KubeClient,
    name: &str,
    node: &str,
    ip: &str,
    container: &str,
    owner: Option<(&str, &str)>,
) -> String {
    let owner = owner.map(|(rs, uid)| ("apps/v1", "ReplicaSet", rs, uid));
    let pod = admin
        .create_pod(
            NAMESPACE,
            name,
            node,
            &["server"],
            &[("app", "cart"), ("pod-template-hash", "7d9f8b6c5d")],
            &[("team", "payments")],
            owner.map(|(a, k, n, u)| (a, k, n, u)),
        )
        .await
        .unwrap_or_else(|e| panic!("creates pod {name}: {e}"));
    admin
        .set_pod_status(
            NAMESPACE,
            name,
            &PodStatus {
                phase: "Running".to_string(),
                pod_ip: Some(ip.to_string()),
                host_ip: Some("127.0.0.1".to_string()),
                containers: vec![("server".to_string(), format!("containerd://{container}"))],
            },
        )
        .await
        .unwrap_or_else(|e| panic!("sets the status of {name}: {e}"));
    pod["metadata"]["uid"]
        .as_str()
        .expect("a pod uid")
        .to_string()
}

const K8SATTRIBUTES: &str = "    auth_type: kubeConfig
    filter:
      node_from_env_var: K8S_NODE_NAME
    extract:
      labels:
        - key: app
        - key: tier
          from: namespace
    pod_association:
      - sources: [{from: resource_attribute, name: k8s.pod.uid}]
      - sources: [{from: resource_attribute, name: k8s.pod.ip}]
      - sources: [{from: connection}]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enriches_cgroup_and_otlp_data_and_follows_label_changes() {
    bounded(TEST_LIMIT, async {
        let cluster = start_cluster().await;
        let admin = cluster.admin();
        admin
            .create_namespace(NAMESPACE, &[("tier", "gold")])
            .await
            .expect("namespace");
        let rs = admin
            .create_replicaset(
                NAMESPACE,
                "cart-7d9f8b6c5d",
                Some(("shopping-cart", "0b7f3a5e-1111-2222-3333-444455556666")),
            )
            .await
            .expect("replicaset");
        let rs_uid = rs["metadata"]["uid"].as_str().expect("rs uid").to_string();
        let cgroup_uid = running_pod(
            admin,
            "cart-a",
            "node-a",
            "10.20.0.1",
            &container_id(1),
            Some(("cart-7d9f8b6c5d", &rs_uid)),
        )
        .await;
        let smaps_uid = running_pod(
            admin,
            "cart-b",
            "node-a",
            "10.20.0.2",
            &container_id(2),
            None,
        )
        .await;
        running_pod(
            admin,
            "cart-c",
            "node-a",
            "127.0.0.23",
            &container_id(3),
            None,
        )
        .await;
        running_pod(
            admin,
            "elsewhere",
            "node-b",
            "10.20.0.9",
            &container_id(9),
            None,
        )
        .await;

        let tree = CgroupTree::new();
        tree.container(&cgroup_uid, &container_id(1));
        let (sink, record) = record_sink("enrich").await;
        let kubeconfig = cluster
            .write_kubeconfig("oxcol", OXCOL_TOKEN)
            .expect("kubeconfig");
        // smaps of a process in cart-b's container (fixture /proc, cgroup v2 systemd driver):
        // the pod UID and container ID come from its /proc/PID/cgroup.
        let proc = ProcTree::new(
            4242,
            "cart-server",
            &format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope\n",
                smaps_uid.replace('-', "_"),
                container_id(2)
            ),
        );
        let yaml = config(&sink, Some(&tree.root), K8SATTRIBUTES)
            .replace("[otlp, cgroup]", "[otlp, cgroup, smaps]")
            .replace(
                "processors:\n",
                &format!(
                    "  smaps:\n    collection_interval: 500ms\n    proc_path: {}\n    pids: [4242]\nprocessors:\n",
                    proc.root.display()
                ),
            );
        let agent = Agent::start(
            &yaml,
            &[
                ("KUBECONFIG", kubeconfig.to_str().expect("utf-8 path")),
                ("K8S_NODE_NAME", "node-a"),
            ],
        );

        // cgroup data: pod UID and container ID from the path, the rest from the API.
        let (cgroup, took) = wait_resource(
            &record,
            "of cart-a's container cgroup",
            Duration::from_secs(30),
            |r| has(r, "k8s.pod.uid", &cgroup_uid) && r.contains_key("k8s.pod.name"),
        )
        .await;
        eprintln!("first enriched cgroup resource after {took:?}: {cgroup:?}");
        for (key, value) in [
            ("k8s.pod.name", "cart-a"),
            ("k8s.namespace.name", NAMESPACE),
            ("k8s.node.name", "node-a"),
            ("k8s.deployment.name", "shopping-cart"),
            ("k8s.container.name", "server"),
            ("container.image.name", "registry.example/server"),
            ("container.image.tag", "1.2.3"),
            ("k8s.pod.labels.app", "cart"),
            ("k8s.namespace.labels.tier", "gold"),
        ] {
            assert!(
                has(&cgroup, key, value),
                "{key}={value} missing in {cgroup:?}"
            );
        }
        assert!(cgroup.contains_key("k8s.pod.start_time"), "{cgroup:?}");

        let (smaps, _) = wait_resource(
            &record,
            "of the smaps process in cart-b",
            Duration::from_secs(10),
            // As for the cgroup above: a scrape before the pod is in the cache is not enriched.
            |r| has(r, "process.executable.name", "cart-server") && r.contains_key("k8s.pod.name"),
        )
        .await;
        for (key, value) in [
            ("k8s.pod.uid", smaps_uid.as_str()),
            ("container.id", container_id(2).as_str()),
            ("k8s.pod.name", "cart-b"),
            ("k8s.container.name", "server"),
        ] {
            assert!(has(&smaps, key, value), "{key}={value} missing in {smaps:?}");
        }

        // OTLP by k8s.pod.ip, and by the connection's peer address.
        agent
            .send(
                &[("k8s.pod.ip", "10.20.0.2"), ("service.name", "by-ip")],
                None,
            )
            .await;
        let (by_ip, _) = wait_resource(
            &record,
            "sent with k8s.pod.ip",
            Duration::from_secs(10),
            |r| has(r, "service.name", "by-ip"),
        )
        .await;
        assert!(has(&by_ip, "k8s.pod.name", "cart-b"), "{by_ip:?}");
        agent
            .send(&[("service.name", "by-connection")], Some("127.0.0.23"))
            .await;
        let (by_connection, _) = wait_resource(
            &record,
            "sent from 127.0.0.23",
            Duration::from_secs(10),
            |r| has(r, "service.name", "by-connection"),
        )
        .await;
        assert!(
            has(&by_connection, "k8s.pod.name", "cart-c"),
            "{by_connection:?}"
        );
        assert!(
            has(&by_connection, "k8s.pod.ip", "127.0.0.23"),
            "{by_connection:?}"
        );
        // The same over OTLP/HTTP: the peer address travels with the batch too.
        agent
            .send_http(&[("service.name", "by-http-connection")], "127.0.0.23")
            .await;
        let (by_http, _) = wait_resource(
            &record,
            "sent over HTTP from 127.0.0.23",
            Duration::from_secs(10),
            |r| has(r, "service.name", "by-http-connection"),
        )
        .await;
        assert!(has(&by_http, "k8s.pod.name", "cart-c"), "{by_http:?}");
        assert!(has(&by_http, "k8s.pod.ip", "127.0.0.23"), "{by_http:?}");

        // The pod on node-b is not in the table: its IP finds nothing.
        agent
            .send(
                &[("k8s.pod.ip", "10.20.0.9"), ("service.name", "other-node")],
                None,
            )
            .await;
        let (other, _) = wait_resource(
            &record,
            "for the other node",
            Duration::from_secs(10),
            |r| has(r, "service.name", "other-node"),
        )
        .await;
        assert!(
            !other.contains_key("k8s.pod.name"),
            "a pod of node-b was matched: {other:?}"
        );

        // A label PATCH reaches the data within seconds.
        let patched_at = Instant::now();
        admin
            .patch_pod_labels(NAMESPACE, "cart-a", &[("app", Some("cart-v2"))])
            .await
            .expect("patches the label");
        let (_, took) = wait_resource(
            &record,
            "with the patched label",
            Duration::from_secs(10),
            |r| has(r, "k8s.pod.uid", &cgroup_uid) && has(r, "k8s.pod.labels.app", "cart-v2"),
        )
        .await;
        eprintln!(
            "label PATCH visible in exported data after {:?} (cgroup interval 500ms)",
            took.min(patched_at.elapsed())
        );
        assert_eq!(
            agent.metric("otelcol_otelsvc_k8s_pod_table_size"),
            3.0,
            "node-a's three pods"
        );

        // Every pod list and watch oxcol made carried node-a's field selector.
        let pod_requests: Vec<String> = cluster
            .audit_events()
            .iter()
            .filter(|e| e["user"]["username"] == "oxcol" && e["objectRef"]["resource"] == "pods")
            .filter_map(|e| e["requestURI"].as_str().map(str::to_string))
            .collect();
        assert!(
            !pod_requests.is_empty(),
            "the audit log shows no pod request by oxcol"
        );
        for uri in &pod_requests {
            assert!(
                uri.contains("fieldSelector=spec.nodeName%3Dnode-a"),
                "a pod request without the node filter: {uri}"
            );
        }
        eprintln!("oxcol's pod requests (audit log): {pod_requests:#?}");
        drop(agent);
        drop(proc);
        sink.shutdown();
        let _ = std::fs::remove_dir_all(&record);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_an_apiserver_restart_and_relists_after_410_gone() {
    bounded(TEST_LIMIT, async {
        let mut cluster = start_cluster().await;
        let admin = cluster.admin().clone();
        admin
            .create_namespace(NAMESPACE, &[])
            .await
            .expect("namespace");
        running_pod(
            &admin,
            "before",
            "node-a",
            "10.30.0.1",
            &container_id(1),
            None,
        )
        .await;
        let (sink, record) = record_sink("restart").await;
        let kubeconfig = cluster
            .write_kubeconfig("oxcol", OXCOL_TOKEN)
            .expect("kubeconfig");
        let agent = Agent::start(
            &config(&sink, None, K8SATTRIBUTES),
            &[
                ("KUBECONFIG", kubeconfig.to_str().expect("utf-8 path")),
                ("K8S_NODE_NAME", "node-a"),
            ],
        );
        agent
            .send(
                &[("k8s.pod.ip", "10.30.0.1"), ("service.name", "first")],
                None,
            )
            .await;
        let (first, _) = wait_resource(&record, "first", Duration::from_secs(15), |r| {
            has(r, "service.name", "first")
        })
        .await;
        if !first.contains_key("k8s.pod.name") {
            // The first list may not be done yet: send again once it is.
            let deadline = Instant::now() + Duration::from_secs(15);
            while agent.metric("otelcol_otelsvc_k8s_pod_table_size") < 1.0 {
                assert!(Instant::now() < deadline, "the pod table never filled");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            agent
                .send(
                    &[("k8s.pod.ip", "10.30.0.1"), ("service.name", "first-again")],
                    None,
                )
                .await;
            let (again, _) = wait_resource(&record, "first-again", Duration::from_secs(10), |r| {
                has(r, "service.name", "first-again")
            })
            .await;
            assert!(has(&again, "k8s.pod.name", "before"), "{again:?}");
        }
        let relists_before = agent.metric("otelcol_k8sattributes_relists");

        // The apiserver goes away; etcd forgets the history the watch would resume from.
        cluster.stop_apiserver();
        let compacted = cluster.compact_etcd().await.expect("compacts etcd");
        eprintln!("etcd compacted at revision {compacted} while the apiserver was down");
        // Data keeps flowing, with the metadata already known.
        agent
            .send(
                &[
                    ("k8s.pod.ip", "10.30.0.1"),
                    ("service.name", "during-outage"),
                ],
                None,
            )
            .await;
        let (during, _) =
            wait_resource(&record, "during the outage", Duration::from_secs(10), |r| {
                has(r, "service.name", "during-outage")
            })
            .await;
        assert!(has(&during, "k8s.pod.name", "before"), "{during:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;

        cluster
            .start_apiserver()
            .await
            .expect("the apiserver starts again");
        let deadline = Instant::now() + Duration::from_secs(60);
        while agent.metric("otelcol_k8sattributes_relists") <= relists_before {
            assert!(
                Instant::now() < deadline,
                "no re-list after the restart; oxcol log:\n{}",
                agent.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            agent.log().contains("410 Gone"),
            "the re-list was not caused by 410 Gone:\n{}",
            agent.log()
        );
        // A pod created after the restart is found: the watch is live again.
        running_pod(
            &admin,
            "after",
            "node-a",
            "10.30.0.2",
            &container_id(2),
            None,
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            agent
                .send(
                    &[
                        ("k8s.pod.ip", "10.30.0.2"),
                        ("service.name", "after-restart"),
                    ],
                    None,
                )
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            if recorded_resources(&record)
                .iter()
                .any(|r| has(r, "service.name", "after-restart") && has(r, "k8s.pod.name", "after"))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the pod created after the restart was never matched"
            );
        }
        drop(agent);
        sink.shutdown();
        let _ = std::fs::remove_dir_all(&record);
    })
    .await;
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Measures what a watch over 1000 pods costs oxcol: RSS with and without k8sattributes,
/// CPU while idle and while 100 pods change. Numbers are printed (docs/kubernetes.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_of_a_watch_over_1000_pods() {
    bounded(Duration::from_secs(600), async {
        let cluster = start_cluster().await;
        let admin = cluster.admin().clone();
        admin.create_namespace(NAMESPACE, &[]).await.expect("namespace");
        let created = Instant::now();
        let mut tasks = Vec::new();
        for worker in 0..8u32 {
            let admin = admin.clone();
            tasks.push(tokio::spawn(async move {
                for index in (worker..1000).step_by(8) {
                    let name = format!("pod-{index:04}");
                    let ip = format!("10.{}.{}.{}", 40 + index / 65536, (index / 256) % 256, index % 256);
                    running_pod(&admin, &name, "node-a", &ip, &format!("{index:064x}"), None).await;
                }
            }));
        }
        for task in tasks {
            task.await.expect("creates pods");
        }
        eprintln!("created 1000 running pods in {:?}", created.elapsed());
        let (sink, record) = record_sink("cost").await;
        let kubeconfig = cluster.write_kubeconfig("oxcol", OXCOL_TOKEN).expect("kubeconfig");
        let env = [("KUBECONFIG", kubeconfig.to_str().expect("utf-8 path")), ("K8S_NODE_NAME", "node-a")];
        // OXCOL_K8S_COST_BINARY: measure another build (e.g. target/release/oxcol).
        let binary = std::env::var_os("OXCOL_K8S_COST_BINARY")
            .map(PathBuf::from)
            .unwrap_or_else(oxcol_binary);
        eprintln!("measuring {}", binary.display());
        let baseline = Agent::start_binary(
            &binary,
            &config(&sink, None, "    passthrough: true").replace("[k8sattributes, batch]", "[batch]"),
            &env,
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        let baseline_rss = rss_bytes(baseline.pid()).unwrap_or(0);
        drop(baseline);
        // The watcher's fixed cost: the same processor watching a namespace with no pods.
        let empty = Agent::start_binary(
            &binary,
            &config(&sink, None, &format!("{K8SATTRIBUTES}\n    filter:\n      namespace: empty").replace(
                "    filter:\n      node_from_env_var: K8S_NODE_NAME\n",
                "",
            )),
            &env,
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        let empty_rss = rss_bytes(empty.pid()).unwrap_or(0);
        drop(empty);

        let agent = Agent::start_binary(&binary, &config(&sink, None, K8SATTRIBUTES), &env);
        let deadline = Instant::now() + Duration::from_secs(60);
        while agent.metric("otelcol_otelsvc_k8s_pod_table_size") < 1000.0 {
            assert!(Instant::now() < deadline, "the table never held 1000 pods:\n{}", agent.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let synced_rss = rss_bytes(agent.pid()).unwrap_or(0);
        let ticks_per_second = 100.0; // USER_HZ on Linux
        let idle_start = cpu_ticks(agent.pid()).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let idle_cpu = (cpu_ticks(agent.pid()).unwrap_or(0) - idle_start) as f64 / ticks_per_second / 10.0;
        let churn_start = cpu_ticks(agent.pid()).unwrap_or(0);
        let churn_began = Instant::now();
        for index in 0..100u32 {
            admin
                .patch_pod_labels(NAMESPACE, &format!("pod-{index:04}"), &[("version", Some("2"))])
                .await
                .expect("patches a label");
        }
        let churn_seconds = churn_began.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let churn_cpu_seconds = (cpu_ticks(agent.pid()).unwrap_or(0) - churn_start) as f64 / ticks_per_second;
        let updated = agent.metric("otelcol_otelsvc_k8s_pod_updated");
        let after_rss = rss_bytes(agent.pid()).unwrap_or(0);
        eprintln!(
            "K8SATTRIBUTES COST: baseline RSS {:.1} MiB; watching 0 pods {:.1} MiB; with 1000 pods watched {:.1} MiB (+{:.1} MiB), \
             {:.1} MiB after 100 updates; idle CPU {:.4} cores; 100 pod updates in {churn_seconds:.1}s cost {churn_cpu_seconds:.2} CPU s; \
             updates seen {updated}",
            baseline_rss as f64 / 1048576.0,
            empty_rss as f64 / 1048576.0,
            synced_rss as f64 / 1048576.0,
            (synced_rss as f64 - baseline_rss as f64) / 1048576.0,
            after_rss as f64 / 1048576.0,
            idle_cpu,
        );
        assert!(updated >= 100.0, "only {updated} pod updates seen");
        assert!(
            synced_rss < baseline_rss + (64 << 20),
            "1000 pods cost more than 64 MiB: {baseline_rss} -> {synced_rss}"
        );
        drop(agent);
        sink.shutdown();
        let _ = std::fs::remove_dir_all(&record);
    })
    .await;
}
