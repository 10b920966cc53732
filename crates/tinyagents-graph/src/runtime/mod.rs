//! Running a compiled graph: options, outputs, and the public entry points
//! (invoke, stream, resume, replay, fork, state and history).
//!
//! A graph run is a run of the run tree: [`CompiledGraph::invoke`] makes a
//! root [`RunContext`], [`CompiledGraph::invoke_in`] a child of an existing
//! run through [`RunContext::spawn_child`] (the one spawn path), and so do
//! subgraph and sub-agent nodes. Usage and cost of every child roll up to
//! the graph run.
//!
//! # Supersteps
//! A run is a sequence of supersteps. The tasks of a step run concurrently
//! on the tokio runtime (on a multi-thread runtime, CPU-bound nodes use
//! every worker thread), at most `max_concurrency` at a time. When all are
//! done, their writes are applied through the channels' reducers in task
//! order, the routes out of the step (static edges, routers, commands,
//! sends and joins) give the next step's tasks, and a checkpoint is written.
//!
//! # Durability
//! With a checkpointer, every finished task's writes are saved as it
//! finishes (batched: one transaction per batch of whatever finished while
//! the previous batch was being written), and a checkpoint after every
//! step records the changed channels, the next tasks, the recursion stack
//! and the child runs. After a crash, [`CompiledGraph::resume`] continues
//! from the last checkpoint and re-runs only tasks whose writes were not
//! saved. [`Durability::Step`] saves only at the end of each step (fewer,
//! larger transactions; a crash loses the step's finished tasks).

mod execute;
mod run_loop;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use tinyagents_core::{
    ChildEvents, Cost, EventKind, RecursionFrame, RecursionPolicy, RunConfig, RunContext, RunLimits, RunMeta,
    SharedSink, TeeSink, Usage,
};
use tinyagents_store::{CheckpointSummary, Checkpointer, ChildRunRef, InterruptRecord, StoreError};
use tokio::sync::mpsc;

use crate::builder::{CompiledGraph, GraphInner};
use crate::error::GraphError;
use crate::node::{NodeContext, NodeError};
use crate::recursion::Tracker;
use crate::state::{Snapshot, Update};
use crate::stream::{GraphStream, StreamMode, StreamSink, StreamTx};
use crate::subagent::SubAgentCache;

pub(crate) use run_loop::{RunResult, Start, run_graph};

/// When task results are saved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// As tasks finish (batched): a crash loses no finished task.
    #[default]
    Task,
    /// Once per superstep, with the checkpoint (a crash mid-step re-runs the
    /// step's tasks; a failed or interrupted step still saves its finished
    /// tasks).
    Step,
}

/// How a graph is run.
#[derive(Clone)]
pub struct RunOptions {
    /// Limits, event sink and prices of the run (for `invoke`: of the root).
    pub config: RunConfig,
    /// The checkpoint thread; defaults to the root run id when a
    /// checkpointer is set.
    pub thread_id: Option<Arc<str>>,
    /// Where checkpoints go; `None`: no checkpoints (and no resume).
    pub checkpointer: Option<Arc<dyn Checkpointer>>,
    /// Recursion bounds, enforced over the whole tree.
    pub recursion: RecursionPolicy,
    /// Tasks in flight at once, per superstep of each graph run: never
    /// more, and exactly this many while the step has tasks left to start.
    pub max_concurrency: usize,
    /// When task results are saved.
    pub durability: Durability,
    /// Cache of sub-agent results shared by the tree (children inherit it);
    /// a fresh one per run when `None`.
    pub cache: Option<SubAgentCache>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            config: RunConfig::default(),
            thread_id: None,
            checkpointer: None,
            recursion: RecursionPolicy::default(),
            max_concurrency: 1024,
            durability: Durability::Task,
            cache: None,
        }
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("thread_id", &self.thread_id)
            .field("checkpointing", &self.checkpointer.is_some())
            .field("recursion", &self.recursion)
            .field("max_concurrency", &self.max_concurrency)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl RunOptions {
    /// Defaults: no checkpointer, default recursion policy, 1,024 tasks in flight.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the run configuration (limits, sink, prices).
    #[must_use]
    pub fn config(mut self, config: RunConfig) -> Self {
        self.config = config;
        self
    }
    /// Sets the event sink.
    #[must_use]
    pub fn sink(mut self, sink: SharedSink) -> Self {
        self.config.sink = sink;
        self
    }
    /// Sets the run limits.
    #[must_use]
    pub fn limits(mut self, limits: RunLimits) -> Self {
        self.config.limits = limits;
        self
    }
    /// Sets the checkpoint thread.
    #[must_use]
    pub fn thread(mut self, thread_id: impl Into<Arc<str>>) -> Self {
        self.thread_id = Some(thread_id.into());
        self
    }
    /// Sets the checkpointer.
    #[must_use]
    pub fn checkpointer(mut self, store: Arc<dyn Checkpointer>) -> Self {
        self.checkpointer = Some(store);
        self
    }
    /// Sets the recursion policy.
    #[must_use]
    pub fn recursion(mut self, policy: RecursionPolicy) -> Self {
        self.recursion = policy;
        self
    }
    /// Sets the concurrency cap.
    #[must_use]
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }
    /// Sets the durability mode.
    #[must_use]
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }
    /// Shares a sub-agent cache.
    #[must_use]
    pub fn cache(mut self, cache: SubAgentCache) -> Self {
        self.cache = Some(cache);
        self
    }
}

