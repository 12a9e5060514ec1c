//! Decoder tests: fixtures written byte by byte from the Thrift binary and compact
//! protocol specifications, plus a small test-only encoder of both protocols (checked
//! against those fixtures) for larger batches.

use super::*;

/// A Thrift value to encode in tests.
#[derive(Clone, Debug)]
pub(crate) enum V {
    Bool(bool),
    I32(i32),
    I64(i64),
    Double(f64),
    Str(Vec<u8>),
    /// Element type, elements.
    List(TType, Vec<V>),
    /// Key type, value type, entries.
    Map(TType, TType, Vec<(V, V)>),
    Struct(Vec<(i16, V)>),
}

impl V {
    fn ttype(&self) -> TType {
        match self {
            V::Bool(_) => TType::Bool,
            V::I32(_) => TType::I32,
            V::I64(_) => TType::I64,
            V::Double(_) => TType::Double,
            V::Str(_) => TType::Binary,
            V::List(..) => TType::List,
            V::Map(..) => TType::Map,
            V::Struct(_) => TType::Struct,
        }
    }
}

pub(crate) fn s(text: &str) -> V {
    V::Str(text.as_bytes().to_vec())
}

fn binary_code(t: TType) -> u8 {
    match t {
        TType::Bool => 2,
        TType::Byte => 3,
        TType::Double => 4,
        TType::I16 => 6,
        TType::I32 => 8,
        TType::I64 => 10,
        TType::Binary => 11,
        TType::Struct => 12,
        TType::Map => 13,
        TType::Set => 14,
        TType::List => 15,
        TType::Uuid => 16,
    }
}

