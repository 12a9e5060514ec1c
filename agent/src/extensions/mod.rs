//! Extensions: components outside pipelines (health checks, authenticators, storage later).

pub mod basicauth;
pub mod bearertokenauth;
pub mod health_check;
