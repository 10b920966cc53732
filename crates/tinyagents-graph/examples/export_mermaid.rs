//! Prints the Mermaid (or, with `--dot`, Graphviz DOT) text of an example
//! graph: a planner, a research subgraph, a writer sub-agent, a join, and a
//! router that may call the graph again.
//!
//! ```text
//! cargo run -p tinyagents-graph --example export_mermaid [-- --dot]
//! ```
//!
//! This is what `tinyagents graph FILE` does for a graph defined by an
//! example: build the `CompiledGraph`, then print
//! `tinyagents_graph::to_mermaid(&graph)` or `to_dot(&graph)`.

use serde_json::Value;
use tinyagents_core::ModelResponse;
use tinyagents_graph::{
    CompileError, CompiledGraph, END, GraphBuilder, NodeContext, NodeError, Reducer, START, SubAgentNode, SubgraphNode,
    Update,
};
use tinyagents_harness::Agent;
use tinyagents_providers::ScriptedModel;

async fn noop(_: Value, _: NodeContext) -> Result<Update, NodeError> {
    Ok(Update::new())
}

/// The example graph.
fn example_graph() -> Result<CompiledGraph, CompileError> {
    let research = GraphBuilder::new("research")
        .channel("notes", Reducer::Append)
        .node("search", noop)
        .node("read", noop)
        .edge(START, "search")
        .edge("search", "read")
        .edge("read", END)
        .compile()?;
    let writer = Agent::builder("writer")
        .model(ScriptedModel::new([ModelResponse::text("draft")]))
        .build();
    GraphBuilder::new("report")
        .channel("notes", Reducer::Append)
        .channel("draft", Reducer::LastValue)
        .node("plan", noop)
        .subgraph_node("research", SubgraphNode::new(research))
        .subagent_node("write", SubAgentNode::new(writer))
        .node("review", noop)
        .subgraph_node("revise", SubgraphNode::this_graph())
        .edge(START, "plan")
        .edge("plan", "research")
        .edge("plan", "write")
        .join(&["research", "write"], "review")
        .conditional_edge("review", &["revise", END], |_: Value| END)
        .compile()
}

fn main() -> Result<(), CompileError> {
    let graph = example_graph()?;
    let dot = std::env::args().any(|a| a == "--dot");
    let text = if dot {
        tinyagents_graph::to_dot(&graph)
    } else {
        tinyagents_graph::to_mermaid(&graph)
    };
    print!("{text}");
    Ok(())
}
