//! # Course exercise 14: a call cycle between grains
//!
//! **The original** (MicrosoftOrleansDeadlock) has grain A call grain B,
//! and B call A back. Orleans grains are not reentrant by default: A's turn
//! is still waiting for B's answer, so B's call to A queues behind that
//! turn, and each grain waits on the other until the 30 s response timeout
//! ends the call with a `TimeoutException`. The lesson: a call cycle through
//! non-reentrant grains deadlocks; you break the cycle or make the grain
//! reentrant (`[Reentrant]`, `[AlwaysInterleave]`, call-chain reentrancy).
//!
//! **The grain version** builds the same cycle from three grain types
//! ([`GrainA`], [`GrainB`], [`GrainC`]) that pass a [`Visit`] along a route.
//! Their handlers are `&self` turns with the default [`Interleave::Never`],
//! which run one at a time exactly like a plain Orleans grain method. The
//! runtime tracks the call chain, so when B calls A back while A's turn
//! waits on B it does not queue the call: it fails it at once with
//! [`Error::Deadlock`], whose message names the cycle (`a/1 -> b/1 ->
//! a/1`), in well under a millisecond, while the call
//! deadline stays the default 30 s. B passes the error back in its reply, so
//! the client sees it too. Build the silo with [`Reentrancy::CallChain`]
//! instead and the same grains get
//! [`GrainOptions::call_chain_reentrancy`]: the callback runs inside the
//! waiting chain and the cycle completes. The three-grain cycle A -> B -> C
//! -> A behaves the same way.
//!
//! Only shared (`&self`) turns can be re-entered: an exclusive `&mut self`
//! turn holds the grain's state for its whole length (Rust's borrow rules),
//! so a cycle back into one always fails as a deadlock.

use actor_core::Error;
use actor_core::prelude::*;
use serde::{Deserialize, Serialize};

/// One stop of a route: the grain to visit next, by type and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hop {
    /// The [`GrainA`] with this key.
    A(i64),
    /// The [`GrainB`] with this key.
    B(i64),
    /// The [`GrainC`] with this key.
    C(i64),
}

/// What a visit answers: the grains visited, in order, or the runtime error
/// that stopped the route somewhere along it.
pub type Trail = Result<Vec<GrainId>, Error>;

/// Visit the receiving grain, then the rest of `route` in order, each grain
/// calling the next and waiting for its answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Visit {
    /// The grains still to visit after the receiver.
    pub route: Vec<Hop>,
}

impl Message for Visit {
    type Reply = Trail;
    const NAME: &'static str = "visit";
    fn is_error(reply: &Trail) -> bool {
        reply.is_err()
    }
}

/// Grain A of the cycle (type name `a`).
#[derive(Debug, Default)]
pub struct GrainA;

/// Grain B of the cycle (type name `b`).
#[derive(Debug, Default)]
pub struct GrainB;

/// Grain C of the three-grain cycle (type name `c`).
#[derive(Debug, Default)]
pub struct GrainC;

impl Grain for GrainA {
    const TYPE_NAME: &'static str = "a";
}
impl GrainMethods for GrainA {
    fn register(m: &mut Methods<Self>) {
        m.add::<Visit, _>();
    }
}
impl Grain for GrainB {
    const TYPE_NAME: &'static str = "b";
}
impl GrainMethods for GrainB {
    fn register(m: &mut Methods<Self>) {
        m.add::<Visit, _>();
    }
}
impl Grain for GrainC {
    const TYPE_NAME: &'static str = "c";
}

impl GrainMethods for GrainC {
    fn register(m: &mut Methods<Self>) {
        m.add::<Visit, _>();
    }
}

// Shared turns with the default `Interleave::Never`: one at a time, like a
// non-reentrant Orleans grain, but re-enterable along their own call chain
// when the type has call-chain reentrancy.
impl SharedHandler<Visit> for GrainA {
    async fn handle(&self, msg: Visit, ctx: &GrainContext<Self>) -> Trail {
        visit(ctx, msg.route).await
    }
}
impl SharedHandler<Visit> for GrainB {
    async fn handle(&self, msg: Visit, ctx: &GrainContext<Self>) -> Trail {
        visit(ctx, msg.route).await
    }
}
impl SharedHandler<Visit> for GrainC {
    async fn handle(&self, msg: Visit, ctx: &GrainContext<Self>) -> Trail {
        visit(ctx, msg.route).await
    }
}

/// Records this grain, calls the next hop and waits for the rest of the
/// trail.
async fn visit<G: Grain>(ctx: &GrainContext<G>, route: Vec<Hop>) -> Trail {
    let mut trail = vec![ctx.id().clone()];
    let mut rest = route.into_iter();
    let Some(next) = rest.next() else {
        return Ok(trail);
    };
    let msg = Visit {
        route: rest.collect(),
    };
    let reply = match next {
        Hop::A(key) => ctx.get_grain::<GrainA>(key).ask(msg).await,
        Hop::B(key) => ctx.get_grain::<GrainB>(key).ask(msg).await,
        Hop::C(key) => ctx.get_grain::<GrainC>(key).ask(msg).await,
    };
    // The outer `?` is the runtime failing our own call (the deadlock shows
    // up here, at the call that closes the cycle); the inner one is an error
    // a grain further along passed back in its reply.
    trail.extend(reply??);
    Ok(trail)
}

/// How the silo treats a call that comes back along its own call chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reentrancy {
    /// The default, as in Orleans: one turn at a time. A call back into a
    /// grain whose turn waits on the chain fails with [`Error::Deadlock`].
    Off,
    /// [`GrainOptions::call_chain_reentrancy`] on the three types: the
    /// callback runs next to the waiting turn and the cycle completes.
    CallChain,
}

/// Starts a silo hosting the three grain types, with the default 30 s call
/// deadline and the given reentrancy.
pub async fn build_silo(reentrancy: Reentrancy) -> actor_core::Result<Silo> {
    let builder = Silo::builder()
        .name("deadlock")
        .grain::<GrainA>()
        .grain::<GrainB>()
        .grain::<GrainC>();
    let builder = match reentrancy {
        Reentrancy::Off => builder,
        Reentrancy::CallChain => {
            let options = GrainOptions::new().call_chain_reentrancy();
            builder
                .grain_options::<GrainA>(options.clone())
                .grain_options::<GrainB>(options.clone())
                .grain_options::<GrainC>(options)
        }
    };
    builder.start().await
}

/// Starts a route at `a/1` and returns its trail (or the error that stopped
/// it, whether the runtime raised it on this call or further along).
pub async fn run_route(silo: &Silo, route: Vec<Hop>) -> Trail {
    silo.get_grain::<GrainA>(1).ask(Visit { route }).await?
}

/// The exercise's cycle: `a/1 -> b/1 -> a/1`.
pub async fn two_grain_cycle(silo: &Silo) -> Trail {
    run_route(silo, vec![Hop::B(1), Hop::A(1)]).await
}

/// A longer cycle: `a/1 -> b/1 -> c/1 -> a/1`.
pub async fn three_grain_cycle(silo: &Silo) -> Trail {
    run_route(silo, vec![Hop::B(1), Hop::C(1), Hop::A(1)]).await
}

/// A chain without a cycle: `a/1 -> b/1 -> c/1`. Works in either mode.
pub async fn straight_chain(silo: &Silo) -> Trail {
    run_route(silo, vec![Hop::B(1), Hop::C(1)]).await
}

/// Formats a trail as `a/1 -> b/1 -> a/1`.
pub fn show_trail(trail: &[GrainId]) -> String {
    trail
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" -> ")
}
