//! ETags: the version tokens that make every write a compare-and-set.
//!
//! A provider mints a fresh, never-repeated ETag on each successful write
//! (a random UUID), so an old ETag can never match again after a clear and
//! a re-create (no ABA).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The version token of a stored record. Opaque: compare it for equality,
/// show it, store it; never parse it.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ETag(Arc<str>);

impl ETag {
    /// A fresh ETag, unique for all practical purposes (a random UUID).
    /// Providers call this for each successful write.
    pub fn generate() -> Self {
        ETag(uuid::Uuid::new_v4().simple().to_string().into())
    }

    /// The ETag as text (what providers store).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ETag {
    fn from(s: &str) -> Self {
        ETag(s.into())
    }
}

impl From<String> for ETag {
    fn from(s: String) -> Self {
        ETag(s.into())
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ETag({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_etags_differ() {
        assert_ne!(ETag::generate(), ETag::generate());
        assert_eq!(ETag::from("x").as_str(), "x");
    }
}
