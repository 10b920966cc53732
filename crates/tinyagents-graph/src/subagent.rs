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

use tinyagents_core::{ChildEvents, Message, RecursionFrame, RunError, RunLimits};
use tinyagents_harness::{Agent, AgentOutput};
use tinyagents_store::ChildRunRef;

use crate::interrupt::{TaskScope, TaskSink};
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
    /// Costs one event per harness step; turn off for the largest fan-outs.
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
        let me = Arc::new(self);
        Arc::new(RawNode(move |input, ctx| {
            let me = me.clone();
            Box::pin(async move { me.call(input, ctx).await }) as tinyagents_core::BoxFuture<'static, _>
        }))
    }

    fn asked_limits(&self) -> RunLimits {
        self.agent.limits().intersect(&self.policy.limits)
    }

    async fn call(&self, input: NodeInput, ctx: NodeContext) -> Result<NodeOutput, NodeError> {
        let prompt: Arc<str> = (self.input_mapper)(&input)?.into();
        let name = self.agent.name().clone();
        let tree = ctx.env.run.tree.clone();
        if self.policy.cache
            && let Some(out) = tree.cache.get(&name, &prompt)
        {
            let update = (self.output_mapper)(&out, &input)?;
            return Ok(NodeOutput {
                update,
                cached: true,
                ..NodeOutput::default()
            });
        }
        let limits = self.asked_limits();
        let mut refs = Vec::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(&ctx, &prompt, &limits, &mut refs).await {
                Ok(out) => {
                    if self.policy.cache {
                        tree.cache.put(name.clone(), prompt.clone(), out.clone());
                    }
                    let update = (self.output_mapper)(&out, &input)?;
                    return Ok(NodeOutput {
                        update,
                        child_runs: refs,
                        ..NodeOutput::default()
                    });
                }
                Err(e) => {
                    let retryable = match &e {
                        NodeError::Timeout(_) => self.policy.retry.retry_timeouts,
                        NodeError::Run(r) => matches!(&**r, RunError::Model { source, .. } if source.is_retryable()),
                        _ => false,
                    };
                    if retryable && attempt < self.policy.retry.max_attempts {
                        tokio::time::sleep(self.policy.retry.backoff(attempt)).await;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    async fn attempt(
        &self,
        ctx: &NodeContext,
        prompt: &Arc<str>,
        limits: &RunLimits,
        refs: &mut Vec<ChildRunRef>,
    ) -> Result<AgentOutput, NodeError> {
        let parent = ctx.run();
        let run_env = &ctx.env.run;
        let tree = run_env.tree.clone();
        let want_forward = self.policy.forward_events
            && (tree.opts.config.sink.enabled() || tree.stream_for(StreamMode::EVENTS).is_some());
        // The namespace (a string per task) only when something uses it.
        let child_ns = (want_forward || self.policy.task_scope).then(|| ctx.child_namespace());
        let forward = match (&child_ns, want_forward) {
            (Some(ns), true) => Some(tree.sink_for(ns)),
            _ => None,
        };
        let scope = match (&child_ns, self.policy.task_scope) {
            (Some(ns), true) => Some(TaskScope::new(
                tree.clone(),
                run_env.graph.id.clone(),
                ctx.node.clone(),
                ctx.task_id,
                run_env.ns.clone(),
                ns.clone(),
                run_env.stack.clone(),
            )),
            _ => None,
        };
        let _unregister = ScopeGuard(scope.clone());
        let events = match (&scope, forward) {
            (Some(scope), forward) => ChildEvents::To(Arc::new(TaskSink {
                scope: scope.clone(),
                forward,
            })),
            (None, Some(f)) => ChildEvents::To(f),
            (None, None) => ChildEvents::Discard,
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
        if let Some(scope) = &scope {
            let mut stack = (*run_env.stack).clone();
            stack.push(frame());
            if let Ok(mut s) = scope.stack.lock() {
                *s = Arc::new(stack);
            }
            scope.register(child.run_id());
        }
        let run = self.agent.start(
            &child,
            self.agent.base_transcript().clone(),
            [Message::user(prompt.clone())],
        );
        let agent = self.agent.clone();
        let task_child = child.clone();
        let handle = tokio::spawn(async move {
            let mut guard = guard;
            let r = agent.drive(&task_child, run).await;
            guard.ok = r.is_ok();
            r
        });
        let mut handle = AbortOnDrop(handle);
        let waited = async {
            match &scope {
                Some(scope) => tokio::select! {
                    r = &mut handle.0 => Some(r),
                    () = scope.interrupted() => None,
                },
                None => Some((&mut handle.0).await),
            }
        };
        let waited = match self.policy.timeout {
            Some(t) => tokio::time::timeout(t, waited).await.map_err(|_| NodeError::Timeout(t)),
            None => Ok(waited.await),
        };
        drop(handle);
        let interrupts = scope.as_ref().map(|s| s.take_interrupts()).unwrap_or_default();
        let ok = matches!(&waited, Ok(Some(Ok(Ok(_)))));
        refs.push(ChildRunRef {
            task_id: ctx.task_id,
            node: ctx.node.0.clone(),
            kind: tinyagents_store::ChildRunKind::Subagent,
            run_id: child.run_id(),
            parent_run_id: parent.run_id(),
            depth: child.depth(),
            ok,
            usage: child.total_usage(),
            cost: child.total_cost(),
        });
        match waited? {
            None => Err(NodeError::Interrupted(interrupts)),
            Some(Ok(Ok(out))) => Ok(out),
            Some(Ok(Err(e))) => Err(NodeError::Run(Box::new(e))),
            Some(Err(e)) if e.is_panic() => Err(NodeError::Panicked(format!(
                "sub-agent `{}` panicked",
                self.agent.name()
            ))),
            Some(Err(_)) => Err(NodeError::Failed(format!(
                "sub-agent `{}` was cancelled",
                self.agent.name()
            ))),
        }
    }
}

/// Forgets the task scope's runs however the attempt ends (even when the
/// attempt's future is dropped).
struct ScopeGuard(Option<Arc<TaskScope>>);

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.unregister_all();
        }
    }
}
