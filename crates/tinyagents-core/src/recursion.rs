//! Recursion frames: the identity of graph calls and graph tasks, and the
//! policy that bounds recursion.
//!
//! A graph run, a subgraph call and a sub-agent called from a graph each
//! push a [`RecursionFrame`]; the frames from the outermost graph call down
//! to the current one are the recursion stack, recorded in checkpoints and
//! shown by UIs without reconstructing it from logs. The runtime that pushes
//! frames (`tinyagents-graph`) enforces a [`RecursionPolicy`] tree-wide.

use std::fmt;
use std::sync::Arc;

use crate::ids::RunId;

/// The id of a graph (its name as compiled).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct GraphId(pub Arc<str>);

/// The id of a node within a graph.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub Arc<str>);

macro_rules! name_id {
    ($t:ident) => {
        impl $t {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl From<&str> for $t {
            fn from(s: &str) -> Self {
                Self(s.into())
            }
        }
        impl From<String> for $t {
            fn from(s: String) -> Self {
                Self(s.into())
            }
        }
        impl From<Arc<str>> for $t {
            fn from(s: Arc<str>) -> Self {
                Self(s)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &*self.0)
            }
        }
    };
}
name_id!(GraphId);
name_id!(NodeId);

/// The id of a graph task: the superstep it belongs to and its position in
/// that step's task list. Unique within one graph run's namespace; stable
/// across a crash and resume (the task list is checkpointed).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct TaskId {
    /// The superstep (1 for the first step after the input).
    pub step: u64,
    /// Position in the step's task list (the order writes are applied in).
    pub index: u32,
}

impl TaskId {
    /// The task at `index` of superstep `step`.
    pub const fn new(step: u64, index: u32) -> Self {
        Self { step, index }
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.step, self.index)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({self})")
    }
}

/// One call on the recursion stack: a graph run, a subgraph call or a
/// sub-agent call made by a graph task.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecursionFrame {
    /// The graph being run (for a sub-agent call: the calling graph).
    pub graph_id: GraphId,
    /// The node of the calling graph that made the call (`None` for the
    /// outermost graph run).
    pub node_id: Option<NodeId>,
    /// The run of this call.
    pub run_id: RunId,
    /// The calling task (`None` for the outermost graph run).
    pub task_id: Option<TaskId>,
    /// Namespace of the call: `node:task` segments from the outermost graph.
    pub namespace: Vec<String>,
    /// Depth of the run in the run tree.
    pub depth: usize,
    /// The run that made the call.
    pub parent: Option<RunId>,
}

impl fmt::Display for RecursionFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "graph `{}`", self.graph_id)?;
        if let Some(n) = &self.node_id {
            write!(f, " node `{n}`")?;
        }
        if let Some(t) = &self.task_id {
            write!(f, " task {t}")?;
        }
        if !self.namespace.is_empty() {
            write!(f, " ns {}", self.namespace.join("|"))?;
        }
        write!(f, " run {} depth {}", self.run_id.short(), self.depth)
    }
}

/// Bounds on recursion, enforced over a whole run tree (not per graph).
///
/// * `max_depth`: graph-call recursion, the number of nested graph,
///   subgraph and sub-agent calls below the outermost graph run.
/// * `max_visits_per_node`: node-loop recursion, the number of supersteps in
///   which one node of one graph may run, summed over the tree.
/// * `max_total_steps`: supersteps of all graph runs in the tree together.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecursionPolicy {
    /// Deepest nesting of graph calls below the outermost graph run.
    pub max_depth: usize,
    /// Supersteps one node may run in, tree-wide; `None`: no cap.
    pub max_visits_per_node: Option<usize>,
    /// Supersteps of the whole tree.
    pub max_total_steps: usize,
}

impl RecursionPolicy {
    /// The default graph-call depth.
    pub const DEFAULT_MAX_DEPTH: usize = 16;
    /// The default number of supersteps of a tree.
    pub const DEFAULT_MAX_TOTAL_STEPS: usize = 10_000;
}

impl Default for RecursionPolicy {
    fn default() -> Self {
        Self {
            max_depth: Self::DEFAULT_MAX_DEPTH,
            max_visits_per_node: None,
            max_total_steps: Self::DEFAULT_MAX_TOTAL_STEPS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_display_names_graph_node_task_and_depth() {
        let f = RecursionFrame {
            graph_id: "g".into(),
            node_id: Some("n".into()),
            run_id: RunId::from_u128(0xabcdef01),
            task_id: Some(TaskId::new(3, 1)),
            namespace: vec!["n:3.1".into()],
            depth: 2,
            parent: None,
        };
        assert_eq!(
            f.to_string(),
            "graph `g` node `n` task 3.1 ns n:3.1 run abcdef01 depth 2"
        );
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(serde_json::from_str::<RecursionFrame>(&json).unwrap(), f);
    }
}
