use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use oxcol_core::{Batch, Data, Processor};

use super::*;
use crate::helper::pvalue::ConfigValue;

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(v.into())),
    }
}
fn kv(k: &str, v: AnyValue) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(v),
        ..Default::default()
    }
}

fn config() -> Config {
    Config {
        attributes: vec![
            ActionConfig {
                key: "cloud.zone".into(),
                value: Some(ConfigValue(s("zone-1"))),
                action: "upsert".into(),
                ..Default::default()
            },
            ActionConfig {
                key: "host.secret".into(),
                action: "delete".into(),
                ..Default::default()
            },
            ActionConfig {
                key: "service.name".into(),
                from_attribute: "k8s.deployment.name".into(),
                action: "insert".into(),
                ..Default::default()
            },
        ],
    }
}

#[test]
fn every_signal_gets_its_resource_attributes_changed() {
    let attrs = vec![
        kv("host.secret", s("x")),
        kv("k8s.deployment.name", s("api")),
    ];
    // upsert appends cloud.zone; delete of host.secret moves the last entry (cloud.zone)
    // into its place, as Go's pcommon.Map.Remove does; insert appends service.name.
    let expected = vec![
        kv("cloud.zone", s("zone-1")),
        kv("k8s.deployment.name", s("api")),
        kv("service.name", s("api")),
    ];
    let mut processor = ResourceProcessor::new("resource", &config()).expect("valid config");
    let resource = Some(Resource {
        attributes: attrs,
        ..Default::default()
    });

    let out = processor
        .process(Batch::from_traces(vec![ResourceSpans {
            resource: resource.clone(),
            ..Default::default()
        }]))
        .expect("processed");
    let Data::Traces(r) = out.data() else {
        panic!("traces")
    };
    assert_eq!(
        r[0].resource.as_ref().map(|r| r.attributes.clone()),
        Some(expected.clone())
    );

    let out = processor
        .process(Batch::from_logs(vec![ResourceLogs {
            resource: resource.clone(),
            ..Default::default()
        }]))
        .expect("processed");
    let Data::Logs(r) = out.data() else {
        panic!("logs")
    };
    assert_eq!(
        r[0].resource.as_ref().map(|r| r.attributes.clone()),
        Some(expected.clone())
    );

    let out = processor
        .process(Batch::from_metrics(vec![ResourceMetrics {
            resource,
            ..Default::default()
        }]))
        .expect("processed");
    let Data::Metrics(r) = out.data() else {
        panic!("metrics")
    };
    assert_eq!(
        r[0].resource.as_ref().map(|r| r.attributes.clone()),
        Some(expected)
    );
}

#[test]
fn a_missing_resource_is_created_when_an_action_adds_to_it() {
    let mut processor = ResourceProcessor::new("resource", &config()).expect("valid config");
    let out = processor
        .process(Batch::from_traces(vec![ResourceSpans::default()]))
        .expect("processed");
    let Data::Traces(r) = out.data() else {
        panic!("traces")
    };
    assert_eq!(
        r[0].resource.as_ref().map(|r| r.attributes.clone()),
        Some(vec![kv("cloud.zone", s("zone-1"))])
    );
}

#[test]
fn config_needs_valid_attributes() {
    assert!(Config::default().validate()[0].contains("\"attributes\" is missing"));
    let bad = Config {
        attributes: vec![ActionConfig {
            key: "k".into(),
            action: "insert".into(),
            ..Default::default()
        }],
    };
    assert!(bad.validate()[0].starts_with("attributes[0]"));
    assert!(ResourceProcessor::new("resource/x", &bad).is_err());
}
