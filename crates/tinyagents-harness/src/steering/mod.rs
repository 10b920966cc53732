//! Steering running agents and sub-agents.
//!
//! A [`SteeringHub`] is the control plane of a run tree. Install it with
//! [`RunConfig::hooks`](tinyagents_core::RunConfig::hooks): it then sees every
//! run created on the one spawn path (sub-agents, sub-agent tools, sessions,
//! graph nodes) and keeps a mailbox per run.
//!
//! # The life of a command
//! [`SteeringHub::steer`] takes a [`SteeringRequest`] (actor, target, command,
//! correlation id) and emits `steering.requested`. It resolves the target by
//! run-tree metadata, checks the [`SteeringPolicy`] (per-actor allowlists;
//! parents may only steer their own descendants) and either rejects it
//! (`steering.rejected` with a reason, and `subagent.steering_rejected` on the
//! target's parent) or accepts it (`steering.accepted`, and
//! `subagent.steering_received` on the parent) into the target's mailbox.
//! The target takes commands at safe boundaries (before a model call, between
//! tool results) and emits `steering.delivered` then `steering.applied`.
//! Cancel also wakes the target at once: an in-flight model call or tool batch
//! is abandoned (the hard-abort fallback), children included.
//!
//! Steering never becomes assistant text nor pretends to be the user: an
//! instruction enters the transcript as a [`Message::Steering`] carrying its
//! actor and correlation id. Steering a child never touches its parent's
//! state; policy changes (narrowed tools, narrowed delegation) only narrow.
//!
//! [`Message::Steering`]: tinyagents_core::Message::Steering

mod control;
mod policy;
mod socket;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

pub use control::{Exit, GraphSteer, RunControl, RunStatus, SteeringLog, interrupt};
pub use policy::SteeringPolicy;
pub use socket::{
    ControlClient, ControlRequest, ControlResponse, ControlServer, control_dir, find_socket_for, serve_control_socket,
    socket_path,
};
use tinyagents_core::{
    Actor, CommandKind, CorrelationId, EventKind, RunContext, RunHooks, RunId, SteeringCommand, SteeringInfo,
    SteeringPhase, SteeringRequest, SteeringTarget,
};

/// A steering request was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("steering {correlation_id} rejected by policy {policy_id:?}: {reason}")]
pub struct SteeringRejected {
    /// The request.
    pub correlation_id: CorrelationId,
    /// The deciding policy.
    pub policy_id: Arc<str>,
    /// Why.
    pub reason: String,
}

/// A steering request was accepted.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SteeringAck {
    /// The request.
    pub correlation_id: CorrelationId,
    /// The run it was queued for.
    pub run_id: RunId,
    /// The target's status, for `RequestStatus`.
    pub status: Option<RunStatus>,
}

#[derive(Default)]
struct Registry {
    live: HashMap<RunId, Arc<RunControl>>,
    finished: HashSet<RunId>,
}

/// The control plane of one or more run trees (see the module docs).
pub struct SteeringHub {
    policy: SteeringPolicy,
    registry: Mutex<Registry>,
}

impl std::fmt::Debug for SteeringHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SteeringHub")
            .field("policy", &self.policy.id())
            .finish_non_exhaustive()
    }
}

impl SteeringHub {
    /// A hub enforcing `policy`.
    pub fn new(policy: SteeringPolicy) -> Arc<Self> {
        Arc::new(Self {
            policy,
            registry: Mutex::new(Registry::default()),
        })
    }

    /// The hub of a run's tree, if one is installed.
    pub fn of(ctx: &RunContext) -> Option<&SteeringHub> {
        ctx.hooks().and_then(|h| h.as_any().downcast_ref::<SteeringHub>())
    }

    /// The policy.
    pub fn policy(&self) -> &SteeringPolicy {
        &self.policy
    }

    fn register(&self, ctx: &RunContext) {
        let control = Arc::new(RunControl::new(ctx.clone()));
        if let Ok(mut r) = self.registry.lock() {
            r.live.insert(ctx.run_id(), control);
        }
    }

    /// The control of a live run.
    pub fn control(&self, run_id: RunId) -> Option<Arc<RunControl>> {
        self.registry.lock().ok()?.live.get(&run_id).cloned()
    }

    /// Marks a run finished: later commands for it are rejected as such.
    pub fn finish(&self, run_id: RunId) {
        if let Ok(mut r) = self.registry.lock()
            && let Some(c) = r.live.remove(&run_id)
        {
            c.mark_finished();
            r.finished.insert(run_id);
        }
    }

