//! The pprof `profile.proto` messages (package `perftools.profiles`, proto3): the types
//! prost-build generates from google/pprof's vendored `proto/profile.proto` (`oxcol-proto`,
//! proto/vendor/README.md).

pub use oxcol_proto::pprof::*;
