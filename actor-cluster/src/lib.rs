//! # actor-cluster: silos joined into a cluster
//!
//! A single [`actor_core::Silo`] runs grains in one process. This crate
//! joins silos into a **cluster**: each grain then lives on exactly one
//! silo of the cluster at a time, and a typed reference reaches it from
//! any silo, or from outside through a [`ClusterClient`], with deadlines,
//! request context and deadlock detection intact across the wire.
//!
//! What it does:
//!
//! - **Membership**: silos join a shared [`MembershipTable`]
//!   ([`SqlMembership`] on SQLite or PostgreSQL, [`InMemoryMembership`] in
//!   one process), probe each other, and declare silos that stop answering
//!   dead by compare-and-set on the table.
//! - **Strong single activation**: a grain directory, partitioned over the
//!   active silos, decides where each grain runs; a grain is never live on
//!   two silos, also while silos join, die, hang or are cut off.
//! - **Placement** per grain type: [`HashPlacement`] (the default),
//!   [`RandomPlacement`], [`PreferLocalPlacement`],
//!   [`ActivationCountPlacement`], or your own [`Placement`].
//! - **Silo links**: calls between silos over one long-lived gRPC stream
//!   per pair, batched, over TCP or any byte-stream transport
//!   ([`LinkListener`], [`Connector`]).
//! - **An external client**, [`ClusterClient`], that learns the gateways
//!   from the cluster and fails over when its gateway dies.
//! - **Cluster stats** for tools such as the dashboard ([`ClusterView`]).
//! - **Shutdown on signals** for binaries that host a silo
//!   ([`ShutdownSignals`]).
//!
//! What it does not do: run grains (that is actor-core's [`Silo`], which
//! a [`ClusterSilo`] wraps), store grain state or reminders
//! (actor-persistence), or discover silos other than through the
//! membership table. Mutual TLS on every connection is opt-in
//! ([`TlsConfig`], [`ClusterConfig::with_tls`]), and secrets come from a
//! [`SecretProvider`]: see `docs/security.md`.
//!
//! How it works (the membership protocol, the directory's fenced
//! registration, "not here" and retries) is written down in
//! `docs/cluster-protocol.md` at the root of the repository.
//!
//! [`Silo`]: actor_core::Silo
//!
//! ## A tour
//!
//! Two silos join an in-memory membership table on loopback, and a client
//! outside the cluster calls a grain through either of them:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use actor_cluster::prelude::*;
//! use actor_core::prelude::*;
//!
//! #[derive(Default)]
//! pub struct Counter {
//!     value: u64,
//! }
//!
//! impl Grain for Counter {
//!     const TYPE_NAME: &'static str = "counter";
//! }
//!
//! #[grain_methods]
//! impl Counter {
//!     /// Adds `n`; answers the new value and the silo that ran the call.
//!     pub async fn add(&mut self, n: u64, ctx: &GrainContext<Self>) -> (u64, String) {
//!         self.value += n;
//!         (self.value, ctx.silo().name().to_owned())
//!     }
//! }
//!
//! /// Starts a silo named `name` on a free loopback port, as a member of `table`.
//! async fn start(name: &str, table: &Arc<dyn MembershipTable>) -> Result<ClusterSilo, BoxError> {
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//!     let silo = Silo::builder().name(name).grain::<Counter>();
//!     // `ClusterConfig::fast()` probes often, for tests; production uses `default()`.
//!     Ok(ClusterSilo::start(silo, listener, table.clone(), ClusterConfig::fast()).await?)
//! }
//! type BoxError = Box<dyn std::error::Error>;
//!
//! # fn main() -> Result<(), BoxError> {
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! # tokio::time::timeout(Duration::from_secs(30), async {
//! // One table for the whole cluster: a SQLite file or PostgreSQL across processes.
//! let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
//! let a = start("a", &table).await?;
//! let b = start("b", &table).await?;
//! while a.active_members().len() < 2 || b.active_members().len() < 2 {
//!     tokio::time::sleep(Duration::from_millis(20)).await; // both see both
//! }
//!
//! // From outside: one gateway is enough, the client learns the others.
//! let client = ClusterClient::connect(vec![a.address().endpoint.clone()], Duration::from_secs(1)).await?;
//! let counter = client.get_grain::<Counter>("visits");
//! let (value, silo) = counter.add(2).await?;
//! assert_eq!(value, 2);
//! assert!(silo == "a" || silo == "b");
//! // Same grain, same activation, wherever the call enters.
//! assert_eq!(a.silo().get_grain::<Counter>("visits").add(3).await?.0, 5);
//!
//! // Leave gracefully: the table says `Dead`, the grains are deactivated.
//! b.leave().await?;
//! a.leave().await?;
//! # Ok::<_, BoxError>(())
//! # }).await?
//! # })
//! # }
//! ```
//!
//! A silo in a binary of its own stops on Ctrl-C or SIGTERM with
//! [`ShutdownSignals`]; `examples/local-cluster` runs three silo
//! processes on a SQLite table, and actor-testkit's `TestCluster` starts
//! N silos in one test.
//!
//! ## Where things are
//!
//! - [`ClusterSilo`], [`ClusterConfig`]: a silo as a cluster member, and
//!   its timings, placements and limits.
//! - [`ClusterClient`]: calls from outside the cluster.
//! - [`MembershipTable`] and its rows ([`MembershipEntry`],
//!   [`SiloAddress`], [`SiloStatus`], ...): the shared record of silos; to
//!   write a table of your own, pass the contract tests in
//!   `actor-cluster/tests/membership_contract.rs`.
//! - [`Placement`] and the built-in strategies, set per grain type on
//!   [`ClusterConfig::placement`].
//! - [`LinkListener`], [`Connector`], [`ConnectionLimits`]: transports and
//!   their limits.
//! - [`Link::connect`] (with [`LinkOptions`]), [`LinkService::serve`] and
//!   [`StaticRouter`], the test router: the silo link on its own, over a
//!   fixed list of silos, without membership, directory or fence (for
//!   benchmarks and tests of the link).
//! - [`prelude`]: the names a program that hosts or calls a cluster uses.
//!
//! ## Feature flags
//!
//! - `sqlite` (default): [`SqlMembership`] on a SQLite file (`sqlite://...`).
//! - `postgres`: [`SqlMembership`] on PostgreSQL (`postgres://...`).
//!
//! A URL whose feature is off is refused with [`Error::Config`] naming it.

