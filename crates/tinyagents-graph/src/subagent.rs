//! [`SubAgentNode`]: a graph node that runs a harness agent as a child run.
//!
//! The child is spawned with [`RunContext::spawn_child`] from the graph run
//! that owns the task: its own `run_id`, the same `root_run_id`,
//! `parent_run_id` = the graph run, one level deeper, counted by the same
//! depth cap and descendant budget as every other child. It runs on its own
//! tokio task; a guard on that task rolls its usage and cost up into the
//! graph run and emits `SubAgentCompleted` on every exit path (success,
//! error, panic, timeout, interrupt). The reference to the child run is
//! part of the task's result, so it appears in task events and in
//! checkpoints.
//!
//! [`SubAgentPolicy`] sets a timeout per attempt, retries with exponential
//! backoff (for retryable model errors and, optionally, timeouts), a cache
//! keyed by agent and input (shared by the whole run tree, inherited by
//! subgraphs), the limits the child asks for (narrowed by its parent's),
//! and whether the child's events are forwarded to the graph's sink and
//! stream (tagged with the task's namespace).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinyagents_core::{BoxFuture, ChildEvents, Message, RecursionFrame, RunContext, RunError, RunLimits};
use tinyagents_harness::{Agent, AgentOutput};
use tinyagents_store::ChildRunRef;

use crate::interrupt::TaskScope;
use crate::node::{DynNode, NodeContext, NodeError, NodeInput, NodeOutput, RawNode};
use crate::runtime::{AbortOnDrop, ChildGuard};
use crate::state::Update;
use crate::stream::StreamMode;

/// Maps a task's input to the sub-agent's user message.
pub type InputMapper = Arc<dyn Fn(&NodeInput) -> Result<String, NodeError> + Send + Sync>;
/// Maps the sub-agent's output (and the task's input) to a state update.
pub type OutputMapper = Arc<dyn Fn(&AgentOutput, &NodeInput) -> Result<Update, NodeError> + Send + Sync>;

/// Retries of a sub-agent node.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all (1: no retry).
    pub max_attempts: u32,
    /// Wait before the second attempt.
    pub initial_backoff: Duration,
    /// Factor applied to the wait after each attempt.
    pub multiplier: u32,
    /// Longest wait.
    pub max_backoff: Duration,
    /// Also retry attempts that timed out.
    pub retry_timeouts: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            initial_backoff: Duration::from_millis(100),
            multiplier: 2,
            max_backoff: Duration::from_secs(10),
            retry_timeouts: true,
        }
    }
}

impl RetryPolicy {
    /// `attempts` attempts, starting with `initial_backoff` and doubling.
    pub fn attempts(attempts: u32, initial_backoff: Duration) -> Self {
        Self {
            max_attempts: attempts.max(1),
            initial_backoff,
            ..Self::default()
        }
    }

    fn backoff(&self, failed_attempts: u32) -> Duration {
        let factor = self.multiplier.saturating_pow(failed_attempts.saturating_sub(1));
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Timeout, retry, cache and budget policy of a sub-agent node.
#[derive(Clone, Debug, PartialEq)]
pub struct SubAgentPolicy {
    /// Time limit of one attempt.
    pub timeout: Option<Duration>,
    /// Retries.
    pub retry: RetryPolicy,
    /// Reuse the output of an earlier run of the same agent on the same
    /// input (the tree's [`SubAgentCache`]).
    pub cache: bool,
    /// Limits the child asks for (narrowed by the graph run's).
    pub limits: RunLimits,
    /// Forward the child's events (and its descendants') to the graph's
    /// sink and stream.
    pub forward_events: bool,
    /// Let tools of the child and its descendants find the task (for
    /// [`interrupt`](crate::interrupt()), task scratch and graph tools).
    /// Costs one event per harness step of the child's subtree; turn off
    /// for the largest fan-outs. Free for an agent without tools (nothing
    /// in its subtree could use the scope, so none is made).
    pub task_scope: bool,
}

impl Default for SubAgentPolicy {
    fn default() -> Self {
        Self {
            timeout: None,
            retry: RetryPolicy::default(),
            cache: false,
            limits: RunLimits::new(),
            forward_events: true,
            task_scope: true,
        }
    }
}

type CacheMap = HashMap<(Arc<str>, Arc<str>), AgentOutput>;

/// Outputs of sub-agent runs by agent and input, shared by a run tree.
#[derive(Clone, Default)]
pub struct SubAgentCache {
    entries: Arc<Mutex<CacheMap>>,
    hits: Arc<AtomicU64>,
}

impl std::fmt::Debug for SubAgentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubAgentCache")
            .field("entries", &self.len())
            .field("hits", &self.hits())
            .finish()
    }
}

