//! A cluster silo's claim to the grains it may activate: its view of the
//! active silos (the hash ring that names each grain's partition owner),
//! the fence that keeps two silos from activating one grain while
//! ownership moves, and its membership lease. The membership agent
//! (`cluster.rs`) feeds it; the directory asks it before every
//! registration and activation.

// Tokio's clock, not the standard one: a simulator (turmoil) controls it.
use tokio::time::Instant;

use actor_core::GrainId;

use crate::hash::MemberSet;

/// What this silo may own and activate now (see the module docs).
pub(crate) struct Ownership {
    me: String,
    /// The silo's turns stop at its lease's end (see `TurnFence`).
    turns: std::sync::Arc<actor_core::TurnFence>,
    members: parking_lot::RwLock<std::sync::Arc<MemberSet>>,
    fence: parking_lot::Mutex<Fence>,
}

impl std::fmt::Debug for Ownership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ownership")
            .field("me", &self.me)
            .field("members", &self.members())
            .field("fence", &*self.fence.lock())
            .finish()
    }
}

impl Ownership {
    /// The claim of the silo at `me` in a view of `members` (which include
    /// `me`), with fencing off until [`enable_fencing`](Self::enable_fencing).
    pub(crate) fn new(me: impl Into<String>, members: Vec<String>) -> Self {
        let mut members = members;
        members.sort();
        members.dedup();
        Ownership {
            turns: std::sync::Arc::new(actor_core::TurnFence::new()),
            me: me.into(),
            members: parking_lot::RwLock::new(std::sync::Arc::new(MemberSet::new(members))),
            fence: parking_lot::Mutex::new(Fence::default()),
        }
    }

    /// The endpoint owning `id` in the current view.
    pub(crate) fn owner(&self, id: &GrainId) -> String {
        let members = self.members.read().clone();
        members.owner(id).unwrap_or(&self.me).to_owned()
    }

    /// Whether this silo may activate grains now: with fencing on, only
    /// when every member has applied the current view, dead silos' leases
    /// have run out, and this silo's own lease is valid.
    pub(crate) fn may_activate(&self) -> bool {
        let members = self.members.read().clone();
        self.fence
            .lock()
            .open(&self.me, &members.list, Instant::now())
    }

    /// The fence of the silo's turns, which follows its lease once the
    /// lease was first granted: give it to the silo's builder.
    pub(crate) fn turn_fence(&self) -> std::sync::Arc<actor_core::TurnFence> {
        self.turns.clone()
    }

    /// Turns fencing on (the membership agent does): from now on, new
    /// activations wait for every member to apply the current view, for
    /// dead silos' leases to run out, and for this silo's own lease.
    /// The silo serves (activates, registers, routes) only until `grace`
    /// before its lease's end, and runs turns until the end: the grace is
    /// for the last turns of the grains it lets go. (Turns are not fenced
    /// until the first lease is granted: before it the silo has no grain
    /// of the cluster to run.)
    pub(crate) fn enable_fencing(&self, lease_until: Instant, grace: std::time::Duration) {
        let mut f = self.fence.lock();
        f.enabled = true;
        f.grace = grace;
        f.lease_until = Some(lease_until);
    }

    /// Extends this silo's lease (after a successful read of the table that
    /// shows it active); with fencing on, its turns may run until then.
    pub(crate) fn renew_lease(&self, until: Instant) {
        let mut f = self.fence.lock();
        if f.lease_until.is_none_or(|t| until > t) {
            f.lease_until = Some(until);
        }
        if f.enabled
            && let Some(t) = f.lease_until
        {
            self.turns.close_after(t);
        }
    }

    /// Whether this silo may serve: its lease holds for longer than the
    /// grace (see [`enable_fencing`](Self::enable_fencing)).
    pub(crate) fn lease_valid(&self) -> bool {
        let f = self.fence.lock();
        !f.enabled || f.serving(Instant::now())
    }

    /// The members that have not reported the current view applied yet
    /// (none while this silo's lease is not valid): the membership agent
    /// asks those again soon, so that the fence opens without waiting a
    /// whole probe interval.
    pub(crate) fn waiting_for_acks(&self) -> Vec<String> {
        let members = self.members.read().clone();
        let f = self.fence.lock();
        if !f.enabled || !f.serving(Instant::now()) {
            return Vec::new();
        }
        members
            .list
            .iter()
            .filter(|m| **m != self.me)
            .filter(|m| f.acked.get(*m).is_none_or(|v| *v < f.view_since))
            .cloned()
            .collect()
    }

