//! Remote write protobuf messages, written by hand with `#[derive(prost::Message)]`.
//!
//! No maintained crate has these types on prost 0.14, and the two messages are small, so
//! they are declared here with the field numbers and types of the upstream `.proto` files
//! (Apache-2.0): `prompb/remote.proto` + `prompb/types.proto` (remote write 1.0,
//! `prometheus.WriteRequest`) and `prompb/io/prometheus/write/v2/types.proto` (remote write
//! 2.0, `io.prometheus.write.v2.Request`), as summarized in the project's domain spec
//! (section 5). Only the fields oxcol writes are declared; an absent field is simply not on the wire, so a receiver
//! sees exactly what the upstream generated code would produce for these values. The
//! tests pin the encoding byte for byte.

/// Remote write 1.0 messages (`package prometheus`).
pub mod v1 {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
        // Field 2 is reserved upstream.
        #[prost(message, repeated, tag = "3")]
        pub metadata: Vec<MetricMetadata>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        /// Sorted by name, byte-wise; no duplicate names; no empty values.
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        /// In timestamp order.
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub exemplars: Vec<Exemplar>,
        /// Native histograms, in timestamp order.
        #[prost(message, repeated, tag = "4")]
        pub histograms: Vec<Histogram>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        /// `trace_id`, `span_id` and the filtered attributes.
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(double, tag = "2")]
        pub value: f64,
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    /// `prometheus.Histogram` (integer counts only: `count_int`, `zero_count_int` and
    /// `*_deltas`; the float alternatives of the upstream `oneof`s are never sent).
    /// The `oneof` fields are declared as plain fields: a zero value is then left off
    /// the wire, which every receiver decodes as the same zero.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(uint64, tag = "1")]
        pub count_int: u64,
        #[prost(double, tag = "3")]
        pub sum: f64,
        #[prost(sint32, tag = "4")]
        pub schema: i32,
        #[prost(double, tag = "5")]
        pub zero_threshold: f64,
        #[prost(uint64, tag = "6")]
        pub zero_count_int: u64,
        #[prost(message, repeated, tag = "8")]
        pub negative_spans: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "9")]
        pub negative_deltas: Vec<i64>,
        #[prost(message, repeated, tag = "11")]
        pub positive_spans: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "12")]
        pub positive_deltas: Vec<i64>,
        /// UNKNOWN=0 YES=1 NO=2 GAUGE=3.
        #[prost(int32, tag = "14")]
        pub reset_hint: i32,
        #[prost(int64, tag = "15")]
        pub timestamp: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BucketSpan {
        #[prost(sint32, tag = "1")]
        pub offset: i32,
        #[prost(uint32, tag = "2")]
        pub length: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Milliseconds since the epoch.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricMetadata {
        /// UNKNOWN=0 COUNTER=1 GAUGE=2 HISTOGRAM=3 GAUGEHISTOGRAM=4 SUMMARY=5 INFO=6 STATESET=7.
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        #[prost(string, tag = "2")]
        pub metric_family_name: String,
        #[prost(string, tag = "4")]
        pub help: String,
        #[prost(string, tag = "5")]
        pub unit: String,
    }
}

/// Remote write 2.0 messages (`package io.prometheus.write.v2`).
pub mod v2 {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        // Fields 1 to 3 are reserved upstream.
        /// Deduplicated string table; `symbols[0]` is always "".
        #[prost(string, repeated, tag = "4")]
        pub symbols: Vec<String>,
        #[prost(message, repeated, tag = "5")]
        pub timeseries: Vec<TimeSeries>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        /// Pairs of indexes into `symbols`: name, value, name, value... sorted by name.
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub histograms: Vec<Histogram>,
        #[prost(message, repeated, tag = "4")]
        pub exemplars: Vec<Exemplar>,
        #[prost(message, optional, tag = "5")]
        pub metadata: Option<Metadata>,
        // 6 (created_timestamp in early drafts) is reserved.
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
        /// Start (created) time in ms; 0 = unset.
        #[prost(int64, tag = "3")]
        pub start_timestamp: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metadata {
        /// METRIC_TYPE_UNSPECIFIED=0 COUNTER=1 GAUGE=2 HISTOGRAM=3 GAUGEHISTOGRAM=4 SUMMARY=5 INFO=6 STATESET=7.
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        #[prost(uint32, tag = "3")]
        pub help_ref: u32,
        #[prost(uint32, tag = "4")]
        pub unit_ref: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        /// Pairs of symbol indexes, as `TimeSeries.labels_refs`.
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        #[prost(double, tag = "2")]
        pub value: f64,
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    /// `io.prometheus.write.v2.Histogram`: the 1.0 fields (integer counts only, see
    /// [`super::v1::Histogram`]) plus the start timestamp.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(uint64, tag = "1")]
        pub count_int: u64,
        #[prost(double, tag = "3")]
        pub sum: f64,
        #[prost(sint32, tag = "4")]
        pub schema: i32,
        #[prost(double, tag = "5")]
        pub zero_threshold: f64,
        #[prost(uint64, tag = "6")]
        pub zero_count_int: u64,
        #[prost(message, repeated, tag = "8")]
        pub negative_spans: Vec<super::v1::BucketSpan>,
        #[prost(sint64, repeated, tag = "9")]
        pub negative_deltas: Vec<i64>,
        #[prost(message, repeated, tag = "11")]
        pub positive_spans: Vec<super::v1::BucketSpan>,
        #[prost(sint64, repeated, tag = "12")]
        pub positive_deltas: Vec<i64>,
        #[prost(int32, tag = "14")]
        pub reset_hint: i32,
        #[prost(int64, tag = "15")]
        pub timestamp: i64,
        // 16 = custom_values (NHCB): not sent.
        #[prost(int64, tag = "17")]
        pub start_timestamp: i64,
    }
}
