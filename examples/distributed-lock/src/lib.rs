// One file on purpose: a course port reads top to bottom beside the
// exercise it ports.
//! # Course exercise 09: a distributed lock
//!
//! **The original** (DistributedLockWithRedis) runs two processes that
//! contend for one resource. Before touching it, each takes a lock in
//! Redis (`SET key owner NX PX ttl`) and deletes it afterwards, but only
//! if the lock is still its own. The expiry (`PX`) is what frees the lock
//! when its holder crashes without deleting it. The lesson: mutual
//! exclusion between processes needs one arbiter that all of them ask,
//! and a lock that outlives its holder must expire, so a holder may use
//! the resource only while its lease lasts.
//!
//! **The grain version** makes the arbiter a grain. A [`LockGrain`] (one
//! per lock name) is the single activation of its id in the whole
//! cluster, and its exclusive turns run one at a time. Two silos that call
//! `acquire` at once are therefore answered one after the other by the
//! same state, and at most one caller gets a [`Grant`]. The grant is a
//! lease: the lock grain refuses everyone else
//! ([`LockError::Held`]) until its holder calls `release` or the lease
//! runs out without a `renew`. So a holder whose silo dies frees the lock
//! within one lease. Each grant carries a fencing token, larger than every
//! earlier one, which the resource can check ([`Resource`]). The holder
//! side ([`LockClient`], [`Lease`]) counts the lease from the moment it
//! *sent* the request, so it always stops using the resource before the
//! lock grain lets the next holder in.
//!
//! **When the lock grain itself moves.** The lock's state lives only in
//! its activation, on purpose: no Redis and no database. If the silo
//! hosting the lock grain dies, the cluster activates the grain again on a
//! survivor, and the new activation knows nothing about the old grants.
//! Granting at once could let a second holder in while the first one's
//! lease still runs. So a new activation first *settles*: for a full
//! maximum lease ([`LockConfig::max_lease`]) it refuses every request
//! ([`LockError::Settling`]). Every lease granted by an earlier activation
//! was granted before that activation ended, and so before this one
//! started (the cluster's single activation is fenced). None was longer
//! than the maximum lease, so every old lease has run out before the new
//! activation grants anything. Fencing tokens stay increasing across
//! activations too, because a token is the wall-clock time of its grant
//! in milliseconds (or the last token + 1, if that is larger), and the
//! new activation grants only after the settling period. That holds as
//! long as the silos' clocks differ by less than the maximum lease; here
//! they share one machine. The cost is a pause of one maximum lease after
//! the lock grain moves. That also happens after an idle collection or a
//! graceful hand-over, because the state is never written anywhere.
//! Persisting the grant (as Redis keeps the key) would shorten the pause
//! but not remove the need for leases.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actor_cluster::{ClusterConfig, ClusterSilo, InMemoryMembership, MembershipTable};
use actor_core::prelude::*;
use anyhow::bail;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How lock grains behave on a silo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockConfig {
    /// The longest lease a lock grain grants (longer requests are cut to
    /// it), and how long a new activation settles before it grants
    /// anything.
    pub max_lease: Duration,
}

impl Default for LockConfig {
    fn default() -> Self {
        LockConfig {
            max_lease: Duration::from_secs(4),
        }
    }
}

/// A lock (type name `lock`, keyed by the lock's name): at most one holder
/// at a time, for a lease.
#[derive(Debug)]
pub struct LockGrain {
    max_lease: Duration,
    settled_at: Instant,
    held: Option<Held>,
    last_token: u64,
    grants: u64,
}

#[derive(Debug)]
struct Held {
    holder: String,
    token: u64,
    until: Instant,
}

impl LockGrain {
    /// A lock grain with the given limits (what the silo's factory builds).
    pub fn new(config: LockConfig) -> Self {
        LockGrain {
            max_lease: config.max_lease,
            settled_at: Instant::now() + config.max_lease,
            held: None,
            last_token: 0,
            grants: 0,
        }
    }

