// One file on purpose: a course port reads top to bottom beside the
// exercise it ports.
//! # Course exercise 10: an order saga with compensation
//!
//! **The original** (Saga with MassTransit) has three services: a website
//! that submits orders, an inventory service, and an orchestrator, a
//! MassTransit state machine saga per order persisted in a database. An
//! order goes **New -> Pending -> Accepted** when the inventory answers
//! *processed*, or **-> Cancelled** when it answers *cancelled*. The lesson:
//! a business transaction spanning services cannot hold one database
//! transaction, so it is a sequence of local steps, driven by a persisted
//! state machine, where each step that must be undone has a
//! **compensating** step (release the stock that was reserved), and where
//! every participant tolerates a step being delivered twice.
//!
//! **The grain version** has one [`OrderSaga`] grain per order (the
//! orchestrator), an [`Inventory`] grain per product (answers
//! [`InventoryReply::Processed`] or [`InventoryReply::Cancelled`], reserve
//! and release stock) and an [`Account`] grain per customer (charge and
//! refund), all with persisted state ([`PersistentState`] on a SQLite
//! file). The saga runs [`Step`]s in order:
//!
//! 1. *reserve stock*: the inventory reserves the quantity (processed) or
//!    refuses (cancelled: out of stock; nothing to undo);
//! 2. *charge payment*: the customer's account is charged; if it declines,
//!    or the customer cancels, the saga turns to
//! 3. *compensate*: refund whatever was charged, release whatever was
//!    reserved, and end **Cancelled**.
//!
//! The orchestrator **persists each step before acting**: it writes
//! "Pending: reserve stock" and only then asks the inventory, writes
//! "Pending: charge payment" and only then charges. A silo that dies
//! anywhere leaves a stored state that says what to do next. The
//! participants make repeats harmless: a reservation, a charge, a refund
//! and a release are keyed by the order id, so doing one twice does it
//! once (stock is never reserved twice and never leaked).
//!
//! A saga is driven by a durable reminder
//! ([`actor_persistence::ReminderService`], stored in the same SQLite
//! file): while it is not finished, the reminder ticks every
//! [`RETRY_EVERY`] and each tick advances it as far as it can go. A step
//! that cannot be done now (the payment gateway is down: see
//! [`PaymentGateway`]) is retried on the next tick. After a silo restart
//! the new silo's reminder service fires the reminder, which activates the
//! saga grain, which loads its persisted step and carries on: nobody has to
//! call it. When the saga ends, it cancels its reminder.
//!
//! [`play`] runs the whole story: an accepted order, a declined payment
//! that is compensated, an out-of-stock order, a customer cancelling a
//! pending order, and an order left pending across a silo restart that
//! finishes on its own on the new silo. [`check_consistency`] checks the
//! books at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actor_core::prelude::*;
use actor_persistence::{
    PersistentState, ReminderService, ReminderTick, SiloBuilderRemindersExt, SiloBuilderStorageExt,
    SqlReminders, SqliteStorage, StateKey, StorageProvider,
};
use serde::{Deserialize, Serialize};

/// The saga's reminder name.
pub const REMINDER: &str = "advance";
/// How often a saga that is not finished retries (its reminder's period).
pub const RETRY_EVERY: Duration = Duration::from_millis(300);
/// How often the silo's reminder service looks for due reminders.
pub const REMINDER_POLL: Duration = Duration::from_millis(50);
/// How long the saga waits for a participant's answer before leaving the
/// step for the next tick.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// The name of every grain's stored state.
pub const STATE_NAME: &str = "state";

/// A storage or reminder failure the grain passes on to its caller.
pub type StorageError = actor_persistence::Error;

// ---------------------------------------------------------------------------
// The order and the saga's state machine
// ---------------------------------------------------------------------------

/// What the website submits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The order id, also the key of its saga grain.
    pub id: String,
    /// The customer, the key of their [`Account`].
    pub customer: String,
    /// The product, the key of its [`Inventory`].
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// Price of one, in cents.
    pub unit_price: u64,
}

