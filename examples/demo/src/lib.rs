//! The demo silo: a few grain types and steady traffic through them, so a
//! newcomer sees activation, turns, errors, timers and deadlock detection
//! at work. `cargo run -p demo` runs it and serves the dashboard at
//! <http://127.0.0.1:8080>.

use std::time::Duration;

use actor_core::prelude::*;
use actor_core::{Error, MetricsSnapshot};
use serde::{Deserialize, Serialize};

/// Counts visits of one page.
#[derive(Default)]
pub struct PageCounter {
    visits: u64,
}
impl Grain for PageCounter {
    const TYPE_NAME: &'static str = "demo.page";
}

impl GrainMethods for PageCounter {
    fn register(m: &mut Methods<Self>) {
        m.add::<Visit, _>();
    }
}

/// Records a visit; answers the new total.
#[derive(Serialize, Deserialize)]
pub struct Visit;
impl Message for Visit {
    type Reply = u64;
    const NAME: &'static str = "visit";
}
impl Handler<Visit> for PageCounter {
    async fn handle(&mut self, _: Visit, _: &GrainContext<Self>) -> u64 {
        self.visits += 1;
        self.visits
    }
}

/// A bank account that refuses overdrafts (a grain's own error).
#[derive(Default)]
pub struct Account {
    balance: i64,
}
impl Grain for Account {
    const TYPE_NAME: &'static str = "demo.account";
}

impl GrainMethods for Account {
    fn register(m: &mut Methods<Self>) {
        m.add::<Transfer, _>();
    }
}

/// Adds (or, negative, withdraws) an amount.
#[derive(Serialize, Deserialize)]
pub struct Transfer(pub i64);
impl Message for Transfer {
    type Reply = Result<i64, String>;
    const NAME: &'static str = "transfer";
    fn is_error(reply: &Self::Reply) -> bool {
        reply.is_err()
    }
}
impl Handler<Transfer> for Account {
    async fn handle(
        &mut self,
        Transfer(amount): Transfer,
        _: &GrainContext<Self>,
    ) -> Result<i64, String> {
        if self.balance + amount < 0 {
            return Err(format!(
                "insufficient funds: balance {}, asked {}",
                self.balance, -amount
            ));
        }
        // A slow back end now and then.
        if amount % 7 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.balance += amount;
        Ok(self.balance)
    }
}

/// A stateless worker that formats greetings, several activations at once.
#[derive(Default)]
pub struct Greeter;
impl Grain for Greeter {
    const TYPE_NAME: &'static str = "demo.greeter";
    fn options() -> GrainOptions {
        GrainOptions::new().stateless_worker(4)
    }
}

impl GrainMethods for Greeter {
    fn register(m: &mut Methods<Self>) {
        m.add::<Greet, _>();
    }
}

/// Greets a name.
#[derive(Serialize, Deserialize)]
pub struct Greet(pub String);
impl Message for Greet {
    type Reply = String;
    const NAME: &'static str = "greet";
}
impl Handler<Greet> for Greeter {
    async fn handle(&mut self, Greet(name): Greet, _: &GrainContext<Self>) -> String {
        let who = RequestContext::get("user").unwrap_or_else(|| "someone".into());
        format!("Hello, {name}! (asked by {who})")
    }
}

/// Two grains that call each other: the cycle fails fast.
#[derive(Default)]
pub struct Ping;
impl Grain for Ping {
    const TYPE_NAME: &'static str = "demo.ping";
}

impl GrainMethods for Ping {
    fn register(m: &mut Methods<Self>) {
        m.add::<Bounce, _>();
    }
}

/// Calls the other grain, which calls back.
#[derive(Serialize, Deserialize)]
pub struct Bounce {
    /// The key of the grain to call, or `None` to answer.
    pub to: Option<i64>,
    /// Who to call next after that.
    pub back: Option<i64>,
}
impl Message for Bounce {
    type Reply = Result<(), Error>;
    const NAME: &'static str = "bounce";
}
impl Handler<Bounce> for Ping {
    async fn handle(&mut self, b: Bounce, ctx: &GrainContext<Self>) -> Result<(), Error> {
        match b.to {
            Some(k) => {
                ctx.get_grain::<Ping>(k)
                    .ask(Bounce {
                        to: b.back,
                        back: None,
                    })
                    .await?
            }
            None => Ok(()),
        }
    }
}

/// A sensor whose timer samples a reading every 100 ms.
#[derive(Default)]
pub struct Sensor {
    samples: u64,
}
impl Grain for Sensor {
    const TYPE_NAME: &'static str = "demo.sensor";
    async fn on_activate(&mut self, ctx: &GrainContext<Self>) -> Result<(), actor_core::BoxError> {
        ctx.register_timer(Duration::ZERO, Duration::from_millis(100), || Sample);
        Ok(())
    }
}

