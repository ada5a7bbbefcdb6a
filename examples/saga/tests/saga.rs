//! The order saga: accepted, cancelled with compensation, and resumed by
//! its reminder after a silo restart, with the books consistent (read back
//! with sqlx from the SQLite file, as any client would).

use std::path::{Path, PathBuf};
use std::time::Duration;

use actor_core::GrainId;
use actor_persistence::{PersistentState, SqliteStorage, StorageProvider};
use example_saga::{
    AccountRef, AccountState, InventoryRef, InventoryReply, Order, OrderSagaRef, OrderStatus,
    PaymentGateway, STATE_NAME, SagaState, Shop, Step, StockState, check_consistency, play,
};
use tempfile::TempDir;

const BOUND: Duration = Duration::from_secs(60);

fn db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("saga.db");
    (dir, path)
}

fn order(id: &str, customer: &str, quantity: u32) -> Order {
    Order {
        id: id.into(),
        customer: customer.into(),
        sku: "widget".into(),
        quantity,
        unit_price: 100,
    }
}

/// A shop with 10 widgets, alice with 1000 and bob with 50.
async fn open_shop(db: &Path, gateway: PaymentGateway) -> Shop {
    let shop = Shop::start("test", db, gateway).await.unwrap();
    shop.inventory("widget").restock(10).await.unwrap().unwrap();
    shop.account("alice").deposit(1000).await.unwrap().unwrap();
    shop.account("bob").deposit(50).await.unwrap().unwrap();
    shop
}

/// A grain's stored state, read with sqlx straight from the file.
async fn stored<T: serde::de::DeserializeOwned>(db: &Path, grain_id: &str) -> T {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", db.display()))
        .await
        .unwrap();
    let (json,): (String,) = sqlx::query_as(
        "SELECT CAST(payload AS TEXT) FROM grain_state WHERE grain_id = ?1 AND state_name = ?2",
    )
    .bind(grain_id)
    .bind(STATE_NAME)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    serde_json::from_str(&json).unwrap()
}

async fn stock(db: &Path) -> StockState {
    stored(db, "inventory/s:widget").await
}

