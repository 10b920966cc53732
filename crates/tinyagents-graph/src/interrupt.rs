//! Interrupts and task scopes for sub-agents at any depth.
//!
//! A function node pauses with [`NodeContext::interrupt`](crate::NodeContext::interrupt).
//! A harness agent run by a [`SubAgentNode`](crate::SubAgentNode), and any
//! sub-agent below it, pauses from inside a tool with [`interrupt`]: the tool
//! passes its [`ToolContext`], whose run id leads to the graph task's
//! [`TaskScope`]. The scope is found through a registry of the runs of the
//! task's subtree: the sub-agent node registers its child run, and the
//! scope, the child's [`SpawnWatcher`], registers every run spawned below
//! it at any depth (core calls it on the one spawn path, so the subtree's
//! events need not be built for it). On an interrupt the scope wakes the sub-agent node,
//! which stops the child subtree and reports the task as paused; siblings
//! finish and are saved. On resume only that task runs again, and the same
//! `interrupt` call returns the resume value.
//!
//! The scope is also the task's isolated mutable scratch space
//! ([`with_task_scratch`]): parallel sub-agent tasks each get their own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};

use futures::task::AtomicWaker;
use serde_json::{Map, Value};
use tinyagents_core::{NodeId, RecursionFrame, RunContext, RunId, SpawnWatcher, TaskId, ToolContext, ToolError};
use tinyagents_store::InterruptRecord;

use crate::runtime::{RunEnv, TreeEnv};

/// The mutable scope of one graph task that runs a sub-agent.
///
/// Kept small (a fan-out keeps one per task in flight): the graph run's
/// tree, graph, namespace and recursion stack are reached through its
/// shared environment; the task's own recursion stack is built only when a
/// tool asks for it; the interrupts, registered runs and scratch space sit
/// behind one lock, the scratch map boxed at first use. The scope is also
/// the child's spawn watcher (registering the runs below it).
pub struct TaskScope {
    /// The graph run that owns the task.
    pub(crate) run: Arc<RunEnv>,
    pub(crate) node: NodeId,
    pub(crate) task_id: TaskId,
    /// Namespace of the task's children (`…|node:cp.index`).
    pub(crate) child_ns: Arc<str>,
    /// The child run and its depth, once spawned (its recursion frame).
    child: OnceLock<(RunId, u32)>,
    counter: AtomicU32,
    state: Mutex<ScopeState>,
    /// The sub-agent node's task, woken when an interrupt is raised.
    waker: AtomicWaker,
    /// Itself, for the registry (the sink side only has `&self`).
    me: Weak<TaskScope>,
}

#[derive(Default)]
struct ScopeState {
    pending: Vec<InterruptRecord>,
    runs: Vec<RunId>,
    scratch: Option<Box<Map<String, Value>>>,
}

impl std::fmt::Debug for TaskScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskScope")
            .field("graph", &self.run.graph.id)
            .field("node", &self.node)
            .field("task", &self.task_id)
            .field("namespace", &self.child_ns)
            .finish_non_exhaustive()
    }
}

/// Runs of sub-agent task subtrees → their task scope, sharded by run id so
/// parallel tasks rarely contend on one lock.
const SHARDS: usize = 32;
type Shard = Mutex<HashMap<RunId, Arc<TaskScope>>>;
static REGISTRY: LazyLock<Vec<Shard>> = LazyLock::new(|| (0..SHARDS).map(|_| Mutex::default()).collect());

fn shard(run: RunId) -> Option<&'static Shard> {
    REGISTRY.get((run.as_u128() as usize) % SHARDS)
}

