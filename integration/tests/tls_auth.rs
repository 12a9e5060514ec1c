//! TLS, mTLS, authentication and slow-client limits, black-box against target/debug/oxcol.
//!
//! Certificates are made at test time with rcgen: a CA, a server certificate for
//! 127.0.0.1/localhost, a client certificate, an expired server certificate, and a second
//! CA with its own client certificate. Clients are tonic/hyper over rustls (through
//! `oxcol_core::tls`, the same code the exporters use; the servers' side is rustls too).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{bounded, free_port, metric_sum, oxcol_binary, start_sink, wait_sink};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use oxcol_core::Signal;
use oxcol_core::tls::{GrpcTlsConnector, TlsClientConfig, TlsServerConfig};
use oxcol_integration::child::ChildGuard;
use oxcol_integration::otlp::{RequestShape, request_pool};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use tokio::io::AsyncWriteExt;

const SHAPE: RequestShape = RequestShape {
    resources: 1,
    metrics: 2,
    points: 5,
    attributes: 2,
};
const TOKEN: &str = "tok-3b1f9c2e-never-in-logs";

/// PEM files of one test run.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    dir: &Path,
    name: &str,
    issuer: &CertifiedIssuer<'static, KeyPair>,
    server: bool,
    expired: bool,
) {
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
}

fn make_pki(tag: &str) -> Pki {
    let dir = std::env::temp_dir().join(format!("oxcol-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let main_ca = ca("oxcol test CA");
    let other_ca = ca("another CA");
    std::fs::write(dir.join("ca.pem"), main_ca.pem()).unwrap();
    std::fs::write(dir.join("other-ca.pem"), other_ca.pem()).unwrap();
    leaf(&dir, "server", &main_ca, true, false);
    leaf(&dir, "expired", &main_ca, true, true);
    leaf(&dir, "client", &main_ca, false, false);
    leaf(&dir, "stranger", &other_ca, false, false);
    Pki { dir }
}

/// One oxcol child with a config written to a temp dir; its log is stderr+stdout.
struct Proc {
    _guard: ChildGuard,
    dir: PathBuf,
    metrics_port: u16,
}

impl Proc {
    async fn start(tag: &str, yaml: &str, wait_ports: &[u16]) -> Proc {
        let dir = std::env::temp_dir().join(format!("oxcol-tlsauth-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let metrics_port = free_port();
        let yaml = format!(
            "{yaml}  telemetry:\n    logs:\n      level: debug\n    metrics:\n      address: 127.0.0.1:{metrics_port}\n"
        );
        std::fs::write(dir.join("config.yaml"), &yaml).unwrap();
        let log = std::fs::File::create(dir.join("oxcol.log")).unwrap();
        let child = Command::new(oxcol_binary())
            .arg("--config")
            .arg(dir.join("config.yaml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starts oxcol");
        let mut guard = ChildGuard::new(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        'wait: loop {
            if let Ok(Some(status)) = guard.child_mut().try_wait() {
                panic!(
                    "oxcol exited with {status}\n{yaml}\n{}",
                    std::fs::read_to_string(dir.join("oxcol.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "oxcol not ready\n{}",
                std::fs::read_to_string(dir.join("oxcol.log")).unwrap_or_default()
            );
            for port in wait_ports.iter().chain([&metrics_port]) {
                if tokio::net::TcpStream::connect(("127.0.0.1", *port))
                    .await
                    .is_err()
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue 'wait;
                }
            }
            break;
        }
        Proc {
            _guard: guard,
            dir,
            metrics_port,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("oxcol.log")).unwrap_or_default()
    }

    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let uri: http::Uri = format!("http://127.0.0.1:{}/metrics", self.metrics_port)
            .parse()
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
            .await
            .unwrap()
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        metric_sum(&String::from_utf8_lossy(&body), name, labels).unwrap_or(0.0)
    }
}

fn tls_client(pki: &Pki, ca: &str, client_cert: Option<&str>) -> TlsClientConfig {
    TlsClientConfig {
        ca_file: Some(pki.path(ca)),
        cert_file: client_cert.map(|c| pki.path(&format!("{c}.pem"))),
        key_file: client_cert.map(|c| pki.path(&format!("{c}-key.pem"))),
        ..Default::default()
    }
}

/// One OTLP/gRPC metrics export; Err carries the status or transport error text.
async fn grpc_export(
    port: u16,
    tls: Option<&TlsClientConfig>,
    token: Option<&str>,
) -> Result<(), tonic::Status> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5));
    let channel = match tls {
        Some(tls) => {
            let connector = GrpcTlsConnector::new(tls, Duration::from_secs(3)).unwrap();
            endpoint
                .connect_with_connector(connector)
                .await
                .map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?
        }
        None => endpoint
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?,
    };
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("ready: {e:?}")))?;
    let body = request_pool(Signal::Metrics, SHAPE, 1).remove(0);
    let mut request = tonic::Request::new(body);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    );
    grpc.unary(
        request,
        path,
        oxcol_core::grpc::RawCodec::<Bytes>::default(),
    )
    .await
    .map(|_| ())
}

