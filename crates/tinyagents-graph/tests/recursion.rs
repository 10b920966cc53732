//! Item 4: subgraphs, self and mutual recursion, an agent calling back into
//! its graph, router loops, recursive Send fan-out; RecursionPolicy enforced
//! tree-wide with the frame named in the error and depth on every event.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::sync::Arc;

use serde_json::{Value, json};
use tinyagents_core::{CollectingSink, EventKind, ModelRequest, ModelResponse, RecursionPolicy};
use tinyagents_graph::{
    END, GraphBuilder, GraphError, GraphSlot, NodeContext, NodeError, RecursionLimit, Reducer, RunOptions, START, Send,
    SubAgentNode, SubgraphNode, Update,
};
use tinyagents_harness::Agent;
use tinyagents_providers::ScriptedModel;

fn ok(u: Update) -> Result<Update, NodeError> {
    Ok(u)
}

/// A graph that calls itself `n` times, recording the recursion depth seen
/// at each level.
fn self_recursive() -> tinyagents_graph::CompiledGraph {
    GraphBuilder::new("rec")
        .channel("n", Reducer::LastValue)
        .channel("depths", Reducer::Append)
        .node("enter", |_: Value, ctx: NodeContext| async move {
            ok(Update::new().set("depths", ctx.recursion_stack().len() - 1))
        })
        .subgraph_node(
            "recurse",
            SubgraphNode::this_graph()
                .input(|i| Ok(json!({"n": i.to_value()["n"].as_i64().unwrap_or(0) - 1})))
                .output(|child| Ok(Update::new().set("depths", child["depths"].clone()))),
        )
        .edge(START, "enter")
        .conditional_edge("enter", &["recurse", END], |s: Value| {
            if s["n"].as_i64().unwrap_or(0) > 0 {
                "recurse"
            } else {
                END
            }
        })
        .edge("recurse", END)
        .compile()
        .unwrap()
}

#[tokio::test]
async fn a_graph_that_invokes_itself_pushes_one_frame_per_call() {
    let sink = CollectingSink::new();
    let out = self_recursive()
        .invoke(json!({"n": 3}), &RunOptions::new().sink(sink.clone()))
        .await
        .unwrap();
    assert_eq!(out.get("depths"), Some(&json!([0, 1, 2, 3])));
    // Every graph event carries the depth of its run: 0 for the outermost,
    // one more per nested call.
    let depths: Vec<u32> = sink
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::GraphStarted { .. }))
        .map(|e| e.depth)
        .collect();
    assert_eq!(depths, vec![0, 1, 2, 3]);
    // Usage of nested runs rolls up (no model here: just the run count).
    assert_eq!(out.child_runs.len(), 1);
}

#[tokio::test]
async fn a_recursive_graph_that_hits_max_depth_fails_with_the_frame_in_the_error() {
    let policy = RecursionPolicy {
        max_depth: 2,
        ..RecursionPolicy::default()
    };
    let err = self_recursive()
        .invoke(json!({"n": 10}), &RunOptions::new().recursion(policy))
        .await
        .unwrap_err();
    let GraphError::Recursion {
        limit,
        value,
        max,
        frame,
    } = err.root_cause()
    else {
        panic!("not a recursion error: {err}");
    };
    assert_eq!((*limit, *value, *max), (RecursionLimit::Depth, 3, 2));
    assert_eq!(frame.graph_id.as_str(), "rec");
    assert_eq!(frame.node_id.as_ref().map(|n| n.as_str()), Some("recurse"));
    assert_eq!(frame.depth, 3);
    assert_eq!(frame.namespace.len(), 3, "{:?}", frame.namespace);
    let msg = err.to_string();
    assert!(
        msg.contains("recursion limit exceeded: graph-call depth 3 > 2 at graph `rec` node `recurse`"),
        "{msg}"
    );
    assert_eq!(err.recursion_frame(), Some(&**frame));
}

