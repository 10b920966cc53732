//! One run's mailbox, flags and steering log.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tinyagents_core::{
    CorrelationId, Cost, DelegationPolicy, Message, RunContext, RunId, SteeringCommand, SteeringPhase, SteeringRequest,
    ToolPolicy, Usage,
};
use tokio::sync::{Notify, oneshot};

use super::SteeringHub;
use crate::machine::AgentRun;

/// What a run's checkpoint records about steering: commands accepted but not
/// yet applied, and the ids of those applied and rejected. A resumed run
/// re-queues `pending` minus `applied`, so an accepted command is applied
/// exactly once across a crash.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SteeringLog {
    /// Accepted, not yet applied.
    pub pending: Vec<SteeringRequest>,
    /// Applied.
    pub applied: Vec<CorrelationId>,
    /// Rejected, with the reason.
    pub rejected: Vec<(CorrelationId, String)>,
    /// Applied commands whose effect lives in the control plane (narrowed
    /// tools or delegation, metadata); replayed on restore.
    #[serde(default)]
    pub policies: Vec<SteeringRequest>,
}

impl SteeringLog {
    /// Combines the log saved with a run checkpoint and the (newer) journal:
    /// a command is applied if either says so; pending is what the journal
    /// accepted and nobody applied.
    pub fn merge(checkpointed: &SteeringLog, journal: &SteeringLog) -> SteeringLog {
        let mut applied = checkpointed.applied.clone();
        for id in &journal.applied {
            if !applied.contains(id) {
                applied.push(id.clone());
            }
        }
        let mut pending: Vec<SteeringRequest> = Vec::new();
        for r in journal.pending.iter().chain(&checkpointed.pending) {
            if !applied.contains(&r.correlation_id) && !pending.iter().any(|p| p.correlation_id == r.correlation_id) {
                pending.push(r.clone());
            }
        }
        let mut rejected = checkpointed.rejected.clone();
        for r in &journal.rejected {
            if !rejected.contains(r) {
                rejected.push(r.clone());
            }
        }
        let mut policies = checkpointed.policies.clone();
        for p in &journal.policies {
            if !policies.iter().any(|q| q.correlation_id == p.correlation_id) {
                policies.push(p.clone());
            }
        }
        SteeringLog {
            pending,
            applied,
            rejected,
            policies,
        }
    }
}

/// A snapshot of a run, answered to `RequestStatus` and listed by the control
/// socket.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunStatus {
    /// The run.
    pub run_id: RunId,
    /// Its parent.
    pub parent_run_id: Option<RunId>,
    /// Its path.
    pub path: String,
    /// Its depth.
    pub depth: u32,
    /// What it is doing.
    pub phase: String,
    /// True while paused.
    pub paused: bool,
    /// Model turns taken.
    pub turns: u32,
    /// Usage of the run and its finished descendants.
    pub usage: Usage,
    /// Cost of the same.
    pub cost: Cost,
    /// Commands waiting for a safe boundary.
    pub pending_steering: usize,
    /// Interrupts waiting for approval.
    pub pending_interrupts: Vec<String>,
    /// Metadata set by steering.
    pub metadata: BTreeMap<String, serde_json::Value>,
}

type InterruptReply = oneshot::Sender<Result<serde_json::Value, String>>;

#[derive(Default)]
struct State {
    paused: bool,
    pending: VecDeque<SteeringRequest>,
    log: SteeringLog,
    tools: ToolPolicy,
    delegation: Option<DelegationPolicy>,
    spawned_since_narrowed: u64,
    metadata: BTreeMap<String, serde_json::Value>,
    interrupts: HashMap<String, Option<InterruptReply>>,
    phase: &'static str,
    turns: u32,
    checkpoint_id: Option<Arc<str>>,
    tasks: HashMap<Arc<str>, Arc<RunControl>>,
    nodes: HashMap<Arc<str>, Arc<RunControl>>,
    graph: bool,
    graph_nodes: Vec<String>,
}

/// What a graph run must do at its superstep boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphSteer {
    /// Carry on.
    Continue,
    /// Run this node next instead of the planned tasks.
    Redirect(String),
}

/// Called with the steering log whenever it changes (durability).
pub type Journal = Arc<dyn Fn(&SteeringLog) + Send + Sync>;

