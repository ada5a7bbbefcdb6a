//! actix 0.13: actors live on an actix `System`, one thread with its own
//! current-thread tokio runtime; the workload's tasks are spawned there
//! too (`actix_rt::spawn`). Whatever flavor a workload asks for, actix runs
//! single-threaded: that is how its API runs actors.

use std::future::Future;

use actix::{Actor, Addr, Context, Handler, Message};
use tokio::task::JoinHandle;

use super::{Executor, Flavor, Role, Subject};

pub(crate) struct ActixCounter {
    value: u64,
}

impl Actor for ActixCounter {
    type Context = Context<Self>;
}

pub(crate) struct XAsk(u64);
impl Message for XAsk {
    type Result = u64;
}

pub(crate) struct XTell(u64);
impl Message for XTell {
    type Result = ();
}

impl Handler<XAsk> for ActixCounter {
    type Result = u64;
    fn handle(&mut self, XAsk(x): XAsk, _: &mut Context<Self>) -> u64 {
        self.value = self.value.wrapping_add(x);
        self.value
    }
}

impl Handler<XTell> for ActixCounter {
    type Result = ();
    fn handle(&mut self, XTell(x): XTell, _: &mut Context<Self>) {
        self.value = self.value.wrapping_add(x);
    }
}

pub(crate) struct Actix;

impl Subject for Actix {
    const NAME: &'static str = "actix 0.13";
    const ROLE: Role = Role::Peer;
    const NOTE: Option<&'static str> = Some("on its own single-threaded System");
    type Env = ();
    type Handle = Addr<ActixCounter>;

    fn executor(_: Flavor) -> Executor {
        Executor::Actix(actix_rt::System::new())
    }

    fn spawn_task<F>(f: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        actix_rt::spawn(f)
    }

    async fn env() {}

    async fn spawn(_: &(), _: u64) -> Self::Handle {
        ActixCounter { value: 0 }.start()
    }

    async fn ask(h: &Self::Handle, x: u64) -> u64 {
        h.send(XAsk(x)).await.expect("actix send")
    }

    fn tell(h: &Self::Handle, x: u64) {
        h.do_send(XTell(x));
    }
}
