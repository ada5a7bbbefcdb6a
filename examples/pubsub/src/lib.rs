//! Course exercise 08 (MassTransit producer/consumer) as grains: a typed
//! `OrderSubmitted` message published on the stream namespace `orders`
//! (one stream per region); `Invoicing` and `Shipping` are both implicit
//! consumers of the namespace, and an `Auditor` subscribes explicitly to
//! one region's stream.

use std::time::Duration;

use actor_core::prelude::*;
use actor_streams::{
    Ack, Delivery, MemoryStreams, SiloBuilderStreamsExt, StreamId, StreamItem, Streams,
};
use serde::{Deserialize, Serialize};

/// The stream namespace of orders.
pub const ORDERS: &str = "orders";
/// The provider's name on the silo.
pub const PROVIDER: &str = "bus";

/// The published message: a typed contract between producer and
/// consumers, as a MassTransit message type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderSubmitted {
    /// The order's number.
    pub order: u64,
    /// The customer.
    pub customer: String,
    /// The amount in cents.
    pub cents: u64,
}

impl StreamItem for OrderSubmitted {
    const NAME: &'static str = "stream:order_submitted";
}

/// Totals the orders of its region (implicit consumer).
#[derive(Default)]
pub struct Invoicing {
    total_cents: u64,
    invoices: u64,
}

impl Grain for Invoicing {
    const TYPE_NAME: &'static str = "invoicing";
}

impl Handler<Delivery<OrderSubmitted>> for Invoicing {
    async fn handle(&mut self, d: Delivery<OrderSubmitted>, _: &GrainContext<Self>) -> Ack {
        self.total_cents += d.item.cents;
        self.invoices += 1;
        println!(
            "invoicing {}: invoice for order {} ({} cents)",
            d.stream.key, d.item.order, d.item.cents
        );
        Ok(())
    }
}

#[grain_methods(also_handles(Delivery<OrderSubmitted>))]
impl Invoicing {
    /// (invoices, total cents).
    pub async fn totals(&self) -> (u64, u64) {
        (self.invoices, self.total_cents)
    }
}

/// Lists the orders to ship in its region (implicit consumer).
#[derive(Default)]
pub struct Shipping {
    orders: Vec<u64>,
}

impl Grain for Shipping {
    const TYPE_NAME: &'static str = "shipping";
}

impl Handler<Delivery<OrderSubmitted>> for Shipping {
    async fn handle(&mut self, d: Delivery<OrderSubmitted>, _: &GrainContext<Self>) -> Ack {
        println!(
            "shipping {}: pack order {} for {}",
            d.stream.key, d.item.order, d.item.customer
        );
        self.orders.push(d.item.order);
        Ok(())
    }
}

#[grain_methods(also_handles(Delivery<OrderSubmitted>))]
impl Shipping {
    /// The orders to ship, in the order they were submitted.
    pub async fn orders(&self) -> Vec<u64> {
        self.orders.clone()
    }
}

/// Watches the regions it subscribes to (explicit subscriptions).
#[derive(Default)]
pub struct Auditor {
    seen: Vec<(String, u64)>,
}

impl Grain for Auditor {
    const TYPE_NAME: &'static str = "auditor";
}

impl Handler<Delivery<OrderSubmitted>> for Auditor {
    async fn handle(&mut self, d: Delivery<OrderSubmitted>, _: &GrainContext<Self>) -> Ack {
        println!("auditor: saw order {} in {}", d.item.order, d.stream.key);
        self.seen.push((d.stream.key.to_string(), d.item.order));
        Ok(())
    }
}

#[grain_methods(also_handles(Delivery<OrderSubmitted>))]
impl Auditor {
    /// Subscribes to the orders of `region` (again is a no-op: the same
    /// subscription comes back).
    pub async fn watch(
        &mut self,
        region: String,
        ctx: &GrainContext<Self>,
    ) -> Result<String, String> {
        let bus = Streams::provider(ctx.silo(), PROVIDER).map_err(|e| e.to_string())?;
        let handle = bus
            .subscribe::<Auditor, OrderSubmitted>(&ctx.this(), StreamId::new(ORDERS, region))
            .await
            .map_err(|e| e.to_string())?;
        Ok(handle.id().to_string())
    }

