//! Building and compiling a graph.
//!
//! [`GraphBuilder`] collects channels, nodes and edges; [`GraphBuilder::compile`]
//! checks them and returns a [`CompiledGraph`]. Compilation rejects what
//! would otherwise surprise at run time: an edge to or from an unknown node,
//! the same edge added twice, a node added twice, a router whose declared
//! targets do not exist, a reducer set on a channel that does not exist, and
//! a graph without an entry edge.
//!
//! # Several static edges from one node
//! `edge("a", "b")` followed by `edge("a", "c")` is a fan-out: after `a`
//! runs, `b` and `c` both run in the next superstep. A second static edge
//! never replaces the first. Adding the *same* edge twice is a compile error.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;
use serde_json::Value;
use tinyagents_core::{GraphId, NodeId};

use crate::node::{DynNode, END, FnNode, NodeContext, NodeError, NodeOutput, RouterFn, Routes, START};
use crate::state::{ChannelSpec, Reducer, from_snapshot};
use crate::subagent::SubAgentNode;
use crate::subgraph::SubgraphNode;

/// A graph could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// An edge, router target, join or interrupt names a node that does not exist.
    #[error("graph `{graph}`: {role} `{node}` is not a node (known nodes: {known})")]
    UnknownNode {
        /// The graph.
        graph: String,
        /// What named it (`edge from a to`, `router target of a`, …).
        role: String,
        /// The unknown name.
        node: String,
        /// The nodes that exist.
        known: String,
    },
    /// A node name was used twice.
    #[error("graph `{graph}`: node `{node}` is added twice")]
    DuplicateNode {
        /// The graph.
        graph: String,
        /// The node.
        node: String,
    },
    /// `START` or `END` used as a node name.
    #[error("graph `{graph}`: `{node}` is reserved and cannot be a node name")]
    ReservedName {
        /// The graph.
        graph: String,
        /// The name.
        node: String,
    },
    /// The same static edge was added twice.
    #[error(
        "graph `{graph}`: edge `{from}` -> `{to}` is added twice (a second edge to a different node fans out; the same edge twice is a mistake)"
    )]
    DuplicateEdge {
        /// The graph.
        graph: String,
        /// Source.
        from: String,
        /// Target.
        to: String,
    },
    /// A node has two routers.
    #[error("graph `{graph}`: node `{node}` has two conditional edges; merge them into one router")]
    DuplicateRouter {
        /// The graph.
        graph: String,
        /// The node.
        node: String,
    },
    /// Nothing leaves `START`.
    #[error("graph `{graph}` has no entry: add an edge from START")]
    NoEntry {
        /// The graph.
        graph: String,
    },
    /// A reducer was set on a channel that is not declared.
    #[error("graph `{graph}`: channel `{channel}` is not declared (declared: {known})")]
    UnknownChannel {
        /// The graph.
        graph: String,
        /// The channel.
        channel: String,
        /// The declared channels.
        known: String,
    },
    /// The state type does not describe channels.
    #[error("graph `{graph}`: {message}")]
    BadState {
        /// The graph.
        graph: String,
        /// What is wrong.
        message: String,
    },
}

/// What a node does (kept for export and events).
#[derive(Clone)]
pub(crate) enum NodeKind {
    Function,
    SubAgent { agent: Arc<str> },
    Subgraph(GraphRef),
}

#[derive(Clone)]
pub(crate) struct NodeSpec {
    pub name: NodeId,
    pub kind: NodeKind,
    pub f: Arc<dyn DynNode>,
}

/// A conditional edge: a router and the targets it may return.
#[derive(Clone)]
pub(crate) struct Router {
    pub f: Arc<RouterFn>,
    pub targets: Vec<Arc<str>>,
}

/// A join: `target` runs once after every source has run.
#[derive(Clone, Debug)]
pub(crate) struct Join {
    pub sources: Vec<Arc<str>>,
    pub target: Arc<str>,
}

pub(crate) struct GraphInner {
    pub id: GraphId,
    pub channels: Arc<[ChannelSpec]>,
    pub channel_index: Arc<HashMap<Arc<str>, usize>>,
    pub nodes: Vec<NodeSpec>,
    pub node_index: HashMap<Arc<str>, usize>,
    /// Static edges by source name (`START` included), in the order added.
    pub edges: HashMap<Arc<str>, Vec<Arc<str>>>,
    pub routers: HashMap<Arc<str>, Router>,
    pub joins: Vec<Join>,
    pub interrupt_before: HashSet<Arc<str>>,
    pub interrupt_after: HashSet<Arc<str>>,
}

