//! Typed grain references: the handle callers use to reach a grain,
//! wherever it is activated.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::oneshot;

use crate::activation::Activation;
use crate::envelope::{CallHeader, EncodedCall};
use crate::error::{Error, Result};
use crate::grain::Grain;
use crate::id::GrainId;
use crate::invoke::{Call, ReplyTo};
use crate::message::{Accepts, Message};
use crate::silo::Silo;

/// A typed reference to the grain of type `G` with some key. Cheap to clone,
/// `Send + Sync`, comparable by id, and serialisable (as its [`GrainId`];
/// decoding one needs a silo, which the runtime provides when it decodes a
/// message).
///
/// Calls are compile-checked: [`ask`](GrainRef::ask) and
/// [`tell`](GrainRef::tell) take only messages `G` handles.
pub struct GrainRef<G: Grain> {
    id: GrainId,
    silo: Silo,
    timeout: Option<Duration>,
    /// The activation on this silo that the first local call reached:
    /// later calls queue on it directly (no table lookup) while it lives.
    /// Once it is dead they take the full path again (see `Silo::send`).
    local: OnceLock<Arc<Activation<G>>>,
    _g: PhantomData<fn() -> G>,
}

impl<G: Grain> GrainRef<G> {
    pub(crate) fn new(id: GrainId, silo: Silo) -> Self {
        GrainRef {
            id,
            silo,
            timeout: None,
            local: OnceLock::new(),
            _g: PhantomData,
        }
    }

    /// The activation this reference reached, if any and still alive: a
    /// call to it stays on this silo whatever a router would decide for a
    /// new activation.
    fn live_local(&self) -> Option<&Arc<Activation<G>>> {
        self.local.get().filter(|a| !a.is_dead())
    }

    /// The grain's id.
    pub fn id(&self) -> &GrainId {
        &self.id
    }

    /// This reference with a different deadline for its calls (instead of
    /// the silo's default, 30 s unless configured).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        GrainRef {
            timeout: Some(timeout),
            ..self.clone()
        }
    }

    /// Sends `msg` and waits for the reply, at most until the call's
    /// deadline. The grain's own failures come inside `M::Reply`; the
    /// runtime's (timeout, deadlock, panic, ...) as [`Error`].
    pub async fn ask<M, K>(&self, msg: M) -> Result<M::Reply>
    where
        G: Accepts<M, K>,
        M: Message,
    {
        let timeout = self.timeout.unwrap_or_else(|| self.silo.call_timeout());
        let (tx, rx) = oneshot::channel();
        let header = self
            .silo
            .outgoing_header(&self.id, M::NAME, timeout, false)?;
        let deadline = header.deadline;
        if let Some(router) = self.route() {
            let call = self.encode(&msg, header, false)?;
            if router.bounds_deadlines() {
                let reply = router.invoke(call).await?;
                return self.silo.decode(&reply);
            }
            let reply = match tokio::time::timeout_at(deadline, router.invoke(call)).await {
                Ok(reply) => reply?,
                Err(_) => {
                    return Err(Error::Timeout {
                        grain: self.id.clone(),
                        method: M::NAME.to_owned(),
                        timeout,
                    });
                }
            };
            return self.silo.decode(&reply);
        }
        let idle = self
            .silo
            .send_via::<G>(
                &self.id,
                G::invocation(|| Call {
                    header,
                    msg,
                    reply: ReplyTo::Local(tx),
                }),
                Some(&self.local),
                true,
            )
            .map_err(|crate::silo::Unsent(e, _)| *e)?;
        if let Some(act) = idle {
            // The header's deadline is the caller's clock reading plus
            // the timeout: the turn starts from that reading.
            let sent = deadline.checked_sub(timeout).unwrap_or(deadline);
            crate::activation::run_inline(act, self.silo.clone(), sent);
        }
        let mut rx = rx;
        // Most local replies come back within one round of the scheduler
        // (the grain's turn runs while this task yields): only a call still
        // waiting after that arms its deadline timer, which costs more than
        // the whole rest of a call.
        if let Some(done) = reply_after_one_round(&mut rx).await {
            return done.unwrap_or(Err(Error::SiloStopped));
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(Error::SiloStopped),
            Err(_) => Err(Error::Timeout {
                grain: self.id.clone(),
                method: M::NAME.to_owned(),
                timeout,
            }),
        }
    }

    /// Sends `msg` one-way: queued in the grain's mailbox (or handed to
    /// the transport towards the grain's silo), no reply awaited. A
    /// failure of the turn itself is only logged. A one-way call has no
    /// deadline: it runs however long it waits behind other calls.
    ///
    /// An error means the message was not delivered, and it comes back
    /// inside the [`SendError`](crate::SendError) (the silo had stopped, an
    /// outgoing filter refused it, it could not be encoded). Once handed
    /// to the transport towards another silo, a loss on the way (that
    /// silo dies) is logged, not returned: use [`ask`](GrainRef::ask) when
    /// the sender must know the message ran.
    pub fn tell<M, K>(&self, msg: M) -> std::result::Result<(), crate::SendError<M>>
    where
        G: Accepts<M, K>,
        M: Message,
    {
        use crate::error::SendError;
        let timeout = self.timeout.unwrap_or_else(|| self.silo.call_timeout());
        let header = match self.silo.outgoing_header(&self.id, M::NAME, timeout, true) {
            Ok(header) => header,
            Err(e) => return Err(SendError::new(e, msg)),
        };
        if let Some(router) = self.route() {
            let call = match self.encode(&msg, header, true) {
                Ok(call) => call,
                Err(e) => return Err(SendError::new(e, msg)),
            };
            let id = self.id.clone();
            let sent = router.invoke(call);
            tokio::spawn(async move {
                if let Err(e) = sent.await {
                    tracing::warn!(grain = %id, error = %e, "one-way call failed");
                }
            });
            return Ok(());
        }
        let call = G::invocation(|| Call {
            header,
            msg,
            reply: ReplyTo::None,
        });
        match self
            .silo
            .send_via::<G>(&self.id, call, Some(&self.local), false)
        {
            // A one-way send never hands an activation back to run (that
            // is for callers that run it inline): dropping the `None` here
            // keeps the whole result's out-of-line drop off this path.
            Ok(idle) => {
                drop(idle);
                Ok(())
            }
            Err(crate::silo::Unsent(e, call)) => {
                let msg = call
                    .into_message()
                    .downcast::<M>()
                    .expect("a call to G with M holds an M");
                Err(SendError::new(*e, *msg))
            }
        }
    }

    /// The router to send a call through, unless the grain is (or is to
    /// be) active on this silo.
    fn route(&self) -> Option<&Arc<dyn crate::router::Router>> {
        if self.silo.has_router() && self.live_local().is_none() {
            self.silo.remote_route(&self.id)
        } else {
            None
        }
    }
}

