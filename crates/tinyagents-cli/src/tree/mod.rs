//! The run tree as the terminal sees it: state rebuilt from events.
//!
//! [`RunTree`] folds the event stream of one or more root runs into a map
//! of runs keyed by [`RunId`], each linked to its parent and listing its
//! children in start order. Applying an event is O(1) (amortized): no walk
//! up to the root, no scan of siblings. What needs the whole tree, the
//! subtree token and cost totals shown on every row, is computed when a
//! frame is drawn, in one pass over the runs (see [`RunTree::subtree_totals`]),
//! which is cheap at 10 Hz even for 10,000 runs.
//!
//! The tree is independent of who produced the events: agent runs today,
//! graph runs and graph tasks later. It is robust to partial streams: a run
//! first seen through its parent's `SubAgentStarted` gets its node then, and
//! a run whose own events were discarded is closed by the parent's
//! `SubAgentCompleted`.
//!
//! Tool calls that failed without a run of their own (a sub-agent refused at
//! `max_depth`, a plain tool error) are kept on the calling run as
//! [`FailedCall`]s, so the tree can show them where they happened. A call is
//! matched to the child run it spawned by tool name, oldest call first: a
//! parent emits `ToolCallStarted` and then, in the same step, the child's
//! `SubAgentStarted`.
//!
//! ```
//! use tinyagents_cli::tree::{RunStatus, RunTree};
//! use tinyagents_core::{Event, EventKind, RunId, Usage, Cost};
//!
//! let root = RunId::new();
//! let ev = |seq, kind| Event {
//!     root_run_id: root, parent_run_id: None, run_id: root, depth: 0, seq, timestamp_us: 1_000 + seq, kind,
//! };
//! let mut tree = RunTree::new();
//! tree.apply(&ev(0, EventKind::RunStarted { name: "boss".into() }));
//! tree.apply(&ev(1, EventKind::ModelCallCompleted {
//!     model: "m".into(), turn: 0, usage: Usage::call(10, 5), cost: Cost(7), tool_calls: 0,
//! }));
//! tree.apply(&ev(2, EventKind::RunCompleted {
//!     usage: Usage::call(10, 5), total_usage: Usage::call(10, 5), total_cost: Cost(7), failures: 0,
//! }));
//! let node = tree.get(root).unwrap();
//! assert_eq!(node.status, RunStatus::Done);
//! assert_eq!(tree.stats().usage.total_tokens(), 15);
//! ```

pub mod render;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tinyagents_core::{Cost, Event, EventKind, LimitKind, RunId, RunPath, TaskId, Usage};

/// How a run stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStatus {
    /// Still going.
    Running,
    /// Finished with an answer.
    Done,
    /// Ended with an error (the short reason).
    Failed(String),
}

/// A tool call that failed without a child run of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedCall {
    /// The tool (for a refused sub-agent: its name).
    pub tool: Arc<str>,
    /// Why, shortened (no path prefix).
    pub reason: String,
    /// The limit that refused it, when a limit did.
    pub refused: Option<LimitKind>,
}

#[derive(Debug, Clone)]
struct CallLink {
    tool: Arc<str>,
    linked: bool,
}

/// One run of the tree.
#[derive(Debug, Clone)]
pub struct RunNode {
    /// The agent's name (`?` until known).
    pub name: Arc<str>,
    /// The name as shown: `researcher`, then `researcher#2`, `researcher#3`
    /// for later siblings of the same name.
    pub label: Arc<str>,
    /// Labels from the root down.
    pub path: RunPath,
    /// The parent run.
    pub parent: Option<RunId>,
    /// 0 at the root.
    pub depth: u32,
    /// Child runs, in start order.
    pub children: Vec<RunId>,
    /// Running, done or failed.
    pub status: RunStatus,
    /// When it started (µs since the epoch).
    pub started_us: u64,
    /// When it ended.
    pub finished_us: Option<u64>,
    /// Usage of its own model calls so far.
    pub own_usage: Usage,
    /// Cost of its own model calls so far.
    pub own_cost: Cost,
    /// Subtree usage and cost as reported when the run ended.
    pub reported_total: Option<(Usage, Cost)>,
    /// A model call is in flight.
    pub thinking: bool,
    /// Turn of the latest model call.
    pub turn: u32,
    /// Tool calls in flight.
    pub tools_in_flight: u32,
    /// Child runs in flight.
    pub children_running: u32,
    /// Failed tool calls of this run (with or without a child run).
    pub failed_call_count: u32,
    /// Failed tool calls that had no child run (at most [`MAX_FAILED_CALLS_KEPT`]).
    pub failed_calls: Vec<FailedCall>,
    /// Why this agent exists, when a compiled blueprint node said so.
    pub rationale: Option<Arc<str>>,
    /// The end of what the current model call has streamed so far
    /// (whitespace collapsed, at most [`STREAM_TAIL`] characters); empty
    /// when the model does not stream.
    pub streamed: String,
    calls: HashMap<Arc<str>, CallLink>,
    child_names: HashMap<Arc<str>, u32>,
    unlinked: HashMap<Arc<str>, VecDeque<Arc<str>>>,
    pending_refusal: Option<LimitKind>,
    /// Set when the run is a graph run (it emitted `GraphStarted`).
    pub graph: Option<GraphInfo>,
}

