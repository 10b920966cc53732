//! Events: one ordered stream per root run.
//!
//! Every [`Event`] carries the root, parent and own run id, the depth, a
//! sequence number that is unique and increasing per root (a total order of
//! the whole tree, even across threads) and a timestamp. Sinks receive events
//! synchronously on the emitting task; a sink that does I/O should hand them
//! off (a channel, a batch buffer). A sink that reports
//! [`EventSink::enabled`] `false` costs nothing: no event is even built.

use std::sync::{Arc, Mutex};

use crate::budget::LimitKind;
use crate::ids::RunId;
use crate::recursion::{GraphId, NodeId, TaskId};
use crate::usage::{Cost, Usage};

/// What happened.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A run began.
    RunStarted {
        /// The agent's name.
        name: Arc<str>,
    },
    /// A run finished successfully.
    RunCompleted {
        /// Usage of this run's own model calls.
        usage: Usage,
        /// Usage of this run and all its descendants.
        total_usage: Usage,
        /// Cost of this run and all its descendants.
        total_cost: Cost,
        /// Failures recorded by this run (tool errors, failed children).
        failures: u32,
    },
    /// A run ended with an error.
    RunFailed {
        /// The error, rendered.
        error: String,
        /// Usage of this run and all its descendants.
        total_usage: Usage,
        /// Cost of this run and all its descendants.
        total_cost: Cost,
    },
    /// A model call began.
    ModelCallStarted {
        /// Model id.
        model: Arc<str>,
        /// Turn number within the run, from 0.
        turn: u32,
    },
    /// A model call returned.
    ModelCallCompleted {
        /// Model id.
        model: Arc<str>,
        /// Turn number within the run, from 0.
        turn: u32,
        /// Usage of this call.
        usage: Usage,
        /// Cost of this call.
        cost: Cost,
        /// Number of tool calls the model asked for.
        tool_calls: u32,
    },
    /// A streamed piece of a model reply, from the run that produced it.
    ModelDelta {
        /// Turn number within the run, from 0.
        turn: u32,
        /// The piece.
        delta: crate::model::ModelDelta,
    },
    /// A tool call began.
    ToolCallStarted {
        /// Call id.
        call_id: Arc<str>,
        /// Tool name.
        tool: Arc<str>,
    },
    /// A tool call finished.
    ToolCallCompleted {
        /// Call id.
        call_id: Arc<str>,
        /// Tool name.
        tool: Arc<str>,
        /// The error, if the call failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A child run was spawned (emitted by the parent).
    SubAgentStarted {
        /// The sub-agent's name.
        name: Arc<str>,
        /// The child run.
        child_run_id: RunId,
        /// The child's depth (parent depth + 1).
        child_depth: u32,
    },
    /// A child run ended (emitted by the parent).
    SubAgentCompleted {
        /// The sub-agent's name.
        name: Arc<str>,
        /// The child run.
        child_run_id: RunId,
        /// The child's depth.
        child_depth: u32,
        /// True when the child succeeded.
        ok: bool,
        /// Usage of the child's subtree.
        usage: Usage,
        /// Cost of the child's subtree.
        cost: Cost,
    },
    /// A retained sub-agent was sent another message (a `SubAgentSession`).
    SubAgentReused {
        /// The sub-agent's name.
        name: Arc<str>,
        /// The run of this send.
        child_run_id: RunId,
        /// How many sends this session has seen, this one included.
        sends: u32,
    },
    /// A steering request changed stage (`steering.requested`, `.accepted`,
    /// `.rejected`, `.delivered`, `.applied`), emitted by the target run
    /// (by the root when the target is unknown).
    Steering {
        /// The stage.
        phase: crate::steering::SteeringPhase,
        /// Ids, actor, command, policy, correlation.
        info: Box<crate::steering::SteeringInfo>,
    },
    /// A child of this run received (`subagent.steering_received`) or had
    /// rejected (`subagent.steering_rejected`) a steering request: the
    /// parent's roll-up view of child steering.
    SubAgentSteering {
        /// True when accepted, false when rejected.
        accepted: bool,
        /// Ids, actor, command, policy, correlation.
        info: Box<crate::steering::SteeringInfo>,
    },
    /// A limit stopped the run, or refused a spawn.
    BudgetExceeded {
        /// Which limit.
        limit: LimitKind,
    },
    /// A graph run began (a graph run is a run; subgraph runs are its children).
    GraphStarted {
        /// The graph.
        graph_id: GraphId,
        /// Namespace of the run (`node:task` segments joined by `|`; empty at the outermost graph).
        namespace: Arc<str>,
        /// The checkpoint thread, when checkpointing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_id: Option<Arc<str>>,
        /// The checkpoint the run resumed from, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resumed_from: Option<u64>,
    },
    /// A graph run ended.
    GraphCompleted {
        /// The graph.
        graph_id: GraphId,
        /// Namespace of the run.
        namespace: Arc<str>,
        /// Supersteps run.
        steps: u64,
        /// `done`, `interrupted` or `failed`.
        status: Arc<str>,
        /// The error, when failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A superstep began: its tasks run concurrently.
    SuperstepStarted {
        /// The graph.
        graph_id: GraphId,
        /// Namespace of the run.
        namespace: Arc<str>,
        /// The step number.
        step: u64,
        /// Tasks in the step.
        tasks: u64,
    },
    /// A superstep's writes were applied.
    SuperstepCompleted {
        /// The graph.
        graph_id: GraphId,
        /// Namespace of the run.
        namespace: Arc<str>,
        /// The step number.
        step: u64,
        /// Tasks that ran in the step.
        tasks: u64,
        /// Channels whose value changed.
        changed_channels: u32,
    },
    /// A graph task began.
    GraphTaskStarted {
        /// The graph.
        graph_id: GraphId,
        /// The task's node.
        node_id: NodeId,
        /// The task.
        task_id: TaskId,
        /// Namespace of the graph run.
        namespace: Arc<str>,
    },
    /// A graph task ended.
    GraphTaskCompleted {
        /// The graph.
        graph_id: GraphId,
        /// The task's node.
        node_id: NodeId,
        /// The task.
        task_id: TaskId,
        /// Namespace of the graph run.
        namespace: Arc<str>,
        /// True when the task succeeded.
        ok: bool,
        /// The error, when it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// Child runs the task ran (sub-agent or subgraph), in order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        child_run_ids: Vec<RunId>,
        /// True when the result came from the sub-agent cache.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cached: bool,
    },
    /// A checkpoint was written after a superstep.
    CheckpointSaved {
        /// The graph.
        graph_id: GraphId,
        /// Namespace of the run.
        namespace: Arc<str>,
        /// The checkpoint thread.
        thread_id: Arc<str>,
        /// The checkpoint.
        checkpoint_id: u64,
        /// The superstep it follows.
        step: u64,
    },
    /// A finished task's writes are durable: after a crash it is not re-run.
    TaskWritesSaved {
        /// The graph.
        graph_id: GraphId,
        /// The task's node.
        node_id: NodeId,
        /// The task.
        task_id: TaskId,
        /// Namespace of the run.
        namespace: Arc<str>,
        /// The checkpoint the task was scheduled from.
        checkpoint_id: u64,
    },
    /// A graph task (or a sub-agent inside it) paused with a value.
    GraphInterrupted {
        /// The graph.
        graph_id: GraphId,
        /// The paused task's node.
        node_id: NodeId,
        /// The paused task.
        task_id: TaskId,
        /// Namespace of the run.
        namespace: Arc<str>,
        /// The id a resume value is addressed to.
        interrupt_id: Arc<str>,
        /// The value given to the human or supervisor.
        value: serde_json::Value,
    },
    /// Custom data a graph node streamed.
    GraphCustom {
        /// The graph.
        graph_id: GraphId,
        /// The node.
        node_id: NodeId,
        /// The task.
        task_id: TaskId,
        /// Namespace of the run.
        namespace: Arc<str>,
        /// The data.
        data: serde_json::Value,
    },
    /// A compiled node (from an agent description) is about to run; carries
    /// the description's rationale so it shows in the run tree.
    NodeRationale {
        /// The graph.
        graph_id: GraphId,
        /// The node.
        node_id: NodeId,
        /// Namespace of the graph run.
        namespace: Arc<str>,
        /// The node's kind (`agent`, `map`, `reduce`, `router`, `join`, `subgraph`).
        kind: Arc<str>,
        /// Why the node exists.
        rationale: Arc<str>,
    },
}

impl EventKind {
    /// The class a sink may decline this kind by
    /// ([`EventSink::accepts_class`]); `None` for the kinds every sink gets.
    pub fn class(&self) -> Option<EventClass> {
        match self {
            Self::ModelCallStarted { .. } | Self::ModelCallCompleted { .. } => Some(EventClass::ModelCall),
            Self::ToolCallStarted { .. } => Some(EventClass::ToolCallStarted),
            Self::ModelDelta { .. } => Some(EventClass::ModelDelta),
            _ => None,
        }
    }

    /// Short name of the kind (`run_started`, `sub_agent_started`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Self::RunStarted { .. } => "run_started",
            Self::RunCompleted { .. } => "run_completed",
            Self::RunFailed { .. } => "run_failed",
            Self::ModelCallStarted { .. } => "model_call_started",
            Self::ModelCallCompleted { .. } => "model_call_completed",
            Self::ModelDelta { .. } => "model_delta",
            Self::ToolCallStarted { .. } => "tool_call_started",
            Self::ToolCallCompleted { .. } => "tool_call_completed",
            Self::SubAgentStarted { .. } => "sub_agent_started",
            Self::SubAgentCompleted { .. } => "sub_agent_completed",
            Self::SubAgentReused { .. } => "sub_agent_reused",
            Self::Steering { phase, .. } => match phase {
                crate::steering::SteeringPhase::Requested => "steering.requested",
                crate::steering::SteeringPhase::Accepted => "steering.accepted",
                crate::steering::SteeringPhase::Rejected => "steering.rejected",
                crate::steering::SteeringPhase::Delivered => "steering.delivered",
                crate::steering::SteeringPhase::Applied => "steering.applied",
            },
            Self::SubAgentSteering { accepted: true, .. } => "subagent.steering_received",
            Self::SubAgentSteering { accepted: false, .. } => "subagent.steering_rejected",
            Self::BudgetExceeded { .. } => "budget_exceeded",
            Self::GraphStarted { .. } => "graph_started",
            Self::GraphCompleted { .. } => "graph_completed",
            Self::SuperstepStarted { .. } => "superstep_started",
            Self::SuperstepCompleted { .. } => "superstep_completed",
            Self::GraphTaskStarted { .. } => "graph_task_started",
            Self::GraphTaskCompleted { .. } => "graph_task_completed",
            Self::CheckpointSaved { .. } => "checkpoint_saved",
            Self::TaskWritesSaved { .. } => "task_writes_saved",
            Self::GraphInterrupted { .. } => "graph_interrupted",
            Self::GraphCustom { .. } => "graph_custom",
            Self::NodeRationale { .. } => "node_rationale",
        }
    }
}

