//! [`SubAgentNode`]: a graph node that runs a harness agent as a child run.
//!
//! The child is spawned with [`RunContext::spawn_child`] from the graph run
//! that owns the task: its own `run_id`, the same `root_run_id`,
//! `parent_run_id` = the graph run, one level deeper, counted by the same
//! depth cap and descendant budget as every other child. It runs inside the
//! graph task's own future (the task, not a second tokio task, is the unit
//! of work: a fan-out of N tasks keeps N futures, not 2N); a guard in that
//! future rolls its usage and cost up into the graph run and emits
//! `SubAgentCompleted` on every exit path (success, error, panic, timeout,
//! interrupt, the task dropped). The reference to the child run is
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
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use tinyagents_core::{
    BoxFuture, ChildEvents, Message, NodeId, RecursionFrame, RunContext, RunError, RunId, RunLimits, TaskId,
};
use tinyagents_harness::{Agent, AgentOutput};
use tinyagents_store::{ChildRunRef, InterruptRecord};

use crate::interrupt::TaskScope;
use crate::node::{DynNode, NodeContext, NodeError, NodeInput, NodeOutput, RawNode};
use crate::runtime::ChildGuard;
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
    /// Costs a scope per task (a few hundred bytes, and a registry entry
    /// per run of the child's subtree, found through a spawn watcher: no
    /// event of the subtree is built for it). Free for an agent without
    /// tools (nothing in its subtree could use the scope, so none is made).
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

/// The default input mapper, shared: [`SubAgentNode::prompt`] recognizes
/// it and makes a string payload's prompt without the mapper's `String`.
fn default_input_mapper() -> &'static InputMapper {
    static DEFAULT: std::sync::LazyLock<InputMapper> = std::sync::LazyLock::new(|| Arc::new(default_input));
    &DEFAULT
}

