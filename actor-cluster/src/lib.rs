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
//! hashing: typed references then reach grains on any silo, with deadlock
//! detection, deadlines and request context intact across the wire.
//!
//! [`ClusterSilo`] makes a silo a member: it joins the table, serves its
//! link, heartbeats, probes its peers, votes on silos that miss probes and
//! declares them dead by compare-and-set, keeps its router's member list
//! equal to the active silos, and stops serving if it reads itself dead.
//! An unreachable table means no joins and no deaths. Grains of a dead
//! silo are placed on the survivors at their next call.
//!
//! **Single activation is fenced, not eventual.** A grain lives on its
//! owner by rendezvous hashing over the active silos, and a silo activates
//! a grain only when (1) every active silo reports (in its probe replies)
//! that it has applied the current membership view, which it does only
//! after deactivating the grains it no longer owns; (2) the lease of every
//! silo declared dead has run out; (3) its own lease is valid: a silo that
//! cannot read the table for `lease` stops serving and deactivates its
//! grains, and the others wait twice that long after declaring a silo dead
//! before activating its grains. Calls for a grain in transit wait (within
//! their deadline) instead of activating it twice; an oracle test checks
//! that no grain is ever live on two silos while a silo joins under load or
//! is cut off from everyone.
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
//! Still to come (see the design map): a directory with registration by
//! compare-and-set (so placement other than hashing — prefer-local,
//! activation-count, user-defined — can keep the same guarantee), W3C trace
//! context across silos, and mutual TLS.
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

mod client;
mod cluster;
mod error;
mod link;
mod membership;
mod memory;
mod router;
mod sql;
mod transport;

pub use client::ClusterClient;
pub use cluster::{ClusterConfig, ClusterSilo, WallClock};
pub use error::{Error, Result};
pub use link::{
    BatchStream, DEFAULT_MAX_FRAME, Link, LinkService, Prober, fetch_gateways, fetch_gateways_via,
    serve, serve_on, serve_service,
};
pub use membership::{
    MembershipEntry, MembershipSnapshot, MembershipTable, RowEtag, SiloAddress, SiloStatus,
    Suspicion, TableVersion, now_millis,
};
pub use memory::InMemoryMembership;
pub use router::{StaticRouter, StaticRouting, rendezvous_owner, stable_hash};
pub use sql::SqlMembership;
pub use transport::{BoxedIo, Connector, LinkIo, LinkListener, TcpConnector};
