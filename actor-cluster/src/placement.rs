//! Placement: which silo activates a grain that has no activation yet.
//!
//! A strategy only proposes a silo; the grain directory decides (the
//! proposed silo registers the grain by compare-and-set, and a loser's
//! callers go to the winner). Strategies are pure functions of a
//! [`PlacementContext`] (the grain, the calling silo, the candidate silos
//! with their activation counts, and random numbers drawn by the caller),
//! so they are easy to test and to replace.

use std::collections::HashMap;
use std::sync::Arc;

use actor_core::{Grain, GrainId};

use crate::hash::rendezvous_owner;

/// One silo a grain may be placed on, with its last known activation
/// count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The silo's endpoint.
    pub endpoint: String,
    /// Its activation count as last reported (0 when unknown).
    pub activations: u64,
}

/// What a strategy knows when it places a grain.
#[derive(Debug, Clone, Copy)]
pub struct PlacementContext<'a> {
    /// The grain to place.
    pub grain: &'a GrainId,
    /// The endpoint of the silo asking (the caller's silo).
    pub local: &'a str,
    /// The active silos, sorted by endpoint, never empty.
    pub candidates: &'a [Candidate],
    /// Random numbers for strategies that draw.
    pub random: [u64; 2],
}

impl PlacementContext<'_> {
    /// The endpoint of candidate `i`, wrapped around.
    fn pick(&self, r: u64) -> &str {
        let i = usize::try_from(r % self.candidates.len() as u64).unwrap_or(0);
        &self.candidates[i].endpoint
    }
}

/// A placement strategy: proposes the endpoint (one of
/// `ctx.candidates`) of the silo that should activate `ctx.grain`.
///
/// An answer that is not a candidate is replaced by the hash-based choice.
///
/// ```
/// use actor_cluster::{Placement, PlacementContext};
///
/// /// Places every grain on the silo with the smallest endpoint.
/// struct First;
///
/// impl Placement for First {
///     fn place(&self, ctx: &PlacementContext<'_>) -> String {
///         ctx.candidates[0].endpoint.clone()
///     }
/// }
/// ```
pub trait Placement: Send + Sync + 'static {
    /// The endpoint of the chosen silo.
    fn place(&self, ctx: &PlacementContext<'_>) -> String;
}

/// Uniformly random among the active silos (Orleans' historical default).
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomPlacement;

impl Placement for RandomPlacement {
    fn place(&self, ctx: &PlacementContext<'_>) -> String {
        ctx.pick(ctx.random[0]).to_owned()
    }
}

/// The calling silo when it is active, else random: for grains that
/// mostly talk to the grain or client that first called them.
#[derive(Debug, Clone, Copy, Default)]
pub struct PreferLocalPlacement;

impl Placement for PreferLocalPlacement {
    fn place(&self, ctx: &PlacementContext<'_>) -> String {
        if ctx.candidates.iter().any(|c| c.endpoint == ctx.local) {
            ctx.local.to_owned()
        } else {
            RandomPlacement.place(ctx)
        }
    }
}

/// The silo rendezvous hashing picks for the grain id: every silo agrees
/// without asking anyone, and it is the grain's directory partition owner,
/// so registration needs no extra hop. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct HashPlacement;

impl Placement for HashPlacement {
    fn place(&self, ctx: &PlacementContext<'_>) -> String {
        let endpoints: Vec<String> = ctx.candidates.iter().map(|c| c.endpoint.clone()).collect();
        rendezvous_owner(ctx.grain, &endpoints)
            .unwrap_or(ctx.local)
            .to_owned()
    }
}

/// Power of two choices: of two distinct silos drawn at random, the one
/// with fewer activations (the first drawn on a tie). Keeps load even
/// with stale counts, where "least loaded" would stampede one silo.
#[derive(Debug, Clone, Copy, Default)]
pub struct ActivationCountPlacement;

impl Placement for ActivationCountPlacement {
    fn place(&self, ctx: &PlacementContext<'_>) -> String {
        let n = ctx.candidates.len() as u64;
        if n == 1 {
            return ctx.candidates[0].endpoint.clone();
        }
        let a = ctx.random[0] % n;
        // A second index different from the first.
        let b = (a + 1 + ctx.random[1] % (n - 1)) % n;
        let (a, b) = (
            &ctx.candidates[usize::try_from(a).unwrap_or(0)],
            &ctx.candidates[usize::try_from(b).unwrap_or(0)],
        );
        if b.activations < a.activations {
            b.endpoint.clone()
        } else {
            a.endpoint.clone()
        }
    }
}

