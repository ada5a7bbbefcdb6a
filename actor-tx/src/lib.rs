//! ACID transactions across actor-core grains: transactional state, two-phase commit, recovery.
//!
//! Work in progress (wave 2): see the open issue for this crate.
