//! A call in flight to an activation: its header and a type-erased body
//! that knows how to run the handler and deliver the reply.
//!
//! One allocation per call holds the header, the message and the reply
//! channel; the activation's queue holds only a pointer to it.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use stackfuture::StackFuture;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::envelope::CallHeader;
use crate::error::{Error, Result};
use crate::grain::Grain;
use crate::grain_context::GrainContext;
use crate::id::GrainId;
use crate::message::{Handler, Interleave, Message, SharedHandler};
use crate::router::Router;
use crate::silo::Silo;

/// Where a reply goes.
pub(crate) enum ReplyTo<R> {
    /// One-way call: nobody waits.
    None,
    /// A local caller awaits the typed reply.
    Local(oneshot::Sender<Result<R>>),
    /// A serialized caller awaits the encoded reply.
    Encoded(oneshot::Sender<Result<Vec<u8>>>),
}

impl<R: serde::Serialize> ReplyTo<R> {
    fn send(self, reply: Result<R>) {
        match self {
            ReplyTo::None => {
                if let Err(e) = reply {
                    tracing::warn!(error = %e, "one-way call failed");
                }
            }
            ReplyTo::Local(tx) => {
                let _ = tx.send(reply);
            }
            ReplyTo::Encoded(tx) => {
                let _ = tx.send(reply.and_then(|r| crate::codec::encode(&r)));
            }
        }
    }
}

/// A message with its header and reply channel.
#[doc(hidden)]
pub struct Call<M: Message> {
    pub(crate) header: CallHeader,
    pub(crate) msg: M,
    pub(crate) reply: ReplyTo<M::Reply>,
}

/// How a queued call borrows the grain.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `&mut self`.
    Exclusive,
    /// `&self`, with its interleaving rule.
    Shared(Interleave),
}

/// The outcome of one turn, for metrics and for dropping a panicked
/// activation.
#[doc(hidden)]
pub struct TurnEnd {
    pub(crate) panic: Option<String>,
    /// When the turn ended (set by the scheduler, for the next turn's
    /// start: one clock read per turn).
    pub(crate) ended: Option<Instant>,
}

/// Told when a turn has its outcome, just before the reply is sent, so
/// that metrics and filters have seen the call by the time its caller
/// resumes.
#[doc(hidden)]
pub trait TurnObserver: Sync {
    /// The turn ended (`true`: with an error). Returns whether the reply
    /// is to be held (handed to [`hold`](TurnObserver::hold)) instead of
    /// sent now: call layers send it once they have run.
    fn ended(&self, error: bool) -> bool;
    /// Keeps the reply of a turn for which `ended` said so.
    fn hold(&self, reply: HeldReply) {
        reply(None);
    }
}

/// A successful turn's reply, held for the call layers: sent when called,
/// as it is, or replaced by the error a layer returned after the turn.
#[doc(hidden)]
pub type HeldReply = Box<dyn FnOnce(Option<Error>) + Send>;

/// The observer of a turn.
#[doc(hidden)]
pub type OnEnd<'a> = &'a dyn TurnObserver;

/// Bytes a turn's future may take to run without a heap allocation of its
/// own (held inside the activation's drain task); a larger one is boxed.
/// A handler taking a `Vec` or a `String` and replying to a remote caller
/// fits (about 300 bytes); every turn moves this buffer a few times, and
/// the drain future, which holds it, must stay under 1,024 bytes (see its
/// size test).
const TURN_INLINE: usize = 320;

/// The future of one turn: the handler, its panic guard and its reply.
#[doc(hidden)]
pub(crate) type TurnFuture<'a> = StackFuture<'a, TurnEnd, TURN_INLINE>;

