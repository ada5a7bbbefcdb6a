//! # Course exercise 23: testing a grain
//!
//! **The original** (ProjectToTest) is an xUnit project testing an Orleans
//! grain three ways. A unit test checks the grain's logic. A second test
//! replaces a service the grain gets through dependency injection with a mock,
//! then checks that the grain called the service as expected and handled its failure.
//! A third test runs the grain in an in-memory `TestCluster` of two silos. The lesson:
//! a grain is ordinary code with injected dependencies. It can be tested in
//! isolation, with its collaborators replaced, without a cluster.
//!
//! **The grain version** is a [`ConverterGrain`] that converts money through
//! an [`ExchangeRates`] service. The service is a trait, handed to the grain by
//! the silo's factory (`SiloBuilder::grain_with(move |_|
//! ConverterGrain::new(rates.clone()))`), which plays the role of .NET's
//! dependency injection. The grain's logic is a plain method,
//! [`ConverterGrain::convert`], so a test can call it on a value without a
//! silo. [`build_silo`] is the one-silo harness, taking whichever
//! `ExchangeRates` the test wants: [`FixedRates`] (the real, in-process
//! implementation) or a hand-written mock that records its calls and can
//! fail. A failing service becomes the grain's own error,
//! [`ConvertError::RatesUnavailable`], inside the reply, kept apart from the
//! runtime's errors. The third test runs the same grain on an in-memory
//! `TestCluster` of two silos (`actor-testkit`), called through a cluster
//! client, as production would.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use actor_core::prelude::*;
use serde::{Deserialize, Serialize};

/// The service the grain depends on: exchange rates between currencies.
///
/// It is synchronous because the real implementation is an in-process
/// table. A remote service would return a future; the tests would be the
/// same.
pub trait ExchangeRates: Send + Sync + 'static {
    /// How many units of `to` one unit of `from` buys (currency codes in
    /// upper case).
    fn rate(&self, from: &str, to: &str) -> Result<f64, RatesError>;
}

/// The rates service could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatesError(pub String);

impl fmt::Display for RatesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RatesError {}

/// The real service: a fixed table of rates against the euro.
#[derive(Debug, Clone)]
pub struct FixedRates {
    per_eur: HashMap<&'static str, f64>,
}

impl Default for FixedRates {
    fn default() -> Self {
        let per_eur = [
            ("EUR", 1.0),
            ("USD", 1.08),
            ("GBP", 0.85),
            ("CHF", 0.94),
            ("DKK", 7.46),
        ];
        FixedRates {
            per_eur: per_eur.into_iter().collect(),
        }
    }
}

impl ExchangeRates for FixedRates {
    fn rate(&self, from: &str, to: &str) -> Result<f64, RatesError> {
        let per_eur = |code: &str| {
            self.per_eur
                .get(code)
                .copied()
                .ok_or_else(|| RatesError(format!("no rate for {code}")))
        };
        Ok(per_eur(to)? / per_eur(from)?)
    }
}

/// An amount of money in cents of a currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// The amount in cents.
    pub cents: i64,
    /// The currency code, upper case.
    pub currency: String,
}

impl Money {
    /// `cents` of `currency`.
    pub fn new(cents: i64, currency: &str) -> Self {
        Money {
            cents,
            currency: currency.to_owned(),
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.cents < 0 { "-" } else { "" };
        let abs = self.cents.unsigned_abs();
        write!(f, "{sign}{}.{:02} {}", abs / 100, abs % 100, self.currency)
    }
}

/// Convert an amount from one currency to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Convert {
    /// The amount in cents of `from`.
    pub cents: i64,
    /// The currency converted from (any case).
    pub from: String,
    /// The currency converted to (any case).
    pub to: String,
}

impl Convert {
    /// Convert `cents` of `from` into `to`.
    pub fn new(cents: i64, from: &str, to: &str) -> Self {
        Convert {
            cents,
            from: from.to_owned(),
            to: to.to_owned(),
        }
    }
}

impl Message for Convert {
    type Reply = Result<Money, ConvertError>;
    const NAME: &'static str = "convert";
    fn is_error(reply: &Self::Reply) -> bool {
        reply.is_err()
    }
}

