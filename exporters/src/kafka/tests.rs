use super::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use oxcol_core::testdata;

fn decode_config(json: serde_json::Value) -> Result<Config, String> {
    serde_json::from_value(json).map_err(|e| e.to_string())
}

#[test]
fn defaults_are_the_collectors_except_required_acks() {
    let config = decode_config(serde_json::json!({})).unwrap();
    assert_eq!(config.brokers, vec!["localhost:9092".to_string()]);
    assert_eq!(config.client_id, "otel-collector");
    assert_eq!(config.timeout.get(), Duration::from_secs(5));
    assert_eq!(config.producer.max_message_bytes, 1_000_000);
    assert_eq!(config.producer.compression, "none");
    assert!(config.producer.allow_auto_topic_creation);
    // oxcol: all in-sync replicas and idempotence (the Collector: 1).
    assert_eq!(config.producer.required_acks, -1);
    let properties = config.producer_properties();
    assert!(properties.contains(&("acks", "all".to_string())));
    assert!(properties.contains(&("enable.idempotence", "true".to_string())));
    assert!(properties.contains(&("message.timeout.ms", "5000".to_string())));
    for (signal, topic) in [
        (Signal::Metrics, "otlp_metrics"),
        (Signal::Traces, "otlp_spans"),
        (Signal::Logs, "otlp_logs"),
    ] {
        assert_eq!(
            config.target(signal).unwrap(),
            SignalTarget {
                topic: topic.to_string(),
                encoding: Encoding::OtlpProto
            }
        );
    }
    assert!(config.validate().is_empty(), "{:?}", config.validate());
}

#[test]
fn top_level_topic_and_encoding_fill_only_unset_signal_keys() {
    let config = decode_config(serde_json::json!({
        "topic": "all",
        "encoding": "otlp_json",
        "traces": {"topic": "spans", "encoding": "otlp_proto"},
        "logs": {"encoding": "otlp_proto"},
        "producer": {"required_acks": 1, "compression": "zstd"}
    }))
    .unwrap();
    assert_eq!(config.target(Signal::Traces).unwrap().topic, "spans");
    assert_eq!(
        config.target(Signal::Traces).unwrap().encoding,
        Encoding::OtlpProto
    );
    assert_eq!(config.target(Signal::Metrics).unwrap().topic, "all");
    assert_eq!(
        config.target(Signal::Metrics).unwrap().encoding,
        Encoding::OtlpJson
    );
    assert_eq!(config.target(Signal::Logs).unwrap().topic, "all");
    assert_eq!(
        config.target(Signal::Logs).unwrap().encoding,
        Encoding::OtlpProto
    );
    let properties = config.producer_properties();
    assert!(properties.contains(&("acks", "1".to_string())));
    assert!(properties.contains(&("enable.idempotence", "false".to_string())));
    assert!(properties.contains(&("compression.codec", "zstd".to_string())));
}

#[test]
fn required_acks_accepts_all_and_numbers_and_refuses_others() {
    let all = decode_config(serde_json::json!({"producer": {"required_acks": "all"}})).unwrap();
    assert_eq!(all.producer.required_acks, -1);
    let zero = decode_config(serde_json::json!({"producer": {"required_acks": 0}})).unwrap();
    assert_eq!(zero.producer.required_acks, 0);
    assert!(decode_config(serde_json::json!({"producer": {"required_acks": "most"}})).is_err());
    let two = decode_config(serde_json::json!({"producer": {"required_acks": 2}})).unwrap();
    assert!(two.validate().iter().any(|e| e.contains("required_acks")));
}

#[test]
fn unknown_keys_are_refused() {
    let error = decode_config(serde_json::json!({"brokerz": ["a:1"]})).unwrap_err();
    assert!(error.contains("brokerz"), "{error}");
    let error = decode_config(serde_json::json!({"metrics": {"topics": ["a"]}})).unwrap_err();
    assert!(error.contains("topics"), "{error}");
}

#[test]
fn validation_lists_every_problem() {
    let config = decode_config(serde_json::json!({
        "brokers": [],
        "metrics": {"encoding": "zipkin_json"},
        "traces": {"topic": ""},
        "producer": {"compression": "brotli", "max_message_bytes": 10},
        "topic_from_attribute": "service.name",
        "include_metadata_keys": ["tenant"],
        "partition_logs_by_trace_id": true,
    }))
    .unwrap();
    let errors = config.validate().join("\n");
    for needle in [
        "brokers must list",
        "zipkin_json",
        "otlp_proto, otlp_json",
        "traces.topic must not be empty",
        "brotli",
        "max_message_bytes",
        "topic_from_attribute",
        "include_metadata_keys",
        "partition_logs_by_trace_id",
    ] {
        assert!(errors.contains(needle), "{needle} missing in:\n{errors}");
    }
}

#[test]
fn proto_records_are_the_received_bytes_unchanged() {
    let request = testdata::metrics_request(2, 3, 4);
    let bytes = Bytes::from(request.encode_to_vec());
    let batch = Batch::from_encoded(Signal::Metrics, bytes.clone()).unwrap();
    let mut out = Vec::new();
    fit(batch, Encoding::OtlpProto, 1_000_000, &None, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].value, bytes);
    assert_eq!(out[0].items, 24);
}

#[test]
fn json_records_decode_back_to_the_same_request() {
    let request = testdata::trace_request(2, 3);
    let mut batch = Batch::from_traces(request.resource_spans.clone());
    let value = encode(&mut batch, Encoding::OtlpJson).unwrap();
    let text = std::str::from_utf8(&value).unwrap();
    assert!(text.starts_with("{\"resourceSpans\":["), "{text}");
    let back: ExportTraceServiceRequest = serde_json::from_slice(&value).unwrap();
    assert_eq!(back, request);

    let logs = testdata::logs_request(1, 2);
    let mut batch = Batch::from_logs(logs.resource_logs.clone());
    let back: ExportLogsServiceRequest =
        serde_json::from_slice(&encode(&mut batch, Encoding::OtlpJson).unwrap()).unwrap();
    assert_eq!(back, logs);
}

