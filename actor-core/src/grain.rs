//! The `Grain` trait, the `GrainMethods` list of what a grain answers, and
//! per-type options.

use std::future::Future;
use std::time::Duration;

use crate::error::BoxError;
use crate::grain_context::GrainContext;
use crate::registry::Methods;

/// A virtual actor type. Each grain id of this type exists virtually; the
/// silo activates it (builds it with the registered factory and runs
/// [`on_activate`](Grain::on_activate)) on the first call.
///
/// Grains are `Send + Sync` because shared turns borrow `&self` across
/// threads; plain data (`Vec`, `HashMap`, `String`) is both.
pub trait Grain: Sized + Send + Sync + 'static {
    /// The stable type name used in grain ids, on the wire and in storage.
    /// Keep it when the Rust type is renamed or moved.
    const TYPE_NAME: &'static str;

    /// Per-type options (reentrancy, stateless worker, idle age). A silo
    /// builder may override them.
    fn options() -> GrainOptions {
        GrainOptions::new()
    }

    /// Runs after the grain is built and before its first message. An error
    /// fails every queued call and drops the activation.
    fn on_activate(
        &mut self,
        ctx: &GrainContext<Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Runs when the activation is deactivated (idle, on request or at silo
    /// shutdown); not after a panic, whose state is not trusted.
    fn on_deactivate(
        &mut self,
        ctx: &GrainContext<Self>,
        reason: DeactivationReason,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, reason);
        async {}
    }
}

/// The messages a grain type answers, listed by name so that serialized
/// calls (from other silos, clients, reminders) reach them; a silo
/// registers only grain types that implement it ([`SiloBuilder::grain`]),
/// so no grain answers local calls while failing remote ones.
///
/// `#[grain_methods]` implements it for its block's grain methods (add
/// messages whose handlers are written outside the block with
/// `#[grain_methods(also_handles(Msg, ..))]`). A grain whose messages are
/// written by hand (`impl Message` + `impl Handler<M>`) implements it and
/// lists each one:
///
/// ```
/// use actor_core::prelude::*;
/// # use serde::{Deserialize, Serialize};
/// #[derive(Default)]
/// struct Counter { value: u64 }
/// impl Grain for Counter { const TYPE_NAME: &'static str = "counter"; }
///
/// #[derive(Serialize, Deserialize)]
/// struct Add(u64);
/// impl Message for Add { type Reply = u64; const NAME: &'static str = "add"; }
/// impl Handler<Add> for Counter {
///     async fn handle(&mut self, Add(n): Add, _: &GrainContext<Self>) -> u64 {
///         self.value += n;
///         self.value
///     }
/// }
///
/// impl GrainMethods for Counter {
///     fn register(methods: &mut Methods<Self>) {
///         methods.add::<Add, _>();
///     }
/// }
///
/// let _builder = Silo::builder().grain::<Counter>(); // compiles: Counter lists its messages
/// ```
///
/// A hand-written listing must name every message the grain handles: one
/// left out answers local calls and fails serialized ones with
/// [`Error::UnknownMethod`](crate::Error::UnknownMethod).
///
/// [`SiloBuilder::grain`]: crate::SiloBuilder::grain
#[diagnostic::on_unimplemented(
    message = "grain type `{Self}` does not list its messages: it does not implement `GrainMethods`",
    label = "a silo registers only grain types whose messages it can dispatch by name",
    note = "put `#[grain_methods]` on the `impl` block of its grain methods: it implements `GrainMethods`",
    note = "for messages written by hand (`impl Handler<M> for {Self}`), list them: `impl GrainMethods for {Self} {{ fn register(methods: &mut Methods<Self>) {{ methods.add::<M, _>(); }} }}`"
)]
pub trait GrainMethods: Grain {
    /// Adds every message this grain answers to `methods`, with
    /// [`Methods::add`]. Runs once per silo, when it registers the type.
    fn register(methods: &mut Methods<Self>);
}

/// Why an activation is being deactivated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeactivationReason {
    /// Idle longer than its collection age.
    Idle,
    /// The grain called [`GrainContext::deactivate_on_idle`].
    Requested,
    /// The silo is shutting down.
    Shutdown,
    /// The grain belongs to another silo now (cluster membership changed).
    Rebalanced,
}

/// Options of a grain type. Build with the methods; start from
/// [`GrainOptions::new`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrainOptions {
    pub(crate) reentrant: bool,
    pub(crate) call_chain_reentrancy: bool,
    pub(crate) stateless_worker: Option<usize>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) keep_alive: bool,
}

impl GrainOptions {
    /// Default options: non-reentrant, single activation, silo's idle age.
    pub const fn new() -> Self {
        GrainOptions {
            reentrant: false,
            call_chain_reentrancy: false,
            stateless_worker: None,
            idle_timeout: None,
            keep_alive: false,
        }
    }

    /// Shared (`&self`) turns of this type interleave with each other
    /// (Orleans `[Reentrant]`). Exclusive turns stay exclusive.
    pub const fn reentrant(mut self) -> Self {
        self.reentrant = true;
        self
    }

    /// A shared call that comes back on a call chain already waiting in this
    /// activation (A -> B -> A) runs at once instead of failing as a
    /// deadlock, provided the waiting turn is shared too.
    pub const fn call_chain_reentrancy(mut self) -> Self {
        self.call_chain_reentrancy = true;
        self
    }

    /// Several activations of one id per silo, up to `max_local` (at least
    /// 1), created under load and collected when idle. For stateless work.
    pub const fn stateless_worker(mut self, max_local: usize) -> Self {
        self.stateless_worker = Some(if max_local == 0 { 1 } else { max_local });
        self
    }

    /// Collect activations of this type after this much idle time instead
    /// of the silo's default.
    pub const fn idle_timeout(mut self, age: Duration) -> Self {
        self.idle_timeout = Some(age);
        self
    }

    /// Never collect activations of this type for idleness.
    pub const fn keep_alive(mut self) -> Self {
        self.keep_alive = true;
        self
    }
}
