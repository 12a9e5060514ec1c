//! oxcol-receivers: where data enters a pipeline.
//!
//! Each receiver is one module with its `TYPE`, accepted spellings, a `Config` with the
//! Collector's keys and defaults, `validate()`, and `start()`, which binds what it needs
//! (so a taken port fails at start, naming the receiver) and serves until shutdown.

pub mod cgroup;
pub mod otlp;
pub mod pprof;
pub mod prometheus;
mod proc_text;
pub mod scrape_http;
pub mod scraper;
pub mod smaps;