impl Order {
    /// What the order costs.
    pub fn total(&self) -> u64 {
        self.unit_price * u64::from(self.quantity)
    }
}

/// A step of a pending saga: what it does next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// Ask the inventory to reserve the stock.
    ReserveStock,
    /// Charge the customer's account.
    ChargePayment,
    /// Undo: refund any charge and release any reservation, then cancel.
    Compensate {
        /// Why the order is being cancelled.
        reason: String,
    },
}

/// Where an order stands (the saga's state machine).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Received and stored; nothing done yet.
    #[default]
    New,
    /// In progress; the step is the next thing to do.
    Pending(Step),
    /// Stock reserved and payment taken.
    Accepted,
    /// Refused or undone.
    Cancelled {
        /// Why.
        reason: String,
        /// Whether a compensation ran (something may have been reserved
        /// or charged, and was given back).
        compensated: bool,
    },
}

impl OrderStatus {
    /// Accepted or Cancelled: the saga is over.
    pub fn is_final(&self) -> bool {
        matches!(self, OrderStatus::Accepted | OrderStatus::Cancelled { .. })
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderStatus::New => f.write_str("New"),
            OrderStatus::Pending(Step::ReserveStock) => f.write_str("Pending (reserve stock)"),
            OrderStatus::Pending(Step::ChargePayment) => f.write_str("Pending (charge payment)"),
            OrderStatus::Pending(Step::Compensate { reason }) => {
                write!(f, "Pending (compensate: {reason})")
            }
            OrderStatus::Accepted => f.write_str("Accepted"),
            OrderStatus::Cancelled {
                reason,
                compensated,
            } => write!(
                f,
                "Cancelled ({reason}{})",
                if *compensated { "; compensated" } else { "" }
            ),
        }
    }
}

/// The orchestrator's stored state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaState {
    /// The order, once submitted.
    pub order: Option<Order>,
    /// Where it stands.
    pub status: OrderStatus,
    /// One line per stored transition, oldest first.
    pub history: Vec<String>,
}

/// What a saga answers: its state and, if it is stuck on a step for now,
/// why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaView {
    /// Where the order stands.
    pub status: OrderStatus,
    /// The stored transitions, oldest first.
    pub history: Vec<String>,
    /// Why the current step could not be done yet (retried on the next
    /// reminder tick), if it could not.
    pub waiting_on: Option<String>,
}

/// The saga's own failures, apart from the runtime's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SagaError {
    /// The order id was already used for another order.
    OrderIdTaken {
        /// The id.
        order_id: String,
    },
    /// Storing the saga's state or its reminder failed; the saga's state
    /// is unknown to this activation, which is reset. Retry the call.
    Storage(StorageError),
}

impl fmt::Display for SagaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SagaError::OrderIdTaken { order_id } => write!(
                f,
                "order id {order_id} is already used by another order; pick a new id"
            ),
            SagaError::Storage(e) => write!(f, "the saga could not store its state: {e}"),
        }
    }
}

impl std::error::Error for SagaError {}

impl From<StorageError> for SagaError {
    fn from(e: StorageError) -> Self {
        SagaError::Storage(e)
    }
}

// ---------------------------------------------------------------------------
// The orchestrator
// ---------------------------------------------------------------------------

/// The orchestrator: one grain per order (type name `order-saga`, keyed by
/// the order id).
pub struct OrderSaga {
    state: PersistentState<SagaState>,
    /// Why the current step is not done yet (not stored: it is retried).
    waiting_on: Option<String>,
}

impl Grain for OrderSaga {
    const TYPE_NAME: &'static str = "order-saga";
}

