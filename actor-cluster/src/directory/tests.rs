use super::service::DirectoryService;
use super::*;
use proptest::prelude::*;

fn silo(i: u16) -> SiloAddress {
    SiloAddress::new(format!("127.0.0.1:{}", 30_000 + i), 7)
}

/// A directory for silo 0 in a view of `n` silos (fencing off).
fn directory(n: u16) -> (Arc<Directory>, Vec<SiloAddress>) {
    let view: Vec<SiloAddress> = (0..n).map(silo).collect();
    let me = view[0].clone();
    let ownership = Arc::new(Ownership::new(
        me.endpoint.clone(),
        view.iter().map(|a| a.endpoint.clone()).collect(),
    ));
    let d = Directory::new(
        me,
        ownership,
        crate::transport::tcp(),
        Placements::default(),
        Duration::from_millis(200),
        crate::link::DEFAULT_MAX_FRAME,
        Arc::new(std::sync::atomic::AtomicBool::new(true)),
    );
    *d.view.write() = View::new(&view);
    (d, view)
}

/// Grain ids whose partition silo 0 owns.
fn owned(d: &Directory, count: usize) -> Vec<GrainId> {
    (0..10_000i64)
        .map(|k| GrainId::new("t", k))
        .filter(|id| d.view.read().owner(id) == Some(d.me.endpoint.as_str()))
        .take(count)
        .collect()
}

fn at(s: &SiloAddress, activation: u64) -> ActivationAddress {
    ActivationAddress {
        silo: s.clone(),
        activation,
    }
}

#[test]
fn the_first_registration_wins() {
    let (d, view) = directory(3);
    let id = owned(&d, 1).remove(0);
    let v = d.view.read().id;
    let first = d.register_local(&id, at(&view[1], 1), v, false).unwrap();
    assert_eq!(first, Some(at(&view[1], 1)));
    let second = d.register_local(&id, at(&view[2], 2), v, false).unwrap();
    assert_eq!(second, Some(at(&view[1], 1)), "the loser learns the winner");
    assert_eq!(d.lookup_local(&id).unwrap(), Some(at(&view[1], 1)));
}

#[test]
fn registrations_from_another_view_or_to_the_wrong_owner_are_refused() {
    let (d, view) = directory(3);
    let id = owned(&d, 1).remove(0);
    let v = d.view.read().id;
    let err = d
        .register_local(&id, at(&view[1], 1), v + 1, false)
        .unwrap_err();
    assert!(err.contains("views differ"), "{err}");
    let stranger = SiloAddress::new("127.0.0.1:1", 1);
    let err = d
        .register_local(&id, at(&stranger, 1), v, false)
        .unwrap_err();
    assert!(err.contains("not an active silo"), "{err}");
    let other = (0..10_000i64)
        .map(|k| GrainId::new("t", k))
        .find(|g| d.view.read().owner(g) != Some(d.me.endpoint.as_str()))
        .unwrap();
    let err = d
        .register_local(&other, at(&view[1], 1), v, false)
        .unwrap_err();
    assert!(err.contains("not the owner"), "{err}");
    assert!(d.lookup_local(&other).is_err());
    assert_eq!(d.partition_len(), 0, "nothing registered by a refusal");
}

#[test]
fn a_closed_fence_refuses_fresh_registrations_but_takes_claims_and_answers_winners() {
    let (d, view) = directory(3);
    let ids = owned(&d, 2);
    let v = d.view.read().id;
    d.register_local(&ids[0], at(&view[1], 1), v, false)
        .unwrap();
    // Fencing on, a view nobody has acked yet.
    d.ownership.enable_fencing(
        tokio::time::Instant::now() + Duration::from_secs(60),
        Duration::ZERO,
    );
    d.ownership
        .set_view(view.iter().map(|a| a.endpoint.clone()).collect(), 5);
    assert!(!d.ownership.may_activate());
    let err = d
        .register_local(&ids[1], at(&view[2], 2), v, false)
        .unwrap_err();
    assert!(err.contains("fenced"), "{err}");
    assert_eq!(
        d.register_local(&ids[0], at(&view[2], 2), v, false)
            .unwrap(),
        Some(at(&view[1], 1)),
        "an existing winner is answered through the fence"
    );
    assert_eq!(
        d.register_local(&ids[1], at(&view[2], 3), v, true).unwrap(),
        Some(at(&view[2], 3)),
        "a claim of a running activation is taken"
    );
    // Once everyone has acked, fresh registrations go through.
    for s in &view[1..] {
        d.ownership.set_acked(&s.endpoint, 5);
    }
    assert!(d.ownership.may_activate());
    let id = owned(&d, 3).remove(2);
    assert_eq!(
        d.register_local(&id, at(&view[1], 4), v, false).unwrap(),
        Some(at(&view[1], 4))
    );
}

