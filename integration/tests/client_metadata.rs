//! Client request metadata through a multi-tenant gateway, black box: the real `oxcol`
//! binary with `include_metadata: true` on both OTLP protocols, a `batch` processor with
//! `metadata_keys: [x-tenant]`, and an `otlphttp` (or `otlp`) exporter whose
//! `headers_setter` sets `X-Scope-OrgID` from the batch's `x-tenant` (default `anonymous`).
//! The destination is a tiny HTTP (or gRPC) server in this test that records, for every
//! request, its `X-Scope-OrgID` and the tenants whose data it holds (each tenant's data is
//! marked by a resource attribute).
//!
//! Must hold: every request carries exactly one tenant's data, under that tenant's header;
//! data sent without `x-tenant` goes out as `anonymous`; nothing is lost.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use common::{bounded, free_port, oxcol_binary};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_integration::child::{ChildGuard, spawn_logged};
use prost::Message;

/// Points in each request sent to oxcol.
const POINTS: usize = 5;
/// Requests each sender sends.
const REQUESTS: usize = 6;

/// What the destination saw: per request, its X-Scope-OrgID (if any) and, per tenant
/// marker found in it, the points.
type Seen = Arc<Mutex<Vec<(Option<String>, BTreeMap<String, u64>)>>>;

/// One export request of `POINTS` gauge points whose resource is marked `marker`.
fn request(marker: &str) -> ExportMetricsServiceRequest {
    let points = (0..POINTS)
        .map(|i| NumberDataPoint {
            time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
            value: Some(number_data_point::Value::AsInt(i as i64)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "test.tenant".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(marker.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "requests".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: points,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Points per tenant marker (resource attribute `test.tenant`) in one request.
fn tally(request: &ExportMetricsServiceRequest) -> BTreeMap<String, u64> {
    let mut tenants: BTreeMap<String, u64> = BTreeMap::new();
    for resource in &request.resource_metrics {
        let marker = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "test.tenant")
            .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "unmarked".into());
        let points: usize = resource
            .scope_metrics
            .iter()
            .flat_map(|s| &s.metrics)
            .map(|m| match &m.data {
                Some(metric::Data::Gauge(g)) => g.data_points.len(),
                _ => 0,
            })
            .sum();
        *tenants.entry(marker).or_default() += points as u64;
    }
    tenants
}

/// The OTLP/HTTP destination: records each request, answers 200 with an empty response.
async fn record(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> &'static str {
    let org = headers
        .get("x-scope-orgid")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let tenants = match ExportMetricsServiceRequest::decode(body) {
        Ok(request) => tally(&request),
        Err(_) => BTreeMap::from([("undecodable".to_string(), 0)]),
    };
    seen.lock().unwrap().push((org, tenants));
    ""
}

/// The OTLP/gRPC destination: records each request's `x-scope-orgid` metadata and data.
struct GrpcDestination(Seen);

#[tonic::async_trait]
impl MetricsService for GrpcDestination {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let org = request
            .metadata()
            .get("x-scope-orgid")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let tenants = tally(request.get_ref());
        self.0.lock().unwrap().push((org, tenants));
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Starts the destination for `exporter` on a free port; returns the port and its task.
async fn start_destination(exporter: &str, seen: &Seen) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds the destination");
    let port = listener.local_addr().expect("an address").port();
    let seen = Arc::clone(seen);
    let task = if exporter == "otlp" {
        let service = MetricsServiceServer::new(GrpcDestination(seen));
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        })
    } else {
        let app = Router::new()
            .route("/v1/metrics", post(record))
            .with_state(seen);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })
    };
    (port, task)
}

