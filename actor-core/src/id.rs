//! Grain identities: a stable grain type name plus a key.
//!
//! Ids are persisted and sent between silos, so their parts are plain data
//! with a stable text and serde form; a grain type is named by the string the
//! grain declares (`Grain::TYPE_NAME`), never by its Rust path.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

/// The stable name of a grain type, such as `"counter"` or `"bank.account"`.
///
/// Cloning a name declared in code is free; a name read from the wire is
/// shared behind an `Arc`.
// Its `Deserialize` impl is in silo.rs: a decoded name is looked up on
// the silo decoding on this thread.
#[derive(Clone)]
pub struct GrainType(pub(crate) TypeName);

#[derive(Clone)]
pub(crate) enum TypeName {
    Static(&'static str),
    Shared(Arc<str>),
}

impl GrainType {
    /// A grain type name known at compile time.
    pub const fn new(name: &'static str) -> Self {
        GrainType(TypeName::Static(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            TypeName::Static(s) => s,
            TypeName::Shared(s) => s,
        }
    }
}

impl From<&'static str> for GrainType {
    fn from(name: &'static str) -> Self {
        GrainType::new(name)
    }
}

impl From<String> for GrainType {
    fn from(name: String) -> Self {
        GrainType(TypeName::Shared(name.into()))
    }
}

impl PartialEq for GrainType {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for GrainType {}
impl Hash for GrainType {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}
impl PartialOrd for GrainType {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for GrainType {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}
impl Borrow<str> for GrainType {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}
impl fmt::Debug for GrainType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}
impl fmt::Display for GrainType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl Serialize for GrainType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
/// The key of a grain within its type.
///
/// Orleans' key kinds: a string, a 64-bit integer, a UUID, or a compound of
/// an integer or UUID with a string extension.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum GrainKey {
    /// A 64-bit integer key.
    Int(i64),
    /// A string key.
    Str(Arc<str>),
    /// A UUID key.
    Uuid(Uuid),
    /// An integer plus a string extension.
    IntCompound(i64, Arc<str>),
    /// A UUID plus a string extension.
    UuidCompound(Uuid, Arc<str>),
}

impl GrainKey {
    /// A compound key of an integer and a string extension.
    pub fn int_compound(key: i64, ext: impl Into<Arc<str>>) -> Self {
        GrainKey::IntCompound(key, ext.into())
    }

    /// A compound key of a UUID and a string extension.
    pub fn uuid_compound(key: Uuid, ext: impl Into<Arc<str>>) -> Self {
        GrainKey::UuidCompound(key, ext.into())
    }

    /// The integer part, for integer and integer-compound keys.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            GrainKey::Int(i) | GrainKey::IntCompound(i, _) => Some(*i),
            _ => None,
        }
    }

    /// The string key, or the extension of a compound key.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GrainKey::Str(s) | GrainKey::IntCompound(_, s) | GrainKey::UuidCompound(_, s) => {
                Some(s)
            }
            _ => None,
        }
    }

    /// The UUID part, for UUID and UUID-compound keys.
    pub fn as_uuid(&self) -> Option<Uuid> {
        match self {
            GrainKey::Uuid(u) | GrainKey::UuidCompound(u, _) => Some(*u),
            _ => None,
        }
    }
}

impl fmt::Display for GrainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrainKey::Int(i) => write!(f, "{i}"),
            GrainKey::Str(s) => f.write_str(s),
            GrainKey::Uuid(u) => write!(f, "{u}"),
            GrainKey::IntCompound(i, s) => write!(f, "{i}+{s}"),
            GrainKey::UuidCompound(u, s) => write!(f, "{u}+{s}"),
        }
    }
}
impl fmt::Debug for GrainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<i64> for GrainKey {
    fn from(k: i64) -> Self {
        GrainKey::Int(k)
    }
}
impl From<i32> for GrainKey {
    fn from(k: i32) -> Self {
        GrainKey::Int(k.into())
    }
}
impl From<u32> for GrainKey {
    fn from(k: u32) -> Self {
        GrainKey::Int(k.into())
    }
}
impl From<&str> for GrainKey {
    fn from(k: &str) -> Self {
        GrainKey::Str(k.into())
    }
}
impl From<String> for GrainKey {
    fn from(k: String) -> Self {
        GrainKey::Str(k.into())
    }
}
impl From<&String> for GrainKey {
    fn from(k: &String) -> Self {
        GrainKey::Str(k.as_str().into())
    }
}
impl From<Arc<str>> for GrainKey {
    fn from(k: Arc<str>) -> Self {
        GrainKey::Str(k)
    }
}
impl From<Uuid> for GrainKey {
    fn from(k: Uuid) -> Self {
        GrainKey::Uuid(k)
    }
}
impl From<(i64, &str)> for GrainKey {
    fn from((k, e): (i64, &str)) -> Self {
        GrainKey::IntCompound(k, e.into())
    }
}
impl From<(Uuid, &str)> for GrainKey {
    fn from((k, e): (Uuid, &str)) -> Self {
        GrainKey::UuidCompound(k, e.into())
    }
}

/// The identity of a grain: its type name and key. Every grain exists
/// virtually under its id; the runtime activates it on first call.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GrainId {
    /// The grain's type name.
    pub grain_type: GrainType,
    /// The grain's key within its type.
    pub key: GrainKey,
}

