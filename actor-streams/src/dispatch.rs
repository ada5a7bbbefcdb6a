//! Delivery of one item to its consumers: the implicit subscribers of its
//! namespace and the explicit subscriptions of its stream, each through
//! the grain call path (so the consumer is activated wherever placement
//! puts it), awaiting the consumer's turn.
//!
//! A failed turn is tried again up to the policy's attempts, then the item
//! goes to dead letters with its error; an item that does not decode as
//! the consumer's type is dead-lettered at once. Only a silo that is
//! stopping leaves an item undelivered ([`Outcome::Unacked`]), so that a
//! persistent provider does not ack it and the broker hands it to another
//! silo.

use std::time::Duration;

use actor_core::{EncodedCall, GrainId, Silo, TraceContext};

use crate::item::{Ack, RawItem, WireDelivery};
use crate::streams::Streams;
use crate::subscription::{DeadLetter, Subscription, SubscriptionId, now_millis};

/// How deliveries are tried.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeliveryPolicy {
    /// Deliveries of one item to one consumer before it is dead-lettered
    /// (at least 1).
    pub max_attempts: u32,
    /// The pause before each new attempt.
    pub retry_backoff: Duration,
    /// The deadline of one delivery (the consumer's turn).
    pub turn_timeout: Duration,
    /// How long a consumer whose silo cannot be reached is tried before
    /// the item is left unacked (a persistent provider delivers it again
    /// later; the memory provider drops it). Such failures do not count
    /// towards dead letters.
    pub unreachable_for: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            max_attempts: 3,
            retry_backoff: Duration::from_millis(100),
            turn_timeout: Duration::from_secs(30),
            unreachable_for: Duration::from_secs(60),
        }
    }
}

impl DeliveryPolicy {
    /// `attempts` deliveries of an item before it is dead-lettered.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The pause before each new attempt.
    pub fn retry_backoff(mut self, pause: Duration) -> Self {
        self.retry_backoff = pause;
        self
    }

    /// The deadline of one delivery.
    pub fn turn_timeout(mut self, timeout: Duration) -> Self {
        self.turn_timeout = timeout;
        self
    }

    /// How long an unreachable consumer is tried before the item is left
    /// unacked.
    pub fn unreachable_for(mut self, wait: Duration) -> Self {
        self.unreachable_for = wait;
        self
    }
}

/// What became of an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every consumer acknowledged it, or it was dead-lettered for those
    /// that did not: the provider may ack it.
    Done,
    /// The silo is stopping, or a dead letter could not be stored: leave
    /// it unacked, for the broker to deliver again.
    Unacked,
}

struct Target {
    grain: GrainId,
    method: String,
    subscription: Option<SubscriptionId>,
    /// The typed path of an implicit consumer.
    typed: Option<crate::streams::TypedDeliver>,
}

/// Delivers `item` to the subscriptions `only` (a replay).
pub(crate) async fn deliver_to(
    silo: &Silo,
    streams: &Streams,
    provider: &str,
    item: &RawItem,
    only: &[Subscription],
) -> Outcome {
    deliver_inner(silo, streams, provider, item, only, 1, false).await
}

async fn deliver_inner(
    silo: &Silo,
    streams: &Streams,
    provider: &str,
    item: &RawItem,
    explicit: &[Subscription],
    attempt: u32,
    implicit: bool,
) -> Outcome {
    let targets = targets(streams, item, explicit, implicit);
    if targets.is_empty() {
        return Outcome::Done;
    }
    let counters = streams.counters(&item.stream.namespace);
    counters
        .in_flight
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let outcomes = futures::future::join_all(
        targets
            .iter()
            .map(|t| deliver_one(silo, streams, provider, item, t, attempt, 0)),
    )
    .await;
    counters
        .in_flight
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    if outcomes.contains(&Outcome::Unacked) {
        Outcome::Unacked
    } else {
        Outcome::Done
    }
}