/// The placement strategy of each grain type, set on
/// [`ClusterConfig`](crate::ClusterConfig).
///
/// ```
/// use actor_cluster::{ActivationCountPlacement, ClusterConfig, PreferLocalPlacement};
/// # use actor_core::prelude::*;
/// # #[derive(Default)] struct Session;
/// # impl Grain for Session { const TYPE_NAME: &'static str = "session"; }
///
/// let config = ClusterConfig::default()
///     // Sessions live next to the front end that opened them...
///     .with_placement::<Session>(PreferLocalPlacement)
///     // ...and a type known only by name is spread by load.
///     .with_placement_named("report", ActivationCountPlacement);
/// assert!(format!("{:?}", config.placement).contains("session"));
/// ```
///
/// The default is [`HashPlacement`]: it spreads grains evenly without
/// shared state, every silo (and [`ClusterSilo::owner_of`](crate::ClusterSilo::owner_of))
/// can tell where a new grain will go, and the chosen silo owns the
/// grain's directory partition, so a first activation costs one hop less
/// than with any other strategy.
#[derive(Clone)]
pub struct Placements {
    default: Strategy,
    per_type: HashMap<String, Strategy>,
}

/// A strategy, and whether it is [`HashPlacement`] (whose grains the
/// partition owner may register without being asked: the fast path).
#[derive(Clone)]
struct Strategy {
    placement: Arc<dyn Placement>,
    hash: bool,
}

impl Strategy {
    fn new<P: Placement>(p: P) -> Self {
        Strategy {
            placement: Arc::new(p),
            hash: std::any::TypeId::of::<P>() == std::any::TypeId::of::<HashPlacement>(),
        }
    }
}

impl std::fmt::Debug for Placements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut types: Vec<&String> = self.per_type.keys().collect();
        types.sort();
        f.debug_struct("Placements")
            .field("per_type", &types)
            .finish_non_exhaustive()
    }
}

impl Default for Placements {
    fn default() -> Self {
        Placements {
            default: Strategy::new(HashPlacement),
            per_type: HashMap::new(),
        }
    }
}

impl Placements {
    /// Places grains of the type named `type_name` with `strategy`.
    pub fn set(&mut self, type_name: impl Into<String>, strategy: impl Placement) {
        self.per_type
            .insert(type_name.into(), Strategy::new(strategy));
    }

    /// Places grains of every type without its own strategy with
    /// `strategy`.
    pub fn set_default(&mut self, strategy: impl Placement) {
        self.default = Strategy::new(strategy);
    }

    /// The strategy for grains of the type named `type_name`.
    pub fn for_type(&self, type_name: &str) -> &dyn Placement {
        &*self.strategy(type_name).placement
    }

    fn strategy(&self, type_name: &str) -> &Strategy {
        self.per_type.get(type_name).unwrap_or(&self.default)
    }

    /// Whether grains of `type_name` are placed by [`HashPlacement`].
    pub(crate) fn is_hash(&self, type_name: &str) -> bool {
        self.strategy(type_name).hash
    }

    /// Runs the strategy of `ctx.grain`'s type; an answer that is not a
    /// candidate falls back to hash placement.
    pub fn place(&self, ctx: &PlacementContext<'_>) -> String {
        let chosen = self.for_type(ctx.grain.grain_type.as_str()).place(ctx);
        if ctx.candidates.iter().any(|c| c.endpoint == chosen) {
            chosen
        } else {
            tracing::warn!(grain = %ctx.grain, %chosen, "placement chose a silo that is not active; using hash placement");
            HashPlacement.place(ctx)
        }
    }
}

impl crate::ClusterConfig {
    /// Places grains of type `G` with `strategy` (see [`Placements`]).
    pub fn with_placement<G: Grain>(mut self, strategy: impl Placement) -> Self {
        self.placement.set(G::TYPE_NAME, strategy);
        self
    }

    /// Places grains of the type named `type_name` with `strategy`.
    pub fn with_placement_named(
        mut self,
        type_name: impl Into<String>,
        strategy: impl Placement,
    ) -> Self {
        self.placement.set(type_name, strategy);
        self
    }

    /// Places grains of types without their own strategy with `strategy`
    /// (instead of [`HashPlacement`]).
    pub fn with_default_placement(mut self, strategy: impl Placement) -> Self {
        self.placement.set_default(strategy);
        self
    }
}

/// A small random number source (splitmix64) for placement draws: no
/// dependency, seeded per silo.
#[derive(Debug)]
pub(crate) struct Draw(std::sync::atomic::AtomicU64);

impl Draw {
    pub(crate) fn seeded(seed: u64) -> Self {
        Draw(std::sync::atomic::AtomicU64::new(seed))
    }

    pub(crate) fn next(&self) -> u64 {
        let z = self
            .0
            .fetch_add(0x9e37_79b9_7f4a_7c15, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
