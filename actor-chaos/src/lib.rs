//! A chaos harness over real silo processes: kill, pause, restart, partition, with oracles and figures.
//!
//! Work in progress (wave 2): see the open issue for this crate.
