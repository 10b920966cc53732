//! The superstep loop of one graph run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;
use tinyagents_core::{EventKind, NodeId, RecursionFrame, RunError, TaskId};
use tinyagents_harness::steering::{Exit, GraphSteer, RunControl, SteeringHub, SteeringLog};
use tinyagents_store::{
    ChannelValue, CheckpointRecord, Checkpointer, ChildRunRef, FORMAT_VERSION, InterruptRecord, LoadedCheckpoint,
    RouteRecord, TaskRecord, TaskWritesRecord,
};

use super::execute::{TaskResult, run_tasks};
use super::{Durability, RunEnv, StepEnv, store_err};
use crate::builder::GraphInner;
use crate::error::GraphError;
use crate::node::{END, NodeError, START};
use crate::state::{ApplyError, Channels, Update};
use crate::stream::{StreamMode, StreamPart};

/// How a graph run starts.
pub(crate) enum Start {
    /// Fresh input (continuing the thread's latest state, if any).
    Input(Update),
    /// A subgraph call: resumes the call's own checkpoints when they exist
    /// (the parent task is re-running after a crash or an interrupt).
    SubgraphInput(Update),
    /// From a checkpoint (the latest when `None`); `use_saved`: skip tasks
    /// whose results were saved.
    Resume { checkpoint: Option<u64>, use_saved: bool },
}

/// A jump to the parent graph: routes and writes for the parent.
pub(crate) type ParentJump = (Vec<RouteRecord>, Vec<(Arc<str>, Value)>);

/// What a graph run produced.
pub(crate) struct RunResult {
    pub state: Value,
    pub interrupts: Vec<InterruptRecord>,
    pub steps: u64,
    pub checkpoint_id: Option<u64>,
    pub child_runs: Vec<ChildRunRef>,
    /// A jump to the parent graph: routes and writes for the parent.
    pub parent: Option<ParentJump>,
}

/// Runtime state of a run that is not a channel, saved in `extra`.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct RunExtra {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    barriers: Vec<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parent_routes: Vec<RouteRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parent_writes: Vec<(Arc<str>, Value)>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    paused_before: bool,
}

/// Where a checkpoint sits: its id, parent, the step it follows and why it
/// was written (`input`, `loop`, `interrupt`).
struct CheckpointAt {
    id: u64,
    parent_id: Option<u64>,
    step: u64,
    source: &'static str,
}

struct Store {
    cp: Arc<dyn Checkpointer>,
    thread: Arc<str>,
}

struct Loop {
    env: Arc<RunEnv>,
    channels: Channels,
    step: u64,
    checkpoint_id: u64,
    next_id: u64,
    next: Arc<Vec<TaskRecord>>,
    saved: HashMap<u32, TaskWritesRecord>,
    barriers: Vec<HashSet<Arc<str>>>,
    store: Option<Store>,
    skip_before: bool,
    steps_run: u64,
    child_runs: Vec<ChildRunRef>,
    finished_parent: Option<ParentJump>,
    /// Steering commands not yet applied (the steering hook): carried from
    /// checkpoint to checkpoint until a steering layer consumes them.
    pending_steering: Vec<Value>,
}

pub(crate) async fn run_graph(env: Arc<RunEnv>, start: Start) -> Result<RunResult, GraphError> {
    let resumed_from = match &start {
        Start::Resume { checkpoint, .. } => *checkpoint,
        _ => None,
    };
    env.run.emit_with(|| EventKind::GraphStarted {
        graph_id: env.graph.id.clone(),
        namespace: env.ns.clone(),
        thread_id: env.tree.thread_id.clone(),
        resumed_from,
    });
    let hub = SteeringHub::of(&env.run);
    let control = hub.and_then(|h| h.control(env.run.run_id()));
    if let Some(c) = &control {
        c.mark_graph_nodes(env.graph.nodes.iter().map(|n| n.name.to_string()));
    }
    let result = async {
        let mut lp = Loop::init(env.clone(), start).await?;
        if let Some(c) = &control
            && !lp.pending_steering.is_empty()
        {
            // Steering accepted before the checkpoint was written (and
            // before a crash) is queued again, each command once.
            let pending = lp
                .pending_steering
                .iter()
                .filter_map(|v| serde_json::from_value(v.clone()).ok())
                .collect();
            c.restore(SteeringLog {
                pending,
                ..SteeringLog::default()
            });
        }
        lp.run().await
    }
    .await;
    if let Some(h) = hub {
        h.finish(env.run.run_id());
    }
    env.run.emit_with(|| {
        let (steps, status, error) = match &result {
            Ok(r) if r.interrupts.is_empty() => (r.steps, "done", None),
            Ok(r) => (r.steps, "interrupted", None),
            Err(e) => (0, "failed", Some(e.to_string())),
        };
        EventKind::GraphCompleted {
            graph_id: env.graph.id.clone(),
            namespace: env.ns.clone(),
            steps,
            status: status.into(),
            error,
        }
    });
    result
}

