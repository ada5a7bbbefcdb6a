//! The lock grain's rules on one silo: settling after activation, one
//! holder while its lease lives, renew and release only by the holder,
//! growing fencing tokens.

use std::time::Duration;

use actor_core::prelude::*;
use example_distributed_lock::{LockConfig, LockError, LockGrain, LockGrainRef};

const MAX_LEASE: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_at_a_time_for_its_lease() {
    let config = LockConfig {
        max_lease: MAX_LEASE,
    };
    let silo = Silo::builder()
        .name("solo")
        .grain_with(move |_| LockGrain::new(config))
        .start()
        .await
        .unwrap();
    let lock = silo.get_grain::<LockGrain>("door");
    let (a, b) = ("a".to_owned(), "b".to_owned());

    // A fresh activation grants nothing for a full maximum lease.
    let refused = lock.acquire(a.clone(), 200).await.unwrap().unwrap_err();
    assert!(
        matches!(refused, LockError::Settling { retry_in_ms } if retry_in_ms > 200),
        "{refused:?}"
    );
    tokio::time::sleep(MAX_LEASE).await;

    let first = lock.acquire(a.clone(), 10_000).await.unwrap().unwrap();
    assert_eq!(first.lease_ms, 300, "cut to the maximum lease");
    assert_eq!(first.silo, "solo");
    let held = lock.acquire(b.clone(), 200).await.unwrap().unwrap_err();
    assert!(
        matches!(&held, LockError::Held { by, .. } if by == "a"),
        "{held:?}"
    );
    // Only the holder may release or renew.
    assert_eq!(
        lock.release(b.clone(), first.token).await.unwrap(),
        Err(LockError::NotHolder {
            holder: Some("a".into())
        })
    );
    assert_eq!(
        lock.renew(a.clone(), first.token + 1, 200)
            .await
            .unwrap()
            .unwrap_err(),
        LockError::NotHolder {
            holder: Some("a".into())
        }
    );
    // Renewing keeps it past the first lease.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let renewed = lock
            .renew(a.clone(), first.token, 300)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(renewed.token, first.token);
    }
    assert!(lock.acquire(b.clone(), 200).await.unwrap().is_err());

    // Without renewals the lease runs out and b gets it, with a larger token.
    tokio::time::sleep(MAX_LEASE + Duration::from_millis(50)).await;
    let second = lock.acquire(b.clone(), 200).await.unwrap().unwrap();
    assert!(second.token > first.token);
    assert_eq!(
        lock.renew(a.clone(), first.token, 200)
            .await
            .unwrap()
            .unwrap_err(),
        LockError::NotHolder {
            holder: Some("b".into())
        }
    );
    // Released, it is free at once.
    lock.release(b.clone(), second.token)
        .await
        .unwrap()
        .unwrap();
    let third = lock.acquire(a.clone(), 200).await.unwrap().unwrap();
    assert!(third.token > second.token);
    let status = lock.status().await.unwrap();
    assert_eq!(status.holder.as_deref(), Some("a"));
    assert_eq!(status.grants, 3);
    silo.shutdown().await;
}
