//! The `kafka` exporter and receiver on a real Apache Kafka 4.1.1 (single KRaft node,
//! `oxcol_integration::kafka`), with real oxcol processes:
//!
//! 1. agent (otlp -> kafka exporter) -> Kafka -> gateway (kafka receiver -> otlp) -> sink,
//!    per signal and in both encodings: what the sink receives is what was sent.
//! 2. agent -> Kafka -> two gateways in one consumer group -> sink, with one gateway killed
//!    (`kill -9`) and the broker killed and restarted mid-stream: every point the agent
//!    acknowledged arrives (duplicates are counted and allowed).
//! 3. undecodable messages are skipped and counted; the messages around them arrive.
//!
//! Every wait is bounded; every process is killed when the test ends, also on panic.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Oxcol, bounded};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_core::testdata;
use oxcol_integration::kafka::Kafka;
use oxcol_integration::sink::{self, RunningSink, SinkConfig};
use prost::Message;

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "oxcol-kafka-test-{name}-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creates the temp dir");
    dir
}

/// A sink that records every accepted request body in `dir`.
async fn recording_sink(dir: &Path) -> RunningSink {
    sink::start(SinkConfig {
        record_dir: Some(dir.to_path_buf()),
        ..SinkConfig::default()
    })
    .await
    .expect("starts the recording sink")
}

/// The recorded request bodies of `signal` (file names end in `-<signal>.pb`).
fn recorded(dir: &Path, signal: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(&format!("-{signal}.pb")))
        })
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// Exporter block (indented for `exporters:`) for a gateway that sends to the sink.
fn sink_exporter(sink: &RunningSink) -> String {
    format!(
        "exporters:\n  otlp:\n    endpoint: {}\n    tls:\n      insecure: true\n{}",
        sink.grpc_addr,
        common::FAST_RETRY
    )
}

/// Starts an agent: the otlp receiver feeding a `kafka` exporter for every signal.
async fn agent(kafka: &Kafka, exporter_keys: &str) -> Oxcol {
    let components = format!(
        "exporters:\n  kafka:\n    brokers: [{}]\n    retry_on_failure:\n      initial_interval: 100ms\n      max_interval: 1s\n      max_elapsed_time: 0s\n{exporter_keys}",
        kafka.bootstrap()
    );
    let pipelines = "    metrics:\n      receivers: [otlp]\n      exporters: [kafka]\n    traces:\n      receivers: [otlp]\n      exporters: [kafka]\n    logs:\n      receivers: [otlp]\n      exporters: [kafka]\n";
    Oxcol::start("", &components, pipelines).await
}

/// Starts a gateway: `receivers` (kafka receiver blocks, indented for `receivers:`) and the
/// otlp receiver feeding an otlp exporter to `sink`, for `signals`.
async fn gateway(
    receivers: &str,
    receiver_ids: &str,
    sink: &RunningSink,
    signals: &[&str],
) -> Oxcol {
    let components = format!("{receivers}{}", sink_exporter(sink));
    let pipelines: String = signals
        .iter()
        .map(|s| {
            format!("    {s}:\n      receivers: [otlp, {receiver_ids}]\n      exporters: [otlp]\n")
        })
        .collect();
    Oxcol::start("", &components, &pipelines).await
}

/// A kafka receiver block (indented for `receivers:`).
fn kafka_receiver(name: &str, kafka: &Kafka, group: &str, keys: &str) -> String {
    format!(
        "  {name}:\n    brokers: [{}]\n    group_id: {group}\n    initial_offset: earliest\n    session_timeout: 6s\n    heartbeat_interval: 1s\n    autocommit:\n      interval: 200ms\n    metadata:\n      refresh_interval: 1s\n{keys}",
        kafka.bootstrap()
    )
}

async fn send_metrics(oxcol: &Oxcol, request: ExportMetricsServiceRequest) -> Result<(), String> {
    let mut client = MetricsServiceClient::connect(format!("http://{}", oxcol.grpc_endpoint()))
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(10), client.export(request))
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
        .map(|_| ())
        .map_err(|status| status.to_string())
}

