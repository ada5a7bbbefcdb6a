//! Placement strategies: the pure choices (proptest), and each strategy
//! placing grains where it should in a real three-silo cluster.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actor_cluster::__private::rendezvous_owner;
use actor_cluster::{
    ActivationCountPlacement, Candidate, ClusterConfig, ClusterSilo, HashPlacement,
    InMemoryMembership, MembershipTable, Placement, PlacementContext, Placements,
    PreferLocalPlacement, RandomPlacement,
};
use actor_core::prelude::*;
use common::oracle::{Oracle, Tracked, TrackedRef};
use proptest::prelude::*;
use tokio::net::TcpListener;

fn candidates(loads: &[u64]) -> Vec<Candidate> {
    loads
        .iter()
        .enumerate()
        .map(|(i, l)| Candidate {
            endpoint: format!("127.0.0.1:{}", 20_000 + i),
            activations: *l,
        })
        .collect()
}

fn ctx<'a>(
    grain: &'a GrainId,
    local: &'a str,
    c: &'a [Candidate],
    r: [u64; 2],
) -> PlacementContext<'a> {
    PlacementContext {
        grain,
        local,
        candidates: c,
        random: r,
    }
}

proptest! {
    /// Hash placement is the rendezvous owner: the same for every caller
    /// and every draw, and removing another silo does not move it.
    #[test]
    fn hash_placement_is_the_rendezvous_owner(
        key in any::<i64>(), n in 1usize..8, r in any::<[u64; 2]>(), local in 0usize..8, drop in 0usize..8,
    ) {
        let c = candidates(&vec![0; n]);
        let id = GrainId::new("t", key);
        let endpoints: Vec<String> = c.iter().map(|c| c.endpoint.clone()).collect();
        let local = &endpoints[local % n];
        let chosen = HashPlacement.place(&ctx(&id, local, &c, r));
        prop_assert_eq!(Some(chosen.as_str()), rendezvous_owner(&id, &endpoints));
        prop_assert_eq!(&chosen, &HashPlacement.place(&ctx(&id, &endpoints[0], &c, [r[1], r[0]])));
        let gone = &endpoints[drop % n];
        if n > 1 && *gone != chosen {
            let fewer: Vec<Candidate> = c.iter().filter(|x| x.endpoint != *gone).cloned().collect();
            prop_assert_eq!(&chosen, &HashPlacement.place(&ctx(&id, local, &fewer, r)));
        }
    }

    /// Power of two choices: the choice is a candidate no more loaded than
    /// a second, different candidate, so never the single most loaded one.
    #[test]
    fn activation_count_picks_the_lighter_of_two(
        loads in proptest::collection::vec(0u64..1000, 1..10), r in any::<[u64; 2]>(),
    ) {
        let c = candidates(&loads);
        let id = GrainId::new("t", 1);
        let chosen = ActivationCountPlacement.place(&ctx(&id, &c[0].endpoint, &c, r));
        let pos = c.iter().position(|x| x.endpoint == chosen);
        prop_assert!(pos.is_some());
        let mine = c[pos.unwrap()].activations;
        if c.len() > 1 {
            prop_assert!(c.iter().enumerate().any(|(i, x)| i != pos.unwrap() && x.activations >= mine));
            let max = *loads.iter().max().unwrap();
            if loads.iter().filter(|l| **l == max).count() == 1 {
                prop_assert!(mine < max, "picked the single most loaded silo");
            }
        }
        if c.len() == 2 {
            prop_assert_eq!(mine, loads[0].min(loads[1]));
        }
    }

    /// Prefer-local picks the caller when it is active, else a candidate.
    #[test]
    fn prefer_local_picks_the_caller(n in 1usize..8, local in 0usize..16, r in any::<[u64; 2]>()) {
        let c = candidates(&vec![0; n]);
        let id = GrainId::new("t", "k");
        let local_ep = format!("127.0.0.1:{}", 20_000 + local);
        let chosen = PreferLocalPlacement.place(&ctx(&id, &local_ep, &c, r));
        if local < n {
            prop_assert_eq!(chosen, local_ep);
        } else {
            prop_assert!(c.iter().any(|x| x.endpoint == chosen));
        }
    }

    /// Random placement always picks a candidate, the one the draw names.
    #[test]
    fn random_picks_the_drawn_candidate(n in 1usize..8, r in any::<[u64; 2]>()) {
        let c = candidates(&vec![0; n]);
        let id = GrainId::new("t", "k");
        let chosen = RandomPlacement.place(&ctx(&id, &c[0].endpoint, &c, r));
        prop_assert_eq!(&chosen, &c[(r[0] % n as u64) as usize].endpoint);
    }

    /// A strategy that names a silo that is not active falls back to hash
    /// placement instead of placing nowhere.
    #[test]
    fn a_bad_choice_falls_back_to_hash(key in any::<i64>(), n in 1usize..6) {
        struct Nowhere;
        impl Placement for Nowhere {
            fn place(&self, _: &PlacementContext<'_>) -> String { "10.9.9.9:1".into() }
        }
        let mut p = Placements::default();
        p.set("t", Nowhere);
        let c = candidates(&vec![0; n]);
        let id = GrainId::new("t", key);
        let chosen = p.place(&ctx(&id, &c[0].endpoint, &c, [1, 2]));
        prop_assert_eq!(chosen, HashPlacement.place(&ctx(&id, &c[0].endpoint, &c, [1, 2])));
    }
}

/// Random placement over many draws reaches every silo, roughly evenly.
#[test]
fn random_placement_spreads() {
    let c = candidates(&[0, 0, 0]);
    let id = GrainId::new("t", 1);
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut x = 7u64;
    for _ in 0..3000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seen
            .entry(RandomPlacement.place(&ctx(&id, &c[0].endpoint, &c, [x >> 11, x])))
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 3);
    assert!(seen.values().all(|n| *n > 800), "{seen:?}");
}