fn targets(
    streams: &Streams,
    item: &RawItem,
    explicit: &[Subscription],
    implicit: bool,
) -> Vec<Target> {
    let implicit = if implicit {
        streams.implicit_for(&item.stream.namespace)
    } else {
        &[]
    };
    let mut targets: Vec<Target> = implicit
        .iter()
        .map(|c| Target {
            grain: GrainId::new(c.grain_type, item.stream.key.clone()),
            method: c.method.to_owned(),
            subscription: None,
            typed: Some(c.deliver.clone()),
        })
        .collect();
    targets.extend(explicit.iter().map(|s| Target {
        grain: s.consumer.clone(),
        method: s.method.clone(),
        subscription: Some(s.id.clone()),
        typed: None,
    }));
    targets
}

/// A run of one stream's items about to be delivered: its consumers, its
/// namespace's counters, and how many deliveries it counted in flight.
struct Run {
    targets: Vec<Target>,
    counters: std::sync::Arc<crate::metrics::Counters>,
    n: i64,
}

/// The consumers of `items` (one stream's), with their deliveries counted
/// in flight; `None` if there are no items or no consumers.
fn start_run(streams: &Streams, items: &[RawItem], explicit: &[Subscription]) -> Option<Run> {
    let first = items.first()?;
    let targets = targets(streams, first, explicit, true);
    if targets.is_empty() {
        return None;
    }
    let counters = streams.counters(&first.stream.namespace);
    let n = (items.len() * targets.len()) as i64;
    counters
        .in_flight
        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    Some(Run {
        targets,
        counters,
        n,
    })
}

/// Delivers a batch of items of one stream (a memory provider's push):
/// each consumer gets every item queued in order at once, and the replies
/// are awaited together; an item whose first delivery failed goes through
/// the retry path on its own, after the batch.
pub(crate) async fn deliver_batch(
    silo: &Silo,
    streams: &Streams,
    provider: &str,
    items: &[RawItem],
    explicit: &[Subscription],
    first_attempt: u32,
) -> Outcome {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(Run {
        targets,
        counters,
        n,
    }) = start_run(streams, items, explicit)
    else {
        return Outcome::Done;
    };
    let policy = streams.policy();
    let mut pending = Vec::with_capacity(items.len() * targets.len());
    let mut unstored = false;
    for target in &targets {
        for (i, item) in items.iter().enumerate() {
            let queued: std::result::Result<Reply, actor_core::Error> = match &target.typed {
                Some(typed) => typed(silo, item, first_attempt, policy.turn_timeout)
                    .map(Reply::Typed)
                    .map_err(actor_core::Error::Serialization),
                None => encode_call(item, target, first_attempt, policy.turn_timeout)
                    .map_err(actor_core::Error::Serialization)
                    .and_then(|call| silo.queue_encoded(call))
                    .map(Reply::Encoded),
            };
            if let Err(actor_core::Error::Serialization(e)) = queued {
                // It will never decode: dead at once.
                if dead_letter(streams, provider, item, target, e, 1).await == Outcome::Unacked {
                    unstored = true;
                }
                continue;
            }
            pending.push((i, target, queued));
        }
    }
    let mut again = Vec::new();
    let timeout = policy.turn_timeout;
    let replies = futures::future::join_all(pending.into_iter().map(|(i, t, q)| async move {
        let failed: Option<String> = match q {
            Ok(Reply::Encoded(reply)) => match tokio::time::timeout(timeout, reply).await {
                Ok(Ok(r)) => match actor_core::__private::codec::decode::<Ack>(&r) {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.0),
                    Err(e) => Some(format!("undecodable reply: {e}")),
                },
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no reply within {timeout:?}")),
            },
            Ok(Reply::Typed(reply)) => match reply.await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.0),
                Err(e) => Some(e.to_string()),
            },
            Err(e) => Some(e.to_string()),
        };
        if let Some(error) = &failed {
            tracing::debug!(consumer = %t.grain, %error, "pipelined delivery failed; trying it again after the batch");
        }
        let ok = failed.is_none();
        (i, t, ok)
    }))
    .await;
    for (i, t, ok) in replies {
        if ok {
            counters.delivered.fetch_add(1, Relaxed);
        } else {
            again.push((i, t));
        }
    }
    counters.in_flight.fetch_sub(n, Relaxed);
    let mut outcome = if unstored {
        Outcome::Unacked
    } else {
        Outcome::Done
    };
    for (i, t) in again {
        if deliver_one(silo, streams, provider, &items[i], t, first_attempt + 1, 1).await
            == Outcome::Unacked
        {
            outcome = Outcome::Unacked;
        }
    }
    outcome
}

