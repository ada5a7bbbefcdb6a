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
    pub async fn add_pair(&mut self, (a, b): (u64, u64)) -> u64 {
        self.value += a + b;
        self.value
    }

    pub async fn ignore(&mut self, _: u64) {}

    pub async fn by_ref(&mut self, ref n: u64) {
        self.value = *n;
    }

    // Fine: `mut` bindings, and an unnamed context.
    pub async fn add(&mut self, mut n: u64, _: &GrainContext<Self>) -> u64 {
        n += self.value;
        self.value = n;
        n
    }
}

fn main() {}