#[tokio::test]
async fn mutual_recursion_a_calls_b_calls_a_through_a_slot() {
    let slot_a = GraphSlot::new();
    let b = GraphBuilder::new("B")
        .channel("n", Reducer::LastValue)
        .channel("trail", Reducer::Append)
        .node("b", |_: Value, _: NodeContext| async {
            ok(Update::new().set("trail", "B"))
        })
        .subgraph_node(
            "call_a",
            SubgraphNode::new(slot_a.clone())
                .input(|i| Ok(json!({"n": i.to_value()["n"].as_i64().unwrap_or(0) - 1})))
                .output(|c| Ok(Update::new().set("trail", c["trail"].clone()))),
        )
        .edge(START, "b")
        .conditional_edge("b", &["call_a", END], |s: Value| {
            if s["n"].as_i64().unwrap_or(0) > 0 {
                "call_a"
            } else {
                END
            }
        })
        .compile()
        .unwrap();
    let a = GraphBuilder::new("A")
        .channel("n", Reducer::LastValue)
        .channel("trail", Reducer::Append)
        .node("a", |_: Value, _: NodeContext| async {
            ok(Update::new().set("trail", "A"))
        })
        .subgraph_node(
            "call_b",
            SubgraphNode::new(b)
                .input(|i| Ok(json!({"n": i.to_value()["n"]})))
                .output(|c| Ok(Update::new().set("trail", c["trail"].clone()))),
        )
        .edge(START, "a")
        .edge("a", "call_b")
        .compile()
        .unwrap();
    assert!(slot_a.set(a.clone()));
    let out = a.invoke(json!({"n": 2}), &RunOptions::new()).await.unwrap();
    assert_eq!(out.get("trail"), Some(&json!(["A", "B", "A", "B", "A", "B"])));
    // The same policy bounds it: depth counts every call, A or B.
    let err = a
        .invoke(
            json!({"n": 50}),
            &RunOptions::new().recursion(RecursionPolicy {
                max_depth: 4,
                ..RecursionPolicy::default()
            }),
        )
        .await
        .unwrap_err();
    let frame = err.recursion_frame().expect("recursion frame");
    assert_eq!(frame.depth, 5);
    assert!(["A", "B"].contains(&frame.graph_id.as_str()));
}

