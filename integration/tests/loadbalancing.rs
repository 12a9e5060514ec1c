//! The `loadbalancing` exporter end to end: an agent (oxcol) in front of a tier of gateways
//! (real oxcol processes), each gateway sending to its own recording sink, so a test sees
//! which gateway received which service.
//!
//! Gateways send with `sending_queue.enabled: false`: a gateway acknowledges a batch only
//! once its sink has it, so "every point the agent's client got acknowledged arrives" is
//! checked end to end even when a gateway is killed with SIGKILL.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bounded, free_port, metric_sum, oxcol_binary};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use oxcol_core::Signal;
use oxcol_integration::child::{ChildGuard, spawn_logged};
use oxcol_integration::load::{self, LoadConfig, LoadSummary};
use oxcol_integration::otlp::RequestShape;
use oxcol_integration::sink::{self, RunningSink, SinkConfig};
use prost::Message;

/// 60 services per request (one resource each, one point each).
const SIXTY_SERVICES: RequestShape = RequestShape {
    resources: 60,
    metrics: 1,
    points: 1,
    attributes: 1,
};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "oxcol-lb-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("creates the temp dir");
    dir
}

/// An oxcol process started from a config file it can be told to reload (SIGHUP).
struct Process {
    guard: Option<ChildGuard>,
    dir: PathBuf,
    metrics_port: u16,
}

impl Process {
    /// Starts oxcol with `env` added to its environment; ready once `host:grpc_port`
    /// accepts connections and its self-metrics answer.
    async fn start_at(
        dir: &Path,
        yaml: &str,
        host: &str,
        grpc_port: u16,
        metrics_port: u16,
        env: &[(&str, &str)],
    ) -> Process {
        std::fs::write(dir.join("config.yaml"), yaml).expect("writes the config");
        let mut command = Command::new(oxcol_binary());
        command.arg("--config").arg(dir.join("config.yaml"));
        for (name, value) in env {
            command.env(name, value);
        }
        let guard = spawn_logged(&mut command, &dir.join("oxcol.log"));
        let mut process = Process {
            guard: Some(guard),
            dir: dir.to_path_buf(),
            metrics_port,
        };
        let deadline = Instant::now() + common::READY_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = process.guard.as_mut().map(|g| g.child_mut().try_wait())
            {
                panic!("oxcol exited at start with {status}:\n{}", process.log());
            }
            if tokio::net::TcpStream::connect((host, grpc_port))
                .await
                .is_ok()
                && process.metrics().await.is_some()
            {
                return process;
            }
            assert!(
                Instant::now() < deadline,
                "oxcol not ready:\n{}",
                process.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("oxcol.log")).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.guard.as_ref().map(ChildGuard::id).unwrap_or(0)
    }

    /// SIGKILL (ChildGuard kills with SIGKILL and reaps).
    fn kill(&mut self) {
        self.guard.take();
    }

