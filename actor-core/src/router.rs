//! The seam between a silo and a cluster: where a call goes when its grain
//! may live on another silo.
//!
//! actor-core itself only runs grains locally. A cluster crate installs a
//! [`Router`] with [`SiloBuilder::router`](crate::SiloBuilder::router);
//! typed references then send calls for grains placed elsewhere as
//! [`EncodedCall`]s (bincode payload plus the whole envelope: call id,
//! deadline, call chain, request context), and the receiving silo runs
//! them with [`Silo::invoke_encoded`](crate::Silo::invoke_encoded). The
//! same `GrainRef` type works for both.

use futures::future::BoxFuture;

use crate::envelope::EncodedCall;
use crate::error::Result;
use crate::id::GrainId;

/// Decides where grains live and carries calls to other silos.
pub trait Router: Send + Sync + 'static {
    /// Whether calls to `id` run on this silo without asking anyone: the
    /// fast path, with no serialization. Return `false` when unsure; the
    /// call then goes through [`invoke`](Router::invoke), which may bring it
    /// back here.
    fn is_local(&self, id: &GrainId) -> bool;

    /// Delivers a serialized call to the silo that hosts (or should
    /// activate) its grain and returns the encoded reply. For a one-way
    /// call the reply is empty once the call is handed over.
    fn invoke(&self, call: EncodedCall) -> BoxFuture<'static, Result<Vec<u8>>>;

    /// Whether every future [`invoke`](Router::invoke) returns ends by the
    /// call's deadline (its `timeout` after `invoke` was called), with
    /// [`Error::Timeout`](crate::Error::Timeout) or another error at the
    /// latest. A typed reference then arms no timer of its own around the
    /// call (a timer per call costs more than the rest of a local hop).
    /// The default, `false`, is always safe.
    fn bounds_deadlines(&self) -> bool {
        false
    }
}