fn pending_values(control: &RunControl) -> Vec<Value> {
    control
        .pending()
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, GraphError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| GraphError::Resume(format!("checkpoint writer task failed: {e}")))
}

impl Loop {
    fn new(env: Arc<RunEnv>) -> Self {
        let g = &env.graph;
        let channels = Channels::new(g.channels.clone(), g.channel_index.clone());
        let store = match (&env.tree.opts.checkpointer, &env.tree.thread_id) {
            (Some(cp), Some(t)) => Some(Store {
                cp: cp.clone(),
                thread: t.clone(),
            }),
            _ => None,
        };
        let barriers = vec![HashSet::new(); g.joins.len()];
        Self {
            env,
            channels,
            step: 0,
            checkpoint_id: 0,
            next_id: 1,
            next: Arc::new(Vec::new()),
            saved: HashMap::new(),
            barriers,
            store,
            skip_before: false,
            steps_run: 0,
            child_runs: Vec::new(),
            finished_parent: None,
            pending_steering: Vec::new(),
        }
    }

    async fn load(&self, id: Option<u64>) -> Result<Option<LoadedCheckpoint>, GraphError> {
        let Some(s) = &self.store else { return Ok(None) };
        let (cp, thread, ns) = (s.cp.clone(), s.thread.clone(), self.env.ns.clone());
        blocking(move || cp.get_checkpoint(&thread, &ns, id))
            .await?
            .map_err(store_err)
    }

    async fn alloc_base(&mut self) -> Result<(), GraphError> {
        if let Some(s) = &self.store {
            let (cp, thread, ns) = (s.cp.clone(), s.thread.clone(), self.env.ns.clone());
            self.next_id = blocking(move || cp.next_checkpoint_id(&thread, &ns))
                .await?
                .map_err(store_err)?;
        } else {
            self.next_id = self.checkpoint_id + 1;
        }
        Ok(())
    }

    fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn restore(&mut self, l: LoadedCheckpoint, use_saved: bool) -> Result<(), GraphError> {
        if l.record.graph_id != self.env.graph.id {
            return Err(GraphError::Resume(format!(
                "checkpoint {} of thread {:?} belongs to graph `{}`, not `{}`",
                l.record.checkpoint_id, l.record.thread_id, l.record.graph_id, self.env.graph.id
            )));
        }
        for (i, spec) in self.env.graph.channels.iter().enumerate() {
            if let Some(v) = l.values.get(&*spec.name) {
                self.channels.values[i] = Arc::new(v.clone());
            }
            self.channels.versions[i] = l.record.channel_versions.get(&*spec.name).copied().unwrap_or(0);
        }
        let extra: RunExtra = serde_json::from_value(l.record.extra.clone()).unwrap_or_default();
        for (i, b) in extra.barriers.into_iter().enumerate() {
            if let Some(slot) = self.barriers.get_mut(i) {
                *slot = b.into_iter().map(Arc::from).collect();
            }
        }
        self.skip_before = extra.paused_before;
        if l.next_tasks.is_empty() && (!extra.parent_routes.is_empty() || !extra.parent_writes.is_empty()) {
            self.finished_parent = Some((extra.parent_routes, extra.parent_writes));
        }
        self.step = l.record.step;
        self.checkpoint_id = l.record.checkpoint_id;
        self.pending_steering = l.record.pending_steering;
        self.next = Arc::new(l.next_tasks);
        if use_saved {
            self.saved = l.writes.into_iter().map(|w| (w.index, w)).collect();
        }
        Ok(())
    }

