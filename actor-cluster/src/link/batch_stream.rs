//! Both directions of a link batch: whatever is queued when the stream is
//! polled goes out as one frame, so under load many calls share a write.

use std::task::Poll;

use futures::Stream;
use tokio::sync::mpsc;

use super::MAX_BATCH;
use super::pb::{Batch, Envelope};

/// A stream of batches: each poll takes everything queued (up to a bound)
/// and sends it as one frame.
pub(crate) struct BatchStream {
    rx: mpsc::Receiver<Envelope>,
}

impl BatchStream {
    pub(crate) fn new(rx: mpsc::Receiver<Envelope>) -> Self {
        BatchStream { rx }
    }
}

impl std::fmt::Debug for BatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchStream").finish_non_exhaustive()
    }
}

impl Stream for BatchStream {
    type Item = Batch;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        let first = match self.rx.poll_recv(cx) {
            Poll::Ready(Some(env)) => env,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        let mut envelopes = vec![first];
        while envelopes.len() < MAX_BATCH {
            match self.rx.try_recv() {
                Ok(env) => envelopes.push(env),
                Err(_) => break,
            }
        }
        Poll::Ready(Some(Batch { envelopes }))
    }
}
