//! The Jaeger `api_v2` messages the gRPC protocol carries (`model.proto` and
//! `collector.proto` of jaegertracing/jaeger-idl, Apache-2.0), written as prost derives
//! (the tree has no protoc). The Thrift decoders produce the same structs, so one
//! translation (`translate.rs`) serves every protocol.
//!
//! gogoproto details kept on the wire: trace ids are 16 bytes (high then low, big-endian),
//! span ids 8 bytes, times are `google.protobuf.Timestamp` / `Duration`.

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, ::prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `google.protobuf.Duration`.
#[derive(Clone, Copy, PartialEq, Eq, ::prost::Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `jaeger.api_v2.ValueType`.
pub mod value_type {
    pub const STRING: i32 = 0;
    pub const BOOL: i32 = 1;
    pub const INT64: i32 = 2;
    pub const FLOAT64: i32 = 3;
    pub const BINARY: i32 = 4;
}

/// `jaeger.api_v2.SpanRefType`.
pub mod ref_type {
    pub const CHILD_OF: i32 = 0;
    pub const FOLLOWS_FROM: i32 = 1;
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(int32, tag = "2")]
    pub v_type: i32,
    #[prost(string, tag = "3")]
    pub v_str: String,
    #[prost(bool, tag = "4")]
    pub v_bool: bool,
    #[prost(int64, tag = "5")]
    pub v_int64: i64,
    #[prost(double, tag = "6")]
    pub v_float64: f64,
    #[prost(bytes = "vec", tag = "7")]
    pub v_binary: Vec<u8>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Log {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(message, repeated, tag = "2")]
    pub fields: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SpanRef {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(int32, tag = "3")]
    pub ref_type: i32,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Process {
    #[prost(string, tag = "1")]
    pub service_name: String,
    #[prost(message, repeated, tag = "2")]
    pub tags: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Span {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(string, tag = "3")]
    pub operation_name: String,
    #[prost(message, repeated, tag = "4")]
    pub references: Vec<SpanRef>,
    #[prost(uint32, tag = "5")]
    pub flags: u32,
    #[prost(message, optional, tag = "6")]
    pub start_time: Option<Timestamp>,
    #[prost(message, optional, tag = "7")]
    pub duration: Option<Duration>,
    #[prost(message, repeated, tag = "8")]
    pub tags: Vec<KeyValue>,
    #[prost(message, repeated, tag = "9")]
    pub logs: Vec<Log>,
    #[prost(message, optional, tag = "10")]
    pub process: Option<Process>,
    #[prost(string, tag = "11")]
    pub process_id: String,
    #[prost(string, repeated, tag = "12")]
    pub warnings: Vec<String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Batch {
    #[prost(message, repeated, tag = "1")]
    pub spans: Vec<Span>,
    #[prost(message, optional, tag = "2")]
    pub process: Option<Process>,
}

/// `jaeger.api_v2.PostSpansRequest` (collector.proto).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PostSpansRequest {
    #[prost(message, optional, tag = "1")]
    pub batch: Option<Batch>,
}
