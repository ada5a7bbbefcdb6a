//! Explicit subscriptions and dead letters, stored one row each in a
//! [`SubscriptionStore`].
//!
//! A subscription is identified by what it joins: (provider, stream,
//! consumer grain). Subscribing is therefore get-or-create: a consumer has
//! at most one subscription per stream, and a reactivated grain that
//! subscribes again resumes its handle instead of adding a second one
//! (Orleans' "every SubscribeAsync makes a new subscription" pitfall
//! cannot happen). Dead letters keep the item's bytes and the last error.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use actor_core::GrainId;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::id::{SequenceToken, StreamId};
use crate::provider::BoxFuture;

/// The id of an explicit subscription: its provider, stream and consumer,
/// in their storage forms (`provider|stream|consumer`). The same three
/// always give the same id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SubscriptionId(pub String);

impl SubscriptionId {
    /// The id of `consumer`'s subscription to `stream` on `provider`.
    pub fn of(provider: &str, stream: &StreamId, consumer: &GrainId) -> Self {
        SubscriptionId(format!(
            "{provider}|{}|{}",
            stream.storage_key(),
            consumer.storage_key()
        ))
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One stored subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Its id.
    pub id: SubscriptionId,
    /// The provider's name.
    pub provider: String,
    /// The stream.
    pub stream: StreamId,
    /// The consumer grain.
    pub consumer: GrainId,
    /// The method its deliveries carry (`StreamItem::NAME` of the item
    /// type it subscribed with).
    pub method: String,
    /// When it was made, in milliseconds since the Unix epoch.
    pub created_millis: i64,
}

/// An item that could not be delivered, kept with its error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The provider's name.
    pub provider: String,
    /// The stream.
    pub stream: StreamId,
    /// The item's token.
    pub token: SequenceToken,
    /// The consumer that failed it.
    pub consumer: GrainId,
    /// The explicit subscription, if it was delivered for one.
    pub subscription: Option<SubscriptionId>,
    /// The method it was delivered as.
    pub method: String,
    /// The last error.
    pub error: String,
    /// How many times delivery was tried.
    pub attempts: u32,
    /// The item's encoded bytes, as its producer wrote them.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// When it was dead-lettered, in milliseconds since the Unix epoch.
    pub at_millis: i64,
}

/// Where subscriptions and dead letters are kept. Object-safe: methods
/// return [`BoxFuture`].
pub trait SubscriptionStore: Send + Sync + 'static {
    /// The kind of store, for messages (`memory`, `sqlite`, `postgres`).
    fn kind(&self) -> &'static str;
    /// Stores `sub` unless a row with its id exists; answers the stored
    /// row (the existing one if there was one) and whether it was new.
    fn get_or_insert(&self, sub: Subscription) -> BoxFuture<'_, Result<(Subscription, bool)>>;
    /// Deletes a subscription; `Ok(false)` if there was none.
    fn remove<'a>(&'a self, id: &'a SubscriptionId) -> BoxFuture<'a, Result<bool>>;
    /// The subscriptions to `stream` on `provider`.
    fn of_stream<'a>(
        &'a self,
        provider: &'a str,
        stream: &'a StreamId,
    ) -> BoxFuture<'a, Result<Vec<Subscription>>>;
    /// The subscriptions of `consumer`.
    fn of_consumer<'a>(&'a self, consumer: &'a GrainId)
    -> BoxFuture<'a, Result<Vec<Subscription>>>;
    /// Keeps a dead letter.
    fn add_dead_letter(&self, letter: DeadLetter) -> BoxFuture<'_, Result<()>>;
    /// The dead letters, oldest first.
    fn dead_letters(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>>>;
}

/// Subscriptions and dead letters in memory (tests, examples, one silo;
/// clones share the rows).
#[derive(Debug, Clone, Default)]
pub struct MemorySubscriptions {
    inner: Arc<Mutex<MemoryRows>>,
}

#[derive(Debug, Default)]
struct MemoryRows {
    subs: BTreeMap<SubscriptionId, Subscription>,
    dead: Vec<DeadLetter>,
}

impl MemorySubscriptions {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl SubscriptionStore for MemorySubscriptions {
    fn kind(&self) -> &'static str {
        "memory"
    }
    fn get_or_insert(&self, sub: Subscription) -> BoxFuture<'_, Result<(Subscription, bool)>> {
        let mut rows = self.inner.lock();
        let out = match rows.subs.get(&sub.id) {
            Some(old) => (old.clone(), false),
            None => {
                rows.subs.insert(sub.id.clone(), sub.clone());
                (sub, true)
            }
        };
        Box::pin(async move { Ok(out) })
    }
    fn remove<'a>(&'a self, id: &'a SubscriptionId) -> BoxFuture<'a, Result<bool>> {
        let gone = self.inner.lock().subs.remove(id).is_some();
        Box::pin(async move { Ok(gone) })
    }
    fn of_stream<'a>(
        &'a self,
        provider: &'a str,
        stream: &'a StreamId,
    ) -> BoxFuture<'a, Result<Vec<Subscription>>> {
        let out = self
            .inner
            .lock()
            .subs
            .values()
            .filter(|s| s.provider == provider && &s.stream == stream)
            .cloned()
            .collect();
        Box::pin(async move { Ok(out) })
    }
    fn of_consumer<'a>(
        &'a self,
        consumer: &'a GrainId,
    ) -> BoxFuture<'a, Result<Vec<Subscription>>> {
        let out = self
            .inner
            .lock()
            .subs
            .values()
            .filter(|s| &s.consumer == consumer)
            .cloned()
            .collect();
        Box::pin(async move { Ok(out) })
    }
    fn add_dead_letter(&self, letter: DeadLetter) -> BoxFuture<'_, Result<()>> {
        self.inner.lock().dead.push(letter);
        Box::pin(async { Ok(()) })
    }
    fn dead_letters(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>>> {
        let out = self.inner.lock().dead.clone();
        Box::pin(async move { Ok(out) })
    }
}

pub(crate) use actor_core::__private::now_millis;