/// One OTLP/HTTP protobuf metrics export; Ok(status) or Err(transport error).
async fn http_export(
    url: &str,
    tls: Option<&TlsClientConfig>,
    authorization: Option<&str>,
) -> Result<u16, String> {
    let connector = oxcol_core::tls::https_connector(tls, Duration::from_secs(3))?;
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector);
    let body = request_pool(Signal::Metrics, SHAPE, 1).remove(0);
    let mut request = http::Request::post(url).header("content-type", "application/x-protobuf");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let request = request.body(Full::new(body)).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    Ok(response.status().as_u16())
}

/// oxcol A (TLS gRPC + HTTP in) exports over mTLS + bearer token to oxcol B (TLS gRPC in,
/// client_ca_file, bearertokenauth), which exports in plaintext to the sink.
#[tokio::test]
async fn tls_in_and_mtls_out_through_two_collectors() {
    bounded(Duration::from_secs(60), async {
        let pki = make_pki("chain");
        let sink = start_sink().await;
        let (b_grpc, a_grpc, a_http) = (free_port(), free_port(), free_port());
        let server_tls = format!("        tls:\n          cert_file: {}\n          key_file: {}\n", pki.path("server.pem"), pki.path("server-key.pem"));
        let b = Proc::start(
            "b",
            &format!(
                "extensions:\n  bearertokenauth/in:\n    token: {TOKEN}\nreceivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{b_grpc}\n{server_tls}          client_ca_file: {ca}\n        auth:\n          authenticator: bearertokenauth/in\nexporters:\n  otlp:\n    endpoint: {sink}\n    tls:\n      insecure: true\nservice:\n  extensions: [bearertokenauth/in]\n  pipelines:\n    metrics:\n      receivers: [otlp]\n      exporters: [otlp]\n",
                ca = pki.path("ca.pem"),
                sink = sink.grpc_addr,
            ),
            &[b_grpc],
        )
        .await;
        let a = Proc::start(
            "a",
            &format!(
                "extensions:\n  bearertokenauth/out:\n    token: {TOKEN}\nreceivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{a_grpc}\n{server_tls}      http:\n        endpoint: 127.0.0.1:{a_http}\n{server_tls}exporters:\n  otlp:\n    endpoint: https://localhost:{b_grpc}\n    tls:\n      ca_file: {ca}\n      cert_file: {cert}\n      key_file: {key}\n    auth:\n      authenticator: bearertokenauth/out\nservice:\n  extensions: [bearertokenauth/out]\n  pipelines:\n    metrics:\n      receivers: [otlp]\n      exporters: [otlp]\n",
                ca = pki.path("ca.pem"),
                cert = pki.path("client.pem"),
                key = pki.path("client-key.pem"),
            ),
            &[a_grpc, a_http],
        )
        .await;
        let trusting = tls_client(&pki, "ca.pem", None);
        grpc_export(a_grpc, Some(&trusting), None).await.expect("TLS gRPC export to A");
        let status = http_export(&format!("https://localhost:{a_http}/v1/metrics"), Some(&trusting), None).await.expect("TLS HTTP export to A");
        assert_eq!(status, 200);
        let stats = wait_sink(&sink, Duration::from_secs(15), |s| s.signal(Signal::Metrics).items >= 20).await;
        assert_eq!(stats.signal(Signal::Metrics).items, 20, "both requests crossed A -> (mTLS + token) -> B -> sink\nA:\n{}\nB:\n{}", a.log(), b.log());
        assert_eq!(b.metric("oxcol_receiver_rejected_requests", &[("reason", "unauthenticated")]).await, 0.0);
        for log in [a.log(), b.log()] {
            assert!(!log.contains(TOKEN), "the token leaked into a log:\n{log}");
        }
        let _ = std::fs::remove_dir_all(&pki.dir);
    })
    .await;
}

