//! The event, the mediator grain and the two handler grains.

use std::collections::BTreeMap;
use std::sync::Arc;

use actor_core::Accepts;
use actor_core::prelude::*;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The event: an order was placed. Every subscriber grain handles it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrder {
    /// The order's id, assigned by the endpoint.
    pub order_id: Uuid,
    /// Where the confirmation goes.
    pub customer_email: String,
    /// The product ordered.
    pub sku: String,
    /// How many.
    pub quantity: u32,
}

impl Message for NewOrder {
    type Reply = ();
    const NAME: &'static str = "new-order";
}

type Deliver = dyn Fn(&Silo, NewOrder) -> BoxFuture<'static, actor_core::Result<()>> + Send + Sync;

/// The grains a [`Mediator`] delivers [`NewOrder`] to. Built once, in the
/// composition root; the mediator only sees type names and delivery
/// functions, never the handlers' code.
#[derive(Clone, Default)]
pub struct Subscribers {
    list: Vec<(&'static str, Arc<Deliver>)>,
}

impl std::fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Subscribers {
    /// No subscribers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the grain of type `G` with `key` as a subscriber. `G` must
    /// handle [`NewOrder`] (checked at compile time; write `_` for `K`).
    pub fn subscribe<G, K>(mut self, key: impl Into<String>) -> Self
    where
        G: Accepts<NewOrder, K>,
        K: 'static,
    {
        let key = key.into();
        let deliver =
            move |silo: &Silo, order: NewOrder| -> BoxFuture<'static, actor_core::Result<()>> {
                let handler = silo.get_grain::<G>(key.as_str());
                Box::pin(async move { handler.ask::<NewOrder, K>(order).await })
            };
        self.list.push((G::TYPE_NAME, Arc::new(deliver)));
        self
    }

    /// The subscribers' grain type names, in subscription order.
    pub fn names(&self) -> Vec<&'static str> {
        self.list.iter().map(|(name, _)| *name).collect()
    }
}

/// Asks the mediator to deliver an order to every subscriber; answers the
/// subscribers' type names once all have handled it, or which ones failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publish(pub NewOrder);

impl Message for Publish {
    type Reply = Result<Vec<String>, String>;
    const NAME: &'static str = "publish";
    fn is_error(reply: &Self::Reply) -> bool {
        reply.is_err()
    }
}

/// The key of the mediator grain the endpoint calls.
pub const MEDIATOR_KEY: &str = "orders";

/// The mediator grain. It keeps no state of its own, so it is a stateless
/// worker: the silo runs several activations of it under load, and
/// concurrent requests are not serialized behind one mailbox.
#[derive(Debug)]
pub struct Mediator {
    subscribers: Subscribers,
}

impl Mediator {
    /// A mediator delivering to `subscribers`.
    pub fn new(subscribers: Subscribers) -> Self {
        Mediator { subscribers }
    }
}

impl Grain for Mediator {
    const TYPE_NAME: &'static str = "order-mediator";
    fn options() -> GrainOptions {
        GrainOptions::new().stateless_worker(4)
    }
}

impl GrainMethods for Mediator {
    fn register(m: &mut Methods<Self>) {
        m.add::<Publish, _>();
    }
}

impl Handler<Publish> for Mediator {
    async fn handle(
        &mut self,
        Publish(order): Publish,
        ctx: &GrainContext<Self>,
    ) -> Result<Vec<String>, String> {
        // Deliver to all subscribers at once and wait for each, as
        // MediatR's Publish awaits every handler.
        let deliveries = self.subscribers.list.iter().map(|(name, deliver)| {
            let done = deliver(ctx.silo(), order.clone());
            async move { (*name, done.await) }
        });
        let results = futures::future::join_all(deliveries).await;
        let failed: Vec<String> = results
            .iter()
            .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
            .collect();
        if failed.is_empty() {
            Ok(results
                .into_iter()
                .map(|(name, _)| name.to_owned())
                .collect())
        } else {
            Err(failed.join("; "))
        }
    }
}

/// A confirmation email, as the email sender "sent" it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentEmail {
    /// The order it confirms.
    pub order_id: Uuid,
    /// The recipient.
    pub to: String,
    /// The subject line.
    pub subject: String,
}

/// Asks the email sender for the emails it sent.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SentEmails;

impl Message for SentEmails {
    type Reply = Vec<SentEmail>;
    const NAME: &'static str = "sent-emails";
}

/// Handler grain: sends an order confirmation for each [`NewOrder`].
#[derive(Debug, Default)]
pub struct EmailSender {
    outbox: Vec<SentEmail>,
}

impl Grain for EmailSender {
    const TYPE_NAME: &'static str = "email-sender";
}

impl GrainMethods for EmailSender {
    fn register(m: &mut Methods<Self>) {
        m.add::<NewOrder, _>().add::<SentEmails, _>();
    }
}

impl Handler<NewOrder> for EmailSender {
    async fn handle(&mut self, order: NewOrder, _ctx: &GrainContext<Self>) {
        // A real sender would talk to an SMTP service here.
        self.outbox.push(SentEmail {
            order_id: order.order_id,
            to: order.customer_email,
            subject: format!(
                "Order {}: {} x {}",
                order.order_id, order.quantity, order.sku
            ),
        });
    }
}

impl SharedHandler<SentEmails> for EmailSender {
    const INTERLEAVE: Interleave = Interleave::ReadOnly;
    async fn handle(&self, _: SentEmails, _ctx: &GrainContext<Self>) -> Vec<SentEmail> {
        self.outbox.clone()
    }
}

/// What the inventory updater has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReport {
    /// The orders handled, in order.
    pub orders: Vec<Uuid>,
    /// Units reserved per product.
    pub reserved: BTreeMap<String, u64>,
}

/// Asks the inventory updater for its [`InventoryReport`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Deliveries;

impl Message for Deliveries {
    type Reply = InventoryReport;
    const NAME: &'static str = "deliveries";
}

/// Handler grain: reserves stock for each [`NewOrder`].
#[derive(Debug, Default)]
pub struct InventoryUpdater {
    report: InventoryReport,
}

impl Grain for InventoryUpdater {
    const TYPE_NAME: &'static str = "inventory-updater";
}

impl GrainMethods for InventoryUpdater {
    fn register(m: &mut Methods<Self>) {
        m.add::<NewOrder, _>().add::<Deliveries, _>();
    }
}

impl Handler<NewOrder> for InventoryUpdater {
    async fn handle(&mut self, order: NewOrder, _ctx: &GrainContext<Self>) {
        self.report.orders.push(order.order_id);
        *self.report.reserved.entry(order.sku).or_default() += u64::from(order.quantity);
    }
}

impl SharedHandler<Deliveries> for InventoryUpdater {
    const INTERLEAVE: Interleave = Interleave::ReadOnly;
    async fn handle(&self, _: Deliveries, _ctx: &GrainContext<Self>) -> InventoryReport {
        self.report.clone()
    }
}
