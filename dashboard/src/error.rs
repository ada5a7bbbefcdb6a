//! The dashboard's error type.

/// What can go wrong when starting the dashboard.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is not usable (say, a public address without an
    /// access token).
    #[error("invalid dashboard configuration: {0}")]
    Config(String),
    /// The listening address could not be bound.
    #[error(
        "cannot serve the dashboard on {addr}: {source}; pick another port with DashboardConfig::bind"
    )]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

/// The dashboard's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
