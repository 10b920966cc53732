//! Item 1: typed state, START/END, static and conditional edges, reducers,
//! commands, Send fan-out, joins, supersteps and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tinyagents_graph::{
    Command, CompileError, END, GraphBuilder, GraphError, MemoryCheckpointer, NodeContext, NodeError, Reducer,
    RunOptions, START, Send, Update,
};

#[derive(Default, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
struct S {
    count: i64,
    log: Vec<String>,
    total: i64,
}

fn ok(u: Update) -> Result<Update, NodeError> {
    Ok(u)
}

#[tokio::test]
async fn linear_graph_runs_nodes_in_order_and_applies_reducers() {
    let g = GraphBuilder::new("linear")
        .state::<S>()
        .channel("log", Reducer::Append)
        .channel("total", Reducer::Add)
        .node("a", |s: S, _: NodeContext| async move {
            ok(Update::new().set("count", s.count + 1).set("log", "a").set("total", 10))
        })
        .node("b", |s: S, _: NodeContext| async move {
            ok(Update::new().set("count", s.count * 10).set("log", "b").set("total", 5))
        })
        .edge(START, "a")
        .edge("a", "b")
        .edge("b", END)
        .compile()
        .unwrap();
    let out = g
        .invoke(
            S {
                count: 1,
                ..S::default()
            },
            &RunOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        out.state_as::<S>().unwrap(),
        S {
            count: 20,
            log: vec!["a".into(), "b".into()],
            total: 15
        }
    );
    assert_eq!(out.steps, 2);
}

#[tokio::test]
async fn conditional_edge_loops_until_the_state_converges() {
    let g = GraphBuilder::new("loop")
        .state::<S>()
        .node("inc", |s: S, _: NodeContext| async move {
            ok(Update::new().set("count", s.count + 1))
        })
        .edge(START, "inc")
        .conditional_edge("inc", &["inc", END], |s: S| if s.count < 5 { "inc" } else { END })
        .compile()
        .unwrap();
    let out = g.invoke(json!({}), &RunOptions::new()).await.unwrap();
    assert_eq!(out.get("count"), Some(&json!(5)));
    assert_eq!(out.steps, 5);
}

#[tokio::test]
async fn send_fanout_applies_writes_in_task_order_not_completion_order() {
    #[derive(Default, serde::Serialize, serde::Deserialize)]
    struct F {
        items: Vec<u64>,
        out: Vec<u64>,
    }
    let g = GraphBuilder::new("fanout")
        .state::<F>()
        .channel("out", Reducer::Append)
        .node("work", |x: u64, _: NodeContext| async move {
            // Later tasks finish first.
            tokio::time::sleep(Duration::from_millis(40 - 4 * x)).await;
            ok(Update::new().set("out", x * 100))
        })
        .conditional_edge(START, &["work"], |f: F| {
            f.items.into_iter().map(|i| Send::new("work", i)).collect::<Vec<_>>()
        })
        .edge("work", END)
        .compile()
        .unwrap();
    let out = g
        .invoke(json!({"items": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}), &RunOptions::new())
        .await
        .unwrap();
    assert_eq!(
        out.get("out"),
        Some(&json!([0, 100, 200, 300, 400, 500, 600, 700, 800, 900]))
    );
}

#[tokio::test]
async fn a_second_static_edge_fans_out_and_a_join_waits_for_both() {
    let g = GraphBuilder::new("diamond")
        .channel("log", Reducer::Append)
        .node("a", |_: serde_json::Value, _: NodeContext| async {
            ok(Update::new().set("log", "a"))
        })
        .node("b", |_: serde_json::Value, _: NodeContext| async {
            ok(Update::new().set("log", "b"))
        })
        .node("c", |_: serde_json::Value, _: NodeContext| async {
            ok(Update::new().set("log", "c"))
        })
        .node("slow", |_: serde_json::Value, _: NodeContext| async {
            ok(Update::new().set("log", "slow"))
        })
        .node("join", |v: serde_json::Value, _: NodeContext| async move {
            let n = v["log"].as_array().map_or(0, |a| a.len());
            ok(Update::new().set("log", format!("join saw {n}")))
        })
        .edge(START, "a")
        .edge("a", "b")
        .edge("a", "c") // second static edge: fan-out, not overwrite
        .edge("c", "slow")
        .join(&["b", "slow"], "join")
        .edge("join", END)
        .compile()
        .unwrap();
    let out = g.invoke(json!({}), &RunOptions::new()).await.unwrap();
    // step1 a; step2 b,c; step3 slow; step4 join (after both b and slow).
    assert_eq!(out.get("log"), Some(&json!(["a", "b", "c", "slow", "join saw 4"])));
}