/// Polls `rx`; if it is not ready, yields once (without waiting for the I/O
/// driver) and polls again. `None` if the reply is still not there.
async fn reply_after_one_round<T>(
    rx: &mut oneshot::Receiver<T>,
) -> Option<std::result::Result<T, oneshot::error::RecvError>> {
    use std::future::Future;
    use std::task::Poll;
    let mut yielded = false;
    std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *rx).poll(cx) {
        Poll::Ready(r) => Poll::Ready(Some(r)),
        Poll::Pending if !yielded => {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

impl<G: Grain> GrainRef<G> {
    /// The envelope of a call to a grain on another silo.
    fn encode<M: Message>(
        &self,
        msg: &M,
        header: CallHeader,
        one_way: bool,
    ) -> Result<EncodedCall> {
        let payload = crate::codec::encode(msg)?;
        Ok(header.into_encoded(self.id.clone(), payload, one_way))
    }
}

impl<G: Grain> Clone for GrainRef<G> {
    fn clone(&self) -> Self {
        GrainRef {
            id: self.id.clone(),
            silo: self.silo.clone(),
            timeout: self.timeout,
            local: self.local.clone(),
            _g: PhantomData,
        }
    }
}

impl<G: Grain> PartialEq for GrainRef<G> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl<G: Grain> Eq for GrainRef<G> {}
impl<G: Grain> Hash for GrainRef<G> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state)
    }
}

impl<G: Grain> fmt::Debug for GrainRef<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GrainRef({})", self.id)
    }
}

impl<G: Grain> Serialize for GrainRef<G> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.id.serialize(s)
    }
}

impl<'de, G: Grain> Deserialize<'de> for GrainRef<G> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let id = GrainId::deserialize(d)?;
        if id.grain_type.as_str() != G::TYPE_NAME {
            return Err(serde::de::Error::custom(format!(
                "expected a reference to a `{}` grain, found {id}",
                G::TYPE_NAME
            )));
        }
        let silo = crate::silo::decoding_silo().ok_or_else(|| {
            serde::de::Error::custom("a GrainRef can only be decoded by a silo (Silo::decode)")
        })?;
        Ok(GrainRef::new(id, silo))
    }
}
