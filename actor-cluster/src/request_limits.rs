//! Limits on the request context a call brings in from the network. A
//! RequestContext sent by an external client is untrusted input: it is
//! copied onto every call the grain makes, so an unbounded one would cost
//! memory and bandwidth on every hop. A call whose context is past a
//! limit is refused before it is delivered, with an error that says which
//! limit and what to do.

use actor_core::GrainId;

/// At most this many entries in a call's request context.
pub(crate) const MAX_CONTEXT_ENTRIES: usize = 64;
/// At most this many bytes of keys and values, all entries together.
pub(crate) const MAX_CONTEXT_BYTES: usize = 16 * 1024;
/// At most this many bytes in one key.
pub(crate) const MAX_CONTEXT_KEY: usize = 256;

/// Checks the request context of an incoming call to `target`'s `method`
/// against [`MAX_CONTEXT_ENTRIES`], [`MAX_CONTEXT_BYTES`] and
/// [`MAX_CONTEXT_KEY`]; a context past one of them refuses the call with
/// [`actor_core::Error::Rejected`]. It stops counting at the first limit
/// passed, so a huge context costs no more than the limit to check.
// Called where a request envelope is decoded (link/envelope.rs,
// `decode_request`); until that call is in, only the tests use it.
pub(crate) fn check_context<'a>(
    target: &GrainId,
    method: &str,
    entries: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> actor_core::Result<()> {
    let refuse = |reason: String| actor_core::Error::Rejected {
        grain: target.clone(),
        method: method.to_owned(),
        reason: format!(
            "{reason}; a silo accepts a request context of at most {MAX_CONTEXT_ENTRIES} entries and {MAX_CONTEXT_BYTES} bytes (keys of at most {MAX_CONTEXT_KEY} bytes): put large data in the call's arguments"
        ),
    };
    let mut count = 0usize;
    let mut bytes = 0usize;
    for (key, value) in entries {
        count += 1;
        if count > MAX_CONTEXT_ENTRIES {
            return Err(refuse(format!(
                "the request context has more than {MAX_CONTEXT_ENTRIES} entries"
            )));
        }
        if key.len() > MAX_CONTEXT_KEY {
            let shown: String = key.chars().take(32).collect();
            return Err(refuse(format!(
                "the request context key `{shown}...` is {} bytes long",
                key.len()
            )));
        }
        bytes = bytes.saturating_add(key.len()).saturating_add(value.len());
        if bytes > MAX_CONTEXT_BYTES {
            return Err(refuse(format!(
                "the request context holds more than {MAX_CONTEXT_BYTES} bytes (entry `{key}` passes it)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(entries: &[(String, String)]) -> actor_core::Result<()> {
        check_context(
            &GrainId::new("t", 1i64),
            "m",
            entries.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }

    #[test]
    fn each_limit_refuses_with_a_clear_error() {
        let many: Vec<_> = (0..=MAX_CONTEXT_ENTRIES)
            .map(|i| (format!("k{i}"), "v".to_owned()))
            .collect();
        let err = check(&many).unwrap_err();
        assert!(matches!(err, actor_core::Error::Rejected { .. }), "{err}");
        assert!(err.to_string().contains("more than 64 entries"), "{err}");
        assert!(check(&many[..MAX_CONTEXT_ENTRIES]).is_ok());

        let long_key = vec![("k".repeat(MAX_CONTEXT_KEY + 1), String::new())];
        assert!(
            check(&long_key)
                .unwrap_err()
                .to_string()
                .contains("bytes long")
        );
        let max_key = vec![("k".repeat(MAX_CONTEXT_KEY), String::new())];
        assert!(check(&max_key).is_ok());

        let big = vec![
            ("a".to_owned(), "x".repeat(MAX_CONTEXT_BYTES / 2)),
            ("b".to_owned(), "x".repeat(MAX_CONTEXT_BYTES / 2)),
        ];
        let err = check(&big).unwrap_err().to_string();
        assert!(err.contains("more than 16384 bytes (entry `b`"), "{err}");
        assert!(
            err.contains("put large data in the call's arguments"),
            "{err}"
        );
    }

    proptest! {
        /// A context is refused exactly when it passes a limit.
        #[test]
        fn refused_exactly_past_a_limit(
            lengths in proptest::collection::vec((0usize..300, 0usize..2000), 0..80),
        ) {
            // Only the lengths matter; strings of them are cheap to make.
            let entries: Vec<(String, String)> = lengths
                .iter()
                .map(|(k, v)| ("k".repeat(*k), "v".repeat(*v)))
                .collect();
            let count = entries.len();
            let bytes: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
            let longest = entries.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            let within = count <= MAX_CONTEXT_ENTRIES
                && bytes <= MAX_CONTEXT_BYTES
                && longest <= MAX_CONTEXT_KEY;
            prop_assert_eq!(check(&entries).is_ok(), within);
        }
    }
}