    /// Live runs, for status listings.
    pub fn live_runs(&self) -> Vec<RunStatus> {
        let controls: Vec<Arc<RunControl>> = self
            .registry
            .lock()
            .map(|r| r.live.values().cloned().collect())
            .unwrap_or_default();
        let mut out: Vec<RunStatus> = controls.iter().map(|c| c.status()).collect();
        out.sort_by_key(|s| (s.depth, s.path.clone()));
        out
    }

    fn resolve(&self, target: &SteeringTarget) -> Result<Arc<RunControl>, String> {
        let reg = self
            .registry
            .lock()
            .map_err(|_| "steering registry poisoned".to_string())?;
        let find = |id: RunId| -> Result<Arc<RunControl>, String> {
            match reg.live.get(&id) {
                Some(c) => Ok(c.clone()),
                None if reg.finished.contains(&id) => Err(format!("run {id} has finished")),
                None => Err(format!("unknown run id {id}")),
            }
        };
        match target {
            SteeringTarget::ParentRun { run_id } => find(*run_id),
            SteeringTarget::ChildRun {
                parent_run_id,
                child_run_id,
            } => {
                let child = find(*child_run_id)?;
                if child.parent_run_id() != Some(*parent_run_id) {
                    return Err(format!("run {child_run_id} is not a child of run {parent_run_id}"));
                }
                Ok(child)
            }
            SteeringTarget::Namespace { run_id, namespace } => {
                let anchor = find(*run_id)?;
                let mut want = anchor.ctx().path().segments();
                want.extend(namespace.iter().cloned());
                reg.live
                    .values()
                    .find(|c| c.ctx().root_run_id() == anchor.ctx().root_run_id() && c.ctx().path().segments() == want)
                    .cloned()
                    .ok_or_else(|| format!("no live run at namespace {} under run {run_id}", namespace.join("/")))
            }
            SteeringTarget::Task { run_id, task_id } => {
                let run = find(*run_id)?;
                run.graph_task(task_id)
                    .ok_or_else(|| format!("run {run_id} has no graph task {task_id:?} (it is not a graph run)"))
            }
            SteeringTarget::Node { run_id, node_id } => {
                let run = find(*run_id)?;
                run.graph_node(node_id)
                    .ok_or_else(|| format!("run {run_id} has no graph node {node_id:?} (it is not a graph run)"))
            }
        }
    }

    /// True when `ancestor` is `run` or one of its ancestors.
    fn is_ancestor(&self, ancestor: RunId, run: &RunControl) -> bool {
        let Ok(reg) = self.registry.lock() else {
            return false;
        };
        let mut cur = Some(run.ctx().run_id());
        let mut parent = run.parent_run_id();
        while let Some(id) = cur {
            if id == ancestor {
                return true;
            }
            cur = parent;
            parent = cur.and_then(|p| reg.live.get(&p)).and_then(|c| c.parent_run_id());
        }
        false
    }

    fn info(&self, req: &SteeringRequest, target: Option<&RunControl>, detail: Option<String>) -> Box<SteeringInfo> {
        Box::new(SteeringInfo {
            parent_run_id: target.and_then(|t| t.parent_run_id()),
            child_run_id: target.map(|t| t.ctx().run_id()),
            task_id: match &req.target {
                SteeringTarget::Task { task_id, .. } => Some(task_id.clone()),
                _ => None,
            },
            namespace: target.map(|t| t.ctx().path().segments()).unwrap_or_default(),
            actor: req.actor.clone(),
            command: req.command.kind(),
            policy_id: self.policy.id().clone(),
            correlation_id: req.correlation_id.clone(),
            checkpoint_id: target.and_then(|t| t.last_checkpoint_id()),
            detail,
        })
    }

