//! Items 2 and 3: sub-agent nodes as child runs (identity, events, policy,
//! roll-up, references) and parallel fan-out through context forking.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tinyagents_core::{
    BoxFuture, CollectingSink, EventKind, Model, ModelError, ModelRequest, ModelResponse, Price, PriceTable, RunConfig,
    RunLimits, Usage, tool_fn_with_context,
};
use tinyagents_graph::{
    END, GraphBuilder, MemoryCheckpointer, NodeContext, NodeError, Reducer, RetryPolicy, RunOptions, START, Send,
    SubAgentNode, SubAgentPolicy, Update, with_task_scratch,
};
use tinyagents_harness::Agent;
use tinyagents_providers::ScriptedModel;

fn echo_model() -> ScriptedModel {
    ScriptedModel::from_fn(|req: &ModelRequest| {
        let input = req.messages.last().and_then(|m| m.text()).unwrap_or("").to_string();
        Ok(ModelResponse::text(format!("done: {input}")).with_usage(Usage::call(10, 2)))
    })
    .with_id("m")
}

fn fanout_graph(node: SubAgentNode, n: u64) -> tinyagents_graph::CompiledGraph {
    GraphBuilder::new("team")
        .channel("results", Reducer::Append)
        .subagent_node("worker", node)
        .conditional_edge(START, &["worker"], move |_: serde_json::Value| {
            (0..n)
                .map(|i| Send::new("worker", format!("job {i}")))
                .collect::<Vec<_>>()
        })
        .edge("worker", END)
        .compile()
        .unwrap()
}

fn to_results(node: SubAgentNode) -> SubAgentNode {
    node.output(|out, _| Ok(Update::new().set("results", &*out.text)))
}

#[tokio::test]
async fn a_subagent_node_is_a_child_run_of_the_graph_run_with_rolled_up_usage_and_cost() {
    let sink = CollectingSink::new();
    let agent = Agent::builder("worker").model(echo_model()).build();
    let g = fanout_graph(to_results(SubAgentNode::new(agent)), 3);
    let store = Arc::new(MemoryCheckpointer::new());
    let config = RunConfig::new()
        .sink(sink.clone())
        .prices(PriceTable::new().with("m", Price::per_mtok(1.0, 2.0)));
    let opts = RunOptions::new().config(config).checkpointer(store).thread("t");
    let out = g.invoke(json!({}), &opts).await.unwrap();
    assert_eq!(
        out.get("results"),
        Some(&json!(["done: job 0", "done: job 1", "done: job 2"]))
    );
    // Usage and cost of the three children are in the graph run's totals.
    assert_eq!(out.total_usage.total_tokens(), 3 * 12);
    assert_eq!(out.total_cost.picodollars(), 3 * (10 * 1_000_000 + 2 * 2_000_000));
    // Child identity: own run id, same root, parent = the graph run.
    assert_eq!(out.child_runs.len(), 3);
    let graph_run = out.run.run_id;
    for c in &out.child_runs {
        assert_eq!(c.parent_run_id, graph_run);
        assert_ne!(c.run_id, graph_run);
        assert_eq!(c.depth, 1);
        assert_eq!(c.kind, tinyagents_graph::ChildRunKind::Subagent);
        assert!(c.ok);
    }
    let events = sink.events();
    // Harness events of the children are forwarded, with the children's ids.
    for c in &out.child_runs {
        let started = events
            .iter()
            .find(|e| e.run_id == c.run_id && matches!(e.kind, EventKind::RunStarted { .. }))
            .expect("child RunStarted forwarded");
        assert_eq!(started.root_run_id, graph_run);
        assert_eq!(started.parent_run_id, Some(graph_run));
    }
    // Task events carry the child run references.
    let task_children: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::GraphTaskCompleted { child_run_ids, .. } => Some(child_run_ids.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(task_children.len(), 3);
    // The checkpoint after the step lists them too.
    let state = g.get_state(None, &opts).unwrap().unwrap();
    let ids: Vec<_> = state.child_runs.iter().map(|c| c.run_id).collect();
    assert_eq!(ids.len(), 3);
    for c in &out.child_runs {
        assert!(ids.contains(&c.run_id));
    }
}

struct FlakyModel {
    calls: AtomicU64,
    fail_first: u64,
    slow_first: u64,
}

impl Model for FlakyModel {
    fn id(&self) -> &str {
        "flaky"
    }
    fn complete<'a>(&'a self, _req: &'a ModelRequest) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.slow_first {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            if n < self.fail_first {
                return Err(ModelError::Server {
                    status: 503,
                    message: "overloaded".into(),
                });
            }
            Ok(ModelResponse::text("finally"))
        })
    }
}

