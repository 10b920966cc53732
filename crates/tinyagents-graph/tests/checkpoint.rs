//! Item 5: checkpoints after every superstep (SQLite and memory), linear
//! storage, child run references and recursion stacks, resume without
//! re-running finished tasks, time travel, and newer formats refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::{Value, json};
use tinyagents_core::{ModelRequest, ModelResponse};
use tinyagents_graph::{
    Checkpointer, ChildRunKind, END, GraphBuilder, GraphError, MemoryCheckpointer, NodeContext, NodeError, Reducer,
    Resume, RunOptions, START, Send, SqliteCheckpointer, StoreError, SubAgentNode, SubgraphNode, Update,
};
use tinyagents_harness::Agent;
use tinyagents_providers::ScriptedModel;

fn ok(u: Update) -> Result<Update, NodeError> {
    Ok(u)
}

fn counter_graph() -> tinyagents_graph::CompiledGraph {
    GraphBuilder::new("counter")
        .channel("n", Reducer::LastValue)
        .channel("big", Reducer::LastValue)
        .node("inc", |v: Value, _: NodeContext| async move {
            ok(Update::new().set("n", v["n"].as_i64().unwrap_or(0) + 1))
        })
        .edge(START, "inc")
        .conditional_edge("inc", &["inc", END], |v: Value| {
            if v["n"].as_i64().unwrap_or(0) < 5 { "inc" } else { END }
        })
        .compile()
        .unwrap()
}

#[tokio::test]
async fn a_checkpoint_follows_every_superstep_and_unchanged_channels_are_not_rewritten() {
    let store = Arc::new(MemoryCheckpointer::new());
    let opts = RunOptions::new().checkpointer(store.clone()).thread("t");
    let big: Vec<u64> = (0..10_000).collect();
    let out = counter_graph()
        .invoke(json!({"n": 0, "big": big}), &opts)
        .await
        .unwrap();
    assert_eq!(out.get("n"), Some(&json!(5)));
    let history = counter_graph().history(&opts).unwrap();
    assert_eq!(history.len(), 6, "input + 5 steps");
    assert_eq!(
        history.iter().map(|h| h.step).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4, 5]
    );
    let stats = store.stats();
    // `big` written once (with the input), `n` once per checkpoint.
    assert_eq!(stats.channel_values, 2 + 5);
    assert!(
        stats.bytes < 2 * 50_000,
        "the 10k-element channel was not rewritten: {} bytes",
        stats.bytes
    );
    // The state at an old checkpoint is still there.
    let old = counter_graph()
        .get_state(Some(history[2].checkpoint_id), &opts)
        .unwrap()
        .unwrap();
    assert_eq!(old.state["n"], json!(2));
    assert_eq!(old.state["big"].as_array().map(Vec::len), Some(10_000));
}

