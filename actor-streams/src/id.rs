//! Stream identities and sequence tokens.
//!
//! A stream is named by a namespace (a kind of stream, such as `"numbers"`)
//! and a key (which one), the key being a grain key so that an implicitly
//! subscribed grain is simply the grain with the stream's key. Every item
//! carries a [`SequenceToken`] written by its producer handle; a consumer
//! drops redeliveries with a [`Dedup`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use actor_core::GrainKey;
use serde::{Deserialize, Serialize};

/// A stream: `(namespace, key)`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamId {
    /// The kind of stream (what implicit subscriptions are declared for).
    pub namespace: Arc<str>,
    /// Which stream of the namespace; also the key of the grains that
    /// implicitly consume it.
    pub key: GrainKey,
}

impl StreamId {
    /// The stream `key` of `namespace`.
    pub fn new(namespace: impl Into<Arc<str>>, key: impl Into<GrainKey>) -> Self {
        StreamId {
            namespace: namespace.into(),
            key: key.into(),
        }
    }

    /// A stable text form with the key's kind (`numbers/i:7`, `chat/s:7`),
    /// used for partitioning and storage: keys of different kinds never
    /// collide.
    pub fn storage_key(&self) -> String {
        // GrainId's storage key is `type/<kind>:key`: reuse its key part.
        let id = actor_core::GrainId::new("s", self.key.clone()).storage_key();
        let key_part = id.split_once('/').map_or(id.as_str(), |(_, k)| k);
        format!("{}/{}", self.namespace, key_part)
    }

    /// The partition (of `partitions`) that carries this stream on a
    /// partitioned provider: a stable hash (FNV-1a) of the storage key,
    /// the same on every silo and every build.
    pub fn partition(&self, partitions: u32) -> u32 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.storage_key().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (h % u64::from(partitions.max(1))) as u32
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.key)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Where an item stands in its stream.
///
/// Written by the producer handle that published the item: `producer` is
/// the handle's random id, `seq` counts its items from 1. Items of one
/// producer on one stream arrive in `seq` order on every provider, so
/// a consumer that has seen `seq` from a producer has seen everything
/// before it: a redelivery is an item at or below that mark (see
/// [`Dedup`]). `offset` is the broker's position of the item where the
/// broker numbers its log (NATS JetStream's stream sequence), the place a
/// subscription can be rewound to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SequenceToken {
    /// The producer handle that wrote the item.
    pub producer: u64,
    /// The item's number among that producer's items on this stream, from 1.
    pub seq: u64,
    /// The broker's position of the item, if it keeps a numbered log.
    pub offset: Option<u64>,
}

impl SequenceToken {
    /// The token of item `seq` of `producer`.
    pub const fn new(producer: u64, seq: u64) -> Self {
        SequenceToken {
            producer,
            seq,
            offset: None,
        }
    }

    /// The same token at the broker position `offset`.
    pub const fn at_offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }
}

impl fmt::Display for SequenceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}#{}", self.producer, self.seq)?;
        if let Some(o) = self.offset {
            write!(f, "@{o}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SequenceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Drops items already seen, by their sequence tokens: at-least-once
/// delivery made effectively-once for a consumer's own state.
///
/// Keep one in the consumer grain (persist it beside the state it guards
/// if duplicates must be dropped across reactivations too):
///
/// ```
/// use actor_streams::{Dedup, SequenceToken, StreamId};
///
/// let stream = StreamId::new("numbers", 1);
/// let mut seen = Dedup::new();
/// assert!(seen.first_time(&stream, &SequenceToken::new(9, 1)));
/// assert!(seen.first_time(&stream, &SequenceToken::new(9, 2)));
/// assert!(!seen.first_time(&stream, &SequenceToken::new(9, 1))); // redelivered
/// assert!(seen.first_time(&stream, &SequenceToken::new(4, 1)));  // another producer
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dedup {
    marks: HashMap<(StreamId, u64), u64>,
}

impl Dedup {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the item and says whether it is new: `false` for an item at
    /// or below the highest `seq` already seen from its producer on its
    /// stream (a redelivery).
    pub fn first_time(&mut self, stream: &StreamId, token: &SequenceToken) -> bool {
        let mark = self
            .marks
            .entry((stream.clone(), token.producer))
            .or_insert(0);
        if token.seq <= *mark {
            false
        } else {
            *mark = token.seq;
            true
        }
    }

    /// Whether the item was seen already, without recording it.
    pub fn seen(&self, stream: &StreamId, token: &SequenceToken) -> bool {
        self.marks
            .get(&(stream.clone(), token.producer))
            .is_some_and(|m| token.seq <= *m)
    }

    /// How many (stream, producer) marks are kept.
    pub fn len(&self) -> usize {
        self.marks.len()
    }

    /// Whether nothing was seen yet.
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_of_different_kinds_do_not_collide() {
        let a = StreamId::new("n", 7).storage_key();
        let b = StreamId::new("n", "7").storage_key();
        assert_ne!(a, b);
        assert_eq!(a, "n/i:7");
    }

    proptest! {
        /// Whatever the interleaving of producers and however items are
        /// redelivered (each prefix of a producer's items repeated), the
        /// dedup lets through each item exactly once, in order.
        #[test]
        fn dedup_passes_each_item_once(
            producers in 1u64..4,
            schedule in proptest::collection::vec((0u64..4, 0u64..3), 0..60),
        ) {
            let stream = StreamId::new("p", 1);
            let mut next = vec![1u64; producers as usize];
            let mut seen = Dedup::new();
            let mut passed: Vec<(u64, u64)> = Vec::new();
            for (p, back) in schedule {
                let p = p % producers;
                let n = next[p as usize];
                // Redeliver up to `back` earlier items, then the next one.
                let from = n.saturating_sub(back).max(1);
                for seq in from..=n {
                    if seen.first_time(&stream, &SequenceToken::new(p, seq)) {
                        passed.push((p, seq));
                    }
                }
                next[p as usize] = n + 1;
            }
            for p in 0..producers {
                let mine: Vec<u64> = passed.iter().filter(|(q, _)| *q == p).map(|(_, s)| *s).collect();
                let want: Vec<u64> = (1..next[p as usize]).collect();
                prop_assert_eq!(mine, want);
            }
        }

        /// Token order is (producer, seq, offset), and Display round-trips
        /// the parts a person reads.
        #[test]
        fn tokens_order_by_seq_within_a_producer(p in any::<u64>(), a in 1u64..1000, b in 1u64..1000) {
            let (x, y) = (SequenceToken::new(p, a), SequenceToken::new(p, b));
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            let shown = format!("#{a}");
            prop_assert!(x.to_string().ends_with(&shown));
        }

        /// Partitions are in range and stable for a stream.
        #[test]
        fn partition_is_stable_and_in_range(key in any::<i64>(), parts in 1u32..64) {
            let s = StreamId::new("ns", key);
            let p = s.partition(parts);
            prop_assert!(p < parts);
            prop_assert_eq!(p, s.clone().partition(parts));
        }
    }
}
