//! A hand-written reader of the Thrift binary and compact protocols, for the few structs
//! of `jaeger.thrift` (Batch, Process, Span, Tag, Log, SpanRef) and the agent's
//! `emitBatch` message.
//!
//! Why not the `thrift` crate: its generated code needs the Thrift compiler (absent here),
//! and its readers allocate what a length prefix claims before checking that the bytes
//! exist. This reader borrows from the input, refuses any length or element count larger
//! than the bytes left, bounds nesting when skipping unknown fields, and returns an error
//! (never panics) on anything malformed. Required fields are checked as the Go generated
//! code does.
//!
//! The output is the `api_v2` model (`model.rs`), so one translation serves gRPC and
//! Thrift. A Thrift `parentSpanId` becomes a leading CHILD_OF reference, which the
//! translation turns into the same parent and links as the Collector's Thrift translator.

use super::model;

/// Nesting allowed when skipping fields oxcol does not read.
const MAX_DEPTH: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThriftError(pub String);

impl std::fmt::Display for ThriftError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ThriftError {}

type Result<T> = std::result::Result<T, ThriftError>;

fn err<T>(message: impl Into<String>) -> Result<T> {
    Err(ThriftError(message.into()))
}

/// Field and element types, protocol-independent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TType {
    Bool,
    Byte,
    I16,
    I32,
    I64,
    Double,
    Binary,
    List,
    Set,
    Map,
    Struct,
    Uuid,
}

/// What the struct decoders need from a protocol.
pub trait Protocol<'a> {
    /// The next field header of the current struct, or None at its STOP.
    fn field(&mut self) -> Result<Option<(TType, i16)>>;
    fn struct_begin(&mut self) -> Result<()>;
    fn struct_end(&mut self);
    fn bool(&mut self) -> Result<bool>;
    fn byte(&mut self) -> Result<i8>;
    fn i16(&mut self) -> Result<i16>;
    fn i32(&mut self) -> Result<i32>;
    fn i64(&mut self) -> Result<i64>;
    fn double(&mut self) -> Result<f64>;
    fn binary(&mut self) -> Result<&'a [u8]>;
    /// Element type and count of a list or set (count checked against the bytes left).
    fn list(&mut self) -> Result<(TType, usize)>;
    /// Key type, value type and count of a map.
    fn map(&mut self) -> Result<(TType, TType, usize)>;
    fn uuid(&mut self) -> Result<()>;
}

/// The bytes being read, with bounds-checked takes.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.data.len());
        match end {
            Some(end) => {
                let bytes = &self.data[self.pos..end];
                self.pos = end;
                Ok(bytes)
            }
            None => err(format!(
                "truncated: {n} bytes wanted at offset {}, {} left",
                self.pos,
                self.data.len() - self.pos
            )),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn count(&self, n: i64, what: &str) -> Result<usize> {
        if n < 0 {
            return err(format!("negative {what} {n}"));
        }
        let n = usize::try_from(n).map_err(|_| ThriftError(format!("{what} {n} too large")))?;
        if n > self.remaining() {
            return err(format!(
                "{what} {n} exceeds the {} bytes left",
                self.remaining()
            ));
        }
        Ok(n)
    }
}

/// TBinaryProtocol (big-endian, fixed width).
pub struct Binary<'a> {
    input: Input<'a>,
}

impl<'a> Binary<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Binary {
            input: Input { data, pos: 0 },
        }
    }

    fn ttype(code: u8) -> Result<TType> {
        Ok(match code {
            2 => TType::Bool,
            3 => TType::Byte,
            4 => TType::Double,
            6 => TType::I16,
            8 => TType::I32,
            10 => TType::I64,
            11 => TType::Binary,
            12 => TType::Struct,
            13 => TType::Map,
            14 => TType::Set,
            15 => TType::List,
            16 => TType::Uuid,
            other => return err(format!("unknown binary-protocol type {other}")),
        })
    }

    /// A message header (strict or old style): (name, message type).
    pub fn message_begin(&mut self) -> Result<(&'a [u8], u8)> {
        let first = self.i32()?;
        if first < 0 {
            let version = (first as u32) & 0xffff_0000;
            if version != 0x8001_0000 {
                return err(format!("bad binary-protocol version {version:#x}"));
            }
            let kind = (first & 0xff) as u8;
            let name = self.binary()?;
            self.i32()?;
            Ok((name, kind))
        } else {
            let len = self.input.count(i64::from(first), "message name length")?;
            let name = self.input.take(len)?;
            let kind = self.input.u8()?;
            self.i32()?;
            Ok((name, kind))
        }
    }
}