    /// The live holder, if its lease has not run out.
    fn live(&self, now: Instant) -> Option<&Held> {
        self.held.as_ref().filter(|h| h.until > now)
    }

    fn settling(&self, now: Instant) -> Result<(), LockError> {
        if now < self.settled_at {
            return Err(LockError::Settling {
                retry_in_ms: millis(self.settled_at - now),
            });
        }
        Ok(())
    }

    fn grant(&mut self, holder: String, lease_ms: u64, silo: &Silo, now: Instant) -> Grant {
        let lease = Duration::from_millis(lease_ms).min(self.max_lease);
        // Wall-clock based, so that a later activation (which grants only
        // after settling) continues above every earlier token.
        let token = (self.last_token + 1).max(unix_millis());
        self.last_token = token;
        self.grants += 1;
        self.held = Some(Held {
            holder,
            token,
            until: now + lease,
        });
        Grant {
            token,
            lease_ms: millis(lease),
            silo: silo.name().to_owned(),
        }
    }
}

impl Grain for LockGrain {
    const TYPE_NAME: &'static str = "lock";

    async fn on_activate(&mut self, _: &GrainContext<Self>) -> Result<(), actor_core::BoxError> {
        // A fresh activation may follow one that granted leases it never
        // told us about: wait them out before granting.
        self.settled_at = Instant::now() + self.max_lease;
        Ok(())
    }
}

/// A granted lease, as the lock grain sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The fencing token: larger than every token granted before.
    pub token: u64,
    /// The lease granted, in milliseconds (at most the maximum lease).
    pub lease_ms: u64,
    /// The silo the lock grain runs on.
    pub silo: String,
}

/// Why the lock grain refused a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockError {
    /// Someone else holds the lock.
    Held {
        /// The holder.
        by: String,
        /// When its lease runs out unless renewed, in milliseconds.
        expires_in_ms: u64,
    },
    /// The lock grain was just activated and waits out leases an earlier
    /// activation may have granted.
    Settling {
        /// When it starts granting, in milliseconds.
        retry_in_ms: u64,
    },
    /// The caller does not hold the lock (any more) under that token.
    NotHolder {
        /// The live holder, if any.
        holder: Option<String>,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { by, expires_in_ms } => {
                write!(f, "held by {by} for {expires_in_ms} ms more")
            }
            LockError::Settling { retry_in_ms } => {
                write!(f, "lock just activated; grants in {retry_in_ms} ms")
            }
            LockError::NotHolder { holder } => write!(
                f,
                "not the holder (the holder is {})",
                holder.as_deref().unwrap_or("nobody")
            ),
        }
    }
}

impl std::error::Error for LockError {}

/// What a lock grain reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockStatus {
    /// The live holder, if any.
    pub holder: Option<String>,
    /// How long the holder's lease still runs, in milliseconds.
    pub expires_in_ms: u64,
    /// How long the activation still settles, in milliseconds.
    pub settling_ms: u64,
    /// Leases granted by this activation.
    pub grants: u64,
    /// The silo it runs on.
    pub silo: String,
}

#[grain_methods]
impl LockGrain {
    /// Takes the lock for `holder` for `lease_ms` (cut to the maximum
    /// lease), unless someone else holds it. Taking it again while
    /// holding it extends the lease under the same token.
    pub async fn acquire(
        &mut self,
        holder: String,
        lease_ms: u64,
        ctx: &GrainContext<Self>,
    ) -> Result<Grant, LockError> {
        let now = Instant::now();
        self.settling(now)?;
        match self.live(now) {
            Some(h) if h.holder != holder => Err(LockError::Held {
                by: h.holder.clone(),
                expires_in_ms: millis(h.until - now),
            }),
            Some(h) => {
                let token = h.token;
                self.renew(holder, token, lease_ms, ctx).await
            }
            None => Ok(self.grant(holder, lease_ms, ctx.silo(), now)),
        }
    }

