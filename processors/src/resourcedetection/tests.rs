//! Every detector against fixtures: environment text, files, and small HTTP servers on
//! 127.0.0.1 (and a Unix socket) that answer like the real metadata services. Nothing
//! here sends traffic to any other address.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use super::detectors::{os_description, parse_resource_attributes, string_attribute};
use super::*;

/// A request as the fixture servers see it.
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
}

type Handler = Arc<dyn Fn(&Seen) -> (u16, String) + Send + Sync>;

fn read_request(stream: &mut impl Read) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Some(Seen {
        method,
        path,
        headers,
    })
}

fn answer(stream: &mut impl Write, status: u16, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Serves `handler` on 127.0.0.1; returns `http://127.0.0.1:PORT`.
fn serve(handler: Handler) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = Arc::clone(&handler);
            std::thread::spawn(move || {
                let mut stream = stream;
                if let Some(seen) = read_request(&mut stream) {
                    let (status, body) = handler(&seen);
                    answer(&mut stream, status, &body);
                }
            });
        }
    });
    format!("http://{addr}")
}

/// A server on 127.0.0.1 that accepts connections and never answers.
fn silent_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    format!("http://{addr}")
}

/// A closed loopback port: connections are refused at once.
const NOWHERE: &str = "http://127.0.0.1:1";

fn test_endpoints() -> Endpoints {
    Endpoints {
        ec2: NOWHERE.into(),
        gcp: NOWHERE.into(),
        azure: NOWHERE.into(),
        docker_socket: "/nonexistent/docker.sock".into(),
        k8s_api: None,
        k8s_token_file: "/nonexistent/token".into(),
        k8s_ca_file: "/nonexistent/ca.crt".into(),
        machine_id_files: vec!["/nonexistent/machine-id".into()],
        os_release_files: vec!["/nonexistent/os-release".into()],
        etc_dir: "/nonexistent/etc".into(),
        cpuinfo_file: "/nonexistent/cpuinfo".into(),
        env: Some(HashMap::new()),
    }
}

fn config(detectors: &[&str]) -> Config {
    Config {
        detectors: detectors.iter().map(|d| d.to_string()).collect(),
        timeout: GoDuration::from_secs(2),
        ..Config::default()
    }
}

fn as_map(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn detect_with(config: &Config, endpoints: &Endpoints) -> HashMap<String, String> {
    as_map(&detect("resourcedetection", config, endpoints, None).attributes)
}

fn run_one(config: &Config, endpoints: &Endpoints) -> Result<Vec<KeyValue>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut results = runtime.block_on(detectors::run_all(
        "t",
        config,
        endpoints,
        config.timeout.get(),
    ));
    results.remove(0).1
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "oxcol-resourcedetection-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn env_detector_parses_and_percent_decodes() {
    let attrs = parse_resource_attributes(" service.name = checkout%2Cv2 , team=a+b ,path=%2Fvar ")
        .expect("valid");
    let map = as_map(&attrs);
    assert_eq!(map["service.name"], "checkout,v2");
    assert_eq!(map["team"], "a b");
    assert_eq!(map["path"], "/var");
    assert!(parse_resource_attributes("k=%zz").is_err());
    assert!(parse_resource_attributes("novalue").is_err());
    assert!(
        parse_resource_attributes("")
            .expect("empty is fine")
            .is_empty()
    );

    let mut endpoints = test_endpoints();
    endpoints.env = Some(HashMap::from([(
        "OTEL_RESOURCE_ATTRIBUTES".to_string(),
        "deployment.environment=prod".to_string(),
    )]));
    assert_eq!(
        detect_with(&config(&["env"]), &endpoints)["deployment.environment"],
        "prod"
    );
    // Malformed: the detector fails and detects nothing.
    endpoints.env = Some(HashMap::from([(
        "OTEL_RESOURCE_ATTRIBUTES".to_string(),
        "broken".to_string(),
    )]));
    assert!(detect_with(&config(&["env"]), &endpoints).is_empty());
}

