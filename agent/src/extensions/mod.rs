//! Extensions: components outside pipelines (health checks now, storage later).

pub mod health_check;
