//! # actor-cluster: silos joined into a cluster
//!
//! This crate turns single silos into a cluster. What is here today is the
//! foundation of membership: the **membership table**, the shared record of
//! which silos exist, in which state, and who suspects whom, with
//! compare-and-set on a table version so that concurrent changes have
//! exactly one winner, as in Orleans' membership protocol. It comes in
//! three implementations behind one trait, [`MembershipTable`]:
//!
//! - [`SqlMembership`] on SQLite (a file; the embedded default, shareable by
//!   several local processes) and PostgreSQL (`postgres://...`);
//! - [`InMemoryMembership`], the fake for tests and the simulator.
//!
//! The **silo link** carries calls between silos: one long-lived gRPC
//! bidirectional stream per caller and callee ([`Link`], [`LinkService`],
//! [`serve`]), envelopes with call id, target, method, time left, call
//! chain, request context and the bincode payload, batched per write, with
//! a frame size limit. [`StaticRouter`] plugs it into actor-core's
//! `Router` seam over a fixed list of silos, placing grains by rendezvous
//! hashing (a test bed for the link; cluster silos route through the grain
//! directory below): typed references then reach grains on any silo, with
//! deadlock detection, deadlines and request context intact across the
//! wire.
//!
//! [`ClusterSilo`] makes a silo a member: it joins the table, serves its
//! link, heartbeats, probes its peers, votes on silos that miss probes and
//! declares them dead by compare-and-set, keeps its view equal to the
//! active silos, and stops serving if it reads itself dead. An unreachable
//! table means no joins and no deaths. Grains of a dead silo are placed on
//! the survivors at their next call.
//!
//! ## The grain directory and strong single activation
//!
//! Where a grain lives is recorded in a **grain directory**
//! (`GrainId -> silo endpoint + generation + registration id`),
//! partitioned over the active silos by rendezvous hashing: each grain
//! has a *partition owner*. A silo runs a grain only while it *hosts* it,
//! that is, it won the grain's registration at the owner. The protocol:
//!
//! 1. **Placement proposes, the directory decides.** A call for a grain
//!    with no known location goes to the silo its type's [`Placement`]
//!    picks ([`HashPlacement`] by default, or [`RandomPlacement`],
//!    [`PreferLocalPlacement`], [`ActivationCountPlacement`], your own;
//!    set per type on [`ClusterConfig`]). That silo registers itself at
//!    the partition owner by **compare-and-set**: the first writer wins,
//!    every later one gets the winner and sends its calls there. A loser
//!    never ran the grain, so nothing is undone and nothing is lost.
//!    Under hash placement the chosen silo *is* the owner, which registers
//!    the grain as it admits the first call: no extra hop.
//! 2. **Fenced registration.** An owner accepts a fresh registration only
//!    when (a) every active silo reports, in its probe replies, that it
//!    has applied the owner's membership view, (b) the leases of silos
//!    declared dead have run out (twice the lease after the declaration),
//!    (c) its own lease is valid (it read the table recently and saw itself
//!    active), and (d) the registering silo has the same view. Reading an
//!    existing winner needs no fence.
//! 3. **Claims before acks.** When the view changes, a silo first
//!    re-registers (*claims*) every grain it hosts whose partition moved
//!    at the new owner, which takes claims while its fence is closed; what
//!    it cannot claim within a lease it deactivates. Only then does it
//!    report the view applied, so by the time an owner's fence opens under
//!    a new view, every live activation of its partition is registered
//!    with it. Registrations in flight finish before a view change starts
//!    (a per-silo gate), so none slips between two views.
//! 4. **Dead and cut-off silos.** Entries naming a silo that is no longer
//!    active are void; the next registration replaces them, and the fence
//!    holds it until the dead silo's lease has run out. A silo that cannot
//!    read the table for a lease stops serving and deactivates its grains.
//! 5. **Cache and "not here".** Each silo caches other silos'
//!    registrations. A call sent by the cache goes on a *directed* stream;
//!    a silo that does not host the grain answers `Error::NotHere` without
//!    running it, and the caller drops the entry and routes again within
//!    the deadline. Calls that provably never left (the silo could not be
//!    reached, a registration not answered yet) are retried the same way;
//!    calls in flight to a silo whose link breaks, or that is declared dead
//!    while its connection hangs, fail at once with "silo unavailable".
//!
//! An activation stays where it was placed when silos join (as in
//! Orleans); [`ClusterSilo::owner_of`] tells where hash placement puts a
//! new grain. Oracle tests check that no grain is ever live on two silos
//! while silos join under load, die under load, hang, or are cut off.
//!
//! **Transports.** Links run over TCP by default; [`ClusterSilo::start_on`]
//! and [`ClusterClient::connect_via`] take any byte-stream transport (a
//! [`LinkListener`] and a [`Connector`]), which is how the testkit runs the
//! same link code over in-memory pipes and a simulated network.
//!
//! [`ClusterClient`] calls grains from outside the cluster with the same
//! typed references, through any silo as gateway; it learns the gateways
//! from the cluster and fails over when its gateway dies.
//!
//! Grains collected when idle leave the directory in two sweeps (one
//! lease apart): the silo stops hosting them, then removes their
//! registrations unless a call brought them back meanwhile.
//!
//! [`ClusterView`] (a silo extension every `ClusterSilo` has) gives tools
//! such as the dashboard the membership table and each peer's
//! [`SiloReport`] (metrics, process CPU and memory) over a small `SiloStats`
//! gRPC service served beside the link.
//!
//! Still to come (see the design map): mutual TLS.
//!
//! ```
//! use actor_cluster::{InMemoryMembership, MembershipEntry, MembershipTable, SiloAddress};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> actor_cluster::Result<()> {
//! let table = InMemoryMembership::new();
//! let seen = table.read_all().await?;
//! let me = MembershipEntry::joining(SiloAddress::starting_now("127.0.0.1:11111"), "silo-a");
//! // Join: wins only if nobody changed the table since `seen`.
//! assert!(table.insert(me.clone(), seen.version).await?);
//! assert!(!table.insert(me, seen.version).await?, "a stale version loses");
//! # Ok(()) }
//! ```
//!
//! ## Feature flags
//!
//! - `sqlite` (default): [`SqlMembership`] on a SQLite file (`sqlite://...`).
//! - `postgres`: [`SqlMembership`] on PostgreSQL (`postgres://...`).
//!
//! A URL whose feature is off is refused with [`Error::Config`] naming it.

