//! Item 8: Mermaid and Graphviz DOT text of a compiled graph, subgraphs
//! included, recursion drawn as references.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use serde_json::Value;
use tinyagents_core::ModelResponse;
use tinyagents_graph::{
    END, GraphBuilder, NodeContext, NodeError, Reducer, START, SubAgentNode, SubgraphNode, Update, to_dot, to_mermaid,
};
use tinyagents_harness::Agent;
use tinyagents_providers::ScriptedModel;

async fn noop(_: Value, _: NodeContext) -> Result<Update, NodeError> {
    Ok(Update::new())
}

fn example() -> tinyagents_graph::CompiledGraph {
    let inner = GraphBuilder::new("research")
        .channel("notes", Reducer::Append)
        .node("search", noop)
        .node("read", noop)
        .edge(START, "search")
        .edge("search", "read")
        .edge("read", END)
        .compile()
        .unwrap();
    let agent = Agent::builder("writer")
        .model(ScriptedModel::new([ModelResponse::text("x")]))
        .build();
    GraphBuilder::new("report")
        .channel("notes", Reducer::Append)
        .node("plan", noop)
        .subgraph_node("research", SubgraphNode::new(inner))
        .subagent_node("write", SubAgentNode::new(agent))
        .node("review", noop)
        .subgraph_node("again", SubgraphNode::this_graph())
        .edge(START, "plan")
        .edge("plan", "research")
        .edge("plan", "write")
        .join(&["research", "write"], "review")
        .conditional_edge("review", &["again", END], |_: Value| END)
        .compile()
        .unwrap()
}

#[test]
fn mermaid_shows_nodes_edges_routers_joins_and_subgraphs() {
    let m = to_mermaid(&example());
    let expected = [
        "flowchart TD",
        "__start__([START])",
        "n_plan[\"plan\"]",
        "subgraph n_research[\"research (subgraph: research)\"]",
        "n_research__n_search[\"search\"]",
        "n_research____start__ --> n_research__n_search",
        "n_write[[\"write (sub-agent: writer)\"]]",
        "n_again[/\"again (calls graph: report)\"/]",
        "__start__ --> n_plan",
        "n_plan --> n_research",
        "n_plan --> n_write",
        "n_research -- join --> n_review",
        "n_write -- join --> n_review",
        "n_review -.-> n_again",
        "n_review -.-> __end__",
    ];
    for e in expected {
        assert!(m.contains(e), "missing {e:?} in\n{m}");
    }
    assert_eq!(m, example().to_mermaid(), "deterministic");
}

#[test]
fn dot_draws_subgraphs_as_clusters() {
    let d = to_dot(&example());
    assert!(d.starts_with("digraph \"report\" {"), "{d}");
    for e in [
        "subgraph cluster_n_research {",
        "label=\"research (subgraph: research)\";",
        "n_research__n_search -> n_research__n_read;",
        "n_review -> n_again [style=dashed];",
        "n_research -> n_review [label=\"join\"];",
        "n_write [label=\"write\\nsub-agent: writer\", shape=box, style=rounded];",
    ] {
        assert!(d.contains(e), "missing {e:?} in\n{d}");
    }
    assert!(d.trim_end().ends_with('}'));
}
