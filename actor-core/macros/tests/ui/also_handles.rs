use actor_core::prelude::*;
use actor_core_macros::grain_methods;

#[derive(Default)]
pub struct Counter {
    value: u64,
}

impl Grain for Counter {
    const TYPE_NAME: &'static str = "counter";
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Tick;

impl Message for Tick {
    type Reply = ();
    const NAME: &'static str = "tick";
}

// `Tick` is named, but no handler of it is written.
#[grain_methods(also_handles(Tick))]
impl Counter {
    pub async fn add(&mut self, n: u64) -> u64 {
        self.value += n;
        self.value
    }
}

pub struct Other;

impl Grain for Other {
    const TYPE_NAME: &'static str = "other";
}

// An argument the attribute does not know.
#[grain_methods(handles(Tick))]
impl Other {
    pub async fn get(&self) -> u64 {
        0
    }
}

fn main() {}