#[test]
fn batches_larger_than_max_message_bytes_are_split_and_keep_every_item() {
    let request = testdata::metrics_request(8, 4, 10);
    let total = Batch::from_metrics(request.resource_metrics.clone()).items();
    let encoded_len = request.encoded_len();
    let batch = Batch::from_encoded(Signal::Metrics, request.encode_to_vec().into()).unwrap();
    let max = encoded_len / 3;
    let mut out = Vec::new();
    fit(batch, Encoding::OtlpProto, max, &None, &mut out).unwrap();
    assert!(out.len() >= 3, "{} records", out.len());
    assert!(out.iter().all(|r| r.value.len() <= max));
    assert_eq!(out.iter().map(|r| r.items).sum::<u64>(), total);
    let mut points = 0;
    for record in &out {
        let piece = ExportMetricsServiceRequest::decode(record.value.clone()).unwrap();
        points += Batch::from_metrics(piece.resource_metrics).items();
    }
    assert_eq!(points, total);
}

#[test]
fn traces_partitioned_by_id_give_one_keyed_message_per_trace() {
    let mut request = testdata::trace_request(2, 3);
    // Resource 0 holds spans of traces A and B; resource 1 spans of trace B only.
    request.resource_spans[0].scope_spans[0].spans[2].trace_id = vec![2; 16];
    let batch = Batch::from_traces(request.resource_spans.clone());
    let groups = partition(batch, Partitioning::ByTraceId).unwrap();
    let keys: Vec<String> = groups.iter().map(|(k, _)| k.clone().unwrap()).collect();
    assert_eq!(keys, vec![hex(&[1; 16]), hex(&[2; 16])]);
    let (_, trace_a) = &groups[0];
    let (_, trace_b) = &groups[1];
    assert_eq!(trace_a.items(), 2);
    assert_eq!(trace_b.items(), 4);
    let mut trace_b = trace_b.clone();
    let resources = trace_b.traces_mut().unwrap();
    // Trace B keeps both resources it came from, each with its own attributes.
    assert_eq!(resources.len(), 2);
    assert_eq!(resources[0].resource, request.resource_spans[0].resource);
    assert_eq!(resources[1].resource, request.resource_spans[1].resource);
    assert!(
        resources
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .all(|s| s.trace_id == vec![2; 16])
    );
}

#[test]
fn resources_partition_by_attribute_hash_independent_of_attribute_order() {
    let request = testdata::metrics_request(3, 1, 1);
    let mut resources = request.resource_metrics.clone();
    // A fourth resource equal to the first but with its attributes reversed.
    let mut twin = resources[0].clone();
    if let Some(resource) = twin.resource.as_mut() {
        resource.attributes.reverse();
    }
    resources.push(twin);
    let groups = partition(Batch::from_metrics(resources), Partitioning::ByResource).unwrap();
    assert_eq!(groups.len(), 3);
    let first_key = resource_key(request.resource_metrics[0].resource.as_ref());
    let twin_group = groups
        .iter()
        .find(|(k, _)| k.as_deref() == Some(first_key.as_str()))
        .unwrap();
    assert_eq!(twin_group.1.items(), 2);
    assert_ne!(
        resource_key(request.resource_metrics[1].resource.as_ref()),
        first_key
    );
}

#[test]
fn size_and_authorization_errors_are_permanent_the_rest_retryable() {
    let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
    assert!(matches!(
        classify(&too_large),
        ExportError::Permanent { .. }
    ));
    let denied = KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed);
    assert!(matches!(classify(&denied), ExportError::Permanent { .. }));
    for code in [
        RDKafkaErrorCode::MessageTimedOut,
        RDKafkaErrorCode::QueueFull,
        RDKafkaErrorCode::NotLeaderForPartition,
        RDKafkaErrorCode::BrokerTransportFailure,
    ] {
        assert!(
            matches!(
                classify(&KafkaError::MessageProduction(code)),
                ExportError::Retryable { .. }
            ),
            "{code:?}"
        );
    }
}

#[test]
fn collector_v0162_producer_keys_linger_and_max_broker_write_bytes() {
    let property = |config: &Config, name: &str| {
        config
            .producer_properties()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    };
    let config = decode_config(serde_json::json!({})).unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    // The Collector's defaults: linger 10ms, idle connections closed after 9m.
    assert_eq!(property(&config, "linger.ms").as_deref(), Some("10"));
    assert_eq!(
        property(&config, "connections.max.idle.ms").as_deref(),
        Some("540000")
    );
    assert_eq!(config.producer.max_broker_write_bytes, 104_857_600);
    let config = decode_config(serde_json::json!({
        "producer": {"linger": "50ms", "max_broker_write_bytes": 209715200},
        "conn_idle_timeout": "1m",
    }))
    .unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    assert_eq!(property(&config, "linger.ms").as_deref(), Some("50"));
    assert_eq!(
        property(&config, "connections.max.idle.ms").as_deref(),
        Some("60000")
    );
    let config = decode_config(serde_json::json!({
        "producer": {"max_message_bytes": 2000000, "max_broker_write_bytes": 1000000},
    }))
    .unwrap();
    let errors = config.validate();
    assert!(
        errors.iter().any(|e| e.contains(
            "max_broker_write_bytes (1000000) must be at least producer.max_message_bytes (2000000)"
        )),
        "{errors:?}"
    );
}
