use super::*;

impl Directory {
    // ----- the partition owner's side -----

    /// Registers `addr` for `id` in this silo's partition: a fresh
    /// registration (fenced) or a claim of a running activation.
    pub(super) fn register_local(
        &self,
        id: &GrainId,
        addr: ActivationAddress,
        view: u64,
        claim: bool,
    ) -> Answer {
        let v = self.view.read();
        if v.id != view {
            return Err("the silos' membership views differ".into());
        }
        if v.owner(id) != Some(self.me.endpoint.as_str()) {
            return Err("not the owner of this grain's partition".into());
        }
        if !v.has(&addr.silo) {
            return Err(format!("{} is not an active silo", addr.silo));
        }
        if !self.ownership.lease_valid() {
            return Err("the partition owner's lease has expired".into());
        }
        let mut part = self.partition.lock();
        match part.get(id) {
            // First writer wins (reading the winner needs no fence); the
            // entry of a silo no longer active is void (its lease ran out
            // before the fence opened).
            Some(cur) if v.has(&cur.silo) => Ok(Some(cur.clone())),
            _ if !claim && !self.ownership.may_activate() => {
                Err("the partition is fenced until every silo has applied the view".into())
            }
            _ => {
                part.insert(id.clone(), addr.clone());
                Ok(Some(addr))
            }
        }
    }

    pub(super) fn lookup_local(&self, id: &GrainId) -> Answer {
        let v = self.view.read();
        if v.owner(id) != Some(self.me.endpoint.as_str()) {
            return Err("not the owner of this grain's partition".into());
        }
        Ok(self
            .partition
            .lock()
            .get(id)
            .filter(|a| v.has(&a.silo))
            .cloned())
    }

    pub(super) fn unregister_local(&self, id: &GrainId, addr: &ActivationAddress) -> Answer {
        let mut part = self.partition.lock();
        if part.get(id) == Some(addr) {
            part.remove(id);
        }
        Ok(None)
    }
}
