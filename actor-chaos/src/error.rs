//! The one error type of the harness.

/// Why a chaos run could not be set up or carried out (a failed oracle is
/// not an error: it is in the [`Report`](crate::Report)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A command-line option or configuration value is wrong.
    #[error("{0}")]
    Usage(String),
    /// PostgreSQL cannot be reached.
    #[error(
        "PostgreSQL at {url}: {source}; start it (the harness needs it for membership and storage) or pass --database-url"
    )]
    Database {
        /// The URL (no password).
        url: String,
        /// Why.
        source: sqlx::Error,
    },
    /// The membership table could not be read.
    #[error("membership table: {0}")]
    Membership(#[from] actor_cluster::Error),
    /// A network namespace, veth or bridge command failed.
    #[error("network setup: `{command}` failed: {message}")]
    Network {
        /// The command.
        command: String,
        /// Its stderr or the spawn error.
        message: String,
    },
    /// A silo process could not be started or did not become ready.
    #[error("silo {name}: {message}")]
    Silo {
        /// The silo's name.
        name: String,
        /// What happened (with the tail of its stderr).
        message: String,
    },
    /// A file of the run could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No cluster client could connect.
    #[error("cluster client: {0}")]
    Client(String),
}

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
