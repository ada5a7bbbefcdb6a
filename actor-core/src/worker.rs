//! Stateless worker pools: several activations of one grain id on a silo,
//! grown under load up to a bound and shrunk by idle collection.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::activation::{Activation, Home};
use crate::grain::Grain;
use crate::id::GrainId;
use crate::registry::TypeEntry;

pub(crate) struct WorkerPool<G: Grain> {
    id: GrainId,
    entry: Arc<TypeEntry<G>>,
    max: usize,
    workers: Mutex<Vec<Arc<Activation<G>>>>,
}

impl<G: Grain> WorkerPool<G> {
    pub(crate) fn new(id: GrainId, entry: Arc<TypeEntry<G>>, max: usize) -> Self {
        WorkerPool {
            id,
            entry,
            max,
            workers: Mutex::new(Vec::new()),
        }
    }

    /// An idle worker, else a new one while under the bound, else the
    /// least loaded. Workers whose turn waits on the call's chain are
    /// skipped (the call would deadlock there); if only such workers are
    /// left at the bound, one is returned and the call fails as a deadlock.
    pub(crate) fn pick(
        self: &Arc<Self>,
        chain: Option<&Arc<crate::context::ChainFrame>>,
    ) -> Arc<Activation<G>> {
        let mut workers = self.workers.lock();
        workers.retain(|w| !w.is_dead());
        let mut best: Option<(usize, &Arc<Activation<G>>)> = None;
        for w in workers.iter() {
            if w.waits_on(chain) {
                continue;
            }
            let load = w.load();
            if load == 0 {
                return w.clone();
            }
            if best.is_none_or(|(l, _)| load < l) {
                best = Some((load, w));
            }
        }
        if workers.len() < self.max || workers.is_empty() {
            let w = Arc::new(Activation::new(
                self.id.clone(),
                self.entry.clone(),
                Home::Pool(Arc::downgrade(self)),
            ));
            workers.push(w.clone());
            return w;
        }
        match best {
            Some((_, w)) => w.clone(),
            None => workers[0].clone(),
        }
    }

    pub(crate) fn id(&self) -> &GrainId {
        &self.id
    }

    pub(crate) fn remove(&self, act: &Arc<Activation<G>>) {
        self.workers.lock().retain(|w| !Arc::ptr_eq(w, act));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.workers.lock().is_empty()
    }

    pub(crate) fn workers(&self) -> Vec<Arc<Activation<G>>> {
        self.workers.lock().clone()
    }
}