/// Values to resume an interrupted run with.
#[derive(Clone, Debug, Default)]
pub struct Resume {
    all: Option<Value>,
    by_id: HashMap<String, Value>,
}

impl Resume {
    /// Continue without values (after a static interrupt or a crash).
    pub fn none() -> Self {
        Self::default()
    }
    /// Deliver `value` to every pending interrupt (usually there is one).
    pub fn value(value: impl serde::Serialize) -> Self {
        Self {
            all: Some(serde_json::to_value(value).unwrap_or(Value::Null)),
            by_id: HashMap::new(),
        }
    }
    /// Deliver `value` to the interrupt `id` only.
    pub fn to(id: impl Into<String>, value: impl serde::Serialize) -> Self {
        Self::default().and(id, value)
    }
    /// Also deliver `value` to the interrupt `id`.
    #[must_use]
    pub fn and(mut self, id: impl Into<String>, value: impl serde::Serialize) -> Self {
        self.by_id
            .insert(id.into(), serde_json::to_value(value).unwrap_or(Value::Null));
        self
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    /// No task left.
    Done,
    /// Paused on interrupts; resume with [`CompiledGraph::resume`].
    Interrupted,
}

/// The result of a graph run.
#[derive(Clone, Debug)]
pub struct GraphOutput {
    /// Done or interrupted.
    pub status: RunStatus,
    /// The state (an object of channels).
    pub state: Value,
    /// Pending interrupts (when interrupted), at any depth.
    pub interrupts: Vec<InterruptRecord>,
    /// Identity of the graph run.
    pub run: RunMeta,
    /// Supersteps run by this invocation.
    pub steps: u64,
    /// The checkpoint thread, when checkpointing.
    pub thread_id: Option<Arc<str>>,
    /// The last checkpoint written.
    pub checkpoint_id: Option<u64>,
    /// Child runs (sub-agents, subgraphs) of this invocation's steps.
    pub child_runs: Vec<ChildRunRef>,
    /// Usage of the run and all its descendants.
    pub total_usage: Usage,
    /// Cost of the run and all its descendants.
    pub total_cost: Cost,
}

impl GraphOutput {
    /// True when the run paused on interrupts.
    pub fn is_interrupted(&self) -> bool {
        self.status == RunStatus::Interrupted
    }
    /// The state as `S`.
    pub fn state_as<S: serde::de::DeserializeOwned>(&self) -> Result<S, serde_json::Error> {
        S::deserialize(&self.state)
    }
    /// One channel's value.
    pub fn get(&self, channel: &str) -> Option<&Value> {
        self.state.get(channel)
    }
}

/// A checkpoint's state, as read by [`CompiledGraph::get_state`].
#[derive(Clone, Debug, PartialEq)]
pub struct StateView {
    /// The checkpoint.
    pub checkpoint_id: u64,
    /// The superstep it follows.
    pub step: u64,
    /// Channel values.
    pub state: Value,
    /// Nodes of the next step's tasks (in order, with repeats for sends).
    pub next: Vec<String>,
    /// Tasks of the next step whose results are already saved.
    pub saved_tasks: usize,
    /// Pending interrupts.
    pub interrupts: Vec<InterruptRecord>,
    /// The recursion stack recorded with it.
    pub recursion_stack: Vec<RecursionFrame>,
    /// Child runs recorded with it (of the step it follows and of saved tasks).
    pub child_runs: Vec<ChildRunRef>,
}

/// Shared by every graph run of one tree.
pub(crate) struct TreeEnv {
    pub tracker: Arc<Tracker>,
    pub opts: RunOptions,
    pub thread_id: Option<Arc<str>>,
    pub stream: Option<StreamTx>,
    pub resume: HashMap<String, Value>,
    pub cache: SubAgentCache,
}

impl TreeEnv {
    pub fn resume_value(&self, id: &str) -> Option<Value> {
        self.resume.get(id).cloned()
    }
    pub fn stream_for(&self, mode: StreamMode) -> Option<&StreamTx> {
        self.stream.as_ref().filter(|s| s.modes.contains(mode))
    }
    /// The sink for a run whose events belong to namespace `ns`.
    pub fn sink_for(&self, ns: &Arc<str>) -> SharedSink {
        match self.stream_for(StreamMode::EVENTS) {
            Some(tx) => {
                let s: SharedSink = Arc::new(StreamSink {
                    tx: tx.clone(),
                    namespace: ns.clone(),
                });
                Arc::new(TeeSink(self.opts.config.sink.clone(), s))
            }
            None => self.opts.config.sink.clone(),
        }
    }
}

/// One graph run.
pub(crate) struct RunEnv {
    pub graph: Arc<GraphInner>,
    pub run: RunContext,
    pub ns: Arc<str>,
    pub stack: Arc<Vec<RecursionFrame>>,
    pub tree: Arc<TreeEnv>,
}

/// One superstep of a graph run.
pub(crate) struct StepEnv {
    pub run: Arc<RunEnv>,
    pub step: u64,
    pub checkpoint_id: u64,
    pub snapshot: Arc<Snapshot>,
}

fn input_update(graph: &GraphInner, input: Value) -> Result<Update, GraphError> {
    match input {
        Value::Null => Ok(Update::new()),
        Value::Object(map) => Ok(Update {
            writes: map.into_iter().map(|(k, v)| (Arc::from(k), v)).collect(),
            error: None,
        }),
        other => Err(GraphError::Input {
            graph_id: graph.id.clone(),
            message: format!("expected an object of channel values, got {other}"),
        }),
    }
}

fn output(run: &RunContext, thread_id: Option<Arc<str>>, r: RunResult) -> GraphOutput {
    GraphOutput {
        status: if r.interrupts.is_empty() {
            RunStatus::Done
        } else {
            RunStatus::Interrupted
        },
        state: r.state,
        interrupts: r.interrupts,
        run: run.meta().clone(),
        steps: r.steps,
        thread_id,
        checkpoint_id: r.checkpoint_id,
        child_runs: r.child_runs,
        total_usage: run.total_usage(),
        total_cost: run.total_cost(),
    }
}

impl CompiledGraph {
    fn tree(
        &self,
        opts: &RunOptions,
        run: &RunContext,
        stream: Option<StreamTx>,
        resume: HashMap<String, Value>,
    ) -> Arc<TreeEnv> {
        let thread_id = opts.checkpointer.as_ref().map(|_| {
            opts.thread_id
                .clone()
                .unwrap_or_else(|| run.root_run_id().to_string().into())
        });
        Arc::new(TreeEnv {
            tracker: Arc::new(Tracker::new(opts.recursion.clone())),
            opts: opts.clone(),
            thread_id,
            stream,
            resume,
            cache: opts.cache.clone().unwrap_or_default(),
        })
    }

