//! The `prometheus` receiver end to end against a real client_golang service
//! (integration/go/goapp -mode metrics): names, types and values arrive right through
//! OTLP; relabeling applies; `up` and staleness follow the target going away.
//!
//! Needs `target/debug/oxcol` and Go (the service is built once into target/go/goapp).

mod gohelp;

use std::time::Duration;

use gohelp::{Capture, GoService, oxcol, wait_for};
use serde_json::Value;

fn u64_of(value: &Value) -> Option<u64> {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| value.as_u64())
}

#[test]
fn client_golang_metrics_arrive_with_names_types_and_values() {
    let mut service = Some(GoService::start("metrics", &[]));
    let addr = service.as_ref().map(|s| s.addr.clone()).unwrap_or_default();
    for _ in 0..4 {
        service.as_ref().map(|s| s.get("/work"));
    }
    let capture = Capture::start();
    let config = format!(
        "receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: checkout
          scrape_interval: 1s
          static_configs:
            - targets: [\"{addr}\"]
              labels: {{team: payments}}
          metric_relabel_configs:
            - source_labels: [__name__]
              regex: go_memstats_.*
              action: drop
            - source_labels: [code]
              regex: 5..
              target_label: class
              replacement: error
{exporter}
service:
  telemetry: {{metrics: {{level: none}}}}
  pipelines:
    metrics: {{receivers: [prometheus], exporters: [otlphttp]}}
",
        exporter = capture.exporter_yaml(),
    );
    let mut oxcol = oxcol(&config);
    let arrived = wait_for(Duration::from_secs(15), || {
        (!capture
            .metric_instances("app_request_duration_seconds")
            .is_empty())
        .then_some(())
    });
    assert!(
        arrived.is_some(),
        "no scrape arrived:\n{}",
        oxcol.stop_and_log()
    );

    // Resource: job and instance.
    let (resource, _) = capture
        .metric_instances("up")
        .into_iter()
        .next()
        .expect("up");
    assert_eq!(
        gohelp::attr(&resource["attributes"], "service.name").as_deref(),
        Some("checkout")
    );
    assert_eq!(
        gohelp::attr(&resource["attributes"], "service.instance.id").as_deref(),
        Some(addr.as_str())
    );
    assert_eq!(capture.points("up").first().map(|(_, v)| *v), Some(1.0));
    assert!(!capture.points("scrape_duration_seconds").is_empty());

    // Counter -> monotonic cumulative sum, with the target's and relabelled labels.
    let (_, requests) = capture
        .metric_instances("app_requests_total")
        .into_iter()
        .next()
        .expect("counter");
    assert_eq!(requests["sum"]["isMonotonic"], true, "{requests}");
    assert_eq!(requests["sum"]["aggregationTemporality"], 2, "cumulative");
    let points = gohelp::number_points(&requests);
    let ok = points
        .iter()
        .find(|(a, _)| gohelp::attr(a, "code").as_deref() == Some("200"))
        .expect("code=200");
    assert_eq!(ok.1, 4.0);
    assert_eq!(gohelp::attr(&ok.0, "team").as_deref(), Some("payments"));
    let errors = points
        .iter()
        .find(|(a, _)| gohelp::attr(a, "code").as_deref() == Some("500"))
        .expect("code=500");
    assert_eq!(
        (errors.1, gohelp::attr(&errors.0, "class").as_deref()),
        (1.0, Some("error"))
    );

    // Histogram: per-bucket counts from Prometheus' cumulative buckets.
    let (_, histogram) = capture
        .metric_instances("app_request_duration_seconds")
        .into_iter()
        .next()
        .expect("histogram");
    let point = &histogram["histogram"]["dataPoints"][0];
    let counts: Vec<u64> = point["bucketCounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(u64_of)
        .collect();
    assert_eq!(counts, vec![4, 4, 0, 4], "{point}");
    assert_eq!(point["explicitBounds"], serde_json::json!([0.1, 0.5, 1.0]));
    assert_eq!(u64_of(&point["count"]), Some(12));
    assert!((point["sum"].as_f64().unwrap_or_default() - 9.4).abs() < 1e-9);

    // Summary and gauge.
    let (_, summary) = capture
        .metric_instances("app_payload_bytes")
        .into_iter()
        .next()
        .expect("summary");
    let point = &summary["summary"]["dataPoints"][0];
    assert_eq!(
        (u64_of(&point["count"]), point["sum"].as_f64()),
        (Some(8), Some(1600.0)),
        "{point}"
    );
    assert_eq!(point["quantileValues"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        capture
            .points("app_temperature_celsius")
            .first()
            .map(|(_, v)| *v),
        Some(21.5)
    );
    assert!(
        !capture.points("go_goroutines").is_empty(),
        "client_golang's Go collector"
    );
    assert!(
        capture
            .metric_instances("go_memstats_heap_alloc_bytes")
            .is_empty(),
        "dropped by metric_relabel_configs"
    );

    // The service goes away: up turns 0 and its series get a stale point.
    service.take();
    let stale = wait_for(Duration::from_secs(10), || {
        let down = capture.points("up").iter().any(|(_, v)| *v == 0.0);
        let stale = capture
            .metric_instances("app_requests_total")
            .iter()
            .flat_map(|(_, m)| {
                m["sum"]["dataPoints"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .any(|p| p["flags"] == 1);
        (down && stale).then_some(())
    });
    assert!(
        stale.is_some(),
        "up=0 and a NO_RECORDED_VALUE point after the target died"
    );
    let log = oxcol.stop_and_log();
    assert_eq!(
        log.matches("scrape failed").count(),
        1,
        "logged once:\n{log}"
    );
}

/// An HTTPS `/metrics` target (rustls, certificate from a CA made with rcgen) that answers
/// every request with `body`; `served` counts the answers.
fn https_target(
    dir: &std::path::Path,
    body: &'static str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "scrape test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
    let leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params");
    let key = KeyPair::generate().expect("key");
    let cert = leaf_params.signed_by(&key, &ca).expect("leaf");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("writes");
    let server = oxcol_core::tls::TlsServerConfig {
        cert_pem: Some(cert.pem()),
        key_pem: Some(key.serialize_pem()),
        ..Default::default()
    }
    .rustls_config(&[b"http/1.1"])
    .expect("server TLS config");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr").to_string();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = std::sync::Arc::clone(&served);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let acceptor = tokio_rustls::TlsAcceptor::from(server);
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let acceptor = acceptor.clone();
                let count = std::sync::Arc::clone(&count);
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    if tls.write_all(answer.as_bytes()).await.is_ok() {
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let _ = tls.shutdown().await;
                });
            }
        });
    });
    (addr, served)
}