impl SubAgentCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }
    /// Entries stored.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Lookups that found an entry.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
    fn get(&self, agent: &Arc<str>, input: &Arc<str>) -> Option<AgentOutput> {
        let hit = self
            .entries
            .lock()
            .ok()
            .and_then(|e| e.get(&(agent.clone(), input.clone())).cloned());
        if hit.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }
    fn put(&self, agent: Arc<str>, input: Arc<str>, out: AgentOutput) {
        if let Ok(mut e) = self.entries.lock() {
            e.insert((agent, input), out);
        }
    }
}

/// A node that runs a harness agent as a child run (see the module docs).
///
/// ```
/// use tinyagents_core::ModelResponse;
/// use tinyagents_graph::{SubAgentNode, Update};
/// use tinyagents_harness::Agent;
/// use tinyagents_providers::ScriptedModel;
///
/// let agent = Agent::builder("summarizer")
///     .model(ScriptedModel::new([ModelResponse::text("short")]))
///     .build();
/// let node = SubAgentNode::new(agent)
///     .input(|input| Ok(format!("summarize: {}", input.to_value())))
///     .output(|out, _input| Ok(Update::new().set("summary", &*out.text)));
/// # let _ = node;
/// ```
#[derive(Clone)]
pub struct SubAgentNode {
    /// The agent.
    pub agent: Agent,
    /// Task input → the agent's message.
    pub input_mapper: InputMapper,
    /// Agent output → state update.
    pub output_mapper: OutputMapper,
    /// Timeout, retry, cache, budget.
    pub policy: SubAgentPolicy,
}

impl std::fmt::Debug for SubAgentNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubAgentNode")
            .field("agent", self.agent.name())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn default_input(input: &NodeInput) -> Result<String, NodeError> {
    match input {
        NodeInput::Payload(serde_json::Value::String(s)) => Ok(s.clone()),
        NodeInput::Payload(v) => match v.get("input").and_then(|i| i.as_str()) {
            Some(s) => Ok(s.to_string()),
            None => Ok(v.to_string()),
        },
        NodeInput::State(_) => Err(NodeError::Input(
            "a sub-agent node reading the graph state needs an input mapper (SubAgentNode::input)".into(),
        )),
    }
}

impl SubAgentNode {
    /// A node running `agent`. By default the input is the task's `Send`
    /// payload (a string, or the `input` field of an object) and the output
    /// is the agent's answer written to the channel named after the agent.
    pub fn new(agent: Agent) -> Self {
        let channel = agent.name().clone();
        Self {
            agent,
            input_mapper: Arc::new(default_input),
            output_mapper: Arc::new(move |out, _| Ok(Update::new().set(channel.clone(), &*out.text))),
            policy: SubAgentPolicy::default(),
        }
    }

    /// Sets the input mapper.
    #[must_use]
    pub fn input(mut self, f: impl Fn(&NodeInput) -> Result<String, NodeError> + Send + Sync + 'static) -> Self {
        self.input_mapper = Arc::new(f);
        self
    }

    /// Sets the output mapper.
    #[must_use]
    pub fn output(
        mut self,
        f: impl Fn(&AgentOutput, &NodeInput) -> Result<Update, NodeError> + Send + Sync + 'static,
    ) -> Self {
        self.output_mapper = Arc::new(f);
        self
    }

