use super::cache::*;
use super::client::{self, Token};
use super::*;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use std::time::Instant;

fn pod_json(uid: &str, name: &str, ip: &str, node: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {
            "name": name, "namespace": "shop", "uid": uid,
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "labels": {"app": "cart", "pod-template-hash": "5d8f7c9b4", "app.kubernetes.io/component": "api"},
            "annotations": {"team": "payments"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "cart-5d8f7c9b4", "uid": "rs-1", "controller": true}],
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "server", "image": "registry.example:5000/shop/cart:1.4.2"},
                           {"name": "proxy", "image": "envoy@sha256:abcd"}],
        },
        "status": {
            "podIP": ip,
            "containerStatuses": [{"name": "server", "containerID": "containerd://aaa111", "restartCount": 0}],
        },
    })
}

fn pod(uid: &str, name: &str, ip: &str) -> Pod {
    serde_json::from_value(pod_json(uid, name, ip, "node-a")).expect("a pod")
}

fn config(yaml_like: serde_json::Value) -> Config {
    serde_json::from_value(yaml_like).expect("a config")
}

fn rules(config: &Config) -> Rules {
    Rules::new(config).expect("rules")
}

fn string_attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(string_any(value)),
        ..Default::default()
    }
}

fn attributes_of(resource: &Resource) -> HashMap<String, String> {
    resource
        .attributes
        .iter()
        .filter_map(|kv| Some((kv.key.clone(), string_value(kv.value.as_ref())?)))
        .collect()
}

#[test]
fn defaults_are_the_collectors() {
    let config = Config::default();
    assert_eq!(config.auth_type, "serviceAccount");
    assert_eq!(
        config.wait_for_metadata_timeout.get(),
        Duration::from_secs(10)
    );
    assert_eq!(config.metadata(), DEFAULT_METADATA);
    assert!(config.exclude.pods.iter().any(|p| p.name == "jaeger-agent"));
    assert!(config.validate().is_empty(), "{:?}", config.validate());
}

