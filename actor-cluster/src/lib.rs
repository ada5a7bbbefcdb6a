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
//! Still to come in this crate (see the design map): failure detection by
//! direct probes and suspicion votes driving the membership table, the
//! grain directory with strong single activation (registration by
//! compare-and-set, fenced ownership) replacing the fixed silo list, the
//! other placement strategies, and the external `ClusterClient`.
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

mod error;
mod link;
mod membership;
mod memory;
mod router;
mod sql;

pub use error::{Error, Result};
pub use link::{BatchStream, DEFAULT_MAX_FRAME, Link, LinkService, serve};
pub use membership::{
    MembershipEntry, MembershipSnapshot, MembershipTable, RowEtag, SiloAddress, SiloStatus,
    Suspicion, TableVersion, now_millis,
};
pub use memory::InMemoryMembership;
pub use router::{StaticRouter, StaticRouting, rendezvous_owner, stable_hash};
pub use sql::SqlMembership;
