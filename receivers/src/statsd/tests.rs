use super::*;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
use serde_json::json;

fn parse(value: serde_json::Value) -> Config {
    serde_json::from_value(value).expect("decodes")
}

#[test]
fn defaults_are_the_collectors() {
    let config = parse(json!({}));
    assert_eq!(config.endpoint(), "localhost:8125");
    assert_eq!(config.transport, "udp");
    assert_eq!(config.aggregation_interval.get(), Duration::from_secs(60));
    assert!(
        !config.is_monotonic_counter && !config.enable_metric_type && !config.enable_simple_tags
    );
    assert_eq!(config.socket_permissions, 0o622);
    let mapped: Vec<(&str, &str)> = config
        .timer_histogram_mapping
        .iter()
        .map(|m| (m.statsd_type.as_str(), m.observer_type.as_str()))
        .collect();
    assert_eq!(
        mapped,
        vec![
            ("timer", "gauge"),
            ("histogram", "gauge"),
            ("distribution", "gauge")
        ]
    );
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let unix = parse(json!({"transport": "unixgram"}));
    assert_eq!(unix.endpoint(), "/var/run/statsd-receiver.sock");
}

#[test]
fn unknown_keys_are_errors() {
    let error = serde_json::from_value::<Config>(json!({"aggregation": "1s"})).unwrap_err();
    assert!(error.to_string().contains("unknown field"), "{error}");
    let error = serde_json::from_value::<Config>(
        json!({"timer_histogram_mapping": [{"statsd_type": "timer", "observer": "gauge"}]}),
    )
    .unwrap_err();
    assert!(error.to_string().contains("unknown field"), "{error}");
}

#[test]
fn validate_reports_every_problem() {
    let config = parse(json!({
        "transport": "sctp",
        "aggregation_interval": "0s",
        "counter_type": "decimal",
        "max_points_per_interval": 0,
        "timer_histogram_mapping": [
            {"statsd_type": "counter", "observer_type": "gauge"},
            {"statsd_type": "timer", "observer_type": "average"},
            {"statsd_type": "histogram", "observer_type": "histogram", "histogram": {"max_size": 1,
                "explicit_buckets": [{"matcher_pattern": "(", "buckets": [2, 1]}, {"matcher_pattern": "", "buckets": []}]}},
            {"statsd_type": "distribution", "observer_type": "gauge", "histogram": {"max_size": 50}, "summary": {"percentiles": [101]}},
            {"statsd_type": "timer"}
        ]
    }));
    let errors = config.validate().join("\n");
    for expected in [
        "transport \"sctp\" is not supported",
        "aggregation_interval must be a positive duration",
        "invalid counter_type: \"decimal\"",
        "max_points_per_interval must be greater than 0",
        "timer_histogram_mapping[0]: statsd_type is not a supported mapping",
        "timer_histogram_mapping[1]: observer_type is not supported",
        "timer_histogram_mapping[2]: histogram max_size out of range: 1",
        "explicit_buckets[0]: matcher_pattern is not a valid regular expression",
        "explicit_buckets[0]: buckets are not unique or not ascendingly sorted",
        "explicit_buckets[1]: matcher_pattern must not be empty",
        "explicit_buckets[1]: buckets must not be empty",
        "timer_histogram_mapping[3]: histogram configuration requires observer_type: histogram",
        "timer_histogram_mapping[3]: summary percentiles out of [0, 100] range: 101",
        "timer_histogram_mapping[3]: summary configuration requires observer_type: summary",
        "timer_histogram_mapping[4]: statsd_type and observer_type are both required",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
    let bad_endpoint = parse(json!({"endpoint": "localhost"}));
    assert!(bad_endpoint.validate()[0].contains("endpoint \"localhost\": no port"));
}

#[test]
fn settings_follow_the_mapping() {
    let config = parse(json!({
        "ignore_host": true,
        "enable_ip_only_aggregation": true,
        "counter_type": "float",
        "timer_histogram_mapping": [
            {"statsd_type": "timing", "observer_type": "summary", "summary": {"percentiles": [50, 99]}},
            {"statsd_type": "distribution", "observer_type": "histogram", "histogram": {"max_size": 10}}
        ]
    }));
    let settings = config.settings();
    assert_eq!(settings.keying, SourceKeying::All, "ignore_host wins");
    assert_eq!(settings.counter_type, CounterType::Float);
    match &settings.timer {
        Observer::Summary { percentiles } => assert_eq!(&percentiles[..], &[50.0, 99.0]),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        settings.histogram,
        Observer::Histogram { max_size: 10, .. }
    ));
}

type Captured = tokio::task::JoinHandle<Vec<Batch>>;

fn test_pipeline() -> (Consumers, Captured) {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<oxcol_core::Envelope>(8);
    let mut consumers = Consumers::new();
    consumers.add(
        Signal::Metrics,
        oxcol_core::PipelineInput {
            pipeline: "metrics".into(),
            sender,
            admissions: vec![],
        },
    );
    let task = tokio::spawn(async move {
        let mut batches = Vec::new();
        while let Some(envelope) = receiver.recv().await {
            batches.push(envelope.batch);
            let _ = envelope.ack.send(Ok(()));
        }
        batches
    });
    (consumers, task)
}

