//! Run identity: ids, namespace paths and the metadata every run carries.
//!
//! Every unit of work is a run with a `run_id`, a `parent_run_id`, the
//! `root_run_id` of its tree, a `depth` (0 at the root) and a namespace path
//! (`orchestrator/researcher/critic`). Ids are 128 bits: a per-process random
//! half and a counter, so creating one is a single atomic increment and ids
//! from a resumed process never collide with those of the crashed one.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::plist::PList;

/// A run id, unique across processes.
///
/// 128 bits kept as two `u64` halves (high, low), so the id is 8-byte
/// aligned: a `u128` would make every struct and future holding an id
/// 16-byte aligned, and an `Option<RunId>` 32 bytes instead of 24. The
/// order is the order of the 128-bit value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId([u64; 2]);

fn process_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        // `RandomState` is seeded from the OS per process.
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(d.as_nanos());
        }
        h.finish()
    })
}

impl RunId {
    /// A fresh id.
    pub fn new() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(1);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self([process_seed(), n])
    }

    /// The id from its raw 128-bit value.
    pub const fn from_u128(v: u128) -> Self {
        Self([(v >> 64) as u64, v as u64])
    }

    /// The raw 128-bit value.
    pub const fn as_u128(self) -> u128 {
        ((self.0[0] as u128) << 64) | self.0[1] as u128
    }

    /// The last 8 hex digits: enough to tell runs of one tree apart on screen.
    pub fn short(self) -> String {
        format!("{:08x}", self.0[1] & 0xffff_ffff)
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.as_u128())
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunId({self})")
    }
}

/// The text given to [`RunId::from_str`] is not 32 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("invalid run id {0:?}: expected 32 hexadecimal digits")]
pub struct ParseRunIdError(pub String);

impl FromStr for RunId {
    type Err = ParseRunIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 {
            return Err(ParseRunIdError(s.to_string()));
        }
        u128::from_str_radix(s, 16)
            .map(Self::from_u128)
            .map_err(|_| ParseRunIdError(s.to_string()))
    }
}

impl serde::Serialize for RunId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for RunId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for RunId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RunId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": "^[0-9a-f]{32}$"})
    }
}

/// The namespace path of a run: the names from the root down to it.
///
/// Persistent: a child's path shares its parent's, so a 10,000-deep chain
/// stores 10,000 segments, not 50 million.
#[derive(Clone, Default, PartialEq)]
pub struct RunPath(PList<Arc<str>>);

impl RunPath {
    /// The path of a root run named `name`.
    pub fn root(name: impl Into<Arc<str>>) -> Self {
        let mut p = PList::new();
        p.push(name.into());
        Self(p)
    }

    /// This path extended by `name`.
    #[must_use]
    pub fn child(&self, name: impl Into<Arc<str>>) -> Self {
        Self(self.0.with(name.into()))
    }

    /// Number of segments.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the empty path.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The last segment: the run's own name.
    pub fn leaf(&self) -> Option<&str> {
        self.0.last().map(|s| &**s)
    }

    /// The last segment, shared.
    pub(crate) fn leaf_arc(&self) -> Option<&Arc<str>> {
        self.0.last()
    }

    /// True when both are the same shared path.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        self.0.ptr_eq(&other.0)
    }

    /// The segments from the root down.
    pub fn segments(&self) -> Vec<String> {
        self.0.iter().map(|s| s.to_string()).collect()
    }
}

impl fmt::Display for RunPath {
    /// Long paths are elided in the middle: `a/b/c/…(9994 more)…/x/y/z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const KEEP: usize = 4;
        let n = self.len();
        if n <= 2 * KEEP + 1 {
            let mut first = true;
            for s in self.0.iter() {
                if !first {
                    f.write_str("/")?;
                }
                first = false;
                f.write_str(s)?;
            }
            return Ok(());
        }
        let tail: Vec<&Arc<str>> = self.0.iter_rev().take(KEEP).collect();
        let all = self.0.iter();
        for (i, s) in all.take(KEEP).enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(s)?;
        }
        write!(f, "/…({} more)…", n - 2 * KEEP)?;
        for s in tail.iter().rev() {
            write!(f, "/{s}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RunPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunPath({self})")
    }
}

impl serde::Serialize for RunPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for RunPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(PList::deserialize(d)?))
    }
}

/// Identity of one run in the tree.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunMeta {
    /// This run.
    pub run_id: RunId,
    /// The run that spawned it; `None` at the root.
    pub parent_run_id: Option<RunId>,
    /// The root of the tree.
    pub root_run_id: RunId,
    /// 0 at the root, parent's depth + 1 below.
    pub depth: u32,
    /// Names from the root down to this run.
    pub path: RunPath,
}

impl RunMeta {
    /// Identity of a new root run.
    pub fn root(name: impl Into<Arc<str>>) -> Self {
        let id = RunId::new();
        Self {
            run_id: id,
            parent_run_id: None,
            root_run_id: id,
            depth: 0,
            path: RunPath::root(name),
        }
    }

    /// Identity of a new child of this run.
    pub fn child(&self, name: impl Into<Arc<str>>) -> Self {
        Self {
            run_id: RunId::new(),
            parent_run_id: Some(self.run_id),
            root_run_id: self.root_run_id,
            depth: self.depth.saturating_add(1),
            path: self.path.child(name),
        }
    }

    /// The run's own name (last path segment).
    pub fn name(&self) -> &str {
        self.path.leaf().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_round_trip_through_text() {
        let a = RunId::new();
        let b = RunId::new();
        assert_ne!(a, b);
        let parsed: RunId = a.to_string().parse().unwrap();
        assert_eq!(parsed, a);
        assert!("xyz".parse::<RunId>().is_err());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<RunId>(&json).unwrap(), a);
    }

    #[test]
    fn ids_order_and_round_trip_as_128_bit_values() {
        let (a, b) = (RunId::from_u128(1 << 64), RunId::from_u128((1 << 64) + 1));
        assert!(a < b && RunId::from_u128(u128::from(u64::MAX)) < a);
        assert_eq!(RunId::from_u128(u128::MAX - 7).as_u128(), u128::MAX - 7);
        assert_eq!(std::mem::align_of::<RunId>(), 8);
    }

    #[test]
    fn child_meta_keeps_root_and_links_parent() {
        let root = RunMeta::root("orchestrator");
        let child = root.child("researcher");
        assert_eq!(child.root_run_id, root.run_id);
        assert_eq!(child.parent_run_id, Some(root.run_id));
        assert_eq!(child.depth, 1);
        assert_eq!(child.path.to_string(), "orchestrator/researcher");
        assert_eq!(child.name(), "researcher");
    }

    #[test]
    fn long_paths_are_elided_when_displayed() {
        let mut p = RunPath::root("r");
        for i in 0..10_000 {
            p = p.child(format!("a{i}"));
        }
        let shown = p.to_string();
        assert!(shown.starts_with("r/a0/a1/a2/…(9993 more)…"), "{shown}");
        assert!(shown.ends_with("/a9996/a9997/a9998/a9999"), "{shown}");
    }
}