    /// Extends the lease of `holder` under `token` by `lease_ms` from now,
    /// if it is still live.
    pub async fn renew(
        &mut self,
        holder: String,
        token: u64,
        lease_ms: u64,
        ctx: &GrainContext<Self>,
    ) -> Result<Grant, LockError> {
        let now = Instant::now();
        self.settling(now)?;
        let lease = Duration::from_millis(lease_ms).min(self.max_lease);
        let live_holder = self.live(now).map(|h| h.holder.clone());
        match self.held.as_mut() {
            Some(h) if h.until > now && h.holder == holder && h.token == token => {
                h.until = now + lease;
                Ok(Grant {
                    token,
                    lease_ms: millis(lease),
                    silo: ctx.silo().name().to_owned(),
                })
            }
            _ => Err(LockError::NotHolder {
                holder: live_holder,
            }),
        }
    }

    /// Gives the lock back, if `holder` still holds it under `token`
    /// (live or expired, as long as nobody took it since).
    pub async fn release(&mut self, holder: String, token: u64) -> Result<(), LockError> {
        match &self.held {
            Some(h) if h.holder == holder && h.token == token => {
                self.held = None;
                Ok(())
            }
            _ => Err(LockError::NotHolder {
                holder: self.live(Instant::now()).map(|h| h.holder.clone()),
            }),
        }
    }

    /// The lock's state, for display.
    #[read_only]
    pub async fn status(&self, ctx: &GrainContext<Self>) -> LockStatus {
        let now = Instant::now();
        let live = self.live(now);
        LockStatus {
            holder: live.map(|h| h.holder.clone()),
            expires_in_ms: live.map_or(0, |h| millis(h.until - now)),
            settling_ms: millis(self.settled_at.saturating_duration_since(now)),
            grants: self.grants,
            silo: ctx.silo().name().to_owned(),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

/// A lease as its holder sees it: valid from the moment the request was
/// sent for the granted length, so it ends no later than the lock grain's
/// view of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The holder.
    pub holder: String,
    /// The fencing token of the grant.
    pub token: u64,
    /// The silo the lock grain ran on when it granted or last renewed.
    pub lock_silo: String,
    sent_at: Instant,
    valid_until: Instant,
}

impl Lease {
    /// Whether the holder may still use the resource.
    pub fn is_valid(&self) -> bool {
        Instant::now() < self.valid_until
    }

    /// When the lease ends unless renewed.
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// When the request that granted (or last renewed) it was sent: the
    /// lease runs from there.
    pub fn sent_at(&self) -> Instant {
        self.sent_at
    }
}

/// A refused or failed lock request.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The lock grain said no.
    Lock(LockError),
    /// The call did not get through (silo down, timeout, lock moving).
    Runtime(actor_core::Error),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Lock(e) => e.fmt(f),
            Refusal::Runtime(e) => write!(f, "call failed: {e}"),
        }
    }
}

impl std::error::Error for Refusal {}

/// A successful [`LockClient::acquire`], with what it went through.
#[derive(Debug, Clone)]
pub struct Acquired {
    /// The lease.
    pub lease: Lease,
    /// When the lease was granted (the reply arrived).
    pub at: Instant,
    /// Refusals because someone else held the lock.
    pub held: usize,
    /// Refusals because the lock grain was settling.
    pub settling: usize,
    /// Calls that failed in the runtime.
    pub failed: usize,
}

/// One holder's handle on one lock.
#[derive(Debug, Clone)]
pub struct LockClient {
    lock: GrainRef<LockGrain>,
    holder: String,
    lease: Duration,
}