#[grain_methods(also_handles(ReminderTick))]
impl OrderSaga {
    /// Starts the saga for `order` (whose id must be this grain's key) and
    /// drives it as far as it goes now; the reminder does the rest.
    /// Submitting the same order again is harmless: it answers where the
    /// order stands.
    pub async fn submit(
        &mut self,
        order: Order,
        ctx: &GrainContext<Self>,
    ) -> Result<SagaView, SagaError> {
        match &self.state.order {
            Some(known) if *known != order => {
                return Err(SagaError::OrderIdTaken { order_id: order.id });
            }
            Some(_) => {}
            None => {
                // The reminder first: a silo that dies right after storing
                // the order must leave something that wakes the saga up.
                // (A reminder without an order cancels itself.)
                ReminderService::of(ctx.silo())?
                    .register(ctx.id(), REMINDER, RETRY_EVERY, RETRY_EVERY)
                    .await?;
                let line = format!(
                    "New: {} x {} for {} at {} each",
                    order.quantity, order.sku, order.customer, order.unit_price
                );
                self.state.order = Some(order);
                self.state.status = OrderStatus::New;
                self.state.history.push(line);
                self.state.write_or_reset(ctx).await?;
            }
        }
        self.advance(ctx).await?;
        Ok(self.view())
    }

    /// The customer cancels: unless the order is already over, the saga
    /// turns to compensation (refund, release) and ends Cancelled. An
    /// accepted order stays accepted.
    pub async fn cancel(
        &mut self,
        reason: String,
        ctx: &GrainContext<Self>,
    ) -> Result<SagaView, SagaError> {
        if self.state.order.is_some() && !self.state.status.is_final() {
            if !matches!(
                self.state.status,
                OrderStatus::Pending(Step::Compensate { .. })
            ) {
                self.state
                    .history
                    .push(format!("customer cancels: {reason}"));
                self.state.status = OrderStatus::Pending(Step::Compensate { reason });
                self.state.write_or_reset(ctx).await?;
            }
            self.advance(ctx).await?;
        }
        Ok(self.view())
    }

    /// Where the order stands (read-only: it does not drive the saga).
    #[read_only]
    pub async fn status(&self) -> SagaView {
        self.view()
    }
}

impl Handler<ReminderTick> for OrderSaga {
    async fn handle(&mut self, _tick: ReminderTick, ctx: &GrainContext<Self>) {
        if let Err(e) = self.advance(ctx).await {
            // The activation was reset; the next tick reloads and retries.
            tracing::warn!(saga = %ctx.id(), error = %e, "saga step failed");
        }
    }
}

impl OrderSaga {
    fn view(&self) -> SagaView {
        SagaView {
            status: self.state.status.clone(),
            history: self.state.history.clone(),
            waiting_on: self.waiting_on.clone(),
        }
    }

