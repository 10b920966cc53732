//! What the graph benchmarks share.

use serde_json::Value;
use tinyagents_graph::{CompiledGraph, GraphBuilder, Reducer, START, Send, SubAgentNode, SubAgentPolicy, Update};
use tinyagents_harness::Agent;

/// A `Send` fan-out of `n` `SubAgentNode` tasks running `agent`, each
/// adding 1 to channel `n`. `lean`: no event forwarding, no task scope.
pub fn subagent_fanout(agent: Agent, n: usize, lean: bool) -> CompiledGraph {
    let policy = SubAgentPolicy {
        forward_events: !lean,
        task_scope: !lean,
        ..SubAgentPolicy::default()
    };
    GraphBuilder::new("team")
        .channel("n", Reducer::Add)
        .subagent_node(
            "worker",
            SubAgentNode::new(agent)
                .output(|_, _| Ok(Update::new().set("n", 1)))
                .policy(policy),
        )
        .conditional_edge(START, &["worker"], move |_: Value| {
            (0..n).map(|_| Send::new("worker", "go")).collect::<Vec<_>>()
        })
        .compile()
        .unwrap()
}