mod client;
mod cluster;
mod directory;
mod error;
mod link;
mod membership;
mod memory;
mod placement;
mod router;
mod signal;
mod sql;
mod stats;
mod transport;
mod wire;

pub use client::ClusterClient;
pub use cluster::{ClusterConfig, ClusterSilo, WallClock};
pub use error::{Error, Result};
pub use link::{
    BatchStream, CallReply, DEFAULT_MAX_FRAME, Link, LinkService, NotSent, Prober, fetch_gateways,
    fetch_gateways_via, serve, serve_on, serve_service,
};
pub use membership::{
    MembershipEntry, MembershipSnapshot, MembershipTable, RowEtag, SiloAddress, SiloStatus,
    Suspicion, TableVersion, now_millis,
};
pub use memory::InMemoryMembership;
pub use placement::{
    ActivationCountPlacement, Candidate, HashPlacement, Placement, PlacementContext, Placements,
    PreferLocalPlacement, RandomPlacement,
};
pub use router::{StaticRouter, StaticRouting, grain_hash, rendezvous_owner, stable_hash};
pub use signal::{ShutdownSignals, Signal, shutdown_signal};
pub use sql::SqlMembership;
pub use stats::{ClusterView, ProcessStats, SiloReport, StatsExtras};
pub use transport::{BoxedIo, ConnectionLimits, Connector, LinkIo, LinkListener, TcpConnector};
