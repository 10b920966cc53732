//! A chain of 10,000 nested sub-agents (each level's agent calls the next
//! level's `SubAgentTool`; `max_depth` raised to 10,000) on a default
//! multi-thread tokio runtime. It must finish without overflowing a stack.

mod common;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use tinyagents_benches::{bench_mode, nested_chain};

fn chain(c: &mut Criterion) {
    // The default runtime: one worker per core, default thread stack size.
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => common::fail("nested_chain", e),
    };
    let depth: u32 = if bench_mode() { 10_000 } else { 1_000 };
    let mut g = c.benchmark_group("nested_chain");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(u64::from(depth)));
    let scenario = nested_chain(depth, None);
    // Every level but the leaf calls its model twice; the leaf once.
    let expected = 2 * u64::from(depth) + 1;
    let what = format!("nested_chain/{depth}");
    g.bench_with_input(BenchmarkId::new("depth", depth), &depth, |b, _| {
        b.iter_custom(|iters| common::time_runs(&rt, &what, &scenario, iters, expected));
    });
    g.finish();
}

criterion_group!(benches, chain);
criterion_main!(benches);
