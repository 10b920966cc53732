//! Tree-wide recursion tracking.
//!
//! One [`Tracker`] is shared (through `Arc`) by every graph run of a tree:
//! the outermost graph, its subgraphs at any depth, graphs run by tools of
//! sub-agents. It counts supersteps (`max_total_steps`) and, per graph and
//! node, the supersteps the node ran in (`max_visits_per_node`: node-loop
//! recursion). Graph-call recursion (`max_depth`) is the length of the
//! recursion stack, which every graph, subgraph and sub-agent call extends
//! by one frame. The two kinds are tracked separately: a router loop that
//! revisits a node 1,000 times is at graph-call depth 0, and a graph that
//! calls itself 5 deep may visit each node once per level.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tinyagents_core::{GraphId, NodeId, RecursionFrame, RecursionPolicy};

use crate::error::{GraphError, RecursionLimit};

/// Shared recursion counters of one run tree.
#[derive(Debug)]
pub(crate) struct Tracker {
    pub policy: RecursionPolicy,
    total_steps: AtomicUsize,
    visits: Mutex<HashMap<(GraphId, NodeId), usize>>,
}

impl Tracker {
    pub fn new(policy: RecursionPolicy) -> Self {
        Self {
            policy,
            total_steps: AtomicUsize::new(0),
            visits: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one superstep of `graph` running `nodes` (distinct, in task
    /// order); `frame_for` builds the frame named by an error.
    pub fn on_step(
        &self,
        graph: &GraphId,
        nodes: &[(NodeId, tinyagents_core::TaskId)],
        frame_for: impl Fn(Option<&(NodeId, tinyagents_core::TaskId)>) -> RecursionFrame,
    ) -> Result<(), GraphError> {
        let steps = self.total_steps.fetch_add(1, Ordering::Relaxed) + 1;
        if steps > self.policy.max_total_steps {
            return Err(GraphError::Recursion {
                limit: RecursionLimit::TotalSteps,
                value: steps,
                max: self.policy.max_total_steps,
                frame: Box::new(frame_for(nodes.first())),
            });
        }
        if let Some(max) = self.policy.max_visits_per_node {
            let mut visits = self
                .visits
                .lock()
                .map_err(|_| GraphError::Resume("recursion tracker poisoned".into()))?;
            for n in nodes {
                let v = visits.entry((graph.clone(), n.0.clone())).or_insert(0);
                *v += 1;
                if *v > max {
                    let value = *v;
                    drop(visits);
                    return Err(GraphError::Recursion {
                        limit: RecursionLimit::NodeVisits,
                        value,
                        max,
                        frame: Box::new(frame_for(Some(n))),
                    });
                }
            }
        }
        Ok(())
    }

    /// Checks that a call whose frame would sit at `call_depth` (0 for the
    /// outermost graph) is within `max_depth`.
    pub fn check_depth(&self, call_depth: usize, frame: impl FnOnce() -> RecursionFrame) -> Result<(), GraphError> {
        if call_depth > self.policy.max_depth {
            return Err(GraphError::Recursion {
                limit: RecursionLimit::Depth,
                value: call_depth,
                max: self.policy.max_depth,
                frame: Box::new(frame()),
            });
        }
        Ok(())
    }
}