#[test]
fn validate_reports_every_problem() {
    let config = config(serde_json::json!({
        "auth_type": "tls",
        "extract": {
            "metadata": ["k8s.pod.name", "k8s.pod.color", "k8s.node.uid", "service.name"],
            "labels": [{"key": "a", "key_regex": "b"}, {"key": "c", "from": "deployment"},
                       {"key_regex": "(unclosed"}],
        },
        "filter": {"labels": [{"key": "x", "op": "in"}], "fields": [{"key": "y", "op": "exists"}]},
        "pod_association": [{"sources": [{"from": "header", "name": "x"}]}, {"sources": []}],
        "exclude": {"pods": [{"name": "("}]},
    }));
    let problems = config.validate();
    let text = problems.join("\n");
    for expected in [
        "auth_type \"tls\"",
        "k8s.pod.color",
        "k8s.node.uid",
        "not both",
        "from \"deployment\"",
        "key_regex is not a valid",
        "filter.labels[0].op",
        "filter.fields[0].op",
        "from \"header\"",
        "pod_association[1] has no sources",
        "exclude.pods[0]",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_eq!(problems.len(), 11, "{text}");
}

#[test]
fn node_from_env_var_wins_and_an_unset_variable_is_an_error() {
    let mut config = Config::default();
    config.filter.node = "fixed".to_string();
    assert_eq!(config.node_filter(&|_| None).as_deref(), Ok("fixed"));
    config.filter.node_from_env_var = "K8S_NODE_NAME".to_string();
    let env = |name: &str| (name == "K8S_NODE_NAME").then(|| "node-7".to_string());
    assert_eq!(config.node_filter(&env).as_deref(), Ok("node-7"));
    let error = config.node_filter(&|_| None).expect_err("unset variable");
    assert!(
        error.contains("K8S_NODE_NAME") && error.contains("spec.nodeName"),
        "{error}"
    );
}

#[test]
fn image_references_split_into_name_and_tag() {
    assert_eq!(
        parse_image("registry.example:5000/shop/cart:1.4.2"),
        (
            "registry.example:5000/shop/cart".to_string(),
            "1.4.2".to_string()
        )
    );
    assert_eq!(
        parse_image("nginx"),
        ("nginx".to_string(), "latest".to_string())
    );
    assert_eq!(
        parse_image("registry.example:5000/nginx"),
        (
            "registry.example:5000/nginx".to_string(),
            "latest".to_string()
        )
    );
    assert_eq!(
        parse_image("envoy@sha256:abcd"),
        ("envoy".to_string(), String::new())
    );
    assert_eq!(
        parse_image("envoy:1.3@sha256:abcd"),
        ("envoy".to_string(), "1.3".to_string())
    );
}

#[test]
fn workload_names_from_owner_names() {
    assert_eq!(
        deployment_from_replicaset_name("cart-5d8f7c9b4", "5d8f7c9b4"),
        "cart"
    );
    assert_eq!(deployment_from_replicaset_name("cart-5d8f7c9b4", ""), "");
    assert_eq!(
        deployment_from_replicaset_name("cart-other", "5d8f7c9b4"),
        ""
    );
    assert_eq!(cronjob_from_job_name("backup-29345678"), "backup");
    assert_eq!(cronjob_from_job_name("backup-12"), "");
    assert_eq!(cronjob_from_job_name("migrate-db"), "");
}

#[test]
fn default_extraction_of_a_replicaset_pod() {
    let config = Config::default();
    let rules = rules(&config);
    let mut cache = Cache::default();
    assert_eq!(
        cache.upsert_pod(pod("uid-1", "cart-x", "10.0.0.5"), &rules, 10),
        Upserted::Added
    );
    let identifier = vec![(
        Source::Attribute("k8s.pod.uid".to_string()),
        "uid-1".to_string(),
    )];
    let found = cache.find(&identifier).expect("found by uid");
    let resource = [string_attr("container.id", "aaa111")];
    let attributes: HashMap<String, String> = cache
        .attributes(found, &rules, &resource)
        .into_iter()
        .collect();
    let expected: HashMap<String, String> = [
        ("k8s.pod.name", "cart-x"),
        ("k8s.pod.uid", "uid-1"),
        ("k8s.pod.start_time", "2026-01-02T03:04:05Z"),
        ("k8s.namespace.name", "shop"),
        ("k8s.node.name", "node-a"),
        // No ReplicaSet in the table: the name heuristic with pod-template-hash.
        ("k8s.deployment.name", "cart"),
        ("k8s.container.name", "server"),
        ("container.image.name", "registry.example:5000/shop/cart"),
        ("container.image.tag", "1.4.2"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(attributes, expected);
}

#[test]
fn deployment_comes_from_the_watched_replicaset_owner() {
    let config = Config::default();
    let rules = rules(&config);
    assert!(rules.needs_replicasets());
    let mut cache = Cache::default();
    cache.upsert_pod(pod("uid-1", "cart-x", "10.0.0.5"), &rules, 10);
    let rs: MetaObject = serde_json::from_value(serde_json::json!({"metadata": {
        "name": "cart-5d8f7c9b4", "uid": "rs-1",
        "ownerReferences": [{"kind": "Deployment", "name": "shopping-cart", "uid": "d-1", "controller": true}]}}))
    .expect("rs");
    cache.set_meta(Kind::ReplicaSets, rs.metadata, false);
    let found = cache
        .find(&vec![(
            Source::Attribute("k8s.pod.uid".to_string()),
            "uid-1".to_string(),
        )])
        .expect("found");
    let attributes: HashMap<String, String> =
        cache.attributes(found, &rules, &[]).into_iter().collect();
    assert_eq!(attributes["k8s.deployment.name"], "shopping-cart");
    // Without container.id or k8s.container.name, the pod's only running container (one
    // container ID among the statuses), as the Collector since contrib PR 36844.
    assert_eq!(attributes["k8s.container.name"], "server");
    assert_eq!(attributes["container.image.tag"], "1.4.2");
    // A ReplicaSet in the table without a Deployment owner: no Deployment name (the
    // heuristic is only for ReplicaSets the table does not have).
    let orphan: MetaObject = serde_json::from_value(serde_json::json!({"metadata": {
        "name": "cart-5d8f7c9b4", "uid": "rs-1"}}))
    .expect("rs");
    cache.set_meta(Kind::ReplicaSets, orphan.metadata, false);
    let found = cache
        .find(&vec![(
            Source::Attribute("k8s.pod.uid".to_string()),
            "uid-1".to_string(),
        )])
        .expect("found");
    let attributes: HashMap<String, String> =
        cache.attributes(found, &rules, &[]).into_iter().collect();
    assert!(
        !attributes.contains_key("k8s.deployment.name"),
        "{attributes:?}"
    );
    let heuristic = config_with_heuristic();
    assert!(!Rules::new(&heuristic).expect("rules").needs_replicasets());
}

fn config_with_heuristic() -> Config {
    let mut config = Config::default();
    config.extract.deployment_name_from_replicaset = true;
    config
}

#[test]
fn labels_annotations_and_regex_tag_names() {
    let config = config(serde_json::json!({
        "extract": {
            "metadata": ["k8s.pod.name"],
            "labels": [
                {"key": "app"},
                {"tag_name": "component", "key": "app.kubernetes.io/component"},
                {"tag_name": "k8s.$1", "key_regex": "app\\.kubernetes\\.io/(.*)"},
                {"key": "tier", "from": "namespace"},
                {"key": "zone", "from": "node"},
            ],
            "annotations": [{"key": "team"}],
        }
    }));
    let rules = rules(&config);
    assert!(rules.needs_namespaces() && rules.needs_nodes() && !rules.needs_replicasets());
    let mut cache = Cache::default();
    cache.upsert_pod(pod("uid-1", "cart-x", "10.0.0.5"), &rules, 10);
    let namespace: MetaObject = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "shop", "labels": {"tier": "gold"}}}),
    )
    .expect("ns");
    cache.set_meta(Kind::Namespaces, namespace.metadata, false);
    let node: MetaObject = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "node-a", "labels": {"zone": "eu-1"}}}),
    )
    .expect("node");
    cache.set_meta(Kind::Nodes, node.metadata, false);
    let found = cache
        .find(&vec![(Source::Connection, "10.0.0.5".to_string())])
        .expect("found by connection ip");
    let attributes: HashMap<String, String> =
        cache.attributes(found, &rules, &[]).into_iter().collect();
    assert_eq!(attributes["k8s.pod.labels.app"], "cart");
    assert_eq!(attributes["component"], "api");
    assert_eq!(attributes["k8s.component"], "api");
    assert_eq!(attributes["k8s.namespace.labels.tier"], "gold");
    assert_eq!(attributes["k8s.node.labels.zone"], "eu-1");
    assert_eq!(attributes["k8s.pod.annotations.team"], "payments");
    assert_eq!(attributes.len(), 7, "{attributes:?}");
}