    fn root_env(&self, run: RunContext, tree: Arc<TreeEnv>) -> Arc<RunEnv> {
        let frame = RecursionFrame {
            graph_id: self.0.id.clone(),
            node_id: None,
            run_id: run.run_id(),
            task_id: None,
            namespace: Vec::new(),
            depth: run.depth() as usize,
            parent: run.meta().parent_run_id,
        };
        Arc::new(RunEnv {
            graph: self.0.clone(),
            run,
            ns: "".into(),
            stack: Arc::new(vec![frame]),
            tree,
        })
    }

    async fn start(
        &self,
        run: RunContext,
        opts: &RunOptions,
        start: Start,
        stream: Option<StreamTx>,
        resume: HashMap<String, Value>,
    ) -> Result<GraphOutput, GraphError> {
        let tree = self.tree(opts, &run, stream, resume);
        let thread = tree.thread_id.clone();
        let env = self.root_env(run.clone(), tree);
        let r = run_graph(env, start).await?;
        Ok(output(&run, thread, r))
    }

    fn root_run(&self, opts: &RunOptions, stream: Option<&StreamTx>) -> RunContext {
        let mut config = opts.config.clone();
        if let Some(tx) = stream.filter(|s| s.modes.contains(StreamMode::EVENTS)) {
            let s: SharedSink = Arc::new(StreamSink {
                tx: tx.clone(),
                namespace: "".into(),
            });
            config.sink = Arc::new(TeeSink(config.sink, s));
        }
        RunContext::root(self.0.id.0.clone(), &config)
    }