/// A queued call, type-erased over its message.
#[doc(hidden)]
pub trait Invoke<G: Grain>: Send {
    #[doc(hidden)]
    fn header(&self) -> &CallHeader;
    #[doc(hidden)]
    fn header_mut(&mut self) -> &mut CallHeader;
    #[doc(hidden)]
    fn access(&self) -> Access;
    #[doc(hidden)]
    fn run_exclusive<'a>(
        self: Box<Self>,
        grain: &'a mut G,
        ctx: &'a GrainContext<G>,
        on_end: OnEnd<'a>,
    ) -> TurnFuture<'a>;
    #[doc(hidden)]
    fn run_shared<'a>(
        self: Box<Self>,
        grain: &'a G,
        ctx: &'a GrainContext<G>,
        on_end: OnEnd<'a>,
    ) -> TurnFuture<'a>;
    #[doc(hidden)]
    fn fail(self: Box<Self>, error: Error);
    /// Sends the call on through `router` (its grain lives elsewhere now)
    /// and delivers the reply to the original caller.
    #[doc(hidden)]
    fn forward(self: Box<Self>, silo: &Silo, router: Arc<dyn Router>, target: GrainId);
    /// The message itself, for a call that was never queued (its sender
    /// gets it back, as `SendError` hands it over).
    #[doc(hidden)]
    fn into_message(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}

fn forward_call<M: Message>(call: Call<M>, silo: &Silo, router: Arc<dyn Router>, target: GrainId) {
    let Call { header, msg, reply } = call;
    let payload = match crate::codec::encode(&msg) {
        Ok(p) => p,
        Err(e) => return reply.send(Err(e)),
    };
    let encoded = header.into_encoded(target, payload, matches!(reply, ReplyTo::None));
    let silo = silo.clone();
    tokio::spawn(async move {
        let out = router.invoke(encoded).await;
        match reply {
            ReplyTo::None => {
                if let Err(e) = out {
                    tracing::warn!(error = %e, "forwarded one-way call failed");
                }
            }
            ReplyTo::Encoded(tx) => {
                let _ = tx.send(out);
            }
            ReplyTo::Local(tx) => {
                let _ = tx.send(out.and_then(|bytes| silo.decode::<M::Reply>(&bytes)));
            }
        }
    });
}

pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// What a turn cut off at its silo's lease end logs and drops its
/// activation with (see `UntilFence`).
pub(crate) const CUT_OFF: &str = "the turn was cut off at its silo's lease end (the silo may have been declared dead, and another silo may run the grain now)";

pin_project_lite::pin_project! {
    /// Runs `fut` to its end, unless its silo's fence deadline passes
    /// while it waits: then `None`, and `fut` is dropped where it waited (a
    /// turn of a silo whose lease ran out must not go on beside the
    /// grain's next activation elsewhere: the others activate a dead
    /// silo's grains once its lease has surely run out, so a turn that
    /// outlives the lease is cut off before they can). The first poll,
    /// where most turns end, arms no timer; a turn that waits arms one
    /// for the deadline and re-arms it when the lease is renewed
    /// meanwhile. A struct rather than an `async fn`, so that the turn's
    /// future is held once (an `async fn` taking it would hold it twice
    /// and push remote turns past `TURN_INLINE`).
    struct UntilFence<'f, F> {
        #[pin]
        fut: F,
        fence: Option<&'f crate::turn_fence::TurnFence>,
        timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<F: std::future::Future> std::future::Future for UntilFence<'_, F> {
    type Output = Option<F::Output>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        let Some(fence) = this.fence else {
            return Poll::Pending;
        };
        loop {
            let Some(deadline) = fence.deadline() else {
                return Poll::Pending;
            };
            let t = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if t.deadline() != deadline {
                t.as_mut().reset(deadline);
            }
            match t.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if !fence.allows(Instant::now()) => return Poll::Ready(None),
                // Renewed meanwhile: wait for the new deadline.
                Poll::Ready(()) => {}
            }
        }
    }
}

async fn finish<M: Message>(
    fut: impl std::future::Future<Output = M::Reply>,
    reply: ReplyTo<M::Reply>,
    grain: &GrainId,
    on_end: OnEnd<'_>,
    silo: &Silo,
) -> TurnEnd {
    let guarded = UntilFence {
        fut: AssertUnwindSafe(fut).catch_unwind(),
        fence: silo.turn_fence(),
        timer: None,
    };
    let Some(outcome) = guarded.await else {
        on_end.ended(true);
        // Whether the turn did what it was asked is unknown: as for a
        // silo that went away mid-call.
        reply.send(Err(Error::SiloUnavailable {
            silo: silo.name().to_owned(),
        }));
        return TurnEnd {
            panic: Some(CUT_OFF.to_owned()),
            ended: None,
        };
    };
    match outcome {
        Ok(r) => {
            let error = M::is_error(&r);
            if on_end.ended(error) {
                on_end.hold(Box::new(move |instead: Option<Error>| {
                    reply.send(instead.map_or(Ok(r), Err));
                }));
            } else {
                reply.send(Ok(r));
            }
            TurnEnd {
                panic: None,
                ended: None,
            }
        }
        Err(p) => {
            let message = panic_message(&*p);
            on_end.ended(true);
            reply.send(Err(Error::Panicked {
                grain: grain.clone(),
                method: M::NAME.to_owned(),
                message: message.clone(),
            }));
            TurnEnd {
                panic: Some(message),
                ended: None,
            }
        }
    }
}

