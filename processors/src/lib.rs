//! oxcol-processors: what runs inside a pipeline, in order, synchronously.
//!
//! Each processor is one module with its `TYPE`, accepted spellings, a `Config` with the
//! Collector's keys and defaults, and `validate()`. `batch` is the pipeline's grouping
//! stage (it owns time and acknowledgements); the others implement
//! `oxcol_core::Processor`.

pub mod batch;
pub mod burnrate;
pub mod checkpoint;
pub mod ewma;
pub mod memory_limiter;
pub mod relabel;
pub mod units;