/// A compiled graph: cheap to clone, shareable, runnable many times.
#[derive(Clone)]
pub struct CompiledGraph(pub(crate) Arc<GraphInner>);

impl std::fmt::Debug for CompiledGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledGraph")
            .field("id", &self.0.id)
            .field("nodes", &self.0.nodes.iter().map(|n| &n.name).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl CompiledGraph {
    /// The graph's id.
    pub fn id(&self) -> &GraphId {
        &self.0.id
    }
    /// Node names, in the order they were added.
    pub fn node_names(&self) -> Vec<&str> {
        self.0.nodes.iter().map(|n| n.name.as_str()).collect()
    }
    /// Channel names, in declaration order.
    pub fn channel_names(&self) -> Vec<&str> {
        self.0.channels.iter().map(|c| &*c.name).collect()
    }
}

/// A late-bound graph, for recursion: a node can call a graph that is
/// compiled after it (mutual recursion: A calls B calls A). Set it once with
/// [`GraphSlot::set`]. A graph reachable from its own slot is a reference
/// cycle and is never freed; recursive graphs are meant to live for the
/// program.
#[derive(Clone, Default)]
pub struct GraphSlot(Arc<OnceLock<CompiledGraph>>);

impl std::fmt::Debug for GraphSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("GraphSlot")
            .field(&self.get().map(|g| g.id().clone()))
            .finish()
    }
}

impl GraphSlot {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }
    /// Fills the slot; false if it was already set.
    pub fn set(&self, graph: CompiledGraph) -> bool {
        self.0.set(graph).is_ok()
    }
    /// The graph, once set.
    pub fn get(&self) -> Option<&CompiledGraph> {
        self.0.get()
    }
}

/// Which graph a subgraph node runs.
#[derive(Clone, Debug)]
pub enum GraphRef {
    /// This compiled graph.
    Graph(CompiledGraph),
    /// The graph in this slot (set after compiling).
    Slot(GraphSlot),
    /// The graph that contains the node (self-recursion).
    SelfRef,
}

impl From<CompiledGraph> for GraphRef {
    fn from(g: CompiledGraph) -> Self {
        Self::Graph(g)
    }
}
impl From<GraphSlot> for GraphRef {
    fn from(s: GraphSlot) -> Self {
        Self::Slot(s)
    }
}

/// Builds a graph (see the module docs).
///
/// ```
/// use tinyagents_graph::{GraphBuilder, NodeContext, NodeError, Reducer, Update, START, END};
///
/// #[derive(Default, serde::Serialize, serde::Deserialize)]
/// struct S { count: i64, log: Vec<String> }
///
/// let graph = GraphBuilder::new("counter")
///     .state::<S>()
///     .channel("log", Reducer::Append)
///     .node("inc", |s: S, _ctx: NodeContext| async move {
///         Ok::<_, NodeError>(Update::new().set("count", s.count + 1).set("log", "inc"))
///     })
///     .edge(START, "inc")
///     .edge("inc", END)
///     .compile()
///     .unwrap();
/// assert_eq!(graph.node_names(), ["inc"]);
/// ```
pub struct GraphBuilder {
    id: GraphId,
    channels: Vec<ChannelSpec>,
    nodes: Vec<NodeSpec>,
    edges: Vec<(Arc<str>, Arc<str>)>,
    routers: Vec<(Arc<str>, Router)>,
    joins: Vec<Join>,
    interrupt_before: Vec<Arc<str>>,
    interrupt_after: Vec<Arc<str>>,
    errors: Vec<CompileError>,
}

