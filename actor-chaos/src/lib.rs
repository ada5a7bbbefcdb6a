//! # actor-chaos: faults on real silo processes, with oracles and figures
//!
//! The harness starts N `silo` processes (the standalone binary of
//! `actor-silo`, default 3, up to 5), each in a Linux network namespace of
//! its own with its own address on a bridge, on PostgreSQL membership and
//! storage (a fresh cluster id and state tables per run). A driver of
//! external [`ClusterClient`](actor_cluster::ClusterClient)s appends
//! unique operation ids to K ledger grains (the silo's built-in
//! [`Ledger`](actor_silo::Ledger)); each append is acknowledged only once
//! it is stored, and each silo records every activation and turn (silo,
//! activation id, start, end). A seeded nemesis then, one fault at a
//! time:
//!
//! - `kill`: `kill -9` a silo, keep it down, restart it (new generation);
//! - `pause`: SIGSTOP a silo for longer than the lease, then SIGCONT;
//! - `partition`: take the silo's link down (cut from every silo, the
//!   clients and the database), then heal;
//! - `cpu-load`: spin two processes per CPU; nobody should be declared
//!   dead.
//!
//! A silo that exits by itself (it was declared dead) is restarted, as a
//! supervisor would.
//!
//! ## Oracles and figures
//!
//! At the end every silo leaves gracefully and the harness computes, and
//! prints one line each and writes to `report.json` in the output
//! directory ([`Report`]):
//!
//! - **duplicate activations**: two activations of one grain whose live
//!   intervals (load to the start of the last turn) overlap; must be 0
//!   (turns that started before their grain moved and ended after are
//!   counted apart as stragglers: their writes are fenced at the storage);
//! - **lost acknowledged writes**: acknowledged op ids missing from the
//!   ledgers read back from the database; must be 0;
//! - calls succeeded / failed / timed out per phase;
//! - from a kill (or pause, or cut) to the dead declaration, and to the
//!   first acknowledged call of each moved grain (p50/p99);
//! - false death declarations (under CPU load and overall);
//! - the recovery time after a partition heals.
//!
//! A failing run prints its seed, its schedule and the command that
//! replays it (`--seed`).
//!
//! ## Networks
//!
//! Namespaces need root and `ip` (iproute2; installed with apt-get when
//! missing and root). Where they cannot be made, the run falls back to
//! loopback with a TCP proxy in front of each silo (a partition then
//! cuts only the connections into the silo) and says so in its report
//! (`network`, `network_fallback`).
//!
//! ## Running it
//!
//! ```text
//! cargo run -p actor-chaos -- --silos 5 --grains 10000 --count 12 --seed 7
//! ```
//!
//! `cargo test -p actor-chaos` runs a bounded form (3 silos, a few
//! hundred grains, a kill, a pause and a partition). See `docs/chaos.md`
//! for the figures of the long run.

mod driver;
mod error;
mod harness;
mod net;
mod oracle;
mod report;
mod rng;
mod schedule;
mod silo;

pub use driver::{Driver, Outcome, PhaseCalls, grain_key};
pub use error::{Error, Result};
pub use harness::{ChaosConfig, run};
pub use net::{Network, NetworkMode, Proxy, SiloNet};
pub use oracle::{
    Duplicate, Interval, LostWrite, duplicates, intervals, lost_writes, percentile, stored_ledgers,
    stragglers,
};
pub use report::{FaultFigures, Report, Spread};
pub use rng::Rng;
pub use schedule::{Fault, FaultKind, generate as generate_schedule};
pub use silo::SiloProc;
