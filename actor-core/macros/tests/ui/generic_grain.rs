use actor_core::prelude::*;
use actor_core_macros::grain_methods;

#[derive(Default)]
pub struct Cell<T> {
    value: T,
}

impl<T: Default + Send + Sync + 'static> Grain for Cell<T> {
    const TYPE_NAME: &'static str = "cell";
}

#[grain_methods]
impl<T: Clone + Default + Send + Sync + 'static> Cell<T> {
    pub async fn get(&self) -> T {
        self.value.clone()
    }
}

fn main() {}
