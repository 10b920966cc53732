//! A persistent, append-at-the-end list shared through `Arc`.
//!
//! Both the namespace path of a run and the transcript of an agent are
//! persistent lists: appending is O(1), cloning is O(1), and two runs that
//! share a prefix (a child forked from its parent's path, a session that keeps
//! its transcript across sends) share its memory. This is what keeps N
//! sequential delegations O(N): no turn ever deep-copies the transcript.
//!
//! Dropping a long list is iterative, so a 10,000-deep run path or a
//! 20,000-message transcript never recurses through `Drop`.

use std::sync::Arc;

struct Node<T> {
    value: T,
    prev: Option<Arc<Node<T>>>,
    len: usize,
}

/// An immutable list whose newest element is at the end.
pub struct PList<T> {
    head: Option<Arc<Node<T>>>,
}

impl<T> PList<T> {
    /// The empty list.
    pub const fn new() -> Self {
        Self { head: None }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.head.as_ref().map_or(0, |n| n.len)
    }

    /// True when the list has no element.
    pub fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    /// Appends `value` in place (O(1); earlier clones are unaffected).
    pub fn push(&mut self, value: T) {
        let len = self.len() + 1;
        let prev = self.head.take();
        self.head = Some(Arc::new(Node { value, prev, len }));
    }

    /// A new list with `value` appended; `self` is unchanged.
    #[must_use]
    pub fn with(&self, value: T) -> Self {
        let mut next = self.clone();
        next.push(value);
        next
    }

    /// The newest element.
    pub fn last(&self) -> Option<&T> {
        self.head.as_deref().map(|n| &n.value)
    }

    /// Elements from newest to oldest, without allocating.
    pub fn iter_rev(&self) -> RevIter<'_, T> {
        RevIter {
            next: self.head.as_deref(),
        }
    }

    /// Elements from oldest to newest (allocates one pointer per element).
    pub fn iter(&self) -> std::iter::Rev<std::vec::IntoIter<&T>> {
        let mut items: Vec<&T> = Vec::with_capacity(self.len());
        items.extend(self.iter_rev());
        items.into_iter().rev()
    }

    /// True when `other` extends this very list in memory: its first
    /// `self.len()` elements are *the same nodes*, not copies. This is the
    /// structural proof that appending never copied the prefix.
    pub fn is_shared_prefix_of(&self, other: &Self) -> bool {
        let Some(mine) = &self.head else {
            return true;
        };
        let mut cur = other.head.as_ref();
        while let Some(node) = cur {
            if node.len == mine.len {
                return Arc::ptr_eq(node, mine);
            }
            if node.len < mine.len {
                return false;
            }
            cur = node.prev.as_ref();
        }
        false
    }

    /// True when both lists are the same allocation (same prefix, same length).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        match (&self.head, &other.head) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl<T> Default for PList<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for PList<T> {
    fn clone(&self) -> Self {
        Self {
            head: self.head.clone(),
        }
    }
}

impl<T> Drop for PList<T> {
    fn drop(&mut self) {
        // Unlink nodes we own exclusively one at a time instead of letting
        // `Arc<Node>` drop recursively through `prev`.
        let mut cur = self.head.take();
        while let Some(node) = cur {
            match Arc::try_unwrap(node) {
                Ok(mut owned) => cur = owned.prev.take(),
                Err(_) => break,
            }
        }
    }
}

impl<T> FromIterator<T> for PList<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut list = Self::new();
        for v in iter {
            list.push(v);
        }
        list
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for PList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: PartialEq> PartialEq for PList<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && (self.ptr_eq(other) || self.iter_rev().eq(other.iter_rev()))
    }
}

/// Iterator from newest to oldest.
pub struct RevIter<'a, T> {
    next: Option<&'a Node<T>>,
}

impl<'a, T> Iterator for RevIter<'a, T> {
    type Item = &'a T;
    fn next(&mut self) -> Option<&'a T> {
        let node = self.next?;
        self.next = node.prev.as_deref();
        Some(&node.value)
    }
}

impl<T: serde::Serialize> serde::Serialize for PList<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for PList<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items: Vec<T> = Vec::deserialize(d)?;
        Ok(items.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_iterate_in_order() {
        let list: PList<u32> = (0..5).collect();
        assert_eq!(list.iter().copied().collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert_eq!(list.last(), Some(&4));
        assert_eq!(list.len(), 5);
    }

    #[test]
    fn clones_share_prefix_and_diverge_independently() {
        let base: PList<u32> = (0..3).collect();
        let a = base.with(10);
        let b = base.with(20);
        assert_eq!(base.len(), 3);
        assert_eq!(a.iter().copied().collect::<Vec<_>>(), vec![0, 1, 2, 10]);
        assert_eq!(b.iter().copied().collect::<Vec<_>>(), vec![0, 1, 2, 20]);
    }

    #[test]
    fn shared_prefix_is_detected_by_identity_not_value() {
        let base: PList<u32> = (0..3).collect();
        let longer = base.with(7);
        assert!(base.is_shared_prefix_of(&longer));
        let copy: PList<u32> = (0..3).collect();
        assert!(!copy.is_shared_prefix_of(&longer));
        assert!(!longer.is_shared_prefix_of(&base));
    }

    #[test]
    fn dropping_a_million_elements_does_not_recurse() {
        let list: PList<u64> = (0..1_000_000).collect();
        drop(list);
    }

    #[test]
    fn serde_round_trip() {
        let list: PList<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let json = serde_json::to_string(&list).unwrap();
        assert_eq!(json, r#"["a","b"]"#);
        let back: PList<String> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, list);
    }
}
