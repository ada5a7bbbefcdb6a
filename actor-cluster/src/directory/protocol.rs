use super::*;

/// The largest directory message a silo decodes, either way: a grain id
/// and an address are small, so a peer announcing more is refused
/// (`RESOURCE_EXHAUSTED`) before its bytes are buffered.
pub(super) const MAX_MESSAGE: usize = 1024 * 1024;

impl Directory {
    // ----- RPCs to other silos -----

    pub(super) fn client(
        &self,
        endpoint: &str,
    ) -> Result<GrainDirectoryClient<tonic::transport::Channel>, String> {
        if let Some(c) = self.clients.get(endpoint) {
            return Ok(c.clone());
        }
        let channel = crate::transport::lazy_channel(&self.connector, endpoint, self.rpc_timeout)
            .map_err(|e| e.to_string())?;
        let c = GrainDirectoryClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
        self.clients.insert(endpoint.to_owned(), c.clone());
        Ok(c)
    }

    pub(super) async fn rpc<F, Fut>(&self, endpoint: &str, f: F) -> Answer
    where
        F: FnOnce(GrainDirectoryClient<tonic::transport::Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<pb::DirectoryReply>, Status>>,
    {
        let client = self.client(endpoint)?;
        match tokio::time::timeout(self.rpc_timeout, f(client)).await {
            Ok(Ok(reply)) => {
                let r = reply.into_inner();
                if r.retry.is_empty() {
                    Ok(r.address.map(ActivationAddress::from_pb))
                } else {
                    Err(r.retry)
                }
            }
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                Err(format!("{endpoint} {UNREACHABLE} ({})", status.message()))
            }
            Ok(Err(status)) => Err(format!("{endpoint}: {}", status.message())),
            Err(_) => Err(format!(
                "{endpoint} {UNREACHABLE} (no answer within {:?})",
                self.rpc_timeout
            )),
        }
    }

    pub(super) async fn register_at(
        &self,
        owner: &str,
        id: &GrainId,
        addr: ActivationAddress,
        view: u64,
        claim: bool,
    ) -> Answer {
        if owner == self.me.endpoint {
            return self.register_local(id, addr, view, claim);
        }
        let grain = actor_core::__private::codec::encode(id).map_err(|e| e.to_string())?;
        let req = pb::RegisterRequest {
            grain,
            address: Some(addr.to_pb()),
            view,
            claim,
        };
        self.rpc(
            owner,
            |mut c| async move { c.register(Request::new(req)).await },
        )
        .await
    }

    pub(super) async fn lookup_at(&self, owner: &str, id: &GrainId, view: u64) -> Answer {
        if owner == self.me.endpoint {
            return self.lookup_local(id);
        }
        let grain = actor_core::__private::codec::encode(id).map_err(|e| e.to_string())?;
        self.rpc(owner, |mut c| async move {
            c.lookup(Request::new(pb::LookupRequest { grain, view }))
                .await
        })
        .await
    }

    pub(super) async fn place_at(&self, target: &str, id: &GrainId) -> Answer {
        if target == self.me.endpoint {
            return self.place_here(id).await;
        }
        let grain = actor_core::__private::codec::encode(id).map_err(|e| e.to_string())?;
        self.rpc(target, |mut c| async move {
            c.place(Request::new(pb::LookupRequest { grain, view: 0 }))
                .await
        })
        .await
    }

    /// Registers `id` on this silo at its partition owner (the placement
    /// target's side): the winner, which is this silo if it was first.
    pub(super) async fn place_here(&self, id: &GrainId) -> Answer {
        if let Some(act) = self.hosted.get(id) {
            return Ok(Some(self.my_address(*act)));
        }
        if !self.ownership.lease_valid() {
            return Err("this silo's membership lease has expired".into());
        }
        let _gate = self.gate.read().await;
        let (view, owner) = {
            let v = self.view.read();
            if !v.has(&self.me) {
                return Err("this silo is not active in its own view".into());
            }
            (v.id, v.owner(id).map(str::to_owned))
        };
        let owner = owner.ok_or("no active silo")?;
        let addr = self.my_address(self.next_activation.fetch_add(1, Ordering::Relaxed));
        let winner = self.register_at(&owner, id, addr, view, false).await?;
        if let Some(w) = &winner
            && w.silo == self.me
        {
            self.hosted.insert(id.clone(), w.activation);
        }
        Ok(winner)
    }

    // ----- membership changes -----

