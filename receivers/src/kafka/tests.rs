use super::*;
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use oxcol_core::Batch;
use oxcol_core::testdata;
use prost::Message as _;

fn decode_config(json: serde_json::Value) -> Result<Config, String> {
    serde_json::from_value(json).map_err(|e| e.to_string())
}

fn property<'a>(properties: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    properties
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn defaults_are_the_collectors_except_message_marking() {
    let config = decode_config(serde_json::json!({})).unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    assert_eq!(config.brokers, vec!["localhost:9092".to_string()]);
    assert_eq!(config.group_id, "otel-collector");
    assert_eq!(config.client_id, "otel-collector");
    assert_eq!(config.initial_offset, "latest");
    assert!(config.autocommit.enable);
    assert_eq!(config.autocommit.interval.get(), Duration::from_secs(1));
    assert_eq!(config.session_timeout.get(), Duration::from_secs(10));
    assert_eq!(config.heartbeat_interval.get(), Duration::from_secs(3));
    assert_eq!(config.max_partition_fetch_size, 1_048_576);
    assert_eq!(config.max_fetch_size, 1_048_576);
    // oxcol: commit only after the pipeline accepted (the Collector: before).
    assert!(config.message_marking.after);
    assert!(!config.message_marking.on_error);
    assert!(config.message_marking.on_permanent_error);
    for (signal, topic) in [
        (Signal::Metrics, "otlp_metrics"),
        (Signal::Traces, "otlp_spans"),
        (Signal::Logs, "otlp_logs"),
    ] {
        let source = config.source(signal).unwrap();
        assert_eq!(source.topics, vec![topic.to_string()]);
        assert_eq!(source.encoding, Encoding::OtlpProto);
    }
    let properties = config.consumer_properties();
    assert_eq!(property(&properties, "group.id"), Some("otel-collector"));
    assert_eq!(property(&properties, "auto.offset.reset"), Some("latest"));
    assert_eq!(
        property(&properties, "enable.auto.offset.store"),
        Some("false")
    );
    assert_eq!(property(&properties, "enable.auto.commit"), Some("true"));
    assert_eq!(
        property(&properties, "auto.commit.interval.ms"),
        Some("1000")
    );
    assert_eq!(property(&properties, "session.timeout.ms"), Some("10000"));
    // Bounds what a consumer with a backlog pre-fetches (integration/kafka-bench: peak RSS
    // 24 MiB instead of 72 to 99 MiB with librdkafka's 50 MiB).
    assert_eq!(property(&properties, "fetch.max.bytes"), Some("1048576"));
}

#[test]
fn signal_keys_win_over_older_top_level_ones() {
    let config = decode_config(serde_json::json!({
        "topic": "everything",
        "encoding": "otlp_json",
        "traces": {"topics": ["a", "^b-.*"], "encoding": "otlp_proto", "exclude_topics": ["^b-old$"]},
        "logs": {"topic": "legacy-logs"},
        "initial_offset": "earliest",
        "autocommit": {"enable": false},
        "group_rebalance_strategy": "sticky",
    }))
    .unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let traces = config.source(Signal::Traces).unwrap();
    assert_eq!(traces.topics, vec!["a".to_string(), "^b-.*".to_string()]);
    assert_eq!(traces.encoding, Encoding::OtlpProto);
    assert_eq!(traces.exclude_topics, vec!["^b-old$".to_string()]);
    let logs = config.source(Signal::Logs).unwrap();
    assert_eq!(logs.topics, vec!["legacy-logs".to_string()]);
    assert_eq!(logs.encoding, Encoding::OtlpJson);
    let metrics = config.source(Signal::Metrics).unwrap();
    assert_eq!(metrics.topics, vec!["everything".to_string()]);
    let properties = config.consumer_properties();
    assert_eq!(property(&properties, "auto.offset.reset"), Some("earliest"));
    assert_eq!(property(&properties, "enable.auto.commit"), Some("false"));
    assert_eq!(property(&properties, "auto.commit.interval.ms"), None);
    assert_eq!(
        property(&properties, "partition.assignment.strategy"),
        Some("cooperative-sticky")
    );
}

