//! A skeleton scan of encoded OTLP export requests: counts items (data points, spans,
//! log records) and finds resource boundaries without building the prost object tree.
//!
//! Why: a relay whose processors read nothing (OTLP in -> batch -> OTLP out) only needs
//! to know how many items a request holds (for limits and self-telemetry) and where it can
//! be cut (for `send_batch_max_size`). A full decode + re-encode costs an order of magnitude
//! more CPU than this walk, and allocates per item; this module allocates nothing.
//!
//! The scan checks the protobuf framing of every message it walks through, down to and
//! including the fields of each item (a data point, span or log record): every tag is a
//! valid field number and wire type, every length stays inside its parent. Truncated or
//! garbage bodies are therefore refused here with a clear error. It does not check what is
//! inside item fields (attribute values, UTF-8 of strings): an exporter forwards those
//! bytes as they came, and a decoding processor or exporter checks them when it reads them.
//!
//! It must never panic on any input: every index is checked.

use crate::signal::Signal;
use std::fmt;
use std::ops::Range;

/// What is wrong with an encoded request, with the byte offset where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError {
    pub offset: usize,
    pub reason: &'static str,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed protobuf at byte {}: {}",
            self.offset, self.reason
        )
    }
}

impl std::error::Error for WireError {}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

/// One field of a message: its number, wire type, and for length-delimited fields the
/// payload range (absolute offsets into the scanned buffer).
#[derive(Clone, Debug)]
struct Field {
    number: u32,
    wire_type: u8,
    payload: Range<usize>,
    /// Range of the whole field including tag and length prefix.
    whole: Range<usize>,
}

/// Iterates over the fields of the message stored in `buf[range]`, checking framing.
struct Fields<'a> {
    buf: &'a [u8],
    position: usize,
    end: usize,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8], range: Range<usize>) -> Self {
        Fields {
            buf,
            position: range.start,
            end: range.end,
        }
    }
}

fn read_varint(buf: &[u8], mut position: usize, end: usize) -> Result<(u64, usize), WireError> {
    let start = position;
    let mut value: u64 = 0;
    let mut shift = 0u32;
    loop {
        if position >= end {
            return Err(WireError {
                offset: start,
                reason: "truncated varint",
            });
        }
        let byte = buf[position];
        position += 1;
        if shift == 63 && byte > 1 {
            return Err(WireError {
                offset: start,
                reason: "varint overflows 64 bits",
            });
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((value, position));
        }
        shift += 7;
        if shift > 63 {
            return Err(WireError {
                offset: start,
                reason: "varint longer than 10 bytes",
            });
        }
    }
}

impl Iterator for Fields<'_> {
    type Item = Result<Field, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.position >= self.end {
            return None;
        }
        let start = self.position;
        let result = (|| {
            let (tag, after_tag) = read_varint(self.buf, self.position, self.end)?;
            let number = (tag >> 3) as u32;
            let wire_type = (tag & 7) as u8;
            if number == 0 || tag >> 3 > u64::from(u32::MAX >> 3) {
                return Err(WireError {
                    offset: start,
                    reason: "invalid field number",
                });
            }
            let (payload, next) = match wire_type {
                WIRE_VARINT => {
                    let (_, next) = read_varint(self.buf, after_tag, self.end)?;
                    (after_tag..next, next)
                }
                WIRE_FIXED64 => (after_tag..after_tag + 8, after_tag + 8),
                WIRE_FIXED32 => (after_tag..after_tag + 4, after_tag + 4),
                WIRE_LEN => {
                    let (length, after_length) = read_varint(self.buf, after_tag, self.end)?;
                    let length = usize::try_from(length).map_err(|_| WireError {
                        offset: start,
                        reason: "length does not fit in memory",
                    })?;
                    let payload_end = after_length.checked_add(length).ok_or(WireError {
                        offset: start,
                        reason: "length overflows",
                    })?;
                    (after_length..payload_end, payload_end)
                }
                _ => {
                    return Err(WireError {
                        offset: start,
                        reason: "unsupported wire type (groups or invalid)",
                    });
                }
            };
            if next > self.end {
                return Err(WireError {
                    offset: start,
                    reason: "field extends past the end of its message",
                });
            }
            self.position = next;
            Ok(Field {
                number,
                wire_type,
                payload,
                whole: start..next,
            })
        })();
        if result.is_err() {
            // Stop iterating after the first error.
            self.position = self.end;
        }
        Some(result)
    }
}

/// Checks that a message's fields are framed correctly, without descending into them.
fn check_flat(buf: &[u8], range: Range<usize>) -> Result<(), WireError> {
    for field in Fields::new(buf, range) {
        field?;
    }
    Ok(())
}

fn expect_len(field: &Field) -> Result<(), WireError> {
    if field.wire_type != WIRE_LEN {
        return Err(WireError {
            offset: field.whole.start,
            reason: "expected a length-delimited message field",
        });
    }
    Ok(())
}

