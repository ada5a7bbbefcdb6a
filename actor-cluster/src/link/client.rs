//! The caller's side of the link: [`Link`] numbers the request envelopes
//! it sends and matches reply envelopes to waiting calls by that number
//! (never by a call id, which may come from a peer).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use actor_core::{EncodedCall, GrainId};
use dashmap::DashMap;
use tokio::sync::{Notify, mpsc, oneshot};
// Tokio's clock, not the standard one: a simulator (turmoil) controls it.
use tokio::time::Instant;
use tonic::Request;

use super::batch_stream::BatchStream;
use super::envelope::encode_request;
use super::pb::Envelope;
use super::pb::silo_link_client::SiloLinkClient;
use super::sweeper::{Outcome, Shared, Waiter, sweep};
use super::{DEFAULT_MAX_FRAME, DIRECTED, QUEUE};
use crate::error::{Error, Result};
use crate::transport::Connector;

/// How [`Link::connect`] opens a link; `LinkOptions::default()` is TCP
/// with [`DEFAULT_MAX_FRAME`], a 2 s connect timeout and an undirected
/// stream. Set what differs: `LinkOptions { directed: true,
/// ..LinkOptions::default() }`.
#[derive(Clone)]
pub struct LinkOptions {
    /// How the silo is reached: TCP by default, or any transport's
    /// [`Connector`].
    pub connector: Arc<dyn Connector>,
    /// The limit of one frame (a batch of envelopes), both ways.
    pub max_frame: usize,
    /// How long connecting may take.
    pub timeout: Duration,
    /// Whether the callee admits the stream's calls only for grains it
    /// hosts, answering "not here" for the others (see
    /// [`LinkService::with_admission`](super::LinkService::with_admission)):
    /// for calls a silo addressed through the grain directory.
    pub directed: bool,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            connector: crate::transport::tcp(),
            max_frame: DEFAULT_MAX_FRAME,
            timeout: Duration::from_secs(2),
            directed: false,
        }
    }
}

impl std::fmt::Debug for LinkOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkOptions")
            .field("max_frame", &self.max_frame)
            .field("timeout", &self.timeout)
            .field("directed", &self.directed)
            .finish_non_exhaustive()
    }
}

/// The caller's side of the link to one remote silo.
pub struct Link {
    shared: Arc<Shared>,
    out: mpsc::Sender<Envelope>,
}

impl Drop for Link {
    fn drop(&mut self) {
        // Nobody can send on it any more; the sweeper need not outlive the
        // calls already waiting (the reader fails them when the stream
        // closes), but it must not linger if the peer keeps it open.
        if self.shared.pending.is_empty() {
            self.shared.alive.store(false, Ordering::SeqCst);
            self.shared.wake.notify_one();
        }
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("endpoint", &self.shared.endpoint)
            .field("pending", &self.shared.pending.len())
            .field("alive", &self.is_alive())
            .finish()
    }
}

/// A call was never sent: the link was down (see [`Link::try_call`]). The
/// call did not run, and the caller still holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotSent;

