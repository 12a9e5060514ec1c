//! oxcol-connectors: components that are the exporter of one pipeline and the receiver of
//! another (forward, routing, count, spanmetrics, servicegraph).
//!
//! A connector is a synchronous state machine, like a processor: the agent hands it each
//! batch its upstream pipelines export (`Connector::consume`) and delivers what comes back
//! to the downstream pipelines, waiting for their answers so the receiver's acknowledgement
//! still means "queued by every exporter downstream". Connectors that aggregate (spanmetrics,
//! servicegraph) answer the upstream batch once it is aggregated and release their metrics
//! from `tick` on a timer. A connector must never block, never hold a lock across an await
//! (it has none), and never grow without bound.
//!
//! Components are the modules named after their type (`forward`, `routing`, `count`, `spanmetrics`,
//! `servicegraph`); shared machinery (the trait, attribute helpers) lives in `helper`.

pub mod count;
pub mod forward;
pub mod helper;
pub mod routing;
pub mod servicegraph;
pub mod spanmetrics;

pub use helper::connector::{Connector, Output};
