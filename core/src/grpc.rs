//! A tonic codec that moves OTLP messages as bytes: the request body goes out as the
//! batch's encoded segments and comes in as one `Bytes` handle, so gRPC receivers and
//! exporters never build the prost object tree for data no processor reads.

use bytes::{Buf, BufMut, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::batch::Batch;

/// Something that writes itself as one protobuf message body.
pub trait WireMessage: Send + 'static {
    fn write_to(&self, buf: &mut EncodeBuf<'_>);
}

impl WireMessage for Batch {
    fn write_to(&self, buf: &mut EncodeBuf<'_>) {
        match self.data() {
            // Encoded segments: their length is known, copy them in one by one.
            crate::batch::Data::Encoded(_) => {
                buf.reserve(self.encoded_len());
                self.encode_into(buf);
            }
            // Decoded data: encoded once (crate::otlp_encode) and copied; asking for
            // encoded_len() first would have prost measure the whole tree again.
            _ => buf.put_slice(&self.to_bytes()),
        }
    }
}

impl WireMessage for Bytes {
    fn write_to(&self, buf: &mut EncodeBuf<'_>) {
        buf.put_slice(self);
    }
}

/// Encodes `E` as raw bytes and decodes every message into `Bytes` without parsing it.
pub struct RawCodec<E>(std::marker::PhantomData<fn() -> E>);

impl<E> Default for RawCodec<E> {
    fn default() -> Self {
        RawCodec(std::marker::PhantomData)
    }
}

pub struct RawEncoder<E>(std::marker::PhantomData<fn() -> E>);
pub struct RawDecoder;

impl<E: WireMessage> Encoder for RawEncoder<E> {
    type Item = E;
    type Error = Status;
    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.write_to(dst);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len)))
    }
}

impl<E: WireMessage> Codec for RawCodec<E> {
    type Encode = E;
    type Decode = Bytes;
    type Encoder = RawEncoder<E>;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder(std::marker::PhantomData)
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}