mod authorization;
mod client;
mod cluster;
mod directory;
mod error;
mod fence;
mod hash;
mod link;
mod membership;
mod memory;
mod placement;
mod request_limits;
mod router;
mod secrets;
mod signal;
mod sql;
mod stats;
mod tls;
mod transport;
mod wire;

pub use authorization::RoleAuthorization;
pub use client::ClusterClient;
pub use cluster::{ClusterConfig, ClusterSilo, WallClock};
pub use error::{Error, Result};
pub use link::{DEFAULT_MAX_CALLS_IN_FLIGHT, DEFAULT_MAX_FRAME, Link, LinkOptions, LinkService};
pub use membership::{
    MembershipEntry, MembershipSnapshot, MembershipTable, RowEtag, SiloAddress, SiloStatus,
    Suspicion, TableVersion,
};
pub use memory::InMemoryMembership;
pub use placement::{
    ActivationCountPlacement, Candidate, HashPlacement, Placement, PlacementContext, Placements,
    PreferLocalPlacement, RandomPlacement,
};
pub use router::StaticRouter;
pub use secrets::{
    CommandSecrets, EnvSecrets, FileSecrets, Secret, SecretProvider, read_private_file,
    url_with_password,
};
pub use signal::{ShutdownSignals, Signal, shutdown_signal, stdin_closed};
pub use sql::SqlMembership;
pub use stats::{ClusterView, ProcessStats, SiloReport, StatsExtras};
pub use tls::TlsConfig;
pub use transport::{BoxedIo, ConnectionLimits, Connector, LinkIo, LinkListener, TcpConnector};

/// The names a program that hosts or calls a cluster uses:
/// `use actor_cluster::prelude::*;` (beside `actor_core::prelude::*`).
pub mod prelude {
    pub use crate::{
        ClusterClient, ClusterConfig, ClusterSilo, InMemoryMembership, MembershipTable,
        ShutdownSignals, SiloStatus, SqlMembership,
    };
}

/// Plumbing other crates of this workspace (the testkit, the dashboard,
/// benchmarks, tests) reach into. Not part of the API: it changes without
/// notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::hash::rendezvous_owner;
    pub use crate::link::{CallReply, NotSent};
    pub use crate::membership::now_millis;
}
