//! The gRPC codec of the cluster's services: protobuf (prost), each
//! message decoded from one contiguous `Bytes` split off tonic's receive
//! buffer (no copy) rather than through tonic's buffer view, where every
//! field's read went through two layers of bounds checks and `BytesMut`
//! bookkeeping (about a tenth of the link's decoding work per call).
//! Encoding is prost's own.

use std::marker::PhantomData;

use prost::bytes::Buf;
use tonic::Status;
use tonic::codec::{DecodeBuf, Decoder};
use tonic_prost::ProstCodec;

/// A prost codec that decodes from contiguous bytes.
#[derive(Debug, Clone)]
pub(crate) struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec(PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as tonic::codec::Codec>::Encoder;
    type Decoder = ContiguousDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ContiguousDecoder(PhantomData)
    }
}

/// Decodes `U` from the whole message at once.
#[derive(Debug)]
pub(crate) struct ContiguousDecoder<U>(PhantomData<U>);

impl<U: prost::Message + Default> Decoder for ContiguousDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        // An undecodable message is INTERNAL, as tonic's own codec says.
        U::decode(bytes)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}