impl GrainId {
    /// The id of the grain of type `grain_type` with `key`.
    pub fn new(grain_type: impl Into<GrainType>, key: impl Into<GrainKey>) -> Self {
        GrainId {
            grain_type: grain_type.into(),
            key: key.into(),
        }
    }
}

impl GrainId {
    /// An unambiguous, stable text form for storage keys:
    /// `type/i:42`, `type/s:name`, `type/u:<uuid>`, `type/is:42+ext`,
    /// `type/us:<uuid>+ext`. Unlike [`Display`](fmt::Display) (meant for
    /// people), the integer key 42 and the string key "42" differ here.
    pub fn storage_key(&self) -> String {
        let (tag, key) = match &self.key {
            GrainKey::Int(i) => ("i", i.to_string()),
            GrainKey::Str(s) => ("s", s.to_string()),
            GrainKey::Uuid(u) => ("u", u.to_string()),
            GrainKey::IntCompound(i, e) => ("is", format!("{i}+{e}")),
            GrainKey::UuidCompound(u, e) => ("us", format!("{u}+{e}")),
        };
        format!("{}/{tag}:{key}", self.grain_type)
    }
}

impl fmt::Display for GrainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.grain_type, self.key)
    }
}
impl fmt::Debug for GrainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = GrainKey> {
        prop_oneof![
            any::<i64>().prop_map(GrainKey::Int),
            ".*".prop_map(GrainKey::from),
            any::<u128>().prop_map(|u| GrainKey::Uuid(Uuid::from_u128(u))),
            (any::<i64>(), ".*").prop_map(|(i, s)| GrainKey::int_compound(i, s)),
            (any::<u128>(), ".*").prop_map(|(u, s)| GrainKey::uuid_compound(Uuid::from_u128(u), s)),
        ]
    }

    proptest! {
        #[test]
        fn grain_id_round_trips_through_the_wire_codec(k in key(), t in "[a-z.]{1,20}") {
            let id = GrainId::new(t, k);
            let bytes = crate::codec::encode(&id).unwrap();
            let back: GrainId = crate::codec::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &id);
            prop_assert_eq!(back.to_string(), id.to_string());
        }
    }

    #[derive(Default)]
    struct Counter;
    impl crate::Grain for Counter {
        const TYPE_NAME: &'static str = "counter";
    }
    impl crate::GrainMethods for Counter {
        fn register(_: &mut crate::Methods<Self>) {}
    }

    /// Through a silo that has the type, a decoded id takes the silo's
    /// static name (no allocation); other names, or decoding outside a
    /// silo, still give the same value.
    #[tokio::test]
    async fn registered_type_names_decode_to_the_silos_own() {
        let silo = crate::Silo::builder()
            .grain::<Counter>()
            .start()
            .await
            .unwrap();
        let is_static = |id: &GrainId| matches!(id.grain_type.0, TypeName::Static(_));
        let bytes = crate::codec::encode(&GrainId::new(String::from("counter"), 7)).unwrap();
        let through: GrainId = silo.decode(&bytes).unwrap();
        assert!(is_static(&through));
        assert_eq!(through, GrainId::new("counter", 7));
        let plain: GrainId = crate::codec::decode(&bytes).unwrap();
        assert!(!is_static(&plain));
        assert_eq!(plain, through);
        let other = crate::codec::encode(&GrainId::new("other", 7)).unwrap();
        let other: GrainId = silo.decode(&other).unwrap();
        assert!(!is_static(&other));
        assert_eq!(other, GrainId::new("other", 7));
        // Not a string at all: a clear error.
        assert!(silo.decode::<GrainId>(&[0xfb, 0xff, 0xff]).is_err());
    }

    #[test]
    fn static_and_shared_type_names_are_the_same_name() {
        let a = GrainId::new("counter", 1);
        let b = GrainId::new(String::from("counter"), 1);
        assert_eq!(a, b);
        let mut h1 = std::collections::hash_map::DefaultHasher::new();
        let mut h2 = std::collections::hash_map::DefaultHasher::new();
        a.hash(&mut h1);
        b.hash(&mut h2);
        assert_eq!(h1.finish(), h2.finish());
        assert_eq!(a.to_string(), "counter/1");
    }

    #[test]
    fn storage_keys_tell_key_kinds_apart() {
        let u = Uuid::from_u128(1);
        let keys = [
            GrainId::new("c", 42),
            GrainId::new("c", "42"),
            GrainId::new("c", (1, "x")),
            GrainId::new("c", "1+x"),
            GrainId::new("c", u),
            GrainId::new("c", u.to_string()),
            GrainId::new("c", (u, "x")),
        ];
        let texts: std::collections::HashSet<_> = keys.iter().map(|k| k.storage_key()).collect();
        assert_eq!(texts.len(), keys.len());
        assert_eq!(GrainId::new("counter", 42).storage_key(), "counter/i:42");
        assert_eq!(
            GrainId::new("counter", "a/b").storage_key(),
            "counter/s:a/b"
        );
    }

    #[test]
    fn key_accessors() {
        let u = Uuid::from_u128(7);
        assert_eq!(GrainKey::from((3, "x")).as_int(), Some(3));
        assert_eq!(GrainKey::from((u, "x")).as_str(), Some("x"));
        assert_eq!(GrainKey::from(u).as_uuid(), Some(u));
        assert_eq!(GrainKey::from("k").as_int(), None);
    }
}
