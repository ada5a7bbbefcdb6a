//! `Vec<u8>` arguments of `#[grain_methods]` encode as one block of bytes:
//! the same bytes bincode writes for a plain sequence of `u8` (silos built
//! before and after understand each other), arbitrary contents survive the
//! trip, and a corrupt length is a clear error.

use std::time::Duration;

use actor_core::__private::codec;
use actor_core::prelude::*;
use actor_core::{EncodedCall, Error};
use proptest::prelude::*;

#[derive(Default)]
struct Blobs {
    stored: Vec<u8>,
}

impl Grain for Blobs {
    const TYPE_NAME: &'static str = "blobs";
}

#[grain_methods]
impl Blobs {
    /// Keeps `data` (after `tag`) and answers its length.
    async fn put(&mut self, tag: u8, data: Vec<u8>, also: std::vec::Vec<u8>) -> u64 {
        self.stored = data;
        self.stored.extend_from_slice(&also);
        self.stored.insert(0, tag);
        self.stored.len() as u64
    }

    /// What `put` kept.
    async fn get(&self) -> Vec<u8> {
        self.stored.clone()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn byte_arguments_keep_the_wire_format_of_a_sequence(
        tag: u8,
        data in proptest::collection::vec(any::<u8>(), 0..600),
        also in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let msg = BlobsPut { tag, data: data.clone(), also: also.clone() };
        let block = codec::encode(&msg).unwrap();
        // A plain tuple of the same values: bincode visits the bytes one by
        // one, as a message without the byte-block encoding did.
        let sequence = codec::encode(&(tag, &data, &also)).unwrap();
        prop_assert_eq!(&block, &sequence);
        let back: BlobsPut = codec::decode(&sequence).unwrap();
        prop_assert_eq!(back.tag, tag);
        prop_assert_eq!(back.data, data);
        prop_assert_eq!(back.also, also);
    }
}

#[test]
fn a_corrupt_length_is_a_clear_error() {
    // The length of `data` claims far more bytes than there are.
    let mut bytes = codec::encode(&(7u8, vec![1u8, 2, 3], Vec::<u8>::new())).unwrap();
    bytes[1] = 250; // a varint prefix byte: a u64 length follows
    bytes.truncate(2);
    bytes.extend_from_slice(&u64::MAX.to_le_bytes());
    let Err(err) = codec::decode::<BlobsPut>(&bytes) else {
        panic!("a length past the end decoded");
    };
    assert!(matches!(err, Error::Serialization(_)), "{err}");
}

#[tokio::test]
async fn byte_arguments_travel_through_typed_and_encoded_calls() {
    let silo = Silo::builder().grain::<Blobs>().start().await.unwrap();
    let blobs = silo.get_grain::<Blobs>(1);
    let data: Vec<u8> = (0..=255).collect();
    assert_eq!(blobs.put(9, data.clone(), vec![1, 2]).await.unwrap(), 259);

    // The serialized path (a transport's): the payload a peer would send.
    let payload = codec::encode(&(3u8, &data, &Vec::<u8>::new())).unwrap();
    let call = EncodedCall::new(
        GrainId::new("blobs", 1),
        "put",
        payload,
        Duration::from_secs(5),
    );
    let reply = silo.invoke_encoded(call).await.unwrap();
    assert_eq!(codec::decode::<u64>(&reply).unwrap(), 257);
    let mut expected = vec![3];
    expected.extend_from_slice(&data);
    assert_eq!(blobs.get().await.unwrap(), expected);

    // A payload cut short fails the call, and the grain keeps its state.
    let call = EncodedCall::new(
        GrainId::new("blobs", 1),
        "put",
        codec::encode(&(3u8, &data, &Vec::<u8>::new())).unwrap()[..100].to_vec(),
        Duration::from_secs(5),
    );
    let err = silo.invoke_encoded(call).await.unwrap_err();
    assert!(matches!(err, Error::Serialization(_)), "{err}");
    assert_eq!(blobs.get().await.unwrap(), expected);
}
