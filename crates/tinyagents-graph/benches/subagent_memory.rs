//! Heap and time per `SubAgentNode` task of a 100,000-task `Send` fan-out.
//!
//! Not a criterion benchmark: a probe that prints one table, quick enough to
//! run after every change. The heap is counted by `peak_alloc::PeakAlloc`
//! (a `#[global_allocator]` keeping the current and peak allocated bytes;
//! installing it needs no unsafe code), so the figures are the bytes asked
//! of the allocator, without its overhead (VmHWM, in the `graph` bench,
//! counts that too).
//!
//! For each variant (the harness alone; the graph with the lean policy and
//! with the default policy, on an agent without tools and on one with a
//! tool it never calls, so that the default policy makes a task scope):
//! * in flight: every model call waits at a gate until the N-th arrives;
//!   the heap is sampled there, when all N children exist at once.
//!   Reported: `(heap at the gate - heap before the run) / N`, and the peak
//!   over the whole run, per task.
//! * time: the best of `TINYAGENTS_PROBE_RUNS` (default 3) runs of N tasks
//!   on an instant model, µs per task: wall clock (noisy on a shared
//!   machine) and CPU time of the process (user + system, both workers;
//!   less sensitive to other load, 10 ms resolution).
//!
//! `cargo bench -p tinyagents-graph --bench subagent_memory`
//! (`TINYAGENTS_PROBE_N=10000` for another N).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use peak_alloc::PeakAlloc;
use serde_json::{Value, json};
use tinyagents_core::{
    BoxFuture, Model, ModelError, ModelRequest, ModelResponse, RunConfig, RunContext, ToolError, Usage, tool_fn,
};
use tinyagents_graph::{CompiledGraph, RunOptions};
use tinyagents_harness::{Agent, SubAgent};
use tokio::sync::Semaphore;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

/// Holds every call until `n` calls wait, samples the heap, then lets all
/// through; with `n == 0` it answers at once.
struct Gate {
    n: usize,
    arrived: AtomicUsize,
    gate: Semaphore,
    sample: Arc<AtomicUsize>,
}

impl Model for Gate {
    fn id(&self) -> &str {
        "gate"
    }
    fn complete<'a>(&'a self, _: &'a ModelRequest) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            if self.n > 0 {
                let arrived = self.arrived.fetch_add(1, Ordering::AcqRel) + 1;
                if arrived == self.n {
                    self.sample.store(HEAP.current_usage(), Ordering::Relaxed);
                    self.gate.add_permits(Semaphore::MAX_PERMITS);
                } else if arrived < self.n {
                    self.gate.acquire().await.unwrap().forget();
                }
            }
            Ok(ModelResponse::text("ok").with_usage(Usage::call(1, 1)))
        })
    }
}

fn agent(n: usize, sample: Arc<AtomicUsize>, with_tool: bool) -> Agent {
    let model = Gate {
        n,
        arrived: AtomicUsize::new(0),
        gate: Semaphore::new(0),
        sample,
    };
    let builder = Agent::builder("worker").model(model);
    if with_tool {
        // Offered, never called: the child could use the task scope.
        builder
            .tool(tool_fn("noop", "does nothing", |_: Value| async {
                Ok::<_, ToolError>(Value::Null)
            }))
            .build()
    } else {
        builder.build()
    }
}

fn graph(agent: Agent, n: usize, lean: bool) -> CompiledGraph {
    common::subagent_fanout(agent, n, lean)
}

async fn harness(agent: Agent, n: usize) {
    let sub = SubAgent::new(agent);
    let root = RunContext::root("root", &RunConfig::new());
    let mut all: futures::stream::FuturesUnordered<_> = (0..n).map(|_| sub.invoke(&root, "go")).collect();
    while let Some(r) = all.next().await {
        r.unwrap();
    }
}

fn run(rt: &tokio::runtime::Runtime, variant: &str, agent: Agent, n: usize) {
    match variant {
        "harness" => rt.block_on(harness(agent, n)),
        v => {
            let g = graph(agent, n, v.starts_with("lean"));
            let out = rt
                // Exactly n: the cap is exact, so all n reach the gate.
                .block_on(g.invoke(json!({}), &RunOptions::new().max_concurrency(n)))
                .unwrap();
            assert_eq!(out.get("n"), Some(&json!(n)));
        }
    }
}

/// CPU time (user + system) of the whole process so far, from
/// `/proc/self/stat` (clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("subagent_memory: run with `cargo bench -p tinyagents-graph --bench subagent_memory`");
        return;
    }
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let n = env("TINYAGENTS_PROBE_N", 100_000);
    let runs = env("TINYAGENTS_PROBE_RUNS", 3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| variant ({n} tasks) | heap per task, all in flight | peak heap per task | µs per task (best of {runs}) | CPU µs per task (best of {runs}) |"
    );
    println!("|---|---|---|---|---|");
    // `TINYAGENTS_PROBE_ONLY=lean` runs the variants whose name contains it.
    let only = std::env::var("TINYAGENTS_PROBE_ONLY").unwrap_or_default();
    for variant in [
        "harness",
        "lean",
        "default",
        "lean, agent with a tool",
        "default, agent with a tool",
    ] {
        if !variant.contains(only.as_str()) {
            continue;
        }
        let tool = variant.ends_with("tool");
        // Warm-up: lazily initialized state is not counted.
        run(&rt, variant, agent(0, Arc::default(), tool), 1_000);
        let sample = Arc::new(AtomicUsize::new(0));
        let a = agent(n, sample.clone(), tool);
        let base = HEAP.current_usage();
        HEAP.reset_peak_usage();
        run(&rt, variant, a, n);
        let peak = HEAP.peak_usage();
        let at_gate = sample.load(Ordering::Relaxed);
        let (mut best, mut best_cpu) = (Duration::MAX, Duration::MAX);
        for _ in 0..runs {
            let a = agent(0, Arc::default(), tool);
            let (t, cpu) = (Instant::now(), cpu_time());
            run(&rt, variant, a, n);
            best = best.min(t.elapsed());
            best_cpu = best_cpu.min(cpu_time().saturating_sub(cpu));
        }
        println!(
            "| {variant} | {:.0} | {:.0} | {:.2} | {:.2} |",
            at_gate.saturating_sub(base) as f64 / n as f64,
            peak.saturating_sub(base) as f64 / n as f64,
            best.as_secs_f64() * 1e6 / n as f64,
            best_cpu.as_secs_f64() * 1e6 / n as f64
        );
    }
}
