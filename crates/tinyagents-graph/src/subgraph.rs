//! Subgraphs and recursion: a compiled graph as a node, and as a tool.
//!
//! A [`SubgraphNode`] runs a graph as a child run of the graph run that owns
//! the task (through [`RunContext::spawn_child`](tinyagents_core::RunContext::spawn_child)),
//! on its own tokio task, with its own namespace (`parent_ns|node:checkpoint.index`)
//! and checkpoints under the same thread. The graph can be another graph, a
//! [`GraphSlot`](crate::GraphSlot) filled later (mutual recursion), or the
//! graph that contains the node ([`SubgraphNode::this_graph`]: self-recursion).
//! Every call pushes a recursion frame and is checked against `max_depth`;
//! the tree-wide counters are shared with the child.
//!
//! [`CompiledGraph::as_tool`] exposes a graph to a harness agent: an agent
//! run by a [`SubAgentNode`](crate::SubAgentNode) can call back into the
//! same graph, and the call continues the task's recursion stack and
//! counters.

use std::sync::Arc;

use serde_json::Value;
use tinyagents_core::{ChildEvents, RecursionFrame, RunLimits, SharedTool, Tool, ToolContext, ToolError};

use crate::builder::{CompiledGraph, GraphRef};
use crate::interrupt::TaskScope;
use crate::node::{DynNode, END, NodeContext, NodeError, NodeInput, NodeOutput, RawNode, Route, Send};
use crate::recursion::Tracker;
use crate::runtime::{AbortOnDrop, ChildGuard, RunEnv, RunOptions, Start, TreeEnv, run_graph};
use crate::state::Update;

type InputMap = Arc<dyn Fn(&NodeInput) -> Result<Value, NodeError> + std::marker::Send + Sync>;
type OutputMap = Arc<dyn Fn(Value) -> Result<Update, NodeError> + std::marker::Send + Sync>;

/// A node that runs a graph as a child run (see the module docs).
///
/// By default the child's input is the parent's state restricted to the
/// child's channels (or the task's `Send` payload), and its final state is
/// written back to the parent's channels of the same names. With `Append`
/// channels shared by both, that writes the parent's items back a second
/// time: give such a node an [`input`](Self::input) or
/// [`output`](Self::output) mapper.
#[derive(Clone)]
pub struct SubgraphNode {
    pub(crate) graph: GraphRef,
    input: Option<InputMap>,
    output: Option<OutputMap>,
}

impl std::fmt::Debug for SubgraphNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubgraphNode")
            .field("graph", &self.graph)
            .finish_non_exhaustive()
    }
}

impl SubgraphNode {
    /// Runs `graph` (a compiled graph or a slot).
    pub fn new(graph: impl Into<GraphRef>) -> Self {
        Self {
            graph: graph.into(),
            input: None,
            output: None,
        }
    }

    /// Runs the graph that contains this node (self-recursion).
    pub fn this_graph() -> Self {
        Self::new(GraphRef::SelfRef)
    }

    /// Maps the task's input to the child's input (an object of channels).
    #[must_use]
    pub fn input(
        mut self,
        f: impl Fn(&NodeInput) -> Result<Value, NodeError> + std::marker::Send + Sync + 'static,
    ) -> Self {
        self.input = Some(Arc::new(f));
        self
    }

    /// Maps the child's final state to an update of the parent.
    #[must_use]
    pub fn output(
        mut self,
        f: impl Fn(Value) -> Result<Update, NodeError> + std::marker::Send + Sync + 'static,
    ) -> Self {
        self.output = Some(Arc::new(f));
        self
    }

    pub(crate) fn into_dyn(self) -> Arc<dyn DynNode> {
        let me = Arc::new(self);
        Arc::new(RawNode(move |input, ctx| {
            let me = me.clone();
            Box::pin(async move { me.call(input, ctx).await }) as tinyagents_core::BoxFuture<'static, _>
        }))
    }

    async fn call(&self, input: NodeInput, ctx: NodeContext) -> Result<NodeOutput, NodeError> {
        let graph = match &self.graph {
            GraphRef::Graph(g) => g.clone(),
            GraphRef::Slot(s) => s
                .get()
                .cloned()
                .ok_or_else(|| NodeError::Failed("the subgraph's GraphSlot was never set".into()))?,
            GraphRef::SelfRef => CompiledGraph(ctx.env.run.graph.clone()),
        };
        let value = match &self.input {
            Some(f) => f(&input)?,
            None => match &input {
                NodeInput::Payload(v) => v.clone(),
                NodeInput::State(snap) => Value::Object(
                    snap.iter()
                        .filter(|(k, v)| graph.0.channel_index.contains_key(k) && !v.is_null())
                        .map(|(k, v)| (k.to_string(), (**v).clone()))
                        .collect(),
                ),
            },
        };
        let update = object_update(value)?;
        let (r, reference) = crate::runtime::run_child_graph(&ctx, &graph, update).await?;
        if !r.interrupts.is_empty() {
            return Err(NodeError::Interrupted(r.interrupts));
        }
        let mut out = NodeOutput {
            child_runs: vec![reference],
            ..NodeOutput::default()
        };
        if let Some((routes, writes)) = r.parent {
            out.goto = routes
                .into_iter()
                .map(|r| match (r.node.as_str(), r.payload) {
                    (END, _) => Route::End,
                    (n, Some(p)) => Route::Send(Send { node: n.into(), arg: p }),
                    (n, None) => Route::To(n.into()),
                })
                .collect();
            out.update.writes = writes;
        } else {
            out.update = match &self.output {
                Some(f) => f(r.state)?,
                None => {
                    let parent = &ctx.env.run.graph;
                    let mut u = Update::new();
                    if let Value::Object(map) = r.state {
                        for (k, v) in map {
                            if parent.channel_index.contains_key(k.as_str()) {
                                u.push(k, v);
                            }
                        }
                    }
                    u
                }
            };
        }
        Ok(out)
    }
}