#[test]
fn system_detector_reads_fixture_files_and_honours_toggles() {
    let dir = temp_dir("system");
    std::fs::write(dir.join("machine-id"), "0123456789abcdef0123456789abcdef\n").expect("write");
    std::fs::write(
        dir.join("os-release"),
        "NAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nPRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\n",
    )
    .expect("write");
    let mut endpoints = test_endpoints();
    endpoints.machine_id_files = vec![
        "/nonexistent/first".into(),
        dir.join("machine-id").display().to_string(),
    ];
    endpoints.os_release_files = vec![
        "/nonexistent/os-release".into(),
        dir.join("os-release").display().to_string(),
    ];
    // os.version comes from gopsutil's reading of /etc: here os-release's VERSION_ID.
    endpoints.etc_dir = dir.display().to_string();
    let mut cfg = config(&["system"]);
    cfg.system.hostname_sources = vec!["os".into()];
    let map = as_map(&run_one(&cfg, &endpoints).expect("system detects"));
    // Defaults: host.name and os.type only.
    assert_eq!(map.keys().len(), 2, "{map:?}");
    assert!(!map["host.name"].is_empty());
    assert_eq!(map["os.type"], "linux");

    for name in ["host.id", "host.arch", "os.description", "os.version"] {
        cfg.system
            .resource_attributes
            .insert(name.into(), AttributeToggle { enabled: true });
    }
    cfg.system
        .resource_attributes
        .insert("os.type".into(), AttributeToggle { enabled: false });
    let map = as_map(&run_one(&cfg, &endpoints).expect("system detects"));
    assert_eq!(map["host.id"], "0123456789abcdef0123456789abcdef");
    assert!(
        ["amd64", "arm64"].contains(&map["host.arch"].as_str()) || !map["host.arch"].is_empty()
    );
    assert!(
        map["os.description"].starts_with("Ubuntu 22.04 (Linux "),
        "{}",
        map["os.description"]
    );
    assert_eq!(map["os.version"], "22.04");
    assert!(!map.contains_key("os.type"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn system_detector_reads_cpu_attributes_from_a_cpuinfo_fixture() {
    let dir = temp_dir("system-cpu");
    std::fs::write(
        dir.join("cpuinfo"),
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7R13 Processor\nstepping\t: 1\ncache size\t: 512 KB\n\n",
    )
    .expect("write");
    let mut endpoints = test_endpoints();
    endpoints.cpuinfo_file = dir.join("cpuinfo").display().to_string();
    let mut cfg = config(&["system"]);
    cfg.system.hostname_sources = vec!["os".into()];
    for name in [
        "host.cpu.vendor.id",
        "host.cpu.family",
        "host.cpu.model.id",
        "host.cpu.model.name",
        "host.cpu.stepping",
        "host.cpu.cache.l2.size",
        "host.ip",
        "host.mac",
    ] {
        cfg.system
            .resource_attributes
            .insert(name.into(), AttributeToggle { enabled: true });
    }
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    let found = run_one(&cfg, &endpoints).expect("system detects");
    let map = as_map(&found);
    assert_eq!(map["host.cpu.vendor.id"], "AuthenticAMD");
    assert_eq!(map["host.cpu.family"], "25");
    assert_eq!(map["host.cpu.model.id"], "1");
    assert_eq!(map["host.cpu.model.name"], "AMD EPYC 7R13 Processor");
    assert_eq!(map["host.cpu.stepping"], "1");
    let cache = found
        .iter()
        .find(|kv| kv.key == "host.cpu.cache.l2.size")
        .and_then(|kv| kv.value.as_ref()?.value.clone());
    assert_eq!(cache, Some(any_value::Value::IntValue(512)));
    // host.ip / host.mac are string arrays when this machine has a non-loopback
    // interface that is up; never a loopback address.
    for kv in found
        .iter()
        .filter(|kv| kv.key == "host.ip" || kv.key == "host.mac")
    {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::ArrayValue(list)) => assert!(!list.values.is_empty()),
            other => panic!("{} is {other:?}", kv.key),
        }
    }
    assert!(
        !map.get("host.ip")
            .is_some_and(|ips| ips.contains("\"127.0.0.1\""))
    );

    // No cpuinfo: the detector fails, as the Collector's does when gopsutil cannot read it.
    endpoints.cpuinfo_file = "/nonexistent/cpuinfo".into();
    let error = run_one(&cfg, &endpoints).expect_err("no cpuinfo");
    assert!(error.contains("/nonexistent/cpuinfo"), "{error}");
    // A malformed number fails it too.
    std::fs::write(dir.join("cpuinfo"), "processor : 0\nstepping : seven\n").expect("write");
    endpoints.cpuinfo_file = dir.join("cpuinfo").display().to_string();
    assert!(run_one(&cfg, &endpoints).is_err());
    // With the CPU attributes off, the file is not read at all.
    for name in CPU_NAMES {
        cfg.system
            .resource_attributes
            .insert((*name).into(), AttributeToggle { enabled: false });
    }
    let map = as_map(&run_one(&cfg, &endpoints).expect("cpuinfo unread"));
    assert!(!map.keys().any(|k| k.starts_with("host.cpu.")), "{map:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

const CPU_NAMES: &[&str] = &[
    "host.cpu.vendor.id",
    "host.cpu.family",
    "host.cpu.model.id",
    "host.cpu.model.name",
    "host.cpu.stepping",
    "host.cpu.cache.l2.size",
];

#[test]
fn os_description_without_uname_or_release() {
    assert_eq!(
        os_description("NAME=Alpine\nVERSION_ID=3.20\n", None),
        "Alpine 3.20"
    );
    assert_eq!(os_description("NAME=Alpine\n", None), "");
    assert_eq!(os_description("", None), "");
}

fn ec2_server() -> String {
    serve(Arc::new(|seen: &Seen| {
        match (seen.method.as_str(), seen.path.as_str()) {
        ("PUT", "/latest/api/token") if seen.headers.contains_key("x-aws-ec2-metadata-token-ttl-seconds") => (200, "TOKEN123".into()),
        // IMDSv2 only: every GET needs the session token.
        (_, _) if seen.headers.get("x-aws-ec2-metadata-token").map(String::as_str) != Some("TOKEN123") => (401, String::new()),
        ("GET", "/latest/dynamic/instance-identity/document") => (
            200,
            r#"{"accountId":"123456789012","architecture":"x86_64","availabilityZone":"eu-west-1b","imageId":"ami-0abc","instanceId":"i-0123","instanceType":"m5.large","region":"eu-west-1"}"#.into(),
        ),
        ("GET", "/latest/meta-data/hostname") => (200, "ip-10-0-0-1.eu-west-1.compute.internal".into()),
        _ => (404, String::new()),
    }
    }))
}

#[test]
fn ec2_detector_uses_imdsv2_against_a_local_server() {
    let mut endpoints = test_endpoints();
    endpoints.ec2 = ec2_server();
    let map = detect_with(&config(&["ec2"]), &endpoints);
    assert_eq!(map["cloud.provider"], "aws");
    assert_eq!(map["cloud.platform"], "aws_ec2");
    assert_eq!(map["cloud.region"], "eu-west-1");
    assert_eq!(map["cloud.availability_zone"], "eu-west-1b");
    assert_eq!(map["cloud.account.id"], "123456789012");
    assert_eq!(map["host.id"], "i-0123");
    assert_eq!(map["host.image.id"], "ami-0abc");
    assert_eq!(map["host.type"], "m5.large");
    assert_eq!(map["host.name"], "ip-10-0-0-1.eu-west-1.compute.internal");
    // A disabled attribute is left out.
    let mut cfg = config(&["ec2"]);
    cfg.ec2
        .resource_attributes
        .insert("host.name".into(), AttributeToggle { enabled: false });
    assert!(!detect_with(&cfg, &endpoints).contains_key("host.name"));
}

#[test]
fn gcp_detector_needs_the_metadata_flavor_header() {
    let mut endpoints = test_endpoints();
    endpoints.gcp = serve(Arc::new(|seen: &Seen| {
        if seen.headers.get("metadata-flavor").map(String::as_str) != Some("Google") {
            return (403, String::new());
        }
        match seen.path.as_str() {
            "/computeMetadata/v1/project/project-id" => (200, "my-project".into()),
            "/computeMetadata/v1/instance/zone" => {
                (200, "projects/1234/zones/us-central1-a".into())
            }
            "/computeMetadata/v1/instance/id" => (200, "4520031799277581759".into()),
            "/computeMetadata/v1/instance/name" => (200, "vm-1".into()),
            "/computeMetadata/v1/instance/attributes/cluster-location" => {
                (200, "europe-west4".into())
            }
            "/computeMetadata/v1/instance/attributes/cluster-name" => (200, "prod-cluster".into()),
            "/computeMetadata/v1/instance/machine-type" => {
                (200, "projects/1234/machineTypes/e2-medium".into())
            }
            _ => (404, String::new()),
        }
    }));
    let map = detect_with(&config(&["gcp"]), &endpoints);
    assert_eq!(map["cloud.provider"], "gcp");
    assert_eq!(map["cloud.platform"], "gcp_compute_engine");
    assert_eq!(map["cloud.account.id"], "my-project");
    assert_eq!(map["cloud.availability_zone"], "us-central1-a");
    assert_eq!(map["cloud.region"], "us-central1");
    assert_eq!(map["host.id"], "4520031799277581759");
    assert_eq!(map["host.name"], "vm-1");
    assert_eq!(map["host.type"], "e2-medium");
    // In a pod on GKE: the cluster, its location (a region here), no machine type.
    endpoints.env = Some(HashMap::from([(
        "KUBERNETES_SERVICE_HOST".to_string(),
        "10.0.0.1".to_string(),
    )]));
    let map = detect_with(&config(&["gcp"]), &endpoints);
    assert_eq!(map["cloud.platform"], "gcp_kubernetes_engine");
    assert_eq!(map["k8s.cluster.name"], "prod-cluster");
    assert_eq!(map["cloud.region"], "europe-west4");
    assert!(!map.contains_key("cloud.availability_zone"));
    assert!(!map.contains_key("host.type"));
    assert_eq!(map["host.name"], "vm-1");
}

#[test]
fn azure_detector_needs_the_metadata_header_and_adds_matching_tags() {
    let mut endpoints = test_endpoints();
    endpoints.azure = serve(Arc::new(|seen: &Seen| {
        if seen.headers.get("metadata").map(String::as_str) != Some("true") {
            return (400, String::new());
        }
        if !seen.path.starts_with("/metadata/instance/compute?") {
            return (404, String::new());
        }
        (
            200,
            r#"{"location":"westeurope","name":"vm-a","vmId":"02aab8a4-74ef","vmSize":"Standard_D2s_v3","subscriptionId":"sub-1","resourceGroupName":"rg-1","vmScaleSetName":"","zone":"1","tagsList":[{"name":"team","value":"core"},{"name":"cost","value":"42"}]}"#.into(),
        )
    }));
    let mut cfg = config(&["azure"]);
    cfg.azure.tags = vec!["^team$".into()];
    let map = detect_with(&cfg, &endpoints);
    assert_eq!(map["cloud.provider"], "azure");
    assert_eq!(map["cloud.platform"], "azure_vm");
    assert_eq!(map["cloud.region"], "westeurope");
    assert_eq!(map["host.id"], "02aab8a4-74ef");
    assert_eq!(map["azure.vm.size"], "Standard_D2s_v3");
    assert_eq!(map["azure.resourcegroup.name"], "rg-1");
    assert_eq!(map["azure.tag.team"], "core");
    assert!(!map.contains_key("azure.tag.cost"));
    assert!(
        !map.contains_key("azure.vm.scaleset.name"),
        "empty values are left out"
    );
}

#[test]
fn docker_detector_over_a_unix_socket() {
    let dir = temp_dir("docker");
    let socket = dir.join("docker.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind socket");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            if let Some(seen) = read_request(&mut stream) {
                let (status, body) = if seen.path == "/info" {
                    (200, r#"{"Name":"docker-host-1","OSType":"linux"}"#)
                } else {
                    (404, "")
                };
                answer(&mut stream, status, body);
            }
        }
    });
    let mut endpoints = test_endpoints();
    endpoints.docker_socket = socket.display().to_string();
    let map = detect_with(&config(&["docker"]), &endpoints);
    assert_eq!(map["host.name"], "docker-host-1");
    assert_eq!(map["os.type"], "linux");
    // No socket: nothing detected, and the reason names the socket.
    let err = run_one(&config(&["docker"]), &test_endpoints()).expect_err("no socket");
    assert!(err.contains("/nonexistent/docker.sock"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn k8snode_detector_needs_the_node_name_and_an_api_server() {
    let mut cfg = config(&["k8snode"]);
    let err = run_one(&cfg, &test_endpoints()).expect_err("no env");
    assert!(err.contains("K8S_NODE_NAME"), "{err}");
    let mut endpoints = test_endpoints();
    endpoints.env = Some(HashMap::from([(
        "K8S_NODE_NAME".to_string(),
        "node-7".to_string(),
    )]));
    let err = run_one(&cfg, &endpoints).expect_err("no API server");
    assert!(err.contains("KUBERNETES_SERVICE_HOST"), "{err}");
    // A reachable API server (plain HTTP here, auth_type none) gives the uid.
    endpoints.k8s_api = Some(serve(Arc::new(|seen: &Seen| match seen.path.as_str() {
        "/api/v1/nodes/node-7" => (
            200,
            r#"{"kind":"Node","metadata":{"name":"node-7","uid":"6f1c-uid"}}"#.into(),
        ),
        _ => (404, String::new()),
    })));
    cfg.k8snode.auth_type = "none".into();
    let map = as_map(&run_one(&cfg, &endpoints).expect("detects"));
    assert_eq!(map["k8s.node.name"], "node-7");
    assert_eq!(map["k8s.node.uid"], "6f1c-uid");
}

#[test]
fn unreachable_and_silent_endpoints_detect_nothing_within_the_timeout() {
    let mut endpoints = test_endpoints();
    endpoints.ec2 = silent_server();
    endpoints.env = Some(HashMap::from([(
        "OTEL_RESOURCE_ATTRIBUTES".to_string(),
        "a=1".to_string(),
    )]));
    let mut cfg = config(&["env", "ec2", "gcp", "azure"]);
    cfg.timeout = GoDuration::from_millis(300);
    let registry = Registry::new();
    let started = Instant::now();
    let detected = detect("resourcedetection/x", &cfg, &endpoints, Some(&registry));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        as_map(&detected.attributes),
        HashMap::from([("a".to_string(), "1".to_string())])
    );
    let text = registry.render_prometheus();
    assert!(
        text.contains("detector=\"ec2\",outcome=\"failure\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("detector=\"env\",outcome=\"success\"} 1"),
        "{text}"
    );
}

#[test]
fn earlier_detectors_win_when_two_find_the_same_attribute() {
    let mut endpoints = test_endpoints();
    endpoints.ec2 = ec2_server();
    endpoints.env = Some(HashMap::from([(
        "OTEL_RESOURCE_ATTRIBUTES".to_string(),
        "host.name=from-env".to_string(),
    )]));
    assert_eq!(
        detect_with(&config(&["env", "ec2"]), &endpoints)["host.name"],
        "from-env"
    );
    assert_eq!(
        detect_with(&config(&["ec2", "env"]), &endpoints)["host.name"],
        "ip-10-0-0-1.eu-west-1.compute.internal"
    );
}

fn attr(key: &str, value: &str) -> KeyValue {
    string_attribute(key, value)
}

#[test]
fn merge_follows_override_for_every_signal() {
    let detected = Detected {
        attributes: vec![attr("host.name", "detected"), attr("cloud.region", "eu")],
        failed: false,
        schema_url: String::new(),
    };
    let resource = || {
        Some(Resource {
            attributes: vec![attr("host.name", "original")],
            ..Default::default()
        })
    };

    let mut keep = ResourceDetectionProcessor::with_detected(
        "rd",
        &Config {
            override_: false,
            ..Config::default()
        },
        detected.clone(),
    );
    let batch = Batch::from_metrics(vec![
        ResourceMetrics {
            resource: resource(),
            ..Default::default()
        },
        ResourceMetrics::default(),
    ]);
    let mut out = keep.process(batch).expect("processed");
    let resources = out.metrics_mut().expect("metrics");
    let first = as_map(&resources[0].resource.as_ref().expect("resource").attributes);
    assert_eq!(first["host.name"], "original");
    assert_eq!(first["cloud.region"], "eu");
    // A batch without a resource gets one.
    assert_eq!(
        as_map(&resources[1].resource.as_ref().expect("resource").attributes)["host.name"],
        "detected"
    );

    let mut replace =
        ResourceDetectionProcessor::with_detected("rd", &Config::default(), detected.clone());
    let mut out = replace
        .process(Batch::from_traces(vec![ResourceSpans {
            resource: resource(),
            ..Default::default()
        }]))
        .expect("processed");
    let attrs = &out.traces_mut().expect("traces")[0]
        .resource
        .as_ref()
        .expect("resource")
        .attributes;
    assert_eq!(as_map(attrs)["host.name"], "detected");
    assert_eq!(attrs.len(), 2, "no duplicate keys");

    let logs = vec![ResourceLogs {
        resource: resource(),
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord::default()],
            ..Default::default()
        }],
        ..Default::default()
    }];
    let mut out = replace.process(Batch::from_logs(logs)).expect("processed");
    assert_eq!(out.items(), 1);
    let attrs = &out.logs_mut().expect("logs")[0]
        .resource
        .as_ref()
        .expect("resource")
        .attributes;
    assert_eq!(as_map(attrs)["cloud.region"], "eu");
    let _ = AnyValue::default();
}

