//! Nodes: async functions over the state, and what they return.
//!
//! A node is called once per task. A task reads either the graph state
//! (a task scheduled by an edge) or its own payload (a task scheduled by a
//! [`Send`]); either is deserialized into the node's input type. The node
//! returns an [`Update`] or a [`Command`] (an update plus where to go next,
//! possibly in the parent graph).

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::de::DeserializeOwned;
use serde_json::Value;
use tinyagents_core::{BoxFuture, EventKind, NodeId, RecursionFrame, RunContext, RunError, TaskId};
use tinyagents_store::{ChildRunRef, InterruptRecord};

use crate::error::GraphError;
use crate::runtime::StepEnv;
use crate::state::{Snapshot, Update, from_snapshot};
use crate::stream::StreamPart;

/// The first pseudo-node: edges from `START` pick the first step's tasks.
pub const START: &str = "__start__";
/// The last pseudo-node: a route to `END` schedules nothing.
pub const END: &str = "__end__";

/// A task scheduled with its own input: the unit of fan-out.
///
/// A router (or a [`Command`]) that returns N sends schedules N tasks of
/// the target node in the next superstep, each reading its own payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Send {
    /// The node to run.
    pub node: NodeId,
    /// Its input.
    pub arg: Value,
}

impl Send {
    /// A task of `node` with input `arg`.
    pub fn new(node: impl Into<NodeId>, arg: impl serde::Serialize) -> Self {
        Self {
            node: node.into(),
            arg: serde_json::to_value(arg).unwrap_or(Value::Null),
        }
    }
}

/// Where to go next.
#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    /// Run this node (once per step however many routes name it).
    To(NodeId),
    /// Stop this branch.
    End,
    /// Run a task of a node with its own input.
    Send(Send),
}

impl From<&str> for Route {
    fn from(s: &str) -> Self {
        if s == END { Self::End } else { Self::To(s.into()) }
    }
}
impl From<String> for Route {
    fn from(s: String) -> Self {
        Self::from(s.as_str())
    }
}
impl From<Send> for Route {
    fn from(s: Send) -> Self {
        Self::Send(s)
    }
}

/// The routes a router returns: one or many.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Routes(pub Vec<Route>);

impl<T: Into<Route>> From<T> for Routes {
    fn from(r: T) -> Self {
        Self(vec![r.into()])
    }
}
impl<T: Into<Route>> From<Vec<T>> for Routes {
    fn from(v: Vec<T>) -> Self {
        Self(v.into_iter().map(Into::into).collect())
    }
}
impl<T: Into<Route>> FromIterator<T> for Routes {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Self(iter.into_iter().map(Into::into).collect())
    }
}

/// An update plus where to go next: the dynamic alternative to edges.
///
/// ```
/// use tinyagents_graph::{Command, Update};
/// let c = Command::goto("review").update(Update::new().set("draft", "v2"));
/// let up = Command::goto_parent("finalize"); // a node of the calling graph
/// # let _ = (c, up);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Command {
    pub(crate) update: Update,
    pub(crate) goto: Vec<Route>,
    pub(crate) parent: bool,
}

impl Command {
    /// Go to `route` (a node name, `END` or a [`Send`]) after this step.
    pub fn goto(route: impl Into<Routes>) -> Self {
        Self {
            goto: route.into().0,
            ..Self::default()
        }
    }

    /// Leave this subgraph and go to `route` in the parent graph; the
    /// command's update is applied to the parent's channels.
    pub fn goto_parent(route: impl Into<Routes>) -> Self {
        Self {
            goto: route.into().0,
            parent: true,
            ..Self::default()
        }
    }

    /// Sets the state update.
    #[must_use]
    pub fn update(mut self, update: Update) -> Self {
        self.update = update;
        self
    }
}

/// What a node returned, normalized.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeOutput {
    pub(crate) update: Update,
    pub(crate) goto: Vec<Route>,
    pub(crate) parent: Option<(Vec<Route>, Update)>,
    pub(crate) child_runs: Vec<ChildRunRef>,
    pub(crate) cached: bool,
}

impl From<Update> for NodeOutput {
    fn from(update: Update) -> Self {
        Self {
            update,
            ..Self::default()
        }
    }
}

impl From<()> for NodeOutput {
    fn from(_: ()) -> Self {
        Self::default()
    }
}