fn object_update(v: Value) -> Result<Update, NodeError> {
    match v {
        Value::Null => Ok(Update::new()),
        Value::Object(map) => {
            let mut u = Update::new();
            for (k, v) in map {
                u.push(k, v);
            }
            Ok(u)
        }
        other => Err(NodeError::Input(format!(
            "subgraph input must be an object, got {other}"
        ))),
    }
}

/// Arguments of a graph used as a tool.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
pub struct GraphToolArgs {
    /// The graph's input: an object of channel values.
    pub input: Value,
}

struct GraphTool {
    graph: GraphRef,
    name: String,
    description: String,
    opts: RunOptions,
}

impl Tool for GraphTool {
    type Args = GraphToolArgs;
    type Output = Value;
    type Error = ToolError;

    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }

    async fn call(&self, ctx: ToolContext, args: GraphToolArgs) -> Result<Value, ToolError> {
        let graph = match &self.graph {
            GraphRef::Graph(g) => g.clone(),
            GraphRef::Slot(s) => s
                .get()
                .cloned()
                .ok_or_else(|| ToolError::failed("the graph tool's GraphSlot was never set"))?,
            GraphRef::SelfRef => return Err(ToolError::failed("a graph tool needs a graph or a slot")),
        };
        let update = object_update(args.input).map_err(|e| ToolError::InvalidArguments { message: e.to_string() })?;
        let scope = TaskScope::find(ctx.run.run_id());
        let (tree, stack, ns) = match &scope {
            Some(s) => {
                let mut opts = s.tree().opts.clone();
                opts.checkpointer = None;
                let tree = Arc::new(TreeEnv {
                    tracker: s.tree().tracker.clone(),
                    opts,
                    thread_id: None,
                    stream: s.tree().stream.clone(),
                    resume: Default::default(),
                    cache: s.tree().cache.clone(),
                });
                (tree, s.stack(), format!("{}|tool:{}", s.child_ns, ctx.call_id))
            }
            None => {
                let mut opts = self.opts.clone();
                opts.checkpointer = None;
                let tree = Arc::new(TreeEnv {
                    tracker: Arc::new(Tracker::new(opts.recursion.clone())),
                    cache: opts.cache.clone().unwrap_or_default(),
                    opts,
                    thread_id: None,
                    stream: None,
                    resume: Default::default(),
                });
                (tree, Arc::new(Vec::new()), format!("tool:{}", ctx.call_id))
            }
        };
        let ns: Arc<str> = ns.into();
        let child = ctx
            .run
            .spawn_child(graph.0.id.0.clone(), &RunLimits::new(), ChildEvents::Parent)
            .map_err(|e| ToolError::ChildRun(Box::new(e)))?;
        let frame = RecursionFrame {
            graph_id: graph.0.id.clone(),
            node_id: None,
            run_id: child.run_id(),
            task_id: None,
            namespace: ns.split('|').map(str::to_string).collect(),
            depth: child.depth() as usize,
            parent: Some(ctx.run.run_id()),
        };
        let guard = ChildGuard::new(ctx.run.clone(), child.clone());
        tree.tracker
            .check_depth(stack.len(), || frame.clone())
            .map_err(|e| ToolError::failed(e.to_string()))?;
        let mut frames = (*stack).clone();
        frames.push(frame);
        let env = Arc::new(RunEnv {
            graph: graph.0.clone(),
            run: child,
            ns,
            stack: Arc::new(frames),
            tree,
        });
        let handle = tokio::spawn(async move {
            let mut guard = guard;
            let r = run_graph(env, Start::Input(update)).await;
            guard.ok = r.is_ok();
            r
        });
        let mut handle = AbortOnDrop(handle);
        match (&mut handle.0).await {
            Ok(Ok(r)) if r.interrupts.is_empty() => Ok(r.state),
            Ok(Ok(_)) => Err(ToolError::failed("the graph paused on an interrupt inside a tool call")),
            Ok(Err(e)) => Err(ToolError::failed(e.to_string())),
            Err(_) => Err(ToolError::Panicked {
                message: format!("graph `{}` panicked", graph.0.id),
            }),
        }
    }
}

impl CompiledGraph {
    /// This graph as a tool a harness agent can call (arguments
    /// `{"input": {channel: value, …}}`, output the final state). Called by
    /// an agent under a graph task, the graph continues that task's
    /// recursion stack and tree-wide counters; elsewhere it starts its own
    /// with `opts.recursion`.
    pub fn as_tool(&self, name: &str, description: &str, opts: RunOptions) -> SharedTool {
        tinyagents_core::into_dyn(GraphTool {
            graph: GraphRef::Graph(self.clone()),
            name: name.to_string(),
            description: description.to_string(),
            opts,
        })
    }
}

impl crate::builder::GraphSlot {
    /// The graph in this slot as a tool (see [`CompiledGraph::as_tool`]); the
    /// slot may be filled after the tool is given to an agent, so an agent
    /// inside a graph can call that same graph.
    pub fn as_tool(&self, name: &str, description: &str, opts: RunOptions) -> SharedTool {
        tinyagents_core::into_dyn(GraphTool {
            graph: GraphRef::Slot(self.clone()),
            name: name.to_string(),
            description: description.to_string(),
            opts,
        })
    }
}
