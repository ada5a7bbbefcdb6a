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
    pub async fn add<N: Into<u64>>(&mut self, n: N) -> u64 {
        self.value += n.into();
        self.value
    }

    pub async fn set(&mut self, n: impl Into<u64>) {
        self.value = n.into();
    }

    pub async fn get<'a>(&'a self) -> u64 {
        self.value
    }
}

fn main() {}
