//! The benchmarked scenarios run once each, so `cargo test` exercises the
//! code paths the benchmarks time, and checks they do what they claim.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tinyagents_benches::scenario::{ORCHESTRATOR_USAGE, WORKER_USAGE};
use tinyagents_benches::{
    CountingSink, Fanout, FanoutOptions, GatedModel, nested_chain, sequential, single_agent, two_worker_runtime,
};
use tinyagents_core::Message;
use tinyagents_harness::Agent;

#[test]
fn single_agent_answers_in_one_turn() {
    let rt = two_worker_runtime().unwrap();
    let out = rt.block_on(single_agent(None).run()).unwrap();
    assert_eq!(&*out.text, "hello");
    assert_eq!(out.turns, 1);
    assert_eq!(out.total_usage, WORKER_USAGE);
}

#[test]
fn fanout_of_1000_sub_agents_runs_every_child_and_rolls_up_their_usage() {
    let rt = two_worker_runtime().unwrap();
    let n = 1_000u64;
    let out = rt
        .block_on(Fanout::build(FanoutOptions::new(n as usize)).run())
        .unwrap();
    assert_eq!(&*out.text, "all parts summarized");
    assert!(out.is_clean());
    assert_eq!(out.turns, 2);
    assert_eq!(out.total_usage.requests, n + 2);
    let expected_tokens = n * WORKER_USAGE.total_tokens() + 2 * ORCHESTRATOR_USAGE.total_tokens();
    assert_eq!(out.total_usage.total_tokens(), expected_tokens);
    // system, user, the assistant turn with n calls, n tool results, the answer.
    assert_eq!(out.transcript.len(), 2 + 1 + n as usize + 1);
    let results = out
        .transcript
        .iter()
        .filter(|m| matches!(m, Message::Tool { content, is_error: false, .. } if &**content == "done"))
        .count();
    assert_eq!(results as u64, n);
}

#[test]
fn fanout_with_a_counting_sink_sees_eight_events_per_sub_agent() {
    let rt = two_worker_runtime().unwrap();
    let sink = CountingSink::new();
    let out = rt
        .block_on(Fanout::build(FanoutOptions::new(1_000).sink(sink.clone())).run())
        .unwrap();
    assert!(out.is_clean());
    // Per child: tool call started/completed and sub-agent started/completed
    // from the parent; run started/completed and model call started/completed
    // from the child. The orchestrator: run started/completed, two model calls.
    assert_eq!(sink.count(), 8 * 1_000 + 6);
}

#[test]
fn capped_fanout_gives_the_same_result_as_the_uncapped_one() {
    let rt = two_worker_runtime().unwrap();
    let out = rt
        .block_on(Fanout::build(FanoutOptions::new(1_000).max_concurrent(7)).run())
        .unwrap();
    assert!(out.is_clean());
    assert_eq!(out.total_usage.requests, 1_002);
}

#[test]
fn gated_model_holds_all_sub_agents_in_flight_until_the_last_arrives() {
    let rt = two_worker_runtime().unwrap();
    let n = 300;
    let opened = Arc::new(AtomicUsize::new(0));
    let seen_at_open = Arc::new(AtomicUsize::new(0));
    let model = Arc::new({
        let (opened, seen) = (opened.clone(), seen_at_open.clone());
        let arrived = Arc::new(AtomicUsize::new(0));
        let probe = arrived.clone();
        let gate = GatedModel::new(n, "done", move || {
            opened.fetch_add(1, Ordering::SeqCst);
            seen.store(probe.load(Ordering::SeqCst), Ordering::SeqCst);
        });
        // Count arrivals independently of the gate's own counter.
        CountingModel { inner: gate, arrived }
    });
    let child = Agent::builder("worker").shared_model(model.clone()).build();
    let out = rt
        .block_on(Fanout::build(FanoutOptions::new(n).child(child)).run())
        .unwrap();
    assert!(out.is_clean());
    assert_eq!(opened.load(Ordering::SeqCst), 1, "the gate opens exactly once");
    assert_eq!(
        seen_at_open.load(Ordering::SeqCst),
        n,
        "all children were waiting when it opened"
    );
    assert_eq!(model.inner.arrived(), n);
}

/// Wraps a model and counts calls before delegating.
struct CountingModel {
    inner: GatedModel,
    arrived: Arc<AtomicUsize>,
}

impl tinyagents_core::Model for CountingModel {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn complete<'a>(
        &'a self,
        request: &'a tinyagents_core::ModelRequest,
    ) -> tinyagents_core::BoxFuture<'a, Result<tinyagents_core::ModelResponse, tinyagents_core::ModelError>> {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        self.inner.complete(request)
    }
}

#[test]
fn sequential_delegations_take_one_turn_each() {
    let rt = two_worker_runtime().unwrap();
    let n = 1_000u32;
    let out = rt.block_on(sequential(n, None).run()).unwrap();
    assert_eq!(&*out.text, "all steps done");
    assert!(out.is_clean());
    assert_eq!(out.turns, n + 1);
    assert_eq!(out.total_usage.requests, 2 * u64::from(n) + 1);
    // system, user, then per turn an assistant call and a tool result, then the answer.
    assert_eq!(out.transcript.len(), 2 + 2 * n as usize + 1);
}

#[test]
fn a_10000_deep_chain_of_sub_agents_finishes_without_overflowing_the_stack() {
    // The default runtime: one worker per core, default stack size.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let depth = 10_000u32;
    let scenario = nested_chain(depth, None);
    let out = rt.block_on(scenario.run()).unwrap();
    assert_eq!(
        &*out.text, "bottom reached",
        "the leaf's answer comes back up every level"
    );
    assert!(out.is_clean());
    assert_eq!(out.run.depth, 0);
    assert_eq!(out.total_usage.requests, 2 * u64::from(depth) + 1);
    // Dropping 10,000 nested agent definitions must not recurse either.
    drop(scenario);
}