/// Delivers a run of items of one stream (a partition agent's) in order
/// to each consumer: the consumers side by side, each one's items one
/// after the other, the next sent only once the consumer's turn for the
/// one before has ended (or the item was dead-lettered for it). Calls
/// sent together to one grain are not bound to arrive in the order they
/// were sent when the grain's location changes meanwhile (a call that
/// hits a moving activation is routed again, on its own), so a pipelined
/// run could reach a consumer out of order while silos join; this cannot.
/// An item left unacked for a consumer ends that consumer's run (the
/// broker delivers the rest again, in order).
pub(crate) async fn deliver_in_order(
    silo: &Silo,
    streams: &Streams,
    provider: &str,
    items: &[RawItem],
    explicit: &[Subscription],
    first_attempt: u32,
) -> Outcome {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(Run {
        targets,
        counters,
        n,
    }) = start_run(streams, items, explicit)
    else {
        return Outcome::Done;
    };
    let outcomes = futures::future::join_all(
        targets
            .iter()
            .map(|t| deliver_run_to(silo, streams, provider, items, t, first_attempt)),
    )
    .await;
    counters.in_flight.fetch_sub(n, Relaxed);
    if outcomes.contains(&Outcome::Unacked) {
        Outcome::Unacked
    } else {
        Outcome::Done
    }
}

/// `items` to `target`, one at a time (see [`deliver_in_order`]).
async fn deliver_run_to(
    silo: &Silo,
    streams: &Streams,
    provider: &str,
    items: &[RawItem],
    target: &Target,
    first_attempt: u32,
) -> Outcome {
    let timeout = streams.policy().turn_timeout;
    for item in items {
        // The first attempt through the typed path where there is one (no
        // encoding for a consumer on this silo), then the retry path.
        let (attempt, tried) = match &target.typed {
            Some(typed) => match typed(silo, item, first_attempt, timeout) {
                Ok(reply) => match reply.await {
                    Ok(Ok(())) => {
                        streams
                            .counters(&item.stream.namespace)
                            .delivered
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(consumer = %target.grain, error = %e.0, "delivery failed; trying again");
                        (first_attempt + 1, 1)
                    }
                    Err(e) => {
                        tracing::debug!(consumer = %target.grain, error = %e, "delivery failed; trying again");
                        (first_attempt + 1, 1)
                    }
                },
                Err(e) => {
                    // It will never decode: dead at once.
                    if dead_letter(streams, provider, item, target, e, 1).await == Outcome::Unacked
                    {
                        return Outcome::Unacked;
                    }
                    continue;
                }
            },
            None => (first_attempt, 0),
        };
        if deliver_one(silo, streams, provider, item, target, attempt, tried).await
            == Outcome::Unacked
        {
            return Outcome::Unacked;
        }
    }
    Outcome::Done
}

