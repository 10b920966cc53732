//! [`RunTree`]: the run tree rebuilt from events, live or recorded.
//!
//! The tree is built incrementally ([`RunTree::apply`]), so the same code
//! serves a trace read from disk, the CLI's live view and the web UI's live
//! mode, and a tree printed from a stored trace equals the tree observed
//! live. Events may arrive in any order (sampling writes a failed run's
//! buffered lifecycle late): a node is created by whichever event names it
//! first (its own `run_started`, its parent's `sub_agent_started`, or any of
//! its events), and children are ordered by when they started.
//!
//! Totals come from the events that carry them (`run_completed` /
//! `run_failed` for the run itself, the parent's `sub_agent_completed` for a
//! run whose own events were not kept), so a finished tree's root total is
//! exactly the run result's roll-up; a running node's total is its own
//! model calls so far plus its children's totals.
//!
//! Nodes live in one `Vec` and refer to each other by index: a 10,000-deep
//! chain is walked with loops, never recursion.

use std::collections::HashMap;
use std::sync::Arc;

use tinyagents_core::{CommandKind, Cost, Event, EventKind, RunId, SteeringPhase, Usage};

use crate::format::{ModelIoRecord, OtherRecord, Record};

/// Status of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Started, not ended (or the trace ends before it did).
    Running,
    /// Ended successfully.
    Completed,
    /// Ended with an error.
    Failed,
}

impl RunStatus {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

/// One run of the tree.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunNode {
    /// The run.
    pub run_id: RunId,
    /// Its parent.
    pub parent_run_id: Option<RunId>,
    /// Agent name.
    pub name: Arc<str>,
    /// Depth (0 at the root).
    pub depth: u32,
    /// Status.
    pub status: RunStatus,
    /// Start (µs since the Unix epoch).
    pub started_us: Option<u64>,
    /// End.
    pub ended_us: Option<u64>,
    /// Usage of this run's own model calls (known once it completed, or
    /// from its model-call events).
    pub usage: Usage,
    /// Usage of this run and its descendants.
    pub total_usage: Usage,
    /// Cost of this run and its descendants.
    pub total_cost: Cost,
    /// Cost of this run's own model calls, when model-call events were kept.
    pub own_cost: Cost,
    /// Model id of the last model call seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Arc<str>>,
    /// Model calls seen.
    pub model_calls: u32,
    /// Tool calls seen.
    pub tool_calls: u32,
    /// Failures this run recorded (tool errors, failed children).
    pub failures: u32,
    /// The error, if it failed (or the first failed tool call's error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why this run exists, when an event carried a `rationale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    /// True when only the parent's view of the run was recorded (sampling,
    /// or a child whose own events were discarded).
    pub summarized: bool,
    /// Limits that stopped this run or refused its spawns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budget_exceeded: Vec<String>,
    /// True while the run is held by a steering `pause` (applied, not yet
    /// resumed); a running, paused run shows as `paused`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Events of kinds this build does not know.
    pub other_events: u32,
    /// Ordering key among siblings: the sequence number of the run's own
    /// `run_started`, else of the first event naming it.
    pub first_seq: u64,
    /// Children, as indices into [`RunTree::nodes`].
    #[serde(skip)]
    pub children: Vec<usize>,
    /// Parent index.
    #[serde(skip)]
    pub parent: Option<usize>,
    #[serde(skip)]
    totals_known: bool,
    #[serde(skip)]
    own_started: bool,
}

impl RunNode {
    fn new(run_id: RunId, parent_run_id: Option<RunId>, name: Arc<str>, depth: u32, seq: u64) -> Self {
        Self {
            run_id,
            parent_run_id,
            name,
            depth,
            status: RunStatus::Running,
            started_us: None,
            ended_us: None,
            usage: Usage::default(),
            total_usage: Usage::default(),
            total_cost: Cost::ZERO,
            own_cost: Cost::ZERO,
            model: None,
            model_calls: 0,
            tool_calls: 0,
            failures: 0,
            error: None,
            rationale: None,
            summarized: true,
            budget_exceeded: Vec::new(),
            paused: false,
            other_events: 0,
            first_seq: seq,
            children: Vec::new(),
            parent: None,
            totals_known: false,
            own_started: false,
        }
    }

    /// Latency in microseconds, when both ends are known.
    pub fn latency_us(&self) -> Option<u64> {
        Some(self.ended_us?.saturating_sub(self.started_us?))
    }

