//! The `forward` connector: passes every batch unchanged from the pipelines that export to
//! it to the pipelines that receive from it (same signal). It keeps no state and never
//! decodes the data.

use std::time::SystemTime;

use oxcol_core::{Batch, Refusal, Signal};
use serde::Deserialize;

use crate::helper::connector::{Connector, Output};

pub const TYPE: &str = "forward";
pub const ALIASES: &[&str] = &["forward"];
/// (from, to) signal pairs: any signal to itself.
pub const PAIRS: &[(Signal, Signal)] = &[
    (Signal::Metrics, Signal::Metrics),
    (Signal::Traces, Signal::Traces),
    (Signal::Logs, Signal::Logs),
];

/// `forward` has no settings.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        Vec::new()
    }
}

#[derive(Debug, Default)]
pub struct ForwardConnector;

impl Connector for ForwardConnector {
    fn consume(&mut self, batch: Batch, _now: SystemTime) -> Result<Vec<Output>, Refusal> {
        Ok(vec![Output::all(batch)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn batches_pass_unchanged_and_stay_encoded() {
        let encoded =
            Batch::from_encoded_counted(Signal::Logs, Bytes::from_static(&[0x0a, 0x00]), 0);
        let out = ForwardConnector
            .consume(encoded, SystemTime::now())
            .expect("forward never refuses");
        assert_eq!(out.len(), 1);
        assert!(out[0].pipelines.is_none());
        assert!(
            matches!(out[0].batch.data(), oxcol_core::Data::Encoded(s) if s[0].as_ref() == [0x0a, 0x00])
        );
    }
}
