//! The silo link: calls between silos over one long-lived gRPC
//! bidirectional stream per caller and callee (tonic + prost).
//!
//! The caller's side ([`Link`]) numbers the request envelopes it sends and
//! matches reply envelopes to waiting calls by that number (never by a
//! call id, which may come from a peer); one sweeper task per link fails
//! calls whose deadline passes (no timer per call). The callee's side
//! ([`LinkService`]) queues each request on its grain with
//! `Silo::queue_encoded` as it arrives (no task per call: the stream's
//! task waits for the replies) and streams the replies back. Both
//! directions batch: whatever is queued when the stream is polled goes out
//! as one frame, so under load many calls share a write. Frames have a
//! size limit; a malformed or oversized frame ends that stream with a
//! logged error and fails its pending calls, and the silo goes on serving.
//!
//! One file per part: [`server`] (the callee's side, [`LinkService`]),
//! [`client`] (the caller's side, [`Link`]), [`sweeper`] (the waiting
//! calls and their deadlines), [`envelope`] (calls to and from protobuf
//! envelopes), [`batch_stream`] (one frame per poll), [`prober`]
//! (liveness probes) and [`gateways`] (the gateway list clients fetch).

mod batch_stream;
mod client;
mod envelope;
#[cfg(test)]
pub(crate) mod fuzz;
mod gateways;
pub(crate) mod log_limit;
mod pool;
mod prober;
mod server;
mod sweeper;

pub use client::{CallReply, Link, LinkOptions, NotSent};
pub(crate) use gateways::fetch_gateways;
pub(crate) use pool::LinkPool;
pub(crate) use prober::Prober;
pub use server::{DEFAULT_MAX_CALLS_IN_FLIGHT, LinkService};

#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
mod pb {
    tonic::include_proto!("grains.link.v1");
}

/// Default limit of one frame (a batch of envelopes), both ways.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;
/// How many envelopes one frame carries at most.
const MAX_BATCH: usize = 512;
/// Queue of envelopes waiting for the stream, per link direction.
const QUEUE: usize = 8192;
/// gRPC metadata key a caller sets on a stream whose calls it addressed by
/// the grain directory (see [`LinkOptions::directed`]).
const DIRECTED: &str = "grains-directed";

#[cfg(test)]
mod peer_tests;
