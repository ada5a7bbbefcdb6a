//! The streams of a silo: the registry of named providers and implicit
//! subscriptions ([`StreamsBuilder`], plugged in with
//! [`SiloBuilderStreamsExt::with_streams`]), and the handles grains and
//! silos use to produce and subscribe.
//!
//! Everything lives in the silo (an extension), never in process-wide
//! state: two silos in one process have their own providers.

use std::collections::HashMap;
use std::sync::Arc;

use actor_core::{GrainMethods, GrainRef, Handler, Silo, SiloBuilder, TraceContext};

use crate::agent::Ownership;
use crate::dispatch::DeliveryPolicy;
use crate::error::{Error, Result};
use crate::id::{SequenceToken, StreamId};
use crate::item::{Delivery, RawItem, StreamItem, TypeTag};
use crate::metrics::{Counters, Registry, StreamMetrics};
use crate::provider::StreamProvider;
use crate::subscription::{
    DeadLetter, MemorySubscriptions, Subscription, SubscriptionId, SubscriptionStore, now_millis,
};

/// A grain type declared as the implicit consumer of a namespace, with
/// its typed delivery: the item decoded once and the `Delivery<T>` sent as
/// a typed call (no serialization when the consumer is local).
#[derive(Clone)]
pub(crate) struct ImplicitConsumer {
    pub(crate) grain_type: &'static str,
    pub(crate) method: &'static str,
    pub(crate) deliver: TypedDeliver,
}

impl std::fmt::Debug for ImplicitConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} <- {}", self.grain_type, self.method)
    }
}

/// A typed delivery of an encoded item to the implicit consumer with the
/// stream's key: `Err` if the item does not decode as the consumer's type.
pub(crate) type TypedDeliver = Arc<
    dyn Fn(
            &Silo,
            &RawItem,
            u32,
            std::time::Duration,
        ) -> std::result::Result<
            crate::provider::BoxFuture<'static, actor_core::Result<crate::item::Ack>>,
            String,
        > + Send
        + Sync,
>;

fn typed_deliver<G, T>() -> TypedDeliver
where
    G: Handler<Delivery<T>> + GrainMethods,
    T: StreamItem,
{
    Arc::new(|silo, item, attempt, timeout| {
        let value: T = actor_core::__private::codec::decode(&item.payload).map_err(|e| {
            format!(
                "item on stream {} does not decode as `{}`: {e}",
                item.stream,
                std::any::type_name::<T>()
            )
        })?;
        let grain = silo
            .get_grain::<G>(item.stream.key.clone())
            .with_timeout(timeout);
        let delivery = Delivery {
            stream: item.stream.clone(),
            token: item.token,
            attempt,
            subscription: None,
            item: value,
        };
        // The consumer's turn continues the publish's trace, not the
        // deliverer's (a stream grain's or a partition agent's turn).
        let parent = item
            .traceparent
            .as_deref()
            .and_then(|t| TraceContext::from_traceparent(t).ok());
        Ok(Box::pin(async move {
            match parent {
                Some(parent) => parent.scope(grain.ask(delivery)).await,
                None => grain.ask(delivery).await,
            }
        }))
    })
}

/// Configures the streams of a silo: named providers, implicit
/// subscriptions, where explicit subscriptions are stored, and how items
/// are delivered. Give it to [`SiloBuilderStreamsExt::with_streams`].
pub struct StreamsBuilder {
    providers: Vec<(String, Arc<dyn StreamProvider>)>,
    implicit: Vec<(Arc<str>, ImplicitConsumer)>,
    store: Option<Arc<dyn SubscriptionStore>>,
    policy: DeliveryPolicy,
    pulling: bool,
}

impl std::fmt::Debug for StreamsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsBuilder")
            .field(
                "providers",
                &self.providers.iter().map(|p| &p.0).collect::<Vec<_>>(),
            )
            .field("implicit", &self.implicit)
            .finish_non_exhaustive()
    }
}