#[test]
fn deleted_pods_stay_for_the_grace_period_and_ips_move_to_new_pods() {
    let rules = rules(&Config::default());
    let mut cache = Cache::default();
    cache.upsert_pod(pod("old", "a", "10.0.0.9"), &rules, 10);
    let by_ip = vec![(
        Source::Attribute("k8s.pod.ip".to_string()),
        "10.0.0.9".to_string(),
    )];
    let start = Instant::now();
    assert!(cache.delete_pod("old", start));
    assert!(
        !cache.delete_pod("old", start),
        "a second delete changes nothing"
    );
    cache.expire(start + Duration::from_secs(60), POD_DELETE_GRACE_PERIOD);
    assert_eq!(
        cache.find(&by_ip).map(|p| p.metadata.uid.as_str()),
        Some("old")
    );
    // A new pod takes over the IP; expiring the old one must not unindex the new one.
    cache.upsert_pod(pod("new", "b", "10.0.0.9"), &rules, 10);
    cache.expire(start + POD_DELETE_GRACE_PERIOD, POD_DELETE_GRACE_PERIOD);
    assert!(cache.pod("old").is_none());
    assert_eq!(
        cache.find(&by_ip).map(|p| p.metadata.uid.as_str()),
        Some("new")
    );
    assert_eq!(cache.len(), 1);
}

#[test]
fn stored_pods_keep_only_what_rules_read() {
    let config = config(serde_json::json!({"extract": {"metadata": ["k8s.pod.name"]}}));
    let rules = rules(&config);
    let mut cache = Cache::default();
    cache.upsert_pod(pod("uid-1", "cart-x", "10.0.0.5"), &rules, 10);
    let stored = &cache.pod("uid-1").expect("stored").pod;
    assert!(stored.metadata.annotations.is_empty());
    assert_eq!(
        stored.metadata.labels.keys().collect::<Vec<_>>(),
        vec!["pod-template-hash"]
    );
    assert!(stored.spec.containers.iter().all(|c| c.image.is_empty()));
    // With a pod label rule, labels stay (they are what the rule reads).
    let with_labels = Config {
        extract: ExtractConfig {
            labels: vec![FieldExtractConfig {
                key: "app".to_string(),
                ..Default::default()
            }],
            ..Default::default()
        },
        ..Config::default()
    };
    let mut cache = Cache::default();
    cache.upsert_pod(
        pod("uid-1", "cart-x", "10.0.0.5"),
        &Rules::new(&with_labels).expect("rules"),
        10,
    );
    assert_eq!(
        cache
            .pod("uid-1")
            .expect("stored")
            .pod
            .metadata
            .labels
            .len(),
        3
    );
}

#[test]
fn the_table_is_bounded_and_evicts_deleted_pods_first() {
    let rules = rules(&Config::default());
    let mut cache = Cache::default();
    assert_eq!(
        cache.upsert_pod(pod("1", "a", "10.0.0.1"), &rules, 2),
        Upserted::Added
    );
    assert_eq!(
        cache.upsert_pod(pod("2", "b", "10.0.0.2"), &rules, 2),
        Upserted::Added
    );
    assert_eq!(
        cache.upsert_pod(pod("3", "c", "10.0.0.3"), &rules, 2),
        Upserted::Dropped
    );
    assert_eq!(
        cache.upsert_pod(pod("2", "b", "10.0.0.2"), &rules, 2),
        Upserted::Updated
    );
    cache.delete_pod("1", Instant::now());
    assert_eq!(
        cache.upsert_pod(pod("3", "c", "10.0.0.3"), &rules, 2),
        Upserted::Added
    );
    assert!(cache.pod("1").is_none());
    assert_eq!(cache.len(), 2);
}

#[test]
fn excluded_pods_are_never_added() {
    let rules = rules(&Config::default());
    let mut cache = Cache::default();
    assert_eq!(
        cache.upsert_pod(pod("1", "otel-collector-abc", "10.0.0.1"), &rules, 10),
        Upserted::Excluded
    );
    let mut annotated = pod("2", "cart-y", "10.0.0.2");
    annotated
        .metadata
        .annotations
        .insert(IGNORE_ANNOTATION.to_string(), " True".to_string());
    assert_eq!(cache.upsert_pod(annotated, &rules, 10), Upserted::Excluded);
    assert!(cache.is_empty());
}

