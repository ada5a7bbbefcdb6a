//! W3C trace context: the ids that make the calls of one request one trace,
//! across grains and silos.
//!
//! Every turn has its own [`TraceContext`]: the trace id of its caller (or a
//! fresh one for a call that starts a trace) and a span id of its own. A
//! call made during the turn carries the turn's context as its parent, so
//! the called turn becomes a child span. Across silos the parent travels in
//! the call envelope; an external caller hands one in through the
//! [`RequestContext`](crate::RequestContext) under [`TRACEPARENT`].
//!
//! Ids come from a per-thread generator: no lock, no allocation, no
//! syscall on the call path. Exporting spans is someone else's job (the
//! `actor-telemetry` crate); this module only carries ids.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

/// The [`RequestContext`](crate::RequestContext) key of an external
/// caller's W3C `traceparent` header. A call made outside any turn with
/// this key set becomes a child of that span; inside a turn the turn's own
/// context is the parent and the key is ignored.
pub const TRACEPARENT: &str = "traceparent";

/// A 16-byte W3C trace id (never zero), shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub u128);

/// An 8-byte W3C span id (never zero), shown as 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(pub u64);

impl TraceId {
    /// The id's bytes, most significant first (the W3C and OTLP layout).
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
}

impl SpanId {
    /// The id's bytes, most significant first (the W3C and OTLP layout).
    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}
impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}
impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}
impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// A W3C trace context: which trace a span belongs to, the span itself and
/// the trace flags (bit 0: sampled).
///
/// It reads and writes the `traceparent` header format:
///
/// ```
/// use actor_core::TraceContext;
///
/// let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let ctx: TraceContext = tp.parse()?;
/// assert!(ctx.is_sampled());
/// assert_eq!(ctx.to_string(), tp);
///
/// // Malformed input is an error, never a panic or a made-up id.
/// assert!("00-00000000000000000000000000000000-00f067aa0ba902b7-01"
///     .parse::<TraceContext>()
///     .is_err());
/// # Ok::<(), actor_core::TraceParentError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace this span belongs to.
    pub trace_id: TraceId,
    /// The span.
    pub span_id: SpanId,
    /// W3C trace flags; bit 0 ([`TraceContext::SAMPLED`]) asks for the
    /// trace to be recorded.
    pub flags: u8,
}

impl TraceContext {
    /// The "sampled" trace flag.
    pub const SAMPLED: u8 = 0x01;

    /// The context of a span that starts a new, sampled trace.
    pub fn new_root() -> TraceContext {
        TraceContext {
            trace_id: TraceId(random_u128()),
            span_id: SpanId(random_u64()),
            flags: Self::SAMPLED,
        }
    }

    /// A new span in the same trace, a child of this one (same flags).
    pub fn child(&self) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id,
            span_id: SpanId(random_u64()),
            flags: self.flags,
        }
    }

    /// Whether the trace is to be recorded.
    pub fn is_sampled(&self) -> bool {
        self.flags & Self::SAMPLED != 0
    }

    /// Parses a `traceparent` header value. Version `00` must be exactly
    /// `00-<32 hex>-<16 hex>-<2 hex>`; later versions may append fields
    /// after a `-`, which are ignored; version `ff` is invalid. Hex digits
    /// are lowercase; all-zero ids are invalid.
    pub fn from_traceparent(s: &str) -> Result<TraceContext, TraceParentError> {
        use TraceParentError as E;
        let b = s.as_bytes();
        if b.len() < 55 {
            return Err(E::Length(b.len()));
        }
        let version = hex(&b[0..2]).ok_or(E::Version)? as u8;
        if version == 0xff {
            return Err(E::Version);
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return Err(E::Separator);
        }
        if version == 0 && b.len() != 55 {
            return Err(E::Length(b.len()));
        }
        if version > 0 && b.len() > 55 && b[55] != b'-' {
            return Err(E::Separator);
        }
        let trace = (hex(&b[3..19]).ok_or(E::TraceId)? as u128) << 64
            | hex(&b[19..35]).ok_or(E::TraceId)? as u128;
        let span = hex(&b[36..52]).ok_or(E::SpanId)?;
        let flags = hex(&b[53..55]).ok_or(E::Flags)? as u8;
        if trace == 0 {
            return Err(E::TraceId);
        }
        if span == 0 {
            return Err(E::SpanId);
        }
        Ok(TraceContext {
            trace_id: TraceId(trace),
            span_id: SpanId(span),
            flags,
        })
    }
}

/// Parses lowercase hex (at most 16 digits) into a number.
fn hex(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(v))
    })
}

/// Formats as a version-00 `traceparent` header value.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