    /// Validates `request` and queues it for its target (see the module docs).
    pub fn steer(&self, request: SteeringRequest) -> Result<SteeringAck, SteeringRejected> {
        let resolved = self.resolve(&request.target).and_then(|t| {
            if t.is_finished() {
                Err(format!("run {} has finished", t.ctx().run_id()))
            } else {
                Ok(t)
            }
        });
        let target = resolved.as_ref().ok().cloned();
        let target = target.as_ref();
        let emitter = target.map(|t| t.ctx().clone()).or_else(|| self.any_root_for(&request));
        if let Some(ctx) = &emitter {
            ctx.emit_with(|| EventKind::Steering {
                phase: SteeringPhase::Requested,
                info: self.info(&request, target.map(|t| &**t), None),
            });
        }
        let decision = resolved.and_then(|t| self.decide(&request, &t).map(|()| t));
        match decision {
            Err(reason) => {
                let info = self.info(&request, target.map(|t| &**t), Some(reason.clone()));
                if let Some(ctx) = &emitter {
                    ctx.emit(EventKind::Steering {
                        phase: SteeringPhase::Rejected,
                        info: info.clone(),
                    });
                }
                if let Some(t) = target {
                    t.record_rejected(&request, &reason);
                    if let Some(parent) = t.parent_run_id().and_then(|p| self.control(p)) {
                        parent.ctx().emit(EventKind::SubAgentSteering { accepted: false, info });
                    }
                }
                Err(SteeringRejected {
                    correlation_id: request.correlation_id,
                    policy_id: self.policy.id().clone(),
                    reason,
                })
            }
            Ok(t) => {
                let info = self.info(&request, Some(&t), None);
                t.ctx().emit(EventKind::Steering {
                    phase: SteeringPhase::Accepted,
                    info: info.clone(),
                });
                if let Some(parent) = t.parent_run_id().and_then(|p| self.control(p)) {
                    parent.ctx().emit(EventKind::SubAgentSteering { accepted: true, info });
                }
                let status = matches!(request.command, SteeringCommand::RequestStatus).then(|| t.status());
                let ack = SteeringAck {
                    correlation_id: request.correlation_id.clone(),
                    run_id: t.ctx().run_id(),
                    status,
                };
                t.accept(self, request);
                Ok(ack)
            }
        }
    }

    fn decide(&self, req: &SteeringRequest, target: &RunControl) -> Result<(), String> {
        self.policy.check(req.actor.kind(), req.command.kind())?;
        if let Actor::Parent { run_id } = &req.actor {
            if *run_id == target.ctx().run_id() {
                return Err("a run cannot steer itself through the control plane".into());
            }
            if !self.is_ancestor(*run_id, target) {
                return Err(format!(
                    "run {} is not an ancestor of run {}: parents steer their descendants only",
                    run_id,
                    target.ctx().run_id()
                ));
            }
        }
        match &req.command {
            SteeringCommand::Redirect { node_id } if !target.is_graph() => Err(format!(
                "cannot redirect to node {node_id:?}: run {} is an agent run, not a graph run",
                target.ctx().run_id()
            )),
            SteeringCommand::Redirect { node_id } if !target.has_graph_node(node_id) => Err(format!(
                "cannot redirect: graph run {} has no node {node_id:?}",
                target.ctx().run_id()
            )),
            SteeringCommand::AddInstruction { .. } | SteeringCommand::ReplaceInstructions { .. }
                if target.is_graph() =>
            {
                Err(format!(
                    "graph run {} takes instructions through its agents: steer one of its tasks (a Task or Node target) instead",
                    target.ctx().run_id()
                ))
            }
            SteeringCommand::Approve { interrupt_id, .. } | SteeringCommand::Reject { interrupt_id, .. }
                if !target.has_interrupt(interrupt_id) =>
            {
                Err(format!(
                    "run {} has no pending interrupt {interrupt_id:?}",
                    target.ctx().run_id()
                ))
            }
            _ => Ok(()),
        }
    }

    fn any_root_for(&self, req: &SteeringRequest) -> Option<RunContext> {
        let reg = self.registry.lock().ok()?;
        let anchor = req.target.anchor();
        reg.live
            .values()
            .find(|c| c.ctx().run_id() == anchor || c.ctx().depth() == 0)
            .map(|c| c.ctx().clone())
    }

    pub(crate) fn emit_phase(
        &self,
        control: &RunControl,
        req: &SteeringRequest,
        phase: SteeringPhase,
        detail: Option<String>,
    ) {
        control.ctx().emit_with(|| EventKind::Steering {
            phase,
            info: self.info(req, Some(control), detail),
        });
    }

    pub(crate) fn delegation_check(&self, parent: &RunContext, child_name: &str) -> Result<(), String> {
        match self.control(parent.run_id()) {
            Some(c) => c.check_spawn(child_name),
            None => Ok(()),
        }
    }

    /// Kinds of command every actor kind may send under the current policy.
    pub fn allowed(&self, actor: &Actor, kind: CommandKind) -> bool {
        self.policy.check(actor.kind(), kind).is_ok()
    }
}

impl RunHooks for SteeringHub {
    fn on_root(&self, root: &RunContext) {
        self.register(root);
    }
    fn before_spawn(&self, parent: &RunContext, child_name: &str) -> Result<(), String> {
        self.delegation_check(parent, child_name)
    }
    fn on_spawned(&self, parent: &RunContext, child: &RunContext) {
        let _ = parent;
        self.register(child);
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
