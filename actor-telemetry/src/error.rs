//! The crate's error type.

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The OTLP exporter needs a tokio runtime to build its gRPC channel.
    #[error("telemetry must be built inside a tokio runtime (the OTLP gRPC client runs on it)")]
    NoRuntime,
    /// The endpoint is not an `http://host[:port]` URL.
    #[error(
        "invalid OTLP endpoint {endpoint:?}: expected a plain gRPC URL such as http://127.0.0.1:4317 (TLS is not built in)"
    )]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
    },
    /// The exporter could not be built.
    #[error("cannot build the OTLP {signal} exporter: {message}")]
    Exporter {
        /// `traces` or `metrics`.
        signal: &'static str,
        /// The exporter's own message.
        message: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
