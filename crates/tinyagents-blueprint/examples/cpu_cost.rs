//! CPU time (not wall time) per operation of the benchmarked paths, read
//! from `/proc/self/schedstat`, so the figures hold on a loaded machine.
//! `cargo run --release -p tinyagents-blueprint --example cpu_cost` (Linux).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/support/workload.rs"]
mod workload;

use tinyagents_blueprint::spawn::{SpawnArgs, SpawnRegistry, check_budget};
use tinyagents_blueprint::{
    CapabilityGrant, CompileOptions, Inputs, compile, execute, format_blueprint, lower, parse_text, run_graph,
};
use tinyagents_core::{ChildEvents, RunConfig, RunContext, RunLimits};
use workload::{ONE_AGENT_FRAGMENT, instant_factory, layered_blueprint};

fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn measure(name: &str, per: u64, iters: u64, mut f: impl FnMut()) {
    for _ in 0..iters / 10 + 1 {
        f();
    }
    let start = cpu_ns();
    for _ in 0..iters {
        f();
    }
    let ns = (cpu_ns() - start) as f64 / iters as f64;
    println!(
        "{name}: {:.1} µs per op, {:.2} µs per agent",
        ns / 1e3,
        ns / 1e3 / per as f64
    );
}

fn main() {
    let bp = layered_blueprint(10, 100);
    let opts = CompileOptions::new().grant(CapabilityGrant::tools(["web_search"]));
    measure("compile 1,000 agents", 1_000, 50, || {
        std::hint::black_box(compile(&bp, &opts).unwrap());
    });
    let text = format_blueprint(&bp);
    measure("parse 1,000 agents (.ta)", 1_000, 50, || {
        std::hint::black_box(parse_text("big.ta", &text).unwrap());
    });
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
    let fragment = ONE_AGENT_FRAGMENT;
    let sopts = CompileOptions::new()
        .default_model("m")
        .grant(CapabilityGrant::tools(["web_search", "spawn_agents"]));
    println!("registry: {} nodes before", registry.len());
    measure("spawn one agent into the registry", 1, 20_000, || {
        let args: SpawnArgs = serde_json::from_str(fragment).unwrap();
        let plan = compile(&args.blueprint, &sopts).unwrap();
        check_budget(&plan, &caller).unwrap();
        let parent = registry.ensure_run(&caller);
        std::hint::black_box(registry.splice(parent, &plan));
    });
    println!("registry: {} nodes after", registry.len());

    let plan = compile(&bp, &opts).unwrap();
    let factory = instant_factory();
    let inputs: Inputs = [("topic".to_string(), serde_json::json!("benchmarks"))].into();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    measure("lower 1,000 agents", 1_000, 20, || {
        std::hint::black_box(lower(&plan, &factory, 1).unwrap());
    });
    measure("lower + run 1,000 agents", 1_000, 10, || {
        rt.block_on(async {
            let root = RunContext::root("root", &RunConfig::new());
            let graph = lower(&plan, &factory, root.depth() + 1).unwrap();
            let out = run_graph(&plan, &graph, &root, &inputs).await.unwrap();
            assert_eq!(out.usage.requests, 1_000);
        });
    });
    measure("interim executor, 1,000 agents", 1_000, 10, || {
        rt.block_on(async {
            let root = RunContext::root("root", &RunConfig::new());
            let out = execute(&plan, &root, &factory, &inputs).await.unwrap();
            assert_eq!(out.usage.requests, 1_000);
        });
    });
}