    /// Sets the policy.
    #[must_use]
    pub fn policy(mut self, policy: SubAgentPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub(crate) fn into_dyn(self) -> Arc<dyn DynNode> {
        let me = Arc::new(Prepared {
            limits: self.agent.limits().intersect(&self.policy.limits),
            plain: self.policy.timeout.is_none()
                && self.policy.retry.max_attempts <= 1
                && !self.policy.cache
                && !self.uses_scope(),
            node: self,
        });
        Arc::new(RawNode(move |input, ctx| Prepared::call(&me, input, ctx)))
    }

    /// A task scope is only reachable from a tool (`interrupt`,
    /// `with_task_scratch`, `task_recursion_stack`, graph tools), and only
    /// a tool can spawn grandchildren: an agent without tools has no use
    /// for one, whatever the policy says.
    fn uses_scope(&self) -> bool {
        self.policy.task_scope && !self.agent.tool_specs().is_empty()
    }

    fn prompt(&self, input: &NodeInput) -> Result<Arc<str>, NodeError> {
        (self.input_mapper)(input).map(Arc::from)
    }

    /// Starts one attempt, synchronously: spawns the child run (and its
    /// task scope, when used), pushes its recursion frame and spawns its
    /// tokio task. What the attempt's future keeps is the small [`Attempt`].
    fn start(&self, ctx: &NodeContext, prompt: Arc<str>, limits: &RunLimits) -> Result<Attempt, NodeError> {
        let parent = ctx.run();
        let run_env = &ctx.env.run;
        let tree = &run_env.tree;
        let want_forward = self.policy.forward_events
            && (tree.opts.config.sink.enabled() || tree.stream_for(StreamMode::EVENTS).is_some());
        let use_scope = self.uses_scope();
        // The namespace (a string per task) only when something uses it.
        let child_ns = (want_forward || use_scope).then(|| ctx.child_namespace());
        let forward = match (&child_ns, want_forward) {
            (Some(ns), true) => Some(tree.sink_for(ns)),
            _ => None,
        };
        let (scope, events) = match (child_ns, use_scope) {
            (Some(ns), true) => {
                let scope = TaskScope::new(run_env.clone(), ctx.node.clone(), ctx.task_id, ns, forward);
                let events = ChildEvents::To(scope.clone());
                (Some(ScopeGuard(scope)), events)
            }
            _ => (None, forward.map_or(ChildEvents::Discard, ChildEvents::To)),
        };
        let child = parent.spawn_child(self.agent.name().clone(), limits, events)?;
        // The task is a steering target: `Task { run_id, task_id }` and
        // `Node { run_id, node_id }` of the graph run resolve to this child.
        if let Some(hub) = tinyagents_harness::steering::SteeringHub::of(&child)
            && let (Some(graph), Some(task)) = (hub.control(parent.run_id()), hub.control(child.run_id()))
        {
            graph.register_graph_task(ctx.task_id.to_string(), ctx.node.to_string(), task);
        }
        let frame = || RecursionFrame {
            graph_id: run_env.graph.id.clone(),
            node_id: Some(ctx.node.clone()),
            run_id: child.run_id(),
            task_id: Some(ctx.task_id),
            namespace: ctx.child_namespace().split('|').map(str::to_string).collect(),
            depth: child.depth() as usize,
            parent: Some(parent.run_id()),
        };
        let mut guard = ChildGuard::new(parent.clone(), child.clone(), self.agent.name().clone());
        if let Err(e) = tree.tracker.check_depth(run_env.stack.len(), frame) {
            guard.ok = false;
            return Err(e.into());
        }
        if let Some(ScopeGuard(scope)) = &scope {
            scope.set_child(child.run_id(), child.depth());
        }
        let run = self
            .agent
            .start(&child, self.agent.base_transcript().clone(), [Message::user(prompt)]);
        let agent = self.agent.clone();
        let handle = tokio::spawn(async move {
            let mut guard = guard;
            let r = agent.drive(guard.child(), run).await;
            guard.ok = r.is_ok();
            r
        });
        Ok(Attempt {
            handle: AbortOnDrop(handle),
            child,
            scope,
        })
    }

    /// Waits for an attempt, under the policy's timeout and the task
    /// scope's interrupts.
    async fn wait(&self, ctx: &NodeContext, mut a: Attempt) -> (Result<AgentOutput, NodeError>, ChildRunRef) {
        let waited = {
            let handle = &mut a.handle.0;
            let scope = a.scope.as_ref().map(|s| &s.0);
            let waited = async move {
                match scope {
                    Some(scope) => tokio::select! {
                        r = handle => Some(r),
                        () = scope.interrupted() => None,
                    },
                    None => Some(handle.await),
                }
            };
            // The timer is boxed: only nodes with a timeout pay for it.
            match self.policy.timeout {
                Some(t) => Box::pin(tokio::time::timeout(t, waited))
                    .await
                    .map_err(|_| NodeError::Timeout(t)),
                None => Ok(waited.await),
            }
        };
        self.conclude(ctx, a, waited)
    }

    /// The end of an attempt: stops the child if it still runs, collects the
    /// interrupts of its subtree, and gives its result and run reference.
    fn conclude(&self, ctx: &NodeContext, a: Attempt, waited: Waited) -> (Result<AgentOutput, NodeError>, ChildRunRef) {
        let Attempt { handle, child, scope } = a;
        drop(handle);
        let interrupts = scope.as_ref().map(|s| s.0.take_interrupts()).unwrap_or_default();
        let ok = matches!(&waited, Ok(Some(Ok(Ok(_)))));
        let reference = ChildRunRef {
            task_id: ctx.task_id,
            node: ctx.node.0.clone(),
            kind: tinyagents_store::ChildRunKind::Subagent,
            run_id: child.run_id(),
            parent_run_id: ctx.run().run_id(),
            depth: child.depth(),
            ok,
            usage: child.total_usage(),
            cost: child.total_cost(),
        };
        let result = match waited {
            Err(e) => Err(e),
            Ok(None) => Err(NodeError::Interrupted(interrupts)),
            Ok(Some(Ok(Ok(out)))) => Ok(out),
            Ok(Some(Ok(Err(e)))) => Err(NodeError::Run(Box::new(e))),
            Ok(Some(Err(e))) if e.is_panic() => Err(NodeError::Panicked(format!(
                "sub-agent `{}` panicked",
                self.agent.name()
            ))),
            Ok(Some(Err(_))) => Err(NodeError::Failed(format!(
                "sub-agent `{}` was cancelled",
                self.agent.name()
            ))),
        };
        drop(scope);
        (result, reference)
    }
}

/// What waiting for a child gave: `Err` on timeout, `None` when its subtree
/// raised an interrupt, else the join result of its task.
type Waited = Result<Option<Result<Result<AgentOutput, RunError>, tokio::task::JoinError>>, NodeError>;

/// A child run in flight: its task (aborted when dropped), its context and
/// its task scope (unregistered when dropped).
struct Attempt {
    handle: AbortOnDrop<Result<AgentOutput, RunError>>,
    child: RunContext,
    scope: Option<ScopeGuard>,
}

/// A sub-agent node as the runtime calls it: the node, the limits its
/// children ask for, and whether its policy needs anything beyond one
/// attempt (computed once, not per task).
struct Prepared {
    node: SubAgentNode,
    limits: RunLimits,
    /// No timeout, no retry, no cache, no task scope.
    plain: bool,
}

impl Prepared {
    fn call(me: &Arc<Self>, input: NodeInput, ctx: NodeContext) -> BoxFuture<'static, Result<NodeOutput, NodeError>> {
        if !me.plain {
            let me = me.clone();
            return Box::pin(me.clone().call_with_policy(input, ctx));
        }
        // The plain path: the child starts here, before the task's future
        // exists; the future keeps the node, the task's input and context
        // and the child's handle (about 130 bytes), nothing else.
        let started = me.node.prompt(&input).and_then(|p| me.node.start(&ctx, p, &me.limits));
        let attempt = match started {
            Ok(a) => a,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let me = me.clone();
        Box::pin(async move {
            let mut attempt = attempt;
            let joined = (&mut attempt.handle.0).await;
            let (result, reference) = me.node.conclude(&ctx, attempt, Ok(Some(joined)));
            let update = (me.node.output_mapper)(&result?, &input)?;
            Ok(NodeOutput {
                update,
                child_runs: vec![reference],
                ..NodeOutput::default()
            })
        })
    }

