//! [`SpawnRegistry`]: the live DAG of every agent spawned under a root.
//!
//! The seed's `SpawningContext` keeps a DAG of agents and recompiles only
//! the affected subgraph when an agent spawns children. Here that is a
//! registry: each `spawn_agents` call compiles only its fragment and
//! splices the fragment's nodes under the spawning node ([`splice`]),
//! an O(fragment) operation whatever the registry's size. Nodes carry
//! their rationale, their run id once running, and their status, so the
//! whole tree of spawned agents can be inspected (or drawn) at any time.
//!
//! [`splice`]: SpawnRegistry::splice

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, MutexGuard};

use tinyagents_core::{RunContext, RunId};

use crate::plan::Plan;

/// Index of a node in the registry.
pub type RegId = usize;

/// Where a registered node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnStatus {
    /// Compiled and spliced, not started.
    Planned,
    /// Running.
    Running,
    /// Finished.
    Done,
    /// Failed.
    Failed,
    /// Not run (a router did not select it).
    Skipped,
}

/// A node of the live DAG.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegNode {
    /// Its id.
    pub id: RegId,
    /// Its name.
    pub name: Arc<str>,
    /// `agent`, `map`, `router`, … or `run` for a run registered from its context.
    pub kind: &'static str,
    /// The node that spawned it (its parent in the spawn tree).
    pub parent: Option<RegId>,
    /// Nodes of the same fragment it depends on.
    pub deps: Vec<RegId>,
    /// Nodes it spawned.
    pub children: Vec<RegId>,
    /// Its run, once started.
    pub run_id: Option<RunId>,
    /// Its depth in the run tree, once known.
    pub depth: Option<u32>,
    /// Why it exists.
    pub rationale: Option<Arc<str>>,
    /// Its status.
    pub status: SpawnStatus,
}

#[derive(Default)]
struct Inner {
    nodes: Vec<RegNode>,
    by_run: HashMap<RunId, RegId>,
}

/// The live DAG of spawned agents (see the module docs). Cheap to clone;
/// clones share the registry.
#[derive(Clone, Default)]
pub struct SpawnRegistry(Arc<Mutex<Inner>>);

impl std::fmt::Debug for SpawnRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnRegistry").field("nodes", &self.len()).finish()
    }
}