/// Under mTLS: no client certificate, a certificate from another CA -> refused; the
/// right one -> accepted. An expired server certificate, or a server whose CA the client
/// does not trust -> the client refuses.
#[tokio::test]
async fn mtls_refuses_missing_and_foreign_client_certs_and_clients_refuse_bad_servers() {
    bounded(Duration::from_secs(60), async {
        let pki = make_pki("mtls");
        let sink = start_sink().await;
        let (grpc, http) = (free_port(), free_port());
        let oxcol = Proc::start(
            "mtls",
            &format!(
                "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\n        tls:\n          cert_file: {cert}\n          key_file: {key}\n          client_ca_file: {ca}\n      http:\n        endpoint: 127.0.0.1:{http}\n        tls:\n          cert_file: {expired}\n          key_file: {expired_key}\nexporters:\n  otlp:\n    endpoint: {sink}\n    tls:\n      insecure: true\nservice:\n  pipelines:\n    metrics:\n      receivers: [otlp]\n      exporters: [otlp]\n",
                cert = pki.path("server.pem"),
                key = pki.path("server-key.pem"),
                ca = pki.path("ca.pem"),
                expired = pki.path("expired.pem"),
                expired_key = pki.path("expired-key.pem"),
                sink = sink.grpc_addr,
            ),
            &[grpc, http],
        )
        .await;
        let no_cert = grpc_export(grpc, Some(&tls_client(&pki, "ca.pem", None)), None).await;
        assert!(no_cert.is_err(), "no client certificate must be refused under mTLS");
        let foreign = grpc_export(grpc, Some(&tls_client(&pki, "ca.pem", Some("stranger"))), None).await;
        assert!(foreign.is_err(), "a client certificate from another CA must be refused");
        let plaintext = grpc_export(grpc, None, None).await;
        assert!(plaintext.is_err(), "plaintext to a TLS port must fail");
        grpc_export(grpc, Some(&tls_client(&pki, "ca.pem", Some("client"))), None).await.expect("the right client certificate is accepted");
        let wrong_ca = grpc_export(grpc, Some(&tls_client(&pki, "other-ca.pem", Some("client"))), None).await;
        assert!(wrong_ca.is_err(), "a server signed by a CA the client does not trust must be refused");
        let expired = http_export(&format!("https://localhost:{http}/v1/metrics"), Some(&tls_client(&pki, "ca.pem", None)), None).await;
        let error = expired.expect_err("an expired server certificate must be refused by the client");
        assert!(error.to_lowercase().contains("expired"), "{error}");
        let skip = TlsClientConfig { insecure_skip_verify: true, ..Default::default() };
        assert_eq!(http_export(&format!("https://localhost:{http}/v1/metrics"), Some(&skip), None).await, Ok(200), "insecure_skip_verify accepts it");
        let stats = wait_sink(&sink, Duration::from_secs(10), |s| s.signal(Signal::Metrics).items >= 20).await;
        assert_eq!(stats.signal(Signal::Metrics).items, 20, "only the two accepted requests arrived");
        let refused = oxcol.metric("oxcol_server_connections_closed", &[("server", "otlp/grpc"), ("reason", "tls_handshake_failed")]).await;
        assert!(refused >= 2.0, "the refused client certificates are counted: {refused}");
        let _ = std::fs::remove_dir_all(&pki.dir);
    })
    .await;
}

/// Bearer token on gRPC and HTTP, basic auth on another receiver: right -> accepted,
/// wrong/missing -> 401 / UNAUTHENTICATED, counted; the secrets never reach the log or
/// `print-config`.
#[tokio::test]
async fn bearer_and_basic_auth_refuse_bad_credentials_and_never_log_them() {
    bounded(Duration::from_secs(60), async {
        let sink = start_sink().await;
        let (grpc, http, basic_http) = (free_port(), free_port(), free_port());
        // `htpasswd -nbs ann test`
        let yaml = format!(
            "extensions:\n  bearertokenauth:\n    token: {TOKEN}\n  basicauth/users:\n    htpasswd:\n      inline: \"ann:{{SHA}}qUqP5cyxm6YcTAhz05Hph5gvu9M=\"\nreceivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\n        auth:\n          authenticator: bearertokenauth\n      http:\n        endpoint: 127.0.0.1:{http}\n        auth:\n          authenticator: bearertokenauth\n  otlp/basic:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{basic_http}\n        auth:\n          authenticator: basicauth/users\nexporters:\n  otlp:\n    endpoint: {sink}\n    tls:\n      insecure: true\nservice:\n  extensions: [bearertokenauth, basicauth/users]\n  pipelines:\n    metrics:\n      receivers: [otlp, otlp/basic]\n      exporters: [otlp]\n",
            sink = sink.grpc_addr,
        );
        let oxcol = Proc::start("auth", &yaml, &[grpc, http, basic_http]).await;
        let url = format!("http://127.0.0.1:{http}/v1/metrics");
        assert_eq!(http_export(&url, None, Some(&format!("Bearer {TOKEN}"))).await, Ok(200));
        assert_eq!(http_export(&url, None, Some("Bearer wrong")).await, Ok(401));
        assert_eq!(http_export(&url, None, None).await, Ok(401));
        grpc_export(grpc, None, Some(TOKEN)).await.expect("right token");
        let wrong = grpc_export(grpc, None, Some("wrong")).await.expect_err("wrong token");
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated, "{wrong:?}");
        let missing = grpc_export(grpc, None, None).await.expect_err("no token");
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        let basic_url = format!("http://127.0.0.1:{basic_http}/v1/metrics");
        assert_eq!(http_export(&basic_url, None, Some("Basic YW5uOnRlc3Q=")).await, Ok(200), "ann:test");
        assert_eq!(http_export(&basic_url, None, Some("Basic YW5uOndyb25n")).await, Ok(401), "ann:wrong");
        let rejected = oxcol.metric("oxcol_receiver_rejected_requests", &[("reason", "unauthenticated")]).await;
        assert_eq!(rejected, 5.0, "2 HTTP + 2 gRPC bearer + 1 basic refusals are counted");
        let stats = wait_sink(&sink, Duration::from_secs(10), |s| s.signal(Signal::Metrics).items >= 30).await;
        assert_eq!(stats.signal(Signal::Metrics).items, 30, "only the 3 authenticated requests went through");
        assert!(!oxcol.log().contains(TOKEN), "token in the log:\n{}", oxcol.log());
        assert!(!oxcol.log().contains("qUqP5"), "htpasswd hash in the log");
        let printed = Command::new(oxcol_binary()).arg("print-config").arg("--config").arg(oxcol.dir.join("config.yaml")).output().unwrap();
        let printed = String::from_utf8_lossy(&printed.stdout);
        assert!(printed.contains("bearertokenauth") && !printed.contains(TOKEN) && !printed.contains("qUqP5"), "print-config must redact:\n{printed}");
    })
    .await;
}

