//! Usage and cost roll-up: the root's total is the exact sum of every model
//! call in the tree, and every run reports its own and its subtree's usage.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use tinyagents_core::{
    CollectingSink, Cost, EventKind, ModelResponse, Price, PriceTable, RunConfig, RunError, RunId, RunLimits, ToolCall,
    Usage,
};
use tinyagents_harness::{Agent, SubAgent};
use tinyagents_providers::ScriptedModel;

/// Every call gets distinct token counts so a missing or doubled call cannot
/// hide in the sum.
fn counting_usage(counter: &AtomicU64) -> Usage {
    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
    Usage {
        input_tokens: 100 + n,
        output_tokens: n * 3,
        cached_input_tokens: n % 7,
        requests: 1,
        ..Usage::default()
    }
}

/// An agent at `level` that fans out to `fan` children of the next level.
fn tree(level: u32, depth: u32, fan: usize, counter: Arc<AtomicU64>) -> Agent {
    let name = format!("level{level}");
    if level == depth {
        let c = counter.clone();
        return Agent::builder(name)
            .model(
                ScriptedModel::from_fn(move |_| Ok(ModelResponse::text("leaf").with_usage(counting_usage(&c))))
                    .with_id(format!("model-{level}")),
            )
            .build();
    }
    let child = tree(level + 1, depth, fan, counter.clone());
    let child_name = child.name().to_string();
    let c = counter;
    let model = ScriptedModel::from_fn(move |req| {
        let r = if after_tools(req) {
            ModelResponse::text("joined")
        } else {
            ModelResponse::tool_calls(
                (0..fan)
                    .map(|i| ToolCall::new(format!("c{i}"), child_name.as_str(), &serde_json::json!({"input": "x"})))
                    .collect(),
            )
        };
        Ok(r.with_usage(counting_usage(&c)))
    })
    .with_id(format!("model-{level}"));
    Agent::builder(name).model(model).subagent(SubAgent::new(child)).build()
}

fn prices() -> PriceTable {
    let mut t = PriceTable::new();
    for level in 0..=3 {
        t.insert(
            format!("model-{level}"),
            Price {
                input_per_mtok: 0.15 * f64::from(level + 1),
                output_per_mtok: 0.6,
                cached_input_per_mtok: Some(0.075),
                ..Price::default()
            },
        );
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_total_is_the_exact_sum_of_every_model_call_at_depth_three_fan_out_five() {
    let counter = Arc::new(AtomicU64::new(0));
    let root = tree(0, 3, 5, counter.clone());
    let sink = CollectingSink::new();
    let out = root
        .run_with(&RunConfig::new().sink(sink.clone()).prices(prices()), "go")
        .await
        .unwrap();
    assert!(out.is_clean());
    let events = sink.events();

    // Sum every model call in the tree from the events.
    let calls: Vec<(RunId, Usage, Cost)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ModelCallCompleted { usage, cost, .. } => Some((e.run_id, *usage, *cost)),
            _ => None,
        })
        .collect();
    // 1 + 5 + 25 runs call twice, 125 leaves once.
    assert_eq!(calls.len(), 2 * (1 + 5 + 25) + 125);
    assert_eq!(counter.load(Ordering::SeqCst), calls.len() as u64);
    let sum_usage: Usage = calls.iter().map(|c| c.1).sum();
    let sum_cost: Cost = calls.iter().map(|c| c.2).sum();
    assert_eq!(out.total_usage, sum_usage);
    assert_eq!(out.total_cost, sum_cost);
    assert!(sum_cost > Cost::ZERO);

    // Each run's subtree total (reported by its parent in SubAgentCompleted)
    // equals the sum of the calls made in that subtree.
    let mut parent_of: HashMap<RunId, RunId> = HashMap::new();
    for e in &events {
        if let (EventKind::RunStarted { .. }, Some(p)) = (&e.kind, e.parent_run_id) {
            parent_of.insert(e.run_id, p);
        }
    }
    let mut subtree: HashMap<RunId, Usage> = HashMap::new();
    for (run, usage, _) in &calls {
        let mut cur = Some(*run);
        while let Some(r) = cur {
            *subtree.entry(r).or_default() += *usage;
            cur = parent_of.get(&r).copied();
        }
    }
    let mut checked = 0;
    for e in &events {
        if let EventKind::SubAgentCompleted {
            child_run_id, usage, ..
        } = &e.kind
        {
            assert_eq!(subtree.get(child_run_id), Some(usage), "subtree of {child_run_id}");
            checked += 1;
        }
    }
    assert_eq!(checked, 5 + 25 + 125);
    // The root's own usage is its two calls only.
    let own: Usage = calls.iter().filter(|c| c.0 == out.run.run_id).map(|c| c.1).sum();
    assert_eq!(out.usage, own);
}

/// Regression: in the reference crate child usage never reached the parent's
/// total, notably when the child failed.
#[tokio::test]
async fn a_failed_childs_usage_still_reaches_the_parent() {
    let child = Agent::builder("child")
        .model(ScriptedModel::with_results([
            Ok(ScriptedModel::call("missing_tool", serde_json::json!({})).with_usage(Usage::call(11, 13))),
            Err(tinyagents_core::ModelError::Server {
                status: 500,
                message: "boom".into(),
            }),
        ]))
        .build();
    let root = Agent::builder("root")
        .model(ScriptedModel::new([
            ScriptedModel::call("child", serde_json::json!({"input": "x"})).with_usage(Usage::call(1, 2)),
            ModelResponse::text("gave up").with_usage(Usage::call(3, 4)),
        ]))
        .subagent(SubAgent::new(child))
        .build();
    let out = root.run("go").await.unwrap();
    assert_eq!(out.failures.len(), 1);
    let tinyagents_core::ToolError::ChildRun(e) = &out.failures[0].error else {
        panic!()
    };
    assert!(matches!(**e, RunError::Model { .. }));
    assert_eq!(e.partial().unwrap().usage, Usage::call(11, 13));
    assert_eq!(
        out.total_usage,
        Usage::call(1, 2) + Usage::call(11, 13) + Usage::call(3, 4)
    );
    assert_eq!(out.usage, Usage::call(1, 2) + Usage::call(3, 4));
    // The child's own tool failure is counted below the root.
    assert_eq!(out.descendant_failures, 1);
}

#[tokio::test]
async fn a_stopped_child_reports_usage_up_to_the_stop() {
    let child = Agent::builder("child")
        .model(ScriptedModel::cycle([ScriptedModel::call(
            "missing",
            serde_json::json!({}),
        )
        .with_usage(Usage::call(10, 0))]))
        .limits(RunLimits::inherit().max_turns(3))
        .build();
    let root = Agent::builder("root")
        .model(ScriptedModel::new([
            ScriptedModel::call("child", serde_json::json!({"input": "x"})),
            ModelResponse::text("ok"),
        ]))
        .subagent(SubAgent::new(child))
        .build();
    let out = root.run("go").await.unwrap();
    assert_eq!(out.total_usage.input_tokens, 30);
    assert_eq!(out.total_usage.requests, 2 + 3);
}
