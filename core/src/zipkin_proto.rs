//! The Zipkin v2 protobuf model (`zipkin.proto`, proto3, Apache-2.0, from
//! openzipkin/zipkin-api), written as prost derive structs by hand: the tree has no
//! build-time protobuf code generation, and the file is five small messages. The `zipkin`
//! receiver decodes it and the `zipkin` exporter encodes it. The field numbers and wire
//! types are pinned by `tests::wire_format_is_zipkin_proto3`.

/// `zipkin.proto3.ListOfSpans`: the body of `POST /api/v2/spans` with
/// `Content-Type: application/x-protobuf`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListOfSpans {
    #[prost(message, repeated, tag = "1")]
    pub spans: Vec<Span>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    /// 8 or 16 bytes, big-endian.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// Empty for a root span, else 8 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub parent_id: Vec<u8>,
    /// 8 bytes.
    #[prost(bytes = "vec", tag = "3")]
    pub id: Vec<u8>,
    /// `Kind`: 0 unspecified, 1 CLIENT, 2 SERVER, 3 PRODUCER, 4 CONSUMER.
    #[prost(int32, tag = "4")]
    pub kind: i32,
    #[prost(string, tag = "5")]
    pub name: String,
    /// Epoch microseconds.
    #[prost(fixed64, tag = "6")]
    pub timestamp: u64,
    /// Microseconds.
    #[prost(uint64, tag = "7")]
    pub duration: u64,
    #[prost(message, optional, tag = "8")]
    pub local_endpoint: Option<Endpoint>,
    #[prost(message, optional, tag = "9")]
    pub remote_endpoint: Option<Endpoint>,
    #[prost(message, repeated, tag = "10")]
    pub annotations: Vec<Annotation>,
    #[prost(map = "string, string", tag = "11")]
    pub tags: std::collections::HashMap<String, String>,
    #[prost(bool, tag = "12")]
    pub debug: bool,
    #[prost(bool, tag = "13")]
    pub shared: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Endpoint {
    #[prost(string, tag = "1")]
    pub service_name: String,
    /// 4 bytes, or empty.
    #[prost(bytes = "vec", tag = "2")]
    pub ipv4: Vec<u8>,
    /// 16 bytes, or empty.
    #[prost(bytes = "vec", tag = "3")]
    pub ipv6: Vec<u8>,
    #[prost(int32, tag = "4")]
    pub port: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Annotation {
    /// Epoch microseconds.
    #[prost(fixed64, tag = "1")]
    pub timestamp: u64,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// A `ListOfSpans` built byte by byte from zipkin.proto's field numbers and wire types,
/// so the hand-written prost structs cannot drift from the real schema: one SERVER span
/// `n` (trace id 16 x 0x01, id 3, parent 9, timestamp 1000000, duration 5, shared) from
/// `svc` at 10.0.0.1:8080, with annotation (7, "hi") and tag k=v. For tests of the
/// receiver and the exporter.
pub fn wire_fixture() -> Vec<u8> {
    let mut endpoint = vec![0x0a, 3];
    endpoint.extend_from_slice(b"svc"); // service_name = 1, string
    endpoint.extend_from_slice(&[0x12, 4, 10, 0, 0, 1]); // ipv4 = 2, bytes
    endpoint.extend_from_slice(&[0x20, 0x90, 0x3f]); // port = 4, varint 8080
    let mut annotation = vec![0x09];
    annotation.extend_from_slice(&7u64.to_le_bytes()); // timestamp = 1, fixed64
    annotation.extend_from_slice(&[0x12, 2, b'h', b'i']); // value = 2
    let mut tag = vec![0x0a, 1, b'k', 0x12, 1, b'v'];
    let mut span = vec![0x0a, 16];
    span.extend_from_slice(&[1; 16]); // trace_id = 1
    span.extend_from_slice(&[0x12, 8, 0, 0, 0, 0, 0, 0, 0, 9]); // parent_id = 2
    span.extend_from_slice(&[0x1a, 8, 0, 0, 0, 0, 0, 0, 0, 3]); // id = 3
    span.extend_from_slice(&[0x20, 2]); // kind = 4: SERVER
    span.extend_from_slice(&[0x2a, 1, b'n']); // name = 5
    span.push(0x31); // timestamp = 6, fixed64
    span.extend_from_slice(&1_000_000u64.to_le_bytes());
    span.extend_from_slice(&[0x38, 5]); // duration = 7, varint
    span.push(0x42); // local_endpoint = 8
    span.push(endpoint.len() as u8);
    span.extend_from_slice(&endpoint);
    span.push(0x52); // annotations = 10
    span.push(annotation.len() as u8);
    span.extend_from_slice(&annotation);
    span.push(0x5a); // tags = 11 (map entry)
    span.push(tag.len() as u8);
    span.append(&mut tag);
    span.extend_from_slice(&[0x68, 1]); // shared = 13
    let mut list = vec![0x0a, span.len() as u8];
    list.extend_from_slice(&span);
    list
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn wire_format_is_zipkin_proto3() {
        let decoded = ListOfSpans::decode(wire_fixture().as_slice()).expect("fixture decodes");
        assert_eq!(decoded.spans.len(), 1);
        let span = &decoded.spans[0];
        assert_eq!(span.trace_id, vec![1; 16]);
        assert_eq!(span.parent_id, [0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(span.id, [0, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!((span.kind, span.name.as_str()), (2, "n"));
        assert_eq!(
            (span.timestamp, span.duration, span.shared),
            (1_000_000, 5, true)
        );
        let local = span.local_endpoint.as_ref().expect("local endpoint");
        assert_eq!(
            (
                local.service_name.as_str(),
                local.ipv4.as_slice(),
                local.port
            ),
            ("svc", &[10, 0, 0, 1][..], 8080)
        );
        assert_eq!(span.annotations.len(), 1);
        assert_eq!(
            (
                span.annotations[0].timestamp,
                span.annotations[0].value.as_str()
            ),
            (7, "hi")
        );
        assert_eq!(span.tags.get("k").map(String::as_str), Some("v"));
        // Re-encoding gives the same bytes (fields in the schema's order).
        assert_eq!(decoded.encode_to_vec(), wire_fixture());
    }
}