/// 200 slowloris HTTP connections (headers never finished) and 100 idle gRPC connections
/// (no HTTP/2 preface) do not stop a normal client; the server closes them after
/// read_header_timeout.
#[tokio::test]
async fn slow_clients_do_not_starve_others_and_are_cut_off() {
    bounded(Duration::from_secs(60), async {
        let sink = start_sink().await;
        let (grpc, http) = (free_port(), free_port());
        let yaml = format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\n      http:\n        endpoint: 127.0.0.1:{http}\n        read_header_timeout: 2s\nexporters:\n  otlp:\n    endpoint: {sink}\n    tls:\n      insecure: true\nservice:\n  pipelines:\n    metrics:\n      receivers: [otlp]\n      exporters: [otlp]\n",
            sink = sink.grpc_addr,
        );
        let oxcol = Proc::start("slow", &yaml, &[grpc, http]).await;
        let mut slow = Vec::new();
        for _ in 0..200 {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", http)).await.unwrap();
            stream.write_all(b"POST /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: app").await.unwrap();
            slow.push(stream);
        }
        for _ in 0..100 {
            slow.push(tokio::net::TcpStream::connect(("127.0.0.1", grpc)).await.unwrap());
        }
        let started = Instant::now();
        assert_eq!(http_export(&format!("http://127.0.0.1:{http}/v1/metrics"), None, None).await, Ok(200));
        grpc_export(grpc, None, None).await.expect("gRPC served beside 100 idle connections");
        assert!(started.elapsed() < Duration::from_secs(2), "normal clients waited {:?}", started.elapsed());
        // After read_header_timeout (2 s) every slow HTTP connection has been closed by the
        // server; the idle gRPC ones after the default 10 s preface deadline.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut idle_grpc = slow.split_off(200);
        assert_eq!(count_closed(&mut slow).await, 200, "slow HTTP connections are closed after read_header_timeout");
        tokio::time::sleep(Duration::from_secs(10).saturating_sub(started.elapsed()) + Duration::from_millis(500)).await;
        assert_eq!(count_closed(&mut idle_grpc).await, 100, "idle gRPC connections are closed after the preface deadline");
        // And counted in self-telemetry.
        let closed = "oxcol_server_connections_closed";
        assert_eq!(oxcol.metric(closed, &[("server", "otlp/http"), ("reason", "read_header_timeout")]).await, 200.0);
        assert_eq!(oxcol.metric(closed, &[("server", "otlp/grpc"), ("reason", "read_header_timeout")]).await, 100.0);
        assert!(oxcol.metric("oxcol_server_connections_accepted", &[("server", "otlp/http")]).await >= 201.0);
        let stats = wait_sink(&sink, Duration::from_secs(10), |s| s.signal(Signal::Metrics).items >= 20).await;
        assert_eq!(stats.signal(Signal::Metrics).items, 20);
    })
    .await;
}