/// A delivery's reply on its way: encoded (explicit subscriptions) or
/// typed (implicit consumers).
enum Reply {
    Encoded(actor_core::EncodedReply),
    Typed(crate::provider::BoxFuture<'static, actor_core::Result<Ack>>),
}

fn encode_call(
    item: &RawItem,
    target: &Target,
    attempt: u32,
    timeout: Duration,
) -> Result<EncodedCall, String> {
    let wire = WireDelivery {
        stream: item.stream.clone(),
        token: item.token,
        attempt,
        subscription: target.subscription.clone(),
        item: item.payload.clone(),
    };
    let payload = actor_core::__private::codec::encode(&wire).map_err(|e| e.to_string())?;
    let mut call = EncodedCall::new(
        target.grain.clone(),
        target.method.clone(),
        payload,
        timeout,
    );
    call.trace = item
        .traceparent
        .as_deref()
        .and_then(|t| TraceContext::from_traceparent(t).ok());
    Ok(call)
}

async fn deliver_one(
    silo: &Silo,
    streams: &Streams,
    provider: &str,
    item: &RawItem,
    target: &Target,
    first_attempt: u32,
    tried: u32,
) -> Outcome {
    use std::sync::atomic::Ordering::Relaxed;
    let policy = streams.policy();
    let counters = streams.counters(&item.stream.namespace);
    let trace = item
        .traceparent
        .as_deref()
        .and_then(|t| TraceContext::from_traceparent(t).ok());
    let mut attempt = first_attempt.max(1);
    let mut tries = tried;
    let mut unreachable_since: Option<tokio::time::Instant> = None;
    loop {
        tries += 1;
        if attempt > 1 {
            counters.redelivered.fetch_add(1, Relaxed);
        }
        let wire = WireDelivery {
            stream: item.stream.clone(),
            token: item.token,
            attempt,
            subscription: target.subscription.clone(),
            item: item.payload.clone(),
        };
        let payload = match actor_core::__private::codec::encode(&wire) {
            Ok(p) => p,
            Err(e) => {
                return dead_letter(streams, provider, item, target, e.to_string(), tries).await;
            }
        };
        let mut call = EncodedCall::new(
            target.grain.clone(),
            target.method.clone(),
            payload,
            policy.turn_timeout,
        );
        call.trace = trace;
        let error = match silo.invoke_encoded(call).await {
            Ok(reply) => match actor_core::__private::codec::decode::<Ack>(&reply) {
                Ok(Ok(())) => {
                    counters.delivered.fetch_add(1, Relaxed);
                    return Outcome::Done;
                }
                Ok(Err(e)) => e.0,
                Err(e) => format!("undecodable reply: {e}"),
            },
            // The item does not decode as the consumer's type: it never
            // will, so it is dead at once.
            Err(actor_core::Error::Serialization(e)) => {
                return dead_letter(streams, provider, item, target, e, tries).await;
            }
            Err(actor_core::Error::SiloStopped) if silo.is_stopping() => return Outcome::Unacked,
            // The consumer's silo is unreachable or going away: not the
            // consumer's fault, so it does not count towards dead letters.
            // The grain comes back elsewhere once the cluster has declared
            // its silo dead; until then, try again.
            Err(
                e @ (actor_core::Error::SiloUnavailable { .. }
                | actor_core::Error::SiloStopped
                | actor_core::Error::NotHere { .. }),
            ) => {
                if silo.is_stopping() {
                    return Outcome::Unacked;
                }
                let waited = unreachable_since.get_or_insert_with(tokio::time::Instant::now);
                if waited.elapsed() > policy.unreachable_for {
                    tracing::warn!(stream = %item.stream, consumer = %target.grain, error = %e, "consumer unreachable; leaving the item unacked");
                    return Outcome::Unacked;
                }
                tries -= 1;
                tokio::time::sleep(policy.retry_backoff.max(Duration::from_millis(50))).await;
                continue;
            }
            Err(e) => e.to_string(),
        };
        unreachable_since = None;
        if silo.is_stopping() {
            return Outcome::Unacked;
        }
        if tries >= policy.max_attempts {
            return dead_letter(streams, provider, item, target, error, tries).await;
        }
        tracing::debug!(stream = %item.stream, consumer = %target.grain, %error, attempt, "delivery failed; trying again");
        tokio::time::sleep(policy.retry_backoff).await;
        attempt += 1;
    }
}

async fn dead_letter(
    streams: &Streams,
    provider: &str,
    item: &RawItem,
    target: &Target,
    error: String,
    attempts: u32,
) -> Outcome {
    tracing::warn!(stream = %item.stream, consumer = %target.grain, token = %item.token, %error, attempts, "item dead-lettered");
    streams
        .counters(&item.stream.namespace)
        .dead_lettered
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let letter = DeadLetter {
        provider: provider.to_owned(),
        stream: item.stream.clone(),
        token: item.token,
        consumer: target.grain.clone(),
        subscription: target.subscription.clone(),
        method: target.method.clone(),
        error,
        attempts,
        payload: item.payload.clone(),
        at_millis: now_millis(),
    };
    match streams.store().add_dead_letter(letter).await {
        Ok(()) => Outcome::Done,
        Err(e) => {
            // Not acked then: a persistent provider delivers it again
            // rather than lose it.
            tracing::error!(error = %e, stream = %item.stream, "cannot store a dead letter; leaving the item unacked");
            Outcome::Unacked
        }
    }
}