impl StreamsBuilder {
    /// Registers `provider` under `name` (what producers and subscribers
    /// ask for).
    pub fn provider(mut self, name: impl Into<String>, provider: impl StreamProvider) -> Self {
        self.providers.push((name.into(), Arc::new(provider)));
        self
    }

    /// Declares grain type `G` the implicit consumer of `namespace`: the
    /// first item of any stream of the namespace activates the `G` with the
    /// stream's key, and it receives every item of that stream as a
    /// [`Delivery<T>`], on every provider. Several grain types may consume
    /// one namespace; each gets every item. Declarations are fixed when the
    /// silo starts (see the crate docs on why they cannot be removed at
    /// run time); register `G` on the silo too.
    pub fn implicit<G, T>(mut self, namespace: impl Into<Arc<str>>) -> Self
    where
        G: Handler<Delivery<T>> + GrainMethods,
        T: StreamItem,
    {
        self.implicit.push((
            namespace.into(),
            ImplicitConsumer {
                grain_type: G::TYPE_NAME,
                method: T::NAME,
                deliver: typed_deliver::<G, T>(),
            },
        ));
        self
    }

    /// Stores explicit subscriptions and dead letters in `store` (the
    /// default keeps them in memory, which is enough for one silo; a
    /// cluster shares a SQL store).
    pub fn subscription_store(mut self, store: impl SubscriptionStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Like [`subscription_store`](Self::subscription_store) with a store
    /// shared with other owners.
    pub fn subscription_store_arc(mut self, store: Arc<dyn SubscriptionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// How deliveries are tried and dead-lettered.
    pub fn delivery(mut self, policy: DeliveryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Whether this silo keeps the persistent providers' partition agents
    /// pulling (on by default). A silo that only publishes turns it off;
    /// in a cluster, agents may still be placed on it by the other silos'
    /// keepers, so turn it off only on silos outside any cluster or on
    /// every silo that should not pull.
    pub fn pulling(mut self, on: bool) -> Self {
        self.pulling = on;
        self
    }

    fn build(self) -> Result<Streams> {
        let mut providers = HashMap::new();
        for (name, p) in self.providers {
            if providers.insert(name.clone(), p).is_some() {
                return Err(Error::Config(format!(
                    "two stream providers are named `{name}`"
                )));
            }
        }
        let mut implicit: HashMap<Arc<str>, Vec<ImplicitConsumer>> = HashMap::new();
        for (ns, c) in self.implicit {
            let list = implicit.entry(ns.clone()).or_default();
            if list
                .iter()
                .any(|o| o.grain_type == c.grain_type && o.method == c.method)
            {
                return Err(Error::Config(format!(
                    "grain type `{}` is declared twice as the implicit consumer of `{ns}` with `{}`",
                    c.grain_type, c.method
                )));
            }
            list.push(c);
        }
        Ok(Streams {
            inner: Arc::new(Inner {
                providers,
                implicit,
                store: self
                    .store
                    .unwrap_or_else(|| Arc::new(MemorySubscriptions::new())),
                policy: self.policy,
                metrics: Registry::default(),
                ownership: parking_lot::RwLock::new(None),
                pulling: self.pulling,
                subscriptions_version: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }
}

/// Adds streams to a silo builder.
pub trait SiloBuilderStreamsExt {
    /// Plugs `streams` into the silo: its providers, implicit
    /// subscriptions and subscription store, and the grain types that
    /// carry items (the memory provider's stream grain, the partition
    /// agents). A configuration error (two providers of one name, an
    /// implicit consumer whose grain type is not registered) fails
    /// `start` with its message.
    fn with_streams(self, streams: StreamsBuilder) -> Self;
}

impl SiloBuilderStreamsExt for SiloBuilder {
    fn with_streams(mut self, streams: StreamsBuilder) -> Self {
        match streams.build() {
            Ok(streams) => {
                let check = streams.clone();
                let read = streams.clone();
                self.extension_mut::<actor_core::MetricSources>()
                    .add(crate::metrics::descriptors(), move |out| {
                        crate::metrics::read_into(&read.metrics(), out)
                    });
                self.grain::<crate::memory::MemoryStreamGrain>()
                    .grain::<crate::agent::PartitionAgent>()
                    .grain::<crate::client::PublisherGrain>()
                    .extension(streams)
                    .on_start(move |silo| check.validate(silo).map_err(Into::into))
            }
            Err(e) => self.on_start(move |_| Err(e.into())),
        }
    }
}

struct Inner {
    providers: HashMap<String, Arc<dyn StreamProvider>>,
    implicit: HashMap<Arc<str>, Vec<ImplicitConsumer>>,
    store: Arc<dyn SubscriptionStore>,
    policy: DeliveryPolicy,
    metrics: Registry,
    ownership: parking_lot::RwLock<Option<Ownership>>,
    pulling: bool,
    /// Bumped by every subscribe and unsubscribe made through this silo:
    /// the deliverers on this silo reload their subscription lists when it
    /// moves (those on other silos hear of it by message).
    subscriptions_version: std::sync::atomic::AtomicU64,
}

/// The streams of a silo (its extension; cheap to clone). Reach them with
/// [`Streams::of`], and a provider's handle with [`Streams::provider`].
#[derive(Clone)]
pub struct Streams {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.inner.providers.keys().collect();
        names.sort();
        f.debug_struct("Streams")
            .field("providers", &names)
            .finish_non_exhaustive()
    }
}

impl Streams {
    /// Starts configuring streams.
    pub fn builder() -> StreamsBuilder {
        StreamsBuilder {
            providers: Vec::new(),
            implicit: Vec::new(),
            store: None,
            policy: DeliveryPolicy::default(),
            pulling: true,
        }
    }

    /// The streams of `silo`.
    pub fn of(silo: &Silo) -> Result<&Streams> {
        silo.extension::<Streams>().ok_or(Error::NotConfigured)
    }

    /// The handle of provider `name` on `silo`: producers and
    /// subscriptions.
    pub fn provider(silo: &Silo, name: &str) -> Result<ProviderHandle> {
        let streams = Streams::of(silo)?;
        let provider = streams.find(name)?.clone();
        Ok(ProviderHandle {
            silo: silo.clone(),
            streams: streams.clone(),
            name: name.into(),
            provider,
        })
    }

    /// Tells the partition agents on this silo which of them it owns,
    /// instead of the cluster's view. An agent that finds itself on a silo
    /// that does not own it gives its partition back, and the next
    /// keep-alive activates it where the placement puts it.
    ///
    /// Without it, a cluster member owns the agents whose ids it owns in
    /// its view of the cluster
    /// ([`ClusterView::owner_of`](actor_cluster::ClusterView::owner_of),
    /// where the default hash placement activates them), so partitions
    /// follow silos that join; a silo outside a cluster owns every agent.
    /// Set it when agents are placed another way.
    pub fn set_ownership(&self, owns: Ownership) {
        *self.inner.ownership.write() = Some(owns);
    }

    pub(crate) fn owns(&self, silo: &Silo, id: &actor_core::GrainId) -> bool {
        if let Some(owns) = self.inner.ownership.read().as_ref() {
            return owns(id);
        }
        actor_cluster::ClusterView::of(silo).is_none_or(|v| v.owner_of(id) == v.me().endpoint)
    }

    /// This silo's stream counters.
    pub fn metrics(&self) -> StreamMetrics {
        self.inner.metrics.snapshot()
    }

    /// The dead letters kept in the subscription store, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.inner.store.dead_letters().await
    }

    /// The subscription store.
    pub fn store(&self) -> &Arc<dyn SubscriptionStore> {
        &self.inner.store
    }

    /// The names of the registered providers, sorted.
    pub fn provider_names(&self) -> Vec<String> {
        let mut v: Vec<_> = self.inner.providers.keys().cloned().collect();
        v.sort();
        v
    }

    /// The grain types declared as implicit consumers of `namespace`.
    pub fn implicit_consumers(&self, namespace: &str) -> Vec<&'static str> {
        self.implicit_for(namespace)
            .iter()
            .map(|c| c.grain_type)
            .collect()
    }

    pub(crate) fn find(&self, name: &str) -> Result<&Arc<dyn StreamProvider>> {
        self.inner
            .providers
            .get(name)
            .ok_or_else(|| Error::UnknownProvider {
                name: name.to_owned(),
                known: self.provider_names().join(", "),
            })
    }

    pub(crate) fn providers(&self) -> impl Iterator<Item = (&String, &Arc<dyn StreamProvider>)> {
        self.inner.providers.iter()
    }

    pub(crate) fn implicit_for(&self, namespace: &str) -> &[ImplicitConsumer] {
        self.inner
            .implicit
            .get(namespace)
            .map_or(&[], |v| v.as_slice())
    }

    pub(crate) fn counters(&self, namespace: &Arc<str>) -> Arc<Counters> {
        self.inner.metrics.of(namespace)
    }

    pub(crate) fn metrics_registry(&self) -> &Registry {
        &self.inner.metrics
    }

    pub(crate) fn subscriptions_version(&self) -> u64 {
        self.inner
            .subscriptions_version
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn subscriptions_changed(&self) {
        self.inner
            .subscriptions_version
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn policy(&self) -> &DeliveryPolicy {
        &self.inner.policy
    }

    fn validate(&self, silo: &Silo) -> Result<()> {
        let registered: Vec<String> = silo
            .grain_types()
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect();
        for (ns, list) in &self.inner.implicit {
            for c in list {
                if !registered.iter().any(|t| t == c.grain_type) {
                    return Err(Error::Config(format!(
                        "grain type `{}` is the implicit consumer of namespace `{ns}` but is not registered on this silo; add it with SiloBuilder::grain",
                        c.grain_type
                    )));
                }
            }
        }
        for (name, p) in self.providers().filter(|_| self.inner.pulling) {
            if let Some(parts) = p.partitions() {
                crate::agent::start_keeper(silo.clone(), name.clone(), parts.count());
            }
        }
        Ok(())
    }
}

/// A provider on a silo: makes producers and subscriptions.
#[derive(Clone)]
pub struct ProviderHandle {
    silo: Silo,
    streams: Streams,
    name: Arc<str>,
    provider: Arc<dyn StreamProvider>,
}

impl std::fmt::Debug for ProviderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderHandle")
            .field("name", &self.name)
            .field("kind", &self.provider.kind())
            .finish_non_exhaustive()
    }
}

impl ProviderHandle {
    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A producer of `T` items on `stream`. Each producer numbers its own
    /// items (see [`SequenceToken`]); keep one per stream rather than one
    /// per item.
    pub fn producer<T: StreamItem>(&self, stream: StreamId) -> StreamProducer<T> {
        StreamProducer {
            handle: self.clone(),
            counters: self.streams.counters(&stream.namespace),
            stream,
            producer: random_id(),
            seq: tokio::sync::Mutex::new(0),
            _item: std::marker::PhantomData,
        }
    }

    /// Subscribes `consumer` to `stream`: from now on it receives the
    /// stream's items as [`Delivery<T>`] messages, activated by them when
    /// needed, until it unsubscribes. Get-or-create: a consumer has at
    /// most one subscription per stream and provider, so subscribing
    /// again (say, in every `on_activate`) returns the existing handle.
    pub async fn subscribe<G, T>(
        &self,
        consumer: &GrainRef<G>,
        stream: StreamId,
    ) -> Result<SubscriptionHandle<T>>
    where
        G: Handler<Delivery<T>> + GrainMethods,
        T: StreamItem,
    {
        let sub = Subscription {
            id: SubscriptionId::of(&self.name, &stream, consumer.id()),
            provider: self.name.to_string(),
            stream,
            consumer: consumer.id().clone(),
            method: T::NAME.to_owned(),
            created_millis: now_millis(),
        };
        let (sub, created) = self.streams.store().get_or_insert(sub).await?;
        if sub.method != T::NAME {
            return Err(Error::Config(format!(
                "{} is already subscribed to {} with items `{}`, not `{}`; unsubscribe that one first",
                sub.consumer,
                sub.stream,
                sub.method,
                T::NAME
            )));
        }
        if created {
            self.streams.subscriptions_changed();
            self.provider
                .subscriptions_changed(&self.silo, &self.name, &sub.stream);
        }
        Ok(self.handle(sub))
    }

    /// Like [`subscribe`](Self::subscribe), and also delivers the kept
    /// items of the stream from `token` on (its `offset`) to this
    /// subscription. The replay runs in the background once the
    /// subscription exists, so replayed items may interleave with new ones
    /// (their tokens tell them apart; [`Dedup`](crate::Dedup) drops
    /// repeats). Only providers that keep a numbered log can rewind
    /// (JetStream); the others, and a token without an offset, fail with
    /// [`Error::RewindUnsupported`] before anything is subscribed.
    pub async fn subscribe_from<G, T>(
        &self,
        consumer: &GrainRef<G>,
        stream: StreamId,
        token: SequenceToken,
    ) -> Result<SubscriptionHandle<T>>
    where
        G: Handler<Delivery<T>> + GrainMethods,
        T: StreamItem,
    {
        if !self.provider.can_rewind() || token.offset.is_none() {
            return Err(Error::RewindUnsupported {
                provider: self.name.to_string(),
                token: token.to_string(),
            });
        }
        let handle = self.subscribe(consumer, stream).await?;
        // In the background: the consumer may be subscribing from its own
        // turn, and the replayed items are turns of that same grain.
        let (silo, name, provider, sub) = (
            self.silo.clone(),
            self.name.clone(),
            self.provider.clone(),
            handle.sub.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = crate::agent::replay(&silo, &name, &*provider, &sub, token).await {
                tracing::warn!(subscription = %sub.id, error = %e, "replay from a token failed");
            }
        });
        Ok(handle)
    }

    /// Publishes items numbered elsewhere (a client's, through the
    /// publisher grain): checked against the provider's size limit,
    /// published as one batch, counted.
    pub(crate) async fn publish_raw(&self, items: Vec<RawItem>) -> Result<()> {
        let Some(first) = items.first() else {
            return Ok(());
        };
        if items.iter().any(|i| i.stream != first.stream) {
            return Err(Error::Config("a batch holds items of one stream".into()));
        }
        let limit = self.provider.max_item_bytes();
        if let Some(big) = items.iter().find(|i| i.payload.len() > limit) {
            return Err(Error::TooLarge {
                provider: self.name.to_string(),
                stream: big.stream.to_string(),
                size: big.payload.len(),
                limit,
            });
        }
        let counters = self.streams.counters(&first.stream.namespace);
        let n = items.len() as u64;
        self.provider.publish(&self.silo, &self.name, items).await?;
        counters
            .published
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The subscriptions `consumer` holds on this provider with items of
    /// type `T`: what a reactivated grain resumes.
    pub async fn subscriptions<G, T>(
        &self,
        consumer: &GrainRef<G>,
    ) -> Result<Vec<SubscriptionHandle<T>>>
    where
        G: Handler<Delivery<T>> + GrainMethods,
        T: StreamItem,
    {
        let subs = self.streams.store().of_consumer(consumer.id()).await?;
        Ok(subs
            .into_iter()
            .filter(|s| *s.provider == *self.name && s.method == T::NAME)
            .map(|s| self.handle(s))
            .collect())
    }

    fn handle<T>(&self, sub: Subscription) -> SubscriptionHandle<T> {
        SubscriptionHandle {
            handle: self.clone(),
            sub,
            _item: std::marker::PhantomData,
        }
    }
}

fn random_id() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// Publishes items of type `T` on one stream.
pub struct StreamProducer<T> {
    handle: ProviderHandle,
    counters: Arc<Counters>,
    stream: StreamId,
    producer: u64,
    /// The last sequence number given, held across the provider's publish
    /// so that items leave in the order they are numbered.
    seq: tokio::sync::Mutex<u64>,
    _item: TypeTag<T>,
}

impl<T> std::fmt::Debug for StreamProducer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamProducer")
            .field("stream", &self.stream)
            .field("provider", &self.handle.name)
            .field("producer", &format_args!("{:016x}", self.producer))
            .finish_non_exhaustive()
    }
}

impl<T: StreamItem> StreamProducer<T> {
    /// The stream.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// This producer's id, as its tokens carry it.
    pub fn producer_id(&self) -> u64 {
        self.producer
    }

    /// Publishes one item; answers its token. `Ok` means what the provider
    /// documents (durable on the broker for the persistent providers).
    pub async fn publish(&self, item: &T) -> Result<SequenceToken> {
        let mut tokens = self.publish_batch(std::slice::from_ref(item)).await?;
        Ok(tokens.pop().expect("one item, one token"))
    }

    /// Publishes `items` in order as one batch; answers their tokens. An
    /// oversized item refuses the whole batch before anything is sent.
    pub async fn publish_batch(&self, items: &[T]) -> Result<Vec<SequenceToken>> {
        let limit = self.handle.provider.max_item_bytes();
        let mut payloads = Vec::with_capacity(items.len());
        for item in items {
            let bytes = actor_core::__private::codec::encode(item)?;
            if bytes.len() > limit {
                return Err(Error::TooLarge {
                    provider: self.handle.name.to_string(),
                    stream: self.stream.to_string(),
                    size: bytes.len(),
                    limit,
                });
            }
            payloads.push(bytes);
        }
        // The publishing turn's span, or outside a turn the caller's
        // `traceparent` (an HTTP handler's, say): the consumers' turns
        // continue that trace.
        let traceparent = TraceContext::current().map(|t| t.to_string()).or_else(|| {
            actor_core::RequestContext::current()
                .value(actor_core::TRACEPARENT)
                .filter(|t| TraceContext::from_traceparent(t).is_ok())
                .map(str::to_owned)
        });
        let mut seq = self.seq.lock().await;
        let mut tokens = Vec::with_capacity(items.len());
        let raw: Vec<RawItem> = payloads
            .into_iter()
            .map(|payload| {
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
        let n = raw.len() as u64;
        self.handle
            .provider
            .publish(&self.handle.silo, &self.handle.name, raw)
            .await?;
        drop(seq);
        self.counters
            .published
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        Ok(tokens)
    }
}

/// An explicit subscription: what [`ProviderHandle::subscribe`] and
/// [`ProviderHandle::subscriptions`] give back.
pub struct SubscriptionHandle<T> {
    handle: ProviderHandle,
    pub(crate) sub: Subscription,
    _item: TypeTag<T>,
}

impl<T> std::fmt::Debug for SubscriptionHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionHandle")
            .field("id", &self.sub.id)
            .finish_non_exhaustive()
    }
}

impl<T> SubscriptionHandle<T> {
    /// The subscription's id (its deliveries carry it).
    pub fn id(&self) -> &SubscriptionId {
        &self.sub.id
    }

    /// The stream.
    pub fn stream(&self) -> &StreamId {
        &self.sub.stream
    }

    /// The stored row.
    pub fn subscription(&self) -> &Subscription {
        &self.sub
    }

    /// Ends the subscription: its row is deleted and no more items are
    /// delivered for it (an item already on its way may still arrive).
    /// `Ok(false)` if it was already gone.
    pub async fn unsubscribe(self) -> Result<bool> {
        let gone = self.handle.streams.store().remove(&self.sub.id).await?;
        self.handle.streams.subscriptions_changed();
        self.handle.provider.subscriptions_changed(
            &self.handle.silo,
            &self.handle.name,
            &self.sub.stream,
        );
        Ok(gone)
    }
}
