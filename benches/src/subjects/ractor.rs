//! ractor 0.16, without its default message-span propagation feature. Its
//! mailbox is always unbounded.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, rpc::CallResult};

use super::{Role, Subject};

pub(crate) enum RactorMsg {
    Ask(u64, RpcReplyPort<u64>),
    Tell(u64),
}

pub(crate) struct RactorCounter;

impl Actor for RactorCounter {
    type Msg = RactorMsg;
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<RactorMsg>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _: ActorRef<RactorMsg>,
        msg: RactorMsg,
        value: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RactorMsg::Ask(x, reply) => {
                *value = value.wrapping_add(x);
                let _ = reply.send(*value);
            }
            RactorMsg::Tell(x) => *value = value.wrapping_add(x),
        }
        Ok(())
    }
}

pub(crate) struct Ractor;

impl Subject for Ractor {
    const NAME: &'static str = "ractor 0.16";
    const ROLE: Role = Role::Peer;
    type Env = ();
    type Handle = ActorRef<RactorMsg>;

    async fn env() {}

    async fn spawn(_: &(), _: u64) -> Self::Handle {
        let (r, _join) = Actor::spawn(None, RactorCounter, ())
            .await
            .expect("ractor spawn");
        r
    }

    async fn ask(h: &Self::Handle, x: u64) -> u64 {
        match h.call(|reply| RactorMsg::Ask(x, reply), None).await {
            Ok(CallResult::Success(v)) => v,
            _ => panic!("ractor call failed"),
        }
    }

    fn tell(h: &Self::Handle, x: u64) {
        if h.cast(RactorMsg::Tell(x)).is_err() {
            panic!("ractor cast failed");
        }
    }
}