/// The control block of one live run.
pub struct RunControl {
    ctx: RunContext,
    journal: Mutex<Option<Journal>>,
    state: Mutex<State>,
    wake: Notify,
    cancelled: AtomicBool,
    fanout_cancelled: AtomicBool,
    finished: AtomicBool,
}

impl std::fmt::Debug for RunControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunControl")
            .field("run", &self.ctx)
            .finish_non_exhaustive()
    }
}

/// Why a run leaves at a safe boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Stop now, as cancelled.
    Cancel,
    /// Stop with what is done.
    Stop,
}

impl RunControl {
    pub(crate) fn new(ctx: RunContext) -> Self {
        Self {
            ctx,
            journal: Mutex::new(None),
            state: Mutex::new(State {
                phase: "starting",
                ..State::default()
            }),
            wake: Notify::new(),
            cancelled: AtomicBool::new(false),
            fanout_cancelled: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Installs a journal called with the log on every change.
    pub fn set_journal(&self, journal: Journal) {
        if let Ok(mut j) = self.journal.lock() {
            *j = Some(journal);
        }
    }

    fn journal(&self) {
        let journal = self.journal.lock().ok().and_then(|j| j.clone());
        if let Some(j) = journal {
            let log = self.log();
            j(&log);
        }
    }

    /// The run.
    pub fn ctx(&self) -> &RunContext {
        &self.ctx
    }

    /// The run's parent.
    pub fn parent_run_id(&self) -> Option<RunId> {
        self.ctx.meta().parent_run_id
    }

    pub(crate) fn mark_finished(&self) {
        self.finished.store(true, Ordering::SeqCst);
        self.state().phase = "finished";
        self.wake.notify_waiters();
    }

    /// True once cancel was accepted.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// True once pending fan-out was cancelled.
    pub fn fanout_cancelled(&self) -> bool {
        self.fanout_cancelled.load(Ordering::SeqCst)
    }

    /// Resolves when cancel is accepted (immediately if it already was).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// The narrowed tool policy in force.
    pub fn tool_policy(&self) -> ToolPolicy {
        self.state().tools.clone()
    }

    /// Records what the run is doing, for status.
    pub fn set_phase(&self, phase: &'static str, turns: u32) {
        let mut s = self.state();
        s.phase = phase;
        s.turns = turns;
    }

    /// The id of the checkpoint that last recorded this run.
    pub fn last_checkpoint_id(&self) -> Option<Arc<str>> {
        self.state().checkpoint_id.clone()
    }

    /// Records the id of a checkpoint that holds this run's steering log.
    pub fn set_checkpoint_id(&self, id: impl Into<Arc<str>>) {
        self.state().checkpoint_id = Some(id.into());
    }

    /// The steering log, for checkpoints.
    pub fn log(&self) -> SteeringLog {
        self.state().log.clone()
    }

    /// Restores a checkpointed log: pending commands not yet applied are
    /// queued again (each exactly once).
    pub fn restore(&self, log: SteeringLog) {
        let mut s = self.state();
        for p in &log.policies {
            match &p.command {
                SteeringCommand::NarrowTools(t) => s.tools = narrow_tools(&s.tools, t),
                SteeringCommand::NarrowDelegation(d) => {
                    s.delegation = Some(narrow_delegation(s.delegation.as_ref(), d))
                }
                SteeringCommand::SetMetadata { key, value } => {
                    s.metadata.insert(key.clone(), value.clone());
                }
                _ => {}
            }
        }
        let requeue: Vec<SteeringRequest> = log
            .pending
            .iter()
            .filter(|r| !log.applied.contains(&r.correlation_id))
            .filter(|r| !s.pending.iter().any(|p| p.correlation_id == r.correlation_id))
            .cloned()
            .collect();
        s.log = SteeringLog {
            pending: requeue.clone(),
            applied: log.applied,
            rejected: log.rejected,
            policies: log.policies,
        };
        for r in requeue {
            if matches!(r.command, SteeringCommand::Cancel) {
                self.cancelled.store(true, Ordering::SeqCst);
            }
            s.pending.push_back(r);
        }
    }

    /// A status snapshot.
    pub fn status(&self) -> RunStatus {
        let s = self.state();
        RunStatus {
            run_id: self.ctx.run_id(),
            parent_run_id: self.parent_run_id(),
            path: self.ctx.path().to_string(),
            depth: self.ctx.depth(),
            phase: s.phase.to_string(),
            paused: s.paused,
            turns: s.turns,
            usage: self.ctx.total_usage(),
            cost: self.ctx.total_cost(),
            pending_steering: s.pending.len(),
            pending_interrupts: s.interrupts.keys().cloned().collect(),
            metadata: s.metadata.clone(),
        }
    }

    /// Marks the run as a graph run (redirect, task and node targets apply).
    pub fn mark_graph(&self) {
        self.state().graph = true;
    }

    /// Registers a graph task (and its node) of this run as steerable.
    pub fn register_graph_task(
        &self,
        task_id: impl Into<Arc<str>>,
        node_id: impl Into<Arc<str>>,
        task: Arc<RunControl>,
    ) {
        let mut s = self.state();
        s.graph = true;
        s.tasks.insert(task_id.into(), task.clone());
        s.nodes.insert(node_id.into(), task);
    }

    pub(crate) fn is_graph(&self) -> bool {
        self.state().graph
    }

    /// Marks the run as a graph run with these nodes (redirect targets).
    pub fn mark_graph_nodes(&self, nodes: impl IntoIterator<Item = String>) {
        let mut s = self.state();
        s.graph = true;
        s.graph_nodes = nodes.into_iter().collect();
    }

    pub(crate) fn has_graph_node(&self, node: &str) -> bool {
        self.state().graph_nodes.iter().any(|n| n == node)
    }

    /// True once the run has ended.
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    /// Takes queued commands at a graph's superstep boundary. Waits while
    /// paused; returns a redirect when one was applied; `Err` tells the
    /// graph to leave (cancel or stop).
    pub async fn at_graph_boundary(&self, hub: &SteeringHub) -> Result<GraphSteer, Exit> {
        let mut outcome = GraphSteer::Continue;
        loop {
            let next = self.next_delivered(hub).await;
            let req = match next {
                Ok(Some(req)) => req,
                Ok(None) => break,
                Err(exit) => {
                    self.journal();
                    return Err(exit);
                }
            };
            match &req.command {
                SteeringCommand::Redirect { node_id } => {
                    self.applied(hub, &req, format!("next superstep runs node {node_id}"));
                    outcome = GraphSteer::Redirect(node_id.clone());
                }
                other => {
                    let detail = format!("{:?} has no effect on a graph run", other.kind());
                    self.applied(hub, &req, detail);
                }
            }
        }
        // A graph's state changes only through its checkpoints; the log is
        // journaled here.
        self.journal();
        Ok(outcome)
    }

    /// Steering accepted but not yet applied, for a graph checkpoint.
    pub fn pending(&self) -> Vec<SteeringRequest> {
        self.state().pending.iter().cloned().collect()
    }

    pub(crate) fn graph_task(&self, task_id: &str) -> Option<Arc<RunControl>> {
        self.state().tasks.get(task_id).cloned()
    }

    pub(crate) fn graph_node(&self, node_id: &str) -> Option<Arc<RunControl>> {
        self.state().nodes.get(node_id).cloned()
    }

    pub(crate) fn has_interrupt(&self, id: &str) -> bool {
        self.state().interrupts.contains_key(id)
    }

    pub(crate) fn record_rejected(&self, req: &SteeringRequest, reason: &str) {
        self.state()
            .log
            .rejected
            .push((req.correlation_id.clone(), reason.to_string()));
        self.journal();
    }

    pub(crate) fn check_spawn(&self, child_name: &str) -> Result<(), String> {
        let mut s = self.state();
        let Some(policy) = s.delegation.clone() else {
            return Ok(());
        };
        if let Some(allow) = &policy.allow_agents
            && !allow.iter().any(|a| a == child_name)
        {
            return Err(format!(
                "delegation policy was narrowed: {child_name:?} is not among the allowed sub-agents {allow:?}"
            ));
        }
        if let Some(max) = policy.max_new_children {
            if s.spawned_since_narrowed >= max {
                return Err(format!(
                    "delegation policy was narrowed: no more than {max} new sub-agents may be spawned"
                ));
            }
            s.spawned_since_narrowed += 1;
        }
        Ok(())
    }

    /// Takes an accepted request: policy changes, interrupts and status take
    /// effect now; conversation changes and pause/stop/cancel wait for a
    /// safe boundary (cancel also wakes the run at once).
    pub(crate) fn accept(&self, hub: &SteeringHub, req: SteeringRequest) {
        let immediate = {
            let mut s = self.state();
            match &req.command {
                SteeringCommand::NarrowTools(p) => {
                    s.tools = narrow_tools(&s.tools, p);
                    Some(format!("tool policy now {:?}", s.tools))
                }
                SteeringCommand::NarrowDelegation(p) => {
                    let merged = narrow_delegation(s.delegation.as_ref(), p);
                    s.delegation = Some(merged);
                    s.spawned_since_narrowed = 0;
                    Some("delegation policy narrowed".to_string())
                }
                SteeringCommand::SetMetadata { key, value } => {
                    s.metadata.insert(key.clone(), value.clone());
                    Some(format!("metadata {key} set"))
                }
                SteeringCommand::RequestStatus => Some("status reported".to_string()),
                SteeringCommand::CancelPendingFanout => {
                    self.fanout_cancelled.store(true, Ordering::SeqCst);
                    Some("tool calls and children not yet started will not start".to_string())
                }
                SteeringCommand::Approve { interrupt_id, value } => {
                    let tx = s.interrupts.remove(interrupt_id).flatten();
                    tx.map(|tx| tx.send(Ok(value.clone())));
                    Some(format!("interrupt {interrupt_id} approved"))
                }
                SteeringCommand::Reject { interrupt_id, reason } => {
                    let tx = s.interrupts.remove(interrupt_id).flatten();
                    tx.map(|tx| tx.send(Err(reason.clone())));
                    Some(format!("interrupt {interrupt_id} rejected"))
                }
                _ => {
                    s.log.pending.push(req.clone());
                    s.pending.push_back(req.clone());
                    None
                }
            }
        };
        match immediate {
            Some(detail) => {
                hub.emit_phase(self, &req, SteeringPhase::Delivered, None);
                hub.emit_phase(self, &req, SteeringPhase::Applied, Some(detail));
                {
                    let mut s = self.state();
                    if matches!(
                        req.command,
                        SteeringCommand::NarrowTools(_)
                            | SteeringCommand::NarrowDelegation(_)
                            | SteeringCommand::SetMetadata { .. }
                    ) {
                        s.log.policies.push(req.clone());
                    }
                    s.log.applied.push(req.correlation_id);
                }
                self.journal();
            }
            None => {
                // Journal before waking the run: once accepted, a command
                // survives a crash.
                self.journal();
                if matches!(req.command, SteeringCommand::Cancel) {
                    self.cancelled.store(true, Ordering::SeqCst);
                }
                self.wake.notify_waiters();
            }
        }
    }

    /// Records a command applied at a boundary. Not journaled here: its
    /// effect is in the run's state, so the driver saves the run checkpoint
    /// (which carries this log) first and journals after ([`Self::commit`]).
    fn applied(&self, hub: &SteeringHub, req: &SteeringRequest, detail: String) {
        hub.emit_phase(self, req, SteeringPhase::Applied, Some(detail));
        let mut s = self.state();
        s.log.pending.retain(|p| p.correlation_id != req.correlation_id);
        s.log.applied.push(req.correlation_id.clone());
    }

    /// Journals the log after the run checkpoint holding its effects was saved.
    pub fn commit(&self) {
        self.journal();
    }

    /// The next queued command for the run to apply itself, at a boundary.
    /// Pause, resume, cancel and stop are handled here (the same for agent
    /// and graph runs): waits while paused, `Err` to leave. `Ok(None)` when
    /// nothing is left; the returned command has been reported delivered.
    async fn next_delivered(&self, hub: &SteeringHub) -> Result<Option<SteeringRequest>, Exit> {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = self.state().pending.pop_front();
            let Some(req) = next else {
                if self.is_cancelled() {
                    return Err(Exit::Cancel);
                }
                if self.state().paused {
                    self.state().phase = "paused";
                    notified.await;
                    continue;
                }
                return Ok(None);
            };
            hub.emit_phase(self, &req, SteeringPhase::Delivered, None);
            match &req.command {
                SteeringCommand::Pause => {
                    self.state().paused = true;
                    self.applied(hub, &req, "paused at the boundary".into());
                }
                SteeringCommand::Resume => {
                    self.state().paused = false;
                    self.applied(hub, &req, "resumed".into());
                }
                SteeringCommand::Cancel => {
                    self.applied(hub, &req, "cancelled".into());
                    return Err(Exit::Cancel);
                }
                SteeringCommand::Stop => {
                    self.applied(hub, &req, "stopped after the current step".into());
                    return Err(Exit::Stop);
                }
                _ => return Ok(Some(req)),
            }
        }
    }

    /// Takes queued commands at a safe boundary of an agent run. Waits while
    /// paused. `Err` tells the driver to leave (cancel or stop).
    pub(crate) async fn at_boundary(&self, hub: &SteeringHub, run: &mut AgentRun) -> Result<(), Exit> {
        while let Some(req) = self.next_delivered(hub).await? {
            match &req.command {
                SteeringCommand::AddInstruction { text } => {
                    run.push_message(Message::Steering {
                        actor: req.actor.clone(),
                        content: text.as_str().into(),
                        correlation_id: req.correlation_id.clone(),
                    });
                    self.applied(hub, &req, "instruction added before the next model call".into());
                }
                SteeringCommand::ReplaceInstructions { text } => {
                    run.replace_instructions(text.as_str());
                    run.push_message(Message::Steering {
                        actor: req.actor.clone(),
                        content: format!("The instructions were replaced by {}.", req.actor).into(),
                        correlation_id: req.correlation_id.clone(),
                    });
                    self.applied(hub, &req, "instructions replaced".into());
                }
                other => {
                    let detail = format!("{:?} has no effect on an agent run", other.kind());
                    self.applied(hub, &req, detail);
                }
            }
        }
        Ok(())
    }

    /// Waits for a human (or another actor) to approve or reject the
    /// interrupt `id` of this run.
    pub(crate) async fn wait_interrupt(&self, id: &str) -> Result<serde_json::Value, String> {
        let (tx, rx) = oneshot::channel();
        {
            let mut s = self.state();
            s.interrupts.insert(id.to_string(), Some(tx));
            s.phase = "interrupted";
        }
        tokio::select! {
            r = rx => r.unwrap_or_else(|_| Err("interrupt dropped".into())),
            () = self.cancelled() => Err("run cancelled while interrupted".into()),
        }
    }
}

fn narrow_tools(current: &ToolPolicy, asked: &ToolPolicy) -> ToolPolicy {
    let allow_tools = match (&current.allow_tools, &asked.allow_tools) {
        (Some(a), Some(b)) => Some(a.iter().filter(|t| b.contains(t)).cloned().collect()),
        (a, b) => a.clone().or_else(|| b.clone()),
    };
    let max_output_tokens = match (current.max_output_tokens, asked.max_output_tokens) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    ToolPolicy {
        allow_tools,
        max_output_tokens,
    }
}

fn narrow_delegation(current: Option<&DelegationPolicy>, asked: &DelegationPolicy) -> DelegationPolicy {
    let Some(current) = current else {
        return asked.clone();
    };
    DelegationPolicy {
        max_new_children: match (current.max_new_children, asked.max_new_children) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
        allow_agents: match (&current.allow_agents, &asked.allow_agents) {
            (Some(a), Some(b)) => Some(a.iter().filter(|t| b.contains(t)).cloned().collect()),
            (a, b) => a.clone().or_else(|| b.clone()),
        },
    }
}

/// Pauses the calling tool's run until an actor approves or rejects
/// interrupt `id` through steering (`Approve` / `Reject`). Returns the
/// approval value, or the rejection reason as a `Denied` tool error.
pub async fn interrupt(
    ctx: &tinyagents_core::ToolContext,
    id: &str,
) -> Result<serde_json::Value, tinyagents_core::ToolError> {
    let Some(hub) = SteeringHub::of(&ctx.run) else {
        return Err(tinyagents_core::ToolError::Denied {
            reason: "no steering hub is installed, so nobody can approve this interrupt".into(),
        });
    };
    let Some(control) = hub.control(ctx.run.run_id()) else {
        return Err(tinyagents_core::ToolError::Denied {
            reason: "the run is not registered with the steering hub".into(),
        });
    };
    control
        .wait_interrupt(id)
        .await
        .map_err(|reason| tinyagents_core::ToolError::Denied { reason })
}