impl SubAgentNode {
    /// A node running `agent`. By default the input is the task's `Send`
    /// payload (a string, or the `input` field of an object) and the output
    /// is the agent's answer written to the channel named after the agent.
    pub fn new(agent: Agent) -> Self {
        let channel = agent.name().clone();
        Self {
            agent,
            input_mapper: default_input_mapper().clone(),
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

    pub(crate) fn into_dyn(self, name: NodeId) -> Arc<dyn DynNode> {
        let me = Arc::new(Prepared {
            name,
            limits: self.agent.limits().intersect(&self.policy.limits),
            plain: self.policy.timeout.is_none() && self.policy.retry.max_attempts <= 1 && !self.policy.cache,
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
        if let NodeInput::Payload(serde_json::Value::String(s)) = input
            && Arc::ptr_eq(&self.input_mapper, default_input_mapper())
        {
            // What the default mapper gives, in one allocation, not two.
            return Ok(Arc::from(s.as_str()));
        }
        (self.input_mapper)(input).map(Arc::from)
    }

    /// Starts one attempt, synchronously: spawns the child run (watched by
    /// the task scope, when there is one), checks and pushes its recursion
    /// frame, and builds the child's driver. The child runs inside the graph
    /// task's own future (no tokio task of its own): the returned
    /// [`Attempt`] is its driver, the guard that rolls it up (usage, cost,
    /// `SubAgentCompleted`) when it ends or is dropped, and its task scope.
    /// Also returns the child's context.
    fn start(
        &self,
        ctx: &NodeContext,
        prompt: Arc<str>,
        limits: &RunLimits,
    ) -> Result<(Attempt<impl Future<Output = Driven> + Send + 'static>, RunContext), NodeError> {
        let parent = ctx.run();
        let run_env = &ctx.env.run;
        let tree = &run_env.tree;
        let want_forward = self.policy.forward_events
            && (tree.opts.config.sink.enabled() || tree.stream_for(StreamMode::EVENTS).is_some());
        let use_scope = self.uses_scope();
        // The namespace (a string per task) only when something uses it.
        let child_ns = (want_forward || use_scope).then(|| ctx.child_namespace());
        let events = match (&child_ns, want_forward) {
            (Some(ns), true) => ChildEvents::To(tree.sink_for(ns)),
            _ => ChildEvents::Discard,
        };
        let name = self.agent.name().clone();
        let (child, scope) = match child_ns.filter(|_| use_scope) {
            Some(ns) => {
                let scope = TaskScope::new(run_env.clone(), ctx.node.clone(), ctx.task_id, ns);
                let child = parent.spawn_watched_child(name, limits, events, scope.clone())?;
                (child, Some(ScopeGuard(scope)))
            }
            None => (parent.spawn_child(name, limits, events)?, None),
        };
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
        let guard = ChildGuard::new(parent.clone(), child.clone());
        tree.tracker.check_depth(run_env.stack.len(), frame)?;
        if let Some(ScopeGuard(scope)) = &scope {
            scope.set_child(child.run_id(), child.depth());
        }
        let run = self
            .agent
            .start(&child, self.agent.base_transcript().clone(), [Message::user(prompt)]);
        let driven = self.agent.drive_owned(child.clone(), run).map(move |r| {
            let mut guard = guard;
            guard.ok = r.is_ok();
            (r, guard.child().clone())
        });
        Ok((Attempt { driven, scope }, child))
    }

    /// The reference to a child run, for task events and checkpoints.
    fn reference(&self, node: &NodeId, task: (TaskId, RunId), child: &RunContext, ok: bool) -> ChildRunRef {
        ChildRunRef {
            task_id: task.0,
            node: node.0.clone(),
            kind: tinyagents_store::ChildRunKind::Subagent,
            run_id: child.run_id(),
            parent_run_id: task.1,
            depth: child.depth(),
            ok,
            usage: child.total_usage(),
            cost: child.total_cost(),
        }
    }
}

/// What a child's driver gives: its result and its context.
type Driven = (Result<AgentOutput, RunError>, RunContext);

pin_project_lite::pin_project! {
    /// One attempt in flight: the child's driver, raced with the interrupts
    /// of its subtree when it has a task scope. Dropping it stops the child
    /// (rolled up by its guard) and forgets the scope's runs.
    struct Attempt<F> {
        #[pin]
        driven: F,
        scope: Option<ScopeGuard>,
    }
}

impl<F: Future<Output = Driven>> Future for Attempt<F> {
    /// The child's result and context, or the interrupts raised in its
    /// subtree (the child is then stopped when the attempt is dropped).
    type Output = Result<Driven, Vec<InterruptRecord>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(driven) = this.driven.poll(cx) {
            return Poll::Ready(Ok(driven));
        }
        match this.scope {
            Some(ScopeGuard(scope)) if scope.poll_interrupted(cx) => Poll::Ready(Err(scope.take_interrupts())),
            _ => Poll::Pending,
        }
    }
}

/// A sub-agent node as the runtime calls it: the node, the limits its
/// children ask for, and whether its policy needs anything beyond one
/// attempt (computed once, not per task).
struct Prepared {
    node: SubAgentNode,
    /// The node's name in its graph.
    name: NodeId,
    limits: RunLimits,
    /// No timeout, no retry, no cache.
    plain: bool,
}

impl Prepared {
    fn call(me: &Arc<Self>, input: NodeInput, ctx: NodeContext) -> BoxFuture<'static, Result<NodeOutput, NodeError>> {
        if !me.plain {
            return Box::pin(Arc::clone(me).call_with_policy(input, ctx));
        }
        // The plain path: the child is spawned here, before the task's
        // future exists; the future is the child's attempt followed by the
        // output mapping (one allocation: the driver, the guard, the scope,
        // the node, the task's input, its step and index), nothing else.
        let started = me.node.prompt(&input).and_then(|p| me.node.start(&ctx, p, &me.limits));
        let attempt = match started {
            Ok((attempt, _)) => attempt,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let (me, env, index) = (me.clone(), ctx.env, ctx.index);
        Box::pin(attempt.map(move |waited| {
            let (r, child) = waited.map_err(NodeError::Interrupted)?;
            let task = (TaskId::new(env.step, index), env.run.run.run_id());
            let reference = me.node.reference(&me.name, task, &child, r.is_ok());
            let out = r.map_err(|e| NodeError::Run(Box::new(e)))?;
            let update = (me.node.output_mapper)(&out, &input)?;
            Ok(NodeOutput {
                update,
                child_runs: vec![reference],
                ..NodeOutput::default()
            })
        }))
    }

    /// Cache, retries with backoff and timeouts.
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
        let task = (ctx.task_id, ctx.run().run_id());
        let mut refs = Vec::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            // In its own block, so that no result is kept across the backoff.
            let backoff = {
                let result = match node.start(&ctx, prompt.clone(), &self.limits) {
                    Ok((started, child)) => {
                        // Boxed: the policy's future keeps one pointer, not
                        // the child's driver. A child still running when the
                        // wait ends (timeout) is dropped with its box, here.
                        let waited = match node.policy.timeout {
                            Some(t) => Box::pin(tokio::time::timeout(t, started))
                                .await
                                .map_err(|_| NodeError::Timeout(t)),
                            None => Ok(Box::pin(started).await),
                        };
                        let result = match waited {
                            Err(e) => Err(e),
                            Ok(Err(interrupts)) => Err(NodeError::Interrupted(interrupts)),
                            Ok(Ok((r, _))) => r.map_err(|e| NodeError::Run(Box::new(e))),
                        };
                        refs.push(node.reference(&self.name, task, &child, result.is_ok()));
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
