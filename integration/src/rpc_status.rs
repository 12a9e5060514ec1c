//! The two `google.rpc` messages a gRPC OTLP endpoint uses to say "retry later":
//! `google.rpc.Status` (carried in the `grpc-status-details-bin` trailer) and
//! `google.rpc.RetryInfo` (one of its details).
//!
//! Written by hand because they are four tiny messages and the crates that ship them
//! (`tonic-types`) are not dependencies of this workspace. Field numbers follow
//! `google/rpc/status.proto`, `google/rpc/error_details.proto`, `google/protobuf/any.proto`
//! and `google/protobuf/duration.proto`.

use bytes::Bytes;
use prost::Message;
use std::time::Duration;

/// The type URL of a `google.rpc.RetryInfo` packed in a `google.protobuf.Any`.
pub const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// A `tonic::Status` whose details hold a `RetryInfo` asking the client to wait `delay`.
pub fn status_with_retry_info(code: tonic::Code, message: &str, delay: Duration) -> tonic::Status {
    let retry_info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: delay.as_secs() as i64,
            nanos: delay.subsec_nanos() as i32,
        }),
    };
    let status = RpcStatus {
        code: code as i32,
        message: message.to_string(),
        details: vec![ProtoAny {
            type_url: RETRY_INFO_TYPE_URL.to_string(),
            value: retry_info.encode_to_vec(),
        }],
    };
    tonic::Status::with_details(
        code,
        message.to_string(),
        Bytes::from(status.encode_to_vec()),
    )
}

/// The retry delay a gRPC status asks for in its `RetryInfo` detail, if it carries one.
pub fn retry_delay(status: &tonic::Status) -> Option<Duration> {
    let details = RpcStatus::decode(status.details()).ok()?;
    details
        .details
        .iter()
        .filter(|any| any.type_url == RETRY_INFO_TYPE_URL)
        .find_map(|any| {
            let delay = RetryInfo::decode(any.value.as_slice()).ok()?.retry_delay?;
            Some(Duration::new(
                delay.seconds.max(0) as u64,
                delay.nanos.max(0) as u32,
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_round_trips_through_status_details() {
        let status = status_with_retry_info(
            tonic::Code::Unavailable,
            "busy",
            Duration::from_millis(2500),
        );
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(retry_delay(&status), Some(Duration::from_millis(2500)));
    }

    #[test]
    fn status_without_details_has_no_retry_delay() {
        assert_eq!(retry_delay(&tonic::Status::unavailable("busy")), None);
    }
}
