use actor_core::prelude::*;
use actor_core_macros::grain_methods;

#[derive(Default)]
pub struct Account {
    balance: i64,
}

impl Grain for Account {
    const TYPE_NAME: &'static str = "account";
}

#[grain_methods]
impl Account {
    // Not one of Orleans' options.
    #[transaction(required)]
    pub async fn deposit(&mut self, n: i64) -> i64 {
        self.balance += n;
        self.balance
    }

    // No option at all.
    #[transaction]
    pub async fn withdraw(&mut self, n: i64) -> i64 {
        self.balance -= n;
        self.balance
    }

    // A one-way call brings no participants back.
    #[one_way]
    #[transaction(join)]
    pub async fn reset(&mut self) {
        self.balance = 0;
    }
}

fn main() {}