/// What the tree knows of a graph run: its supersteps and tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphInfo {
    /// The graph.
    pub graph_id: Arc<str>,
    /// The current (or last) superstep.
    pub step: u64,
    /// Supersteps completed.
    pub steps_done: u64,
    /// Running tasks: task id → node id, in start order.
    pub running: Vec<(TaskId, Arc<str>)>,
    /// Tasks finished.
    pub tasks_done: u64,
    /// Tasks failed.
    pub tasks_failed: u64,
    /// The node a task paused at, if the graph was interrupted.
    pub interrupted_at: Option<Arc<str>>,
}

/// Failed calls kept per run for display (the count is always exact).
pub const MAX_FAILED_CALLS_KEPT: usize = 8;

impl RunNode {
    fn new(name: Arc<str>, label: Arc<str>, path: RunPath, parent: Option<RunId>, depth: u32, started_us: u64) -> Self {
        Self {
            name,
            label,
            path,
            parent,
            depth,
            children: Vec::new(),
            status: RunStatus::Running,
            started_us,
            finished_us: None,
            own_usage: Usage::default(),
            own_cost: Cost::ZERO,
            reported_total: None,
            thinking: false,
            turn: 0,
            tools_in_flight: 0,
            children_running: 0,
            failed_call_count: 0,
            failed_calls: Vec::new(),
            calls: HashMap::new(),
            child_names: HashMap::new(),
            unlinked: HashMap::new(),
            pending_refusal: None,
            graph: None,
            rationale: None,
            streamed: String::new(),
        }
    }

    /// True while running.
    pub fn is_running(&self) -> bool {
        self.status == RunStatus::Running
    }

    /// Microseconds it has run (up to `now_us` while running).
    pub fn elapsed_us(&self, now_us: u64) -> u64 {
        self.finished_us.unwrap_or(now_us).saturating_sub(self.started_us)
    }
}

/// Counters over the whole tree, kept as events arrive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Runs seen.
    pub runs: u64,
    /// Runs still running.
    pub running: u64,
    /// Runs that ended with an error.
    pub failed_runs: u64,
    /// Root runs that ended with an error.
    pub failed_roots: u64,
    /// Tool calls that failed anywhere (a failed or refused sub-agent is a
    /// failed call of its parent).
    pub failed_calls: u64,
    /// Model calls completed.
    pub model_calls: u64,
    /// Usage of every model call.
    pub usage: Usage,
    /// Cost of every model call.
    pub cost: Cost,
}

impl TreeStats {
    /// Failures as the totals line counts them: failed tool calls anywhere,
    /// plus root runs that failed.
    pub fn failures(&self) -> u64 {
        self.failed_calls + self.failed_roots
    }
}

/// What an event changed, for views that print per change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing worth a line.
    None,
    /// A run started.
    Started(RunId),
    /// A run ended (see its status).
    Finished(RunId),
    /// A task of the graph run `run` started (node `node`).
    TaskStarted {
        /// The graph run.
        run: RunId,
        /// The task's node.
        node: Arc<str>,
    },
    /// A task of the graph run `run` ended.
    TaskFinished {
        /// The graph run.
        run: RunId,
        /// The task's node.
        node: Arc<str>,
        /// The error, if it failed.
        error: Option<String>,
    },
    /// A tool call of `run` failed without a child run of its own.
    CallFailed {
        /// The calling run.
        run: RunId,
        /// The failure.
        call: FailedCall,
    },
}