    /// Ends every subscription it holds; answers how many.
    pub async fn stop_watching(&mut self, ctx: &GrainContext<Self>) -> Result<usize, String> {
        let bus = Streams::provider(ctx.silo(), PROVIDER).map_err(|e| e.to_string())?;
        let handles = bus
            .subscriptions::<Auditor, OrderSubmitted>(&ctx.this())
            .await
            .map_err(|e| e.to_string())?;
        let n = handles.len();
        for h in handles {
            h.unsubscribe().await.map_err(|e| e.to_string())?;
        }
        Ok(n)
    }

    /// What it saw: (region, order).
    pub async fn seen(&self) -> Vec<(String, u64)> {
        self.seen.clone()
    }
}

/// The silo: the three consumer types, the memory provider, and the two
/// implicit declarations on one namespace.
pub async fn silo() -> actor_core::Result<Silo> {
    Silo::builder()
        .grain::<Invoicing>()
        .grain::<Shipping>()
        .grain::<Auditor>()
        .with_streams(
            Streams::builder()
                .provider(PROVIDER, MemoryStreams::new())
                .implicit::<Invoicing, OrderSubmitted>(ORDERS)
                .implicit::<Shipping, OrderSubmitted>(ORDERS),
        )
        .start()
        .await
}

/// What the scenario saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Invoicing "eu": (invoices, total cents).
    pub eu_invoices: (u64, u64),
    /// Shipping "eu": order numbers.
    pub eu_shipping: Vec<u64>,
    /// Shipping "us": order numbers.
    pub us_shipping: Vec<u64>,
    /// The auditor's log: it watched "eu" for the first three orders only.
    pub audited: Vec<(String, u64)>,
}

/// Publishes five orders in "eu" and two in "us"; the auditor watches
/// "eu" for the first three.
pub async fn play(silo: &Silo) -> Result<Outcome, Box<dyn std::error::Error>> {
    let bus = Streams::provider(silo, PROVIDER)?;
    let eu = bus.producer::<OrderSubmitted>(StreamId::new(ORDERS, "eu"));
    let us = bus.producer::<OrderSubmitted>(StreamId::new(ORDERS, "us"));
    let auditor = silo.get_grain::<Auditor>("audit");
    auditor.watch("eu".into()).await??;
    let order = |n: u64, who: &str| OrderSubmitted {
        order: n,
        customer: who.into(),
        cents: n * 100,
    };
    eu.publish_batch(&[order(1, "ann"), order(2, "bob"), order(3, "cy")])
        .await?;
    us.publish(&order(10, "dee")).await?;
    let invoicing = silo.get_grain::<Invoicing>("eu");
    wait(|| async { invoicing.totals().await.map(|t| t.0 >= 3) }).await?;
    wait(|| async { auditor.seen().await.map(|s| s.len() >= 3) }).await?;
    auditor.stop_watching().await??;
    eu.publish_batch(&[order(4, "ed"), order(5, "flo")]).await?;
    us.publish(&order(11, "gus")).await?;
    wait(|| async { invoicing.totals().await.map(|t| t.0 >= 5) }).await?;
    let us_shipping = silo.get_grain::<Shipping>("us");
    wait(|| async { us_shipping.orders().await.map(|o| o.len() >= 2) }).await?;
    Ok(Outcome {
        eu_invoices: invoicing.totals().await?,
        eu_shipping: silo.get_grain::<Shipping>("eu").orders().await?,
        us_shipping: us_shipping.orders().await?,
        audited: auditor.seen().await?,
    })
}

async fn wait<F, Fut>(mut done: F) -> actor_core::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = actor_core::Result<bool>>,
{
    for _ in 0..500 {
        if done().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