    /// Runs the graph as a new root run on `input` (an object of channel
    /// values, e.g. a state struct; `null` for none). With a checkpointer
    /// and a thread that already has checkpoints, the run continues from
    /// the thread's latest state.
    pub async fn invoke(&self, input: impl serde::Serialize, opts: &RunOptions) -> Result<GraphOutput, GraphError> {
        let update = input_update(&self.0, to_value(&self.0, input)?)?;
        let run = self.root_run(opts, None);
        self.start(run, opts, Start::Input(update), None, HashMap::new()).await
    }

    /// Runs the graph as a child run of `parent` (same root, one level
    /// deeper, counted by the parent's budgets); usage rolls up to `parent`.
    pub async fn invoke_in(
        &self,
        parent: &RunContext,
        input: impl serde::Serialize,
        opts: &RunOptions,
    ) -> Result<GraphOutput, GraphError> {
        let update = input_update(&self.0, to_value(&self.0, input)?)?;
        let child = parent.spawn_child(self.0.id.0.clone(), &opts.config.limits, ChildEvents::Parent)?;
        // Rolls the child up (and emits `SubAgentCompleted`) however this
        // future ends, even when it is dropped.
        let mut guard = ChildGuard::new(parent.clone(), child.clone());
        let r = self
            .start(child, opts, Start::Input(update), None, HashMap::new())
            .await;
        guard.ok = r.is_ok();
        drop(guard);
        r
    }

    /// Streams a run (see [`crate::stream`]). Must be called within a tokio
    /// runtime.
    pub fn stream(&self, input: impl serde::Serialize, opts: &RunOptions, modes: StreamMode) -> GraphStream {
        let start = to_value(&self.0, input)
            .and_then(|v| input_update(&self.0, v))
            .map(Start::Input);
        self.spawn_stream(start, opts, modes, HashMap::new())
    }

    /// Streams the resumption of an interrupted or crashed run.
    pub fn stream_resume(&self, resume: Resume, opts: &RunOptions, modes: StreamMode) -> GraphStream {
        match self.resume_values(resume, opts) {
            Ok(values) => self.spawn_stream(
                Ok(Start::Resume {
                    checkpoint: None,
                    use_saved: true,
                }),
                opts,
                modes,
                values,
            ),
            Err(e) => self.spawn_stream(Err(e), opts, modes, HashMap::new()),
        }
    }

    fn spawn_stream(
        &self,
        start: Result<Start, GraphError>,
        opts: &RunOptions,
        modes: StreamMode,
        resume: HashMap<String, Value>,
    ) -> GraphStream {
        let (tx, rx) = mpsc::unbounded_channel();
        let stx = StreamTx { tx, modes };
        let graph = self.clone();
        let opts = opts.clone();
        let handle = tokio::spawn(async move {
            let start = start?;
            let run = graph.root_run(&opts, Some(&stx));
            graph.start(run, &opts, start, Some(stx), resume).await
        });
        GraphStream {
            rx,
            handle: Some(handle),
        }
    }

