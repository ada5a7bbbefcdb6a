use actor_core::prelude::*;
use actor_core_macros::grain_methods;

#[derive(Default)]
pub struct Counter {
    value: u64,
}

impl Grain for Counter {
    const TYPE_NAME: &'static str = "counter";
}

#[grain_methods(name = "x")]
impl Counter {
    #[read_only]
    pub fn get(&self) -> u64 {
        self.value
    }

    #[one_way(always)]
    pub async fn bump(&mut self) {
        self.value += 1;
    }

    pub async fn ask(&self) -> u64 {
        self.value
    }
}

pub trait Named {
    fn name(&self) -> String;
}

#[grain_methods]
impl Named for Counter {
    fn name(&self) -> String {
        "counter".to_owned()
    }
}

fn main() {}