#[tokio::test]
async fn a_view_change_voids_the_entries_of_silos_that_left() {
    let (d, view) = directory(3);
    let v = d.view.read().id;
    let ids = owned(&d, 20);
    for id in &ids {
        d.register_local(id, at(&view[2], 1), v, false).unwrap();
    }
    d.cache.insert(GrainId::new("t", "cached"), at(&view[2], 1));
    // Silo 2 leaves.
    d.apply_view(&view[..2], Duration::from_millis(100)).await;
    assert!(
        d.cache.is_empty(),
        "cached locations on a gone silo are dropped"
    );
    let v2 = d.view.read().id;
    assert_ne!(v, v2);
    for id in &ids {
        // Owned still (rendezvous: only the gone silo's grains move)...
        assert_eq!(d.view.read().owner(id), Some(d.me.endpoint.as_str()));
        // ...but the entry is void: not looked up, replaced on register.
        assert_eq!(d.lookup_local(id).unwrap(), None);
        assert_eq!(
            d.register_local(id, at(&view[1], 9), v2, false).unwrap(),
            Some(at(&view[1], 9))
        );
    }
}

#[tokio::test]
async fn hosted_grains_are_claimed_where_their_partition_moves_or_let_go() {
    let (d, view) = directory(3);
    // Grains hosted here whose partition silo 1 owns now.
    let on_1: Vec<GrainId> = (0..10_000i64)
        .map(|k| GrainId::new("t", k))
        .filter(|g| d.view.read().owner(g) == Some(view[1].endpoint.as_str()))
        .take(30)
        .collect();
    for (i, g) in on_1.iter().enumerate() {
        d.hosted.insert(g.clone(), i as u64 + 1);
    }
    // Silo 1 leaves: its partitions go to silo 0 (claimed here, no
    // RPC) or to silo 2 (nobody listens there: cannot be claimed).
    let next = [view[0].clone(), view[2].clone()];
    d.apply_view(&next, Duration::from_millis(150)).await;
    let mut here = 0;
    for (i, g) in on_1.iter().enumerate() {
        if d.view.read().owner(g) == Some(d.me.endpoint.as_str()) {
            here += 1;
            assert!(d.hosts(g), "claimed and kept");
            assert_eq!(
                d.lookup_local(g).unwrap(),
                Some(at(&view[0], i as u64 + 1)),
                "registered with its own activation id"
            );
        } else {
            assert!(!d.hosts(g), "not claimable: let go");
        }
    }
    assert!(here > 0 && here < on_1.len(), "both cases met: {here}");
    // The same endpoint restarting (new generation) moves the
    // partitions it owns too.
    let g = on_1
        .iter()
        .find(|g| d.view.read().owner(g) == Some(view[2].endpoint.as_str()))
        .unwrap()
        .clone();
    d.hosted.insert(g.clone(), 99);
    let restarted = SiloAddress::new(view[2].endpoint.clone(), 8);
    d.apply_view(&[view[0].clone(), restarted], Duration::from_millis(150))
        .await;
    assert!(!d.hosts(&g), "a claim was tried at the new incarnation");
}

#[test]
fn the_owner_takes_hash_placed_grains_as_it_admits_them() {
    let (d, view) = directory(3);
    let ids = owned(&d, 2);
    assert!(d.hosts_or_takes(&ids[0]));
    assert!(d.hosts(&ids[0]));
    assert_eq!(d.lookup_local(&ids[0]).unwrap().unwrap().silo, view[0]);
    // Registered elsewhere: not taken.
    let v = d.view.read().id;
    d.register_local(&ids[1], at(&view[1], 1), v, false)
        .unwrap();
    assert!(!d.hosts_or_takes(&ids[1]));
    // A grain whose partition is elsewhere is never taken.
    let other = (0..10_000i64)
        .map(|k| GrainId::new("t", k))
        .find(|g| d.view.read().owner(g) != Some(d.me.endpoint.as_str()))
        .unwrap();
    assert!(!d.hosts_or_takes(&other));
}

#[tokio::test]
async fn the_service_refuses_garbage_and_is_silent_when_not_serving() {
    let (d, _) = directory(3);
    let svc = DirectoryService(d.clone());
    let garbage = pb::LookupRequest {
        grain: vec![0xff; 5],
        view: 0,
    };
    let err = svc.lookup(Request::new(garbage)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let no_address = pb::RegisterRequest {
        grain: actor_core::__private::codec::encode(&GrainId::new("t", 1)).unwrap(),
        address: None,
        view: 0,
        claim: false,
    };
    let err = svc.register(Request::new(no_address)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(d.partition_len(), 0);
    d.serving.store(false, Ordering::SeqCst);
    let err = svc
        .load(Request::new(pb::LoadRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
}

proptest! {
    /// Whatever order registrations and claims of one grain arrive in
    /// within one view, every answer names the same activation: the
    /// first one accepted.
    #[test]
    fn every_answer_names_the_first_accepted_registration(
        attempts in proptest::collection::vec((0u16..4, any::<bool>(), 1u64..1000), 1..30),
        key in 0usize..20,
    ) {
        let (d, view) = directory(4);
        let id = owned(&d, 20).remove(key);
        let v = d.view.read().id;
        let mut winner: Option<ActivationAddress> = None;
        for (s, claim, act) in attempts {
            let answer = d.register_local(&id, at(&view[s as usize], act), v, claim).unwrap();
            let answer = answer.unwrap();
            let first = winner.get_or_insert_with(|| answer.clone());
            prop_assert_eq!(&answer, first);
        }
    }
}