impl<'a> Protocol<'a> for Binary<'a> {
    fn field(&mut self) -> Result<Option<(TType, i16)>> {
        let code = self.input.u8()?;
        if code == 0 {
            return Ok(None);
        }
        let ttype = Self::ttype(code)?;
        Ok(Some((ttype, self.i16()?)))
    }
    fn struct_begin(&mut self) -> Result<()> {
        Ok(())
    }
    fn struct_end(&mut self) {}
    fn bool(&mut self) -> Result<bool> {
        Ok(self.input.u8()? != 0)
    }
    fn byte(&mut self) -> Result<i8> {
        Ok(self.input.u8()? as i8)
    }
    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.input.array()?))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.input.array()?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.input.array()?))
    }
    fn double(&mut self) -> Result<f64> {
        Ok(f64::from_be_bytes(self.input.array()?))
    }
    fn binary(&mut self) -> Result<&'a [u8]> {
        let len = self.i32()?;
        let len = self.input.count(i64::from(len), "string length")?;
        self.input.take(len)
    }
    fn list(&mut self) -> Result<(TType, usize)> {
        let ttype = Self::ttype(self.input.u8()?)?;
        let n = self.i32()?;
        Ok((ttype, self.input.count(i64::from(n), "list size")?))
    }
    fn map(&mut self) -> Result<(TType, TType, usize)> {
        let key = Self::ttype(self.input.u8()?)?;
        let value = Self::ttype(self.input.u8()?)?;
        let n = self.i32()?;
        Ok((key, value, self.input.count(i64::from(n), "map size")?))
    }
    fn uuid(&mut self) -> Result<()> {
        self.input.take(16).map(|_| ())
    }
}

/// TCompactProtocol (varints, zigzag, field-id deltas, bools in the field header).
pub struct Compact<'a> {
    input: Input<'a>,
    last_field: i16,
    stack: Vec<i16>,
    pending_bool: Option<bool>,
}

impl<'a> Compact<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Compact {
            input: Input { data, pos: 0 },
            last_field: 0,
            stack: Vec::new(),
            pending_bool: None,
        }
    }

    fn ttype(code: u8) -> Result<TType> {
        Ok(match code {
            1 | 2 => TType::Bool,
            3 => TType::Byte,
            4 => TType::I16,
            5 => TType::I32,
            6 => TType::I64,
            7 => TType::Double,
            8 => TType::Binary,
            9 => TType::List,
            10 => TType::Set,
            11 => TType::Map,
            12 => TType::Struct,
            13 => TType::Uuid,
            other => return err(format!("unknown compact-protocol type {other}")),
        })
    }

    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.input.u8()?;
            if shift == 63 && byte > 1 {
                return err("varint overflows 64 bits");
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        err("varint longer than 10 bytes")
    }

    fn zigzag(&mut self) -> Result<i64> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// A message header: (name, message type).
    pub fn message_begin(&mut self) -> Result<(&'a [u8], u8)> {
        let protocol = self.input.u8()?;
        if protocol != 0x82 {
            return err(format!("bad compact-protocol id {protocol:#x}"));
        }
        let version_and_type = self.input.u8()?;
        if version_and_type & 0x1f != 1 {
            return err(format!(
                "bad compact-protocol version {}",
                version_and_type & 0x1f
            ));
        }
        self.varint()?;
        let name = self.binary()?;
        Ok((name, version_and_type >> 5))
    }
}