async fn fanout_bytes(n: u64) -> (u64, u64, u64) {
    let store = Arc::new(MemoryCheckpointer::new());
    let g = GraphBuilder::new("fan")
        .channel("out", Reducer::Append)
        .node("work", |x: u64, _: NodeContext| async move {
            ok(Update::new().set("out", x % 7))
        })
        .conditional_edge(START, &["work"], move |_: Value| {
            (0..n).map(|i| Send::new("work", i % 7)).collect::<Vec<_>>()
        })
        .compile()
        .unwrap();
    let opts = RunOptions::new().checkpointer(store.clone()).thread("t");
    let out = g.invoke(json!({}), &opts).await.unwrap();
    assert_eq!(out.get("out").and_then(Value::as_array).map(Vec::len), Some(n as usize));
    let s = store.stats();
    (s.bytes, s.task_writes, s.checkpoints)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100k_task_fanout_with_checkpointing_costs_linear_bytes() {
    let (b25, w25, c25) = fanout_bytes(25_000).await;
    let (b100, w100, c100) = fanout_bytes(100_000).await;
    assert_eq!((w25, w100), (25_000, 100_000), "each task's writes saved exactly once");
    assert_eq!((c25, c100), (2, 2), "one checkpoint for the input, one after the step");
    let ratio = b100 as f64 / b25 as f64;
    assert!(
        (3.6..4.4).contains(&ratio),
        "bytes grow linearly: {b25} -> {b100} (x{ratio:.2})"
    );
}

#[tokio::test]
async fn checkpoints_list_subagent_run_ids_and_the_recursion_stack() {
    let agent = Agent::builder("worker")
        .model(ScriptedModel::from_fn(|_: &ModelRequest| Ok(ModelResponse::text("ok"))))
        .build();
    let child = GraphBuilder::new("inner")
        .channel("results", Reducer::Append)
        .subagent_node(
            "worker",
            SubAgentNode::new(agent).output(|o, _| Ok(Update::new().set("results", &*o.text))),
        )
        .conditional_edge(START, &["worker"], |_: Value| {
            vec![Send::new("worker", "a"), Send::new("worker", "b")]
        })
        .compile()
        .unwrap();
    let g = GraphBuilder::new("outer")
        .channel("results", Reducer::Append)
        .subgraph_node("sub", SubgraphNode::new(child))
        .edge(START, "sub")
        .compile()
        .unwrap();
    let store = Arc::new(SqliteCheckpointer::in_memory().unwrap());
    let opts = RunOptions::new().checkpointer(store.clone()).thread("t");
    let out = g.invoke(json!({}), &opts).await.unwrap();
    assert_eq!(out.get("results"), Some(&json!(["ok", "ok"])));
    let outer = g.get_state(None, &opts).unwrap().unwrap();
    assert_eq!(outer.recursion_stack.len(), 1);
    assert_eq!(outer.recursion_stack[0].run_id, out.run.run_id);
    let sub_ref = outer
        .child_runs
        .iter()
        .find(|c| c.kind == ChildRunKind::Subgraph)
        .unwrap();
    // The subgraph's own checkpoints live in its namespace, with a two-frame
    // stack and the sub-agents' run ids.
    let ns = "sub:1.0";
    let inner = store
        .get_checkpoint("t", ns, None)
        .unwrap()
        .expect("subgraph checkpoint");
    let frames = &inner.record.recursion_stack;
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1].graph_id.as_str(), "inner");
    assert_eq!(frames[1].run_id, sub_ref.run_id);
    assert_eq!(frames[1].parent, Some(out.run.run_id));
    let kids: Vec<_> = inner
        .record
        .child_runs
        .iter()
        .map(|c| (c.kind, c.parent_run_id))
        .collect();
    assert_eq!(kids, vec![(ChildRunKind::Subagent, sub_ref.run_id); 2]);
    assert!(inner.record.child_runs.iter().all(|c| c.depth == 2 && c.ok));
}

#[tokio::test]
async fn resume_after_a_failed_step_reruns_only_unfinished_tasks() {
    let store = Arc::new(MemoryCheckpointer::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let broken = Arc::new(AtomicBool::new(true));
    let (c2, b2) = (calls.clone(), broken.clone());
    let g = GraphBuilder::new("flaky")
        .channel("out", Reducer::Append)
        .node("work", move |x: u64, _: NodeContext| {
            let (calls, broken) = (c2.clone(), b2.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                if x == 7 && broken.load(Ordering::SeqCst) {
                    return Err(NodeError::Failed("disk full".into()));
                }
                ok(Update::new().set("out", x))
            }
        })
        .conditional_edge(START, &["work"], |_: Value| {
            (0..10u64).map(|i| Send::new("work", i)).collect::<Vec<_>>()
        })
        .compile()
        .unwrap();
    let opts = RunOptions::new().checkpointer(store.clone()).thread("t");
    let err = g.invoke(json!({}), &opts).await.unwrap_err();
    assert!(err.to_string().contains("disk full"));
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    broken.store(false, Ordering::SeqCst);
    let out = g.resume(Resume::none(), &opts).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 11, "only the failed task ran again");
    assert_eq!(
        out.get("out"),
        Some(&json!([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])),
        "no write lost, none doubled"
    );
}

