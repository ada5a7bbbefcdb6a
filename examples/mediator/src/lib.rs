//! # Mediator: an HTTP endpoint publishes `NewOrder` to handler grains
//!
//! The course's third exercise (*EventsInProcessByMediator*) has a web
//! controller publish a `NewOrder` event through a mediator (MediatR); two
//! handlers, one sending the confirmation email and one updating the
//! inventory, react to it in the same process. The controller knows the
//! mediator and the event, never the handlers: new reactions are added by
//! registering a handler, without touching the controller.
//!
//! Here the handlers are grains ([`EmailSender`], [`InventoryUpdater`])
//! and the mediator is a grain too ([`Mediator`], a stateless worker). The
//! axum endpoint `POST /orders` holds only a `GrainRef<Mediator>` and sends
//! it [`Publish`]; the mediator forwards the [`NewOrder`] to every grain in
//! its [`Subscribers`] list and answers once each has handled it. The list
//! is put together in one place, the composition root ([`silo_builder`]),
//! as MediatR's handlers are registered with the dependency-injection
//! container; the endpoint, the mediator and the handlers only meet through
//! the runtime (grain references and messages).
//!
//! [`build_silo`], [`router`] and [`run_scenario`] are shared by `main.rs`
//! and the tests.

mod grains;
mod http;

use std::net::SocketAddr;

use actor_core::SiloBuilder;
use actor_core::prelude::*;

pub use grains::{
    Deliveries, EmailSender, InventoryReport, InventoryUpdater, MEDIATOR_KEY, Mediator, NewOrder,
    Publish, SentEmail, SentEmails, Subscribers,
};
pub use http::{ApiError, OrderPlaced, PlaceOrder, router};

/// The key of the handler grains the default subscribers deliver to.
pub const HANDLER_KEY: &str = "default";

/// The default subscribers of [`NewOrder`]: the email sender and the
/// inventory updater (both with key [`HANDLER_KEY`]).
pub fn default_subscribers() -> Subscribers {
    Subscribers::new()
        .subscribe::<EmailSender, _>(HANDLER_KEY)
        .subscribe::<InventoryUpdater, _>(HANDLER_KEY)
}

/// The composition root: a silo builder with the mediator (delivering to
/// `subscribers`) and the two handler grain types registered. Register
/// further subscriber types on the returned builder.
pub fn silo_builder(subscribers: Subscribers) -> SiloBuilder {
    Silo::builder()
        .name("mediator")
        .grain_with::<Mediator>(move |_| Mediator::new(subscribers.clone()))
        .grain::<EmailSender>()
        .grain::<InventoryUpdater>()
}

/// Starts a silo with the mediator and the default subscribers.
pub async fn build_silo() -> actor_core::Result<Silo> {
    silo_builder(default_subscribers()).start().await
}

/// What a run of the scenario produced.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The endpoint's answers, one per order posted.
    pub placed: Vec<OrderPlaced>,
    /// The emails the email sender grain sent.
    pub emails: Vec<SentEmail>,
    /// The inventory updater grain's view.
    pub inventory: InventoryReport,
}

/// Posts `orders` one after the other to the server at `addr` (over HTTP,
/// as any client would), then asks both handler grains what they saw.
pub async fn run_scenario(
    silo: &Silo,
    addr: SocketAddr,
    orders: &[PlaceOrder],
) -> anyhow::Result<Summary> {
    let http = reqwest::Client::new();
    let mut placed = Vec::with_capacity(orders.len());
    for order in orders {
        let res = http
            .post(format!("http://{addr}/orders"))
            .json(order)
            .send()
            .await?;
        let status = res.status();
        let body = res.text().await?;
        anyhow::ensure!(status == 201, "POST /orders answered {status}: {body}");
        placed.push(serde_json::from_str::<OrderPlaced>(&body)?);
    }
    let emails = silo
        .get_grain::<EmailSender>(HANDLER_KEY)
        .ask(SentEmails)
        .await?;
    let inventory = silo
        .get_grain::<InventoryUpdater>(HANDLER_KEY)
        .ask(Deliveries)
        .await?;
    Ok(Summary {
        placed,
        emails,
        inventory,
    })
}