    fn store(&self, opts: &RunOptions) -> Result<(Arc<dyn Checkpointer>, Arc<str>), GraphError> {
        match (&opts.checkpointer, &opts.thread_id) {
            (Some(c), Some(t)) => Ok((c.clone(), t.clone())),
            (None, _) => Err(GraphError::Resume(format!(
                "graph `{}`: resume, replay, fork and state need a checkpointer in the run options",
                self.0.id
            ))),
            (_, None) => Err(GraphError::Resume(format!(
                "graph `{}`: resume, replay, fork and state need a thread id in the run options",
                self.0.id
            ))),
        }
    }

    fn resume_values(&self, resume: Resume, opts: &RunOptions) -> Result<HashMap<String, Value>, GraphError> {
        let mut values = resume.by_id;
        if let Some(all) = resume.all {
            let (store, thread) = self.store(opts)?;
            let loaded = store
                .get_checkpoint(&thread, "", None)?
                .ok_or_else(|| GraphError::Resume(format!("thread {thread:?} has no checkpoint to resume")))?;
            let pending: Vec<String> = loaded
                .writes
                .iter()
                .filter_map(|w| w.extra.as_ref())
                .flat_map(|e| e.interrupts.iter().map(|i| i.id.clone()))
                .collect();
            for id in pending {
                values.entry(id).or_insert_with(|| all.clone());
            }
        }
        Ok(values)
    }

    /// Resumes the latest checkpoint of the thread in `opts`: after an
    /// interrupt (delivering `resume`'s values to the paused tasks only) or
    /// after a crash (re-running only tasks whose results were not saved).
    pub async fn resume(&self, resume: Resume, opts: &RunOptions) -> Result<GraphOutput, GraphError> {
        self.store(opts)?;
        let values = self.resume_values(resume, opts)?;
        let run = self.root_run(opts, None);
        let start = Start::Resume {
            checkpoint: None,
            use_saved: true,
        };
        self.start(run, opts, start, None, values).await
    }

    /// Time travel: runs again from checkpoint `checkpoint_id` of the
    /// thread, re-executing everything after it, subgraphs and sub-agents
    /// included. The replay starts with a copy of the checkpoint (source
    /// `replay`) so its tasks get fresh namespaces; new checkpoints branch
    /// from it and the old ones stay.
    pub async fn replay(&self, checkpoint_id: u64, opts: &RunOptions) -> Result<GraphOutput, GraphError> {
        let (store, thread) = self.store(opts)?;
        let copy = run_loop::fork(&self.0, &*store, &thread, checkpoint_id, Update::new(), "replay")?;
        let run = self.root_run(opts, None);
        let start = Start::Resume {
            checkpoint: Some(copy),
            use_saved: false,
        };
        self.start(run, opts, start, None, HashMap::new()).await
    }

    /// Time travel: a new checkpoint branching from `checkpoint_id`, with
    /// `update` applied through the reducers and the same next tasks.
    /// Returns its id; [`resume`](Self::resume) continues from it.
    pub fn fork(&self, checkpoint_id: u64, update: Update, opts: &RunOptions) -> Result<u64, GraphError> {
        let (store, thread) = self.store(opts)?;
        run_loop::fork(&self.0, &*store, &thread, checkpoint_id, update, "fork")
    }

    /// The state at checkpoint `checkpoint_id` (the latest when `None`).
    pub fn get_state(&self, checkpoint_id: Option<u64>, opts: &RunOptions) -> Result<Option<StateView>, GraphError> {
        let (store, thread) = self.store(opts)?;
        let Some(l) = store.get_checkpoint(&thread, "", checkpoint_id)? else {
            return Ok(None);
        };
        let mut state = serde_json::Map::new();
        for c in self.0.channels.iter() {
            let v = l.values.get(&*c.name).cloned().unwrap_or_else(|| c.default.clone());
            state.insert(c.name.to_string(), v);
        }
        let mut child_runs = l.record.child_runs.clone();
        let mut interrupts = l.record.interrupts.clone();
        for w in &l.writes {
            if let Some(e) = &w.extra {
                child_runs.extend(e.child_runs.iter().cloned());
                interrupts.extend(e.interrupts.iter().cloned());
            }
        }
        Ok(Some(StateView {
            checkpoint_id: l.record.checkpoint_id,
            step: l.record.step,
            state: Value::Object(state),
            next: l.next_tasks.iter().map(|t| t.node.to_string()).collect(),
            saved_tasks: l
                .writes
                .iter()
                .filter(|w| w.extra.as_ref().is_none_or(|e| e.interrupts.is_empty()))
                .count(),
            interrupts,
            recursion_stack: l.record.recursion_stack,
            child_runs,
        }))
    }

