//! Shared machinery of the processors (not components): the Collector's attribute
//! semantics and matchers, used by several processors so each idea is written once.
//!
//! - `pvalue`: OTLP values with Go `pcommon` semantics (AsString, FromRaw, map operations).
//! - `attraction`: the attribute action engine (`attributes`, `resource`).
//! - `filter`: `include`/`exclude` match properties (`attributes`).
//! - `ottl_config`: OTTL statement/condition list entries and contexts (`filter`, `transform`).

pub mod attraction;
pub mod filter;
pub mod ottl_config;
pub mod pvalue;
