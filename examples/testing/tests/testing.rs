//! The original's tests: the grain's logic alone and on a one-silo harness,
//! the grain against a mock of its service, and the grain on an in-memory
//! cluster of two silos.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actor_testkit::TestCluster;
use example_testing::{
    Conversions, Convert, ConvertError, ConverterGrain, ExchangeRates, FixedRates, Money,
    RatesError, build_silo,
};

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("the grain did not answer in time")
}

/// A hand-written mock: answers every call with `reply` and records it.
struct MockRates {
    reply: Result<f64, RatesError>,
    calls: Mutex<Vec<(String, String)>>,
}

impl MockRates {
    fn answering(reply: Result<f64, RatesError>) -> Arc<Self> {
        Arc::new(MockRates {
            reply,
            calls: Mutex::default(),
        })
    }

    fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().unwrap().clone()
    }
}

impl ExchangeRates for MockRates {
    fn rate(&self, from: &str, to: &str) -> Result<f64, RatesError> {
        self.calls.lock().unwrap().push((from.into(), to.into()));
        self.reply.clone()
    }
}

// 1. Unit tests: the grain's logic, without and with a silo.

#[test]
fn converts_at_the_rate_rounding_to_cents() {
    let mut grain = ConverterGrain::new(Arc::new(FixedRates::default()));
    let reply = grain.convert(&Convert::new(10_000, "EUR", "usd"));
    assert_eq!(reply, Ok(Money::new(10_800, "USD")));
    let reply = grain.convert(&Convert::new(-1, "EUR", "USD"));
    assert_eq!(reply, Err(ConvertError::NegativeAmount));
    assert_eq!(grain.conversions(), 1);
}

#[tokio::test]
async fn converts_on_a_silo() {
    let silo = build_silo(Arc::new(FixedRates::default())).await.unwrap();
    let alice = silo.get_grain::<ConverterGrain>("alice");
    let reply = within(alice.ask(Convert::new(10_000, "EUR", "USD"))).await;
    assert_eq!(reply, Ok(Ok(Money::new(10_800, "USD"))));
    assert_eq!(within(alice.ask(Conversions)).await, Ok(1));
}

// 2. The service mocked.

#[tokio::test]
async fn asks_the_service_for_the_rate_it_needs() {
    let rates = MockRates::answering(Ok(2.0));
    let silo = build_silo(rates.clone()).await.unwrap();
    let bob = silo.get_grain::<ConverterGrain>("bob");
    let reply = within(bob.ask(Convert::new(150, "usd", "chf"))).await;
    assert_eq!(reply, Ok(Ok(Money::new(300, "CHF"))));
    let reply = within(bob.ask(Convert::new(150, "CHF", "CHF"))).await;
    assert_eq!(reply, Ok(Ok(Money::new(150, "CHF"))));
    // Once, with upper-case codes; not at all for CHF -> CHF.
    assert_eq!(rates.calls(), [("USD".to_owned(), "CHF".to_owned())]);
}

#[tokio::test]
async fn a_failing_service_gives_an_error_reply() {
    let rates = MockRates::answering(Err(RatesError("rates feed down".into())));
    let silo = build_silo(rates.clone()).await.unwrap();
    let carol = silo.get_grain::<ConverterGrain>("carol");
    let reply = within(carol.ask(Convert::new(100, "EUR", "USD"))).await;
    let expected = ConvertError::RatesUnavailable("rates feed down".into());
    assert_eq!(reply, Ok(Err(expected)));
    assert_eq!(rates.calls().len(), 1);
    assert_eq!(within(carol.ask(Conversions)).await, Ok(0));
}

// 3. An in-memory cluster of two silos, called through a client.

#[tokio::test]
async fn converts_on_a_two_silo_cluster() {
    let cluster = TestCluster::builder()
        .configure(|_, silo| {
            silo.grain_with(|_| ConverterGrain::new(Arc::new(FixedRates::default())))
        })
        .build()
        .await
        .unwrap();
    let alice = cluster.get_grain::<ConverterGrain>("alice");
    let reply = within(alice.ask(Convert::new(10_000, "EUR", "USD"))).await;
    assert_eq!(reply, Ok(Ok(Money::new(10_800, "USD"))));
    assert_eq!(within(alice.ask(Conversions)).await, Ok(1));
    assert_eq!(
        cluster.total_activations(),
        1,
        "one activation in the cluster"
    );
}
