use super::*;

impl Directory {
    /// Where calls to `id` go: the cache, else the partition owner's
    /// registration, else a new placement registered by compare-and-set.
    pub(super) async fn resolve(&self, id: &GrainId) -> Answer {
        if let Some(a) = self.cache.get(id) {
            return Ok(Some(a.clone()));
        }
        let hash = self.placements.is_hash(id.grain_type.as_str());
        let (view, owner, candidates) = {
            let v = self.view.read();
            let owner = v.owner(id).ok_or("no active silo")?.to_owned();
            if hash && owner != self.me.endpoint {
                // Hash placement: send the call straight to the owner,
                // which registers the grain on itself as it admits the
                // call (or answers "not here", and the next attempt asks
                // it properly).
                let generation = v.generations.get(&owner).copied().unwrap_or_default();
                return Ok(Some(ActivationAddress {
                    silo: SiloAddress::new(owner, generation),
                    activation: 0,
                }));
            }
            let candidates: Vec<Candidate> = v
                .members
                .iter()
                .map(|m| Candidate {
                    endpoint: m.clone(),
                    activations: self.load_of(m),
                })
                .collect();
            (v.id, owner, candidates)
        };
        let target = self.placements.place(&PlacementContext {
            grain: id,
            local: &self.me.endpoint,
            candidates: &candidates,
            random: [self.draw.next(), self.draw.next()],
        });
        // Placing on the partition owner or on this silo answers an
        // existing registration as well as a lookup would, in as many
        // hops; placing elsewhere costs a hop more, so look up first.
        if target != owner
            && target != self.me.endpoint
            && let Some(found) = self.lookup_at(&owner, id, view).await?
        {
            self.remember(id, &found);
            return Ok(Some(found));
        }
        let winner = self.place_at(&target, id).await?;
        if let Some(w) = &winner {
            self.remember(id, w);
        }
        Ok(winner)
    }

    pub(super) async fn link(&self, endpoint: &str) -> Option<Arc<crate::link::Link>> {
        self.links.get(endpoint).await.ok()
    }

    /// Routes a call for a grain not active here: to the silo the
    /// directory names, retrying (within the deadline) where the call
    /// provably did not run: a stale cache entry ("not here"), a silo
    /// that could not be reached, a registration not answered yet.
    pub(super) async fn route(self: Arc<Self>, call: EncodedCall) -> actor_core::Result<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + call.timeout;
        let mut last = String::new();
        let mut pause = Duration::from_millis(2);
        // The address that last answered "not here".
        let mut stale: Option<ActivationAddress> = None;
        loop {
            if !self.ownership.lease_valid() {
                return Err(actor_core::Error::SiloUnavailable {
                    silo: format!("{} (membership lease expired)", self.me.endpoint),
                });
            }
            let silo = self.silo.get().ok_or(actor_core::Error::SiloStopped)?;
            if self.hosts(&call.target) {
                let late = timeout_of(&call);
                return by(deadline, silo.invoke_encoded(call))
                    .await
                    .unwrap_or_else(|| Err(late()));
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                tracing::debug!(grain = %call.target, reason = %last, "gave up routing at the deadline");
                if last.contains(UNREACHABLE) {
                    // Never sent, and the silo it had to go through could
                    // not be reached until the deadline: say so, rather
                    // than a timeout of a call that never ran.
                    return Err(actor_core::Error::SiloUnavailable { silo: last });
                }
                return Err(actor_core::Error::Timeout {
                    grain: call.target,
                    method: call.method,
                    timeout: call.timeout,
                });
            }
            // Every await here ends by the call's deadline (a lookup answered
            // from the cache is ready at once and arms no timer), so the
            // reference needs no timer of its own (`bounds_deadlines`).
            let Some(resolved) = by(deadline, self.resolve(&call.target)).await else {
                return Err(timeout_of(&call)());
            };
            match resolved {
                Ok(Some(addr)) if addr.silo == self.me => {
                    // Registered here but not hosted: a registration whose
                    // answer was lost (timeout). Registering again settles
                    // it (the entry names this silo, so this silo wins).
                    match by(deadline, self.place_here(&call.target))
                        .await
                        .unwrap_or_else(|| Err("no placement by the deadline".into()))
                    {
                        Ok(_) => continue,
                        Err(reason) => last = reason,
                    }
                }
                Ok(Some(addr)) if stale.as_ref() == Some(&addr) => {
                    // The directory names a silo that just said "not here"
                    // (its registration's answer was lost): ask it to
                    // settle its registration, then call it again.
                    self.cache.remove(&call.target);
                    match by(deadline, self.place_at(&addr.silo.endpoint, &call.target))
                        .await
                        .unwrap_or_else(|| Err("no placement by the deadline".into()))
                    {
                        Ok(Some(w)) => {
                            self.remember(&call.target, &w);
                            stale = None;
                            continue;
                        }
                        Ok(None) => last = "no silo to place it on".into(),
                        Err(reason) => last = reason,
                    }
                }
                Ok(Some(addr)) => {
                    match by(deadline, self.link(&addr.silo.endpoint)).await.flatten() {
                        None => {
                            // Never sent: safe to retry once the directory
                            // knows better.
                            last = format!("{} {UNREACHABLE}", addr.silo);
                            self.cache.remove(&call.target);
                        }
                        Some(link) => {
                            match link.try_call(&call, left).await {
                                Err(crate::link::NotSent) => {
                                    // The link went down before the call was
                                    // sent: it did not run, route it again.
                                    self.cache.remove_if(&call.target, |_, a| *a == addr);
                                    last = format!("{} {UNREACHABLE}", addr.silo);
                                }
                                Ok(Err(actor_core::Error::NotHere { .. })) => {
                                    self.cache.remove_if(&call.target, |_, a| *a == addr);
                                    last = format!("not hosted on {}", addr.silo);
                                    stale = Some(addr);
                                    continue;
                                }
                                Ok(Err(actor_core::Error::SiloUnavailable { silo })) => {
                                    self.cache.remove_if(&call.target, |_, a| *a == addr);
                                    return Err(actor_core::Error::SiloUnavailable { silo });
                                }
                                Ok(other) => return other,
                            }
                        }
                    }
                }
                Ok(None) => last = "no silo to place it on".into(),
                Err(reason) => last = reason,
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            // While this silo's own fence is closed (a view change is
            // being applied), the partition owners' are almost surely
            // closed too: wait here instead of asking them again and
            // again. Only after a failed attempt, so calls to grains that
            // are active somewhere never wait for the fence.
            while !self.ownership.may_activate() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The `Router` of a cluster silo: grains it hosts run here, others go
/// where the directory says.
#[derive(Debug, Clone)]
pub(crate) struct DirectoryRouting(pub(crate) Arc<Directory>);

impl Router for DirectoryRouting {
    fn is_local(&self, id: &GrainId) -> bool {
        self.0.ownership.lease_valid() && self.0.hosts_or_takes(id)
    }

    fn invoke(&self, call: EncodedCall) -> BoxFuture<'static, actor_core::Result<Vec<u8>>> {
        Box::pin(self.0.clone().route(call))
    }

    fn bounds_deadlines(&self) -> bool {
        true
    }
}