pub(crate) fn encode_binary(v: &V, out: &mut Vec<u8>) {
    match v {
        V::Bool(b) => out.push(u8::from(*b)),
        V::I32(n) => out.extend_from_slice(&n.to_be_bytes()),
        V::I64(n) => out.extend_from_slice(&n.to_be_bytes()),
        V::Double(d) => out.extend_from_slice(&d.to_be_bytes()),
        V::Str(bytes) => {
            out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        V::List(t, items) => {
            out.push(binary_code(*t));
            out.extend_from_slice(&(items.len() as i32).to_be_bytes());
            items.iter().for_each(|i| encode_binary(i, out));
        }
        V::Map(k, val, entries) => {
            out.push(binary_code(*k));
            out.push(binary_code(*val));
            out.extend_from_slice(&(entries.len() as i32).to_be_bytes());
            for (key, value) in entries {
                encode_binary(key, out);
                encode_binary(value, out);
            }
        }
        V::Struct(fields) => {
            for (id, value) in fields {
                out.push(binary_code(value.ttype()));
                out.extend_from_slice(&id.to_be_bytes());
                encode_binary(value, out);
            }
            out.push(0);
        }
    }
}

fn compact_code(t: TType) -> u8 {
    match t {
        TType::Bool => 1,
        TType::Byte => 3,
        TType::I16 => 4,
        TType::I32 => 5,
        TType::I64 => 6,
        TType::Double => 7,
        TType::Binary => 8,
        TType::List => 9,
        TType::Set => 10,
        TType::Map => 11,
        TType::Struct => 12,
        TType::Uuid => 13,
    }
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    loop {
        if n < 0x80 {
            out.push(n as u8);
            return;
        }
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
}

fn zigzag(n: i64, out: &mut Vec<u8>) {
    varint(((n << 1) ^ (n >> 63)) as u64, out);
}

pub(crate) fn encode_compact(v: &V, out: &mut Vec<u8>) {
    match v {
        // Only inside lists: in a struct the value is in the field header.
        V::Bool(b) => out.push(if *b { 1 } else { 2 }),
        V::I32(n) => zigzag(i64::from(*n), out),
        V::I64(n) => zigzag(*n, out),
        V::Double(d) => out.extend_from_slice(&d.to_le_bytes()),
        V::Str(bytes) => {
            varint(bytes.len() as u64, out);
            out.extend_from_slice(bytes);
        }
        V::List(t, items) => {
            if items.len() < 15 {
                out.push(((items.len() as u8) << 4) | compact_code(*t));
            } else {
                out.push(0xf0 | compact_code(*t));
                varint(items.len() as u64, out);
            }
            items.iter().for_each(|i| encode_compact(i, out));
        }
        V::Map(k, val, entries) => {
            varint(entries.len() as u64, out);
            if !entries.is_empty() {
                out.push((compact_code(*k) << 4) | compact_code(*val));
            }
            for (key, value) in entries {
                encode_compact(key, out);
                encode_compact(value, out);
            }
        }
        V::Struct(fields) => {
            let mut last = 0i16;
            for (id, value) in fields {
                let code = match value {
                    V::Bool(true) => 1,
                    V::Bool(false) => 2,
                    other => compact_code(other.ttype()),
                };
                let delta = id - last;
                if (1..=15).contains(&delta) {
                    out.push(((delta as u8) << 4) | code);
                } else {
                    out.push(code);
                    zigzag(i64::from(*id), out);
                }
                last = *id;
                if !matches!(value, V::Bool(_)) {
                    encode_compact(value, out);
                }
            }
            out.push(0);
        }
    }
}

/// An agent `emitBatch` oneway message around `batch`, compact protocol.
pub(crate) fn compact_emit_batch(batch: &V) -> Vec<u8> {
    let mut out = vec![0x82, (4 << 5) | 1];
    varint(7, &mut out); // seqid
    encode_compact(&s("emitBatch"), &mut out);
    encode_compact(&V::Struct(vec![(1, batch.clone())]), &mut out);
    out
}

/// The same message, strict binary protocol.
pub(crate) fn binary_emit_batch(batch: &V) -> Vec<u8> {
    let mut out = (0x8001_0000u32 | 4).to_be_bytes().to_vec();
    encode_binary(&s("emitBatch"), &mut out);
    out.extend_from_slice(&7i32.to_be_bytes());
    encode_binary(&V::Struct(vec![(1, batch.clone())]), &mut out);
    out
}

pub(crate) fn tag(key: &str, thrift_type: i32, field: i16, value: V) -> V {
    V::Struct(vec![(1, s(key)), (2, V::I32(thrift_type)), (field, value)])
}

/// A span with every field jaeger.thrift defines, plus an unknown field 99 of each shape.
pub(crate) fn full_span() -> V {
    V::Struct(vec![
        (1, V::I64(0x0102_0304_0506_0708)),
        (2, V::I64(-1)),
        (3, V::I64(0x1111)),
        (4, V::I64(0x2222)),
        (5, s("GET /users")),
        (
            6,
            V::List(
                TType::Struct,
                vec![V::Struct(vec![
                    (1, V::I32(1)),
                    (2, V::I64(5)),
                    (3, V::I64(6)),
                    (4, V::I64(0x3333)),
                ])],
            ),
        ),
        (7, V::I32(1)),
        (8, V::I64(1_700_000_000_123_456)),
        (9, V::I64(2_500)),
        (
            10,
            V::List(
                TType::Struct,
                vec![
                    tag("s", 0, 3, s("text")),
                    tag("d", 1, 4, V::Double(2.5)),
                    tag("b", 2, 5, V::Bool(true)),
                    tag("f", 2, 5, V::Bool(false)),
                    tag("l", 3, 6, V::I64(-42)),
                    tag("bin", 4, 7, V::Str(vec![0, 255])),
                ],
            ),
        ),
        (
            11,
            V::List(
                TType::Struct,
                vec![V::Struct(vec![
                    (1, V::I64(1_700_000_000_200_000)),
                    (
                        2,
                        V::List(TType::Struct, vec![tag("event", 0, 3, s("retry"))]),
                    ),
                ])],
            ),
        ),
        (
            99,
            V::Map(
                TType::Binary,
                TType::List,
                vec![(
                    s("k"),
                    V::List(TType::Bool, vec![V::Bool(true), V::Bool(false)]),
                )],
            ),
        ),
        (
            300,
            V::Struct(vec![(1, V::Double(1.0)), (2, V::Bool(true))]),
        ),
    ])
}

pub(crate) fn full_batch() -> V {
    V::Struct(vec![
        (
            1,
            V::Struct(vec![
                (1, s("checkout")),
                (
                    2,
                    V::List(TType::Struct, vec![tag("hostname", 0, 3, s("node-1"))]),
                ),
            ]),
        ),
        (2, V::List(TType::Struct, vec![full_span()])),
        (3, V::I64(12)),
    ])
}

fn check_full(batch: &model::Batch) {
    let process = batch.process.as_ref().expect("process");
    assert_eq!(process.service_name, "checkout");
    assert_eq!(process.tags[0].key, "hostname");
    assert_eq!(process.tags[0].v_str, "node-1");
    let span = &batch.spans[0];
    assert_eq!(
        span.trace_id,
        [0xff; 8]
            .iter()
            .chain(&[1, 2, 3, 4, 5, 6, 7, 8])
            .copied()
            .collect::<Vec<u8>>(),
        "high then low, big-endian"
    );
    assert_eq!(span.span_id, 0x1111i64.to_be_bytes());
    assert_eq!(span.operation_name, "GET /users");
    assert_eq!(span.flags, 1);
    assert_eq!(
        span.start_time,
        Some(model::Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_456_000
        })
    );
    assert_eq!(
        span.duration,
        Some(model::Duration {
            seconds: 0,
            nanos: 2_500_000
        })
    );
    // parentSpanId first (CHILD_OF, same trace), then the declared reference.
    assert_eq!(span.references.len(), 2);
    assert_eq!(span.references[0].span_id, 0x2222i64.to_be_bytes());
    assert_eq!(span.references[0].trace_id, span.trace_id);
    assert_eq!(span.references[0].ref_type, model::ref_type::CHILD_OF);
    assert_eq!(span.references[1].ref_type, model::ref_type::FOLLOWS_FROM);
    assert_eq!(
        span.references[1].trace_id,
        [0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 5]
    );
    let types: Vec<(&str, i32)> = span
        .tags
        .iter()
        .map(|t| (t.key.as_str(), t.v_type))
        .collect();
    use model::value_type::*;
    assert_eq!(
        types,
        [
            ("s", STRING),
            ("d", FLOAT64),
            ("b", BOOL),
            ("f", BOOL),
            ("l", INT64),
            ("bin", BINARY)
        ]
    );
    assert_eq!(span.tags[1].v_float64, 2.5);
    assert!(span.tags[2].v_bool);
    assert!(!span.tags[3].v_bool);
    assert_eq!(span.tags[4].v_int64, -42);
    assert_eq!(span.tags[5].v_binary, [0, 255]);
    assert_eq!(
        span.logs[0].timestamp,
        Some(model::Timestamp {
            seconds: 1_700_000_000,
            nanos: 200_000_000
        })
    );
    assert_eq!(span.logs[0].fields[0].v_str, "retry");
}

#[test]
fn binary_batch_fixture_from_the_spec() {
    // Batch{process: Process{serviceName: "s"}, spans: []}, TBinaryProtocol.
    let bytes = [
        0x0c, 0x00, 0x01, // field 1, struct
        0x0b, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, b's', // field 1, string "s"
        0x00, // stop (Process)
        0x0f, 0x00, 0x02, 0x0c, 0x00, 0x00, 0x00, 0x00, // field 2, list<struct>, 0 elements
        0x00, // stop (Batch)
    ];
    let batch = decode_binary_batch(&bytes).unwrap();
    assert_eq!(batch.process.unwrap().service_name, "s");
    assert!(batch.spans.is_empty());
    // The test encoder writes the same bytes.
    let mut encoded = Vec::new();
    encode_binary(
        &V::Struct(vec![
            (1, V::Struct(vec![(1, s("s"))])),
            (2, V::List(TType::Struct, vec![])),
        ]),
        &mut encoded,
    );
    assert_eq!(encoded, bytes);
}

#[test]
fn compact_agent_fixture_from_the_spec() {
    let bytes = [
        0x82, 0x81, 0x00, // protocol id, version 1 | ONEWAY << 5, seqid 0
        0x09, b'e', b'm', b'i', b't', b'B', b'a', b't', b'c', b'h', // name
        0x1c, // args field 1 (delta 1), struct
        0x1c, // Batch field 1, struct
        0x18, 0x01, b's', // Process field 1, binary "s"
        0x00, // stop (Process)
        0x19, 0x0c, // Batch field 2 (delta 1), list: 0 elements of struct
        0x00, // stop (Batch)
        0x00, // stop (args)
    ];
    let batch = decode_compact_agent(&bytes).unwrap();
    assert_eq!(batch.process.unwrap().service_name, "s");
    let mut expected = compact_emit_batch(&V::Struct(vec![
        (1, V::Struct(vec![(1, s("s"))])),
        (2, V::List(TType::Struct, vec![])),
    ]));
    expected[2] = 0; // the helper's seqid is 7
    assert_eq!(expected, bytes);
}

#[test]
fn every_field_decodes_in_all_three_framings() {
    let batch = full_batch();
    let mut body = Vec::new();
    encode_binary(&batch, &mut body);
    check_full(&decode_binary_batch(&body).unwrap());
    check_full(&decode_binary_agent(&binary_emit_batch(&batch)).unwrap());
    check_full(&decode_compact_agent(&compact_emit_batch(&batch)).unwrap());
}

#[test]
fn old_style_binary_message_header_is_read() {
    let mut out = Vec::new();
    encode_binary(&s("emitBatch"), &mut out);
    out.push(4); // ONEWAY
    out.extend_from_slice(&1i32.to_be_bytes());
    encode_binary(&V::Struct(vec![(1, full_batch())]), &mut out);
    check_full(&decode_binary_agent(&out).unwrap());
}

#[test]
fn long_lists_and_large_field_ids_use_the_long_compact_forms() {
    let tags: Vec<V> = (0..20)
        .map(|i| tag(&format!("k{i}"), 3, 6, V::I64(i)))
        .collect();
    let span = V::Struct(vec![
        (1, V::I64(1)),
        (2, V::I64(0)),
        (3, V::I64(2)),
        (4, V::I64(0)),
        (5, s("op")),
        (7, V::I32(0)),
        (8, V::I64(0)),
        (9, V::I64(0)),
        (10, V::List(TType::Struct, tags)),
        (1000, V::I64(5)),
    ]);
    let batch = V::Struct(vec![
        (1, V::Struct(vec![(1, s("svc"))])),
        (2, V::List(TType::Struct, vec![span])),
    ]);
    let decoded = decode_compact_agent(&compact_emit_batch(&batch)).unwrap();
    assert_eq!(decoded.spans[0].tags.len(), 20);
    assert_eq!(decoded.spans[0].tags[19].v_int64, 19);
    assert!(
        decoded.spans[0].references.is_empty(),
        "parentSpanId 0 is no parent"
    );
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let batch = full_batch();
    let mut body = Vec::new();
    encode_binary(&batch, &mut body);
    let compact = compact_emit_batch(&batch);
    let binary = binary_emit_batch(&batch);
    for cut in 0..body.len() {
        assert!(
            decode_binary_batch(&body[..cut]).is_err(),
            "binary body cut at {cut}"
        );
    }
    for cut in 0..compact.len() {
        assert!(
            decode_compact_agent(&compact[..cut]).is_err(),
            "compact cut at {cut}"
        );
    }
    for cut in 0..binary.len() {
        assert!(
            decode_binary_agent(&binary[..cut]).is_err(),
            "binary message cut at {cut}"
        );
    }
    // Every single-byte corruption: an answer either way, never a panic.
    for i in 0..compact.len() {
        for value in [0x00, 0x0f, 0x7f, 0xff] {
            let mut bad = compact.clone();
            bad[i] = value;
            let _ = decode_compact_agent(&bad);
            let mut bad = binary.clone();
            if i < bad.len() {
                bad[i] = value;
                let _ = decode_binary_agent(&bad);
            }
        }
    }
}

#[test]
fn claimed_sizes_beyond_the_input_are_refused_before_allocating() {
    // Batch field 2: list<struct> claiming 2^31-1 elements.
    let bytes = [0x0f, 0x00, 0x02, 0x0c, 0x7f, 0xff, 0xff, 0xff, 0x00];
    let error = decode_binary_batch(&bytes).unwrap_err();
    assert!(error.0.contains("list size 2147483647 exceeds"), "{error}");
    // A string claiming a negative length.
    let bytes = [0x0c, 0x00, 0x01, 0x0b, 0x00, 0x01, 0xff, 0xff, 0xff, 0xff];
    assert!(
        decode_binary_batch(&bytes)
            .unwrap_err()
            .0
            .contains("negative")
    );
    // A compact varint that never ends.
    let bytes = [
        0x82, 0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ];
    assert!(decode_compact_agent(&bytes).is_err());
}

#[test]
fn deep_nesting_in_unknown_fields_is_bounded() {
    // An unknown field 9 of the Batch: structs nested 100 deep (binary).
    let mut value = V::Struct(vec![]);
    for _ in 0..100 {
        value = V::Struct(vec![(1, value)]);
    }
    let batch = V::Struct(vec![
        (9, value.clone()),
        (1, V::Struct(vec![(1, s("s"))])),
        (2, V::List(TType::Struct, vec![])),
    ]);
    let mut body = Vec::new();
    encode_binary(&batch, &mut body);
    assert!(
        decode_binary_batch(&body)
            .unwrap_err()
            .0
            .contains("nested too deeply")
    );
    assert!(
        decode_compact_agent(&compact_emit_batch(&batch))
            .unwrap_err()
            .0
            .contains("nested too deeply")
    );
    // Shallow unknown fields are skipped.
    let mut shallow = V::Struct(vec![]);
    for _ in 0..5 {
        shallow = V::Struct(vec![(1, shallow)]);
    }
    let batch = V::Struct(vec![
        (9, shallow),
        (1, V::Struct(vec![(1, s("s"))])),
        (2, V::List(TType::Struct, vec![])),
    ]);
    assert_eq!(
        decode_compact_agent(&compact_emit_batch(&batch))
            .unwrap()
            .process
            .unwrap()
            .service_name,
        "s"
    );
}

#[test]
fn required_fields_and_methods_are_checked() {
    // A span without operationName (field 5).
    let span = V::Struct(vec![
        (1, V::I64(1)),
        (2, V::I64(0)),
        (3, V::I64(2)),
        (4, V::I64(0)),
        (7, V::I32(0)),
        (8, V::I64(0)),
        (9, V::I64(0)),
    ]);
    let batch = V::Struct(vec![
        (1, V::Struct(vec![(1, s("svc"))])),
        (2, V::List(TType::Struct, vec![span])),
    ]);
    let error = decode_compact_agent(&compact_emit_batch(&batch)).unwrap_err();
    assert_eq!(error.0, "Span: required field operationName is not set");
    // A batch without process.
    let mut body = Vec::new();
    encode_binary(
        &V::Struct(vec![(2, V::List(TType::Struct, vec![]))]),
        &mut body,
    );
    assert_eq!(
        decode_binary_batch(&body).unwrap_err().0,
        "Batch: required field process is not set"
    );
    // A field of the wrong type is skipped, so a required one is then missing.
    let mut body = Vec::new();
    encode_binary(
        &V::Struct(vec![
            (1, s("not a struct")),
            (2, V::List(TType::Struct, vec![])),
        ]),
        &mut body,
    );
    assert_eq!(
        decode_binary_batch(&body).unwrap_err().0,
        "Batch: required field process is not set"
    );
    // emitZipkinBatch is not supported.
    let mut message = vec![0x82, 0x81, 0x00];
    encode_compact(&s("emitZipkinBatch"), &mut message);
    message.push(0);
    assert!(
        decode_compact_agent(&message)
            .unwrap_err()
            .0
            .contains("emitZipkinBatch is not")
    );
}