/// A client that never reads its responses (HTTP/2 receive window 0) and opens 300
/// export streams: the server advertises and enforces 200 concurrent streams (the rest
/// are refused with RST_STREAM), and other clients are served meanwhile.
#[tokio::test]
async fn grpc_client_that_never_reads_is_bounded_by_max_concurrent_streams() {
    bounded(Duration::from_secs(60), async {
        let sink = start_sink().await;
        let port = free_port();
        let yaml = format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{port}\nexporters:\n  otlp:\n    endpoint: {sink}\n    tls:\n      insecure: true\nservice:\n  pipelines:\n    metrics:\n      receivers: [otlp]\n      exporters: [otlp]\n",
            sink = sink.grpc_addr,
        );
        let _oxcol = Proc::start("never-reads", &yaml, &[port]).await;
        let mut greedy = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        // Preface, then SETTINGS_INITIAL_WINDOW_SIZE = 0: no response body can be sent.
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(h2_frame(0x4, 0, 0, &[0, 4, 0, 0, 0, 0]));
        greedy.write_all(&hello).await.unwrap();
        // An empty ExportMetricsServiceRequest: the 5-byte gRPC prefix of a 0-byte message.
        let mut requests = Vec::new();
        for n in 0..300u32 {
            let stream = 2 * n + 1;
            requests.extend(h2_open_export_stream(stream));
            requests.extend(h2_frame(0x0, 0x1, stream, &[0, 0, 0, 0, 0]));
        }
        greedy.write_all(&requests).await.unwrap();
        let started = Instant::now();
        grpc_export(port, None, None).await.expect("another client is served");
        assert!(started.elapsed() < Duration::from_secs(2), "the other client waited {:?}", started.elapsed());
        let (frames, _) = h2_read(greedy, Duration::from_secs(2)).await;
        let settings = frames.iter().find(|(kind, flags, _)| *kind == 0x4 && flags & 1 == 0).expect("server SETTINGS");
        let advertised = settings.2.chunks(6).find(|p| p.len() == 6 && p[..2] == [0, 3]).map(|p| u32::from_be_bytes([p[2], p[3], p[4], p[5]]));
        assert_eq!(advertised, Some(200), "SETTINGS_MAX_CONCURRENT_STREAMS");
        let refused = frames.iter().filter(|(kind, _, payload)| *kind == 0x3 && payload.as_slice() == [0, 0, 0, 7]).count();
        let answered = frames.iter().filter(|(kind, _, _)| *kind == 0x1).count();
        assert!(refused >= 100, "streams past the limit refused (REFUSED_STREAM): {refused}");
        assert!(answered <= 200, "at most 200 streams served at once: {answered} response headers");
    })
    .await;
}

/// The HTTP/2 frames (type, flags, payload) the server sent until it closed the
/// connection or `limit` passed, and when it closed it (None: still open).
async fn h2_read(
    mut stream: tokio::net::TcpStream,
    limit: Duration,
) -> (Vec<(u8, u8, Vec<u8>)>, Option<Duration>) {
    let started = Instant::now();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16384];
    let closed = loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, tokio::io::AsyncReadExt::read(&mut stream, &mut buf)).await
        {
            Ok(Ok(0)) | Ok(Err(_)) => break Some(started.elapsed()),
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => break None,
        }
    };
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = (usize::from(bytes[at]) << 16)
            | (usize::from(bytes[at + 1]) << 8)
            | usize::from(bytes[at + 2]);
        let end = (at + 9 + len).min(bytes.len());
        frames.push((bytes[at + 3], bytes[at + 4], bytes[at + 9..end].to_vec()));
        at += 9 + len;
    }
    (frames, closed)
}