    async fn metrics(&self) -> Option<String> {
        let address = format!("127.0.0.1:{}", self.metrics_port);
        let get = tokio::task::spawn_blocking(move || {
            oxcol_integration::net::http_get(&address, "/metrics")
        });
        match tokio::time::timeout(Duration::from_secs(5), get).await {
            Ok(Ok(Ok((200, body)))) => Some(body),
            _ => None,
        }
    }

    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.metrics().await.unwrap_or_default();
        metric_sum(&text, name, labels).unwrap_or(0.0)
    }

    /// Rewrites the config and sends SIGHUP; waits until the reload is counted as done.
    async fn reload(&self, yaml: &str) {
        let before = self
            .metric("oxcol_config_reloads", &[("outcome", "done")])
            .await;
        std::fs::write(self.dir.join("config.yaml"), yaml).expect("writes the config");
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.pid().to_string())
            .status()
            .expect("runs kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self
            .metric("oxcol_config_reloads", &[("outcome", "done")])
            .await
            <= before
        {
            assert!(
                Instant::now() < deadline,
                "reload not done:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let log = self.log();
        self.guard.take();
        if std::thread::panicking() {
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "---- {} ----\n{}",
                self.dir.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// A gateway: OTLP/gRPC in on a fixed address, out to its own recording sink.
struct Gateway {
    /// The loopback address it listens on (127.0.0.1 unless a test needs several
    /// gateways on one port, as Kubernetes endpoints share their ports).
    host: String,
    port: u16,
    /// `processors:` block of the gateway's config (empty: none).
    processors: String,
    sink: RunningSink,
    records: PathBuf,
    process: Option<Process>,
    dir: PathBuf,
}

impl Gateway {
    async fn start(name: &str) -> Gateway {
        Gateway::start_with(name, "").await
    }

    /// A gateway running `processors` (YAML of a `burnrate` processor, indented 2 spaces
    /// under `processors:`) in its pipeline.
    async fn start_with(name: &str, processors: &str) -> Gateway {
        Gateway::start_at(name, "127.0.0.1", free_port(), processors).await
    }

    /// A gateway listening on `host:port`.
    async fn start_at(name: &str, host: &str, port: u16, processors: &str) -> Gateway {
        let dir = temp_dir(name);
        let records = dir.join("records");
        let sink = sink::start(SinkConfig {
            record_dir: Some(records.clone()),
            ..SinkConfig::default()
        })
        .await
        .expect("starts the sink");
        let mut gateway = Gateway {
            host: host.to_string(),
            port,
            processors: processors.to_string(),
            sink,
            records,
            process: None,
            dir,
        };
        gateway.restart().await;
        gateway
    }

    fn yaml(&self, metrics_port: u16) -> String {
        let (processors, list) = if self.processors.is_empty() {
            (String::new(), "")
        } else {
            (
                format!("processors:\n{}", self.processors),
                "      processors: [burnrate]\n",
            )
        };
        format!(
            "{processors}receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {host}:{port}
exporters:
  otlp:
    endpoint: {sink}
    tls:
      insecure: true
    sending_queue:
      enabled: false
    retry_on_failure:
      initial_interval: 50ms
      max_interval: 200ms
      max_elapsed_time: 0s
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics_port}
  pipelines:
    metrics:
      receivers: [otlp]
{list}      exporters: [otlp]
",
            host = self.host,
            port = self.port,
            sink = self.sink.grpc_addr,
        )
    }

    async fn restart(&mut self) {
        let metrics_port = free_port();
        let yaml = self.yaml(metrics_port);
        self.process = Some(
            Process::start_at(&self.dir, &yaml, &self.host, self.port, metrics_port, &[]).await,
        );
    }

    fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn items(&self) -> u64 {
        self.sink.state.stats().metrics.items
    }

    /// Records received so far (files in the record dir).
    fn record_count(&self) -> usize {
        std::fs::read_dir(&self.records)
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// The service names in the records numbered `from..` (sequence order).
    fn services_since(&self, from: usize) -> BTreeSet<String> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.records)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.sort();
        let mut services = BTreeSet::new();
        for path in names.into_iter().skip(from) {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let Ok(request) = ExportMetricsServiceRequest::decode(bytes.as_slice()) else {
                continue;
            };
            for resource in request.resource_metrics {
                let service = resource
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| kv.value.as_ref())
                    .and_then(|v| match &v.value {
                        Some(
                            opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                                s,
                            ),
                        ) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                services.insert(service);
            }
        }
        services
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.process.take();
        self.sink.shutdown();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The agent config: OTLP in, loadbalancing out with `resolver` (indented 6 spaces) and
/// `extra` keys of `protocol.otlp` (indented 8 spaces).
fn agent_yaml(grpc_port: u16, metrics_port: u16, resolver: &str, extra: &str) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc_port}
exporters:
  loadbalancing:
    routing_key: service
    protocol:
      otlp:
        timeout: 2s
{extra}        tls:
          insecure: true
        retry_on_failure:
          initial_interval: 50ms
          max_interval: 300ms
          max_elapsed_time: 0s
    resolver:
{resolver}service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics_port}
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [loadbalancing]
"
    )
}

fn static_resolver(gateways: &[&Gateway]) -> String {
    let mut out = "      static:\n        hostnames:\n".to_string();
    for gateway in gateways {
        out.push_str(&format!("          - {}\n", gateway.endpoint()));
    }
    out
}

struct Agent {
    process: Process,
    grpc_port: u16,
}

async fn start_agent(resolver: &str, extra: &str) -> Agent {
    start_agent_with_env(resolver, extra, &[]).await
}

async fn start_agent_with_env(resolver: &str, extra: &str, env: &[(&str, &str)]) -> Agent {
    let (grpc_port, metrics_port) = (free_port(), free_port());
    let dir = temp_dir("agent");
    let process = Process::start_at(
        &dir,
        &agent_yaml(grpc_port, metrics_port, resolver, extra),
        "127.0.0.1",
        grpc_port,
        metrics_port,
        env,
    )
    .await;
    Agent { process, grpc_port }
}

impl Agent {
    fn yaml(&self, resolver: &str) -> String {
        agent_yaml(self.grpc_port, self.process.metrics_port, resolver, "")
    }