#[test]
fn validation_lists_every_problem() {
    let config = decode_config(serde_json::json!({
        "group_id": "",
        "initial_offset": "newest",
        "group_rebalance_strategy": "fair",
        "metrics": {"topics": ["m"], "exclude_topics": ["x"], "encoding": "prometheus"},
        "traces": {"topics": ["^("], "topic": "t"},
        "logs": {"topics": ["^l.*"], "exclude_topics": [""]},
        "header_extraction": {"extract_headers": true},
        "heartbeat_interval": "20s",
    }))
    .unwrap();
    let errors = config.validate().join("\n");
    for needle in [
        "group_id must not be empty",
        "\"newest\"",
        "\"fair\"",
        "metrics.exclude_topics is configured but none",
        "prometheus",
        "otlp_proto, otlp_json",
        "not a valid regular expression",
        "traces: set either topics or the deprecated topic",
        "empty string",
        "header_extraction.headers",
        "heartbeat_interval",
    ] {
        assert!(errors.contains(needle), "{needle} missing in:\n{errors}");
    }
}

#[test]
fn unknown_keys_are_refused() {
    let error = decode_config(serde_json::json!({"group": "x"})).unwrap_err();
    assert!(error.contains("group"), "{error}");
    let error =
        decode_config(serde_json::json!({"message_marking": {"before": true}})).unwrap_err();
    assert!(error.contains("before"), "{error}");
}