/// The per-type table: a type's own strategy, else the default.
#[test]
fn strategies_are_chosen_per_grain_type() {
    struct Last;
    impl Placement for Last {
        fn place(&self, ctx: &PlacementContext<'_>) -> String {
            ctx.candidates.last().unwrap().endpoint.clone()
        }
    }
    let mut p = Placements::default();
    p.set("special", Last);
    let c = candidates(&[0, 0, 0, 0]);
    let endpoints: Vec<String> = c.iter().map(|c| c.endpoint.clone()).collect();
    for k in 0..50 {
        let special = GrainId::new("special", k);
        assert_eq!(
            p.place(&ctx(&special, &c[0].endpoint, &c, [k as u64, 0])),
            c[3].endpoint
        );
        let plain = GrainId::new("plain", k);
        assert_eq!(
            Some(
                p.place(&ctx(&plain, &c[0].endpoint, &c, [k as u64, 0]))
                    .as_str()
            ),
            rendezvous_owner(&plain, &endpoints)
        );
    }
}

// ----- in a cluster -----

/// Places every grain on the silo whose endpoint is in `.0`.
struct On(Arc<parking_lot::Mutex<String>>);

impl Placement for On {
    fn place(&self, _: &PlacementContext<'_>) -> String {
        self.0.lock().clone()
    }
}

async fn cluster(config: ClusterConfig, oracle: &Oracle) -> Vec<ClusterSilo> {
    cluster_with(vec![config; 3], oracle).await
}