/// One event of a run tree.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// Root of the tree.
    pub root_run_id: RunId,
    /// Parent of the emitting run (`None` at the root).
    pub parent_run_id: Option<RunId>,
    /// The emitting run.
    pub run_id: RunId,
    /// Depth of the emitting run.
    pub depth: u32,
    /// Sequence number, unique and increasing per root.
    pub seq: u64,
    /// Microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Receives events. Implemented for closures through [`FnSink`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event sink",
    label = "implement `EventSink` (emit) or wrap a closure with `FnSink::new`"
)]
pub trait EventSink: Send + Sync + 'static {
    /// Receives one event.
    fn emit(&self, event: Event);
    /// False when the sink discards everything: events are then not built.
    fn enabled(&self) -> bool {
        true
    }
    /// False when the sink would discard an event of `kind` (a detail-level
    /// filter): [`RunContext::emit`](crate::RunContext::emit) then does not
    /// build it (no clock read, no sequence number).
    fn accepts(&self, kind: &EventKind) -> bool {
        let _ = kind;
        true
    }
    /// False when the sink does not need a parent's `SubAgentStarted` and
    /// successful `SubAgentCompleted` about a child whose own start and end
    /// events reach this same sink (a trace store: they would repeat them).
    /// Spawners ask [`RunContext::parent_view_needed`].
    fn wants_parent_view(&self) -> bool {
        true
    }
    /// False when the sink would discard every event of `class` (a
    /// detail-level filter), known before the event is built: emitters ask
    /// first ([`RunContext::emit_class_with`](crate::RunContext::emit_class_with)),
    /// so such events cost nothing, and a sink that declines
    /// [`EventClass::ModelDelta`] gets model calls that are not streamed.
    fn accepts_class(&self, class: EventClass) -> bool {
        let _ = class;
        true
    }
}