/// The tree of runs (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct RunTree {
    nodes: HashMap<RunId, RunNode>,
    /// Rationale of compiled nodes, by (graph run, node name): given to the
    /// child runs of that node as they appear.
    rationales: HashMap<(RunId, Arc<str>), Arc<str>>,
    roots: Vec<RunId>,
    stats: TreeStats,
    first_us: Option<u64>,
}

/// One line of the tree in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    /// A run.
    Run(RunId),
    /// The `index`th failed call of `run`.
    FailedCall {
        /// The calling run.
        run: RunId,
        /// Index in its `failed_calls`.
        index: usize,
    },
}

impl RunTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The run `id`.
    pub fn get(&self, id: RunId) -> Option<&RunNode> {
        self.nodes.get(&id)
    }

    /// Root runs, in start order.
    pub fn roots(&self) -> &[RunId] {
        &self.roots
    }

    /// Number of runs.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True before the first run.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Counters over the whole tree.
    pub fn stats(&self) -> TreeStats {
        self.stats
    }

    /// Timestamp of the first event (µs since the epoch).
    pub fn first_timestamp_us(&self) -> Option<u64> {
        self.first_us
    }

    /// Folds one event in. O(1) amortized.
    pub fn apply(&mut self, event: &Event) -> Change {
        self.first_us.get_or_insert(event.timestamp_us);
        let id = event.run_id;
        let ts = event.timestamp_us;
        match &event.kind {
            EventKind::RunStarted { name } => {
                if let Some(node) = self.nodes.get(&id) {
                    // Known from the parent's SubAgentStarted (same name), or
                    // a placeholder named `?` that now learns its name.
                    if node.name != *name {
                        let parent_path = node.parent.and_then(|p| self.nodes.get(&p)).map(|p| p.path.clone());
                        if let Some(node) = self.nodes.get_mut(&id) {
                            node.path = match parent_path {
                                Some(pp) => pp.child(name.clone()),
                                None => RunPath::root(name.clone()),
                            };
                            node.name = name.clone();
                            node.label = name.clone();
                        }
                    }
                } else {
                    self.insert(id, name.clone(), event.parent_run_id, event.depth, ts);
                }
                Change::Started(id)
            }
            EventKind::SubAgentStarted {
                name,
                child_run_id,
                child_depth,
            } => {
                self.ensure(event);
                if let Some(parent) = self.nodes.get_mut(&id) {
                    parent.children_running += 1;
                    parent.link_call(name);
                }
                if !self.nodes.contains_key(child_run_id) {
                    self.insert(*child_run_id, name.clone(), Some(id), *child_depth, ts);
                }
                Change::None
            }
            EventKind::SubAgentCompleted {
                child_run_id,
                ok,
                usage,
                cost,
                ..
            } => {
                self.ensure(event);
                if let Some(parent) = self.nodes.get_mut(&id) {
                    parent.children_running = parent.children_running.saturating_sub(1);
                }
                let closed = self.nodes.get_mut(child_run_id).is_some_and(|child| {
                    child.reported_total.get_or_insert((*usage, *cost));
                    child.is_running()
                });
                if closed {
                    let status = if *ok {
                        RunStatus::Done
                    } else {
                        RunStatus::Failed("failed".into())
                    };
                    return self.finish(*child_run_id, status, ts, None);
                }
                Change::None
            }
            EventKind::RunCompleted {
                total_usage,
                total_cost,
                ..
            } => {
                self.ensure(event);
                self.finish(id, RunStatus::Done, ts, Some((*total_usage, *total_cost)))
            }
            EventKind::RunFailed {
                error,
                total_usage,
                total_cost,
            } => {
                self.ensure(event);
                let status = RunStatus::Failed(short_reason(error).to_string());
                self.finish(id, status, ts, Some((*total_usage, *total_cost)))
            }
            EventKind::ModelCallStarted { turn, .. } => {
                let node = self.ensure(event);
                node.thinking = true;
                node.turn = *turn;
                node.streamed.clear();
                Change::None
            }
            EventKind::ModelDelta { delta, .. } => {
                let piece = match delta {
                    tinyagents_core::ModelDelta::Text { text } => text,
                    tinyagents_core::ModelDelta::ToolCall { arguments, .. } => arguments,
                };
                let node = self.ensure(event);
                append_tail(&mut node.streamed, piece);
                Change::None
            }
            EventKind::ModelCallCompleted { usage, cost, .. } => {
                self.stats.model_calls += 1;
                self.stats.usage += *usage;
                self.stats.cost += *cost;
                let node = self.ensure(event);
                node.thinking = false;
                node.own_usage += *usage;
                node.own_cost += *cost;
                Change::None
            }
            EventKind::ToolCallStarted { call_id, tool } => {
                let node = self.ensure(event);
                node.tools_in_flight += 1;
                node.calls.insert(
                    call_id.clone(),
                    CallLink {
                        tool: tool.clone(),
                        linked: false,
                    },
                );
                node.unlinked
                    .entry(tool.clone())
                    .or_default()
                    .push_back(call_id.clone());
                Change::None
            }
            EventKind::ToolCallCompleted { call_id, tool, error } => {
                let (linked, refused) = {
                    let node = self.ensure(event);
                    node.tools_in_flight = node.tools_in_flight.saturating_sub(1);
                    let linked = match node.calls.remove(call_id) {
                        Some(link) => {
                            if !link.linked {
                                node.unlink(&link.tool, call_id);
                            }
                            link.linked
                        }
                        None => false,
                    };
                    (linked, node.pending_refusal.take())
                };
                let Some(error) = error else { return Change::None };
                self.stats.failed_calls += 1;
                let call = FailedCall {
                    tool: tool.clone(),
                    reason: short_reason(error).to_string(),
                    refused,
                };
                if let Some(node) = self.nodes.get_mut(&id) {
                    node.failed_call_count += 1;
                    if !linked && node.failed_calls.len() < MAX_FAILED_CALLS_KEPT {
                        node.failed_calls.push(call.clone());
                    }
                }
                if linked {
                    Change::None
                } else {
                    Change::CallFailed { run: id, call }
                }
            }
            EventKind::BudgetExceeded { limit } => {
                let node = self.ensure(event);
                // A limit hit while tool calls are in flight is a refused
                // spawn; its failed tool call follows in the same step.
                if node.tools_in_flight > 0 && !node.thinking {
                    node.pending_refusal = Some(*limit);
                }
                Change::None
            }
            EventKind::GraphStarted { graph_id, .. } => {
                let fresh = !self.nodes.contains_key(&id);
                let node = self.ensure(event);
                node.graph = Some(GraphInfo {
                    graph_id: graph_id.0.clone(),
                    ..GraphInfo::default()
                });
                if fresh || node.name.as_ref() == "?" {
                    node.name = graph_id.0.clone();
                    node.label = graph_id.0.clone();
                }
                Change::Started(id)
            }
            EventKind::SuperstepStarted { step, .. } => {
                if let Some(g) = self.ensure(event).graph.as_mut() {
                    g.step = *step;
                }
                Change::None
            }
            EventKind::SuperstepCompleted { .. } => {
                if let Some(g) = self.ensure(event).graph.as_mut() {
                    g.steps_done += 1;
                }
                Change::None
            }
            EventKind::GraphTaskStarted { node_id, task_id, .. } => {
                let node = self.ensure(event);
                let g = node.graph.get_or_insert_with(GraphInfo::default);
                g.running.push((*task_id, node_id.0.clone()));
                Change::TaskStarted {
                    run: id,
                    node: node_id.0.clone(),
                }
            }
            EventKind::GraphTaskCompleted {
                node_id,
                task_id,
                ok,
                error,
                ..
            } => {
                let node = self.ensure(event);
                let g = node.graph.get_or_insert_with(GraphInfo::default);
                if let Some(pos) = g.running.iter().position(|(t, _)| t == task_id) {
                    g.running.remove(pos);
                }
                g.tasks_done += 1;
                if !*ok {
                    g.tasks_failed += 1;
                }
                Change::TaskFinished {
                    run: id,
                    node: node_id.0.clone(),
                    error: if *ok {
                        None
                    } else {
                        Some(error.clone().unwrap_or_else(|| "failed".into()))
                    },
                }
            }
            EventKind::GraphInterrupted { node_id, .. } => {
                if let Some(g) = self.ensure(event).graph.as_mut() {
                    g.interrupted_at = Some(node_id.0.clone());
                }
                Change::None
            }
            EventKind::GraphCompleted { status, error, .. } => {
                if let Some(g) = self.ensure(event).graph.as_mut() {
                    g.running.clear();
                }
                // A graph run that is its tree's root (`invoke`) ends here; a
                // child graph run is closed by its parent's SubAgentCompleted.
                let is_root = self.nodes.get(&id).is_some_and(|n| n.parent.is_none());
                match (is_root, status.as_ref()) {
                    (true, "failed") => {
                        let reason = error.as_deref().map_or("failed", short_reason).to_string();
                        self.finish(id, RunStatus::Failed(reason), ts, None)
                    }
                    (true, _) => self.finish(id, RunStatus::Done, ts, None),
                    _ => Change::None,
                }
            }
            // Streaming deltas, session reuse, steering and checkpoint
            // events do not change the shape of the tree.
            EventKind::NodeRationale { node_id, rationale, .. } => {
                let name: Arc<str> = node_id.0.clone();
                if let Some(graph) = self.nodes.get(&id) {
                    let children: Vec<RunId> = graph.children.clone();
                    for c in children {
                        if let Some(child) = self.nodes.get_mut(&c)
                            && child.name == name
                            && child.rationale.is_none()
                        {
                            child.rationale = Some(rationale.clone());
                        }
                    }
                }
                self.rationales.insert((id, name), rationale.clone());
                Change::None
            }
            _ => Change::None,
        }
    }

    fn insert(&mut self, id: RunId, name: Arc<str>, parent: Option<RunId>, depth: u32, ts: u64) -> &mut RunNode {
        let (label, path) = match parent.and_then(|p| self.nodes.get_mut(&p)) {
            Some(p) => {
                p.children.push(id);
                let n = p.child_names.entry(name.clone()).or_insert(0);
                *n += 1;
                let label: Arc<str> = if *n > 1 {
                    format!("{name}#{n}").into()
                } else {
                    name.clone()
                };
                let path = p.path.child(label.clone());
                (label, path)
            }
            None => {
                self.roots.push(id);
                (name.clone(), RunPath::root(name.clone()))
            }
        };
        self.stats.runs += 1;
        self.stats.running += 1;
        // The node's rationale: by the child's name, or else by the node the
        // parent graph is running (a map or reduce runs its body agent
        // under the agent's own name).
        let rationale = parent.and_then(|p| {
            self.rationales.get(&(p, name.clone())).cloned().or_else(|| {
                let graph = self.nodes.get(&p)?.graph.as_ref()?;
                let (_, node) = graph.running.first()?;
                if graph.running.iter().all(|(_, n)| n == node) {
                    self.rationales.get(&(p, node.clone())).cloned()
                } else {
                    None
                }
            })
        });
        let node = self
            .nodes
            .entry(id)
            .or_insert_with(|| RunNode::new(name, label, path, parent, depth, ts));
        if node.rationale.is_none() {
            node.rationale = rationale;
        }
        node
    }

    /// The node of the event's run, created (name unknown) if this is the
    /// first event seen from it.
    fn ensure(&mut self, event: &Event) -> &mut RunNode {
        if !self.nodes.contains_key(&event.run_id) {
            self.insert(
                event.run_id,
                "?".into(),
                event.parent_run_id,
                event.depth,
                event.timestamp_us,
            );
        }
        self.nodes.entry(event.run_id).or_insert_with(|| {
            RunNode::new(
                "?".into(),
                "?".into(),
                RunPath::root("?"),
                None,
                event.depth,
                event.timestamp_us,
            )
        })
    }

    fn finish(&mut self, id: RunId, status: RunStatus, ts: u64, total: Option<(Usage, Cost)>) -> Change {
        let Some(node) = self.nodes.get_mut(&id) else {
            return Change::None;
        };
        if let Some(t) = total {
            node.reported_total = Some(t);
        }
        if !node.is_running() {
            return Change::None;
        }
        if matches!(status, RunStatus::Failed(_)) {
            self.stats.failed_runs += 1;
            if node.parent.is_none() {
                self.stats.failed_roots += 1;
            }
        }
        node.status = status;
        node.finished_us = Some(ts);
        node.thinking = false;
        self.stats.running = self.stats.running.saturating_sub(1);
        Change::Finished(id)
    }

    /// Usage and cost of every run's subtree: its reported total once it
    /// ended, else its own usage plus its children's subtrees. One pass.
    pub fn subtree_totals(&self) -> HashMap<RunId, (Usage, Cost)> {
        let order = self.preorder();
        let mut acc: HashMap<RunId, (Usage, Cost)> = order
            .iter()
            .filter_map(|id| self.nodes.get(id).map(|n| (*id, (n.own_usage, n.own_cost))))
            .collect();
        for id in order.iter().rev() {
            let Some(node) = self.nodes.get(id) else { continue };
            let mine = match node.reported_total {
                Some(t) => t,
                None => acc.get(id).copied().unwrap_or_default(),
            };
            acc.insert(*id, mine);
            if let Some(parent) = node.parent.and_then(|p| acc.get_mut(&p)) {
                parent.0 += mine.0;
                parent.1 += mine.1;
            }
        }
        acc
    }

    /// Run ids in display order (each run before its children), iteratively.
    pub fn preorder(&self) -> Vec<RunId> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack: Vec<RunId> = self.roots.iter().rev().copied().collect();
        while let Some(id) = stack.pop() {
            out.push(id);
            if let Some(node) = self.nodes.get(&id) {
                stack.extend(node.children.iter().rev().copied());
            }
        }
        out
    }

    /// Display rows: each run, then its failed calls, then its children.
    pub fn rows(&self) -> Vec<Row> {
        let mut out = Vec::with_capacity(self.nodes.len());
        for id in self.preorder() {
            out.push(Row::Run(id));
            if let Some(node) = self.nodes.get(&id) {
                out.extend((0..node.failed_calls.len()).map(|index| Row::FailedCall { run: id, index }));
            }
        }
        out
    }
}

