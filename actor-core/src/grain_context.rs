//! [`GrainContext`]: what a grain's turn is handed, its view of its own
//! activation and of the silo (references to other grains, timers,
//! deactivation).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::activation::Activation;
use crate::grain::{Grain, GrainOptions};
use crate::id::{GrainId, GrainKey};
use crate::message::{Accepts, Message};
use crate::reference::GrainRef;
use crate::silo::Silo;
use crate::timer::TimerHandle;

/// The grain's view of its activation during a turn.
pub struct GrainContext<G: Grain> {
    pub(crate) activation: Arc<Activation<G>>,
    pub(crate) silo: Silo,
}

impl<G: Grain> GrainContext<G> {
    /// This grain's id.
    pub fn id(&self) -> &GrainId {
        &self.activation.id
    }

    /// This grain's key.
    pub fn key(&self) -> &GrainKey {
        &self.activation.id.key
    }

    /// The silo hosting this activation.
    pub fn silo(&self) -> &Silo {
        &self.silo
    }

    /// The effective options of this grain type.
    pub fn options(&self) -> &GrainOptions {
        &self.activation.entry.options
    }

    /// A reference to another grain (or this one).
    pub fn get_grain<T: Grain>(&self, key: impl Into<GrainKey>) -> GrainRef<T> {
        self.silo.get_grain(key)
    }

    /// A reference to this grain.
    pub fn this(&self) -> GrainRef<G> {
        GrainRef::new(self.activation.id.clone(), self.silo.clone())
    }

    /// Deactivates this activation once the current turn ends; queued and
    /// later calls go to a fresh activation.
    pub fn deactivate_on_idle(&self) {
        self.activation.request_deactivation();
    }

    /// Keeps this activation from idle collection for at least `period`.
    pub fn delay_deactivation(&self, period: Duration) {
        self.activation.keep_alive_for(period);
    }

    /// Registers a grain timer: after `due`, then every `period`, `make()`'s
    /// message is delivered to this activation as an ordinary turn. A tick
    /// starts only after the previous tick's turn has finished, so ticks
    /// never overlap. Timers do not keep the activation alive and end with
    /// it; cancel one earlier with [`TimerHandle::cancel`].
    pub fn register_timer<M, K>(
        &self,
        due: Duration,
        period: Duration,
        make: impl Fn() -> M + Send + Sync + 'static,
    ) -> TimerHandle
    where
        G: Accepts<M, K>,
        M: Message<Reply = ()>,
        K: 'static,
    {
        crate::timer::start::<G, M, K>(&self.activation, &self.silo, due, period, make)
    }
}

impl<G: Grain> fmt::Debug for GrainContext<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrainContext")
            .field("id", &self.activation.id)
            .finish_non_exhaustive()
    }
}
