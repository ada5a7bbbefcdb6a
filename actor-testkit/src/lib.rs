//! # actor-testkit: testing grains and clusters
//!
//! Everything a test needs beyond a single silo:
//!
//! - [`TestCluster`]: N silos (default 2) of one cluster in this process,
//!   a [`ClusterClient`](actor_cluster::ClusterClient), an in-memory
//!   membership table and memory storage, over in-memory pipes
//!   ([`Transport::Memory`], fast) or real loopback gRPC
//!   ([`Transport::Loopback`]). Start, stop, kill and restart silos, wait
//!   until the cluster settles, deactivate every grain, count activations.
//! - **Fault injection**: partitions between chosen silos (both ways or one
//!   way) and link rules that delay or drop messages ([`Network`]); a
//!   membership table and a storage provider that fail, report conflicts
//!   or stall on demand ([`FaultSwitch`], [`FaultyMembership`],
//!   [`FaultyStorage`]).
//! - **Oracles** that say whether a run kept the guarantees:
//!   [`ActivationOracle`] (single activation), [`CallHistory`] (every
//!   acknowledged call ran exactly once), [`WriteHistory`] (no
//!   acknowledged write lost).
//! - **Deterministic simulation** ([`sim`]): the same silos, links and
//!   membership protocol under turmoil's simulated network and clock, with
//!   a nemesis (kills, restarts, partitions, held messages) over many
//!   seeds; a failing seed replays exactly. [`sim::Simulation`] runs
//!   **your** grain types and workload there, with the oracles and
//!   invariants of your own (see the example in [`sim`] and
//!   `docs/testing.md`).
//!
//! What it is not: a mock of the runtime. The silos, the membership agent,
//! the fenced router and the gRPC link are the production code; only the
//! byte streams and the table and storage services are doubles.
//!
//! ```
//! use std::time::Duration;
//! use actor_core::prelude::*;
//! use actor_testkit::TestCluster;
//!
//! #[derive(Default)]
//! struct Counter(u64);
//! impl Grain for Counter {
//!     const TYPE_NAME: &'static str = "counter";
//! }
//! #[grain_methods]
//! impl Counter {
//!     pub async fn add(&mut self, n: u64) -> u64 {
//!         self.0 += n;
//!         self.0
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut cluster = TestCluster::builder()
//!     .configure(|_, silo| silo.grain::<Counter>())
//!     .build()
//!     .await?;
//! let counter = cluster.get_grain::<Counter>("a");
//! assert_eq!(counter.add(2).await?, 2);
//! // Kill whichever silo holds it: the grain comes back elsewhere, empty.
//! let holder = (0..2).find(|i| cluster.activation_counts()[*i] == 1).unwrap();
//! cluster.kill_silo(holder)?;
//! cluster.wait_until_stable(Duration::from_secs(10)).await?;
//! assert_eq!(counter.add(1).await?, 1);
//! # Ok(()) }
//! ```

/// docs/testing.md, whose Rust examples are compiled as doctests so that
/// they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/testing.md")]
struct TestingGuideDoctests;

mod cluster;
mod error;
mod faults;
mod network;
mod oracle;
pub mod serializability;
pub mod sim;
mod stream_history;

pub use cluster::{TestCluster, TestClusterBuilder};
pub use error::{Result, TestClusterError};
pub use faults::{FaultMode, FaultSwitch, FaultyMembership, FaultyStorage};
pub use network::{LinkAction, LinkRule, Network, Transport};
pub use oracle::{
    ActivationEvent, ActivationOracle, CallHistory, CallOutcome, DuplicateActivation,
    HistoryViolation, ReadStart, WriteHistory, WriteViolation,
};
pub use stream_history::{StreamHistory, StreamViolation};
