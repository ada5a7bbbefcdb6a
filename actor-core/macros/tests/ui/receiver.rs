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
    pub async fn consume(self) -> u64 {
        self.value
    }

    pub async fn boxed(self: Box<Self>) -> u64 {
        self.value
    }

    pub async fn create() -> Self {
        Counter::default()
    }

    // Fine: not async, so not a grain method.
    pub fn new() -> Self {
        Counter::default()
    }
}

fn main() {}