    /// Applies the active silos of a new membership view: drops the
    /// partition entries this silo no longer owns, fails calls in flight
    /// to silos that left, and claims every hosted grain whose partition
    /// moved at its new owner (retrying up to `patience`). Grains it cannot
    /// claim are deactivated. Returns once done: only then may the silo
    /// report the view applied.
    pub(crate) async fn apply_view(&self, active: &[SiloAddress], patience: Duration) {
        let next = View::new(active);
        if next.id == self.view.read().id {
            return;
        }
        let _gate = self.gate.write().await;
        let (old, view) = {
            let mut v = self.view.write();
            let old = std::mem::replace(&mut *v, next);
            let me = self.me.endpoint.as_str();
            self.partition
                .lock()
                .retain(|id, _| v.owner(id) == Some(me));
            (old, v.id)
        };
        let old_members = &old.members;
        let (members, gone): (Vec<String>, Vec<String>) = {
            let v = self.view.read();
            let gone = old_members
                .iter()
                .filter(|m| !v.members.contains(m))
                .cloned()
                .collect();
            (v.members.clone(), gone)
        };
        {
            let v = self.view.read();
            self.cache.retain(|_, a| v.has(&a.silo));
        }
        for endpoint in &gone {
            self.links.remove(endpoint);
            self.clients.remove(endpoint);
            if *endpoint != self.me.endpoint {
                self.loads.remove(endpoint);
            }
        }
        // Grains let go by the last sweep that are active again (a call
        // slipped in) are hosted: they must be claimed like the others.
        if let Some(silo) = self.silo.get() {
            self.released.lock().retain(|id, act| {
                if silo.is_active(id) {
                    self.hosted.insert(id.clone(), *act);
                    false
                } else {
                    true
                }
            });
        }
        // A partition moved if its owner changed, or restarted on the same
        // endpoint (a new generation has an empty partition).
        let new_generations = self.view.read().generations.clone();
        let mut moved: Vec<(GrainId, u64, String)> = self
            .hosted
            .iter()
            .filter_map(|e| {
                let new = rendezvous_owner(e.key(), &members)?;
                let before =
                    rendezvous_owner(e.key(), old_members).map(|o| (o, old.generations.get(o)));
                let same = before == Some((new, new_generations.get(new)));
                (!same).then(|| (e.key().clone(), *e.value(), new.to_owned()))
            })
            .collect();
        if moved.is_empty() {
            return;
        }
        // Claims go out in grain order, not hash order: a simulated run
        // must replay.
        moved.sort_unstable();
        let until = tokio::time::Instant::now() + patience;
        let lost: HashSet<GrainId> = futures::stream::iter(moved)
            .map(|(id, act, owner)| async move {
                let addr = self.my_address(act);
                loop {
                    match self.register_at(&owner, &id, addr.clone(), view, true).await {
                        Ok(Some(w)) if w.silo == self.me => return None,
                        Ok(_) => return Some(id),
                        Err(reason) => {
                            if tokio::time::Instant::now() >= until {
                                tracing::warn!(grain = %id, %reason, "could not re-register a grain; deactivating it");
                                return Some(id);
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            })
            .buffer_unordered(64)
            .filter_map(|x| async move { x })
            .collect()
            .await;
        if !lost.is_empty() {
            for id in &lost {
                self.hosted.remove(id);
            }
            if let Some(silo) = self.silo.get() {
                silo.deactivate_where(|id| lost.contains(id), patience)
                    .await;
            }
        }
    }

    /// Unregisters grains this silo no longer runs (collected when idle),
    /// in two sweeps: the first stops hosting them (new calls then go
    /// through the directory again), the next one, a sweep later, removes
    /// their registrations unless they came back. Holds the gate, so no
    /// registration of this silo runs meanwhile; a grain active again is
    /// hosted again (its registration was never removed).
    pub(crate) async fn sweep(&self) {
        let Some(silo) = self.silo.get() else {
            return;
        };
        let _gate = self.gate.write().await;
        // In grain order, not hash order: a simulated run must replay.
        let mut released: Vec<(GrainId, u64)> = std::mem::take(&mut *self.released.lock())
            .into_iter()
            .collect();
        released.sort_unstable();
        let mut remote = Vec::new();
        {
            let v = self.view.read();
            for (id, act) in released {
                if self.hosted.contains_key(&id) {
                    continue;
                }
                if silo.is_active(&id) {
                    self.hosted.insert(id, act);
                    continue;
                }
                match v.owner(&id) {
                    Some(owner) if owner == self.me.endpoint => {
                        let mut part = self.partition.lock();
                        // Under the partition lock: a grain taken again by
                        // `hosts_or_takes` meanwhile is hosted now.
                        if !self.hosted.contains_key(&id)
                            && part.get(&id) == Some(&self.my_address(act))
                        {
                            part.remove(&id);
                        }
                    }
                    Some(owner) => remote.push((id, act, owner.to_owned())),
                    None => {}
                }
            }
        }
        futures::stream::iter(remote)
            .map(|(id, act, owner)| async move {
                let Ok(grain) = actor_core::__private::codec::encode(&id) else {
                    return;
                };
                let req = pb::RegisterRequest {
                    grain,
                    address: Some(self.my_address(act).to_pb()),
                    view: 0,
                    claim: false,
                };
                // A failed unregistration leaves an entry naming this
                // silo; the next call settles it here (see `route`).
                let _ = self
                    .rpc(&owner, |mut c| async move {
                        c.unregister(Request::new(req)).await
                    })
                    .await;
            })
            .buffer_unordered(64)
            .collect::<Vec<()>>()
            .await;
        let mut idle: Vec<(GrainId, u64)> = self
            .hosted
            .iter()
            .filter(|e| !silo.is_active(e.key()))
            .map(|e| (e.key().clone(), *e.value()))
            .collect();
        idle.sort_unstable();
        let mut released = self.released.lock();
        for (id, act) in idle {
            self.hosted.remove(&id);
            if silo.is_active(&id) {
                // Activated between the two looks: keep hosting it.
                self.hosted.insert(id, act);
            } else {
                released.insert(id, act);
            }
        }
    }

    /// Asks every other active silo for its activation count (for
    /// activation-count placement).
    pub(crate) async fn exchange_loads(&self) {
        if let Some(silo) = self.silo.get() {
            self.loads
                .insert(self.me.endpoint.clone(), silo.activation_count() as u64);
        }
        let peers: Vec<String> = self
            .view
            .read()
            .members
            .iter()
            .filter(|m| **m != self.me.endpoint)
            .cloned()
            .collect();
        let answers = futures::future::join_all(peers.iter().map(|p| async move {
            let mut c = self.client(p).ok()?;
            let r =
                tokio::time::timeout(self.rpc_timeout, c.load(Request::new(pb::LoadRequest {})))
                    .await
                    .ok()?
                    .ok()?;
            Some(r.into_inner().activations)
        }))
        .await;
        for (p, a) in peers.into_iter().zip(answers) {
            if let Some(a) = a {
                self.loads.insert(p, a);
            }
        }
    }
}

#[cfg(test)]
mod wire_tests {
    use super::*;
    use crate::link::fuzz;
    use proptest::prelude::*;

    /// What a silo does with a directory message's bytes, as server
    /// (requests) and as client (replies).
    fn decode_all(bytes: &[u8]) {
        use actor_core::__private::codec::decode;
        use prost::Message;
        if let Ok(r) = pb::RegisterRequest::decode(bytes) {
            let _ = decode::<GrainId>(&r.grain);
            let _ = r.address.map(ActivationAddress::from_pb);
        }
        if let Ok(r) = pb::LookupRequest::decode(bytes) {
            let _ = decode::<GrainId>(&r.grain);
        }
        if let Ok(r) = pb::DirectoryReply::decode(bytes) {
            let _ = r.address.map(ActivationAddress::from_pb);
        }
        let _ = pb::LoadRequest::decode(bytes);
        let _ = pb::LoadReply::decode(bytes);
    }

    /// A valid registration, lookup or reply.
    fn valid_message() -> impl Strategy<Value = Vec<u8>> {
        (
            "[a-z]{1,8}",
            any::<i64>(),
            "[a-z0-9.:]{1,24}",
            any::<(i64, u64, u64)>(),
            any::<bool>(),
            0u8..3,
        )
            .prop_map(
                |(ty, key, endpoint, (generation, activation, view), claim, which)| {
                    use prost::Message;
                    let grain =
                        actor_core::__private::codec::encode(&GrainId::new(ty, key)).unwrap();
                    let address = Some(pb::ActivationAddress {
                        endpoint,
                        generation,
                        activation,
                    });
                    match which {
                        0 => pb::RegisterRequest {
                            grain,
                            address,
                            view,
                            claim,
                        }
                        .encode_to_vec(),
                        1 => pb::LookupRequest { grain, view }.encode_to_vec(),
                        _ => pb::DirectoryReply {
                            address,
                            retry: "retry".into(),
                        }
                        .encode_to_vec(),
                    }
                },
            )
    }

    proptest! {
        /// Random bytes as any directory message: never a panic.
        #[test]
        fn random_directory_messages_never_panic(bytes in fuzz::random_bytes()) {
            decode_all(&bytes);
        }

        /// Valid directory messages mutated (bits, truncation, bytes,
        /// length fields): never a panic.
        #[test]
        fn mutated_directory_messages_never_panic(
            message in valid_message(),
            mutations in fuzz::mutations(),
        ) {
            decode_all(&fuzz::apply(&message, &mutations));
        }
    }
}