impl Link {
    /// Opens the stream to the silo at `endpoint` (`host:port`) as
    /// `options` say (over TCP with the defaults).
    pub async fn connect(endpoint: &str, options: LinkOptions) -> Result<Link> {
        let LinkOptions {
            connector,
            max_frame,
            timeout,
            directed,
        } = options;
        let connector = &connector;
        let unavailable = |reason: String| Error::SiloUnavailable {
            endpoint: endpoint.to_owned(),
            reason,
        };
        let channel = crate::transport::channel(connector, endpoint, timeout, None).await?;
        let mut client = SiloLinkClient::new(channel)
            .max_decoding_message_size(max_frame)
            .max_encoding_message_size(max_frame);
        let (out, rx) = mpsc::channel(QUEUE);
        let mut request = Request::new(BatchStream::new(rx));
        if directed {
            request
                .metadata_mut()
                .insert(DIRECTED, tonic::metadata::MetadataValue::from_static("1"));
        }
        let mut replies = client
            .open(request)
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .into_inner();
        let shared = Arc::new(Shared {
            endpoint: endpoint.to_owned(),
            pending: DashMap::default(),
            numbers: AtomicU64::new(1),
            alive: AtomicBool::new(true),
            armed: AtomicU64::new(u64::MAX),
            wake: Notify::new(),
            epoch: Instant::now(),
            strays: Default::default(),
        });
        let reader = shared.clone();
        tokio::spawn(async move {
            let reason = loop {
                match replies.message().await {
                    Ok(Some(batch)) => {
                        for env in batch.envelopes {
                            reader.complete(env);
                        }
                    }
                    Ok(None) => break "the remote silo closed the link".to_owned(),
                    Err(status) => break status.to_string(),
                }
            };
            tracing::warn!(endpoint = %reader.endpoint, %reason, "silo link lost");
            // Everything in flight on this link fails now, not at its
            // deadline.
            reader.fail_all(|| actor_core::Error::SiloUnavailable {
                silo: reader.endpoint.clone(),
            });
        });
        tokio::spawn(sweep(shared.clone()));
        Ok(Link { shared, out })
    }