/// Counts the items inside one metric message (`Metric`): the data points of whichever
/// of gauge/sum/histogram/exponential_histogram/summary it holds.
fn count_metric(buf: &[u8], range: Range<usize>) -> Result<u64, WireError> {
    let mut points = 0;
    for field in Fields::new(buf, range) {
        let field = field?;
        match field.number {
            // gauge, sum, histogram, exponential_histogram, summary
            5 | 7 | 9 | 10 | 11 => {
                expect_len(&field)?;
                for inner in Fields::new(buf, field.payload.clone()) {
                    let inner = inner?;
                    if inner.number == 1 {
                        expect_len(&inner)?;
                        check_flat(buf, inner.payload.clone())?;
                        points += 1;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(points)
}

/// Counts items in one `Resource{Metrics,Spans,Logs}` message.
fn count_resource(signal: Signal, buf: &[u8], range: Range<usize>) -> Result<u64, WireError> {
    let mut items = 0;
    for field in Fields::new(buf, range) {
        let field = field?;
        match field.number {
            1 => {
                expect_len(&field)?;
                check_flat(buf, field.payload.clone())?;
            }
            // scope_metrics / scope_spans / scope_logs
            2 => {
                expect_len(&field)?;
                for scoped in Fields::new(buf, field.payload.clone()) {
                    let scoped = scoped?;
                    match (scoped.number, signal) {
                        (1, _) => {
                            expect_len(&scoped)?;
                            check_flat(buf, scoped.payload.clone())?;
                        }
                        (2, Signal::Metrics) => {
                            expect_len(&scoped)?;
                            items += count_metric(buf, scoped.payload.clone())?;
                        }
                        (2, Signal::Traces | Signal::Logs) => {
                            expect_len(&scoped)?;
                            check_flat(buf, scoped.payload.clone())?;
                            items += 1;
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(items)
}

/// One top-level `resource_*` entry of an export request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceEntry {
    /// Byte range of the whole field (tag, length and payload): copying these bytes
    /// alone yields a valid export request holding just this resource.
    pub range: Range<usize>,
    /// Items (points, spans, log records) under this resource.
    pub items: u64,
}

/// Scans an encoded `Export{Metrics,Trace,Logs}ServiceRequest` and returns its
/// resource entries with their item counts. Unknown top-level fields are skipped.
pub fn scan_request(signal: Signal, buf: &[u8]) -> Result<Vec<ResourceEntry>, WireError> {
    let mut entries = Vec::new();
    for field in Fields::new(buf, 0..buf.len()) {
        let field = field?;
        if field.number == 1 {
            expect_len(&field)?;
            let items = count_resource(signal, buf, field.payload.clone())?;
            entries.push(ResourceEntry {
                range: field.whole.clone(),
                items,
            });
        }
    }
    Ok(entries)
}

/// Counts items in an encoded export request, checking its framing.
pub fn count_items(signal: Signal, buf: &[u8]) -> Result<u64, WireError> {
    let mut items = 0;
    for field in Fields::new(buf, 0..buf.len()) {
        let field = field?;
        if field.number == 1 {
            expect_len(&field)?;
            items += count_resource(signal, buf, field.payload.clone())?;
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    use crate::testdata;

    #[test]
    fn counts_points_of_every_metric_type() {
        let request = testdata::metrics_request(2, 3, 4);
        let bytes = request.encode_to_vec();
        // 2 resources x 3 metrics x 4 points, each metric a different type in turn.
        assert_eq!(count_items(Signal::Metrics, &bytes).unwrap(), 24);
        let entries = scan_request(Signal::Metrics, &bytes).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries.iter().map(|e| e.items).sum::<u64>(), 24);
        // Each entry alone is a valid request with its own resource.
        let first = ExportMetricsServiceRequest::decode(&bytes[entries[0].range.clone()]).unwrap();
        assert_eq!(first.resource_metrics.len(), 1);
        assert_eq!(first.resource_metrics[0], request.resource_metrics[0]);
    }

    #[test]
    fn counts_spans_and_logs() {
        let spans = testdata::trace_request(3, 5).encode_to_vec();
        assert_eq!(count_items(Signal::Traces, &spans).unwrap(), 15);
        let logs = testdata::logs_request(2, 7).encode_to_vec();
        assert_eq!(count_items(Signal::Logs, &logs).unwrap(), 14);
        assert_eq!(count_items(Signal::Logs, &[]).unwrap(), 0);
        let _ = ExportTraceServiceRequest::decode(spans.as_slice()).unwrap();
        let _ = ExportLogsServiceRequest::decode(logs.as_slice()).unwrap();
    }

    #[test]
    fn concatenated_requests_count_as_one() {
        let a = testdata::metrics_request(1, 2, 3).encode_to_vec();
        let b = testdata::metrics_request(2, 1, 1).encode_to_vec();
        let joined = [a.as_slice(), b.as_slice()].concat();
        assert_eq!(count_items(Signal::Metrics, &joined).unwrap(), 6 + 2);
        let decoded = ExportMetricsServiceRequest::decode(joined.as_slice()).unwrap();
        assert_eq!(decoded.resource_metrics.len(), 3);
    }

    #[test]
    fn every_truncation_is_an_error_or_a_shorter_valid_prefix() {
        let bytes = testdata::metrics_request(2, 3, 2).encode_to_vec();
        for cut in 0..bytes.len() {
            let prefix = &bytes[..cut];
            match count_items(Signal::Metrics, prefix) {
                Ok(_) => {
                    // A prefix the scan accepts must also be a valid prost message.
                    assert!(
                        ExportMetricsServiceRequest::decode(prefix).is_ok(),
                        "cut at {cut}"
                    );
                }
                Err(err) => assert!(err.offset <= cut, "offset {} beyond cut {cut}", err.offset),
            }
        }
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        let garbage: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for start in 0..64 {
            let _ = count_items(Signal::Traces, &garbage[start..]);
        }
        // A group wire type is refused.
        assert!(count_items(Signal::Metrics, &[0x0b]).is_err());
        // Length beyond the buffer.
        let err = count_items(Signal::Metrics, &[0x0a, 0x05, 0x00]).unwrap_err();
        assert_eq!(err.reason, "field extends past the end of its message");
        // Field 1 as varint is the wrong wire type.
        assert!(count_items(Signal::Logs, &[0x08, 0x01]).is_err());
        // Ten-byte varint that overflows.
        assert!(
            count_items(
                Signal::Logs,
                &[
                    0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f
                ]
            )
            .is_err()
        );
    }
}