#[test]
fn an_https_target_is_scraped_with_tls_config() {
    let dir = std::env::temp_dir().join(format!("oxcol-scrape-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (addr, served) = https_target(
        &dir,
        "# TYPE secure_requests_total counter\nsecure_requests_total 7\n",
    );
    let capture = Capture::start();
    let config = format!(
        "receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: secure
          scrape_interval: 1s
          scheme: https
          tls_config:
            ca_file: {ca}
          static_configs:
            - targets: [\"{addr}\"]
{exporter}
service:
  telemetry: {{metrics: {{level: none}}}}
  pipelines:
    metrics: {{receivers: [prometheus], exporters: [otlphttp]}}
",
        ca = dir.join("ca.pem").display(),
        exporter = capture.exporter_yaml(),
    );
    let mut oxcol = oxcol(&config);
    let value = wait_for(Duration::from_secs(15), || {
        capture
            .points("secure_requests")
            .first()
            .map(|(_, v)| *v)
            .or_else(|| {
                capture
                    .points("secure_requests_total")
                    .first()
                    .map(|(_, v)| *v)
            })
    });
    let log = oxcol.stop_and_log();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(value, Some(7.0), "no scrape over TLS arrived:\n{log}");
    assert!(served.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    let up = capture.points("up");
    assert!(up.iter().any(|(_, v)| *v == 1.0), "up is 1: {up:?}");
}
