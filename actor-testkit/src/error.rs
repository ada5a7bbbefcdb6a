//! The testkit's error: what went wrong starting, stopping or settling a
//! test cluster.

/// Why a test cluster operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum TestClusterError {
    /// A silo could not start or join.
    Start {
        /// The silo.
        silo: String,
        /// Why.
        reason: String,
    },
    /// The client could not connect.
    Client(String),
    /// The cluster did not settle in time.
    Unstable(String),
    /// No silo with that index, or it is not running.
    NoSuchSilo(usize),
}

impl std::fmt::Display for TestClusterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TestClusterError::Start { silo, reason } => {
                write!(f, "silo {silo} did not start: {reason}")
            }
            TestClusterError::Client(e) => write!(f, "the test client did not connect: {e}"),
            TestClusterError::Unstable(e) => write!(f, "the cluster did not settle: {e}"),
            TestClusterError::NoSuchSilo(i) => write!(f, "no running silo #{i}"),
        }
    }
}

impl std::error::Error for TestClusterError {}

/// `Result` with [`TestClusterError`].
pub type Result<T, E = TestClusterError> = std::result::Result<T, E>;
