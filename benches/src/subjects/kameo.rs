//! kameo 0.22, without its `tracing` feature (which costs about 1 KB per
//! actor and no speed), on an unbounded mailbox like every other subject.

use kameo::actor::{ActorRef, Spawn};
use kameo::mailbox;
use kameo::message::{Context, Message};

use super::{Role, Subject};

#[derive(kameo::Actor)]
pub(crate) struct KameoCounter {
    value: u64,
}

pub(crate) struct KAsk(u64);
pub(crate) struct KTell(u64);

impl Message<KAsk> for KameoCounter {
    type Reply = u64;
    async fn handle(&mut self, KAsk(x): KAsk, _: &mut Context<Self, u64>) -> u64 {
        self.value = self.value.wrapping_add(x);
        self.value
    }
}

impl Message<KTell> for KameoCounter {
    type Reply = ();
    async fn handle(&mut self, KTell(x): KTell, _: &mut Context<Self, ()>) {
        self.value = self.value.wrapping_add(x);
    }
}

pub(crate) struct Kameo;

impl Subject for Kameo {
    const NAME: &'static str = "kameo 0.22";
    const ROLE: Role = Role::Peer;
    type Env = ();
    type Handle = ActorRef<KameoCounter>;

    async fn env() {}

    async fn spawn(_: &(), _: u64) -> Self::Handle {
        KameoCounter::spawn_with_mailbox(KameoCounter { value: 0 }, mailbox::unbounded())
    }

    async fn ask(h: &Self::Handle, x: u64) -> u64 {
        h.ask(KAsk(x)).await.expect("kameo ask")
    }

    fn tell(h: &Self::Handle, x: u64) {
        h.tell(KTell(x)).try_send().expect("kameo tell");
    }
}