#[test]
fn association_rules_pick_the_first_complete_rule() {
    let config = config(serde_json::json!({
        "passthrough": true,
        "pod_association": [
            {"sources": [{"from": "resource_attribute", "name": "k8s.pod.name"},
                         {"from": "resource_attribute", "name": "k8s.namespace.name"}]},
            {"sources": [{"from": "connection"}]},
        ],
    }));
    let processor = K8sAttributesProcessor::new("k8sattributes", &config, None).expect("builds");
    let resource = Resource {
        attributes: vec![string_attr("k8s.pod.name", "a")],
        ..Default::default()
    };
    let connection: Option<IpAddr> = "10.1.2.3".parse().ok();
    assert_eq!(
        processor.identifier(&resource, connection),
        vec![(Source::Connection, "10.1.2.3".to_string())]
    );
    let resource = Resource {
        attributes: vec![
            string_attr("k8s.pod.name", "a"),
            string_attr("k8s.namespace.name", "b"),
        ],
        ..Default::default()
    };
    assert_eq!(processor.identifier(&resource, connection).len(), 2);
    assert!(processor.identifier(&Resource::default(), None).is_empty());
}

#[test]
fn passthrough_adds_only_the_connection_ip_and_never_overwrites() {
    let config = config(serde_json::json!({"passthrough": true}));
    let mut processor =
        K8sAttributesProcessor::new("k8sattributes", &config, None).expect("builds");
    let mut batch = Batch::from_metrics(vec![
        ResourceMetrics::default(),
        ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![string_attr("host.name", "web-1")],
                ..Default::default()
            }),
            ..Default::default()
        },
    ]);
    batch.set_client_addr("10.9.8.7".parse().ok());
    let mut out = processor.process(batch).expect("processes");
    let resources: Vec<HashMap<String, String>> = out
        .metrics_mut()
        .expect("metrics")
        .iter()
        .map(|r| attributes_of(r.resource.as_ref().expect("resource")))
        .collect();
    assert_eq!(
        resources[0].get("k8s.pod.ip").map(String::as_str),
        Some("10.9.8.7")
    );
    assert_eq!(resources[0].len(), 1);
    assert_eq!(
        resources[1].get("k8s.pod.ip").map(String::as_str),
        Some("10.9.8.7")
    );
    assert_eq!(
        resources[1].get("host.name").map(String::as_str),
        Some("web-1")
    );

    let mut attributes = vec![string_attr("k8s.pod.ip", "1.1.1.1")];
    set_if_absent(&mut attributes, "k8s.pod.ip", "2.2.2.2");
    assert_eq!(
        string_value(attributes[0].value.as_ref()).as_deref(),
        Some("1.1.1.1")
    );
}

#[test]
fn selectors_from_filters() {
    let config = config(serde_json::json!({
        "filter": {
            "namespace": "shop",
            "fields": [{"key": "status.phase", "value": "Running"},
                       {"key": "metadata.name", "value": "x", "op": "not-equals"}],
            "labels": [{"key": "app", "value": "cart"}, {"key": "tier", "op": "exists"},
                       {"key": "canary", "op": "does-not-exist"}, {"key": "env", "value": "dev", "op": "not-equals"}],
        }
    }));
    let (fields, labels) = client::pod_selectors(&config, "node-a");
    assert_eq!(
        fields,
        "spec.nodeName=node-a,status.phase=Running,metadata.name!=x"
    );
    assert_eq!(labels, "app=cart,tier,!canary,env!=dev");
    let watches = client::plan(&config, &rules(&config), "node-a");
    assert_eq!(watches[0].path, "/api/v1/namespaces/shop/pods");
    assert!(
        watches[0]
            .query
            .starts_with("fieldSelector=spec.nodeName%3Dnode-a%2C"),
        "{}",
        watches[0].query
    );
    assert_eq!(watches[1].path, "/apis/apps/v1/namespaces/shop/replicasets");
    assert_eq!(watches.len(), 2);
}

