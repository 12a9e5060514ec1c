//! oxcol-processors: what runs inside a pipeline, in order, synchronously.
//!
//! Each processor is one module with its `TYPE`, accepted spellings, a `Config` with the
//! Collector's keys and defaults, and `validate()`. `batch` is the pipeline's grouping
//! stage (it owns time and acknowledgements); the others implement
//! `oxcol_core::Processor`.

pub mod attributes;
pub mod batch;
pub mod burnrate;
pub mod checkpoint;
pub mod cumulativetodelta;
pub mod deltatocumulative;
pub mod ewma;
pub mod filter;
pub mod gofit;
pub mod groupbyattrs;
pub mod helper;
pub mod k8sattributes;
pub mod memory_limiter;
pub mod probabilistic_sampler;
pub mod redaction;
pub mod relabel;
pub mod resource;
pub mod resourcedetection;
pub mod tail_sampling;
pub mod transform;
pub mod units;