#[test]
fn the_same_edge_twice_is_a_compile_error() {
    let err = GraphBuilder::new("dup")
        .node("a", |_: serde_json::Value, _: NodeContext| async { ok(Update::new()) })
        .edge(START, "a")
        .edge("a", END)
        .edge("a", END)
        .compile()
        .unwrap_err();
    assert!(matches!(err, CompileError::DuplicateEdge { .. }), "{err}");
    assert!(err.to_string().contains("`a` -> `__end__` is added twice"), "{err}");
}

#[test]
fn an_edge_to_an_unknown_node_is_a_compile_error_that_names_it() {
    let err = GraphBuilder::new("typo")
        .node("research", |_: serde_json::Value, _: NodeContext| async {
            ok(Update::new())
        })
        .edge(START, "research")
        .edge("research", "reserch")
        .compile()
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("`reserch` is not a node"), "{msg}");
    assert!(msg.contains("known nodes: research"), "{msg}");
    let err = GraphBuilder::new("noentry")
        .node("a", |_: serde_json::Value, _: NodeContext| async { ok(Update::new()) })
        .compile()
        .unwrap_err();
    assert!(matches!(err, CompileError::NoEntry { .. }));
    let err = GraphBuilder::new("router")
        .node("a", |_: serde_json::Value, _: NodeContext| async { ok(Update::new()) })
        .edge(START, "a")
        .conditional_edge("a", &["b"], |_: serde_json::Value| "b")
        .compile()
        .unwrap_err();
    assert!(err.to_string().contains("target of the router of `a`"), "{err}");
    let err = GraphBuilder::new("r")
        .node("a", |_: serde_json::Value, _: NodeContext| async { ok(Update::new()) })
        .node("a", |_: serde_json::Value, _: NodeContext| async { ok(Update::new()) })
        .edge(START, "a")
        .compile()
        .unwrap_err();
    assert!(matches!(err, CompileError::DuplicateNode { .. }));
}

#[tokio::test]
async fn command_goto_routes_dynamically_with_an_update() {
    let g = GraphBuilder::new("cmd")
        .state::<S>()
        .channel("log", Reducer::Append)
        .node("decide", |s: S, _: NodeContext| async move {
            Ok::<_, NodeError>(
                Command::goto(if s.count > 0 { "yes" } else { "no" }).update(Update::new().set("log", "decided")),
            )
        })
        .node("yes", |_: S, _: NodeContext| async {
            ok(Update::new().set("log", "yes"))
        })
        .node("no", |_: S, _: NodeContext| async {
            ok(Update::new().set("log", "no"))
        })
        .edge(START, "decide")
        .compile()
        .unwrap();
    let out = g.invoke(json!({"count": 1}), &RunOptions::new()).await.unwrap();
    assert_eq!(out.get("log"), Some(&json!(["decided", "yes"])));
    let out = g.invoke(json!({"count": 0}), &RunOptions::new()).await.unwrap();
    assert_eq!(out.get("log"), Some(&json!(["decided", "no"])));
}

#[tokio::test]
async fn a_panicking_node_fails_the_run_with_a_clear_error_and_keeps_sibling_results() {
    let store = Arc::new(MemoryCheckpointer::new());
    let ran = Arc::new(AtomicUsize::new(0));
    let r2 = ran.clone();
    let g = GraphBuilder::new("boom")
        .channel("out", Reducer::Append)
        .node("work", move |x: u64, _: NodeContext| {
            let ran = r2.clone();
            async move {
                ran.fetch_add(1, Ordering::SeqCst);
                if x == 3 {
                    panic!("bad input {x}");
                }
                ok(Update::new().set("out", x))
            }
        })
        .conditional_edge(START, &["work"], |_: serde_json::Value| {
            (0..6u64).map(|i| Send::new("work", i)).collect::<Vec<_>>()
        })
        .edge("work", END)
        .compile()
        .unwrap();
    let opts = RunOptions::new().checkpointer(store.clone()).thread("t");
    let err = g.invoke(json!({}), &opts).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("node `work` task 1.3: node panicked: bad input 3"),
        "{msg}"
    );
    assert_eq!(ran.load(Ordering::SeqCst), 6, "siblings ran");
    // The input checkpoint is intact and the five finished siblings are saved.
    let state = g.get_state(None, &opts).unwrap().unwrap();
    assert_eq!(state.step, 0);
    assert_eq!(state.next.len(), 6);
    assert_eq!(state.saved_tasks, 5);
}

