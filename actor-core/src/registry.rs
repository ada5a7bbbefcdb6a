//! The silo's registry of grain types: factory, options, metrics and the
//! by-name method table used to dispatch serialized calls.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::envelope::CallHeader;
use crate::error::Result;
use crate::grain::{Grain, GrainMethods, GrainOptions};
use crate::id::GrainId;
use crate::invoke::{Call, Invoke, ReplyTo};
use crate::message::{Accepts, Message};
use crate::metrics::TypeMetrics;
use crate::silo::Silo;

/// How a grain is built on activation.
pub(crate) enum Factory<G> {
    Sync(Arc<dyn Fn(&GrainId) -> G + Send + Sync>),
    Async(
        Arc<
            dyn Fn(
                    ActivationContext,
                )
                    -> futures::future::BoxFuture<'static, Result<G, crate::BoxError>>
                + Send
                + Sync,
        >,
    ),
}

/// What an async grain factory gets: the grain's id and its silo (whose
/// extensions hold storage providers and other services).
#[derive(Debug, Clone)]
pub struct ActivationContext {
    pub(crate) id: GrainId,
    pub(crate) silo: Silo,
}

impl ActivationContext {
    /// The id of the grain being activated.
    pub fn id(&self) -> &GrainId {
        &self.id
    }

    /// The silo activating it.
    pub fn silo(&self) -> &Silo {
        &self.silo
    }
}

/// A map built once at start and only read afterwards.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

type Decode<G> =
    fn(CallHeader, &[u8], oneshot::Sender<Result<Vec<u8>>>) -> Result<Box<dyn Invoke<G>>>;

/// The messages a grain type answers by name, filled in by its
/// [`GrainMethods::register`] when a silo registers the type.
pub struct Methods<G: Grain> {
    pub(crate) by_name: FastMap<&'static str, Decode<G>>,
    _g: PhantomData<fn() -> G>,
}

impl<G: Grain> Methods<G> {
    pub(crate) fn new() -> Self {
        Methods {
            by_name: Default::default(),
            _g: PhantomData,
        }
    }

    /// Adds message `M`, answered by a [`Handler`](crate::Handler) or a
    /// [`SharedHandler`](crate::SharedHandler) of `G` (the compiler infers
    /// which: write `methods.add::<M, _>()`).
    ///
    /// # Panics
    ///
    /// If `G` already lists a message of the same [`Message::NAME`].
    pub fn add<M: Message, K: 'static>(&mut self) -> &mut Self
    where
        G: Accepts<M, K>,
    {
        fn decode<G: Accepts<M, K>, M: Message, K>(
            header: CallHeader,
            payload: &[u8],
            reply: oneshot::Sender<Result<Vec<u8>>>,
        ) -> Result<Box<dyn Invoke<G>>> {
            let msg: M = crate::codec::decode(payload)?;
            Ok(G::invocation(|| Call {
                header,
                msg,
                reply: ReplyTo::Encoded(reply),
            }))
        }
        let previous = self.by_name.insert(M::NAME, decode::<G, M, K>);
        assert!(
            previous.is_none(),
            "grain type `{}` registers two messages named `{}`",
            G::TYPE_NAME,
            M::NAME
        );
        self
    }

    /// The registered method names.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }
}

pub(crate) struct TypeEntry<G: Grain> {
    pub(crate) options: GrainOptions,
    pub(crate) factory: Factory<G>,
    pub(crate) metrics: Arc<TypeMetrics>,
    pub(crate) methods: Methods<G>,
}

impl<G: GrainMethods> TypeEntry<G> {
    /// The entry of a type with its method table, so that every
    /// registered type answers serialized calls as it answers local ones.
    pub(crate) fn new(options: GrainOptions, factory: Factory<G>) -> Self {
        let mut methods = Methods::new();
        G::register(&mut methods);
        TypeEntry {
            options,
            factory,
            metrics: Arc::new(TypeMetrics::new(G::TYPE_NAME)),
            methods,
        }
    }
}