/// A call answered by a [`Handler`].
#[doc(hidden)]
pub struct ExclusiveCall<M: Message>(pub(crate) Call<M>);
/// A call answered by a [`SharedHandler`].
#[doc(hidden)]
pub struct SharedCall<M: Message>(pub(crate) Call<M>);

impl<G: Handler<M>, M: Message> Invoke<G> for ExclusiveCall<M> {
    fn header(&self) -> &CallHeader {
        &self.0.header
    }
    fn header_mut(&mut self) -> &mut CallHeader {
        &mut self.0.header
    }
    fn access(&self) -> Access {
        Access::Exclusive
    }
    fn run_exclusive<'a>(
        self: Box<Self>,
        grain: &'a mut G,
        ctx: &'a GrainContext<G>,
        on_end: OnEnd<'a>,
    ) -> TurnFuture<'a> {
        let Call { msg, reply, .. } = self.0;
        StackFuture::from_or_box(finish::<M>(
            Handler::handle(grain, msg, ctx),
            reply,
            &ctx.activation.id,
            on_end,
            &ctx.silo,
        ))
    }
    fn run_shared<'a>(
        self: Box<Self>,
        _: &'a G,
        ctx: &'a GrainContext<G>,
        on_end: OnEnd<'a>,
    ) -> TurnFuture<'a> {
        on_end.ended(true);
        // The scheduler never runs an exclusive call as a shared turn.
        let grain = ctx.activation.id.clone();
        Invoke::<G>::fail(
            self,
            Error::Panicked {
                grain,
                method: M::NAME.to_owned(),
                message: "internal: exclusive call scheduled as shared".to_owned(),
            },
        );
        StackFuture::from(async {
            TurnEnd {
                panic: None,
                ended: None,
            }
        })
    }
    fn fail(self: Box<Self>, error: Error) {
        self.0.reply.send(Err(error));
    }
    fn forward(self: Box<Self>, silo: &Silo, router: Arc<dyn Router>, target: GrainId) {
        forward_call(self.0, silo, router, target);
    }
    fn into_message(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        Box::new(self.0.msg)
    }
}

impl<G: SharedHandler<M>, M: Message> Invoke<G> for SharedCall<M> {
    fn header(&self) -> &CallHeader {
        &self.0.header
    }
    fn header_mut(&mut self) -> &mut CallHeader {
        &mut self.0.header
    }
    fn access(&self) -> Access {
        Access::Shared(<G as SharedHandler<M>>::INTERLEAVE)
    }
    fn run_exclusive<'a>(
        self: Box<Self>,
        grain: &'a mut G,
        ctx: &'a GrainContext<G>,
        on_end: OnEnd<'a>,
    ) -> TurnFuture<'a> {
        self.run_shared(grain, ctx, on_end)
    }
    fn run_shared<'a>(
        self: Box<Self>,
        grain: &'a G,
        ctx: &'a GrainContext<G>,
        on_end: OnEnd<'a>,
    ) -> TurnFuture<'a> {
        let Call { msg, reply, .. } = self.0;
        StackFuture::from_or_box(finish::<M>(
            SharedHandler::handle(grain, msg, ctx),
            reply,
            &ctx.activation.id,
            on_end,
            &ctx.silo,
        ))
    }
    fn fail(self: Box<Self>, error: Error) {
        self.0.reply.send(Err(error));
    }
    fn forward(self: Box<Self>, silo: &Silo, router: Arc<dyn Router>, target: GrainId) {
        forward_call(self.0, silo, router, target);
    }
    fn into_message(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        Box::new(self.0.msg)
    }
}