    /// Runs steps until the saga is over or a step cannot be done now.
    /// Each transition is stored before the step it leads to is acted on.
    async fn advance(&mut self, ctx: &GrainContext<Self>) -> Result<(), SagaError> {
        self.waiting_on = None;
        loop {
            let Some(order) = self.state.order.clone() else {
                // A reminder armed by a submit whose order was never stored.
                ReminderService::of(ctx.silo())?
                    .cancel(ctx.id(), REMINDER)
                    .await?;
                return Ok(());
            };
            let inventory = ctx
                .get_grain::<Inventory>(order.sku.as_str())
                .with_timeout(STEP_TIMEOUT);
            let account = ctx
                .get_grain::<Account>(order.customer.as_str())
                .with_timeout(STEP_TIMEOUT);
            let (next, line) = match &self.state.status {
                OrderStatus::New => (
                    OrderStatus::Pending(Step::ReserveStock),
                    "Pending: reserve stock".to_owned(),
                ),
                OrderStatus::Pending(Step::ReserveStock) => {
                    match flatten(inventory.reserve(order.id.clone(), order.quantity).await) {
                        Ok(InventoryReply::Processed) => (
                            OrderStatus::Pending(Step::ChargePayment),
                            format!(
                                "inventory: processed ({} reserved); Pending: charge payment",
                                order.quantity
                            ),
                        ),
                        Ok(InventoryReply::Cancelled { reason }) => (
                            OrderStatus::Cancelled {
                                reason: reason.clone(),
                                compensated: false,
                            },
                            format!("inventory: cancelled ({reason}); Cancelled"),
                        ),
                        Err(e) => return self.wait(format!("inventory: {e}")),
                    }
                }
                OrderStatus::Pending(Step::ChargePayment) => {
                    match flatten(account.charge(order.id.clone(), order.total()).await) {
                        Ok(ChargeReply::Charged) => (
                            OrderStatus::Accepted,
                            format!("payment: charged {}; Accepted", order.total()),
                        ),
                        Ok(ChargeReply::Declined { reason }) => (
                            OrderStatus::Pending(Step::Compensate {
                                reason: format!("payment declined: {reason}"),
                            }),
                            format!("payment: declined ({reason}); Pending: compensate"),
                        ),
                        Ok(ChargeReply::Unavailable { reason }) => {
                            return self.wait(format!("payment: {reason}"));
                        }
                        Err(e) => return self.wait(format!("payment: {e}")),
                    }
                }
                OrderStatus::Pending(Step::Compensate { reason }) => {
                    // Both are no-ops for what was never done, so the saga
                    // need not know how far it got before it failed.
                    let refunded = match flatten(account.refund(order.id.clone()).await) {
                        Ok(amount) => amount,
                        Err(e) => return self.wait(format!("refund: {e}")),
                    };
                    let released = match flatten(inventory.release(order.id.clone()).await) {
                        Ok(quantity) => quantity,
                        Err(e) => return self.wait(format!("release: {e}")),
                    };
                    (
                        OrderStatus::Cancelled {
                            reason: reason.clone(),
                            compensated: true,
                        },
                        format!("compensated: refunded {refunded}, released {released}; Cancelled"),
                    )
                }
                OrderStatus::Accepted | OrderStatus::Cancelled { .. } => {
                    ReminderService::of(ctx.silo())?
                        .cancel(ctx.id(), REMINDER)
                        .await?;
                    return Ok(());
                }
            };
            self.state.status = next;
            self.state.history.push(line);
            self.state.write_or_reset(ctx).await?;
        }
    }

    /// Leaves the current step for the next reminder tick.
    fn wait(&mut self, why: String) -> Result<(), SagaError> {
        self.waiting_on = Some(why);
        Ok(())
    }
}

/// A participant's answer, or why there was none (runtime or storage
/// failure), as text: the saga only needs to know to retry.
fn flatten<T>(r: Result<Result<T, StorageError>, actor_core::Error>) -> Result<T, String> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

// ---------------------------------------------------------------------------
// Inventory
// ---------------------------------------------------------------------------

/// The inventory's stored state for one product.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockState {
    /// Units on the shelf, not reserved.
    pub available: u64,
    /// Units reserved, per order (accepted orders keep theirs: it ships).
    pub reservations: BTreeMap<String, u32>,
    /// Orders whose reservation was released (or refused): a late,
    /// repeated reserve for one of them is refused, so that it cannot take
    /// stock that nobody will release.
    pub released: BTreeSet<String>,
    /// Units ever put on the shelf.
    pub stocked: u64,
}

/// The inventory's answer to a reservation (the original's
/// `OrderProcessed` / `OrderCancelled`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InventoryReply {
    /// Reserved (or was already reserved for this order).
    Processed,
    /// Not reserved.
    Cancelled {
        /// Why.
        reason: String,
    },
}

/// The stock of one product (type name `inventory`, keyed by the SKU).
pub struct Inventory {
    state: PersistentState<StockState>,
}

impl Grain for Inventory {
    const TYPE_NAME: &'static str = "inventory";
}

#[grain_methods]
impl Inventory {
    /// Puts `quantity` more units on the shelf; answers the units available.
    pub async fn restock(
        &mut self,
        quantity: u64,
        ctx: &GrainContext<Self>,
    ) -> Result<u64, StorageError> {
        self.state.available += quantity;
        self.state.stocked += quantity;
        self.state.write_or_reset(ctx).await?;
        Ok(self.state.available)
    }