impl SpawnRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.lock().nodes.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of every node.
    pub fn snapshot(&self) -> Vec<RegNode> {
        self.lock().nodes.clone()
    }

    /// A copy of one node.
    pub fn get(&self, id: RegId) -> Option<RegNode> {
        self.lock().nodes.get(id).cloned()
    }

    /// The node of a run, if registered.
    pub fn by_run(&self, run: RunId) -> Option<RegId> {
        self.lock().by_run.get(&run).copied()
    }

    /// Adds a node under `parent`.
    pub fn add(
        &self,
        parent: Option<RegId>,
        name: impl Into<Arc<str>>,
        kind: &'static str,
        rationale: Option<&str>,
    ) -> RegId {
        let mut g = self.lock();
        add_locked(&mut g, parent, name.into(), kind, rationale.map(Arc::from), Vec::new())
    }

    /// The node of the run `ctx`, registering it (and binding it to a
    /// planned node of the same name under its parent run) if needed.
    pub fn ensure_run(&self, ctx: &RunContext) -> RegId {
        let mut g = self.lock();
        if let Some(&id) = g.by_run.get(&ctx.run_id()) {
            return id;
        }
        let parent = ctx.meta().parent_run_id.and_then(|p| g.by_run.get(&p).copied());
        let name: &str = ctx.name();
        // A planned node of that name among the parent's children, or
        // among the children of its map/reduce nodes (map items, reducers).
        let planned = parent.and_then(|p| {
            let unbound = |c: &RegId| {
                g.nodes
                    .get(*c)
                    .is_some_and(|n| n.run_id.is_none() && &*n.name == name && n.kind != "run")
            };
            let children = &g.nodes.get(p)?.children;
            children.iter().copied().find(unbound).or_else(|| {
                children
                    .iter()
                    .filter_map(|&c| g.nodes.get(c))
                    .filter(|n| n.run_id.is_none())
                    .flat_map(|n| n.children.iter().copied())
                    .find(unbound)
            })
        });
        let id = match planned {
            Some(id) => id,
            None => add_locked(&mut g, parent, ctx.name().clone(), "run", None, Vec::new()),
        };
        if let Some(n) = g.nodes.get_mut(id) {
            n.run_id = Some(ctx.run_id());
            n.depth = Some(ctx.depth());
            n.status = SpawnStatus::Running;
        }
        g.by_run.insert(ctx.run_id(), id);
        id
    }

    /// Splices a compiled fragment under `parent`: one node per plan node,
    /// with the plan's data edges. Returns the new ids, by plan node id.
    pub fn splice(&self, parent: RegId, plan: &Plan) -> Vec<RegId> {
        let mut g = self.lock();
        let base = g.nodes.len();
        let mut ids = Vec::with_capacity(plan.nodes.len());
        for n in &plan.nodes {
            let deps = n.deps.iter().chain(&n.gates).map(|d| base + d).collect();
            let id = add_locked(
                &mut g,
                Some(parent),
                n.name.as_str().into(),
                n.kind_name(),
                n.rationale.as_deref().map(Arc::from),
                deps,
            );
            ids.push(id);
        }
        ids
    }

    /// Binds a node to the run that executed it (no-op when already bound).
    pub fn bind(&self, id: RegId, run: RunId, depth: u32) {
        let mut g = self.lock();
        let Some(n) = g.nodes.get_mut(id) else { return };
        if n.run_id.is_some() {
            return;
        }
        n.run_id = Some(run);
        n.depth = Some(depth);
        g.by_run.insert(run, id);
    }

    /// Sets a node's status.
    pub fn set_status(&self, id: RegId, status: SpawnStatus) {
        if let Some(n) = self.lock().nodes.get_mut(id) {
            n.status = status;
        }
    }

    /// The ids of every node below `id` in the spawn tree.
    pub fn descendants(&self, id: RegId) -> Vec<RegId> {
        let g = self.lock();
        let mut out = Vec::new();
        let mut stack: Vec<RegId> = g.nodes.get(id).map(|n| n.children.clone()).unwrap_or_default();
        while let Some(c) = stack.pop() {
            out.push(c);
            if let Some(n) = g.nodes.get(c) {
                stack.extend(n.children.iter().copied());
            }
        }
        out.sort_unstable();
        out
    }

    /// Deepest spawn-tree level below the roots (roots are level 0).
    pub fn max_level(&self) -> usize {
        let g = self.lock();
        let mut level = vec![0usize; g.nodes.len()];
        for n in &g.nodes {
            if let Some(p) = n.parent {
                level[n.id] = level.get(p).copied().unwrap_or(0) + 1;
            }
        }
        level.into_iter().max().unwrap_or(0)
    }

    /// A Mermaid drawing of the live DAG: spawn edges solid, data edges dotted.
    pub fn to_mermaid(&self) -> String {
        let g = self.lock();
        let mut out = String::from("flowchart TD\n");
        for n in &g.nodes {
            let _ = writeln!(
                out,
                "  r{}[\"{} ({}, {:?})\"]",
                n.id,
                n.name.replace('"', "'"),
                n.kind,
                n.status
            );
        }
        for n in &g.nodes {
            if let Some(p) = n.parent {
                let _ = writeln!(out, "  r{p} --> r{}", n.id);
            }
            for d in &n.deps {
                let _ = writeln!(out, "  r{d} -.-> r{}", n.id);
            }
        }
        out
    }
}

fn add_locked(
    g: &mut Inner,
    parent: Option<RegId>,
    name: Arc<str>,
    kind: &'static str,
    rationale: Option<Arc<str>>,
    deps: Vec<RegId>,
) -> RegId {
    let id = g.nodes.len();
    g.nodes.push(RegNode {
        id,
        name,
        kind,
        parent,
        deps,
        children: Vec::new(),
        run_id: None,
        depth: None,
        rationale,
        status: SpawnStatus::Planned,
    });
    if let Some(p) = parent.and_then(|p| g.nodes.get_mut(p)) {
        p.children.push(id);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinyagents_core::{ChildEvents, RunConfig, RunLimits};

    #[test]
    fn runs_bind_to_planned_nodes_of_the_same_name_under_their_parent() {
        let reg = SpawnRegistry::new();
        let root = RunContext::root("root", &RunConfig::new());
        let r = reg.ensure_run(&root);
        let planned = reg.add(Some(r), "worker", "agent", Some("does work"));
        let child = root
            .spawn_child("worker", &RunLimits::inherit(), ChildEvents::Discard)
            .unwrap();
        assert_eq!(reg.ensure_run(&child), planned);
        let node = reg.get(planned).unwrap();
        assert_eq!(
            (node.run_id, node.depth, node.status),
            (Some(child.run_id()), Some(1), SpawnStatus::Running)
        );
        let grandchild = child
            .spawn_child("other", &RunLimits::inherit(), ChildEvents::Discard)
            .unwrap();
        let g = reg.ensure_run(&grandchild);
        assert_eq!(reg.get(g).unwrap().parent, Some(planned));
        assert_eq!(reg.descendants(r), vec![planned, g]);
        assert_eq!(reg.max_level(), 2);
    }
}
