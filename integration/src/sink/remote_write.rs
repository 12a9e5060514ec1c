//! The sink's Prometheus remote write endpoint: `POST /api/v1/write` (1.0 `WriteRequest`
//! or 2.0 `Request`, snappy block format). It never decodes the message: a skeleton walk
//! over the protobuf wire format counts the samples and native histogram samples of every
//! series; they are reported as metric items in `GET /stats` (requests, items, bytes).
//! Fault injection does not apply to this endpoint: it always answers 204 (with the 2.0
//! `X-Prometheus-Remote-Write-*-Written` headers) or 400 for a malformed body.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;

use super::SinkState;

/// Largest decompressed request accepted.
const MAX_DECODED_BYTES: usize = 64 << 20;

pub(super) async fn write(State(state): State<Arc<SinkState>>, body: Bytes) -> Response {
    let decoded = match snap::raw::decompress_len(&body) {
        Ok(len) if len <= MAX_DECODED_BYTES => snap::raw::Decoder::new().decompress_vec(&body),
        Ok(len) => {
            state.failed_requests.fetch_add(1, Ordering::Relaxed);
            return (
                StatusCode::BAD_REQUEST,
                format!("decoded body of {len} bytes is too large"),
            )
                .into_response();
        }
        Err(e) => Err(e),
    };
    let counted = decoded
        .map_err(|e| format!("snappy: {e}"))
        .and_then(|d| count(&d).map(|c| (c, d.len())));
    match counted {
        Ok(((samples, histograms), bytes)) => {
            let counters = &state.counters[0];
            counters.requests.fetch_add(1, Ordering::Relaxed);
            counters
                .items
                .fetch_add(samples + histograms, Ordering::Relaxed);
            state.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            (
                StatusCode::NO_CONTENT,
                [
                    (
                        "x-prometheus-remote-write-samples-written",
                        samples.to_string(),
                    ),
                    (
                        "x-prometheus-remote-write-histograms-written",
                        histograms.to_string(),
                    ),
                ],
            )
                .into_response()
        }
        Err(message) => {
            state.failed_requests.fetch_add(1, Ordering::Relaxed);
            (StatusCode::BAD_REQUEST, message).into_response()
        }
    }
}

/// (samples, histograms) of a remote write 1.0 or 2.0 request: `timeseries` is field 1
/// (1.0) or 5 (2.0); in a series, samples are field 2 and histograms field 4 (1.0) or 3
/// (2.0). A 2.0 request is recognised by its symbol table (field 4 of the request).
pub fn count(message: &[u8]) -> Result<(u64, u64), String> {
    let mut fields = Vec::new();
    walk(message, &mut |field, body| {
        fields.push((field, body));
        Ok(())
    })?;
    let v2 = fields.iter().any(|(f, b)| *f == 4 && b.is_some());
    let (series_field, histogram_field) = if v2 { (5, 3) } else { (1, 4) };
    let (mut samples, mut histograms) = (0u64, 0u64);
    for (field, body) in fields {
        let (true, Some(series)) = (field == series_field, body) else {
            continue;
        };
        walk(series, &mut |f, _| {
            if f == 2 {
                samples += 1;
            } else if f == histogram_field {
                histograms += 1;
            }
            Ok(())
        })?;
    }
    Ok((samples, histograms))
}

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or("truncated varint")?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err("varint too long".to_string())
}

/// Calls `f(field, Some(bytes))` for length-delimited fields and `f(field, None)` for others.
fn walk<'a>(
    bytes: &'a [u8],
    f: &mut dyn FnMut(u64, Option<&'a [u8]>) -> Result<(), String>,
) -> Result<(), String> {
    let mut at = 0;
    while at < bytes.len() {
        let key = varint(bytes, &mut at)?;
        let field = key >> 3;
        match key & 7 {
            0 => {
                varint(bytes, &mut at)?;
                f(field, None)?;
            }
            1 => {
                at += 8;
                f(field, None)?;
            }
            2 => {
                let len = varint(bytes, &mut at)? as usize;
                let end = at
                    .checked_add(len)
                    .filter(|e| *e <= bytes.len())
                    .ok_or("truncated field")?;
                f(field, Some(&bytes[at..end]))?;
                at = end;
            }
            5 => {
                at += 4;
                f(field, None)?;
            }
            other => return Err(format!("wire type {other} is not valid here")),
        }
    }
    if at > bytes.len() {
        return Err("truncated fixed-width field".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_v1_samples_and_histograms_and_refuses_garbage() {
        // timeseries{ labels{..} samples{..} samples{..} histograms{..} } x2
        let series: Vec<u8> = [
            &[0x0a, 0x02, 0x0a, 0x00][..],
            &[0x12, 0x00],
            &[0x12, 0x00],
            &[0x22, 0x00],
        ]
        .concat();
        let mut request = Vec::new();
        for _ in 0..2 {
            request.push(0x0a);
            request.push(series.len() as u8);
            request.extend_from_slice(&series);
        }
        assert_eq!(count(&request), Ok((4, 2)));
        assert!(count(&[0x0a, 0x05, 0x00]).is_err());
        assert_eq!(count(&[]), Ok((0, 0)));
    }
}