    /// The newest view version any member reported applied.
    pub(crate) fn newest_ack(&self) -> i64 {
        self.fence.lock().acked.values().copied().max().unwrap_or(0)
    }

    /// Records the view version that `endpoint` reports as applied.
    pub(crate) fn set_acked(&self, endpoint: &str, version: i64) {
        let mut f = self.fence.lock();
        let v = f.acked.entry(endpoint.to_owned()).or_insert(version);
        *v = (*v).max(version);
    }

    /// Blocks new activations until `until` (a dead silo's lease has run
    /// out by then).
    pub(crate) fn hold_until(&self, until: Instant) {
        self.fence.lock().holds.push(until);
    }

    /// The silos of the current view.
    pub(crate) fn members(&self) -> Vec<String> {
        self.members.read().list.clone()
    }

    /// Replaces the view with the active silos read at table `version`:
    /// new activations wait until every member has applied it.
    pub(crate) fn set_view(&self, members: Vec<String>, version: i64) {
        let mut members = members;
        members.sort();
        members.dedup();
        let mut f = self.fence.lock();
        f.view_since = f.view_since.max(version);
        *self.members.write() = std::sync::Arc::new(MemberSet::new(members));
    }
}

/// What keeps two silos from activating one grain while ownership moves.
///
/// With fencing on, a silo activates a grain only when (1) every member of
/// its current view reports having applied that view (so the previous owner
/// has deactivated what it lost), (2) the leases of silos that were declared
/// dead have run out (so a cut-off silo has stopped serving), and (3) its
/// own lease is valid (it read the table recently and saw itself active).
#[derive(Debug, Default)]
struct Fence {
    enabled: bool,
    view_since: i64,
    acked: std::collections::HashMap<String, i64>,
    holds: Vec<Instant>,
    lease_until: Option<Instant>,
    /// The end of the lease that is for running turns only.
    grace: std::time::Duration,
}

impl Fence {
    fn serving(&self, now: Instant) -> bool {
        self.lease_until.is_some_and(|t| now + self.grace < t)
    }

    fn open(&mut self, me: &str, members: &[String], now: Instant) -> bool {
        if !self.enabled {
            return true;
        }
        if !self.serving(now) {
            return false;
        }
        self.holds.retain(|t| *t > now);
        if !self.holds.is_empty() {
            return false;
        }
        members
            .iter()
            .filter(|m| m.as_str() != me)
            .all(|m| self.acked.get(m).is_some_and(|v| *v >= self.view_since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn the_fence_opens_only_when_every_member_has_applied_the_view() {
        let me = "a:1".to_owned();
        let o = Ownership::new(me.clone(), vec![me.clone(), "b:1".into()]);
        assert!(o.may_activate(), "fencing off: always open");
        o.enable_fencing(Instant::now() + HOUR, Duration::ZERO);
        o.set_view(vec![me.clone(), "b:1".into()], 5);
        assert!(!o.may_activate(), "b has not applied view 5");
        o.set_acked("b:1", 4);
        assert!(!o.may_activate(), "b applied an older view");
        o.set_acked("b:1", 5);
        assert!(o.may_activate());
        o.set_acked("b:1", 3);
        assert!(o.may_activate(), "an older ack does not undo a newer one");
        o.hold_until(Instant::now() + HOUR);
        assert!(!o.may_activate(), "a dead silo's lease is still running");
    }

    #[test]
    fn holds_that_ran_out_and_leases_gate_activation() {
        let o = Ownership::new("a:1", vec!["a:1".into()]);
        o.enable_fencing(Instant::now() + HOUR, Duration::ZERO);
        o.hold_until(Instant::now().checked_sub(Duration::from_secs(1)).unwrap());
        assert!(o.may_activate(), "a hold in the past no longer closes");
        let lapsed = Ownership::new("a:1", vec!["a:1".into()]);
        lapsed.enable_fencing(Instant::now(), Duration::ZERO);
        assert!(!lapsed.lease_valid() && !lapsed.may_activate());
        lapsed.renew_lease(Instant::now() + HOUR);
        assert!(lapsed.lease_valid() && lapsed.may_activate());
        lapsed.renew_lease(Instant::now());
        assert!(lapsed.lease_valid(), "a renewal never shortens the lease");
    }
}
