//! `POST /orders` publishes through the mediator grain, and each handler
//! grain handles every order exactly once.

use std::collections::HashSet;
use std::time::Duration;

use actor_core::prelude::*;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use example_mediator::{
    ApiError, Deliveries, EmailSender, HANDLER_KEY, InventoryUpdater, NewOrder, OrderPlaced,
    PlaceOrder, SentEmails, build_silo, default_subscribers, router, run_scenario, silo_builder,
};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tower::ServiceExt;
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(10);

fn order(i: u32) -> PlaceOrder {
    PlaceOrder {
        customer_email: format!("customer{i}@example.com"),
        sku: if i.is_multiple_of(2) { "book" } else { "lamp" }.to_owned(),
        quantity: i + 1,
    }
}

async fn post(app: &Router, body: String) -> (StatusCode, String) {
    let req = Request::post("/orders")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let res = tokio::time::timeout(LIMIT, app.clone().oneshot(req))
        .await
        .expect("request timed out")
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn place(app: &Router, o: &PlaceOrder) -> OrderPlaced {
    let (status, body) = post(app, serde_json::to_string(o).unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn sorted(mut v: Vec<Uuid>) -> Vec<Uuid> {
    v.sort();
    v
}

/// Asserts that both handler grains saw exactly the orders `ids`, each once.
async fn assert_each_handled_once(silo: &Silo, ids: &[Uuid]) {
    let emails = silo
        .get_grain::<EmailSender>(HANDLER_KEY)
        .ask(SentEmails)
        .await
        .unwrap();
    let inventory = silo
        .get_grain::<InventoryUpdater>(HANDLER_KEY)
        .ask(Deliveries)
        .await
        .unwrap();
    let expected = sorted(ids.to_vec());
    assert_eq!(
        sorted(emails.iter().map(|e| e.order_id).collect()),
        expected,
        "email sender"
    );
    assert_eq!(
        sorted(inventory.orders.clone()),
        expected,
        "inventory updater"
    );
}

#[tokio::test]
async fn both_handlers_see_each_order_exactly_once() {
    let silo = build_silo().await.unwrap();
    let app = router(&silo);
    let mut ids = Vec::new();
    for i in 0..5 {
        let placed = place(&app, &order(i)).await;
        assert_eq!(placed.notified, ["email-sender", "inventory-updater"]);
        ids.push(placed.order_id);
    }
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        5,
        "order ids are unique"
    );
    assert_each_handled_once(&silo, &ids).await;

    // The handlers got the order's content, not just its id.
    let emails = silo
        .get_grain::<EmailSender>(HANDLER_KEY)
        .ask(SentEmails)
        .await
        .unwrap();
    for (i, email) in emails.iter().enumerate() {
        assert_eq!(email.order_id, ids[i]);
        assert_eq!(email.to, format!("customer{i}@example.com"));
    }
    let inventory = silo
        .get_grain::<InventoryUpdater>(HANDLER_KEY)
        .ask(Deliveries)
        .await
        .unwrap();
    // book: orders 0, 2, 4 (1 + 3 + 5 units); lamp: orders 1, 3 (2 + 4).
    assert_eq!(inventory.reserved.get("book"), Some(&9));
    assert_eq!(inventory.reserved.get("lamp"), Some(&6));
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_are_each_handled_once() {
    let silo = build_silo().await.unwrap();
    let app = router(&silo);
    let orders: Vec<PlaceOrder> = (0..40).map(order).collect();
    let placed = futures::future::join_all(orders.iter().map(|o| place(&app, o))).await;
    let ids: Vec<Uuid> = placed.iter().map(|p| p.order_id).collect();
    assert_each_handled_once(&silo, &ids).await;
    // Every publish went through the mediator, and each handler type was
    // called once per order (the silo's own counters agree).
    let m = silo.metrics();
    let calls = |ty: &str, method: &str| {
        m.grain_type(ty)
            .and_then(|t| t.method(method))
            .map_or(0, |s| s.calls)
    };
    assert_eq!(calls("order-mediator", "publish"), 40);
    assert_eq!(calls("email-sender", "new-order"), 40);
    assert_eq!(calls("inventory-updater", "new-order"), 40);
    silo.shutdown().await;
}

#[tokio::test]
async fn an_invalid_order_reaches_no_handler() {
    let silo = build_silo().await.unwrap();
    let app = router(&silo);
    let mut bad = order(1);
    bad.quantity = 0;
    let (status, body) = post(&app, serde_json::to_string(&bad).unwrap()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let err: ApiError = serde_json::from_str(&body).unwrap();
    assert!(err.error.contains("quantity"), "{}", err.error);

    let (status, _) = post(&app, "{not json".to_owned()).await;
    assert!(status.is_client_error(), "{status}");

    assert_each_handled_once(&silo, &[]).await;
    silo.shutdown().await;
}

// A third reaction is added in the composition root only: the endpoint
// and the mediator are unchanged.
#[derive(Default)]
struct AuditLog {
    seen: Vec<Uuid>,
}

impl Grain for AuditLog {
    const TYPE_NAME: &'static str = "audit-log";
}

impl GrainMethods for AuditLog {
    fn register(m: &mut Methods<Self>) {
        m.add::<NewOrder, _>().add::<Seen, _>();
    }
}

impl Handler<NewOrder> for AuditLog {
    async fn handle(&mut self, order: NewOrder, _ctx: &GrainContext<Self>) {
        self.seen.push(order.order_id);
    }
}

#[derive(Serialize, Deserialize)]
struct Seen;
impl Message for Seen {
    type Reply = Vec<Uuid>;
    const NAME: &'static str = "seen";
}

impl Handler<Seen> for AuditLog {
    async fn handle(&mut self, _: Seen, _ctx: &GrainContext<Self>) -> Vec<Uuid> {
        self.seen.clone()
    }
}

#[tokio::test]
async fn a_new_subscriber_needs_no_change_to_the_endpoint() {
    let subscribers = default_subscribers().subscribe::<AuditLog, _>("audit");
    let silo = silo_builder(subscribers)
        .grain::<AuditLog>()
        .start()
        .await
        .unwrap();
    let app = router(&silo);
    let placed = place(&app, &order(7)).await;
    assert_eq!(
        placed.notified,
        ["email-sender", "inventory-updater", "audit-log"]
    );
    assert_each_handled_once(&silo, &[placed.order_id]).await;
    let audit = silo.get_grain::<AuditLog>("audit").ask(Seen).await.unwrap();
    assert_eq!(audit, [placed.order_id]);
    silo.shutdown().await;
}

#[tokio::test]
async fn the_scenario_runs_over_real_http_on_loopback() {
    let silo = build_silo().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, router(&silo)).into_future());
    let orders: Vec<PlaceOrder> = (0..3).map(order).collect();
    let summary = tokio::time::timeout(LIMIT, run_scenario(&silo, addr, &orders))
        .await
        .expect("scenario timed out")
        .unwrap();
    let ids: Vec<Uuid> = summary.placed.iter().map(|p| p.order_id).collect();
    assert_eq!(
        summary
            .emails
            .iter()
            .map(|e| e.order_id)
            .collect::<Vec<_>>(),
        ids
    );
    assert_eq!(summary.inventory.orders, ids);
    server.abort();
    silo.shutdown().await;
}