    /// Whether the stream is still up.
    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst) && !self.out.is_closed()
    }

    /// Fails every call in flight on this link with "silo unavailable" now
    /// and takes the link out of use: for a silo declared dead whose
    /// connection is still open (hung), so callers need not wait for
    /// their deadlines.
    pub fn fail_pending(&self) {
        let silo = format!("{} (declared dead)", self.shared.endpoint);
        self.shared
            .fail_all(|| actor_core::Error::SiloUnavailable { silo: silo.clone() });
    }

    /// The remote endpoint.
    pub fn endpoint(&self) -> &str {
        &self.shared.endpoint
    }

    fn unavailable(&self) -> actor_core::Error {
        actor_core::Error::SiloUnavailable {
            silo: self.shared.endpoint.clone(),
        }
    }

    /// Sends a call and waits for its encoded reply (an empty reply for a
    /// one-way call, once it is queued on the stream).
    pub async fn call(&self, call: EncodedCall) -> actor_core::Result<Vec<u8>> {
        match self.send_owned(call).await {
            Ok(outcome) => outcome,
            Err(_unsent) => Err(self.unavailable()),
        }
    }

    /// [`call`](Link::call) on a shared link, as a future that owns what
    /// it needs (for routers, which return `'static` futures).
    ///
    /// The call is encoded, registered and queued on the stream before
    /// this returns; the future only waits for the reply, and is small
    /// (it carries no envelope), so moving it around costs little.
    pub fn call_owned(self: Arc<Self>, mut call: EncodedCall) -> CallReply {
        let state = if self.is_alive() {
            // The payload moves into the envelope.
            let payload = std::mem::take(&mut call.payload);
            match encode_request(&call, payload) {
                Err(e) => ReplyState::Done(Some(Err(e))),
                Ok(env) => {
                    let (one_way, timeout) = (call.one_way, call.timeout);
                    self.start(env, one_way, timeout, || (call.target, call.method))
                }
            }
        } else {
            ReplyState::Unsent(Some(Vec::new()))
        };
        CallReply(Flight {
            shared: self.shared.clone(),
            state,
        })
    }

    /// [`call`](Link::call)'s body: a call that was never sent (the link
    /// was already down) comes back as `Err(call)`.
    async fn send_owned(
        &self,
        mut call: EncodedCall,
    ) -> std::result::Result<actor_core::Result<Vec<u8>>, EncodedCall> {
        if !self.is_alive() {
            return Err(call);
        }
        // The payload moves into the envelope (and back if it is not sent).
        let payload = std::mem::take(&mut call.payload);
        let env = match encode_request(&call, payload) {
            Ok(env) => env,
            Err(e) => return Ok(Err(e)),
        };
        let names = || (call.target.clone(), call.method.clone());
        let state = self.start(env, call.one_way, call.timeout, names);
        let flight = Flight {
            shared: self.shared.clone(),
            state,
        };
        match flight.await {
            Ok(outcome) => Ok(outcome),
            Err(payload) => {
                call.payload = payload;
                Err(call)
            }
        }
    }

    /// Sends `call`, giving it `timeout` to live, for callers that may send
    /// it elsewhere: a call that was never sent (the link was already
    /// down) fails with [`NotSent`], so the caller knows it did not run;
    /// the call is only borrowed (its payload is copied into the
    /// envelope), so it is still the caller's after any outcome, also
    /// after a "not here" answer, which means it did not run either.
    pub async fn try_call(
        &self,
        call: &EncodedCall,
        timeout: Duration,
    ) -> std::result::Result<actor_core::Result<Vec<u8>>, NotSent> {
        if !self.is_alive() {
            return Err(NotSent);
        }
        let mut env = match encode_request(call, call.payload.clone()) {
            Ok(env) => env,
            Err(e) => return Ok(Err(e)),
        };
        env.timeout_micros = u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX);
        let names = || (call.target.clone(), call.method.clone());
        let state = self.start(env, call.one_way, timeout, names);
        let flight = Flight {
            shared: self.shared.clone(),
            state,
        };
        flight.await.map_err(|_| NotSent)
    }

    /// Registers a request envelope (unless one-way; `names` gives what
    /// its timeout error names) and queues it on the stream, or starts
    /// waiting for room if the queue is full.
    fn start(
        &self,
        mut env: Envelope,
        one_way: bool,
        timeout: Duration,
        names: impl FnOnce() -> (GrainId, String),
    ) -> ReplyState {
        // The link numbers its requests itself: the call's own id may come
        // from a peer (a gateway forwards its clients' calls), and ids of
        // different callers can be equal.
        let call_id = self.shared.numbers.fetch_add(1, Ordering::Relaxed);
        env.call_id = call_id;
        let wait = if one_way {
            None
        } else {
            let (tx, rx) = oneshot::channel();
            let deadline = self.shared.deadline(timeout);
            self.shared.pending.insert(call_id, Waiter { tx, deadline });
            if !self.is_alive() {
                // Failed (`fail_pending`) between the caller's check and
                // the insert: nothing was sent.
                self.shared.pending.remove(&call_id);
                return ReplyState::Unsent(Some(env.payload));
            }
            self.shared.arm(deadline);
            let (target, method) = names();
            Some(Wait {
                rx,
                target,
                method,
                timeout,
            })
        };
        match self.out.try_send(env) {
            Ok(()) => match wait {
                Some(wait) => ReplyState::Waiting(wait),
                None => ReplyState::Done(Some(Ok(Vec::new()))),
            },
            Err(mpsc::error::TrySendError::Closed(env)) => {
                self.shared.pending.remove(&call_id);
                ReplyState::Unsent(Some(env.payload))
            }
            Err(mpsc::error::TrySendError::Full(env)) => {
                // Rare: the wait for room is boxed, so a call's future
                // does not carry its state.
                let out = self.out.clone();
                let send = Box::pin(async move { out.send(env).await.map_err(|e| e.0.payload) });
                ReplyState::Sending {
                    send,
                    call_id,
                    wait,
                }
            }
        }
    }
}

/// The reply of a call sent with [`Link::call_owned`].
pub struct CallReply(Flight);

impl std::fmt::Debug for CallReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallReply")
            .field("endpoint", &self.0.shared.endpoint)
            .finish_non_exhaustive()
    }
}

impl Future for CallReply {
    type Output = actor_core::Result<Vec<u8>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let flight = &mut self.0;
        Pin::new(&mut *flight).poll(cx).map(|r| {
            r.unwrap_or_else(|_unsent| {
                Err(actor_core::Error::SiloUnavailable {
                    silo: flight.shared.endpoint.clone(),
                })
            })
        })
    }
}

