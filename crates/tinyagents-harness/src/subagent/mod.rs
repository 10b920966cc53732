//! Sub-agents: an agent runs another agent as a child of itself.
//!
//! * [`SubAgent`] runs a child one level deeper than its caller, with its own
//!   run id, events, usage and cost, all rolled up to the parent.
//! * [`SubAgentTool`] exposes a sub-agent as an ordinary [`Tool`]; it reads
//!   the child's input from the argument field [`SUBAGENT_INPUT_FIELD`].
//! * [`SubAgentSession`] keeps one sub-agent and its transcript across sends
//!   (the human-in-the-loop reuse primitive) and emits `SubAgentReused` on
//!   every send after the first.
//!
//! # Depth tracking
//! A child of a run at depth `d` runs at `d + 1`. The cap is
//! [`RunLimits::max_depth`] (default [`RunLimits::DEFAULT_MAX_DEPTH`], 8),
//! narrowed down the tree: the child gets the smaller of its parent's cap and
//! its own agent's. Past it, the invocation fails with
//! [`RunError::SubAgentDepth`] before any model call. It is the only
//! recursion cap; every path (direct, tool, session) goes through
//! [`RunContext::spawn_child`].
//!
//! # Running the child
//! The child runs in its own tokio task. That gives three guarantees:
//! a chain of 10,000 nested sub-agents never nests 10,000 `poll` frames on
//! one stack; a child that panics becomes [`RunError::Panicked`] and its
//! siblings keep running; and the child's usage is rolled up to the parent
//! (and `SubAgentCompleted` is emitted) by a guard inside that task, so it
//! happens on every exit path, even when the child is aborted.
//!
//! # Observability
//! The parent emits `SubAgentStarted` and `SubAgentCompleted` (name, child
//! run id, child depth). With [`SubAgent::invoke_in_parent`] or
//! [`SubAgent::invoke_with_events`] the child's own events flow to the
//! parent's sink (or the given one), so one observer sees the whole tree.
//!
//! [`Tool`]: tinyagents_core::Tool
//! [`RunLimits::max_depth`]: tinyagents_core::RunLimits::max_depth
//! [`RunLimits::DEFAULT_MAX_DEPTH`]: tinyagents_core::RunLimits::DEFAULT_MAX_DEPTH
//! [`RunError::SubAgentDepth`]: tinyagents_core::RunError::SubAgentDepth
//! [`RunError::Panicked`]: tinyagents_core::RunError::Panicked
//! [`RunContext::spawn_child`]: tinyagents_core::RunContext::spawn_child

mod session;
mod tool;

use std::sync::Arc;

pub use session::SubAgentSession;
use tinyagents_core::{ChildEvents, EventKind, Message, RunContext, RunError, SharedSink, SharedTool, Transcript};
pub use tool::{SUBAGENT_INPUT_FIELD, SubAgentArgs, SubAgentTool};

use crate::agent::{Agent, AgentOutput};

/// A named child agent (see the module docs).
#[derive(Clone, Debug)]
pub struct SubAgent {
    agent: Agent,
}

impl SubAgent {
    /// Wraps `agent`; its name is the sub-agent's (and its tool's) name.
    pub fn new(agent: Agent) -> Self {
        Self { agent }
    }

    /// The sub-agent's name.
    pub fn name(&self) -> &Arc<str> {
        self.agent.name()
    }

    /// The wrapped agent.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// Runs the child; its own events are discarded (the parent still emits
    /// `SubAgentStarted`/`SubAgentCompleted`).
    pub async fn invoke(&self, parent: &RunContext, input: impl Into<Arc<str>>) -> Result<AgentOutput, RunError> {
        self.run_child(parent, None, [Message::user(input)], ChildEvents::Discard, |_| {})
            .await
    }

    /// Runs the child; its own events go to `sink`.
    pub async fn invoke_with_events(
        &self,
        parent: &RunContext,
        input: impl Into<Arc<str>>,
        sink: SharedSink,
    ) -> Result<AgentOutput, RunError> {
        self.run_child(parent, None, [Message::user(input)], ChildEvents::To(sink), |_| {})
            .await
    }

    /// Runs the child; its own events go to the parent's sink.
    pub async fn invoke_in_parent(
        &self,
        parent: &RunContext,
        input: impl Into<Arc<str>>,
    ) -> Result<AgentOutput, RunError> {
        self.run_child(parent, None, [Message::user(input)], ChildEvents::Parent, |_| {})
            .await
    }

