//! Call layers: async middleware around every turn, in order, able to
//! refuse a call before it runs and to see how it ended.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actor_core::prelude::*;
use actor_core::{CallInfo, CallLayer, Error, IncomingCallFilter, Next, SiloBuilder, TurnOutcome};

#[derive(Default)]
struct Log(Mutex<Vec<String>>);
impl Log {
    fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

struct Account {
    log: Arc<Log>,
    balance: i64,
}
impl Grain for Account {
    const TYPE_NAME: &'static str = "account";
}

#[grain_methods]
impl Account {
    async fn deposit(&mut self, n: i64) -> i64 {
        self.log.push("turn");
        self.balance += n;
        self.balance
    }

    async fn withdraw(&mut self, n: i64) -> Result<i64, String> {
        self.log.push("turn");
        if n > self.balance {
            return Err("insufficient funds".into());
        }
        self.balance -= n;
        Ok(self.balance)
    }

    async fn explode(&mut self) {
        panic!("boom");
    }
}

/// A grain the authorization layer asks: which roles may withdraw.
#[derive(Default)]
struct Policy;
impl Grain for Policy {
    const TYPE_NAME: &'static str = "policy";
}
#[grain_methods]
impl Policy {
    async fn may_withdraw(&self, role: Option<String>) -> bool {
        role.as_deref() == Some("teller")
    }
}

/// Writes `<name> before` / `<name> after ok=..` around the rest.
struct Tag(&'static str, Arc<Log>);
impl CallLayer for Tag {
    async fn call(&self, call: &CallInfo<'_>, next: Next<'_>) -> Result<TurnOutcome, Error> {
        self.1.push(format!("{} before {}", self.0, call.method));
        let outcome = next.run().await?;
        self.1.push(format!("{} after ok={}", self.0, outcome.ok));
        Ok(outcome)
    }
}

/// Authorization that awaits another grain before letting a call in.
struct Authorize;
impl CallLayer for Authorize {
    async fn call(&self, call: &CallInfo<'_>, next: Next<'_>) -> Result<TurnOutcome, Error> {
        if call.grain.grain_type.as_str() == "account" && call.method == "withdraw" {
            let role = call.context.value("role").map(str::to_owned);
            // A layer runs inside the turn's scope: it may call grains.
            let policy = next.silo().get_grain::<Policy>("global");
            if !policy.may_withdraw(role).await? {
                return Err(call.reject("withdraw needs role=teller"));
            }
        }
        next.run().await
    }
}

fn silo_with(layers: impl FnOnce(SiloBuilder) -> SiloBuilder, log: &Arc<Log>) -> SiloBuilder {
    let log = log.clone();
    layers(
        Silo::builder()
            .grain_with(move |_| Account {
                log: log.clone(),
                balance: 0,
            })
            .grain::<Policy>(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_run_in_order_around_the_turn_and_see_its_outcome() {
    let log = Arc::new(Log::default());
    let silo = silo_with(
        |b| {
            b.layer(Tag("outer", log.clone()))
                .layer(Tag("inner", log.clone()))
        },
        &log,
    )
    .start()
    .await
    .unwrap();
    let acct = silo.get_grain::<Account>(1);
    assert_eq!(acct.deposit(5).await.unwrap(), 5);
    assert_eq!(
        log.take(),
        [
            "outer before deposit",
            "inner before deposit",
            "turn",
            "inner after ok=true",
            "outer after ok=true",
        ]
    );
    // A panic is a failed turn for the layers; the caller gets the panic error and the silo lives on.
    assert!(matches!(acct.explode().await, Err(Error::Panicked { .. })));
    assert_eq!(
        log.take(),
        [
            "outer before explode",
            "inner before explode",
            "inner after ok=false",
            "outer after ok=false",
        ]
    );
    assert_eq!(acct.deposit(1).await.unwrap(), 1, "a fresh activation");
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_layer_refuses_a_call_before_it_runs() {
    let log = Arc::new(Log::default());
    let silo = silo_with(|b| b.layer(Authorize), &log)
        .start()
        .await
        .unwrap();
    let acct = silo.get_grain::<Account>(7);
    acct.deposit(10).await.unwrap();
    log.take();

    let err = acct.withdraw(3).await.unwrap_err();
    assert!(
        matches!(&err, Error::Rejected { reason, method, .. }
            if reason == "withdraw needs role=teller" && method == "withdraw"),
        "{err}"
    );
    assert!(log.take().is_empty(), "the refused turn did not run");
    assert_eq!(acct.deposit(0).await.unwrap(), 10, "nothing was withdrawn");
    log.take();

    let ok = RequestContext::new()
        .with("role", "teller")
        .scope(acct.withdraw(3))
        .await
        .unwrap();
    assert_eq!(ok, Ok(7));
    let m = silo.metrics();
    let stats = m.grain_type("account").unwrap();
    let withdraw = stats.method("withdraw").unwrap();
    assert_eq!(
        (withdraw.calls, withdraw.errors),
        (2, 1),
        "the refusal counts as a failed call of the method"
    );
    silo.shutdown().await;
}

/// A layer that panics before `next` fails the call (its caller is
/// answered) and leaves the grain and the silo usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_that_panics_fails_the_call_not_the_silo() {
    struct Buggy;
    impl CallLayer for Buggy {
        async fn call(&self, call: &CallInfo<'_>, next: Next<'_>) -> Result<TurnOutcome, Error> {
            if call.context.value("panic").is_some() {
                panic!("layer bug");
            }
            next.run().await
        }
    }
    let log = Arc::new(Log::default());
    let silo = silo_with(|b| b.layer(Buggy), &log).start().await.unwrap();
    let acct = silo.get_grain::<Account>(3);
    let panicked = tokio::time::timeout(
        Duration::from_secs(10),
        RequestContext::new()
            .with("panic", "1")
            .scope(acct.deposit(1)),
    )
    .await
    .expect("the caller is answered")
    .unwrap_err();
    assert!(
        matches!(&panicked, Error::Panicked { message, .. } if message.contains("layer bug")),
        "{panicked}"
    );
    assert_eq!(
        acct.deposit(2).await.unwrap(),
        2,
        "the refused call did not run"
    );
    assert_eq!(log.take(), ["turn"]);
    silo.shutdown().await;
}

/// Filters (synchronous) run before the layers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_run_before_layers() {
    struct Gate;
    impl IncomingCallFilter for Gate {
        fn on_request(&self, call: &CallInfo<'_>) -> Result<(), String> {
            if call.context.value("closed").is_some() {
                return Err("closed".into());
            }
            Ok(())
        }
    }
    let log = Arc::new(Log::default());
    let silo = silo_with(
        |b| b.incoming_filter(Gate).layer(Tag("layer", log.clone())),
        &log,
    )
    .start()
    .await
    .unwrap();
    let acct = silo.get_grain::<Account>(4);
    let err = RequestContext::new()
        .with("closed", "1")
        .scope(acct.deposit(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Rejected { .. }));
    assert!(
        log.take().is_empty(),
        "the layer never saw the filtered call"
    );
    silo.shutdown().await;
}

/// The reply waits for the layers: what a layer records after the turn is
/// there when the caller resumes, and an error it returns after the turn
/// reaches the caller instead of the reply (the turn's effects stay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reply_waits_for_the_layers_which_may_replace_it_with_an_error() {
    struct Veto(Arc<Log>);
    impl CallLayer for Veto {
        async fn call(&self, call: &CallInfo<'_>, next: Next<'_>) -> Result<TurnOutcome, Error> {
            let outcome = next.run().await?;
            // Something after the turn takes a while (a commit, say).
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.0.push(format!("after {}", call.method));
            if call.context.value("veto").is_some() {
                return Err(call.reject("vetoed after the turn"));
            }
            Ok(outcome)
        }
    }
    let log = Arc::new(Log::default());
    let silo = silo_with(|b| b.layer(Veto(log.clone())), &log)
        .start()
        .await
        .unwrap();
    let acct = silo.get_grain::<Account>(9);
    assert_eq!(acct.deposit(4).await.unwrap(), 4);
    assert_eq!(
        log.take(),
        ["turn", "after deposit"],
        "the layer finished first"
    );
    let vetoed = RequestContext::new()
        .with("veto", "1")
        .scope(acct.deposit(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&vetoed, Error::Rejected { reason, .. } if reason == "vetoed after the turn"),
        "{vetoed}"
    );
    assert_eq!(acct.deposit(0).await.unwrap(), 5, "the vetoed turn had run");
    silo.shutdown().await;
}