#[tokio::test]
async fn retryable_failures_are_retried_with_backoff_as_new_child_runs() {
    let model = Arc::new(FlakyModel {
        calls: AtomicU64::new(0),
        fail_first: 2,
        slow_first: 0,
    });
    let agent = Agent::builder("worker").shared_model(model.clone()).build();
    let node = to_results(SubAgentNode::new(agent)).policy(SubAgentPolicy {
        retry: RetryPolicy::attempts(3, Duration::from_millis(1)),
        ..SubAgentPolicy::default()
    });
    let out = fanout_graph(node, 1)
        .invoke(json!({}), &RunOptions::new())
        .await
        .unwrap();
    assert_eq!(out.get("results"), Some(&json!(["finally"])));
    assert_eq!(model.calls.load(Ordering::SeqCst), 3);
    // Three attempts, three child runs; the failed ones say so.
    assert_eq!(out.child_runs.len(), 3);
    assert_eq!(out.child_runs.iter().filter(|c| c.ok).count(), 1);
}

#[tokio::test]
async fn a_timed_out_attempt_is_abandoned_and_retried() {
    let model = Arc::new(FlakyModel {
        calls: AtomicU64::new(0),
        fail_first: 0,
        slow_first: 1,
    });
    let agent = Agent::builder("worker").shared_model(model.clone()).build();
    let node = to_results(SubAgentNode::new(agent)).policy(SubAgentPolicy {
        timeout: Some(Duration::from_millis(50)),
        retry: RetryPolicy::attempts(2, Duration::from_millis(1)),
        ..SubAgentPolicy::default()
    });
    let out = fanout_graph(node.clone(), 1)
        .invoke(json!({}), &RunOptions::new())
        .await
        .unwrap();
    assert_eq!(out.get("results"), Some(&json!(["finally"])));
    // Without a retry the timeout is the task's error.
    let model = Arc::new(FlakyModel {
        calls: AtomicU64::new(0),
        fail_first: 0,
        slow_first: 1,
    });
    let agent = Agent::builder("worker").shared_model(model).build();
    let node = to_results(SubAgentNode::new(agent)).policy(SubAgentPolicy {
        timeout: Some(Duration::from_millis(20)),
        ..SubAgentPolicy::default()
    });
    let err = fanout_graph(node, 1)
        .invoke(json!({}), &RunOptions::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("node `worker` task 1.0: timed out after 20ms"),
        "{err}"
    );
}

