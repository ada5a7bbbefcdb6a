//! The layers of the example: authorization refuses before the turn runs
//! (nothing changes), follows the policy grain's changes, and the outer
//! layer counts refusals and turns.

use actor_core::Error;
use example_call_layers::{
    Counts, Outcomes, Policy, PolicyRef, Vault, VaultRef, as_role, start_silo,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_is_a_layer_that_follows_the_policy_grain() {
    let outcomes = Outcomes::default();
    let silo = start_silo(outcomes.clone()).await.unwrap();
    let vault = silo.get_grain::<Vault>("v");
    let policy = silo.get_grain::<Policy>("vault");

    assert_eq!(as_role("clerk", vault.deposit(100)).await.unwrap(), 100);
    let refused = as_role("clerk", vault.withdraw(30)).await.unwrap_err();
    assert!(
        matches!(&refused, Error::Rejected { reason, method, .. }
            if reason == "role clerk may not call withdraw" && method == "withdraw"),
        "{refused}"
    );
    // Without a role at all, even reading is refused.
    assert!(matches!(vault.balance().await, Err(Error::Rejected { .. })));
    assert_eq!(
        as_role("auditor", vault.balance()).await.unwrap(),
        100,
        "the refused withdrawal never ran"
    );

    as_role("manager", policy.grant("withdraw".into(), "clerk".into()))
        .await
        .unwrap();
    assert_eq!(as_role("clerk", vault.withdraw(30)).await.unwrap(), 70);

    assert_eq!(
        outcomes.of("vault.withdraw"),
        Counts {
            ok: 1,
            failed: 0,
            refused: 1
        }
    );
    assert_eq!(outcomes.of("vault.balance").refused, 1);
    // The layers also run around the policy grain's own turns (called
    // from the authorization layer of the vault's turn).
    assert!(outcomes.of("policy.allows").ok >= 4);
    silo.shutdown().await;
}
