//! The one error type of the silo binary: every way a configuration or a
//! start can fail, each with what to do about it.

use std::path::PathBuf;

/// Why a silo could not be configured or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file could not be read.
    #[error(
        "cannot read the configuration file {path}: {source}; pass an existing, readable file to --config"
    )]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML, or has a key of the wrong
    /// type or an unknown key.
    #[error("the configuration file {path} is not a valid silo configuration: {message}")]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line and column.
        message: String,
    },
    /// A value (from the file or the environment) is not usable.
    #[error("invalid configuration: {field}: {message}")]
    Invalid {
        /// The key (`listen`, `membership.url`, `SILO_LISTEN`, ...).
        field: String,
        /// What is wrong and what to write instead.
        message: String,
    },
    /// The command line is wrong.
    #[error("{0}; usage: silo --config FILE (or only environment variables: see the crate docs)")]
    Usage(String),
    /// An address could not be bound.
    #[error(
        "cannot listen on {addr} for the {what}: {source}; pick a free port or another address"
    )]
    Bind {
        /// The silo link, the health endpoints, ...
        what: &'static str,
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The membership table refused or could not be reached, or the silo
    /// could not join it.
    #[error("membership: {0}")]
    Cluster(#[from] actor_cluster::Error),
    /// A storage provider could not be opened.
    #[error("storage provider `{name}`: {source}")]
    Storage {
        /// The provider's name in the configuration.
        name: String,
        /// Why.
        source: actor_persistence::Error,
    },
    /// The dashboard could not be configured.
    #[error("dashboard: {0}")]
    Dashboard(#[from] dashboard::Error),
    /// The grain record file could not be opened.
    #[error("cannot open the grain record file {path}: {source}")]
    Record {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
