//! # async/await: many calls in flight, one turn at a time
//!
//! The course's second exercise (*AsyncAwait*) repeats the producer and
//! consumer of the first with `async`/`await`: a call no longer blocks a
//! thread while it waits, so one caller can have many calls outstanding at
//! once, and the thread is free for other work meanwhile.
//!
//! Here one client starts a thousand [`Square`] calls to a single
//! [`Consumer`] grain without awaiting any of them first, then awaits them
//! all together (`futures::future::join_all`): every call is a future, none
//! holds a thread, and the test runs the whole thing on a single-threaded
//! runtime. The consumer is still an actor: its turns run one at a time, in
//! the order the calls were queued. A shared [`TurnProbe`] counts the turns
//! running at each moment and keeps the maximum; the client counts its
//! calls in flight the same way. The lesson is the pair of numbers: many
//! calls in flight, one turn at a time.
//!
//! [`build_silo`] and [`run_scenario`] are shared by `main.rs` and the
//! tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actor_core::prelude::*;
use serde::{Deserialize, Serialize};

/// Counts the consumer's turns running at once and the activations built,
/// across every activation of the grain type: if the runtime ever ran two
/// turns of one grain side by side (or two activations of one id), the
/// maximum would show it.
#[derive(Debug, Default)]
pub struct TurnProbe {
    running: AtomicUsize,
    max_running: AtomicUsize,
    activations: AtomicUsize,
}

impl TurnProbe {
    /// A fresh probe.
    pub fn new() -> Arc<Self> {
        Arc::new(TurnProbe::default())
    }

    /// Marks a turn as started; returns a guard that marks it ended.
    pub fn enter(&self) -> TurnGuard<'_> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        TurnGuard(self)
    }

    /// The most turns ever seen running at once.
    pub fn max_concurrent_turns(&self) -> usize {
        self.max_running.load(Ordering::SeqCst)
    }

    /// How many consumer activations were built.
    pub fn activations(&self) -> usize {
        self.activations.load(Ordering::SeqCst)
    }
}

/// Ends a turn in its [`TurnProbe`] when dropped.
#[derive(Debug)]
pub struct TurnGuard<'a>(&'a TurnProbe);

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Asks the consumer to square a number.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Square(pub u64);

/// The consumer's answer to [`Square`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Squared {
    /// The number sent.
    pub input: u64,
    /// Its square.
    pub output: u64,
    /// Which turn of the consumer answered, from 1.
    pub turn: u64,
}

impl Message for Square {
    type Reply = Squared;
    const NAME: &'static str = "square";
}

/// Asks the consumer how many turns it ran and the sum of its inputs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Totals;

/// The consumer's answer to [`Totals`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerTotals {
    /// [`Square`] turns run.
    pub turns: u64,
    /// The sum of all inputs.
    pub sum: u64,
}

impl Message for Totals {
    type Reply = ConsumerTotals;
    const NAME: &'static str = "totals";
}

/// The consumer grain. Its [`Square`] handler is an exclusive turn
/// (`&mut self`) that yields to the scheduler in the middle, so that any
/// overlap of turns would be seen by the probe.
#[derive(Debug)]
pub struct Consumer {
    probe: Arc<TurnProbe>,
    turns: u64,
    sum: u64,
}

impl Grain for Consumer {
    const TYPE_NAME: &'static str = "consumer";
}

impl GrainMethods for Consumer {
    fn register(m: &mut Methods<Self>) {
        m.add::<Square, _>().add::<Totals, _>();
    }
}

impl Handler<Square> for Consumer {
    async fn handle(&mut self, Square(n): Square, _ctx: &GrainContext<Self>) -> Squared {
        let _turn = self.probe.enter();
        self.turns += 1;
        let turn = self.turns;
        // Give every other task (and any other turn, were one allowed to
        // start) the chance to run while this turn is in progress.
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        self.sum += n;
        Squared {
            input: n,
            output: n * n,
            turn,
        }
    }
}

impl SharedHandler<Totals> for Consumer {
    const INTERLEAVE: Interleave = Interleave::ReadOnly;
    async fn handle(&self, _: Totals, _ctx: &GrainContext<Self>) -> ConsumerTotals {
        ConsumerTotals {
            turns: self.turns,
            sum: self.sum,
        }
    }
}

/// Starts a silo whose [`Consumer`] grains report to `probe`.
pub async fn build_silo(probe: Arc<TurnProbe>) -> actor_core::Result<Silo> {
    Silo::builder()
        .name("async-await")
        .grain_with::<Consumer>(move |_| {
            probe.activations.fetch_add(1, Ordering::SeqCst);
            Consumer {
                probe: probe.clone(),
                turns: 0,
                sum: 0,
            }
        })
        .start()
        .await
}

/// What a run of the scenario produced.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The replies, in the order the calls were made (call `i` sent `i`).
    pub replies: Vec<Squared>,
    /// The most calls the client had sent and not yet seen answered.
    pub max_in_flight: u64,
    /// The most consumer turns the probe saw running at once.
    pub max_concurrent_turns: usize,
    /// Consumer activations built so far.
    pub activations: usize,
    /// The consumer's own totals after the run.
    pub totals: ConsumerTotals,
    /// Wall time of the calls.
    pub elapsed: Duration,
}

/// Starts `calls` [`Square`] calls (of `0..calls`) to the consumer `key`
/// from one task, all in flight together, and awaits them all.
pub async fn run_scenario(
    silo: &Silo,
    probe: &TurnProbe,
    key: &str,
    calls: u64,
) -> anyhow::Result<Summary> {
    let consumer = silo.get_grain::<Consumer>(key);
    let in_flight = AtomicU64::new(0);
    let max_in_flight = AtomicU64::new(0);
    let started = Instant::now();
    let replies = futures::future::join_all((0..calls).map(|n| {
        let (consumer, in_flight, max_in_flight) = (&consumer, &in_flight, &max_in_flight);
        async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            max_in_flight.fetch_max(now, Ordering::SeqCst);
            let reply = consumer.ask(Square(n)).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            reply
        }
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    let elapsed = started.elapsed();
    let totals = consumer.ask(Totals).await?;
    Ok(Summary {
        replies,
        max_in_flight: max_in_flight.load(Ordering::SeqCst),
        max_concurrent_turns: probe.max_concurrent_turns(),
        activations: probe.activations(),
        totals,
        elapsed,
    })
}