    /// Cache, retries with backoff, timeouts and task scopes.
    async fn call_with_policy(self: Arc<Self>, input: NodeInput, ctx: NodeContext) -> Result<NodeOutput, NodeError> {
        let node = &self.node;
        let prompt = node.prompt(&input)?;
        let name = node.agent.name();
        let tree = &ctx.env.run.tree;
        if node.policy.cache
            && let Some(out) = tree.cache.get(name, &prompt)
        {
            let update = (node.output_mapper)(&out, &input)?;
            return Ok(NodeOutput {
                update,
                cached: true,
                ..NodeOutput::default()
            });
        }
        let mut refs = Vec::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            // In its own block, so that no result is kept across the backoff.
            let backoff = {
                let result = match node.start(&ctx, prompt.clone(), &self.limits) {
                    Ok(a) => {
                        let (result, reference) = node.wait(&ctx, a).await;
                        refs.push(reference);
                        result
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(out) => {
                        if node.policy.cache {
                            tree.cache.put(name.clone(), prompt.clone(), out.clone());
                        }
                        let update = (node.output_mapper)(&out, &input)?;
                        return Ok(NodeOutput {
                            update,
                            child_runs: refs,
                            ..NodeOutput::default()
                        });
                    }
                    Err(e) => {
                        let retryable = match &e {
                            NodeError::Timeout(_) => node.policy.retry.retry_timeouts,
                            NodeError::Run(r) => {
                                matches!(&**r, RunError::Model { source, .. } if source.is_retryable())
                            }
                            _ => false,
                        };
                        if !retryable || attempt >= node.policy.retry.max_attempts {
                            return Err(e);
                        }
                        node.policy.retry.backoff(attempt)
                    }
                }
            };
            Box::pin(tokio::time::sleep(backoff)).await;
        }
    }
}

/// Forgets the task scope's runs however the attempt ends (even when the
/// attempt's future is dropped).
struct ScopeGuard(Arc<TaskScope>);

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        self.0.unregister_all();
    }
}