#[tokio::test]
async fn the_cache_reuses_a_childs_output_for_the_same_input() {
    let model = Arc::new(echo_model());
    let g = GraphBuilder::new("cached")
        .channel("results", Reducer::Append)
        .subagent_node(
            "worker",
            to_results(SubAgentNode::new(
                Agent::builder("worker").shared_model(model.clone()).build(),
            ))
            .policy(SubAgentPolicy {
                cache: true,
                ..SubAgentPolicy::default()
            }),
        )
        .node("again", |_: serde_json::Value, _: NodeContext| async {
            Ok::<_, NodeError>(tinyagents_graph::Command::goto(Send::new("worker", "same")))
        })
        .conditional_edge(START, &["worker"], |_: serde_json::Value| {
            vec![Send::new("worker", "same")]
        })
        .edge("worker", "again")
        .conditional_edge("again", &[END], |_: serde_json::Value| END)
        .compile()
        .unwrap();
    let cache = tinyagents_graph::SubAgentCache::new();
    let out = g
        .invoke(
            json!({}),
            &RunOptions::new()
                .cache(cache.clone())
                .recursion(tinyagents_core::RecursionPolicy {
                    max_total_steps: 3,
                    ..Default::default()
                }),
        )
        .await;
    // worker (model) -> again -> worker (cache) -> again: stopped by max_total_steps.
    let err = out.unwrap_err();
    assert!(err.to_string().contains("total supersteps 4 > 3"), "{err}");
    assert_eq!(
        model.request_count(),
        1,
        "second run of the same input came from the cache"
    );
    assert_eq!(cache.hits(), 1);
}

#[tokio::test]
async fn graph_subagents_are_counted_by_the_same_descendant_budget() {
    let agent = Agent::builder("worker").model(echo_model()).build();
    let g = fanout_graph(to_results(SubAgentNode::new(agent)), 5);
    let opts = RunOptions::new().limits(RunLimits::new().max_descendants(3));
    let err = g.invoke(json!({}), &opts).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("descendants budget exceeded"), "{msg}");
    // The child's own limits narrow too: a token budget stops the child.
    let agent = Agent::builder("worker").model(echo_model()).build();
    let node = to_results(SubAgentNode::new(agent)).policy(SubAgentPolicy {
        limits: RunLimits::new().max_tokens(5),
        ..SubAgentPolicy::default()
    });
    let err = fanout_graph(node, 1)
        .invoke(json!({}), &RunOptions::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("tokens budget exceeded"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_children_inherit_identity_and_sinks_and_get_isolated_task_scopes() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (i2, p2) = (in_flight.clone(), peak.clone());
    // A tool that writes the task's own input into the task scratch, waits,
    // and reads it back: isolated scopes never see each other's value.
    let remember = tool_fn_with_context("remember", "remember a value", move |ctx, args: serde_json::Value| {
        let (in_flight, peak) = (i2.clone(), p2.clone());
        async move {
            let v = args["v"].clone();
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            with_task_scratch(&ctx, |m| m.insert("v".into(), v.clone())).ok_or("no task scope")?;
            tokio::time::sleep(Duration::from_millis(5)).await;
            let back = with_task_scratch(&ctx, |m| m.get("v").cloned()).flatten();
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, tinyagents_core::ToolError>(json!({"same": back == Some(v)}))
        }
    });
    let model = ScriptedModel::from_fn(|req: &ModelRequest| {
        let last = req.messages.last();
        match last {
            Some(tinyagents_core::Message::User { content }) => {
                Ok(ScriptedModel::call("remember", json!({"v": content.to_string()})))
            }
            Some(m) => Ok(ModelResponse::text(m.text().unwrap_or("").to_string())),
            None => Ok(ModelResponse::text("")),
        }
    });
    let agent = Agent::builder("worker").model(model).tool(remember).build();
    let sink = CollectingSink::new();
    let g = fanout_graph(to_results(SubAgentNode::new(agent)), 40);
    let out = g
        .invoke(json!({}), &RunOptions::new().sink(sink.clone()).max_concurrency(8))
        .await
        .unwrap();
    let results = out.get("results").unwrap().as_array().unwrap();
    assert_eq!(results.len(), 40);
    assert!(
        results.iter().all(|r| r.as_str() == Some("{\"same\":true}")),
        "{results:?}"
    );
    assert!(
        peak.load(Ordering::SeqCst) <= 8,
        "cap respected: {}",
        peak.load(Ordering::SeqCst)
    );
    let root = out.run.root_run_id;
    let child_ids: std::collections::HashSet<_> = out.child_runs.iter().map(|c| c.run_id).collect();
    assert_eq!(child_ids.len(), 40, "each child has its own run id");
    // Every child's tool events reached the graph's sink, same root.
    let tool_events = sink
        .events()
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::ToolCallCompleted { .. }))
        .collect::<Vec<_>>();
    assert_eq!(tool_events.len(), 40);
    assert!(
        tool_events
            .iter()
            .all(|e| e.root_run_id == root && child_ids.contains(&e.run_id))
    );
}

