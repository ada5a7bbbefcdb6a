//! Plays the scenario: a clerk deposits, an auditor reads, the clerk may
//! not withdraw until the manager grants it.

use actor_core::Error;
use example_call_layers::{Outcomes, PolicyRef, VaultRef, as_role, start_silo};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let outcomes = Outcomes::default();
    let silo = start_silo(outcomes.clone()).await?;
    let vault = silo.get_grain::<example_call_layers::Vault>("main");
    let policy = silo.get_grain::<example_call_layers::Policy>("vault");

    println!(
        "clerk deposits 100: {}",
        as_role("clerk", vault.deposit(100)).await?
    );
    println!(
        "auditor reads: {}",
        as_role("auditor", vault.balance()).await?
    );
    match as_role("clerk", vault.withdraw(30)).await {
        Err(e) => println!("clerk withdraws 30: refused ({e})"),
        Ok(left) => println!("clerk withdraws 30: {left} left (unexpected)"),
    }
    as_role("manager", policy.grant("withdraw".into(), "clerk".into())).await?;
    println!("manager lets clerks withdraw");
    println!(
        "clerk withdraws 30: {} left",
        as_role("clerk", vault.withdraw(30)).await?
    );
    let w = outcomes.of("vault.withdraw");
    println!("vault.withdraw: {} ok, {} refused", w.ok, w.refused);
    silo.shutdown().await;
    Ok(())
}
