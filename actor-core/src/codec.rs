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
