//! oxcol-exporters: where pipelines send their data.
//!
//! Each exporter is one module with its `TYPE`, accepted spellings (`ALIASES`), a
//! `Config` with the Collector's keys and defaults, `validate()`, and a constructor that
//! returns something implementing `oxcol_core::Exporter` (one attempt per call). The
//! sending queue and retry that wrap every exporter live in [`queue`].

pub mod client;
pub mod debug;
pub mod disk_queue;
pub mod file;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod loadbalancing;
pub mod otlp;
pub mod otlp_json;
pub mod otlphttp;
pub mod prom_translate;
pub mod prometheus;
pub mod prometheusremotewrite;
pub mod queue;
pub mod zipkin;