impl FromStr for TraceContext {
    type Err = TraceParentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TraceContext::from_traceparent(s)
    }
}

/// Why a `traceparent` value was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceParentError {
    /// Too short, or a version-00 value that is not 55 characters long.
    #[error("traceparent has {0} characters; expected 55 (`00-<trace id>-<span id>-<flags>`)")]
    Length(usize),
    /// The version is not two lowercase hex digits, or is `ff`.
    #[error("traceparent version is not two lowercase hex digits other than `ff`")]
    Version,
    /// A field separator is missing.
    #[error("traceparent fields must be separated by `-`")]
    Separator,
    /// The trace id is not 32 lowercase hex digits, or is all zeros.
    #[error("traceparent trace id must be 32 lowercase hex digits, not all zero")]
    TraceId,
    /// The span (parent) id is not 16 lowercase hex digits, or is all zeros.
    #[error("traceparent parent id must be 16 lowercase hex digits, not all zero")]
    SpanId,
    /// The flags are not two lowercase hex digits.
    #[error("traceparent flags must be two lowercase hex digits")]
    Flags,
}

thread_local! {
    // splitmix64 state, seeded once per thread from the std hasher's
    // per-process random keys and the thread's identity.
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    std::thread::current().id().hash(&mut h);
    std::time::SystemTime::now().hash(&mut h);
    h.finish()
}

/// A non-zero random 64-bit value (splitmix64 on a per-thread state).
fn random_u64() -> u64 {
    RNG.with(|s| {
        loop {
            let x = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            s.set(x);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            if z != 0 {
                return z;
            }
        }
    })
}

fn random_u128() -> u128 {
    (u128::from(random_u64()) << 64) | u128::from(random_u64())
}

/// A new span: a child of `parent`, or the root of a new trace.
pub(crate) fn child_of(parent: Option<TraceContext>) -> TraceContext {
    parent.map_or_else(TraceContext::new_root, |p| p.child())
}

/// The caller's span for a call made now, when anyone listens: without any
/// tracing dispatcher (global or scoped) there is none to look up.
pub(crate) fn current_span() -> Option<tracing::Span> {
    tracing::dispatcher::has_been_set().then(tracing::Span::current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_w3c_example() {
        let c: TraceContext = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap();
        assert_eq!(c.trace_id.0, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(c.span_id.0, 0x00f067aa0ba902b7);
        assert!(c.is_sampled());
        let unsampled: TraceContext = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
            .parse()
            .unwrap();
        assert!(!unsampled.is_sampled());
    }

    #[test]
    fn rejects_malformed_values_with_the_reason() {
        use TraceParentError as E;
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cases: &[(&str, E)] = &[
            ("", E::Length(0)),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                E::Length(52),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                E::Length(56),
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                E::Version,
            ),
            (
                "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                E::Version,
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                E::Separator,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                E::TraceId,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                E::TraceId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                E::SpanId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
                E::SpanId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
                E::Flags,
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
                E::Separator,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<TraceContext>(), Err(*want), "{input:?}");
        }
        assert!(ok.parse::<TraceContext>().is_ok());
        // A later version may carry more fields after the flags.
        let v1 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert_eq!(v1.parse::<TraceContext>().unwrap().to_string(), ok);
        // Multi-byte characters do not make slicing panic.
        let odd = "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01";
        assert!(odd.parse::<TraceContext>().is_err());
    }

    #[test]
    fn generated_ids_differ_and_children_keep_the_trace() {
        let root = TraceContext::new_root();
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        assert_ne!(TraceContext::new_root().trace_id, root.trace_id);
        assert!(root.is_sampled());
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(trace in 1u128.., span in 1u64.., flags: u8) {
            let c = TraceContext { trace_id: TraceId(trace), span_id: SpanId(span), flags };
            let text = c.to_string();
            prop_assert_eq!(text.len(), 55);
            prop_assert_eq!(text.parse::<TraceContext>(), Ok(c));
        }

        #[test]
        fn arbitrary_input_never_panics(s in ".{0,80}") {
            let _ = s.parse::<TraceContext>();
        }

        #[test]
        fn one_non_hex_character_anywhere_is_rejected(
            trace in 1u128.., span in 1u64.., flags: u8, at in 0usize..55, with in "[^0-9a-f]",
        ) {
            let c = TraceContext { trace_id: TraceId(trace), span_id: SpanId(span), flags };
            let mut text = c.to_string();
            // Replacing one character with a non-hex one breaks a field or
            // a separator: the value must be rejected.
            if text.as_bytes()[at] != b'-' || with != "-" {
                text.replace_range(at..at + 1, &with);
                prop_assert!(text.parse::<TraceContext>().is_err(), "{} accepted", text);
            }
        }
    }
}
