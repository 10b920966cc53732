//! Run errors of a graph. Every variant names the graph, and those raised
//! while running also the run path and depth; recursion errors carry the
//! recursion frame that broke the limit.

use std::sync::Arc;

use tinyagents_core::{GraphId, NodeId, RecursionFrame, RunError, RunPath, TaskId};
use tinyagents_store::StoreError;

use crate::builder::CompileError;
use crate::node::NodeError;

/// Which recursion limit was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecursionLimit {
    /// `max_depth`: graph-call recursion (nested graph, subgraph and
    /// sub-agent calls).
    Depth,
    /// `max_visits_per_node`: node-loop recursion (supersteps one node ran in).
    NodeVisits,
    /// `max_total_steps`: supersteps of the whole tree.
    TotalSteps,
}

impl std::fmt::Display for RecursionLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Depth => "graph-call depth",
            Self::NodeVisits => "node visits",
            Self::TotalSteps => "total supersteps",
        })
    }
}

/// A graph run failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GraphError {
    /// The graph did not compile.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// A node failed (its error is the source).
    #[error("{path} (depth {depth}): graph `{graph_id}` node `{node}` task {task_id}: {source}")]
    Node {
        /// The graph.
        graph_id: GraphId,
        /// The node.
        node: NodeId,
        /// The task.
        task_id: TaskId,
        /// Namespace of the graph run.
        namespace: String,
        /// Run path of the graph run.
        path: RunPath,
        /// Its depth.
        depth: u32,
        /// What the node reported.
        source: NodeError,
    },
    /// A reducer rejected a write (type mismatch, conflicting writes).
    #[error(
        "{path} (depth {depth}): graph `{graph_id}`: channel `{channel}` rejected a write of node `{node}` (task {task_id}): {message}; the step was not applied and the last checkpoint is intact"
    )]
    Reducer {
        /// The graph.
        graph_id: GraphId,
        /// The channel.
        channel: String,
        /// The writing node.
        node: NodeId,
        /// The writing task.
        task_id: TaskId,
        /// What the reducer said.
        message: String,
        /// Run path.
        path: RunPath,
        /// Depth.
        depth: u32,
    },
    /// A node wrote a channel the graph does not declare.
    #[error(
        "{path} (depth {depth}): graph `{graph_id}`: node `{node}` (task {task_id}) wrote unknown channel `{channel}` (channels: {known})"
    )]
    UnknownChannel {
        /// The graph.
        graph_id: GraphId,
        /// The channel.
        channel: String,
        /// The writing node.
        node: NodeId,
        /// The writing task.
        task_id: TaskId,
        /// Declared channels.
        known: String,
        /// Run path.
        path: RunPath,
        /// Depth.
        depth: u32,
    },
    /// A router, goto or send named a node it may not go to.
    #[error("{path} (depth {depth}): graph `{graph_id}`: route from `{from}` to `{to}`: {message}")]
    Route {
        /// The graph.
        graph_id: GraphId,
        /// The routing node.
        from: String,
        /// The target.
        to: String,
        /// What is wrong.
        message: String,
        /// Run path.
        path: RunPath,
        /// Depth.
        depth: u32,
    },
    /// A recursion limit was exceeded; `frame` is the call or node that
    /// would have exceeded it.
    #[error("recursion limit exceeded: {limit} {value} > {max} at {frame}")]
    Recursion {
        /// Which limit.
        limit: RecursionLimit,
        /// The value that broke it.
        value: usize,
        /// The limit.
        max: usize,
        /// Where.
        frame: Box<RecursionFrame>,
    },
    /// The checkpointer failed.
    #[error("checkpoint store: {0}")]
    Store(Arc<StoreError>),
    /// The run tree refused a child (depth cap, budget) or a run failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Resume, replay or fork was asked for something that is not there.
    #[error("{0}")]
    Resume(String),
    /// The input is not an object of channel writes.
    #[error("graph `{graph_id}`: invalid input: {message}")]
    Input {
        /// The graph.
        graph_id: GraphId,
        /// What is wrong.
        message: String,
    },
}

impl From<StoreError> for GraphError {
    fn from(e: StoreError) -> Self {
        Self::Store(Arc::new(e))
    }
}

impl GraphError {
    /// The recursion frame of a recursion error, looking through node and
    /// subgraph errors.
    pub fn recursion_frame(&self) -> Option<&RecursionFrame> {
        match self {
            Self::Recursion { frame, .. } => Some(frame),
            Self::Node {
                source: NodeError::Graph(g),
                ..
            } => g.recursion_frame(),
            _ => None,
        }
    }

    /// The innermost error of a chain of subgraph and node errors.
    pub fn root_cause(&self) -> &GraphError {
        match self {
            Self::Node {
                source: NodeError::Graph(g),
                ..
            } => g.root_cause(),
            other => other,
        }
    }
}
