//! The records a graph checkpoint is made of.
//!
//! A checkpoint is split so that storage grows linearly with the work done:
//!
//! * [`CheckpointRecord`]: one per superstep. It holds the channel
//!   *versions* (not values), the tasks of the next step, the recursion
//!   stack, child run references, interrupts and pending steering.
//! * [`ChannelValue`]: one per channel that *changed* in the step. A
//!   channel's version is the id of the checkpoint that wrote it, so the
//!   value of channel `c` at checkpoint `k` is the row `(c, versions[c])`,
//!   and an unchanged channel costs nothing.
//! * [`TaskWritesRecord`]: the result of one finished task of the next step,
//!   saved as the task finishes (batched), so a crash mid-step loses no
//!   finished task and a resume re-runs only unfinished ones.
//!
//! Every stored row carries [`FORMAT_VERSION`]; a row written by a newer
//! format is refused with [`StoreError::NewerFormat`](crate::StoreError)
//! and nothing is changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use tinyagents_core::{Cost, GraphId, RecursionFrame, RunId, TaskId, Usage};

/// The format written by this version of the store.
pub const FORMAT_VERSION: u32 = 1;

/// A task scheduled for the next superstep.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskRecord {
    /// The node to run (`Arc`: a million tasks share one name).
    #[serde(rename = "n")]
    pub node: Arc<str>,
    /// The `Send` payload; `None` for a task that reads the graph state.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

/// What kind of child run a task ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildRunKind {
    /// A harness agent (a `SubAgentNode`).
    Subagent,
    /// A graph (a `SubgraphNode`).
    Subgraph,
}

/// A reference to a child run (sub-agent or subgraph) that a task ran.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChildRunRef {
    /// The task that ran it.
    pub task_id: TaskId,
    /// The task's node.
    pub node: Arc<str>,
    /// What the child is.
    pub kind: ChildRunKind,
    /// The child run.
    pub run_id: RunId,
    /// Its parent (the graph run that owns the task).
    pub parent_run_id: RunId,
    /// Its depth in the run tree.
    pub depth: u32,
    /// True when it succeeded.
    pub ok: bool,
    /// Usage of its subtree.
    #[serde(default)]
    pub usage: Usage,
    /// Cost of its subtree.
    #[serde(default)]
    pub cost: Cost,
}

/// A pause: a task (or a sub-agent or subgraph inside it) asked for a value.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InterruptRecord {
    /// The id a resume value is addressed to.
    pub id: String,
    /// The paused task of this graph run.
    pub task_id: TaskId,
    /// Its node.
    pub node: String,
    /// The namespace where the interrupt was raised (deeper than this run's
    /// when it came from a subgraph).
    pub namespace: String,
    /// The value shown to the human or supervisor.
    pub value: Value,
    /// The run that raised it (a sub-agent's run, at any depth).
    #[serde(default)]
    pub run_id: Option<RunId>,
    /// Depth of that run.
    #[serde(default)]
    pub depth: u32,
}

/// A route a task took besides the static edges: `Command` gotos and sends.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RouteRecord {
    /// The target node (`__end__` for the end).
    pub node: String,
    /// The `Send` payload, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

/// The saved result of one task.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskWritesRecord {
    /// Position of the task in the step.
    #[serde(rename = "i")]
    pub index: u32,
    /// Channel writes, in the order the task made them.
    #[serde(rename = "w", default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<(Arc<str>, Value)>,
    /// Everything else a task may produce (rare, so boxed: a million
    /// trivial tasks stay small).
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Box<TaskExtra>>,
}

/// The less common parts of a task's result.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskExtra {
    /// Gotos and sends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteRecord>,
    /// Jumps to nodes of the parent graph.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_routes: Vec<RouteRecord>,
    /// Writes for the parent graph's channels (with a parent jump).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_writes: Vec<(Arc<str>, Value)>,
    /// Child runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub child_runs: Vec<ChildRunRef>,
    /// Set when the task paused instead of finishing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interrupts: Vec<InterruptRecord>,
}

/// A channel value written by a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelValue {
    /// The channel.
    pub channel: String,
    /// Its version: the id of the checkpoint that wrote it.
    pub version: u64,
    /// The value.
    pub value: Arc<Value>,
}

/// One checkpoint (see the module docs).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointRecord {
    /// Format of the record.
    pub format: u32,
    /// The thread (one durable conversation with a graph).
    pub thread_id: String,
    /// Namespace: empty for the outermost graph, `node:task` segments joined
    /// by `|` for subgraph runs.
    pub namespace: String,
    /// Unique per thread and namespace, increasing.
    pub checkpoint_id: u64,
    /// The checkpoint this one follows (forks branch from older ones).
    pub parent_id: Option<u64>,
    /// The superstep this checkpoint follows (0: the input).
    pub step: u64,
    /// `input`, `loop`, `fork` or `update`.
    pub source: String,
    /// The graph.
    pub graph_id: GraphId,
    /// The graph run that wrote it.
    pub run_id: RunId,
    /// Version of every channel (the id of the checkpoint that wrote it).
    pub channel_versions: BTreeMap<String, u64>,
    /// The recursion stack of the run, outermost first.
    pub recursion_stack: Vec<RecursionFrame>,
    /// Child runs started by the step this checkpoint follows.
    pub child_runs: Vec<ChildRunRef>,
    /// Interrupts the run is paused on.
    #[serde(default)]
    pub interrupts: Vec<InterruptRecord>,
    /// Steering commands not yet applied (the steering hook).
    #[serde(default)]
    pub pending_steering: Vec<Value>,
    /// Runtime state of the graph that is not a channel (join barriers,
    /// node visit counts, flags).
    #[serde(default)]
    pub extra: Value,
}

/// What [`list_checkpoints`](crate::Checkpointer::list_checkpoints) returns: a
/// checkpoint without its values and task payloads.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointSummary {
    /// The checkpoint.
    pub checkpoint_id: u64,
    /// Its parent.
    pub parent_id: Option<u64>,
    /// The superstep it follows.
    pub step: u64,
    /// `input`, `loop`, `fork` or `update`.
    pub source: String,
    /// Number of tasks of the next step.
    pub next_tasks: usize,
    /// Interrupts it is paused on.
    pub interrupts: usize,
}

/// A checkpoint as loaded: the record, the channel values it names, and the
/// saved results of next-step tasks that already finished.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedCheckpoint {
    /// The record.
    pub record: CheckpointRecord,
    /// Tasks of the next superstep, in order; empty when the run is done.
    pub next_tasks: Vec<TaskRecord>,
    /// Channel values at this checkpoint.
    pub values: BTreeMap<String, Value>,
    /// Results saved for the next step's tasks; a later result for the same
    /// task index replaces an earlier one.
    pub writes: Vec<TaskWritesRecord>,
}

/// Counters of what a checkpointer wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Checkpoint records written.
    pub checkpoints: u64,
    /// Channel values written.
    pub channel_values: u64,
    /// Task results written.
    pub task_writes: u64,
    /// Write batches (transactions of task results).
    pub write_batches: u64,
    /// Payload bytes written (serialized records and values).
    pub bytes: u64,
}
