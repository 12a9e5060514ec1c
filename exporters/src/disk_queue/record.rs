//! The record format of a disk-queue segment file, all integers little-endian:
//!
//! ```text
//! [len u32][crc32 u32][signal u8][items u64][payload: len bytes]
//! ```
//!
//! `payload` is the encoded `Export{Metrics,Trace,Logs}ServiceRequest`. `crc32` (IEEE, the
//! `crc32fast` crate) covers `signal`, `items` and `payload`, so a flipped bit in any of
//! them is detected; a flipped bit in `len` shows as a record running past the end of the
//! file or as a checksum mismatch.

use oxcol_core::Signal;

/// Bytes before the payload.
pub const HEADER_LEN: usize = 17;
/// Largest payload accepted (a request is at most a few tens of MiB after decompression);
/// a larger `len` read from disk means corruption.
pub const MAX_PAYLOAD: u32 = 256 << 20;

pub fn signal_byte(signal: Signal) -> u8 {
    match signal {
        Signal::Metrics => 1,
        Signal::Traces => 2,
        Signal::Logs => 3,
    }
}

pub fn signal_from_byte(byte: u8) -> Option<Signal> {
    match byte {
        1 => Some(Signal::Metrics),
        2 => Some(Signal::Traces),
        3 => Some(Signal::Logs),
        _ => None,
    }
}

fn checksum(signal: u8, items: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[signal]);
    hasher.update(&items.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// The header of a record holding `payload`.
pub fn header(signal: Signal, items: u64, payload: &[u8]) -> [u8; HEADER_LEN] {
    let signal = signal_byte(signal);
    let mut out = [0u8; HEADER_LEN];
    out[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    out[4..8].copy_from_slice(&checksum(signal, items, payload).to_le_bytes());
    out[8] = signal;
    out[9..17].copy_from_slice(&items.to_le_bytes());
    out
}

/// A decoded header (not yet checked against its payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub len: u32,
    pub crc: u32,
    pub signal: u8,
    pub items: u64,
}

impl Header {
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Header {
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let mut items = [0u8; 8];
        items.copy_from_slice(&bytes[9..17]);
        Header {
            len: u32_at(0),
            crc: u32_at(4),
            signal: bytes[8],
            items: u64::from_le_bytes(items),
        }
    }

    /// Whole record length, header included.
    pub fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + self.len as u64
    }

    /// Checks the payload against the header: the signal is known and the checksum matches.
    pub fn verify(&self, payload: &[u8]) -> Result<Signal, &'static str> {
        if checksum(self.signal, self.items, payload) != self.crc {
            return Err("checksum mismatch");
        }
        signal_from_byte(self.signal).ok_or("unknown signal byte")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_detects_every_single_bit_flip() {
        let payload = b"\x0a\x03abc".to_vec();
        let bytes = header(Signal::Logs, 7, &payload);
        let parsed = Header::parse(&bytes);
        assert_eq!(parsed.len, 5);
        assert_eq!(parsed.items, 7);
        assert_eq!(parsed.verify(&payload), Ok(Signal::Logs));
        // Any flipped bit in signal, items or payload fails the check.
        for bit in 0..(9 * 8) {
            let mut h = bytes;
            h[8 + bit / 8] ^= 1 << (bit % 8);
            assert!(
                Header::parse(&h).verify(&payload).is_err(),
                "bit {bit} of signal/items undetected"
            );
        }
        for bit in 0..payload.len() * 8 {
            let mut p = payload.clone();
            p[bit / 8] ^= 1 << (bit % 8);
            assert!(parsed.verify(&p).is_err(), "payload bit {bit} undetected");
        }
    }
}
