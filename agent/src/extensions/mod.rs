//! Extensions: components outside pipelines (health checks, authenticators, storage later).

pub mod basicauth;
pub mod bearertokenauth;
pub mod headers_setter;
pub mod health_check;
pub mod pprof;
pub mod zpages;