impl LockClient {
    /// The lock `key` as seen from `silo`, for `holder` (a name unique to
    /// this holder, e.g. `silo-a/worker-1`), asking for `lease` each time.
    pub fn new(silo: &Silo, key: &str, holder: impl Into<String>, lease: Duration) -> Self {
        // A call to a dead or moving lock fails within a fraction of the
        // lease; the holder's own deadline decides, not the call's.
        let timeout = (lease / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        LockClient {
            lock: silo.get_grain::<LockGrain>(key).with_timeout(timeout),
            holder: holder.into(),
            lease,
        }
    }

    /// The holder's name.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The lock grain's reference.
    pub fn lock(&self) -> &GrainRef<LockGrain> {
        &self.lock
    }

    fn lease_from(&self, sent: Instant, grant: Grant) -> Lease {
        Lease {
            holder: self.holder.clone(),
            token: grant.token,
            lock_silo: grant.silo,
            sent_at: sent,
            valid_until: sent + Duration::from_millis(grant.lease_ms),
        }
    }

    /// One attempt to take the lock.
    pub async fn try_acquire(&self) -> Result<Lease, Refusal> {
        let sent = Instant::now();
        match self
            .lock
            .acquire(self.holder.clone(), millis(self.lease))
            .await
        {
            Ok(Ok(grant)) => Ok(self.lease_from(sent, grant)),
            Ok(Err(e)) => Err(Refusal::Lock(e)),
            Err(e) => Err(Refusal::Runtime(e)),
        }
    }

    /// Takes the lock, retrying (every 20 ms at most, sooner if the lease
    /// ends sooner) until it is granted or `within` has passed.
    pub async fn acquire(&self, within: Duration) -> anyhow::Result<Acquired> {
        let until = Instant::now() + within;
        let (mut held, mut settling, mut failed) = (0, 0, 0);
        loop {
            let wait = match self.try_acquire().await {
                Ok(lease) => {
                    return Ok(Acquired {
                        lease,
                        at: Instant::now(),
                        held,
                        settling,
                        failed,
                    });
                }
                Err(Refusal::Lock(LockError::Held { expires_in_ms, .. })) => {
                    held += 1;
                    expires_in_ms
                }
                Err(Refusal::Lock(LockError::Settling { retry_in_ms })) => {
                    settling += 1;
                    retry_in_ms
                }
                Err(Refusal::Lock(LockError::NotHolder { .. })) => 20,
                Err(Refusal::Runtime(_)) => {
                    failed += 1;
                    20
                }
            };
            if Instant::now() >= until {
                bail!(
                    "{} could not take the lock within {within:?} ({held} held, {settling} settling, {failed} failed)",
                    self.holder
                );
            }
            let wait = Duration::from_millis(wait.clamp(1, 20));
            tokio::time::sleep(wait).await;
        }
    }

    /// Extends `lease` from now; on success it is valid for another lease.
    pub async fn renew(&self, lease: &mut Lease) -> Result<(), Refusal> {
        let sent = Instant::now();
        let reply = self
            .lock
            .renew(self.holder.clone(), lease.token, millis(self.lease))
            .await;
        match reply {
            Ok(Ok(grant)) => {
                *lease = self.lease_from(sent, grant);
                Ok(())
            }
            Ok(Err(e)) => Err(Refusal::Lock(e)),
            Err(e) => Err(Refusal::Runtime(e)),
        }
    }

    /// Gives the lock back.
    pub async fn release(&self, lease: Lease) -> Result<(), Refusal> {
        match self.lock.release(self.holder.clone(), lease.token).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Refusal::Lock(e)),
            Err(e) => Err(Refusal::Runtime(e)),
        }
    }
}

/// The resource the lock protects (one per process here, shared by the
/// silos in it, as a file or a printer would be). It counts how many
/// holders are inside at once and checks fencing tokens.
#[derive(Debug, Default)]
pub struct Resource {
    inside: AtomicUsize,
    max_inside: AtomicUsize,
    uses: AtomicUsize,
    last_token: AtomicU64,
    stale_tokens: AtomicUsize,
    tokens: Mutex<Vec<u64>>,
}

