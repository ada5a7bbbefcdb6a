//! Warnings about what peers send (undecodable envelopes, bad frames,
//! refused handshakes), at most one line per period with the count since
//! the last: a peer that sends garbage on purpose must not be able to
//! flood the silo's logs, and the first one is still seen at once.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// How often each kind of peer-caused warning is logged at most.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts events of one kind and says when one is due to be logged.
#[derive(Debug)]
pub(crate) struct LogLimit {
    every: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    unlogged: u64,
    logged: Option<Instant>,
}

impl Default for LogLimit {
    fn default() -> Self {
        LogLimit::every(LOG_EVERY)
    }
}

impl LogLimit {
    /// At most one line per `every`.
    pub(crate) fn every(every: Duration) -> Self {
        LogLimit {
            every,
            state: Mutex::new(State::default()),
        }
    }

    /// Counts one event. When a line is due (the first event, then the
    /// first one at least a period after the last line), returns how many
    /// events the line stands for (this one included) and restarts the
    /// count; otherwise `None`.
    pub(crate) fn note(&self) -> Option<u64> {
        self.note_at(Instant::now())
    }

    fn note_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock();
        s.unlogged += 1;
        if s.logged.is_none_or(|at| now - at >= self.every) {
            s.logged = Some(now);
            Some(std::mem::take(&mut s.unlogged))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count_since_the_last() {
        let limit = LogLimit::every(Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(
            limit.note_at(at(0)),
            Some(1),
            "the first event is logged at once"
        );
        for _ in 0..999 {
            assert_eq!(limit.note_at(at(0)), None);
        }
        assert_eq!(limit.note_at(at(9)), None);
        assert_eq!(
            limit.note_at(at(10)),
            Some(1001),
            "the line counts what it stood for"
        );
        assert_eq!(limit.note_at(at(10)), None);
        assert_eq!(limit.note_at(at(70)), Some(2));
    }
}