/// `keepalive.server_parameters`: a connection with nothing in flight is closed after
/// `max_connection_idle`, one with a request in flight is not; with `max_connection_age`
/// the server sends GOAWAY and closes after `max_connection_age_grace`.
#[tokio::test]
async fn grpc_idle_and_aged_connections_are_closed() {
    bounded(Duration::from_secs(60), async {
        let sink = start_sink().await;
        let (idle_port, aged_port) = (free_port(), free_port());
        let yaml = format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{idle_port}\n        keepalive:\n          server_parameters:\n            max_connection_idle: 1s\n  otlp/aged:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{aged_port}\n        keepalive:\n          server_parameters:\n            max_connection_age: 1s\n            max_connection_age_grace: 1s\nexporters:\n  otlp:\n    endpoint: {sink}\n    tls:\n      insecure: true\nservice:\n  pipelines:\n    metrics:\n      receivers: [otlp, otlp/aged]\n      exporters: [otlp]\n",
            sink = sink.grpc_addr,
        );
        let oxcol = Proc::start("keepalive", &yaml, &[idle_port, aged_port]).await;
        let started = Instant::now();
        let idle = h2_connect(idle_port).await;
        let mut busy = h2_connect(idle_port).await;
        // A request whose body never comes: in flight for as long as the test runs.
        busy.write_all(&h2_open_export_stream(1)).await.unwrap();
        // Aged with a request in flight: GOAWAY at the age, closed at age + grace.
        let mut aged = h2_connect(aged_port).await;
        aged.write_all(&h2_open_export_stream(1)).await.unwrap();
        let (idle_frames, idle_closed) = h2_read(idle, Duration::from_secs(8)).await;
        let idle_closed = idle_closed.expect("an idle connection is closed after max_connection_idle");
        assert!(
            idle_closed >= Duration::from_millis(900) && idle_closed < Duration::from_secs(7),
            "closed after {idle_closed:?} (frames {idle_frames:?})"
        );
        let (aged_frames, aged_closed) = h2_read(aged, Duration::from_secs(9)).await;
        assert!(aged_frames.iter().any(|f| f.0 == 7), "GOAWAY at max_connection_age: frames {aged_frames:?}, closed after {aged_closed:?}");
        aged_closed.expect("closed after max_connection_age + grace");
        assert!(
            started.elapsed() >= Duration::from_millis(1900) && started.elapsed() < Duration::from_secs(8),
            "an aged connection with a request in flight closed {:?} after it opened",
            started.elapsed()
        );
        // Let the busy connection outlive max_connection_idle twice.
        tokio::time::sleep(Duration::from_millis(2200).saturating_sub(started.elapsed())).await;
        assert_eq!(oxcol.metric("oxcol_server_connections", &[("server", "otlp/grpc")]).await, 1.0, "the busy connection is open");
        let (_, busy_closed) = h2_read(busy, Duration::from_millis(300)).await;
        assert_eq!(busy_closed, None, "a connection with a request in flight is not idle");
        let closed = "oxcol_server_connections_closed";
        assert_eq!(oxcol.metric(closed, &[("server", "otlp/grpc"), ("reason", "max_connection_idle")]).await, 1.0);
        assert_eq!(oxcol.metric(closed, &[("server", "otlp/aged/grpc"), ("reason", "max_connection_age")]).await, 1.0);
    })
    .await;
}

/// A raw HTTP/2 connection: the client preface and an empty SETTINGS frame sent.
async fn h2_connect(port: u16) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    stream
}

/// A HEADERS frame (END_HEADERS, no END_STREAM) opening an OTLP metrics export on
/// `stream`: HPACK literal fields without indexing or Huffman coding.
fn h2_open_export_stream(stream: u32) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (
            ":path",
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        ),
        (":authority", "127.0.0.1"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.push(0);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    h2_frame(0x1, 0x4, stream, &block)
}

/// One HTTP/2 frame.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// How many of `streams` the server has closed (EOF or reset), reading past any answer.
async fn count_closed(streams: &mut [tokio::net::TcpStream]) -> usize {
    let mut closed = 0;
    for stream in streams {
        let mut buf = [0u8; 512];
        loop {
            match tokio::time::timeout(
                Duration::from_millis(300),
                tokio::io::AsyncReadExt::read(stream, &mut buf),
            )
            .await
            {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed += 1;
                    break;
                }
                Ok(Ok(_)) => continue, // an error answer (408) before the close
                Err(_) => break,       // still open
            }
        }
    }
    closed
}

/// Runs one TLS handshake in memory between a client and a server built by oxcol's `tls`
/// configs (the same code every exporter and receiver uses; a built config keeps its
/// reload state, so tests build it once). Ok: the common name of the certificate each
/// side saw from the other (None when the client sent none), and the cipher suite.
fn handshake(
    server: &Arc<rustls::ServerConfig>,
    client: &Arc<rustls::ClientConfig>,
) -> Result<(String, Option<String>, String), String> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut client = rustls::ClientConnection::new(Arc::clone(client), name).unwrap();
    let mut server = rustls::ServerConnection::new(Arc::clone(server)).unwrap();
    for _ in 0..20 {
        if !client.is_handshaking() && !server.is_handshaking() {
            let common_name = |certs: Option<&[rustls::pki_types::CertificateDer<'_>]>| {
                certs.and_then(|c| c.first()).map(|der| common_name(der))
            };
            let suite = client
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()));
            return Ok((
                common_name(client.peer_certificates()).unwrap_or_default(),
                common_name(server.peer_certificates()),
                suite.unwrap_or_default(),
            ));
        }
        let mut wire = Vec::new();
        client.write_tls(&mut wire).unwrap();
        server.read_tls(&mut wire.as_slice()).unwrap();
        server
            .process_new_packets()
            .map_err(|e| format!("server refused: {e}"))?;
        wire.clear();
        server.write_tls(&mut wire).unwrap();
        client.read_tls(&mut wire.as_slice()).unwrap();
        client
            .process_new_packets()
            .map_err(|e| format!("client refused: {e}"))?;
    }
    Err("the handshake did not finish".into())
}