impl From<Command> for NodeOutput {
    fn from(c: Command) -> Self {
        if c.parent {
            Self {
                parent: Some((c.goto, c.update)),
                ..Self::default()
            }
        } else {
            Self {
                update: c.update,
                goto: c.goto,
                ..Self::default()
            }
        }
    }
}

/// A node failed (or paused).
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    /// The node reported a failure.
    #[error("{0}")]
    Failed(String),
    /// The task's input did not deserialize into the node's input type.
    #[error("input does not match the node's input type: {0}")]
    Input(String),
    /// The node panicked; its sibling tasks were not affected.
    #[error("node panicked: {0}")]
    Panicked(String),
    /// A sub-agent node gave up after its timeout.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// A child run (sub-agent) failed, or could not be spawned.
    #[error("child run failed: {0}")]
    Run(Box<RunError>),
    /// A subgraph failed.
    #[error("subgraph failed: {0}")]
    Graph(Box<GraphError>),
    /// The task paused (see [`NodeContext::interrupt`]). Returned with `?`;
    /// not a failure.
    #[error("interrupted")]
    Interrupted(Vec<InterruptRecord>),
}

impl From<String> for NodeError {
    fn from(s: String) -> Self {
        Self::Failed(s)
    }
}
impl From<&str> for NodeError {
    fn from(s: &str) -> Self {
        Self::Failed(s.to_string())
    }
}
impl From<serde_json::Error> for NodeError {
    fn from(e: serde_json::Error) -> Self {
        Self::Failed(e.to_string())
    }
}
impl From<RunError> for NodeError {
    fn from(e: RunError) -> Self {
        Self::Run(Box::new(e))
    }
}
impl From<GraphError> for NodeError {
    fn from(e: GraphError) -> Self {
        Self::Graph(Box::new(e))
    }
}

/// A task's input: the shared state snapshot or its own `Send` payload.
#[derive(Clone, Debug)]
pub enum NodeInput {
    /// The graph state at the start of the step (shared by every task).
    State(Arc<Snapshot>),
    /// The task's own payload.
    Payload(Value),
}

impl NodeInput {
    /// Deserializes the input as `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, NodeError> {
        match self {
            Self::State(s) => from_snapshot(s),
            Self::Payload(v) => T::deserialize(v),
        }
        .map_err(|e| NodeError::Input(e.to_string()))
    }

    /// The input as a JSON value (for the state: an object of channels).
    pub fn to_value(&self) -> Value {
        match self {
            Self::State(s) => crate::state::snapshot_object(s),
            Self::Payload(v) => v.clone(),
        }
    }
}

/// What a node gets besides its input: identity, the run tree, interrupts
/// and custom streaming.
pub struct NodeContext {
    pub(crate) env: Arc<StepEnv>,
    pub(crate) node: NodeId,
    pub(crate) task_id: TaskId,
    pub(crate) index: u32,
    pub(crate) interrupts: AtomicU32,
}

impl std::fmt::Debug for NodeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeContext")
            .field("graph", &self.env.run.graph.id)
            .field("node", &self.node)
            .field("task", &self.task_id)
            .finish_non_exhaustive()
    }
}

impl NodeContext {
    /// The graph run this task belongs to (spawn children from it).
    pub fn run(&self) -> &RunContext {
        &self.env.run.run
    }
    /// The node.
    pub fn node_id(&self) -> &NodeId {
        &self.node
    }
    /// The task.
    pub fn task_id(&self) -> TaskId {
        self.task_id
    }
    /// The graph.
    pub fn graph_id(&self) -> &tinyagents_core::GraphId {
        &self.env.run.graph.id
    }
    /// Namespace of the graph run (`node:task` segments joined by `|`).
    pub fn namespace(&self) -> &str {
        &self.env.run.ns
    }
    /// Depth of the graph run in the run tree.
    pub fn depth(&self) -> u32 {
        self.env.run.run.depth()
    }
    /// The recursion stack, outermost call first (the last frame is this
    /// graph run's).
    pub fn recursion_stack(&self) -> &[RecursionFrame] {
        &self.env.run.stack
    }
    /// The checkpointer the run uses, if any (children inherit it).
    pub fn checkpointer(&self) -> Option<&Arc<dyn tinyagents_store::Checkpointer>> {
        self.env.run.tree.opts.checkpointer.as_ref()
    }

