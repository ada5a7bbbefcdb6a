// The old mistake: a grain whose messages are written by hand, registered
// on a silo without listing them. It used to compile, answer local calls
// and fail every serialized one with `UnknownMethod`; now no silo takes it.
use actor_core::prelude::*;

#[derive(Default)]
pub struct Counter {
    value: u64,
}

impl Grain for Counter {
    const TYPE_NAME: &'static str = "counter";
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Add(u64);

impl Message for Add {
    type Reply = u64;
    const NAME: &'static str = "add";
}

impl Handler<Add> for Counter {
    async fn handle(&mut self, Add(n): Add, _: &GrainContext<Self>) -> u64 {
        self.value += n;
        self.value
    }
}

fn main() {
    let _ = Silo::builder().grain::<Counter>();
    let _ = Silo::builder().grain_with(|_| Counter::default());
    let _ = Silo::builder().grain_with_async(|_| async { Ok(Counter::default()) });
}
