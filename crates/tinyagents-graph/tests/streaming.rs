//! Item 7: one async stream per run with values, updates, events (nested
//! child events with their namespace) and custom data.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use futures::StreamExt;
use serde_json::{Value, json};
use tinyagents_core::{EventKind, ModelRequest, ModelResponse};
use tinyagents_graph::{
    GraphBuilder, NodeContext, NodeError, Reducer, RunOptions, START, Send, StreamMode, StreamPart, SubAgentNode,
    SubgraphNode, Update,
};
use tinyagents_harness::Agent;
use tinyagents_providers::ScriptedModel;

fn graph() -> tinyagents_graph::CompiledGraph {
    let agent = Agent::builder("worker")
        .model(ScriptedModel::from_fn(|_: &ModelRequest| Ok(ModelResponse::text("hi"))))
        .build();
    let inner = GraphBuilder::new("inner")
        .channel("log", Reducer::Append)
        .subagent_node(
            "agent",
            SubAgentNode::new(agent)
                .input(|_| Ok("hello".into()))
                .output(|o, _| Ok(Update::new().set("log", &*o.text))),
        )
        .edge(START, "agent")
        .compile()
        .unwrap();
    GraphBuilder::new("outer")
        .channel("log", Reducer::Append)
        .node("prep", |_: Value, ctx: NodeContext| async move {
            ctx.emit_custom(json!({"progress": 50}));
            Ok::<_, NodeError>(Update::new().set("log", "prep"))
        })
        .subgraph_node(
            "sub",
            SubgraphNode::new(inner)
                .input(|_| Ok(json!({})))
                .output(|s| Ok(Update::new().set("log", s["log"].clone()))),
        )
        .node("fan", |x: u64, _: NodeContext| async move {
            Ok::<_, NodeError>(Update::new().set("log", x))
        })
        .edge(START, "prep")
        .edge("prep", "sub")
        .conditional_edge("sub", &["fan"], |_: Value| {
            vec![Send::new("fan", 1), Send::new("fan", 2)]
        })
        .compile()
        .unwrap()
}

#[tokio::test]
async fn one_stream_carries_values_updates_events_and_custom_data() {
    let mut stream = graph().stream(json!({}), &RunOptions::new(), StreamMode::ALL);
    let mut parts = Vec::new();
    while let Some(p) = stream.next().await {
        parts.push(p);
    }
    let out = stream.outcome().await.unwrap();
    assert_eq!(out.get("log"), Some(&json!(["prep", "hi", 1, 2])));
    // Values: the outermost state after each of its 3 steps (and the inner graph's).
    let outer_values: Vec<&Value> = parts
        .iter()
        .filter_map(|p| match p {
            StreamPart::Values { namespace, state, .. } if namespace.is_empty() => Some(state),
            _ => None,
        })
        .collect();
    assert_eq!(outer_values.len(), 3);
    assert_eq!(outer_values[2]["log"], json!(["prep", "hi", 1, 2]));
    // Updates: one per task, with the node.
    let updates: Vec<String> = parts
        .iter()
        .filter_map(|p| match p {
            StreamPart::Updates { namespace, node, .. } if namespace.is_empty() => Some(node.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(updates.iter().filter(|n| *n == "fan").count(), 2);
    assert!(updates.contains(&"prep".to_string()) && updates.contains(&"sub".to_string()));
    // Custom data.
    assert!(
        parts
            .iter()
            .any(|p| matches!(p, StreamPart::Custom { data, .. } if data == &json!({"progress": 50})))
    );
    // Events of the sub-agent two levels down arrive with their namespace.
    let nested_model_events: Vec<&str> = parts
        .iter()
        .filter_map(|p| match p {
            StreamPart::Event { namespace, event } if matches!(event.kind, EventKind::ModelCallCompleted { .. }) => {
                Some(&**namespace)
            }
            _ => None,
        })
        .collect();
    assert_eq!(nested_model_events.len(), 1);
    let ns = nested_model_events[0];
    assert!(ns.starts_with("sub:") && ns.contains("|agent:"), "{ns}");
    let depth = parts
        .iter()
        .find_map(|p| match p {
            StreamPart::Event { event, .. } if matches!(event.kind, EventKind::ModelCallCompleted { .. }) => {
                Some(event.depth)
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(depth, 2);
    // Graph events carry the depth of their run.
    assert!(parts.iter().any(|p| matches!(p, StreamPart::Event { event, .. }
        if matches!(event.kind, EventKind::GraphStarted { .. }) && event.depth == 1)));
}

#[tokio::test]
async fn stream_modes_select_what_is_sent() {
    let mut stream = graph().stream(json!({}), &RunOptions::new(), StreamMode::UPDATES | StreamMode::CUSTOM);
    let mut kinds = std::collections::BTreeSet::new();
    while let Some(p) = stream.next().await {
        kinds.insert(match p {
            StreamPart::Values { .. } => "values",
            StreamPart::Updates { .. } => "updates",
            StreamPart::Event { .. } => "events",
            StreamPart::Custom { .. } => "custom",
        });
    }
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), vec!["custom", "updates"]);
}

#[tokio::test]
async fn a_resumed_run_streams_too_and_invoke_in_rolls_up_into_the_caller() {
    use std::sync::Arc;
    let g = GraphBuilder::new("ask")
        .channel("answer", Reducer::LastValue)
        .node("ask", |_: Value, ctx: NodeContext| async move {
            let v = ctx.interrupt("name?")?;
            Ok::<_, NodeError>(Update::new().set("answer", v))
        })
        .edge(START, "ask")
        .compile()
        .unwrap();
    let opts = RunOptions::new()
        .checkpointer(Arc::new(tinyagents_graph::MemoryCheckpointer::new()))
        .thread("t");
    let first = g.invoke(json!({}), &opts).await.unwrap();
    assert!(first.is_interrupted());
    let mut stream = g.stream_resume(tinyagents_graph::Resume::value("Ada"), &opts, StreamMode::VALUES);
    let mut last = None;
    while let Some(p) = stream.next().await {
        if let StreamPart::Values { state, .. } = p {
            last = Some(state);
        }
    }
    assert_eq!(last, Some(json!({"answer": "Ada"})));
    assert!(!stream.outcome().await.unwrap().is_interrupted());

    // A graph run inside an existing run: a child of it, usage rolled up.
    let agent = Agent::builder("w")
        .model(ScriptedModel::from_fn(|_: &ModelRequest| {
            Ok(ModelResponse::text("x").with_usage(tinyagents_core::Usage::call(3, 4)))
        }))
        .build();
    let inner = GraphBuilder::new("inner")
        .channel("w", Reducer::LastValue)
        .subagent_node("w", SubAgentNode::new(agent).input(|_| Ok("go".into())))
        .edge(START, "w")
        .compile()
        .unwrap();
    let caller = tinyagents_core::RunContext::root("caller", &tinyagents_core::RunConfig::new());
    let out = inner.invoke_in(&caller, json!({}), &RunOptions::new()).await.unwrap();
    assert_eq!(out.run.parent_run_id, Some(caller.run_id()));
    assert_eq!(out.total_usage.total_tokens(), 7);
    assert_eq!(caller.total_usage().total_tokens(), 7);
}