    fn load(&self, duration: Option<Duration>, total: Option<u64>, rate: f64) -> LoadConfig {
        LoadConfig {
            endpoint: format!("127.0.0.1:{}", self.grpc_port),
            signal: Signal::Metrics,
            shape: SIXTY_SERVICES,
            pool: 4,
            concurrency: 2,
            rate,
            duration,
            total_points: total,
            retry: true,
            request_timeout: Duration::from_secs(5),
            ..LoadConfig::default()
        }
    }
}

/// Waits until the gateways' sinks together hold at least `accepted` points.
async fn wait_delivered(gateways: &[&Gateway], accepted: u64, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let total: u64 = gateways.iter().map(|g| g.items()).sum();
        if total >= accepted || Instant::now() >= deadline {
            return total;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// service -> the gateways (by index) that received it in records from `marks` on.
fn owners(gateways: &[&Gateway], marks: &[usize]) -> BTreeMap<String, Vec<usize>> {
    let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, gateway) in gateways.iter().enumerate() {
        for service in gateway.services_since(marks[index]) {
            out.entry(service).or_default().push(index);
        }
    }
    out
}

fn marks(gateways: &[&Gateway]) -> Vec<usize> {
    gateways.iter().map(|g| g.record_count()).collect()
}

/// Each service on exactly one gateway; returns service -> gateway index.
fn sticky(owners: &BTreeMap<String, Vec<usize>>, phase: &str) -> BTreeMap<String, usize> {
    assert_eq!(
        owners.len(),
        60,
        "{phase}: not every service was seen: {owners:?}"
    );
    owners
        .iter()
        .map(|(service, on)| {
            assert_eq!(on.len(), 1, "{phase}: {service} reached gateways {on:?}");
            (service.clone(), on[0])
        })
        .collect()
}

fn accepted(summary: &LoadSummary) -> u64 {
    assert_eq!(summary.failed_points, 0, "{summary:?}");
    summary.accepted_points
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_lands_on_exactly_one_gateway() {
    bounded(Duration::from_secs(90), async {
        let gateways = [
            Gateway::start("gw1").await,
            Gateway::start("gw2").await,
            Gateway::start("gw3").await,
        ];
        let all: Vec<&Gateway> = gateways.iter().collect();
        let agent = start_agent(&static_resolver(&all), "").await;
        let summary = load::run(agent.load(None, Some(60 * 40), 0.0))
            .await
            .unwrap();
        let accepted = accepted(&summary);
        assert!(accepted >= 60 * 40);
        let delivered = wait_delivered(&all, accepted, Duration::from_secs(30)).await;
        assert_eq!(delivered, accepted, "every acknowledged point arrives once");
        let owners = sticky(&owners(&all, &[0, 0, 0]), "static");
        let per_gateway: BTreeSet<usize> = owners.values().copied().collect();
        assert_eq!(
            per_gateway.len(),
            3,
            "60 services should use all 3 gateways: {owners:?}"
        );
        let process = &agent.process;
        assert_eq!(
            process
                .metric(
                    "otelcol_loadbalancer_num_backends",
                    &[("resolver", "static")]
                )
                .await,
            3.0
        );
        assert_eq!(
            process
                .metric(
                    "otelcol_loadbalancer_num_resolutions",
                    &[("success", "true")]
                )
                .await,
            1.0
        );
        for gateway in &gateways {
            let ok = process
                .metric(
                    "otelcol_loadbalancer_backend_outcome",
                    &[("endpoint", &gateway.endpoint()), ("success", "true")],
                )
                .await;
            assert!(ok > 0.0, "no success recorded for {}", gateway.endpoint());
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_and_restarted_loses_nothing_acknowledged() {
    bounded(Duration::from_secs(120), async {
        let mut gateways = [
            Gateway::start("gw1").await,
            Gateway::start("gw2").await,
            Gateway::start("gw3").await,
        ];
        let agent = {
            let all: Vec<&Gateway> = gateways.iter().collect();
            start_agent(&static_resolver(&all), "").await
        };
        let load = tokio::spawn(load::run(agent.load(
            Some(Duration::from_secs(6)),
            None,
            3000.0,
        )));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before_kill = gateways[1].items();
        gateways[1].process.as_mut().expect("running").kill();
        tokio::time::sleep(Duration::from_secs(2)).await;
        gateways[1].restart().await;
        let summary = load.await.unwrap().unwrap();
        let accepted = accepted(&summary);
        let all: Vec<&Gateway> = gateways.iter().collect();
        let delivered = wait_delivered(&all, accepted, Duration::from_secs(60)).await;
        assert!(
            delivered >= accepted,
            "acknowledged {accepted}, delivered {delivered}"
        );
        let refused = agent
            .process
            .metric(
                "otelcol_loadbalancer_backend_outcome",
                &[("endpoint", &gateways[1].endpoint()), ("success", "false")],
            )
            .await;
        assert!(refused > 0.0, "the outage was never seen by the agent");
        assert!(
            gateways[1].items() > before_kill,
            "the restarted gateway got its share again"
        );
        // Stickiness held through the outage: data waited for its gateway.
        sticky(&owners(&all, &[0, 0, 0]), "kill and restart");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_3_to_5_to_2_under_load_moves_about_one_nth_and_loses_nothing() {
    bounded(Duration::from_secs(180), async {
        let mut gateways = Vec::new();
        for i in 0..5 {
            gateways.push(Gateway::start(&format!("gw{i}")).await);
        }
        let all: Vec<&Gateway> = gateways.iter().collect();
        let agent = start_agent(&static_resolver(&all[..3]), "").await;
        let load = tokio::spawn(load::run(agent.load(
            Some(Duration::from_secs(14)),
            None,
            3000.0,
        )));

        let phase = |marks: Vec<usize>| {
            let all = all.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                owners(&all, &marks)
            }
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let three = sticky(&phase(marks(&all)).await, "3 gateways");
        agent
            .process
            .reload(&agent.yaml(&static_resolver(&all)))
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let five = sticky(&phase(marks(&all)).await, "5 gateways");
        agent
            .process
            .reload(&agent.yaml(&static_resolver(&all[..2])))
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let two = sticky(&phase(marks(&all)).await, "2 gateways");

        // 3 -> 5: only services that moved to a new gateway moved; about 2/5 of them.
        let moved: Vec<&String> = three.keys().filter(|s| three[*s] != five[*s]).collect();
        for service in &moved {
            assert!(five[*service] >= 3, "{service} moved between old gateways");
        }
        let share = moved.len() as f64 / 60.0;
        eprintln!("3 -> 5 gateways: {} of 60 services moved", moved.len());
        assert!(
            (0.2..=0.6).contains(&share),
            "3 -> 5 moved {share:.2} of services (ideal 0.40)"
        );
        // 5 -> 2: services on the two kept gateways stay; about 3/5 move.
        let moved: Vec<&String> = five.keys().filter(|s| five[*s] != two[*s]).collect();
        for service in five.keys().filter(|s| five[*s] < 2) {
            assert_eq!(
                five[service], two[service],
                "{service} left a gateway that stayed"
            );
        }
        let share = moved.len() as f64 / 60.0;
        eprintln!("5 -> 2 gateways: {} of 60 services moved", moved.len());
        assert!(
            (0.4..=0.8).contains(&share),
            "5 -> 2 moved {share:.2} of services (ideal 0.60)"
        );

        let summary = load.await.unwrap().unwrap();
        let accepted = accepted(&summary);
        let delivered = wait_delivered(&all, accepted, Duration::from_secs(60)).await;
        assert!(
            delivered >= accepted,
            "acknowledged {accepted}, delivered {delivered}"
        );
        assert_eq!(
            agent
                .process
                .metric("otelcol_loadbalancer_num_backends", &[])
                .await,
            2.0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_resolver_follows_localhost() {
    bounded(Duration::from_secs(60), async {
        let gateway = Gateway::start("gw-dns").await;
        let resolver = format!(
            "      dns:\n        hostname: localhost\n        port: {}\n        interval: 200ms\n",
            gateway.port
        );
        let agent = start_agent(&resolver, "").await;
        let summary = load::run(agent.load(None, Some(60 * 20), 0.0))
            .await
            .unwrap();
        let accepted = accepted(&summary);
        let delivered = wait_delivered(&[&gateway], accepted, Duration::from_secs(30)).await;
        assert_eq!(delivered, accepted);
        let process = &agent.process;
        assert_eq!(
            process
                .metric("otelcol_loadbalancer_num_backends", &[("resolver", "dns")])
                .await,
            1.0
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while process
            .metric(
                "otelcol_loadbalancer_num_resolutions",
                &[("resolver", "dns"), ("success", "true")],
            )
            .await
            < 3.0
        {
            assert!(
                Instant::now() < deadline,
                "the name was not re-resolved every interval"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            process
                .metric(
                    "otelcol_loadbalancer_backend_outcome",
                    &[
                        ("endpoint", &format!("127.0.0.1:{}", gateway.port)),
                        ("success", "true")
                    ]
                )
                .await
                > 0.0,
            true
        );
    })
    .await;
}

const BURNRATE: &str = "  burnrate:
    period: 30d
    windows: [5m, 30m]
    slos:
      - name: availability
        objective: 0.99
        errors: {metric: http_requests_total, match: {code: \"5..\"}}
        total: {metric: http_requests_total}
        group_by: [service.name]
";

/// Batch `step` of the burn-rate traffic: 12 services, each with a cumulative
/// `http_requests_total` for code 200 and 500, one minute apart; service `s` fails
/// (s+1)% of its requests, more in the second half.
fn burnrate_batch(step: u64) -> ExportMetricsServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        metric, number_data_point,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let text = |key: &str, value: String| KeyValue {
        key: key.to_string(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
    };
    let start = 1_700_000_000_000_000_000u64;
    let resource_metrics = (0..12u64)
        .map(|s| {
            let total = 1000 * step;
            let errors = (s + 1) * 10 * step + if step > 10 { (step - 10) * 50 } else { 0 };
            let point = |code: &str, value: u64| NumberDataPoint {
                attributes: vec![text("code", code.to_string())],
                start_time_unix_nano: start,
                time_unix_nano: start + step * 60_000_000_000,
                value: Some(number_data_point::Value::AsInt(value as i64)),
                ..Default::default()
            };
            ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![text("service.name", format!("svc-{s}"))],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "http_requests_total".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: vec![point("200", total - errors), point("500", errors)],
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

/// (service, window) -> (timestamp, value) of the newest `slo.burn_rate` point the
/// gateways' sinks received.
fn burn_rates(gateways: &[&Gateway]) -> BTreeMap<(String, String), (u64, f64)> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
    let mut out: BTreeMap<(String, String), (u64, f64)> = BTreeMap::new();
    for gateway in gateways {
        let Ok(entries) = std::fs::read_dir(&gateway.records) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(bytes) = std::fs::read(entry.path()) else {
                continue;
            };
            let Ok(request) = ExportMetricsServiceRequest::decode(bytes.as_slice()) else {
                continue;
            };
            for resource in &request.resource_metrics {
                for metric in resource.scope_metrics.iter().flat_map(|s| &s.metrics) {
                    let Some(metric::Data::Gauge(gauge)) = &metric.data else {
                        continue;
                    };
                    if metric.name != "slo.burn_rate" {
                        continue;
                    }
                    for point in &gauge.data_points {
                        let label = |name: &str| {
                            point
                                .attributes
                                .iter()
                                .find(|kv| kv.key == name)
                                .and_then(|kv| kv.value.as_ref())
                                .and_then(|v| match &v.value {
                                    Some(Value::StringValue(s)) => Some(s.clone()),
                                    _ => None,
                                })
                                .unwrap_or_default()
                        };
                        let Some(number_data_point::Value::AsDouble(value)) = point.value else {
                            continue;
                        };
                        let key = (label("service.name"), label("slo.window"));
                        let newest = out.entry(key).or_insert((0, f64::NAN));
                        if point.time_unix_nano >= newest.0 {
                            *newest = (point.time_unix_nano, value);
                        }
                    }
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burnrate_behind_loadbalancing_matches_one_gateway() {
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
    bounded(Duration::from_secs(120), async {
        let tier = [
            Gateway::start_with("br1", BURNRATE).await,
            Gateway::start_with("br2", BURNRATE).await,
            Gateway::start_with("br3", BURNRATE).await,
        ];
        let single = Gateway::start_with("br-single", BURNRATE).await;
        let tier_refs: Vec<&Gateway> = tier.iter().collect();
        // One consumer: batches reach each gateway in the order they were sent.
        let agent = start_agent(
            &static_resolver(&tier_refs),
            "        sending_queue:\n          num_consumers: 1\n",
        )
        .await;
        let connect = |endpoint: String| async move {
            MetricsServiceClient::connect(format!("http://{endpoint}"))
                .await
                .expect("connects")
        };
        let mut to_agent = connect(format!("127.0.0.1:{}", agent.grpc_port)).await;
        let mut to_single = connect(single.endpoint()).await;
        for step in 1..=20 {
            let batch = burnrate_batch(step);
            to_agent
                .export(batch.clone())
                .await
                .expect("the agent accepts");
            to_single
                .export(batch)
                .await
                .expect("the single gateway accepts");
            // Wait until the tier has this step (its services' points are in order).
            let want = step * 24;
            let deadline = Instant::now() + Duration::from_secs(20);
            while tier.iter().map(|g| g.items()).sum::<u64>() < want {
                assert!(
                    Instant::now() < deadline,
                    "step {step} did not reach the tier"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let last_step = 1_700_000_000_000_000_000u64 + 20 * 60_000_000_000;
        let expected = {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let rates = burn_rates(&[&single]);
                if rates.len() == 24 && rates.values().all(|(ts, _)| *ts == last_step) {
                    break rates;
                }
                assert!(
                    Instant::now() < deadline,
                    "the single gateway gave {rates:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = burn_rates(&tier_refs);
            if got == expected || Instant::now() >= deadline {
                let differences: Vec<_> = expected
                    .iter()
                    .filter(|(k, v)| {
                        got.get(*k)
                            .is_none_or(|g| g.0 != v.0 || (g.1 - v.1).abs() > 1e-9)
                    })
                    .collect();
                assert!(
                    differences.is_empty(),
                    "tier differs from one gateway at {differences:?}\ntier: {got:?}"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The tier really was a tier: the services spread over the three gateways.
        let owners = owners(&tier_refs, &[0, 0, 0]);
        let used: BTreeSet<usize> = owners.values().flatten().copied().collect();
        assert!(used.len() >= 2, "{owners:?}");
        assert!(
            expected.values().any(|(_, v)| *v > 1.0),
            "no service burns budget: {expected:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_gateway_leaving_the_ring_with_data_queued_for_it_loses_nothing() {
    bounded(Duration::from_secs(120), async {
        let mut gateways = [
            Gateway::start("gw1").await,
            Gateway::start("gw2").await,
            Gateway::start("gw3").await,
        ];
        let agent = {
            let all: Vec<&Gateway> = gateways.iter().collect();
            start_agent(&static_resolver(&all), "").await
        };
        let mut load = agent.load(Some(Duration::from_secs(4)), None, 3000.0);
        // The reload below pauses the receiver while the old exporter drains.
        load.request_timeout = Duration::from_secs(30);
        let load = tokio::spawn(load::run(load));
        tokio::time::sleep(Duration::from_secs(1)).await;
        gateways[2].process.as_mut().expect("running").kill();
        // A forward the gateway had under way may still land in its sink just after the
        // kill; nothing can come later.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let at_kill = gateways[2].items();
        tokio::time::sleep(Duration::from_secs(1)).await;
        // gw3 leaves the ring while the agent holds data for it (retrying).
        let remaining: Vec<&Gateway> = gateways[..2].iter().collect();
        agent
            .process
            .reload(&agent.yaml(&static_resolver(&remaining)))
            .await;
        let summary = load.await.unwrap().unwrap();
        let accepted = summary.accepted_points;
        let all: Vec<&Gateway> = gateways.iter().collect();
        let delivered = wait_delivered(&all, accepted, Duration::from_secs(60)).await;
        assert!(
            delivered >= accepted,
            "acknowledged {accepted}, delivered {delivered}"
        );
        assert_eq!(
            gateways[2].items(),
            at_kill,
            "the dead gateway got data after its death"
        );
        let rerouted = agent
            .process
            .metric("oxcol_loadbalancer_rerouted_items", &[])
            .await;
        assert!(rerouted > 0.0, "nothing was routed again");
    })
    .await;
}

/// A port free on every one of `hosts` (Kubernetes endpoints of one Service share their
/// ports, so the gateways differ by address, not by port).
fn free_port_on(hosts: &[&str]) -> u16 {
    for _ in 0..100 {
        let port = free_port();
        if hosts
            .iter()
            .all(|host| std::net::TcpListener::bind((*host, port)).is_ok())
        {
            return port;
        }
    }
    panic!("no port free on all of {hosts:?}");
}

/// The EndpointSlice of the `gateways` Service with `ready` and `not_ready` endpoints.
///
/// kube-apiserver refuses loopback IPs in IPv4 slices (`ValidateEndpointIP`), and the
/// gateways can only listen on loopback here, so the slice's `addressType` is FQDN with the
/// gateways' addresses written as names: `resolver.k8s` reads every address whatever its
/// type, as the Collector's does, so the ring names are the same `127.0.0.x:port`.
fn gateway_slice(ready: &[&str], not_ready: &[&str], port: u16) -> serde_json::Value {
    let endpoint = |address: &&str, ready: bool| serde_json::json!({"addresses": [address], "conditions": {"ready": ready}});
    let endpoints: Vec<serde_json::Value> = ready
        .iter()
        .map(|a| endpoint(a, true))
        .chain(not_ready.iter().map(|a| endpoint(a, false)))
        .collect();
    serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "gateways-1",
            "labels": {
                "kubernetes.io/service-name": "gateways",
                "endpointslice.kubernetes.io/managed-by": "oxcol-integration-test"
            }
        },
        "addressType": "FQDN",
        "endpoints": endpoints,
        "ports": [{"name": "otlp-grpc", "protocol": "TCP", "port": port}]
    })
}

/// Waits until the agent's ring has `backends` backends after at least `updates` ring
/// updates; returns how long that took.
async fn wait_ring(agent: &Agent, backends: f64, updates: f64, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let process = &agent.process;
        let now = process
            .metric("otelcol_loadbalancer_num_backends", &[("resolver", "k8s")])
            .await;
        let done = process
            .metric(
                "otelcol_loadbalancer_num_backend_updates",
                &[("resolver", "k8s")],
            )
            .await;
        if now == backends && done >= updates {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "the ring did not reach {backends} backends ({updates} updates) within {limit:?}: \
             {now} backends, {done} updates\n{}",
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `resolver.k8s` against a real kube-apiserver + etcd: the ring is the ready endpoints of
/// the Service's EndpointSlice (x its port), each service lands on one gateway, and when
/// the slice is PATCHed (a gateway that died leaves, a new one joins) the ring follows
/// within seconds and the data held for the dead gateway is routed again: nothing
/// acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k8s_resolver_follows_the_services_endpointslices() {
    use oxcol_integration::kube::{KubeApiServer, KubeOptions};
    bounded(Duration::from_secs(240), async {
        let cluster = KubeApiServer::start(KubeOptions::default())
            .await
            .expect("starts etcd and kube-apiserver");
        let admin = cluster.admin();
        admin
            .create_namespace("telemetry", &[])
            .await
            .expect("namespace");
        let hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
        let port = free_port_on(&hosts);
        let mut gateways = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            gateways.push(Gateway::start_at(&format!("gw-k8s{i}"), host, port, "").await);
        }
        admin
            .post(
                "/api/v1/namespaces/telemetry/services",
                &serde_json::json!({
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "gateways"},
                    "spec": {"clusterIP": "None", "ports": [{"name": "otlp-grpc", "port": port}]}
                }),
            )
            .await
            .expect("creates the Service");
        let slices = "/apis/discovery.k8s.io/v1/namespaces/telemetry/endpointslices";
        // gw0 and gw1 ready; 127.0.0.5 (nobody listens there) not ready: never a backend.
        admin
            .post(slices, &gateway_slice(&hosts[..2], &["127.0.0.5"], port))
            .await
            .expect("creates the EndpointSlice");

        let kubeconfig = cluster
            .write_kubeconfig("agent", oxcol_integration::kube::ADMIN_TOKEN)
            .expect("kubeconfig");
        let resolver =
            format!("      k8s:\n        service: gateways.telemetry\n        ports: [{port}]\n");
        let agent = start_agent_with_env(
            &resolver,
            "",
            &[("KUBECONFIG", kubeconfig.to_str().expect("utf-8 path"))],
        )
        .await;
        wait_ring(&agent, 2.0, 1.0, Duration::from_secs(20)).await;

        // Phase 1: each of the 60 services on exactly one of the two ready gateways.
        let summary = load::run(agent.load(None, Some(60 * 20), 0.0))
            .await
            .unwrap();
        let first = accepted(&summary);
        let phase_one: Vec<&Gateway> = gateways.iter().collect();
        let delivered = wait_delivered(&phase_one, first, Duration::from_secs(30)).await;
        assert_eq!(delivered, first, "every acknowledged point arrives once");
        let two = sticky(&owners(&phase_one, &[0, 0, 0]), "gw0 + gw1");
        let used: BTreeSet<usize> = two.values().copied().collect();
        assert_eq!(used, BTreeSet::from([0, 1]), "{two:?}");
        for gateway in &gateways[..2] {
            let ok = agent
                .process
                .metric(
                    "otelcol_loadbalancer_backend_outcome",
                    &[("endpoint", &gateway.endpoint()), ("success", "true")],
                )
                .await;
            assert!(ok > 0.0, "no success recorded for {}", gateway.endpoint());
        }

        // Phase 2, under load: gw0 dies (its data waits, retrying), then the slice is
        // PATCHed to gw1 + gw2, as the EndpointSlice controller would.
        let load = tokio::spawn(load::run(agent.load(
            Some(Duration::from_secs(6)),
            None,
            2000.0,
        )));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        gateways[0].process.as_mut().expect("running").kill();
        // A forward gw0 had under way may still land in its sink just after the kill.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let at_kill = gateways[0].items();
        let all: Vec<&Gateway> = gateways.iter().collect();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let updates = agent
            .process
            .metric(
                "otelcol_loadbalancer_num_backend_updates",
                &[("resolver", "k8s")],
            )
            .await;
        admin
            .patch(
                &format!("{slices}/gateways-1"),
                &gateway_slice(&hosts[1..], &["127.0.0.5"], port),
            )
            .await
            .expect("patches the EndpointSlice");
        let followed = wait_ring(&agent, 2.0, updates + 1.0, Duration::from_secs(10)).await;
        eprintln!("the ring followed the EndpointSlice PATCH in {followed:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after_patch = marks(&all);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let moved = sticky(&owners(&all, &after_patch), "gw1 + gw2");
        let used: BTreeSet<usize> = moved.values().copied().collect();
        assert_eq!(used, BTreeSet::from([1, 2]), "{moved:?}");

        let summary = load.await.unwrap().unwrap();
        let second = accepted(&summary);
        let delivered = wait_delivered(&all, first + second, Duration::from_secs(60)).await;
        assert!(
            delivered >= first + second,
            "acknowledged {}, delivered {delivered}",
            first + second
        );
        assert_eq!(gateways[0].items(), at_kill, "the dead gateway got data");
        let rerouted = agent
            .process
            .metric("oxcol_loadbalancer_rerouted_items", &[])
            .await;
        assert!(rerouted > 0.0, "the data held for gw0 was not routed again");
        let failed = agent
            .process
            .metric(
                "otelcol_loadbalancer_num_resolutions",
                &[("resolver", "k8s"), ("success", "false")],
            )
            .await;
        assert_eq!(
            failed,
            0.0,
            "a list or watch failed:\n{}",
            agent.process.log()
        );
    })
    .await;
}

/// The RBAC documented in docs/components/loadbalancing.md is enough, and its absence is
/// visible: under `--authorization-mode=RBAC` an agent whose user has no grant is refused
/// (403, counted as failed resolutions, empty ring); once the documented Role (get, list,
/// watch on `endpointslices`) is bound to it, the ring fills without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k8s_resolver_needs_only_the_documented_rbac() {
    use oxcol_integration::kube::{KubeApiServer, KubeOptions, KubeUser};
    const AGENT_TOKEN: &str = "oxcol-lb-agent-token";
    bounded(Duration::from_secs(180), async {
        let cluster = KubeApiServer::start(KubeOptions {
            rbac: true,
            users: vec![KubeUser::new("oxcol-agent", AGENT_TOKEN, &[])],
            ..KubeOptions::default()
        })
        .await
        .expect("starts etcd and kube-apiserver");
        let admin = cluster.admin();
        admin
            .create_namespace("telemetry", &[])
            .await
            .expect("namespace");
        let hosts = ["127.0.0.2", "127.0.0.3"];
        let port = free_port_on(&hosts);
        admin
            .post(
                "/apis/discovery.k8s.io/v1/namespaces/telemetry/endpointslices",
                &gateway_slice(&hosts, &[], port),
            )
            .await
            .expect("creates the EndpointSlice");
        let kubeconfig = cluster
            .write_kubeconfig("oxcol-agent", AGENT_TOKEN)
            .expect("kubeconfig");
        let resolver =
            format!("      k8s:\n        service: gateways.telemetry\n        ports: [{port}]\n");
        let agent = start_agent_with_env(
            &resolver,
            "",
            &[("KUBECONFIG", kubeconfig.to_str().expect("utf-8 path"))],
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while agent
            .process
            .metric(
                "otelcol_loadbalancer_num_resolutions",
                &[("resolver", "k8s"), ("success", "false")],
            )
            .await
            == 0.0
        {
            assert!(
                Instant::now() < deadline,
                "no refused list counted:\n{}",
                agent.process.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            agent.process.log().contains("grant get, list and watch"),
            "the 403 warning names the fix:\n{}",
            agent.process.log()
        );
        assert_eq!(
            agent
                .process
                .metric("otelcol_loadbalancer_num_backends", &[("resolver", "k8s")])
                .await,
            0.0
        );

        // The Role and RoleBinding of the docs (bound to this user instead of a service
        // account: there is no service-account controller here).
        let rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/telemetry";
        admin
            .post(
                &format!("{rbac}/roles"),
                &serde_json::json!({
                    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                    "metadata": {"name": "oxcol-loadbalancing"},
                    "rules": [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                               "verbs": ["get", "list", "watch"]}]
                }),
            )
            .await
            .expect("creates the Role");
        admin
            .post(
                &format!("{rbac}/rolebindings"),
                &serde_json::json!({
                    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                    "metadata": {"name": "oxcol-loadbalancing"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                "name": "oxcol-loadbalancing"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                  "name": "oxcol-agent"}]
                }),
            )
            .await
            .expect("creates the RoleBinding");
        // The back-off doubles from 0.5 s to at most 30 s: bounded by one full step.
        let took = wait_ring(&agent, 2.0, 1.0, Duration::from_secs(45)).await;
        eprintln!("the ring filled {took:?} after the RoleBinding");
    })
    .await;
}