    /// Reserves `quantity` for `order_id`, at most once per order.
    pub async fn reserve(
        &mut self,
        order_id: String,
        quantity: u32,
        ctx: &GrainContext<Self>,
    ) -> Result<InventoryReply, StorageError> {
        if self.state.reservations.contains_key(&order_id) {
            return Ok(InventoryReply::Processed);
        }
        if self.state.released.contains(&order_id) {
            return Ok(InventoryReply::Cancelled {
                reason: "the order's reservation was already released".into(),
            });
        }
        if self.state.available < u64::from(quantity) {
            return Ok(InventoryReply::Cancelled {
                reason: format!(
                    "out of stock: {quantity} wanted, {} available",
                    self.state.available
                ),
            });
        }
        self.state.available -= u64::from(quantity);
        self.state.reservations.insert(order_id, quantity);
        self.state.write_or_reset(ctx).await?;
        Ok(InventoryReply::Processed)
    }

    /// Gives back what `order_id` reserved, if anything; answers how many
    /// units came back (0 if none, or if already released).
    pub async fn release(
        &mut self,
        order_id: String,
        ctx: &GrainContext<Self>,
    ) -> Result<u32, StorageError> {
        let quantity = self.state.reservations.remove(&order_id).unwrap_or(0);
        if quantity == 0 && self.state.released.contains(&order_id) {
            return Ok(0);
        }
        self.state.available += u64::from(quantity);
        self.state.released.insert(order_id);
        self.state.write_or_reset(ctx).await?;
        Ok(quantity)
    }

    /// The stock as stored.
    #[read_only]
    pub async fn stock(&self) -> StockState {
        self.state.state().clone()
    }
}

// ---------------------------------------------------------------------------
// Payment
// ---------------------------------------------------------------------------

/// The card network that authorises charges, outside the silo. It can be
/// taken offline to play an outage (charges then answer
/// [`ChargeReply::Unavailable`] and the saga retries later). Clones share
/// the switch.
#[derive(Debug, Clone)]
pub struct PaymentGateway {
    online: Arc<AtomicBool>,
}

impl Default for PaymentGateway {
    fn default() -> Self {
        PaymentGateway {
            online: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl PaymentGateway {
    /// An online gateway.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the gateway on or offline.
    pub fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::SeqCst);
    }

    /// Whether charges can be authorised now.
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::SeqCst)
    }
}

/// A customer's account as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    /// Money left, in cents.
    pub balance: u64,
    /// Charges taken, per order.
    pub charges: BTreeMap<String, u64>,
    /// Orders refunded (or refunded before any charge): a late, repeated
    /// charge for one of them is declined.
    pub refunded: BTreeSet<String>,
}

/// The answer to a charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChargeReply {
    /// Charged (or was already charged for this order).
    Charged,
    /// Refused for good.
    Declined {
        /// Why.
        reason: String,
    },
    /// Cannot be decided now (the gateway is offline); nothing was charged.
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// A customer's account (type name `account`, keyed by the customer).
pub struct Account {
    state: PersistentState<AccountState>,
    gateway: PaymentGateway,
}

impl Grain for Account {
    const TYPE_NAME: &'static str = "account";
}

#[grain_methods]
impl Account {
    /// Adds money; answers the balance.
    pub async fn deposit(
        &mut self,
        amount: u64,
        ctx: &GrainContext<Self>,
    ) -> Result<u64, StorageError> {
        self.state.balance += amount;
        self.state.write_or_reset(ctx).await?;
        Ok(self.state.balance)
    }

    /// Charges `amount` for `order_id`, at most once per order.
    pub async fn charge(
        &mut self,
        order_id: String,
        amount: u64,
        ctx: &GrainContext<Self>,
    ) -> Result<ChargeReply, StorageError> {
        if self.state.charges.contains_key(&order_id) {
            return Ok(ChargeReply::Charged);
        }
        if self.state.refunded.contains(&order_id) {
            return Ok(ChargeReply::Declined {
                reason: "the order was already refunded".into(),
            });
        }
        if !self.gateway.is_online() {
            return Ok(ChargeReply::Unavailable {
                reason: "the payment gateway is offline".into(),
            });
        }
        if self.state.balance < amount {
            return Ok(ChargeReply::Declined {
                reason: format!(
                    "insufficient funds: {amount} wanted, {} in the account",
                    self.state.balance
                ),
            });
        }
        self.state.balance -= amount;
        self.state.charges.insert(order_id, amount);
        self.state.write_or_reset(ctx).await?;
        Ok(ChargeReply::Charged)
    }