/// The CN of a DER certificate made by [`leaf`] (its subject holds one CN, in UTF-8 or
/// printable string: the bytes after the CN OID and two tag/length bytes).
fn common_name(der: &[u8]) -> String {
    const CN_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];
    // The subject's CN follows the issuer's: take the last one.
    let at = der
        .windows(CN_OID.len())
        .rposition(|w| w == CN_OID)
        .expect("a CN");
    let len = der[at + 6] as usize;
    String::from_utf8_lossy(&der[at + 7..at + 7 + len]).into_owned()
}

/// Replaces `to`'s certificate and key with `from`'s (as a cert-manager rotation does).
fn rotate(pki: &Pki, from: &str, to: &str) {
    for suffix in [".pem", "-key.pem"] {
        std::fs::copy(
            pki.path(&format!("{from}{suffix}")),
            pki.path(&format!("{to}{suffix}")),
        )
        .unwrap();
    }
}

/// `reload_interval` on a server: a rotated certificate is served after the interval,
/// not before; a broken file keeps the previous certificate.
#[test]
fn server_certificate_is_reloaded_after_reload_interval() {
    let pki = make_pki("reload-server");
    let main_ca = ca("rotation CA");
    std::fs::write(pki.dir.join("rot-ca.pem"), main_ca.pem()).unwrap();
    leaf(&pki.dir, "first", &main_ca, true, false);
    leaf(&pki.dir, "second", &main_ca, true, false);
    rotate(&pki, "first", "live");
    let server: TlsServerConfig = serde_json::from_value(serde_json::json!({
        "cert_file": pki.path("live.pem"), "key_file": pki.path("live-key.pem"),
        "reload_interval": "1500ms",
    }))
    .unwrap();
    let server = server.rustls_config(&[]).unwrap();
    // A new client each time would not resume the TLS session (a resumed session
    // carries the certificate of its first handshake): resumption off.
    let mut client = tls_client(&pki, "rot-ca.pem", None)
        .rustls_config(&[])
        .unwrap();
    client.resumption = rustls::client::Resumption::disabled();
    let client = Arc::new(client);
    let seen = || handshake(&server, &client).map(|(cn, _, _)| cn);
    assert_eq!(seen().unwrap(), "first");
    rotate(&pki, "second", "live");
    assert_eq!(seen().unwrap(), "first", "not reloaded before the interval");
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(seen().unwrap(), "second", "reloaded after the interval");
    std::fs::write(pki.path("live.pem"), "not a certificate").unwrap();
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(
        seen().unwrap(),
        "second",
        "a broken file keeps the previous certificate"
    );
    let _ = std::fs::remove_dir_all(&pki.dir);
}

/// `reload_interval` on a client: the CA (`ca_file`) and the client certificate are
/// re-read after the interval, so a rotated CA and a rotated client certificate take
/// effect on new connections without a restart.
#[test]
fn client_ca_and_certificate_are_reloaded_after_reload_interval() {
    let pki = make_pki("reload-client");
    let second_ca = ca("second client CA");
    leaf(&pki.dir, "client2", &second_ca, false, false);
    // The server: signed by the main CA; mTLS for clients of the main or the second CA.
    let client_cas = [
        std::fs::read_to_string(pki.path("ca.pem")).unwrap(),
        second_ca.pem(),
    ]
    .concat();
    std::fs::write(pki.path("client-cas.pem"), client_cas).unwrap();
    let server: TlsServerConfig = serde_json::from_value(serde_json::json!({
        "cert_file": pki.path("server.pem"), "key_file": pki.path("server-key.pem"),
        "client_ca_file": pki.path("client-cas.pem"),
    }))
    .unwrap();
    let server = server.rustls_config(&[]).unwrap();
    // The client trusts the other CA at first, and presents the `client` certificate.
    std::fs::copy(pki.path("other-ca.pem"), pki.path("trusted.pem")).unwrap();
    rotate(&pki, "client", "mine");
    let mut client = tls_client(&pki, "trusted.pem", Some("mine"));
    client.reload_interval = Some(serde_json::from_value(serde_json::json!("1500ms")).unwrap());
    let client = Arc::new(client.rustls_config(&[]).unwrap());
    let connect = || handshake(&server, &client);
    let error = connect().expect_err("a server signed by an untrusted CA is refused");
    assert!(error.contains("client refused"), "{error}");
    std::fs::copy(pki.path("ca.pem"), pki.path("trusted.pem")).unwrap();
    rotate(&pki, "client2", "mine");
    assert!(connect().is_err(), "not reloaded before the interval");
    std::thread::sleep(Duration::from_millis(1600));
    let (server_cn, client_cn, _) =
        connect().expect("the rotated CA is trusted after the interval");
    assert_eq!(server_cn, "server");
    assert_eq!(
        client_cn.as_deref(),
        Some("client2"),
        "the rotated client certificate is sent"
    );
    let _ = std::fs::remove_dir_all(&pki.dir);
}