impl<'a> Protocol<'a> for Compact<'a> {
    fn field(&mut self) -> Result<Option<(TType, i16)>> {
        let header = self.input.u8()?;
        let code = header & 0x0f;
        if code == 0 {
            return Ok(None);
        }
        let delta = header >> 4;
        let id = if delta == 0 {
            i16::try_from(self.zigzag()?)
                .map_err(|_| ThriftError("field id out of range".into()))?
        } else {
            self.last_field.wrapping_add(i16::from(delta))
        };
        self.last_field = id;
        let ttype = Self::ttype(code)?;
        if ttype == TType::Bool {
            self.pending_bool = Some(code == 1);
        }
        Ok(Some((ttype, id)))
    }
    fn struct_begin(&mut self) -> Result<()> {
        if self.stack.len() >= MAX_DEPTH {
            return err("structs nested too deeply");
        }
        self.stack.push(self.last_field);
        self.last_field = 0;
        Ok(())
    }
    fn struct_end(&mut self) {
        self.last_field = self.stack.pop().unwrap_or(0);
    }
    fn bool(&mut self) -> Result<bool> {
        match self.pending_bool.take() {
            Some(value) => Ok(value),
            None => Ok(self.input.u8()? == 1),
        }
    }
    fn byte(&mut self) -> Result<i8> {
        Ok(self.input.u8()? as i8)
    }
    fn i16(&mut self) -> Result<i16> {
        i16::try_from(self.zigzag()?).map_err(|_| ThriftError("i16 out of range".into()))
    }
    fn i32(&mut self) -> Result<i32> {
        i32::try_from(self.zigzag()?).map_err(|_| ThriftError("i32 out of range".into()))
    }
    fn i64(&mut self) -> Result<i64> {
        self.zigzag()
    }
    fn double(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.input.array()?))
    }
    fn binary(&mut self) -> Result<&'a [u8]> {
        let len = self.varint()?;
        let len = self
            .input
            .count(i64::try_from(len).unwrap_or(i64::MAX), "string length")?;
        self.input.take(len)
    }
    fn list(&mut self) -> Result<(TType, usize)> {
        let header = self.input.u8()?;
        let ttype = Self::ttype(header & 0x0f)?;
        let short = header >> 4;
        let n = if short == 15 {
            self.varint()?
        } else {
            u64::from(short)
        };
        Ok((
            ttype,
            self.input
                .count(i64::try_from(n).unwrap_or(i64::MAX), "list size")?,
        ))
    }
    fn map(&mut self) -> Result<(TType, TType, usize)> {
        let n = self.varint()?;
        let n = self
            .input
            .count(i64::try_from(n).unwrap_or(i64::MAX), "map size")?;
        if n == 0 {
            return Ok((TType::Byte, TType::Byte, 0));
        }
        let types = self.input.u8()?;
        Ok((Self::ttype(types >> 4)?, Self::ttype(types & 0x0f)?, n))
    }
    fn uuid(&mut self) -> Result<()> {
        self.input.take(16).map(|_| ())
    }
}

/// Skips one value of `ttype` (a field oxcol does not read).
fn skip<'a>(p: &mut impl Protocol<'a>, ttype: TType, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return err("values nested too deeply");
    }
    match ttype {
        TType::Bool => p.bool().map(|_| ()),
        TType::Byte => p.byte().map(|_| ()),
        TType::I16 => p.i16().map(|_| ()),
        TType::I32 => p.i32().map(|_| ()),
        TType::I64 => p.i64().map(|_| ()),
        TType::Double => p.double().map(|_| ()),
        TType::Binary => p.binary().map(|_| ()),
        TType::Uuid => p.uuid(),
        TType::Struct => {
            p.struct_begin()?;
            while let Some((field_type, _)) = p.field()? {
                skip(p, field_type, depth + 1)?;
            }
            p.struct_end();
            Ok(())
        }
        TType::List | TType::Set => {
            let (element, n) = p.list()?;
            for _ in 0..n {
                skip(p, element, depth + 1)?;
            }
            Ok(())
        }
        TType::Map => {
            let (key, value, n) = p.map()?;
            for _ in 0..n {
                skip(p, key, depth + 1)?;
                skip(p, value, depth + 1)?;
            }
            Ok(())
        }
    }
}

fn expect(actual: TType, wanted: TType, what: &str) -> Result<()> {
    if actual == wanted {
        Ok(())
    } else {
        err(format!("{what}: type {actual:?}, want {wanted:?}"))
    }
}

fn string(bytes: &[u8]) -> String {
    // Go's thrift strings are bytes; invalid UTF-8 is kept readable rather than refused.
    String::from_utf8_lossy(bytes).into_owned()
}

/// Reads a struct: `on_field` is called for every field; it returns false for fields it
/// does not read (they are skipped). `required` lists the field ids that must be present.
fn read_struct<'a, P: Protocol<'a>>(
    p: &mut P,
    name: &str,
    required: &[(i16, &str)],
    mut on_field: impl FnMut(&mut P, TType, i16) -> Result<bool>,
) -> Result<()> {
    p.struct_begin()?;
    let mut seen = 0u64;
    while let Some((ttype, id)) = p.field()? {
        if on_field(p, ttype, id)? {
            if (0..64).contains(&id) {
                seen |= 1 << id;
            }
        } else {
            skip(p, ttype, 1)?;
        }
    }
    p.struct_end();
    for (id, field) in required {
        if seen & (1 << id) == 0 {
            return err(format!("{name}: required field {field} is not set"));
        }
    }
    Ok(())
}