#[tokio::test]
async fn a_panicking_input_mapper_fails_only_its_task_and_siblings_run_and_are_saved() {
    // The sub-agent node maps its input synchronously, when the task starts:
    // a panic there is caught like a panic in the node's future.
    let store = Arc::new(MemoryCheckpointer::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let model = ScriptedModel::from_fn(move |_: &ModelRequest| {
        c.fetch_add(1, Ordering::SeqCst);
        Ok(ModelResponse::text("ok"))
    });
    let agent = Agent::builder("worker").model(model).build();
    let node = SubAgentNode::new(agent)
        .input(|input| {
            let job = input.to_value().as_str().unwrap_or_default().to_string();
            if job == "job 2" {
                panic!("cannot map {job}");
            }
            Ok(job)
        })
        .output(|out, _| Ok(Update::new().set("results", &*out.text)));
    let g = fanout_graph(node, 4);
    let opts = RunOptions::new().checkpointer(store.clone()).thread("t");
    let msg = g.invoke(json!({}), &opts).await.unwrap_err().to_string();
    assert!(
        msg.contains("node `worker` task 1.2: node panicked: cannot map job 2"),
        "{msg}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the three siblings ran their sub-agents"
    );
    let state = g.get_state(None, &opts).unwrap().unwrap();
    assert_eq!(state.saved_tasks, 3, "their results are saved");
    assert_eq!(state.child_runs.len(), 3, "with their child runs");
}

/// Counts calls in flight. Calls are released in waves of `cap` (the last
/// wave: what is left): each call waits until the last call of its wave
/// has arrived. With at most `cap` tasks in flight the waves fill one after
/// the other; a task beyond the cap would arrive while a wave still waits
/// and lift the count above `cap`. A cap that let fewer than `cap` tasks run
/// at once would never fill a wave (the run is given a generous time limit
/// so that this fails instead of hanging).
struct Waves {
    cap: usize,
    total: usize,
    arrived: AtomicUsize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    opened: tokio::sync::watch::Sender<usize>,
}

/// Runs `g` under `max_concurrency(cap)`. Its tasks pass a [`Waves`] gate,
/// so the run ends only if `cap` tasks really run at once.
async fn invoke_in_waves(g: &tinyagents_graph::CompiledGraph, cap: usize) -> tinyagents_graph::GraphOutput {
    let opts = RunOptions::new().max_concurrency(cap);
    tokio::time::timeout(Duration::from_secs(300), g.invoke(json!({}), &opts))
        .await
        .expect("a wave never filled: fewer than `max_concurrency` tasks ran at once")
        .unwrap()
}

impl Waves {
    fn new(cap: usize, total: usize) -> Arc<Self> {
        Arc::new(Self {
            cap,
            total,
            arrived: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            opened: tokio::sync::watch::channel(0).0,
        })
    }

    async fn pass(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let k = self.arrived.fetch_add(1, Ordering::SeqCst);
        let wave_end = ((k / self.cap + 1) * self.cap).min(self.total);
        let mut opened = self.opened.subscribe();
        if k + 1 == wave_end {
            self.opened.send_replace(wave_end);
        } else {
            opened.wait_for(|&o| o >= wave_end).await.unwrap();
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

struct WaveModel(Arc<Waves>);

impl Model for WaveModel {
    fn id(&self) -> &str {
        "waves"
    }
    fn complete<'a>(&'a self, _: &'a ModelRequest) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            self.0.pass().await;
            Ok(ModelResponse::text("ok"))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_is_exact_sub_agent_tasks_in_flight_reach_the_cap_and_never_exceed_it() {
    // 1,050 tasks under a cap of 100 (not a multiple of the number of
    // workers): ten full waves and a last one of 50.
    let (cap, n) = (100, 1_050);
    let waves = Waves::new(cap, n);
    let agent = Agent::builder("worker").model(WaveModel(waves.clone())).build();
    let g = fanout_graph(to_results(SubAgentNode::new(agent)), n as u64);
    let out = invoke_in_waves(&g, cap).await;
    assert_eq!(out.get("results").unwrap().as_array().unwrap().len(), n);
    assert_eq!(waves.peak.load(Ordering::SeqCst), cap, "peak in flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_is_exact_for_function_nodes_too() {
    for (cap, n) in [(1, 5), (3, 10), (64, 640), (200, 1_000)] {
        let waves = Waves::new(cap, n);
        let w = waves.clone();
        let g = GraphBuilder::new("g")
            .channel("n", Reducer::Add)
            .node("w", move |_: u64, _: NodeContext| {
                let w = w.clone();
                async move {
                    w.pass().await;
                    Ok::<_, NodeError>(Update::new().set("n", 1))
                }
            })
            .conditional_edge(START, &["w"], move |_: serde_json::Value| {
                (0..n as u64).map(|i| Send::new("w", i)).collect::<Vec<_>>()
            })
            .compile()
            .unwrap();
        let out = invoke_in_waves(&g, cap).await;
        assert_eq!(out.get("n"), Some(&json!(n)));
        assert_eq!(waves.peak.load(Ordering::SeqCst), cap, "cap {cap}: peak in flight");
    }
}

#[tokio::test]
async fn a_task_scope_finds_runs_two_levels_down_without_building_their_events() {
    // worker (a SubAgentNode, default policy) -> helper (a sub-agent tool)
    // -> tool `probe`. No sink anywhere: the task scope learns of the
    // helper's run from the spawn path, not from the subtree's events.
    let seen: Arc<std::sync::Mutex<Vec<(bool, bool, u32)>>> = Arc::default();
    let s2 = seen.clone();
    let probe = tool_fn_with_context("probe", "look around", move |ctx, _: serde_json::Value| {
        let seen = s2.clone();
        async move {
            let in_task = with_task_scratch(&ctx, |m| m.insert("seen".into(), json!(true))).is_some();
            seen.lock()
                .unwrap()
                .push((ctx.run.sink().enabled(), in_task, ctx.run.depth()));
            Ok::<_, tinyagents_core::ToolError>(json!("looked"))
        }
    });
    let helper_model = ScriptedModel::from_fn(|req: &ModelRequest| match req.messages.last() {
        Some(tinyagents_core::Message::User { .. }) => Ok(ScriptedModel::call("probe", json!({}))),
        _ => Ok(ModelResponse::text("helped")),
    });
    let helper = Agent::builder("helper").model(helper_model).tool(probe).build();
    let worker_model = ScriptedModel::from_fn(|req: &ModelRequest| match req.messages.last() {
        Some(tinyagents_core::Message::User { .. }) => Ok(ScriptedModel::call("helper", json!({"input": "go"}))),
        _ => Ok(ModelResponse::text("done")),
    });
    let worker = Agent::builder("worker")
        .model(worker_model)
        .subagent(tinyagents_harness::SubAgent::new(helper))
        .build();
    let g = fanout_graph(to_results(SubAgentNode::new(worker)), 3);
    let out = g.invoke(json!({}), &RunOptions::new()).await.unwrap();
    assert_eq!(out.get("results"), Some(&json!(["done", "done", "done"])));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for (events_built, in_task, depth) in seen {
        assert_eq!(depth, 2, "the helper runs two levels below the graph run");
        assert!(in_task, "the helper's run finds its graph task");
        assert!(!events_built, "no event of the subtree is built for the task scope");
    }
}
