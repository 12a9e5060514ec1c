//! oxcol-core: the data that flows through oxcol and the contracts every component keeps.
//!
//! Components (receivers, processors, exporters) depend on this crate and never on each
//! other. What lives here: the signal type, the batch that flows through pipelines (encoded
//! OTLP bytes, decoded only when a processor reads it), the skeleton scan that counts items
//! without decoding, the pipeline/exporter contracts, compression with size limits,
//! the self-telemetry registry, and the small Kubernetes API client (`kube`) shared by the
//! components that read the API.

pub mod auth;
pub mod batch;
pub mod civil;
pub mod client;
pub mod compression;
pub mod duration;
pub mod grpc;
pub mod kafka;
pub mod kube;
pub mod listen;
pub mod otlp_encode;
pub mod pipeline;
pub mod process;
pub mod proxy;
pub mod relabel;
pub mod reload;
pub mod rpc_status;
pub mod signal;
pub mod skeleton;
pub mod storage;
pub mod telemetry;
pub mod testdata;
pub mod tls;
pub mod units;
pub mod zipkin_proto;

pub use batch::{Batch, BatchSettings, Data};
pub use duration::GoDuration;
pub use pipeline::{
    Admission, Consumers, Envelope, ExportError, ExportOutcome, Exporter, PipelineInput, Processor,
    Refusal,
};
pub use signal::Signal;