    /// This task's namespace segment: `node:checkpoint.index`.
    pub(crate) fn task_segment(&self) -> String {
        format!("{}:{}.{}", self.node, self.env.checkpoint_id, self.index)
    }

    /// The namespace of a child of this task (subgraph, sub-agent).
    pub(crate) fn child_namespace(&self) -> Arc<str> {
        let seg = self.task_segment();
        if self.env.run.ns.is_empty() {
            seg.into()
        } else {
            format!("{}|{seg}", self.env.run.ns).into()
        }
    }

    pub(crate) fn interrupt_id(&self, k: u32) -> String {
        format!("{}#{k}", self.child_namespace())
    }

    /// Pauses the task with `value` for a human or supervisor.
    ///
    /// The first time, this returns `Err(NodeError::Interrupted)`: return it
    /// with `?`. The run saves the other tasks' results and returns an
    /// interrupted output. When the run is resumed with a value for this
    /// interrupt, the task runs again from its start and this call returns
    /// that value. Only this task re-runs. Several calls in one task are
    /// matched to resume values in order.
    pub fn interrupt(&self, value: impl serde::Serialize) -> Result<Value, NodeError> {
        let k = self.interrupts.fetch_add(1, Ordering::Relaxed);
        let id = self.interrupt_id(k);
        if let Some(v) = self.env.run.tree.resume_value(&id) {
            return Ok(v);
        }
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        Err(NodeError::Interrupted(vec![InterruptRecord {
            id,
            task_id: self.task_id,
            node: self.node.to_string(),
            namespace: self.env.run.ns.to_string(),
            value,
            run_id: Some(self.run().run_id()),
            depth: self.depth(),
        }]))
    }

    /// Streams custom data (stream mode `custom`; also a `GraphCustom` event).
    pub fn emit_custom(&self, data: impl serde::Serialize) {
        let data = serde_json::to_value(data).unwrap_or(Value::Null);
        let run = &self.env.run;
        if let Some(tx) = run.tree.stream_for(crate::stream::StreamMode::CUSTOM) {
            tx.send(StreamPart::Custom {
                namespace: run.ns.clone(),
                node: self.node.clone(),
                task_id: self.task_id,
                data: data.clone(),
            });
        }
        run.run.emit_with(|| EventKind::GraphCustom {
            graph_id: run.graph.id.clone(),
            node_id: self.node.clone(),
            task_id: self.task_id,
            namespace: run.ns.clone(),
            data,
        });
    }
}

/// The type-erased node the runtime calls.
pub(crate) trait DynNode: std::marker::Send + Sync + 'static {
    fn call(&self, input: NodeInput, ctx: NodeContext) -> BoxFuture<'static, Result<NodeOutput, NodeError>>;
}

/// A node made of an async function of its typed input.
pub(crate) struct FnNode<F, I> {
    pub f: F,
    pub _input: PhantomData<fn(I)>,
}

impl<F, I, Fut, O> DynNode for FnNode<F, I>
where
    F: Fn(I, NodeContext) -> Fut + std::marker::Send + Sync + 'static,
    I: DeserializeOwned + 'static,
    Fut: Future<Output = Result<O, NodeError>> + std::marker::Send + 'static,
    O: Into<NodeOutput>,
{
    fn call(&self, input: NodeInput, ctx: NodeContext) -> BoxFuture<'static, Result<NodeOutput, NodeError>> {
        match input.parse::<I>() {
            Ok(i) => {
                let fut = (self.f)(i, ctx);
                Box::pin(async move { fut.await.map(Into::into) })
            }
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
}

/// A node over the raw input (used by sub-agent and subgraph nodes).
pub(crate) struct RawNode<F>(pub F);

impl<F> DynNode for RawNode<F>
where
    F: Fn(NodeInput, NodeContext) -> BoxFuture<'static, Result<NodeOutput, NodeError>>
        + std::marker::Send
        + Sync
        + 'static,
{
    fn call(&self, input: NodeInput, ctx: NodeContext) -> BoxFuture<'static, Result<NodeOutput, NodeError>> {
        (self.0)(input, ctx)
    }
}

/// A router: picks the next nodes from the state after a step.
pub(crate) type RouterFn = dyn Fn(&Snapshot) -> Result<Routes, String> + std::marker::Send + Sync;