#[test]
fn kubeconfig_with_embedded_ca_and_token_file() {
    use base64::Engine;
    let dir = std::env::temp_dir().join(format!("oxcol-k8s-kubeconfig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let ca_data = base64::engine::general_purpose::STANDARD.encode(ca);
    let path = dir.join("config");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: one\nclusters:\n- name: c1\n  cluster:\n    server: https://10.0.0.1:6443/\n    certificate-authority-data: {ca_data}\n- name: c2\n  cluster:\n    server: https://other:443\n    certificate-authority: ca.pem\nusers:\n- name: u1\n  user:\n    tokenFile: token.txt\n- name: u2\n  user:\n    token: abc\ncontexts:\n- name: one\n  context:\n    cluster: c1\n    user: u1\n- name: two\n  context:\n    cluster: c2\n    user: u2\n"
        ),
    )
    .expect("writes");
    let api = client::load_kubeconfig(&path, "").expect("loads");
    assert_eq!(api.server, "https://10.0.0.1:6443");
    assert_eq!(api.tls.ca_pem.as_deref(), Some(ca));
    assert_eq!(api.token, Token::File(dir.join("token.txt")));
    let api = client::load_kubeconfig(&path, "two").expect("loads");
    assert_eq!(api.server, "https://other:443");
    assert_eq!(
        api.tls.ca_file,
        Some(dir.join("ca.pem").display().to_string())
    );
    assert_eq!(api.token, Token::Static("abc".to_string()));
    let error = client::load_kubeconfig(&path, "three").expect_err("no such context");
    assert!(error.contains("no context \"three\""), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn off_cluster_service_account_is_explained() {
    let config = Config::default();
    let error = client::api_config(&config, &|_| None).expect_err("no cluster here");
    assert!(
        error.contains("KUBERNETES_SERVICE_HOST") || error.contains("token"),
        "{error}"
    );
    let none = config_auth_none();
    let env = |name: &str| match name {
        "KUBERNETES_SERVICE_HOST" => Some("fd00::1".to_string()),
        "KUBERNETES_SERVICE_PORT" => Some("443".to_string()),
        _ => None,
    };
    let api = client::api_config(&none, &env).expect("auth none");
    assert_eq!(api.server, "https://[fd00::1]:443");
    assert!(api.tls.insecure_skip_verify);
    assert_eq!(api.token, Token::None);
}

fn config_auth_none() -> Config {
    Config {
        auth_type: "none".to_string(),
        ..Config::default()
    }
}

#[test]
fn a_processor_without_a_cluster_passes_data_unchanged() {
    // kubeConfig pointing nowhere: the watcher is never started, data passes through.
    let config = Config {
        auth_type: "kubeConfig".to_string(),
        ..Config::default()
    };
    let mut processor =
        K8sAttributesProcessor::new("k8sattributes/offline", &config, None).expect("builds");
    let resource = Resource {
        attributes: vec![string_attr("k8s.pod.uid", "u")],
        ..Default::default()
    };
    let batch = Batch::from_metrics(vec![ResourceMetrics {
        resource: Some(resource.clone()),
        ..Default::default()
    }]);
    let mut out = processor.process(batch).expect("passes");
    assert_eq!(
        out.metrics_mut().expect("metrics")[0].resource.as_ref(),
        Some(&resource)
    );
}

#[test]
fn otel_annotations_become_resource_attributes() {
    let config = config(serde_json::json!({
        "extract": {"metadata": ["k8s.pod.name"], "otel_annotations": true}
    }));
    let rules = rules(&config);
    let mut json = pod_json("uid-9", "cart-y", "10.0.0.9", "node-a");
    json["metadata"]["annotations"] = serde_json::json!({
        "resource.opentelemetry.io/service.name": "cart",
        "resource.opentelemetry.io/deployment.environment.name": "prod",
        "team": "payments",
    });
    let mut cache = Cache::default();
    cache.upsert_pod(serde_json::from_value(json).expect("a pod"), &rules, 10);
    let found = cache
        .find(&vec![(Source::Connection, "10.0.0.9".to_string())])
        .expect("found by connection ip");
    let attributes: HashMap<String, String> =
        cache.attributes(found, &rules, &[]).into_iter().collect();
    assert_eq!(attributes["service.name"], "cart");
    assert_eq!(attributes["deployment.environment.name"], "prod");
    assert!(!attributes.contains_key("team"), "{attributes:?}");
    assert!(
        !attributes.contains_key("k8s.pod.annotations.team"),
        "{attributes:?}"
    );
    assert_eq!(attributes.len(), 3, "{attributes:?}");
}

fn service_config(otel_annotations: bool) -> Config {
    config(serde_json::json!({
        "extract": {
            "metadata": ["service.name", "service.namespace", "service.version",
                         "service.instance.id", "k8s.cluster.uid"],
            "otel_annotations": otel_annotations,
        }
    }))
}

/// The attributes of the pod `json` (stored through `upsert_pod`, so slimmed as in
/// production) for a resource with `resource` attributes.
fn extracted(
    json: serde_json::Value,
    config: &Config,
    cache: &mut Cache,
    resource: &[KeyValue],
) -> HashMap<String, String> {
    let rules = rules(config);
    let pod: Pod = serde_json::from_value(json).expect("a pod");
    let uid = pod.metadata.uid.clone();
    assert_eq!(cache.upsert_pod(pod, &rules, 10), Upserted::Added);
    let found = cache
        .find(&vec![(Source::Attribute("k8s.pod.uid".to_string()), uid)])
        .expect("found by uid");
    let attributes: Vec<(String, String)> = cache.attributes(found, &rules, resource);
    let map: HashMap<String, String> = attributes.iter().cloned().collect();
    assert_eq!(
        map.len(),
        attributes.len(),
        "one value per key: {attributes:?}"
    );
    map
}

fn kube_system(uid: &str) -> ObjectMeta {
    let namespace: MetaObject = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "kube-system", "uid": uid}}),
    )
    .expect("namespace");
    namespace.metadata
}

