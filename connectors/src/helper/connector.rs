//! The contract between the agent and a connector.

use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use oxcol_core::{Batch, Data, Refusal};

/// A batch a connector hands downstream.
#[derive(Clone, Debug)]
pub struct Output {
    /// The downstream pipelines that get it: `None` means every pipeline the connector
    /// feeds with the batch's signal.
    pub pipelines: Option<Vec<String>>,
    pub batch: Batch,
}

impl Output {
    /// A batch for every downstream pipeline of its signal.
    pub fn all(batch: Batch) -> Output {
        Output {
            pipelines: None,
            batch,
        }
    }
}

/// One connector instance: one id and one (from-signal, to-signal) pair, as the Collector
/// builds them.
pub trait Connector: Send {
    /// Takes a batch exported by an upstream pipeline; returns what to hand downstream now.
    /// A refusal goes back to the upstream receiver.
    fn consume(&mut self, batch: Batch, now: SystemTime) -> Result<Vec<Output>, Refusal>;

    /// How often `tick` is called (wall clock); `None`: never.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// Called every `tick_interval`: aggregating connectors release their metrics here.
    fn tick(&mut self, _now: SystemTime) -> Vec<Output> {
        Vec::new()
    }

    /// Called once when the upstream pipelines have stopped: a final flush.
    fn shutdown(&mut self, now: SystemTime) -> Vec<Output> {
        self.tick(now)
    }
}

/// Nanoseconds since the Unix epoch (0 for a clock before 1970).
pub fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Metrics a connector made, as one resource (with `resource_attributes`) and one scope
/// named `scope_name` (the connector's).
pub fn resource_metrics(
    resource_attributes: Vec<KeyValue>,
    scope_name: &str,
    metrics: Vec<Metric>,
) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes: resource_attributes,
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: scope_name.to_string(),
                ..Default::default()
            }),
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The decoded spans of `batch`, for a connector that takes only traces (`name` names it
/// in the refusal of any other signal).
pub fn decoded_traces<'b>(
    batch: &'b mut Batch,
    name: &str,
) -> Result<&'b [ResourceSpans], Refusal> {
    batch.decode().map_err(|e| Refusal::Invalid {
        reason: e.to_string(),
    })?;
    match batch.data() {
        Data::Traces(resources) => Ok(resources),
        _ => Err(Refusal::Invalid {
            reason: format!("{name} takes traces, got {}", batch.signal()),
        }),
    }
}

/// A resource's attributes and its `service.name` as a string; None without one (the
/// Collector's span connectors skip such resources).
pub fn service_of(resource: &ResourceSpans) -> Option<(&[KeyValue], String)> {
    let attributes = resource
        .resource
        .as_ref()
        .map_or(&[][..], |r| &r.attributes);
    let service = super::attributes::find(attributes, "service.name")?;
    Some((attributes, super::attributes::as_string(service)))
}