/// A call on its way: its reply, or `Err(payload)` if it was never sent
/// (the link was down, or closed before there was room for it).
struct Flight {
    shared: Arc<Shared>,
    state: ReplyState,
}

enum ReplyState {
    /// Known already (taken when polled to completion).
    Done(Option<actor_core::Result<Vec<u8>>>),
    /// Not sent (taken when polled to completion).
    Unsent(Option<Vec<u8>>),
    /// Sent; waiting for the reply or the deadline.
    Waiting(Wait),
    /// Waiting for room on the stream (rare). The call is registered
    /// already, so its deadline or the link's failure ends it meanwhile.
    Sending {
        send: Pin<Box<dyn Future<Output = std::result::Result<(), Vec<u8>>> + Send>>,
        call_id: u64,
        wait: Option<Wait>,
    },
}

impl Flight {
    /// The outcome of a registered call, from what its waiter received.
    fn outcome(
        &self,
        mut wait: Wait,
        got: std::result::Result<Outcome, oneshot::error::RecvError>,
    ) -> actor_core::Result<Vec<u8>> {
        match got {
            Ok(Outcome::Done(reply)) => reply,
            Ok(Outcome::Expired) => Err(actor_core::Error::Timeout {
                grain: wait.target,
                method: std::mem::take(&mut wait.method),
                timeout: wait.timeout,
            }),
            Err(_) => Err(actor_core::Error::SiloUnavailable {
                silo: self.shared.endpoint.clone(),
            }),
        }
    }
}

impl Future for Flight {
    type Output = std::result::Result<actor_core::Result<Vec<u8>>, Vec<u8>>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            let next = match &mut this.state {
                ReplyState::Done(outcome) => {
                    let outcome = outcome.take().expect("a call polled after it was done");
                    return Poll::Ready(Ok(outcome));
                }
                ReplyState::Unsent(payload) => {
                    let payload = payload.take().expect("a call polled after it was done");
                    return Poll::Ready(Err(payload));
                }
                ReplyState::Waiting(wait) => {
                    let Poll::Ready(got) = Pin::new(&mut wait.rx).poll(cx) else {
                        return Poll::Pending;
                    };
                    match std::mem::replace(&mut this.state, ReplyState::Done(None)) {
                        ReplyState::Waiting(wait) => {
                            ReplyState::Done(Some(this.outcome(wait, got)))
                        }
                        other => other,
                    }
                }
                ReplyState::Sending {
                    send,
                    call_id,
                    wait,
                } => {
                    // Ended before it was sent (its deadline, the link's
                    // failure): it is dropped unsent.
                    let ended = match wait {
                        Some(w) => match Pin::new(&mut w.rx).poll(cx) {
                            Poll::Ready(got) => Some(got),
                            Poll::Pending => None,
                        },
                        None => None,
                    };
                    match (ended, wait.take()) {
                        (Some(got), Some(w)) => ReplyState::Done(Some(this.outcome(w, got))),
                        (_, wait) => match send.as_mut().poll(cx) {
                            Poll::Pending => {
                                if let ReplyState::Sending { wait: slot, .. } = &mut this.state {
                                    *slot = wait;
                                }
                                return Poll::Pending;
                            }
                            Poll::Ready(Ok(())) => match wait {
                                Some(wait) => ReplyState::Waiting(wait),
                                None => ReplyState::Done(Some(Ok(Vec::new()))),
                            },
                            Poll::Ready(Err(payload)) => {
                                this.shared.pending.remove(call_id);
                                ReplyState::Unsent(Some(payload))
                            }
                        },
                    }
                }
            };
            this.state = next;
        }
    }
}

/// A sent call waiting for its reply, with what its timeout error names.
struct Wait {
    rx: oneshot::Receiver<Outcome>,
    target: GrainId,
    method: String,
    timeout: Duration,
}
