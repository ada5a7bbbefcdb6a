//! Publishing from outside the cluster: a [`ClusterClient`] has no streams
//! of its own, so its producer hands each batch to a publisher grain in
//! the cluster (`streams.publisher`, one per stream, registered by
//! `with_streams`), which publishes through the silo's provider and
//! answers once the provider has (a persistent provider: once the broker
//! confirmed). The client numbers the items itself, so tokens, order and
//! [`Dedup`](crate::Dedup) work as for a producer on a silo.

use actor_cluster::ClusterClient;
use actor_core::prelude::*;
use actor_core::{GrainKey, TraceContext};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{SequenceToken, StreamId};
use crate::item::{RawItem, StreamItem, TypeTag};
use crate::streams::Streams;

/// The grain that publishes a client's items (registered by
/// `with_streams`; not for direct use).
#[derive(Default)]
pub(crate) struct PublisherGrain;

impl Grain for PublisherGrain {
    const TYPE_NAME: &'static str = "streams.publisher";
}

/// A batch of one stream's items, numbered by the client.
#[derive(Serialize, Deserialize)]
pub(crate) struct PublishItems {
    provider: String,
    items: Vec<RawItem>,
}

impl Message for PublishItems {
    type Reply = Result<()>;
    const NAME: &'static str = "streams.publish_items";

    fn is_error(reply: &Self::Reply) -> bool {
        reply.is_err()
    }
}

impl Handler<PublishItems> for PublisherGrain {
    async fn handle(&mut self, p: PublishItems, ctx: &GrainContext<Self>) -> Result<()> {
        let handle = Streams::provider(ctx.silo(), &p.provider)?;
        handle.publish_raw(p.items).await
    }
}

impl GrainMethods for PublisherGrain {
    fn register(m: &mut Methods<Self>) {
        m.add::<PublishItems, _>();
    }
}

/// Publishing on streams from a [`ClusterClient`].
pub trait ClusterClientStreamsExt {
    /// A producer of items of type `T` on `stream`, through provider
    /// `provider` of the cluster's silos (the provider is looked up on the
    /// silo that publishes; an unknown name fails the first publish).
    fn stream_producer<T: StreamItem>(&self, provider: &str, stream: StreamId)
    -> ClientProducer<T>;
}

impl ClusterClientStreamsExt for ClusterClient {
    fn stream_producer<T: StreamItem>(
        &self,
        provider: &str,
        stream: StreamId,
    ) -> ClientProducer<T> {
        ClientProducer {
            grain: self.get_grain::<PublisherGrain>(GrainKey::from(format!(
                "{provider}|{}",
                stream.storage_key()
            ))),
            provider: provider.to_owned(),
            stream,
            producer: uuid::Uuid::new_v4().as_u64_pair().0,
            seq: tokio::sync::Mutex::new(0),
            _item: Default::default(),
        }
    }
}

/// Publishes items of type `T` on one stream from outside the cluster
/// (see [`ClusterClientStreamsExt::stream_producer`]).
///
/// A publish that returns `Ok` was accepted by a silo's provider: on a
/// persistent provider the broker has confirmed it, so it is never lost.
/// One that fails with [`Error::Unavailable`] (the cluster or the broker
/// could not be reached, or did not answer in time) has an unknown
/// outcome, as on a silo: publish again; a consumer's `Dedup` drops the
/// first copy if it did land.
pub struct ClientProducer<T> {
    grain: GrainRef<PublisherGrain>,
    provider: String,
    stream: StreamId,
    producer: u64,
    seq: tokio::sync::Mutex<u64>,
    _item: TypeTag<T>,
}

impl<T> std::fmt::Debug for ClientProducer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientProducer")
            .field("stream", &self.stream)
            .field("provider", &self.provider)
            .field("producer", &format_args!("{:016x}", self.producer))
            .finish_non_exhaustive()
    }
}

impl<T: StreamItem> ClientProducer<T> {
    /// The stream.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// This producer's id (in every token it writes).
    pub fn producer_id(&self) -> u64 {
        self.producer
    }

    /// Publishes one item; answers its token.
    pub async fn publish(&self, item: &T) -> Result<SequenceToken> {
        let tokens = self.publish_batch(std::slice::from_ref(item)).await?;
        Ok(tokens[0])
    }

    /// Publishes `items` in order as one batch; answers their tokens. An
    /// item larger than the provider takes refuses the whole batch
    /// ([`Error::TooLarge`], from the silo) before anything is sent.
    pub async fn publish_batch(&self, items: &[T]) -> Result<Vec<SequenceToken>> {
        let mut payloads = Vec::with_capacity(items.len());
        for item in items {
            payloads.push(actor_core::__private::codec::encode(item)?);
        }
        // The caller's trace, if it has one (an HTTP handler's).
        let traceparent = TraceContext::current().map(|t| t.to_string()).or_else(|| {
            RequestContext::current()
                .value(actor_core::TRACEPARENT)
                .filter(|t| TraceContext::from_traceparent(t).is_ok())
                .map(str::to_owned)
        });
        let mut seq = self.seq.lock().await;
        let mut tokens = Vec::with_capacity(payloads.len());
        let raw: Vec<RawItem> = payloads
            .into_iter()
            .map(|payload| {
                // Numbers are used up even if the publish fails, as on a
                // silo: an item whose outcome is unknown may still land.
                *seq += 1;
                let token = SequenceToken::new(self.producer, *seq);
                tokens.push(token);
                RawItem {
                    stream: self.stream.clone(),
                    token,
                    payload,
                    traceparent: traceparent.clone(),
                }
            })
            .collect();
        let reply = self
            .grain
            .ask(PublishItems {
                provider: self.provider.clone(),
                items: raw,
            })
            .await;
        drop(seq);
        match reply {
            Ok(Ok(())) => Ok(tokens),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(Error::Unavailable {
                provider: self.provider.clone(),
                url: "the cluster, through the client's gateways".into(),
                reason: e.to_string(),
            }),
        }
    }
}