/// Starts oxcol with `yaml` and waits until `ports` accept connections.
async fn start_oxcol(dir: &std::path::Path, yaml: &str, ports: &[u16]) -> ChildGuard {
    std::fs::create_dir_all(dir).expect("creates the temp dir");
    let config = dir.join("config.yaml");
    std::fs::write(&config, yaml).expect("writes the config");
    let mut guard = spawn_logged(
        Command::new(oxcol_binary()).arg("--config").arg(&config),
        &dir.join("oxcol.log"),
    );
    let deadline = Instant::now() + common::READY_TIMEOUT;
    'wait: loop {
        if let Ok(Some(status)) = guard.child_mut().try_wait() {
            panic!(
                "oxcol exited with {status}\n{yaml}\n{}",
                std::fs::read_to_string(dir.join("oxcol.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "oxcol not ready");
        for port in ports {
            if tokio::net::TcpStream::connect(("127.0.0.1", *port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue 'wait;
            }
        }
        return guard;
    }
}

/// Sends `REQUESTS` requests of `marker`'s data over gRPC, with `x-tenant: tenant` if set.
async fn send_grpc(port: u16, tenant: Option<&str>, marker: &str) {
    let mut client = MetricsServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .expect("connects over gRPC");
    for _ in 0..REQUESTS {
        let mut request = tonic::Request::new(request(marker));
        if let Some(tenant) = tenant {
            request
                .metadata_mut()
                .insert("x-tenant", tenant.parse().expect("a metadata value"));
        }
        client
            .export(request)
            .await
            .expect("oxcol accepts over gRPC");
    }
}

/// Sends `REQUESTS` requests of `marker`'s data over HTTP, with `X-Tenant: tenant` if set.
async fn send_http(port: u16, tenant: Option<&str>, marker: &str) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    for _ in 0..REQUESTS {
        let mut builder = http::Request::post(format!("http://127.0.0.1:{port}/v1/metrics"))
            .header("content-type", "application/x-protobuf");
        if let Some(tenant) = tenant {
            builder = builder.header("X-Tenant", tenant);
        }
        let body = http_body_util::Full::new(Bytes::from(request(marker).encode_to_vec()));
        let response = client
            .request(builder.body(body).expect("a request"))
            .await
            .expect("oxcol answers over HTTP");
        assert_eq!(response.status(), 200, "oxcol accepts over HTTP");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_is_batched_apart_and_sent_under_its_own_header() {
    bounded(Duration::from_secs(60), gateway("otlphttp")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_exporter_sends_each_tenant_under_its_own_metadata() {
    bounded(Duration::from_secs(60), gateway("otlp")).await;
}

/// Two tenants and tenant-less data over both protocols into the gateway config with
/// `exporter` (`otlphttp` or `otlp`), checked at the destination.
async fn gateway(exporter: &str) {
    let seen: Seen = Arc::default();
    let (destination, server) = start_destination(exporter, &seen).await;
    let scheme_endpoint = if exporter == "otlp" {
        format!("127.0.0.1:{destination}\n    tls:\n      insecure: true")
    } else {
        format!("http://127.0.0.1:{destination}")
    };

    let (grpc, http, metrics) = (free_port(), free_port(), free_port());
    // A long timeout and a large size: everything queued meanwhile is merged, so a
    // batch that mixed tenants would show.
    let yaml = format!(
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        include_metadata: true
      http:
        endpoint: 127.0.0.1:{http}
        include_metadata: true
processors:
  batch:
    timeout: 500ms
    send_batch_size: 100000
    metadata_keys: [x-tenant]
    metadata_cardinality_limit: 1000
extensions:
  headers_setter:
    headers:
      - action: upsert
        key: X-Scope-OrgID
        from_context: x-tenant
        default_value: anonymous
exporters:
  {exporter}:
    endpoint: {scheme_endpoint}
    compression: none
    auth:
      authenticator: headers_setter
    retry_on_failure:
      initial_interval: 100ms
service:
  extensions: [headers_setter]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [{exporter}]
"
    );
    let dir = std::env::temp_dir().join(format!(
        "oxcol-client-metadata-{exporter}-{}",
        std::process::id()
    ));
    let _oxcol = start_oxcol(&dir, &yaml, &[grpc, http, metrics]).await;

    // Two tenants on each protocol, and data without the header on each, at once.
    tokio::join!(
        send_grpc(grpc, Some("team-a"), "a-grpc"),
        send_http(http, Some("team-a"), "a-http"),
        send_grpc(grpc, Some("team-b"), "b-grpc"),
        send_http(http, Some("team-b"), "b-http"),
        send_grpc(grpc, None, "none-grpc"),
        send_http(http, None, "none-http"),
    );

    let expected_total = (6 * REQUESTS * POINTS) as u64;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let total: u64 = seen
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, t)| t.values())
            .sum();
        if total >= expected_total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.abort();

    let seen = seen.lock().unwrap().clone();
    let log = std::fs::read_to_string(dir.join("oxcol.log")).unwrap_or_default();
    let owner = |marker: &str| match marker {
        "a-grpc" | "a-http" => "team-a",
        "b-grpc" | "b-http" => "team-b",
        "none-grpc" | "none-http" => "anonymous",
        other => panic!("unexpected data {other:?} at the destination: {seen:?}"),
    };
    let mut points: BTreeMap<String, u64> = BTreeMap::new();
    for (org, tenants) in &seen {
        let owners: BTreeSet<&str> = tenants.keys().map(|m| owner(m)).collect();
        assert_eq!(
            owners.len(),
            1,
            "a request mixed tenants: {tenants:?} under {org:?}\nall: {seen:?}"
        );
        let owner = owners.into_iter().next().expect("one owner");
        assert_eq!(
            org.as_deref(),
            Some(owner),
            "a request of {owner} carried X-Scope-OrgID {org:?}: {tenants:?}"
        );
        for (marker, n) in tenants {
            *points.entry(marker.clone()).or_default() += n;
        }
    }
    let each = (REQUESTS * POINTS) as u64;
    for marker in [
        "a-grpc",
        "a-http",
        "b-grpc",
        "b-http",
        "none-grpc",
        "none-http",
    ] {
        assert_eq!(
            points.get(marker).copied().unwrap_or(0),
            each,
            "points of {marker} at the destination: {points:?}\nlog:\n{log}"
        );
    }
    // Batching did merge: far fewer requests than were sent in (36).
    assert!(
        seen.len() < 6 * REQUESTS,
        "expected merged batches, got {} requests",
        seen.len()
    );
    // The tenant values are secrets: never in the log.
    assert!(!log.contains("team-a") && !log.contains("team-b"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