async fn account(db: &Path, customer: &str) -> AccountState {
    stored(db, &format!("account/s:{customer}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_with_stock_and_money_is_accepted() {
    tokio::time::timeout(BOUND, async {
        let (_dir, db) = db();
        let shop = open_shop(&db, PaymentGateway::new()).await;
        let o = order("o-1", "alice", 3);
        let view = shop.saga("o-1").submit(o.clone()).await.unwrap().unwrap();
        assert_eq!(view.status, OrderStatus::Accepted);
        assert_eq!(view.waiting_on, None);
        assert_eq!(view.history.len(), 4, "{:#?}", view.history);
        assert!(view.history[1].starts_with("Pending: reserve stock"));
        // Submitting again changes nothing.
        let again = shop.saga("o-1").submit(o.clone()).await.unwrap().unwrap();
        assert_eq!(again, view);
        // Another order under the same id is refused.
        let other = order("o-1", "bob", 1);
        assert!(shop.saga("o-1").submit(other).await.unwrap().is_err());
        shop.stop().await;

        let s = stock(&db).await;
        assert_eq!(s.available, 7);
        assert_eq!(s.reservations.get("o-1"), Some(&3));
        let a = account(&db, "alice").await;
        assert_eq!(a.balance, 700);
        assert_eq!(a.charges.get("o-1"), Some(&300));
        let saga: SagaState = stored(&db, "order-saga/s:o-1").await;
        assert_eq!(saga.status, OrderStatus::Accepted);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_payment_releases_the_reserved_stock() {
    tokio::time::timeout(BOUND, async {
        let (_dir, db) = db();
        let shop = open_shop(&db, PaymentGateway::new()).await;
        let view = shop
            .saga("o-2")
            .submit(order("o-2", "bob", 2))
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(&view.status, OrderStatus::Cancelled { reason, compensated: true }
                if reason.contains("insufficient funds")),
            "{:?}",
            view.status
        );
        assert!(
            view.history
                .iter()
                .any(|l| l.starts_with("inventory: processed")),
            "the stock was reserved before the payment failed: {:#?}",
            view.history
        );
        assert!(
            view.history.iter().any(|l| l.contains("released 2")),
            "{:#?}",
            view.history
        );
        shop.stop().await;

        let s = stock(&db).await;
        assert_eq!(s.available, 10, "the reservation was given back");
        assert!(s.reservations.is_empty());
        assert!(s.released.contains("o-2"));
        let b = account(&db, "bob").await;
        assert_eq!(b.balance, 50);
        assert!(b.charges.is_empty());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_stock_is_cancelled_by_the_inventory_without_compensation() {
    tokio::time::timeout(BOUND, async {
        let (_dir, db) = db();
        let shop = open_shop(&db, PaymentGateway::new()).await;
        let view = shop
            .saga("o-3")
            .submit(order("o-3", "alice", 11))
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(&view.status, OrderStatus::Cancelled { reason, compensated: false }
                if reason.starts_with("out of stock")),
            "{:?}",
            view.status
        );
        assert_eq!(
            shop.inventory("widget").stock().await.unwrap().available,
            10
        );
        assert_eq!(shop.account("alice").account().await.unwrap().balance, 1000);
        shop.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_cancel_while_pending_compensates() {
    tokio::time::timeout(BOUND, async {
        let (_dir, db) = db();
        let gateway = PaymentGateway::new();
        let shop = open_shop(&db, gateway.clone()).await;
        gateway.set_online(false);
        let view = shop
            .saga("o-4")
            .submit(order("o-4", "alice", 4))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.status, OrderStatus::Pending(Step::ChargePayment));
        assert!(view.waiting_on.unwrap().contains("offline"));
        assert_eq!(shop.inventory("widget").stock().await.unwrap().available, 6);

        let view = shop
            .saga("o-4")
            .cancel("changed my mind".into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            view.status,
            OrderStatus::Cancelled {
                reason: "changed my mind".into(),
                compensated: true
            }
        );
        // Back online, the old saga does not come back to life.
        gateway.set_online(true);
        tokio::time::sleep(example_saga::RETRY_EVERY * 3).await;
        let s = shop.inventory("widget").stock().await.unwrap();
        assert_eq!((s.available, s.reservations.len()), (10, 0));
        assert_eq!(shop.account("alice").account().await.unwrap().balance, 1000);
        // An accepted order cannot be cancelled.
        shop.saga("o-5")
            .submit(order("o-5", "alice", 1))
            .await
            .unwrap()
            .unwrap();
        let view = shop
            .saga("o-5")
            .cancel("too late".into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.status, OrderStatus::Accepted);
        shop.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_saga_resumes_on_its_own_after_a_silo_restart() {
    tokio::time::timeout(BOUND, async {
        let (_dir, db) = db();
        let gateway = PaymentGateway::new();
        let shop = open_shop(&db, gateway.clone()).await;
        gateway.set_online(false);
        let view = shop
            .saga("o-6")
            .submit(order("o-6", "alice", 3))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.status, OrderStatus::Pending(Step::ChargePayment));
        // Ticks come and go while the gateway is down: still pending.
        tokio::time::sleep(example_saga::RETRY_EVERY * 3).await;
        let saga: SagaState = stored(&db, "order-saga/s:o-6").await;
        assert_eq!(saga.status, OrderStatus::Pending(Step::ChargePayment));
        shop.stop().await;

        gateway.set_online(true);
        let shop = Shop::start("restarted", &db, gateway).await.unwrap();
        let id = GrainId::new("order-saga", "o-6");
        assert!(!shop.silo().is_active(&id));
        // Nobody calls the saga: its reminder activates it on this silo.
        let done = shop
            .wait_until_final("o-6", Duration::from_secs(15))
            .await
            .unwrap();
        assert_eq!(done.status, OrderStatus::Accepted, "{:#?}", done.history);
        assert!(shop.silo().is_active(&id));
        shop.stop().await;

        let s = stock(&db).await;
        assert_eq!(s.available, 7, "reserved once");
        assert_eq!(s.reservations.len(), 1);
        let a = account(&db, "alice").await;
        assert_eq!(a.balance, 700, "charged once");
    })
    .await
    .unwrap();
}

/// The worst place to die: the inventory reserved, but the saga's record
/// of it was lost (the silo died between the inventory's write and the
/// saga's). On restart the saga repeats the reservation; the inventory
/// recognises the order and does not reserve twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_repeated_after_a_crash_does_not_reserve_twice() {
    tokio::time::timeout(BOUND, async {
        let (_dir, db) = db();
        let gateway = PaymentGateway::new();
        let shop = open_shop(&db, gateway.clone()).await;
        gateway.set_online(false);
        let view = shop
            .saga("o-7")
            .submit(order("o-7", "alice", 4))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.status, OrderStatus::Pending(Step::ChargePayment));
        shop.stop().await;
        assert_eq!(stock(&db).await.available, 6);

        // Roll the stored saga back to before the inventory's answer.
        let storage: std::sync::Arc<dyn StorageProvider> =
            std::sync::Arc::new(SqliteStorage::open(&db).await.unwrap());
        let mut saga = PersistentState::<SagaState>::load_with(
            storage,
            &GrainId::new("order-saga", "o-7"),
            STATE_NAME,
        )
        .await
        .unwrap();
        saga.status = OrderStatus::Pending(Step::ReserveStock);
        saga.history.truncate(2);
        saga.write().await.unwrap();

        gateway.set_online(true);
        let shop = Shop::start("restarted", &db, gateway).await.unwrap();
        let done = shop
            .wait_until_final("o-7", Duration::from_secs(15))
            .await
            .unwrap();
        assert_eq!(done.status, OrderStatus::Accepted, "{:#?}", done.history);
        // The inventory answered "processed" to the repeat without
        // reserving again.
        assert_eq!(
            shop.inventory("widget")
                .reserve("o-7".into(), 4)
                .await
                .unwrap()
                .unwrap(),
            InventoryReply::Processed
        );
        shop.stop().await;
        let s = stock(&db).await;
        assert_eq!((s.available, s.reservations.get("o-7")), (6, Some(&4)));
        assert_eq!(account(&db, "alice").await.balance, 600);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scenario_ends_with_consistent_books() {
    let (_dir, db) = db();
    let outcome = tokio::time::timeout(BOUND, play(&db, |line| println!("{line}")))
        .await
        .unwrap()
        .unwrap();
    check_consistency(&outcome).unwrap();
    let statuses: Vec<_> = outcome
        .orders
        .iter()
        .map(|(o, s)| (o.id.as_str(), s.clone()))
        .collect();
    assert_eq!(statuses[0], ("order-1", OrderStatus::Accepted));
    assert!(matches!(
        statuses[1].1,
        OrderStatus::Cancelled {
            compensated: true,
            ..
        }
    ));
    assert!(matches!(
        statuses[2].1,
        OrderStatus::Cancelled {
            compensated: false,
            ..
        }
    ));
    assert!(matches!(
        statuses[3].1,
        OrderStatus::Cancelled {
            compensated: true,
            ..
        }
    ));
    assert_eq!(
        outcome.status_at_restart,
        OrderStatus::Pending(Step::ChargePayment)
    );
    assert_eq!(statuses[4], ("order-5", OrderStatus::Accepted));
    // 2 + 3 books sold of 10.
    assert_eq!(outcome.stock.available, 5);
}

#[test]
fn the_consistency_check_catches_a_leak() {
    use std::collections::BTreeMap;
    let o = order("x", "alice", 2);
    let good = example_saga::Outcome {
        orders: vec![(o.clone(), OrderStatus::Accepted)],
        status_at_restart: OrderStatus::New,
        stock: StockState {
            available: 8,
            reservations: BTreeMap::from([("x".to_owned(), 2)]),
            released: Default::default(),
            stocked: 10,
        },
        accounts: BTreeMap::from([(
            "alice".to_owned(),
            AccountState {
                balance: 800,
                charges: BTreeMap::from([("x".to_owned(), 200)]),
                refunded: Default::default(),
            },
        )]),
        deposits: BTreeMap::from([("alice".to_owned(), 1000)]),
    };
    check_consistency(&good).unwrap();
    let mut leaked = good.clone();
    leaked.stock.available = 6;
    assert!(check_consistency(&leaked).is_err());
    let mut twice = good.clone();
    twice.stock.reservations.insert("y".into(), 2);
    twice.stock.available = 6;
    assert!(check_consistency(&twice).is_err());
    let mut overcharged = good;
    overcharged.accounts.get_mut("alice").unwrap().balance = 600;
    assert!(check_consistency(&overcharged).is_err());
}