#[tokio::test]
async fn an_agent_node_calls_an_agent_that_calls_back_into_the_same_graph() {
    // Graph G: node `delegate` runs agent `outer`; `outer` calls sub-agent
    // `inner` (a tool); `inner` calls G itself as a tool with n - 1.
    let slot = GraphSlot::new();
    let inner_model = ScriptedModel::from_fn(|req: &ModelRequest| match req.messages.last() {
        Some(tinyagents_core::Message::User { content }) => {
            let n: i64 = content.parse().unwrap_or(0);
            Ok(ScriptedModel::call("G", json!({"input": {"n": n - 1}})))
        }
        Some(m) => Ok(ModelResponse::text(m.text().unwrap_or("").to_string())),
        None => Ok(ModelResponse::text("")),
    });
    let inner = Agent::builder("inner")
        .model(inner_model)
        .tool(slot.as_tool("G", "run graph G", RunOptions::new()))
        .build();
    let outer_model = ScriptedModel::from_fn(|req: &ModelRequest| match req.messages.last() {
        Some(tinyagents_core::Message::User { content }) => {
            Ok(ScriptedModel::call("inner", json!({"input": content.to_string()})))
        }
        Some(m) => Ok(ModelResponse::text(m.text().unwrap_or("").to_string())),
        None => Ok(ModelResponse::text("")),
    });
    let outer = Agent::builder("outer")
        .model(outer_model)
        .subagent(tinyagents_harness::SubAgent::new(inner))
        .build();
    let g = GraphBuilder::new("G")
        .channel("n", Reducer::LastValue)
        .channel("answer", Reducer::LastValue)
        .channel("frames", Reducer::LastValue)
        .subagent_node(
            "delegate",
            SubAgentNode::new(outer)
                .input(|i| Ok(i.to_value()["n"].to_string()))
                .output(|out, _| Ok(Update::new().set("answer", &*out.text))),
        )
        .node("bottom", |_: Value, ctx: NodeContext| async move {
            let frames: Vec<String> = ctx.recursion_stack().iter().map(|f| f.graph_id.to_string()).collect();
            ok(Update::new().set("answer", "bottom").set("frames", frames))
        })
        .conditional_edge(START, &["delegate", "bottom"], |s: Value| {
            if s["n"].as_i64().unwrap_or(0) > 0 {
                "delegate"
            } else {
                "bottom"
            }
        })
        .compile()
        .unwrap();
    assert!(slot.set(g.clone()));
    let out = g.invoke(json!({"n": 2}), &RunOptions::new()).await.unwrap();
    // The innermost G run saw the whole chain: G, delegate (sub-agent), G, delegate, G.
    let answer = out.get("answer").unwrap().as_str().unwrap().replace('\\', "");
    assert!(answer.contains(r#""frames":["G","G","G","G","G"]"#), "{answer}");
    // With max_depth 2 the third call is refused; the tool reports the frame.
    let err_out = g
        .invoke(
            json!({"n": 5}),
            &RunOptions::new().recursion(RecursionPolicy {
                max_depth: 2,
                ..RecursionPolicy::default()
            }),
        )
        .await
        .unwrap();
    let answer = err_out.get("answer").unwrap().as_str().unwrap().to_string();
    assert!(
        answer.contains("recursion limit exceeded: graph-call depth 3 > 2"),
        "{answer}"
    );
}

#[tokio::test]
async fn max_visits_per_node_stops_a_router_loop_and_names_the_node() {
    let g = GraphBuilder::new("spin")
        .channel("n", Reducer::Add)
        .node("route", |_: Value, _: NodeContext| async {
            ok(Update::new().set("n", 1))
        })
        .edge(START, "route")
        .conditional_edge("route", &["route", END], |_: Value| "route") // never converges
        .compile()
        .unwrap();
    let policy = RecursionPolicy {
        max_visits_per_node: Some(5),
        ..RecursionPolicy::default()
    };
    let err = g
        .invoke(json!({}), &RunOptions::new().recursion(policy))
        .await
        .unwrap_err();
    let GraphError::Recursion {
        limit,
        value,
        max,
        frame,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!((*limit, *value, *max), (RecursionLimit::NodeVisits, 6, 5));
    assert_eq!(frame.node_id.as_ref().map(|n| n.as_str()), Some("route"));
    assert_eq!(frame.task_id.map(|t| t.step), Some(6));
    assert!(
        err.to_string()
            .contains("node visits 6 > 5 at graph `spin` node `route` task 6.0"),
        "{err}"
    );
    // Node-loop and graph-call recursion are separate: depth stayed 0.
    assert_eq!(frame.depth, 0);
}

#[tokio::test]
async fn recursive_send_fanout_splits_until_leaves_and_total_steps_is_tree_wide() {
    // `split` sends itself the two halves of its range until ranges are
    // single numbers, which it adds up.
    let g = GraphBuilder::new("split")
        .channel_with_default("sum", Reducer::Add, json!(0))
        .channel_with_default("tasks", Reducer::Add, json!(0))
        .node("split", |r: (u64, u64), _: NodeContext| async move {
            let (lo, hi) = r;
            if hi - lo == 1 {
                return Ok::<_, NodeError>(
                    tinyagents_graph::Command::goto(END).update(Update::new().set("sum", lo).set("tasks", 1)),
                );
            }
            let mid = (lo + hi) / 2;
            Ok(
                tinyagents_graph::Command::goto(vec![Send::new("split", (lo, mid)), Send::new("split", (mid, hi))])
                    .update(Update::new().set("tasks", 1)),
            )
        })
        .conditional_edge(START, &["split"], |_: Value| Send::new("split", (0u64, 64u64)))
        .compile()
        .unwrap();
    let out = g.invoke(json!({}), &RunOptions::new()).await.unwrap();
    assert_eq!(out.get("sum"), Some(&json!((0..64).sum::<u64>())));
    assert_eq!(out.get("tasks"), Some(&json!(127)));
    assert_eq!(out.steps, 7);
    // max_total_steps counts the steps of every graph run of the tree:
    // the self-recursive graph runs 2 steps per level.
    let policy = RecursionPolicy {
        max_total_steps: 5,
        ..RecursionPolicy::default()
    };
    let err = self_recursive()
        .invoke(json!({"n": 10}), &RunOptions::new().recursion(policy))
        .await
        .unwrap_err();
    let root = err.root_cause();
    assert!(
        matches!(
            root,
            GraphError::Recursion {
                limit: RecursionLimit::TotalSteps,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_subgraph_node_maps_shared_channels_in_and_out() {
    let child = GraphBuilder::new("child")
        .channel("x", Reducer::LastValue)
        .node("double", |v: Value, _: NodeContext| async move {
            ok(Update::new().set("x", v["x"].as_i64().unwrap_or(0) * 2))
        })
        .edge(START, "double")
        .compile()
        .unwrap();
    let parent = GraphBuilder::new("parent")
        .channel("x", Reducer::LastValue)
        .channel("other", Reducer::LastValue)
        .subgraph_node("sub", SubgraphNode::new(child))
        .edge(START, "sub")
        .compile()
        .unwrap();
    let sink = CollectingSink::new();
    let out = parent
        .invoke(json!({"x": 21, "other": "kept"}), &RunOptions::new().sink(sink.clone()))
        .await
        .unwrap();
    assert_eq!(out.get("x"), Some(&json!(42)));
    assert_eq!(out.get("other"), Some(&json!("kept")));
    let sub = &out.child_runs[0];
    assert_eq!(
        (sub.kind, sub.parent_run_id, sub.depth),
        (tinyagents_graph::ChildRunKind::Subgraph, out.run.run_id, 1)
    );
    let ns: Vec<Arc<str>> = sink
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::GraphStarted { namespace, .. } => Some(namespace.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ns.len(), 2);
    assert_eq!(&*ns[0], "");
    assert!(ns[1].starts_with("sub:"), "{ns:?}");
}