/// The grain's own failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConvertError {
    /// Negative amounts are not converted.
    NegativeAmount,
    /// The rates service failed; its message.
    RatesUnavailable(String),
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::NegativeAmount => f.write_str("cannot convert a negative amount"),
            ConvertError::RatesUnavailable(e) => write!(f, "exchange rates unavailable: {e}"),
        }
    }
}

impl std::error::Error for ConvertError {}

/// How many conversions this grain has made.
#[derive(Debug, Serialize, Deserialize)]
pub struct Conversions;

impl Message for Conversions {
    type Reply = u64;
    const NAME: &'static str = "conversions";
}

/// A currency converter for one customer (type name `converter`, keyed by
/// customer). It counts the conversions it made.
pub struct ConverterGrain {
    rates: Arc<dyn ExchangeRates>,
    conversions: u64,
}

impl fmt::Debug for ConverterGrain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConverterGrain")
            .field("conversions", &self.conversions)
            .finish_non_exhaustive()
    }
}

impl Grain for ConverterGrain {
    const TYPE_NAME: &'static str = "converter";
}

impl GrainMethods for ConverterGrain {
    // Listed for calls that arrive serialized, from another silo or a
    // cluster client (the two-silo test).
    fn register(m: &mut Methods<Self>) {
        m.add::<Convert, _>().add::<Conversions, _>();
    }
}

impl ConverterGrain {
    /// A converter using `rates`.
    pub fn new(rates: Arc<dyn ExchangeRates>) -> Self {
        ConverterGrain {
            rates,
            conversions: 0,
        }
    }

    /// The grain's logic, callable without a silo. Refuses negative amounts,
    /// converts a currency to itself without asking the service, rounds to
    /// the cent.
    pub fn convert(&mut self, request: &Convert) -> Result<Money, ConvertError> {
        if request.cents < 0 {
            return Err(ConvertError::NegativeAmount);
        }
        let from = request.from.to_uppercase();
        let to = request.to.to_uppercase();
        let rate = if from == to {
            1.0
        } else {
            self.rates
                .rate(&from, &to)
                .map_err(|e| ConvertError::RatesUnavailable(e.to_string()))?
        };
        self.conversions += 1;
        Ok(Money {
            cents: (request.cents as f64 * rate).round() as i64,
            currency: to,
        })
    }

    /// How many conversions succeeded.
    pub fn conversions(&self) -> u64 {
        self.conversions
    }
}

impl Handler<Convert> for ConverterGrain {
    async fn handle(
        &mut self,
        msg: Convert,
        _: &GrainContext<Self>,
    ) -> Result<Money, ConvertError> {
        self.convert(&msg)
    }
}

impl SharedHandler<Conversions> for ConverterGrain {
    const INTERLEAVE: Interleave = Interleave::ReadOnly;
    async fn handle(&self, _: Conversions, _: &GrainContext<Self>) -> u64 {
        self.conversions()
    }
}

/// Starts a silo whose converter grains use `rates`: the real service in
/// `main`, a mock in the tests.
pub async fn build_silo(rates: Arc<dyn ExchangeRates>) -> actor_core::Result<Silo> {
    Silo::builder()
        .name("testing")
        .grain_with::<ConverterGrain>(move |_| ConverterGrain::new(rates.clone()))
        .start()
        .await
}

/// What the scenario did.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Each request with the grain's reply.
    pub replies: Vec<(Convert, Result<Money, ConvertError>)>,
    /// The grain's count of successful conversions afterwards.
    pub conversions: u64,
}

/// Sends a few conversions to alice's converter, one of them to a currency
/// the service does not know.
pub async fn run_scenario(silo: &Silo) -> actor_core::Result<Scenario> {
    let alice = silo.get_grain::<ConverterGrain>("alice");
    let requests = [
        Convert::new(10_000, "EUR", "USD"),
        Convert::new(2_550, "gbp", "dkk"),
        Convert::new(1_999, "CHF", "CHF"),
        Convert::new(-500, "EUR", "USD"),
        Convert::new(500, "EUR", "XYZ"),
    ];
    let mut replies = Vec::with_capacity(requests.len());
    for request in requests {
        let reply = alice.ask(request.clone()).await?;
        replies.push((request, reply));
    }
    let conversions = alice.ask(Conversions).await?;
    Ok(Scenario {
        replies,
        conversions,
    })
}
