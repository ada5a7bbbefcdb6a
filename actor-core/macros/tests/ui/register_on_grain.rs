// The listing moved from `Grain::register` to `GrainMethods`: code written
// for the old hook does not compile silently into an empty listing.
use actor_core::prelude::*;

#[derive(Default)]
pub struct Counter;

impl Grain for Counter {
    const TYPE_NAME: &'static str = "counter";
    fn register(_methods: &mut Methods<Self>) {}
}

fn main() {}