impl RunNode {
    /// Marks the oldest unlinked call of `tool` as having spawned a child.
    fn link_call(&mut self, tool: &Arc<str>) {
        let Some(queue) = self.unlinked.get_mut(tool) else {
            return;
        };
        while let Some(call_id) = queue.pop_front() {
            if let Some(link) = self.calls.get_mut(&call_id) {
                link.linked = true;
                break;
            }
        }
        if queue.is_empty() {
            self.unlinked.remove(tool);
        }
    }

    fn unlink(&mut self, tool: &Arc<str>, call_id: &Arc<str>) {
        let Some(queue) = self.unlinked.get_mut(tool) else {
            return;
        };
        if let Some(pos) = queue.iter().position(|c| c == call_id) {
            queue.remove(pos);
        }
        if queue.is_empty() {
            self.unlinked.remove(tool);
        }
    }
}

/// Characters of streamed text kept per run ([`RunNode::streamed`]).
pub const STREAM_TAIL: usize = 96;

/// Appends `piece` to `tail` with runs of whitespace collapsed to one space,
/// keeping only the last [`STREAM_TAIL`] characters.
pub fn append_tail(tail: &mut String, piece: &str) {
    for c in piece.chars() {
        if c.is_whitespace() {
            if !tail.is_empty() && !tail.ends_with(' ') {
                tail.push(' ');
            }
        } else if !c.is_control() {
            tail.push(c);
        }
    }
    let extra = tail.chars().count().saturating_sub(STREAM_TAIL);
    if extra > 0 {
        let cut = tail.char_indices().nth(extra).map_or(tail.len(), |(i, _)| i);
        tail.drain(..cut);
    }
}

