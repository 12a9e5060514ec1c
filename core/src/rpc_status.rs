//! The few well-known protobuf messages OTLP error handling needs, declared by hand
//! (no types crate for them on prost 0.14): `google.rpc.Status`, `google.rpc.RetryInfo`,
//! and the shape shared by the three `Export*ServiceResponse` messages.

use std::time::Duration;

use prost::Message;

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.Status`: the body of OTLP/HTTP error responses and the details of gRPC
/// statuses.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

pub const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// `Export{Metrics,Trace,Logs}PartialSuccess`: the three share field numbers
/// (`rejected_*` = 1, `error_message` = 2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// `Export{Metrics,Trace,Logs}ServiceResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<PartialSuccess>,
}

/// Encodes a gRPC status `details` payload carrying a RetryInfo with `delay`.
pub fn retry_info_details(code: i32, message: &str, delay: Duration) -> Vec<u8> {
    let retry = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: delay.as_secs() as i64,
            nanos: delay.subsec_nanos() as i32,
        }),
    };
    RpcStatus {
        code,
        message: message.to_string(),
        details: vec![Any {
            type_url: RETRY_INFO_TYPE_URL.to_string(),
            value: retry.encode_to_vec(),
        }],
    }
    .encode_to_vec()
}

/// Reads the RetryInfo delay from a gRPC status `details` payload, if there is one.
pub fn retry_delay_from_details(details: &[u8]) -> Option<Duration> {
    let status = RpcStatus::decode(details).ok()?;
    status
        .details
        .iter()
        .filter(|any| any.type_url.ends_with("google.rpc.RetryInfo"))
        .find_map(|any| RetryInfo::decode(any.value.as_slice()).ok()?.retry_delay)
        .map(|d| Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_round_trips() {
        let details = retry_info_details(14, "slow down", Duration::from_millis(2500));
        assert_eq!(
            retry_delay_from_details(&details),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(retry_delay_from_details(b"garbage\xff"), None);
        let no_retry = RpcStatus {
            code: 8,
            message: "x".into(),
            details: vec![],
        }
        .encode_to_vec();
        assert_eq!(retry_delay_from_details(&no_retry), None);
    }
}
