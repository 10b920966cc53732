//! Budgets that only narrow.
//!
//! # Why budgets and not a depth cap?
//! A depth cap alone does not stop a fan-out explosion: an agent at depth 1
//! that spawns 1,000 children, each spawning 1,000 more, stays within depth 3
//! and runs a million model calls. TinyAgents bounds a tree by depth, by the
//! total number of descendants under the root, by concurrent children per
//! run, by tokens, by cost and by a wall-clock deadline.
//!
//! # How limits narrow
//! [`RunLimits`] is what a run asks for. The limits a run actually gets are
//! the minimum of its parent's remainder and what it asked for: a child can
//! never widen them. Counters live in a chain of [`BudgetScope`]s shared by
//! the whole tree through `Arc` and updated with atomics only (no lock on the
//! hot path). A run that does not narrow a counted limit shares its parent's
//! scope, so the chain is as long as the number of runs that narrowed, not as
//! deep as the tree.
//!
//! # Reservation
//! A spawn reserves its descendant slot with a compare-and-swap loop *before*
//! the child starts: 10,000 parallel spawns against a cap of 50 start exactly
//! 50, and the others fail with [`LimitKind::Descendants`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::usage::{Cost, Usage};

/// What a run asks for. `None` means "no limit of my own" (the parent's still
/// applies).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct RunLimits {
    /// Deepest depth a run below the root may have (root = 0). Default 8.
    /// This is the only recursion cap: sub-agents, sub-agent tools and
    /// sessions all read it.
    #[serde(default = "RunLimits::default_max_depth")]
    pub max_depth: u32,
    /// Total runs that may be spawned under this run (its whole subtree).
    #[serde(default)]
    pub max_descendants: Option<u64>,
    /// Children of this run that may run at the same time (tool calls of one
    /// turn beyond this wait for a slot).
    #[serde(default)]
    pub max_concurrent_children: Option<usize>,
    /// Tokens (input + output) this run's subtree may consume.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Cost this run's subtree may incur.
    #[serde(default)]
    pub max_cost: Option<Cost>,
    /// Wall-clock time this run may take, from its start.
    #[serde(default, with = "duration_ms")]
    #[schemars(with = "Option<u64>")]
    pub timeout: Option<Duration>,
    /// Model turns one agent run may take (default 32). This is a per-agent
    /// loop guard, not a tree budget: an agent's own setting wins over the
    /// one it inherits; tokens, cost and time are what bound a tree.
    #[serde(default)]
    pub max_turns: Option<u32>,
}

mod duration_ms {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let ms: Option<u64> = serde::Deserialize::deserialize(d)?;
        Ok(ms.map(Duration::from_millis))
    }
}

impl RunLimits {
    /// The default depth cap.
    pub const DEFAULT_MAX_DEPTH: u32 = 8;
    /// The default number of model turns per agent run.
    pub const DEFAULT_MAX_TURNS: u32 = 32;

    fn default_max_depth() -> u32 {
        Self::DEFAULT_MAX_DEPTH
    }

    /// No limits but the default depth and turn caps.
    pub const fn new() -> Self {
        Self::inherit().max_depth(Self::DEFAULT_MAX_DEPTH)
    }

    /// Asks for nothing: every limit is inherited from the parent. This is
    /// what an agent without explicit limits asks for, so the tree's one
    /// depth cap (set on the root's `RunConfig`, default 8) is the only one
    /// in force. Note that [`RunLimits::new`] includes the default depth cap
    /// of 8: start from `inherit()` to ask only for the limits you set.
    pub const fn inherit() -> Self {
        Self {
            max_depth: u32::MAX,
            max_descendants: None,
            max_concurrent_children: None,
            max_tokens: None,
            max_cost: None,
            timeout: None,
            max_turns: None,
        }
    }

    /// Sets `max_depth`.
    #[must_use]
    pub const fn max_depth(mut self, v: u32) -> Self {
        self.max_depth = v;
        self
    }
    /// Sets `max_descendants`.
    #[must_use]
    pub const fn max_descendants(mut self, v: u64) -> Self {
        self.max_descendants = Some(v);
        self
    }
    /// Sets `max_concurrent_children`.
    #[must_use]
    pub const fn max_concurrent_children(mut self, v: usize) -> Self {
        self.max_concurrent_children = Some(v);
        self
    }
    /// Sets `max_tokens`.
    #[must_use]
    pub const fn max_tokens(mut self, v: u64) -> Self {
        self.max_tokens = Some(v);
        self
    }
    /// Sets `max_cost`.
    #[must_use]
    pub const fn max_cost(mut self, v: Cost) -> Self {
        self.max_cost = Some(v);
        self
    }
    /// Sets `timeout`.
    #[must_use]
    pub const fn timeout(mut self, v: Duration) -> Self {
        self.timeout = Some(v);
        self
    }
    /// Sets `max_turns`.
    #[must_use]
    pub const fn max_turns(mut self, v: u32) -> Self {
        self.max_turns = Some(v);
        self
    }