    /// The status shown to people: `paused` for a running run held by a
    /// steering pause, else [`RunStatus::as_str`].
    pub fn display_status(&self) -> &'static str {
        if self.paused && self.status == RunStatus::Running {
            "paused"
        } else {
            self.status.as_str()
        }
    }

    /// True once the run ended.
    pub fn is_finished(&self) -> bool {
        self.status != RunStatus::Running
    }

    /// True when the totals come from an end event (not computed).
    pub fn totals_known(&self) -> bool {
        self.totals_known
    }
}

/// Counts over a tree or subtree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TreeCounts {
    /// Runs.
    pub runs: u64,
    /// Completed runs.
    pub completed: u64,
    /// Failed runs.
    pub failed: u64,
    /// Running runs.
    pub running: u64,
    /// Deepest depth.
    pub max_depth: u32,
}

impl TreeCounts {
    fn add_node(&mut self, n: &RunNode) {
        self.runs += 1;
        match n.status {
            RunStatus::Running => self.running += 1,
            RunStatus::Completed => self.completed += 1,
            RunStatus::Failed => self.failed += 1,
        }
        self.max_depth = self.max_depth.max(n.depth);
    }

    fn merge(&mut self, o: &Self) {
        self.runs += o.runs;
        self.completed += o.completed;
        self.failed += o.failed;
        self.running += o.running;
        self.max_depth = self.max_depth.max(o.max_depth);
    }
}

/// The roll-up shown at the top of every view.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TreeSummary {
    /// The root run.
    pub root_run_id: Option<RunId>,
    /// The root's name.
    pub name: String,
    /// The root's status.
    pub status: RunStatus,
    /// Counts.
    pub counts: TreeCounts,
    /// Usage of the whole tree.
    pub total_usage: Usage,
    /// Cost of the whole tree.
    pub total_cost: Cost,
    /// Root latency (µs).
    pub latency_us: Option<u64>,
    /// Earliest start (µs since the epoch).
    pub started_us: Option<u64>,
    /// Latest end.
    pub ended_us: Option<u64>,
    /// Records applied.
    pub records: u64,
}

/// The run tree of one root (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct RunTree {
    nodes: Vec<RunNode>,
    index: HashMap<RunId, usize>,
    roots: Vec<usize>,
    names: HashMap<Arc<str>, ()>,
    records: u64,
    changed: Vec<usize>,
    track_changes: bool,
}

