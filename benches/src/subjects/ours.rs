//! actor-core: one grain type, called through `GrainRef::ask` / `tell`.

use actor_core::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Role, Subject};

/// The benchmark grain: a `u64`, like every subject's actor.
#[derive(Default)]
pub(crate) struct BenchGrain {
    value: u64,
}

impl Grain for BenchGrain {
    const TYPE_NAME: &'static str = "bench";
}

impl GrainMethods for BenchGrain {
    fn register(m: &mut Methods<Self>) {
        m.add::<Add, _>();
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Add(u64);

impl Message for Add {
    type Reply = u64;
    const NAME: &'static str = "add";
}

impl Handler<Add> for BenchGrain {
    async fn handle(&mut self, Add(x): Add, _ctx: &GrainContext<Self>) -> u64 {
        self.value = self.value.wrapping_add(x);
        self.value
    }
}

pub(crate) struct Ours;

impl Subject for Ours {
    const NAME: &'static str = "actor-core";
    const ROLE: Role = Role::Ours;
    type Env = Silo;
    type Handle = GrainRef<BenchGrain>;

    async fn env() -> Silo {
        Silo::builder()
            .name("bench")
            .grain::<BenchGrain>()
            .start()
            .await
            .expect("silo starts")
    }

    async fn spawn(env: &Silo, i: u64) -> Self::Handle {
        env.get_grain::<BenchGrain>(i as i64)
    }

    async fn ask(h: &Self::Handle, x: u64) -> u64 {
        h.ask(Add(x)).await.expect("grain call")
    }

    fn tell(h: &Self::Handle, x: u64) {
        h.tell(Add(x)).expect("grain tell");
    }
}
