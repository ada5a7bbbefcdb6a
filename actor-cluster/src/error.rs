//! The one error type of actor-cluster.

/// A failure of the cluster layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The membership table could not be reached or answered with an error.
    /// Nothing was changed by the failed call: no join, no death.
    #[error(
        "membership table at {url} is unavailable: {source}; check that the database runs and the URL is right"
    )]
    TableUnavailable {
        /// The table's URL (without password).
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A row holds data this version cannot read.
    #[error(
        "membership row for {silo} is corrupt: {reason}; a silo of another version (or a hand edit) wrote it: run one version per cluster id, or delete the row"
    )]
    CorruptRow {
        /// The silo of the row.
        silo: String,
        /// What was wrong.
        reason: String,
    },
    /// A silo could not be reached over its link.
    #[error(
        "silo at {endpoint} is unavailable: {reason}; check that it runs and that this endpoint is its advertised address (a client can be given several gateways)"
    )]
    SiloUnavailable {
        /// The silo's link endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// A URL or option is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// `Result` with actor-cluster's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
