//! Budgets that only narrow: descendants, concurrent children, tokens, cost,
//! deadline, turns; stopped runs carry their best partial result.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use tinyagents_core::{
    BoxFuture, CollectingSink, Cost, EventKind, LimitKind, Message, Model, ModelError, ModelRequest, ModelResponse,
    Price, PriceTable, RunConfig, RunContext, RunError, RunLimits, ToolCall, ToolError, Usage,
};
use tinyagents_harness::{Agent, SubAgent};
use tinyagents_providers::ScriptedModel;

fn fan_out_model(tool: &str, n: usize) -> ScriptedModel {
    let tool = tool.to_string();
    ScriptedModel::from_fn(move |req| {
        Ok(if after_tools(req) {
            ModelResponse::text("joined")
        } else {
            ModelResponse::tool_calls(
                (0..n)
                    .map(|i| {
                        ToolCall::new(
                            format!("c{i}"),
                            tool.as_str(),
                            &serde_json::json!({"input": i.to_string()}),
                        )
                    })
                    .collect(),
            )
        })
    })
    .without_recording()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_parallel_spawns_against_a_cap_of_fifty_start_exactly_fifty() {
    let worker_model = Arc::new(ScriptedModel::cycle([ModelResponse::text("w")]).without_recording());
    let worker = Agent::builder("worker").shared_model(worker_model.clone()).build();
    let orchestrator = Agent::builder("orchestrator")
        .model(fan_out_model("worker", 10_000))
        .subagent(SubAgent::new(worker))
        .build();
    let sink = CollectingSink::new();
    let out = orchestrator
        .run_with(
            &RunConfig::new()
                .limits(RunLimits::new().max_descendants(50))
                .sink(sink.clone()),
            "fan out",
        )
        .await
        .unwrap();

    assert_eq!(worker_model.request_count(), 50, "exactly 50 children ran a model call");
    let started = sink
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::SubAgentStarted { .. }))
        .count();
    assert_eq!(started, 50);
    assert_eq!(out.failures.len(), 10_000 - 50);
    assert!(out.failures.iter().all(|f| matches!(
        &f.error,
        ToolError::ChildRun(e) if e.limit() == Some(LimitKind::Descendants)
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_direct_invocations_reserve_descendants_exactly() {
    let root = RunContext::root("root", &RunConfig::new().limits(RunLimits::new().max_descendants(50)));
    let sub = SubAgent::new(leaf("worker", "w"));
    let mut handles = Vec::new();
    for i in 0..10_000 {
        let (root, sub) = (root.clone(), sub.clone());
        handles.push(tokio::spawn(
            async move { sub.invoke(&root, i.to_string()).await.is_ok() },
        ));
    }
    let mut ok = 0;
    for h in handles {
        ok += usize::from(h.await.unwrap());
    }
    assert_eq!(ok, 50);
    assert_eq!(root.budget().remaining_descendants(), Some(0));
}

/// Counts children in flight and records the peak.
struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

struct GaugedModel(Arc<Gauge>);

impl Model for GaugedModel {
    fn id(&self) -> &str {
        "gauged"
    }
    fn complete<'a>(&'a self, _: &'a ModelRequest) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            let n = self.0.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.0.peak.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.0.now.fetch_sub(1, Ordering::SeqCst);
            Ok(ModelResponse::text("done"))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_children_are_capped_per_run_and_the_cap_only_narrows() {
    let gauge = Arc::new(Gauge {
        now: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
    });
    let worker = Agent::builder("worker").model(GaugedModel(gauge.clone())).build();
    let orchestrator = Agent::builder("orchestrator")
        .model(fan_out_model("worker", 8))
        .subagent(SubAgent::new(worker))
        // Asks for 100, but the root allows 3.
        .limits(RunLimits::inherit().max_concurrent_children(100))
        .build();
    let out = orchestrator
        .run_with(
            &RunConfig::new().limits(RunLimits::new().max_concurrent_children(3)),
            "go",
        )
        .await
        .unwrap();
    assert!(out.is_clean());
    assert_eq!(gauge.peak.load(Ordering::SeqCst), 3);
    // Results come back in call order regardless of completion order.
    let ids: Vec<String> = out
        .transcript
        .iter()
        .filter_map(|m| match m {
            Message::Tool { call_id, .. } => Some(call_id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(ids, (0..8).map(|i| format!("c{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn token_budget_stops_the_run_with_its_partial_result() {
    let model = ScriptedModel::cycle([ModelResponse {
        content: Some("thinking...".into()),
        tool_calls: vec![ToolCall::raw("c", "noop", "{}")],
        usage: Usage::call(40, 20),
    }]);
    let noop = noop();
    let agent = Agent::builder("spender").model(model).tool(noop).build();
    let err = agent
        .run_with(&RunConfig::new().limits(RunLimits::new().max_tokens(100)), "go")
        .await
        .unwrap_err();
    let RunError::BudgetExceeded {
        limit,
        partial,
        depth,
        path,
    } = &err
    else {
        panic!("expected BudgetExceeded, got {err:?}")
    };
    assert_eq!(*limit, LimitKind::Tokens);
    assert_eq!((*depth, path.to_string().as_str()), (0, "spender"));
    // Two calls fit (120 > 100 after the second), the run stops right after it.
    assert_eq!(partial.usage.total_tokens(), 120);
    assert_eq!(partial.turns, 2);
    assert_eq!(partial.text.as_deref(), Some("thinking..."));
    assert!(partial.transcript.len() >= 4);
}

#[tokio::test]
async fn cost_budget_uses_the_price_table() {
    let model = ScriptedModel::cycle([ModelResponse {
        content: None,
        tool_calls: vec![ToolCall::raw("c", "noop", "{}")],
        usage: Usage::call(1_000_000, 0),
    }])
    .with_id("pricey");
    let noop = noop();
    let agent = Agent::builder("a").model(model).tool(noop).build();
    let err = agent
        .run_with(
            &RunConfig::new()
                .limits(RunLimits::new().max_cost(Cost::from_usd(2.5)))
                .prices(PriceTable::new().with("pricey", Price::per_mtok(1.0, 0.0))),
            "go",
        )
        .await
        .unwrap_err();
    assert_eq!(err.limit(), Some(LimitKind::Cost));
    assert_eq!(err.partial().unwrap().cost, Cost::from_usd(3.0));
}

#[tokio::test]
async fn a_child_gets_at_most_its_parents_remaining_tokens() {
    // The root may use 100 tokens; its own first call uses 70.
    let child_model = Arc::new(ScriptedModel::cycle([ModelResponse {
        content: Some("partial".into()),
        tool_calls: vec![ToolCall::raw("c", "noop", "{}")],
        usage: Usage::call(10, 10),
    }]));
    let noop = noop();
    let child = Agent::builder("child")
        .shared_model(child_model.clone())
        .tool(noop)
        // Asks for far more than is left.
        .limits(RunLimits::inherit().max_tokens(1_000_000))
        .build();
    let root_model = ScriptedModel::new([
        ScriptedModel::call("child", serde_json::json!({"input": "spend"})).with_usage(Usage::call(50, 20))
    ]);
    let root = Agent::builder("root")
        .model(root_model)
        .subagent(SubAgent::new(child))
        .build();
    let err = root
        .run_with(&RunConfig::new().limits(RunLimits::new().max_tokens(100)), "go")
        .await
        .unwrap_err();
    // The child could spend only the 30 left: two calls of 20 (the second breaks it).
    assert_eq!(child_model.request_count(), 2);
    assert_eq!(err.limit(), Some(LimitKind::Tokens));
    assert_eq!(err.partial().unwrap().usage.total_tokens(), 70 + 40);
}

#[tokio::test]
async fn a_deadline_that_expires_mid_run_returns_the_partial_result() {
    let model = SlowModel::new(
        vec![Duration::ZERO, Duration::from_secs(30)],
        vec![
            ModelResponse {
                content: Some("step one done".into()),
                tool_calls: vec![ToolCall::raw("c", "noop", "{}")],
                usage: Usage::call(5, 5),
            },
            ModelResponse::text("never reached"),
        ],
    );
    let noop = noop();
    let agent = Agent::builder("slow").shared_model(model.clone()).tool(noop).build();
    let started = std::time::Instant::now();
    let err = agent
        .run_with(
            &RunConfig::new().limits(RunLimits::new().timeout(Duration::from_millis(300))),
            "go",
        )
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the deadline must cut the 30 s call"
    );
    assert_eq!(err.limit(), Some(LimitKind::Deadline));
    let partial = err.partial().unwrap();
    assert_eq!(partial.turns, 1);
    assert_eq!(partial.text.as_deref(), Some("step one done"));
    assert_eq!(partial.usage, Usage::call(5, 5));
    assert!(matches!(partial.transcript.last(), Some(Message::Tool { content, .. }) if &**content == "ok"));
}

#[tokio::test]
async fn children_inherit_the_deadline_and_report_their_usage_when_it_passes() {
    let child_model = SlowModel::new(
        vec![Duration::ZERO, Duration::from_secs(30)],
        vec![
            ScriptedModel::call("noop", serde_json::json!({})).with_usage(Usage::call(7, 0)),
            ModelResponse::text("never"),
        ],
    );
    let noop = noop();
    let child = Agent::builder("child").shared_model(child_model).tool(noop).build();
    let root = Agent::builder("root")
        .model(ScriptedModel::new([ScriptedModel::call(
            "child",
            serde_json::json!({"input": "x"}),
        )
        .with_usage(Usage::call(3, 0))]))
        .subagent(SubAgent::new(child))
        .build();
    let err = root
        .run_with(
            &RunConfig::new().limits(RunLimits::new().timeout(Duration::from_millis(300))),
            "go",
        )
        .await
        .unwrap_err();
    assert_eq!(err.limit(), Some(LimitKind::Deadline));
    // The child's first call reached the root's total even though it failed.
    assert_eq!(err.partial().unwrap().usage.input_tokens, 10);
}

#[tokio::test]
async fn max_turns_stops_a_looping_agent_with_a_typed_error() {
    let model = ScriptedModel::cycle([ScriptedModel::call("noop", serde_json::json!({}))]);
    let noop = noop();
    let agent = Agent::builder("looper").model(model).tool(noop).build();
    let err = agent
        .run_with(&RunConfig::new().limits(RunLimits::new().max_turns(5)), "go")
        .await
        .unwrap_err();
    assert_eq!(err.limit(), Some(LimitKind::Turns));
    assert_eq!(err.partial().unwrap().turns, 5);
}
