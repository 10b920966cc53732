//! Interrupts and task scopes for sub-agents at any depth.
//!
//! A function node pauses with [`NodeContext::interrupt`](crate::NodeContext::interrupt).
//! A harness agent run by a [`SubAgentNode`](crate::SubAgentNode), and any
//! sub-agent below it, pauses from inside a tool with [`interrupt`]: the tool
//! passes its [`ToolContext`], whose run id leads to the graph task's
//! [`TaskScope`]. The scope is found through a registry of the runs of the
//! task's subtree: the sub-agent node registers its child run, and the
//! task's event sink registers every run spawned below it (it sees each
//! `SubAgentStarted`). On an interrupt the scope wakes the sub-agent node,
//! which stops the child subtree and reports the task as paused; siblings
//! finish and are saved. On resume only that task runs again, and the same
//! `interrupt` call returns the resume value.
//!
//! The scope is also the task's isolated mutable scratch space
//! ([`with_task_scratch`]): parallel sub-agent tasks each get their own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use serde_json::{Map, Value};
use tinyagents_core::{
    Event, EventKind, EventSink, GraphId, NodeId, RecursionFrame, RunId, SharedSink, TaskId, ToolContext, ToolError,
};
use tinyagents_store::InterruptRecord;
use tokio::sync::Notify;

use crate::runtime::TreeEnv;

/// The mutable scope of one graph task that runs a sub-agent.
pub struct TaskScope {
    pub(crate) tree: Arc<TreeEnv>,
    pub(crate) graph_id: GraphId,
    pub(crate) node: NodeId,
    pub(crate) task_id: TaskId,
    /// Namespace of the graph run that owns the task.
    pub(crate) run_ns: Arc<str>,
    /// Namespace of the task's children (`…|node:cp.index`).
    pub(crate) child_ns: Arc<str>,
    pub(crate) stack: Mutex<Arc<Vec<RecursionFrame>>>,
    counter: AtomicU32,
    pending: Mutex<Vec<InterruptRecord>>,
    notify: Notify,
    runs: Mutex<Vec<RunId>>,
    scratch: Mutex<Map<String, Value>>,
}

impl std::fmt::Debug for TaskScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskScope")
            .field("graph", &self.graph_id)
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
    pub(crate) fn new(
        tree: Arc<TreeEnv>,
        graph_id: GraphId,
        node: NodeId,
        task_id: TaskId,
        run_ns: Arc<str>,
        child_ns: Arc<str>,
        stack: Arc<Vec<RecursionFrame>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            tree,
            graph_id,
            node,
            task_id,
            run_ns,
            child_ns,
            stack: Mutex::new(stack),
            counter: AtomicU32::new(0),
            pending: Mutex::new(Vec::new()),
            notify: Notify::new(),
            runs: Mutex::new(Vec::new()),
            scratch: Mutex::new(Map::new()),
        })
    }

    /// Makes `run` (a run of the task's subtree) find this scope.
    pub(crate) fn register(self: &Arc<Self>, run: RunId) {
        if let Some(Ok(mut r)) = shard(run).map(Mutex::lock) {
            r.insert(run, self.clone());
        }
        if let Ok(mut runs) = self.runs.lock() {
            runs.push(run);
        }
    }

    /// Forgets every run registered for this scope.
    pub(crate) fn unregister_all(&self) {
        let runs = self
            .runs
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
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

    /// Resolves when an interrupt was raised in the subtree.
    pub(crate) async fn interrupted(&self) {
        self.notify.notified().await;
    }

    pub(crate) fn take_interrupts(&self) -> Vec<InterruptRecord> {
        self.pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }

    pub(crate) fn stack(&self) -> Arc<Vec<RecursionFrame>> {
        self.stack.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn raise(&self, run: RunId, depth: u32, value: Value) -> Result<Value, ()> {
        let k = self.counter.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}#{k}", self.child_ns);
        if let Some(v) = self.tree.resume_value(&id) {
            return Ok(v);
        }
        if let Ok(mut p) = self.pending.lock() {
            p.push(InterruptRecord {
                id,
                task_id: self.task_id,
                node: self.node.to_string(),
                namespace: self.run_ns.to_string(),
                value,
                run_id: Some(run),
                depth,
            });
        }
        self.notify.notify_one();
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
    let mut guard = scope.scratch.lock().ok()?;
    Some(f(&mut guard))
}

/// The recursion stack of the graph task that runs the calling tool.
pub fn task_recursion_stack(ctx: &ToolContext) -> Option<Vec<RecursionFrame>> {
    TaskScope::find(ctx.run.run_id()).map(|s| s.stack().to_vec())
}

/// The sink of a sub-agent task's child: registers runs spawned below it
/// with the task's scope and forwards events (to the graph's sink and
/// stream, tagged with the task's namespace).
pub(crate) struct TaskSink {
    pub scope: Arc<TaskScope>,
    pub forward: Option<SharedSink>,
}

impl EventSink for TaskSink {
    fn emit(&self, event: Event) {
        if let EventKind::SubAgentStarted { child_run_id, .. } = &event.kind {
            self.scope.register(*child_run_id);
        }
        if let Some(f) = &self.forward {
            f.emit(event);
        }
    }
}
