//! Steering data: who steers ([`Actor`]), what ([`SteeringCommand`]) and
//! where ([`SteeringTarget`]). The control plane that validates, delivers
//! and applies commands lives in `tinyagents-harness` (`steering`); these
//! types are here because events, messages and checkpoints carry them.

use std::sync::Arc;

use crate::ids::RunId;

/// Identifies one steering request across its events and checkpoints.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct CorrelationId(pub Arc<str>);

impl CorrelationId {
    /// A fresh id.
    pub fn new() -> Self {
        Self(format!("steer-{}", RunId::new()).into())
    }
}

impl Default for CorrelationId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who sent a steering command (provenance).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "actor", rename_all = "snake_case")]
pub enum Actor {
    /// A run of the same tree steering one of its descendants.
    Parent {
        /// The steering run.
        run_id: RunId,
    },
    /// A person, through a control surface (CLI, UI).
    Human {
        /// Who (a user name, a session id).
        id: Arc<str>,
    },
    /// A graph supervisor node.
    Supervisor {
        /// The node.
        node_id: Arc<str>,
    },
    /// Middleware in the harness.
    Middleware {
        /// Its name.
        name: Arc<str>,
    },
    /// A test.
    Test,
}

impl Actor {
    /// The actor's kind, for allowlists.
    pub fn kind(&self) -> ActorKind {
        match self {
            Self::Parent { .. } => ActorKind::Parent,
            Self::Human { .. } => ActorKind::Human,
            Self::Supervisor { .. } => ActorKind::Supervisor,
            Self::Middleware { .. } => ActorKind::Middleware,
            Self::Test => ActorKind::Test,
        }
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Parent { run_id } => write!(f, "parent run {}", run_id.short()),
            Self::Human { id } => write!(f, "human {id}"),
            Self::Supervisor { node_id } => write!(f, "supervisor node {node_id}"),
            Self::Middleware { name } => write!(f, "middleware {name}"),
            Self::Test => f.write_str("test"),
        }
    }
}

/// Kinds of actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// See [`Actor::Parent`].
    Parent,
    /// See [`Actor::Human`].
    Human,
    /// See [`Actor::Supervisor`].
    Supervisor,
    /// See [`Actor::Middleware`].
    Middleware,
    /// See [`Actor::Test`].
    Test,
}

/// What a steering command addresses, by run-tree metadata.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "target", rename_all = "snake_case")]
pub enum SteeringTarget {
    /// A run (typically an orchestrator).
    ParentRun {
        /// The run.
        run_id: RunId,
    },
    /// A child of a given parent (checked: the child must be the parent's).
    ChildRun {
        /// The parent.
        parent_run_id: RunId,
        /// The child.
        child_run_id: RunId,
    },
    /// A graph task of a run.
    Task {
        /// The graph run.
        run_id: RunId,
        /// The task.
        task_id: Arc<str>,
    },
    /// A graph node of a run.
    Node {
        /// The graph run.
        run_id: RunId,
        /// The node.
        node_id: Arc<str>,
    },
    /// The run at a namespace path below a run (names from that run down).
    Namespace {
        /// Where the path starts.
        run_id: RunId,
        /// Names below it.
        namespace: Vec<String>,
    },
}

impl SteeringTarget {
    /// The run the target is anchored at.
    pub fn anchor(&self) -> RunId {
        match self {
            Self::ParentRun { run_id }
            | Self::Task { run_id, .. }
            | Self::Node { run_id, .. }
            | Self::Namespace { run_id, .. } => *run_id,
            Self::ChildRun { child_run_id, .. } => *child_run_id,
        }
    }
}

/// Narrowing of the tools and model settings of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ToolPolicy {
    /// Only these tools stay available (intersected with what the run has).
    #[serde(default)]
    pub allow_tools: Option<Vec<String>>,
    /// Cap on generated tokens per model call.
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
}

/// Narrowing of what a run may still spawn.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct DelegationPolicy {
    /// At most this many further children.
    #[serde(default)]
    pub max_new_children: Option<u64>,
    /// Only sub-agents with these names may be spawned.
    #[serde(default)]
    pub allow_agents: Option<Vec<String>>,
}

/// A steering command.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum SteeringCommand {
    /// Hold at the next safe boundary until resumed.
    Pause,
    /// Continue a paused run.
    Resume,
    /// Stop now (hard abort if no safe boundary comes).
    Cancel,
    /// Finish the current step, then stop keeping the partial result.
    Stop,
    /// Add an instruction before the next model call.
    AddInstruction {
        /// The instruction.
        text: String,
    },
    /// Replace the run's instructions (its system prompt).
    ReplaceInstructions {
        /// The new instructions.
        text: String,
    },
    /// Send a graph run to a node (review, retry, join, finalize).
    Redirect {
        /// The node.
        node_id: String,
    },
    /// Narrow tools or model settings.
    NarrowTools(ToolPolicy),
    /// Narrow what may still be spawned.
    NarrowDelegation(DelegationPolicy),
    /// Do not start tool calls / children that have not started yet.
    CancelPendingFanout,
    /// Report status.
    RequestStatus,
    /// Approve a pending interrupt, optionally with a value.
    Approve {
        /// The interrupt.
        interrupt_id: String,
        /// Value delivered to the paused task.
        #[serde(default)]
        value: serde_json::Value,
    },
    /// Reject a pending interrupt.
    Reject {
        /// The interrupt.
        interrupt_id: String,
        /// Why.
        reason: String,
    },
    /// Attach metadata to the run.
    SetMetadata {
        /// Key.
        key: String,
        /// Value.
        value: serde_json::Value,
    },
}