#[test]
fn service_attributes_derived_from_the_pod_and_its_container() {
    let config = service_config(false);
    let mut cache = Cache::default();
    let resource = [string_attr("container.id", "containerd://aaa111")];
    let attributes = extracted(
        pod_json("uid-1", "cart-x", "10.0.0.5", "node-a"),
        &config,
        &mut cache,
        &resource,
    );
    let expected: HashMap<String, String> = [
        // ReplicaSet owner, not in the table: the Deployment by the name heuristic.
        ("service.name", "cart"),
        ("service.namespace", "shop"),
        // No app.kubernetes.io/version label: the container image's tag.
        ("service.version", "1.4.2"),
        ("service.instance.id", "shop.cart-x.server"),
        // No kube-system namespace known yet: no k8s.cluster.uid.
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(attributes, expected);

    cache.set_meta(Kind::Namespaces, kube_system("cluster-uid-1"), false);
    let found = cache
        .find(&vec![(
            Source::Attribute("k8s.pod.uid".to_string()),
            "uid-1".to_string(),
        )])
        .expect("found");
    let attributes: HashMap<String, String> = cache
        .attributes(found, &rules(&config), &resource)
        .into_iter()
        .collect();
    assert_eq!(attributes["k8s.cluster.uid"], "cluster-uid-1");
}

#[test]
fn service_attributes_precedence_annotation_then_label_then_derived() {
    let resource = [string_attr("k8s.container.name", "server")];
    let mut json = pod_json("uid-2", "cart-y", "10.0.0.6", "node-a");
    json["metadata"]["labels"]["app.kubernetes.io/name"] = "cart-app".into();
    json["metadata"]["labels"]["app.kubernetes.io/version"] = "2.0.0".into();
    // Labels: app.kubernetes.io/name beats the workload name; upsert_pod must keep them
    // although no extract.labels rule reads them.
    let attributes = extracted(
        json.clone(),
        &service_config(true),
        &mut Cache::default(),
        &resource,
    );
    assert_eq!(attributes["service.name"], "cart-app");
    assert_eq!(
        attributes["service.version"], "2.0.0",
        "the label beats the image tag"
    );
    assert_eq!(attributes["service.instance.id"], "shop.cart-y.server");

    // app.kubernetes.io/instance beats app.kubernetes.io/name.
    json["metadata"]["labels"]["app.kubernetes.io/instance"] = "cart-eu".into();
    let attributes = extracted(
        json.clone(),
        &service_config(true),
        &mut Cache::default(),
        &resource,
    );
    assert_eq!(attributes["service.name"], "cart-eu");

    // resource.opentelemetry.io/ annotations (otel_annotations) beat labels and derived
    // values, also for the container-level ones.
    json["metadata"]["annotations"] = serde_json::json!({
        "resource.opentelemetry.io/service.name": "checkout",
        "resource.opentelemetry.io/service.version": "3.1",
        "resource.opentelemetry.io/service.namespace": "payments",
        "resource.opentelemetry.io/service.instance.id": "checkout-1",
    });
    let attributes = extracted(
        json.clone(),
        &service_config(true),
        &mut Cache::default(),
        &resource,
    );
    assert_eq!(attributes["service.name"], "checkout");
    assert_eq!(attributes["service.version"], "3.1");
    assert_eq!(attributes["service.namespace"], "payments");
    assert_eq!(attributes["service.instance.id"], "checkout-1");

    // Without otel_annotations the annotations are not read.
    let attributes = extracted(
        json,
        &service_config(false),
        &mut Cache::default(),
        &resource,
    );
    assert_eq!(attributes["service.name"], "cart-eu");
    assert_eq!(attributes["service.namespace"], "shop");

    // A pod annotation rule replaces a pod label rule of the same tag name (later rules
    // win, as in the Collector's map of pod attributes).
    let config = config(serde_json::json!({"extract": {
        "metadata": ["k8s.pod.name"],
        "labels": [{"tag_name": "owner", "key": "app"}],
        "annotations": [{"tag_name": "owner", "key": "team"}],
    }}));
    let attributes = extracted(
        pod_json("uid-3", "cart-z", "10.0.0.7", "node-a"),
        &config,
        &mut Cache::default(),
        &[],
    );
    assert_eq!(attributes["owner"], "payments");
}

#[test]
fn service_name_from_each_kind_of_owner() {
    let config = config(serde_json::json!({"extract": {"metadata": ["service.name"]}}));
    let service_name = |owners: serde_json::Value, labels: serde_json::Value, cache: &mut Cache| {
        let mut json = pod_json("uid-o", "pod-o", "10.0.1.1", "node-a");
        json["metadata"]["ownerReferences"] = owners;
        json["metadata"]["labels"] = labels;
        extracted(json, &config, cache, &[])
            .get("service.name")
            .cloned()
    };
    let hash = serde_json::json!({"pod-template-hash": "5d8f7c9b4"});
    let none = serde_json::json!({});
    let owner = |kind: &str, name: &str| serde_json::json!([{"kind": kind, "name": name, "uid": format!("{kind}-uid"), "controller": true}]);
    assert_eq!(
        service_name(serde_json::json!([]), none.clone(), &mut Cache::default()).as_deref(),
        Some("pod-o"),
        "no owner: the pod name"
    );
    assert_eq!(
        service_name(
            owner("ReplicaSet", "cart-5d8f7c9b4"),
            none.clone(),
            &mut Cache::default()
        )
        .as_deref(),
        Some("cart-5d8f7c9b4"),
        "a ReplicaSet without pod-template-hash: the ReplicaSet name"
    );
    assert_eq!(
        service_name(
            owner("ReplicaSet", "cart-5d8f7c9b4"),
            hash.clone(),
            &mut Cache::default()
        )
        .as_deref(),
        Some("cart")
    );
    let mut with_replicaset = Cache::default();
    let rs: MetaObject = serde_json::from_value(serde_json::json!({"metadata": {
        "name": "cart-5d8f7c9b4", "uid": "ReplicaSet-uid",
        "ownerReferences": [{"kind": "Deployment", "name": "shopping-cart", "uid": "d-1", "controller": true}]}}))
    .expect("rs");
    with_replicaset.set_meta(Kind::ReplicaSets, rs.metadata, false);
    assert_eq!(
        service_name(
            owner("ReplicaSet", "cart-5d8f7c9b4"),
            hash,
            &mut with_replicaset
        )
        .as_deref(),
        Some("shopping-cart"),
        "the watched ReplicaSet's Deployment"
    );
    assert_eq!(
        service_name(
            owner("DaemonSet", "node-exporter"),
            none.clone(),
            &mut Cache::default()
        )
        .as_deref(),
        Some("node-exporter")
    );
    assert_eq!(
        service_name(
            owner("StatefulSet", "postgres"),
            none.clone(),
            &mut Cache::default()
        )
        .as_deref(),
        Some("postgres")
    );
    assert_eq!(
        service_name(
            owner("Job", "backup-29345678"),
            none.clone(),
            &mut Cache::default()
        )
        .as_deref(),
        Some("backup"),
        "a CronJob's Job: the CronJob name"
    );
    assert_eq!(
        service_name(owner("Job", "migrate-db"), none, &mut Cache::default()).as_deref(),
        Some("migrate-db")
    );
}

#[test]
fn service_version_from_image_references() {
    assert_eq!(
        service_version_from_image("registry.example:5000/shop/cart:1.4.2").as_deref(),
        Some("1.4.2")
    );
    assert_eq!(
        service_version_from_image("envoy@sha256:abcd").as_deref(),
        Some("sha256:abcd")
    );
    assert_eq!(
        service_version_from_image("envoy:1.3@sha256:abcd").as_deref(),
        Some("1.3@sha256:abcd")
    );
    // No tag, no digest: no version (container.image.tag would say latest).
    assert_eq!(service_version_from_image("nginx"), None);
    assert_eq!(
        service_version_from_image("registry.example:5000/nginx"),
        None
    );
    assert_eq!(service_version_from_image(""), None);
}

#[test]
fn container_level_service_attributes_need_the_container() {
    let config = service_config(false);
    let mut json = pod_json("uid-4", "web", "10.0.0.8", "node-a");
    json["spec"]["containers"] = serde_json::json!([
        {"name": "server", "image": "shop/cart:1.4.2"},
        {"name": "proxy", "image": "envoy@sha256:abcd"},
        {"name": "pending", "image": "shop/pending:0.9"},
    ]);
    json["status"]["containerStatuses"] = serde_json::json!([
        {"name": "server", "containerID": "containerd://aaa111"},
        {"name": "proxy", "containerID": "containerd://bbb222"},
    ]);
    let run = |resource: &[KeyValue]| {
        let mut attributes = extracted(json.clone(), &config, &mut Cache::default(), resource);
        attributes.remove("service.name");
        attributes.remove("service.namespace");
        attributes
    };
    // Several containers and no container on the resource: no container-level values.
    assert!(run(&[]).is_empty(), "{:?}", run(&[]));
    let proxy = run(&[string_attr("k8s.container.name", "proxy")]);
    assert_eq!(proxy["service.instance.id"], "shop.web.proxy");
    assert_eq!(proxy["service.version"], "sha256:abcd");
    let by_id = run(&[string_attr("container.id", "bbb222")]);
    assert_eq!(by_id, proxy);
    // The resource's k8s.container.name wins over its container.id.
    let both = run(&[
        string_attr("k8s.container.name", "server"),
        string_attr("container.id", "bbb222"),
    ]);
    assert_eq!(both["service.instance.id"], "shop.web.server");
    // A container without a status yet: the image gives service.version, but there is no
    // service.instance.id.
    let pending = run(&[string_attr("k8s.container.name", "pending")]);
    assert_eq!(
        pending.get("service.version").map(String::as_str),
        Some("0.9")
    );
    assert!(!pending.contains_key("service.instance.id"), "{pending:?}");
    // A container the pod does not have: nothing.
    assert!(run(&[string_attr("k8s.container.name", "ghost")]).is_empty());
    assert!(run(&[string_attr("container.id", "ccc333")]).is_empty());

    // One container: the Collector falls back to it without a container on the resource.
    let single = extracted(
        serde_json::json!({
            "metadata": {"name": "solo", "namespace": "shop", "uid": "uid-5"},
            "spec": {"containers": [{"name": "main", "image": "solo:7"}]},
            "status": {"containerStatuses": [{"name": "main", "containerID": "cri-o://ddd"}]},
        }),
        &config,
        &mut Cache::default(),
        &[],
    );
    assert_eq!(single["service.instance.id"], "shop.solo.main");
    assert_eq!(single["service.version"], "7");
    assert_eq!(single["service.name"], "solo");
}

#[test]
fn without_a_pod_the_resources_namespace_still_gives_service_namespace() {
    let config = config(serde_json::json!({"extract": {
        "metadata": ["service.namespace"],
        "labels": [{"key": "tier", "from": "namespace"}, {"key": "zone", "from": "node"}],
    }}));
    let rules = rules(&config);
    let mut cache = Cache::default();
    let namespace: MetaObject = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "shop", "labels": {"tier": "gold"}}}),
    )
    .expect("ns");
    cache.set_meta(Kind::Namespaces, namespace.metadata, false);
    let node: MetaObject = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "node-a", "labels": {"zone": "eu-1"}}}),
    )
    .expect("node");
    cache.set_meta(Kind::Nodes, node.metadata, false);
    let attributes: HashMap<String, String> = cache
        .attributes_without_pod(
            &rules,
            &[
                string_attr("k8s.namespace.name", "shop"),
                string_attr("k8s.node.name", "node-a"),
            ],
        )
        .into_iter()
        .collect();
    let expected: HashMap<String, String> = [
        ("service.namespace", "shop"),
        ("k8s.namespace.labels.tier", "gold"),
        ("k8s.node.labels.zone", "eu-1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(attributes, expected);
    assert!(cache.attributes_without_pod(&rules, &[]).is_empty());

    // Through the processor: a resource whose pod is unknown (here: no API at all).
    let config = Config {
        auth_type: "kubeConfig".to_string(),
        ..config
    };
    let mut processor =
        K8sAttributesProcessor::new("k8sattributes/service-ns", &config, None).expect("builds");
    let batch = Batch::from_metrics(vec![
        ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    string_attr("k8s.pod.uid", "unknown"),
                    string_attr("k8s.namespace.name", "shop"),
                ],
                ..Default::default()
            }),
            ..Default::default()
        },
        ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    string_attr("k8s.namespace.name", "shop"),
                    string_attr("service.namespace", "own"),
                ],
                ..Default::default()
            }),
            ..Default::default()
        },
    ]);
    let mut out = processor.process(batch).expect("processes");
    let resources: Vec<HashMap<String, String>> = out
        .metrics_mut()
        .expect("metrics")
        .iter()
        .map(|r| attributes_of(r.resource.as_ref().expect("resource")))
        .collect();
    assert_eq!(resources[0]["service.namespace"], "shop");
    assert_eq!(
        resources[1]["service.namespace"], "own",
        "never overwritten"
    );
}

