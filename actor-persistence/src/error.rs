//! The one error type of actor-persistence.
//!
//! Errors are plain data (`Clone`, serde) so that a grain can hand a storage
//! failure back to its caller inside its reply, as it would its own errors.
//! Messages name what failed (the state key, the provider and its address)
//! and what to do about it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::etag::ETag;

/// A storage failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Error {
    /// A write or clear was refused because the stored record changed since
    /// it was read (compare-and-set on the ETag). Nothing was written.
    /// The caller's copy of the state is stale: reload it (in a grain,
    /// deactivate so that the next call loads afresh) and retry.
    #[error(
        "storage conflict on {key}: expected ETag {}, found {}; the state changed since it was read (another activation or writer); reload it and retry",
        show_etag(.expected),
        show_etag(.actual)
    )]
    Conflict {
        /// The record, as `grain type / grain id / state name`.
        key: String,
        /// The ETag the writer expected (`None`: no record).
        expected: Option<ETag>,
        /// The ETag found in storage when the write was refused (`None`: no
        /// record). Informative only: it may change again at any time.
        actual: Option<ETag>,
    },
    /// An event-log append was refused because the log moved past the
    /// version the writer had (compare-and-set on the version). Nothing was
    /// appended.
    #[error(
        "journal conflict on {stream}: expected version {expected}, found {actual}; another writer appended events; reload the journal and retry"
    )]
    VersionConflict {
        /// The event stream, as `grain type / grain id / journal name`.
        stream: String,
        /// The version the writer expected the log to be at.
        expected: u64,
        /// The version found in storage.
        actual: u64,
    },
    /// The storage service could not be reached, or a call to it timed out
    /// or was cut. The outcome of a write in flight is unknown: treat the
    /// state as unknown and reload it.
    #[error(
        "{provider} storage at {url} is unavailable: {reason}; check that the service is running and reachable at that address"
    )]
    Unavailable {
        /// The kind of provider (`sqlite`, `postgres`, `redis`, ...).
        provider: String,
        /// Where it was looked for (passwords redacted).
        url: String,
        /// What the client reported.
        reason: String,
    },
    /// The storage service answered with an error other than a conflict or
    /// an outage (bad permissions, full disk, invalid SQL from a custom
    /// table name, ...).
    #[error("{provider} storage failed: {reason}")]
    Backend {
        /// The kind of provider.
        provider: String,
        /// What the service reported.
        reason: String,
    },
    /// State or events could not be turned into JSON, or stored JSON could
    /// not be read back as the Rust type (for instance after the type
    /// changed incompatibly: migrate the stored JSON, or give new fields
    /// `#[serde(default)]`).
    #[error("cannot {action} `{type_name}` for {key} as JSON: {reason}")]
    Serialization {
        /// `serialize` or `deserialize`.
        action: String,
        /// The Rust type.
        type_name: String,
        /// The record or stream concerned.
        key: String,
        /// What serde_json reported.
        reason: String,
    },
    /// No storage provider is registered under this name on the silo.
    #[error(
        "no storage provider named `{name}` on this silo (registered: {}); add one with SiloBuilder::with_storage(\"{name}\", provider){}",
        if .registered.is_empty() { "none".to_owned() } else { .registered.join(", ") },
        if .name == crate::DEFAULT_STORAGE { " or with_default_storage(provider)" } else { "" }
    )]
    UnknownProvider {
        /// The name asked for.
        name: String,
        /// The names that are registered.
        registered: Vec<String>,
    },
    /// A provider or journal was configured wrongly.
    #[error("invalid storage configuration: {0}")]
    Config(String),
    /// A write or clear was refused before it was sent: the silo's
    /// membership lease ran out while the turn ran (a long turn, or a
    /// process paused in the middle of one), so another silo may run the
    /// grain by now. Nothing was written; drop the activation (the next
    /// call finds the grain where it lives now).
    #[error(
        "the write of {key} was refused before it was sent: this silo's membership lease ran out during the turn, and another silo may run the grain now; the activation should be dropped"
    )]
    Fenced {
        /// The record, as `grain type / grain id / state name`.
        key: String,
    },
}

fn show_etag(etag: &Option<ETag>) -> String {
    match etag {
        Some(e) => format!("`{e}`"),
        None => "no record".to_owned(),
    }
}

impl Error {
    /// Whether this is a compare-and-set refusal ([`Error::Conflict`] or
    /// [`Error::VersionConflict`]): the caller's view is stale.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. } | Error::VersionConflict { .. })
    }

    /// Whether the storage service could not be reached.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    pub(crate) fn serialize<T: ?Sized>(key: &dyn fmt::Display, e: serde_json::Error) -> Self {
        Error::Serialization {
            action: "serialize".into(),
            type_name: std::any::type_name::<T>().into(),
            key: key.to_string(),
            reason: e.to_string(),
        }
    }

    pub(crate) fn deserialize<T: ?Sized>(key: &dyn fmt::Display, e: serde_json::Error) -> Self {
        Error::Serialization {
            action: "deserialize".into(),
            type_name: std::any::type_name::<T>().into(),
            key: key.to_string(),
            reason: e.to_string(),
        }
    }
}

/// `Result` with actor-persistence's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do() {
        let e = Error::Conflict {
            key: "counter/counter/1/state".into(),
            expected: Some(ETag::from("a")),
            actual: None,
        };
        let s = e.to_string();
        assert!(s.contains("expected ETag `a`, found no record"), "{s}");
        assert!(s.contains("reload"), "{s}");
        assert!(e.is_conflict());

        let e = Error::UnknownProvider {
            name: "default".into(),
            registered: vec![],
        };
        assert!(e.to_string().contains("with_default_storage"), "{e}");
    }
}