fn read_list<'a, P: Protocol<'a>, T>(
    p: &mut P,
    ttype: TType,
    what: &str,
    mut element: impl FnMut(&mut P) -> Result<T>,
) -> Result<Vec<T>> {
    expect(ttype, TType::List, what)?;
    let (element_type, n) = p.list()?;
    expect(element_type, TType::Struct, what)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(element(p)?);
    }
    Ok(out)
}

fn read_tag<'a, P: Protocol<'a>>(p: &mut P) -> Result<model::KeyValue> {
    let mut tag = model::KeyValue::default();
    read_struct(p, "Tag", &[(1, "key"), (2, "vType")], |p, ttype, id| {
        match (id, ttype) {
            (1, TType::Binary) => tag.key = string(p.binary()?),
            // Thrift TagType: STRING, DOUBLE, BOOL, LONG, BINARY; api_v2 ValueType: STRING,
            // BOOL, INT64, FLOAT64, BINARY. Unknown values stay unknown (the translation
            // writes them as "<Unknown Jaeger TagType ...>" as the Collector does).
            (2, TType::I32) => {
                tag.v_type = match p.i32()? {
                    0 => model::value_type::STRING,
                    1 => model::value_type::FLOAT64,
                    2 => model::value_type::BOOL,
                    3 => model::value_type::INT64,
                    4 => model::value_type::BINARY,
                    other => other,
                }
            }
            (3, TType::Binary) => tag.v_str = string(p.binary()?),
            (4, TType::Double) => tag.v_float64 = p.double()?,
            (5, TType::Bool) => tag.v_bool = p.bool()?,
            (6, TType::I64) => tag.v_int64 = p.i64()?,
            (7, TType::Binary) => tag.v_binary = p.binary()?.to_vec(),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(tag)
}

fn read_tags<'a, P: Protocol<'a>>(
    p: &mut P,
    ttype: TType,
    what: &str,
) -> Result<Vec<model::KeyValue>> {
    read_list(p, ttype, what, read_tag)
}

/// Microseconds since the epoch as a Timestamp.
fn micros_timestamp(micros: i64) -> model::Timestamp {
    model::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

fn micros_duration(micros: i64) -> model::Duration {
    model::Duration {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

pub(crate) fn trace_id_bytes(high: i64, low: i64) -> Vec<u8> {
    let mut id = Vec::with_capacity(16);
    id.extend_from_slice(&high.to_be_bytes());
    id.extend_from_slice(&low.to_be_bytes());
    id
}

fn read_log<'a, P: Protocol<'a>>(p: &mut P) -> Result<model::Log> {
    let mut log = model::Log::default();
    read_struct(
        p,
        "Log",
        &[(1, "timestamp"), (2, "fields")],
        |p, ttype, id| {
            match (id, ttype) {
                (1, TType::I64) => log.timestamp = Some(micros_timestamp(p.i64()?)),
                (2, _) => log.fields = read_tags(p, ttype, "Log.fields")?,
                _ => return Ok(false),
            }
            Ok(true)
        },
    )?;
    Ok(log)
}

fn read_span_ref<'a, P: Protocol<'a>>(p: &mut P) -> Result<model::SpanRef> {
    let (mut kind, mut low, mut high, mut span_id) = (0, 0, 0, 0);
    read_struct(
        p,
        "SpanRef",
        &[
            (1, "refType"),
            (2, "traceIdLow"),
            (3, "traceIdHigh"),
            (4, "spanId"),
        ],
        |p, ttype, id| {
            match (id, ttype) {
                (1, TType::I32) => kind = p.i32()?,
                (2, TType::I64) => low = p.i64()?,
                (3, TType::I64) => high = p.i64()?,
                (4, TType::I64) => span_id = p.i64()?,
                _ => return Ok(false),
            }
            Ok(true)
        },
    )?;
    let ref_type = if kind == 0 {
        model::ref_type::CHILD_OF
    } else {
        model::ref_type::FOLLOWS_FROM
    };
    Ok(model::SpanRef {
        trace_id: trace_id_bytes(high, low),
        span_id: span_id.to_be_bytes().to_vec(),
        ref_type,
    })
}

fn read_span<'a, P: Protocol<'a>>(p: &mut P) -> Result<model::Span> {
    let mut span = model::Span::default();
    let (mut low, mut high, mut span_id, mut parent, mut start, mut duration) =
        (0i64, 0i64, 0i64, 0i64, 0i64, 0i64);
    let required = [
        (1, "traceIdLow"),
        (2, "traceIdHigh"),
        (3, "spanId"),
        (4, "parentSpanId"),
        (5, "operationName"),
        (7, "flags"),
        (8, "startTime"),
        (9, "duration"),
    ];
    read_struct(p, "Span", &required, |p, ttype, id| {
        match (id, ttype) {
            (1, TType::I64) => low = p.i64()?,
            (2, TType::I64) => high = p.i64()?,
            (3, TType::I64) => span_id = p.i64()?,
            (4, TType::I64) => parent = p.i64()?,
            (5, TType::Binary) => span.operation_name = string(p.binary()?),
            (6, _) => span.references = read_list(p, ttype, "Span.references", read_span_ref)?,
            (7, TType::I32) => span.flags = p.i32()? as u32,
            (8, TType::I64) => start = p.i64()?,
            (9, TType::I64) => duration = p.i64()?,
            (10, _) => span.tags = read_tags(p, ttype, "Span.tags")?,
            (11, _) => span.logs = read_list(p, ttype, "Span.logs", read_log)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    span.trace_id = trace_id_bytes(high, low);
    span.span_id = span_id.to_be_bytes().to_vec();
    span.start_time = Some(micros_timestamp(start));
    span.duration = Some(micros_duration(duration));
    if parent != 0 {
        let parent_ref = model::SpanRef {
            trace_id: span.trace_id.clone(),
            span_id: parent.to_be_bytes().to_vec(),
            ref_type: model::ref_type::CHILD_OF,
        };
        span.references.insert(0, parent_ref);
    }
    Ok(span)
}

fn read_process<'a, P: Protocol<'a>>(p: &mut P) -> Result<model::Process> {
    let mut process = model::Process::default();
    read_struct(p, "Process", &[(1, "serviceName")], |p, ttype, id| {
        match (id, ttype) {
            (1, TType::Binary) => process.service_name = string(p.binary()?),
            (2, _) => process.tags = read_tags(p, ttype, "Process.tags")?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(process)
}

/// Reads a `jaeger.thrift` Batch struct.
pub fn read_batch<'a, P: Protocol<'a>>(p: &mut P) -> Result<model::Batch> {
    let mut batch = model::Batch::default();
    read_struct(
        p,
        "Batch",
        &[(1, "process"), (2, "spans")],
        |p, ttype, id| {
            match (id, ttype) {
                (1, TType::Struct) => batch.process = Some(read_process(p)?),
                (2, _) => batch.spans = read_list(p, ttype, "Batch.spans", read_span)?,
                _ => return Ok(false),
            }
            Ok(true)
        },
    )?;
    Ok(batch)
}

/// A Batch encoded with the binary protocol, as `POST /api/traces` carries it.
pub fn decode_binary_batch(data: &[u8]) -> Result<model::Batch> {
    read_batch(&mut Binary::new(data))
}

/// Reads an agent message (`Agent.emitBatch(1: Batch batch)`, oneway) after its header.
fn read_emit_batch<'a, P: Protocol<'a>>(p: &mut P, name: &[u8], kind: u8) -> Result<model::Batch> {
    // Message types: 1 CALL, 4 ONEWAY.
    if kind != 1 && kind != 4 {
        return err(format!("message type {kind} is not a call"));
    }
    if name != b"emitBatch" {
        return err(format!(
            "agent method {:?} is not supported (only emitBatch; emitZipkinBatch is not)",
            String::from_utf8_lossy(name)
        ));
    }
    let mut batch = None;
    read_struct(p, "emitBatch_args", &[(1, "batch")], |p, ttype, id| {
        if id == 1 && ttype == TType::Struct {
            batch = Some(read_batch(p)?);
            return Ok(true);
        }
        Ok(false)
    })?;
    batch.ok_or_else(|| ThriftError("emitBatch without a batch".into()))
}

/// One UDP packet of the agent protocol, compact encoding (port 6831).
pub fn decode_compact_agent(data: &[u8]) -> Result<model::Batch> {
    let mut p = Compact::new(data);
    let (name, kind) = p.message_begin()?;
    read_emit_batch(&mut p, name, kind)
}

/// One UDP packet of the agent protocol, binary encoding (port 6832).
pub fn decode_binary_agent(data: &[u8]) -> Result<model::Batch> {
    let mut p = Binary::new(data);
    let (name, kind) = p.message_begin()?;
    read_emit_batch(&mut p, name, kind)
}

#[cfg(test)]
#[path = "thrift_tests.rs"]
pub(crate) mod tests;
