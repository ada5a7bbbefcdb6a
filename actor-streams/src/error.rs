//! The one error type of actor-streams.
//!
//! Errors are plain data (`Clone`, serde) so that a grain can hand a stream
//! failure back to its caller inside its reply. Messages name what failed
//! (the provider, the stream, the broker's address) and what to do.

use serde::{Deserialize, Serialize};

/// A stream failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Error {
    /// No provider of that name is registered on the silo.
    #[error(
        "no stream provider named `{name}` on this silo (registered: {known}); add it with Streams::builder().provider(\"{name}\", ...)"
    )]
    UnknownProvider {
        /// The name asked for.
        name: String,
        /// The names registered, comma-separated.
        known: String,
    },
    /// The silo has no streams at all.
    #[error(
        "no streams on this silo; add them with SiloBuilder::with_streams(Streams::builder()...)"
    )]
    NotConfigured,
    /// The broker (or the silo's call path, for the memory provider) cannot
    /// be reached. Nothing was acknowledged: publish again once it is back.
    #[error(
        "stream provider `{provider}` at {url} is unavailable: {reason}; nothing was acknowledged, publish again when it is back"
    )]
    Unavailable {
        /// The provider's name.
        provider: String,
        /// Where the broker was looked for (passwords redacted).
        url: String,
        /// What the client reported.
        reason: String,
    },
    /// An item is larger than the provider accepts; it was not published.
    #[error(
        "item of {size} bytes on stream {stream} exceeds the {limit}-byte limit of provider `{provider}`; it was not published (split it, or raise the provider's max_item_bytes)"
    )]
    TooLarge {
        /// The provider's name.
        provider: String,
        /// The stream.
        stream: String,
        /// The encoded size of the item.
        size: usize,
        /// The provider's limit.
        limit: usize,
    },
    /// A subscription was asked to start from a token, and its provider
    /// cannot rewind.
    #[error(
        "stream provider `{provider}` cannot rewind: it keeps no history to start from token {token}; subscribe without a start token, or use a provider that rewinds (NATS JetStream)"
    )]
    RewindUnsupported {
        /// The provider's name.
        provider: String,
        /// The token asked for.
        token: String,
    },
    /// An item or a stored row could not be encoded or decoded.
    #[error("stream codec: {0}")]
    Serialization(String),
    /// The subscription store failed (SQL error, outage).
    #[error("subscription store `{store}` failed: {reason}")]
    Store {
        /// The kind of store (`memory`, `sqlite`, `postgres`).
        store: String,
        /// What it reported.
        reason: String,
    },
    /// The broker answered with an error other than an outage (a refused
    /// publish, a bad queue argument, ...).
    #[error("stream provider `{provider}` failed: {reason}")]
    Broker {
        /// The provider's name.
        provider: String,
        /// What the broker reported.
        reason: String,
    },
    /// A configuration mistake, found when the silo starts or the handle
    /// is made.
    #[error("invalid stream configuration: {0}")]
    Config(String),
    /// A runtime failure of the grain call path (the silo stopped, ...).
    #[error("grain call failed: {0}")]
    Runtime(String),
}

/// The result type of actor-streams.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<actor_core::Error> for Error {
    fn from(e: actor_core::Error) -> Self {
        match e {
            actor_core::Error::Serialization(s) => Error::Serialization(s),
            other => Error::Runtime(other.to_string()),
        }
    }
}