impl GrainMethods for Sensor {
    fn register(m: &mut Methods<Self>) {
        m.add::<Sample, _>().add::<Samples, _>();
    }
}

/// A timer tick.
#[derive(Serialize, Deserialize)]
pub struct Sample;
impl Message for Sample {
    type Reply = ();
    const NAME: &'static str = "sample";
}
impl Handler<Sample> for Sensor {
    async fn handle(&mut self, _: Sample, _: &GrainContext<Self>) {
        self.samples += 1;
    }
}

/// Reads how many samples the sensor took.
#[derive(Serialize, Deserialize)]
pub struct Samples;
impl Message for Samples {
    type Reply = u64;
    const NAME: &'static str = "samples";
}
impl SharedHandler<Samples> for Sensor {
    const INTERLEAVE: Interleave = Interleave::ReadOnly;
    async fn handle(&self, _: Samples, _: &GrainContext<Self>) -> u64 {
        self.samples
    }
}

/// The demo silo's builder: its name and grain types.
pub fn builder() -> actor_core::SiloBuilder {
    Silo::builder()
        .name("demo")
        .grain::<PageCounter>()
        .grain::<Account>()
        .grain::<Greeter>()
        .grain::<Ping>()
        .grain::<Sensor>()
}

/// Starts the demo silo on embedded defaults.
pub async fn build_silo() -> actor_core::Result<Silo> {
    builder().start().await
}

/// Starts the demo silo serving the dashboard as `config` says (what
/// `cargo run -p demo` does, on `127.0.0.1:8080`).
pub async fn build_silo_with_dashboard(
    config: dashboard::DashboardConfig,
) -> actor_core::Result<Silo> {
    use dashboard::SiloBuilderDashboardExt;
    builder().with_dashboard(config).start().await
}

/// What one round of the scenario did.
#[derive(Debug)]
pub struct Round {
    /// Visits recorded on the busiest page.
    pub home_visits: u64,
    /// Transfers refused for insufficient funds.
    pub refused: usize,
    /// A greeting made by a stateless worker.
    pub greeting: String,
    /// The deadlock error the ping/pong cycle produced.
    pub deadlock: Option<Error>,
    /// How long the deadlock took to be reported.
    pub deadlock_after: Duration,
    /// Samples the sensor's timer took so far.
    pub samples: u64,
}

/// Drives one round of traffic through every grain type.
pub async fn run_round(silo: &Silo, round: u64) -> actor_core::Result<Round> {
    let mut home_visits = 0;
    let pages = ["home", "about", "blog", "shop"];
    let mut calls = Vec::new();
    for i in 0..200u64 {
        let page = silo.get_grain::<PageCounter>(pages[(i % 7).min(3) as usize]);
        calls.push(tokio::spawn(async move { page.ask(Visit).await }));
    }
    for c in calls {
        let n = c.await.expect("visit task")?;
        home_visits = home_visits.max(n);
    }
    let mut refused = 0;
    for i in 0..20i64 {
        let account = silo.get_grain::<Account>(i % 5);
        // Some withdrawals overdraw (errors); deposits of 35 hit the slow
        // back end (slow calls, for the dashboard's slowest methods).
        let amount = if (i + round as i64) % 3 == 0 {
            -50
        } else if i % 4 == 1 {
            35
        } else {
            20
        };
        if account.ask(Transfer(amount)).await?.is_err() {
            refused += 1;
        }
    }
    let greeting = RequestContext::new()
        .with("user", "demo-user")
        .scope(silo.get_grain::<Greeter>(0).ask(Greet("grains".into())))
        .await?;
    let started = std::time::Instant::now();
    let deadlock = silo
        .get_grain::<Ping>(1)
        .ask(Bounce {
            to: Some(2),
            back: Some(1),
        })
        .await?
        .err();
    let deadlock_after = started.elapsed();
    let samples = silo.get_grain::<Sensor>("s1").ask(Samples).await?;
    Ok(Round {
        home_visits,
        refused,
        greeting,
        deadlock,
        deadlock_after,
        samples,
    })
}

/// One line of figures from a metrics snapshot.
pub fn summary(m: &MetricsSnapshot) -> String {
    let mut errors = 0;
    for t in &m.grain_types {
        errors += t.methods.iter().map(|x| x.errors).sum::<u64>();
    }
    format!(
        "activations={} calls={} errors={} types=[{}]",
        m.total_activations(),
        m.total_calls(),
        errors,
        m.grain_types
            .iter()
            .map(|t| format!("{}:{}", t.grain_type, t.activations))
            .collect::<Vec<_>>()
            .join(" ")
    )
}
