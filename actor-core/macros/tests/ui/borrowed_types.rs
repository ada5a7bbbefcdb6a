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
    pub async fn greet(&self, name: &str) -> String {
        format!("{name}: {}", self.value)
    }

    pub async fn name(&self) -> &'static str {
        "counter"
    }
}

fn main() {}