#[tokio::test]
async fn a_reducer_type_mismatch_is_a_clear_error_and_the_last_checkpoint_is_intact() {
    let store = Arc::new(MemoryCheckpointer::new());
    let g = GraphBuilder::new("mismatch")
        .channel_with_default("total", Reducer::Add, json!(1))
        .node("good", |_: serde_json::Value, _: NodeContext| async {
            ok(Update::new().set("total", 2))
        })
        .node("bad", |_: serde_json::Value, _: NodeContext| async {
            ok(Update::new().set("total", "three"))
        })
        .edge(START, "good")
        .edge("good", "bad")
        .compile()
        .unwrap();
    let opts = RunOptions::new().checkpointer(store.clone()).thread("t");
    let err = g.invoke(json!({}), &opts).await.unwrap_err();
    assert!(matches!(err, GraphError::Reducer { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("channel `total` rejected a write of node `bad`"), "{msg}");
    assert!(
        msg.contains("add reducer needs numbers, got a number + a string"),
        "{msg}"
    );
    let state = g.get_state(None, &opts).unwrap().unwrap();
    assert_eq!(state.state["total"], json!(3), "the step of `good` is kept");
    assert_eq!(state.next, vec!["bad".to_string()]);
}

#[tokio::test]
async fn two_tasks_writing_a_last_value_channel_in_one_step_is_an_error() {
    let g = GraphBuilder::new("conflict")
        .channel("x", Reducer::LastValue)
        .node(
            "w",
            |i: u64, _: NodeContext| async move { ok(Update::new().set("x", i)) },
        )
        .conditional_edge(START, &["w"], |_: serde_json::Value| {
            vec![Send::new("w", 1), Send::new("w", 2)]
        })
        .compile()
        .unwrap();
    let err = g.invoke(json!({}), &RunOptions::new()).await.unwrap_err();
    assert!(
        err.to_string().contains("last_value channel written by two tasks"),
        "{err}"
    );
}

#[tokio::test]
async fn writing_an_undeclared_channel_names_the_channel_and_the_node() {
    let g = GraphBuilder::new("undeclared")
        .channel("x", Reducer::LastValue)
        .node("w", |_: serde_json::Value, _: NodeContext| async {
            ok(Update::new().set("y", 1))
        })
        .edge(START, "w")
        .compile()
        .unwrap();
    let err = g.invoke(json!({}), &RunOptions::new()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("node `w` (task 1.0) wrote unknown channel `y` (channels: x)"),
        "{err}"
    );
    let err = g.invoke(json!({"nope": 1}), &RunOptions::new()).await.unwrap_err();
    assert!(err.to_string().contains("unknown channel `nope`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_bound_tasks_of_one_step_run_on_both_cores_at_once() {
    // Each task spins (blocking its thread) until both have arrived: this
    // can only finish if the two tasks run on two threads at the same time.
    let arrived = Arc::new(AtomicUsize::new(0));
    let a = arrived.clone();
    let g = GraphBuilder::new("cpu")
        .channel("seen", Reducer::Append)
        .node("spin", move |_: u64, _: NodeContext| {
            let arrived = a.clone();
            async move {
                arrived.fetch_add(1, Ordering::SeqCst);
                let start = std::time::Instant::now();
                while arrived.load(Ordering::SeqCst) < 2 && start.elapsed() < Duration::from_secs(20) {
                    std::hint::spin_loop();
                }
                ok(Update::new().set("seen", arrived.load(Ordering::SeqCst)))
            }
        })
        .conditional_edge(START, &["spin"], |_: serde_json::Value| {
            vec![Send::new("spin", 0), Send::new("spin", 1)]
        })
        .compile()
        .unwrap();
    let out = g.invoke(json!({}), &RunOptions::new()).await.unwrap();
    assert_eq!(out.get("seen"), Some(&json!([2, 2])));
}

#[tokio::test]
async fn a_concurrency_cap_bounds_tasks_in_flight() {
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (n2, p2) = (now.clone(), peak.clone());
    let g = GraphBuilder::new("cap")
        .channel("n", Reducer::Add)
        .node("w", move |_: u64, _: NodeContext| {
            let (now, peak) = (n2.clone(), p2.clone());
            async move {
                let c = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(c, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                ok(Update::new().set("n", 1))
            }
        })
        .conditional_edge(START, &["w"], |_: serde_json::Value| {
            (0..60u64).map(|i| Send::new("w", i)).collect::<Vec<_>>()
        })
        .compile()
        .unwrap();
    let out = g
        .invoke(json!({}), &RunOptions::new().max_concurrency(4))
        .await
        .unwrap();
    assert_eq!(out.get("n"), Some(&json!(60)));
    assert!(peak.load(Ordering::SeqCst) <= 4, "peak {}", peak.load(Ordering::SeqCst));
    assert!(peak.load(Ordering::SeqCst) >= 2);
}