impl GraphBuilder {
    /// A new graph named `id`.
    pub fn new(id: impl Into<GraphId>) -> Self {
        Self {
            id: id.into(),
            channels: Vec::new(),
            nodes: Vec::new(),
            edges: Vec::new(),
            routers: Vec::new(),
            joins: Vec::new(),
            interrupt_before: Vec::new(),
            interrupt_after: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Declares one channel per field of `S`, with `S::default()`'s values
    /// as initial values and the `LastValue` reducer (change it with
    /// [`channel`](Self::channel)).
    #[must_use]
    pub fn state<S: serde::Serialize + Default>(mut self) -> Self {
        match serde_json::to_value(S::default()) {
            Ok(Value::Object(map)) => {
                for (k, v) in map {
                    self.declare(k.into(), None, Some(v));
                }
            }
            Ok(_) => self.errors.push(CompileError::BadState {
                graph: self.id.to_string(),
                message: format!(
                    "state type {} must serialize to an object (a struct with named fields)",
                    std::any::type_name::<S>()
                ),
            }),
            Err(e) => self.errors.push(CompileError::BadState {
                graph: self.id.to_string(),
                message: format!("state type {} is not serializable: {e}", std::any::type_name::<S>()),
            }),
        }
        self
    }

    fn declare(&mut self, name: Arc<str>, reducer: Option<Reducer>, default: Option<Value>) {
        if let Some(c) = self.channels.iter_mut().find(|c| c.name == name) {
            if let Some(r) = reducer {
                c.reducer = r;
            }
            if let Some(d) = default {
                c.default = d;
            }
        } else {
            self.channels.push(ChannelSpec {
                name,
                reducer: reducer.unwrap_or_default(),
                default: default.unwrap_or(Value::Null),
            });
        }
    }

    /// Declares channel `name` with `reducer` (or sets the reducer of a
    /// channel declared by [`state`](Self::state)).
    #[must_use]
    pub fn channel(mut self, name: impl Into<Arc<str>>, reducer: Reducer) -> Self {
        self.declare(name.into(), Some(reducer), None);
        self
    }

    /// Declares channel `name` with `reducer` and an initial value.
    #[must_use]
    pub fn channel_with_default(mut self, name: impl Into<Arc<str>>, reducer: Reducer, default: Value) -> Self {
        self.declare(name.into(), Some(reducer), Some(default));
        self
    }

    /// Sets the reducer of a channel that must already be declared; a
    /// compile error otherwise.
    #[must_use]
    pub fn reducer(mut self, name: &str, reducer: Reducer) -> Self {
        if let Some(c) = self.channels.iter_mut().find(|c| &*c.name == name) {
            c.reducer = reducer;
        } else {
            self.errors.push(CompileError::UnknownChannel {
                graph: self.id.to_string(),
                channel: name.to_string(),
                known: self.channels.iter().map(|c| &*c.name).collect::<Vec<_>>().join(", "),
            });
        }
        self
    }

    pub(crate) fn add_node(mut self, name: &str, kind: NodeKind, f: Arc<dyn DynNode>) -> Self {
        if name == START || name == END {
            self.errors.push(CompileError::ReservedName {
                graph: self.id.to_string(),
                node: name.to_string(),
            });
        } else if self.nodes.iter().any(|n| n.name.as_str() == name) {
            self.errors.push(CompileError::DuplicateNode {
                graph: self.id.to_string(),
                node: name.to_string(),
            });
        } else {
            self.nodes.push(NodeSpec {
                name: name.into(),
                kind,
                f,
            });
        }
        self
    }

    /// Adds a node: an async function of its input (deserialized from the
    /// state, or from a `Send` payload) and a [`NodeContext`], returning an
    /// [`Update`](crate::Update) or a [`Command`](crate::Command).
    #[must_use]
    pub fn node<I, O, Fut, F>(self, name: &str, f: F) -> Self
    where
        F: Fn(I, NodeContext) -> Fut + std::marker::Send + Sync + 'static,
        I: DeserializeOwned + 'static,
        Fut: Future<Output = Result<O, NodeError>> + std::marker::Send + 'static,
        O: Into<NodeOutput> + 'static,
    {
        let node = FnNode { f, _input: PhantomData };
        self.add_node(name, NodeKind::Function, Arc::new(node))
    }

    /// Adds a node that runs a harness agent as a child run.
    #[must_use]
    pub fn subagent_node(self, name: &str, node: SubAgentNode) -> Self {
        let kind = NodeKind::SubAgent {
            agent: node.agent.name().clone(),
        };
        let f = node.into_dyn(NodeId::from(name));
        self.add_node(name, kind, f)
    }

    /// Adds a node that runs a graph (possibly this one) as a child run.
    #[must_use]
    pub fn subgraph_node(self, name: &str, node: SubgraphNode) -> Self {
        let kind = NodeKind::Subgraph(node.graph.clone());
        let f = node.into_dyn();
        self.add_node(name, kind, f)
    }

    /// A static edge. A second edge from the same node to another node fans
    /// out (both run); the same edge twice is a compile error.
    #[must_use]
    pub fn edge(mut self, from: &str, to: &str) -> Self {
        self.edges.push((from.into(), to.into()));
        self
    }

    /// A conditional edge: after `from` runs, `router` reads the state and
    /// returns the next node(s), `END`, or [`Send`](crate::Send)s. `targets`
    /// lists the nodes it may return (checked at compile time, drawn by the
    /// exporters; a route outside them fails the run).
    #[must_use]
    pub fn conditional_edge<I, R, F>(mut self, from: &str, targets: &[&str], router: F) -> Self
    where
        F: Fn(I) -> R + std::marker::Send + Sync + 'static,
        I: DeserializeOwned + 'static,
        R: Into<Routes>,
    {
        let f: Arc<RouterFn> = Arc::new(move |snap| {
            let input: I = from_snapshot(snap).map_err(|e| format!("router input does not match: {e}"))?;
            Ok(router(input).into())
        });
        self.routers.push((
            from.into(),
            Router {
                f,
                targets: targets.iter().map(|t| Arc::from(*t)).collect(),
            },
        ));
        self
    }

    /// A join: `target` runs once, in the step after every node of
    /// `sources` has run (in any steps since the last time it ran).
    #[must_use]
    pub fn join(mut self, sources: &[&str], target: &str) -> Self {
        self.joins.push(Join {
            sources: sources.iter().map(|s| Arc::from(*s)).collect(),
            target: target.into(),
        });
        self
    }

    /// Pauses the run before any step that would run one of `nodes`.
    #[must_use]
    pub fn interrupt_before(mut self, nodes: &[&str]) -> Self {
        self.interrupt_before.extend(nodes.iter().map(|n| Arc::from(*n)));
        self
    }

    /// Pauses the run after any step that ran one of `nodes`.
    #[must_use]
    pub fn interrupt_after(mut self, nodes: &[&str]) -> Self {
        self.interrupt_after.extend(nodes.iter().map(|n| Arc::from(*n)));
        self
    }

    /// Checks the graph and compiles it.
    pub fn compile(self) -> Result<CompiledGraph, CompileError> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e);
        }
        let graph = self.id.to_string();
        let node_index: HashMap<Arc<str>, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.0.clone(), i))
            .collect();
        let known = || {
            self.nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let unknown = |role: String, node: &str| CompileError::UnknownNode {
            graph: graph.clone(),
            role,
            node: node.to_string(),
            known: known(),
        };
        let is_node = |n: &str| node_index.contains_key(n);
        let mut edges: HashMap<Arc<str>, Vec<Arc<str>>> = HashMap::new();
        for (from, to) in &self.edges {
            if &**from != START && !is_node(from) {
                return Err(unknown(format!("source of edge `{from}` -> `{to}`"), from));
            }
            if &**to != END && !is_node(to) {
                return Err(unknown(format!("target of edge `{from}` -> `{to}`"), to));
            }
            let list = edges.entry(from.clone()).or_default();
            if list.contains(to) {
                return Err(CompileError::DuplicateEdge {
                    graph,
                    from: from.to_string(),
                    to: to.to_string(),
                });
            }
            list.push(to.clone());
        }
        let mut routers = HashMap::new();
        for (from, r) in self.routers {
            if &*from != START && !is_node(&from) {
                return Err(unknown("source of a conditional edge".into(), &from));
            }
            for t in &r.targets {
                if &**t != END && !is_node(t) {
                    return Err(unknown(format!("target of the router of `{from}`"), t));
                }
            }
            if routers.insert(from.clone(), r).is_some() {
                return Err(CompileError::DuplicateRouter {
                    graph,
                    node: from.to_string(),
                });
            }
        }
        for j in &self.joins {
            for s in &j.sources {
                if !is_node(s) {
                    return Err(unknown(format!("source of the join into `{}`", j.target), s));
                }
            }
            if !is_node(&j.target) {
                return Err(unknown("target of a join".into(), &j.target));
            }
        }
        for n in self.interrupt_before.iter().chain(&self.interrupt_after) {
            if !is_node(n) {
                return Err(unknown("interrupt node".into(), n));
            }
        }
        if !edges.contains_key(START) && !routers.contains_key(START) {
            return Err(CompileError::NoEntry { graph });
        }
        let channels: Arc<[ChannelSpec]> = self.channels.into();
        let channel_index = Arc::new(channels.iter().enumerate().map(|(i, c)| (c.name.clone(), i)).collect());
        Ok(CompiledGraph(Arc::new(GraphInner {
            id: self.id,
            channels,
            channel_index,
            nodes: self.nodes,
            node_index,
            edges,
            routers,
            joins: self.joins,
            interrupt_before: self.interrupt_before.into_iter().collect(),
            interrupt_after: self.interrupt_after.into_iter().collect(),
        })))
    }
}
