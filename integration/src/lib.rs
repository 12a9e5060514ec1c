//! oxcol-integration: `oxcol-bench`, the OTLP sink and load generator used by end-to-end
//! tests and benchmarks, and helpers for tests that drive them.
//!
//! Both tools move encoded OTLP bytes and count items with the skeleton scan, so they stay
//! much cheaper than the collector they measure. Nothing here is part of the oxcol binary.

pub mod child;
pub mod compare;
pub mod control_client;
pub mod kafka;
pub mod kube;
pub mod load;
pub mod net;
pub mod oracle;
pub mod otlp;
pub mod peers;
pub mod prometheus;
pub mod prometheus3;
pub mod sink;

#[cfg(test)]
mod loopback_tests;
