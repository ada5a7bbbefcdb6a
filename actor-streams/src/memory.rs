//! The memory provider: items travel through the grain call path, one
//! stream grain per stream, which numbers nothing and stores nothing.
//!
//! A publish is a one-way call to the stream's grain (`streams.memory`,
//! placed like any grain in the cluster); the grain delivers each item to
//! the consumers in order, awaiting each consumer's turn, so a stream's
//! items reach each consumer in the order the grain received them. It is
//! best effort: an item is held only in memory, in the stream grain's
//! mailbox, and is lost if the silo holding it dies or stops first.

use std::collections::HashMap;
use std::sync::Arc;

use actor_core::prelude::*;
use actor_core::{GrainKey, Silo};
use serde::{Deserialize, Serialize};

use crate::dispatch;
use crate::error::{Error, Result};
use crate::id::StreamId;
use crate::item::RawItem;
use crate::provider::{BoxFuture, StreamProvider};
use crate::streams::Streams;
use crate::subscription::Subscription;

/// The in-cluster memory provider: fast, ordered per stream, best effort
/// (see the module docs and `docs/streams.md`).
#[derive(Debug, Clone)]
pub struct MemoryStreams {
    max_item_bytes: usize,
}

impl Default for MemoryStreams {
    fn default() -> Self {
        MemoryStreams {
            max_item_bytes: 1 << 20,
        }
    }
}

impl MemoryStreams {
    /// A memory provider taking items up to 1 MiB.
    pub fn new() -> Self {
        Self::default()
    }

    /// The largest encoded item it takes.
    pub fn max_item_bytes(mut self, bytes: usize) -> Self {
        self.max_item_bytes = bytes;
        self
    }
}

/// The key of the stream grain of `stream` on provider `name`.
fn grain_key(name: &str, stream: &StreamId) -> GrainKey {
    GrainKey::from(format!("{name}|{}", stream.storage_key()))
}

impl StreamProvider for MemoryStreams {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn max_item_bytes(&self) -> usize {
        self.max_item_bytes
    }

    fn publish<'a>(
        &'a self,
        silo: &'a Silo,
        name: &'a str,
        items: Vec<RawItem>,
    ) -> BoxFuture<'a, Result<()>> {
        let Some(first) = items.first() else {
            return Box::pin(async { Ok(()) });
        };
        let grain = silo.get_grain::<MemoryStreamGrain>(grain_key(name, &first.stream));
        let sent = grain
            .tell(Push {
                provider: name.to_owned(),
                items,
            })
            .map_err(|e| Error::Unavailable {
                provider: name.to_owned(),
                url: format!("silo {}", silo.name()),
                reason: e.to_string(),
            });
        Box::pin(async move { sent })
    }

    fn subscriptions_changed(&self, silo: &Silo, name: &str, stream: &StreamId) {
        let grain = silo.get_grain::<MemoryStreamGrain>(grain_key(name, stream));
        if let Err(e) = grain.tell(Reload) {
            tracing::debug!(%stream, error = %e, "cannot tell the stream grain to reload its subscriptions");
        }
    }
}

/// The grain of one stream on a memory provider (registered by
/// `with_streams`; not for direct use).
#[derive(Default)]
pub(crate) struct MemoryStreamGrain {
    /// The explicit subscriptions of each stream seen, loaded on the first
    /// item and after each change.
    subscriptions: HashMap<StreamId, (u64, Arc<Vec<Subscription>>)>,
}

impl Grain for MemoryStreamGrain {
    const TYPE_NAME: &'static str = "streams.memory";
}

/// Items for the stream grain.
#[derive(Serialize, Deserialize)]
pub(crate) struct Push {
    provider: String,
    items: Vec<RawItem>,
}

impl Message for Push {
    type Reply = ();
    const NAME: &'static str = "streams.push";
}

/// The stream's subscriptions changed.
#[derive(Serialize, Deserialize)]
pub(crate) struct Reload;

impl Message for Reload {
    type Reply = ();
    const NAME: &'static str = "streams.reload";
}

impl Handler<Push> for MemoryStreamGrain {
    async fn handle(&mut self, push: Push, ctx: &GrainContext<Self>) {
        let silo = ctx.silo();
        let Ok(streams) = Streams::of(silo) else {
            return tracing::error!("a stream grain runs on a silo without streams");
        };
        // A push holds items of one stream (one publish or batch).
        let Some(stream) = push.items.first().map(|i| i.stream.clone()) else {
            return;
        };
        let version = streams.subscriptions_version();
        let subs = match self.subscriptions.get(&stream) {
            Some((v, s)) if *v == version => s.clone(),
            _ => {
                let loaded = match streams.store().of_stream(&push.provider, &stream).await {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        tracing::warn!(%stream, error = %e, "cannot load the stream's subscriptions; delivering to implicit consumers only");
                        Arc::new(Vec::new())
                    }
                };
                self.subscriptions
                    .insert(stream.clone(), (version, loaded.clone()));
                loaded
            }
        };
        if dispatch::deliver_batch(silo, streams, &push.provider, &push.items, &subs, 1).await
            == dispatch::Outcome::Unacked
        {
            tracing::debug!(%stream, "silo stopping: memory stream items dropped");
        }
    }
}

impl Handler<Reload> for MemoryStreamGrain {
    async fn handle(&mut self, _: Reload, _ctx: &GrainContext<Self>) {
        self.subscriptions.clear();
    }
}

impl GrainMethods for MemoryStreamGrain {
    fn register(m: &mut Methods<Self>) {
        m.add::<Push, _>().add::<Reload, _>();
    }
}