/// `client_ca_file_reload` on a server: a client signed by a CA that is added to
/// `client_ca_file` is accepted once the file changed, without a restart.
#[test]
fn server_client_ca_file_reload_follows_the_file() {
    let pki = make_pki("reload-client-ca");
    std::fs::copy(pki.path("ca.pem"), pki.path("clients.pem")).unwrap();
    let server: TlsServerConfig = serde_json::from_value(serde_json::json!({
        "cert_file": pki.path("server.pem"), "key_file": pki.path("server-key.pem"),
        "client_ca_file": pki.path("clients.pem"), "client_ca_file_reload": true,
        "reload_interval": "200ms",
    }))
    .unwrap();
    let server = server.rustls_config(&[]).unwrap();
    let stranger = Arc::new(
        tls_client(&pki, "ca.pem", Some("stranger"))
            .rustls_config(&[])
            .unwrap(),
    );
    let error = handshake(&server, &stranger).expect_err("another CA's client");
    assert!(error.contains("server refused"), "{error}");
    let both = [
        std::fs::read_to_string(pki.path("ca.pem")).unwrap(),
        std::fs::read_to_string(pki.path("other-ca.pem")).unwrap(),
    ]
    .concat();
    // File times tick with the kernel's coarse clock (a few ms): let one pass.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(pki.path("clients.pem"), both).unwrap();
    std::thread::sleep(Duration::from_millis(250));
    let (_, client_cn, _) =
        handshake(&server, &stranger).expect("the client CA file now holds the stranger's CA");
    assert_eq!(client_cn.as_deref(), Some("stranger"));
    let _ = std::fs::remove_dir_all(&pki.dir);
}

/// `cipher_suites` and `curve_preferences` (Go names) restrict what is negotiated: a
/// common suite is used, disjoint suites or curves fail the handshake, unsupported
/// names are config errors that name them.
#[test]
fn cipher_suites_and_curve_preferences_are_applied() {
    let pki = make_pki("suites");
    let server = |suites: &[&str], curves: &[&str]| {
        let config: TlsServerConfig = serde_json::from_value(serde_json::json!({
            "cert_file": pki.path("server.pem"), "key_file": pki.path("server-key.pem"),
            "max_version": "1.2", "cipher_suites": suites, "curve_preferences": curves,
        }))
        .unwrap();
        config.rustls_config(&[]).unwrap()
    };
    let client = |suites: &[&str], curves: &[&str]| {
        let mut config = tls_client(&pki, "ca.pem", None);
        config.cipher_suites = suites.iter().map(|s| s.to_string()).collect();
        config.curve_preferences = curves.iter().map(|s| s.to_string()).collect();
        Arc::new(config.rustls_config(&[]).unwrap())
    };
    let gcm256 = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384";
    let chacha = "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256";
    let (_, _, suite) = handshake(&server(&[gcm256], &[]), &client(&[], &[])).unwrap();
    assert_eq!(suite, gcm256, "the server's only suite is negotiated");
    let (_, _, suite) = handshake(&server(&[], &[]), &client(&[chacha], &[])).unwrap();
    assert_eq!(suite, chacha, "the client's only suite is negotiated");
    assert!(
        handshake(&server(&[gcm256], &[]), &client(&[chacha], &[])).is_err(),
        "no common suite"
    );
    assert!(
        handshake(&server(&[], &["X25519"]), &client(&[], &["P384"])).is_err(),
        "no common curve"
    );
    handshake(&server(&[], &["P384", "X25519"]), &client(&[], &["P384"])).expect("a common curve");
    let bad = TlsClientConfig {
        cipher_suites: vec!["TLS_RSA_WITH_AES_128_CBC_SHA".into()],
        curve_preferences: vec!["P521".into()],
        ..Default::default()
    };
    let errors = bad.validate().join("\n");
    assert!(
        errors.contains("TLS_RSA_WITH_AES_128_CBC_SHA") && errors.contains("insecure"),
        "{errors}"
    );
    assert!(errors.contains("P521"), "{errors}");
    let _ = std::fs::remove_dir_all(&pki.dir);
}