#[test]
fn validation_names_every_problem() {
    let mut cfg = config(&["env", "eks"]);
    cfg.timeout = GoDuration::from_secs(0);
    cfg.system.hostname_sources = vec!["dns".into(), "magic".into()];
    cfg.k8snode.auth_type = "kubeConfig".into();
    cfg.ec2.tags = vec!["^team$".into()];
    cfg.system
        .resource_attributes
        .insert("os.name".into(), AttributeToggle { enabled: true });
    cfg.system
        .resource_attributes
        .insert("host.cpu.family".into(), AttributeToggle { enabled: true });
    cfg.gcp
        .resource_attributes
        .insert("nope".into(), AttributeToggle { enabled: true });
    let errors = cfg.validate();
    assert_eq!(errors.len(), 7, "{errors:#?}");
    assert!(errors[0].contains("\"eks\" is not a detector oxcol has"));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("system.resource_attributes.os.name"))
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("\"nope\" is not an attribute of the gcp detector"))
    );
    assert!(Config::default().validate().is_empty());
}

#[test]
fn config_decodes_collector_yaml_keys() {
    let cfg: Config = serde_json::from_value(serde_json::json!({
        "detectors": ["env", "system"],
        "override": false,
        "timeout": "2s",
        "refresh_interval": "10m",
        "system": {"hostname_sources": ["os"], "resource_attributes": {"host.id": {"enabled": true}}},
        "k8snode": {"node_from_env_var": "MY_NODE"}
    }))
    .expect("decodes");
    assert!(!cfg.override_);
    assert_eq!(cfg.timeout, GoDuration::from_secs(2));
    assert_eq!(cfg.refresh_interval, GoDuration::from_secs(600));
    assert_eq!(cfg.k8snode.auth_type, "serviceAccount");
    assert!(cfg.validate().is_empty());
    assert!(
        serde_json::from_value::<Config>(serde_json::json!({"detectors": [], "bogus": 1})).is_err()
    );
}