#[test]
fn cluster_uid_alone_watches_only_kube_system() {
    let cluster_only = config(serde_json::json!({"extract": {"metadata": ["k8s.cluster.uid"]}}));
    let cluster_rules = rules(&cluster_only);
    assert!(!cluster_rules.needs_namespaces() && cluster_rules.needs_kube_system_only());
    let watches = client::plan(&cluster_only, &cluster_rules, "");
    assert_eq!(watches.len(), 2, "{watches:?}");
    assert_eq!(watches[1].kind, Kind::Namespaces);
    assert_eq!(watches[1].path, "/api/v1/namespaces");
    assert_eq!(
        watches[1].query,
        "fieldSelector=metadata.name%3Dkube-system"
    );
    // A namespace rule needs every namespace (kube-system among them).
    let with_rule = config(serde_json::json!({"extract": {
        "metadata": ["k8s.cluster.uid"],
        "labels": [{"key": "tier", "from": "namespace"}],
    }}));
    let with_rule_rules = rules(&with_rule);
    assert!(!with_rule_rules.needs_kube_system_only());
    let watches = client::plan(&with_rule, &with_rule_rules, "");
    assert_eq!(watches.len(), 2);
    assert_eq!(watches[1].query, "");
    // The service attributes add no watch; service.name does not watch ReplicaSets.
    let services = service_config(true);
    let watches = client::plan(&services, &rules(&services), "");
    assert_eq!(watches.len(), 2, "pods and kube-system: {watches:?}");
    let services = config(serde_json::json!({"extract": {
        "metadata": ["service.name", "service.version", "service.instance.id"]}}));
    assert_eq!(client::plan(&services, &rules(&services), "").len(), 1);
}