async fn cluster_with(configs: Vec<ClusterConfig>, oracle: &Oracle) -> Vec<ClusterSilo> {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let mut silos = Vec::new();
    for (name, config) in ["a", "b", "c"].into_iter().zip(configs) {
        let o = oracle.clone();
        silos.push(
            ClusterSilo::start(
                Silo::builder().name(name).grain_with(move |_| Tracked {
                    oracle: o.clone(),
                    n: 0,
                }),
                TcpListener::bind("127.0.0.1:0").await.unwrap(),
                table.clone(),
                config,
            )
            .await
            .unwrap(),
        );
    }
    let until = Instant::now() + Duration::from_secs(10);
    while !silos.iter().all(|s| s.active_members().len() == 3) {
        assert!(Instant::now() < until, "the silos did not see each other");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    silos
}

async fn visit(s: &ClusterSilo, key: i64) -> String {
    s.silo()
        .get_grain::<Tracked>(key)
        .with_timeout(Duration::from_secs(10))
        .visit()
        .await
        .unwrap()
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_strategy_places_where_it_should() {
    let oracle = Oracle::default();
    let target = Arc::new(parking_lot::Mutex::new(String::new()));
    let config = ClusterConfig::fast().with_placement_named("tracked", On(target.clone()));
    let silos = cluster(config, &oracle).await;
    let names = ["a", "b", "c"];

    // User-defined: wherever the strategy says, whoever calls first.
    for (k, key) in (0..30).enumerate() {
        let on = k % 3;
        *target.lock() = silos[on].address().endpoint.clone();
        let caller = &silos[(k + 1) % 3];
        assert_eq!(visit(caller, key).await, names[on], "grain {key}");
        // Once placed it stays: the strategy is not asked again.
        *target.lock() = silos[(on + 1) % 3].address().endpoint.clone();
        assert_eq!(visit(&silos[(k + 2) % 3], key).await, names[on]);
    }
    oracle.check();
    assert!(oracle.activations().values().all(|n| *n == 1));
}

async fn one_type_cluster(placement: impl Placement, oracle: &Oracle) -> Vec<ClusterSilo> {
    cluster(
        ClusterConfig::fast().with_placement::<Tracked>(placement),
        oracle,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_local_places_on_the_caller() {
    let oracle = Oracle::default();
    let silos = one_type_cluster(PreferLocalPlacement, &oracle).await;
    for key in 0..60 {
        let caller = (key % 3) as usize;
        assert_eq!(visit(&silos[caller], key).await, ["a", "b", "c"][caller]);
    }
    oracle.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_placement_places_on_the_partition_owner() {
    let oracle = Oracle::default();
    // The default strategy.
    let silos = cluster(ClusterConfig::fast(), &oracle).await;
    let by_endpoint: HashMap<String, &str> = silos
        .iter()
        .zip(["a", "b", "c"])
        .map(|(s, n)| (s.address().endpoint.clone(), n))
        .collect();
    for key in 0..60 {
        let owner = silos[0].owner_of(&GrainId::new("tracked", key));
        assert_eq!(
            visit(&silos[(key % 3) as usize], key).await,
            by_endpoint[&owner]
        );
    }
    oracle.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_placement_uses_every_silo() {
    let oracle = Oracle::default();
    let silos = one_type_cluster(RandomPlacement, &oracle).await;
    let mut per: HashMap<String, usize> = HashMap::new();
    for key in 0..90 {
        *per.entry(visit(&silos[0], key).await).or_default() += 1;
    }
    assert_eq!(per.len(), 3, "{per:?}");
    assert!(per.values().all(|n| *n >= 10), "{per:?}");
    oracle.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_count_placement_avoids_the_loaded_silo() {
    let oracle = Oracle::default();
    // Silo a places its callers' grains on itself; b and c by activation
    // count (a strategy is a silo's choice for the grains its callers
    // place).
    let silos = cluster_with(
        vec![
            ClusterConfig::fast().with_placement::<Tracked>(PreferLocalPlacement),
            ClusterConfig::fast().with_placement::<Tracked>(ActivationCountPlacement),
            ClusterConfig::fast().with_placement::<Tracked>(ActivationCountPlacement),
        ],
        &oracle,
    )
    .await;
    for key in 10_000..10_200 {
        assert_eq!(visit(&silos[0], key).await, "a");
    }
    // Let b and c learn a's count (exchanged every probe interval).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut per: HashMap<String, usize> = HashMap::new();
    for key in 0..60 {
        *per.entry(visit(&silos[(1 + key % 2) as usize], key).await)
            .or_default() += 1;
    }
    // Of any two silos drawn, one is lighter than a: a gets none.
    assert_eq!(per.get("a"), None, "{per:?}");
    assert!(per.get("b").copied().unwrap_or(0) >= 15, "{per:?}");
    assert!(per.get("c").copied().unwrap_or(0) >= 15, "{per:?}");
    oracle.check();
}