    /// Gives back what `order_id` was charged, if anything; answers the
    /// amount (0 if none, or if already refunded).
    pub async fn refund(
        &mut self,
        order_id: String,
        ctx: &GrainContext<Self>,
    ) -> Result<u64, StorageError> {
        let amount = self.state.charges.remove(&order_id).unwrap_or(0);
        if amount == 0 && self.state.refunded.contains(&order_id) {
            return Ok(0);
        }
        self.state.balance += amount;
        self.state.refunded.insert(order_id);
        self.state.write_or_reset(ctx).await?;
        Ok(amount)
    }

    /// The account as stored.
    #[read_only]
    pub async fn account(&self) -> AccountState {
        self.state.state().clone()
    }
}

// ---------------------------------------------------------------------------
// The silo
// ---------------------------------------------------------------------------

/// A running silo of the shop: the three grain types on a SQLite file,
/// with its reminder service delivering.
pub struct Shop {
    silo: Silo,
    storage: Arc<dyn StorageProvider>,
    reminders: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for Shop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shop")
            .field("silo", &self.silo.name())
            .finish_non_exhaustive()
    }
}

impl Shop {
    /// Starts a silo named `name` whose grain state and reminders live in
    /// the SQLite file `db` (created if missing), with charges authorised
    /// by `gateway`.
    pub async fn start(name: &str, db: &Path, gateway: PaymentGateway) -> anyhow::Result<Shop> {
        let storage: Arc<dyn StorageProvider> = Arc::new(SqliteStorage::open(db).await?);
        let reminders =
            Arc::new(SqlReminders::connect(&format!("sqlite://{}", db.display())).await?);
        let silo = Silo::builder()
            .name(name)
            .with_default_storage(storage.clone())
            .with_reminders(reminders)
            .grain_with_async(|ctx| async move {
                Ok(OrderSaga {
                    state: PersistentState::load(&ctx, STATE_NAME).await?,
                    waiting_on: None,
                })
            })
            .grain_with_async(|ctx| async move {
                Ok(Inventory {
                    state: PersistentState::load(&ctx, STATE_NAME).await?,
                })
            })
            .grain_with_async(move |ctx| {
                let gateway = gateway.clone();
                async move {
                    Ok(Account {
                        state: PersistentState::load(&ctx, STATE_NAME).await?,
                        gateway,
                    })
                }
            })
            .start()
            .await?;
        // A lone silo owns every grain's reminders.
        let reminders = ReminderService::of(&silo)?.clone().start(
            silo.clone(),
            Arc::new(|_| true),
            REMINDER_POLL,
        );
        Ok(Shop {
            silo,
            storage,
            reminders,
        })
    }

    /// The silo, for grain references.
    pub fn silo(&self) -> &Silo {
        &self.silo
    }

    /// The saga of `order_id`.
    pub fn saga(&self, order_id: &str) -> GrainRef<OrderSaga> {
        self.silo.get_grain::<OrderSaga>(order_id)
    }

    /// The inventory of `sku`.
    pub fn inventory(&self, sku: &str) -> GrainRef<Inventory> {
        self.silo.get_grain::<Inventory>(sku)
    }

    /// The account of `customer`.
    pub fn account(&self, customer: &str) -> GrainRef<Account> {
        self.silo.get_grain::<Account>(customer)
    }

    /// The saga of `order_id` as stored, read from the database without
    /// activating (or calling) the grain.
    pub async fn stored_saga(&self, order_id: &str) -> anyhow::Result<Option<SagaState>> {
        let key = StateKey::new(&GrainId::new(OrderSaga::TYPE_NAME, order_id), STATE_NAME);
        Ok(match self.storage.read(&key).await? {
            Some(stored) => Some(serde_json::from_slice(&stored.data)?),
            None => None,
        })
    }

