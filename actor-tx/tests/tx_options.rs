//! Transactions on one silo: commit, user abort, read-only commits, and
//! the semantics of every transaction option.

mod common;

use std::time::Duration;

use actor_core::prelude::*;
use actor_tx::{AbortReason, Error, MemoryTxStorage, SiloBuilderTransactionsExt, run_transaction};
use common::{Account, AccountRef};

async fn silo() -> Silo {
    Account::register(Silo::builder().with_transactions(MemoryTxStorage::new()))
        .start()
        .await
        .unwrap()
}

async fn balance(silo: &Silo, key: &str) -> i64 {
    silo.get_grain::<Account>(key)
        .read_or_create()
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_transfer_commits_on_both_sides() {
    let silo = silo().await;
    let (a, b) = (
        silo.get_grain::<Account>("a"),
        silo.get_grain::<Account>("b"),
    );
    assert_eq!(a.deposit_alone(100).await.unwrap().unwrap(), 100);
    run_transaction(&silo, || async {
        a.change(-30).await??;
        b.change(30).await??;
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(
        (balance(&silo, "a").await, balance(&silo, "b").await),
        (70, 30)
    );
    assert_eq!(
        a.audit().await.unwrap().unwrap(),
        vec![-30],
        "the second state committed too"
    );
    let m = actor_tx::SiloTransactionsExt::transaction_metrics(&silo);
    assert!(
        m.committed >= 2,
        "the transfer and the seed were managed here: {m:?}"
    );
    assert!(m.lock_waits >= 4, "{m:?}");
    silo.shutdown().await;
}

#[tokio::test]
async fn an_overdraw_aborts_both_sides() {
    let silo = silo().await;
    let (a, b) = (
        silo.get_grain::<Account>("a"),
        silo.get_grain::<Account>("b"),
    );
    a.deposit_alone(10).await.unwrap().unwrap();
    // The deposit runs first, so the abort must undo a write that happened.
    let err = run_transaction(&silo, || async {
        b.change(50).await??;
        a.change(-50).await??;
        Ok(())
    })
    .await
    .unwrap_err();
    match &err {
        Error::Aborted {
            reason: AbortReason::User(why),
            ..
        } => {
            assert!(why.contains("overdrawn"), "{why}")
        }
        other => panic!("expected a user abort, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(
        (balance(&silo, "a").await, balance(&silo, "b").await),
        (10, 0)
    );
    assert!(b.audit().await.unwrap().unwrap().is_empty());
    silo.shutdown().await;
}

#[tokio::test]
async fn an_error_returned_by_the_closure_aborts() {
    let silo = silo().await;
    let a = silo.get_grain::<Account>("a");
    let err = run_transaction(&silo, || async {
        a.change(5).await??;
        Err::<(), _>(Error::user("changed my mind"))
    })
    .await
    .unwrap_err();
    assert_eq!(
        err.abort_reason(),
        Some(&AbortReason::User("changed my mind".into()))
    );
    assert_eq!(balance(&silo, "a").await, 0);
    silo.shutdown().await;
}

#[tokio::test]
async fn a_read_only_transaction_commits_and_releases_its_locks() {
    let silo = silo().await;
    let (a, b) = (
        silo.get_grain::<Account>("a"),
        silo.get_grain::<Account>("b"),
    );
    a.deposit_alone(3).await.unwrap().unwrap();
    let total = run_transaction(&silo, || async {
        Ok(a.balance().await??.balance + b.balance().await??.balance)
    })
    .await
    .unwrap();
    assert_eq!(total, 3);
    for key in ["a", "b"] {
        let id = GrainId::new("account", key);
        let status = actor_tx::lock_status(&silo, &id, "balance").await.unwrap();
        assert!(status.is_free(), "{key}: {status:?}");
    }
    silo.shutdown().await;
}

#[tokio::test]
async fn join_outside_a_transaction_fails_clearly() {
    let silo = silo().await;
    let a = silo.get_grain::<Account>("a");
    let err = a.change(1).await.unwrap_err();
    assert!(
        matches!(err, Error::NotInTransaction { ref method } if method == "change"),
        "{err:?}"
    );
    assert!(err.to_string().contains("run_transaction"), "{err}");
    // State accessed from a plain method is refused the same way.
    let err = a.plain_read().await.unwrap().unwrap_err();
    assert!(matches!(err, Error::NotInTransaction { .. }), "{err:?}");
    silo.shutdown().await;
}

#[tokio::test]
async fn create_runs_its_own_transaction_even_inside_another() {
    let silo = silo().await;
    let (a, b) = (
        silo.get_grain::<Account>("a"),
        silo.get_grain::<Account>("b"),
    );
    // The outer transaction aborts; the inner `create` one committed.
    let _ = run_transaction(&silo, || async {
        b.change(1).await??;
        a.deposit_alone(5).await??;
        Err::<(), _>(Error::user("outer aborts"))
    })
    .await
    .unwrap_err();
    assert_eq!(
        (balance(&silo, "a").await, balance(&silo, "b").await),
        (5, 0)
    );
    silo.shutdown().await;
}

#[tokio::test]
async fn create_or_join_joins_inside_and_creates_outside() {
    let silo = silo().await;
    let a = silo.get_grain::<Account>("a");
    a.deposit_alone(4).await.unwrap().unwrap();
    assert_eq!(a.read_or_create().await.unwrap().unwrap(), 4); // its own transaction
    let seen = run_transaction(&silo, || async {
        a.change(1).await??;
        // Joins: sees the outer transaction's uncommitted write.
        a.read_or_create().await?
    })
    .await
    .unwrap();
    assert_eq!(seen, 5);
    silo.shutdown().await;
}

#[tokio::test]
async fn supported_suppress_and_not_allowed() {
    let silo = silo().await;
    let a = silo.get_grain::<Account>("a");
    assert_eq!(a.supported().await.unwrap(), None);
    assert_eq!(a.suppressed().await.unwrap(), None);
    assert_eq!(a.outside_only().await.unwrap(), 7);
    let (inside, suppressed, not_allowed, suppressed_read) = run_transaction(&silo, || async {
        let tx = actor_tx::current_transaction().unwrap().to_string();
        let inside = a.supported().await?;
        assert_eq!(inside.as_deref(), Some(tx.as_str()));
        Ok((
            inside,
            a.suppressed().await?,
            a.outside_only().await,
            a.suppressed_read().await?,
        ))
    })
    .await
    .unwrap();
    assert!(inside.is_some());
    assert_eq!(
        suppressed, None,
        "a suppressed call does not see the transaction"
    );
    assert!(
        matches!(not_allowed, Err(Error::NotAllowed { .. })),
        "{not_allowed:?}"
    );
    assert!(
        matches!(suppressed_read, Err(Error::NotInTransaction { .. })),
        "{suppressed_read:?}"
    );
    silo.shutdown().await;
}

#[tokio::test]
async fn a_transaction_can_run_inside_a_grain() {
    // A transfer grain: its plain method runs a transaction of its own.
    #[derive(Default)]
    struct Teller;
    impl Grain for Teller {
        const TYPE_NAME: &'static str = "teller";
    }
    #[grain_methods]
    impl Teller {
        async fn transfer(
            &self,
            from: String,
            to: String,
            n: i64,
            ctx: &GrainContext<Self>,
        ) -> actor_tx::Result<()> {
            let (from, to) = (
                ctx.get_grain::<Account>(from.as_str()),
                ctx.get_grain::<Account>(to.as_str()),
            );
            run_transaction(ctx, || async {
                from.change(-n).await??;
                to.change(n).await??;
                Ok(())
            })
            .await
        }
    }
    let silo = Account::register(Silo::builder().with_transactions(MemoryTxStorage::new()))
        .grain::<Teller>()
        .start()
        .await
        .unwrap();
    silo.get_grain::<Account>("a")
        .deposit_alone(9)
        .await
        .unwrap()
        .unwrap();
    let teller = silo.get_grain::<Teller>("t");
    teller
        .transfer("a".into(), "b".into(), 4)
        .await
        .unwrap()
        .unwrap();
    let err = teller
        .transfer("a".into(), "b".into(), 40)
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.is_aborted());
    assert_eq!(
        (balance(&silo, "a").await, balance(&silo, "b").await),
        (5, 4)
    );
    tokio::time::timeout(Duration::from_secs(5), silo.shutdown())
        .await
        .unwrap();
}