/// The kinds of events a sink may decline by detail level, named before an
/// event is built (see [`EventSink::accepts_class`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventClass {
    /// `ModelCallStarted` and `ModelCallCompleted`.
    ModelCall,
    /// `ToolCallStarted` (a failed `ToolCallCompleted` is lifecycle).
    ToolCallStarted,
    /// `ModelDelta`: declining it turns streaming off.
    ModelDelta,
}

/// A shared sink.
pub type SharedSink = Arc<dyn EventSink>;

/// Discards events.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _: Event) {}
    fn enabled(&self) -> bool {
        false
    }
}

/// Keeps every event in memory; for tests and small runs.
#[derive(Debug, Default)]
pub struct CollectingSink(Mutex<Vec<Event>>);

impl CollectingSink {
    /// An empty collector.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Everything received so far, in arrival order.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Number of events received.
    pub fn len(&self) -> usize {
        self.0.lock().map(|v| v.len()).unwrap_or_default()
    }

    /// True when nothing was received.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl EventSink for CollectingSink {
    fn emit(&self, event: Event) {
        if let Ok(mut v) = self.0.lock() {
            v.push(event);
        }
    }
}

/// A sink that calls a closure.
pub struct FnSink<F>(F);

impl<F: Fn(Event) + Send + Sync + 'static> FnSink<F> {
    /// Wraps `f`.
    pub fn new(f: F) -> Arc<Self> {
        Arc::new(Self(f))
    }
}

impl<F: Fn(Event) + Send + Sync + 'static> EventSink for FnSink<F> {
    fn emit(&self, event: Event) {
        (self.0)(event);
    }
}

/// Sends every event to two sinks.
pub struct TeeSink(pub SharedSink, pub SharedSink);

impl EventSink for TeeSink {
    fn emit(&self, event: Event) {
        match (self.0.enabled(), self.1.enabled()) {
            (true, true) => {
                self.0.emit(event.clone());
                self.1.emit(event);
            }
            (true, false) => self.0.emit(event),
            (false, true) => self.1.emit(event),
            (false, false) => {}
        }
    }
    fn enabled(&self) -> bool {
        self.0.enabled() || self.1.enabled()
    }
    fn accepts(&self, kind: &EventKind) -> bool {
        (self.0.enabled() && self.0.accepts(kind)) || (self.1.enabled() && self.1.accepts(kind))
    }
    fn wants_parent_view(&self) -> bool {
        (self.0.enabled() && self.0.wants_parent_view()) || (self.1.enabled() && self.1.wants_parent_view())
    }
    fn accepts_class(&self, class: EventClass) -> bool {
        (self.0.enabled() && self.0.accepts_class(class)) || (self.1.enabled() && self.1.accepts_class(class))
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
