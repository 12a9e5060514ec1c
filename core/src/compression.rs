//! Compression of request and response bodies (gzip, zstd, deflate), with hard limits on
//! the decompressed size so a small hostile body (a "gzip bomb") cannot expand in memory.
//!
//! Decompression streams into a buffer and stops as soon as the limit would be passed; it
//! never trusts a size the sender declares.

use std::io::{Read, Write};

use bytes::Bytes;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
    Deflate,
}

impl Encoding {
    /// Parses a `Content-Encoding` / `grpc-encoding` / config value. `None` for an
    /// encoding this build does not support.
    pub fn parse(text: &str) -> Option<Encoding> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "identity" | "none" => Some(Encoding::Identity),
            "gzip" | "x-gzip" => Some(Encoding::Gzip),
            "zstd" => Some(Encoding::Zstd),
            "deflate" | "zlib" => Some(Encoding::Deflate),
            _ => None,
        }
    }

    pub fn header_value(self) -> Option<&'static str> {
        match self {
            Encoding::Identity => None,
            Encoding::Gzip => Some("gzip"),
            Encoding::Zstd => Some("zstd"),
            Encoding::Deflate => Some("deflate"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecompressError {
    #[error("decompressed body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("invalid {encoding} data: {reason}")]
    Invalid {
        encoding: &'static str,
        reason: String,
    },
}

/// Decompresses `body` into at most `limit` bytes.
pub fn decompress(encoding: Encoding, body: Bytes, limit: usize) -> Result<Bytes, DecompressError> {
    let name = match encoding {
        Encoding::Identity => {
            if body.len() > limit {
                return Err(DecompressError::TooLarge { limit });
            }
            return Ok(body);
        }
        Encoding::Gzip => "gzip",
        Encoding::Zstd => "zstd",
        Encoding::Deflate => "deflate",
    };
    let invalid = |e: std::io::Error| DecompressError::Invalid {
        encoding: name,
        reason: e.to_string(),
    };
    let reader: Box<dyn Read + '_> = match encoding {
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        Encoding::Deflate => Box::new(flate2::read::ZlibDecoder::new(&body[..])),
        Encoding::Zstd => Box::new(zstd::stream::read::Decoder::new(&body[..]).map_err(invalid)?),
        Encoding::Identity => unreachable!("returned above"),
    };
    // Read one byte past the limit to tell "exactly at the limit" from "over it".
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit).min(16 << 20));
    let read = reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(invalid)?;
    if read > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

/// Compresses `data`; identity returns it unchanged.
pub fn compress(encoding: Encoding, data: &[u8]) -> std::io::Result<Vec<u8>> {
    match encoding {
        Encoding::Identity => Ok(data.to_vec()),
        Encoding::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 4),
                flate2::Compression::fast(),
            );
            encoder.write_all(data)?;
            encoder.finish()
        }
        Encoding::Deflate => {
            let mut encoder = flate2::write::ZlibEncoder::new(
                Vec::with_capacity(data.len() / 4),
                flate2::Compression::fast(),
            );
            encoder.write_all(data)?;
            encoder.finish()
        }
        Encoding::Zstd => zstd::bulk::compress(data, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_encoding() {
        let data: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for encoding in [
            Encoding::Identity,
            Encoding::Gzip,
            Encoding::Zstd,
            Encoding::Deflate,
        ] {
            let packed = compress(encoding, &data).unwrap();
            let unpacked = decompress(encoding, packed.into(), data.len()).unwrap();
            assert_eq!(unpacked.as_ref(), data.as_slice(), "{encoding:?}");
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 64 << 20];
        for encoding in [Encoding::Gzip, Encoding::Zstd, Encoding::Deflate] {
            let bomb = compress(encoding, &zeros).unwrap();
            assert!(
                bomb.len() < 1 << 20,
                "{encoding:?} bomb is {} bytes",
                bomb.len()
            );
            let err = decompress(encoding, bomb.into(), 1 << 20).unwrap_err();
            assert_eq!(err, DecompressError::TooLarge { limit: 1 << 20 });
        }
        assert!(matches!(
            decompress(Encoding::Identity, Bytes::from(vec![1u8; 11]), 10),
            Err(DecompressError::TooLarge { limit: 10 })
        ));
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        for encoding in [Encoding::Gzip, Encoding::Zstd, Encoding::Deflate] {
            let err = decompress(
                encoding,
                Bytes::from_static(b"definitely not compressed"),
                1024,
            )
            .unwrap_err();
            assert!(
                matches!(err, DecompressError::Invalid { .. }),
                "{encoding:?}: {err:?}"
            );
        }
        assert_eq!(Encoding::parse("GZIP"), Some(Encoding::Gzip));
        assert_eq!(Encoding::parse("br"), None);
    }
}
