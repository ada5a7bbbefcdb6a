//! The web front: `POST /orders` publishes a [`NewOrder`] through the
//! mediator grain; `GET /metrics` shows the silo's metrics as JSON.

use actor_core::prelude::*;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::grains::{MEDIATOR_KEY, Mediator, NewOrder, Publish};

/// The body of `POST /orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceOrder {
    /// Where the confirmation goes.
    pub customer_email: String,
    /// The product ordered.
    pub sku: String,
    /// How many (at least 1).
    pub quantity: u32,
}

/// The answer of `POST /orders` (201 Created).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// The id given to the order.
    pub order_id: Uuid,
    /// The subscriber grain types that handled the event.
    pub notified: Vec<String>,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
}

#[derive(Clone)]
struct AppState {
    // All the endpoint knows of the order handling: the mediator grain.
    mediator: GrainRef<Mediator>,
    silo: Silo,
}

/// The app's routes, calling grains on `silo`.
pub fn router(silo: &Silo) -> Router {
    Router::new()
        .route("/orders", post(place_order))
        .route("/metrics", get(metrics))
        .with_state(AppState {
            mediator: silo.get_grain::<Mediator>(MEDIATOR_KEY),
            silo: silo.clone(),
        })
}

fn error(status: StatusCode, error: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            error: error.into(),
        }),
    )
        .into_response()
}

async fn place_order(State(app): State<AppState>, Json(req): Json<PlaceOrder>) -> Response {
    if req.quantity == 0 {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "quantity must be at least 1",
        );
    }
    if req.sku.trim().is_empty() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "sku must not be empty");
    }
    if !req.customer_email.contains('@') {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "customer_email is not an email address",
        );
    }
    let order = NewOrder {
        order_id: Uuid::new_v4(),
        customer_email: req.customer_email,
        sku: req.sku,
        quantity: req.quantity,
    };
    let order_id = order.order_id;
    match app.mediator.ask(Publish(order)).await {
        Ok(Ok(notified)) => (
            StatusCode::CREATED,
            Json(OrderPlaced { order_id, notified }),
        )
            .into_response(),
        Ok(Err(failed)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("order {order_id}: {failed}"),
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn metrics(State(app): State<AppState>) -> Json<actor_core::MetricsSnapshot> {
    Json(app.silo.metrics())
}