/// Kinds of steering command, for allowlists and events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// [`SteeringCommand::Pause`].
    Pause,
    /// [`SteeringCommand::Resume`].
    Resume,
    /// [`SteeringCommand::Cancel`].
    Cancel,
    /// [`SteeringCommand::Stop`].
    Stop,
    /// [`SteeringCommand::AddInstruction`].
    AddInstruction,
    /// [`SteeringCommand::ReplaceInstructions`].
    ReplaceInstructions,
    /// [`SteeringCommand::Redirect`].
    Redirect,
    /// [`SteeringCommand::NarrowTools`].
    NarrowTools,
    /// [`SteeringCommand::NarrowDelegation`].
    NarrowDelegation,
    /// [`SteeringCommand::CancelPendingFanout`].
    CancelPendingFanout,
    /// [`SteeringCommand::RequestStatus`].
    RequestStatus,
    /// [`SteeringCommand::Approve`].
    Approve,
    /// [`SteeringCommand::Reject`].
    Reject,
    /// [`SteeringCommand::SetMetadata`].
    SetMetadata,
}

impl CommandKind {
    /// Every kind.
    pub const ALL: [CommandKind; 14] = [
        Self::Pause,
        Self::Resume,
        Self::Cancel,
        Self::Stop,
        Self::AddInstruction,
        Self::ReplaceInstructions,
        Self::Redirect,
        Self::NarrowTools,
        Self::NarrowDelegation,
        Self::CancelPendingFanout,
        Self::RequestStatus,
        Self::Approve,
        Self::Reject,
        Self::SetMetadata,
    ];
}

impl SteeringCommand {
    /// The command's kind.
    pub fn kind(&self) -> CommandKind {
        match self {
            Self::Pause => CommandKind::Pause,
            Self::Resume => CommandKind::Resume,
            Self::Cancel => CommandKind::Cancel,
            Self::Stop => CommandKind::Stop,
            Self::AddInstruction { .. } => CommandKind::AddInstruction,
            Self::ReplaceInstructions { .. } => CommandKind::ReplaceInstructions,
            Self::Redirect { .. } => CommandKind::Redirect,
            Self::NarrowTools(_) => CommandKind::NarrowTools,
            Self::NarrowDelegation(_) => CommandKind::NarrowDelegation,
            Self::CancelPendingFanout => CommandKind::CancelPendingFanout,
            Self::RequestStatus => CommandKind::RequestStatus,
            Self::Approve { .. } => CommandKind::Approve,
            Self::Reject { .. } => CommandKind::Reject,
            Self::SetMetadata { .. } => CommandKind::SetMetadata,
        }
    }
}

/// A command on its way to a target.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct SteeringRequest {
    /// Follows the request through its events.
    pub correlation_id: CorrelationId,
    /// Who sent it.
    pub actor: Actor,
    /// Where it goes.
    pub target: SteeringTarget,
    /// What to do.
    pub command: SteeringCommand,
}

impl SteeringRequest {
    /// A request with a fresh correlation id.
    pub fn new(actor: Actor, target: SteeringTarget, command: SteeringCommand) -> Self {
        Self {
            correlation_id: CorrelationId::new(),
            actor,
            target,
            command,
        }
    }
}

/// The stage of a steering request an event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SteeringPhase {
    /// Received by the control plane.
    Requested,
    /// Passed policy; queued for the target.
    Accepted,
    /// Refused by policy or because the target cannot take it.
    Rejected,
    /// Handed to the target at a safe boundary.
    Delivered,
    /// Took effect.
    Applied,
}

/// What every steering event carries.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SteeringInfo {
    /// The target's parent run, when known.
    pub parent_run_id: Option<RunId>,
    /// The target run (the child), when resolved.
    pub child_run_id: Option<RunId>,
    /// The graph task, when graph-backed.
    pub task_id: Option<Arc<str>>,
    /// The target's namespace path.
    pub namespace: Vec<String>,
    /// Who sent it.
    pub actor: Actor,
    /// What kind of command.
    pub command: CommandKind,
    /// The policy that decided.
    pub policy_id: Arc<str>,
    /// Follows the request.
    pub correlation_id: CorrelationId,
    /// The checkpoint that recorded it, when one did.
    pub checkpoint_id: Option<Arc<str>>,
    /// Why it was rejected, or what applying it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