#[tokio::test]
async fn time_travel_lists_replays_and_forks() {
    let store = Arc::new(MemoryCheckpointer::new());
    let opts = RunOptions::new().checkpointer(store.clone()).thread("t");
    let g = counter_graph();
    g.invoke(json!({"n": 0}), &opts).await.unwrap();
    let history = g.history(&opts).unwrap();
    let at2 = history.iter().find(|h| h.step == 2).unwrap().checkpoint_id;
    // Replay from step 2: runs steps 3..5 again on a new branch.
    let out = g.replay(at2, &opts).await.unwrap();
    assert_eq!(out.get("n"), Some(&json!(5)));
    assert_eq!(out.steps, 3);
    let history2 = g.history(&opts).unwrap();
    assert_eq!(history2.len(), history.len() + 4, "a copy of step 2, then 3 steps");
    let copy = &history2[history.len()];
    assert_eq!(
        (copy.source.as_str(), copy.parent_id, copy.step),
        ("replay", Some(at2), 2)
    );
    assert_eq!(history2[history.len() + 1].parent_id, Some(copy.checkpoint_id));
    // Fork step 2 with n = 4: one more step to reach 5.
    let fork = g.fork(at2, Update::new().set("n", 4), &opts).unwrap();
    assert_eq!(g.get_state(Some(fork), &opts).unwrap().unwrap().state["n"], json!(4));
    let out = g.resume(Resume::none(), &opts).await.unwrap();
    assert_eq!(out.get("n"), Some(&json!(5)));
    assert_eq!(out.steps, 1);
}