    /// The turn cap in force: the one set, or [`Self::DEFAULT_MAX_TURNS`].
    pub fn effective_max_turns(&self) -> u32 {
        self.max_turns.unwrap_or(Self::DEFAULT_MAX_TURNS)
    }

    /// The tighter of two sets of limits, field by field: a limit set on
    /// either side applies, and where both set one the smaller wins. Used
    /// where two requests for the same run meet (a root's configuration and
    /// its agent's own limits; an agent's limits and its graph node policy).
    #[must_use]
    pub fn intersect(&self, other: &RunLimits) -> RunLimits {
        fn min_opt<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        RunLimits {
            max_depth: self.max_depth.min(other.max_depth),
            max_descendants: min_opt(self.max_descendants, other.max_descendants),
            max_concurrent_children: min_opt(self.max_concurrent_children, other.max_concurrent_children),
            max_tokens: min_opt(self.max_tokens, other.max_tokens),
            max_cost: min_opt(self.max_cost, other.max_cost),
            timeout: min_opt(self.timeout, other.timeout),
            max_turns: min_opt(self.max_turns, other.max_turns),
        }
    }

    /// The field-wise minimum of `self` (the parent's effective limits) and
    /// `asked` (the child's request). Counted limits (descendants, tokens,
    /// cost) are enforced through the scope chain, which also applies the
    /// parent's remainder.
    #[must_use]
    pub fn narrow(&self, asked: &RunLimits) -> RunLimits {
        fn min_opt<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        RunLimits {
            max_depth: self.max_depth.min(asked.max_depth),
            max_descendants: asked.max_descendants,
            max_concurrent_children: min_opt(self.max_concurrent_children, asked.max_concurrent_children),
            max_tokens: asked.max_tokens,
            max_cost: asked.max_cost,
            timeout: asked.timeout,
            max_turns: asked.max_turns.or(self.max_turns),
        }
    }
}

impl Default for RunLimits {
    fn default() -> Self {
        Self::new()
    }
}

/// Which limit stopped a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// `max_depth`.
    Depth,
    /// `max_descendants`.
    Descendants,
    /// `max_tokens`.
    Tokens,
    /// `max_cost`.
    Cost,
    /// `timeout` (the wall-clock deadline).
    Deadline,
    /// `max_turns`.
    Turns,
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Depth => "depth",
            Self::Descendants => "descendants",
            Self::Tokens => "tokens",
            Self::Cost => "cost",
            Self::Deadline => "deadline",
            Self::Turns => "turns",
        })
    }
}

struct Counter {
    limit: Option<u64>,
    used: AtomicU64,
}

impl Counter {
    fn new(limit: Option<u64>) -> Self {
        Self {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// Reserves `n` if it fits; lock-free.
    fn try_reserve(&self, n: u64) -> bool {
        let Some(limit) = self.limit else {
            self.used.fetch_add(n, Ordering::Relaxed);
            return true;
        };
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = cur.checked_add(n).filter(|v| *v <= limit) else {
                return false;
            };
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    fn release(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }

    /// Adds unconditionally; true when the limit is now exceeded.
    fn charge(&self, n: u64) -> bool {
        let after = self.used.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        self.limit.is_some_and(|l| after > l)
    }

    fn exhausted(&self) -> bool {
        self.limit.is_some_and(|l| self.used.load(Ordering::Relaxed) >= l)
    }

    fn remaining(&self) -> Option<u64> {
        self.limit.map(|l| l.saturating_sub(self.used.load(Ordering::Relaxed)))
    }
}

struct ScopeNode {
    parent: Option<Arc<ScopeNode>>,
    descendants: Counter,
    tokens: Counter,
    cost: Counter,
}

impl Drop for ScopeNode {
    fn drop(&mut self) {
        // Unlink exclusively owned ancestors iteratively (deep chains of
        // narrowing runs must not recurse through `Drop`).
        let mut cur = self.parent.take();
        while let Some(node) = cur {
            match Arc::try_unwrap(node) {
                Ok(mut owned) => cur = owned.parent.take(),
                Err(_) => break,
            }
        }
    }
}

/// A link in the tree-wide chain of budget counters (see the module docs).
#[derive(Clone)]
pub struct BudgetScope(Arc<ScopeNode>);

impl std::fmt::Debug for BudgetScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetScope")
            .field("remaining_descendants", &self.remaining_descendants())
            .field("remaining_tokens", &self.remaining_tokens())
            .field("remaining_cost", &self.remaining_cost())
            .finish()
    }
}

impl BudgetScope {
    /// The scope of a root run.
    pub fn root(limits: &RunLimits) -> Self {
        Self(Arc::new(ScopeNode {
            parent: None,
            descendants: Counter::new(limits.max_descendants),
            tokens: Counter::new(limits.max_tokens),
            cost: Counter::new(limits.max_cost.map(|c| c.0)),
        }))
    }

    /// The scope of a child that asked for `asked`: a new link when it
    /// narrows a counted limit, the parent's own scope otherwise.
    pub fn child(&self, asked: &RunLimits) -> Self {
        if asked.max_descendants.is_none() && asked.max_tokens.is_none() && asked.max_cost.is_none() {
            return self.clone();
        }
        Self(Arc::new(ScopeNode {
            parent: Some(self.0.clone()),
            descendants: Counter::new(asked.max_descendants),
            tokens: Counter::new(asked.max_tokens),
            cost: Counter::new(asked.max_cost.map(|c| c.0)),
        }))
    }