impl TaskScope {
    pub(crate) fn new(run: Arc<RunEnv>, node: NodeId, task_id: TaskId, child_ns: Arc<str>) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            run,
            node,
            task_id,
            child_ns,
            child: OnceLock::new(),
            counter: AtomicU32::new(0),
            state: Mutex::new(ScopeState::default()),
            waker: AtomicWaker::new(),
            me: me.clone(),
        })
    }

    /// The tree the task's graph run belongs to.
    pub(crate) fn tree(&self) -> &Arc<TreeEnv> {
        &self.run.tree
    }

    /// Records the task's child run (its frame ends the scope's recursion
    /// stack) and makes it find this scope.
    pub(crate) fn set_child(&self, run: RunId, depth: u32) {
        let _ = self.child.set((run, depth));
        self.register(run);
    }

    /// Makes `run` (a run of the task's subtree) find this scope.
    pub(crate) fn register(&self, run: RunId) {
        let Some(me) = self.me.upgrade() else { return };
        if let Some(Ok(mut r)) = shard(run).map(Mutex::lock) {
            r.insert(run, me);
        }
        if let Ok(mut s) = self.state.lock() {
            if s.runs.capacity() == 0 {
                s.runs.reserve_exact(1);
            }
            s.runs.push(run);
        }
    }

    /// Forgets every run registered for this scope.
    pub(crate) fn unregister_all(&self) {
        let runs = self
            .state
            .lock()
            .map(|mut s| std::mem::take(&mut s.runs))
            .unwrap_or_default();
        for r in runs {
            if let Some(Ok(mut reg)) = shard(r).map(Mutex::lock) {
                reg.remove(&r);
            }
        }
    }

    pub(crate) fn find(run: RunId) -> Option<Arc<Self>> {
        shard(run)?.lock().ok().and_then(|r| r.get(&run).cloned())
    }

    /// True when an interrupt was raised in the subtree; otherwise the
    /// task of `cx` is woken at the next one.
    pub(crate) fn poll_interrupted(&self, cx: &mut std::task::Context<'_>) -> bool {
        let raised = || self.state.lock().map(|s| !s.pending.is_empty()).unwrap_or(true);
        if raised() {
            return true;
        }
        self.waker.register(cx.waker());
        raised()
    }

    pub(crate) fn take_interrupts(&self) -> Vec<InterruptRecord> {
        self.state
            .lock()
            .map(|mut s| std::mem::take(&mut s.pending))
            .unwrap_or_default()
    }

    /// The task's recursion stack: the graph run's, plus the child's frame
    /// once the child exists.
    pub(crate) fn stack(&self) -> Arc<Vec<RecursionFrame>> {
        let outer = &self.run.stack;
        let Some(&(run_id, depth)) = self.child.get() else {
            return outer.clone();
        };
        let mut stack = Vec::with_capacity(outer.len() + 1);
        stack.extend(outer.iter().cloned());
        stack.push(RecursionFrame {
            graph_id: self.run.graph.id.clone(),
            node_id: Some(self.node.clone()),
            run_id,
            task_id: Some(self.task_id),
            namespace: self.child_ns.split('|').map(str::to_string).collect(),
            depth: depth as usize,
            parent: Some(self.run.run.run_id()),
        });
        Arc::new(stack)
    }

    fn raise(&self, run: RunId, depth: u32, value: Value) -> Result<Value, ()> {
        let k = self.counter.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}#{k}", self.child_ns);
        if let Some(v) = self.run.tree.resume_value(&id) {
            return Ok(v);
        }
        if let Ok(mut s) = self.state.lock() {
            s.pending.push(InterruptRecord {
                id,
                task_id: self.task_id,
                node: self.node.to_string(),
                namespace: self.run.ns.to_string(),
                value,
                run_id: Some(run),
                depth,
            });
        }
        self.waker.wake();
        Err(())
    }
}

/// Pauses the graph task that (directly or through sub-agents at any depth)
/// runs the calling tool, with `value` for a human or supervisor.
///
/// When the run is resumed with a value for this interrupt, the task's
/// sub-agent runs again and this call returns the value. The first time,
/// it never returns: the task's children are stopped and the run reports
/// the interrupt. Fails when the tool is not running under a graph task.
pub async fn interrupt(ctx: &ToolContext, value: impl serde::Serialize) -> Result<Value, ToolError> {
    let Some(scope) = TaskScope::find(ctx.run.run_id()) else {
        return Err(ToolError::failed(
            "interrupt() needs a graph task: this tool is not running under a SubAgentNode",
        ));
    };
    let value = serde_json::to_value(value).unwrap_or(Value::Null);
    match scope.raise(ctx.run.run_id(), ctx.run.depth(), value) {
        Ok(v) => Ok(v),
        Err(()) => {
            std::future::pending::<()>().await;
            Err(ToolError::Cancelled)
        }
    }
}

/// Runs `f` on the scratch map of the graph task that runs the calling
/// tool: mutable state private to that task (parallel tasks never see each
/// other's). `None` outside a graph task.
pub fn with_task_scratch<R>(ctx: &ToolContext, f: impl FnOnce(&mut Map<String, Value>) -> R) -> Option<R> {
    let scope = TaskScope::find(ctx.run.run_id())?;
    let mut guard = scope.state.lock().ok()?;
    Some(f(guard.scratch.get_or_insert_with(Box::default)))
}

/// The recursion stack of the graph task that runs the calling tool.
pub fn task_recursion_stack(ctx: &ToolContext) -> Option<Vec<RecursionFrame>> {
    TaskScope::find(ctx.run.run_id()).map(|s| s.stack().to_vec())
}

/// The scope watches the spawns of the task's child subtree: every run
/// spawned below the child, at any depth, finds the scope.
impl SpawnWatcher for TaskScope {
    fn on_spawn(&self, _parent: &RunContext, child: &RunContext) {
        self.register(child.run_id());
    }
}