#[tokio::test]
async fn a_checkpoint_from_a_newer_format_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.sqlite");
    let g = counter_graph();
    {
        let store = Arc::new(SqliteCheckpointer::open(&path).unwrap());
        let opts = RunOptions::new().checkpointer(store).thread("t");
        g.invoke(json!({"n": 3}), &opts).await.unwrap();
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    conn.execute(
        "UPDATE checkpoints SET format = 99 WHERE id = (SELECT MAX(id) FROM checkpoints)",
        [],
    )
    .unwrap();
    let count = |c: &rusqlite::Connection| -> (i64, i64, i64) {
        let q = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
        (
            q("SELECT COUNT(*) FROM checkpoints"),
            q("SELECT COUNT(*) FROM channel_values"),
            q("SELECT COUNT(*) FROM writes"),
        )
    };
    let before = count(&conn);
    let store = Arc::new(SqliteCheckpointer::open(&path).unwrap());
    let opts = RunOptions::new().checkpointer(store).thread("t");
    let err = g.resume(Resume::none(), &opts).await.unwrap_err();
    let GraphError::Store(e) = &err else { panic!("{err}") };
    assert!(
        matches!(
            &**e,
            StoreError::NewerFormat {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{e}"
    );
    let msg = err.to_string();
    assert!(msg.contains("has format 99, newer than the supported 1"), "{msg}");
    assert!(msg.contains("nothing was changed"), "{msg}");
    // Continuing the thread with new input is refused too.
    assert!(g.invoke(json!({"n": 0}), &opts).await.is_err());
    assert_eq!(count(&conn), before, "no stored state was changed or lost");
    // The memory backend refuses the same way.
    let mem = Arc::new(MemoryCheckpointer::new());
    let opts = RunOptions::new().checkpointer(mem.clone()).thread("m");
    g.invoke(json!({"n": 4}), &opts).await.unwrap();
    mem.set_format_for_testing("m", 2);
    let err = g.get_state(None, &opts).unwrap_err();
    assert!(
        err.to_string().contains("has format 2, newer than the supported 1"),
        "{err}"
    );
}

#[tokio::test]
async fn step_durability_saves_once_per_step_and_still_keeps_finished_siblings_of_a_failed_step() {
    let store = Arc::new(MemoryCheckpointer::new());
    let g = GraphBuilder::new("stepwise")
        .channel("out", Reducer::Append)
        .node("work", |x: u64, _: NodeContext| async move {
            if x == 99 {
                return Err(NodeError::Failed("no".into()));
            }
            ok(Update::new().set("out", x))
        })
        .conditional_edge(START, &["work"], |v: Value| {
            let n = v["n"].as_u64().unwrap_or(0);
            (0..n).map(|i| Send::new("work", i)).collect::<Vec<_>>()
        })
        .channel("n", Reducer::LastValue)
        .compile()
        .unwrap();
    let opts = RunOptions::new()
        .checkpointer(store.clone())
        .thread("a")
        .durability(tinyagents_graph::Durability::Step);
    g.invoke(json!({"n": 50}), &opts).await.unwrap();
    assert_eq!((store.stats().checkpoints, store.stats().write_batches), (2, 0));
    let opts = opts.thread("b");
    assert!(g.invoke(json!({"n": 100}), &opts).await.is_err());
    let s = store.stats();
    assert_eq!(
        (s.write_batches, s.task_writes),
        (1, 99),
        "one batch with the 99 finished tasks"
    );
}

#[tokio::test]
async fn pending_steering_in_a_checkpoint_is_carried_to_the_next_ones() {
    // The steering hook: a steering layer records commands in the latest
    // checkpoint; the runtime keeps them until they are consumed.
    let store = Arc::new(MemoryCheckpointer::new());
    let opts = RunOptions::new().checkpointer(store.clone()).thread("t");
    let g = GraphBuilder::new("pause")
        .channel("log", Reducer::Append)
        .node("a", |_: Value, _: NodeContext| async {
            ok(Update::new().set("log", "a"))
        })
        .node("b", |_: Value, _: NodeContext| async {
            ok(Update::new().set("log", "b"))
        })
        .edge(START, "a")
        .edge("a", "b")
        .interrupt_before(&["b"])
        .compile()
        .unwrap();
    assert!(g.invoke(json!({}), &opts).await.unwrap().is_interrupted());
    let mut latest = store.get_checkpoint("t", "", None).unwrap().unwrap();
    let steer = json!({"target": {"node": "b"}, "command": "add_instructions", "text": "be brief"});
    latest.record.pending_steering.push(steer.clone());
    store.put_checkpoint(&latest.record, &latest.next_tasks, &[]).unwrap();
    let out = g.resume(Resume::none(), &opts).await.unwrap();
    assert_eq!(out.get("log"), Some(&json!(["a", "b"])));
    let after = store.get_checkpoint("t", "", None).unwrap().unwrap();
    assert_eq!(after.record.pending_steering, vec![steer]);
}

#[tokio::test]
async fn replay_re_executes_subgraphs_instead_of_reusing_their_old_checkpoints() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r2 = runs.clone();
    let child = GraphBuilder::new("child")
        .channel("n", Reducer::Add)
        .node("count", move |_: Value, _: NodeContext| {
            let runs = r2.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                ok(Update::new().set("n", 1))
            }
        })
        .edge(START, "count")
        .compile()
        .unwrap();
    let g = GraphBuilder::new("parent")
        .channel("n", Reducer::LastValue)
        .subgraph_node("sub", SubgraphNode::new(child))
        .edge(START, "sub")
        .compile()
        .unwrap();
    let opts = RunOptions::new()
        .checkpointer(Arc::new(MemoryCheckpointer::new()))
        .thread("t");
    g.invoke(json!({"n": 0}), &opts).await.unwrap();
    let input = g.history(&opts).unwrap()[0].checkpoint_id;
    let out = g.replay(input, &opts).await.unwrap();
    assert_eq!(out.get("n"), Some(&json!(1)));
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the subgraph ran again");
}
