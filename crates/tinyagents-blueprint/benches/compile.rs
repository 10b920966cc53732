//! Compiler and spawn benchmarks (figures in BENCHMARKS.md).
//!
//! * `compile/1000_agents`: compile a 1,000-agent blueprint (10 layers of
//!   100 agents, each reading two agents of the layer above, all joined).
//! * `parse/1000_agents_ta`: parse the same blueprint from `.ta` text.
//! * `spawn/one_agent_into_10k_registry`: what a `spawn_agents` call does
//!   before running anything: deserialize a one-agent fragment, compile it
//!   against the caller's grant, check the budget, find the caller in a live
//!   registry of 10,000+ nodes and splice the fragment under it.
//! * `lower/1000_agents_lower_and_run`: lower the compiled 1,000-agent plan
//!   onto a state graph and run it (every agent a `SubAgentNode` child run
//!   answered at once by a scripted model); `lower/1000_agents_lower_only`
//!   the lowering alone; `lower/1000_agents_interim_executor` the same run
//!   through the interim executor, for comparison.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "support/workload.rs"]
mod workload;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tinyagents_blueprint::spawn::{SpawnArgs, SpawnRegistry, check_budget};
use tinyagents_blueprint::{
    CapabilityGrant, CompileOptions, Inputs, compile, execute, format_blueprint, lower, parse_text, run_graph,
};
use tinyagents_core::{ChildEvents, RunConfig, RunContext, RunLimits};
use workload::{ONE_AGENT_FRAGMENT, instant_factory, layered_blueprint};

fn bench_compile(c: &mut Criterion) {
    let bp = layered_blueprint(10, 100);
    let opts = CompileOptions::new().grant(CapabilityGrant::tools(["web_search"]));
    assert_eq!(compile(&bp, &opts).unwrap().nodes.len(), 1_001);
    let mut g = c.benchmark_group("compile");
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("1000_agents", |b| {
        b.iter(|| compile(std::hint::black_box(&bp), &opts).unwrap())
    });
    g.finish();
    let text = format_blueprint(&bp);
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("1000_agents_ta", |b| {
        b.iter(|| parse_text("big.ta", std::hint::black_box(&text)).unwrap())
    });
    g.finish();
}

fn bench_spawn(c: &mut Criterion) {
    // A live registry of 10,000 nodes: a root run and 100 fragments of 100 agents.
    let registry = SpawnRegistry::new();
    let root = RunContext::root(
        "root",
        &RunConfig::new().limits(RunLimits::new().max_tokens(u64::MAX / 2)),
    );
    let root_id = registry.ensure_run(&root);
    let layer = compile(&layered_blueprint(1, 100), &CompileOptions::new()).unwrap();
    for _ in 0..100 {
        registry.splice(root_id, &layer);
    }
    let caller = root
        .spawn_child("caller", &RunLimits::inherit(), ChildEvents::Discard)
        .unwrap();
    registry.ensure_run(&caller);
    assert!(registry.len() > 10_000);
    let fragment = ONE_AGENT_FRAGMENT;
    let opts = CompileOptions::new()
        .default_model("m")
        .grant(CapabilityGrant::tools(["web_search", "spawn_agents"]));
    let mut g = c.benchmark_group("spawn");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_agent_into_10k_registry", |b| {
        b.iter(|| {
            let args: SpawnArgs = serde_json::from_str(std::hint::black_box(fragment)).unwrap();
            let plan = compile(&args.blueprint, &opts).unwrap();
            check_budget(&plan, &caller).unwrap();
            let parent = registry.ensure_run(&caller);
            registry.splice(parent, &plan)
        });
    });
    g.finish();
}

fn bench_lower(c: &mut Criterion) {
    let bp = layered_blueprint(10, 100);
    let opts = CompileOptions::new().grant(CapabilityGrant::tools(["web_search"]));
    let plan = compile(&bp, &opts).unwrap();
    let factory = instant_factory();
    let inputs: Inputs = [("topic".to_string(), serde_json::json!("benchmarks"))].into();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("lower");
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("1000_agents_lower_only", |b| {
        b.iter(|| lower(std::hint::black_box(&plan), &factory, 1).unwrap())
    });
    g.bench_function("1000_agents_lower_and_run", |b| {
        b.iter(|| {
            rt.block_on(async {
                let root = RunContext::root("root", &RunConfig::new());
                let graph = lower(&plan, &factory, root.depth() + 1).unwrap();
                let out = run_graph(&plan, &graph, &root, &inputs).await.unwrap();
                assert_eq!(out.usage.requests, 1_000);
            })
        })
    });
    g.bench_function("1000_agents_interim_executor", |b| {
        b.iter(|| {
            rt.block_on(async {
                let root = RunContext::root("root", &RunConfig::new());
                let out = execute(&plan, &root, &factory, &inputs).await.unwrap();
                assert_eq!(out.usage.requests, 1_000);
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = bench_compile, bench_spawn, bench_lower
}
criterion_main!(benches);