/// Every (name, value) of sums and gauges in the batches.
fn values(batches: &mut [Batch]) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for batch in batches {
        for resource in batch.metrics_mut().expect("metrics").iter() {
            for scope in &resource.scope_metrics {
                for metric in &scope.metrics {
                    let points = match &metric.data {
                        Some(Data::Sum(s)) => &s.data_points,
                        Some(Data::Gauge(g)) => &g.data_points,
                        _ => continue,
                    };
                    for point in points {
                        let value = match point.value {
                            Some(Value::AsInt(v)) => v as f64,
                            Some(Value::AsDouble(v)) => v,
                            None => f64::NAN,
                        };
                        out.push((metric.name.clone(), value));
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

async fn run_transport(
    transport: &str,
    send: impl AsyncFnOnce(SocketAddr),
) -> (Vec<(String, f64)>, Arc<Registry>) {
    let config = parse(
        json!({"endpoint": "127.0.0.1:0", "transport": transport, "aggregation_interval": "1h"}),
    );
    let (consumers, captured) = test_pipeline();
    let registry = Registry::new();
    let shutdown = CancellationToken::new();
    let running = start(
        "statsd/test",
        &config,
        consumers,
        &registry,
        shutdown.clone(),
    )
    .await
    .expect("starts");
    let address = running.address.expect("a bound address");
    send(address).await;
    // Wait until the lines were read (the counters move), then stop: shutdown flushes.
    let parsed = registry.counter(
        "otelcol_receiver_received_statsd_metrics",
        "",
        &[("receiver", "statsd/test"), ("parse_success", "true")],
    );
    let malformed = registry.counter(
        "otelcol_receiver_received_statsd_metrics",
        "",
        &[("receiver", "statsd/test"), ("parse_success", "false")],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while parsed.get() + malformed.get() < 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    for task in running.tasks {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("stops in time")
            .expect("no panic");
    }
    let mut batches = tokio::time::timeout(Duration::from_secs(5), captured)
        .await
        .expect("the pipeline ends")
        .expect("no panic");
    (values(&mut batches), registry)
}

#[tokio::test]
async fn udp_lines_are_aggregated_and_flushed_at_shutdown() {
    let (values, registry) = run_transport("udp", async |address| {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket
            .send_to(
                b"hits:2|c\nhits:3|c|@0.5\ntemp:21.5|g\nbroken-line",
                address,
            )
            .await
            .unwrap();
    })
    .await;
    assert_eq!(
        values,
        vec![("hits".to_string(), 8.0), ("temp".to_string(), 21.5)]
    );
    let malformed = registry.counter(
        "otelcol_receiver_received_statsd_metrics",
        "",
        &[("receiver", "statsd/test"), ("parse_success", "false")],
    );
    assert_eq!(malformed.get(), 1);
    let accepted = registry.counter(
        "otelcol_receiver_accepted_metric_points",
        "",
        &[("receiver", "statsd/test"), ("transport", "udp")],
    );
    assert_eq!(accepted.get(), 2);
}

#[tokio::test]
async fn tcp_lines_split_across_reads_are_joined_and_trimmed() {
    let (values, _) = run_transport("tcp", async |address| {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(b"  hits:2|c\r\nhi").await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stream.write_all(b"ts:4|c\nq:1|g\n\nbad\n").await.unwrap();
        stream.shutdown().await.unwrap();
    })
    .await;
    // One connection is one client: both hits lines add up.
    assert_eq!(
        values,
        vec![("hits".to_string(), 6.0), ("q".to_string(), 1.0)]
    );
}

#[tokio::test]
async fn a_taken_port_fails_at_start_naming_the_receiver() {
    let taken = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = parse(json!({"endpoint": format!("127.0.0.1:{port}")}));
    let (consumers, _captured) = test_pipeline();
    let error = start(
        "statsd/x",
        &config,
        consumers,
        &Registry::new(),
        CancellationToken::new(),
    )
    .await
    .err()
    .expect("refuses a taken port");
    assert!(
        error.contains("receiver statsd/x") && error.contains("cannot listen on UDP"),
        "{error}"
    );
}

#[tokio::test]
async fn unixgram_socket_gets_its_permissions_and_lines() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("oxcol-statsd-uds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("statsd.sock");
    let config = parse(
        json!({"endpoint": path.to_str().unwrap(), "transport": "unixgram", "aggregation_interval": "1h", "socket_permissions": 0o600}),
    );
    let (consumers, captured) = test_pipeline();
    let registry = Registry::new();
    let shutdown = CancellationToken::new();
    let running = start(
        "statsd/uds",
        &config,
        consumers,
        &registry,
        shutdown.clone(),
    )
    .await
    .expect("binds");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600);
    let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
    client.send_to(b"u:a|s\nu:b|s\nu:a|s", &path).unwrap();
    let parsed = registry.counter(
        "otelcol_receiver_received_statsd_metrics",
        "",
        &[("receiver", "statsd/uds"), ("parse_success", "true")],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while parsed.get() < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    for task in running.tasks {
        task.await.unwrap();
    }
    let mut batches = captured.await.unwrap();
    assert_eq!(values(&mut batches), vec![("u".to_string(), 2.0)]);
    assert!(!path.exists(), "the socket file is removed at shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}
