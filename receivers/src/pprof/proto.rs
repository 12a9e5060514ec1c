//! The pprof `profile.proto` messages (package `perftools.profiles`, proto3), written by
//! hand with prost derives because no maintained crate ships them for prost 0.14.
//!
//! Field numbers and types are copied from google/pprof `proto/profile.proto`
//! (@b9395ee1). Only what oxcol reads is declared; prost skips unknown fields, so
//! `mapping`, `drop_frames`, `keep_frames`, `comment` and `doc_url` are left out on
//! purpose (decoding stays cheap and the struct says what the receiver uses).

/// `message Profile`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    /// `repeated ValueType sample_type = 1;`
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    /// `repeated Sample sample = 2;`
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    /// `repeated Location location = 4;`
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    /// `repeated Function function = 5;`
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// `repeated string string_table = 6;` (`string_table[0]` must be "").
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    /// `int64 time_nanos = 9;`
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    /// `int64 duration_nanos = 10;`
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    /// `ValueType period_type = 11;`
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    /// `int64 period = 12;`
    #[prost(int64, tag = "12")]
    pub period: i64,
    /// `int64 default_sample_type = 14;` (string table index)
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

/// `message ValueType { int64 type = 1; int64 unit = 2; }` (string table indexes).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// `message Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// `repeated uint64 location_id = 1;` leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    /// `repeated int64 value = 2;` one per `sample_type`.
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    /// `repeated Label label = 3;`
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

/// `message Label { int64 key = 1; int64 str = 2; int64 num = 3; int64 num_unit = 4; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
    #[prost(int64, tag = "3")]
    pub num: i64,
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

/// `message Location` (`mapping_id = 2`, `address = 3` and `is_folded = 5` not read).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    /// `uint64 id = 1;` nonzero.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// `repeated Line line = 4;` several lines = inlining; the last is the caller.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

/// `message Line { uint64 function_id = 1; int64 line = 2; int64 column = 3; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
}

/// `message Function` (`system_name = 3`, `start_line = 5` not read).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// `int64 name = 2;` string table index.
    #[prost(int64, tag = "2")]
    pub name: i64,
    /// `int64 filename = 4;` string table index.
    #[prost(int64, tag = "4")]
    pub filename: i64,
}