#[test]
fn ecs_detector_reads_task_metadata_v4_and_skips_outside_ecs() {
    // Outside ECS: success with nothing.
    assert!(
        run_one(&config(&["ecs"]), &test_endpoints())
            .expect("not on ECS is not an error")
            .is_empty()
    );
    let base = serve(Arc::new(|seen: &Seen| {
        match seen.path.as_str() {
        "/v4/abc/task" => (
            200,
            r#"{"Cluster":"prod","TaskARN":"arn:aws:ecs:us-west-2:111122223333:task/prod/158d1c8083dd49d6b527399fd6414f5c","Family":"checkout","Revision":"7","AvailabilityZone":"us-west-2a","LaunchType":"FARGATE",
               "Containers":[
                 {"DockerId":"self-1","Type":"NORMAL","KnownStatus":"RUNNING","LogDriver":"awslogs","LogOptions":{"awslogs-group":"/ecs/agent","awslogs-region":"us-west-2","awslogs-stream":"ecs/agent/1"}},
                 {"DockerId":"app-1","Type":"NORMAL","KnownStatus":"RUNNING","LogDriver":"awslogs","LogOptions":{"awslogs-group":"/ecs/app","awslogs-region":"us-west-2","awslogs-stream":"ecs/app/1"}},
                 {"DockerId":"init-1","Type":"NORMAL","KnownStatus":"STOPPED","LogDriver":"awslogs","LogOptions":{"awslogs-group":"/ecs/init","awslogs-region":"us-west-2","awslogs-stream":"x"}}]}"#
                .into(),
        ),
        "/v4/abc" => (200, r#"{"DockerId":"self-1","Name":"agent"}"#.into()),
        _ => (404, String::new()),
    }
    }));
    let mut endpoints = test_endpoints();
    endpoints.env = Some(HashMap::from([(
        "ECS_CONTAINER_METADATA_URI_V4".to_string(),
        format!("{base}/v4/abc"),
    )]));
    let attributes = run_one(&config(&["ecs"]), &endpoints).expect("detects");
    let map = as_map(&attributes);
    assert_eq!(map["cloud.provider"], "aws");
    assert_eq!(map["cloud.platform"], "aws_ecs");
    assert_eq!(map["cloud.region"], "us-west-2");
    assert_eq!(map["cloud.account.id"], "111122223333");
    assert_eq!(map["aws.ecs.task.id"], "158d1c8083dd49d6b527399fd6414f5c");
    assert_eq!(map["aws.ecs.task.family"], "checkout");
    assert_eq!(map["aws.ecs.task.revision"], "7");
    assert_eq!(
        map["aws.ecs.cluster.arn"],
        "arn:aws:ecs:us-west-2:111122223333:cluster/prod"
    );
    assert_eq!(map["aws.ecs.launchtype"], "fargate");
    assert_eq!(map["cloud.availability_zone"], "us-west-2a");
    // Log groups of the other running awslogs containers only (not our own, not stopped ones).
    let groups = attributes
        .iter()
        .find(|kv| kv.key == "aws.log.group.names")
        .expect("log groups");
    let Some(any_value::Value::ArrayValue(array)) =
        groups.value.as_ref().and_then(|v| v.value.as_ref())
    else {
        panic!("array expected");
    };
    assert_eq!(array.values.len(), 1);
    assert_eq!(
        array.values[0].value,
        Some(any_value::Value::StringValue("/ecs/app".into()))
    );
    assert!(
        map["aws.log.stream.arns"].contains(
            "arn:aws:logs:us-west-2:111122223333:log-group:/ecs/app:log-stream:ecs/app/1"
        )
    );
}

