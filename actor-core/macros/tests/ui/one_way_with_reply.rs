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
    #[one_way]
    pub async fn add(&mut self, n: u64) -> u64 {
        self.value += n;
        self.value
    }

    // Fine: `()` is no reply.
    #[one_way]
    pub async fn reset(&mut self) -> () {
        self.value = 0;
    }
}

fn main() {}