impl RunTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree from records.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> Self {
        let mut t = Self::new();
        for r in records {
            t.apply(r);
        }
        t.finish();
        t
    }

    /// A tree from events (what a live observer saw).
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut t = Self::new();
        for e in events {
            t.apply_event(e);
        }
        t.finish();
        t
    }

    /// Records the indices of nodes changed from now on (see [`take_changed`](Self::take_changed)).
    pub fn track_changes(&mut self, on: bool) {
        self.track_changes = on;
    }

    /// Indices of nodes changed since the last call (deduplicated).
    pub fn take_changed(&mut self) -> Vec<usize> {
        let mut v = std::mem::take(&mut self.changed);
        v.sort_unstable();
        v.dedup();
        v
    }

    fn intern(&mut self, name: &Arc<str>) -> Arc<str> {
        match self.names.get_key_value(name) {
            Some((k, _)) => k.clone(),
            None => {
                self.names.insert(name.clone(), ());
                name.clone()
            }
        }
    }

    fn touch(&mut self, i: usize) {
        if self.track_changes {
            self.changed.push(i);
        }
    }

    /// The node of `run`, created if missing.
    fn node(&mut self, run: RunId, parent: Option<RunId>, name: Option<&Arc<str>>, depth: u32, seq: u64) -> usize {
        if let Some(&i) = self.index.get(&run) {
            let orphan = self.nodes.get(i).is_some_and(|n| n.parent.is_none());
            if orphan && let Some(p) = parent {
                self.adopt(i, p, depth, seq);
            }
            if let Some(n) = self.nodes.get_mut(i)
                && n.name.is_empty()
                && let Some(name) = name
            {
                n.name = name.clone();
            }
            self.touch(i);
            return i;
        }
        let name = match name {
            Some(n) => self.intern(n),
            None => Arc::from(""),
        };
        let i = self.nodes.len();
        let mut node = RunNode::new(run, parent, name, depth, seq);
        if let Some(p) = parent {
            // The parent may not be known yet (out-of-order records).
            let pi = match self.index.get(&p) {
                Some(&pi) => pi,
                None => {
                    let pi = self.nodes.len() + 1;
                    self.index.insert(run, i);
                    self.nodes.push(node);
                    let mut pnode = RunNode::new(p, None, Arc::from(""), depth.saturating_sub(1), seq);
                    pnode.children.push(i);
                    self.index.insert(p, pi);
                    self.nodes.push(pnode);
                    if let Some(n) = self.nodes.get_mut(i) {
                        n.parent = Some(pi);
                    }
                    self.roots.push(pi);
                    self.touch(i);
                    self.touch(pi);
                    return i;
                }
            };
            node.parent = Some(pi);
            if let Some(pn) = self.nodes.get_mut(pi) {
                pn.children.push(i);
            }
        } else {
            self.roots.push(i);
        }
        self.index.insert(run, i);
        self.nodes.push(node);
        self.touch(i);
        i
    }

    /// Links the top-level node `i` under `parent` (its parent appeared late).
    fn adopt(&mut self, i: usize, parent: RunId, depth: u32, seq: u64) {
        let pi = self.node(parent, None, None, depth.saturating_sub(1), seq);
        if pi == i {
            return;
        }
        self.roots.retain(|&r| r != i);
        if let Some(n) = self.nodes.get_mut(i) {
            n.parent = Some(pi);
            n.parent_run_id = Some(parent);
        }
        if let Some(p) = self.nodes.get_mut(pi) {
            p.children.push(i);
        }
    }

    /// Applies one record.
    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::Event(e) => self.apply_event(e),
            Record::ModelIo(m) => self.apply_model_io(m),
            Record::Other(o) => self.apply_other(o),
        }
    }

    fn apply_model_io(&mut self, m: &ModelIoRecord) {
        self.records += 1;
        if let Some(&i) = self.index.get(&m.run_id)
            && let Some(n) = self.nodes.get_mut(i)
            && n.model.is_none()
        {
            n.model = Some(m.model.clone());
        }
    }

    fn apply_other(&mut self, o: &OtherRecord) {
        self.records += 1;
        let Some(run) = o.run_id else { return };
        let i = self.node(
            run,
            o.parent_run_id,
            None,
            o.depth.unwrap_or(0),
            o.seq.unwrap_or(u64::MAX),
        );
        if let Some(n) = self.nodes.get_mut(i) {
            n.other_events += 1;
            if n.rationale.is_none()
                && let Some(r) = o.raw.get("rationale").and_then(|r| r.as_str())
            {
                n.rationale = Some(r.to_string());
            }
        }
    }

    /// Applies one event.
    pub fn apply_event(&mut self, e: &Event) {
        self.records += 1;
        let name = match &e.kind {
            EventKind::RunStarted { name } => Some(name),
            _ => None,
        };
        let i = self.node(e.run_id, e.parent_run_id, name, e.depth, e.seq);
        match &e.kind {
            EventKind::RunStarted { .. } => {
                if let Some(n) = self.nodes.get_mut(i) {
                    n.started_us = Some(e.timestamp_us);
                    n.first_seq = e.seq;
                    n.summarized = false;
                    n.own_started = true;
                    n.depth = e.depth;
                }
            }
            EventKind::RunCompleted {
                usage,
                total_usage,
                total_cost,
                failures,
            } => {
                if let Some(n) = self.nodes.get_mut(i) {
                    n.status = RunStatus::Completed;
                    n.paused = false;
                    n.ended_us = Some(e.timestamp_us);
                    n.usage = *usage;
                    n.total_usage = *total_usage;
                    n.total_cost = *total_cost;
                    n.failures = n.failures.max(*failures);
                    n.totals_known = true;
                }
            }
            EventKind::RunFailed {
                error,
                total_usage,
                total_cost,
            } => {
                if let Some(n) = self.nodes.get_mut(i) {
                    n.status = RunStatus::Failed;
                    n.paused = false;
                    n.ended_us = Some(e.timestamp_us);
                    n.total_usage = *total_usage;
                    n.total_cost = *total_cost;
                    n.error = Some(error.clone());
                    n.totals_known = true;
                }
            }
            EventKind::ModelCallStarted { model, .. } => {
                if let Some(n) = self.nodes.get_mut(i) {
                    n.model = Some(model.clone());
                }
            }
            EventKind::ModelCallCompleted { model, usage, cost, .. } => {
                if let Some(n) = self.nodes.get_mut(i) {
                    n.model = Some(model.clone());
                    n.model_calls += 1;
                    n.own_cost += *cost;
                    if !n.totals_known {
                        n.usage += *usage;
                    }
                }
            }
            EventKind::ToolCallStarted { .. } => {
                if let Some(n) = self.nodes.get_mut(i) {
                    n.tool_calls += 1;
                }
            }
            EventKind::ToolCallCompleted { tool, error, .. } => {
                if let Some(n) = self.nodes.get_mut(i)
                    && let Some(err) = error
                {
                    n.failures = n.failures.saturating_add(1);
                    if n.error.is_none() {
                        n.error = Some(format!("tool {tool}: {err}"));
                    }
                }
            }
            EventKind::SubAgentStarted {
                name,
                child_run_id,
                child_depth,
            } => {
                let c = self.node(*child_run_id, Some(e.run_id), Some(name), *child_depth, e.seq);
                if let Some(n) = self.nodes.get_mut(c)
                    && n.started_us.is_none()
                {
                    n.started_us = Some(e.timestamp_us);
                }
            }
            EventKind::SubAgentCompleted {
                name,
                child_run_id,
                child_depth,
                ok,
                usage,
                cost,
            } => {
                let c = self.node(*child_run_id, Some(e.run_id), Some(name), *child_depth, e.seq);
                if let Some(n) = self.nodes.get_mut(c) {
                    if n.ended_us.is_none() {
                        n.ended_us = Some(e.timestamp_us);
                    }
                    if !n.totals_known {
                        n.total_usage = *usage;
                        n.total_cost = *cost;
                        n.totals_known = true;
                    }
                    if n.status == RunStatus::Running {
                        n.status = if *ok { RunStatus::Completed } else { RunStatus::Failed };
                        if !ok && n.error.is_none() {
                            n.error = Some("failed (the child's own events were not recorded)".into());
                        }
                    }
                }
            }
            EventKind::SubAgentReused { name, child_run_id, .. } => {
                self.node(
                    *child_run_id,
                    Some(e.run_id),
                    Some(name),
                    e.depth.saturating_add(1),
                    e.seq,
                );
            }
            EventKind::Steering { phase, info } => {
                if let Some(n) = self.nodes.get_mut(i) {
                    n.other_events += 1;
                    if *phase == SteeringPhase::Applied && n.status == RunStatus::Running {
                        match info.command {
                            CommandKind::Pause => n.paused = true,
                            CommandKind::Resume => n.paused = false,
                            _ => {}
                        }
                    }
                }
            }
            EventKind::BudgetExceeded { limit } => {
                if let Some(n) = self.nodes.get_mut(i) {
                    n.budget_exceeded.push(format!("{limit:?}"));
                }
            }
            #[allow(unreachable_patterns)]
            _ => {
                // A kind added to core after this code was written: count it
                // and look for a rationale.
                if let Some(n) = self.nodes.get_mut(i) {
                    n.other_events += 1;
                    if n.rationale.is_none()
                        && let Ok(v) = serde_json::to_value(&e.kind)
                        && let Some(r) = v.get("rationale").and_then(|r| r.as_str())
                    {
                        n.rationale = Some(r.to_string());
                    }
                }
            }
        }
    }

    /// Orders every node's children by announcement; call after applying
    /// out-of-order records (the constructors do).
    pub fn finish(&mut self) {
        let seqs: Vec<u64> = self.nodes.iter().map(|n| n.first_seq).collect();
        for n in &mut self.nodes {
            if n.children.len() > 1 {
                n.children
                    .sort_by_key(|&c| (seqs.get(c).copied().unwrap_or(u64::MAX), c));
            }
        }
    }

    /// All nodes, in creation order.
    pub fn nodes(&self) -> &[RunNode] {
        &self.nodes
    }

    /// Number of runs.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when no run is known.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Index of `run`.
    pub fn index_of(&self, run: RunId) -> Option<usize> {
        self.index.get(&run).copied()
    }

    /// The node of `run`.
    pub fn get(&self, run: RunId) -> Option<&RunNode> {
        self.index_of(run).and_then(|i| self.nodes.get(i))
    }

    /// The node at index `i`.
    pub fn node_at(&self, i: usize) -> Option<&RunNode> {
        self.nodes.get(i)
    }

    /// Top-level nodes (the root, plus any run whose parent never appeared).
    pub fn roots(&self) -> &[usize] {
        &self.roots
    }

    /// The main root: the first depth-0 run, else the first top-level node.
    pub fn root(&self) -> Option<&RunNode> {
        self.roots
            .iter()
            .filter_map(|&i| self.nodes.get(i))
            .find(|n| n.parent_run_id.is_none() && n.depth == 0)
            .or_else(|| self.roots.first().and_then(|&i| self.nodes.get(i)))
    }

    /// Indices in depth-first pre-order (children in announcement order).
    pub fn preorder(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack: Vec<usize> = self.roots.iter().rev().copied().collect();
        while let Some(i) = stack.pop() {
            out.push(i);
            if let Some(n) = self.nodes.get(i) {
                stack.extend(n.children.iter().rev().copied());
            }
        }
        out
    }

    /// Per node: the counts of its subtree (itself included).
    pub fn subtree_counts(&self) -> Vec<TreeCounts> {
        let mut counts = vec![TreeCounts::default(); self.nodes.len()];
        let order = self.preorder();
        for &i in order.iter().rev() {
            let Some(n) = self.nodes.get(i) else { continue };
            let mut c = TreeCounts::default();
            c.add_node(n);
            for &ch in &n.children {
                if let Some(cc) = counts.get(ch).copied() {
                    c.merge(&cc);
                }
            }
            if let Some(slot) = counts.get_mut(i) {
                *slot = c;
            }
        }
        counts
    }

    /// Per node: total usage and cost, taken from the end events where
    /// known, else own usage plus the children's totals.
    pub fn subtree_totals(&self) -> Vec<(Usage, Cost)> {
        let mut totals = vec![(Usage::default(), Cost::ZERO); self.nodes.len()];
        let order = self.preorder();
        for &i in order.iter().rev() {
            let Some(n) = self.nodes.get(i) else { continue };
            let t = if n.totals_known {
                (n.total_usage, n.total_cost)
            } else {
                let mut u = n.usage;
                let mut c = n.own_cost;
                for &ch in &n.children {
                    if let Some((cu, cc)) = totals.get(ch).copied() {
                        u += cu;
                        c += cc;
                    }
                }
                (u, c)
            };
            if let Some(slot) = totals.get_mut(i) {
                *slot = t;
            }
        }
        totals
    }

    /// The roll-up of the whole tree.
    pub fn summary(&self) -> TreeSummary {
        let mut counts = TreeCounts::default();
        let mut started: Option<u64> = None;
        let mut ended: Option<u64> = None;
        for n in &self.nodes {
            counts.add_node(n);
            if let Some(s) = n.started_us {
                started = Some(started.map_or(s, |x| x.min(s)));
            }
            if let Some(e) = n.ended_us {
                ended = Some(ended.map_or(e, |x| x.max(e)));
            }
        }
        let totals = self.subtree_totals();
        let (total_usage, total_cost) = self
            .roots
            .iter()
            .filter_map(|&i| totals.get(i))
            .fold((Usage::default(), Cost::ZERO), |(u, c), (tu, tc)| (u + *tu, c + *tc));
        let root = self.root();
        TreeSummary {
            root_run_id: root.map(|r| r.run_id),
            name: root.map(|r| r.name.to_string()).unwrap_or_default(),
            status: root.map_or(RunStatus::Running, |r| r.status),
            counts,
            total_usage,
            total_cost,
            latency_us: root.and_then(RunNode::latency_us),
            started_us: started,
            ended_us: ended,
            records: self.records,
        }
    }

    /// The tree as flat JSON: a summary and the nodes in pre-order, each
    /// with its parent id (flat, so a 10,000-deep tree serializes without
    /// deep nesting).
    pub fn to_json(&self) -> serde_json::Value {
        let totals = self.subtree_totals();
        let nodes: Vec<serde_json::Value> = self
            .preorder()
            .into_iter()
            .filter_map(|i| {
                let n = self.nodes.get(i)?;
                let mut v = serde_json::to_value(n).ok()?;
                if let (Some(obj), Some((u, c))) = (v.as_object_mut(), totals.get(i)) {
                    obj.insert("total_usage".into(), serde_json::to_value(u).ok()?);
                    obj.insert("total_cost".into(), serde_json::to_value(c).ok()?);
                    obj.insert("latency_us".into(), serde_json::to_value(n.latency_us()).ok()?);
                    obj.insert("children".into(), serde_json::Value::from(n.children.len()));
                }
                Some(v)
            })
            .collect();
        serde_json::json!({ "summary": self.summary(), "runs": nodes })
    }
}