#[test]
fn refresh_interval_re_detects_in_the_background_and_keeps_the_last_good_result() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // GCE metadata whose instance name changes on every detection; from the third
    // detection on, the server fails.
    let detections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&detections);
    let mut endpoints = test_endpoints();
    endpoints.gcp = serve(Arc::new(move |seen: &Seen| {
        let n = if seen.path.ends_with("project/project-id") {
            counter.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            counter.load(Ordering::SeqCst)
        };
        if n >= 3 {
            return (500, String::new());
        }
        match seen.path.as_str() {
            "/computeMetadata/v1/project/project-id" => (200, "p".into()),
            "/computeMetadata/v1/instance/zone" => (200, "projects/1/zones/europe-west1-b".into()),
            "/computeMetadata/v1/instance/name" => (200, format!("vm-{n}")),
            _ => (200, "x".into()),
        }
    }));
    let mut cfg = config(&["gcp"]);
    cfg.refresh_interval = GoDuration::from_millis(1);
    let mut p = ResourceDetectionProcessor::with_endpoints("rd", &cfg, endpoints);
    assert_eq!(p.tick_interval(), Some(Duration::from_millis(1)));
    let host =
        |p: &ResourceDetectionProcessor| as_map(&p.detected().attributes).get("host.name").cloned();
    assert_eq!(host(&p).as_deref(), Some("vm-1"));
    let refresh = |p: &mut ResourceDetectionProcessor| {
        std::thread::sleep(Duration::from_millis(5));
        p.tick();
        let deadline = Instant::now() + Duration::from_secs(5);
        while p.refreshing() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    refresh(&mut p);
    assert_eq!(host(&p).as_deref(), Some("vm-2"));
    // The server now fails: the previous snapshot stays, and batches still get it.
    refresh(&mut p);
    assert_eq!(detections.load(Ordering::SeqCst), 3);
    assert_eq!(host(&p).as_deref(), Some("vm-2"));
    let mut out = p
        .process(Batch::from_metrics(vec![ResourceMetrics::default()]))
        .expect("processed");
    let attrs = &out.metrics_mut().expect("metrics")[0]
        .resource
        .as_ref()
        .expect("resource")
        .attributes;
    assert_eq!(as_map(attrs)["host.name"], "vm-2");
}

