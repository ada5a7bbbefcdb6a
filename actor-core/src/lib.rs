//! # actor-core: virtual actors for Rust
//!
//! Grains are actors that always exist virtually: you hold a typed
//! reference to a grain id, call it, and the silo activates the grain on the
//! first call, runs its messages one turn at a time, and collects it when
//! idle. This crate is the local runtime every other crate builds on:
//! identities, typed references, turns and reentrancy, activation
//! lifecycle, deadlines, deadlock detection, request context, timers, call
//! filters and async call layers (middleware around every turn), tracing
//! and metrics on one silo. Clustering, persistence,
//! streams and transactions live in their own crates and plug into the
//! [`SiloBuilder`].
//!
//! ## A tour
//!
//! ```
//! use actor_core::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! // A grain: plain state, a stable type name.
//! #[derive(Default)]
//! struct Counter { value: u64 }
//!
//! impl Grain for Counter {
//!     const TYPE_NAME: &'static str = "counter";
//! }
//!
//! // Its messages: serde types with a reply type and a stable name.
//! #[derive(Serialize, Deserialize)]
//! struct Add(u64);
//! impl Message for Add {
//!     type Reply = u64;
//!     const NAME: &'static str = "add";
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! struct Get;
//! impl Message for Get {
//!     type Reply = u64;
//!     const NAME: &'static str = "get";
//! }
//!
//! // An exclusive turn on `&mut self`...
//! impl Handler<Add> for Counter {
//!     async fn handle(&mut self, Add(n): Add, _ctx: &GrainContext<Self>) -> u64 {
//!         self.value += n;
//!         self.value
//!     }
//! }
//!
//! // ...and a read-only turn on `&self` that may interleave with others.
//! impl SharedHandler<Get> for Counter {
//!     const INTERLEAVE: Interleave = Interleave::ReadOnly;
//!     async fn handle(&self, _: Get, _ctx: &GrainContext<Self>) -> u64 {
//!         self.value
//!     }
//! }
//!
//! // The messages it answers by name, for calls that arrive serialized
//! // (other silos, clients). A silo takes only grains that list them.
//! impl GrainMethods for Counter {
//!     fn register(m: &mut Methods<Self>) {
//!         m.add::<Add, _>().add::<Get, _>();
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> actor_core::Result<()> {
//! let silo = Silo::builder().grain::<Counter>().start().await?;
//! let counter = silo.get_grain::<Counter>("visits");   // typed reference
//! counter.ask(Add(2)).await?;                          // request/response
//! counter.tell(Add(1))?;                               // one-way
//! assert_eq!(counter.ask(Get).await?, 3);
//! silo.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! A message the grain does not handle does not compile; there are no
//! method-name strings at call sites. Nor does registering a grain type
//! that does not implement [`GrainMethods`]: every grain on a silo answers
//! serialized calls as it answers local ones.
//!
//! ## The shorthand: `#[grain_methods]`
//!
//! Writing the message types by hand shows every moving part; the
//! [`grain_methods`] attribute writes them for you from plain async
//! methods, like an Orleans grain interface, and gives the reference a
//! method per grain method. It expands only to what you could write by
//! hand (message structs, `Handler`/`SharedHandler` impls, the
//! `GrainMethods` impl and a `{Grain}Ref` extension trait).
//!
//! ```
//! use actor_core::prelude::*;
//!
//! #[derive(Default)]
//! pub struct Account { balance: i64 }
//!
//! impl Grain for Account {
//!     const TYPE_NAME: &'static str = "account";
//! }
//!
//! #[grain_methods]
//! impl Account {
//!     /// Deposits `amount`; answers the new balance.
//!     pub async fn deposit(&mut self, amount: i64) -> i64 {
//!         self.balance += amount;
//!         self.balance
//!     }
//!
//!     /// The balance, readable alongside other reads.
//!     #[read_only]
//!     pub async fn balance(&self) -> i64 { self.balance }
//!
//!     /// Fire-and-forget.
//!     #[one_way]
//!     pub async fn reset(&mut self) { self.balance = 0; }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> actor_core::Result<()> {
//! let silo = Silo::builder().grain::<Account>().start().await?;
//! let account = silo.get_grain::<Account>("alice");
//! account.deposit(50).await?;            // AccountRef::deposit
//! assert_eq!(account.balance().await?, 50);
//! account.reset()?;                      // one-way
//! assert_eq!(account.balance().await?, 0);
//! # silo.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## What the runtime guarantees
//!
//! See `docs/runtime-semantics.md` in the repository for the full list:
//! messages from one caller to one grain start in the order sent; an
//! exclusive turn runs alone; a call that would wait on itself (A -> B -> A)
//! fails at once with [`Error::Deadlock`] naming the cycle; every call has
//! a deadline; a panicking handler fails its call with [`Error::Panicked`]
//! and drops only its activation.
//!
//! ## Feature flags
//!
//! None yet.

// The modules in layers, each using only the layers below it:
// 1. `id`, `error`, `codec`, `metrics`, `trace`: ids, errors, the wire
//    format, counters and trace ids; they know nothing of calls.
// 2. `context` (call ids, call chains, request context, the turn's scope),
//    then `filter`, `envelope` (a call's header and its serialized form)
//    and `router`.
// 3. The grains and the runtime that runs them: `grain`, `message`,
//    `invoke`, `layer` (async middleware around turns), `registry`,
//    `grain_context`, `reference`, `timer`,
//    `worker`, `activation` (scheduling state; the turn runner in
//    `activation/turn`) and, on top, `silo` (the handle; `silo/builder`,
//    `silo/table`, the activation table). These name one another's
//    types, which no move of code undoes: a grain's methods take a
//    `GrainContext`, which holds the grain's activation and its silo;
//    a grain factory is handed the silo; a reference holds its silo.
mod activation;
// The wire codec is plumbing for transports, not API: transports reach
// it as `__private::codec`.
mod codec;
mod context;
mod envelope;
mod error;
mod filter;
mod grain;
mod grain_context;
mod id;
mod invoke;
mod layer;
mod message;
mod metrics;
mod redact;
mod reference;
mod registry;
mod router;
mod silo;
mod sql_url;
mod timer;
mod trace;
mod turn_fence;
mod worker;

pub use context::{CallId, RequestContext};
pub use envelope::{EncodedCall, EncodedReply};
pub use error::{BoxError, Error, Result, SendError};
pub use filter::{CallInfo, IncomingCallFilter, OutgoingCall, OutgoingCallFilter};
pub use grain::{DeactivationReason, Grain, GrainMethods, GrainOptions};
pub use grain_context::GrainContext;
pub use id::{GrainId, GrainKey, GrainType};
pub use layer::{CallLayer, Next, TurnOutcome};
pub use message::{Accepts, Handler, Interleave, Message, SharedHandler, kind};
pub use metrics::{
    GrainTypeStats, LatencySnapshot, MethodStats, MetricDescriptor, MetricKind, MetricSources,
    MetricsSnapshot, PluginMetric,
};
pub use redact::{Secret, redact_url};
pub use reference::GrainRef;
pub use registry::{ActivationContext, Methods};
pub use router::Router;
pub use silo::{DEFAULT_CALL_TIMEOUT, DEFAULT_IDLE_TIMEOUT, Silo, SiloBuilder};
pub use timer::TimerHandle;
pub use trace::{SpanId, TRACEPARENT, TraceContext, TraceId, TraceParentError};
pub use turn_fence::TurnFence;

/// Declares grain methods from an `impl` block; see the crate docs.
pub use actor_core_macros::grain_methods;

/// The names a grain author needs, in one `use`.
pub mod prelude {
    pub use crate::{
        Grain, GrainContext, GrainId, GrainKey, GrainMethods, GrainOptions, GrainRef, Handler,
        Interleave, Message, Methods, RequestContext, SharedHandler, Silo, grain_methods,
    };
}

#[doc(hidden)]
pub mod __private {
    /// The wire codec (bincode, the runtime's settings) for transports.
    pub mod codec {
        pub use crate::codec::*;
    }
    pub use crate::context::{current_call_id, restart_call_ids_on_this_thread};
    pub use crate::envelope::CallHeader;
    pub use crate::invoke::{
        Call, ExclusiveCall, HeldReply, Invoke, OnEnd, SharedCall, TurnObserver,
    };
    /// Wall-clock milliseconds since the Unix epoch (0 before it): the one
    /// helper every crate stamps rows and records with.
    pub fn now_millis() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
    /// Database URLs before sqlx sees them (see the module).
    pub mod sql_url {
        pub use crate::sql_url::*;
    }
    pub use serde;
    pub use serde_bytes;
}

/// The repository README's tour, compiled and run as a doctest so it stays
/// true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
