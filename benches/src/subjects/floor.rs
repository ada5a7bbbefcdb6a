//! The floor: a task per actor reading an unbounded tokio mpsc, answering
//! through a tokio oneshot. No runtime does less for an ask.

use tokio::sync::{mpsc, oneshot};

use super::{Role, Subject};

pub(crate) enum FloorMsg {
    Ask(u64, oneshot::Sender<u64>),
    Tell(u64),
}

pub(crate) struct Floor;

impl Subject for Floor {
    const NAME: &'static str = "floor: raw tokio";
    const ROLE: Role = Role::Floor;
    type Env = ();
    type Handle = mpsc::UnboundedSender<FloorMsg>;

    async fn env() {}

    async fn spawn(_: &(), _: u64) -> Self::Handle {
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut value = 0u64;
            while let Some(m) = rx.recv().await {
                match m {
                    FloorMsg::Ask(x, reply) => {
                        value = value.wrapping_add(x);
                        let _ = reply.send(value);
                    }
                    FloorMsg::Tell(x) => value = value.wrapping_add(x),
                }
            }
        });
        tx
    }

    async fn ask(h: &Self::Handle, x: u64) -> u64 {
        let (tx, rx) = oneshot::channel();
        if h.send(FloorMsg::Ask(x, tx)).is_err() {
            panic!("floor task gone");
        }
        rx.await.expect("floor reply")
    }

    fn tell(h: &Self::Handle, x: u64) {
        if h.send(FloorMsg::Tell(x)).is_err() {
            panic!("floor task gone");
        }
    }
}