    /// Waits (reading storage, never calling the saga) until the saga of
    /// `order_id` is stored as Accepted or Cancelled, at most `within`.
    pub async fn wait_until_final(
        &self,
        order_id: &str,
        within: Duration,
    ) -> anyhow::Result<SagaState> {
        let until = Instant::now() + within;
        loop {
            if let Some(state) = self.stored_saga(order_id).await? {
                if state.status.is_final() {
                    return Ok(state);
                }
            }
            if Instant::now() >= until {
                anyhow::bail!("the saga of {order_id} did not finish within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops reminder delivery and shuts the silo down.
    pub async fn stop(self) {
        self.reminders.abort();
        self.silo.shutdown().await;
    }
}

// ---------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------

/// The product every order of the scenario buys.
pub const SKU: &str = "rust-book";
/// Units put on the shelf at the start.
pub const STOCK: u64 = 10;
/// Price of one book, in cents.
pub const PRICE: u64 = 3_000;

/// What the scenario saw.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Every order and its final status, in submission order.
    pub orders: Vec<(Order, OrderStatus)>,
    /// Where the order that crossed the restart stood when the first silo
    /// was shut down.
    pub status_at_restart: OrderStatus,
    /// The stock at the end.
    pub stock: StockState,
    /// Every customer's account at the end.
    pub accounts: BTreeMap<String, AccountState>,
    /// The customers' balances at the start.
    pub deposits: BTreeMap<String, u64>,
}

/// Checks the books: every unit is on the shelf or reserved by exactly one
/// accepted order, and every customer paid exactly for their accepted
/// orders. Nothing reserved twice, nothing leaked, nothing charged for a
/// cancelled order.
pub fn check_consistency(outcome: &Outcome) -> Result<(), String> {
    let stock = &outcome.stock;
    let reserved: u64 = stock.reservations.values().map(|q| u64::from(*q)).sum();
    if stock.available + reserved != stock.stocked {
        return Err(format!(
            "stock leaked: {} available + {reserved} reserved != {} stocked",
            stock.available, stock.stocked
        ));
    }
    let accepted: BTreeMap<&str, &Order> = outcome
        .orders
        .iter()
        .filter(|(_, s)| *s == OrderStatus::Accepted)
        .map(|(o, _)| (o.id.as_str(), o))
        .collect();
    let want: BTreeMap<&str, u32> = accepted.iter().map(|(id, o)| (*id, o.quantity)).collect();
    let have: BTreeMap<&str, u32> = stock
        .reservations
        .iter()
        .map(|(id, q)| (id.as_str(), *q))
        .collect();
    if want != have {
        return Err(format!(
            "reservations {have:?} do not match the accepted orders {want:?}"
        ));
    }
    for (customer, account) in &outcome.accounts {
        let mine: BTreeMap<&str, u64> = accepted
            .values()
            .filter(|o| o.customer == *customer)
            .map(|o| (o.id.as_str(), o.total()))
            .collect();
        let charged: BTreeMap<&str, u64> = account
            .charges
            .iter()
            .map(|(id, a)| (id.as_str(), *a))
            .collect();
        if mine != charged {
            return Err(format!(
                "{customer} was charged {charged:?} for the accepted orders {mine:?}"
            ));
        }
        let deposit = outcome.deposits.get(customer).copied().unwrap_or(0);
        if account.balance + mine.values().sum::<u64>() != deposit {
            return Err(format!(
                "{customer}'s balance {} does not add up to the deposit {deposit}",
                account.balance
            ));
        }
    }
    Ok(())
}

fn order(id: &str, customer: &str, quantity: u32) -> Order {
    Order {
        id: id.into(),
        customer: customer.into(),
        sku: SKU.into(),
        quantity,
        unit_price: PRICE,
    }
}

/// Plays the story on the SQLite file `db` (use a fresh one); `say`
/// receives a line per event. Bounded: every wait has a deadline.
pub async fn play(db: &Path, mut say: impl FnMut(String)) -> anyhow::Result<Outcome> {
    let gateway = PaymentGateway::new();
    let shop = Shop::start("shop-1", db, gateway.clone()).await?;
    let deposits = BTreeMap::from([("alice".to_owned(), 20_000), ("bob".to_owned(), 1_000)]);
    shop.inventory(SKU).restock(STOCK).await??;
    for (customer, amount) in &deposits {
        shop.account(customer).deposit(*amount).await??;
    }
    say(format!(
        "silo shop-1 on {}: {STOCK} x {SKU} in stock at {PRICE} each; alice has 20000, bob has 1000",
        db.display()
    ));
    let mut orders = Vec::new();
    let show = |o: &Order, v: &SagaView, say: &mut dyn FnMut(String)| {
        say(format!(
            "{} ({} x {} for {}): {}",
            o.id, o.quantity, o.sku, o.customer, v.status
        ));
        for line in &v.history {
            say(format!("    {line}"));
        }
        if let Some(w) = &v.waiting_on {
            say(format!("    waiting: {w}"));
        }
    };

    // 1. The happy path.
    let o = order("order-1", "alice", 2);
    let v = shop.saga(&o.id).submit(o.clone()).await??;
    show(&o, &v, &mut say);
    orders.push(o);

    // 2. Payment declined: the reservation is compensated.
    let o = order("order-2", "bob", 1);
    let v = shop.saga(&o.id).submit(o.clone()).await??;
    show(&o, &v, &mut say);
    orders.push(o);

    // 3. Out of stock: the inventory answers cancelled.
    let o = order("order-3", "alice", 50);
    let v = shop.saga(&o.id).submit(o.clone()).await??;
    show(&o, &v, &mut say);
    orders.push(o);

    // 4. The gateway is down; the customer gives up waiting and cancels.
    gateway.set_online(false);
    say("the payment gateway goes offline".into());
    let o = order("order-4", "alice", 1);
    let v = shop.saga(&o.id).submit(o.clone()).await??;
    show(&o, &v, &mut say);
    let v = shop.saga(&o.id).cancel("customer gave up".into()).await??;
    show(&o, &v, &mut say);
    orders.push(o);

    // 5. Pending across a silo restart.
    let o = order("order-5", "alice", 3);
    let v = shop.saga(&o.id).submit(o.clone()).await??;
    show(&o, &v, &mut say);
    let status_at_restart = v.status.clone();
    shop.stop().await;
    say(format!(
        "silo shop-1 shut down with {} at {status_at_restart}",
        o.id
    ));
    gateway.set_online(true);
    let shop = Shop::start("shop-2", db, gateway.clone()).await?;
    say(
        "silo shop-2 started on the same file; the gateway is back online; nobody calls the saga"
            .into(),
    );
    let stored = shop
        .wait_until_final(&o.id, Duration::from_secs(10))
        .await?;
    say(format!(
        "{}: {} (resumed by its reminder on shop-2)",
        o.id, stored.status
    ));
    for line in &stored.history {
        say(format!("    {line}"));
    }
    orders.push(o);

    let mut finals = Vec::new();
    for o in orders {
        let status = shop.saga(&o.id).status().await?.status;
        finals.push((o, status));
    }
    let stock = shop.inventory(SKU).stock().await?;
    let mut accounts = BTreeMap::new();
    for customer in deposits.keys() {
        accounts.insert(customer.clone(), shop.account(customer).account().await?);
    }
    say(format!(
        "stock: {} available, reserved {:?} (of {} stocked)",
        stock.available, stock.reservations, stock.stocked
    ));
    for (customer, a) in &accounts {
        say(format!(
            "{customer}: balance {}, charged {:?}",
            a.balance, a.charges
        ));
    }
    shop.stop().await;
    Ok(Outcome {
        orders: finals,
        status_at_restart,
        stock,
        accounts,
        deposits,
    })
}
