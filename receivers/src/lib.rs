//! oxcol-receivers: where data enters a pipeline.
//!
//! Each receiver is one module with its `TYPE`, accepted spellings, a `Config` with the
//! Collector's keys and defaults, `validate()`, and `start()`, which binds what it needs
//! (so a taken port fails at start, naming the receiver) and serves until shutdown.

pub mod cgroup;
pub mod filelog;
pub mod hostmetrics;
pub mod jaeger;
pub mod journald;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod kafka_message;
pub mod otlp;
pub mod pprof;
mod proc_text;
pub mod prometheus;
pub mod scrape_http;
pub mod scraper;
mod server;
pub mod smaps;
pub mod statsd;
pub mod storage;
pub mod zipkin;
