//! The hash ring: which silo owns a grain, computed alike on every silo
//! without asking anyone (rendezvous hashing over the active silos'
//! endpoints), and the stable hashes it is built on. The directory's
//! partitions, hash placement, reminders' and stream partitions' owners
//! all use it.

use actor_core::{GrainId, GrainKey};

/// A stable 64-bit hash (FNV-1a): the same on every silo and release,
/// unlike the standard library's seeded hashers.
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    Fnv::new().bytes(bytes).finish()
}

/// FNV-1a, fed piece by piece (no buffer to build).
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    const fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(mut self, bytes: &[u8]) -> Self {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }

    fn finish(self) -> u64 {
        self.0
    }
}

/// A 64-bit finalizer (splitmix64): FNV alone barely mixes inputs that
/// differ in a few bytes, such as endpoints on one host.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of a grain id, the same on every silo and release,
/// computed from the id's parts without formatting or allocating.
///
/// It is FNV-1a over: the grain type's UTF-8 bytes; a `0xff` byte (never
/// part of UTF-8, so it ends the type name); a tag byte for the key's kind
/// (`1` integer, `2` string, `3` UUID, `4` integer + extension, `5` UUID +
/// extension); the key: an integer as its 8 little-endian bytes, a UUID as
/// its 16 bytes, a string as its UTF-8 bytes, and for compound keys the
/// integer or UUID followed by the extension's UTF-8 bytes; and then
/// finalized with splitmix64. The integer key 42 and the string key "42"
/// hash differently.
pub(crate) fn grain_hash(id: &GrainId) -> u64 {
    let h = Fnv::new()
        .bytes(id.grain_type.as_str().as_bytes())
        .bytes(&[0xff]);
    let h = match &id.key {
        GrainKey::Int(i) => h.bytes(&[1]).bytes(&i.to_le_bytes()),
        GrainKey::Str(s) => h.bytes(&[2]).bytes(s.as_bytes()),
        GrainKey::Uuid(u) => h.bytes(&[3]).bytes(u.as_bytes()),
        GrainKey::IntCompound(i, e) => h.bytes(&[4]).bytes(&i.to_le_bytes()).bytes(e.as_bytes()),
        GrainKey::UuidCompound(u, e) => h.bytes(&[5]).bytes(u.as_bytes()).bytes(e.as_bytes()),
    };
    mix(h.finish())
}

/// The weight of `member` for the grain whose [`grain_hash`] is `grain`
/// in rendezvous hashing: splitmix64 of the FNV-1a hash of the member's
/// UTF-8 bytes followed by the grain hash's 8 little-endian bytes.
fn weight(member: &str, grain: u64) -> u64 {
    mix(Fnv::new()
        .bytes(member.as_bytes())
        .bytes(&grain.to_le_bytes())
        .finish())
}

/// The owner of `id` among `members` by rendezvous (highest random weight)
/// hashing: removing a member moves only the grains it owned.
///
/// A stable function of the id and the member endpoints (see
/// `grain_hash` and the weight above; ties, which need equal 64-bit
/// weights, go to the greater endpoint), so every silo computes the same
/// owner; it neither formats nor allocates.
pub fn rendezvous_owner<'a>(id: &GrainId, members: &'a [String]) -> Option<&'a str> {
    let grain = grain_hash(id);
    members
        .iter()
        .max_by_key(|m| (weight(m, grain), m.as_str()))
        .map(String::as_str)
}

/// A member list with each endpoint's share of [`weight`] hashed once:
/// the owner of a grain is looked up on every call, the list changes with
/// the membership only. Gives the same owners as [`rendezvous_owner`].
pub(crate) struct MemberSet {
    pub(crate) list: Vec<String>,
    /// FNV-1a state after each member's bytes.
    hashed: Vec<Fnv>,
}

impl MemberSet {
    pub(crate) fn new(list: Vec<String>) -> Self {
        let hashed = list
            .iter()
            .map(|m| Fnv::new().bytes(m.as_bytes()))
            .collect();
        MemberSet { list, hashed }
    }

