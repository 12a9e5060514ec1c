//! Remote write protobuf messages: the types prost-build generates from the vendored
//! upstream `.proto` files (`oxcol-proto`, proto/vendor/README.md): `prompb/remote.proto` +
//! `prompb/types.proto` (remote write 1.0, `prometheus.WriteRequest`) and
//! `prompb/io/prometheus/write/v2/types.proto` (remote write 2.0,
//! `io.prometheus.write.v2.Request`).
//!
//! The hot path does not build these: `encode.rs` writes the bytes by hand and its tests
//! pin them, byte for byte and with a randomized comparison, to what prost makes of these
//! generated types. Only exemplars and native histograms (rare) go through them.

/// Remote write 1.0 messages (`package prometheus`).
pub use oxcol_proto::prometheus as v1;
/// Remote write 2.0 messages (`package io.prometheus.write.v2`).
pub use oxcol_proto::write_v2 as v2;
