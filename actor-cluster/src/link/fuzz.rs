//! Mutations of valid messages for the decoders' property tests: bit
//! flips, truncation, bytes overwritten, and length fields (protobuf
//! varints, bincode's length prefixes) changed to announce far more than
//! is there. Every decoder of bytes from the network is run on random
//! bytes and on mutated valid frames, and must return an error or a
//! value, never panic or allocate what the bytes announce.

use proptest::prelude::*;

/// One change to a message.
#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    /// Flips bit `bit` of the byte at `at` (modulo the length).
    Flip { at: usize, bit: u8 },
    /// Keeps the first `len` bytes (modulo the length plus one).
    Truncate { len: usize },
    /// Overwrites the byte at `at` with `byte`.
    Set { at: usize, byte: u8 },
    /// Replaces the byte at `at` with `with`: a huge length, as a varint
    /// or as bincode's prefix, where a length field may be.
    Length { at: usize, with: Vec<u8> },
    /// Inserts `bytes` at `at`.
    Insert { at: usize, bytes: Vec<u8> },
}

/// Length fields announcing 2 GiB, 4 GiB and 2^64 - 1 bytes: protobuf
/// varints, and bincode's `u32`/`u64` length prefixes (tags 252, 253).
pub(crate) fn huge_lengths() -> Vec<Vec<u8>> {
    let varint = |mut n: u64| {
        let mut out = Vec::new();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    };
    let mut lengths = vec![
        varint(1 << 31),
        varint(u64::from(u32::MAX)),
        varint(u64::MAX),
    ];
    let mut b = vec![252];
    b.extend_from_slice(&(1u32 << 31).to_le_bytes());
    lengths.push(b);
    let mut b = vec![253];
    b.extend_from_slice(&u64::MAX.to_le_bytes());
    lengths.push(b);
    lengths
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (any::<usize>(), proptest::sample::select(huge_lengths()))
            .prop_map(|(at, with)| Mutation::Length { at, with }),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
    ]
}

/// One to four mutations.
pub(crate) fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(mutation(), 1..5)
}

/// Random bytes: from nothing up to 4 KiB.
pub(crate) fn random_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..4096)
}

/// `bytes` with `mutations` applied in turn.
pub(crate) fn apply(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for m in mutations {
        let n = out.len();
        match m {
            Mutation::Flip { at, bit } if n > 0 => out[at % n] ^= 1 << bit,
            Mutation::Truncate { len } => out.truncate(len % (n + 1)),
            Mutation::Set { at, byte } if n > 0 => out[at % n] = *byte,
            Mutation::Length { at, with } if n > 0 => {
                let at = at % n;
                out.splice(at..=at, with.iter().copied());
            }
            Mutation::Insert { at, bytes } => {
                let at = at % (n + 1);
                out.splice(at..at, bytes.iter().copied());
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_change_what_they_say() {
        let valid = [1u8, 2, 3, 4];
        assert_eq!(
            apply(&valid, &[Mutation::Flip { at: 5, bit: 0 }]),
            [1, 3, 3, 4]
        );
        assert_eq!(apply(&valid, &[Mutation::Truncate { len: 2 }]), [1, 2]);
        assert_eq!(
            apply(
                &valid,
                &[Mutation::Length {
                    at: 0,
                    with: vec![0xff, 0x01]
                }]
            ),
            [0xff, 0x01, 2, 3, 4]
        );
        assert_eq!(
            apply(
                &valid,
                &[Mutation::Insert {
                    at: 4,
                    bytes: vec![9]
                }]
            ),
            [1, 2, 3, 4, 9]
        );
        // The varint for 2^31 reads back as 2^31.
        let two_gib = &huge_lengths()[0];
        let mut buf = &two_gib[..];
        assert_eq!(prost::encoding::decode_varint(&mut buf).unwrap(), 1 << 31);
    }
}