/// A holder inside the [`Resource`]; leaves on drop.
#[derive(Debug)]
pub struct Use {
    resource: Arc<Resource>,
}

impl Drop for Use {
    fn drop(&mut self) {
        self.resource.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Resource {
    /// Enters under `lease`: counts the holders inside and checks that the
    /// token is larger than every token seen before.
    pub fn enter(self: &Arc<Self>, lease: &Lease) -> Use {
        let now_inside = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_inside.fetch_max(now_inside, Ordering::SeqCst);
        self.uses.fetch_add(1, Ordering::SeqCst);
        if self.last_token.fetch_max(lease.token, Ordering::SeqCst) >= lease.token {
            self.stale_tokens.fetch_add(1, Ordering::SeqCst);
        }
        self.tokens
            .lock()
            .expect("token log poisoned")
            .push(lease.token);
        Use {
            resource: self.clone(),
        }
    }

    /// The most holders ever inside at once (1 if the lock works).
    pub fn max_inside(&self) -> usize {
        self.max_inside.load(Ordering::SeqCst)
    }

    /// How many times a holder entered.
    pub fn uses(&self) -> usize {
        self.uses.load(Ordering::SeqCst)
    }

    /// Entries whose token was not larger than an earlier one.
    pub fn stale_tokens(&self) -> usize {
        self.stale_tokens.load(Ordering::SeqCst)
    }

    /// The tokens in the order holders entered.
    pub fn tokens(&self) -> Vec<u64> {
        self.tokens.lock().expect("token log poisoned").clone()
    }
}

/// Starts silos with the given names as members of one cluster (an
/// in-memory membership table: they share this process), each hosting
/// lock grains.
pub async fn start_cluster(
    names: &[&str],
    cluster: ClusterConfig,
    lock: LockConfig,
) -> anyhow::Result<Vec<ClusterSilo>> {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let mut members = Vec::new();
    for name in names {
        let builder = Silo::builder()
            .name(*name)
            .grain_with(move |_| LockGrain::new(lock));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        members.push(ClusterSilo::start(builder, listener, table.clone(), cluster.clone()).await?);
    }
    Ok(members)
}

/// Waits until each of `members` places grains over `n` active silos.
pub async fn wait_for_members(
    members: &[&ClusterSilo],
    n: usize,
    within: Duration,
) -> anyhow::Result<()> {
    let until = Instant::now() + within;
    while members.iter().any(|m| m.active_members().len() != n) {
        if Instant::now() >= until {
            bail!("the silos do not see {n} members within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A lock name `{prefix}-N` whose grain the cluster places on the silo at
/// `owner`, in `member`'s view (placement is by hashing; the scenario
/// looks up where names land to kill the right silo).
pub fn lock_key_on(member: &ClusterSilo, owner: &str, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|key| member.owner_of(&GrainId::new(LockGrain::TYPE_NAME, key.as_str())) == owner)
        .expect("some key lands on every member")
}

/// What [`contend`] saw.
#[derive(Debug, Clone)]
pub struct Contention {
    /// Turns taken in all.
    pub turns: usize,
    /// The most holders inside the resource at once.
    pub max_inside: usize,
    /// Entries with a token not larger than an earlier one.
    pub stale_tokens: usize,
    /// Turns that outlasted their lease (the work was too slow for it).
    pub overruns: usize,
    /// The holders that got the lock, `silo/worker`.
    pub holders: HashSet<String>,
}

/// `per_silo` workers on each of `silos` take the lock `key` in turn,
/// `rounds` times each: acquire, use the resource for `hold`, release.
pub async fn contend(
    silos: &[Silo],
    key: &str,
    per_silo: usize,
    rounds: usize,
    lease: Duration,
    hold: Duration,
) -> anyhow::Result<Contention> {
    let resource = Arc::new(Resource::default());
    let overruns = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for silo in silos {
        for w in 0..per_silo {
            let client = LockClient::new(silo, key, format!("{}/worker-{w}", silo.name()), lease);
            let (resource, overruns) = (resource.clone(), overruns.clone());
            workers.push(tokio::spawn(async move {
                for _ in 0..rounds {
                    let Acquired { lease, .. } = client.acquire(Duration::from_secs(60)).await?;
                    {
                        let _inside = resource.enter(&lease);
                        tokio::time::sleep(hold).await;
                        if !lease.is_valid() {
                            overruns.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    // A failed release only delays the next holder by
                    // the rest of the lease.
                    let _ = client.release(lease).await;
                }
                anyhow::Ok(client.holder().to_owned())
            }));
        }
    }
    let mut holders = HashSet::new();
    for w in workers {
        holders.insert(w.await??);
    }
    Ok(Contention {
        turns: resource.uses(),
        max_inside: resource.max_inside(),
        stale_tokens: resource.stale_tokens(),
        overruns: overruns.load(Ordering::SeqCst),
        holders,
    })
}

/// What a [`Keeper`] went through.
#[derive(Debug, Clone, Default)]
pub struct KeeperState {
    /// The token it got.
    pub token: Option<u64>,
    /// The silo the lock grain ran on when it granted.
    pub lock_silo: Option<String>,
    /// When it last sent a request that was granted (its lease runs from
    /// there).
    pub last_granted_send: Option<Instant>,
    /// When it stopped using the resource because its lease ran out.
    pub lost_at: Option<Instant>,
    /// Renewals that failed.
    pub failed_renewals: usize,
}

/// A holder that takes a lock, stays in the resource, and renews its
/// lease until a renewal fails for longer than the lease.
#[derive(Debug)]
pub struct Keeper {
    state: Arc<Mutex<KeeperState>>,
    task: JoinHandle<()>,
}

impl Keeper {
    /// Starts keeping the lock of `client`, using `resource` while it
    /// holds it. Renews eight times per lease.
    pub fn spawn(client: LockClient, resource: Arc<Resource>) -> Keeper {
        let state = Arc::new(Mutex::new(KeeperState::default()));
        let s = state.clone();
        let task = tokio::spawn(async move {
            let Ok(acquired) = client.acquire(Duration::from_secs(60)).await else {
                return;
            };
            let mut lease = acquired.lease;
            let every = client.lease / 8;
            {
                let mut st = s.lock().expect("keeper state poisoned");
                st.token = Some(lease.token);
                st.lock_silo = Some(lease.lock_silo.clone());
                st.last_granted_send = Some(lease.sent_at());
            }
            let inside = resource.enter(&lease);
            loop {
                // Leave the resource the moment the lease ends, even in the
                // middle of a wait or of a slow renewal.
                let deadline = tokio::time::Instant::from_std(lease.valid_until());
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = tokio::time::sleep_until(deadline) => break,
                }
                tokio::select! {
                    renewed = client.renew(&mut lease) => {
                        let mut st = s.lock().expect("keeper state poisoned");
                        match renewed {
                            Ok(()) => st.last_granted_send = Some(lease.sent_at()),
                            Err(_) => st.failed_renewals += 1,
                        }
                    }
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            drop(inside);
            s.lock().expect("keeper state poisoned").lost_at = Some(Instant::now());
        });
        Keeper { state, task }
    }

    /// What it went through so far.
    pub fn state(&self) -> KeeperState {
        self.state.lock().expect("keeper state poisoned").clone()
    }

    /// Waits until it holds the lock.
    pub async fn holding(&self, within: Duration) -> anyhow::Result<KeeperState> {
        let until = Instant::now() + within;
        loop {
            let st = self.state();
            if st.token.is_some() {
                return Ok(st);
            }
            if Instant::now() >= until || self.task.is_finished() {
                bail!("the keeper did not get the lock within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until it has let go of the lock (its lease ran out).
    pub async fn lost(self, within: Duration) -> anyhow::Result<KeeperState> {
        tokio::time::timeout(within, self.task).await??;
        Ok(self.state.lock().expect("keeper state poisoned").clone())
    }

    /// Stops it dead, as its process would if it crashed: no release.
    pub fn kill(self) -> KeeperState {
        self.task.abort();
        self.state()
    }
}

/// What [`holder_dies`] saw.
#[derive(Debug, Clone)]
pub struct HolderDied {
    /// The dead holder's token and lock silo.
    pub dead: KeeperState,
    /// When the holder's silo was killed.
    pub killed_at: Instant,
    /// How the contender got the lock.
    pub next: Acquired,
}

/// The holder's silo dies: a keeper on `victim` holds `key` with leases of
/// `lease`; the victim silo is killed together with the keeper (no
/// release); `contender` then takes the lock, which it gets once the
/// dead holder's lease has run out (plus, if the lock grain lived on the
/// victim too, the cluster's failover and the new activation's settling).
pub async fn holder_dies(
    victim: &ClusterSilo,
    contender: &Silo,
    key: &str,
    lease: Duration,
) -> anyhow::Result<HolderDied> {
    let resource = Arc::new(Resource::default());
    let holder = format!("{}/keeper", victim.silo().name());
    let keeper = Keeper::spawn(
        LockClient::new(victim.silo(), key, holder, lease),
        resource.clone(),
    );
    keeper.holding(Duration::from_secs(30)).await?;
    // Let it renew a few times.
    tokio::time::sleep(lease / 2).await;
    let dead = keeper.kill();
    victim.kill();
    let killed_at = Instant::now();
    let client = LockClient::new(
        contender,
        key,
        format!("{}/contender", contender.name()),
        lease,
    );
    let next = client.acquire(Duration::from_secs(60)).await?;
    let _ = client.release(next.lease.clone()).await;
    Ok(HolderDied {
        dead,
        killed_at,
        next,
    })
}

/// What [`lock_moves`] saw.
#[derive(Debug, Clone)]
pub struct LockMoved {
    /// The first holder, which outlived the lock grain's silo.
    pub keeper: KeeperState,
    /// When the lock grain's silo was killed.
    pub killed_at: Instant,
    /// How the contender got the lock.
    pub next: Acquired,
    /// The most holders inside the resource at once.
    pub max_inside: usize,
    /// Entries with a token not larger than an earlier one.
    pub stale_tokens: usize,
}

/// The lock grain's silo dies while its holder lives: a keeper on
/// `holder` holds `key` (whose grain lives on `victim`) with leases of
/// `lease`; `victim` is killed; the keeper keeps using the resource until
/// its lease runs out (its renewals now fail); a contender on `contender`
/// tries all along and gets the lock from the lock grain's new activation
/// once it has settled, never while the keeper is still inside.
pub async fn lock_moves(
    victim: &ClusterSilo,
    holder: &Silo,
    contender: &Silo,
    key: &str,
    lease: Duration,
) -> anyhow::Result<LockMoved> {
    let resource = Arc::new(Resource::default());
    let keeper = Keeper::spawn(
        LockClient::new(holder, key, format!("{}/keeper", holder.name()), lease),
        resource.clone(),
    );
    keeper.holding(Duration::from_secs(30)).await?;
    tokio::time::sleep(lease / 2).await;
    victim.kill();
    let killed_at = Instant::now();
    let client = LockClient::new(
        contender,
        key,
        format!("{}/contender", contender.name()),
        lease,
    );
    let next = client.acquire(Duration::from_secs(60)).await?;
    let inside = resource.enter(&next.lease);
    drop(inside);
    let _ = client.release(next.lease.clone()).await;
    let keeper = keeper.lost(Duration::from_secs(30)).await?;
    Ok(LockMoved {
        keeper,
        killed_at,
        next,
        max_inside: resource.max_inside(),
        stale_tokens: resource.stale_tokens(),
    })
}
