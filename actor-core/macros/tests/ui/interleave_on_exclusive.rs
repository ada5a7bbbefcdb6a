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
    #[read_only]
    pub async fn add(&mut self, n: u64) -> u64 {
        self.value += n;
        self.value
    }

    #[always_interleave]
    pub async fn reset(&mut self) {
        self.value = 0;
    }

    #[read_only]
    #[always_interleave]
    pub async fn get(&self) -> u64 {
        self.value
    }
}

fn main() {}
