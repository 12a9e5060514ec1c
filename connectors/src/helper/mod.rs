//! Shared machinery of the connectors: the `Connector` contract and OTLP attribute helpers.
//! Nothing here is a component.

pub mod attributes;
pub mod connector;
#[cfg(test)]
pub mod testing;
