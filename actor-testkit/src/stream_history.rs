//! [`StreamHistory`]: the at-least-once oracle of streams. Producers
//! record each publish that was acknowledged, consumers each item their
//! turn accepted; the checker says whether an acknowledged item was never
//! delivered (lost), whether a delivered item was never published (a
//! phantom), and whether a producer's acknowledged items first reached a
//! consumer out of order (an item whose publish failed may land late:
//! its outcome is unknown). Redeliveries are allowed and counted.
//!
//! Items are named by stream, producer and sequence number, as stream
//! tokens name them; the oracle knows nothing of the streams crate.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

/// What the stream oracle found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamViolation {
    /// An acknowledged publish that no consumer received.
    Lost {
        /// The stream.
        stream: String,
        /// The producer.
        producer: u64,
        /// The item's sequence number.
        seq: u64,
    },
    /// A consumer received an item that was never published (not even
    /// attempted).
    Phantom {
        /// The consumer.
        consumer: String,
        /// The stream.
        stream: String,
        /// The producer.
        producer: u64,
        /// The item's sequence number.
        seq: u64,
    },
    /// A consumer received `seq` for the first time after a later item of
    /// the same producer on the same stream.
    OutOfOrder {
        /// The consumer.
        consumer: String,
        /// The stream.
        stream: String,
        /// The producer.
        producer: u64,
        /// The item that came late.
        seq: u64,
        /// The later item it came after.
        after: u64,
    },
}

impl fmt::Display for StreamViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamViolation::Lost {
                stream,
                producer,
                seq,
            } => write!(
                f,
                "item {producer:x}#{seq} on {stream} was acknowledged but never delivered"
            ),
            StreamViolation::Phantom {
                consumer,
                stream,
                producer,
                seq,
            } => write!(
                f,
                "{consumer} received {producer:x}#{seq} on {stream}, which was never published"
            ),
            StreamViolation::OutOfOrder {
                consumer,
                stream,
                producer,
                seq,
                after,
            } => write!(
                f,
                "{consumer} first received {producer:x}#{seq} on {stream} after #{after}"
            ),
        }
    }
}

type ItemKey = (String, u64, u64);

#[derive(Default)]
struct Log {
    attempted: BTreeSet<ItemKey>,
    acked: BTreeSet<ItemKey>,
    /// (consumer, stream, producer) -> sequence numbers in arrival order.
    deliveries: BTreeMap<(String, String, u64), Vec<u64>>,
}

/// The stream oracle (clones share the history).
#[derive(Clone, Default)]
pub struct StreamHistory {
    log: Arc<Mutex<Log>>,
}

impl fmt::Debug for StreamHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let log = self.log.lock();
        f.debug_struct("StreamHistory")
            .field("acked", &log.acked.len())
            .field(
                "deliveries",
                &log.deliveries.values().map(Vec::len).sum::<usize>(),
            )
            .finish()
    }
}

