//! `resource`: applies attribute actions (insert, update, upsert, delete, hash, extract,
//! convert) to the resource attributes of every signal, exactly as the Collector's
//! resource processor does. The action engine is `helper::attraction`, shared with
//! `attributes`. A resource that has no `resource` message yet gets one when an action
//! adds an attribute. Never drops or refuses data (only a batch that cannot be decoded
//! is refused); keeps no state.

use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_core::{Batch, Processor, Refusal, Signal};
use serde::Deserialize;

use crate::helper::attraction::{self, ActionConfig, AttrProc};

pub const TYPE: &str = "resource";
pub const ALIASES: &[&str] = &["resource"];

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Actions on resource attributes, applied in order. Required (at least one).
    pub attributes: Vec<ActionConfig>,
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.attributes.is_empty() {
            problems.push("\"attributes\" is missing: list at least one action (e.g. {key: deployment.environment, value: prod, action: upsert})".to_string());
        }
        problems.extend(attraction::validate(&self.attributes, "attributes"));
        problems
    }
}

pub struct ResourceProcessor {
    id: String,
    actions: AttrProc,
}

impl ResourceProcessor {
    pub fn new(id: &str, config: &Config) -> Result<ResourceProcessor, String> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(ResourceProcessor {
            id: id.to_string(),
            actions: AttrProc::new(&config.attributes, "attributes")?,
        })
    }

    fn apply(&self, resource: &mut Option<Resource>) {
        let resource = resource.get_or_insert_with(Resource::default);
        self.actions.process(&mut resource.attributes);
    }
}

impl Processor for ResourceProcessor {
    fn process(&mut self, mut batch: Batch) -> Result<Batch, Refusal> {
        let id = self.id.clone();
        let refuse = |e: oxcol_core::batch::BatchError| Refusal::Invalid {
            reason: format!("processor {id}: cannot decode the batch: {e}"),
        };
        match batch.signal() {
            Signal::Traces => batch
                .traces_mut()
                .map_err(refuse)?
                .iter_mut()
                .for_each(|r| self.apply(&mut r.resource)),
            Signal::Logs => batch
                .logs_mut()
                .map_err(refuse)?
                .iter_mut()
                .for_each(|r| self.apply(&mut r.resource)),
            Signal::Metrics => batch
                .metrics_mut()
                .map_err(refuse)?
                .iter_mut()
                .for_each(|r| self.apply(&mut r.resource)),
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests;
