//! Streams for actor-core grains: implicit and explicit subscriptions, memory, RabbitMQ and NATS JetStream providers.
//!
//! Work in progress (wave 2): see the open issue for this crate.