    async fn init(env: Arc<RunEnv>, start: Start) -> Result<Self, GraphError> {
        let mut lp = Self::new(env);
        match start {
            Start::Resume { checkpoint, use_saved } => {
                let Some(l) = lp.load(checkpoint).await? else {
                    return Err(GraphError::Resume(match (&lp.store, checkpoint) {
                        (None, _) => format!("graph `{}`: resuming needs a checkpointer", lp.env.graph.id),
                        (Some(s), Some(id)) => format!("thread {:?} has no checkpoint {id}", s.thread),
                        (Some(s), None) => format!("thread {:?} has no checkpoint to resume", s.thread),
                    }));
                };
                lp.restore(l, use_saved)?;
                lp.alloc_base().await?;
            }
            Start::SubgraphInput(update) => {
                if let Some(l) = lp.load(None).await? {
                    lp.restore(l, true)?;
                    lp.alloc_base().await?;
                } else {
                    lp.alloc_base().await?;
                    lp.start_with(update, None).await?;
                }
            }
            Start::Input(update) => {
                let mut parent = None;
                if let Some(l) = lp.load(None).await? {
                    parent = Some(l.record.checkpoint_id);
                    lp.restore(l, false)?;
                    lp.next = Arc::new(Vec::new());
                    lp.saved.clear();
                    lp.skip_before = false;
                    lp.finished_parent = None;
                }
                lp.alloc_base().await?;
                lp.start_with(update, parent).await?;
            }
        }
        Ok(lp)
    }

