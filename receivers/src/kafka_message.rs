//! What the `kafka` receiver does with one message, without librdkafka: the value decoded
//! as a batch of the topic's signal in the configured encoding, and the wanted headers
//! turned into `kafka.header.<name>` resource attributes. Outside the `kafka` module
//! (which needs the `kafka` feature, i.e. librdkafka) so that the fuzz target
//! `kafka_message` and builds without the feature reach it too.

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_core::kafka::Encoding;
use oxcol_core::{Batch, Signal};

/// A message value as a batch of `signal` (the message says why not). An empty value (a
/// tombstone) is an empty batch.
pub fn decode(signal: Signal, encoding: Encoding, payload: &[u8]) -> Result<Batch, String> {
    match encoding {
        Encoding::OtlpProto => Batch::from_encoded(signal, Bytes::copy_from_slice(payload))
            .map_err(|e| format!("invalid OTLP protobuf: {e}")),
        Encoding::OtlpJson => crate::otlp::json::parse(signal, payload),
    }
}

/// `kafka.header.<name>` attributes of the `wanted` headers among a message's headers
/// (key, value; a header without a value reads as empty), in the message's order; the
/// value is the header's bytes as UTF-8, invalid sequences replaced.
pub fn header_attributes<'a>(
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    wanted: &[String],
) -> Vec<KeyValue> {
    let mut attributes = Vec::new();
    for (key, value) in headers {
        if wanted.iter().any(|w| w == key) {
            let value = String::from_utf8_lossy(value.unwrap_or_default()).into_owned();
            attributes.push(KeyValue {
                key: format!("kafka.header.{key}"),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(value)),
                }),
                ..Default::default()
            });
        }
    }
    attributes
}

/// Sets `attributes` on every resource of the batch (replacing same-named ones). Fails
/// when the batch is still encoded and does not decode.
pub fn add_resource_attributes(batch: &mut Batch, attributes: &[KeyValue]) -> Result<(), String> {
    if attributes.is_empty() {
        return Ok(());
    }
    let set = |resource: &mut Option<Resource>| {
        let resource = resource.get_or_insert_with(Resource::default);
        for attribute in attributes {
            resource.attributes.retain(|a| a.key != attribute.key);
            resource.attributes.push(attribute.clone());
        }
    };
    match batch.signal() {
        Signal::Metrics => batch
            .metrics_mut()
            .map_err(|e| e.to_string())?
            .iter_mut()
            .for_each(|r| set(&mut r.resource)),
        Signal::Traces => batch
            .traces_mut()
            .map_err(|e| e.to_string())?
            .iter_mut()
            .for_each(|r| set(&mut r.resource)),
        Signal::Logs => batch
            .logs_mut()
            .map_err(|e| e.to_string())?
            .iter_mut()
            .for_each(|r| set(&mut r.resource)),
    }
    Ok(())
}