    /// This sub-agent as a tool a parent model can call.
    pub fn into_tool(self) -> SharedTool {
        Arc::new(tool::ErasedSubAgentTool::new(SubAgentTool::new(self)))
    }

    /// Starts a child run and waits for it.
    pub(crate) async fn run_child(
        &self,
        parent: &RunContext,
        prefix: Option<Transcript>,
        messages: impl IntoIterator<Item = Message>,
        events: ChildEvents,
        on_started: impl FnOnce(&RunContext),
    ) -> Result<AgentOutput, RunError> {
        self.start_child(parent, prefix, messages, events, on_started)?.await
    }

    /// The one place a child run is started: spawns the child run and its
    /// task, and returns a handle that resolves to the child's output.
    ///
    /// Synchronous on purpose: the caller's future only keeps the small
    /// [`ChildRun`] while the child runs, not the arguments and locals of
    /// the start (one sub-agent tool call in flight costs a few words in its
    /// parent, whatever the fan-out).
    pub(crate) fn start_child(
        &self,
        parent: &RunContext,
        prefix: Option<Transcript>,
        messages: impl IntoIterator<Item = Message>,
        events: ChildEvents,
        on_started: impl FnOnce(&RunContext),
    ) -> Result<ChildRun, RunError> {
        let child = parent.spawn_child(self.agent.name().clone(), self.agent.limits(), events)?;
        // The child emits its own start and end (the driver does, below):
        // a sink that receives them needs no repetition from the parent.
        if parent.parent_view_needed(&child) {
            parent.emit_with(|| EventKind::SubAgentStarted {
                name: self.agent.name().clone(),
                child_run_id: child.run_id(),
                child_depth: child.depth(),
            });
        }
        on_started(&child);
        let prefix = prefix.unwrap_or_else(|| self.agent.base_transcript().clone());
        // Built here and moved into the task, where the driver borrows it:
        // the task keeps exactly one copy of the state machine.
        let mut run = self.agent.start(&child, prefix, messages);
        let agent = self.agent.clone();
        let mut guard = RollUp {
            parent: parent.clone(),
            child: child.clone(),
            ok: false,
        };
        let handle = tokio::spawn(async move {
            let result = crate::driver::drive(&agent.0, &guard.child, &mut run, None).await;
            guard.succeeded(result.is_ok());
            result
        });
        Ok(ChildRun {
            handle: AbortOnDrop(handle),
            child,
        })
    }
}

/// A started child run: resolves to its output; dropping it aborts the
/// child (whose usage is still rolled up, see [`RollUp`]).
pub(crate) struct ChildRun {
    handle: AbortOnDrop,
    child: RunContext,
}

impl std::future::Future for ChildRun {
    type Output = Result<AgentOutput, RunError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let joined = std::task::ready!(std::pin::Pin::new(&mut self.handle.0).poll(cx));
        let child = &self.child;
        std::task::Poll::Ready(match joined {
            Ok(result) => result,
            Err(e) if e.is_panic() => Err(RunError::Panicked {
                path: child.path().clone(),
                depth: child.depth(),
                message: panic_text(e.into_panic()),
            }),
            Err(_) => Err(RunError::Cancelled {
                path: child.path().clone(),
                depth: child.depth(),
                partial: Box::new(child.partial(None, Transcript::new(), 0)),
            }),
        })
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p
            .downcast_ref::<&str>()
            .map_or_else(|| "non-string panic payload".to_string(), |s| s.to_string()),
    }
}

/// Rolls a child's usage up into its parent and emits `SubAgentCompleted`
/// when dropped: at the end of the child task, whether it returned,
/// panicked or was aborted.
struct RollUp {
    parent: RunContext,
    child: RunContext,
    ok: bool,
}

impl RollUp {
    /// Records the outcome (read when the guard drops).
    fn succeeded(&mut self, ok: bool) {
        self.ok = ok;
    }
}

impl Drop for RollUp {
    fn drop(&mut self) {
        self.parent.absorb_child(&self.child);
        let (ok, child) = (self.ok, &self.child);
        if ok && !self.parent.parent_view_needed(child) {
            return;
        }
        self.parent.emit_with(|| EventKind::SubAgentCompleted {
            name: child.name().clone(),
            child_run_id: child.run_id(),
            child_depth: child.depth(),
            ok,
            usage: child.total_usage(),
            cost: child.total_cost(),
        });
    }
}

/// Aborts the child task if the parent stops waiting for it.
pub(crate) struct AbortOnDrop(tokio::task::JoinHandle<Result<AgentOutput, RunError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        // A no-op when the task has finished.
        self.0.abort();
    }
}
