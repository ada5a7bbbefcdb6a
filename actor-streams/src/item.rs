//! What travels on a stream: items of a serde type ([`StreamItem`]),
//! delivered to consumer grains as [`Delivery`] messages, and their erased
//! form ([`RawItem`]) that providers carry as bytes.

use std::marker::PhantomData;

use actor_core::Message;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::id::{SequenceToken, StreamId};
use crate::subscription::SubscriptionId;

/// A type that can travel on a stream.
///
/// `NAME` is the method name of its [`Delivery`] message on consumer
/// grains, so it must be unique among each consumer's messages and stable
/// across versions (like `Message::NAME`); a `stream:` prefix keeps it
/// apart from ordinary methods.
///
/// ```
/// use actor_streams::StreamItem;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Temperature { celsius: f64 }
///
/// impl StreamItem for Temperature {
///     const NAME: &'static str = "stream:temperature";
/// }
/// ```
pub trait StreamItem: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The method name of `Delivery<Self>`.
    const NAME: &'static str;
}

macro_rules! std_items {
    ($($t:ty => $n:literal),* $(,)?) => {$(
        impl StreamItem for $t {
            const NAME: &'static str = $n;
        }
    )*};
}
std_items! {
    i32 => "stream:i32", i64 => "stream:i64", u32 => "stream:u32", u64 => "stream:u64",
    f64 => "stream:f64", bool => "stream:bool", String => "stream:string",
    Vec<u8> => "stream:bytes",
}

/// What a consumer's turn answers: `Ok` acknowledges the item (on a
/// persistent provider it is then acked on the broker); an error has it
/// redelivered, and after the provider's attempts, dead-lettered.
pub type Ack = Result<(), DeliveryError>;

/// A consumer's refusal of an item, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{0}")]
pub struct DeliveryError(pub String);

impl From<String> for DeliveryError {
    fn from(s: String) -> Self {
        DeliveryError(s)
    }
}

impl From<&str> for DeliveryError {
    fn from(s: &str) -> Self {
        DeliveryError(s.to_owned())
    }
}

/// One item of a stream as a consumer grain receives it: a message whose
/// name is `T::NAME`. A consumer handles it (`impl Handler<Delivery<T>>`)
/// and lists it in its `GrainMethods` (`m.add::<Delivery<T>, _>()`, or
/// `#[grain_methods(also_handles(Delivery<T>))]`), since deliveries arrive
/// serialized.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery<T> {
    /// The stream the item is on.
    pub stream: StreamId,
    /// The item's token (drop redeliveries with [`Dedup`](crate::Dedup)).
    pub token: SequenceToken,
    /// 1 for the first delivery of the item to this consumer; more when it
    /// is delivered again (after a failed turn, a lost ack, a moved
    /// partition).
    pub attempt: u32,
    /// The explicit subscription it is delivered for; `None` for an
    /// implicit subscription.
    pub subscription: Option<SubscriptionId>,
    /// The item.
    pub item: T,
}

impl<T: StreamItem> Message for Delivery<T> {
    type Reply = Ack;
    const NAME: &'static str = T::NAME;
    fn is_error(reply: &Ack) -> bool {
        reply.is_err()
    }
}

/// The serialized form of a delivery: the item stays the bytes its
/// producer wrote, so the runtime forwards it without knowing its type.
#[derive(Serialize, Deserialize)]
pub(crate) struct WireDelivery {
    pub(crate) stream: StreamId,
    pub(crate) token: SequenceToken,
    pub(crate) attempt: u32,
    pub(crate) subscription: Option<SubscriptionId>,
    #[serde(with = "serde_bytes")]
    pub(crate) item: Vec<u8>,
}

impl<T: StreamItem> Serialize for Delivery<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let item =
            actor_core::__private::codec::encode(&self.item).map_err(serde::ser::Error::custom)?;
        WireDelivery {
            stream: self.stream.clone(),
            token: self.token,
            attempt: self.attempt,
            subscription: self.subscription.clone(),
            item,
        }
        .serialize(s)
    }
}

impl<'de, T: StreamItem> Deserialize<'de> for Delivery<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = WireDelivery::deserialize(d)?;
        let item = actor_core::__private::codec::decode::<T>(&w.item).map_err(|e| {
            serde::de::Error::custom(format!(
                "item on stream {} does not decode as `{}`: {e}",
                w.stream,
                std::any::type_name::<T>()
            ))
        })?;
        Ok(Delivery {
            stream: w.stream,
            token: w.token,
            attempt: w.attempt,
            subscription: w.subscription,
            item,
        })
    }
}

/// An item as providers carry it: its stream, its token and its encoded
/// bytes (the runtime's wire codec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawItem {
    /// The stream.
    pub stream: StreamId,
    /// The token its producer gave it.
    pub token: SequenceToken,
    /// The encoded item.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// The W3C `traceparent` of the publish, so that the consumer's turn
    /// continues the producer's trace.
    pub traceparent: Option<String>,
}

/// Marks a type parameter without owning a value of it (Send + Sync
/// whatever `T` is).
pub(crate) type TypeTag<T> = PhantomData<fn() -> T>;
