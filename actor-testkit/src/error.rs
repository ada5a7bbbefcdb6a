//! The testkit's error: what went wrong starting, stopping or settling a
//! test cluster.

/// Why a test cluster operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestClusterError {
    /// A silo could not start or join.
    #[error("silo {silo} did not start: {reason}")]
    Start {
        /// The silo.
        silo: String,
        /// Why.
        reason: String,
    },
    /// The client could not connect.
    #[error("the test client did not connect: {0}")]
    Client(String),
    /// The cluster did not settle in time.
    #[error(
        "the cluster did not settle: {0}; on a loaded machine give it longer (TestClusterBuilder::settle_within) or look for a silo that keeps failing"
    )]
    Unstable(String),
    /// No silo with that index, or it is not running.
    #[error(
        "no running silo #{0}; silos are numbered from 0 in start order, and a killed one stays stopped until restarted"
    )]
    NoSuchSilo(usize),
}

/// `Result` with [`TestClusterError`].
pub type Result<T, E = TestClusterError> = std::result::Result<T, E>;