/// An error message without the prefixes the tree already shows: the
/// tool-error class (`error (ChildRun): `), `sub-agent failed: ` and the
/// run path and depth (`a/b (depth 1): `).
pub fn short_reason(message: &str) -> &str {
    let mut s = message.trim();
    loop {
        let before = s;
        if let Some(rest) = s.strip_prefix("error (")
            && let Some(end) = rest.find("): ")
        {
            s = &rest[end + 3..];
        }
        if let Some(rest) = s.strip_prefix("sub-agent failed: ") {
            s = rest;
        }
        if let Some(at) = s.find(" (depth ")
            && !s[..at].contains(' ')
            && let Some(end) = s[at..].find("): ")
        {
            s = &s[at + end + 3..];
        }
        if s == before {
            return s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reason_strips_class_wrapper_and_path() {
        let full = "error (ChildRun): sub-agent failed: orchestrator/planner/detailer (depth 2): sub-agent depth 2 exceeds max_depth 1; delegate less deeply or answer directly";
        assert_eq!(
            short_reason(full),
            "sub-agent depth 2 exceeds max_depth 1; delegate less deeply or answer directly"
        );
        assert_eq!(
            short_reason("orchestrator (depth 0): model call failed: boom"),
            "model call failed: boom"
        );
        assert_eq!(
            short_reason("plain message (depth 3): kept"),
            "plain message (depth 3): kept"
        );
    }
}
