//! The seam between streams and what carries them: a [`StreamProvider`]
//! takes published items; the silo's streams deliver them to consumers.
//!
//! A provider sees items as bytes ([`RawItem`]), never their Rust type, so
//! that one provider carries every namespace. Providers that keep items on
//! a broker also hand the silo their partitions to pull (see
//! [`PartitionSource`](crate::PartitionSource)).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actor_core::Silo;

use crate::error::Result;
use crate::id::StreamId;
use crate::item::RawItem;

/// A boxed future, as the object-safe traits of this crate return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Carries published items to the silos that deliver them.
pub trait StreamProvider: Send + Sync + 'static {
    /// The kind of provider, for messages (`memory`, `rabbitmq`, ...).
    fn kind(&self) -> &'static str;

    /// The largest encoded item it takes; bigger ones are refused at
    /// publish with [`Error::TooLarge`](crate::Error::TooLarge).
    fn max_item_bytes(&self) -> usize;

    /// Whether a subscription may start from a token (the broker keeps a
    /// numbered log).
    fn can_rewind(&self) -> bool {
        false
    }

    /// Publishes `items`, all of one stream, in order. `Ok` means what the
    /// provider documents: durable on the broker for the persistent ones,
    /// queued in the cluster for the memory provider. `name` is the name
    /// the provider is registered under on `silo`.
    fn publish<'a>(
        &'a self,
        silo: &'a Silo,
        name: &'a str,
        items: Vec<RawItem>,
    ) -> BoxFuture<'a, Result<()>>;

    /// The explicit subscriptions of `stream` changed (a subscribe or an
    /// unsubscribe on `silo`): whoever delivers the stream reloads them.
    fn subscriptions_changed(&self, silo: &Silo, name: &str, stream: &StreamId) {
        let _ = (silo, name, stream);
    }

    /// The partitions this provider keeps on a broker, pulled by agents on
    /// the silos; `None` for a provider that delivers by itself (memory).
    fn partitions(&self) -> Option<Arc<dyn crate::agent::PartitionSource>> {
        None
    }
}
