//! Messages and handlers: how a grain declares what it answers.
//!
//! Each request type is a [`Message`] (a serde type with a stable method
//! name and a reply type); a grain answers it by implementing [`Handler`]
//! (an exclusive turn on `&mut self`) or [`SharedHandler`] (a turn on
//! `&self` that may interleave with other shared turns when the grain opts
//! in). [`Accepts`] joins the two so that a [`GrainRef`](crate::GrainRef)
//! takes either, compile-checked.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::grain::Grain;
use crate::grain_context::GrainContext;
use crate::invoke::{Call, ExclusiveCall, Invoke, SharedCall};

/// A request a grain can answer: a serde type with a stable method name.
///
/// The name identifies the method on the wire and in traces and metrics, so
/// keep it stable across refactors (like [`Grain::TYPE_NAME`]).
///
/// ```
/// use actor_core::Message;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Deposit { amount: u64 }
///
/// impl Message for Deposit {
///     type Reply = Result<u64, String>;
///     const NAME: &'static str = "deposit";
///     fn is_error(reply: &Self::Reply) -> bool { reply.is_err() }
/// }
/// ```
pub trait Message: Serialize + DeserializeOwned + Send + 'static {
    /// What the grain answers. A grain's own failures belong in here (for
    /// example `Result<T, MyError>`), apart from the runtime's [`Error`](crate::Error).
    type Reply: Serialize + DeserializeOwned + Send + 'static;
    /// The stable method name.
    const NAME: &'static str;

    /// Whether a reply counts as an error in the silo's metrics.
    /// Defaults to `false`; override it for `Result` replies.
    fn is_error(reply: &Self::Reply) -> bool {
        let _ = reply;
        false
    }
}

/// Handles `M` in an exclusive turn: no other turn of this activation runs
/// until it returns.
pub trait Handler<M: Message>: Grain {
    /// Answers one message.
    fn handle(&mut self, msg: M, ctx: &GrainContext<Self>)
    -> impl Future<Output = M::Reply> + Send;
}

/// How a shared (`&self`) turn may interleave with other turns of the same
/// activation. Exclusive (`&mut self`) turns never interleave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interleave {
    /// One turn at a time, like an exclusive turn (unless the grain type is
    /// reentrant, or the call comes back on its own call chain and the type
    /// allows call-chain reentrancy).
    Never,
    /// Interleaves with other read-only turns (Orleans `[ReadOnly]`).
    ReadOnly,
    /// Interleaves with every shared turn and is admitted ahead of queued
    /// messages (Orleans `[AlwaysInterleave]`).
    Always,
}

/// Handles `M` in a shared turn on `&self`, which may interleave with other
/// shared turns (see [`Interleave`]); state mutated here lives behind
/// interior mutability (atomics, a `Mutex` not held across `.await`).
pub trait SharedHandler<M: Message>: Grain {
    /// How this method interleaves.
    const INTERLEAVE: Interleave = Interleave::Never;

    /// Answers one message.
    fn handle(&self, msg: M, ctx: &GrainContext<Self>) -> impl Future<Output = M::Reply> + Send;
}

/// Markers that tell [`Accepts`] which handler kind answers a message.
pub mod kind {
    /// The message is answered by a [`Handler`](super::Handler).
    #[derive(Debug)]
    pub enum Exclusive {}
    /// The message is answered by a [`SharedHandler`](super::SharedHandler).
    #[derive(Debug)]
    pub enum Shared {}
}

/// Implemented automatically for every grain that handles `M`, with
/// `K = kind::Exclusive` for a [`Handler`] and `K = kind::Shared` for a
/// [`SharedHandler`]. The compiler infers `K`; implementing both kinds for
/// one message is a compile error at the call site.
#[diagnostic::on_unimplemented(
    message = "grain type `{Self}` does not handle message `{M}`",
    label = "`{Self}` has no handler of `{M}`",
    note = "implement `Handler<{M}>` (an exclusive turn) or `SharedHandler<{M}>` (a shared turn) for `{Self}`, or make it a grain method with `#[grain_methods]`"
)]
pub trait Accepts<M: Message, K>: Grain {
    /// Boxes the call `make` builds. The box is allocated first, so the
    /// call (a 240-byte header and the message) is built in place in it
    /// rather than on the stack and copied over.
    #[doc(hidden)]
    fn invocation(make: impl FnOnce() -> Call<M>) -> Box<dyn Invoke<Self>>;
}

impl<G: Handler<M>, M: Message> Accepts<M, kind::Exclusive> for G {
    #[inline(always)]
    fn invocation(make: impl FnOnce() -> Call<M>) -> Box<dyn Invoke<Self>> {
        let slot = Box::<ExclusiveCall<M>>::new_uninit();
        let call: Box<ExclusiveCall<M>> = Box::write(slot, ExclusiveCall(make()));
        call
    }
}

impl<G: SharedHandler<M>, M: Message> Accepts<M, kind::Shared> for G {
    #[inline(always)]
    fn invocation(make: impl FnOnce() -> Call<M>) -> Box<dyn Invoke<Self>> {
        let slot = Box::<SharedCall<M>>::new_uninit();
        let call: Box<SharedCall<M>> = Box::write(slot, SharedCall(make()));
        call
    }
}