    fn chain(&self) -> impl Iterator<Item = &ScopeNode> {
        std::iter::successors(Some(&*self.0), |n| n.parent.as_deref())
    }

    /// Reserves one descendant slot in every scope of the chain, or none.
    pub fn reserve_descendant(&self) -> Result<(), LimitKind> {
        // Rolls back by walking the chain again: no allocation per spawn.
        for (reserved, node) in self.chain().enumerate() {
            if !node.descendants.try_reserve(1) {
                for r in self.chain().take(reserved) {
                    r.descendants.release(1);
                }
                return Err(LimitKind::Descendants);
            }
        }
        Ok(())
    }

    /// Fails when a token or cost budget in the chain is already used up.
    pub fn check_before_call(&self) -> Result<(), LimitKind> {
        for node in self.chain() {
            if node.tokens.exhausted() {
                return Err(LimitKind::Tokens);
            }
            if node.cost.exhausted() {
                return Err(LimitKind::Cost);
            }
        }
        Ok(())
    }

    /// Charges a finished model call; reports the first limit it broke.
    pub fn charge(&self, usage: &Usage, cost: Cost) -> Result<(), LimitKind> {
        let mut broke = None;
        for node in self.chain() {
            if node.tokens.charge(usage.total_tokens()) && broke.is_none() {
                broke = Some(LimitKind::Tokens);
            }
            if node.cost.charge(cost.0) && broke.is_none() {
                broke = Some(LimitKind::Cost);
            }
        }
        broke.map_or(Ok(()), Err)
    }

    fn min_remaining(&self, f: impl Fn(&ScopeNode) -> Option<u64>) -> Option<u64> {
        self.chain().filter_map(f).min()
    }

    /// Descendant slots left (the tightest scope in the chain).
    pub fn remaining_descendants(&self) -> Option<u64> {
        self.min_remaining(|n| n.descendants.remaining())
    }

    /// Tokens left.
    pub fn remaining_tokens(&self) -> Option<u64> {
        self.min_remaining(|n| n.tokens.remaining())
    }

    /// Cost left.
    pub fn remaining_cost(&self) -> Option<Cost> {
        self.min_remaining(|n| n.cost.remaining()).map(Cost)
    }

    /// Descendants reserved in this scope so far.
    pub fn descendants_used(&self) -> u64 {
        self.0.descendants.used.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendant_cap_reserves_exactly() {
        let s = BudgetScope::root(&RunLimits::new().max_descendants(3));
        assert!(s.reserve_descendant().is_ok());
        assert!(s.reserve_descendant().is_ok());
        assert!(s.reserve_descendant().is_ok());
        assert_eq!(s.reserve_descendant(), Err(LimitKind::Descendants));
        assert_eq!(s.remaining_descendants(), Some(0));
    }

    #[test]
    fn child_scope_is_bounded_by_parent_remainder() {
        let root = BudgetScope::root(&RunLimits::new().max_tokens(100));
        root.charge(&Usage::call(60, 0), Cost::ZERO).unwrap();
        let child = root.child(&RunLimits::new().max_tokens(1_000));
        assert_eq!(child.remaining_tokens(), Some(40));
        assert_eq!(child.charge(&Usage::call(50, 0), Cost::ZERO), Err(LimitKind::Tokens));
        assert_eq!(child.check_before_call(), Err(LimitKind::Tokens));
    }

    #[test]
    fn failed_reservation_in_outer_scope_rolls_back_inner() {
        let root = BudgetScope::root(&RunLimits::new().max_descendants(1));
        let child = root.child(&RunLimits::new().max_descendants(10));
        child.reserve_descendant().unwrap();
        assert_eq!(child.reserve_descendant(), Err(LimitKind::Descendants));
        assert_eq!(child.descendants_used(), 1);
    }

    #[test]
    fn a_deep_chain_of_narrowing_scopes_drops_without_recursion() {
        let mut s = BudgetScope::root(&RunLimits::new());
        for _ in 0..200_000 {
            s = s.child(&RunLimits::new().max_tokens(10));
        }
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || drop(s))
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn intersect_keeps_a_limit_set_on_either_side() {
        let a = RunLimits::inherit().max_turns(5).max_tokens(100);
        let b = RunLimits::inherit().max_depth(3).max_tokens(50);
        let both = a.intersect(&b);
        assert_eq!(both.max_turns, Some(5), "an unset side must not drop the other's cap");
        assert_eq!(both.max_tokens, Some(50));
        assert_eq!(both.max_depth, 3);
    }

    #[test]
    fn narrowing_takes_the_minimum() {
        let parent = RunLimits::new().max_depth(4).max_concurrent_children(8);
        let asked = RunLimits::new().max_depth(100).max_concurrent_children(2);
        let got = parent.narrow(&asked);
        assert_eq!(got.max_depth, 4);
        assert_eq!(got.max_concurrent_children, Some(2));
    }
}