impl StreamHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// A publish of item `seq` of `producer` on `stream` is being tried
    /// (its outcome may stay unknown: a broker that went away).
    pub fn publishing(&self, stream: impl fmt::Display, producer: u64, seq: u64) {
        self.log
            .lock()
            .attempted
            .insert((stream.to_string(), producer, seq));
    }

    /// The publish of item `seq` was acknowledged: it must be delivered.
    pub fn acked(&self, stream: impl fmt::Display, producer: u64, seq: u64) {
        let key = (stream.to_string(), producer, seq);
        let mut log = self.log.lock();
        log.attempted.insert(key.clone());
        log.acked.insert(key);
    }

    /// `consumer`'s turn accepted item `seq` of `producer` on `stream`.
    pub fn delivered(
        &self,
        consumer: impl fmt::Display,
        stream: impl fmt::Display,
        producer: u64,
        seq: u64,
    ) {
        self.log
            .lock()
            .deliveries
            .entry((consumer.to_string(), stream.to_string(), producer))
            .or_default()
            .push(seq);
    }

    /// (acknowledged items, deliveries, deliveries that were repeats).
    pub fn counts(&self) -> (usize, usize, usize) {
        let log = self.log.lock();
        let total: usize = log.deliveries.values().map(Vec::len).sum();
        let distinct: usize = log
            .deliveries
            .values()
            .map(|v| v.iter().collect::<BTreeSet<_>>().len())
            .sum();
        (log.acked.len(), total, total - distinct)
    }

    /// How many acknowledged items no consumer has received yet.
    pub fn missing(&self) -> usize {
        self.lost().len()
    }

    fn lost(&self) -> Vec<StreamViolation> {
        let log = self.log.lock();
        let received: BTreeSet<ItemKey> = log
            .deliveries
            .iter()
            .flat_map(|((_, stream, producer), seqs)| {
                seqs.iter().map(move |s| (stream.clone(), *producer, *s))
            })
            .collect();
        log.acked
            .difference(&received)
            .map(|(stream, producer, seq)| StreamViolation::Lost {
                stream: stream.clone(),
                producer: *producer,
                seq: *seq,
            })
            .collect()
    }

    /// Every violation in the history.
    pub fn violations(&self) -> Vec<StreamViolation> {
        let mut out = self.lost();
        let log = self.log.lock();
        for ((consumer, stream, producer), seqs) in &log.deliveries {
            let mut seen = BTreeSet::new();
            let mut highest = 0;
            for &seq in seqs {
                if !log.attempted.contains(&(stream.clone(), *producer, seq)) {
                    out.push(StreamViolation::Phantom {
                        consumer: consumer.clone(),
                        stream: stream.clone(),
                        producer: *producer,
                        seq,
                    });
                }
                // Order is promised for acknowledged items only: an item
                // whose publish failed (its outcome unknown) may still
                // land, later than items published after it.
                if !log.acked.contains(&(stream.clone(), *producer, seq)) {
                    continue;
                }
                if seen.insert(seq) {
                    if seq < highest {
                        out.push(StreamViolation::OutOfOrder {
                            consumer: consumer.clone(),
                            stream: stream.clone(),
                            producer: *producer,
                            seq,
                            after: highest,
                        });
                    }
                    highest = highest.max(seq);
                }
            }
        }
        out
    }

    /// `Ok` when every acknowledged item was delivered, nothing was made
    /// up, and first deliveries kept each producer's order.
    pub fn check(&self) -> Result<(), Vec<StreamViolation>> {
        let v = self.violations();
        if v.is_empty() { Ok(()) } else { Err(v) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_history_with_redeliveries_passes() {
        let h = StreamHistory::new();
        for seq in 1..=4 {
            h.acked("s", 7, seq);
        }
        for seq in [1, 2, 3, 3, 2, 4] {
            h.delivered("c", "s", 7, seq);
        }
        assert_eq!(h.check(), Ok(()));
        assert_eq!(h.counts(), (4, 6, 2));
    }

    #[test]
    fn a_lost_item_fails() {
        let h = StreamHistory::new();
        h.acked("s", 7, 1);
        h.acked("s", 7, 2);
        h.delivered("c", "s", 7, 1);
        assert_eq!(
            h.check(),
            Err(vec![StreamViolation::Lost {
                stream: "s".into(),
                producer: 7,
                seq: 2
            }])
        );
        assert_eq!(h.missing(), 1);
    }

    #[test]
    fn a_phantom_and_a_reordering_fail() {
        let h = StreamHistory::new();
        h.acked("s", 7, 1);
        h.acked("s", 7, 2);
        h.publishing("s", 7, 3); // outcome unknown: delivering it is fine
        h.acked("s", 7, 4);
        // 3 arriving after 4 is fine (never acknowledged); 1 after 2 is not.
        for seq in [2, 1, 4, 3, 9] {
            h.delivered("c", "s", 7, seq);
        }
        let v = h.violations();
        assert!(v.contains(&StreamViolation::OutOfOrder {
            consumer: "c".into(),
            stream: "s".into(),
            producer: 7,
            seq: 1,
            after: 2
        }));
        assert!(v.contains(&StreamViolation::Phantom {
            consumer: "c".into(),
            stream: "s".into(),
            producer: 7,
            seq: 9
        }));
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(
            v[0].to_string().contains("never published")
                || v[1].to_string().contains("never published")
        );
    }
}