#[test]
fn the_helm_charts_kubernetes_attributes_preset_validates() {
    // The opentelemetry-collector chart's kubernetesAttributes preset (examples
    // alternate-config and kubernetesAttributes in integration/real-configs).
    let preset = config(serde_json::json!({
        "extract": {
            "metadata": ["k8s.namespace.name", "k8s.pod.name", "k8s.pod.uid", "k8s.node.name",
                         "k8s.pod.start_time", "k8s.deployment.name", "k8s.replicaset.name",
                         "k8s.replicaset.uid", "k8s.daemonset.name", "k8s.daemonset.uid",
                         "k8s.job.name", "k8s.job.uid", "k8s.container.name", "k8s.cronjob.name",
                         "k8s.statefulset.name", "k8s.statefulset.uid", "container.image.tag",
                         "container.image.name", "k8s.cluster.uid", "service.namespace",
                         "service.name", "service.version", "service.instance.id"],
            "otel_annotations": true,
        },
        "passthrough": false,
        "pod_association": [
            {"sources": [{"from": "resource_attribute", "name": "k8s.pod.ip"}]},
            {"sources": [{"from": "resource_attribute", "name": "k8s.pod.uid"}]},
            {"sources": [{"from": "connection"}]},
        ],
    }));
    assert!(preset.validate().is_empty(), "{:?}", preset.validate());
    // Pods, ReplicaSets (k8s.deployment.name) and kube-system only.
    let watches = client::plan(&preset, &rules(&preset), "");
    let kinds: Vec<Kind> = watches.iter().map(|w| w.kind).collect();
    assert_eq!(kinds, [Kind::Pods, Kind::ReplicaSets, Kind::Namespaces]);
    assert_eq!(
        watches[2].query,
        "fieldSelector=metadata.name%3Dkube-system"
    );
}