#[test]
fn messages_decode_in_both_encodings_and_garbage_is_an_error() {
    let request = testdata::metrics_request(2, 2, 3);
    let proto = request.encode_to_vec();
    let batch = decode(Signal::Metrics, Encoding::OtlpProto, &proto).unwrap();
    assert_eq!(batch.items(), 12);
    assert_eq!(batch.to_bytes(), Bytes::from(proto));
    let json = serde_json::to_vec(&request).unwrap();
    let mut batch = decode(Signal::Metrics, Encoding::OtlpJson, &json).unwrap();
    assert_eq!(batch.items(), 12);
    assert_eq!(batch.metrics_mut().unwrap(), &request.resource_metrics);
    assert!(
        decode(
            Signal::Metrics,
            Encoding::OtlpProto,
            b"\xff\xff\xff garbage"
        )
        .is_err()
    );
    assert!(decode(Signal::Traces, Encoding::OtlpJson, b"{not json").is_err());
    // An empty value (a tombstone) is an empty batch, not an error.
    assert!(
        decode(Signal::Logs, Encoding::OtlpProto, b"")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn header_attributes_replace_same_named_resource_attributes() {
    let request = testdata::logs_request(2, 1);
    let mut batch = Batch::from_logs(request.resource_logs);
    let attribute = |value: &str| KeyValue {
        key: "kafka.header.tenant".to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    };
    add_resource_attributes(&mut batch, &[attribute("a")]).unwrap();
    add_resource_attributes(&mut batch, &[attribute("b")]).unwrap();
    for resource in batch.logs_mut().unwrap() {
        let tenants: Vec<&KeyValue> = resource
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .filter(|a| a.key == "kafka.header.tenant")
            .collect();
        assert_eq!(tenants, vec![&attribute("b")]);
    }
}

#[test]
fn error_backoff_is_off_by_default_and_takes_configretry_defaults_when_enabled() {
    let config = decode_config(serde_json::json!({})).unwrap();
    assert!(!config.error_backoff.enabled);
    let mut pauses = Pauses::new(&config.error_backoff);
    let waits: Vec<Duration> = (0..8).map(|_| pauses.next()).collect();
    assert_eq!(waits[0], Duration::from_millis(100));
    assert_eq!(waits[1], Duration::from_millis(200));
    assert_eq!(waits[7], Duration::from_secs(5), "{waits:?}");
    assert!(
        !pauses.expired(),
        "without error_backoff a message is never given up"
    );

    let config = decode_config(serde_json::json!({
        "error_backoff": {"enabled": true, "initial_interval": "1s", "max_interval": "3s",
                          "randomization_factor": 0, "max_elapsed_time": "0s"}
    }))
    .unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    assert_eq!(config.error_backoff.multiplier, 1.5);
    let mut pauses = Pauses::new(&config.error_backoff);
    let waits: Vec<Duration> = (0..5).map(|_| pauses.next()).collect();
    assert_eq!(
        waits,
        vec![
            Duration::from_secs(1),
            Duration::from_millis(1500),
            Duration::from_millis(2250),
            Duration::from_secs(3),
            Duration::from_secs(3)
        ]
    );

    let expiring = ErrorBackoff {
        enabled: true,
        max_elapsed_time: oxcol_core::GoDuration::from_millis(1),
        ..ErrorBackoff::default()
    };
    let pauses = Pauses::new(&expiring);
    std::thread::sleep(Duration::from_millis(5));
    assert!(pauses.expired());

    let bad = decode_config(serde_json::json!({
        "error_backoff": {"multiplier": 0.5, "randomization_factor": 2}
    }))
    .unwrap();
    let errors = bad.validate().join("\n");
    assert!(errors.contains("error_backoff.multiplier"), "{errors}");
    assert!(
        errors.contains("error_backoff.randomization_factor"),
        "{errors}"
    );
}

#[test]
fn collector_v0162_consumer_keys_map_to_librdkafka_or_are_refused_clearly() {
    let config = decode_config(serde_json::json!({})).unwrap();
    // The Collector's conn_idle_timeout default, 9m.
    assert_eq!(
        property(&config.consumer_properties(), "connections.max.idle.ms"),
        Some("540000")
    );
    assert_eq!(
        property(
            &config.consumer_properties(),
            "partition.assignment.strategy"
        ),
        None
    );
    let config = decode_config(serde_json::json!({
        "group_rebalance_strategies": ["range", "roundrobin", "range"],
        "conn_idle_timeout": "30s",
        "partition_processing": {"max_buffered_batches": 4},
    }))
    .unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let properties = config.consumer_properties();
    assert_eq!(
        property(&properties, "partition.assignment.strategy"),
        Some("range,roundrobin")
    );
    assert_eq!(
        property(&properties, "connections.max.idle.ms"),
        Some("30000")
    );
    let sticky =
        decode_config(serde_json::json!({"group_rebalance_strategies": ["sticky"]})).unwrap();
    assert!(sticky.validate().is_empty());
    assert_eq!(
        property(
            &sticky.consumer_properties(),
            "partition.assignment.strategy"
        ),
        Some("cooperative-sticky")
    );
    let refused = |json: serde_json::Value, wanted: &str| {
        let errors = decode_config(json).unwrap().validate();
        assert!(
            errors.iter().any(|e| e.contains(wanted)),
            "{wanted:?} not in {errors:?}"
        );
    };
    refused(
        serde_json::json!({"group_rebalance_strategies": ["cooperative-sticky", "range"]}),
        "cannot be mixed",
    );
    refused(
        serde_json::json!({"group_rebalance_strategies": ["my_balancer"]}),
        "\"my_balancer\" is not one of",
    );
    refused(
        serde_json::json!({"group_rebalance_strategy": "range", "group_rebalance_strategies": ["range"]}),
        "cannot both be set",
    );
    refused(
        serde_json::json!({"partition_processing": {"independent": true}}),
        "partition_processing.independent: true is not supported",
    );
    refused(
        serde_json::json!({"partition_processing": {"max_buffered_batches": 0}}),
        "max_buffered_batches must be greater than zero",
    );
    refused(
        serde_json::json!({"conn_idle_timeout": "0s"}),
        "conn_idle_timeout must be more than 0",
    );
}