async fn send_traces(oxcol: &Oxcol, request: ExportTraceServiceRequest) -> Result<(), String> {
    let mut client = TraceServiceClient::connect(format!("http://{}", oxcol.grpc_endpoint()))
        .await
        .map_err(|e| e.to_string())?;
    client
        .export(request)
        .await
        .map(|_| ())
        .map_err(|status| status.to_string())
}

async fn send_logs(oxcol: &Oxcol, request: ExportLogsServiceRequest) -> Result<(), String> {
    let mut client = LogsServiceClient::connect(format!("http://{}", oxcol.grpc_endpoint()))
        .await
        .map_err(|e| e.to_string())?;
    client
        .export(request)
        .await
        .map(|_| ())
        .map_err(|status| status.to_string())
}

/// Polls `check` every 100ms until it returns true, up to `limit`.
async fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signal_round_trips_through_kafka_in_both_encodings() {
    bounded(Duration::from_secs(300), async {
        let kafka = tokio::task::spawn_blocking(Kafka::start).await.unwrap();
        for encoding in ["otlp_proto", "otlp_json"] {
            let topic = |signal: &str| format!("rt-{encoding}-{signal}");
            let dir = temp_dir(encoding);
            let sink = recording_sink(&dir).await;
            let signal_keys: String = ["metrics", "traces", "logs"]
                .iter()
                .map(|s| {
                    format!(
                        "    {s}:\n      topic: {}\n      encoding: {encoding}\n",
                        topic(s)
                    )
                })
                .collect();
            let agent = agent(&kafka, &signal_keys).await;
            let receiver_keys: String = ["metrics", "traces", "logs"]
                .iter()
                .map(|s| {
                    format!(
                        "    {s}:\n      topics: [{}]\n      encoding: {encoding}\n",
                        topic(s)
                    )
                })
                .collect();
            let receivers =
                kafka_receiver("kafka", &kafka, &format!("rt-{encoding}"), &receiver_keys);
            let gateway = gateway(&receivers, "kafka", &sink, &["metrics", "traces", "logs"]).await;

            let metrics = testdata::metrics_request(2, 3, 4);
            let traces = testdata::trace_request(2, 3);
            let logs = testdata::logs_request(3, 2);
            // The topics are created by the first produce; the gateway's consumer sees
            // them at its next metadata refresh (1s) and reads from the earliest offset.
            send_metrics(&agent, metrics.clone())
                .await
                .expect("agent accepts metrics");
            send_traces(&agent, traces.clone())
                .await
                .expect("agent accepts traces");
            send_logs(&agent, logs.clone())
                .await
                .expect("agent accepts logs");

            let arrived = wait_until(Duration::from_secs(60), || {
                ["metrics", "traces", "logs"]
                    .iter()
                    .all(|s| !recorded(&dir, s).is_empty())
            })
            .await;
            assert!(
                arrived,
                "{encoding}: not every signal reached the sink\nagent log:\n{}\ngateway log:\n{}",
                agent.log(),
                gateway.log()
            );
            // Give a duplicate (there should be none here) the chance to show up.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let got_metrics: Vec<ExportMetricsServiceRequest> = recorded(&dir, "metrics")
                .iter()
                .map(|b| ExportMetricsServiceRequest::decode(b.as_slice()).unwrap())
                .collect();
            let got_traces: Vec<ExportTraceServiceRequest> = recorded(&dir, "traces")
                .iter()
                .map(|b| ExportTraceServiceRequest::decode(b.as_slice()).unwrap())
                .collect();
            let got_logs: Vec<ExportLogsServiceRequest> = recorded(&dir, "logs")
                .iter()
                .map(|b| ExportLogsServiceRequest::decode(b.as_slice()).unwrap())
                .collect();
            assert_eq!(got_metrics, vec![metrics], "{encoding}: metrics differ");
            assert_eq!(got_traces, vec![traces], "{encoding}: traces differ");
            assert_eq!(got_logs, vec![logs], "{encoding}: logs differ");
            let sent = agent
                .metric(
                    "otelcol_exporter_sent_metric_points",
                    &[("exporter", "kafka")],
                )
                .await;
            assert_eq!(
                sent, 24.0,
                "{encoding}: the exporter counts what the broker acked"
            );
            let accepted = gateway
                .metric(
                    "otelcol_receiver_accepted_spans",
                    &[("receiver", "kafka"), ("transport", "kafka")],
                )
                .await;
            assert_eq!(
                accepted, 6.0,
                "{encoding}: the receiver counts accepted spans"
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    })
    .await;
}

/// One metric point whose value and `seq` attribute are its sequence number.
fn numbered_request(seq: u64) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![testdata::string_attribute("service.name", "kafka-ha")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "sequence".to_string(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![KeyValue {
                                key: "seq".to_string(),
                                value: Some(AnyValue {
                                    value: Some(any_value::Value::IntValue(seq as i64)),
                                }),
                                ..Default::default()
                            }],
                            time_unix_nano: 1_700_000_000_000_000_000 + seq,
                            value: Some(number_data_point::Value::AsInt(seq as i64)),
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

/// Every sequence number in the recorded metric bodies, with how often each arrived.
fn arrived_sequences(dir: &Path) -> BTreeMap<i64, u64> {
    let mut seen = BTreeMap::new();
    for body in recorded(dir, "metrics") {
        let Ok(request) = ExportMetricsServiceRequest::decode(body.as_slice()) else {
            continue;
        };
        for point in request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter_map(|m| match &m.data {
                Some(metric::Data::Gauge(g)) => Some(&g.data_points),
                _ => None,
            })
            .flatten()
        {
            if let Some(number_data_point::Value::AsInt(seq)) = point.value {
                *seen.entry(seq).or_insert(0) += 1;
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_survives_a_killed_gateway_and_a_broker_restart() {
    bounded(Duration::from_secs(420), async {
        let mut kafka = tokio::task::spawn_blocking(Kafka::start).await.unwrap();
        let topic = "ha-metrics";
        kafka.create_topic(topic, 4);
        let dir = temp_dir("ha");
        let sink = recording_sink(&dir).await;
        let agent = Arc::new(agent(&kafka, &format!("    metrics:\n      topic: {topic}\n")).await);
        let receivers = kafka_receiver(
            "kafka",
            &kafka,
            "ha-gateways",
            &format!("    metrics:\n      topics: [{topic}]\n"),
        );
        let gateway_a = gateway(&receivers, "kafka", &sink, &["metrics"]).await;
        let gateway_b = gateway(&receivers, "kafka", &sink, &["metrics"]).await;

        // The sender: numbered points, one request each, remembering what was acknowledged.
        let acknowledged = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        let refused = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let sender = {
            let (agent, acknowledged, refused, done, sent) = (
                Arc::clone(&agent),
                Arc::clone(&acknowledged),
                Arc::clone(&refused),
                Arc::clone(&done),
                Arc::clone(&sent),
            );
            tokio::spawn(async move {
                let mut seq = 0u64;
                while !done.load(Ordering::Relaxed) {
                    seq += 1;
                    match send_metrics(&agent, numbered_request(seq)).await {
                        Ok(()) => {
                            acknowledged.lock().unwrap().insert(seq as i64);
                        }
                        Err(error) => {
                            if refused.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("kafka HA: first refusal by the agent: {error}");
                            }
                        }
                    }
                    sent.store(seq, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        let wait_for_sent = |n: u64| {
            let sent = Arc::clone(&sent);
            async move {
                let ok = wait_until(Duration::from_secs(60), || sent.load(Ordering::Relaxed) >= n).await;
                assert!(ok, "the sender did not reach {n} requests");
            }
        };

        // Both gateways consume (the group is balanced) before anything is killed.
        wait_for_sent(150).await;
        let both = wait_until(Duration::from_secs(30), || {
            !recorded(&dir, "metrics").is_empty()
        })
        .await;
        assert!(both, "nothing reached the sink\ngateway A:\n{}", gateway_a.log());

        // kill -9 gateway A mid-stream: its partitions move to B after the session timeout,
        // and what A had not committed is consumed again.
        drop(gateway_a);
        wait_for_sent(400).await;

        // The broker dies mid-stream: while it is down, nothing more counts as sent (a
        // batch is sent only once the broker acknowledged it); the agent queues and retries.
        kafka.kill();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sent_metric = "otelcol_exporter_sent_metric_points";
        let sent_at_kill = agent.metric(sent_metric, &[("exporter", "kafka")]).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let sent_while_down = agent.metric(sent_metric, &[("exporter", "kafka")]).await;
        assert_eq!(
            sent_at_kill, sent_while_down,
            "points counted as sent while no broker could acknowledge them"
        );
        // It comes back on the same data dir and ports.
        kafka = tokio::task::spawn_blocking(move || {
            kafka.restart();
            kafka
        })
        .await
        .unwrap();
        wait_for_sent(700).await;
        done.store(true, Ordering::Relaxed);
        sender.await.unwrap();

        let acknowledged: BTreeSet<i64> = acknowledged.lock().unwrap().clone();
        assert!(acknowledged.len() >= 300, "only {} requests were acknowledged", acknowledged.len());
        let all_arrived = wait_until(Duration::from_secs(120), || {
            let arrived = arrived_sequences(&dir);
            acknowledged.iter().all(|seq| arrived.contains_key(seq))
        })
        .await;
        let arrived = arrived_sequences(&dir);
        let missing: Vec<&i64> = acknowledged.iter().filter(|s| !arrived.contains_key(s)).collect();
        let duplicates: u64 = arrived.values().map(|n| n - 1).sum();
        eprintln!(
            "kafka HA: {} acknowledged, {} refused by the agent, {} distinct arrived, {} duplicates, {} missing",
            acknowledged.len(),
            refused.load(Ordering::Relaxed),
            arrived.len(),
            duplicates,
            missing.len()
        );
        assert!(
            all_arrived && missing.is_empty(),
            "{} acknowledged points never arrived (first: {:?})\nagent log:\n{}\ngateway B log:\n{}",
            missing.len(),
            missing.iter().take(10).collect::<Vec<_>>(),
            agent.log(),
            gateway_b.log()
        );
        // B held 2 of the 4 partitions, then all 4 once A was gone.
        let started = gateway_b
            .metric("otelcol_kafka_receiver_partition_start", &[("name", "kafka")])
            .await;
        assert!(started >= 6.0, "gateway B was assigned {started} partitions in all");
        drop(kafka);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_messages_are_skipped_and_counted() {
    bounded(Duration::from_secs(300), async {
        let kafka = tokio::task::spawn_blocking(Kafka::start).await.unwrap();
        let dir = temp_dir("bad");
        let sink = recording_sink(&dir).await;

        // JSON topic: valid, garbage, valid — all written by Kafka's console producer.
        let first = testdata::metrics_request(1, 1, 3);
        let second = testdata::metrics_request(2, 1, 2);
        let json_lines = [
            serde_json::to_vec(&first).unwrap(),
            b"{\"resourceMetrics\": [{\"broken".to_vec(),
            serde_json::to_vec(&second).unwrap(),
        ];
        {
            let lines: Vec<&[u8]> = json_lines.iter().map(Vec::as_slice).collect();
            kafka.produce_lines("bad-json", &lines);
        }
        // Proto topic: a garbage message between valid ones from an agent.
        let agent = agent(&kafka, "    metrics:\n      topic: bad-proto\n").await;
        send_metrics(&agent, testdata::metrics_request(1, 2, 5))
            .await
            .expect("agent accepts");
        kafka.produce_lines("bad-proto", &[b"not protobuf at all"]);
        send_metrics(&agent, testdata::metrics_request(1, 1, 7))
            .await
            .expect("agent accepts");

        let receivers = format!(
            "{}{}",
            kafka_receiver(
                "kafka/json",
                &kafka,
                "bad-json",
                "    metrics:\n      topics: [bad-json]\n      encoding: otlp_json\n"
            ),
            kafka_receiver(
                "kafka/proto",
                &kafka,
                "bad-proto",
                "    metrics:\n      topics: [bad-proto]\n"
            ),
        );
        let gateway = gateway(&receivers, "kafka/json, kafka/proto", &sink, &["metrics"]).await;
        // 3 + 4 (JSON) + 10 + 7 (proto) points.
        let expected = 3 + 4 + 10 + 7;
        let all = wait_until(Duration::from_secs(60), || {
            sink.state.stats().metrics.items >= expected
        })
        .await;
        assert!(
            all,
            "only {} of {expected} points arrived\n{}",
            sink.state.stats().metrics.items,
            gateway.log()
        );
        let failed_json = gateway
            .wait_metric(
                "otelcol_kafka_receiver_unmarshal_failed_metric_points",
                &[("name", "kafka/json")],
                Duration::from_secs(10),
                |v| v >= 1.0,
            )
            .await;
        let failed_proto = gateway
            .metric(
                "otelcol_kafka_receiver_unmarshal_failed_metric_points",
                &[("name", "kafka/proto")],
            )
            .await;
        assert_eq!(failed_json, 1.0, "one undecodable JSON message counted");
        assert_eq!(
            failed_proto, 1.0,
            "one undecodable protobuf message counted"
        );
        let messages = gateway
            .metric("otelcol_kafka_receiver_messages", &[("name", "kafka/json")])
            .await;
        assert_eq!(messages, 3.0);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            sink.state.stats().metrics.items,
            expected,
            "no duplicates, nothing else"
        );
        let log = gateway.log();
        assert!(
            log.contains("cannot be decoded") && log.contains("offset"),
            "the skipped message is logged with its offset:\n{log}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_pipeline_pauses_the_partition_and_skips_nothing() {
    bounded(Duration::from_secs(300), async {
        let kafka = tokio::task::spawn_blocking(Kafka::start).await.unwrap();
        let topic = "refuse-metrics";
        let dir = temp_dir("refuse");
        let sink = recording_sink(&dir).await;
        common::set_mode(&sink, serde_json::json!({"down": true}));
        let agent = agent(&kafka, &format!("    metrics:\n      topic: {topic}\n")).await;
        let total = 60u64;
        for seq in 1..=total {
            send_metrics(&agent, numbered_request(seq)).await.expect("agent accepts");
        }
        // The gateway's exporter queue holds 2 requests: with the sink down, its pipeline
        // refuses (queue full) and the receiver must hold and re-offer, not skip.
        let receivers = kafka_receiver(
            "kafka",
            &kafka,
            "refusing",
            &format!("    metrics:\n      topics: [{topic}]\n"),
        );
        let components = format!(
            "{receivers}exporters:\n  otlp:\n    endpoint: {}\n    tls:\n      insecure: true\n    sending_queue:\n      queue_size: 2\n      num_consumers: 1\n{}",
            sink.grpc_addr,
            common::FAST_RETRY
        );
        let gateway = Oxcol::start(
            "",
            &components,
            "    metrics:\n      receivers: [otlp, kafka]\n      exporters: [otlp]\n",
        )
        .await;
        let refused = gateway
            .wait_metric(
                "otelcol_receiver_refused_metric_points",
                &[("receiver", "kafka")],
                Duration::from_secs(60),
                |v| v >= 3.0,
            )
            .await;
        assert!(refused >= 3.0, "the pipeline never refused\n{}", gateway.log());
        common::set_mode(&sink, serde_json::json!({"down": false}));
        let all = wait_until(Duration::from_secs(90), || {
            let arrived = arrived_sequences(&dir);
            (1..=total as i64).all(|seq| arrived.contains_key(&seq))
        })
        .await;
        let arrived = arrived_sequences(&dir);
        let missing: Vec<i64> = (1..=total as i64).filter(|s| !arrived.contains_key(s)).collect();
        assert!(all, "messages skipped: {missing:?}\n{}", gateway.log());
        let failed = gateway
            .metric("otelcol_kafka_receiver_unmarshal_failed_metric_points", &[])
            .await;
        assert_eq!(failed, 0.0);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}
