//! Graph runtime benchmarks (figures in BENCHMARKS.md).
//!
//! * `send_fanout/1M_no_checkpoint`: one superstep of 1,000,000 trivial
//!   `Send` tasks, each appending one number.
//! * `send_fanout_sqlite/{10k,100k}`: the same with the SQLite checkpointer
//!   (a new file per run).
//! * `subagent_fanout/100k`: 100,000 parallel `SubAgentNode` tasks on a
//!   scripted model (µs per task = time / 100,000).
//!
//! Before the criterion groups, one-shot runs print what criterion cannot:
//! bytes written by the SQLite checkpointer for 10k/100k/1M tasks (and the
//! 1M run's time), and peak memory per in-flight sub-agent task (VmHWM
//! delta over 100,000 sub-agents all waiting on the model at once). Set
//! `TINYAGENTS_BENCH_SKIP_ONE_SHOT=1` to skip them.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use serde_json::{Value, json};
use tinyagents_core::{ModelRequest, ModelResponse};
use tinyagents_graph::{
    CompiledGraph, GraphBuilder, NodeContext, NodeError, Reducer, RunOptions, START, Send, SqliteCheckpointer, Update,
};
use tinyagents_harness::Agent;
use tinyagents_providers::ScriptedModel;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn fanout(n: u64) -> CompiledGraph {
    GraphBuilder::new("fanout")
        .channel("out", Reducer::Append)
        .node("work", |x: u64, _: NodeContext| async move {
            Ok::<_, NodeError>(Update::new().set("out", x))
        })
        .conditional_edge(START, &["work"], move |_: Value| {
            (0..n).map(|i| Send::new("work", i)).collect::<Vec<_>>()
        })
        .compile()
        .unwrap()
}

fn subagents(n: u64, delay: Option<Duration>, lean: bool) -> CompiledGraph {
    let mut model = ScriptedModel::from_fn(|_: &ModelRequest| Ok(ModelResponse::text("ok"))).without_recording();
    if let Some(d) = delay {
        model = model.with_delay(d);
    }
    let agent = Agent::builder("worker").model(model).build();
    common::subagent_fanout(agent, n as usize, lean)
}

fn sqlite_run(rt: &tokio::runtime::Runtime, g: &CompiledGraph) -> (Duration, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.sqlite");
    let store = Arc::new(SqliteCheckpointer::open(&path).unwrap());
    let opts = RunOptions::new()
        .checkpointer(store.clone())
        .thread("bench")
        .max_concurrency(4096);
    let t = Instant::now();
    rt.block_on(g.invoke(json!({}), &opts)).unwrap();
    let took = t.elapsed();
    let file: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    (took, tinyagents_graph::Checkpointer::stats(&*store).bytes, file)
}

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Peak memory per in-flight sub-agent task, in a fresh process: all 100k
/// tasks wait on the model at once; VmHWM before and after (after a small
/// warm-up run, so the runtime's own memory is not counted).
/// The same children without a graph: `SubAgent::invoke` from one root run
/// (the harness baseline the graph adds to).
async fn harness_only(n: u64, delay: Option<Duration>) {
    use futures::StreamExt;
    let mut model = ScriptedModel::from_fn(|_: &ModelRequest| Ok(ModelResponse::text("ok"))).without_recording();
    if let Some(d) = delay {
        model = model.with_delay(d);
    }
    let sub = tinyagents_harness::SubAgent::new(Agent::builder("worker").model(model).build());
    let root = tinyagents_core::RunContext::root("root", &tinyagents_core::RunConfig::new());
    let mut all: futures::stream::FuturesUnordered<_> = (0..n).map(|_| sub.invoke(&root, "go")).collect();
    while let Some(r) = all.next().await {
        r.unwrap();
    }
}

fn measure_memory(policy: &str) {
    let rt = rt();
    if policy == "harness" {
        let n = 100_000u64;
        rt.block_on(harness_only(1_000, Some(Duration::from_millis(10))));
        let before = vm_hwm_kb();
        rt.block_on(harness_only(n, Some(Duration::from_millis(500))));
        let after = vm_hwm_kb();
        eprintln!(
            "one-shot: {n} in-flight harness sub-agents without a graph: VmHWM +{} KiB = {:.0} bytes per in-flight child",
            after - before,
            (after - before) as f64 * 1024.0 / n as f64
        );
        return;
    }
    let lean = policy == "lean";
    let n = 100_000u64;
    rt.block_on(subagents(1_000, Some(Duration::from_millis(10)), lean).invoke(json!({}), &RunOptions::new()))
        .unwrap();
    let g = subagents(n, Some(Duration::from_millis(500)), lean);
    let before = vm_hwm_kb();
    let opts = RunOptions::new().max_concurrency(n as usize);
    let t = Instant::now();
    rt.block_on(g.invoke(json!({}), &opts)).unwrap();
    let after = vm_hwm_kb();
    eprintln!(
        "one-shot: {n} in-flight sub-agent tasks ({policy} policy): VmHWM +{} KiB = {:.0} bytes per in-flight task ({:?})",
        after - before,
        (after - before) as f64 * 1024.0 / n as f64,
        t.elapsed()
    );
}

fn one_shot() {
    let rt = rt();
    for policy in ["harness", "lean", "default"] {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .env("TINYAGENTS_BENCH_MEM", policy)
            .status()
            .unwrap();
        assert!(status.success());
    }
    for n in [10_000u64, 100_000, 1_000_000] {
        let (took, bytes, file) = sqlite_run(&rt, &fanout(n));
        eprintln!(
            "one-shot: fan-out {n} with SQLite: {took:?}, payload bytes {bytes} ({:.1} per task), files {file} bytes ({:.1} per task)",
            bytes as f64 / n as f64,
            file as f64 / n as f64
        );
    }
}

fn bench_fanout(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("send_fanout");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    let graph = fanout(1_000_000);
    let opts = RunOptions::new().max_concurrency(4096);
    g.bench_function("1M_no_checkpoint", |b| {
        b.iter(|| rt.block_on(graph.invoke(json!({}), &opts)).unwrap())
    });
    g.finish();
    let mut g = c.benchmark_group("send_fanout_sqlite");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for (name, n) in [("10k", 10_000u64), ("100k", 100_000)] {
        let graph = fanout(n);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| sqlite_run(&rt, &graph).0).sum())
        });
    }
    g.finish();
}

fn bench_subagents(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("subagent_fanout");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("100k_harness_only", |b| {
        b.iter(|| rt.block_on(harness_only(100_000, None)))
    });
    for (name, lean) in [("100k_lean", true), ("100k_default", false)] {
        let graph = subagents(100_000, None, lean);
        let opts = RunOptions::new().max_concurrency(4096);
        g.bench_function(name, |b| {
            b.iter(|| rt.block_on(graph.invoke(json!({}), &opts)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench_fanout, bench_subagents);

fn main() {
    // `cargo test --all-targets` runs this binary without `--bench`: the
    // million-task runs belong to `cargo bench` only.
    if !std::env::args().any(|a| a == "--bench") && std::env::var_os("TINYAGENTS_BENCH_MEM").is_none() {
        eprintln!("graph benchmarks: run with `cargo bench -p tinyagents-graph`");
        return;
    }
    if let Ok(policy) = std::env::var("TINYAGENTS_BENCH_MEM") {
        measure_memory(&policy);
        return;
    }
    if std::env::var_os("TINYAGENTS_BENCH_SKIP_ONE_SHOT").is_none() {
        one_shot();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
