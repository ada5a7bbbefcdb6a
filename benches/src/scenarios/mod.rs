//! The scenarios, by group. Each group is a module that turns a
//! [`Config`](crate::Config) into measured [`Scenario`]s; a new group
//! (remote calls across silos, persisted writes) is a new module here and
//! one line in [`crate::run`], reusing [`runner`] for the repetition,
//! medians, ratios and targets.

pub(crate) mod local;
pub(crate) mod runner;