    /// The thread's checkpoints, oldest first.
    pub fn history(&self, opts: &RunOptions) -> Result<Vec<CheckpointSummary>, GraphError> {
        let (store, thread) = self.store(opts)?;
        Ok(store.list_checkpoints(&thread, "")?)
    }
}

fn to_value(graph: &GraphInner, input: impl serde::Serialize) -> Result<Value, GraphError> {
    serde_json::to_value(input).map_err(|e| GraphError::Input {
        graph_id: graph.id.clone(),
        message: e.to_string(),
    })
}

/// Runs `graph` as a child graph run of a task (subgraph node): spawns the
/// child run, pushes its recursion frame, runs it on its own tokio task and
/// rolls its usage up, on every exit path.
pub(crate) async fn run_child_graph(
    ctx: &NodeContext,
    graph: &CompiledGraph,
    input: Update,
) -> Result<(RunResult, ChildRunRef), NodeError> {
    let parent_env = &ctx.env.run;
    let ns = ctx.child_namespace();
    let tree = parent_env.tree.clone();
    let sink = tree.sink_for(&ns);
    let child = ctx
        .run()
        .spawn_child(graph.0.id.0.clone(), &RunLimits::new(), ChildEvents::To(sink))?;
    let frame = RecursionFrame {
        graph_id: graph.0.id.clone(),
        node_id: Some(ctx.node.clone()),
        run_id: child.run_id(),
        task_id: Some(ctx.task_id),
        namespace: ns.split('|').map(str::to_string).collect(),
        depth: child.depth() as usize,
        parent: Some(ctx.run().run_id()),
    };
    let guard = ChildGuard::new(ctx.run().clone(), child.clone());
    tree.tracker
        .check_depth(parent_env.stack.len(), || frame.clone())
        .map_err(NodeError::from)?;
    let mut stack = (*parent_env.stack).clone();
    stack.push(frame);
    let env = Arc::new(RunEnv {
        graph: graph.0.clone(),
        run: child.clone(),
        ns,
        stack: Arc::new(stack),
        tree,
    });
    let handle = tokio::spawn(async move {
        let mut guard = guard;
        let r = run_graph(env, Start::SubgraphInput(input)).await;
        guard.ok = r.is_ok();
        r
    });
    let mut handle = AbortOnDrop(handle);
    let result = match (&mut handle.0).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => {
            return Err(NodeError::Panicked(format!("subgraph `{}` panicked", graph.0.id)));
        }
        Err(_) => return Err(NodeError::Failed(format!("subgraph `{}` was cancelled", graph.0.id))),
    };
    let r = result.map_err(NodeError::from)?;
    let reference = ChildRunRef {
        task_id: ctx.task_id,
        node: ctx.node.0.clone(),
        kind: tinyagents_store::ChildRunKind::Subgraph,
        run_id: child.run_id(),
        parent_run_id: ctx.run().run_id(),
        depth: child.depth(),
        ok: true,
        usage: child.total_usage(),
        cost: child.total_cost(),
    };
    Ok((r, reference))
}

/// Rolls a child run up into its parent and emits `SubAgentCompleted` when
/// dropped: at the end of the child's task, however it ends. (The child's
/// name is the last segment of its path.)
pub(crate) struct ChildGuard {
    parent: RunContext,
    child: RunContext,
    pub ok: bool,
}

impl ChildGuard {
    pub fn new(parent: RunContext, child: RunContext) -> Self {
        parent.emit_with(|| EventKind::SubAgentStarted {
            name: child.name().clone(),
            child_run_id: child.run_id(),
            child_depth: child.depth(),
        });
        Self {
            parent,
            child,
            ok: false,
        }
    }

    /// The child run.
    pub fn child(&self) -> &RunContext {
        &self.child
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.ok {
            self.child.record_failure();
        }
        self.parent.absorb_child(&self.child);
        let (ok, child) = (self.ok, &self.child);
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

/// Aborts a spawned task when its awaiter goes away.
pub(crate) struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) fn store_err(e: StoreError) -> GraphError {
    GraphError::from(e)
}
