//! The wire codec: bincode over serde, one configuration for the whole
//! runtime so that every silo and client agree on the bytes.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

fn config() -> impl bincode::config::Config {
    // Little-endian, variable-length integers, and a hard cap on what one
    // message may make the decoder allocate.
    bincode::config::standard().with_limit::<{ 64 * 1024 * 1024 }>()
}

/// Encodes a value with the runtime's wire format (bincode).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| Error::Serialization(e.to_string()))
}

/// Decodes a value written by [`encode`]; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| Error::Serialization(e.to_string()))?;
    if read != bytes.len() {
        return Err(Error::Serialization(format!(
            "{} trailing bytes after the value",
            bytes.len() - read
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_clear_error_not_a_panic() {
        let err = decode::<(String, u64)>(&[0xff, 0xff, 0xff, 0xff, 0xff]).unwrap_err();
        assert!(matches!(err, Error::Serialization(_)), "{err}");
        let ok = encode(&(String::from("x"), 5u64)).unwrap();
        let mut long = ok.clone();
        long.push(0);
        assert!(matches!(
            decode::<(String, u64)>(&long),
            Err(Error::Serialization(_))
        ));
        assert_eq!(decode::<(String, u64)>(&ok).unwrap(), ("x".into(), 5));
    }

    /// A length prefix announcing 2 GiB (bincode's `u32` tag) or 2^64 - 1
    /// bytes (its `u64` tag), followed by almost nothing: an error at
    /// once, with nothing of that size allocated.
    #[test]
    fn huge_length_prefixes_are_errors_without_allocating_them() {
        let mut two_gib = vec![252];
        two_gib.extend_from_slice(&(1u32 << 31).to_le_bytes());
        two_gib.extend_from_slice(b"abc");
        let mut most = vec![253];
        most.extend_from_slice(&u64::MAX.to_le_bytes());
        for bytes in [two_gib, most] {
            assert!(decode::<Vec<u8>>(&bytes).is_err());
            assert!(decode::<String>(&bytes).is_err());
            assert!(decode::<Vec<String>>(&bytes).is_err());
            assert!(decode::<Vec<(u64, u64)>>(&bytes).is_err());
            assert!(decode::<std::collections::HashMap<String, Vec<u8>>>(&bytes).is_err());
        }
    }

    /// Everything the runtime decodes from a peer's bytes: grain ids (the
    /// targets, senders and call chains of requests), errors (error
    /// replies), and the shapes grain arguments and replies take.
    fn decode_everything(bytes: &[u8]) {
        let _ = decode::<crate::GrainId>(bytes);
        let _ = decode::<Error>(bytes);
        let _ = decode::<(String, Vec<u8>, u64)>(bytes);
        let _ = decode::<Vec<String>>(bytes);
        let _ = decode::<Option<(i64, f64, bool, char)>>(bytes);
        let _ = decode::<std::collections::BTreeMap<String, Vec<u64>>>(bytes);
        let _ = decode::<crate::RequestContext>(bytes);
    }

    fn valid_value() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        (
            any::<i64>(),
            ".{0,16}",
            proptest::collection::vec(any::<u8>(), 0..32),
            0u8..4,
        )
            .prop_map(|(key, text, bytes, which)| match which {
                0 => encode(&crate::GrainId::new(text, key)).unwrap(),
                1 => encode(&Error::Deadlock {
                    cycle: vec![crate::GrainId::new("a", key), crate::GrainId::new(text, 2)],
                    method: "m".into(),
                })
                .unwrap(),
                2 => encode(&(text, bytes, key as u64)).unwrap(),
                _ => encode(&vec![text; 3]).unwrap(),
            })
    }

    proptest::proptest! {
        /// Random bytes decode to an error or a value, never a panic.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            decode_everything(&bytes);
        }

        /// Valid payloads with bits flipped, cut short, bytes overwritten
        /// or a length prefix made to announce gigabytes: never a panic.
        #[test]
        fn mutated_payloads_never_panic(
            valid in valid_value(),
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), 0u8..8), 0..4),
            cut in proptest::prelude::any::<usize>(),
            huge_at in proptest::option::of(proptest::prelude::any::<usize>()),
        ) {
            let mut bytes = valid;
            for (at, bit) in flips {
                if !bytes.is_empty() {
                    let n = bytes.len();
                    bytes[at % n] ^= 1 << bit;
                }
            }
            if let Some(at) = huge_at && !bytes.is_empty() {
                let at = at % bytes.len();
                let mut huge = vec![252];
                huge.extend_from_slice(&(1u32 << 31).to_le_bytes());
                bytes.splice(at..=at, huge);
            }
            decode_everything(&bytes);
            bytes.truncate(cut % (bytes.len() + 1));
            decode_everything(&bytes);
        }
    }

    #[test]
    fn errors_travel_through_the_codec() {
        let e = Error::Deadlock {
            cycle: vec![crate::GrainId::new("a", 1), crate::GrainId::new("b", 1)],
            method: "ping".into(),
        };
        let back: Error = decode(&encode(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        assert!(back.to_string().contains("a/1 -> b/1"));
    }
}
