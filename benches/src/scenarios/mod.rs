//! The scenarios, by group. Each group is a module that turns a
//! [`Config`](crate::Config) into measured [`Scenario`]s; a group is a
//! module here and one line in [`crate::run`], reusing [`runner`] for the
//! repetition, medians, ratios and targets: `local` (one silo, no I/O),
//! `remote` (two silo processes on loopback, against raw tonic) and
//! `storage` (persisted writes, against raw sqlx).

pub(crate) mod local;
pub(crate) mod remote;
pub(crate) mod runner;
pub(crate) mod storage;