    /// Applies the input and schedules the first step.
    async fn start_with(&mut self, update: Update, parent: Option<u64>) -> Result<(), GraphError> {
        if let Some(e) = update.error {
            return Err(GraphError::Input {
                graph_id: self.env.graph.id.clone(),
                message: e,
            });
        }
        let id = self.alloc_id();
        let changed = self
            .channels
            .apply(std::iter::once((0, update.writes)), id)
            .map_err(|(_, e)| GraphError::Input {
                graph_id: self.env.graph.id.clone(),
                message: match e {
                    ApplyError::UnknownChannel(c) => format!(
                        "unknown channel `{c}` (channels: {})",
                        self.env
                            .graph
                            .channels
                            .iter()
                            .map(|c| &*c.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    ApplyError::Reducer { channel, message } => format!("channel `{channel}`: {message}"),
                },
            })?;
        let start: Arc<str> = START.into();
        let next = self.plan(&[(start, 0)], &[])?;
        self.next = Arc::new(next);
        let parent_id = parent.or((self.checkpoint_id > 0).then_some(self.checkpoint_id));
        self.write_checkpoint(
            CheckpointAt {
                id,
                parent_id,
                step: self.step,
                source: "input",
            },
            &changed,
            &[],
            Vec::new(),
            RunExtra::default(),
        )
        .await?;
        self.checkpoint_id = id;
        Ok(())
    }

    fn frame(&self, node: Option<&(NodeId, TaskId)>) -> RecursionFrame {
        let mut f = self.env.stack.last().cloned().unwrap_or_else(|| RecursionFrame {
            graph_id: self.env.graph.id.clone(),
            node_id: None,
            run_id: self.env.run.run_id(),
            task_id: None,
            namespace: Vec::new(),
            depth: self.env.run.depth() as usize,
            parent: self.env.run.meta().parent_run_id,
        });
        if let Some((n, t)) = node {
            f.graph_id = self.env.graph.id.clone();
            f.node_id = Some(n.clone());
            f.task_id = Some(*t);
            f.run_id = self.env.run.run_id();
            f.depth = self.env.run.depth() as usize;
        }
        f
    }

    /// The run's result; called once, as the run ends (moves the state out).
    fn result(&mut self, interrupts: Vec<InterruptRecord>) -> RunResult {
        RunResult {
            state: self.channels.take_object(),
            interrupts,
            steps: self.steps_run,
            checkpoint_id: self.store.as_ref().map(|_| self.checkpoint_id),
            child_runs: std::mem::take(&mut self.child_runs),
            parent: self.finished_parent.clone(),
        }
    }

    fn static_interrupt(&self, kind: &str, node: &str, step: u64) -> InterruptRecord {
        let ns = &self.env.ns;
        InterruptRecord {
            id: if ns.is_empty() {
                format!("{kind}:{node}")
            } else {
                format!("{ns}#{kind}:{node}")
            },
            task_id: TaskId::new(step, 0),
            node: node.to_string(),
            namespace: ns.to_string(),
            value: serde_json::json!({ format!("interrupt_{kind}"): node }),
            run_id: Some(self.env.run.run_id()),
            depth: self.env.run.depth(),
        }
    }

    /// The superstep boundary: steering is taken here (pause, resume,
    /// cancel, stop, redirect, cancel pending fan-out).
    async fn steering_boundary(&mut self) -> Result<Option<RunResult>, GraphError> {
        let Some(hub) = SteeringHub::of(&self.env.run) else {
            return Ok(None);
        };
        let Some(control) = hub.control(self.env.run.run_id()) else {
            return Ok(None);
        };
        if control.fanout_cancelled() && self.next.iter().any(|t| t.payload.is_some()) {
            // Pending `Send` tasks are dropped; tasks reading the state stay.
            self.next = Arc::new(self.next.iter().filter(|t| t.payload.is_none()).cloned().collect());
        }
        match control.at_graph_boundary(hub).await {
            Ok(GraphSteer::Continue) => {}
            Ok(GraphSteer::Redirect(node)) => {
                let name = self
                    .env
                    .graph
                    .nodes
                    .iter()
                    .find(|n| n.name.as_str() == node)
                    .map(|n| n.name.0.clone())
                    .unwrap_or_else(|| node.into());
                self.next = Arc::new(vec![TaskRecord {
                    node: name,
                    payload: None,
                }]);
            }
            Err(Exit::Cancel) => {
                return Err(GraphError::Run(RunError::Cancelled {
                    path: self.env.run.path().clone(),
                    depth: self.env.run.depth(),
                    partial: Box::default(),
                }));
            }
            Err(Exit::Stop) => return Ok(Some(self.result(Vec::new()))),
        }
        self.pending_steering = pending_values(&control);
        Ok(None)
    }

    async fn run(&mut self) -> Result<RunResult, GraphError> {
        loop {
            if self.finished_parent.is_some() || self.next.is_empty() {
                return Ok(self.result(Vec::new()));
            }
            if let Some(stopped) = self.steering_boundary().await? {
                return Ok(stopped);
            }
            if self.next.is_empty() {
                return Ok(self.result(Vec::new()));
            }
            let step = self.step + 1;
            let g = self.env.graph.clone();
            let mut seen = HashSet::new();
            let mut nodes: Vec<(NodeId, TaskId)> = Vec::new();
            let mut last: Option<&Arc<str>> = None;
            for (i, t) in self.next.iter().enumerate() {
                if last.is_some_and(|l| Arc::ptr_eq(l, &t.node)) {
                    continue;
                }
                last = Some(&t.node);
                if seen.insert(t.node.clone()) {
                    nodes.push((NodeId(t.node.clone()), TaskId::new(step, i as u32)));
                }
            }
            self.env.tree.tracker.on_step(&g.id, &nodes, |n| self.frame(n))?;
            if !self.skip_before
                && let Some((n, _)) = nodes.iter().find(|(n, _)| g.interrupt_before.contains(&n.0))
            {
                let rec = self.static_interrupt("before", n.as_str(), step);
                if self.store.is_some() {
                    let id = self.alloc_id();
                    let extra = RunExtra {
                        paused_before: true,
                        ..self.extra()
                    };
                    let at = CheckpointAt {
                        id,
                        parent_id: Some(self.checkpoint_id),
                        step: self.step,
                        source: "interrupt",
                    };
                    self.write_checkpoint(at, &[], &[], vec![rec.clone()], extra).await?;
                    self.checkpoint_id = id;
                }
                self.emit_interrupt(&rec);
                return Ok(self.result(vec![rec]));
            }
            self.skip_before = false;
            let n_tasks = self.next.len() as u64;
            self.env.run.emit_with(|| EventKind::SuperstepStarted {
                graph_id: g.id.clone(),
                namespace: self.env.ns.clone(),
                step,
                tasks: n_tasks,
            });
            let results = self.execute(step).await?;
            self.steps_run += 1;
            // Failures: the first by task order; finished siblings are saved.
            let mut records = Vec::with_capacity(results.len());
            let mut failure = None;
            for (i, r) in results.into_iter().enumerate() {
                match r {
                    Some(Ok(rec)) => records.push(rec),
                    Some(Err(e)) => {
                        failure.get_or_insert((i, e));
                    }
                    None => {
                        failure.get_or_insert((i, NodeError::Panicked("task was lost (worker failed)".into())));
                    }
                }
            }
            let interrupts: Vec<InterruptRecord> = records
                .iter()
                .filter_map(|r| r.extra.as_ref())
                .flat_map(|e| e.interrupts.iter().cloned())
                .collect();
            if (failure.is_some() || !interrupts.is_empty()) && self.env.tree.opts.durability == Durability::Step {
                self.save_writes(records.clone()).await?;
            }
            if let Some((i, e)) = failure {
                let node = self.next.get(i).map(|t| t.node.clone()).unwrap_or_else(|| "?".into());
                return Err(GraphError::Node {
                    graph_id: g.id.clone(),
                    node: NodeId(node),
                    task_id: TaskId::new(step, i as u32),
                    namespace: self.env.ns.to_string(),
                    path: self.env.run.path().clone(),
                    depth: self.env.run.depth(),
                    source: e,
                });
            }
            if !interrupts.is_empty() {
                for rec in &interrupts {
                    self.emit_interrupt(rec);
                }
                return Ok(self.result(interrupts));
            }
            let id = self.alloc_id();
            let changed = self
                .channels
                .apply(
                    records
                        .iter_mut()
                        .map(|r| (r.index, std::mem::take(&mut r.writes)))
                        .collect::<Vec<_>>()
                        .into_iter(),
                    id,
                )
                .map_err(|(task, e)| self.apply_error(step, task, e))?;
            let mut child_runs = Vec::new();
            let mut parent_routes = Vec::new();
            let mut parent_writes = Vec::new();
            // Moved out of the records (the plan reads only their routes).
            for r in &mut records {
                if let Some(e) = &mut r.extra {
                    child_runs.append(&mut e.child_runs);
                    parent_routes.append(&mut e.parent_routes);
                    parent_writes.append(&mut e.parent_writes);
                }
            }
            let ran: Vec<(Arc<str>, u32)> = nodes.iter().map(|(n, t)| (n.0.clone(), t.index)).collect();
            let next = if parent_routes.is_empty() && parent_writes.is_empty() {
                self.plan(&ran, &records)?
            } else if self.env.stack.len() <= 1 {
                return Err(GraphError::Route {
                    graph_id: g.id.clone(),
                    from: ran.first().map(|r| r.0.to_string()).unwrap_or_default(),
                    to: parent_routes.first().map(|r| r.node.clone()).unwrap_or_default(),
                    message: "Command::goto_parent used in the outermost graph (there is no parent graph)".into(),
                    path: self.env.run.path().clone(),
                    depth: self.env.run.depth(),
                });
            } else {
                self.finished_parent = Some((parent_routes.clone(), parent_writes.clone()));
                Vec::new()
            };
            let after: Vec<InterruptRecord> = nodes
                .iter()
                .filter(|(n, _)| g.interrupt_after.contains(&n.0))
                .map(|(n, _)| self.static_interrupt("after", n.as_str(), step))
                .take(1)
                .collect();
            self.next = Arc::new(next);
            let extra = RunExtra {
                parent_routes,
                parent_writes,
                ..self.extra()
            };
            let at = CheckpointAt {
                id,
                parent_id: Some(self.checkpoint_id),
                step,
                source: "loop",
            };
            self.write_checkpoint(at, &changed, &child_runs, after.clone(), extra)
                .await?;
            self.child_runs.extend(child_runs);
            self.checkpoint_id = id;
            self.step = step;
            self.saved.clear();
            self.env.run.emit_with(|| EventKind::SuperstepCompleted {
                graph_id: g.id.clone(),
                namespace: self.env.ns.clone(),
                step,
                tasks: n_tasks,
                changed_channels: changed.len() as u32,
            });
            if let Some(tx) = self.env.tree.stream_for(StreamMode::VALUES) {
                tx.send(StreamPart::Values {
                    namespace: self.env.ns.clone(),
                    step,
                    state: self.channels.to_object(),
                });
            }
            if !after.is_empty() && !self.next.is_empty() {
                for rec in &after {
                    self.emit_interrupt(rec);
                }
                return Ok(self.result(after));
            }
        }
    }

    fn emit_interrupt(&self, rec: &InterruptRecord) {
        self.env.run.emit_with(|| EventKind::GraphInterrupted {
            graph_id: self.env.graph.id.clone(),
            node_id: NodeId(rec.node.as_str().into()),
            task_id: rec.task_id,
            namespace: rec.namespace.as_str().into(),
            interrupt_id: rec.id.as_str().into(),
            value: rec.value.clone(),
        });
    }

    fn extra(&self) -> RunExtra {
        RunExtra {
            barriers: self
                .barriers
                .iter()
                .map(|b| {
                    let mut v: Vec<String> = b.iter().map(|s| s.to_string()).collect();
                    v.sort();
                    v
                })
                .collect(),
            ..RunExtra::default()
        }
    }

    fn apply_error(&self, step: u64, task: u32, e: ApplyError) -> GraphError {
        let g = &self.env.graph;
        let node = NodeId(
            self.next
                .get(task as usize)
                .map(|t| t.node.clone())
                .unwrap_or_else(|| "?".into()),
        );
        let task_id = TaskId::new(step, task);
        match e {
            ApplyError::UnknownChannel(c) => GraphError::UnknownChannel {
                graph_id: g.id.clone(),
                channel: c.to_string(),
                node,
                task_id,
                known: g.channels.iter().map(|c| &*c.name).collect::<Vec<_>>().join(", "),
                path: self.env.run.path().clone(),
                depth: self.env.run.depth(),
            },
            ApplyError::Reducer { channel, message } => GraphError::Reducer {
                graph_id: g.id.clone(),
                channel: channel.to_string(),
                node,
                task_id,
                message,
                path: self.env.run.path().clone(),
                depth: self.env.run.depth(),
            },
        }
    }

    /// Runs the step's tasks (those whose results were not saved) and gives
    /// every task's result, in task order (`None`: lost).
    async fn execute(&mut self, step: u64) -> Result<Vec<Option<TaskResult>>, GraphError> {
        let n = self.next.len();
        // Results in the batches they arrive in; the table in task order is
        // built at the end, so that tasks in flight cost no result slot.
        let mut restored = Vec::new();
        let mut any_pull = false;
        let mut todo = Vec::new();
        for (i, t) in self.next.iter().enumerate() {
            let saved = if self.saved.is_empty() {
                None
            } else {
                self.saved
                    .remove(&(i as u32))
                    .filter(|w| w.extra.as_ref().is_none_or(|e| e.interrupts.is_empty()))
            };
            match saved {
                Some(w) => restored.push((i as u32, Ok(w))),
                None => {
                    any_pull |= t.payload.is_none();
                    todo.push(i as u32);
                }
            }
        }
        let snapshot = if any_pull {
            self.channels.snapshot()
        } else {
            Arc::new(Vec::new())
        };
        let env = Arc::new(StepEnv {
            run: self.env.clone(),
            step,
            checkpoint_id: self.checkpoint_id,
            snapshot,
        });
        let persist = match (&self.store, self.env.tree.opts.durability) {
            (Some(s), Durability::Task) => Some((s.cp.clone(), s.thread.clone())),
            _ => None,
        };
        let mut done = vec![restored];
        run_tasks(env, self.next.clone(), todo, persist, &mut done).await?;
        let mut results: Vec<Option<TaskResult>> = (0..n).map(|_| None).collect();
        for (i, r) in done.into_iter().flatten() {
            if let Some(slot) = results.get_mut(i as usize) {
                *slot = Some(r);
            }
        }
        Ok(results)
    }

    async fn save_writes(&self, records: Vec<TaskWritesRecord>) -> Result<(), GraphError> {
        let Some(s) = &self.store else { return Ok(()) };
        let (cp, thread, ns, id) = (s.cp.clone(), s.thread.clone(), self.env.ns.clone(), self.checkpoint_id);
        blocking(move || cp.put_writes(&thread, &ns, id, &records))
            .await?
            .map_err(store_err)
    }

    /// The next step's tasks: for each node that ran (in task order) its
    /// static edges and its router, then each task's gotos and sends, then
    /// joins whose sources have all run. Edge-scheduled tasks of one node
    /// are merged; sends are kept one task each.
    fn plan(&mut self, ran: &[(Arc<str>, u32)], records: &[TaskWritesRecord]) -> Result<Vec<TaskRecord>, GraphError> {
        let g = self.env.graph.clone();
        let mut pulls: Vec<Arc<str>> = Vec::new();
        let mut pull_set: HashSet<Arc<str>> = HashSet::new();
        let mut pushes: Vec<TaskRecord> = Vec::new();
        let route_err = |from: &str, to: &str, message: String| GraphError::Route {
            graph_id: g.id.clone(),
            from: from.to_string(),
            to: to.to_string(),
            message,
            path: self.env.run.path().clone(),
            depth: self.env.run.depth(),
        };
        let mut last_name: Option<Arc<str>> = None;
        let mut node_name = |name: &str| {
            if let Some(l) = last_name.as_ref().filter(|l| &***l == name) {
                return Some(l.clone());
            }
            let found = g.node_index.get(name).map(|&i| g.nodes[i].name.0.clone());
            last_name.clone_from(&found);
            found
        };
        let mut add_pull = |name: Arc<str>, pulls: &mut Vec<Arc<str>>| {
            if pull_set.insert(name.clone()) {
                pulls.push(name);
            }
        };
        let mut snapshot = None;
        for (node, _) in ran {
            if let Some(targets) = g.edges.get(node) {
                for t in targets {
                    if &**t != END {
                        add_pull(t.clone(), &mut pulls);
                    }
                }
            }
            if let Some(router) = g.routers.get(node) {
                let snap = snapshot.get_or_insert_with(|| self.channels.snapshot());
                let routes = (router.f)(snap).map_err(|m| route_err(node, "?", m))?;
                for r in routes.0 {
                    match r {
                        crate::node::Route::End => {}
                        crate::node::Route::To(t) => {
                            if !router.targets.iter().any(|x| **x == *t.0) {
                                return Err(route_err(
                                    node,
                                    t.as_str(),
                                    format!(
                                        "the router returned a node it does not declare (declared: {})",
                                        router.targets.iter().map(|t| &**t).collect::<Vec<_>>().join(", ")
                                    ),
                                ));
                            }
                            let name = node_name(t.as_str())
                                .ok_or_else(|| route_err(node, t.as_str(), "no such node".into()))?;
                            add_pull(name, &mut pulls);
                        }
                        crate::node::Route::Send(s) => {
                            if s.node.as_str() == END {
                                continue;
                            }
                            let name = node_name(s.node.as_str())
                                .ok_or_else(|| route_err(node, s.node.as_str(), "send to an unknown node".into()))?;
                            pushes.push(TaskRecord {
                                node: name,
                                payload: Some(s.arg),
                            });
                        }
                    }
                }
            }
        }
        for r in records {
            let Some(extra) = &r.extra else { continue };
            let from = self
                .next
                .get(r.index as usize)
                .map(|t| t.node.clone())
                .unwrap_or_else(|| "?".into());
            for route in &extra.routes {
                if route.node == END {
                    continue;
                }
                let name = node_name(&route.node)
                    .ok_or_else(|| route_err(&from, &route.node, "goto to an unknown node".into()))?;
                match &route.payload {
                    Some(p) => pushes.push(TaskRecord {
                        node: name,
                        payload: Some(p.clone()),
                    }),
                    None => add_pull(name, &mut pulls),
                }
            }
        }
        for (j, join) in g.joins.iter().enumerate() {
            for (node, _) in ran {
                if join.sources.contains(node) {
                    self.barriers[j].insert(node.clone());
                }
            }
            if join.sources.iter().all(|s| self.barriers[j].contains(s)) {
                self.barriers[j].clear();
                add_pull(join.target.clone(), &mut pulls);
            }
        }
        let mut next: Vec<TaskRecord> = pulls
            .into_iter()
            .map(|node| TaskRecord { node, payload: None })
            .collect();
        next.extend(pushes);
        Ok(next)
    }

    async fn write_checkpoint(
        &mut self,
        at: CheckpointAt,
        changed: &[usize],
        child_runs: &[ChildRunRef],
        interrupts: Vec<InterruptRecord>,
        extra: RunExtra,
    ) -> Result<(), GraphError> {
        let Some(s) = &self.store else { return Ok(()) };
        // Steering accepted during the step is recorded with the checkpoint.
        if let Some(control) = SteeringHub::of(&self.env.run).and_then(|h| h.control(self.env.run.run_id())) {
            self.pending_steering = pending_values(&control);
        }
        let g = &self.env.graph;
        let channel_versions = g
            .channels
            .iter()
            .zip(&self.channels.versions)
            .filter(|(_, v)| **v > 0)
            .map(|(c, v)| (c.name.to_string(), *v))
            .collect();
        let record = CheckpointRecord {
            format: FORMAT_VERSION,
            thread_id: s.thread.to_string(),
            namespace: self.env.ns.to_string(),
            checkpoint_id: at.id,
            parent_id: at.parent_id,
            step: at.step,
            source: at.source.to_string(),
            graph_id: g.id.clone(),
            run_id: self.env.run.run_id(),
            channel_versions,
            recursion_stack: self.env.stack.to_vec(),
            child_runs: child_runs.to_vec(),
            interrupts,
            pending_steering: self.pending_steering.clone(),
            extra: serde_json::to_value(extra).unwrap_or(Value::Null),
        };
        let changed: Vec<ChannelValue> = changed
            .iter()
            .map(|&i| ChannelValue {
                channel: g.channels[i].name.to_string(),
                version: self.channels.versions[i],
                value: self.channels.values[i].clone(),
            })
            .collect();
        let (cp, next) = (s.cp.clone(), self.next.clone());
        let step = record.step;
        blocking(move || cp.put_checkpoint(&record, &next, &changed))
            .await?
            .map_err(store_err)?;
        let thread = s.thread.clone();
        self.env.run.emit_with(|| EventKind::CheckpointSaved {
            graph_id: g.id.clone(),
            namespace: self.env.ns.clone(),
            thread_id: thread,
            checkpoint_id: at.id,
            step,
        });
        Ok(())
    }
}

/// A checkpoint branching from `from` with `update` applied.
pub(crate) fn fork(
    g: &GraphInner,
    store: &dyn Checkpointer,
    thread: &str,
    from: u64,
    update: Update,
    source: &str,
) -> Result<u64, GraphError> {
    let l = store
        .get_checkpoint(thread, "", Some(from))?
        .ok_or_else(|| GraphError::Resume(format!("thread {thread:?} has no checkpoint {from}")))?;
    if l.record.graph_id != g.id {
        return Err(GraphError::Resume(format!(
            "checkpoint {from} belongs to graph `{}`, not `{}`",
            l.record.graph_id, g.id
        )));
    }
    if let Some(e) = update.error {
        return Err(GraphError::Input {
            graph_id: g.id.clone(),
            message: e,
        });
    }
    let id = store.next_checkpoint_id(thread, "")?;
    let mut channels = Channels::new(g.channels.clone(), g.channel_index.clone());
    for (i, spec) in g.channels.iter().enumerate() {
        if let Some(v) = l.values.get(&*spec.name) {
            channels.values[i] = Arc::new(v.clone());
        }
        channels.versions[i] = l.record.channel_versions.get(&*spec.name).copied().unwrap_or(0);
    }
    let changed = channels
        .apply(std::iter::once((0, update.writes)), id)
        .map_err(|(_, e)| GraphError::Input {
            graph_id: g.id.clone(),
            message: match e {
                ApplyError::UnknownChannel(c) => format!("unknown channel `{c}`"),
                ApplyError::Reducer { channel, message } => format!("channel `{channel}`: {message}"),
            },
        })?;
    let mut record = l.record;
    record.checkpoint_id = id;
    record.parent_id = Some(from);
    record.source = source.into();
    record.format = FORMAT_VERSION;
    record.interrupts.clear();
    record.channel_versions = g
        .channels
        .iter()
        .zip(&channels.versions)
        .filter(|(_, v)| **v > 0)
        .map(|(c, v)| (c.name.to_string(), *v))
        .collect();
    let values: Vec<ChannelValue> = changed
        .iter()
        .map(|&i| ChannelValue {
            channel: g.channels[i].name.to_string(),
            version: id,
            value: channels.values[i].clone(),
        })
        .collect();
    store.put_checkpoint(&record, &l.next_tasks, &values)?;
    Ok(id)
}
