// One `#[grain_methods]` block per grain type: a second would list the
// type's messages (and its typed reference) a second time.
use actor_core::prelude::*;
use actor_core_macros::grain_methods;

#[derive(Default)]
pub struct Counter {
    value: u64,
}

impl Grain for Counter {
    const TYPE_NAME: &'static str = "counter";
}

#[grain_methods]
impl Counter {
    pub async fn add(&mut self, n: u64) -> u64 {
        self.value += n;
        self.value
    }
}

#[grain_methods]
impl Counter {
    #[read_only]
    pub async fn get(&self) -> u64 {
        self.value
    }
}

fn main() {}