    pub(crate) fn owner(&self, id: &GrainId) -> Option<&str> {
        let grain = grain_hash(id).to_le_bytes();
        self.list
            .iter()
            .zip(&self.hashed)
            .max_by_key(|(m, h)| (mix(h.bytes(&grain).finish()), m.as_str()))
            .map(|(m, _)| m.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Removing a member moves only the grains it owned.
        #[test]
        fn rendezvous_moves_only_the_removed_members_grains(keys in proptest::collection::vec(any::<i64>(), 1..100), gone in 0usize..4) {
            let members: Vec<String> = (0..4).map(|i| format!("10.0.0.{i}:1")).collect();
            let fewer: Vec<String> = members.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, m)| m.clone()).collect();
            for k in keys {
                let id = GrainId::new("g", k);
                let before = rendezvous_owner(&id, &members).unwrap();
                let after = rendezvous_owner(&id, &fewer).unwrap();
                if before != members[gone] {
                    prop_assert_eq!(before, after);
                }
            }
        }
    }

    /// Pinned values (checked against an independent implementation of
    /// the documented definition): every silo and every release must
    /// place grains the same way, so these may never change.
    #[test]
    fn grain_hashes_and_owners_never_change() {
        let u = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let pinned = [
            (GrainId::new("counter", 42), 0x2d07_b4f5_9a0f_8dfb_u64),
            (GrainId::new("counter", "42"), 0xbf8f_e1ce_5292_4d8d),
            (GrainId::new("counter", u), 0xfce8_48ac_89f9_e6b5),
            (GrainId::new("counter", (42, "x")), 0x763d_6925_00d7_618a),
            (GrainId::new("counter", (u, "x")), 0x49ad_2959_438f_c837),
        ];
        for (id, hash) in pinned {
            assert_eq!(grain_hash(&id), hash, "{id:?}");
        }
        let members: Vec<String> = (0..3).map(|i| format!("10.0.0.{i}:11111")).collect();
        let owners: Vec<usize> = (0..16)
            .map(|k| {
                let owner = rendezvous_owner(&GrainId::new("g", k), &members).unwrap();
                members.iter().position(|m| m == owner).unwrap()
            })
            .collect();
        assert_eq!(owners, [1, 2, 2, 0, 2, 0, 2, 0, 0, 0, 1, 1, 1, 2, 0, 0]);
    }

    fn any_key() -> impl Strategy<Value = GrainKey> {
        prop_oneof![
            any::<i64>().prop_map(GrainKey::Int),
            ".*".prop_map(GrainKey::from),
            any::<u128>().prop_map(|u| GrainKey::Uuid(uuid::Uuid::from_u128(u))),
            (any::<i64>(), ".*").prop_map(|(i, s)| GrainKey::int_compound(i, s)),
            (any::<u128>(), ".*")
                .prop_map(|(u, s)| GrainKey::uuid_compound(uuid::Uuid::from_u128(u), s)),
        ]
    }

    proptest! {
        /// The owner depends only on the id's value and the set of
        /// members: not on how the id was built (a static or a shared type
        /// name, a decoded copy) nor on the members' order.
        #[test]
        fn the_owner_is_a_function_of_the_id_and_the_members(
            ty in "[a-z.]{1,12}", key in any_key(),
            hosts in proptest::collection::btree_set(0u16..1000, 1..8),
            rotate in 0usize..8,
        ) {
            let built = GrainId::new(ty.clone(), key.clone());
            let decoded: GrainId =
                actor_core::__private::codec::decode(&actor_core::__private::codec::encode(&built).unwrap()).unwrap();
            let stat = GrainId::new(&*Box::leak(ty.into_boxed_str()), key);
            prop_assert_eq!(grain_hash(&built), grain_hash(&decoded));
            prop_assert_eq!(grain_hash(&built), grain_hash(&stat));
            let members: Vec<String> = hosts.iter().map(|h| format!("10.1.{}.{}:7000", h / 256, h % 256)).collect();
            let mut turned = members.clone();
            let by = rotate % turned.len();
            turned.rotate_left(by);
            turned.reverse();
            let owner = rendezvous_owner(&built, &members);
            prop_assert_eq!(owner, rendezvous_owner(&decoded, &turned));
            prop_assert!(owner.is_some_and(|o| members.iter().any(|m| m == o)));
            // The router's member set (members hashed ahead) agrees.
            let set = MemberSet::new(turned);
            prop_assert_eq!(owner, set.owner(&built));
        }

        /// Any set of members shares the grains about evenly.
        #[test]
        fn grains_spread_evenly_over_any_members(
            hosts in proptest::collection::btree_set(0u32..1_000_000, 2..7),
            port in 1000u16..60000, base in any::<i64>(), ty in "[a-z]{1,8}",
        ) {
            let members: Vec<String> = hosts
                .iter()
                .map(|h| format!("10.{}.{}.{}:{port}", h >> 16, (h >> 8) & 255, h & 255))
                .collect();
            let grains = 600 * members.len();
            let mut counts = std::collections::BTreeMap::new();
            for k in 0..grains as i64 {
                let id = GrainId::new(ty.clone(), base.wrapping_add(k));
                *counts.entry(rendezvous_owner(&id, &members).unwrap()).or_insert(0usize) += 1;
            }
            prop_assert_eq!(counts.len(), members.len());
            // A fair share is 600; a bad hash (or one that ignores a part
            // of the id) is far off.
            prop_assert!(counts.values().all(|c| (450..750).contains(c)), "{:?}", counts);
        }
    }

    #[test]
    fn the_hash_is_stable_across_releases() {
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"grain"), stable_hash(b"grain"));
        assert_ne!(stable_hash(b"a"), stable_hash(b"b"));
        // Spread: 4 members each own a fair share of 4,000 grains.
        let members: Vec<String> = (0..4).map(|i| format!("127.0.0.1:4000{i}")).collect();
        let mut counts = std::collections::HashMap::new();
        for k in 0..4000 {
            *counts
                .entry(rendezvous_owner(&GrainId::new("g", k), &members).unwrap())
                .or_insert(0) += 1;
        }
        assert!(
            counts.values().all(|c| (700..1300).contains(c)),
            "{counts:?}"
        );
    }
}
