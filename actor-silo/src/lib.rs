//! The standalone silo binary: a silo configured by file and environment.
//!
//! Work in progress (wave 2): see the open issue for this crate.