#[test]
fn aks_detector_in_a_pod_on_azure_and_nothing_elsewhere() {
    let mut cfg = config(&["aks"]);
    // Not in a pod: nothing, successfully (no traffic at all).
    assert!(
        run_one(&cfg, &test_endpoints())
            .expect("not on AKS is not an error")
            .is_empty()
    );
    let mut endpoints = test_endpoints();
    endpoints.env = Some(HashMap::from([(
        "KUBERNETES_SERVICE_HOST".to_string(),
        "10.0.0.1".to_string(),
    )]));
    // In a pod but no Azure metadata: nothing, successfully.
    assert!(run_one(&cfg, &endpoints).expect("not on Azure").is_empty());
    endpoints.azure = serve(Arc::new(|seen: &Seen| {
        if seen.headers.get("metadata").map(String::as_str) != Some("true") {
            return (400, String::new());
        }
        (200, r#"{"location":"westeurope","name":"aks-node-1","resourceGroupName":"MC_my-rg_my-cluster_westeurope"}"#.into())
    }));
    let map = as_map(&run_one(&cfg, &endpoints).expect("detects"));
    assert_eq!(map["cloud.provider"], "azure");
    assert_eq!(map["cloud.platform"], "azure_aks");
    assert!(!map.contains_key("k8s.cluster.name"), "off by default");
    cfg.aks
        .resource_attributes
        .insert("k8s.cluster.name".into(), AttributeToggle { enabled: true });
    assert_eq!(
        as_map(&run_one(&cfg, &endpoints).expect("detects"))["k8s.cluster.name"],
        "my-cluster"
    );
}

#[test]
fn env_parsing_follows_the_collectors_label_regex() {
    // A trailing comma is fine; a key may hold a comma; a value may hold '=' and '?'.
    let map = as_map(&parse_resource_attributes("a=1,").expect("trailing comma"));
    assert_eq!(map, HashMap::from([("a".to_string(), "1".to_string())]));
    let map = as_map(&parse_resource_attributes("a=1,b,c=2").expect("comma in key"));
    assert_eq!(map["b,c"], "2");
    let map = as_map(&parse_resource_attributes("url=https://x/p?q=1,e=").expect("valid"));
    assert_eq!(map["url"], "https://x/p?q=1");
    assert_eq!(map["e"], "");
    // A later duplicate replaces the value and keeps one entry.
    let attrs = parse_resource_attributes("d=1,d=2").expect("valid");
    assert_eq!(attrs.len(), 1);
    assert_eq!(as_map(&attrs)["d"], "2");
    // Text the regex cannot cover: non-ASCII, a key longer than 256 characters.
    assert!(parse_resource_attributes("k=caf\u{e9}").is_err());
    assert!(parse_resource_attributes(&format!("{}=v", "k".repeat(257))).is_err());
    assert!(parse_resource_attributes(&format!("{}=v", "k".repeat(256))).is_ok());
}

#[test]
fn env_detector_falls_back_to_otel_resource() {
    let mut endpoints = test_endpoints();
    endpoints.env = Some(HashMap::from([
        ("OTEL_RESOURCE_ATTRIBUTES".to_string(), "  ".to_string()),
        ("OTEL_RESOURCE".to_string(), "old=yes".to_string()),
    ]));
    assert_eq!(detect_with(&config(&["env"]), &endpoints)["old"], "yes");
    endpoints.env = Some(HashMap::from([
        (
            "OTEL_RESOURCE_ATTRIBUTES".to_string(),
            "new=yes".to_string(),
        ),
        ("OTEL_RESOURCE".to_string(), "old=yes".to_string()),
    ]));
    let map = detect_with(&config(&["env"]), &endpoints);
    assert_eq!(map["new"], "yes");
    assert!(!map.contains_key("old"));
}

#[test]
fn platform_version_reads_etc_as_gopsutil() {
    let dir = temp_dir("platform");
    let etc = dir.display().to_string();
    assert_eq!(detectors::platform_version(&etc), "");
    std::fs::write(dir.join("os-release"), "ID=debian\nVERSION_ID=\"12\"\n").expect("write");
    assert_eq!(detectors::platform_version(&etc), "12");
    // debian_version wins over os-release, unless lsb-release says Ubuntu.
    std::fs::write(dir.join("debian_version"), "12.11\n").expect("write");
    assert_eq!(detectors::platform_version(&etc), "12.11");
    std::fs::write(
        dir.join("lsb-release"),
        "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=\"24.04\"\n",
    )
    .expect("write");
    assert_eq!(detectors::platform_version(&etc), "24.04");
    for name in ["debian_version", "lsb-release"] {
        std::fs::remove_file(dir.join(name)).expect("remove");
    }
    std::fs::write(
        dir.join("redhat-release"),
        "Rocky Linux release 9.4 (Blue Onyx)\n",
    )
    .expect("write");
    assert_eq!(detectors::platform_version(&etc), "9.4");
    std::fs::remove_file(dir.join("redhat-release")).expect("remove");
    std::fs::write(dir.join("alpine-release"), "3.20.1\n").expect("write");
    assert_eq!(detectors::platform_version(&etc), "3.20.1");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn os_description_uses_name_version_and_full_uname() {
    let release = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
                   VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\n";
    assert_eq!(
        os_description(release, None),
        "Debian GNU/Linux 12 (bookworm)"
    );
    assert_eq!(
        os_description("PRETTY_NAME='Tiny \\$OS'\n# NAME=x\n", None),
        "Tiny $OS"
    );
    let mut endpoints = test_endpoints();
    let dir = temp_dir("description");
    std::fs::write(dir.join("os-release"), release).expect("write");
    endpoints.os_release_files = vec![dir.join("os-release").display().to_string()];
    let mut cfg = config(&["system"]);
    cfg.system.hostname_sources = vec!["os".into()];
    cfg.system
        .resource_attributes
        .insert("os.description".into(), AttributeToggle { enabled: true });
    let map = as_map(&run_one(&cfg, &endpoints).expect("system detects"));
    // `<release> (<sysname> <nodename> <release> <version> <machine>)`: the host name is
    // the uname node name, and the machine ends it.
    let description = &map["os.description"];
    assert!(
        description.starts_with(&format!(
            "Debian GNU/Linux 12 (bookworm) (Linux {} ",
            map["host.name"]
        )),
        "{description}"
    );
    assert!(description.ends_with(')'), "{description}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn system_detector_sets_empty_os_version_and_a_schema_url() {
    let mut cfg = config(&["env", "system"]);
    cfg.system.hostname_sources = vec!["os".into()];
    cfg.system
        .resource_attributes
        .insert("os.version".into(), AttributeToggle { enabled: true });
    let detected = detect("rd", &cfg, &test_endpoints(), None);
    let map = as_map(&detected.attributes);
    // No release file under the fixture /etc: the Collector still sets os.version to "".
    assert_eq!(map["os.version"], "");
    assert_eq!(detected.schema_url, detectors::SCHEMA_URL);
    // env alone gives no schema URL.
    let detected = detect("rd", &config(&["env"]), &test_endpoints(), None);
    assert_eq!(detected.schema_url, "");
}

#[test]
fn schema_url_is_set_only_where_the_resource_has_none() {
    let detected = Detected {
        attributes: Vec::new(),
        failed: false,
        schema_url: "https://opentelemetry.io/schemas/1.39.0".into(),
    };
    let mut processor =
        ResourceDetectionProcessor::with_detected("rd", &Config::default(), detected);
    let batch = Batch::from_traces(vec![
        ResourceSpans::default(),
        ResourceSpans {
            schema_url: "https://example.com/mine".into(),
            ..Default::default()
        },
    ]);
    let mut out = processor.process(batch).expect("processes");
    let spans = out.traces_mut().expect("traces");
    assert_eq!(
        spans[0].schema_url,
        "https://opentelemetry.io/schemas/1.39.0"
    );
    assert_eq!(spans[1].schema_url, "https://example.com/mine");
}
